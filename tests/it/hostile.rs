//! Hostile or broken input: a clear error naming the file, exit 1, never a panic or a hang, and the
//! ledger left exactly as it was.

use std::time::SystemTime;

use crate::common::{Repo, android_devices, android_id, manifest_for, posts, sim, stderr};
use intune_reconcile::ledger::Status;
use intune_reconcile::sim::{Padding, SimConfig};

/// A repository with a committed ledger, so each case can check the ledger is untouched.
fn repo_with_ledger() -> (Repo, Vec<u8>, SystemTime) {
    let repo = Repo::from_examples();
    let actions = repo.actions();
    repo.record(&[&actions[0]], Status::Accepted, None);
    let path = repo.store().path().to_path_buf();
    let bytes = std::fs::read(&path).expect("ledger");
    let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).expect("mtime");
    (repo, bytes, mtime)
}

fn alias_bomb() -> String {
    let mut s = String::from(
        "apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: bomb\n  ticket: &a0 [x, x, x, x, x, x, x, x, x]\n",
    );
    for i in 1..9 {
        s.push_str(&format!("  a{i}: &a{i} [{}]\n", vec![format!("*a{}", i - 1); 9].join(", ")));
    }
    s.push_str("spec:\n  devices: *a8\n");
    s
}

/// A case: its name, what it writes into `manifests/`, and what stderr must say.
type Case = (&'static str, Box<dyn Fn(&Repo)>, &'static str);

fn cases() -> Vec<Case> {
    vec![
        (
            "malformed yaml",
            Box::new(|r: &Repo| {
                r.write("manifests/x.yaml", "apiVersion: \"unterminated\n");
            }),
            "manifests/x.yaml:1:13: error: unclosed quote",
        ),
        (
            "tabs",
            Box::new(|r: &Repo| {
                r.write("manifests/x.yaml", "apiVersion: x\n\tkind: y\n");
            }),
            "manifests/x.yaml:1:13: error: while scanning a plain scalar, found a tab",
        ),
        (
            "non-utf8",
            Box::new(|r: &Repo| {
                r.write("manifests/x.yaml", b"apiVersion: \xff\xfe\n");
            }),
            "manifests/x.yaml:1:13: error: file is not valid UTF-8",
        ),
        (
            "json array",
            Box::new(|r: &Repo| {
                r.write("manifests/x.yaml", "[1, 2, 3]\n");
            }),
            "manifests/x.yaml:1:1: error: expected a mapping",
        ),
        (
            "alias bomb",
            Box::new(|r: &Repo| {
                r.write("manifests/x.yaml", alias_bomb());
            }),
            // Typed reading stops at the anchor, before any alias is replayed (the parser's alias
            // budget is shown by `manifest::source`'s unit test).
            "manifests/x.yaml:5:15: error: expected string scalar",
        ),
        (
            "huge file",
            Box::new(|r: &Repo| {
                r.write("manifests/x.yaml", format!("# {}\n", "x".repeat(1024 * 1024)));
            }),
            "manifests/x.yaml: error: file is 1048579 bytes; the limit is 1048576 bytes (1 MiB)",
        ),
        (
            "symlink loop",
            Box::new(|r: &Repo| {
                std::fs::create_dir_all(r.path().join("manifests/loop")).expect("mkdir");
                std::os::unix::fs::symlink("..", r.path().join("manifests/loop/up")).expect("symlink");
            }),
            "manifests/loop/up: error: symbolic link loop in manifest folder",
        ),
        (
            "dangling symlink",
            Box::new(|r: &Repo| {
                std::os::unix::fs::symlink("nowhere.yaml", r.path().join("manifests/gone.yaml")).expect("symlink");
            }),
            "manifests/gone.yaml: error: cannot read",
        ),
        (
            "fifo",
            Box::new(|r: &Repo| {
                let p = r.path().join("manifests/pipe.yaml");
                let ok = std::process::Command::new("mkfifo").arg(&p).status().expect("mkfifo").success();
                assert!(ok);
            }),
            "manifests/pipe.yaml: error: is not a regular file",
        ),
        (
            "scalar document",
            Box::new(|r: &Repo| {
                r.write("manifests/x.yaml", "just a string\n");
            }),
            "manifests/x.yaml:1:1: error: expected a mapping",
        ),
        (
            "duplicate keys",
            Box::new(|r: &Repo| {
                r.write("manifests/x.yaml", "apiVersion: a\napiVersion: b\n");
            }),
            "manifests/x.yaml:2:1: error: duplicate mapping key",
        ),
    ]
}

#[test]
fn hostile_input_gets_a_clear_error_and_leaves_the_ledger_untouched() {
    for (name, setup, want) in cases() {
        let (repo, bytes, mtime) = repo_with_ledger();
        setup(&repo);
        for args in [&["validate"][..], &["plan", "--offline"]] {
            let out = repo.cmd().args(args).output().expect("run");
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{name}: {args:?}: {err}");
            assert!(err.contains(want), "{name}: want {want:?} in:\n{err}");
            assert!(!err.contains("panicked"), "{name}: {err}");
            assert!(out.stdout.is_empty(), "{name}: no plan on stdout");
        }
        let path = repo.store().path().to_path_buf();
        assert_eq!(std::fs::read(&path).expect("ledger"), bytes, "{name}: ledger changed");
        assert_eq!(std::fs::metadata(&path).and_then(|m| m.modified()).expect("mtime"), mtime, "{name}");
    }
}

#[test]
fn a_corrupt_ledger_is_refused_and_never_overwritten() {
    let (repo, bytes, _) = repo_with_ledger();
    let path = repo.store().path().to_path_buf();
    for (name, content) in [
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("hand-edited", String::from_utf8(bytes.clone()).expect("utf8").replace("accepted", "rejected").into_bytes()),
        (
            "newer",
            String::from_utf8(bytes.clone()).expect("utf8").replace("\"version\": 1", "\"version\": 9").into_bytes(),
        ),
        ("empty", Vec::new()),
    ] {
        std::fs::write(&path, &content).expect("write");
        for args in [&["plan", "--offline"][..], &["state", "list"]] {
            let out = repo.cmd().args(args).output().expect("run");
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{name}: {err}");
            assert!(err.contains("error: ") && err.contains(".reconcile/state.json"), "{name}: {err}");
            assert!(err.contains("hint: "), "{name}: {err}");
            assert_eq!(std::fs::read(&path).expect("read"), content, "{name}: overwritten");
        }
    }
    std::fs::write(&path, String::from_utf8(bytes).expect("utf8").replace("\"version\": 1", "\"version\": 9"))
        .expect("write");
    let err = stderr(&repo.cmd().args(["plan", "--offline"]).output().expect("run"));
    assert!(err.contains("format version 9, newer than this build reads (1)"), "{err}");
}

#[test]
fn a_ledger_of_another_tenant_is_refused() {
    let repo = Repo::from_examples();
    let actions = repo.actions();
    repo.record(&[&actions[0]], Status::Accepted, Some("tenant-a"));
    let out = repo.cmd().args(["plan", "--offline"]).env("AZURE_TENANT_ID", "tenant-b").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("belongs to tenant `tenant-a`, not `tenant-b`"), "{}", stderr(&out));
    repo.cmd().args(["plan", "--offline"]).env("AZURE_TENANT_ID", "tenant-a").assert().success();
}

// A lock file committed as a symlink was opened and truncated through it (a victim file went to
// 0 bytes). It is refused, and the file it points at is untouched.
#[test]
fn a_lock_file_that_is_a_symlink_is_refused_and_its_target_untouched() {
    let (repo, ledger, _) = repo_with_ledger();
    let victim = repo.write("victim.txt", "precious\n");
    let lock = repo.path().join(".reconcile/state.json.lock");
    let _ = std::fs::remove_file(&lock);
    std::os::unix::fs::symlink(&victim, &lock).expect("symlink");
    let out = repo.cmd().args(["state", "retry", "0000", "--reason", "x"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot lock ledger"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "precious\n");
    assert_eq!(std::fs::read(repo.store().path()).expect("ledger"), ledger);
}

// `.reconcile/simulator.json` was written through a committed symlink, even
// by `plan --simulate`. It is replaced by a new file; the file it pointed at is untouched.
#[test]
fn the_simulators_state_is_never_written_through_a_symlink() {
    let repo = Repo::from_examples();
    let victim = repo.write("victim.txt", "precious\n");
    std::fs::create_dir_all(repo.path().join(".reconcile")).expect("mkdir");
    std::os::unix::fs::symlink(&victim, repo.path().join(".reconcile/simulator.json")).expect("symlink");
    repo.cmd().args(["apply", "--simulate", "--auto-approve"]).assert().success();
    assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "precious\n");
    let kept = repo.path().join(".reconcile/simulator.json");
    assert!(!std::fs::symlink_metadata(&kept).expect("meta").file_type().is_symlink(), "replaced by a file");
}

/// An empty repository tuned for tests, resetting one Android device, and a simulator that pads
/// its answers with `padding`.
fn padded_sim(padding: Padding) -> (Repo, intune_reconcile::sim::SimHandle) {
    let repo = Repo::empty();
    repo.fast_config("");
    repo.write("manifests/a.yaml", manifest_for("a", &[&android_id(0)]));
    (repo, sim(SimConfig { devices: android_devices(1), padding, ..SimConfig::default() }))
}

const MIB: usize = 1024 * 1024;

// A Graph answer was read whole, however long (3 GiB took 3.1 GB of memory). One longer than the
// cap is refused, naming who sent it and the cap, and nothing is sent or recorded.
#[test]
fn a_graph_answer_over_its_cap_is_refused_and_nothing_is_recorded() {
    let (repo, sim) = padded_sim(Padding { reads: 24 * MIB, ..Padding::default() });
    let ledger = std::fs::read(repo.path().join(".reconcile/state.json")).expect("ledger");
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("caused by: 127.0.0.1 sent more than 16 MiB; refusing the answer"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(posts(&sim).is_empty(), "nothing is sent");
    assert_eq!(std::fs::read(repo.path().join(".reconcile/state.json")).expect("ledger"), ledger, "nothing recorded");
    assert!(repo.ledger_json()["records"].as_object().is_none_or(|r| r.is_empty()));
}

#[test]
fn a_token_answer_over_its_cap_is_refused() {
    let (repo, sim) = padded_sim(Padding { token: 2 * MIB, ..Padding::default() });
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot use the token endpoint's answer: 127.0.0.1 sent more than 1 MiB; refusing the answer"),
        "{err}"
    );
    assert!(sim.requests().iter().all(|r| r.path.ends_with("/oauth2/v2.0/token")), "no Graph request without a token");
    assert!(repo.ledger_json()["records"].as_object().is_none_or(|r| r.is_empty()));
}

// A reset Intune took stays accepted whatever its answer's body: at most the cap of it is read
// (the rest is never pulled), and the action is never turned into an error.
#[test]
fn a_reset_accepted_with_a_huge_body_is_still_recorded_accepted() {
    let (repo, sim) = padded_sim(Padding { resets: 256 * MIB, ..Padding::default() });
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let sent = posts(&sim);
    assert_eq!((sent.len(), sent[0].status, sent[0].applied), (1, 200, true));
    let ledger = repo.ledger_json();
    let records: Vec<&serde_json::Value> = ledger["records"].as_object().expect("records").values().collect();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["status"], "accepted");
    assert_eq!(records[0]["attempts"][0]["httpStatus"], 200);
    // The cap and what the sockets buffer on the way; far from the whole answer.
    let pulled = sim.padding_sent();
    assert!(pulled < 96 * MIB as u64, "{} MiB of the answer were pulled", pulled / MIB as u64);
}

//! One ledger, one identity: two paths to one ledger file (a symlink to it, the path itself)
//! share one lock and one journal, and copies of a ledger are taken under its lock.

use std::path::Path;
use std::time::Duration;

use crate::common::{Repo, android_sim, batch_repo, posts_per_device, stderr, stdout, wait_for_posts};
use intune_reconcile::sim::{Fault, FaultKind, SimConfig, SimHandle};

/// A repository of `n` devices in one manifest, its ledger created, and a simulator for them.
fn setup(n: usize, tweak: impl FnOnce(&mut SimConfig)) -> (Repo, SimHandle) {
    (batch_repo(n, "").0, android_sim(n, tweak))
}

/// `alias/state.json`, a relative symlink to the repository's ledger.
fn alias(repo: &Repo) -> &'static str {
    std::fs::create_dir_all(repo.path().join("alias")).expect("mkdir");
    std::os::unix::fs::symlink("../.reconcile/state.json", repo.path().join("alias/state.json")).expect("symlink");
    "alias/state.json"
}

fn assert_each_device_posted_once(sim: &SimHandle, n: usize) {
    let counts = posts_per_device(sim);
    assert_eq!(counts.len(), n, "every device was reset: {counts:?}");
    let twice: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "devices POSTed more than once: {twice:?}");
}

fn assert_still_a_link(repo: &Repo, rel: &str) {
    let meta = std::fs::symlink_metadata(repo.path().join(rel)).expect("the link");
    assert!(meta.file_type().is_symlink(), "`{rel}` was replaced by a regular file");
}

/// No lock, journal or temporary file was named from the link.
fn assert_nothing_beside_the_link(repo: &Repo) {
    let names: Vec<String> = std::fs::read_dir(repo.path().join("alias"))
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["state.json"], "files beside the link");
}

// Applies through the link and through the path itself, one after the other, see one ledger.
#[test]
fn applies_through_a_symlink_and_the_path_itself_send_each_reset_once() {
    let (repo, sim) = setup(6, |_| {});
    let link = alias(&repo);
    let first = repo.cmd_on(&sim).args(["--state", link, "apply", "--auto-approve"]).output().expect("run");
    assert!(first.status.success(), "{}{}", stdout(&first), stderr(&first));
    assert_still_a_link(&repo, link);
    let second = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert!(second.status.success(), "{}{}", stdout(&second), stderr(&second));
    let third = repo.cmd_on(&sim).args(["--state", link, "apply", "--auto-approve"]).output().expect("run");
    assert!(third.status.success(), "{}{}", stdout(&third), stderr(&third));
    assert_each_device_posted_once(&sim, 6);
    assert_still_a_link(&repo, link);
    assert_nothing_beside_the_link(&repo);
    assert_eq!(repo.ledger_json()["records"].as_object().expect("records").len(), 6);
}

// Two applies at once, one through the link: one lock, so the second waits and sends nothing.
#[test]
fn concurrent_applies_through_a_symlink_and_the_path_share_one_lock() {
    let n = 20;
    let (repo, sim) = setup(n, |c| c.latency = Duration::from_millis(100));
    let link = alias(&repo);
    let a = repo.spawn_on(&sim, &["--lock-timeout", "60s", "--state", link, "apply", "--auto-approve"]);
    let b = repo.spawn_on(&sim, &["--lock-timeout", "60s", "apply", "--auto-approve"]);
    let (a, b) = (a.wait_with_output().expect("wait"), b.wait_with_output().expect("wait"));
    assert!(a.status.success(), "{}{}", stdout(&a), stderr(&a));
    assert!(b.status.success(), "{}{}", stdout(&b), stderr(&b));
    assert_each_device_posted_once(&sim, n);
    assert_still_a_link(&repo, link);
    assert_nothing_beside_the_link(&repo);
    assert!(!repo.path().join("alias/state.json.lock").exists(), "one lock file, the real ledger's");
}

/// Starts an apply of `n` devices whose first reset is answered only after `late`, and returns
/// once it holds the ledger's lock (its first request reached the simulator: intents are written
/// under the lock before any request leaves).
fn apply_holding_the_lock(n: usize, late: Duration) -> (Repo, SimHandle, std::process::Child) {
    let (repo, sim) = setup(n, |c| {
        c.faults = vec![Fault { device_id: None, kind: FaultKind::AnswerLate(late), times: 1 }];
    });
    // A client timeout longer than the late answer: the apply simply waits for it.
    repo.write("reconcile.yaml", repo.read("reconcile.yaml").replace("timeout: 2s", "timeout: 60s"));
    let child = repo.spawn_on(&sim, &["apply", "--auto-approve"]);
    wait_for_posts(&sim, 1);
    (repo, sim, child)
}

fn records_in(path: &Path) -> usize {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).expect("the copy")).expect("JSON");
    v["records"].as_object().expect("records").len()
}

// A copy taken beside an apply would lack what the apply records next, and the copy's next apply
// would send it again: the copy waits for the lock, or is refused naming its holder.
#[test]
fn state_push_waits_for_a_running_apply_or_is_refused_naming_it() {
    let n = 12;
    let (repo, _sim, child) = apply_holding_the_lock(n, Duration::from_secs(4));
    let pid = child.id();
    let out = repo.cmd().args(["state", "push", "copy/state.json"]).output().expect("run");
    assert!(!out.status.success(), "a copy beside a running apply: {}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("is locked by pid {pid}")) && err.contains("reconcile apply"), "{err}");
    assert!(!repo.path().join("copy/state.json").exists(), "nothing was copied");
    let out = repo.cmd().args(["state", "export", "--format", "json"]).output().expect("run");
    assert!(!out.status.success() && stderr(&out).contains("is locked by pid"), "{}", stderr(&out));

    let out = repo.cmd().args(["--lock-timeout", "60s", "state", "push", "copy/state.json"]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let apply = child.wait_with_output().expect("wait");
    assert!(apply.status.success(), "{}{}", stdout(&apply), stderr(&apply));
    assert!(stdout(&out).contains(&format!("Copied {n} records")), "{}", stdout(&out));
    assert_eq!(records_in(&repo.path().join("copy/state.json")), n, "the copy has every record");
}

// The same for `state pull`, and the copy is a ledger the next apply trusts: it re-sends nothing.
#[test]
fn state_pull_is_taken_under_the_sources_lock() {
    let n = 8;
    let (repo, sim, child) = apply_holding_the_lock(n, Duration::from_secs(3));
    let out = repo.cmd().args(["state", "pull", "pulled.json"]).output().expect("run");
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stderr(&out).contains(&format!("is locked by pid {}", child.id())), "{}", stderr(&out));
    let out = repo.cmd().args(["--lock-timeout", "60s", "state", "pull", "pulled.json"]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(child.wait_with_output().expect("wait").status.success());
    assert_eq!(records_in(&repo.path().join("pulled.json")), n);
    let out = repo.cmd_on(&sim).args(["--state", "pulled.json", "apply", "--auto-approve"]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_each_device_posted_once(&sim, n);
}

// A local ledger's lock is the operating system's: `state unlock` does not touch it (exit 1, saying
// so) while its holder lives, and it is free the moment the holder dies, even by SIGKILL.
#[test]
fn state_unlock_leaves_a_local_lock_to_its_holder() {
    let n = 6;
    let (repo, sim, mut child) = apply_holding_the_lock(n, Duration::from_secs(30));
    let refused = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains(&format!("is locked by pid {}", child.id())), "{}", stderr(&refused));
    let out = repo.cmd().args(["state", "unlock", "any-id"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("is local: its lock is released by the operating system"), "{}", stderr(&out));
    let still = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert!(stderr(&still).contains("is locked by pid"), "unlock released nothing: {}", stderr(&still));
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    // Free at once: the next apply sends what the dead one had not (its request in flight is
    // `unknown`, settled by refresh), each device once.
    let next = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert!(!stderr(&next).contains("is locked by"), "{}", stderr(&next));
    repo.cmd_on(&sim).arg("refresh").assert().success();
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().success();
    assert_each_device_posted_once(&sim, n);
}

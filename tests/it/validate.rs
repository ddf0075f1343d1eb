//! `reconcile validate` end to end: the real binary on real files.

use crate::common::{Repo, stderr, stdout};
use predicates::prelude::*;

const GOOD: &str = "apiVersion: intune-reconcile/v1
kind: PasscodeReset
metadata:
  name: good-one
spec:
  devices:
    - serialNumber: R58M12345AB
";

#[test]
fn examples_are_valid() {
    let repo = Repo::empty();
    let out = repo.cmd().arg("validate").arg(crate::common::examples().join("manifests")).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("ok: 4 manifests with 7 actions in 3 files"), "{}", stdout(&out));
}

#[test]
fn config_manifests_are_found_and_global_flags_work_after_the_subcommand() {
    let repo = Repo::from_examples();
    repo.cmd().args(["validate"]).assert().success().stdout(predicate::str::contains("4 manifests"));
    let root = Repo::empty();
    root.cmd().arg("validate").arg("-C").arg(repo.path()).assert().success();
    root.cmd().arg("-C").arg(repo.path()).arg("validate").assert().success();
}

// Every problem in one run, each with file:line:column and the source line.
#[test]
fn every_problem_is_reported_in_one_run_with_positions() {
    let repo = Repo::empty();
    repo.write(
        "manifests/a.yaml",
        "apiVersion: intune-reconcile/v1
kind: PasscodeReset
metadata:
  name: Bad_Name
spec:
  round: 0
  devices:
    - id: 3fa85
    - serialNumber: A1
      deviceName: B
    - serialNumber: X9
    - serialNumber: x9
    - imei: 12ab
    - {}
---
apiVersion: intune-reconcile/v2
kind: Wipe
metadata: {name: twice}
spec: {devices: []}
",
    );
    repo.write("manifests/team/b.yml", "# another team\napiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata: {name: twice, colour: red}\nspec: {devices: [{id: 3fa85f64-5717-4562-b3fc-2c963f66afa6}]}\n");
    repo.write("manifests/team/c.yaml", "apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata: {name: twice}\nspec: {devices: [{id: 3fa85f64-5717-4562-b3fc-2c963f66afa6}]}\n");
    let out = repo.cmd().arg("validate").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for want in [
        "manifests/a.yaml:4:9: error: invalid metadata.name `Bad_Name`",
        "manifests/a.yaml:6:10: error: invalid spec.round `0`",
        "manifests/a.yaml:8:11: error: invalid device id `3fa85`",
        "manifests/a.yaml:9:7: error: device entry has 2 selectors (serialNumber, deviceName)",
        "manifests/a.yaml:12:21: error: device serialNumber=x9 is listed twice in this manifest (first at line 11)",
        "manifests/a.yaml:13:13: error: invalid imei `12ab`",
        "manifests/a.yaml:14:7: error: device entry names no device",
        "manifests/a.yaml:16:13: error: unsupported apiVersion `intune-reconcile/v2`",
        "manifests/a.yaml:17:7: error: unsupported kind `Wipe`",
        "manifests/a.yaml:19:17: error: spec.devices is empty",
        "manifests/team/b.yml:4:25: error: unknown field `colour`",
        "manifests/team/c.yaml:3:18: error: duplicate metadata.name `twice`",
        "  = note: `twice` is the name of the manifest at manifests/a.yaml:18:18",
        "8 |     - id: 3fa85\n  |           ^^^^^",
        "error: aborting due to 12 errors",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(!err.contains("::error"), "annotations only inside GitHub Actions");
    // The whole rendering, pinned: positions, source lines, carets, notes and hints.
    insta::assert_snapshot!(err);
}

// A pull request that copies a manifest is told about the file it adds, whatever the file order.
#[test]
fn a_duplicate_name_is_reported_on_the_file_the_change_added() {
    let repo = Repo::empty();
    let copy = GOOD.replace("R58M12345AB", "R58M99999ZZ");
    repo.write("manifests/z-old.yaml", GOOD);
    repo.git(&["init", "-q"]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-qm", "main"]);
    // Not committed yet: a change in the working tree.
    repo.write("manifests/a-new.yaml", &copy);
    let err = stderr(&repo.cmd().arg("validate").output().expect("run"));
    assert!(err.contains("manifests/a-new.yaml:4:9: error: duplicate metadata.name `good-one`"), "{err}");
    assert!(err.contains("= note: `good-one` is the name of the manifest at manifests/z-old.yaml:4:9"), "{err}");
    assert!(!err.contains("z-old.yaml:4:9: error"), "{err}");
    // Committed later (the pull request's merge commit holds both): the later commit is the change.
    repo.git(&["add", "-A"]);
    let later = std::process::Command::new("git")
        .current_dir(repo.path())
        .args(["-c", "user.email=ci@contoso.com", "-c", "user.name=CI", "commit", "-qm", "pr"])
        .env("GIT_COMMITTER_DATE", "2026-02-01T00:00:00Z")
        .status()
        .expect("git");
    assert!(later.success());
    let err = stderr(&repo.cmd().arg("validate").output().expect("run"));
    assert!(err.contains("manifests/a-new.yaml:4:9: error: duplicate metadata.name `good-one`"), "{err}");
    // Outside a repository the first file read keeps its name.
    let bare = Repo::empty();
    bare.write("manifests/z-old.yaml", GOOD);
    bare.write("manifests/a-new.yaml", &copy);
    let err = stderr(&bare.cmd().arg("validate").output().expect("run"));
    assert!(err.contains("manifests/z-old.yaml:4:9: error: duplicate metadata.name `good-one`"), "{err}");
}

#[test]
fn github_actions_get_annotations() {
    let repo = Repo::empty();
    repo.write("manifests/a.yaml", GOOD.replace("R58M12345AB", "\"\""));
    let out = repo.cmd().arg("validate").env("GITHUB_ACTIONS", "true").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("::error file=manifests/a.yaml,line=7,col=21::`serialNumber` is empty"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unquoted_imei_and_case_insensitive_duplicates() {
    let repo = Repo::empty();
    repo.write("manifests/a.yaml", GOOD.replace("serialNumber: R58M12345AB", "imei: 356938035643809"));
    repo.cmd().arg("validate").assert().success();
    // Grouped as it is often copied: the same IMEI (one action, listed twice).
    repo.write(
        "manifests/a.yaml",
        GOOD.replace(
            "serialNumber: R58M12345AB",
            "imei: \"35 693803 564380 9\"\n    - imei: 35-693803-564380-9\n    - imei: 356938035643809",
        ),
    );
    repo.cmd().arg("validate").assert().code(1).stderr(predicate::str::contains("is listed twice"));
    repo.write("manifests/a.yaml", GOOD.replace("serialNumber: R58M12345AB", "imei: \"35 693803 564380 9\""));
    repo.cmd().arg("validate").assert().success();
    repo.write(
        "manifests/a.yaml",
        GOOD.replace(
            "serialNumber: R58M12345AB",
            "id: 3FA85F64-5717-4562-B3FC-2C963F66AFA6\n    - id: 3fa85f64-5717-4562-b3fc-2c963f66afa6",
        ),
    );
    repo.cmd().arg("validate").assert().code(1).stderr(predicate::str::contains("is listed twice"));
}

#[test]
fn a_cloud_by_another_name_gets_a_did_you_mean() {
    let repo = Repo::empty();
    repo.write("manifests/a.yaml", GOOD);
    repo.write("reconcile.yaml", "graph:\n  cloud: gcc-high\n");
    repo.cmd().arg("validate").assert().code(1).stderr(
        predicate::str::contains("reconcile.yaml:2:10: error: graph.cloud `gcc-high` is not a cloud")
            .and(predicate::str::contains("did you mean `usgov`?")),
    );
    repo.write("reconcile.yaml", "graph:\n  cloud: global\n");
    repo.cmd().env("AZURE_CLOUD", "AzureChinaCloud").arg("validate").assert().code(1).stderr(
        predicate::str::contains("AZURE_CLOUD `AzureChinaCloud` is not a cloud")
            .and(predicate::str::contains("did you mean `china`?")),
    );
}

#[test]
fn comanaged_devices_need_the_beta_api() {
    let repo = Repo::empty();
    repo.write("manifests/a.yaml", GOOD.replace("spec:\n", "spec:\n  collection: comanagedDevices\n"));
    repo.cmd().arg("validate").assert().code(1).stderr(predicate::str::contains(
        "manifests/a.yaml:6:15: error: collection `comanagedDevices` exists only in the beta API",
    ));
    repo.write("reconcile.yaml", "graph:\n  apiVersion: beta\n");
    repo.cmd().arg("validate").assert().success();
}

#[test]
fn config_problems_point_into_the_config() {
    let repo = Repo::empty();
    repo.write("manifests/a.yaml", GOOD);
    repo.write("reconcile.yaml", "graph:\n  timeout: 30 seconds\n  concurrency: 0\n  retries: 3\n");
    let out = repo.cmd().arg("validate").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("reconcile.yaml:4:3: error: unknown field `retries`"), "{}", stderr(&out));
    repo.write("reconcile.yaml", "graph:\n  timeout: 30 seconds\n  concurrency: 0\n");
    let err = stderr(&repo.cmd().arg("validate").output().expect("run"));
    assert!(err.contains("reconcile.yaml:2:12: error: graph.timeout: invalid duration `30 seconds`"), "{err}");
    assert!(err.contains("reconcile.yaml:3:16: error: invalid graph.concurrency `0`"), "{err}");
}

// A pull request could hold every run for ever with `graph.timeout: 100000h` (one hung request).
// Durations the repository sets are capped, each refused on its own line.
#[test]
fn durations_from_the_repository_are_capped() {
    let repo = Repo::empty();
    repo.write("manifests/a.yaml", GOOD);
    repo.write(
        "reconcile.yaml",
        "graph:\n  timeout: 100000h\n  unknownGrace: 9000h\n  backoff: { initial: 2h, max: 16m }\n",
    );
    let out = repo.cmd().arg("validate").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for want in [
        "reconcile.yaml:2:12: error: graph.timeout `100000h` is longer than the 5m this setting allows",
        "reconcile.yaml:3:17: error: graph.unknownGrace `9000h` is longer than the 720h",
        "error: graph.backoff.initial `2h` is longer than the 15m",
        "error: graph.backoff.max `16m` is longer than the 15m",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }
    repo.write(
        "reconcile.yaml",
        "graph:\n  timeout: 5m\n  unknownGrace: never\n  backoff: { initial: 15m, max: 15m }\n",
    );
    repo.cmd().arg("validate").assert().success();
}

// Every problem of a policy section in one run, as a person reads it (pinned whole).
#[test]
fn policy_config_problems_are_reported_together() {
    let repo = Repo::empty();
    repo.write("manifests/a.yaml", GOOD);
    repo.write(
        "reconcile.yaml",
        "policy:\n  maxActionsPerApply: 0\n  cooldown: 1 day\n  outOfBand: { within: soon, then: adopt }\n  changeWindows:\n    timeZone: Mars/Olympus\n    windows:\n      - { days: [mon], from: '25:00', to: '08:00' }\n",
    );
    let out = repo.cmd().arg("validate").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(stderr(&out));
}

#[test]
fn a_budget_above_intunes_limit_is_a_warning() {
    let repo = Repo::empty();
    repo.write("manifests/a.yaml", GOOD);
    repo.write("reconcile.yaml", "graph:\n  writeBudget: { requests: 500, window: 20s }\n");
    let out = repo.cmd().arg("validate").output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "reconcile.yaml:2:28: warning: graph.writeBudget of 500 per 20s is above Intune's documented limit"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn missing_paths_and_explicit_config_are_errors() {
    let repo = Repo::empty();
    repo.cmd()
        .args(["validate", "nope"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("manifest path `nope`: no such file or directory"));
    repo.cmd()
        .args(["--config", "missing.yaml", "validate"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("missing.yaml: error: cannot read file"));
    // With no config and no manifests folder, the default folder is reported missing.
    repo.cmd().arg("validate").assert().code(1).stderr(predicate::str::contains("manifest path `manifests`"));
    // A folder the config names that is not there: the config's line says where it was named.
    repo.write("reconcile.yaml", "manifests:\n  - manifests\n  - team-b\n");
    std::fs::create_dir_all(repo.path().join("manifests")).expect("mkdir");
    repo.write("manifests/a.yaml", GOOD);
    repo.cmd().arg("validate").assert().code(1).stderr(predicate::str::contains(
        "reconcile.yaml:3:5: error: manifest path `team-b`: no such file or directory",
    ));
}

#[test]
fn globs_select_files() {
    let repo = Repo::empty();
    repo.write("requests/a.yaml", GOOD);
    repo.write("requests/deep/b.yaml", GOOD.replace("good-one", "good-two"));
    repo.write("requests/notes.txt", "not yaml");
    repo.write("reconcile.yaml", "manifests: ['requests/*.yaml']\n");
    repo.cmd()
        .arg("validate")
        .assert()
        .success()
        .stdout(predicate::str::contains("1 manifest with 1 action in 1 file"));
    repo.write("reconcile.yaml", "manifests: ['requests/**/*.yaml']\n");
    repo.cmd()
        .arg("validate")
        .assert()
        .success()
        .stdout(predicate::str::contains("2 manifests with 2 actions in 2 files"));
}

/// The ```yaml blocks of a Markdown file: (line, text).
fn yaml_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (n, line) in markdown.lines().enumerate() {
        match &mut current {
            None if line.trim_start().starts_with("```yaml") || line.trim_start().starts_with("```yml") => {
                current = Some((n + 1, String::new()))
            }
            Some(_) if line.trim_start().starts_with("```") => blocks.extend(current.take()),
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// Every YAML document of `text` (split on `---` lines), parsed.
fn yaml_documents(text: &str) -> Result<Vec<serde_json::Value>, String> {
    let mut docs = Vec::new();
    let mut current = String::new();
    for line in text.lines().chain(std::iter::once("---")) {
        if line.trim_end() == "---" {
            if !current.trim().is_empty() {
                docs.push(serde_saphyr::from_str::<serde_json::Value>(&current).map_err(|e| e.to_string())?);
            }
            current.clear();
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    Ok(docs)
}

// Docs that are tested: every YAML block of the README and of examples/ parses; a manifest is
// validated as one, a `reconcile.yaml` (or a piece of one) against the example manifests.
#[test]
fn every_yaml_block_of_the_docs_parses_and_validates() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources: Vec<(String, String)> = Vec::new();
    for md in ["README.md", "ARCHITECTURE.md", "examples/ci/README.md"] {
        let text = std::fs::read_to_string(root.join(md)).expect(md);
        for (line, block) in yaml_blocks(&text) {
            sources.push((format!("{md}:{line}"), block));
        }
    }
    for entry in walkdir::WalkDir::new(root.join("examples")).into_iter().filter_map(Result::ok) {
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            sources.push((path.display().to_string(), std::fs::read_to_string(path).expect("read")));
        }
    }
    assert!(sources.len() >= 10, "found the docs: {}", sources.len());
    let config_keys = ["manifests", "state", "graph", "policy", "simulator"];
    for (at, text) in &sources {
        let docs = yaml_documents(text).unwrap_or_else(|e| panic!("{at} is not YAML: {e}"));
        for doc in docs {
            let Some(map) = doc.as_object() else { continue };
            if map.get("apiVersion").and_then(|v| v.as_str()) == Some("intune-reconcile/v1") {
                let repo = Repo::empty();
                // A manifest of an example repository is validated under that repository's
                // config (the lost-device playbook needs the beta API).
                let config = std::path::Path::new(at)
                    .ancestors()
                    .skip(1)
                    .take_while(|dir| dir.starts_with(root))
                    .map(|dir| dir.join("reconcile.yaml"))
                    .find(|c| c.is_file());
                if let Some(config) = config {
                    repo.write("reconcile.yaml", std::fs::read(config).expect("config"));
                }
                repo.write("manifests/doc.yaml", text.replace("../schemas/", ""));
                let out = repo.cmd().arg("validate").output().expect("run");
                if at.ends_with("lost-device/manifests/wipe.yaml") {
                    // The playbook's wipe waits for its ticket: that rule, and only it, says no.
                    let err = stderr(&out);
                    assert!(!out.status.success() && err.contains("built in for destructive actions"), "{at}: {err}");
                    assert_eq!(err.matches(": error: ").count(), 1, "{at}: {err}");
                } else {
                    assert!(out.status.success(), "{at}: {}", stderr(&out));
                }
            } else if !map.is_empty() && map.keys().all(|k| config_keys.contains(&k.as_str())) {
                let repo = Repo::from_examples();
                repo.write("reconcile.yaml", text);
                let out = repo.cmd().arg("validate").output().expect("run");
                assert!(out.status.success(), "{at} with the example manifests: {}", stderr(&out));
            }
        }
    }
}

#[test]
fn completions_and_man_pages_are_generated_from_the_parser() {
    let repo = Repo::empty();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = repo.cmd().args(["completions", shell]).output().expect("run");
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(script.contains("reconcile") && script.contains("--auto-approve"), "{shell}: {script}");
    }
    let man = repo.cmd().arg("man").output().expect("run");
    assert!(man.status.success());
    assert!(stdout(&man).starts_with(".ie") || stdout(&man).contains(".TH reconcile 1"), "{}", stdout(&man));
    repo.cmd().args(["man", "--out", "man"]).assert().success();
    for page in ["reconcile.1", "reconcile-plan.1", "reconcile-apply.1", "reconcile-completions.1"] {
        assert!(repo.path().join("man").join(page).is_file(), "{page}");
    }
    repo.cmd().args(["completions", "tcsh"]).assert().code(1);
}

// a wrong type is an error. `round` is a YAML integer: a quoted "2" is a string (the
// YAML parser alone would read it as 2), and a float or a list is no round either.
#[test]
fn a_round_of_the_wrong_type_is_an_error() {
    let repo = Repo::empty();
    for (written, found) in
        [("'2'", "string \"2\""), ("\"01\"", "string \"01\""), ("1.5", "floating point `1.5`"), ("[1]", "sequence")]
    {
        repo.write("manifests/a.yaml", GOOD.replace("spec:\n", &format!("spec:\n  round: {written}\n")));
        let out = repo.cmd().arg("validate").output().expect("run");
        assert_eq!(out.status.code(), Some(1), "{written}");
        assert!(
            stderr(&out).contains(&format!("manifests/a.yaml:6:3: error: invalid type: {found}, expected spec.round")),
            "{written}: {}",
            stderr(&out)
        );
    }
    repo.write("manifests/a.yaml", GOOD.replace("spec:\n", "spec:\n  round: 2\n"));
    repo.cmd().arg("validate").assert().success();
}

// A key written twice names the key and the line, without the YAML library's advice to its own
// programmers ("set DuplicateKeyPolicy in Options").
#[test]
fn a_key_written_twice_is_reported_plainly() {
    let repo = Repo::empty();
    repo.write("manifests/a.yaml", GOOD.replace("  name: good-one\n", "  name: good-one\n  name: again\n"));
    let out = repo.cmd().arg("validate").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("manifests/a.yaml:5:3: error: duplicate mapping key: name\n"), "{err}");
    assert!(!err.contains("DuplicateKeyPolicy"), "{err}");
}

// A device named `CEO-PHONE` + tag characters reads as `CEO-PHONE`: invisible (format)
// characters are an error in what identifies an action (names, former names, selectors), and
// shown escaped in free text, where a right-to-left reason may carry marks.
#[test]
fn invisible_characters_are_refused_in_identity_and_shown_escaped_in_free_text() {
    let repo = Repo::empty();
    for (i, (key, value)) in [
        ("deviceName", "CEO-PHONE\u{e0041}\u{e0042}"),
        ("deviceName", "CEO\u{200b}PHONE"),
        ("serialNumber", "R58\u{2060}M1"),
        ("serialNumber", "R58\u{3164}"),
        ("deviceName", "A\u{61c}B"),
        ("deviceName", "A\u{180e}B"),
        ("deviceName", "A\u{200d}B"),
    ]
    .into_iter()
    .enumerate()
    {
        repo.write(
            "manifests/a.yaml",
            format!("apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: a\nspec:\n  devices:\n    - {key}: \"{value}\"\n"),
        );
        let out = repo.cmd().arg("validate").output().expect("run");
        assert_eq!(out.status.code(), Some(1), "{i}");
        let err = stderr(&out);
        assert!(
            err.contains("manifests/a.yaml:7:") && err.contains("contains the invisible character U+"),
            "{i}: {err}"
        );
        assert!(!err.contains(value), "{i}: shown raw: {err}");
    }
    repo.write(
        "manifests/a.yaml",
        "apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: a\n  formerNames: [\"old\u{200b}\"]\nspec:\n  devices:\n    - deviceName: X\n",
    );
    let err = stderr(&repo.cmd().arg("validate").output().expect("run"));
    assert!(err.contains("invalid formerNames entry `old\\u{200b}`"), "{err}");
    // Free text: accepted, and shown escaped.
    repo.write(
        "manifests/a.yaml",
        "apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: a\n  ticket: \"INC-1\u{200b}\"\n  reason: \"\u{200f}مقفل\u{200f}\"\nspec:\n  devices:\n    - deviceName: X\n",
    );
    repo.cmd().arg("validate").assert().success();
    let out = repo.cmd().args(["plan", "--offline"]).output().expect("run");
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!all.contains('\u{200b}') && !all.contains('\u{200f}'), "{all}");
}

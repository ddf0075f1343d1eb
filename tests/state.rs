//! `reconcile state list` / `state show` end to end.

mod common;

use common::{Repo, stderr, stdout};
use intune_reconcile::state::Status;
use predicates::prelude::*;

#[test]
fn list_and_show_in_text_and_json() {
    let repo = Repo::from_examples();
    let out = repo.cmd().args(["state", "list"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "no ledger is not an empty ledger");
    assert!(stderr(&out).contains("there is no ledger at") && stderr(&out).contains("reconcile init"));
    repo.cmd().args(["init", "--tenant", "tenant-a"]).assert().success();
    repo.cmd()
        .args(["state", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("The ledger holds no actions."));
    let actions = repo.actions();
    repo.record(&[&actions[0], &actions[1]], Status::Accepted, Some("tenant-a"));

    let out = repo.cmd().args(["state", "list"]).output().expect("run");
    let text = stdout(&out);
    assert!(text.contains(actions[0].key.short()) && text.contains("accepted"), "{text}");
    assert!(text.contains("2 actions; ledger serial 2."), "{text}");

    let json: serde_json::Value =
        serde_json::from_slice(&repo.cmd().args(["state", "list", "--format", "json"]).output().expect("run").stdout)
            .expect("json");
    assert_eq!(json["format_version"], 1);
    assert_eq!(json["tenant"], "tenant-a");
    assert_eq!(json["actions"].as_array().map(Vec::len), Some(2));

    let prefix = &actions[0].key.as_str()[..8];
    let out = repo.cmd().args(["state", "show", prefix]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("key:         {}", actions[0].key)), "{}", stdout(&out));
    let json: serde_json::Value = serde_json::from_slice(
        &repo.cmd().args(["state", "show", actions[0].key.as_str(), "--format", "json"]).output().expect("run").stdout,
    )
    .expect("json");
    assert_eq!(json["action"]["key"], actions[0].key.as_str());
    assert_eq!(json["action"]["status"], "accepted");

    repo.cmd()
        .args(["state", "show", "ffffffff"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no action in the ledger"));
    repo.cmd().args(["state", "show", "ab"]).assert().code(1).stderr(predicate::str::contains("too short"));
}

#[test]
fn state_flag_and_config_choose_the_ledger() {
    let repo = Repo::from_examples();
    let actions = repo.actions();
    repo.record(&[&actions[0]], Status::Done, None);
    std::fs::rename(repo.path().join(".reconcile/state.json"), repo.path().join("elsewhere.json")).expect("mv");
    repo.cmd()
        .args(["state", "list", "--state", "elsewhere.json"])
        .assert()
        .success()
        .stdout(predicate::str::contains("done"));
    repo.write("reconcile.yaml", "state: elsewhere.json\n");
    repo.cmd().args(["state", "list"]).assert().success().stdout(predicate::str::contains("1 actions"));
}

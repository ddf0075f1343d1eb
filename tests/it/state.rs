//! `reconcile state list` / `state show` end to end.

use crate::common::{Repo, stderr, stdout};
use intune_reconcile::ledger::Status;
use predicates::prelude::*;

/// A tenant id: outside the simulator, a ledger is bound to a GUID.
const TENANT_A: &str = "3c9a7e21-4b6d-4f8a-b1c2-5d7e9f0a2b4c";

#[test]
fn list_and_show_in_text_and_json() {
    let repo = Repo::from_examples();
    let out = repo.cmd().args(["state", "list"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "no ledger is not an empty ledger");
    assert!(stderr(&out).contains("there is no ledger at") && stderr(&out).contains("reconcile init"));
    repo.cmd().args(["init", "--tenant", TENANT_A]).assert().success();
    repo.cmd()
        .args(["state", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("The ledger holds no actions."));
    let actions = repo.actions();
    repo.record(&[&actions[0], &actions[1]], Status::Accepted, Some(TENANT_A));

    let out = repo.cmd().args(["state", "list"]).output().expect("run");
    let text = stdout(&out);
    assert!(text.contains(actions[0].key.short()) && text.contains("accepted"), "{text}");
    assert!(text.contains("2 actions; ledger serial 2."), "{text}");

    let json: serde_json::Value =
        serde_json::from_slice(&repo.cmd().args(["state", "list", "--format", "json"]).output().expect("run").stdout)
            .expect("json");
    assert_eq!(json["format_version"], 1);
    assert_eq!(json["tenant"], TENANT_A);
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
    repo.cmd()
        .args(["state", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("1 action; ledger serial 1."));
}

// An attempt made in GitHub Actions says where it came from, in every view of the ledger.
#[test]
fn attempts_record_commit_pull_request_run_and_actor() {
    let repo = Repo::empty();
    repo.fast_config("");
    repo.write(
        "manifests/a.yaml",
        "apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: inc-4711\n  ticket: INC-4711\n  reason: lost phone\n  requestedBy: alice@contoso.com\nspec:\n  devices:\n    - id: 3fa85f64-5717-4562-b3fc-2c963f66afa6\n",
    );
    let sim = crate::common::sim(crate::common::sim_config());
    let github = [
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567"),
        ("GITHUB_REF", "refs/pull/42/merge"),
        ("GITHUB_RUN_ID", "9001"),
        ("GITHUB_SERVER_URL", "https://github.com"),
        ("GITHUB_REPOSITORY", "contoso/devices"),
        ("GITHUB_ACTOR", "octocat"),
    ];
    let mut apply = repo.cmd_on(&sim);
    apply.args(["apply", "--auto-approve"]).envs(github);
    apply.assert().success();
    let key = repo.actions()[0].key.clone();

    let show = stdout(&repo.cmd().args(["state", "show", key.short()]).output().expect("run"));
    for want in [
        "device name: ANDROID-8F2K",
        "from github-actions, run 9001, commit 0123456789abcdef0123456789abcdef01234567, pull request #42, by octocat",
        "run https://github.com/contoso/devices/actions/runs/9001",
        "manifest said: ticket INC-4711, reason \"lost phone\", requested by alice@contoso.com",
    ] {
        assert!(show.contains(want), "missing {want:?} in\n{show}");
    }
    // Times are shown to the second.
    let started = show.lines().find(|l| l.contains("#1 started")).expect("attempt line");
    assert!(started.contains("Z  client-request-id") && !started.contains('.'), "{started}");
    let json: serde_json::Value = serde_json::from_slice(
        &repo.cmd().args(["state", "show", key.short(), "--format", "json"]).output().expect("run").stdout,
    )
    .expect("json");
    let p = &json["action"]["attempts"][0]["provenance"];
    assert_eq!(
        (p["pullRequest"].as_str(), p["actor"].as_str(), p["ci"].as_str()),
        (Some("42"), Some("octocat"), Some("github-actions"))
    );

    let list = stdout(&repo.cmd().args(["state", "list"]).output().expect("run"));
    assert!(
        list.contains("LAST ATTEMPT") && list.contains("ANDROID-8F2K") && list.contains("1 action; ledger serial"),
        "{list}"
    );

    let csv = stdout(&repo.cmd().args(["state", "export", "--format", "csv"]).output().expect("run"));
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let row: Vec<&str> = lines.next().expect("row").split(',').collect();
    let cell = |name: &str| row[header.iter().position(|h| *h == name).expect(name)];
    assert_eq!(
        (cell("pull_request"), cell("actor"), cell("ticket"), cell("http_status")),
        ("42", "octocat", "INC-4711", "204")
    );
    assert!(lines.next().is_none(), "one attempt, one row: {csv}");
}

// `state --simulate` reads the ledger the quick start wrote.
#[test]
fn state_simulate_reads_the_simulated_ledger() {
    let repo = Repo::from_examples();
    let first = "manifests/helpdesk/inc-4711-lost-phone.yaml";
    repo.cmd().args(["apply", "--simulate", "--auto-approve", first]).assert().success();
    repo.cmd().args(["apply", "--simulate", "--auto-approve"]).assert().success();
    let out = repo.cmd().args(["state", "list", "--simulate"]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("7 actions"), "{}", stdout(&out));
    // Latest first: the action applied first is listed last.
    let text = stdout(&out);
    let rows: Vec<&str> = text.lines().skip(1).take_while(|l| !l.is_empty()).collect();
    assert!(rows.last().is_some_and(|l| l.contains("inc-4711-lost-phone")), "{rows:?}");
    let out = repo.cmd().args(["state", "--simulate", "export", "--format", "json"]).output().expect("run");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["actions"].as_array().map(Vec::len), Some(7));
}

// A newcomer who has only tried `--simulate` has a simulated ledger and no real one: `state list`
// used to say only "run `reconcile init`", which would bind a real ledger to a tenant they may
// not have yet. It names the simulated ledger and `--simulate`; with `--simulate` and no
// simulated ledger, it names the run that creates one.
#[test]
fn a_missing_ledger_names_the_simulated_one_when_there_is_one() {
    let repo = Repo::from_examples();
    let out = repo.cmd().args(["state", "--simulate", "list"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("there is no simulated ledger at `.reconcile/state.simulated.json`"), "{err}");
    assert!(err.contains("a `--simulate` run creates it: `reconcile apply --simulate`"), "{err}");
    assert!(!err.contains("reconcile init"), "{err}");
    // Nothing simulated yet: the real ledger's hint, as before.
    let out = repo.cmd().args(["state", "list"]).output().expect("run");
    assert!(stderr(&out).contains("hint: run `reconcile init` once"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("--simulate"), "{}", stderr(&out));

    repo.cmd().args(["apply", "--simulate", "--auto-approve"]).assert().success();
    for verb in ["list", "export"] {
        let out = repo.cmd().args(["state", verb]).output().expect("run");
        assert_eq!(out.status.code(), Some(1), "{verb}: a simulated ledger never stands in for the real one");
        assert!(out.stdout.is_empty(), "{verb}");
        let err = stderr(&out);
        assert!(
            err.contains("there is no ledger at `.reconcile/state.json`, only the simulated one `.reconcile/state.simulated.json`"),
            "{err}"
        );
        assert!(
            err.contains(&format!("`reconcile state --simulate {verb}` reads what `--simulate` runs recorded")),
            "{err}"
        );
        assert!(err.contains("run `reconcile init` once"), "{err}");
    }
    repo.cmd().args(["state", "--simulate", "list"]).assert().success();
}

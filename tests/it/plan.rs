//! `reconcile plan --offline` end to end.

use std::collections::BTreeSet;

use crate::common::{Repo, stderr, stdout};
use intune_reconcile::ledger::Status;
use predicates::prelude::*;

fn plan_json(repo: &Repo, extra: &[&str]) -> serde_json::Value {
    let out = repo.cmd().args(["plan", "--offline", "--format", "json"]).args(extra).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("plan is JSON")
}

fn keys(plan: &serde_json::Value) -> BTreeSet<String> {
    plan["actions"].as_array().expect("actions").iter().map(|a| a["key"].as_str().expect("key").to_owned()).collect()
}

#[test]
fn examples_plan_reads_like_terraform() {
    let repo = Repo::from_examples();
    let out = repo.cmd().args(["plan", "--offline"]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for want in [
        "Offline plan: devices were not looked up in Intune.",
        "manifest inc-4711-lost-phone (manifests/helpdesk/inc-4711-lost-phone.yaml): ticket INC-4711, reason \"User locked out of work profile\", requested by alice@contoso.com\n  + reset passcode  id=3fa85f64-5717-4562-b3fc-2c963f66afa6",
        "key 6586dc0f5220",
        "manifest inc-4791-warehouse-scanner (manifests/helpdesk/inc-4790-batch.yaml): ticket INC-4791, reason \"Shared scanner locked by a leaver\", requested by bob@contoso.com\n  + reset passcode  deviceName=WH-SCANNER-07",
        "\nPlan: 7 to reset.\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    // The legend names only the symbols the plan uses; nothing was left out, so no count of it.
    assert!(text.contains("Legend: + reset passcode\n"), "{text}");
    assert!(!text.contains("already done"), "{text}");
    // One line per action, within 120 columns.
    for line in text.lines().filter(|l| l.starts_with("  ")) {
        assert!(line.chars().count() <= 120, "{line:?}");
    }
}

#[test]
fn detailed_exitcode_says_whether_anything_is_pending() {
    let repo = Repo::from_examples();
    repo.cmd().args(["plan", "--offline", "--detailed-exitcode"]).assert().code(2);
    let actions = repo.actions();
    repo.record(&actions.iter().collect::<Vec<_>>(), Status::Accepted, None);
    repo.cmd()
        .args(["plan", "--offline", "--detailed-exitcode"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("No changes.\n7 already done, 0 orphaned (`--show-done` to list them).\n"));
    repo.write("manifests/broken.yaml", "kind: [");
    repo.cmd().args(["plan", "--offline", "--detailed-exitcode"]).assert().code(1);
}

// Editing ticket, reason, requestedBy, comments, order, quoting or whitespace must never create a
// new action: that would reset someone's phone a second time.
#[test]
fn cosmetic_edits_keep_keys_and_identity_edits_change_them() {
    let repo = Repo::empty();
    repo.write(
        "manifests/a.yaml",
        "apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: inc-1\n  ticket: INC-1\nspec:\n  devices:\n    - serialNumber: R58M12345AB\n    - id: 3fa85f64-5717-4562-b3fc-2c963f66afa6\n",
    );
    let before = keys(&plan_json(&repo, &[]));
    repo.write(
        "manifests/a.yaml",
        "# moved around, re-quoted, re-cased, commented\nkind: \"PasscodeReset\"\napiVersion: 'intune-reconcile/v1'\nspec:\n  round: 1\n  collection: managedDevices\n  devices:\n    - id: \"3FA85F64-5717-4562-B3FC-2C963F66AFA6\"   # the lost one\n    -   serialNumber:    'R58M12345AB'\nmetadata: {name: inc-1, ticket: INC-2, reason: changed, requestedBy: someone@contoso.com}\n",
    );
    assert_eq!(keys(&plan_json(&repo, &[])), before);

    repo.write(
        "manifests/a.yaml",
        "apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: inc-1\nspec:\n  round: 2\n  devices:\n    - serialNumber: R58M12345AB\n    - id: 3fa85f64-5717-4562-b3fc-2c963f66afa6\n",
    );
    assert!(keys(&plan_json(&repo, &[])).is_disjoint(&before), "round bump makes new actions");
    repo.write(
        "manifests/a.yaml",
        "apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: inc-1-renamed\nspec:\n  devices:\n    - serialNumber: R58M12345AB\n",
    );
    assert!(keys(&plan_json(&repo, &[])).is_disjoint(&before), "rename makes new actions");
}

#[test]
fn ledger_states_show_as_done_attention_and_orphaned() {
    let repo = Repo::from_examples();
    let actions = repo.actions();
    repo.record(&[&actions[0]], Status::Done, None);
    repo.record(&[&actions[1]], Status::Unknown, None);
    repo.record(&[&actions[2]], Status::NotExecuted, None);
    // Then the manifest of actions[3..] disappears: its recorded action becomes an orphan.
    let orphan = actions.iter().find(|a| a.manifest == "sec-2026-118-phished-passcodes").expect("example");
    repo.record(&[orphan], Status::Accepted, None);
    std::fs::remove_file(repo.path().join("manifests/security/sec-2026-118-compromised.yaml")).expect("rm");

    // Compact by default: what changes and what needs someone; the rest in one line.
    let out = repo.cmd().args(["plan", "--offline"]).output().expect("run");
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!text.contains("  = done") && !text.contains("orphaned from manifest"), "{text}");
    assert!(
        text.contains("  ! unknown")
            && text.contains("\n      outcome unknown (the request may have reached Intune): run `reconcile refresh`"),
        "{text}"
    );
    assert!(text.contains("Legend: + reset passcode, ! needs attention\n"), "{text}");
    assert!(
        text.contains("\nPlan: 2 to reset.\n1 action needs attention (marked `!`).\n1 already done, 1 orphaned (`--show-done` to list them).\n"),
        "{text}"
    );
    // --show-done lists everything, as plans always did.
    let out = repo.cmd().args(["plan", "--offline", "--show-done"]).output().expect("run");
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(text.contains("  = done"), "{text}");
    assert!(text.contains("  ! unknown") && text.contains("run `reconcile refresh`"), "{text}");
    assert!(text.contains("orphaned from manifest sec-2026-118-phished-passcodes"), "{text}");
    assert!(text.contains("Plan: 2 to reset, 1 already done, 1 orphaned.\n1 action needs attention"), "{text}");
    assert!(!text.contains("--show-done"), "{text}");

    let json = plan_json(&repo, &[]);
    assert_eq!(json["format_version"], 2);
    assert_eq!(
        json["summary"],
        serde_json::json!({"to_reset": 2, "reset_passcode": 2, "remove_passcode": 0, "already_done": 1, "orphaned": 1, "attention": 1, "blocked": 0, "same_device": 0, "adopt": 0, "violations": 0})
    );
    // JSON lists every action, compact or not: the 4 still asked for, and the orphan.
    assert_eq!(json["actions"].as_array().map(Vec::len), Some(5));
    assert_eq!(plan_json(&repo, &["--show-done"]), json);

    // Limited to some paths, nothing is orphaned: the other manifests were simply not read.
    let limited = plan_json(&repo, &["manifests/helpdesk/inc-4711-lost-phone.yaml"]);
    assert_eq!(limited["summary"]["orphaned"], 0);
    assert_eq!(limited["actions"].as_array().map(Vec::len), Some(1));
}

#[test]
fn markdown_plan_has_marker_summary_table_and_details() {
    let repo = Repo::from_examples();
    let out = repo.cmd().args(["plan", "--offline", "--format", "markdown"]).output().expect("run");
    assert!(out.status.success());
    insta::assert_snapshot!(stdout(&out));
}

#[test]
fn online_plan_without_credentials_suggests_offline_or_simulate() {
    let repo = Repo::from_examples();
    let out = repo.cmd().arg("plan").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("no Graph credentials") && err.contains("--offline") && err.contains("--simulate"), "{err}");
}

/// `reconcile ARGS` on a colour terminal (`TERM=xterm`), with `env`.
fn on_a_terminal(repo: &Repo, args: &str, env: &[(&str, String)]) -> String {
    let mut all = vec![("TERM", "xterm".to_owned())];
    all.extend(env.iter().cloned());
    repo.on_a_terminal(args, &all, "")
}

#[test]
fn the_plan_is_coloured_on_a_terminal_only() {
    let repo = Repo::from_examples();
    let plain = repo.cmd().args(["plan", "--offline"]).output().expect("run");
    assert!(!stdout(&plain).contains('\u{1b}'), "no colour in a pipe");
    let tty = on_a_terminal(&repo, "plan --offline", &[]);
    // Colour on the symbol and the status only; the manifest headings bold.
    assert!(
        tty.contains("  \u{1b}[32m+\u{1b}[0m \u{1b}[32mreset passcode\u{1b}[0m  id=3fa85f64"),
        "resets are green on a terminal: {tty:?}"
    );
    assert!(tty.contains("\u{1b}[1mmanifest inc-4711-lost-phone ("), "{tty:?}");
    for quiet in [
        on_a_terminal(&repo, "plan --offline", &[("NO_COLOR", "1".into())]),
        on_a_terminal(&repo, "plan --offline --no-color", &[]),
    ] {
        assert!(!quiet.contains("\u{1b}[3"), "NO_COLOR and --no-color: {quiet:?}");
        assert!(quiet.contains("  + "), "{quiet:?}");
    }
}

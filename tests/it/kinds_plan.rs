//! Manifests and plans of every kind of device action, through the real binary: what a
//! `DeviceAction` manifest may say (checked with positions), how plans name each kind (destructive
//! first, with what it erases), which edits make a new action, and the JSON Schema an editor uses.

use crate::common::{Repo, stderr, stdout};

fn device_action(name: &str, action: &str, extra: &str) -> String {
    format!(
        "apiVersion: intune-reconcile/v1\nkind: DeviceAction\nmetadata:\n  name: {name}\n  ticket: SEC-1\nspec:\n  action: {action}\n{extra}  devices:\n    - serialNumber: F4GZL7QXN72C\n"
    )
}

#[test]
fn device_action_manifests_are_checked_with_positions() {
    let repo = Repo::empty();
    let docs = [
        device_action("a-unknown", "selfDestruct", ""),
        device_action("b-param", "wipe", "  parameters:\n    keepUserData: \"yes\"\n    colour: red\n"),
        device_action("c-secret", "wipe", "  parameters:\n    macOsUnlockCode: \"123456\"\n"),
        device_action("d-none", "remoteLock", "  parameters:\n    quick: true\n"),
        device_action("e-beta", "enableLostMode", "  parameters:\n    message: Call us\n"),
        "apiVersion: intune-reconcile/v1\nkind: DeviceAction\nmetadata: {name: f-missing}\nspec:\n  devices: [{serialNumber: X1}]\n".to_owned(),
        "apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata: {name: g-reset}\nspec:\n  action: wipe\n  devices: [{serialNumber: X1}]\n".to_owned(),
    ];
    repo.write("manifests/a.yaml", docs.join("---\n"));
    let out = repo.cmd().arg("validate").output().expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    for want in [
        "manifests/a.yaml:7:11: error: unknown action `selfDestruct`",
        "spec.action is Graph's name of the action (case matters): resetPasscode, remoteLock,",
        "error: spec.parameters.keepUserData must be true or false (unquoted), not a string",
        "error: unknown parameter `colour`",
        "`wipe` takes keepEnrollmentData, keepUserData, persistEsimDataPlan",
        "error: spec.parameters.macOsUnlockCode is not accepted",
        "the unlock code is a secret and a manifest is in git",
        "`remoteLock` takes no parameters: remove spec.parameters",
        "error: action `enableLostMode` exists only in the beta API",
        "error: `kind: DeviceAction` needs spec.action",
        "error: spec.action and spec.parameters belong to `kind: DeviceAction`",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(!err.contains("123456"), "a secret is never echoed:\n{err}");
    // One error per problem, each with its line and column.
    let positioned = err.lines().filter(|l| l.starts_with("manifests/a.yaml:") && l.contains(": error: ")).count();
    assert_eq!(positioned, 8, "{err}");
}

/// The lost-device playbook of the examples as its first pull request has it, with a reset
/// beside it.
fn playbook() -> Repo {
    let repo = Repo::empty();
    let examples = crate::common::examples().join("lost-device");
    repo.write("reconcile.yaml", std::fs::read(examples.join("reconcile.yaml")).expect("config"));
    for file in ["lock.yaml", "wipe.yaml"] {
        repo.write(
            &format!("manifests/{file}"),
            std::fs::read(examples.join("manifests").join(file)).expect("manifest"),
        );
    }
    repo.write(
        "manifests/reset.yaml",
        "apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata: {name: inc-1}\nspec:\n  devices: [{serialNumber: R58M12345AB}]\n",
    );
    repo
}

#[test]
fn the_playbook_locks_at_once_and_wipes_once_a_ticket_confirms_it() {
    let repo = playbook();
    let out = repo.cmd().args(["plan", "--offline"]).output().expect("plan");
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "a destructive action without a ticket is a violation:\n{text}");
    assert!(text.contains("Plan: 1 to reset, 1 to lock, 1 to enable lost mode."), "{text}");
    assert!(text.contains("x blocked"), "{text}");
    assert!(text.contains("built in for destructive actions"), "{text}");
    assert!(!text.contains("DESTRUCTIVE:"), "nothing destructive is sent:\n{text}");
    let before = keys(&repo);
    confirm_wipe(&repo);
    assert_eq!(keys(&repo), before, "the ticket confirms the same wipe, it does not make a new one");
}

/// The playbook's second pull request: the wipe's manifest gets its ticket.
fn confirm_wipe(repo: &Repo) {
    let wipe = repo.read("manifests/wipe.yaml");
    repo.write(
        "manifests/wipe.yaml",
        wipe.replace("  reason: Phone not recovered", "  ticket: SEC-2026-311\n  reason: Phone not recovered"),
    );
}

#[test]
fn plans_name_every_kind_destructive_first_with_what_it_erases() {
    let repo = playbook();
    confirm_wipe(&repo);
    let text = repo.cmd().args(["plan", "--offline"]).output().expect("plan");
    assert!(text.status.success(), "{}", stderr(&text));
    let text = stdout(&text);
    assert!(text.contains("Plan: 1 to wipe, 1 to reset, 1 to lock, 1 to enable lost mode."), "{text}");
    assert!(
        text.contains("DESTRUCTIVE: wipe of 1 device erases everything on it: apps, settings and all user data, and its enrollment."),
        "{text}"
    );
    assert!(text.contains("Legend: + send"), "{text}");
    let wipe = text.find("+ wipe").expect("the wipe's line");
    assert!(text.find("+ lock").is_some_and(|lock| wipe < lock), "destructive first:\n{text}");

    let json = repo.cmd().args(["plan", "--offline", "--format", "json"]).output().expect("plan");
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    let kinds: Vec<(&str, &str)> = json["kinds"]
        .as_array()
        .expect("kinds")
        .iter()
        .map(|k| (k["kind"].as_str().unwrap_or_default(), k["class"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("wipe", "destructive"),
            ("PasscodeReset", "disruptive"),
            ("remoteLock", "disruptive"),
            ("enableLostMode", "disruptive")
        ]
    );
    assert_eq!(json["destructive"].as_array().map(Vec::len), Some(1), "{json}");
    let lost = json["actions"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["kind"] == "enableLostMode"))
        .expect("lost mode entry");
    assert_eq!(lost["action"], "enableLostMode");
    assert_eq!(lost["parameters"]["phoneNumber"], "+49 30 1234567");
    let reset =
        json["actions"].as_array().and_then(|a| a.iter().find(|e| e["kind"] == "PasscodeReset")).expect("reset");
    assert_eq!(reset["action"], "reset-passcode");
    assert!(reset.get("parameters").is_none(), "a reset has none: {reset}");

    let md = repo.cmd().args(["plan", "--offline", "--format", "markdown"]).output().expect("plan");
    let md = stdout(&md);
    let caution = md.find("> [!CAUTION]\n> **Destructive:** wipe of 1 device").expect("caution block");
    let first_details = md.find("<details>").expect("details");
    assert!(caution < first_details, "{md}");
    assert!(md[first_details..].starts_with("<details><summary>⚠ destructive: "), "{md}");
    assert!(md.contains("| `wipe` | destructive | 1 |"), "{md}");
}

/// The key of each action of the plan, by manifest name.
fn keys(repo: &Repo) -> std::collections::BTreeMap<String, String> {
    let out = repo.cmd().args(["plan", "--offline", "--format", "json"]).output().expect("plan");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    json["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .map(|e| {
            (e["manifest"].as_str().unwrap_or_default().to_owned(), e["key"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

#[test]
fn parameters_make_a_new_action_and_wording_does_not() {
    let repo = Repo::empty();
    let wipe = |keep: &str| device_action("w", "wipe", &format!("  parameters:\n    keepUserData: {keep}\n"));
    repo.write("manifests/w.yaml", wipe("true"));
    let kept = keys(&repo);
    repo.write("manifests/w.yaml", wipe("false"));
    let erased = keys(&repo);
    assert_ne!(kept["w"], erased["w"], "keepUserData is part of the identity");
    // `false` written out or left out is the same wipe.
    repo.write("manifests/w.yaml", device_action("w", "wipe", ""));
    assert_eq!(keys(&repo)["w"], erased["w"]);

    repo.write("manifests/w.yaml", device_action("w", "remoteLock", ""));
    let lock = keys(&repo);
    let reworded =
        device_action("w", "remoteLock", "").replace("ticket: SEC-1", "ticket: SEC-2\n  reason: another word");
    repo.write("manifests/w.yaml", format!("# a comment\n{reworded}"));
    assert_eq!(keys(&repo), lock, "ticket, reason and comments are not identity");

    // `action: resetPasscode` is the PasscodeReset kind: same key.
    repo.write("manifests/w.yaml", device_action("w", "resetPasscode", ""));
    let as_action = keys(&repo);
    repo.write(
        "manifests/w.yaml",
        device_action("w", "x", "").replace("kind: DeviceAction", "kind: PasscodeReset").replace("  action: x\n", ""),
    );
    assert_eq!(keys(&repo), as_action);
}

#[test]
fn every_example_manifest_follows_the_published_schema() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(crate::common::examples().join("../schemas/manifest.v1.json")).expect("schema"),
    )
    .expect("json");
    let validator = jsonschema::validator_for(&schema).expect("a valid schema");
    let mut checked = 0;
    for dir in ["manifests", "lost-device/manifests"] {
        for entry in walkdir::WalkDir::new(crate::common::examples().join(dir)) {
            let entry = entry.expect("walk");
            if entry.path().extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).expect("read");
            for doc in text.split("\n---\n") {
                let value: serde_json::Value = serde_saphyr::from_str(doc).expect("yaml");
                let errors: Vec<String> = validator.iter_errors(&value).map(|e| e.to_string()).collect();
                assert!(errors.is_empty(), "{}: {errors:?}", entry.path().display());
                checked += 1;
            }
        }
    }
    assert!(checked >= 7, "{checked}");
    // And the schema says no where validation does.
    let bad = serde_json::json!({
        "apiVersion": "intune-reconcile/v1", "kind": "DeviceAction", "metadata": {"name": "x"},
        "spec": {"action": "remoteLock", "parameters": {"keepUserData": true}, "devices": [{"serialNumber": "A"}]}
    });
    assert!(!validator.is_valid(&bad), "remoteLock takes no parameters");
    let wipe = serde_json::json!({
        "apiVersion": "intune-reconcile/v1", "kind": "DeviceAction", "metadata": {"name": "x"},
        "spec": {"action": "wipe", "parameters": {"keepUserData": true}, "devices": [{"serialNumber": "A"}]}
    });
    assert!(validator.is_valid(&wipe));
}

#[test]
fn the_ledger_lists_exports_and_reports_the_kind() {
    let repo = Repo::empty();
    repo.write("manifests/lock.yaml", device_action("lock-1", "remoteLock", ""));
    repo.write(
        "manifests/reset.yaml",
        "apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata: {name: inc-1}\nspec:\n  devices: [{serialNumber: R58M12345AB}]\n",
    );
    let out =
        repo.cmd().args(["apply", "--simulate", "--auto-approve", "--junit", "junit.xml"]).output().expect("apply");
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let junit = repo.read("junit.xml");
    assert!(junit.contains("name=\"remoteLock serialNumber=F4GZL7QXN72C"), "{junit}");
    assert!(junit.contains("name=\"resetPasscode serialNumber=R58M12345AB"), "{junit}");

    let list = |kind: &str| {
        let out = repo
            .cmd()
            .args(["state", "list", "--simulate", "--format", "json", "--kind", kind])
            .output()
            .expect("list");
        assert!(out.status.success(), "{}", stderr(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        json["actions"]
            .as_array()
            .expect("actions")
            .iter()
            .map(|a| a["manifest"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(list("remoteLock"), ["lock-1"]);
    assert_eq!(list("PasscodeReset"), ["inc-1"]);
    assert_eq!(list("resetPasscode,remoteLock").len(), 2);
    let bad = repo.cmd().args(["state", "list", "--simulate", "--kind", "selfDestruct"]).output().expect("list");
    assert!(!bad.status.success(), "a usage error");
    assert!(stderr(&bad).contains("unknown kind `selfDestruct`"), "{}", stderr(&bad));

    let csv = repo.cmd().args(["state", "export", "--simulate", "--format", "csv"]).output().expect("export");
    let csv = stdout(&csv);
    let header = csv.lines().next().expect("header");
    assert!(header.ends_with(",kind,parameters"), "{header}");
    assert!(csv.lines().any(|l| l.contains("lock-1") && l.ends_with(",remoteLock,")), "{csv}");
}

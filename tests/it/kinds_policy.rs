//! Risk classes and per-kind policy end to end: the built-in class defaults (a destructive action
//! needs a ticket, at most five per apply, and is never streamed; a disruptive one has its
//! cooldown), `policy.kinds.<graphName>` in the repository and the operator's floor, and a change
//! that loosens a kind's rule.

use crate::common::{Repo, sim, sim_config, stderr, stdout};
use intune_reconcile::sim::{Fault, FaultKind, SimHandle};

/// The fixture's corporate Android devices (a wipe takes them).
const ANDROID: [&str; 5] = [
    "3fa85f64-5717-4562-b3fc-2c963f66afa6",
    "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f",
    "0f9e8d7c-6b5a-4948-8372-615f4e3d2c1b",
    "9b2d7c1e-4f3a-4e8b-a6d5-0c1f2e3d4b5a",
    "b5c6d7e8-f9a0-4b1c-8d3e-4f5a6b7c8d9e",
];
/// The fixture's AOSP device (a wipe takes it).
const AOSP: &str = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d";
/// The fixture's Windows laptop (a retire takes it).
const WINDOWS: &str = "4d5e6f7a-8b9c-4d0e-9f1a-2b3c4d5e6f7a";
/// The fixture's personally-owned Android phone (a retire takes it).
const PERSONAL: &str = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9";
/// The fixture's supervised corporate iPhone (lock and lost mode).
const IPHONE: &str = "e2f3a4b5-c6d7-4e8f-9a0b-1c2d3e4f5a6b";

/// A `kind: DeviceAction` manifest named `name` sending `action` to the devices `ids`, with
/// `meta` under `metadata:` and `spec` lines (indented) before the devices.
fn action(name: &str, action: &str, ids: &[&str], meta: &str, spec: &str) -> String {
    let devices: String = ids.iter().map(|id| format!("    - id: {id}\n")).collect();
    format!(
        "apiVersion: intune-reconcile/v1\nkind: DeviceAction\nmetadata:\n  name: {name}\n{meta}spec:\n  action: {action}\n{spec}  devices:\n{devices}"
    )
}

const TICKET: &str = "  ticket: INC-1\n";

/// A repository with the fast config plus `policy` (lines under `policy:`, or none).
fn repo_with(policy: &str) -> Repo {
    let repo = Repo::empty();
    repo.fast_config(&if policy.is_empty() { String::new() } else { format!("policy:\n{policy}") });
    repo
}

/// The device-action POSTs of `action` the simulator received from Graph clients.
fn sent(sim: &SimHandle, action: &str) -> Vec<String> {
    sim.requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with(&format!("/{action}")) && !r.path.starts_with("/_sim/"))
        .map(|r| r.path)
        .collect()
}

// A destructive action without a ticket is a violation of its manifest, by the built-in
// default, at validate, plan and apply; five destructive actions go, a sixth refuses the run.
#[test]
fn destructive_actions_need_a_ticket_and_at_most_five_go_per_apply() {
    let sim = sim(sim_config());
    let repo = repo_with("");
    repo.write("manifests/wipe.yaml", action("lost", "wipe", &ANDROID[..1], "", ""));
    let out = repo.cmd().arg("validate").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            "manifests/wipe.yaml:4:9: error: policy requireTicket: manifest `lost` has no metadata.ticket, which every wipe needs (built in for destructive actions)"
        ),
        "{}",
        stderr(&out)
    );
    repo.cmd_on(&sim).arg("plan").assert().code(1);
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().code(1);
    assert!(sent(&sim, "wipe").is_empty(), "a wipe without a ticket is never sent");

    // Six destructive actions (four wipes, two retires across manifests): the run is refused.
    let repo = repo_with("");
    repo.write("manifests/wipe.yaml", action("wipes", "wipe", &[ANDROID[0], ANDROID[1], ANDROID[2], AOSP], TICKET, ""));
    repo.write("manifests/retire.yaml", action("retires", "retire", &[WINDOWS, PERSONAL], TICKET, ""));
    let plan = repo.cmd_on(&sim).args(["plan", "--format", "json"]).output().expect("run");
    assert_eq!(plan.status.code(), Some(1), "{}", stdout(&plan));
    let json: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("json");
    let v = &json["violations"][0];
    assert_eq!((v["rule"].as_str(), v["manifest"].as_str()), (Some("maxActionsPerApply"), None), "{json}");
    assert!(
        v["message"].as_str().is_some_and(|m| m.contains("the plan sends 6 destructive actions")
            && m.contains("more than the limit of 5 built in for destructive actions")),
        "{v}"
    );
    let apply = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(apply.status.code(), Some(1));
    assert!(sent(&sim, "wipe").is_empty() && sent(&sim, "retire").is_empty(), "nothing is sent");

    // Five: exactly the limit.
    repo.write("manifests/retire.yaml", action("retires", "retire", &[WINDOWS], TICKET, ""));
    let apply = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert!(apply.status.success(), "{}{}", stdout(&apply), stderr(&apply));
    assert_eq!((sent(&sim, "wipe").len(), sent(&sim, "retire").len()), (4, 1));
}

// `policy.kinds.wipe.maxActionsPerApply: 1` counts wipes only; the operator's floor's `kinds:`
// applies over a looser repository value (with a warning naming both).
#[test]
fn a_kinds_limit_counts_its_own_kind_and_the_floor_applies() {
    let sim = sim(sim_config());
    let repo = repo_with("  kinds:\n    wipe: { maxActionsPerApply: 1 }\n");
    repo.write("manifests/wipe.yaml", action("wipes", "wipe", &ANDROID[..2], TICKET, ""));
    let plan = repo.cmd_on(&sim).arg("plan").output().expect("run");
    assert_eq!(plan.status.code(), Some(1));
    assert!(
        stdout(&plan).contains(
            "reconcile.yaml:10:33: policy maxActionsPerApply: the plan sends 2 wipe actions, more than policy.kinds.wipe's limit of 1"
        ),
        "{}",
        stdout(&plan)
    );
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().code(1);
    assert!(sent(&sim, "wipe").is_empty());
    // One wipe and a retire: the retire does not count for the wipe's limit.
    repo.write("manifests/wipe.yaml", action("wipes", "wipe", &ANDROID[..1], TICKET, ""));
    repo.write("manifests/retire.yaml", action("retires", "retire", &[WINDOWS], TICKET, ""));
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().success();
    assert_eq!((sent(&sim, "wipe").len(), sent(&sim, "retire").len()), (1, 1));

    // The operator's floor: one wipe per apply, although the repository allows three.
    let dir = tempfile::tempdir().expect("tempdir");
    let floor = dir.path().join("policy.yaml");
    std::fs::write(&floor, "kinds:\n  wipe:\n    maxActionsPerApply: 1\n").expect("write");
    let repo = repo_with("  kinds:\n    wipe: { maxActionsPerApply: 3 }\n");
    repo.write("manifests/wipe.yaml", action("wipes", "wipe", &ANDROID[2..4], TICKET, ""));
    let plan = repo.cmd_on(&sim).env("RECONCILE_POLICY", &floor).arg("plan").output().expect("run");
    assert_eq!(plan.status.code(), Some(1));
    assert!(
        stderr(&plan).contains("policy.kinds.wipe.maxActionsPerApply 3 is looser than the operator's 1"),
        "{}",
        stderr(&plan)
    );
    assert!(stdout(&plan).contains("more than policy.kinds.wipe's limit of 1"), "{}", stdout(&plan));
    repo.cmd_on(&sim).env("RECONCILE_POLICY", &floor).args(["apply", "--auto-approve"]).assert().code(1);
    assert_eq!(sent(&sim, "wipe").len(), 1, "nothing more was sent");
    // An unknown kind in the floor is an error at its line.
    std::fs::write(&floor, "kinds:\n  wipeDevice: { maxActionsPerApply: 1 }\n").expect("write");
    let out = repo.cmd().env("RECONCILE_POLICY", &floor).arg("validate").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .contains(&format!("{}:2:3: error: unknown kind of action `wipeDevice` in policy.kinds", floor.display())),
        "{}",
        stderr(&out)
    );
    // And an unknown key under a kind, in the repository.
    let repo = repo_with("  kinds:\n    wipe: { maxActions: 1 }\n");
    let out = repo.cmd().arg("validate").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("reconcile.yaml:10:") && stderr(&out).contains("maxActions"), "{}", stderr(&out));
}

// A pull request that raises a kind's limit and drops a kind's ticket rule loosens the policy:
// the plan says so first, and its own actions are still judged by the policy before it.
#[test]
fn a_change_loosening_a_kinds_rule_cannot_use_the_loosening() {
    let sim = sim(sim_config());
    let repo = repo_with("  kinds:\n    wipe: { maxActionsPerApply: 1 }\n    remoteLock: { requireTicket: true }\n");
    repo.write(".gitignore", ".reconcile/\n");
    repo.git(&["init", "-q"]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-qm", "main"]);
    repo.git(&["checkout", "-qb", "loosen"]);
    let config = repo.read("reconcile.yaml");
    repo.write(
        "reconcile.yaml",
        config
            .replace("maxActionsPerApply: 1", "maxActionsPerApply: 3")
            .replace("    remoteLock: { requireTicket: true }\n", ""),
    );
    repo.write("manifests/wipe.yaml", action("wipes", "wipe", &ANDROID[..2], TICKET, ""));
    repo.write("manifests/lock.yaml", action("lock", "remoteLock", &[IPHONE], "", ""));
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-qm", "loosen"]);
    let out = repo.cmd_on(&sim).args(["plan", "--base", "main", "--format", "json"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let loosens = json["policy"]["loosens"].to_string();
    assert!(loosens.contains("kinds.wipe.maxActionsPerApply 1 → 3"), "{loosens}");
    assert!(loosens.contains("kinds.remoteLock.requireTicket dropped"), "{loosens}");
    let rules: Vec<&str> =
        json["violations"].as_array().expect("violations").iter().filter_map(|v| v["rule"].as_str()).collect();
    assert!(rules.contains(&"maxActionsPerApply") && rules.contains(&"requireTicket"), "{json}");
    let text = repo.cmd_on(&sim).args(["plan", "--base", "main"]).output().expect("run");
    assert!(stdout(&text).starts_with("This change loosens the policy"), "{}", stdout(&text));
    assert!(stdout(&text).contains("merge the policy change on its own first"), "{}", stdout(&text));
    // A tightening of a kind's rule is shown too, and applies at once.
    repo.git(&["checkout", "-qb", "tighten", "main"]);
    let config = repo.read("reconcile.yaml");
    repo.write(
        "reconcile.yaml",
        config.replace("remoteLock: { requireTicket: true }", "remoteLock: { requireTicket: true, cooldown: 48h }"),
    );
    repo.write("manifests/sync.yaml", action("sync", "syncDevice", &ANDROID[..1], "", ""));
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-qm", "tighten"]);
    let out = repo.cmd_on(&sim).args(["plan", "--base", "main", "--format", "json"]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["policy"]["tightens"][0], "kinds.remoteLock.cooldown none → 48h", "{json}");
}

// A disruptive kind's default cooldown: a second lock of one device within 24 h is blocked (the
// first went); a reset has no default cooldown, so its round bump still sends; a lock and lost
// mode on one device in one plan both go (the lost-device playbook).
#[test]
fn a_disruptive_kind_has_a_default_cooldown_and_a_reset_does_not() {
    let sim = sim(sim_config());
    let repo = repo_with("");
    // Lost mode is in Graph's beta API only.
    repo.write("reconcile.yaml", repo.read("reconcile.yaml").replace("graph:\n", "graph:\n  apiVersion: beta\n"));
    repo.write("manifests/lock.yaml", action("lost-phone", "remoteLock", &[IPHONE], "", ""));
    let lost = "  parameters:\n    message: Please call the help desk\n    phoneNumber: '+4930123456'\n";
    repo.write("manifests/lost.yaml", action("lost-mode", "enableLostMode", &[IPHONE], "", lost));
    let apply = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert!(apply.status.success(), "{}{}", stdout(&apply), stderr(&apply));
    assert_eq!((sent(&sim, "remoteLock").len(), sent(&sim, "enableLostMode").len()), (1, 1), "both go");

    repo.write("manifests/lock.yaml", action("lost-phone", "remoteLock", &[IPHONE], "", "  round: 2\n"));
    let plan = repo.cmd_on(&sim).arg("plan").output().expect("run");
    assert_eq!(plan.status.code(), Some(1));
    assert!(
        stdout(&plan).contains("policy cooldown: device id=")
            && stdout(&plan).contains("was sent a remoteLock at")
            && stdout(&plan).contains("the 24h cooldown of disruptive actions (built in) lasts until"),
        "{}",
        stdout(&plan)
    );
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().code(1);
    assert_eq!(sent(&sim, "remoteLock").len(), 1, "the second lock is not sent");

    // A reset, bumped to round 2 right after round 1: sent again, as always.
    let repo = repo_with("");
    repo.write("manifests/reset.yaml", action("reset", "resetPasscode", &ANDROID[..1], "", ""));
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().success();
    repo.write("manifests/reset.yaml", action("reset", "resetPasscode", &ANDROID[..1], "", "  round: 2\n"));
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().success();
    assert_eq!(sent(&sim, "resetPasscode").len(), 2);
}

// With `--auto-approve` and nothing else holding sends back, a destructive action still never
// leaves before every device of the plan is looked up: the last device's lookup is slowed by 503s
// (retried a second later each), and no wipe may reach Intune before it. Without the class rule
// the first wipe would leave as soon as its own device is known.
#[test]
fn destructive_actions_are_never_streamed() {
    let mut config = sim_config();
    config.faults.push(Fault { device_id: Some(AOSP.into()), kind: FaultKind::LookupUnavailable, times: 2 });
    let sim = sim(config);
    let repo = repo_with("");
    // Retried reads wait a second: long enough for a streamed wipe to leave first, if it could.
    let config = repo.read("reconcile.yaml").replace("initial: 10ms, max: 200ms", "initial: 1s, max: 1s");
    repo.write("reconcile.yaml", config);
    let ids = [ANDROID[0], ANDROID[1], ANDROID[2], ANDROID[3], AOSP];
    repo.write("manifests/wipe.yaml", action("wipes", "wipe", &ids, TICKET, ""));
    let apply = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert!(apply.status.success(), "{}{}", stdout(&apply), stderr(&apply));
    let requests = sim.requests();
    let first_wipe = requests
        .iter()
        .position(|r| r.method == "POST" && r.path.ends_with("/wipe"))
        .unwrap_or_else(|| panic!("no wipe was sent"));
    let device_get = |r: &&intune_reconcile::sim::RecordedRequest| {
        r.method == "GET" && ids.iter().any(|id| r.path.ends_with(&format!("/managedDevices/{id}")))
    };
    let gets: Vec<usize> = requests.iter().enumerate().filter(|(_, r)| device_get(r)).map(|(i, _)| i).collect();
    assert!(gets.len() >= ids.len() + 2, "every device looked up, the slow one retried: {gets:?}");
    let late: Vec<&str> = gets.iter().filter(|&&i| i > first_wipe).map(|&i| requests[i].path.as_str()).collect();
    assert!(late.is_empty(), "device lookups after the first wipe left: {late:?}");
    assert_eq!(sent(&sim, "wipe").len(), 5);
}

//! Policy as code end to end: every rule at validate, plan and apply, at its boundaries.

use crate::common::{Repo, posts, sim, sim_config, stderr, stdout};
use intune_reconcile::ledger::Status;

const M: &str = "apiVersion: intune-reconcile/v1
kind: PasscodeReset
metadata:
  name: inc-1
  ticket: INC-0001
  reason: locked out
  requestedBy: alice@contoso.com
spec:
  devices:
    - serialNumber: R58M12345AB
";

fn repo_with(policy: &str, manifest: &str) -> Repo {
    let repo = Repo::empty();
    repo.fast_config(&format!("policy:\n{policy}"));
    repo.write("manifests/a.yaml", manifest);
    repo
}

#[test]
fn metadata_rules_are_checked_by_validate_plan_and_apply() {
    let policy = "  requireTicket: true\n  ticketPattern: '^(INC|SEC)-[0-9]+$'\n  requireReason: true\n  requireRequestedBy: true\n";
    let blank = M.replace("ticket: INC-0001", "ticket: ''");
    let repo = repo_with("  requireTicket: true\n", &blank);
    assert!(
        stderr(&repo.cmd().arg("validate").output().expect("run")).contains("policy requireTicket"),
        "a blank ticket is no ticket"
    );
    let bare = "apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: bare\nspec:\n  devices:\n    - serialNumber: R58M12345AB\n";
    let repo = repo_with(policy, bare);
    let out = repo.cmd().arg("validate").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for rule in ["requireTicket", "requireReason", "requireRequestedBy"] {
        assert!(
            err.contains(&format!("manifests/a.yaml:4:9: error: policy {rule}: manifest `bare` has no")),
            "{rule}: {err}"
        );
    }
    assert!(err.contains("hint: add `ticket:` under `metadata:`"), "{err}");

    repo.write("manifests/a.yaml", M.replace("INC-0001", "TICKET 1"));
    let err = stderr(&repo.cmd().arg("validate").output().expect("run"));
    assert!(
        err.contains(
            "manifests/a.yaml:5:11: error: policy ticketPattern: ticket `TICKET 1` does not match `^(INC|SEC)-[0-9]+$`"
        ),
        "{err}"
    );

    let sim = sim(sim_config());
    let plan = repo.cmd_on(&sim).args(["plan", "--format", "json"]).output().expect("run");
    assert_eq!(plan.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("json");
    assert_eq!(json["summary"]["violations"], 1);
    assert_eq!(json["violations"][0]["line"], 5);
    assert_eq!(json["violations"][0]["rule"], "ticketPattern", "the rule's stable code");
    let apply = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(apply.status.code(), Some(1));
    assert!(stdout(&apply).contains("policy ticketPattern"), "{}", stdout(&apply));
    assert!(posts(&sim).is_empty(), "the manifest breaking the rule sends nothing");

    repo.write("manifests/a.yaml", M);
    repo.cmd().arg("validate").assert().success();
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().success();
}

#[test]
fn the_blast_radius_is_exact_at_the_limit() {
    let three = crate::common::manifest_for(
        "three",
        &[
            "3fa85f64-5717-4562-b3fc-2c963f66afa6",
            "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f",
            "9b2d7c1e-4f3a-4e8b-a6d5-0c1f2e3d4b5a",
        ],
    );
    let sim = sim(sim_config());
    let over = repo_with("  maxActionsPerApply: 2\n", &three);
    let plan = over.cmd_on(&sim).arg("plan").output().expect("run");
    assert_eq!(plan.status.code(), Some(1));
    let text = stdout(&plan);
    assert!(
        text.contains(
            "reconcile.yaml:9:23: policy maxActionsPerApply: the plan resets 3 devices, more than the limit of 2"
        ),
        "{text}"
    );
    assert!(text.contains("1 policy violation: apply will refuse to start."), "{text}");
    let apply = over.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(apply.status.code(), Some(1));
    assert!(posts(&sim).is_empty());

    let at_limit = repo_with("  maxActionsPerApply: 3\n", &three);
    at_limit.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().success();
    assert_eq!(posts(&sim).len(), 3);
}

#[test]
fn protected_devices_by_selector_and_by_what_they_resolve_to() {
    // By the same selector: validate already refuses, pointing at the device line.
    let repo = repo_with("  protectedDevices:\n    - { serialNumber: r58m12345ab, reason: \"CEO's phone\" }\n", M);
    let err = stderr(&repo.cmd().arg("validate").output().expect("run"));
    assert!(err.contains("manifests/a.yaml:10:21: error: policy protectedDevices: device serialNumber=R58M12345AB is protected (CEO's phone; listed at reconcile.yaml:10)"), "{err}");

    // By id, while the manifest names the serial: found once the device is looked up.
    let repo =
        repo_with("  protectedDevices:\n    - { id: C1D2E3F4-A5B6-4C7D-8E9F-0A1B2C3D4E5F, reason: board member }\n", M);
    repo.cmd().arg("validate").assert().success();
    let sim = sim(sim_config());
    let plan = repo.cmd_on(&sim).arg("plan").output().expect("run");
    assert_eq!(plan.status.code(), Some(1));
    assert!(stdout(&plan).contains("policy protectedDevices: device serialNumber=R58M12345AB (device c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f) is protected (board member"), "{}", stdout(&plan));
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().code(1);
    assert!(posts(&sim).is_empty());
}

#[test]
fn allowed_platforms_forbid_ios_passcode_removal() {
    let ios = M.replace("R58M12345AB", "F2LXK0QAHG7F");
    let repo = repo_with("  allowPlatforms: [android, aosp]\n", &ios);
    let sim = sim(sim_config());
    let plan = repo.cmd_on(&sim).args(["plan", "--format", "markdown"]).output().expect("run");
    assert_eq!(plan.status.code(), Some(1));
    assert!(
        stdout(&plan).contains("**1 policy violation: the manifests that break them are not sent; the others are.**"),
        "{}",
        stdout(&plan)
    );
    assert!(stdout(&plan).contains("runs iOS, which the policy does not allow"), "{}", stdout(&plan));
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().code(1);
    assert!(posts(&sim).is_empty());
    let android_ok = repo_with("  allowPlatforms: [android, aosp]\n", M);
    android_ok.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().success();
}

/// Records a reset of `action`'s device at `when`, as an earlier apply would have.
fn reset_at(repo: &Repo, action: &intune_reconcile::core::action::Action, device: &str, when: jiff::Timestamp) {
    record_attempt(repo, action, device, when, 204, Status::Accepted);
}

/// Records one attempt on `action`'s device at `when`, answered `http_status`, leaving `status`.
fn record_attempt(
    repo: &Repo,
    action: &intune_reconcile::core::action::Action,
    device: &str,
    when: jiff::Timestamp,
    http_status: u16,
    status: Status,
) {
    repo.init();
    let mut w = repo.store().lock(std::time::Duration::ZERO, "test", Some("test-tenant")).expect("lock");
    let mut r = intune_reconcile::ledger::Record::new(action, Some(device.into()), when);
    r.status = status;
    r.attempts.push(intune_reconcile::ledger::Attempt {
        started_at: when,
        client_request_id: uuid::Uuid::new_v4(),
        finished_at: Some(when),
        http_status: Some(http_status),
        ..Default::default()
    });
    w.record(r).expect("record");
    w.commit().expect("commit");
}

#[test]
fn cooldown_spans_manifests_and_rounds_and_ends_on_time() {
    let sim = sim(sim_config());
    let device = "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f";
    // Round 1 of another manifest reset the device; now round 2 of this one asks again.
    for (ago_secs, violates) in [(3_600 * 24 - 60, true), (3_600 * 24 + 60, false)] {
        let repo = repo_with("  cooldown: 24h\n", &M.replace("spec:\n", "spec:\n  round: 2\n"));
        repo.write("manifests/old.yaml", M.replace("inc-1", "inc-0"));
        let old = repo.actions().into_iter().find(|a| a.manifest == "inc-0").expect("old action");
        std::fs::remove_file(repo.path().join("manifests/old.yaml")).expect("rm");
        let when = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(ago_secs);
        reset_at(&repo, &old, device, when);
        let out = repo.cmd_on(&sim).arg("plan").output().expect("run");
        let text = stdout(&out);
        assert_eq!(
            text.contains("policy cooldown: device serialNumber=R58M12345AB was reset at"),
            violates,
            "{ago_secs}: {text}"
        );
        assert_eq!(out.status.code(), Some(if violates { 1 } else { 0 }), "{text}");
    }
}

#[test]
fn change_windows_refuse_apply_unless_overridden_with_a_recorded_reason() {
    let now = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC);
    let hhmm = |z: &jiff::ZonedDateTime| format!("{:02}:{:02}", z.hour(), z.minute());
    let later = now.clone() + jiff::SignedDuration::from_hours(2);
    let much_later = now.clone() + jiff::SignedDuration::from_hours(3);
    let window = format!(
        "  changeWindows:\n    timeZone: UTC\n    windows:\n      - {{ days: [mon, tue, wed, thu, fri, sat, sun], from: '{}', to: '{}' }}\n",
        hhmm(&later),
        hhmm(&much_later)
    );
    let repo = repo_with(&window, M);
    let sim = sim(sim_config());
    repo.cmd_on(&sim).arg("plan").assert().success();
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("policy changeWindows:") && stderr(&out).contains("is outside every change window"),
        "{}",
        stderr(&out)
    );
    assert!(posts(&sim).is_empty());
    repo.cmd_on(&sim).args(["apply", "--auto-approve", "--ignore-change-windows"]).assert().code(1);
    let out = repo
        .cmd_on(&sim)
        .args(["apply", "--auto-approve", "--ignore-change-windows", "--reason", "P1 incident INC-9"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let ledger = repo.ledger_json();
    let record = ledger["records"].as_object().expect("records").values().next().expect("one");
    assert_eq!(record["attempts"][0]["policyOverride"], "changeWindows ignored: P1 incident INC-9");

    // Inside a window, nothing is needed.
    let inside = "  changeWindows:\n    timeZone: UTC\n    windows:\n      - { days: [mon, tue, wed, thu, fri, sat, sun], from: '00:00', to: '24:00' }\n";
    let repo = repo_with(inside, &M.replace("R58M12345AB", "ZEB7TC52A07"));
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().success();
}

#[test]
fn violations_become_github_annotations() {
    let repo = repo_with("  requireReason: true\n", &M.replace("  reason: locked out\n", ""));
    let sim = sim(sim_config());
    let out = repo.cmd_on(&sim).arg("plan").env("GITHUB_ACTIONS", "true").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            "::error file=manifests/a.yaml,line=4,col=9::policy requireReason: manifest `inc-1` has no metadata.reason"
        ),
        "{}",
        stderr(&out)
    );
}

// With `--log-format json` a violation's diagnostic carries its rule's code as a field of its own.
#[test]
fn json_logs_carry_the_rule_code() {
    let repo = repo_with("  requireReason: true\n", &M.replace("  reason: locked out\n", ""));
    let out = repo.cmd().args(["--log-format", "json", "validate"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let events: Vec<serde_json::Value> =
        err.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let violation = events
        .iter()
        .find(|e| e["fields"]["message"].as_str().is_some_and(|m| m.contains("has no metadata.reason")))
        .unwrap_or_else(|| panic!("the violation is logged: {err}"));
    assert_eq!(violation["fields"]["code"], "requireReason", "{err}");
}

// Two manifests of one plan resetting one device: the cooldown allows only the first.
#[test]
fn cooldown_covers_two_manifests_in_one_plan() {
    let repo = repo_with("  cooldown: 24h\n", M);
    repo.write(
        "manifests/b.yaml",
        M.replace("inc-1", "inc-2").replace("serialNumber: R58M12345AB", "id: c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f"),
    );
    let sim = sim(sim_config());
    let out = repo.cmd_on(&sim).arg("plan").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("is also reset by manifest `inc-1` in this plan"), "{}", stdout(&out));
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().code(1);
    assert_eq!(posts(&sim).len(), 1, "the first manifest resets the device, the second is stopped");
}

// A rule one manifest breaks stops that manifest only; the repository's rules stop the run.
#[test]
fn a_manifests_violation_stops_only_that_manifest() {
    let repo = repo_with("  requireReason: true\n", &M.replace("  reason: locked out\n", ""));
    repo.write(
        "manifests/b.yaml",
        M.replace("inc-1", "inc-2").replace("serialNumber: R58M12345AB", "id: 3fa85f64-5717-4562-b3fc-2c963f66afa6"),
    );
    let sim = sim(sim_config());
    let plan = repo.cmd_on(&sim).args(["plan", "--format", "json"]).output().expect("run");
    assert_eq!(plan.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("json");
    assert_eq!(json["summary"]["to_reset"], 1, "{json}");
    assert_eq!(json["summary"]["blocked"], 1, "{json}");
    assert_eq!(json["violations"][0]["manifest"], "inc-1");
    assert_eq!(json["violations"][0]["rule"], "requireReason");
    let blocked =
        json["actions"].as_array().expect("actions").iter().find(|a| a["change"] == "blocked").expect("blocked");
    assert_eq!((blocked["manifest"].as_str(), blocked["block"].as_str()), (Some("inc-1"), Some("policy")));
    // As a reviewer reads it, and as GitHub annotates the line (both pinned whole).
    let text = repo.cmd_on(&sim).arg("plan").env("GITHUB_ACTIONS", "true").output().expect("run");
    assert_eq!(text.status.code(), Some(1));
    insta::assert_snapshot!("violation_in_a_text_plan", stdout(&text));
    let annotations: Vec<&str> =
        std::str::from_utf8(&text.stderr).expect("utf-8").lines().filter(|l| l.starts_with("::")).collect();
    insta::assert_snapshot!("violation_as_annotations", annotations.join("\n"));
    let apply = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(apply.status.code(), Some(1), "a blocked manifest remains");
    assert_eq!(posts(&sim).len(), 1);
    assert!(posts(&sim)[0].path.contains("3fa85f64-5717-4562-b3fc-2c963f66afa6"), "only inc-2 was sent");
    assert!(stdout(&apply).contains("policy requireReason"), "{}", stdout(&apply));
}

// A reset whose answer was a 5xx may have run: it counts for the cooldown.
#[test]
fn an_unknown_reset_counts_for_the_cooldown() {
    let repo = repo_with("  cooldown: 24h\n", &M.replace("spec:\n", "spec:\n  round: 2\n"));
    repo.write("manifests/old.yaml", M.replace("inc-1", "inc-0"));
    let old = repo.actions().into_iter().find(|a| a.manifest == "inc-0").expect("old");
    std::fs::remove_file(repo.path().join("manifests/old.yaml")).expect("rm");
    let when = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    record_attempt(&repo, &old, "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f", when, 500, Status::Unknown);
    let sim = sim(sim_config());
    let out = repo.cmd_on(&sim).arg("plan").output().expect("run");
    assert!(stdout(&out).contains("policy cooldown"), "{}", stdout(&out));
}

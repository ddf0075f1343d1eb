//! `reconcile apply` and `refresh` end to end: the real binary against the simulator on loopback.

use std::time::Duration;

use crate::common::spawn::sim_env;
use crate::common::{
    Repo, android_id, android_sim, assert_each_reset_once, batch_repo, manifest_for, posts, sim, sim_config, stderr,
    stdout,
};
use intune_reconcile::settings::Budget;
use intune_reconcile::sim::{Fault, FaultKind, RetryAfter, SimConfig};

#[test]
fn apply_resets_every_device_once_and_a_second_run_sends_nothing() {
    let repo = Repo::from_examples();
    repo.fast_config("");
    let sim = sim(sim_config());
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Apply complete: 7 accepted, 0 rejected, 0 unknown, 0 not executed, 0 blocked."),
        "{}",
        stdout(&out)
    );
    let first = posts(&sim);
    assert_eq!(first.len(), 7);
    for p in &first {
        assert_eq!(p.status, 204);
        assert!(p.authorized, "Authorization carries a live token");
        assert_eq!(p.accept.as_deref(), Some("application/json"));
        assert!(p.user_agent.as_deref().is_some_and(|u| u.starts_with("intune-reconcile/")), "{:?}", p.user_agent);
        let crid = p.client_request_id.as_deref().expect("client-request-id");
        assert!(uuid::Uuid::parse_str(crid).is_ok(), "{crid}");
    }
    let ids: std::collections::HashSet<_> = first.iter().map(|p| p.client_request_id.clone()).collect();
    assert_eq!(ids.len(), 7, "a fresh client-request-id per request");

    let again = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stdout(&again).contains("Nothing to do."), "{}", stdout(&again));
    assert_eq!(posts(&sim).len(), 7, "nothing is sent twice");

    // The ledger records every attempt with both correlation ids.
    let ledger = repo.ledger_json();
    let records = ledger["records"].as_object().expect("records");
    assert_eq!(records.len(), 7);
    for r in records.values() {
        assert_eq!(r["status"], "accepted");
        let a = &r["attempts"][0];
        assert_eq!(a["httpStatus"], 204);
        assert!(a["requestId"].is_string() && a["clientRequestId"].is_string());
        assert!(r["managedDeviceId"].is_string());
    }
    assert_eq!(ledger["tenant"], "test-tenant");
}

// More resets than the lookups may run ahead of the sends (256): past that the lookups wait for
// lookups under way and sends to take their slots, and go on as they do. Every reset leaves
// once, and the run ends (bounded: a lookahead that never drains hangs when the backlog outgrows
// the lookups still to start, which depends on how the re-plans batch the releases).
#[test]
fn lookups_wait_past_the_lookahead_and_go_on_as_sends_leave() {
    let (repo, ids) = batch_repo(300, "");
    let sim = android_sim(300, |c| {
        // One GET per device (no listing), and sends slower than lookups.
        c.list_needs_filter = true;
        c.faults = vec![Fault { device_id: None, kind: FaultKind::AnswerLate(Duration::from_millis(20)), times: 300 }];
        // More than Intune's 200 writes per 20 s: the subject here is the lookahead, not pacing.
        c.write_limit = None;
    });
    let out =
        repo.cmd_on(&sim).args(["apply", "--auto-approve"]).timeout(Duration::from_secs(40)).output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_each_reset_once(&sim, &ids);
}

// Resets Intune still reports as pending: refresh claims each one's result the first time and
// waits on it after, and says so in its counts both times; nothing changes status.
#[test]
fn refresh_counts_what_is_still_pending_as_waiting() {
    let repo = Repo::from_examples();
    repo.fast_config("");
    let sim = sim(SimConfig { complete_after: Duration::from_secs(3600), ..sim_config() });
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().success();
    for pass in ["first", "second"] {
        let out = repo.cmd_on(&sim).arg("refresh").output().expect("run");
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).contains("Refresh: 7 checked, 0 changed, 7 still waiting."), "{pass}: {}", stdout(&out));
    }
    let ledger = repo.ledger_json();
    assert!(ledger["records"].as_object().expect("records").values().all(|r| r["status"] == "accepted"));
}

#[test]
fn refresh_learns_final_states() {
    let repo = Repo::from_examples();
    repo.fast_config("");
    let sim = sim(sim_config());
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().success();
    let out = repo.cmd_on(&sim).arg("refresh").output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Refresh: 7 checked, 7 changed, 0 still waiting."), "{}", stdout(&out));
    let ledger = repo.ledger_json();
    assert!(ledger["records"].as_object().expect("records").values().all(|r| r["status"] == "done"));
    let plan = repo.cmd_on(&sim).args(["plan", "--detailed-exitcode"]).output().expect("run");
    assert_eq!(plan.status.code(), Some(0), "{}", stdout(&plan));
    assert!(stdout(&plan).contains("No changes.\n7 already done, 0 orphaned (`--show-done` to list them)."));
}

// A single 429 means "not executed": retried after the delay, never counted as a reset.
#[test]
fn a_429_storm_ends_with_exactly_one_reset_per_device() {
    for retry_after in [RetryAfter::None, RetryAfter::Seconds(0.3), RetryAfter::HttpDate(Duration::from_secs(1))] {
        let (repo, ids) = batch_repo(12, "");
        let sim = android_sim(12, |c| {
            c.write_limit = Some(Budget { requests: 3, window: Duration::from_millis(500) });
            c.retry_after = retry_after;
        });
        let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
        assert!(out.status.success(), "{retry_after:?}: {}\n{}", stdout(&out), stderr(&out));
        assert_each_reset_once(&sim, &ids);
        let throttled = posts(&sim).iter().filter(|p| p.status == 429).count();
        assert!(throttled > 0, "{retry_after:?}: the storm happened");
        let ledger = repo.ledger_json();
        let recorded_429s: usize = ledger["records"]
            .as_object()
            .expect("records")
            .values()
            .map(|r| r["attempts"].as_array().expect("attempts").iter().filter(|a| a["httpStatus"] == 429).count())
            .sum();
        assert_eq!(recorded_429s, throttled, "every attempt is in the ledger");
    }
}

// 503 before applying and 500 after applying both leave the outcome unknown: never re-sent
// until refresh has looked at the device.
#[test]
fn server_errors_become_unknown_and_refresh_decides() {
    let (repo, ids) = batch_repo(2, "");
    let sim = android_sim(2, |c| {
        c.faults = vec![
            Fault { device_id: Some(android_id(0)), kind: FaultKind::UnavailableBefore, times: 1 },
            Fault { device_id: Some(android_id(1)), kind: FaultKind::ErrorAfter, times: 1 },
        ];
    });
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "unknown outcomes fail the run");
    assert!(stdout(&out).contains("0 accepted, 0 rejected, 2 unknown"), "{}", stdout(&out));
    assert_eq!(posts(&sim).len(), 2, "no retry after 5xx");
    assert_eq!((sim.resets_applied(&ids[0]), sim.resets_applied(&ids[1])), (0, 1));
    // Each attempt keeps Graph's answer: status, request id, error code and message.
    let ledger = repo.ledger_json();
    let mut seen: Vec<(u64, String)> = ledger["records"]
        .as_object()
        .expect("records")
        .values()
        .map(|r| &r["attempts"][0])
        .map(|a| {
            assert!(a["requestId"].is_string() && a["errorMessage"].is_string(), "{a}");
            (a["httpStatus"].as_u64().unwrap_or_default(), a["errorCode"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    seen.sort();
    assert_eq!(seen, [(500, "InternalServerError".to_owned()), (503, "ServiceUnavailable".to_owned())]);

    // A second apply does not touch unknown actions.
    let again = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert!(stdout(&again).contains("2 actions need attention (marked `!`)."), "{}", stdout(&again));
    assert_eq!(posts(&sim).len(), 2);

    // refresh: device 1 shows the reset (done), device 0 shows none after the grace: sendable.
    let out = repo.cmd_on(&sim).arg("refresh").output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("unknown       -> done"), "{text}");
    assert!(text.contains("unknown       -> not-executed"), "{text}");

    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().success();
    assert_eq!(posts(&sim).len(), 3, "only the one that never happened is sent again");
    assert_each_reset_once(&sim, &ids);
}

#[test]
fn a_hang_after_applying_times_out_as_unknown_and_is_not_sent_again() {
    let (repo, ids) = batch_repo(1, "");
    repo.fast_config("");
    repo.write("reconcile.yaml", repo.read("reconcile.yaml").replace("timeout: 2s", "timeout: 1s"));
    let sim = android_sim(1, |c| c.faults = vec![Fault { device_id: None, kind: FaultKind::HangAfter, times: 1 }]);
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("1 unknown"), "{}", stdout(&out));
    // The attempt says why its fate is unknown.
    let ledger = repo.ledger_json();
    let attempt = &ledger["records"].as_object().expect("records").values().next().expect("one")["attempts"][0];
    assert!(
        attempt["errorMessage"].as_str().is_some_and(|m| m.starts_with("no answer within the timeout")),
        "{attempt}"
    );
    repo.cmd_on(&sim).arg("refresh").assert().success();
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().success();
    assert_eq!(posts(&sim).len(), 1);
    assert_each_reset_once(&sim, &ids);
    assert_eq!(
        repo.ledger_json()["records"].as_object().expect("records").values().next().expect("one")["status"],
        "done"
    );
}

// A 401 (expired or revoked token) was not executed: get a new token once and retry.
#[test]
fn token_expiry_gets_a_new_token_and_retries_once() {
    let (repo, ids) = batch_repo(3, "");
    let sim = android_sim(3, |c| {
        c.faults = vec![Fault { device_id: Some(android_id(1)), kind: FaultKind::Unauthorized, times: 1 }]
    });
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_each_reset_once(&sim, &ids);
    let token_requests = sim.requests().iter().filter(|r| r.path.ends_with("/oauth2/v2.0/token")).count();
    assert_eq!(token_requests, 2, "one token, then one more after the 401");

    // Tokens that really expire during a run are renewed before use.
    let (repo, ids) = batch_repo(4, "");
    repo.write(
        "reconcile.yaml",
        repo.read("reconcile.yaml")
            .replace("writeBudget: { requests: 1000, window: 1s }", "writeBudget: { requests: 2, window: 1s }"),
    );
    let sim = android_sim(4, |c| c.token_lifetime = Duration::from_secs(1));
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_each_reset_once(&sim, &ids);
    assert!(posts(&sim).iter().all(|p| p.status == 204));
    assert!(sim.requests().iter().filter(|r| r.path.ends_with("/token")).count() >= 2);
}

#[test]
fn a_token_without_the_permission_sends_nothing() {
    let (repo, _) = batch_repo(2, "");
    let sim = android_sim(2, |c| c.roles = vec![]);
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("lacks the permissions DeviceManagementManagedDevices.Read.All and DeviceManagementManagedDevices.PrivilegedOperations.All that `apply` needs"),
        "{err}"
    );
    assert!(err.contains("application permission") && err.contains("admin consent"), "{err}");
    assert!(posts(&sim).is_empty());
    // A token that can read but not reset: refused too, naming what it has.
    let sim = android_sim(2, |c| c.roles = vec!["DeviceManagementManagedDevices.Read.All".into()]);
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("(it has: DeviceManagementManagedDevices.Read.All)"), "{}", stderr(&out));
    assert!(posts(&sim).is_empty());
}

#[test]
fn ineligible_and_missing_devices_are_blocked_and_never_sent() {
    let repo = Repo::empty();
    repo.fast_config("");
    repo.write(
        "manifests/a.yaml",
        manifest_for(
            "mixed",
            &[
                "4d5e6f7a-8b9c-4d0e-9f1a-2b3c4d5e6f7a",
                "11111111-2222-4333-8444-555555555555",
                "3fa85f64-5717-4562-b3fc-2c963f66afa6",
            ],
        ),
    );
    let sim = sim(sim_config());
    let plan = repo.cmd_on(&sim).arg("plan").output().expect("run");
    assert_eq!(plan.status.code(), Some(1), "blocked devices make plan exit 1");
    let text = stdout(&plan);
    assert!(text.contains("x blocked") && text.contains("Windows is not supported"), "{text}");
    assert!(text.contains("not found in Intune"), "{text}");
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("1 accepted, 0 rejected, 0 unknown, 0 not executed, 2 blocked"), "{}", stdout(&out));
    let sent: Vec<String> = posts(&sim).iter().map(|p| p.path.clone()).collect();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].contains("3fa85f64-5717-4562-b3fc-2c963f66afa6"));
}

#[test]
fn max_actions_and_confirmation_guard_the_run() {
    let (repo, _) = batch_repo(3, "");
    let sim = android_sim(3, |_| {});
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve", "--max-actions", "2"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("the plan has 3 resets, more than --max-actions 2"), "{}", stderr(&out));
    // No terminal and no --auto-approve: refused before anything happens.
    let out = repo.cmd_on(&sim).arg("apply").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no terminal"), "{}", stderr(&out));
    assert!(posts(&sim).is_empty());
    repo.cmd_on(&sim).args(["apply", "--auto-approve", "--max-actions", "3"]).assert().success();
}

// The stricter of `--max-actions` and `maxActionsPerApply` wins, whichever is smaller.
#[test]
fn the_smaller_of_max_actions_and_the_policy_limit_wins() {
    let (repo, _) = batch_repo(3, "");
    let sim = android_sim(3, |_| {});
    repo.write("reconcile.yaml", format!("{}policy:\n  maxActionsPerApply: 2\n", repo.read("reconcile.yaml")));
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve", "--max-actions", "5"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "the policy's 2 is stricter than --max-actions 5");
    assert!(stderr(&out).contains("more than the limit of 2"), "{}", stderr(&out));
    repo.write("reconcile.yaml", repo.read("reconcile.yaml").replace("maxActionsPerApply: 2", "maxActionsPerApply: 5"));
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve", "--max-actions", "2"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "--max-actions 2 is stricter than the policy's 5");
    assert!(stderr(&out).contains("more than --max-actions 2"), "{}", stderr(&out));
    assert!(posts(&sim).is_empty());
    repo.cmd_on(&sim).args(["apply", "--auto-approve", "--max-actions", "3"]).assert().success();
    assert_eq!(posts(&sim).len(), 3);
}

/// Ten Android devices in one manifest, looked up at 50 a second.
fn ten_devices_read_slowly() -> (Repo, intune_reconcile::sim::SimHandle) {
    let repo = Repo::empty();
    slow_reads_config(&repo, "");
    let ids: Vec<String> = (0..10).map(android_id).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    repo.write("manifests/batch.yaml", manifest_for("batch", &refs));
    (repo, android_sim(10, |_| {}))
}

#[test]
fn over_the_blast_radius_nothing_leaves_even_while_lookups_are_slow() {
    // Ten resets, --max-actions 5, lookups paced at 50 a second: streaming would have sent the
    // first ones before the tenth device was known. Nothing leaves until the complete plan is
    // counted, and then nothing at all.
    let (repo, sim) = ten_devices_read_slowly();
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve", "--max-actions", "5"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("the plan has 10 resets, more than --max-actions 5"), "{}", stderr(&out));
    assert!(posts(&sim).is_empty(), "nothing sent");
}

#[test]
fn declining_at_the_terminal_sends_nothing() {
    // A person at a terminal answers `no`: the whole plan is shown first, nothing was sent before
    // the question (lookups are slow enough that streaming would have), nothing after.
    let (repo, sim) = ten_devices_read_slowly();
    let text = repo.on_a_terminal("apply", &sim_env(&sim), "no\n");
    assert!(text.contains("Plan: 10 to reset") && text.contains("Only 'yes' will be accepted"), "{text}");
    assert!(text.contains("apply was not confirmed"), "{text}");
    assert!(posts(&sim).is_empty(), "nothing sent: {text}");
}

#[test]
fn max_actions_counts_the_resets_that_would_be_sent_not_the_entries() {
    // Three entries, one of them a device Intune does not know: two resets, within --max-actions 2.
    let (repo, ids) = batch_repo(3, "");
    let sim = android_sim(2, |_| {});
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve", "--max-actions", "2"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "a blocked device makes the run exit 1");
    assert!(stdout(&out).contains("2 accepted, 0 rejected, 0 unknown, 0 not executed, 1 blocked"), "{}", stdout(&out));
    assert_each_reset_once(&sim, &ids[..2]);
}

/// A `reconcile.yaml` whose reads are paced at 10 per second, so lookups take a while: a second
/// and a half for sixteen, time enough for the first reset to leave (its intent's fsync included)
/// even on a loaded machine.
fn slow_reads_config(repo: &Repo, extra: &str) {
    repo.init();
    repo.write(
        "reconcile.yaml",
        format!(
            "manifests: [manifests]\ngraph:\n  concurrency: 4\n  writeBudget: {{ requests: 1000, window: 1s }}\n  readBudget: {{ requests: 10, window: 1s }}\n  timeout: 2s\n  backoff: {{ initial: 10ms, max: 200ms }}\n{extra}"
        ),
    );
}

#[test]
fn resets_leave_while_devices_are_still_being_looked_up() {
    let repo = Repo::empty();
    slow_reads_config(&repo, "");
    let mut m = String::from(
        "apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: serials\nspec:\n  devices:\n",
    );
    // Fewer lookups than make listing the tenant worth asking about: one GET each.
    for i in 0..15 {
        m.push_str(&format!("    - serialNumber: SN{i:08}\n"));
    }
    m.push_str("    - serialNumber: NO-SUCH-SERIAL\n");
    repo.write("manifests/serials.yaml", m);
    let sim = android_sim(15, |_| {});
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "a device not found: {}", stderr(&out));
    // The report is the complete plan's, not that of the lookups done when sending began.
    assert!(stdout(&out).contains("15 accepted, 0 rejected, 0 unknown, 0 not executed, 1 blocked"), "{}", stdout(&out));
    let requests = sim.requests();
    let first_post = requests.iter().find(|r| r.path.ends_with("/resetPasscode")).expect("a reset").seq;
    let last_lookup =
        requests.iter().filter(|r| r.method == "GET" && r.path.ends_with("/managedDevices")).map(|r| r.seq).max();
    assert!(
        Some(first_post) < last_lookup,
        "the first reset left before the last lookup: {first_post} vs {last_lookup:?}"
    );
    let ids: Vec<String> = (0..15).map(android_id).collect();
    assert_each_reset_once(&sim, &ids);
    // The complete plan is still shown, once every device is known.
    assert!(stdout(&out).contains("Plan: 15 to reset") && stdout(&out).contains("x blocked"), "{}", stdout(&out));
    assert_eq!(stdout(&out).matches("\nPlan: ").count(), 1, "shown once, complete: {}", stdout(&out));
}

#[test]
fn a_device_rule_holds_back_its_manifest_until_every_device_of_it_is_looked_up() {
    // Manifest `a`: eight Android devices, then an iOS one the policy forbids; manifest `b`: nine
    // Android devices (fewer lookups than make listing the tenant worth asking about). The violation stops all of `a`, though its first devices are looked up long
    // before the iOS one; `b` goes ahead.
    let repo = Repo::empty();
    slow_reads_config(&repo, "policy:\n  allowPlatforms: [android]\n");
    let ids: Vec<String> = (0..18).map(android_id).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    repo.write("manifests/a.yaml", manifest_for("a", &refs[..9]));
    repo.write("manifests/b.yaml", manifest_for("b", &refs[9..]));
    let sim = android_sim(18, |c| {
        c.devices[8].insert("operatingSystem".into(), "iOS".into());
    });
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).contains("policy allowPlatforms"), "{}", stdout(&out));
    for id in &ids[..9] {
        assert_eq!(sim.resets_applied(id), 0, "manifest a is stopped whole: {id}");
    }
    assert_each_reset_once(&sim, &ids[9..]);
}

#[test]
fn two_applies_at_once_on_one_ledger() {
    let (repo, ids) = batch_repo(6, "");
    // The first reset is answered 1.5 s late (within the 2 s timeout): the first apply holds the
    // lock at least that long.
    let sim = android_sim(6, |c| {
        c.faults = vec![Fault { device_id: None, kind: FaultKind::AnswerLate(Duration::from_millis(1500)), times: 1 }];
    });
    let mut first = repo.spawn_on(&sim, &["apply", "--auto-approve"]);
    // The first one holds the lock once its first reset arrives (the token comes before the lock).
    crate::common::wait_until("the first reset", || !posts(&sim).is_empty());
    let second = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(second.status.code(), Some(1));
    let err = stderr(&second);
    assert!(err.contains("is locked by pid") && err.contains("reconcile apply"), "{err}");
    // With --lock-timeout a third one waits while the first still holds the lock, then finds
    // nothing to do.
    assert!(first.try_wait().expect("wait").is_none(), "the first is still running");
    let third = repo.spawn_on(&sim, &["apply", "--auto-approve", "--lock-timeout", "20s"]);
    assert!(first.wait().expect("wait").success());
    let third = third.wait_with_output().expect("wait");
    assert!(third.status.success(), "{}", String::from_utf8_lossy(&third.stderr));
    assert!(
        String::from_utf8_lossy(&third.stdout).contains("Nothing to do"),
        "{}",
        String::from_utf8_lossy(&third.stdout)
    );
    assert_each_reset_once(&sim, &ids);
}

// `http://localhost:PORT` is a loopback host too: the name is pinned to loopback.
#[test]
fn graph_and_login_on_localhost_are_loopback() {
    let (repo, ids) = batch_repo(1, "");
    let sim = android_sim(1, |_| {});
    let url = sim.url().replace("127.0.0.1", "localhost");
    let out = repo
        .cmd_on(&sim)
        .env("RECONCILE_GRAPH_URL", &url)
        .env("AZURE_AUTHORITY_HOST", &url)
        .args(["apply", "--auto-approve"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(sim.resets_applied(&ids[0]), 1);
    let out =
        repo.cmd_on(&sim).env("RECONCILE_GRAPH_URL", "http://localhost.example:1").arg("plan").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("accepted only for loopback hosts"), "{}", stderr(&out));
}

// A lookup is a read, safe to repeat: a 503 is tried again (a reset's 5xx never is).
#[test]
fn a_lookup_that_meets_a_server_error_is_tried_again() {
    let (repo, ids) = batch_repo(2, "");
    let sim = android_sim(2, |c| {
        c.faults = vec![Fault { device_id: Some(android_id(0)), kind: FaultKind::LookupUnavailable, times: 2 }];
    });
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_each_reset_once(&sim, &ids);
    let failed_reads = sim.requests().iter().filter(|r| r.method == "GET" && r.status == 503).count();
    assert_eq!(failed_reads, 2, "both 503s were met and tried again");

    // A lookup that keeps failing stops the run after its tries; nothing is sent blind.
    let (repo, _) = batch_repo(1, "");
    let sim = android_sim(1, |c| {
        c.faults = vec![Fault { device_id: None, kind: FaultKind::LookupUnavailable, times: 99 }];
    });
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("503"), "{}", stderr(&out));
    assert!(posts(&sim).is_empty());
    assert_eq!(sim.requests().iter().filter(|r| r.method == "GET" && r.status == 503).count(), 3, "three tries");
}

// Per-device outcomes are results: they went only to stderr, among the logs, so `apply > out.txt`
// kept the closing line and lost which device got what. In text mode they are on stdout, once;
// with `--format json` stdout is the report alone and the lines stay on stderr.
#[test]
fn outcomes_are_printed_to_stdout_once_in_text_mode() {
    let (repo, ids) = batch_repo(3, "");
    let sim = android_sim(3, |c| {
        c.faults = vec![Fault { device_id: Some(ids[2].clone()), kind: FaultKind::Forbidden, times: 1 }];
    });
    let actions = repo.actions();
    let line_of = |text: &str, id: &str| -> Option<String> {
        let key =
            actions.iter().find(|a| a.selector.to_string().contains(id)).expect("an action").key.short().to_owned();
        // Not the plan's line of it (indented): the outcome's.
        text.lines().find(|l| l.contains(&key) && !l.starts_with(' ')).map(str::to_owned)
    };
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "one rejected");
    let (text, err) = (stdout(&out), stderr(&out));
    for id in &ids[..2] {
        let line = line_of(&text, id).unwrap_or_else(|| panic!("no outcome for {id}: {text}"));
        assert!(line.starts_with("accepted ") && line.contains("batch") && line.contains("HTTP 204"), "{line}");
    }
    let rejected = line_of(&text, &ids[2]).unwrap_or_else(|| panic!("no outcome for {}: {text}", ids[2]));
    assert!(rejected.starts_with("rejected ") && rejected.contains("HTTP 403"), "{rejected}");
    let statuses = ["accepted ", "rejected ", "unknown ", "not-executed "];
    assert_eq!(text.lines().filter(|l| statuses.iter().any(|s| l.starts_with(s))).count(), 3, "{text}");
    assert!(!err.lines().any(|l| statuses.iter().any(|s| l.starts_with(s))), "no outcome duplicated on stderr: {err}");
    assert!(text.contains("Apply complete: 2 accepted, 1 rejected"), "{text}");
    // Plan, outcomes, summary: resets sent before the plan was complete are shown after it.
    let at =
        |prefix: &str| text.lines().position(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix}: {text}"));
    assert!(at("Plan:") < at("accepted ") && at("rejected ") < at("Apply complete"), "{text}");

    // JSON: stdout is the report alone; the outcome lines go to stderr.
    let (repo, _) = batch_repo(2, "");
    let sim = android_sim(2, |_| {});
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve", "--format", "json"]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(report["summary"]["accepted"], 2);
    assert_eq!(stderr(&out).lines().filter(|l| l.starts_with("accepted ")).count(), 2, "{}", stderr(&out));
}

//! Never twice, proven: each test reproduces a way a device used to get a second reset (or an
//! action a wrong fate) and shows it no longer does. The simulator plays Intune with the fault
//! that matters: clocks that disagree, answers that come late or not at all, tokens that expire
//! under load, resets made in the portal.

use std::time::Duration;

use crate::common::{
    Repo, android_id, android_sim, assert_each_reset_once_intent_first, batch_repo, manifest_for, posts, stderr, stdout,
};
use intune_reconcile::settings::Budget;
use intune_reconcile::sim::{Fault, FaultKind, RetryAfter};

/// The status of the (only) record of device `id`.
fn status_of(repo: &Repo, id: &str) -> String {
    let ledger = repo.ledger_json();
    let r = ledger["records"]
        .as_object()
        .expect("records")
        .values()
        .find(|r| r["managedDeviceId"] == id)
        .unwrap_or_else(|| panic!("no record for {id}"));
    r["status"].as_str().expect("status").to_owned()
}

// Intune's clock 90 s behind ours, 30 % of POSTs applied then answered 500. Matching on
// the runner's clock missed those resets and `apply, refresh, apply` reset 16 of 40 devices twice.
#[test]
fn intunes_clock_behind_ours_never_leads_to_a_second_reset() {
    let n = 40;
    let (repo, ids) = batch_repo(n, "");
    let sim = android_sim(n, |c| {
        c.clock_offset = jiff::SignedDuration::from_secs(-90);
        c.faults = (0..n)
            .filter(|i| i % 10 < 3)
            .map(|i| Fault { device_id: Some(android_id(i)), kind: FaultKind::ErrorAfter, times: 1 })
            .collect();
    });
    let first = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(first.status.code(), Some(1), "{}", stdout(&first));
    assert!(stdout(&first).contains("12 unknown"), "{}", stdout(&first));
    let out = repo.cmd_on(&sim).arg("refresh").output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("not-executed"), "every unknown one was applied: {}", stdout(&out));
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().success();
    assert_each_reset_once_intent_first(&sim, &ids);
    // Every attempt carries Intune's clock: the answer's Date and the lower bound of its arrival.
    let ledger = repo.ledger_json();
    for r in ledger["records"].as_object().expect("records").values() {
        let a = &r["attempts"][0];
        assert!(a["serverDate"].is_string() && a["serverSentAt"].is_string(), "{a}");
        let local: jiff::Timestamp = a["startedAt"].as_str().expect("ts").parse().expect("ts");
        let server: jiff::Timestamp = a["serverSentAt"].as_str().expect("ts").parse().expect("ts");
        let behind = local.duration_since(server).as_secs();
        assert!((88..=92).contains(&behind), "Intune's clock is 90 s behind: {behind}");
    }
}

// The other half of the clock case: Intune's report is slower than the grace. The audit log shows the
// request reached Intune, so the action is accepted, never made sendable.
#[test]
fn a_report_slower_than_the_grace_is_caught_by_the_audit_log() {
    let (repo, ids) = batch_repo(2, "");
    let sim = android_sim(2, |c| {
        c.report_delay = Duration::from_secs(3600);
        c.faults = vec![Fault { device_id: Some(android_id(0)), kind: FaultKind::ErrorAfter, times: 1 }];
    });
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().code(1);
    let out = repo.cmd_on(&sim).arg("refresh").output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("unknown       -> accepted"), "{}", stdout(&out));
    assert!(stdout(&out).contains("the audit log shows a resetPasscode"), "{}", stdout(&out));
    assert_eq!(status_of(&repo, &ids[0]), "accepted");
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().success();
    assert_eq!(posts(&sim).len(), 2, "nothing re-sent");
    assert_eq!(sim.resets_applied(&ids[0]), 1);

    // The same with nothing but the unknown action: the audit log is read from its own intent.
    let (repo, ids) = batch_repo(1, "");
    let sim = android_sim(1, |c| {
        c.report_delay = Duration::from_secs(3600);
        c.faults = vec![Fault { device_id: None, kind: FaultKind::ErrorAfter, times: 1 }];
    });
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().code(1);
    let out = repo.cmd_on(&sim).arg("refresh").output().expect("run");
    assert!(stdout(&out).contains("unknown       -> accepted"), "{}", stdout(&out));
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().success();
    assert_eq!(sim.resets_applied(&ids[0]), 1);

    // Without the audit log (a token that may not read it), the evidence is the results alone:
    // within the grace nothing is decided.
    let (repo, ids) = batch_repo(1, "");
    repo.write("reconcile.yaml", repo.read("reconcile.yaml").replace("unknownGrace: 0s", "unknownGrace: 10m"));
    let sim = android_sim(1, |c| {
        c.report_delay = Duration::from_secs(3600);
        c.audits_readable = false;
        c.faults = vec![Fault { device_id: None, kind: FaultKind::ErrorAfter, times: 1 }];
    });
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().code(1);
    let out = repo.cmd_on(&sim).arg("refresh").output().expect("run");
    assert!(stdout(&out).contains("of the 10m grace passed on Intune's clock"), "{}", stdout(&out));
    assert_eq!(status_of(&repo, &ids[0]), "unknown");

    // A Graph without the audit log at all (404) is one whose log cannot be read: after the grace
    // the results alone decide, instead of "no decision" on every refresh.
    let (repo, ids) = batch_repo(1, "");
    let sim = android_sim(1, |c| {
        c.audits_missing = true;
        c.faults = vec![Fault { device_id: None, kind: FaultKind::UnavailableBefore, times: 1 }];
    });
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().code(1);
    let out = repo.cmd_on(&sim).arg("refresh").output().expect("run");
    assert!(stdout(&out).contains("unknown       -> not-executed"), "{}", stdout(&out));
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().success();
    assert_eq!(sim.resets_applied(&ids[0]), 1);
}

// `unknownGrace: never`: only a person makes an unknown action sendable, and says why.
#[test]
fn grace_never_leaves_it_to_a_person_who_is_recorded() {
    let (repo, ids) = batch_repo(1, "");
    repo.write("reconcile.yaml", repo.read("reconcile.yaml").replace("unknownGrace: 0s", "unknownGrace: never"));
    let sim = android_sim(1, |c| {
        c.faults = vec![Fault { device_id: None, kind: FaultKind::UnavailableBefore, times: 1 }];
    });
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().code(1);
    let out = repo.cmd_on(&sim).arg("refresh").output().expect("run");
    assert!(stdout(&out).contains("graph.unknownGrace is `never`"), "{}", stdout(&out));
    assert!(stdout(&out).contains("reconcile state resolve"), "{}", stdout(&out));
    assert_eq!(status_of(&repo, &ids[0]), "unknown");
    let key = repo.ledger_json()["records"].as_object().expect("records").keys().next().expect("key").clone();
    let out = repo.cmd().args(["state", "resolve", &key[..8], "--as", "not-executed"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "--reason is required");
    let out = repo
        .cmd()
        .env("USER", "ann")
        .args(["state", "resolve", &key[..8], "--as", "not-executed", "--reason", "checked the portal: no reset"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = repo.cmd().args(["state", "show", &key, "--format", "json"]).output().expect("run");
    let json: serde_json::Value = serde_json::from_slice(&shown.stdout).expect("json");
    let res = &json["action"]["attempts"][0]["resolution"];
    assert!(res["by"].as_str().is_some_and(|b| b.starts_with("ann@")), "{res}");
    assert!(res["note"].as_str().is_some_and(|n| n.contains("checked the portal")), "{res}");
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().success();
    assert_eq!(sim.resets_applied(&ids[0]), 1);
}

// a missing ledger is not an empty one. A failed CI download or a wrong --state once
// planned and applied every historical reset again.
#[test]
fn a_missing_ledger_is_refused_online_and_named_offline() {
    let repo = Repo::empty();
    repo.write(
        "reconcile.yaml",
        "graph:\n  writeBudget: { requests: 1000, window: 1s }\n  backoff: { initial: 10ms, max: 200ms }\n",
    );
    repo.write("manifests/a.yaml", manifest_for("a", &[&android_id(0)]));
    let sim = android_sim(1, |_| {});
    for args in [&["apply", "--auto-approve"][..], &["plan"], &["refresh"]] {
        let out = repo.cmd_on(&sim).args(args).output().expect("run");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains(".reconcile/state.json") && err.contains("reconcile init"), "{args:?}: {err}");
    }
    assert!(sim.requests().iter().all(|r| !r.path.contains("deviceManagement")), "no Graph request");
    assert!(!repo.path().join(".reconcile").exists(), "nothing was created");
    let out = repo.cmd().args(["plan", "--offline"]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let first = stdout(&out).lines().next().unwrap_or_default().to_owned();
    assert!(first.starts_with("No ledger at") && first.contains("reconcile init"), "{first}");

    // init binds the ledger to the token's tenant, once.
    let out = repo.cmd_on(&sim).arg("init").output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(repo.ledger_json()["tenant"], "test-tenant");
    let out = repo.cmd_on(&sim).arg("init").output().expect("run");
    assert!(stdout(&out).contains("already exists"), "{}", stdout(&out));
    let out = repo.cmd().args(["init", "--tenant", "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "another tenant is refused");
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().success();
    assert_eq!(posts(&sim).len(), 1);
}

// tasks handed a send time before a 429 came back still sent inside its window, and
// a huge Retry-After was not capped by graph.backoff.max.
#[test]
fn no_post_leaves_inside_a_retry_after_window_it_has_learned_of() {
    let (repo, ids) = batch_repo(12, "");
    repo.write("reconcile.yaml", repo.read("reconcile.yaml").replace("max: 200ms", "max: 10s"));
    let sim = android_sim(12, |c| {
        c.write_limit = Some(Budget { requests: 4, window: Duration::from_secs(60) });
        c.retry_after = RetryAfter::Seconds(1.5);
    });
    let child = repo.spawn_on(&sim, &["apply", "--auto-approve"]);
    // Lift the limit once the run has met its first 429: from then on the server would accept
    // anything, so only the client's own pause keeps requests out of the window it learned of.
    crate::common::wait_until("the first 429", || posts(&sim).iter().any(|p| p.status == 429));
    sim.state().config.write_limit = None;
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_each_reset_once_intent_first(&sim, &ids);
    let all = posts(&sim);
    let first_429 = all.iter().find(|p| p.status == 429).expect("throttled").at;
    let window_end = first_429 + jiff::SignedDuration::from_millis(1500);
    // Requests already on the wire when the 429 left may still arrive a moment later.
    let grace = first_429 + jiff::SignedDuration::from_millis(150);
    let inside: Vec<_> = all.iter().filter(|p| p.at > grace && p.at < window_end).collect();
    assert!(inside.is_empty(), "{} POSTs inside the Retry-After window: {inside:?}", inside.len());
}

#[test]
fn a_huge_retry_after_is_capped_by_graph_backoff_max_and_says_so() {
    let (repo, ids) = batch_repo(3, "");
    let sim = android_sim(3, |c| {
        c.faults = vec![Fault { device_id: Some(android_id(0)), kind: FaultKind::Throttle, times: 1 }];
        c.retry_after = RetryAfter::Seconds(3600.0);
    });
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("Retry-After is longer than graph.backoff.max"), "{err}");
    assert_each_reset_once_intent_first(&sim, &ids);
}

// a 408 means Graph never got the whole request: not executed, tried again in the run.
#[test]
fn a_408_is_not_executed_and_is_retried() {
    let (repo, ids) = batch_repo(2, "");
    let sim = android_sim(2, |c| {
        c.faults = vec![Fault { device_id: Some(android_id(1)), kind: FaultKind::RequestTimeout, times: 1 }];
    });
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_each_reset_once_intent_first(&sim, &ids);
    let statuses: Vec<u64> = posts(&sim).iter().map(|p| u64::from(p.status)).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 408).count(), 1);

    // 408s that never end: three tries, then not executed (never rejected: it did not run).
    let (repo, ids) = batch_repo(1, "");
    let sim = android_sim(1, |c| {
        c.faults = vec![Fault { device_id: None, kind: FaultKind::RequestTimeout, times: 100 }];
    });
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(status_of(&repo, &ids[0]), "not-executed");
    assert_eq!(posts(&sim).len(), 3);
}

// one rejected action can be retried alone, without bumping `round` (which would
// reset every other device of the manifest again).
#[test]
fn state_retry_makes_one_rejected_action_sendable_and_nothing_else() {
    let (repo, ids) = batch_repo(3, "");
    let sim = android_sim(3, |c| {
        c.faults = vec![Fault { device_id: Some(android_id(2)), kind: FaultKind::Forbidden, times: 1 }];
    });
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("2 accepted, 1 rejected, 0 unknown, 0 not executed"), "{}", stdout(&out));
    // The status speaks first (Intune's code is `UnknownError`): what a 403 means, said once.
    let text = stdout(&out);
    assert!(
        text.contains("HTTP 403") && text.contains("(missing permission, licence or consent; not retried)"),
        "{text}"
    );
    assert_eq!(status_of(&repo, &ids[2]), "rejected");
    let ledger = repo.ledger_json();
    let key = ledger["records"]
        .as_object()
        .expect("records")
        .iter()
        .find(|(_, r)| r["status"] == "rejected")
        .map(|(k, _)| k.clone())
        .expect("rejected");
    // Only rejected actions can be retried.
    let accepted = ledger["records"].as_object().expect("records").iter().find(|(_, r)| r["status"] == "accepted");
    let (akey, _) = accepted.expect("accepted");
    let out = repo.cmd().args(["state", "retry", akey, "--reason", "x"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not `rejected`"), "{}", stderr(&out));
    // The plan says how to send it again, with the key as it shows it.
    let plan = repo.cmd_on(&sim).arg("plan").output().expect("run");
    let short = &key[..12];
    assert!(stdout(&plan).contains(&format!("`reconcile state retry {short} --reason")), "{}", stdout(&plan));
    let out = repo.cmd().args(["state", "retry", short, "--reason", "licence assigned (INC-9)"]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(status_of(&repo, &ids[2]), "not-executed");
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().success();
    assert_each_reset_once_intent_first(&sim, &ids);
    assert_eq!(posts(&sim).len(), 4, "only the retried action was sent again");
}

// the cooldown ignored the action's own earlier attempts, so it could not stop a
// re-send after refresh made an unknown action sendable.
#[test]
fn cooldown_counts_the_actions_own_earlier_attempts() {
    let (repo, ids) = batch_repo(1, "policy:\n  cooldown: 1h\n");
    let sim = android_sim(1, |c| {
        c.faults = vec![Fault { device_id: None, kind: FaultKind::UnavailableBefore, times: 1 }];
    });
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().code(1);
    let out = repo.cmd_on(&sim).arg("refresh").output().expect("run");
    assert!(stdout(&out).contains("unknown       -> not-executed"), "{}", stdout(&out));
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("policy cooldown"), "{}", stdout(&out));
    assert_eq!(posts(&sim).len(), 1, "not re-sent within the cooldown");
    assert_eq!(sim.resets_applied(&ids[0]), 0);
}

// refresh took a result that belonged to an accepted action, or a reset made in the
// portal, for an unknown action that never ran, and marked it done.
#[test]
fn refresh_never_gives_an_unknown_action_someone_elses_result() {
    let repo = Repo::empty();
    repo.fast_config("");
    let (d0, d1) = (android_id(0), android_id(1));
    repo.write("manifests/early.yaml", manifest_for("early", &[&d0, &d1]));
    repo.write("manifests/late.yaml", manifest_for("late", &[&d0]));
    let sim = android_sim(2, |c| {
        c.faults = vec![Fault { device_id: None, kind: FaultKind::UnavailableBefore, times: 2 }];
    });
    // `early` meets two 503s (never applied): both unknown. Then `late` resets device 0 for real.
    repo.cmd_on(&sim).args(["apply", "--auto-approve", "manifests/early.yaml"]).assert().code(1);
    repo.cmd_on(&sim).args(["apply", "--auto-approve", "manifests/late.yaml"]).assert().success();
    // Someone resets device 1 in the portal.
    assert_eq!(crate::common::http_post(&sim, &format!("/_sim/portal/{d1}/resetPasscode?by=bob@contoso.com")), 204);
    let out = repo.cmd_on(&sim).arg("refresh").output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let ledger = repo.ledger_json();
    let records = ledger["records"].as_object().expect("records");
    let status = |manifest: &str, dev: &str| {
        records
            .values()
            .find(|r| r["manifest"] == manifest && r["managedDeviceId"] == dev)
            .map(|r| r["status"].as_str().unwrap_or_default().to_owned())
            .expect("record")
    };
    assert_eq!(status("late", &d0), "done", "{text}");
    assert_eq!(status("early", &d0), "unknown", "never takes the accepted action's result: {text}");
    assert_eq!(status("early", &d1), "not-executed", "bob's portal reset is not ours: {text}");
    assert_eq!(sim.resets_applied(&d0), 1);
}

// tokens expiring while 16 requests are in flight failed actions (a second 401 was
// final). A 401 renews the token once for everyone waiting and the action is tried again.
#[test]
fn token_expiry_under_load_renews_once_and_loses_no_action() {
    let n = 80;
    let (repo, ids) = batch_repo(n, "");
    repo.write("reconcile.yaml", repo.read("reconcile.yaml").replace("concurrency: 4", "concurrency: 16"));
    let sim = android_sim(n, |c| {
        c.token_requests = 30;
        c.latency = Duration::from_millis(20);
    });
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_each_reset_once_intent_first(&sim, &ids);
    let unauthorized = sim.requests().iter().filter(|r| r.status == 401).count();
    assert!(unauthorized > 0, "tokens did expire under load");
    let tokens = sim.requests().iter().filter(|r| r.path.ends_with("/oauth2/v2.0/token")).count();
    // 160 Graph requests at 30 per token: about 6 renewals, never one per waiting request.
    assert!(tokens <= 2 * n / 30 + 4, "renewed once per expiry, not once per request: {tokens} token requests");
}

// The bound: an action that meets a 401 on every try renews the token a bounded
// number of times, then ends `not-executed` (never `rejected`: it did not run).
#[test]
fn an_action_that_keeps_meeting_401s_ends_not_executed() {
    let (repo, ids) = batch_repo(2, "");
    let sim = android_sim(2, |c| {
        c.faults = vec![Fault { device_id: Some(android_id(0)), kind: FaultKind::Unauthorized, times: 50 }];
    });
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("1 accepted, 0 rejected, 0 unknown, 1 not executed"), "{}", stdout(&out));
    assert_eq!(status_of(&repo, &ids[0]), "not-executed");
    let to_device_0 = posts(&sim).iter().filter(|p| p.path.contains(&ids[0])).count();
    assert_eq!(to_device_0, 4, "the first try and three renewals");
    assert_eq!(sim.resets_applied(&ids[0]), 0);
}

// A request that timed out before Intune acted on it: its intent carries Intune's clock (from the
// answers before it), so refresh can prove it never ran, and the next apply sends it once.
#[test]
fn a_request_lost_before_intune_acted_is_made_sendable_on_evidence() {
    let (repo, ids) = batch_repo(1, "");
    let sim = android_sim(1, |c| {
        c.faults = vec![Fault { device_id: None, kind: FaultKind::HangBefore, times: 1 }];
    });
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().code(1);
    let ledger = repo.ledger_json();
    let attempt = &ledger["records"].as_object().expect("records").values().next().expect("record")["attempts"][0];
    assert!(attempt["httpStatus"].is_null() && attempt["serverSentAt"].is_string(), "{attempt}");
    let out = repo.cmd_on(&sim).arg("refresh").output().expect("run");
    assert!(stdout(&out).contains("unknown       -> not-executed"), "{}", stdout(&out));
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().success();
    assert_eq!(sim.resets_applied(&ids[0]), 1);
}

// The 429 bound: a storm that never ends leaves the action not executed instead of retrying
// forever; every attempt is recorded with the client-request-id that was really sent.
#[test]
fn a_429_that_never_ends_leaves_the_action_not_executed() {
    let (repo, ids) = batch_repo(2, "");
    let sim = android_sim(2, |c| {
        c.faults = vec![Fault { device_id: Some(android_id(0)), kind: FaultKind::Throttle, times: 1_000 }];
        c.retry_after = RetryAfter::Seconds(0.01);
    });
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("1 accepted, 0 rejected, 0 unknown, 1 not executed"), "{}", stdout(&out));
    assert_eq!(status_of(&repo, &ids[0]), "not-executed");
    let sent: std::collections::BTreeSet<String> =
        posts(&sim).iter().filter_map(|p| p.client_request_id.clone()).collect();
    let ledger = repo.ledger_json();
    let attempts: Vec<&serde_json::Value> = ledger["records"]
        .as_object()
        .expect("records")
        .values()
        .flat_map(|r| r["attempts"].as_array().expect("attempts").iter())
        .collect();
    // A write held back by a 429's pause (under load) is recorded but never sent; every other
    // attempt records the client-request-id it sent, and every request sent is recorded.
    let held_back = |a: &&&serde_json::Value| a["errorMessage"].as_str().is_some_and(|m| m.starts_with("held back"));
    let recorded: std::collections::BTreeSet<String> = attempts
        .iter()
        .filter(|a| !held_back(a))
        .filter_map(|a| a["clientRequestId"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(sent, recorded, "each attempt records the client-request-id it sent");
    let of = |i: usize| {
        ledger["records"]
            .as_object()
            .expect("records")
            .values()
            .find(|r| r["managedDeviceId"] == android_id(i).as_str())
            .map(|r| r["attempts"].as_array().expect("attempts").len())
    };
    assert_eq!(of(0), Some(21), "20 retries after the first 429 (each sent or held back)");
    assert_eq!(posts(&sim).iter().filter(|p| p.path.contains(&android_id(1))).count(), 1, "the other device once");
}

// A person who checked the device and found the reset happened records it: `done`, with who and
// why, and nothing is ever sent for it again.
#[test]
fn state_resolve_as_done_records_the_person_and_never_sends() {
    let (repo, ids) = batch_repo(1, "");
    repo.write("reconcile.yaml", repo.read("reconcile.yaml").replace("unknownGrace: 0s", "unknownGrace: never"));
    let sim = android_sim(1, |c| {
        c.faults = vec![Fault { device_id: None, kind: FaultKind::UnavailableBefore, times: 1 }];
    });
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().code(1);
    assert_eq!(status_of(&repo, &ids[0]), "unknown");
    let key = repo.ledger_json()["records"].as_object().expect("records").keys().next().expect("key").clone();
    let out = repo
        .cmd()
        .env("USER", "ann")
        .args(["state", "resolve", &key[..8], "--as", "done", "--reason", "the owner got a new passcode"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(status_of(&repo, &ids[0]), "done");
    let shown = repo.cmd().args(["state", "show", &key, "--format", "json"]).output().expect("run");
    let json: serde_json::Value = serde_json::from_slice(&shown.stdout).expect("json");
    let res = &json["action"]["attempts"][0]["resolution"];
    assert!(res["by"].as_str().is_some_and(|b| b.starts_with("ann@")), "{res}");
    assert!(res["note"].as_str().is_some_and(|n| n.contains("new passcode")), "{res}");
    let before = posts(&sim).len();
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(posts(&sim).len(), before, "a done action is never sent again");
}

// Every fault the simulator can play, on one device's reset: the status it leaves, whether
// Intune applied it, how many requests left, the exit code, and that a second apply never sends
// what may have run. One table, so a new fault is one new row.
#[test]
fn every_fault_has_its_outcome_and_a_second_apply_sends_nothing_that_may_have_run() {
    struct Case {
        kind: FaultKind,
        status: &'static str,
        applied: usize,
        posts: usize,
        exit: i32,
    }
    let cases = [
        Case { kind: FaultKind::UnavailableBefore, status: "unknown", applied: 0, posts: 1, exit: 1 },
        Case { kind: FaultKind::ErrorAfter, status: "unknown", applied: 1, posts: 1, exit: 1 },
        Case { kind: FaultKind::HangAfter, status: "unknown", applied: 1, posts: 1, exit: 1 },
        Case { kind: FaultKind::HangBefore, status: "unknown", applied: 0, posts: 1, exit: 1 },
        Case { kind: FaultKind::Forbidden, status: "rejected", applied: 0, posts: 1, exit: 1 },
        Case { kind: FaultKind::Throttle, status: "accepted", applied: 1, posts: 2, exit: 0 },
        Case { kind: FaultKind::Unauthorized, status: "accepted", applied: 1, posts: 2, exit: 0 },
        Case { kind: FaultKind::RequestTimeout, status: "accepted", applied: 1, posts: 2, exit: 0 },
        Case {
            kind: FaultKind::AnswerLate(Duration::from_millis(200)),
            status: "accepted",
            applied: 1,
            posts: 1,
            exit: 0,
        },
        Case { kind: FaultKind::LookupUnavailable, status: "accepted", applied: 1, posts: 1, exit: 0 },
        // The status line of a 2xx arrived: Intune took it, however the body ends.
        Case { kind: FaultKind::CutAnswer(200), status: "accepted", applied: 1, posts: 1, exit: 0 },
        // A 500 cut off: nothing says it ran, nothing says it did not.
        Case { kind: FaultKind::CutAnswer(500), status: "unknown", applied: 0, posts: 1, exit: 1 },
    ];
    for c in cases {
        let what = format!("{:?}", c.kind);
        let (repo, ids) = batch_repo(1, "");
        let sim = android_sim(1, |cfg| cfg.faults = vec![Fault { device_id: None, kind: c.kind, times: 1 }]);
        let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
        assert_eq!(out.status.code(), Some(c.exit), "{what}: {}\n{}", stdout(&out), stderr(&out));
        assert_eq!(status_of(&repo, &ids[0]), c.status, "{what}");
        assert_eq!(sim.resets_applied(&ids[0]), c.applied, "{what}: applied");
        assert_eq!(posts(&sim).len(), c.posts, "{what}: requests");
        crate::common::assert_intents_durable(&sim);
        // Whatever may have run is never sent again by apply.
        let _ = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
        assert_eq!(posts(&sim).len(), c.posts, "{what}: a second apply sent again");
    }
}

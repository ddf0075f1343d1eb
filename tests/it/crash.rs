//! Crashes and interruptions: kill -9 and Ctrl-C in the middle of an apply never lead to a second
//! reset of any device.

use std::time::Duration;

use crate::common::{Repo, android_sim, batch_repo, manifest_for, posts, stdout, wait_for_posts};
use intune_reconcile::sim::{Fault, FaultKind, SimConfig};

const N: usize = 30;

fn setup(tweak: impl FnOnce(&mut SimConfig)) -> (Repo, Vec<String>, intune_reconcile::sim::SimHandle) {
    let (repo, ids) = batch_repo(N, "");
    repo.write("reconcile.yaml", repo.read("reconcile.yaml").replace("concurrency: 4", "concurrency: 3"));
    (repo, ids, android_sim(N, tweak))
}

fn max_resets(sim: &intune_reconcile::sim::SimHandle, ids: &[String]) -> usize {
    ids.iter().map(|id| sim.resets_applied(id)).max().unwrap_or(0)
}

// The heart of the product: whatever instant the process dies at, recorded outcomes survive and
// no device whose request may have been sent gets a second POST. Intune applies each of the first
// resets at once and answers a second later, so the kill lands between "applied" and "answered":
// only the intent written before the POST keeps the rerun from sending them again.
#[test]
fn kill_dash_nine_mid_apply_then_rerun_resets_every_device_exactly_once() {
    kill_dash_nine_then_rerun(0);
}

// The same with a ledger large enough that changes live in its journal until the run ends: the
// rerun replays the journal the killed run left.
#[test]
fn kill_dash_nine_with_a_large_ledger_replays_its_journal() {
    kill_dash_nine_then_rerun(300);
}

/// Kills an apply mid-flight, `filler` records already in the ledger, then reruns it.
fn kill_dash_nine_then_rerun(filler: usize) {
    let (repo, ids, sim) = setup(|c| {
        c.faults = vec![Fault { device_id: None, kind: FaultKind::AnswerLate(Duration::from_secs(1)), times: 12 }];
    });
    if filler > 0 {
        let others: Vec<String> = (0..filler).map(|i| format!("{i:08x}-0000-4000-8000-00000000ffff")).collect();
        repo.write("manifests/done.yaml", manifest_for("done", &others.iter().map(String::as_str).collect::<Vec<_>>()));
        let actions = repo.actions();
        let done: Vec<&intune_reconcile::core::action::Action> =
            actions.iter().filter(|a| a.manifest == "done").collect();
        repo.record(&done, intune_reconcile::ledger::Status::Done, None);
    }
    let mut child = repo.spawn_on(&sim, &["apply", "--auto-approve"]);
    wait_for_posts(&sim, 6);
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let sent_before: std::collections::HashSet<String> = posts(&sim).iter().map(|p| p.path.clone()).collect();
    assert!(sent_before.len() < N, "killed before the end");
    assert!(posts(&sim).iter().all(|p| p.applied), "the killed run's resets took effect");
    let journal = repo.path().join(".reconcile/state.json.journal");
    if filler > 0 {
        assert!(journal.exists(), "a large ledger's changes wait in its journal");
    } else {
        assert_crash_left_intents_in_the_file(&repo, &sent_before);
        assert!(!journal.exists(), "nothing waits in a journal");
    }

    // The rerun replays the journal: actions that may have been sent are `unknown`, not re-sent.
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    let text = stdout(&out);
    assert!(max_resets(&sim, &ids) <= 1, "{text}");
    let mut per_device = std::collections::HashMap::new();
    for p in posts(&sim) {
        *per_device.entry(p.path).or_insert(0) += 1;
    }
    assert!(per_device.values().all(|&n| n == 1), "no device got a second POST: {per_device:?}");

    // refresh decides the unknown ones; apply sends those that never happened.
    repo.cmd_on(&sim).arg("refresh").assert().success();
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().success();
    for id in &ids {
        assert_eq!(sim.resets_applied(id), 1, "device {id}");
    }
    let plan = repo.cmd_on(&sim).args(["plan", "--detailed-exitcode"]).output().expect("run");
    assert_eq!(plan.status.code(), Some(0), "{}", stdout(&plan));
    crate::common::assert_intents_durable(&sim);
}

#[test]
fn ctrl_c_stops_sending_records_what_was_in_flight_and_exits_non_zero() {
    let (repo, ids, sim) = setup(|c| c.latency = Duration::from_millis(150));
    let child = repo.spawn_on(&sim, &["apply", "--auto-approve"]);
    wait_for_posts(&sim, 5);
    let ok =
        std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill").success();
    assert!(ok);
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("Apply interrupted"), "{text}");
    let sent = posts(&sim).len();
    assert!(sent < N, "sending stopped: {sent}");
    assert!(
        text.contains(&format!(
            "{sent} accepted, 0 rejected, 0 unknown, 0 not executed, 0 blocked. {} not started",
            N - sent
        )),
        "{text}"
    );
    // Everything sent was recorded with its outcome: no unknowns, and the journal was folded.
    assert!(!repo.path().join(".reconcile/state.json.journal").exists());
    let ledger = repo.ledger_json();
    let records = ledger["records"].as_object().expect("records");
    assert_eq!(records.values().filter(|r| r["status"] == "accepted").count(), sent, "{text}");
    assert!(records.values().all(|r| r["status"] == "accepted"));

    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().success();
    for id in &ids {
        assert_eq!(sim.resets_applied(id), 1, "device {id}");
    }
    crate::common::assert_intents_durable(&sim);
}

/// The ledger file itself (not only its journal) holds the intent of every request that left: a
/// small ledger's snapshot is rewritten with each change.
fn assert_crash_left_intents_in_the_file(repo: &Repo, sent: &std::collections::HashSet<String>) {
    let ledger = repo.ledger_json();
    let recorded: std::collections::HashSet<String> = ledger["records"]
        .as_object()
        .expect("records")
        .values()
        .filter(|r| r["attempts"].as_array().is_some_and(|a| !a.is_empty()))
        .filter_map(|r| r["managedDeviceId"].as_str().map(str::to_owned))
        .collect();
    for path in sent {
        assert!(recorded.iter().any(|id| path.contains(id.as_str())), "{path} is in state.json: {recorded:?}");
    }
}

/// Five phones, one write at a time, a request timeout far above any test, and Intune holding
/// its answer to the first reset until the test releases it.
fn held_first_answer() -> (Repo, Vec<String>, intune_reconcile::sim::SimHandle) {
    let (repo, ids) = batch_repo(5, "");
    let config =
        repo.read("reconcile.yaml").replace("concurrency: 4", "concurrency: 1").replace("timeout: 2s", "timeout: 60s");
    repo.write("reconcile.yaml", config);
    // The first reset to leave, whichever device it is (with one send slot, the order the send
    // tasks reach it is the runtime's).
    let sim = android_sim(5, |c| c.faults = vec![Fault { device_id: None, kind: FaultKind::HoldAnswer, times: 1 }]);
    (repo, ids, sim)
}

/// Sends SIGINT to `args` once its first reset is in flight (Intune holds the answer), lets the
/// answer go once the binary says it is stopping, and returns what it printed.
fn interrupt_with_one_in_flight(
    repo: &Repo,
    sim: &intune_reconcile::sim::SimHandle,
    args: &[&str],
) -> std::process::Output {
    use std::io::Read as _;
    let mut child = repo.spawn_on(sim, args);
    // The simulator logs a POST as it applies it, before its held answer leaves.
    crate::common::wait_until("the first reset in flight", || posts(sim).len() == 1);
    let ok =
        std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill").success();
    assert!(ok);
    let err = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut pipe = child.stderr.take().expect("stderr");
    let reader = {
        let err = err.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                err.lock().expect("stderr buffer").extend_from_slice(&buf[..n]);
            }
        })
    };
    let said = |what: &str| String::from_utf8_lossy(&err.lock().expect("stderr buffer")).contains(what);
    crate::common::wait_until("the binary to say it is stopping", || said("stopping: no new requests"));
    sim.release_answers();
    let mut out = child.wait_with_output().expect("wait");
    reader.join().expect("stderr reader");
    out.stderr = err.lock().expect("stderr buffer").clone();
    out
}

// Ctrl-C said "4 not executed" (a ledger status word, for resets never sent) and nothing about
// what to do. It now says they were not started and which command sends them; the one in flight
// is recorded with Intune's answer, and running that command sends the rest exactly once.
#[test]
fn ctrl_c_names_what_was_not_started_and_the_command_that_sends_it() {
    let (repo, ids, sim) = held_first_answer();
    let out = interrupt_with_one_in_flight(&repo, &sim, &["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("Apply interrupted: 1 accepted, 0 rejected, 0 unknown, 0 not executed, 0 blocked. 4 not started — run `reconcile apply` again to send them."),
        "{text}"
    );
    assert!(crate::common::stderr(&out).contains("waiting for those in flight to be recorded"));
    assert_eq!(posts(&sim).len(), 1, "nothing left after the signal");
    // The one in flight waited for its held answer: recorded accepted, with Intune's request id.
    let ledger = repo.ledger_json();
    let records: Vec<&serde_json::Value> = ledger["records"].as_object().expect("records").values().collect();
    assert_eq!(records.len(), 1, "no record for what was never sent: {records:?}");
    assert_eq!(records[0]["status"], "accepted");
    let in_flight = ids.iter().find(|id| posts(&sim)[0].path.contains(id.as_str())).expect("a device's reset");
    assert_eq!(records[0]["managedDeviceId"], in_flight.as_str(), "{:?}", records[0]);
    let attempts = records[0]["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["httpStatus"], 204);

    let again = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert!(again.status.success(), "{}", crate::common::stderr(&again));
    assert!(stdout(&again).contains("Apply complete: 4 accepted"), "{}", stdout(&again));
    for id in &ids {
        assert_eq!(sim.resets_applied(id), 1, "device {id}");
    }
    assert_eq!(posts(&sim).len(), 5);
    crate::common::assert_intents_durable(&sim);
}

// With a saved plan, the command that sends the rest is the same `apply --plan FILE`: the resets
// the plan already sent are its own, not a change since review.
#[test]
fn ctrl_c_under_a_saved_plan_names_apply_plan_again() {
    let (repo, ids, sim) = held_first_answer();
    repo.cmd_on(&sim).args(["plan", "--out", "reviewed plan.json"]).assert().success();
    let out = interrupt_with_one_in_flight(&repo, &sim, &["apply", "--plan", "reviewed plan.json"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("4 not started — run `reconcile apply --plan 'reviewed plan.json'` again to send them."),
        "{text}"
    );
    let again = repo.cmd_on(&sim).args(["apply", "--plan", "reviewed plan.json"]).output().expect("run");
    assert!(again.status.success(), "{}{}", stdout(&again), crate::common::stderr(&again));
    for id in &ids {
        assert_eq!(sim.resets_applied(id), 1, "device {id}");
    }
    assert_eq!(posts(&sim).len(), 5);
}

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
        let done: Vec<&intune_reconcile::action::Action> = actions.iter().filter(|a| a.manifest == "done").collect();
        repo.record(&done, intune_reconcile::state::Status::Done, None);
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
    assert!(text.contains(&format!("{sent} accepted, 0 rejected, 0 unknown, {} not executed", N - sent)), "{text}");
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

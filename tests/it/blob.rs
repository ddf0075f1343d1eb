//! The ledger in Azure Blob Storage, against a real Azure Storage API:
//! Azurite on loopback, with the simulator for Graph.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::azurite::{self, Azurite, Container};
use crate::common::proxy::{Fault as NetFault, Proxy};
use crate::common::spawn::spawn_piped;
use crate::common::{
    Repo, android_id, android_sim, lock_id, manifest_for, posts, posts_per_device, stderr, stdout, wait_for_posts,
    wait_until,
};
use intune_reconcile::sim::{Fault, FaultKind, SimConfig, SimHandle};

/// A repository whose `reconcile.yaml` names a blob ledger (`team-a/state.json`) in `az`.
fn blob_repo(az: &Container, n: usize, extra: &str) -> (Repo, Vec<String>) {
    blob_repo_at(&az.url("team-a/state.json"), n, extra)
}

/// A repository whose `reconcile.yaml` names the blob ledger at `url`, and a manifest resetting
/// `n` Android devices.
fn blob_repo_at(url: &str, n: usize, extra: &str) -> (Repo, Vec<String>) {
    let repo = Repo::empty();
    repo.write(
        "reconcile.yaml",
        format!(
            "manifests: [manifests]\nstate: {url}\ngraph:\n  concurrency: 3\n  writeBudget: {{ requests: 1000, window: 1s }}\n  timeout: 2s\n  unknownGrace: 0s\n  backoff: {{ initial: 10ms, max: 200ms }}\n{extra}"
        ),
    );
    let ids: Vec<String> = (0..n).map(android_id).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    repo.write("manifests/batch.yaml", manifest_for("batch", &refs));
    (repo, ids)
}

/// `reconcile` in `repo`, signed in to `sim`, with the account key, naming the blob ledger as the
/// operator does.
fn command(repo: &Repo, sim: &SimHandle) -> std::process::Command {
    let mut c = repo.command_on(sim);
    c.env("AZURE_STORAGE_KEY", azurite::KEY);
    if let Some(url) = operator_state(repo) {
        c.env("RECONCILE_STATE", url);
    }
    c
}

/// [`command`] with the storage credential `var` (`AZURE_STORAGE_KEY`, `AZURE_STORAGE_SAS_TOKEN`)
/// set to `value`, and no other.
fn command_with(repo: &Repo, sim: &SimHandle, var: &str, value: &str) -> std::process::Command {
    let mut c = command(repo, sim);
    c.env_remove("AZURE_STORAGE_KEY").env(var, value);
    c
}

fn cmd(repo: &Repo, sim: &SimHandle) -> assert_cmd::Command {
    assert_cmd::Command::from_std(command(repo, sim))
}

/// The Blob URL `reconcile.yaml` repeats, which the operator names (a Blob ledger's location is
/// the operator's: the repository may only repeat it).
fn operator_state(repo: &Repo) -> Option<String> {
    let config = std::fs::read_to_string(repo.path().join("reconcile.yaml")).ok()?;
    config.lines().find_map(|l| l.strip_prefix("state: ").filter(|u| u.starts_with("http")).map(str::to_owned))
}

fn spawn(repo: &Repo, sim: &SimHandle, args: &[&str]) -> std::process::Child {
    spawn_piped(command(repo, sim).args(args))
}

// A container that does not exist: init (and every command) stops at once with the store's
// answer and what to do, never waiting on a lock it can never take.
#[test]
fn a_missing_container_is_named_at_once() {
    let az = Azurite::shared().container();
    let missing = az.url("team-a/state.json").replace(&format!("/{}/", az.name), &format!("/{}x/", az.name));
    let (repo, _) = blob_repo_at(&missing, 1, "");
    let sim = android_sim(1, |_| {});
    for args in [&["init"][..], &["apply", "--auto-approve"], &["plan"]] {
        let out = cmd(&repo, &sim).args(args).timeout(Duration::from_secs(15)).output().expect("run");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("container `"), "{args:?}: {}", stderr(&out));
    }
    assert!(posts(&sim).is_empty());
}

#[test]
fn init_apply_plan_and_inspect_a_blob_ledger() {
    let az = Azurite::shared().container();
    let (repo, ids) = blob_repo(&az, 5, "");
    let sim = android_sim(5, |_| {});
    // Missing: refused by apply, like a local one, naming the URL and `reconcile init`.
    let out = cmd(&repo, &sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&az.url("team-a/state.json")), "{}", stderr(&out));
    assert!(stderr(&out).contains("reconcile init"), "{}", stderr(&out));
    assert!(posts(&sim).is_empty());

    let out = cmd(&repo, &sim).arg("init").output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Created the ledger"), "{}", stdout(&out));
    assert_eq!(az.list(), ["team-a/state.json", "team-a/state.json.lock"]);
    let out = cmd(&repo, &sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(posts_per_device(&sim).len(), 5);
    assert!(posts_per_device(&sim).values().all(|&n| n == 1));
    // Compacted at the end: a snapshot, the (released) lock, and journal entries only as
    // tombstones (no records: their names stay taken, so no late write can fill them).
    let (entries, names): (Vec<String>, Vec<String>) =
        az.list().into_iter().partition(|n| n.starts_with("team-a/state.json.journal/"));
    assert_eq!(names, ["team-a/state.json", "team-a/state.json.lock"]);
    assert!(!entries.is_empty());
    for entry in &entries {
        let body: serde_json::Value = serde_json::from_str(&az.get(entry).expect("entry")).expect("json");
        assert_eq!(body["records"], serde_json::json!([]), "{entry}: {body}");
    }
    let snap: serde_json::Value = serde_json::from_str(&az.get("team-a/state.json").expect("snapshot")).expect("json");
    assert_eq!(snap["tenant"], "test-tenant");
    assert_eq!(snap["records"].as_object().map(|r| r.len()), Some(5));
    let lock: serde_json::Value = serde_json::from_str(&az.get("team-a/state.json.lock").expect("lock")).expect("json");
    assert_eq!(lock["released"], true, "{lock}");

    let out = cmd(&repo, &sim).args(["plan", "--detailed-exitcode"]).output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}\n{}", stdout(&out), stderr(&out));
    let out = cmd(&repo, &sim).args(["state", "list"]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    for id in &ids {
        assert!(stdout(&out).contains(id.as_str()), "{}", stdout(&out));
    }
    // Nothing local was written for the ledger.
    assert!(!repo.path().join(".reconcile/state.json").exists());
}

fn ledger_json(repo: &Repo, sim: &SimHandle) -> serde_json::Value {
    let out = cmd(repo, sim).args(["state", "list", "--format", "json"]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("json")
}

/// Every client-request-id the ledger recorded, per device.
fn recorded_ids(repo: &Repo, sim: &SimHandle) -> std::collections::HashSet<String> {
    let mut ids = std::collections::HashSet::new();
    let text = ledger_json(repo, sim).to_string();
    for part in text.split("\"clientRequestId\":\"").skip(1) {
        ids.insert(part.split('"').next().unwrap_or_default().to_owned());
    }
    ids
}

// Two CI runners, two checkouts, one blob ledger: the second is refused naming the holder, or
// waits with --lock-timeout and then finds nothing left to do. Every device is reset once.
#[test]
fn two_runners_share_one_blob_ledger_exactly_once() {
    let az = Azurite::shared().container();
    let (one, ids) = blob_repo(&az, 12, "");
    let (two, _) = blob_repo(&az, 12, "");
    let sim = android_sim(12, |c| c.latency = Duration::from_millis(150));
    cmd(&one, &sim).arg("init").assert().success();
    let first = spawn(&one, &sim, &["apply", "--auto-approve"]);
    wait_for_posts(&sim, 1);
    let refused = cmd(&two, &sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(refused.status.code(), Some(1));
    let msg = stderr(&refused);
    assert!(msg.contains("is locked by pid") && msg.contains("reconcile apply") && msg.contains("lock ID"), "{msg}");
    let waited = cmd(&two, &sim).args(["apply", "--auto-approve", "--lock-timeout", "60s"]).output().expect("run");
    let first = first.wait_with_output().expect("first run");
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(waited.status.success(), "{}", stderr(&waited));
    assert!(stdout(&waited).contains("Nothing to do"), "{}", stdout(&waited));
    let per = posts_per_device(&sim);
    assert_eq!(per.len(), ids.len());
    assert!(per.values().all(|&n| n == 1), "{per:?}");
}

// kill -9 of a runner mid-apply: its lock is never released. The other runner is refused while
// the lock is fresh, and takes it over once nobody renewed it for 60 s of the store's clock (the
// store's clock is moved on, by the `Date` of its answers, instead of waiting a minute); it
// replays the dead run's journal (its in-flight actions are `unknown`, never re-sent), and
// refresh settles them.
#[test]
fn kill_dash_nine_then_the_other_runner_takes_over_the_stale_lock() {
    let az = Azurite::shared().container();
    let (one, ids) = blob_repo(&az, 20, "");
    let proxy = Proxy::start(az.port());
    let (two, _) = blob_repo_at(&proxy.url(&az, "team-a/state.json"), 20, "");
    // The dead run's first resets (three at a time) are answered late: in flight when it dies.
    let sim = android_sim(20, |c| {
        c.faults = vec![Fault { device_id: None, kind: FaultKind::AnswerLate(Duration::from_secs(2)), times: 3 }];
    });
    cmd(&one, &sim).arg("init").assert().success();
    let mut first = spawn(&one, &sim, &["apply", "--auto-approve"]);
    wait_for_posts(&sim, 3);
    first.kill().expect("SIGKILL");
    let _ = first.wait();
    let sent: std::collections::HashSet<String> =
        posts(&sim).iter().filter_map(|p| p.client_request_id.clone()).collect();
    assert!(sent.len() < ids.len(), "killed mid-apply");
    // Every request that left has its intent in the shared ledger.
    assert!(sent.is_subset(&recorded_ids(&one, &sim)), "an intent was missing for a sent request");
    let refused = cmd(&two, &sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(refused.status.code(), Some(1), "the dead run's lock is taken only once it expired");
    assert!(stderr(&refused).contains("is locked by pid"), "{}", stderr(&refused));
    // A lock nobody renews expires after 60 s (README, `state unlock`).
    proxy.move_clock(Duration::from_secs(61));
    let second = cmd(&two, &sim).args(["apply", "--auto-approve", "--lock-timeout", "10s"]).output().expect("run");
    assert!(stderr(&second).contains("taking over a ledger lock"), "{}", stderr(&second));
    let per = posts_per_device(&sim);
    assert!(per.values().all(|&n| n == 1), "no device got a second POST: {per:?}");
    // refresh settles the dead run's unknown actions from Intune; then everything is done once.
    cmd(&two, &sim).arg("refresh").assert().success();
    cmd(&two, &sim).args(["apply", "--auto-approve"]).assert().success();
    for id in &ids {
        assert_eq!(sim.resets_applied(id), 1, "device {id}");
    }
    let plan = cmd(&one, &sim).args(["plan", "--detailed-exitcode"]).output().expect("run");
    assert_eq!(plan.status.code(), Some(0), "{}", stdout(&plan));
}

// The store goes away mid-apply: no request is sent without its intent durable in the store, the
// run stops sending and exits 1 with a clear error; outcomes of requests in flight are written when
// the store is back (or reported). Restarting the store and re-running converges exactly once.
#[test]
fn storage_outage_mid_apply_stops_sending_and_converges_after() {
    let mut store = Azurite::start_persistent();
    let az = store.container();
    // The store restarts on another port; the proxy keeps the address the tool was given.
    let proxy = Proxy::start(store.port());
    let (repo, ids) = blob_repo_at(&proxy.url(&az, "team-a/state.json"), 20, "");
    // The resets in flight when the store goes away are answered late; the reruns' are not.
    let sim = android_sim(20, |c| {
        c.faults = vec![Fault { device_id: None, kind: FaultKind::AnswerLate(Duration::from_millis(1500)), times: 6 }];
    });
    cmd(&repo, &sim).arg("init").assert().success();
    let child = spawn(&repo, &sim, &["apply", "--auto-approve"]);
    wait_for_posts(&sim, 3);
    let seen = proxy.log().len();
    store.stop();
    let at_outage = posts(&sim).len();
    // The run meets the outage: a write to the ledger fails on every try (the first and the
    // store client's 3 retries), so the run stops sending and keeps the outcomes it could not
    // write. (A store back sooner may take the write on a retry, and the run then rightly ends
    // well: not the case tested here.)
    wait_until("a ledger write that failed on every try", || {
        let mut failed: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for r in proxy.log()[seen..].iter().filter(|r| r.method == "PUT" && r.status.is_none()) {
            *failed.entry(r.path.clone()).or_default() += 1;
        }
        failed.values().any(|&n| n >= 4)
    });
    store.restart();
    proxy.set_upstream(store.port());
    let out = child.wait_with_output().expect("apply ends");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("cannot write the ledger")
            || err.contains("cannot lock")
            || err.contains("no longer holds the lock"),
        "{err}"
    );
    assert!(!err.contains(azurite::KEY), "the storage key leaked: {err}");
    // No request left after the outage began beyond those already on their way, and every request
    // that left has its intent in the store.
    let sent: std::collections::HashSet<String> =
        posts(&sim).iter().filter_map(|p| p.client_request_id.clone()).collect();
    assert!(posts(&sim).len() <= at_outage + 3, "requests kept leaving during the outage");
    let mut released = cmd(&repo, &sim).args(["state", "list"]).output().expect("run");
    if !released.status.success() {
        released = cmd(&repo, &sim).args(["state", "list"]).output().expect("run");
    }
    assert!(released.status.success(), "{}", stderr(&released));
    assert!(sent.is_subset(&recorded_ids(&repo, &sim)), "a request was sent without a durable intent");
    // Re-run: the lock may still be held by the run that could not release it.
    let again = cmd(&repo, &sim).args(["apply", "--auto-approve"]).output().expect("run");
    if !again.status.success() && stderr(&again).contains("lock ID") {
        cmd(&repo, &sim).args(["state", "unlock", &lock_id(&stderr(&again))]).assert().success();
    }
    cmd(&repo, &sim).args(["apply", "--auto-approve"]).output().expect("run");
    cmd(&repo, &sim).arg("refresh").assert().success();
    cmd(&repo, &sim).args(["apply", "--auto-approve"]).assert().success();
    for id in &ids {
        assert_eq!(sim.resets_applied(id), 1, "device {id}");
    }
    let per = posts_per_device(&sim);
    assert!(per.values().all(|&n| n == 1), "{per:?}");
}

// `state push` moves a local ledger into a blob (refusing a different lineage there), and
// `state pull` brings it back to a file.
#[test]
fn push_a_local_ledger_to_a_blob_and_pull_it_back() {
    let az = Azurite::shared().container();
    let sim = android_sim(3, |_| {});
    let repo = Repo::empty();
    repo.fast_config("");
    let ids: Vec<String> = (0..3).map(android_id).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    repo.write("manifests/batch.yaml", manifest_for("batch", &refs));
    cmd(&repo, &sim).args(["apply", "--auto-approve"]).assert().success();
    let url = az.url("moved/state.json");
    let out = cmd(&repo, &sim).args(["state", "push", &url]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Copied 3 records"), "{}", stdout(&out));
    // Applying against the blob now finds nothing to do.
    let out = cmd(&repo, &sim).args(["--state", &url, "apply", "--auto-approve"]).output().expect("run");
    assert!(stdout(&out).contains("Nothing to do"), "{}\n{}", stdout(&out), stderr(&out));
    // Pulled back to a new file, it is the same ledger.
    let out = cmd(&repo, &sim).args(["--state", &url, "state", "pull", "pulled.json"]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let pulled: serde_json::Value = serde_json::from_str(&repo.read("pulled.json")).expect("json");
    assert_eq!(pulled["lineage"], repo.ledger_json()["lineage"]);
    assert_eq!(pulled["records"], repo.ledger_json()["records"]);
    // Another ledger (another lineage) is never pushed over it.
    let other = Repo::empty();
    other.fast_config("");
    other.write("manifests/batch.yaml", manifest_for("batch", &refs[..1]));
    let out = cmd(&other, &sim).args(["state", "push", &url]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("refusing to overwrite"), "{}", stderr(&out));
    let out = cmd(&repo, &sim).args(["--state", &url, "state", "list"]).output().expect("run");
    assert_eq!(stdout(&out).lines().filter(|l| ids.iter().any(|id| l.contains(id.as_str()))).count(), 3);
}

// Storage credentials come from the environment only, never show in output, and a wrong one is a
// clear error before anything is sent.
#[test]
fn a_wrong_storage_key_is_refused_before_anything_is_sent_and_never_shown() {
    let az = Azurite::shared().container();
    let (repo, _) = blob_repo(&az, 2, "");
    let sim = android_sim(2, |_| {});
    cmd(&repo, &sim).arg("init").assert().success();
    let wrong = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5";
    let out = cmd(&repo, &sim).env("AZURE_STORAGE_KEY", wrong).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("cannot read the ledger") || all.contains("cannot lock the ledger"), "{all}");
    assert!(!all.contains(wrong), "{all}");
    assert!(posts(&sim).is_empty());
    // A ready Graph token is never sent to storage.
    let out = repo
        .cmd()
        .env("RECONCILE_GRAPH_URL", sim.url())
        .env("RECONCILE_GRAPH_TOKEN", "eyJ.graph.token")
        .env("RECONCILE_STATE", operator_state(&repo).expect("a blob ledger"))
        .args(["apply", "--auto-approve"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("never sent to storage"), "{}", stderr(&out));
}

// A ledger object was read whole, however long. One past its cap (the lock's is 1 MiB) is refused
// naming the host and the cap, before anything is sent or recorded.
#[test]
fn a_lock_blob_over_its_cap_is_refused() {
    let az = Azurite::shared().container();
    let (repo, _) = blob_repo(&az, 1, "");
    let sim = android_sim(1, |_| {});
    let out = cmd(&repo, &sim).arg("init").output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    // A released lock, still valid JSON, padded past 1 MiB.
    let mut lock = az.get("team-a/state.json.lock").expect("lock").into_bytes();
    lock.extend(std::iter::repeat_n(b' ', 1024 * 1024 + 1));
    az.put("team-a/state.json.lock", &lock);
    let snapshot = az.get("team-a/state.json");
    let out = cmd(&repo, &sim).args(["apply", "--auto-approve"]).output().expect("run");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("127.0.0.1 sent more than 1 MiB; refusing the answer"), "{err}");
    assert!(posts(&sim).is_empty(), "nothing is sent");
    assert_eq!(az.get("team-a/state.json"), snapshot, "nothing recorded");
    assert_eq!(az.list(), ["team-a/state.json", "team-a/state.json.lock"]);
}

/// A repository on a blob ledger reached through a fault-injecting proxy in front of Azurite,
/// created (`init`) before any fault is set.
fn through_proxy(n: usize) -> (Proxy, Repo, Vec<String>, SimHandle) {
    let (_, proxy, repo, ids, sim) = through_proxy_with(n, |_| {});
    (proxy, repo, ids, sim)
}

/// [`through_proxy`] with the simulator tuned by `tweak`, and the container behind the proxy.
fn through_proxy_with(
    n: usize,
    tweak: impl FnOnce(&mut SimConfig),
) -> (Container, Proxy, Repo, Vec<String>, SimHandle) {
    let az = Azurite::shared().container();
    let proxy = Proxy::start(az.port());
    let (repo, ids) = blob_repo_at(&proxy.url(&az, "team-a/state.json"), n, "");
    let sim = android_sim(n, tweak);
    cmd(&repo, &sim).arg("init").assert().success();
    (az, proxy, repo, ids, sim)
}

fn is_lock(p: &str) -> bool {
    p.ends_with("/team-a/state.json.lock")
}

fn is_snapshot(p: &str) -> bool {
    p.ends_with("/team-a/state.json")
}

fn is_entry(p: &str) -> bool {
    p.contains("/team-a/state.json.journal/")
}

/// An apply through `proxy` once its fault is set: it succeeds, nobody is taken for someone
/// else, every device got one POST and every one is recorded `accepted`, and the ledger reads.
fn apply_survives(proxy: &Proxy, repo: &Repo, ids: &[String], sim: &SimHandle) {
    let out = cmd(repo, sim).args(["apply", "--auto-approve"]).output().expect("run");
    let err = stderr(&out);
    assert!(!proxy.faulted().is_empty(), "the fault was applied: {:?}", proxy.log());
    assert_eq!(out.status.code(), Some(0), "{}\n{err}", stdout(&out));
    for false_alarm in ["someone else", "another writer", "no longer holds", "locked by pid"] {
        assert!(!err.contains(false_alarm), "{false_alarm}: {err}");
    }
    let per = posts_per_device(sim);
    assert_eq!(per.len(), ids.len(), "{per:?}");
    assert!(per.values().all(|&n| n == 1), "no device got a second POST: {per:?}");
    let ledger = ledger_json(repo, sim);
    let actions = ledger["actions"].as_array().expect("actions");
    assert_eq!(actions.len(), ids.len(), "{ledger}");
    assert!(actions.iter().all(|a| a["status"] == "accepted"), "every 204 is recorded accepted: {ledger}");
    let plan = cmd(repo, sim).args(["plan", "--detailed-exitcode"]).output().expect("run");
    assert_eq!(plan.status.code(), Some(0), "{}\n{}", stdout(&plan), stderr(&plan));
}

// The lock is taken, but the answer is lost: object_store sends the write again and meets the
// lock it just wrote (412). That is our own lock, not another run's. (The lock blob exists since
// `init`, released: the first lock PUT is the create that finds it, the second takes it over.)
#[test]
fn a_lost_answer_to_the_lock_acquisition_is_our_lock() {
    let (proxy, repo, ids, sim) = through_proxy(6);
    proxy.fault("PUT", is_lock, 2, 1, NetFault::LoseAnswer);
    apply_survives(&proxy, &repo, &ids, &sim);
}

// The end-of-run snapshot compare-and-swap lands, its answer is lost, and the retry meets 412:
// the snapshot read back is the one written, so the run succeeds.
#[test]
fn a_lost_answer_to_the_snapshot_swap_is_our_snapshot() {
    let (proxy, repo, ids, sim) = through_proxy(10);
    proxy.fault("PUT", is_snapshot, 1, 1, NetFault::LoseAnswer);
    apply_survives(&proxy, &repo, &ids, &sim);
}

// A journal entry is written, but it and each of object_store's retries are answered 500: read
// back, the entry is ours, so the run goes on and every outcome is recorded.
#[test]
fn a_journal_entry_answered_500_after_it_landed_is_ours() {
    let (proxy, repo, ids, sim) = through_proxy(8);
    proxy.fault("PUT", is_entry, 3, 4, NetFault::Fail500);
    apply_survives(&proxy, &repo, &ids, &sim);
}

// The other side of the same answer: 500s for an entry that never reached the store. The read
// back finds nothing, so it is what it says — the ledger cannot be written, nothing more is sent —
// and never taken for another writer's doing (which would fence the run with a false alarm). The
// next run converges: each device once.
#[test]
fn a_journal_entry_refused_before_it_landed_is_an_outage_not_another_writer() {
    let (proxy, repo, ids, sim) = through_proxy(8);
    proxy.fault("PUT", is_entry, 3, 4, NetFault::Refuse500);
    let out = cmd(&repo, &sim).args(["apply", "--auto-approve"]).output().expect("run");
    let err = stderr(&out);
    assert!(!proxy.faulted().is_empty(), "the fault was applied");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot write the ledger"), "{err}");
    for false_alarm in ["someone else", "another writer", "no longer holds", "locked by pid"] {
        assert!(!err.contains(false_alarm), "{false_alarm}: {err}");
    }
    let again = cmd(&repo, &sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert!(again.status.code().is_some(), "{}", stderr(&again));
    let _ = cmd(&repo, &sim).arg("refresh").output().expect("run");
    let _ = cmd(&repo, &sim).args(["apply", "--auto-approve"]).output().expect("run");
    let per = posts_per_device(&sim);
    assert!(per.values().all(|&n| n == 1), "no device got a second POST: {per:?}");
    assert_eq!(per.len(), ids.len(), "every device was reset once in the end: {per:?}");
}

/// Starts an apply whose resets are answered late, kills it (SIGKILL) once its first reset left,
/// and returns the lock ID the next run is refused with: the lock of a dead runner.
fn dead_runners_lock(repo: &Repo, sim: &SimHandle) -> String {
    let mut apply = spawn(repo, sim, &["apply", "--auto-approve"]);
    wait_for_posts(sim, 1);
    apply.kill().expect("SIGKILL");
    let _ = apply.wait();
    // The late answers only keep the dead run's resets in flight; the runs after it meet none
    // (an answer 2 s late against a 2 s timeout would make their outcome a matter of timing).
    sim.state().config.faults.clear();
    let refused = cmd(repo, sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("is locked by pid"), "{}", stderr(&refused));
    lock_id(&stderr(&refused))
}

fn late_answers(c: &mut SimConfig) {
    c.faults = vec![Fault { device_id: None, kind: FaultKind::AnswerLate(Duration::from_secs(2)), times: 20 }];
}

/// The lock object of the `team-a/state.json` ledger in `az`.
fn lock_of(az: &Container) -> serde_json::Value {
    serde_json::from_str(&az.get("team-a/state.json.lock").expect("lock")).expect("lock JSON")
}

// `state unlock ID` releases the lock a dead runner left (by the ID its refusal names, and by that
// ID only), and the next run goes on at once; each device is still reset once.
#[test]
fn state_unlock_releases_a_dead_runners_lock_by_its_id() {
    let az = Azurite::shared().container();
    let (repo, ids) = blob_repo(&az, 6, "");
    let sim = android_sim(6, late_answers);
    cmd(&repo, &sim).arg("init").assert().success();
    let id = dead_runners_lock(&repo, &sim);
    let out = cmd(&repo, &sim).args(["state", "unlock", "not-the-lock-id"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is not locked by `not-the-lock-id`"), "{}", stderr(&out));
    assert_eq!(lock_of(&az)["released"], false, "another ID releases nothing");

    let out = cmd(&repo, &sim).args(["state", "unlock", &id]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(said.contains("Released the lock of") && said.contains("(`reconcile apply`)"), "{said}");
    assert_eq!(lock_of(&az)["released"], true, "{}", lock_of(&az));
    let again = cmd(&repo, &sim).args(["state", "unlock", &id]).output().expect("run");
    assert_eq!(again.status.code(), Some(1), "released already: {}", stdout(&again));

    // The next run takes the lock at once (no --lock-timeout); the dead run's actions in flight
    // are `unknown` until refresh settles them, and nothing is sent twice.
    let next = cmd(&repo, &sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert!(!stderr(&next).contains("is locked by"), "{}", stderr(&next));
    cmd(&repo, &sim).arg("refresh").assert().success();
    cmd(&repo, &sim).args(["apply", "--auto-approve"]).assert().success();
    crate::common::assert_each_reset_once(&sim, &ids);
}

// A release the store did not take is not reported as done: `state unlock` exits 1 naming the
// failure, the lock stays as it was, and the same command succeeds once the store takes it.
#[test]
fn state_unlock_reports_a_release_the_store_refused() {
    let (az, proxy, repo, _, sim) = through_proxy_with(4, late_answers);
    let id = dead_runners_lock(&repo, &sim);
    proxy.fault("PUT", is_lock, 1, usize::MAX / 2, NetFault::Refuse500);
    let out = cmd(&repo, &sim).args(["state", "unlock", &id]).output().expect("run");
    assert!(!proxy.faulted().is_empty(), "the release was refused: {:?}", proxy.log());
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("cannot unlock the ledger"), "{}", stderr(&out));
    assert!(!stdout(&out).contains("Released"), "{}", stdout(&out));
    assert_eq!(lock_of(&az)["released"], false, "{}", lock_of(&az));
    // Straight to the store (no proxy): released.
    let config = repo.read("reconcile.yaml");
    let through = operator_state(&repo).expect("a blob ledger");
    repo.write("reconcile.yaml", config.replace(&through, &az.url("team-a/state.json")));
    let out = cmd(&repo, &sim).args(["state", "unlock", &id]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(lock_of(&az)["released"], true);
}

// A SAS token (AZURE_STORAGE_SAS_TOKEN, no account key) authorises the blob ledger: init, apply
// and state list work, and the token is never shown. One signed with another key is refused
// before anything is sent. (Azurite checks SAS signatures with its well-known key.)
#[test]
fn a_sas_token_authorises_the_blob_ledger_and_is_never_shown() {
    let az = Azurite::shared().container();
    let (repo, ids) = blob_repo(&az, 3, "");
    let sim = android_sim(3, |_| {});
    let sas = az.sas();
    let sig = sas.split("sig=").nth(1).expect("a signature").to_owned();
    let run = |sas: &str, args: &[&str]| {
        command_with(&repo, &sim, "AZURE_STORAGE_SAS_TOKEN", sas).args(args).output().expect("run")
    };
    let wrong = sas.replace(&sig, "V3JvbmdTaWduYXR1cmVXcm9uZ1NpZ25hdHVyZQ%3D%3D");
    let out = run(&wrong, &["init"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("cannot read the ledger") || all.contains("cannot lock the ledger"), "{all}");
    assert!(!all.contains("V3JvbmdTaWduYXR1cmVXcm9uZ1NpZ25hdHVyZQ"), "the SAS leaked: {all}");
    assert!(az.list().is_empty(), "nothing was written");

    let mut all = String::new();
    for args in [&["init"][..], &["apply", "--auto-approve"], &["state", "list"]] {
        let out = run(&sas, args);
        all.push_str(&format!("{}{}", stdout(&out), stderr(&out)));
        assert!(out.status.success(), "{args:?}: {all}");
    }
    let names = az.list();
    assert!(names.iter().any(|n| n == "team-a/state.json") && names.iter().any(|n| n == "team-a/state.json.lock"));
    crate::common::assert_each_reset_once(&sim, &ids);
    for id in &ids {
        assert!(all.contains(id.as_str()), "state list shows {id}: {all}");
    }
    let decoded = percent_encoding::percent_decode_str(&sig).decode_utf8_lossy().into_owned();
    for secret in [&sas, &sig, &decoded] {
        assert!(!all.contains(secret.as_str()), "the SAS leaked: {all}");
    }
}

/// A stand-in for Azure Blob Storage that accepts only Entra bearer tokens (Azurite takes them
/// only over HTTPS, with `--oauth basic`): it serves `snapshot` as the ledger
/// `devstoreaccount1/ledgers/team-a/state.json`, with an empty journal, and records the
/// `Authorization` of every request.
fn entra_only_storage(snapshot: String) -> (crate::common::http::Server, Arc<Mutex<Vec<String>>>) {
    use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
    use axum::response::IntoResponse;
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
        let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        log.lock().expect("log").push(auth.clone());
        let snapshot = snapshot.clone();
        async move {
            if !auth.starts_with("Bearer ") {
                return (StatusCode::FORBIDDEN, [("x-ms-error-code", "NoAuthenticationInformation")], String::new())
                    .into_response();
            }
            let date = jiff::Timestamp::now().strftime("%a, %d %b %Y %H:%M:%S GMT").to_string();
            let query = uri.query().unwrap_or_default();
            if uri.path() == "/devstoreaccount1/ledgers" && query.contains("comp=list") {
                let xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ContainerName=\"ledgers\"><Blobs /><NextMarker /></EnumerationResults>";
                return ([(header::CONTENT_TYPE, "application/xml"), (header::DATE, date.as_str())], xml).into_response();
            }
            if uri.path() == "/devstoreaccount1/ledgers/team-a/state.json" && (method == Method::GET || method == Method::HEAD) {
                let headers = [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::ETAG, "\"0x8DC0000000000A1\""),
                    (header::LAST_MODIFIED, date.as_str()),
                    (header::DATE, date.as_str()),
                ];
                return (headers, snapshot).into_response();
            }
            (StatusCode::NOT_FOUND, [("x-ms-error-code", "BlobNotFound")], String::new()).into_response()
        }
    });
    (crate::common::http::Server::start(app), seen)
}

// With no storage key or SAS token, the blob ledger is authorised by the Entra credential: a
// token asked of the authority for the storage scope (not Graph's) is sent as `Bearer`, never
// the client secret, and neither is shown. Against a stand-in for the Blob service (Azurite takes
// bearer tokens only over HTTPS), which serves a ledger of one record.
#[test]
fn an_entra_credential_reads_the_blob_ledger_with_a_storage_token() {
    let (scratch, ids) = crate::common::batch_repo(1, "");
    let actions = scratch.actions();
    scratch.record(&actions.iter().collect::<Vec<_>>(), intune_reconcile::ledger::Status::Accepted, None);
    let (storage, seen) = entra_only_storage(scratch.read(".reconcile/state.json"));
    let (repo, _) = blob_repo_at(&format!("{}/devstoreaccount1/ledgers/team-a/state.json", storage.url), 1, "");
    let sim = android_sim(1, |_| {});
    let mut c = command(&repo, &sim);
    c.env_remove("AZURE_STORAGE_KEY").args(["state", "list"]);
    let out = c.output().expect("run");
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{all}");
    assert!(stdout(&out).contains(&ids[0]), "the record was read: {all}");

    let tokens: Vec<_> = sim.requests().into_iter().filter(|r| r.path.ends_with("/oauth2/v2.0/token")).collect();
    assert_eq!(tokens.len(), 1, "one token, for storage: {tokens:?}");
    assert_eq!(tokens[0].scope.as_deref(), Some("https://storage.azure.com/.default"));
    assert_eq!(tokens[0].credential.as_deref(), Some("secret"));
    assert!(tokens[0].path.starts_with("/test-tenant/"), "{}", tokens[0].path);
    assert!(sim.requests().len() == 1, "nothing asked of Graph: {:?}", sim.requests());
    let seen = seen.lock().expect("log").clone();
    assert!(!seen.is_empty(), "the store was read");
    for auth in &seen {
        let token = auth.strip_prefix("Bearer ").unwrap_or_else(|| panic!("not a bearer token: {auth:?}"));
        let claims = token.split('.').nth(1).expect("a JWT");
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims).expect("base64"),
        )
        .expect("claims");
        assert_eq!(claims["tid"], "test-tenant", "a token the simulator issued: {claims}");
        assert!(!auth.contains(crate::common::SECRET), "the client secret went to storage");
        assert!(!all.contains(token), "the storage token was shown: {all}");
    }
    assert!(!all.contains(crate::common::SECRET), "{all}");
}

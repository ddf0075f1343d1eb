//! One ledger suite, run against every home: a local file, a blob on Azurite, and memory. Every
//! promise of docs/contract.md, Ledger (created on purpose, tenant binding, one writer, durable
//! records, crash leftovers, copies between homes) holds the same way for each.

use std::time::Duration;

use crate::common::azurite::{self, Azurite, Container};
use crate::common::proxy::{Fault, Proxy};
use crate::common::{lock_id, wait_until};
use intune_reconcile::core::action::{Action, ActionKey, ActionKind, Collection, Selector, SelectorKind};
use intune_reconcile::ledger::blob::{BlobStore, StorageAuth};
use intune_reconcile::ledger::memory::MemoryStore;
use intune_reconcile::ledger::{Attempt, BlobUrl, Ledger, LocalStore, Location, Record, StateError, Status, Store};

/// A home for a ledger, and whatever keeps it alive (held only to be dropped at the end).
#[allow(dead_code)]
enum Home {
    Local(tempfile::TempDir),
    Blob(Container),
    Memory,
}

fn local() -> (Home, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::from(LocalStore::new(dir.path().join("state.json")));
    (Home::Local(dir), store)
}

fn blob_at(az: &Container, path: &str) -> Store {
    let url = BlobUrl::parse(&az.url(path), intune_reconcile::settings::Cloud::Global).expect("url");
    Store::from(
        BlobStore::open(url, StorageAuth::Key(azurite::KEY.to_owned().into()), Duration::from_secs(5)).expect("open"),
    )
}

fn blob() -> (Home, Store) {
    let az = Azurite::shared().container();
    let store = blob_at(&az, "team/state.json");
    (Home::Blob(az), store)
}

fn memory() -> (Home, Store) {
    (Home::Memory, Store::from(MemoryStore::new()))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

fn record(serial: &str, status: Status) -> Record {
    let selector = Selector { kind: SelectorKind::SerialNumber, value: serial.into() };
    let action = Action {
        key: ActionKey::compute(
            ActionKind::PasscodeReset,
            &Default::default(),
            "m",
            1,
            Collection::ManagedDevices,
            &selector,
        ),
        former_names: Vec::new(),
        former_keys: Vec::new(),
        kind: ActionKind::PasscodeReset,
        parameters: Default::default(),
        manifest: "m".into(),
        file: "manifests/m.yaml".into(),
        pos: intune_reconcile::diag::Pos::new(1, 1),
        round: 1,
        collection: Collection::ManagedDevices,
        selector,
    };
    let mut r = Record::new(&action, Some(format!("device-{serial}")), jiff::Timestamp::now());
    r.status = status;
    r.attempts.push(Attempt {
        started_at: jiff::Timestamp::now(),
        client_request_id: uuid::Uuid::new_v4(),
        ..Attempt::default()
    });
    r
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod on_local { $( #[test] fn $name() { let (_h, s) = super::local(); super::$name(&s); } )* }
        mod on_blob { $( #[test] fn $name() { let (_h, s) = super::blob(); super::$name(&s); } )* }
        mod on_memory { $( #[test] fn $name() { let (_h, s) = super::memory(); super::$name(&s); } )* }
    };
}

suite!(
    created_on_purpose_and_bound_to_its_tenant,
    one_writer_at_a_time_naming_the_holder,
    every_record_is_durable_before_commit_and_survives_a_crash,
    many_records_survive_compaction,
    a_copy_goes_only_to_a_new_home_or_one_it_extends,
    a_person_decides_about_one_action,
);

fn created_on_purpose_and_bound_to_its_tenant(s: &Store) {
    let rt = rt();
    assert!(!rt.block_on(s.exists()).expect("exists"));
    assert_eq!(rt.block_on(s.load()).expect("load"), Ledger::empty());
    assert!(matches!(rt.block_on(s.load_existing()), Err(StateError::Missing { .. })));
    assert!(matches!(rt.block_on(s.lock(Duration::ZERO, "t", Some("tenant-a"))), Err(StateError::Missing { .. })));
    assert!(rt.block_on(s.create(Duration::ZERO, "tenant-a")).expect("create"));
    assert!(!rt.block_on(s.create(Duration::ZERO, "tenant-a")).expect("again: a no-op"));
    assert!(matches!(rt.block_on(s.create(Duration::ZERO, "tenant-b")), Err(StateError::WrongTenant { .. })));
    assert!(matches!(rt.block_on(s.lock(Duration::ZERO, "t", Some("tenant-b"))), Err(StateError::WrongTenant { .. })));
    let l = rt.block_on(s.load_existing()).expect("load");
    assert_eq!(l.tenant.as_deref(), Some("tenant-a"));
    assert!(l.lineage.is_some());
}

fn one_writer_at_a_time_naming_the_holder(s: &Store) {
    let rt = rt();
    rt.block_on(s.create(Duration::ZERO, "tenant-a")).expect("create");
    let w = rt.block_on(s.lock(Duration::ZERO, "reconcile apply", Some("tenant-a"))).expect("lock");
    let err = rt.block_on(s.lock(Duration::ZERO, "reconcile refresh", Some("tenant-a"))).expect_err("held");
    let msg = err.to_string();
    assert!(msg.contains("is locked by pid") && msg.contains("reconcile apply"), "{msg}");
    // A waiter gets it once the holder is done.
    let waiter = {
        let s = s.clone();
        std::thread::spawn(move || rt_block(s.lock(Duration::from_secs(20), "waiter", Some("tenant-a")).then_commit()))
    };
    // Time is the subject: a waiter is one that asked while the lock was held, and no event says
    // a lock call is waiting. 300 ms to ask; had it not, it would still pass, never fail falsely.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!waiter.is_finished(), "the waiter waits while the lock is held");
    rt.block_on(w.commit()).expect("commit");
    waiter.join().expect("thread").expect("the waiter got the lock");
}

trait ThenCommit {
    fn then_commit(self) -> impl std::future::Future<Output = Result<Ledger, StateError>>;
}

impl<F: std::future::Future<Output = Result<intune_reconcile::ledger::Writer, StateError>>> ThenCommit for F {
    async fn then_commit(self) -> Result<Ledger, StateError> {
        self.await?.commit().await
    }
}

fn rt_block<T>(f: impl std::future::Future<Output = T>) -> T {
    rt().block_on(f)
}

fn every_record_is_durable_before_commit_and_survives_a_crash(s: &Store) {
    let rt = rt();
    rt.block_on(s.create(Duration::ZERO, "tenant-a")).expect("create");
    let mut w = rt.block_on(s.lock(Duration::ZERO, "t", Some("tenant-a"))).expect("lock");
    let a = record("A", Status::Unknown);
    rt.block_on(w.record(a.clone())).expect("intent");
    // Readers see it at once, before any commit.
    assert_eq!(rt.block_on(s.load()).expect("load").records.get(&a.key), Some(&a));
    let mut done = a.clone();
    done.status = Status::Accepted;
    rt.block_on(w.record(done.clone())).expect("outcome");
    // A crash: the writer vanishes without committing (and, for a blob, without releasing).
    drop(w);
    let l = rt.block_on(s.load()).expect("load after crash");
    assert_eq!(l.records.get(&a.key), Some(&done));
    if let Location::Blob(_) = s.location() {
        // The dead holder's lock is still there until it expires or a person releases it.
        let err = rt.block_on(s.lock(Duration::ZERO, "t", Some("tenant-a"))).expect_err("still locked");
        let id = lock_id(&err.to_string());
        let holder = rt.block_on(s.unlock(&id)).expect("unlock");
        assert_eq!(holder.command, "t");
        assert!(matches!(rt.block_on(s.unlock(&id)), Err(StateError::NotLocked { .. })));
    }
    // The next writer folds the leftovers into a snapshot and loses nothing.
    let w = rt.block_on(s.lock(Duration::ZERO, "t", Some("tenant-a"))).expect("lock again");
    assert_eq!(w.ledger().records.get(&a.key), Some(&done));
    let l = rt.block_on(w.commit()).expect("commit");
    assert_eq!(l.records.len(), 1);
    assert_eq!(rt.block_on(s.load()).expect("load"), l);
}

fn many_records_survive_compaction(s: &Store) {
    let rt = rt();
    rt.block_on(s.create(Duration::ZERO, "tenant-a")).expect("create");
    let mut w = rt.block_on(s.lock(Duration::ZERO, "t", Some("tenant-a"))).expect("lock");
    // Hundreds of journal entries (one blob each for a blob ledger), folded into one snapshot.
    let records: Vec<Record> = (0..300).map(|i| record(&format!("S{i:04}"), Status::Unknown)).collect();
    for r in &records {
        rt.block_on(w.record(r.clone())).expect("record");
    }
    let before = rt.block_on(s.load()).expect("load mid-run");
    assert_eq!(before.records.len(), 300);
    let l = rt.block_on(w.commit()).expect("commit");
    assert_eq!(rt.block_on(s.load()).expect("load"), l);
    assert_eq!(l.records.len(), 300);
}

fn a_copy_goes_only_to_a_new_home_or_one_it_extends(s: &Store) {
    let rt = rt();
    rt.block_on(s.create(Duration::ZERO, "tenant-a")).expect("create");
    let mut w = rt.block_on(s.lock(Duration::ZERO, "t", Some("tenant-a"))).expect("lock");
    rt.block_on(w.record(record("A", Status::Accepted))).expect("record");
    let source = rt.block_on(w.commit()).expect("commit");
    // To a new local file and back over the original: the same ledger, so allowed.
    let (_h, other) = local();
    assert_eq!(rt.block_on(other.import(&source, Duration::ZERO)).expect("push"), 1);
    let copy = rt.block_on(other.load_existing()).expect("load copy");
    assert_eq!((copy.lineage, &copy.records, &copy.tenant), (source.lineage, &source.records, &source.tenant));
    rt.block_on(s.import(&copy, Duration::ZERO)).expect("the same ledger, not behind");
    // A different ledger (another lineage) is refused, and nothing is written.
    let (_h2, stranger) = local();
    rt.block_on(stranger.create(Duration::ZERO, "tenant-a")).expect("create");
    let mut w = rt.block_on(stranger.lock(Duration::ZERO, "t", Some("tenant-a"))).expect("lock");
    rt.block_on(w.record(record("B", Status::Accepted))).expect("record");
    let strange = rt.block_on(w.commit()).expect("commit");
    let before = rt.block_on(s.load()).expect("load");
    let err = rt.block_on(s.import(&strange, Duration::ZERO)).expect_err("other lineage");
    assert!(matches!(err, StateError::ImportRefused { .. }), "{err}");
    assert_eq!(rt.block_on(s.load()).expect("load"), before);
    // A copy that is behind (this one recorded more since) is refused too.
    let mut w = rt.block_on(s.lock(Duration::ZERO, "t", Some("tenant-a"))).expect("lock");
    rt.block_on(w.record(record("C", Status::Accepted))).expect("record");
    rt.block_on(w.commit()).expect("commit");
    let err = rt.block_on(s.import(&copy, Duration::ZERO)).expect_err("behind");
    assert!(err.to_string().contains("the source lacks"), "{err}");
}

fn a_person_decides_about_one_action(s: &Store) {
    let rt = rt();
    rt.block_on(s.create(Duration::ZERO, "tenant-a")).expect("create");
    let mut w = rt.block_on(s.lock(Duration::ZERO, "t", Some("tenant-a"))).expect("lock");
    let r = record("A", Status::Unknown);
    rt.block_on(w.record(r.clone())).expect("record");
    rt.block_on(w.commit()).expect("commit");
    let decided = rt
        .block_on(s.decide_by_person(
            Duration::ZERO,
            r.key.as_str(),
            intune_reconcile::ledger::PersonDecision::ResolveNotExecuted,
            "ann@h",
            "phone was off",
            jiff::Timestamp::now(),
        ))
        .expect("resolve");
    assert_eq!(decided.status, Status::NotExecuted);
    assert_eq!(rt.block_on(s.load()).expect("load").records.get(&r.key), Some(&decided));
    // A refused decision releases the lock: the next writer is not kept waiting.
    assert!(
        rt.block_on(s.decide_by_person(
            Duration::ZERO,
            r.key.as_str(),
            intune_reconcile::ledger::PersonDecision::Retry,
            "ann@h",
            "x",
            jiff::Timestamp::now(),
        ))
        .is_err()
    );
    rt.block_on(s.lock(Duration::ZERO, "t", Some("tenant-a"))).expect("lock free").then_commit_sync(&rt);
}

trait CommitSync {
    fn then_commit_sync(self, rt: &tokio::runtime::Runtime);
}

impl CommitSync for intune_reconcile::ledger::Writer {
    fn then_commit_sync(self, rt: &tokio::runtime::Runtime) {
        rt.block_on(self.commit()).expect("commit");
    }
}

// Two writers cannot both extend a blob ledger: a writer whose lock was taken from it (here by a
// person's `state unlock`) is fenced by the journal entry the new holder wrote, and its snapshot
// compare-and-swap fails; nothing it had recorded is lost.
#[test]
fn a_writer_that_lost_its_blob_lock_is_fenced() {
    let (_h, s) = blob();
    let rt = rt();
    rt.block_on(s.create(Duration::ZERO, "tenant-a")).expect("create");
    let mut a = rt.block_on(s.lock(Duration::ZERO, "writer-a", Some("tenant-a"))).expect("lock");
    let first = record("A", Status::Unknown);
    rt.block_on(a.record(first.clone())).expect("record");
    let err = rt.block_on(s.lock(Duration::ZERO, "writer-b", Some("tenant-a"))).expect_err("held");
    let id = lock_id(&err.to_string());
    rt.block_on(s.unlock(&id)).expect("a person releases it");
    let mut b = rt.block_on(s.lock(Duration::ZERO, "writer-b", Some("tenant-a"))).expect("b locks");
    assert!(b.ledger().records.contains_key(&first.key), "b sees a's intent");
    let second = record("B", Status::Unknown);
    rt.block_on(b.record(second.clone())).expect("b records");
    let third = record("C", Status::Unknown);
    let err = rt.block_on(a.record(third.clone())).expect_err("a is fenced");
    assert!(matches!(err, StateError::LockLost { .. }), "{err}");
    assert!(rt.block_on(a.commit()).is_err(), "a writes no snapshot");
    let l = rt.block_on(b.commit()).expect("b commits");
    assert!(l.records.contains_key(&first.key) && l.records.contains_key(&second.key));
    assert!(!l.records.contains_key(&third.key), "a's fenced record was never written");
    assert_eq!(rt.block_on(s.load()).expect("load"), l);
}

/// A blob ledger reached through a fault-injecting proxy in front of Azurite, optionally
/// with a lock renewed every `lease.0` and a safe lease of `lease.1` (seconds, not 15 s and 40 s).
fn blob_via_proxy(lease: Option<(Duration, Duration)>) -> (Container, Proxy, Store) {
    let az = Azurite::shared().container();
    let proxy = Proxy::start(az.port());
    let url =
        BlobUrl::parse(&proxy.url(&az, "team/state.json"), intune_reconcile::settings::Cloud::Global).expect("url");
    let mut store =
        BlobStore::open(url, StorageAuth::Key(azurite::KEY.to_owned().into()), Duration::from_secs(5)).expect("open");
    if let Some((renew, safe)) = lease {
        store = store.with_lease_for_tests(renew, safe);
    }
    (az, proxy, Store::from(store))
}

fn is_entry(p: &str) -> bool {
    p.contains("/team/state.json.journal/")
}

fn is_lock(p: &str) -> bool {
    p.ends_with("/team/state.json.lock")
}

/// `r` with one more attempt (a new request for the same action).
fn another_attempt(r: &Record) -> Record {
    let mut r = r.clone();
    r.attempts.push(Attempt {
        started_at: jiff::Timestamp::now(),
        client_request_id: uuid::Uuid::new_v4(),
        ..Attempt::default()
    });
    r.status = Status::Unknown;
    r.updated_at = jiff::Timestamp::now();
    r
}

// A writer's journal entry is held in the network while the lock passes to another runner, which
// writes that serial itself and compacts. When the held create finally lands, the name must still
// be taken (by a tombstone): the late write fails and fences its writer, and the ledger stays
// readable, holding the new holder's version of the action.
#[test]
fn a_late_entry_write_cannot_fill_a_compacted_name() {
    let (_az, proxy, s) = blob_via_proxy(None);
    let rt = rt();
    rt.block_on(s.create(Duration::ZERO, "tenant-a")).expect("create");
    let mut a = rt.block_on(s.lock(Duration::ZERO, "writer-a", Some("tenant-a"))).expect("lock");
    let x = record("X", Status::Unknown);
    rt.block_on(a.record(x.clone())).expect("a's first intent");
    proxy.fault("PUT", is_entry, 1, 1, Fault::Hold);
    let a_second = another_attempt(&x);
    let late = std::thread::spawn(move || {
        let result = rt_block(a.record(a_second));
        (result, a)
    });
    proxy.wait_held(1);
    // The lock passes on (a person's unlock here; an expiry in the field) while a's write is held.
    let err = rt.block_on(s.lock(Duration::ZERO, "writer-b", Some("tenant-a"))).expect_err("held by a");
    rt.block_on(s.unlock(&lock_id(&err.to_string()))).expect("unlock");
    let mut b = rt.block_on(s.lock(Duration::ZERO, "writer-b", Some("tenant-a"))).expect("b locks");
    let b_version = another_attempt(&x);
    rt.block_on(b.record(b_version.clone())).expect("b records the same serial");
    rt.block_on(b.commit()).expect("b compacts");
    proxy.release();
    let (result, a) = late.join().expect("thread");
    // The held create has reached the store by now (answered or not).
    wait_until("the held write landed", || proxy.log().iter().any(|r| r.fault == Some(Fault::Hold)));
    let held = proxy.log().into_iter().find(|r| r.fault == Some(Fault::Hold)).expect("held");
    assert_eq!(held.status, Some(409), "the late create found its name taken: {held:?}");
    let l = rt.block_on(s.load()).expect("the ledger is readable after the late write");
    assert_eq!(l.records.get(&x.key), Some(&b_version), "the new holder's version stands");
    let err = result.expect_err("the late write is not a recorded intent");
    assert!(matches!(err, StateError::LockLost { .. }), "{err}");
    assert!(rt.block_on(a.commit()).is_err(), "a writes no snapshot");
    rt.block_on(s.lock(Duration::ZERO, "next", Some("tenant-a"))).expect("lock").then_commit_sync(&rt);
    assert_eq!(rt.block_on(s.load()).expect("load").records.get(&x.key), Some(&b_version));
}

// A ledger from before tombstones (or one whose tombstone expired): an entry older than the
// snapshot that disagrees with it is never refused. Its attempt is kept next to the snapshot's, the
// action becomes `unknown` (it may have been sent), and the next writer folds it in.
#[test]
fn an_old_entry_that_disagrees_with_the_snapshot_is_kept_as_unknown() {
    let (az, _proxy, s) = blob_via_proxy(None);
    let rt = rt();
    rt.block_on(s.create(Duration::ZERO, "tenant-a")).expect("create");
    let mut w = rt.block_on(s.lock(Duration::ZERO, "t", Some("tenant-a"))).expect("lock");
    let x = record("X", Status::NotExecuted);
    rt.block_on(w.record(x.clone())).expect("record");
    let l = rt.block_on(w.commit()).expect("commit");
    // A late write from a fenced runner lands on the last serial the snapshot folded.
    let serial = l.serial - 1;
    let name = format!("team/state.json.journal/{serial:020}");
    let late = another_attempt(&record("X", Status::Unknown));
    let entry = serde_json::json!({
        "version": 1,
        "lineage": l.lineage.expect("lineage"),
        "baseSerial": serial,
        "tenant": "tenant-a",
        "writer": "fenced-runner",
        "records": [late],
    });
    az.put(&name, entry.to_string().as_bytes());
    let seen = rt.block_on(s.load()).expect("readable: not refused for ever");
    let merged = seen.records.get(&x.key).expect("the action");
    assert_eq!(merged.status, Status::Unknown, "never assumed unsent");
    let ids: Vec<_> = merged.attempts.iter().map(|a| a.client_request_id).collect();
    for a in x.attempts.iter().chain(&late.attempts) {
        assert!(ids.contains(&a.client_request_id), "every attempt is kept");
    }
    // The next writer folds it into the snapshot; the entry is a tombstone after.
    let l2 = rt
        .block_on(rt.block_on(s.lock(Duration::ZERO, "t", Some("tenant-a"))).expect("lock").commit())
        .expect("commit");
    assert_eq!(l2.records.get(&x.key), Some(merged));
    assert_eq!(rt.block_on(s.load()).expect("load").records.get(&x.key), Some(merged));
    let tomb: serde_json::Value = serde_json::from_str(&az.get(&name).expect("tombstone")).expect("json");
    assert_eq!(tomb["records"], serde_json::json!([]), "{tomb}");
}

// The first renewal of the lock is written, but its answer is lost: object_store sends it again
// and meets its own success (412). That is not someone else taking the lock: the writer goes on.
#[test]
fn a_lost_renewal_answer_keeps_the_lock() {
    let (az, proxy, s) = blob_via_proxy(Some((Duration::from_millis(300), Duration::from_secs(5))));
    let rt = rt();
    rt.block_on(s.create(Duration::ZERO, "tenant-a")).expect("create");
    // The first lock PUT is the acquisition, the second the first renewal.
    proxy.fault("PUT", is_lock, 2, 1, Fault::LoseAnswer);
    let mut w = rt.block_on(s.lock(Duration::ZERO, "t", Some("tenant-a"))).expect("lock");
    wait_until("the lost renewal and two more", || {
        !proxy.faulted().is_empty() && proxy.log().iter().filter(|r| r.method == "PUT" && is_lock(&r.path)).count() >= 4
    });
    let a = record("A", Status::Unknown);
    rt.block_on(w.record(a.clone())).expect("still the holder");
    rt.block_on(w.commit()).expect("commit");
    let lock: serde_json::Value = serde_json::from_str(&az.get("team/state.json.lock").expect("lock")).expect("json");
    assert_eq!(lock["released"], true, "released at the end: {lock}");
    rt.block_on(s.lock(Duration::ZERO, "next", Some("tenant-a"))).expect("free at once").then_commit_sync(&rt);
    assert!(rt.block_on(s.load()).expect("load").records.contains_key(&a.key));
}

// The writer pauses past its safe lease while its renewals hang (held in the network, never
// answered — no 412 tells it anything): its next write is refused before anything is written.
#[test]
fn a_writer_whose_renewals_hang_stops_at_the_lease() {
    let (_az, proxy, s) = blob_via_proxy(Some((Duration::from_millis(200), Duration::from_secs(1))));
    let rt = rt();
    rt.block_on(s.create(Duration::ZERO, "tenant-a")).expect("create");
    let mut w = rt.block_on(s.lock(Duration::ZERO, "t", Some("tenant-a"))).expect("lock");
    let a = record("A", Status::Unknown);
    rt.block_on(w.record(a.clone())).expect("within the lease");
    proxy.fault("PUT", is_lock, 1, usize::MAX / 2, Fault::Hold);
    proxy.wait_held(1);
    // Time is the subject: the writer outlives its safe lease (1 s here) with no renewal answered.
    std::thread::sleep(Duration::from_millis(1500));
    let entry_puts = || proxy.log().iter().filter(|r| r.method == "PUT" && is_entry(&r.path)).count();
    let before = entry_puts();
    let b = record("B", Status::Unknown);
    let err = rt.block_on(w.record(b.clone())).expect_err("past the lease");
    assert!(matches!(err, StateError::LockLost { .. }), "{err}");
    assert!(err.to_string().contains("could not be renewed"), "{err}");
    assert_eq!(entry_puts(), before, "B's entry was never sent");
    let l = rt.block_on(s.load()).expect("load");
    assert!(l.records.contains_key(&a.key) && !l.records.contains_key(&b.key));
    proxy.release();
}

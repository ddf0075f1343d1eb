//! One ledger suite, run against both homes: a local file and a blob on Azurite. Every promise of
//! SPEC §4 (created on purpose, tenant binding, one writer, durable records, crash leftovers,
//! copies between homes) holds the same way for both.

use std::time::Duration;

use crate::common::azurite::{self, Azurite};
use intune_reconcile::action::{Action, ActionKey, ActionKind, Collection, Selector, SelectorKind};
use intune_reconcile::state::blob::{BlobStore, StorageAuth};
use intune_reconcile::state::{Attempt, BlobUrl, Ledger, LocalStore, Record, StateError, Status, Store};

/// A home for a ledger, and whatever keeps it alive (held only to be dropped at the end).
#[allow(dead_code)]
enum Home {
    Local(tempfile::TempDir),
    Blob(Azurite),
}

fn local() -> (Home, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::Local(LocalStore::new(dir.path().join("state.json")));
    (Home::Local(dir), store)
}

fn blob_at(az: &Azurite, path: &str) -> Store {
    let url = BlobUrl::parse(&az.url("ledgers", path), intune_reconcile::settings::Cloud::Global).expect("url");
    Store::Blob(
        BlobStore::open(url, StorageAuth::Key(azurite::KEY.to_owned().into()), Duration::from_secs(5)).expect("open"),
    )
}

fn blob() -> (Home, Store) {
    let az = Azurite::start();
    az.create_container("ledgers");
    let store = blob_at(&az, "team/state.json");
    (Home::Blob(az), store)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

fn record(serial: &str, status: Status) -> Record {
    let selector = Selector { kind: SelectorKind::SerialNumber, value: serial.into() };
    let action = Action {
        key: ActionKey::compute(ActionKind::PasscodeReset, "m", 1, Collection::ManagedDevices, &selector),
        former_names: Vec::new(),
        former_keys: Vec::new(),
        kind: ActionKind::PasscodeReset,
        manifest: "m".into(),
        file: "manifests/m.yaml".into(),
        pos: intune_reconcile::diagnostic::Pos::new(1, 1),
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
    std::thread::sleep(Duration::from_millis(300));
    rt.block_on(w.commit()).expect("commit");
    waiter.join().expect("thread").expect("the waiter got the lock");
}

trait ThenCommit {
    fn then_commit(self) -> impl std::future::Future<Output = Result<Ledger, StateError>>;
}

impl<F: std::future::Future<Output = Result<intune_reconcile::state::Writer, StateError>>> ThenCommit for F {
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
    if let Store::Blob(_) = s {
        // The dead holder's lock is still there until it expires or a person releases it.
        let err = rt.block_on(s.lock(Duration::ZERO, "t", Some("tenant-a"))).expect_err("still locked");
        let id = err
            .to_string()
            .split("lock ID ")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .expect("a lock ID")
            .to_owned();
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
            intune_reconcile::state::PersonDecision::ResolveNotExecuted,
            "ann@h",
            "phone was off",
        ))
        .expect("resolve");
    assert_eq!(decided.status, Status::NotExecuted);
    assert_eq!(rt.block_on(s.load()).expect("load").records.get(&r.key), Some(&decided));
    // A refused decision releases the lock: the next writer is not kept waiting.
    assert!(
        rt.block_on(s.decide_by_person(
            Duration::ZERO,
            r.key.as_str(),
            intune_reconcile::state::PersonDecision::Retry,
            "ann@h",
            "x"
        ))
        .is_err()
    );
    rt.block_on(s.lock(Duration::ZERO, "t", Some("tenant-a"))).expect("lock free").then_commit_sync(&rt);
}

trait CommitSync {
    fn then_commit_sync(self, rt: &tokio::runtime::Runtime);
}

impl CommitSync for intune_reconcile::state::Writer {
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
    let id = err.to_string().split("lock ID ").nth(1).and_then(|t| t.split_whitespace().next()).expect("id").to_owned();
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

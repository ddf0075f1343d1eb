//! The engine's decisions, on the memory home: one scenario per test.

use std::time::Duration;

use super::*;
use crate::ledger::Status;
use crate::ledger::memory::{MemoryStore, Op};
use crate::ledger::tests::record;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// A memory ledger created for `tenant-a`, and the store over it.
fn created() -> (MemoryStore, Store, tokio::runtime::Runtime) {
    let mem = MemoryStore::new();
    let store = Store::from(mem.clone());
    let rt = rt();
    assert!(rt.block_on(store.create(Duration::ZERO, "tenant-a")).expect("create"));
    (mem, store, rt)
}

fn lock(rt: &tokio::runtime::Runtime, store: &Store) -> Writer {
    rt.block_on(store.lock(Duration::ZERO, "test", Some("tenant-a"))).expect("lock")
}

#[test]
fn a_missing_ledger_is_refused_to_a_writer_and_created_only_on_purpose() {
    let mem = MemoryStore::new();
    let store = Store::from(mem.clone());
    let rt = rt();
    let err = rt.block_on(store.lock(Duration::ZERO, "t", Some("tenant-a"))).expect_err("missing");
    assert!(matches!(err, StateError::Missing { .. }), "{err}");
    assert!(matches!(rt.block_on(store.read_before_lock()), Err(StateError::Missing { .. })));
    assert!(!rt.block_on(store.exists()).expect("exists"), "a refusal writes nothing");
    // Without a tenant to bind, even `create` refuses, and releases the lock.
    assert!(matches!(rt.block_on(store.import(&Ledger::empty(), Duration::ZERO)), Err(StateError::NoTenant { .. })));
    assert!(rt.block_on(store.create(Duration::ZERO, "tenant-a")).expect("create"));
    let l = rt.block_on(store.load_existing()).expect("load");
    assert_eq!((l.tenant.as_deref(), l.serial, mem.snapshot_serial()), (Some("tenant-a"), 0, Some(0)));
    assert!(l.lineage.is_some());
    assert!(!rt.block_on(store.create(Duration::ZERO, "TENANT-A")).expect("again"), "same tenant: a no-op");
}

#[test]
fn a_ledger_of_another_tenant_is_refused_and_its_lock_released() {
    let (_mem, store, rt) = created();
    for attempt in
        [store.lock(Duration::ZERO, "t", Some("tenant-b")), store.lock(Duration::ZERO, "t", Some("tenant-b"))]
    {
        let err = rt.block_on(attempt).expect_err("another tenant");
        assert!(matches!(err, StateError::WrongTenant { .. }), "{err}");
    }
    assert!(matches!(rt.block_on(store.create(Duration::ZERO, "tenant-b")), Err(StateError::WrongTenant { .. })));
    // No tenant given: the ledger's own is kept.
    let w = rt.block_on(store.lock(Duration::ZERO, "t", None)).expect("lock");
    assert_eq!(w.ledger().tenant.as_deref(), Some("tenant-a"));
    assert!(!w.bound_tenant);
}

#[test]
fn a_second_writer_waits_for_the_first_and_is_told_who_holds_it() {
    let (_mem, store, rt) = created();
    let w = lock(&rt, &store);
    let err = rt.block_on(store.lock(Duration::ZERO, "second", Some("tenant-a"))).expect_err("held");
    let msg = err.to_string();
    assert!(msg.contains("is locked by pid") && msg.contains("`test`"), "{msg}");
    let waiter = {
        let store = store.clone();
        std::thread::spawn(move || rt_block(store.lock(Duration::from_secs(20), "waiter", Some("tenant-a"))))
    };
    rt.block_on(w.commit()).expect("commit");
    let w2 = waiter.join().expect("thread").expect("the waiter gets it once released");
    rt.block_on(w2.commit()).expect("commit");
}

fn rt_block<T>(f: impl std::future::Future<Output = T>) -> T {
    rt().block_on(f)
}

#[test]
fn records_count_once_each_and_survive_commit() {
    let (mem, store, rt) = created();
    let mut w = lock(&rt, &store);
    rt.block_on(w.record(record("m", "A", Status::Unknown))).expect("intent");
    rt.block_on(w.record_all(vec![record("m", "A", Status::Accepted), record("m", "B", Status::Unknown)]))
        .expect("outcome and intent");
    rt.block_on(w.record_all(Vec::new())).expect("nothing to record");
    assert_eq!(mem.entries(), 2, "one entry per append");
    let l = rt.block_on(w.commit()).expect("commit");
    assert_eq!((l.serial, l.records.len(), mem.entries()), (3, 2, 0));
    assert_eq!(rt.block_on(store.load()).expect("load"), l);
}

// The entry landed but its answer was lost: it is written again (the same entry on the same
// serial), found to be ours, and counted once; nothing is split or wedged.
#[test]
fn an_append_whose_answer_was_lost_is_written_again_and_counted_once() {
    let (mem, store, rt) = created();
    let mut w = lock(&rt, &store);
    let a = record("m", "A", Status::Unknown);
    mem.lose_next_answer(Op::Append);
    assert!(rt.block_on(w.record(a.clone())).is_err(), "unclear: reported, so its request is not sent");
    assert!(!w.ledger().records.contains_key(&a.key), "not taken in while in doubt");
    let b = record("m", "B", Status::Unknown);
    rt.block_on(w.record(b.clone())).expect("the pending entry first, then this one");
    assert_eq!(w.ledger().serial, 2, "each counted once");
    let l = rt.block_on(w.commit()).expect("commit");
    assert!(l.records.contains_key(&a.key) && l.records.contains_key(&b.key));
    assert_eq!(rt.block_on(store.load()).expect("load"), l);
}

// The entry never landed: it is written at the next chance (here the commit), not lost.
#[test]
fn an_append_that_failed_is_written_before_anything_else() {
    let (mem, store, rt) = created();
    let mut w = lock(&rt, &store);
    let a = record("m", "A", Status::Unknown);
    mem.fail_next(Op::Append);
    assert!(rt.block_on(w.record(a.clone())).is_err());
    assert_eq!(mem.entries(), 0);
    let l = rt.block_on(w.commit()).expect("the commit writes it first");
    assert_eq!((l.serial, l.records.get(&a.key)), (1, Some(&a)));
}

// The snapshot was replaced but the answer lost: the next compaction finds its own snapshot
// there and goes on from it instead of taking it for another writer's.
#[test]
fn a_snapshot_whose_answer_was_lost_is_recognised_as_ours() {
    let (mem, store, rt) = created();
    let mut w = lock(&rt, &store);
    rt.block_on(w.record(record("m", "A", Status::Unknown))).expect("record");
    mem.lose_next_answer(Op::Snapshot);
    let err = rt.block_on(w.replace(rt.block_on(store.load()).expect("load"))).expect_err("unclear");
    assert!(!matches!(err, StateError::LockLost { .. }), "{err}");
    rt.block_on(w.record(record("m", "B", Status::Unknown))).expect("not fenced");
    let l = rt.block_on(w.commit()).expect("commit from its own snapshot");
    assert_eq!((l.records.len(), mem.entries()), (2, 0));
    assert_eq!(rt.block_on(store.load()).expect("load"), l);
}

// A writer that finds another writer's entry on its serial was overtaken: it writes nothing
// more, not even its snapshot, and what the other wrote stands.
#[test]
fn a_writer_overtaken_by_another_is_fenced() {
    let (mem, store, rt) = created();
    let mut w = lock(&rt, &store);
    let theirs = record("m", "T", Status::Accepted);
    mem.intrude(vec![theirs.clone()]);
    let err = rt.block_on(w.record(record("m", "A", Status::Unknown))).expect_err("fenced");
    assert!(matches!(err, StateError::LockLost { .. }), "{err}");
    let err = rt.block_on(w.record(record("m", "B", Status::Unknown))).expect_err("still fenced");
    assert!(err.to_string().contains("an earlier write found the lock lost"), "{err}");
    assert!(rt.block_on(w.commit()).is_err(), "no snapshot");
    let l = rt.block_on(store.load()).expect("load");
    assert_eq!(l.records.keys().collect::<Vec<_>>(), [&theirs.key]);
}

// The lock was released by a person (`state unlock`) and taken by another run: the first writer
// stops before writing anything, and releasing it does not free the new holder's lock.
#[test]
fn a_writer_whose_lock_was_taken_stops_and_leaves_the_new_lock() {
    let (_mem, store, rt) = created();
    let mut a = lock(&rt, &store);
    let err = rt.block_on(store.lock(Duration::ZERO, "b", Some("tenant-a"))).expect_err("held");
    let id = err.to_string().rsplit("state unlock ").next().expect("an id").trim().to_owned();
    assert_eq!(rt.block_on(store.unlock(&id)).expect("unlock").command, "test");
    assert!(matches!(rt.block_on(store.unlock(&id)), Err(StateError::NotLocked { .. })));
    let mut b = rt.block_on(store.lock(Duration::ZERO, "b", Some("tenant-a"))).expect("b");
    let err = rt.block_on(a.record(record("m", "A", Status::Unknown))).expect_err("a stops");
    assert!(matches!(err, StateError::LockLost { .. }), "{err}");
    assert!(rt.block_on(a.commit()).is_err());
    rt.block_on(b.record(record("m", "B", Status::Unknown))).expect("b still holds it");
    rt.block_on(b.commit()).expect("commit");
}

// A writer that died without committing leaves entries; the next lock folds them into a
// snapshot at once and loses nothing.
#[test]
fn crash_leftovers_are_folded_by_the_next_writer() {
    let (mem, store, rt) = created();
    let mut w = lock(&rt, &store);
    let a = record("m", "A", Status::Unknown);
    rt.block_on(w.record(a.clone())).expect("record");
    drop(w);
    assert_eq!(mem.entries(), 1);
    assert_eq!(rt.block_on(store.load()).expect("readers replay it").records.get(&a.key), Some(&a));
    let w = lock(&rt, &store);
    assert_eq!((mem.entries(), mem.snapshot_serial()), (0, Some(1)), "folded at the lock");
    assert_eq!(w.ledger().records.get(&a.key), Some(&a));
    let before = mem.reads();
    rt.block_on(w.commit()).expect("commit");
    assert_eq!(mem.reads(), before, "nothing changed: nothing written or read");
}

// The read before the lock is the run's only read when nothing changed in between; when
// something did, the lock reads again.
#[test]
fn the_read_before_the_lock_is_reused_only_when_nothing_changed() {
    let (mem, store, rt) = created();
    rt.block_on(store.read_before_lock()).expect("read");
    let reads = mem.reads();
    let w = lock(&rt, &store);
    assert_eq!(mem.reads(), reads, "reused");
    rt.block_on(w.commit()).expect("commit");
    rt.block_on(store.read_before_lock()).expect("read");
    let theirs = record("m", "T", Status::Accepted);
    let mut other = lock(&rt, &Store::from(mem.clone()));
    rt.block_on(other.record(theirs.clone())).expect("another run records");
    rt.block_on(other.commit()).expect("commit");
    let reads = mem.reads();
    let w = lock(&rt, &store);
    assert_eq!(mem.reads(), reads + 1, "read again under the lock");
    assert_eq!(w.ledger().records.get(&theirs.key), Some(&theirs));
    rt.block_on(w.commit()).expect("commit");
    // Taken once: a second lock reads for itself.
    let reads = mem.reads();
    rt.block_on(lock(&rt, &store).commit()).expect("commit");
    assert_eq!(mem.reads(), reads + 1);
}

#[test]
fn a_copy_goes_only_over_a_ledger_it_extends() {
    let (_mem, store, rt) = created();
    let mut w = lock(&rt, &store);
    rt.block_on(w.record(record("m", "A", Status::Accepted))).expect("record");
    let source = rt.block_on(w.commit()).expect("commit");
    let dest = Store::from(MemoryStore::new());
    assert_eq!(rt.block_on(dest.import(&source, Duration::ZERO)).expect("into a new home"), 1);
    let copy = rt.block_on(dest.load_existing()).expect("copy");
    assert_eq!((copy.lineage, &copy.records, copy.serial), (source.lineage, &source.records, source.serial + 1));
    assert_eq!(rt.block_on(store.import(&copy, Duration::ZERO)).expect("the same ledger, not behind"), 1);
    let mut w = lock(&rt, &store);
    rt.block_on(w.record(record("m", "B", Status::Accepted))).expect("record");
    rt.block_on(w.commit()).expect("commit");
    let err = rt.block_on(store.import(&copy, Duration::ZERO)).expect_err("behind");
    assert!(err.to_string().contains("the source lacks"), "{err}");
    let stranger = Ledger { lineage: Some(uuid::Uuid::new_v4()), ..copy.clone() };
    let err = rt.block_on(store.import(&stranger, Duration::ZERO)).expect_err("another lineage");
    assert!(err.to_string().contains("it is another ledger"), "{err}");
}

#[test]
fn may_replace_takes_an_empty_ledger_or_one_the_source_extends() {
    let empty = Ledger { lineage: Some(uuid::Uuid::new_v4()), serial: 1, ..Ledger::empty() };
    let mut source = Ledger { lineage: Some(uuid::Uuid::new_v4()), serial: 5, ..Ledger::empty() };
    assert!(may_replace(&empty, &source).is_ok(), "empty, serial 1 (a fresh init)");
    let a = record("m", "A", Status::Unknown);
    let mut dest = Ledger { lineage: source.lineage, serial: 2, ..Ledger::empty() };
    dest.records.insert(a.key.clone(), a.clone());
    assert!(may_replace(&dest, &source).expect_err("lacks A").contains("the source lacks"));
    source.records.insert(a.key.clone(), a.clone());
    assert!(may_replace(&dest, &source).is_ok(), "the same record");
    let mut newer = a.clone();
    newer.attempts.push(crate::ledger::Attempt { client_request_id: uuid::Uuid::new_v4(), ..Default::default() });
    source.records.insert(a.key.clone(), newer.clone());
    assert!(may_replace(&dest, &source).is_ok(), "a newer record");
    dest.records.insert(a.key.clone(), newer);
    source.records.insert(a.key.clone(), a);
    assert!(may_replace(&dest, &source).expect_err("older").contains("newer than the source's"));
    let empty_but_written = Ledger { serial: 2, ..empty };
    assert!(may_replace(&empty_but_written, &source).expect_err("lineage").contains("another ledger"));
}

#[test]
fn a_person_archives_each_record_once_in_one_write() {
    let (_mem, store, rt) = created();
    let mut w = lock(&rt, &store);
    let (a, b) = (record("m", "A", Status::Done), record("m", "B", Status::Done));
    rt.block_on(w.record_all(vec![a.clone(), b.clone()])).expect("record");
    let (lineage, serial) = w.ledger_before();
    assert_eq!((lineage, serial), (w.ledger().lineage, 2));
    assert!(lineage.is_some());
    rt.block_on(w.commit()).expect("commit");
    let keys = [a.key.as_str().to_owned(), a.key.as_str()[..8].to_owned()];
    let out =
        rt.block_on(store.archive(Duration::ZERO, &keys, "ann@h", "old", jiff::Timestamp::now())).expect("archive");
    assert_eq!(out.iter().map(|(r, changed)| (&r.key, *changed)).collect::<Vec<_>>(), [(&a.key, true)], "once");
    let again = rt
        .block_on(store.archive(Duration::ZERO, &keys[..1], "bob@h", "again", jiff::Timestamp::now()))
        .expect("archive");
    assert_eq!(again.iter().map(|(_, changed)| *changed).collect::<Vec<_>>(), [false]);
    let l = rt.block_on(store.load()).expect("load");
    assert_eq!(l.records[&a.key].archived.as_ref().map(|x| x.by.as_str()), Some("ann@h"));
    assert!(l.records[&b.key].archived.is_none());
}

#[test]
fn one_ledger_is_one_ledger_however_it_is_reached() {
    let mem = MemoryStore::new();
    let store = Store::from(mem.clone());
    assert!(store.same_ledger(&Store::from(mem)) && store.same_ledger(&store.clone()));
    assert!(!store.same_ledger(&Store::from(MemoryStore::new())));
    assert_eq!(store.real_path(), None);
    let dir = tempfile::tempdir().expect("tmp");
    let local = Store::from(crate::ledger::LocalStore::new(dir.path().join("state.json")));
    let real = std::fs::canonicalize(dir.path()).expect("canonical").join("state.json");
    assert_eq!(local.real_path(), Some(real.as_path()));
    assert!(!local.same_ledger(&store));
    let mut l = Ledger::empty();
    l.tenant = Some("tenant-a".into());
    assert!(matches!(store.check_tenant(&l, Some("tenant-b")), Err(StateError::WrongTenant { .. })));
    assert!(store.check_tenant(&l, Some("TENANT-A")).is_ok() && store.check_tenant(&l, None).is_ok());
}

// A storage key or SAS token that is set but blank is not a credential: the Entra one is used.
#[test]
fn a_blank_storage_credential_falls_back_to_entra() {
    let url = crate::ledger::BlobUrl::parse("http://127.0.0.1:10000/devstoreaccount1/ledgers/state.json", {
        crate::cloud::Cloud::Global
    })
    .expect("url");
    let at = Location::Blob(Box::new(url));
    let entra = || anyhow::bail!("entra asked");
    let env = |blank: &'static str| move |k: &str| (k == crate::env::AZURE_STORAGE_KEY).then(|| blank.to_owned());
    let err = Store::open(&at, &env(" "), Duration::from_secs(1), entra).expect_err("blank key");
    assert!(err.to_string().contains("entra asked"), "{err}");
    assert!(Store::open(&at, &env("a2V5"), Duration::from_secs(1), entra).is_ok(), "a key: no Entra");
}

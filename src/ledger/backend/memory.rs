//! A ledger in this process's memory: a real home with the blob's shape (a snapshot with a
//! version, one entry per append named by the serial it extends, a lock entry created if absent),
//! for tests of the engine. Faults are injected per write: an error before the write lands, or
//! an answer lost after it landed; and another writer can be made to write without the lock.
//!
//! Its lock is released when the session holding it is dropped (as a local ledger's is when its
//! process dies), and can also be released by id (as a blob's, `state unlock`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::{Backend, Compaction, NotWritten, Read, Session};
use crate::ledger::location::Location;
use crate::ledger::lock::{LockError, LockInfo};
use crate::ledger::merge::merge_late;
use crate::ledger::{Ledger, Record, StateError};

/// A write a fault can be armed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Creating a journal entry.
    Append,
    /// Replacing the snapshot.
    Snapshot,
}

/// What goes wrong with the next write of an [`Op`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Refused before it lands: the writer is answered with an error.
    Fail,
    /// It lands, and the answer is lost: the writer is answered with an error.
    LoseAnswer,
}

/// One journal entry.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    lineage: Uuid,
    tenant: Option<String>,
    writer: String,
    records: Vec<Record>,
}

#[derive(Debug, Default)]
struct State {
    /// The snapshot and its version.
    snapshot: Option<(Ledger, u64)>,
    /// Entries by the serial each extends.
    entries: BTreeMap<u64, Entry>,
    /// The lock's holder, by id.
    lock: Option<LockInfo>,
    /// Changes on every write: what a read before the lock is compared with.
    generation: u64,
    /// Full reads so far.
    reads: usize,
    faults: Vec<(Op, Fault)>,
}

impl State {
    fn fault(&mut self, op: Op) -> Option<Fault> {
        let i = self.faults.iter().position(|(o, _)| *o == op)?;
        Some(self.faults.remove(i).1)
    }
}

/// A ledger in memory (see the module docs). Clones share the ledger.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    name: String,
    state: Arc<Mutex<State>>,
    released: Arc<tokio::sync::Notify>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A new, empty home with a name of its own.
    pub fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!("ledger-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        MemoryStore { name, state: Arc::default(), released: Arc::default() }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next write of `op` is refused before it lands (its writer sees an error).
    pub fn fail_next(&self, op: Op) {
        self.state().faults.push((op, Fault::Fail));
    }

    /// The next write of `op` lands, and its answer is lost (its writer sees an error).
    pub fn lose_next_answer(&self, op: Op) {
        self.state().faults.push((op, Fault::LoseAnswer));
    }

    /// Another writer, without the lock, records `records` on top of the ledger as it is.
    pub fn intrude(&self, records: Vec<Record>) {
        let mut st = self.state();
        let (lineage, serial) = head(&st);
        let entry = Entry { lineage, tenant: None, writer: "intruder".into(), records };
        st.entries.insert(serial, entry);
        st.generation += 1;
    }

    /// How many journal entries are stored (not yet folded into the snapshot).
    pub fn entries(&self) -> usize {
        self.state().entries.len()
    }

    /// How many times the whole ledger was read.
    pub fn reads(&self) -> usize {
        self.state().reads
    }

    /// The snapshot's serial, if there is a snapshot.
    pub fn snapshot_serial(&self) -> Option<u64> {
        self.state().snapshot.as_ref().map(|(l, _)| l.serial)
    }

    fn corrupt(&self, reason: String) -> StateError {
        StateError::Corrupt { path: self.location(), reason }
    }

    fn injected(&self, op: &'static str) -> StateError {
        StateError::Store { path: self.location(), op, why: "injected fault".into() }
    }

    /// Snapshot plus the chain of entries on top of it; older entries are merged as a blob's are.
    fn read_state(&self, st: &mut State) -> Result<(Ledger, u64), StateError> {
        st.reads += 1;
        let mut ledger = st.snapshot.as_ref().map_or_else(Ledger::empty, |(l, _)| l.clone());
        let base = ledger.serial;
        for (&n, e) in st.entries.range(..base) {
            merge_late(&mut ledger, e.records.clone(), n, &format!("{}/{n}", self.location()));
        }
        for (&n, e) in st.entries.range(base..) {
            if n != ledger.serial {
                return Err(self.corrupt(format!("entry {n} does not follow serial {}", ledger.serial)));
            }
            ledger.lineage.get_or_insert(e.lineage);
            if ledger.tenant.is_none() {
                ledger.tenant.clone_from(&e.tenant);
            }
            ledger.serial += e.records.len() as u64;
            for r in &e.records {
                ledger.records.insert(r.key.clone(), r.clone());
            }
        }
        Ok((ledger, st.generation))
    }

    /// Takes the lock for `me` if it is free.
    fn try_lock(&self, me: &LockInfo) -> Result<(), Option<Box<LockInfo>>> {
        let mut st = self.state();
        match &st.lock {
            Some(holder) => Err(Some(Box::new(holder.clone()))),
            None => {
                st.lock = Some(me.clone());
                Ok(())
            }
        }
    }

    /// Releases the lock if `id` holds it.
    fn release(&self, id: &str) -> Option<LockInfo> {
        let mut st = self.state();
        let holder = st.lock.take_if(|h| h.id.as_deref() == Some(id))?;
        drop(st);
        self.released.notify_waiters();
        Some(holder)
    }
}

/// The lineage and serial a new entry extends.
fn head(st: &State) -> (Uuid, u64) {
    let (lineage, mut serial) =
        st.snapshot.as_ref().map_or((Uuid::nil(), 0), |(l, _)| (l.lineage.unwrap_or_default(), l.serial));
    for (&n, e) in st.entries.range(serial..) {
        if n == serial {
            serial += e.records.len() as u64;
        }
    }
    (lineage, serial)
}

#[async_trait::async_trait]
impl Backend for MemoryStore {
    fn location(&self) -> Location {
        Location::Memory(self.name.clone())
    }

    async fn exists(&self) -> Result<bool, StateError> {
        let st = self.state();
        Ok(st.snapshot.is_some() || !st.entries.is_empty())
    }

    async fn read(&self) -> Result<Read, StateError> {
        let (ledger, generation) = self.read_state(&mut self.state())?;
        Ok(Read::new(ledger, generation))
    }

    async fn lock(&self, timeout: Duration, mut me: LockInfo) -> Result<Box<dyn Session>, StateError> {
        let id = Uuid::new_v4().to_string();
        me.id = Some(id.clone());
        let deadline = Instant::now() + timeout;
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let holder = match self.try_lock(&me) {
                Ok(()) => return Ok(Box::new(MemorySession::new(self.clone(), id))),
                Err(holder) => holder,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(LockError::Held { ledger: self.location(), holder }.into());
            }
            let _ = tokio::time::timeout(left, released).await;
        }
    }

    async fn unlock(&self, id: &str) -> Result<LockInfo, StateError> {
        self.release(id).ok_or_else(|| StateError::NotLocked { path: self.location(), id: id.to_owned() })
    }
}

/// The lock on a memory ledger, and what its writer needs for compare-and-swap.
#[derive(Debug)]
struct MemorySession {
    store: MemoryStore,
    id: String,
    /// The snapshot's version when read or last written (`None`: no snapshot).
    version: Option<u64>,
    /// Entries the next snapshot folds in.
    folded: Vec<u64>,
    /// A snapshot whose write may or may not have landed.
    unclear: Option<Ledger>,
}

impl MemorySession {
    fn new(store: MemoryStore, id: String) -> Self {
        MemorySession { store, id, version: None, folded: Vec::new(), unclear: None }
    }

    /// An earlier snapshot write that may have landed: if it did, go on from its version.
    fn settle_unclear(unclear: &mut Option<Ledger>, version: &mut Option<u64>, st: &State) {
        if let Some(earlier) = unclear.take()
            && let Some((l, v)) = &st.snapshot
            && *l == earlier
        {
            *version = Some(*v);
        }
    }
}

#[async_trait::async_trait]
impl Session for MemorySession {
    async fn read(&mut self, prior: Option<Read>) -> Result<Ledger, StateError> {
        let mut st = self.store.state();
        let ledger = match prior {
            Some(Read { ledger, version }) if version.downcast_ref::<u64>() == Some(&st.generation) => ledger,
            _ => self.store.read_state(&mut st)?.0,
        };
        self.version = st.snapshot.as_ref().map(|(_, v)| *v);
        self.folded = st.entries.keys().copied().collect();
        Ok(ledger)
    }

    fn needs_fold(&self) -> bool {
        self.version.is_none() || !self.folded.is_empty()
    }

    fn check(&self) -> Result<(), StateError> {
        let st = self.store.state();
        match &st.lock {
            Some(h) if h.id.as_deref() == Some(self.id.as_str()) => Ok(()),
            _ => Err(StateError::LockLost { path: self.store.location(), why: "another run took the lock".into() }),
        }
    }

    async fn append(&mut self, base: &Ledger, records: &[Record]) -> Result<(), NotWritten> {
        let mut st = self.store.state();
        let entry = Entry {
            lineage: base.lineage.expect("a locked ledger has a lineage"),
            tenant: base.tenant.clone(),
            writer: self.id.clone(),
            records: records.to_vec(),
        };
        let fault = st.fault(Op::Append);
        if fault == Some(Fault::Fail) {
            return Err(NotWritten::Unclear(self.store.injected("write")));
        }
        match st.entries.get(&base.serial) {
            // Ours: an earlier write of this entry whose answer was lost.
            Some(e) if *e == entry => {}
            Some(_) => return Err(NotWritten::Theirs),
            None => {
                st.entries.insert(base.serial, entry);
                st.generation += 1;
            }
        }
        if fault == Some(Fault::LoseAnswer) {
            return Err(NotWritten::Unclear(self.store.injected("write")));
        }
        self.folded.push(base.serial);
        Ok(())
    }

    fn after_append(&self, _: &Ledger) -> Compaction {
        Compaction::Later
    }

    fn dirty(&self) -> bool {
        !self.folded.is_empty() || self.unclear.is_some()
    }

    async fn replace_snapshot(&mut self, ledger: &Ledger) -> Result<(), NotWritten> {
        let mut st = self.store.state();
        Self::settle_unclear(&mut self.unclear, &mut self.version, &st);
        if st.snapshot.as_ref().map(|(_, v)| *v) != self.version {
            return Err(NotWritten::Theirs);
        }
        let fault = st.fault(Op::Snapshot);
        if fault == Some(Fault::Fail) {
            return Err(NotWritten::Unclear(self.store.injected("write")));
        }
        st.generation += 1;
        let version = st.generation;
        st.snapshot = Some((ledger.clone(), version));
        if fault == Some(Fault::LoseAnswer) {
            self.unclear = Some(ledger.clone());
            return Err(NotWritten::Unclear(self.store.injected("write")));
        }
        self.version = Some(version);
        // The entries it holds are dropped only once the snapshot is known written.
        for n in std::mem::take(&mut self.folded) {
            st.entries.remove(&n);
        }
        Ok(())
    }

    async fn release(&mut self) {
        self.store.release(&self.id);
    }
}

impl Drop for MemorySession {
    fn drop(&mut self) {
        self.store.release(&self.id);
    }
}

//! What a home for a ledger offers the engine ([`super::engine`]): storage primitives only, no
//! algorithm. Each home keeps its own format (a file plus a journal file; a blob plus one object
//! per journal entry; memory), and the engine decides when to take the lock, what to refuse,
//! when to compact and what a lost answer means.
//!
//! # The primitives
//! - [`Backend::read`]: the snapshot plus the journal on top of it, without the lock, with the
//!   version it was read at (kept opaque in a [`Read`]).
//! - [`Backend::lock`]: the lock primitive, which differs by home (see below), giving a
//!   [`Session`] that holds it.
//! - [`Session::read`]: the same read under the lock, or the proof that a [`Read`] made before
//!   the lock is still current (so a run reads its ledger once).
//! - [`Session::append`]: create the journal entry that extends the ledger at its serial, if
//!   absent. Finding it present with this writer's content is success (an answer was lost);
//!   with anything else, another writer extended the ledger.
//! - [`Session::replace_snapshot`]: replace the snapshot if unchanged since this session read
//!   or wrote it (compare-and-swap), then drop the journal entries it holds.
//!
//! # Why the lock is a primitive of its own
//! A local ledger's lock is an advisory `flock` that the operating system releases when its
//! holder dies, however it dies; a lock entry created if absent would outlive a crash and need
//! a person to remove it. A blob has no process to die with: its lock is an object created if
//! absent, renewed by compare-and-swap, and taken over after it went unrenewed for a minute of the
//! store's own clock (which only that home can read). The two share the holder's description
//! ([`super::LockInfo`]) and the engine's flow around them.

pub mod blob;
mod flock;
pub mod local;
#[doc(hidden)]
pub mod memory;

use std::any::Any;
use std::time::Duration;

use super::location::Location;
use super::{Ledger, LockInfo, Record, StateError};

/// A ledger as read, and the home's note of the version it was read at (opaque to the engine).
#[derive(Debug)]
pub struct Read {
    pub(crate) ledger: Ledger,
    pub(crate) version: Box<dyn Any + Send + Sync>,
}

impl Read {
    pub(crate) fn new(ledger: Ledger, version: impl Any + Send + Sync) -> Self {
        Read { ledger, version: Box::new(version) }
    }
}

/// A conditional write that does not stand.
#[derive(Debug)]
pub(crate) enum NotWritten {
    /// Someone else's content is there (or the object was removed): this writer is fenced.
    Theirs,
    /// Whether it was written is unknown: the same write is made again before the next.
    Unclear(StateError),
    /// Certainly not written, and nothing more can be (a failed fsync): the error stands.
    Failed(StateError),
}

/// When the engine folds the journal into a new snapshot after an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compaction {
    /// Not now: at the end of the run.
    Later,
    /// Now, but the append is durable anyway: a failure leaves the change in the journal.
    BestEffort,
    /// Now, and a failure is the append's failure.
    Required,
}

/// A home for a ledger.
#[async_trait::async_trait]
pub(crate) trait Backend: std::fmt::Debug + Send + Sync {
    /// Where it is, for messages.
    fn location(&self) -> Location;
    /// Whether `other` is this same ledger (however each was named).
    fn same_as(&self, other: &dyn Backend) -> bool {
        self.location() == other.location()
    }
    /// The file the ledger really is (a local ledger, symlinks followed).
    fn real_path(&self) -> Option<&std::path::Path> {
        None
    }
    /// The command a copy into this home (`Store::import`) is named by in its lock.
    fn import_command(&self) -> &'static str {
        "reconcile state push"
    }
    /// Whether a ledger (snapshot or journal) is there.
    async fn exists(&self) -> Result<bool, StateError>;
    /// The snapshot plus its journal, without the lock; a missing ledger is empty.
    async fn read(&self) -> Result<Read, StateError>;
    /// Takes the lock for `me`, waiting up to `timeout` for a live holder.
    async fn lock(&self, timeout: Duration, me: LockInfo) -> Result<Box<dyn Session>, StateError>;
    /// Releases a lock by its id (a person's decision), returning who held it.
    async fn unlock(&self, id: &str) -> Result<LockInfo, StateError>;
}

/// A held lock on one ledger, and what its writer needs to write conditionally.
#[async_trait::async_trait]
pub(crate) trait Session: std::fmt::Debug + Send + Sync {
    /// The ledger under the lock: `prior`'s when the home proves nothing changed since it was
    /// read, or read again.
    async fn read(&mut self, prior: Option<Read>) -> Result<Ledger, StateError>;
    /// Whether that read found leftovers (a journal, a missing snapshot) to fold in at once.
    fn needs_fold(&self) -> bool;
    /// Whether the lock is still certainly this session's (a blob's lease can run out).
    fn check(&self) -> Result<(), StateError>;
    /// Creates the journal entry extending `base` (at its serial) with `records`, if absent.
    async fn append(&mut self, base: &Ledger, records: &[Record]) -> Result<(), NotWritten>;
    /// When to compact after an append that made `ledger`.
    fn after_append(&self, ledger: &Ledger) -> Compaction;
    /// Whether anything was appended since the last snapshot (or a snapshot write is in doubt).
    fn dirty(&self) -> bool;
    /// Replaces the snapshot with `ledger` if unchanged since this session last read or wrote
    /// it, then drops the journal entries it holds.
    async fn replace_snapshot(&mut self, ledger: &Ledger) -> Result<(), NotWritten>;
    /// Releases the lock, if it is still this session's.
    async fn release(&mut self);
}

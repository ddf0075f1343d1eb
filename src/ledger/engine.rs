//! The ledger engine: one algorithm (lock, bind the tenant, create on purpose, append durably,
//! compact, import, unlock) over every home, written once against the primitives of
//! [`super::backend`] — a local file, a blob, or memory (for tests).
//!
//! # Expected flow
//! [`Store::lock`] → [`Writer::record_all`] before each request (its intent) and after (its
//! outcome) → [`Writer::commit`] at the end, which folds the journal into a new snapshot and
//! releases the lock. [`Store::read_before_lock`] lets a command check the ledger before it
//! contacts anyone, and the lock that follows reuses that read when the home proves it current.
//!
//! # Guarantees
//! - A ledger is created only on purpose ([`Store::create`], `reconcile init`): a missing ledger
//!   is never taken for an empty one by a writer ([`StateError::Missing`]).
//! - A ledger bound to another tenant is refused before anything is written; one without a tenant
//!   is bound by the first lock that knows one, and refused by one that does not.
//! - A record returned from [`Writer::record_all`] is durable: its journal entry exists, and the
//!   lock was still held after it was written.
//! - A write whose answer was unclear is made again, the same entry on the same serial, before
//!   anything else: it lands once, and nothing is recorded on top of a write in doubt.
//! - A writer that found another writer's entry or snapshot (it lost the lock) writes nothing
//!   more, not even its snapshot ([`StateError::LockLost`]).
//! - A copy (`state push` / `state pull`) goes only to a new home or over a ledger it extends.
//!
//! # Errors
//! Everything is a [`StateError`]; a refusal under the lock releases the lock first.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::backend::{Backend, Compaction, NotWritten, Read, Session};
use super::location::{BlobUrl, Location};
use super::merge::{Newer, check_tenant, newer};
use super::{Ledger, LockInfo, PersonDecision, Record, StateError};

/// A ledger, wherever it lives: the engine over one home.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    /// A read made before the lock ([`Store::read_before_lock`]), for the next lock to reuse.
    prior: Arc<Mutex<Option<Read>>>,
}

impl<B: Backend + 'static> From<B> for Store {
    fn from(backend: B) -> Self {
        Store { backend: Arc::new(backend), prior: Arc::default() }
    }
}

impl Store {
    /// The store for `location`. A blob is authorised by `AZURE_STORAGE_KEY`,
    /// `AZURE_STORAGE_SAS_TOKEN`, or else `entra()` (the Graph credential, storage scope).
    pub(crate) fn open(
        location: &Location,
        env: &dyn Fn(&str) -> Option<String>,
        timeout: Duration,
        entra: impl FnOnce() -> anyhow::Result<super::blob::StorageAuth>,
    ) -> anyhow::Result<Store> {
        use super::blob::{BlobStore, StorageAuth};
        match location {
            Location::Local(p) => Ok(Store::from(super::LocalStore::open(p)?)),
            Location::Blob(url) => {
                let nonempty = |k: &str| env(k).filter(|v| !v.trim().is_empty());
                let auth = if let Some(key) = nonempty(crate::env::AZURE_STORAGE_KEY) {
                    StorageAuth::Key(key.trim().to_owned().into())
                } else if let Some(sas) = nonempty(crate::env::AZURE_STORAGE_SAS_TOKEN) {
                    StorageAuth::Sas(sas.trim().to_owned().into())
                } else {
                    entra()?
                };
                Ok(Store::from(BlobStore::open(BlobUrl::clone(url), auth, timeout)?))
            }
            Location::Memory(name) => anyhow::bail!("`memory:{name}` is a ledger for tests only"),
        }
    }

    pub fn location(&self) -> Location {
        self.backend.location()
    }

    /// The file a local ledger really is (symlinks followed); `None` for another home.
    pub(crate) fn real_path(&self) -> Option<&std::path::Path> {
        self.backend.real_path()
    }

    /// Whether `self` and `other` are one ledger: the same real file (however each was named), or
    /// the same blob.
    pub(crate) fn same_ledger(&self, other: &Store) -> bool {
        self.backend.same_as(other.backend.as_ref())
    }

    pub async fn exists(&self) -> Result<bool, StateError> {
        self.backend.exists().await
    }

    /// Reads the ledger without locking (a missing ledger is empty: use [`exists`](Self::exists)
    /// or [`load_existing`](Self::load_existing) where that must not read as "nothing was sent").
    pub async fn load(&self) -> Result<Ledger, StateError> {
        Ok(self.backend.read().await?.ledger)
    }

    /// Reads the ledger, refusing a missing one.
    pub async fn load_existing(&self) -> Result<Ledger, StateError> {
        self.refuse_missing().await?;
        self.load().await
    }

    /// Checks, before the lock, that the ledger is there and readable, as
    /// [`load_existing`](Self::load_existing) does, and keeps what was read for the next
    /// [`lock`](Self::lock): a run reads its ledger once when nothing changed in between.
    pub async fn read_before_lock(&self) -> Result<(), StateError> {
        self.refuse_missing().await?;
        let read = self.backend.read().await?;
        *self.prior.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(read);
        Ok(())
    }

    async fn refuse_missing(&self) -> Result<(), StateError> {
        if self.exists().await? { Ok(()) } else { Err(StateError::Missing { path: self.location() }) }
    }

    /// Takes the lock (waiting up to `timeout`) and reads the ledger under it. A missing ledger
    /// is refused: only [`create`](Self::create) makes one.
    pub async fn lock(&self, timeout: Duration, command: &str, tenant: Option<&str>) -> Result<Writer, StateError> {
        self.refuse_missing().await?;
        self.lock_inner(timeout, command, tenant).await
    }

    /// Creates the ledger bound to `tenant` (`reconcile init`). An existing ledger of the same
    /// tenant is left as it is (`Ok(false)`); one of another tenant is refused.
    pub async fn create(&self, timeout: Duration, tenant: &str) -> Result<bool, StateError> {
        let w = self.lock_inner(timeout, "reconcile init", Some(tenant)).await?;
        let created = w.bound_tenant;
        w.commit().await?;
        Ok(created)
    }

    /// Releases a lock by its id (`reconcile state unlock ID`), returning who held it.
    pub async fn unlock(&self, id: &str) -> Result<LockInfo, StateError> {
        self.backend.unlock(id).await
    }

    /// Refuses a ledger bound to another tenant.
    pub(crate) fn check_tenant(&self, ledger: &Ledger, tenant: Option<&str>) -> Result<(), StateError> {
        check_tenant(&self.location(), ledger, tenant)
    }

    /// The lock, the read under it, the tenant binding, and the fold of leftovers: a missing
    /// ledger is created here (bound to `tenant`, or refused without one).
    async fn lock_inner(&self, timeout: Duration, command: &str, tenant: Option<&str>) -> Result<Writer, StateError> {
        let session = self.backend.lock(timeout, super::lock::me(command)).await?;
        let mut w = Writer {
            location: self.location(),
            session,
            ledger: Ledger::empty(),
            pending: None,
            fenced: false,
            bound_tenant: false,
        };
        let prior = self.prior.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        let bound = match w.session.read(prior).await {
            Ok(ledger) => bind(&w.location, ledger, tenant),
            Err(e) => Err(e),
        };
        match bound {
            Ok((ledger, bound_tenant)) => (w.ledger, w.bound_tenant) = (ledger, bound_tenant),
            Err(e) => return Err(w.fail(e).await),
        }
        if (w.bound_tenant || w.session.needs_fold())
            && let Err(e) = w.compact().await
        {
            return Err(w.fail(e).await);
        }
        Ok(w)
    }

    /// Records a person's decision about one action (`state resolve`, `state retry`), made `at`.
    pub async fn decide_by_person(
        &self,
        timeout: Duration,
        key: &str,
        decision: PersonDecision,
        by: &str,
        reason: &str,
        at: jiff::Timestamp,
    ) -> Result<Record, StateError> {
        let command =
            if decision == PersonDecision::Retry { "reconcile state retry" } else { "reconcile state resolve" };
        self.edit(timeout, command, |ledger| {
            let mut record = ledger.find(key).cloned()?;
            record.decide_by_person(decision, by, reason, at)?;
            Ok((vec![record.clone()], record))
        })
        .await
    }

    /// Archives the records of `keys` (`state archive`), each found by a unique prefix, in one
    /// write: all of them, or none when one key finds nothing. Returns each record with whether
    /// this call archived it (`false`: it was archived already, and is left as it was).
    pub async fn archive(
        &self,
        timeout: Duration,
        keys: &[String],
        by: &str,
        reason: &str,
        now: jiff::Timestamp,
    ) -> Result<Vec<(Record, bool)>, StateError> {
        self.edit(timeout, "reconcile state archive", |ledger| {
            let mut out: Vec<(Record, bool)> = Vec::new();
            for key in keys {
                let mut record = ledger.find(key).cloned()?;
                if out.iter().any(|(r, _)| r.key == record.key) {
                    continue;
                }
                let changed = record.archive(by, reason, now)?;
                out.push((record, changed));
            }
            let changed = out.iter().filter(|(_, c)| *c).map(|(r, _)| r.clone()).collect();
            Ok((changed, out))
        })
        .await
    }

    /// One change by a person under the lock of `command`: `change` reads the ledger and returns
    /// the records to write, in one write, and what to hand back. When it refuses, nothing is
    /// written; the lock is released either way.
    async fn edit<T>(
        &self,
        timeout: Duration,
        command: &str,
        change: impl FnOnce(&Ledger) -> Result<(Vec<Record>, T), StateError>,
    ) -> Result<T, StateError> {
        let mut w = self.lock(timeout, command, None).await?;
        let (records, out) = match change(w.ledger()) {
            Ok(changed) => changed,
            Err(e) => {
                w.commit().await?;
                return Err(e);
            }
        };
        w.record_all(records).await?;
        w.commit().await?;
        Ok(out)
    }

    /// Copies `source` here (`state push` / `state pull`): into a missing ledger, or over one of
    /// the same lineage that `source` extends. Anything else is refused and nothing is written.
    pub async fn import(&self, source: &Ledger, timeout: Duration) -> Result<u64, StateError> {
        let command = self.backend.import_command();
        let mut w = self.lock_inner(timeout, command, source.tenant.as_deref()).await?;
        if let Err(why) = may_replace(w.ledger(), source) {
            w.commit().await?;
            return Err(StateError::ImportRefused { path: self.location(), why });
        }
        let n = source.records.len() as u64;
        w.replace(source.clone()).await?;
        w.commit().await?;
        Ok(n)
    }
}

/// The ledger read under the lock, checked against `tenant` and bound to it when it has none:
/// with whether this lock bound it. A new ledger gets its lineage here.
fn bind(at: &Location, mut ledger: Ledger, tenant: Option<&str>) -> Result<(Ledger, bool), StateError> {
    check_tenant(at, &ledger, tenant)?;
    if ledger.lineage.is_none() {
        ledger.lineage = Some(uuid::Uuid::new_v4());
    }
    // A new ledger, or one from before tenants were recorded, is bound now (a new one always
    // is: without a tenant it is refused below).
    let bound = ledger.tenant.is_none() && tenant.is_some();
    if bound {
        ledger.tenant = tenant.map(str::to_owned);
    }
    if ledger.tenant.is_none() {
        return Err(StateError::NoTenant { path: at.clone() });
    }
    Ok((ledger, bound))
}

/// Whether `dest` may be replaced by `source`: empty, or the same ledger with nothing `source`
/// lacks (every record of `dest` is in `source`, same or older).
fn may_replace(dest: &Ledger, source: &Ledger) -> Result<(), String> {
    if dest.records.is_empty() && dest.serial <= 1 {
        return Ok(());
    }
    if dest.lineage != source.lineage {
        return Err(format!(
            "it is another ledger (lineage {}, the source is {})",
            dest.lineage.map_or_else(|| "none".into(), |l| l.to_string()),
            source.lineage.map_or_else(|| "none".into(), |l| l.to_string())
        ));
    }
    for (key, d) in &dest.records {
        match source.records.get(key) {
            None => return Err(format!("it records action {} that the source lacks", key.short())),
            // The source must hold the same record or a newer one (the journal merge's rule).
            Some(s) if s == d || matches!(newer(d, s), Some(Newer::Journal)) => {}
            Some(_) => return Err(format!("its record of action {} is newer than the source's", key.short())),
        }
    }
    Ok(())
}

/// A locked ledger being written.
#[derive(Debug)]
pub struct Writer {
    location: Location,
    session: Box<dyn Session>,
    ledger: Ledger,
    /// Records whose entry may or may not have landed: written again, the same entry on the same
    /// serial, before anything else.
    pending: Option<Vec<Record>>,
    /// Another writer moved the ledger on (or the lock ran out): nothing more is written.
    fenced: bool,
    /// This lock created the ledger or bound an older one to a tenant.
    bound_tenant: bool,
}

impl Writer {
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The ledger's lineage and serial when the lock was taken.
    pub(crate) fn ledger_before(&self) -> (Option<uuid::Uuid>, u64) {
        (self.ledger.lineage, self.ledger.serial)
    }

    /// Durably records one record's new content.
    pub async fn record(&mut self, record: Record) -> Result<(), StateError> {
        self.record_all(vec![record]).await
    }

    /// Durably records several records in one journal entry (outcomes learned together, a
    /// group of intents), only reported written while the lock is still held.
    pub async fn record_all(&mut self, records: Vec<Record>) -> Result<(), StateError> {
        if records.is_empty() {
            return Ok(());
        }
        self.writable()?;
        self.settle_pending().await?;
        self.pending = Some(records);
        self.settle_pending().await
    }

    /// Writes the pending entry (again: the same records on the same serial), then takes it in.
    async fn settle_pending(&mut self) -> Result<(), StateError> {
        let Some(records) = self.pending.take() else { return Ok(()) };
        match self.session.append(&self.ledger, &records).await {
            Ok(()) => {}
            Err(NotWritten::Theirs) => {
                self.fenced = true;
                let why = format!("another writer recorded serial {} while this run held the lock", self.ledger.serial);
                return Err(StateError::LockLost { path: self.location.clone(), why });
            }
            Err(NotWritten::Unclear(e)) => {
                self.pending = Some(records);
                return Err(e);
            }
            Err(NotWritten::Failed(e)) => return Err(e),
        }
        if let Err(e) = self.session.check() {
            self.fenced = true;
            return Err(e);
        }
        self.ledger.serial += records.len() as u64;
        for r in records {
            self.ledger.records.insert(r.key.clone(), r);
        }
        match self.session.after_append(&self.ledger) {
            Compaction::Later => Ok(()),
            Compaction::Required => self.compact().await,
            Compaction::BestEffort => {
                // The entry is durable already: a snapshot that cannot be written now only
                // leaves the change in the journal (replayed by readers, folded at the end).
                if let Err(e) = self.compact().await {
                    tracing::warn!(error = %e, "the change is in the ledger's journal; the snapshot could not be rewritten");
                }
                Ok(())
            }
        }
    }

    /// Refuses to write once fenced, or once the lock is no longer certainly held.
    fn writable(&mut self) -> Result<(), StateError> {
        if self.fenced {
            let why = "an earlier write found the lock lost".into();
            return Err(StateError::LockLost { path: self.location.clone(), why });
        }
        if let Err(e) = self.session.check() {
            self.fenced = true;
            return Err(e);
        }
        Ok(())
    }

    /// Writes the ledger as the new snapshot (compare-and-swap) and drops the entries it holds.
    async fn compact(&mut self) -> Result<(), StateError> {
        self.writable()?;
        match self.session.replace_snapshot(&self.ledger).await {
            Ok(()) => Ok(()),
            Err(NotWritten::Theirs) => {
                self.fenced = true;
                let why = "the snapshot was replaced by another writer".into();
                Err(StateError::LockLost { path: self.location.clone(), why })
            }
            Err(NotWritten::Unclear(e) | NotWritten::Failed(e)) => Err(e),
        }
    }

    /// Replaces the ledger's content (`state push`, `state pull`): the caller checked it extends
    /// this one.
    pub(crate) async fn replace(&mut self, ledger: Ledger) -> Result<(), StateError> {
        self.writable()?;
        self.settle_pending().await?;
        let serial = self.ledger.serial.max(ledger.serial) + 1;
        self.ledger = Ledger { serial, ..ledger };
        self.compact().await
    }

    /// Folds the journal into a new snapshot and releases the lock.
    pub async fn commit(mut self) -> Result<Ledger, StateError> {
        let result = if self.fenced {
            Err(StateError::LockLost { path: self.location.clone(), why: "nothing more was written".into() })
        } else {
            match self.settle_pending().await {
                Err(e) => Err(e),
                Ok(()) if !self.session.dirty() => Ok(()),
                Ok(()) => self.compact().await,
            }
        };
        self.session.release().await;
        result.map(|()| self.ledger)
    }

    /// Releases the lock and writes nothing: no journal left by another run is folded in.
    pub(crate) async fn release(mut self) {
        self.session.release().await;
    }

    /// Releases the lock after a refusal under it, handing the refusal back.
    async fn fail(mut self, e: StateError) -> StateError {
        self.session.release().await;
        e
    }
}

/// Runs a ledger operation from synchronous code (a command without a runtime of its own).
pub(crate) fn block_on<F: std::future::Future>(f: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    Ok(rt.block_on(f))
}

#[cfg(test)]
mod tests;

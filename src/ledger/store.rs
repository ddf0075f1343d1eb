//! The storage seam: one algorithm (lock, load, append intents and outcomes durably, compact,
//! unlock) over two homes, a local file ([`LocalStore`]) and a blob ([`BlobStore`]).
//!
//! [`Backend`] is the contract both implement; [`Store`] and [`Writer`] pick one at run time (the
//! `state:` setting), so commands are written once against them.

use std::time::Duration;

use super::blob::{BlobStore, BlobWriter, StorageAuth};
use super::local::{LedgerWriter, LocalStore, StateError};
use super::location::Location;
use super::{Ledger, LockInfo, PersonDecision, Record};

/// What a ledger home offers. Every method that changes the ledger holds its lock.
#[allow(async_fn_in_trait)]
pub(crate) trait Backend {
    type Writer: Journal;
    /// Where it is, for messages.
    fn location(&self) -> Location;
    /// Whether a ledger is there.
    async fn exists(&self) -> Result<bool, StateError>;
    /// Reads it without locking (a missing ledger is empty).
    async fn load(&self) -> Result<Ledger, StateError>;
    /// Takes the lock (waiting up to `timeout`) and reads it; a missing ledger is refused.
    async fn lock(&self, timeout: Duration, command: &str, tenant: Option<&str>) -> Result<Self::Writer, StateError>;
    /// Creates it bound to `tenant`; `Ok(false)` when it existed.
    async fn create(&self, timeout: Duration, tenant: &str) -> Result<bool, StateError>;
    /// Takes the lock for a copy from elsewhere, creating the ledger when missing.
    async fn lock_for_import(&self, timeout: Duration, tenant: Option<&str>) -> Result<Self::Writer, StateError>;
    /// Releases a lock by its id (a person's decision).
    async fn unlock(&self, id: &str) -> Result<LockInfo, StateError>;
}

/// A locked ledger being written.
#[allow(async_fn_in_trait)]
pub(crate) trait Journal {
    fn ledger(&self) -> &Ledger;
    /// Durably records the records' new content before returning.
    async fn record_all(&mut self, records: Vec<Record>) -> Result<(), StateError>;
    /// Replaces the whole content (the caller checked it extends this ledger).
    async fn replace(&mut self, ledger: Ledger) -> Result<(), StateError>;
    /// Folds what was recorded into a snapshot and releases the lock.
    async fn commit(self) -> Result<Ledger, StateError>;
}

impl Backend for LocalStore {
    type Writer = LedgerWriter;
    fn location(&self) -> Location {
        Location::Local(self.given_path().to_path_buf())
    }
    async fn exists(&self) -> Result<bool, StateError> {
        Ok(LocalStore::exists(self))
    }
    async fn load(&self) -> Result<Ledger, StateError> {
        LocalStore::load(self)
    }
    async fn lock(&self, timeout: Duration, command: &str, tenant: Option<&str>) -> Result<LedgerWriter, StateError> {
        LocalStore::lock(self, timeout, command, tenant)
    }
    async fn create(&self, timeout: Duration, tenant: &str) -> Result<bool, StateError> {
        LocalStore::create(self, timeout, tenant)
    }
    async fn lock_for_import(&self, timeout: Duration, tenant: Option<&str>) -> Result<LedgerWriter, StateError> {
        LocalStore::lock_for_import(self, timeout, tenant)
    }
    async fn unlock(&self, _id: &str) -> Result<LockInfo, StateError> {
        Err(StateError::LocalUnlock { path: self.path().to_path_buf() })
    }
}

impl Journal for LedgerWriter {
    fn ledger(&self) -> &Ledger {
        LedgerWriter::ledger(self)
    }
    async fn record_all(&mut self, records: Vec<Record>) -> Result<(), StateError> {
        // An fsync: let the runtime's other tasks go on meanwhile where it can.
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
                tokio::task::block_in_place(|| LedgerWriter::record_all(self, records))
            }
            _ => LedgerWriter::record_all(self, records),
        }
    }
    async fn replace(&mut self, ledger: Ledger) -> Result<(), StateError> {
        LedgerWriter::replace(self, ledger)
    }
    async fn commit(self) -> Result<Ledger, StateError> {
        LedgerWriter::commit(self)
    }
}

impl Backend for BlobStore {
    type Writer = BlobWriter;
    fn location(&self) -> Location {
        Location::Blob(self.url().clone())
    }
    async fn exists(&self) -> Result<bool, StateError> {
        BlobStore::exists(self).await
    }
    async fn load(&self) -> Result<Ledger, StateError> {
        BlobStore::load(self).await
    }
    async fn lock(&self, timeout: Duration, command: &str, tenant: Option<&str>) -> Result<BlobWriter, StateError> {
        BlobStore::lock(self, timeout, command, tenant).await
    }
    async fn create(&self, timeout: Duration, tenant: &str) -> Result<bool, StateError> {
        BlobStore::create(self, timeout, tenant).await
    }
    async fn lock_for_import(&self, timeout: Duration, tenant: Option<&str>) -> Result<BlobWriter, StateError> {
        BlobStore::lock_for_import(self, timeout, tenant).await
    }
    async fn unlock(&self, id: &str) -> Result<LockInfo, StateError> {
        BlobStore::unlock(self, id).await
    }
}

impl Journal for BlobWriter {
    fn ledger(&self) -> &Ledger {
        BlobWriter::ledger(self)
    }
    async fn record_all(&mut self, records: Vec<Record>) -> Result<(), StateError> {
        BlobWriter::record_all(self, records).await
    }
    async fn replace(&mut self, ledger: Ledger) -> Result<(), StateError> {
        BlobWriter::replace(self, ledger).await
    }
    async fn commit(self) -> Result<Ledger, StateError> {
        BlobWriter::commit(self).await
    }
}

/// The ledger of this run, wherever it lives.
#[derive(Debug, Clone)]
pub enum Store {
    Local(LocalStore),
    Blob(BlobStore),
}

/// A locked ledger of this run.
#[derive(Debug)]
pub enum Writer {
    Local(LedgerWriter),
    Blob(Box<BlobWriter>),
}

macro_rules! both {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            Store::Local($s) => $e,
            Store::Blob($s) => $e,
        }
    };
}

impl Store {
    /// The store for `location`. A blob is authorised by `AZURE_STORAGE_KEY`,
    /// `AZURE_STORAGE_SAS_TOKEN`, or else `entra()` (the Graph credential, storage scope).
    pub(crate) fn open(
        location: &Location,
        env: &dyn Fn(&str) -> Option<String>,
        timeout: Duration,
        entra: impl FnOnce() -> anyhow::Result<StorageAuth>,
    ) -> anyhow::Result<Store> {
        match location {
            Location::Local(p) => Ok(Store::Local(LocalStore::open(p)?)),
            Location::Blob(url) => {
                let nonempty = |k: &str| env(k).filter(|v| !v.trim().is_empty());
                let auth = if let Some(key) = nonempty(crate::env::AZURE_STORAGE_KEY) {
                    StorageAuth::Key(key.trim().to_owned().into())
                } else if let Some(sas) = nonempty(crate::env::AZURE_STORAGE_SAS_TOKEN) {
                    StorageAuth::Sas(sas.trim().to_owned().into())
                } else {
                    entra()?
                };
                Ok(Store::Blob(BlobStore::open(url.clone(), auth, timeout)?))
            }
        }
    }

    pub(crate) fn location(&self) -> Location {
        both!(self, s => Backend::location(s))
    }

    /// Whether `self` and `other` are one ledger: the same real file (however each was named), or
    /// the same blob.
    pub(crate) fn same_ledger(&self, other: &Store) -> bool {
        match (self, other) {
            (Store::Local(a), Store::Local(b)) => a.path() == b.path(),
            _ => self.location() == other.location(),
        }
    }

    pub async fn exists(&self) -> Result<bool, StateError> {
        both!(self, s => Backend::exists(s).await)
    }

    pub async fn load(&self) -> Result<Ledger, StateError> {
        both!(self, s => Backend::load(s).await)
    }

    /// Reads the ledger, refusing a missing one.
    pub async fn load_existing(&self) -> Result<Ledger, StateError> {
        if !self.exists().await? {
            return Err(StateError::Missing { path: self.location().to_string().into() });
        }
        self.load().await
    }

    pub async fn lock(&self, timeout: Duration, command: &str, tenant: Option<&str>) -> Result<Writer, StateError> {
        Ok(match self {
            Store::Local(s) => Writer::Local(Backend::lock(s, timeout, command, tenant).await?),
            Store::Blob(s) => Writer::Blob(Box::new(Backend::lock(s, timeout, command, tenant).await?)),
        })
    }

    pub async fn create(&self, timeout: Duration, tenant: &str) -> Result<bool, StateError> {
        both!(self, s => Backend::create(s, timeout, tenant).await)
    }

    pub async fn unlock(&self, id: &str) -> Result<LockInfo, StateError> {
        both!(self, s => Backend::unlock(s, id).await)
    }

    /// Refuses a ledger bound to another tenant.
    pub(crate) fn check_tenant(&self, ledger: &Ledger, tenant: Option<&str>) -> Result<(), StateError> {
        super::local::check_tenant_at(&std::path::PathBuf::from(self.location().to_string()), ledger, tenant)
    }

    /// Records a person's decision about one action (`state resolve`, `state retry`).
    pub async fn decide_by_person(
        &self,
        timeout: Duration,
        key: &str,
        decision: PersonDecision,
        by: &str,
        reason: &str,
    ) -> Result<Record, StateError> {
        let command =
            if decision == PersonDecision::Retry { "reconcile state retry" } else { "reconcile state resolve" };
        self.edit(timeout, command, |ledger| {
            let mut record = ledger.find(key).cloned()?;
            record.decide_by_person(decision, by, reason, jiff::Timestamp::now())?;
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
    ) -> Result<Vec<(Record, bool)>, StateError> {
        let now = jiff::Timestamp::now();
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
        if !records.is_empty() {
            w.record_all(records).await?;
        }
        w.commit().await?;
        Ok(out)
    }

    /// Copies `source` here (`state push` / `state pull`): into a missing ledger, or over one of
    /// the same lineage that `source` extends. Anything else is refused and nothing is written.
    pub async fn import(&self, source: &Ledger, timeout: Duration) -> Result<u64, StateError> {
        let mut w = match self {
            Store::Local(s) => Writer::Local(Backend::lock_for_import(s, timeout, source.tenant.as_deref()).await?),
            Store::Blob(s) => {
                Writer::Blob(Box::new(Backend::lock_for_import(s, timeout, source.tenant.as_deref()).await?))
            }
        };
        if let Err(why) = may_replace(w.ledger(), source) {
            w.commit().await?;
            return Err(StateError::ImportRefused { path: self.location().to_string().into(), why });
        }
        let n = source.records.len() as u64;
        w.replace(source.clone()).await?;
        w.commit().await?;
        Ok(n)
    }
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
            Some(s) if s == d || matches!(super::local::newer(d, s), Some(super::local::Newer::Journal)) => {}
            Some(_) => return Err(format!("its record of action {} is newer than the source's", key.short())),
        }
    }
    Ok(())
}

impl Writer {
    pub fn ledger(&self) -> &Ledger {
        match self {
            Writer::Local(w) => Journal::ledger(w),
            Writer::Blob(w) => Journal::ledger(w.as_ref()),
        }
    }

    /// Durably records one record's new content.
    pub async fn record(&mut self, record: Record) -> Result<(), StateError> {
        self.record_all(vec![record]).await
    }

    pub(crate) async fn record_all(&mut self, records: Vec<Record>) -> Result<(), StateError> {
        match self {
            Writer::Local(w) => Journal::record_all(w, records).await,
            Writer::Blob(w) => Journal::record_all(w.as_mut(), records).await,
        }
    }

    pub(crate) async fn replace(&mut self, ledger: Ledger) -> Result<(), StateError> {
        match self {
            Writer::Local(w) => Journal::replace(w, ledger).await,
            Writer::Blob(w) => Journal::replace(w.as_mut(), ledger).await,
        }
    }

    pub async fn commit(self) -> Result<Ledger, StateError> {
        match self {
            Writer::Local(w) => Journal::commit(w).await,
            Writer::Blob(w) => Journal::commit(*w).await,
        }
    }

    /// Releases the lock and writes nothing: no journal left by another run is folded in.
    pub(crate) async fn release(self) {
        match self {
            Writer::Local(w) => drop(w),
            Writer::Blob(w) => w.release_only().await,
        }
    }

    /// The ledger's lineage and serial when the lock was taken.
    pub(crate) fn ledger_before(&self) -> (Option<uuid::Uuid>, u64) {
        (self.ledger().lineage, self.ledger().serial)
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

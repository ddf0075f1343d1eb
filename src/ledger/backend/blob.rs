//! The ledger in Azure Blob Storage: shared by ephemeral CI runners, exactly once across them.
//!
//! # Objects (next to the blob the `state:` URL names, `PATH`)
//! - `PATH` — the snapshot, byte for byte the local ledger's format (checksummed JSON). Replaced
//!   only by compare-and-swap on its ETag (`If-Match`), created with `If-None-Match: *`.
//! - `PATH.journal/NNNNNNNNNNNNNNNNNNNN` — one object per recorded change since the snapshot,
//!   named by the ledger serial it extends and created with `If-None-Match: *`. Writing entry N
//!   succeeds only for a writer that has seen every entry before N: two writers can never both
//!   extend the same ledger, so an intent is never decided on a stale view. Once folded into a
//!   snapshot an entry is overwritten by a tombstone (an entry with no records), never deleted
//!   at once: the name stays taken, so a fenced writer's create that was held in the network and
//!   lands late fails instead of filling it. Tombstones older than `TOMBSTONE_KEEP` (store
//!   time) are deleted by a later compaction; a ledger written before tombstones has none.
//! - `PATH.lock` — who holds the ledger (lock id, host, pid, CI run, since when), created with
//!   `If-None-Match: *`, renewed every 15 s by compare-and-swap, and released by marking it
//!   released (also by compare-and-swap). A lock not renewed for 60 s of the store's own clock
//!   (its `Date` headers against the blob's `Last-Modified`) may be taken over.
//!
//! # Guarantees
//! - An intent is durable before its request is sent: an append returns only after its journal
//!   entry was created.
//! - Every conditional write (lock acquisition, renewal and release, journal entry, snapshot
//!   compare-and-swap) goes through `BlobStore::put_checked`: a write whose answer was lost
//!   (object_store retries it and meets its own success as 409 or 412) or unclear (timeout, 5xx,
//!   connection reset) is read back and compared with what was written — the lock's holder id,
//!   the entry's or snapshot's bytes. Ours: the write stands, with the ETag read back. Someone
//!   else's: fenced. Unreadable: the error stands (an entry is then re-sent, the same
//!   bytes on the same name, before the next one).
//! - A writer that lost its lock stops: a failed renewal (someone took the lock) or no successful
//!   renewal for 40 s (the store unreachable) fences every later write, checked after each entry is
//!   written and before the caller may send. The takeover needs 60 s of the store's time since the
//!   last renewal, so a writer that still passes the check cannot have been replaced.
//! - Compaction writes a new snapshot (CAS) and then tombstones the entries it folded in; a crash
//!   between leaves entries older than the snapshot, which every reader merges. An entry older than
//!   the snapshot that disagrees with it (a late write into a name freed before tombstones, or one
//!   whose tombstone expired) is never refused: attempts the snapshot lacks are added, and an
//!   action the snapshot had as `not-executed` becomes `unknown` (`refresh` decides on Intune's
//!   evidence), with a warning; the next writer folds it in.
//! - A crash at any point loses nothing: the next writer reads snapshot plus entries.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Backend, Compaction, NotWritten, Read, Session};
use crate::graph::clock::ServerClock;
use crate::ledger::location::{BlobUrl, Location};
use crate::ledger::lock::{LockError, LockInfo};
use crate::ledger::merge::merge_late;
use crate::ledger::snapshot::{parse_snapshot_at, snapshot_bytes};
use crate::ledger::{Ledger, Record, StateError};

/// A lock not renewed for this long (store time) may be taken over.
pub(crate) const LOCK_EXPIRY: Duration = Duration::from_secs(60);
/// How often the holder renews its lock.
const RENEW_EVERY: Duration = Duration::from_secs(15);
/// A holder whose last successful renewal began longer ago than this stops writing.
const LEASE_SAFE: Duration = Duration::from_secs(40);
/// How long a tombstone keeps its entry's name taken (store time): far longer than any request
/// can be held in the network and still be accepted by the store.
const TOMBSTONE_KEEP: Duration = Duration::from_secs(24 * 3600);
/// A journal object below the snapshot's serial at most this long (as listed) is a tombstone and
/// is not read: a tombstone is about 130 bytes, the smallest real entry (one record) over 300.
const TOMBSTONE_MAX: u64 = 256;
/// Journal entries after which the writer folds them into a new snapshot, besides at the end.
/// Rewriting the whole snapshot stalls every request behind it (measured: 256 cost a fifth of the
/// write budget and caused 429s), so mid-run compaction only bounds what a reader must list.
const COMPACT_EVERY: usize = 8_192;
/// Entries fetched at once when reading.
const READ_PARALLEL: usize = 16;
/// The longest snapshot or journal entry read: 1 GiB. A snapshot is legitimately large (100,000
/// records are about 136 MB, and one journal entry can hold every intent of a run), so the cap
/// only stops an object no ledger could be, before it fills memory. An object whose reported
/// size is larger is refused without reading; one that streams past the cap, as soon as it does.
const LEDGER_OBJECT_CAP: usize = 1024 * crate::http::MIB;
/// The longest lock object read: 1 MiB (it holds one holder's id, host, pid and CI run: a few
/// hundred bytes).
const LOCK_OBJECT_CAP: usize = crate::http::MIB;

/// How the store is authorised.
#[derive(Clone)]
pub enum StorageAuth {
    /// `AZURE_STORAGE_KEY`: the account's shared key.
    Key(secrecy::SecretString),
    /// `AZURE_STORAGE_SAS_TOKEN`.
    Sas(secrecy::SecretString),
    /// The Entra credential, with the storage scope.
    Entra(Arc<crate::graph::auth::TokenProvider>),
}

impl std::fmt::Debug for StorageAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StorageAuth::Key(_) => "StorageAuth::Key(..)",
            StorageAuth::Sas(_) => "StorageAuth::Sas(..)",
            StorageAuth::Entra(_) => "StorageAuth::Entra(..)",
        })
    }
}

/// One journal entry as stored.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Entry {
    version: u32,
    lineage: Uuid,
    base_serial: u64,
    #[serde(default)]
    tenant: Option<String>,
    /// The lock id of the writer.
    writer: String,
    records: Vec<Record>,
}

/// [`Entry`] as written, borrowing its records (same fields, same order: the same bytes).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntryRef<'a> {
    version: u32,
    lineage: Uuid,
    base_serial: u64,
    tenant: Option<&'a str>,
    writer: &'a str,
    records: &'a [Record],
}

/// The lock object.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LockBlob {
    #[serde(flatten)]
    holder: LockInfo,
    #[serde(default)]
    released: bool,
}

/// How often the lock is renewed and how long a holder may go without a renewal.
#[derive(Debug, Clone, Copy)]
struct LeaseTimes {
    renew_every: Duration,
    safe: Duration,
}

impl Default for LeaseTimes {
    fn default() -> Self {
        LeaseTimes { renew_every: RENEW_EVERY, safe: LEASE_SAFE }
    }
}

/// A ledger in Azure Blob Storage.
#[derive(Debug, Clone)]
pub struct BlobStore {
    url: BlobUrl,
    store: Arc<dyn ObjectStore>,
    clock: Arc<ServerClock>,
    snapshot: ObjPath,
    lock: ObjPath,
    journal: ObjPath,
    /// Secret values never to be shown in an error.
    secrets: Arc<Vec<String>>,
    lease: Arc<LeaseTimes>,
}

/// A conditional write that stands: its own answer, or ours found when read back.
#[derive(Debug)]
struct Written {
    etag: Option<String>,
    /// The object holds exactly the bytes of this write (not an earlier write of ours).
    exact: bool,
}

/// Wraps reqwest for object_store, learning the store's clock from every answer's `Date`.
#[derive(Debug)]
struct DatedHttp {
    client: reqwest::Client,
    clock: Arc<ServerClock>,
}

#[async_trait::async_trait]
impl object_store::client::HttpService for DatedHttp {
    async fn call(
        &self,
        req: object_store::client::HttpRequest,
    ) -> Result<object_store::client::HttpResponse, object_store::client::HttpError> {
        let res = object_store::client::HttpService::call(&self.client, req).await?;
        if let Some(date) =
            res.headers().get("date").and_then(|v| v.to_str().ok()).and_then(crate::graph::clock::http_date)
        {
            self.clock.observe(date, Instant::now());
        }
        Ok(res)
    }
}

#[derive(Debug)]
struct DatedConnector {
    clock: Arc<ServerClock>,
    timeout: Duration,
}

impl object_store::client::HttpConnector for DatedConnector {
    fn connect(&self, _: &object_store::ClientOptions) -> object_store::Result<object_store::client::HttpClient> {
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| object_store::Error::Generic { store: "MicrosoftAzure", source: Box::new(e) })?;
        Ok(object_store::client::HttpClient::new(DatedHttp { client, clock: self.clock.clone() }))
    }
}

/// Serves the Entra token (storage scope) to object_store.
#[derive(Debug)]
struct EntraStorage(Arc<crate::graph::auth::TokenProvider>);

#[async_trait::async_trait]
impl object_store::CredentialProvider for EntraStorage {
    type Credential = object_store::azure::AzureCredential;
    async fn get_credential(&self) -> object_store::Result<Arc<Self::Credential>> {
        let token = self
            .0
            .token()
            .await
            .map_err(|e| object_store::Error::Generic { store: "MicrosoftAzure", source: Box::new(e) })?;
        let bearer = token.bearer();
        let raw = bearer.strip_prefix("Bearer ").unwrap_or(&bearer).to_owned();
        Ok(Arc::new(object_store::azure::AzureCredential::BearerToken(raw)))
    }
}

/// A journal object as listed.
struct Listed {
    serial: u64,
    path: ObjPath,
    size: u64,
    modified: jiff::Timestamp,
}

/// What a full read found.
struct Loaded {
    ledger: Ledger,
    etag: Option<String>,
    /// Entries older than the snapshot (left by a crash mid-compaction), folded in already.
    leftovers: Vec<ObjPath>,
    /// Entries on top of the snapshot.
    chain: Vec<ObjPath>,
    /// Tombstones, and when each was written (store time).
    tombstones: Vec<(ObjPath, jiff::Timestamp)>,
}

impl BlobStore {
    /// A store for `url`; nothing is contacted yet.
    pub fn open(url: BlobUrl, auth: StorageAuth, timeout: Duration) -> Result<BlobStore, StateError> {
        use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
        use secrecy::ExposeSecret;
        let clock = Arc::new(ServerClock::default());
        let mut secrets = Vec::new();
        let loopback = url.is_loopback();
        let mut b = MicrosoftAzureBuilder::new()
            .with_account(&url.account)
            .with_container_name(&url.container)
            .with_endpoint(url.endpoint.clone())
            .with_allow_http(loopback)
            .with_client_options(object_store::ClientOptions::new().with_allow_http(loopback).with_timeout(timeout))
            .with_retry(object_store::RetryConfig {
                max_retries: 3,
                retry_timeout: timeout.max(Duration::from_secs(10)),
                backoff: object_store::BackoffConfig::default(),
            })
            .with_http_connector(DatedConnector { clock: clock.clone(), timeout });
        b = match &auth {
            StorageAuth::Key(k) => {
                secrets.push(k.expose_secret().to_owned());
                b.with_access_key(k.expose_secret())
            }
            StorageAuth::Sas(s) => {
                let token = s.expose_secret().trim_start_matches('?').to_owned();
                for (_, v) in token.split('&').filter_map(|kv| kv.split_once('=')) {
                    if v.len() >= 8 {
                        secrets.push(v.to_owned());
                    }
                }
                secrets.push(token.clone());
                b.with_config(AzureConfigKey::SasKey, token)
            }
            StorageAuth::Entra(p) => b.with_credentials(Arc::new(EntraStorage(p.clone()))),
        };
        let store = b.build().map_err(|e| StateError::Store {
            path: Location::Blob(Box::new(url.clone())),
            op: "configure",
            why: scrub(&e.to_string(), &secrets),
        })?;
        let snapshot = ObjPath::parse(&url.path).map_err(|e| StateError::Store {
            path: Location::Blob(Box::new(url.clone())),
            op: "configure",
            why: e.to_string(),
        })?;
        let lock = ObjPath::from(format!("{}.lock", url.path));
        let journal = ObjPath::from(format!("{}.journal", url.path));
        Ok(BlobStore {
            url,
            store: Arc::new(store),
            clock,
            snapshot,
            lock,
            journal,
            secrets: Arc::new(secrets),
            lease: Arc::new(LeaseTimes::default()),
        })
    }

    /// The same store with another lock renewal period and safe lease: for tests that must see a
    /// lease run out in seconds. Production code never calls it (there is no setting for it).
    #[doc(hidden)]
    #[must_use]
    pub fn with_lease_for_tests(mut self, renew_every: Duration, safe: Duration) -> BlobStore {
        self.lease = Arc::new(LeaseTimes { renew_every, safe });
        self
    }

    fn where_(&self) -> Location {
        Location::Blob(Box::new(self.url.clone()))
    }

    fn err(&self, op: &'static str, e: &object_store::Error) -> StateError {
        let why = match e {
            object_store::Error::NotFound { .. } => {
                format!("not found (does the container `{}` exist?)", self.url.container)
            }
            // A listing names no blob: Azure says which thing is missing in its error code.
            other if other.to_string().contains("ContainerNotFound") => format!(
                "the container `{}` does not exist: create it (docs/setup.md), or correct the URL",
                self.url.container
            ),
            other => scrub(&other.to_string(), &self.secrets),
        };
        StateError::Store { path: self.where_(), op, why }
    }

    fn corrupt(&self, reason: impl Into<String>) -> StateError {
        StateError::Corrupt { path: self.where_(), reason: reason.into() }
    }

    fn entry_path(&self, base: u64) -> ObjPath {
        self.journal.clone().join(format!("{base:020}"))
    }

    /// Whether a ledger (snapshot or journal) is there.
    async fn ledger_exists(&self) -> Result<bool, StateError> {
        match self.store.head(&self.snapshot).await {
            Ok(_) => return Ok(true),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.err("read", &e)),
        }
        Ok(!self.list_entries().await?.is_empty())
    }

    async fn list_entries(&self) -> Result<Vec<Listed>, StateError> {
        let metas: Vec<object_store::ObjectMeta> =
            self.store.list(Some(&self.journal)).try_collect().await.map_err(|e| self.err("list", &e))?;
        let mut out = Vec::with_capacity(metas.len());
        for m in metas {
            let name = m.location.filename().unwrap_or_default();
            let Ok(n) = name.parse::<u64>() else {
                return Err(self.corrupt(format!("unexpected object `{}` in the journal", m.location)));
            };
            let modified =
                jiff::Timestamp::from_second(m.last_modified.timestamp()).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
            out.push(Listed { serial: n, path: m.location, size: m.size, modified });
        }
        out.sort_by_key(|l| l.serial);
        Ok(out)
    }

    /// A snapshot or journal entry and its ETag, read with [`LEDGER_OBJECT_CAP`]; `None` when it
    /// does not exist. A failure is reported as failing to `op` the ledger.
    async fn get_bytes(&self, path: &ObjPath, op: &'static str) -> Result<Option<(Bytes, Option<String>)>, StateError> {
        match self.store.get(path).await {
            Ok(r) => {
                let etag = r.meta.e_tag.clone();
                Ok(Some((self.read_capped(r, op, LEDGER_OBJECT_CAP).await?, etag)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(op, &e)),
        }
    }

    /// The body of `r`, at most `cap` bytes (its reported length is checked first).
    async fn read_capped(&self, r: object_store::GetResult, op: &'static str, cap: usize) -> Result<Bytes, StateError> {
        let declared = r.range.end.saturating_sub(r.range.start);
        let host = url::Url::parse(&self.url.endpoint)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| self.url.endpoint.clone());
        crate::http::collect_capped(r.into_stream(), Some(declared), cap, &host).await.map_err(|e| match e {
            crate::http::BodyError::TooLarge(e) => StateError::Store { path: self.where_(), op, why: e.to_string() },
            crate::http::BodyError::Read(e) => self.err(op, &e),
        })
    }

    /// Snapshot plus journal. The journal is listed before the snapshot is read: an entry folded
    /// into a newer snapshot meanwhile shows up as missing or as a tombstone, and the read starts
    /// over. Entries older than the snapshot are merged after the chain on top of it.
    async fn load_full(&self) -> Result<Loaded, StateError> {
        for _ in 0..5 {
            let listed = self.list_entries().await?;
            let snap = self.get_bytes(&self.snapshot, "read").await?;
            let (mut ledger, etag) = match snap {
                Some((bytes, etag)) => (parse_snapshot_at(&self.where_(), &bytes)?, etag),
                None => (Ledger::empty(), None),
            };
            let snapshot_serial = ledger.serial;
            let mut tombstones = Vec::new();
            let mut to_read = Vec::with_capacity(listed.len());
            for l in listed {
                if l.serial < snapshot_serial && l.size <= TOMBSTONE_MAX {
                    tombstones.push((l.path, l.modified));
                } else {
                    to_read.push(l);
                }
            }
            let fetched: Vec<(Listed, Option<Bytes>)> = futures_util::stream::iter(to_read)
                .map(|l| async move {
                    let got = self.get_bytes(&l.path, "read").await?;
                    Ok::<_, StateError>((l, got.map(|(b, _)| b)))
                })
                .buffered(READ_PARALLEL)
                .try_collect()
                .await?;
            let Some((stale, chain)) = self.fold_entries(&mut ledger, snapshot_serial, fetched, &mut tombstones)?
            else {
                continue;
            };
            let mut leftovers = Vec::with_capacity(stale.len());
            for (n, path, records) in stale {
                merge_late(&mut ledger, records, n, &format!("{}/{}", self.url, path.filename().unwrap_or_default()));
                leftovers.push(path);
            }
            return Ok(Loaded { ledger, etag, leftovers, chain, tombstones });
        }
        Err(StateError::Store {
            path: self.where_(),
            op: "read",
            why: "the ledger kept changing while it was read; try again".into(),
        })
    }

    /// Takes the fetched entries into `ledger` (read at `snapshot_serial`): the chain on top of the
    /// snapshot in order, tombstones noted, entries older than the snapshot kept apart to merge.
    /// `None`: an entry on top of the snapshot vanished or became a tombstone meanwhile (folded
    /// into a newer snapshot): the read starts over.
    #[allow(clippy::type_complexity)]
    fn fold_entries(
        &self,
        ledger: &mut Ledger,
        snapshot_serial: u64,
        fetched: Vec<(Listed, Option<Bytes>)>,
        tombstones: &mut Vec<(ObjPath, jiff::Timestamp)>,
    ) -> Result<Option<(Vec<(u64, ObjPath, Vec<Record>)>, Vec<ObjPath>)>, StateError> {
        let mut stale = Vec::new();
        let mut chain = Vec::new();
        for (l, bytes) in fetched {
            let (n, path) = (l.serial, l.path);
            let Some(bytes) = bytes else {
                if n >= snapshot_serial {
                    return Ok(None);
                }
                continue;
            };
            let entry: Entry = serde_json::from_slice(&bytes)
                .map_err(|e| self.corrupt(format!("journal entry `{path}` is unreadable ({e})")))?;
            if entry.base_serial != n {
                return Err(
                    self.corrupt(format!("journal entry `{path}` says it extends serial {}", entry.base_serial))
                );
            }
            self.check_entry(ledger, &entry, &path)?;
            if entry.records.is_empty() {
                // A tombstone: folded already. On top of the snapshot read, it was folded
                // into a newer one meanwhile.
                if n >= snapshot_serial {
                    return Ok(None);
                }
                tombstones.push((path, l.modified));
                continue;
            }
            if n < snapshot_serial {
                stale.push((n, path, entry.records));
                continue;
            }
            if n != ledger.serial {
                return Err(self.corrupt(format!(
                    "journal entry `{path}` does not follow serial {} (an entry is missing)",
                    ledger.serial
                )));
            }
            if ledger.lineage.is_none() {
                if n != 0 {
                    return Err(StateError::Diverged {
                        path: self.where_(),
                        journal: Box::new(Location::Blob(Box::new(self.url.sibling(path.as_ref())))),
                        why: format!(
                            "the journal extends serial {n} of ledger {}, but the snapshot is missing",
                            entry.lineage
                        ),
                        hint: "restore the snapshot blob from its previous version or backup; do not delete the journal",
                    });
                }
                ledger.lineage = Some(entry.lineage);
            }
            if ledger.tenant.is_none() {
                ledger.tenant = entry.tenant.clone();
            }
            ledger.serial += entry.records.len() as u64;
            for r in entry.records {
                ledger.records.insert(r.key.clone(), r);
            }
            chain.push(path);
        }
        Ok(Some((stale, chain)))
    }

    fn check_entry(&self, ledger: &Ledger, entry: &Entry, path: &ObjPath) -> Result<(), StateError> {
        if entry.version != crate::ledger::LEDGER_VERSION {
            return Err(StateError::NewerVersion { path: self.where_(), found: u64::from(entry.version) });
        }
        let diverged = |why: String, hint: &'static str| StateError::Diverged {
            path: self.where_(),
            journal: Box::new(Location::Blob(Box::new(self.url.sibling(path.as_ref())))),
            why,
            hint,
        };
        if let Some(l) = ledger.lineage
            && l != entry.lineage
        {
            return Err(diverged(
                format!("the journal entry belongs to ledger {}, the snapshot is ledger {l}", entry.lineage),
                "put the snapshot the journal belongs to back in place",
            ));
        }
        if let (Some(l), Some(t)) = (&ledger.tenant, &entry.tenant)
            && !l.eq_ignore_ascii_case(t)
        {
            return Err(diverged(
                format!("the journal entry was written for tenant `{t}`, the ledger belongs to tenant `{l}`"),
                "put the ledger of that tenant back next to the journal",
            ));
        }
        Ok(())
    }

    /// Takes the lock (waiting up to `timeout` for a live holder; an expired one is taken over).
    async fn acquire(&self, timeout: Duration, mut me: LockInfo) -> Result<Arc<Lease>, StateError> {
        me.id = Some(Uuid::new_v4().to_string());
        let mine = |b: &[u8]| holds(b, me.id.as_deref(), false);
        let deadline = Instant::now() + timeout;
        loop {
            let started = Instant::now();
            let body = lock_bytes(&me, false);
            match self.put_checked(&self.lock, body, PutMode::Create, LOCK_OBJECT_CAP, "lock", &mine).await {
                Ok(w) => return Ok(Lease::start(self.clone(), me, w.etag, started)),
                Err(NotWritten::Theirs) => {}
                Err(NotWritten::Unclear(e) | NotWritten::Failed(e)) => return Err(e),
            }
            let Some((bytes, etag, modified)) = self.read_lock().await? else {
                // Gone since our create met it: try again, within the same deadline.
                if Instant::now() >= deadline {
                    return Err(LockError::Held { ledger: self.where_(), holder: None }.into());
                }
                continue;
            };
            let held: Option<LockBlob> = serde_json::from_slice(&bytes).ok();
            let age = self.clock.lower_bound(Instant::now()).map(|now| now.duration_since(modified));
            let expired = age.is_some_and(|a| a > jiff::SignedDuration::try_from(LOCK_EXPIRY).unwrap_or_default());
            let released = held.as_ref().is_some_and(|h| h.released);
            if released || expired {
                if expired && !released {
                    tracing::warn!(
                        holder = %held.as_ref().map_or_else(|| "unknown".to_owned(), |h| h.holder.to_string()),
                        "taking over a ledger lock nobody renewed for more than {}s",
                        LOCK_EXPIRY.as_secs()
                    );
                }
                let started = Instant::now();
                let body = lock_bytes(&me, false);
                match self
                    .put_checked(&self.lock, body, PutMode::Update(version(etag)), LOCK_OBJECT_CAP, "lock", &mine)
                    .await
                {
                    Ok(w) => return Ok(Lease::start(self.clone(), me, w.etag, started)),
                    Err(NotWritten::Theirs) => continue,
                    Err(NotWritten::Unclear(e) | NotWritten::Failed(e)) => return Err(e),
                }
            }
            if Instant::now() >= deadline {
                return Err(LockError::Held { ledger: self.where_(), holder: held.map(|h| Box::new(h.holder)) }.into());
            }
            tokio::time::sleep(Duration::from_secs(1).min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }

    /// A conditional write (`Create` or `Update`) that survives a lost or unclear answer: on any
    /// error it reads the object back (at most `cap` bytes) and asks `ours` whether it holds what
    /// this writer wrote. A 409 or 412 is often our own success met by object_store's retry of a
    /// request whose answer was lost; a timeout, a 5xx or a reset connection may have written too.
    async fn put_checked(
        &self,
        path: &ObjPath,
        body: Vec<u8>,
        mode: PutMode,
        cap: usize,
        op: &'static str,
        ours: &(dyn Fn(&[u8]) -> bool + Sync),
    ) -> Result<Written, NotWritten> {
        let expected = match &mode {
            PutMode::Update(v) => Some(v.e_tag.clone()),
            _ => None,
        };
        let error = match self.put(path, body.clone(), mode).await {
            Ok(etag) => return Ok(Written { etag, exact: true }),
            Err(e) => e,
        };
        // A create answered 404 names no blob (an absent one is what a create wants): the
        // container is missing, and no read back or retry will change that.
        if expected.is_none() && matches!(error, object_store::Error::NotFound { .. }) {
            return Err(NotWritten::Unclear(self.err(op, &error)));
        }
        let refused = matches!(
            error,
            object_store::Error::Precondition { .. }
                | object_store::Error::AlreadyExists { .. }
                | object_store::Error::NotFound { .. }
        );
        // Refused, the read back's failure says more (an object over its cap, say); otherwise the
        // write's own error does.
        let unclear = |read: StateError| NotWritten::Unclear(if refused { read } else { self.err(op, &error) });
        let found = match self.store.get(path).await {
            Ok(r) => {
                let etag = r.meta.e_tag.clone();
                match self.read_capped(r, op, cap).await {
                    Ok(bytes) => Some((bytes, etag)),
                    Err(e) => return Err(unclear(e)),
                }
            }
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(unclear(self.err(op, &e))),
        };
        match found {
            Some((bytes, etag)) if ours(&bytes) => {
                tracing::debug!(object = %path, "a write whose answer was lost or unclear is ours: it stands");
                Ok(Written { etag, exact: bytes.as_ref() == body.as_slice() })
            }
            // Absent: never written (a create whose answer was unclear), or removed since.
            None if expected.is_none() && !refused => Err(NotWritten::Unclear(self.err(op, &error))),
            None => Err(NotWritten::Theirs),
            // Unchanged since we read it: our update did not land.
            Some((_, etag)) if !refused && expected.as_ref().is_some_and(|e| *e == etag) => {
                Err(NotWritten::Unclear(self.err(op, &error)))
            }
            Some(_) => Err(NotWritten::Theirs),
        }
    }

    async fn read_lock(&self) -> Result<Option<(Bytes, Option<String>, jiff::Timestamp)>, StateError> {
        match self.store.get(&self.lock).await {
            Ok(r) => {
                let etag = r.meta.e_tag.clone();
                let modified = jiff::Timestamp::from_second(r.meta.last_modified.timestamp())
                    .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
                let bytes = self.read_capped(r, "lock", LOCK_OBJECT_CAP).await?;
                Ok(Some((bytes, etag, modified)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err("lock", &e)),
        }
    }

    async fn put(&self, path: &ObjPath, body: Vec<u8>, mode: PutMode) -> Result<Option<String>, object_store::Error> {
        let opts = PutOptions { mode, ..PutOptions::default() };
        Ok(self.store.put_opts(path, PutPayload::from(body), opts).await?.e_tag)
    }

    /// Releases a lock by its id (`reconcile state unlock ID`), returning who held it.
    async fn unlock_by_id(&self, id: &str) -> Result<LockInfo, StateError> {
        let not_held = || StateError::NotLocked { path: self.where_(), id: id.to_owned() };
        let Some((bytes, etag, _)) = self.read_lock().await? else { return Err(not_held()) };
        let held: LockBlob = serde_json::from_slice(&bytes).map_err(|_| not_held())?;
        if held.released || held.holder.id.as_deref() != Some(id) {
            return Err(not_held());
        }
        let body = lock_bytes(&held.holder, true);
        let released = |b: &[u8]| holds(b, Some(id), true);
        match self
            .put_checked(&self.lock, body, PutMode::Update(version(etag)), LOCK_OBJECT_CAP, "unlock", &released)
            .await
        {
            Ok(_) => Ok(held.holder),
            Err(NotWritten::Theirs) => Err(not_held()),
            Err(NotWritten::Unclear(e) | NotWritten::Failed(e)) => Err(e),
        }
    }
}

fn version(etag: Option<String>) -> UpdateVersion {
    UpdateVersion { e_tag: etag, version: None }
}

/// Whether lock object bytes name holder `id` (a fresh UUID per acquisition) in state `released`.
fn holds(bytes: &[u8], id: Option<&str>, released: bool) -> bool {
    serde_json::from_slice::<LockBlob>(bytes)
        .is_ok_and(|l| id.is_some() && l.holder.id.as_deref() == id && l.released == released)
}

/// An entry's or a tombstone's body: a tombstone is an entry without records, so that a build
/// from before tombstones reads it as an entry it already folded.
fn tombstone_bytes(lineage: Uuid, serial: u64) -> Vec<u8> {
    let t = Entry {
        version: crate::ledger::LEDGER_VERSION,
        lineage,
        base_serial: serial,
        tenant: None,
        writer: String::new(),
        records: Vec::new(),
    };
    serde_json::to_vec(&t).expect("journal entries serialize")
}

fn lock_bytes(holder: &LockInfo, released: bool) -> Vec<u8> {
    let mut holder = holder.clone();
    holder.renewed_at = Some(jiff::Timestamp::now());
    serde_json::to_vec(&LockBlob { holder, released }).expect("lock info serializes")
}

/// Removes query strings from URLs and known secret values from a message, and shortens an
/// Azure error document to its code.
pub(crate) fn scrub(text: &str, secrets: &[String]) -> String {
    let text = match text.find("<?xml") {
        Some(i) => {
            let code =
                text[i..].split("<Code>").nth(1).and_then(|c| c.split("</Code>").next()).unwrap_or("an error document");
            format!("{}{code}", &text[..i])
        }
        None => text.to_owned(),
    };
    let text = text.as_str();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('?') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let end = tail.find(|c: char| c.is_whitespace()).unwrap_or(tail.len());
        if tail[1..end].contains('=') {
            out.push_str("?<redacted>");
        } else {
            out.push_str(&tail[..end]);
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    for s in secrets.iter().filter(|s| s.len() >= 8) {
        out = out.replace(s.as_str(), "<redacted>");
    }
    out
}

/// The held lock: renewed in the background while the writer lives.
#[derive(Debug)]
struct Lease {
    holder: LockInfo,
    etag: Mutex<Option<String>>,
    /// When the last successful renewal (or the acquisition) began.
    renewed: Mutex<Instant>,
    lost: AtomicBool,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Lease {
    fn start(store: BlobStore, holder: LockInfo, etag: Option<String>, started: Instant) -> Arc<Lease> {
        let lease = Arc::new(Lease {
            holder,
            etag: Mutex::new(etag),
            renewed: Mutex::new(started),
            lost: AtomicBool::new(false),
            task: Mutex::new(None),
        });
        let weak = Arc::downgrade(&lease);
        let task = tokio::spawn(async move {
            let every = store.lease.renew_every;
            let mut wait = every;
            loop {
                tokio::time::sleep(wait).await;
                let Some(lease) = weak.upgrade() else { return };
                let started = Instant::now();
                let etag = lease.etag.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
                let body = lock_bytes(&lease.holder, false);
                let mine = |b: &[u8]| holds(b, lease.holder.id.as_deref(), false);
                match store
                    .put_checked(&store.lock, body, PutMode::Update(version(etag)), LOCK_OBJECT_CAP, "lock", &mine)
                    .await
                {
                    Ok(w) => {
                        *lease.etag.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = w.etag;
                        // Only a write of this renewal proves the lock's Last-Modified is recent;
                        // an earlier write of ours read back only gives the ETag to go on with.
                        if w.exact {
                            *lease.renewed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = started;
                            wait = every;
                        } else {
                            wait = every.min(Duration::from_secs(3));
                        }
                    }
                    Err(NotWritten::Theirs) => {
                        tracing::error!("the ledger lock was taken by someone else: this run writes nothing more");
                        lease.lost.store(true, Ordering::SeqCst);
                        return;
                    }
                    Err(NotWritten::Unclear(e) | NotWritten::Failed(e)) => {
                        tracing::warn!(error = %e, "cannot renew the ledger lock; retrying");
                        wait = every.min(Duration::from_secs(3));
                    }
                }
            }
        });
        *lease.task.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(task);
        lease
    }

    /// Whether this run may still write (and send): never after losing the lock, nor when no
    /// renewal succeeded for [`LEASE_SAFE`].
    fn check(&self, store: &BlobStore) -> Result<(), StateError> {
        let since = self.renewed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).elapsed();
        if self.lost.load(Ordering::SeqCst) {
            return Err(StateError::LockLost { path: store.where_(), why: "another run took the lock".into() });
        }
        if since > store.lease.safe {
            return Err(StateError::LockLost {
                path: store.where_(),
                why: format!(
                    "the lock could not be renewed for {}s (is the storage account reachable?)",
                    since.as_secs()
                ),
            });
        }
        Ok(())
    }

    fn stop(&self) {
        if let Some(t) = self.task.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            t.abort();
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a read saw, besides the ledger: the snapshot's ETag and the journal objects a writer
/// folds or tombstones.
#[derive(Debug, Clone)]
struct BlobVersion {
    etag: Option<String>,
    serial: u64,
    /// Entries older than the snapshot, then the chain on top of it.
    folded: Vec<ObjPath>,
    tombstones: Vec<(ObjPath, jiff::Timestamp)>,
}

impl From<Loaded> for Read {
    fn from(l: Loaded) -> Read {
        let folded = l.leftovers.into_iter().chain(l.chain).collect();
        let version = BlobVersion { etag: l.etag, serial: l.ledger.serial, folded, tombstones: l.tombstones };
        Read::new(l.ledger, version)
    }
}

#[async_trait::async_trait]
impl Backend for BlobStore {
    fn location(&self) -> Location {
        self.where_()
    }

    async fn exists(&self) -> Result<bool, StateError> {
        self.ledger_exists().await
    }

    async fn read(&self) -> Result<Read, StateError> {
        Ok(self.load_full().await?.into())
    }

    async fn lock(&self, timeout: Duration, me: LockInfo) -> Result<Box<dyn Session>, StateError> {
        let lease = self.acquire(timeout, me).await?;
        Ok(Box::new(BlobSession {
            store: self.clone(),
            etag: None,
            folded: Vec::new(),
            tombstones: Vec::new(),
            unclear_snapshot: None,
            lease,
        }))
    }

    async fn unlock(&self, id: &str) -> Result<LockInfo, StateError> {
        self.unlock_by_id(id).await
    }
}

impl BlobStore {
    /// Whether the ledger is still as `v` saw it: the snapshot has the same ETag, and no entry
    /// extends the serial it read (a writer between would have written one, or compacted into a
    /// new snapshot). Two requests instead of a listing and a read of everything.
    async fn unchanged_since(&self, v: &BlobVersion) -> Result<bool, StateError> {
        let etag = match self.store.head(&self.snapshot).await {
            Ok(meta) => meta.e_tag,
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(self.err("read", &e)),
        };
        if etag != v.etag {
            return Ok(false);
        }
        match self.store.head(&self.entry_path(v.serial)).await {
            Ok(_) => Ok(false),
            Err(object_store::Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(self.err("read", &e)),
        }
    }
}

/// The held lock on a blob ledger (renewed in the background), and what its writer needs for
/// compare-and-swap.
#[derive(Debug)]
struct BlobSession {
    store: BlobStore,
    /// The snapshot's ETag, for compare-and-swap.
    etag: Option<String>,
    /// Journal entries the next snapshot folds in (tombstoned after it is written).
    folded: Vec<ObjPath>,
    /// Tombstones found when the lock was taken, and when each was written (store time).
    tombstones: Vec<(ObjPath, jiff::Timestamp)>,
    /// A snapshot whose compare-and-swap may or may not have landed: its bytes.
    unclear_snapshot: Option<Vec<u8>>,
    lease: Arc<Lease>,
}

#[async_trait::async_trait]
impl Session for BlobSession {
    async fn read(&mut self, prior: Option<Read>) -> Result<Ledger, StateError> {
        let prior = prior.and_then(|Read { ledger, version }| Some((ledger, *version.downcast::<BlobVersion>().ok()?)));
        let (ledger, v) = match prior {
            Some((ledger, v)) if self.store.unchanged_since(&v).await? => (ledger, v),
            _ => {
                let Read { ledger, version } = self.store.load_full().await?.into();
                (ledger, *version.downcast::<BlobVersion>().expect("a blob read"))
            }
        };
        (self.etag, self.folded, self.tombstones) = (v.etag, v.folded, v.tombstones);
        Ok(ledger)
    }

    fn needs_fold(&self) -> bool {
        self.etag.is_none() || !self.folded.is_empty()
    }

    fn check(&self) -> Result<(), StateError> {
        self.lease.check(&self.store)
    }

    async fn append(&mut self, base: &Ledger, records: &[Record]) -> Result<(), NotWritten> {
        let entry = EntryRef {
            version: crate::ledger::LEDGER_VERSION,
            lineage: base.lineage.expect("a locked ledger has a lineage"),
            base_serial: base.serial,
            tenant: base.tenant.as_deref(),
            writer: self.lease.holder.id.as_deref().unwrap_or_default(),
            records,
        };
        let body = serde_json::to_vec(&entry).expect("journal entries serialize");
        let path = self.store.entry_path(base.serial);
        let same = |b: &[u8]| b == body.as_slice();
        self.store.put_checked(&path, body.clone(), PutMode::Create, LEDGER_OBJECT_CAP, "write", &same).await?;
        self.folded.push(path);
        Ok(())
    }

    fn after_append(&self, _: &Ledger) -> Compaction {
        if self.folded.len() >= COMPACT_EVERY { Compaction::Required } else { Compaction::Later }
    }

    fn dirty(&self) -> bool {
        !self.folded.is_empty() || self.unclear_snapshot.is_some()
    }

    async fn replace_snapshot(&mut self, ledger: &Ledger) -> Result<(), NotWritten> {
        self.settle_unclear_snapshot().await.map_err(NotWritten::Unclear)?;
        let body = snapshot_bytes(ledger);
        let mode = match self.etag.clone() {
            Some(e) => PutMode::Update(version(Some(e))),
            None => PutMode::Create,
        };
        let same = |b: &[u8]| b == body.as_slice();
        match self.store.put_checked(&self.store.snapshot, body.clone(), mode, LEDGER_OBJECT_CAP, "write", &same).await
        {
            Ok(w) => self.etag = w.etag,
            Err(NotWritten::Unclear(e)) => {
                self.unclear_snapshot = Some(body);
                return Err(NotWritten::Unclear(e));
            }
            Err(other) => return Err(other),
        }
        let lineage = ledger.lineage.expect("a locked ledger has a lineage");
        self.tombstone_folded(lineage).await;
        Ok(())
    }

    async fn release(&mut self) {
        self.lease.stop();
        if self.lease.lost.load(Ordering::SeqCst) {
            return;
        }
        let etag = self.lease.etag.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let body = lock_bytes(&self.lease.holder, true);
        let released = |b: &[u8]| holds(b, self.lease.holder.id.as_deref(), true);
        match self
            .store
            .put_checked(&self.store.lock, body, PutMode::Update(version(etag)), LOCK_OBJECT_CAP, "unlock", &released)
            .await
        {
            Ok(_) => {}
            Err(NotWritten::Theirs) => {
                tracing::warn!("the ledger lock was no longer this run's when it was released: left as it is");
            }
            Err(NotWritten::Unclear(e) | NotWritten::Failed(e)) => {
                tracing::warn!(error = %e, "cannot release the ledger lock; it expires within {}s", LOCK_EXPIRY.as_secs());
            }
        }
    }
}

impl BlobSession {
    /// An earlier compare-and-swap that may have landed: if it did, go on from its ETag.
    async fn settle_unclear_snapshot(&mut self) -> Result<(), StateError> {
        let Some(earlier) = self.unclear_snapshot.take() else { return Ok(()) };
        match self.store.get_bytes(&self.store.snapshot, "write").await {
            Ok(Some((b, etag))) if b.as_ref() == earlier.as_slice() => self.etag = etag,
            Ok(_) => {}
            Err(e) => {
                self.unclear_snapshot = Some(earlier);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Tombstones the entries the new snapshot holds and deletes the tombstones old enough.
    async fn tombstone_folded(&mut self, lineage: Uuid) {
        let store = &self.store;
        let folded = std::mem::take(&mut self.folded);
        let now = store.clock.lower_bound(Instant::now());
        let keep = jiff::SignedDuration::try_from(TOMBSTONE_KEEP).unwrap_or_default();
        let expired: Vec<ObjPath> = std::mem::take(&mut self.tombstones)
            .into_iter()
            .filter(|(_, at)| now.is_some_and(|now| now.duration_since(*at) > keep))
            .map(|(p, _)| p)
            .collect();
        let tombstone = |p: ObjPath| async move {
            let serial = p.filename().and_then(|n| n.parse::<u64>().ok()).unwrap_or_default();
            let body = PutPayload::from(tombstone_bytes(lineage, serial));
            (store.store.put_opts(&p, body, PutOptions::default()).await.map(|_| ()), p)
        };
        let delete = |p: ObjPath| async move { (store.store.delete(&p).await, p) };
        futures_util::stream::iter(folded)
            .map(tombstone)
            .buffer_unordered(READ_PARALLEL)
            .for_each(|(result, p)| async move {
                if let Err(e) = result {
                    tracing::warn!(entry = %p, error = %scrub(&e.to_string(), &store.secrets), "cannot tombstone a folded journal entry (it is harmless: readers merge it)");
                }
            })
            .await;
        futures_util::stream::iter(expired)
            .map(delete)
            .buffer_unordered(READ_PARALLEL)
            .for_each(|(result, p)| async move {
                if let Err(e) = result {
                    tracing::debug!(entry = %p, error = %scrub(&e.to_string(), &store.secrets), "cannot delete an expired tombstone");
                }
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tombstones_are_told_from_entries_by_their_listed_size() {
        let lineage = Uuid::new_v4();
        let tomb = tombstone_bytes(lineage, u64::MAX);
        assert!(tomb.len() as u64 <= TOMBSTONE_MAX, "{}", tomb.len());
        let parsed: Entry = serde_json::from_slice(&tomb).expect("a tombstone is an entry");
        assert!(parsed.records.is_empty());
        // The smallest entry there can be: one record with empty strings everywhere.
        let selector =
            crate::core::action::Selector { kind: crate::core::action::SelectorKind::Id, value: String::new() };
        let action = crate::core::action::Action {
            key: crate::core::action::ActionKey::compute(
                crate::core::action::ActionKind::PasscodeReset,
                &Default::default(),
                "",
                0,
                crate::core::action::Collection::ManagedDevices,
                &selector,
            ),
            former_names: Vec::new(),
            former_keys: Vec::new(),
            kind: crate::core::action::ActionKind::PasscodeReset,
            parameters: Default::default(),
            manifest: String::new(),
            file: std::path::PathBuf::new(),
            pos: crate::diag::Pos::new(1, 1),
            round: 0,
            collection: crate::core::action::Collection::ManagedDevices,
            selector,
        };
        let record = Record::new(&action, None, jiff::Timestamp::UNIX_EPOCH);
        let entry =
            Entry { version: 1, lineage, base_serial: 0, tenant: None, writer: String::new(), records: vec![record] };
        let smallest = serde_json::to_vec(&entry).expect("serializes").len() as u64;
        assert!(smallest > TOMBSTONE_MAX, "{smallest}");
    }

    #[test]
    fn scrub_hides_queries_and_secrets() {
        let s = scrub(
            "Error performing PUT http://127.0.0.1:1/a/c/p?sv=2020&sig=abcdefgh123 in 1s - key SECRETKEY123 refused",
            &["SECRETKEY123".into()],
        );
        assert_eq!(s, "Error performing PUT http://127.0.0.1:1/a/c/p?<redacted> in 1s - key <redacted> refused");
        assert_eq!(scrub("what? nothing", &[]), "what? nothing");
    }
}

//! The ledger in Azure Blob Storage: shared by ephemeral CI runners, exactly once across them.
//!
//! # Objects (next to the blob the `state:` URL names, `PATH`)
//! - `PATH` — the snapshot, byte for byte the local ledger's format (checksummed JSON). Replaced
//!   only by compare-and-swap on its ETag (`If-Match`), created with `If-None-Match: *`.
//! - `PATH.journal/NNNNNNNNNNNNNNNNNNNN` — one object per recorded change since the snapshot,
//!   named by the ledger serial it extends and created with `If-None-Match: *`. Writing entry N
//!   succeeds only for a writer that has seen every entry before N: two writers can never both
//!   extend the same ledger, so an intent is never decided on a stale view.
//! - `PATH.lock` — who holds the ledger (lock id, host, pid, CI run, since when), created with
//!   `If-None-Match: *`, renewed every 15 s by compare-and-swap, and released by marking it
//!   released (also by compare-and-swap). A lock not renewed for 60 s of the store's own clock
//!   (its `Date` headers against the blob's `Last-Modified`) may be taken over.
//!
//! # Guarantees
//! - An intent is durable before its request is sent: [`BlobWriter::record_all`] returns only after
//!   its journal entry was created. A write whose answer was lost is retried on the same name and
//!   recognised as ours by its content.
//! - A writer that lost its lock stops: a failed renewal (someone took the lock) or no successful
//!   renewal for 40 s (the store unreachable) fences every later write, checked after each entry is
//!   written and before the caller may send. The takeover needs 60 s of the store's time since the
//!   last renewal, so a writer that still passes the check cannot have been replaced.
//! - Compaction writes a new snapshot (CAS) and then deletes the entries it folded in; a crash
//!   between leaves entries older than the snapshot, which every reader merges by the same rules
//!   as a local journal (never dropping a record, refusing one that diverged).
//! - A crash at any point loses nothing: the next writer reads snapshot plus entries.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::local::{self, StateError};
use super::location::BlobUrl;
use super::lock::{LockError, LockInfo};
use super::{Ledger, Record};
use crate::graph::clock::ServerClock;

/// A lock not renewed for this long (store time) may be taken over.
pub(crate) const LOCK_EXPIRY: Duration = Duration::from_secs(60);
/// How often the holder renews its lock.
const RENEW_EVERY: Duration = Duration::from_secs(15);
/// A holder whose last successful renewal began longer ago than this stops writing.
const LEASE_SAFE: Duration = Duration::from_secs(40);
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

/// The lock object.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LockBlob {
    #[serde(flatten)]
    holder: LockInfo,
    #[serde(default)]
    released: bool,
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

/// What a full read found.
struct Loaded {
    ledger: Ledger,
    etag: Option<String>,
    /// Entries older than the snapshot (left by a crash mid-compaction), folded in already.
    leftovers: Vec<ObjPath>,
    /// Entries on top of the snapshot.
    chain: Vec<ObjPath>,
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
            path: PathBuf::from(url.to_string()),
            op: "configure",
            why: scrub(&e.to_string(), &secrets),
        })?;
        let snapshot = ObjPath::parse(&url.path).map_err(|e| StateError::Store {
            path: PathBuf::from(url.to_string()),
            op: "configure",
            why: e.to_string(),
        })?;
        let lock = ObjPath::from(format!("{}.lock", url.path));
        let journal = ObjPath::from(format!("{}.journal", url.path));
        Ok(BlobStore { url, store: Arc::new(store), clock, snapshot, lock, journal, secrets: Arc::new(secrets) })
    }

    pub(crate) fn url(&self) -> &BlobUrl {
        &self.url
    }

    fn where_(&self) -> PathBuf {
        PathBuf::from(self.url.to_string())
    }

    fn err(&self, op: &'static str, e: &object_store::Error) -> StateError {
        let why = match e {
            object_store::Error::NotFound { .. } => {
                format!("not found (does the container `{}` exist?)", self.url.container)
            }
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
    pub(crate) async fn exists(&self) -> Result<bool, StateError> {
        match self.store.head(&self.snapshot).await {
            Ok(_) => return Ok(true),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.err("read", &e)),
        }
        Ok(!self.list_entries().await?.is_empty())
    }

    /// Reads the ledger without locking. A missing ledger is empty.
    pub(crate) async fn load(&self) -> Result<Ledger, StateError> {
        Ok(self.load_full().await?.ledger)
    }

    async fn list_entries(&self) -> Result<Vec<(u64, ObjPath)>, StateError> {
        let metas: Vec<object_store::ObjectMeta> =
            self.store.list(Some(&self.journal)).try_collect().await.map_err(|e| self.err("list", &e))?;
        let mut out = Vec::with_capacity(metas.len());
        for m in metas {
            let name = m.location.filename().unwrap_or_default();
            let Ok(n) = name.parse::<u64>() else {
                return Err(self.corrupt(format!("unexpected object `{}` in the journal", m.location)));
            };
            out.push((n, m.location));
        }
        out.sort_by_key(|(n, _)| *n);
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
    /// into a newer snapshot and deleted meanwhile shows up as missing, and the read starts over.
    async fn load_full(&self) -> Result<Loaded, StateError> {
        for _ in 0..5 {
            let listed = self.list_entries().await?;
            let snap = self.get_bytes(&self.snapshot, "read").await?;
            let (mut ledger, etag) = match snap {
                Some((bytes, etag)) => (local::parse_snapshot_at(&self.where_(), &bytes)?, etag),
                None => (Ledger::empty(), None),
            };
            let fetched: Vec<(u64, ObjPath, Option<Bytes>)> = futures_util::stream::iter(listed)
                .map(|(n, p)| async move {
                    let got = self.get_bytes(&p, "read").await?;
                    Ok::<_, StateError>((n, p, got.map(|(b, _)| b)))
                })
                .buffered(READ_PARALLEL)
                .try_collect()
                .await?;
            let snapshot_serial = ledger.serial;
            let mut restart = false;
            let mut leftovers = Vec::new();
            let mut chain = Vec::new();
            for (n, path, bytes) in fetched {
                let Some(bytes) = bytes else {
                    if n >= snapshot_serial {
                        restart = true;
                        break;
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
                self.check_entry(&ledger, &entry, &path)?;
                if n < snapshot_serial {
                    let journal = PathBuf::from(format!("{}/{}", self.url, path.filename().unwrap_or_default()));
                    let diverged = |why: String, hint: &'static str| StateError::Diverged {
                        path: self.where_(),
                        journal: journal.clone(),
                        why,
                        hint,
                    };
                    local::merge_stale(&mut ledger, entry.records, n, &journal, &diverged)?;
                    leftovers.push(path);
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
                            journal: PathBuf::from(path.to_string()),
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
            if !restart {
                return Ok(Loaded { ledger, etag, leftovers, chain });
            }
        }
        Err(StateError::Store {
            path: self.where_(),
            op: "read",
            why: "the ledger kept changing while it was read; try again".into(),
        })
    }

    fn check_entry(&self, ledger: &Ledger, entry: &Entry, path: &ObjPath) -> Result<(), StateError> {
        if entry.version != super::LEDGER_VERSION {
            return Err(StateError::NewerVersion { path: self.where_(), found: u64::from(entry.version) });
        }
        let diverged = |why: String, hint: &'static str| StateError::Diverged {
            path: self.where_(),
            journal: PathBuf::from(path.to_string()),
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
    async fn acquire(&self, timeout: Duration, command: &str) -> Result<Arc<Lease>, StateError> {
        let mut me = super::lock::me(command);
        me.id = Some(Uuid::new_v4().to_string());
        let deadline = Instant::now() + timeout;
        loop {
            let started = Instant::now();
            let body = lock_bytes(&me, false);
            match self.put(&self.lock, body, PutMode::Create).await {
                Ok(etag) => return Ok(Lease::start(self.clone(), me, etag, started)),
                Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {}
                Err(e) => return Err(self.err("lock", &e)),
            }
            let Some((bytes, etag, modified)) = self.read_lock().await? else { continue };
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
                match self.put(&self.lock, lock_bytes(&me, false), PutMode::Update(version(etag))).await {
                    Ok(etag) => return Ok(Lease::start(self.clone(), me, etag, started)),
                    Err(object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. }) => continue,
                    Err(e) => return Err(self.err("lock", &e)),
                }
            }
            if Instant::now() >= deadline {
                return Err(LockError::Held { ledger: self.where_(), holder: held.map(|h| Box::new(h.holder)) }.into());
            }
            tokio::time::sleep(Duration::from_secs(1).min(deadline.saturating_duration_since(Instant::now()))).await;
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

    /// Takes the lock and returns a writer over the current ledger. A missing ledger is refused.
    pub(crate) async fn lock(
        &self,
        timeout: Duration,
        command: &str,
        tenant: Option<&str>,
    ) -> Result<BlobWriter, StateError> {
        if !self.exists().await? {
            return Err(StateError::Missing { path: self.where_() });
        }
        self.lock_inner(timeout, command, tenant).await
    }

    async fn lock_inner(
        &self,
        timeout: Duration,
        command: &str,
        tenant: Option<&str>,
    ) -> Result<BlobWriter, StateError> {
        let lease = self.acquire(timeout, command).await?;
        let mut writer = BlobWriter {
            store: self.clone(),
            ledger: Ledger::empty(),
            etag: None,
            folded: Vec::new(),
            lease,
            bound_tenant: false,
            fenced: false,
        };
        let loaded = match self.load_full().await {
            Ok(l) => l,
            Err(e) => {
                writer.release().await;
                return Err(e);
            }
        };
        if let Err(e) = local::check_tenant_at(&self.where_(), &loaded.ledger, tenant) {
            writer.release().await;
            return Err(e);
        }
        writer.ledger = loaded.ledger;
        writer.etag = loaded.etag;
        writer.folded = loaded.leftovers.into_iter().chain(loaded.chain).collect();
        if writer.ledger.lineage.is_none() {
            writer.ledger.lineage = Some(Uuid::new_v4());
        }
        writer.bound_tenant = writer.ledger.tenant.is_none() && tenant.is_some();
        if writer.bound_tenant {
            writer.ledger.tenant = tenant.map(str::to_owned);
        }
        if writer.ledger.tenant.is_none() {
            writer.release().await;
            return Err(StateError::NoTenant { path: self.where_() });
        }
        if (writer.bound_tenant || writer.etag.is_none() || !writer.folded.is_empty())
            && let Err(e) = writer.compact().await
        {
            writer.release().await;
            return Err(e);
        }
        Ok(writer)
    }

    /// Creates the ledger bound to `tenant` (`reconcile init`); `Ok(false)` when it exists already.
    pub(crate) async fn create(&self, timeout: Duration, tenant: &str) -> Result<bool, StateError> {
        let w = self.lock_inner(timeout, "reconcile init", Some(tenant)).await?;
        let created = w.bound_tenant;
        w.commit().await?;
        Ok(created)
    }

    /// Locks the ledger for a copy from elsewhere (`state push`), creating it when missing.
    pub(crate) async fn lock_for_import(
        &self,
        timeout: Duration,
        tenant: Option<&str>,
    ) -> Result<BlobWriter, StateError> {
        self.lock_inner(timeout, "reconcile state push", tenant).await
    }

    /// Releases a lock by its id (`reconcile state unlock ID`), returning who held it.
    pub(crate) async fn unlock(&self, id: &str) -> Result<LockInfo, StateError> {
        let not_held = || StateError::NotLocked { path: self.where_(), id: id.to_owned() };
        let Some((bytes, etag, _)) = self.read_lock().await? else { return Err(not_held()) };
        let held: LockBlob = serde_json::from_slice(&bytes).map_err(|_| not_held())?;
        if held.released || held.holder.id.as_deref() != Some(id) {
            return Err(not_held());
        }
        match self.put(&self.lock, lock_bytes(&held.holder, true), PutMode::Update(version(etag))).await {
            Ok(_) => Ok(held.holder),
            Err(object_store::Error::Precondition { .. }) => Err(not_held()),
            Err(e) => Err(self.err("unlock", &e)),
        }
    }
}

fn version(etag: Option<String>) -> UpdateVersion {
    UpdateVersion { e_tag: etag, version: None }
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
            let mut wait = RENEW_EVERY;
            loop {
                tokio::time::sleep(wait).await;
                let Some(lease) = weak.upgrade() else { return };
                let started = Instant::now();
                let etag = lease.etag.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
                match store.put(&store.lock, lock_bytes(&lease.holder, false), PutMode::Update(version(etag))).await {
                    Ok(etag) => {
                        *lease.etag.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = etag;
                        *lease.renewed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = started;
                        wait = RENEW_EVERY;
                    }
                    Err(object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. }) => {
                        tracing::error!("the ledger lock was taken by someone else: this run writes nothing more");
                        lease.lost.store(true, Ordering::SeqCst);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %scrub(&e.to_string(), &store.secrets), "cannot renew the ledger lock; retrying");
                        wait = Duration::from_secs(3);
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
        if since > LEASE_SAFE {
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

/// Exclusive access to a blob ledger while the lock is held. Same flow as the local writer:
/// [`record_all`](Self::record_all) before and after each request, [`commit`](Self::commit) at the end.
#[derive(Debug)]
pub struct BlobWriter {
    store: BlobStore,
    ledger: Ledger,
    /// The snapshot's ETag, for compare-and-swap.
    etag: Option<String>,
    /// Journal entries the next snapshot folds in (deleted after it is written).
    folded: Vec<ObjPath>,
    lease: Arc<Lease>,
    bound_tenant: bool,
    /// Another writer moved the ledger on: nothing more is written.
    fenced: bool,
}

impl BlobWriter {
    pub(crate) fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Durably records records: one journal entry, created only if this writer is still the one
    /// extending the ledger, and only reported written while the lock is still held.
    pub(crate) async fn record_all(&mut self, records: Vec<Record>) -> Result<(), StateError> {
        if records.is_empty() {
            return Ok(());
        }
        self.writable()?;
        let base = self.ledger.serial;
        let entry = Entry {
            version: super::LEDGER_VERSION,
            lineage: self.ledger.lineage.expect("a locked ledger has a lineage"),
            base_serial: base,
            tenant: self.ledger.tenant.clone(),
            writer: self.lease.holder.id.clone().unwrap_or_default(),
            records,
        };
        let body = serde_json::to_vec(&entry).expect("journal entries serialize");
        let path = self.store.entry_path(base);
        match self.store.put(&path, body.clone(), PutMode::Create).await {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                // Ours, if an earlier try's answer was lost; otherwise someone else moved on.
                match self.store.get_bytes(&path, "write").await {
                    Ok(Some((b, _))) if b.as_ref() == body.as_slice() => {}
                    Ok(_) => {
                        self.fenced = true;
                        return Err(StateError::LockLost {
                            path: self.store.where_(),
                            why: format!("another writer recorded serial {base} while this run held the lock"),
                        });
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(self.store.err("write", &e)),
        }
        if let Err(e) = self.lease.check(&self.store) {
            self.fenced = true;
            return Err(e);
        }
        self.ledger.serial += entry.records.len() as u64;
        for r in entry.records {
            self.ledger.records.insert(r.key.clone(), r);
        }
        self.folded.push(path);
        if self.folded.len() >= COMPACT_EVERY {
            self.compact().await?;
        }
        Ok(())
    }

    fn writable(&mut self) -> Result<(), StateError> {
        if self.fenced {
            return Err(StateError::LockLost {
                path: self.store.where_(),
                why: "an earlier write found the lock lost".into(),
            });
        }
        if let Err(e) = self.lease.check(&self.store) {
            self.fenced = true;
            return Err(e);
        }
        Ok(())
    }

    /// Writes the ledger as the new snapshot (compare-and-swap), then deletes the entries it holds.
    async fn compact(&mut self) -> Result<(), StateError> {
        self.writable()?;
        let body = local::snapshot_bytes(&self.ledger);
        let mode = match self.etag.clone() {
            Some(e) => PutMode::Update(version(Some(e))),
            None => PutMode::Create,
        };
        match self.store.put(&self.store.snapshot, body, mode).await {
            Ok(etag) => self.etag = etag,
            Err(object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. }) => {
                self.fenced = true;
                return Err(StateError::LockLost {
                    path: self.store.where_(),
                    why: "the snapshot was replaced by another writer".into(),
                });
            }
            Err(e) => return Err(self.store.err("write", &e)),
        }
        let store = &self.store;
        let deletes = std::mem::take(&mut self.folded);
        futures_util::stream::iter(deletes)
            .map(|p| async move { (store.store.delete(&p).await, p) })
            .buffer_unordered(READ_PARALLEL)
            .for_each(|(result, p)| async move {
                if let Err(e) = result {
                    tracing::warn!(entry = %p, error = %scrub(&e.to_string(), &store.secrets), "cannot delete a folded journal entry (it is harmless: readers skip it)");
                }
            })
            .await;
        Ok(())
    }

    /// Replaces the ledger's content (`state push`): the caller checked it extends this one.
    pub(crate) async fn replace(&mut self, ledger: Ledger) -> Result<(), StateError> {
        let serial = self.ledger.serial.max(ledger.serial) + 1;
        self.ledger = Ledger { serial, ..ledger };
        self.compact().await
    }

    /// Folds the journal into a new snapshot and releases the lock.
    pub(crate) async fn commit(mut self) -> Result<Ledger, StateError> {
        let result = if self.fenced {
            Err(StateError::LockLost { path: self.store.where_(), why: "nothing more was written".into() })
        } else if self.folded.is_empty() {
            Ok(())
        } else {
            self.compact().await
        };
        self.release().await;
        result.map(|()| self.ledger.clone())
    }

    /// Releases the lock without writing anything else (not even folding a journal left behind).
    pub(crate) async fn release_only(mut self) {
        self.release().await;
    }

    /// Marks the lock released, if it is still ours.
    async fn release(&mut self) {
        self.lease.stop();
        if self.lease.lost.load(Ordering::SeqCst) {
            return;
        }
        let etag = self.lease.etag.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        if let Err(e) =
            self.store.put(&self.store.lock, lock_bytes(&self.lease.holder, true), PutMode::Update(version(etag))).await
        {
            tracing::warn!(error = %scrub(&e.to_string(), &self.store.secrets), "cannot release the ledger lock; it expires within {}s", LOCK_EXPIRY.as_secs());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

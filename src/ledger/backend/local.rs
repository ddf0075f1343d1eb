//! The local ledger: a checksummed JSON snapshot plus an append-only journal.
//!
//! # Files
//! - `state.json` — the snapshot: `version`, `lineage`, `serial`, `tenant`, `records`, and a
//!   `checksum` (`sha256:` of the compact JSON of everything else). Replaced only by
//!   write-temp → fsync → rename → fsync folder, so it is never torn. Mode 0600.
//! - `state.json.journal` — one line per recorded change since the snapshot:
//!   `<sha256 hex of the JSON> <JSON>`. The first line names the snapshot it extends
//!   (`lineage`, `baseSerial`). Each line is fsynced before the next request is sent.
//! - `state.json.lock` — the writer lock: an advisory `flock` on this sidecar file, never on the
//!   ledger itself (which is replaced by rename). The file names its holder so a second writer
//!   can say who is in the way; the operating system releases the lock when its holder dies.
//!
//! # Guarantees
//! - A change the engine was told is recorded survives a crash: it is in the journal.
//! - A torn last journal line (a crash mid-write) is ignored: its fsync never completed, so the
//!   request it announced was never sent. A bad line anywhere else is corruption and refused.
//! - A journal left by a crash is replayed by every reader and folded into a new snapshot by the
//!   next writer.
//! - A journal that does not extend the snapshot next to it (a crash between the rename and the
//!   journal's removal, or a snapshot that arrived from elsewhere: another runner, a restore, a
//!   `git pull`) is never dropped: every record is compared with the snapshot's, and records the
//!   snapshot lacks or has older versions of are merged in. A record that diverged (each side has
//!   attempts the other lacks), a journal of another lineage or tenant, or a journal whose
//!   snapshot is missing is refused with both files named, and nothing is written.
//! - A ledger that fails to parse, is of a newer version or fails its checksum is refused, and
//!   nothing ever overwrites it.
//! - A read made before the lock is reused under it only when the snapshot's checksum (read
//!   from its end) and the journal's identity and length are unchanged: any write changes one.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read as _, Seek as _, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::flock::{self, LockGuard};
use super::{Backend, Compaction, NotWritten, Read, Session};
use crate::ledger::location::Location;
use crate::ledger::lock::LockInfo;
use crate::ledger::merge::merge_stale;
use crate::ledger::snapshot::{parse_whole_at, streamed, write_snapshot};
use crate::ledger::{Ledger, Record, StateError};

/// One journal line.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
enum JournalLine {
    /// The first line: which snapshot the journal extends.
    Base { lineage: Uuid, base_serial: u64, tenant: Option<String> },
    /// A record's new content.
    Put(Box<Record>),
}

/// A local ledger at a path.
///
/// # One ledger, one identity
/// A ledger may be reached by several paths (a relative one, an absolute one, one through a
/// symlinked folder, a symlink to the file itself). The store resolves where the ledger really is
/// once, when it is opened ([`open`](Self::open)): the parent folder is canonicalized (through its
/// nearest existing ancestor when it does not exist yet, as for `init`), and a ledger file that is
/// itself a symlink is followed to its target. The lock, the journal and the temporary file of
/// every write are named from that real location, and the final rename replaces the real file:
/// two paths to one ledger share one lock and one journal, and a symlink stays a symlink.
///
/// A symlinked ledger is followed rather than refused because keeping the ledger elsewhere and
/// linking it into a checkout is an ordinary setup, and refusing it would only push operators to
/// copies (two ledgers, the very thing this prevents). Following it is safe where it matters: a
/// ledger the repository names is checked for confinement after this resolution (see
/// `app::connect`), and the operator's `--state` may be anywhere anyway. A link that leads
/// nowhere is refused: writing through it would create a file at a place nobody chose.
#[derive(Debug, Clone)]
pub struct LocalStore {
    /// The ledger's real location (see above): every file is named from it.
    path: PathBuf,
    /// The path as given, for messages and for telling where the ledger was asked for.
    given: PathBuf,
    /// Up to this many records every change also rewrites the snapshot.
    write_through: usize,
}

impl LocalStore {
    /// Opens the ledger at `path`, resolving where it really is (see the type's docs). Refused
    /// when that cannot be told: a symlink to nothing, a path that names no file.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, StateError> {
        let given = path.into();
        let real = resolve(&given)?;
        if real != given {
            tracing::debug!(given = %given.display(), real = %real.display(), "the ledger's real location");
        }
        Ok(LocalStore { path: real, given, write_through: WRITE_THROUGH_RECORDS })
    }

    /// [`open`](Self::open) for a path known to resolve (tests, fixtures): a path that cannot be
    /// resolved is used as given. Commands use `open`, which reports it.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let given = path.into();
        Self::open(given.clone()).unwrap_or(LocalStore {
            path: given.clone(),
            given,
            write_through: WRITE_THROUGH_RECORDS,
        })
    }

    /// The same store, its changes kept in the journal until the end whatever the ledger's size
    /// (as a ledger of more than [`WRITE_THROUGH_RECORDS`] records is): for tests of the journal.
    pub fn journal_only(self) -> Self {
        LocalStore { write_through: 0, ..self }
    }

    /// The ledger's real location: where its files are.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path the ledger was asked for, as given.
    pub fn given_path(&self) -> &Path {
        &self.given
    }

    fn journal_path(&self) -> PathBuf {
        let mut s = self.path.as_os_str().to_owned();
        s.push(".journal");
        PathBuf::from(s)
    }

    /// Reads the ledger (snapshot plus journal) without locking, with the version it was read at.
    /// A missing ledger is empty: the engine tells it from "nothing was ever sent".
    fn read_ledger(&self) -> Result<(Ledger, LocalVersion), StateError> {
        // The journal's identity is taken before it is read: a line appended meanwhile makes the
        // version older than the content, never the other way round.
        let journal = self.journal_identity()?;
        let read = |source| StateError::Read { path: self.path.clone(), source };
        // Read as a stream when laid out as written (the file is never in memory whole), else
        // whole: the snapshot is replaced by rename, never changed in place, so this open file is
        // one version throughout.
        let (mut ledger, snapshot) = match File::open(&self.path) {
            Ok(f) => {
                let len = f.metadata().map_err(read)?.len();
                match streamed::read(std::io::BufReader::with_capacity(1 << 16, &f)).map_err(read)? {
                    Some((ledger, checksum)) => (ledger, Some((len, Some(checksum)))),
                    None => {
                        let mut bytes = Vec::new();
                        (&f).seek(SeekFrom::Start(0)).and_then(|_| (&f).read_to_end(&mut bytes)).map_err(read)?;
                        let ledger = parse_whole_at(&Location::Local(self.path.clone()), &bytes)?;
                        let checksum = trailing_checksum(&bytes).map(str::to_owned);
                        (ledger, Some((bytes.len() as u64, checksum)))
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Ledger::empty(), None),
            Err(source) => return Err(read(source)),
        };
        self.replay_journal(&mut ledger)?;
        Ok((ledger, LocalVersion { snapshot, journal }))
    }

    /// The ledger as it is now (tests and fixtures read it this way).
    pub fn load(&self) -> Result<Ledger, StateError> {
        Ok(self.read_ledger()?.0)
    }

    /// The version of the files as they are now, without reading the snapshot: its length and
    /// the checksum at its end, and the journal's identity and length.
    fn current_version(&self) -> Result<LocalVersion, StateError> {
        let journal = self.journal_identity()?;
        let read = |source| StateError::Read { path: self.path.clone(), source };
        let snapshot = match File::open(&self.path) {
            Ok(mut f) => {
                let len = f.metadata().map_err(read)?.len();
                let mut tail = Vec::new();
                f.seek(SeekFrom::Start(len.saturating_sub(TAIL))).map_err(read)?;
                f.take(TAIL).read_to_end(&mut tail).map_err(read)?;
                Some((len, trailing_checksum(&tail).map(str::to_owned)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(read(source)),
        };
        Ok(LocalVersion { snapshot, journal })
    }

    fn journal_identity(&self) -> Result<Option<(u64, u64, u64)>, StateError> {
        use std::os::unix::fs::MetadataExt as _;
        let jpath = self.journal_path();
        match std::fs::symlink_metadata(&jpath) {
            Ok(m) => Ok(Some((m.dev(), m.ino(), m.len()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Read { path: jpath, source }),
        }
    }

    fn corrupt(&self, reason: impl Into<String>) -> StateError {
        StateError::Corrupt { path: Location::Local(self.path.clone()), reason: reason.into() }
    }

    /// Applies the journal's changes to `ledger`.
    fn replay_journal(&self, ledger: &mut Ledger) -> Result<(), StateError> {
        let jpath = self.journal_path();
        let text = match std::fs::read(&jpath) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(StateError::Read { path: jpath, source }),
        };
        let jerr = |n: usize, why: &str| self.corrupt(format!("journal `{}` line {n}: {why}", jpath.display()));
        let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
        let mut parsed = Vec::with_capacity(lines.len());
        for (i, line) in lines.iter().enumerate() {
            let last = i + 1 == lines.len();
            match crate::ledger::intern::reading(|| parse_line(line)) {
                Some(l) => parsed.push(l),
                // A torn final line: the write never completed, so nothing was sent after it.
                None if last => break,
                None => return Err(jerr(i + 1, "checksum mismatch or unreadable")),
            }
        }
        let mut lines = parsed.into_iter();
        let (lineage, base_serial, tenant) = match lines.next() {
            Some(JournalLine::Base { lineage, base_serial, tenant }) => (lineage, base_serial, tenant),
            // Empty, or only a torn first line: nothing was recorded, so nothing was sent.
            None => return Ok(()),
            Some(JournalLine::Put(_)) => return Err(jerr(1, "missing base line")),
        };
        let mut puts: Vec<Record> = Vec::new();
        for (i, line) in lines.enumerate() {
            match line {
                JournalLine::Put(r) => puts.push(*r),
                JournalLine::Base { .. } => return Err(jerr(i + 2, "second base line")),
            }
        }
        let journal = Location::Local(jpath.clone());
        let diverged = |why: String, hint: &'static str| StateError::Diverged {
            path: Location::Local(self.path.clone()),
            journal: Box::new(journal.clone()),
            why,
            hint,
        };
        if let (Some(l), Some(t)) = (&ledger.tenant, &tenant)
            && !l.eq_ignore_ascii_case(t)
        {
            return Err(diverged(
                format!("the journal was written for tenant `{t}`, the ledger belongs to tenant `{l}`"),
                "put the ledger of that tenant back next to the journal, or move the journal to where that ledger lives",
            ));
        }
        match ledger.lineage {
            None if base_serial == 0 => {}
            None => {
                return Err(diverged(
                    format!(
                        "the journal extends serial {base_serial} of ledger {lineage}, but the ledger file is missing"
                    ),
                    "restore the ledger file from its backup or remote copy; do not delete the journal",
                ));
            }
            Some(l) if l != lineage => {
                return Err(diverged(
                    format!("the journal belongs to ledger {lineage}, the file next to it is ledger {l}"),
                    "put the ledger the journal belongs to back in place (it holds the records before the journal)",
                ));
            }
            Some(_) if base_serial == ledger.serial => {}
            // The journal does not extend this snapshot: merged below, record by record.
            Some(_) => return merge_stale(ledger, puts, base_serial, &journal, &diverged),
        }
        ledger.lineage = Some(lineage);
        if ledger.tenant.is_none() {
            ledger.tenant = tenant;
        }
        let n = puts.len();
        for r in puts {
            ledger.records.insert(r.key.clone(), r);
        }
        ledger.serial = base_serial + n as u64;
        Ok(())
    }
}

/// The bytes read from a snapshot's end to find its checksum: the document ends with
/// `"checksum": "sha256:<64 hex>"` and its closing brace.
const TAIL: u64 = 256;

/// The checksum a snapshot document ends with, if its tail holds one.
fn trailing_checksum(bytes: &[u8]) -> Option<&str> {
    let tail = &bytes[bytes.len().saturating_sub(TAIL as usize)..];
    let at = tail.windows(7).rposition(|w| w == b"sha256:")?;
    let hex = tail.get(at..at + 7 + 64)?;
    std::str::from_utf8(hex).ok()
}

/// What a read saw: the snapshot's length and checksum, and the journal's device, inode and
/// length. Every write changes one of them: a snapshot is replaced whole (a new checksum, as its
/// content changed), and a journal only grows, or is removed once folded into a new snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LocalVersion {
    snapshot: Option<(u64, Option<String>)>,
    journal: Option<(u64, u64, u64)>,
}

#[async_trait::async_trait]
impl Backend for LocalStore {
    fn location(&self) -> Location {
        Location::Local(self.given.clone())
    }

    fn same_as(&self, other: &dyn Backend) -> bool {
        other.real_path() == Some(self.path.as_path())
    }

    fn real_path(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn import_command(&self) -> &'static str {
        "reconcile state pull"
    }

    async fn exists(&self) -> Result<bool, StateError> {
        Ok(LocalStore::exists(self))
    }

    async fn read(&self) -> Result<Read, StateError> {
        let (ledger, version) = self.read_ledger()?;
        Ok(Read::new(ledger, version))
    }

    async fn lock(&self, timeout: Duration, me: LockInfo) -> Result<Box<dyn Session>, StateError> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir).map_err(|source| StateError::Write { path: self.path.clone(), source })?;
        }
        let guard = flock::acquire(&self.path, timeout, &me)?;
        Ok(Box::new(LocalSession {
            store: self.clone(),
            guard: Some(guard),
            journal: None,
            broken: false,
            journal_found: false,
        }))
    }

    async fn unlock(&self, _id: &str) -> Result<LockInfo, StateError> {
        Err(StateError::LocalUnlock { path: Location::Local(self.path.clone()) })
    }
}

/// Runs file I/O that may fsync: on a multi-threaded runtime, its other tasks go on meanwhile.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// The lock on a local ledger, and the journal its writer appends to.
///
/// Dropping it without a final snapshot leaves the journal for the next reader to replay:
/// nothing recorded is lost.
#[derive(Debug)]
struct LocalSession {
    store: LocalStore,
    guard: Option<LockGuard>,
    journal: Option<File>,
    /// A journal write failed: nothing more is appended after a possibly partial line.
    broken: bool,
    /// The read under the lock found a journal (left by a crash): folded at once.
    journal_found: bool,
}

/// Up to this many records, every recorded change also rewrites the snapshot (see
/// [`LocalSession::after_append`]); beyond, changes live in the journal until the run ends.
pub(crate) const WRITE_THROUGH_RECORDS: usize = 256;

#[async_trait::async_trait]
impl Session for LocalSession {
    async fn read(&mut self, prior: Option<Read>) -> Result<Ledger, StateError> {
        let reused = match prior {
            Some(Read { ledger, version }) => {
                let unchanged = blocking(|| self.store.current_version())?;
                version.downcast::<LocalVersion>().ok().filter(|v| **v == unchanged).map(|_| ledger)
            }
            None => None,
        };
        let ledger = match reused {
            Some(ledger) => ledger,
            None => blocking(|| self.store.read_ledger())?.0,
        };
        self.journal_found = self.store.journal_path().exists();
        Ok(ledger)
    }

    fn needs_fold(&self) -> bool {
        self.journal_found
    }

    fn check(&self) -> Result<(), StateError> {
        Ok(())
    }

    async fn append(&mut self, base: &Ledger, records: &[Record]) -> Result<(), NotWritten> {
        blocking(|| self.append_lines(base, records)).map_err(NotWritten::Failed)
    }

    fn after_append(&self, ledger: &Ledger) -> Compaction {
        // A small ledger is also folded into its snapshot at once, so `state.json` itself shows
        // every intent before its request leaves (and after a crash), as a reader of the file
        // would expect. A large one keeps the journal: rewriting it per record would cost more
        // than the write budget allows.
        if ledger.records.len() <= self.store.write_through { Compaction::BestEffort } else { Compaction::Later }
    }

    fn dirty(&self) -> bool {
        self.journal.is_some()
    }

    async fn replace_snapshot(&mut self, ledger: &Ledger) -> Result<(), NotWritten> {
        blocking(|| self.write_snapshot(ledger)).map_err(NotWritten::Failed)
    }

    async fn release(&mut self) {
        self.guard = None;
    }
}

impl LocalSession {
    /// Durably appends `records` to the journal (created with its base line on first use) with
    /// one fsync: a journal line per record.
    fn append_lines(&mut self, base: &Ledger, records: &[Record]) -> Result<(), StateError> {
        let jpath = self.store.journal_path();
        let werr = |source| StateError::Write { path: jpath.clone(), source };
        if self.broken {
            return Err(werr(std::io::Error::other(
                "an earlier write to the journal failed; nothing more is recorded",
            )));
        }
        let mut lines = Vec::new();
        if self.journal.is_none() {
            let f = OpenOptions::new().create_new(true).append(true).mode(0o600).open(&jpath).map_err(werr)?;
            sync_dir(&jpath).map_err(werr)?;
            let line = JournalLine::Base {
                lineage: base.lineage.expect("a locked ledger has a lineage"),
                base_serial: base.serial,
                tenant: base.tenant.clone(),
            };
            lines.extend(line_bytes(&line));
            self.journal = Some(f);
        }
        for r in records {
            lines.extend(line_bytes(&JournalLine::Put(Box::new(r.clone()))));
        }
        let f = self.journal.as_mut().expect("opened above");
        // Its length after the last complete, synced write.
        let meta = f.metadata().map_err(werr)?;
        let before = meta.len();
        // The file this handle writes must still be the journal readers read: a line appended to
        // a journal that was removed or replaced (by a writer that reached this ledger without
        // this lock, or a removal whose answer was lost) would be an intent nobody ever sees.
        if !same_file(&meta, &jpath) {
            self.broken = true;
            return Err(werr(std::io::Error::other(
                "the journal this run writes was removed or replaced while it held the lock; nothing more is recorded",
            )));
        }
        if let Err(e) =
            f.write_all(&lines).and_then(|()| f.sync_data()).and_then(|()| fault::hit(fault::Point::JournalSync))
        {
            // Cut a partial line off so the journal stays readable, and append nothing more.
            let _ = f.set_len(before).and_then(|()| f.sync_data());
            self.broken = true;
            return Err(werr(e));
        }
        Ok(())
    }

    /// Writes `ledger` as the new snapshot (write-temp → fsync → rename → fsync folder), then
    /// drops the journal it includes.
    fn write_snapshot(&mut self, ledger: &Ledger) -> Result<(), StateError> {
        let path = self.store.path.clone();
        let werr = |source| StateError::Write { path: path.clone(), source };
        replace_file(&path, |w| write_snapshot(ledger, w)).map_err(werr)?;
        // The snapshot now holds everything the journal said; a crash before this removal leaves a
        // journal whose base serial is behind the snapshot's, which readers ignore.
        self.journal = None;
        match std::fs::remove_file(self.store.journal_path()) {
            Ok(()) => sync_dir(&path).map_err(werr),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(werr(e)),
        }
    }
}

/// Replaces the file at `path` with what `write` writes, never torn: a temporary file beside it,
/// fsynced, renamed over it, and the folder fsynced. A failed write leaves the old file.
fn replace_file(path: &Path, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new().prefix(".state-").suffix(".tmp").tempfile_in(dir)?;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o600))?;
    let mut w = BufWriter::with_capacity(1 << 16, tmp.as_file());
    write(&mut w)?;
    w.flush()?;
    drop(w);
    tmp.as_file().sync_all()?;
    let ours = tmp.as_file().metadata()?;
    if let Err(e) = tmp.persist(path).map(drop).map_err(|e| e.error).and_then(|()| fault::hit(fault::Point::Rename)) {
        // A rename whose answer was lost (an error reported after it happened, as network
        // file systems can): the file at `path` is ours exactly when it is the same inode.
        // Only then is it a success; otherwise the old snapshot stands and the journal,
        // kept, still holds every change.
        if !same_file(&ours, path) {
            return Err(e);
        }
        tracing::warn!(path = %path.display(), error = %e, "the ledger's rename reported an error, but it happened");
    }
    sync_dir(path)
}
/// A local ledger's operations run here and now: its home never waits on a runtime (its file I/O
/// blocks), so the engine's futures over it are ready when first polled.
fn now<T>(f: impl std::future::Future<Output = T>) -> T {
    futures_util::FutureExt::now_or_never(f).expect("a local ledger's operations never wait on a runtime")
}

/// The engine over a local ledger, without a runtime: for the simulator's ledger (made on first
/// use), fixtures and tests.
impl LocalStore {
    fn store(&self) -> crate::ledger::Store {
        crate::ledger::Store::from(self.clone())
    }

    /// Whether a ledger (snapshot or journal) is there.
    pub fn exists(&self) -> bool {
        self.path.exists() || self.journal_path().exists()
    }

    /// [`Store::create`](crate::ledger::Store::create), here and now.
    pub fn create(&self, timeout: Duration, tenant: &str) -> Result<bool, StateError> {
        now(self.store().create(timeout, tenant))
    }

    /// [`Store::lock`](crate::ledger::Store::lock), here and now.
    pub fn lock(&self, timeout: Duration, command: &str, tenant: Option<&str>) -> Result<LocalWriter, StateError> {
        now(self.store().lock(timeout, command, tenant)).map(LocalWriter)
    }
}

/// A locked local ledger, written here and now (see [`LocalStore::lock`]).
#[derive(Debug)]
pub struct LocalWriter(crate::ledger::Writer);

impl LocalWriter {
    pub fn ledger(&self) -> &Ledger {
        self.0.ledger()
    }

    /// Durably records a record's new content: one fsynced journal line.
    pub fn record(&mut self, record: Record) -> Result<(), StateError> {
        now(self.0.record(record))
    }

    /// Durably records several records with one fsync.
    pub fn record_all(&mut self, records: impl IntoIterator<Item = Record>) -> Result<(), StateError> {
        now(self.0.record_all(records.into_iter().collect()))
    }

    /// Folds the journal into a new snapshot and releases the lock.
    pub fn commit(self) -> Result<Ledger, StateError> {
        now(self.0.commit())
    }
}

/// Where the ledger named `given` really is: its parent folder canonicalized (through the
/// nearest existing ancestor when it does not exist yet), then the file followed when it is a
/// symlink. Relative paths are taken from the current directory, as the operating system would.
fn resolve(given: &Path) -> Result<PathBuf, StateError> {
    let bad = |why: String| StateError::Unresolvable { path: given.to_path_buf(), why };
    let io = |p: &Path, e: std::io::Error| bad(format!("`{}`: {}", p.display(), crate::diag::io_reason(&e)));
    let name = given.file_name().ok_or_else(|| bad("the path names no file".into()))?;
    let parent = given.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    // The nearest existing ancestor, canonical; the folders below it are created by the first
    // write (`init`), so they are plain folders and are appended as written.
    let mut existing = parent.to_path_buf();
    let mut missing: Vec<std::ffi::OsString> = Vec::new();
    let mut dir = loop {
        match std::fs::canonicalize(&existing) {
            Ok(dir) => break dir,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let Some(n) = existing.file_name() else {
                    return Err(bad("`..` follows a folder that does not exist".into()));
                };
                missing.push(n.to_owned());
                if !existing.pop() || existing.as_os_str().is_empty() {
                    existing = PathBuf::from(".");
                }
            }
            Err(e) => return Err(io(&existing, e)),
        }
    };
    for n in missing.iter().rev() {
        dir.push(n);
    }
    let at = dir.join(name);
    match std::fs::symlink_metadata(&at) {
        Ok(m) if m.file_type().is_symlink() => match std::fs::canonicalize(&at) {
            Ok(real) if real.is_dir() => Err(bad(format!("it is a symlink to the folder `{}`", real.display()))),
            Ok(real) => Ok(real),
            Err(e) => {
                let to = std::fs::read_link(&at).map(|t| t.display().to_string()).unwrap_or_default();
                Err(bad(format!(
                    "it is a symlink to `{to}`, which cannot be followed ({})",
                    crate::diag::io_reason(&e)
                )))
            }
        },
        Ok(_) => Ok(at),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(at),
        Err(e) => Err(io(&at, e)),
    }
}

fn parse_line(line: &[u8]) -> Option<JournalLine> {
    let line = line.strip_suffix(b"\n")?;
    let sp = line.iter().position(|&b| b == b' ')?;
    let (sum, json) = (&line[..sp], &line[sp + 1..]);
    (hex::encode(Sha256::digest(json)).as_bytes() == sum).then_some(())?;
    serde_json::from_slice(json).ok()
}

/// Creates `dir` (and missing parents) private to the user, and makes every new entry durable
/// in its parent: a crash right after the first run must not lose the folder the ledger is in.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        missing.push(d);
        cur = d.parent();
    }
    for d in missing.into_iter().rev() {
        match std::fs::DirBuilder::new().mode(0o700).create(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
        sync_dir(d)?;
    }
    Ok(())
}

fn line_bytes(line: &JournalLine) -> Vec<u8> {
    let json = serde_json::to_vec(line).expect("journal lines serialize");
    let mut out = hex::encode(Sha256::digest(&json)).into_bytes();
    out.push(b' ');
    out.extend_from_slice(&json);
    out.push(b'\n');
    out
}

fn sync_dir(file: &Path) -> std::io::Result<()> {
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()?;
    fault::hit(fault::Point::DirSync)
}

/// Whether the entry at `path` (not followed) is the file `meta` describes.
fn same_file(meta: &std::fs::Metadata, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino())
}

/// Faults injected into the write path by unit tests, after the real operation succeeded: an
/// answer lost on its way back (a rename reported failed after it happened, an fsync error).
/// Outside tests every point is a no-op.
mod fault {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Point {
        /// The snapshot's rename happened, then reported an error.
        Rename,
        /// A folder's fsync (after a rename, a removal or a journal's creation) failed.
        DirSync,
        /// The journal's fsync failed.
        JournalSync,
    }

    #[cfg(not(test))]
    #[inline]
    pub(super) fn hit(_: Point) -> std::io::Result<()> {
        Ok(())
    }

    #[cfg(test)]
    thread_local! {
        /// Armed faults: each fires at the nth (1-based) time its point is passed from now.
        static ARMED: std::cell::RefCell<Vec<(Point, u32)>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// Fails the `nth` next pass through `point` on this thread.
    #[cfg(test)]
    pub(super) fn arm(point: Point, nth: u32) {
        ARMED.with(|a| a.borrow_mut().push((point, nth)));
    }

    #[cfg(test)]
    pub(super) fn hit(point: Point) -> std::io::Result<()> {
        ARMED.with(|a| {
            let mut a = a.borrow_mut();
            let mut fire = false;
            a.retain_mut(|(p, n)| {
                if *p != point {
                    return true;
                }
                *n -= 1;
                fire |= *n == 0;
                *n > 0
            });
            if fire { Err(std::io::Error::other(format!("injected fault: {point:?}"))) } else { Ok(()) }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::ledger::Status;
    use crate::ledger::merge::check_tenant;
    use crate::ledger::snapshot::Snapshot;
    use crate::ledger::tests::record;

    fn store() -> (tempfile::TempDir, LocalStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LocalStore::new(dir.path().join(".reconcile/state.json")).journal_only();
        (dir, store)
    }

    fn lock(store: &LocalStore) -> LocalWriter {
        store.create(Duration::ZERO, "tenant-a").expect("create");
        store.lock(Duration::ZERO, "test", Some("tenant-a")).expect("lock")
    }

    #[test]
    fn missing_ledger_is_empty_to_readers_but_refused_to_writers() {
        let (_d, s) = store();
        assert_eq!(s.load().expect("load"), Ledger::empty());
        let err = s.lock(Duration::ZERO, "test", Some("tenant-a")).expect_err("refused");
        assert!(matches!(err, StateError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("reconcile init"), "{err}");
        assert!(!s.path().exists() && !s.journal_path().exists(), "nothing was created");
    }

    #[test]
    fn create_binds_the_tenant_once_and_refuses_another() {
        let (_d, s) = store();
        assert!(s.create(Duration::ZERO, "tenant-a").expect("create"));
        let l = s.load().expect("load");
        assert_eq!((l.tenant.as_deref(), l.serial, l.records.len()), (Some("tenant-a"), 0, 0));
        assert!(l.lineage.is_some());
        let bytes = std::fs::read(s.path()).expect("read");
        assert!(!s.create(Duration::ZERO, "TENANT-A").expect("no-op"), "same tenant: nothing to do");
        assert_eq!(std::fs::read(s.path()).expect("read"), bytes, "a no-op writes nothing");
        assert!(matches!(s.create(Duration::ZERO, "tenant-b"), Err(StateError::WrongTenant { .. })));
        let mode = std::fs::metadata(s.path().parent().expect("dir")).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    // A ledger from before tenants were recorded is bound by `init` (which says it changed it).
    #[test]
    fn init_binds_a_ledger_that_has_no_tenant() {
        let (_d, s) = store();
        committed_ledger(&s);
        let mut snap: Snapshot = serde_json::from_slice(&std::fs::read(s.path()).expect("read")).expect("snapshot");
        snap.tenant = None;
        snap.checksum = None;
        snap.checksum = Some(snap.digest());
        std::fs::write(s.path(), serde_json::to_vec(&snap).expect("json")).expect("write");
        assert_eq!(s.load().expect("load").tenant, None);
        assert!(s.create(Duration::ZERO, "tenant-a").expect("bind"), "bound now");
        assert_eq!(s.load().expect("load").tenant.as_deref(), Some("tenant-a"));
        assert!(!s.create(Duration::ZERO, "tenant-a").expect("no-op"));
    }

    #[test]
    fn a_writer_knows_the_ledger_it_locked_and_commits_nothing_when_nothing_changed() {
        let (_d, s) = store();
        committed_ledger(&s);
        let l = s.load().expect("load");
        use std::os::unix::fs::MetadataExt as _;
        let inode = || std::fs::metadata(s.path()).expect("meta").ino();
        let before = inode();
        let w = s.lock(Duration::ZERO, "test", Some("tenant-a")).expect("lock");
        assert_eq!((w.ledger().lineage, w.ledger().serial), (l.lineage, 1));
        assert!(l.lineage.is_some());
        w.commit().expect("commit");
        assert_eq!(inode(), before, "not rewritten");
    }

    #[test]
    fn records_survive_commit_and_serial_counts_every_write() {
        let (_d, s) = store();
        let mut w = lock(&s);
        w.record(record("m", "A", Status::Unknown)).expect("record");
        w.record(record("m", "A", Status::Accepted)).expect("record");
        w.record(record("m", "B", Status::Rejected)).expect("record");
        let committed = w.commit().expect("commit");
        let loaded = s.load().expect("load");
        assert_eq!(loaded, committed);
        assert_eq!(loaded.serial, 3);
        assert_eq!(loaded.tenant.as_deref(), Some("tenant-a"));
        assert_eq!(loaded.records.len(), 2);
        assert!(!s.journal_path().exists());
        let mode = std::fs::metadata(s.path()).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    // A crash after some intents were recorded must not lose them: readers replay the journal.
    #[test]
    fn journal_is_replayed_after_a_crash() {
        let (_d, s) = store();
        let mut w = lock(&s);
        w.record(record("m", "A", Status::Unknown)).expect("record");
        let lineage = w.ledger().lineage;
        drop(w); // no commit: like a kill -9
        let l = s.load().expect("load");
        assert_eq!(l.records.values().map(|r| r.status).collect::<Vec<_>>(), [Status::Unknown]);
        assert_eq!((l.lineage, l.serial), (lineage, 1));
        // The next writer folds it into the snapshot.
        let w = s.lock(Duration::ZERO, "test", Some("tenant-a")).expect("lock");
        assert!(!s.journal_path().exists());
        assert_eq!(w.ledger(), &l);
    }

    #[test]
    fn journal_replay_counts_every_change_and_survives_a_lost_empty_snapshot() {
        let (_d, s) = store();
        let mut w = lock(&s);
        w.record(record("m", "A", Status::Unknown)).expect("record");
        w.record(record("m", "A", Status::Accepted)).expect("record");
        drop(w);
        let l = s.load().expect("load");
        assert_eq!((l.serial, l.records.len()), (2, 1), "each journal line is one change");
        // The snapshot it extends was empty (serial 0): losing it loses nothing.
        std::fs::remove_file(s.path()).expect("rm");
        let l = s.load().expect("load");
        assert_eq!(l.records.values().map(|r| r.status).collect::<Vec<_>>(), [Status::Accepted]);
    }

    #[test]
    fn a_journal_without_its_base_line_or_with_two_is_corrupt() {
        let (_d, s) = store();
        let mut w = lock(&s);
        w.record(record("m", "A", Status::Unknown)).expect("record");
        drop(w);
        let text = std::fs::read_to_string(s.journal_path()).expect("journal");
        let (base, put) = text.split_once('\n').expect("two lines");
        std::fs::write(s.journal_path(), put).expect("no base");
        let err = s.load().expect_err("corrupt");
        assert!(err.to_string().contains("line 1: missing base line"), "{err}");
        std::fs::write(s.journal_path(), format!("{base}\n{base}\n{put}")).expect("two bases");
        let err = s.load().expect_err("corrupt");
        assert!(err.to_string().contains("line 2: second base line"), "{err}");
    }

    // A torn last line means its fsync never returned, so its request was never sent.
    #[test]
    fn torn_last_journal_line_is_ignored_but_a_bad_middle_line_is_corruption() {
        let (_d, s) = store();
        let mut w = lock(&s);
        w.record(record("m", "A", Status::Unknown)).expect("record");
        w.record(record("m", "B", Status::Unknown)).expect("record");
        drop(w);
        let full = std::fs::read(s.journal_path()).expect("journal");
        std::fs::write(s.journal_path(), &full[..full.len() - 7]).expect("tear");
        assert_eq!(s.load().expect("load").records.len(), 1);

        let mut bad = full.clone();
        let second_line = full.iter().position(|&b| b == b'\n').expect("lines") + 70;
        bad[second_line] ^= 1;
        std::fs::write(s.journal_path(), &bad).expect("flip");
        let err = s.load().expect_err("corrupt");
        assert!(matches!(&err, StateError::Corrupt { reason, .. } if reason.contains("line 2:")), "{err}");
    }

    // A crash between the snapshot's rename and the journal's removal: the journal's records are
    // all in the snapshot already, so nothing changes (and nothing counts twice).
    #[test]
    fn journal_already_folded_changes_nothing() {
        let (_d, s) = store();
        let mut w = lock(&s);
        w.record(record("m", "A", Status::Unknown)).expect("record");
        w.record(record("m", "A", Status::Accepted)).expect("record");
        let journal = std::fs::read(s.journal_path()).expect("journal");
        let l = w.commit().expect("commit");
        assert_eq!(l.records.values().map(|r| r.status).collect::<Vec<_>>(), [Status::Accepted]);
        std::fs::write(s.journal_path(), journal).expect("restore journal");
        assert_eq!(s.load().expect("load"), l);
        let w = s.lock(Duration::ZERO, "test", Some("tenant-a")).expect("lock");
        assert_eq!(w.ledger(), &l);
        assert!(!s.journal_path().exists(), "folded away");
    }

    /// A journal left by a crash, and next to it a snapshot written elsewhere with a higher
    /// serial that lacks the journal's intents (regression: those intents were dropped, and the
    /// next apply re-sent them).
    fn crash_journal_beside_foreign_snapshot(s: &LocalStore) -> (Vec<u8>, Ledger) {
        let mut w = lock(s);
        w.record(record("m", "base", Status::Done)).expect("record");
        w.commit().expect("commit");
        let before = std::fs::read(s.path()).expect("snapshot");
        // Runner 1 records two intents and dies.
        let mut w = s.lock(Duration::ZERO, "runner-1", Some("tenant-a")).expect("lock");
        w.record(record("m", "A", Status::Unknown)).expect("record");
        w.record(record("m", "B", Status::Unknown)).expect("record");
        drop(w);
        let journal = std::fs::read(s.journal_path()).expect("journal");
        // Meanwhile runner 2 worked from the old snapshot and uploaded a newer one.
        std::fs::write(s.path(), &before).expect("old snapshot");
        std::fs::remove_file(s.journal_path()).expect("rm");
        let mut w = s.lock(Duration::ZERO, "runner-2", Some("tenant-a")).expect("lock");
        for x in ["C", "D", "E"] {
            w.record(record("m", x, Status::Accepted)).expect("record");
        }
        let foreign = w.commit().expect("commit");
        std::fs::write(s.journal_path(), &journal).expect("journal back");
        (journal, foreign)
    }

    #[test]
    fn a_journal_beside_a_newer_foreign_snapshot_is_merged_not_dropped() {
        let (_d, s) = store();
        let (_, foreign) = crash_journal_beside_foreign_snapshot(&s);
        let l = s.load().expect("load");
        let statuses: BTreeMap<String, Status> =
            l.records.values().map(|r| (r.selector.value.clone(), r.status)).collect();
        assert_eq!(statuses.len(), 6, "{statuses:?}");
        assert_eq!(statuses["A"], Status::Unknown);
        assert_eq!(statuses["B"], Status::Unknown);
        assert!(l.serial > foreign.serial);
        // The next writer makes the merge durable and removes the journal.
        let w = s.lock(Duration::ZERO, "test", Some("tenant-a")).expect("lock");
        assert_eq!(w.ledger().records.len(), 6);
        drop(w);
        assert!(!s.journal_path().exists());
        assert_eq!(s.load().expect("load").records.len(), 6);
    }

    #[test]
    fn a_journal_that_diverged_from_the_snapshot_is_refused_and_nothing_is_written() {
        let (_d, s) = store();
        let (journal, _) = crash_journal_beside_foreign_snapshot(&s);
        // The snapshot's copy of A has an attempt the journal's lacks, and the other way round.
        let mut l = s.load().expect("load");
        let mut a = l.records.values().find(|r| r.selector.value == "A").expect("A").clone();
        a.attempts.push(crate::ledger::Attempt { client_request_id: Uuid::new_v4(), ..Default::default() });
        let mut j = a.clone();
        j.attempts.push(crate::ledger::Attempt { client_request_id: Uuid::new_v4(), ..Default::default() });
        a.attempts.push(crate::ledger::Attempt { client_request_id: Uuid::new_v4(), ..Default::default() });
        l.records.insert(a.key.clone(), a);
        std::fs::remove_file(s.journal_path()).expect("rm");
        let mut w = s.lock(Duration::ZERO, "test", Some("tenant-a")).expect("lock");
        w.record(l.records.values().find(|r| r.selector.value == "A").expect("A").clone()).expect("record");
        w.commit().expect("commit");
        let mut text = String::from_utf8(journal).expect("utf8");
        text.push_str(&String::from_utf8(line_bytes(&JournalLine::Put(Box::new(j)))).expect("utf8"));
        std::fs::write(s.journal_path(), &text).expect("journal");
        let snapshot = std::fs::read(s.path()).expect("snapshot");
        let err = s.lock(Duration::ZERO, "test", Some("tenant-a")).expect_err("refused");
        let msg = err.to_string();
        assert!(matches!(err, StateError::Diverged { .. }), "{msg}");
        assert!(msg.contains("state.json.journal") && msg.contains("state.json`"), "names both files: {msg}");
        assert_eq!(std::fs::read(s.path()).expect("snapshot"), snapshot);
        assert_eq!(std::fs::read_to_string(s.journal_path()).expect("journal"), text);
    }

    #[test]
    fn a_journal_of_another_ledger_or_without_its_snapshot_is_refused() {
        let (_d, s) = store();
        committed_ledger(&s);
        let mut w = s.lock(Duration::ZERO, "test", Some("tenant-a")).expect("lock");
        w.record(record("m", "B", Status::Unknown)).expect("record");
        drop(w);
        std::fs::remove_file(s.path()).expect("rm snapshot");
        let err = s.load().expect_err("refused");
        assert!(err.to_string().contains("the ledger file is missing"), "{err}");
        assert!(s.lock(Duration::ZERO, "test", Some("tenant-a")).is_err());
        // Another ledger's snapshot beside it.
        let (_d2, other) = store();
        lock(&other).commit().expect("commit");
        std::fs::copy(other.path(), s.path()).expect("copy");
        let err = s.load().expect_err("refused");
        assert!(err.to_string().contains("the journal belongs to ledger"), "{err}");
    }

    fn committed_ledger(s: &LocalStore) -> Vec<u8> {
        let mut w = lock(s);
        w.record(record("m", "A", Status::Accepted)).expect("record");
        w.commit().expect("commit");
        std::fs::read(s.path()).expect("read")
    }

    #[test]
    fn hand_edits_fail_the_checksum() {
        let (_d, s) = store();
        let text = String::from_utf8(committed_ledger(&s)).expect("utf8");
        std::fs::write(s.path(), text.replace("\"accepted\"", "\"not-executed\"")).expect("edit");
        let err = s.load().expect_err("refused");
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        assert!(s.lock(Duration::ZERO, "test", Some("tenant-a")).is_err());
    }

    #[test]
    fn newer_truncated_and_foreign_files_are_refused() {
        let (_d, s) = store();
        let bytes = committed_ledger(&s);
        let text = String::from_utf8(bytes.clone()).expect("utf8");
        std::fs::write(s.path(), text.replace("\"version\": 1", "\"version\": 2")).expect("edit");
        assert!(matches!(s.load(), Err(StateError::NewerVersion { found: 2, .. })));
        std::fs::write(s.path(), &bytes[..bytes.len() / 2]).expect("truncate");
        assert!(matches!(s.load(), Err(StateError::Corrupt { .. })));
        std::fs::write(s.path(), "[1, 2]").expect("array");
        assert!(matches!(s.load(), Err(StateError::Corrupt { .. })));
    }

    // Only a ledger that is not there reads as empty: any other read error is an error.
    #[test]
    fn an_unreadable_ledger_is_an_error_not_an_empty_ledger() {
        let (_d, s) = store();
        std::fs::create_dir_all(s.path()).expect("a folder where the ledger should be");
        assert!(matches!(s.load(), Err(StateError::Read { .. })));
        assert!(s.lock(Duration::ZERO, "test", Some("tenant-a")).is_err());
        // The same for the journal: unreadable is not absent (its intents must not be lost).
        let (_d, s) = store();
        committed_ledger(&s);
        std::fs::create_dir_all(s.journal_path()).expect("a folder where the journal should be");
        assert!(matches!(s.load(), Err(StateError::Read { .. })));
    }

    #[test]
    fn an_older_unknown_version_is_corrupt_not_newer() {
        let (_d, s) = store();
        let text = String::from_utf8(committed_ledger(&s)).expect("utf8");
        std::fs::write(s.path(), text.replace("\"version\": 1", "\"version\": 0")).expect("edit");
        let err = s.load().expect_err("refused");
        assert!(
            matches!(&err, StateError::Corrupt { reason, .. } if reason.contains("unsupported version 0")),
            "{err}"
        );
    }

    #[test]
    fn a_ledger_of_another_tenant_is_refused() {
        let (_d, s) = store();
        committed_ledger(&s);
        let err = s.lock(Duration::ZERO, "test", Some("tenant-b")).expect_err("refused");
        assert!(matches!(err, StateError::WrongTenant { .. }), "{err}");
        let l = s.load().expect("load");
        assert!(matches!(
            check_tenant(&Location::Local(s.path().to_path_buf()), &l, Some("tenant-b")),
            Err(StateError::WrongTenant { .. })
        ));
        assert!(
            check_tenant(&Location::Local(s.path().to_path_buf()), &l, Some("TENANT-A")).is_ok()
                && check_tenant(&Location::Local(s.path().to_path_buf()), &l, None).is_ok()
        );
    }

    // Two paths to one ledger (a symlink to the file, a symlinked folder) are one ledger: one
    // lock, one journal, and the rename writes the real file, leaving the link a link.
    #[test]
    fn two_paths_to_one_ledger_share_its_lock_and_journal_and_keep_the_link() {
        let (d, s) = store();
        committed_ledger(&s);
        std::fs::create_dir(d.path().join("alias")).expect("mkdir");
        let link = d.path().join("alias/state.json");
        std::os::unix::fs::symlink("../.reconcile/state.json", &link).expect("symlink");
        std::os::unix::fs::symlink(".reconcile", d.path().join("folder")).expect("symlink");
        let real = std::fs::canonicalize(s.path()).expect("canonical");
        for other in [link.clone(), d.path().join("folder/state.json")] {
            let o = LocalStore::open(&other).expect("open").journal_only();
            assert_eq!(o.path(), real, "{}", other.display());
            assert_eq!(o.given_path(), other);
            let held = lock(&s);
            let err = o.lock(Duration::ZERO, "second", Some("tenant-a")).expect_err("one lock");
            assert!(err.to_string().contains("is locked by"), "{err}");
            drop(held);
        }
        let o = LocalStore::open(&link).expect("open").journal_only();
        let mut w = o.lock(Duration::ZERO, "through the link", Some("tenant-a")).expect("lock");
        w.record(record("m", "B", Status::Unknown)).expect("record");
        assert!(s.journal_path().exists(), "the journal is the real ledger's");
        w.commit().expect("commit");
        assert!(std::fs::symlink_metadata(&link).expect("link").file_type().is_symlink(), "still a link");
        assert_eq!(s.load().expect("load").records.len(), 2);
        let names: Vec<String> = std::fs::read_dir(d.path().join("alias"))
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["state.json"], "no lock, journal or temp file beside the link");
    }

    #[test]
    fn a_ledger_in_folders_not_made_yet_resolves_and_a_dangling_link_is_refused() {
        let d = tempfile::tempdir().expect("tmp");
        let s = LocalStore::open(d.path().join("a/b/state.json")).expect("open");
        let root = std::fs::canonicalize(d.path()).expect("canonical");
        assert_eq!(s.path(), root.join("a/b/state.json"));
        assert!(s.create(Duration::ZERO, "tenant-a").expect("create"));
        assert!(root.join("a/b/state.json").is_file());
        let dangling = d.path().join("dangling.json");
        std::os::unix::fs::symlink(d.path().join("nowhere/state.json"), &dangling).expect("symlink");
        let err = LocalStore::open(&dangling).expect_err("refused");
        assert!(matches!(err, StateError::Unresolvable { .. }), "{err}");
        assert!(err.to_string().contains("nowhere/state.json"), "{err}");
        std::os::unix::fs::symlink(d.path(), d.path().join("dir.json")).expect("symlink");
        assert!(LocalStore::open(d.path().join("dir.json")).is_err(), "a link to a folder");
        assert!(!d.path().join("nowhere").exists());
    }

    // The rename happened and then reported an error (its answer was lost): the snapshot on disk
    // is the new one, so it is a success, not a reason to stop or to write anything twice.
    #[test]
    fn a_rename_that_happened_but_reported_an_error_is_a_success() {
        let (_d, s) = store();
        let s = LocalStore { write_through: WRITE_THROUGH_RECORDS, ..s };
        let mut w = lock(&s);
        fault::arm(fault::Point::Rename, 1);
        w.record(record("m", "A", Status::Unknown)).expect("the intent is durable");
        let on_disk = crate::ledger::snapshot::parse_snapshot_at(
            &Location::Local(s.path().to_path_buf()),
            &std::fs::read(s.path()).expect("read"),
        )
        .expect("parse");
        assert_eq!(on_disk.records.len(), 1, "the snapshot holds the intent");
        assert!(!s.journal_path().exists(), "folded: the rename was ours");
        w.record(record("m", "A", Status::Accepted)).expect("outcome");
        fault::arm(fault::Point::Rename, 1);
        let (_d, j) = store();
        let mut wj = lock(&j);
        wj.record(record("m", "B", Status::Unknown)).expect("record");
        let l = wj.commit().expect("a commit whose rename reported an error after it happened");
        assert_eq!(j.load().expect("load"), l);
        assert!(!j.journal_path().exists());
        assert_eq!(w.commit().expect("commit"), s.load().expect("load"));
    }

    // The folder's fsync after the rename failed: the rename may not be durable, so the journal
    // (which holds every change) is kept, and nothing recorded is lost.
    #[test]
    fn a_failed_folder_fsync_after_the_rename_keeps_the_journal() {
        let (_d, s) = store();
        let mut w = lock(&s);
        w.record(record("m", "A", Status::Unknown)).expect("record");
        w.record(record("m", "B", Status::Unknown)).expect("record");
        let expected = w.ledger().clone();
        fault::arm(fault::Point::DirSync, 1);
        assert!(w.commit().is_err(), "not durable: reported");
        assert!(s.journal_path().exists(), "the journal is kept");
        assert_eq!(s.load().expect("load"), expected);
        let w = s.lock(Duration::ZERO, "next", Some("tenant-a")).expect("the next writer folds it");
        assert_eq!(w.ledger(), &expected);
        assert!(!s.journal_path().exists());
        // The same during a write-through: the change stays in the journal and is not lost.
        let s = LocalStore { write_through: WRITE_THROUGH_RECORDS, ..s };
        drop(w);
        let mut w = s.lock(Duration::ZERO, "next", Some("tenant-a")).expect("lock");
        fault::arm(fault::Point::DirSync, 2);
        w.record(record("m", "C", Status::Unknown)).expect("the journal line is durable");
        assert!(s.journal_path().exists(), "kept while the snapshot is in doubt");
        assert_eq!(s.load().expect("load").records.len(), 3);
        w.record(record("m", "D", Status::Unknown)).expect("record after");
        let l = w.commit().expect("commit");
        assert_eq!((s.load().expect("load"), l.records.len()), (l.clone(), 4));
    }

    // The journal's fsync failed: the intent is not recorded (the caller sends nothing), the
    // partial line is cut off, nothing more is appended, and the ledger stays readable.
    #[test]
    fn a_failed_journal_fsync_records_nothing_and_stops_recording() {
        let (_d, s) = store();
        let mut w = lock(&s);
        w.record(record("m", "A", Status::Unknown)).expect("record");
        let before = w.ledger().clone();
        fault::arm(fault::Point::JournalSync, 1);
        assert!(w.record(record("m", "B", Status::Unknown)).is_err());
        assert_eq!(w.ledger(), &before, "not in memory: it was not recorded");
        assert_eq!(s.load().expect("load"), before, "not on disk either");
        assert!(w.record(record("m", "C", Status::Unknown)).is_err(), "nothing more after a failed write");
        assert_eq!(w.commit().expect("commit"), before);
        assert_eq!(s.load().expect("load"), before);
    }

    // A journal removed or replaced under a writer (its removal's answer lost, or a writer that
    // reached the ledger without this lock) must not take appends nobody will read.
    #[test]
    fn a_journal_removed_under_the_writer_takes_no_more_intents() {
        let (_d, s) = store();
        let mut w = lock(&s);
        w.record(record("m", "A", Status::Unknown)).expect("record");
        let kept = std::fs::read(s.journal_path()).expect("journal");
        std::fs::remove_file(s.journal_path()).expect("rm");
        let err = w.record(record("m", "B", Status::Unknown)).expect_err("refused");
        assert!(err.to_string().contains("failed to write ledger"), "{err}");
        std::fs::write(s.journal_path(), &kept).expect("a copy in its place");
        assert!(w.record(record("m", "B", Status::Unknown)).is_err(), "a replaced journal is not this one");
    }

    #[test]
    fn a_second_writer_is_told_who_holds_the_lock() {
        let (_d, s) = store();
        let _held = lock(&s);
        let err = s.lock(Duration::from_millis(120), "second", Some("tenant-a")).expect_err("locked");
        let msg = err.to_string();
        assert!(msg.contains(&format!("pid {}", std::process::id())), "{msg}");
        assert!(msg.contains("`test`"), "{msg}");
    }
}

//! The local ledger: a checksummed JSON snapshot plus an append-only journal.
//!
//! # Files
//! - `state.json` — the snapshot: `version`, `lineage`, `serial`, `tenant`, `records`, and a
//!   `checksum` (`sha256:` of the compact JSON of everything else). Replaced only by
//!   write-temp → fsync → rename → fsync folder, so it is never torn. Mode 0600.
//! - `state.json.journal` — one line per recorded change since the snapshot:
//!   `<sha256 hex of the JSON> <JSON>`. The first line names the snapshot it extends
//!   (`lineage`, `baseSerial`). Each line is fsynced before the next request is sent.
//! - `state.json.lock` — the writer lock (see [`super::lock`]).
//!
//! # Guarantees
//! - A change returned from [`LedgerWriter::record`] survives a crash: it is in the journal.
//! - A torn last journal line (a crash mid-write) is ignored: its fsync never completed, so the
//!   request it announced was never sent. A bad line anywhere else is corruption and refused.
//! - A journal left by a crash is replayed by every reader and folded into a new snapshot by the
//!   next writer. A journal whose changes are already in the snapshot (a crash between the rename
//!   and the journal's removal) is recognised by its base serial and ignored.
//! - A ledger that fails to parse, is of a newer version or fails its checksum is refused, and
//!   nothing ever overwrites it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::lock::{self, LockError, LockGuard};
use super::{LEDGER_VERSION, Ledger, Record};
use crate::action::{ActionKey, HashWriter};

/// Why the ledger could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("failed to read ledger `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write ledger `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("ledger `{}` is corrupt: {reason}\nhint: restore it from version control or backup; it was not modified", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("ledger `{}` has format version {found}, newer than this build reads ({LEDGER_VERSION})\nhint: upgrade intune-reconcile; the ledger was not modified", path.display())]
    NewerVersion { path: PathBuf, found: u64 },
    #[error("ledger `{}` belongs to tenant `{ledger}`, not `{current}`\nhint: point --state at the ledger of tenant `{current}`", path.display())]
    WrongTenant { path: PathBuf, ledger: String, current: String },
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// The snapshot as stored. Field order is the checksum's order: do not reorder.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Snapshot {
    version: u32,
    lineage: Uuid,
    serial: u64,
    #[serde(default)]
    tenant: Option<String>,
    records: BTreeMap<ActionKey, Record>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checksum: Option<String>,
}

impl Snapshot {
    /// `sha256:` of the compact JSON of every field but the checksum, in declaration order.
    fn digest(&self) -> String {
        let body = Body {
            version: self.version,
            lineage: &self.lineage,
            serial: self.serial,
            tenant: &self.tenant,
            records: &self.records,
        };
        let mut h = HashWriter(Sha256::new());
        serde_json::to_writer(&mut h, &body).expect("hashing into memory cannot fail");
        format!("sha256:{}", hex::encode(h.0.finalize()))
    }
}

/// [`Snapshot`] without its checksum, borrowed: what the checksum covers.
#[derive(Serialize)]
struct Body<'a> {
    version: u32,
    lineage: &'a Uuid,
    serial: u64,
    tenant: &'a Option<String>,
    records: &'a BTreeMap<ActionKey, Record>,
}

/// Only the version, read first so a newer file is refused with the right message.
#[derive(Deserialize)]
struct VersionProbe {
    version: serde_json::Value,
}

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
#[derive(Debug, Clone)]
pub struct LocalStore {
    path: PathBuf,
}

impl LocalStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LocalStore { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn journal_path(&self) -> PathBuf {
        let mut s = self.path.as_os_str().to_owned();
        s.push(".journal");
        PathBuf::from(s)
    }

    /// Reads the ledger (snapshot plus journal) without locking. A missing ledger is empty.
    pub fn load(&self) -> Result<Ledger, StateError> {
        Ok(self.load_parts()?.0)
    }

    /// The ledger, and how many journal lines were replayed into it.
    fn load_parts(&self) -> Result<(Ledger, usize), StateError> {
        let mut ledger = match std::fs::read(&self.path) {
            Ok(bytes) => self.parse_snapshot(&bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ledger::empty(),
            Err(source) => return Err(StateError::Read { path: self.path.clone(), source }),
        };
        let replayed = self.replay_journal(&mut ledger)?;
        Ok((ledger, replayed))
    }

    fn corrupt(&self, reason: impl Into<String>) -> StateError {
        StateError::Corrupt { path: self.path.clone(), reason: reason.into() }
    }

    fn parse_snapshot(&self, bytes: &[u8]) -> Result<Ledger, StateError> {
        let probe: VersionProbe =
            serde_json::from_slice(bytes).map_err(|e| self.corrupt(format!("not a ledger JSON document ({e})")))?;
        match probe.version.as_u64() {
            Some(v) if v == u64::from(LEDGER_VERSION) => {}
            Some(v) if v > u64::from(LEDGER_VERSION) => {
                return Err(StateError::NewerVersion { path: self.path.clone(), found: v });
            }
            _ => return Err(self.corrupt(format!("unsupported version {}", probe.version))),
        }
        let snap: Snapshot = serde_json::from_slice(bytes).map_err(|e| self.corrupt(e.to_string()))?;
        let want = snap.digest();
        match &snap.checksum {
            Some(c) if *c == want => {}
            Some(_) => return Err(self.corrupt("checksum mismatch (was the file edited by hand?)")),
            None => return Err(self.corrupt("checksum missing")),
        }
        if let Some((k, r)) = snap.records.iter().find(|(k, r)| **k != r.key) {
            return Err(self.corrupt(format!("record `{k}` carries key `{}`", r.key)));
        }
        Ok(Ledger { lineage: Some(snap.lineage), serial: snap.serial, tenant: snap.tenant, records: snap.records })
    }

    /// Applies the journal's changes to `ledger`; returns how many were applied.
    fn replay_journal(&self, ledger: &mut Ledger) -> Result<usize, StateError> {
        let jpath = self.journal_path();
        let text = match std::fs::read(&jpath) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(source) => return Err(StateError::Read { path: jpath, source }),
        };
        let jerr = |n: usize, why: &str| self.corrupt(format!("journal `{}` line {n}: {why}", jpath.display()));
        let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
        let mut parsed = Vec::with_capacity(lines.len());
        for (i, line) in lines.iter().enumerate() {
            let last = i + 1 == lines.len();
            match parse_line(line) {
                Some(l) => parsed.push(l),
                // A torn final line: the write never completed, so nothing was sent after it.
                None if last => break,
                None => return Err(jerr(i + 1, "checksum mismatch or unreadable")),
            }
        }
        let mut lines = parsed.into_iter();
        let Some(JournalLine::Base { lineage, base_serial, tenant }) = lines.next() else {
            return if text.is_empty() || lines.len() == 0 { Ok(0) } else { Err(jerr(1, "missing base line")) };
        };
        match ledger.lineage {
            // Already folded into the snapshot (a crash after the rename): nothing to replay.
            Some(l) if l == lineage && base_serial < ledger.serial => return Ok(0),
            Some(l) if l == lineage && base_serial == ledger.serial => {}
            None if base_serial == 0 => {}
            _ => return Err(jerr(1, "journal does not extend this snapshot (different lineage or serial)")),
        }
        ledger.lineage = Some(lineage);
        ledger.tenant = tenant;
        let mut n = 0;
        for (i, line) in lines.enumerate() {
            match line {
                JournalLine::Put(r) => {
                    ledger.records.insert(r.key.clone(), *r);
                    n += 1;
                }
                JournalLine::Base { .. } => return Err(jerr(i + 2, "second base line")),
            }
        }
        ledger.serial = base_serial + n as u64;
        Ok(n)
    }

    /// Takes the writer lock and returns a writer over the current ledger. A journal left by an
    /// earlier crash is folded into a fresh snapshot first.
    pub fn lock(&self, timeout: Duration, command: &str, tenant: Option<&str>) -> Result<LedgerWriter, StateError> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir).map_err(|source| StateError::Write { path: self.path.clone(), source })?;
        }
        let guard = lock::acquire(&self.path, timeout, &lock::me(command))?;
        let (mut ledger, replayed) = self.load_parts()?;
        check_tenant(&self.path, &ledger, tenant)?;
        let fresh = ledger.lineage.is_none();
        if fresh {
            ledger.lineage = Some(Uuid::new_v4());
        }
        if tenant.is_some() && ledger.tenant.is_none() {
            ledger.tenant = tenant.map(str::to_owned);
        }
        let mut writer = LedgerWriter {
            store: self.clone(),
            ledger,
            journal: None,
            journal_len: 0,
            broken: false,
            created: fresh,
            pending: 0,
            _guard: guard,
        };
        if fresh || replayed > 0 || self.journal_path().exists() {
            writer.write_snapshot()?;
        }
        Ok(writer)
    }

    /// Refuses a ledger bound to another tenant.
    pub fn check_tenant(&self, ledger: &Ledger, tenant: Option<&str>) -> Result<(), StateError> {
        check_tenant(&self.path, ledger, tenant)
    }
}

fn check_tenant(path: &Path, ledger: &Ledger, tenant: Option<&str>) -> Result<(), StateError> {
    match (&ledger.tenant, tenant) {
        (Some(l), Some(t)) if !l.eq_ignore_ascii_case(t) => {
            Err(StateError::WrongTenant { path: path.to_path_buf(), ledger: l.clone(), current: t.to_owned() })
        }
        _ => Ok(()),
    }
}

fn parse_line(line: &[u8]) -> Option<JournalLine> {
    let line = line.strip_suffix(b"\n")?;
    let sp = line.iter().position(|&b| b == b' ')?;
    let (sum, json) = (&line[..sp], &line[sp + 1..]);
    (hex::encode(Sha256::digest(json)).as_bytes() == sum).then_some(())?;
    serde_json::from_slice(json).ok()
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    Ok(())
}

/// Exclusive access to the ledger while the lock is held.
///
/// Expected flow: [`LocalStore::lock`] → [`record`](Self::record) before and after each request →
/// [`commit`](Self::commit) at the end. Dropping it without `commit` leaves the journal for the
/// next reader to replay: nothing recorded is lost.
#[derive(Debug)]
pub struct LedgerWriter {
    store: LocalStore,
    ledger: Ledger,
    journal: Option<File>,
    /// The journal's length after its last complete, synced write.
    journal_len: u64,
    /// A journal write failed: nothing more is appended after a possibly partial line.
    broken: bool,
    /// This lock created the ledger (there was none before).
    created: bool,
    pending: usize,
    _guard: LockGuard,
}

impl LedgerWriter {
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The ledger as it was before this lock: empty (no lineage) when the lock created it.
    pub fn ledger_before(&self) -> (Option<Uuid>, u64) {
        if self.created { (None, 0) } else { (self.ledger.lineage, self.ledger.serial) }
    }

    /// Durably records a record's new content: one fsynced journal line.
    pub fn record(&mut self, record: Record) -> Result<(), StateError> {
        self.record_all(std::iter::once(record))
    }

    /// Durably records several records with one fsync (for outcomes learned together).
    pub fn record_all(&mut self, records: impl IntoIterator<Item = Record>) -> Result<(), StateError> {
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
            let base = JournalLine::Base {
                lineage: self.ledger.lineage.expect("a locked ledger has a lineage"),
                base_serial: self.ledger.serial,
                tenant: self.ledger.tenant.clone(),
            };
            lines.extend(line_bytes(&base));
            self.journal = Some(f);
            self.journal_len = 0;
        }
        let records: Vec<Record> = records.into_iter().collect();
        for r in &records {
            lines.extend(line_bytes(&JournalLine::Put(Box::new(r.clone()))));
        }
        let f = self.journal.as_mut().expect("opened above");
        if let Err(e) = f.write_all(&lines).and_then(|()| f.sync_data()) {
            // Cut a partial line off so the journal stays readable, and append nothing more.
            let _ = f.set_len(self.journal_len).and_then(|()| f.sync_data());
            self.broken = true;
            return Err(werr(e));
        }
        self.journal_len += lines.len() as u64;
        for r in records {
            self.ledger.serial += 1;
            self.pending += 1;
            self.ledger.records.insert(r.key.clone(), r);
        }
        Ok(())
    }

    /// Folds the journal into a new snapshot and removes it.
    pub fn commit(mut self) -> Result<Ledger, StateError> {
        if self.pending > 0 || self.journal.is_some() {
            self.write_snapshot()?;
        }
        Ok(self.ledger.clone())
    }

    /// Writes the in-memory ledger as the new snapshot, then drops the journal it includes.
    fn write_snapshot(&mut self) -> Result<(), StateError> {
        let path = self.store.path.clone();
        let werr = |source| StateError::Write { path: path.clone(), source };
        let mut snap = Snapshot {
            version: LEDGER_VERSION,
            lineage: self.ledger.lineage.expect("a locked ledger has a lineage"),
            serial: self.ledger.serial,
            tenant: self.ledger.tenant.clone(),
            records: std::mem::take(&mut self.ledger.records),
            checksum: None,
        };
        snap.checksum = Some(snap.digest());
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let result = (|| {
            let tmp = tempfile::Builder::new().prefix(".state-").suffix(".tmp").tempfile_in(dir)?;
            tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o600))?;
            let mut w = BufWriter::new(tmp.as_file());
            serde_json::to_writer_pretty(&mut w, &snap)?;
            w.write_all(b"\n")?;
            w.flush()?;
            drop(w);
            tmp.as_file().sync_all()?;
            tmp.persist(&path).map_err(|e| e.error)?;
            sync_dir(&path)
        })();
        self.ledger.records = snap.records;
        result.map_err(werr)?;
        // The snapshot now holds everything the journal said; a crash before this removal leaves a
        // journal whose base serial is behind the snapshot's, which readers ignore.
        self.journal = None;
        self.pending = 0;
        match std::fs::remove_file(self.store.journal_path()) {
            Ok(()) => sync_dir(&path).map_err(werr),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(werr(e)),
        }
    }
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
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Status;
    use crate::state::tests::record;

    fn store() -> (tempfile::TempDir, LocalStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LocalStore::new(dir.path().join(".reconcile/state.json"));
        (dir, store)
    }

    fn lock(store: &LocalStore) -> LedgerWriter {
        store.lock(Duration::ZERO, "test", Some("tenant-a")).expect("lock")
    }

    #[test]
    fn missing_ledger_is_empty() {
        let (_d, s) = store();
        assert_eq!(s.load().expect("load"), Ledger::empty());
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
        let w = lock(&s);
        assert!(!s.journal_path().exists());
        assert_eq!(w.ledger(), &l);
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
        assert!(matches!(s.load(), Err(StateError::Corrupt { .. })));
    }

    // A crash between the snapshot's rename and the journal's removal must not apply it twice.
    #[test]
    fn journal_already_folded_is_ignored() {
        let (_d, s) = store();
        let mut w = lock(&s);
        w.record(record("m", "A", Status::Unknown)).expect("record");
        let journal = std::fs::read(s.journal_path()).expect("journal");
        let l = w.commit().expect("commit");
        std::fs::write(s.journal_path(), journal).expect("restore journal");
        assert_eq!(s.load().expect("load"), l);
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
        assert!(s.lock(Duration::ZERO, "test", None).is_err());
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

    #[test]
    fn a_ledger_of_another_tenant_is_refused() {
        let (_d, s) = store();
        committed_ledger(&s);
        let err = s.lock(Duration::ZERO, "test", Some("tenant-b")).expect_err("refused");
        assert!(matches!(err, StateError::WrongTenant { .. }), "{err}");
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

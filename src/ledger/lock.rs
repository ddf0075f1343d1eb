//! One writer at a time: an advisory lock on a sidecar file (`state.json.lock`), never on the
//! ledger itself (which is replaced by rename). The lock file names its holder so a second writer
//! can say who is in the way.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Who holds the ledger lock, as written into the lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockInfo {
    pub pid: u32,
    pub host: String,
    pub since: jiff::Timestamp,
    pub command: String,
    /// The lock's id (blob ledgers): what `reconcile state unlock ID` takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The CI run holding it, where known (`owner/repo run 123`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_run: Option<String>,
    /// The last renewal (blob ledgers), on the holder's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewed_at: Option<jiff::Timestamp>,
}

impl std::fmt::Display for LockInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let safe = |t: &str| crate::diag::safe::text(t).into_owned();
        write!(f, "pid {} on host {} since {} (`{}`)", self.pid, safe(&self.host), self.since, safe(&self.command))?;
        if let Some(run) = &self.ci_run {
            write!(f, ", CI run {}", safe(run))?;
        }
        if let Some(at) = self.renewed_at {
            write!(f, ", last renewed {at}")?;
        }
        if let Some(id) = &self.id {
            write!(f, "; lock ID {}", safe(id))?;
        }
        Ok(())
    }
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("ledger `{}` is locked by {}{}", ledger.display(), holder.as_ref().map_or_else(|| "another process".to_owned(), ToString::to_string), unlock_hint(holder.as_deref()))]
    Held { ledger: PathBuf, holder: Option<Box<LockInfo>> },
    #[error("cannot lock ledger `{}` through `{}`", ledger.display(), lock.display())]
    Io {
        ledger: PathBuf,
        lock: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn unlock_hint(holder: Option<&LockInfo>) -> String {
    match holder.and_then(|h| h.id.as_deref()) {
        Some(id) => format!(
            "\nhint: wait with --lock-timeout DURATION; a lock nobody renews expires after 60s. Only if that run is certainly dead: reconcile state unlock {}",
            crate::diag::safe::text(id)
        ),
        None => "\nhint: wait with --lock-timeout DURATION, or let that run finish".into(),
    }
}

/// A held lock; released when dropped (or when the process dies, however it dies).
#[derive(Debug)]
pub(super) struct LockGuard {
    file: File,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// `state.json` → `state.json.lock`.
pub(super) fn lock_path(ledger: &Path) -> PathBuf {
    let mut s = ledger.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// Takes the lock, waiting up to `timeout` (zero: fail at once) for a holder to finish.
pub(super) fn acquire(ledger: &Path, timeout: Duration, me: &LockInfo) -> Result<LockGuard, LockError> {
    let path = lock_path(ledger);
    let io = |source| LockError::Io { ledger: ledger.to_path_buf(), lock: path.clone(), source };
    // Never truncate on open: the holder's details are in there. Never follow a symlink: a lock
    // file committed as a link would have us write (and truncate) whatever it points at.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(io)?;
    if !file.metadata().map_err(io)?.is_file() {
        return Err(io(std::io::Error::other("the lock file is not a regular file")));
    }
    let deadline = Instant::now() + timeout;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50).min(deadline.saturating_duration_since(Instant::now())));
            }
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(LockError::Held {
                    ledger: ledger.to_path_buf(),
                    holder: serde_json::from_str(&text).ok().map(Box::new),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
    }
    let info = serde_json::to_string(me).expect("lock info serializes");
    file.set_len(0).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    file.write_all(info.as_bytes()).map_err(io)?;
    file.flush().map_err(io)?;
    Ok(LockGuard { file })
}

/// This process, as a lock holder.
pub(super) fn me(command: &str) -> LockInfo {
    LockInfo {
        pid: std::process::id(),
        host: crate::ci::provenance::hostname(),
        since: jiff::Timestamp::now(),
        command: command.to_owned(),
        id: None,
        ci_run: crate::ci::provenance::ci_run(&crate::env::var),
        renewed_at: None,
    }
}

//! The local ledger's lock: an advisory `flock` on a sidecar file (`state.json.lock`), never on
//! the ledger itself (which is replaced by rename). The lock file names its holder so a second
//! writer can say who is in the way; the operating system releases the lock when its holder
//! exits, however it exits.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::ledger::location::Location;
use crate::ledger::lock::{LockError, LockInfo};

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
                    ledger: Location::Local(ledger.to_path_buf()),
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

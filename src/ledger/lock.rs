//! One writer at a time: who holds a ledger, and why a lock could not be taken. Each home takes
//! its lock its own way (see `backend::Session`); what a holder says about itself is the same.

use std::path::PathBuf;

use super::location::Location;

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
    #[error("ledger `{ledger}` is locked by {}{}", holder.as_ref().map_or_else(|| "another process".to_owned(), ToString::to_string), unlock_hint(holder.as_deref()))]
    Held { ledger: Location, holder: Option<Box<LockInfo>> },
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

/// This process, as a lock holder.
pub(crate) fn me(command: &str) -> LockInfo {
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

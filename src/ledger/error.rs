//! Why a ledger could not be read or written, whichever home it lives in.
//!
//! Every error names the ledger by its [`Location`] (a path or a Blob URL, shown as given); only
//! the I/O errors of a local file name the file itself (the journal, the lock file).

use std::path::PathBuf;

use super::LEDGER_VERSION;
use super::location::Location;
use super::lock::LockError;

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
    #[error(
        "ledger `{path}` is corrupt: {reason}\nhint: restore it from version control or backup; it was not modified"
    )]
    Corrupt { path: Location, reason: String },
    #[error(
        "ledger `{path}` has format version {found}, newer than this build reads ({LEDGER_VERSION})\nhint: upgrade intune-reconcile; the ledger was not modified"
    )]
    NewerVersion { path: Location, found: u64 },
    #[error(
        "ledger `{path}` belongs to tenant `{ledger}`, not `{current}` (the tenant of this run's token, or AZURE_TENANT_ID offline); nothing was sent\nhint: point --state at the ledger of tenant `{current}`, or use the credentials of tenant `{ledger}`"
    )]
    WrongTenant { path: Location, ledger: String, current: String },
    #[error(
        "there is no ledger at `{path}`\nhint: run `reconcile init` once to create it; if it should exist (a CI download, --state, -C), find out why it is missing: planning or applying without it would re-send every reset ever made"
    )]
    Missing { path: Location },
    #[error(
        "ledger `{path}` has no tenant, and this run knows none to bind it to\nhint: run `reconcile init --tenant TENANT_ID`"
    )]
    NoTenant { path: Location },
    #[error(
        "journal `{journal}` does not fit the ledger `{path}`: {why}\nhint: the journal holds requests that may have been sent; nothing was changed. {hint}"
    )]
    Diverged { path: Location, journal: Box<Location>, why: String, hint: &'static str },
    #[error(
        "cannot {op} the ledger `{path}`: {why}\nhint: nothing more is sent while the ledger cannot be written; check the storage account, the container and the credentials (AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN or the Entra role Storage Blob Data Contributor)"
    )]
    Store { path: Location, op: &'static str, why: String },
    #[error(
        "this run no longer holds the lock of ledger `{path}`: {why}; nothing more was sent\nhint: run `reconcile refresh`, then apply again: actions in flight are `unknown` until refresh settles them"
    )]
    LockLost { path: Location, why: String },
    #[error(
        "ledger `{path}` is not locked by `{id}`\nhint: the lock ID is named in the message of the run that was refused"
    )]
    NotLocked { path: Location, id: String },
    #[error(
        "ledger `{path}` is local: its lock is released by the operating system when its holder exits, so there is nothing to unlock"
    )]
    LocalUnlock { path: Location },
    #[error(
        "refusing to overwrite ledger `{path}`: {why}; nothing was written\nhint: push or pull only to a new location, or to a copy of the same ledger that this one extends"
    )]
    ImportRefused { path: Location, why: String },
    #[error("cannot tell where the ledger `{}` really is: {why}\nhint: name the ledger file itself (or a symlink to an existing one); nothing was read or written", path.display())]
    Unresolvable { path: PathBuf, why: String },
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Find(#[from] super::FindError),
    #[error(transparent)]
    Decision(#[from] super::DecisionError),
}

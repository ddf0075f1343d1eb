//! Saved plans (`plan --out FILE`, `apply --plan FILE`, `show FILE`).
//!
//! A saved plan is bound to what it was made from: the ledger's lineage and serial (an empty
//! ledger counts: lineage `null`, serial 0, so a plan made on it cannot be applied twice), the
//! tenant, a digest of the manifests and config, and the devices it resolved. `apply --plan`
//! executes exactly that plan or refuses it as stale, saying what changed.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::action::{Action, ActionKey, ActionKind, Collection, Selector};
use crate::diagnostic::Pos;
use crate::graph::Device;
use crate::plan::{BlockKind, Change, Entry, Plan};
use crate::state::{Ledger, Record, Status};

/// `kind` of a saved plan file.
pub const KIND: &str = "intune-reconcile-plan";
/// Bumped when a saved plan stops being readable by older builds.
pub const FORMAT_VERSION: u32 = 1;

/// What the plan was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub lineage: Option<Uuid>,
    pub serial: u64,
    pub tenant: Option<String>,
    /// `sha256:` over the config and every manifest file (path and bytes).
    pub inputs: String,
}

/// A saved plan file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedPlan {
    pub format_version: u32,
    pub kind: String,
    pub tool_version: String,
    pub created_at: jiff::Timestamp,
    pub simulated: bool,
    pub offline: bool,
    pub binding: Binding,
    pub entries: Vec<SavedEntry>,
    /// Policy violations when the plan was made.
    #[serde(default)]
    pub violations: Vec<SavedViolation>,
}

/// A policy violation as saved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedViolation {
    pub file: Option<PathBuf>,
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub message: String,
    pub hint: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedEntry {
    pub change: Change,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<BlockKind>,
    pub reason: String,
    pub key: ActionKey,
    pub manifest: String,
    pub file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    pub round: u32,
    pub collection: Collection,
    pub selector: Selector,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
}

/// Why a saved plan cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SavedError {
    #[error("cannot read the saved plan `{}`: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("cannot write the saved plan `{}`: {reason}", path.display())]
    Write { path: PathBuf, reason: String },
    #[error("the saved plan `{}` is stale: {what}\nhint: run `reconcile plan --out` again and have it reviewed; nothing was sent", path.display())]
    Stale { path: PathBuf, what: String },
    #[error("the saved plan `{}` was made {why}: it cannot be applied\nhint: make it with `reconcile plan --out` {hint}", path.display())]
    Unusable { path: PathBuf, why: &'static str, hint: &'static str },
}

/// `sha256:` over the config and manifest files, path and bytes each (sorted by path).
pub fn inputs_digest(config: Option<&Path>, manifests: &[PathBuf]) -> std::io::Result<String> {
    let mut files: Vec<&Path> = config.into_iter().chain(manifests.iter().map(PathBuf::as_path)).collect();
    files.sort();
    let mut h = Sha256::new();
    for f in files {
        let bytes = std::fs::read(f)?;
        h.update(f.to_string_lossy().as_bytes());
        h.update([0]);
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

impl Binding {
    pub fn of(ledger: &Ledger, tenant: Option<&str>, inputs: String) -> Self {
        Binding { lineage: ledger.lineage, serial: ledger.serial, tenant: tenant.map(str::to_owned), inputs }
    }

    /// What differs from `now`, in words, or `None` when nothing does.
    pub fn changes_since(&self, now: &Binding) -> Option<String> {
        let mut what = Vec::new();
        if self.lineage != now.lineage || self.serial != now.serial {
            what.push(format!(
                "the ledger changed since the plan was made (serial {} then, {} now{})",
                self.serial,
                now.serial,
                if self.lineage != now.lineage { ", another lineage" } else { "" }
            ));
        }
        if self.tenant != now.tenant {
            what.push(format!(
                "the tenant differs (`{}` then, `{}` now)",
                self.tenant.as_deref().unwrap_or("none"),
                now.tenant.as_deref().unwrap_or("none")
            ));
        }
        if self.inputs != now.inputs {
            what.push("the manifests or the config changed".to_owned());
        }
        (!what.is_empty()).then(|| what.join("; "))
    }
}

impl SavedPlan {
    pub fn new(plan: &Plan<'_>, binding: Binding, simulated: bool, offline: bool) -> Self {
        let entries = plan
            .entries
            .iter()
            .map(|e| {
                let crate::plan::Origin { file, line, round, collection } = e.origin();
                SavedEntry {
                    change: e.change,
                    block: e.block,
                    reason: e.reason.to_string(),
                    key: e.key().clone(),
                    manifest: e.manifest().to_owned(),
                    file,
                    line,
                    round,
                    collection,
                    selector: e.selector().clone(),
                    status: e.record.map(|r| r.status),
                    device: e.device.cloned(),
                }
            })
            .collect();
        SavedPlan {
            format_version: FORMAT_VERSION,
            kind: KIND.to_owned(),
            tool_version: env!("CARGO_PKG_VERSION").to_owned(),
            created_at: jiff::Timestamp::now(),
            simulated,
            offline,
            binding,
            entries,
            violations: plan
                .violations
                .iter()
                .map(|v| SavedViolation {
                    file: v.file.clone(),
                    line: v.pos.map(|p| p.line),
                    column: v.pos.map(|p| p.column),
                    message: v.message.clone(),
                    hint: v.hint.clone(),
                })
                .collect(),
        }
    }

    pub fn read(path: &Path) -> Result<Self, SavedError> {
        let err = |reason: String| SavedError::Read { path: path.to_path_buf(), reason };
        let bytes = std::fs::read(path).map_err(|e| err(crate::manifest::source::io_reason(&e)))?;
        let plan: SavedPlan = serde_json::from_slice(&bytes).map_err(|e| err(format!("not a saved plan ({e})")))?;
        if plan.kind != KIND {
            return Err(err(format!("not a saved plan (kind `{}`)", plan.kind)));
        }
        if plan.format_version > FORMAT_VERSION {
            return Err(err(format!(
                "format version {} is newer than this build reads ({FORMAT_VERSION})",
                plan.format_version
            )));
        }
        Ok(plan)
    }

    /// Writes the plan atomically (temp file, rename).
    pub fn write(&self, path: &Path) -> Result<(), SavedError> {
        let err = |reason: String| SavedError::Write { path: path.to_path_buf(), reason };
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new().prefix(".plan-").tempfile_in(dir).map_err(|e| err(e.to_string()))?;
        serde_json::to_writer_pretty(&mut tmp, self).map_err(|e| err(e.to_string()))?;
        std::io::Write::write_all(&mut tmp, b"\n").map_err(|e| err(e.to_string()))?;
        tmp.as_file().sync_all().map_err(|e| err(e.to_string()))?;
        tmp.persist(path).map_err(|e| err(e.error.to_string()))?;
        Ok(())
    }

    /// `(action key, device id)` of every reset, and the keys of every blocked action, sorted:
    /// what `apply --plan` must find again to execute this plan.
    pub fn commitments(&self) -> (Vec<(ActionKey, String)>, Vec<ActionKey>) {
        let mut resets: Vec<(ActionKey, String)> = self
            .entries
            .iter()
            .filter(|e| e.change == Change::Reset)
            .map(|e| (e.key.clone(), e.device.as_ref().map(|d| d.id.to_ascii_lowercase()).unwrap_or_default()))
            .collect();
        let mut blocked: Vec<ActionKey> =
            self.entries.iter().filter(|e| e.change == Change::Blocked).map(|e| e.key.clone()).collect();
        resets.sort();
        blocked.sort();
        (resets, blocked)
    }
}

/// The same commitments, of a fresh plan.
pub fn commitments_of(plan: &Plan<'_>) -> (Vec<(ActionKey, String)>, Vec<ActionKey>) {
    let mut resets: Vec<(ActionKey, String)> = plan
        .entries
        .iter()
        .filter(|e| e.change == Change::Reset)
        .map(|e| (e.key().clone(), e.device.map(|d| d.id.to_ascii_lowercase()).unwrap_or_default()))
        .collect();
    let mut blocked: Vec<ActionKey> =
        plan.entries.iter().filter(|e| e.change == Change::Blocked).map(|e| e.key().clone()).collect();
    resets.sort();
    blocked.sort();
    (resets, blocked)
}

/// The owned pieces a saved plan's entries borrow, so it can be rendered like a fresh one.
#[derive(Debug)]
pub struct Restored {
    actions: Vec<Option<Action>>,
    records: Vec<Option<Record>>,
    saved: SavedPlan,
}

impl Restored {
    pub fn new(saved: SavedPlan) -> Self {
        let mut actions = Vec::new();
        let mut records = Vec::new();
        for e in &saved.entries {
            let action = (e.change != Change::Orphaned).then(|| Action {
                key: e.key.clone(),
                kind: ActionKind::PasscodeReset,
                manifest: e.manifest.clone(),
                file: PathBuf::from(&e.file),
                pos: Pos::new(e.line.unwrap_or(1), 1),
                round: e.round,
                collection: e.collection,
                selector: e.selector.clone(),
            });
            let record = e.status.map(|status| Record {
                key: e.key.clone(),
                kind: ActionKind::PasscodeReset,
                manifest: e.manifest.clone(),
                file: e.file.clone(),
                round: e.round,
                collection: e.collection,
                selector: e.selector.clone(),
                managed_device_id: e.device.as_ref().map(|d| d.id.clone()),
                status,
                attempts: Vec::new(),
                created_at: saved.created_at,
                updated_at: saved.created_at,
            });
            actions.push(action);
            records.push(record);
        }
        Restored { actions, records, saved }
    }

    pub fn plan(&self) -> Plan<'_> {
        let entries = self
            .saved
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| Entry {
                change: e.change,
                action: self.actions[i].as_ref(),
                record: self.records[i].as_ref(),
                device: e.device.as_ref(),
                block: e.block,
                reason: Cow::Owned(e.reason.clone()),
            })
            .collect();
        let violations = self
            .saved
            .violations
            .iter()
            .map(|v| crate::diagnostic::Diagnostic {
                severity: crate::diagnostic::Severity::Error,
                file: v.file.clone(),
                pos: match (v.line, v.column) {
                    (Some(l), Some(c)) => Some(Pos::new(l, c)),
                    _ => None,
                },
                message: v.message.clone(),
                hint: v.hint.clone(),
            })
            .collect();
        Plan::from_entries(entries).with_violations(violations)
    }
}

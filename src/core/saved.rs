//! Saved plans (`plan --out FILE`, `apply --plan FILE`, `show FILE`).
//!
//! A saved plan is what a reviewer approved: each reset with the device it resolved to and the
//! other resets of that device the ledger held then. `apply --plan` judges every reviewed reset
//! on its own ([`judge`]): it is sent only while its premise holds — its key is still asked for
//! by the manifests, it resolves to the same device, it is still not recorded, its manifest still
//! meets the policy, and no other action has reset the device since — and refused alone, named
//! with the reason, otherwise. Nothing that is not in the plan is ever sent; other merges
//! (unrelated ledger or manifest changes) do not make a plan stale. Only another ledger lineage or
//! another tenant refuses the whole plan.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::core::action::{Action, ActionKey, ActionKind, Collection, Parameters, Selector};
use crate::core::device::Device;
use crate::core::plan::{BlockKind, Change, Entry, Plan, Violation};
use crate::diag::Pos;
use crate::ledger::{Ledger, Record, SentIndex, Status};
use crate::manifest::ManifestInfo;

use std::collections::{BTreeMap, HashMap, HashSet};

/// `kind` of a saved plan file.
pub(crate) const KIND: &str = "intune-reconcile-plan";
/// Bumped when a saved plan stops being readable by older builds. 2: the vocabulary of plan
/// JSON (docs/contract.md, JSON): `actions`, selectors as `{"type", "value"}`, devices, manifests
/// and summaries in snake_case. Format 1 is still read.
pub(crate) const FORMAT_VERSION: u32 = 2;

/// What the plan was made from. The lineage and the tenant must match when it is applied; the
/// serial is kept for the record (other merges change it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Binding {
    pub lineage: Option<Uuid>,
    pub serial: u64,
    pub tenant: Option<String>,
}

/// A saved plan file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SavedPlan {
    pub format_version: u32,
    pub kind: String,
    pub tool_version: String,
    /// Recorded with every attempt made by `apply --plan` of this plan, so a second apply of the
    /// same plan recognises its own work.
    #[serde(default)]
    pub id: Uuid,
    pub created_at: jiff::Timestamp,
    pub simulated: bool,
    pub offline: bool,
    pub binding: Binding,
    /// The commit the plan was made at (a commit id), for its reviewer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(rename = "actions", alias = "entries")]
    pub entries: Vec<SavedEntry>,
    /// Policy violations when the plan was made.
    #[serde(default)]
    pub violations: Vec<SavedViolation>,
    /// Ticket, reason and requester of each manifest, as reviewed.
    #[serde(default, with = "json::manifests")]
    pub manifests: BTreeMap<String, ManifestInfo>,
    /// `plan --base`: the counts of what lay outside the change.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "json::summary")]
    pub outside: Option<crate::core::plan::Summary>,
    /// The policy the plan was judged under: its digest, the base revision and what the change
    /// did to the policy. `apply --plan` judges the change against the same base.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<crate::core::violation::PolicyChange>,
}

/// A policy violation as saved.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "json::AnyViolation")]
pub(crate) struct SavedViolation {
    /// The manifest it stops; `None`: a rule of the repository.
    #[serde(default)]
    pub manifest: Option<String>,
    /// The rule's code.
    pub rule: crate::core::violation::Rule,
    pub file: Option<PathBuf>,
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub message: String,
    pub hint: Option<String>,
}

/// The rule a violation's message names (`policy cooldown: …`): only for plans saved before
/// violations carried their rule, the one place a code is read from text.
pub(crate) fn legacy_rule(message: &str) -> Option<crate::core::violation::Rule> {
    crate::core::violation::Rule::from_code(message.strip_prefix("policy ")?.split(':').next()?)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SavedEntry {
    pub change: Change,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<BlockKind>,
    pub reason: String,
    pub key: ActionKey,
    /// The kind of action; left out for a reset (saved plans made when it was the only one).
    #[serde(default, skip_serializing_if = "is_reset")]
    pub kind: ActionKind,
    #[serde(default, skip_serializing_if = "Parameters::is_empty")]
    pub parameters: Parameters,
    pub manifest: String,
    pub file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    pub round: u32,
    pub collection: Collection,
    #[serde(with = "json::selector")]
    pub selector: Selector,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "json::device")]
    pub device: Option<Device>,
    /// The former manifest name its record was made under (`formerNames`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_as: Option<String>,
    /// For a reset: the other actions the ledger held for its device when the plan was made. One
    /// recorded since means someone else reset the device after the review.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[serde(rename = "prior_resets")]
    pub prior_sends: Vec<ActionKey>,
    /// The device's reset made outside this tool, as the reviewer saw it (`policy.outOfBand`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_of_band: Option<crate::core::out_of_band::OutOfBand>,
}

fn is_reset(kind: &ActionKind) -> bool {
    *kind == ActionKind::PasscodeReset
}

/// The saved plan's fields in the vocabulary of plan JSON, reading format 1's names too.
mod json {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) mod selector {
        use super::*;
        use crate::core::action::{Selector, SelectorJson};

        pub(crate) fn serialize<S: Serializer>(s: &Selector, ser: S) -> Result<S::Ok, S::Error> {
            SelectorJson::from(s).serialize(ser)
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Selector, D::Error> {
            SelectorJson::deserialize(d).map(Into::into)
        }
    }

    pub(super) mod manifests {
        use super::*;
        use crate::manifest::{ManifestInfo, ManifestJson};
        use std::collections::BTreeMap;

        pub(crate) fn serialize<S: Serializer>(m: &BTreeMap<String, ManifestInfo>, ser: S) -> Result<S::Ok, S::Error> {
            let json: BTreeMap<&str, ManifestJson> = m.iter().map(|(k, v)| (k.as_str(), v.into())).collect();
            json.serialize(ser)
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, ManifestInfo>, D::Error> {
            let json = BTreeMap::<String, ManifestJson>::deserialize(d)?;
            Ok(json.into_iter().map(|(k, v)| (k, v.into())).collect())
        }
    }

    /// A saved violation, its rule absent in plans saved before violations carried one: then
    /// the rule its message names ([`super::legacy_rule`]), and a violation naming none is not
    /// read (it would be shown under a made-up rule).
    #[derive(Deserialize)]
    pub(super) struct AnyViolation {
        #[serde(default)]
        manifest: Option<String>,
        #[serde(default)]
        rule: Option<crate::core::violation::Rule>,
        file: Option<std::path::PathBuf>,
        line: Option<u32>,
        column: Option<u32>,
        message: String,
        hint: Option<String>,
    }

    impl TryFrom<AnyViolation> for super::SavedViolation {
        type Error = String;

        fn try_from(v: AnyViolation) -> Result<Self, String> {
            let rule = v.rule.or_else(|| super::legacy_rule(&v.message));
            let rule = rule.ok_or_else(|| format!("the violation `{}` has no rule", v.message.escape_debug()))?;
            let AnyViolation { manifest, file, line, column, message, hint, .. } = v;
            Ok(super::SavedViolation { manifest, rule, file, line, column, message, hint })
        }
    }

    pub(super) mod summary {
        use super::*;
        use crate::core::plan::{Summary, SummaryJson};

        pub(crate) fn serialize<S: Serializer>(s: &Option<Summary>, ser: S) -> Result<S::Ok, S::Error> {
            s.map(SummaryJson::from).serialize(ser)
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Summary>, D::Error> {
            Ok(Option::<SummaryJson>::deserialize(d)?.map(Into::into))
        }
    }

    /// A device as a saved plan keeps it: what plans show (the same names as a plan's JSON
    /// `device`) and what `apply --plan` and the renderers need to judge it again (serial
    /// number, IMEI, enrollment type, management state). Format 1 wrote Graph's names.
    #[derive(Serialize, Deserialize)]
    struct SavedDevice {
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none", alias = "deviceName")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none", alias = "serialNumber")]
        serial_number: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        imei: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none", alias = "operatingSystem")]
        operating_system: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none", alias = "osVersion")]
        os_version: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none", alias = "managedDeviceOwnerType")]
        owner_type: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none", alias = "deviceEnrollmentType")]
        enrollment_type: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none", alias = "managementState")]
        management_state: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        supervised: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none", alias = "lastSyncDateTime")]
        last_sync: Option<String>,
        /// Only in a plan made to show it (`plan.showUser`): `null` for a device without one, as
        /// in a plan's JSON.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            alias = "userPrincipalName",
            deserialize_with = "present"
        )]
        user_principal_name: Option<Option<String>>,
    }

    /// A field that is there, `null` or not: absent is `None` (by `default`).
    fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }

    pub(super) mod device {
        use super::*;
        use crate::core::device::Device;

        pub(crate) fn serialize<S: Serializer>(d: &Option<Device>, ser: S) -> Result<S::Ok, S::Error> {
            d.as_ref()
                .map(|d| SavedDevice {
                    id: d.id.clone(),
                    name: d.device_name.clone(),
                    serial_number: d.serial_number.clone(),
                    imei: d.imei.clone(),
                    operating_system: d.operating_system.clone(),
                    os_version: d.os_version.clone(),
                    owner_type: d.managed_device_owner_type.clone(),
                    enrollment_type: d.device_enrollment_type.clone(),
                    management_state: d.management_state.clone(),
                    supervised: d.is_supervised,
                    last_sync: d.last_sync_date_time.clone(),
                    user_principal_name: d
                        .user_principal_name
                        .as_ref()
                        .map(|u| Some(u.clone()).filter(|u| !u.trim().is_empty())),
                })
                .serialize(ser)
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Device>, D::Error> {
            Ok(Option::<SavedDevice>::deserialize(d)?.map(|d| Device {
                id: d.id,
                device_name: d.name,
                serial_number: d.serial_number,
                imei: d.imei,
                operating_system: d.operating_system,
                os_version: d.os_version,
                managed_device_owner_type: d.owner_type,
                device_enrollment_type: d.enrollment_type,
                management_state: d.management_state,
                is_supervised: d.supervised,
                last_sync_date_time: d.last_sync,
                user_principal_name: d.user_principal_name.map(Option::unwrap_or_default),
                device_action_results: Vec::new(),
            }))
        }
    }
}

/// Why a saved plan cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SavedError {
    #[error("cannot read the saved plan `{}`: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("cannot write the saved plan `{}`: {reason}", path.display())]
    Write { path: PathBuf, reason: String },
    #[error("the saved plan `{}` cannot be applied here: {what}\nhint: run `reconcile plan --out` against this ledger and have it reviewed; nothing was sent", path.display())]
    Stale { path: PathBuf, what: String },
    #[error("the saved plan `{}` is too old to apply: {why}\nhint: run `reconcile plan --out` again and have it reviewed; nothing was sent", path.display())]
    TooOld { path: PathBuf, why: String },
    #[error("the saved plan `{}` was made {why}: it cannot be applied\nhint: make it with `reconcile plan --out` {hint}", path.display())]
    Unusable { path: PathBuf, why: &'static str, hint: &'static str },
}

impl Binding {
    pub(crate) fn of(ledger: &Ledger, tenant: Option<&str>) -> Self {
        Binding { lineage: ledger.lineage, serial: ledger.serial, tenant: tenant.map(str::to_owned) }
    }

    /// Why a plan made on `self` cannot be applied to `now` at all (another ledger or tenant),
    /// or `None`. Other changes are judged action by action ([`judge`]).
    pub(crate) fn changes_since(&self, now: &Binding) -> Option<String> {
        let mut what = Vec::new();
        if self.lineage != now.lineage {
            what.push(format!(
                "it was made on another ledger (lineage {} then, {} now)",
                self.lineage.map_or_else(|| "none".to_owned(), |l| l.to_string()),
                now.lineage.map_or_else(|| "none".to_owned(), |l| l.to_string())
            ));
        }
        if self.tenant != now.tenant {
            what.push(format!(
                "the tenant differs (`{}` then, `{}` now)",
                self.tenant.as_deref().unwrap_or("none"),
                now.tenant.as_deref().unwrap_or("none")
            ));
        }
        (!what.is_empty()).then(|| what.join("; "))
    }
}

impl SavedPlan {
    /// `plan`, made against `ledger` at `created_at`, as saved for review.
    pub(crate) fn new(
        plan: &Plan<'_>,
        ledger: &Ledger,
        binding: Binding,
        commit: Option<String>,
        (simulated, offline): (bool, bool),
        created_at: jiff::Timestamp,
    ) -> Self {
        let resets = SentIndex::new(ledger.records.values());
        let entries = plan
            .entries
            .iter()
            .map(|e| {
                let crate::core::plan::Origin { file, line, round, collection } = e.origin();
                let prior_sends = match (e.change, e.device, e.action) {
                    (Change::Send, Some(d), Some(a)) => {
                        let mut keys: Vec<ActionKey> = resets
                            .on_device(&d.id)
                            .filter(|r| r.key != a.key && !a.former_keys.contains(&r.key))
                            .map(|r| r.key.clone())
                            .collect();
                        keys.sort();
                        keys
                    }
                    _ => Vec::new(),
                };
                SavedEntry {
                    change: e.change,
                    block: e.block,
                    reason: e.reason.to_string(),
                    key: e.key().clone(),
                    kind: e.kind(),
                    parameters: e.parameters().clone(),
                    manifest: e.manifest().to_owned(),
                    file,
                    line,
                    round,
                    collection,
                    selector: e.selector().clone(),
                    status: e.record.map(|r| r.status),
                    device: e.device.cloned(),
                    recorded_as: e.recorded_as().map(str::to_owned),
                    prior_sends,
                    out_of_band: e.out_of_band.clone(),
                }
            })
            .collect();
        SavedPlan {
            format_version: FORMAT_VERSION,
            kind: KIND.to_owned(),
            tool_version: env!("CARGO_PKG_VERSION").to_owned(),
            id: Uuid::new_v4(),
            created_at,
            simulated,
            offline,
            binding,
            commit: commit.filter(|c| crate::ci::provenance::is_commit_id(c)),
            entries,
            violations: plan
                .violations
                .iter()
                .map(|sv| (sv.manifest.clone(), sv.rule, &sv.diagnostic))
                .map(|(manifest, rule, v)| SavedViolation {
                    manifest,
                    rule,
                    file: v.file.clone(),
                    line: v.pos.map(|p| p.line),
                    column: v.pos.map(|p| p.column),
                    message: v.message.clone(),
                    hint: v.hint.clone(),
                })
                .collect(),
            manifests: plan.manifests.clone(),
            outside: plan.outside,
            policy: plan.policy_change.clone(),
        }
    }

    pub(crate) fn read(path: &Path) -> Result<Self, SavedError> {
        let err = |reason: String| SavedError::Read { path: path.to_path_buf(), reason };
        let bytes = std::fs::read(path).map_err(|e| err(crate::diag::io_reason(&e)))?;
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
    pub(crate) fn write(&self, path: &Path) -> Result<(), SavedError> {
        let err = |reason: String| SavedError::Write { path: path.to_path_buf(), reason };
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new().prefix(".plan-").tempfile_in(dir).map_err(|e| err(e.to_string()))?;
        crate::diag::safe::write_json(&mut tmp, self).map_err(|e| err(e.to_string()))?;
        std::io::Write::write_all(&mut tmp, b"\n").map_err(|e| err(e.to_string()))?;
        tmp.as_file().sync_all().map_err(|e| err(e.to_string()))?;
        tmp.persist(path).map_err(|e| err(e.error.to_string()))?;
        Ok(())
    }

    /// The keys of what the reviewer approved: resets to send (all `apply --plan` may ever send)
    /// and resets made outside the tool to adopt.
    pub(crate) fn reviewed_keys(&self) -> HashSet<&ActionKey> {
        self.entries.iter().filter(|e| reviewed(e.change)).map(|e| &e.key).collect()
    }
}

/// Whether a saved entry was approved for `apply --plan` to act on.
fn reviewed(change: Change) -> bool {
    matches!(change, Change::Send | Change::Adopt)
}

/// The owned pieces a saved plan's entries borrow, so it can be rendered like a fresh one.
#[derive(Debug)]
pub(crate) struct Restored {
    actions: Vec<Option<Action>>,
    records: Vec<Option<Record>>,
    saved: SavedPlan,
}

impl Restored {
    pub(crate) fn new(saved: SavedPlan) -> Self {
        let mut actions = Vec::new();
        let mut records = Vec::new();
        for e in &saved.entries {
            let action = (e.change != Change::Orphaned).then(|| Action {
                key: e.key.clone(),
                former_names: Vec::new(),
                former_keys: Vec::new(),
                kind: e.kind,
                parameters: e.parameters.clone(),
                manifest: e.manifest.clone(),
                file: PathBuf::from(&e.file),
                pos: Pos::new(e.line.unwrap_or(1), 1),
                round: e.round,
                collection: e.collection,
                selector: e.selector.clone(),
            });
            let record = e.status.map(|status| Record {
                key: e.key.clone(),
                kind: e.kind,
                parameters: e.parameters.clone(),
                manifest: e.manifest.clone(),
                file: e.file.clone(),
                round: e.round,
                collection: e.collection,
                selector: e.selector.clone(),
                managed_device_id: e.device.as_ref().map(|d| d.id.clone()),
                device_name: e.device.as_ref().and_then(|d| d.device_name.clone()),
                status,
                attempts: Vec::new(),
                adopted: None,
                archived: None,
                created_at: saved.created_at,
                updated_at: saved.created_at,
            });
            actions.push(action);
            records.push(record);
        }
        Restored { actions, records, saved }
    }

    pub(crate) fn plan(&self) -> Plan<'_> {
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
                out_of_band: e.out_of_band.clone(),
            })
            .collect();
        let violations = self
            .saved
            .violations
            .iter()
            .map(|v| {
                let pos = match (v.line, v.column) {
                    (Some(l), Some(c)) => Some(Pos::new(l, c)),
                    _ => None,
                };
                let mut diagnostic = crate::diag::Diagnostic::plain_error(v.message.clone());
                diagnostic.file.clone_from(&v.file);
                diagnostic.pos = pos;
                diagnostic.hint.clone_from(&v.hint);
                Violation::new(v.manifest.clone(), v.rule, diagnostic)
            })
            .collect::<Vec<_>>();
        // The entries were saved as they were decided: only the counts are taken again.
        let mut plan = Plan::from_entries(entries).with_manifests(self.saved.manifests.clone());
        plan.summary.violations = violations.len();
        plan.violations = violations;
        plan.outside = self.saved.outside;
        plan.policy_change = self.saved.policy.clone();
        plan
    }

    /// The reviewer's context of the saved plan: its tenant and commit, and the CI run `env`
    /// names (the one showing it).
    pub(crate) fn context(&self, env: &dyn Fn(&str) -> Option<String>) -> crate::ci::provenance::ReviewContext {
        crate::ci::provenance::ReviewContext::new(
            env,
            self.saved.binding.tenant.as_deref(),
            self.saved.commit.as_deref(),
        )
    }

    /// The action a saved entry was about, as saved (`None` for orphans).
    fn action(&self, i: usize) -> Option<&Action> {
        self.actions[i].as_ref()
    }
}

/// `apply --plan`: the reviewed resets of `restored`, each kept as `fresh` plans it while its
/// premise holds, and otherwise blocked ([`BlockKind::PlanChanged`]) with the reason. `fresh`
/// is planned from the same ledger, for the plan's own actions only. Resets this very plan sent
/// in an earlier run (its id is on their attempts) are shown as done, not refused. The rest of
/// `fresh` (actions outside the plan) is dropped: it is never sent. `now` dates what the plan
/// did not see.
pub(crate) fn judge<'a>(restored: &'a Restored, fresh: Plan<'a>, ledger: &Ledger, now: jiff::Timestamp) -> Plan<'a> {
    let saved = &restored.saved;
    let resets = SentIndex::new(ledger.records.values());
    let plan_id = saved.id.to_string();
    let Plan { entries: fresh_entries, violations, manifests, .. } = fresh;
    let mut fresh_by_key: HashMap<ActionKey, Entry<'a>> =
        fresh_entries.into_iter().map(|e| (e.key().clone(), e)).collect();
    let mut entries = Vec::new();
    for (i, s) in saved.entries.iter().enumerate().filter(|(_, s)| reviewed(s.change)) {
        let refuse = |e: Option<Entry<'a>>, why: String| Entry {
            change: Change::Blocked,
            action: e.as_ref().and_then(|e| e.action).or(restored.action(i)),
            record: e.as_ref().and_then(|e| e.record),
            device: e.as_ref().and_then(|e| e.device).or(s.device.as_ref()),
            block: Some(BlockKind::PlanChanged),
            reason: format!("reviewed, but {why}; not sent").into(),
            out_of_band: e.as_ref().and_then(|e| e.out_of_band.clone()),
        };
        let Some(e) = fresh_by_key.remove(&s.key) else {
            entries.push(refuse(
                None,
                "the manifests no longer ask for it (the manifest, its round or this device entry changed)".into(),
            ));
            continue;
        };
        let why = premise_broken(s, &e, &resets, &plan_id, now);
        match why {
            Some(why) => entries.push(refuse(Some(e), why)),
            None => entries.push(e),
        }
    }
    let keys: HashSet<&str> = entries.iter().map(|e| e.manifest()).collect();
    let violations: Vec<Violation> =
        violations.into_iter().filter(|v| v.manifest.as_deref().is_none_or(|m| keys.contains(m))).collect();
    let mut plan = Plan::from_entries(entries).with_manifests(manifests);
    plan.summary.violations = violations.len();
    plan.violations = violations;
    plan
}

/// Why the premise a reviewer saw for saved entry `s` no longer holds, given the fresh entry `e`:
/// `None` when it still holds (or this very plan made the change, in a run cut short).
fn premise_broken(
    s: &SavedEntry,
    e: &Entry<'_>,
    resets: &SentIndex<'_>,
    plan_id: &str,
    now: jiff::Timestamp,
) -> Option<String> {
    let by_this_plan = |r: &Record| {
        let adopted = r.adopted.as_ref().and_then(|a| a.provenance.as_ref());
        r.attempts
            .iter()
            .filter_map(|a| a.provenance.as_deref())
            .chain(adopted)
            .any(|p| p.plan.as_deref() == Some(plan_id))
    };
    let then = s.device.as_ref().map(|d| d.id.to_ascii_lowercase());
    let at = e.device.map(|d| d.id.to_ascii_lowercase());
    let moved = || {
        format!(
            "{} now resolves to device {} (it was {} when reviewed)",
            s.selector,
            at.as_deref().unwrap_or("none"),
            then.as_deref().unwrap_or("none")
        )
    };
    match e.change {
        // Adopting what the reviewer saw adopted; a reset the reviewer saw sent is refused
        // once Intune shows the device reset outside the tool since, and the other way round.
        Change::Adopt if s.change == Change::Adopt => (then != at).then(moved),
        Change::Adopt => Some(format!(
            "the device was {} since the plan was made",
            e.out_of_band.as_ref().map_or_else(
                || format!("{} outside reconcile", e.kind().spec().wording.short),
                |o| o.describe(now, e.kind().spec().wording.short)
            )
        )),
        Change::Send if s.change == Change::Adopt => {
            Some("Intune no longer shows the reset made outside reconcile that the plan adopts".into())
        }
        Change::Send => {
            if then != at {
                Some(moved())
            } else {
                let a = e.action.expect("a planned reset has an action");
                // Another action's reset of the device that the reviewer did not see; one
                // this very plan sent (a run cut short, applied again) was seen.
                let since = at.iter().flat_map(|id| resets.on_device(id)).find(|r| {
                    r.key != a.key
                        && !a.former_keys.contains(&r.key)
                        && !s.prior_sends.contains(&r.key)
                        && !by_this_plan(r)
                });
                since.map(|r| {
                    format!(
                        "the device was reset since the plan was made, by manifest `{}` ({} at {})",
                        r.manifest,
                        r.status,
                        r.last_sent().map(crate::duration::at_second).unwrap_or_default()
                    )
                })
            }
        }
        Change::AlreadyDone | Change::Attention if e.record.is_some_and(by_this_plan) => None,
        Change::AlreadyDone | Change::Attention => Some(format!(
            "it was recorded since the plan was made (status {})",
            e.record.map_or("unknown", |r| r.status.as_str())
        )),
        Change::Blocked | Change::SameDevice => Some(e.reason.to_string()),
        Change::Orphaned => Some("the manifests no longer ask for it".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::SavedViolation;
    use crate::core::violation::Rule;

    fn read(json: serde_json::Value) -> Result<SavedViolation, serde_json::Error> {
        serde_json::from_value(json)
    }

    /// A saved violation's rule is the one recorded, whatever its message says; only a plan
    /// saved before violations carried their rule has it read from the message.
    #[test]
    fn the_saved_rule_wins_over_the_message() {
        let v = serde_json::json!({
            "manifest": "m", "rule": "requireTicket", "file": "m.yaml", "line": 3, "column": 1,
            "message": "policy cooldown: too soon", "hint": null,
        });
        assert_eq!(read(v.clone()).expect("a saved violation").rule, Rule::RequireTicket);
        let mut legacy = v;
        legacy.as_object_mut().expect("an object").remove("rule");
        assert_eq!(read(legacy.clone()).expect("a legacy violation").rule, Rule::Cooldown);
        legacy["message"] = "too soon".into();
        let err = read(legacy).expect_err("no rule anywhere");
        assert!(err.to_string().contains("has no rule"), "{err}");
    }
}

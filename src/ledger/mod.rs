//! The ledger: what has been requested of Intune, what it answered, and when.
//!
//! [`Ledger`] is the in-memory model the planner diffs against. [`engine`] holds the one
//! algorithm that reads and writes it (lock, bind the tenant, append durably, compact, import)
//! over a narrow [`backend::Backend`]: [`backend::local`] stores it on disk as a checksummed
//! snapshot plus an append-only journal, so that recording one outcome among 100,000 appends one
//! line instead of rewriting the file; [`backend::blob`] keeps the same snapshot in Azure Blob
//! Storage with one object per journal entry; [`backend::memory`] keeps it in memory for tests.
//! [`snapshot`] is the snapshot document every home stores, [`merge`] the rules between two
//! copies of a record, [`error`] what can go wrong.

pub mod backend;
pub(crate) mod engine;
pub(crate) mod error;
pub(crate) mod intern;
pub(crate) mod location;
mod lock;
pub(crate) mod merge;
pub(crate) mod snapshot;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::core::action::{Action, ActionKey, ActionKind, Collection, Parameters, Selector};

pub use backend::local::LocalStore;
pub use backend::{blob, memory};
pub(crate) use engine::block_on;
pub use engine::{Store, Writer};
pub use error::StateError;
pub use location::{BlobUrl, Location};
pub use lock::LockInfo;

/// The on-disk format version this build reads and writes.
pub(crate) const LEDGER_VERSION: u32 = 1;

/// Where an action stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Graph answered 204: Intune took the request; its final state is learned by `refresh`.
    Accepted,
    /// Intune reports the reset done.
    Done,
    /// Intune reports the reset failed.
    Failed,
    /// Intune reports the device does not support it.
    NotSupported,
    /// Intune canceled it (for example a retire or wipe came first).
    Canceled,
    /// Graph refused it (4xx other than 429): it never ran.
    Rejected,
    /// The request may have reached Graph but no answer was recorded (timeout, 5xx, crash).
    /// Never re-sent blindly: `refresh` decides on evidence, or a person (`state resolve`).
    #[default]
    Unknown,
    /// The request certainly did not take effect (a 429, 401 or 408, `refresh` found no trace of
    /// an unknown one in Intune after the grace period, or a person decided so with `state
    /// resolve` / `state retry`): the next `apply` sends it.
    NotExecuted,
    /// Intune's Multi Admin Approval held the request (403 `ApprovalRequired`): certainly not
    /// executed, and waiting for a second administrator. `apply` and `refresh` look the approval
    /// request up and re-send it once when approved (docs/exactly-once.md, "Multi Admin Approval").
    AwaitingApproval,
}

impl Status {
    /// Every status, in declaration order.
    #[cfg(test)]
    pub(crate) const ALL: [Status; 9] = [
        Status::Accepted,
        Status::Done,
        Status::Failed,
        Status::NotSupported,
        Status::Canceled,
        Status::Rejected,
        Status::Unknown,
        Status::NotExecuted,
        Status::AwaitingApproval,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Accepted => "accepted",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::NotSupported => "not-supported",
            Status::Canceled => "canceled",
            Status::Rejected => "rejected",
            Status::Unknown => "unknown",
            Status::NotExecuted => "not-executed",
            Status::AwaitingApproval => "awaiting-approval",
        }
    }

    /// Whether a reset was (or may have been) executed, so sending again would be a second reset.
    pub(crate) fn blocks_sending(self) -> bool {
        !matches!(self, Status::NotExecuted)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One HTTP request made for an action: the intent is recorded before it is sent, the outcome
/// fields after the answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Attempt {
    /// When the intent was recorded, on this machine's clock.
    pub started_at: Timestamp,
    /// The earliest Intune's clock can have read when the request reached it: derived from the
    /// `Date` of earlier Graph answers plus the time elapsed since (a lower bound, so a result
    /// Intune stamps for this request never starts before it). `None` when nothing was known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_sent_at: Option<Timestamp>,
    /// The `Date` header of Graph's answer (Intune's clock), when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_date: Option<Timestamp>,
    /// The `client-request-id` we sent.
    pub client_request_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// Graph's `request-id` header, for Microsoft support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// A policy rule knowingly overridden for this attempt, and why (`--ignore-change-windows`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_override: Option<String>,
    /// How the fate of this attempt was decided after the fact: by `refresh` on Intune's
    /// evidence, or by a person (`state resolve`, `state retry`). Boxed: most attempts have none,
    /// and a ledger holds 100,000 of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Box<Resolution>>,
    /// Where the attempt came from: commit, pull request, CI run, actor, and what the manifest
    /// said when it was sent. Shared: the attempts of one run and manifest carry the same, and a
    /// ledger read from disk holds each distinct one once ([`intern`]).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "intern::provenance")]
    pub provenance: Option<Arc<Provenance>>,
    /// Multi Admin Approval: the `x-msft-approval-code` Intune gave this attempt's 403, or the one
    /// this attempt (a re-send) carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_code: Option<String>,
    /// What the approval request said when last looked up (status, expiry, who and why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Box<ApprovalSeen>>,
}

pub(crate) use crate::ci::provenance::Provenance;

/// What an approval request said when it was looked up, kept on the attempt that awaits it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalSeen {
    /// Graph's `status` as it spelled it (`needsApproval`, `approved`, …).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Timestamp>,
    /// Who approved or rejected it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Their justification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// When it was looked up, on this machine's clock.
    pub checked_at: Timestamp,
}

impl ApprovalSeen {
    /// `needsApproval, expires 2026-…`: for plans and `state` listings.
    pub(crate) fn describe(&self) -> String {
        let mut s = self.status.clone();
        if let Some(t) = self.expires {
            s.push_str(&format!(", expires {}", crate::duration::at_second(t)));
        }
        if let Some(by) = &self.by {
            s.push_str(&format!(", by {by}"));
        }
        if let Some(why) = &self.why {
            s.push_str(&format!(": {why}"));
        }
        s
    }
}

/// A decision about an attempt made after its answer (or its lack of one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resolution {
    /// `refresh`, or the person (`user@host`) who ran `state resolve` / `state retry`.
    pub by: String,
    /// When, on this machine's clock.
    pub at: Timestamp,
    /// Intune's clock at the time of the evidence (the `Date` of the answer it came from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_time: Option<Timestamp>,
    /// The status the action took.
    pub status: Status,
    /// The evidence (refresh) or the reason given (a person).
    pub note: String,
    /// The `startDateTime` of the Intune result this attempt claimed: no other action may take it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_started: Option<Timestamp>,
    /// The `remoteActionAudits` entry this attempt claimed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_id: Option<String>,
}

/// Everything the ledger knows about one action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Record {
    pub key: ActionKey,
    pub kind: ActionKind,
    /// The action's parameters (`spec.parameters`, defaults filled in); none for most kinds.
    #[serde(default, skip_serializing_if = "Parameters::is_empty")]
    pub parameters: Parameters,
    /// `metadata.name` of the manifest that asked for it.
    pub manifest: String,
    /// The manifest file when it was recorded.
    pub file: String,
    pub round: u32,
    pub collection: Collection,
    pub selector: Selector,
    /// The Intune device the selector resolved to when the action was first sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_device_id: Option<String>,
    /// That device's name in Intune when it was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    pub status: Status,
    /// Sized exactly when read ([`intern::exact`]): most records have one attempt.
    #[serde(deserialize_with = "intern::exact")]
    pub attempts: Vec<Attempt>,
    /// The reset was made outside this tool (the Intune portal, a script) and adopted instead of
    /// sent: Intune's evidence for it. Such a record has no attempt of its own. Boxed: few
    /// records have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted: Option<Box<Adoption>>,
    /// A person archived the record (`state archive`): plans no longer show it as orphaned. It
    /// still counts for exactly-once: its action, asked for again, is what its status says.
    /// Boxed: few records are archived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived: Option<Box<Archival>>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Who archived a record, when and why (`state archive`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Archival {
    /// When, on this machine's clock.
    pub at: Timestamp,
    /// The person (`user@host`) who ran `state archive`.
    pub by: String,
    /// Why (`--reason`).
    pub reason: String,
}

/// A reset made outside this tool, recorded as this action's (`policy.outOfBand: adopt`, or
/// `reconcile state adopt`). Nothing was sent for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Adoption {
    /// When it was adopted, on this machine's clock.
    pub at: Timestamp,
    /// `apply` (the policy adopted it) or the person (`user@host`) who ran `state adopt`.
    pub by: String,
    /// Why: `state adopt --reason`, or [`Adoption::BY_POLICY`] for `apply`. Ledgers written
    /// before [`Adoption::evidence`] hold, for `apply`, the plan's sentence of that moment ("reset
    /// outside reconcile 40 min ago … nothing will be sent"): still read, no longer shown as a
    /// reason ([`Adoption::earlier_wording`]).
    pub reason: String,
    /// The evidence: when Intune started the reset (its clock), from its `deviceActionResults`
    /// or, failing that, the audit log's request time.
    pub result_started: Timestamp,
    /// Its state in Intune when adopted (`done`, `pending`, …).
    pub state: String,
    /// The `remoteActionAudits` entry, when the audit log was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_id: Option<String>,
    /// Who started it, per the audit log (empty: an app).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiated_by: Option<String>,
    /// Where the adoption came from (commit, pull request, CI run, actor, manifest metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    /// Where Intune showed the reset, and whether its audit log was read. Absent in ledgers
    /// written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
}

/// Where Intune showed a reset made outside this tool. The sentences about it are made when
/// shown (`Adoption::seen`, next to the other sentences about such resets in `out_of_band`), never
/// stored: a stored "40 min ago" is wrong a minute later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Evidence {
    pub source: EvidenceSource,
    /// Whether the audit log was read: an entry without a person then means an app started it.
    pub audit_log_read: bool,
}

/// Which of Intune's records showed the reset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EvidenceSource {
    /// The device's `deviceActionResults` (with its audit log entry, when there is one).
    #[default]
    DeviceActionResult,
    /// The audit log `remoteActionAudits` alone.
    AuditLog,
}

impl Adoption {
    /// The reason `apply` records when `policy.outOfBand` adopts a reset.
    pub const BY_POLICY: &'static str = "policy.outOfBand (then: adopt)";

    /// Whether the audit log was read when adopted (`None`: not recorded, an older ledger).
    pub(crate) fn audit_log_read(&self) -> Option<bool> {
        self.evidence.map(|e| e.audit_log_read).or(self.audit_id.as_ref().map(|_| true))
    }

    /// Why it was adopted: the person's reason, or the policy's.
    pub(crate) fn why(&self) -> &str {
        if self.earlier_wording().is_some() { Self::BY_POLICY } else { &self.reason }
    }

    /// An older ledger's sentence, written by `apply` when it adopted the reset ("… 40 min ago …
    /// nothing will be sent"): true of that moment only, shown as such.
    pub(crate) fn earlier_wording(&self) -> Option<&str> {
        (self.evidence.is_none() && self.by == "apply" && self.reason != Self::BY_POLICY)
            .then_some(self.reason.as_str())
    }
}

impl Attempt {
    /// Whether this attempt may have reset the device: accepted, 5xx, timeouts, crashes count.
    /// Only answers that prove nothing ran (429, 401, other 4xx) do not, and a person who checked
    /// the device and said it never ran is believed; refresh's "no trace" is not (the cooldown is
    /// what stops a second reset if refresh was wrong).
    pub(crate) fn may_have_run(&self) -> bool {
        let person_says_no =
            self.resolution.as_ref().is_some_and(|x| x.by != "refresh" && x.status == Status::NotExecuted);
        !person_says_no && self.http_status.is_none_or(|s| (200..300).contains(&s) || s >= 500)
    }

    /// What a refusal means, by its HTTP status (Intune's error codes are unhelpful, such as
    /// `UnknownError` for a 403, so the status speaks first).
    pub(crate) fn refusal(&self) -> Option<&'static str> {
        if self.approval_code.is_some() {
            // Multi Admin Approval's answer: its own message says what happened.
            return None;
        }
        match self.http_status? {
            400 => Some("Intune refused the request, often an unsupported platform or no passcode policy"),
            403 => Some("missing permission, licence or consent; not retried"),
            404 => Some("the device is no longer in Intune"),
            _ => None,
        }
    }
}

/// When an action last may have reset its device, and the action.
type Sent<'a> = (Timestamp, &'a Record);

/// The ledger's actions that may have reset a device ([`Record::last_sent`]), indexed once by
/// device id and by selector, so checking 20,000 actions against 10,000 records is two lookups
/// each, not a scan of the ledger each. Used by the cooldown, the likely-rename guard and
/// `apply --plan`'s "reset since the review".
#[derive(Debug, Default)]
pub(crate) struct SentIndex<'a> {
    by_device: std::collections::HashMap<String, Vec<Sent<'a>>>,
    by_selector: std::collections::HashMap<(Collection, crate::core::action::SelectorKind, String), Vec<Sent<'a>>>,
}

impl<'a> SentIndex<'a> {
    pub(crate) fn new(records: impl IntoIterator<Item = &'a Record>) -> Self {
        let mut index = SentIndex::default();
        for r in records {
            let Some(sent) = r.last_sent() else { continue };
            if let Some(id) = &r.managed_device_id {
                index.by_device.entry(id.to_ascii_lowercase()).or_default().push((sent, r));
            }
            index
                .by_selector
                .entry((r.collection, r.selector.kind, r.selector.normalized()))
                .or_default()
                .push((sent, r));
        }
        index
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_selector.is_empty()
    }

    /// Every indexed action that reset the device with this id.
    pub(crate) fn on_device(&self, id: &str) -> impl Iterator<Item = &'a Record> + '_ {
        self.by_device.get(&id.to_ascii_lowercase()).into_iter().flatten().map(|(_, r)| *r)
    }

    /// The latest reset of `a`'s device (by its resolved id, or by the same selector), across
    /// manifests and rounds, `a`'s own earlier attempts included: when, and by which action.
    pub(crate) fn last(&self, a: &Action, device_id: Option<&str>) -> Option<(Timestamp, &'a Record)> {
        self.latest(a, device_id, |_| true)
    }

    /// [`SentIndex::last`] among the actions of `a`'s kind only: what a cooldown counts.
    pub(crate) fn last_of_kind(&self, a: &Action, device_id: Option<&str>) -> Option<(Timestamp, &'a Record)> {
        self.latest(a, device_id, |r| r.kind == a.kind)
    }

    fn latest(
        &self,
        a: &Action,
        device_id: Option<&str>,
        keep: impl Fn(&Record) -> bool,
    ) -> Option<(Timestamp, &'a Record)> {
        let by_device = device_id.and_then(|id| self.by_device.get(&id.to_ascii_lowercase()));
        let by_selector = self.by_selector.get(&(a.collection, a.selector.kind, a.selector.normalized()));
        by_device
            .into_iter()
            .chain(by_selector)
            .flatten()
            .filter(|(_, r)| keep(r))
            .max_by_key(|(sent, _)| *sent)
            .copied()
    }
}

impl Record {
    /// When this action last may have reset its device (see [`Attempt::may_have_run`]; an
    /// adopted reset counts at its start in Intune); `None` for a rejected action or one that
    /// never ran.
    pub(crate) fn last_sent(&self) -> Option<Timestamp> {
        if self.status == Status::Rejected {
            return None;
        }
        let sent = self.attempts.iter().filter(|a| a.may_have_run()).map(|a| a.started_at);
        sent.chain(self.adopted.as_ref().map(|a| a.result_started)).max()
    }

    /// The start times of the Intune results this action claimed (refresh's decisions, or its
    /// adoption): no other action may take them.
    pub(crate) fn claimed_starts(&self) -> impl Iterator<Item = Timestamp> + '_ {
        let decided = self.attempts.iter().filter_map(|a| a.resolution.as_ref()?.result_started);
        decided.chain(self.adopted.as_ref().map(|a| a.result_started))
    }

    /// The `remoteActionAudits` entries this action claimed, the same way.
    pub(crate) fn claimed_audits(&self) -> impl Iterator<Item = &str> {
        let decided = self.attempts.iter().filter_map(|a| a.resolution.as_ref()?.audit_id.as_deref());
        decided.chain(self.adopted.as_ref().and_then(|a| a.audit_id.as_deref()))
    }

    /// A record for an action about to be sent for the first time.
    pub fn new(action: &Action, managed_device_id: Option<String>, now: Timestamp) -> Self {
        Record {
            key: action.key.clone(),
            kind: action.kind,
            parameters: action.parameters.clone(),
            manifest: action.manifest.clone(),
            file: action.file.display().to_string(),
            round: action.round,
            collection: action.collection,
            selector: action.selector.clone(),
            managed_device_id,
            device_name: None,
            status: Status::Unknown,
            attempts: Vec::new(),
            adopted: None,
            archived: None,
            created_at: now,
            updated_at: now,
        }
    }
}

/// The whole ledger in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ledger {
    /// Fixed when the ledger is created; `None` while no ledger file exists.
    pub lineage: Option<Uuid>,
    /// Incremented on every recorded change.
    pub serial: u64,
    /// The tenant the ledger is bound to, once something was recorded for one.
    pub tenant: Option<String>,
    pub records: BTreeMap<ActionKey, Record>,
}

impl Ledger {
    /// The state before anything was ever recorded.
    pub fn empty() -> Self {
        Ledger { lineage: None, serial: 0, tenant: None, records: BTreeMap::new() }
    }

    /// Finds a record by full key or unique prefix (at least 4 hex digits).
    pub(crate) fn find(&self, prefix: &str) -> Result<&Record, FindError> {
        use crate::core::action::KeyMatch;
        match crate::core::action::match_key_prefix(self.records.values(), |r| &r.key, prefix) {
            (_, KeyMatch::One(one)) => Ok(one),
            (prefix, KeyMatch::TooShort) => Err(FindError::TooShort(prefix)),
            (prefix, KeyMatch::None) => Err(FindError::NotFound(prefix)),
            (prefix, KeyMatch::Many(many)) => {
                Err(FindError::Ambiguous(prefix, many.iter().take(10).map(|r| r.key.short().to_owned()).collect()))
            }
        }
    }
}

/// What a person decides about an action (`state resolve`, `state retry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonDecision {
    /// `state resolve --as done`: the unknown request did take effect.
    ResolveDone,
    /// `state resolve --as not-executed`: the unknown request never took effect; send it again.
    ResolveNotExecuted,
    /// `state retry`: a rejected request may be sent again.
    Retry,
}

/// Why a person's decision was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    #[error("action {key} is `{status}`, not `unknown`: only an unknown outcome is resolved by hand{}", hint(*.status))]
    NotUnknown { key: String, status: Status },
    #[error("action {key} is `{status}`, not `rejected`: only a rejected action is retried by hand{}", hint(*.status))]
    NotRejected { key: String, status: Status },
    #[error("a reason is required (--reason TEXT): it is recorded in the ledger")]
    NoReason,
}

fn hint(s: Status) -> &'static str {
    match s {
        Status::Unknown => "\nhint: use `reconcile state resolve`",
        Status::Rejected => "\nhint: use `reconcile state retry`",
        Status::NotExecuted => "\nhint: it is already sendable: the next apply sends it",
        _ => "\nhint: to reset the device again, bump spec.round in its manifest",
    }
}

impl Record {
    /// Applies a person's decision, recorded on the last attempt with who, when and why.
    pub(crate) fn decide_by_person(
        &mut self,
        decision: PersonDecision,
        by: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), DecisionError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(DecisionError::NoReason);
        }
        let key = self.key.short().to_owned();
        let status = match decision {
            PersonDecision::ResolveDone | PersonDecision::ResolveNotExecuted if self.status != Status::Unknown => {
                return Err(DecisionError::NotUnknown { key, status: self.status });
            }
            PersonDecision::Retry if self.status != Status::Rejected => {
                return Err(DecisionError::NotRejected { key, status: self.status });
            }
            PersonDecision::ResolveDone => Status::Done,
            PersonDecision::ResolveNotExecuted | PersonDecision::Retry => Status::NotExecuted,
        };
        let verb = if decision == PersonDecision::Retry { "retry" } else { "resolve" };
        let resolution = Resolution {
            by: by.to_owned(),
            at: now,
            status,
            note: format!("state {verb} by a person: {reason}"),
            ..Resolution::default()
        };
        match self.attempts.last_mut() {
            Some(a) => a.resolution = Some(Box::new(resolution)),
            None => self.attempts.push(Attempt {
                started_at: now,
                resolution: Some(Box::new(resolution)),
                ..Attempt::default()
            }),
        }
        self.status = status;
        self.updated_at = now;
        Ok(())
    }
}

impl Record {
    /// Archives the record (`state archive`): recorded with who, when and why. Archiving an
    /// archived record again changes nothing (the first archival is kept): `false`.
    pub(crate) fn archive(&mut self, by: &str, reason: &str, now: Timestamp) -> Result<bool, DecisionError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(DecisionError::NoReason);
        }
        if self.archived.is_some() {
            return Ok(false);
        }
        self.archived = Some(Box::new(Archival { at: now, by: by.to_owned(), reason: reason.to_owned() }));
        self.updated_at = now;
        Ok(true)
    }
}

/// Why `state show KEY` found nothing to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FindError {
    #[error("key prefix `{0}` is too short: give at least 4 hex digits")]
    TooShort(String),
    #[error("no action in the ledger has a key starting with `{0}`")]
    NotFound(String),
    #[error("key prefix `{0}` is ambiguous: it matches {keys}", keys = .1.join(", "))]
    Ambiguous(String, Vec<String>),
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::core::action::SelectorKind;

    pub(crate) fn record(name: &str, serial: &str, status: Status) -> Record {
        let action = Action {
            key: ActionKey::compute(
                ActionKind::PasscodeReset,
                &Default::default(),
                name,
                1,
                Collection::ManagedDevices,
                &Selector { kind: SelectorKind::SerialNumber, value: serial.into() },
            ),
            former_names: Vec::new(),
            former_keys: Vec::new(),
            kind: ActionKind::PasscodeReset,
            parameters: Default::default(),
            manifest: name.into(),
            file: "manifests/a.yaml".into(),
            pos: crate::diag::Pos::new(1, 1),
            round: 1,
            collection: Collection::ManagedDevices,
            selector: Selector { kind: SelectorKind::SerialNumber, value: serial.into() },
        };
        let mut r = Record::new(&action, None, Timestamp::UNIX_EPOCH);
        r.status = status;
        r
    }

    #[test]
    fn a_person_resolves_unknown_and_retries_rejected_only() {
        let now: Timestamp = "2026-11-30T10:00:00Z".parse().expect("ts");
        let mut r = record("m", "A", Status::Unknown);
        r.attempts.push(Attempt::default());
        assert_eq!(
            r.decide_by_person(PersonDecision::ResolveNotExecuted, "ann@h", " ", now),
            Err(DecisionError::NoReason)
        );
        assert!(matches!(
            r.decide_by_person(PersonDecision::Retry, "ann@h", "x", now),
            Err(DecisionError::NotRejected { .. })
        ));
        r.decide_by_person(PersonDecision::ResolveNotExecuted, "ann@h", "phone was off", now).expect("resolve");
        assert_eq!(r.status, Status::NotExecuted);
        let res = r.attempts[0].resolution.as_ref().expect("recorded");
        assert_eq!((res.by.as_str(), res.status), ("ann@h", Status::NotExecuted));
        assert!(res.note.starts_with("state resolve by a person: phone was off"), "{}", res.note);
        assert!(matches!(
            r.decide_by_person(PersonDecision::ResolveDone, "ann@h", "x", now),
            Err(DecisionError::NotUnknown { status: Status::NotExecuted, .. })
        ));
        let mut rejected = record("m", "B", Status::Rejected);
        rejected.decide_by_person(PersonDecision::Retry, "ann@h", "licence fixed", now).expect("retry");
        assert_eq!(rejected.status, Status::NotExecuted);
        // A record without attempts gets one that carries the decision.
        assert_eq!(rejected.attempts.len(), 1);
        assert_eq!(rejected.attempts[0].started_at, now);
        assert_eq!(rejected.attempts[0].resolution.as_ref().map(|r| r.at), Some(now));
        let note = &rejected.attempts[0].resolution.as_ref().expect("recorded").note;
        assert!(note.starts_with("state retry by a person: licence fixed"), "{note}");
        let mut done = record("m", "C", Status::Unknown);
        done.decide_by_person(PersonDecision::ResolveDone, "ann@h", "user confirmed", now).expect("resolve");
        assert_eq!(done.status, Status::Done);
    }

    // Only `not-executed` may be sent; every other status says the reset ran or may have.
    #[test]
    fn only_not_executed_is_sendable() {
        for s in Status::ALL {
            assert_eq!(s.blocks_sending(), s != Status::NotExecuted, "{s}");
        }
    }

    #[test]
    fn finds_by_unique_prefix() {
        let mut l = Ledger::empty();
        for s in ["A1", "A2", "A3"] {
            let r = record("m", s, Status::Accepted);
            l.records.insert(r.key.clone(), r);
        }
        let key = l.records.keys().next().expect("three records").clone();
        assert_eq!(l.find(key.as_str()).map(|r| &r.key), Ok(&key));
        assert_eq!(l.find(&key.as_str()[..10].to_uppercase()).map(|r| &r.key), Ok(&key));
        assert!(matches!(l.find("ab"), Err(FindError::TooShort(_))));
        assert!(matches!(l.find("zzzz"), Err(FindError::NotFound(_))));
    }
}

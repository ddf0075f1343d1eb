//! Actions made outside this tool (the Intune portal, PowerShell, another tool): spotted from what
//! Intune already tells about each device, so a plan does not send a second reset to a phone
//! whose owner was just given a passcode. An action of another tool counts when Intune reports it
//! under one of the names of the kind at hand ([`crate::core::kinds::DeviceAction::reported_as`]).
//!
//! Two sources, both read without an extra request per device where possible:
//! - the device's `deviceActionResults` (selected with every lookup; [`crate::core::device::Device`]),
//! - the beta audit log `remoteActionAudits`, read once per run since the start of the window,
//!   which also says who started each action (`initiatedByUserPrincipalName`).
//!
//! A reset is *outside* this tool when no record of the ledger accounts for it: no record claimed
//! it (refresh's `resultStarted` / `auditId`, or an adoption), and no attempt of a record of the
//! device was in the air when it started. What a plan does with one is the policy's
//! `outOfBand.then` ([`crate::core::policy`]). Pure: no I/O, no clock.
//!
//! Never read here: the `passcode` that `deviceActionResults` carries (the types have no such
//! field, so it is never deserialized).

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::core::device::{Device, RemoteActionAudit};
use crate::core::kinds::DeviceAction;
use crate::ledger::{Adoption, Evidence, EvidenceSource, Ledger, Record};

/// How long after an attempt's answer a result Intune stamps may still be that attempt's. Only
/// used to say "ours" (which can hide an outside reset made within minutes of ours), never to
/// send.
const CLAIM_SLACK: SignedDuration = SignedDuration::from_mins(5);
/// How far apart a device result and its audit entry may be stamped and still be one reset.
const SAME_RESET: SignedDuration = SignedDuration::from_mins(2);

/// The latest reset of a device made outside this tool, as Intune shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OutOfBand {
    /// When Intune started it (its clock): the result's `startDateTime`, else the audit's
    /// `requestDateTime`.
    pub started_at: Timestamp,
    /// Its state in Intune (`done`, `pending`, `active`).
    pub state: String,
    /// Who started it, per the audit log; empty when an app did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiated_by: Option<String>,
    /// The audit log entry, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_id: Option<String>,
    /// Whether the audit log was read (otherwise who started it is unknown).
    pub audited: bool,
    /// Which of Intune's records showed it (absent in saved plans made before it was recorded).
    #[serde(default)]
    pub source: EvidenceSource,
}

impl OutOfBand {
    /// "bob@contoso.com", "an app", or "someone (the audit log could not be read)".
    pub(crate) fn who(&self) -> String {
        who(self.initiated_by.as_deref(), Some(self.audited))
    }

    /// "reset outside reconcile 40 min ago by bob@contoso.com (done)", with the kind's word
    /// (`what`: "reset", "lock", …).
    pub(crate) fn describe(&self, now: Timestamp, what: &str) -> String {
        seen(what, &ago(now.duration_since(self.started_at)), &self.who(), &self.state)
    }

    /// What an adoption of it records: where Intune showed it.
    pub(crate) fn evidence(&self) -> Evidence {
        Evidence { source: self.source, audit_log_read: self.audited }
    }
}

/// How an adoption is made: the one builder, for `apply` (`policy.outOfBand: adopt`) and for
/// `state adopt`.
impl Adoption {
    /// The adoption of `reset` at `at`: who adopted it (`apply`, or the person), why, and where
    /// the run came from; what it records of the reset is Intune's evidence, never a sentence
    /// (that is made when shown, [`Adoption::seen`]).
    pub(crate) fn of(
        reset: &OutOfBand,
        at: Timestamp,
        by: String,
        reason: String,
        provenance: crate::ledger::Provenance,
    ) -> Self {
        Adoption {
            at,
            by,
            reason,
            evidence: Some(reset.evidence()),
            result_started: reset.started_at,
            state: reset.state.clone(),
            audit_id: reset.audit_id.clone(),
            initiated_by: reset.initiated_by.clone(),
            provenance: Some(provenance),
        }
    }
}

impl Record {
    /// Records `adoption` as how this action was done (nothing was sent), on the device named
    /// `device_name`.
    pub(crate) fn adopt(&mut self, device_name: Option<String>, adoption: Adoption) {
        self.device_name = device_name;
        self.status = crate::ledger::Status::Done;
        self.updated_at = adoption.at;
        self.adopted = Some(Box::new(adoption));
    }
}

/// How an adoption is told: made from its recorded evidence each time it is shown, with the same
/// words as a reset just seen ([`OutOfBand::describe`]).
impl Adoption {
    /// Who started the reset: the audit log's person, "an app", or who is unknown and why.
    pub(crate) fn who(&self) -> String {
        who(self.initiated_by.as_deref(), self.audit_log_read())
    }

    /// "reset outside reconcile at 2026-11-30T11:20:00Z by bob@contoso.com (done)".
    pub(crate) fn seen(&self, what: &str) -> String {
        let at = format!("at {}", crate::duration::at_second(self.result_started));
        seen(what, &at, &self.who(), &self.state)
    }

    /// "reset outside reconcile 40 min ago by bob@contoso.com (done)", as of `now`.
    pub(crate) fn seen_ago(&self, now: Timestamp, what: &str) -> String {
        seen(what, &ago(now.duration_since(self.result_started)), &self.who(), &self.state)
    }

    /// "the device's action results and audit entry a1": where Intune showed it, when recorded.
    pub(crate) fn source(&self) -> Option<String> {
        let audit = self.audit_id.as_deref().map(|id| format!("audit entry {id}"));
        let source = match (self.evidence?.source, audit) {
            (EvidenceSource::DeviceActionResult, Some(audit)) => format!("the device's action results and {audit}"),
            (EvidenceSource::DeviceActionResult, None) => "the device's action results".to_owned(),
            (EvidenceSource::AuditLog, Some(audit)) => format!("the audit log ({audit})"),
            (EvidenceSource::AuditLog, None) => "the audit log".to_owned(),
        };
        Some(source)
    }
}

/// Who started a reset: the audit log's person, else "an app" when the log was read (`None`: not
/// recorded whether it was).
fn who(initiated_by: Option<&str>, audit_log_read: Option<bool>) -> String {
    match (initiated_by.map(str::trim), audit_log_read) {
        (Some(by), _) if !by.is_empty() => crate::diag::safe::text(by).into_owned(),
        (_, Some(true)) => "an app".to_owned(),
        (_, Some(false)) => "someone (the audit log could not be read)".to_owned(),
        (_, None) => "someone (not recorded)".to_owned(),
    }
}

/// "{what} outside reconcile {when} by {who} ({state})", `what` the kind's word ("reset",
/// "lock"), `when` as "40 min ago" or "at …".
fn seen(what: &str, when: &str, who: &str, state: &str) -> String {
    format!("{what} outside reconcile {when} by {who} ({})", crate::diag::safe::text(state))
}

/// A past duration as a person says it: "40 min ago", "3 h ago", "2 days ago".
fn ago(d: SignedDuration) -> String {
    let mins = d.as_secs().max(0) / 60;
    match mins {
        0 => "just now".to_owned(),
        1..=119 => format!("{mins} min ago"),
        120..=2879 => format!("{} h ago", mins / 60),
        _ => format!("{} days ago", mins / 1440),
    }
}

/// What the audit log says, by device, and from when on resets are this run's own.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditLog {
    entries: Entries,
    /// `apply`: the intents this very run recorded, by device. A reset Intune started after one
    /// of them (on Intune's clock, less the stamps' tolerance) may be this run's own — it is not
    /// in the ledger as locked, which every decision of the run is made against — and is never
    /// taken for one made outside reconcile. Any other reset is judged by `policy.outOfBand`,
    /// also one made a second before the run sent anything to that device.
    own: Option<(OwnIntents, jiff::SignedDuration)>,
}

/// The first intent this run recorded for each device, on Intune's clock (shared by the executor,
/// which notes each intent before its request leaves, and the plans it makes meanwhile).
#[derive(Debug, Clone, Default)]
pub(crate) struct OwnIntents(std::sync::Arc<std::sync::Mutex<HashMap<String, Timestamp>>>);

impl OwnIntents {
    /// This run records an intent for `device_id` at `at` (Intune's clock): the first one counts.
    pub(crate) fn note(&self, device_id: &str, at: Timestamp) {
        let mut m = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let first = m.entry(device_id.to_ascii_lowercase()).or_insert(at);
        *first = (*first).min(at);
    }

    /// When this run first recorded an intent for `device_id`, if it did.
    fn first(&self, device_id: &str) -> Option<Timestamp> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&device_id.to_ascii_lowercase()).copied()
    }
}

#[derive(Debug, Clone, Default)]
enum Entries {
    /// Not asked (an offline plan, or nothing to send).
    #[default]
    NotRead,
    /// The token may not read it (the reason is logged): who started a reset stays unknown.
    Unreadable,
    /// Actions of the known kinds since the start of the window, by managed device id (lower
    /// case).
    Read(HashMap<String, Vec<RemoteActionAudit>>),
}

impl AuditLog {
    /// The entries read (only those of a known kind of action are kept).
    pub(crate) fn read(entries: Vec<RemoteActionAudit>) -> Self {
        let mut by_device: HashMap<String, Vec<RemoteActionAudit>> = HashMap::new();
        for a in entries {
            if !a.action.as_deref().is_some_and(crate::core::kinds::is_known) {
                continue;
            }
            if let Some(id) = a.managed_device_id.as_deref() {
                by_device.entry(id.to_ascii_lowercase()).or_default().push(a);
            }
        }
        AuditLog { entries: Entries::Read(by_device), own: None }
    }

    /// The token may not read the audit log.
    pub(crate) fn unreadable() -> Self {
        AuditLog { entries: Entries::Unreadable, own: None }
    }

    /// The same, for a run whose intents are noted in `own`: a reset of a device started after
    /// this run's first intent for it (less `tolerance`, the clock stamps' disagreement) may be
    /// its own.
    #[must_use]
    pub(crate) fn with_own_intents(mut self, own: OwnIntents, tolerance: jiff::SignedDuration) -> Self {
        self.own = Some((own, tolerance));
        self
    }

    /// Whether the audit log was read.
    pub(crate) fn audited(&self) -> bool {
        matches!(self.entries, Entries::Read(_))
    }

    /// Whether the audit log has an entry of the `kind` of action for the device.
    pub(crate) fn has(&self, kind: &DeviceAction, device_id: &str) -> bool {
        self.of(kind, device_id).next().is_some()
    }

    /// The device's entries of the `kind` of action.
    fn of<'s>(&'s self, kind: &'s DeviceAction, device_id: &str) -> impl Iterator<Item = &'s RemoteActionAudit> {
        let all = match &self.entries {
            Entries::Read(m) => m.get(&device_id.to_ascii_lowercase()).map_or(&[][..], Vec::as_slice),
            _ => &[],
        };
        all.iter().filter(|a| a.action.as_deref().is_some_and(|n| kind.is_reported_as(n)))
    }

    /// Whether a reset of `device_id` Intune started at `start` may be this run's own.
    fn own(&self, device_id: &str, start: Timestamp) -> bool {
        self.own
            .as_ref()
            .is_some_and(|(own, tolerance)| own.first(device_id).is_some_and(|at| start >= at - *tolerance))
    }
}

/// The ledger's records by device id: what they account for in Intune.
#[derive(Debug, Default)]
pub(crate) struct Claims<'a> {
    by_device: HashMap<String, Vec<&'a Record>>,
}

impl<'a> Claims<'a> {
    pub(crate) fn new(ledger: &'a Ledger) -> Self {
        let mut by_device: HashMap<String, Vec<&'a Record>> = HashMap::new();
        for r in ledger.records.values() {
            if let Some(id) = &r.managed_device_id {
                by_device.entry(id.to_ascii_lowercase()).or_default().push(r);
            }
        }
        Claims { by_device }
    }

    /// Whether a record of device `id` accounts for a reset Intune started at `start` (whose
    /// audit entry is `audit`): it claimed it (refresh, an adoption), or, unless a person started
    /// it (`by_person`), one of its attempts was in the air then.
    fn accounts_for(&self, id: &str, start: Timestamp, audit: Option<&str>, by_person: bool) -> bool {
        let Some(records) = self.by_device.get(&id.to_ascii_lowercase()) else { return false };
        records.iter().any(|r| {
            let claimed =
                r.claimed_starts().any(|s| s == start) || audit.is_some_and(|id| r.claimed_audits().any(|a| a == id));
            claimed
                || (!by_person
                    && r.attempts.iter().any(|a| {
                        let from = a.server_sent_at.unwrap_or(a.started_at) - CLAIM_SLACK;
                        let to = a.server_date.or(a.finished_at).unwrap_or(a.started_at) + CLAIM_SLACK;
                        a.may_have_run() && start >= from && start <= to
                    }))
        })
    }
}

/// The latest action of the `kind` on `device` started at or after `since` that took (or is
/// taking) effect and that no record of the ledger accounts for. One the audit log attributes to a
/// person is never taken for this tool's, whatever the times say.
pub(crate) fn latest(
    kind: &DeviceAction,
    device: &Device,
    audits: &AuditLog,
    claims: &Claims<'_>,
    since: Timestamp,
) -> Option<OutOfBand> {
    let took_effect = |state: &str| ["pending", "active", "done"].iter().any(|s| state.eq_ignore_ascii_case(s));
    let logged: Vec<&RemoteActionAudit> = audits.of(kind, &device.id).collect();
    let audited = audits.audited();
    let mut seen: Vec<OutOfBand> = Vec::new();
    for r in device.device_action_results.iter().filter(|r| kind.is_reported_as(&r.action_name)) {
        let Some(start) = r.start_date_time.filter(|s| *s >= since && !audits.own(&device.id, *s)) else { continue };
        if !took_effect(&r.action_state) {
            continue;
        }
        let audit =
            logged.iter().copied().find(|a| a.request_date_time.is_some_and(|t| (t - start).abs() <= SAME_RESET));
        if claims.accounts_for(
            &device.id,
            start,
            audit.map(|a| a.id.as_str()),
            audit.is_some_and(RemoteActionAudit::by_person),
        ) {
            continue;
        }
        seen.push(OutOfBand {
            started_at: start,
            state: r.action_state.clone(),
            initiated_by: audit.and_then(|a| a.initiated_by_user_principal_name.clone()),
            audit_id: audit.map(|a| a.id.clone()),
            audited,
            source: EvidenceSource::DeviceActionResult,
        });
    }
    // The audit log alone (a device listed without its results): a reset whose state says it ran.
    for a in logged {
        let Some(start) = a.request_date_time.filter(|s| *s >= since && !audits.own(&device.id, *s)) else { continue };
        let state = a.action_state.clone().unwrap_or_else(|| "pending".to_owned());
        if !took_effect(&state) || seen.iter().any(|o| o.audit_id.as_deref() == Some(a.id.as_str())) {
            continue;
        }
        if device.device_action_results.iter().any(|r| {
            kind.is_reported_as(&r.action_name) && r.start_date_time.is_some_and(|s| (s - start).abs() <= SAME_RESET)
        }) {
            // The device's own result for it decided above (it did not take effect, or is ours).
            continue;
        }
        if claims.accounts_for(&device.id, start, Some(&a.id), a.by_person()) {
            continue;
        }
        seen.push(OutOfBand {
            started_at: start,
            state,
            initiated_by: a.initiated_by_user_principal_name.clone(),
            audit_id: Some(a.id.clone()),
            audited,
            source: EvidenceSource::AuditLog,
        });
    }
    seen.into_iter().max_by_key(|o| o.started_at)
}

#[cfg(test)]
mod tests;

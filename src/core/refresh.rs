//! What Intune's evidence says became of `accepted` and `unknown` actions: the pure half of
//! `refresh` (the operation that reads Graph and records the verdicts is `app::refresh`).
//!
//! # Guarantees
//! - Everything is compared on Intune's clock: an attempt's [`server_sent_at`] (a lower bound of
//!   its arrival, learned from `Date` headers) against results' `startDateTime`, and the grace
//!   against the `Date` of the read. The runner's clock is never trusted for a decision.
//! - A result counts for one action only, and never one another record already claimed (recorded
//!   as `resolution.resultStarted`) or one the audit log attributes to a person.
//! - An `unknown` action becomes `not-executed` (sendable again) only on evidence: no
//!   result of its kind ([`crate::core::kinds`]) at or after its intent, none in the audit log
//!   (where readable), and
//!   `graph.unknownGrace` of Intune's time passed since. Anything less leaves it `unknown` until
//!   a person decides with `reconcile state resolve`. A harmless kind (a second send does no
//!   harm: [`DeviceAction::harmless`]) is not held back by an audit log that cannot be read.
//! - A wipe or retire also shows in the device's `managementState` (`wipePending`): that is
//!   evidence it reached Intune. A device that left the tenant (404) after one is evidence it ran:
//!   never a reason to send it again (docs/exactly-once.md, "Wipes and retires").
//!
//! The passcode that Graph returns in those results is never deserialized (see
//! [`crate::graph::ActionResult`]), logged or stored.
//!
//! [`server_sent_at`]: crate::ledger::Attempt::server_sent_at

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::core::action::{ActionKind, Collection};
use crate::core::kinds::DeviceAction;
use crate::graph::clock::TOLERANCE;
use crate::graph::{ActionResult, Audits, RemoteActionAudit};
use crate::ledger::{Ledger, Record, Resolution, Status};

/// One action's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StatusChange {
    pub record: Record,
    pub from: Status,
    pub note: String,
}

/// What refresh found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RefreshReport {
    pub checked: usize,
    pub changes: Vec<StatusChange>,
    /// Still pending in Intune, or unknown: how many.
    pub waiting: usize,
    /// Unknown actions left unknown, and why (what a person may want to look at).
    pub unresolved: Vec<(Record, String)>,
}

/// What the audit log can tell.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AuditView<'a> {
    /// Entries of this device and kind of action, requested since the earliest intent.
    Read(&'a [RemoteActionAudit]),
    /// The token may not read it: decisions rest on `deviceActionResults` alone (noted).
    NotPermitted(&'a str),
    /// Reading it failed this time: no action is made sendable on this run.
    Unavailable(&'a str),
}

/// Everything Intune said about one device.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Evidence<'a> {
    /// `None`: the device does not exist (404).
    pub results: Option<&'a [ActionResult]>,
    /// The device's `managementState`.
    pub management_state: Option<&'a str>,
    /// The `Date` of the answer that carried the results: Intune's clock now.
    pub server_now: Option<Timestamp>,
    pub audits: AuditView<'a>,
}

/// A decision about one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The action takes this status; the note is the evidence.
    Change { status: Status, note: String, result_started: Option<Timestamp>, audit_id: Option<String> },
    /// Nothing changes: still pending, or not enough evidence (the note says which).
    Wait(String),
}

/// How far before an intent an old record's result may have started and still be taken for
/// its own, for attempts recorded before the server's clock was (no `serverSentAt`). Only used to
/// claim a result (which can miss a reset), never to make an action sendable.
const LEGACY_SKEW: SignedDuration = SignedDuration::from_secs(60);

fn tol() -> SignedDuration {
    SignedDuration::try_from(TOLERANCE).unwrap_or(SignedDuration::ZERO)
}

fn status_of(state: &str) -> Status {
    match state.to_ascii_lowercase().as_str() {
        "done" => Status::Done,
        "failed" => Status::Failed,
        "notsupported" => Status::NotSupported,
        "canceled" | "cancelled" => Status::Canceled,
        _ => Status::Accepted,
    }
}

fn is_pending(r: &Record) -> bool {
    matches!(r.status, Status::Accepted | Status::Unknown)
}

/// Decides every `accepted`/`unknown` record of one device and `kind` of action (pure: no I/O,
/// no clock). `records` are all the ledger's records of the device and kind, whatever their
/// status, so that results they claimed are not taken again. Returns one verdict per record
/// (`None` for records that are not pending).
pub(crate) fn decide(
    kind: &DeviceAction,
    records: &[&Record],
    ev: &Evidence<'_>,
    grace: Option<Duration>,
) -> Vec<Option<Verdict>> {
    if ev.results.is_none() && kind.removal.is_some() {
        return records.iter().map(|r| is_pending(r).then(|| left_the_tenant(kind, r))).collect();
    }
    let resets: Vec<(&ActionResult, Timestamp)> = ev
        .results
        .into_iter()
        .flatten()
        .filter(|r| kind.is_own_result(&r.action_name))
        .filter_map(|r| r.start_date_time.map(|s| (r, s)))
        .collect();
    let audits: &[RemoteActionAudit] = match ev.audits {
        AuditView::Read(a) => a,
        _ => &[],
    };
    // Resets the audit log attributes to a person: not ours, whoever reads them.
    let by_person = |start: Timestamp| {
        audits.iter().any(|a| a.by_person() && a.request_date_time.is_some_and(|t| (t - start).abs() <= tol()))
    };
    let mut claimed_audits: HashSet<&str> = records.iter().flat_map(|r| r.claimed_audits()).collect();
    let mut verdicts: Vec<Option<Verdict>> = vec![None; records.len()];

    // 1. Records that claimed a result earlier follow that result.
    let unclaimed = follow_claims(kind, records, &resets, &mut verdicts);
    // 2. The others take the earliest free result at or after their intent.
    let free = free_results(records, &resets, &by_person);
    let unclaimed = take_free_results(kind, records, unclaimed, free, &mut verdicts);

    // 3. Unknown records without a result: sendable again only on evidence.
    for &i in &unclaimed {
        let r = records[i];
        if r.status != Status::Unknown || verdicts[i].is_some() {
            continue;
        }
        let seen = Seen { results: &resets, audits, claimed_audits: &claimed_audits, by_person: &by_person };
        verdicts[i] = Some(unknown_without_result(kind, r, ev, grace, &seen));
        if let Some(Verdict::Change { audit_id: Some(id), .. }) = &verdicts[i] {
            claimed_audits.insert(audits.iter().find(|a| a.id == *id).map_or("", |a| a.id.as_str()));
        }
    }
    let waiting = match kind.issued_state(ev.management_state) {
        Some(state) => format!("the device is `{state}`: the {} is under way", kind.wording.short),
        None => "Intune shows no result for it yet".to_owned(),
    };
    for (i, r) in records.iter().enumerate() {
        if is_pending(r) && verdicts[i].is_none() {
            verdicts[i] = Some(Verdict::Wait(waiting.clone()));
        }
    }
    verdicts
}

/// The verdict on a pending wipe or retire whose device Graph no longer knows (404): the device
/// left the tenant, which is what the action does. An `unknown` one most likely ran; either way
/// it is never sent again (docs/exactly-once.md, "Wipes and retires").
fn left_the_tenant(kind: &DeviceAction, r: &Record) -> Verdict {
    let note = if r.status == Status::Unknown {
        format!(
            "the device left the tenant (Graph answers 404) after the intent: the {} most likely ran, and is never sent again on a 404",
            kind.wording.short
        )
    } else {
        format!("the device left the tenant (Graph answers 404): the {} Intune accepted ran", kind.wording.short)
    };
    Verdict::Change { status: Status::Done, note, result_started: None, audit_id: None }
}

/// [`decide`], step 1: each pending record that claimed a result earlier follows that result.
/// Returns the records that claimed none.
fn follow_claims(
    kind: &DeviceAction,
    records: &[&Record],
    resets: &[(&ActionResult, Timestamp)],
    verdicts: &mut [Option<Verdict>],
) -> Vec<usize> {
    let mut unclaimed: Vec<usize> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let claim = r.attempts.last().and_then(|a| a.resolution.as_ref()).and_then(|x| x.result_started);
        match claim {
            Some(start) if is_pending(r) => {
                verdicts[i] = Some(match resets.iter().find(|(_, s)| *s == start) {
                    Some((res, _)) if status_of(&res.action_state) != r.status => Verdict::Change {
                        status: status_of(&res.action_state),
                        note: format!(
                            "Intune reports `{}` for the {} it started at {start}",
                            res.action_state, kind.wording.short
                        ),
                        result_started: Some(start),
                        audit_id: None,
                    },
                    Some(_) => Verdict::Wait("Intune reports it pending".into()),
                    None => Verdict::Wait(format!("Intune no longer lists the result it claimed ({start})")),
                });
            }
            Some(_) => {}
            None => unclaimed.push(i),
        }
    }
    unclaimed
}

/// The results no record claimed and the audit log does not attribute to a person, earliest
/// first. Two results stamped alike (a Graph that keeps every result and stamps whole seconds)
/// are two results: one claim takes one of them.
fn free_results<'r>(
    records: &[&Record],
    resets: &[(&'r ActionResult, Timestamp)],
    by_person: &dyn Fn(Timestamp) -> bool,
) -> Vec<(&'r ActionResult, Timestamp)> {
    let mut claimed_starts: HashMap<Timestamp, usize> = HashMap::new();
    for start in records.iter().flat_map(|r| r.claimed_starts()) {
        *claimed_starts.entry(start).or_default() += 1;
    }
    let mut free: Vec<(&ActionResult, Timestamp)> = Vec::new();
    for &(res, start) in resets {
        match claimed_starts.get_mut(&start) {
            Some(n) if *n > 0 => *n -= 1,
            _ if by_person(start) => {}
            _ => free.push((res, start)),
        }
    }
    free.sort_by_key(|(_, s)| *s);
    free
}

/// Intune's clock can have read no earlier than this when the record's last attempt arrived.
fn intent_bound(r: &Record) -> Option<Timestamp> {
    let a = r.attempts.last()?;
    Some(match a.server_sent_at {
        Some(t) => t - tol(),
        None => a.started_at - LEGACY_SKEW,
    })
}

/// [`decide`], step 2: the `unclaimed` records take the earliest `free` result at or after their
/// intent: first the records that certainly ran (accepted, or final in an older ledger that
/// recorded no claim), then the unknown ones, each group earliest intent first. An unknown action
/// must never take the result of one that Intune accepted. Returns the records with an intent,
/// in that order.
fn take_free_results(
    kind: &DeviceAction,
    records: &[&Record],
    mut unclaimed: Vec<usize>,
    mut free: Vec<(&ActionResult, Timestamp)>,
    verdicts: &mut [Option<Verdict>],
) -> Vec<usize> {
    unclaimed.retain(|&i| intent_bound(records[i]).is_some());
    unclaimed.sort_by_key(|&i| (records[i].status == Status::Unknown, intent_bound(records[i])));
    for &i in &unclaimed {
        let r = records[i];
        let Some(from) = intent_bound(r) else { continue };
        let Some(pos) = free.iter().position(|(_, s)| *s >= from) else { continue };
        let (res, start) = free.remove(pos);
        if !is_pending(r) {
            continue;
        }
        let status = status_of(&res.action_state);
        verdicts[i] = Some(Verdict::Change {
            status,
            note: format!(
                "Intune reports `{}` for a {} started at {start}, after the intent",
                res.action_state, kind.wording.short
            ),
            result_started: Some(start),
            audit_id: None,
        });
    }
    unclaimed
}

/// What Intune shows of the kind on the device, and what other records claimed of it.
struct Seen<'s> {
    /// The kind's results with their start.
    results: &'s [(&'s ActionResult, Timestamp)],
    audits: &'s [RemoteActionAudit],
    claimed_audits: &'s HashSet<&'s str>,
    /// Whether the audit log attributes an action started then to a person.
    by_person: &'s dyn Fn(Timestamp) -> bool,
}

fn unknown_without_result(
    kind: &DeviceAction,
    r: &Record,
    ev: &Evidence<'_>,
    grace: Option<Duration>,
    seen: &Seen<'_>,
) -> Verdict {
    let Some(attempt) = r.attempts.last() else { return Verdict::Wait("no attempt recorded".into()) };
    let Some(sent) = attempt.server_sent_at else {
        return Verdict::Wait(
            "its intent has no time on Intune's clock (recorded by an older version): decide with `reconcile state resolve`".into(),
        );
    };
    if let Some(trace) = trace_after_intent(kind, sent - tol(), seen) {
        return trace;
    }
    if let Some(state) = kind.issued_state(ev.management_state) {
        return Verdict::Change {
            status: Status::Accepted,
            note: format!("the device is `{state}`: the {} reached Intune", kind.wording.short),
            result_started: None,
            audit_id: None,
        };
    }
    let audit_note = match ev.audits {
        // Nothing to read: the audit log has no name for it (a sync).
        _ if !kind.is_audited() => format!("the audit log does not record a {}", kind.graph_name),
        AuditView::Read(_) => "no entry in the audit log".to_owned(),
        AuditView::NotPermitted(why) => format!("audit log not consulted: {why}"),
        // A second send of a harmless kind does no harm: the results alone decide.
        AuditView::Unavailable(why) if kind.harmless() => format!("the audit log could not be read ({why})"),
        AuditView::Unavailable(why) => {
            return Verdict::Wait(format!("the audit log could not be read this time ({why}): no decision"));
        }
    };
    let Some(grace) = grace else {
        return Verdict::Wait(
            "no trace in Intune, and graph.unknownGrace is `never`: decide with `reconcile state resolve`".into(),
        );
    };
    let Some(now) = ev.server_now else {
        return Verdict::Wait("Graph's answer had no Date: Intune's clock is unknown, no decision".into());
    };
    // The request may have been in the air until we gave up on it.
    let in_air = attempt
        .finished_at
        .map_or(SignedDuration::ZERO, |f| f.duration_since(attempt.started_at).max(SignedDuration::ZERO));
    // The clock error (a `Date` is whole seconds) is added to the grace; a grace of `0s` (tests,
    // the simulator) decides on the first read that shows nothing.
    let grace_sd = SignedDuration::try_from(grace).unwrap_or(SignedDuration::MAX);
    let required = if grace.is_zero() { SignedDuration::ZERO } else { grace_sd.saturating_add(tol()) };
    let waited = now.duration_since(sent) - in_air;
    if !grace.is_zero() && waited < required {
        return Verdict::Wait(format!(
            "no trace in Intune yet; {} of the {} grace passed on Intune's clock",
            crate::duration::HumanDuration(Duration::try_from(waited.max(SignedDuration::ZERO)).unwrap_or_default()),
            crate::duration::HumanDuration(grace)
        ));
    }
    let device = if ev.results.is_none() {
        "the device no longer exists".to_owned()
    } else {
        format!("no {} result at or after the intent", kind.graph_name)
    };
    let then = if kind.harmless() {
        format!(
            "no trace of it in Intune; a second {} does no harm, so the next apply sends it again without a person",
            kind.wording.short
        )
    } else {
        "the request never took effect; the next apply sends it".to_owned()
    };
    Verdict::Change {
        status: Status::NotExecuted,
        note: format!(
            "{device} ({sent} on Intune's clock), {audit_note}, {} of Intune's time passed (grace {}): {then}",
            crate::duration::HumanDuration(Duration::try_from(waited).unwrap_or_default()),
            crate::duration::HumanDuration(grace)
        ),
        result_started: None,
        audit_id: None,
    }
}

/// What Intune shows of the `kind` since `from` (an unknown record's intent) that may be the
/// record's own: a result (never sendable then), or an audit entry no other record claimed (it
/// reached Intune). `None`: no trace.
fn trace_after_intent(kind: &DeviceAction, from: Timestamp, seen: &Seen<'_>) -> Option<Verdict> {
    let Seen { results: resets, audits, claimed_audits, by_person } = *seen;
    // Any reset at or after the intent may be this one (Intune keeps only the latest result of
    // an action, and another record's claim may be the wrong one): never sendable then.
    if let Some((_, start)) = resets.iter().find(|(_, s)| *s >= from && !by_person(*s)) {
        return Some(Verdict::Wait(format!(
            "Intune shows a {} started at {start} that may be this one, but another action claimed it",
            kind.wording.short
        )));
    }
    let ours = |a: &&RemoteActionAudit| a.request_date_time.is_some_and(|t| t >= from) && !a.by_person();
    if let Some(a) = audits.iter().filter(ours).find(|a| !claimed_audits.contains(a.id.as_str())) {
        let at = a.request_date_time.map(|t| t.to_string()).unwrap_or_default();
        return Some(Verdict::Change {
            status: Status::Accepted,
            note: format!(
                "the audit log shows a {} requested at {at} (audit {}): it reached Intune",
                kind.graph_name, a.id
            ),
            result_started: None,
            audit_id: Some(a.id.clone()),
        });
    }
    if audits.iter().any(|a| ours(&a)) {
        return Some(Verdict::Wait(format!(
            "the audit log shows a {} after the intent that another action claimed",
            kind.wording.short
        )));
    }
    None
}

/// Records each verdict on its record: a change (with its evidence, on the record's last
/// attempt) goes to `updates`, a wait is counted (an unknown one with why it waits).
pub(crate) fn record_verdicts(
    verdicts: impl Iterator<Item = (Record, Option<Verdict>)>,
    server_date: Option<Timestamp>,
    now: Timestamp,
    report: &mut RefreshReport,
    updates: &mut Vec<StatusChange>,
) {
    for (mut record, verdict) in verdicts {
        match verdict {
            Some(Verdict::Change { status, note, result_started, audit_id }) => {
                let from = record.status;
                if from == status {
                    report.waiting += 1;
                }
                record.status = status;
                record.updated_at = now;
                if let Some(a) = record.attempts.last_mut() {
                    a.resolution = Some(Box::new(Resolution {
                        by: "refresh".into(),
                        at: now,
                        server_time: server_date,
                        status,
                        note: note.clone(),
                        result_started,
                        audit_id,
                    }));
                }
                updates.push(StatusChange { record, from, note });
            }
            Some(Verdict::Wait(why)) => {
                report.waiting += 1;
                if record.status == Status::Unknown {
                    report.unresolved.push((record, why));
                }
            }
            None => {}
        }
    }
}

/// The records of every device with an `accepted` or `unknown` action, by kind, collection and
/// device id: all of the ledger's records of that device and kind, whatever their status.
pub(crate) fn pending_by_device(ledger: &Ledger) -> BTreeMap<(ActionKind, Collection, String), Vec<Record>> {
    let mut by_device: BTreeMap<(ActionKind, Collection, String), Vec<Record>> = BTreeMap::new();
    let device_of = |r: &Record| r.managed_device_id.as_ref().map(|id| (r.kind, r.collection, id.to_ascii_lowercase()));
    for r in ledger.records.values().filter(|r| is_pending(r)) {
        if let Some(d) = device_of(r) {
            by_device.entry(d).or_default();
        }
    }
    for r in ledger.records.values() {
        if let Some(list) = device_of(r).and_then(|d| by_device.get_mut(&d)) {
            list.push(r.clone());
        }
    }
    by_device
}

/// The audit log's entries of the `kind` on device `id` (none when it was not read).
pub(crate) fn audits_of(audits: &Result<Audits, String>, kind: &DeviceAction, id: &str) -> Vec<RemoteActionAudit> {
    match audits {
        Ok(Audits::Read(all)) => all
            .iter()
            .filter(|a| a.managed_device_id.as_deref().is_some_and(|d| d.eq_ignore_ascii_case(id)))
            .filter(|a| a.action.as_deref().is_some_and(|n| kind.is_reported_as(n)))
            .cloned()
            .collect(),
        _ => Vec::new(),
    }
}

/// What the audit log must be asked for: from the earliest intent of an `unknown` action, less
/// five minutes, the `remoteAction` names of the kinds of the `unknown` actions
/// ([`crate::core::kinds::audit_names`]); `None` when no action is `unknown` or none of their
/// kinds is audited (the audit log is then not needed).
pub(crate) fn audit_query(
    by_device: &BTreeMap<(ActionKind, Collection, String), Vec<Record>>,
) -> Option<(Timestamp, Vec<&'static str>)> {
    let unknown = || by_device.values().flatten().filter(|r| r.status == Status::Unknown);
    let names = crate::core::kinds::audit_names(unknown().map(|r| r.kind));
    let since = unknown()
        .filter_map(|r| r.attempts.last().map(|a| a.server_sent_at.unwrap_or(a.started_at - LEGACY_SKEW)))
        .min()
        .map(|t| t - SignedDuration::from_mins(5))?;
    (!names.is_empty()).then_some((since, names))
}

/// How many of `records` are still pending (`accepted` or `unknown`).
pub(crate) fn pending_count(records: &[Record]) -> usize {
    records.iter().filter(|r| is_pending(r)).count()
}

#[cfg(test)]
mod tests;

//! Which resets are outside this tool: every case that could hide one (a second reset) or invent
//! one (a reset never sent).

use super::*;
use crate::core::device::ActionResult;
use crate::core::kinds::reset_passcode::RESET_PASSCODE as RESET;
use crate::ledger::{Adoption, Attempt, Status};

fn ts(s: &str) -> Timestamp {
    s.parse().expect("ts")
}

const SINCE: &str = "2026-11-30T00:00:00Z";
const NOW: &str = "2026-11-30T12:00:00Z";

fn device(results: &[(&str, &str, &str)]) -> Device {
    let mut d: Device = serde_json::from_value(serde_json::json!({"id": "DEV-1"})).expect("device");
    d.device_action_results = results
        .iter()
        .map(|(name, state, start)| ActionResult {
            action_name: (*name).into(),
            action_state: (*state).into(),
            start_date_time: Some(ts(start)),
            last_updated_date_time: None,
        })
        .collect();
    d
}

fn audit(id: &str, at: &str, by: &str, state: &str) -> RemoteActionAudit {
    RemoteActionAudit {
        id: id.into(),
        action: Some(RESET.graph_name.into()),
        action_state: Some(state.into()),
        managed_device_id: Some("dev-1".into()),
        request_date_time: Some(ts(at)),
        initiated_by_user_principal_name: Some(by.into()),
    }
}

/// A ledger with one record of device `dev-1` sent at `sent` (Intune's clock), answered `status`.
fn ledger_with(sent: Option<&str>, http: u16) -> Ledger {
    let mut ledger = Ledger::empty();
    if let Some(sent) = sent {
        let mut r = crate::ledger::tests::record("m", "S1", Status::Accepted);
        r.managed_device_id = Some("dev-1".into());
        r.attempts.push(Attempt {
            started_at: ts(sent),
            server_sent_at: Some(ts(sent)),
            server_date: Some(ts(sent) + SignedDuration::from_secs(1)),
            http_status: Some(http),
            client_request_id: uuid::Uuid::new_v4(),
            ..Attempt::default()
        });
        ledger.records.insert(r.key.clone(), r);
    }
    ledger
}

fn find(d: &Device, audits: &AuditLog, ledger: &Ledger) -> Option<OutOfBand> {
    latest(&RESET, d, audits, &Claims::new(ledger), ts(SINCE))
}

#[test]
fn a_portal_reset_with_its_initiator_is_outside() {
    let d = device(&[(RESET.graph_name, "done", "2026-11-30T11:20:00Z")]);
    let log = AuditLog::read(vec![audit("a1", "2026-11-30T11:20:01Z", "bob@contoso.com", "done")]);
    let o = find(&d, &log, &Ledger::empty()).expect("outside");
    assert_eq!(o.started_at, ts("2026-11-30T11:20:00Z"));
    assert_eq!(o.initiated_by.as_deref(), Some("bob@contoso.com"));
    assert_eq!(o.audit_id.as_deref(), Some("a1"));
    assert_eq!(o.describe(ts(NOW), "reset"), "reset outside reconcile 40 min ago by bob@contoso.com (done)");
    // Without the audit log: still seen, initiator unknown.
    let o = find(&d, &AuditLog::unreadable(), &Ledger::empty()).expect("outside");
    assert_eq!(o.who(), "someone (the audit log could not be read)");
    // Read, no entry: an app.
    assert_eq!(find(&d, &AuditLog::read(Vec::new()), &Ledger::empty()).expect("outside").who(), "an app");
}

#[test]
fn resets_before_the_window_failed_ones_and_other_actions_are_not() {
    let none = AuditLog::default();
    let empty = Ledger::empty();
    assert_eq!(find(&device(&[(RESET.graph_name, "done", "2026-11-29T23:59:59Z")]), &none, &empty), None);
    for state in ["failed", "canceled", "notSupported", "none"] {
        assert_eq!(find(&device(&[(RESET.graph_name, state, "2026-11-30T11:00:00Z")]), &none, &empty), None, "{state}");
    }
    assert_eq!(find(&device(&[("remoteLock", "done", "2026-11-30T11:00:00Z")]), &none, &empty), None);
    // iOS/iPadOS passcode removal, and names in any case, count.
    assert!(find(&device(&[("REMOVEPASSCODE", "pending", "2026-11-30T11:00:00Z")]), &none, &empty).is_some());
}

#[test]
fn the_ledgers_own_resets_are_not_outside() {
    let d = device(&[(RESET.graph_name, "done", "2026-11-30T10:00:30Z")]);
    // Sent at 10:00 (answered 204): its result.
    assert_eq!(find(&d, &AuditLog::default(), &ledger_with(Some("2026-11-30T10:00:00Z"), 204)), None);
    // Sent and answered 429 (never ran): the result is someone else's.
    assert!(find(&d, &AuditLog::default(), &ledger_with(Some("2026-11-30T10:00:00Z"), 429)).is_some());
    // Sent long before: not in the air then.
    assert!(find(&d, &AuditLog::default(), &ledger_with(Some("2026-11-30T09:00:00Z"), 204)).is_some());
    // In the air, but the audit log says a person started it: outside.
    let log = AuditLog::read(vec![audit("a1", "2026-11-30T10:00:31Z", "bob@contoso.com", "done")]);
    assert!(find(&d, &log, &ledger_with(Some("2026-11-30T10:00:00Z"), 204)).is_some());
}

#[test]
fn an_adopted_or_claimed_reset_is_accounted_for() {
    let d = device(&[(RESET.graph_name, "done", "2026-11-30T11:20:00Z")]);
    let log = AuditLog::read(vec![audit("a1", "2026-11-30T11:20:01Z", "bob@contoso.com", "done")]);
    let mut ledger = Ledger::empty();
    let mut r = crate::ledger::tests::record("m", "S1", Status::Done);
    r.managed_device_id = Some("DEV-1".into());
    r.adopted = Some(Box::new(Adoption {
        result_started: ts("2026-11-30T11:20:00Z"),
        state: "done".into(),
        audit_id: Some("a1".into()),
        ..Adoption::default()
    }));
    ledger.records.insert(r.key.clone(), r);
    assert_eq!(find(&d, &log, &ledger), None, "adopted, even though a person started it");
    // The audit entry alone, claimed by id.
    assert_eq!(find(&device(&[]), &log, &ledger), None);
}

#[test]
fn the_audit_log_alone_shows_a_reset_the_listing_left_out() {
    let log = AuditLog::read(vec![
        audit("a1", "2026-11-30T11:00:00Z", "bob@contoso.com", "done"),
        audit("a2", "2026-11-30T11:30:00Z", "eve@contoso.com", "failed"),
        audit("a0", "2026-11-29T11:30:00Z", "old@contoso.com", "done"),
    ]);
    let o = find(&device(&[]), &log, &Ledger::empty()).expect("outside");
    assert_eq!((o.audit_id.as_deref(), o.initiated_by.as_deref()), (Some("a1"), Some("bob@contoso.com")));
    // The device's own result says that reset failed: not a reset.
    let d = device(&[(RESET.graph_name, "failed", "2026-11-30T11:00:00Z")]);
    assert_eq!(find(&d, &log, &Ledger::empty()), None);
}

#[test]
fn the_latest_is_shown_and_initiators_cannot_inject_output() {
    let d = device(&[
        (RESET.graph_name, "done", "2026-11-30T08:00:00Z"),
        (RESET.graph_name, "pending", "2026-11-30T11:59:00Z"),
    ]);
    let log = AuditLog::read(vec![audit("a9", "2026-11-30T11:59:00Z", "x\u{1b}[2J\n::error::pwned", "pending")]);
    let o = find(&d, &log, &Ledger::empty()).expect("outside");
    assert_eq!(o.started_at, ts("2026-11-30T11:59:00Z"));
    let text = o.describe(ts(NOW), "reset");
    assert!(text.starts_with("reset outside reconcile 1 min ago by x"), "{text}");
    assert!(!text.contains('\n') && !text.contains('\u{1b}'), "{text}");
}

#[test]
fn who_and_when_read_as_a_person_says_them() {
    let mut o = OutOfBand {
        started_at: ts("2026-11-30T11:59:40Z"),
        state: "done".into(),
        initiated_by: Some(" ".into()),
        audit_id: Some("a1".into()),
        audited: true,
        source: crate::ledger::EvidenceSource::DeviceActionResult,
    };
    assert_eq!(o.who(), "an app", "a blank initiator is an app");
    assert_eq!(o.describe(ts(NOW), "reset"), "reset outside reconcile just now by an app (done)");
    o.started_at = ts("2026-11-30T09:00:00Z");
    assert!(o.describe(ts(NOW), "reset").contains(" 3 h ago "), "{}", o.describe(ts(NOW), "reset"));
    o.started_at = ts("2026-11-27T12:00:00Z");
    assert!(o.describe(ts(NOW), "reset").contains(" 3 days ago "), "{}", o.describe(ts(NOW), "reset"));
}

#[test]
fn the_audit_log_says_which_devices_it_has() {
    let log = AuditLog::read(vec![audit("a1", "2026-11-30T11:00:00Z", "bob@contoso.com", "done")]);
    assert!(log.has(&RESET, "DEV-1") && !log.has(&RESET, "dev-2"));
    assert!(!AuditLog::unreadable().has(&RESET, "dev-1"));
    let other =
        RemoteActionAudit { action: Some("remoteLock".into()), ..audit("a2", "2026-11-30T11:00:00Z", "x", "done") };
    assert!(!AuditLog::read(vec![other]).has(&RESET, "dev-1"), "only actions of a known kind are kept");
}

#[test]
fn claims_count_by_start_alone_and_by_audit_id_alone() {
    let d = device(&[(RESET.graph_name, "done", "2026-11-30T11:20:00Z")]);
    let mut ledger = Ledger::empty();
    // Adopted with no audit entry (the audit log was unreadable): the start time claims it.
    let mut r = crate::ledger::tests::record("m", "S1", Status::Done);
    r.managed_device_id = Some("dev-1".into());
    r.adopted = Some(Box::new(Adoption { result_started: ts("2026-11-30T11:20:00Z"), ..Adoption::default() }));
    ledger.records.insert(r.key.clone(), r);
    assert_eq!(find(&d, &AuditLog::default(), &ledger), None);

    // Refresh claimed it for an attempt sent long before (not in the air then): by start...
    let claimed = |result_started: Option<&str>, audit_id: Option<&str>| {
        let mut ledger = ledger_with(Some("2026-11-30T06:00:00Z"), 204);
        let r = ledger.records.values_mut().next().expect("record");
        r.attempts[0].resolution = Some(Box::new(crate::ledger::Resolution {
            result_started: result_started.map(ts),
            audit_id: audit_id.map(str::to_owned),
            ..crate::ledger::Resolution::default()
        }));
        ledger
    };
    assert_eq!(find(&d, &AuditLog::default(), &claimed(Some("2026-11-30T11:20:00Z"), None)), None);
    assert!(find(&d, &AuditLog::default(), &claimed(Some("2026-11-30T11:19:00Z"), None)).is_some());
    // ...or by the audit entry it claimed.
    let log = AuditLog::read(vec![audit("a7", "2026-11-30T11:20:01Z", "", "done")]);
    assert_eq!(find(&d, &log, &claimed(None, Some("a7"))), None);
    assert!(find(&d, &log, &claimed(None, Some("a8"))).is_some());
}

#[test]
fn an_audit_only_reset_after_a_matched_one_is_the_latest() {
    let d = device(&[(RESET.graph_name, "done", "2026-11-30T11:00:00Z")]);
    let log = AuditLog::read(vec![
        audit("a1", "2026-11-30T11:00:01Z", "bob@contoso.com", "done"),
        audit("a2", "2026-11-30T11:40:00Z", "eve@contoso.com", "pending"),
    ]);
    let o = find(&d, &log, &Ledger::empty()).expect("outside");
    assert_eq!((o.audit_id.as_deref(), o.initiated_by.as_deref()), (Some("a2"), Some("eve@contoso.com")));
}

#[test]
fn resets_after_the_runs_intent_for_the_device_may_be_its_own() {
    // apply sends a reset for one manifest, then looks up another manifest's entry for the same
    // device: the ledger as locked does not know the first, but the run does.
    let d = device(&[(RESET.graph_name, "done", "2026-11-30T11:20:00Z")]);
    let log = AuditLog::read(vec![audit("a1", "2026-11-30T11:20:01Z", "", "done")]);
    assert!(find(&d, &log, &Ledger::empty()).is_some());
    let tolerance = jiff::SignedDuration::from_secs(2);
    let with = |notes: &[(&str, &str)]| {
        let own = OwnIntents::default();
        for (id, at) in notes {
            own.note(id, ts(at));
        }
        log.clone().with_own_intents(own, tolerance)
    };
    // The run's intent for this device came first (ids compare case-insensitively): its own.
    let run = with(&[("dev-1", "2026-11-30T11:19:59Z")]);
    assert_eq!(find(&d, &run, &Ledger::empty()), None);
    assert_eq!(find(&device(&[]), &run, &Ledger::empty()), None, "the audit entry alone neither");
    // Within the stamps' tolerance after the reset: still possibly its own.
    assert_eq!(find(&d, &with(&[("DEV-1", "2026-11-30T11:20:01.5Z")]), &Ledger::empty()), None);
    // An intent well after the reset: the reset was made outside, before the run touched it.
    assert!(find(&d, &with(&[("DEV-1", "2026-11-30T11:20:03Z")]), &Ledger::empty()).is_some());
    // An intent for another device, however early, says nothing about this one.
    assert!(find(&d, &with(&[("DEV-2", "2026-11-30T10:00:00Z")]), &Ledger::empty()).is_some());
    // No intent at all this run: outside.
    assert!(find(&d, &with(&[]), &Ledger::empty()).is_some());
    // The first intent for a device counts, whatever order they are noted in.
    assert_eq!(
        find(&d, &with(&[("DEV-1", "2026-11-30T11:30:00Z"), ("DEV-1", "2026-11-30T11:19:00Z")]), &Ledger::empty()),
        None
    );
}

// An adoption's sentence is made from its data when shown: absolute, past; an older ledger's
// record (no `evidence`) says so rather than guess who started it.
#[test]
fn an_adoption_is_described_from_its_evidence() {
    use crate::ledger::{Evidence, EvidenceSource};
    let mut a = Adoption {
        by: "apply".into(),
        reason: Adoption::BY_POLICY.into(),
        result_started: ts("2026-11-30T11:20:00Z"),
        state: "done".into(),
        evidence: Some(Evidence { source: EvidenceSource::AuditLog, audit_log_read: true }),
        audit_id: Some("a1".into()),
        ..Adoption::default()
    };
    assert_eq!(a.seen("reset"), "reset outside reconcile at 2026-11-30T11:20:00Z by an app (done)");
    assert_eq!(a.seen_ago(ts(NOW), "reset"), "reset outside reconcile 40 min ago by an app (done)");
    assert_eq!(a.source().as_deref(), Some("the audit log (audit entry a1)"));
    assert_eq!((a.why(), a.earlier_wording()), (Adoption::BY_POLICY, None));
    a.evidence = Some(Evidence { source: EvidenceSource::DeviceActionResult, audit_log_read: false });
    a.audit_id = None;
    assert!(a.seen("reset").contains(" by someone (the audit log could not be read) "), "{}", a.seen("reset"));
    assert_eq!(a.source().as_deref(), Some("the device's action results"));
    // Written by an older version: the sentence of that moment, no evidence.
    a.evidence = None;
    a.reason = "reset outside reconcile 40 min ago by an app (done) — adopted, nothing will be sent".into();
    assert!(a.seen("reset").contains(" by someone (not recorded) "), "{}", a.seen("reset"));
    assert_eq!(a.source(), None);
    assert_eq!(a.why(), Adoption::BY_POLICY);
    assert_eq!(a.earlier_wording(), Some(a.reason.as_str()));
    // A person's reason is theirs, whatever the version.
    a.by = "alice@host".into();
    a.reason = "INC-1".into();
    assert_eq!((a.why(), a.earlier_wording()), ("INC-1", None));
}

// `apply` and `state adopt` record an adoption through one builder: what Intune showed, as data,
// and the record done with nothing sent.
#[test]
fn an_adoption_records_the_resets_evidence() {
    let d = device(&[(RESET.graph_name, "done", "2026-11-30T11:20:00Z")]);
    let log = AuditLog::read(vec![audit("a1", "2026-11-30T11:20:01Z", "bob@contoso.com", "done")]);
    let o = find(&d, &log, &Ledger::empty()).expect("outside");
    let provenance = crate::ledger::Provenance { ci: Some("local".into()), ..Default::default() };
    let a = Adoption::of(&o, ts(NOW), "apply".into(), Adoption::BY_POLICY.into(), provenance.clone());
    assert_eq!(a.seen("reset"), "reset outside reconcile at 2026-11-30T11:20:00Z by bob@contoso.com (done)");
    assert_eq!(a.source().as_deref(), Some("the device's action results and audit entry a1"));
    assert_eq!(
        (a.at, a.by.as_str(), a.why(), a.provenance.as_ref()),
        (ts(NOW), "apply", Adoption::BY_POLICY, Some(&provenance))
    );
    let mut r = crate::ledger::tests::record("m", "S1", Status::Unknown);
    r.adopt(Some("Phone".into()), a.clone());
    assert_eq!((r.status, r.updated_at, r.device_name.as_deref()), (Status::Done, ts(NOW), Some("Phone")));
    assert_eq!(r.adopted, Some(Box::new(a)));
}

// Each kind is judged by its own names: a lock made in the portal is a lock outside reconcile,
// never a reset; a reset only in the audit log is not hidden by a lock's result started then.
#[test]
fn an_action_of_another_kind_does_not_count() {
    use crate::core::action::ActionKind;
    let lock = ActionKind::RemoteLock.spec();
    let d = device(&[("remoteLock", "done", "2026-11-30T11:50:00Z")]);
    let o = latest(lock, &d, &AuditLog::default(), &Claims::new(&Ledger::empty()), ts(SINCE)).expect("a lock");
    assert_eq!(o.started_at, ts("2026-11-30T11:50:00Z"));
    assert_eq!(find(&d, &AuditLog::default(), &Ledger::empty()), None, "a lock is not a reset");
    let reboot = ActionKind::RebootNow.spec();
    assert_eq!(latest(reboot, &d, &AuditLog::default(), &Claims::new(&Ledger::empty()), ts(SINCE)), None);

    let log = AuditLog::read(vec![audit("a1", "2026-11-30T11:50:30Z", "bob@contoso.com", "done")]);
    let o = find(&d, &log, &Ledger::empty()).expect("the reset of the audit log");
    assert_eq!(o.audit_id.as_deref(), Some("a1"));
    // A wipe is logged as `factoryReset`: matched by that name.
    let wipe = ActionKind::Wipe.spec();
    let wiped =
        RemoteActionAudit { action: Some("factoryReset".into()), ..audit("a2", "2026-11-30T11:00:00Z", "x", "done") };
    let o = latest(wipe, &device(&[]), &AuditLog::read(vec![wiped]), &Claims::new(&Ledger::empty()), ts(SINCE));
    assert_eq!(o.map(|o| o.audit_id), Some(Some("a2".into())));
}

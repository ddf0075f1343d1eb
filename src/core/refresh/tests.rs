//! The pure `decide` rule: every case that could send a second reset, or miss one.

use super::*;
use crate::core::kinds::reset_passcode::RESET_PASSCODE as RESET;
use crate::ledger::Attempt;

const GRACE: Option<Duration> = Some(Duration::from_secs(900));

fn ts(s: &str) -> Timestamp {
    s.parse().expect("ts")
}

/// A record whose last attempt was sent at `local` on our clock and `server` on Intune's.
fn record(serial: &str, status: Status, local: &str, server: Option<&str>) -> Record {
    let mut r = crate::ledger::tests::record("m", serial, status);
    r.managed_device_id = Some("dev-1".into());
    r.attempts.push(Attempt {
        started_at: ts(local),
        server_sent_at: server.map(ts),
        client_request_id: uuid::Uuid::new_v4(),
        finished_at: Some(ts(local) + SignedDuration::from_secs(1)),
        ..Attempt::default()
    });
    r
}

fn result(name: &str, state: &str, start: &str) -> ActionResult {
    ActionResult {
        action_name: name.into(),
        action_state: state.into(),
        start_date_time: Some(ts(start)),
        last_updated_date_time: None,
    }
}

fn audit(id: &str, at: &str, by: Option<&str>) -> RemoteActionAudit {
    RemoteActionAudit {
        id: id.into(),
        action: Some(RESET.graph_name.into()),
        action_state: Some("done".into()),
        managed_device_id: Some("dev-1".into()),
        request_date_time: Some(ts(at)),
        initiated_by_user_principal_name: by.map(str::to_owned),
    }
}

fn ev<'a>(results: &'a [ActionResult], now: &str, audits: &'a [RemoteActionAudit]) -> Evidence<'a> {
    Evidence {
        results: Some(results),
        management_state: None,
        server_now: Some(ts(now)),
        audits: AuditView::Read(audits),
    }
}

fn statuses(v: &[Option<Verdict>]) -> Vec<Option<Status>> {
    v.iter()
        .map(|x| match x {
            Some(Verdict::Change { status, .. }) => Some(*status),
            _ => None,
        })
        .collect()
}

fn one(r: &Record, e: &Evidence<'_>, grace: Option<Duration>) -> Option<Status> {
    statuses(&decide(&RESET, &[r], e, grace))[0]
}

#[test]
fn a_matching_result_gives_its_state_and_pending_changes_nothing() {
    let r = record("S1", Status::Accepted, "2026-11-27T10:00:00Z", Some("2026-11-27T10:00:00Z"));
    let done = [result("ResetPasscode", "done", "2026-11-27T10:00:01Z")];
    assert_eq!(one(&r, &ev(&done, "2026-11-27T10:05:00Z", &[]), GRACE), Some(Status::Done));
    let pending = [result(RESET.graph_name, "pending", "2026-11-27T10:00:01Z")];
    let v = decide(&RESET, &[&r], &ev(&pending, "2026-11-27T10:05:00Z", &[]), GRACE);
    assert!(
        matches!(&v[0], Some(Verdict::Change { status: Status::Accepted, result_started: Some(_), .. })),
        "the claim is recorded: {v:?}"
    );
    let unknown = record("S1", Status::Unknown, "2026-11-27T10:00:00Z", Some("2026-11-27T10:00:00Z"));
    assert_eq!(one(&unknown, &ev(&pending, "2026-11-27T10:05:00Z", &[]), GRACE), Some(Status::Accepted));
}

// Regression: the runner's clock was 90 s ahead of Intune's. Matching on the local
// time (less a fixed 60 s) missed the result, and after the grace the action was re-sent.
#[test]
fn runner_clock_ahead_of_intune_still_matches_on_intunes_clock() {
    let r = record("S1", Status::Unknown, "2026-11-27T10:01:30Z", Some("2026-11-27T10:00:00Z"));
    let res = [result(RESET.graph_name, "done", "2026-11-27T10:00:01Z")];
    assert_eq!(one(&r, &ev(&res, "2026-11-27T10:30:00Z", &[]), GRACE), Some(Status::Done));
}

// The grace is measured on Intune's clock (the Date of the read), not the runner's.
#[test]
fn the_grace_counts_intunes_time_and_never_means_never() {
    let r = record("S1", Status::Unknown, "2026-11-27T12:00:00Z", Some("2026-11-27T10:00:00Z"));
    let early = ev(&[], "2026-11-27T10:10:00Z", &[]);
    assert_eq!(one(&r, &early, GRACE), None, "10 min of Intune's time: wait, whatever the runner's clock says");
    // Grace 15 min, plus the second the request was in the air, plus the tolerance.
    assert_eq!(one(&r, &ev(&[], "2026-11-27T10:15:02Z", &[]), GRACE), None);
    assert_eq!(one(&r, &ev(&[], "2026-11-27T10:15:03Z", &[]), GRACE), Some(Status::NotExecuted));
    assert_eq!(one(&r, &ev(&[], "2026-11-28T10:00:00Z", &[]), None), None, "`never`");
    let no_date = Evidence { server_now: None, ..ev(&[], "2026-11-28T10:00:00Z", &[]) };
    assert_eq!(one(&r, &no_date, GRACE), None, "no Date: no decision");
}

#[test]
fn an_intent_without_intunes_time_is_left_to_a_person() {
    let r = record("S1", Status::Unknown, "2026-11-27T10:00:00Z", None);
    assert_eq!(one(&r, &ev(&[], "2026-11-28T10:00:00Z", &[]), GRACE), None);
    // It may still take a result (that can only miss a reset).
    let res = [result(RESET.graph_name, "done", "2026-11-27T09:59:30Z")];
    assert_eq!(one(&r, &ev(&res, "2026-11-28T10:00:00Z", &[]), GRACE), Some(Status::Done));
}

#[test]
fn older_resets_and_other_actions_do_not_match() {
    let r = record("S1", Status::Unknown, "2026-11-27T10:00:00Z", Some("2026-11-27T10:00:00Z"));
    let res = [
        result(RESET.graph_name, "done", "2026-11-27T09:00:00Z"),
        result("remoteLock", "done", "2026-11-27T10:00:05Z"),
    ];
    assert_eq!(one(&r, &ev(&res, "2026-11-27T10:05:00Z", &[]), GRACE), None, "within the grace");
    assert_eq!(one(&r, &ev(&res, "2026-11-27T11:00:00Z", &[]), GRACE), Some(Status::NotExecuted));
}

// The audit log is evidence too: a request it shows reached Intune, even before a result does.
#[test]
fn the_audit_log_shows_the_request_reached_intune() {
    let r = record("S1", Status::Unknown, "2026-11-27T10:00:00Z", Some("2026-11-27T10:00:00Z"));
    let audits = [audit("a-1", "2026-11-27T10:00:00Z", None)];
    let v = decide(&RESET, &[&r], &ev(&[], "2026-11-27T11:00:00Z", &audits), GRACE);
    assert!(
        matches!(&v[0], Some(Verdict::Change { status: Status::Accepted, audit_id: Some(id), .. }) if id == "a-1"),
        "{v:?}"
    );
    // Not readable this time: no decision; not permitted: results alone decide (noted).
    let unavailable = Evidence { audits: AuditView::Unavailable("timeout"), ..ev(&[], "2026-11-27T11:00:00Z", &[]) };
    assert_eq!(one(&r, &unavailable, GRACE), None);
    let forbidden = Evidence { audits: AuditView::NotPermitted("HTTP 403"), ..ev(&[], "2026-11-27T11:00:00Z", &[]) };
    let v = decide(&RESET, &[&r], &forbidden, GRACE);
    assert!(
        matches!(&v[0], Some(Verdict::Change { status: Status::NotExecuted, note, .. }) if note.contains("audit log not consulted")),
        "{v:?}"
    );
}

// Regression: a result another record claimed, or a person's reset, is never taken.
#[test]
fn claimed_results_and_resets_by_people_are_never_taken() {
    let mut done = record("S0", Status::Done, "2026-11-27T09:00:00Z", Some("2026-11-27T09:00:00Z"));
    done.attempts[0].resolution = Some(Box::new(Resolution {
        by: "refresh".into(),
        status: Status::Done,
        result_started: Some(ts("2026-11-27T10:00:05Z")),
        ..Resolution::default()
    }));
    let u = record("S1", Status::Unknown, "2026-11-27T10:00:00Z", Some("2026-11-27T10:00:00Z"));
    let res = [result(RESET.graph_name, "done", "2026-11-27T10:00:05Z")];
    let v = decide(&RESET, &[&done, &u], &ev(&res, "2026-11-27T11:00:00Z", &[]), GRACE);
    assert_eq!(statuses(&v), [None, None], "the unknown one neither takes it nor becomes sendable: {v:?}");

    // A reset the audit log attributes to a person is not ours; with no audit entry of ours the
    // request never reached Intune.
    let portal = [result(RESET.graph_name, "done", "2026-11-27T10:10:00Z")];
    let audits = [audit("p-1", "2026-11-27T10:10:00Z", Some("bob@contoso.com"))];
    assert_eq!(one(&u, &ev(&portal, "2026-11-27T10:12:00Z", &audits), GRACE), None, "within the grace");
    assert_eq!(one(&u, &ev(&portal, "2026-11-27T11:00:00Z", &audits), GRACE), Some(Status::NotExecuted));
    // Without the audit log, that reset may be ours: taken (a missed reset at worst).
    assert_eq!(one(&u, &ev(&portal, "2026-11-27T11:00:00Z", &[]), GRACE), Some(Status::Done));
}

// Two actions on one device must not both take the one reset Intune shows, and the one left over
// must not be re-sent: that reset may have been its own.
#[test]
fn one_result_counts_for_one_action_and_ambiguity_is_never_resent() {
    let a = record("S1", Status::Unknown, "2026-11-27T10:00:00Z", Some("2026-11-27T10:00:00Z"));
    let b = record("S2", Status::Unknown, "2026-11-27T10:00:10Z", Some("2026-11-27T10:00:10Z"));
    let one_res = [result(RESET.graph_name, "done", "2026-11-27T10:00:11Z")];
    let v = decide(&RESET, &[&a, &b], &ev(&one_res, "2026-11-27T12:00:00Z", &[]), GRACE);
    assert_eq!(statuses(&v), [Some(Status::Done), None], "the earliest intent takes it; the other stays unknown");
    let two = [
        result(RESET.graph_name, "done", "2026-11-27T10:00:01Z"),
        result(RESET.graph_name, "failed", "2026-11-27T10:00:11Z"),
    ];
    let v = decide(&RESET, &[&a, &b], &ev(&two, "2026-11-27T12:00:00Z", &[]), GRACE);
    assert_eq!(statuses(&v), [Some(Status::Done), Some(Status::Failed)]);
}

#[test]
fn a_claimed_result_is_followed_to_its_final_state() {
    let mut r = record("S1", Status::Accepted, "2026-11-27T10:00:00Z", Some("2026-11-27T10:00:00Z"));
    r.attempts[0].resolution =
        Some(Box::new(Resolution { result_started: Some(ts("2026-11-27T10:00:02Z")), ..Resolution::default() }));
    let res = [
        result(RESET.graph_name, "done", "2026-11-27T10:00:02Z"),
        result(RESET.graph_name, "pending", "2026-11-27T10:30:00Z"),
    ];
    assert_eq!(one(&r, &ev(&res, "2026-11-27T11:00:00Z", &[]), GRACE), Some(Status::Done));
}

#[test]
fn a_device_that_is_gone_makes_unknown_sendable_after_the_grace_only() {
    let r = record("S1", Status::Unknown, "2026-11-27T10:00:00Z", Some("2026-11-27T10:00:00Z"));
    let gone = |now: &str| Evidence { results: None, ..ev(&[], now, &[]) };
    assert_eq!(one(&r, &gone("2026-11-27T10:05:00Z"), GRACE), None);
    assert_eq!(one(&r, &gone("2026-11-27T11:00:00Z"), GRACE), Some(Status::NotExecuted));
}

// Regression: an unknown action sent before an accepted one on the same device took
// the accepted one's result and was marked done without ever having run.
#[test]
fn an_unknown_action_never_takes_the_result_of_an_accepted_one() {
    let u = record("S1", Status::Unknown, "2026-11-27T10:00:00Z", Some("2026-11-27T10:00:00Z"));
    let a = record("S2", Status::Accepted, "2026-11-27T10:05:00Z", Some("2026-11-27T10:05:00Z"));
    let res = [result(RESET.graph_name, "done", "2026-11-27T10:05:01Z")];
    let v = decide(&RESET, &[&u, &a], &ev(&res, "2026-11-27T12:00:00Z", &[]), GRACE);
    assert_eq!(statuses(&v), [None, Some(Status::Done)], "{v:?}");
}

#[test]
fn every_action_state_maps_to_its_status() {
    for (state, want) in [
        ("done", Some(Status::Done)),
        ("failed", Some(Status::Failed)),
        ("notSupported", Some(Status::NotSupported)),
        ("canceled", Some(Status::Canceled)),
        ("cancelled", Some(Status::Canceled)),
        ("pending", Some(Status::Accepted)),
        ("active", Some(Status::Accepted)),
    ] {
        let r = record("S1", Status::Unknown, "2026-11-27T10:00:00Z", Some("2026-11-27T10:00:00Z"));
        let res = [result(RESET.graph_name, state, "2026-11-27T10:00:01Z")];
        assert_eq!(one(&r, &ev(&res, "2026-11-27T10:05:00Z", &[]), GRACE), want, "{state}");
    }
}

#[test]
fn records_that_are_not_pending_get_no_verdict() {
    let mut done = record("S0", Status::Done, "2026-11-27T09:00:00Z", Some("2026-11-27T09:00:00Z"));
    done.attempts[0].resolution =
        Some(Box::new(Resolution { result_started: Some(ts("2026-11-27T09:00:01Z")), ..Resolution::default() }));
    let rejected = record("S1", Status::Rejected, "2026-11-27T09:30:00Z", Some("2026-11-27T09:30:00Z"));
    let res = [
        result(RESET.graph_name, "done", "2026-11-27T09:00:01Z"),
        result(RESET.graph_name, "done", "2026-11-27T09:30:01Z"),
    ];
    let v = decide(&RESET, &[&done, &rejected], &ev(&res, "2026-11-27T12:00:00Z", &[]), GRACE);
    assert_eq!(v, [None, None]);
}

#[test]
fn a_claimed_result_still_pending_changes_nothing() {
    let mut r = record("S1", Status::Accepted, "2026-11-27T10:00:00Z", Some("2026-11-27T10:00:00Z"));
    r.attempts[0].resolution =
        Some(Box::new(Resolution { result_started: Some(ts("2026-11-27T10:00:02Z")), ..Resolution::default() }));
    let res = [result(RESET.graph_name, "pending", "2026-11-27T10:00:02Z")];
    let v = decide(&RESET, &[&r], &ev(&res, "2026-11-27T11:00:00Z", &[]), GRACE);
    assert!(matches!(&v[0], Some(Verdict::Wait(_))), "{v:?}");
}

// Only an audit entry by a person, at the result's time, makes a result someone else's.
#[test]
fn a_persons_audit_entry_elsewhere_in_time_does_not_hide_our_result() {
    let u = record("S1", Status::Unknown, "2026-11-27T10:00:00Z", Some("2026-11-27T10:00:00Z"));
    let res = [result(RESET.graph_name, "done", "2026-11-27T10:00:01Z")];
    let audits = [
        audit("ours", "2026-11-27T10:00:01Z", Some("")),
        audit("bob", "2026-11-27T09:00:00Z", Some("bob@contoso.com")),
    ];
    assert_eq!(one(&u, &ev(&res, "2026-11-27T11:00:00Z", &audits), GRACE), Some(Status::Done));
}

// One audit entry counts for one action: the second unknown action on the device waits.
#[test]
fn one_audit_entry_counts_for_one_action() {
    let a = record("S1", Status::Unknown, "2026-11-27T10:00:00Z", Some("2026-11-27T10:00:00Z"));
    let b = record("S2", Status::Unknown, "2026-11-27T10:00:05Z", Some("2026-11-27T10:00:05Z"));
    let audits = [audit("only", "2026-11-27T10:00:06Z", None)];
    let v = decide(&RESET, &[&a, &b], &ev(&[], "2026-11-27T11:00:00Z", &audits), GRACE);
    assert_eq!(statuses(&v), [Some(Status::Accepted), None], "{v:?}");
}

// Two results stamped alike (a Graph that keeps every result, in whole seconds): the first
// record's claim takes one of them, the second record the other — not "claimed" for both.
#[test]
fn two_results_with_one_start_are_two_results() {
    let mut first = record("S1", Status::Done, "2026-11-27T10:00:00Z", Some("2026-11-27T10:00:00Z"));
    first.attempts[0].resolution =
        Some(Box::new(Resolution { result_started: Some(ts("2026-11-27T10:00:01Z")), ..Resolution::default() }));
    let second = record("S2", Status::Accepted, "2026-11-27T10:00:00Z", Some("2026-11-27T10:00:00Z"));
    let one_result = [result(RESET.graph_name, "done", "2026-11-27T10:00:01Z")];
    let both = [one_result[0].clone(), one_result[0].clone()];
    let e = ev(&one_result, "2026-11-27T10:05:00Z", &[]);
    assert_eq!(statuses(&decide(&RESET, &[&first, &second], &e, GRACE)), [None, None], "one result, already claimed");
    let e = ev(&both, "2026-11-27T10:05:00Z", &[]);
    assert_eq!(statuses(&decide(&RESET, &[&first, &second], &e, GRACE)), [None, Some(Status::Done)]);
}

/// The verdicts of `kind` on `records` with evidence `e`, with their notes.
fn notes(kind: ActionKind, records: &[&Record], e: &Evidence<'_>) -> Vec<(Option<Status>, String)> {
    decide(kind.spec(), records, e, GRACE)
        .into_iter()
        .map(|v| match v {
            Some(Verdict::Change { status, note, .. }) => (Some(status), note),
            Some(Verdict::Wait(why)) => (None, why),
            None => (None, String::new()),
        })
        .collect()
}

const SENT: &str = "2026-11-27T10:00:00Z";
const LATER: &str = "2026-11-27T11:00:00Z";

fn unknown() -> Record {
    record("S1", Status::Unknown, SENT, Some(SENT))
}

// A harmless kind (a second send does no harm) is not held back by an audit log that could not
// be read: after the grace, with no result, the next apply sends it again, and the note says so.
// Every other kind keeps waiting for a person.
#[test]
fn a_harmless_unknown_action_is_sendable_again_without_the_audit_log() {
    let r = unknown();
    let unavailable = Evidence { audits: AuditView::Unavailable("timeout"), ..ev(&[], LATER, &[]) };
    for kind in
        [ActionKind::SyncDevice, ActionKind::WindowsDefenderScan, ActionKind::LocateDevice, ActionKind::DisableLostMode]
    {
        let (status, note) = notes(kind, &[&r], &unavailable).remove(0);
        assert_eq!(status, Some(Status::NotExecuted), "{kind:?}: {note}");
        assert!(note.contains("does no harm") && note.contains("without a person"), "{kind:?}: {note}");
    }
    for kind in [ActionKind::RemoteLock, ActionKind::Wipe, ActionKind::PasscodeReset, ActionKind::EnableLostMode] {
        let (status, note) = notes(kind, &[&r], &unavailable).remove(0);
        assert_eq!(status, None, "{kind:?} waits: {note}");
        assert!(note.contains("no decision"), "{kind:?}: {note}");
    }
    // Within the grace, or with a grace of `never`, a harmless one waits like any other.
    let soon = Evidence { audits: AuditView::Unavailable("timeout"), ..ev(&[], "2026-11-27T10:05:00Z", &[]) };
    assert_eq!(notes(ActionKind::SyncDevice, &[&r], &soon)[0].0, None);
    assert_eq!(statuses(&decide(ActionKind::SyncDevice.spec(), &[&r], &unavailable, None)), vec![None]);
    // A result at or after the intent is a trace: never sent again.
    let done = [result("syncDevice", "done", "2026-11-27T10:00:01Z")];
    assert_eq!(notes(ActionKind::SyncDevice, &[&r], &ev(&done, LATER, &[]))[0].0, Some(Status::Done));
    // The note of a kind that is not harmless says nothing of the kind.
    let (status, note) = notes(ActionKind::RemoteLock, &[&r], &ev(&[], LATER, &[])).remove(0);
    assert_eq!(status, Some(Status::NotExecuted));
    assert!(!note.contains("does no harm"), "{note}");
}

// The audit log has no name for a sync: it is never asked, and its silence is no evidence.
#[test]
fn a_sync_is_judged_without_the_audit_log_which_does_not_record_it() {
    let r = unknown();
    let (status, note) = notes(ActionKind::SyncDevice, &[&r], &ev(&[], LATER, &[])).remove(0);
    assert_eq!(status, Some(Status::NotExecuted));
    assert!(note.contains("the audit log does not record a syncDevice"), "{note}");
    let (_, lock) = notes(ActionKind::RemoteLock, &[&r], &ev(&[], LATER, &[])).remove(0);
    assert!(lock.contains("no entry in the audit log"), "{lock}");
}

// A pending wipe may show only in `managementState`: evidence it reached Intune. An unknown one
// becomes accepted (never sent again); an accepted one waits, saying why.
#[test]
fn a_wipe_or_retire_under_way_in_management_state_reached_intune() {
    let r = unknown();
    for (kind, state) in [
        (ActionKind::Wipe, "wipeIssued"),
        (ActionKind::Wipe, "WIPEPENDING"),
        (ActionKind::Retire, "retireIssued"),
        (ActionKind::Retire, "retirePending"),
    ] {
        let e = Evidence { management_state: Some(state), ..ev(&[], LATER, &[]) };
        let (status, note) = notes(kind, &[&r], &e).remove(0);
        assert_eq!(status, Some(Status::Accepted), "{kind:?} {state}: {note}");
        assert!(note.contains(state) && note.contains("reached Intune"), "{note}");
        let accepted = record("S1", Status::Accepted, SENT, Some(SENT));
        let (status, note) = notes(kind, &[&accepted], &e).remove(0);
        assert_eq!(status, None, "{kind:?}: stays accepted");
        assert!(note.contains("under way"), "{note}");
    }
    // Another removal's state, or another kind: no evidence of this action.
    let retiring = Evidence { management_state: Some("retirePending"), ..ev(&[], LATER, &[]) };
    assert_eq!(notes(ActionKind::Wipe, &[&r], &retiring)[0].0, Some(Status::NotExecuted));
    let wiping = Evidence { management_state: Some("wipePending"), ..ev(&[], LATER, &[]) };
    assert_eq!(notes(ActionKind::RemoteLock, &[&r], &wiping)[0].0, Some(Status::NotExecuted));
    let accepted = record("S1", Status::Accepted, SENT, Some(SENT));
    assert_eq!(notes(ActionKind::Wipe, &[&accepted], &ev(&[], LATER, &[]))[0].1, "Intune shows no result for it yet");
}

// A device gone (404) after a wipe or retire left the tenant, which is what the action does:
// done, accepted or unknown alike, never sent again, whatever the audit log says. Any other kind
// keeps the rule of every action.
#[test]
fn a_device_that_left_the_tenant_after_a_wipe_is_done_never_resent() {
    let r = unknown();
    let accepted = record("S2", Status::Accepted, SENT, Some(SENT));
    let done = record("S3", Status::Done, SENT, Some(SENT));
    for audits in [AuditView::Read(&[]), AuditView::Unavailable("timeout"), AuditView::NotPermitted("403")] {
        let gone = Evidence { results: None, audits, ..ev(&[], LATER, &[]) };
        for kind in [ActionKind::Wipe, ActionKind::Retire] {
            let v = notes(kind, &[&r, &accepted, &done], &gone);
            assert_eq!(v.iter().map(|x| x.0).collect::<Vec<_>>(), [Some(Status::Done), Some(Status::Done), None]);
            assert!(v[0].1.contains("left the tenant") && v[0].1.contains("never sent again"), "{}", v[0].1);
            assert!(v[1].1.contains("left the tenant"), "{}", v[1].1);
        }
    }
    let gone = Evidence { results: None, ..ev(&[], LATER, &[]) };
    let v = notes(ActionKind::RemoteLock, &[&r, &accepted], &gone);
    assert_eq!(v.iter().map(|x| x.0).collect::<Vec<_>>(), [Some(Status::NotExecuted), None]);
    assert!(v[0].1.contains("the device no longer exists"), "{}", v[0].1);
}

// Each kind's results are matched by its own name only: a lock's result is no evidence of a
// reboot, and the other way round.
#[test]
fn a_result_of_another_kind_is_no_evidence() {
    let r = unknown();
    let lock = [result("remoteLock", "done", "2026-11-27T10:00:01Z")];
    assert_eq!(notes(ActionKind::RebootNow, &[&r], &ev(&lock, LATER, &[]))[0].0, Some(Status::NotExecuted));
    assert_eq!(notes(ActionKind::RemoteLock, &[&r], &ev(&lock, LATER, &[]))[0].0, Some(Status::Done));
    let wipe = [result("wipe", "done", "2026-11-27T10:00:01Z")];
    assert_eq!(notes(ActionKind::Wipe, &[&r], &ev(&wipe, LATER, &[]))[0].0, Some(Status::Done));
}

#[test]
fn the_audit_log_is_asked_for_the_unknown_actions_kinds_by_their_enum_names() {
    let mut by_device: BTreeMap<(ActionKind, Collection, String), Vec<Record>> = BTreeMap::new();
    let with = |kind: ActionKind, status: Status| {
        let mut r = record("S1", status, SENT, Some(SENT));
        r.kind = kind;
        r
    };
    by_device.insert(
        (ActionKind::Wipe, Collection::ManagedDevices, "a".into()),
        vec![with(ActionKind::Wipe, Status::Unknown)],
    );
    by_device.insert(
        (ActionKind::SyncDevice, Collection::ManagedDevices, "b".into()),
        vec![with(ActionKind::SyncDevice, Status::Unknown)],
    );
    by_device.insert(
        (ActionKind::RemoteLock, Collection::ManagedDevices, "c".into()),
        vec![with(ActionKind::RemoteLock, Status::Accepted)],
    );
    let (since, names) = audit_query(&by_device).expect("an unknown wipe");
    assert_eq!(since, ts(SENT) - SignedDuration::from_mins(5));
    assert_eq!(
        names,
        ["factoryReset", "factoryResetKeepEnrollmentData"],
        "never `wipe`, nor a sync's or an accepted lock's"
    );
    // An intent recorded before Intune's clock was: from its local time, less the legacy skew.
    let mut legacy = record("S2", Status::Unknown, "2026-11-27T09:00:00Z", None);
    legacy.kind = ActionKind::RemoteLock;
    by_device.insert((ActionKind::RemoteLock, Collection::ManagedDevices, "d".into()), vec![legacy]);
    let (since, names) = audit_query(&by_device).expect("unknown actions");
    assert_eq!(since, ts("2026-11-27T08:54:00Z"), "09:00 less 60 s less 5 min");
    assert_eq!(names, ["factoryReset", "factoryResetKeepEnrollmentData", "remoteLock"]);
    by_device.retain(|(k, _, _), _| *k == ActionKind::SyncDevice);
    assert_eq!(audit_query(&by_device), None, "an unknown sync alone: nothing to read");
}

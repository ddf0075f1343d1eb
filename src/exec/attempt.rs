//! One action, attempt by attempt: send slot → durable intent → POST → durable outcome.
//!
//! # Expected flow
//! 1. Wait for a send slot (or cancellation); a cancelled run sends nothing new.
//! 2. Note the intent for the out-of-band judge, append an attempt (status `unknown`) and write
//!    it durably: only then does the request leave.
//! 3. POST once; copy Graph's answer into the attempt and map it to a [`Outcome`].
//! 4. Decide with [`crate::core::retry`]: after a 429 the pacer pauses every send at once; the
//!    outcome is written durably; a 429, 401 or 408 is retried with a new intent.
//!
//! # Guarantees
//! - No request leaves before its intent is durable; an attempt whose intent could not be
//!   written is never sent, and the run stops taking send slots.
//! - Only answers that say the request was not executed are retried, a bounded number of times.

use std::sync::atomic::Ordering;

use jiff::Timestamp;
use uuid::Uuid;

use crate::core::action::Action;
use crate::core::retry::{History, Next, Outcome, Policy, decide};
use crate::exec::{ApplyError, Run, Waiting};
use crate::graph::{AccessToken, Answer, GraphError, SendResult, WriteHeaders, WriteSlot};
use crate::ledger::{Attempt, Provenance, Record, Status};

/// One action: as many attempts as 429/401/unsendable answers require, each with its own intent.
/// `Ok(None)`: cancelled before anything was sent.
pub(super) async fn execute(
    ctx: &Run,
    action: &Action,
    device_id: &str,
    mut record: Record,
    provenance: Provenance,
) -> Result<Option<Record>, ApplyError> {
    let policy = Policy::graph(ctx.opts.backoff_initial, ctx.opts.backoff_max);
    let mut history = History::default();
    let mut sent_any = false;
    let mut waiting = Some(Waiting(ctx));
    record.managed_device_id = Some(device_id.to_owned());
    // Every write says why, for Multi Admin Approval (docs/graph-facts.md).
    let justification = crate::core::approval::justification(&action.manifest, &provenance);
    loop {
        let Some(slot) = send_slot(ctx, &mut waiting).await? else {
            return Ok(sent_any.then_some(record));
        };
        let client_request_id = intent(ctx, &mut record, device_id, &provenance).await?;
        if !sent_any {
            ctx.sent.fetch_add(1, Ordering::SeqCst);
        }
        sent_any = true;
        let token = slot.token().clone();
        let result = ctx
            .graph
            .send_action(
                action.kind,
                &action.parameters,
                slot,
                action.collection,
                device_id,
                WriteHeaders { client_request_id, approval: &justification },
            )
            .await;
        let outcome = answered(&mut record, result, ctx.opts.clock.now());
        if !after(ctx, &record, outcome, &mut history, &policy, &token).await? {
            return Ok(Some(record));
        }
    }
}

/// A send slot, or `None` once the run is cancelled (before or while waiting for it). Taking it
/// ends `waiting` (the action no longer counts as released without a slot).
async fn send_slot<'g>(ctx: &'g Run, waiting: &mut Option<Waiting<'_>>) -> Result<Option<WriteSlot<'g>>, ApplyError> {
    if ctx.cancelled() {
        return Ok(None);
    }
    let mut cancel = ctx.cancel.clone();
    let slot = tokio::select! {
        slot = ctx.graph.write_slot() => slot?,
        _ = cancel.wait_for(|c| *c) => return Ok(None),
    };
    drop(waiting.take());
    if ctx.cancelled() {
        return Ok(None);
    }
    Ok(Some(slot))
}

/// Appends a new attempt to `record` and writes it durably (status `unknown`): the request may
/// leave only after this returns. Returns the attempt's client request id.
async fn intent(ctx: &Run, record: &mut Record, device_id: &str, provenance: &Provenance) -> Result<Uuid, ApplyError> {
    let client_request_id = Uuid::new_v4();
    let now = ctx.opts.clock.now();
    let server_sent_at = ctx.graph.server_time_lower_bound();
    // Before the request can leave: a reset of this device from now on may be this run's.
    ctx.own.note(device_id, server_sent_at.unwrap_or(now));
    record.attempts.push(Attempt {
        started_at: now,
        server_sent_at,
        client_request_id,
        policy_override: ctx.opts.policy_override.clone(),
        provenance: Some(std::sync::Arc::new(provenance.clone())),
        ..Attempt::default()
    });
    record.status = Status::Unknown;
    record.updated_at = now;
    ctx.record_intent(record).await?;
    Ok(client_request_id)
}

/// Multi Admin Approval: the approved request sent once more, with its code, as every send is:
/// the intent durable first (status `unknown`: a crash from here on leaves it to `refresh`'s
/// evidence, never to a second send), then the POST, then its outcome. An answer that says it
/// was not executed (429, 401, 408, no connection) leaves it awaiting approval with the same code.
pub(super) async fn resend_approved(
    graph: &crate::graph::Graph,
    writer: &mut crate::ledger::Writer,
    mut record: Record,
    code: String,
    now: impl Fn() -> Timestamp,
) -> Result<Record, ApplyError> {
    let Some(device_id) = record.managed_device_id.clone() else { return Ok(record) };
    let slot = graph.write_slot().await?;
    let client_request_id = Uuid::new_v4();
    let started = now();
    let provenance = record.attempts.last().and_then(|a| a.provenance.clone());
    record.attempts.push(Attempt {
        started_at: started,
        server_sent_at: graph.server_time_lower_bound(),
        client_request_id,
        approval_code: Some(code.clone()),
        provenance,
        ..Attempt::default()
    });
    record.status = Status::Unknown;
    record.updated_at = started;
    writer.record(record.clone()).await?;
    let approval = crate::graph::Approval::Code(code);
    let result = graph
        .send_action(
            record.kind,
            &record.parameters,
            slot,
            record.collection,
            &device_id,
            WriteHeaders { client_request_id, approval: &approval },
        )
        .await;
    answered(&mut record, result, now());
    if record.status == Status::NotExecuted {
        record.status = Status::AwaitingApproval;
    }
    tracing::info!(status = %record.status, "outcome of the approved request");
    writer.record(record.clone()).await?;
    Ok(record)
}

/// Copies what Graph answered into the last attempt of `record`, sets its status, and says what
/// the answer means for a retry.
pub(super) fn answered(record: &mut Record, result: SendResult, now: Timestamp) -> Outcome {
    record.updated_at = now;
    let attempt = record.attempts.last_mut().expect("an intent was recorded");
    attempt.finished_at = Some(now);
    let (status, outcome) = match result {
        SendResult::Accepted(a) => {
            record_answer(attempt, Some(&a), None);
            (Status::Accepted, Outcome::Final)
        }
        SendResult::Rejected(a, e) => {
            record_answer(attempt, Some(&a), Some(&e));
            if crate::graph::error::names_approval(&e) {
                // Refused, with no approval request to wait for: said plainly.
                let m = attempt.error_message.take().unwrap_or_default();
                attempt.error_message =
                    Some(format!("Multi Admin Approval refused the request without an approval code: {m}"));
            }
            (Status::Rejected, Outcome::Final)
        }
        SendResult::ApprovalRequired(a, e, code) => {
            record_answer(attempt, Some(&a), Some(&e));
            attempt.approval_code = Some(code);
            (Status::AwaitingApproval, Outcome::Final)
        }
        SendResult::ServerError(a, e) => {
            record_answer(attempt, Some(&a), Some(&e));
            (Status::Unknown, Outcome::Final)
        }
        SendResult::Unknown(a, why) => {
            record_answer(attempt, a.as_ref(), None);
            attempt.error_message = Some(why);
            (Status::Unknown, Outcome::Final)
        }
        SendResult::Throttled(a, retry_after, e) => {
            record_answer(attempt, Some(&a), Some(&e));
            (Status::NotExecuted, Outcome::Throttled(retry_after))
        }
        SendResult::Unauthorized(a, e) => {
            record_answer(attempt, Some(&a), Some(&e));
            (Status::NotExecuted, Outcome::Unauthorized)
        }
        SendResult::RequestTimeout(a, e) => {
            record_answer(attempt, Some(&a), Some(&e));
            (Status::NotExecuted, Outcome::NotSent)
        }
        SendResult::HeldBack => {
            attempt.error_message = Some("held back, never sent: a 429's pause began before it left".into());
            (Status::NotExecuted, Outcome::HeldBack)
        }
        SendResult::NotSent(why) => {
            attempt.error_message = Some(why);
            (Status::NotExecuted, Outcome::NotSent)
        }
    };
    record.status = status;
    outcome
}

/// After an answer: pauses every send after a 429, writes the outcome durably, and says whether
/// to try again (after renewing the token or waiting the backoff).
async fn after(
    ctx: &Run,
    record: &Record,
    outcome: Outcome,
    history: &mut History,
    policy: &Policy,
    token: &AccessToken,
) -> Result<bool, ApplyError> {
    let next = crate::core::retry::jitter(decide(outcome, *history, policy), outcome);
    *history = history.after(outcome);
    if let (Next::RetryAfter(delay), Outcome::Throttled(asked)) = (next, outcome) {
        crate::core::retry::log_capped(asked, policy);
        tracing::info!(delay_ms = delay.as_millis() as u64, "throttled (429); slowing down");
        // At once, before recording: the pacer holds every task's sends until the pause is over.
        ctx.graph.writes().throttled(delay).await;
    }
    tracing::info!(status = %record.status, "outcome");
    ctx.record_outcome(record).await?;
    Ok(match next {
        Next::Done | Next::GiveUp => false,
        // Renews the token once for every request that met the same expiry.
        Next::Reauthenticate => ctx.graph.tokens().invalidate(token).await,
        Next::RetryAfter(delay) => {
            if !matches!(outcome, Outcome::Throttled(_)) {
                tokio::time::sleep(delay).await;
            }
            true
        }
    })
}

/// Copies what Graph answered (status, request id, error) into the attempt.
fn record_answer(a: &mut Attempt, answer: Option<&Answer>, error: Option<&GraphError>) {
    if let Some(ans) = answer {
        a.http_status = Some(ans.status);
        a.request_id = ans.request_id.clone();
        a.server_date = ans.date;
        // Both are lower bounds of the same instant: the larger says more.
        a.server_sent_at = a.server_sent_at.max(ans.server_sent_at);
    }
    if let Some(e) = error {
        a.error_code = e.code.clone();
        a.error_message = e.message.clone().or_else(|| Some(format!("HTTP {}", e.status)));
        if a.request_id.is_none() {
            a.request_id = e.request_id.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn record() -> Record {
        let mut r = crate::ledger::tests::record("m", "SN1", Status::Unknown);
        r.managed_device_id = Some("d1".into());
        r.attempts.push(Attempt::default());
        r
    }

    fn answer(status: u16) -> Answer {
        Answer { status, request_id: Some(format!("req-{status}")), ..Answer::default() }
    }

    fn error(status: u16) -> GraphError {
        GraphError { status, code: Some(format!("code{status}")), message: None, request_id: None }
    }

    /// An answer Graph gives → the status recorded, what it means for a retry, the HTTP status and
    /// the error message the attempt keeps.
    type Row = (SendResult, Status, Outcome, Option<u16>, Option<&'static str>);

    #[test]
    fn answers_map_to_a_status_and_a_retry_outcome() {
        let retry_after = Some(Duration::from_secs(3));
        let table: Vec<Row> = vec![
            (SendResult::Accepted(answer(204)), Status::Accepted, Outcome::Final, Some(204), None),
            (
                SendResult::Rejected(answer(400), error(400)),
                Status::Rejected,
                Outcome::Final,
                Some(400),
                Some("HTTP 400"),
            ),
            (
                SendResult::ServerError(answer(503), error(503)),
                Status::Unknown,
                Outcome::Final,
                Some(503),
                Some("HTTP 503"),
            ),
            (SendResult::Unknown(None, "timed out".into()), Status::Unknown, Outcome::Final, None, Some("timed out")),
            (
                SendResult::Throttled(answer(429), retry_after, error(429)),
                Status::NotExecuted,
                Outcome::Throttled(retry_after),
                Some(429),
                Some("HTTP 429"),
            ),
            (
                SendResult::Unauthorized(answer(401), error(401)),
                Status::NotExecuted,
                Outcome::Unauthorized,
                Some(401),
                Some("HTTP 401"),
            ),
            (
                SendResult::RequestTimeout(answer(408), error(408)),
                Status::NotExecuted,
                Outcome::NotSent,
                Some(408),
                Some("HTTP 408"),
            ),
            (
                SendResult::NotSent("no connection".into()),
                Status::NotExecuted,
                Outcome::NotSent,
                None,
                Some("no connection"),
            ),
        ];
        let now = Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(60);
        for (result, status, outcome, http, message) in table {
            let what = format!("{result:?}");
            let mut r = record();
            assert_eq!(answered(&mut r, result, now), outcome, "{what}");
            assert_eq!(r.status, status, "{what}");
            assert_eq!(r.updated_at, now, "{what}");
            let a = r.attempts.last().expect("one attempt");
            assert_eq!(a.finished_at, Some(now), "{what}");
            assert_eq!(a.http_status, http, "{what}");
            assert_eq!(a.error_message.as_deref(), message, "{what}");
        }
        let mut r = record();
        assert_eq!(answered(&mut r, SendResult::HeldBack, now), Outcome::HeldBack);
        assert_eq!(r.status, Status::NotExecuted);
        assert!(r.attempts[0].error_message.as_deref().is_some_and(|m| m.contains("never sent")));
    }
}

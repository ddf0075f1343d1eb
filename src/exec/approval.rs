//! Actions awaiting Intune's Multi Admin Approval, settled under the ledger lock by `apply`,
//! `refresh` and `watch --apply`.
//!
//! # Expected flow
//! 1. For each `awaiting-approval` action, look its approval request up by its code.
//! 2. Keep what it says on the attempt (status, expiry, who, why).
//! 3. Decide with [`crate::core::approval::next`]: approved → the same request re-sent once with
//!    the code ([`super::attempt::resend_approved`]: its intent is durable before it leaves);
//!    rejected, cancelled or expired → `rejected`; completed → `accepted` (Intune executed it;
//!    `refresh` learns its result); otherwise it waits, and nothing is sent.
//!
//! # Guarantees
//! - Nothing is sent for a request that is not `approved`, and an approved one is sent once: its
//!   intent makes the action `unknown`, which only evidence (or a person) settles.
//! - A lookup that fails leaves the action as it was.

use jiff::Timestamp;

use crate::core::approval::{RequestStatus, Step, next};
use crate::exec::ApplyError;
use crate::graph::{ApprovalRequest, Graph};
use crate::ledger::{ApprovalSeen as Seen, Record, Status, Writer};

/// What settling found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Settled {
    /// Every record whose status changed, with the status it had.
    pub changed: Vec<(Record, Status)>,
    /// Still awaiting approval.
    pub waiting: usize,
}

/// Settles every action of the locked ledger that awaits approval (see the module docs).
pub(crate) async fn settle(
    graph: &Graph,
    writer: &mut Writer,
    now: impl Fn() -> Timestamp + Copy,
) -> Result<Settled, ApplyError> {
    let awaiting: Vec<Record> =
        writer.ledger().records.values().filter(|r| r.status == Status::AwaitingApproval).cloned().collect();
    let mut settled = Settled::default();
    for mut record in awaiting {
        let Some(code) = record.attempts.last().and_then(|a| a.approval_code.clone()) else {
            settled.waiting += 1;
            continue;
        };
        let request = match graph.approval_request(&code).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, code = %crate::diag::safe::text(&code), "could not look the approval request up");
                settled.waiting += 1;
                continue;
            }
        };
        let status = request.as_ref().map(|r| RequestStatus::parse(&r.status));
        let step = next(&record, status.as_ref());
        if let (Some(r), Some(a)) = (&request, record.attempts.last_mut()) {
            a.approval = Some(Box::new(seen(r, now())));
        }
        let from = record.status;
        let record = match step {
            Step::None | Step::Wait => {
                writer.record(record.clone()).await?;
                record
            }
            Step::Resend(code) => super::attempt::resend_approved(graph, writer, record, code, now).await?,
            Step::Reject(why) => {
                let who = request.as_ref().map(|r| seen(r, now())).and_then(|s| {
                    let by = s.by.map(|b| format!(" by {b}")).unwrap_or_default();
                    let why = s.why.map(|w| format!(": {w}")).unwrap_or_default();
                    (!by.is_empty() || !why.is_empty()).then(|| format!("{by}{why}"))
                });
                record.status = Status::Rejected;
                record.updated_at = now();
                if let Some(a) = record.attempts.last_mut() {
                    a.error_message = Some(format!("{why}{}", who.unwrap_or_default()));
                }
                writer.record(record.clone()).await?;
                record
            }
            Step::Done => {
                record.status = Status::Accepted;
                record.updated_at = now();
                writer.record(record.clone()).await?;
                record
            }
        };
        if record.status == Status::AwaitingApproval {
            settled.waiting += 1;
        }
        if record.status != from {
            settled.changed.push((record, from));
        }
    }
    Ok(settled)
}

/// What is kept of an approval request (cut to a sane length: it is shown to people).
fn seen(r: &ApprovalRequest, at: Timestamp) -> Seen {
    let short = |s: &str| s.chars().filter(|c| !c.is_control()).take(200).collect::<String>();
    let user = r.approver.as_ref().and_then(|i| i.user.as_ref());
    let by = user.and_then(|u| u.user_principal_name.clone().or_else(|| u.display_name.clone()));
    Seen {
        status: short(&r.status),
        expires: r.expiration_date_time,
        by: by.as_deref().map(short),
        why: r.approval_justification.as_deref().map(short).filter(|w| !w.is_empty()),
        checked_at: at,
    }
}

//! Intune's Multi Admin Approval (MAA), the pure half: the justification every write carries,
//! what an approval request's status means for an action that awaits it, and what is kept of it
//! (docs/graph-facts.md, "Multi Admin Approval"; docs/exactly-once.md, "Multi Admin Approval").
//!
//! # Guarantees
//! - A request held for approval was certainly not executed ([`crate::ledger::Status::AwaitingApproval`]);
//!   it is sent again only when its approval request says `approved`, and then once: the
//!   re-send's intent turns the action `unknown` before it leaves.
//! - `completed` means Intune executed the approved request itself: done, nothing is sent.
//! - The justification is built from the provenance only (manifest, ticket, pull request, run):
//!   never a token, a passcode or any other secret.

use base64::Engine as _;

use crate::graph::Approval;
use crate::ledger::{Provenance, Record, Status};

/// At most this many characters of justification, decoded (Intune's limit).
pub(crate) const JUSTIFICATION_MAX: usize = 1024;

/// The justification of an action of `manifest` sent with `provenance`: one line naming the
/// manifest, its ticket, the pull request, the commit and the run, Base64-encoded, at most
/// [`JUSTIFICATION_MAX`] characters before encoding.
pub(crate) fn justification(manifest: &str, provenance: &Provenance) -> Approval {
    let mut parts = vec![format!("reconcile: manifest {manifest}")];
    let p = provenance;
    let fields = [
        ("ticket", p.manifest.ticket.as_deref()),
        ("PR", p.pull_request.as_deref()),
        ("commit", p.commit.as_deref()),
        ("run", p.run_url.as_deref().or(p.run_id.as_deref())),
        ("by", p.actor.as_deref()),
    ];
    parts.extend(fields.iter().filter_map(|(k, v)| v.map(|v| format!("{k} {v}"))));
    let line: String = parts.join("; ").chars().filter(|c| !c.is_control()).take(JUSTIFICATION_MAX).collect();
    Approval::Justification(base64::engine::general_purpose::STANDARD.encode(line))
}

/// An approval request's status (Graph beta `operationApprovalRequestStatus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RequestStatus {
    NeedsApproval,
    Approved,
    Rejected,
    Cancelled,
    Completed,
    Expired,
    /// A value this build does not know: waited on, never acted upon.
    Other(String),
}

impl RequestStatus {
    pub(crate) fn parse(s: &str) -> Self {
        match s.to_ascii_lowercase().as_str() {
            "needsapproval" => RequestStatus::NeedsApproval,
            "approved" => RequestStatus::Approved,
            "rejected" => RequestStatus::Rejected,
            "cancelled" | "canceled" => RequestStatus::Cancelled,
            "completed" => RequestStatus::Completed,
            "expired" => RequestStatus::Expired,
            _ => RequestStatus::Other(s.to_owned()),
        }
    }
}

/// What to do with an action that awaits approval, once its request was looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Not an action awaiting approval: nothing to do.
    None,
    /// Still waiting (or the request cannot be found yet): nothing is sent.
    Wait,
    /// Approved: send the same request once more, with this code.
    Resend(String),
    /// Rejected, cancelled or expired: the action is `rejected`, with this reason.
    Reject(String),
    /// Intune executed the approved request itself.
    Done,
}

/// The decision for `record` given what its approval request says (`None`: not found). Pure.
pub(crate) fn next(record: &Record, request: Option<&RequestStatus>) -> Step {
    if record.status != Status::AwaitingApproval {
        return Step::None;
    }
    let Some(code) = record.attempts.last().and_then(|a| a.approval_code.clone()) else {
        return Step::Wait;
    };
    match request {
        None | Some(RequestStatus::NeedsApproval | RequestStatus::Other(_)) => Step::Wait,
        Some(RequestStatus::Approved) => Step::Resend(code),
        Some(RequestStatus::Completed) => Step::Done,
        Some(s @ (RequestStatus::Rejected | RequestStatus::Cancelled | RequestStatus::Expired)) => {
            let word = match s {
                RequestStatus::Rejected => "rejected",
                RequestStatus::Cancelled => "cancelled",
                _ => "expired",
            };
            Step::Reject(format!("Multi Admin Approval request {code} was {word}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Attempt;

    fn record(status: Status, code: Option<&str>) -> Record {
        let mut r = crate::ledger::tests::record("m", "SN1", status);
        r.attempts.push(Attempt { approval_code: code.map(str::to_owned), ..Attempt::default() });
        r
    }

    #[test]
    fn every_status_and_request_status_has_one_next_step() {
        use RequestStatus as R;
        let other = R::Other("pendingSomething".into());
        let requests = [
            None,
            Some(R::NeedsApproval),
            Some(R::Approved),
            Some(R::Rejected),
            Some(R::Cancelled),
            Some(R::Completed),
            Some(R::Expired),
            Some(other),
        ];
        for status in Status::ALL {
            for request in &requests {
                let step = next(&record(status, Some("c1")), request.as_ref());
                let expected = match (status, request) {
                    (s, _) if s != Status::AwaitingApproval => Step::None,
                    (_, None | Some(R::NeedsApproval | R::Other(_))) => Step::Wait,
                    (_, Some(R::Approved)) => Step::Resend("c1".into()),
                    (_, Some(R::Completed)) => Step::Done,
                    (_, Some(R::Rejected)) => Step::Reject("Multi Admin Approval request c1 was rejected".into()),
                    (_, Some(R::Cancelled)) => Step::Reject("Multi Admin Approval request c1 was cancelled".into()),
                    (_, Some(R::Expired)) => Step::Reject("Multi Admin Approval request c1 was expired".into()),
                };
                assert_eq!(step, expected, "{status} × {request:?}");
            }
        }
        // Without a code there is nothing to look up, and nothing is ever sent.
        assert_eq!(next(&record(Status::AwaitingApproval, None), Some(&R::Approved)), Step::Wait);
    }

    #[test]
    fn statuses_parse_as_graph_spells_them() {
        assert_eq!(RequestStatus::parse("needsApproval"), RequestStatus::NeedsApproval);
        assert_eq!(RequestStatus::parse("approved"), RequestStatus::Approved);
        assert_eq!(RequestStatus::parse("rejected"), RequestStatus::Rejected);
        assert_eq!(RequestStatus::parse("cancelled"), RequestStatus::Cancelled);
        assert_eq!(RequestStatus::parse("completed"), RequestStatus::Completed);
        assert_eq!(RequestStatus::parse("expired"), RequestStatus::Expired);
        assert_eq!(RequestStatus::parse("unknownFutureValue"), RequestStatus::Other("unknownFutureValue".into()));
    }

    #[test]
    fn the_justification_names_the_provenance_and_stays_short() {
        let p = Provenance {
            pull_request: Some("42".into()),
            run_url: Some("https://ci.example/run/7".into()),
            manifest: crate::manifest::ManifestInfo { ticket: Some("INC-1".into()), ..Default::default() },
            ..Provenance::default()
        };
        let Approval::Justification(b) = justification("lost-phones", &p) else { panic!("a justification") };
        let line =
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).expect("base64")).expect("utf-8");
        assert_eq!(line, "reconcile: manifest lost-phones; ticket INC-1; PR 42; run https://ci.example/run/7");
        let long = Provenance { actor: Some("x".repeat(5000)), ..Provenance::default() };
        let Approval::Justification(b) = justification("m", &long) else { panic!("a justification") };
        let decoded = base64::engine::general_purpose::STANDARD.decode(b).expect("base64");
        assert_eq!(String::from_utf8(decoded).expect("utf-8").chars().count(), JUSTIFICATION_MAX);
    }
}

//! What `apply` shows people while it runs: the progress bar's label and one line per outcome.

use crate::exec::Progress;
use crate::ledger::{Attempt, Record, Status};

/// The progress bar's label: `looking up 120/500 · sent 40 · accepted 38` (once every device is
/// looked up: `looked up 500 · …`).
pub(crate) fn label(p: Progress) -> String {
    let lookup = if p.looked_up < p.candidates {
        format!("looking up {}/{}", p.looked_up, p.candidates)
    } else {
        format!("looked up {}", p.candidates)
    };
    let mut label = format!("{lookup} · sent {} · accepted {}", p.sent, p.accepted);
    let other = p.finished.saturating_sub(p.accepted);
    if other > 0 {
        label.push_str(&format!(" · {other} not accepted"));
    }
    label
}

/// One action's outcome for this run: status, key, manifest, selector and what Graph answered
/// (HTTP status, request id, the error and what it means), or for an adopted reset what Intune
/// showed as of `now`; shown escaped.
pub(crate) fn outcome_line(r: &Record, now: jiff::Timestamp) -> String {
    if let Some(a) = &r.adopted {
        let line = format!(
            "{:<13} {} {} {}: {}; nothing sent",
            "adopted",
            r.key.short(),
            r.manifest,
            r.selector,
            a.seen_ago(now, r.kind.spec().wording.short)
        );
        return crate::diag::safe::text(&line).into_owned();
    }
    let last = r.attempts.last();
    let http = last.and_then(|a| a.http_status).map(|s| format!(" HTTP {s}")).unwrap_or_default();
    let rid = last.and_then(|a| a.request_id.as_deref()).map(|id| format!(" request-id {id}")).unwrap_or_default();
    let err = match r.status {
        Status::Accepted => String::new(),
        _ => last.and_then(|a| a.error_message.as_deref()).map(|m| format!(": {m}")).unwrap_or_default(),
    };
    let meaning = match r.status {
        Status::Rejected => last.and_then(Attempt::refusal).map(|m| format!(" ({m})")).unwrap_or_default(),
        _ => String::new(),
    };
    // The request id and the error message come from Graph: shown escaped.
    let line =
        format!("{:<13} {} {} {}{http}{rid}{err}{meaning}", r.status.as_str(), r.key.short(), r.manifest, r.selector);
    crate::diag::safe::text(&line).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(candidates: usize, looked_up: usize, sent: usize, finished: usize, accepted: usize) -> String {
        label(Progress { candidates, looked_up, sent, finished, accepted })
    }

    #[test]
    fn the_label_names_each_stage_with_its_count() {
        assert_eq!(at(500, 0, 0, 0, 0), "looking up 0/500 · sent 0 · accepted 0");
        assert_eq!(at(500, 120, 40, 38, 38), "looking up 120/500 · sent 40 · accepted 38");
        assert_eq!(at(500, 500, 480, 470, 468), "looked up 500 · sent 480 · accepted 468 · 2 not accepted");
        assert_eq!(at(1, 1, 1, 1, 1), "looked up 1 · sent 1 · accepted 1");
    }
}

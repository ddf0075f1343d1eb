//! `refresh`: ask Intune what became of `accepted` and `unknown` actions.
//!
//! For each such action, the device's `deviceActionResults` are read (concurrently, paced under
//! the read budget). A result matches when it is a `resetPasscode` (compared case-insensitively)
//! that started at or after the action's last intent:
//! - a match gives the action Intune's state (`done`, `failed`, `not-supported`, `canceled`;
//!   pending or active ones stay `accepted`);
//! - no match for an `unknown` action whose intent is older than `graph.unknownGrace` means the
//!   request never took effect: the action becomes `not-executed`, and the next apply sends it;
//! - no match yet within the grace period changes nothing.
//!
//! The passcode that Graph returns in those results is never deserialized (see
//! [`crate::graph::ActionResult`]), logged or stored.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use crate::graph::{ActionResult, Graph, ReadError};
use crate::state::{LocalStore, Record, StateError, Status};

/// What the command line decided.
#[derive(Debug, Clone)]
pub struct RefreshOptions {
    pub lock_timeout: Duration,
    pub unknown_grace: Duration,
    pub tenant: Option<String>,
}

/// Why refresh stopped.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot read device results from Graph: {0}")]
    Graph(#[from] ReadError),
}

/// One action's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub record: Record,
    pub from: Status,
    pub note: String,
}

/// What refresh found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshReport {
    pub checked: usize,
    pub changes: Vec<Change>,
    /// Still pending in Intune, or unknown within the grace period.
    pub waiting: usize,
}

/// Decides one record's new status from its device's results (pure: no I/O, `now` given).
pub fn decide(
    record: &Record,
    results: Option<&[ActionResult]>,
    now: Timestamp,
    grace: Duration,
) -> Option<(Status, String)> {
    let intent = record.attempts.last()?.started_at;
    let matching = results.into_iter().flatten().filter(|r| {
        r.action_name.eq_ignore_ascii_case("resetPasscode") && r.start_date_time.is_some_and(|s| s >= intent)
    });
    // The earliest result at or after the intent is the one our request started.
    if let Some(r) = matching.min_by_key(|r| r.start_date_time) {
        let status = match r.action_state.to_ascii_lowercase().as_str() {
            "done" => Status::Done,
            "failed" => Status::Failed,
            "notsupported" => Status::NotSupported,
            "canceled" | "cancelled" => Status::Canceled,
            _ => Status::Accepted,
        };
        let note = format!(
            "Intune reports `{}` (started {})",
            r.action_state,
            r.start_date_time.map(|t| t.to_string()).unwrap_or_default()
        );
        return (status != record.status).then_some((status, note));
    }
    let age = now.duration_since(intent);
    let grace = jiff::SignedDuration::try_from(grace).unwrap_or(jiff::SignedDuration::MAX);
    match (record.status, results) {
        (Status::Unknown, _) if age >= grace => {
            let why = if results.is_none() {
                "the device no longer exists"
            } else {
                "Intune shows no reset since the intent"
            };
            Some((
                Status::NotExecuted,
                format!(
                    "{why} after the {grace:#} grace period: the request never took effect; the next apply sends it"
                ),
            ))
        }
        _ => None,
    }
}

/// Refreshes every `accepted` and `unknown` action of the ledger.
pub async fn refresh(
    store: &LocalStore,
    graph: Arc<Graph>,
    opts: &RefreshOptions,
) -> Result<RefreshReport, RefreshError> {
    let mut writer = store.lock(opts.lock_timeout, "reconcile refresh", opts.tenant.as_deref())?;
    let candidates: Vec<Record> = writer
        .ledger()
        .records
        .values()
        .filter(|r| matches!(r.status, Status::Accepted | Status::Unknown) && r.managed_device_id.is_some())
        .cloned()
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for record in candidates.iter().cloned() {
        let graph = graph.clone();
        tasks.spawn(async move {
            let id = record.managed_device_id.clone().unwrap_or_default();
            let results = graph.device_action_results(record.collection, &id).await;
            (record, results)
        });
    }
    let mut report = RefreshReport { checked: candidates.len(), ..RefreshReport::default() };
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        let Ok((mut record, results)) = joined else { continue };
        let results = match results {
            Ok(r) => r,
            Err(e) => {
                failure.get_or_insert(e);
                continue;
            }
        };
        match decide(&record, results.as_deref(), Timestamp::now(), opts.unknown_grace) {
            Some((status, note)) => {
                let from = record.status;
                record.status = status;
                record.updated_at = Timestamp::now();
                report.changes.push(Change { record, from, note });
            }
            None => report.waiting += 1,
        }
    }
    report.changes.sort_by(|a, b| (&a.record.manifest, &a.record.key).cmp(&(&b.record.manifest, &b.record.key)));
    writer.record_all(report.changes.iter().map(|c| c.record.clone()))?;
    writer.commit()?;
    match failure {
        Some(e) => Err(RefreshError::Graph(e)),
        None => Ok(report),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Attempt;

    fn record(status: Status, intent: &str) -> Record {
        let mut r = crate::state::tests::record("m", "S1", status);
        r.attempts.push(Attempt {
            started_at: intent.parse().expect("ts"),
            client_request_id: uuid::Uuid::nil(),
            finished_at: None,
            http_status: None,
            request_id: None,
            error_code: None,
            error_message: None,
        });
        r
    }

    fn result(name: &str, state: &str, start: &str) -> ActionResult {
        ActionResult {
            action_name: name.into(),
            action_state: state.into(),
            start_date_time: Some(start.parse().expect("ts")),
            last_updated_date_time: None,
        }
    }

    const GRACE: Duration = Duration::from_secs(120);

    #[test]
    fn a_matching_result_gives_its_state() {
        let r = record(Status::Accepted, "2026-11-27T10:00:00Z");
        let now = "2026-11-27T10:05:00Z".parse().expect("ts");
        let results = [result("ResetPasscode", "done", "2026-11-27T10:00:01Z")];
        assert_eq!(decide(&r, Some(&results), now, GRACE).map(|d| d.0), Some(Status::Done));
        let pending = [result("resetPasscode", "pending", "2026-11-27T10:00:01Z")];
        assert_eq!(decide(&r, Some(&pending), now, GRACE), None);
        let unknown = record(Status::Unknown, "2026-11-27T10:00:00Z");
        assert_eq!(decide(&unknown, Some(&pending), now, GRACE).map(|d| d.0), Some(Status::Accepted));
    }

    // A reset from before our intent (an earlier round) must not be taken for ours.
    #[test]
    fn results_before_the_intent_or_of_other_actions_do_not_match() {
        let r = record(Status::Unknown, "2026-11-27T10:00:00Z");
        let results = [
            result("resetPasscode", "done", "2026-11-27T09:59:59Z"),
            result("remoteLock", "done", "2026-11-27T10:00:05Z"),
        ];
        let within = "2026-11-27T10:01:00Z".parse().expect("ts");
        assert_eq!(decide(&r, Some(&results), within, GRACE), None);
        let after = "2026-11-27T10:02:00Z".parse().expect("ts");
        assert_eq!(decide(&r, Some(&results), after, GRACE).map(|d| d.0), Some(Status::NotExecuted));
        // The grace boundary itself counts as elapsed.
        let edge = "2026-11-27T10:02:00Z".parse().expect("ts");
        assert_eq!(decide(&r, Some(&[]), edge, GRACE).map(|d| d.0), Some(Status::NotExecuted));
        let before_edge = "2026-11-27T10:01:59Z".parse().expect("ts");
        assert_eq!(decide(&r, Some(&[]), before_edge, GRACE), None);
    }

    #[test]
    fn accepted_without_results_stays_accepted() {
        let r = record(Status::Accepted, "2026-11-27T10:00:00Z");
        assert_eq!(decide(&r, Some(&[]), "2026-11-28T10:00:00Z".parse().expect("ts"), GRACE), None);
    }
}

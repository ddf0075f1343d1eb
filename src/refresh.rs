//! `refresh`: ask Intune what became of `accepted` and `unknown` actions.
//!
//! For each such action, the device's `deviceActionResults` are read (concurrently, paced under
//! the read budget). A result matches when it is a `resetPasscode` (compared case-insensitively)
//! that started at or after the action's last intent (less [`CLOCK_SKEW`]), not already taken by
//! another action on the same device:
//! - a match gives the action Intune's state (`done`, `failed`, `not-supported`, `canceled`;
//!   pending or active ones stay `accepted`);
//! - no match for an `unknown` action whose intent is older than `graph.unknownGrace` means the
//!   request never took effect: the action becomes `not-executed`, and the next apply sends it;
//! - no match yet within the grace period changes nothing.
//!
//! The passcode that Graph returns in those results is never deserialized (see
//! [`crate::graph::ActionResult`]), logged or stored.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use crate::action::Collection;
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

/// How long before an intent a result may have started and still be taken for ours: the CI
/// runner's clock and Intune's differ a little, and Intune may round `startDateTime`. Erring this
/// way can only take someone else's reset for ours (a missed reset, visible in the ledger), never
/// send a second one.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Decides the new status of every record of one device from that device's results (pure: no
/// I/O, `now` given).
///
/// Each result counts for one record only: results and intents are paired in time order, each
/// result going to the earliest intent that could have started it. A record left without a result becomes `not-executed`
/// only when no result at all could be its own, so an ambiguous device stays `unknown` rather
/// than risk a second reset.
pub fn decide(
    records: &[&Record],
    results: Option<&[ActionResult]>,
    now: Timestamp,
    grace: Duration,
) -> Vec<Option<(Status, String)>> {
    let skew = jiff::SignedDuration::try_from(CLOCK_SKEW).unwrap_or(jiff::SignedDuration::ZERO);
    let grace = jiff::SignedDuration::try_from(grace).unwrap_or(jiff::SignedDuration::MAX);
    let intents: Vec<Option<Timestamp>> = records.iter().map(|r| r.attempts.last().map(|a| a.started_at)).collect();
    let mut resets: Vec<(&ActionResult, Timestamp)> = results
        .into_iter()
        .flatten()
        .filter(|r| r.action_name.eq_ignore_ascii_case("resetPasscode"))
        .filter_map(|r| r.start_date_time.map(|s| (r, s)))
        .collect();
    resets.sort_by_key(|(_, s)| *s);
    let could_start = |intent: Timestamp, start: Timestamp| start >= intent - skew;
    let mut taken: Vec<Option<&ActionResult>> = vec![None; records.len()];
    for (r, start) in &resets {
        let latest = (0..records.len())
            .filter(|&i| taken[i].is_none() && intents[i].is_some_and(|t| could_start(t, *start)))
            .min_by_key(|&i| intents[i]);
        if let Some(i) = latest {
            taken[i] = Some(r);
        }
    }
    (0..records.len())
        .map(|i| {
            let record = records[i];
            let intent = intents[i]?;
            if let Some(r) = taken[i] {
                let status = match r.action_state.to_ascii_lowercase().as_str() {
                    "done" => Status::Done,
                    "failed" => Status::Failed,
                    "notsupported" => Status::NotSupported,
                    "canceled" | "cancelled" => Status::Canceled,
                    _ => Status::Accepted,
                };
                let started = r.start_date_time.map(|t| t.to_string()).unwrap_or_default();
                return (status != record.status)
                    .then(|| (status, format!("Intune reports `{}` (started {started})", r.action_state)));
            }
            let maybe_ours = resets.iter().any(|(_, start)| could_start(intent, *start));
            if record.status == Status::Unknown && !maybe_ours && now.duration_since(intent) >= grace {
                let why = if results.is_none() {
                    "the device no longer exists"
                } else {
                    "Intune shows no reset since the intent"
                };
                return Some((
                    Status::NotExecuted,
                    format!(
                        "{why} after the {grace:#} grace period: the request never took effect; the next apply sends it"
                    ),
                ));
            }
            None
        })
        .collect()
}

/// Refreshes every `accepted` and `unknown` action of the ledger, reading each device once.
pub async fn refresh(
    store: &LocalStore,
    graph: Arc<Graph>,
    opts: &RefreshOptions,
) -> Result<RefreshReport, RefreshError> {
    let mut writer = store.lock(opts.lock_timeout, "reconcile refresh", opts.tenant.as_deref())?;
    let mut by_device: BTreeMap<(Collection, String), Vec<Record>> = BTreeMap::new();
    for r in writer.ledger().records.values() {
        if let (Status::Accepted | Status::Unknown, Some(id)) = (r.status, &r.managed_device_id) {
            by_device.entry((r.collection, id.to_ascii_lowercase())).or_default().push(r.clone());
        }
    }
    let mut report = RefreshReport { checked: by_device.values().map(Vec::len).sum(), ..RefreshReport::default() };
    let mut tasks = tokio::task::JoinSet::new();
    for ((collection, id), records) in by_device {
        let graph = graph.clone();
        tasks.spawn(async move {
            let results = graph.device_action_results(collection, &id).await;
            (records, results)
        });
    }
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        let Ok((records, results)) = joined else { continue };
        let results = match results {
            Ok(r) => r,
            Err(e) => {
                failure.get_or_insert(e);
                continue;
            }
        };
        let refs: Vec<&Record> = records.iter().collect();
        let decisions = decide(&refs, results.as_deref(), Timestamp::now(), opts.unknown_grace);
        for (mut record, decision) in records.into_iter().zip(decisions) {
            match decision {
                Some((status, note)) => {
                    let from = record.status;
                    record.status = status;
                    record.updated_at = Timestamp::now();
                    report.changes.push(Change { record, from, note });
                }
                None => report.waiting += 1,
            }
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

    fn record(serial: &str, status: Status, intent: &str) -> Record {
        let mut r = crate::state::tests::record("m", serial, status);
        r.attempts.push(Attempt {
            started_at: intent.parse().expect("ts"),
            client_request_id: uuid::Uuid::nil(),
            finished_at: None,
            http_status: None,
            request_id: None,
            error_code: None,
            error_message: None,
            policy_override: None,
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

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("ts")
    }

    fn one(r: &Record, results: Option<&[ActionResult]>, now: &str) -> Option<Status> {
        decide(&[r], results, ts(now), GRACE)[0].as_ref().map(|d| d.0)
    }

    const GRACE: Duration = Duration::from_secs(120);

    #[test]
    fn a_matching_result_gives_its_state() {
        let r = record("S1", Status::Accepted, "2026-11-27T10:00:00Z");
        let done = [result("ResetPasscode", "done", "2026-11-27T10:00:01Z")];
        assert_eq!(one(&r, Some(&done), "2026-11-27T10:05:00Z"), Some(Status::Done));
        let pending = [result("resetPasscode", "pending", "2026-11-27T10:00:01Z")];
        assert_eq!(one(&r, Some(&pending), "2026-11-27T10:05:00Z"), None);
        let unknown = record("S1", Status::Unknown, "2026-11-27T10:00:00Z");
        assert_eq!(one(&unknown, Some(&pending), "2026-11-27T10:05:00Z"), Some(Status::Accepted));
    }

    // Intune's clock or rounding may put our reset slightly before our intent: still ours.
    #[test]
    fn clock_skew_is_tolerated_but_older_resets_do_not_match() {
        let r = record("S1", Status::Unknown, "2026-11-27T10:00:00.600Z");
        let rounded = [result("resetPasscode", "done", "2026-11-27T10:00:00Z")];
        assert_eq!(one(&r, Some(&rounded), "2026-11-27T10:00:30Z"), Some(Status::Done));
        let earlier_round = [
            result("resetPasscode", "done", "2026-11-27T09:00:00Z"),
            result("remoteLock", "done", "2026-11-27T10:00:05Z"),
        ];
        assert_eq!(one(&r, Some(&earlier_round), "2026-11-27T10:01:00Z"), None, "within the grace period: wait");
        assert_eq!(one(&r, Some(&earlier_round), "2026-11-27T10:02:01Z"), Some(Status::NotExecuted));
    }

    #[test]
    fn the_grace_boundary_counts_as_elapsed() {
        let r = record("S1", Status::Unknown, "2026-11-27T10:00:00Z");
        assert_eq!(one(&r, Some(&[]), "2026-11-27T10:02:00Z"), Some(Status::NotExecuted));
        assert_eq!(one(&r, Some(&[]), "2026-11-27T10:01:59Z"), None);
        assert_eq!(one(&r, None, "2026-11-27T10:02:00Z"), Some(Status::NotExecuted), "device gone");
    }

    #[test]
    fn accepted_without_results_stays_accepted() {
        let r = record("S1", Status::Accepted, "2026-11-27T10:00:00Z");
        assert_eq!(one(&r, Some(&[]), "2026-11-28T10:00:00Z"), None);
    }

    // Two actions on one device must not both take the one reset Intune shows, and the one left
    // over must not be re-sent: that reset may have been its own.
    #[test]
    fn one_result_counts_for_one_action_and_ambiguity_is_never_resent() {
        let a = record("S1", Status::Unknown, "2026-11-27T10:00:00Z");
        let b = record("S2", Status::Unknown, "2026-11-27T10:00:10Z");
        let results = [result("resetPasscode", "done", "2026-11-27T10:00:11Z")];
        let d = decide(&[&a, &b], Some(&results), ts("2026-11-27T10:05:00Z"), GRACE);
        let statuses: Vec<Option<Status>> = d.iter().map(|x| x.as_ref().map(|y| y.0)).collect();
        assert_eq!(statuses, [Some(Status::Done), None], "the earliest intent takes it; the other stays unknown");
        // Two results for two intents: each gets one.
        let two = [
            result("resetPasscode", "done", "2026-11-27T10:00:01Z"),
            result("resetPasscode", "failed", "2026-11-27T10:00:11Z"),
        ];
        let d = decide(&[&a, &b], Some(&two), ts("2026-11-27T10:05:00Z"), GRACE);
        let statuses: Vec<Option<Status>> = d.iter().map(|x| x.as_ref().map(|y| y.0)).collect();
        assert_eq!(statuses, [Some(Status::Done), Some(Status::Failed)]);
    }
}

//! `refresh`: ask Intune what became of `accepted` and `unknown` actions.
//!
//! # Expected flow
//! 1. The ledger must exist and belong to the token's tenant; the token must read devices.
//! 2. Take the ledger lock; gather every device with an `accepted` or `unknown` action, by kind
//!    of action (and all the ledger's other records of that kind on those devices, for the results
//!    they already claimed).
//! 3. When some action is `unknown`, read the beta audit log `remoteActionAudits` once (filtered
//!    by Graph on `requestDateTime` and the `remoteAction` names of the unknown actions' kinds,
//!    every page), where the token may read it; not at all for kinds it does not record (a sync).
//! 4. Read each device's `deviceActionResults` and `managementState` (paced under the read
//!    budget); its answer's `Date` is Intune's clock now.
//! 5. [`decide`] each action; record every decision with its evidence on the attempt it is about.
//!
//! The guarantees (Intune's clock only, one result per action, evidence before a re-send) are
//! those of the pure rules in [`crate::core::refresh`].

use std::time::Duration;

use super::Error;
use super::Session;
use super::connect::Connection;
use crate::clock::SharedClock;
use std::sync::Arc;

use crate::core::refresh::{
    AuditView, Evidence, RefreshReport, audit_query, audits_of, decide, pending_by_device, pending_count,
    record_verdicts,
};
use crate::graph::{Audits, Graph, ReadError};
use crate::ledger::{Record, StateError, Store};
use crate::settings::{Overrides, Settings};

/// What was asked for.
#[derive(Debug, Clone, Default)]
pub(crate) struct RefreshRequest {
    pub simulate: bool,
    pub lock_timeout: Duration,
}

/// What a refresh found, and whether it was against the simulator.
#[derive(Debug)]
pub(crate) struct Refreshed {
    pub report: RefreshReport,
    pub simulated: bool,
}

/// `refresh` in `session`: the config, the connection, then [`refresh`].
pub(crate) fn run(
    session: &mut Session,
    overrides: &Overrides,
    request: &RefreshRequest,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Refreshed, Error> {
    let settings = super::project::settings_only(overrides, env)?;
    let clock = session.clock.clone();
    let (runtime, conn) = session.connect(&settings, request.simulate, env)?;
    let report = runtime.block_on(refresh(&settings, conn, request.lock_timeout, clock))?;
    Ok(Refreshed { report, simulated: conn.simulated })
}

/// Refreshes the ledger of `conn`, waiting up to `lock_timeout` for its lock.
async fn refresh(
    settings: &Settings,
    conn: &Connection,
    lock_timeout: Duration,
    clock: SharedClock,
) -> anyhow::Result<RefreshReport> {
    // Read once, before anything is contacted: the lock reuses it when nothing changed since.
    conn.store.read_before_lock().await?;
    let tenant = conn.tenant().await?;
    conn.require(crate::graph::auth::Need::Read, "refresh").await?;
    let opts =
        RefreshOptions { lock_timeout, unknown_grace: settings.graph.unknown_grace, tenant: Some(tenant), clock };
    Ok(settle(&conn.store, conn.graph.clone(), &opts).await?)
}

/// What settling the ledger needs.
#[derive(Debug, Clone)]
struct RefreshOptions {
    lock_timeout: Duration,
    /// `graph.unknownGrace`; `None` (`never`): only a person makes an unknown action sendable.
    unknown_grace: Option<Duration>,
    tenant: Option<String>,
    /// Where the time of every resolution recorded comes from.
    clock: SharedClock,
}

/// Why refresh stopped.
#[derive(Debug, thiserror::Error)]
enum RefreshError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot read device results from Graph")]
    Graph(#[from] ReadError),
    #[error("cannot settle the requests awaiting Multi Admin Approval: {0}")]
    Approval(String),
}

/// What a change made by Multi Admin Approval rests on.
fn approval_note(record: &Record) -> String {
    let last = record.attempts.last();
    let seen = last.and_then(|a| a.approval.as_ref()).map(|s| s.describe()).unwrap_or_default();
    format!("Multi Admin Approval request {}: {seen}", last.and_then(|a| a.approval_code.as_deref()).unwrap_or("?"))
}

/// Refreshes every `accepted` and `unknown` action of the ledger, reading each device once.
async fn settle(store: &Store, graph: Arc<Graph>, opts: &RefreshOptions) -> Result<RefreshReport, RefreshError> {
    let mut writer = store.lock(opts.lock_timeout, "reconcile refresh", opts.tenant.as_deref()).await?;
    // Requests held by Multi Admin Approval: approved ones re-sent once, refused ones rejected.
    let clock = &opts.clock;
    let approvals = crate::exec::approval::settle(&graph, &mut writer, || clock.now()).await.map_err(|e| match e {
        crate::exec::ApplyError::State(s) => RefreshError::State(s),
        other => RefreshError::Approval(other.to_string()),
    })?;
    let by_device = pending_by_device(writer.ledger());
    let checked: usize = by_device.values().map(|list| pending_count(list)).sum();
    let mut report = RefreshReport { checked: checked + approvals.waiting, ..RefreshReport::default() };
    report.waiting += approvals.waiting;
    let approved: Vec<crate::core::refresh::StatusChange> = approvals
        .changed
        .into_iter()
        .map(|(record, from)| {
            let note = approval_note(&record);
            crate::core::refresh::StatusChange { record, from, note }
        })
        .collect();

    // The audit log, once, from the earliest unknown intent, for the kinds of the unknown actions.
    let audits = match audit_query(&by_device) {
        None => Ok(Audits::Read(Vec::new())),
        Some((t, names)) => graph.action_audits(t, &names).await.map_err(|e| e.to_string()),
    };

    let mut tasks = tokio::task::JoinSet::new();
    for ((kind, collection, id), records) in by_device {
        let graph = graph.clone();
        tasks.spawn(async move {
            let results = graph.device_action_results(collection, &id).await;
            (kind.spec(), id, records, results)
        });
    }
    let mut failure = None;
    let mut updates = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let Ok((kind, id, records, results)) = joined else { continue };
        let read = match results {
            Ok(r) => r,
            Err(e) => {
                failure.get_or_insert(e);
                continue;
            }
        };
        let device_audits = audits_of(&audits, kind, &id);
        let view = match &audits {
            Ok(Audits::Read(_)) => AuditView::Read(&device_audits),
            Ok(Audits::Unreadable(why)) => AuditView::NotPermitted(why),
            Err(why) => AuditView::Unavailable(why),
        };
        let ev = Evidence {
            results: read.results.as_deref(),
            management_state: read.management_state.as_deref(),
            server_now: read.server_date,
            audits: view,
        };
        let refs: Vec<&Record> = records.iter().collect();
        let verdicts = decide(kind, &refs, &ev, opts.unknown_grace);
        let now = opts.clock.now();
        record_verdicts(records.into_iter().zip(verdicts), read.server_date, now, &mut report, &mut updates);
    }
    updates.sort_by(|a, b| (&a.record.manifest, &a.record.key).cmp(&(&b.record.manifest, &b.record.key)));
    report.unresolved.sort_by(|a, b| (&a.0.manifest, &a.0.key).cmp(&(&b.0.manifest, &b.0.key)));
    writer.record_all(updates.iter().map(|c| c.record.clone()).collect()).await?;
    // A status that did not change but gained a claim is recorded, not reported as a change.
    report.changes = approved.into_iter().chain(updates.into_iter().filter(|c| c.from != c.record.status)).collect();
    writer.commit().await?;
    match failure {
        Some(e) => Err(RefreshError::Graph(e)),
        None => Ok(report),
    }
}

//! The executor: lock → plan → confirm → for each action: intent → call → outcome → unlock.
//!
//! # Expected flow
//! 1. Take the ledger lock (a second writer fails at once, or waits `--lock-timeout`).
//! 2. Plan against the locked ledger; nothing to reset ends here.
//! 3. Refuse a plan larger than `--max-actions`; check the token's `roles`.
//! 4. Look the devices up; blocked actions are never sent.
//! 5. Show the plan and ask for confirmation (the [`Ui`] decides how).
//! 6. For each action, concurrently and paced: take a send slot, durably record the intent
//!    (status `unknown`), POST once, durably record the outcome.
//! 7. Fold the journal into the ledger and release the lock.
//!
//! # Guarantees
//! - Never twice: a POST is sent only after its intent is on disk, and an action whose record
//!   says it was (or may have been) executed is never planned again. A crash or kill at any
//!   instant leaves at worst `unknown` actions, which only `refresh` can make sendable again.
//! - A 429, 401 or 408 answer means the request was not executed: it is recorded as such and the
//!   action is retried (after the server's `Retry-After`, capped at `graph.backoff.max`, or an
//!   exponential backoff; after a 401 with a renewed token) with a new intent, a bounded number
//!   of times. A 5xx, a timeout or a broken connection is `unknown` and never retried.
//! - Every attempt records Intune's clock: the lower bound of its arrival ([`Attempt::server_sent_at`])
//!   and the answer's `Date`, so `refresh` never has to trust this machine's clock.
//! - Cancellation (Ctrl-C, SIGTERM) stops taking new send slots; requests in flight finish and
//!   are recorded.
//!
//! # Errors
//! Infrastructure failures (ledger unreadable or unwritable, lock held, authentication, missing
//! permission) abort the run; a failed action is data: an outcome in the ledger.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::action::Action;
use crate::graph::auth::PRIVILEGED_ROLE;
use crate::graph::{Answer, AuthError, Graph, GraphError, ReadError, SendResult};
use crate::plan::{self, Plan, PlanOptions, Resolution, Resolutions};
use crate::saved::{Binding, Restored, SavedError, SavedPlan};
use crate::state::{Attempt, Record, StateError, Status, Store, Writer};

/// What the command line decided.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// The policy, and the violations the manifests alone show (each stops its manifest).
    pub policy: crate::policy::Policy,
    pub static_violations: Vec<crate::plan::Violation>,
    /// Ticket, reason and requester of every manifest, shown in the plan and recorded.
    pub manifests: std::collections::BTreeMap<String, crate::manifest::ManifestInfo>,
    /// Where this run comes from (commit, pull request, CI run, actor), recorded with every attempt.
    pub provenance: crate::state::Provenance,
    /// A policy rule knowingly overridden, recorded with every attempt.
    pub policy_override: Option<String>,
    /// `apply --plan FILE`: execute the reviewed resets of this saved plan whose premise holds.
    pub expected: Option<Expected>,
    pub lock_timeout: Duration,
    pub max_actions: Option<usize>,
    pub report_orphans: bool,
    pub tenant: Option<String>,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

/// A reviewed saved plan to execute.
#[derive(Debug, Clone)]
pub struct Expected {
    pub path: std::path::PathBuf,
    pub saved: SavedPlan,
}

/// How the executor talks to the person (or CI job) running it.
pub trait Ui {
    /// Shows the plan about to be executed.
    fn show_plan(&mut self, plan: &Plan<'_>);
    /// Asks whether to go on.
    fn confirm(&mut self, plan: &Plan<'_>) -> bool;
    /// Sending starts: `total` actions.
    fn started(&mut self, total: usize);
    /// One action reached its outcome for this run.
    fn outcome(&mut self, record: &Record);
}

/// Why the run stopped before (or while) sending.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot authenticate to Microsoft Graph")]
    Auth(#[from] AuthError),
    #[error("the access token lacks the application permission {PRIVILEGED_ROLE} (it has: {})\nhint: in Entra ID, add that Microsoft Graph application permission to the app registration and grant admin consent", if roles.is_empty() { "no roles".to_owned() } else { roles.join(", ") })]
    MissingRole { roles: Vec<String> },
    #[error(
        "the plan has {planned} resets, more than --max-actions {max}\nhint: split the change, or raise --max-actions in a reviewed change"
    )]
    TooMany { planned: usize, max: usize },
    #[error("looking devices up failed: {0}")]
    Lookup(#[from] ReadError),
    #[error("apply was not confirmed; nothing was sent")]
    Declined,
    #[error("an action task failed: {0}")]
    Task(String),
    #[error("{0}")]
    Recording(String),
    #[error(transparent)]
    Saved(#[from] SavedError),
    #[error("{} outcome{} could not be written to the ledger ({source}); the ledger shows {} as `unknown`: {keys}\nhint: nothing is re-sent blindly: run `reconcile refresh` once the ledger is reachable, and it settles them from Intune", keys.len(), if keys.len() == 1 { "" } else { "s" }, if keys.len() == 1 { "it" } else { "them" }, keys = keys.join(", "))]
    Unsaved { keys: Vec<String>, source: StateError },
    #[error("{} policy violation{}: nothing was sent", .0.items().len(), if .0.items().len() == 1 { "" } else { "s" })]
    Policy(crate::diagnostic::Diagnostics),
}

/// What happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Resets in the plan that were to be sent.
    pub planned: usize,
    pub blocked: usize,
    pub accepted: usize,
    pub rejected: usize,
    pub unknown: usize,
    /// Not executed this run (throttled too long, never sent, or stopped by Ctrl-C).
    pub not_executed: usize,
    pub interrupted: bool,
    /// Every action's record as this run left it, in completion order.
    pub records: Vec<Record>,
    /// Every blocked action: (action, why).
    pub blocked_actions: Vec<(Action, String)>,
}

impl ApplyReport {
    /// The report of `plan` before anything is sent: what is planned and what is blocked.
    fn of(plan: &Plan<'_>) -> Self {
        ApplyReport {
            planned: plan.summary.to_reset,
            blocked: plan.summary.blocked,
            blocked_actions: plan
                .entries
                .iter()
                .filter(|e| e.change == crate::plan::Change::Blocked)
                .filter_map(|e| e.action.map(|a| (a.clone(), e.reason.to_string())))
                .collect(),
            ..ApplyReport::default()
        }
    }

    /// Exit 0 only when every planned action was accepted and nothing is blocked.
    pub fn success(&self) -> bool {
        self.accepted == self.planned && self.blocked == 0 && !self.interrupted
    }
}

/// Runs `actions` against Graph. See the module docs for the flow and guarantees.
pub async fn apply(
    actions: &[Action],
    store: &Store,
    graph: Arc<Graph>,
    opts: &ApplyOptions,
    ui: &mut dyn Ui,
    cancel: watch::Receiver<bool>,
) -> Result<ApplyReport, ApplyError> {
    let writer = store.lock(opts.lock_timeout, "reconcile apply", opts.tenant.as_deref()).await?;
    if let Some(exp) = &opts.expected {
        let (lineage, serial) = writer.ledger_before();
        let now = Binding { lineage, serial, tenant: opts.tenant.clone() };
        if let Some(what) = exp.saved.binding.changes_since(&now) {
            return Err(SavedError::Stale { path: exp.path.clone(), what }.into());
        }
    }
    // A saved plan: its reviewed resets are all that may be sent; nothing else is even planned.
    let restored = opts.expected.as_ref().map(|exp| Restored::new(exp.saved.clone()));
    let reviewed: Vec<Action> = match &opts.expected {
        Some(exp) => {
            let keys = exp.saved.reset_keys();
            actions.iter().filter(|a| keys.contains(&a.key)).cloned().collect()
        }
        None => Vec::new(),
    };
    let actions = if opts.expected.is_some() { reviewed.as_slice() } else { actions };
    let report_orphans = opts.report_orphans && opts.expected.is_none();
    let popts = PlanOptions {
        report_orphans,
        rename_guard: if report_orphans { opts.policy.rename_guard(Timestamp::now()) } else { None },
    };
    let none = Resolutions::new();
    let first = plan::plan(actions, writer.ledger(), &none, popts);
    let candidates: Vec<&Action> = first.to_reset().filter_map(|e| e.action).collect();
    if candidates.is_empty() && opts.expected.is_none() {
        let first = first.with_manifests(opts.manifests.clone());
        ui.show_plan(&first);
        let report = ApplyReport::of(&first);
        drop(first);
        writer.commit().await?;
        return Ok(report);
    }
    if let Some(max) = opts.max_actions
        && candidates.len() > max
    {
        return Err(ApplyError::TooMany { planned: candidates.len(), max });
    }
    if !candidates.is_empty() {
        check_role(&graph).await?;
    }
    let resolutions = crate::resolve::resolve(&graph, &candidates, writer.ledger()).await?;
    let plan = plan::plan(actions, writer.ledger(), &resolutions, popts).with_manifests(opts.manifests.clone());
    let plan = opts.policy.review(plan, opts.static_violations.clone(), writer.ledger(), Timestamp::now());
    let plan = match &restored {
        Some(r) => crate::saved::judge(r, plan, writer.ledger()),
        None => plan,
    };
    if plan.run_violations().next().is_some() {
        let mut diags = crate::diagnostic::Diagnostics::default();
        for v in &plan.violations {
            diags.push(v.diagnostic.clone());
        }
        return Err(ApplyError::Policy(diags));
    }
    ui.show_plan(&plan);
    let mut report = ApplyReport::of(&plan);
    if plan.summary.to_reset == 0 {
        writer.commit().await?;
        return Ok(report);
    }
    // A saved plan was reviewed already: applying it is the approval.
    if opts.expected.is_none() && !ui.confirm(&plan) {
        return Err(ApplyError::Declined);
    }
    let jobs: Vec<(Action, String, Record, crate::state::Provenance)> = plan
        .to_reset()
        .filter_map(|e| {
            let action = e.action?;
            let Some(Resolution::Device(d)) = resolutions.get(&action.key) else { return None };
            let mut record =
                e.record.cloned().unwrap_or_else(|| Record::new(action, Some(d.id.clone()), Timestamp::now()));
            record.device_name = d.device_name.clone();
            let provenance = crate::state::Provenance {
                manifest: plan.manifests.get(&action.manifest).cloned().unwrap_or_default(),
                plan: opts.expected.as_ref().map(|exp| exp.saved.id.to_string()),
                ..opts.provenance.clone()
            };
            Some((action.clone(), d.id.clone(), record, provenance))
        })
        .collect();
    drop(plan);

    let ctx = Arc::new(Ctx {
        graph,
        writer: tokio::sync::Mutex::new(writer),
        queued: Mutex::new(Vec::new()),
        unsaved: Mutex::new(BTreeMap::new()),
        cancel,
        stopped: AtomicBool::new(false),
        opts: opts.clone(),
    });
    ui.started(jobs.len());
    let mut tasks = tokio::task::JoinSet::new();
    for (action, device_id, record, provenance) in jobs {
        let ctx = ctx.clone();
        let span = tracing::info_span!("action", key = action.key.short(), device = %device_id);
        tasks.spawn(async move { execute(&ctx, &action, &device_id, record, provenance).await }.instrument(span));
    }
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(Some(record))) => {
                match record.status {
                    Status::Accepted => report.accepted += 1,
                    Status::Rejected => report.rejected += 1,
                    Status::Unknown => report.unknown += 1,
                    _ => report.not_executed += 1,
                }
                ui.outcome(&record);
                report.records.push(record);
            }
            Ok(Ok(None)) => report.not_executed += 1,
            Ok(Err(e)) => {
                ctx.stop();
                failure.get_or_insert(e);
            }
            Err(e) => {
                ctx.stop();
                failure.get_or_insert(ApplyError::Task(e.to_string()));
            }
        }
    }
    report.interrupted = *ctx.cancel.borrow();
    let ctx = Arc::into_inner(ctx).expect("every task has finished");
    let mut writer = ctx.writer.into_inner();
    let unsaved: Vec<Record> =
        ctx.unsaved.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner).into_values().collect();
    if !unsaved.is_empty() {
        // Outcomes of requests that were sent: kept in memory, written when the store is back.
        let mut last = None;
        for wait in [0, 1, 2, 4, 8] {
            tokio::time::sleep(Duration::from_secs(wait)).await;
            match writer.record_all(unsaved.clone()).await {
                Ok(()) => {
                    tracing::info!(
                        outcomes = unsaved.len(),
                        "recorded the outcomes kept while the ledger was unreachable"
                    );
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        if let Some(source) = last {
            let keys = unsaved.iter().map(|r| r.key.short().to_owned()).collect();
            let _ = writer.commit().await;
            return Err(ApplyError::Unsaved { keys, source });
        }
    }
    let committed = writer.commit().await;
    if let Some(e) = failure {
        return Err(e);
    }
    committed?;
    Ok(report)
}

/// Refuses a token whose `roles` lack the permission. A token that is not a JWT cannot be
/// checked: Graph will answer 403 (`rejected`) if the permission is missing, so that only warns.
async fn check_role(graph: &Graph) -> Result<(), ApplyError> {
    let token = graph.tokens().token().await?;
    let Some(roles) = token.roles() else {
        tracing::warn!("the access token is not a JWT: cannot check it carries {PRIVILEGED_ROLE}");
        return Ok(());
    };
    if roles.iter().any(|r| r == PRIVILEGED_ROLE) { Ok(()) } else { Err(ApplyError::MissingRole { roles }) }
}

struct Ctx {
    graph: Arc<Graph>,
    writer: tokio::sync::Mutex<Writer>,
    /// Records waiting to be written, each with who to tell once it is durable (group commit).
    #[allow(clippy::type_complexity)]
    queued: Mutex<Vec<(Record, tokio::sync::oneshot::Sender<Result<(), String>>)>>,
    /// Outcomes that could not be written (the store was unreachable), to write at the end.
    unsaved: Mutex<BTreeMap<crate::action::ActionKey, Record>>,
    cancel: watch::Receiver<bool>,
    stopped: AtomicBool,
    opts: ApplyOptions,
}

impl Ctx {
    /// Durably records an intent before its request is sent. On failure nothing is sent, by this
    /// task or any other.
    async fn record_intent(&self, r: &Record) -> Result<(), ApplyError> {
        let result = self.write(r).await;
        result.inspect_err(|_| self.stop())
    }

    /// Durably records an outcome. On failure no new request is sent, and the outcome is kept to
    /// be written at the end (or reported as unwritten: the ledger then says `unknown`).
    async fn record_outcome(&self, r: &Record) -> Result<(), ApplyError> {
        let result = self.write(r).await;
        result.inspect_err(|_| {
            self.stop();
            self.unsaved.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(r.key.clone(), r.clone());
        })
    }

    /// Durably writes `r`. Records queued by other tasks while a write is in flight go together in
    /// the next one (group commit: one fsync or one blob for all of them), so the ledger's latency
    /// never serialises the requests; each caller returns only once its own record is durable.
    async fn write(&self, r: &Record) -> Result<(), ApplyError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.queued.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((r.clone(), tx));
        {
            let mut w = self.writer.lock().await;
            let batch = std::mem::take(&mut *self.queued.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
            if !batch.is_empty() {
                let (records, waiters): (Vec<Record>, Vec<_>) = batch.into_iter().unzip();
                let result = w.record_all(records).await.map_err(|e| e.to_string());
                for waiter in waiters {
                    let _ = waiter.send(result.clone());
                }
            }
        }
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(ApplyError::Recording(why)),
            Err(_) => Err(ApplyError::Recording("the ledger writer went away".into())),
        }
    }

    /// Whether new sends must stop: cancelled by the user, or stopped after a failure.
    fn cancelled(&self) -> bool {
        *self.cancel.borrow() || self.stopped.load(Ordering::SeqCst)
    }

    /// Stops every task from taking new send slots (an infrastructure failure happened).
    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }
}

/// One action: as many attempts as 429/401/unsendable answers require, each with its own intent.
/// `Ok(None)`: cancelled before anything was sent.
async fn execute(
    ctx: &Ctx,
    action: &Action,
    device_id: &str,
    mut record: Record,
    provenance: crate::state::Provenance,
) -> Result<Option<Record>, ApplyError> {
    use crate::retry::{History, Next, Outcome, decide};
    let policy = crate::retry::Policy::graph(ctx.opts.backoff_initial, ctx.opts.backoff_max);
    let mut history = History::default();
    let mut sent_any = false;
    record.managed_device_id = Some(device_id.to_owned());
    loop {
        if ctx.cancelled() {
            return Ok(sent_any.then_some(record));
        }
        let mut cancel = ctx.cancel.clone();
        let slot = tokio::select! {
            slot = ctx.graph.write_slot() => slot?,
            _ = cancel.wait_for(|c| *c) => return Ok(sent_any.then_some(record)),
        };
        if ctx.cancelled() {
            return Ok(sent_any.then_some(record));
        }
        let client_request_id = Uuid::new_v4();
        let now = Timestamp::now();
        record.attempts.push(Attempt {
            started_at: now,
            server_sent_at: ctx.graph.server_time_lower_bound(),
            client_request_id,
            policy_override: ctx.opts.policy_override.clone(),
            provenance: Some(provenance.clone()),
            ..Attempt::default()
        });
        record.status = Status::Unknown;
        record.updated_at = now;
        ctx.record_intent(&record).await?;
        sent_any = true;
        let token = slot.token().clone();
        let result = ctx.graph.reset_passcode(slot, action.collection, device_id, client_request_id).await;
        let now = Timestamp::now();
        record.updated_at = now;
        let attempt = record.attempts.last_mut().expect("pushed above");
        attempt.finished_at = Some(now);
        let outcome = match result {
            SendResult::Accepted(a) => {
                fill(attempt, Some(&a), None);
                record.status = Status::Accepted;
                Outcome::Final
            }
            SendResult::Rejected(a, e) => {
                fill(attempt, Some(&a), Some(&e));
                record.status = Status::Rejected;
                Outcome::Final
            }
            SendResult::Unknown(a, why) => {
                fill(attempt, a.as_ref(), None);
                attempt.error_message = Some(why);
                record.status = Status::Unknown;
                Outcome::Final
            }
            SendResult::Throttled(a, retry_after, e) => {
                fill(attempt, Some(&a), Some(&e));
                record.status = Status::NotExecuted;
                Outcome::Throttled(retry_after)
            }
            SendResult::Unauthorized(a, e) => {
                fill(attempt, Some(&a), Some(&e));
                record.status = Status::NotExecuted;
                Outcome::Unauthorized
            }
            SendResult::RequestTimeout(a, e) => {
                fill(attempt, Some(&a), Some(&e));
                record.status = Status::NotExecuted;
                Outcome::NotSent
            }
            SendResult::HeldBack => {
                attempt.error_message = Some("held back, never sent: a 429's pause began before it left".into());
                record.status = Status::NotExecuted;
                Outcome::HeldBack
            }
            SendResult::NotSent(why) => {
                attempt.error_message = Some(why);
                record.status = Status::NotExecuted;
                Outcome::NotSent
            }
        };
        let next = decide(outcome, history, &policy);
        history = history.after(outcome);
        if let (Next::RetryAfter(delay), Outcome::Throttled(asked)) = (next, outcome) {
            crate::retry::log_capped(asked, &policy);
            tracing::info!(delay_ms = delay.as_millis() as u64, "throttled (429); slowing down");
            // At once, before recording: the pacer holds every task's sends until the pause is over.
            ctx.graph.writes().throttled(delay).await;
        }
        tracing::info!(status = %record.status, "outcome");
        ctx.record_outcome(&record).await?;
        let again = match next {
            Next::Done | Next::GiveUp => false,
            // Renews the token once for every request that met the same expiry.
            Next::Reauthenticate => ctx.graph.tokens().invalidate(&token).await,
            Next::RetryAfter(delay) => {
                if !matches!(outcome, Outcome::Throttled(_)) {
                    tokio::time::sleep(delay).await;
                }
                true
            }
        };
        if !again {
            return Ok(Some(record));
        }
    }
}

fn fill(a: &mut Attempt, answer: Option<&Answer>, error: Option<&GraphError>) {
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

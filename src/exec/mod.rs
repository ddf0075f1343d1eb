//! The executor: lock → plan → look up while sending → record → unlock.
//!
//! # Expected flow
//! 1. Take the ledger lock (a second writer fails at once, or waits `--lock-timeout`).
//! 2. Plan against the locked ledger (offline: what the ledger and manifests alone say); nothing
//!    to reset ends here. (The token's permissions were checked before: `app::apply`.)
//! 3. Look the candidates' devices up in plan order, at the read budget, and **send while looking
//!    up**: a reset leaves as soon as its device and every earlier candidate's are looked up and
//!    the plan made from what is known so far still says to reset it. What "known" needs depends
//!    on what may still stop it (the release rule, [`crate::core::release`]):
//!    - nothing (the default): each reset leaves once it and the candidates before it are known;
//!    - device rules in the policy (`allowPlatforms`, `protectedDevices`, `cooldown`), whose
//!      violation stops a whole manifest: a manifest's resets leave once all its devices are known;
//!    - a confirmation to ask, a saved plan to judge (`--plan`), or more candidates than the blast
//!      radius (`--max-actions`, `maxActionsPerApply`): nothing leaves before every device is known
//!      and the complete plan is confirmed, judged and counted.
//!
//!    Lookups run at most [`LOOKAHEAD`](crate::core::release::LOOKAHEAD) resets ahead of the
//!    sends. Every plan is made against the ledger as locked, so each reset gets exactly the
//!    decision the complete plan gives it. The loop that looks up, re-plans and releases is
//!    [`pipeline`].
//! 4. The complete plan is shown once every device is known (with `--auto-approve`, resets may
//!    already be under way: exactly those it shows).
//! 5. For each reset, concurrently and paced ([`attempt`]): take a send slot, durably record the
//!    intent (status `unknown`), POST once, durably record the outcome.
//! 6. Fold the journal into the ledger and release the lock.
//!
//! # Guarantees
//! - Never twice: a POST is sent only after its intent is on disk, and an action whose record
//!   says it was (or may have been) executed is never planned again. A crash or kill at any
//!   instant leaves at worst `unknown` actions, which only `refresh` can make sendable again.
//! - A 429, 401 or 408 answer means the request was not executed: it is recorded as such and the
//!   action is retried (after the server's `Retry-After`, capped at `graph.backoff.max`, or an
//!   exponential backoff; after a 401 with a renewed token) with a new intent, a bounded number
//!   of times. A 5xx, a timeout or a broken connection is `unknown` and never retried.
//! - Every attempt records Intune's clock: the lower bound of its arrival ([`crate::ledger::Attempt::server_sent_at`])
//!   and the answer's `Date`, so `refresh` never has to trust this machine's clock.
//! - Cancellation (Ctrl-C, SIGTERM) stops taking new send slots; requests in flight finish and
//!   are recorded.
//!
//! # Errors
//! Infrastructure failures (ledger unreadable or unwritable, lock held, authentication, missing
//! permission) abort the run; a failed action is data: an outcome in the ledger.

pub(crate) mod approval;
mod attempt;
mod pipeline;
pub(crate) mod resolve;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::core::action::Action;
use crate::core::out_of_band::AuditLog;
use crate::core::plan::{self, Plan, PlanOptions, Resolution, Resolutions};
use crate::core::release::{Mode, Release, may_look_up};
use crate::core::saved::{Binding, Restored, SavedError, SavedPlan};
use crate::exec::resolve::{Found, LookupKey};
use crate::graph::{AuthError, Graph, ReadError};
use crate::ledger::{Ledger, Record, StateError, Status, Store, Writer};

/// What the command line decided.
#[derive(Debug, Clone)]
pub(crate) struct ApplyOptions {
    /// The policy, and the violations the manifests alone show (each stops its manifest).
    pub policy: crate::core::policy::Policy,
    pub static_violations: Vec<crate::core::plan::Violation>,
    /// Ticket, reason and requester of every manifest, shown in the plan and recorded.
    pub manifests: std::collections::BTreeMap<String, crate::manifest::ManifestInfo>,
    /// Where this run comes from (commit, pull request, CI run, actor), recorded with every attempt.
    pub provenance: crate::ledger::Provenance,
    /// A policy rule knowingly overridden, recorded with every attempt.
    pub policy_override: Option<String>,
    /// `apply --plan FILE`: execute the reviewed resets of this saved plan whose premise holds.
    pub expected: Option<ReviewedPlan>,
    pub lock_timeout: Duration,
    /// Ask the [`Ui`] to confirm the complete plan before anything is sent.
    pub confirm: bool,
    /// `--max-actions`: like `maxActionsPerApply`, the most resets the run may send.
    pub max_actions: Option<usize>,
    pub report_orphans: bool,
    pub tenant: Option<String>,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Where the time of every record and every policy judgement comes from.
    pub clock: crate::clock::SharedClock,
}

impl ApplyOptions {
    /// The most resets this run may send: the stricter of `--max-actions` and the policy's
    /// `maxActionsPerApply`, both counted over the complete plan (after devices are looked up
    /// and policy applied: a blocked device is not sent, so it does not count).
    pub(crate) fn blast_radius(&self) -> Option<usize> {
        match (self.max_actions, self.policy.max_actions()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A reviewed saved plan to execute.
#[derive(Debug, Clone)]
pub(crate) struct ReviewedPlan {
    pub path: std::path::PathBuf,
    pub saved: SavedPlan,
}

/// How the executor talks to the person (or CI job) running it.
pub(crate) trait Ui {
    /// Shows the plan about to be executed.
    fn show_plan(&mut self, plan: &Plan<'_>);
    /// Asks whether to go on.
    fn confirm(&mut self, plan: &Plan<'_>) -> bool;
    /// Work starts: `candidates` devices to look up, each reset sent as soon as it may be.
    fn started(&mut self, candidates: usize);
    /// How far the run is (called when it changes).
    fn progress(&mut self, progress: Progress);
    /// One action reached its outcome for this run.
    fn outcome(&mut self, record: &Record);
}

/// How far a run is, for a progress display: devices are looked up while resets are sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Resets that may be sent, each with a device to look up.
    pub candidates: usize,
    /// Candidates whose device is looked up.
    pub looked_up: usize,
    /// Resets whose request left (the first attempt of each).
    pub sent: usize,
    /// Sent resets with their outcome for this run.
    pub finished: usize,
    pub accepted: usize,
}

/// Why the run stopped before (or while) sending.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot authenticate to Microsoft Graph")]
    Auth(#[from] AuthError),
    #[error(
        "the plan has {planned} resets, more than --max-actions {max}\nhint: split the change, or raise --max-actions in a reviewed change"
    )]
    TooMany { planned: usize, max: usize },
    #[error("looking devices up failed")]
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
    Policy(crate::diag::Diagnostics),
}

/// What happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ApplyReport {
    /// Resets in the plan that were to be sent.
    pub planned: usize,
    pub blocked: usize,
    /// Resets made outside the tool, recorded as done (nothing sent).
    pub adopted: usize,
    pub accepted: usize,
    pub rejected: usize,
    pub unknown: usize,
    /// Sent, and certainly not executed (throttled too long, refused unread): recorded so, and
    /// sent again by the next apply.
    pub not_executed: usize,
    /// Of `not_executed`, those Intune's Multi Admin Approval holds (awaiting a second
    /// administrator; `apply` or `refresh` sends each once approved).
    pub awaiting_approval: usize,
    /// Never sent: the run stopped (Ctrl-C) before their turn. No record; the next apply sends them.
    pub not_started: usize,
    pub interrupted: bool,
    /// Every action's record as this run left it, in completion order.
    pub records: Vec<Record>,
    /// Every blocked action: (action, why).
    pub blocked_actions: Vec<(Action, String)>,
    /// `apply --plan`: the actions the manifests ask for that are not in the reviewed plan (a
    /// plain apply would send them). Never sent.
    pub not_in_plan: Vec<Action>,
}

impl ApplyReport {
    /// The report of `plan` before anything is sent: what is planned and what is blocked.
    fn of(plan: &Plan<'_>) -> Self {
        ApplyReport {
            planned: plan.summary.to_send,
            blocked: plan.summary.blocked,
            blocked_actions: plan
                .entries
                .iter()
                .filter(|e| e.change == crate::core::plan::Change::Blocked)
                .filter_map(|e| e.action.map(|a| (a.clone(), e.reason.to_string())))
                .collect(),
            ..ApplyReport::default()
        }
    }

    /// Exit 0 only when every planned action was accepted and nothing is blocked.
    pub(crate) fn success(&self) -> bool {
        self.accepted == self.planned && self.blocked == 0 && !self.interrupted
    }
}

/// Runs `actions` against Graph. See the module docs for the flow and guarantees.
pub(crate) async fn apply(
    actions: &[Action],
    store: &Store,
    graph: Arc<Graph>,
    opts: &ApplyOptions,
    ui: &mut dyn Ui,
    cancel: watch::Receiver<bool>,
) -> Result<ApplyReport, ApplyError> {
    let mut writer = store.lock(opts.lock_timeout, "reconcile apply", opts.tenant.as_deref()).await?;
    still_bound(&writer, opts)?;
    // Requests held by Multi Admin Approval first: an approved one is re-sent once, and the
    // plan below sees every outcome (docs/exactly-once.md, "Multi Admin Approval").
    let clock = &opts.clock;
    let approvals = approval::settle(&graph, &mut writer, || clock.now()).await?;
    for (record, _) in &approvals.changed {
        ui.outcome(record);
    }
    let scope = Scope::new(actions, &writer, opts);
    let actions = scope.actions(actions);
    let none = Resolutions::new();
    let first = plan::plan(actions, &scope.ledger, &none, scope.popts);
    let candidates: Vec<&Action> = first.to_send().filter_map(|e| e.action).collect();
    if candidates.is_empty() && opts.expected.is_none() {
        let first = first.with_manifests(opts.manifests.clone());
        ui.show_plan(&first);
        let report = ApplyReport::of(&first);
        drop(first);
        writer.commit().await?;
        return Ok(report);
    }
    drop(first);
    // Resets made outside the tool are judged from the audit log too: read once, before any send.
    let own = crate::core::out_of_band::OwnIntents::default();
    if !candidates.is_empty() {
        ui.started(candidates.len());
    }
    let audits = audit_log(&graph, opts, &candidates, &own).await?;
    let limit = opts.blast_radius();
    let kinds: Vec<crate::core::action::ActionKind> = candidates.iter().map(|a| a.kind).collect();
    let release = Release::of(Mode {
        saved_plan: opts.expected.is_some(),
        confirm: opts.confirm,
        limit,
        candidates: candidates.len(),
        device_rules: opts.policy.has_device_rules(kinds.iter().copied()),
        destructive: kinds.iter().any(|k| k.spec().class == crate::core::kinds::RiskClass::Destructive),
        over_kind_limit: opts.policy.kind_limits_may_be_exceeded(&kinds),
    });
    tracing::debug!(?release, candidates = candidates.len(), "devices are looked up while resets are sent");
    let keys: Vec<LookupKey> = candidates.iter().map(|a| crate::exec::resolve::key_of(a)).collect();
    let ctx = Run::new(graph, writer, cancel, opts, own);
    let (found_tx, found_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut lookups = tokio::task::JoinSet::new();
    lookups.spawn(feed_lookups(
        ctx.clone(),
        crate::exec::resolve::lookup_keys(&candidates),
        release != Release::All,
        crate::exec::resolve::ListedResults::given(&audits),
        found_tx,
    ));
    let mut run = pipeline::Pipeline::new(
        pipeline::Plans { actions, scope: &scope, opts, audits: &audits, limit, release },
        candidates,
        &keys,
        ctx.clone(),
        found_rx,
    );
    run.run(ui).await?;
    // The lookups hold the context: they are over before it is taken apart.
    lookups.shutdown().await;
    let (report, failure) = run.report(scope.not_in_plan.clone());
    finish(ctx, report, failure).await
}

/// `apply --plan`: fails when the ledger changed since the plan was saved.
fn still_bound(writer: &Writer, opts: &ApplyOptions) -> Result<(), ApplyError> {
    if let Some(exp) = &opts.expected {
        let (lineage, serial) = writer.ledger_before();
        let now = Binding { lineage, serial, tenant: opts.tenant.clone() };
        if let Some(what) = exp.saved.binding.changes_since(&now) {
            return Err(SavedError::Stale { path: exp.path.clone(), what }.into());
        }
    }
    Ok(())
}

/// What a run plans against: the ledger as locked, and for a saved plan its reviewed actions.
struct Scope {
    /// A saved plan: its reviewed resets are all that may be sent; nothing else is even planned.
    reviewed: Option<Vec<Action>>,
    restored: Option<Restored>,
    /// What the manifests ask for that a plain apply would send but the reviewer never saw: not
    /// sent, and named in the report so nobody thinks it was.
    not_in_plan: Vec<Action>,
    popts: PlanOptions,
    /// Every decision is made against the ledger as it was locked: this run's own records never
    /// change what it plans (a reset just sent is not "in cooldown", nor "already done").
    ledger: Ledger,
}

impl Scope {
    fn new(actions: &[Action], writer: &Writer, opts: &ApplyOptions) -> Self {
        let restored = opts.expected.as_ref().map(|exp| Restored::new(exp.saved.clone()));
        let reviewed = opts.expected.as_ref().map(|exp| {
            let keys = exp.saved.reviewed_keys();
            actions.iter().filter(|a| keys.contains(&a.key)).cloned().collect()
        });
        let not_in_plan: Vec<Action> = match &opts.expected {
            Some(exp) => {
                let keys = exp.saved.reviewed_keys();
                let ledger = writer.ledger();
                actions
                    .iter()
                    .filter(|a| !keys.contains(&a.key) && !a.former_keys.iter().any(|k| keys.contains(k)))
                    .filter(|a| plan::record_of(ledger, a).is_none_or(|r| !r.status.blocks_sending()))
                    .cloned()
                    .collect()
            }
            None => Vec::new(),
        };
        let report_orphans = opts.report_orphans && opts.expected.is_none();
        let popts = PlanOptions {
            report_orphans,
            rename_guard: if report_orphans { opts.policy.rename_guard(opts.clock.now()) } else { None },
        };
        Scope { reviewed, restored, not_in_plan, popts, ledger: writer.ledger().clone() }
    }

    /// The actions to plan: the reviewed ones of a saved plan, or all of `actions`.
    fn actions<'a>(&'a self, actions: &'a [Action]) -> &'a [Action] {
        self.reviewed.as_deref().unwrap_or(actions)
    }
}

/// The audit log of out-of-band resets (none to read without candidates), with this run's own
/// intents discounted.
async fn audit_log(
    graph: &Graph,
    opts: &ApplyOptions,
    candidates: &[&Action],
    own: &crate::core::out_of_band::OwnIntents,
) -> Result<AuditLog, ApplyError> {
    if candidates.is_empty() {
        return Ok(AuditLog::default());
    }
    let audits = crate::exec::resolve::audit_log(
        graph,
        opts.policy.out_of_band_since(opts.clock.now(), candidates.iter().map(|a| a.kind)),
        candidates,
    )
    .await?;
    // A reset of a device after this run's first intent for it may be the run's own (for
    // another action of that device): never one made outside reconcile. Per device, on
    // Intune's clock, less the stamps' tolerance.
    let tolerance = jiff::SignedDuration::try_from(crate::graph::clock::TOLERANCE).unwrap_or_default();
    Ok(audits.with_own_intents(own.clone(), tolerance))
}

/// Looks the devices up in order, each once, at the read budget; when `pace` (resets may leave
/// before every lookup is done), no further ahead of the sends than
/// [`LOOKAHEAD`](crate::core::release::LOOKAHEAD).
async fn feed_lookups(
    ctx: Arc<Run>,
    keys: Vec<LookupKey>,
    pace: bool,
    results: crate::exec::resolve::ListedResults,
    tx: tokio::sync::mpsc::UnboundedSender<Result<(LookupKey, Found), ReadError>>,
) {
    // Listing the tenant, when cheaper, finds them all before the first send.
    let listed = match crate::exec::resolve::list_if_cheaper(&ctx.graph, &keys, results).await {
        Ok(listed) => listed,
        Err(e) => {
            let _ = tx.send(Err(e));
            return;
        }
    };
    let keys: Vec<LookupKey> = keys.into_iter().filter(|k| !listed.contains_key(k)).collect();
    for (key, found) in listed {
        let _ = tx.send(Ok((key, found)));
    }
    let mut tasks = tokio::task::JoinSet::new();
    let failed = |e: tokio::task::JoinError| {
        let _ = tx.send(Err(ReadError::Transport(format!("a lookup task failed: {e}"))));
    };
    for key in keys {
        // Lookups under way count as ahead too: they are spawned at once, and wait for their
        // read slot inside, so counting only released resets would never hold one back.
        while pace && !ctx.cancelled() {
            while let Some(joined) = tasks.try_join_next() {
                if let Err(e) = joined {
                    failed(e);
                }
            }
            let drained = ctx.drained.notified();
            if may_look_up(pace, tasks.len(), ctx.backlog.load(Ordering::SeqCst)) {
                break;
            }
            tokio::select! {
                () = drained => {}
                Some(joined) = tasks.join_next() => {
                    if let Err(e) = joined {
                        failed(e);
                    }
                }
            }
        }
        if ctx.cancelled() {
            break;
        }
        let (graph, tx) = (ctx.graph.clone(), tx.clone());
        tasks.spawn(async move {
            let _ = tx.send(crate::exec::resolve::lookup(&graph, &key, results).await.map(|found| (key, found)));
        });
    }
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined {
            failed(e);
        }
    }
}

/// The plan of `actions` with `resolutions`, its policy reviewed and, for `apply --plan`, judged
/// against the saved plan.
fn review<'a>(
    plan: Plan<'a>,
    opts: &ApplyOptions,
    ledger: &'a Ledger,
    audits: &AuditLog,
    restored: Option<&'a Restored>,
) -> Plan<'a> {
    let plan = plan.with_manifests(opts.manifests.clone());
    let plan = opts.policy.review(plan, opts.static_violations.clone(), ledger, audits, opts.clock.now());
    match restored {
        Some(r) => crate::core::saved::judge(r, plan, ledger, opts.clock.now()),
        None => plan,
    }
}

/// Why the complete plan may not run at all: a repository-wide policy violation, or more resets
/// than `--max-actions`.
fn refusal(plan: &Plan<'_>, limit: Option<usize>) -> Option<ApplyError> {
    if plan.run_violations().next().is_some() {
        let mut diags = crate::diag::Diagnostics::default();
        for v in &plan.violations {
            diags.push(v.diagnostic.clone());
        }
        return Some(ApplyError::Policy(diags));
    }
    match limit {
        Some(max) if plan.summary.to_send > max => Some(ApplyError::TooMany { planned: plan.summary.to_send, max }),
        _ => None,
    }
}

/// What to send for `released` candidates that `plan` still says to reset: the action, its
/// device, the record to write, and where the run comes from.
fn jobs(
    plan: &Plan<'_>,
    resolutions: &Resolutions,
    released: &[&Action],
    opts: &ApplyOptions,
) -> Vec<(Action, String, Record, crate::ledger::Provenance)> {
    let wanted: std::collections::HashSet<&crate::core::action::ActionKey> = released.iter().map(|a| &a.key).collect();
    plan.to_send()
        .filter_map(|e| {
            let action = e.action.filter(|a| wanted.contains(&a.key))?;
            let Some(Resolution::Device(d)) = resolutions.get(&action.key) else { return None };
            let mut record =
                e.record.cloned().unwrap_or_else(|| Record::new(action, Some(d.id.clone()), opts.clock.now()));
            record.device_name = d.device_name.clone();
            let provenance = crate::ledger::Provenance {
                manifest: plan.manifests.get(&action.manifest).cloned().unwrap_or_default(),
                plan: opts.expected.as_ref().map(|exp| exp.saved.id.to_string()),
                ..opts.provenance.clone()
            };
            Some((action.clone(), d.id.clone(), record, provenance))
        })
        .collect()
}

/// The records of `released` candidates that `plan` adopts: a reset made outside the tool, with
/// Intune's evidence, recorded as done. Nothing is sent for them.
fn adoptions(plan: &Plan<'_>, released: &[&Action], opts: &ApplyOptions) -> Vec<Record> {
    let wanted: std::collections::HashSet<&crate::core::action::ActionKey> = released.iter().map(|a| &a.key).collect();
    let now = opts.clock.now();
    plan.entries
        .iter()
        .filter(|e| e.change == crate::core::plan::Change::Adopt)
        .filter_map(|e| {
            let action = e.action.filter(|a| wanted.contains(&a.key))?;
            let (d, o) = (e.device?, e.out_of_band.as_ref()?);
            let mut record = e.record.cloned().unwrap_or_else(|| Record::new(action, Some(d.id.clone()), now));
            let provenance = crate::ledger::Provenance {
                manifest: plan.manifests.get(&action.manifest).cloned().unwrap_or_default(),
                plan: opts.expected.as_ref().map(|exp| exp.saved.id.to_string()),
                ..opts.provenance.clone()
            };
            // Data, not the plan's sentence: that is made when shown (see `Adoption::seen`).
            let reason = crate::ledger::Adoption::BY_POLICY.to_owned();
            record.adopt(
                d.device_name.clone(),
                crate::ledger::Adoption::of(o, now, "apply".to_owned(), reason, provenance),
            );
            Some(record)
        })
        .collect()
}

/// Outcomes of the send tasks, counted as they finish.
#[derive(Default)]
struct Outcomes {
    adopted: usize,
    accepted: usize,
    rejected: usize,
    unknown: usize,
    not_executed: usize,
    awaiting_approval: usize,
    not_started: usize,
    records: Vec<Record>,
}

impl Outcomes {
    fn add(
        &mut self,
        joined: Result<Result<Option<Record>, ApplyError>, tokio::task::JoinError>,
        ui: &mut dyn Ui,
    ) -> Result<(), ApplyError> {
        match joined {
            Ok(Ok(Some(record))) => {
                match record.status {
                    _ if record.adopted.is_some() => self.adopted += 1,
                    Status::Accepted => self.accepted += 1,
                    Status::Rejected => self.rejected += 1,
                    Status::Unknown => self.unknown += 1,
                    Status::AwaitingApproval => {
                        self.not_executed += 1;
                        self.awaiting_approval += 1;
                    }
                    _ => self.not_executed += 1,
                }
                ui.outcome(&record);
                self.records.push(record);
                Ok(())
            }
            Ok(Ok(None)) => {
                self.not_started += 1;
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(ApplyError::Task(e.to_string())),
        }
    }

    fn into(self, report: &mut ApplyReport) {
        report.adopted = self.adopted;
        report.accepted = self.accepted;
        report.rejected = self.rejected;
        report.unknown = self.unknown;
        report.not_executed = self.not_executed;
        report.awaiting_approval = self.awaiting_approval;
        report.not_started = self.not_started;
        report.records = self.records;
    }
}

/// Writes what could not be written during the run, folds the journal and releases the lock.
async fn finish(ctx: Arc<Run>, report: ApplyReport, failure: Option<ApplyError>) -> Result<ApplyReport, ApplyError> {
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

struct Run {
    graph: Arc<Graph>,
    writer: tokio::sync::Mutex<Writer>,
    /// Records waiting to be written, each with who to tell once it is durable (group commit).
    #[allow(clippy::type_complexity)]
    queued: Mutex<Vec<(Record, tokio::sync::oneshot::Sender<Result<(), String>>)>>,
    /// Outcomes that could not be written (the store was unreachable), to write at the end.
    unsaved: Mutex<BTreeMap<crate::core::action::ActionKey, Record>>,
    cancel: watch::Receiver<bool>,
    stopped: AtomicBool,
    /// Resets released to send that have no send slot yet, and a wake-up when one gets it.
    backlog: AtomicUsize,
    drained: tokio::sync::Notify,
    opts: ApplyOptions,
    /// This run's intents by device, noted before each request leaves (see [`AuditLog`]).
    own: crate::core::out_of_band::OwnIntents,
    /// Resets whose first request left, for [`Progress`].
    sent: AtomicUsize,
}

/// One released reset waiting for its first send slot: counted in [`Run::backlog`] until dropped.
struct Waiting<'a>(&'a Run);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.backlog.fetch_sub(1, Ordering::SeqCst);
        self.0.drained.notify_waiters();
    }
}

impl Run {
    fn new(
        graph: Arc<Graph>,
        writer: Writer,
        cancel: watch::Receiver<bool>,
        opts: &ApplyOptions,
        own: crate::core::out_of_band::OwnIntents,
    ) -> Arc<Self> {
        Arc::new(Run {
            graph,
            writer: tokio::sync::Mutex::new(writer),
            queued: Mutex::new(Vec::new()),
            unsaved: Mutex::new(BTreeMap::new()),
            cancel,
            stopped: AtomicBool::new(false),
            backlog: AtomicUsize::new(0),
            drained: tokio::sync::Notify::new(),
            sent: AtomicUsize::new(0),
            opts: opts.clone(),
            own,
        })
    }

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

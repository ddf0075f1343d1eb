//! The executor's loop: look up, re-plan, release, send, count — until everything is sent.
//!
//! # Expected flow
//! Each turn, [`Pipeline::run`]:
//! 1. counts the candidates whose device (and every earlier one's) is looked up, and reports
//!    progress when it changed;
//! 2. asks the release rule ([`crate::core::release::Gate`]) how many candidates may leave; when
//!    more may than were handled (or every device is known and the complete plan was not made),
//!    and the last re-plan is [`REPLAN_EVERY`] old, re-plans from what is known: the complete
//!    plan is shown (refused, confirmed) once, then the released candidates the plan still says
//!    to send become send tasks ([`super::attempt`]) and adoptions are recorded;
//! 3. otherwise stops once nothing is in flight and nothing more can come, or waits for a lookup,
//!    a finished task, cancellation, or the next re-plan.
//!
//! # Guarantees
//! - Every plan is made against the ledger as locked, so each action gets exactly the decision
//!   the complete plan gives it; an action is handed to a send task at most once.
//! - Cancellation or a failure stops releasing; tasks under way finish and are counted.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::Instrument as _;

use super::{ApplyError, ApplyOptions, ApplyReport, Outcomes, Progress, Run, Scope, Ui};
use crate::core::action::Action;
use crate::core::out_of_band::AuditLog;
use crate::core::plan::{self, Plan, Resolutions};
use crate::core::release::{Gate, Release};
use crate::exec::resolve::{Found, LookupKey};
use crate::graph::ReadError;
use crate::ledger::Record;

/// While sends are under way, the plan is re-made from the lookups done so far at most this often.
const REPLAN_EVERY: Duration = Duration::from_millis(100);

/// A device lookup's result, as the lookup task sends it.
type Looked = Result<(LookupKey, Found), ReadError>;
/// A send task's result.
type Sent = Result<Result<Option<Record>, ApplyError>, tokio::task::JoinError>;

/// What every plan of the run is made from.
pub(super) struct Plans<'a> {
    pub actions: &'a [Action],
    pub scope: &'a Scope,
    pub opts: &'a ApplyOptions,
    pub audits: &'a AuditLog,
    /// The blast radius.
    pub limit: Option<usize>,
    pub release: Release,
}

impl<'a> Plans<'a> {
    /// The plan of the actions with `resolutions`, its policy reviewed and, for `apply --plan`,
    /// judged against the saved plan.
    fn make<'r>(&self, resolutions: &'r Resolutions) -> Plan<'r>
    where
        'a: 'r,
    {
        let scope = self.scope;
        let plan = plan::plan(self.actions, &scope.ledger, resolutions, scope.popts);
        super::review(plan, self.opts, &scope.ledger, self.audits, scope.restored.as_ref())
    }
}

/// What the complete plan, made once, says to do next.
enum Complete {
    /// Release and send.
    Send,
    /// Refused after sends began: stop releasing (not reachable by the release rule).
    Stop,
    /// Nothing to send or adopt: the run is over.
    Done,
}

/// The loop's state.
pub(super) struct Pipeline<'a> {
    plans: Plans<'a>,
    candidates: Vec<&'a Action>,
    keys: &'a [LookupKey],
    gate: Gate,
    ctx: Arc<Run>,
    found_rx: tokio::sync::mpsc::UnboundedReceiver<Looked>,
    found: HashMap<LookupKey, Found>,
    /// Candidates per lookup key (several actions may name one device), to count those looked up.
    per_key: HashMap<&'a LookupKey, usize>,
    progress: Progress,
    /// Candidates `..looked_up` all have their lookup done.
    looked_up: usize,
    /// Candidates `..handled` were decided: sent, or not.
    handled: usize,
    /// The complete plan's report, once it is made.
    report: Option<ApplyReport>,
    sends: tokio::task::JoinSet<Result<Option<Record>, ApplyError>>,
    started: bool,
    failure: Option<ApplyError>,
    outcomes: Outcomes,
    replanned: Option<tokio::time::Instant>,
    lookups_over: bool,
}

impl<'a> Pipeline<'a> {
    pub(super) fn new(
        plans: Plans<'a>,
        candidates: Vec<&'a Action>,
        keys: &'a [LookupKey],
        ctx: Arc<Run>,
        found_rx: tokio::sync::mpsc::UnboundedReceiver<Looked>,
    ) -> Self {
        let manifests: Vec<&str> = candidates.iter().map(|a| a.manifest.as_str()).collect();
        let gate = Gate::new(plans.release, &manifests);
        let mut per_key: HashMap<&LookupKey, usize> = HashMap::new();
        for k in keys {
            *per_key.entry(k).or_default() += 1;
        }
        let progress = Progress { candidates: candidates.len(), ..Progress::default() };
        Pipeline {
            plans,
            candidates,
            keys,
            gate,
            ctx,
            found_rx,
            found: HashMap::new(),
            per_key,
            progress,
            looked_up: 0,
            handled: 0,
            report: None,
            sends: tokio::task::JoinSet::new(),
            started: false,
            failure: None,
            outcomes: Outcomes::default(),
            replanned: None,
            lookups_over: false,
        }
    }

    /// Runs until every released action has its outcome, or the run stops. `Err`: the complete
    /// plan was refused or declined before anything was sent.
    pub(super) async fn run(&mut self, ui: &mut dyn Ui) -> Result<(), ApplyError> {
        loop {
            self.advance(ui);
            let all = self.looked_up == self.keys.len();
            let released = self.gate.released(self.looked_up);
            let due = all || self.replanned.is_none_or(|t| t.elapsed() >= REPLAN_EVERY);
            if !self.ctx.cancelled() && (released > self.handled || (all && self.report.is_none())) && due {
                if self.replan(released, all, ui)? {
                    continue;
                }
                return Ok(());
            }
            let stopping = self.ctx.cancelled() || self.failure.is_some();
            let over = all || stopping || self.lookups_over;
            if over && self.sends.is_empty() && (self.report.is_some() || stopping || self.lookups_over) {
                return Ok(());
            }
            self.wait(released, stopping, ui).await;
        }
    }

    /// Counts the leading candidates looked up, and reports progress when it changed.
    fn advance(&mut self, ui: &mut dyn Ui) {
        while self.looked_up < self.keys.len() && self.found.contains_key(&self.keys[self.looked_up]) {
            self.looked_up += 1;
        }
        let o = &self.outcomes;
        let now = Progress {
            sent: self.ctx.sent.load(Ordering::SeqCst),
            finished: o.accepted + o.rejected + o.unknown + o.not_executed,
            accepted: o.accepted,
            ..self.progress
        };
        if now != self.progress {
            self.progress = now;
            ui.progress(self.progress);
        }
    }

    /// Re-plans from what is known and hands candidates `handled..released` that the plan still
    /// says to send (or adopt) to tasks. `Ok(false)`: the run is over.
    fn replan(&mut self, released: usize, all: bool, ui: &mut dyn Ui) -> Result<bool, ApplyError> {
        self.replanned = Some(tokio::time::Instant::now());
        let resolutions = crate::exec::resolve::settle(&self.candidates, &self.found, &self.plans.scope.ledger);
        let plan = self.plans.make(&resolutions);
        if all && self.report.is_none() {
            match self.complete(&plan, ui)? {
                Complete::Send => {}
                Complete::Stop => return Ok(true),
                Complete::Done => return Ok(false),
            }
        }
        let opts = self.plans.opts;
        let jobs = super::jobs(&plan, &resolutions, &self.candidates[self.handled..released], opts);
        let adopted = super::adoptions(&plan, &self.candidates[self.handled..released], opts);
        self.handled = released;
        drop(plan);
        for record in adopted {
            // Nothing is sent: the record is written like an outcome (kept to the end if the
            // ledger is unreachable; the next run would adopt it again otherwise).
            let ctx = self.ctx.clone();
            self.sends.spawn(async move { ctx.record_outcome(&record).await.map(|()| Some(record)) });
        }
        if !jobs.is_empty() && !self.started {
            self.started = true;
            ui.started(if all { jobs.len() } else { self.candidates.len() });
        }
        for (action, device_id, record, provenance) in jobs {
            self.ctx.backlog.fetch_add(1, Ordering::SeqCst);
            let ctx = self.ctx.clone();
            let span = tracing::info_span!("action", key = action.key.short(), device = %device_id);
            self.sends.spawn(
                async move { super::attempt::execute(&ctx, &action, &device_id, record, provenance).await }
                    .instrument(span),
            );
        }
        Ok(true)
    }

    /// Every device is looked up: the plan is complete. Before anything is sent unless every
    /// candidate fits the blast radius and no confirmation is asked.
    fn complete(&mut self, plan: &Plan<'_>, ui: &mut dyn Ui) -> Result<Complete, ApplyError> {
        if let Some(why) = super::refusal(plan, self.plans.limit) {
            if self.handled == 0 {
                return Err(why);
            }
            // Not reachable by the release rule (which guarantees the limit); kept safe.
            self.ctx.stop();
            self.failure.get_or_insert(why);
            return Ok(Complete::Stop);
        }
        ui.show_plan(plan);
        self.report = Some(ApplyReport::of(plan));
        if self.plans.release == Release::All {
            if plan.summary.to_send == 0 && plan.summary.adopt == 0 {
                return Ok(Complete::Done);
            }
            // A saved plan was reviewed already: applying it is the approval. Adopting sends
            // nothing, so it is not asked about.
            let opts = self.plans.opts;
            if opts.expected.is_none() && opts.confirm && plan.summary.to_send > 0 && !ui.confirm(plan) {
                return Err(ApplyError::Declined);
            }
        }
        Ok(Complete::Send)
    }

    /// Waits for a lookup, a finished task, cancellation, or the next re-plan.
    async fn wait(&mut self, released: usize, stopping: bool, ui: &mut dyn Ui) {
        let pending = released > self.handled;
        let wait = match self.replanned {
            Some(t) if pending => t + REPLAN_EVERY,
            _ => tokio::time::Instant::now() + Duration::from_secs(3600),
        };
        let mut cancel = self.ctx.cancel.clone();
        tokio::select! {
            msg = self.found_rx.recv(), if !self.lookups_over && !stopping => self.looked(msg, ui),
            Some(joined) = self.sends.join_next(), if !self.sends.is_empty() => self.finished(joined, ui),
            _ = cancel.wait_for(|c| *c), if !stopping => {}
            _ = tokio::time::sleep_until(wait), if !stopping && pending => {}
        }
    }

    /// A lookup's result (and every other one already waiting).
    fn looked(&mut self, msg: Option<Looked>, ui: &mut dyn Ui) {
        match msg {
            Some(Ok((key, result))) => {
                self.found_one(key, result);
                while let Ok(Ok((key, result))) = self.found_rx.try_recv() {
                    self.found_one(key, result);
                }
                ui.progress(self.progress);
            }
            Some(Err(e)) => {
                self.ctx.stop();
                self.failure.get_or_insert(ApplyError::Lookup(e));
            }
            None => self.lookups_over = true,
        }
    }

    fn found_one(&mut self, key: LookupKey, result: Found) {
        let n = self.per_key.get(&key).copied().unwrap_or_default();
        if self.found.insert(key, result).is_none() {
            self.progress.looked_up += n;
        }
    }

    /// A send (or adoption) task finished.
    fn finished(&mut self, joined: Sent, ui: &mut dyn Ui) {
        if let Err(e) = self.outcomes.add(joined, ui) {
            self.ctx.stop();
            self.failure.get_or_insert(e);
        }
    }

    /// The run's report, and the failure that stopped it, if any.
    pub(super) fn report(self, not_in_plan: Vec<Action>) -> (ApplyReport, Option<ApplyError>) {
        let planned = self.candidates.len();
        let mut report = self.report.unwrap_or_else(|| ApplyReport { planned, ..ApplyReport::default() });
        report.not_in_plan = not_in_plan;
        self.outcomes.into(&mut report);
        // Planned resets never handed to a send task (the run stopped first) were not started either.
        let reached = report.accepted + report.rejected + report.unknown + report.not_executed + report.not_started;
        report.not_started += report.planned.saturating_sub(reached);
        report.interrupted = *self.ctx.cancel.borrow();
        (report, self.failure)
    }
}

//! `apply`: every refusal that needs no network (a saved plan made elsewhere, nobody to confirm,
//! outside the change windows, a manifest breaking policy), then the executor.
//!
//! # Expected flow
//! 1. Read the config and the manifests, judged by the policy before the change too (a saved
//!    plan's base, else [`ApplyRequest::base`], else the first parent of `HEAD`); emit their
//!    warnings ([`Event::Warnings`]).
//! 2. [`check`]: every refusal that needs neither Graph nor the ledger.
//! 3. Connect (the session's connection), then [`apply`]: the ledger must exist and belong to the
//!    token's tenant, then the executor runs, its progress emitted as events.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;

use super::Session;
use super::connect::Connection;
use super::event::{Emitter, Event, Subscriber};
use crate::app::project::{self, Project};
use crate::core::saved::{SavedError, SavedPlan};
use crate::diag::Diagnostics;
use crate::exec::{self, ApplyError, ApplyOptions, ApplyReport, ReviewedPlan, Ui};
use crate::settings::{Base, Overrides};

/// What was asked for.
#[derive(Debug, Clone, Default)]
pub(crate) struct ApplyRequest {
    /// Limit the run to these manifest files or folders.
    pub paths: Vec<PathBuf>,
    /// The commit whose policy the change is judged by too, when no saved plan names one
    /// (default: the first parent of `HEAD`, the branch before a merge).
    pub base: Option<String>,
    /// `--plan FILE`: the reviewed saved plan to execute.
    pub saved_plan: Option<PathBuf>,
    pub simulate: bool,
    pub auto_approve: bool,
    /// Whether a person is there to confirm (a terminal).
    pub interactive: bool,
    /// `--ignore-change-windows --reason TEXT`: the reason.
    pub ignore_change_windows: Option<String>,
    pub max_actions: Option<usize>,
    pub lock_timeout: Duration,
}

/// Why `apply` refuses before connecting to anything.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    #[error(
        "apply needs confirmation, but there is no terminal to ask on\nhint: review `reconcile plan` and pass --auto-approve, or apply a reviewed saved plan with --plan FILE"
    )]
    NoTerminal,
    #[error("--ignore-change-windows needs a non-empty --reason")]
    NoReason,
    #[error(transparent)]
    Saved(#[from] SavedError),
    /// Outside the change windows.
    #[error("{} policy violation: nothing was sent", .0.items().len())]
    Policy(crate::diag::Diagnostics),
}

/// An apply that passed every check that needs no network.
#[derive(Debug)]
pub(crate) struct Checked {
    expected: Option<ReviewedPlan>,
    policy_override: Option<String>,
    request: ApplyRequest,
}

/// The checks that need neither Graph nor the ledger, in the order a user meets them, at `now`.
pub(crate) fn check(project: &Project, request: &ApplyRequest, now: jiff::Timestamp) -> Result<Checked, Refusal> {
    let expected = match &request.saved_plan {
        Some(path) => {
            let saved = SavedPlan::read(path)?;
            if saved.offline {
                return Err(
                    SavedError::Unusable { path: path.clone(), why: "offline", hint: "without --offline" }.into()
                );
            }
            if saved.simulated != request.simulate {
                let (why, hint) = if saved.simulated {
                    ("with --simulate", "without --simulate")
                } else {
                    ("against Graph", "with --simulate")
                };
                return Err(SavedError::Unusable { path: path.clone(), why, hint }.into());
            }
            if let Some(why) = project.settings.policy.plan_too_old(saved.created_at, now) {
                return Err(SavedError::TooOld { path: path.clone(), why }.into());
            }
            Some(ReviewedPlan { path: path.clone(), saved })
        }
        None => None,
    };
    if !request.auto_approve && expected.is_none() && !request.interactive {
        return Err(Refusal::NoTerminal);
    }
    let policy_override = match &request.ignore_change_windows {
        Some(reason) if !reason.trim().is_empty() => Some(format!("changeWindows ignored: {}", reason.trim())),
        Some(_) => return Err(Refusal::NoReason),
        None => None,
    };
    if policy_override.is_none()
        && let Err(v) = project.settings.policy.check_window(now)
    {
        let mut diags = crate::diag::Diagnostics::default();
        diags.push(*v);
        return Err(Refusal::Policy(diags));
    }
    Ok(Checked { expected, policy_override, request: request.clone() })
}

/// Why `apply` stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The config or the manifests are wrong, or the policy refuses the run: every problem, with
    /// file and line. Nothing was sent.
    #[error("{} problem{}: nothing was sent", .0.error_count(), if .0.error_count() == 1 { "" } else { "s" })]
    Invalid(Diagnostics),
    #[error(transparent)]
    Refused(Refusal),
    #[error(transparent)]
    Apply(ApplyError),
    /// The ledger or the tenant (`anyhow`: the connection's own errors).
    #[error(transparent)]
    Connection(#[from] anyhow::Error),
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Policy(diags) => Error::Invalid(diags),
            other => Error::Refused(other),
        }
    }
}

impl From<ApplyError> for Error {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Policy(diags) => Error::Invalid(diags),
            other => Error::Apply(other),
        }
    }
}

/// What an apply did, and whether it was against the simulator.
#[derive(Debug)]
pub(crate) struct Applied {
    pub report: ApplyReport,
    pub simulated: bool,
}

/// `apply` in `session`, the whole operation (see the module docs): events go to `subscriber`;
/// once `stop` is ready (a signal, say), no new request is sent and those in flight are recorded.
pub(crate) fn run(
    session: &mut Session,
    overrides: &Overrides,
    request: &ApplyRequest,
    env: &dyn Fn(&str) -> Option<String>,
    subscriber: &mut dyn Subscriber,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<Applied, Error> {
    // The change is judged by the policy before it too: the saved plan's base, the commit the
    // caller names (the previous cycle's, under watch), else the first parent of HEAD.
    let saved =
        request.saved_plan.as_deref().and_then(|p| SavedPlan::read(p).ok()).and_then(|s| s.policy).and_then(|p| p.base);
    let base = match saved.or_else(|| request.base.clone()) {
        Some(commit) => Base::Commit(commit),
        None => Base::FirstParent,
    };
    let overrides = Overrides { base, ..overrides.clone() };
    let p = project::load(&overrides, &request.paths, env).map_err(Error::Invalid)?;
    subscriber.event(Event::Warnings(&p.diagnostics));
    let checked = check(&p, request, session.clock().now())?;
    let clock = session.clock.clone();
    let (runtime, conn) = session.connect(&p.settings, request.simulate, env)?;
    let mut ui = Emitter { subscriber, clock: &*clock };
    let report = runtime.block_on(async {
        let (tx, cancel) = watch::channel(false);
        let stop = tokio::spawn(async move {
            stop.await;
            let _ = tx.send(true);
        });
        let report = apply(&p, checked, conn, clock.clone(), env, &mut ui, cancel).await;
        stop.abort();
        report
    })?;
    Ok(Applied { report, simulated: conn.simulated })
}

/// Applies `project` through `conn`: the ledger must exist and belong to the token's tenant; the
/// manifests' policy violations stop their manifests; then the executor runs.
pub(crate) async fn apply(
    project: &Project,
    checked: Checked,
    conn: &Connection,
    clock: crate::clock::SharedClock,
    env: &dyn Fn(&str) -> Option<String>,
    ui: &mut dyn Ui,
    cancel: watch::Receiver<bool>,
) -> Result<ApplyReport, Error> {
    let provenance = crate::ci::provenance::run_provenance(env, std::path::Path::new("."));
    // Read once, before anything is contacted: the lock reuses it when nothing changed since.
    conn.store.read_before_lock().await.map_err(ApplyError::from)?;
    let tenant = conn.tenant().await?;
    // Looking devices up is a read: a token with only the privileged permission would be
    // refused by Graph halfway through the run.
    conn.require(crate::graph::auth::Need::Apply, "apply").await?;
    let p = project;
    let opts = ApplyOptions {
        policy: p.settings.policy.clone(),
        static_violations: p.settings.policy.check_manifests(&p.manifests),
        manifests: p.manifest_infos(),
        provenance,
        policy_override: checked.policy_override,
        expected: checked.expected,
        lock_timeout: checked.request.lock_timeout,
        confirm: !checked.request.auto_approve,
        max_actions: checked.request.max_actions,
        report_orphans: !p.limited,
        tenant: Some(tenant),
        backoff_initial: p.settings.graph.backoff_initial,
        backoff_max: p.settings.graph.backoff_max,
        clock,
    };
    Ok(exec::apply(&p.actions(), &conn.store, conn.graph.clone(), &opts, ui, cancel).await?)
}

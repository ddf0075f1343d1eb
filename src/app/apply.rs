//! `apply`: every refusal that needs no network (a saved plan made elsewhere, nobody to confirm,
//! outside the change windows, a manifest breaking policy), then the executor.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;

use super::connect::Connection;
use crate::app::project::Project;
use crate::core::saved::{SavedError, SavedPlan};
use crate::exec::{self, ApplyError, ApplyOptions, ApplyReport, ReviewedPlan, Ui};

/// What was asked for.
#[derive(Debug, Clone, Default)]
pub(crate) struct ApplyRequest {
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

/// The checks that need neither Graph nor the ledger, in the order a user meets them.
pub(crate) fn check(project: &Project, request: &ApplyRequest) -> Result<Checked, Refusal> {
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
            if let Some(why) = project.settings.policy.plan_too_old(saved.created_at, jiff::Timestamp::now()) {
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
        && let Err(v) = project.settings.policy.check_window(jiff::Timestamp::now())
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
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The ledger or the tenant (`anyhow`: the connection's own errors).
    #[error(transparent)]
    Connection(#[from] anyhow::Error),
}

/// Applies `project` through `conn`: the ledger must exist and belong to the token's tenant; the
/// manifests' policy violations stop their manifests; then the executor runs.
pub(crate) async fn apply(
    project: &Project,
    checked: Checked,
    conn: &Connection,
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
    };
    Ok(exec::apply(&p.actions(), &conn.store, conn.graph.clone(), &opts, ui, cancel).await?)
}

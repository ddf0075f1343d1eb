//! `plan`: the settings, the ledger (read while the manifests are parsed), the token's right to
//! read devices, the lookups, the policy review and the scope of a pull request's own change.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::connect::Connection;
use super::{Error, Session};
use crate::app::project::{self, Project};
use crate::core::action::Action;
use crate::core::out_of_band::AuditLog;
use crate::core::plan::{self, Plan, PlanOptions, Resolutions};
use crate::core::saved::{Binding, SavedError, SavedPlan};
use crate::graph::auth::{Grant, Need};
use crate::ledger::{Ledger, LocalStore, Store};
use crate::settings::Overrides;

/// What was asked for.
#[derive(Debug, Clone, Default)]
pub(crate) struct PlanRequest {
    /// Limit the plan to these manifest files or folders.
    pub paths: Vec<PathBuf>,
    pub offline: bool,
    pub simulate: bool,
    /// `--base REF`: detail only the manifests this change touches.
    pub base: Option<String>,
}

/// Everything a plan is made of; [`Planned::plan`] makes it (pure and cheap).
#[derive(Debug)]
pub(crate) struct Planned {
    pub project: Project,
    pub ledger: Ledger,
    actions: Vec<Action>,
    resolutions: Resolutions,
    /// The audit log since `policy.outOfBand` looks back (online, when something is to be reset).
    audits: AuditLog,
    /// The tenant of the token (online), else the configured one.
    pub tenant: Option<String>,
    /// The ledger does not exist (offline only): where it was looked for.
    pub missing: Option<String>,
    /// `--base`: the files the change touches.
    changed: Option<HashSet<PathBuf>>,
    now: jiff::Timestamp,
    pub offline: bool,
    pub simulated: bool,
}

/// Loads the settings, the manifests and the ledger, and looks the candidates' devices up
/// unless offline.
pub(crate) fn prepare(
    session: &mut Session,
    overrides: &Overrides,
    request: &PlanRequest,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Planned, Error> {
    let clock = session.clock.clone();
    // A pull request's plan judges its actions by the policy before it too.
    let mut overrides = overrides.clone();
    if let Some(base) = &request.base {
        overrides.base = crate::settings::Base::ForkFrom(base.clone());
    }
    let (settings, diags) = project::load_settings(&overrides, env);
    // A broken config stops the run before anything is contacted (with the manifests' problems
    // reported too).
    if diags.has_errors() {
        return Err(Error::Invalid(project::load_manifests(settings, &request.paths, diags).err().unwrap_or_default()));
    }
    let (runtime, conn) = if request.offline {
        (session.runtime(), None)
    } else {
        let (runtime, conn) = session.connect(&settings, request.simulate, env)?;
        (runtime, Some(conn))
    };
    let store = match (conn, request.simulate) {
        (Some(c), _) => c.store.clone(),
        (None, true) => Store::from(LocalStore::open(settings.simulated_state()).map_err(anyhow::Error::from)?),
        (None, false) => super::connect::open_store(&settings, env)?,
    };
    let exists = runtime.block_on(store.exists()).map_err(anyhow::Error::from)?;
    if !exists && conn.is_some() {
        return Err(anyhow::Error::from(crate::ledger::StateError::Missing { path: store.location() }).into());
    }
    let tenant = match conn {
        Some(c) => Some(runtime.block_on(c.tenant())?),
        None => settings.tenant.clone(),
    };
    // The ledger is read on the second core while the manifests are parsed on this one.
    let (p, ledger) = std::thread::scope(|s| {
        let ledger = s.spawn(|| runtime.block_on(store.load()));
        // The actions (their keys hashed) are made here too, while the ledger is still being read.
        let p = project::load_manifests(settings, &request.paths, diags).map(|p| {
            let actions = p.actions();
            (p, actions)
        });
        (p, ledger.join())
    });
    let (project, actions) = p.map_err(Error::Invalid)?;
    let ledger = ledger
        .map_err(|_| anyhow::anyhow!("reading the ledger panicked"))?
        .context("cannot plan without the ledger")?;
    store.check_tenant(&ledger, tenant.as_deref()).map_err(anyhow::Error::from)?;
    let changed =
        request.base.as_deref().map(crate::ci::git::changed_since).transpose().map_err(anyhow::Error::from)?;
    let now = clock.now();
    let mut planned = Planned {
        project,
        ledger,
        actions,
        resolutions: Resolutions::new(),
        audits: AuditLog::default(),
        tenant,
        missing: (!exists).then(|| store.location().to_string()),
        changed,
        now,
        offline: request.offline,
        simulated: request.simulate,
    };
    if let Some(conn) = conn {
        let none = Resolutions::new();
        let candidates: Vec<&Action> = plan::plan(&planned.actions, &planned.ledger, &none, planned.options())
            .to_send()
            .filter_map(|e| e.action)
            .collect();
        let since = planned.project.settings.policy.out_of_band_since(planned.now, candidates.iter().map(|a| a.kind));
        let (resolutions, audits) = runtime.block_on(lookup(conn, &candidates, &planned.ledger, since))?;
        planned.resolutions = resolutions;
        planned.audits = audits;
    }
    Ok(planned)
}

impl Planned {
    fn options(&self) -> PlanOptions {
        let limited = self.project.limited;
        PlanOptions {
            report_orphans: !limited,
            rename_guard: if limited { None } else { self.project.settings.policy.rename_guard(self.now) },
        }
    }

    /// The plan: the diff, the devices, the policy review, and with `--base` the change's scope.
    pub(crate) fn plan(&self) -> Plan<'_> {
        let policy = &self.project.settings.policy;
        let plan = plan::plan(&self.actions, &self.ledger, &self.resolutions, self.options())
            .with_manifests(self.project.manifest_infos());
        let found = policy.check_manifests(&self.project.manifests);
        let plan = policy.review(plan, found, &self.ledger, &self.audits, self.now);
        match &self.changed {
            // Actions of changed manifest files, and orphans of files the change removed or renamed.
            Some(files) => {
                let cwd = std::env::current_dir().unwrap_or_default();
                plan.scoped(|e| files.contains(&crate::ci::git::normal(Path::new(&e.origin().file), &cwd)))
            }
            None => plan,
        }
    }

    /// The plan as a reviewer sees it: saved to `out` first when asked (for `apply --plan FILE`),
    /// then given the context it is reviewed in (commit, pull request, tenant).
    pub(crate) fn reviewed(
        &self,
        out: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Plan<'_>, SavedError> {
        let mut plan = self.plan();
        let commit = crate::ci::provenance::commit(env, Path::new("."));
        if let Some(path) = out {
            self.save(&plan, path, commit.clone())?;
        }
        plan.context = Some(crate::ci::provenance::ReviewContext::new(env, self.tenant.as_deref(), commit.as_deref()));
        Ok(plan)
    }

    /// Saves `plan` (made by [`Planned::plan`]) for `apply --plan FILE`.
    fn save(&self, plan: &Plan<'_>, path: &Path, commit: Option<String>) -> Result<(), SavedError> {
        let binding = Binding::of(&self.ledger, self.tenant.as_deref());
        SavedPlan::new(plan, &self.ledger, binding, commit, (self.simulated, self.offline), self.now).write(path)
    }
}

/// Checks the token can read devices, then looks the candidates' devices up and reads the audit
/// log since `since` (side by side).
async fn lookup(
    conn: &Connection,
    candidates: &[&Action],
    ledger: &Ledger,
    since: jiff::Timestamp,
) -> anyhow::Result<(Resolutions, AuditLog)> {
    conn.require(Need::Read, "plan").await?;
    let token = conn.graph.tokens().token().await.context("cannot authenticate to Microsoft Graph")?;
    if let Grant::Missing { missing, .. } = Need::Apply.judge(&token) {
        let missing = missing.join(" and ");
        tracing::info!("the token lacks {missing}: this identity can plan, but `apply` will refuse to run");
    }
    if candidates.is_empty() {
        return Ok((Resolutions::new(), AuditLog::default()));
    }
    Ok(crate::exec::resolve::with_audit_log(&conn.graph, candidates, ledger, since).await?)
}

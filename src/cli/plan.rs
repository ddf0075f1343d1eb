//! `reconcile plan [PATH...]`

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;

use super::connect::{self, Connection};
use super::{CmdResult, Failure, GlobalArgs, env, print_diagnostics};
use crate::graph::auth::{PRIVILEGED_ROLE, READ_ROLES};
use crate::plan::{self, PlanOptions, Resolutions};
use crate::project;
use crate::render::{self, Format, PlanContext};
use crate::saved::{Binding, SavedPlan};
use crate::state::{LocalStore, Store};

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Limit the plan to these manifest files or folders (nothing is reported as orphaned).
    pub paths: Vec<PathBuf>,
    /// Do not contact Intune: devices are not looked up.
    #[arg(long)]
    pub offline: bool,
    /// Use the built-in Intune simulator and its own ledger instead of Graph.
    #[arg(long)]
    pub simulate: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Exit 0 when there is nothing to do, 2 when resets are pending, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Save the plan to FILE, for `reconcile apply --plan FILE` and `reconcile show FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Detail only the manifests that differ between git REF (where this change forks from it)
    /// and the working tree: a pull request's own change. The rest is one summary line; the exit
    /// code, the comment and a saved plan speak for the change only.
    #[arg(long, value_name = "REF")]
    pub base: Option<String>,
    /// Run by `watch`: the plan goes to the watcher, which prints it only when it changed.
    #[arg(skip)]
    pub watch: Option<super::WatchSink>,
}

pub fn run(g: &GlobalArgs, args: PlanArgs) -> CmdResult {
    let (settings, diags) = project::load_settings(&g.overrides(), &env);
    // A broken config stops the run before anything is contacted (with the manifests' problems
    // reported too).
    if diags.has_errors() {
        return Err(Failure::Invalid(project::load_manifests(settings, &args.paths, diags).err().unwrap_or_default()));
    }
    // One runtime for the ledger, the tenant check and the lookups.
    let runtime = connect::runtime()?;
    let conn = if args.offline { None } else { Some(connect::connect(&settings, args.simulate, &env)?) };
    let store = match (&conn, args.simulate) {
        (Some(c), _) => c.store.clone(),
        (None, true) => Store::Local(LocalStore::new(settings.simulated_state())),
        (None, false) => connect::open_store(&settings, &env)?,
    };
    let missing = !runtime.block_on(store.exists())?;
    if missing && conn.is_some() {
        return Err(crate::state::StateError::Missing { path: store.location().to_string().into() }.into());
    }
    let tenant = match &conn {
        Some(c) => Some(runtime.block_on(c.tenant())?),
        None => settings.tenant.clone(),
    };
    // The ledger is read on the second core while the manifests are parsed on this one.
    let (p, ledger) = std::thread::scope(|s| {
        let ledger = s.spawn(|| runtime.block_on(store.load()));
        let p = project::load_manifests(settings, &args.paths, diags);
        (p, ledger.join())
    });
    let p = p.map_err(Failure::Invalid)?;
    print_diagnostics(&p.diagnostics);
    let ledger = ledger
        .map_err(|_| anyhow::anyhow!("reading the ledger panicked"))?
        .context("cannot plan without the ledger")?;
    store.check_tenant(&ledger, tenant.as_deref())?;
    let changed = args.base.as_deref().map(crate::git::changed_since).transpose()?;
    let actions = p.actions();
    let now = jiff::Timestamp::now();
    let opts = PlanOptions {
        report_orphans: !p.limited,
        rename_guard: if p.limited { None } else { p.settings.policy.rename_guard(now) },
    };
    let resolutions = match &conn {
        None => Resolutions::new(),
        Some(conn) => {
            let none = Resolutions::new();
            let candidates: Vec<_> =
                plan::plan(&actions, &ledger, &none, opts).to_reset().filter_map(|e| e.action).collect();
            runtime.block_on(lookup(conn, &candidates, &ledger))?
        }
    };
    let plan = plan::plan(&actions, &ledger, &resolutions, opts).with_manifests(p.manifest_infos());
    let plan = p.settings.policy.review(plan, p.settings.policy.check_manifests(&p.manifests), &ledger, now);
    let plan = match &changed {
        // Actions of changed manifest files, and orphans of files the change removed or renamed.
        Some(files) => {
            let cwd = std::env::current_dir().unwrap_or_default();
            plan.scoped(|e| files.contains(&crate::git::normal(std::path::Path::new(&e.origin().file), &cwd)))
        }
        None => plan,
    };
    let ctx = PlanContext { offline: args.offline, simulated: args.simulate };
    if let Some(path) = &args.out {
        let binding = Binding::of(&ledger, tenant.as_deref());
        SavedPlan::new(&plan, &ledger, binding, args.simulate, args.offline).write(path)?;
    }
    let mut buf = Vec::new();
    let mut out: Box<dyn Write> = match &args.watch {
        Some(_) => Box::new(&mut buf),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    if missing {
        let note = format!(
            "No ledger at `{}`: this plan assumes nothing was ever sent. Run `reconcile init` to create it, or find out why it is missing.",
            store.location()
        );
        tracing::warn!("{note}");
        if args.format == Format::Text {
            writeln!(out, "{note}\n").context("cannot write the plan to stdout")?;
        }
    }
    render::plan(&mut out, &plan, ctx, args.format).context("cannot write the plan to stdout")?;
    out.flush().context("cannot write the plan to stdout")?;
    drop(out);
    if let Some(w) = &args.watch {
        w.lock().unwrap_or_else(std::sync::PoisonError::into_inner).plan = buf;
    }
    github_outputs(&plan, ctx)?;
    if plan.summary.blocked > 0 || plan.summary.violations > 0 {
        return Err(Failure::Exit(1));
    }
    if args.detailed_exitcode && plan.has_changes() {
        return Err(Failure::Exit(2));
    }
    Ok(())
}

/// Inside GitHub Actions: the Markdown plan appended to the job summary, and a warning
/// annotation on the manifest line of every blocked device.
fn github_outputs(plan: &crate::plan::Plan<'_>, ctx: PlanContext) -> anyhow::Result<()> {
    if let Some(summary) = env("GITHUB_STEP_SUMMARY").filter(|s| !s.is_empty()) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&summary)
            .with_context(|| format!("cannot open GITHUB_STEP_SUMMARY `{summary}`"))?;
        f.write_all(render::markdown::render(plan, ctx).as_bytes())
            .with_context(|| format!("cannot write `{summary}`"))?;
    }
    if env("GITHUB_ACTIONS").as_deref() == Some("true") {
        let mut diags = crate::diagnostic::Diagnostics::default();
        for v in &plan.violations {
            diags.push(v.diagnostic.clone());
        }
        for e in plan.entries.iter().filter(|e| e.change == crate::plan::Change::Blocked) {
            if let Some(a) = e.action {
                diags.push(crate::diagnostic::Diagnostic::warning(
                    &a.file,
                    Some(a.pos),
                    format!("{} is blocked: {}", a.selector, e.reason),
                ));
            }
        }
        if plan.summary.to_reset > render::markdown::LARGE_CHANGE {
            diags.push(crate::diagnostic::Diagnostic {
                severity: crate::diagnostic::Severity::Warning,
                file: None,
                pos: None,
                message: format!("large change: {} passcodes will be reset", plan.summary.to_reset),
                hint: None,
            });
        }
        for e in plan.entries.iter().filter(|e| e.change == crate::plan::Change::Attention) {
            if let Some(a) = e.action {
                diags.push(crate::diagnostic::Diagnostic::warning(
                    &a.file,
                    Some(a.pos),
                    format!("{} needs attention: {}", a.selector, e.reason),
                ));
            }
        }
        let _ = diags.render_github(&mut std::io::stderr().lock());
    }
    Ok(())
}

/// Checks the token can read devices, then looks the candidates' devices up.
async fn lookup(
    conn: &Connection,
    candidates: &[&crate::action::Action],
    ledger: &crate::state::Ledger,
) -> anyhow::Result<Resolutions> {
    let token = conn.graph.tokens().token().await.context("cannot authenticate to Microsoft Graph")?;
    let Some(roles) = token.roles() else {
        tracing::warn!("the access token is not a JWT: cannot check its permissions");
        return Ok(crate::resolve::resolve(&conn.graph, candidates, ledger).await?);
    };
    if !roles.iter().any(|r| READ_ROLES.contains(&r.as_str()) || r == PRIVILEGED_ROLE) {
        anyhow::bail!(
            "the access token cannot read managed devices (roles: {})\nhint: grant the application permission {} (and admin consent), or plan with --offline",
            if roles.is_empty() { "none".to_owned() } else { roles.join(", ") },
            READ_ROLES[0]
        );
    }
    if !roles.iter().any(|r| r == PRIVILEGED_ROLE) {
        tracing::warn!("the token lacks {PRIVILEGED_ROLE}: this identity can plan but `apply` will refuse to run");
    }
    Ok(crate::resolve::resolve(&conn.graph, candidates, ledger).await?)
}

//! `reconcile plan [PATH...]`

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;

use super::{CmdResult, Failure, GlobalArgs, env, print_diagnostics};
use crate::plan::{self, PlanOptions};
use crate::project;
use crate::render::{self, Format, PlanContext};
use crate::state::LocalStore;

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Limit the plan to these manifest files or folders (nothing is reported as orphaned).
    pub paths: Vec<PathBuf>,
    /// Do not contact Intune: devices are not looked up.
    #[arg(long)]
    pub offline: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Exit 0 when there is nothing to do, 2 when resets are pending, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
}

pub fn run(g: &GlobalArgs, args: PlanArgs) -> CmdResult {
    if !args.offline {
        return Err(anyhow::anyhow!(
            "looking devices up in Intune is not available in this build yet\nhint: run `reconcile plan --offline`"
        )
        .into());
    }
    let (settings, diags) = project::load_settings(&g.overrides(), &env);
    let store = LocalStore::new(&settings.state);
    // The ledger is read on the second core while the manifests are parsed on this one.
    let (p, ledger) = std::thread::scope(|s| {
        let ledger = s.spawn(|| store.load());
        let p = project::load_manifests(settings, &args.paths, diags);
        (p, ledger.join())
    });
    let p = p.map_err(Failure::Invalid)?;
    print_diagnostics(&p.diagnostics);
    let ledger = ledger
        .map_err(|_| anyhow::anyhow!("reading the ledger panicked"))?
        .context("cannot plan without the ledger")?;
    store.check_tenant(&ledger, p.settings.tenant.as_deref())?;
    let actions = p.actions();
    let plan = plan::plan(&actions, &ledger, PlanOptions { report_orphans: !p.limited });
    let ctx = PlanContext { offline: true, simulated: false };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    render::plan(&mut out, &plan, ctx, args.format).context("cannot write the plan to stdout")?;
    out.flush().context("cannot write the plan to stdout")?;
    if args.detailed_exitcode && plan.has_changes() {
        return Err(Failure::Exit(2));
    }
    Ok(())
}

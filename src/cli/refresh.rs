//! `reconcile refresh`

use super::connect;
use super::{CmdResult, Failure, GlobalArgs, env};
use crate::project;
use crate::refresh::{self, RefreshOptions};
use crate::state::LocalStore;

#[derive(Debug, clap::Args)]
pub struct RefreshArgs {
    /// Use the built-in Intune simulator and its own ledger instead of Graph.
    #[arg(long)]
    pub simulate: bool,
}

#[allow(clippy::print_stdout)]
pub fn run(g: &GlobalArgs, args: RefreshArgs) -> CmdResult {
    let (settings, diags) = project::load_settings(&g.overrides(), &env);
    if diags.has_errors() {
        return Err(Failure::Invalid(diags));
    }
    let rt = connect::runtime()?;
    let conn = connect::connect(&settings, args.simulate, &env)?;
    let store = LocalStore::new(&conn.state);
    let opts = RefreshOptions {
        lock_timeout: g.lock_timeout.map(|d| d.0).unwrap_or_default(),
        unknown_grace: settings.graph.unknown_grace,
        tenant: conn.tenant.clone(),
    };
    let report = rt.block_on(refresh::refresh(&store, conn.graph.clone(), &opts))?;
    let sim = if conn.simulated { "SIMULATED: " } else { "" };
    for c in &report.changes {
        say!(
            "{:<13} -> {:<13} {} {} {}  {}",
            c.from.as_str(),
            c.record.status.as_str(),
            c.record.key.short(),
            c.record.manifest,
            c.record.selector,
            c.note
        );
    }
    say!(
        "{sim}Refresh: {} checked, {} changed, {} still waiting.",
        report.checked,
        report.changes.len(),
        report.waiting
    );
    Ok(())
}

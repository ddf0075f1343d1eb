//! `reconcile refresh`

use super::{CmdResult, GlobalArgs, env};
use crate::app::refresh::RefreshRequest;
use crate::app::{self, Session};
use crate::render;

#[derive(Debug, clap::Args)]
pub(super) struct RefreshArgs {
    /// Use the built-in Intune simulator and its own ledger instead of Graph.
    #[arg(long)]
    pub simulate: bool,
}

pub(super) fn run(g: &GlobalArgs, args: RefreshArgs) -> CmdResult {
    let request =
        RefreshRequest { simulate: args.simulate, lock_timeout: g.lock_timeout.map(|d| d.0).unwrap_or_default() };
    let refreshed = app::refresh::run(&mut Session::new()?, &g.overrides(), &request, &env).map_err(super::failure)?;
    for line in render::summary::refresh_changes(&refreshed.report)
        .into_iter()
        .chain(render::summary::refresh(&refreshed.report, refreshed.simulated))
    {
        say!("{line}");
    }
    Ok(())
}

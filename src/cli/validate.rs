//! `reconcile validate [PATH...]`

use std::path::PathBuf;

use super::{CmdResult, Failure, GlobalArgs, env, print_diagnostics};

#[derive(Debug, clap::Args)]
pub(super) struct ValidateArgs {
    /// Manifest files or folders [default: `manifests:` in the config].
    pub paths: Vec<PathBuf>,
}

#[allow(clippy::print_stdout)]
pub(super) fn run(g: &GlobalArgs, args: ValidateArgs) -> CmdResult {
    let p = crate::app::validate(&g.overrides(), &args.paths, &env).map_err(Failure::Invalid)?;
    print_diagnostics(&p.diagnostics);
    let actions: usize = p.manifests.iter().map(|m| m.devices.len()).sum();
    say!(
        "ok: {} manifest{} with {actions} action{} in {} file{}",
        p.manifests.len(),
        if p.manifests.len() == 1 { "" } else { "s" },
        if actions == 1 { "" } else { "s" },
        p.files.len(),
        if p.files.len() == 1 { "" } else { "s" },
    );
    Ok(())
}

//! `reconcile validate [PATH...]`

use std::path::PathBuf;

use super::{CmdResult, Failure, GlobalArgs, env, print_diagnostics};
use crate::project;

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Manifest files or folders [default: `manifests:` in the config].
    pub paths: Vec<PathBuf>,
}

#[allow(clippy::print_stdout)]
pub fn run(g: &GlobalArgs, args: ValidateArgs) -> CmdResult {
    let mut p = project::load(&g.overrides(), &args.paths, &env).map_err(Failure::Invalid)?;
    let violations = p.settings.policy.check_manifests(&p.manifests);
    if !violations.is_empty() {
        for v in violations {
            p.diagnostics.push(v.diagnostic);
        }
        p.diagnostics.sort();
        return Err(Failure::Invalid(p.diagnostics));
    }
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

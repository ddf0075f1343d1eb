//! `reconcile init [--tenant ID]`: create the ledger, once, on purpose.

use super::{CmdResult, GlobalArgs, env};
use crate::app::{self, init::InitRequest};

#[derive(Debug, clap::Args)]
pub(super) struct InitArgs {
    /// The tenant to bind the ledger to: its id (a GUID), or a domain of it
    /// (`contoso.onmicrosoft.com`), resolved to the id through Entra's OpenID discovery document
    /// [default: AZURE_TENANT_ID, else the `tid` of the environment credential's token].
    #[arg(long, value_name = "ID")]
    pub tenant: Option<String>,
    /// Create the simulated ledger used by --simulate instead (it is also made on first use).
    #[arg(long)]
    pub simulate: bool,
}

#[allow(clippy::print_stdout)]
pub(super) fn run(g: &GlobalArgs, args: InitArgs) -> CmdResult {
    let request = InitRequest {
        tenant: args.tenant,
        simulate: args.simulate,
        lock_timeout: g.lock_timeout.map(|d| d.0).unwrap_or_default(),
    };
    let done = app::init::init(&g.overrides(), &request, &env).map_err(super::failure)?;
    let (at, tenant) = (&done.location, &done.tenant);
    if done.created {
        say!("Created the ledger `{at}` for tenant `{tenant}`.");
    } else {
        say!("The ledger `{at}` already exists for tenant `{tenant}`; nothing to do.");
    }
    Ok(())
}

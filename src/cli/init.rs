//! `reconcile init [--tenant ID]`: create the ledger, once, on purpose.

use super::connect;
use super::{CmdResult, Failure, GlobalArgs, env};
use crate::project;
use crate::state::LocalStore;

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The tenant id (GUID) to bind the ledger to [default: AZURE_TENANT_ID, else the `tid` of
    /// the environment credential's token].
    #[arg(long, value_name = "ID")]
    pub tenant: Option<String>,
    /// Create the simulated ledger used by --simulate instead (it is also made on first use).
    #[arg(long)]
    pub simulate: bool,
}

#[allow(clippy::print_stdout)]
pub fn run(g: &GlobalArgs, args: InitArgs) -> CmdResult {
    let (settings, diags) = project::load_settings(&g.overrides(), &env);
    if diags.has_errors() {
        return Err(Failure::Invalid(diags));
    }
    let (path, tenant) = if args.simulate {
        (settings.simulated_state(), connect::SIM_TENANT.to_owned())
    } else {
        let tenant = match args.tenant.clone().or_else(|| settings.tenant.clone()) {
            Some(t) => t,
            None => {
                let rt = connect::runtime()?;
                let conn = connect::connect(&settings, false, &env)?;
                rt.block_on(conn.tenant())?
            }
        };
        (settings.state.clone(), tenant)
    };
    let tenant = tenant.trim().to_owned();
    if tenant.is_empty() || !tenant.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')) {
        return Err(anyhow::anyhow!(
            "`{}` is not a tenant id\nhint: give the tenant's id, a GUID",
            tenant.escape_debug()
        )
        .into());
    }
    let store = LocalStore::new(&path);
    let created = store.create(g.lock_timeout.map(|d| d.0).unwrap_or_default(), &tenant)?;
    if created {
        say!("Created the ledger `{}` for tenant `{tenant}`.", path.display());
    } else {
        say!("The ledger `{}` already exists for tenant `{tenant}`; nothing to do.", path.display());
    }
    Ok(())
}

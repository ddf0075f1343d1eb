//! `reconcile init [--tenant ID]`: create the ledger, once, on purpose.

use super::{CmdResult, Failure, GlobalArgs, env};
use crate::ops::connect;
use crate::project;
use crate::state::{LocalStore, Store, block_on};

#[derive(Debug, clap::Args)]
pub(super) struct InitArgs {
    /// The tenant id (GUID) to bind the ledger to [default: AZURE_TENANT_ID, else the `tid` of
    /// the environment credential's token].
    #[arg(long, value_name = "ID")]
    pub tenant: Option<String>,
    /// Create the simulated ledger used by --simulate instead (it is also made on first use).
    #[arg(long)]
    pub simulate: bool,
}

#[allow(clippy::print_stdout)]
pub(super) fn run(g: &GlobalArgs, args: InitArgs) -> CmdResult {
    let (settings, diags) = project::load_settings(&g.overrides(), &env);
    if diags.has_errors() {
        return Err(Failure::Invalid(diags));
    }
    let (store, tenant) = if args.simulate {
        (
            Store::Local(LocalStore::open(settings.simulated_state()).map_err(anyhow::Error::from)?),
            connect::SIM_TENANT.to_owned(),
        )
    } else {
        let tenant = match args.tenant.clone().or_else(|| settings.tenant.clone()) {
            Some(t) => t,
            None => {
                let rt = connect::runtime()?;
                let conn = connect::connect(&settings, false, &env)?;
                rt.block_on(conn.tenant())?
            }
        };
        (connect::open_store(&settings, &env)?, tenant)
    };
    let tenant = tenant.trim().to_owned();
    if tenant.is_empty() || !tenant.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')) {
        return Err(anyhow::anyhow!(
            "`{}` is not a tenant id\nhint: give the tenant's id, a GUID",
            tenant.escape_debug()
        )
        .into());
    }
    if uuid::Uuid::parse_str(&tenant).is_err() {
        // A real token's `tid` is a GUID: a ledger bound to a name (`contoso.onmicrosoft.com`)
        // would refuse every run. Names are fine for the simulator and tests.
        tracing::warn!(
            tenant = %tenant,
            "the tenant is not a GUID: a real token's tenant (tid) will not match it; give the tenant's id"
        );
    }
    let created = block_on(store.create(g.lock_timeout.map(|d| d.0).unwrap_or_default(), &tenant))??;
    let at = store.location();
    if created {
        say!("Created the ledger `{at}` for tenant `{tenant}`.");
    } else {
        say!("The ledger `{at}` already exists for tenant `{tenant}`; nothing to do.");
    }
    Ok(())
}

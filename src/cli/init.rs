//! `reconcile init [--tenant ID]`: create the ledger, once, on purpose.

use super::{CmdResult, Failure, GlobalArgs, env};
use crate::app::connect;
use crate::app::project;
use crate::ledger::{LocalStore, Store, block_on};

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
    let (settings, diags) = project::load_settings(&g.overrides(), &env);
    if diags.has_errors() {
        return Err(Failure::Invalid(diags));
    }
    let (store, tenant) = if args.simulate {
        (
            Store::from(LocalStore::open(settings.simulated_state()).map_err(anyhow::Error::from)?),
            connect::SIM_TENANT.to_owned(),
        )
    } else {
        // A ledger is bound to a tenant id (the `tid` of its tokens), never to a name: a domain is
        // resolved to the id here, once, through Entra's discovery document.
        let rt = connect::runtime()?;
        let named = args.tenant.clone().or_else(|| settings.tenant.clone());
        let tenant = match named {
            Some(name) => {
                let id = rt.block_on(connect::tenant_id(&settings, &name))?;
                // The ledger must be the credential's: `--tenant` naming another tenant than
                // AZURE_TENANT_ID would bind a ledger no run of this pipeline could use.
                if let (Some(_), Some(configured)) = (&args.tenant, &settings.tenant) {
                    let theirs = rt.block_on(connect::tenant_id(&settings, configured))?;
                    if !theirs.eq_ignore_ascii_case(&id) {
                        return Err(anyhow::anyhow!(
                            "--tenant `{name}` is tenant `{id}`, but AZURE_TENANT_ID `{configured}` is tenant `{theirs}`; nothing was created\nhint: bind the ledger to the tenant of the credential that will use it: drop --tenant, or correct AZURE_TENANT_ID"
                        )
                        .into());
                    }
                }
                id
            }
            None => {
                let conn = connect::connect(&settings, false, &env)?;
                let tid = rt.block_on(conn.tenant())?;
                rt.block_on(connect::tenant_id(&settings, &tid))?
            }
        };
        (connect::open_store(&settings, &env)?, tenant)
    };
    let created = block_on(store.create(g.lock_timeout.map(|d| d.0).unwrap_or_default(), &tenant))??;
    let at = store.location();
    if created {
        say!("Created the ledger `{at}` for tenant `{tenant}`.");
    } else {
        say!("The ledger `{at}` already exists for tenant `{tenant}`; nothing to do.");
    }
    Ok(())
}

//! `init`: create the ledger, once, bound to a tenant id (the `tid` of its tokens), never to a
//! name: a domain is resolved to the id here, once, through Entra's discovery document.

use std::time::Duration;

use super::Error;
use super::connect;
use crate::ledger::{LocalStore, Store, block_on};
use crate::settings::Overrides;

/// What was asked for.
#[derive(Debug, Clone, Default)]
pub(crate) struct InitRequest {
    /// `--tenant`: an id or a domain [default: the configured one, else the credential's].
    pub tenant: Option<String>,
    /// The simulated ledger instead (bound to the simulator's tenant).
    pub simulate: bool,
    pub lock_timeout: Duration,
}

/// The ledger, and whether this call created it (`false`: it existed for that tenant).
#[derive(Debug)]
pub(crate) struct Initialized {
    pub created: bool,
    pub location: String,
    pub tenant: String,
}

/// Creates the ledger the settings name for the tenant the request names.
pub(crate) fn init(
    overrides: &Overrides,
    request: &InitRequest,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Initialized, Error> {
    let settings = super::project::settings_only(overrides, env)?;
    let (store, tenant) = if request.simulate {
        (
            Store::from(LocalStore::open(settings.simulated_state()).map_err(anyhow::Error::from)?),
            connect::SIM_TENANT.to_owned(),
        )
    } else {
        let tenant = tenant(&settings, request.tenant.as_deref(), env)?;
        (connect::open_store(&settings, env)?, tenant)
    };
    let created = block_on(store.create(request.lock_timeout, &tenant))?.map_err(anyhow::Error::from)?;
    Ok(Initialized { created, location: store.location().to_string(), tenant })
}

/// The tenant id to bind the ledger to: `--tenant`, else the configured one, else the
/// credential's.
fn tenant(
    settings: &crate::settings::Settings,
    asked: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<String> {
    let rt = connect::runtime()?;
    let Some(name) = asked.or(settings.tenant.as_deref()) else {
        let conn = connect::connect(settings, false, env)?;
        let tid = rt.block_on(conn.tenant())?;
        return rt.block_on(connect::tenant_id(settings, &tid));
    };
    let id = rt.block_on(connect::tenant_id(settings, name))?;
    // The ledger must be the credential's: `--tenant` naming another tenant than
    // AZURE_TENANT_ID would bind a ledger no run of this pipeline could use.
    if let (Some(_), Some(configured)) = (asked, &settings.tenant) {
        let theirs = rt.block_on(connect::tenant_id(settings, configured))?;
        if !theirs.eq_ignore_ascii_case(&id) {
            anyhow::bail!(
                "--tenant `{name}` is tenant `{id}`, but AZURE_TENANT_ID `{configured}` is tenant `{theirs}`; nothing was created\nhint: bind the ledger to the tenant of the credential that will use it: drop --tenant, or correct AZURE_TENANT_ID"
            );
        }
    }
    Ok(id)
}

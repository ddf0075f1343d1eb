//! `refresh`: the ledger must exist and belong to the token's tenant; then every `accepted` and
//! `unknown` action is settled from Intune.

use std::time::Duration;

use super::Error;
use super::Session;
use super::connect::Connection;
use crate::clock::SharedClock;
use crate::core::refresh::{self, RefreshOptions, RefreshReport};
use crate::settings::{Overrides, Settings};

/// What was asked for.
#[derive(Debug, Clone, Default)]
pub(crate) struct RefreshRequest {
    pub simulate: bool,
    pub lock_timeout: Duration,
}

/// What a refresh found, and whether it was against the simulator.
#[derive(Debug)]
pub(crate) struct Refreshed {
    pub report: RefreshReport,
    pub simulated: bool,
}

/// `refresh` in `session`: the config, the connection, then [`refresh`].
pub(crate) fn run(
    session: &mut Session,
    overrides: &Overrides,
    request: &RefreshRequest,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Refreshed, Error> {
    let settings = super::project::settings_only(overrides, env)?;
    let clock = session.clock.clone();
    let (runtime, conn) = session.connect(&settings, request.simulate, env)?;
    let opts = Options { lock_timeout: request.lock_timeout, clock };
    let report = runtime.block_on(refresh(&settings, conn, opts))?;
    Ok(Refreshed { report, simulated: conn.simulated })
}

/// How long to wait for the ledger lock, and the session's clock.
struct Options {
    lock_timeout: Duration,
    clock: SharedClock,
}

/// Refreshes the ledger of `conn`.
async fn refresh(settings: &Settings, conn: &Connection, opts: Options) -> anyhow::Result<RefreshReport> {
    // Read once, before anything is contacted: the lock reuses it when nothing changed since.
    conn.store.read_before_lock().await?;
    let tenant = conn.tenant().await?;
    conn.require(crate::graph::auth::Need::Read, "refresh").await?;
    let opts = RefreshOptions {
        lock_timeout: opts.lock_timeout,
        unknown_grace: settings.graph.unknown_grace,
        tenant: Some(tenant),
        clock: opts.clock,
    };
    Ok(refresh::refresh(&conn.store, conn.graph.clone(), &opts).await?)
}

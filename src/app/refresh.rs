//! `refresh`: the ledger must exist and belong to the token's tenant; then every `accepted` and
//! `unknown` action is settled from Intune.

use std::time::Duration;

use super::connect::Connection;
use crate::core::refresh::{self, RefreshOptions, RefreshReport};
use crate::settings::Settings;

/// Refreshes the ledger of `conn`.
pub(crate) async fn refresh(
    settings: &Settings,
    conn: &Connection,
    lock_timeout: Duration,
) -> anyhow::Result<RefreshReport> {
    // Read once, before anything is contacted: the lock reuses it when nothing changed since.
    conn.store.read_before_lock().await?;
    let tenant = conn.tenant().await?;
    conn.require(crate::graph::auth::Need::Read, "refresh").await?;
    let opts = RefreshOptions { lock_timeout, unknown_grace: settings.graph.unknown_grace, tenant: Some(tenant) };
    Ok(refresh::refresh(&conn.store, conn.graph.clone(), &opts).await?)
}

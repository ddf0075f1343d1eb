//! `reconcile sim`: the Intune Graph simulator as a standalone server.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use super::CmdResult;
use crate::duration::HumanDuration;
use crate::settings::Budget;
use crate::sim::{RetryAfter, SimConfig, SimHandle};

#[derive(Debug, clap::Args)]
pub(super) struct SimArgs {
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Device fixture (JSON array of managedDevice objects) [default: the examples' fixture].
    #[arg(long, value_name = "FILE")]
    pub devices: Option<PathBuf>,
    /// Writes allowed per 20 s before 429 (Intune: 200).
    #[arg(long, default_value_t = 200)]
    pub write_limit: u32,
    /// `Retry-After` on 429s: `none`, seconds (`2.5`), or `date`.
    #[arg(long, default_value = "none")]
    pub retry_after: String,
    /// Added to every request.
    #[arg(long, default_value = "0s")]
    pub latency: HumanDuration,
    /// How long an accepted device action stays pending.
    #[arg(long, default_value = "5s")]
    pub complete_after: HumanDuration,
    /// How long a wiped or retired device stays in the tenant once its wipe or retire is done.
    #[arg(long, default_value = "10s")]
    pub leave_after: HumanDuration,
    /// Lifetime of issued tokens.
    #[arg(long, default_value = "1h")]
    pub token_lifetime: HumanDuration,
    /// The only client secret the token endpoint accepts (any other is refused with Entra's
    /// `AADSTS7000215`) [default: any secret].
    #[arg(long, value_name = "SECRET")]
    pub client_secret: Option<String>,
    /// The application permissions (`roles`) issued tokens carry, comma-separated (an empty
    /// value: none) [default: DeviceManagementManagedDevices.Read.All and
    /// DeviceManagementManagedDevices.PrivilegedOperations.All].
    #[arg(long, value_name = "ROLE,ROLE", value_delimiter = ',', num_args = 0..)]
    pub roles: Option<Vec<String>>,
    /// Multi Admin Approval: the device actions (Graph names) an access policy protects,
    /// comma-separated (`wipe,retire`). Each is held (403) until approved with
    /// `POST /_sim/approvals/{id}/approve` [default: none].
    #[arg(long, value_name = "ACTION,ACTION", value_delimiter = ',')]
    pub maa: Vec<String>,
}

#[allow(clippy::print_stdout)]
pub(super) fn run(args: SimArgs) -> CmdResult {
    let devices = match &args.devices {
        Some(p) => crate::sim::load_devices(p).map_err(anyhow::Error::msg)?,
        None => crate::sim::fixture::parse_devices(crate::sim::BUILTIN_DEVICES).map_err(anyhow::Error::msg)?,
    };
    let retry_after = match args.retry_after.as_str() {
        "none" => RetryAfter::None,
        "date" => RetryAfter::HttpDate(Duration::from_secs(2)),
        secs => RetryAfter::Seconds(secs.parse().context("--retry-after takes `none`, `date` or seconds")?),
    };
    let known = |a: &str| crate::core::kinds::ALL.iter().any(|k| k.spec().graph_name == a);
    if let Some(bad) = args.maa.iter().map(|a| a.trim()).find(|a| !a.is_empty() && !known(a)) {
        return Err(anyhow::anyhow!("--maa: `{bad}` is not a device action (Graph names, like `wipe,retire`)").into());
    }
    let n = devices.len();
    let defaults = SimConfig::default();
    let roles = match &args.roles {
        Some(given) => given.iter().map(|r| r.trim().to_owned()).filter(|r| !r.is_empty()).collect(),
        None => defaults.roles.clone(),
    };
    let config = SimConfig {
        devices,
        client_secret: args.client_secret.clone(),
        roles: roles.clone(),
        write_limit: Some(Budget { requests: args.write_limit, window: Duration::from_secs(20) }),
        retry_after,
        latency: args.latency.0,
        complete_after: args.complete_after.0,
        leave_after: args.leave_after.0,
        token_lifetime: args.token_lifetime.0,
        maa: args.maa.iter().map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()).collect(),
        ..defaults
    };
    let sim =
        SimHandle::start(config, args.port).with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    let url = sim.url();
    say!("Intune Graph simulator on {url} with {n} devices. Point the tool at it with:");
    say!("  export RECONCILE_GRAPH_URL={url} AZURE_AUTHORITY_HOST={url}");
    // The secret given is not repeated: output never carries a secret, even a rehearsal's.
    let secret = if args.client_secret.is_some() { "<the --client-secret value>" } else { "any" };
    say!("  export AZURE_TENANT_ID=sim-tenant AZURE_CLIENT_ID=sim-client AZURE_CLIENT_SECRET={secret}");
    match roles.as_slice() {
        [] => say!("Tokens carry no application permission (--roles)."),
        given => say!("Tokens carry the application permissions {}.", given.join(", ")),
    }
    say!(
        "Tenants are names here (accepted from a login host on loopback); the domain {} stands for the tenant id {}.",
        crate::sim::SIM_DOMAIN,
        crate::sim::SIM_TENANT_ID
    );
    if !args.maa.is_empty() {
        say!(
            "Multi Admin Approval protects {}: approve a held request with POST {url}/_sim/approvals/ID/approve.",
            args.maa.join(", ")
        );
    }
    say!("Requests received: {url}/_sim/requests. Ctrl-C (or SIGTERM) stops it.");
    let rt = crate::app::connect::runtime()?;
    // Ctrl-C or SIGTERM (a test harness, a service manager): a clean stop, exit 0.
    rt.block_on(super::wait_for_stop_signal());
    drop(sim);
    Ok(())
}

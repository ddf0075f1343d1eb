//! Wiring a command to Graph: the real service (endpoints and credentials from the environment)
//! or the built-in simulator (`--simulate`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use secrecy::SecretString;

use crate::graph::{ClientOptions, Credential, Endpoints, Graph};
use crate::settings::Settings;
use crate::sim::{SimConfig, SimHandle};

/// The tenant the simulator pretends to be; simulated ledgers are bound to it.
pub(crate) const SIM_TENANT: &str = "simulated-tenant";

/// A Graph client for this run, and what it is connected to.
#[derive(Debug)]
pub(crate) struct Connection {
    pub graph: Arc<Graph>,
    /// The tenant the environment names (`AZURE_TENANT_ID`), checked against the token's.
    expected_tenant: Option<String>,
    /// The cloud credentials may go to (`AZURE_CLOUD`); a token for another is refused.
    cloud: crate::settings::Cloud,
    /// Where Graph and the login host are (a domain in `AZURE_TENANT_ID` is resolved there).
    pub endpoints: Endpoints,
    timeout: std::time::Duration,
    /// The ledger of this run (the simulated one with `--simulate`).
    pub store: crate::ledger::Store,
    pub simulated: bool,
    /// The in-process simulator, and where it keeps what it did between runs.
    sim: Option<(SimHandle, PathBuf)>,
}

impl Drop for Connection {
    /// Keeps the simulator's action results for the next `--simulate` run (so `refresh
    /// --simulate` sees what `apply --simulate` did). Passcodes are not kept.
    fn drop(&mut self) {
        if let Some((sim, path)) = &self.sim {
            let saved = sim.state().saved_actions();
            if saved.is_empty() && !path.exists() {
                return;
            }
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            let _ = std::fs::create_dir_all(dir);
            // A new file renamed over the old one: never written through a link in its place.
            let write = serde_json::to_vec_pretty(&saved).map_err(std::io::Error::other).and_then(|b| {
                let mut tmp = tempfile::Builder::new().prefix(".simulator-").tempfile_in(dir)?;
                std::io::Write::write_all(&mut tmp, &b)?;
                tmp.persist(path).map(drop).map_err(|e| e.error)
            });
            if let Err(e) = write {
                tracing::warn!(path = %path.display(), error = %e, "cannot keep the simulator's state");
            }
        }
    }
}

pub(crate) fn connect(
    settings: &Settings,
    simulate: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Connection> {
    let g = &settings.graph;
    let opts = ClientOptions {
        timeout: g.timeout,
        concurrency: g.concurrency,
        write_budget: g.write_budget,
        read_budget: g.read_budget,
        retry: crate::core::retry::Policy::graph(g.backoff_initial, g.backoff_max),
        device_user: settings.show_user,
    };
    if simulate {
        let devices = match &settings.sim_devices {
            Some(path) => crate::sim::load_devices(path).map_err(anyhow::Error::msg)?,
            None => crate::sim::fixture::parse_devices(crate::sim::BUILTIN_DEVICES).map_err(anyhow::Error::msg)?,
        };
        let state = settings.simulated_state();
        let saved_path = state.with_file_name("simulator.json");
        let sim =
            SimHandle::start(SimConfig { devices, ..SimConfig::default() }, 0).context("cannot start the simulator")?;
        if let Ok(text) = std::fs::read(&saved_path)
            && let Ok(saved) = serde_json::from_slice::<Vec<crate::sim::SavedAction>>(&text)
        {
            sim.state().restore(saved);
        }
        let endpoints = Endpoints::resolve(g.cloud, g.api_version, Some(&sim.url()), Some(&sim.url()))?;
        let credential = Credential::Secret {
            tenant: SIM_TENANT.into(),
            client_id: "intune-reconcile-simulator".into(),
            secret: SecretString::from("simulated".to_owned()),
        };
        // The simulated ledger is made on first use, so the quick start is one command.
        let store = crate::ledger::LocalStore::open(&state)?;
        if !store.exists() {
            store.create(std::time::Duration::ZERO, SIM_TENANT)?;
        }
        return Ok(Connection {
            graph: Arc::new(Graph::new(endpoints.clone(), credential, &opts)),
            endpoints,
            timeout: g.timeout,
            expected_tenant: Some(SIM_TENANT.into()),
            cloud: g.cloud,
            store: crate::ledger::Store::from(store),
            simulated: true,
            sim: Some((sim, saved_path)),
        });
    }
    let endpoints =
        Endpoints::resolve(g.cloud, g.api_version, settings.graph_url.as_deref(), settings.authority_host.as_deref())?;
    let credential = Credential::from_env(env)?;
    tracing::info!(credential = credential.kind(), graph = %endpoints.graph_root, "connecting to Microsoft Graph");
    let store = open_store(settings, env)?;
    Ok(Connection {
        graph: Arc::new(Graph::new(endpoints.clone(), credential, &opts)),
        endpoints,
        timeout: g.timeout,
        expected_tenant: settings.tenant.clone(),
        cloud: g.cloud,
        store,
        simulated: false,
        sim: None,
    })
}

/// The ledger `settings.state` names. A blob ledger is authorised by `AZURE_STORAGE_KEY`,
/// `AZURE_STORAGE_SAS_TOKEN`, or else the same Entra credential as Graph, with the storage scope.
pub(crate) fn open_store(
    settings: &Settings,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<crate::ledger::Store> {
    open_store_at(settings, &settings.state, env)
}

/// The ledger at `location`, authorised as [`open_store`] says.
pub(crate) fn open_store_at(
    settings: &Settings,
    location: &crate::ledger::Location,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<crate::ledger::Store> {
    let g = &settings.graph;
    let store = crate::ledger::Store::open(location, env, g.timeout, || {
        let mut endpoints = Endpoints::resolve(
            g.cloud,
            g.api_version,
            settings.graph_url.as_deref(),
            settings.authority_host.as_deref(),
        )?;
        endpoints.scope = STORAGE_SCOPE.to_owned();
        let credential = Credential::from_env(env)
            .context("the blob ledger needs AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN or an Entra credential")?;
        // A ready Graph token is for Graph alone: it is never sent to storage.
        if matches!(credential, Credential::Token(_)) {
            anyhow::bail!(
                "RECONCILE_GRAPH_TOKEN is a Microsoft Graph token and is never sent to storage\nhint: for the blob ledger set AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN, or use an app credential (client secret, certificate, workload identity, GitHub OIDC)"
            );
        }
        let http = crate::graph::http_client(g.timeout);
        Ok(crate::ledger::blob::StorageAuth::Entra(Arc::new(crate::graph::auth::TokenProvider::new(
            http, credential, &endpoints,
        ))))
    })?;
    // A ledger the repository names stays inside it: checked again where the store resolved it
    // (through a symlinked ledger or folder), since that is where it will be written.
    if let (Some(root), Some(real)) = (&settings.state_root, store.real_path())
        && *location == settings.state
    {
        let refuse = |why: String| {
            anyhow::anyhow!(
                "the ledger `{}` that reconcile.yaml names resolves to `{}`: {why}\nhint: the ledger the repository names must be inside it (and not in a hidden folder other than .reconcile); the operator may pass --state or set RECONCILE_STATE",
                crate::diag::safe::text(&location.to_string()),
                crate::diag::safe::text(&real.display().to_string())
            )
        };
        match crate::confine::inside(root, real) {
            Err(e) => return Err(refuse(e.to_string())),
            Ok(resolved) if crate::confine::in_hidden_folder(root, &resolved) => {
                return Err(refuse("it is inside a hidden folder".into()));
            }
            Ok(_) => {}
        }
    }
    Ok(store)
}

/// The tenant id `name` stands for: a GUID as it is, a domain through Entra's OpenID discovery
/// document on the cloud's login host (`AZURE_AUTHORITY_HOST` when set); a plain name only when
/// that host is on this machine (the simulator's tenants are names).
pub(crate) async fn tenant_id(settings: &Settings, name: &str) -> anyhow::Result<String> {
    let g = &settings.graph;
    let endpoints =
        Endpoints::resolve(g.cloud, g.api_version, settings.graph_url.as_deref(), settings.authority_host.as_deref())?;
    Ok(crate::graph::discovery::tenant_id(&endpoints, g.timeout, name).await?)
}

/// The Entra scope of Azure Storage (the same in every cloud).
pub(crate) const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";

/// Why the run's tenant is not the one it should be.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TenantError {
    #[error(
        "cannot tell which tenant the access token is for: it is not a JWT with a `tid` claim\nhint: the tenant of every run is the `tid` of its token; use a credential that issues Entra ID access tokens"
    )]
    Unreadable,
    #[error(
        "the access token is for tenant `{token}`, but AZURE_TENANT_ID is `{configured}`; nothing was sent\nhint: AZURE_TENANT_ID must be the tenant id (a GUID) of the tenant the credential belongs to, or a domain of that tenant"
    )]
    Mismatch { token: String, configured: String },
    #[error(
        "the access token is for `{aud}`, not Microsoft Graph of the `{cloud}` cloud; nothing was sent\nhint: tokens never cross clouds: set AZURE_CLOUD to the tenant's cloud, or use a token for {root}"
    )]
    OtherCloud { aud: String, cloud: &'static str, root: &'static str },
}

impl Connection {
    /// The tenant of this run: the `tid` of the token it uses (fetched now, before any Graph
    /// request). Refused when it differs from `AZURE_TENANT_ID`; the ledger compares it with its
    /// own when it is locked or read.
    pub(crate) async fn tenant(&self) -> anyhow::Result<String> {
        let access = self.graph.tokens().token().await.context("cannot authenticate to Microsoft Graph")?;
        let (root, _, _) = crate::graph::endpoints::cloud_defaults(self.cloud);
        if let Some(aud) = access.audience()
            && !crate::graph::auth::audience_is(&aud, root)
        {
            // Tokens never cross clouds: one for another cloud's Graph is refused. An audience
            // that is no cloud's Graph at all (a proxy's, a stand-in's) is Graph's to judge.
            let other_cloud = crate::cloud::Cloud::ALL.into_iter().any(|c| {
                c != self.cloud && crate::graph::auth::audience_is(&aud, crate::graph::endpoints::cloud_defaults(c).0)
            });
            if other_cloud {
                return Err(TenantError::OtherCloud { aud, cloud: self.cloud.as_str(), root }.into());
            }
            tracing::warn!(audience = %aud, "the access token's audience is not Microsoft Graph; Graph will judge it");
        }
        let token = access.tenant().ok_or(TenantError::Unreadable)?;
        if let Some(configured) = &self.expected_tenant
            && !configured.eq_ignore_ascii_case(&token)
        {
            // A domain in AZURE_TENANT_ID names a tenant too: Entra says which id it stands for.
            let domain_of_token = configured.contains('.')
                && uuid::Uuid::parse_str(configured).is_err()
                && crate::graph::discovery::tenant_id(&self.endpoints, self.timeout, configured)
                    .await
                    .is_ok_and(|id| id.eq_ignore_ascii_case(&token));
            if !domain_of_token {
                return Err(TenantError::Mismatch { token, configured: configured.clone() }.into());
            }
        }
        Ok(token)
    }
}

impl Connection {
    /// Refuses, before any Graph request, a token that lacks a permission `command` needs
    /// ([`crate::graph::auth::check_permissions`], the one check every online command makes).
    pub(crate) async fn require(&self, need: crate::graph::auth::Need, command: &'static str) -> anyhow::Result<()> {
        let token = self.graph.tokens().token().await.context("cannot authenticate to Microsoft Graph")?;
        crate::graph::auth::check_permissions(&token, need, command)?;
        Ok(())
    }
}

/// A runtime for the async part of a command: two workers, like the machine's cores.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

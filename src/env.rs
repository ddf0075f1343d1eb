//! Every environment variable the tool reads, by name, and the one function that reads the
//! process environment ([`var`]). Everything else gets the environment as a function
//! (`&dyn Fn(&str) -> Option<String>`), so tests pass their own; `clippy.toml` forbids
//! `std::env::var`/`var_os` outside this file.
//!
//! Where credentials may go is decided here and in the config's pinned cloud, never by the
//! repository: none of these is read from `reconcile.yaml` or a manifest.

/// The process environment's value of `name` (unset, or not UTF-8: `None`).
pub fn var(name: &str) -> Option<String> {
    #[allow(clippy::disallowed_methods)]
    std::env::var(name).ok()
}

// The tool's own.
/// Pins the cloud credentials may go to (`global`, `usgov`, `usgov-dod`, `china`).
pub const AZURE_CLOUD: &str = "AZURE_CLOUD";
/// Graph's base URL (the simulator, tests); only loopback or the pinned cloud's Graph.
pub const RECONCILE_GRAPH_URL: &str = "RECONCILE_GRAPH_URL";
/// A ready access token for Graph, used as is.
pub const RECONCILE_GRAPH_TOKEN: &str = "RECONCILE_GRAPH_TOKEN";
/// Turns colour off (<https://no-color.org>).
pub const NO_COLOR: &str = "NO_COLOR";
/// `dumb`: no colour.
pub const TERM: &str = "TERM";
/// Where the Azure CLI (`az`) is looked for.
pub const PATH: &str = "PATH";

// Entra ID credentials (azure-identity's names).
pub const AZURE_TENANT_ID: &str = "AZURE_TENANT_ID";
pub const AZURE_CLIENT_ID: &str = "AZURE_CLIENT_ID";
pub const AZURE_CLIENT_SECRET: &str = "AZURE_CLIENT_SECRET";
pub const AZURE_CLIENT_CERTIFICATE_PATH: &str = "AZURE_CLIENT_CERTIFICATE_PATH";
pub const AZURE_CLIENT_CERTIFICATE_PASSWORD: &str = "AZURE_CLIENT_CERTIFICATE_PASSWORD";
pub const AZURE_FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";
/// The token endpoint's host (the simulator, tests); only loopback or the pinned cloud's.
pub const AZURE_AUTHORITY_HOST: &str = "AZURE_AUTHORITY_HOST";
/// A blob ledger's account key, or a SAS token, instead of the Entra credential.
pub const AZURE_STORAGE_KEY: &str = "AZURE_STORAGE_KEY";
pub const AZURE_STORAGE_SAS_TOKEN: &str = "AZURE_STORAGE_SAS_TOKEN";

// GitHub Actions: OIDC, the pull request comment, annotations, the job summary, provenance.
pub const GITHUB_ACTIONS: &str = "GITHUB_ACTIONS";
pub const ACTIONS_ID_TOKEN_REQUEST_URL: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
pub const ACTIONS_ID_TOKEN_REQUEST_TOKEN: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";
pub const GITHUB_TOKEN: &str = "GITHUB_TOKEN";
pub const GITHUB_API_URL: &str = "GITHUB_API_URL";
pub const GITHUB_SERVER_URL: &str = "GITHUB_SERVER_URL";
pub const GITHUB_REPOSITORY: &str = "GITHUB_REPOSITORY";
pub const GITHUB_EVENT_PATH: &str = "GITHUB_EVENT_PATH";
pub const GITHUB_STEP_SUMMARY: &str = "GITHUB_STEP_SUMMARY";
pub const GITHUB_SHA: &str = "GITHUB_SHA";
pub const GITHUB_REF: &str = "GITHUB_REF";
pub const GITHUB_RUN_ID: &str = "GITHUB_RUN_ID";
pub const GITHUB_RUN_ATTEMPT: &str = "GITHUB_RUN_ATTEMPT";
pub const GITHUB_ACTOR: &str = "GITHUB_ACTOR";
pub const GITHUB_TRIGGERING_ACTOR: &str = "GITHUB_TRIGGERING_ACTOR";

// Azure Pipelines: the pull request thread, provenance.
pub const TF_BUILD: &str = "TF_BUILD";
pub const SYSTEM_ACCESSTOKEN: &str = "SYSTEM_ACCESSTOKEN";
pub const SYSTEM_COLLECTIONURI: &str = "SYSTEM_COLLECTIONURI";
pub const SYSTEM_TEAMPROJECT: &str = "SYSTEM_TEAMPROJECT";
pub const SYSTEM_TEAMPROJECTID: &str = "SYSTEM_TEAMPROJECTID";
pub const SYSTEM_PULLREQUEST_PULLREQUESTID: &str = "SYSTEM_PULLREQUEST_PULLREQUESTID";
pub const SYSTEM_PULLREQUEST_PULLREQUESTNUMBER: &str = "SYSTEM_PULLREQUEST_PULLREQUESTNUMBER";
pub const BUILD_REPOSITORY_ID: &str = "BUILD_REPOSITORY_ID";
pub const BUILD_BUILDID: &str = "BUILD_BUILDID";
pub const BUILD_SOURCEVERSION: &str = "BUILD_SOURCEVERSION";
pub const BUILD_REQUESTEDFOR: &str = "BUILD_REQUESTEDFOR";
pub const BUILD_REQUESTEDFOREMAIL: &str = "BUILD_REQUESTEDFOREMAIL";

// Who and where, for the provenance of an attempt and the ledger lock.
pub const USER: &str = "USER";
pub const USERNAME: &str = "USERNAME";
pub const HOSTNAME: &str = "HOSTNAME";

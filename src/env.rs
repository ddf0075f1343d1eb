//! Every environment variable the tool reads, by name, and the one function that reads the
//! process environment ([`var`]). Everything else gets the environment as a function
//! (`&dyn Fn(&str) -> Option<String>`), so tests pass their own; `clippy.toml` forbids
//! `std::env::var`/`var_os` outside this file.
//!
//! Where credentials may go is decided here and in the config's pinned cloud, never by the
//! repository: none of these is read from `reconcile.yaml` or a manifest.

/// The process environment's value of `name` (unset, or not UTF-8: `None`).
pub(crate) fn var(name: &str) -> Option<String> {
    #[allow(clippy::disallowed_methods)]
    std::env::var(name).ok()
}

/// Whether `value` is an Azure Pipelines macro left as written (`$(System.AccessToken)` in a
/// step's `env:` when the variable is not mapped or not defined): no value at all.
pub(crate) fn unexpanded(value: &str) -> bool {
    let v = value.trim();
    v.starts_with("$(") && v.ends_with(')')
}

// The tool's own.
/// Pins the cloud credentials may go to (`global`, `usgov`, `usgov-dod`, `china`).
pub(crate) const AZURE_CLOUD: &str = "AZURE_CLOUD";
/// Graph's base URL (the simulator, tests); only loopback or the pinned cloud's Graph.
pub(crate) const RECONCILE_GRAPH_URL: &str = "RECONCILE_GRAPH_URL";
/// The operator's ledger location (a path or a Blob URL), like `--state`; the only source of a
/// Blob URL besides `--state`.
pub(crate) const RECONCILE_STATE: &str = "RECONCILE_STATE";
/// The operator's policy file: a floor the repository's `policy:` section can only tighten.
pub(crate) const RECONCILE_POLICY: &str = "RECONCILE_POLICY";
/// A ready access token for Graph, used as is.
pub(crate) const RECONCILE_GRAPH_TOKEN: &str = "RECONCILE_GRAPH_TOKEN";
/// Turns colour off (<https://no-color.org>).
pub(crate) const NO_COLOR: &str = "NO_COLOR";
/// `dumb`: no colour.
pub(crate) const TERM: &str = "TERM";
/// Where the Azure CLI (`az`) is looked for.
pub(crate) const PATH: &str = "PATH";

// Entra ID credentials (azure-identity's names).
pub(crate) const AZURE_TENANT_ID: &str = "AZURE_TENANT_ID";
pub(crate) const AZURE_CLIENT_ID: &str = "AZURE_CLIENT_ID";
pub(crate) const AZURE_CLIENT_SECRET: &str = "AZURE_CLIENT_SECRET";
pub(crate) const AZURE_CLIENT_CERTIFICATE_PATH: &str = "AZURE_CLIENT_CERTIFICATE_PATH";
pub(crate) const AZURE_CLIENT_CERTIFICATE_PASSWORD: &str = "AZURE_CLIENT_CERTIFICATE_PASSWORD";
pub(crate) const AZURE_FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";
/// The token endpoint's host (the simulator, tests); only loopback or the pinned cloud's.
pub(crate) const AZURE_AUTHORITY_HOST: &str = "AZURE_AUTHORITY_HOST";
/// A blob ledger's account key, or a SAS token, instead of the Entra credential.
pub(crate) const AZURE_STORAGE_KEY: &str = "AZURE_STORAGE_KEY";
pub(crate) const AZURE_STORAGE_SAS_TOKEN: &str = "AZURE_STORAGE_SAS_TOKEN";

// GitHub Actions: OIDC, the pull request comment, annotations, the job summary, provenance.
pub(crate) const GITHUB_ACTIONS: &str = "GITHUB_ACTIONS";
pub(crate) const ACTIONS_ID_TOKEN_REQUEST_URL: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
pub(crate) const ACTIONS_ID_TOKEN_REQUEST_TOKEN: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";
pub(crate) const GITHUB_TOKEN: &str = "GITHUB_TOKEN";
pub(crate) const GITHUB_API_URL: &str = "GITHUB_API_URL";
pub(crate) const GITHUB_SERVER_URL: &str = "GITHUB_SERVER_URL";
pub(crate) const GITHUB_REPOSITORY: &str = "GITHUB_REPOSITORY";
pub(crate) const GITHUB_EVENT_PATH: &str = "GITHUB_EVENT_PATH";
pub(crate) const GITHUB_STEP_SUMMARY: &str = "GITHUB_STEP_SUMMARY";
pub(crate) const GITHUB_SHA: &str = "GITHUB_SHA";
pub(crate) const GITHUB_REF: &str = "GITHUB_REF";
pub(crate) const GITHUB_RUN_ID: &str = "GITHUB_RUN_ID";
pub(crate) const GITHUB_RUN_ATTEMPT: &str = "GITHUB_RUN_ATTEMPT";
pub(crate) const GITHUB_ACTOR: &str = "GITHUB_ACTOR";
pub(crate) const GITHUB_TRIGGERING_ACTOR: &str = "GITHUB_TRIGGERING_ACTOR";

// Azure Pipelines: the pull request thread, provenance.
pub(crate) const TF_BUILD: &str = "TF_BUILD";
pub(crate) const SYSTEM_ACCESSTOKEN: &str = "SYSTEM_ACCESSTOKEN";
pub(crate) const SYSTEM_COLLECTIONURI: &str = "SYSTEM_COLLECTIONURI";
pub(crate) const SYSTEM_TEAMPROJECT: &str = "SYSTEM_TEAMPROJECT";
pub(crate) const SYSTEM_TEAMPROJECTID: &str = "SYSTEM_TEAMPROJECTID";
pub(crate) const SYSTEM_PULLREQUEST_PULLREQUESTID: &str = "SYSTEM_PULLREQUEST_PULLREQUESTID";
pub(crate) const SYSTEM_PULLREQUEST_PULLREQUESTNUMBER: &str = "SYSTEM_PULLREQUEST_PULLREQUESTNUMBER";
pub(crate) const BUILD_REPOSITORY_ID: &str = "BUILD_REPOSITORY_ID";
pub(crate) const BUILD_BUILDID: &str = "BUILD_BUILDID";
pub(crate) const BUILD_SOURCEVERSION: &str = "BUILD_SOURCEVERSION";
pub(crate) const BUILD_REQUESTEDFOR: &str = "BUILD_REQUESTEDFOR";
pub(crate) const BUILD_REQUESTEDFOREMAIL: &str = "BUILD_REQUESTEDFOREMAIL";

// Who and where, for the provenance of an attempt and the ledger lock.
pub(crate) const USER: &str = "USER";
pub(crate) const USERNAME: &str = "USERNAME";
pub(crate) const HOSTNAME: &str = "HOSTNAME";

#[cfg(test)]
mod tests {
    // Only a whole `$(…)` is a macro left as written; a value that merely starts or ends like one
    // is a value.
    #[test]
    fn only_a_whole_macro_is_unexpanded() {
        assert!(super::unexpanded("$(System.AccessToken)"));
        assert!(super::unexpanded(" $(System.AccessToken) "));
        for value in ["eyJ0eXAi.abc", "token)", "$(token", ""] {
            assert!(!super::unexpanded(value), "{value:?}");
        }
    }
}

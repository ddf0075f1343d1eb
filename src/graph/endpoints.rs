//! Where requests go: the national cloud's Graph root, login host, token scope and federation
//! audience, with the `RECONCILE_GRAPH_URL` / `AZURE_AUTHORITY_HOST` overrides.

use reqwest::Url;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cloud::Cloud;

/// The Graph API version requests go to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ApiVersion {
    #[default]
    #[serde(rename = "v1.0")]
    V1,
    #[serde(rename = "beta")]
    Beta,
}

impl ApiVersion {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V1 => "v1.0",
            ApiVersion::Beta => "beta",
        }
    }
}

/// The resolved addresses of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Graph root without trailing slash, e.g. `https://graph.microsoft.com`.
    pub graph_root: String,
    /// The cloud's own Graph root (differs from `graph_root` when overridden).
    pub cloud_root: &'static str,
    /// Login host without trailing slash, e.g. `https://login.microsoftonline.com`.
    pub authority: String,
    /// `{cloud graph root}/.default`: follows the cloud even when the root is overridden.
    pub scope: String,
    /// The audience a federated (OIDC) token must be issued for.
    pub federation_audience: &'static str,
    pub api_version: ApiVersion,
}

/// An address that must not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("{var} `{url}` is not a valid URL")]
    Invalid { var: &'static str, url: String },
    #[error(
        "{var} `{url}` uses http://, which is accepted only for loopback hosts (127.0.0.1, [::1], localhost)\nhint: use https://"
    )]
    Insecure { var: &'static str, url: String },
}

/// `(graph root, login host, federation audience)` of a cloud, as Microsoft documents them.
pub(crate) fn cloud_defaults(cloud: Cloud) -> (&'static str, &'static str, &'static str) {
    match cloud {
        Cloud::Global => {
            ("https://graph.microsoft.com", "https://login.microsoftonline.com", "api://AzureADTokenExchange")
        }
        Cloud::Usgov => {
            ("https://graph.microsoft.us", "https://login.microsoftonline.us", "api://AzureADTokenExchangeUSGov")
        }
        Cloud::UsgovDod => {
            ("https://dod-graph.microsoft.us", "https://login.microsoftonline.us", "api://AzureADTokenExchangeUSGov")
        }
        Cloud::China => (
            "https://microsoftgraph.chinacloudapi.cn",
            "https://login.chinacloudapi.cn",
            "api://AzureADTokenExchangeChina",
        ),
    }
}

impl Endpoints {
    /// Resolves the cloud's addresses, applying the overrides (each checked for `https://`, or
    /// `http://` on a loopback host).
    pub fn resolve(
        cloud: Cloud,
        api_version: ApiVersion,
        graph_url: Option<&str>,
        authority_host: Option<&str>,
    ) -> Result<Self, EndpointError> {
        let (root, login, audience) = cloud_defaults(cloud);
        let graph_root = match graph_url {
            Some(u) => checked(crate::env::RECONCILE_GRAPH_URL, u)?,
            None => root.to_owned(),
        };
        let authority = match authority_host {
            Some(u) => checked(crate::env::AZURE_AUTHORITY_HOST, u)?,
            None => login.to_owned(),
        };
        Ok(Endpoints {
            graph_root,
            cloud_root: root,
            authority,
            scope: format!("{root}/.default"),
            federation_audience: audience,
            api_version,
        })
    }

    /// Whether the login host is on this machine (the simulator, a test's stand-in): only there
    /// may a tenant be a plain name instead of an id.
    pub(crate) fn authority_is_loopback(&self) -> bool {
        Url::parse(&self.authority).is_ok_and(|u| is_loopback(&u))
    }

    /// `{authority}/{tenant}/v2.0/.well-known/openid-configuration`: Entra's OpenID discovery
    /// document of a tenant, which names its id whatever name (a domain) it is asked by.
    pub(crate) fn openid_configuration_url(&self, tenant: &str) -> String {
        format!("{}/{}/v2.0/.well-known/openid-configuration", self.authority, path_segment(tenant))
    }

    /// `{authority}/{tenant}/oauth2/v2.0/token`
    pub(crate) fn token_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.authority)
    }

    /// Where to fetch an `@odata.nextLink`: itself when it is under our Graph root, rewritten to
    /// our root when it is under the cloud's, `None` anywhere else (the token must not go there).
    pub(crate) fn follow(&self, link: &str) -> Option<String> {
        // Normalised first (`/v1.0/../x`, `%2e%2e`), so the prefix check sees where it really goes.
        let link = Url::parse(link).ok()?.to_string();
        let link = link.as_str();
        if let Some(rest) = link.strip_prefix(&self.graph_root).filter(|r| r.starts_with('/')) {
            return Some(format!("{}{rest}", self.graph_root));
        }
        link.strip_prefix(self.cloud_root)
            .filter(|r| r.starts_with('/'))
            .map(|rest| format!("{}{rest}", self.graph_root))
    }

    /// `{root}/{apiVersion}/deviceManagement/{rest}`
    pub(crate) fn device_management(&self, rest: &str) -> String {
        format!("{}/{}/deviceManagement/{rest}", self.graph_root, self.api_version.as_str())
    }

    /// `{root}/beta/deviceManagement/{rest}`, for what only beta has (the audit log).
    pub(crate) fn beta_device_management(&self, rest: &str) -> String {
        format!("{}/beta/deviceManagement/{rest}", self.graph_root)
    }
}

/// Accepts `https://…`, or `http://` for a loopback host; returns it without a trailing slash.
pub(crate) fn checked(var: &'static str, url: &str) -> Result<String, EndpointError> {
    let parsed = Url::parse(url).map_err(|_| EndpointError::Invalid { var, url: url.to_owned() })?;
    match parsed.scheme() {
        "https" => {}
        "http" if is_loopback(&parsed) => {}
        "http" => return Err(EndpointError::Insecure { var, url: url.to_owned() }),
        _ => return Err(EndpointError::Invalid { var, url: url.to_owned() }),
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(EndpointError::Invalid { var, url: url.to_owned() });
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// Where `localhost` goes: the HTTP client pins the name to these, so it is loopback whatever the
/// machine's resolver says (the port comes from the URL).
pub(crate) const LOCALHOST: [std::net::SocketAddr; 2] = [
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0),
    std::net::SocketAddr::new(std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), 0),
];

/// A loopback address, or the name `localhost` (pinned to loopback by the HTTP client); any other
/// name is resolved by whatever the machine's resolver says, so it proves nothing.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Characters left as they are in a path segment: letters, digits and RFC 3986's unreserved
/// `-._~`. Everything else (`/`, `?`, `#`, `%`, spaces, quotes, …) is percent-encoded, so a value
/// can never add a path segment or a query.
const SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// One URL path segment, percent-encoded (device ids, Azure DevOps ids and project names).
pub(crate) fn path_segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clouds_follow_the_table_and_scope_follows_the_cloud() {
        let e = Endpoints::resolve(Cloud::Usgov, ApiVersion::V1, Some("http://127.0.0.1:8080/"), None).expect("ok");
        assert_eq!(e.graph_root, "http://127.0.0.1:8080");
        assert_eq!(e.scope, "https://graph.microsoft.us/.default");
        assert_eq!(e.token_url("t1"), "https://login.microsoftonline.us/t1/oauth2/v2.0/token");
        assert_eq!(
            e.device_management("managedDevices/x"),
            "http://127.0.0.1:8080/v1.0/deviceManagement/managedDevices/x"
        );
        let g = Endpoints::resolve(Cloud::China, ApiVersion::Beta, None, None).expect("ok");
        assert_eq!(g.graph_root, "https://microsoftgraph.chinacloudapi.cn");
        assert_eq!(g.federation_audience, "api://AzureADTokenExchangeChina");
        let d = Endpoints::resolve(Cloud::UsgovDod, ApiVersion::V1, None, None).expect("ok");
        assert_eq!(d.scope, "https://dod-graph.microsoft.us/.default");
    }

    #[test]
    fn next_links_stay_under_the_graph_root() {
        let e = Endpoints::resolve(Cloud::Global, ApiVersion::V1, Some("http://127.0.0.1:9"), None).expect("ok");
        assert_eq!(
            e.follow("http://127.0.0.1:9/v1.0/x?$skiptoken=a").as_deref(),
            Some("http://127.0.0.1:9/v1.0/x?$skiptoken=a")
        );
        assert_eq!(
            e.follow("https://graph.microsoft.com/v1.0/x?s=1").as_deref(),
            Some("http://127.0.0.1:9/v1.0/x?s=1")
        );
        assert_eq!(e.follow("https://evil.example.com/v1.0/x"), None);
        assert_eq!(e.follow("http://127.0.0.1:99/v1.0/x"), None);
        assert_eq!(e.follow("https://graph.microsoft.com.evil.com/v1.0/x"), None);
        // A link that climbs out of the version path is normalised before it is judged.
        assert_eq!(e.follow("http://127.0.0.1:9/v1.0/../../x").as_deref(), Some("http://127.0.0.1:9/x"));
        assert_eq!(e.follow("http://127.0.0.1:9/%2e%2e/y").as_deref(), Some("http://127.0.0.1:9/y"));
        let proxied =
            Endpoints::resolve(Cloud::Global, ApiVersion::V1, Some("http://127.0.0.1:9/graph"), None).expect("ok");
        assert_eq!(proxied.follow("http://127.0.0.1:9/graph/../admin/x"), None, "climbs out of the root's path");
        assert!(proxied.follow("http://127.0.0.1:9/graph/v1.0/x").is_some());
    }

    #[test]
    fn plain_http_only_on_loopback() {
        for ok in [
            "http://127.0.0.1:1",
            "http://[::1]:3",
            "https://proxy.example.com",
            "http://127.8.9.10",
            "http://localhost:9",
        ] {
            assert!(checked("X", ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1",
            "http://graph.microsoft.com",
            "ftp://127.0.0.1",
            "not a url",
            "http://localhost.evil.com",
            "http://localhost.:9",
            "http://my.localhost:9",
        ] {
            assert!(checked("X", bad).is_err(), "{bad}");
        }
    }
}

//! Where a ledger lives: a local path, or a blob in Azure Blob Storage (docs/contract.md, Ledger).

use std::fmt;
use std::path::PathBuf;

use crate::cloud::Cloud;

/// A ledger's home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    Blob(Box<BlobUrl>),
    /// A ledger in this process's memory, by name (tests of the engine; never a setting).
    #[doc(hidden)]
    Memory(String),
}

impl Location {
    /// A `state:` / `--state` value: a Blob URL when it starts with `https://` or `http://`,
    /// otherwise a path (left for the caller to join and confine).
    pub(crate) fn parse(text: &str, cloud: Cloud) -> Result<Option<BlobUrl>, String> {
        let lower = text.trim_start().to_ascii_lowercase();
        if lower.starts_with("https://") || lower.starts_with("http://") {
            return BlobUrl::parse(text.trim(), cloud).map(Some);
        }
        if lower.contains("://") {
            return Err(format!("`{}` is neither a path nor an https:// Blob Storage URL", text.escape_debug()));
        }
        Ok(None)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::Blob(b) => b.fmt(f),
            Location::Memory(name) => write!(f, "memory:{name}"),
        }
    }
}

/// `https://ACCOUNT.blob.core.windows.net/CONTAINER/PATH`, or
/// `http://127.0.0.1:PORT/ACCOUNT/CONTAINER/PATH` for the Azurite emulator (loopback only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobUrl {
    /// The account's endpoint: `https://ACCOUNT.blob.core.windows.net`, or
    /// `http://127.0.0.1:PORT/ACCOUNT` for the emulator.
    pub endpoint: String,
    pub account: String,
    pub container: String,
    /// The blob's name inside the container, e.g. `team-a/state.json`.
    pub path: String,
    loopback: bool,
}

impl fmt::Display for BlobUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.endpoint, self.container, self.path)
    }
}

/// The Blob Storage host suffix of each cloud: the only hosts a storage credential goes to.
pub(crate) fn blob_suffix(cloud: Cloud) -> &'static str {
    match cloud {
        Cloud::Global => "blob.core.windows.net",
        Cloud::Usgov | Cloud::UsgovDod => "blob.core.usgovcloudapi.net",
        Cloud::China => "blob.core.chinacloudapi.cn",
    }
}

impl BlobUrl {
    /// Parses and checks a Blob URL. Credentials go only to the pinned cloud's storage hosts
    /// (over https) or to a loopback emulator.
    pub fn parse(text: &str, cloud: Cloud) -> Result<BlobUrl, String> {
        let shown = text.escape_debug().to_string();
        // The URL parser folds `a/../b` away silently; a ledger's name is taken literally or refused.
        let path_part = text.split_once("://").map_or(text, |(_, rest)| rest);
        if path_part.split(['/', '?', '#']).skip(1).any(|s| s == "." || s == ".." || s.eq_ignore_ascii_case("%2e%2e")) {
            return Err(format!("`{shown}`: `.` or `..` path segments are not allowed in a Blob URL"));
        }
        let url = url::Url::parse(text).map_err(|e| format!("`{shown}` is not a URL ({e})"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "`{shown}`: a Blob URL carries no user or password; credentials come from the environment"
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "`{shown}`: a Blob URL has no query or fragment (a SAS token goes in AZURE_STORAGE_SAS_TOKEN, never in the URL)"
            ));
        }
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            _ => false,
        };
        let segments = segments(&url, &shown)?;
        let (endpoint, account, rest) = if loopback {
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!("`{shown}` is not an http(s) URL"));
            }
            let Some((account, rest)) = segments.split_first() else {
                return Err(format!("`{shown}`: an emulator URL is http://127.0.0.1:PORT/ACCOUNT/CONTAINER/PATH"));
            };
            let host = url.host_str().unwrap_or_default();
            let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
            (format!("{}://{host}{port}/{account}", url.scheme()), account.clone(), rest.to_vec())
        } else {
            let suffix = blob_suffix(cloud);
            if url.scheme() != "https" {
                return Err(format!(
                    "`{shown}` uses {}://: only https:// is accepted, or http:// on a loopback address (the Azurite emulator)",
                    url.scheme()
                ));
            }
            let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
            let Some(account) = host.strip_suffix(suffix).and_then(|a| a.strip_suffix('.')) else {
                return Err(format!(
                    "`{shown}` is not a Blob Storage URL of the `{}` cloud (https://ACCOUNT.{suffix}/CONTAINER/PATH): storage credentials go only to the cloud AZURE_CLOUD pins",
                    cloud.as_str()
                ));
            };
            if url.port().is_some() {
                return Err(format!("`{shown}`: a Blob Storage URL has no port"));
            }
            (format!("https://{account}.{suffix}"), account.to_owned(), segments)
        };
        let (container, path) = container_and_path(&shown, &account, &rest)?;
        Ok(BlobUrl { endpoint, account, container, path, loopback })
    }

    /// The object `path` in the same container (a journal entry, the lock), for messages.
    pub(crate) fn sibling(&self, path: &str) -> BlobUrl {
        BlobUrl { path: path.to_owned(), ..self.clone() }
    }

    /// Whether requests go to a loopback emulator (plain http allowed, path-style URLs).
    pub(crate) fn is_loopback(&self) -> bool {
        self.loopback
    }
}

/// The URL's path, segment by segment, percent-decoded; a segment that could name something other
/// than itself (empty, `.`, `..`, an encoded `/`, a control character) is refused.
fn segments(url: &url::Url, shown: &str) -> Result<Vec<String>, String> {
    let mut segments = Vec::new();
    for s in url.path().trim_start_matches('/').split('/') {
        let decoded = percent_decode(s).ok_or_else(|| format!("`{shown}`: the path is not valid UTF-8"))?;
        if decoded.is_empty() || decoded == "." || decoded == ".." || decoded.contains('/') {
            return Err(format!("`{shown}`: empty, `.` or `..` path segments are not allowed in a Blob URL"));
        }
        if decoded.chars().any(char::is_control) {
            return Err(format!("`{shown}`: control characters are not allowed in a Blob URL"));
        }
        segments.push(decoded);
    }
    Ok(segments)
}

/// Checks the account's and the container's names as Azure defines them, and splits the rest
/// into the container and the blob's path.
fn container_and_path(shown: &str, account: &str, rest: &[String]) -> Result<(String, String), String> {
    if account.len() < 3 || account.len() > 24 || !account.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        return Err(format!(
            "`{shown}`: `{}` is not a storage account name (3–24 lowercase letters and digits)",
            account.escape_debug()
        ));
    }
    let Some((container, path)) = rest.split_first().filter(|(_, p)| !p.is_empty()) else {
        return Err(format!("`{shown}` names no blob: the URL is …/CONTAINER/PATH"));
    };
    if container.len() < 3
        || container.len() > 63
        || !container.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        || container.starts_with('-')
    {
        return Err(format!(
            "`{shown}`: `{}` is not a container name (3–63 lowercase letters, digits and hyphens)",
            container.escape_debug()
        ));
    }
    Ok((container.clone(), path.join("/")))
}

fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s).decode_utf8().ok().map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_azure_and_emulator_urls() {
        let b = BlobUrl::parse("https://acme.blob.core.windows.net/ledgers/team-a/state.json", Cloud::Global)
            .expect("azure url");
        assert_eq!(
            (b.endpoint.as_str(), b.account.as_str(), b.container.as_str(), b.path.as_str()),
            ("https://acme.blob.core.windows.net", "acme", "ledgers", "team-a/state.json")
        );
        assert!(!b.is_loopback());
        let e = BlobUrl::parse("http://127.0.0.1:10000/devstoreaccount1/ledgers/state.json", Cloud::Global)
            .expect("emulator url");
        assert_eq!(e.endpoint, "http://127.0.0.1:10000/devstoreaccount1");
        assert_eq!((e.container.as_str(), e.path.as_str()), ("ledgers", "state.json"));
        assert!(e.is_loopback());
        assert_eq!(e.to_string(), "http://127.0.0.1:10000/devstoreaccount1/ledgers/state.json");
        let gov = BlobUrl::parse("https://acme.blob.core.usgovcloudapi.net/l/s.json", Cloud::Usgov);
        assert!(gov.is_err(), "container too short");
        assert!(BlobUrl::parse("https://acme.blob.core.usgovcloudapi.net/ledgers/s.json", Cloud::Usgov).is_ok());
    }

    #[test]
    fn refuses_urls_that_would_send_credentials_elsewhere() {
        for bad in [
            "http://acme.blob.core.windows.net/ledgers/state.json",
            "https://evil.example/ledgers/state.json",
            "https://acme.blob.core.windows.net.evil.example/ledgers/state.json",
            "http://localhost:10000/devstoreaccount1/ledgers/state.json",
            "https://acme.blob.core.windows.net/ledgers/state.json?sig=abc",
            "https://user:pw@acme.blob.core.windows.net/ledgers/state.json",
            "https://acme.blob.core.windows.net/ledgers/../state.json",
            "https://acme.blob.core.windows.net/ledgers/a/%2e%2e/state.json",
            "https://acme.blob.core.windows.net/ledgers",
            "https://acme.blob.core.chinacloudapi.cn/ledgers/state.json",
            "https://acme.blob.core.windows.net:8443/ledgers/state.json",
        ] {
            assert!(BlobUrl::parse(bad, Cloud::Global).is_err(), "{bad}");
        }
        assert!(Location::parse("ftp://x/y", Cloud::Global).is_err());
        assert_eq!(Location::parse(".reconcile/state.json", Cloud::Global), Ok(None));
    }
}

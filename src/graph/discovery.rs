//! Tenant names → tenant ids. A ledger is bound to a tenant id (a GUID, the `tid` of every token
//! of that tenant); people often know their tenant by a domain (`contoso.onmicrosoft.com`).
//! Entra's OpenID discovery document, asked by that name on the cloud's login host, names the id
//! in its `issuer` and `token_endpoint`.

use serde::Deserialize;

use super::Endpoints;
use crate::http::BodyError;

/// Why a tenant name could not be turned into an id.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TenantNameError {
    #[error(
        "`{0}` is not a tenant id\nhint: give the tenant id, a GUID (Entra admin center > Overview > Tenant ID, or `az account show --query tenantId`), or a verified domain of the tenant such as contoso.onmicrosoft.com"
    )]
    NotAnId(String),
    #[error(
        "cannot resolve the domain `{domain}` to a tenant id through {url}: {why}\nhint: give the tenant id, a GUID (Entra admin center > Overview > Tenant ID, or `az account show --query tenantId`)"
    )]
    Unresolved { domain: String, url: String, why: String },
}

/// The longest discovery document read: it is a few KiB.
const ANSWER_CAP: usize = crate::http::MIB;

/// The tenant id `name` stands for, lowercase: a GUID as it is; a domain name through Entra's
/// discovery document at `endpoints.authority`. A plain name that is neither (`test-tenant`) is
/// accepted only when the login host is on this machine, the simulator's way of naming its
/// tenants; anywhere else it is refused.
pub(crate) async fn tenant_id(
    endpoints: &Endpoints,
    timeout: std::time::Duration,
    name: &str,
) -> Result<String, TenantNameError> {
    let name = name.trim();
    if let Ok(id) = uuid::Uuid::parse_str(name) {
        return Ok(id.hyphenated().to_string());
    }
    let well_formed =
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if !well_formed {
        return Err(TenantNameError::NotAnId(name.escape_debug().to_string()));
    }
    if !name.contains('.') {
        if endpoints.authority_is_loopback() {
            tracing::warn!(tenant = %name, "the tenant is a name, not a GUID: accepted only because the login host is on this machine (a simulator)");
            return Ok(name.to_owned());
        }
        return Err(TenantNameError::NotAnId(name.to_owned()));
    }
    let url = endpoints.openid_configuration_url(name);
    let unresolved = |why: String| TenantNameError::Unresolved { domain: name.to_owned(), url: url.clone(), why };
    let http = super::http_client(timeout);
    let resp = http.get(&url).send().await.map_err(|e| unresolved(super::error_chain(&e)))?;
    let status = resp.status().as_u16();
    let body = crate::http::read_capped(resp, ANSWER_CAP).await.map_err(|e| match e {
        BodyError::TooLarge(e) => unresolved(e.to_string()),
        BodyError::Read(e) => unresolved(super::error_chain(&e)),
    })?;
    if status != 200 {
        #[derive(Deserialize)]
        struct Refusal {
            error_description: Option<String>,
        }
        let why = serde_json::from_slice::<Refusal>(&body)
            .ok()
            .and_then(|r| r.error_description)
            .and_then(|d| d.lines().next().map(str::to_owned))
            .unwrap_or_else(|| "no such tenant".into());
        return Err(unresolved(format!("HTTP {status}: {}", crate::diag::safe::text(&why))));
    }
    id_in_document(&body)
        .ok_or_else(|| unresolved("the document names no tenant id in `issuer` or `token_endpoint`".into()))
}

/// The tenant id an OpenID discovery document names: the GUID path segment of its `issuer`
/// (`https://login.microsoftonline.com/{id}/v2.0`), else of its `token_endpoint`. When both name
/// one, they must agree.
fn id_in_document(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Document {
        issuer: Option<String>,
        token_endpoint: Option<String>,
    }
    let doc: Document = serde_json::from_slice(body).ok()?;
    let id_of = |url: &Option<String>| {
        let url = reqwest::Url::parse(url.as_deref()?).ok()?;
        let segments: Vec<String> = url.path_segments()?.map(str::to_owned).collect();
        segments.iter().find_map(|s| uuid::Uuid::parse_str(s).ok()).map(|id| id.hyphenated().to_string())
    };
    match (id_of(&doc.issuer), id_of(&doc.token_endpoint)) {
        (Some(a), Some(b)) if a != b => None,
        (Some(a), _) | (None, Some(a)) => Some(a),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_comes_from_the_issuer_or_the_token_endpoint() {
        let id = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        let doc = format!(
            r#"{{"issuer":"https://login.microsoftonline.com/{id}/v2.0","token_endpoint":"https://login.microsoftonline.com/{id}/oauth2/v2.0/token"}}"#
        );
        assert_eq!(id_in_document(doc.as_bytes()).as_deref(), Some(id));
        let only_endpoint =
            format!(r#"{{"token_endpoint":"https://login.microsoftonline.us/{id}/oauth2/v2.0/token"}}"#);
        assert_eq!(id_in_document(only_endpoint.as_bytes()).as_deref(), Some(id));
        let disagree = format!(
            r#"{{"issuer":"https://login.microsoftonline.com/{id}/v2.0","token_endpoint":"https://login.microsoftonline.com/00000000-0000-0000-0000-000000000001/oauth2/v2.0/token"}}"#
        );
        assert_eq!(id_in_document(disagree.as_bytes()), None);
        assert_eq!(id_in_document(br#"{"issuer":"https://login.microsoftonline.com/contoso.com/v2.0"}"#), None);
        assert_eq!(id_in_document(b"not json"), None);
    }
}

//! Authentication: a ready token, a client secret, a certificate (PEM or PKCS#12), a
//! workload-identity token file, GitHub Actions OIDC (client credentials, for automation), or, for
//! a person at a terminal, the Azure CLI's sign-in (`az login`).
//!
//! Secrets live in [`SecretString`]s (redacted `Debug`, zeroized on drop) and are exposed only
//! while building a request body. One token per run, renewed shortly before it expires or once
//! after a 401.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::http::BodyError;

/// The application permission of Intune's privileged device operations, which most kinds of
/// action need ([`crate::core::kinds::DeviceAction::role`]).
pub(crate) const PRIVILEGED_ROLE: &str = crate::core::kinds::PRIVILEGED_OPERATIONS;
/// Roles that allow reading managed devices.
pub(crate) const READ_ROLES: [&str; 2] =
    ["DeviceManagementManagedDevices.Read.All", "DeviceManagementManagedDevices.ReadWrite.All"];

/// The longest answer read from the token endpoint or the GitHub Actions runner's OIDC endpoint:
/// 1 MiB. Both answer a few KiB (one token of a few KiB and its lifetime); a token endpoint that
/// sends more is refused before its answer fills memory.
pub(crate) const TOKEN_ANSWER_CAP: usize = crate::http::MIB;

/// Where the access token comes from.
pub enum Credential {
    /// `RECONCILE_GRAPH_TOKEN`: used as is, never renewed.
    Token(SecretString),
    /// `AZURE_CLIENT_SECRET`.
    Secret { tenant: String, client_id: String, secret: SecretString },
    /// `AZURE_CLIENT_CERTIFICATE_PATH`: signs an RS256 assertion with an `x5t` header.
    Certificate { tenant: String, client_id: String, key: jsonwebtoken::EncodingKey, x5t: String },
    /// `AZURE_FEDERATED_TOKEN_FILE`: the assertion is the file's content, re-read every time.
    FederatedFile { tenant: String, client_id: String, path: PathBuf },
    /// GitHub Actions OIDC: the assertion is fetched from the runner for every token request.
    GithubOidc { tenant: String, client_id: String, request_url: String, request_token: SecretString },
    /// No credential in the environment, but `az` on `PATH`: `az account get-access-token` for
    /// the scope (like azure-identity's `AzureCliCredential`), in `AZURE_TENANT_ID` when set.
    AzureCli { az: PathBuf, tenant: Option<String> },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

impl Credential {
    /// A name for logs, never the secret.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Credential::Token(_) => "ready token (RECONCILE_GRAPH_TOKEN)",
            Credential::Secret { .. } => "client secret",
            Credential::Certificate { .. } => "client certificate",
            Credential::FederatedFile { .. } => "workload identity token file",
            Credential::GithubOidc { .. } => "GitHub Actions OIDC",
            Credential::AzureCli { .. } => "Azure CLI sign-in (az login)",
        }
    }

    fn tenant_and_client(&self) -> Option<(&str, &str)> {
        match self {
            Credential::Token(_) | Credential::AzureCli { .. } => None,
            Credential::Secret { tenant, client_id, .. }
            | Credential::Certificate { tenant, client_id, .. }
            | Credential::FederatedFile { tenant, client_id, .. }
            | Credential::GithubOidc { tenant, client_id, .. } => Some((tenant, client_id)),
        }
    }

    /// Picks the credential the environment describes, in this order: `RECONCILE_GRAPH_TOKEN`,
    /// client secret, certificate, token file, GitHub Actions OIDC; with none of them, the Azure
    /// CLI's sign-in when `az` is on `PATH`. An app half described (`AZURE_CLIENT_ID` without a
    /// secret, certificate or token file) is an error naming what would complete it, never a
    /// silent fall back to a person's sign-in.
    pub(crate) fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Credential, AuthError> {
        let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        // Identifiers are copied by hand into CI settings: a stray space is never part of one.
        let id = |k: &str| get(k).map(|v| v.trim().to_owned());
        if let Some(t) = get(crate::env::RECONCILE_GRAPH_TOKEN) {
            return Ok(Credential::Token(SecretString::from(t.trim().to_owned())));
        }
        let has_any = [
            crate::env::AZURE_CLIENT_SECRET,
            crate::env::AZURE_CLIENT_CERTIFICATE_PATH,
            crate::env::AZURE_FEDERATED_TOKEN_FILE,
            crate::env::ACTIONS_ID_TOKEN_REQUEST_URL,
        ]
        .iter()
        .any(|k| get(k).is_some());
        if !has_any {
            if get(crate::env::AZURE_CLIENT_ID).is_some() {
                return Err(AuthError::Incomplete);
            }
            return match find_on_path("az", env) {
                Some(az) => Ok(Credential::AzureCli { az, tenant: id(crate::env::AZURE_TENANT_ID) }),
                None => Err(AuthError::NoCredentials),
            };
        }
        let tenant = id(crate::env::AZURE_TENANT_ID).ok_or(AuthError::Missing(crate::env::AZURE_TENANT_ID))?;
        let client_id = id(crate::env::AZURE_CLIENT_ID).ok_or(AuthError::Missing(crate::env::AZURE_CLIENT_ID))?;
        if let Some(secret) = get(crate::env::AZURE_CLIENT_SECRET) {
            return Ok(Credential::Secret { tenant, client_id, secret: SecretString::from(secret) });
        }
        if let Some(path) = get(crate::env::AZURE_CLIENT_CERTIFICATE_PATH) {
            let password = get(crate::env::AZURE_CLIENT_CERTIFICATE_PASSWORD).map(SecretString::from);
            let (key, x5t) = super::cert::load(path.as_ref(), password.as_ref())?;
            return Ok(Credential::Certificate { tenant, client_id, key, x5t });
        }
        if let Some(path) = get(crate::env::AZURE_FEDERATED_TOKEN_FILE) {
            return Ok(Credential::FederatedFile { tenant, client_id, path: path.into() });
        }
        let request_url = get(crate::env::ACTIONS_ID_TOKEN_REQUEST_URL).ok_or(AuthError::NoCredentials)?;
        let request_token = get(crate::env::ACTIONS_ID_TOKEN_REQUEST_TOKEN)
            .ok_or(AuthError::Missing(crate::env::ACTIONS_ID_TOKEN_REQUEST_TOKEN))?;
        Ok(Credential::GithubOidc { tenant, client_id, request_url, request_token: SecretString::from(request_token) })
    }
}

/// Why no token could be had. Messages never contain a secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no Graph credentials in the environment, and no `az` on PATH\nhint: set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or a certificate, a federated token file, GitHub OIDC, or RECONCILE_GRAPH_TOKEN), or sign in with `az login`. (`plan --offline` needs no credentials; `--simulate` uses the built-in simulator.)"
    )]
    NoCredentials,
    #[error(
        "AZURE_CLIENT_ID is set, but nothing proves the app's identity\nhint: also set AZURE_CLIENT_SECRET, or AZURE_CLIENT_CERTIFICATE_PATH (and AZURE_CLIENT_CERTIFICATE_PASSWORD for a protected .pfx), or AZURE_FEDERATED_TOKEN_FILE; with AZURE_TENANT_ID. To sign in as yourself with `az login` instead, unset AZURE_CLIENT_ID"
    )]
    Incomplete,
    #[error(
        "the Azure CLI gave no token: {0}\nhint: run `az login` (with --tenant if you work in several tenants), then try again"
    )]
    AzureCli(String),
    #[error("{0} is not set, but the credential chosen needs it")]
    Missing(&'static str),
    #[error("cannot use the client certificate `{path}`: {reason}")]
    Certificate { path: String, reason: String },
    #[error("cannot read the federated token file `{path}`: {reason}")]
    FederatedFile { path: String, reason: String },
    #[error("cannot get a GitHub Actions OIDC token: {0}")]
    Github(String),
    #[error("the token endpoint refused the request (HTTP {status}): {error}{}", description.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    Refused { status: u16, error: String, description: Option<String> },
    #[error("cannot reach the token endpoint `{url}`: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the token endpoint answered something that is not a token (HTTP {status})")]
    BadAnswer { status: u16 },
    /// An answer longer than [`TOKEN_ANSWER_CAP`]: who sent it and the cap.
    #[error("cannot use the token endpoint's answer: {0}")]
    TooLarge(String),
}

/// A bearer token, and which of the run's tokens it is (so a 401 renews it only once).
#[derive(Clone)]
pub struct AccessToken(SecretString, u64);

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken([redacted])")
    }
}

impl AccessToken {
    pub(crate) fn bearer(&self) -> String {
        format!("Bearer {}", self.0.expose_secret())
    }

    /// The `roles` claim of a JWT access token, without verifying it (Graph does that).
    /// `None` when the token is not a readable JWT.
    ///
    /// A delegated (user) token has no `roles` but a space-separated `scp`; its scopes count as
    /// permissions the same way.
    pub(crate) fn roles(&self) -> Option<Vec<String>> {
        let c = claims(self.0.expose_secret())?;
        let mut roles = c.roles;
        roles.extend(c.scp.unwrap_or_default().split_whitespace().map(str::to_owned));
        Some(roles)
    }

    /// Whether the token is a person's (delegated: it has `scp`), not an app's.
    pub(crate) fn delegated(&self) -> bool {
        claims(self.0.expose_secret()).is_some_and(|c| c.scp.is_some())
    }

    /// The `tid` (tenant id) claim, if the token is a readable JWT.
    pub(crate) fn tenant(&self) -> Option<String> {
        claims(self.0.expose_secret())?.tid
    }

    /// The `aud` claim (the resource the token is for), if the token is a readable JWT.
    pub(crate) fn audience(&self) -> Option<String> {
        claims(self.0.expose_secret())?.aud
    }
}

/// What a command will do with its token, and so which Microsoft Graph permissions it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Read managed devices (`plan`, `refresh`, `state adopt`).
    Read,
    /// Look managed devices up and send them actions (`apply`): reading is a permission of its
    /// own, which `PrivilegedOperations.All` does not include.
    Apply,
}

/// What a token's permissions say about a [`Need`], as [`Need::judge`] decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Grant {
    /// They suffice: the token's permissions that grant it, in the token's order.
    Granted(Vec<String>),
    /// The token is not a readable JWT: its permissions cannot be read.
    Unreadable,
    /// They do not: what is missing, and every permission the token has.
    Missing { missing: Vec<&'static str>, has: Vec<String> },
}

impl Need {
    /// What `self` needs: each requirement is met by any one of its permissions (the first is
    /// the one to grant). A read permission ([`READ_ROLES`]), and for [`Need::Apply`] the
    /// permission of every kind of action ([`crate::core::kinds::DeviceAction::role`]), each
    /// once.
    fn requirements(self) -> Vec<&'static [&'static str]> {
        let mut all: Vec<&'static [&'static str]> = vec![&READ_ROLES];
        if self == Need::Apply {
            for kind in crate::core::kinds::ALL {
                let role = std::slice::from_ref(&kind.spec().role);
                if !all.contains(&role) {
                    all.push(role);
                }
            }
        }
        all
    }

    /// Whether `token`'s permissions (its `roles`, or its delegated `scp`) suffice for `self`:
    /// the one rule, which the online commands ([`check_permissions`]) and `doctor` both ask.
    pub(crate) fn judge(self, token: &AccessToken) -> Grant {
        token.roles().map_or(Grant::Unreadable, |roles| self.judge_roles(roles))
    }

    fn judge_roles(self, roles: Vec<String>) -> Grant {
        let requirements = self.requirements();
        let met = |any: &[&str]| roles.iter().any(|r| any.contains(&r.as_str()));
        let missing: Vec<&'static str> = requirements.iter().filter(|any| !met(any)).map(|any| any[0]).collect();
        if missing.is_empty() {
            let grants = |r: &str| requirements.iter().any(|any| any.contains(&r));
            Grant::Granted(roles.into_iter().filter(|r| grants(r)).collect())
        } else {
            Grant::Missing { missing, has: roles }
        }
    }
}

/// A token that lacks a permission its command needs: what is missing, what it has, and how to
/// grant it (for an app, or for a person signed in).
#[derive(Debug, thiserror::Error)]
#[error(
    "the access token lacks the permission{} {} that `{command}` needs (it has: {}); nothing was sent\nhint: {}{}",
    if missing.len() == 1 { "" } else { "s" },
    missing.join(" and "),
    if has.is_empty() { "no roles".to_owned() } else { has.join(", ") },
    permission_hint(&missing.join(" and "), *delegated),
    if *command == "plan" { "; or plan with --offline" } else { "" }
)]
pub(crate) struct MissingPermission {
    pub missing: Vec<&'static str>,
    pub has: Vec<String>,
    pub delegated: bool,
    pub command: &'static str,
}

/// The one permission check of every online command, made before its first Graph request
/// ([`Need::judge`] decides, as it does for `doctor`): `Ok(true)` when the token carries what
/// `need` needs, `Ok(false)` when it cannot tell (the token is not a JWT: Graph will judge, and
/// a warning says so), else what is missing.
pub(crate) fn check_permissions(
    token: &AccessToken,
    need: Need,
    command: &'static str,
) -> Result<bool, MissingPermission> {
    match need.judge(token) {
        Grant::Granted(_) => Ok(true),
        Grant::Unreadable => {
            tracing::warn!("the access token is not a JWT: cannot check its permissions; Graph will judge them");
            Ok(false)
        }
        Grant::Missing { missing, has } => {
            Err(MissingPermission { missing, has, delegated: token.delegated(), command })
        }
    }
}

/// What to do when a token lacks `permission`: an app needs the application permission and admin
/// consent; a person (a delegated token, e.g. from `az login`) needs the delegated permission
/// granted to the app they signed in with, and an Intune role.
pub(crate) fn permission_hint(permission: &str, delegated: bool) -> String {
    if delegated {
        format!(
            "you are signed in as a person (a delegated token): an administrator must grant the delegated Microsoft Graph permission {permission} to the app you signed in with (the Azure CLI is 04b07795-8ddb-461a-bbee-02f9e1bf7b46), and your account needs an Intune role that allows it; or use an app credential (AZURE_CLIENT_ID with a secret, certificate or federated token)"
        )
    } else {
        format!(
            "in Entra ID, add the Microsoft Graph application permission {permission} to the app registration and grant admin consent"
        )
    }
}

/// Microsoft Graph's application id: the `aud` of v2 tokens for Graph in every cloud.
pub(crate) const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

/// Whether a token's `aud` is Microsoft Graph of the cloud whose Graph root is `cloud_root`.
pub(crate) fn audience_is(aud: &str, cloud_root: &str) -> bool {
    aud.eq_ignore_ascii_case(GRAPH_APP_ID) || aud.trim_end_matches('/').eq_ignore_ascii_case(cloud_root)
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    roles: Vec<String>,
    scp: Option<String>,
    tid: Option<String>,
    exp: Option<i64>,
    #[serde(default, deserialize_with = "first_audience")]
    aud: Option<String>,
}

/// `aud` is a string, or (rarely) an array of them: the first one.
fn first_audience<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Array(a)) => a.into_iter().find_map(|v| v.as_str().map(str::to_owned)),
        _ => None,
    })
}

fn claims(token: &str) -> Option<Claims> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

struct Cached {
    token: AccessToken,
    renew_at: Option<Instant>,
}

/// The cache: the current token, and how many tokens were fetched (the next one's generation).
#[derive(Default)]
struct Cache {
    current: Option<Cached>,
    fetched: u64,
}

/// Hands out the run's token, renewing it when due.
pub struct TokenProvider {
    http: reqwest::Client,
    credential: Credential,
    token_url: Option<String>,
    scope: String,
    audience: &'static str,
    cache: tokio::sync::Mutex<Cache>,
}

impl std::fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenProvider").field("credential", &self.credential).field("scope", &self.scope).finish()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct TokenRefusal {
    error: Option<String>,
    error_description: Option<String>,
}

impl TokenProvider {
    pub fn new(http: reqwest::Client, credential: Credential, endpoints: &super::Endpoints) -> Self {
        let token_url = credential.tenant_and_client().map(|(tenant, _)| endpoints.token_url(tenant));
        TokenProvider {
            http,
            credential,
            token_url,
            scope: endpoints.scope.clone(),
            audience: endpoints.federation_audience,
            cache: tokio::sync::Mutex::new(Cache::default()),
        }
    }

    /// The current token, fetching a new one when there is none or it is about to expire.
    pub async fn token(&self) -> Result<AccessToken, AuthError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.current.as_ref()
            && c.renew_at.is_none_or(|t| Instant::now() < t)
        {
            return Ok(c.token.clone());
        }
        let mut fresh = self.fetch().await?;
        cache.fetched += 1;
        fresh.token.1 = cache.fetched;
        let token = fresh.token.clone();
        cache.current = Some(fresh);
        Ok(token)
    }

    /// Graph answered 401 to a request made with `used`: forgets that token so the next call
    /// fetches a new one. Many requests in flight may meet the same expiry; only the first
    /// renews, the others find the new token already there. A ready token cannot be renewed:
    /// returns false then.
    pub async fn invalidate(&self, used: &AccessToken) -> bool {
        if matches!(self.credential, Credential::Token(_)) {
            return false;
        }
        let mut cache = self.cache.lock().await;
        if cache.current.as_ref().is_some_and(|c| c.token.1 == used.1) {
            cache.current = None;
        }
        true
    }

    async fn fetch(&self) -> Result<Cached, AuthError> {
        if let Credential::AzureCli { az, tenant } = &self.credential {
            return azure_cli_token(az.clone(), tenant.clone(), self.scope.clone()).await;
        }
        let (Some(url), Some((_, client_id))) = (&self.token_url, self.credential.tenant_and_client()) else {
            let Credential::Token(t) = &self.credential else { unreachable!("only a ready token has no token URL") };
            return Ok(Cached { token: AccessToken(t.clone(), 0), renew_at: None });
        };
        let mut form: Vec<(&str, String)> = vec![
            ("grant_type", "client_credentials".into()),
            ("client_id", client_id.to_owned()),
            ("scope", self.scope.clone()),
        ];
        const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
        match &self.credential {
            Credential::Token(_) | Credential::AzureCli { .. } => unreachable!("handled above"),
            Credential::Secret { secret, .. } => form.push(("client_secret", secret.expose_secret().to_owned())),
            Credential::Certificate { key, x5t, .. } => {
                form.push(("client_assertion_type", JWT_BEARER.into()));
                form.push(("client_assertion", super::cert::assertion(key, x5t, client_id, url)?));
            }
            Credential::FederatedFile { path, .. } => {
                let text = std::fs::read_to_string(path).map_err(|e| AuthError::FederatedFile {
                    path: path.display().to_string(),
                    reason: crate::diag::io_reason(&e),
                })?;
                form.push(("client_assertion_type", JWT_BEARER.into()));
                form.push(("client_assertion", text.trim().to_owned()));
            }
            Credential::GithubOidc { request_url, request_token, .. } => {
                form.push(("client_assertion_type", JWT_BEARER.into()));
                form.push(("client_assertion", self.github_assertion(request_url, request_token).await?));
            }
        }
        let started = Instant::now();
        let resp = self
            .http
            .post(url)
            .form(&form)
            .send()
            .await
            .map_err(|e| AuthError::Unreachable { url: url.clone(), reason: super::error_chain(&e) })?;
        drop(form);
        let status = resp.status().as_u16();
        let body = crate::http::read_capped(resp, TOKEN_ANSWER_CAP).await.map_err(|e| match e {
            BodyError::TooLarge(e) => AuthError::TooLarge(e.to_string()),
            BodyError::Read(e) => AuthError::Unreachable { url: url.clone(), reason: super::error_chain(&e) },
        })?;
        if status != 200 {
            let r: TokenRefusal =
                serde_json::from_slice(&body).unwrap_or(TokenRefusal { error: None, error_description: None });
            return Err(AuthError::Refused {
                status,
                error: r.error.unwrap_or_else(|| "unknown_error".into()),
                description: r.error_description.map(|d| d.lines().next().unwrap_or_default().to_owned()),
            });
        }
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|_| AuthError::BadAnswer { status })?;
        let lifetime = answer
            .expires_in
            .and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
            .map_or(Duration::from_secs(3599), Duration::from_secs);
        // Renew a little before expiry: five minutes, or a tenth of a short lifetime.
        let margin = (lifetime / 10).min(Duration::from_secs(300));
        tracing::debug!(credential = self.credential.kind(), lifetime_s = lifetime.as_secs(), "got an access token");
        Ok(Cached {
            token: AccessToken(SecretString::from(answer.access_token), 0),
            renew_at: Some(started + lifetime - margin),
        })
    }

    async fn github_assertion(&self, request_url: &str, request_token: &SecretString) -> Result<String, AuthError> {
        #[derive(Deserialize)]
        struct Answer {
            value: String,
        }
        let sep = if request_url.contains('?') { '&' } else { '?' };
        let url = format!(
            "{request_url}{sep}audience={}",
            url::form_urlencoded::byte_serialize(self.audience.as_bytes()).collect::<String>()
        );
        let resp = self
            .http
            .get(&url)
            .header("Authorization", format!("bearer {}", request_token.expose_secret()))
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| AuthError::Github(super::error_chain(&e)))?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(AuthError::Github(format!(
                "the runner answered HTTP {status}; does the job have `permissions: id-token: write`?"
            )));
        }
        let body = crate::http::read_capped(resp, TOKEN_ANSWER_CAP).await.map_err(|e| match e {
            BodyError::TooLarge(e) => AuthError::Github(e.to_string()),
            BodyError::Read(e) => AuthError::Github(super::error_chain(&e)),
        })?;
        let a: Answer = serde_json::from_slice(&body)
            .map_err(|_| AuthError::Github("the runner's answer has no `value`".into()))?;
        Ok(a.value)
    }
}

/// `az account get-access-token --scope SCOPE [--tenant T] --output json`, run without a shell.
/// Its answer holds the token: it is parsed, never logged.
async fn azure_cli_token(az: PathBuf, tenant: Option<String>, scope: String) -> Result<Cached, AuthError> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(rename = "accessToken")]
        access_token: String,
        /// Seconds since the epoch (Azure CLI 2.54 and later).
        expires_on: Option<i64>,
    }
    let started = Instant::now();
    let run = tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(&az);
        cmd.args(["account", "get-access-token", "--scope", &scope, "--output", "json"]);
        if let Some(t) = &tenant {
            cmd.args(["--tenant", t]);
        }
        cmd.stdin(std::process::Stdio::null()).output()
    });
    let out = match tokio::time::timeout(Duration::from_secs(60), run).await {
        Err(_) => return Err(AuthError::AzureCli("`az` did not answer within 60 s".into())),
        Ok(Err(e)) => return Err(AuthError::AzureCli(format!("`az` could not be run: {e}"))),
        Ok(Ok(Err(e))) => return Err(AuthError::AzureCli(format!("`az` could not be run: {e}"))),
        Ok(Ok(Ok(out))) => out,
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let why = stderr.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("no message").to_owned();
        return Err(AuthError::AzureCli(format!("`az account get-access-token` failed ({}): {why}", out.status)));
    }
    let answer: Answer = serde_json::from_slice(&out.stdout).map_err(|_| {
        AuthError::AzureCli("`az account get-access-token` answered something that is not a token".into())
    })?;
    let token = AccessToken(SecretString::from(answer.access_token), 0);
    let expires = answer.expires_on.or_else(|| claims(token.0.expose_secret()).and_then(|c| c.exp));
    let lifetime = expires
        .map(|at| at - jiff::Timestamp::now().as_second())
        .map_or(Duration::from_secs(300), |s| Duration::from_secs(s.max(0) as u64));
    let margin = (lifetime / 10).min(Duration::from_secs(300));
    tracing::debug!(credential = "Azure CLI", lifetime_s = lifetime.as_secs(), "got an access token");
    Ok(Cached { token, renew_at: Some(started + lifetime - margin) })
}

/// The executable `name` in one of `PATH`'s folders (as the environment gives it).
fn find_on_path(name: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let path = env(crate::env::PATH)?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| is_executable(p))
}

#[cfg(unix)]
fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(p: &std::path::Path) -> bool {
    p.is_file()
}

impl From<super::cert::CertError> for AuthError {
    fn from(e: super::cert::CertError) -> Self {
        AuthError::Certificate { path: e.path, reason: e.reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> AccessToken {
        let p = URL_SAFE_NO_PAD.encode(payload);
        AccessToken(SecretString::from(format!("eyJhbGciOiJub25lIn0.{p}.sig")), 0)
    }

    #[test]
    fn roles_are_read_from_the_payload() {
        assert_eq!(jwt(r#"{"roles":["A","B"]}"#).roles(), Some(vec!["A".to_owned(), "B".to_owned()]));
        assert_eq!(jwt(r#"{"tid":"x"}"#).roles(), Some(vec![]));
        assert_eq!(jwt(r#"{"tid":"x"}"#).tenant().as_deref(), Some("x"));
        assert_eq!(jwt(r#"{"scp":"A.Read B.Write"}"#).roles(), Some(vec!["A.Read".to_owned(), "B.Write".to_owned()]));
        assert_eq!(AccessToken(SecretString::from("opaque".to_owned()), 0).roles(), None);
    }

    #[test]
    fn one_rule_judges_whether_a_tokens_permissions_suffice() {
        let [read, read_write] = READ_ROLES;
        let t = |roles: &[&str]| jwt(&serde_json::json!({ "roles": roles }).to_string());
        let granted = |v: &[&str]| Grant::Granted(v.iter().map(|s| (*s).to_owned()).collect());
        assert_eq!(Need::Read.judge(&t(&["Other", read_write])), granted(&[read_write]));
        assert_eq!(Need::Apply.judge(&t(&[PRIVILEGED_ROLE, "Other", read])), granted(&[PRIVILEGED_ROLE, read]));
        assert_eq!(
            Need::Apply.judge(&t(&[read])),
            Grant::Missing { missing: vec![PRIVILEGED_ROLE], has: vec![read.to_owned()] }
        );
        assert_eq!(
            Need::Apply.judge(&t(&[])),
            Grant::Missing { missing: vec![read, PRIVILEGED_ROLE], has: vec![] },
            "each missing requirement names its first permission"
        );
        assert_eq!(
            Need::Read.judge(&jwt(&format!(r#"{{"scp":"{read} x"}}"#))),
            granted(&[read]),
            "delegated scopes count"
        );
        assert_eq!(Need::Read.judge(&AccessToken(SecretString::from("opaque".to_owned()), 0)), Grant::Unreadable);
        assert!(matches!(check_permissions(&t(&[read]), Need::Apply, "apply"), Err(MissingPermission { .. })));
        assert!(matches!(check_permissions(&t(&[read]), Need::Read, "plan"), Ok(true)));
    }

    #[test]
    fn debug_never_shows_secrets() {
        let t = jwt(r#"{"roles":[]}"#);
        assert_eq!(format!("{t:?}"), "AccessToken([redacted])");
        let c = Credential::Secret {
            tenant: "t".into(),
            client_id: "c".into(),
            secret: SecretString::from("hunter2".to_owned()),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn environment_picks_the_credential() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
        };
        assert!(matches!(Credential::from_env(&env(&[])), Err(AuthError::NoCredentials)));
        assert!(matches!(
            Credential::from_env(&env(&[(crate::env::RECONCILE_GRAPH_TOKEN, "x")])),
            Ok(Credential::Token(_))
        ));
        assert!(matches!(
            Credential::from_env(&env(&[(crate::env::AZURE_CLIENT_SECRET, "s")])),
            Err(AuthError::Missing(crate::env::AZURE_TENANT_ID))
        ));
        let secret = env(&[
            (crate::env::AZURE_TENANT_ID, "t"),
            (crate::env::AZURE_CLIENT_ID, "c"),
            (crate::env::AZURE_CLIENT_SECRET, "s"),
        ]);
        assert!(matches!(Credential::from_env(&secret), Ok(Credential::Secret { .. })));
        let file = env(&[
            (crate::env::AZURE_TENANT_ID, "t"),
            (crate::env::AZURE_CLIENT_ID, "c"),
            (crate::env::AZURE_FEDERATED_TOKEN_FILE, "/f"),
        ]);
        assert!(matches!(Credential::from_env(&file), Ok(Credential::FederatedFile { .. })));
        let gh = env(&[
            (crate::env::AZURE_TENANT_ID, "t"),
            (crate::env::AZURE_CLIENT_ID, "c"),
            (crate::env::ACTIONS_ID_TOKEN_REQUEST_URL, "http://x"),
            (crate::env::ACTIONS_ID_TOKEN_REQUEST_TOKEN, "y"),
        ]);
        assert!(matches!(Credential::from_env(&gh), Ok(Credential::GithubOidc { .. })));
    }
}

//! The simulator's HTTP surface: an axum [`Router`] with one route per path it serves, and two
//! layers around it.
//!
//! - [`record`] (around everything, the fallback included) gives each request its `request-id`,
//!   waits the configured latency, refuses host names other than loopback, and **records every
//!   request once its route has decided, before a simulated hang or late answer** — so a request
//!   the client gave up on is still in the log, with whether it took effect.
//! - [`graph_gate`] (around the Graph routes) checks the token, the version and collection, and
//!   the throttling budget, in that order, as Graph does.
//!
//! Routes lock the state once, decide, and return a [`Reply`]; what the log needs from that
//! decision (applied, which credential, hang, delay) travels on the response as [`Effects`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, RawQuery, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::actions;
use super::state::{FaultKind, RecordedRequest, RetryAfter, SimState};

type Shared = Arc<Mutex<SimState>>;

pub(super) fn router(state: Shared) -> Router {
    let graph = Router::new()
        .route("/{version}/deviceManagement/remoteActionAudits", get(audits))
        .route("/{version}/deviceManagement/operationApprovalRequests", get(approval_requests))
        .route("/{version}/deviceManagement/{collection}", get(list))
        .route("/{version}/deviceManagement/{collection}/{id}", get(get_device))
        .route("/{version}/deviceManagement/{collection}/{id}/{action}", post(device_action))
        .route_layer(middleware::from_fn_with_state(state.clone(), graph_gate));
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/{tenant}/v2.0/.well-known/openid-configuration", get(openid_configuration))
        .route("/_sim/portal/{id}/{action}", post(portal_action))
        .route("/_sim/approvals/{id}/{verb}", post(decide_approval))
        .route("/_sim/requests", get(requests))
        .route("/_github/oidc", get(github))
        .merge(graph)
        .fallback(no_route)
        .method_not_allowed_fallback(no_route)
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .with_state(state)
}

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, SimState> {
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What a route decided.
struct Reply {
    status: StatusCode,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
    effects: Effects,
}

/// What the request log needs to know of a reply, beyond its status.
#[derive(Debug, Clone, Default)]
struct Effects {
    /// A Graph request with a live token.
    authorized: bool,
    /// The request changed a device (Intune accepted a device action).
    applied: bool,
    /// Which credential a token request presented.
    credential: Option<String>,
    /// The scope a token request asked for.
    scope: Option<String>,
    /// Never answer (the effect, if any, has happened).
    hang: bool,
    /// Answer only after this long (the effect has already happened).
    delay: Duration,
    /// Answer only once the test releases held answers (the effect has already happened).
    held: bool,
    /// Drop the connection halfway through the body.
    cut: bool,
}

impl Reply {
    fn new(status: StatusCode, body: Option<Value>) -> Self {
        Reply { status, body, headers: Vec::new(), effects: Effects::default() }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut resp = match self.body {
            Some(v) => ([(CONTENT_TYPE, "application/json")], v.to_string()).into_response(),
            None => ().into_response(),
        };
        *resp.status_mut() = self.status;
        for (k, v) in &self.headers {
            if let Ok(v) = HeaderValue::from_str(v) {
                resp.headers_mut().insert(*k, v);
            }
        }
        resp.extensions_mut().insert(self.effects);
        resp
    }
}

/// The `request-id` this request's answer carries, set by [`record`].
#[derive(Debug, Clone)]
struct RequestId(String);

/// Who asked and how to answer: the `request-id` of the answer, the caller's
/// `client-request-id`, and the `Host` it used (for `@odata.nextLink`).
struct Call {
    rid: String,
    crid: Option<String>,
    host: String,
    /// Multi Admin Approval: `x-msft-approval-justification` and `x-msft-approval-code`.
    justification: Option<String>,
    approval_code: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Call {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let header = |k: &str| parts.headers.get(k).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok(Call {
            rid: parts.extensions.get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default(),
            crid: header("client-request-id"),
            host: header("host").unwrap_or_else(|| "127.0.0.1".into()),
            justification: header("x-msft-approval-justification"),
            approval_code: header("x-msft-approval-code"),
        })
    }
}

impl Call {
    /// Graph's answer to a missing, expired or unknown token.
    fn unauthorized(&self) -> Reply {
        self.error(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", "Access token has expired or is not valid.")
    }

    /// A Graph error body, with this request's ids in `innerError`.
    fn error(&self, status: StatusCode, code: &str, message: &str) -> Reply {
        Reply::new(
            status,
            Some(json!({"error": {
                "code": code,
                "message": message,
                "innerError": {"request-id": self.rid, "client-request-id": self.crid}
            }})),
        )
    }
}

/// Intune's habit: a JSON document inside `error.message`.
fn intune_message(text: &str) -> String {
    json!({"_version": 3, "Message": format!("{text} - Operation ID (for customer support): 00000000-0000-0000-0000-000000000000 - Activity ID: {}", uuid::Uuid::new_v4()), "CustomApiErrorPhrase": "", "RetryAfter": null, "ErrorSourceService": "", "HttpHeaders": "{}"}).to_string()
}

/// DNS rebinding: a web page that points its own name at 127.0.0.1 could otherwise drive the
/// simulator from a browser. Only loopback names are served.
fn loopback(host: &str) -> bool {
    let name =
        host.rsplit_once(':').map_or(host, |(h, port)| if port.chars().all(|c| c.is_ascii_digit()) { h } else { host });
    matches!(name, "127.0.0.1" | "localhost" | "[::1]")
}

/// The outer layer: request id, latency, the loopback check, and the request log.
async fn record(State(state): State<Shared>, mut req: Request, next: Next) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let (crid, accept, user_agent, host, justification, approval_code) = {
        let header = |k: &str| req.headers().get(k).and_then(|v| v.to_str().ok()).map(str::to_owned);
        (
            header("client-request-id"),
            header("accept"),
            header("user-agent"),
            header("host"),
            header("x-msft-approval-justification"),
            header("x-msft-approval-code"),
        )
    };
    let host = host.unwrap_or_else(|| "127.0.0.1".into());
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    // A POST's body is kept for the log (a token request's is a form with a secret: never).
    let mut body = None;
    if method == "POST" && !path.ends_with("/oauth2/v2.0/token") {
        let (parts, b) = req.into_parts();
        let bytes = axum::body::to_bytes(b, BODY_LIMIT).await.unwrap_or_default();
        body = logged_body(&bytes);
        req = Request::from_parts(parts, axum::body::Body::from(bytes));
    }
    let (latency, probe) = {
        let s = lock(&state);
        (s.config.latency, s.config.intent_probe.clone())
    };
    // As the POST arrives, before any answer: was its intent already durable?
    let intent_durable = match (&probe, &crid) {
        (Some(ledger), Some(id)) if method == "POST" && !path.starts_with("/_") && !path.ends_with("/token") => {
            Some(super::state::durable_in(ledger, id))
        }
        _ => None,
    };
    if !path.starts_with("/_sim/") && !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut resp = if loopback(&host) {
        next.run(req).await
    } else {
        Reply::new(
            StatusCode::MISDIRECTED_REQUEST,
            Some(json!({"error": {"code": "MisdirectedRequest", "message": "the simulator answers only to loopback host names"}})),
        )
        .into_response()
    };
    let effects = resp.extensions_mut().remove::<Effects>().unwrap_or_default();
    let (padding, sent) = {
        let s = lock(&state);
        (s.config.padding, s.padding_sent.clone())
    };
    let status = resp.status();
    let pad = if path.starts_with("/_") {
        0
    } else if path.ends_with("/oauth2/v2.0/token") {
        if status == StatusCode::OK { padding.token } else { 0 }
    } else if method == "GET" {
        if status == StatusCode::OK { padding.reads } else { 0 }
    } else if status == StatusCode::NO_CONTENT && effects.applied {
        padding.resets
    } else {
        0
    };
    if pad > 0 {
        resp = padded(resp, pad, sent).await;
    }
    if effects.cut {
        resp = cut(resp).await;
    }
    lock(&state).record(RecordedRequest {
        seq: 0,
        at: jiff::Timestamp::now(),
        method,
        path,
        query,
        status: resp.status().as_u16(),
        client_request_id: crid,
        accept,
        user_agent,
        authorized: effects.authorized,
        applied: effects.applied,
        credential: effects.credential,
        scope: effects.scope,
        intent_durable,
        body,
        approval_justification: justification,
        approval_code,
    });
    if effects.hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    if !effects.delay.is_zero() {
        tokio::time::sleep(effects.delay).await;
    }
    if effects.held {
        let mut released = lock(&state).released.subscribe();
        let _ = released.wait_for(|r| *r).await;
    }
    let now = lock(&state).now();
    let headers = resp.headers_mut();
    for (k, v) in [("request-id", request_id), ("date", http_date(now))] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            headers.insert(k, v);
        }
    }
    resp
}

/// The largest request body the simulator reads (Graph's device actions take a few hundred bytes).
const BODY_LIMIT: usize = 1 << 20;

/// A request body as the log keeps it: its JSON (text that is not JSON as a string), with a
/// wipe's unlock code replaced; `None` when empty.
fn logged_body(bytes: &[u8]) -> Option<Value> {
    if bytes.is_empty() {
        return None;
    }
    let mut v = serde_json::from_slice::<Value>(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()));
    if let Some(secret) = v.get_mut(actions::SECRET_PARAM) {
        *secret = json!(super::state::REDACTED);
    }
    Some(v)
}

/// `resp` with `n` bytes of whitespace streamed after its body, counted into `sent` as the client
/// pulls them; a 204 becomes `200 {}` (a 204 carries no body).
async fn padded(resp: Response, n: usize, sent: Arc<std::sync::atomic::AtomicU64>) -> Response {
    const CHUNK: usize = 64 * 1024;
    let (mut parts, body) = resp.into_parts();
    let mut head = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    if parts.status == StatusCode::NO_CONTENT {
        parts.status = StatusCode::OK;
        parts.headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        head = Bytes::from_static(b"{}");
    }
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    let spaces = Bytes::from(vec![b' '; CHUNK]);
    let tail = futures_util::stream::iter((0..n.div_ceil(CHUNK)).map(move |i| {
        let len = CHUNK.min(n - i * CHUNK);
        sent.fetch_add(len as u64, std::sync::atomic::Ordering::Relaxed);
        Ok::<_, std::convert::Infallible>(spaces.slice(..len))
    }));
    let chunks = futures_util::StreamExt::chain(futures_util::stream::once(async move { Ok(head) }), tail);
    Response::from_parts(parts, axum::body::Body::from_stream(chunks))
}

/// `resp` with its body cut off halfway: the first half is sent, then the stream fails and the
/// connection drops without the rest (what a client sees when a connection breaks mid-answer).
async fn cut(resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    let half = body.slice(..body.len() / 2);
    // The first half leaves before the break (the server flushes what it has while the body is
    // pending).
    let broken = futures_util::stream::once(async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "the simulator cut this answer off"))
    });
    let chunks = futures_util::StreamExt::chain(futures_util::stream::once(async move { Ok(half) }), broken);
    Response::from_parts(parts, axum::body::Body::from_stream(chunks))
}

/// The Graph layer: a live token, a version and collection Graph has, then the throttling budget
/// (reads and writes counted apart). The audit log and the approval requests are beta-only and
/// read-only.
async fn graph_gate(State(state): State<Shared>, call: Call, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let refused = {
        let mut s = lock(&state);
        let token = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
        let segments: Vec<&str> = req.uri().path().trim_start_matches('/').split('/').collect();
        let (version, collection) = (segments.first().copied(), segments.get(2).copied());
        let beta = version == Some("beta");
        let known = match collection {
            Some("managedDevices") => matches!(version, Some("v1.0" | "beta")),
            Some("comanagedDevices") => beta,
            Some("remoteActionAudits") => beta && segments.len() == 3 && method == Method::GET,
            Some("operationApprovalRequests") => beta && segments.len() == 3 && method == Method::GET,
            _ => false,
        };
        // A device action this version of Graph has (the beta-only ones are unknown to v1.0).
        let action = segments.get(4).copied().filter(|_| segments.len() == 5 && method == Method::POST);
        let action_known = action.is_none_or(|a| actions::lookup(a).is_some_and(|a| beta || !a.beta_only));
        if !s.authorized(token) {
            Some(call.unauthorized())
        } else if !known || !action_known {
            let segment = if known { action } else { collection }.unwrap_or_default();
            let message = format!("Resource not found for the segment '{segment}'.");
            Some(authorized(call.error(StatusCode::BAD_REQUEST, "BadRequest", &message)))
        } else if s.config.enforce_permissions
            && let Some(false) = token
                .and_then(|t| t.strip_prefix("Bearer "))
                .and_then(|t| super::state::permits(t, method == Method::POST))
        {
            let needs = if method == Method::POST {
                crate::graph::auth::PRIVILEGED_ROLE.to_owned()
            } else {
                crate::graph::auth::READ_ROLES.join(", ")
            };
            let message = format!(
                "Application is not authorized to perform this operation. Application must have one of the following scopes: {needs}"
            );
            Some(authorized(call.error(StatusCode::FORBIDDEN, "Forbidden", &intune_message(&message))))
        } else if !s.admit(method == Method::POST) {
            Some(authorized(throttled(&s, &call)))
        } else {
            None
        }
    };
    if let Some(reply) = refused {
        return reply.into_response();
    }
    let mut resp = next.run(req).await;
    if let Some(e) = resp.extensions_mut().get_mut::<Effects>() {
        e.authorized = true;
    }
    resp
}

fn authorized(mut r: Reply) -> Reply {
    r.effects.authorized = true;
    r
}

/// No route: under `deviceManagement` as Graph answers (after the token check), elsewhere a 404.
async fn no_route(State(state): State<Shared>, call: Call, req: Request) -> Reply {
    if req.uri().path().split('/').nth(2) != Some("deviceManagement") {
        return Reply::new(
            StatusCode::NOT_FOUND,
            Some(json!({"error": {"code": "NotFound", "message": "no such route in the simulator"}})),
        );
    }
    if !lock(&state).authorized(req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok())) {
        return call.unauthorized();
    }
    authorized(call.error(StatusCode::BAD_REQUEST, "BadRequest", "No route matches."))
}

async fn requests(State(state): State<Shared>) -> Reply {
    Reply::new(StatusCode::OK, Some(json!(lock(&state).requests)))
}

fn throttled(s: &SimState, call: &Call) -> Reply {
    let mut r = call.error(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", &intune_message("Too many requests"));
    match s.config.retry_after {
        RetryAfter::None => {}
        RetryAfter::Seconds(secs) => r.headers.push(("retry-after", format!("{secs}"))),
        RetryAfter::HttpDate(d) => {
            let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(d.as_secs_f64().ceil() as i64);
            r.headers.push(("retry-after", http_date(at)));
        }
    }
    r
}

/// An HTTP date (RFC 9110), as `Date` and `Retry-After` carry.
fn http_date(t: jiff::Timestamp) -> String {
    jiff::fmt::rfc2822::DateTimePrinter::new().timestamp_to_rfc9110_string(&t).unwrap_or_default()
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

async fn token(State(state): State<Shared>, Path(tenant): Path<String>, body: Bytes) -> Reply {
    let s = &mut *lock(&state);
    let f = form(&body);
    let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let refuse = |status: StatusCode, error: &str, desc: &str, cred: &str| {
        let mut r = Reply::new(
            status,
            Some(json!({"error": error, "error_description": format!("{desc}\r\nTrace ID: {}", uuid::Uuid::new_v4())})),
        );
        r.effects.credential = Some(cred.to_owned());
        r
    };
    if get("grant_type") != Some("client_credentials") {
        return refuse(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "AADSTS70003: The app requested an unsupported grant type.",
            "none",
        );
    }
    if get("client_id").is_none_or(str::is_empty) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "AADSTS900144: The request body must contain the following parameter: 'client_id'.",
            "none",
        );
    }
    if !get("scope").is_some_and(|sc| sc.ends_with("/.default")) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "AADSTS1002012: The provided value for scope is not valid.",
            "none",
        );
    }
    let credential = match (get("client_secret"), get("client_assertion_type"), get("client_assertion")) {
        (Some(secret), _, _) => {
            if s.config.client_secret.as_deref().is_some_and(|want| want != secret) {
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "AADSTS7000215: Invalid client secret provided.",
                    "secret",
                );
            }
            "secret".to_owned()
        }
        (None, Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"), Some(a)) if !a.is_empty() => {
            format!("assertion:{}", assertion_kind(a))
        }
        _ => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "AADSTS7000216: 'client_assertion', 'client_secret' or 'request' is required.",
                "none",
            );
        }
    };
    let roles = s.config.roles.clone();
    // Entra issues a domain's tokens for the tenant's id.
    let tid = if tenant.eq_ignore_ascii_case(&s.config.domain) { s.config.tenant_id.clone() } else { tenant };
    let token = s.mint_token_for(&tid, roles);
    let mut r = Reply::new(
        StatusCode::OK,
        Some(
            json!({"token_type": "Bearer", "expires_in": s.config.token_lifetime.as_secs(), "ext_expires_in": s.config.token_lifetime.as_secs(), "access_token": token}),
        ),
    );
    r.effects.credential = Some(credential);
    r.effects.scope = get("scope").map(str::to_owned);
    r
}

/// Entra's OpenID discovery document of a tenant asked for by name: the configured domain names
/// the configured tenant id, a GUID names itself, anything else is not a tenant Entra knows.
async fn openid_configuration(State(state): State<Shared>, Path(tenant): Path<String>, call: Call) -> Reply {
    let s = lock(&state);
    let id = if tenant.eq_ignore_ascii_case(&s.config.domain) {
        s.config.tenant_id.clone()
    } else if let Ok(id) = uuid::Uuid::parse_str(&tenant) {
        id.hyphenated().to_string()
    } else {
        return Reply::new(
            StatusCode::BAD_REQUEST,
            Some(json!({
                "error": "invalid_tenant",
                "error_description": format!("AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.\r\nTrace ID: {}", uuid::Uuid::new_v4()),
            })),
        );
    };
    let base = format!("http://{}", call.host);
    Reply::new(
        StatusCode::OK,
        Some(json!({
            "issuer": format!("{base}/{id}/v2.0"),
            "token_endpoint": format!("{base}/{id}/oauth2/v2.0/token"),
            "authorization_endpoint": format!("{base}/{id}/oauth2/v2.0/authorize"),
            "jwks_uri": format!("{base}/{id}/discovery/v2.0/keys"),
            "tenant_region_scope": "EU",
        })),
    )
}

/// What kind of assertion came: an RS256 certificate JWT (with `x5t`) or anything else (a
/// federated token). Recorded so tests can tell the credentials apart.
fn assertion_kind(a: &str) -> String {
    use base64::Engine as _;
    let header = a
        .split('.')
        .next()
        .and_then(|h| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    match header {
        Some(h) if h["alg"] == "RS256" && h["x5t"].is_string() => "certificate".into(),
        _ => {
            use sha2::Digest as _;
            format!("federated:{}", &hex::encode(sha2::Sha256::digest(a.as_bytes()))[..8])
        }
    }
}

async fn github(RawQuery(query): RawQuery, headers: HeaderMap) -> Reply {
    let query = query.unwrap_or_default();
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !auth.to_ascii_lowercase().starts_with("bearer ") {
        return Reply::new(StatusCode::UNAUTHORIZED, None);
    }
    let audience =
        form(query.as_bytes()).into_iter().find(|(k, _)| k == "audience").map(|(_, v)| v).unwrap_or_default();
    let mut r =
        Reply::new(StatusCode::OK, Some(json!({"value": format!("github-oidc-token-for-{audience}"), "count": 1})));
    r.effects.credential = Some(format!("audience:{audience}"));
    r
}

fn parse_select(query: &str) -> Option<Vec<String>> {
    form(query.as_bytes())
        .into_iter()
        .find(|(k, _)| k == "$select")
        .map(|(_, v)| v.split(',').map(|s| s.trim().to_owned()).collect())
}

async fn get_device(
    State(state): State<Shared>,
    Path((_, _, id)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    call: Call,
) -> Reply {
    let mut s = lock(&state);
    if s.take_lookup_fault(&id).is_some() {
        return call.error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            &intune_message("Service unavailable"),
        );
    }
    match s.present(&id) {
        Some(i) => {
            Reply::new(StatusCode::OK, Some(s.render_device(i, parse_select(&query.unwrap_or_default()).as_deref())))
        }
        None => call.error(StatusCode::NOT_FOUND, "ResourceNotFound", &intune_message("Resource not found")),
    }
}

/// `POST /{v}/deviceManagement/{collection}/{id}/{action}`: the body checked as Graph checks it,
/// then the device, a scripted fault, the platform rule (see [`actions`]), and the action
/// recorded as Intune would carry it out.
async fn device_action(
    State(state): State<Shared>,
    Path((version, _, id, action)): Path<(String, String, String, String)>,
    call: Call,
    body: Bytes,
) -> Reply {
    let s = &mut *lock(&state);
    let call = &call;
    let Some(action) = actions::lookup(&action) else {
        let message = format!("Resource not found for the segment '{action}'.");
        return call.error(StatusCode::BAD_REQUEST, "BadRequest", &message);
    };
    let parameters = match action.parse_body(&body, version == "beta") {
        Ok(p) => p,
        Err(e) => return call.error(StatusCode::BAD_REQUEST, "BadRequest", &e),
    };
    let Some(i) = s.present(&id) else {
        return call.error(StatusCode::NOT_FOUND, "ResourceNotFound", &intune_message("Resource not found"));
    };
    if s.config.maa.iter().any(|m| m == action.name)
        && let Some(held) = approval_gate(s, call, &id, action.name)
    {
        return held;
    }
    let fault = s.take_fault(&id, action.name);
    match fault {
        Some(FaultKind::UnavailableBefore) => {
            return call.error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                &intune_message("Service unavailable"),
            );
        }
        Some(FaultKind::Throttle) => return throttled(s, call),
        Some(FaultKind::Unauthorized) => {
            return call.error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "Access token has expired or is not yet valid.",
            );
        }
        Some(FaultKind::HangBefore) => {
            let mut r = Reply::new(StatusCode::NO_CONTENT, None);
            r.effects.hang = true;
            return r;
        }
        Some(FaultKind::Forbidden) => {
            return call.error(StatusCode::FORBIDDEN, "UnknownError", &intune_message("Forbidden"));
        }
        Some(FaultKind::RequestTimeout) => {
            return call.error(StatusCode::REQUEST_TIMEOUT, "RequestTimeout", "The request did not arrive in time.");
        }
        Some(FaultKind::CutAnswer(code)) if !(200..300).contains(&code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut r = call.error(status, "InternalServerError", &intune_message("An internal server error occurred"));
            r.effects.cut = true;
            return r;
        }
        _ => {}
    }
    let now = s.now();
    if !s.apply_at(i, action, parameters, "", now) {
        return not_on_this_platform(call);
    }
    let mut r = match fault {
        Some(FaultKind::ErrorAfter) => call.error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            &intune_message("An internal server error occurred"),
        ),
        Some(FaultKind::HangAfter) => {
            let mut r = Reply::new(StatusCode::NO_CONTENT, None);
            r.effects.hang = true;
            r
        }
        Some(FaultKind::AnswerLate(after)) => {
            let mut r = Reply::new(StatusCode::NO_CONTENT, None);
            r.effects.delay = after;
            r
        }
        Some(FaultKind::HoldAnswer) => {
            let mut r = Reply::new(StatusCode::NO_CONTENT, None);
            r.effects.held = true;
            r
        }
        Some(FaultKind::CutAnswer(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
            let mut r = Reply::new(status, Some(json!({"status": "accepted", "detail": "x".repeat(64)})));
            r.effects.cut = true;
            r
        }
        _ => Reply::new(StatusCode::NO_CONTENT, None),
    };
    r.effects.applied = true;
    r
}

/// Multi Admin Approval on a protected action: `None` when the request carries the code of an
/// approved request for this device and action (it goes on, and the request is `completed`);
/// otherwise the refusal (400 without a justification) or the hold (403 with the code).
fn approval_gate(s: &mut SimState, call: &Call, id: &str, action: &str) -> Option<Reply> {
    use base64::Engine as _;
    let justification = match (&call.approval_code, &call.justification) {
        (Some(code), _) if s.use_approval(code, id, action) => return None,
        (Some(_), _) => String::new(),
        (None, Some(j)) => {
            let decoded = base64::engine::general_purpose::STANDARD.decode(j.trim()).ok();
            match decoded.and_then(|d| String::from_utf8(d).ok()).filter(|d| d.chars().count() <= 1024) {
                Some(d) => d,
                None => {
                    let m = "The x-msft-approval-justification header must be Base64 of at most 1024 characters.";
                    return Some(call.error(StatusCode::BAD_REQUEST, "BadRequest", m));
                }
            }
        }
        (None, None) => {
            let m = "The x-msft-approval-justification header is required for this operation.";
            return Some(call.error(StatusCode::BAD_REQUEST, "BadRequest", m));
        }
    };
    let code = s.hold_for_approval(id, action, &justification);
    let message = format!("This operation requires approval. Approval request created. x-msft-approval-code: {code}");
    let mut r = call.error(StatusCode::FORBIDDEN, "ApprovalRequired", &message);
    r.headers.push(("x-msft-approval-code", code));
    Some(r)
}

/// `GET /{v}/deviceManagement/operationApprovalRequests?$filter=requestId eq '…'`: the Multi
/// Admin Approval requests (all of them without a filter).
async fn approval_requests(State(state): State<Shared>, RawQuery(query): RawQuery, call: Call) -> Reply {
    let s = lock(&state);
    let params = form(query.unwrap_or_default().as_bytes());
    let filter = match params.iter().find(|(k, _)| k == "$filter").map(|(_, f)| parse_filter(f)) {
        None => Vec::new(),
        Some(Ok(f)) => f,
        Some(Err(e)) => return call.error(StatusCode::BAD_REQUEST, "BadRequest", &e),
    };
    let mut value = Vec::new();
    for a in &s.approvals {
        if filter.iter().any(|(k, v)| k.eq_ignore_ascii_case("requestId") && !v.eq_ignore_ascii_case(&a.id)) {
            continue;
        }
        let approver = a.approver.as_ref().map(|by| json!({"user": {"userPrincipalName": by, "displayName": by}}));
        value.push(json!({
            "id": a.id,
            "requestId": a.id,
            "status": a.status,
            "requestDateTime": a.requested.to_string(),
            "expirationDateTime": a.expires.to_string(),
            "requestJustification": a.justification,
            "approvalJustification": a.approver_why,
            "approver": approver,
            "requiredOperationApproval": a.action,
        }));
    }
    authorized(Reply::new(StatusCode::OK, Some(json!({"value": value}))))
}

/// `POST /_sim/approvals/{id}/approve|reject|expire?by=UPN&why=…`: what the second administrator
/// does in the Intune admin center (or three days passing). Only a request that needs approval.
async fn decide_approval(
    State(state): State<Shared>,
    Path((id, verb)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Reply {
    let s = &mut *lock(&state);
    let params = form(query.unwrap_or_default().as_bytes());
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let status = match verb.as_str() {
        "approve" => "approved",
        "reject" => "rejected",
        "expire" => "expired",
        "cancel" => "cancelled",
        _ => return Reply::new(StatusCode::NOT_FOUND, Some(json!({"error": "approve, reject, expire or cancel"}))),
    };
    let Some(a) = s.approvals.iter_mut().find(|a| a.id == id) else {
        return Reply::new(StatusCode::NOT_FOUND, Some(json!({"error": format!("no approval request {id}")})));
    };
    if a.status != "needsApproval" {
        return Reply::new(StatusCode::CONFLICT, Some(json!({"error": format!("the request is {}", a.status)})));
    }
    a.status = status.into();
    if status != "expired" {
        a.approver = Some(get("by").unwrap_or_else(|| "second.admin@contoso.onmicrosoft.com".into()));
        a.approver_why = get("why");
    }
    Reply::new(StatusCode::NO_CONTENT, None)
}

/// Intune's refusal of an action on a platform that does not have it.
fn not_on_this_platform(call: &Call) -> Reply {
    call.error(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        &intune_message("The requested action is not supported on this platform"),
    )
}

/// `POST /_sim/portal/{id}/{action}`: an action made in the Intune portal by a person (`?by=UPN`,
/// `&ago=10m` for one made earlier; its body as Graph's, beta properties allowed): it shows in the
/// device's results and in the audit log with its initiator, like one the tool did not make. The
/// portal follows the same platform rule as Graph.
async fn portal_action(
    State(state): State<Shared>,
    Path((id, action)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    call: Call,
    body: Bytes,
) -> Reply {
    let s = &mut *lock(&state);
    let params = form(query.unwrap_or_default().as_bytes());
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let Some(action) = actions::lookup(&action) else {
        let message = format!("`{action}` is not an action the simulator knows");
        return Reply::new(StatusCode::NOT_FOUND, Some(json!({"error": message})));
    };
    let by = get("by").unwrap_or_else(|| super::state::PORTAL_ADMIN.into());
    let ago = match get("ago").map(|a| super::state::ago(&a)) {
        None => jiff::SignedDuration::ZERO,
        Some(Ok(ago)) => ago,
        Some(Err(e)) => return Reply::new(StatusCode::BAD_REQUEST, Some(json!({"error": e}))),
    };
    let parameters = match action.parse_body(&body, true) {
        Ok(p) => p,
        Err(e) => return call.error(StatusCode::BAD_REQUEST, "BadRequest", &e),
    };
    let Some(i) = s.present(&id) else { return Reply::new(StatusCode::NOT_FOUND, None) };
    let start = s.now() - ago;
    if !s.apply_at(i, action, parameters, &by, start) {
        return not_on_this_platform(&call);
    }
    let mut r = Reply::new(StatusCode::NO_CONTENT, None);
    r.effects.applied = true;
    r
}

/// `GET /beta/deviceManagement/remoteActionAudits`: `$filter=requestDateTime ge <RFC 3339>`
/// and/or `action eq '<remoteAction>'` (a member of the enum, `factoryReset` for a wipe), paged
/// like the device list.
async fn audits(State(state): State<Shared>, RawQuery(query): RawQuery, call: Call) -> Reply {
    let s = lock(&state);
    let call = &call;
    if s.config.audits_missing {
        return call.error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            "Resource not found for the segment 'remoteActionAudits'.",
        );
    }
    if !s.config.audits_readable {
        return call.error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &intune_message("Application is not authorized to perform this operation"),
        );
    }
    let params = form(query.unwrap_or_default().as_bytes());
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let (mut since, mut only) = (None, None);
    if let Some(f) = get("$filter") {
        for clause in f.split(" and ") {
            let clause = clause.trim();
            if let Some(t) = clause.strip_prefix("requestDateTime ge ") {
                match t.trim().parse::<jiff::Timestamp>() {
                    Ok(t) => since = Some(t),
                    Err(e) => {
                        return call.error(StatusCode::BAD_REQUEST, "BadRequest", &format!("Invalid date: {e}"));
                    }
                }
            } else if let Some(name) = clause.strip_prefix("action eq '").and_then(|n| n.strip_suffix('\'')) {
                let Some(name) = actions::REMOTE_ACTIONS.iter().find(|a| a.eq_ignore_ascii_case(name)) else {
                    let message = format!(
                        "The string '{name}' is not a valid enumeration type constant for 'microsoft.graph.remoteAction'."
                    );
                    return call.error(StatusCode::BAD_REQUEST, "BadRequest", &message);
                };
                only = Some(*name);
            } else {
                return call.error(StatusCode::BAD_REQUEST, "BadRequest", &format!("Unsupported filter '{clause}'"));
            }
        }
    }
    let all = s.audits(since, only);
    let url = format!("http://{}/beta/deviceManagement/remoteActionAudits", call.host);
    let (page, next) = page(&all, &params, s.config.page_size, &url);
    let mut body = json!({"value": page});
    if let Some(next) = next {
        body["@odata.nextLink"] = json!(next);
    }
    Reply::new(StatusCode::OK, Some(body))
}

/// Paging as Graph pages a list: the page of `items` that `$skiptoken` (an offset here) starts,
/// at most `top` long, and the `@odata.nextLink` of the next page when there is more: `url` with
/// the same query and the next offset. The one pager of every list the simulator serves.
fn page<'a, T>(items: &'a [T], params: &[(String, String)], top: usize, url: &str) -> (&'a [T], Option<String>) {
    let skip = params.iter().find(|(k, _)| k == "$skiptoken").and_then(|(_, t)| t.parse::<usize>().ok()).unwrap_or(0);
    let end = skip.saturating_add(top);
    let page = &items[skip.min(items.len())..end.min(items.len())];
    let next = (end < items.len()).then(|| {
        let mut next = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in params.iter().filter(|(k, _)| k != "$skiptoken") {
            next.append_pair(k, v);
        }
        next.append_pair("$skiptoken", &end.to_string());
        format!("{url}?{}", next.finish())
    });
    (page, next)
}

/// `prop eq 'value'` clauses joined by `and`; quotes inside values are doubled.
fn parse_filter(f: &str) -> Result<Vec<(String, String)>, String> {
    let mut clauses = Vec::new();
    let mut rest = f.trim();
    while !rest.is_empty() {
        let (prop, after) = rest.split_once(" eq '").ok_or_else(|| format!("Invalid filter clause near '{rest}'"))?;
        let prop = prop.trim();
        if !prop.chars().all(|c| c.is_ascii_alphanumeric()) || prop.is_empty() {
            return Err(format!("Could not find a property named '{prop}'"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices().peekable();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            if c == '\'' {
                if chars.peek().is_some_and(|(_, n)| *n == '\'') {
                    value.push('\'');
                    chars.next();
                } else {
                    end = Some(i + 1);
                    break;
                }
            } else {
                value.push(c);
            }
        }
        let end = end.ok_or("Unterminated string literal")?;
        clauses.push((prop.to_owned(), value));
        rest = after[end..].trim_start();
        if !rest.is_empty() {
            rest = rest.strip_prefix("and ").ok_or_else(|| format!("Syntax error at '{rest}'"))?.trim_start();
        }
    }
    Ok(clauses)
}

async fn list(
    State(state): State<Shared>,
    Path((version, collection)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    call: Call,
) -> Reply {
    let s = lock(&state);
    let query = query.unwrap_or_default();
    let params = form(query.as_bytes());
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if s.config.list_needs_filter && get("$filter").is_none() {
        return call.error(StatusCode::BAD_REQUEST, "BadRequest", "A $filter is required.");
    }
    let clauses = match get("$filter").map(|f| parse_filter(&f)).transpose() {
        Ok(c) => c.unwrap_or_default(),
        Err(e) => return call.error(StatusCode::BAD_REQUEST, "BadRequest", &e),
    };
    let top =
        get("$top").and_then(|t| t.parse::<usize>().ok()).unwrap_or(s.config.page_size).clamp(1, s.config.page_size);
    let select = parse_select(&query);
    let matching = s.matching(&clauses);
    let url = format!("http://{}/{version}/deviceManagement/{collection}", call.host);
    let (page, next) = page(&matching, &params, top, &url);
    let page: Vec<Value> = page
        .iter()
        .map(|&i| s.render_device(i, select.as_deref()))
        .map(|mut d| {
            if s.config.list_omits_results && d.get("deviceActionResults").is_some() {
                d["deviceActionResults"] = json!([]);
            }
            d
        })
        .collect();
    let mut body = json!({"@odata.context": format!("https://graph.microsoft.com/{version}/$metadata#deviceManagement/{collection}"), "value": page});
    if get("$count").is_some_and(|c| c.eq_ignore_ascii_case("true")) {
        body["@odata.count"] = json!(matching.len());
    }
    if let Some(next) = next {
        body["@odata.nextLink"] = json!(next);
    }
    Reply::new(StatusCode::OK, Some(body))
}

#[cfg(test)]
mod tests {
    use super::{page, parse_filter};

    #[test]
    fn pages_link_to_the_next_with_the_same_query() {
        let items: Vec<u32> = (0..5).collect();
        let q = |token: Option<&str>| {
            let mut q = vec![("$filter".to_owned(), "a eq 'b c'".to_owned())];
            q.extend(token.map(|t| ("$skiptoken".to_owned(), t.to_owned())));
            q
        };
        let (first, next) = page(&items, &q(None), 2, "http://h/x");
        assert_eq!((first, next.as_deref()), (&[0, 1][..], Some("http://h/x?%24filter=a+eq+%27b+c%27&%24skiptoken=2")));
        let (last, next) = page(&items, &q(Some("4")), 2, "http://h/x");
        assert_eq!((last, next), (&[4][..], None));
        let (past, next) = page(&items, &q(Some("99999999999999999999")), 2, "http://h/x");
        assert_eq!((past, next), (&[0, 1][..], Some("http://h/x?%24filter=a+eq+%27b+c%27&%24skiptoken=2".to_owned())));
        assert_eq!(page(&items, &q(Some(&usize::MAX.to_string())), 2, "u"), (&[][..], None), "no overflow");
    }

    #[test]
    fn filters_parse_with_doubled_quotes_and_and() {
        assert_eq!(
            parse_filter("serialNumber eq 'R5''8' and deviceName eq 'a and b eq ''c'''"),
            Ok(vec![("serialNumber".into(), "R5'8".into()), ("deviceName".into(), "a and b eq 'c'".into())])
        );
        assert!(parse_filter("serialNumber eq 'x' or id eq 'y'").is_err());
        assert!(parse_filter("serialNumber eq 'x").is_err());
        assert!(parse_filter("serial Number eq 'x'").is_err());
    }
}

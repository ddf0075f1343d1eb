//! The simulator's HTTP surface: one handler that routes by hand, so every request (including
//! ones no route matches) is recorded the same way.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};

use super::state::{FaultKind, RecordedRequest, RetryAfter, SimState};

type Shared = Arc<Mutex<SimState>>;

pub(super) fn router(state: Shared) -> Router {
    Router::new().fallback(handle).with_state(state)
}

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, SimState> {
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What a route decided, before it is recorded and sent.
struct Reply {
    status: StatusCode,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
    applied: bool,
    credential: Option<String>,
    hang: bool,
    /// Answer only after this long (the request's effect has already happened).
    delay: Duration,
}

impl Reply {
    fn new(status: StatusCode, body: Option<Value>) -> Self {
        Reply {
            status,
            body,
            headers: Vec::new(),
            applied: false,
            credential: None,
            hang: false,
            delay: Duration::ZERO,
        }
    }
}

fn graph_error(
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: &str,
    client_request_id: Option<&str>,
) -> Reply {
    Reply::new(
        status,
        Some(json!({"error": {
            "code": code,
            "message": message,
            "innerError": {"request-id": request_id, "client-request-id": client_request_id}
        }})),
    )
}

/// Intune's habit: a JSON document inside `error.message`.
fn intune_message(text: &str) -> String {
    json!({"_version": 3, "Message": format!("{text} - Operation ID (for customer support): 00000000-0000-0000-0000-000000000000 - Activity ID: {}", uuid::Uuid::new_v4()), "CustomApiErrorPhrase": "", "RetryAfter": null, "ErrorSourceService": "", "HttpHeaders": "{}"}).to_string()
}

async fn handle(State(state): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or_default().to_owned();
    let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let request_id = uuid::Uuid::new_v4().to_string();
    let latency = lock(&state).config.latency;
    if !path.starts_with("/_sim/") && !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let host = header("host").unwrap_or_else(|| "127.0.0.1".into());
    // DNS rebinding: a web page that points its own name at 127.0.0.1 could otherwise drive the
    // simulator from a browser. Only loopback names are served.
    let host_name = host
        .rsplit_once(':')
        .map_or(host.as_str(), |(h, port)| if port.chars().all(|c| c.is_ascii_digit()) { h } else { host.as_str() });
    let loopback_host = matches!(host_name, "127.0.0.1" | "localhost" | "[::1]");
    let reply = {
        let mut s = lock(&state);
        let graph = segments.get(1) == Some(&"deviceManagement");
        let authorized = graph && s.authorized(header("authorization").as_deref());
        let crid = header("client-request-id");
        let reply = if loopback_host {
            let req = Req {
                method: &method,
                segments: &segments,
                query: &query,
                body: &body,
                headers: &headers,
                host: &host,
                rid: &request_id,
                crid: crid.as_deref(),
                authorized,
            };
            route(&mut s, &req)
        } else {
            Reply::new(
                StatusCode::MISDIRECTED_REQUEST,
                Some(
                    json!({"error": {"code": "MisdirectedRequest", "message": "the simulator answers only to loopback host names"}}),
                ),
            )
        };
        s.record(RecordedRequest {
            seq: 0,
            at: jiff::Timestamp::now(),
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            status: reply.status.as_u16(),
            client_request_id: crid,
            accept: header("accept"),
            user_agent: header("user-agent"),
            authorized,
            applied: reply.applied,
            credential: reply.credential.clone(),
        });
        reply
    };
    if reply.hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let now = lock(&state).now();
    let mut resp =
        Response::builder().status(reply.status).header("request-id", &request_id).header("date", http_date(now));
    for (k, v) in &reply.headers {
        resp = resp.header(*k, v);
    }
    let body = match reply.body {
        Some(v) => {
            resp = resp.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    resp.body(body).unwrap_or_else(|_| Response::new(Body::empty()))
}

/// One request as the routes see it.
struct Req<'a> {
    method: &'a Method,
    segments: &'a [&'a str],
    query: &'a str,
    body: &'a [u8],
    headers: &'a HeaderMap,
    host: &'a str,
    /// The `request-id` this answer carries.
    rid: &'a str,
    /// The caller's `client-request-id`.
    crid: Option<&'a str>,
    /// A Graph request with a live token.
    authorized: bool,
}

fn route(s: &mut SimState, req: &Req<'_>) -> Reply {
    let Req { method, segments: seg, query, body, headers, host, rid, crid, authorized } = *req;
    match (method, seg) {
        (&Method::POST, [tenant, "oauth2", "v2.0", "token"]) => token(s, tenant, body),
        (&Method::POST, ["_sim", "portal", id, "resetPasscode"]) => portal_reset(s, id, query),
        (&Method::GET, ["_github", "oidc"]) => github(query, headers),
        (&Method::GET, ["_sim", "requests"]) => Reply::new(StatusCode::OK, Some(json!(s.requests))),
        (_, [ver, "deviceManagement", collection, rest @ ..]) => {
            if !authorized {
                return graph_error(
                    StatusCode::UNAUTHORIZED,
                    "InvalidAuthenticationToken",
                    "Access token has expired or is not valid.",
                    rid,
                    crid,
                );
            }
            let beta = *ver == "beta";
            if beta && *collection == "remoteActionAudits" && rest.is_empty() && *method == Method::GET {
                if !s.admit(false) {
                    return throttled(s, rid, crid);
                }
                return audits(s, query, host, rid, crid);
            }
            let known = matches!(*ver, "v1.0" | "beta")
                && (*collection == "managedDevices" || (beta && *collection == "comanagedDevices"));
            if !known {
                return graph_error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!("Resource not found for the segment '{collection}'."),
                    rid,
                    crid,
                );
            }
            let write = *method == Method::POST;
            if !s.admit(write) {
                return throttled(s, rid, crid);
            }
            match (method, rest) {
                (&Method::GET, []) => list(s, query, host, ver, collection, rid, crid),
                (&Method::GET, [id]) => get_device(s, id, query, rid, crid),
                (&Method::POST, [id, "resetPasscode"]) => reset(s, id, rid, crid),
                _ => graph_error(StatusCode::BAD_REQUEST, "BadRequest", "No route matches.", rid, crid),
            }
        }
        _ => Reply::new(
            StatusCode::NOT_FOUND,
            Some(json!({"error": {"code": "NotFound", "message": "no such route in the simulator"}})),
        ),
    }
}

fn throttled(s: &SimState, rid: &str, crid: Option<&str>) -> Reply {
    let mut r =
        graph_error(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", &intune_message("Too many requests"), rid, crid);
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

fn token(s: &mut SimState, tenant: &str, body: &[u8]) -> Reply {
    let f = form(body);
    let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let refuse = |status: StatusCode, error: &str, desc: &str, cred: &str| {
        let mut r = Reply::new(
            status,
            Some(json!({"error": error, "error_description": format!("{desc}\r\nTrace ID: {}", uuid::Uuid::new_v4())})),
        );
        r.credential = Some(cred.to_owned());
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
    let token = s.mint_token_for(tenant, roles);
    let mut r = Reply::new(
        StatusCode::OK,
        Some(
            json!({"token_type": "Bearer", "expires_in": s.config.token_lifetime.as_secs(), "ext_expires_in": s.config.token_lifetime.as_secs(), "access_token": token}),
        ),
    );
    r.credential = Some(credential);
    r
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

fn github(query: &str, headers: &HeaderMap) -> Reply {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !auth.to_ascii_lowercase().starts_with("bearer ") {
        return Reply::new(StatusCode::UNAUTHORIZED, None);
    }
    let audience =
        form(query.as_bytes()).into_iter().find(|(k, _)| k == "audience").map(|(_, v)| v).unwrap_or_default();
    let mut r =
        Reply::new(StatusCode::OK, Some(json!({"value": format!("github-oidc-token-for-{audience}"), "count": 1})));
    r.credential = Some(format!("audience:{audience}"));
    r
}

fn parse_select(query: &str) -> Option<Vec<String>> {
    form(query.as_bytes())
        .into_iter()
        .find(|(k, _)| k == "$select")
        .map(|(_, v)| v.split(',').map(|s| s.trim().to_owned()).collect())
}

fn get_device(s: &mut SimState, id: &str, query: &str, rid: &str, crid: Option<&str>) -> Reply {
    match s.device_index(id) {
        Some(i) => Reply::new(StatusCode::OK, Some(s.render_device(i, parse_select(query).as_deref()))),
        None => {
            graph_error(StatusCode::NOT_FOUND, "ResourceNotFound", &intune_message("Resource not found"), rid, crid)
        }
    }
}

fn reset(s: &mut SimState, id: &str, rid: &str, crid: Option<&str>) -> Reply {
    let Some(i) = s.device_index(id) else {
        return graph_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            &intune_message("Resource not found"),
            rid,
            crid,
        );
    };
    let fault = s.take_fault(id);
    match fault {
        Some(FaultKind::UnavailableBefore) => {
            return graph_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                &intune_message("Service unavailable"),
                rid,
                crid,
            );
        }
        Some(FaultKind::Throttle) => return throttled(s, rid, crid),
        Some(FaultKind::Unauthorized) => {
            return graph_error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "Access token has expired or is not yet valid.",
                rid,
                crid,
            );
        }
        Some(FaultKind::HangBefore) => {
            let mut r = Reply::new(StatusCode::NO_CONTENT, None);
            r.hang = true;
            return r;
        }
        Some(FaultKind::Forbidden) => {
            return graph_error(StatusCode::FORBIDDEN, "UnknownError", &intune_message("Forbidden"), rid, crid);
        }
        Some(FaultKind::RequestTimeout) => {
            return graph_error(
                StatusCode::REQUEST_TIMEOUT,
                "RequestTimeout",
                "The request did not arrive in time.",
                rid,
                crid,
            );
        }
        _ => {}
    }
    if s.unsupported(i) {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &intune_message("The requested action is not supported on this platform"),
            rid,
            crid,
        );
    }
    s.apply_reset(i);
    let mut r = match fault {
        Some(FaultKind::ErrorAfter) => graph_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            &intune_message("An internal server error occurred"),
            rid,
            crid,
        ),
        Some(FaultKind::HangAfter) => {
            let mut r = Reply::new(StatusCode::NO_CONTENT, None);
            r.hang = true;
            r
        }
        Some(FaultKind::AnswerLate(after)) => {
            let mut r = Reply::new(StatusCode::NO_CONTENT, None);
            r.delay = after;
            r
        }
        _ => Reply::new(StatusCode::NO_CONTENT, None),
    };
    r.applied = true;
    r
}

/// A reset made in the Intune portal by a person (`?by=UPN`, `&ago=10m` for one made earlier):
/// it shows in the device's results and in the audit log with its initiator, like one the tool
/// did not make.
fn portal_reset(s: &mut SimState, id: &str, query: &str) -> Reply {
    let params = form(query.as_bytes());
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let by = get("by").unwrap_or_else(|| super::state::PORTAL_ADMIN.into());
    let ago = match get("ago").map(|a| super::state::ago(&a)) {
        None => jiff::SignedDuration::ZERO,
        Some(Ok(ago)) => ago,
        Some(Err(e)) => return Reply::new(StatusCode::BAD_REQUEST, Some(serde_json::json!({"error": e}))),
    };
    match s.device_index(id) {
        Some(i) => {
            let start = s.now() - ago;
            s.apply_reset_at(i, &by, start);
            let mut r = Reply::new(StatusCode::NO_CONTENT, None);
            r.applied = true;
            r
        }
        None => Reply::new(StatusCode::NOT_FOUND, None),
    }
}

/// `GET /beta/deviceManagement/remoteActionAudits`: `$filter=requestDateTime ge <RFC 3339>`
/// (optionally `and action eq 'resetPasscode'`), paged like the device list.
fn audits(s: &mut SimState, query: &str, host: &str, rid: &str, crid: Option<&str>) -> Reply {
    if !s.config.audits_readable {
        return graph_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &intune_message("Application is not authorized to perform this operation"),
            rid,
            crid,
        );
    }
    let params = form(query.as_bytes());
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut since = None;
    if let Some(f) = get("$filter") {
        for clause in f.split(" and ") {
            let clause = clause.trim();
            if let Some(t) = clause.strip_prefix("requestDateTime ge ") {
                match t.trim().parse::<jiff::Timestamp>() {
                    Ok(t) => since = Some(t),
                    Err(e) => {
                        return graph_error(
                            StatusCode::BAD_REQUEST,
                            "BadRequest",
                            &format!("Invalid date: {e}"),
                            rid,
                            crid,
                        );
                    }
                }
            } else if clause != "action eq 'resetPasscode'" {
                return graph_error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!("Unsupported filter '{clause}'"),
                    rid,
                    crid,
                );
            }
        }
    }
    let all = s.audits(since);
    let top = s.config.page_size;
    let skip = get("$skiptoken").and_then(|t| t.parse::<usize>().ok()).unwrap_or(0);
    let page: Vec<Value> = all.iter().skip(skip).take(top).cloned().collect();
    let mut body = json!({"value": page});
    if skip + top < all.len() {
        let mut next = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in params.iter().filter(|(k, _)| k != "$skiptoken") {
            next.append_pair(k, v);
        }
        next.append_pair("$skiptoken", &(skip + top).to_string());
        body["@odata.nextLink"] =
            json!(format!("http://{host}/beta/deviceManagement/remoteActionAudits?{}", next.finish()));
    }
    Reply::new(StatusCode::OK, Some(body))
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

fn list(
    s: &mut SimState,
    query: &str,
    host: &str,
    ver: &str,
    collection: &str,
    rid: &str,
    crid: Option<&str>,
) -> Reply {
    let params = form(query.as_bytes());
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let clauses = match get("$filter").map(|f| parse_filter(&f)).transpose() {
        Ok(c) => c.unwrap_or_default(),
        Err(e) => return graph_error(StatusCode::BAD_REQUEST, "BadRequest", &e, rid, crid),
    };
    let top =
        get("$top").and_then(|t| t.parse::<usize>().ok()).unwrap_or(s.config.page_size).clamp(1, s.config.page_size);
    let skip = get("$skiptoken").and_then(|t| t.parse::<usize>().ok()).unwrap_or(0);
    let select = parse_select(query);
    let matching = s.matching(&clauses);
    let page: Vec<Value> =
        matching.iter().skip(skip).take(top).map(|&i| s.render_device(i, select.as_deref())).collect();
    let mut body = json!({"@odata.context": format!("https://graph.microsoft.com/{ver}/$metadata#deviceManagement/{collection}"), "value": page});
    if get("$count").is_some_and(|c| c.eq_ignore_ascii_case("true")) {
        body["@odata.count"] = json!(matching.len());
    }
    if skip + top < matching.len() {
        let mut next = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in params.iter().filter(|(k, _)| k != "$skiptoken") {
            next.append_pair(k, v);
        }
        next.append_pair("$skiptoken", &(skip + top).to_string());
        body["@odata.nextLink"] = json!(format!("http://{host}/{ver}/deviceManagement/{collection}?{}", next.finish()));
    }
    Reply::new(StatusCode::OK, Some(body))
}

#[cfg(test)]
mod tests {
    use super::parse_filter;

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

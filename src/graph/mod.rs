//! Microsoft Graph: the HTTP client, authentication, pacing and error parsing.
//!
//! The client offers a handful of domain verbs ([`Graph::reset_passcode`],
//! [`Graph::device_action_results`], [`Graph::device`], [`Graph::find_devices`]) and classifies
//! every answer so the executor never has to read HTTP: above all, whether a POST may have taken
//! effect ([`SendResult`]).
//!
//! Device response bodies are never logged: they may carry a passcode. They are deserialized into
//! types that have no field for one.

pub mod auth;
pub mod cert;
pub mod endpoints;
pub mod error;
pub mod pacer;

use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Semaphore;
use uuid::Uuid;

pub use auth::{AccessToken, AuthError, Credential, TokenProvider};
pub use endpoints::Endpoints;
pub use error::GraphError;
pub use pacer::Pacer;

use crate::action::Collection;
use crate::settings::Budget;

/// Intune's documented read limit per app and tenant (2,000 per 20 s), used to pace GETs.
pub const READ_BUDGET: Budget = Budget { requests: 2_000, window: Duration::from_secs(20) };

/// How the client behaves.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub timeout: Duration,
    pub concurrency: u32,
    pub write_budget: Budget,
    pub read_budget: Budget,
}

/// What became of one POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendResult {
    /// 204: Intune took the request.
    Accepted(Answer),
    /// A 4xx other than 401/429: Graph refused it; it did not run.
    Rejected(Answer, GraphError),
    /// 429: not executed; may be retried after the delay (the server's `Retry-After` if any).
    Throttled(Answer, Option<Duration>, GraphError),
    /// 401: not executed; retry once with a new token.
    Unauthorized(Answer, GraphError),
    /// The request may have reached Graph but no usable answer came (5xx, timeout, broken
    /// connection): never re-send blindly.
    Unknown(Option<Answer>, String),
    /// The request was certainly not sent (no connection could be made).
    NotSent(String),
}

/// Correlation data of an answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Answer {
    pub status: u16,
    pub request_id: Option<String>,
    pub date: Option<String>,
}

/// One entry of a device's `deviceActionResults`. Deliberately without `passcode`/`unlockPin`:
/// serde skips them, so they never reach our memory beyond the response bytes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionResult {
    pub action_name: String,
    pub action_state: String,
    pub start_date_time: Option<jiff::Timestamp>,
    pub last_updated_date_time: Option<jiff::Timestamp>,
}

/// The device fields plans show and eligibility needs; never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub id: String,
    #[serde(default)]
    pub device_name: Option<String>,
    #[serde(default)]
    pub serial_number: Option<String>,
    #[serde(default)]
    pub operating_system: Option<String>,
    #[serde(default)]
    pub os_version: Option<String>,
    #[serde(default)]
    pub managed_device_owner_type: Option<String>,
    #[serde(default)]
    pub device_enrollment_type: Option<String>,
    #[serde(default)]
    pub management_state: Option<String>,
    #[serde(default)]
    pub last_sync_date_time: Option<String>,
}

/// The `$select` for [`Device`].
pub const DEVICE_SELECT: &str = "id,deviceName,serialNumber,operatingSystem,osVersion,managedDeviceOwnerType,deviceEnrollmentType,managementState,lastSyncDateTime";

/// A failed read (GET).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Graph(GraphError),
    #[error("{0}")]
    Transport(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("unexpected answer from Graph: {0}")]
    Decode(String),
}

/// The Graph client of one run.
#[derive(Debug)]
pub struct Graph {
    http: reqwest::Client,
    endpoints: Endpoints,
    tokens: TokenProvider,
    writes: Pacer,
    reads: Pacer,
    in_flight: Semaphore,
}

/// Every cause of a reqwest error, joined (reqwest's Display alone hides the useful part).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = c.source();
    }
    parts.join(": ")
}

/// The HTTP client every request of a run goes through.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("intune-reconcile/", env!("CARGO_PKG_VERSION")))
        // A redirected POST would be a second send, to an address nobody checked.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("the TLS backend initializes")
}

enum Kind {
    Read,
    Write,
}

impl Graph {
    pub fn new(endpoints: Endpoints, credential: Credential, opts: &ClientOptions) -> Self {
        let http = http_client(opts.timeout);
        let tokens = TokenProvider::new(http.clone(), credential, &endpoints);
        Graph {
            http,
            endpoints,
            tokens,
            writes: Pacer::new(opts.write_budget.requests, opts.write_budget.window),
            reads: Pacer::new(opts.read_budget.requests, opts.read_budget.window),
            in_flight: Semaphore::new(opts.concurrency.max(1) as usize),
        }
    }

    pub fn tokens(&self) -> &TokenProvider {
        &self.tokens
    }

    pub fn writes(&self) -> &Pacer {
        &self.writes
    }

    /// Waits for the right to send one POST now: a concurrency permit and a paced slot, with a
    /// valid token. The executor records its intent only once it holds a slot, so a crash while
    /// waiting leaves nothing `unknown`.
    pub async fn write_slot(&self) -> Result<WriteSlot<'_>, AuthError> {
        let permit = self.in_flight.acquire().await.expect("the semaphore is never closed");
        self.writes.acquire().await;
        // The token last, so it is fresh when the request leaves.
        let token = self.tokens.token().await?;
        Ok(WriteSlot { _permit: permit, token })
    }

    /// Sends one read: a concurrency permit, then a paced slot, then the request.
    async fn send_read(&self, url: &str) -> Result<reqwest::Response, SendError> {
        let _permit = self.in_flight.acquire().await.expect("the semaphore is never closed");
        self.reads.acquire().await;
        let token = self.tokens.token().await.map_err(SendError::Auth)?;
        self.request(Kind::Read, reqwest::Method::GET, url, Uuid::new_v4(), &token).await
    }

    async fn request(
        &self,
        kind: Kind,
        method: reqwest::Method,
        url: &str,
        client_request_id: Uuid,
        token: &AccessToken,
    ) -> Result<reqwest::Response, SendError> {
        let req = self
            .http
            .request(method, url)
            .header("Authorization", token.bearer())
            .header("Accept", "application/json")
            .header("client-request-id", client_request_id.to_string());
        let req = match kind {
            Kind::Write => req.header("Content-Length", "0"),
            Kind::Read => req,
        };
        req.send().await.map_err(SendError::Http)
    }

    /// `POST …/{collection}/{id}/resetPasscode`, once, in `slot`. Never retried here: the caller
    /// records an intent for every attempt.
    pub async fn reset_passcode(
        &self,
        slot: WriteSlot<'_>,
        collection: Collection,
        device_id: &str,
        client_request_id: Uuid,
    ) -> SendResult {
        let url =
            self.endpoints.device_management(&format!("{}/{}/resetPasscode", collection.as_str(), enc(device_id)));
        let sent = self.request(Kind::Write, reqwest::Method::POST, &url, client_request_id, &slot.token).await;
        let resp = match sent {
            Ok(r) => r,
            Err(SendError::Auth(e)) => return SendResult::NotSent(format!("no token: {e}")),
            // No connection could be made: the request never left.
            Err(SendError::Http(e)) if e.is_connect() => return SendResult::NotSent(error_chain(&e)),
            Err(SendError::Http(e)) if e.is_timeout() => {
                return SendResult::Unknown(None, format!("no answer within the timeout: {}", error_chain(&e)));
            }
            Err(SendError::Http(e)) => return SendResult::Unknown(None, error_chain(&e)),
        };
        let answer = answer_of(&resp);
        let status = answer.status;
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| error::retry_after(v, jiff::Timestamp::now()));
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) if (200..300).contains(&status) => {
                // The status line arrived: Intune took it.
                tracing::debug!(error = %error_chain(&e), "body of a 2xx answer was cut off");
                return SendResult::Accepted(answer);
            }
            Err(e) => return SendResult::Unknown(Some(answer), format!("answer cut off: {}", error_chain(&e))),
        };
        match status {
            200..=299 => {
                self.writes.succeeded().await;
                SendResult::Accepted(answer)
            }
            429 => {
                let err = error::parse(status, answer.request_id.clone(), &body);
                SendResult::Throttled(answer, retry_after, err)
            }
            401 => {
                let err = error::parse(status, answer.request_id.clone(), &body);
                SendResult::Unauthorized(answer, err)
            }
            400..=499 => {
                let err = error::parse(status, answer.request_id.clone(), &body);
                SendResult::Rejected(answer, err)
            }
            _ => {
                let err = error::parse(status, answer.request_id.clone(), &body);
                SendResult::Unknown(Some(answer), err.to_string())
            }
        }
    }

    /// GET with a token retry after a 401 and waits after 429s (reads are safe to repeat).
    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<Option<T>, ReadError> {
        let mut throttled = 0;
        let mut reauthed = false;
        loop {
            let resp = match self.send_read(url).await {
                Ok(r) => r,
                Err(SendError::Auth(e)) => return Err(ReadError::Auth(e)),
                Err(SendError::Http(e)) => return Err(ReadError::Transport(error_chain(&e))),
            };
            let answer = answer_of(&resp);
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| error::retry_after(v, jiff::Timestamp::now()));
            let status = answer.status;
            let body = resp.bytes().await.map_err(|e| ReadError::Transport(error_chain(&e)))?;
            match status {
                200..=299 => {
                    self.reads.succeeded().await;
                    // Never log `body`: a device may carry a passcode.
                    return serde_json::from_slice(&body).map(Some).map_err(|e| ReadError::Decode(e.to_string()));
                }
                404 => return Ok(None),
                401 if !reauthed && self.tokens.invalidate_all().await => reauthed = true,
                429 if throttled < 8 => {
                    throttled += 1;
                    let delay = retry_after.unwrap_or(Duration::from_secs(1 << throttled.min(6)));
                    self.reads.throttled(delay).await;
                }
                _ => return Err(ReadError::Graph(error::parse(status, answer.request_id, &body))),
            }
        }
    }

    /// A device's `deviceActionResults`; `None` when the device does not exist (404).
    pub async fn device_action_results(
        &self,
        collection: Collection,
        id: &str,
    ) -> Result<Option<Vec<ActionResult>>, ReadError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct WithResults {
            #[serde(default)]
            device_action_results: Vec<ActionResult>,
        }
        let url = self.endpoints.device_management(&format!(
            "{}/{}?$select=id,deviceActionResults",
            collection.as_str(),
            enc(id)
        ));
        Ok(self.get_json::<WithResults>(&url).await?.map(|d| d.device_action_results))
    }

    /// A device by id; `None` when it does not exist.
    pub async fn device(&self, collection: Collection, id: &str) -> Result<Option<Device>, ReadError> {
        let url =
            self.endpoints.device_management(&format!("{}/{}?$select={DEVICE_SELECT}", collection.as_str(), enc(id)));
        self.get_json(&url).await
    }

    /// Every device whose `property` equals `value` (`$filter=property eq 'value'`), following
    /// `@odata.nextLink`. The value is OData-escaped and percent-encoded, so it can never change
    /// the query.
    pub async fn find_devices(
        &self,
        collection: Collection,
        property: &str,
        value: &str,
    ) -> Result<Vec<Device>, ReadError> {
        #[derive(Deserialize)]
        struct Page {
            value: Vec<Device>,
            #[serde(rename = "@odata.nextLink")]
            next: Option<String>,
        }
        let filter = format!("{property} eq '{}'", value.replace('\'', "''"));
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("$filter", &filter)
            .append_pair("$select", DEVICE_SELECT)
            .finish();
        let mut url = self.endpoints.device_management(&format!("{}?{query}", collection.as_str()));
        let mut found = Vec::new();
        for _ in 0..1_000 {
            let Some(page) = self.get_json::<Page>(&url).await? else {
                return Err(ReadError::Decode(format!("{} listing answered 404", collection.as_str())));
            };
            found.extend(page.value);
            match page.next {
                // The bearer token goes wherever nextLink points: only ever to the Graph root. A
                // link to the cloud's own root (behind a proxy or override) is taken through ours.
                Some(next) => {
                    url = self
                        .endpoints
                        .follow(&next)
                        .ok_or_else(|| ReadError::Decode(format!("@odata.nextLink leaves the Graph root: {next}")))?
                }
                None => return Ok(found),
            }
        }
        Err(ReadError::Decode("more than 1,000 pages of devices".into()))
    }
}

enum SendError {
    Auth(AuthError),
    Http(reqwest::Error),
}

/// The right to send one POST now (see [`Graph::write_slot`]).
#[derive(Debug)]
pub struct WriteSlot<'a> {
    _permit: tokio::sync::SemaphorePermit<'a>,
    token: AccessToken,
}

fn answer_of(resp: &reqwest::Response) -> Answer {
    let h = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    Answer { status: resp.status().as_u16(), request_id: h("request-id"), date: h("date") }
}

/// Percent-encodes one path segment.
fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20")
}

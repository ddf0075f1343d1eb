//! Microsoft Graph: the HTTP client, authentication, pacing and error parsing.
//!
//! The client offers a handful of domain verbs ([`Graph::send_action`],
//! [`Graph::device_action_results`], [`Graph::device`], [`Graph::find_devices`]) and classifies
//! every answer so the executor never has to read HTTP: above all, whether a POST may have taken
//! effect ([`SendResult`]).
//!
//! Device response bodies are never logged: they may carry a passcode. They are deserialized into
//! types that have no field for one.

pub(crate) mod auth;
pub(crate) mod cert;
pub(crate) mod clock;
pub(crate) mod discovery;
pub(crate) mod endpoints;
pub(crate) mod error;
pub(crate) mod pacer;

use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::Deserialize;
use tokio::sync::Semaphore;
use uuid::Uuid;

pub use auth::AccessToken;
pub(crate) use auth::AuthError;
pub use auth::{Credential, TokenProvider};
pub(crate) use clock::ServerClock;
pub use endpoints::{ApiVersion, Endpoints};
pub(crate) use error::GraphError;
pub use pacer::Budget;
pub(crate) use pacer::Pacer;

use crate::core::action::{ActionKind, Collection, Parameters};
pub(crate) use crate::core::device::{ActionResult, DEVICE_SELECT, DEVICE_SELECT_WITH_USER, Device, RemoteActionAudit};
use crate::http::BodyError;

/// How the client behaves.
#[derive(Debug, Clone)]
pub(crate) struct ClientOptions {
    pub timeout: Duration,
    pub concurrency: u32,
    pub write_budget: Budget,
    pub read_budget: Budget,
    /// When and how often a read is tried again ([`crate::core::retry`]).
    pub retry: crate::core::retry::Policy,
    /// Read each device's primary user too (`plan.showUser`); otherwise it is never asked for.
    pub device_user: bool,
}

/// Multi Admin Approval (docs/graph-facts.md): the header every write carries, unless it carries
/// an approval code.
pub(crate) const JUSTIFICATION_HEADER: &str = "x-msft-approval-justification";
/// The header that names an approved request (in a 403, the request just made).
pub(crate) const CODE_HEADER: &str = "x-msft-approval-code";

/// What a write says to Multi Admin Approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Approval {
    /// A new request: why, Base64 of a short line.
    Justification(String),
    /// The re-send of an approved request: its code.
    Code(String),
}

impl Approval {
    /// The header and its value.
    pub(crate) fn header(&self) -> (&'static str, &str) {
        match self {
            Approval::Justification(b) => (JUSTIFICATION_HEADER, b),
            Approval::Code(c) => (CODE_HEADER, c),
        }
    }
}

/// What a device action carries besides its body: its `client-request-id`, and what it says to
/// Multi Admin Approval (docs/graph-facts.md, "Multi Admin Approval").
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriteHeaders<'a> {
    pub client_request_id: Uuid,
    pub approval: &'a Approval,
}

/// What became of one POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SendResult {
    /// 204: Intune took the request.
    Accepted(Answer),
    /// A 4xx other than 401/429: Graph refused it; it did not run.
    Rejected(Answer, GraphError),
    /// 429: not executed; may be retried after the delay (the server's `Retry-After` if any).
    Throttled(Answer, Option<Duration>, GraphError),
    /// 401: not executed; retry with a new token.
    Unauthorized(Answer, GraphError),
    /// 408: Graph did not receive the whole request in time; not executed, may be retried.
    RequestTimeout(Answer, GraphError),
    /// The request may have reached Graph but no usable answer came (timeout, broken
    /// connection): never re-send blindly.
    Unknown(Option<Answer>, String),
    /// A 5xx: Graph answered, but whether the action ran is unknown; never re-send blindly.
    ServerError(Answer, GraphError),
    /// The request was certainly not sent: no connection could be made.
    NotSent(String),
    /// The request was held back, never sent: a 429's pause began while it was about to leave.
    HeldBack,
    /// Multi Admin Approval held it (403 `ApprovalRequired`, or a refusal naming the approval
    /// header with a code): not executed; the approval request has this code.
    ApprovalRequired(Answer, GraphError, String),
}

/// Correlation data of an answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Answer {
    pub status: u16,
    pub request_id: Option<String>,
    /// The `Date` header: Intune's clock when it answered.
    pub date: Option<Timestamp>,
    /// The earliest Intune's clock can have read when the request reached it, from this
    /// answer's `Date` less the round trip.
    pub server_sent_at: Option<Timestamp>,
}

/// A Multi Admin Approval request as Graph lists it (beta `operationApprovalRequest`): only what
/// the tool keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApprovalRequest {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub expiration_date_time: Option<Timestamp>,
    /// Who approved or rejected it.
    #[serde(default)]
    pub approver: Option<Identity>,
    /// Their justification.
    #[serde(default)]
    pub approval_justification: Option<String>,
}

/// An `identitySet`'s user, as much as is shown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Identity {
    #[serde(default)]
    pub user: Option<IdentityUser>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IdentityUser {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub user_principal_name: Option<String>,
}

/// A device's results as read, with Intune's clock at the time of reading.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct DeviceResults {
    /// `None`: the device does not exist (404).
    pub results: Option<Vec<ActionResult>>,
    /// The device's `managementState` (`wipePending`, …), when it exists and says one.
    pub management_state: Option<String>,
    /// The `Date` of the answer.
    pub server_date: Option<Timestamp>,
}

/// What the audit log said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Audits {
    /// Every entry of a known kind of action ([`crate::core::kinds`]) since the time asked for.
    Read(Vec<RemoteActionAudit>),
    /// The token may not read it (or the tenant has no beta API): why, for the evidence note.
    Unreadable(String),
}

/// Devices per page of a listing (Graph's most).
pub(crate) const LIST_PAGE: usize = 1_000;

/// The longest Graph answer read: 16 MiB. The largest legitimate one is a page of
/// [`LIST_PAGE`] devices with the fields of [`DEVICE_SELECT`] (under 1 KiB a device, plus about
/// 200 bytes for each of its `deviceActionResults`: a few MiB), or a page of the audit log
/// (smaller); 16 MiB leaves room for devices with long histories. A longer answer is refused,
/// never buffered whole.
/// An action's 2xx answer is accepted whatever its length: only its status counts.
pub(crate) const GRAPH_ANSWER_CAP: usize = 16 * crate::http::MIB;

/// A failed read (GET).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("{0}")]
    Graph(GraphError),
    #[error("{0}")]
    Transport(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("unexpected answer from Graph: {0}")]
    Decode(String),
    /// An answer longer than [`GRAPH_ANSWER_CAP`]: refused, never retried.
    #[error("{0}")]
    TooLarge(crate::http::TooLarge),
}

/// The Graph client of one run.
#[derive(Debug)]
pub(crate) struct Graph {
    http: reqwest::Client,
    endpoints: Endpoints,
    tokens: TokenProvider,
    writes: Pacer,
    reads: Pacer,
    in_flight: Semaphore,
    /// Reads may use all but one of the permits: a write due never waits behind reads.
    reads_in_flight: Semaphore,
    read_concurrency: usize,
    clock: ServerClock,
    retry: crate::core::retry::Policy,
    /// The `$select` of device reads.
    device_select: &'static str,
}

/// Every cause of a reqwest error, joined (reqwest's Display alone hides the useful part).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
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
        // reqwest would re-send a request itself after an HTTP/2 GOAWAY or REFUSED_STREAM, below
        // the ledger and with the same client-request-id: every retry is the executor's, with an
        // intent of its own.
        .retry(reqwest::retry::never())
        // `http://localhost` is accepted as loopback (see `endpoints::checked`): the name is pinned
        // to the loopback addresses here, whatever the machine's resolver would say.
        .resolve_to_addrs("localhost", &endpoints::LOCALHOST)
        .build()
        .expect("the TLS backend initializes")
}

enum RequestKind {
    Read,
    /// A POST with this JSON body, or none (`Content-Length: 0`).
    Write(Option<Vec<u8>>),
}

impl Graph {
    pub(crate) fn new(endpoints: Endpoints, credential: Credential, opts: &ClientOptions) -> Self {
        let http = http_client(opts.timeout);
        let tokens = TokenProvider::new(http.clone(), credential, &endpoints);
        Graph {
            http,
            endpoints,
            tokens,
            writes: Pacer::new(opts.write_budget.requests, opts.write_budget.window),
            reads: Pacer::new(opts.read_budget.requests, opts.read_budget.window),
            in_flight: Semaphore::new(opts.concurrency.max(1) as usize),
            reads_in_flight: Semaphore::new(opts.concurrency.saturating_sub(1).max(1) as usize),
            read_concurrency: opts.concurrency.saturating_sub(1).max(1) as usize,
            clock: ServerClock::default(),
            retry: opts.retry,
            device_select: if opts.device_user { DEVICE_SELECT_WITH_USER } else { DEVICE_SELECT },
        }
    }

    /// The earliest Intune's clock can read now (see [`clock`]); `None` before any answer.
    pub(crate) fn server_time_lower_bound(&self) -> Option<Timestamp> {
        self.clock.lower_bound(Instant::now())
    }

    pub(crate) fn tokens(&self) -> &TokenProvider {
        &self.tokens
    }

    pub(crate) fn writes(&self) -> &Pacer {
        &self.writes
    }

    /// Waits for the right to send one POST: a turn at the write pace and a concurrency permit,
    /// with a valid token. The executor records its intent only once it holds a slot, so a crash
    /// while waiting leaves nothing `unknown`; the request then leaves when the departure log
    /// allows ([`Graph::reset_passcode`]), a few milliseconds at most once the turns are even.
    pub(crate) async fn write_slot(&self) -> Result<WriteSlot<'_>, AuthError> {
        // The turn first: a task waiting for it holds no permit, so waiting writes never keep
        // reads (or other writes) from being in flight.
        self.writes.acquire().await;
        let permit = self.in_flight.acquire().await.expect("the semaphore is never closed");
        // The token last, so it is fresh when the request leaves.
        let token = self.tokens.token().await?;
        Ok(WriteSlot { _permit: permit, token })
    }

    /// Sends one read: a turn at the read pace, then a concurrency permit, then the request when
    /// the departure log allows. Returns the token used, for a 401.
    async fn send_read(&self, url: &str) -> Result<(reqwest::Response, AccessToken), SendError> {
        loop {
            self.reads.acquire().await;
            let _read = self.reads_in_flight.acquire().await.expect("the semaphore is never closed");
            let _permit = self.in_flight.acquire().await.expect("the semaphore is never closed");
            let token = self.tokens.token().await.map_err(SendError::Auth)?;
            // A 429's pause began while this one waited for its permits: a new turn after it.
            if !self.reads.depart().await {
                continue;
            }
            let resp = self.request(RequestKind::Read, reqwest::Method::GET, url, Uuid::new_v4(), &token, None).await?;
            return Ok((resp, token));
        }
    }

    async fn request(
        &self,
        kind: RequestKind,
        method: reqwest::Method,
        url: &str,
        client_request_id: Uuid,
        token: &AccessToken,
        approval: Option<&Approval>,
    ) -> Result<reqwest::Response, SendError> {
        let mut req = self
            .http
            .request(method, url)
            .header("Authorization", token.bearer())
            .header("Accept", "application/json")
            .header("client-request-id", client_request_id.to_string());
        if let Some((name, value)) = approval.map(Approval::header) {
            req = req.header(name, value);
        }
        let req = match kind {
            RequestKind::Write(None) => req.header("Content-Length", "0"),
            RequestKind::Write(Some(body)) => req.header("Content-Type", "application/json").body(body),
            RequestKind::Read => req,
        };
        let resp = req.send().await.map_err(SendError::Http)?;
        if let Some(date) = resp.headers().get("date").and_then(|v| v.to_str().ok()).and_then(clock::http_date) {
            self.clock.observe(date, Instant::now());
        }
        Ok(resp)
    }

    /// `POST …/{collection}/{id}/{action}` with the body the `kind` of action takes, once, in
    /// `slot`. Never retried here: the caller records an intent for every attempt.
    pub(crate) async fn send_action(
        &self,
        kind: ActionKind,
        parameters: &Parameters,
        slot: WriteSlot<'_>,
        collection: Collection,
        device_id: &str,
        headers: WriteHeaders<'_>,
    ) -> SendResult {
        let WriteHeaders { client_request_id, approval } = headers;
        let spec = kind.spec();
        let url = self.endpoints.device_management(&format!(
            "{}/{}/{}",
            collection.as_str(),
            endpoints::path_segment(device_id),
            spec.graph_name
        ));
        let request = RequestKind::Write(spec.body(parameters));
        // Counted as it leaves, after its intent was written (docs/graph-facts.md, "How the pacer
        // stays under it"). A 429 answered to another request meanwhile: the pause holds for
        // this one too.
        if !self.writes.depart().await {
            return SendResult::HeldBack;
        }
        let sent_at = Instant::now();
        let sent =
            self.request(request, reqwest::Method::POST, &url, client_request_id, &slot.token, Some(approval)).await;
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
        let answer = answer_of(&resp, Some(sent_at));
        let status = answer.status;
        let retry_after = retry_after_of(&resp, &answer);
        let approval_code = resp.headers().get(CODE_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        // At most the cap is read, whatever the status: a 2xx's body is never used, and an
        // error's is only a message.
        let body = match crate::http::read_capped(resp, GRAPH_ANSWER_CAP).await {
            Ok(b) => Ok(b),
            Err(BodyError::TooLarge(e)) => Err(e),
            Err(BodyError::Read(e)) if (200..300).contains(&status) => {
                // The status line arrived: Intune took it.
                tracing::debug!(error = %error_chain(&e), "body of a 2xx answer was cut off");
                return SendResult::Accepted(answer);
            }
            Err(BodyError::Read(e)) => {
                return SendResult::Unknown(Some(answer), format!("answer cut off: {}", error_chain(&e)));
            }
        };
        if (200..300).contains(&status) {
            // Accepted whatever its body: an action Intune took must never turn into an error.
            if let Err(e) = &body {
                tracing::debug!(error = %e, "body of a 2xx answer ignored");
            }
            return SendResult::Accepted(answer);
        }
        // The status decides; an answer too long to read still says what its status says, with
        // the refusal as its message instead of Graph's.
        let err = match &body {
            Ok(b) => error::parse(status, answer.request_id.clone(), b),
            Err(e) => {
                GraphError { status, code: None, message: Some(e.to_string()), request_id: answer.request_id.clone() }
            }
        };
        if let Some(code) = error::approval_code(status, &err, approval_code) {
            return SendResult::ApprovalRequired(answer, err, code);
        }
        match status {
            429 => SendResult::Throttled(answer, retry_after, err),
            401 => SendResult::Unauthorized(answer, err),
            408 => SendResult::RequestTimeout(answer, err),
            400..=499 => SendResult::Rejected(answer, err),
            _ => SendResult::ServerError(answer, err),
        }
    }

    /// GET, tried again as [`crate::core::retry`] decides: a token renewal after a 401, waits after
    /// 429s, a short pause when it could not be sent or met a 408/5xx (reads are safe to repeat).
    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<Option<T>, ReadError> {
        Ok(self.get_json_dated(url).await?.0)
    }

    /// [`get_json`](Self::get_json), with the answer's `Date`.
    async fn get_json_dated<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> Result<(Option<T>, Option<Timestamp>), ReadError> {
        use crate::core::retry::{Next, Outcome, decide, log_capped};
        let mut history = crate::core::retry::History::default();
        loop {
            let (resp, token) = match self.send_read(url).await {
                Ok(r) => r,
                Err(SendError::Auth(e)) => return Err(ReadError::Auth(e)),
                Err(SendError::Http(e)) => match decide(Outcome::NotSent, history, &self.retry) {
                    Next::RetryAfter(pause) => {
                        history = history.after(Outcome::NotSent);
                        tracing::debug!(error = %error_chain(&e), "read failed; trying again");
                        tokio::time::sleep(pause).await;
                        continue;
                    }
                    _ => return Err(ReadError::Transport(error_chain(&e))),
                },
            };
            let answer = answer_of(&resp, None);
            let retry_after = retry_after_of(&resp, &answer);
            let status = answer.status;
            let body = crate::http::read_capped(resp, GRAPH_ANSWER_CAP).await.map_err(|e| match e {
                BodyError::TooLarge(e) => ReadError::TooLarge(e),
                BodyError::Read(e) => ReadError::Transport(error_chain(&e)),
            })?;
            let outcome = match status {
                200..=299 => {
                    // Never log `body`: a device may carry a passcode.
                    let value = serde_json::from_slice(&body).map_err(|e| ReadError::Decode(e.to_string()))?;
                    return Ok((Some(value), answer.date));
                }
                404 => return Ok((None, answer.date)),
                401 => Outcome::Unauthorized,
                429 => Outcome::Throttled(retry_after),
                // A read is safe to repeat: a server error or timeout is tried again like one
                // that could not be sent (a write's 5xx is never repeated).
                408 | 500 | 502 | 503 | 504 => Outcome::NotSent,
                _ => Outcome::Final,
            };
            let again = match crate::core::retry::jitter(decide(outcome, history, &self.retry), outcome) {
                Next::Reauthenticate => self.tokens.invalidate(&token).await,
                Next::RetryAfter(delay) => {
                    log_capped(retry_after, &self.retry);
                    self.reads.throttled(delay).await;
                    true
                }
                Next::Done | Next::GiveUp => false,
            };
            if !again {
                return Err(ReadError::Graph(error::parse(status, answer.request_id, &body)));
            }
            history = history.after(outcome);
        }
    }

    /// A device's `deviceActionResults` (`None` when the device does not exist, 404) and
    /// `managementState`, with the answer's `Date`.
    pub(crate) async fn device_action_results(
        &self,
        collection: Collection,
        id: &str,
    ) -> Result<DeviceResults, ReadError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct WithResults {
            #[serde(default, deserialize_with = "crate::core::device::null_as_empty")]
            device_action_results: Vec<ActionResult>,
            #[serde(default)]
            management_state: Option<String>,
        }
        let url = self.endpoints.device_management(&format!(
            "{}/{}?$select=id,managementState,deviceActionResults",
            collection.as_str(),
            endpoints::path_segment(id)
        ));
        let (found, server_date) = self.get_json_dated::<WithResults>(&url).await?;
        let (results, management_state) = match found {
            Some(d) => (Some(d.device_action_results), d.management_state),
            None => (None, None),
        };
        Ok(DeviceResults { results, management_state, server_date })
    }

    /// The entries of the beta audit log `remoteActionAudits` logged under the `remoteAction`
    /// names `names` ([`crate::core::kinds::audit_names`]) and requested at or after `since`
    /// (both filtered by Graph, one read of every page per name), of a known kind of action
    /// ([`crate::core::kinds::is_known`]). No name, no read: a kind the audit log does not
    /// record (a sync) is never looked for there. A token that may not read it, or a tenant
    /// without it, gives [`Audits::Unreadable`]: the audit log is evidence where it can be had,
    /// never a requirement.
    pub(crate) async fn action_audits(&self, since: Timestamp, names: &[&str]) -> Result<Audits, ReadError> {
        let mut all = Vec::new();
        for name in names {
            // Enum names are plain identifiers; quoted as OData quotes, all the same.
            let filter = format!(
                "requestDateTime ge {} and action eq '{}'",
                since.strftime("%Y-%m-%dT%H:%M:%SZ"),
                name.replace('\'', "''")
            );
            let query: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("$filter", &filter)
                .append_pair(
                    "$select",
                    "id,action,actionState,managedDeviceId,requestDateTime,initiatedByUserPrincipalName",
                )
                .finish();
            let url = self.endpoints.beta_device_management(&format!("remoteActionAudits?{query}"));
            match self.get_pages::<RemoteActionAudit>(url, "remoteActionAudits").await {
                Ok(page) => all.extend(page),
                Err(ReadError::Graph(e)) if matches!(e.status, 400 | 403 | 404) => {
                    return Ok(Audits::Unreadable(format!("the audit log could not be read ({e})")));
                }
                Err(e) => return Err(e),
            }
        }
        all.retain(|a| a.action.as_deref().is_some_and(crate::core::kinds::is_known));
        Ok(Audits::Read(all))
    }

    /// The Multi Admin Approval request `code` names (beta `operationApprovalRequests`, filtered
    /// by `requestId`); `None` when Graph lists none.
    pub(crate) async fn approval_request(&self, code: &str) -> Result<Option<ApprovalRequest>, ReadError> {
        let filter = format!("requestId eq '{}'", code.replace('\'', "''"));
        let query: String =
            url::form_urlencoded::Serializer::new(String::new()).append_pair("$filter", &filter).finish();
        let url = self.endpoints.beta_device_management(&format!("operationApprovalRequests?{query}"));
        let found: Vec<ApprovalRequest> = self.get_pages(url, "operationApprovalRequests").await?;
        Ok(found.into_iter().next())
    }

    /// One cheap read (`managedDevices?$top=1&$select=id`): whether Graph answers this token's
    /// reads. Returns how many devices the page held (0 or 1).
    pub(crate) async fn probe(&self) -> Result<usize, ReadError> {
        #[derive(Deserialize)]
        struct Page {
            value: Vec<serde::de::IgnoredAny>,
        }
        let url = self.endpoints.device_management("managedDevices?$top=1&$select=id");
        match self.get_json::<Page>(&url).await? {
            Some(page) => Ok(page.value.len()),
            None => Err(ReadError::Decode("managedDevices answered 404".into())),
        }
    }

    /// A device by id; `None` when it does not exist.
    pub(crate) async fn device(&self, collection: Collection, id: &str) -> Result<Option<Device>, ReadError> {
        let url = self.endpoints.device_management(&format!(
            "{}/{}?$select={}",
            collection.as_str(),
            endpoints::path_segment(id),
            self.device_select
        ));
        self.get_json(&url).await
    }

    /// Every device whose `property` equals `value` (`$filter=property eq 'value'`), following
    /// `@odata.nextLink`. The value is OData-escaped and percent-encoded, so it can never change
    /// the query.
    pub(crate) async fn find_devices(
        &self,
        collection: Collection,
        property: &str,
        value: &str,
    ) -> Result<Vec<Device>, ReadError> {
        let filter = format!("{property} eq '{}'", value.replace('\'', "''"));
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("$filter", &filter)
            .append_pair("$select", self.device_select)
            .finish();
        let url = self.endpoints.device_management(&format!("{}?{query}", collection.as_str()));
        self.get_pages(url, collection.as_str()).await
    }

    /// Every device of `collection`, listed a page of 1,000 at a time, when that beats `lookups`
    /// GETs of one device each: fewer reads, and no longer (the pages come one after the other,
    /// the lookups side by side). The first page says how many devices there are
    /// (`@odata.count`) and how long a page takes; `None`, after that one read, when listing
    /// does not pay (or Graph does not say).
    pub(crate) async fn list_devices(
        &self,
        collection: Collection,
        lookups: usize,
    ) -> Result<Option<Vec<Device>>, ReadError> {
        #[derive(Deserialize)]
        struct Page {
            value: Vec<Device>,
            #[serde(rename = "@odata.nextLink")]
            next: Option<String>,
            #[serde(rename = "@odata.count")]
            count: Option<u64>,
        }
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("$select", self.device_select)
            .append_pair("$top", &LIST_PAGE.to_string())
            .append_pair("$count", "true")
            .finish();
        let mut url = self.endpoints.device_management(&format!("{}?{query}", collection.as_str()));
        let mut found = Vec::new();
        let mut read = 0;
        let mut max_pages = 1;
        let started = Instant::now();
        loop {
            let Some(page) = self.get_json::<Page>(&url).await? else {
                return Err(ReadError::Decode(format!("{} listing answered 404", collection.as_str())));
            };
            if read == 0 {
                let pages = page.count.map(|n| (n as usize).div_ceil(LIST_PAGE));
                let page_took = started.elapsed();
                // One after the other, against side by side at the read pace.
                let listing = page_took * pages.unwrap_or(usize::MAX).saturating_sub(1).min(u32::MAX as usize) as u32;
                let each = self.reads.interval().max(page_took / self.read_concurrency.max(1) as u32);
                let one_by_one = each * lookups.saturating_sub(1).min(u32::MAX as usize) as u32;
                let pays = page.next.is_none() || pages.is_some_and(|p| p < lookups && listing <= one_by_one);
                tracing::debug!(
                    devices = page.count,
                    pages,
                    lookups,
                    listing_ms = listing.as_millis() as u64,
                    lookups_ms = one_by_one.as_millis() as u64,
                    "{}",
                    if pays { "listing the tenant's devices" } else { "one GET per device: listing would not pay" }
                );
                max_pages = pages.unwrap_or(1);
                if !pays {
                    return Ok(None);
                }
            }
            found.extend(page.value);
            match page.next {
                Some(next) if read + 1 < max_pages.max(1) => {
                    url = self
                        .endpoints
                        .follow(&next)
                        .ok_or_else(|| ReadError::Decode(format!("@odata.nextLink leaves the Graph root: {next}")))?
                }
                // More pages than Graph said: the listing is no cheaper than the lookups.
                Some(_) => return Ok(None),
                None => return Ok(Some(found)),
            }
            read += 1;
        }
    }

    /// Every item of a listing, following `@odata.nextLink` (only ever under the Graph root).
    async fn get_pages<T: serde::de::DeserializeOwned>(
        &self,
        mut url: String,
        what: &str,
    ) -> Result<Vec<T>, ReadError> {
        #[derive(Deserialize)]
        struct Page<T> {
            value: Vec<T>,
            #[serde(rename = "@odata.nextLink")]
            next: Option<String>,
        }
        let mut found = Vec::new();
        for _ in 0..1_000 {
            let Some(page) = self.get_json::<Page<T>>(&url).await? else {
                // Graph's own answer, for callers that treat a missing list as one (a tenant or a
                // stand-in without the beta audit log).
                let body =
                    serde_json::json!({"error": {"code": "NotFound", "message": format!("{what}: no such list")}});
                return Err(ReadError::Graph(error::parse(404, None, body.to_string().as_bytes())));
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
        Err(ReadError::Decode(format!("more than 1,000 pages of {what}")))
    }
}

enum SendError {
    Auth(AuthError),
    Http(reqwest::Error),
}

/// The right to send one POST now (see [`Graph::write_slot`]).
#[derive(Debug)]
pub(crate) struct WriteSlot<'a> {
    _permit: tokio::sync::SemaphorePermit<'a>,
    token: AccessToken,
}

impl WriteSlot<'_> {
    /// The token the POST will carry (to renew exactly it after a 401).
    pub(crate) fn token(&self) -> &AccessToken {
        &self.token
    }
}

/// The correlation data of an answer. With `sent_at` (when the request left), also the lower
/// bound of Intune's clock at its arrival: the answer's `Date` less the round trip.
fn answer_of(resp: &reqwest::Response, sent_at: Option<Instant>) -> Answer {
    let h = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let date = h("date").as_deref().and_then(clock::http_date);
    let server_sent_at = date.zip(sent_at).and_then(|(d, sent)| {
        let rtt = jiff::SignedDuration::try_from(sent.elapsed()).ok()?;
        d.checked_sub(rtt).ok()
    });
    Answer { status: resp.status().as_u16(), request_id: h("request-id"), date, server_sent_at }
}

/// `Retry-After`, an HTTP date measured against the answer's own `Date` (so the runner's clock
/// does not matter) or a number of seconds.
fn retry_after_of(resp: &reqwest::Response, answer: &Answer) -> Option<Duration> {
    let v = resp.headers().get("retry-after")?.to_str().ok()?;
    error::retry_after(v, answer.date.unwrap_or_else(Timestamp::now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{RetryAfter, SimConfig, SimHandle};

    fn device(i: usize) -> String {
        format!("00000000-0000-4000-8000-{i:012}")
    }

    /// A client of the Graph at `url`, sending `token`, giving up on an answer after `timeout`.
    fn graph_at(url: &str, token: &str, timeout: Duration) -> Graph {
        let endpoints =
            Endpoints::resolve(crate::cloud::Cloud::Global, ApiVersion::V1, Some(url), Some(url)).expect("endpoints");
        let budget = Budget { requests: 1_000, window: Duration::from_secs(1) };
        let opts = ClientOptions {
            timeout,
            concurrency: 4,
            write_budget: budget,
            read_budget: budget,
            retry: crate::core::retry::Policy::graph(Duration::from_millis(10), Duration::from_millis(100)),
            device_user: false,
        };
        Graph::new(endpoints, Credential::Token(token.to_owned().into()), &opts)
    }

    /// One action sent to a server at `url` that answers as it pleases.
    async fn one_action_to(url: &str, timeout: Duration) -> SendResult {
        let graph = graph_at(url, "token", timeout);
        let slot = graph.write_slot().await.expect("slot");
        graph
            .send_action(
                ActionKind::PasscodeReset,
                &Parameters::default(),
                slot,
                Collection::ManagedDevices,
                &device(0),
                WriteHeaders { client_request_id: Uuid::new_v4(), approval: &Approval::Justification(String::new()) },
            )
            .await
    }

    // How a POST that got no answer is classed decides whether it may be sent again: only a
    // connection never made is "not sent"; a connection that broke or went quiet may have
    // carried the request (docs/promises.md).
    #[tokio::test]
    async fn only_a_connection_never_made_is_not_sent() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let refused = one_action_to(&format!("http://127.0.0.1:{port}"), Duration::from_secs(5)).await;
        assert!(matches!(refused, SendResult::NotSent(_)), "nothing listens: {refused:?}");

        // Accepts, reads the request, then closes without a word.
        let closing = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", closing.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            let (mut conn, _) = closing.accept().await.expect("accept");
            let mut buf = [0u8; 4096];
            let _ = tokio::io::AsyncReadExt::read(&mut conn, &mut buf).await;
        });
        let broken = one_action_to(&url, Duration::from_secs(5)).await;
        server.abort();
        let SendResult::Unknown(None, why) = &broken else { panic!("a broken connection: {broken:?}") };
        assert!(!why.contains("timeout"), "not a timeout: {why}");

        // Accepts and never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", silent.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            let (conn, _) = silent.accept().await.expect("accept");
            std::future::pending::<()>().await;
            drop(conn);
        });
        let quiet = one_action_to(&url, Duration::from_millis(300)).await;
        server.abort();
        let SendResult::Unknown(None, why) = &quiet else { panic!("no answer: {quiet:?}") };
        assert!(why.contains("within the timeout"), "{why}");
    }

    // A 429 answered to one request pauses every write, also those whose task already holds a
    // slot (it took its slot, then wrote its intent, while the 429 came back): such a request
    // does not leave; it is handed back unsent, to go again after the pause.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_holding_a_slot_when_a_429_comes_back_does_not_leave() {
        let devices = (0..2)
            .map(|i| {
                serde_json::json!({"id": device(i), "operatingSystem": "Android"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        let sim = SimHandle::start(
            SimConfig {
                devices,
                write_limit: Some(Budget { requests: 1, window: Duration::from_secs(60) }),
                retry_after: RetryAfter::Seconds(30.0),
                ..SimConfig::default()
            },
            0,
        )
        .expect("simulator");
        let token = sim
            .state()
            .mint_token_for("test-tenant", vec!["DeviceManagementManagedDevices.PrivilegedOperations.All".to_owned()]);
        let graph = graph_at(&sim.url(), &token, Duration::from_secs(5));
        // Three tasks take their slots first, as the executor does before writing intents.
        let slots = [graph.write_slot().await, graph.write_slot().await, graph.write_slot().await];
        let [Ok(a), Ok(b), Ok(c)] = slots else { panic!("slots") };
        let ids = [device(0), device(1)];
        let none = Parameters::default();
        let why = Approval::Justification(String::new());
        let sent = |s, i: usize| {
            graph.send_action(
                ActionKind::PasscodeReset,
                &none,
                s,
                Collection::ManagedDevices,
                &ids[i],
                WriteHeaders { client_request_id: Uuid::new_v4(), approval: &why },
            )
        };
        assert!(matches!(sent(a, 0).await, SendResult::Accepted(_)));
        let SendResult::Throttled(_, Some(delay), _) = sent(b, 1).await else { panic!("the second meets the limit") };
        // The executor's answer to a 429: the pause, for everyone.
        graph.writes().throttled(delay).await;
        assert_eq!(sent(c, 1).await, SendResult::HeldBack, "a slot taken before the 429 does not send inside it");
        let posts = sim.requests().iter().filter(|r| r.method == "POST").count();
        assert_eq!(posts, 2, "the held-back request never left");
    }
}

//! The simulator's state: devices, their action results, issued tokens, throttling windows,
//! scripted faults, and the log of every request.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::settings::Budget;

/// How a 429 says when to come back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RetryAfter {
    /// No `Retry-After` header (Intune often sends none).
    None,
    /// `Retry-After: <seconds>` (possibly fractional).
    Seconds(f64),
    /// `Retry-After: <HTTP date>`, this far ahead (rounded up to whole seconds).
    HttpDate(Duration),
}

/// What a scripted fault does to a device action (any of them: "the action" below).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// 503 without applying the action.
    UnavailableBefore,
    /// Apply the action, then answer 500.
    ErrorAfter,
    /// Apply the action, then never answer.
    HangAfter,
    /// 429 without applying.
    Throttle,
    /// 401 without applying (as after a token revocation).
    Unauthorized,
    /// Apply the action, then answer 204 only after this long (a client that gives up or dies
    /// meanwhile never learns that it was applied).
    AnswerLate(Duration),
    /// Apply the action, then answer 204 only once the test says so
    /// ([`SimHandle::release_answers`](super::SimHandle::release_answers)): a request held in
    /// flight for as long as the test needs, whatever the machine's load.
    HoldAnswer,
    /// 408 without applying.
    RequestTimeout,
    /// 403 without applying (a licence or permission problem fixed later).
    Forbidden,
    /// Never answer, and never apply (the request was lost before Intune acted on it).
    HangBefore,
    /// 503 to a GET of the device (a lookup or a refresh read), not to its actions.
    LookupUnavailable,
    /// Answer with this status and a JSON body that is cut off halfway (the connection drops
    /// mid-body). A 2xx applies the action first; any other status does not.
    CutAnswer(u16),
}

/// A fault for the next `times` device-action requests, whatever the action (on one device, or
/// any); for [`FaultKind::LookupUnavailable`], the next `times` GETs of the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub device_id: Option<String>,
    pub kind: FaultKind,
    pub times: u32,
}

/// A [`Fault`] for requests of one action only (its Graph name, `wipe`). Taken before the
/// faults of [`SimConfig::faults`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionFault {
    pub action: String,
    pub fault: Fault,
}

/// How the simulator behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub devices: Vec<Map<String, Value>>,
    /// When set, the token endpoint demands exactly this client secret.
    pub client_secret: Option<String>,
    /// The `roles` claim of issued tokens.
    pub roles: Vec<String>,
    pub token_lifetime: Duration,
    pub write_limit: Option<Budget>,
    pub read_limit: Option<Budget>,
    pub retry_after: RetryAfter,
    pub latency: Duration,
    /// How long an accepted action stays `pending` before its final state.
    pub complete_after: Duration,
    /// How long a device stays in the tenant (`wipePending`/`retirePending`) once its wipe or
    /// retire is done, before it leaves (GET answers 404, lists no longer show it).
    pub leave_after: Duration,
    /// The largest page of the list endpoint (Graph: 1,000).
    pub page_size: usize,
    pub faults: Vec<Fault>,
    /// Faults for one action only.
    pub action_faults: Vec<ActionFault>,
    /// Intune's clock minus the real one: every time the simulator stamps (`Date`, results,
    /// audits) is off by this much, like a runner whose clock is not Intune's.
    pub clock_offset: jiff::SignedDuration,
    /// How long an applied action takes to show in `deviceActionResults` (Intune's reports lag;
    /// the audit log does not).
    pub report_delay: Duration,
    /// Whether `remoteActionAudits` answers (false: 403, like a token that may not read it).
    pub audits_readable: bool,
    /// Whether `remoteActionAudits` is missing altogether (404, like a Graph stand-in without it).
    pub audits_missing: bool,
    /// Whether a device list without `$filter` is refused (400), like a Graph stand-in that
    /// implements only the lookups.
    pub list_needs_filter: bool,
    /// Whether device lists answer every `deviceActionResults` empty (lists have done so:
    /// docs/graph-facts.md); a GET of one device still has them.
    pub list_omits_results: bool,
    /// Tokens die after this many Graph requests each (0: never), like expiries under load.
    pub token_requests: u32,
    /// Answers that run on past any sane length (a broken proxy, a hostile stand-in).
    pub padding: Padding,
    /// A domain of the simulated tenant (`contoso.onmicrosoft.com`): its OpenID discovery
    /// document names [`SimConfig::tenant_id`], and tokens asked for by it carry that `tid`, as
    /// Entra does. Any other tenant is a name the token endpoint takes as it is.
    pub domain: String,
    /// The tenant id (a GUID) that [`SimConfig::domain`] stands for.
    pub tenant_id: String,
    /// Whether Graph refuses (403) a request whose token's `roles` (or `scp`) lack its permission:
    /// reads need `DeviceManagementManagedDevices.Read.All` (or `ReadWrite.All`), resets
    /// `PrivilegedOperations.All`. A token without readable claims is not judged.
    pub enforce_permissions: bool,
    /// A test hook (off by default): the local ledger to read as each POST arrives, to tell
    /// whether that request's `client-request-id` was durable on disk (in the snapshot or its
    /// journal) before the request left ([`RecordedRequest::intent_durable`]).
    pub intent_probe: Option<std::path::PathBuf>,
    /// Multi Admin Approval: the device actions (Graph names, `wipe`) an access policy protects.
    /// Each is held (403 `ApprovalRequired`) until approved through `/_sim/approvals/{id}/approve`
    /// and re-sent with its code (docs/graph-facts.md, "Multi Admin Approval").
    pub maa: Vec<String>,
}

/// Bytes of whitespace streamed after the JSON of some answers (0: none). The JSON stays valid:
/// a client that reads it all parses it as usual.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Padding {
    /// After every successful Graph GET (a device, a listing page, the audit log).
    pub reads: usize,
    /// After every token the token endpoint issues.
    pub token: usize,
    /// After every applied device action, answered `200 {}` instead of 204 (a 204 has no body).
    pub resets: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            devices: Vec::new(),
            client_secret: None,
            roles: vec!["DeviceManagementManagedDevices.Read.All".into(), crate::graph::auth::PRIVILEGED_ROLE.into()],
            token_lifetime: Duration::from_secs(3599),
            write_limit: Some(Budget { requests: 200, window: Duration::from_secs(20) }),
            read_limit: Some(Budget { requests: 2_000, window: Duration::from_secs(20) }),
            retry_after: RetryAfter::None,
            latency: Duration::ZERO,
            complete_after: Duration::ZERO,
            leave_after: Duration::ZERO,
            page_size: 1_000,
            faults: Vec::new(),
            action_faults: Vec::new(),
            clock_offset: jiff::SignedDuration::ZERO,
            report_delay: Duration::ZERO,
            audits_readable: true,
            audits_missing: false,
            list_needs_filter: false,
            list_omits_results: false,
            token_requests: 0,
            padding: Padding::default(),
            intent_probe: None,
            domain: SIM_DOMAIN.into(),
            tenant_id: SIM_TENANT_ID.into(),
            enforce_permissions: true,
            maa: Vec::new(),
        }
    }
}

/// The simulated tenant's domain, by default.
pub const SIM_DOMAIN: &str = "contoso.onmicrosoft.com";
/// The tenant id [`SIM_DOMAIN`] stands for, by default.
pub const SIM_TENANT_ID: &str = "8d3f2a6e-5b1c-4e7a-9f20-1c3b5d7e9a41";

/// Whether `token`'s claims allow a Graph request (a read, or a reset when `write`): `None` when
/// the token has no claims to judge.
pub(crate) fn permits(token: &str, write: bool) -> Option<bool> {
    let payload = token.split('.').nth(1)?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?).ok()?;
    let mut granted: Vec<String> =
        claims["roles"].as_array().into_iter().flatten().filter_map(|r| r.as_str().map(str::to_owned)).collect();
    granted.extend(claims["scp"].as_str().unwrap_or_default().split_whitespace().map(str::to_owned));
    let has = |p: &str| granted.iter().any(|g| g == p);
    Some(if write {
        has(crate::graph::auth::PRIVILEGED_ROLE)
    } else {
        crate::graph::auth::READ_ROLES.iter().any(|r| has(r))
    })
}

/// One request as the simulator saw it. Never holds a secret: only whether a header was there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedRequest {
    pub seq: u64,
    pub at: jiff::Timestamp,
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
    pub client_request_id: Option<String>,
    pub accept: Option<String>,
    pub user_agent: Option<String>,
    pub authorized: bool,
    /// For a device action: whether Intune accepted it (it shows in the device's results).
    pub applied: bool,
    /// For token requests: `secret`, `assertion`, or what was missing.
    pub credential: Option<String>,
    /// For a token issued: the scope it was asked for (Graph's, or storage's for a blob ledger).
    pub scope: Option<String>,
    /// With [`SimConfig::intent_probe`], for a POST: whether its `client-request-id` was in the
    /// ledger on disk when the request arrived.
    pub intent_durable: Option<bool>,
    /// For a POST other than a token request: its JSON body (a body that is not JSON as a string;
    /// `None` when empty), with the value of a wipe's `macOsUnlockCode` replaced by
    /// [`REDACTED`].
    pub body: Option<Value>,
    /// The `x-msft-approval-justification` header (Base64), when sent.
    pub approval_justification: Option<String>,
    /// The `x-msft-approval-code` header, when sent.
    pub approval_code: Option<String>,
}

/// What the request log shows instead of a secret sent in a body.
pub const REDACTED: &str = "(redacted by the simulator)";

/// Whether `crid` is written in the local ledger at `ledger` (its snapshot or its journal) now.
pub(crate) fn durable_in(ledger: &std::path::Path, crid: &str) -> bool {
    let journal = {
        let mut name = ledger.as_os_str().to_owned();
        name.push(".journal");
        std::path::PathBuf::from(name)
    };
    [ledger.to_path_buf(), journal]
        .iter()
        .any(|p| std::fs::read(p).is_ok_and(|b| b.windows(crid.len()).any(|w| w == crid.as_bytes())))
}

/// Who a portal action is by when nobody is named.
pub(super) const PORTAL_ADMIN: &str = "admin@contoso.com";

/// How long ago a portal action was made, as written (`40m`).
pub(super) fn ago(text: &str) -> Result<jiff::SignedDuration, String> {
    let d = text.parse::<crate::duration::HumanDuration>().map_err(|e| e.to_string())?;
    Ok(jiff::SignedDuration::try_from(d.0).unwrap_or_default())
}

/// A remote action a device went through.
#[derive(Debug, Clone)]
pub struct ActionRecord {
    /// The Graph action (`wipe`).
    pub name: String,
    /// Its body (never with a secret: a wipe's unlock code is dropped).
    pub parameters: Map<String, Value>,
    /// On the simulator's (Intune's) clock.
    pub start: jiff::Timestamp,
    pub final_state: String,
    /// The new passcode of a reset, as Graph returns it (a secret).
    pub passcode: Option<String>,
    /// The unlock PIN of a remote lock, as Graph returns it (a secret).
    pub unlock_pin: Option<String>,
    /// Who started it (`initiatedByUserPrincipalName`): empty for an app.
    pub initiator: String,
    /// When it shows in `deviceActionResults` (real time).
    pub visible_at: Instant,
    pub audit_id: String,
    /// Made at start from the fixture's `_portalResets`/`_portalActions`: not kept between `--simulate` runs (the
    /// fixture makes it again).
    pub from_fixture: bool,
}

/// An action as `--simulate` keeps it between runs (never with its passcode or PIN).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SavedAction {
    pub device: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub parameters: Map<String, Value>,
    pub start: jiff::Timestamp,
    pub final_state: String,
    #[serde(default)]
    pub initiator: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_id: Option<String>,
}

#[derive(Debug)]
pub struct SimDevice {
    pub fields: Map<String, Value>,
    pub actions: Vec<ActionRecord>,
}

/// Everything the simulator knows.
#[derive(Debug)]
pub struct SimState {
    pub config: SimConfig,
    pub devices: Vec<SimDevice>,
    by_id: HashMap<String, usize>,
    /// (lowercase property, lowercase value) → devices, so a 50,000-device tenant answers fast.
    by_value: HashMap<(String, String), Vec<usize>>,
    /// Live tokens: when each expires, and how many Graph requests it may still make.
    tokens: HashMap<String, (Instant, u32)>,
    writes: VecDeque<Instant>,
    reads: VecDeque<Instant>,
    pub requests: Vec<RecordedRequest>,
    seq: u64,
    /// Bytes of [`Padding`] streamed so far (counted as the client pulls them).
    pub(crate) padding_sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Whether answers held by [`FaultKind::HoldAnswer`] may leave.
    pub(crate) released: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
    /// Multi Admin Approval requests, oldest first.
    pub approvals: Vec<SimApproval>,
}

/// A Multi Admin Approval request the simulator holds (Graph beta `operationApprovalRequest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimApproval {
    /// The `x-msft-approval-code` and `requestId`.
    pub id: String,
    pub device_id: String,
    /// The Graph action (`wipe`).
    pub action: String,
    /// `needsApproval`, `approved`, `rejected`, `cancelled`, `completed` or `expired`.
    pub status: String,
    /// The caller's justification, decoded.
    pub justification: String,
    pub requested: jiff::Timestamp,
    pub expires: jiff::Timestamp,
    /// Who approved or rejected it, and why.
    pub approver: Option<String>,
    pub approver_why: Option<String>,
}

impl SimState {
    /// The pending request for `action` on device `device_id`, or a new one (one may be pending
    /// per object): its id.
    pub(crate) fn hold_for_approval(&mut self, device_id: &str, action: &str, justification: &str) -> String {
        let pending = self
            .approvals
            .iter()
            .find(|a| a.device_id.eq_ignore_ascii_case(device_id) && a.action == action && a.status == "needsApproval");
        if let Some(a) = pending {
            return a.id.clone();
        }
        let now = self.now();
        let id = uuid::Uuid::new_v4().to_string();
        self.approvals.push(SimApproval {
            id: id.clone(),
            device_id: device_id.to_owned(),
            action: action.to_owned(),
            status: "needsApproval".into(),
            justification: justification.to_owned(),
            requested: now,
            expires: now + jiff::SignedDuration::from_hours(72),
            approver: None,
            approver_why: None,
        });
        id
    }

    /// Takes an approved request's code for `action` on `device_id`: `true` (and the request is
    /// `completed`) when it names an approved request for exactly that.
    pub(crate) fn use_approval(&mut self, code: &str, device_id: &str, action: &str) -> bool {
        let found = self.approvals.iter_mut().find(|a| {
            a.id == code && a.device_id.eq_ignore_ascii_case(device_id) && a.action == action && a.status == "approved"
        });
        match found {
            Some(a) => {
                a.status = "completed".into();
                true
            }
            None => false,
        }
    }
}

impl SimState {
    pub(crate) fn new(config: SimConfig) -> Self {
        // A fixture device may carry `_portalResets: [{by: UPN, ago: 40m}]` and
        // `_portalActions: [{action: remoteLock, by: UPN, ago: 40m, parameters: {…}}]`: actions a
        // person made in the Intune portal before the simulator started (shown, never part of the
        // device).
        let mut portal: Vec<(usize, super::fixture::PortalAction)> = Vec::new();
        let devices: Vec<SimDevice> = config
            .devices
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let mut fields = d.clone();
                portal.extend(super::fixture::take_portal_actions(&mut fields).into_iter().map(|a| (i, a)));
                SimDevice { fields, actions: Vec::new() }
            })
            .collect();
        let by_id = devices
            .iter()
            .enumerate()
            .filter_map(|(i, d)| d.fields.get("id").and_then(Value::as_str).map(|id| (id.to_ascii_lowercase(), i)))
            .collect();
        let mut by_value: HashMap<(String, String), Vec<usize>> = HashMap::new();
        for (i, d) in devices.iter().enumerate() {
            for (k, v) in &d.fields {
                if let Some(v) = v.as_str() {
                    by_value.entry((k.to_ascii_lowercase(), v.to_lowercase())).or_default().push(i);
                }
            }
        }
        let mut state = SimState {
            config,
            devices,
            by_id,
            by_value,
            tokens: HashMap::new(),
            writes: VecDeque::new(),
            reads: VecDeque::new(),
            requests: Vec::new(),
            seq: 0,
            padding_sent: Default::default(),
            released: std::sync::Arc::new(tokio::sync::watch::Sender::new(false)),
            approvals: Vec::new(),
        };
        for (i, p) in portal {
            let start = state.now() - p.ago;
            let Some(action) = super::actions::lookup(&p.action) else { continue };
            if state.apply_at(i, action, p.parameters, &p.by, start)
                && let Some(a) = state.devices[i].actions.last_mut()
            {
                a.from_fixture = true;
                a.visible_at = Instant::now();
            }
        }
        state
    }

    pub(crate) fn record(&mut self, mut r: RecordedRequest) {
        self.seq += 1;
        r.seq = self.seq;
        self.requests.push(r);
    }

    pub(crate) fn resets_applied(&self, device_id: &str) -> usize {
        self.actions_applied(device_id, "resetPasscode")
    }

    /// How many `action`s Intune accepted for `device_id` (whether or not it is still there).
    pub(crate) fn actions_applied(&self, device_id: &str, action: &str) -> usize {
        self.device(device_id).map_or(0, |d| d.actions.iter().filter(|a| a.name == action).count())
    }

    /// Every action taken, for keeping between `--simulate` runs.
    pub(crate) fn saved_actions(&self) -> Vec<SavedAction> {
        self.devices
            .iter()
            .flat_map(|d| {
                let id = d.fields.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
                d.actions.iter().filter(|a| !a.from_fixture).map(move |a| SavedAction {
                    device: id.clone(),
                    name: a.name.clone(),
                    parameters: a.parameters.clone(),
                    start: a.start,
                    final_state: a.final_state.clone(),
                    initiator: a.initiator.clone(),
                    audit_id: Some(a.audit_id.clone()),
                })
            })
            .collect()
    }

    /// Restores actions kept by [`saved_actions`](Self::saved_actions); unknown devices are skipped.
    pub(crate) fn restore(&mut self, saved: Vec<SavedAction>) {
        for a in saved {
            if let Some(i) = self.device_index(&a.device) {
                self.devices[i].actions.push(ActionRecord {
                    name: a.name,
                    parameters: a.parameters,
                    start: a.start,
                    final_state: a.final_state,
                    passcode: None,
                    unlock_pin: None,
                    initiator: a.initiator,
                    visible_at: Instant::now(),
                    audit_id: a.audit_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                    from_fixture: false,
                });
            }
        }
    }

    /// Every token issued (for leak tests).
    pub(crate) fn issued_tokens(&self) -> Vec<String> {
        self.tokens.keys().cloned().collect()
    }

    /// Every passcode and unlock PIN handed out (for leak tests).
    pub(crate) fn passcodes(&self) -> Vec<String> {
        self.devices
            .iter()
            .flat_map(|d| d.actions.iter().flat_map(|a| a.passcode.iter().chain(&a.unlock_pin).cloned()))
            .collect()
    }

    pub(crate) fn device_index(&self, id: &str) -> Option<usize> {
        self.by_id.get(&id.to_ascii_lowercase()).copied()
    }

    /// Devices whose string property `prop` equals every `(prop, value)` clause, case-insensitively.
    /// Devices gone from the tenant (wiped, retired) never match; `managementState` is matched
    /// as it is now, not as the fixture had it.
    pub(crate) fn matching(&self, clauses: &[(String, String)]) -> Vec<usize> {
        let (states, clauses): (Vec<_>, Vec<_>) =
            clauses.iter().partition(|(p, _)| p.eq_ignore_ascii_case("managementState"));
        let candidates: Vec<usize> = match clauses.split_first() {
            None => (0..self.devices.len()).collect(),
            Some((first, rest)) => {
                let key = |(p, v): &(String, String)| (p.to_ascii_lowercase(), v.to_lowercase());
                let Some(candidates) = self.by_value.get(&key(first)) else { return Vec::new() };
                candidates
                    .iter()
                    .copied()
                    .filter(|i| rest.iter().all(|c| self.by_value.get(&key(c)).is_some_and(|v| v.contains(i))))
                    .collect()
            }
        };
        candidates
            .into_iter()
            .filter(|&i| !self.gone(i))
            .filter(|&i| states.iter().all(|(_, v)| self.management_state(i).eq_ignore_ascii_case(v)))
            .collect()
    }

    /// Device `i` unless it has left the tenant.
    pub(crate) fn present(&self, id: &str) -> Option<usize> {
        self.device_index(id).filter(|&i| !self.gone(i))
    }

    pub(crate) fn device(&self, id: &str) -> Option<&SimDevice> {
        self.device_index(id).map(|i| &self.devices[i])
    }

    /// Intune's clock: the real one plus the configured offset.
    pub(crate) fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now() + self.config.clock_offset
    }

    /// Issues a token for the simulator's own tenant carrying `roles` (a ready token).
    pub(crate) fn mint_token(&mut self, roles: Vec<String>) -> String {
        self.mint_token_for("simulated-tenant", roles)
    }

    /// Issues a token for `tenant` (its `tid`) carrying `roles`, valid for the configured lifetime.
    pub fn mint_token_for(&mut self, tenant: &str, roles: Vec<String>) -> String {
        let now = jiff::Timestamp::now().as_second();
        let header = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"none"}"#);
        let mut claims = json!({
            "aud": "https://graph.microsoft.com",
            "tid": tenant,
            "iat": now,
            "exp": now + self.config.token_lifetime.as_secs() as i64,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        if !roles.is_empty() {
            claims["roles"] = json!(roles);
        }
        let token =
            format!("{header}.{}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()), uuid::Uuid::new_v4().simple());
        self.accept_token(&token);
        token
    }

    /// Accepts `token` as if issued now (tests that craft their own claims).
    pub fn accept_token(&mut self, token: &str) {
        let uses = if self.config.token_requests == 0 { u32::MAX } else { self.config.token_requests };
        self.tokens.insert(token.to_owned(), (Instant::now() + self.config.token_lifetime, uses));
    }

    /// Whether `Authorization: Bearer <token>` names a live token; counts one use of it.
    pub(crate) fn authorized(&mut self, header: Option<&str>) -> bool {
        let Some(token) = header.and_then(|h| h.strip_prefix("Bearer ")) else { return false };
        match self.tokens.get_mut(token) {
            Some((exp, uses)) if Instant::now() < *exp && *uses > 0 => {
                *uses -= 1;
                true
            }
            _ => false,
        }
    }

    /// Counts a request against a window; `false` when the window is full (→ 429).
    pub(crate) fn admit(&mut self, write: bool) -> bool {
        let (limit, log) =
            if write { (self.config.write_limit, &mut self.writes) } else { (self.config.read_limit, &mut self.reads) };
        let Some(limit) = limit else { return true };
        let now = Instant::now();
        while log.front().is_some_and(|t| now.duration_since(*t) >= limit.window) {
            log.pop_front();
        }
        if log.len() >= limit.requests as usize {
            return false;
        }
        log.push_back(now);
        true
    }

    /// The next fault for an `action` request to `device_id`, used up: one scripted for that
    /// action first, then one for any action.
    pub(crate) fn take_fault(&mut self, device_id: &str, action: &str) -> Option<FaultKind> {
        let posts = |k: FaultKind| k != FaultKind::LookupUnavailable;
        let only = self.config.action_faults.iter_mut().filter(|f| f.action == action).map(|f| &mut f.fault);
        take_fault(only, device_id, posts).or_else(|| take_fault(self.config.faults.iter_mut(), device_id, posts))
    }

    /// The next fault for a GET of `device_id`, used up.
    pub(crate) fn take_lookup_fault(&mut self, device_id: &str) -> Option<FaultKind> {
        take_fault(self.config.faults.iter_mut(), device_id, |k| k == FaultKind::LookupUnavailable)
    }
}

/// The first of `faults` of a `kind` that applies to `device_id`, used up.
fn take_fault<'a>(
    faults: impl Iterator<Item = &'a mut Fault>,
    device_id: &str,
    kind: impl Fn(FaultKind) -> bool,
) -> Option<FaultKind> {
    let mut faults = faults;
    let f = faults.find(|f| {
        f.times > 0 && kind(f.kind) && f.device_id.as_deref().is_none_or(|d| d.eq_ignore_ascii_case(device_id))
    })?;
    f.times -= 1;
    Some(f.kind)
}

//! The Intune Graph simulator: a real HTTP server on loopback that behaves like the parts of
//! Microsoft Graph and Entra ID this tool uses, with faults on demand.
//!
//! - `POST /{tenant}/oauth2/v2.0/token` — client credentials (secret or assertion); tokens carry
//!   a `roles` claim and expire. Their `tid` is the tenant of the path (the configured domain
//!   stands for the configured tenant id); the simulator's tenants are names like `test-tenant`,
//!   which the tool accepts only from a login host on loopback.
//! - `GET /{v}/deviceManagement/managedDevices` — `$filter` (`eq`, `and`), `$select`, `$top`,
//!   `@odata.nextLink` paging.
//! - `GET /{v}/deviceManagement/managedDevices/{id}` — with `deviceActionResults`, typed as
//!   Graph types them and including the secrets the real service returns (a reset's `passcode`, a
//!   lock's `unlockPin`, a locate's `deviceLocation`), so tests can prove the tool never keeps
//!   them. A device that has left the tenant answers 404 (and is in no list).
//! - `POST /{v}/deviceManagement/{managedDevices|comanagedDevices}/{id}/{action}` — the device
//!   actions of [`actions::ACTIONS`]: remoteLock, syncDevice, rebootNow, shutDown, retire, wipe,
//!   cleanWindowsDevice, rotateBitLockerKeys, rotateFileVaultKey, rotateLocalAdminPassword,
//!   locateDevice, windowsDefenderScan, enableLostMode, disableLostMode, resetPasscode.
//!   `comanagedDevices` on beta only; the beta-only actions (rotateBitLockerKeys,
//!   rotateFileVaultKey, rotateLocalAdminPassword, enableLostMode) answer v1.0 as any unknown
//!   segment does (400 `Resource not found for the segment '…'`). In order:
//!   - the body, as Graph checks it: no body or `{}` for the actions without parameters; wipe
//!     `keepEnrollmentData`, `keepUserData`, `persistEsimDataPlan` (Booleans), `macOsUnlockCode`
//!     (String), `obliterationBehavior` (enum), beta also `useProtectedWipe`; cleanWindowsDevice
//!     `keepUserData`; windowsDefenderScan `quickScan`; enableLostMode `message`, `phoneNumber`,
//!     `footer` (Strings). An unknown property or a wrong type: 400 `BadRequest`;
//!   - the device: unknown (or gone) 404;
//!   - a scripted fault ([`Fault`] for any action, [`ActionFault`] for one);
//!   - the platform, by one rule for every action: an operating system the action does not exist
//!     for is refused (400, as Intune refuses a reset on Windows); a device of a supported system
//!     that does not qualify (ownership `managedDeviceOwnerType`, Android enrolment
//!     `deviceEnrollmentType`, supervision `isSupervised`) is accepted (204) and its result ends
//!     `notSupported`, as a personal iPhone's reset does. Any action but a wipe or retire on a
//!     device being wiped or retired ends `canceled` (those take precedence);
//!   - 204, and a `deviceActionResults` entry `actionName` = the Graph action, `pending` for
//!     [`SimConfig::complete_after`] then its final state (shown after
//!     [`SimConfig::report_delay`]), and an audit entry (below).
//!
//!   A wipe (without `keepEnrollmentData`) or retire makes the device `wipeIssued`/`retireIssued`
//!   while pending, `wipePending`/`retirePending` once done, and [`SimConfig::leave_after`] later
//!   the device leaves the tenant. A done sync moves `lastSyncDateTime`.
//! - `GET /beta/deviceManagement/remoteActionAudits` — `$filter=requestDateTime ge <time>` and
//!   `action eq '<remoteAction>'` (any member of the enum; another name is 400 as Graph answers);
//!   entries are named by the enum: wipe `factoryReset`, retire `removeCompanyData`,
//!   windowsDefenderScan `quickScan`/`fullScan` by its body, the others their own name; a sync has
//!   none (the enum has no member for it). Paged like the device list.
//! - `GET /{tenant}/v2.0/.well-known/openid-configuration` — Entra's discovery document: for the
//!   configured domain it names the configured tenant id (a GUID), as Entra does; a GUID names
//!   itself; anything else is an unknown tenant (400, `AADSTS90002`).
//! - Multi Admin Approval ([`SimConfig::maa`]): a POST of a protected action without an
//!   `x-msft-approval-justification` header is refused (400 naming it); with one, it is held: 403
//!   `ApprovalRequired`, the request's id in the `x-msft-approval-code` header and the message, and
//!   nothing applied (one request pending per device and action). Re-sent with
//!   `x-msft-approval-code` of an approved request for the same device and action, it is applied
//!   (204) and the request `completed`; any other code: 403 again.
//!   `GET /beta/deviceManagement/operationApprovalRequests?$filter=requestId eq '…'` lists it;
//!   `POST /_sim/approvals/{id}/approve|reject|expire?by=UPN&why=…` is the second administrator
//!   (or the three days passing).
//! - `GET /_github/oidc` — a stand-in for the GitHub Actions OIDC token endpoint.
//! - `GET /_sim/requests` — every request received, for tests and curious users, with the JSON
//!   body of every POST but a token request's (a wipe's `macOsUnlockCode` value redacted).
//! - `POST /_sim/portal/{id}/{action}?by=UPN&ago=10m` — an action a person made in the Intune
//!   portal (`by` defaults to an admin, `ago` to now; the body as Graph's): it shows in results and
//!   audits with its initiator. A fixture device's `_portalResets: [{by, ago}]` and
//!   `_portalActions: [{action, by, ago, parameters}]` are such actions made before the start.
//!
//! Graph refuses (403) a read whose token carries no read permission, and a device action whose
//! token lacks `PrivilegedOperations.All`, as Graph does (tokens without readable claims are not
//! judged).
//!
//! Faults: write and read throttling windows with or without `Retry-After`, latency, scripted
//! per-request faults (503 before applying, 500 after applying, hang after applying, an answer
//! held until the test releases it, 429, 401), short token lifetimes.

mod actions;
pub mod fixture;
mod outcomes;
mod routes;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use fixture::BUILTIN_DEVICES;
pub(crate) use fixture::load_devices;
pub use outcomes::LOCATION;
pub use state::{
    ActionFault, Fault, FaultKind, Padding, REDACTED, RecordedRequest, RetryAfter, SIM_DOMAIN, SIM_TENANT_ID,
    SavedAction, SimApproval, SimConfig, SimState,
};

/// A running simulator. Stops when dropped.
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    state: Arc<Mutex<SimState>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SimHandle {
    /// Starts the simulator on `127.0.0.1:port` (0: any free port) on a thread of its own.
    pub fn start(config: SimConfig, port: u16) -> std::io::Result<SimHandle> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(SimState::new(config)));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let app = routes::router(state.clone());
        let thread = std::thread::Builder::new().name("intune-sim".into()).spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a tokio runtime for the simulator");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                let server = axum::serve(listener, app).with_graceful_shutdown(async {
                    let _ = rx.await;
                });
                if let Err(e) = server.await {
                    tracing::error!(error = %e, "simulator stopped");
                }
            });
            // Handlers still sleeping (a simulated hang) are dropped with the runtime.
            rt.shutdown_timeout(Duration::from_millis(100));
        })?;
        Ok(SimHandle { addr, state, shutdown: Some(tx), thread: Some(thread) })
    }

    /// `http://127.0.0.1:PORT`: both the Graph root and the login host.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    /// Bytes of [`Padding`] the clients have pulled so far (a client that stops reading at its
    /// cap pulls little more than the cap).
    pub fn padding_sent(&self) -> u64 {
        self.state().padding_sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many resets took effect on `device_id`.
    pub fn resets_applied(&self, device_id: &str) -> usize {
        self.state().resets_applied(device_id)
    }

    /// How many `action`s (Graph's name, `wipe`) Intune accepted for `device_id`, made by any
    /// client or in the portal, even if the device has left the tenant since.
    pub fn actions_applied(&self, device_id: &str, action: &str) -> usize {
        self.state().actions_applied(device_id, action)
    }

    /// Every token issued and every passcode and unlock PIN handed out, for leak tests (a
    /// locate's coordinates are [`LOCATION`]).
    pub fn secrets(&self) -> Vec<String> {
        let s = self.state();
        let mut all = s.issued_tokens();
        all.extend(s.passcodes());
        all
    }

    /// Lets the answers held by [`FaultKind::HoldAnswer`] leave (and any held from now on).
    pub fn release_answers(&self) {
        self.state().released.send_replace(true);
    }

    /// A token the simulator accepts, with these roles (like `az account get-access-token`).
    pub fn mint_token(&self, roles: &[&str]) -> String {
        self.state().mint_token(roles.iter().map(|r| (*r).to_owned()).collect())
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

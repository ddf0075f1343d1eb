//! `doctor`: checks, from where it runs, what a first plan or apply needs — the credential, a
//! token, its permissions and tenant, the ledger and its lock, Graph, and the CI variables the
//! plan comment needs — and says for each what to do when it fails. It writes nothing: the lock
//! is taken and released, and no journal is folded.

use std::time::Duration;

use super::Session;
use crate::graph::auth::{Grant, Need};
use crate::settings::Overrides;

/// Which job the identity is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Job {
    /// The pull request's job: reads devices and the ledger, writes the comment.
    Plan,
    /// The job after merge: reads and resets devices, locks and writes the ledger.
    Apply,
}

/// What was asked for.
#[derive(Debug, Clone, Default)]
pub(crate) struct DoctorRequest {
    pub simulate: bool,
    /// Check for this job only (`None`: both).
    pub job: Option<Job>,
    pub lock_timeout: Duration,
}

/// How one check went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    Pass,
    Fail,
    /// Not applicable here, or not checkable because an earlier check failed.
    Skip,
}

/// One line of the report: what was checked, what was found, and the fix when it failed.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    pub mark: Mark,
    pub what: &'static str,
    pub found: String,
    pub fix: Option<String>,
}

impl Check {
    fn pass(what: &'static str, found: impl Into<String>) -> Self {
        Check { mark: Mark::Pass, what, found: found.into(), fix: None }
    }

    fn skip(what: &'static str, found: impl Into<String>) -> Self {
        Check { mark: Mark::Skip, what, found: found.into(), fix: None }
    }

    fn fail(what: &'static str, found: impl Into<String>, fix: impl Into<String>) -> Self {
        Check { mark: Mark::Fail, what, found: found.into(), fix: Some(fix.into()) }
    }

    /// A failure from an error whose message carries its own `hint:` line: the message is what
    /// was found, the hint (else `fallback`) the fix.
    fn from_error(what: &'static str, e: &anyhow::Error, fallback: &str) -> Self {
        let text = format!("{e:#}");
        let (found, hint) = match text.split_once("\nhint: ") {
            Some((found, hint)) => (found.to_owned(), hint.to_owned()),
            None => (text.clone(), fallback.to_owned()),
        };
        Check::fail(what, found.replace('\n', " "), hint.replace('\n', " "))
    }
}

/// Every check, in the order a new setup meets them. A check that needs an earlier one (a token
/// to read its permissions) is skipped, saying why, when that one failed.
pub(crate) fn doctor(
    session: &mut Session,
    overrides: &Overrides,
    request: &DoctorRequest,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<Check> {
    let mut checks = connection(session, overrides, request, env);
    checks.extend(comment_variables(request.job, env));
    checks
}

/// Everything but the CI variables.
fn connection(
    session: &mut Session,
    overrides: &Overrides,
    request: &DoctorRequest,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let (settings, diags) = crate::app::project::load_settings(overrides, env);
    if diags.has_errors() {
        checks.push(Check::fail(
            "configuration",
            format!("{} error(s) in reconcile.yaml or the operator's policy", diags.error_count()),
            "run `reconcile validate` to see each one with its file and line",
        ));
        return checks;
    }
    checks.push(
        match (
            &settings.floor,
            overrides.policy.as_ref().map(|p| p.display().to_string()).or_else(|| env(crate::env::RECONCILE_POLICY)),
        ) {
            (Some(_), Some(path)) => Check::pass("policy floor", format!("the operator's floor `{path}` is valid")),
            _ => Check::skip(
                "policy floor",
                "none: RECONCILE_POLICY is not set (the repository's `policy:` alone applies; see docs/setup.md)",
            ),
        },
    );

    // The credential, as the environment describes it.
    if request.simulate {
        checks.push(Check::pass("credential", "the built-in simulator's client secret (--simulate)"));
    } else {
        match crate::graph::Credential::from_env(env) {
            Ok(c) => checks.push(Check::pass("credential", c.kind())),
            Err(e) => {
                let mut fix = e.to_string().split_once("\nhint: ").map(|(_, h)| h.to_owned()).unwrap_or_else(|| {
                    "set AZURE_TENANT_ID and AZURE_CLIENT_ID with AZURE_CLIENT_SECRET, a certificate or a federated token (see docs/setup.md)".into()
                });
                if env(crate::env::GITHUB_ACTIONS).as_deref() == Some("true")
                    && env(crate::env::ACTIONS_ID_TOKEN_REQUEST_URL).is_none()
                {
                    fix.push_str(" In GitHub Actions, give the job `permissions: id-token: write` for OIDC.");
                }
                let found = e.to_string().lines().next().unwrap_or_default().to_owned();
                checks.push(Check::fail("credential", found, fix));
                return skip_rest(checks, "no credential");
            }
        }
    }
    let (runtime, conn) = match session.connect(&settings, request.simulate, env) {
        Ok(c) => c,
        Err(e) => {
            checks.push(Check::from_error(
                "connection",
                &e,
                "check RECONCILE_GRAPH_URL, AZURE_AUTHORITY_HOST and the ledger's location",
            ));
            return skip_rest(checks, "cannot connect");
        }
    };

    runtime.block_on(async {
        // A token.
        let token = match conn.graph.tokens().token().await {
            Ok(t) => t,
            Err(e) => {
                checks.push(Check::from_error(
                    "token",
                    &anyhow::Error::from(e),
                    "check the app registration's client id, its secret, certificate or federated credential (its subject must match the job), and AZURE_TENANT_ID",
                ));
                return skip_rest(std::mem::take(&mut checks), "no token");
            }
        };
        let kind = if token.delegated() { "a person's (delegated, `scp`)" } else { "an app's (`roles`)" };
        checks.push(Check::pass("token", format!("obtained: {kind}")));

        // Its permissions, for each job.
        // Decided as the commands decide ([`Need::judge`]); only a token whose permissions
        // cannot be read fails here, where the commands leave it to Graph.
        let permission_line = |need: Need, what: &'static str| match need.judge(&token) {
            Grant::Unreadable => Check::fail(
                what,
                "the token is not a JWT: its permissions cannot be read",
                "use a credential that issues Entra ID access tokens",
            ),
            Grant::Granted(by) => Check::pass(what, by.join(" + ")),
            Grant::Missing { missing, .. } => Check::fail(
                what,
                format!("missing {}", missing.join(" and ")),
                crate::graph::auth::permission_hint(&missing.join(" and "), token.delegated()),
            ),
        };
        checks.push(permission_line(Need::Read, "permissions for plan"));
        checks.push(match request.job {
            Some(Job::Plan) => Check::skip("permissions for apply", "not checked (--for plan)"),
            _ => permission_line(Need::Apply, "permissions for apply"),
        });

        // The tenant: the token's, AZURE_TENANT_ID's, and (below) the ledger's.
        let tenant = match conn.tenant().await {
            Ok(t) => {
                let configured = match &settings.tenant {
                    Some(c) => format!(", as AZURE_TENANT_ID `{c}` says"),
                    None => " (AZURE_TENANT_ID is not set)".into(),
                };
                checks.push(Check::pass("tenant", format!("`{t}`{configured}")));
                Some(t)
            }
            Err(e) => {
                checks.push(Check::from_error("tenant", &e, "set AZURE_TENANT_ID to the tenant id (a GUID) of the app"));
                None
            }
        };

        // The ledger: there, of this tenant, and lockable.
        let at = conn.store.location().to_string();
        match conn.store.exists().await {
            Ok(true) => match conn.store.load().await {
                Ok(ledger) => {
                    checks.push(Check::pass(
                        "ledger",
                        format!("`{at}`: {} actions, serial {}", ledger.records.len(), ledger.serial),
                    ));
                    match (&tenant, conn.store.check_tenant(&ledger, tenant.as_deref())) {
                        (None, _) => checks.push(Check::skip("ledger tenant", "not compared: the token's tenant is unknown")),
                        (Some(t), Ok(())) => checks.push(Check::pass("ledger tenant", format!("bound to `{t}`, the token's"))),
                        (Some(_), Err(e)) => checks.push(Check::from_error(
                            "ledger tenant",
                            &anyhow::Error::from(e),
                            "use the credential of the tenant the ledger was created for, or another ledger",
                        )),
                    }
                    checks.push(match request.job {
                        Some(Job::Plan) => {
                            Check::skip("ledger lock", "not checked (--for plan: plan reads the ledger, never locks it)")
                        }
                        None | Some(Job::Apply) => match conn.store.lock(request.lock_timeout, "reconcile doctor", tenant.as_deref()).await {
                            Ok(w) => {
                                w.release().await;
                                Check::pass("ledger lock", "taken and released (nothing written)")
                            }
                            Err(e) => Check::from_error(
                                "ledger lock",
                                &anyhow::Error::from(e),
                                "the apply identity needs write access to the ledger: Storage Blob Data Contributor on the container, or write access to the ledger's folder",
                            ),
                        },
                    });
                }
                Err(e) => {
                    checks.push(Check::from_error(
                        "ledger",
                        &anyhow::Error::from(e),
                        "give the identity Storage Blob Data Reader (plan) or Contributor (apply) on the container",
                    ));
                    checks.push(Check::skip("ledger lock", "not checked: the ledger cannot be read"));
                }
            },
            Ok(false) => {
                checks.push(Check::fail(
                    "ledger",
                    format!("there is no ledger at `{at}`"),
                    "create it once with `reconcile init` (an administrator, with the apply identity; see docs/setup.md), or point RECONCILE_STATE at it",
                ));
                checks.push(Check::skip("ledger lock", "not checked: no ledger"));
            }
            Err(e) => {
                checks.push(Check::from_error(
                    "ledger",
                    &anyhow::Error::from(e),
                    "check RECONCILE_STATE, that the container exists, and the identity's Storage Blob Data role on it",
                ));
                checks.push(Check::skip("ledger lock", "not checked: the ledger cannot be reached"));
            }
        }

        // Graph: one cheap read, only once the permission check passed (Graph's 403 says less).
        let readable = matches!(Need::Read.judge(&token), Grant::Granted(_));
        checks.push(if !readable {
            Check::skip("graph", "not read: the token may not read managed devices (see above)")
        } else {
            match conn.graph.probe().await {
                Ok(n) => Check::pass("graph", format!("{} answered a read of managedDevices ({n} device)", conn.endpoints.graph_root)),
                Err(e) => {
                    // Graph refused the token itself: the network is fine, the token is not.
                    let fix = match &e {
                        crate::graph::ReadError::Graph(g) if g.status == 401 => {
                            "Graph refused the token: check that it is for Microsoft Graph of AZURE_CLOUD's cloud (its audience), that it has not expired, and that RECONCILE_GRAPH_TOKEN (if set) is current"
                        }
                        _ => "check the network path to Microsoft Graph, AZURE_CLOUD, and that Intune is licensed in the tenant",
                    };
                    Check::from_error("graph", &anyhow::Error::from(e), fix)
                }
            }
        });
        std::mem::take(&mut checks)
    })
}

/// The checks after `why` stopped them, and the CI variables (which need nothing before them).
fn skip_rest(mut checks: Vec<Check>, why: &str) -> Vec<Check> {
    for what in ["token", "permissions for plan", "permissions for apply", "tenant", "ledger", "ledger lock", "graph"] {
        if checks.iter().all(|c| c.what != what) {
            checks.push(Check::skip(what, format!("not checked: {why}")));
        }
    }
    checks
}

/// What `reconcile comment` will need in this CI system (only the plan job comments).
fn comment_variables(job: Option<Job>, env: &dyn Fn(&str) -> Option<String>) -> Vec<Check> {
    const WHAT: &str = "comment variables";
    let get = |k: &str| env(k).filter(|v| !v.trim().is_empty() && !crate::env::unexpanded(v));
    if job == Some(Job::Apply) {
        return vec![Check::skip(WHAT, "not checked (--for apply: only the plan job comments)")];
    }
    if get(crate::env::TF_BUILD).is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        if get(crate::env::SYSTEM_PULLREQUEST_PULLREQUESTID).is_none() {
            return vec![Check::skip(WHAT, "Azure Pipelines, but not a pull-request build: nothing to comment on")];
        }
        let missing: Vec<&str> = [
            crate::env::SYSTEM_ACCESSTOKEN,
            crate::env::SYSTEM_COLLECTIONURI,
            crate::env::SYSTEM_TEAMPROJECTID,
            crate::env::BUILD_REPOSITORY_ID,
        ]
        .into_iter()
        .filter(|k| get(k).is_none())
        .collect();
        return vec![if missing.is_empty() {
            Check::pass(
                WHAT,
                "Azure Pipelines: SYSTEM_ACCESSTOKEN, SYSTEM_COLLECTIONURI, SYSTEM_TEAMPROJECTID, BUILD_REPOSITORY_ID and the pull request id are set",
            )
        } else {
            Check::fail(
                WHAT,
                format!("Azure Pipelines: {} not set (or left as an unexpanded `$(…)`)", missing.join(", ")),
                "map the token into the step (`env: SYSTEM_ACCESSTOKEN: $(System.AccessToken)`) and allow the build service to \"Contribute to pull requests\"",
            )
        }];
    }
    if get(crate::env::GITHUB_ACTIONS).as_deref() == Some("true") {
        let event = get(crate::env::GITHUB_EVENT_PATH)
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        let pr = event.as_ref().and_then(crate::ci::github::pr_from_event);
        if event.is_some() && pr.is_none() {
            return vec![Check::skip(
                WHAT,
                "GitHub Actions, but the event is not a pull request: nothing to comment on",
            )];
        }
        let mut missing: Vec<&str> = [crate::env::GITHUB_TOKEN, crate::env::GITHUB_REPOSITORY]
            .into_iter()
            .filter(|k| get(k).is_none())
            .collect();
        if event.is_none() {
            missing.push("GITHUB_EVENT_PATH (a readable event)");
        }
        return vec![if missing.is_empty() {
            Check::pass(
                WHAT,
                format!(
                    "GitHub Actions: GITHUB_TOKEN and GITHUB_REPOSITORY are set, pull request #{}",
                    pr.unwrap_or_default()
                ),
            )
        } else {
            Check::fail(
                WHAT,
                format!("GitHub Actions: {} not set", missing.join(", ")),
                "pass `env: GITHUB_TOKEN: ${{ github.token }}` to the step and give the job `permissions: pull-requests: write`",
            )
        }];
    }
    vec![Check::skip(WHAT, "not inside GitHub Actions or Azure Pipelines")]
}

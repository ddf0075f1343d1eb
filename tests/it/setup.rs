//! A new administrator's first hour: `reconcile doctor`, the permission check every online
//! command makes before its first Graph request, and tenants given by domain name.

use intune_reconcile::sim::{SIM_DOMAIN, SIM_TENANT_ID, SimConfig};

use crate::common::{Repo, SECRET, android_devices, android_id, manifest_for, posts, sim, stderr, stdout};

const READ: &str = "DeviceManagementManagedDevices.Read.All";
const PRIVILEGED: &str = "DeviceManagementManagedDevices.PrivilegedOperations.All";

/// A repository with a ledger and one manifest of `n` Android phones, and a simulator whose tokens
/// carry `roles`.
fn setup(n: usize, roles: &[&str]) -> (Repo, intune_reconcile::sim::SimHandle) {
    let repo = Repo::empty();
    repo.fast_config("");
    let ids: Vec<String> = (0..n).map(android_id).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    repo.write("manifests/a.yaml", manifest_for("a", &refs));
    let sim = sim(SimConfig {
        devices: android_devices(n),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        ..SimConfig::default()
    });
    (repo, sim)
}

/// Whether any request but a token request reached the simulator.
fn graph_requests(sim: &intune_reconcile::sim::SimHandle) -> Vec<String> {
    sim.requests().into_iter().filter(|r| !r.path.ends_with("/oauth2/v2.0/token")).map(|r| r.path).collect()
}

// Looking devices up is a read of its own: a token with only PrivilegedOperations.All used to
// start an apply and fail halfway, at the first lookup (Graph's 403). Every online command now
// names what it lacks before its first Graph request.
#[test]
fn every_online_command_checks_its_permissions_before_the_first_graph_request() {
    let (repo, sim) = setup(2, &[PRIVILEGED]);
    let key = repo.actions()[0].key.as_str().to_owned();
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&format!("lacks the permission {READ} that `apply` needs (it has: {PRIVILEGED})")), "{err}");
    assert!(err.contains("admin consent"), "{err}");
    assert!(!err.contains("looking devices up failed"), "{err}");
    assert!(graph_requests(&sim).is_empty(), "no Graph request: {:?}", graph_requests(&sim));
    // Reading is what plan, refresh and adopt need; the privileged permission alone is not it.
    for args in [vec!["plan"], vec!["refresh"], vec!["state", "adopt", &key, "--reason", "seen in the portal"]] {
        let out = repo.cmd_on(&sim).args(&args).output().expect("run");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains(&format!("lacks the permission {READ} that `")), "{args:?}: {err}");
    }
    assert!(graph_requests(&sim).is_empty(), "no Graph request: {:?}", graph_requests(&sim));
    assert!(posts(&sim).is_empty());

    // Both permissions: the apply runs.
    let (repo, sim) = setup(2, &[READ, PRIVILEGED]);
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().success();
    assert_eq!(posts(&sim).len(), 2);
}

// A person's token (delegated, `scp`) is judged by the same rule, with the person's fix.
#[test]
fn delegated_tokens_are_judged_by_their_scopes() {
    use base64::Engine as _;
    let (repo, sim) = setup(1, &[READ, PRIVILEGED]);
    let claims = serde_json::json!({"tid": "test-tenant", "aud": "https://graph.microsoft.com", "scp": READ});
    let token = format!(
        "eyJhbGciOiJub25lIn0.{}.sig",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    sim.state().accept_token(&token);
    repo.cmd_on(&sim).env("RECONCILE_GRAPH_TOKEN", &token).arg("plan").assert().success();
    let out =
        repo.cmd_on(&sim).env("RECONCILE_GRAPH_TOKEN", &token).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&format!("lacks the permission {PRIVILEGED} that `apply` needs")), "{err}");
    assert!(err.contains("signed in as a person"), "{err}");
    assert!(posts(&sim).is_empty());
}

// A ledger is bound to a tenant id, never a name: a domain is resolved through Entra's discovery
// document on the login host (here the simulator's), and a name that is neither is refused.
#[test]
fn init_binds_the_ledger_to_the_id_a_domain_stands_for() {
    let repo = Repo::from_examples();
    let sim = sim(crate::common::sim_config());
    let out = repo
        .cmd_on(&sim)
        .env("AZURE_TENANT_ID", SIM_TENANT_ID)
        .args(["init", "--tenant", SIM_DOMAIN])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(repo.ledger_json()["tenant"], SIM_TENANT_ID);
    assert!(stdout(&out).contains(&format!("for tenant `{SIM_TENANT_ID}`")), "{}", stdout(&out));
    let asked: Vec<String> = sim.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(asked, [format!("/{SIM_DOMAIN}/v2.0/.well-known/openid-configuration")]);

    // AZURE_TENANT_ID may be the domain too: init resolves it, and every run's token (whose `tid`
    // is the id) matches it.
    let again = Repo::from_examples();
    let out = again.cmd_on(&sim).env("AZURE_TENANT_ID", SIM_DOMAIN).arg("init").output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(again.ledger_json()["tenant"], SIM_TENANT_ID);
    let out = again.cmd_on(&sim).env("AZURE_TENANT_ID", SIM_DOMAIN).arg("plan").output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Plan: 6 to reset, 1 to remove a passcode"), "{}", stdout(&out));
    // A domain that does not stand for the token's tenant is another tenant: refused before any
    // Graph request. (The token is this ledger's tenant's: only the domain check can refuse.)
    let token = sim.state().mint_token_for(SIM_TENANT_ID, vec![READ.to_owned(), PRIVILEGED.to_owned()]);
    let before = sim.requests().len();
    let out = again
        .cmd_on(&sim)
        .env("AZURE_TENANT_ID", "fabrikam.onmicrosoft.com")
        .env("RECONCILE_GRAPH_TOKEN", &token)
        .arg("plan")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains(&format!(
            "the access token is for tenant `{SIM_TENANT_ID}`, but AZURE_TENANT_ID is `fabrikam.onmicrosoft.com`"
        )),
        "{}",
        stderr(&out)
    );
    let graph = sim.requests()[before..].iter().filter(|r| r.path.contains("/deviceManagement/")).count();
    assert_eq!(graph, 0, "no Graph request for another tenant");
    // The same token with the domain that stands for its tenant is accepted.
    let out = again
        .cmd_on(&sim)
        .env("AZURE_TENANT_ID", SIM_DOMAIN)
        .env("RECONCILE_GRAPH_TOKEN", &token)
        .arg("plan")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));

    // `--tenant` naming another tenant than the credential's AZURE_TENANT_ID: refused, for no
    // run of this pipeline could use that ledger.
    let other = Repo::from_examples();
    let out = other
        .cmd_on(&sim)
        .env("AZURE_TENANT_ID", "11111111-1111-4111-8111-111111111111")
        .args(["init", "--tenant", SIM_DOMAIN])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("--tenant `{SIM_DOMAIN}` is tenant `{SIM_TENANT_ID}`")), "{err}");
    assert!(err.contains("nothing was created"), "{err}");
    assert!(!other.path().join(".reconcile").exists(), "nothing was created");

    // A stray space around a copied id is not part of it, in the token request as in the check.
    let spaced = Repo::from_examples();
    let out = spaced.cmd_on(&sim).env("AZURE_TENANT_ID", " test-tenant ").arg("init").output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = spaced.cmd_on(&sim).env("AZURE_TENANT_ID", "test-tenant ").arg("plan").output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));

    // A domain Entra does not know: refused with what to give instead, nothing created.
    let none = Repo::from_examples();
    let out = none.cmd_on(&sim).args(["init", "--tenant", "fabrikam.onmicrosoft.com"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("cannot resolve the domain `fabrikam.onmicrosoft.com` to a tenant id"), "{err}");
    assert!(err.contains("AADSTS90002") && err.contains("give the tenant id, a GUID"), "{err}");
    assert!(!none.path().join(".reconcile").exists(), "nothing was created");

    // A plain name is the simulator's way of naming tenants: outside loopback it is refused, with
    // no request anywhere.
    let out = none.cmd().args(["init", "--tenant", "contoso"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("`contoso` is not a tenant id"), "{}", stderr(&out));
    assert!(!none.path().join(".reconcile").exists(), "nothing was created");
    // A GUID is bound as it is (lowercase), without asking anyone.
    let out = none.cmd().args(["init", "--tenant", "3C9A7E21-4B6D-4F8A-B1C2-5D7E9F0A2B4C"]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(none.ledger_json()["tenant"], "3c9a7e21-4b6d-4f8a-b1c2-5d7e9f0a2b4c");
}

/// Lines of `doctor`'s output that start with `mark`.
fn marked<'a>(out: &'a str, mark: &str) -> Vec<&'a str> {
    out.lines().filter(|l| l.starts_with(mark)).collect()
}

#[test]
fn doctor_passes_on_a_working_setup_and_writes_nothing() {
    // The built-in simulator: every check passes.
    let repo = Repo::from_examples();
    let out = repo.cmd().args(["doctor", "--simulate"]).output().expect("run");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(marked(&text, "✗").is_empty(), "{text}");
    for what in [
        "credential",
        "token",
        "permissions for plan",
        "permissions for apply",
        "tenant",
        "ledger",
        "ledger lock",
        "graph",
    ] {
        assert!(text.lines().any(|l| l.starts_with(&format!("✓ {what} "))), "{what}: {text}");
    }
    assert!(text.contains("SIMULATED: All checks passed."), "{text}");

    // A real-looking setup against the simulator: a client secret, the ledger, a pull request in
    // GitHub Actions.
    let (repo, sim) = setup(1, &[READ, PRIVILEGED]);
    repo.write("event.json", r#"{"pull_request":{"number":42}}"#);
    let before = std::fs::read(repo.path().join(".reconcile/state.json")).expect("ledger");
    let out = repo
        .cmd_on(&sim)
        .arg("doctor")
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_TOKEN", "ghs_test_token")
        .env("GITHUB_REPOSITORY", "contoso/devices")
        .env("GITHUB_EVENT_PATH", repo.path().join("event.json"))
        .output()
        .expect("run");
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("✓ credential             client secret"), "{text}");
    assert!(text.contains("✓ tenant                 `test-tenant`, as AZURE_TENANT_ID `test-tenant` says"), "{text}");
    assert!(text.contains("✓ ledger lock            taken and released (nothing written)"), "{text}");
    assert!(
        text.contains(
            "✓ comment variables      GitHub Actions: GITHUB_TOKEN and GITHUB_REPOSITORY are set, pull request #42"
        ),
        "{text}"
    );
    // One cheap read, nothing else; the ledger is as it was and its lock free.
    let reads: Vec<_> = sim.requests().into_iter().filter(|r| r.path.contains("deviceManagement")).collect();
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert_eq!((reads[0].method.as_str(), reads[0].query.as_str()), ("GET", "$top=1&$select=id"));
    assert_eq!(std::fs::read(repo.path().join(".reconcile/state.json")).expect("ledger"), before);
    assert!(!repo.path().join(".reconcile/state.json.journal").exists());
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().success();
    // No secret, token or CI token ever shows.
    let mut secrets = sim.secrets();
    secrets.extend([SECRET.to_owned(), "ghs_test_token".to_owned()]);
    for s in secrets {
        assert!(!text.contains(&s) && !stderr(&out).contains(&s), "a secret leaked");
    }
}

#[test]
fn doctor_names_each_failure_with_its_fix() {
    // A read-only identity (the plan job's): apply's permission fails, with the permission to
    // add; `--for plan` checks only what the plan job needs.
    let (repo, sim) = setup(1, &[READ]);
    let out = repo.cmd_on(&sim).arg("doctor").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert_eq!(marked(&text, "✗"), [format!("✗ permissions for apply  missing {PRIVILEGED}")], "{text}");
    assert!(
        text.contains(&format!("fix: in Entra ID, add the Microsoft Graph application permission {PRIVILEGED}")),
        "{text}"
    );
    assert!(text.contains("1 check failed."), "{text}");
    let out = repo.cmd_on(&sim).args(["doctor", "--for", "plan"]).output().expect("run");
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("- ledger lock            not checked (--for plan"), "{}", stdout(&out));

    // The lock held by a running apply: the lock check fails, naming the holder.
    let (repo, sim) = setup(1, &[READ, PRIVILEGED]);
    let held = repo.store().lock(std::time::Duration::ZERO, "reconcile apply", None).expect("lock");
    let out = repo.cmd_on(&sim).args(["doctor", "--for", "apply"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.lines().any(|l| l.starts_with("✗ ledger lock")), "{text}");
    drop(held);

    // No ledger, and comment variables missing in a pull-request build of Azure Pipelines.
    let (repo, sim) = setup(1, &[READ, PRIVILEGED]);
    std::fs::remove_dir_all(repo.path().join(".reconcile")).expect("rm ledger");
    let out = repo
        .cmd_on(&sim)
        .arg("doctor")
        .env("AZURE_TENANT_ID", "tenant-b")
        .env("AZURE_AUTHORITY_HOST", sim.url())
        .env("TF_BUILD", "True")
        .env("SYSTEM_PULLREQUEST_PULLREQUESTID", "17")
        // What the pipeline passes when the step does not map the token: the macro, unexpanded.
        .env("SYSTEM_ACCESSTOKEN", "$(System.AccessToken)")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("✗ ledger                 there is no ledger at `.reconcile/state.json`"), "{text}");
    assert!(text.contains("fix: create it once with `reconcile init`"), "{text}");
    assert!(
        text.contains("✗ comment variables      Azure Pipelines: SYSTEM_ACCESSTOKEN, SYSTEM_COLLECTIONURI, SYSTEM_TEAMPROJECTID, BUILD_REPOSITORY_ID not set"),
        "{text}"
    );
    assert!(
        text.contains("fix: map the token into the step (`env: SYSTEM_ACCESSTOKEN: $(System.AccessToken)`)"),
        "{text}"
    );

    // No credential at all: what to set; everything that needs it is skipped, not failed.
    let out = repo.cmd().arg("doctor").env("PATH", "/nonexistent").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert_eq!(marked(&text, "✗").len(), 1, "{text}");
    assert!(text.contains("✗ credential             no Graph credentials in the environment"), "{text}");
    assert!(text.contains("- graph                  not checked: no credential"), "{text}");
}

// A token Graph refuses (401) is the token's fault, not the network's: the fix says so.
#[test]
fn doctor_blames_the_token_when_graph_refuses_it() {
    let (repo, sim) = setup(1, &[READ, PRIVILEGED]);
    // Well formed, the right tenant and roles, but issued by another authority.
    let elsewhere = crate::common::sim(crate::common::sim_config());
    let foreign = elsewhere.state().mint_token_for("test-tenant", vec![READ.to_owned(), PRIVILEGED.to_owned()]);
    let out = repo.cmd_on(&sim).arg("doctor").env("RECONCILE_GRAPH_TOKEN", &foreign).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.lines().any(|l| l.starts_with("✗ graph")), "{text}");
    assert!(text.contains("fix: Graph refused the token"), "{text}");
    assert!(!text.contains("network path"), "{text}");
}

// A token whose tenant is not AZURE_TENANT_ID's fails the tenant check, naming both.
#[test]
fn doctor_compares_the_tokens_tenant_with_the_environments_and_the_ledgers() {
    let (repo, sim) = setup(1, &[READ, PRIVILEGED]);
    let b = sim.state().mint_token_for("tenant-b", vec![READ.to_owned(), PRIVILEGED.to_owned()]);
    let out = repo.cmd_on(&sim).arg("doctor").env("RECONCILE_GRAPH_TOKEN", &b).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains(
            "✗ tenant                 the access token is for tenant `tenant-b`, but AZURE_TENANT_ID is `test-tenant`"
        ),
        "{text}"
    );
    assert!(!text.contains(&b) && !stderr(&out).contains(&b), "the token never shows");
    // No AZURE_TENANT_ID: the ledger's tenant refuses it.
    let out = repo
        .cmd_on(&sim)
        .arg("doctor")
        .env("RECONCILE_GRAPH_TOKEN", &b)
        .env_remove("AZURE_TENANT_ID")
        .output()
        .expect("run");
    let text = stdout(&out);
    assert!(
        text.lines().any(|l| l.starts_with("✗ ledger tenant") && l.contains("test-tenant") && l.contains("tenant-b")),
        "{text}"
    );
}

// The standalone simulator rehearses the two failures of a first setup: a wrong client secret,
// and an app registration without the read permission. Before, it took any secret and granted
// fixed roles, so neither could be seen before meeting it in a real tenant.
#[test]
fn the_standalone_simulator_rehearses_a_wrong_secret_and_a_missing_permission() {
    let repo = Repo::from_examples();
    repo.fast_config("");
    let mut sim = crate::common::StandaloneSim::start(&["--client-secret", "the-right-one", "--roles", PRIVILEGED]);
    let banner = sim.banner_until("Tokens carry");
    assert!(banner.contains(&format!("Tokens carry the application permissions {PRIVILEGED}.")), "{banner}");
    assert!(banner.contains("AZURE_CLIENT_SECRET=<the --client-secret value>"), "{banner}");
    assert!(!banner.contains("the-right-one"), "the banner never repeats the secret: {banner}");
    let wrong = repo.cmd().envs(sim.env(SECRET)).arg("plan").output().expect("run");
    assert_eq!(wrong.status.code(), Some(1));
    let err = stderr(&wrong);
    assert!(err.contains("invalid_client") && err.contains("AADSTS7000215: Invalid client secret provided."), "{err}");
    assert!(!err.contains(SECRET) && !stdout(&wrong).contains(SECRET), "the secret is never shown");
    let doctor = repo.cmd().envs(sim.env(SECRET)).arg("doctor").output().expect("run");
    assert_eq!(doctor.status.code(), Some(1));
    let text = stdout(&doctor);
    assert!(text.lines().any(|l| l.starts_with("✗ token") && l.contains("AADSTS7000215")), "{text}");

    // The right secret: a token, carrying only the roles given.
    let missing = repo.cmd().envs(sim.env("the-right-one")).arg("plan").output().expect("run");
    assert_eq!(missing.status.code(), Some(1));
    let err = stderr(&missing);
    assert!(err.contains(&format!("lacks the permission {READ} that `plan` needs (it has: {PRIVILEGED})")), "{err}");
    let doctor = repo.cmd().envs(sim.env("the-right-one")).arg("doctor").output().expect("run");
    let text = stdout(&doctor);
    assert!(text.contains("✓ token"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("✗ permissions for plan") && l.contains(READ)), "{text}");
    assert_eq!(sim.stop().code(), Some(0));

    // Both permissions: the same secret plans.
    let sim = crate::common::StandaloneSim::start(&[
        "--client-secret",
        "the-right-one",
        "--roles",
        &format!("{READ},{PRIVILEGED}"),
    ]);
    let ok = repo.cmd().envs(sim.env("the-right-one")).arg("plan").output().expect("run");
    assert!(ok.status.success(), "{}", stderr(&ok));
}

//! Every credential kind end to end against the simulator, and secrets that never leak.

use crate::common::{Repo, SECRET, android_devices, android_id, manifest_for, posts, sim, stderr, stdout};
use intune_reconcile::sim::SimConfig;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn setup(n: usize) -> (Repo, intune_reconcile::sim::SimHandle) {
    let repo = Repo::empty();
    repo.fast_config("");
    let ids: Vec<String> = (0..n).map(android_id).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    repo.write("manifests/a.yaml", manifest_for("a", &refs));
    (repo, sim(SimConfig { devices: android_devices(n), ..SimConfig::default() }))
}

/// `out` is a refusal (exit 1) that says `says`, before any request reached the simulator.
fn assert_refused_before_any_request(out: &std::process::Output, sim: &intune_reconcile::sim::SimHandle, says: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    assert!(stderr(out).contains(says), "{}", stderr(out));
    assert!(sim.requests().is_empty(), "nothing was contacted");
}

fn token_credentials(sim: &intune_reconcile::sim::SimHandle) -> Vec<String> {
    sim.requests().into_iter().filter(|r| r.path.ends_with("/oauth2/v2.0/token")).filter_map(|r| r.credential).collect()
}

/// `reconcile apply` with only the given credential variables.
fn apply_with(repo: &Repo, sim: &intune_reconcile::sim::SimHandle, vars: &[(&str, &str)]) -> std::process::Output {
    let mut c = repo.cmd();
    c.env("RECONCILE_GRAPH_URL", sim.url()).env("AZURE_AUTHORITY_HOST", sim.url()).args(["apply", "--auto-approve"]);
    for (k, v) in vars {
        c.env(k, v);
    }
    c.output().expect("run")
}

#[test]
fn pem_and_pkcs12_certificates_sign_an_assertion() {
    for (file, password) in [("client-cert.pem", None), ("client-cert.p12", Some("test-password"))] {
        let (repo, sim) = setup(1);
        let path = fixture(file);
        let mut vars = vec![
            ("AZURE_TENANT_ID", "test-tenant"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_CERTIFICATE_PATH", path.as_str()),
        ];
        if let Some(p) = password {
            vars.push(("AZURE_CLIENT_CERTIFICATE_PASSWORD", p));
        }
        let out = apply_with(&repo, &sim, &vars);
        assert!(out.status.success(), "{file}: {}", stderr(&out));
        assert_eq!(token_credentials(&sim), ["assertion:certificate"], "{file}");
        assert_eq!(posts(&sim).len(), 1);
    }
}

#[test]
fn a_wrong_pkcs12_password_is_a_clear_error() {
    let (repo, sim) = setup(1);
    let path = fixture("client-cert.p12");
    let out = apply_with(
        &repo,
        &sim,
        &[
            ("AZURE_TENANT_ID", "test-tenant"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_CERTIFICATE_PATH", &path),
            ("AZURE_CLIENT_CERTIFICATE_PASSWORD", "nope"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("client-cert.p12") && err.contains("password"), "{err}");
    assert!(!err.contains("nope"), "the password is not echoed");
    assert!(sim.requests().is_empty());
}

#[test]
fn workload_identity_file_and_github_oidc_federate() {
    let (repo, sim) = setup(1);
    let file = repo.write("token-file", "eyJ.federated.assertion\n");
    let out = apply_with(
        &repo,
        &sim,
        &[
            ("AZURE_TENANT_ID", "test-tenant"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_FEDERATED_TOKEN_FILE", file.to_str().expect("utf8")),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(token_credentials(&sim)[0].starts_with("assertion:federated:"));

    let (repo, sim) = setup(1);
    let url = format!("{}/_github/oidc?api-version=2.0", sim.url());
    let out = apply_with(
        &repo,
        &sim,
        &[
            ("AZURE_TENANT_ID", "test-tenant"),
            ("AZURE_CLIENT_ID", "c"),
            ("ACTIONS_ID_TOKEN_REQUEST_URL", &url),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runner-token"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let creds: Vec<String> = sim.requests().into_iter().filter_map(|r| r.credential).collect();
    assert_eq!(creds[0], "audience:api://AzureADTokenExchange", "the global cloud's audience");
    assert!(creds[1].starts_with("assertion:federated:"));
}

// The token file is re-read on every token request (Kubernetes rotates it).
#[test]
fn the_federated_token_file_is_re_read_for_every_token() {
    let (repo, sim) = setup(0);
    let file = repo.write("token-file", "first-assertion");
    let endpoints = intune_reconcile::graph::Endpoints::resolve(
        intune_reconcile::settings::Cloud::Global,
        intune_reconcile::settings::ApiVersion::V1,
        Some(&sim.url()),
        Some(&sim.url()),
    )
    .expect("endpoints");
    let cred = intune_reconcile::graph::Credential::FederatedFile {
        tenant: "t".into(),
        client_id: "c".into(),
        path: file.clone(),
    };
    let provider = intune_reconcile::graph::TokenProvider::new(
        intune_reconcile::graph::http_client(std::time::Duration::from_secs(5)),
        cred,
        &endpoints,
    );
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        provider.token().await.expect("first token");
        std::fs::write(&file, "second-assertion").expect("rotate");
        let first = provider.token().await.expect("cached");
        assert!(provider.invalidate(&first).await);
        provider.token().await.expect("second token");
    });
    let creds = token_credentials(&sim);
    assert_eq!(creds.len(), 2);
    assert_ne!(creds[0], creds[1], "the rotated file was read");
}

#[test]
fn a_ready_token_is_used_as_is() {
    let (repo, sim) = setup(2);
    let token = sim.state().mint_token_for(
        "test-tenant",
        vec![
            "DeviceManagementManagedDevices.Read.All".into(),
            "DeviceManagementManagedDevices.PrivilegedOperations.All".into(),
        ],
    );
    let out = apply_with(&repo, &sim, &[("RECONCILE_GRAPH_TOKEN", &token)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(token_credentials(&sim).is_empty(), "no token request");
    assert_eq!(posts(&sim).len(), 2);
}

#[test]
fn plain_http_is_refused_off_loopback_and_nothing_is_contacted() {
    let (repo, sim) = setup(1);
    let out = repo
        .cmd()
        .env("RECONCILE_GRAPH_URL", "http://graph.example.invalid")
        .env("AZURE_TENANT_ID", "test-tenant")
        .env("AZURE_CLIENT_ID", "c")
        .env("AZURE_CLIENT_SECRET", SECRET)
        .args(["apply", "--auto-approve"])
        .output()
        .expect("run");
    assert_refused_before_any_request(&out, &sim, "accepted only for loopback hosts");
}

#[test]
fn a_refused_secret_is_reported_without_the_secret() {
    let (repo, _) = setup(1);
    let sim = sim(SimConfig {
        devices: android_devices(1),
        client_secret: Some("the-right-one".into()),
        ..SimConfig::default()
    });
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("invalid_client") && err.contains("AADSTS7000215"), "{err}");
    assert!(!err.contains(SECRET));
    assert!(posts(&sim).is_empty());
}

// Tokens, the client secret and passcodes appear in no output, log or file, even at -vv.
#[test]
fn secrets_tokens_and_passcodes_never_leak() {
    let repo = Repo::from_examples();
    repo.fast_config("");
    let sim = sim(crate::common::sim_config());
    let mut outputs = Vec::new();
    for args in [
        &["-vv", "apply", "--auto-approve"][..],
        &["-vv", "refresh"],
        &["-vv", "--log-format", "json", "plan"],
        &["state", "list", "--format", "json"],
    ] {
        let out = repo.cmd_on(&sim).args(args).env("RUST_LOG", "trace").output().expect("run");
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        outputs.push((format!("{args:?} stdout"), out.stdout));
        outputs.push((format!("{args:?} stderr"), out.stderr));
    }
    let secrets = sim.secrets();
    assert!(secrets.len() >= 8, "tokens were issued and passcodes minted: {}", secrets.len());
    let files = repo.all_files();
    let mut places: Vec<(String, Vec<u8>)> = files.into_iter().map(|(p, b)| (p.display().to_string(), b)).collect();
    places.extend(outputs);
    for (place, bytes) in &places {
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains(SECRET), "client secret in {place}");
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "token or passcode in {place}");
        }
    }
    assert!(places.iter().any(|(p, _)| p.ends_with("state.json")), "the ledger was checked");
}

// Regression: the tenant is the token's `tid`, not a string from the environment. A
// token for tenant B with AZURE_TENANT_ID=A, or against A's ledger, is refused before any Graph
// request, naming both tenants.
#[test]
fn the_tenant_is_the_tokens_and_a_mismatch_is_refused_before_any_request() {
    let (repo, sim) = setup(2);
    let roles = vec![
        "DeviceManagementManagedDevices.Read.All".to_owned(),
        "DeviceManagementManagedDevices.PrivilegedOperations.All".to_owned(),
    ];
    let other = sim.state().mint_token_for("tenant-b", roles.clone());
    // A ready token for B, AZURE_TENANT_ID naming A (the ledger's tenant).
    let out = apply_with(&repo, &sim, &[("RECONCILE_GRAPH_TOKEN", &other), ("AZURE_TENANT_ID", "test-tenant")]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("tenant-b") && err.contains("test-tenant"), "names both: {err}");
    assert!(sim.requests().is_empty(), "no Graph request: {:?}", sim.requests());
    // The same token with no AZURE_TENANT_ID: the ledger (tenant A) refuses it.
    let out = apply_with(&repo, &sim, &[("RECONCILE_GRAPH_TOKEN", &other)]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("belongs to tenant `test-tenant`") && err.contains("`tenant-b`"), "{err}");
    assert!(sim.requests().is_empty());
    // A client secret for tenant B (the token endpoint of B) against A's ledger: refused after
    // the token request, before any Graph request.
    let out =
        repo.cmd_on(&sim).env("AZURE_TENANT_ID", "tenant-b").args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("belongs to tenant `test-tenant`"), "{}", stderr(&out));
    assert!(sim.requests().iter().all(|r| r.path.ends_with("/oauth2/v2.0/token")), "{:?}", sim.requests());
    assert!(posts(&sim).is_empty());
    // The right token works.
    let mine = sim.state().mint_token_for("test-tenant", roles);
    let out = apply_with(&repo, &sim, &[("RECONCILE_GRAPH_TOKEN", &mine)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(posts(&sim).len(), 2);
}

#[test]
fn an_opaque_token_cannot_name_its_tenant_and_is_refused() {
    let (repo, sim) = setup(1);
    let out = apply_with(&repo, &sim, &[("RECONCILE_GRAPH_TOKEN", "opaque-token-without-claims")]);
    assert_refused_before_any_request(&out, &sim, "not a JWT with a `tid` claim");
}

#[test]
fn delegated_scopes_count_as_permissions() {
    // A delegated (user) token carries `scp` instead of `roles`.
    use base64::Engine as _;
    let (repo, sim) = setup(1);
    let real = sim.mint_token(&[]);
    let claims = r#"{"tid":"test-tenant","scp":"DeviceManagementManagedDevices.Read.All DeviceManagementManagedDevices.PrivilegedOperations.All"}"#;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims);
    // The simulator accepts the token it issued; only the claims the tool reads are swapped.
    let parts: Vec<&str> = real.split('.').collect();
    let delegated = format!("{}.{payload}.{}", parts[0], parts[2]);
    sim.state().accept_token(&delegated);
    let out = apply_with(&repo, &sim, &[("RECONCILE_GRAPH_TOKEN", &delegated)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(posts(&sim).len(), 1, "the reset was sent with the delegated token");
}

/// A delegated token (a person's, with `scp`) for the test tenant, accepted by the simulator.
fn delegated_token(sim: &intune_reconcile::sim::SimHandle, scopes: &str) -> String {
    use base64::Engine as _;
    let claims = serde_json::json!({"tid": "test-tenant", "aud": "https://graph.microsoft.com", "scp": scopes});
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
    let token = format!("eyJhbGciOiJub25lIn0.{payload}.sig");
    sim.state().accept_token(&token);
    token
}

/// A folder holding a fake `az` that answers `script` (a POSIX shell body) and logs its arguments.
fn fake_az(script: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let az = dir.path().join("az");
    let log = dir.path().join("args.log");
    std::fs::write(&az, format!("#!/bin/sh\necho \"$@\" >> '{}'\n{script}\n", log.display())).expect("write az");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&az, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// `reconcile ARGS` with no credential variables and `PATH` holding only `bin`.
fn with_path(
    repo: &Repo,
    sim: &intune_reconcile::sim::SimHandle,
    bin: &std::path::Path,
    args: &[&str],
) -> std::process::Output {
    let mut c = repo.cmd();
    c.env("RECONCILE_GRAPH_URL", sim.url()).env("AZURE_AUTHORITY_HOST", sim.url()).env("PATH", bin).args(args);
    for var in ["AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "RECONCILE_GRAPH_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_URL"] {
        c.env_remove(var);
    }
    c.output().expect("run")
}

#[test]
fn a_person_signed_in_with_az_can_plan_and_gets_the_delegated_fix_to_apply() {
    let (repo, sim) = setup(2);
    let token = delegated_token(&sim, "DeviceManagementManagedDevices.Read.All");
    let expires = jiff::Timestamp::now().as_second() + 3600;
    let bin = fake_az(&format!(
        "printf '%s' '{{\"accessToken\": \"{token}\", \"expires_on\": {expires}, \"tokenType\": \"Bearer\"}}'"
    ));
    let plan = with_path(&repo, &sim, bin.path(), &["plan"]);
    assert!(plan.status.success(), "{}", stderr(&plan));
    assert!(crate::common::stdout(&plan).contains("Plan: 2 to reset"), "{}", crate::common::stdout(&plan));
    let args = std::fs::read_to_string(bin.path().join("args.log")).expect("az was run");
    assert_eq!(
        args.lines().next(),
        Some("account get-access-token --scope https://graph.microsoft.com/.default --output json")
    );
    assert!(token_credentials(&sim).is_empty(), "no token request to Entra: az gave it");
    // The same person cannot reset: the hint is the delegated one, not the app registration's.
    let apply = with_path(&repo, &sim, bin.path(), &["apply", "--auto-approve"]);
    assert_eq!(apply.status.code(), Some(1));
    let err = stderr(&apply);
    assert!(err.contains("signed in as a person") && err.contains("delegated Microsoft Graph permission"), "{err}");
    assert!(!err.contains("app registration and grant admin consent"), "{err}");
    assert!(!err.contains(&token), "the token is never shown");
    assert!(posts(&sim).is_empty());
}

#[test]
fn az_failures_and_missing_credentials_say_what_to_do() {
    let (repo, sim) = setup(1);
    // `az` there, but nobody signed in.
    let bin = fake_az("echo \"ERROR: Please run 'az login' to setup account.\" >&2\nexit 1");
    let out = with_path(&repo, &sim, bin.path(), &["plan"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("the Azure CLI gave no token") && err.contains("Please run 'az login'"), "{err}");
    // No `az` and no variables: both ways in are named.
    let empty = tempfile::tempdir().expect("tempdir");
    let out = with_path(&repo, &sim, empty.path(), &["plan"]);
    let err = stderr(&out);
    assert!(
        err.contains("no `az` on PATH") && err.contains("AZURE_CLIENT_SECRET") && err.contains("az login"),
        "{err}"
    );
    // An app half described: the variables that would complete it, and no fall back to `az`.
    let mut c = repo.cmd();
    c.env("RECONCILE_GRAPH_URL", sim.url()).env("AZURE_AUTHORITY_HOST", sim.url()).env("PATH", bin.path());
    c.env("AZURE_TENANT_ID", "test-tenant").env("AZURE_CLIENT_ID", "c").env_remove("AZURE_CLIENT_SECRET").arg("plan");
    let out = c.output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for var in ["AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_FEDERATED_TOKEN_FILE"] {
        assert!(err.contains(var), "{var}: {err}");
    }
    assert_eq!(
        std::fs::read_to_string(bin.path().join("args.log")).map(|s| s.lines().count()).unwrap_or(0),
        1,
        "az ran once, for the first case only"
    );
    assert!(sim.requests().is_empty());
}

// Tokens never cross clouds (a token for another cloud's Graph is refused: trust.rs), but an
// audience that is no cloud's Graph — a proxy's or a stand-in's — is left to Graph to judge.
#[test]
fn an_audience_of_no_cloud_is_left_to_graph() {
    use base64::Engine as _;
    let (repo, sim) = setup(1);
    for aud in ["api://a-graph-stand-in", "http://127.0.0.1:9"] {
        let claims = serde_json::json!({"tid": "test-tenant", "aud": aud,
            "roles": ["DeviceManagementManagedDevices.Read.All", "DeviceManagementManagedDevices.PrivilegedOperations.All"]});
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
        let token = format!("eyJhbGciOiJub25lIn0.{payload}.sig");
        sim.state().accept_token(&token);
        let out = repo.cmd_on(&sim).env("RECONCILE_GRAPH_TOKEN", &token).arg("plan").output().expect("run");
        assert!(out.status.success(), "{aud}: {}", stderr(&out));
        assert!(stderr(&out).contains("audience is not Microsoft Graph"), "{aud}: {}", stderr(&out));
    }
    let us = serde_json::json!({"tid": "test-tenant", "aud": "https://graph.microsoft.us", "roles": ["DeviceManagementManagedDevices.Read.All"]});
    let token =
        format!("eyJhbGciOiJub25lIn0.{}.sig", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(us.to_string()));
    sim.state().accept_token(&token);
    let out = repo.cmd_on(&sim).env("RECONCILE_GRAPH_TOKEN", &token).arg("plan").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not Microsoft Graph of the `global` cloud"), "{}", stderr(&out));
}

// A read that meets a 401 (a token revoked or worn out) renews the token and reads again, like a
// reset does: tokens here are good for two Graph requests each.
#[test]
fn a_read_that_meets_a_401_renews_the_token() {
    let (repo, sim) = setup(3);
    sim.state().config.token_requests = 2;
    let out = repo.cmd_on(&sim).arg("plan").output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Plan: 3 to reset"), "{}", stdout(&out));
    let reads_refused = sim.requests().iter().filter(|r| r.method == "GET" && r.status == 401).count();
    assert!(reads_refused > 0, "reads did meet 401s");
}

// One tenant check, on every online command: a token for tenant B is refused before any Graph
// request when AZURE_TENANT_ID names A (even against B's own ledger: the environment's tenant is
// checked, not only the ledger's), and against A's ledger whatever the environment says.
#[test]
fn every_online_command_refuses_another_tenants_token_before_any_request() {
    let (repo, sim) = setup(1);
    let key = repo.actions()[0].key.as_str().to_owned();
    let roles = vec![
        "DeviceManagementManagedDevices.Read.All".to_owned(),
        "DeviceManagementManagedDevices.PrivilegedOperations.All".to_owned(),
    ];
    let b = sim.state().mint_token_for("tenant-b", roles);
    let commands: [&[&str]; 5] = [
        &["plan"],
        &["apply", "--auto-approve"],
        &["refresh"],
        &["state", "adopt", &key, "--reason", "seen in the portal"],
        &["init"],
    ];
    // B's token, on the simulator's login host (on loopback, whose tenants are names).
    let with_b_token = |args: &[&str], tenant: Option<&str>| {
        let mut c = repo.cmd();
        c.env("RECONCILE_GRAPH_URL", sim.url()).env("AZURE_AUTHORITY_HOST", sim.url()).env("RECONCILE_GRAPH_TOKEN", &b);
        if let Some(t) = tenant {
            c.env("AZURE_TENANT_ID", t);
        }
        c.args(args).output().expect("run")
    };
    // A's ledger, B's token, AZURE_TENANT_ID unset: the ledger refuses (init: it exists for A).
    for args in commands {
        let out = with_b_token(args, None);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("test-tenant") && err.contains("tenant-b"), "{args:?} names both: {err}");
    }
    assert!(sim.requests().is_empty(), "no Graph request: {:?}", sim.requests());
    // B's ledger, B's token, AZURE_TENANT_ID=A: the environment's tenant refuses.
    std::fs::remove_dir_all(repo.path().join(".reconcile")).expect("rm ledger");
    repo.store().create(std::time::Duration::ZERO, "tenant-b").expect("B's ledger");
    for args in commands {
        let out = with_b_token(args, Some("test-tenant"));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        // `init` binds to AZURE_TENANT_ID without asking for a token: B's ledger is not A's.
        let want = if args == ["init"] {
            "belongs to tenant `tenant-b`, not `test-tenant`"
        } else {
            "the access token is for tenant `tenant-b`, but AZURE_TENANT_ID is `test-tenant`"
        };
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert!(sim.requests().is_empty(), "no Graph request: {:?}", sim.requests());
    assert!(posts(&sim).is_empty());
}

//! The ledger in Azure Blob Storage (SPEC §4 "Where it lives"), against a real Azure Storage API:
//! Azurite on loopback, with the simulator for Graph.

mod common;

use std::time::{Duration, Instant};

use common::azurite::{self, Azurite};
use common::{Repo, android_devices, android_id, manifest_for, posts, sim, stderr, stdout};
use intune_reconcile::sim::{Fault, FaultKind, SimConfig, SimHandle};

const CONTAINER: &str = "ledgers";

/// A repository whose `reconcile.yaml` names a blob ledger on `az`.
fn blob_repo(az: &Azurite, n: usize, extra: &str) -> (Repo, Vec<String>) {
    let repo = Repo::empty();
    let url = az.url(CONTAINER, "team-a/state.json");
    repo.write(
        "reconcile.yaml",
        format!(
            "manifests: [manifests]\nstate: {url}\ngraph:\n  concurrency: 3\n  writeBudget: {{ requests: 1000, window: 1s }}\n  timeout: 2s\n  unknownGrace: 0s\n  backoff: {{ initial: 10ms, max: 200ms }}\n{extra}"
        ),
    );
    let ids: Vec<String> = (0..n).map(android_id).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    repo.write("manifests/batch.yaml", manifest_for("batch", &refs));
    (repo, ids)
}

fn cmd(repo: &Repo, sim: &SimHandle) -> assert_cmd::Command {
    let mut c = repo.cmd_on(sim);
    c.env("AZURE_STORAGE_KEY", azurite::KEY);
    c
}

fn spawn(repo: &Repo, sim: &SimHandle, args: &[&str]) -> std::process::Child {
    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin!("reconcile"));
    c.current_dir(repo.path())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .env_remove("RUST_LOG")
        .env("RECONCILE_GRAPH_URL", sim.url())
        .env("AZURE_AUTHORITY_HOST", sim.url())
        .env("AZURE_TENANT_ID", "test-tenant")
        .env("AZURE_CLIENT_ID", "test-client")
        .env("AZURE_CLIENT_SECRET", common::SECRET)
        .env("AZURE_STORAGE_KEY", azurite::KEY);
    c.spawn().expect("spawn reconcile")
}

fn sim_for(n: usize, tweak: impl FnOnce(&mut SimConfig)) -> SimHandle {
    let mut cfg = SimConfig { devices: android_devices(n), ..SimConfig::default() };
    tweak(&mut cfg);
    sim(cfg)
}

fn per_device(sim: &SimHandle) -> std::collections::HashMap<String, usize> {
    let mut m = std::collections::HashMap::new();
    for p in posts(sim) {
        *m.entry(p.path).or_insert(0) += 1;
    }
    m
}

fn wait_for_posts(sim: &SimHandle, n: usize) {
    let start = Instant::now();
    while posts(sim).len() < n {
        assert!(start.elapsed() < Duration::from_secs(60), "the apply never got going");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn init_apply_plan_and_inspect_a_blob_ledger() {
    let az = Azurite::start();
    az.create_container(CONTAINER);
    let (repo, ids) = blob_repo(&az, 5, "");
    let sim = sim_for(5, |_| {});
    // Missing: refused by apply, like a local one, naming the URL and `reconcile init`.
    let out = cmd(&repo, &sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&az.url(CONTAINER, "team-a/state.json")), "{}", stderr(&out));
    assert!(stderr(&out).contains("reconcile init"), "{}", stderr(&out));
    assert!(posts(&sim).is_empty());

    let out = cmd(&repo, &sim).arg("init").output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Created the ledger"), "{}", stdout(&out));
    assert_eq!(az.list(CONTAINER), ["team-a/state.json", "team-a/state.json.lock"]);
    let out = cmd(&repo, &sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(per_device(&sim).len(), 5);
    assert!(per_device(&sim).values().all(|&n| n == 1));
    // Compacted at the end: a snapshot and the (released) lock, no journal entries left.
    assert_eq!(az.list(CONTAINER), ["team-a/state.json", "team-a/state.json.lock"]);
    let snap: serde_json::Value =
        serde_json::from_str(&az.get(CONTAINER, "team-a/state.json").expect("snapshot")).expect("json");
    assert_eq!(snap["tenant"], "test-tenant");
    assert_eq!(snap["records"].as_object().map(|r| r.len()), Some(5));
    let lock: serde_json::Value =
        serde_json::from_str(&az.get(CONTAINER, "team-a/state.json.lock").expect("lock")).expect("json");
    assert_eq!(lock["released"], true, "{lock}");

    let out = cmd(&repo, &sim).args(["plan", "--detailed-exitcode"]).output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}\n{}", stdout(&out), stderr(&out));
    let out = cmd(&repo, &sim).args(["state", "list"]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    for id in &ids {
        assert!(stdout(&out).contains(id.as_str()), "{}", stdout(&out));
    }
    // Nothing local was written for the ledger.
    assert!(!repo.path().join(".reconcile/state.json").exists());
    let _ = spawn;
    let _ = wait_for_posts;
    let _ = (Fault { device_id: None, kind: FaultKind::Throttle, times: 0 },);
}

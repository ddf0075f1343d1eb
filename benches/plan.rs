//! Benchmark: `reconcile plan --offline` on 20,000 actions in 200 manifests against a ledger that
//! holds 10,000 recorded actions, then ten times that (200,000 actions in 2,000 files, 100,000
//! recorded) to show the cost grows linearly. Every recorded attempt carries the provenance a CI
//! run gives it (one run per manifest, its pull request's). Reports wall time (min / median / max
//! of 15 runs, 5 for the large one) and the peak resident memory of the process. Goal on a 2-core
//! machine: 0.08 s and 40 MB for the first, and ten times that at most for the second.
//!
//! Then a ledger a help desk reaches in a few years: 100,003 records, every action of the
//! manifests recorded. `plan --offline` on it, and an `apply` of 40 new actions against the
//! simulator (the ledger restored before each run). Goal: under 1 s and 150 MiB each.
//!
//! Run with `cargo bench --bench plan` (`-- small`, `-- large` or `-- ledger` runs one group).
//! `BENCH_BIN=path` runs another build of `reconcile` on the same fixtures (before/after figures).
//! Peak RSS is measured by `/usr/bin/time`.

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use intune_reconcile::ledger::{Attempt, LocalStore, Record, Status};
use intune_reconcile::manifest::{self, ManifestInput};
use intune_reconcile::sim::{SimConfig, SimHandle};

const DEVICES_PER_MANIFEST: usize = 100;
/// The tenant of every ledger here, and of the simulator's token.
const TENANT: &str = "bench";

fn main() {
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let wanted = |group: &str| only.is_empty() || only.iter().any(|o| o == group);
    if wanted("small") {
        bench(200, 10_000, 15);
    }
    if wanted("large") {
        bench(2_000, 100_000, 5);
    }
    if wanted("ledger") {
        large_ledger(100_003, 5);
    }
}

/// A fixture folder; `BENCH_KEEP=1` keeps it for profiling by hand.
#[allow(clippy::disallowed_methods)] // the benchmark's own setting, not the tool's
fn fixture() -> (Option<tempfile::TempDir>, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    if std::env::var_os("BENCH_KEEP").is_some() {
        let root = dir.keep();
        println!("fixture in {}", root.display());
        return (None, root);
    }
    let root = dir.path().to_path_buf();
    (Some(dir), root)
}

fn bench(manifests: usize, recorded: usize, runs: usize) {
    let (_dir, root) = fixture();
    let root = root.as_path();
    let setup = Instant::now();
    write_manifests(root, manifests * DEVICES_PER_MANIFEST);
    write_ledger(root, 2, recorded);
    println!(
        "fixture: {manifests} manifests, {} actions, {recorded} recorded (built in {:.1?})",
        manifests * DEVICES_PER_MANIFEST,
        setup.elapsed()
    );
    let mut peak = 0;
    for format in ["text", "json"] {
        let runs = (0..runs).map(|_| measure(plan(root).args(["--format", format]))).collect();
        peak = peak.max(report(&format!("plan --offline --format {format:<4}"), runs));
    }
    println!("peak RSS of any run: {:.1} MB", peak as f64 / 1024.0);
}

/// `plan --offline` on a ledger of `recorded` records, every action of the manifests recorded,
/// then `apply` of 40 new actions on it (the ledger restored before each run).
fn large_ledger(recorded: usize, runs: usize) {
    let (_dir, root) = fixture();
    let root = root.as_path();
    let setup = Instant::now();
    write_manifests(root, recorded);
    write_ledger(root, 1, recorded);
    let state = root.join(".reconcile/state.json");
    let snapshot = std::fs::read(&state).unwrap();
    println!(
        "fixture: {recorded} actions, all recorded, ledger {:.1} MB (built in {:.1?})",
        snapshot.len() as f64 / 1e6,
        setup.elapsed()
    );
    report("plan --offline", (0..runs).map(|_| measure(&mut plan(root))).collect());

    let new: Vec<String> = (0..40).map(|i| format!("00000000-0000-4000-9000-{i:012}")).collect();
    let devices: Vec<_> = new
        .iter()
        .enumerate()
        .map(|(i, id)| {
            serde_json::json!({"id": id, "deviceName": format!("NEW-{i}"), "serialNumber": format!("NEW{i:08}"),
                "operatingSystem": "Android", "managedDeviceOwnerType": "company", "managementState": "managed"})
            .as_object()
            .unwrap()
            .clone()
        })
        .collect();
    let mut manifest = String::from(
        "apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: new-40\nspec:\n  devices:\n",
    );
    for id in &new {
        let _ = writeln!(manifest, "    - id: {id}");
    }
    std::fs::write(root.join("manifests/new-40.yaml"), manifest).unwrap();
    // Intune's write budget out of the way (40 writes would take 5 s at its pace): what is measured
    // is the ledger's cost, not the budget's.
    std::fs::write(root.join("reconcile.yaml"), "graph:\n  writeBudget: { requests: 10000, window: 20s }\n").unwrap();
    let applies = (0..runs)
        .map(|_| {
            // A fresh tenant each time: one that remembers the last run's resets would have them
            // adopted, not sent.
            let sim =
                SimHandle::start(SimConfig { devices: devices.clone(), write_limit: None, ..SimConfig::default() }, 0)
                    .unwrap();
            std::fs::write(&state, &snapshot).unwrap();
            let mut apply = reconcile();
            apply
                .args(["apply", "--auto-approve", "-q"])
                .current_dir(root)
                .env("RECONCILE_GRAPH_URL", sim.url())
                .env("AZURE_AUTHORITY_HOST", sim.url())
                .env("AZURE_TENANT_ID", TENANT)
                .env("AZURE_CLIENT_ID", "bench")
                .env("AZURE_CLIENT_SECRET", "bench");
            let run = measure(&mut apply);
            let sent: Vec<usize> = new.iter().map(|id| sim.resets_applied(id)).collect();
            assert!(sent.iter().all(|&n| n == 1), "each new action sent once: {sent:?}");
            run
        })
        .collect();
    report("apply of 40 new actions", applies);
}

/// The binary measured: this build's, or `BENCH_BIN`.
#[allow(clippy::disallowed_methods)] // the benchmark's own setting, not the tool's
fn reconcile() -> Command {
    Command::new(std::env::var_os("BENCH_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_reconcile").into()))
}

/// `reconcile plan --offline` in `root`.
fn plan(root: &Path) -> Command {
    let mut c = reconcile();
    c.args(["plan", "--offline"]).current_dir(root).env("AZURE_TENANT_ID", TENANT);
    c
}

/// Prints min / median / max of the runs' wall times and their peak RSS; returns the peak (KiB).
fn report(what: &str, mut runs: Vec<(Duration, i64)>) -> i64 {
    let peak = runs.iter().map(|r| r.1).max().unwrap_or(0);
    runs.sort();
    let n = runs.len();
    println!(
        "{what}  min {:>7.1} ms  median {:>7.1} ms  max {:>7.1} ms  peak RSS {:.1} MiB",
        ms(runs[0].0),
        ms(runs[n / 2].0),
        ms(runs[n - 1].0),
        peak as f64 / 1024.0
    );
    peak
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn write_manifests(root: &Path, actions: usize) {
    for m in 0..actions.div_ceil(DEVICES_PER_MANIFEST) {
        let mut s = format!(
            "apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: bench-{m:04}\n  ticket: INC-{m}\n  reason: benchmark\nspec:\n  devices:\n"
        );
        for d in 0..DEVICES_PER_MANIFEST.min(actions - m * DEVICES_PER_MANIFEST) {
            let n = m * DEVICES_PER_MANIFEST + d;
            let _ = match n % 4 {
                0 => writeln!(s, "    - id: {:08x}-0000-4000-8000-{:012x}", n, n),
                1 => writeln!(s, "    - serialNumber: SN{n:010}"),
                2 => writeln!(s, "    - deviceName: DEVICE-{n:06}"),
                _ => writeln!(s, "    - imei: \"35{n:013}\""),
            };
        }
        let team = ["helpdesk", "security", "field"][m % 3];
        let path = root.join(format!("manifests/{team}/bench-{m:04}.yaml"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, s).unwrap();
    }
}

/// A ledger of `recorded` records, every `step`-th action of the manifests, each with one
/// accepted attempt carrying the provenance of the CI run that applied its manifest.
fn write_ledger(root: &Path, step: usize, recorded: usize) {
    let mut diags = Default::default();
    let files = manifest::discover(
        &[ManifestInput {
            base: root.to_path_buf(),
            pattern: "manifests".into(),
            origin: None,
            pos: None,
            confine_to: None,
        }],
        &mut diags,
    );
    let loaded = manifest::load(&files, manifest::validate::Context { beta_api: false });
    assert!(!loaded.diagnostics.has_errors());
    let store = LocalStore::new(root.join(".reconcile/state.json"));
    store.create(Duration::ZERO, TENANT).unwrap();
    let mut w = store.lock(Duration::ZERO, "bench", Some(TENANT)).unwrap();
    let now = jiff::Timestamp::now();
    let records = loaded
        .actions()
        .iter()
        .step_by(step)
        .take(recorded)
        .enumerate()
        .map(|(i, a)| {
            let m = a.manifest.trim_start_matches("bench-");
            let mut r = Record::new(a, Some(uuid::Uuid::new_v4().to_string()), now);
            r.status = Status::Accepted;
            r.device_name = Some(format!("DEVICE-{i:06}"));
            r.attempts.push(attempt(m.parse().unwrap(), m, now));
            r
        })
        .collect::<Vec<_>>();
    assert_eq!(records.len(), recorded);
    w.record_all(records).unwrap();
    w.commit().unwrap();
}

/// An accepted attempt as a GitHub Actions run `run` sends it, for manifest `m`.
fn attempt(run: usize, m: &str, now: jiff::Timestamp) -> Attempt {
    let mut a: Attempt = serde_json::from_value(serde_json::json!({
        "startedAt": now,
        "clientRequestId": uuid::Uuid::new_v4(), "finishedAt": now, "httpStatus": 204,
        "requestId": uuid::Uuid::new_v4(),
        "provenance": {
            "commit": format!("{:040x}", run * 7_919 + 1),
            "pullRequest": format!("{}", 100 + run),
            "ci": "github-actions",
            "runId": format!("{}", 9_000_000 + run),
            "runUrl": format!("https://github.com/contoso/intune-changes/actions/runs/{}", 9_000_000 + run),
            "actor": format!("helpdesk-{}", run % 7),
            "manifest": {"ticket": format!("INC-{m}"), "reason": "benchmark", "requestedBy": "ann@contoso.com"},
        },
    }))
    .unwrap();
    a.started_at = now;
    a
}

/// Runs `cmd` to its end with its output discarded: its wall time and peak RSS (KiB), as
/// `/usr/bin/time` reports it. (A child's own `ru_maxrss` would start at this process's size: the
/// high-water mark of the address space it was forked from survives `exec`.)
fn measure(cmd: &mut Command) -> (Duration, i64) {
    let rss = tempfile::NamedTempFile::new().unwrap();
    let mut timed = Command::new("/usr/bin/time");
    timed.args(["-f", "%M", "-o"]).arg(rss.path()).arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        timed.current_dir(dir);
    }
    let start = Instant::now();
    let out = timed.stdout(Stdio::null()).stderr(Stdio::piped()).output().unwrap();
    let wall = start.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let kib = std::fs::read_to_string(rss.path()).unwrap().trim().parse().unwrap();
    (wall, kib)
}

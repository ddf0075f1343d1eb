//! Benchmark: how much of Intune's write budget `reconcile apply` uses, without 429s or
//! duplicates. The real binary runs against the simulator on loopback.
//!
//! 1. 2,000 resets, 100 ms latency, a budget of 2,000 writes per 20 s (tool and simulator alike).
//! 2. Intune's real budget scaled in time: 20 writes per 2 s (tool configured the same), 300
//!    resets.
//!
//! 3. `plan` resolving 500 serial numbers in a 50,000-device tenant under the read limit scaled in
//!    time (200 reads per 2 s).
//!
//! Scenarios 1 and 2 run twice, in the same run: with the local ledger, and with the ledger in
//! Azure Blob Storage (Azurite on loopback: `scripts/azurite` installs it).
//!
//! 4. The whole run against its floor: `apply` of 1,000 and 10,000 resets, by id and by serial
//!    number, with a 10:1 read/write budget (500 reads and 50 writes per second, tool and
//!    simulator alike) and 50 ms latency. The floor is what the write budget alone allows
//!    (n ÷ 50 s); the goal is a wall time within 3 % of it, with no 429.
//!
//! 5. The same against a 2-second window, where a bunch of departures shows at once: 1,000
//!    resets at 100 writes per 2 s (1,000 reads per 2 s), tool and simulator alike, 50 ms
//!    latency, concurrency 16; a 20 s floor, no 429.
//!
//! Reports resets per second, the share of the budget used, 429s and duplicates.
//! Run with `AZURITE_BLOB=$(scripts/azurite) cargo bench --bench apply` (about fifteen minutes);
//! `-- budget`, `-- resolve`, `-- floor` (`-- floor1k`: its 1,000 resets only) or `-- window2s`
//! runs one group.

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use intune_reconcile::settings::Budget;
use intune_reconcile::sim::{SimConfig, SimHandle};

#[allow(dead_code)]
#[path = "../tests/it/common/azurite.rs"]
mod azurite;
#[allow(dead_code)]
#[path = "../tests/it/common/http.rs"]
mod http;

fn main() {
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let wanted = |group: &str| only.is_empty() || only.iter().any(|o| o == group);
    if wanted("budget") {
        budget();
    }
    if wanted("resolve") {
        resolve_500();
    }
    // `-- floor1k`: the 1,000-reset half of `floor` (a minute instead of eight).
    let big = wanted("floor");
    if big || wanted("floor1k") {
        let sizes: &[usize] = if big { &[1_000, 10_000] } else { &[1_000] };
        for &n in sizes {
            for selector in [Selector::Id, Selector::Serial] {
                floor(n, selector, &FLOOR_20S);
            }
        }
    }
    if wanted("window2s") {
        floor(1_000, Selector::Id, &FLOOR_2S);
    }
}

/// The budgets of a floor scenario (tool and simulator alike) and the tool's concurrency.
struct Pace {
    writes: Budget,
    reads: Budget,
    concurrency: u32,
}

/// Intune's window: 50 writes and 500 reads per second over 20 s.
const FLOOR_20S: Pace = Pace {
    writes: Budget { requests: 1_000, window: Duration::from_secs(20) },
    reads: Budget { requests: 10_000, window: Duration::from_secs(20) },
    concurrency: 32,
};

/// The same rates over a 2 s window: a bunch of departures shows within one window.
const FLOOR_2S: Pace = Pace {
    writes: Budget { requests: 100, window: Duration::from_secs(2) },
    reads: Budget { requests: 1_000, window: Duration::from_secs(2) },
    concurrency: 16,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Selector {
    Id,
    Serial,
}

/// `apply` of `n` resets against the write floor of `pace`, 50 ms latency.
fn floor(n: usize, selector: Selector, pace: &Pace) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Pace { writes, reads, concurrency } = *pace;
    let sim = SimHandle::start(
        SimConfig {
            devices: android_devices(n),
            write_limit: Some(writes),
            read_limit: Some(reads),
            latency: Duration::from_millis(50),
            ..SimConfig::default()
        },
        0,
    )
    .unwrap();
    let mut manifest = String::from(
        "apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: bench\nspec:\n  devices:\n",
    );
    for i in 0..n {
        let _ = match selector {
            Selector::Id => writeln!(manifest, "    - id: {}", id(i)),
            Selector::Serial => writeln!(manifest, "    - serialNumber: SN{i:08}"),
        };
    }
    std::fs::create_dir_all(root.join("manifests")).unwrap();
    std::fs::write(root.join("manifests/bench.yaml"), manifest).unwrap();
    std::fs::write(
        root.join("reconcile.yaml"),
        format!(
            "graph:\n  concurrency: {concurrency}\n  writeBudget: {{ requests: {}, window: {}ms }}\n  readBudget: {{ requests: {}, window: {}ms }}\n  timeout: 30s\n",
            writes.requests,
            writes.window.as_millis(),
            reads.requests,
            reads.window.as_millis()
        ),
    )
    .unwrap();
    assert!(reconcile(root, &sim, &["init"]).status.success());
    let start = Instant::now();
    let out = reconcile(root, &sim, &["apply", "--auto-approve", "-q"]);
    let wall = start.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let requests = sim.requests();
    let throttled = requests.iter().filter(|r| r.status == 429).count();
    let gets = requests.iter().filter(|r| r.method == "GET").count();
    let duplicates = (0..n).map(|i| sim.resets_applied(&id(i))).filter(|&c| c > 1).count();
    let missing = (0..n).map(|i| sim.resets_applied(&id(i))).filter(|&c| c == 0).count();
    let floor = n as f64 * writes.window.as_secs_f64() / f64::from(writes.requests);
    let posts: Vec<_> = requests.iter().filter(|r| r.method == "POST" && r.path.ends_with("/resetPasscode")).collect();
    let first_429 = posts.iter().find(|r| r.status == 429).map(|r| r.at.duration_since(posts[0].at));
    let span = posts[posts.len() - 1].at.duration_since(posts[0].at).as_secs_f64();
    // The most POSTs answered within one window (answers trail arrivals by the same latency).
    let window = jiff::SignedDuration::try_from(writes.window).unwrap();
    let mut oldest = 0;
    let mut busiest = 0;
    for (i, p) in posts.iter().enumerate() {
        while p.at.duration_since(posts[oldest].at) >= window {
            oldest += 1;
        }
        busiest = busiest.max(i + 1 - oldest);
    }
    println!(
        "apply {n} resets by {selector:?}, {} writes and {} reads per {:?}, concurrency {concurrency}, 50 ms: {wall:.2} s wall ({span:.2} s first to last POST, at most {busiest} in a window) for a {floor:.0} s floor = {:.3}; {gets} GETs; 429s: {throttled}{}; duplicates: {duplicates}; missed: {missing}",
        writes.requests,
        reads.requests,
        writes.window,
        wall / floor,
        first_429.map(|t| format!(" (first after {:.1} s)", t.as_secs_f64())).unwrap_or_default()
    );
    // The scenario promises every device once and no throttling: a figure without that is void.
    assert_eq!((duplicates, missing, throttled), (0, 0, 0), "duplicates, missed, 429s");
}

fn budget() {
    let az = azurite::Azurite::shared().container();
    for blob in [None, Some(&az)] {
        run(
            "2,000 writes / 20 s, 100 ms latency",
            2_000,
            Budget { requests: 2_000, window: Duration::from_secs(20) },
            100,
            24,
            blob,
        );
        run(
            "Intune scaled: 20 writes / 2 s, 100 ms latency",
            300,
            Budget { requests: 20, window: Duration::from_secs(2) },
            100,
            4,
            blob,
        );
    }
}

/// `reconcile plan` resolving 500 serial numbers in a 50,000-device tenant, the simulator
/// enforcing Intune's read limit scaled in time (200 reads per 2 s), 100 ms latency.
fn resolve_500() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let devices = android_devices(50_000);
    let sim = SimHandle::start(
        SimConfig {
            devices,
            read_limit: Some(Budget { requests: 200, window: Duration::from_secs(2) }),
            latency: Duration::from_millis(100),
            ..SimConfig::default()
        },
        0,
    )
    .unwrap();
    let mut manifest = String::from(
        "apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: bench\nspec:\n  devices:\n",
    );
    for i in 0..500 {
        let _ = writeln!(manifest, "    - serialNumber: SN{:08}", i * 97);
    }
    std::fs::create_dir_all(root.join("manifests")).unwrap();
    std::fs::write(root.join("manifests/bench.yaml"), manifest).unwrap();
    std::fs::write(root.join("reconcile.yaml"), "graph:\n  concurrency: 16\n").unwrap();
    assert!(reconcile(root, &sim, &["init"]).status.success());
    let start = Instant::now();
    let out = reconcile(root, &sim, &["plan", "-q"]);
    let wall = start.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reads: Vec<_> = sim.requests().into_iter().filter(|r| r.method == "GET").collect();
    let throttled = reads.iter().filter(|r| r.status == 429).count();
    println!("Resolve 500 serial numbers, 50,000-device tenant, 200 reads / 2 s, 100 ms latency");
    println!("  plan took {:.1} s: {} reads, 429s: {throttled}", wall.as_secs_f64(), reads.len());
    assert_eq!(throttled, 0, "the read budget stays under the tenant's limit");
}

fn run(name: &str, n: usize, budget: Budget, latency_ms: u64, concurrency: u32, blob: Option<&azurite::Container>) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let devices = android_devices(n);
    let sim = SimHandle::start(
        SimConfig {
            devices,
            write_limit: Some(budget),
            latency: Duration::from_millis(latency_ms),
            ..SimConfig::default()
        },
        0,
    )
    .unwrap();
    let mut manifest = String::from(
        "apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: bench\nspec:\n  devices:\n",
    );
    for i in 0..n {
        let _ = writeln!(manifest, "    - id: {}", id(i));
    }
    std::fs::create_dir_all(root.join("manifests")).unwrap();
    std::fs::write(root.join("manifests/bench.yaml"), manifest).unwrap();
    // A Blob ledger is the operator's to name (RECONCILE_STATE); reconcile.yaml names none.
    let state = blob.map(|az| az.url(&format!("{}/state.json", uuid::Uuid::new_v4())));
    std::fs::write(
        root.join("reconcile.yaml"),
        format!(
            "graph:\n  concurrency: {concurrency}\n  writeBudget: {{ requests: {}, window: {}ms }}\n  timeout: 30s\n",
            budget.requests,
            budget.window.as_millis()
        ),
    )
    .unwrap();
    let reconcile = |args: &[&str]| {
        let mut cmd = command(root, &sim);
        if let Some(state) = &state {
            cmd.env("RECONCILE_STATE", state);
        }
        cmd.args(args).output().unwrap()
    };
    let init = reconcile(&["init"]);
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let start = Instant::now();
    let out = reconcile(&["apply", "--auto-approve", "-q"]);
    let wall = start.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let posts: Vec<_> =
        sim.requests().into_iter().filter(|r| r.method == "POST" && r.path.ends_with("/resetPasscode")).collect();
    let throttled = posts.iter().filter(|p| p.status == 429).count();
    let accepted: Vec<_> = posts.iter().filter(|p| p.status == 204).collect();
    let duplicates = (0..n).map(|i| sim.resets_applied(&id(i))).filter(|&c| c > 1).count();
    let span = accepted.last().unwrap().at.duration_since(accepted[0].at).as_secs_f64();
    let rate = (accepted.len() - 1) as f64 / span;
    let budget_rate = f64::from(budget.requests) / budget.window.as_secs_f64();
    println!("{name}, {} ledger", if blob.is_some() { "blob (Azurite)" } else { "local" });
    println!(
        "  {} resets in {:.1} s wall ({:.1} s first to last POST): {:.1} resets/s of a {:.1}/s budget = {:.1}%; 429s: {throttled}; duplicates: {duplicates}",
        accepted.len(),
        wall.as_secs_f64(),
        span,
        rate,
        budget_rate,
        100.0 * rate / budget_rate
    );
    let missing = (0..n).map(|i| sim.resets_applied(&id(i))).filter(|&c| c == 0).count();
    assert_eq!((duplicates, missing, throttled), (0, 0, 0), "duplicates, missed, 429s");
}

/// `n` corporate Android devices with ids from [`id`] and serial numbers `SN00000000`….
fn android_devices(n: usize) -> Vec<serde_json::Map<String, serde_json::Value>> {
    (0..n)
        .map(|i| {
            serde_json::json!({"id": id(i), "deviceName": format!("A-{i}"), "serialNumber": format!("SN{i:08}"),
                "operatingSystem": "Android", "managedDeviceOwnerType": "company", "managementState": "managed"})
            .as_object()
            .unwrap()
            .clone()
        })
        .collect()
}

/// The real binary in `root`, pointed at `sim`.
fn reconcile(root: &std::path::Path, sim: &SimHandle, args: &[&str]) -> std::process::Output {
    command(root, sim).args(args).output().unwrap()
}

/// The real binary in `root`, pointed at `sim`, to add to.
fn command(root: &std::path::Path, sim: &SimHandle) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_reconcile"));
    cmd.current_dir(root)
        .env("RECONCILE_GRAPH_URL", sim.url())
        .env("AZURE_AUTHORITY_HOST", sim.url())
        .env("AZURE_TENANT_ID", "bench")
        .env("AZURE_CLIENT_ID", "bench")
        .env("AZURE_CLIENT_SECRET", "bench")
        .env("AZURE_STORAGE_KEY", azurite::KEY);
    cmd
}

fn id(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

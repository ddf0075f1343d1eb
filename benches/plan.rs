//! Benchmark: `reconcile plan --offline` on 20,000 actions in 200 manifests against a ledger that
//! holds 10,000 recorded actions, then ten times that (200,000 actions in 2,000 files, 100,000
//! recorded) to show the cost grows linearly. Reports wall time (min / median / max of 15 runs, 5
//! for the large one) and the peak resident memory of the process. Goal on a 2-core machine:
//! 0.08 s for the first, and ten times that at most for the second.
//!
//! Run with `cargo bench --bench plan`.

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use intune_reconcile::ledger::{Attempt, LocalStore, Record, Status};
use intune_reconcile::manifest::{self, ManifestInput};

const DEVICES_PER_MANIFEST: usize = 100;

fn main() {
    bench(200, 10_000, 15);
    bench(2_000, 100_000, 5);
}

#[allow(clippy::disallowed_methods)] // the benchmark's own setting, not the tool's
fn bench(manifests: usize, recorded: usize, runs: usize) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // BENCH_KEEP=1 keeps the fixture for profiling by hand.
    let root = if std::env::var_os("BENCH_KEEP").is_some() { dir.keep() } else { root.to_path_buf() };
    let root = root.as_path();
    println!("fixture in {}", root.display());
    let setup = Instant::now();
    write_manifests(root, manifests);
    write_ledger(root, recorded);
    println!(
        "fixture: {manifests} manifests, {} actions, {recorded} recorded (built in {:.1?})",
        manifests * DEVICES_PER_MANIFEST,
        setup.elapsed()
    );

    for format in ["text", "json"] {
        let mut times = Vec::new();
        for _ in 0..runs {
            let start = Instant::now();
            let status = Command::new(env!("CARGO_BIN_EXE_reconcile"))
                .args(["plan", "--offline", "--format", format])
                .current_dir(root)
                .stdout(Stdio::null())
                .status()
                .unwrap();
            times.push(start.elapsed());
            assert!(status.success());
        }
        times.sort();
        println!(
            "plan --offline --format {format:<4}  min {:>6.1} ms  median {:>6.1} ms  max {:>6.1} ms",
            ms(times[0]),
            ms(times[runs / 2]),
            ms(times[runs - 1])
        );
    }
    println!("peak RSS of any run: {:.1} MB", peak_child_rss_kib() as f64 / 1024.0);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn write_manifests(root: &Path, manifests: usize) {
    for m in 0..manifests {
        let mut s = format!(
            "apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: bench-{m:04}\n  ticket: INC-{m}\n  reason: benchmark\nspec:\n  devices:\n"
        );
        for d in 0..DEVICES_PER_MANIFEST {
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

fn write_ledger(root: &Path, recorded: usize) {
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
    store.create(Duration::ZERO, "bench-tenant").unwrap();
    let mut w = store.lock(Duration::ZERO, "bench", Some("bench-tenant")).unwrap();
    let now = jiff::Timestamp::now();
    let records = loaded
        .actions()
        .iter()
        .step_by(2)
        .take(recorded)
        .map(|a| {
            let mut r = Record::new(a, Some(uuid::Uuid::new_v4().to_string()), now);
            r.status = Status::Accepted;
            r.attempts.push(Attempt {
                started_at: now,
                client_request_id: uuid::Uuid::new_v4(),
                finished_at: Some(now),
                http_status: Some(204),
                request_id: Some(uuid::Uuid::new_v4().to_string()),
                ..Attempt::default()
            });
            r
        })
        .collect::<Vec<_>>();
    w.record_all(records).unwrap();
    w.commit().unwrap();
}

/// The largest resident set of any child waited for so far, in KiB.
#[allow(unsafe_code)]
fn peak_child_rss_kib() -> i64 {
    // SAFETY: getrusage only writes into the struct we pass; RUSAGE_CHILDREN is a valid selector.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0);
    usage.ru_maxrss
}

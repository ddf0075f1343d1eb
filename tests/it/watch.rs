//! `reconcile watch` end to end: the real binary watching real files.

use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::spawn::spawn_piped;
use crate::common::{Repo, android_devices, android_id, manifest_for, posts, sim, wait_for_posts, wait_until};
use intune_reconcile::sim::SimConfig;

/// A running `reconcile watch`, its output collected line by line. Killed when dropped, however
/// the test ends.
struct Watch {
    child: std::process::Child,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// How a watch ended: its status and everything it printed.
struct Ended {
    status: std::process::ExitStatus,
    out: Vec<String>,
    err: Vec<String>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Watch {
    fn start(mut child: std::process::Child) -> Watch {
        let mut readers = Vec::new();
        let mut collect = |stream: Box<dyn std::io::Read + Send>| {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let l = lines.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    l.lock().expect("lines").push(line);
                }
            }));
            lines
        };
        let out = collect(Box::new(child.stdout.take().expect("stdout")));
        let err = collect(Box::new(child.stderr.take().expect("stderr")));
        Watch { child, out, err, readers }
    }

    /// Waits until stdout has at least `n` lines.
    fn wait_for_lines(&self, n: usize) {
        let start = Instant::now();
        while self.out.lock().expect("lines").len() < n {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "fewer than {n} lines:\n{}\n{}",
                self.stdout(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn count(&self, needle: &str) -> usize {
        self.out.lock().expect("lines").iter().filter(|l| l.contains(needle)).count()
    }

    fn stdout(&self) -> String {
        self.out.lock().expect("lines").join("\n")
    }

    fn stderr(&self) -> String {
        self.err.lock().expect("lines").join("\n")
    }

    /// Waits until `needle` was printed `n` times on stdout.
    fn wait_for(&self, needle: &str, n: usize) {
        let start = Instant::now();
        while self.count(needle) < n {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no {n}x {needle:?} in:\n{}\n{}",
                self.out.lock().expect("lines").join("\n"),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the exit status and every line, once both streams are closed.
    fn terminate(mut self) -> std::process::ExitStatus {
        self.stop().status
    }

    fn stop(&mut self) -> Ended {
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok);
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "watch did not stop");
            std::thread::sleep(Duration::from_millis(20));
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let take = |lines: &Arc<Mutex<Vec<String>>>| std::mem::take(&mut *lines.lock().expect("lines"));
        Ended { status, out: take(&self.out), err: take(&self.err) }
    }
}

fn watch(repo: &Repo, args: &[&str]) -> Watch {
    spawn(repo, &[&["watch"], args].concat(), &[])
}

/// `reconcile ARGS` in `repo` with `env`, its output collected.
fn spawn(repo: &Repo, args: &[&str], env: &[(&str, String)]) -> Watch {
    Watch::start(spawn_piped(repo.command().args(args).envs(env.iter().map(|(k, v)| (k, v)))))
}

const ONE: &str = "apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: a\nspec:\n  devices:\n    - serialNumber: S1\n";

#[test]
fn saves_show_new_plans_bursts_are_one_and_broken_saves_are_survived() {
    let repo = Repo::empty();
    repo.init();
    repo.write("manifests/a.yaml", ONE);
    let w = watch(&repo, &[]);
    w.wait_for("Plan: 1 to reset", 1);

    // An edit → a new plan.
    repo.write("manifests/a.yaml", format!("{ONE}    - serialNumber: S2\n"));
    w.wait_for("Plan: 2 to reset", 1);

    // A burst of ten saves, each a different plan → one plan, the last. The next save's plan
    // comes next: nothing of the burst was printed before or after the one.
    let before = w.count("Plan:");
    for i in 0..10 {
        let extra: String = (0..=i).map(|k| format!("    - serialNumber: B{k}\n")).collect();
        repo.write("manifests/a.yaml", format!("{ONE}{extra}"));
    }
    w.wait_for("Plan: 11 to reset", 1);
    repo.write("manifests/a.yaml", format!("{ONE}    - serialNumber: S2\n    - serialNumber: S3\n"));
    w.wait_for("Plan: 3 to reset", 1);
    assert_eq!(w.count("Plan:"), before + 2, "one plan for the burst: {}", w.stdout());

    // A broken save → diagnostics and no crash; the fix → a plan again.
    repo.write("manifests/a.yaml", "kind: [\n");
    wait_until("the diagnostic of the broken save", || w.stderr().contains("manifests/a.yaml:1:7: error"));
    repo.write("manifests/a.yaml", ONE);
    w.wait_for("Plan: 1 to reset", 2);

    // A folder deleted and created again is watched again.
    let failed = |w: &Watch| w.err.lock().expect("lines").iter().filter(|l| l.contains("ok=false")).count();
    let before = failed(&w);
    std::fs::remove_dir_all(repo.path().join("manifests")).expect("rm");
    // The watcher's answer to the deletion (a failed cycle: no manifests) says it has seen it.
    wait_until("a failed cycle for the deleted folder", || failed(&w) > before);
    repo.write("manifests/b.yaml", ONE.replace("name: a", "name: b").replace("S1", "S9"));
    w.wait_for("manifest b (manifests/b.yaml)", 1);

    // The ledger lock is not held between cycles.
    repo.cmd().args(["state", "list"]).assert().success();
    assert!(w.terminate().success(), "SIGTERM ends the watch with 0");
}

#[test]
fn the_reconciler_applies_new_manifests_exactly_once_and_stops_cleanly() {
    let repo = Repo::empty();
    repo.fast_config("");
    repo.write("manifests/first.yaml", manifest_for("first", &[&android_id(0)]));
    let sim =
        sim(SimConfig { devices: android_devices(12), latency: Duration::from_millis(150), ..SimConfig::default() });
    let w = reconciler(&repo, &sim, &["watch", "--apply", "--interval", "2s"]);
    w.wait_for("Apply complete: 1 accepted", 1);
    // Intervals pass: the applied manifest is never sent again.
    w.wait_for("Nothing to do.", 2);
    assert_eq!(sim.resets_applied(&android_id(0)), 1);
    // One Graph client for the watcher's life: three cycles of apply and refresh, one token.
    let tokens = sim.requests().iter().filter(|r| r.path.ends_with("/oauth2/v2.0/token")).count();
    assert_eq!(tokens, 1, "one token for every cycle");

    // A new manifest with many devices; SIGTERM while its cycle sends.
    let ids: Vec<String> = (1..12).map(android_id).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    repo.write("manifests/second.yaml", manifest_for("second", &refs));
    wait_for_posts(&sim, 3);
    let status = w.terminate();
    assert!(status.success(), "stops with 0");

    // Nothing was lost: every request sent has its outcome in the ledger, none is unknown.
    let ledger = repo.ledger_json();
    let records = ledger["records"].as_object().expect("records");
    let sent = posts(&sim).len();
    assert_eq!(records.values().filter(|r| r["status"] == "accepted" || r["status"] == "done").count(), sent);
    assert!(records.values().all(|r| r["status"] != "unknown"));
    // And the rest goes out exactly once on the next run.
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().success();
    for i in 0..12 {
        assert_eq!(sim.resets_applied(&android_id(i)), 1, "device {i}");
    }
}

// The reconciler prints a plan only when it changed, one line per cycle otherwise; with
// `--log-format json` every line it writes, on stdout and stderr, is JSON.
#[test]
fn the_reconciler_prints_changed_plans_only_and_json_lines_only_when_asked() {
    let repo = Repo::empty();
    repo.fast_config("");
    repo.write("manifests/first.yaml", manifest_for("first", &[&android_id(0), &android_id(1)]));
    let sim = sim(SimConfig { devices: android_devices(2), ..SimConfig::default() });
    let mut w = reconciler(&repo, &sim, &["watch", "--apply", "--interval", "300ms"]);
    w.wait_for("Nothing to do.", 4);
    let Ended { status, out, .. } = w.stop();
    assert!(status.success());
    // The plan before the apply, and the one after it (all done: no changes): twice, never once
    // per cycle.
    let legends = out.iter().filter(|l| l.starts_with("Legend:")).count();
    let unchanged = out.iter().filter(|l| *l == "No changes.").count();
    assert_eq!((legends, unchanged), (1, 1), "{}", out.join("\n"));
    let quiet = out.iter().filter(|l| l.contains("── reconcile: Nothing to do.")).count();
    assert!(quiet >= 3, "unchanged cycles are one line each:\n{}", out.join("\n"));

    let mut w = reconciler(&repo, &sim, &["--log-format", "json", "watch", "--apply", "--interval", "300ms"]);
    w.wait_for_lines(2);
    let Ended { status, out, err } = w.stop();
    assert!(status.success());
    assert!(out.len() >= 2, "one line per cycle: {out:?}");
    for line in out.iter().chain(&err) {
        assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "not JSON: {line}");
    }
    let first: serde_json::Value = serde_json::from_str(&out[0]).expect("json");
    assert_eq!(first["mode"], "reconcile");
    assert_eq!(first["summary"]["already_done"], 2, "{first}");
}

/// `reconcile ARGS` in `repo`, signed in to `sim`, its output collected.
fn reconciler(repo: &Repo, sim: &intune_reconcile::sim::SimHandle, args: &[&str]) -> Watch {
    Watch::start(spawn_piped(repo.command_on(sim).args(args)))
}

// `watch --apply` refuses a ledger that does not exist at once (exit 1, naming the
// location and `reconcile init`) instead of retrying forever; a simulated one is made on first use.
#[test]
fn the_reconciler_refuses_a_missing_ledger_at_once() {
    let repo = Repo::empty();
    repo.fast_config("");
    std::fs::remove_file(repo.path().join(".reconcile/state.json")).expect("no ledger");
    repo.write("manifests/first.yaml", manifest_for("first", &[&android_id(0)]));
    let sim = sim(SimConfig { devices: android_devices(1), ..SimConfig::default() });
    let out = repo
        .cmd_on(&sim)
        .args(["watch", "--apply", "--interval", "5m"])
        .timeout(Duration::from_secs(30))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(".reconcile/state.json") && err.contains("reconcile init"), "{err}");
    assert!(posts(&sim).is_empty() && !repo.path().join(".reconcile/state.json").exists());
}

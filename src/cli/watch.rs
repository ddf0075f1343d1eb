//! `reconcile watch`: live plans while editing, and `--apply`, a continuous reconciler.
//!
//! The working directory is watched recursively (debounced, so an editor's save-by-rename or a
//! burst of saves is one change); only YAML files and the config count, and hidden folders (the
//! ledger's `.reconcile/`, `.git/`) are ignored, so the reconciler's own writes never wake it.
//! Watching the folder rather than each manifest also picks up a folder that is deleted and
//! created again. Each cycle runs the same operations as `reconcile plan` or `reconcile apply
//! --auto-approve` + `reconcile refresh` ([`crate::app`]), in one [`crate::app::Session`] for the
//! watcher's life; the ledger lock is held only during a cycle.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer, new_debouncer_opt};

use super::{CmdResult, Failure, GlobalArgs, report};
use crate::duration::HumanDuration;
use crate::render::Format;

#[derive(Debug, clap::Args)]
pub(super) struct WatchArgs {
    /// Limit the plans to these manifest files or folders.
    pub paths: Vec<PathBuf>,
    /// Look devices up in Intune on every plan (default: offline plans).
    #[arg(long)]
    pub online: bool,
    /// Use the built-in simulator and its own ledger.
    #[arg(long)]
    pub simulate: bool,
    /// Be the reconciler: apply (as `apply --auto-approve`) and refresh on every change and at
    /// least every --interval.
    #[arg(long)]
    pub apply: bool,
    /// With --apply: the longest wait between two cycles.
    #[arg(long, default_value = "5m")]
    pub interval: HumanDuration,
    /// How long to wait for more saves before acting on a change.
    #[arg(long, default_value = "300ms")]
    pub debounce: HumanDuration,
    /// Poll the files every DURATION instead of using change events (network file systems).
    #[arg(long, value_name = "DURATION")]
    pub poll: Option<HumanDuration>,
}

pub(super) fn run(g: &GlobalArgs, args: WatchArgs) -> CmdResult {
    if args.apply && !args.simulate {
        // docs/contract.md, Ledger: a ledger that does not exist is refused at once (exit 1), never retried: a
        // failed download must not look like "nothing was ever sent". (A simulated one is
        // created on first use; a broken config is reported by each cycle, as ever.) Only the
        // config is read here: the manifests are the first cycle's.
        let (settings, diags) = crate::app::project::load_settings(&g.overrides(), &super::env);
        if !diags.has_errors() {
            let store = crate::app::connect::open_store(&settings, &super::env)?;
            crate::ledger::block_on(store.load_existing())??;
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    listen_for_stop(stop.clone());
    let root = std::env::current_dir().map_err(|e| anyhow::anyhow!("cannot read the working directory: {e}"))?;
    let config = g.config.clone().unwrap_or_else(|| PathBuf::from(crate::settings::DEFAULT_CONFIG));
    let (tx, rx) = mpsc::channel::<DebounceEventResult>();
    let _watcher = start_watcher(&root, &args, tx)?;
    tracing::info!(root = %root.display(), apply = args.apply, "watching for changes");

    // One runtime and one Graph client for the watcher's life: the pacer's learned slow-down and
    // the token outlive a cycle (a new client is made only when the config names another).
    let mut session = crate::app::Session::new()?;
    let mut cycle = 0u64;
    // Failed cycles in a row: they back off as the retry policy says (5 s doubling to 5 min).
    let mut failures = 0u32;
    let mut next_due = Instant::now();
    let mut changed = true;
    // The last plan printed: an unchanged plan is not printed again.
    let mut last = None;
    // The commit the previous cycle applied: the next cycle's change is judged against its policy.
    let mut previous: Option<String> = None;
    // A change is acted on once the files have been quiet for the debounce time, so a burst of
    // saves is one cycle however the watcher batches its events.
    let mut quiet_from = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        if (changed && Instant::now() >= quiet_from) || Instant::now() >= next_due {
            cycle += 1;
            let ok = run_cycle(&mut session, g, &args, cycle, changed, (&mut last, &mut previous));
            changed = false;
            let backoff = if ok { Duration::ZERO } else { crate::core::retry::Policy::WATCH.exponential(failures) };
            failures = if ok { 0 } else { failures.saturating_add(1) };
            next_due = Instant::now()
                + if args.apply {
                    if ok { args.interval.0 } else { backoff }
                } else {
                    Duration::from_secs(3600 * 24 * 365)
                };
        }
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(Ok(events)) => {
                // Reading the manifests (every cycle does) raises access events: only changes count.
                let changes = events.iter().filter(|e| is_change(&e.event.kind));
                if changes.flat_map(|e| e.paths.iter()).any(|p| relevant(&root, &config, p)) {
                    changed = true;
                    quiet_from = Instant::now() + args.debounce.0;
                }
            }
            Ok(Err(errors)) => {
                for e in errors {
                    tracing::warn!(error = %e, "file watcher");
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err(anyhow::anyhow!("the file watcher stopped").into()),
        }
    }
    tracing::info!(cycles = cycle, "stopped");
    Ok(())
}

/// One plan, or one apply + refresh. Failures are reported and never end the loop. The plan is
/// printed only when it differs from the last one printed; otherwise the cycle is one line.
/// Under `--log-format json`, stdout carries one JSON object per cycle and nothing else.
fn run_cycle(
    session: &mut crate::app::Session,
    g: &GlobalArgs,
    args: &WatchArgs,
    cycle: u64,
    changed: bool,
    (last, previous): (&mut Option<Vec<u8>>, &mut Option<String>),
) -> bool {
    let started = Instant::now();
    let json = super::json_logs();
    let sink = super::WatchSink::default();
    sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner).base = previous.clone();
    let head = crate::ci::git::head();
    let result = if args.apply {
        let apply = super::apply::ApplyArgs {
            paths: args.paths.clone(),
            auto_approve: true,
            max_actions: None,
            simulate: args.simulate,
            plan: None,
            format: super::apply::ApplyFormat::Text,
            junit: None,
            ignore_change_windows: false,
            reason: None,
            watch: Some(sink.clone()),
        };
        super::apply::run_in(session, g, apply).and_then(|()| {
            let refresh = super::refresh::RefreshArgs { simulate: args.simulate, watch: Some(sink.clone()) };
            super::refresh::run_in(session, g, refresh)
        })
    } else {
        let plan = super::plan::PlanArgs {
            paths: args.paths.clone(),
            offline: !args.online,
            simulate: args.simulate,
            format: if json { Format::Json } else { Format::Text },
            detailed_exitcode: false,
            out: None,
            base: None,
            show_done: false,
            show_user: false,
            watch: Some(sink.clone()),
        };
        super::plan::run_in(session, g, plan)
    };
    if args.apply && head.is_some() {
        *previous = head;
    }
    let ok = match result {
        Ok(()) => true,
        // A plan with blocked devices exits 1 but is a plan all the same.
        Err(Failure::Exit(_)) if !args.apply => true,
        Err(f) => {
            let _ = report(f);
            false
        }
    };
    let out = std::mem::take(&mut *sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    let mode = if args.apply { "reconcile" } else { "plan" };
    let shown = !out.plan.is_empty() && last.as_ref() != Some(&out.plan);
    let time = jiff::Timestamp::now();
    if json {
        let plan: Option<serde_json::Value> = serde_json::from_slice(&out.plan).ok();
        let line = serde_json::json!({
            "time": time.to_string(),
            "cycle": cycle,
            "mode": mode,
            "ok": ok,
            "plan_changed": shown,
            "summary": plan.as_ref().map(|p| p["summary"].clone()),
            "plan": if shown { plan } else { None },
            "result": out.summary,
        });
        say!("{line}");
    } else {
        let now = time.strftime("%Y-%m-%d %H:%M:%S");
        let text = String::from_utf8_lossy(&out.plan);
        let result = out.summary.join(" ");
        if shown {
            say!("── {now} ── {mode}");
            say!("{}", text.trim_end());
            if !result.is_empty() {
                say!("{result}");
            }
        } else {
            let plan_line =
                text.lines().find(|l| l.starts_with("Plan: ") || l.starts_with("No changes.")).unwrap_or("");
            let what = match (ok, result.is_empty()) {
                (false, _) => "failed: see the errors above; retrying".to_owned(),
                (true, true) => format!("unchanged. {plan_line}"),
                (true, false) => result,
            };
            say!("── {now} ── {mode}: {}", what.trim());
        }
    }
    if shown {
        *last = Some(out.plan);
    }
    let trigger = match (cycle, changed) {
        (1, _) => "start",
        (_, true) => "change",
        (_, false) => "interval",
    };
    tracing::info!(cycle, trigger, ok, ms = started.elapsed().as_millis() as u64, "cycle");
    ok
}

/// Content, names or existence changed (not an access, not metadata such as access times).
fn is_change(kind: &notify::EventKind) -> bool {
    use notify::EventKind;
    use notify::event::ModifyKind;
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        _ => false,
    }
}

/// Whether a changed path can change a plan: a YAML file or the config, outside hidden folders.
fn relevant(root: &Path, config: &Path, path: &Path) -> bool {
    let rel = path.strip_prefix(root).unwrap_or(path);
    if rel.components().any(|c| c.as_os_str().to_string_lossy().starts_with('.')) {
        return false;
    }
    let is_yaml = rel.extension().is_some_and(|x| x == "yaml" || x == "yml");
    // A removed folder (no extension) may have held manifests; a removed ledger journal or lock
    // (`.journal`, `.lock`) never did.
    is_yaml || rel == config || path.is_dir() || (!path.exists() && rel.extension().is_none())
}

fn start_watcher(
    root: &Path,
    args: &WatchArgs,
    tx: mpsc::Sender<DebounceEventResult>,
) -> anyhow::Result<Box<dyn std::any::Any>> {
    let debounce = args.debounce.0.max(Duration::from_millis(10));
    let poll = |every: Duration, tx| -> anyhow::Result<Box<dyn std::any::Any>> {
        let config = notify::Config::default().with_poll_interval(every).with_compare_contents(true);
        let mut d = new_debouncer_opt::<_, notify::PollWatcher, notify_debouncer_full::NoCache>(
            debounce,
            None,
            tx,
            notify_debouncer_full::NoCache,
            config,
        )?;
        d.watch(root, RecursiveMode::Recursive)?;
        Ok(Box::new(d))
    };
    if let Some(every) = args.poll {
        tracing::info!(every = %every, "polling for changes");
        return poll(every.0, tx);
    }
    let events = new_debouncer(debounce, None, tx.clone()).and_then(|mut d| {
        d.watch(root, RecursiveMode::Recursive)?;
        Ok(d)
    });
    match events {
        Ok(d) => Ok(Box::new(d)),
        Err(e) => {
            // No change events here (inotify limits, some network file systems): poll instead.
            tracing::warn!(error = %e, "no file change events; polling every 2s instead");
            poll(Duration::from_secs(2), tx)
        }
    }
}

/// Ctrl-C or SIGTERM sets `stop`; the current cycle finishes (an apply stops sending and records
/// what was in flight) and the loop ends.
fn listen_for_stop(stop: Arc<AtomicBool>) {
    let _ = std::thread::Builder::new().name("signals".into()).spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(super::wait_for_stop_signal());
        stop.store(true, Ordering::SeqCst);
    });
}

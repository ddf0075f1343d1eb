//! `reconcile watch`: live plans while editing, and `--apply`, a continuous reconciler.
//!
//! The working directory is watched recursively (debounced, so an editor's save-by-rename or a
//! burst of saves is one change); only YAML files and the config count, and hidden folders (the
//! ledger's `.reconcile/`, `.git/`) are ignored, so the reconciler's own writes never wake it.
//! Watching the folder rather than each manifest also picks up a folder that is deleted and
//! created again. Each cycle calls the same operations as `reconcile plan` or `reconcile apply
//! --auto-approve` + `reconcile refresh` ([`crate::app`]) with typed requests, in one
//! [`crate::app::Session`] for the watcher's life, and renders their results and the apply's
//! events ([`crate::app::event`]) itself; the ledger lock is held only during a cycle.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer, new_debouncer_opt};

use super::{CmdResult, GlobalArgs, report};
use crate::app::apply::ApplyRequest;
use crate::app::event::{Event, Subscriber};
use crate::app::plan::PlanRequest;
use crate::app::refresh::RefreshRequest;
use crate::app::{self, Session};
use crate::duration::HumanDuration;
use crate::render::{self, Format, PlanContext};

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
    let mut session = Session::new()?;
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

/// What a cycle shows: its plan as the watcher prints it, that plan's summary line, and the
/// closing lines of what the cycle did.
#[derive(Debug, Default)]
struct Shown {
    plan: Vec<u8>,
    headline: String,
    result: Vec<String>,
}

/// An apply's events as the watcher renders them: the plan is kept for the cycle's report (JSON
/// under `--log-format json`), each outcome is logged.
struct Watcher<'a> {
    json: bool,
    simulated: bool,
    shown: &'a mut Shown,
}

impl Subscriber for Watcher<'_> {
    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Warnings(diags) => super::print_diagnostics(diags),
            Event::PlanMade(plan) => {
                let ctx = PlanContext::new(false, self.simulated);
                self.shown.plan.clear();
                let _ =
                    render::plan(&mut self.shown.plan, plan, ctx, if self.json { Format::Json } else { Format::Text });
                self.shown.headline = render::summary_line(plan, ctx);
            }
            Event::Finished { record, at } => tracing::info!("{}", render::progress::outcome_line(record, at)),
            Event::Started { .. } | Event::Progress(_) => {}
        }
    }
}

/// One plan, or one apply + refresh. Failures are reported and never end the loop. The plan is
/// printed only when it differs from the last one printed; otherwise the cycle is one line.
/// Under `--log-format json`, stdout carries one JSON object per cycle and nothing else.
fn run_cycle(
    session: &mut Session,
    g: &GlobalArgs,
    args: &WatchArgs,
    cycle: u64,
    changed: bool,
    (last, previous): (&mut Option<Vec<u8>>, &mut Option<String>),
) -> bool {
    let started = Instant::now();
    let json = super::json_logs();
    let mut shown = Shown::default();
    let head = crate::ci::git::head();
    let result = if args.apply {
        reconcile(session, g, args, previous.clone(), &mut shown)
    } else {
        plan(session, g, args, &mut shown)
    };
    if args.apply && head.is_some() {
        *previous = head;
    }
    let ok = match result {
        Ok(()) => true,
        Err(f) => {
            let _ = report(f);
            false
        }
    };
    let mode = if args.apply { "reconcile" } else { "plan" };
    let is_shown = !shown.plan.is_empty() && last.as_ref() != Some(&shown.plan);
    let time = session.clock().now();
    if json {
        let plan: Option<serde_json::Value> = serde_json::from_slice(&shown.plan).ok();
        let line = serde_json::json!({
            "time": time.to_string(),
            "cycle": cycle,
            "mode": mode,
            "ok": ok,
            "plan_changed": is_shown,
            "summary": plan.as_ref().map(|p| p["summary"].clone()),
            "plan": if is_shown { plan } else { None },
            "result": shown.result,
        });
        say!("{line}");
    } else {
        let now = time.strftime("%Y-%m-%d %H:%M:%S");
        let result = shown.result.join(" ");
        if is_shown {
            say!("── {now} ── {mode}");
            say!("{}", String::from_utf8_lossy(&shown.plan).trim_end());
            if !result.is_empty() {
                say!("{result}");
            }
        } else {
            let what = match (ok, result.is_empty()) {
                (false, _) => "failed: see the errors above; retrying".to_owned(),
                (true, true) => format!("unchanged. {}", shown.headline),
                (true, false) => result,
            };
            say!("── {now} ── {mode}: {}", what.trim());
        }
    }
    if is_shown {
        *last = Some(shown.plan);
    }
    let trigger = match (cycle, changed) {
        (1, _) => "start",
        (_, true) => "change",
        (_, false) => "interval",
    };
    tracing::info!(cycle, trigger, ok, ms = started.elapsed().as_millis() as u64, "cycle");
    ok
}

/// A plan cycle: `reconcile plan` (offline unless `--online`), rendered for the watcher. A plan
/// with blocked devices is a plan all the same.
fn plan(session: &mut Session, g: &GlobalArgs, args: &WatchArgs, shown: &mut Shown) -> CmdResult {
    let request = PlanRequest { paths: args.paths.clone(), offline: !args.online, simulate: args.simulate, base: None };
    let planned = app::plan::prepare(session, &g.overrides(), &request, &super::env).map_err(super::plan::failure)?;
    super::print_diagnostics(&planned.project.diagnostics);
    let plan = planned.reviewed(None, &super::env)?;
    let ctx = PlanContext::new(request.offline, args.simulate);
    let format = if super::json_logs() { Format::Json } else { Format::Text };
    super::plan::missing_note(&mut shown.plan, &planned, format)?;
    render::plan(&mut shown.plan, &plan, ctx, format)?;
    shown.headline = render::summary_line(&plan, ctx);
    super::plan::github_outputs(&plan, ctx)?;
    Ok(())
}

/// A reconcile cycle: `reconcile apply --auto-approve`, its policy judged against the previous
/// cycle's commit (`base`), then, if it succeeded, `reconcile refresh`.
fn reconcile(
    session: &mut Session,
    g: &GlobalArgs,
    args: &WatchArgs,
    base: Option<String>,
    shown: &mut Shown,
) -> CmdResult {
    let lock_timeout = g.lock_timeout.map(|d| d.0).unwrap_or_default();
    let request = ApplyRequest {
        paths: args.paths.clone(),
        base,
        simulate: args.simulate,
        auto_approve: true,
        lock_timeout,
        ..ApplyRequest::default()
    };
    let mut watcher = Watcher { json: super::json_logs(), simulated: args.simulate, shown: &mut *shown };
    // Every line of stderr is a log event under watch.
    let stop = super::stopping(false);
    let applied = app::apply::run(session, &g.overrides(), &request, &super::env, &mut watcher, stop)
        .map_err(super::apply::failure)?;
    shown.result = super::apply::conclusion(&applied.report, applied.simulated, None);
    super::apply::exit(&applied.report)?;
    let request = RefreshRequest { simulate: args.simulate, lock_timeout };
    let refreshed =
        app::refresh::run(session, &g.overrides(), &request, &super::env).map_err(super::refresh::failure)?;
    for line in super::refresh::changes(&refreshed.report) {
        tracing::info!("{line}");
    }
    shown.result.extend(super::refresh::conclusion(&refreshed.report, refreshed.simulated));
    Ok(())
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

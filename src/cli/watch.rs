//! `reconcile watch`: live plans while editing, and `--apply`, a continuous reconciler.
//!
//! The loop (file changes, debounce, interval, backoff) is [`crate::app::watch`]. Each cycle
//! calls the same operations as `reconcile plan` or `reconcile apply --auto-approve` +
//! `reconcile refresh` ([`crate::app`]) with typed requests, in the watcher's one
//! [`crate::app::Session`], and renders their results and the apply's events
//! ([`crate::app::event`]) itself.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{CmdResult, GlobalArgs, report};
use crate::app::apply::ApplyRequest;
use crate::app::event::{Event, Subscriber};
use crate::app::plan::PlanRequest;
use crate::app::refresh::RefreshRequest;
use crate::app::watch::WatchOptions;
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
        // A simulated ledger is made on first use.
        app::watch::require_ledger(&g.overrides(), &super::env)?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    listen_for_stop(stop.clone());
    let opts = WatchOptions {
        root: std::env::current_dir().map_err(|e| anyhow::anyhow!("cannot read the working directory: {e}"))?,
        config: g.config.clone().unwrap_or_else(|| PathBuf::from(crate::settings::DEFAULT_CONFIG)),
        apply: args.apply,
        interval: args.interval.0,
        debounce: args.debounce.0,
        poll: args.poll.map(|p| p.0),
    };
    // The last plan printed: an unchanged plan is not printed again.
    let mut last = None;
    // The commit the previous cycle applied: the next cycle's change is judged against its policy.
    let mut previous: Option<String> = None;
    app::watch::run(&opts, &stop, &mut |session, cycle| {
        run_cycle(session, g, &args, cycle, (&mut last, &mut previous))
    })?;
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
    (last, previous): (&mut Option<Vec<u8>>, &mut Option<String>),
) -> bool {
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
    ok
}

/// A plan cycle: `reconcile plan` (offline unless `--online`), rendered for the watcher. A plan
/// with blocked devices is a plan all the same.
fn plan(session: &mut Session, g: &GlobalArgs, args: &WatchArgs, shown: &mut Shown) -> CmdResult {
    let request = PlanRequest { paths: args.paths.clone(), offline: !args.online, simulate: args.simulate, base: None };
    let planned = app::plan::prepare(session, &g.overrides(), &request, &super::env).map_err(super::failure)?;
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
    shown.result = render::summary::apply(&applied.report, applied.simulated, None);
    super::apply::exit(&applied.report)?;
    let request = RefreshRequest { simulate: args.simulate, lock_timeout };
    let refreshed = app::refresh::run(session, &g.overrides(), &request, &super::env).map_err(super::failure)?;
    for line in render::summary::refresh_changes(&refreshed.report) {
        tracing::info!("{line}");
    }
    shown.result.extend(render::summary::refresh(&refreshed.report, refreshed.simulated));
    Ok(())
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

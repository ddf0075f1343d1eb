//! `reconcile apply [PATH...]`

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};

use super::{CmdResult, Failure, GlobalArgs, env, print_diagnostics};
use anyhow::Context as _;

use crate::app::project;
use crate::app::{self, Session, apply::ApplyRequest};
use crate::core::plan::Plan;
use crate::exec::{self, Progress, Ui};
use crate::ledger::Record;
use crate::render::{self, Format, PlanContext};

#[derive(Debug, clap::Args)]
pub(super) struct ApplyArgs {
    /// Limit the run to these manifest files or folders.
    pub paths: Vec<PathBuf>,
    /// Do not ask for confirmation (needed when there is no terminal).
    #[arg(long)]
    pub auto_approve: bool,
    /// Refuse to start when more than N resets are planned.
    #[arg(long, value_name = "N")]
    pub max_actions: Option<usize>,
    /// Use the built-in Intune simulator and its own ledger instead of Graph.
    #[arg(long)]
    pub simulate: bool,
    /// Execute the reviewed resets of this saved plan (from `reconcile plan --out`) whose premise
    /// still holds; each one whose premise changed is refused, named with the reason.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Result format on stdout (`json`: versioned; the plan then goes to stderr).
    #[arg(long, value_enum, default_value_t = ApplyFormat::Text)]
    pub format: ApplyFormat,
    /// Also write a JUnit XML report, one test case per action.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Apply outside the policy's change windows (needs --reason, recorded in the ledger).
    #[arg(long, requires = "reason")]
    pub ignore_change_windows: bool,
    /// Why the change windows are ignored.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Run by `watch`: the plan and the closing lines go to the watcher; outcomes are logged.
    #[arg(skip)]
    pub watch: Option<super::WatchSink>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum ApplyFormat {
    Text,
    Json,
}

struct CliUi {
    simulated: bool,
    auto_approve: bool,
    plan_to_stderr: bool,
    bar: Option<ProgressBar>,
    /// Run by `watch`: the plan goes to it (JSON under `--log-format json`), outcomes to the log.
    watch: Option<super::WatchSink>,
    /// Outcomes of resets sent before the plan was complete (and shown): printed after it, so the
    /// output reads plan, outcomes, summary.
    early: Option<Vec<String>>,
}

impl CliUi {
    /// Prints an outcome line: stdout in text mode, stderr with `--format json` (stdout is the
    /// report), above the bar when there is one.
    #[allow(clippy::print_stderr)]
    fn print_outcome(&self, line: &str) {
        let print = || {
            if self.plan_to_stderr {
                let _ = writeln!(crate::diag::safe::stderr(), "{line}");
            } else {
                say!("{line}");
            }
        };
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    /// Prints the outcomes held back until the plan was shown.
    fn flush_early(&mut self) {
        for line in self.early.take().unwrap_or_default() {
            self.print_outcome(&line);
        }
    }
}

impl Ui for CliUi {
    #[allow(clippy::print_stdout)]
    fn show_plan(&mut self, plan: &Plan<'_>) {
        let ctx = PlanContext::new(false, self.simulated);
        // Resets may already be under way (the plan is complete once every device is looked up).
        if let Some(bar) = self.bar.clone()
            && self.watch.is_none()
        {
            bar.set_length(plan.summary.to_send as u64);
            self.bar = None;
            bar.suspend(|| self.show_plan(plan));
            self.bar = Some(bar);
            return;
        }
        if let Some(w) = &self.watch {
            let format = if super::json_logs() { Format::Json } else { Format::Text };
            let mut buf = Vec::new();
            let _ = render::plan(&mut buf, plan, ctx, format);
            w.lock().unwrap_or_else(std::sync::PoisonError::into_inner).plan = buf;
        } else if self.plan_to_stderr {
            let mut out = std::io::BufWriter::new(crate::diag::safe::stderr());
            let _ = render::plan(&mut out, plan, ctx, Format::Text);
            let _ = out.flush();
        } else {
            let _ = super::print_text_plan(plan, ctx);
        }
        self.flush_early();
    }

    #[allow(clippy::print_stderr)]
    fn confirm(&mut self, plan: &Plan<'_>) -> bool {
        if self.auto_approve {
            return true;
        }
        let ask = || {
            eprint!("\n{} Only 'yes' will be accepted: ", question(&plan.summary));
            let _ = std::io::stderr().flush();
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
            line.trim() == "yes"
        };
        // The bar keeps ticking on stderr: hidden while the question waits for an answer.
        match &self.bar {
            Some(bar) => bar.suspend(ask),
            None => ask(),
        }
    }

    fn started(&mut self, candidates: usize) {
        if std::io::stderr().is_terminal() && self.watch.is_none() {
            let bar = ProgressBar::new(candidates as u64);
            if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}") {
                bar.set_style(style);
            }
            bar.set_message(render::progress::label(Progress { candidates, ..Progress::default() }));
            // Devices may take seconds to look up before the first reset leaves: the clock shows
            // the run is alive.
            bar.enable_steady_tick(std::time::Duration::from_millis(100));
            super::logging::set_bar(Some(bar.clone()));
            self.bar = Some(bar);
        }
    }

    fn progress(&mut self, progress: Progress) {
        if let Some(bar) = &self.bar {
            bar.set_position(progress.finished as u64);
            bar.set_message(render::progress::label(progress));
        }
    }

    /// Outcomes are results: stdout in text mode (above the bar, which is on stderr), after the
    /// plan. With `--format json` stdout is the report, so they go to stderr; under `watch`, to
    /// the log.
    fn outcome(&mut self, r: &Record) {
        let line = render::progress::outcome_line(r, jiff::Timestamp::now());
        if self.watch.is_some() {
            tracing::info!("{line}");
            return;
        }
        match &mut self.early {
            Some(early) => early.push(line),
            None => self.print_outcome(&line),
        }
    }
}

/// `apply --plan`: the actions the reviewed plan did not have, named, so that nobody takes "apply
/// complete" for "everything the manifests ask for was sent".
fn not_in_plan(watch: Option<&super::WatchSink>, report: &exec::ApplyReport) {
    let n = report.not_in_plan.len();
    if n == 0 {
        return;
    }
    let (were, them) = if n == 1 {
        ("action not in the reviewed plan was", "it")
    } else {
        ("actions not in the reviewed plan were", "them")
    };
    super::conclude(watch, format!("{n} {were} not sent (plan and review {them} to send {them}):"));
    for a in &report.not_in_plan {
        let line = format!("  {} {} {}", a.key.short(), a.manifest, a.selector);
        super::conclude(watch, crate::diag::safe::text(&line).into_owned());
    }
}

/// The command that sends what this run did not start: the same apply (a saved plan's resets
/// already sent are recognised as its own and not sent again).
fn rerun(args: &ApplyArgs) -> String {
    let mut cmd = String::from("reconcile apply");
    if args.simulate {
        cmd.push_str(" --simulate");
    }
    // A path with spaces or quotes is quoted as a POSIX shell word.
    let word = |p: &std::path::Path| {
        let p = p.display().to_string();
        if p.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c)) {
            p
        } else {
            format!("'{}'", p.replace('\'', r"'\''"))
        }
    };
    if let Some(plan) = &args.plan {
        cmd.push_str(&format!(" --plan {}", word(plan)));
    }
    for p in &args.paths {
        cmd.push_str(&format!(" {}", word(p)));
    }
    crate::diag::safe::text(&cmd).into_owned()
}

/// "Do you want to reset the passcode of 5 devices and remove the passcode of 1?": a passcode
/// removal is asked about by name.
fn question(s: &crate::core::plan::Summary) -> String {
    let devices = |n: usize| format!("{n} device{}", if n == 1 { "" } else { "s" });
    match render::resets_and_removals(s) {
        (resets, 0) => format!("Do you want to reset the passcode of {}?", devices(resets)),
        (0, removals) => format!("Do you want to remove the passcode of {}?", devices(removals)),
        (resets, removals) => {
            format!("Do you want to reset the passcode of {} and remove the passcode of {removals}?", devices(resets))
        }
    }
}

pub(super) fn run(g: &GlobalArgs, args: ApplyArgs) -> CmdResult {
    run_in(&mut Session::new()?, g, args)
}

/// `apply` in `session` (a command's own, or `watch`'s for its lifetime).
#[allow(clippy::print_stderr)]
pub(super) fn run_in(session: &mut Session, g: &GlobalArgs, args: ApplyArgs) -> CmdResult {
    let mut overrides = g.overrides();
    // The change is judged by the policy before it too: the saved plan's base, the previous
    // cycle's commit under watch, else the first parent of HEAD (the branch before a merge).
    let watched =
        args.watch.as_ref().and_then(|w| w.lock().unwrap_or_else(std::sync::PoisonError::into_inner).base.clone());
    let saved = args
        .plan
        .as_deref()
        .and_then(|p| crate::core::saved::SavedPlan::read(p).ok())
        .and_then(|s| s.policy)
        .and_then(|p| p.base);
    overrides.base = match saved.or(watched) {
        Some(commit) => crate::settings::Base::Commit(commit),
        None => crate::settings::Base::FirstParent,
    };
    let p = project::load(&overrides, &args.paths, &env).map_err(Failure::Invalid)?;
    print_diagnostics(&p.diagnostics);
    let request = ApplyRequest {
        saved_plan: args.plan.clone(),
        simulate: args.simulate,
        auto_approve: args.auto_approve,
        interactive: super::interactive(),
        ignore_change_windows: if args.ignore_change_windows {
            Some(args.reason.clone().unwrap_or_default())
        } else {
            None
        },
        max_actions: args.max_actions,
        lock_timeout: g.lock_timeout.map(|d| d.0).unwrap_or_default(),
    };
    let checked = match app::apply::check(&p, &request) {
        Err(app::apply::Refusal::Policy(diags)) => return Err(Failure::Invalid(diags)),
        other => other?,
    };
    let (runtime, conn) = session.connect(&p.settings, args.simulate, &env)?;
    let json = args.format == ApplyFormat::Json;
    let mut ui = CliUi {
        simulated: conn.simulated,
        auto_approve: args.auto_approve,
        plan_to_stderr: json,
        bar: None,
        watch: args.watch.clone(),
        early: Some(Vec::new()),
    };
    let report = runtime.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let plain = args.watch.is_none() && !super::json_logs();
        let stop = tokio::spawn(async move {
            super::wait_for_stop_signal().await;
            // Under `watch` or `--log-format json`, every line of stderr is a log event.
            if plain {
                eprintln!("\nstopping: no new requests; waiting for those in flight to be recorded");
            } else {
                tracing::warn!("stopping: no new requests; waiting for those in flight to be recorded");
            }
            let _ = tx.send(true);
        });
        let report = app::apply::apply(&p, checked, conn, &env, &mut ui, rx).await;
        stop.abort();
        report
    });
    if let Some(bar) = ui.bar.take() {
        bar.finish_and_clear();
        super::logging::set_bar(None);
    }
    // A run stopped before its plan was complete: what it did is still shown.
    ui.flush_early();
    let report = match report {
        Err(app::apply::Error::Apply(exec::ApplyError::Policy(diags))) => return Err(Failure::Invalid(diags)),
        other => other?,
    };
    if let Some(path) = &args.junit {
        crate::render::report::write_junit(path, &report)
            .with_context(|| format!("cannot write the JUnit report `{}`", path.display()))?;
    }
    if json {
        let mut out = std::io::BufWriter::new(crate::diag::safe::stdout());
        crate::render::report::json(&mut out, &report, conn.simulated)
            .and_then(|()| out.flush())
            .context("cannot write to stdout")?;
        return if report.success() { Ok(()) } else { Err(Failure::Exit(1)) };
    }
    let sim = if ui.simulated { "SIMULATED: " } else { "" };
    let watch = args.watch.as_ref();
    let adopted = match report.adopted {
        0 => String::new(),
        n => format!(" {n} reset{} made outside reconcile adopted (nothing sent).", if n == 1 { "" } else { "s" }),
    };
    if report.planned == 0 && report.blocked == 0 {
        super::conclude(watch, format!("{sim}Nothing to do.{adopted}"));
        not_in_plan(watch, &report);
        return Ok(());
    }
    // Never sent (stopped first): nothing is recorded for them, so running again sends them.
    let not_started = match report.not_started {
        0 => String::new(),
        n => {
            let them = if n == 1 { "it" } else { "them" };
            match watch {
                Some(_) => format!(" {n} not started: the next apply sends {them}."),
                None => format!(" {n} not started — run `{}` again to send {them}.", rerun(&args)),
            }
        }
    };
    super::conclude(
        watch,
        format!(
            "{}{sim}Apply {}: {} accepted, {} rejected, {} unknown, {} not executed, {} blocked.{adopted}{not_started}",
            if watch.is_some() { "" } else { "\n" },
            if report.interrupted { "interrupted" } else { "complete" },
            report.accepted,
            report.rejected,
            report.unknown,
            report.not_executed,
            report.blocked
        ),
    );
    not_in_plan(watch, &report);
    if report.unknown > 0 {
        super::conclude(
            watch,
            "Unknown outcomes are never re-sent blindly: run `reconcile refresh` to find out what happened.".into(),
        );
    }
    if report.success() { Ok(()) } else { Err(Failure::Exit(1)) }
}

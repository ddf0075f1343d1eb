//! `reconcile apply [PATH...]`

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};

use super::{CmdResult, Failure, GlobalArgs, env, print_diagnostics};
use anyhow::Context as _;

use crate::app::event::{Event, Subscriber};
use crate::app::{self, Session, apply::Applied, apply::ApplyRequest};
use crate::core::plan::Plan;
use crate::exec::{ApplyReport, Progress};
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum ApplyFormat {
    Text,
    Json,
}

/// Renders an apply's events: the plan, a progress bar on a terminal, outcome lines.
struct CliUi {
    simulated: bool,
    auto_approve: bool,
    plan_to_stderr: bool,
    bar: Option<ProgressBar>,
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

    /// The run is over: the bar goes, and what it did is shown even when it stopped before its
    /// plan was complete.
    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            super::logging::set_bar(None);
        }
        self.flush_early();
    }

    fn show_plan(&mut self, plan: &Plan<'_>) {
        let ctx = PlanContext::new(false, self.simulated);
        // Resets may already be under way (the plan is complete once every device is looked up).
        if let Some(bar) = self.bar.take() {
            bar.set_length(plan.summary.to_send as u64);
            bar.suspend(|| self.show_plan(plan));
            self.bar = Some(bar);
            return;
        }
        if self.plan_to_stderr {
            let mut out = std::io::BufWriter::new(crate::diag::safe::stderr());
            let _ = render::plan(&mut out, plan, ctx, Format::Text);
            let _ = out.flush();
        } else {
            let _ = super::print_text_plan(plan, ctx);
        }
        self.flush_early();
    }

    fn started(&mut self, candidates: usize) {
        if std::io::stderr().is_terminal() {
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
}

impl Subscriber for CliUi {
    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Warnings(diags) => print_diagnostics(diags),
            Event::PlanMade(plan) => self.show_plan(plan),
            Event::Started { candidates } => self.started(candidates),
            Event::Progress(progress) => {
                if let Some(bar) = &self.bar {
                    bar.set_position(progress.finished as u64);
                    bar.set_message(render::progress::label(progress));
                }
            }
            // Outcomes are results: stdout in text mode (above the bar, which is on stderr),
            // after the plan. With `--format json` stdout is the report, so they go to stderr.
            Event::Finished { record, at } => {
                let line = render::progress::outcome_line(record, at);
                match &mut self.early {
                    Some(early) => early.push(line),
                    None => self.print_outcome(&line),
                }
            }
        }
    }

    #[allow(clippy::print_stderr)]
    fn confirm(&mut self, plan: &Plan<'_>) -> bool {
        if self.auto_approve {
            return true;
        }
        let ask = || {
            eprint!("\n{} Only 'yes' will be accepted: ", question(plan));
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
}

/// How an apply (as text) ends: 0 when there was nothing to do or every planned action was
/// accepted, else 1.
pub(super) fn exit(report: &ApplyReport) -> CmdResult {
    if render::summary::nothing_to_do(report) || report.success() { Ok(()) } else { Err(Failure::Exit(1)) }
}

/// Why an apply failed, for `main` to report.
pub(super) fn failure(e: app::apply::Error) -> Failure {
    match e {
        app::apply::Error::Invalid(diags) => Failure::Invalid(diags),
        other => Failure::Error(other.into()),
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
/// removal is asked about by name, and every other kind too ("Do you want to wipe 1 device and
/// lock 2 devices?").
fn question(plan: &crate::core::plan::Plan) -> String {
    let devices = |n: usize| format!("{n} device{}", if n == 1 { "" } else { "s" });
    let kinds = render::kinds_to_send(plan);
    if kinds.iter().all(|(k, _)| *k == crate::core::action::ActionKind::PasscodeReset) {
        return match render::resets_and_removals(plan) {
            (resets, 0) => format!("Do you want to reset the passcode of {}?", devices(resets)),
            (0, removals) => format!("Do you want to remove the passcode of {}?", devices(removals)),
            (resets, removals) => format!(
                "Do you want to reset the passcode of {} and remove the passcode of {removals}?",
                devices(resets)
            ),
        };
    }
    let parts: Vec<String> =
        kinds.into_iter().map(|(k, n)| format!("{} {}", k.spec().wording.phrase, devices(n))).collect();
    format!("Do you want to {}?", parts.join(" and "))
}

pub(super) fn run(g: &GlobalArgs, args: ApplyArgs) -> CmdResult {
    let mut session = Session::new()?;
    let request = ApplyRequest {
        paths: args.paths.clone(),
        base: None,
        saved_plan: args.plan.clone(),
        simulate: args.simulate,
        auto_approve: args.auto_approve,
        interactive: super::interactive(),
        ignore_change_windows: args.ignore_change_windows.then(|| args.reason.clone().unwrap_or_default()),
        max_actions: args.max_actions,
        lock_timeout: g.lock_timeout.map(|d| d.0).unwrap_or_default(),
    };
    let json = args.format == ApplyFormat::Json;
    let mut ui = CliUi {
        simulated: args.simulate,
        auto_approve: args.auto_approve,
        plan_to_stderr: json,
        bar: None,
        early: Some(Vec::new()),
    };
    // Under `--log-format json`, every line of stderr is a log event.
    let stop = super::stopping(!super::json_logs());
    let applied = app::apply::run(&mut session, &g.overrides(), &request, &env, &mut ui, stop);
    ui.finish();
    let Applied { report, simulated } = applied.map_err(failure)?;
    if let Some(path) = &args.junit {
        crate::render::report::write_junit(path, &report)
            .with_context(|| format!("cannot write the JUnit report `{}`", path.display()))?;
    }
    if json {
        let mut out = std::io::BufWriter::new(crate::diag::safe::stdout());
        crate::render::report::json(&mut out, &report, simulated)
            .and_then(|()| out.flush())
            .context("cannot write to stdout")?;
        return if report.success() { Ok(()) } else { Err(Failure::Exit(1)) };
    }
    if !render::summary::nothing_to_do(&report) {
        say!();
    }
    for line in render::summary::apply(&report, simulated, Some(&rerun(&args))) {
        say!("{line}");
    }
    exit(&report)
}

//! `reconcile refresh`

use super::{CmdResult, Failure, GlobalArgs, env};
use crate::app::project;
use crate::app::{self, Session};
use crate::diag::safe::text;

#[derive(Debug, clap::Args)]
pub(super) struct RefreshArgs {
    /// Use the built-in Intune simulator and its own ledger instead of Graph.
    #[arg(long)]
    pub simulate: bool,
    /// Run by `watch`: changes are logged, the closing lines go to the watcher.
    #[arg(skip)]
    pub watch: Option<super::WatchSink>,
}

pub(super) fn run(g: &GlobalArgs, args: RefreshArgs) -> CmdResult {
    run_in(&mut Session::new()?, g, args)
}

/// `refresh` in `session` (a command's own, or `watch`'s for its lifetime).
#[allow(clippy::print_stdout)]
pub(super) fn run_in(session: &mut Session, g: &GlobalArgs, args: RefreshArgs) -> CmdResult {
    let (settings, diags) = project::load_settings(&g.overrides(), &env);
    if diags.has_errors() {
        return Err(Failure::Invalid(diags));
    }
    let (runtime, conn) = session.connect(&settings, args.simulate, &env)?;
    let lock_timeout = g.lock_timeout.map(|d| d.0).unwrap_or_default();
    let report = runtime.block_on(app::refresh::refresh(&settings, conn, lock_timeout))?;
    let sim = if conn.simulated { "SIMULATED: " } else { "" };
    // Notes quote Intune (audit ids, states): every line is shown escaped.
    for c in &report.changes {
        let line = format!(
            "{:<13} -> {:<13} {} {} {}  {}",
            c.from.as_str(),
            c.record.status.as_str(),
            c.record.key.short(),
            c.record.manifest,
            c.record.selector,
            c.note
        );
        change_line(args.watch.is_some(), text(&line).into_owned());
    }
    for (r, why) in &report.unresolved {
        let line = format!(
            "{:<13}    {:<13} {} {} {}  {}",
            "unknown",
            "(unchanged)",
            r.key.short(),
            r.manifest,
            r.selector,
            why
        );
        change_line(args.watch.is_some(), text(&line).into_owned());
    }
    let watch = args.watch.as_ref();
    super::conclude(
        watch,
        format!(
            "{sim}Refresh: {} checked, {} changed, {} still waiting.",
            report.checked,
            report.changes.len(),
            report.waiting
        ),
    );
    if !report.unresolved.is_empty() {
        super::conclude(
            watch,
            format!(
                "{} unknown action{} stay unknown and are not re-sent: refresh again later, or decide with `reconcile state resolve KEY --as done|not-executed --reason TEXT`.",
                report.unresolved.len(),
                if report.unresolved.len() == 1 { "" } else { "s" }
            ),
        );
    }
    Ok(())
}

/// One action's change: printed, or logged when `watch` runs the refresh.
fn change_line(watched: bool, line: String) {
    if watched {
        tracing::info!("{line}");
    } else {
        say!("{line}");
    }
}

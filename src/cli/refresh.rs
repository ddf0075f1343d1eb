//! `reconcile refresh`

use super::{CmdResult, GlobalArgs, env};
use crate::app::refresh::RefreshRequest;
use crate::app::{self, Session};
use crate::core::refresh::RefreshReport;
use crate::diag::safe::text;

#[derive(Debug, clap::Args)]
pub(super) struct RefreshArgs {
    /// Use the built-in Intune simulator and its own ledger instead of Graph.
    #[arg(long)]
    pub simulate: bool,
}

pub(super) fn run(g: &GlobalArgs, args: RefreshArgs) -> CmdResult {
    let request =
        RefreshRequest { simulate: args.simulate, lock_timeout: g.lock_timeout.map(|d| d.0).unwrap_or_default() };
    let refreshed = app::refresh::run(&mut Session::new()?, &g.overrides(), &request, &env).map_err(super::failure)?;
    for line in changes(&refreshed.report).into_iter().chain(conclusion(&refreshed.report, refreshed.simulated)) {
        say!("{line}");
    }
    Ok(())
}

/// One line per action whose status changed, and per unknown action that stays unknown. Notes
/// quote Intune (audit ids, states): every line is escaped.
pub(super) fn changes(report: &RefreshReport) -> Vec<String> {
    let changed = report.changes.iter().map(|c| {
        format!(
            "{:<13} -> {:<13} {} {} {}  {}",
            c.from.as_str(),
            c.record.status.as_str(),
            c.record.key.short(),
            c.record.manifest,
            c.record.selector,
            c.note
        )
    });
    let unresolved = report.unresolved.iter().map(|(r, why)| {
        format!("{:<13}    {:<13} {} {} {}  {}", "unknown", "(unchanged)", r.key.short(), r.manifest, r.selector, why)
    });
    changed.chain(unresolved).map(|line| text(&line).into_owned()).collect()
}

/// The closing lines of a refresh.
pub(super) fn conclusion(report: &RefreshReport, simulated: bool) -> Vec<String> {
    let sim = if simulated { "SIMULATED: " } else { "" };
    let mut lines = vec![format!(
        "{sim}Refresh: {} checked, {} changed, {} still waiting.",
        report.checked,
        report.changes.len(),
        report.waiting
    )];
    if !report.unresolved.is_empty() {
        lines.push(format!(
            "{} unknown action{} stay unknown and are not re-sent: refresh again later, or decide with `reconcile state resolve KEY --as done|not-executed --reason TEXT`.",
            report.unresolved.len(),
            if report.unresolved.len() == 1 { "" } else { "s" }
        ));
    }
    lines
}

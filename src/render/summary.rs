//! How `apply` and `refresh` end, as text: their closing lines, and refresh's one line per
//! changed action. The command line prints them; `watch` prints them in its cycle lines.

use crate::core::action::ActionKind;
use crate::core::refresh::RefreshReport;
use crate::diag::safe::text;
use crate::exec::ApplyReport;

/// The closing lines of `apply`. `rerun` is the command that sends what was not started; without
/// one, the next apply sends it.
pub(crate) fn apply(report: &ApplyReport, simulated: bool, rerun: Option<&str>) -> Vec<String> {
    let sim = if simulated { "SIMULATED: " } else { "" };
    // Resets keep their word; with other kinds adopted, "actions".
    let resets_only =
        report.records.iter().filter(|r| r.adopted.is_some()).all(|r| r.kind == ActionKind::PasscodeReset);
    let what = if resets_only { "reset" } else { "action" };
    let adopted = match report.adopted {
        0 => String::new(),
        n => format!(" {n} {what}{} made outside reconcile adopted (nothing sent).", if n == 1 { "" } else { "s" }),
    };
    let mut lines = Vec::new();
    if nothing_to_do(report) {
        lines.push(format!("{sim}Nothing to do.{adopted}"));
        lines.extend(not_in_plan(report));
        return lines;
    }
    // Never sent (stopped first): nothing is recorded for them, so running again sends them.
    let not_started = match (report.not_started, rerun) {
        (0, _) => String::new(),
        (n, rerun) => {
            let them = if n == 1 { "it" } else { "them" };
            match rerun {
                None => format!(" {n} not started: the next apply sends {them}."),
                Some(cmd) => format!(" {n} not started — run `{cmd}` again to send {them}."),
            }
        }
    };
    lines.push(format!(
        "{sim}Apply {}: {} accepted, {} rejected, {} unknown, {} not executed, {} blocked.{adopted}{not_started}",
        if report.interrupted { "interrupted" } else { "complete" },
        report.accepted,
        report.rejected,
        report.unknown,
        report.not_executed,
        report.blocked
    ));
    lines.extend(not_in_plan(report));
    if report.awaiting_approval > 0 {
        lines.push(format!(
            "{} held by Multi Admin Approval (not executed): a second administrator approves each in the Intune admin center; `reconcile refresh` or the next apply then sends it once.",
            report.awaiting_approval
        ));
    }
    if report.unknown > 0 {
        lines.push(
            "Unknown outcomes are never re-sent blindly: run `reconcile refresh` to find out what happened.".into(),
        );
    }
    lines
}

/// Nothing was planned or blocked.
pub(crate) fn nothing_to_do(report: &ApplyReport) -> bool {
    report.planned == 0 && report.blocked == 0
}

/// `apply --plan`: the actions the reviewed plan did not have, named, so that nobody takes "apply
/// complete" for "everything the manifests ask for was sent".
fn not_in_plan(report: &ApplyReport) -> Vec<String> {
    let n = report.not_in_plan.len();
    if n == 0 {
        return Vec::new();
    }
    let (were, them) = if n == 1 {
        ("action not in the reviewed plan was", "it")
    } else {
        ("actions not in the reviewed plan were", "them")
    };
    let mut lines = vec![format!("{n} {were} not sent (plan and review {them} to send {them}):")];
    for a in &report.not_in_plan {
        let line = format!("  {} {} {}", a.key.short(), a.manifest, a.selector);
        lines.push(text(&line).into_owned());
    }
    lines
}

/// One line per action whose status changed, and per unknown action that stays unknown. Notes
/// quote Intune (audit ids, states): every line is escaped.
pub(crate) fn refresh_changes(report: &RefreshReport) -> Vec<String> {
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

/// The closing lines of `refresh`.
pub(crate) fn refresh(report: &RefreshReport, simulated: bool) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_do_is_one_line_and_a_stopped_run_names_how_to_send_the_rest() {
        let idle = ApplyReport::default();
        assert_eq!(apply(&idle, true, None), ["SIMULATED: Nothing to do."]);
        let stopped = ApplyReport {
            planned: 3,
            accepted: 1,
            unknown: 1,
            not_started: 1,
            interrupted: true,
            ..ApplyReport::default()
        };
        let by_hand = apply(&stopped, false, Some("reconcile apply"));
        assert_eq!(
            by_hand[0],
            "Apply interrupted: 1 accepted, 0 rejected, 1 unknown, 0 not executed, 0 blocked. 1 not started — run `reconcile apply` again to send it."
        );
        assert!(by_hand[1].starts_with("Unknown outcomes are never re-sent blindly"));
        let next = apply(&stopped, false, None);
        assert!(next[0].ends_with(" 1 not started: the next apply sends it."), "{next:?}");
        assert!(nothing_to_do(&idle) && !nothing_to_do(&stopped));
    }

    #[test]
    fn a_refresh_ends_with_its_counts() {
        let report = RefreshReport::default();
        assert!(refresh_changes(&report).is_empty());
        assert_eq!(refresh(&report, false), ["Refresh: 0 checked, 0 changed, 0 still waiting."]);
    }
}

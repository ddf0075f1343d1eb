//! The plan as Markdown for a pull-request comment or a CI job summary.

use std::io::{self, Write};

use super::{PlanContext, attention_line, summary_line, text::symbol};
use crate::plan::{Change, Plan};

/// Marks the comment so a bot can find and update it instead of adding another.
pub const MARKER: &str = "<!-- intune-reconcile:plan -->";

pub fn plan(out: &mut impl Write, plan: &Plan, ctx: PlanContext) -> io::Result<()> {
    writeln!(out, "{MARKER}")?;
    writeln!(out, "### intune-reconcile plan{}", if ctx.simulated { " (SIMULATED)" } else { "" })?;
    writeln!(out)?;
    if ctx.offline {
        writeln!(out, "> Offline plan: devices were not looked up in Intune.")?;
        writeln!(out)?;
    }
    let s = plan.summary;
    writeln!(out, "| reset | already done | needs attention | blocked | orphaned |")?;
    writeln!(out, "|---:|---:|---:|---:|---:|")?;
    writeln!(out, "| {} | {} | {} | {} | {} |", s.to_reset, s.already_done, s.attention, s.blocked, s.orphaned)?;
    writeln!(out)?;
    let mut i = 0;
    while i < plan.entries.len() {
        let first = &plan.entries[i];
        let group_end = plan.entries[i..]
            .iter()
            .position(|e| {
                e.manifest() != first.manifest() || (e.change == Change::Orphaned) != (first.change == Change::Orphaned)
            })
            .map_or(plan.entries.len(), |n| i + n);
        let group = &plan.entries[i..group_end];
        let resets = group.iter().filter(|e| e.change == Change::Reset).count();
        let title = match (&first.action, &first.record) {
            (Some(a), _) => format!(
                "<code>{}</code> ({}): {resets} to reset",
                escape(&a.manifest),
                escape(&a.file.display().to_string())
            ),
            (None, Some(r)) => format!("orphaned from <code>{}</code>: {}", escape(&r.manifest), group.len()),
            (None, None) => String::new(),
        };
        writeln!(out, "<details><summary>{title}</summary>")?;
        writeln!(out)?;
        writeln!(out, "| | device | action | status | key |")?;
        writeln!(out, "|---|---|---|---|---|")?;
        for e in group {
            let status = match e.change {
                Change::Blocked => format!("blocked: {}", escape(&e.reason)),
                _ => e.record.map_or("new", |r| r.status.as_str()).to_owned(),
            };
            let device = match e.device {
                Some(d) => format!("{}<br>{}", escape(&e.selector().to_string()), escape(&super::device_summary(d))),
                None => escape(&e.selector().to_string()),
            };
            let action = if e.change == Change::Reset { super::action_verb(e) } else { "" };
            writeln!(out, "| `{}` | {} | {} | {} | `{}` |", symbol(e.change), device, action, status, e.key().short())?;
        }
        writeln!(out)?;
        writeln!(out, "</details>")?;
        writeln!(out)?;
        i = group_end;
    }
    writeln!(out, "**{}**", summary_line(plan))?;
    if let Some(line) = attention_line(plan) {
        writeln!(out)?;
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// Escapes what Markdown tables and HTML would otherwise interpret.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('|', "\\|").replace('`', "'")
}

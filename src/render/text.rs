//! The plan as a Terraform-like text: grouped by manifest, one line per action, a summary.

use std::io::{self, Write};

use super::{PlanContext, attention_line, manifest_facts, outside_line, summary_line};
use crate::plan::{Change, Entry, Plan};
use crate::safe::text;

/// The marker at the start of an action line.
pub(crate) fn symbol(change: Change) -> &'static str {
    match change {
        Change::Reset => "+",
        Change::AlreadyDone => "=",
        Change::Attention => "!",
        Change::Orphaned => "~",
        Change::Blocked => "x",
        Change::SameDevice => "&",
        Change::Adopt => "*",
    }
}

/// `plain` (a rendered text plan) with its action lines coloured for a terminal: resets green,
/// blocked red, needing attention yellow. Everything else is left as it is.
pub(crate) fn paint(plain: &str) -> String {
    let mut out = String::with_capacity(plain.len() + plain.len() / 8);
    for line in plain.split_inclusive('\n') {
        let colour = match line.get(..4) {
            Some("  + ") => Some("32"),
            Some("  x ") => Some("31"),
            Some("  ! " | "  * ") => Some("33"),
            _ => None,
        };
        match colour {
            Some(c) => {
                let (body, end) = line.strip_suffix('\n').map_or((line, ""), |b| (b, "\n"));
                out.push_str(&format!("\x1b[{c}m{body}\x1b[0m{end}"));
            }
            None => out.push_str(line),
        }
    }
    out
}

fn verb(e: &Entry) -> String {
    match (e.change, &e.record) {
        (Change::Reset, _) => super::action_verb(e).to_owned(),
        (Change::Blocked, _) => "blocked".to_owned(),
        (Change::SameDevice, _) => "same device".to_owned(),
        (Change::Adopt, _) => "adopt".to_owned(),
        (Change::AlreadyDone | Change::Attention | Change::Orphaned, Some(r)) => r.status.to_string(),
        (_, None) => e.change.as_str().to_owned(),
    }
}

pub(crate) fn plan(out: &mut impl Write, plan: &Plan, ctx: PlanContext) -> io::Result<()> {
    for (lead, items, tail) in super::policy_lines(plan) {
        writeln!(out, "{lead} {}{tail}", text(&items.join("; ")))?;
    }
    if ctx.simulated {
        writeln!(out, "SIMULATED: against the built-in Intune simulator, not a real tenant.")?;
    }
    if ctx.offline {
        writeln!(out, "Offline plan: devices were not looked up in Intune.")?;
        let unresolved = plan
            .entries
            .iter()
            .filter(|e| e.change == Change::Reset && e.selector().kind != crate::action::SelectorKind::Id)
            .count();
        if unresolved > 0 {
            writeln!(
                out,
                "{unresolved} of the resets name devices by serial number, name or IMEI: they are resolved online."
            )?;
        }
    }
    if plan.entries.is_empty() {
        writeln!(out, "No actions: the manifests ask for nothing and the ledger is empty.")?;
    } else {
        writeln!(
            out,
            "Legend: + reset passcode, = already done, ! needs attention, ~ orphaned, x blocked (not sent), & same device as another entry, * reset outside reconcile: adopted"
        )?;
    }
    let mut current: Option<(&str, bool)> = None;
    for e in &plan.entries {
        let orphan = e.change == Change::Orphaned;
        if current != Some((e.manifest(), orphan)) {
            writeln!(out)?;
            match (&e.action, &e.record) {
                (Some(a), _) => {
                    let facts = plan.manifests.get(&a.manifest).and_then(manifest_facts);
                    let facts = facts.map(|f| format!(": {}", text(&f))).unwrap_or_default();
                    writeln!(out, "manifest {} ({}){facts}", a.manifest, text(&a.file.display().to_string()))?
                }
                (None, Some(r)) => writeln!(out, "orphaned from manifest {} (was {})", r.manifest, text(&r.file))?,
                (None, None) => {}
            }
            current = Some((e.manifest(), orphan));
        }
        let selector = e.selector().to_string();
        let mut detail = match e.change {
            Change::Reset | Change::AlreadyDone => String::new(),
            Change::Attention | Change::Orphaned | Change::Blocked | Change::SameDevice | Change::Adopt => {
                format!("  ({})", text(&e.reason))
            }
        };
        if let (Change::AlreadyDone, Some(a)) = (e.change, e.record.and_then(|r| r.adopted.as_ref())) {
            detail =
                format!("  (adopted: reset outside reconcile at {})", crate::duration::at_second(a.result_started));
        }
        if e.change == Change::Reset && e.out_of_band.is_some() {
            // policy.outOfBand `then: send`: the reason is the warning.
            detail = format!("  ({})", text(&e.reason));
        }
        if let Some(old) = e.recorded_as() {
            detail.push_str(&format!("  (recorded as `{old}`, a former name)"));
        }
        if let Some(d) = e.device {
            detail = format!("  {}{detail}", super::device_summary(d));
        }
        writeln!(out, "  {} {:<15} {:<45} key {}{detail}", symbol(e.change), verb(e), selector, e.key().short())?;
    }
    if !plan.violations.is_empty() {
        writeln!(out, "\nPolicy violations (a manifest's stop that manifest; a repository rule stops apply):")?;
        for v in plan.violations.iter().map(|v| &v.diagnostic) {
            let at = match (&v.file, v.pos) {
                (Some(f), Some(p)) => format!("{}:{}:{}: ", f.display(), p.line, p.column),
                (Some(f), None) => format!("{}: ", f.display()),
                _ => String::new(),
            };
            writeln!(out, "  {}", text(&format!("{at}{}", v.message)))?;
            if let Some(h) = &v.hint {
                writeln!(out, "    hint: {}", text(h))?;
            }
        }
    }
    writeln!(out)?;
    writeln!(out, "{}", summary_line(plan))?;
    if let Some(line) = attention_line(plan) {
        writeln!(out, "{line}")?;
    }
    if let Some(line) = outside_line(plan) {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_action_lines_are_painted() {
        let plain = "manifest a (a.yaml)\n  + reset passcode x\n  x blocked y\n  ! unknown z\n  = accepted w\nPlan: 1 to reset\n";
        let painted = super::paint(plain);
        assert_eq!(
            painted,
            "manifest a (a.yaml)\n\u{1b}[32m  + reset passcode x\u{1b}[0m\n\u{1b}[31m  x blocked y\u{1b}[0m\n\u{1b}[33m  ! unknown z\u{1b}[0m\n  = accepted w\nPlan: 1 to reset\n"
        );
    }
}

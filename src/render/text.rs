//! The plan as a Terraform-like text: grouped by manifest, one line per action, a summary.

use std::io::{self, Write};

use super::{PlanContext, attention_line, manifest_facts, outside_line, summary_line};
use crate::core::plan::{Change, Entry, Plan};
use crate::diag::safe::text;

/// The marker at the start of an action line.
pub(crate) fn symbol(change: Change) -> &'static str {
    match change {
        Change::Send => "+",
        Change::AlreadyDone => "=",
        Change::Attention => "!",
        Change::Orphaned => "~",
        Change::Blocked => "x",
        Change::SameDevice => "&",
        Change::Adopt => "*",
    }
}

/// What a line of the plan says for each symbol, in the legend's order.
const LEGEND: [(Change, &str); 7] = [
    (Change::Send, "+ reset passcode"),
    (Change::AlreadyDone, "= already done"),
    (Change::Attention, "! needs attention"),
    (Change::Orphaned, "~ orphaned"),
    (Change::Blocked, "x blocked (not sent)"),
    (Change::SameDevice, "& same device as another entry"),
    (Change::Adopt, "* reset outside reconcile: adopted"),
];

/// An action line stays within this many columns: what does not fit (the device) moves to the
/// lines under it, where the reasons are.
pub(crate) const WIDTH: usize = 120;
/// The widest selector column; a longer selector pushes the rest of its line right.
const SELECTOR_COLUMN: usize = 40;
/// How far the lines under an action are indented.
const DETAIL: &str = "      ";

/// The SGR colour of an entry's symbol and status: resets green, passcode removals magenta,
/// blocked red, needing attention yellow, adoptions cyan; the rest plain.
fn colour_of(e: &Entry) -> Option<&'static str> {
    match e.change {
        Change::Send if e.removes_passcode() => Some("35"),
        Change::Send => Some("32"),
        Change::Blocked => Some("31"),
        Change::Attention => Some("33"),
        Change::Adopt => Some("36"),
        Change::AlreadyDone | Change::Orphaned | Change::SameDevice => None,
    }
}

/// `s` in SGR `code` when `on`.
fn sgr(s: &str, code: Option<&str>, on: bool) -> String {
    match code {
        Some(c) if on && !s.is_empty() => format!("\x1b[{c}m{s}\x1b[0m"),
        _ => s.to_owned(),
    }
}

fn verb(e: &Entry) -> String {
    match (e.change, &e.record) {
        (Change::Send, _) => super::action_verb(e),
        (Change::Blocked, _) => "blocked".to_owned(),
        (Change::SameDevice, _) => "same device".to_owned(),
        (Change::Adopt, _) => "adopt".to_owned(),
        (Change::AlreadyDone | Change::Attention | Change::Orphaned, Some(r)) => r.status.to_string(),
        (_, None) => e.change.as_str().to_owned(),
    }
}

/// The device as an action line shows it within `room` characters: all of it (name, OS and
/// version, owner, last sync, user), else `name (OS version, owner, user)`, else `name (OS
/// version, user)`, then the same without the user (who then goes on the line below), else its
/// name; `None` when not even the name fits (the whole goes on the line below).
fn device_within(d: &crate::core::device::Device, room: usize) -> Option<String> {
    let full = super::device_summary(d);
    let f = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let name = f(&d.device_name).unwrap_or_else(|| d.id.clone());
    let os = [f(&d.operating_system), f(&d.os_version)].into_iter().flatten().collect::<Vec<_>>().join(" ");
    let owner = f(&d.managed_device_owner_type);
    let with = |extra: &[&Option<String>]| {
        let parts: Vec<String> = extra.iter().filter_map(|p| (*p).clone()).filter(|p| !p.is_empty()).collect();
        if parts.is_empty() { name.clone() } else { format!("{name} ({})", parts.join(", ")) }
    };
    let os = Some(os);
    let user = super::device_user(d).map(|u| format!("user {u}"));
    [full, with(&[&os, &owner, &user]), with(&[&os, &user]), with(&[&os, &owner]), with(&[&os]), name.clone()]
        .into_iter()
        .map(|s| text(&s).into_owned())
        .find(|s| s.chars().count() <= room)
}

/// `s` cut into lines of at most `width` characters at spaces (a longer word stays whole).
fn wrap(s: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in s.split(' ') {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// The lines under an action: the device when it did not fit its line, then why it is in its
/// category (each line of a reason on its own: the candidates of an ambiguous selector), wrapped.
fn details(e: &Entry, device_below: Option<String>) -> Vec<String> {
    let notes: Vec<String> = device_below.into_iter().collect();
    let reason = match e.change {
        Change::Attention | Change::Orphaned | Change::Blocked | Change::SameDevice | Change::Adopt => {
            Some(e.reason.to_string())
        }
        // policy.outOfBand `then: send`: the reason is the warning.
        Change::Send if e.out_of_band.is_some() => Some(e.reason.to_string()),
        Change::Send | Change::AlreadyDone => None,
    };
    let adopted = match (e.change, e.record.and_then(|r| r.adopted.as_ref())) {
        (Change::AlreadyDone, Some(a)) => Some(format!("adopted: {}", a.seen(e.kind().spec().wording.short))),
        _ => None,
    };
    // A reason's first line is prose, wrapped; the lines after it are a list (the candidates of an
    // ambiguous selector), one item a line, kept whole.
    let mut lines = Vec::new();
    for note in notes.iter().chain(reason.iter()).chain(&adopted) {
        let mut parts = note.split('\n').map(|l| text(l).into_owned());
        lines.extend(parts.next().map(|first| wrap(&first, WIDTH - DETAIL.len())).unwrap_or_default());
        lines.extend(parts);
    }
    if let Some(old) = e.recorded_as() {
        lines.push(format!("recorded as `{}`, a former name", text(old)));
    }
    lines
}

pub(crate) fn plan(out: &mut impl Write, plan: &Plan, ctx: PlanContext) -> io::Result<()> {
    let bold = |s: &str| sgr(s, Some("1"), ctx.colour);
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
            .filter(|e| e.change == Change::Send && e.selector().kind != crate::core::action::SelectorKind::Id)
            .count();
        if unresolved > 0 {
            let resets_only = plan.entries.iter().all(|e| e.kind() == crate::core::action::ActionKind::PasscodeReset);
            let what = if resets_only { "resets" } else { "actions" };
            writeln!(
                out,
                "{unresolved} of the {what} name devices by serial number, name or IMEI: they are resolved online."
            )?;
        }
    }
    let shown: Vec<&Entry> = super::shown(plan, ctx).collect();
    if plan.entries.is_empty() {
        writeln!(out, "No actions: the manifests ask for nothing and the ledger is empty.")?;
    } else if !shown.is_empty() {
        // Resets alone keep their words; with other kinds each line names its action.
        let resets_only = shown.iter().all(|e| e.kind() == crate::core::action::ActionKind::PasscodeReset);
        let present: Vec<&str> = LEGEND
            .iter()
            .filter(|(c, _)| shown.iter().any(|e| e.change == *c))
            .map(|(c, what)| match c {
                Change::Send if !resets_only => "+ send",
                Change::Adopt if !resets_only => "* made outside reconcile: adopted",
                _ => *what,
            })
            .collect();
        writeln!(out, "Legend: {}", present.join(", "))?;
    }
    let selector_column =
        shown.iter().map(|e| text(&e.selector().to_string()).chars().count()).max().unwrap_or(0).min(SELECTOR_COLUMN);
    // The longest action's words set the column (a reset's fit the 15 it always had).
    let verb_column = shown.iter().map(|e| verb(e).chars().count()).max().unwrap_or(0).max(15);
    let mut current: Option<(&str, bool)> = None;
    for e in shown {
        let orphan = e.change == Change::Orphaned;
        if current != Some((e.manifest(), orphan)) {
            writeln!(out)?;
            match (&e.action, &e.record) {
                (Some(a), _) => {
                    let facts = plan.manifests.get(&a.manifest).and_then(manifest_facts);
                    let facts = facts.map(|f| format!(": {}", text(&f))).unwrap_or_default();
                    let heading = format!("manifest {} ({})", text(&a.manifest), text(&a.file.display().to_string()));
                    writeln!(out, "{}{facts}", bold(&heading))?
                }
                (None, Some(r)) => {
                    let heading = format!("orphaned from manifest {} (was {})", text(&r.manifest), text(&r.file));
                    writeln!(out, "{}", bold(&heading))?
                }
                (None, None) => {}
            }
            current = Some((e.manifest(), orphan));
        }
        let selector = text(&e.selector().to_string()).into_owned();
        let verb = verb(e);
        let head = format!(
            "  {} {verb:<verb_column$} {selector:<selector_column$}  key {}",
            symbol(e.change),
            e.key().short()
        );
        let room = WIDTH.saturating_sub(head.chars().count() + 2);
        let (line, device_below) = match e.device {
            Some(d) => match device_within(d, room) {
                // A shortened device leaves its user (`plan.showUser`) to the line below.
                Some(short) => {
                    let user = super::device_user(d).filter(|u| !short.contains(&*text(&format!("user {u}"))));
                    // Escaped here: the lines below split a reason at its newlines.
                    (format!("{head}  {short}"), user.map(|u| format!("user {}", text(u))))
                }
                None => (head, Some(super::device_summary(d))),
            },
            None => (head, None),
        };
        // Colour on the symbol and the status only: the rest of the line stays plain.
        let colour = colour_of(e);
        let painted = format!(
            "  {} {}{}",
            sgr(symbol(e.change), colour, ctx.colour),
            sgr(&verb, colour, ctx.colour),
            &line[4 + verb.len()..]
        );
        writeln!(out, "{painted}")?;
        for note in details(e, device_below) {
            writeln!(out, "{DETAIL}{note}")?;
        }
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
    for line in super::destructive_lines(plan) {
        writeln!(out, "{}", bold(&format!("DESTRUCTIVE: {}", text(&line))))?;
    }
    writeln!(out, "{}", bold(&summary_line(plan, ctx)))?;
    if let Some(line) = attention_line(plan) {
        writeln!(out, "{line}")?;
    }
    if let Some(line) = super::quiet_line(plan, ctx) {
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
    fn reasons_wrap_at_spaces_and_long_words_stay_whole() {
        assert_eq!(super::wrap("aa bb cc", 5), ["aa bb", "cc"]);
        assert_eq!(super::wrap("abcdefgh ij", 4), ["abcdefgh", "ij"]);
        assert_eq!(super::wrap("", 4), [""]);
    }

    #[test]
    fn only_the_symbol_and_status_are_coloured() {
        assert_eq!(super::sgr("+", Some("32"), true), "\u{1b}[32m+\u{1b}[0m");
        assert_eq!(super::sgr("+", Some("32"), false), "+");
        assert_eq!(super::sgr("=", None, true), "=");
    }
}

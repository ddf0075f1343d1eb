//! The plan as Markdown for a pull-request comment or a CI job summary.
//!
//! Warnings first, then a summary table, then one collapsible list per manifest. The whole stays
//! under GitHub's 65,536-character comment limit for any plan: past [`BUDGET`], the lists are cut
//! with a line saying how much was left out and where the full plan is.

use std::fmt::Write as _;
use std::io::{self, Write};

use super::{PlanContext, action_verb, device_summary, manifest_facts, outside_line, summary_line, text::symbol};
use crate::core::action::ActionKind;
use crate::core::plan::{BlockKind, Change, Entry, Plan};

/// Marks the comment so a bot can find and update it instead of adding another.
pub const MARKER: &str = "<!-- intune-reconcile:plan -->";
/// GitHub's limit on a comment body, in characters.
pub const GITHUB_LIMIT: usize = 65_536;
/// What the rendered plan may use, leaving room for the closing lines.
pub(crate) const BUDGET: usize = 60_000;
/// More resets than this earn a "large change" warning.
pub(crate) const LARGE_CHANGE: usize = 100;
/// How many examples a warning lists.
const EXAMPLES: usize = 5;

pub(crate) fn plan(out: &mut impl Write, plan: &Plan, ctx: PlanContext) -> io::Result<()> {
    out.write_all(render(plan, ctx).as_bytes())
}

/// The Markdown for a PR comment, never longer than [`GITHUB_LIMIT`] characters.
pub(crate) fn render(plan: &Plan, ctx: PlanContext) -> String {
    render_within(plan, ctx, BUDGET)
}

/// The Markdown with the lists cut past `budget` bytes, and never longer than `budget` plus a
/// few thousand bytes for the closing lines (a CI job summary takes up to 1 MiB).
pub(crate) fn render_within(plan: &Plan, ctx: PlanContext, budget: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{MARKER}");
    let _ = writeln!(s, "### intune-reconcile plan{}\n", if ctx.simulated { " (SIMULATED)" } else { "" });
    for (lead, items, tail) in super::policy_lines(plan) {
        let items: Vec<String> = items.iter().map(|i| crate::diag::safe::markdown(i)).collect();
        let _ = writeln!(s, "> [!WARNING]\n> **{lead}** {}{tail}\n", items.join(", "));
    }
    // What the plan is for, right after what it does to the policy (which always comes first).
    if let Some(line) = plan.context.as_ref().and_then(context_line) {
        let _ = writeln!(s, "{line}\n");
    }
    if ctx.offline {
        let _ = writeln!(s, "> Offline plan: devices were not looked up in Intune.\n");
    }
    // The lines are this tool's own words (kinds' phrases, counts), nothing a pull request wrote.
    for line in super::destructive_lines(plan) {
        let _ = writeln!(s, "> [!CAUTION]\n> **Destructive:** {line}\n");
    }
    warnings(&mut s, plan);
    summary_table(&mut s, plan);
    let mut closing = format!("**{}**\n", summary_line(plan, ctx));
    for line in super::quiet_line(plan, ctx).into_iter().chain(outside_line(plan)) {
        closing.push_str(&format!("\n_{line}_\n"));
    }
    let mut shown = 0;
    let groups = groups(plan, ctx);
    for (i, group) in groups.iter().enumerate() {
        let section = details(group, plan);
        if s.len() + section.len() + closing.len() + 400 > budget {
            let left: usize = groups[i..].iter().map(|g| g.len()).sum();
            let _ = writeln!(
                s,
                "_{left} more action{} in {} more manifest group{} are not shown to stay within the size limit: the full plan is in the CI job summary and in the saved plan (`reconcile show`)._\n",
                if left == 1 { "" } else { "s" },
                groups.len() - i,
                if groups.len() - i == 1 { "" } else { "s" },
            );
            break;
        }
        s.push_str(&section);
        shown += group.len();
    }
    let _ = shown;
    s.push_str(&closing);
    // Belt and braces: whatever the input, never past the limit (cut at a character boundary).
    let hard = budget.max(BUDGET) + 5_000;
    if s.len() > hard {
        let mut end = hard - 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("\n\n_… cut to stay within the size limit._\n");
    }
    // The comment and the job summary are shown in CI logs too: no logging command anywhere.
    crate::diag::safe::commands(&s).into_owned()
}

/// `Tenant `…` · commit [`0123456789ab`](…) · [GitHub Actions run 9001](…)`: what the reviewer
/// checks before the plan itself. The tenant and commit are inert code spans; the links were
/// built from the CI system's variables alone ([`crate::ci::provenance::ReviewContext`]).
fn context_line(c: &crate::ci::provenance::ReviewContext) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(t) = &c.tenant {
        parts.push(format!("Tenant {}", code(t)));
    }
    if let Some(commit) = &c.commit {
        let short = code(&commit[..commit.len().min(12)]);
        parts.push(match &c.commit_url {
            Some(url) => format!("commit [{short}]({url})"),
            None => format!("commit {short}"),
        });
    }
    if let Some((name, url)) = &c.run {
        parts.push(format!("[{}]({url})", crate::diag::safe::text(name)));
    }
    (!parts.is_empty()).then(|| parts.join(" · "))
}

/// At most `n` characters of `s`, with an ellipsis when cut (user text in warnings).
fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_owned() } else { format!("{}…", s.chars().take(n).collect::<String>()) }
}

/// The entries the plan lists ([`super::shown`]), by manifest (orphans of one manifest form
/// their own group).
fn groups<'p, 'a>(plan: &'p Plan<'a>, ctx: PlanContext) -> Vec<Vec<&'p Entry<'a>>> {
    let mut out: Vec<Vec<&Entry>> = Vec::new();
    for e in super::shown(plan, ctx) {
        match out.last_mut() {
            Some(group)
                if group[0].manifest() == e.manifest()
                    && (group[0].change == Change::Orphaned) == (e.change == Change::Orphaned) =>
            {
                group.push(e)
            }
            _ => out.push(vec![e]),
        }
    }
    out
}

fn warnings(s: &mut String, plan: &Plan) {
    let mut lines = Vec::new();
    for (kind, what) in [
        (BlockKind::NotSupported, "not supported"),
        (BlockKind::Ambiguous, "ambiguous (several devices match)"),
        (BlockKind::ReEnrolled, "re-enrolled or renamed since recorded"),
        (BlockKind::NotFound, "not found in Intune"),
        (BlockKind::Refused, "refused by Graph"),
        (BlockKind::LikelyRename, "likely renamed manifests (add `formerNames`, or bump `round`)"),
        (BlockKind::Policy, "stopped by a policy rule of their manifest"),
        (BlockKind::PlanChanged, "changed since the plan was reviewed"),
        (BlockKind::OutOfBand, "reset outside reconcile lately (policy.outOfBand: block)"),
    ] {
        let hits: Vec<&Entry> = plan.entries.iter().filter(|e| e.block == Some(kind)).collect();
        if hits.is_empty() {
            continue;
        }
        let examples =
            hits.iter().map(|e| format!("{} in {}", code(&clip(&e.selector().to_string(), 120)), code(e.manifest())));
        lines.push(format!(
            "- **{} {what}**, never sent: {}",
            devices(hits.len()),
            first_few(hits.len(), examples, ", ")
        ));
    }
    if !plan.violations.is_empty() {
        let examples = plan.violations.iter().map(|v| &v.diagnostic).map(|v| {
            let at = match (&v.file, v.pos) {
                (Some(f), Some(p)) => format!("{}: ", code(&format!("{}:{}", f.display(), p.line))),
                _ => String::new(),
            };
            format!("{at}{}", code(&clip(&v.message, 300)))
        });
        lines.push(format!(
            "- **{}** {}",
            super::violations_line(plan),
            first_few(plan.violations.len(), examples, "; ")
        ));
    }
    // Actions made outside the tool: adopted (nothing sent), or sent again under `then: send`.
    // Resets keep their words; other kinds are named on each line.
    let resets_only =
        plan.entries.iter().filter(|e| e.out_of_band.is_some()).all(|e| e.kind() == ActionKind::PasscodeReset);
    let (adopted, again) = if resets_only {
        (
            "reset outside reconcile lately: adopted, nothing will be sent",
            "reset outside reconcile lately and **will be reset again** (policy.outOfBand: send)",
        )
    } else {
        (
            "the same action made outside reconcile lately: adopted, nothing will be sent",
            "the same action made outside reconcile lately and **will be sent again** (policy.outOfBand: send)",
        )
    };
    for (change, what) in [(Change::Adopt, adopted), (Change::Send, again)] {
        let hits: Vec<&Entry> = plan.entries.iter().filter(|e| e.change == change && e.out_of_band.is_some()).collect();
        if hits.is_empty() {
            continue;
        }
        let examples = hits.iter().map(|e| {
            format!(
                "{} in {}: {}",
                code(&clip(&e.selector().to_string(), 120)),
                code(e.manifest()),
                code(&clip(&e.reason, 300))
            )
        });
        lines.push(format!("- **{} {what}**: {}", devices(hits.len()), first_few(hits.len(), examples, "; ")));
    }
    if plan.summary.to_send > LARGE_CHANGE {
        lines.push(format!(
            "- **Large change: {} passcodes will be reset.** Check this is intended.",
            plan.summary.to_send
        ));
    }
    if plan.summary.attention > 0 {
        lines.push(format!(
            "- **{} action{} need{} attention** (unknown outcome, rejected or failed).",
            plan.summary.attention,
            if plan.summary.attention == 1 { "" } else { "s" },
            if plan.summary.attention == 1 { "s" } else { "" }
        ));
    }
    if !lines.is_empty() {
        let _ = writeln!(s, "> [!WARNING]");
        for l in lines {
            let _ = writeln!(s, "> {l}");
        }
        let _ = writeln!(s);
    }
}

/// "1 device", "3 devices".
fn devices(n: usize) -> String {
    format!("{n} device{}", if n == 1 { "" } else { "s" })
}

/// The first [`EXAMPLES`] of `total` items joined by `sep`, then how many more there are.
fn first_few(total: usize, items: impl Iterator<Item = String>, sep: &str) -> String {
    let mut s = items.take(EXAMPLES).collect::<Vec<_>>().join(sep);
    if total > EXAMPLES {
        let lead = if sep == ", " { " " } else { sep };
        s.push_str(&format!("{lead}and {} more", total - EXAMPLES));
    }
    s
}

/// One column per kind of change, so the cells add up to every action of the plan (compact or
/// not): what is sent, adopted, blocked, merged into another entry, done, orphaned or stuck. A
/// plan with other kinds than resets has a column for them, and a table of them by kind below,
/// destructive first.
fn summary_table(s: &mut String, plan: &Plan) {
    let (resets, removes) = super::resets_and_removals(plan);
    let not_supported = plan.entries.iter().filter(|e| e.block == Some(BlockKind::NotSupported)).count();
    let sm = plan.summary;
    let others: Vec<(ActionKind, usize)> =
        super::kinds_to_send(plan).into_iter().filter(|(k, _)| *k != ActionKind::PasscodeReset).collect();
    let (head, rule, cell) = if others.is_empty() {
        ("", "", String::new())
    } else {
        ("other actions | ", "---:|", format!("{} | ", others.iter().map(|(_, n)| n).sum::<usize>()))
    };
    let _ = writeln!(
        s,
        "| {head}reset passcode | remove passcode | adopted | not supported | other blocked | same device | already done | orphaned | needs attention |"
    );
    let _ = writeln!(s, "|{rule}---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let _ = writeln!(
        s,
        "| {cell}{resets} | {removes} | {} | {not_supported} | {} | {} | {} | {} | {} |\n",
        sm.adopt,
        sm.blocked - not_supported,
        sm.same_device,
        sm.already_done,
        sm.orphaned,
        sm.attention
    );
    if !others.is_empty() {
        let _ = writeln!(s, "| other action | class | to send |\n|---|---|---:|");
        for (kind, n) in others {
            let _ = writeln!(s, "| `{}` | {} | {n} |", kind.spec().graph_name, kind.spec().class.as_str());
        }
        let _ = writeln!(s);
    }
}

fn details(group: &[&Entry], plan: &Plan) -> String {
    let first = group[0];
    let sends = group.iter().filter(|e| e.change == Change::Send).count();
    let spec = first.kind().spec();
    let (mark, verb) = match first.kind() {
        crate::core::action::ActionKind::PasscodeReset => ("", "reset"),
        _ if spec.class == crate::core::kinds::RiskClass::Destructive => ("⚠ destructive: ", spec.wording.phrase),
        _ => ("", spec.wording.phrase),
    };
    let title = match (&first.action, &first.record) {
        (Some(a), _) => format!(
            "{mark}{} ({}): {sends} to {verb}{}",
            crate::diag::safe::html_code(&a.manifest),
            crate::diag::safe::html_code(&a.file.display().to_string()),
            plan.manifests
                .get(&a.manifest)
                .and_then(manifest_facts)
                .map(|f| format!(" — {}", crate::diag::safe::html_code(&clip(&f, 400))))
                .unwrap_or_default()
        ),
        (None, Some(r)) => format!("orphaned from {}: {}", crate::diag::safe::html_code(&r.manifest), group.len()),
        (None, None) => String::new(),
    };
    let mut s = String::new();
    let _ = writeln!(s, "<details><summary>{title}</summary>\n");
    let _ = writeln!(s, "| | device | action | status | key |");
    let _ = writeln!(s, "|---|---|---|---|---|");
    for e in group {
        let status = match e.change {
            Change::Blocked => format!("blocked: {}", reason(&e.reason)),
            Change::SameDevice | Change::Adopt => reason(&e.reason),
            Change::Send if e.out_of_band.is_some() => format!("new — {}", reason(&e.reason)),
            _ => e.record.map_or("new", |r| r.status.as_str()).to_owned(),
        };
        let device = match e.device {
            Some(d) => format!("{}<br>{}", code(&e.selector().to_string()), code(&device_summary(d))),
            None => code(&e.selector().to_string()),
        };
        let action = if e.change == Change::Send { action_verb(e) } else { String::new() };
        let _ =
            writeln!(s, "| `{}` | {} | {} | {} | `{}` |", symbol(e.change), device, action, status, e.key().short());
    }
    let _ = writeln!(s, "\n</details>\n");
    s
}

/// A reason as code spans, one per line of it (the candidates of an ambiguous selector), so a
/// table cell shows each on its own line.
fn reason(r: &str) -> String {
    r.split('\n').map(code).collect::<Vec<_>>().join("<br>")
}

/// Escapes what Markdown tables and HTML would otherwise interpret.
/// Every value from a manifest, a file name or Intune goes into the comment as an inert code span.
fn code(s: &str) -> String {
    crate::diag::safe::markdown(s)
}

//! Everything printed to stdout: plans and ledger listings, as text, JSON or Markdown.
//!
//! Renderers write to any `io::Write` and read nothing else, so tests render into a `Vec<u8>`.
//! JSON output is a versioned contract ([`json::FORMAT_VERSION`]) built from DTOs, never from
//! `Serialize` on domain types.

pub(crate) mod json;
pub mod markdown;
pub(crate) mod progress;
pub(crate) mod report;
pub(crate) mod state;
pub(crate) mod summary;
pub(crate) mod text;

use crate::core::action::ActionKind;
use crate::core::kinds::RiskClass;
use crate::core::plan::{Change, Plan};

/// What the plan was made from, for the header lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PlanContext {
    /// Devices were not looked up in Intune.
    pub offline: bool,
    /// Against the built-in simulator, not a real tenant.
    pub simulated: bool,
    /// List what changes nothing too (already done, orphaned): `--show-done`. A compact plan
    /// (the default) counts them in one line instead. JSON always lists every action.
    pub show_done: bool,
    /// Text for a terminal: the symbol and status of each action coloured, headings bold.
    pub colour: bool,
}

impl PlanContext {
    /// A plan made from Intune (not offline, not simulated), compact, without colour.
    pub(crate) fn new(offline: bool, simulated: bool) -> Self {
        PlanContext { offline, simulated, show_done: false, colour: false }
    }
}

/// Output formats of `plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
    Markdown,
}

/// Renders `plan` in `format`.
pub(crate) fn plan(
    out: &mut impl std::io::Write,
    plan: &Plan<'_>,
    ctx: PlanContext,
    format: Format,
) -> std::io::Result<()> {
    match format {
        Format::Text => text::plan(out, plan, ctx),
        Format::Json => json::plan(out, plan, ctx),
        Format::Markdown => markdown::plan(out, plan, ctx),
    }
}

/// What will be done to the device: `reset passcode`, or `remove passcode` on corporate iOS/iPadOS
/// (Intune removes it there), as far as the looked-up device tells.
/// Any other kind: its phrase with the parameters that are on (`wipe (keep enrollment data)`).
pub(crate) fn action_verb(e: &crate::core::plan::Entry<'_>) -> String {
    let spec = e.kind().spec();
    if e.removes_passcode() { "remove passcode".to_owned() } else { spec.describe(spec.wording.phrase, e.parameters()) }
}

/// The resets of `plan` that set a new passcode, and those that remove it.
pub(crate) fn resets_and_removals(plan: &Plan) -> (usize, usize) {
    let resets = kinds_to_send(plan).into_iter().find(|(k, _)| *k == ActionKind::PasscodeReset).map_or(0, |(_, n)| n);
    (resets.saturating_sub(plan.summary.to_remove), plan.summary.to_remove)
}

/// How many actions of each kind the plan sends, destructive kinds first (then in the order of
/// [`crate::core::kinds::ALL`]); kinds it sends none of are left out.
pub(crate) fn kinds_to_send(plan: &Plan) -> Vec<(ActionKind, usize)> {
    // One pass over the plan (it may hold tens of thousands of entries), then the kinds in order.
    let mut sends = std::collections::HashMap::<ActionKind, usize>::new();
    for e in plan.entries.iter().filter(|e| e.change == Change::Send) {
        *sends.entry(e.kind()).or_default() += 1;
    }
    let mut counts: Vec<(ActionKind, usize)> =
        crate::core::kinds::ALL.into_iter().filter_map(|k| sends.get(&k).map(|n| (k, *n))).collect();
    counts.sort_by_key(|(k, _)| k.spec().class);
    counts
}

/// `5 to reset, 1 to remove a passcode, 1 to adopt` (the removals and the adoptions only when
/// there are some); other kinds by their phrase, destructive first: `1 to wipe, 2 to lock, 1 to
/// reset`. What `apply` will do, every action that changes something counted once.
fn sends(plan: &Plan) -> String {
    let s = &plan.summary;
    let resets = match resets_and_removals(plan) {
        (resets, 0) => format!("{resets} to reset"),
        (resets, removals) => format!("{resets} to reset, {removals} to remove a passcode"),
    };
    let kinds = kinds_to_send(plan);
    let mut out = if kinds.iter().all(|(k, _)| *k == ActionKind::PasscodeReset) {
        resets
    } else {
        let parts: Vec<String> = kinds
            .into_iter()
            .map(|(k, n)| {
                if k == ActionKind::PasscodeReset {
                    resets.clone()
                } else {
                    format!("{n} to {}", k.spec().wording.phrase)
                }
            })
            .collect();
        parts.join(", ")
    };
    if s.adopt > 0 {
        out.push_str(&format!(", {} to adopt", s.adopt));
    }
    out
}

/// Whether the plan changes nothing: no reset to send, no reset made outside reconcile to adopt.
pub(crate) fn no_changes(plan: &Plan) -> bool {
    plan.summary.to_send == 0 && plan.summary.adopt == 0
}

/// The entries a plan in `ctx` lists: every one with `--show-done`, else what changes something
/// or needs someone.
/// Destructive actions come first (a stable sort: the plan's order otherwise).
pub(crate) fn shown<'p, 'a>(
    plan: &'p Plan<'a>,
    ctx: PlanContext,
) -> impl Iterator<Item = &'p crate::core::plan::Entry<'a>> {
    let mut shown: Vec<&crate::core::plan::Entry<'a>> =
        plan.entries.iter().filter(move |e| ctx.show_done || !e.is_quiet()).collect();
    shown.sort_by_key(|e| e.kind().spec().class != RiskClass::Destructive);
    shown.into_iter()
}

/// What the plan's destructive actions take from their devices, one line per kind and
/// parameters: `2 devices will be wiped: …`. The reviewer confirms these by approving.
pub(crate) fn destructive_lines(plan: &Plan) -> Vec<String> {
    let mut groups: Vec<(ActionKind, &crate::core::action::Parameters, usize)> = Vec::new();
    for e in plan.entries.iter().filter(|e| e.change == Change::Send) {
        let kind = e.kind();
        if kind.spec().class != RiskClass::Destructive {
            continue;
        }
        match groups.iter_mut().find(|(k, p, _)| *k == kind && *p == e.parameters()) {
            Some((_, _, n)) => *n += 1,
            None => groups.push((kind, e.parameters(), 1)),
        }
    }
    groups
        .into_iter()
        .map(|(kind, parameters, n)| {
            let spec = kind.spec();
            let what = spec.describe(spec.wording.phrase, parameters);
            let loses = spec.loses.map(|f| f(parameters)).unwrap_or_default();
            let devices = if n == 1 { "1 device".to_owned() } else { format!("{n} devices") };
            format!("{what} of {devices} erases {loses}. Nothing is sent before every device of the plan is looked up.")
        })
        .collect()
}

/// What a compact plan left out, in one line: `7 already done, 1 orphaned (`--show-done` to list
/// them).` `None` with `--show-done` or when nothing was left out.
pub(crate) fn quiet_line(plan: &Plan, ctx: PlanContext) -> Option<String> {
    let s = plan.summary;
    (!ctx.show_done && s.already_done + s.orphaned > 0)
        .then(|| format!("{} already done, {} orphaned (`--show-done` to list them).", s.already_done, s.orphaned))
}

/// The device's primary user, when the plan was made to show it (`plan.showUser`) and it has one.
pub(crate) fn device_user(d: &crate::core::device::Device) -> Option<&str> {
    d.user_principal_name.as_deref().map(str::trim).filter(|u| !u.is_empty())
}

/// The device as a plan shows it: name, OS and version, owner type, last sync, and its primary
/// user only when the plan was made to show it ([`device_user`]). Nothing else personal (no
/// serial the manifest did not name).
pub(crate) fn device_summary(d: &crate::core::device::Device) -> String {
    let f = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let mut parts = Vec::new();
    if let Some(n) = f(&d.device_name) {
        parts.push(n);
    }
    match (f(&d.operating_system), f(&d.os_version)) {
        (Some(os), Some(v)) => parts.push(format!("{os} {v}")),
        (Some(os), None) => parts.push(os),
        _ => {}
    }
    if let Some(o) = f(&d.managed_device_owner_type) {
        parts.push(o);
    }
    if let Some(s) = f(&d.last_sync_date_time) {
        parts.push(format!("last sync {s}"));
    }
    if let Some(u) = device_user(d) {
        parts.push(format!("user {u}"));
    }
    // Every part comes from Intune, written by whoever named the device.
    crate::diag::safe::text(&parts.join(", ")).into_owned()
}

/// What the change does to the policy, shown first in every format: what it loosens (and that
/// its actions are judged by the policy before it), what it tightens, and, under an operator's
/// floor, each rule in effect with its source: a lead, the items (for the caller to escape),
/// and a closing sentence.
pub(crate) fn policy_lines<'p>(plan: &'p Plan<'_>) -> Vec<(&'static str, &'p [String], String)> {
    let Some(c) = plan.policy_change.as_ref().filter(|c| c.is_worth_showing()) else { return Vec::new() };
    let mut out = Vec::new();
    if !c.loosens.is_empty() {
        let base = c.base.as_deref().unwrap_or("the base");
        out.push((
            "This change loosens the policy:",
            &c.loosens[..],
            format!(". Its actions are judged by the policy at {base} too: an action only the loosened policy allows is blocked (merge the policy change on its own first)."),
        ));
    }
    if !c.tightens.is_empty() {
        out.push(("This change tightens the policy (in effect at once):", &c.tightens[..], ".".to_owned()));
    }
    if !c.rules.is_empty() {
        out.push((
            "Policy in effect (the stricter of the operator's floor and the repository's, rule by rule):",
            &c.rules[..],
            ".".to_owned(),
        ));
    }
    out
}

/// `No changes.` (Terraform's words) when nothing changes in a compact plan; else `Plan: 5 to
/// reset, 1 to remove a passcode, 1 to adopt.`, with `--show-done` followed by the already done
/// and orphaned.
pub(crate) fn summary_line(plan: &Plan, ctx: PlanContext) -> String {
    let s = plan.summary;
    if ctx.show_done {
        format!("Plan: {}, {} already done, {} orphaned.", sends(plan), s.already_done, s.orphaned)
    } else if no_changes(plan) {
        "No changes.".to_owned()
    } else {
        format!("Plan: {}.", sends(plan))
    }
}

/// The lines under the summary: what is blocked and what needs attention.
pub(crate) fn attention_line(plan: &Plan) -> Option<String> {
    let s = plan.summary;
    let mut parts = Vec::new();
    match s.blocked {
        0 => {}
        1 => parts.push("1 action is blocked and will not be sent (marked `x`).".to_owned()),
        n => parts.push(format!("{n} actions are blocked and will not be sent (marked `x`).")),
    }
    match s.attention {
        0 => {}
        1 => parts.push("1 action needs attention (marked `!`).".to_owned()),
        n => parts.push(format!("{n} actions need attention (marked `!`).")),
    }
    match s.same_device {
        0 => {}
        1 => parts.push(
            "1 entry names a device another entry of its manifest names: it is reset once (marked `&`).".to_owned(),
        ),
        n => parts.push(format!(
            "{n} entries name a device another entry of their manifest names: each is reset once (marked `&`)."
        )),
    }
    let adopted_resets_only =
        plan.entries.iter().filter(|e| e.change == Change::Adopt).all(|e| e.kind() == ActionKind::PasscodeReset);
    match s.adopt {
        0 => {}
        n if !adopted_resets_only => parts.push(format!(
            "{n} device{} had the same action made outside reconcile lately: adopted, nothing is sent (marked `*`).",
            if n == 1 { "" } else { "s" }
        )),
        1 => parts.push(
            "1 device was reset outside reconcile lately: that reset is adopted, nothing is sent (marked `*`)."
                .to_owned(),
        ),
        n => parts.push(format!(
            "{n} devices were reset outside reconcile lately: those resets are adopted, nothing is sent (marked `*`)."
        )),
    }
    if s.violations > 0 {
        parts.push(violations_line(plan));
    }
    (!parts.is_empty()).then(|| parts.join("\n"))
}

/// How many policy violations, and what they stop.
pub(crate) fn violations_line(plan: &Plan) -> String {
    let n = plan.violations.len();
    let run = plan.run_violations().count();
    let what = if run > 0 {
        "apply will refuse to start"
    } else {
        "the manifests that break them are not sent; the others are"
    };
    format!("{n} policy violation{}: {what}.", if n == 1 { "" } else { "s" })
}

/// `plan --base`: one line for everything outside the change.
pub(crate) fn outside_line(plan: &Plan) -> Option<String> {
    let o = plan.outside?;
    let mut parts = Vec::new();
    for (n, what) in [
        (o.to_send, "to reset"),
        (o.blocked, "blocked"),
        (o.attention, "need attention"),
        (o.violations, "policy violations"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    Some(if parts.is_empty() {
        "Outside this change: nothing pending.".to_owned()
    } else {
        format!(
            "Outside this change (other manifests, not detailed here): {}. Run `reconcile plan` without --base to see them.",
            parts.join(", ")
        )
    })
}

/// `ticket INC-4711, reason "…", requested by alice@…` of a manifest, as far as it says.
/// Written by the manifest's author: escaped by the caller's renderer.
pub(crate) fn manifest_facts(info: &crate::manifest::ManifestInfo) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(t) = &info.ticket {
        parts.push(format!("ticket {t}"));
    }
    if let Some(r) = &info.reason {
        parts.push(format!("reason \"{r}\""));
    }
    if let Some(b) = &info.requested_by {
        parts.push(format!("requested by {b}"));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

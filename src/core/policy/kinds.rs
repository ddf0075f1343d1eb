//! Rules per kind of action: the class defaults built into every policy, and
//! `policy.kinds.<graphName>: { maxActionsPerApply, requireTicket, cooldown }`.
//!
//! The defaults act as part of the operator's floor (docs/device-actions.md, "Risk classes"): a
//! destructive kind (wipe, retire, cleanWindowsDevice) needs a ticket and at most
//! [`DESTRUCTIVE_PER_APPLY`] of them leave in one apply; a disruptive kind keeps its
//! `default_cooldown`; a harmless one has none. A policy (the repository's, the operator's, the
//! one before a change) can only tighten them: each rule is the stricter of the default and every
//! source's `policy.kinds` entry — counts the smaller, `requireTicket` the union, cooldowns the
//! longer. `policy.cooldown` applies to every kind, counting earlier actions of the same kind only.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use serde_saphyr::Spanned;

use crate::core::action::ActionKind;
use crate::core::kinds::RiskClass;
use crate::core::plan::{Plan, Violation};
use crate::core::violation::{Rule, found as violation};
use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::duration::HumanDuration;
use crate::manifest::source::{duration, pos_of};

use super::{At, Policy, RawKindPolicy};

/// The most destructive actions (of every destructive kind together) one apply may send.
pub(crate) const DESTRUCTIVE_PER_APPLY: u32 = 5;

/// One kind's rules as every source wrote them (`policy.kinds.<graphName>`).
#[derive(Debug, Clone, Default)]
pub(super) struct KindRules {
    pub(super) max_actions: Vec<(u32, At)>,
    pub(super) require_ticket: Vec<At>,
    pub(super) cooldown: Vec<(Duration, At)>,
}

/// Where a kind's rule in effect comes from: a policy file, or the kind's risk class.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source<'a> {
    Written(&'a At),
    Class(RiskClass),
}

impl Source<'_> {
    /// `reconcile.yaml:7`, or `built in for destructive actions`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Source::Written(at) => at.describe(),
            Source::Class(c) => format!("built in for {} actions", c.as_str()),
        }
    }

    pub(crate) fn hint(&self, usual: &str) -> String {
        match self {
            Source::Written(at) => at.hint(usual),
            Source::Class(_) => usual.to_owned(),
        }
    }

    /// The place a violation of this rule points at: the rule's line when a file wrote it, else
    /// `file` and `pos` (the action that breaks a built-in rule).
    fn place<'p>(&'p self, file: &'p Path, pos: Pos) -> (&'p Path, Pos) {
        match self {
            Source::Written(at) => (&at.file, at.pos),
            Source::Class(_) => (file, pos),
        }
    }
}

/// `policy.kinds` as written → each kind's rules; an unknown kind name, or a bad value, is a
/// diagnostic on its line. `at` places a rule at a position of `file`.
pub(super) fn from_raw(
    raw: HashMap<Spanned<String>, Spanned<RawKindPolicy>>,
    file: &Path,
    at: &dyn Fn(Option<Pos>) -> At,
    diags: &mut Diagnostics,
) -> BTreeMap<ActionKind, KindRules> {
    let mut entries: Vec<_> = raw.into_iter().collect();
    entries.sort_by_key(|(name, _)| (name.referenced.line(), name.referenced.column()));
    let mut out: BTreeMap<ActionKind, KindRules> = BTreeMap::new();
    for (name, rules) in entries {
        let Some(kind) = ActionKind::from_graph_name(&name.value) else {
            diags.push(
                Diagnostic::error(
                    file,
                    pos_of(&name, 0),
                    format!("unknown kind of action `{}` in policy.kinds", name.value),
                )
                .with_hint(format!("use the action's Graph name, one of: {}", names())),
            );
            continue;
        };
        let key = |k: &str| format!("policy.kinds.{}.{k}", name.value);
        let r = out.entry(kind).or_default();
        let rules = rules.value;
        if let Some(m) = rules.max_actions_per_apply
            && let Some(n) = super::count(&m, &key("maxActionsPerApply"), file, diags)
        {
            r.max_actions.push((n, at(pos_of(&m, 0))));
        }
        match rules.require_ticket {
            Some(t) if t.value => r.require_ticket.push(at(pos_of(&t, 0))),
            Some(t) if kind.spec().class == RiskClass::Destructive => diags.push(
                Diagnostic::warning(
                    file,
                    pos_of(&t, 0),
                    format!("{}: false does not apply: every destructive action needs a ticket", key("requireTicket")),
                )
                .with_hint("remove the key"),
            ),
            _ => {}
        }
        if let Some(c) = rules.cooldown
            && let Some(d) = duration(&c, &key("cooldown"), file, diags)
        {
            r.cooldown.push((d, at(pos_of(&c, 0))));
        }
    }
    out
}

/// Every kind's Graph name, for a hint.
fn names() -> String {
    crate::core::kinds::ALL.iter().map(|k| k.spec().graph_name).collect::<Vec<_>>().join(", ")
}

/// The smallest of `list`'s counts and its place (the first source's on a tie).
pub(super) fn smallest<T: Ord + Copy>(list: &[(T, At)]) -> Option<(T, &At)> {
    list.iter().fold(None, |best: Option<(T, &At)>, (n, at)| match best {
        Some((b, _)) if b <= *n => best,
        _ => Some((*n, at)),
    })
}

/// The longest of `list`'s durations and its place (the first source's on a tie).
pub(super) fn longest(list: &[(Duration, At)]) -> Option<(Duration, &At)> {
    list.iter().fold(None, |best: Option<(Duration, &At)>, (d, at)| match best {
        Some((b, _)) if b >= *d => best,
        _ => Some((*d, at)),
    })
}

impl Policy {
    /// `policy.kinds.<kind>.maxActionsPerApply`: the smallest of every source's, and its place.
    pub(super) fn kind_limit(&self, kind: ActionKind) -> Option<(u32, &At)> {
        smallest(&self.kinds.get(&kind)?.max_actions)
    }

    /// Whether a manifest of `kind` needs `metadata.ticket`, and by whose rule: a source's
    /// `policy.kinds` entry first, else the class default.
    pub(crate) fn kind_requires_ticket(&self, kind: ActionKind) -> Option<Source<'_>> {
        let written = self.kinds.get(&kind).and_then(|r| r.require_ticket.first()).map(Source::Written);
        let class = kind.spec().class;
        written.or((class == RiskClass::Destructive).then_some(Source::Class(class)))
    }

    /// The cooldown of `kind` and its source: the longest of `policy.cooldown`, the kind's
    /// `policy.kinds` entries and the kind's default (a written rule names it on a tie).
    pub(crate) fn kind_cooldown(&self, kind: ActionKind) -> Option<(Duration, Source<'_>)> {
        let own = self.kinds.get(&kind).map_or(&[][..], |r| &r.cooldown[..]);
        let written = match (self.longest_cooldown(), longest(own)) {
            (Some(all), Some(own)) if own.0 > all.0 => Some(own),
            (all, own) => all.or(own),
        }
        .map(|(d, at)| (d, Source::Written(at)));
        let spec = kind.spec();
        let default = spec.default_cooldown.map(|d| (d, Source::Class(spec.class)));
        match (written, default) {
            (Some(w), Some(d)) if d.0 > w.0 => Some(d),
            (w, d) => w.or(d),
        }
    }

    /// The longest cooldown any of `kinds` has: how far back earlier actions matter.
    pub(crate) fn longest_kind_cooldown(&self, kinds: impl IntoIterator<Item = ActionKind>) -> Option<Duration> {
        kinds.into_iter().filter_map(|k| self.kind_cooldown(k).map(|(d, _)| d)).max()
    }

    /// Whether, with candidates of `kinds` (how many of each), the complete plan must be counted
    /// before anything leaves: more candidates of a kind than its limit, or of the destructive
    /// class than [`DESTRUCTIVE_PER_APPLY`].
    pub(crate) fn kind_limits_may_be_exceeded(&self, kinds: &[ActionKind]) -> bool {
        let count = |k: ActionKind| kinds.iter().filter(|&&c| c == k).count();
        let destructive = kinds.iter().filter(|k| k.spec().class == RiskClass::Destructive).count();
        destructive > DESTRUCTIVE_PER_APPLY as usize
            || self.kinds.keys().any(|&k| self.kind_limit(k).is_some_and(|(max, _)| count(k) > max as usize))
    }

    /// The repository-level counts per kind: each kind's `maxActionsPerApply` over that kind's
    /// actions still to send, and the destructive class's over all of its kinds together.
    pub(super) fn kind_limits(&self, plan: &Plan<'_>) -> Vec<Violation> {
        let mut out = Vec::new();
        for (&kind, _) in self.kinds.iter() {
            let Some((max, at)) = self.kind_limit(kind) else { continue };
            let sends: Vec<_> = plan.to_send().filter(|e| e.kind() == kind).collect();
            if sends.len() > max as usize {
                out.push(Violation::of_repository(violation(
                    &at.file,
                    Some(at.pos),
                    Rule::MaxActionsPerApply,
                    format!(
                        "the plan sends {} {} actions, more than policy.kinds.{}'s limit of {max}",
                        sends.len(),
                        kind.spec().graph_name,
                        kind.spec().graph_name
                    ),
                    &at.hint("split the change across pull requests, or raise the limit in a reviewed change to reconcile.yaml"),
                )));
            }
        }
        let destructive: Vec<_> = plan.to_send().filter(|e| e.kind().spec().class == RiskClass::Destructive).collect();
        let beyond = destructive.get(DESTRUCTIVE_PER_APPLY as usize).and_then(|e| e.action);
        if let Some(a) = beyond {
            let source = Source::Class(RiskClass::Destructive);
            let (file, pos) = source.place(&a.file, a.pos);
            out.push(Violation::of_repository(violation(
                file,
                Some(pos),
                Rule::MaxActionsPerApply,
                format!(
                    "the plan sends {} destructive actions (wipe, retire, cleanWindowsDevice), more than the limit of {DESTRUCTIVE_PER_APPLY} {}",
                    destructive.len(),
                    source.describe()
                ),
                &format!("split the destructive actions across applies: at most {DESTRUCTIVE_PER_APPLY} in one"),
            )));
        }
        out
    }
}

impl KindRules {
    fn merge(&mut self, other: KindRules) {
        self.max_actions.extend(other.max_actions);
        self.require_ticket.extend(other.require_ticket);
        self.cooldown.extend(other.cooldown);
    }
}

/// `self`'s kinds, with `other`'s rules added (the stricter of both applies).
pub(super) fn stricter(
    mut mine: BTreeMap<ActionKind, KindRules>,
    other: BTreeMap<ActionKind, KindRules>,
) -> BTreeMap<ActionKind, KindRules> {
    for (kind, rules) in other {
        mine.entry(kind).or_default().merge(rules);
    }
    mine
}

/// The kinds' written rules in effect, one line each with its place.
pub(super) fn rules(kinds: &BTreeMap<ActionKind, KindRules>) -> Vec<String> {
    let mut out = Vec::new();
    for (kind, r) in kinds {
        let name = kind.spec().graph_name;
        if let Some((n, at)) = smallest(&r.max_actions) {
            out.push(format!("kinds.{name}.maxActionsPerApply {n} ({})", at.describe()));
        }
        if let Some(at) = r.require_ticket.first() {
            out.push(format!("kinds.{name}.requireTicket ({})", at.describe()));
        }
        if let Some((d, at)) = longest(&r.cooldown) {
            out.push(format!("kinds.{name}.cooldown {} ({})", HumanDuration(d), at.describe()));
        }
    }
    out
}

/// The kinds' written values in effect, for the digest (empty when no kind has a rule, so the
/// digest of every policy without one stays what it was).
pub(super) fn digest_part(kinds: &BTreeMap<ActionKind, KindRules>) -> String {
    kinds
        .iter()
        .map(|(k, r)| {
            let max = smallest(&r.max_actions).map(|(n, _)| n);
            let cool = longest(&r.cooldown).map(|(d, _)| d);
            format!("kind={},{max:?},{},{cool:?};", k.as_str(), !r.require_ticket.is_empty())
        })
        .collect()
}

/// The values a diff compares for one kind: limit, ticket, cooldown.
pub(super) type KindValues = (Option<u32>, bool, Option<Duration>);

/// Each kind with a written rule in `kinds`, and its values.
pub(super) fn values(kinds: &BTreeMap<ActionKind, KindRules>) -> BTreeMap<ActionKind, KindValues> {
    kinds
        .iter()
        .map(|(k, r)| {
            (
                *k,
                (
                    smallest(&r.max_actions).map(|(n, _)| n),
                    !r.require_ticket.is_empty(),
                    longest(&r.cooldown).map(|(d, _)| d),
                ),
            )
        })
        .collect()
}

/// A warning for each kind's rule the repository writes looser than the operator's `floor`.
pub(super) fn floor_warnings(
    floor: &BTreeMap<ActionKind, KindRules>,
    repo: &BTreeMap<ActionKind, KindRules>,
    warn: &mut dyn FnMut(&At, String, String, &At),
) {
    for (kind, r) in repo {
        let Some(f) = floor.get(kind) else { continue };
        let name = kind.spec().graph_name;
        if let (Some((n, at)), Some((m, fat))) = (smallest(&r.max_actions), smallest(&f.max_actions))
            && n > m
        {
            warn(at, format!("kinds.{name}.maxActionsPerApply {n}"), m.to_string(), fat);
        }
        if let (Some((d, at)), Some((g, fat))) = (longest(&r.cooldown), longest(&f.cooldown))
            && d < g
        {
            warn(at, format!("kinds.{name}.cooldown {}", HumanDuration(d)), HumanDuration(g).to_string(), fat);
        }
    }
}

//! The stricter of several policies, and what a change does to a policy.
//!
//! Three sources can hold a `policy:`: the operator's floor (`RECONCILE_POLICY` / `--policy`,
//! outside the repository), the repository's `reconcile.yaml` as it is now, and the same file
//! before the change under review (a pull request's merge base, or the first parent of a merge).
//! The effective policy is the stricter of all of them, rule by rule ([`Policy::stricter`]):
//! counts the smaller, protected devices and required fields the union, platforms and change
//! windows the intersection, durations the longer. So a change may loosen the policy, but its
//! own actions are still judged by the policy before it: a rule only the base has blocks with
//! "merge the policy change on its own first" (`At::hint`).
//!
//! [`diff`] says what a change loosens and tightens, for every plan format to show first; a
//! floor's [`Floor::warnings`] say which of the repository's rules it overrides.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use crate::core::violation::Rule;
use crate::diag::{Diagnostic, Diagnostics};
use crate::duration::HumanDuration;

use super::{At, Origin, OutOfBandThen, Platform, Policy, RawPolicy};
pub(crate) use crate::core::violation::PolicyChange;

fn rank(then: OutOfBandThen) -> u8 {
    match then {
        OutOfBandThen::Send => 0,
        OutOfBandThen::Adopt => 1,
        OutOfBandThen::Block => 2,
    }
}

fn then_name(then: OutOfBandThen) -> &'static str {
    match then {
        OutOfBandThen::Send => "send",
        OutOfBandThen::Adopt => "adopt",
        OutOfBandThen::Block => "block",
    }
}

fn platforms(list: &[Platform]) -> String {
    list.iter().map(|p| format!("{p:?}").to_ascii_lowercase()).collect::<Vec<_>>().join(", ")
}

/// A change window slot as compared between policies: zone, day, from, to.
type Slot = (String, String, u32, u32);

impl Policy {
    /// The stricter of `self` and `other`, rule by rule; `self`'s sources come first (they name
    /// a violation on a tie), so call it as operator, then repository, then base.
    pub(crate) fn stricter(mut self, other: Policy) -> Policy {
        self.max_actions.extend(other.max_actions);
        self.require_ticket.extend(other.require_ticket);
        self.require_reason.extend(other.require_reason);
        self.require_requested_by.extend(other.require_requested_by);
        for t in other.ticket_pattern {
            if !self.ticket_pattern.iter().any(|(_, p, _)| *p == t.1) {
                self.ticket_pattern.push(t);
            }
        }
        for a in other.allow_platforms {
            if !self.allow_platforms.iter().any(|(l, _)| *l == a.0) {
                self.allow_platforms.push(a);
            }
        }
        for p in other.protected {
            if !self
                .protected
                .iter()
                .any(|q| q.selector.kind == p.selector.kind && q.selector.normalized() == p.selector.normalized())
            {
                self.protected.push(p);
            }
        }
        self.cooldown.extend(other.cooldown);
        self.plan_max_age.extend(other.plan_max_age);
        for w in other.windows {
            if !self.windows.iter().any(|(v, _)| v.slots() == w.0.slots()) {
                self.windows.push(w);
            }
        }
        self.rename_within = match (self.rename_within, other.rename_within) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let then =
            if rank(other.out_of_band.1) > rank(self.out_of_band.1) { other.out_of_band.1 } else { self.out_of_band.1 };
        self.out_of_band = (self.out_of_band.0.max(other.out_of_band.0), then);
        self.kinds = super::kinds::stricter(self.kinds, other.kinds);
        self.change = self.change.or(other.change);
        self
    }

    /// The platforms every source allows (`None`: no source limits them).
    fn platforms(&self) -> Option<BTreeSet<String>> {
        let mut lists =
            self.allow_platforms.iter().map(|(l, _)| l.iter().map(|p| platforms(&[*p])).collect::<BTreeSet<_>>());
        let first = lists.next()?;
        Some(lists.fold(first, |acc, l| acc.intersection(&l).cloned().collect()))
    }

    /// The protected selectors, normalized, each with its text as written.
    fn protected_set(&self) -> std::collections::BTreeMap<String, String> {
        self.protected
            .iter()
            .map(|p| {
                let kind = p.selector.kind.as_str();
                (format!("{kind} {}", p.selector.normalized()), format!("{kind} {}", p.selector.value))
            })
            .collect()
    }

    fn patterns(&self) -> BTreeSet<String> {
        self.ticket_pattern.iter().map(|(_, p, _)| p.clone()).collect()
    }

    /// The window slots every source allows, as comparable values (`None`: no windows).
    fn window_slots(&self) -> Option<BTreeSet<Slot>> {
        let mut lists = self.windows.iter().map(|(w, _)| w.slots());
        let first = lists.next()?;
        Some(lists.fold(first, |acc, l| acc.intersection(&l).cloned().collect()))
    }

    /// Each rule in effect, as a line naming its value and its source.
    pub(crate) fn rules(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some((n, at)) = self.max_limit() {
            out.push(format!("maxActionsPerApply {n} ({})", at.describe()));
        }
        for (name, list) in [
            ("requireTicket", &self.require_ticket),
            ("requireReason", &self.require_reason),
            ("requireRequestedBy", &self.require_requested_by),
        ] {
            if let Some(at) = list.first() {
                out.push(format!("{name} ({})", at.describe()));
            }
        }
        for (_, p, at) in &self.ticket_pattern {
            out.push(format!("ticketPattern `{p}` ({})", at.describe()));
        }
        for (l, at) in &self.allow_platforms {
            out.push(format!("allowPlatforms [{}] ({})", platforms(l), at.describe()));
        }
        for p in &self.protected {
            out.push(format!("protected device {} ({})", p.selector, p.at.describe()));
        }
        if let Some((d, at)) = self.longest_cooldown() {
            out.push(format!("cooldown {} ({})", HumanDuration(d), at.describe()));
        }
        if let Some((d, at)) = self.shortest_plan_max_age() {
            out.push(format!("planMaxAge {} ({})", HumanDuration(d), at.describe()));
        }
        for (w, at) in &self.windows {
            out.push(format!("changeWindows in {} ({})", w.tz_name, at.describe()));
        }
        out.extend(super::kinds::rules(&self.kinds));
        out
    }

    /// A digest of the effective rules (not of where they were written).
    pub(crate) fn digest(&self) -> String {
        use sha2::Digest as _;
        let mut canon = String::new();
        canon.push_str(&format!("max={:?};", self.max_limit().map(|(n, _)| n)));
        canon.push_str(&format!(
            "req={},{},{};",
            !self.require_ticket.is_empty(),
            !self.require_reason.is_empty(),
            !self.require_requested_by.is_empty()
        ));
        canon.push_str(&format!(
            "pat={:?};plat={:?};prot={:?};",
            self.patterns(),
            self.platforms(),
            self.protected_set().keys().collect::<Vec<_>>()
        ));
        canon.push_str(&format!("cool={:?};win={:?};", self.longest_cooldown().map(|(d, _)| d), self.window_slots()));
        canon.push_str(&format!(
            "ren={:?};oob={:?},{};",
            self.rename_within,
            self.out_of_band.0,
            then_name(self.out_of_band.1)
        ));
        // Only when set, so the digest of every policy without it stays what it was.
        if let Some((d, _)) = self.shortest_plan_max_age() {
            canon.push_str(&format!("age={d:?};"));
        }
        canon.push_str(&super::kinds::digest_part(&self.kinds));
        hex::encode(sha2::Sha256::digest(canon.as_bytes()))[..16].to_owned()
    }
}

/// What changing `old` into `new` loosens and tightens, each as a line a reviewer reads.
pub(crate) fn diff(old: &Policy, new: &Policy) -> (Vec<String>, Vec<String>) {
    let mut c = Changes::default();
    let limit = |n: Option<u32>| n.map_or_else(|| "no limit".to_owned(), |n| n.to_string());
    let first = |p: &Policy| p.max_limit().map(|(n, _)| n);
    c.bound("maxActionsPerApply", Looser::Higher, first(old), first(new), limit);
    for (name, o, n) in [
        ("requireTicket", &old.require_ticket, &new.require_ticket),
        ("requireReason", &old.require_reason, &new.require_reason),
        ("requireRequestedBy", &old.require_requested_by, &new.require_requested_by),
    ] {
        match (o.is_empty(), n.is_empty()) {
            (false, true) => c.loosens.push(format!("{name} dropped")),
            (true, false) => c.tightens.push(format!("{name} added")),
            _ => {}
        }
    }
    let (po, pn) = (old.patterns(), new.patterns());
    c.loosens.extend(po.difference(&pn).map(|p| format!("ticketPattern `{p}` removed")));
    c.tightens.extend(pn.difference(&po).map(|p| format!("ticketPattern `{p}` added")));
    c.platforms(old.platforms(), new.platforms());
    let (so, sn) = (old.protected_set(), new.protected_set());
    c.loosens
        .extend(so.iter().filter(|(k, _)| !sn.contains_key(*k)).map(|(_, p)| format!("protected device {p} removed")));
    c.tightens
        .extend(sn.iter().filter(|(k, _)| !so.contains_key(*k)).map(|(_, p)| format!("protected device {p} added")));
    let span = |d: Option<Duration>| d.map_or_else(|| "none".to_owned(), |d| HumanDuration(d).to_string());
    let cooldown = |p: &Policy| p.longest_cooldown().map(|(d, _)| d);
    c.bound("cooldown", Looser::Lower, cooldown(old), cooldown(new), span);
    let age = |p: &Policy| p.shortest_plan_max_age().map(|(d, _)| d);
    c.bound("planMaxAge", Looser::Higher, age(old), age(new), span);
    c.windows(old.window_slots(), new.window_slots());
    c.rename(old.rename_within, new.rename_within);
    c.out_of_band(old.out_of_band, new.out_of_band);
    c.kinds(&old.kinds, &new.kinds);
    (c.loosens, c.tightens)
}

/// What a change does to the policy, rule by rule: the rules it loosens, the rules it tightens.
#[derive(Default)]
struct Changes {
    loosens: Vec<String>,
    tightens: Vec<String>,
}

/// Which way a bounded rule's value loosens it (no value at all is always the loosest).
#[derive(Clone, Copy)]
enum Looser {
    /// A higher value allows more (`maxActionsPerApply`, `planMaxAge`).
    Higher,
    /// A lower value allows more (`cooldown`).
    Lower,
}

impl Changes {
    fn push(&mut self, loosens: bool, what: String) {
        if loosens { self.loosens.push(what) } else { self.tightens.push(what) }
    }

    /// A rule with an optional bound: `name old → new`, shown by `show`.
    fn bound<T: Ord + Copy>(
        &mut self,
        name: &str,
        looser: Looser,
        old: Option<T>,
        new: Option<T>,
        show: impl Fn(Option<T>) -> String,
    ) {
        let loosens = match (old, new) {
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(x), Some(y)) if x != y => matches!(looser, Looser::Higher) == (y > x),
            _ => return,
        };
        self.push(loosens, format!("{name} {} → {}", show(old), show(new)));
    }

    fn platforms(&mut self, old: Option<BTreeSet<String>>, new: Option<BTreeSet<String>>) {
        let list = |s: BTreeSet<String>| s.into_iter().collect::<Vec<_>>().join(", ");
        match (old, new) {
            (Some(o), None) => self.loosens.push(format!("allowPlatforms [{}] removed", list(o))),
            (None, Some(n)) => self.tightens.push(format!("allowPlatforms [{}] added", list(n))),
            (Some(o), Some(n)) => {
                self.loosens.extend(n.difference(&o).map(|p| format!("allowPlatforms allows {p}")));
                self.tightens.extend(o.difference(&n).map(|p| format!("allowPlatforms no longer allows {p}")));
            }
            (None, None) => {}
        }
    }

    fn windows<T: Ord>(&mut self, old: Option<BTreeSet<T>>, new: Option<BTreeSet<T>>) {
        match (old, new) {
            (Some(_), None) => self.loosens.push("changeWindows removed".to_owned()),
            (None, Some(_)) => self.tightens.push("changeWindows added".to_owned()),
            (Some(o), Some(n)) => {
                if !n.is_subset(&o) {
                    self.loosens.push("changeWindows widened".to_owned());
                }
                if !o.is_subset(&n) {
                    self.tightens.push("changeWindows narrowed".to_owned());
                }
            }
            (None, None) => {}
        }
    }

    /// `likelyRename`: none sends; a `within` blocks, the shorter the looser.
    fn rename(&mut self, old: Option<Duration>, new: Option<Duration>) {
        match (old, new) {
            (Some(_), None) => self.loosens.push("likelyRename then: send".to_owned()),
            (None, Some(_)) => self.tightens.push("likelyRename then: block".to_owned()),
            (Some(x), Some(y)) if x != y => {
                self.push(y < x, format!("likelyRename.within {} → {}", HumanDuration(x), HumanDuration(y)))
            }
            _ => {}
        }
    }

    /// `policy.kinds`: each kind's rules, like the repository-wide ones of the same name.
    fn kinds(
        &mut self,
        old: &std::collections::BTreeMap<crate::core::action::ActionKind, super::kinds::KindRules>,
        new: &std::collections::BTreeMap<crate::core::action::ActionKind, super::kinds::KindRules>,
    ) {
        let (old, new) = (super::kinds::values(old), super::kinds::values(new));
        let kinds: BTreeSet<_> = old.keys().chain(new.keys()).copied().collect();
        let limit = |n: Option<u32>| n.map_or_else(|| "no limit".to_owned(), |n| n.to_string());
        let span = |d: Option<Duration>| d.map_or_else(|| "none".to_owned(), |d| HumanDuration(d).to_string());
        for kind in kinds {
            let name = kind.spec().graph_name;
            let (om, ot, oc) = old.get(&kind).copied().unwrap_or_default();
            let (nm, nt, nc) = new.get(&kind).copied().unwrap_or_default();
            self.bound(&format!("kinds.{name}.maxActionsPerApply"), Looser::Higher, om, nm, limit);
            if ot != nt {
                self.push(ot, format!("kinds.{name}.requireTicket {}", if ot { "dropped" } else { "added" }));
            }
            self.bound(&format!("kinds.{name}.cooldown"), Looser::Lower, oc, nc, span);
        }
    }

    fn out_of_band(&mut self, (wo, to): (Duration, OutOfBandThen), (wn, tn): (Duration, OutOfBandThen)) {
        if rank(tn) != rank(to) {
            self.push(rank(tn) < rank(to), format!("outOfBand.then {} → {}", then_name(to), then_name(tn)));
        }
        if wn != wo {
            self.push(wn < wo, format!("outOfBand.within {} → {}", HumanDuration(wo), HumanDuration(wn)));
        }
    }
}

/// The policy in effect: the operator's `floor`, the repository's `repo`, and the repository's
/// before the change under review (`base`, with its short commit), the stricter of them rule by
/// rule; it carries what the change does to the repository's policy.
pub(crate) fn effective(floor: Option<&Floor>, repo: &Policy, base: Option<(String, Policy)>) -> Policy {
    let mut p = match floor {
        Some(f) => f.policy.clone().stricter(repo.clone()),
        None => repo.clone(),
    };
    let mut change = PolicyChange::default();
    if let Some((rev, before)) = base {
        (change.loosens, change.tightens) = diff(&before, repo);
        change.base = Some(rev);
        p = p.stricter(before);
    }
    if floor.is_some() {
        change.rules = p.rules();
    }
    change.digest = p.digest();
    p.change = Some(change);
    p
}

/// The operator's policy: a floor the repository can only tighten.
#[derive(Debug, Clone)]
pub(crate) struct Floor {
    pub(crate) policy: Policy,
}

impl Floor {
    /// Reads the operator's policy file: the keys of `reconcile.yaml`'s `policy:` section at its
    /// top level. Problems become diagnostics in that file.
    pub(crate) fn load(path: &Path, diags: &mut Diagnostics) -> Option<Floor> {
        let src = crate::manifest::source::read_text(path, diags)?;
        let docs = crate::manifest::source::split_documents(&src.text);
        let raw = match docs.as_slice() {
            [] => RawPolicy::default(),
            [doc] => crate::manifest::source::parse_document::<RawPolicy>(path, doc, diags)?,
            [_, second, ..] => {
                diags.push(Diagnostic::error(
                    path,
                    Some(crate::diag::Pos::new(second.line_offset + 1, 1)),
                    "the operator's policy holds more than one YAML document",
                ));
                return None;
            }
        };
        let policy = Policy::from_raw_as(raw, path, Origin::Operator, diags);
        Some(Floor { policy })
    }

    /// A warning for each rule the repository writes looser than this floor: the floor's applies.
    pub(crate) fn warnings(&self, repo: &Policy) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let floor = &self.policy;
        let mut warn = |at: &At, what: String, theirs: String, their_at: &At| {
            out.push(
                Diagnostic::warning(
                    &at.file,
                    Some(at.pos),
                    format!(
                        "policy.{what} is looser than the operator's {theirs} ({}): the operator's applies",
                        their_at.describe()
                    ),
                )
                .with_hint("tighten it to the operator's value, or ask the operator to change their policy"),
            );
        };
        if let (Some((n, at)), Some((m, fat))) = (repo.max_limit(), floor.max_limit())
            && n > m
        {
            warn(at, format!("maxActionsPerApply {n}"), m.to_string(), fat);
        }
        if let (Some((d, at)), Some((f, fat))) = (repo.longest_cooldown(), floor.longest_cooldown())
            && d < f
        {
            warn(at, format!("cooldown {}", HumanDuration(d)), HumanDuration(f).to_string(), fat);
        }
        if let (Some((d, at)), Some((f, fat))) = (repo.shortest_plan_max_age(), floor.shortest_plan_max_age())
            && d > f
        {
            warn(at, format!("planMaxAge {}", HumanDuration(d)), HumanDuration(f).to_string(), fat);
        }
        if let (Some((list, at)), Some((flist, fat))) = (repo.allow_platforms.first(), floor.allow_platforms.first())
            && list.iter().any(|p| !flist.contains(p))
        {
            warn(at, format!("allowPlatforms [{}]", platforms(list)), format!("[{}]", platforms(flist)), fat);
        }
        for (rule, at) in &repo.switched_off {
            let list = match rule {
                Rule::RequireTicket => &floor.require_ticket,
                Rule::RequireReason => &floor.require_reason,
                _ => &floor.require_requested_by,
            };
            if let Some(fat) = list.first() {
                warn(at, format!("{}: false", rule.code()), "true".to_owned(), fat);
            }
        }
        super::kinds::floor_warnings(&floor.kinds, &repo.kinds, &mut warn);
        if let (Some((w, at)), Some(_)) = (repo.windows.first(), floor.window_slots())
            && floor.window_slots().is_some_and(|f| !w.slots().is_subset(&f))
            && let Some((_, fat)) = floor.windows.first()
        {
            warn(at, "changeWindows".to_owned(), "windows".to_owned(), fat);
        }
        out
    }
}

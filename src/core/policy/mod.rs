//! Policy as code: guard rails in `reconcile.yaml` that no single pull request can slip past.
//!
//! Rules are checked in three places, all pure (the clock is passed in):
//! - [`Policy::check_manifests`]: what the manifests alone show (tickets, reasons, requesters,
//!   protected selectors), for `validate`, `plan` and `apply`;
//! - [`Policy::review`]: what needs the plan, the devices and the ledger (platforms, protected
//!   devices by id, cooldown, then the blast radius), for `plan` and `apply`;
//! - [`Policy::check_window`]: change windows, for `apply`.
//!
//! Every violation is a [`Diagnostic`] naming the rule, pointing at the offending line and saying
//! what to do, with its scope ([`Violation`]):
//! - **a manifest's rules** (ticket, ticket pattern, reason, requester, protected devices,
//!   platforms, cooldown) stop only that manifest: none of its resets is sent, the other
//!   manifests' are;
//! - **the repository's rules** (`maxActionsPerApply`, change windows) stop the run before any
//!   request.
//!
//! Files: `raw.rs` (the section as written), this one (validated into [`Policy`]), `check.rs`
//! (the manifest and plan rules), `window.rs` (change windows), `tests.rs` (the rule tables).

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::tz::TimeZone;

use crate::core::action::{Selector, SelectorKind};
pub(crate) use crate::core::device::Platform;
use crate::core::plan::RenameGuard;
use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::manifest::source::{duration, pos_of};

mod check;
mod combine;
mod kinds;
mod raw;
/// A protected device as written: its one selector (`None` unless exactly one of `id`,
/// `serialNumber`, `deviceName` is given and not blank) and the reason.
fn protected(d: raw::RawProtected) -> Option<(Selector, String)> {
    let given: Vec<(SelectorKind, String)> = [
        (SelectorKind::Id, d.id),
        (SelectorKind::SerialNumber, d.serial_number),
        (SelectorKind::DeviceName, d.device_name),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v.trim().to_owned())))
    .collect();
    match given.as_slice() {
        [(kind, value)] if !value.is_empty() => Some((Selector { kind: *kind, value: value.clone() }, d.reason)),
        _ => None,
    }
}

/// A count of at least 1 as written at `key`, or a diagnostic on its line.
fn count(m: &serde_saphyr::Spanned<i64>, key: &str, file: &Path, diags: &mut Diagnostics) -> Option<u32> {
    match u32::try_from(m.value) {
        Ok(n) if n >= 1 => Some(n),
        _ => {
            diags.push(Diagnostic::error(
                file,
                pos_of(m, 0),
                format!("invalid {key} `{}`: must be at least 1", m.value),
            ));
            None
        }
    }
}

/// `policy.changeWindows` as written → the windows, or `None` when the time zone is unknown (each
/// problem a diagnostic on its line).
fn change_windows(w: &raw::RawWindows, file: &Path, diags: &mut Diagnostics) -> Option<Windows> {
    let tz = TimeZone::get(&w.time_zone.value);
    if tz.is_err() {
        diags.push(Diagnostic::error(
            file,
            pos_of(&w.time_zone, 0),
            format!("unknown time zone `{}`: use an IANA name like Europe/Berlin", w.time_zone.value),
        ));
    }
    let mut list = Vec::new();
    for win in &w.windows {
        if let (Some(from), Some(to)) = (minutes(&win.from, file, diags), minutes(&win.to, file, diags)) {
            if from == to {
                diags.push(Diagnostic::error(
                    file,
                    pos_of(&win.from, 0),
                    "a change window needs `from` and `to` to differ",
                ));
            }
            list.push(Window { days: win.days.iter().map(|d| d.weekday()).collect(), from, to });
        }
    }
    tz.ok().map(|tz| Windows { tz, tz_name: w.time_zone.value.clone(), list })
}

#[cfg(test)]
mod tests;
mod window;
use crate::core::violation::Rule;
pub(crate) use combine::{Floor, PolicyChange, effective};
pub(crate) use raw::*;
use window::{Window, Windows, minutes};

/// Where a rule of the effective policy was written: the operator's floor, the repository as it
/// is now, or the repository before the change under review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    Operator,
    Repository,
    /// The policy at this git revision, which the change loosens.
    Base(String),
}

/// A rule's place: its file and line, and whose it is.
#[derive(Debug, Clone)]
pub(crate) struct At {
    pub(crate) file: PathBuf,
    pub(crate) pos: Pos,
    pub(crate) origin: Origin,
}

impl At {
    /// `reconcile.yaml:7`, `/etc/reconcile/policy.yaml:3 (operator)`, `reconcile.yaml:7 at 1a2b3c`.
    pub(crate) fn describe(&self) -> String {
        let place = format!("{}:{}", self.file.display(), self.pos.line);
        match &self.origin {
            Origin::Operator => format!("{place} (the operator's)"),
            Origin::Repository => place,
            Origin::Base(rev) => format!("{place} at {rev}"),
        }
    }
    /// The hint of a violation of this rule: `usual`, or, for a rule only the policy before the
    /// change has, why the change cannot rely on its own loosening.
    pub(crate) fn hint(&self, usual: &str) -> String {
        match &self.origin {
            Origin::Base(rev) => format!(
                "the policy at {rev} forbids it and this change loosens that rule: merge the policy change on its own first, then this change"
            ),
            _ => usual.to_owned(),
        }
    }
}

#[derive(Debug, Clone)]
struct Protected {
    selector: Selector,
    reason: String,
    at: At,
}

/// The validated `policy:` section, or the stricter of several (the operator's floor, the
/// repository's, the repository's before a change: [`Policy::stricter`]). Each rule keeps every
/// source's value with its place; the strictest decides, and names its source. The default
/// enforces nothing but the likely-rename guard.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    max_actions: Vec<(u32, At)>,
    require_ticket: Vec<At>,
    ticket_pattern: Vec<(regex_lite::Regex, String, At)>,
    require_reason: Vec<At>,
    require_requested_by: Vec<At>,
    allow_platforms: Vec<(Vec<Platform>, At)>,
    protected: Vec<Protected>,
    cooldown: Vec<(Duration, At)>,
    /// `planMaxAge`: every source's; the shortest applies.
    plan_max_age: Vec<(Duration, At)>,
    windows: Vec<(Windows, At)>,
    /// `None`: likely renames are sent.
    rename_within: Option<Duration>,
    /// `policy.outOfBand`: how far back, and what then.
    out_of_band: (Duration, OutOfBandThen),
    /// Rules this policy's own file switched off by name (`requireTicket: false`): a floor's
    /// warning names them.
    switched_off: Vec<(Rule, At)>,
    /// `policy.kinds`: each kind's rules, every source's (the class defaults are built in: see
    /// [`kinds`]).
    kinds: std::collections::BTreeMap<crate::core::action::ActionKind, kinds::KindRules>,
    /// What the change under review does to the repository's policy (see [`combine`]).
    pub(crate) change: Option<PolicyChange>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_actions: Vec::new(),
            require_ticket: Vec::new(),
            ticket_pattern: Vec::new(),
            require_reason: Vec::new(),
            require_requested_by: Vec::new(),
            allow_platforms: Vec::new(),
            protected: Vec::new(),
            cooldown: Vec::new(),
            plan_max_age: Vec::new(),
            windows: Vec::new(),
            rename_within: Some(RENAME_WITHIN),
            out_of_band: (OUT_OF_BAND_WITHIN, OutOfBandThen::Adopt),
            switched_off: Vec::new(),
            kinds: Default::default(),
            change: None,
        }
    }
}
impl Policy {
    /// Validates the raw section, pushing a diagnostic (in `file`) for every problem.
    pub(crate) fn from_raw(raw: RawPolicy, file: &Path, diags: &mut Diagnostics) -> Policy {
        Policy::from_raw_as(raw, file, Origin::Repository, diags)
    }

    /// [`Policy::from_raw`], for a policy of `origin`.
    pub(crate) fn from_raw_as(raw: RawPolicy, file: &Path, origin: Origin, diags: &mut Diagnostics) -> Policy {
        let at = |pos: Option<Pos>| At {
            file: file.to_path_buf(),
            pos: pos.unwrap_or(Pos::new(1, 1)),
            origin: origin.clone(),
        };
        let mut p = Policy::default();
        if let Some(m) = raw.max_actions_per_apply
            && let Some(n) = count(&m, "policy.maxActionsPerApply", file, diags)
        {
            p.max_actions.push((n, at(pos_of(&m, 0))));
        }
        if let Some(k) = raw.kinds {
            p.kinds = kinds::from_raw(k, file, &at, diags);
        }
        for (said, list, rule) in [
            (raw.require_ticket, &mut p.require_ticket, Rule::RequireTicket),
            (raw.require_reason, &mut p.require_reason, Rule::RequireReason),
            (raw.require_requested_by, &mut p.require_requested_by, Rule::RequireRequestedBy),
        ] {
            match said {
                Some(true) => list.push(at(None)),
                Some(false) => p.switched_off.push((rule, at(None))),
                None => {}
            }
        }
        if let Some(pat) = raw.ticket_pattern {
            match regex_lite::Regex::new(&pat.value) {
                Ok(re) => p.ticket_pattern.push((re, pat.value.clone(), at(pos_of(&pat, 0)))),
                Err(e) => {
                    diags.push(Diagnostic::error(file, pos_of(&pat, 0), format!("invalid policy.ticketPattern: {e}")))
                }
            }
        }
        if let Some(list) = raw.allow_platforms {
            p.allow_platforms.push((list.value.clone(), at(pos_of(&list, 0))));
        }
        for entry in raw.protected_devices.into_iter().flatten() {
            let pos = pos_of(&entry, 0);
            match protected(entry.value) {
                Some((selector, reason)) => p.protected.push(Protected { selector, reason, at: at(pos) }),
                None => diags.push(Diagnostic::error(
                    file,
                    pos,
                    "a protected device needs exactly one of `id`, `serialNumber`, `deviceName`",
                )),
            }
        }
        if let Some(c) = raw.cooldown
            && let Some(d) = duration(&c, "policy.cooldown", file, diags)
        {
            p.cooldown.push((d, at(pos_of(&c, 0))));
        }
        if let Some(a) = raw.plan_max_age
            && let Some(d) = duration(&a, "policy.planMaxAge", file, diags)
        {
            p.plan_max_age.push((d, at(pos_of(&a, 0))));
        }
        if let Some(r) = raw.likely_rename {
            if let Some(d) = r.within.as_ref().and_then(|w| duration(w, "policy.likelyRename.within", file, diags)) {
                p.rename_within = Some(d);
            }
            if r.then == Some(RenameThen::Send) {
                p.rename_within = None;
            }
        }
        if let Some(o) = raw.out_of_band {
            if let Some(d) = o.within.as_ref().and_then(|w| duration(w, "policy.outOfBand.within", file, diags)) {
                p.out_of_band.0 = d;
            }
            p.out_of_band.1 = o.then.unwrap_or(OutOfBandThen::Adopt);
        }
        if let Some(w) = raw.change_windows
            && let Some(windows) = change_windows(&w, file, diags)
        {
            p.windows.push((windows, at(pos_of(&w.time_zone, 0))));
        }
        p
    }
    /// The likely-rename guard for a plan made at `now` (`None` when likely renames are sent).
    pub(crate) fn rename_guard(&self, now: jiff::Timestamp) -> Option<RenameGuard> {
        self.rename_within.map(|within| RenameGuard { now, within })
    }
    /// Since when actions made outside this tool matter for actions of `kinds`: `outOfBand.within`,
    /// or the longest cooldown of those kinds when it is longer (it counts them too). The audit log
    /// is read from then on.
    pub(crate) fn out_of_band_since(
        &self,
        now: jiff::Timestamp,
        kinds: impl IntoIterator<Item = crate::core::action::ActionKind>,
    ) -> jiff::Timestamp {
        let back = self.longest_kind_cooldown(kinds).map_or(self.out_of_band.0, |c| c.max(self.out_of_band.0));
        now - jiff::SignedDuration::try_from(back).unwrap_or(jiff::SignedDuration::MAX)
    }
    /// `maxActionsPerApply`: the most resets one run may send (the smallest of every source's).
    pub(crate) fn max_actions(&self) -> Option<usize> {
        self.max_limit().map(|(max, _)| max as usize)
    }
    /// The smallest `maxActionsPerApply` and its place (the first source's on a tie: the
    /// operator's before the repository's before the base's).
    fn max_limit(&self) -> Option<(u32, &At)> {
        kinds::smallest(&self.max_actions)
    }
    /// The longest cooldown and its place (the first source's on a tie).
    fn longest_cooldown(&self) -> Option<(Duration, &At)> {
        kinds::longest(&self.cooldown)
    }

    /// The shortest `planMaxAge` and its place (the first source's on a tie).
    fn shortest_plan_max_age(&self) -> Option<(Duration, &At)> {
        self.plan_max_age.iter().fold(None, |best: Option<(Duration, &At)>, (d, at)| match best {
            Some((b, _)) if b <= *d => best,
            _ => Some((*d, at)),
        })
    }

    /// `planMaxAge`: why a saved plan made at `created` is too old to apply at `now`, or `None`.
    pub(crate) fn plan_too_old(&self, created: jiff::Timestamp, now: jiff::Timestamp) -> Option<String> {
        let (max, at) = self.shortest_plan_max_age()?;
        let age = now.duration_since(created);
        let limit = jiff::SignedDuration::try_from(max).unwrap_or(jiff::SignedDuration::MAX);
        (age > limit).then(|| {
            let secs = age.as_secs().max(0);
            let (h, m) = (secs / 3600, secs % 3600 / 60);
            let age = match (h, m) {
                (0, 0) => format!("{secs}s"),
                (0, m) => format!("{m}m"),
                (h, 0) => format!("{h}h"),
                (h, m) => format!("{h}h {m}m"),
            };
            format!(
                "it was made {age} ago, longer than policy planMaxAge {} ({}) allows",
                crate::duration::HumanDuration(max),
                at.describe()
            )
        })
    }

    /// Whether a rule looks at what the device of an action of `kinds` resolved to (platforms,
    /// protected devices, a cooldown of the kind): such a violation stops the whole manifest, so
    /// none of its actions may leave before all of its devices are looked up.
    pub(crate) fn has_device_rules(&self, mut kinds: impl Iterator<Item = crate::core::action::ActionKind>) -> bool {
        !self.allow_platforms.is_empty() || !self.protected.is_empty() || kinds.any(|k| self.kind_cooldown(k).is_some())
    }
}

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

use crate::action::{Selector, SelectorKind};
pub(crate) use crate::device::Platform;
use crate::diagnostic::{Diagnostic, Diagnostics, Pos};
use crate::manifest::source::{duration, pos_of};
use crate::plan::RenameGuard;

mod check;
mod raw;
#[cfg(test)]
mod tests;
mod window;
pub(crate) use raw::*;
use window::{Window, Windows, minutes};

#[derive(Debug, Clone)]
struct Protected {
    selector: Selector,
    reason: String,
    pos: Pos,
}
/// The validated `policy:` section. The default enforces nothing but the likely-rename guard.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    file: PathBuf,
    max_actions: Option<(u32, Pos)>,
    require_ticket: bool,
    ticket_pattern: Option<(regex_lite::Regex, String, Pos)>,
    require_reason: bool,
    require_requested_by: bool,
    allow_platforms: Option<(Vec<Platform>, Pos)>,
    protected: Vec<Protected>,
    cooldown: Option<(Duration, Pos)>,
    windows: Option<Windows>,
    /// `None`: likely renames are sent.
    rename_within: Option<Duration>,
    /// `policy.outOfBand`: how far back, and what then.
    out_of_band: (Duration, OutOfBandThen),
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            file: PathBuf::new(),
            max_actions: None,
            require_ticket: false,
            ticket_pattern: None,
            require_reason: false,
            require_requested_by: false,
            allow_platforms: None,
            protected: Vec::new(),
            cooldown: None,
            windows: None,
            rename_within: Some(RENAME_WITHIN),
            out_of_band: (OUT_OF_BAND_WITHIN, OutOfBandThen::Adopt),
        }
    }
}
impl Policy {
    /// Validates the raw section, pushing a diagnostic (in the config file) for every problem.
    pub(crate) fn from_raw(raw: RawPolicy, file: &Path, diags: &mut Diagnostics) -> Policy {
        let mut p = Policy { file: file.to_path_buf(), ..Policy::default() };
        if let Some(m) = raw.max_actions_per_apply {
            match u32::try_from(m.value) {
                Ok(n) if n >= 1 => p.max_actions = Some((n, pos_of(&m, 0).unwrap_or(Pos::new(1, 1)))),
                _ => diags.push(Diagnostic::error(
                    file,
                    pos_of(&m, 0),
                    format!("invalid policy.maxActionsPerApply `{}`: must be at least 1", m.value),
                )),
            }
        }
        p.require_ticket = raw.require_ticket.unwrap_or(false);
        p.require_reason = raw.require_reason.unwrap_or(false);
        p.require_requested_by = raw.require_requested_by.unwrap_or(false);
        if let Some(pat) = raw.ticket_pattern {
            match regex_lite::Regex::new(&pat.value) {
                Ok(re) => p.ticket_pattern = Some((re, pat.value.clone(), pos_of(&pat, 0).unwrap_or(Pos::new(1, 1)))),
                Err(e) => {
                    diags.push(Diagnostic::error(file, pos_of(&pat, 0), format!("invalid policy.ticketPattern: {e}")))
                }
            }
        }
        if let Some(list) = raw.allow_platforms {
            p.allow_platforms = Some((list.value.clone(), pos_of(&list, 0).unwrap_or(Pos::new(1, 1))));
        }
        for entry in raw.protected_devices.into_iter().flatten() {
            let pos = pos_of(&entry, 0).unwrap_or(Pos::new(1, 1));
            let d = entry.value;
            let given: Vec<(SelectorKind, String)> = [
                (SelectorKind::Id, d.id),
                (SelectorKind::SerialNumber, d.serial_number),
                (SelectorKind::DeviceName, d.device_name),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v.trim().to_owned())))
            .collect();
            match given.as_slice() {
                [(kind, value)] if !value.is_empty() => p.protected.push(Protected {
                    selector: Selector { kind: *kind, value: value.clone() },
                    reason: d.reason,
                    pos,
                }),
                _ => diags.push(Diagnostic::error(
                    file,
                    Some(pos),
                    "a protected device needs exactly one of `id`, `serialNumber`, `deviceName`",
                )),
            }
        }
        if let Some(c) = raw.cooldown
            && let Some(d) = duration(&c, "policy.cooldown", file, diags)
        {
            p.cooldown = Some((d, pos_of(&c, 0).unwrap_or(Pos::new(1, 1))));
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
        if let Some(w) = raw.change_windows {
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
            if let Ok(tz) = tz {
                p.windows = Some(Windows { tz, tz_name: w.time_zone.value.clone(), list });
            }
        }
        p
    }
    /// The likely-rename guard for a plan made at `now` (`None` when likely renames are sent).
    pub(crate) fn rename_guard(&self, now: jiff::Timestamp) -> Option<RenameGuard> {
        self.rename_within.map(|within| RenameGuard { now, within })
    }
    /// Since when resets made outside this tool matter: `outOfBand.within`, or the cooldown
    /// when it is longer (it counts them too). The audit log is read from then on.
    pub(crate) fn out_of_band_since(&self, now: jiff::Timestamp) -> jiff::Timestamp {
        let back = self.cooldown.map_or(self.out_of_band.0, |(c, _)| c.max(self.out_of_band.0));
        now - jiff::SignedDuration::try_from(back).unwrap_or(jiff::SignedDuration::MAX)
    }
    /// `maxActionsPerApply`: the most resets one run may send.
    pub(crate) fn max_actions(&self) -> Option<usize> {
        self.max_actions.map(|(max, _)| max as usize)
    }

    /// Whether a rule looks at what a device resolved to (platforms, protected devices,
    /// cooldown): such a violation stops the whole manifest, so none of its resets may leave
    /// before all of its devices are looked up.
    pub(crate) fn has_device_rules(&self) -> bool {
        self.allow_platforms.is_some() || !self.protected.is_empty() || self.cooldown.is_some()
    }
}

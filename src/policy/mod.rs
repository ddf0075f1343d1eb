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

use std::cell::OnceCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use serde_saphyr::Spanned;

use crate::action::{Selector, SelectorKind};
use crate::device::Device;
pub(crate) use crate::device::Platform;
use crate::diagnostic::{Diagnostic, Diagnostics, Pos};
use crate::duration::HumanDuration;
use crate::manifest::Manifest;
use crate::manifest::source::{duration, pos_of};
use crate::out_of_band::{AuditLog, Claims, OutOfBand};
use crate::plan::{BlockKind, Change, Plan, RenameGuard, Violation};
use crate::state::{Ledger, ResetIndex};

mod raw;
pub(crate) use raw::*;

#[derive(Debug, Clone)]
struct Protected {
    selector: Selector,
    reason: String,
    pos: Pos,
}

#[derive(Debug, Clone)]
struct Window {
    days: Vec<Weekday>,
    /// Minutes since midnight.
    from: u32,
    to: u32,
}

#[derive(Debug, Clone)]
struct Windows {
    tz: TimeZone,
    tz_name: String,
    list: Vec<Window>,
}

/// The device's latest reset made outside this tool since `since`, if Intune shows one.
fn outside<'l>(
    d: &crate::device::Device,
    audits: &AuditLog,
    claims: &dyn Fn() -> &'l Claims<'l>,
    since: jiff::Timestamp,
) -> Option<OutOfBand> {
    // Most devices have no recent passcode reset to look at: the ledger is indexed (once per
    // review) only when one has.
    let recent = d
        .device_action_results
        .iter()
        .any(|r| crate::device::is_passcode_reset(&r.action_name) && r.start_date_time.is_some_and(|t| t >= since));
    if !recent && !audits.has(&d.id) {
        return None;
    }
    crate::out_of_band::latest(d, audits, claims(), since)
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

use crate::violation::{Rule, found as violation};

fn minutes(s: &Spanned<String>, file: &Path, diags: &mut Diagnostics) -> Option<u32> {
    let parsed = s.value.split_once(':').and_then(|(h, m)| {
        let (h, m) = (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?);
        (h < 24 && m < 60 && s.value.len() == 5 || s.value == "24:00").then_some(h * 60 + m)
    });
    if parsed.is_none() {
        diags.push(Diagnostic::error(
            file,
            pos_of(s, 0),
            format!("invalid time `{}`: expected HH:MM, 00:00 to 24:00", s.value),
        ));
    }
    parsed
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

    /// What the manifests alone break: tickets, reasons, requesters, protected selectors.
    pub(crate) fn check_manifests(&self, manifests: &[Manifest]) -> Vec<Violation> {
        let mut all = Vec::new();
        for m in manifests {
            let mut out = Vec::new();
            let f = &m.file;
            let at = Some(m.name_pos);
            let ticket = m.ticket.as_ref().filter(|(t, _)| !t.trim().is_empty());
            match (ticket, self.require_ticket) {
                (None, true) => out.push(violation(
                    f,
                    at,
                    Rule::RequireTicket,
                    format!("manifest `{}` has no metadata.ticket", m.name),
                    "add `ticket:` under `metadata:`",
                )),
                (Some((t, pos)), _) => {
                    if let Some((re, pat, _)) = &self.ticket_pattern
                        && !re.is_match(t)
                    {
                        out.push(violation(
                            f,
                            Some(*pos),
                            Rule::TicketPattern,
                            format!("ticket `{t}` does not match `{pat}`"),
                            "use a ticket id of the form the policy asks for",
                        ));
                    }
                }
                _ => {}
            }
            // requireTicket's siblings: a metadata field that must be there and not blank.
            for (required, value, rule, key) in [
                (self.require_reason, &m.reason, Rule::RequireReason, "reason"),
                (self.require_requested_by, &m.requested_by, Rule::RequireRequestedBy, "requestedBy"),
            ] {
                if required && value.as_ref().is_none_or(|(v, _)| v.trim().is_empty()) {
                    out.push(violation(
                        f,
                        at,
                        rule,
                        format!("manifest `{}` has no metadata.{key}", m.name),
                        &format!("add `{key}:` under `metadata:`"),
                    ));
                }
            }
            for d in &m.devices {
                if let Some(p) = self
                    .protected
                    .iter()
                    .find(|p| p.selector.kind == d.selector.kind && p.selector.normalized() == d.selector.normalized())
                {
                    out.push(self.protected_violation(f, d.pos, &d.selector.to_string(), p));
                }
            }
            all.extend(out.into_iter().map(|d| Violation::of_manifest(&m.name, d)));
        }
        all
    }

    /// The likely-rename guard for a plan made at `now` (`None` when likely renames are sent).
    pub(crate) fn rename_guard(&self, now: jiff::Timestamp) -> Option<RenameGuard> {
        self.rename_within.map(|within| RenameGuard { now, within })
    }

    /// Checks `plan` against every rule that needs it: a device reset outside this tool lately
    /// is adopted, blocked or flagged (`outOfBand`, from the devices' results and `audits`); the
    /// manifests' violations (`found`, from [`Policy::check_manifests`]) and the per-device rules
    /// block their manifests; then the blast radius counts what is still to be sent. `now` is when
    /// the resets would be sent.
    pub(crate) fn review<'a>(
        &self,
        plan: Plan<'a>,
        mut found: Vec<Violation>,
        ledger: &Ledger,
        audits: &AuditLog,
        now: jiff::Timestamp,
    ) -> Plan<'a> {
        let claims = OnceCell::new();
        let claims = || claims.get_or_init(|| Claims::new(ledger));
        let plan = self.judge_out_of_band(plan, audits, &claims, now);
        found.extend(self.check_plan(&plan, ledger, audits, &claims, now));
        let mut plan = plan.with_violations(found);
        if let Some((max, pos)) = self.max_actions
            && plan.summary.to_reset > max as usize
        {
            plan.violations.push(Violation::of_repository(violation(
                &self.file,
                Some(pos),
                Rule::MaxActionsPerApply,
                format!("the plan resets {} devices, more than the limit of {max}", plan.summary.to_reset),
                "split the change across pull requests, or raise the limit in a reviewed change to reconcile.yaml",
            )));
            plan.summary.violations += 1;
        }
        plan
    }

    /// Since when resets made outside this tool matter: `outOfBand.within`, or the cooldown
    /// when it is longer (it counts them too). The audit log is read from then on.
    pub(crate) fn out_of_band_since(&self, now: jiff::Timestamp) -> jiff::Timestamp {
        let back = self.cooldown.map_or(self.out_of_band.0, |(c, _)| c.max(self.out_of_band.0));
        now - jiff::SignedDuration::try_from(back).unwrap_or(jiff::SignedDuration::MAX)
    }

    /// `outOfBand`: each reset whose device Intune shows reset outside this tool within
    /// `within` is adopted, blocked or kept with a warning.
    fn judge_out_of_band<'a, 'l>(
        &self,
        mut plan: Plan<'a>,
        audits: &AuditLog,
        claims: &dyn Fn() -> &'l Claims<'l>,
        now: jiff::Timestamp,
    ) -> Plan<'a> {
        let (within, then) = self.out_of_band;
        let since = now - jiff::SignedDuration::try_from(within).unwrap_or(jiff::SignedDuration::MAX);
        for e in plan.entries.iter_mut().filter(|e| e.change == Change::Reset) {
            let Some(d) = e.device else { continue };
            let Some(o) = outside(d, audits, claims, since) else { continue };
            let seen = o.describe(now);
            match then {
                OutOfBandThen::Adopt => {
                    e.change = Change::Adopt;
                    e.reason = format!("{seen} — adopted, nothing will be sent").into();
                }
                OutOfBandThen::Block => {
                    e.change = Change::Blocked;
                    e.block = Some(BlockKind::OutOfBand);
                    e.reason = format!(
                        "{seen} — blocked by policy.outOfBand (then: block); hint: once confirmed, record it with `reconcile state adopt {} --reason …`, or wait until it is older than {}",
                        e.key().short(),
                        HumanDuration(within)
                    )
                    .into();
                }
                OutOfBandThen::Send => {
                    e.reason = format!("warning: {seen}; sent anyway (policy.outOfBand then: send)").into();
                }
            }
            e.out_of_band = Some(o);
        }
        plan.recount();
        plan
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

    fn protected_violation(&self, file: &Path, pos: Pos, what: &str, p: &Protected) -> (Rule, Diagnostic) {
        violation(
            file,
            Some(pos),
            Rule::ProtectedDevices,
            format!("device {what} is protected ({}; listed at {}:{})", p.reason, self.file.display(), p.pos.line),
            "remove it from the manifest; protection is lifted only by a reviewed change to reconcile.yaml",
        )
    }

    /// What the plan's devices break: platforms, protected devices (by what they resolved to),
    /// cooldown; each a violation of the action's manifest.
    fn check_plan<'l>(
        &self,
        plan: &Plan<'_>,
        ledger: &Ledger,
        audits: &AuditLog,
        claims: &dyn Fn() -> &'l Claims<'l>,
        now: jiff::Timestamp,
    ) -> Vec<Violation> {
        let mut all: Vec<Violation> = Vec::new();
        let mut planned: HashMap<String, &crate::action::Action> = HashMap::new();
        let past =
            if self.cooldown.is_some() { ResetIndex::new(ledger.records.values()) } else { ResetIndex::default() };
        for e in plan.entries.iter().filter(|e| e.change == Change::Reset) {
            let Some(a) = e.action else { continue };
            let found = [
                self.cooldown_in_plan(a, e.device, &mut planned),
                e.device.and_then(|d| self.protected_device(a, d)),
                e.device.and_then(|d| self.platform(a, d)),
                self.cooldown(a, e.device, &past, audits, claims, now),
            ];
            all.extend(found.into_iter().flatten().map(|f| Violation::of_manifest(&a.manifest, f)));
        }
        all
    }

    /// `cooldown`: two manifests of one plan resetting one device; the first one keeps it.
    fn cooldown_in_plan<'a>(
        &self,
        a: &'a crate::action::Action,
        device: Option<&Device>,
        planned: &mut HashMap<String, &'a crate::action::Action>,
    ) -> Option<(Rule, Diagnostic)> {
        let d = device.filter(|_| self.cooldown.is_some())?;
        match planned.get(&d.id.to_ascii_lowercase()) {
            Some(first) if first.manifest != a.manifest => Some(violation(
                &a.file,
                Some(a.pos),
                Rule::Cooldown,
                format!("device {} is also reset by manifest `{}` in this plan", a.selector, first.manifest),
                "reset it in one manifest only",
            )),
            Some(_) => None,
            None => {
                planned.insert(d.id.to_ascii_lowercase(), a);
                None
            }
        }
    }

    /// `protectedDevices`, by what the selector resolved to (the selector itself is checked with
    /// the manifests).
    fn protected_device(&self, a: &crate::action::Action, d: &Device) -> Option<(Rule, Diagnostic)> {
        let matches = |p: &Protected| {
            let v = p.selector.value.to_lowercase();
            let field = match p.selector.kind {
                SelectorKind::Id => Some(&d.id),
                SelectorKind::SerialNumber => d.serial_number.as_ref(),
                SelectorKind::DeviceName => d.device_name.as_ref(),
                SelectorKind::Imei => None,
            };
            field.is_some_and(|f| f.to_lowercase() == v)
        };
        let static_hit = self
            .protected
            .iter()
            .any(|p| p.selector.kind == a.selector.kind && p.selector.normalized() == a.selector.normalized());
        let p = self.protected.iter().find(|p| matches(p)).filter(|_| !static_hit)?;
        Some(self.protected_violation(&a.file, a.pos, &format!("{} (device {})", a.selector, d.id), p))
    }

    /// `allowPlatforms`.
    fn platform(&self, a: &crate::action::Action, d: &Device) -> Option<(Rule, Diagnostic)> {
        let (allowed, _) = self.allow_platforms.as_ref()?;
        let os = d.operating_system.clone().unwrap_or_default();
        Platform::of(&os).is_none_or(|pl| !allowed.contains(&pl)).then(|| {
            violation(
                &a.file,
                Some(a.pos),
                Rule::AllowPlatforms,
                format!(
                    "device {} runs {}, which the policy does not allow",
                    a.selector,
                    if os.is_empty() { "an unknown platform" } else { &os }
                ),
                "remove it from the manifest, or change policy.allowPlatforms in a reviewed change",
            )
        })
    }

    /// `cooldown`: the ledger's last reset of the device, or one made outside this tool since.
    fn cooldown<'l>(
        &self,
        a: &crate::action::Action,
        device: Option<&Device>,
        past: &ResetIndex<'_>,
        audits: &AuditLog,
        claims: &dyn Fn() -> &'l Claims<'l>,
        now: jiff::Timestamp,
    ) -> Option<(Rule, Diagnostic)> {
        let (cooldown, _) = self.cooldown?;
        let span = jiff::SignedDuration::try_from(cooldown).unwrap_or(jiff::SignedDuration::MAX);
        let recorded = past.last(a, device.map(|d| d.id.as_str())).map(|(when, r)| (when, format!("`{}`", r.manifest)));
        let elsewhere = device
            .and_then(|d| outside(d, audits, claims, now - span))
            .map(|o| (o.started_at, format!("{} outside reconcile", o.who())));
        let (when, by) = recorded.into_iter().chain(elsewhere).max_by_key(|(when, _)| *when)?;
        (now < when + span).then(|| {
            violation(
                &a.file,
                Some(a.pos),
                Rule::Cooldown,
                format!(
                    "device {} was reset at {} by {by}; the {} cooldown lasts until {}",
                    a.selector,
                    crate::duration::at_second(when),
                    HumanDuration(cooldown),
                    crate::duration::at_second(when + span)
                ),
                "wait until then, or remove the device from the manifest",
            )
        })
    }

    /// `Err` when `now` is outside every change window (none configured: always inside).
    pub(crate) fn check_window(&self, now: jiff::Timestamp) -> Result<(), Diagnostic> {
        let Some(w) = &self.windows else { return Ok(()) };
        let local = now.to_zoned_datetime(w.tz.clone());
        let (day, minute) = (local.weekday(), local.hour() as u32 * 60 + local.minute() as u32);
        let yesterday = day.previous();
        let inside = w.list.iter().any(|win| {
            if win.from < win.to {
                win.days.contains(&day) && minute >= win.from && minute < win.to
            } else {
                (win.days.contains(&day) && minute >= win.from) || (win.days.contains(&yesterday) && minute < win.to)
            }
        });
        if inside {
            return Ok(());
        }
        // The next opening: the earliest window start after now, within a week.
        let next = (0..=7)
            .filter_map(|k| local.date().checked_add(jiff::Span::new().days(k)).ok())
            .flat_map(|date| {
                w.list.iter().filter(move |win| win.days.contains(&date.weekday())).filter_map(move |win| {
                    let (h, m) = ((win.from / 60) as i8, (win.from % 60) as i8);
                    date.at(h, m, 0, 0).to_zoned_datetime(w.tz.clone()).ok()
                })
            })
            .filter(|start| start.timestamp() > now)
            .min_by_key(jiff::ZonedDateTime::timestamp);
        let opens = next.map(|z| format!("; the next opens {}", z.strftime("%a %Y-%m-%d %H:%M"))).unwrap_or_default();
        Err(violation(
            &self.file,
            None,
            Rule::ChangeWindows,
            format!("{} in {} is outside every change window{opens}", local.strftime("%a %Y-%m-%d %H:%M"), w.tz_name),
            "apply inside a window, or pass --ignore-change-windows --reason \"…\" (the reason is recorded in the ledger)",
        ).1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> Policy {
        let raw: RawPolicy = serde_saphyr::from_str(yaml).expect("policy YAML");
        let mut diags = Diagnostics::default();
        let p = Policy::from_raw(raw, Path::new("reconcile.yaml"), &mut diags);
        assert!(!diags.has_errors(), "{diags:?}");
        p
    }

    fn at(ts: &str) -> jiff::Timestamp {
        ts.parse().expect("timestamp")
    }

    /// One manifest with this metadata (below `name: m`) and one device, `serialNumber: S1`.
    fn manifest(meta: &str) -> Vec<Manifest> {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("m.yaml");
        let yaml = format!(
            "apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: m\n{meta}spec:\n  devices:\n    - serialNumber: S1\n"
        );
        std::fs::write(&file, yaml).expect("write");
        let loaded = crate::manifest::load(&[file], crate::manifest::validate::Context { beta_api: false });
        assert!(!loaded.diagnostics.has_errors(), "{:?}", loaded.diagnostics);
        loaded.manifests
    }

    /// The rules `review` finds for one manifest resetting serial `S1`, resolved to `device`
    /// (JSON as Graph gives it), with a ledger record of another manifest for the same device
    /// sent `recorded_ago` before now.
    fn device_rules(rules: &str, device: serde_json::Value, recorded_ago: Option<i64>) -> Vec<Rule> {
        let now = at("2026-11-30T12:00:00Z");
        let manifests = manifest("");
        let actions: Vec<crate::action::Action> = manifests.iter().flat_map(Manifest::actions).collect();
        let device: Device = serde_json::from_value(device).expect("device");
        let mut ledger = Ledger::empty();
        if let Some(h) = recorded_ago {
            let mut r = crate::state::tests::record("other", "S1", crate::state::Status::Done);
            r.managed_device_id = Some(device.id.clone());
            r.attempts.push(crate::state::Attempt {
                started_at: now - jiff::SignedDuration::from_hours(h),
                client_request_id: uuid::Uuid::new_v4(),
                http_status: Some(204),
                ..crate::state::Attempt::default()
            });
            ledger.records.insert(r.key.clone(), r);
        }
        let resolutions: crate::plan::Resolutions =
            actions.iter().map(|a| (a.key.clone(), crate::plan::Resolution::Device(device.clone()))).collect();
        let opts = crate::plan::PlanOptions { report_orphans: false, rename_guard: None };
        let plan = crate::plan::plan(&actions, &ledger, &resolutions, opts);
        let plan = policy(rules).review(plan, Vec::new(), &ledger, &AuditLog::default(), now);
        plan.violations.iter().map(|v| v.rule).collect()
    }

    // Each rule about what a device resolved to, by its code: what breaks it and what does not.
    #[test]
    fn every_device_rule_reports_its_own_code() {
        let android = serde_json::json!({"id": "dev-1", "serialNumber": "S1", "operatingSystem": "Android"});
        let iphone = serde_json::json!({"id": "dev-1", "serialNumber": "S1", "operatingSystem": "iOS", "managedDeviceOwnerType": "company"});
        let portal = serde_json::json!({"id": "dev-1", "serialNumber": "S1", "operatingSystem": "Android",
            "deviceActionResults": [{"actionName": "resetPasscode", "actionState": "done", "startDateTime": "2026-11-30T11:00:00Z"}]});
        let cases: [(&str, &serde_json::Value, Option<i64>, &[Rule]); 9] = [
            ("{}\n", &android, Some(1), &[]),
            ("allowPlatforms: [android]\n", &iphone, None, &[Rule::AllowPlatforms]),
            ("allowPlatforms: [android, ios]\n", &iphone, None, &[]),
            ("protectedDevices:\n  - { id: DEV-1, reason: vip }\n", &android, None, &[Rule::ProtectedDevices]),
            ("cooldown: 24h\n", &android, Some(1), &[Rule::Cooldown]),
            ("cooldown: 24h\n", &android, Some(24), &[]),
            // A reset made outside reconcile an hour ago, older than outOfBand.within: the
            // cooldown still counts it.
            ("cooldown: 24h\noutOfBand: { within: 30m }\n", &portal, None, &[Rule::Cooldown]),
            ("outOfBand: { within: 30m }\n", &portal, None, &[]),
            ("maxActionsPerApply: 1\n", &android, None, &[]),
        ];
        for (rules, device, recorded_ago, want) in cases {
            assert_eq!(device_rules(rules, device.clone(), recorded_ago), want, "policy {rules:?}, device {device}");
        }
    }

    // Each rule about a manifest alone, by its code: what breaks it and what does not.
    #[test]
    fn every_manifest_rule_reports_its_own_code() {
        let cases: [(&str, &str, &[Rule]); 11] = [
            ("{}\n", "", &[]),
            ("requireTicket: true\n", "", &[Rule::RequireTicket]),
            ("requireTicket: true\n", "  ticket: ' '\n", &[Rule::RequireTicket]),
            ("requireTicket: true\n", "  ticket: INC-1\n", &[]),
            ("ticketPattern: '^INC-[0-9]+$'\n", "  ticket: CHG-1\n", &[Rule::TicketPattern]),
            ("ticketPattern: '^INC-[0-9]+$'\n", "  ticket: INC-1\n", &[]),
            ("requireReason: true\n", "  reason: ' '\n", &[Rule::RequireReason]),
            ("requireRequestedBy: true\n", "", &[Rule::RequireRequestedBy]),
            ("requireReason: true\nrequireRequestedBy: true\n", "", &[Rule::RequireReason, Rule::RequireRequestedBy]),
            ("requireReason: true\nrequireRequestedBy: true\n", "  reason: why\n  requestedBy: bob\n", &[]),
            ("protectedDevices:\n  - { serialNumber: s1, reason: vip }\n", "", &[Rule::ProtectedDevices]),
        ];
        for (rules, meta, want) in cases {
            let found = policy(rules).check_manifests(&manifest(meta));
            let codes: Vec<Rule> = found.iter().map(|v| v.rule).collect();
            assert_eq!(codes, want, "policy {rules:?}, metadata {meta:?}");
            for v in &found {
                assert!(v.diagnostic.message.starts_with(&format!("policy {}: ", v.rule.code())), "{v:?}");
                assert_eq!(v.manifest.as_deref(), Some("m"), "a manifest's rule stops that manifest");
            }
        }
    }

    #[test]
    fn office_hours_edges_in_the_configured_time_zone() {
        // Berlin is UTC+1 in November.
        let p = policy(
            "changeWindows:\n  timeZone: Europe/Berlin\n  windows:\n    - { days: [mon, tue, wed, thu, fri], from: '08:00', to: '18:00' }\n",
        );
        assert!(p.check_window(at("2026-11-30T06:59:59Z")).is_err(), "Mon 07:59:59 Berlin");
        assert!(p.check_window(at("2026-11-30T07:00:00Z")).is_ok(), "Mon 08:00 Berlin: from is inclusive");
        assert!(p.check_window(at("2026-11-30T16:59:00Z")).is_ok(), "Mon 17:59 Berlin");
        assert!(p.check_window(at("2026-11-30T17:00:00Z")).is_err(), "Mon 18:00 Berlin: to is exclusive");
        assert!(p.check_window(at("2026-11-28T10:00:00Z")).is_err(), "Saturday");
        // The same instant is inside for Berlin and outside for New York (02:00 there).
        let ny = policy(
            "changeWindows:\n  timeZone: America/New_York\n  windows:\n    - { days: [mon], from: '08:00', to: '18:00' }\n",
        );
        assert!(ny.check_window(at("2026-11-30T07:00:00Z")).is_err());
        assert!(ny.check_window(at("2026-11-30T13:00:00Z")).is_ok());
    }

    #[test]
    fn a_refusal_says_when_the_next_window_opens() {
        let p = policy(
            "changeWindows:\n  timeZone: Europe/Berlin\n  windows:\n    - { days: [mon, tue, wed, thu, fri], from: '08:00', to: '18:00' }\n",
        );
        // Saturday 11:00 Berlin: the next window is Monday 08:00.
        let why = p.check_window(at("2026-11-28T10:00:00Z")).expect_err("outside");
        assert!(why.message.ends_with("the next opens Mon 2026-11-30 08:00"), "{}", why.message);
        // Monday 18:30: Tuesday 08:00.
        let why = p.check_window(at("2026-11-30T17:30:00Z")).expect_err("outside");
        assert!(why.message.ends_with("the next opens Tue 2026-12-01 08:00"), "{}", why.message);
    }

    #[test]
    fn overnight_windows_belong_to_the_day_they_start() {
        let p =
            policy("changeWindows:\n  timeZone: UTC\n  windows:\n    - { days: [fri], from: '22:00', to: '06:00' }\n");
        assert!(p.check_window(at("2026-11-27T21:59:00Z")).is_err(), "Fri 21:59");
        assert!(p.check_window(at("2026-11-27T22:00:00Z")).is_ok(), "Fri 22:00");
        assert!(p.check_window(at("2026-11-28T05:59:00Z")).is_ok(), "Sat 05:59");
        assert!(p.check_window(at("2026-11-28T06:00:00Z")).is_err(), "Sat 06:00");
        assert!(p.check_window(at("2026-11-29T01:00:00Z")).is_err(), "Sun 01:00 follows Saturday");
    }

    #[test]
    fn no_windows_means_always() {
        assert!(Policy::default().check_window(at("2026-11-28T03:00:00Z")).is_ok());
    }

    #[test]
    fn the_likely_rename_guard_is_on_by_default_and_configurable() {
        let now = at("2026-11-30T08:00:00Z");
        let day = std::time::Duration::from_secs(24 * 3600);
        assert_eq!(Policy::default().rename_guard(now), Some(RenameGuard { now, within: day }));
        let hour = std::time::Duration::from_secs(3600);
        assert_eq!(policy("likelyRename: { within: 1h }\n").rename_guard(now), Some(RenameGuard { now, within: hour }));
        assert_eq!(policy("likelyRename: { then: send }\n").rename_guard(now), None);
    }

    #[test]
    fn bad_policies_point_into_the_config() {
        let raw: RawPolicy = serde_saphyr::from_str(
            "maxActionsPerApply: 0\nticketPattern: '(['\ncooldown: 1d\nchangeWindows:\n  timeZone: Mars/Olympus\n  windows:\n    - { days: [mon], from: '25:00', to: '08:00' }\nprotectedDevices:\n  - { reason: no selector }\n",
        )
        .expect("yaml");
        let mut diags = Diagnostics::default();
        Policy::from_raw(raw, Path::new("reconcile.yaml"), &mut diags);
        let text: Vec<String> =
            diags.items().iter().map(|d| format!("{}:{}", d.pos.map_or(0, |p| p.line), d.message)).collect();
        for want in [
            "1:invalid policy.maxActionsPerApply",
            "2:invalid policy.ticketPattern",
            "3:policy.cooldown",
            "5:unknown time zone",
            "7:invalid time `25:00`",
            "9:a protected device needs exactly one",
        ] {
            assert!(text.iter().any(|t| t.starts_with(want)), "{want} in {text:?}");
        }
    }
}

//! The rules that judge manifests and plans: what the manifests alone break
//! ([`Policy::check_manifests`]), and what the plan's devices, the ledger and Intune's record of
//! outside resets break ([`Policy::review`]), one function per device rule.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::path::Path;

use crate::core::action::{ActionKind, SelectorKind};
use crate::core::device::Device;
use crate::core::device::Platform;
use crate::core::out_of_band::{AuditLog, Claims, OutOfBand};
use crate::core::plan::{BlockKind, Change, Plan, Violation};
use crate::diag::{Diagnostic, Pos};
use crate::duration::HumanDuration;
use crate::ledger::{Ledger, SentIndex};
use crate::manifest::Manifest;

use super::{OutOfBandThen, Policy, Protected};
use crate::core::violation::{Rule, found as violation};

/// The device's latest action of the `kind` made outside this tool since `since`, if Intune
/// shows one.
fn outside<'l>(
    kind: ActionKind,
    d: &crate::core::device::Device,
    audits: &AuditLog,
    claims: &dyn Fn() -> &'l Claims<'l>,
    since: jiff::Timestamp,
) -> Option<OutOfBand> {
    // Most devices have no recent action of the kind to look at: the ledger is indexed (once per
    // review) only when one has.
    let spec = kind.spec();
    let recent = d
        .device_action_results
        .iter()
        .any(|r| spec.is_reported_as(&r.action_name) && r.start_date_time.is_some_and(|t| t >= since));
    if !recent && !audits.has(spec, &d.id) {
        return None;
    }
    crate::core::out_of_band::latest(spec, d, audits, claims(), since)
}
impl Policy {
    /// What the manifests alone break: tickets, reasons, requesters, protected selectors.
    pub(crate) fn check_manifests(&self, manifests: &[Manifest]) -> Vec<Violation> {
        let mut all = Vec::new();
        for m in manifests {
            let mut out = Vec::new();
            let f = &m.file;
            let at = Some(m.name_pos);
            let ticket = m.ticket.as_ref().filter(|(t, _)| !t.trim().is_empty());
            match (ticket, self.require_ticket.first(), self.kind_requires_ticket(m.kind)) {
                (None, Some(rule), _) => out.push(violation(
                    f,
                    at,
                    Rule::RequireTicket,
                    format!("manifest `{}` has no metadata.ticket", m.name),
                    &rule.hint("add `ticket:` under `metadata:`"),
                )),
                (None, None, Some(rule)) => out.push(violation(
                    f,
                    at,
                    Rule::RequireTicket,
                    format!(
                        "manifest `{}` has no metadata.ticket, which every {} needs ({})",
                        m.name,
                        m.kind.spec().graph_name,
                        rule.describe()
                    ),
                    &rule.hint("add `ticket:` under `metadata:`"),
                )),
                (Some((t, pos)), _, _) => {
                    if let Some((_, pat, rule)) = self.ticket_pattern.iter().find(|(re, _, _)| !re.is_match(t)) {
                        out.push(violation(
                            f,
                            Some(*pos),
                            Rule::TicketPattern,
                            format!("ticket `{t}` does not match `{pat}`"),
                            &rule.hint("use a ticket id of the form the policy asks for"),
                        ));
                    }
                }
                _ => {}
            }
            // requireTicket's siblings: a metadata field that must be there and not blank.
            for (required, value, rule, key) in [
                (self.require_reason.first(), &m.reason, Rule::RequireReason, "reason"),
                (self.require_requested_by.first(), &m.requested_by, Rule::RequireRequestedBy, "requestedBy"),
            ] {
                if let Some(source) = required
                    && value.as_ref().is_none_or(|(v, _)| v.trim().is_empty())
                {
                    out.push(violation(
                        f,
                        at,
                        rule,
                        format!("manifest `{}` has no metadata.{key}", m.name),
                        &source.hint(&format!("add `{key}:` under `metadata:`")),
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
        let per_kind = self.kind_limits(&plan);
        plan.summary.violations += per_kind.len();
        plan.violations.extend(per_kind);
        if let Some((max, at)) = self.max_limit()
            && plan.summary.to_send > max as usize
        {
            plan.violations.push(Violation::of_repository(violation(
                &at.file,
                Some(at.pos),
                Rule::MaxActionsPerApply,
                format!("the plan resets {} devices, more than the limit of {max}", plan.summary.to_send),
                &at.hint(
                    "split the change across pull requests, or raise the limit in a reviewed change to reconcile.yaml",
                ),
            )));
            plan.summary.violations += 1;
        }
        plan.policy_change = self.change.clone();
        plan
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
        for e in plan.entries.iter_mut().filter(|e| e.change == Change::Send) {
            let Some(d) = e.device else { continue };
            let Some(o) = outside(e.kind(), d, audits, claims, since) else { continue };
            let seen = o.describe(now, e.kind().spec().wording.short);
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
    fn protected_violation(&self, file: &Path, pos: Pos, what: &str, p: &Protected) -> (Rule, Diagnostic) {
        violation(
            file,
            Some(pos),
            Rule::ProtectedDevices,
            format!("device {what} is protected ({}; listed at {})", p.reason, p.at.describe()),
            &p.at.hint("remove it from the manifest; protection is lifted only by a reviewed change to reconcile.yaml"),
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
        let mut planned: HashMap<(ActionKind, String), &crate::core::action::Action> = HashMap::new();
        let cooled = self.longest_kind_cooldown(plan.to_send().map(|e| e.kind())).is_some();
        let past = if cooled { SentIndex::new(ledger.records.values()) } else { SentIndex::default() };
        for e in plan.entries.iter().filter(|e| e.change == Change::Send) {
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

    /// `cooldown`: two manifests of one plan sending the same kind of action to one device; the
    /// first one keeps it. Actions of different kinds (a lock and lost mode) both go.
    fn cooldown_in_plan<'a>(
        &self,
        a: &'a crate::core::action::Action,
        device: Option<&Device>,
        planned: &mut HashMap<(ActionKind, String), &'a crate::core::action::Action>,
    ) -> Option<(Rule, Diagnostic)> {
        let (_, rule) = self.kind_cooldown(a.kind)?;
        let d = device?;
        let key = (a.kind, d.id.to_ascii_lowercase());
        match planned.get(&key) {
            Some(first) if first.manifest != a.manifest => Some(violation(
                &a.file,
                Some(a.pos),
                Rule::Cooldown,
                if a.kind == ActionKind::PasscodeReset {
                    format!("device {} is also reset by manifest `{}` in this plan", a.selector, first.manifest)
                } else {
                    format!(
                        "device {} is also sent a {} by manifest `{}` in this plan",
                        a.selector,
                        a.kind.spec().graph_name,
                        first.manifest
                    )
                },
                &rule.hint(&format!("{} it in one manifest only", a.kind.spec().wording.short)),
            )),
            Some(_) => None,
            None => {
                planned.insert(key, a);
                None
            }
        }
    }

    /// `protectedDevices`, by what the selector resolved to (the selector itself is checked with
    /// the manifests).
    fn protected_device(&self, a: &crate::core::action::Action, d: &Device) -> Option<(Rule, Diagnostic)> {
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
    fn platform(&self, a: &crate::core::action::Action, d: &Device) -> Option<(Rule, Diagnostic)> {
        let os = d.operating_system.clone().unwrap_or_default();
        let (_, rule) = self
            .allow_platforms
            .iter()
            .find(|(allowed, _)| Platform::of(&os).is_none_or(|pl| !allowed.contains(&pl)))?;
        Some({
            violation(
                &a.file,
                Some(a.pos),
                Rule::AllowPlatforms,
                format!(
                    "device {} runs {}, which the policy does not allow",
                    a.selector,
                    if os.is_empty() { "an unknown platform" } else { &os }
                ),
                &rule.hint("remove it from the manifest, or change policy.allowPlatforms in a reviewed change"),
            )
        })
    }

    /// `cooldown`: the ledger's last reset of the device, or one made outside this tool since.
    fn cooldown<'l>(
        &self,
        a: &crate::core::action::Action,
        device: Option<&Device>,
        past: &SentIndex<'_>,
        audits: &AuditLog,
        claims: &dyn Fn() -> &'l Claims<'l>,
        now: jiff::Timestamp,
    ) -> Option<(Rule, Diagnostic)> {
        let (cooldown, rule) = self.kind_cooldown(a.kind)?;
        let span = jiff::SignedDuration::try_from(cooldown).unwrap_or(jiff::SignedDuration::MAX);
        let recorded =
            past.last_of_kind(a, device.map(|d| d.id.as_str())).map(|(when, r)| (when, format!("`{}`", r.manifest)));
        let elsewhere = device
            .and_then(|d| outside(a.kind, d, audits, claims, now - span))
            .map(|o| (o.started_at, format!("{} outside reconcile", o.who())));
        let (when, by) = recorded.into_iter().chain(elsewhere).max_by_key(|(when, _)| *when)?;
        (now < when + span).then(|| {
            violation(
                &a.file,
                Some(a.pos),
                Rule::Cooldown,
                format!(
                    "device {} {} at {} by {by}; the {} cooldown{} lasts until {}",
                    a.selector,
                    if a.kind == ActionKind::PasscodeReset {
                        "was reset".to_owned()
                    } else {
                        format!("was sent a {}", a.kind.spec().graph_name)
                    },
                    crate::duration::at_second(when),
                    HumanDuration(cooldown),
                    match rule {
                        super::kinds::Source::Class(c) => format!(" of {} actions (built in)", c.as_str()),
                        super::kinds::Source::Written(_) => String::new(),
                    },
                    crate::duration::at_second(when + span)
                ),
                &rule.hint("wait until then, or remove the device from the manifest"),
            )
        })
    }
}

//! Versioned JSON output. Consumers branch on `format_version`; fields are only ever added.

use std::io::{self, Write};

use serde::Serialize;

use super::PlanContext;
use crate::plan::{Entry, Plan};

/// Bumped only when a field changes meaning or disappears.
pub(crate) const FORMAT_VERSION: u32 = 1;

#[derive(Serialize)]
struct PlanDto<'a> {
    format_version: u32,
    /// What the change does to the policy, and where the rules in effect come from.
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<&'a crate::violation::PolicyChange>,
    offline: bool,
    simulated: bool,
    summary: SummaryDto,
    actions: Vec<EntryDto<'a>>,
    violations: Vec<ViolationDto<'a>>,
    /// Ticket, reason and requester of each manifest, by name.
    manifests: &'a std::collections::BTreeMap<String, crate::manifest::ManifestInfo>,
    /// `plan --base`: the counts of what lies outside the change.
    #[serde(skip_serializing_if = "Option::is_none")]
    outside: Option<SummaryDto>,
}

#[derive(Serialize)]
struct ViolationDto<'a> {
    /// The manifest it stops, or `null` for a rule of the repository (the run stops).
    manifest: Option<&'a str>,
    /// The rule's code: its key under `policy:` (`cooldown`, `requireTicket`, …).
    rule: &'static str,
    file: Option<String>,
    line: Option<u32>,
    column: Option<u32>,
    message: &'a str,
    hint: Option<&'a str>,
}

#[derive(Serialize)]
struct SummaryDto {
    /// Every reset to send: `reset_passcode` + `remove_passcode`.
    to_reset: usize,
    /// Of `to_reset`, those that set a new passcode.
    reset_passcode: usize,
    /// Of `to_reset`, those that remove the passcode (corporate iOS/iPadOS).
    remove_passcode: usize,
    already_done: usize,
    orphaned: usize,
    attention: usize,
    blocked: usize,
    same_device: usize,
    adopt: usize,
    violations: usize,
}

impl From<crate::plan::Summary> for SummaryDto {
    fn from(s: crate::plan::Summary) -> Self {
        SummaryDto {
            to_reset: s.to_reset,
            reset_passcode: super::resets_and_removals(&s).0,
            remove_passcode: s.to_remove,
            already_done: s.already_done,
            orphaned: s.orphaned,
            attention: s.attention,
            blocked: s.blocked,
            same_device: s.same_device,
            adopt: s.adopt,
            violations: s.violations,
        }
    }
}

#[derive(Serialize)]
struct EntryDto<'a> {
    key: &'a str,
    change: &'static str,
    /// `reset-passcode`, or `remove-passcode` on corporate iOS/iPadOS.
    action: &'static str,
    manifest: &'a str,
    file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u32>,
    round: u32,
    collection: &'static str,
    selector: SelectorDto<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    managed_device_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<DeviceDto<'a>>,
    reason: &'a str,
    /// Why a blocked action is blocked (`not-found`, `policy`, `likely-rename`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    block: Option<&'static str>,
    /// The former manifest name its record was made under (`formerNames`).
    #[serde(skip_serializing_if = "Option::is_none")]
    recorded_as: Option<&'a str>,
    /// The device's latest reset made outside this tool (`policy.outOfBand`): when it started,
    /// its state, who started it, the audit entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    out_of_band: Option<&'a crate::out_of_band::OutOfBand>,
}

/// What a plan shows of a device: nothing personal the manifest did not name, but the primary
/// user when the plan was made to show it.
#[derive(Serialize)]
struct DeviceDto<'a> {
    id: &'a str,
    name: Option<&'a str>,
    operating_system: Option<&'a str>,
    os_version: Option<&'a str>,
    owner_type: Option<&'a str>,
    last_sync: Option<&'a str>,
    /// The primary user's UPN, only when the plan was made to show it (`plan.showUser`): `null`
    /// for a device without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    user_principal_name: Option<Option<&'a str>>,
}

impl<'a> From<&'a crate::device::Device> for DeviceDto<'a> {
    fn from(d: &'a crate::device::Device) -> Self {
        DeviceDto {
            id: &d.id,
            name: d.device_name.as_deref(),
            operating_system: d.operating_system.as_deref(),
            os_version: d.os_version.as_deref(),
            owner_type: d.managed_device_owner_type.as_deref(),
            last_sync: d.last_sync_date_time.as_deref(),
            user_principal_name: d.user_principal_name.as_ref().map(|_| super::device_user(d)),
        }
    }
}

#[derive(Serialize)]
pub(super) struct SelectorDto<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub value: &'a str,
}

fn entry<'a>(e: &'a Entry<'_>) -> EntryDto<'a> {
    let crate::plan::Origin { file, line, round, collection } = e.origin();
    let selector = e.selector();
    EntryDto {
        key: e.key().as_str(),
        change: e.change.as_str(),
        action: if super::action_verb(e).starts_with("remove") { "remove-passcode" } else { "reset-passcode" },
        manifest: e.manifest(),
        file,
        line,
        round,
        collection: collection.as_str(),
        selector: SelectorDto { kind: selector.kind.as_str(), value: &selector.value },
        status: e.record.map(|r| r.status.as_str()),
        managed_device_id: e.device.map(|d| d.id.as_str()).or(e.record.and_then(|r| r.managed_device_id.as_deref())),
        device: e.device.map(DeviceDto::from),
        reason: &e.reason,
        block: e.block.map(crate::plan::BlockKind::as_str),
        recorded_as: e.recorded_as(),
        out_of_band: e.out_of_band.as_ref(),
    }
}

pub(crate) fn plan(out: &mut impl Write, plan: &Plan, ctx: PlanContext) -> io::Result<()> {
    let dto = PlanDto {
        format_version: FORMAT_VERSION,
        policy: plan.policy_change.as_ref().filter(|c| c.is_worth_showing()),
        offline: ctx.offline,
        simulated: ctx.simulated,
        summary: plan.summary.into(),
        actions: plan.entries.iter().map(entry).collect(),
        manifests: &plan.manifests,
        outside: plan.outside.map(SummaryDto::from),
        violations: plan
            .violations
            .iter()
            .map(|sv| (sv.manifest.as_deref(), sv.rule, &sv.diagnostic))
            .map(|(manifest, rule, v)| ViolationDto {
                manifest,
                rule: rule.code(),
                file: v.file.as_ref().map(|f| f.display().to_string()),
                line: v.pos.map(|p| p.line),
                column: v.pos.map(|p| p.column),
                message: &v.message,
                hint: v.hint.as_deref(),
            })
            .collect(),
    };
    crate::safe::write_json(&mut *out, &dto)?;
    writeln!(out)
}

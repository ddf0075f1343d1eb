//! Versioned JSON output. Consumers branch on `format_version`; fields are only ever added.
//!
//! One vocabulary for plans, saved plans and apply reports (docs/contract.md, JSON): field names
//! in snake_case, a selector as `{"type", "value"}` ([`crate::core::action::SelectorJson`]), a summary
//! as [`crate::core::plan::SummaryJson`], a manifest's facts as [`crate::manifest::ManifestJson`].

use std::io::{self, Write};

use serde::Serialize;

use super::PlanContext;
use crate::core::action::ActionKind;
use crate::core::plan::{Entry, Plan};

/// Bumped only when a field changes meaning or disappears: plans and apply reports. 2: one
/// vocabulary (`manifests.*.requested_by`, the report's selectors as objects).
pub(crate) const FORMAT_VERSION: u32 = 2;

#[derive(Serialize)]
struct PlanDto<'a> {
    format_version: u32,
    /// What the change does to the policy, and where the rules in effect come from.
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<&'a crate::core::violation::PolicyChange>,
    offline: bool,
    simulated: bool,
    summary: crate::core::plan::SummaryJson,
    /// The actions to send by kind, destructive kinds first (`summary.to_reset` counts every
    /// action to send, of any kind, as it did when resets were the only kind).
    kinds: Vec<KindDto>,
    /// What the destructive actions take from their devices, one sentence per kind and
    /// parameters: the plan's confirmation lines.
    destructive: Vec<String>,
    actions: Entries<'a>,
    violations: Vec<ViolationDto<'a>>,
    /// Ticket, reason and requester of each manifest, by name.
    manifests: std::collections::BTreeMap<&'a str, crate::manifest::ManifestJson>,
    /// `plan --base`: the counts of what lies outside the change.
    #[serde(skip_serializing_if = "Option::is_none")]
    outside: Option<crate::core::plan::SummaryJson>,
}

/// The plan's entries, each made into its [`EntryDto`] as it is written: 20,000 of them are
/// never all in memory at once.
struct Entries<'a>(&'a [Entry<'a>]);

impl Serialize for Entries<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(entry))
    }
}

#[derive(Serialize)]
struct KindDto {
    /// `PasscodeReset`, or the Graph name of the action.
    kind: &'static str,
    /// `destructive`, `disruptive` or `harmless`.
    class: &'static str,
    to_send: usize,
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
struct EntryDto<'a> {
    key: &'a str,
    change: &'static str,
    /// `reset-passcode`, or `remove-passcode` on corporate iOS/iPadOS; another kind's Graph name
    /// (`wipe`).
    action: &'static str,
    /// The kind of action: `PasscodeReset`, or the Graph name of any other.
    kind: &'static str,
    /// The action's parameters, when its kind takes some.
    #[serde(skip_serializing_if = "crate::core::action::Parameters::is_empty")]
    parameters: &'a crate::core::action::Parameters,
    manifest: &'a str,
    file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u32>,
    round: u32,
    collection: &'static str,
    selector: crate::core::action::SelectorJson,
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
    out_of_band: Option<&'a crate::core::out_of_band::OutOfBand>,
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

impl<'a> From<&'a crate::core::device::Device> for DeviceDto<'a> {
    fn from(d: &'a crate::core::device::Device) -> Self {
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

fn entry<'a>(e: &'a Entry<'_>) -> EntryDto<'a> {
    let crate::core::plan::Origin { file, line, round, collection } = e.origin();
    let selector = e.selector();
    EntryDto {
        key: e.key().as_str(),
        change: e.change.as_str(),
        action: match e.kind() {
            ActionKind::PasscodeReset if e.effect().is_some_and(|v| v.starts_with("remove")) => "remove-passcode",
            ActionKind::PasscodeReset => "reset-passcode",
            other => other.spec().graph_name,
        },
        kind: e.kind().as_str(),
        parameters: e.parameters(),
        manifest: e.manifest(),
        file,
        line,
        round,
        collection: collection.as_str(),
        selector: selector.into(),
        status: e.record.map(|r| r.status.as_str()),
        managed_device_id: e.device.map(|d| d.id.as_str()).or(e.record.and_then(|r| r.managed_device_id.as_deref())),
        device: e.device.map(DeviceDto::from),
        reason: &e.reason,
        block: e.block.map(crate::core::plan::BlockKind::as_str),
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
        kinds: super::kinds_to_send(plan)
            .into_iter()
            .map(|(k, n)| KindDto { kind: k.as_str(), class: k.spec().class.as_str(), to_send: n })
            .collect(),
        destructive: super::destructive_lines(plan),
        actions: Entries(&plan.entries),
        manifests: plan.manifests.iter().map(|(name, info)| (name.as_str(), info.into())).collect(),
        outside: plan.outside.map(Into::into),
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
    crate::diag::safe::write_json(&mut *out, &dto)?;
    writeln!(out)
}

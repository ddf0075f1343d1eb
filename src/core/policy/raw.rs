//! The `policy:` section as written in `reconcile.yaml` (serde and JSON Schema types, with
//! spans for diagnostics); [`super::Policy::from_raw`] validates it.

use std::collections::HashMap;
use std::time::Duration;

use jiff::civil::Weekday;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::core::device::Platform;

/// The `policy:` section as written.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawPolicy {
    /// The blast radius: a plan with more resets than this is refused. Split the change, or raise
    /// the limit in a reviewed change to this file.
    #[schemars(with = "Option<u32>", range(min = 1))]
    pub max_actions_per_apply: Option<Spanned<i64>>,
    /// Every manifest must have `metadata.ticket`.
    pub require_ticket: Option<bool>,
    /// A regular expression every `metadata.ticket` must match, anywhere in the ticket unless
    /// anchored (e.g. `^(INC|SEC)-[0-9]+$`).
    #[schemars(with = "Option<String>")]
    pub ticket_pattern: Option<Spanned<String>>,
    /// Every manifest must have `metadata.reason`.
    pub require_reason: Option<bool>,
    /// Every manifest must have `metadata.requestedBy`.
    pub require_requested_by: Option<bool>,
    /// Only devices of these platforms may be reset (e.g. `[android, aosp]` to forbid iOS
    /// passcode removal).
    #[schemars(with = "Option<Vec<Platform>>")]
    pub allow_platforms: Option<Spanned<Vec<Platform>>>,
    /// Devices that must never be touched, each with a reason.
    #[schemars(with = "Option<Vec<RawProtected>>")]
    pub protected_devices: Option<Vec<Spanned<RawProtected>>>,
    /// No second reset of the same device within this duration (e.g. `24h`), across manifests
    /// and rounds, judged from the ledger's history.
    #[schemars(with = "Option<String>", regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub cooldown: Option<Spanned<String>>,
    /// The oldest saved plan `apply --plan` executes (e.g. `72h`): an older one is refused with
    /// its age, to be planned and reviewed again. Default: no limit.
    #[schemars(with = "Option<String>", regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub plan_max_age: Option<Spanned<String>>,
    /// When `apply` may run; outside, it refuses unless `--ignore-change-windows --reason "…"`.
    pub change_windows: Option<RawWindows>,
    /// A new action for a device that an orphaned action (a manifest no longer there) reset
    /// within `within` is most likely a renamed manifest: `block` it (default, within 24h) until
    /// `formerNames` or a higher `round` says what is meant, or `send` it.
    pub likely_rename: Option<RawLikelyRename>,
    /// A device reset outside this tool (the Intune portal, a script) within `within` (default
    /// `24h`): `adopt` that reset as the action's (default: recorded as done with Intune's
    /// evidence, nothing sent), `block` the action, or `send` it anyway with a warning.
    pub out_of_band: Option<RawOutOfBand>,
    /// Rules for one kind of action, by its Graph name (`wipe`, `remoteLock`, `resetPasscode`):
    /// each tightens the kind's built-in class defaults and counts only that kind's actions.
    #[serde(default)]
    #[schemars(schema_with = "kinds_schema")]
    pub kinds: Option<HashMap<Spanned<String>, Spanned<RawKindPolicy>>>,
}

/// `policy.kinds.<graphName>`: the rules of one kind of action.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawKindPolicy {
    /// The most actions of this kind one apply may send.
    #[schemars(with = "Option<u32>", range(min = 1))]
    pub max_actions_per_apply: Option<Spanned<i64>>,
    /// Every manifest of this kind must have `metadata.ticket` (always so for a destructive kind).
    #[schemars(with = "Option<bool>")]
    pub require_ticket: Option<Spanned<bool>>,
    /// No second action of this kind on the same device within this duration (e.g. `72h`).
    #[schemars(with = "Option<String>", regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub cooldown: Option<Spanned<String>>,
}

/// The schema of `policy.kinds`: one optional property per kind of action, by its Graph name, so
/// editors complete them and a misspelt one is flagged.
fn kinds_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let rules = serde_json::to_value(generator.subschema_for::<RawKindPolicy>()).expect("a schema serializes");
    let properties: serde_json::Map<String, serde_json::Value> =
        crate::core::kinds::ALL.iter().map(|k| (k.spec().graph_name.to_owned(), rules.clone())).collect();
    schemars::json_schema!({ "type": "object", "additionalProperties": false, "properties": properties })
}

/// `policy.outOfBand`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutOfBand {
    /// How far back a reset made outside this tool counts (default `24h`).
    #[schemars(with = "Option<String>", regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub within: Option<Spanned<String>>,
    /// `adopt` (default), `block` or `send`.
    pub then: Option<OutOfBandThen>,
}

/// What to do with an action whose device was reset outside this tool lately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OutOfBandThen {
    Adopt,
    Block,
    Send,
}

/// The default of `policy.outOfBand.within`.
pub(crate) const OUT_OF_BAND_WITHIN: Duration = Duration::from_secs(24 * 3600);

/// `policy.likelyRename`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLikelyRename {
    /// How far back an orphaned reset counts (default `24h`).
    #[schemars(with = "Option<String>", regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub within: Option<Spanned<String>>,
    /// `block` (default) or `send`.
    pub then: Option<RenameThen>,
}

/// What to do with a likely rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RenameThen {
    Block,
    Send,
}

/// The default of `policy.likelyRename.within`.
pub(crate) const RENAME_WITHIN: Duration = Duration::from_secs(24 * 3600);

/// A protected device: exactly one of `id`, `serialNumber`, `deviceName`, and a reason.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawProtected {
    pub id: Option<String>,
    pub serial_number: Option<String>,
    pub device_name: Option<String>,
    /// Why it is protected; shown to whoever tries.
    pub reason: String,
}

/// Change windows in one time zone.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawWindows {
    /// An IANA time zone, e.g. `Europe/Berlin`.
    #[schemars(with = "String")]
    pub time_zone: Spanned<String>,
    pub windows: Vec<RawWindow>,
}

/// Days and hours: `from` inclusive, `to` exclusive; `to` before `from` runs past midnight.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWindow {
    pub days: Vec<Day>,
    /// `HH:MM`
    #[schemars(with = "String", regex(pattern = r"^[0-2][0-9]:[0-5][0-9]$"))]
    pub from: Spanned<String>,
    /// `HH:MM` (`24:00` for the end of the day)
    #[schemars(with = "String", regex(pattern = r"^[0-2][0-9]:[0-5][0-9]$"))]
    pub to: Spanned<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Day {
    pub(super) fn weekday(self) -> Weekday {
        match self {
            Day::Mon => Weekday::Monday,
            Day::Tue => Weekday::Tuesday,
            Day::Wed => Weekday::Wednesday,
            Day::Thu => Weekday::Thursday,
            Day::Fri => Weekday::Friday,
            Day::Sat => Weekday::Saturday,
            Day::Sun => Weekday::Sunday,
        }
    }
}

//! The manifest as written: serde types with `deny_unknown_fields` and a span on every value.
//!
//! These types are the single source of the JSON Schema (`reconcile schema`); everything a schema
//! cannot say (GUID shape, uniqueness, one selector per entry) is checked in [`super::validate`].

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::core::action::Collection;

/// A request for one of Intune's remote actions on the listed Intune-managed devices:
/// `PasscodeReset`, or `DeviceAction` with the action in `spec.action`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "intune-reconcile manifest")]
pub(crate) struct RawManifest {
    /// Always `intune-reconcile/v1`.
    #[schemars(with = "String", extend("const" = "intune-reconcile/v1"))]
    pub api_version: Spanned<String>,
    /// `PasscodeReset`, or `DeviceAction` (any of Intune's remote actions, named in `spec.action`).
    #[schemars(with = "String", extend("enum" = ["PasscodeReset", "DeviceAction"]))]
    pub kind: Spanned<String>,
    pub metadata: RawMetadata,
    pub spec: RawSpec,
}

/// Who asks and why. Only `name` identifies the request; the rest is for reviewers and policy.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawMetadata {
    /// Unique across all manifests: lowercase letters, digits and `-`, 1 to 63 characters.
    /// Renaming a manifest creates new actions.
    #[schemars(with = "String", regex(pattern = r"^[a-z0-9-]{1,63}$"))]
    pub name: Spanned<String>,
    /// The ticket this request belongs to (e.g. `INC-4711`). Editing it never re-sends a reset.
    #[schemars(with = "Option<String>")]
    pub ticket: Option<Spanned<String>>,
    /// Why the reset is needed. Editing it never re-sends a reset.
    #[schemars(with = "Option<String>")]
    pub reason: Option<Spanned<String>>,
    /// Who asked (e.g. an e-mail address). Editing it never re-sends a reset.
    #[schemars(with = "Option<String>")]
    pub requested_by: Option<Spanned<String>>,
    /// Names this manifest had before (like Terraform's `moved`): what was recorded under them
    /// counts as this manifest's, so a rename resets nothing again.
    #[schemars(with = "Option<Vec<String>>", inner(regex(pattern = r"^[a-z0-9-]{1,63}$")))]
    pub former_names: Option<Spanned<Vec<Spanned<String>>>>,
}

/// What to do, to which devices.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawSpec {
    /// `DeviceAction` only: Graph's name of the action (`remoteLock`, `wipe`, …).
    #[schemars(with = "Option<String>")]
    pub action: Option<Spanned<String>>,
    /// `DeviceAction` only: the action's parameters, for the actions that take a body (`wipe`:
    /// `keepEnrollmentData`, `keepUserData`, `persistEsimDataPlan`). Part of the action's
    /// identity: changing one makes a new action.
    #[schemars(with = "Option<std::collections::BTreeMap<String, serde_json::Value>>")]
    pub parameters: Option<Spanned<std::collections::BTreeMap<String, Spanned<RawParam>>>>,
    /// Bump it to reset the same devices again. Default 1.
    #[schemars(with = "Option<u32>", range(min = 1))]
    pub round: Option<Spanned<Round>>,
    /// `managedDevices` (default) or `comanagedDevices` (beta API only).
    #[schemars(with = "Option<Collection>")]
    pub collection: Option<Spanned<Collection>>,
    /// At least one device, each named by exactly one selector.
    #[schemars(with = "Vec<RawDevice>", length(min = 1))]
    pub devices: Spanned<Vec<Spanned<RawDevice>>>,
}

/// One device, named by exactly one of `id`, `serialNumber`, `deviceName` or `imei`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
pub(crate) struct RawDevice {
    /// The Intune managedDevice id (a GUID; case does not matter).
    #[schemars(
        with = "Option<String>",
        regex(pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
    )]
    pub id: Option<Spanned<String>>,
    /// The serial number on the device's sticker.
    #[schemars(with = "Option<String>")]
    pub serial_number: Option<Spanned<String>>,
    /// The device name as Intune shows it.
    #[schemars(with = "Option<String>")]
    pub device_name: Option<Spanned<String>>,
    /// The IMEI, digits only (quote it so YAML keeps it a string).
    #[schemars(with = "Option<String>", regex(pattern = r"^[0-9]{14,16}$"))]
    pub imei: Option<Spanned<String>>,
}

/// `spec.round` as written: a YAML integer. A quoted `"2"` is a string, which is a wrong
/// type (docs/contract.md, Manifests) (serde-saphyr would read it as 2); a float, a list or a map is one too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Round(pub i64);

impl<'de> Deserialize<'de> for Round {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Integer;
        impl serde::de::Visitor<'_> for Integer {
            type Value = Round;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("spec.round as a whole number from 1, unquoted")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Round, E> {
                Ok(Round(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Round, E> {
                i64::try_from(v).map(Round).map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
        }
        d.deserialize_any(Integer)
    }
}

/// A parameter's value as written: only a Boolean or a string is ever right, the rest is kept to
/// be named in the error.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RawParam {
    Bool(bool),
    Text(String),
    /// A number, list, map or null: the kind of thing written.
    Other(&'static str),
}

impl<'de> Deserialize<'de> for RawParam {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Any;
        impl<'de> serde::de::Visitor<'de> for Any {
            type Value = RawParam;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a Boolean or a string")
            }
            fn visit_bool<E>(self, v: bool) -> Result<RawParam, E> {
                Ok(RawParam::Bool(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<RawParam, E> {
                Ok(RawParam::Text(v.to_owned()))
            }
            fn visit_i64<E>(self, _: i64) -> Result<RawParam, E> {
                Ok(RawParam::Other("a number"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<RawParam, E> {
                Ok(RawParam::Other("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<RawParam, E> {
                Ok(RawParam::Other("a number"))
            }
            fn visit_unit<E>(self) -> Result<RawParam, E> {
                Ok(RawParam::Other("null"))
            }
            fn visit_none<E>(self) -> Result<RawParam, E> {
                Ok(RawParam::Other("null"))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawParam, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(RawParam::Other("a list"))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RawParam, A::Error> {
                while map.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
                Ok(RawParam::Other("a map"))
            }
        }
        d.deserialize_any(Any)
    }
}

//! Actions and their identity.
//!
//! An [`Action`] is one (manifest, device entry) pair. Its [`ActionKey`] is the lowercase hex
//! SHA-256 of a canonical form of exactly the fields that identify it, so cosmetic edits never
//! create a new action and never re-send a reset.
//!
//! # Canonical form (stable across releases)
//!
//! The key hashes the compact JSON array
//!
//! ```text
//! ["intune-reconcile/action/v1","PasscodeReset",<metadata.name>,<round>,<collection>,<selector kind>,<normalized value>]
//! ```
//!
//! serialized by `serde_json` (no whitespace; strings JSON-escaped, so the form is unambiguous).
//! Selector kinds are `id`, `serialNumber`, `deviceName` and `imei`; values are normalized as
//! [`Selector::normalized`] documents. Example: `inc-4711-lost-phone`, round 1, managedDevices,
//! `id: 3FA85F64-5717-4562-B3FC-2C963F66AFA6` hashes
//! `["intune-reconcile/action/v1","PasscodeReset","inc-4711-lost-phone",1,"managedDevices","id","3fa85f64-5717-4562-b3fc-2c963f66afa6"]`.
//!
//! Every other kind (`DeviceAction` manifests) names itself by its Graph action and appends its
//! parameters, every one with its default filled in, as a JSON object with sorted keys:
//!
//! ```text
//! ["intune-reconcile/action/v1","wipe",<metadata.name>,<round>,<collection>,<selector kind>,<normalized value>,{"keepEnrollmentData":false,"keepUserData":true,"persistEsimDataPlan":false}]
//! ```
//!
//! (`{}` for a kind without parameters). A `DeviceAction` manifest with `action: resetPasscode` is
//! a `PasscodeReset`: same kind, same key.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::core::kinds::{ActionKind, ParamValue, Parameters};
use crate::diag::Pos;

/// The version tag inside the canonical form; bump only with a ledger migration.
const CANONICAL_TAG: &str = "intune-reconcile/action/v1";

/// Which Graph collection the device lives in (and so which URL the POST goes to).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Collection {
    /// `deviceManagement/managedDevices` (v1.0 and beta).
    #[default]
    ManagedDevices,
    /// `deviceManagement/comanagedDevices` (beta API only).
    ComanagedDevices,
}

impl Collection {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Collection::ManagedDevices => "managedDevices",
            Collection::ComanagedDevices => "comanagedDevices",
        }
    }
}

/// How a manifest names a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SelectorKind {
    Id,
    SerialNumber,
    DeviceName,
    Imei,
}

impl SelectorKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SelectorKind::Id => "id",
            SelectorKind::SerialNumber => "serialNumber",
            SelectorKind::DeviceName => "deviceName",
            SelectorKind::Imei => "imei",
        }
    }
}

/// A validated device selector: the kind and the value as the author wrote it (trimmed).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Selector {
    pub kind: SelectorKind,
    pub value: String,
}

/// A selector in the JSON of plans, saved plans and apply reports (docs/contract.md, JSON):
/// `{"type": "serialNumber", "value": "R58M12345AB"}`. Saved plans of format 1 wrote `kind`,
/// which is still read. The ledger keeps its own form ([`Selector`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SelectorJson {
    #[serde(rename = "type", alias = "kind")]
    pub kind: SelectorKind,
    pub value: String,
}

impl From<&Selector> for SelectorJson {
    fn from(s: &Selector) -> Self {
        SelectorJson { kind: s.kind, value: s.value.clone() }
    }
}

impl From<SelectorJson> for Selector {
    fn from(s: SelectorJson) -> Self {
        Selector { kind: s.kind, value: s.value }
    }
}

impl Selector {
    /// The value as it enters the action key and duplicate detection.
    ///
    /// - `id`: lowercase (GUIDs compare case-insensitively);
    /// - `serialNumber`, `deviceName`: lowercase, because Intune matches them case-insensitively
    ///   and a change of case in a manifest must not reset the device a second time;
    /// - `imei`: as written (validation has already reduced it to digits).
    pub(crate) fn normalized(&self) -> String {
        match self.kind {
            SelectorKind::Id | SelectorKind::SerialNumber | SelectorKind::DeviceName => self.value.to_lowercase(),
            SelectorKind::Imei => self.value.clone(),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Selector values are written by other people: shown escaped, never raw.
        write!(f, "{}={}", self.kind.as_str(), crate::diag::safe::text(&self.value))
    }
}

/// Feeds everything written into a SHA-256.
pub(crate) struct HashWriter(pub(crate) Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Lowercase hex SHA-256 of an action's canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ActionKey(String);

/// What a key prefix (as people copy it from a plan: 4 or more hex digits) picks out of a list.
#[derive(Debug)]
pub(crate) enum KeyMatch<'a, T> {
    /// Fewer than 4 characters: too likely to match by accident.
    TooShort,
    One(&'a T),
    None,
    Many(Vec<&'a T>),
}

/// The items whose key (`key_of`) starts with `prefix`, trimmed and lower-cased (also returned).
pub(crate) fn match_key_prefix<'a, T>(
    items: impl IntoIterator<Item = &'a T>,
    key_of: impl Fn(&T) -> &ActionKey,
    prefix: &str,
) -> (String, KeyMatch<'a, T>) {
    let prefix = prefix.trim().to_ascii_lowercase();
    if prefix.len() < 4 {
        return (prefix, KeyMatch::TooShort);
    }
    let mut hits: Vec<&T> = items.into_iter().filter(|t| key_of(t).as_str().starts_with(&prefix)).collect();
    let found = match hits.len() {
        0 => KeyMatch::None,
        1 => KeyMatch::One(hits.remove(0)),
        _ => KeyMatch::Many(hits),
    };
    (prefix, found)
}

impl ActionKey {
    /// Computes the key from the identifying fields; see the module docs for the form.
    pub fn compute(
        kind: ActionKind,
        parameters: &Parameters,
        name: &str,
        round: u32,
        collection: Collection,
        selector: &Selector,
    ) -> Self {
        // A tuple serializes as a JSON array: the canonical form, streamed into the hash.
        let head = (CANONICAL_TAG, kind.as_str(), name, round, collection.as_str(), selector.kind.as_str());
        let value = selector.normalized();
        let mut hasher = HashWriter(Sha256::new());
        let written = if kind == ActionKind::PasscodeReset {
            // The form resets have always had: every key in every ledger depends on it.
            serde_json::to_writer(&mut hasher, &(head.0, head.1, head.2, head.3, head.4, head.5, value))
        } else {
            serde_json::to_writer(&mut hasher, &(head.0, head.1, head.2, head.3, head.4, head.5, value, parameters))
        };
        written.expect("hashing into memory cannot fail");
        ActionKey(hex::encode(hasher.0.finalize()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, as shown in plans (like a short git hash).
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl fmt::Display for ActionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One requested remote action on one device, as read from a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub key: ActionKey,
    /// The manifest's `formerNames`, and the keys this action had under them: records made
    /// under them are this action's.
    pub former_names: Vec<String>,
    pub former_keys: Vec<ActionKey>,
    pub kind: ActionKind,
    /// `spec.parameters`, defaults filled in (empty for a kind without a body).
    pub parameters: Parameters,
    /// `metadata.name` of the manifest.
    pub manifest: String,
    /// The manifest file, as found (relative to the working directory when it was given so).
    pub file: PathBuf,
    /// Where the device entry stands in the file.
    pub pos: Pos,
    pub round: u32,
    pub collection: Collection,
    pub selector: Selector,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, round: u32, collection: Collection, kind: SelectorKind, value: &str) -> String {
        let selector = Selector { kind, value: value.to_owned() };
        ActionKey::compute(ActionKind::PasscodeReset, &Default::default(), name, round, collection, &selector).0
    }

    // These keys are a compatibility contract with every ledger ever written: if this test fails,
    // a release would re-send resets that were already executed. The values were computed
    // independently with `printf '%s' '<canonical form>' | sha256sum`.
    #[test]
    fn known_keys_are_pinned() {
        let cases = [
            (
                key(
                    "inc-4711-lost-phone",
                    1,
                    Collection::ManagedDevices,
                    SelectorKind::Id,
                    "3fa85f64-5717-4562-b3fc-2c963f66afa6",
                ),
                "6586dc0f5220ace6099c2b3cd4a3aaf52a55c32121d286d31735e038fa11a15d",
            ),
            (
                key("inc-4711-lost-phone", 1, Collection::ManagedDevices, SelectorKind::SerialNumber, "R58M12345AB"),
                "8cd1e2afa0ceb547a3d1b695bcc326485f4e20990299b862bf8721fd86ff6db9",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn canonical_form_is_the_documented_json_array() {
        let s = Selector { kind: SelectorKind::Id, value: "3FA85F64-5717-4562-B3FC-2C963F66AFA6".into() };
        let want = r#"["intune-reconcile/action/v1","PasscodeReset","inc-4711-lost-phone",1,"managedDevices","id","3fa85f64-5717-4562-b3fc-2c963f66afa6"]"#;
        let got = ActionKey::compute(
            ActionKind::PasscodeReset,
            &Default::default(),
            "inc-4711-lost-phone",
            1,
            Collection::ManagedDevices,
            &s,
        );
        assert_eq!(got.0, hex::encode(Sha256::digest(want.as_bytes())));
    }

    // Keys of the other kinds are a contract too: the canonical form with the kind's Graph name
    // and its parameters, every default filled in, as the module documents.
    #[test]
    fn other_kinds_hash_their_graph_name_and_parameters() {
        let s = Selector { kind: SelectorKind::SerialNumber, value: "C02X1".into() };
        let wipe = |keep_user: bool| {
            let p = ActionKind::Wipe.spec().with_defaults(Parameters(
                [("keepUserData".to_owned(), ParamValue::Bool(keep_user))].into_iter().collect(),
            ));
            ActionKey::compute(ActionKind::Wipe, &p, "inc-9-stolen", 1, Collection::ManagedDevices, &s)
        };
        let want = r#"["intune-reconcile/action/v1","wipe","inc-9-stolen",1,"managedDevices","serialNumber","c02x1",{"keepEnrollmentData":false,"keepUserData":true,"persistEsimDataPlan":false}]"#;
        assert_eq!(wipe(true).0, hex::encode(Sha256::digest(want.as_bytes())));
        assert_ne!(wipe(true), wipe(false), "a parameter is part of the identity");
        let lock = ActionKey::compute(
            ActionKind::RemoteLock,
            &Parameters::default(),
            "inc-9-stolen",
            1,
            Collection::ManagedDevices,
            &s,
        );
        let want = r#"["intune-reconcile/action/v1","remoteLock","inc-9-stolen",1,"managedDevices","serialNumber","c02x1",{}]"#;
        assert_eq!(lock.0, hex::encode(Sha256::digest(want.as_bytes())));
        assert_eq!(ActionKind::from_graph_name("resetPasscode"), Some(ActionKind::PasscodeReset), "one kind, one key");
        for kind in crate::core::kinds::ALL {
            assert_eq!(ActionKind::from_name(kind.as_str()), Some(kind), "{kind:?} reads back");
            let json = serde_json::to_string(&kind).expect("json");
            assert_eq!(serde_json::from_str::<ActionKind>(&json).expect("read"), kind);
        }
    }

    #[test]
    fn identifying_fields_change_the_key() {
        let base = key("a", 1, Collection::ManagedDevices, SelectorKind::SerialNumber, "X1");
        assert_ne!(base, key("b", 1, Collection::ManagedDevices, SelectorKind::SerialNumber, "X1"));
        assert_ne!(base, key("a", 2, Collection::ManagedDevices, SelectorKind::SerialNumber, "X1"));
        assert_ne!(base, key("a", 1, Collection::ComanagedDevices, SelectorKind::SerialNumber, "X1"));
        assert_ne!(base, key("a", 1, Collection::ManagedDevices, SelectorKind::DeviceName, "X1"));
        assert_ne!(base, key("a", 1, Collection::ManagedDevices, SelectorKind::SerialNumber, "X2"));
    }

    #[test]
    fn case_of_ids_serials_and_names_does_not_change_the_key() {
        for kind in [SelectorKind::Id, SelectorKind::SerialNumber, SelectorKind::DeviceName] {
            assert_eq!(
                key("a", 1, Collection::ManagedDevices, kind, "AbC"),
                key("a", 1, Collection::ManagedDevices, kind, "aBc")
            );
        }
    }

    #[test]
    fn short_key_is_a_prefix() {
        let k = ActionKey::compute(
            ActionKind::PasscodeReset,
            &Default::default(),
            "a",
            1,
            Collection::ManagedDevices,
            &Selector { kind: SelectorKind::Imei, value: "356938035643809".into() },
        );
        assert_eq!(k.short().len(), 12);
        assert!(k.as_str().starts_with(k.short()));
    }
}

//! Device actions as data: each kind of Intune remote action is one [`DeviceAction`], a
//! description the rest of the code asks instead of naming the action.
//!
//! A description says how the action is sent (Graph's path segment and body, the application
//! permission it needs), which devices can take it, the names under which Intune reports it
//! (`deviceActionResults.actionName`, `remoteActionAudits.action`), whether a second send does
//! harm, its default cooldown, and the words plans use for it. The Graph client, the executor,
//! refresh, the out-of-band check and the renderers read these fields; none of them names an
//! action (docs/graph-facts.md, "Actions and answers"; every kind's facts: docs/device-actions.md).
//!
//! A new kind is one new file here with its description, a variant of [`ActionKind`] with its arm
//! in [`ActionKind::spec`], and its place in [`ALL`].
//! Pure: no I/O, no clock.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::device::{Device, Platform};

mod clean_windows_device;
mod disable_lost_mode;
mod enable_lost_mode;
mod locate_device;
mod reboot_now;
mod remote_lock;
pub(crate) mod reset_passcode;
mod retire;
mod rotate_bitlocker_keys;
mod rotate_filevault_key;
mod rotate_local_admin_password;
mod shut_down;
mod sync_device;
mod windows_defender_scan;
mod wipe;

/// The kind of remote action: which of Intune's device actions it is (its description, with the
/// Graph name, is [`ActionKind::spec`], in `core/kinds`). A reset is `PasscodeReset`, the name its
/// manifests have always had; every other kind goes by its Graph name (`remoteLock`, `wipe`, …),
/// in the ledger, plans and keys alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActionKind {
    PasscodeReset,
    RemoteLock,
    SyncDevice,
    RebootNow,
    ShutDown,
    Retire,
    Wipe,
    CleanWindowsDevice,
    RotateBitLockerKeys,
    RotateFileVaultKey,
    RotateLocalAdminPassword,
    LocateDevice,
    WindowsDefenderScan,
    EnableLostMode,
    DisableLostMode,
}

impl ActionKind {
    /// The kind's name in the ledger, plans and keys.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ActionKind::PasscodeReset => "PasscodeReset",
            other => other.spec().graph_name,
        }
    }

    /// The kind named `name` as [`ActionKind::as_str`] writes it.
    pub(crate) fn from_name(name: &str) -> Option<ActionKind> {
        ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The kind whose Graph action is `name` (`spec.action` of a `DeviceAction` manifest):
    /// `resetPasscode` is the same kind as a `PasscodeReset` manifest's.
    pub(crate) fn from_graph_name(name: &str) -> Option<ActionKind> {
        ALL.into_iter().find(|k| k.spec().graph_name == name)
    }
}

/// A record or saved plan that names no kind was written when resets were the only one.
impl Default for ActionKind {
    fn default() -> Self {
        ActionKind::PasscodeReset
    }
}

impl Serialize for ActionKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ActionKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(d)?;
        ActionKind::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown kind of action `{}`", name.escape_debug())))
    }
}

/// The parameters of an action (`spec.parameters`): every parameter its kind takes, defaults
/// filled in, by name. Part of the action's identity: a wipe that keeps user data and one that
/// does not are two actions. Empty for kinds without a body. Never a secret (a kind refuses
/// those: docs/device-actions.md, "Secrets and personal data").
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Parameters(pub(crate) BTreeMap<String, ParamValue>);

/// One parameter's value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Bool(bool),
    Text(String),
}

impl Parameters {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the Boolean parameter `name` is set.
    pub(crate) fn flag(&self, name: &str) -> bool {
        matches!(self.0.get(name), Some(ParamValue::Bool(true)))
    }
}

/// The application permission of Intune's privileged device operations (reset a passcode, wipe,
/// retire, lock, …).
pub(crate) const PRIVILEGED_OPERATIONS: &str = "DeviceManagementManagedDevices.PrivilegedOperations.All";

/// The cooldown of a disruptive kind when the policy sets none: nobody is locked out, rebooted or
/// rotated twice in a day by accident.
const DAY: Duration = Duration::from_secs(24 * 3600);

/// One kind of Intune remote action, as data.
#[derive(Debug)]
pub(crate) struct DeviceAction {
    /// Graph's name of the action: the last segment of `POST …/{collection}/{id}/{name}`, and the
    /// name Intune reports its results under.
    pub graph_name: &'static str,
    /// The parameters its body takes (none: the POST has no body).
    pub params: &'static [Param],
    /// Parameters Graph takes that a manifest may not carry, and why (a secret would be in git).
    pub refused: &'static [(&'static str, &'static str)],
    /// The application permission the POST needs (reading devices is a permission of its own).
    pub role: &'static str,
    /// Whether Graph has it only in its beta API.
    pub beta_only: bool,
    /// How much a second send can hurt; picks the default guard rails.
    pub class: RiskClass,
    /// Whether Intune can act on a device: `Ok` with what will be done to it (the words a plan
    /// shows, such as `remove passcode`), `Err` with why not.
    pub eligibility: Eligibility,
    /// Every name under which Intune reports this action, or the same effect made elsewhere (the
    /// portal, a script), in `deviceActionResults.actionName` and `remoteActionAudits.action`,
    /// compared without regard to case: what counts as this action made outside this tool.
    pub reported_as: &'static [&'static str],
    /// The members of the audit log's `remoteAction` enum this action is logged under: the only
    /// names `remoteActionAudits?$filter=action eq '…'` takes (Graph answers 400 for any other,
    /// such as `wipe`). Empty for an action the audit log does not record (a sync): its audit log
    /// is never read, and its absence there is no evidence either way.
    pub audited_as: &'static [&'static str],
    /// How a wipe or retire shows on the device before (or instead of) its result, and that the
    /// device then leaves the tenant (docs/exactly-once.md, "Wipes and retires").
    pub removal: Option<Removal>,
    /// How long after this action the same device is left alone when the policy says nothing.
    pub default_cooldown: Option<Duration>,
    /// What a destructive action takes from the device, for the plan's confirmation line.
    pub loses: Option<fn(&Parameters) -> String>,
    /// The words plans and messages use for it.
    pub wording: Wording,
}

/// What a wipe or retire does to the device's record in Intune.
#[derive(Debug)]
pub(crate) struct Removal {
    /// The `managementState` values that say Intune has the action under way (`wipeIssued`,
    /// `wipePending`): it reached Intune, whatever `deviceActionResults` shows.
    pub issued: &'static [&'static str],
}

/// One parameter of an action's body, as `spec.parameters` names it (Graph's name).
#[derive(Debug)]
pub(crate) struct Param {
    pub name: &'static str,
    pub ty: ParamType,
    /// What it does, for the JSON Schema and messages.
    pub doc: &'static str,
    /// How a plan says a Boolean parameter that is on (`keep enrollment data`).
    pub words: &'static str,
}

/// The type of a parameter. A Boolean left out is `false`, as in Graph; text left out is not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParamType {
    Bool,
    /// Text of at most this many characters, on one line.
    Text(usize),
}

/// How much a second send of an action can hurt (docs/device-actions.md, "Risk classes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RiskClass {
    /// Data, enrolment or access is lost (wipe, retire, fresh start): a ticket, at most a few
    /// per apply, and nothing leaves before the whole plan is known.
    Destructive,
    /// The user is interrupted again, or a credential changes again (lock, reboot, a reset, a key
    /// rotation): exactly once, never re-sent on a guess.
    Disruptive,
    /// A second send does no harm (sync, scan, locate): an unknown one may be sent again once
    /// Intune shows no trace of it.
    Harmless,
}

impl RiskClass {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RiskClass::Destructive => "destructive",
            RiskClass::Disruptive => "disruptive",
            RiskClass::Harmless => "harmless",
        }
    }
}

/// The words for an action in plans and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Wording {
    /// One word, noun and verb: "the reset it started", "reset outside reconcile".
    pub short: &'static str,
    /// What a plan says is done to a device whose platform it does not know: `reset passcode`.
    pub phrase: &'static str,
    /// The action as a noun in a sentence: "no passcode reset of device …".
    pub noun: &'static str,
}

impl DeviceAction {
    /// Whether Intune reports this action under `name` (results or audit log, any case).
    pub(crate) fn is_reported_as(&self, name: &str) -> bool {
        self.reported_as.iter().any(|n| name.eq_ignore_ascii_case(n))
    }

    /// Whether `name` is the one under which Intune reports the result of this very action, as
    /// this tool sends it: what refresh matches an attempt against.
    pub(crate) fn is_own_result(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case(self.graph_name)
    }

    /// Whether the audit log records this action at all ([`DeviceAction::audited_as`]).
    pub(crate) fn is_audited(&self) -> bool {
        !self.audited_as.is_empty()
    }

    /// The `managementState` of a device that says this action (a wipe, a retire) is under way,
    /// if `state` is one (any case).
    pub(crate) fn issued_state<'s>(&self, state: Option<&'s str>) -> Option<&'s str> {
        let state = state?;
        self.removal.as_ref()?.issued.iter().any(|s| state.eq_ignore_ascii_case(s)).then_some(state)
    }

    /// Whether `d` is pending removal by this very action (a wipe on a `wipePending` device) and
    /// shows a result of it: the action is under way, made by this tool or another, which the
    /// ledger and the out-of-band check judge (adopted, not sent again). Without such a result
    /// nobody can say who started it: the device stays blocked, like any pending removal.
    pub(crate) fn under_way(&self, d: &Device) -> bool {
        pending_removal(d) == Some(self.graph_name)
            && d.device_action_results.iter().any(|r| self.is_reported_as(&r.action_name))
    }

    /// Whether Intune can act on `d` ([`DeviceAction::eligibility`]).
    /// A removal of this very kind already under way with its result shown is judged by the
    /// ledger and the out-of-band check (adopted, never sent twice), not blocked as a removal
    /// blocks other kinds.
    pub(crate) fn eligible(&self, d: &Device) -> Result<&'static str, String> {
        match &self.eligibility {
            Eligibility::Table(s) if self.under_way(d) => s.check_platform(d),
            Eligibility::Table(s) => s.check(d),
            Eligibility::Custom(f) => f(d),
        }
    }

    /// Whether a second send does no harm.
    pub(crate) fn harmless(&self) -> bool {
        self.class == RiskClass::Harmless
    }

    /// The parameter called `name`.
    pub(crate) fn param(&self, name: &str) -> Option<&'static Param> {
        self.params.iter().find(|p| p.name == name)
    }

    /// `what` with the Boolean parameters that are on: `wipe (keep enrollment data)`.
    pub(crate) fn describe(&self, what: &str, parameters: &Parameters) -> String {
        let on: Vec<&str> = self.params.iter().filter(|p| parameters.flag(p.name)).map(|p| p.words).collect();
        if on.is_empty() { what.to_owned() } else { format!("{what} ({})", on.join(", ")) }
    }

    /// The body of the POST: every parameter by its Graph name, `None` for a kind without one.
    pub(crate) fn body(&self, parameters: &Parameters) -> Option<Vec<u8>> {
        (!self.params.is_empty())
            .then(|| serde_json::to_vec(parameters).expect("parameters serialize: strings and Booleans"))
    }

    /// `parameters` with every Boolean the kind takes and that is not given set to `false`.
    pub(crate) fn with_defaults(&self, mut parameters: Parameters) -> Parameters {
        for p in self.params {
            if p.ty == ParamType::Bool {
                parameters.0.entry(p.name.to_owned()).or_insert(ParamValue::Bool(false));
            }
        }
        parameters
    }
}

/// How a kind decides which devices take it: `Ok` with what will be done (the plan's words),
/// `Err` with why not.
#[derive(Debug)]
pub(crate) enum Eligibility {
    /// By Intune's table of platforms and owners.
    Table(Support),
    /// By a rule of its own (a reset removes the passcode on corporate iOS instead).
    Custom(fn(&Device) -> Result<&'static str, String>),
}

/// Which platforms and owners an action applies to: a table Intune's device-action articles
/// give (docs/device-actions.md).
#[derive(Debug)]
pub(crate) struct Support {
    /// The platforms it applies to.
    pub platforms: &'static [Platform],
    /// Of those, the ones where only corporate-owned devices take it.
    pub corporate_on: &'static [Platform],
    /// Of those, the ones where only personally-owned devices take it.
    pub personal_on: &'static [Platform],
    /// Of those, the ones where the device must be supervised (Apple).
    pub supervised_on: &'static [Platform],
    /// How the platforms are named in a refusal: `Windows and macOS`.
    pub named: &'static str,
    /// What the plan says is done to a device that takes it (`lock`).
    pub what: &'static str,
    /// The same, for a device whose platform Intune did not report (`lock (platform unknown)`).
    pub unknown: &'static str,
}

impl Support {
    /// Whether Intune can `what` device `d` by this table. A pending removal comes first (Intune
    /// would cancel the action); a platform Intune did not report is left to Intune to decide.
    pub(crate) fn check(&self, d: &Device) -> Result<&'static str, String> {
        let what = self.what;
        match pending_removal(d) {
            Some(removal) if removal == what => Err(format!(
                "device is already pending {removal}, and Intune shows no result saying who started it: not sent again"
            )),
            Some(removal) => Err(format!("device is pending {removal}: Intune would cancel the {what}")),
            None => self.check_platform(d),
        }
    }

    /// [`Support::check`] without the pending removal: whether the platform and owner take it.
    pub(crate) fn check_platform(&self, d: &Device) -> Result<&'static str, String> {
        let (what, unknown) = (self.what, self.unknown);
        let os = d.operating_system.as_deref().unwrap_or_default();
        let owner = d.managed_device_owner_type.as_deref().unwrap_or_default().to_ascii_lowercase();
        let Some(platform) = Platform::of(os) else {
            return if os.trim().is_empty() {
                Ok(unknown)
            } else {
                Err(format!("{os} is not supported: only {}", self.named))
            };
        };
        if !self.platforms.contains(&platform) {
            return Err(format!("{os} is not supported: only {}", self.named));
        }
        let shown = if owner.is_empty() { "unknown" } else { &owner };
        if self.corporate_on.contains(&platform) && owner != "company" {
            return Err(format!("{os} device owned by `{shown}`: only corporate-owned {os} devices take it"));
        }
        if self.personal_on.contains(&platform) && owner != "personal" {
            return Err(format!("{os} device owned by `{shown}`: only personally-owned {os} devices take it"));
        }
        if self.supervised_on.contains(&platform) && d.is_supervised == Some(false) {
            return Err(format!("{os} device is not supervised: only supervised {os} devices take it"));
        }
        Ok(what)
    }
}

impl ActionKind {
    /// The description of this kind of action.
    pub(crate) fn spec(self) -> &'static DeviceAction {
        match self {
            ActionKind::PasscodeReset => &reset_passcode::RESET_PASSCODE,
            ActionKind::RemoteLock => &remote_lock::REMOTE_LOCK,
            ActionKind::SyncDevice => &sync_device::SYNC_DEVICE,
            ActionKind::RebootNow => &reboot_now::REBOOT_NOW,
            ActionKind::ShutDown => &shut_down::SHUT_DOWN,
            ActionKind::Retire => &retire::RETIRE,
            ActionKind::Wipe => &wipe::WIPE,
            ActionKind::CleanWindowsDevice => &clean_windows_device::CLEAN_WINDOWS_DEVICE,
            ActionKind::RotateBitLockerKeys => &rotate_bitlocker_keys::ROTATE_BITLOCKER_KEYS,
            ActionKind::RotateFileVaultKey => &rotate_filevault_key::ROTATE_FILEVAULT_KEY,
            ActionKind::RotateLocalAdminPassword => &rotate_local_admin_password::ROTATE_LOCAL_ADMIN_PASSWORD,
            ActionKind::LocateDevice => &locate_device::LOCATE_DEVICE,
            ActionKind::WindowsDefenderScan => &windows_defender_scan::WINDOWS_DEFENDER_SCAN,
            ActionKind::EnableLostMode => &enable_lost_mode::ENABLE_LOST_MODE,
            ActionKind::DisableLostMode => &disable_lost_mode::DISABLE_LOST_MODE,
        }
    }
}

/// Every kind of action, in a stable order.
pub(crate) const ALL: [ActionKind; 15] = [
    ActionKind::PasscodeReset,
    ActionKind::RemoteLock,
    ActionKind::SyncDevice,
    ActionKind::RebootNow,
    ActionKind::ShutDown,
    ActionKind::Retire,
    ActionKind::Wipe,
    ActionKind::CleanWindowsDevice,
    ActionKind::RotateBitLockerKeys,
    ActionKind::RotateFileVaultKey,
    ActionKind::RotateLocalAdminPassword,
    ActionKind::LocateDevice,
    ActionKind::WindowsDefenderScan,
    ActionKind::EnableLostMode,
    ActionKind::DisableLostMode,
];

/// The `remoteAction` names the audit log records `kinds` under, each once, in order: what the
/// audit log is asked for ([`DeviceAction::audited_as`]). Empty when none of them is audited.
pub(crate) fn audit_names(kinds: impl IntoIterator<Item = ActionKind>) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = kinds.into_iter().flat_map(|k| k.spec().audited_as.iter().copied()).collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Whether some kind of action is reported under `name`: which audit log entries are kept.
pub(crate) fn is_known(name: &str) -> bool {
    ALL.iter().any(|k| k.spec().is_reported_as(name))
}

/// The removal Intune has pending for `d` (`retire`, `wipe`, `delete`), which would cancel any
/// other action sent to it.
pub(crate) fn pending_removal(d: &Device) -> Option<&'static str> {
    let state = d.management_state.as_deref().unwrap_or_default();
    [("retirePending", "retire"), ("wipePending", "wipe"), ("deletePending", "delete")]
        .into_iter()
        .find(|(s, _)| state.eq_ignore_ascii_case(s))
        .map(|(_, what)| what)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A device with this operating system, owner type and management state.
    pub(crate) fn device(os: &str, owner: &str, state: &str) -> Device {
        Device {
            id: "x".into(),
            device_name: None,
            serial_number: None,
            imei: None,
            operating_system: Some(os.into()),
            os_version: None,
            managed_device_owner_type: Some(owner.into()),
            device_enrollment_type: None,
            management_state: Some(state.into()),
            is_supervised: None,
            last_sync_date_time: None,
            user_principal_name: None,
            device_action_results: Vec::new(),
        }
    }

    /// Whether `spec` takes a managed device of this OS, owner and supervision.
    pub(crate) fn on(
        spec: &DeviceAction,
        os: &str,
        owner: &str,
        supervised: Option<bool>,
    ) -> Result<&'static str, String> {
        let mut d = device(os, owner, "managed");
        d.is_supervised = supervised;
        spec.eligible(&d)
    }

    /// Whether `spec` takes such a device (supervised) while a wipe is pending on it.
    pub(crate) fn on_pending_wipe(spec: &DeviceAction, os: &str, owner: &str) -> Result<&'static str, String> {
        let mut d = device(os, owner, "wipePending");
        d.is_supervised = Some(true);
        spec.eligible(&d)
    }

    #[test]
    fn every_kind_is_described_once_and_known_by_its_own_name() {
        for kind in ALL {
            let spec = kind.spec();
            assert!(spec.is_reported_as(spec.graph_name), "{kind:?}");
            assert!(spec.is_own_result(&spec.graph_name.to_uppercase()), "{kind:?}: any case");
            assert!(is_known(spec.graph_name));
            assert!(!spec.role.is_empty() && !spec.wording.short.is_empty(), "{kind:?}");
        }
        let names: std::collections::HashSet<&str> = ALL.iter().map(|k| k.spec().graph_name).collect();
        assert_eq!(names.len(), ALL.len(), "one description per Graph action");
        assert!(!is_known("someActionNoKindHas"));
    }

    // The audit log is asked by the `remoteAction` enum's names (any other name is a 400), and
    // what it answers is matched by the names the kind is reported under.
    #[test]
    fn the_audit_log_is_asked_by_enum_names_each_kind_is_reported_under() {
        for kind in ALL {
            let spec = kind.spec();
            for name in spec.audited_as {
                assert!(spec.is_reported_as(name), "{kind:?}: {name}");
            }
        }
        assert_eq!(audit_names([ActionKind::SyncDevice]), Vec::<&str>::new(), "a sync is not audited");
        assert!(!ActionKind::SyncDevice.spec().is_audited() && ActionKind::Wipe.spec().is_audited());
        assert_eq!(
            audit_names([ActionKind::Wipe, ActionKind::Retire, ActionKind::Wipe]),
            ["factoryReset", "factoryResetKeepEnrollmentData", "removeCompanyData"]
        );
        assert_eq!(audit_names([ActionKind::WindowsDefenderScan]), ["fullScan", "quickScan"]);
        assert_eq!(audit_names([ActionKind::PasscodeReset]), ["resetPasscode"]);
    }

    #[test]
    fn a_removal_under_way_is_its_own_kinds_only() {
        let wipe = ActionKind::Wipe.spec();
        assert_eq!(wipe.issued_state(Some("WipeIssued")), Some("WipeIssued"));
        assert_eq!(wipe.issued_state(Some("wipePending")), Some("wipePending"));
        assert_eq!(wipe.issued_state(Some("retirePending")), None);
        assert_eq!(wipe.issued_state(Some("wipeFailed")), None, "a failed wipe is not under way");
        assert_eq!(wipe.issued_state(None), None);
        assert_eq!(ActionKind::Retire.spec().issued_state(Some("retireIssued")), Some("retireIssued"));
        assert_eq!(ActionKind::RemoteLock.spec().issued_state(Some("wipePending")), None);

        let mut d = device("Windows", "company", "wipePending");
        assert!(!wipe.under_way(&d), "no result says whose wipe it is");
        let blocked = wipe.eligible(&d).expect_err("blocked without a result");
        assert!(blocked.contains("already pending wipe"), "{blocked}");
        d.device_action_results.push(crate::core::device::ActionResult {
            action_name: "wipe".into(),
            action_state: "done".into(),
            start_date_time: None,
            last_updated_date_time: None,
        });
        assert!(wipe.under_way(&d));
        assert_eq!(wipe.eligible(&d), Ok("wipe"), "judged by the ledger and the out-of-band check");
        assert!(ActionKind::Retire.spec().eligible(&d).is_err(), "a wipe under way blocks a retire");
        assert!(ActionKind::RemoteLock.spec().eligible(&d).is_err());
        let mut mac = d.clone();
        mac.operating_system = Some("macOS".into());
        assert!(wipe.eligible(&mac).is_err(), "the platform still counts");
    }

    #[test]
    fn a_pending_removal_is_read_in_any_case() {
        assert_eq!(pending_removal(&device("Android", "company", "retirePending")), Some("retire"));
        assert_eq!(pending_removal(&device("Android", "company", "WIPEPENDING")), Some("wipe"));
        assert_eq!(pending_removal(&device("Android", "company", "deletePending")), Some("delete"));
        assert_eq!(pending_removal(&device("Android", "company", "managed")), None);
        assert_eq!(pending_removal(&device("Android", "company", "")), None);
    }
}

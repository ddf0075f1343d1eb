//! Device actions as data: each kind of Intune remote action is one [`DeviceAction`], a
//! description the rest of the code asks instead of naming the action.
//!
//! A description says how the action is sent (Graph's path segment and body, the application
//! permission it needs), which devices can take it, the names under which Intune reports it
//! (`deviceActionResults.actionName`, `remoteActionAudits.action`), whether a second send does
//! harm, its default cooldown, and the words plans use for it. The Graph client, the executor,
//! refresh, the out-of-band check and the renderers read these fields; none of them names an
//! action (docs/graph-facts.md, "Actions and answers").
//!
//! A new kind is one new file here with its description, and one arm in [`ActionKind::spec`].
//! Pure: no I/O, no clock.

use std::time::Duration;

use crate::core::action::ActionKind;
use crate::core::device::Device;

pub(crate) mod reset_passcode;

/// The application permission of Intune's privileged device operations (reset a passcode, wipe,
/// retire, lock, …).
pub(crate) const PRIVILEGED_OPERATIONS: &str = "DeviceManagementManagedDevices.PrivilegedOperations.All";

/// One kind of Intune remote action, as data.
#[derive(Debug)]
pub(crate) struct DeviceAction {
    /// Graph's name of the action: the last segment of `POST …/{collection}/{id}/{name}`, and the
    /// name Intune reports its results under.
    pub graph_name: &'static str,
    /// What the POST carries.
    pub body: Body,
    /// The application permission the POST needs (reading devices is a permission of its own).
    pub role: &'static str,
    /// Whether Intune can act on a device: `Ok` with what will be done to it (the words a plan
    /// shows, such as `remove passcode`), `Err` with why not.
    pub eligibility: fn(&Device) -> Result<&'static str, String>,
    /// Every name under which Intune reports this action, or the same effect made elsewhere (the
    /// portal, a script), in `deviceActionResults.actionName` and `remoteActionAudits.action`,
    /// compared without regard to case: what counts as this action made outside this tool.
    pub reported_as: &'static [&'static str],
    /// Whether a second send does harm: a harmful action whose outcome is unknown is never sent
    /// again on a guess. (Every kind so far is harmful, which is what the executor and refresh
    /// assume throughout; a harmless kind brings the rule that reads this.)
    #[cfg_attr(not(test), expect(dead_code, reason = "every kind so far is harmful: nothing branches on it yet"))]
    pub second_send: SecondSend,
    /// How long after this action the same device is left alone when the policy says nothing.
    /// (None so far: the policy's `cooldown` alone applies.)
    #[cfg_attr(not(test), expect(dead_code, reason = "no kind so far has a default cooldown"))]
    pub default_cooldown: Option<Duration>,
    /// The words plans and messages use for it.
    pub wording: Wording,
}

/// The body of an action's POST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    /// No body (`Content-Length: 0`).
    Empty,
}

/// What a second send of an action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecondSend {
    /// It acts again (a new passcode, a second wipe): exactly once, never re-sent on a guess.
    Harmful,
    /// It does no harm (a sync, a scan).
    #[expect(dead_code, reason = "no harmless kind yet")]
    Harmless,
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

    /// Whether Intune can act on `d` ([`DeviceAction::eligibility`]).
    pub(crate) fn eligible(&self, d: &Device) -> Result<&'static str, String> {
        (self.eligibility)(d)
    }
}

impl ActionKind {
    /// The description of this kind of action.
    pub(crate) fn spec(self) -> &'static DeviceAction {
        match self {
            ActionKind::PasscodeReset => &reset_passcode::RESET_PASSCODE,
        }
    }
}

/// Every kind of action, in a stable order.
pub(crate) const ALL: [ActionKind; 1] = [ActionKind::PasscodeReset];

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
            last_sync_date_time: None,
            user_principal_name: None,
            device_action_results: Vec::new(),
        }
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

    #[test]
    fn a_pending_removal_is_read_in_any_case() {
        assert_eq!(pending_removal(&device("Android", "company", "retirePending")), Some("retire"));
        assert_eq!(pending_removal(&device("Android", "company", "WIPEPENDING")), Some("wipe"));
        assert_eq!(pending_removal(&device("Android", "company", "deletePending")), Some("delete"));
        assert_eq!(pending_removal(&device("Android", "company", "managed")), None);
        assert_eq!(pending_removal(&device("Android", "company", "")), None);
    }
}

//! `remoteLock`: locks the screen (useful only where a passcode is set). On a Mac Intune sets a
//! recovery PIN, and a second lock fails while the first PIN is unused (docs/device-actions.md,
//! "remoteLock").

use super::{DAY, DeviceAction, Eligibility, PRIVILEGED_OPERATIONS, RiskClass, Support, Wording};
use crate::core::device::Platform;

pub(crate) static REMOTE_LOCK: DeviceAction = DeviceAction {
    graph_name: "remoteLock",
    params: &[],
    refused: &[],
    role: PRIVILEGED_OPERATIONS,
    beta_only: false,
    class: RiskClass::Disruptive,
    eligibility: Eligibility::Table(Support {
        platforms: &[Platform::Android, Platform::Aosp, Platform::Ios, Platform::Ipados, Platform::Macos],
        corporate_on: &[Platform::Android],
        personal_on: &[],
        supervised_on: &[],
        named: "corporate Android, AOSP, iOS/iPadOS and macOS",
        what: "lock",
        unknown: "lock (platform unknown)",
    }),
    reported_as: &["remoteLock"],
    audited_as: &["remoteLock"],
    removal: None,
    default_cooldown: Some(DAY),
    loses: None,
    wording: Wording { short: "lock", phrase: "lock", noun: "remote lock" },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::kinds::tests::{on, on_pending_wipe};

    #[test]
    fn platforms() {
        let e = |os: &str, owner: &str, supervised: Option<bool>| on(&REMOTE_LOCK, os, owner, supervised);
        assert_eq!(e("Android", "company", None), Ok("lock"), "Android company");
        assert_eq!(e("iOS", "personal", None), Ok("lock"), "iOS personal");
        assert_eq!(e("macOS", "company", None), Ok("lock"), "macOS company");
        assert!(e("Windows", "company", None).is_err(), "Windows company");
        assert!(e("Android", "personal", None).is_err(), "Android personal");
        assert_eq!(e("", "", None), Ok("lock (platform unknown)"));
        assert!(on_pending_wipe(&REMOTE_LOCK, "Android", "company").is_err(), "a pending wipe first");
    }
}

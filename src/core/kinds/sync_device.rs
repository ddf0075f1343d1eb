//! `syncDevice`: asks the device to check in now. A second sync does no harm; Intune's audit log
//! has no name for it (docs/device-actions.md, "syncDevice").

use super::{DeviceAction, Eligibility, PRIVILEGED_OPERATIONS, RiskClass, Support, Wording};
use crate::core::device::Platform;

pub(crate) static SYNC_DEVICE: DeviceAction = DeviceAction {
    graph_name: "syncDevice",
    params: &[],
    refused: &[],
    role: PRIVILEGED_OPERATIONS,
    beta_only: false,
    class: RiskClass::Harmless,
    eligibility: Eligibility::Table(Support {
        platforms: &[Platform::Android, Platform::Ios, Platform::Ipados, Platform::Macos, Platform::Windows],
        corporate_on: &[],
        personal_on: &[],
        supervised_on: &[],
        named: "Android, iOS/iPadOS, macOS and Windows",
        what: "sync",
        unknown: "sync (platform unknown)",
    }),
    reported_as: &["syncDevice"],
    audited_as: &[],
    removal: None,
    default_cooldown: None,
    loses: None,
    wording: Wording { short: "sync", phrase: "sync", noun: "sync" },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::kinds::tests::{on, on_pending_wipe};

    #[test]
    fn platforms() {
        let e = |os: &str, owner: &str, supervised: Option<bool>| on(&SYNC_DEVICE, os, owner, supervised);
        assert_eq!(e("Android", "personal", None), Ok("sync"), "Android personal");
        assert_eq!(e("Windows", "company", None), Ok("sync"), "Windows company");
        assert!(e("AOSP", "company", None).is_err(), "AOSP company");
        assert_eq!(e("", "", None), Ok("sync (platform unknown)"));
        assert!(on_pending_wipe(&SYNC_DEVICE, "Android", "personal").is_err(), "a pending wipe first");
    }
}

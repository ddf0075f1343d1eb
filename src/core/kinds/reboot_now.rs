//! `rebootNow`: restarts the device at once (docs/device-actions.md, "rebootNow").

use super::{DAY, DeviceAction, Eligibility, PRIVILEGED_OPERATIONS, RiskClass, Support, Wording};
use crate::core::device::Platform;

pub(crate) static REBOOT_NOW: DeviceAction = DeviceAction {
    graph_name: "rebootNow",
    params: &[],
    refused: &[],
    role: PRIVILEGED_OPERATIONS,
    beta_only: false,
    class: RiskClass::Disruptive,
    eligibility: Eligibility::Table(Support {
        platforms: &[
            Platform::Android,
            Platform::Aosp,
            Platform::Ios,
            Platform::Ipados,
            Platform::Macos,
            Platform::Windows,
        ],
        corporate_on: &[Platform::Android],
        personal_on: &[],
        supervised_on: &[Platform::Ios, Platform::Ipados],
        named: "corporate Android, AOSP, supervised iOS/iPadOS, macOS and Windows",
        what: "reboot",
        unknown: "reboot (platform unknown)",
    }),
    reported_as: &["rebootNow"],
    audited_as: &["rebootNow"],
    removal: None,
    default_cooldown: Some(DAY),
    loses: None,
    wording: Wording { short: "reboot", phrase: "reboot", noun: "reboot" },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::kinds::tests::{on, on_pending_wipe};

    #[test]
    fn platforms() {
        let e = |os: &str, owner: &str, supervised: Option<bool>| on(&REBOOT_NOW, os, owner, supervised);
        assert_eq!(e("Windows", "personal", None), Ok("reboot"), "Windows personal");
        assert_eq!(e("iOS", "company", Some(true)), Ok("reboot"), "iOS company");
        assert!(e("iOS", "company", Some(false)).is_err(), "iOS company");
        assert!(e("Android", "personal", None).is_err(), "Android personal");
        assert_eq!(e("", "", None), Ok("reboot (platform unknown)"));
        assert!(on_pending_wipe(&REBOOT_NOW, "Windows", "personal").is_err(), "a pending wipe first");
    }
}

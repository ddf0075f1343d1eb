//! `disableLostMode`: unlocks a device from Lost Mode. A second send does no harm
//! (docs/device-actions.md, "disableLostMode").

use super::{DeviceAction, Eligibility, PRIVILEGED_OPERATIONS, RiskClass, Support, Wording};
use crate::core::device::Platform;

pub(crate) static DISABLE_LOST_MODE: DeviceAction = DeviceAction {
    graph_name: "disableLostMode",
    params: &[],
    refused: &[],
    role: PRIVILEGED_OPERATIONS,
    beta_only: false,
    class: RiskClass::Harmless,
    eligibility: Eligibility::Table(Support {
        platforms: &[Platform::Ios, Platform::Ipados],
        corporate_on: &[Platform::Ios, Platform::Ipados],
        personal_on: &[],
        supervised_on: &[Platform::Ios, Platform::Ipados],
        named: "supervised corporate iOS/iPadOS",
        what: "disable lost mode",
        unknown: "disable lost mode (platform unknown)",
    }),
    reported_as: &["disableLostMode"],
    audited_as: &["disableLostMode"],
    removal: None,
    default_cooldown: None,
    loses: None,
    wording: Wording { short: "lost mode off", phrase: "disable lost mode", noun: "disabling of Lost Mode" },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::kinds::tests::{on, on_pending_wipe};

    #[test]
    fn platforms() {
        let e = |os: &str, owner: &str, supervised: Option<bool>| on(&DISABLE_LOST_MODE, os, owner, supervised);
        assert_eq!(e("iPadOS", "company", None), Ok("disable lost mode"), "iPadOS company");
        assert!(e("macOS", "company", None).is_err(), "macOS company");
        assert_eq!(e("", "", None), Ok("disable lost mode (platform unknown)"));
        assert!(on_pending_wipe(&DISABLE_LOST_MODE, "iPadOS", "company").is_err(), "a pending wipe first");
    }
}

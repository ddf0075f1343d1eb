//! `locateDevice`: asks the device where it is. A second ask does no harm; the location it
//! reports is personal data this tool never reads (docs/device-actions.md, "locateDevice").

use super::{DeviceAction, Eligibility, PRIVILEGED_OPERATIONS, RiskClass, Support, Wording};
use crate::core::device::Platform;

pub(crate) static LOCATE_DEVICE: DeviceAction = DeviceAction {
    graph_name: "locateDevice",
    params: &[],
    refused: &[],
    role: PRIVILEGED_OPERATIONS,
    beta_only: false,
    class: RiskClass::Harmless,
    eligibility: Eligibility::Table(Support {
        platforms: &[Platform::Android, Platform::Ios, Platform::Ipados, Platform::Windows],
        corporate_on: &[Platform::Android],
        personal_on: &[],
        supervised_on: &[Platform::Ios, Platform::Ipados],
        named: "corporate Android, supervised iOS/iPadOS and Windows",
        what: "locate",
        unknown: "locate (platform unknown)",
    }),
    reported_as: &["locateDevice"],
    audited_as: &["locateDevice"],
    removal: None,
    default_cooldown: None,
    loses: None,
    wording: Wording { short: "locate", phrase: "locate", noun: "locate" },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::kinds::tests::{on, on_pending_wipe};

    #[test]
    fn platforms() {
        let e = |os: &str, owner: &str, supervised: Option<bool>| on(&LOCATE_DEVICE, os, owner, supervised);
        assert_eq!(e("Windows", "company", None), Ok("locate"), "Windows company");
        assert_eq!(e("iOS", "company", Some(true)), Ok("locate"), "iOS company");
        assert!(e("Android", "personal", None).is_err(), "Android personal");
        assert!(e("macOS", "company", None).is_err(), "macOS company");
        assert_eq!(e("", "", None), Ok("locate (platform unknown)"));
        assert!(on_pending_wipe(&LOCATE_DEVICE, "Windows", "company").is_err(), "a pending wipe first");
    }
}

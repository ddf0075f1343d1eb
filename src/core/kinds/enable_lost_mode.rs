//! `enableLostMode` (beta): locks a supervised iPhone or iPad with a message and a phone number on
//! its screen until Lost Mode is disabled (docs/device-actions.md, "enableLostMode").

use super::{DAY, DeviceAction, Eligibility, PRIVILEGED_OPERATIONS, Param, ParamType, RiskClass, Support, Wording};
use crate::core::device::Platform;

pub(crate) static ENABLE_LOST_MODE: DeviceAction = DeviceAction {
    graph_name: "enableLostMode",
    params: &[
        Param { name: "message", ty: ParamType::Text(160), doc: "The message shown on the lock screen.", words: "" },
        Param {
            name: "phoneNumber",
            ty: ParamType::Text(40),
            doc: "A phone number shown on the lock screen.",
            words: "",
        },
        Param { name: "footer", ty: ParamType::Text(160), doc: "A footnote shown on the lock screen.", words: "" },
    ],
    refused: &[],
    role: PRIVILEGED_OPERATIONS,
    beta_only: true,
    class: RiskClass::Disruptive,
    eligibility: Eligibility::Table(Support {
        platforms: &[Platform::Ios, Platform::Ipados],
        corporate_on: &[Platform::Ios, Platform::Ipados],
        personal_on: &[],
        supervised_on: &[Platform::Ios, Platform::Ipados],
        named: "supervised corporate iOS/iPadOS",
        what: "enable lost mode",
        unknown: "enable lost mode (platform unknown)",
    }),
    reported_as: &["enableLostMode"],
    audited_as: &["enableLostMode"],
    removal: None,
    default_cooldown: Some(DAY),
    loses: None,
    wording: Wording { short: "lost mode", phrase: "enable lost mode", noun: "Lost Mode" },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::kinds::tests::{on, on_pending_wipe};

    #[test]
    fn platforms() {
        let e = |os: &str, owner: &str, supervised: Option<bool>| on(&ENABLE_LOST_MODE, os, owner, supervised);
        assert_eq!(e("iOS", "company", Some(true)), Ok("enable lost mode"), "iOS company");
        assert!(e("iOS", "personal", Some(true)).is_err(), "iOS personal");
        assert!(e("iPadOS", "company", Some(false)).is_err(), "iPadOS company");
        assert!(e("Android", "company", None).is_err(), "Android company");
        assert_eq!(e("", "", None), Ok("enable lost mode (platform unknown)"));
        assert!(on_pending_wipe(&ENABLE_LOST_MODE, "iOS", "company").is_err(), "a pending wipe first");
    }
}

//! `cleanWindowsDevice` (Fresh Start): reinstalls Windows, removing the apps the manufacturer or
//! the user installed; `keepUserData` keeps the user's files (docs/device-actions.md,
//! "cleanWindowsDevice").

use super::{DeviceAction, Eligibility, PRIVILEGED_OPERATIONS, Param, ParamType, RiskClass, Support, Wording};
use crate::core::device::Platform;

pub(crate) static CLEAN_WINDOWS_DEVICE: DeviceAction = DeviceAction {
    graph_name: "cleanWindowsDevice",
    params: &[Param {
        name: "keepUserData",
        ty: ParamType::Bool,
        doc: "Keep the user's files.",
        words: "keep user data",
    }],
    refused: &[],
    role: PRIVILEGED_OPERATIONS,
    beta_only: false,
    class: RiskClass::Destructive,
    eligibility: Eligibility::Table(Support {
        platforms: &[Platform::Windows],
        corporate_on: &[],
        personal_on: &[],
        supervised_on: &[],
        named: "Windows",
        what: "fresh start",
        unknown: "fresh start (platform unknown)",
    }),
    reported_as: &["cleanWindowsDevice"],
    audited_as: &["cleanWindowsDevice"],
    removal: None,
    default_cooldown: None,
    loses: Some(|p| {
        if p.flag("keepUserData") {
            "apps installed by the user or the manufacturer (user data is kept)".to_owned()
        } else {
            "apps installed by the user or the manufacturer, and all user data".to_owned()
        }
    }),
    wording: Wording { short: "fresh start", phrase: "fresh start", noun: "fresh start" },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::kinds::tests::{on, on_pending_wipe};

    #[test]
    fn platforms() {
        let e = |os: &str, owner: &str, supervised: Option<bool>| on(&CLEAN_WINDOWS_DEVICE, os, owner, supervised);
        assert_eq!(e("Windows", "company", None), Ok("fresh start"), "Windows company");
        assert!(e("macOS", "company", None).is_err(), "macOS company");
        assert_eq!(e("", "", None), Ok("fresh start (platform unknown)"));
        assert!(on_pending_wipe(&CLEAN_WINDOWS_DEVICE, "Windows", "company").is_err(), "a pending wipe first");
    }
}

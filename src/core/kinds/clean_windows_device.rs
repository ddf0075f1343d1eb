//! `cleanWindowsDevice` (Fresh Start): reinstalls Windows, removing the apps the manufacturer or
//! the user installed; `keepUserData` keeps the user's files (docs/device-actions.md,
//! "cleanWindowsDevice").

use super::{DeviceAction, PRIVILEGED_OPERATIONS, Param, ParamType, RiskClass, Support, Wording};
use crate::core::device::{Device, Platform};

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
    eligibility,
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

static SUPPORT: Support = Support {
    platforms: &[Platform::Windows],
    corporate_on: &[],
    personal_on: &[],
    supervised_on: &[],
    named: "Windows",
};

fn eligibility(d: &Device) -> Result<&'static str, String> {
    SUPPORT.check(d, "fresh start", "fresh start (platform unknown)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms() {
        let e = |os: &str, owner: &str, supervised: Option<bool>| {
            let mut d = crate::core::kinds::tests::device(os, owner, "managed");
            d.is_supervised = supervised;
            CLEAN_WINDOWS_DEVICE.eligible(&d)
        };
        assert_eq!(e("Windows", "company", None), Ok("fresh start"), "Windows company");
        assert!(e("macOS", "company", None).is_err(), "macOS company");
        assert_eq!(e("", "", None), Ok("fresh start (platform unknown)"));
        let mut pending = crate::core::kinds::tests::device("Windows", "company", "wipePending");
        pending.is_supervised = Some(true);
        assert!(CLEAN_WINDOWS_DEVICE.eligible(&pending).is_err(), "a pending wipe first");
    }
}

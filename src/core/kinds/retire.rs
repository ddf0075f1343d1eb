//! `retire`: removes company data, apps and profiles and unenrols the device; personal data stays.
//! The device then leaves Intune. Audited as `removeCompanyData` (docs/device-actions.md, "retire").

use super::{DeviceAction, Eligibility, PRIVILEGED_OPERATIONS, Removal, RiskClass, Support, Wording};
use crate::core::device::Platform;

pub(crate) static RETIRE: DeviceAction = DeviceAction {
    graph_name: "retire",
    params: &[],
    refused: &[],
    role: PRIVILEGED_OPERATIONS,
    beta_only: false,
    class: RiskClass::Destructive,
    eligibility: Eligibility::Table(Support {
        platforms: &[Platform::Android, Platform::Ios, Platform::Ipados, Platform::Macos, Platform::Windows],
        corporate_on: &[],
        personal_on: &[Platform::Android],
        supervised_on: &[],
        named: "personally-owned Android, iOS/iPadOS, macOS and Windows",
        what: "retire",
        unknown: "retire (platform unknown)",
    }),
    reported_as: &["retire", "removeCompanyData"],
    audited_as: &["removeCompanyData"],
    removal: Some(Removal { issued: &["retireIssued", "retirePending"] }),
    default_cooldown: None,
    loses: Some(|_| "company data, apps and profiles, and its enrollment (personal data stays)".to_owned()),
    wording: Wording { short: "retire", phrase: "retire", noun: "retirement" },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::kinds::tests::{on, on_pending_wipe};

    #[test]
    fn platforms() {
        let e = |os: &str, owner: &str, supervised: Option<bool>| on(&RETIRE, os, owner, supervised);
        assert_eq!(e("Android", "personal", None), Ok("retire"), "Android personal");
        assert_eq!(e("Windows", "company", None), Ok("retire"), "Windows company");
        assert!(e("Android", "company", None).is_err(), "Android company");
        assert!(e("AOSP", "company", None).is_err(), "AOSP company");
        assert_eq!(e("", "", None), Ok("retire (platform unknown)"));
        assert!(on_pending_wipe(&RETIRE, "Android", "personal").is_err(), "a pending wipe first");
    }
}

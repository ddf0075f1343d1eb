//! `shutDown`: turns the device off; someone must turn it on again (docs/device-actions.md,
//! "shutDown").

use super::{DAY, DeviceAction, Eligibility, PRIVILEGED_OPERATIONS, RiskClass, Support, Wording};
use crate::core::device::Platform;

pub(crate) static SHUT_DOWN: DeviceAction = DeviceAction {
    graph_name: "shutDown",
    params: &[],
    refused: &[],
    role: PRIVILEGED_OPERATIONS,
    beta_only: false,
    class: RiskClass::Disruptive,
    eligibility: Eligibility::Table(Support {
        platforms: &[Platform::Ios, Platform::Ipados, Platform::Macos],
        corporate_on: &[],
        personal_on: &[],
        supervised_on: &[Platform::Ios, Platform::Ipados],
        named: "supervised iOS/iPadOS and macOS",
        what: "shut down",
        unknown: "shut down (platform unknown)",
    }),
    reported_as: &["shutDown"],
    audited_as: &["shutDown"],
    removal: None,
    default_cooldown: Some(DAY),
    loses: None,
    wording: Wording { short: "shutdown", phrase: "shut down", noun: "shutdown" },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::kinds::tests::{on, on_pending_wipe};

    #[test]
    fn platforms() {
        let e = |os: &str, owner: &str, supervised: Option<bool>| on(&SHUT_DOWN, os, owner, supervised);
        assert_eq!(e("macOS", "company", None), Ok("shut down"), "macOS company");
        assert_eq!(e("iPadOS", "company", Some(true)), Ok("shut down"), "iPadOS company");
        assert!(e("Windows", "company", None).is_err(), "Windows company");
        assert!(e("iOS", "company", Some(false)).is_err(), "iOS company");
        assert_eq!(e("", "", None), Ok("shut down (platform unknown)"));
        assert!(on_pending_wipe(&SHUT_DOWN, "macOS", "company").is_err(), "a pending wipe first");
    }
}

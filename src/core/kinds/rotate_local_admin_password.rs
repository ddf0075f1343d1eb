//! `rotateLocalAdminPassword` (beta): a new local administrator password (Windows LAPS, or the
//! macOS LAPS account of an ADE-enrolled Mac) (docs/device-actions.md, "rotateLocalAdminPassword").

use super::{DAY, DeviceAction, Eligibility, PRIVILEGED_OPERATIONS, RiskClass, Support, Wording};
use crate::core::device::Platform;

pub(crate) static ROTATE_LOCAL_ADMIN_PASSWORD: DeviceAction = DeviceAction {
    graph_name: "rotateLocalAdminPassword",
    params: &[],
    refused: &[],
    role: PRIVILEGED_OPERATIONS,
    beta_only: true,
    class: RiskClass::Disruptive,
    eligibility: Eligibility::Table(Support {
        platforms: &[Platform::Windows, Platform::Macos],
        corporate_on: &[Platform::Windows, Platform::Macos],
        personal_on: &[],
        supervised_on: &[],
        named: "corporate Windows and macOS",
        what: "rotate local admin password",
        unknown: "rotate local admin password (platform unknown)",
    }),
    reported_as: &["rotateLocalAdminPassword"],
    audited_as: &["rotateLocalAdminPassword"],
    removal: None,
    default_cooldown: Some(DAY),
    loses: None,
    wording: Wording {
        short: "rotation",
        phrase: "rotate local admin password",
        noun: "local admin password rotation",
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::kinds::tests::{on, on_pending_wipe};

    #[test]
    fn platforms() {
        let e =
            |os: &str, owner: &str, supervised: Option<bool>| on(&ROTATE_LOCAL_ADMIN_PASSWORD, os, owner, supervised);
        assert_eq!(e("Windows", "company", None), Ok("rotate local admin password"), "Windows company");
        assert_eq!(e("macOS", "company", None), Ok("rotate local admin password"), "macOS company");
        assert!(e("Windows", "personal", None).is_err(), "Windows personal");
        assert!(e("iOS", "company", None).is_err(), "iOS company");
        assert_eq!(e("", "", None), Ok("rotate local admin password (platform unknown)"));
        assert!(on_pending_wipe(&ROTATE_LOCAL_ADMIN_PASSWORD, "Windows", "company").is_err(), "a pending wipe first");
    }
}

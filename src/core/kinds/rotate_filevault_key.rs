//! `rotateFileVaultKey` (beta): a new FileVault recovery key for a corporate Mac whose key Intune
//! escrows (docs/device-actions.md, "rotateFileVaultKey").

use super::{DAY, DeviceAction, Eligibility, PRIVILEGED_OPERATIONS, RiskClass, Support, Wording};
use crate::core::device::Platform;

pub(crate) static ROTATE_FILEVAULT_KEY: DeviceAction = DeviceAction {
    graph_name: "rotateFileVaultKey",
    params: &[],
    refused: &[],
    role: PRIVILEGED_OPERATIONS,
    beta_only: true,
    class: RiskClass::Disruptive,
    eligibility: Eligibility::Table(Support {
        platforms: &[Platform::Macos],
        corporate_on: &[Platform::Macos],
        personal_on: &[],
        supervised_on: &[],
        named: "corporate macOS",
        what: "rotate FileVault key",
        unknown: "rotate FileVault key (platform unknown)",
    }),
    reported_as: &["rotateFileVaultKey"],
    audited_as: &["rotateFileVaultKey"],
    removal: None,
    default_cooldown: Some(DAY),
    loses: None,
    wording: Wording { short: "rotation", phrase: "rotate FileVault key", noun: "FileVault key rotation" },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::kinds::tests::{on, on_pending_wipe};

    #[test]
    fn platforms() {
        let e = |os: &str, owner: &str, supervised: Option<bool>| on(&ROTATE_FILEVAULT_KEY, os, owner, supervised);
        assert_eq!(e("macOS", "company", None), Ok("rotate FileVault key"), "macOS company");
        assert!(e("macOS", "personal", None).is_err(), "macOS personal");
        assert!(e("Windows", "company", None).is_err(), "Windows company");
        assert_eq!(e("", "", None), Ok("rotate FileVault key (platform unknown)"));
        assert!(on_pending_wipe(&ROTATE_FILEVAULT_KEY, "macOS", "company").is_err(), "a pending wipe first");
    }
}

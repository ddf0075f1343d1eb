//! `rotateFileVaultKey` (beta): a new FileVault recovery key for a corporate Mac whose key Intune
//! escrows (docs/device-actions.md, "rotateFileVaultKey").

use super::{DAY, DeviceAction, PRIVILEGED_OPERATIONS, RiskClass, Support, Wording};
use crate::core::device::{Device, Platform};

pub(crate) static ROTATE_FILEVAULT_KEY: DeviceAction = DeviceAction {
    graph_name: "rotateFileVaultKey",
    params: &[],
    refused: &[],
    role: PRIVILEGED_OPERATIONS,
    beta_only: true,
    class: RiskClass::Disruptive,
    eligibility,
    reported_as: &["rotateFileVaultKey"],
    audited_as: &["rotateFileVaultKey"],
    removal: None,
    default_cooldown: Some(DAY),
    loses: None,
    wording: Wording { short: "rotation", phrase: "rotate FileVault key", noun: "FileVault key rotation" },
};

static SUPPORT: Support = Support {
    platforms: &[Platform::Macos],
    corporate_on: &[Platform::Macos],
    personal_on: &[],
    supervised_on: &[],
    named: "corporate macOS",
};

fn eligibility(d: &Device) -> Result<&'static str, String> {
    SUPPORT.check(d, "rotate FileVault key", "rotate FileVault key (platform unknown)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms() {
        let e = |os: &str, owner: &str, supervised: Option<bool>| {
            let mut d = crate::core::kinds::tests::device(os, owner, "managed");
            d.is_supervised = supervised;
            ROTATE_FILEVAULT_KEY.eligible(&d)
        };
        assert_eq!(e("macOS", "company", None), Ok("rotate FileVault key"), "macOS company");
        assert!(e("macOS", "personal", None).is_err(), "macOS personal");
        assert!(e("Windows", "company", None).is_err(), "Windows company");
        assert_eq!(e("", "", None), Ok("rotate FileVault key (platform unknown)"));
        let mut pending = crate::core::kinds::tests::device("macOS", "company", "wipePending");
        pending.is_supervised = Some(true);
        assert!(ROTATE_FILEVAULT_KEY.eligible(&pending).is_err(), "a pending wipe first");
    }
}

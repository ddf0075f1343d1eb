//! `rotateBitLockerKeys` (beta): a new BitLocker recovery key, escrowed to Entra ID; the old one
//! stops working (docs/device-actions.md, "rotateBitLockerKeys").

use super::{DAY, DeviceAction, Eligibility, PRIVILEGED_OPERATIONS, RiskClass, Support, Wording};
use crate::core::device::Platform;

pub(crate) static ROTATE_BITLOCKER_KEYS: DeviceAction = DeviceAction {
    graph_name: "rotateBitLockerKeys",
    params: &[],
    refused: &[],
    role: PRIVILEGED_OPERATIONS,
    beta_only: true,
    class: RiskClass::Disruptive,
    eligibility: Eligibility::Table(Support {
        platforms: &[Platform::Windows],
        corporate_on: &[],
        personal_on: &[],
        supervised_on: &[],
        named: "Windows",
        what: "rotate BitLocker keys",
        unknown: "rotate BitLocker keys (platform unknown)",
    }),
    reported_as: &["rotateBitLockerKeys"],
    audited_as: &["rotateBitLockerKeys"],
    removal: None,
    default_cooldown: Some(DAY),
    loses: None,
    wording: Wording { short: "rotation", phrase: "rotate BitLocker keys", noun: "BitLocker key rotation" },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::kinds::tests::{on, on_pending_wipe};

    #[test]
    fn platforms() {
        let e = |os: &str, owner: &str, supervised: Option<bool>| on(&ROTATE_BITLOCKER_KEYS, os, owner, supervised);
        assert_eq!(e("Windows", "company", None), Ok("rotate BitLocker keys"), "Windows company");
        assert!(e("macOS", "company", None).is_err(), "macOS company");
        assert_eq!(e("", "", None), Ok("rotate BitLocker keys (platform unknown)"));
        assert!(on_pending_wipe(&ROTATE_BITLOCKER_KEYS, "Windows", "company").is_err(), "a pending wipe first");
    }
}

//! `rotateBitLockerKeys` (beta): a new BitLocker recovery key, escrowed to Entra ID; the old one
//! stops working (docs/device-actions.md, "rotateBitLockerKeys").

use super::{DAY, DeviceAction, PRIVILEGED_OPERATIONS, RiskClass, Support, Wording};
use crate::core::device::{Device, Platform};

pub(crate) static ROTATE_BITLOCKER_KEYS: DeviceAction = DeviceAction {
    graph_name: "rotateBitLockerKeys",
    params: &[],
    refused: &[],
    role: PRIVILEGED_OPERATIONS,
    beta_only: true,
    class: RiskClass::Disruptive,
    eligibility,
    reported_as: &["rotateBitLockerKeys"],
    audited_as: &["rotateBitLockerKeys"],
    removal: None,
    default_cooldown: Some(DAY),
    loses: None,
    wording: Wording { short: "rotation", phrase: "rotate BitLocker keys", noun: "BitLocker key rotation" },
};

static SUPPORT: Support = Support {
    platforms: &[Platform::Windows],
    corporate_on: &[],
    personal_on: &[],
    supervised_on: &[],
    named: "Windows",
};

fn eligibility(d: &Device) -> Result<&'static str, String> {
    SUPPORT.check(d, "rotate BitLocker keys", "rotate BitLocker keys (platform unknown)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms() {
        let e = |os: &str, owner: &str, supervised: Option<bool>| {
            let mut d = crate::core::kinds::tests::device(os, owner, "managed");
            d.is_supervised = supervised;
            ROTATE_BITLOCKER_KEYS.eligible(&d)
        };
        assert_eq!(e("Windows", "company", None), Ok("rotate BitLocker keys"), "Windows company");
        assert!(e("macOS", "company", None).is_err(), "macOS company");
        assert_eq!(e("", "", None), Ok("rotate BitLocker keys (platform unknown)"));
        let mut pending = crate::core::kinds::tests::device("Windows", "company", "wipePending");
        pending.is_supervised = Some(true);
        assert!(ROTATE_BITLOCKER_KEYS.eligible(&pending).is_err(), "a pending wipe first");
    }
}

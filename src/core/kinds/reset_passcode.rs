//! `resetPasscode`: a new passcode on Android and AOSP devices; on corporate iOS/iPadOS the same
//! call removes the passcode (docs/graph-facts.md, "Actions and answers").

use super::{DeviceAction, Eligibility, PRIVILEGED_OPERATIONS, RiskClass, Wording};
use crate::core::device::{Device, Platform};

/// `POST …/managedDevices/{id}/resetPasscode`, no body; every accepted call mints a new
/// passcode, so a second one is never harmless.
pub(crate) static RESET_PASSCODE: DeviceAction = DeviceAction {
    graph_name: "resetPasscode",
    params: &[],
    refused: &[],
    role: PRIVILEGED_OPERATIONS,
    beta_only: false,
    class: RiskClass::Disruptive,
    eligibility: Eligibility::Custom(eligibility),
    // A passcode removed from the portal on iOS/iPadOS is the same effect, reported as such.
    reported_as: &["resetPasscode", "removePasscode"],
    audited_as: &["resetPasscode"],
    removal: None,
    // The policy's `cooldown` alone, as resets have always had: bumping `round` resets again.
    default_cooldown: None,
    loses: None,
    wording: Wording { short: "reset", phrase: "reset passcode", noun: "passcode reset" },
};

/// Whether Intune can reset (or remove) the passcode of `d`; `Err` says why not.
fn eligibility(d: &Device) -> Result<&'static str, String> {
    let os = d.operating_system.as_deref().unwrap_or_default();
    let owner = d.managed_device_owner_type.as_deref().unwrap_or_default().to_ascii_lowercase();
    if let Some(what) = super::pending_removal(d) {
        return Err(format!("device is pending {what}: Intune would cancel the reset"));
    }
    match Platform::of(os) {
        Some(Platform::Android | Platform::Aosp) => Ok("reset passcode"),
        // Intune did not say: let it decide (a 400 or a later `notSupported` is recorded).
        None if os.trim().is_empty() => Ok("reset passcode (platform unknown)"),
        Some(Platform::Ios | Platform::Ipados) if owner == "company" => Ok("remove passcode"),
        Some(Platform::Ios | Platform::Ipados) => Err(format!(
            "{} device owned by `{}`: only corporate iOS/iPadOS devices support it",
            if os.is_empty() { "iOS" } else { os },
            if owner.is_empty() { "unknown" } else { &owner }
        )),
        Some(Platform::Macos | Platform::Windows) | None => {
            Err(format!("{os} is not supported: only Android, AOSP and corporate iOS/iPadOS"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RESET_PASSCODE as RESET;
    use crate::core::kinds::tests::device;
    use crate::core::kinds::{PRIVILEGED_OPERATIONS, RiskClass};

    #[test]
    fn platforms() {
        let e = |os, owner, state| RESET.eligible(&device(os, owner, state));
        assert_eq!(e("Android", "personal", "managed"), Ok("reset passcode"));
        assert_eq!(e("AOSP", "company", "managed"), Ok("reset passcode"));
        assert_eq!(e("iOS", "company", "managed"), Ok("remove passcode"));
        assert_eq!(e("iPadOS", "company", "managed"), Ok("remove passcode"));
        assert_eq!(e("iOS", "Company", "managed"), Ok("remove passcode"), "owner in any case");
        assert_eq!(
            e("iOS", "personal", "managed"),
            Err("iOS device owned by `personal`: only corporate iOS/iPadOS devices support it".into())
        );
        assert_eq!(
            e("Windows", "company", "managed"),
            Err("Windows is not supported: only Android, AOSP and corporate iOS/iPadOS".into())
        );
        assert!(e("macOS", "company", "managed").is_err());
        assert_eq!(
            e("Android", "company", "retirePending"),
            Err("device is pending retire: Intune would cancel the reset".into())
        );
        assert!(e("iOS", "company", "wipePending").is_err(), "a pending removal first, whatever the platform");
        assert_eq!(e("", "", ""), Ok("reset passcode (platform unknown)"), "unknown platforms are left to Intune");
    }

    #[test]
    fn reported_names() {
        for name in ["resetPasscode", "RESETPASSCODE", "removePasscode", "RemovePasscode"] {
            assert!(RESET.is_reported_as(name), "{name}");
        }
        for name in ["remoteLock", "wipe", "resetPasscodeX", ""] {
            assert!(!RESET.is_reported_as(name), "{name}");
        }
        // Refresh takes only the results of the call this tool makes.
        assert!(RESET.is_own_result("resetPasscode") && RESET.is_own_result("resetpasscode"));
        assert!(!RESET.is_own_result("removePasscode"));
    }

    #[test]
    fn how_it_is_sent() {
        assert_eq!(RESET.graph_name, "resetPasscode");
        assert!(RESET.params.is_empty() && RESET.body(&Default::default()).is_none(), "no body");
        assert_eq!(RESET.role, PRIVILEGED_OPERATIONS);
        assert_eq!(RESET.class, RiskClass::Disruptive, "every accepted call mints a new passcode");
        assert!(!RESET.harmless());
        assert_eq!(RESET.default_cooldown, None);
        assert_eq!(crate::core::action::ActionKind::PasscodeReset.spec().graph_name, "resetPasscode");
    }
}

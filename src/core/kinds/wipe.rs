//! `wipe`: a factory reset. `keepEnrollmentData` keeps the device enrolled, `keepUserData` keeps
//! the user's data (Windows), `persistEsimDataPlan` keeps the cellular plan. Audited as
//! `factoryReset`; a pending wipe shows in `managementState`, and the device then leaves Intune
//! (docs/device-actions.md, "wipe").
//!
//! A Mac may need a six-digit unlock code with its wipe: that code is a secret, which a manifest
//! in git must never hold, so this tool neither takes it nor wipes Macs.

use super::{
    DeviceAction, Eligibility, PRIVILEGED_OPERATIONS, Param, ParamType, Parameters, Removal, RiskClass, Support,
    Wording,
};
use crate::core::device::Platform;

pub(crate) static WIPE: DeviceAction = DeviceAction {
    graph_name: "wipe",
    params: &[
        Param {
            name: "keepEnrollmentData",
            ty: ParamType::Bool,
            doc: "Keep the device enrolled in Intune after the reset.",
            words: "keep enrollment data",
        },
        Param {
            name: "keepUserData",
            ty: ParamType::Bool,
            doc: "Keep the user's data (Windows).",
            words: "keep user data",
        },
        Param {
            name: "persistEsimDataPlan",
            ty: ParamType::Bool,
            doc: "Keep the eSIM's cellular data plan.",
            words: "keep eSIM plan",
        },
    ],
    refused: &[(
        "macOsUnlockCode",
        "the unlock code is a secret and a manifest is in git: wipe a Mac that needs one from the Intune admin center",
    )],
    role: PRIVILEGED_OPERATIONS,
    beta_only: false,
    class: RiskClass::Destructive,
    eligibility: Eligibility::Table(Support {
        platforms: &[Platform::Android, Platform::Aosp, Platform::Ios, Platform::Ipados, Platform::Windows],
        corporate_on: &[Platform::Android],
        personal_on: &[],
        supervised_on: &[],
        named: "corporate Android, AOSP, iOS/iPadOS and Windows (a Mac may need an unlock code, a secret)",
        what: "wipe",
        unknown: "wipe (platform unknown)",
    }),
    reported_as: &["wipe", "factoryReset", "factoryResetKeepEnrollmentData"],
    audited_as: &["factoryReset", "factoryResetKeepEnrollmentData"],
    removal: Some(Removal { issued: &["wipeIssued", "wipePending"] }),
    default_cooldown: None,
    loses: Some(loses),
    wording: Wording { short: "wipe", phrase: "wipe", noun: "wipe" },
};

/// What a wipe with these parameters takes from the device.
fn loses(p: &Parameters) -> String {
    let data = if p.flag("keepUserData") {
        "apps, settings and company data (user data is kept)"
    } else {
        "everything on it: apps, settings and all user data"
    };
    let enrollment = if p.flag("keepEnrollmentData") { "; it stays enrolled" } else { ", and its enrollment" };
    format!("{data}{enrollment}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::kinds::ParamValue;

    #[test]
    fn platforms() {
        let e = |os: &str, owner: &str| WIPE.eligible(&crate::core::kinds::tests::device(os, owner, "managed"));
        assert_eq!(e("Android", "company"), Ok("wipe"));
        assert_eq!(e("Windows", "personal"), Ok("wipe"));
        assert_eq!(e("iOS", "personal"), Ok("wipe"));
        assert!(e("Android", "personal").is_err(), "a personal Android device is retired, not wiped");
        let mac = e("macOS", "company").expect_err("a Mac may need an unlock code");
        assert!(mac.contains("unlock code"), "{mac}");
        assert!(WIPE.eligible(&crate::core::kinds::tests::device("Windows", "company", "wipePending")).is_err());
    }

    #[test]
    fn the_loss_is_named_by_the_parameters() {
        let p = |keep_user: bool, keep_enrollment: bool| {
            Parameters(
                [("keepUserData", keep_user), ("keepEnrollmentData", keep_enrollment)]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), ParamValue::Bool(v)))
                    .collect(),
            )
        };
        assert_eq!(loses(&p(false, false)), "everything on it: apps, settings and all user data, and its enrollment");
        assert_eq!(loses(&p(true, true)), "apps, settings and company data (user data is kept); it stays enrolled");
    }
}

//! `windowsDefenderScan`: a Microsoft Defender Antivirus scan, full unless `quickScan`. A second
//! scan does no harm; audited as `quickScan` or `fullScan` (docs/device-actions.md,
//! "windowsDefenderScan").

use super::{DeviceAction, Eligibility, PRIVILEGED_OPERATIONS, Param, ParamType, RiskClass, Support, Wording};
use crate::core::device::Platform;

pub(crate) static WINDOWS_DEFENDER_SCAN: DeviceAction = DeviceAction {
    graph_name: "windowsDefenderScan",
    params: &[Param {
        name: "quickScan",
        ty: ParamType::Bool,
        doc: "A quick scan instead of a full one.",
        words: "quick",
    }],
    refused: &[],
    role: PRIVILEGED_OPERATIONS,
    beta_only: false,
    class: RiskClass::Harmless,
    eligibility: Eligibility::Table(Support {
        platforms: &[Platform::Windows],
        corporate_on: &[],
        personal_on: &[],
        supervised_on: &[],
        named: "Windows",
        what: "scan",
        unknown: "scan (platform unknown)",
    }),
    reported_as: &["windowsDefenderScan", "quickScan", "fullScan"],
    audited_as: &["quickScan", "fullScan"],
    removal: None,
    default_cooldown: None,
    loses: None,
    wording: Wording { short: "scan", phrase: "scan", noun: "Defender scan" },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::kinds::tests::{on, on_pending_wipe};

    #[test]
    fn platforms() {
        let e = |os: &str, owner: &str, supervised: Option<bool>| on(&WINDOWS_DEFENDER_SCAN, os, owner, supervised);
        assert_eq!(e("Windows", "personal", None), Ok("scan"), "Windows personal");
        assert!(e("Android", "company", None).is_err(), "Android company");
        assert_eq!(e("", "", None), Ok("scan (platform unknown)"));
        assert!(on_pending_wipe(&WINDOWS_DEFENDER_SCAN, "Windows", "personal").is_err(), "a pending wipe first");
    }
}

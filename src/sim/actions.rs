//! The device actions the simulator serves, as Intune treats each one: which Graph version has it,
//! the body it takes, the platforms it runs on, and the names Intune reports it under.
//!
//! This table is the simulator's own, written from Intune's documentation (the facts, with their
//! sources, are in docs/device-actions.md), never taken from the tool's kind descriptions: a fake
//! that shares the tool's beliefs cannot catch them wrong.
//!
//! **Platform rule** (one for every action): an operating system the action does not exist for
//! is refused at once (`400`, as Intune refuses a passcode reset on Windows); an operating system
//! it exists for, on a device that does not qualify (ownership, enrolment mode, supervision), is
//! accepted (`204`) and its result ends `notSupported`, as a personal iPhone's passcode reset
//! does.

use serde_json::{Map, Value};

/// How a device qualifies for an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Support {
    /// Accepted and carried out.
    Yes,
    /// Accepted, then reported `notSupported`.
    NotOnThisDevice,
    /// Refused with `400` before anything happens.
    NotOnThisPlatform,
}

/// A type of a body property, as Graph's metadata declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Boolean,
    String,
    /// An enum: one of these strings.
    Enum(&'static str, &'static [&'static str]),
}

/// A body property: its name, its type, and whether only beta has it.
type Param = (&'static str, Ty, bool);

const OBLITERATION: Ty = Ty::Enum(
    "microsoft.graph.obliterationBehavior",
    &["default", "doNotObliterate", "obliterateWithWarning", "always", "unknownFutureValue"],
);

/// One device action.
#[derive(Debug)]
pub(crate) struct Action {
    /// The Graph action (the last segment of the POST), also its `deviceActionResults.actionName`.
    pub name: &'static str,
    /// Only `/beta` has it; `/v1.0` answers as for any unknown segment.
    pub beta_only: bool,
    params: &'static [Param],
    /// The `@odata.type` of its `deviceActionResults` entry.
    pub result_type: &'static str,
}

const NO_PARAMS: &[Param] = &[];

/// Every action the simulator serves.
pub(crate) const ACTIONS: &[Action] = &[
    plain("remoteLock", "#microsoft.graph.remoteLockActionResult"),
    plain("syncDevice", GENERIC),
    plain("rebootNow", GENERIC),
    plain("shutDown", GENERIC),
    plain("retire", GENERIC),
    Action {
        name: "wipe",
        beta_only: false,
        params: &[
            ("keepEnrollmentData", Ty::Boolean, false),
            ("keepUserData", Ty::Boolean, false),
            ("persistEsimDataPlan", Ty::Boolean, false),
            ("macOsUnlockCode", Ty::String, false),
            ("obliterationBehavior", OBLITERATION, false),
            ("useProtectedWipe", Ty::Boolean, true),
        ],
        result_type: GENERIC,
    },
    Action {
        name: "cleanWindowsDevice",
        beta_only: false,
        params: &[("keepUserData", Ty::Boolean, false)],
        result_type: GENERIC,
    },
    Action {
        name: "rotateBitLockerKeys",
        beta_only: true,
        params: NO_PARAMS,
        result_type: "#microsoft.graph.rotateBitLockerKeysDeviceActionResult",
    },
    Action { name: "rotateFileVaultKey", beta_only: true, params: NO_PARAMS, result_type: GENERIC },
    Action { name: "rotateLocalAdminPassword", beta_only: true, params: NO_PARAMS, result_type: GENERIC },
    plain("locateDevice", "#microsoft.graph.locateDeviceActionResult"),
    Action {
        name: "windowsDefenderScan",
        beta_only: false,
        params: &[("quickScan", Ty::Boolean, false)],
        result_type: "#microsoft.graph.windowsDefenderScanActionResult",
    },
    Action {
        name: "enableLostMode",
        beta_only: true,
        params: &[("message", Ty::String, false), ("phoneNumber", Ty::String, false), ("footer", Ty::String, false)],
        result_type: GENERIC,
    },
    plain("disableLostMode", GENERIC),
    plain("resetPasscode", "#microsoft.graph.resetPasscodeActionResult"),
];

const GENERIC: &str = "#microsoft.graph.deviceActionResult";

const fn plain(name: &'static str, result_type: &'static str) -> Action {
    Action { name, beta_only: false, params: NO_PARAMS, result_type }
}

/// The action named `name` (exactly: Graph's segments are case-sensitive).
pub(crate) fn lookup(name: &str) -> Option<&'static Action> {
    ACTIONS.iter().find(|a| a.name == name)
}

/// The body property that holds a secret: never kept, never logged by the simulator.
pub(crate) const SECRET_PARAM: &str = "macOsUnlockCode";

/// The `remoteAction` enum of the audit log (its members as Graph's beta reference lists them):
/// what `$filter=action eq '…'` accepts.
pub(crate) const REMOTE_ACTIONS: &[&str] = &[
    "unknown",
    "factoryReset",
    "removeCompanyData",
    "resetPasscode",
    "remoteLock",
    "enableLostMode",
    "disableLostMode",
    "locateDevice",
    "rebootNow",
    "recoverPasscode",
    "cleanWindowsDevice",
    "logoutSharedAppleDeviceActiveUser",
    "quickScan",
    "fullScan",
    "windowsDefenderUpdateSignatures",
    "factoryResetKeepEnrollmentData",
    "updateDeviceAccount",
    "automaticRedeployment",
    "shutDown",
    "rotateBitLockerKeys",
    "rotateFileVaultKey",
    "getFileVaultKey",
    "setDeviceName",
    "activateDeviceEsim",
    "rotateLocalAdminPassword",
    "unknownFutureValue",
];

impl Action {
    /// The body Graph would accept, or its complaint. An empty body and `{}` are the same.
    pub(crate) fn parse_body(&self, body: &[u8], beta: bool) -> Result<Map<String, Value>, String> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Map::new());
        }
        let value: Value =
            serde_json::from_slice(body).map_err(|e| format!("Invalid JSON in the request body: {e}"))?;
        let Value::Object(props) = value else {
            return Err(
                "An unexpected 'PrimitiveValue' node was found when reading from the JSON reader. A 'StartObject' node was expected."
                    .into(),
            );
        };
        for (k, v) in &props {
            let Some((_, ty, _)) = self.params.iter().find(|(n, _, only_beta)| n == k && (beta || !only_beta)) else {
                return Err(format!(
                    "The parameter '{k}' in the request payload is not a valid parameter for the operation '{}'.",
                    self.name
                ));
            };
            let ok = match (ty, v) {
                (Ty::Boolean, Value::Bool(_)) => true,
                (Ty::String | Ty::Enum(..), Value::Null) => true,
                (Ty::String, Value::String(_)) => true,
                (Ty::Enum(_, members), Value::String(s)) => {
                    if !members.contains(&s.as_str()) {
                        let Ty::Enum(name, _) = ty else { unreachable!("matched an enum") };
                        return Err(format!("The string '{s}' is not a valid enumeration type constant for '{name}'."));
                    }
                    true
                }
                _ => false,
            };
            if !ok {
                let expected = match ty {
                    Ty::Boolean => "Edm.Boolean",
                    Ty::String => "Edm.String",
                    Ty::Enum(name, _) => name,
                };
                return Err(format!("Cannot convert the literal '{v}' to the expected type '{expected}'."));
            }
        }
        Ok(props)
    }

    /// The `remoteAction` the audit log names it by (none for a sync: the enum has no member).
    pub(crate) fn audit_name(&self, params: &Map<String, Value>) -> Option<&'static str> {
        Some(match self.name {
            "syncDevice" => return None,
            "wipe" => "factoryReset",
            "retire" => "removeCompanyData",
            "windowsDefenderScan" if params.get("quickScan") == Some(&Value::Bool(true)) => "quickScan",
            "windowsDefenderScan" => "fullScan",
            other => other,
        })
    }

    /// Whether the device leaves the tenant once this action is done (a wipe that keeps the
    /// enrolment does not).
    pub(crate) fn removes_device(&self, params: &Map<String, Value>) -> bool {
        match self.name {
            "retire" => true,
            "wipe" => params.get("keepEnrollmentData") != Some(&Value::Bool(true)),
            _ => false,
        }
    }

    /// Whether Graph's answer for this action on this device carries a new passcode (a reset
    /// everywhere but iOS/iPadOS, where the passcode is removed).
    pub(crate) fn returns_passcode(&self, device: &Map<String, Value>) -> bool {
        self.name == "resetPasscode" && Platform::of(device).os != System::Ios
    }

    /// Whether Intune carries this action out on a device with these properties.
    pub(crate) fn support(&self, device: &Map<String, Value>) -> Support {
        use {Mode::*, Support::*, System::*};
        let p = Platform::of(device);
        let on = |ok: bool| if ok { Yes } else { NotOnThisDevice };
        let enterprise = matches!(p.mode, Dedicated | FullyManaged | CorporateWorkProfile);
        match (self.name, p.os) {
            ("resetPasscode", Windows | MacOs) => NotOnThisPlatform,
            ("resetPasscode", Ios) => on(p.company),
            ("resetPasscode", _) => Yes,
            ("remoteLock", Android) => on(enterprise),
            ("remoteLock", Aosp | Ios | MacOs | VisionOs) => Yes,
            ("syncDevice", Android | Aosp | Ios | MacOs | Windows) => Yes,
            ("rebootNow", Android) => on(matches!(p.mode, Dedicated | FullyManaged)),
            ("rebootNow", Ios | TvOs) => on(p.supervised),
            ("rebootNow", Aosp | ChromeOs | MacOs | Windows) => Yes,
            ("shutDown", Ios) => on(p.supervised),
            ("shutDown", MacOs) => Yes,
            ("retire", Android) => on(matches!(p.mode, DeviceAdministrator | PersonalWorkProfile)),
            ("retire", Ios | MacOs | TvOs | VisionOs | Windows) => Yes,
            ("wipe", Android) => on(enterprise),
            ("wipe", Aosp | ChromeOs | Ios | MacOs | Windows) => Yes,
            ("cleanWindowsDevice" | "rotateBitLockerKeys" | "windowsDefenderScan", Windows) => Yes,
            ("rotateFileVaultKey", MacOs) => on(p.company),
            ("rotateLocalAdminPassword", Windows) => on(p.company),
            ("rotateLocalAdminPassword", MacOs) => on(p.company && p.automated_enrollment),
            ("locateDevice", Android) => on(enterprise),
            ("locateDevice", Ios) => on(p.supervised),
            ("locateDevice", Windows) => Yes,
            ("enableLostMode" | "disableLostMode", Ios) => on(p.supervised && p.company),
            _ => NotOnThisPlatform,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Android,
    Aosp,
    Ios,
    MacOs,
    Windows,
    ChromeOs,
    TvOs,
    VisionOs,
    Other,
}

/// How an Android device is enrolled (meaningless elsewhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Dedicated,
    FullyManaged,
    CorporateWorkProfile,
    PersonalWorkProfile,
    DeviceAdministrator,
}

/// What the platform rules look at, read from a managedDevice's properties.
#[derive(Debug)]
struct Platform {
    os: System,
    mode: Mode,
    company: bool,
    supervised: bool,
    /// Apple Automated Device Enrollment.
    automated_enrollment: bool,
}

impl Platform {
    fn of(d: &Map<String, Value>) -> Platform {
        let text = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or_default().to_ascii_lowercase();
        let (os, enrolment) = (text("operatingSystem"), text("deviceEnrollmentType"));
        let os = if os.contains("aosp") || enrolment.starts_with("androidaosp") {
            System::Aosp
        } else if os.contains("android") {
            System::Android
        } else if os.contains("ios") || os.contains("ipados") {
            System::Ios
        } else if os.contains("macos") || os == "mac os x" {
            System::MacOs
        } else if os.contains("windows") {
            System::Windows
        } else if os.contains("chrome") {
            System::ChromeOs
        } else if os.contains("tvos") {
            System::TvOs
        } else if os.contains("visionos") {
            System::VisionOs
        } else {
            System::Other
        };
        let company = text("managedDeviceOwnerType") == "company";
        let mode = match enrolment.as_str() {
            "androidenterprisededicateddevice" => Mode::Dedicated,
            "androidenterprisefullymanaged" => Mode::FullyManaged,
            "androidenterprisecorporateworkprofile" => Mode::CorporateWorkProfile,
            "androidenterprisepersonalworkprofile" => Mode::PersonalWorkProfile,
            _ if !company => Mode::PersonalWorkProfile,
            _ => Mode::DeviceAdministrator,
        };
        Platform {
            os,
            mode,
            company,
            supervised: d.get("isSupervised") == Some(&Value::Bool(true)),
            automated_enrollment: matches!(enrolment.as_str(), "applebulkwithuser" | "applebulkwithoutuser"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Support, lookup};
    use serde_json::json;

    fn device(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().expect("an object").clone()
    }

    #[test]
    fn bodies_are_checked_like_graph_checks_them() {
        let wipe = lookup("wipe").expect("wipe");
        assert!(wipe.parse_body(b"", false).is_ok_and(|m| m.is_empty()));
        assert!(wipe.parse_body(br#"{"keepUserData": true, "obliterationBehavior": "always"}"#, false).is_ok());
        assert!(wipe.parse_body(br#"{"useProtectedWipe": true}"#, false).is_err(), "beta only");
        assert!(wipe.parse_body(br#"{"useProtectedWipe": true}"#, true).is_ok());
        let err = wipe.parse_body(br#"{"keepUserData": "yes"}"#, false).expect_err("a string for a Boolean");
        assert!(err.contains("Edm.Boolean"), "{err}");
        assert!(wipe.parse_body(br#"{"obliterationBehavior": "sometimes"}"#, false).is_err());
        assert!(wipe.parse_body(br#"[]"#, false).is_err());
        let lock = lookup("remoteLock").expect("remoteLock");
        assert!(lock.parse_body(b"{}", false).is_ok());
        assert!(lock.parse_body(br#"{"keepUserData": true}"#, false).is_err(), "no body");
        assert!(lookup("RemoteLock").is_none(), "segments are case-sensitive");
    }

    #[test]
    fn an_unknown_os_is_refused_a_known_one_that_does_not_qualify_is_not_supported() {
        let iphone = device(json!({"operatingSystem": "iOS", "managedDeviceOwnerType": "company"}));
        let shut = lookup("shutDown").expect("shutDown");
        assert_eq!(shut.support(&iphone), Support::NotOnThisDevice, "unsupervised");
        let mut supervised = iphone.clone();
        supervised.insert("isSupervised".into(), json!(true));
        assert_eq!(shut.support(&supervised), Support::Yes);
        let windows = device(json!({"operatingSystem": "Windows", "managedDeviceOwnerType": "company"}));
        assert_eq!(shut.support(&windows), Support::NotOnThisPlatform);
        assert_eq!(lookup("resetPasscode").expect("reset").support(&windows), Support::NotOnThisPlatform);
        let aosp = device(json!({"operatingSystem": "AOSP", "managedDeviceOwnerType": "company"}));
        assert_eq!(lookup("resetPasscode").expect("reset").support(&aosp), Support::Yes);
    }
}

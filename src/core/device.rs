//! Managed devices as the pure core sees them: the fields plans show and their platform (which
//! devices an action can take is its kind's: [`crate::core::kinds`]). Nothing here talks to Graph
//! (which deserializes into [`Device`]); the plan, policy and renderers depend on this module,
//! never on `graph`.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::Deserialize;

/// The device fields plans show and eligibility needs; never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Device {
    pub id: String,
    #[serde(default)]
    pub device_name: Option<String>,
    #[serde(default)]
    pub serial_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imei: Option<String>,
    #[serde(default)]
    pub operating_system: Option<String>,
    #[serde(default)]
    pub os_version: Option<String>,
    #[serde(default)]
    pub managed_device_owner_type: Option<String>,
    #[serde(default)]
    pub device_enrollment_type: Option<String>,
    #[serde(default)]
    pub management_state: Option<String>,
    /// Whether Apple's supervision is on (iOS/iPadOS): some actions need it. `None` when Intune
    /// did not say, which leaves the decision to Intune.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_supervised: Option<bool>,
    #[serde(default)]
    pub last_sync_date_time: Option<String>,
    /// The device's primary user: read from Intune only when the plan is to show it
    /// (`plan.showUser`, `--show-user`), and never shown otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_principal_name: Option<String>,
    /// What Intune did to the device lately (resets made by anyone: this tool, the portal,
    /// scripts), for spotting resets made outside the tool. Never saved with a plan.
    #[serde(default, deserialize_with = "null_as_empty", skip_serializing)]
    pub device_action_results: Vec<ActionResult>,
}

/// `null` read as no entries (a list Graph, or a stand-in for it, left empty that way).
pub(crate) fn null_as_empty<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// A time as Graph writes it (RFC 3339 with an offset); one without an offset, as some
/// stand-ins write, is read as UTC. Anything else fails the answer: a reset whose time cannot be
/// read must not pass for no reset (refresh then decides nothing, which is safe).
fn lenient_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else { return Ok(None) };
    let utc = || text.parse::<jiff::civil::DateTime>().ok()?.to_zoned_datetime(jiff::tz::TimeZone::UTC).ok();
    match text.parse::<Timestamp>() {
        Ok(t) => Ok(Some(t)),
        Err(e) => utc().map(|z| Some(z.timestamp())).ok_or_else(|| serde::de::Error::custom(e)),
    }
}

/// One entry of a device's `deviceActionResults`. Deliberately without `passcode`/`unlockPin`:
/// serde skips them, so they never reach our memory beyond the response bytes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ActionResult {
    #[serde(default)]
    pub action_name: String,
    #[serde(default)]
    pub action_state: String,
    #[serde(default, deserialize_with = "lenient_time")]
    pub start_date_time: Option<Timestamp>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub last_updated_date_time: Option<Timestamp>,
}

/// One entry of the beta audit log `remoteActionAudits` (it has no passcode field).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RemoteActionAudit {
    pub id: String,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub action_state: Option<String>,
    #[serde(default)]
    pub managed_device_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub request_date_time: Option<Timestamp>,
    /// Who started it; empty for an app (such as this tool).
    #[serde(default)]
    pub initiated_by_user_principal_name: Option<String>,
}

impl RemoteActionAudit {
    /// Whether a person started it (an app, such as this tool, leaves the initiator empty).
    pub(crate) fn by_person(&self) -> bool {
        self.initiated_by_user_principal_name.as_deref().is_some_and(|u| !u.trim().is_empty())
    }
}

/// The `$select` for [`Device`]: everything but the user.
pub(crate) const DEVICE_SELECT: &str = "id,deviceName,serialNumber,imei,operatingSystem,osVersion,managedDeviceOwnerType,deviceEnrollmentType,managementState,isSupervised,lastSyncDateTime,deviceActionResults";
/// The `$select` for [`Device`] with its primary user (`plan.showUser`).
pub(crate) const DEVICE_SELECT_WITH_USER: &str = "id,deviceName,serialNumber,imei,operatingSystem,osVersion,managedDeviceOwnerType,deviceEnrollmentType,managementState,isSupervised,lastSyncDateTime,deviceActionResults,userPrincipalName";

/// A device platform, as policy names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Platform {
    Android,
    Aosp,
    Ios,
    Ipados,
    Macos,
    Windows,
}

impl Platform {
    /// The platform an `operatingSystem` (free text in Intune) names, if any of these.
    pub(crate) fn of(operating_system: &str) -> Option<Platform> {
        let os = operating_system.to_ascii_lowercase();
        if os.contains("aosp") {
            Some(Platform::Aosp)
        } else if os.contains("android") {
            Some(Platform::Android)
        } else if os.contains("ipados") {
            Some(Platform::Ipados)
        } else if os.contains("ios") {
            Some(Platform::Ios)
        } else if os.contains("macos") || os.contains("mac os") {
            Some(Platform::Macos)
        } else if os.contains("windows") {
            Some(Platform::Windows)
        } else {
            None
        }
    }
}

/// Name, serial, OS, owner type and last sync, for messages.
pub(crate) fn describe(d: &Device) -> String {
    let f = |v: &Option<String>| v.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| "-".into());
    format!(
        "{}, serial {}, {} {}, {}, last sync {}",
        f(&d.device_name),
        f(&d.serial_number),
        f(&d.operating_system),
        f(&d.os_version),
        f(&d.managed_device_owner_type),
        f(&d.last_sync_date_time)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_fields_of_one_entry_do_not_fail_the_answer() {
        let null: Device = serde_json::from_str(r#"{"id": "a", "deviceActionResults": null}"#).expect("null results");
        assert!(null.device_action_results.is_empty());
        let odd: Device = serde_json::from_str(
            r#"{"id": "a", "deviceActionResults": [
                {"actionName": "aPasscodeAction", "actionState": "done", "startDateTime": "2026-11-30T17:01:00", "passcode": "123456"},
                {"actionName": "remoteLock", "lastUpdatedDateTime": null}
            ]}"#,
        )
        .expect("odd entries");
        let [first, lock] = odd.device_action_results.as_slice() else { panic!("two entries") };
        assert_eq!(first.start_date_time, Some("2026-11-30T17:01:00Z".parse().expect("time")), "no offset: UTC");
        assert_eq!((lock.action_state.as_str(), lock.start_date_time), ("", None));
        // A time that cannot be read at all fails the answer: an action must not pass for none.
        let garbage =
            r#"{"id": "a", "deviceActionResults": [{"actionName": "anAction", "startDateTime": "yesterday"}]}"#;
        assert!(serde_json::from_str::<Device>(garbage).is_err());
        assert!(!format!("{odd:?}").contains("123456"), "the passcode is never read");
    }
}

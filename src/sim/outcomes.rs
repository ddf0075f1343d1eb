//! What Intune makes of an accepted device action: the device's `deviceActionResults` entry
//! (pending, then its final state), the audit log's entry, the device's `managementState`, and a
//! wiped or retired device leaving the tenant.
//!
//! Nothing here is stored as "done" or "gone": both follow from when the action started on
//! Intune's clock and the configured delays ([`SimConfig::complete_after`],
//! [`SimConfig::leave_after`]), so actions restored between `--simulate` runs age the same way.
//!
//! [`SimConfig::complete_after`]: super::SimConfig::complete_after
//! [`SimConfig::leave_after`]: super::SimConfig::leave_after

use std::time::Instant;

use serde_json::{Map, Value, json};

use super::actions::{self, Action, Support};
use super::state::{ActionRecord, SimState};

/// The location a locate reports: distinctive, so a leak test can never mistake anything else
/// for it (personal data the tool must not keep).
pub const LOCATION: (f64, f64) = (47.6396211, -122.1283419);

/// States in which Intune carries out only a wipe, retire or delete and cancels anything else.
const TAKEN_OVER: [&str; 5] = ["retirepending", "wipepending", "deletepending", "retireissued", "wipeissued"];

impl SimState {
    /// Records `action` on device `i` as accepted, started by `initiator` ("" for an app) at
    /// `start` on Intune's clock, with its (already validated) `parameters`. `false`, and nothing
    /// recorded, when the device's platform does not have the action.
    pub(crate) fn apply_at(
        &mut self,
        i: usize,
        action: &Action,
        mut parameters: Map<String, Value>,
        initiator: &str,
        start: jiff::Timestamp,
    ) -> bool {
        let fields = &self.devices[i].fields;
        let support = action.support(fields);
        if support == Support::NotOnThisPlatform {
            return false;
        }
        let taken_over = !matches!(action.name, "wipe" | "retire")
            && TAKEN_OVER.contains(&self.management_state(i).to_ascii_lowercase().as_str());
        let final_state = if taken_over {
            "canceled"
        } else if support == Support::NotOnThisDevice {
            "notSupported"
        } else {
            "done"
        };
        // Secrets Graph hands back, distinctive so a leak test can never mistake a timestamp or
        // an id for one.
        let secret = |prefix: &str| format!("{prefix}{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let passcode = action.returns_passcode(fields).then(|| secret("Pc"));
        let unlock_pin = (action.name == "remoteLock" && final_state == "done").then(|| secret("Ul"));
        parameters.remove(actions::SECRET_PARAM);
        self.devices[i].actions.push(ActionRecord {
            name: action.name.into(),
            parameters,
            start,
            final_state: final_state.into(),
            passcode,
            unlock_pin,
            initiator: initiator.to_owned(),
            visible_at: Instant::now() + self.config.report_delay,
            audit_id: uuid::Uuid::new_v4().to_string(),
            from_fixture: false,
        });
        true
    }

    /// Whether `a` has reached its final state.
    fn completed(&self, a: &ActionRecord) -> bool {
        let elapsed = self.now().duration_since(a.start);
        jiff::SignedDuration::try_from(self.config.complete_after).is_ok_and(|c| elapsed >= c)
    }

    /// The wipe or retire that takes device `i` out of management, if any, and whether it will
    /// remove the device from the tenant.
    fn removal(&self, i: usize) -> Option<(&ActionRecord, bool)> {
        self.devices[i].actions.iter().filter(|a| a.final_state == "done").find_map(|a| {
            let action = actions::lookup(&a.name)?;
            matches!(action.name, "wipe" | "retire").then(|| (a, action.removes_device(&a.parameters)))
        })
    }

    /// Whether device `i` has left the tenant: its wipe or retire is done and
    /// [`leave_after`](super::SimConfig::leave_after) has passed since.
    pub(crate) fn gone(&self, i: usize) -> bool {
        let Some((a, true)) = self.removal(i) else { return false };
        let stay = self.config.complete_after.saturating_add(self.config.leave_after);
        jiff::SignedDuration::try_from(stay).is_ok_and(|stay| self.now().duration_since(a.start) >= stay)
    }

    /// Device `i`'s `managementState` now: `wipeIssued`/`retireIssued` while its wipe or retire
    /// is pending, `wipePending`/`retirePending` once done until it leaves; a wipe that keeps the
    /// enrolment gives the device back its state when done. Otherwise the fixture's value.
    pub(crate) fn management_state(&self, i: usize) -> String {
        let fixture = || self.devices[i].fields.get("managementState").and_then(Value::as_str).unwrap_or_default();
        match self.removal(i) {
            Some((a, _)) if !self.completed(a) => format!("{}Issued", a.name),
            Some((a, true)) => format!("{}Pending", a.name),
            _ => fixture().to_owned(),
        }
    }

    /// Device `i` as Graph shows it, with `deviceActionResults` (passcodes, unlock PINs and
    /// locations included, as the real service returns them), limited to `select` when given.
    pub(crate) fn render_device(&self, i: usize, select: Option<&[String]>) -> Value {
        let d = &self.devices[i];
        let mut obj = d.fields.clone();
        let state = self.management_state(i);
        if !state.is_empty() {
            obj.insert("managementState".into(), json!(state));
        }
        // A sync that completed is a check-in.
        let synced = d.actions.iter().filter(|a| a.name == "syncDevice" && self.completed(a)).map(|a| a.start).max();
        let last = obj.get("lastSyncDateTime").and_then(Value::as_str).and_then(|t| t.parse::<jiff::Timestamp>().ok());
        if let Some(synced) = synced.filter(|s| last.is_none_or(|l| *s > l)) {
            obj.insert("lastSyncDateTime".into(), json!(synced.to_string()));
        }
        let results: Vec<Value> =
            d.actions.iter().filter(|a| Instant::now() >= a.visible_at).map(|a| self.result(a)).collect();
        obj.insert("deviceActionResults".into(), Value::Array(results));
        if let Some(sel) = select {
            obj.retain(|k, _| k == "id" || sel.iter().any(|s| s.eq_ignore_ascii_case(k)));
            // Graph answers every property asked for: a device without a primary user has an
            // empty `userPrincipalName`.
            if sel.iter().any(|s| s.eq_ignore_ascii_case("userPrincipalName")) {
                obj.entry("userPrincipalName").or_insert_with(|| json!(""));
            }
        }
        Value::Object(obj)
    }

    /// `a`'s `deviceActionResults` entry, typed as Graph types it.
    fn result(&self, a: &ActionRecord) -> Value {
        let done = self.completed(a);
        let action = actions::lookup(&a.name);
        let mut r = json!({
            "@odata.type": action.map_or("#microsoft.graph.deviceActionResult", |x| x.result_type),
            "actionName": a.name,
            "actionState": if done { a.final_state.as_str() } else { "pending" },
            "startDateTime": a.start.to_string(),
            "lastUpdatedDateTime": self.now().to_string(),
        });
        if let Some(p) = &a.passcode {
            r["passcode"] = json!(p);
        }
        if let Some(p) = &a.unlock_pin {
            r["unlockPin"] = json!(p);
        }
        match a.name.as_str() {
            "locateDevice" => {
                r["deviceLocation"] = if done && a.final_state == "done" {
                    json!({
                        "latitude": LOCATION.0,
                        "longitude": LOCATION.1,
                        "altitude": 48.0,
                        "horizontalAccuracy": 12.0,
                        "verticalAccuracy": 8.0,
                        "heading": 0.0,
                        "speed": 0.0,
                        "lastCollectedDateTime": self.now().to_string(),
                    })
                } else {
                    Value::Null
                };
            }
            "rotateBitLockerKeys" => r["errorCode"] = json!(0),
            "windowsDefenderScan" => {
                let quick = a.parameters.get("quickScan") == Some(&Value::Bool(true));
                r["scanType"] = json!(if quick { "quickScan" } else { "fullScan" });
            }
            _ => {}
        }
        r
    }

    /// The audit log (`remoteActionAudits`): every action requested at or after `since` on the
    /// simulator's clock, named by the `remoteAction` enum (`only`: that name alone). A sync has
    /// no entry (the enum has no member for it). No secret, like the real one.
    pub(crate) fn audits(&self, since: Option<jiff::Timestamp>, only: Option<&str>) -> Vec<Value> {
        let mut all: Vec<(jiff::Timestamp, Value)> = Vec::new();
        for d in &self.devices {
            let field = |k: &str| d.fields.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
            // The audit log is written when the request is made; only the results lag.
            for a in &d.actions {
                let Some(name) = actions::lookup(&a.name).and_then(|x| x.audit_name(&a.parameters)) else { continue };
                if since.is_some_and(|s| a.start < s) || only.is_some_and(|o| !o.eq_ignore_ascii_case(name)) {
                    continue;
                }
                all.push((
                    a.start,
                    json!({
                        "id": a.audit_id,
                        "action": name,
                        "actionState": a.final_state,
                        "managedDeviceId": field("id"),
                        "deviceDisplayName": field("deviceName"),
                        "requestDateTime": a.start.to_string(),
                        "initiatedByUserPrincipalName": a.initiator,
                        "userName": a.initiator,
                        "deviceOwnerUserPrincipalName": field("userPrincipalName"),
                        "deviceIMEI": field("imei"),
                        "bulkDeviceActionId": "",
                        "deviceActionCategory": "single",
                    }),
                ));
            }
        }
        all.sort_by_key(|(t, _)| *t);
        all.into_iter().map(|(_, v)| v).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{SimConfig, SimState, actions};
    use serde_json::json;

    #[test]
    fn a_wipe_unlock_code_is_never_kept_between_runs() {
        let mac = json!({"id": "m", "operatingSystem": "macOS", "managedDeviceOwnerType": "company"});
        let mut state = SimState::new(SimConfig {
            devices: vec![mac.as_object().expect("an object").clone()],
            ..SimConfig::default()
        });
        let wipe = actions::lookup("wipe").expect("wipe");
        let body = wipe.parse_body(br#"{"macOsUnlockCode": "123456", "keepUserData": true}"#, false).expect("valid");
        let now = state.now();
        assert!(state.apply_at(0, wipe, body, "", now));
        let saved = state.saved_actions();
        assert_eq!(saved.len(), 1);
        assert_eq!(saved[0].parameters, *json!({"keepUserData": true}).as_object().expect("an object"));
    }
}

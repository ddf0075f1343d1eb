//! Device fixtures: a JSON array of managedDevice objects, as Graph returns them.
//!
//! A device may also carry actions a person made in the Intune portal before the simulator
//! started (never part of the device Graph shows): `_portalResets: [{by, ago}]` (passcode resets)
//! and `_portalActions: [{action, by, ago, parameters}]` (any action, `parameters` its body).

use std::path::Path;

use serde_json::{Map, Value};

/// The examples' fixture, built in so `--simulate` works anywhere.
pub const BUILTIN_DEVICES: &str = include_str!("../../examples/devices.json");

/// Reads a fixture file; every device needs a string `id`.
pub(crate) fn load_devices(path: &Path) -> Result<Vec<Map<String, Value>>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read device fixture `{}`: {}", path.display(), crate::diag::io_reason(&e)))?;
    parse_devices(&text).map_err(|e| format!("device fixture `{}`: {e}", path.display()))
}

pub fn parse_devices(text: &str) -> Result<Vec<Map<String, Value>>, String> {
    let devices: Vec<Map<String, Value>> =
        serde_json::from_str(text).map_err(|e| format!("not a JSON array of devices: {e}"))?;
    if let Some(i) = devices.iter().position(|d| !d.get("id").is_some_and(Value::is_string)) {
        return Err(format!("device #{} has no string `id`", i + 1));
    }
    for (i, d) in devices.iter().enumerate().filter(|(_, d)| PORTAL_KEYS.iter().any(|k| d.contains_key(*k))) {
        portal_actions(&mut d.clone()).map_err(|e| format!("device #{}: {e}", i + 1))?;
    }
    Ok(devices)
}

/// The properties that hold portal actions.
const PORTAL_KEYS: [&str; 2] = ["_portalResets", "_portalActions"];

/// An action made in the portal before the simulator started.
#[derive(Debug)]
pub(crate) struct PortalAction {
    pub action: String,
    pub by: String,
    pub ago: jiff::SignedDuration,
    pub parameters: Map<String, Value>,
}

/// Takes a device's portal actions out of its properties (a fixture checked by
/// [`parse_devices`]; anything else is skipped).
pub(crate) fn take_portal_actions(device: &mut Map<String, Value>) -> Vec<PortalAction> {
    portal_actions(device).unwrap_or_default()
}

fn portal_actions(device: &mut Map<String, Value>) -> Result<Vec<PortalAction>, String> {
    let mut all = Vec::new();
    for (key, default_action) in PORTAL_KEYS.into_iter().zip([Some("resetPasscode"), None]) {
        let Some(list) = device.remove(key) else { continue };
        let Value::Array(list) = list else { return Err(format!("`{key}` is not an array")) };
        for (n, entry) in list.iter().enumerate() {
            let at = format!("`{key}[{n}]`");
            let text = |k: &str| match entry.get(k) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(format!("{at}.{k} is not a string")),
            };
            let action = match (text("action")?, default_action) {
                (Some(a), None) => a,
                (None, Some(a)) => a.to_owned(),
                (Some(_), Some(_)) => return Err(format!("{at} is a passcode reset: it takes no `action`")),
                (None, None) => return Err(format!("{at} has no `action`")),
            };
            let Some(known) = super::actions::lookup(&action) else {
                return Err(format!("{at}: `{action}` is not an action the simulator knows"));
            };
            let ago = match text("ago")? {
                Some(a) => super::state::ago(&a).map_err(|e| format!("{at}.ago: {e}"))?,
                None => jiff::SignedDuration::ZERO,
            };
            let body = entry.get("parameters").map(Value::to_string).unwrap_or_default();
            let parameters = known.parse_body(body.as_bytes(), true).map_err(|e| format!("{at}.parameters: {e}"))?;
            let by = text("by")?.unwrap_or_else(|| super::state::PORTAL_ADMIN.into());
            all.push(PortalAction { action, by, ago, parameters });
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::parse_devices;

    #[test]
    fn portal_actions_in_a_fixture_are_checked_with_the_device_named() {
        let ok = r#"[{"id": "a", "_portalActions": [{"action": "wipe", "ago": "2h", "parameters": {"keepUserData": true}}]}]"#;
        assert!(parse_devices(ok).is_ok());
        for (bad, says) in [
            (
                r#"[{"id": "a"}, {"id": "b", "_portalActions": [{"action": "selfDestruct"}]}]"#,
                "device #2: `_portalActions[0]`",
            ),
            (r#"[{"id": "a", "_portalActions": [{"action": "wipe", "parameters": {"x": 1}}]}]"#, "parameters"),
            (r#"[{"id": "a", "_portalResets": [{"ago": "soon"}]}]"#, "`_portalResets[0]`.ago"),
            (r#"[{"id": "a", "_portalResets": [{"action": "wipe"}]}]"#, "takes no `action`"),
        ] {
            let err = parse_devices(bad).expect_err(bad);
            assert!(err.contains(says), "{err}");
        }
    }
}

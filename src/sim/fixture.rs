//! Device fixtures: a JSON array of managedDevice objects, as Graph returns them.

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
    Ok(devices)
}

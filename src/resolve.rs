//! Looking devices up in Intune: selectors → managed device ids, and whether the device can take
//! a passcode reset at all.
//!
//! Each distinct lookup is done once per run, concurrently (the Graph client paces reads). An
//! action already recorded with a device id keeps it: later runs act on the recorded id.

use std::collections::HashMap;
use std::sync::Arc;

use crate::action::{Action, Collection, SelectorKind};
use crate::graph::{Device, Graph, ReadError};
use crate::plan::{BlockKind, Resolution, Resolutions};
use crate::state::Ledger;

/// Whether Intune can reset (or remove) the passcode of `d`; `Err` says why not.
pub fn eligibility(d: &Device) -> Result<&'static str, String> {
    let os = d.operating_system.as_deref().unwrap_or_default().to_ascii_lowercase();
    let owner = d.managed_device_owner_type.as_deref().unwrap_or_default().to_ascii_lowercase();
    let state = d.management_state.as_deref().unwrap_or_default().to_ascii_lowercase();
    if let Some(pending) = ["retirepending", "wipepending", "deletepending"].iter().find(|s| **s == state) {
        let what = pending.trim_end_matches("pending");
        return Err(format!("device is pending {what}: Intune would cancel the reset"));
    }
    if os.contains("android") || os.contains("aosp") {
        return Ok("reset passcode");
    }
    if os.trim().is_empty() {
        // Intune did not say: let it decide (a 400 or a later `notSupported` is recorded).
        return Ok("reset passcode (platform unknown)");
    }
    if os.contains("ios") || os.contains("ipados") {
        return if owner == "company" {
            Ok("remove passcode")
        } else {
            Err(format!(
                "{} device owned by `{}`: only corporate iOS/iPadOS devices support it",
                d.operating_system.as_deref().unwrap_or("iOS"),
                if owner.is_empty() { "unknown" } else { &owner }
            ))
        };
    }
    Err(format!(
        "{} is not supported: only Android, AOSP and corporate iOS/iPadOS",
        d.operating_system.as_deref().filter(|s| !s.is_empty()).unwrap_or("this platform")
    ))
}

/// A lookup, shared by every action that names the same device the same way.
type LookupKey = (Collection, SelectorKind, String);

/// Resolves every action in `actions`. Each distinct selector is looked up once. An action the
/// ledger already tied to a device must still resolve to that device: if the selector now finds
/// another one (re-enrolled, renamed), the action is blocked until the author decides (for
/// instance by bumping `round`).
///
/// Fails only when Graph itself cannot be used (auth, transport); a device problem blocks its
/// action and the rest go on.
pub async fn resolve(graph: &Arc<Graph>, actions: &[&Action], ledger: &Ledger) -> Result<Resolutions, ReadError> {
    let mut lookups: HashMap<LookupKey, Vec<&Action>> = HashMap::new();
    for a in actions {
        let value = match a.selector.kind {
            SelectorKind::Id => a.selector.value.to_ascii_lowercase(),
            _ => a.selector.value.clone(),
        };
        lookups.entry((a.collection, a.selector.kind, value)).or_default().push(a);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for key in lookups.keys().cloned() {
        let graph = graph.clone();
        tasks.spawn(async move {
            let found = lookup(&graph, &key).await;
            (key, found)
        });
    }
    let mut out = Resolutions::new();
    let mut found_by_key = HashMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (key, found) = joined.map_err(|e| ReadError::Transport(format!("a lookup task failed: {e}")))?;
        found_by_key.insert(key, found?);
    }
    for (key, found) in &found_by_key {
        for a in &lookups[key] {
            let recorded = crate::plan::record_of(ledger, a).and_then(|r| r.managed_device_id.as_deref());
            let resolution = match (&found, recorded) {
                (Ok(device), Some(was)) if !device.id.eq_ignore_ascii_case(was) => Resolution::Blocked(
                    BlockKind::ReEnrolled,
                    format!(
                        "{} now finds device {} ({}), but this action was recorded for device {was}: re-enrolled or renamed? Bump spec.round to act on the new device",
                        a.selector,
                        device.id,
                        describe(device)
                    ),
                ),
                (Ok(device), _) => match eligibility(device) {
                    Ok(_) => Resolution::Device(device.clone()),
                    Err(why) => Resolution::Blocked(BlockKind::NotSupported, format!("{why} ({})", describe(device))),
                },
                (Err(why), Some(was)) => {
                    Resolution::Blocked(why.0, format!("{}; this action was recorded for device {was}", why.1))
                }
                (Err((kind, why)), None) => Resolution::Blocked(*kind, why.clone()),
            };
            out.insert(a.key.clone(), resolution);
        }
    }
    mark_same_devices(actions, ledger, &mut out);
    Ok(out)
}

/// Two entries of one manifest that name the same device by different selectors (an `id` and a
/// serial number, say) are one reset: the first entry sends it, the later ones are shown as the
/// same device and never sent, in this run and in later ones (when the ledger already holds a
/// reset of that device by another entry of this manifest, under its name or a former one).
fn mark_same_devices(actions: &[&Action], ledger: &Ledger, out: &mut Resolutions) {
    // Recorded resets by (manifest, round, device), built once: not a ledger scan per action.
    let mut recorded: HashMap<(&str, u32, String), Vec<&crate::state::Record>> = HashMap::new();
    for r in ledger.records.values().filter(|r| r.status.blocks_sending()) {
        if let Some(id) = &r.managed_device_id {
            recorded.entry((r.manifest.as_str(), r.round, id.to_ascii_lowercase())).or_default().push(r);
        }
    }
    let mut first: HashMap<(&str, String), &Action> = HashMap::new();
    for a in actions {
        let Some(Resolution::Device(d)) = out.get(&a.key) else { continue };
        let id = d.id.to_ascii_lowercase();
        let own = |r: &&&crate::state::Record| r.key != a.key && !a.former_keys.contains(&r.key);
        let earlier = std::iter::once(a.manifest.as_str())
            .chain(a.former_names.iter().map(String::as_str))
            .find_map(|m| recorded.get(&(m, a.round, id.clone())).and_then(|rs| rs.iter().find(own)));
        if let Some(r) = earlier {
            let why = format!(
                "same device as {} of this manifest, already {}: one manifest resets a device once",
                r.selector, r.status
            );
            out.insert(a.key.clone(), Resolution::SameDevice(d.clone(), why));
            continue;
        }
        match first.get(&(a.manifest.as_str(), id.clone())) {
            Some(prev) => {
                let why = format!(
                    "same device as {} at line {}: one manifest resets a device once",
                    prev.selector, prev.pos.line
                );
                out.insert(a.key.clone(), Resolution::SameDevice(d.clone(), why));
            }
            None => {
                first.insert((a.manifest.as_str(), id), a);
            }
        }
    }
}

/// One lookup: `Ok(Ok(device))`, `Ok(Err(why blocked))`, or `Err` when Graph itself failed.
/// Graph refusing this one lookup (a 4xx other than 401/403/429) blocks only its actions.
async fn lookup(graph: &Graph, key: &LookupKey) -> Result<Found, ReadError> {
    match lookup_once(graph, key).await {
        Err(ReadError::Graph(e)) if (400..500).contains(&e.status) && ![401, 403, 429].contains(&e.status) => {
            Ok(Err((BlockKind::Refused, format!("Graph refused to look up {} `{}`: {e}", key.1.as_str(), key.2))))
        }
        other => other,
    }
}

/// A device, or why there is none to act on.
type Found = Result<Device, (BlockKind, String)>;

async fn lookup_once(graph: &Graph, (collection, kind, value): &LookupKey) -> Result<Found, ReadError> {
    if *kind == SelectorKind::Id {
        return Ok(graph
            .device(*collection, value)
            .await?
            .ok_or_else(|| (BlockKind::NotFound, format!("device {value} not found in Intune"))));
    }
    let mut found = graph.find_devices(*collection, kind.as_str(), value).await?;
    match found.len() {
        0 => Ok(Err((BlockKind::NotFound, format!("no device has {} `{value}`", kind.as_str())))),
        1 => Ok(Ok(found.remove(0))),
        n => {
            let candidates: Vec<String> =
                found.iter().take(10).map(|d| format!("{} ({})", d.id, describe(d))).collect();
            Ok(Err((
                BlockKind::Ambiguous,
                format!(
                    "{n} devices have {} `{value}`: use `id` to pick one of {}",
                    kind.as_str(),
                    candidates.join("; ")
                ),
            )))
        }
    }
}

/// Name, serial, OS, owner type and last sync, for messages.
pub fn describe(d: &Device) -> String {
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

    fn device(os: &str, owner: &str, state: &str) -> Device {
        Device {
            id: "x".into(),
            device_name: None,
            serial_number: None,
            operating_system: Some(os.into()),
            os_version: None,
            managed_device_owner_type: Some(owner.into()),
            device_enrollment_type: None,
            management_state: Some(state.into()),
            last_sync_date_time: None,
        }
    }

    #[test]
    fn platforms() {
        assert_eq!(eligibility(&device("Android", "personal", "managed")), Ok("reset passcode"));
        assert_eq!(eligibility(&device("AOSP", "company", "managed")), Ok("reset passcode"));
        assert_eq!(eligibility(&device("iOS", "company", "managed")), Ok("remove passcode"));
        assert_eq!(eligibility(&device("iPadOS", "company", "managed")), Ok("remove passcode"));
        assert!(eligibility(&device("iOS", "personal", "managed")).is_err());
        assert!(eligibility(&device("Windows", "company", "managed")).is_err());
        assert!(eligibility(&device("macOS", "company", "managed")).is_err());
        assert!(eligibility(&device("Android", "company", "retirePending")).is_err());
        assert!(eligibility(&device("", "", "")).is_ok(), "unknown platforms are left to Intune");
    }
}

//! Looking devices up in Intune: selectors → managed device ids, and whether the device can take
//! a passcode reset at all.
//!
//! Each distinct lookup is done once per run, concurrently (the Graph client paces reads). An
//! action already recorded with a device id keeps it: later runs act on the recorded id.

use std::collections::HashMap;
use std::sync::Arc;

use crate::core::action::{Action, Collection, SelectorKind};
use crate::core::device::{Device, describe};
use crate::core::out_of_band::AuditLog;
use crate::core::plan::{BlockKind, Resolution, Resolutions};
use crate::graph::{Audits, Graph, ReadError};
use crate::ledger::Ledger;

/// A lookup, shared by every action that names the same device the same way.
pub(crate) type LookupKey = (Collection, SelectorKind, String);

/// A device, or why there is none to act on.
pub(crate) type Found = Result<Device, (BlockKind, String)>;

/// The lookups `actions` need, each once, in the order the actions first need them.
pub(crate) fn lookup_keys(actions: &[&Action]) -> Vec<LookupKey> {
    let mut seen = std::collections::HashSet::new();
    actions.iter().map(|a| key_of(a)).filter(|k| seen.insert(k.clone())).collect()
}

/// The lookup that finds `a`'s device.
pub(crate) fn key_of(a: &Action) -> LookupKey {
    let value = match a.selector.kind {
        SelectorKind::Id => a.selector.value.to_ascii_lowercase(),
        _ => a.selector.value.clone(),
    };
    (a.collection, a.selector.kind, value)
}

/// The audit log's entries of the kinds of `actions` since `since`, for spotting actions made
/// outside this tool (one paged read per run and `remoteAction` name). A token that may not read
/// it gives [`AuditLog::unreadable`].
pub(crate) async fn audit_log(
    graph: &Graph,
    since: jiff::Timestamp,
    actions: &[&Action],
) -> Result<AuditLog, ReadError> {
    let names = crate::core::kinds::audit_names(actions.iter().map(|a| a.kind));
    match graph.action_audits(since, &names).await {
        Ok(Audits::Read(all)) => Ok(AuditLog::read(all)),
        Ok(Audits::Unreadable(why)) => {
            tracing::info!(%why, "who started resets made outside reconcile stays unknown");
            Ok(AuditLog::unreadable())
        }
        // Evidence where it can be had, never a requirement: an audit log that fails (a 5xx
        // after retries, an answer that is not one or too long to read) leaves the devices' own
        // results to judge by.
        Err(e @ (ReadError::Graph(_) | ReadError::Decode(_) | ReadError::TooLarge(_))) => {
            tracing::warn!(error = %e, "the audit log could not be read: resets made outside reconcile are judged from the devices' results alone");
            Ok(AuditLog::unreadable())
        }
        Err(e) => Err(e),
    }
}

/// The audit log since `since`, then every action of `actions` resolved with the device results
/// it allows ([`ListedResults::given`]): what `plan` and `state adopt` judge devices by.
pub(crate) async fn with_audit_log(
    graph: &Arc<Graph>,
    actions: &[&Action],
    ledger: &Ledger,
    since: jiff::Timestamp,
) -> Result<(Resolutions, AuditLog), ReadError> {
    let audits = audit_log(graph, since, actions).await?;
    let resolutions = resolve(graph, actions, ledger, ListedResults::given(&audits)).await?;
    Ok((resolutions, audits))
}

/// Resolves every action in `actions`. Each distinct selector is looked up once, concurrently, or
/// all of them by listing the tenant when that takes fewer reads ([`list_if_cheaper`]).
///
/// Fails only when Graph itself cannot be used (auth, transport); a device problem blocks its
/// action and the rest go on.
async fn resolve(
    graph: &Arc<Graph>,
    actions: &[&Action],
    ledger: &Ledger,
    results: ListedResults,
) -> Result<Resolutions, ReadError> {
    let keys = lookup_keys(actions);
    let mut found = list_if_cheaper(graph, &keys, results).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for key in keys.into_iter().filter(|k| !found.contains_key(k)) {
        let graph = graph.clone();
        tasks.spawn(async move {
            let found = lookup(&graph, &key, results).await;
            (key, found)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (key, result) = joined.map_err(|e| ReadError::Transport(format!("a lookup task failed: {e}")))?;
        found.insert(key, result?);
    }
    Ok(settle(actions, &found, ledger))
}

/// What the lookups found so far means for `actions` (those whose lookup is not done yet are
/// left out). An action the ledger already tied to a device must still resolve to that device:
/// if the selector now finds another one (re-enrolled, renamed), the action is blocked until the
/// author decides (for instance by bumping `round`). Of two entries of one manifest naming one
/// device, the later is [`Resolution::SameDevice`]: decided right once every earlier entry of the
/// manifest is looked up.
pub(crate) fn settle(actions: &[&Action], found: &HashMap<LookupKey, Found>, ledger: &Ledger) -> Resolutions {
    let mut out = Resolutions::new();
    for a in actions {
        let Some(found) = found.get(&key_of(a)) else { continue };
        let recorded = crate::core::plan::record_of(ledger, a).and_then(|r| r.managed_device_id.as_deref());
        let resolution = match (found, recorded) {
            (Ok(device), Some(was)) if !device.id.eq_ignore_ascii_case(was) => Resolution::Blocked(
                BlockKind::ReEnrolled,
                format!(
                    "{} now finds device {} ({}), but this action was recorded for device {was}: re-enrolled or renamed? Bump spec.round to act on the new device",
                    a.selector,
                    device.id,
                    describe(device)
                ),
            ),
            (Ok(device), _) => match a.kind.spec().eligible(device) {
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
    mark_same_devices(actions, ledger, &mut out);
    out
}

/// Two entries of one manifest that name the same device by different selectors (an `id` and a
/// serial number, say) are one reset: the first entry sends it, the later ones are shown as the
/// same device and never sent, in this run and in later ones (when the ledger already holds a
/// reset of that device by another entry of this manifest, under its name or a former one).
fn mark_same_devices(actions: &[&Action], ledger: &Ledger, out: &mut Resolutions) {
    // Recorded resets by (manifest, round, device), built once: not a ledger scan per action.
    let mut recorded: HashMap<(&str, u32, String), Vec<&crate::ledger::Record>> = HashMap::new();
    for r in ledger.records.values().filter(|r| r.status.blocks_sending()) {
        if let Some(id) = &r.managed_device_id {
            recorded.entry((r.manifest.as_str(), r.round, id.to_ascii_lowercase())).or_default().push(r);
        }
    }
    let mut first: HashMap<(&str, String), &Action> = HashMap::new();
    for a in actions {
        let Some(Resolution::Device(d)) = out.get(&a.key) else { continue };
        let id = d.id.to_ascii_lowercase();
        let own = |r: &&&crate::ledger::Record| r.key != a.key && !a.former_keys.contains(&r.key);
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

/// Whether a device found through a list (a `$filter` lookup, the tenant listing) may be taken
/// with the `deviceActionResults` the list gave. Lists have returned them empty (docs/graph-facts.md), and
/// they are how a reset made outside the tool shows — together with the audit log. So when the
/// audit log was read (Intune records every remote action there), the lists are enough; when it
/// could not be, each such device with no results is read on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListedResults {
    /// The audit log vouches: take the lists' results.
    Trusted,
    /// Read each listed device's results on its own (no tenant listing either).
    PollEach,
}

impl ListedResults {
    /// What the audit log, as read, allows.
    pub(crate) fn given(audits: &AuditLog) -> Self {
        if audits.audited() { ListedResults::Trusted } else { ListedResults::PollEach }
    }
}

/// One lookup: `Ok(Ok(device))`, `Ok(Err(why blocked))`, or `Err` when Graph itself failed.
/// Graph refusing this one lookup (a 4xx other than 401/403/429) blocks only its actions.
pub(crate) async fn lookup(graph: &Graph, key: &LookupKey, results: ListedResults) -> Result<Found, ReadError> {
    match lookup_once(graph, key, results).await {
        Err(ReadError::Graph(e)) if (400..500).contains(&e.status) && ![401, 403, 429].contains(&e.status) => {
            Ok(Err((BlockKind::Refused, format!("Graph refused to look up {} `{}`: {e}", key.1.as_str(), key.2))))
        }
        other => other,
    }
}

async fn lookup_once(
    graph: &Graph,
    (collection, kind, value): &LookupKey,
    results: ListedResults,
) -> Result<Found, ReadError> {
    if *kind == SelectorKind::Id {
        return Ok(found_of(*kind, value, graph.device(*collection, value).await?.into_iter().collect()));
    }
    let mut devices = graph.find_devices(*collection, kind.as_str(), value).await?;
    if let ([only], ListedResults::PollEach) = (devices.as_mut_slice(), results)
        && only.device_action_results.is_empty()
        && let Some(read) = graph.device_action_results(*collection, &only.id).await?.results
    {
        only.device_action_results = read;
    }
    Ok(found_of(*kind, value, devices))
}

/// What the devices having `kind` = `value` mean: the one device, or why there is none to act on.
fn found_of(kind: SelectorKind, value: &str, mut found: Vec<Device>) -> Found {
    match found.len() {
        0 if kind == SelectorKind::Id => Err((BlockKind::NotFound, format!("device {value} not found in Intune"))),
        0 => Err((BlockKind::NotFound, format!("no device has {} `{value}`", kind.as_str()))),
        1 => Ok(found.remove(0)),
        n => {
            // One candidate a line (renderers show each on its own); Intune's text is escaped
            // first, so no device name can add a line of its own.
            let candidates: Vec<String> = found
                .iter()
                .take(10)
                .map(|d| crate::diag::safe::text(&format!("{} ({})", d.id, describe(d))).into_owned())
                .collect();
            let more =
                if n > candidates.len() { format!("\n… and {} more", n - candidates.len()) } else { String::new() };
            Err((
                BlockKind::Ambiguous,
                format!(
                    "{n} devices have {} `{value}`: use `id` to pick one of\n{}{more}",
                    kind.as_str(),
                    candidates.join("\n")
                ),
            ))
        }
    }
}

/// A collection with at least this many lookups first asks how many devices the tenant has.
const LIST_FROM: usize = 20;

/// Finds the devices of `keys` by listing the tenant's devices (1,000 a page), for every
/// collection where that takes fewer reads than one GET per lookup and no longer
/// ([`Graph::list_devices`] decides from the first page; the choice is logged at debug). Returns
/// the keys it found devices for; the others — and every key of a collection whose listing Graph
/// refused (a 4xx) — are left to [`lookup`], so a listing that leaves a device out never makes
/// it "not found". Matching is Graph's `eq`: case-insensitive.
pub(crate) async fn list_if_cheaper(
    graph: &Graph,
    keys: &[LookupKey],
    results: ListedResults,
) -> Result<HashMap<LookupKey, Found>, ReadError> {
    let mut out = HashMap::new();
    if results == ListedResults::PollEach {
        tracing::debug!("the audit log could not be read: each device is looked up with its own results");
        return Ok(out);
    }
    for collection in [Collection::ManagedDevices, Collection::ComanagedDevices] {
        let wanted: Vec<&LookupKey> = keys.iter().filter(|k| k.0 == collection).collect();
        if wanted.len() < LIST_FROM {
            continue;
        }
        // Listing pays when it takes fewer pages than the lookups it replaces.
        let listed = match graph.list_devices(collection, wanted.len() - 1).await {
            Err(ReadError::Graph(e)) if (400..500).contains(&e.status) && e.status != 429 => {
                tracing::warn!(
                    collection = collection.as_str(),
                    status = e.status,
                    "listing the tenant's devices was refused; looking each device up instead"
                );
                continue;
            }
            other => other?,
        };
        let Some(devices) = listed else {
            tracing::debug!(
                collection = collection.as_str(),
                lookups = wanted.len(),
                "one GET per lookup: listing the tenant would take as many reads or more"
            );
            continue;
        };
        tracing::debug!(
            collection = collection.as_str(),
            lookups = wanted.len(),
            devices = devices.len(),
            "devices found by listing the tenant"
        );
        let mut index: HashMap<(SelectorKind, String), Vec<&Device>> = HashMap::new();
        for d in &devices {
            let fields = [
                (SelectorKind::Id, Some(&d.id)),
                (SelectorKind::SerialNumber, d.serial_number.as_ref()),
                (SelectorKind::Imei, d.imei.as_ref()),
                (SelectorKind::DeviceName, d.device_name.as_ref()),
            ];
            for (kind, value) in fields {
                if let Some(v) = value.filter(|v| !v.is_empty()) {
                    index.entry((kind, v.to_lowercase())).or_default().push(d);
                }
            }
        }
        for key @ (_, kind, value) in wanted {
            if let Some(ds) = index.get(&(*kind, value.to_lowercase())) {
                out.insert(key.clone(), found_of(*kind, value, ds.iter().map(|d| (*d).clone()).collect()));
            }
        }
    }
    Ok(out)
}

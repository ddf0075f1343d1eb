//! The simulated fleet: Android devices, the simulator playing Intune, and what it received.

use std::collections::HashMap;

use intune_reconcile::sim::{RecordedRequest, SimConfig, SimHandle};

use super::{Repo, http};

/// The simulator, started in this test process, with the examples' devices unless told otherwise.
pub(crate) fn sim(config: SimConfig) -> SimHandle {
    SimHandle::start(config, 0).expect("simulator starts")
}

/// A simulator config seeded with the examples' fixture and generous limits.
pub(crate) fn sim_config() -> SimConfig {
    let mut devices =
        intune_reconcile::sim::fixture::parse_devices(intune_reconcile::sim::BUILTIN_DEVICES).expect("fixture");
    // The fixture's portal resets are for the `--simulate` demo; tests make their own.
    for d in &mut devices {
        d.remove("_portalResets");
    }
    SimConfig { devices, ..Default::default() }
}

/// A client secret distinctive enough to grep for.
pub(crate) const SECRET: &str = "S3cret-Value-That-Must-Never-Leak-7f3a";

/// A manifest resetting the given device ids.
pub(crate) fn manifest_for(name: &str, ids: &[&str]) -> String {
    let mut s =
        format!("apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: {name}\nspec:\n  devices:\n");
    for id in ids {
        s.push_str(&format!("    - id: {id}\n"));
    }
    s
}

/// `n` Android devices with ids `00000000-0000-4000-8000-{i:012}`.
pub(crate) fn android_devices(n: usize) -> Vec<serde_json::Map<String, serde_json::Value>> {
    (0..n)
        .map(|i| {
            let v = serde_json::json!({
                "id": android_id(i),
                "deviceName": format!("ANDROID-{i:05}"),
                "serialNumber": format!("SN{i:08}"),
                "imei": format!("35{i:013}"),
                "operatingSystem": "Android",
                "osVersion": "14",
                "managedDeviceOwnerType": "company",
                "deviceEnrollmentType": "androidEnterpriseFullyManaged",
                "managementState": "managed",
                "lastSyncDateTime": "2026-11-27T08:00:00Z"
            });
            v.as_object().expect("object").clone()
        })
        .collect()
}

pub(crate) fn android_id(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

/// The `resetPasscode` POSTs the simulator received from Graph clients (not its portal route).
pub(crate) fn posts(sim: &SimHandle) -> Vec<RecordedRequest> {
    sim.requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/resetPasscode") && !r.path.starts_with("/_sim/"))
        .collect()
}

/// A bare `POST path` to the simulator (its test routes), returning the HTTP status.
pub(crate) fn http_post(sim: &SimHandle, path: &str) -> u16 {
    http::call(sim.url().trim_start_matches("http://"), "POST", path, &[], &[]).status
}

/// Every POST the simulator received had its intent durable in the probed ledger when it arrived
/// (and there was at least one): the intent-before-request rule, checked at the moment it matters
/// rather than after the run.
pub(crate) fn assert_intents_durable(sim: &SimHandle) {
    let probed: Vec<_> = sim.requests().into_iter().filter(|r| r.intent_durable.is_some()).collect();
    assert!(!probed.is_empty(), "no POST was probed");
    let early: Vec<_> = probed.iter().filter(|r| r.intent_durable == Some(false)).map(|r| &r.path).collect();
    assert!(early.is_empty(), "{} POSTs left before their intent was durable: {early:?}", early.len());
}

/// A simulator holding `n` Android devices ([`android_devices`]), tuned by `tweak`.
pub(crate) fn android_sim(n: usize, tweak: impl FnOnce(&mut SimConfig)) -> SimHandle {
    let mut cfg = SimConfig { devices: android_devices(n), ..SimConfig::default() };
    tweak(&mut cfg);
    sim(cfg)
}

/// A repository with the ledger created and a fast config (plus `extra`), whose one manifest
/// (`manifests/batch.yaml`) resets Android devices `0..n`; and their ids.
pub(crate) fn batch_repo(n: usize, extra: &str) -> (Repo, Vec<String>) {
    let repo = Repo::empty();
    repo.fast_config(extra);
    let ids: Vec<String> = (0..n).map(android_id).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    repo.write("manifests/batch.yaml", manifest_for("batch", &refs));
    (repo, ids)
}

/// A repository with the ledger created, a fast config and no manifest yet, and a simulator
/// holding `n` Android devices.
pub(crate) fn bare_repo_and_android_sim(n: usize) -> (Repo, SimHandle) {
    let repo = Repo::empty();
    repo.fast_config("");
    (repo, android_sim(n, |_| {}))
}

/// Intune applied exactly one reset to each device of `ids`: none twice, none never.
pub(crate) fn assert_each_reset_once(sim: &SimHandle, ids: &[String]) {
    let twice: Vec<&String> = ids.iter().filter(|id| sim.resets_applied(id) > 1).collect();
    assert!(twice.is_empty(), "{} devices were reset twice: {twice:?}", twice.len());
    let never: Vec<&String> = ids.iter().filter(|id| sim.resets_applied(id) == 0).collect();
    assert!(never.is_empty(), "{} devices were never reset: {never:?}", never.len());
}

/// [`assert_each_reset_once`], and every POST left with its intent durable
/// ([`assert_intents_durable`]).
pub(crate) fn assert_each_reset_once_intent_first(sim: &SimHandle, ids: &[String]) {
    assert_each_reset_once(sim, ids);
    assert_intents_durable(sim);
}

/// How many `resetPasscode` POSTs ([`posts`]) each device's path received.
pub(crate) fn posts_per_device(sim: &SimHandle) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for p in posts(sim) {
        *m.entry(p.path).or_insert(0) += 1;
    }
    m
}

/// Waits until the simulator received `n` `resetPasscode` POSTs: the apply is under way.
pub(crate) fn wait_for_posts(sim: &SimHandle, n: usize) {
    super::wait_until(&format!("{n} POSTs"), || posts(sim).len() >= n);
}

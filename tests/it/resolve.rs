//! Finding devices the way admins name them: serial number, device name, IMEI.

use crate::common::{Repo, android_devices, posts, sim, stderr, stdout};
use intune_reconcile::sim::SimConfig;
use serde_json::json;

fn manifest(entries: &[(&str, &str)]) -> String {
    let mut s = String::from(
        "apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: by-selector\nspec:\n  devices:\n",
    );
    for (k, v) in entries {
        s.push_str(&format!("    - {k}: {}\n", serde_json::to_string(v).expect("json string")));
    }
    s
}

fn device(id: &str, name: &str, serial: &str, os: &str, owner: &str) -> serde_json::Map<String, serde_json::Value> {
    json!({"id": id, "deviceName": name, "serialNumber": serial, "imei": "", "operatingSystem": os, "osVersion": "14",
        "managedDeviceOwnerType": owner, "managementState": "managed", "lastSyncDateTime": "2026-11-27T08:00:00Z"})
    .as_object()
    .expect("object")
    .clone()
}

/// The `$filter` values of every list request the simulator received.
fn filters(sim: &intune_reconcile::sim::SimHandle) -> Vec<Option<String>> {
    sim.requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/managedDevices"))
        .map(|r| {
            url::form_urlencoded::parse(r.query.as_bytes()).find(|(k, _)| k == "$filter").map(|(_, v)| v.into_owned())
        })
        .collect()
}

#[test]
fn serial_name_and_imei_resolve_plan_and_apply() {
    let repo = Repo::empty();
    repo.fast_config("");
    repo.write(
        "manifests/a.yaml",
        manifest(&[("serialNumber", "r58m12345ab"), ("deviceName", "WH-SCANNER-07"), ("imei", "356938035643809")]),
    );
    let sim = sim(crate::common::sim_config());
    let plan = repo.cmd_on(&sim).arg("plan").output().expect("run");
    assert!(plan.status.success(), "{}", stderr(&plan));
    let text = stdout(&plan);
    for want in [
        "ANDROID-PIN-BOB (Android 13, company)",
        "WH-SCANNER-07 (Android 11, company)",
        "SOC-PIXEL-31 (Android 15, personal)",
    ] {
        assert!(text.contains(want), "{want} in {text}");
    }
    assert!(!text.contains("holiday.user@contoso.com"), "no user names the manifest did not give");
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().success();
    for id in [
        "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f",
        "0f9e8d7c-6b5a-4948-8372-615f4e3d2c1b",
        "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9",
    ] {
        assert_eq!(sim.resets_applied(id), 1, "{id}");
    }
    // The ledger keeps the resolved ids: later runs act on them.
    let ledger = repo.ledger_json();
    let ids: Vec<&str> = ledger["records"]
        .as_object()
        .expect("records")
        .values()
        .filter_map(|r| r["managedDeviceId"].as_str())
        .collect();
    assert_eq!(ids.len(), 3);
}

// No selector value can change the query: quotes are doubled, everything is percent-encoded.
#[test]
fn hostile_selector_values_are_harmless() {
    let hostile = [
        "x' or serialNumber eq 'R58M12345AB",
        "R58M12345AB' and deviceName eq 'x",
        "a&b=c#d%25+e",
        "ünïcødé/..\\?",
        "''",
        "$top=1",
    ];
    let repo = Repo::empty();
    repo.fast_config("");
    let entries: Vec<(&str, &str)> = hostile.iter().map(|v| ("serialNumber", *v)).collect();
    repo.write("manifests/a.yaml", manifest(&entries));
    let sim = sim(crate::common::sim_config());
    let out = repo.cmd_on(&sim).arg("plan").output().expect("run");
    assert_eq!(out.status.code(), Some(1), "nothing matches: every action is blocked");
    let text = stdout(&out);
    assert_eq!(text.lines().filter(|l| l.starts_with("  x blocked")).count(), hostile.len(), "{text}");
    let mut got: Vec<String> = filters(&sim).into_iter().map(|f| f.expect("a filter on every list request")).collect();
    let mut want: Vec<String> =
        hostile.iter().map(|v| format!("serialNumber eq '{}'", v.replace('\'', "''"))).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert!(posts(&sim).is_empty());
}

#[test]
fn a_quote_inside_a_real_serial_number_still_matches() {
    let repo = Repo::empty();
    repo.fast_config("");
    repo.write("manifests/a.yaml", manifest(&[("serialNumber", "O'BRIEN-01")]));
    let sim = sim(SimConfig {
        devices: vec![device("aaaaaaaa-0000-4000-8000-000000000001", "OB", "O'BRIEN-01", "Android", "company")],
        ..SimConfig::default()
    });
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().success();
    assert_eq!(sim.resets_applied("aaaaaaaa-0000-4000-8000-000000000001"), 1);
}

#[test]
fn ambiguous_selectors_list_the_candidates_and_follow_next_links() {
    let repo = Repo::empty();
    repo.fast_config("");
    repo.write("manifests/a.yaml", manifest(&[("deviceName", "SHARED-TABLET")]));
    let devices: Vec<_> = (0..5)
        .map(|i| {
            device(
                &format!("bbbbbbbb-0000-4000-8000-00000000000{i}"),
                "SHARED-TABLET",
                &format!("SER{i}"),
                "Android",
                "company",
            )
        })
        .collect();
    let sim = sim(SimConfig { devices, page_size: 2, ..SimConfig::default() });
    let out = repo.cmd_on(&sim).arg("plan").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("5 devices have deviceName `SHARED-TABLET`: use `id` to pick one of\n"), "{text}");
    // One candidate a line, under the action.
    for i in 0..5 {
        assert!(text.contains(&format!("\n      bbbbbbbb-0000-4000-8000-00000000000{i} (SHARED-TABLET, serial SER{i}, Android 14, company, last sync 2026-11-27T08:00:00Z)\n")), "{text}");
    }
    let pages = sim.requests().iter().filter(|r| r.path.ends_with("/managedDevices")).count();
    assert_eq!(pages, 3, "two nextLinks followed");
}

#[test]
fn paging_past_a_thousand_devices() {
    let repo = Repo::empty();
    repo.fast_config("");
    repo.write("manifests/a.yaml", manifest(&[("deviceName", "KIOSK")]));
    let devices: Vec<_> = (0..1_500)
        .map(|i| device(&format!("cccccccc-0000-4000-8000-{i:012}"), "KIOSK", &format!("K{i}"), "Android", "company"))
        .collect();
    let sim = sim(SimConfig { devices, ..SimConfig::default() });
    let out = repo.cmd_on(&sim).arg("plan").output().expect("run");
    assert!(stdout(&out).contains("1500 devices have deviceName `KIOSK`"), "{}", stdout(&out));
    assert_eq!(filters(&sim).len(), 2, "1,000 per page");
}

// Resolving 500 selectors in a 50,000-device tenant where a page of devices takes 200 ms: listing
// would take 50 reads instead of 500, but 10 s one page after the other, against about 6 s for
// the lookups side by side. After the first page (which says so), one filtered lookup each.
#[test]
fn a_large_slow_tenant_is_not_listed_when_lookups_are_quicker() {
    let repo = Repo::empty();
    repo.fast_config("");
    repo.write("reconcile.yaml", repo.read("reconcile.yaml").replace("concurrency: 4", "concurrency: 16"));
    let serials: Vec<String> = (0..500).map(|i| format!("SN{:08}", i * 97)).collect();
    let entries: Vec<(&str, &str)> = serials.iter().map(|s| ("serialNumber", s.as_str())).collect();
    repo.write("manifests/a.yaml", manifest(&entries));
    let sim = sim(SimConfig {
        devices: android_devices(50_000),
        latency: std::time::Duration::from_millis(200),
        ..SimConfig::default()
    });
    let out = repo.cmd_on(&sim).arg("plan").output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Plan: 500 to reset"), "{}", stdout(&out));
    let f = filters(&sim);
    assert_eq!(f.len(), 501, "one page of the listing, then one lookup each");
    assert_eq!(f.iter().filter(|x| x.as_deref().is_some_and(|x| x.starts_with("serialNumber eq 'SN"))).count(), 500);
}

// A device re-enrolled since the action was recorded: nothing is sent until the author decides.
#[test]
fn a_selector_that_now_finds_another_device_is_flagged() {
    let repo = Repo::empty();
    repo.fast_config("");
    repo.write("manifests/a.yaml", manifest(&[("serialNumber", "R58M12345AB")]));
    let actions = repo.actions();
    {
        repo.init();
        let mut w = repo.store().lock(std::time::Duration::ZERO, "test", Some("test-tenant")).expect("lock");
        let mut r = intune_reconcile::ledger::Record::new(
            &actions[0],
            Some("dddddddd-0000-4000-8000-000000000000".into()),
            jiff::Timestamp::UNIX_EPOCH,
        );
        r.status = intune_reconcile::ledger::Status::NotExecuted;
        w.record(r).expect("record");
        w.commit().expect("commit");
    }
    let sim = sim(crate::common::sim_config());
    let out = repo.cmd_on(&sim).arg("plan").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("re-enrolled or renamed? Bump spec.round"), "{}", stdout(&out));
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(posts(&sim).is_empty());
}

#[test]
fn offline_plans_say_what_was_not_resolved() {
    let repo = Repo::from_examples();
    let out = repo.cmd().args(["plan", "--offline"]).output().expect("run");
    assert!(
        stdout(&out).contains("5 of the resets name devices by serial number, name or IMEI: they are resolved online."),
        "{}",
        stdout(&out)
    );
}

// One manifest naming a device twice by different selectors must not reset it twice in one run.
#[test]
fn the_same_device_by_two_selectors_in_one_manifest_is_reset_once() {
    let repo = Repo::empty();
    repo.fast_config("");
    repo.write(
        "manifests/a.yaml",
        manifest(&[("id", "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f"), ("serialNumber", "R58M12345AB")]),
    );
    let sim = sim(crate::common::sim_config());
    // One action: an information line, not a blocked entry (the plan and apply succeed).
    let plan = repo.cmd_on(&sim).args(["plan", "--detailed-exitcode"]).output().expect("run");
    assert_eq!(plan.status.code(), Some(2), "{}", stdout(&plan));
    assert!(
        stdout(&plan).contains("& same device")
            && stdout(&plan).contains("same device as id=c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f at line 7"),
        "{}",
        stdout(&plan)
    );
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sim.resets_applied("c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f"), 1);
    // The next run must not send the second entry now that the first one is recorded.
    let again = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert!(again.status.success(), "{}", stderr(&again));
    let plan = repo.cmd_on(&sim).args(["plan", "--detailed-exitcode"]).output().expect("run");
    assert_eq!(plan.status.code(), Some(0), "nothing pending: {}", stdout(&plan));
    assert!(
        stdout(&plan)
            .contains("same device as id=c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f of this manifest, already accepted"),
        "{}",
        stdout(&plan)
    );
    assert_eq!(sim.resets_applied("c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f"), 1);
}

// Lookups throttled by Intune's read limit wait and go on: the plan still completes.
#[test]
fn read_throttling_slows_lookups_down_without_failing() {
    let repo = Repo::empty();
    repo.fast_config("");
    let serials: Vec<String> = (0..12).map(|i| format!("SN{i:08}")).collect();
    let entries: Vec<(&str, &str)> = serials.iter().map(|s| ("serialNumber", s.as_str())).collect();
    repo.write("manifests/a.yaml", manifest(&entries));
    let sim = sim(SimConfig {
        devices: android_devices(12),
        read_limit: Some(intune_reconcile::settings::Budget {
            requests: 4,
            window: std::time::Duration::from_millis(500),
        }),
        retry_after: intune_reconcile::sim::RetryAfter::Seconds(0.2),
        ..SimConfig::default()
    });
    let out = repo.cmd_on(&sim).arg("plan").output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Plan: 12 to reset"), "{}", stdout(&out));
    assert!(sim.requests().iter().any(|r| r.status == 429), "the limit was hit");
}

/// Reads of the device collection (lookups and listings) the simulator received.
fn device_reads(sim: &intune_reconcile::sim::SimHandle) -> usize {
    sim.requests().iter().filter(|r| r.method == "GET" && r.path.contains("/managedDevices")).count()
}

#[test]
fn many_lookups_in_a_small_tenant_list_it_once_instead() {
    // 40 serial numbers and 5 ids in a 60-device tenant: one page of the listing finds them all,
    // the same way one lookup each would (a shared serial is ambiguous, an unknown one not found:
    // a device the listing does not show is looked up alone before it is called not found).
    let mut devices = android_devices(60);
    devices[59].insert("serialNumber".into(), json!("SN00000001"));
    let sim = sim(SimConfig { devices, ..SimConfig::default() });
    let repo = Repo::empty();
    repo.fast_config("");
    let mut entries: Vec<(String, String)> =
        (0..40).map(|i| ("serialNumber".to_owned(), format!("sn{i:08}"))).collect();
    entries.push(("serialNumber".into(), "NO-SUCH-SERIAL".into()));
    entries.extend((40..44).map(|i| ("id".to_owned(), crate::common::android_id(i).to_uppercase())));
    let refs: Vec<(&str, &str)> = entries.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    repo.write("manifests/a.yaml", manifest(&refs));
    let plan = repo.cmd_on(&sim).args(["plan", "--format", "json"]).output().expect("run");
    assert_eq!(plan.status.code(), Some(1), "{}", stderr(&plan));
    assert_eq!(device_reads(&sim), 2, "one page of the listing, one lookup of what it did not show");
    let json: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("json");
    assert_eq!(json["summary"]["to_reset"], 43, "{json}");
    assert_eq!(json["summary"]["blocked"], 2, "{json}");
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(text.contains("2 devices have serialNumber `sn00000001`"), "{text}");
    assert!(text.contains("no device has serialNumber `NO-SUCH-SERIAL`"), "{text}");
    // apply resolves the same way and resets each found device once.
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(device_reads(&sim), 4, "the same again for apply");
    assert_eq!(posts(&sim).len(), 43);
    for i in (0..44).filter(|&i| i != 1) {
        assert_eq!(sim.resets_applied(&crate::common::android_id(i)), 1, "device {i}");
    }

    // A Graph that refuses to list without `$filter`: each device is looked up instead, with the
    // same plan.
    let mut devices = android_devices(60);
    devices[59].insert("serialNumber".into(), json!("SN00000001"));
    let sim = crate::common::sim(SimConfig { devices, list_needs_filter: true, ..SimConfig::default() });
    let repo = Repo::empty();
    repo.fast_config("");
    repo.write("manifests/a.yaml", manifest(&refs));
    let plan = repo.cmd_on(&sim).args(["plan", "--format", "json"]).output().expect("run");
    assert_eq!(plan.status.code(), Some(1), "{}", stderr(&plan));
    let json: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("json");
    assert_eq!((json["summary"]["to_reset"].as_u64(), json["summary"]["blocked"].as_u64()), (Some(43), Some(2)));
    assert_eq!(device_reads(&sim), 1 + 45, "the refused listing, then one lookup per selector");
}

#[test]
fn a_tenant_too_large_to_list_cheaply_gets_one_lookup_per_device() {
    // 20 lookups in a 21,000-device tenant: listing would take 21 pages, so after the first page
    // says so, each device is looked up alone.
    let sim = sim(SimConfig { devices: android_devices(21_000), ..SimConfig::default() });
    let repo = Repo::empty();
    repo.fast_config("");
    let entries: Vec<(String, String)> =
        (0..20).map(|i| ("serialNumber".to_owned(), format!("SN{:08}", i * 1000))).collect();
    let refs: Vec<(&str, &str)> = entries.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    repo.write("manifests/a.yaml", manifest(&refs));
    let plan = repo.cmd_on(&sim).arg("plan").output().expect("run");
    assert!(plan.status.success(), "{}", stderr(&plan));
    assert_eq!(device_reads(&sim), 21, "the page that gave the tenant's size, then 20 lookups");
    assert_eq!(filters(&sim).iter().filter(|f| f.is_some()).count(), 20);
    assert!(stdout(&plan).contains("Plan: 20 to reset"), "{}", stdout(&plan));
}

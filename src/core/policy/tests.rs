use super::*;
use crate::core::device::Device;
use crate::core::out_of_band::AuditLog;
use crate::core::violation::Rule;
use crate::ledger::Ledger;
use crate::manifest::Manifest;

fn policy(yaml: &str) -> Policy {
    let raw: RawPolicy = serde_saphyr::from_str(yaml).expect("policy YAML");
    let mut diags = Diagnostics::default();
    let p = Policy::from_raw(raw, Path::new("reconcile.yaml"), &mut diags);
    assert!(!diags.has_errors(), "{diags:?}");
    p
}

fn at(ts: &str) -> jiff::Timestamp {
    ts.parse().expect("timestamp")
}

/// One manifest with this metadata (below `name: m`) and one device, `serialNumber: S1`.
fn manifest(meta: &str) -> Vec<Manifest> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("m.yaml");
    let yaml = format!(
        "apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: m\n{meta}spec:\n  devices:\n    - serialNumber: S1\n"
    );
    std::fs::write(&file, yaml).expect("write");
    let loaded = crate::manifest::load(&[file], crate::manifest::validate::Context { beta_api: false });
    assert!(!loaded.diagnostics.has_errors(), "{:?}", loaded.diagnostics);
    loaded.manifests
}

/// The rules `review` finds for one manifest resetting serial `S1`, resolved to `device`
/// (JSON as Graph gives it), with a ledger record of another manifest for the same device
/// sent `recorded_ago` before now.
fn device_rules(rules: &str, device: serde_json::Value, recorded_ago: Option<i64>) -> Vec<Rule> {
    rules_of(&policy(rules), device, recorded_ago)
}

/// [`device_rules`] for a policy already built.
fn rules_of(p: &Policy, device: serde_json::Value, recorded_ago: Option<i64>) -> Vec<Rule> {
    let now = at("2026-11-30T12:00:00Z");
    let manifests = manifest("");
    let actions: Vec<crate::core::action::Action> = manifests.iter().flat_map(Manifest::actions).collect();
    let device: Device = serde_json::from_value(device).expect("device");
    let mut ledger = Ledger::empty();
    if let Some(h) = recorded_ago {
        let mut r = crate::ledger::tests::record("other", "S1", crate::ledger::Status::Done);
        r.managed_device_id = Some(device.id.clone());
        r.attempts.push(crate::ledger::Attempt {
            started_at: now - jiff::SignedDuration::from_hours(h),
            client_request_id: uuid::Uuid::new_v4(),
            http_status: Some(204),
            ..crate::ledger::Attempt::default()
        });
        ledger.records.insert(r.key.clone(), r);
    }
    let resolutions: crate::core::plan::Resolutions =
        actions.iter().map(|a| (a.key.clone(), crate::core::plan::Resolution::Device(device.clone()))).collect();
    let opts = crate::core::plan::PlanOptions { report_orphans: false, rename_guard: None };
    let plan = crate::core::plan::plan(&actions, &ledger, &resolutions, opts);
    let plan = p.review(plan, Vec::new(), &ledger, &AuditLog::default(), now);
    plan.violations.iter().map(|v| v.rule).collect()
}

// Each rule about what a device resolved to, by its code: what breaks it and what does not.
#[test]
fn every_device_rule_reports_its_own_code() {
    let android = serde_json::json!({"id": "dev-1", "serialNumber": "S1", "operatingSystem": "Android"});
    let iphone = serde_json::json!({"id": "dev-1", "serialNumber": "S1", "operatingSystem": "iOS", "managedDeviceOwnerType": "company"});
    let portal = serde_json::json!({"id": "dev-1", "serialNumber": "S1", "operatingSystem": "Android",
        "deviceActionResults": [{"actionName": crate::core::kinds::reset_passcode::RESET_PASSCODE.graph_name, "actionState": "done", "startDateTime": "2026-11-30T11:00:00Z"}]});
    let cases: [(&str, &serde_json::Value, Option<i64>, &[Rule]); 9] = [
        ("{}\n", &android, Some(1), &[]),
        ("allowPlatforms: [android]\n", &iphone, None, &[Rule::AllowPlatforms]),
        ("allowPlatforms: [android, ios]\n", &iphone, None, &[]),
        ("protectedDevices:\n  - { id: DEV-1, reason: vip }\n", &android, None, &[Rule::ProtectedDevices]),
        ("cooldown: 24h\n", &android, Some(1), &[Rule::Cooldown]),
        ("cooldown: 24h\n", &android, Some(24), &[]),
        // A reset made outside reconcile an hour ago, older than outOfBand.within: the
        // cooldown still counts it.
        ("cooldown: 24h\noutOfBand: { within: 30m }\n", &portal, None, &[Rule::Cooldown]),
        ("outOfBand: { within: 30m }\n", &portal, None, &[]),
        ("maxActionsPerApply: 1\n", &android, None, &[]),
    ];
    for (rules, device, recorded_ago, want) in cases {
        assert_eq!(device_rules(rules, device.clone(), recorded_ago), want, "policy {rules:?}, device {device}");
    }
}

// Each rule about a manifest alone, by its code: what breaks it and what does not.
#[test]
fn every_manifest_rule_reports_its_own_code() {
    let cases: [(&str, &str, &[Rule]); 11] = [
        ("{}\n", "", &[]),
        ("requireTicket: true\n", "", &[Rule::RequireTicket]),
        ("requireTicket: true\n", "  ticket: ' '\n", &[Rule::RequireTicket]),
        ("requireTicket: true\n", "  ticket: INC-1\n", &[]),
        ("ticketPattern: '^INC-[0-9]+$'\n", "  ticket: CHG-1\n", &[Rule::TicketPattern]),
        ("ticketPattern: '^INC-[0-9]+$'\n", "  ticket: INC-1\n", &[]),
        ("requireReason: true\n", "  reason: ' '\n", &[Rule::RequireReason]),
        ("requireRequestedBy: true\n", "", &[Rule::RequireRequestedBy]),
        ("requireReason: true\nrequireRequestedBy: true\n", "", &[Rule::RequireReason, Rule::RequireRequestedBy]),
        ("requireReason: true\nrequireRequestedBy: true\n", "  reason: why\n  requestedBy: bob\n", &[]),
        ("protectedDevices:\n  - { serialNumber: s1, reason: vip }\n", "", &[Rule::ProtectedDevices]),
    ];
    for (rules, meta, want) in cases {
        let found = policy(rules).check_manifests(&manifest(meta));
        let codes: Vec<Rule> = found.iter().map(|v| v.rule).collect();
        assert_eq!(codes, want, "policy {rules:?}, metadata {meta:?}");
        for v in &found {
            assert!(v.diagnostic.message.starts_with(&format!("policy {}: ", v.rule.code())), "{v:?}");
            assert_eq!(v.manifest.as_deref(), Some("m"), "a manifest's rule stops that manifest");
        }
    }
}

#[test]
fn office_hours_edges_in_the_configured_time_zone() {
    // Berlin is UTC+1 in November.
    let p = policy(
        "changeWindows:\n  timeZone: Europe/Berlin\n  windows:\n    - { days: [mon, tue, wed, thu, fri], from: '08:00', to: '18:00' }\n",
    );
    assert!(p.check_window(at("2026-11-30T06:59:59Z")).is_err(), "Mon 07:59:59 Berlin");
    assert!(p.check_window(at("2026-11-30T07:00:00Z")).is_ok(), "Mon 08:00 Berlin: from is inclusive");
    assert!(p.check_window(at("2026-11-30T16:59:00Z")).is_ok(), "Mon 17:59 Berlin");
    assert!(p.check_window(at("2026-11-30T17:00:00Z")).is_err(), "Mon 18:00 Berlin: to is exclusive");
    assert!(p.check_window(at("2026-11-28T10:00:00Z")).is_err(), "Saturday");
    // The same instant is inside for Berlin and outside for New York (02:00 there).
    let ny = policy(
        "changeWindows:\n  timeZone: America/New_York\n  windows:\n    - { days: [mon], from: '08:00', to: '18:00' }\n",
    );
    assert!(ny.check_window(at("2026-11-30T07:00:00Z")).is_err());
    assert!(ny.check_window(at("2026-11-30T13:00:00Z")).is_ok());
}

#[test]
fn a_refusal_says_when_the_next_window_opens() {
    let p = policy(
        "changeWindows:\n  timeZone: Europe/Berlin\n  windows:\n    - { days: [mon, tue, wed, thu, fri], from: '08:00', to: '18:00' }\n",
    );
    // Saturday 11:00 Berlin: the next window is Monday 08:00.
    let why = p.check_window(at("2026-11-28T10:00:00Z")).expect_err("outside");
    assert!(why.message.ends_with("the next opens Mon 2026-11-30 08:00"), "{}", why.message);
    // Monday 18:30: Tuesday 08:00.
    let why = p.check_window(at("2026-11-30T17:30:00Z")).expect_err("outside");
    assert!(why.message.ends_with("the next opens Tue 2026-12-01 08:00"), "{}", why.message);
}

#[test]
fn overnight_windows_belong_to_the_day_they_start() {
    let p = policy("changeWindows:\n  timeZone: UTC\n  windows:\n    - { days: [fri], from: '22:00', to: '06:00' }\n");
    assert!(p.check_window(at("2026-11-27T21:59:00Z")).is_err(), "Fri 21:59");
    assert!(p.check_window(at("2026-11-27T22:00:00Z")).is_ok(), "Fri 22:00");
    assert!(p.check_window(at("2026-11-28T05:59:00Z")).is_ok(), "Sat 05:59");
    assert!(p.check_window(at("2026-11-28T06:00:00Z")).is_err(), "Sat 06:00");
    assert!(p.check_window(at("2026-11-29T01:00:00Z")).is_err(), "Sun 01:00 follows Saturday");
}

#[test]
fn no_windows_means_always() {
    assert!(Policy::default().check_window(at("2026-11-28T03:00:00Z")).is_ok());
}

#[test]
fn the_likely_rename_guard_is_on_by_default_and_configurable() {
    let now = at("2026-11-30T08:00:00Z");
    let day = std::time::Duration::from_secs(24 * 3600);
    assert_eq!(Policy::default().rename_guard(now), Some(RenameGuard { now, within: day }));
    let hour = std::time::Duration::from_secs(3600);
    assert_eq!(policy("likelyRename: { within: 1h }\n").rename_guard(now), Some(RenameGuard { now, within: hour }));
    assert_eq!(policy("likelyRename: { then: send }\n").rename_guard(now), None);
}

#[test]
fn bad_policies_point_into_the_config() {
    let raw: RawPolicy = serde_saphyr::from_str(
        "maxActionsPerApply: 0\nticketPattern: '(['\ncooldown: 1d\nchangeWindows:\n  timeZone: Mars/Olympus\n  windows:\n    - { days: [mon], from: '25:00', to: '08:00' }\nprotectedDevices:\n  - { reason: no selector }\n",
    )
    .expect("yaml");
    let mut diags = Diagnostics::default();
    Policy::from_raw(raw, Path::new("reconcile.yaml"), &mut diags);
    let text: Vec<String> =
        diags.items().iter().map(|d| format!("{}:{}", d.pos.map_or(0, |p| p.line), d.message)).collect();
    for want in [
        "1:invalid policy.maxActionsPerApply",
        "2:invalid policy.ticketPattern",
        "3:policy.cooldown",
        "5:unknown time zone",
        "7:invalid time `25:00`",
        "9:a protected device needs exactly one",
    ] {
        assert!(text.iter().any(|t| t.starts_with(want)), "{want} in {text:?}");
    }
}

/// `a` as the operator's floor and `b` as the repository's, combined both ways round: the
/// stricter of two policies must not depend on which is which.
fn both_ways(a: &str, b: &str) -> [Policy; 2] {
    let op = |yaml: &str| {
        let raw: RawPolicy = serde_saphyr::from_str(yaml).expect("policy YAML");
        Policy::from_raw_as(raw, Path::new("op.yaml"), Origin::Operator, &mut Diagnostics::default())
    };
    [op(a).stricter(policy(b)), op(b).stricter(policy(a))]
}

// The stricter-of rule, rule by rule: counts the smaller, required fields and protected devices
// the union, platforms and change windows the intersection, durations the longer.
#[test]
fn the_stricter_of_two_policies_rule_by_rule() {
    let android = serde_json::json!({"id": "dev-1", "serialNumber": "S1", "operatingSystem": "Android"});
    let iphone = serde_json::json!({"id": "dev-1", "serialNumber": "S1", "operatingSystem": "iOS"});
    for p in both_ways("maxActionsPerApply: 2\n", "maxActionsPerApply: 5\n") {
        assert_eq!(p.max_actions(), Some(2));
    }
    for p in both_ways("maxActionsPerApply: 3\n", "{}\n") {
        assert_eq!(p.max_actions(), Some(3));
    }
    let codes = |p: &Policy, meta: &str| p.check_manifests(&manifest(meta)).iter().map(|v| v.rule).collect::<Vec<_>>();
    for p in both_ways("requireTicket: true\n", "requireTicket: false\nrequireReason: true\n") {
        assert_eq!(codes(&p, ""), [Rule::RequireTicket, Rule::RequireReason]);
    }
    for p in both_ways("requireRequestedBy: true\n", "{}\n") {
        assert_eq!(codes(&p, ""), [Rule::RequireRequestedBy]);
    }
    for p in both_ways("ticketPattern: '^INC-'\n", "ticketPattern: '-[0-9]+$'\n") {
        assert_eq!(codes(&p, "  ticket: INC-x\n"), [Rule::TicketPattern]);
        assert_eq!(codes(&p, "  ticket: CHG-1\n"), [Rule::TicketPattern]);
        assert!(codes(&p, "  ticket: INC-1\n").is_empty());
    }
    for p in both_ways("protectedDevices:\n  - { serialNumber: s1, reason: vip }\n", "{}\n") {
        assert_eq!(codes(&p, ""), [Rule::ProtectedDevices]);
    }
    // Two sources protecting different devices of the same kind: both stay protected.
    for p in both_ways(
        "protectedDevices:\n  - { serialNumber: s1, reason: vip }\n",
        "protectedDevices:\n  - { serialNumber: s9, reason: board }\n",
    ) {
        assert_eq!(codes(&p, ""), [Rule::ProtectedDevices], "S1 stays protected whichever side lists it");
        assert_eq!(p.protected.len(), 2);
    }
    let device = |p: &Policy, d: &serde_json::Value, ago: Option<i64>| rules_of(p, d.clone(), ago);
    for p in both_ways("allowPlatforms: [android, ios]\n", "allowPlatforms: [android]\n") {
        assert_eq!(device(&p, &iphone, None), [Rule::AllowPlatforms]);
        assert!(device(&p, &android, None).is_empty());
    }
    for p in both_ways("allowPlatforms: [ios]\n", "allowPlatforms: [android]\n") {
        assert_eq!(device(&p, &android, None), [Rule::AllowPlatforms], "the intersection is empty");
        assert_eq!(device(&p, &iphone, None), [Rule::AllowPlatforms]);
    }
    for p in both_ways("cooldown: 1h\n", "cooldown: 24h\n") {
        assert_eq!(device(&p, &android, Some(2)), [Rule::Cooldown]);
        assert!(device(&p, &android, Some(25)).is_empty());
    }
    let windows = |days: &str| {
        format!("changeWindows:\n  timeZone: UTC\n  windows:\n    - {{ days: [{days}], from: '00:00', to: '24:00' }}\n")
    };
    for p in both_ways(&windows("mon, tue"), &windows("tue, wed")) {
        assert!(p.check_window(at("2026-12-01T10:00:00Z")).is_ok(), "Tuesday is in both");
        assert!(p.check_window(at("2026-11-30T10:00:00Z")).is_err(), "Monday is in one");
        assert!(p.check_window(at("2026-12-02T10:00:00Z")).is_err(), "Wednesday is in one");
    }
    for p in both_ways("likelyRename: { within: 1h }\n", "likelyRename: { then: send }\n") {
        assert_eq!(p.rename_within, Some(Duration::from_secs(3600)));
    }
    for p in both_ways("likelyRename: { within: 1h }\n", "likelyRename: { within: 48h }\n") {
        assert_eq!(p.rename_within, Some(Duration::from_secs(48 * 3600)));
    }
    for p in both_ways("outOfBand: { within: 1h, then: send }\n", "outOfBand: { within: 2h, then: block }\n") {
        assert_eq!(p.out_of_band, (Duration::from_secs(7200), OutOfBandThen::Block));
    }
    for p in both_ways("outOfBand: { then: send }\n", "{}\n") {
        assert_eq!(p.out_of_band.1, OutOfBandThen::Adopt);
    }
}

// The rules in effect are listed with their sources, and the digest is of the rules alone.
#[test]
fn the_rules_in_effect_name_their_sources_and_the_digest_their_values() {
    let [p, _] = both_ways("maxActionsPerApply: 2\nrequireTicket: true\n", "maxActionsPerApply: 5\ncooldown: 1h\n");
    let rules = p.rules();
    assert!(rules.contains(&"maxActionsPerApply 2 (op.yaml:1 (the operator's))".to_owned()), "{rules:?}");
    assert!(rules.contains(&"requireTicket (op.yaml:1 (the operator's))".to_owned()), "{rules:?}");
    assert!(rules.iter().any(|r| r.starts_with("cooldown 1h (reconcile.yaml:")), "{rules:?}");
    let digest = |yaml: &str| policy(yaml).digest();
    assert_eq!(digest("maxActionsPerApply: 2\n"), digest("maxActionsPerApply: 2\n"));
    assert_eq!(digest("maxActionsPerApply: 2\n").len(), 16);
    for other in [
        "maxActionsPerApply: 3\n",
        "{}\n",
        "requireTicket: true\nmaxActionsPerApply: 2\n",
        "cooldown: 1h\nmaxActionsPerApply: 2\n",
    ] {
        assert_ne!(digest("maxActionsPerApply: 2\n"), digest(other), "{other}");
    }
}

// What a change loosens and tightens, rule by rule, as the plan shows it.
#[test]
fn a_change_is_read_as_loosening_or_tightening_rule_by_rule() {
    let cases: [(&str, &str, &[&str], &[&str]); 12] = [
        ("maxActionsPerApply: 5\n", "maxActionsPerApply: 500\n", &["maxActionsPerApply 5 → 500"], &[]),
        ("maxActionsPerApply: 5\n", "{}\n", &["maxActionsPerApply 5 → no limit"], &[]),
        ("{}\n", "maxActionsPerApply: 5\n", &[], &["maxActionsPerApply no limit → 5"]),
        ("requireTicket: true\n", "{}\n", &["requireTicket dropped"], &[]),
        ("ticketPattern: a\n", "ticketPattern: b\n", &["ticketPattern `a` removed"], &["ticketPattern `b` added"]),
        ("allowPlatforms: [android]\n", "allowPlatforms: [android, ios]\n", &["allowPlatforms allows ios"], &[]),
        ("allowPlatforms: [android]\n", "{}\n", &["allowPlatforms [android] removed"], &[]),
        (
            "protectedDevices:\n  - { serialNumber: S1, reason: x }\n",
            "protectedDevices:\n  - { serialNumber: S2, reason: x }\n",
            &["protected device serialNumber S1 removed"],
            &["protected device serialNumber S2 added"],
        ),
        ("cooldown: 24h\n", "cooldown: 1h\n", &["cooldown 24h → 1h"], &[]),
        ("{}\n", "likelyRename: { then: send }\n", &["likelyRename then: send"], &[]),
        (
            "{}\n",
            "outOfBand: { then: send, within: 1h }\n",
            &["outOfBand.then adopt → send", "outOfBand.within 24h → 1h"],
            &[],
        ),
        (
            "changeWindows:\n  timeZone: UTC\n  windows:\n    - { days: [mon], from: '09:00', to: '17:00' }\n",
            "{}\n",
            &["changeWindows removed"],
            &[],
        ),
    ];
    for (old, new, loosens, tightens) in cases {
        let (l, t) = super::combine::diff(&policy(old), &policy(new));
        assert_eq!(l, loosens, "{old:?} → {new:?}");
        assert_eq!(t, tightens, "{old:?} → {new:?}");
        // The other way round, the same change is a tightening.
        let (l2, _) = super::combine::diff(&policy(new), &policy(old));
        assert_eq!(l2.len(), tightens.len(), "{new:?} → {old:?}");
    }
}

// The same changes the other way round are tightenings, each with its own words; an unchanged
// rule is neither.
#[test]
fn a_change_that_tightens_says_how_and_an_unchanged_rule_says_nothing() {
    let windows = |days: &str| {
        format!("changeWindows:\n  timeZone: UTC\n  windows:\n    - {{ days: [{days}], from: '09:00', to: '17:00' }}\n")
    };
    let cases: [(String, String, &[&str], &[&str]); 12] = [
        ("maxActionsPerApply: 500\n".into(), "maxActionsPerApply: 5\n".into(), &[], &["maxActionsPerApply 500 → 5"]),
        ("{}\n".into(), "requireReason: true\n".into(), &[], &["requireReason added"]),
        ("{}\n".into(), "allowPlatforms: [android]\n".into(), &[], &["allowPlatforms [android] added"]),
        (
            "allowPlatforms: [android, ios]\n".into(),
            "allowPlatforms: [android]\n".into(),
            &[],
            &["allowPlatforms no longer allows ios"],
        ),
        ("cooldown: 1h\n".into(), "cooldown: 24h\n".into(), &[], &["cooldown 1h → 24h"]),
        ("{}\n".into(), "cooldown: 24h\n".into(), &[], &["cooldown none → 24h"]),
        ("cooldown: 24h\n".into(), "{}\n".into(), &["cooldown 24h → none"], &[]),
        ("{}\n".into(), windows("mon"), &[], &["changeWindows added"]),
        (windows("mon, tue"), windows("mon"), &[], &["changeWindows narrowed"]),
        (windows("mon"), windows("tue"), &["changeWindows widened"], &["changeWindows narrowed"]),
        (
            "likelyRename: { then: send }\n".into(),
            "likelyRename: { within: 1h }\n".into(),
            &[],
            &["likelyRename then: block"],
        ),
        (
            "likelyRename: { within: 1h }\noutOfBand: { then: send, within: 1h }\n".into(),
            "likelyRename: { within: 48h }\noutOfBand: { then: block, within: 48h }\n".into(),
            &[],
            &["likelyRename.within 1h → 48h", "outOfBand.then send → block", "outOfBand.within 1h → 48h"],
        ),
    ];
    for (old, new, loosens, tightens) in &cases {
        let (l, t) = super::combine::diff(&policy(old), &policy(new));
        assert_eq!(l, *loosens, "{old:?} → {new:?}");
        assert_eq!(t, *tightens, "{old:?} → {new:?}");
    }
    for same in ["maxActionsPerApply: 5\ncooldown: 1h\nrequireTicket: true\n", "likelyRename: { within: 2h }\n", "{}\n"]
    {
        assert_eq!(super::combine::diff(&policy(same), &policy(same)), (vec![], vec![]), "{same:?}");
    }
    let (l, _) =
        super::combine::diff(&policy("likelyRename: { within: 48h }\n"), &policy("likelyRename: { within: 1h }\n"));
    assert_eq!(l, ["likelyRename.within 48h → 1h"]);
}

// A repository rule looser than the operator's floor is a warning naming both; one as strict or
// stricter is not.
#[test]
fn the_floor_warns_of_each_looser_repository_rule_and_of_nothing_else() {
    let op = |yaml: &str| {
        let raw: RawPolicy = serde_saphyr::from_str(yaml).expect("policy YAML");
        super::Floor {
            policy: Policy::from_raw_as(raw, Path::new("op.yaml"), Origin::Operator, &mut Diagnostics::default()),
        }
    };
    let windows = |days: &str| {
        format!("changeWindows:\n  timeZone: UTC\n  windows:\n    - {{ days: [{days}], from: '09:00', to: '17:00' }}\n")
    };
    let cases: [(String, String, &[&str]); 12] = [
        (
            "maxActionsPerApply: 5\n".into(),
            "maxActionsPerApply: 6\n".into(),
            &["policy.maxActionsPerApply 6 is looser than the operator's 5 (op.yaml:1 (the operator's))"],
        ),
        ("maxActionsPerApply: 5\n".into(), "maxActionsPerApply: 5\n".into(), &[]),
        ("cooldown: 24h\n".into(), "cooldown: 1h\n".into(), &["policy.cooldown 1h is looser than the operator's 24h"]),
        ("cooldown: 24h\n".into(), "cooldown: 24h\n".into(), &[]),
        (
            "allowPlatforms: [android]\n".into(),
            "allowPlatforms: [android, ios]\n".into(),
            &["policy.allowPlatforms [android, ios] is looser than the operator's [android]"],
        ),
        ("allowPlatforms: [android, ios]\n".into(), "allowPlatforms: [android]\n".into(), &[]),
        (
            "requireTicket: true\n".into(),
            "requireTicket: false\n".into(),
            &["policy.requireTicket: false is looser than the operator's true"],
        ),
        ("requireReason: true\n".into(), "requireReason: false\n".into(), &["policy.requireReason: false is looser"]),
        (
            "requireRequestedBy: true\n".into(),
            "requireRequestedBy: false\n".into(),
            &["policy.requireRequestedBy: false is looser"],
        ),
        ("requireTicket: true\n".into(), "requireReason: false\n".into(), &[]),
        (windows("mon"), windows("mon, tue"), &["policy.changeWindows is looser than the operator's windows"]),
        (windows("mon, tue"), windows("mon"), &[]),
    ];
    for (floor, repo, want) in &cases {
        let found: Vec<String> = op(floor).warnings(&policy(repo)).into_iter().map(|d| d.message).collect();
        assert_eq!(found.len(), want.len(), "{floor:?} / {repo:?}: {found:?}");
        for (f, w) in found.iter().zip(want.iter()) {
            assert!(f.starts_with(w), "{f} does not start with {w}");
        }
    }
}

/// Manifests of `kind: DeviceAction`: each `(name, action, serials)`, with a ticket unless
/// `ticket` is false.
fn action_manifests(list: &[(&str, &str, &[&str])], ticket: bool) -> Vec<Manifest> {
    let dir = tempfile::tempdir().expect("tempdir");
    let files: Vec<std::path::PathBuf> = list
        .iter()
        .map(|(name, action, serials)| {
            let file = dir.path().join(format!("{name}.yaml"));
            let devices: String = serials.iter().map(|s| format!("    - serialNumber: {s}\n")).collect();
            let ticket = if ticket { "  ticket: INC-1\n" } else { "" };
            let yaml = format!(
                "apiVersion: intune-reconcile/v1\nkind: DeviceAction\nmetadata:\n  name: {name}\n{ticket}spec:\n  action: {action}\n  devices:\n{devices}"
            );
            std::fs::write(&file, yaml).expect("write");
            file
        })
        .collect();
    let loaded = crate::manifest::load(&files, crate::manifest::validate::Context { beta_api: true });
    assert!(!loaded.diagnostics.has_errors(), "{:?}", loaded.diagnostics);
    loaded.manifests
}

/// The violations `review` finds for `manifests`, each serial resolved to a corporate Android
/// device `dev-<serial>`, with the ledger `ledger`.
fn kind_violations(p: &Policy, manifests: &[Manifest], ledger: &Ledger) -> Vec<(Rule, String)> {
    let now = at("2026-11-30T12:00:00Z");
    let actions: Vec<crate::core::action::Action> = manifests.iter().flat_map(Manifest::actions).collect();
    let resolutions: crate::core::plan::Resolutions = actions
        .iter()
        .map(|a| {
            let d = serde_json::json!({"id": format!("dev-{}", a.selector.value), "serialNumber": a.selector.value,
                "operatingSystem": "Android", "managedDeviceOwnerType": "company"});
            (a.key.clone(), crate::core::plan::Resolution::Device(serde_json::from_value(d).expect("device")))
        })
        .collect();
    let opts = crate::core::plan::PlanOptions { report_orphans: false, rename_guard: None };
    let plan = crate::core::plan::plan(&actions, ledger, &resolutions, opts);
    let plan = p.review(plan, p.check_manifests(manifests), ledger, &AuditLog::default(), now);
    plan.violations.iter().map(|v| (v.rule, v.diagnostic.message.clone())).collect()
}

// Built-in class defaults: a destructive kind needs a ticket and at most five leave per apply;
// a disruptive kind has its default cooldown; resetPasscode and harmless kinds have none.
#[test]
fn class_defaults_are_built_into_every_policy() {
    use crate::core::action::ActionKind;
    let none = Policy::default();
    let codes = |v: Vec<(Rule, String)>| v.into_iter().map(|(r, _)| r).collect::<Vec<_>>();
    let wipe = action_manifests(&[("w", "wipe", &["S1"])], false);
    let found = kind_violations(&none, &wipe, &Ledger::empty());
    assert_eq!(codes(found.clone()), [Rule::RequireTicket]);
    assert!(found[0].1.contains("which every wipe needs (built in for destructive actions)"), "{found:?}");
    for action in ["retire", "cleanWindowsDevice"] {
        let m = action_manifests(&[("w", action, &["S1"])], false);
        assert_eq!(codes(kind_violations(&none, &m, &Ledger::empty())), [Rule::RequireTicket], "{action}");
    }
    for action in ["remoteLock", "syncDevice", "resetPasscode"] {
        let m = action_manifests(&[("m", action, &["S1"])], false);
        assert!(kind_violations(&none, &m, &Ledger::empty()).is_empty(), "{action}");
    }
    let five = action_manifests(&[("w", "wipe", &["S1", "S2", "S3"]), ("r", "retire", &["S4", "S5"])], true);
    assert!(kind_violations(&none, &five, &Ledger::empty()).is_empty(), "five destructive actions are fine");
    let six = action_manifests(&[("w", "wipe", &["S1", "S2", "S3"]), ("r", "retire", &["S4", "S5", "S6"])], true);
    let found = kind_violations(&none, &six, &Ledger::empty());
    assert_eq!(codes(found.clone()), [Rule::MaxActionsPerApply]);
    assert!(found[0].1.contains("the plan sends 6 destructive actions"), "{found:?}");
    // Six locks are not destructive: no class limit.
    let locks = action_manifests(&[("l", "remoteLock", &["S1", "S2", "S3", "S4", "S5", "S6"])], false);
    assert!(kind_violations(&none, &locks, &Ledger::empty()).is_empty());

    let day = Duration::from_secs(24 * 3600);
    assert_eq!(none.kind_cooldown(ActionKind::RemoteLock).map(|(d, _)| d), Some(day));
    assert!(none.kind_cooldown(ActionKind::PasscodeReset).is_none(), "a reset's behaviour is unchanged");
    assert!(none.kind_cooldown(ActionKind::SyncDevice).is_none());
    assert!(none.kind_cooldown(ActionKind::Wipe).is_none());
    // A shorter policy cooldown does not loosen the default; a longer one applies.
    assert_eq!(policy("cooldown: 1h\n").kind_cooldown(ActionKind::RemoteLock).map(|(d, _)| d), Some(day));
    assert_eq!(
        policy("kinds:\n  remoteLock: { cooldown: 48h }\n").kind_cooldown(ActionKind::RemoteLock).map(|(d, _)| d),
        Some(2 * day)
    );
    assert_eq!(
        policy("cooldown: 1h\n").kind_cooldown(ActionKind::PasscodeReset).map(|(d, _)| d),
        Some(Duration::from_secs(3600))
    );
    // A kind's own shorter cooldown does not shorten the repository-wide one (the longest holds).
    assert_eq!(
        policy("cooldown: 72h\nkinds:\n  remoteLock: { cooldown: 1h }\n")
            .kind_cooldown(ActionKind::RemoteLock)
            .map(|(d, _)| d),
        Some(3 * day)
    );
    // And a kind's longer one lengthens it for that kind.
    assert_eq!(
        policy("cooldown: 1h\nkinds:\n  remoteLock: { cooldown: 48h }\n")
            .kind_cooldown(ActionKind::RemoteLock)
            .map(|(d, _)| d),
        Some(2 * day)
    );
    assert!(!none.has_device_rules([ActionKind::PasscodeReset, ActionKind::Wipe].into_iter()));
    assert!(none.has_device_rules([ActionKind::RemoteLock].into_iter()));
}

// `policy.kinds.<kind>`: limits count that kind only, a ticket for that kind, a cooldown that
// counts that kind's earlier actions on the device only.
#[test]
fn kind_rules_count_their_own_kind_only() {
    let p = policy("kinds:\n  wipe: { maxActionsPerApply: 1 }\n  remoteLock: { requireTicket: true }\n");
    let codes = |v: Vec<(Rule, String)>| v.into_iter().map(|(r, _)| r).collect::<Vec<_>>();
    let two = action_manifests(&[("w", "wipe", &["S1", "S2"]), ("r", "retire", &["S3"])], true);
    let found = kind_violations(&p, &two, &Ledger::empty());
    assert_eq!(codes(found.clone()), [Rule::MaxActionsPerApply]);
    assert!(
        found[0].1.contains("the plan sends 2 wipe actions, more than policy.kinds.wipe's limit of 1"),
        "{found:?}"
    );
    let one = action_manifests(&[("w", "wipe", &["S1"]), ("r", "retire", &["S2", "S3"])], true);
    assert!(kind_violations(&p, &one, &Ledger::empty()).is_empty(), "retires do not count for the wipe limit");
    let lock = action_manifests(&[("l", "remoteLock", &["S1"])], false);
    assert_eq!(codes(kind_violations(&p, &lock, &Ledger::empty())), [Rule::RequireTicket]);
    let sync = action_manifests(&[("s", "syncDevice", &["S1"])], false);
    assert!(kind_violations(&p, &sync, &Ledger::empty()).is_empty());
    let kinds = [crate::core::action::ActionKind::Wipe; 2];
    assert!(p.kind_limits_may_be_exceeded(&kinds));
    assert!(!p.kind_limits_may_be_exceeded(&kinds[..1]));
    assert!(Policy::default().kind_limits_may_be_exceeded(&[crate::core::action::ActionKind::Retire; 6]));
    assert!(!Policy::default().kind_limits_may_be_exceeded(&[crate::core::action::ActionKind::Retire; 5]));
}

// The lost-device playbook: a lock and lost mode on one device in one plan both go; two
// manifests locking one device do not.
#[test]
fn a_cooldown_counts_the_same_kind_on_the_same_device() {
    let none = Policy::default();
    let playbook = action_manifests(&[("l", "remoteLock", &["S1"]), ("m", "enableLostMode", &["S1"])], false);
    assert!(kind_violations(&none, &playbook, &Ledger::empty()).is_empty());
    let twice = action_manifests(&[("a", "remoteLock", &["S1"]), ("b", "remoteLock", &["S1"])], false);
    let found = kind_violations(&none, &twice, &Ledger::empty());
    assert_eq!(found.iter().map(|(r, _)| *r).collect::<Vec<_>>(), [Rule::Cooldown]);
    assert!(found[0].1.contains("is also sent a remoteLock by manifest `a` in this plan"), "{found:?}");
    // Two resets of one device are fine without a cooldown (unchanged), not with one.
    let resets = action_manifests(&[("a", "resetPasscode", &["S1"]), ("b", "resetPasscode", &["S1"])], false);
    assert!(kind_violations(&none, &resets, &Ledger::empty()).is_empty());
    assert_eq!(kind_violations(&policy("cooldown: 1h\n"), &resets, &Ledger::empty()).len(), 1);
    // An earlier reset of the device does not hold back a lock, even under policy.cooldown.
    let mut ledger = Ledger::empty();
    let mut r = crate::ledger::tests::record("old", "S1", crate::ledger::Status::Done);
    r.managed_device_id = Some("dev-S1".into());
    r.attempts.push(crate::ledger::Attempt {
        started_at: at("2026-11-30T11:00:00Z"),
        client_request_id: uuid::Uuid::new_v4(),
        http_status: Some(204),
        ..crate::ledger::Attempt::default()
    });
    ledger.records.insert(r.key.clone(), r);
    let lock = action_manifests(&[("l", "remoteLock", &["S1"])], false);
    assert!(kind_violations(&policy("cooldown: 24h\n"), &lock, &ledger).is_empty());
    assert_eq!(kind_violations(&policy("cooldown: 24h\n"), &resets[..1], &ledger).len(), 1);
}

// `policy.kinds` as written: unknown kinds and keys point at their line; stricter-of, diff, the
// floor's warnings and the rules in effect treat each kind's rules like the repository-wide ones.
#[test]
fn kind_rules_parse_combine_and_diff() {
    for (yaml, line, want) in [
        ("kinds:\n  wipes: { maxActionsPerApply: 1 }\n", 2, "unknown kind of action `wipes` in policy.kinds"),
        ("kinds:\n  wipe: { maxActionsPerApply: 0 }\n", 2, "invalid policy.kinds.wipe.maxActionsPerApply `0`"),
        ("kinds:\n  remoteLock:\n    cooldown: 1d\n", 3, "policy.kinds.remoteLock.cooldown"),
    ] {
        let raw: RawPolicy = serde_saphyr::from_str(yaml).expect("yaml");
        let mut diags = Diagnostics::default();
        Policy::from_raw(raw, Path::new("reconcile.yaml"), &mut diags);
        let found = diags.items().iter().find(|d| d.message.starts_with(want));
        assert_eq!(found.and_then(|d| d.pos).map(|p| p.line), Some(line), "{yaml}: {diags:?}");
    }
    assert!(serde_saphyr::from_str::<RawPolicy>("kinds:\n  wipe: { maxActions: 1 }\n").is_err(), "unknown key");
    let mut diags = Diagnostics::default();
    let raw: RawPolicy = serde_saphyr::from_str("kinds:\n  wipe: { requireTicket: false }\n").expect("yaml");
    let p = Policy::from_raw(raw, Path::new("reconcile.yaml"), &mut diags);
    assert!(!diags.has_errors() && diags.warning_count() == 1, "{diags:?}");
    assert!(p.kind_requires_ticket(crate::core::action::ActionKind::Wipe).is_some(), "false does not loosen");
    // Only a destructive kind, whose ticket is built in, warns that `false` does nothing.
    let mut diags = Diagnostics::default();
    let raw: RawPolicy = serde_saphyr::from_str("kinds:\n  remoteLock: { requireTicket: false }\n").expect("yaml");
    let p = Policy::from_raw(raw, Path::new("reconcile.yaml"), &mut diags);
    assert!(diags.items().is_empty(), "{diags:?}");
    assert!(p.kind_requires_ticket(crate::core::action::ActionKind::RemoteLock).is_none());

    let wipe = crate::core::action::ActionKind::Wipe;
    for p in both_ways("kinds:\n  wipe: { maxActionsPerApply: 1 }\n", "kinds:\n  wipe: { maxActionsPerApply: 3 }\n") {
        assert_eq!(p.kind_limit(wipe).map(|(n, _)| n), Some(1));
    }
    for p in both_ways("kinds:\n  remoteLock: { requireTicket: true }\n", "{}\n") {
        assert!(p.kind_requires_ticket(crate::core::action::ActionKind::RemoteLock).is_some());
    }
    let cases: [(&str, &str, &[&str], &[&str]); 4] = [
        (
            "kinds:\n  wipe: { maxActionsPerApply: 1 }\n",
            "kinds:\n  wipe: { maxActionsPerApply: 3 }\n",
            &["kinds.wipe.maxActionsPerApply 1 → 3"],
            &[],
        ),
        ("kinds:\n  remoteLock: { requireTicket: true }\n", "{}\n", &["kinds.remoteLock.requireTicket dropped"], &[]),
        ("{}\n", "kinds:\n  remoteLock: { cooldown: 48h }\n", &[], &["kinds.remoteLock.cooldown none → 48h"]),
        (
            "kinds:\n  wipe: { cooldown: 48h }\n",
            "kinds:\n  wipe: { cooldown: 1h }\n",
            &["kinds.wipe.cooldown 48h → 1h"],
            &[],
        ),
    ];
    for (old, new, loosens, tightens) in cases {
        let (l, t) = super::combine::diff(&policy(old), &policy(new));
        assert_eq!(l, loosens, "{old:?} → {new:?}");
        assert_eq!(t, tightens, "{old:?} → {new:?}");
    }
    let op = |yaml: &str| {
        let raw: RawPolicy = serde_saphyr::from_str(yaml).expect("policy YAML");
        super::Floor {
            policy: Policy::from_raw_as(raw, Path::new("op.yaml"), Origin::Operator, &mut Diagnostics::default()),
        }
    };
    let floor = op("kinds:\n  wipe: { maxActionsPerApply: 1, cooldown: 48h }\n");
    let found: Vec<String> = floor
        .warnings(&policy("kinds:\n  wipe: { maxActionsPerApply: 2, cooldown: 1h }\n"))
        .into_iter()
        .map(|d| d.message)
        .collect();
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].starts_with("policy.kinds.wipe.maxActionsPerApply 2 is looser than the operator's 1"),
        "{found:?}"
    );
    assert!(floor.warnings(&policy("kinds:\n  wipe: { maxActionsPerApply: 1 }\n")).is_empty());
    let rules = floor.policy.clone().stricter(policy("{}\n")).rules();
    assert!(rules.contains(&"kinds.wipe.maxActionsPerApply 1 (op.yaml:2 (the operator's))".to_owned()), "{rules:?}");
    let digest = |yaml: &str| policy(yaml).digest();
    assert_eq!(digest("{}\n"), Policy::default().digest(), "no kinds: the digest stays what it was");
    assert_ne!(
        digest("kinds:\n  wipe: { maxActionsPerApply: 1 }\n"),
        digest("kinds:\n  wipe: { maxActionsPerApply: 2 }\n")
    );
}

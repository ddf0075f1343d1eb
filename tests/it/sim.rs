//! The simulator's HTTP surface itself: what it answers outside the happy path, and that every
//! request — routed or not — is in its log with the `request-id` it answered with.

use crate::common::{http_post, sim};
use intune_reconcile::sim::SimConfig;

/// One raw HTTP/1.1 exchange: status, the `request-id` header, and the body.
fn call(addr: &str, method: &str, path: &str, token: Option<&str>) -> (u16, String, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let answer = crate::common::http::call(addr, method, path, &headers, &[]);
    let rid = answer.header("request-id").expect("a request-id header").to_owned();
    (answer.status, rid, answer.body)
}

#[test]
fn the_simulator_answers_like_graph_outside_its_routes_and_logs_every_request() {
    let sim = sim(SimConfig::default());
    let addr = sim.url().trim_start_matches("http://").to_owned();
    let token = sim.mint_token(&["DeviceManagementManagedDevices.Read.All"]);
    let t = Some(token.as_str());
    let cases: [(&str, &str, Option<&str>, u16, &str); 9] = [
        ("GET", "/v1.0/deviceManagement/managedDevices", None, 401, "InvalidAuthenticationToken"),
        ("GET", "/v1.0/deviceManagement/managedDevices?$top=1", t, 200, "\"value\""),
        ("GET", "/v1.0/deviceManagement/comanagedDevices", t, 400, "segment 'comanagedDevices'"),
        ("GET", "/beta/deviceManagement/comanagedDevices?$top=1", t, 200, "\"value\""),
        ("GET", "/v1.0/deviceManagement/remoteActionAudits", t, 400, "segment 'remoteActionAudits'"),
        ("GET", "/beta/deviceManagement/remoteActionAudits", t, 200, "\"value\""),
        ("DELETE", "/v1.0/deviceManagement/managedDevices/x", t, 400, "No route matches."),
        ("GET", "/v1.0/deviceManagement/managedDevices/x/y/z", None, 401, "InvalidAuthenticationToken"),
        ("GET", "/nothing/here", None, 404, "no such route in the simulator"),
    ];
    let mut ids = Vec::new();
    for (method, path, token, status, says) in cases {
        let (got, rid, body) = call(&addr, method, path, token);
        assert_eq!(got, status, "{method} {path}: {body}");
        assert!(body.contains(says), "{method} {path}: {body}");
        if body.contains("innerError") {
            assert!(body.contains(&format!("\"request-id\":\"{rid}\"")), "the body names the header's id: {body}");
        }
        ids.push(rid);
    }
    let log = sim.requests();
    assert_eq!(log.len(), cases.len(), "every request is logged once, routed or not");
    let seen: Vec<(&str, &str, u16, bool)> =
        log.iter().map(|r| (r.method.as_str(), r.path.as_str(), r.status, r.authorized)).collect();
    let want: Vec<(&str, &str, u16, bool)> = cases
        .iter()
        .map(|(m, p, tok, st, _)| (*m, p.split('?').next().unwrap_or_default(), *st, tok.is_some()))
        .collect();
    assert_eq!(seen, want);
    assert_eq!(ids.iter().collect::<std::collections::HashSet<_>>().len(), ids.len(), "a new request-id each time");
}

/// A Graph client of the simulator for these tests: a token with read and privileged roles.
struct Client {
    addr: String,
    auth: String,
}

impl Client {
    fn of(sim: &intune_reconcile::sim::SimHandle) -> Client {
        let token = sim.mint_token(&[
            "DeviceManagementManagedDevices.Read.All",
            "DeviceManagementManagedDevices.PrivilegedOperations.All",
        ]);
        Client { addr: sim.url().trim_start_matches("http://").to_owned(), auth: format!("Bearer {token}") }
    }

    fn send(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let mut headers = vec![("Authorization", self.auth.as_str())];
        if !body.is_empty() {
            headers.push(("Content-Type", "application/json"));
        }
        let a = crate::common::http::call(&self.addr, method, path, &headers, body.as_bytes());
        (a.status, serde_json::from_str(&a.body).unwrap_or(Value::Null))
    }

    /// `POST /{version}/deviceManagement/managedDevices/{id}/{action}` with `body`.
    fn act(&self, version: &str, id: &str, action: &str, body: &str) -> (u16, Value) {
        self.send("POST", &format!("/{version}/deviceManagement/managedDevices/{id}/{action}"), body)
    }

    /// A device as Graph shows it (`Value::Null` and the status when it is not there).
    fn device(&self, id: &str) -> (u16, Value) {
        self.send("GET", &format!("/v1.0/deviceManagement/managedDevices/{id}"), "")
    }

    /// The device's last `deviceActionResults` entry.
    fn last_result(&self, id: &str) -> Value {
        let (status, d) = self.device(id);
        assert_eq!(status, 200, "{d}");
        d["deviceActionResults"].as_array().and_then(|r| r.last()).cloned().unwrap_or(Value::Null)
    }

    /// The audit log's entries for `filter` (`$filter`, URL-encoded here).
    fn audits(&self, filter: &str) -> (u16, Vec<Value>) {
        let q: String = url::form_urlencoded::byte_serialize(filter.as_bytes()).collect();
        let (status, body) = self.send("GET", &format!("/beta/deviceManagement/remoteActionAudits?$filter={q}"), "");
        (status, body["value"].as_array().cloned().unwrap_or_default())
    }
}

use serde_json::{Value, json};

// Devices of the built-in fixture, by what they are.
const ANDROID_WORK_PROFILE: &str = "3fa85f64-5717-4562-b3fc-2c963f66afa6";
const ANDROID_FULLY_MANAGED: &str = "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f";
const ANDROID_DEDICATED: &str = "0f9e8d7c-6b5a-4948-8372-615f4e3d2c1b";
const AOSP: &str = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d";
const ANDROID_PERSONAL: &str = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9";
const IPHONE_UNSUPERVISED: &str = "7c8d9e0f-1a2b-4c3d-9e4f-5a6b7c8d9e0f";
const IPHONE_SUPERVISED: &str = "e2f3a4b5-c6d7-4e8f-9a0b-1c2d3e4f5a6b";
const WINDOWS: &str = "4d5e6f7a-8b9c-4d0e-9f1a-2b3c4d5e6f7a";
const MACOS: &str = "6f7a8b9c-0d1e-4f2a-8b3c-4d5e6f7a8b9c";
const RETIRING: &str = "8b9c0d1e-2f3a-4b4c-9d5e-6f7a8b9c0d1e";

#[test]
fn every_action_is_accepted_where_intune_runs_it_with_its_result_and_audit_names() {
    // (version, device, action, body, result type, audit name)
    type Row<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str, Option<&'a str>);
    let rows: [Row; 17] = [
        ("v1.0", ANDROID_WORK_PROFILE, "remoteLock", "", "remoteLockActionResult", Some("remoteLock")),
        ("v1.0", WINDOWS, "syncDevice", "", "deviceActionResult", None),
        ("v1.0", ANDROID_DEDICATED, "rebootNow", "{}", "deviceActionResult", Some("rebootNow")),
        ("v1.0", IPHONE_SUPERVISED, "shutDown", "", "deviceActionResult", Some("shutDown")),
        ("v1.0", ANDROID_PERSONAL, "retire", "", "deviceActionResult", Some("removeCompanyData")),
        (
            "v1.0",
            MACOS,
            "wipe",
            r#"{"keepUserData":false,"obliterationBehavior":"doNotObliterate"}"#,
            "deviceActionResult",
            Some("factoryReset"),
        ),
        (
            "beta",
            WINDOWS,
            "wipe",
            r#"{"keepEnrollmentData":true,"useProtectedWipe":true}"#,
            "deviceActionResult",
            Some("factoryReset"),
        ),
        (
            "v1.0",
            WINDOWS,
            "cleanWindowsDevice",
            r#"{"keepUserData":true}"#,
            "deviceActionResult",
            Some("cleanWindowsDevice"),
        ),
        (
            "beta",
            WINDOWS,
            "rotateBitLockerKeys",
            "",
            "rotateBitLockerKeysDeviceActionResult",
            Some("rotateBitLockerKeys"),
        ),
        ("beta", MACOS, "rotateFileVaultKey", "", "deviceActionResult", Some("rotateFileVaultKey")),
        ("beta", WINDOWS, "rotateLocalAdminPassword", "", "deviceActionResult", Some("rotateLocalAdminPassword")),
        ("v1.0", ANDROID_DEDICATED, "locateDevice", "", "locateDeviceActionResult", Some("locateDevice")),
        (
            "v1.0",
            WINDOWS,
            "windowsDefenderScan",
            r#"{"quickScan":true}"#,
            "windowsDefenderScanActionResult",
            Some("quickScan"),
        ),
        (
            "v1.0",
            WINDOWS,
            "windowsDefenderScan",
            r#"{"quickScan":false}"#,
            "windowsDefenderScanActionResult",
            Some("fullScan"),
        ),
        (
            "beta",
            IPHONE_SUPERVISED,
            "enableLostMode",
            r#"{"message":"Found me? Call us","phoneNumber":"+1 555 0100","footer":"Contoso"}"#,
            "deviceActionResult",
            Some("enableLostMode"),
        ),
        ("v1.0", IPHONE_SUPERVISED, "disableLostMode", "", "deviceActionResult", Some("disableLostMode")),
        ("v1.0", ANDROID_WORK_PROFILE, "resetPasscode", "", "resetPasscodeActionResult", Some("resetPasscode")),
    ];
    for (version, id, action, body, result_type, audit) in rows {
        // A simulator each: a wipe elsewhere would cancel the next action, or remove the device.
        // Wiped and retired devices stay an hour, to be read.
        let sim = sim(SimConfig { leave_after: std::time::Duration::from_secs(3600), ..crate::common::sim_config() });
        let graph = Client::of(&sim);
        let what = format!("{action} {body} on {version}");
        let (status, answer) = graph.act(version, id, action, body);
        assert_eq!(status, 204, "{what}: {answer}");
        assert_eq!(sim.actions_applied(id, action), 1, "{what}");
        let result = graph.last_result(id);
        assert_eq!(result["@odata.type"], format!("#microsoft.graph.{result_type}"), "{what}: {result}");
        assert_eq!((&result["actionName"], &result["actionState"]), (&json!(action), &json!("done")), "{what}");
        let log = sim.requests();
        let post = log.iter().find(|r| r.method == "POST").expect("the POST is logged");
        assert_eq!(post.path, format!("/{version}/deviceManagement/managedDevices/{id}/{action}"));
        let sent: Option<Value> = (!body.is_empty()).then(|| serde_json::from_str(body).expect("JSON"));
        assert_eq!((post.status, post.applied, &post.body), (204, true, &sent), "{what}");
        let (status, entries) = graph.audits("requestDateTime ge 2000-01-01T00:00:00Z");
        assert_eq!(status, 200);
        let names: Vec<&str> = entries.iter().filter_map(|e| e["action"].as_str()).collect();
        assert_eq!(names, audit.into_iter().collect::<Vec<_>>(), "{what}: the audit log names it by the enum");
        if let Some(name) = audit {
            let (status, only) = graph.audits(&format!("action eq '{name}'"));
            assert_eq!((status, only.len()), (200, 1), "{what}: `action eq '{name}'` finds it");
            assert_eq!(only[0]["managedDeviceId"], id);
        }
        match action {
            "remoteLock" => assert!(result["unlockPin"].as_str().is_some_and(|p| p.len() > 6), "{result}"),
            "resetPasscode" => assert!(result["passcode"].is_string(), "{result}"),
            "locateDevice" => {
                assert_eq!(result["deviceLocation"]["latitude"], json!(intune_reconcile::sim::LOCATION.0), "{result}");
            }
            "retire" | "wipe" => {
                let kept = body.contains("keepEnrollmentData");
                let state = if kept { "managed".to_owned() } else { format!("{action}Pending") };
                assert_eq!(graph.device(id).1["managementState"], json!(state), "{what}");
            }
            "syncDevice" => {
                let synced = graph.device(id).1["lastSyncDateTime"].as_str().unwrap_or_default().to_owned();
                assert_eq!(synced, result["startDateTime"].as_str().unwrap_or_default(), "a sync is a check-in");
            }
            _ => {}
        }
        if action == "remoteLock" || action == "resetPasscode" {
            let secret = result[if action == "remoteLock" { "unlockPin" } else { "passcode" }].as_str().unwrap_or("?");
            assert!(sim.secrets().iter().any(|s| s == secret), "{action}'s secret is among the leak-test secrets");
        }
    }
}

#[test]
fn an_os_without_the_action_is_refused_and_a_device_that_does_not_qualify_ends_not_supported() {
    let refused: [(&str, &str, &str); 13] = [
        ("v1.0", WINDOWS, "remoteLock"),
        ("v1.0", ANDROID_WORK_PROFILE, "shutDown"),
        ("v1.0", AOSP, "retire"),
        ("v1.0", MACOS, "cleanWindowsDevice"),
        ("beta", IPHONE_SUPERVISED, "rotateBitLockerKeys"),
        ("beta", WINDOWS, "rotateFileVaultKey"),
        ("beta", ANDROID_DEDICATED, "rotateLocalAdminPassword"),
        ("v1.0", MACOS, "locateDevice"),
        ("v1.0", ANDROID_DEDICATED, "windowsDefenderScan"),
        ("beta", ANDROID_DEDICATED, "enableLostMode"),
        ("v1.0", MACOS, "disableLostMode"),
        ("v1.0", WINDOWS, "resetPasscode"),
        ("v1.0", WINDOWS, "shutDown"),
    ];
    let sim = sim(crate::common::sim_config());
    let graph = Client::of(&sim);
    for (version, id, action) in refused {
        let (status, answer) = graph.act(version, id, action, "");
        assert_eq!(status, 400, "{action} on {id}: {answer}");
        assert!(answer["error"]["message"].as_str().is_some_and(|m| m.contains("not supported on this platform")));
        assert_eq!(sim.actions_applied(id, action), 0, "{action} on {id} left no trace");
    }
    assert!(sim.requests().iter().all(|r| !r.applied), "nothing refused was applied");
    let (_, entries) = graph.audits("requestDateTime ge 2000-01-01T00:00:00Z");
    assert!(entries.is_empty(), "nothing refused is audited: {entries:?}");

    let unqualified: [(&str, &str, &str); 8] = [
        ("v1.0", IPHONE_UNSUPERVISED, "shutDown"),
        ("beta", IPHONE_UNSUPERVISED, "enableLostMode"),
        ("v1.0", IPHONE_UNSUPERVISED, "locateDevice"),
        ("v1.0", ANDROID_FULLY_MANAGED, "retire"),
        ("v1.0", ANDROID_PERSONAL, "wipe"),
        ("v1.0", ANDROID_PERSONAL, "remoteLock"),
        ("v1.0", ANDROID_WORK_PROFILE, "rebootNow"),
        ("v1.0", "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e", "resetPasscode"),
    ];
    for (version, id, action) in unqualified {
        let (status, answer) = graph.act(version, id, action, "");
        assert_eq!(status, 204, "{action} on {id}: {answer}");
        let result = graph.last_result(id);
        assert_eq!((&result["actionName"], &result["actionState"]), (&json!(action), &json!("notSupported")));
    }
    assert_eq!(graph.device(ANDROID_PERSONAL).0, 200, "a wipe that is not supported removes nothing");
    // A device being retired carries out only the retire: anything else is canceled.
    assert_eq!(graph.act("v1.0", RETIRING, "remoteLock", "").0, 204);
    assert_eq!(graph.last_result(RETIRING)["actionState"], "canceled");
}

#[test]
fn bodies_are_checked_as_graph_checks_them_and_logged_without_the_unlock_code() {
    let sim = sim(crate::common::sim_config());
    let graph = Client::of(&sim);
    let bad: [(&str, &str, &str, &str); 8] = [
        (
            "v1.0",
            "remoteLock",
            r#"{"keepUserData":true}"#,
            "'keepUserData' in the request payload is not a valid parameter",
        ),
        ("v1.0", "wipe", r#"{"keepUserData":"yes"}"#, "Edm.Boolean"),
        ("v1.0", "wipe", r#"{"useProtectedWipe":true}"#, "'useProtectedWipe'"),
        ("v1.0", "wipe", r#"{"obliterationBehavior":"sometimes"}"#, "not a valid enumeration"),
        ("v1.0", "cleanWindowsDevice", r#"{"keepUserData":null}"#, "Edm.Boolean"),
        ("v1.0", "windowsDefenderScan", r#"[true]"#, "StartObject"),
        ("v1.0", "syncDevice", "{", "Invalid JSON"),
        ("beta", "enableLostMode", r#"{"message":42}"#, "Edm.String"),
    ];
    for (version, action, body, says) in bad {
        let (status, answer) = graph.act(version, WINDOWS, action, body);
        assert_eq!((status, &answer["error"]["code"]), (400, &json!("BadRequest")), "{action} {body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{action} {body}: {message}");
    }
    // Beta-only actions are unknown segments to v1.0, as Graph answers them.
    for action in ["rotateBitLockerKeys", "rotateFileVaultKey", "rotateLocalAdminPassword", "enableLostMode"] {
        let (status, answer) = graph.act("v1.0", IPHONE_SUPERVISED, action, "");
        assert_eq!(status, 400, "{action}: {answer}");
        assert_eq!(answer["error"]["message"], format!("Resource not found for the segment '{action}'."));
    }
    let path = format!("/v1.0/deviceManagement/comanagedDevices/{WINDOWS}/syncDevice");
    assert_eq!(graph.send("POST", &path, "").0, 400, "comanagedDevices is beta only");
    let path = format!("/beta/deviceManagement/comanagedDevices/{WINDOWS}/syncDevice");
    assert_eq!(graph.send("POST", &path, "").0, 204, "on beta it has the actions");
    assert_eq!(graph.act("v1.0", "00000000-0000-4000-8000-000000000000", "remoteLock", "").0, 404);
    assert_eq!(sim.requests().iter().filter(|r| r.applied).count(), 1, "no refused body was applied");

    let code = "Unlock-Code-That-Must-Not-Be-Logged-8c1d";
    let (status, _) = graph.act("v1.0", MACOS, "wipe", &format!(r#"{{"macOsUnlockCode":"{code}"}}"#));
    assert_eq!(status, 204);
    let wipe = sim.requests().into_iter().last().expect("logged");
    assert_eq!(wipe.body, Some(json!({"macOsUnlockCode": intune_reconcile::sim::REDACTED})));
    let (_, log) = graph.send("GET", "/_sim/requests", "");
    assert!(!log.to_string().contains(code), "the request log never holds the unlock code");
    assert!(!graph.device(MACOS).1.to_string().contains(code), "nor does the device");
}

#[test]
fn a_wiped_or_retired_device_is_issued_then_pending_then_leaves_the_tenant() {
    use std::time::Duration;
    let hour = Duration::from_secs(3600);
    let config = || SimConfig { complete_after: hour, leave_after: hour, ..crate::common::sim_config() };
    let sim = sim(config());
    let graph = Client::of(&sim);
    let state = |id: &str| graph.device(id).1["managementState"].as_str().unwrap_or_default().to_owned();
    assert_eq!(graph.act("v1.0", MACOS, "wipe", "").0, 204);
    assert_eq!((state(MACOS), &graph.last_result(MACOS)["actionState"]), ("wipeIssued".into(), &json!("pending")));
    // Made in the portal earlier: done (after an hour) but not yet gone (after two).
    assert_eq!(http_post(&sim, &format!("/_sim/portal/{ANDROID_PERSONAL}/retire?ago=90m")), 204);
    assert_eq!(state(ANDROID_PERSONAL), "retirePending");
    assert_eq!(http_post(&sim, &format!("/_sim/portal/{WINDOWS}/wipe?ago=3h")), 204);
    let (status, answer) = graph.device(WINDOWS);
    assert_eq!(status, 404, "a wiped device has left the tenant: {answer}");
    assert_eq!(graph.act("v1.0", WINDOWS, "syncDevice", "").0, 404, "and takes no more actions");
    let (_, list) = graph.send("GET", "/v1.0/deviceManagement/managedDevices?$count=true", "");
    let ids: Vec<&str> = list["value"].as_array().into_iter().flatten().filter_map(|d| d["id"].as_str()).collect();
    assert!(!ids.contains(&WINDOWS) && ids.contains(&MACOS), "lists no longer show it: {ids:?}");
    assert_eq!(list["@odata.count"], json!(ids.len()));
    let (_, pending) =
        graph.send("GET", "/v1.0/deviceManagement/managedDevices?$filter=managementState%20eq%20'wipeIssued'", "");
    assert_eq!(pending["value"][0]["id"], MACOS, "a filter sees the state as it is now: {pending}");
    let (_, audits) = graph.audits("action eq 'factoryReset'");
    assert_eq!(audits.len(), 2, "the audit log keeps the wipe of a device that left");
    assert_eq!(sim.actions_applied(WINDOWS, "wipe"), 1);

    // A wipe that keeps the enrolment leaves the device in the tenant, managed again once done.
    let kept = crate::common::sim(config());
    let graph = Client::of(&kept);
    let path = format!("/_sim/portal/{WINDOWS}/wipe?ago=3h");
    let answer = crate::common::http::call(&graph.addr, "POST", &path, &[], br#"{"keepEnrollmentData":true}"#);
    assert_eq!(answer.status, 204, "{}", answer.body);
    let (status, device) = graph.device(WINDOWS);
    assert_eq!((status, &device["managementState"]), (200, &json!("managed")), "{device}");
}

#[test]
fn portal_actions_of_every_kind_show_with_their_initiator_and_fixture_ones_too() {
    let mut config = crate::common::sim_config();
    let lock = json!([{"action": "remoteLock", "by": "helpdesk@contoso.com", "ago": "40m"}]);
    config.devices[0].insert("_portalActions".into(), lock);
    let sim = sim(config);
    let graph = Client::of(&sim);
    let (_, at_start) = graph.audits("action eq 'remoteLock'");
    assert_eq!(at_start.len(), 1, "the fixture's portal lock: {at_start:?}");
    assert_eq!(at_start[0]["initiatedByUserPrincipalName"], "helpdesk@contoso.com");

    let path = format!("/_sim/portal/{WINDOWS}/windowsDefenderScan?by=soc@contoso.com&ago=10m");
    let answer = crate::common::http::call(&graph.addr, "POST", &path, &[], br#"{"quickScan":false}"#);
    assert_eq!(answer.status, 204, "{}", answer.body);
    let (_, scans) = graph.audits("action eq 'fullScan'");
    assert_eq!((scans.len(), &scans[0]["initiatedByUserPrincipalName"]), (1, &json!("soc@contoso.com")));
    let started: jiff::Timestamp =
        graph.last_result(WINDOWS)["startDateTime"].as_str().unwrap_or_default().parse().expect("a time");
    let age = jiff::Timestamp::now().duration_since(started);
    assert!(age >= jiff::SignedDuration::from_mins(10) && age < jiff::SignedDuration::from_mins(11), "{age:?}");
    // The old route, unknown actions and devices, and the platform rule.
    assert_eq!(http_post(&sim, &format!("/_sim/portal/{ANDROID_DEDICATED}/resetPasscode?ago=5m")), 204);
    assert_eq!(graph.last_result(ANDROID_DEDICATED)["actionName"], "resetPasscode");
    assert_eq!(http_post(&sim, &format!("/_sim/portal/{WINDOWS}/selfDestruct")), 404);
    assert_eq!(http_post(&sim, "/_sim/portal/00000000-0000-4000-8000-000000000000/remoteLock"), 404);
    assert_eq!(http_post(&sim, &format!("/_sim/portal/{WINDOWS}/remoteLock")), 400);
    assert_eq!(http_post(&sim, &format!("/_sim/portal/{IPHONE_SUPERVISED}/enableLostMode")), 204, "beta's too");
    // The audit filter takes the enum's names, not Graph's action names.
    assert_eq!(graph.audits("action eq 'syncDevice'").0, 400);
    assert_eq!(graph.audits("action eq 'wipe'").0, 400);
}

#[test]
fn faults_hit_any_action_or_only_the_one_named() {
    use intune_reconcile::sim::{ActionFault, Fault, FaultKind};
    let mut config = crate::common::sim_config();
    let fault = |kind| Fault { device_id: None, kind, times: 1 };
    config.action_faults = vec![ActionFault { action: "wipe".into(), fault: fault(FaultKind::UnavailableBefore) }];
    config.faults = vec![fault(FaultKind::ErrorAfter)];
    let sim = sim(config);
    let graph = Client::of(&sim);
    assert_eq!(graph.act("v1.0", MACOS, "wipe", "").0, 503, "the wipe's own fault first");
    assert_eq!(sim.actions_applied(MACOS, "wipe"), 0);
    assert_eq!(graph.act("v1.0", ANDROID_DEDICATED, "rebootNow", "").0, 500, "then the one for any action");
    assert_eq!(sim.actions_applied(ANDROID_DEDICATED, "rebootNow"), 1, "applied before the 500");
    assert_eq!(graph.act("v1.0", MACOS, "wipe", "").0, 204, "each fault used up");
}

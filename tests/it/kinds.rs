//! Every kind of device action, through the real binary and the simulator: the plan shows it,
//! apply sends it once (the exact path and body), a `kill -9` between intent and answer never
//! re-sends it, refresh learns its outcome, a portal action of that kind is adopted, and a device
//! of a platform it does not apply to is blocked with no POST. One simulator serves the matrix:
//! each kind acts on devices of its own.

use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use crate::common::{Repo, http, sim, stderr, stdout, wait_until};
use intune_reconcile::sim::{Fault, FaultKind, RecordedRequest, SimConfig, SimHandle};

/// What a device of the fixture is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Model {
    AndroidFullyManaged,
    AndroidPersonal,
    Aosp,
    IphoneSupervised,
    Windows,
    Mac,
}

impl Model {
    fn fields(self) -> Value {
        let (os, owner, enrollment) = match self {
            Model::AndroidFullyManaged => ("Android", "company", "androidEnterpriseFullyManaged"),
            Model::AndroidPersonal => ("Android", "personal", "androidEnterprisePersonalWorkProfile"),
            Model::Aosp => ("AOSP", "company", "androidAOSPUserAssociatedDeviceEnrollment"),
            Model::IphoneSupervised => ("iOS", "company", "appleBulkWithUser"),
            Model::Windows => ("Windows", "company", "windowsAzureADJoin"),
            Model::Mac => ("macOS", "company", "appleBulkWithUser"),
        };
        json!({
            "operatingSystem": os,
            "osVersion": "1",
            "managedDeviceOwnerType": owner,
            "deviceEnrollmentType": enrollment,
            "isSupervised": self == Model::IphoneSupervised,
            "managementState": "managed",
            "lastSyncDateTime": "2026-11-27T08:00:00Z",
        })
    }
}

/// One kind of the matrix: its Graph name, whether it is beta-only, its `spec.parameters` (YAML)
/// and the body Graph must receive for them, the device model it applies to and one it does not.
struct Row {
    action: &'static str,
    beta: bool,
    parameters: &'static str,
    body: Option<&'static str>,
    on: Model,
    not_on: Model,
}

const ROWS: [Row; 15] = [
    row(("resetPasscode", false, "", None, Model::AndroidFullyManaged, Model::Windows)),
    row(("remoteLock", false, "", None, Model::IphoneSupervised, Model::Windows)),
    row(("syncDevice", false, "", None, Model::Windows, Model::Aosp)),
    row(("rebootNow", false, "", None, Model::AndroidFullyManaged, Model::AndroidPersonal)),
    row(("shutDown", false, "", None, Model::IphoneSupervised, Model::Windows)),
    row(("retire", false, "", None, Model::AndroidPersonal, Model::Aosp)),
    row((
        "wipe",
        false,
        "{ keepEnrollmentData: true, keepUserData: true }",
        Some(r#"{"keepEnrollmentData":true,"keepUserData":true,"persistEsimDataPlan":false}"#),
        Model::Windows,
        Model::Mac,
    )),
    row((
        "cleanWindowsDevice",
        false,
        "{ keepUserData: true }",
        Some(r#"{"keepUserData":true}"#),
        Model::Windows,
        Model::Mac,
    )),
    row(("rotateBitLockerKeys", true, "", None, Model::Windows, Model::Mac)),
    row(("rotateFileVaultKey", true, "", None, Model::Mac, Model::Windows)),
    row(("rotateLocalAdminPassword", true, "", None, Model::Windows, Model::IphoneSupervised)),
    row(("locateDevice", false, "", None, Model::AndroidFullyManaged, Model::Mac)),
    row((
        "windowsDefenderScan",
        false,
        "{ quickScan: true }",
        Some(r#"{"quickScan":true}"#),
        Model::Windows,
        Model::Mac,
    )),
    row((
        "enableLostMode",
        true,
        "{ message: 'Found me? Call us', phoneNumber: '+1 555 0100' }",
        Some(r#"{"message":"Found me? Call us","phoneNumber":"+1 555 0100"}"#),
        Model::IphoneSupervised,
        Model::AndroidFullyManaged,
    )),
    row(("disableLostMode", false, "", None, Model::IphoneSupervised, Model::Windows)),
];

/// A row from its fields in order: action, beta, parameters, body, on, not on.
const fn row(r: (&'static str, bool, &'static str, Option<&'static str>, Model, Model)) -> Row {
    Row { action: r.0, beta: r.1, parameters: r.2, body: r.3, on: r.4, not_on: r.5 }
}

/// The devices of one kind: acted on, acted on in the portal, killed mid-send, ineligible.
#[derive(Debug, Clone, Copy)]
enum Role {
    Main,
    Portal,
    Crash,
    Ineligible,
}

const ROLES: [Role; 4] = [Role::Main, Role::Portal, Role::Crash, Role::Ineligible];

fn id(kind: usize, role: Role) -> String {
    format!("{kind:08}-0000-4000-8000-{:012}", role as usize)
}

/// Extra devices for the tests after the matrix.
const TWO_WIPES: &str = "00000099-0000-4000-8000-000000000001";
const EDITED_LOCK: &str = "00000099-0000-4000-8000-000000000002";

fn device(id: &str, model: Model) -> Map<String, Value> {
    let mut d = model.fields().as_object().expect("object").clone();
    d.insert("id".into(), json!(id));
    d.insert("deviceName".into(), json!(format!("DEV-{}", &id[..8])));
    d
}

/// The simulator of the matrix, started once: every kind's devices, the crash devices' actions
/// applied and never answered, results at once, and wiped or retired devices staying an hour
/// (so that a wipe made in the portal ten minutes ago can be seen).
fn shared() -> &'static SimHandle {
    static SIM: OnceLock<SimHandle> = OnceLock::new();
    SIM.get_or_init(|| {
        let mut devices = Vec::new();
        let mut faults = Vec::new();
        for (k, row) in ROWS.iter().enumerate() {
            for role in ROLES {
                let model = if matches!(role, Role::Ineligible) { row.not_on } else { row.on };
                devices.push(device(&id(k, role), model));
            }
            faults.push(Fault { device_id: Some(id(k, Role::Crash)), kind: FaultKind::HangAfter, times: 1 });
        }
        devices.push(device(TWO_WIPES, Model::Windows));
        devices.push(device(EDITED_LOCK, Model::IphoneSupervised));
        sim(SimConfig {
            devices,
            faults,
            leave_after: std::time::Duration::from_secs(3600),
            write_limit: None,
            read_limit: None,
            ..SimConfig::default()
        })
    })
}

/// A manifest of `action` on `ids`, with `parameters` (YAML) and a ticket; `PasscodeReset` for a
/// reset, as its manifests have always been written.
fn manifest(name: &str, action: &str, parameters: &str, ids: &[&str], reason: &str) -> String {
    let mut s = if action == "resetPasscode" {
        format!(
            "apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: {name}\n  ticket: INC-1\n  reason: {reason}\nspec:\n"
        )
    } else {
        format!(
            "apiVersion: intune-reconcile/v1\nkind: DeviceAction\nmetadata:\n  name: {name}\n  ticket: INC-1\n  reason: {reason}\nspec:\n  action: {action}\n"
        )
    };
    if !parameters.is_empty() {
        s.push_str(&format!("  parameters: {parameters}\n"));
    }
    s.push_str("  devices:\n");
    for id in ids {
        s.push_str(&format!("    - id: {id}\n"));
    }
    s
}

/// A repository (ledger created, fast config; the beta API where `beta`) whose manifest asks for
/// `action` on `ids`.
fn repo(row: &Row, ids: &[&str]) -> Repo {
    let repo = Repo::empty();
    repo.fast_config(if row.beta { "  apiVersion: beta\n" } else { "" });
    repo.write("manifests/m.yaml", manifest("m", row.action, row.parameters, ids, "matrix"));
    repo
}

/// The Graph POSTs of `action` to device `id` (not the simulator's portal route).
fn posts_to(sim: &SimHandle, id: &str, action: &str) -> Vec<RecordedRequest> {
    let tail = format!("/deviceManagement/managedDevices/{id}/{action}");
    sim.requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with(&tail) && !r.path.starts_with("/_"))
        .collect()
}

/// Every POST to device `id`, whatever the action.
fn any_posts_to(sim: &SimHandle, id: &str) -> usize {
    sim.requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.contains(id) && !r.path.starts_with("/_"))
        .count()
}

/// The ledger's record of device `id`.
fn record(repo: &Repo, id: &str) -> Value {
    repo.record_of_device(id)
}

fn run(repo: &Repo, sim: &SimHandle, args: &[&str]) -> std::process::Output {
    repo.cmd_on(sim).args(args).output().expect("run")
}

/// The plan's entry of device `id`.
fn entry<'a>(plan: &'a Value, id: &str) -> &'a Value {
    plan["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .find(|a| a["selector"]["value"] == id)
        .unwrap_or_else(|| panic!("no entry for {id}: {plan}"))
}

/// The whole matrix for the kind `action`.
fn matrix(action: &str) {
    let k = ROWS.iter().position(|r| r.action == action).expect("a row");
    let row = &ROWS[k];
    let sim = shared();
    let [main, portal, crash, ineligible] = ROLES.map(|r| id(k, r));
    let what = |step: &str| format!("{action}: {step}");

    // A person made one in the portal ten minutes ago, on the portal device.
    let path = format!("/_sim/portal/{portal}/{action}?by=bob%40contoso.com&ago=10m");
    let made =
        http::call(sim.url().trim_start_matches("http://"), "POST", &path, &[], row.body.unwrap_or("").as_bytes());
    assert_eq!(made.status, 204, "{}", what("the portal action"));

    let repo = repo(row, &[&main, &portal, &ineligible]);
    // The plan shows it, with its parameters; the portal's is adopted; the other platform blocked.
    let out = run(&repo, sim, &["plan", "--format", "json"]);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    let kind = if action == "resetPasscode" { "PasscodeReset" } else { action };
    let send = entry(&plan, &main);
    assert_eq!((&send["change"], &send["kind"]), (&json!("reset"), &json!(kind)), "{}: {send}", what("plan"));
    let sent_body: Option<Value> = row.body.map(|b| serde_json::from_str(b).expect("JSON"));
    for (name, value) in sent_body.iter().flat_map(|b| b.as_object().expect("object")) {
        assert_eq!(&send["parameters"][name], value, "{}: {send}", what("plan parameters"));
    }
    let adopt = entry(&plan, &portal);
    assert_eq!(adopt["change"], "adopt", "{}: {plan}", what("the portal action is adopted"));
    // Said with the kind's own word: "lock outside reconcile 10 min ago by bob@contoso.com" (a
    // sync is in no audit log: "by an app").
    let reason = adopt["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(" outside reconcile 10 min ago by "), "{}: {reason}", what("adoption"));
    assert_eq!(reason.starts_with("reset "), action == "resetPasscode", "{}: {reason}", what("the kind's word"));
    let blocked = entry(&plan, &ineligible);
    assert_eq!(blocked["change"], "blocked", "{}: {blocked}", what("the other platform"));
    assert!(blocked["reason"].as_str().is_some_and(|r| r.contains("not supported") || r.contains("only")), "{blocked}");

    // Apply sends it once, on its path, with its body; nothing to the others.
    let out = run(&repo, sim, &["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(1), "{}: {}{}", what("apply (one blocked)"), stdout(&out), stderr(&out));
    let posts = posts_to(sim, &main, action);
    assert_eq!(posts.len(), 1, "{}", what("one POST"));
    let version = if row.beta { "beta" } else { "v1.0" };
    assert_eq!(posts[0].path, format!("/{version}/deviceManagement/managedDevices/{main}/{action}"));
    assert_eq!((posts[0].status, &posts[0].body), (204, &sent_body), "{}", what("the body"));
    assert_eq!(any_posts_to(sim, &portal), 0, "{}", what("the adopted one is not sent"));
    assert_eq!(any_posts_to(sim, &ineligible), 0, "{}", what("the blocked one is not sent"));
    assert_eq!(record(&repo, &main)["status"], "accepted");
    let adopted = record(&repo, &portal);
    assert_eq!(adopted["status"], "done", "{}: {adopted}", what("adopted"));
    assert!(adopted["adopted"].is_object(), "{adopted}");

    // Refresh learns its outcome from Intune; nothing is sent again.
    let out = run(&repo, sim, &["refresh"]);
    assert!(out.status.success(), "{}: {}", what("refresh"), stderr(&out));
    assert!(stdout(&out).contains("accepted      -> done"), "{}: {}", what("refresh"), stdout(&out));
    assert_eq!(record(&repo, &main)["status"], "done");
    run(&repo, sim, &["apply", "--auto-approve"]);
    assert_eq!(posts_to(sim, &main, action).len(), 1, "{}", what("never sent again"));

    crash_then_rerun(row, sim, &crash);
}

/// `kill -9` while the action to `crash` is applied and unanswered: the rerun does not send it
/// again, refresh learns what Intune did, and the next apply sends nothing.
fn crash_then_rerun(row: &Row, sim: &SimHandle, crash: &str) {
    let action = row.action;
    let repo = repo(row, &[crash]);
    let mut child = repo.spawn_on(sim, &["apply", "--auto-approve"]);
    wait_until(&format!("{action} to the crash device"), || !posts_to(sim, crash, action).is_empty());
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert_eq!(record(&repo, crash)["status"], "unknown", "{action}: the intent was recorded before the POST");
    let out = run(&repo, sim, &["apply", "--auto-approve"]);
    assert_eq!(posts_to(sim, crash, action).len(), 1, "{action}: not re-sent: {}", stdout(&out));
    let out = run(&repo, sim, &["refresh"]);
    assert!(stdout(&out).contains("unknown       -> done"), "{action}: {}{}", stdout(&out), stderr(&out));
    let out = run(&repo, sim, &["apply", "--auto-approve"]);
    assert!(out.status.success(), "{action}: {}", stdout(&out));
    assert_eq!(posts_to(sim, crash, action).len(), 1, "{action}: sent once, ever");
    assert_eq!(sim.actions_applied(crash, action), 1);
}

macro_rules! matrix {
    ($($test:ident: $action:literal,)*) => {
        $(
            #[test]
            fn $test() {
                matrix($action);
            }
        )*
    };
}

matrix! {
    reset_passcode: "resetPasscode",
    remote_lock: "remoteLock",
    sync_device: "syncDevice",
    reboot_now: "rebootNow",
    shut_down: "shutDown",
    retire: "retire",
    wipe: "wipe",
    clean_windows_device: "cleanWindowsDevice",
    rotate_bitlocker_keys: "rotateBitLockerKeys",
    rotate_filevault_key: "rotateFileVaultKey",
    rotate_local_admin_password: "rotateLocalAdminPassword",
    locate_device: "locateDevice",
    windows_defender_scan: "windowsDefenderScan",
    enable_lost_mode: "enableLostMode",
    disable_lost_mode: "disableLostMode",
}

// Fifteen kinds, each a different one the tool knows.
#[test]
fn the_matrix_covers_every_kind() {
    use intune_reconcile::core::action::ActionKind;
    let kinds: std::collections::HashSet<ActionKind> = ROWS
        .iter()
        .map(|r| if r.action == "resetPasscode" { "PasscodeReset" } else { r.action })
        .map(|name| serde_json::from_value(json!(name)).unwrap_or_else(|e| panic!("{name}: {e}")))
        .collect();
    assert_eq!(kinds.len(), 15);
}

// The parameters are part of the action: a wipe that keeps the user's data and one that does not
// are two actions, two keys, two POSTs.
#[test]
fn a_wipe_with_keep_user_data_and_one_without_are_two_actions() {
    let sim = shared();
    let repo = Repo::empty();
    repo.fast_config("");
    let keep = "{ keepEnrollmentData: true, keepUserData: true }";
    let wipe = "{ keepEnrollmentData: true, keepUserData: false }";
    repo.write("manifests/keep.yaml", manifest("keep", "wipe", keep, &[TWO_WIPES], "keep"));
    repo.write("manifests/wipe.yaml", manifest("wipe", "wipe", wipe, &[TWO_WIPES], "wipe"));
    let out = run(&repo, sim, &["plan", "--format", "json"]);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    let keys: std::collections::HashSet<&str> =
        plan["actions"].as_array().expect("actions").iter().filter_map(|a| a["key"].as_str()).collect();
    assert_eq!(keys.len(), 2, "two keys: {plan}");
    let out = run(&repo, sim, &["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let bodies: std::collections::HashSet<String> = posts_to(sim, TWO_WIPES, "wipe")
        .iter()
        .map(|p| p.body.as_ref().map(Value::to_string).unwrap_or_default())
        .collect();
    assert_eq!(bodies.len(), 2, "two POSTs, one of each: {bodies:?}");
    assert!(bodies.iter().any(|b| b.contains(r#""keepUserData":true"#)), "{bodies:?}");
    assert!(bodies.iter().any(|b| b.contains(r#""keepUserData":false"#)), "{bodies:?}");
}

// A parameter-free action's identity is its manifest, device and round: editing the ticket or the
// reason sends nothing new.
#[test]
fn editing_only_the_ticket_or_reason_of_a_lock_sends_nothing() {
    let sim = shared();
    let repo = Repo::empty();
    repo.fast_config("");
    repo.write("manifests/lock.yaml", manifest("lock", "remoteLock", "", &[EDITED_LOCK], "lost on the train"));
    let out = run(&repo, sim, &["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(posts_to(sim, EDITED_LOCK, "remoteLock").len(), 1);
    let edited = manifest("lock", "remoteLock", "", &[EDITED_LOCK], "found, then lost again").replace("INC-1", "INC-2");
    repo.write("manifests/lock.yaml", edited);
    let plan = run(&repo, sim, &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "no changes: {}", stdout(&plan));
    let out = run(&repo, sim, &["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(posts_to(sim, EDITED_LOCK, "remoteLock").len(), 1, "nothing new was sent");
}

/// A simulator of its own for a wipe (Windows) and a retire (personal Android): Intune's results
/// never show (only `managementState` and the device leaving tell), nor does the audit log; the
/// first device's wipe and the first retire are applied and answered 500 (`unknown`).
fn removals(complete_after: std::time::Duration) -> (SimHandle, [String; 3]) {
    let ids = [
        "00000100-0000-4000-8000-000000000001",
        "00000100-0000-4000-8000-000000000002",
        "00000100-0000-4000-8000-000000000003",
    ]
    .map(str::to_owned);
    let sim = sim(SimConfig {
        devices: vec![
            device(&ids[0], Model::Windows),
            device(&ids[1], Model::Windows),
            device(&ids[2], Model::AndroidPersonal),
        ],
        complete_after,
        report_delay: std::time::Duration::from_secs(3600),
        audits_readable: false,
        faults: [&ids[0], &ids[2]]
            .map(|id| Fault { device_id: Some(id.clone()), kind: FaultKind::ErrorAfter, times: 1 })
            .to_vec(),
        ..SimConfig::default()
    });
    (sim, ids)
}

/// Apply, refresh and apply again the wipes and the retire of [`removals`]: every record ends
/// `status`, each device got one POST, ever. Returns what refresh printed.
fn removals_refreshed(complete_after: std::time::Duration, status: &str) -> String {
    let (sim, ids) = removals(complete_after);
    let repo = Repo::empty();
    repo.fast_config("");
    repo.write("manifests/wipe.yaml", manifest("wipe", "wipe", "", &[&ids[0], &ids[1]], "stolen"));
    repo.write("manifests/retire.yaml", manifest("retire", "retire", "", &[&ids[2]], "leaver"));
    let out = run(&repo, &sim, &["apply", "--auto-approve"]);
    assert!(stdout(&out).contains("1 accepted, 0 rejected, 2 unknown"), "{}", stdout(&out));
    let out = run(&repo, &sim, &["refresh"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for id in &ids {
        assert_eq!(record(&repo, id)["status"], status, "{id}: {}", stdout(&out));
    }
    run(&repo, &sim, &["apply", "--auto-approve"]);
    for id in &ids {
        assert_eq!(any_posts_to(&sim, id), 1, "{id}: one POST, ever");
    }
    stdout(&out)
}

// docs/exactly-once.md, "Wipes and retires": a device gone (404) after a wipe or retire left the
// tenant, which is what the action does. An accepted one is done; an unknown one most likely ran:
// done too, and never sent again, though no result and no audit entry ever showed.
#[test]
fn a_wipe_whose_device_left_the_tenant_is_done_and_never_sent_again() {
    let text = removals_refreshed(std::time::Duration::ZERO, "done");
    assert_eq!(text.matches("unknown       -> done").count(), 2, "{text}");
    assert_eq!(text.matches("accepted      -> done").count(), 1, "{text}");
    assert!(text.contains("left the tenant (Graph answers 404) after the intent: the wipe most likely ran"), "{text}");
    assert!(text.contains("the retire most likely ran"), "{text}");
}

// A pending wipe may show only in `managementState`: an unknown wipe or retire on a device that
// is `wipeIssued`/`retireIssued` reached Intune (accepted, never sent again).
#[test]
fn a_wipe_under_way_in_management_state_reached_intune() {
    let text = removals_refreshed(std::time::Duration::from_secs(3600), "accepted");
    assert!(text.contains("the device is `wipeIssued`: the wipe reached Intune"), "{text}");
    assert!(text.contains("the device is `retireIssued`: the retire reached Intune"), "{text}");
    assert_eq!(text.matches("unknown       -> accepted").count(), 2, "{text}");
}

// A harmless kind whose request failed (503: nothing ran) and left no trace is sent again after
// the grace without a person; the evidence says why. The audit log is never asked about a sync.
#[test]
fn an_unknown_sync_without_a_trace_is_sent_again_without_a_person() {
    let id = "00000101-0000-4000-8000-000000000001".to_owned();
    let sim = sim(SimConfig {
        devices: vec![device(&id, Model::Windows)],
        faults: vec![Fault { device_id: Some(id.clone()), kind: FaultKind::UnavailableBefore, times: 1 }],
        ..SimConfig::default()
    });
    let repo = Repo::empty();
    repo.fast_config("");
    repo.write("manifests/sync.yaml", manifest("sync", "syncDevice", "", &[&id], "check in"));
    assert_eq!(run(&repo, &sim, &["apply", "--auto-approve"]).status.code(), Some(1));
    assert_eq!(record(&repo, &id)["status"], "unknown");
    let out = run(&repo, &sim, &["refresh"]);
    let text = stdout(&out);
    assert!(text.contains("unknown       -> not-executed"), "{text}");
    assert!(text.contains("the audit log does not record a syncDevice"), "{text}");
    assert!(text.contains("a second sync does no harm, so the next apply sends it again without a person"), "{text}");
    let audits = sim.requests().into_iter().filter(|r| r.path.ends_with("/remoteActionAudits")).count();
    assert_eq!(audits, 0, "the audit log has no name for a sync: never asked");
    let out = run(&repo, &sim, &["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(posts_to(&sim, &id, "syncDevice").len(), 2);
    assert_eq!(sim.actions_applied(&id, "syncDevice"), 1, "applied once: the first never ran");
}

// The audit log is asked by the `remoteAction` enum's names of the kinds in play (Graph answers
// 400 for a Graph name such as `wipe`), so an unknown wipe is found there as `factoryReset`.
#[test]
fn an_unknown_wipe_is_found_in_the_audit_log_by_its_enum_name() {
    let id = "00000102-0000-4000-8000-000000000001".to_owned();
    let sim = sim(SimConfig {
        devices: vec![device(&id, Model::Windows)],
        complete_after: std::time::Duration::from_secs(3600),
        report_delay: std::time::Duration::from_secs(3600),
        faults: vec![Fault { device_id: Some(id.clone()), kind: FaultKind::ErrorAfter, times: 1 }],
        ..SimConfig::default()
    });
    let repo = Repo::empty();
    repo.fast_config("");
    repo.write("manifests/wipe.yaml", manifest("wipe", "wipe", "{ keepEnrollmentData: true }", &[&id], "stolen"));
    run(&repo, &sim, &["apply", "--auto-approve"]);
    let out = run(&repo, &sim, &["refresh"]);
    assert!(stdout(&out).contains("the audit log shows a wipe requested at"), "{}", stdout(&out));
    let asked: Vec<String> = sim
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/remoteActionAudits"))
        .map(|r| {
            url::form_urlencoded::parse(r.query.as_bytes())
                .find(|(k, _)| k == "$filter")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        })
        .collect();
    assert!(!asked.is_empty() && asked.iter().all(|q| q.contains(" and action eq '")), "{asked:?}");
    assert!(asked.iter().any(|q| q.ends_with("action eq 'factoryReset'")), "{asked:?}");
    assert!(asked.iter().all(|q| !q.contains("'wipe'")), "{asked:?}");
    assert!(sim.requests().iter().filter(|r| r.path.ends_with("/remoteActionAudits")).all(|r| r.status == 200));
}

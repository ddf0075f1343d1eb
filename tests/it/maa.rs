//! Intune's Multi Admin Approval, through the real binary and the simulator: a protected wipe is
//! held (one POST, with the justification), waits without a further POST, and is sent once more
//! with its approval code when a second administrator approves it; a rejected or expired request
//! ends `rejected` with nothing more sent; a `kill -9` between the approval and the re-send's
//! answer never sends it twice.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::common::{Repo, SECRET, http_post, sim, stderr, stdout, wait_until};
use intune_reconcile::sim::{Fault, FaultKind, RecordedRequest, SimConfig, SimHandle};

const LAPTOP: &str = "00000077-0000-4000-8000-000000000001";
const OTHER: &str = "00000077-0000-4000-8000-000000000002";

fn windows(id: &str) -> Map<String, Value> {
    json!({
        "id": id,
        "deviceName": format!("LAPTOP-{}", &id[30..]),
        "operatingSystem": "Windows",
        "osVersion": "10",
        "managedDeviceOwnerType": "company",
        "deviceEnrollmentType": "windowsAzureADJoin",
        "managementState": "managed",
        "lastSyncDateTime": "2026-11-27T08:00:00Z",
    })
    .as_object()
    .expect("object")
    .clone()
}

/// A simulator whose access policy protects wipes, with two Windows laptops.
fn maa_sim(faults: Vec<Fault>) -> SimHandle {
    sim(SimConfig {
        devices: vec![windows(LAPTOP), windows(OTHER)],
        maa: vec!["wipe".into()],
        faults,
        leave_after: std::time::Duration::from_secs(3600),
        write_limit: None,
        read_limit: None,
        ..SimConfig::default()
    })
}

/// A repository whose manifest `lost-laptops` (ticket INC-7) wipes `ids`.
fn repo(ids: &[&str]) -> Repo {
    let repo = Repo::empty();
    repo.fast_config("");
    let mut m = String::from(
        "apiVersion: intune-reconcile/v1\nkind: DeviceAction\nmetadata:\n  name: lost-laptops\n  ticket: INC-7\n  reason: stolen\nspec:\n  action: wipe\n  parameters: { keepEnrollmentData: true, keepUserData: true }\n  devices:\n",
    );
    for id in ids {
        m.push_str(&format!("    - id: {id}\n"));
    }
    repo.write("manifests/m.yaml", m);
    repo
}

/// The Graph wipes sent to `id`.
fn wipes(sim: &SimHandle, id: &str) -> Vec<RecordedRequest> {
    let tail = format!("/deviceManagement/managedDevices/{id}/wipe");
    sim.requests().into_iter().filter(|r| r.method == "POST" && r.path.ends_with(&tail)).collect()
}

fn record(repo: &Repo, id: &str) -> Value {
    repo.record_of_device(id)
}

fn last_attempt(repo: &Repo, id: &str) -> Value {
    record(repo, id)["attempts"].as_array().and_then(|a| a.last().cloned()).expect("an attempt")
}

fn run(repo: &Repo, sim: &SimHandle, args: &[&str]) -> std::process::Output {
    repo.cmd_on(sim).args(args).output().expect("run")
}

/// The second administrator (or three days passing): `verb` is approve, reject or expire.
fn decide(sim: &SimHandle, code: &str, verb: &str) {
    let path = format!("/_sim/approvals/{code}/{verb}?by=carol%40contoso.com&why=checked%20with%20the%20owner");
    assert_eq!(http_post(sim, &path), 204, "{verb} {code}");
}

/// `apply` sends the wipe of each of `ids` once, with a justification naming the manifest and its
/// ticket (and no secret); each is held: recorded awaiting approval with its code. The codes.
fn held(repo: &Repo, sim: &SimHandle, ids: &[&str]) -> Vec<String> {
    let out = run(repo, sim, &["apply", "--auto-approve"]);
    assert!(!out.status.success(), "held is not done: {}", stdout(&out));
    let said = format!("{} held by Multi Admin Approval (not executed)", ids.len());
    assert!(stdout(&out).contains(&said), "{}", stdout(&out));
    ids.iter()
        .map(|id| {
            let sent = wipes(sim, id);
            assert_eq!(sent.len(), 1, "one POST to {id}");
            assert_eq!(sent[0].status, 403);
            let b64 = sent[0].approval_justification.as_deref().expect("the justification header");
            let line = base64::engine::general_purpose::STANDARD.decode(b64).expect("Base64");
            let line = String::from_utf8(line).expect("UTF-8");
            assert!(line.contains("manifest lost-laptops") && line.contains("INC-7"), "{line}");
            assert!(line.chars().count() <= 1024, "{line}");
            assert!(!line.contains(SECRET) && !sim.secrets().iter().any(|s| line.contains(s.as_str())), "{line}");
            let r = record(repo, id);
            assert_eq!(r["status"], "awaiting-approval", "{r}");
            let code = last_attempt(repo, id)["approvalCode"].as_str().expect("the code kept").to_owned();
            assert_eq!(sent[0].approval_code, None, "a new request carries no code");
            code
        })
        .collect()
}

#[test]
fn an_approved_wipe_is_sent_once_more_with_its_code_and_done() {
    let sim = maa_sim(Vec::new());
    let repo = repo(&[LAPTOP]);
    let code = held(&repo, &sim, &[LAPTOP]).remove(0);
    assert_eq!(sim.actions_applied(LAPTOP, "wipe"), 0, "nothing was executed");

    // Waiting: neither apply nor refresh sends anything; both show it with the request's status.
    let out = run(&repo, &sim, &["refresh"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&repo, &sim, &["apply", "--auto-approve"]);
    assert!(stdout(&out).contains("awaiting Multi Admin Approval"), "{}", stdout(&out));
    assert_eq!(wipes(&sim, LAPTOP).len(), 1, "0 POSTs while it needs approval");
    let out = run(&repo, &sim, &["plan", "--format", "json"]);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    let entry = plan["actions"].as_array().and_then(|a| a.first().cloned()).expect("an entry");
    let reason = entry["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(&code) && reason.contains("needsApproval") && reason.contains("expires"), "{entry}");
    let out = run(&repo, &sim, &["state", "list"]);
    assert!(stdout(&out).contains("awaiting-approval"), "{}", stdout(&out));
    let key = record(&repo, LAPTOP)["key"].as_str().expect("key").to_owned();
    let out = run(&repo, &sim, &["state", "show", &key]);
    let shown = stdout(&out);
    assert!(shown.contains(&format!("Multi Admin Approval request {code}: needsApproval, expires ")), "{shown}");

    // Approved: refresh sends it once more, with the code instead of the justification.
    decide(&sim, &code, "approve");
    let out = run(&repo, &sim, &["refresh"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let sent = wipes(&sim, LAPTOP);
    assert_eq!(sent.len(), 2, "exactly one more POST");
    assert_eq!((sent[1].status, sent[1].approval_code.as_deref()), (204, Some(code.as_str())));
    assert_eq!(sent[1].approval_justification, None);
    assert_eq!(sim.actions_applied(LAPTOP, "wipe"), 1);
    run(&repo, &sim, &["refresh"]);
    assert_eq!(record(&repo, LAPTOP)["status"], "done", "{}", record(&repo, LAPTOP));
    let out = run(&repo, &sim, &["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(wipes(&sim, LAPTOP).len(), 2, "never again");
}

#[test]
fn rejected_and_expired_requests_end_rejected_and_nothing_more_is_sent() {
    let sim = maa_sim(Vec::new());
    let repo = repo(&[LAPTOP, OTHER]);
    let codes = held(&repo, &sim, &[LAPTOP, OTHER]);
    decide(&sim, &codes[0], "reject");
    decide(&sim, &codes[1], "expire");
    let out = run(&repo, &sim, &["apply", "--auto-approve"]);
    assert!(stdout(&out).contains("was rejected by carol@contoso.com"), "{}", stdout(&out));
    assert!(!stdout(&out).contains("missing permission"), "{}", stdout(&out));
    for (id, word) in [(LAPTOP, "rejected"), (OTHER, "expired")] {
        assert_eq!(record(&repo, id)["status"], "rejected", "{}", record(&repo, id));
        let why = last_attempt(&repo, id)["errorMessage"].as_str().unwrap_or_default().to_owned();
        assert!(why.contains(word), "{why}");
        assert_eq!(wipes(&sim, id).len(), 1, "nothing more sent to {id}");
    }
    let why = last_attempt(&repo, LAPTOP)["errorMessage"].as_str().unwrap_or_default().to_owned();
    assert!(why.contains("carol@contoso.com") && why.contains("checked with the owner"), "{why}");
    run(&repo, &sim, &["refresh"]);
    assert_eq!(wipes(&sim, LAPTOP).len() + wipes(&sim, OTHER).len(), 2, "refresh sends nothing");

    // A person retries it: a new request, with a new code.
    let key = record(&repo, LAPTOP)["key"].as_str().expect("key").to_owned();
    let out = run(&repo, &sim, &["state", "retry", &key, "--reason", "approver asked to resubmit"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    run(&repo, &sim, &["apply", "--auto-approve"]);
    let sent = wipes(&sim, LAPTOP);
    assert_eq!(sent.len(), 2, "a new request");
    assert!(sent[1].approval_justification.is_some() && sent[1].approval_code.is_none());
    let again = last_attempt(&repo, LAPTOP)["approvalCode"].as_str().expect("a code").to_owned();
    assert_ne!(again, codes[0]);
    assert_eq!(record(&repo, LAPTOP)["status"], "awaiting-approval");
}

// kill -9 once the approved re-send reached Intune but before its answer: the rerun sends nothing,
// refresh learns from Intune's evidence that it ran, and the wipe was executed once.
#[test]
fn kill_dash_nine_between_the_approval_and_the_answer_never_sends_twice() {
    // The held POST never reaches the fault (approval comes first); the re-send does.
    let hang = Fault { device_id: Some(LAPTOP.into()), kind: FaultKind::HangAfter, times: 1 };
    let sim = maa_sim(vec![hang]);
    let repo = repo(&[LAPTOP]);
    let code = held(&repo, &sim, &[LAPTOP]).remove(0);
    decide(&sim, &code, "approve");
    let mut child = repo.spawn_on(&sim, &["apply", "--auto-approve"]);
    wait_until("the re-send", || wipes(&sim, LAPTOP).len() == 2);
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert_eq!(record(&repo, LAPTOP)["status"], "unknown", "the re-send's intent was durable first");
    assert_eq!(last_attempt(&repo, LAPTOP)["approvalCode"], json!(code));

    let out = run(&repo, &sim, &["apply", "--auto-approve"]);
    assert_eq!(wipes(&sim, LAPTOP).len(), 2, "not re-sent: {}", stdout(&out));
    let out = run(&repo, &sim, &["refresh"]);
    assert!(stdout(&out).contains("unknown       -> done"), "{}{}", stdout(&out), stderr(&out));
    let out = run(&repo, &sim, &["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(wipes(&sim, LAPTOP).len(), 2, "sent twice in all: held, then approved");
    assert_eq!(sim.actions_applied(LAPTOP, "wipe"), 1, "executed once");
}

// The simulator's side: no justification is a refusal naming the header; a wrong code is held
// again; reads are never affected.
#[test]
fn the_simulator_refuses_without_justification_and_holds_a_wrong_code() {
    let sim = maa_sim(Vec::new());
    let token = sim.mint_token(&[
        "DeviceManagementManagedDevices.Read.All",
        "DeviceManagementManagedDevices.PrivilegedOperations.All",
    ]);
    let bearer = format!("Bearer {token}");
    let addr = sim.url().trim_start_matches("http://").to_owned();
    let path = format!("/v1.0/deviceManagement/managedDevices/{LAPTOP}/wipe");
    let post = |extra: &[(&str, &str)]| {
        let mut headers = vec![("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
        headers.extend_from_slice(extra);
        crate::common::http::call(&addr, "POST", &path, &headers, b"{}")
    };
    let refused = post(&[]);
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains("x-msft-approval-justification"), "{}", refused.body);
    let held = post(&[("x-msft-approval-justification", "dGVzdA==")]);
    assert_eq!(held.status, 403);
    assert!(held.body.contains("ApprovalRequired"), "{}", held.body);
    let code = held.header("x-msft-approval-code").expect("the code header").to_owned();
    assert!(held.body.contains(&code));
    let again = post(&[("x-msft-approval-justification", "dGVzdA==")]);
    assert_eq!(again.header("x-msft-approval-code"), Some(code.as_str()), "one pending request per object");
    let wrong = post(&[("x-msft-approval-code", "not-approved")]);
    assert_eq!(wrong.status, 403);
    let unapproved = post(&[("x-msft-approval-code", &code)]);
    assert_eq!(unapproved.status, 403, "not approved yet");
    assert_eq!(sim.actions_applied(LAPTOP, "wipe"), 0);
    let get =
        |target: &str| crate::common::http::call(&addr, "GET", target, &[("Authorization", bearer.as_str())], b"");
    let read = get(&format!("/v1.0/deviceManagement/managedDevices/{LAPTOP}"));
    assert_eq!(read.status, 200, "reads are never held");
    let listed = get(&format!("/beta/deviceManagement/operationApprovalRequests?$filter=requestId%20eq%20'{code}'"));
    let v: Value = serde_json::from_str(&listed.body).expect("JSON");
    assert_eq!(v["value"][0]["status"], "needsApproval", "{v}");
    decide(&sim, &code, "approve");
    assert_eq!(post(&[("x-msft-approval-code", &code)]).status, 204);
    assert_eq!(sim.actions_applied(LAPTOP, "wipe"), 1);
    assert_eq!(post(&[("x-msft-approval-code", &code)]).status, 403, "a code is used once");
}

//! Resets made outside reconcile (the Intune portal): seen in every plan, adopted by default,
//! blocked or sent as the policy says. The real binary against the simulator on loopback; the
//! portal reset goes through the simulator's portal route.

use crate::common::{Repo, android_devices, android_id, http_post, manifest_for, posts, sim, stderr, stdout};
use intune_reconcile::sim::{SimConfig, SimHandle};

/// Three Android devices, one manifest resetting all three; device 1 was reset in the portal by
/// bob `ago` before (`None`: not at all).
fn setup(policy: &str, ago: Option<&str>, tweak: impl FnOnce(&mut SimConfig)) -> (Repo, SimHandle, Vec<String>) {
    let repo = Repo::empty();
    repo.fast_config(policy);
    let ids: Vec<String> = (0..3).map(android_id).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    repo.write("manifests/batch.yaml", manifest_for("batch", &refs));
    let mut cfg = SimConfig { devices: android_devices(3), ..SimConfig::default() };
    tweak(&mut cfg);
    let sim = sim(cfg);
    if let Some(ago) = ago {
        let path = format!("/_sim/portal/{}/resetPasscode?by=bob%40contoso.com&ago={ago}", ids[1]);
        assert_eq!(http_post(&sim, &path), 204);
    }
    (repo, sim, ids)
}

fn run(repo: &Repo, sim: &SimHandle, args: &[&str]) -> std::process::Output {
    repo.cmd_on(sim).args(args).output().expect("run")
}

/// The record of `device` in `state list --format json`.
fn record_of<'a>(ledger: &'a serde_json::Value, device: &str) -> &'a serde_json::Value {
    ledger["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .find(|r| r["managedDeviceId"] == device)
        .expect("a record of the device")
}

/// The ledger as `state list --format json` shows it.
fn ledger(repo: &Repo) -> serde_json::Value {
    let out = repo.cmd().args(["state", "list", "--format", "json"]).output().expect("state list");
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("json")
}

#[test]
fn a_portal_reset_ten_minutes_ago_is_shown_with_its_initiator_and_adopted() {
    let (repo, sim, ids) = setup("", Some("10m"), |_| {});
    // Every plan format shows it.
    let plan = run(&repo, &sim, &["plan"]);
    assert!(plan.status.success(), "{}", stderr(&plan));
    let text = stdout(&plan);
    assert!(
        text.contains(
            "\n      reset outside reconcile 10 min ago by bob@contoso.com (done) — adopted, nothing will be sent\n"
        ),
        "{text}"
    );
    assert!(text.contains("  * adopt "), "{text}");
    assert!(text.contains("Plan: 2 to reset, 1 to adopt."), "{text}");
    let json: serde_json::Value =
        serde_json::from_slice(&run(&repo, &sim, &["plan", "--format", "json"]).stdout).expect("json");
    assert_eq!(json["summary"]["adopt"], 1);
    let entry =
        json["actions"].as_array().expect("actions").iter().find(|a| a["change"] == "adopt").expect("adopt entry");
    assert_eq!(entry["managed_device_id"], ids[1].as_str());
    assert_eq!(entry["out_of_band"]["initiated_by"], "bob@contoso.com");
    assert_eq!(entry["out_of_band"]["state"], "done");
    assert!(entry["out_of_band"]["audit_id"].is_string());
    let md = stdout(&run(&repo, &sim, &["plan", "--format", "markdown"]));
    let warnings: String = md.lines().filter(|l| l.starts_with("> ")).collect::<Vec<_>>().join("\n");
    assert!(warnings.contains("1 device reset outside reconcile lately: adopted, nothing will be sent"), "{md}");
    assert!(warnings.contains("bob@contoso.com"), "{md}");
    let gha = repo.cmd_on(&sim).arg("plan").env("GITHUB_ACTIONS", "true").output().expect("run");
    assert!(
        stderr(&gha).contains(&format!("::warning file=manifests/batch.yaml,line=8,col=11::id={}: reset outside reconcile 10 min ago by bob@contoso.com", ids[1])),
        "{}",
        stderr(&gha)
    );

    // apply sends the other two and records the third as done, with the evidence.
    let apply = run(&repo, &sim, &["apply", "--auto-approve"]);
    assert!(apply.status.success(), "{}", stderr(&apply));
    assert!(stdout(&apply).contains("2 accepted") && stdout(&apply).contains("1 reset made outside reconcile adopted"));
    let sent: Vec<String> = posts(&sim).iter().map(|p| p.path.clone()).collect();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(!sent.iter().any(|p| p.contains(&ids[1])), "the adopted device gets no POST: {sent:?}");
    assert_eq!(sim.resets_applied(&ids[1]), 1, "only the portal's reset");
    let ledger = ledger(&repo);
    let r = record_of(&ledger, &ids[1]);
    assert_eq!(r["status"], "done");
    assert_eq!(r["attempts"].as_array().map(Vec::len), Some(0), "nothing was attempted");
    let adopted = &r["adopted"];
    assert_eq!(adopted["by"], "apply");
    assert_eq!(adopted["initiatedBy"], "bob@contoso.com");
    assert!(adopted["resultStarted"].is_string() && adopted["auditId"].is_string(), "{adopted}");
    // The evidence is data; the sentence about it is made when shown, never stored.
    assert_eq!(adopted["evidence"], serde_json::json!({"source": "deviceActionResult", "auditLogRead": true}));
    assert_eq!(adopted["reason"], "policy.outOfBand (then: adopt)");
    let file = repo.read(".reconcile/state.json");
    assert!(!file.contains(" ago") && !file.contains("will be sent"), "no sentence in the ledger: {file}");
    let adopted_line = stdout(&apply).lines().find(|l| l.starts_with("adopted ")).map(str::to_owned);
    assert!(
        adopted_line.as_deref().is_some_and(|l| l.contains(": reset outside reconcile 10 min ago by bob@contoso.com (done); nothing sent")),
        "{adopted_line:?}"
    );

    // Auditors see it: `state show` and the CSV export carry the adoption and its evidence.
    let key = r["key"].as_str().expect("key").to_owned();
    let show = stdout(&repo.cmd().args(["state", "show", &key]).output().expect("show"));
    assert!(show.contains("adopted:     a reset made outside reconcile, recorded by apply"), "{show}");
    assert!(show.contains("initiated by bob@contoso.com"), "{show}");
    assert!(show.contains("     shown by the device's action results and audit entry "), "{show}");
    assert!(show.contains("     reason: policy.outOfBand (then: adopt); nothing was sent"), "{show}");
    let list = stdout(&repo.cmd().args(["state", "list"]).output().expect("list"));
    assert!(
        list.lines().any(|l| l.starts_with(&key[..12])
            && l.contains("(adopted: reset outside reconcile at ")
            && l.ends_with(" by bob@contoso.com (done))")),
        "{list}"
    );
    let csv = stdout(&repo.cmd().args(["state", "export", "--format", "csv"]).output().expect("export"));
    let row = csv.lines().find(|l| l.starts_with(&key)).expect("a row for the adopted action");
    assert!(
        row.contains("adopted a reset made outside reconcile") && row.contains("initiated by bob@contoso.com"),
        "{row}"
    );

    // Nothing is left to do; the adopted reset is never taken for a new one.
    let again = run(&repo, &sim, &["plan", "--detailed-exitcode", "--show-done"]);
    assert_eq!(again.status.code(), Some(0), "{}", stdout(&again));
    assert!(stdout(&again).contains("\n      adopted: reset outside reconcile at "), "{}", stdout(&again));

    // No passcode (the portal reset minted one, and so did the two resets) anywhere.
    let secrets = sim.secrets();
    let mut places: Vec<(String, Vec<u8>)> =
        repo.all_files().into_iter().map(|(p, b)| (p.display().to_string(), b)).collect();
    for (what, out) in [("plan", &plan), ("apply", &apply), ("again", &again)] {
        places.push((format!("{what} stdout"), out.stdout.clone()));
        places.push((format!("{what} stderr"), out.stderr.clone()));
    }
    places.push(("markdown".into(), md.into_bytes()));
    assert!(secrets.iter().any(|s| s.starts_with("Pc")), "passcodes were minted: {secrets:?}");
    for (place, bytes) in &places {
        let text = String::from_utf8_lossy(bytes);
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "token or passcode in {place}");
        }
    }
}

#[test]
fn block_shows_it_sends_nothing_for_it_and_exits_1() {
    let (repo, sim, ids) = setup("policy:\n  outOfBand: { then: block }\n", Some("10m"), |_| {});
    let plan = run(&repo, &sim, &["plan"]);
    assert_eq!(plan.status.code(), Some(1), "a blocked action fails the plan");
    let text = stdout(&plan);
    assert!(text.contains("x blocked") && text.contains("blocked by policy.outOfBand (then: block)"), "{text}");
    assert!(text.contains("`reconcile state adopt "), "the hint names the way out: {text}");
    let apply = run(&repo, &sim, &["apply", "--auto-approve"]);
    assert_eq!(apply.status.code(), Some(1), "{}", stdout(&apply));
    assert_eq!(posts(&sim).len(), 2);
    assert_eq!(sim.resets_applied(&ids[1]), 1, "only the portal's reset");

    // A person checks, then adopts it by hand: recorded with who and why, nothing sent.
    let key = {
        let json: serde_json::Value =
            serde_json::from_slice(&run(&repo, &sim, &["plan", "--format", "json"]).stdout).expect("json");
        let e = json["actions"].as_array().expect("actions").iter().find(|a| a["block"] == "out-of-band").cloned();
        e.expect("still blocked")["key"].as_str().expect("key")[..12].to_owned()
    };
    let adopt = run(&repo, &sim, &["state", "adopt", &key, "--reason", "INC-5000: done in the portal"]);
    assert!(adopt.status.success(), "{}", stderr(&adopt));
    assert!(
        stdout(&adopt).contains("is now `done`: adopted the reset outside reconcile 10 min ago by bob@contoso.com")
    );
    let r = record_of(&ledger(&repo), &ids[1]).clone();
    assert_eq!(r["adopted"]["reason"], "INC-5000: done in the portal");
    assert_ne!(r["adopted"]["by"], "apply");
    // Adopting again is refused: it is recorded.
    let twice = run(&repo, &sim, &["state", "adopt", &key]);
    assert_eq!(twice.status.code(), Some(1));
    assert!(stderr(&twice).contains("already recorded as `done`"), "{}", stderr(&twice));
    assert_eq!(posts(&sim).len(), 2, "state adopt sends nothing");
    let done = run(&repo, &sim, &["apply", "--auto-approve"]);
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(stdout(&done).contains("Nothing to do."), "{}", stdout(&done));
}

#[test]
fn state_adopt_needs_a_reset_in_intune() {
    let (repo, sim, _) = setup("", None, |_| {});
    let json: serde_json::Value =
        serde_json::from_slice(&run(&repo, &sim, &["plan", "--format", "json"]).stdout).expect("json");
    let key = json["actions"][0]["key"].as_str().expect("key")[..12].to_owned();
    let out = run(&repo, &sim, &["state", "adopt", &key, "--reason", "I think so"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Intune shows no passcode reset of device"), "{}", stderr(&out));
    assert!(
        !repo.path().join(".reconcile/state.json").exists()
            || ledger(&repo)["actions"].as_array().is_some_and(Vec::is_empty)
    );
    let unknown = run(&repo, &sim, &["state", "adopt", "ffffffff"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(stderr(&unknown).contains("no manifest action has the key `ffffffff`"), "{}", stderr(&unknown));
    assert!(posts(&sim).is_empty());
}

#[test]
fn send_warns_and_sends() {
    let (repo, sim, ids) = setup("policy:\n  outOfBand: { then: send }\n", Some("10m"), |_| {});
    let plan = run(&repo, &sim, &["plan"]);
    assert!(plan.status.success(), "{}", stderr(&plan));
    assert!(
        stdout(&plan)
            .contains("\n      warning: reset outside reconcile 10 min ago by bob@contoso.com (done); sent anyway")
    );
    let md = stdout(&run(&repo, &sim, &["plan", "--format", "markdown"]));
    assert!(md.contains("**will be reset again**"), "{md}");
    let apply = run(&repo, &sim, &["apply", "--auto-approve"]);
    assert!(apply.status.success(), "{}", stderr(&apply));
    assert_eq!(posts(&sim).len(), 3);
    assert_eq!(sim.resets_applied(&ids[1]), 2, "the portal's and ours, as the policy says");
}

#[test]
fn a_reset_older_than_within_is_ignored_but_the_cooldown_counts_it() {
    let (repo, sim, _) = setup("policy:\n  outOfBand: { within: 1h }\n", Some("2h"), |_| {});
    let plan = run(&repo, &sim, &["plan"]);
    assert!(plan.status.success(), "{}", stderr(&plan));
    assert!(
        stdout(&plan).contains("Plan: 3 to reset.") && !stdout(&plan).contains("outside reconcile 2 h"),
        "{}",
        stdout(&plan)
    );

    // A 24h cooldown counts the portal's reset of 2 h ago: the manifest is stopped.
    let (repo, sim, _) = setup("policy:\n  outOfBand: { within: 1h }\n  cooldown: 24h\n", Some("2h"), |_| {});
    let apply = run(&repo, &sim, &["apply", "--auto-approve"]);
    assert_eq!(apply.status.code(), Some(1), "{}", stdout(&apply));
    let text = stdout(&apply);
    assert!(text.contains("policy cooldown") && text.contains("by bob@contoso.com outside reconcile"), "{text}");
    assert!(posts(&sim).is_empty(), "the whole manifest is stopped");
}

#[test]
fn without_the_audit_log_it_is_still_seen_and_a_saved_plan_adopts_it() {
    let (repo, sim, ids) = setup("", Some("10m"), |c| c.audits_readable = false);
    let plan = run(&repo, &sim, &["plan", "--out", "plan.json"]);
    assert!(plan.status.success(), "{}", stderr(&plan));
    assert!(
        stdout(&plan)
            .contains("reset outside reconcile 10 min ago by someone (the audit log could not be read) (done)"),
        "{}",
        stdout(&plan)
    );
    let saved: serde_json::Value = serde_json::from_str(&repo.read("plan.json")).expect("saved plan");
    let entry = saved["actions"].as_array().expect("actions").iter().find(|e| e["change"] == "adopt").expect("adopt");
    assert_eq!(entry["out_of_band"]["audited"], false);
    let apply = run(&repo, &sim, &["apply", "--plan", "plan.json"]);
    assert!(apply.status.success(), "{}", stderr(&apply));
    assert_eq!(posts(&sim).len(), 2);
    let r = record_of(&ledger(&repo), &ids[1]).clone();
    assert_eq!(r["status"], "done");
    assert!(r["adopted"]["auditId"].is_null() && r["adopted"]["resultStarted"].is_string(), "{r}");
    assert_eq!(r["adopted"]["evidence"]["auditLogRead"], false, "who started it is unknown: {r}");
    // The adoption says which reviewed plan it executed.
    assert_eq!(r["adopted"]["provenance"]["plan"], saved["id"], "{r}");
}

// The device list may come without results (Intune's reports lag; the list endpoint has been
// seen leaving them out): the audit log alone shows the reset, with who started it.
#[test]
fn the_audit_log_alone_shows_a_reset_the_device_does_not_yet() {
    let (repo, sim, ids) = setup("", Some("10m"), |c| c.report_delay = std::time::Duration::from_secs(3600));
    repo.write(
        "manifests/batch.yaml",
        manifest_for("batch", &[&ids[1]]).replace("metadata:\n", "metadata:\n  ticket: INC-77\n"),
    );
    let apply = run(&repo, &sim, &["apply", "--auto-approve"]);
    assert!(apply.status.success(), "{}", stderr(&apply));
    assert!(stdout(&apply).contains("reset outside reconcile 10 min ago by bob@contoso.com"), "{}", stdout(&apply));
    assert!(posts(&sim).is_empty(), "nothing sent to a device the portal just reset");
    let r = record_of(&ledger(&repo), &ids[1]).clone();
    assert_eq!(r["adopted"]["state"], "done", "the audit entry's state: {r}");
    assert_eq!(r["adopted"]["evidence"]["source"], "auditLog", "{r}");
    assert_eq!(r["adopted"]["provenance"]["manifest"]["ticket"], "INC-77", "{r}");
}

// docs/graph-facts.md: device lists have been seen answering `deviceActionResults` empty. When the audit log
// cannot vouch for resets made outside reconcile, every device found through a list (here by
// serial number, 22 of them: a tenant listing would pay) has its results read on its own, and the
// portal reset is seen and adopted instead of being sent again.
#[test]
fn devices_found_through_lists_have_their_own_results_read_when_the_audit_log_is_unreadable() {
    let repo = Repo::empty();
    repo.fast_config("");
    let serials: String = (0..22).map(|i| format!("    - serialNumber: SN{i:08}\n")).collect();
    repo.write(
        "manifests/batch.yaml",
        format!("apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: batch\nspec:\n  devices:\n{serials}"),
    );
    let sim = sim(SimConfig {
        devices: crate::common::android_devices(22),
        audits_readable: false,
        list_omits_results: true,
        ..SimConfig::default()
    });
    let reset = format!("/_sim/portal/{}/resetPasscode?by=bob%40contoso.com&ago=10m", android_id(1));
    assert_eq!(http_post(&sim, &reset), 204);
    let plan = run(&repo, &sim, &["plan", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("json");
    assert_eq!(
        (json["summary"]["adopt"].as_u64(), json["summary"]["to_reset"].as_u64()),
        (Some(1), Some(21)),
        "{json}"
    );
    let unfiltered = sim
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/managedDevices") && !r.query.contains("filter"))
        .count();
    assert_eq!(unfiltered, 0, "no tenant listing when its results cannot be trusted");
    let out = run(&repo, &sim, &["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        posts(&sim).iter().all(|p| !p.path.contains(&android_id(1))),
        "the device reset outside is not reset again"
    );
    assert_eq!(posts(&sim).len(), 21);
}

// A reset made in the portal one second before `apply` starts was sent again: apply took every
// reset from its start (less the clock tolerance) on for its own. A reset is possibly the run's
// own only after the run's own intent for that device.
#[test]
fn a_portal_reset_a_second_before_apply_is_adopted_not_sent_again() {
    // Also when only the device's own results show it (the audit log cannot be read).
    for (ago, audited) in [("1s", true), ("0s", true), ("1s", false)] {
        let case = format!("{ago} before, audit log read: {audited}");
        let (repo, sim, ids) = setup("", Some(ago), |c| c.audits_readable = audited);
        let out = run(&repo, &sim, &["apply", "--auto-approve"]);
        assert!(out.status.success(), "{case}: {}\n{}", stdout(&out), stderr(&out));
        assert_eq!(sim.resets_applied(&ids[1]), 1, "{case}: only the portal's reset");
        assert!(
            posts(&sim).iter().all(|p| !p.path.contains(&ids[1])),
            "{case}: no POST to the device reset in the portal"
        );
        assert_eq!(posts(&sim).len(), 2, "{case}: the other two are sent");
        let r = record_of(&ledger(&repo), &ids[1]).clone();
        assert_eq!(r["status"], "done", "{case}: {r}");
        assert!(r["adopted"].is_object(), "{case}: {r}");
    }
}

// `state adopt --within` bounds how old a reset outside reconcile may be to be adopted by hand.
#[test]
fn state_adopt_within_bounds_the_age_of_the_reset_adopted() {
    let (repo, sim, ids) = setup("policy:\n  outOfBand: { then: block }\n", Some("10m"), |_| {});
    let json: serde_json::Value =
        serde_json::from_slice(&run(&repo, &sim, &["plan", "--format", "json"]).stdout).expect("json");
    let key = json["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .find(|a| a["block"] == "out-of-band")
        .expect("blocked")["key"]
        .as_str()
        .expect("key")[..12]
        .to_owned();
    let young = run(&repo, &sim, &["state", "adopt", &key, "--within", "5m", "--reason", "INC-1"]);
    assert_eq!(young.status.code(), Some(1), "a reset 10 min old is not within 5m: {}", stdout(&young));
    let none =
        ledger(&repo)["actions"].as_array().expect("actions").iter().all(|r| r["managedDeviceId"] != ids[1].as_str());
    assert!(none, "nothing recorded for the device");
    let old = run(&repo, &sim, &["state", "adopt", &key, "--within", "1h", "--reason", "INC-1"]);
    assert!(old.status.success(), "{}", stderr(&old));
    assert_eq!(record_of(&ledger(&repo), &ids[1])["adopted"]["reason"], "INC-1");
    assert!(posts(&sim).is_empty(), "adopting sends nothing");
}

// An adopted record stored the plan's sentence of that moment ("reset … 40 min ago … nothing will
// be sent"): relative, future tense, and shown so for ever. The evidence is data now; a ledger
// written before still reads, and its sentence is made from the data it always held, the old
// wording shown as of its time.
#[test]
fn an_adoption_recorded_as_a_sentence_by_an_older_version_still_reads() {
    use intune_reconcile::ledger::{Adoption, Record, Status};
    let (repo, _, ids) = setup("", None, |_| {});
    let actions = repo.actions();
    let action = actions.iter().find(|a| a.selector.to_string().contains(&ids[1])).expect("action");
    let legacy = "reset outside reconcile 40 min ago by bob@contoso.com (done) — adopted, nothing will be sent";
    let started: jiff::Timestamp = "2026-11-30T11:20:00Z".parse().expect("time");
    let mut w = repo.store().lock(std::time::Duration::ZERO, "test", None).expect("lock");
    let mut r = Record::new(action, Some(ids[1].clone()), started);
    r.status = Status::Done;
    r.adopted = Some(Box::new(Adoption {
        at: "2026-11-30T12:00:00Z".parse().expect("time"),
        by: "apply".into(),
        reason: legacy.into(),
        result_started: started,
        state: "done".into(),
        audit_id: Some("audit-1".into()),
        initiated_by: Some("bob@contoso.com".into()),
        provenance: None,
        evidence: None,
    }));
    w.record(r).expect("record");
    w.commit().expect("commit");
    let file = repo.read(".reconcile/state.json");
    assert!(file.contains(legacy) && !file.contains("\"evidence\""), "the older form: {file}");

    let key = action.key.short().to_owned();
    let show = repo.cmd().args(["state", "show", &key]).output().expect("show");
    assert!(show.status.success(), "{}", stderr(&show));
    let show = stdout(&show);
    assert!(
        show.contains("     Intune started it at 2026-11-30T11:20:00Z (state done), initiated by bob@contoso.com"),
        "{show}"
    );
    assert!(show.contains("     audit entry audit-1"), "{show}");
    assert!(show.contains("     reason: policy.outOfBand (then: adopt); nothing was sent"), "{show}");
    assert!(show.contains(&format!("     noted when adopted (by an older version): {legacy}")), "{show}");
    let list = stdout(&repo.cmd().args(["state", "list"]).output().expect("list"));
    assert!(
        list.contains("(adopted: reset outside reconcile at 2026-11-30T11:20:00Z by bob@contoso.com (done))"),
        "{list}"
    );
    assert!(!list.contains("ago") && !list.contains("will be sent"), "{list}");
    let plan = repo.cmd().args(["plan", "--offline", "--show-done"]).output().expect("plan");
    let plan = stdout(&plan);
    assert!(
        plan.contains("adopted: reset outside reconcile at 2026-11-30T11:20:00Z by bob@contoso.com (done)"),
        "{plan}"
    );
    assert!(!plan.contains("will be sent"), "{plan}");
    let json = ledger(&repo);
    assert_eq!(record_of(&json, &ids[1])["adopted"]["reason"], legacy, "the field is kept as written");
}

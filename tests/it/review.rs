//! Plans a reviewer can judge at a glance: compact by default, archived orphans, passcode
//! removals counted on their own, and saved plans that are too old or leave actions out.

use crate::common::spawn::sim_env;
use crate::common::{
    Repo, android_id, bare_repo_and_android_sim, manifest_for, posts, sim, sim_config, stderr, stdout,
};
use intune_reconcile::sim::SimHandle;

fn run(repo: &Repo, sim: &SimHandle, args: &[&str]) -> std::process::Output {
    repo.cmd_on(sim).args(args).output().expect("run")
}

fn ok(repo: &Repo, sim: &SimHandle, args: &[&str]) -> String {
    let out = run(repo, sim, args);
    assert!(out.status.success(), "{args:?}: {}{}", stdout(&out), stderr(&out));
    stdout(&out)
}

/// `first` (devices 0 and 1) and `gone` (device 2) applied, then `gone` removed (its record is an
/// orphan) and `new` (device 3) added: one reset pending.
fn done_orphaned_and_new() -> (Repo, SimHandle) {
    let (repo, sim) = bare_repo_and_android_sim(4);
    repo.write("manifests/first.yaml", manifest_for("first", &[&android_id(0), &android_id(1)]));
    repo.write("manifests/gone.yaml", manifest_for("gone", &[&android_id(2)]));
    ok(&repo, &sim, &["apply", "--auto-approve"]);
    std::fs::remove_file(repo.path().join("manifests/gone.yaml")).expect("rm");
    repo.write("manifests/new.yaml", manifest_for("new", &[&android_id(3)]));
    (repo, sim)
}

fn orphan_key(repo: &Repo, sim: &SimHandle) -> String {
    let json: serde_json::Value =
        serde_json::from_str(&ok(repo, sim, &["plan", "--format", "json"])).expect("plan JSON");
    let orphan = json["actions"].as_array().expect("actions").iter().find(|a| a["change"] == "orphaned");
    orphan.expect("an orphan")["key"].as_str().expect("key").to_owned()
}

#[test]
fn compact_plans_list_what_changes_and_count_the_rest_in_every_format() {
    let (repo, sim) = done_orphaned_and_new();
    let text = ok(&repo, &sim, &["plan"]);
    assert!(text.contains("\nmanifest new (manifests/new.yaml)\n  + reset passcode  id="), "{text}");
    assert!(!text.contains("manifest first") && !text.contains("orphaned from manifest gone"), "{text}");
    assert!(
        text.ends_with("\nPlan: 1 to reset.\n2 already done, 1 orphaned (`--show-done` to list them).\n"),
        "{text}"
    );
    assert!(text.contains("Legend: + reset passcode\n"), "only the symbols present: {text}");
    for line in text.lines().filter(|l| l.starts_with("  ")) {
        assert!(line.chars().count() <= 120, "an action line within 120 columns: {line:?}");
    }

    let all = ok(&repo, &sim, &["plan", "--show-done"]);
    for want in [
        "manifest first (manifests/first.yaml)",
        "  = accepted",
        "orphaned from manifest gone (was manifests/gone.yaml)",
        "\nPlan: 1 to reset, 2 already done, 1 orphaned.\n",
    ] {
        assert!(all.contains(want), "{want:?} in {all}");
    }
    assert!(all.contains("Legend: + reset passcode, = already done, ~ orphaned\n"), "{all}");

    let md = ok(&repo, &sim, &["plan", "--format", "markdown"]);
    assert!(md.contains("<summary><code>new</code>"), "{md}");
    assert!(!md.contains("<code>first</code>") && !md.contains("orphaned from"), "{md}");
    assert!(md.contains("| 1 | 0 | 0 | 0 | 0 | 0 | 2 | 1 | 0 |"), "the table counts everything: {md}");
    assert!(md.contains("**Plan: 1 to reset.**\n\n_2 already done, 1 orphaned (`--show-done` to list them)._"), "{md}");
    let md_all = ok(&repo, &sim, &["plan", "--format", "markdown", "--show-done"]);
    assert!(md_all.contains("<summary><code>first</code>") && md_all.contains("orphaned from"), "{md_all}");

    // JSON lists every action either way, with the same summary.
    let json: serde_json::Value = serde_json::from_str(&ok(&repo, &sim, &["plan", "--format", "json"])).expect("JSON");
    assert_eq!(json["actions"].as_array().map(Vec::len), Some(4));
    assert_eq!(json["summary"]["to_reset"], 1);
    assert_eq!(json["summary"]["already_done"], 2);

    // A saved plan shows the same way; `show --show-done` lists everything.
    ok(&repo, &sim, &["plan", "--out", "plan.json"]);
    let shown = ok(&repo, &sim, &["show", "plan.json"]);
    assert!(!shown.contains("manifest first") && shown.contains("2 already done, 1 orphaned"), "{shown}");
    assert!(ok(&repo, &sim, &["show", "plan.json", "--show-done"]).contains("manifest first"));

    // Once everything is done: Terraform's "No changes.", in text and Markdown.
    ok(&repo, &sim, &["apply", "--auto-approve"]);
    let out = run(&repo, &sim, &["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).ends_with("\nNo changes.\n3 already done, 1 orphaned (`--show-done` to list them).\n"));
    assert!(!stdout(&out).contains("Legend"), "{}", stdout(&out));
    let md = ok(&repo, &sim, &["plan", "--format", "markdown"]);
    assert!(md.contains("**No changes.**"), "{md}");
}

#[test]
fn archived_orphans_leave_plans_but_are_never_sent_again() {
    let (repo, sim) = done_orphaned_and_new();
    let key = orphan_key(&repo, &sim);
    let sent = posts(&sim).len();
    assert_eq!(sent, 3);

    // A key that finds nothing archives nothing, not even the keys before it.
    let out = run(&repo, &sim, &["state", "archive", &key, "ffffffff", "--reason", "retired"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no action in the ledger has a key starting with `ffffffff`"), "{}", stderr(&out));
    assert!(repo.ledger_json()["records"][&key].get("archived").is_none());
    // A reason is required.
    assert_eq!(run(&repo, &sim, &["state", "archive", &key]).status.code(), Some(1));

    // One action named twice (a prefix and the whole key) is archived once.
    let said = ok(&repo, &sim, &["state", "archive", &key[..8], &key, "--reason", "INC-4800 retired the manifest"]);
    assert!(said.contains("gone") && said.contains("is archived (recorded with your reason)"), "{said}");
    assert_eq!(said.matches("is archived").count(), 1, "{said}");
    let record = &repo.ledger_json()["records"][&key];
    assert_eq!(record["archived"]["reason"], "INC-4800 retired the manifest");
    assert!(record["archived"]["by"].as_str().is_some_and(|b| !b.is_empty()), "{record}");
    assert!(record["archived"]["at"].as_str().is_some(), "{record}");
    assert_eq!(record["status"], "accepted", "archiving changes no status");
    // Archiving again keeps the first archival.
    let again = ok(&repo, &sim, &["state", "archive", &key, "--reason", "other"]);
    assert!(again.contains("was archived already"), "{again}");
    assert_eq!(repo.ledger_json()["records"][&key]["archived"]["reason"], "INC-4800 retired the manifest");

    // Plans no longer show it, compact or not, in any format.
    let text = ok(&repo, &sim, &["plan"]);
    assert!(text.contains("2 already done, 0 orphaned"), "{text}");
    let all = ok(&repo, &sim, &["plan", "--show-done"]);
    assert!(!all.contains("gone"), "{all}");
    let json: serde_json::Value = serde_json::from_str(&ok(&repo, &sim, &["plan", "--format", "json"])).expect("JSON");
    assert_eq!(json["summary"]["orphaned"], 0);
    assert!(json["actions"].as_array().expect("actions").iter().all(|a| a["key"] != key.as_str()));

    // The ledger lists it, marked; `--archived` lists only those.
    let list = ok(&repo, &sim, &["state", "list"]);
    let line = list.lines().find(|l| l.starts_with(&key[..12])).expect("listed");
    assert!(line.ends_with("(archived)"), "{list}");
    assert!(list.contains("3 actions (1 archived"), "{list}");
    let only = ok(&repo, &sim, &["state", "list", "--archived"]);
    assert!(only.contains(&key[..12]) && only.contains("\n1 action (1 archived"), "{only}");
    let only: serde_json::Value =
        serde_json::from_str(&ok(&repo, &sim, &["state", "list", "--archived", "--format", "json"])).expect("JSON");
    assert_eq!(only["actions"].as_array().map(Vec::len), Some(1));
    assert!(ok(&repo, &sim, &["state", "show", &key]).contains("archived:    by "));

    // The manifest comes back: its archived action is what the ledger says (done), never re-sent.
    repo.write("manifests/gone.yaml", manifest_for("gone", &[&android_id(2)]));
    let text = ok(&repo, &sim, &["plan", "--show-done"]);
    assert!(text.contains("manifest gone (manifests/gone.yaml)\n  = accepted"), "{text}");
    ok(&repo, &sim, &["apply", "--auto-approve"]);
    assert_eq!(posts(&sim).len(), sent + 1, "only `new` was sent");
    assert_eq!(posts(&sim).iter().filter(|p| p.path.contains(&android_id(2))).count(), 1, "device 2 reset once");
    let out = run(&repo, &sim, &["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn passcode_removals_are_counted_on_their_own_and_named_in_the_question() {
    let repo = Repo::from_examples();
    repo.fast_config("");
    let sim = sim(sim_config());
    let text = ok(&repo, &sim, &["plan"]);
    assert!(text.contains("  + remove passcode serialNumber=F2LXK0QAHG7F"), "{text}");
    assert!(text.contains("\nPlan: 6 to reset, 1 to remove a passcode.\n"), "{text}");
    let md = ok(&repo, &sim, &["plan", "--format", "markdown"]);
    assert!(md.contains("| 6 | 1 | 0 | 0 | 0 | 0 | 0 |"), "{md}");
    assert!(md.contains("**Plan: 6 to reset, 1 to remove a passcode.**"), "{md}");
    let json: serde_json::Value = serde_json::from_str(&ok(&repo, &sim, &["plan", "--format", "json"])).expect("JSON");
    let s = &json["summary"];
    assert_eq!((&s["to_reset"], &s["reset_passcode"], &s["remove_passcode"]), (&7.into(), &6.into(), &1.into()));

    // A person at a terminal is asked about the removal by name (and says no: nothing is sent).
    let mut env = sim_env(&sim);
    env.push(("NO_COLOR", "1".into()));
    let text = repo.on_a_terminal("apply", &env, "no\n");
    assert!(
        text.contains("Do you want to reset the passcode of 6 devices and remove the passcode of 1? Only 'yes'"),
        "{text}"
    );
    assert!(posts(&sim).is_empty(), "nothing sent: {text}");
}

/// The saved plan `plan.json`, made `hours` ago (its `created_at` moved back).
fn age_plan(repo: &Repo, hours: i64) {
    let mut plan: serde_json::Value = serde_json::from_str(&repo.read("plan.json")).expect("saved plan");
    let created: jiff::Timestamp = plan["created_at"].as_str().expect("created_at").parse().expect("timestamp");
    plan["created_at"] = (created - jiff::SignedDuration::from_hours(hours)).to_string().into();
    repo.write("plan.json", serde_json::to_vec_pretty(&plan).expect("JSON"));
}

#[test]
fn a_saved_plan_older_than_plan_max_age_is_refused_with_its_age() {
    let (repo, sim) = bare_repo_and_android_sim(1);
    repo.fast_config("policy:\n  planMaxAge: 24h\n");
    repo.write("manifests/a.yaml", manifest_for("a", &[&android_id(0)]));
    ok(&repo, &sim, &["plan", "--out", "plan.json"]);
    age_plan(&repo, 30);
    let out = run(&repo, &sim, &["apply", "--plan", "plan.json"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("the saved plan `plan.json` is too old to apply: it was made 30h ago, longer than policy planMaxAge 24h (reconcile.yaml:"),
        "{err}"
    );
    assert!(err.contains("nothing was sent"), "{err}");
    assert!(posts(&sim).is_empty());
    // Under an operator's floor the shorter age wins: the floor's 12h over the repository's 24h
    // refuses a plan made 18 hours ago...
    let floor = repo.write("floor/policy.yaml", "planMaxAge: 12h\n");
    ok(&repo, &sim, &["plan", "--out", "plan.json"]);
    age_plan(&repo, 18);
    let out = repo.cmd_on(&sim).env("RECONCILE_POLICY", &floor).args(["apply", "--plan", "plan.json"]).output();
    let out = out.expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("longer than policy planMaxAge 12h ("), "{}", stderr(&out));
    assert!(stderr(&out).contains("the operator's"), "{}", stderr(&out));
    // ...and the repository's 24h over a floor of 48h refuses one made 30 hours ago.
    repo.write("floor/policy.yaml", "planMaxAge: 48h\n");
    age_plan(&repo, 12);
    let out = repo.cmd_on(&sim).env("RECONCILE_POLICY", &floor).args(["apply", "--plan", "plan.json"]).output();
    let out = out.expect("run");
    assert!(stderr(&out).contains("it was made 30h ago, longer than policy planMaxAge 24h (reconcile.yaml:"));
    assert!(posts(&sim).is_empty());
    // A repository looser than the floor is warned about.
    repo.fast_config("policy:\n  planMaxAge: 96h\n");
    let out = repo.cmd_on(&sim).env("RECONCILE_POLICY", &floor).args(["validate"]).output().expect("run");
    assert!(stderr(&out).contains("policy.planMaxAge 96h is looser than the operator's 48h"), "{}", stderr(&out));
    // A plan within the age is applied.
    repo.fast_config("policy:\n  planMaxAge: 24h\n");
    ok(&repo, &sim, &["plan", "--out", "plan.json"]);
    age_plan(&repo, 23);
    ok(&repo, &sim, &["apply", "--plan", "plan.json"]);
    assert_eq!(posts(&sim).len(), 1);
}

#[test]
fn apply_plan_names_the_actions_the_reviewed_plan_did_not_have() {
    let (repo, sim) = bare_repo_and_android_sim(3);
    repo.write("manifests/a.yaml", manifest_for("a", &[&android_id(0)]));
    ok(&repo, &sim, &["plan", "--out", "plan.json"]);
    // Merged after the review: not in the plan.
    repo.write("manifests/b.yaml", manifest_for("b", &[&android_id(1), &android_id(2)]));
    let out = ok(&repo, &sim, &["apply", "--plan", "plan.json"]);
    assert_eq!(posts(&sim).len(), 1, "only the reviewed reset: {out}");
    assert!(
        out.contains("2 actions not in the reviewed plan were not sent (plan and review them to send them):"),
        "{out}"
    );
    for i in [1, 2] {
        assert!(out.contains(&format!(" b id={}\n", android_id(i))), "{out}");
    }
    // Again, in JSON: named, and still not sent.
    let json: serde_json::Value =
        serde_json::from_str(&ok(&repo, &sim, &["apply", "--plan", "plan.json", "--format", "json"])).expect("JSON");
    let left = json["not_in_plan"].as_array().expect("not_in_plan");
    assert_eq!(left.len(), 2, "{json}");
    assert!(left.iter().all(|a| a["manifest"] == "b"), "{json}");
    assert_eq!(posts(&sim).len(), 1);
}

/// The cells of the Markdown plan's summary table (the row under the header and its rule).
fn table_cells(md: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = md.lines().collect();
    let at = lines.iter().position(|l| l.starts_with("| reset passcode |")).expect("a summary table");
    let cells = |l: &str| l.trim_matches('|').split('|').map(|c| c.trim().to_owned()).collect::<Vec<_>>();
    let counts = cells(lines[at + 2]).iter().map(|c| c.parse().expect("a count")).collect::<Vec<usize>>();
    cells(lines[at]).into_iter().zip(counts).collect()
}

// An adopted reset (and an entry naming a device another entry names) had no column in the
// Markdown table: a plan of 7 actions added up to 6 there. Every summary counts every action.
#[test]
fn every_action_of_a_plan_is_counted_in_every_summary() {
    let (repo, sim) = bare_repo_and_android_sim(5);
    repo.write("manifests/first.yaml", manifest_for("first", &[&android_id(0)]));
    repo.write("manifests/gone.yaml", manifest_for("gone", &[&android_id(1)]));
    ok(&repo, &sim, &["apply", "--auto-approve"]);
    std::fs::remove_file(repo.path().join("manifests/gone.yaml")).expect("rm");
    // `new` asks for device 2, for device 3 reset in the portal a moment ago (adopted), for a
    // device Intune does not know (blocked), and for device 2 again by its name (reset once).
    let portal = format!("/_sim/portal/{}/resetPasscode?by=bob%40contoso.com&ago=10m", android_id(3));
    assert_eq!(crate::common::http_post(&sim, &portal), 204);
    let mut new = manifest_for("new", &[&android_id(2), &android_id(3), &android_id(99)]);
    new.push_str("    - deviceName: ANDROID-00002\n");
    repo.write("manifests/new.yaml", new);

    let json: serde_json::Value =
        serde_json::from_slice(&run(&repo, &sim, &["plan", "--format", "json"]).stdout).expect("plan JSON");
    let total = json["actions"].as_array().expect("actions").len();
    assert_eq!(total, 6, "first (done), gone (orphaned) and the four of new: {json}");
    let s = &json["summary"];
    let count = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("summary.{k}: {s}")) as usize;
    let kinds = ["reset_passcode", "remove_passcode", "adopt", "blocked", "same_device", "already_done", "orphaned"];
    assert_eq!(kinds.iter().map(|k| count(k)).collect::<Vec<_>>(), [1, 0, 1, 1, 1, 1, 1], "{s}");
    assert_eq!(kinds.iter().chain(&["attention"]).map(|k| count(k)).sum::<usize>(), total, "{s}");

    for args in [&["plan", "--format", "markdown"][..], &["plan", "--format", "markdown", "--show-done"]] {
        let md = stdout(&run(&repo, &sim, args));
        let cells = table_cells(&md);
        assert_eq!(cells.iter().map(|(_, n)| n).sum::<usize>(), total, "{args:?}: {cells:?}");
        let cell = |name: &str| cells.iter().find(|(h, _)| h == name).map(|(_, n)| *n);
        assert_eq!((cell("adopted"), cell("same device")), (Some(1), Some(1)), "{cells:?}");
        assert!(md.contains("**Plan: 1 to reset, 1 to adopt"), "{md}");
    }

    let text = stdout(&run(&repo, &sim, &["plan", "--show-done"]));
    assert!(text.contains("\nPlan: 1 to reset, 1 to adopt, 1 already done, 1 orphaned.\n"), "{text}");
    for line in ["1 action is blocked", "1 entry names a device another entry", "1 device was reset outside"] {
        assert!(text.contains(line), "{line}: {text}");
    }
}

/// Three Android phones asked for by one manifest: device 0 used by alice, device 1 by someone
/// whose UPN tries markup and a logging command, device 2 without a primary user.
fn users_repo(config: &str) -> (Repo, SimHandle) {
    let repo = Repo::empty();
    repo.fast_config(config);
    let mut devices = crate::common::android_devices(3);
    devices[0].insert("userPrincipalName".into(), "alice@contoso.com".into());
    devices[1].insert("userPrincipalName".into(), "eve`](https://evil.example)\n##[error]x@contoso.com".into());
    let sim = sim(intune_reconcile::sim::SimConfig { devices, ..Default::default() });
    repo.write("manifests/a.yaml", manifest_for("a", &[&android_id(0), &android_id(1), &android_id(2)]));
    (repo, sim)
}

/// The `$select` of every device read the simulator received.
fn device_selects(sim: &SimHandle) -> Vec<String> {
    sim.requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.contains("/managedDevices"))
        .map(|r| r.query)
        .collect()
}

// A plan names no person the manifest did not name, unless the repository asks for it: then each
// line carries the device's primary user, escaped like a device name.
#[test]
fn the_devices_user_is_shown_only_when_asked_and_inert() {
    let (repo, sim) = users_repo("");
    let text = ok(&repo, &sim, &["plan"]);
    let json = ok(&repo, &sim, &["plan", "--format", "json"]);
    let md = ok(&repo, &sim, &["plan", "--format", "markdown"]);
    for out in [&text, &json, &md] {
        assert!(!out.contains("alice") && !out.contains("user_principal_name"), "{out}");
    }
    let selects = device_selects(&sim);
    assert!(!selects.is_empty() && selects.iter().all(|q| !q.contains("userPrincipalName")), "never read: {selects:?}");

    let text = ok(&repo, &sim, &["plan", "--show-user"]);
    assert!(text.contains("ANDROID-00000 (Android 14, company)\n      user alice@contoso.com\n"), "{text}");
    assert!(text.contains("user eve`](https://evil.example)\\n#\\u{23}[error]x@contoso.com"), "{text}");
    assert!(device_selects(&sim).iter().any(|q| q.contains("userPrincipalName")));
    let json: serde_json::Value =
        serde_json::from_str(&ok(&repo, &sim, &["plan", "--format", "json", "--show-user"])).expect("JSON");
    let users: Vec<&serde_json::Value> =
        json["actions"].as_array().expect("actions").iter().map(|a| &a["device"]["user_principal_name"]).collect();
    assert_eq!(users[0], "alice@contoso.com");
    assert_eq!(users[1], "eve`](https://evil.example)\n##[error]x@contoso.com", "JSON carries the value");
    assert!(users[2].is_null(), "a device without a primary user: {json}");
    let md = ok(&repo, &sim, &["plan", "--format", "markdown", "--show-user"]);
    assert!(md.contains(", user alice@contoso.com`"), "{md}");
    assert!(md.contains(", user eve'](https://evil.example)\\n#\\u{23}[error]x@contoso.com`"), "a code span: {md}");

    // The repository's setting does the same, and a saved plan keeps the user for its comment.
    let (repo, sim) = users_repo("plan:\n  showUser: true\n");
    assert!(ok(&repo, &sim, &["plan", "--out", "plan.json"]).contains("user alice@contoso.com"));
    let shown = stdout(&repo.cmd().args(["show", "plan.json", "--format", "markdown"]).output().expect("show"));
    assert!(shown.contains(", user alice@contoso.com`"), "{shown}");

    // Anything but true or false is an error on its line.
    repo.write("reconcile.yaml", "plan:\n  showUser: sometimes\n");
    let out = repo.cmd().arg("validate").output().expect("validate");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("reconcile.yaml:2"), "{}", stderr(&out));
}

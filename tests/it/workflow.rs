//! The pull-request workflow: saved plans, Markdown comments, CI outputs, the comment upsert.

use std::sync::{Arc, Mutex};

use crate::common::http::Server;
use crate::common::{Repo, posts, sim, sim_config, stderr, stdout};

/// A repository asking for a Windows laptop (not supported) and an Android phone.
fn mixed_repo() -> Repo {
    let repo = Repo::empty();
    repo.fast_config("");
    let ids = ["4d5e6f7a-8b9c-4d0e-9f1a-2b3c4d5e6f7a", "3fa85f64-5717-4562-b3fc-2c963f66afa6"];
    repo.write("manifests/a.yaml", crate::common::manifest_for("mixed", &ids));
    repo
}

fn plan_out(repo: &Repo, sim: &intune_reconcile::sim::SimHandle) {
    let out = repo.cmd_on(sim).args(["plan", "--out", "plan.json"]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_saved_plan_is_applied_exactly_once_and_shown_in_every_format() {
    let repo = Repo::from_examples();
    repo.fast_config("");
    let sim = sim(sim_config());
    plan_out(&repo, &sim);
    for (format, want) in [
        // The corporate iPhone's reset removes its passcode: counted on its own.
        ("text", "Plan: 6 to reset, 1 to remove a passcode."),
        ("json", "\"to_reset\": 7,\n    \"reset_passcode\": 6,\n    \"remove_passcode\": 1,"),
        ("markdown", "**Plan: 6 to reset, 1 to remove a passcode.**"),
    ] {
        let out = repo.cmd().args(["show", "plan.json", "--format", format]).output().expect("run");
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).contains(want), "{format}: {}", stdout(&out));
    }
    let shown = stdout(&repo.cmd().args(["show", "plan.json"]).output().expect("run"));
    assert!(shown.contains("+ remove passcode serialNumber=F2LXK0QAHG7F"), "{shown}");
    // --plan is the approval: no terminal and no --auto-approve needed.
    let out = repo.cmd_on(&sim).args(["apply", "--plan", "plan.json"]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(posts(&sim).len(), 7);
    // Applying the same plan again sends nothing: its resets are recorded, by this very plan.
    let again = repo.cmd_on(&sim).args(["apply", "--plan", "plan.json"]).output().expect("run");
    assert!(again.status.success(), "{}{}", stdout(&again), stderr(&again));
    assert_eq!(posts(&sim).len(), 7);
}

fn id(i: usize) -> String {
    crate::common::android_id(i)
}

fn posts_to(sim: &intune_reconcile::sim::SimHandle, i: usize) -> usize {
    posts(sim).iter().filter(|p| p.path.contains(&id(i))).count()
}

// Two pull requests planned from the same ledger, merged one after the other: each reviewed plan
// executes fully, and neither sends anything of the other.
#[test]
fn two_plans_from_one_ledger_applied_one_after_the_other_both_execute_fully() {
    let (repo, sim) = crate::common::bare_repo_and_android_sim(4);
    let a = crate::common::manifest_for("team-a", &[&id(0), &id(1)]);
    let b = crate::common::manifest_for("team-b", &[&id(2), &id(3)]);
    plan_two_branches(&repo, &sim, &a, &b);
    // Both merged; a comment added to A after its review changes nothing it would do.
    repo.write("manifests/a.yaml", format!("{a}# reviewed in PR 1\n"));
    let out = repo.cmd_on(&sim).args(["apply", "--plan", "a.json"]).output().expect("run");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!((posts_to(&sim, 0), posts_to(&sim, 1), posts_to(&sim, 2), posts_to(&sim, 3)), (1, 1, 0, 0));
    let out = repo.cmd_on(&sim).args(["apply", "--plan", "b.json"]).output().expect("run");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!((posts_to(&sim, 0), posts_to(&sim, 1), posts_to(&sim, 2), posts_to(&sim, 3)), (1, 1, 1, 1));
    // Nothing left: every reviewed reset ran once.
    repo.cmd_on(&sim).args(["plan", "--detailed-exitcode"]).assert().code(0);
}

fn plan_out_to(repo: &Repo, sim: &intune_reconcile::sim::SimHandle, file: &str) {
    let out = repo.cmd_on(sim).args(["plan", "--out", file]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Two pull requests from the same main: `a.json` planned with only manifest `a`, `b.json` with
/// only `b` (left in place), both from the same ledger.
fn plan_two_branches(repo: &Repo, sim: &intune_reconcile::sim::SimHandle, a: &str, b: &str) {
    repo.write("manifests/a.yaml", a);
    plan_out_to(repo, sim, "a.json");
    std::fs::remove_file(repo.path().join("manifests/a.yaml")).expect("rm");
    repo.write("manifests/b.yaml", b);
    plan_out_to(repo, sim, "b.json");
}

// A reviewed reset whose device another pull request reset meanwhile is refused alone; the rest
// of the plan runs.
#[test]
fn a_reviewed_reset_whose_device_was_reset_by_another_pr_meanwhile_is_refused_alone() {
    let (repo, sim) = crate::common::bare_repo_and_android_sim(3);
    let a = crate::common::manifest_for("team-a", &[&id(0), &id(1)]);
    let b = crate::common::manifest_for("team-b", &[&id(1), &id(2)]);
    plan_two_branches(&repo, &sim, &a, &b);
    repo.write("manifests/a.yaml", &a);
    repo.cmd_on(&sim).args(["apply", "--plan", "b.json"]).assert().success();
    let out = repo.cmd_on(&sim).args(["apply", "--plan", "a.json"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "a refused reset fails the run");
    let text = stdout(&out);
    assert!(
        text.contains("reviewed, but the device was reset since the plan was made, by manifest `team-b`"),
        "{text}"
    );
    assert_eq!((posts_to(&sim, 0), posts_to(&sim, 1), posts_to(&sim, 2)), (1, 1, 1), "device 1 was reset once");
}

// Reviewed resets whose premise changed (manifest edited, device gone) are refused one by one,
// named with the reason; what was not in the plan is never sent.
#[test]
fn changed_premises_refuse_single_actions_and_nothing_outside_the_plan_is_sent() {
    let (repo, sim) = crate::common::bare_repo_and_android_sim(4);
    repo.write("manifests/a.yaml", crate::common::manifest_for("team-a", &[&id(0), &id(1)]));
    repo.write("manifests/c.yaml", crate::common::manifest_for("team-c", &[&id(2)]));
    plan_out_to(&repo, &sim, "plan.json");
    // After the review: team-c bumps its round (a new action), and a manifest nobody reviewed
    // appears.
    repo.write(
        "manifests/c.yaml",
        crate::common::manifest_for("team-c", &[&id(2)]).replace("spec:\n", "spec:\n  round: 2\n"),
    );
    repo.write("manifests/d.yaml", crate::common::manifest_for("team-d", &[&id(3)]));
    // And someone applied team-a's manifest directly, outside the plan.
    repo.cmd_on(&sim).args(["apply", "--auto-approve", "manifests/a.yaml"]).assert().success();
    let out = repo.cmd_on(&sim).args(["apply", "--plan", "plan.json"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("reviewed, but the manifests no longer ask for it"), "{text}");
    assert_eq!(
        text.matches("reviewed, but it was recorded since the plan was made (status accepted)").count(),
        2,
        "{text}"
    );
    assert_eq!((posts_to(&sim, 0), posts_to(&sim, 1), posts_to(&sim, 2), posts_to(&sim, 3)), (1, 1, 0, 0));

    // Another ledger (a new lineage) refuses the whole plan: nothing it says holds there.
    std::fs::remove_dir_all(repo.path().join(".reconcile")).expect("rm ledger");
    repo.init();
    let out = repo.cmd_on(&sim).args(["apply", "--plan", "plan.json"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("it was made on another ledger (lineage"), "{}", stderr(&out));
    assert_eq!(posts(&sim).len(), 2);

    // An offline plan has no devices: it cannot be applied.
    repo.cmd().args(["plan", "--offline", "--out", "offline.json"]).assert().success();
    let out = repo.cmd_on(&sim).args(["apply", "--plan", "offline.json"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("was made offline"), "{}", stderr(&out));
}

// A device that no longer resolves as reviewed is refused alone; the others go.
#[test]
fn a_reviewed_device_that_resolves_differently_is_refused_alone() {
    let repo = Repo::from_examples();
    repo.fast_config("");
    let first = sim(sim_config());
    plan_out(&repo, &first);
    drop(first);
    let mut cfg = sim_config();
    cfg.devices.retain(|d| d["serialNumber"] != "R58M12345AB");
    let second = sim(cfg);
    let out = repo.cmd_on(&second).args(["apply", "--plan", "plan.json"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("reviewed, but no device has serialNumber `R58M12345AB`"), "{}", stdout(&out));
    assert_eq!(posts(&second).len(), 6);
}

// Any plan fits in one GitHub comment.
#[test]
fn the_markdown_of_twenty_thousand_actions_fits_a_comment() {
    let repo = Repo::empty();
    for m in 0..200 {
        let mut s = format!(
            "apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: big-{m:03}\nspec:\n  devices:\n"
        );
        for d in 0..100 {
            s.push_str(&format!("    - serialNumber: SN{:06}\n", m * 100 + d));
        }
        repo.write(&format!("manifests/big-{m:03}.yaml"), s);
    }
    let out = repo.cmd().args(["plan", "--offline", "--format", "markdown"]).output().expect("run");
    assert!(out.status.success());
    let md = stdout(&out);
    assert!(md.chars().count() < intune_reconcile::render::markdown::GITHUB_LIMIT, "{} chars", md.chars().count());
    assert!(md.starts_with(intune_reconcile::render::markdown::MARKER));
    assert!(md.contains("Large change: 20000 passcodes will be reset"));
    assert!(md.contains("more actions in") && md.contains("are not shown"), "the cut is said");
    assert!(md.trim_end().ends_with("**Plan: 20000 to reset.**"));
}

// Long user-written values in warnings cannot push the comment past the limit.
#[test]
fn huge_values_in_warnings_stay_within_the_comment_limit() {
    let repo = Repo::empty();
    let long = "X".repeat(200_000);
    repo.fast_config("policy:\n  ticketPattern: '^INC-[0-9]+$'\n");
    for m in 0..4 {
        repo.write(
            &format!("manifests/m{m}.yaml"),
            format!("apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: m{m}\n  ticket: {long}\nspec:\n  devices:\n    - serialNumber: {long}{m}\n"),
        );
    }
    let out = repo.cmd().args(["plan", "--offline", "--format", "markdown"]).output().expect("run");
    let md = stdout(&out);
    assert!(md.contains("policy violation"), "{}", &md[..500.min(md.len())]);
    assert!(md.chars().count() < intune_reconcile::render::markdown::GITHUB_LIMIT, "{} chars", md.chars().count());
}

#[test]
fn warnings_come_first_in_the_markdown() {
    let repo = mixed_repo();
    let sim = sim(sim_config());
    let out = repo.cmd_on(&sim).args(["plan", "--format", "markdown"]).output().expect("run");
    let md = stdout(&out);
    let warning = md.find("> [!WARNING]").expect("a warning block");
    let table = md.find("| reset passcode |").expect("a summary table");
    assert!(warning < table);
    assert!(
        md.contains("**1 device not supported**, never sent: `id=4d5e6f7a-8b9c-4d0e-9f1a-2b3c4d5e6f7a` in `mixed`"),
        "{md}"
    );
    assert!(md.contains("| 1 | 0 | 0 | 1 | 0 | 0 | 0 | 0 | 0 |"), "{md}");
}

#[test]
fn github_actions_get_a_job_summary_and_annotations() {
    let repo = Repo::empty();
    repo.fast_config("");
    repo.write("manifests/a.yaml", crate::common::manifest_for("mixed", &["4d5e6f7a-8b9c-4d0e-9f1a-2b3c4d5e6f7a"]));
    repo.write("summary.md", "previous step\n");
    let sim = sim(sim_config());
    let out = repo
        .cmd_on(&sim)
        .arg("plan")
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", repo.path().join("summary.md"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let summary = repo.read("summary.md");
    assert!(summary.starts_with("previous step\n<!-- intune-reconcile:plan -->"), "appended: {summary}");
    assert!(
        stderr(&out).contains(
            "::warning file=manifests/a.yaml,line=7,col=11::id=4d5e6f7a-8b9c-4d0e-9f1a-2b3c4d5e6f7a is blocked"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn apply_reports_json_and_junit() {
    let repo = mixed_repo();
    let sim = sim(sim_config());
    let out = repo
        .cmd_on(&sim)
        .args(["apply", "--auto-approve", "--format", "json", "--junit", "junit.xml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "a blocked device fails the run");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is only JSON");
    assert_eq!(json["format_version"], 2);
    assert_eq!(json["summary"]["accepted"], 1);
    assert_eq!(json["summary"]["blocked"], 1);
    let statuses: Vec<&str> =
        json["actions"].as_array().expect("actions").iter().filter_map(|a| a["status"].as_str()).collect();
    assert_eq!(statuses.len(), 2);
    assert!(statuses.contains(&"accepted") && statuses.contains(&"blocked"));
    assert!(stderr(&out).contains("Plan: 1 to reset"), "the plan goes to stderr");
    let junit = repo.read("junit.xml");
    assert!(
        junit.contains("<testsuite name=\"reconcile apply\" tests=\"2\" skipped=\"1\" errors=\"0\" failures=\"0\">"),
        "{junit}"
    );
    assert_eq!(junit.matches("<testcase ").count(), 2);
    // The skipped case is the blocked Windows laptop, not the phone that was reset.
    let laptop = junit
        .split("<testcase ")
        .find(|c| c.contains("4d5e6f7a-8b9c-4d0e-9f1a-2b3c4d5e6f7a"))
        .expect("the laptop's case");
    let laptop = laptop.split("</testcase>").next().unwrap_or_default();
    assert!(laptop.contains("<skipped message="), "{laptop}");
}

/// Comments as the fake GitHub keeps them: id, body, author login.
type Comments = Arc<Mutex<Vec<(u64, String, String)>>>;

/// A running fake of the GitHub REST API.
struct FakeGithub {
    url: String,
    comments: Comments,
    /// While set, `GET /user` answers 500.
    user_down: Arc<std::sync::atomic::AtomicBool>,
    server: Server,
}

/// Who a token acts as, as GitHub sees it: `ghs_…` is a workflow's installation token (the
/// `github-actions[bot]` user; `GET /user` refuses it), `ghp_NAME` a personal token of NAME.
fn author_of(headers: &axum::http::HeaderMap) -> (String, &'static str) {
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    match token.strip_prefix("Bearer ghp_") {
        Some(name) => (name.to_owned(), "User"),
        None => ("github-actions[bot]".to_owned(), "Bot"),
    }
}

/// A fake of the GitHub REST API: issue comments in memory, with their authors.
fn fake_github() -> FakeGithub {
    use axum::Json;
    use axum::extract::{Path, Query, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, patch};
    use std::collections::HashMap;
    let db: Comments = Arc::default();
    let user_down: Arc<std::sync::atomic::AtomicBool> = Arc::default();
    let down = user_down.clone();
    let app = axum::Router::new()
        .route(
            "/user",
            get(move |headers: HeaderMap| async move {
                if down.load(std::sync::atomic::Ordering::SeqCst) {
                    return (StatusCode::INTERNAL_SERVER_ERROR, Json(serde_json::json!({"message": "Server Error"})));
                }
                match author_of(&headers) {
                    (login, "User") => (StatusCode::OK, Json(serde_json::json!({"login": login, "type": "User"}))),
                    _ => (
                        StatusCode::FORBIDDEN,
                        Json(serde_json::json!({"message": "Resource not accessible by integration"})),
                    ),
                }
            }),
        )
        .route(
            "/repos/{owner}/{repo}/issues/{pr}/comments",
            get(|State(db): State<Comments>, Query(q): Query<HashMap<String, usize>>| async move {
                // GitHub pages: `per_page` (default 30, at most 100) from `page` 1.
                let per_page = q.get("per_page").copied().unwrap_or(30).min(100);
                let page = q.get("page").copied().unwrap_or(1).max(1);
                let list: Vec<serde_json::Value> = db
                    .lock()
                    .expect("db")
                    .iter()
                    .skip((page - 1) * per_page)
                    .take(per_page)
                    .map(|(id, body, login)| {
                        let kind = if login.ends_with("[bot]") { "Bot" } else { "User" };
                        serde_json::json!({"id": id, "body": body, "user": {"login": login, "type": kind}})
                    })
                    .collect();
                Json(list)
            })
            .post(
                |State(db): State<Comments>, headers: HeaderMap, Json(b): Json<serde_json::Value>| async move {
                    let mut db = db.lock().expect("db");
                    let id = 1000 + db.len() as u64;
                    db.push((id, b["body"].as_str().unwrap_or_default().to_owned(), author_of(&headers).0));
                    (StatusCode::CREATED, Json(serde_json::json!({"id": id})))
                },
            ),
        )
        .route(
            "/repos/{owner}/{repo}/issues/comments/{id}",
            patch(
                |State(db): State<Comments>,
                 Path((_, _, id)): Path<(String, String, u64)>,
                 Json(b): Json<serde_json::Value>| async move {
                    let mut db = db.lock().expect("db");
                    if let Some(c) = db.iter_mut().find(|(i, _, _)| *i == id) {
                        c.1 = b["body"].as_str().unwrap_or_default().to_owned();
                    }
                    Json(serde_json::json!({"id": id}))
                },
            ),
        )
        .with_state(db.clone());
    let server = Server::start(app);
    FakeGithub { url: server.url.clone(), comments: db, user_down, server }
}

/// `reconcile comment` in GitHub Actions with `token`, against the fake.
fn comment(repo: &Repo, url: &str, token: &str) -> std::process::Output {
    repo.cmd()
        .args(["comment", "--plan", "plan.json"])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_TOKEN", token)
        .env("GITHUB_REPOSITORY", "contoso/devices")
        .env("GITHUB_API_URL", url)
        .env("GITHUB_EVENT_PATH", repo.path().join("event.json"))
        .output()
        .expect("run")
}

#[test]
fn the_plan_comment_is_created_once_then_updated() {
    let repo = Repo::from_examples();
    repo.cmd().args(["plan", "--offline", "--out", "plan.json"]).assert().success();
    repo.write("event.json", r#"{"action":"synchronize","pull_request":{"number":42}}"#);
    let FakeGithub { url, comments: db, server, .. } = fake_github();
    db.lock().expect("db").push((7, "an unrelated review comment".into(), "alice".into()));
    let first = comment(&repo, &url, "ghs_test_token");
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stdout(&first).contains("created plan comment 1001 on pull request #42"), "{}", stdout(&first));
    let second = comment(&repo, &url, "ghs_test_token");
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(stdout(&second).contains("updated plan comment 1001"), "{}", stdout(&second));
    let comments = db.lock().expect("db").clone();
    assert_eq!(comments.len(), 2, "never a second plan comment");
    assert!(comments[1].1.starts_with(intune_reconcile::render::markdown::MARKER));
    assert!(!stdout(&second).contains("ghs_test_token") && !stderr(&second).contains("ghs_test_token"));
    drop(server);
}

// A GitHub answer was read whole, however long. One past its cap is refused naming the host and
// the cap, and no comment is written.
#[test]
fn a_github_answer_over_its_cap_is_refused() {
    let repo = Repo::from_examples();
    repo.cmd().args(["plan", "--offline", "--out", "plan.json"]).assert().success();
    repo.write("event.json", r#"{"action":"synchronize","pull_request":{"number":42}}"#);
    let FakeGithub { url, comments: db, server, .. } = fake_github();
    db.lock().expect("db").push((7, "x".repeat(17 * 1024 * 1024), "alice".into()));
    let out = comment(&repo, &url, "ghs_test_token");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("GitHub API listing comments failed: 127.0.0.1 sent more than 16 MiB; refusing the answer"),
        "{err}"
    );
    assert_eq!(db.lock().expect("db").len(), 1, "no comment written");
    drop(server);
}

// Regression: anyone on a pull request could post a comment starting with
// the invisible marker before the first run; the tool then edited *their* comment, which they
// could edit back into a fake plan. Only the token's own comments are adopted.
#[test]
fn a_marker_in_someone_elses_comment_is_never_adopted() {
    let repo = Repo::from_examples();
    repo.cmd().args(["plan", "--offline", "--out", "plan.json"]).assert().success();
    repo.write("event.json", r#"{"pull_request":{"number":42}}"#);
    let FakeGithub { url, comments: db, server, .. } = fake_github();
    let marker = intune_reconcile::render::markdown::MARKER;
    let planted = format!("{marker}\n**Plan: 0 to reset.** Nothing to see here.");
    db.lock().expect("db").push((7, planted.clone(), "mallory".into()));
    let first = comment(&repo, &url, "ghs_test_token");
    assert!(stdout(&first).contains("created plan comment"), "{}", stdout(&first));
    let second = comment(&repo, &url, "ghs_test_token");
    assert!(stdout(&second).contains("updated plan comment 1001"), "{}", stdout(&second));
    let comments = db.lock().expect("db").clone();
    assert_eq!(comments[0], (7, planted, "mallory".into()), "mallory's comment is untouched");
    assert_eq!(comments.len(), 2);
    // A personal token acts as its user (GET /user): the bot's comment is not that user's.
    let third = comment(&repo, &url, "ghp_ops-bot");
    assert!(stdout(&third).contains("created plan comment 1002"), "{}", stdout(&third));
    let fourth = comment(&repo, &url, "ghp_ops-bot");
    assert!(stdout(&fourth).contains("updated plan comment 1002"), "{}", stdout(&fourth));
    drop(server);
}

// Ownership is both halves: the marker and the author. The bot's own comment without the marker
// (a note it left) is never taken for the plan; the plan comment is found on a later page; and
// when GitHub cannot say who a personal token is, nothing of anyone's is edited.
#[test]
fn the_plan_comment_is_the_tokens_own_with_the_marker_on_any_page() {
    let repo = Repo::from_examples();
    repo.cmd().args(["plan", "--offline", "--out", "plan.json"]).assert().success();
    repo.write("event.json", r#"{"pull_request":{"number":42}}"#);
    let FakeGithub { url, comments: db, user_down, server } = fake_github();
    let marker = intune_reconcile::render::markdown::MARKER;
    {
        let mut db = db.lock().expect("db");
        db.push((1, "a note from the bot, no marker".into(), "github-actions[bot]".into()));
        for i in 0..140 {
            db.push((10 + i, format!("review comment {i}"), "alice".into()));
        }
        db.push((500, format!("{marker}\nthe plan of an earlier push"), "github-actions[bot]".into()));
    }
    let out = comment(&repo, &url, "ghs_test_token");
    assert!(stdout(&out).contains("updated plan comment 500"), "found on page 2: {}", stdout(&out));
    let comments = db.lock().expect("db").clone();
    assert_eq!(comments.len(), 142, "no new comment");
    assert_eq!(comments[0].1, "a note from the bot, no marker", "the note without the marker is untouched");
    // A personal token whose user GitHub cannot name (GET /user fails): a new comment, and the
    // ops-bot's earlier plan comment is not edited on a guess.
    db.lock().expect("db").push((600, format!("{marker}\nops-bot's plan"), "ops-bot".into()));
    user_down.store(true, std::sync::atomic::Ordering::SeqCst);
    let out = comment(&repo, &url, "ghp_ops-bot");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("created plan comment"), "{}", stdout(&out));
    let comments = db.lock().expect("db").clone();
    assert!(comments.iter().any(|c| c.0 == 600 && c.1.ends_with("ops-bot's plan")), "untouched");
    drop(server);
}

// `comment --pr N` names the pull request when no event says it (a manual run, another trigger).
#[test]
fn comment_pr_names_the_pull_request_without_an_event() {
    let repo = Repo::from_examples();
    repo.cmd().args(["plan", "--offline", "--out", "plan.json"]).assert().success();
    let FakeGithub { url, comments: db, server, .. } = fake_github();
    let run = |args: &[&str]| {
        repo.cmd()
            .args(["comment", "--plan", "plan.json"])
            .args(args)
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_TOKEN", "ghs_test_token")
            .env("GITHUB_REPOSITORY", "contoso/devices")
            .env("GITHUB_API_URL", &url)
            .output()
            .expect("run")
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no --pr and no GITHUB_EVENT_PATH"), "{}", stderr(&out));
    assert!(db.lock().expect("db").is_empty());
    let out = run(&["--pr", "77"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("on pull request #77"), "{}", stdout(&out));
    assert_eq!(db.lock().expect("db").len(), 1);
    drop(server);
}

/// A pipeline file as a JSON value.
fn pipeline(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(crate::common::examples().join("ci").join(name)).expect("read");
    serde_saphyr::from_str(&text).expect("valid YAML")
}

#[test]
fn the_example_pipelines_are_complete() {
    let gh = pipeline("github-actions.yml");
    // Every pull request reports the plan check (a `paths:` filter would leave a required check
    // pending for ever on the others).
    assert!(gh["on"].as_object().expect("on").contains_key("pull_request"), "{gh}");
    assert!(gh["on"]["pull_request"]["paths"].is_null(), "{gh}");
    assert_eq!(gh["on"]["push"]["branches"][0], "main");
    let plan = &gh["jobs"]["plan"];
    assert_eq!(plan["permissions"]["id-token"], "write");
    assert_eq!(plan["permissions"]["pull-requests"], "write");
    let runs = |job: &serde_json::Value| -> String {
        job["steps"].as_array().expect("steps").iter().filter_map(|s| s["run"].as_str()).collect::<Vec<_>>().join("\n")
    };
    assert!(runs(plan).contains(
        "reconcile plan --base \"origin/$GITHUB_BASE_REF\" --out plan.json --detailed-exitcode --state \"$LEDGER_URL\""
    ));
    assert_eq!(plan["steps"][0]["with"]["fetch-depth"], 0, "--base needs the history");
    assert!(runs(plan).contains("reconcile comment --plan plan.json"));
    // The exit code is kept so that the comment is written whatever the plan found.
    assert!(runs(plan).contains("|| code=$?") && !runs(plan).contains("|| [ $? -eq 2 ]"), "{}", runs(plan));
    let apply = &gh["jobs"]["apply"];
    // GitHub cancels an older pending run of a concurrency group: applies must not share one.
    assert!(apply["concurrency"].is_null(), "{apply}");
    assert!(runs(apply).contains("reconcile apply --plan plan.json"));
    assert!(runs(apply).contains("--state \"$LEDGER_URL\"") && runs(apply).contains("--lock-timeout"));
    // Merged but never applied is noticed: an hourly drift job fails on pending resets.
    assert!(gh["on"]["schedule"][0]["cron"].is_string());
    let drift = &gh["jobs"]["drift"];
    assert!(runs(drift).contains("reconcile plan --detailed-exitcode"), "{drift}");
    // Refresh has its own group: it never holds up or cancels an apply.
    let refresh = &gh["jobs"]["refresh"];
    let group = refresh["concurrency"]["group"].as_str().expect("refresh group");
    assert!(group.contains("refresh"), "{group}");
    // Hourly jobs never wait for the apply environment's reviewers; applying drift does.
    for job in ["drift", "refresh"] {
        assert_eq!(gh["jobs"][job]["environment"], "intune-observe", "{job}");
    }
    assert_eq!(gh["jobs"]["drift-apply"]["environment"], "intune-apply");
    assert!(runs(&gh["jobs"]["drift-apply"]).contains("reconcile apply --auto-approve"));
    assert!(!runs(apply).contains("--auto-approve"), "{}", runs(apply));
    // The ledger is used in place, never downloaded and uploaded (a dead runner would lose intents).
    let url = gh["env"]["LEDGER_URL"].as_str().expect("LEDGER_URL");
    assert!(url.starts_with("https://") && url.contains(".blob.core.windows.net/"), "{url}");
    for pipeline_text in [
        serde_json::to_string(&gh).expect("json"),
        serde_json::to_string(&pipeline("azure-pipelines.yml")).expect("json"),
    ] {
        assert!(!pipeline_text.contains("az storage blob download"), "{pipeline_text}");
        assert!(!pipeline_text.contains("az storage blob upload"), "{pipeline_text}");
    }

    let az = pipeline("azure-pipelines.yml");
    let stages = az["stages"].as_array().expect("stages");
    assert_eq!(stages.len(), 3);
    assert_eq!(stages[2]["stage"], "Drift");
    let text = serde_json::to_string(&az).expect("json");
    for want in [
        "reconcile plan --base \\\"$base\\\" --out plan.json",
        "fetchDepth",
        "reconcile apply --plan \\\"$(Pipeline.Workspace)/reviewed/plan.json\\\"",
        "reconcile plan --detailed-exitcode",
        "DownloadPipelineArtifact@2",
        "--state \\\"$(LEDGER_URL)\\\"",
        "AZURE_FEDERATED_TOKEN_FILE",
        "PublishTestResults@2",
    ] {
        assert!(text.contains(want), "{want}");
    }
    assert_eq!(stages[1]["lockBehavior"], "sequential");
    // After merge, only the reviewed plan is applied.
    let apply_stage = serde_json::to_string(&stages[1]).expect("json");
    assert!(!apply_stage.contains("--auto-approve"), "{apply_stage}");
    assert!(!text.contains("|| [ $? -eq 2 ]"), "exit codes are kept, not acted on before the comment");
    // The operator's policy floor comes from the CI system, in every job that plans or applies.
    for (name, job) in gh["jobs"].as_object().expect("jobs") {
        assert!(runs(job).contains("RECONCILE_POLICY=$RUNNER_TEMP/reconcile-policy.yaml"), "{name}");
    }
    let az_text = std::fs::read_to_string(crate::common::examples().join("ci/azure-pipelines.yml")).expect("read");
    assert_eq!(
        az_text.matches("- task: AzureCLI@2").count(),
        az_text.matches("RECONCILE_POLICY: $(policy.secureFilePath)").count()
    );
    assert_eq!(
        az_text.matches("- task: AzureCLI@2").count(),
        az_text.matches("secureFile: reconcile-policy.yaml").count()
    );
}

#[test]
fn the_deployment_examples_run_the_reconciler() {
    let k8s_text = std::fs::read_to_string(crate::common::examples().join("deploy/kubernetes.yaml")).expect("read");
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&k8s_text).expect("valid YAML");
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").expect("a Deployment");
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(deployment["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"], "true");
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"].as_array().expect("args");
    assert_eq!(args[0], "watch");
    assert!(args.iter().any(|a| a == "--apply"));
    let unit = std::fs::read_to_string(crate::common::examples().join("deploy/reconcile.service")).expect("read");
    assert!(unit.contains("ExecStart=/usr/local/bin/reconcile watch --apply"));
}

// A pull request adding a valid manifest is judged on its own change, even when an old entry on
// the main branch is blocked (a Windows laptop here).
#[test]
fn plan_base_speaks_for_the_pull_requests_own_change() {
    let repo = mixed_repo_with_only_the_laptop();
    repo.git(&["init", "-q"]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-qm", "main"]);
    repo.git(&["checkout", "-qb", "pr-7"]);
    repo.write(
        "manifests/new.yaml",
        crate::common::manifest_for("new-phone", &["3fa85f64-5717-4562-b3fc-2c963f66afa6"]),
    );
    let sim = sim(sim_config());

    // The whole repository: the old blocked entry makes it exit 1.
    repo.cmd_on(&sim).args(["plan", "--detailed-exitcode"]).assert().code(1);
    // The pull request's own change: one reset pending, exit 2.
    let out = repo
        .cmd_on(&sim)
        .args(["plan", "--base", "main", "--detailed-exitcode", "--out", "pr.json"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("manifest new-phone (manifests/new.yaml)"), "{text}");
    assert!(!text.contains("manifest laptop"), "the old manifest is not detailed: {text}");
    assert!(text.contains("Outside this change (other manifests, not detailed here): 1 blocked."), "{text}");
    let md = stdout(&repo.cmd_on(&sim).args(["plan", "--base", "main", "--format", "markdown"]).output().expect("run"));
    assert!(md.contains("**Plan: 1 to reset.**") && md.contains("Outside this change"), "{md}");
    assert!(!md.contains("[!WARNING]"), "the old entry's warning is not this PR's: {md}");
    // The saved plan holds the change only: applying it sends the new reset and nothing else.
    let out = repo.cmd_on(&sim).args(["apply", "--plan", "pr.json"]).output().expect("run");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(posts(&sim).len(), 1);

    // A base git cannot find is a clear error.
    let out = repo.cmd_on(&sim).args(["plan", "--base", "no-such-branch"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot find where this change forks from `no-such-branch`"), "{}", stderr(&out));
}

fn mixed_repo_with_only_the_laptop() -> Repo {
    let repo = Repo::empty();
    repo.fast_config("");
    repo.write(
        "manifests/laptop.yaml",
        crate::common::manifest_for("laptop", &["4d5e6f7a-8b9c-4d0e-9f1a-2b3c4d5e6f7a"]),
    );
    repo.write(".gitignore", ".reconcile/\n*.json\n");
    repo
}

// Renaming a manifest with `formerNames` resets nothing again; without it, the new name's
// resets of devices an orphan reset today are blocked as a likely rename.
#[test]
fn renames_with_former_names_send_nothing_and_without_are_blocked() {
    let (repo, sim) = crate::common::bare_repo_and_android_sim(2);
    let old = crate::common::manifest_for("old-name", &[&id(0), &id(1)]);
    repo.write("manifests/a.yaml", &old);
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().success();
    assert_eq!(posts(&sim).len(), 2);

    repo.write("manifests/a.yaml", old.replace("old-name", "new-name"));
    let out = repo.cmd_on(&sim).arg("plan").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("likely a rename: manifest `old-name` (no longer in the manifests) reset this device at")
            && stdout(&out).contains("add `formerNames: [old-name]` under metadata"),
        "{}",
        stdout(&out)
    );
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().code(1);
    assert_eq!(posts(&sim).len(), 2, "a likely rename is never sent");

    let renamed = old.replace("  name: old-name\n", "  name: new-name\n  formerNames: [old-name]\n");
    repo.write("manifests/a.yaml", &renamed);
    let out = repo.cmd_on(&sim).args(["plan", "--detailed-exitcode", "--show-done"]).output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("\n      recorded as `old-name`, a former name\n"), "{}", stdout(&out));
    assert!(stdout(&out).contains("Plan: 0 to reset, 2 already done, 0 orphaned."), "{}", stdout(&out));
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().success();
    assert_eq!(posts(&sim).len(), 2, "the rename sent nothing");

    // A higher round says "reset them again" on purpose: not a rename.
    repo.write("manifests/a.yaml", old.replace("old-name", "other-name").replace("spec:\n", "spec:\n  round: 2\n"));
    repo.cmd_on(&sim).args(["plan", "--detailed-exitcode"]).assert().code(2);
    // A former name that is another manifest's current name is an error.
    repo.write("manifests/b.yaml", renamed.replace("new-name", "third").replace("old-name", "other-name"));
    let out = repo.cmd().arg("validate").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("formerNames `other-name` is the name of the manifest at"), "{}", stderr(&out));
}

// A plan whose first run was cut short (here: one manifest missing from the checkout) is applied
// again: what it sent itself is not "someone else's reset since the review", so the rest goes.
#[test]
fn a_plan_applied_again_sends_what_its_first_run_did_not() {
    let (repo, sim) = crate::common::bare_repo_and_android_sim(1);
    let x = crate::common::manifest_for("team-x", &[&id(0)]);
    let y = crate::common::manifest_for("team-y", &[&id(0)]);
    repo.write("manifests/x.yaml", &x);
    repo.write("manifests/y.yaml", &y);
    plan_out_to(&repo, &sim, "plan.json");
    std::fs::remove_file(repo.path().join("manifests/y.yaml")).expect("rm");
    let out = repo.cmd_on(&sim).args(["apply", "--plan", "plan.json"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "team-y's reset was refused: {}", stdout(&out));
    assert_eq!(posts(&sim).len(), 1);
    repo.write("manifests/y.yaml", &y);
    let out = repo.cmd_on(&sim).args(["apply", "--plan", "plan.json"]).output().expect("run");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(posts(&sim).len(), 2, "both reviewed resets, each once");
    let again = repo.cmd_on(&sim).args(["apply", "--plan", "plan.json"]).output().expect("run");
    assert!(again.status.success(), "{}", stdout(&again));
    assert_eq!(posts(&sim).len(), 2);
}

/// A YAML file of this repository, as JSON.
fn yaml_file(rel: &str) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"))
}

#[test]
fn the_github_action_installs_once_then_runs_the_command() {
    let action = yaml_file("action.yml");
    assert_eq!(action["runs"]["using"], "composite");
    assert_eq!(action["inputs"]["command"]["required"], true);
    for input in ["args", "version"] {
        assert!(action["inputs"][input].is_object(), "input {input}");
    }
    let steps = action["runs"]["steps"].as_array().expect("steps");
    let cache =
        steps.iter().find(|s| s["uses"].as_str().is_some_and(|u| u.starts_with("actions/cache@"))).expect("a cache");
    let key = cache["with"]["key"].as_str().expect("key");
    assert!(key.contains("runner.os") && key.contains("inputs.version"), "{key}");
    let run = steps.iter().find(|s| s["run"].is_string()).expect("a run step");
    assert!(run["run"].as_str().expect("run").contains("scripts/action.sh"));
    assert_eq!(run["env"]["INPUT_COMMAND"], "${{ inputs.command }}", "inputs reach the script as variables");

    // The step's script, on this machine: a fake `cargo` "installs" (links the built binary) the
    // first time; the second run finds it (the cache) and installs nothing.
    let repo = Repo::from_examples();
    let tools = tempfile::tempdir().expect("tempdir");
    let home = tempfile::tempdir().expect("tempdir");
    let log = tools.path().join("cargo.log");
    let real = assert_cmd::cargo::cargo_bin!("reconcile");
    std::fs::write(
        tools.path().join("cargo"),
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\nmkdir -p \"$RECONCILE_HOME/bin\"\nln -s '{}' \"$RECONCILE_HOME/bin/reconcile\"\n",
            log.display(),
            real.display()
        ),
    )
    .expect("fake cargo");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(tools.path().join("cargo"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let github_path = tools.path().join("github_path");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/action.sh");
    for _ in 0..2 {
        let out = std::process::Command::new(&script)
            .current_dir(repo.path())
            .env("PATH", format!("{}:/usr/bin:/bin", tools.path().display()))
            .env("RECONCILE_HOME", home.path())
            .env("GITHUB_PATH", &github_path)
            .env("INPUT_COMMAND", "plan")
            .env("INPUT_ARGS", "--simulate --format json")
            .env_remove("INPUT_VERSION")
            .output()
            .expect("run the action's script");
        assert!(out.status.success(), "{}", stderr(&out));
        // The install is folded into a log group (`::group::` lines); the rest is the command's.
        let text = String::from_utf8_lossy(&out.stdout);
        let json: String = text.lines().filter(|l| !l.starts_with("::")).collect::<Vec<_>>().join("\n");
        let plan: serde_json::Value = serde_json::from_str(&json).expect("the plan, as JSON");
        assert!(plan["summary"]["to_reset"].as_u64().is_some_and(|n| n > 0), "{plan}");
    }
    let installs = std::fs::read_to_string(&log).expect("cargo ran");
    assert_eq!(installs.lines().count(), 1, "installed once: {installs}");
    assert!(installs.starts_with("install --locked --path ") && installs.contains("--bin reconcile"), "{installs}");
    let on_path = std::fs::read_to_string(&github_path).expect("GITHUB_PATH");
    assert!(on_path.lines().all(|l| l == format!("{}/bin", home.path().display())), "{on_path}");
}

#[test]
fn the_azure_pipelines_template_installs_the_tag_once_and_the_example_uses_it() {
    let template = yaml_file("templates/reconcile.yml");
    let params: Vec<&str> =
        template["parameters"].as_array().expect("parameters").iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(params, ["version", "repository"]);
    let steps = template["steps"].as_array().expect("steps");
    assert_eq!(steps[0]["task"], "Cache@2");
    assert!(steps[0]["inputs"]["key"].as_str().expect("key").contains("Agent.OS"));
    let install = steps[1]["script"].as_str().expect("install");
    assert!(
        install.starts_with("cargo install --locked --git") && install.contains("--tag \"${{ parameters.version }}\"")
    );
    assert_eq!(steps[1]["condition"], "ne(variables.RECONCILE_CACHE_RESTORED, 'true')", "skipped when restored");
    assert!(steps[2]["script"].as_str().expect("path").contains("##vso[task.prependpath]"));
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ci/azure-pipelines.yml"),
    )
    .expect("example");
    assert!(!example.contains("cargo install"), "the example installs through the template");
    let example: serde_json::Value = serde_saphyr::from_str(&example).expect("YAML");
    assert_eq!(example["resources"]["repositories"][0]["repository"], "reconcile");
}

/// Azure DevOps pull-request threads in memory: (thread id, comment id, content, author id).
type Threads = Arc<Mutex<Vec<(u64, u64, String, String)>>>;

/// The identity a fake Azure DevOps token acts as.
fn ado_identity(headers: &axum::http::HeaderMap) -> String {
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    format!("id-of-{}", token.trim_start_matches("Bearer "))
}

/// A fake of the Azure DevOps REST API: `connectionData` and one pull request's threads.
fn fake_azure_devops() -> (String, Threads, Server) {
    use axum::Json;
    use axum::extract::{Path, Query, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, patch};
    let db: Threads = Arc::default();
    const THREADS: &str = "/contoso/{project}/_apis/git/repositories/{repo}/pullRequests/{pr}/threads";
    let app = axum::Router::new()
        .route(
            "/contoso/_apis/connectionData",
            get(|headers: HeaderMap| async move {
                Json(serde_json::json!({"authenticatedUser": {"id": ado_identity(&headers), "providerDisplayName": "Build Service"}}))
            }),
        )
        .route(
            THREADS,
            get(|State(db): State<Threads>, Query(q): Query<std::collections::HashMap<String, String>>| async move {
                assert_eq!(q.get("api-version").map(String::as_str), Some("7.1"));
                let value: Vec<serde_json::Value> = db
                    .lock()
                    .expect("db")
                    .iter()
                    .map(|(t, c, content, author)| {
                        serde_json::json!({"id": t, "status": "active", "comments": [{"id": c, "content": content, "author": {"id": author}}]})
                    })
                    .collect();
                Json(serde_json::json!({"value": value, "count": value.len()}))
            })
            .post(|State(db): State<Threads>, headers: HeaderMap, Json(b): Json<serde_json::Value>| async move {
                let mut db = db.lock().expect("db");
                let id = 500 + db.len() as u64;
                let content = b["comments"][0]["content"].as_str().unwrap_or_default().to_owned();
                db.push((id, 1, content, ado_identity(&headers)));
                (StatusCode::OK, Json(serde_json::json!({"id": id, "comments": [{"id": 1}]})))
            }),
        )
        .route(
            "/contoso/{project}/_apis/git/repositories/{repo}/pullRequests/{pr}/threads/{thread}/comments/{comment}",
            patch(
                |State(db): State<Threads>,
                 Path((_, _, _, thread, comment)): Path<(String, String, u64, u64, u64)>,
                 Json(b): Json<serde_json::Value>| async move {
                    let mut db = db.lock().expect("db");
                    match db.iter_mut().find(|(t, c, _, _)| *t == thread && *c == comment) {
                        Some(entry) => {
                            entry.2 = b["content"].as_str().unwrap_or_default().to_owned();
                            (StatusCode::OK, Json(serde_json::json!({"id": comment})))
                        }
                        None => (StatusCode::NOT_FOUND, Json(serde_json::json!({}))),
                    }
                },
            ),
        )
        .with_state(db.clone());
    let server = Server::start(app);
    (server.url.clone(), db, server)
}

/// `reconcile comment` inside Azure Pipelines with `token`, against the fake.
fn ado_comment(repo: &Repo, url: &str, token: &str) -> std::process::Output {
    repo.cmd()
        .args(["comment", "--plan", "plan.json"])
        .env("TF_BUILD", "True")
        .env("SYSTEM_ACCESSTOKEN", token)
        .env("SYSTEM_COLLECTIONURI", format!("{url}/contoso/"))
        .env("SYSTEM_TEAMPROJECTID", "6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c")
        .env("BUILD_REPOSITORY_ID", "7b4a2f0e-1d3c-4e5f-8a9b-0c1d2e3f4a5b")
        .env("SYSTEM_PULLREQUEST_PULLREQUESTID", "17")
        .env_remove("GITHUB_TOKEN")
        .output()
        .expect("run")
}

#[test]
fn the_azure_devops_plan_thread_is_created_once_then_updated_and_never_anyone_elses() {
    let repo = Repo::from_examples();
    repo.cmd().args(["plan", "--offline", "--out", "plan.json"]).assert().success();
    let (url, db, server) = fake_azure_devops();
    // Someone on the pull request posts a thread that starts with the marker, before the first run.
    db.lock().expect("db").push((
        400,
        1,
        format!("{}\nfake plan: nothing to see", intune_reconcile::render::markdown::MARKER),
        "id-of-mallory".into(),
    ));
    let first = ado_comment(&repo, &url, "build-token");
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stdout(&first).contains("created plan thread 501 on pull request 17"), "{}", stdout(&first));
    let second = ado_comment(&repo, &url, "build-token");
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(stdout(&second).contains("updated plan thread 501"), "{}", stdout(&second));
    let threads = db.lock().expect("db").clone();
    assert_eq!(threads.len(), 2, "one thread of ours, never a second");
    assert!(threads[0].2.contains("fake plan"), "the other author's thread is untouched");
    assert!(
        threads[1].2.starts_with(intune_reconcile::render::markdown::MARKER) && threads[1].3 == "id-of-build-token"
    );
    for out in [&first, &second] {
        assert!(!stdout(out).contains("build-token") && !stderr(out).contains("build-token"), "the token never shows");
    }
    // Without the token: what to map, and nothing sent.
    let out = repo
        .cmd()
        .args(["comment", "--plan", "plan.json"])
        .env("TF_BUILD", "True")
        .env_remove("SYSTEM_ACCESSTOKEN")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("SYSTEM_ACCESSTOKEN: $(System.AccessToken)"), "{}", stderr(&out));
    // The macro left as written (the step did not map it) is no token either: nothing is sent.
    let before = db.lock().expect("db").len();
    let out = ado_comment(&repo, &url, "$(System.AccessToken)");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("SYSTEM_ACCESSTOKEN is not set"), "{}", stderr(&out));
    assert_eq!(db.lock().expect("db").len(), before);
    drop(server);
}

/// The folder holding the built `reconcile`, for a CI step's `PATH`.
fn bin_dir() -> std::path::PathBuf {
    assert_cmd::cargo::cargo_bin!("reconcile").parent().expect("a folder").to_path_buf()
}

/// Runs a CI step's shell script in `repo` with `vars` (and nothing else of this process's
/// environment), `reconcile` on `PATH`; returns the exit code and stdout.
fn run_step(repo: &Repo, script: &str, vars: &[(&str, String)]) -> (Option<i32>, String, String) {
    let mut c = std::process::Command::new("bash");
    crate::common::hermetic(&mut c)
        .current_dir(repo.path())
        .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", script])
        .env("PATH", format!("{}:/usr/bin:/bin", bin_dir().display()));
    for (k, v) in vars {
        c.env(k, v);
    }
    let out = c.output().expect("bash runs");
    (out.status.code(), stdout(&out), stderr(&out))
}

/// The examples' repository under git: `main` (the examples' seven resets, merged but never
/// applied), `origin/main` pointing at it, and the ledger created.
fn ci_repo() -> Repo {
    let repo = Repo::from_examples();
    repo.fast_config("");
    repo.write(".gitignore", ".reconcile/\n*.json\nplan.md\njunit.xml\n");
    repo.git(&["init", "-q"]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-qm", "main"]);
    repo.git(&["update-ref", "refs/remotes/origin/main", "HEAD"]);
    repo
}

/// A pull request branch `name` from main adding `manifests/{file}.yaml` with `ids`.
fn pr_branch(repo: &Repo, name: &str, file: &str, ids: &[&str]) {
    repo.git(&["checkout", "-q", "main"]);
    repo.git(&["checkout", "-qb", name]);
    repo.write(&format!("manifests/{file}.yaml"), crate::common::manifest_for(file, ids));
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-qm", name]);
}

/// The inline script of the step of `steps` for which `pick` says yes.
fn script_of(steps: &serde_json::Value, pick: impl Fn(&serde_json::Value) -> bool, key: &[&str]) -> String {
    let step = steps.as_array().expect("steps").iter().find(|s| pick(s)).expect("the step");
    key.iter().fold(step, |v, k| &v[*k]).as_str().expect("a script").to_owned()
}

/// Azure Pipelines' macros (`$(Agent.TempDirectory)`, …), as the agent expands them.
fn expand(script: &str, macros: &[(&'static str, String)]) -> String {
    macros.iter().fold(script.to_owned(), |s, (k, v)| s.replace(&format!("$({k})"), v))
}

const PHONE: &str = "3fa85f64-5717-4562-b3fc-2c963f66afa6";
const LAPTOP: &str = "4d5e6f7a-8b9c-4d0e-9f1a-2b3c4d5e6f7a";

// The examples' own steps, run: a pull request's plan always leaves its comment (a blocked device
// is exactly what the reviewer must see), and after merge Azure Pipelines applies the reviewed
// plan and nothing else merged (here: seven resets merged earlier and never applied).
#[test]
fn the_example_pipelines_comment_every_plan_and_apply_only_what_was_reviewed() {
    let repo = ci_repo();
    let sim = sim(sim_config());
    let sim_vars = |extra: &[(&'static str, String)]| -> Vec<(&'static str, String)> {
        let mut v = vec![("RECONCILE_GRAPH_URL", sim.url()), ("AZURE_AUTHORITY_HOST", sim.url())];
        v.extend(extra.iter().cloned());
        v
    };
    let gh = pipeline("github-actions.yml");
    let gh_plan = script_of(
        &gh["jobs"]["plan"]["steps"],
        |s| s["name"].as_str().is_some_and(|n| n.starts_with("Plan this pull request")),
        &["run"],
    );
    let az = pipeline("azure-pipelines.yml");
    let az_plan =
        script_of(&az["stages"][0]["jobs"][0]["steps"], |s| s["task"] == "AzureCLI@2", &["inputs", "inlineScript"]);
    let deploy = &az["stages"][1]["jobs"][0]["strategy"]["runOnce"]["deploy"]["steps"];
    let az_find_pr = script_of(deploy, |s| s["bash"].is_string(), &["bash"]);
    let az_apply = script_of(deploy, |s| s["task"] == "AzureCLI@2", &["inputs", "inlineScript"]);
    let temp = tempfile::tempdir().expect("tempdir");
    let workspace = tempfile::tempdir().expect("tempdir");
    let macros = [
        ("Agent.TempDirectory", temp.path().display().to_string()),
        ("Pipeline.Workspace", workspace.path().display().to_string()),
        ("System.DefaultWorkingDirectory", repo.path().display().to_string()),
        ("LEDGER_URL", ".reconcile/state.json".to_owned()),
    ];

    // GitHub Actions, pull request 17 (one phone), signed in with the runner's OIDC token.
    pr_branch(&repo, "pr-17", "inc-5000-phone", &[PHONE]);
    repo.write("event.json", r#"{"pull_request":{"number":17}}"#);
    let FakeGithub { url, comments, server, .. } = fake_github();
    let github = |extra: &[(&'static str, String)]| {
        sim_vars(
            &[
                [
                    ("LEDGER_URL", ".reconcile/state.json".to_owned()),
                    ("GITHUB_BASE_REF", "main".to_owned()),
                    ("GITHUB_ACTIONS", "true".to_owned()),
                    ("GITHUB_TOKEN", "ghs_test_token".to_owned()),
                    ("GITHUB_REPOSITORY", "contoso/devices".to_owned()),
                    ("GITHUB_API_URL", url.clone()),
                    ("GITHUB_EVENT_PATH", repo.path().join("event.json").display().to_string()),
                    ("ACTIONS_ID_TOKEN_REQUEST_URL", format!("{}/_github/oidc", sim.url())),
                    ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runner-token".to_owned()),
                    ("AZURE_TENANT_ID", "test-tenant".to_owned()),
                    ("AZURE_CLIENT_ID", "plan-app".to_owned()),
                ]
                .as_slice(),
                extra,
            ]
            .concat(),
        )
    };
    let (code, out, err) = run_step(&repo, &gh_plan, &github(&[]));
    assert_eq!(code, Some(0), "exit 2 (resets pending) passes the check: {out}{err}");
    assert!(out.contains("manifest inc-5000-phone") && out.contains("Outside this change"), "{out}");
    assert!(out.contains("created plan comment 1000 on pull request #17"), "{out}");
    assert!(comments.lock().expect("db")[0].1.starts_with(intune_reconcile::render::markdown::MARKER));

    // A pull request that changes no manifest: the required check passes at once, nothing asked.
    repo.git(&["checkout", "-q", "main"]);
    repo.git(&["checkout", "-qb", "docs"]);
    repo.write("NOTES.md", "no devices here\n");
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-qm", "docs"]);
    let asked = sim.requests().len();
    let (code, out, err) = run_step(&repo, &gh_plan, &github(&[]));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("changes no manifest"), "{out}");
    assert_eq!(sim.requests().len(), asked, "nothing was asked of Graph");
    assert_eq!(comments.lock().expect("db").len(), 1, "no comment");
    drop(server);

    // Azure Pipelines, the same pull request (its plan kept as the artifact Apply downloads).
    let (ado, threads, ado_server) = fake_azure_devops();
    let azure = |pr: &str| {
        sim_vars(&[
            ("TF_BUILD", "True".to_owned()),
            ("SYSTEM_PULLREQUEST_TARGETBRANCH", "refs/heads/main".to_owned()),
            ("SYSTEM_ACCESSTOKEN", "build-token".to_owned()),
            ("SYSTEM_COLLECTIONURI", format!("{ado}/contoso/")),
            ("SYSTEM_TEAMPROJECTID", "6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c".to_owned()),
            ("BUILD_REPOSITORY_ID", "7b4a2f0e-1d3c-4e5f-8a9b-0c1d2e3f4a5b".to_owned()),
            ("SYSTEM_PULLREQUEST_PULLREQUESTID", pr.to_owned()),
            ("idToken", "federated-token-of-the-service-connection".to_owned()),
            ("servicePrincipalId", "plan-app".to_owned()),
            ("tenantId", "test-tenant".to_owned()),
        ])
    };
    repo.git(&["checkout", "-q", "pr-17"]);
    let (code, out, err) = run_step(&repo, &expand(&az_plan, &macros), &azure("17"));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("##vso[task.setvariable variable=planned]true"), "{out}");
    assert!(out.contains("##vso[task.uploadsummary]") && repo.path().join("plan.md").exists(), "{out}");
    assert!(out.contains("created plan thread"), "{out}");
    std::fs::create_dir_all(workspace.path().join("reviewed")).expect("mkdir");
    std::fs::copy(repo.path().join("plan.json"), workspace.path().join("reviewed/plan.json")).expect("the artifact");

    // Pull request 18 names a Windows laptop: the plan exits 1, and the thread is still written
    // (the step then fails the check).
    pr_branch(&repo, "pr-18", "inc-5001-laptop", &[LAPTOP]);
    let (code, out, err) = run_step(&repo, &expand(&az_plan, &macros), &azure("18"));
    assert_eq!(code, Some(1), "a blocked device fails the check: {out}{err}");
    assert!(out.contains("plan thread"), "the thread is written before the step fails: {out}{err}");
    let last = threads.lock().expect("db").last().cloned().expect("a thread");
    assert!(last.2.contains("not supported") && last.2.contains("LAPTOP-FIN-042"), "{}", last.2);

    // Pull request 17 merged. Apply finds it in the merge commit, downloads its plan, and sends the
    // one reviewed reset: not the seven merged earlier and never applied.
    repo.git(&["checkout", "-q", "main"]);
    repo.git(&["merge", "-q", "--no-ff", "pr-17", "-m", "Merged PR 17: inc-5000 lost phone"]);
    let (code, out, err) = run_step(&repo, &az_find_pr, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("##vso[task.setvariable variable=reviewedPr]17"), "{out}");
    let mut apply_vars = azure("17");
    apply_vars.push(("servicePrincipalId", "apply-app".to_owned()));
    let before = posts(&sim).len();
    assert_eq!(before, 0);
    let (code, out, err) = run_step(&repo, &expand(&az_apply, &macros), &apply_vars);
    assert_eq!(code, Some(0), "{out}{err}");
    let sent: Vec<String> = posts(&sim).into_iter().map(|p| p.path).collect();
    assert_eq!(sent.len(), 1, "only the reviewed reset: {sent:?}");
    assert!(sent[0].contains(PHONE), "{sent:?}");
    let report: serde_json::Value = serde_json::from_str(&repo.read("apply.json")).expect("apply.json");
    assert_eq!(report["summary"]["accepted"], 1, "{report}");
    assert!(repo.path().join("junit.xml").exists());
    // What else was merged is the Drift stage's to report: exit 2, an error logged.
    let az_drift =
        script_of(&az["stages"][2]["jobs"][0]["steps"], |s| s["task"] == "AzureCLI@2", &["inputs", "inlineScript"]);
    let (code, out, _) = run_step(&repo, &expand(&az_drift, &macros), &azure("17"));
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("##vso[task.logissue type=error]resets merged to main were never applied"), "{out}");
    assert!(out.contains("Plan: 6 to reset, 1 to remove a passcode"), "{out}");
    drop(ado_server);
}

/// What GitHub Actions tells a job about its run and commit.
const GITHUB_RUN: [(&str, &str); 5] = [
    ("GITHUB_ACTIONS", "true"),
    ("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567"),
    ("GITHUB_RUN_ID", "9001"),
    ("GITHUB_SERVER_URL", "https://github.com"),
    ("GITHUB_REPOSITORY", "contoso/devices"),
];

// The reviewer sees which tenant the plan is for, at which commit it was made and which CI run
// made it, before anything else. The links come from the CI system's variables alone.
#[test]
fn the_comment_names_the_tenant_the_commit_and_the_ci_run() {
    let repo = Repo::from_examples();
    let header = "Tenant `simulated-tenant` · commit [`0123456789ab`](https://github.com/contoso/devices/commit/0123456789abcdef0123456789abcdef01234567) · [GitHub Actions run 9001](https://github.com/contoso/devices/actions/runs/9001)\n";
    let out = repo
        .cmd()
        .args(["plan", "--simulate", "--format", "markdown", "--out", "plan.json"])
        .envs(GITHUB_RUN)
        .env("GITHUB_STEP_SUMMARY", repo.path().join("summary.md"))
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let md = stdout(&out);
    assert!(md.contains(&format!("### intune-reconcile plan (SIMULATED)\n\n{header}\n")), "{md}");
    assert!(repo.read("summary.md").contains(header), "the job summary too");

    repo.write("event.json", r#"{"action":"synchronize","pull_request":{"number":42}}"#);
    let FakeGithub { url, comments: db, server, .. } = fake_github();
    let post = |vars: &[(&str, &str)]| {
        let out = repo
            .cmd()
            .args(["comment", "--plan", "plan.json"])
            .envs(GITHUB_RUN)
            .envs(vars.iter().copied())
            .env("GITHUB_TOKEN", "ghs_test_token")
            .env("GITHUB_API_URL", &url)
            .env("GITHUB_EVENT_PATH", repo.path().join("event.json"))
            .output()
            .expect("run");
        assert!(out.status.success(), "{}", stderr(&out));
        db.lock().expect("db").last().expect("the comment").1.clone()
    };
    let body = post(&[]);
    assert!(
        body.starts_with(&format!(
            "{}\n### intune-reconcile plan (SIMULATED)\n\n{header}\n",
            intune_reconcile::render::markdown::MARKER
        )),
        "{body}"
    );

    // Values that try to make a link elsewhere: the server must be a web address, each path
    // segment is encoded, and the saved plan's commit is a commit id or nothing.
    let mut saved: serde_json::Value = serde_json::from_str(&repo.read("plan.json")).expect("saved plan");
    saved["commit"] = "[0123456](https://evil.example)".into();
    repo.write("plan.json", serde_json::to_vec(&saved).expect("json"));
    let body = post(&[]);
    assert_eq!(
        body.lines().nth(3),
        Some(
            "Tenant `simulated-tenant` · [GitHub Actions run 9001](https://github.com/contoso/devices/actions/runs/9001)"
        ),
        "{body}"
    );
    let show = |vars: &[(&str, &str)]| {
        let out = repo
            .cmd()
            .args(["show", "plan.json", "--format", "markdown"])
            .envs(GITHUB_RUN)
            .envs(vars.iter().copied())
            .output()
            .expect("run");
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).lines().nth(3).expect("the context line").to_owned()
    };
    assert_eq!(
        show(&[("GITHUB_REPOSITORY", "contoso/devices)](https://evil.example")]),
        "Tenant `simulated-tenant` · [GitHub Actions run 9001](https://github.com/contoso/devices%29%5D%28https%3A%2F%2Fevil.example/actions/runs/9001)"
    );
    assert_eq!(show(&[("GITHUB_SERVER_URL", "javascript:alert(1)//github.com")]), "Tenant `simulated-tenant`");
    assert_eq!(show(&[("GITHUB_RUN_ID", "9001](https://evil.example)")]), "Tenant `simulated-tenant`");
    drop(server);

    // Azure Pipelines: the build's page, from the collection and project it names.
    let (url, threads, server) = fake_azure_devops();
    let out = repo
        .cmd()
        .args(["comment", "--plan", "plan.json"])
        .env("TF_BUILD", "True")
        .env("SYSTEM_ACCESSTOKEN", "build-token")
        .env("SYSTEM_COLLECTIONURI", format!("{url}/contoso/"))
        .env("SYSTEM_TEAMPROJECT", "Intune Ops")
        .env("SYSTEM_TEAMPROJECTID", "6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c")
        .env("BUILD_REPOSITORY_ID", "7b4a2f0e-1d3c-4e5f-8a9b-0c1d2e3f4a5b")
        .env("BUILD_BUILDID", "318")
        .env("SYSTEM_PULLREQUEST_PULLREQUESTID", "17")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let body = threads.lock().expect("threads").last().expect("the thread").2.clone();
    assert_eq!(
        body.lines().nth(3),
        Some(format!("Tenant `simulated-tenant` · [Azure Pipelines build 318]({url}/contoso/Intune%20Ops/_build/results?buildId=318)").as_str()),
        "{body}"
    );
    drop(server);
}

/// One manifest with a ticket and a requester, naming three phones by id, serial number and name.
fn vocabulary_repo() -> (Repo, intune_reconcile::sim::SimHandle) {
    let (repo, sim) = crate::common::bare_repo_and_android_sim(3);
    repo.write(
        "manifests/a.yaml",
        format!(
            "apiVersion: intune-reconcile/v1\nkind: PasscodeReset\nmetadata:\n  name: a\n  ticket: INC-1\n  requestedBy: alice@contoso.com\nspec:\n  devices:\n    - id: {}\n    - serialNumber: SN00000001\n    - deviceName: ANDROID-00002\n",
            id(0)
        ),
    );
    (repo, sim)
}

/// Every object key of `v` with where it is, but the names under `manifests` (manifest names).
fn json_keys(v: &serde_json::Value, at: &str, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                if at != "manifests" {
                    out.push(format!("{at}.{k}"));
                }
                json_keys(v, k, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| json_keys(v, at, out)),
        _ => {}
    }
}

/// The `actions` of a JSON document by key.
fn by_key(doc: &serde_json::Value) -> std::collections::BTreeMap<String, serde_json::Value> {
    let actions = doc["actions"].as_array().unwrap_or_else(|| panic!("actions: {doc}"));
    actions.iter().map(|a| (a["key"].as_str().expect("key").to_owned(), a.clone())).collect()
}

// A plan's JSON, the saved plan and the apply report name the same things the same way: one
// vocabulary, so a script reading one reads the others.
#[test]
fn plans_saved_plans_and_apply_reports_speak_one_json_vocabulary() {
    let (repo, sim) = vocabulary_repo();
    let run = |args: &[&str]| {
        let out = repo.cmd_on(&sim).args(args).output().expect("run");
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("stdout is JSON")
    };
    let plan = run(&["plan", "--format", "json", "--show-user", "--out", "plan.json"]);
    let saved: serde_json::Value = serde_json::from_str(&repo.read("plan.json")).expect("saved plan");
    let report = run(&["apply", "--plan", "plan.json", "--format", "json"]);
    assert_eq!(posts(&sim).len(), 3);

    for (what, doc) in [("plan", &plan), ("saved plan", &saved), ("report", &report)] {
        assert_eq!(doc["format_version"], 2, "{what}");
        let mut keys = Vec::new();
        json_keys(doc, "", &mut keys);
        let odd: Vec<&String> = keys
            .iter()
            .filter(|k| !k.rsplit('.').next().unwrap_or_default().chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .collect();
        assert!(odd.is_empty(), "{what}: keys outside snake_case: {odd:?}");
    }
    let (plan_actions, saved_actions, report_actions) = (by_key(&plan), by_key(&saved), by_key(&report));
    assert_eq!(plan_actions.len(), 3);
    for (key, p) in &plan_actions {
        let (s, r) = (&saved_actions[key], &report_actions[key]);
        assert_eq!(p["selector"], s["selector"], "{key}");
        assert_eq!(p["selector"], r["selector"], "{key}");
        assert!(p["selector"]["type"].is_string() && p["selector"]["value"].is_string(), "{p}");
        assert_eq!(p["managed_device_id"], r["managed_device_id"], "{key}");
        for (field, value) in p["device"].as_object().expect("a device") {
            assert_eq!(&s["device"][field], value, "{key}: device.{field} is named and valued alike");
        }
        for field in ["change", "manifest", "file", "line", "round", "collection", "reason"] {
            assert_eq!(p[field], s[field], "{key}: {field}");
        }
    }
    assert_eq!(plan["manifests"], saved["manifests"]);
    assert_eq!(plan["manifests"]["a"]["requested_by"], "alice@contoso.com");
    let kinds: Vec<&serde_json::Value> = plan_actions.values().map(|a| &a["selector"]["type"]).collect();
    for kind in ["id", "serialNumber", "deviceName"] {
        assert!(kinds.contains(&&serde_json::Value::from(kind)), "{kinds:?}");
    }
}

/// A saved plan of format 2 as format 1 wrote it: `entries`, selectors with `kind`, devices with
/// Graph's names, `requestedBy` and `to_remove`.
fn as_format_1(saved: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    let rename = |v: &mut Value, names: &[(&str, &str)]| {
        if let Some(m) = v.as_object_mut() {
            for (new, old) in names {
                if let Some(x) = m.remove(*new) {
                    m.insert((*old).to_owned(), x);
                }
            }
        }
    };
    let mut v = saved.clone();
    v["format_version"] = 1.into();
    rename(&mut v, &[("actions", "entries")]);
    for e in v["entries"].as_array_mut().expect("entries") {
        rename(&mut e["selector"], &[("type", "kind")]);
        rename(
            &mut e["device"],
            &[
                ("name", "deviceName"),
                ("serial_number", "serialNumber"),
                ("operating_system", "operatingSystem"),
                ("os_version", "osVersion"),
                ("owner_type", "managedDeviceOwnerType"),
                ("enrollment_type", "deviceEnrollmentType"),
                ("management_state", "managementState"),
                ("last_sync", "lastSyncDateTime"),
            ],
        );
    }
    for m in v["manifests"].as_object_mut().expect("manifests").values_mut() {
        rename(m, &[("requested_by", "requestedBy")]);
    }
    rename(&mut v["outside"], &[("remove_passcode", "to_remove")]);
    v
}

// Plans saved by the build before (format 1) are still reviewed plans: shown and applied, each
// reset once.
#[test]
fn a_saved_plan_of_format_1_still_applies() {
    let (repo, sim) = vocabulary_repo();
    let out = repo.cmd_on(&sim).args(["plan", "--out", "plan.json"]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let old = as_format_1(&serde_json::from_str(&repo.read("plan.json")).expect("saved plan"));
    let text = serde_json::to_string(&old).expect("json");
    for new in ["\"actions\"", "\"type\"", "\"name\"", "\"requested_by\""] {
        assert!(!text.contains(new), "format 1 has no {new}: {text}");
    }
    repo.write("plan.json", &text);

    let shown = repo.cmd().args(["show", "plan.json", "--format", "json"]).output().expect("show");
    assert!(shown.status.success(), "{}", stderr(&shown));
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).expect("JSON");
    assert_eq!(shown["manifests"]["a"]["requested_by"], "alice@contoso.com");
    let names: Vec<&serde_json::Value> =
        shown["actions"].as_array().expect("actions").iter().map(|a| &a["device"]["name"]).collect();
    assert_eq!(names, ["ANDROID-00000", "ANDROID-00001", "ANDROID-00002"], "{shown}");

    let apply = repo.cmd_on(&sim).args(["apply", "--plan", "plan.json"]).output().expect("apply");
    assert!(apply.status.success(), "{}{}", stdout(&apply), stderr(&apply));
    assert_eq!(posts(&sim).len(), 3, "every reviewed reset, once");
    let again = repo.cmd_on(&sim).args(["apply", "--plan", "plan.json"]).output().expect("apply");
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(posts(&sim).len(), 3, "applied again: nothing more");
}

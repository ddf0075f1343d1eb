//! Guard rails the guarded change cannot loosen: the operator's policy is a floor the repository
//! can only tighten, and a change may loosen the repository's policy or rely on a loosening,
//! never both (its actions are judged by the policy before it too).

use crate::common::{Repo, android_devices, android_id, manifest_for, posts, sim, stderr, stdout};
use intune_reconcile::sim::{SimConfig, SimHandle};

const POLICY: &str = "policy:\n  maxActionsPerApply: 5\n  protectedDevices:\n    - { id: ID0, reason: CEO's phone }\n";

/// A git repository on `main` whose policy protects device 0, with a manifest for device 1
/// already applied.
fn merged_repo() -> (Repo, SimHandle) {
    let repo = Repo::empty();
    repo.fast_config(&POLICY.replace("ID0", &android_id(0)));
    repo.write(".gitignore", ".reconcile/\n");
    repo.write("manifests/one.yaml", manifest_for("one", &[&android_id(1)]));
    repo.git(&["init", "-q"]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-qm", "main"]);
    let sim = sim(SimConfig { devices: android_devices(3), ..SimConfig::default() });
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().success();
    (repo, sim)
}

fn to(sim: &SimHandle, i: usize) -> usize {
    posts(sim).iter().filter(|p| p.path.contains(&android_id(i))).count()
}

/// A pull request on its own branch: `change` done to the repository, committed.
fn pull_request(repo: &Repo, branch: &str, change: impl FnOnce(&Repo)) {
    repo.git(&["checkout", "-qb", branch, "main"]);
    change(repo);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-qm", branch]);
}

/// Merges `branch` into main with a merge commit (its first parent: main before).
fn merge(repo: &Repo, branch: &str) {
    repo.git(&["checkout", "-q", "main"]);
    repo.git(&["merge", "-q", "--no-ff", "-m", "merge", branch]);
}

fn unprotect(repo: &Repo) {
    let config = repo.read("reconcile.yaml");
    let without: String = config.lines().filter(|l| !l.contains("CEO's phone")).map(|l| format!("{l}\n")).collect();
    repo.write("reconcile.yaml", without.replace("maxActionsPerApply: 5", "maxActionsPerApply: 500"));
}

// One pull request removes a protected device from the policy (and raises the blast radius) and
// adds a manifest for that device: the comment must say so first, and neither the plan nor the
// apply after the merge may reset it.
#[test]
fn a_change_that_loosens_the_policy_cannot_use_the_loosening() {
    let (repo, sim) = merged_repo();
    pull_request(&repo, "loosen-and-use", |r| {
        unprotect(r);
        r.write("manifests/ceo.yaml", manifest_for("ceo", &[&android_id(0)]));
    });
    for format in ["text", "json", "markdown"] {
        let out = repo.cmd_on(&sim).args(["plan", "--base", "main", "--format", format]).output().expect("run");
        assert_eq!(out.status.code(), Some(1), "{format}: a blocked device: {}", stderr(&out));
        let text = stdout(&out);
        let first = text
            .lines()
            .find(|l| !l.trim().is_empty() && !l.starts_with("<!--") && !l.starts_with("###") && !l.starts_with("> [!"))
            .unwrap_or_default();
        if format == "json" {
            let v: serde_json::Value = serde_json::from_str(&text).expect("json");
            let loosens = v["policy"]["loosens"].to_string();
            assert!(loosens.contains(&format!("protected device id {} removed", android_id(0))), "{loosens}");
            assert!(loosens.contains("maxActionsPerApply 5 → 500"), "{loosens}");
            let blocked =
                v["actions"].as_array().expect("actions").iter().find(|a| a["manifest"] == "ceo").expect("ceo");
            assert_eq!(blocked["change"], "blocked", "{blocked}");
            assert!(
                v["violations"].to_string().contains("merge the policy change on its own first"),
                "{}",
                v["violations"]
            );
        } else {
            assert!(first.contains("This change loosens the policy"), "{format}: first line: {first}\n{text}");
            assert!(text.contains("maxActionsPerApply 5 → 500"), "{format}: {text}");
            assert!(text.contains(&format!("protected device id {} removed", android_id(0))), "{format}: {text}");
            if format == "markdown" {
                continue;
            }
            assert!(text.contains("merge the policy change on its own first"), "{format}: {text}\n{}", stderr(&out));
        }
    }
    // Merged anyway: apply judges the merge against its first parent, and sends nothing to it.
    merge(&repo, "loosen-and-use");
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("This change loosens the policy"), "{}", stdout(&out));
    assert!(format!("{}{}", stdout(&out), stderr(&out)).contains("merge the policy change on its own first"));
    assert_eq!(to(&sim, 0), 0, "the protected device was reset");
}

// The same change in two pull requests: the loosening alone, merged, then its use.
#[test]
fn a_loosening_merged_on_its_own_is_then_relied_on() {
    let (repo, sim) = merged_repo();
    pull_request(&repo, "loosen", unprotect);
    let out = repo.cmd_on(&sim).args(["plan", "--base", "main"]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("This change loosens the policy"), "{}", stdout(&out));
    merge(&repo, "loosen");
    repo.cmd_on(&sim).args(["apply", "--auto-approve"]).assert().success();
    pull_request(&repo, "use", |r| {
        r.write("manifests/ceo.yaml", manifest_for("ceo", &[&android_id(0)]));
    });
    let out = repo.cmd_on(&sim).args(["plan", "--base", "main"]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("loosens"), "{}", stdout(&out));
    merge(&repo, "use");
    let out = repo.cmd_on(&sim).args(["apply", "--auto-approve"]).output().expect("run");
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(to(&sim, 0), 1);
}

// A tightening is shown, and in effect at once (no need to merge it first).
#[test]
fn a_tightening_is_shown_and_takes_effect_at_once() {
    let (repo, sim) = merged_repo();
    pull_request(&repo, "tighten", |r| {
        let config = r.read("reconcile.yaml");
        r.write(
            "reconcile.yaml",
            config.replace("maxActionsPerApply: 5", "maxActionsPerApply: 5\n  requireTicket: true"),
        );
        r.write("manifests/two.yaml", manifest_for("two", &[&android_id(2)]));
    });
    let out = repo.cmd_on(&sim).args(["plan", "--base", "main"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).starts_with("This change tightens the policy (in effect at once): requireTicket added"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("has no metadata.ticket"), "{}", stdout(&out));
}

/// A policy file outside the repository, as the operator keeps it.
fn operator_policy(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("operator-policy.yaml");
    std::fs::write(&path, text).expect("write");
    (dir, path)
}

// The operator's policy is a floor: the repository may tighten it, never loosen it. A looser
// repository rule is reported, naming both, and ignored.
#[test]
fn the_operators_policy_is_a_floor_the_repository_cannot_lower() {
    let repo = Repo::empty();
    repo.fast_config("policy:\n  maxActionsPerApply: 500\n  cooldown: 1h\n");
    repo.write("manifests/a.yaml", manifest_for("a", &[&android_id(0), &android_id(1), &android_id(2)]));
    let sim = sim(SimConfig { devices: android_devices(3), ..SimConfig::default() });
    let (_dir, floor) = operator_policy(&format!(
        "maxActionsPerApply: 2\ncooldown: 24h\nprotectedDevices:\n  - {{ id: {}, reason: board }}\n",
        android_id(2)
    ));
    let floor_s = floor.to_str().expect("utf8");
    for how in ["env", "flag"] {
        let mut c = repo.cmd_on(&sim);
        if how == "env" {
            c.env("RECONCILE_POLICY", &floor);
        } else {
            c.args(["--policy", floor_s]);
        }
        let out = c.arg("plan").output().expect("run");
        assert_eq!(out.status.code(), Some(1), "{how}");
        let (o, e) = (stdout(&out), stderr(&out));
        assert!(
            e.contains("reconcile.yaml:9:23: warning: policy.maxActionsPerApply 500 is looser than the operator's 2")
                && e.contains(&format!("{floor_s}:1 (the operator's)")),
            "{how}: {e}"
        );
        assert!(e.contains("policy.cooldown 1h is looser than the operator's 24h"), "{how}: {e}");
        assert!(o.contains("Policy in effect") && o.contains("maxActionsPerApply 2"), "{how}: {o}");
        assert!(o.contains("is protected (board; listed at") && o.contains("(the operator's)"), "{how}: {o}");
    }
    // Apply: the floor's blast radius (2) refuses the run whole; nothing is sent.
    let out =
        repo.cmd_on(&sim).env("RECONCILE_POLICY", &floor).args(["apply", "--auto-approve"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(posts(&sim).is_empty(), "{}", stderr(&out));
    // Without the floor the repository's own policy applies (and the plan says nothing of a floor).
    let out = repo.cmd_on(&sim).arg("plan").output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("Policy in effect"));
    // A floor that cannot be read stops the run before any request.
    let out = repo.cmd_on(&sim).env("RECONCILE_POLICY", "/nonexistent/policy.yaml").arg("plan").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("/nonexistent/policy.yaml"), "{}", stderr(&out));
    let (_d2, bad) = operator_policy("maxActionsPerApply: 0\nunknownRule: 1\n");
    let out = repo.cmd_on(&sim).env("RECONCILE_POLICY", &bad).arg("validate").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("operator-policy.yaml:2:1: error: unknown field `unknownRule`"), "{}", stderr(&out));
}

// A shallow clone (CI's default checkout) has no first parent: judging the merge without the
// policy before it would let it rely on its own loosening. Refused, with what to fetch.
#[test]
fn a_shallow_clone_cannot_hide_the_policy_before_the_merge() {
    let (repo, sim) = merged_repo();
    pull_request(&repo, "loosen-and-use", |r| {
        unprotect(r);
        r.write("manifests/ceo.yaml", manifest_for("ceo", &[&android_id(0)]));
    });
    merge(&repo, "loosen-and-use");
    let dir = tempfile::tempdir().expect("tmp");
    let shallow = dir.path().join("shallow");
    let url = format!("file://{}", repo.path().display());
    let ok = std::process::Command::new("git")
        .args(["clone", "-q", "--depth", "1", &url, shallow.to_str().expect("utf8")])
        .status()
        .expect("git clone")
        .success();
    assert!(ok);
    let ledger = repo.path().join(".reconcile/state.json");
    let out = repo
        .cmd_on(&sim)
        .current_dir(&shallow)
        .args(["--state", ledger.to_str().expect("utf8"), "apply", "--auto-approve"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("the clone is shallow") && stderr(&out).contains("fetch-depth: 0"),
        "{}",
        stderr(&out)
    );
    assert_eq!(to(&sim, 0), 0, "the protected device was reset");
}

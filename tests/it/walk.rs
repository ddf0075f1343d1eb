//! Walks of the folders and globs the repository names stay inside it and stay bounded: a
//! symbolic link out of the repository is refused by its own name and never read, a walk that
//! grows too large or too deep stops with one error, and links that loop cannot hang it.

use std::path::Path;
use std::time::Duration;

use crate::common::{Repo, android_id, manifest_for, stderr};

/// Everything the run printed.
fn all(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn error_lines(out: &std::process::Output) -> Vec<String> {
    stderr(out).lines().filter(|l| l.contains(": error: ")).map(str::to_owned).collect()
}

/// `reconcile validate ARGS` in `repo`, killed (and failing the test) if it runs away.
fn validate(repo: &Repo, args: &[&str]) -> std::process::Output {
    repo.cmd().arg("validate").args(args).timeout(Duration::from_secs(60)).output().expect("finished in time")
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

// A committed `manifests/up -> /somewhere/outside` with the glob `manifests/up/**` printed the
// name of every file out there, each refused one by one after the walk had read them all.
#[test]
fn a_folder_link_out_of_the_repository_is_refused_by_its_name_and_never_read() {
    let repo = Repo::empty();
    repo.write("manifests/ok.yaml", manifest_for("ok", &[&android_id(0)]));
    let outside = tempfile::tempdir().expect("tmp");
    write(&outside.path().join("OUTSIDE_NAME_TOKEN.txt"), "x");
    write(&outside.path().join("OUTSIDE_NAME_MANIFEST.yaml"), &manifest_for("outside", &[&android_id(1)]));
    write(&outside.path().join("OUTSIDE_NAME_DIR/OUTSIDE_NAME_DEEP.yml"), &manifest_for("deep", &[&android_id(2)]));
    std::os::unix::fs::symlink(outside.path(), repo.path().join("manifests/up")).expect("symlink");

    for config in
        [Some("manifests:\n  - manifests/ok.yaml\n  - manifests/up/**\n"), Some("manifests: [manifests]\n"), None]
    {
        match config {
            Some(text) => drop(repo.write("reconcile.yaml", text)),
            None => std::fs::remove_file(repo.path().join("reconcile.yaml")).expect("rm"),
        }
        let out = validate(&repo, &[]);
        assert_eq!(out.status.code(), Some(1), "{config:?}: {}", all(&out));
        assert!(!all(&out).contains("OUTSIDE_NAME"), "{config:?}: a name from outside was shown: {}", all(&out));
        let errors = error_lines(&out);
        assert_eq!(errors.len(), 1, "{config:?}: one diagnostic: {}", all(&out));
        assert!(
            errors[0].contains("manifests/up")
                && errors[0].contains("refused")
                && errors[0].contains("outside the repository"),
            "{config:?}: {}",
            errors[0]
        );
        assert_eq!(all(&out).matches("refused").count(), 1, "{config:?}: named once: {}", all(&out));
        if config.is_some_and(|c| c.contains("**")) {
            assert!(errors[0].starts_with("reconcile.yaml:3:"), "the line in reconcile.yaml: {}", errors[0]);
        }
    }
    // The operator may point anywhere: a folder named on the command line is followed out.
    let out = validate(&repo, &["manifests"]);
    assert!(out.status.success(), "{}", all(&out));
    assert!(all(&out).contains("3 manifests"), "{}", all(&out));
}

// A link to a large system folder gave 124,090 diagnostics and 31 MB of log.
#[test]
fn a_link_to_a_large_tree_outside_is_one_short_diagnostic() {
    let repo = Repo::empty();
    repo.write("manifests/ok.yaml", manifest_for("ok", &[&android_id(0)]));
    let outside = tempfile::tempdir().expect("tmp");
    for d in 0..30 {
        let dir = outside.path().join(format!("BIG_OUTSIDE_{d:02}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..100 {
            std::fs::write(dir.join(format!("BIG_OUTSIDE_{f:03}.yaml")), "x").expect("write");
        }
    }
    std::os::unix::fs::symlink(outside.path(), repo.path().join("manifests/vendor")).expect("symlink");
    for config in ["manifests: ['manifests/**/*.yaml']\n", "manifests: [manifests]\n"] {
        repo.write("reconcile.yaml", config);
        let out = validate(&repo, &[]);
        assert_eq!(out.status.code(), Some(1), "{config}");
        assert_eq!(error_lines(&out).len(), 1, "{config}: {}", &stderr(&out)[..stderr(&out).len().min(4000)]);
        assert!(stderr(&out).contains("manifests/vendor"), "{config}: {}", stderr(&out));
        assert!(!all(&out).contains("BIG_OUTSIDE"), "{config}");
        assert!(all(&out).len() < 2000, "{config}: short: {} bytes", all(&out).len());
    }
}

/// `manifests/` with `ok.yaml`, and `deep.yaml` below `levels` nested folders.
fn nested_repo(levels: usize) -> Repo {
    let repo = Repo::empty();
    repo.write("manifests/ok.yaml", manifest_for("ok", &[&android_id(0)]));
    repo.write(&format!("manifests/{}deep.yaml", "d/".repeat(levels)), manifest_for("deep", &[&android_id(1)]));
    repo
}

// A walk had no bound: however deep (or large) a folder, every entry was read and each refused
// or broken file reported. It now stops at 64 folders deep (or 100,000 entries) with one error.
#[test]
fn a_walk_too_deep_stops_with_one_error_naming_the_folder_and_the_bound() {
    let within = nested_repo(63);
    let out = validate(&within, &[]);
    assert!(out.status.success(), "63 folders deep is within the bound: {}", all(&out));
    assert!(all(&out).contains("2 manifests"), "{}", all(&out));

    let repo = nested_repo(64);
    let out = validate(&repo, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let errors = error_lines(&out);
    assert_eq!(errors.len(), 1, "{}", all(&out));
    assert!(errors[0].starts_with("manifests: error: manifest folder `manifests` not searched"), "{}", errors[0]);
    assert!(errors[0].contains("a walk goes at most 64 deep"), "{}", errors[0]);

    repo.write("reconcile.yaml", "manifests:\n  - manifests/ok.yaml\n  - 'manifests/**/*.yaml'\n");
    let out = validate(&repo, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let errors = error_lines(&out);
    assert_eq!(errors.len(), 1, "{}", all(&out));
    assert!(errors[0].starts_with("reconcile.yaml:3:"), "the line in reconcile.yaml: {}", errors[0]);
    assert!(errors[0].contains("glob `manifests/**/*.yaml` not searched") && errors[0].contains("64"), "{}", errors[0]);
}

// Links inside the repository are followed, but each folder is read once: links that branch
// and loop back (every level two ways into the next, the last back to the first) made the walk
// visit 2^n paths, and a link to its own parent is one loop reported.
#[test]
fn links_that_branch_and_loop_inside_the_repository_neither_hang_nor_flood() {
    let repo = Repo::empty();
    repo.write("manifests/ok.yaml", manifest_for("ok", &[&android_id(0)]));
    repo.write("manifests/l00/first.yaml", manifest_for("first", &[&android_id(1)]));
    let levels = 16;
    for level in 0..levels {
        let dir = repo.path().join(format!("manifests/l{level:02}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let next = if level + 1 == levels { "../l00".to_owned() } else { format!("../l{:02}", level + 1) };
        for via in ["a", "b"] {
            std::os::unix::fs::symlink(&next, dir.join(via)).expect("symlink");
        }
    }
    std::os::unix::fs::symlink("..", repo.path().join("manifests/l00/up")).expect("symlink");
    let out = validate(&repo, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let errors = error_lines(&out);
    assert_eq!(errors.len(), 1, "one loop, one error: {}", &all(&out)[..all(&out).len().min(4000)]);
    assert!(errors[0].starts_with("manifests/l00/up: error: symbolic link loop"), "{}", errors[0]);
    // Without the loop, each manifest is found once, under its own name.
    std::fs::remove_file(repo.path().join("manifests/l00/up")).expect("rm");
    let out = validate(&repo, &[]);
    assert!(out.status.success(), "{}", all(&out));
    assert!(all(&out).contains("ok: 2 manifests"), "{}", all(&out));
}

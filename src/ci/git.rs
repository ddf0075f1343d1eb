//! The few `git` questions the tool asks, answered by the `git` command in the working directory.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

/// Why git could not answer.
#[derive(Debug, thiserror::Error)]
#[error("{what}\nhint: {hint}")]
pub(crate) struct GitError {
    what: String,
    hint: &'static str,
}

/// The files (relative to the working directory, below it) that differ between the merge base
/// of `base` and `HEAD`, and the working tree, untracked files included: a pull request's own
/// change when `base` is its target branch.
pub(crate) fn changed_since(base: &str) -> Result<HashSet<PathBuf>, GitError> {
    let fork = fork_point(base)?;
    let mut files = HashSet::new();
    for args in [
        vec!["diff", "--name-only", "-z", "--no-renames", "--relative", fork.as_str(), "--"],
        vec!["ls-files", "--others", "--exclude-standard", "-z"],
    ] {
        let out = run(&args).map_err(|why| GitError {
            what: format!("cannot list the files changed since `{base}`: {why}"),
            hint: "run it inside the repository's working tree",
        })?;
        // git lists them relative to the working directory already.
        files.extend(out.split('\0').filter(|f| !f.is_empty()).map(|f| normal(Path::new(f), Path::new(""))));
    }
    Ok(files)
}

fn revision(rev: &str) -> Result<&str, GitError> {
    if rev.starts_with('-') || rev.chars().any(char::is_control) || rev.is_empty() {
        return Err(GitError {
            what: format!("`{}` is not a git revision", rev.escape_debug()),
            hint: "name a branch, tag or commit, e.g. origin/main",
        });
    }
    Ok(rev)
}

/// The commit where `HEAD` forks from `base` (their merge base): what a pull request's change
/// is measured against.
pub(crate) fn fork_point(base: &str) -> Result<String, GitError> {
    let base = revision(base)?;
    let fork = run(&["merge-base", base, "HEAD"]).map_err(|why| GitError {
        what: format!("cannot find where this change forks from `{base}`: {why}"),
        hint: "fetch the base branch with enough history (actions/checkout: `fetch-depth: 0`; Azure Pipelines: `fetchDepth: 0`)",
    })?;
    Ok(fork.trim().to_owned())
}

/// The commit `rev` names, in full.
pub(crate) fn commit(rev: &str) -> Result<String, GitError> {
    let rev = revision(rev)?;
    let spec = format!("{rev}^{{commit}}");
    run(&["rev-parse", "--verify", "--quiet", &spec]).map(|s| s.trim().to_owned()).map_err(|why| GitError {
        what: format!(
            "git does not know the commit `{rev}`{}",
            if why.is_empty() { String::new() } else { format!(": {why}") }
        ),
        hint: "fetch it (actions/checkout: `fetch-depth: 0`; Azure Pipelines: `fetchDepth: 0`)",
    })
}

/// The first parent of `HEAD` (the branch before a merge), when this is a repository with one.
pub(crate) fn first_parent() -> Option<String> {
    run(&["rev-parse", "--verify", "--quiet", "HEAD^1^{commit}"])
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Whether this is a shallow clone (its history cut off, so a commit's parent may be missing).
pub(crate) fn is_shallow() -> bool {
    run(&["rev-parse", "--is-shallow-repository"]).is_ok_and(|s| s.trim() == "true")
}

/// `HEAD`'s commit, when this is a repository with one.
pub(crate) fn head() -> Option<String> {
    run(&["rev-parse", "--verify", "--quiet", "HEAD^{commit}"])
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The text of `path` (relative to the working directory) at `commit`; `None` when it did not
/// exist there.
pub(crate) fn file_at(commit: &str, path: &Path) -> Result<Option<String>, GitError> {
    let commit = revision(commit)?;
    let Some(rel) = path.to_str() else { return Ok(None) };
    let spec = format!("{commit}:./{}", rel.trim_start_matches("./"));
    if run(&["cat-file", "-e", &spec]).is_err() {
        return Ok(None);
    }
    run(&["show", &spec]).map(Some).map_err(|why| GitError {
        what: format!("cannot read `{rel}` at {commit}: {why}"),
        hint: "run it inside the repository's working tree",
    })
}

/// How recently each file entered the repository, for telling which of two files a change added:
/// the commit time of the commit that added it, and `u64::MAX` for a file not committed yet.
/// `None` when git cannot tell (not a repository, git missing, a shallow clone's one commit that
/// holds them all gives equal times, which the caller treats as "cannot tell").
pub(crate) fn added_at(files: &[&Path]) -> Option<Vec<u64>> {
    files
        .iter()
        .map(|f| {
            let f = f.to_str()?;
            let committed = run(&["log", "-1", "--diff-filter=A", "--format=%ct", "--", f]).ok()?;
            match committed.trim() {
                // Not in history: new in the working tree (untracked or only staged), if git sees it.
                "" => run(&["ls-files", "--error-unmatch", "--others", "--cached", "--", f]).ok().map(|_| u64::MAX),
                t => t.parse().ok(),
            }
        })
        .collect()
}

/// `path` relative to the working directory `cwd` (when it is inside it) and without `.`
/// components, for comparing paths as git and the config write them.
pub(crate) fn normal(path: &Path, cwd: &Path) -> PathBuf {
    let rel = if path.is_absolute() { path.strip_prefix(cwd).unwrap_or(path) } else { path };
    rel.components().filter(|c| !matches!(c, Component::CurDir)).collect()
}

fn run(args: &[&str]) -> Result<String, String> {
    let out =
        Command::new("git").args(args).stdin(Stdio::null()).output().map_err(|e| format!("cannot run git ({e})"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(crate::diag::safe::text(err.trim()).into_owned());
    }
    String::from_utf8(out.stdout).map_err(|_| "git printed a file name that is not UTF-8".to_owned())
}

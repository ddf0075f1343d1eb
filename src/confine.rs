//! What the repository names must stay inside it (docs/contract.md, "What the repository may say").
//!
//! `reconcile.yaml` and the manifests come from pull requests. A path they name — a manifest
//! file, folder or glob, the ledger, the simulator's device fixture — is resolved (symlinks
//! included) and refused when it leads outside the repository: a pull request must not make the
//! tool read a token file into a CI log, or write the ledger where nobody uploads it. Paths the
//! operator gives on the command line are not confined.

use std::path::{Component, Path, PathBuf};

/// Why a path the repository names was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ConfineError {
    #[error("`{}` leads outside the repository (`{}`)", path.display(), root.display())]
    Outside { path: PathBuf, root: PathBuf },
    #[error("cannot resolve `{}`: {reason}", path.display())]
    Unresolvable { path: PathBuf, reason: String },
}

/// `path` resolved, when it stays inside `root` (both resolved through symlinks). A path that
/// does not exist yet (a ledger to be created) is checked through its nearest existing ancestor.
/// `..` is refused outright.
pub(crate) fn inside(root: &Path, path: &Path) -> Result<PathBuf, ConfineError> {
    let unresolvable = |p: &Path, e: std::io::Error| ConfineError::Unresolvable {
        path: p.to_path_buf(),
        reason: crate::diag::io_reason(&e),
    };
    let root = std::fs::canonicalize(root).map_err(|e| unresolvable(root, e))?;
    let outside = || ConfineError::Outside { path: path.to_path_buf(), root: root.clone() };
    // `..` is never needed to name something inside the repository.
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(outside());
    }
    let mut existing = path.to_path_buf();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    loop {
        match std::fs::symlink_metadata(&existing) {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(unresolvable(&existing, e)),
        }
        let Some(name) = existing.file_name().map(ToOwned::to_owned) else { break };
        rest.push(name);
        if !existing.pop() || existing.as_os_str().is_empty() {
            existing = PathBuf::from(".");
            break;
        }
    }
    let mut resolved = std::fs::canonicalize(&existing).map_err(|e| unresolvable(&existing, e))?;
    for name in rest.iter().rev() {
        resolved.push(name);
    }
    if resolved.starts_with(&root) { Ok(resolved) } else { Err(outside()) }
}

/// Whether `rel` (as the repository wrote it) names a hidden entry (`.git/config`,
/// `.reconcile/…` are the tool's or git's, never a manifest).
pub(crate) fn names_hidden(rel: &Path) -> bool {
    rel.components().any(|c| matches!(c, Component::Normal(s) if s.to_string_lossy().starts_with('.')))
}

/// Whether `resolved` (a path [`inside`] returned) lies in a hidden folder of `root` other than
/// `.reconcile`, the tool's own: `.git/hooks/pre-commit` is git's, and a ledger written there
/// would be code git runs.
pub(crate) fn in_hidden_folder(root: &Path, resolved: &Path) -> bool {
    let Ok(root) = std::fs::canonicalize(root) else { return true };
    let Ok(rel) = resolved.strip_prefix(&root) else { return true };
    let mut folders = rel.components();
    folders.next_back();
    folders.any(|c| matches!(c, Component::Normal(s) if s.to_string_lossy().starts_with('.') && s != ".reconcile"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_folders_other_than_the_tools_own_are_no_place_for_a_ledger() {
        let d = tempfile::tempdir().expect("tmp");
        let root = std::fs::canonicalize(d.path()).expect("canonical");
        for (rel, hidden) in [
            (".git/hooks/pre-commit", true),
            ("a/.cache/state.json", true),
            (".reconcile/state.json", false),
            ("ledgers/state.json", false),
            (".state.json", false),
        ] {
            assert_eq!(in_hidden_folder(&root, &root.join(rel)), hidden, "{rel}");
        }
    }

    #[test]
    fn paths_stay_inside_the_root_through_symlinks() {
        let d = tempfile::tempdir().expect("tmp");
        let root = d.path().join("repo");
        std::fs::create_dir_all(root.join("manifests")).expect("mkdir");
        std::fs::write(root.join("manifests/a.yaml"), "x").expect("write");
        let outside = d.path().join("secret");
        std::fs::write(&outside, "token").expect("write");
        std::os::unix::fs::symlink(&outside, root.join("manifests/link.yaml")).expect("symlink");
        std::os::unix::fs::symlink(d.path(), root.join("up")).expect("symlink");
        assert!(inside(&root, &root.join("manifests/a.yaml")).is_ok());
        assert!(inside(&root, &root.join(".reconcile/state.json")).is_ok(), "not there yet, inside");
        for bad in ["manifests/link.yaml", "up/secret", "up/new/state.json", "../secret", "manifests/../../secret"] {
            assert!(matches!(inside(&root, &root.join(bad)), Err(ConfineError::Outside { .. })), "{bad}");
        }
        assert!(matches!(inside(&root, Path::new("/etc/passwd")), Err(ConfineError::Outside { .. })));
        assert!(matches!(inside(&root, &root.join("new/../../x")), Err(ConfineError::Outside { .. })));
        assert!(names_hidden(Path::new(".git/config")) && names_hidden(Path::new("a/.hidden.yaml")));
        assert!(!names_hidden(Path::new("./manifests/a.yaml")));
    }
}

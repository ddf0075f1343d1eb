//! Finding manifest files from files, folders and globs.

use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};
use walkdir::WalkDir;

use crate::diagnostic::io_reason;
use crate::diagnostic::{Diagnostic, Diagnostics};

/// A manifest location as the user wrote it, with the folder it is relative to.
#[derive(Debug, Clone)]
pub struct ManifestInput {
    pub base: PathBuf,
    pub pattern: String,
    /// Where it was written (the config file), for error messages.
    pub origin: Option<PathBuf>,
    /// Its line in that file.
    pub pos: Option<crate::diagnostic::Pos>,
    /// The repository root, when the repository wrote it (`reconcile.yaml` or the default):
    /// every file found must then resolve inside it, may not be hidden, and must be YAML.
    /// `None` for paths the operator gave on the command line.
    pub confine_to: Option<PathBuf>,
}

/// Every YAML file named by `inputs`, sorted and without repeats. Folders are searched
/// recursively for `*.yaml` / `*.yml`, skipping hidden entries; symlinks are followed and loops
/// reported. A path that names a file is taken whatever its extension.
pub fn discover(inputs: &[ManifestInput], diags: &mut Diagnostics) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for input in inputs {
        let before = files.len();
        find(input, &mut files, diags);
        if let Some(root) = &input.confine_to {
            let found = files.split_off(before);
            files.extend(found.into_iter().filter(|f| confined(root, input, f, diags)));
        }
    }
    files.sort();
    files.dedup();
    files
}

/// Whether a file the repository named may be read. Refused files are never opened, so nothing
/// of them can reach a log.
fn confined(root: &Path, input: &ManifestInput, file: &Path, diags: &mut Diagnostics) -> bool {
    let where_ = input.origin.clone().unwrap_or_else(|| PathBuf::from(&input.pattern));
    let refuse = |diags: &mut Diagnostics, why: String| {
        diags.push(
            Diagnostic::error(&where_, None, format!("manifest `{}` refused: {why}", file.display()))
                .with_hint("manifests named by reconcile.yaml must be .yaml/.yml files inside the repository"),
        );
        false
    };
    let rel = file.strip_prefix(&input.base).unwrap_or(file);
    if crate::confine::names_hidden(rel) {
        return refuse(diags, "it is hidden or in a hidden folder".into());
    }
    if !file.extension().is_some_and(|x| x == "yaml" || x == "yml") {
        return refuse(diags, "it is not a .yaml or .yml file".into());
    }
    match crate::confine::inside(root, file) {
        Ok(_) => true,
        Err(e) => refuse(diags, e.to_string()),
    }
}

/// The files one input names, before any confinement.
fn find(input: &ManifestInput, files: &mut Vec<PathBuf>, diags: &mut Diagnostics) {
    if is_glob(&input.pattern) {
        return glob(input, files, diags);
    }
    let path = join(&input.base, Path::new(&input.pattern));
    match std::fs::metadata(&path) {
        Ok(m) if m.is_dir() => {
            let before = files.len();
            walk(&path, None, files, diags);
            if files.len() == before {
                diags.push(Diagnostic::warning(&path, None, "folder holds no .yaml or .yml files"));
            }
        }
        Ok(_) => files.push(path),
        Err(e) => {
            let where_ = input.origin.clone().unwrap_or_else(|| path.clone());
            let pos = input.origin.as_ref().and(input.pos);
            diags.push(Diagnostic::error(
                where_,
                pos,
                format!("manifest path `{}`: {}", path.display(), io_reason(&e)),
            ));
        }
    }
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// `base/rel`, without a leading `./` when base is the current folder.
fn join(base: &Path, rel: &Path) -> PathBuf {
    if base.as_os_str().is_empty() || base == Path::new(".") || rel.is_absolute() {
        rel.to_path_buf()
    } else {
        base.join(rel)
    }
}

fn glob(input: &ManifestInput, files: &mut Vec<PathBuf>, diags: &mut Diagnostics) {
    let matcher: GlobMatcher = match GlobBuilder::new(&input.pattern).literal_separator(true).build() {
        Ok(g) => g.compile_matcher(),
        Err(e) => {
            let where_ = input.origin.clone().unwrap_or_else(|| PathBuf::from(&input.pattern));
            diags.push(Diagnostic::error(where_, input.pos, format!("invalid glob `{}`: {e}", input.pattern)));
            return;
        }
    };
    // Walk only below the part of the pattern that has no wildcard.
    let prefix: PathBuf = Path::new(&input.pattern)
        .components()
        .take_while(|c| !matches!(c, Component::Normal(s) if is_glob(&s.to_string_lossy())))
        .collect();
    let root = join(&input.base, &prefix);
    if root.as_os_str().is_empty() || root.is_dir() {
        let root = if root.as_os_str().is_empty() { PathBuf::from(".") } else { root };
        walk(&root, Some((&input.base, &matcher)), files, diags);
    }
}

/// Recursively collects YAML files below `root` (or, with a matcher, files whose path relative
/// to the base matches it).
fn walk(root: &Path, matcher: Option<(&Path, &GlobMatcher)>, files: &mut Vec<PathBuf>, diags: &mut Diagnostics) {
    let walker = WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in walker {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let path = e.path().map_or_else(|| root.to_path_buf(), Path::to_path_buf);
                let msg = if e.loop_ancestor().is_some() {
                    "symbolic link loop in manifest folder; skipped".to_owned()
                } else {
                    format!("cannot read: {}", e.io_error().map_or_else(|| e.to_string(), io_reason))
                };
                diags.push(Diagnostic::error(path, None, msg));
                continue;
            }
        };
        if entry.file_type().is_dir() {
            continue;
        }
        let path = entry.path();
        let path = path.strip_prefix("./").unwrap_or(path);
        let wanted = match matcher {
            Some((base, m)) => {
                let rel = if base == Path::new(".") || base.as_os_str().is_empty() {
                    path
                } else {
                    path.strip_prefix(base).unwrap_or(path)
                };
                m.is_match(rel)
            }
            None => path.extension().is_some_and(|x| x == "yaml" || x == "yml"),
        };
        if wanted {
            files.push(path.to_path_buf());
        }
    }
}

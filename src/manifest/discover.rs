//! Finding manifest files from files, folders and globs.

use std::collections::{HashSet, VecDeque};
use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};

use crate::confine::ConfineError;
use crate::diag::io_reason;
use crate::diag::{Diagnostic, Diagnostics};

/// A manifest location as the user wrote it, with the folder it is relative to.
#[derive(Debug, Clone)]
pub struct ManifestInput {
    pub base: PathBuf,
    pub pattern: String,
    /// Where it was written (the config file), for error messages.
    pub origin: Option<PathBuf>,
    /// Its line in that file.
    pub pos: Option<crate::diag::Pos>,
    /// The repository root, when the repository wrote it (`reconcile.yaml` or the default):
    /// every file found must then resolve inside it, may not be hidden, and must be YAML, and
    /// no walk enters a folder (through a symbolic link) outside it. `None` for paths the
    /// operator gave on the command line, which may lead anywhere.
    pub confine_to: Option<PathBuf>,
}

/// The most entries (files, folders, links) one folder or glob may reach: a walk that would read
/// more stops with one error instead of a diagnostic per file.
pub(crate) const MAX_ENTRIES: usize = 100_000;

/// The deepest one folder or glob may reach, in folders below where its walk starts.
pub(crate) const MAX_DEPTH: usize = 64;

/// How far one walk may go.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    entries: usize,
    depth: usize,
}

/// Every YAML file named by `inputs`, sorted and without repeats. Folders are searched
/// recursively for `*.yaml` / `*.yml`, skipping hidden entries; symbolic links are followed,
/// except, for the repository's inputs, links to folders outside it (refused by name, never
/// read). Each folder is read once; loops are reported. A walk that would go past
/// [`MAX_ENTRIES`] or [`MAX_DEPTH`] stops with one error. A path that names a file is taken
/// whatever its extension.
pub fn discover(inputs: &[ManifestInput], diags: &mut Diagnostics) -> Vec<PathBuf> {
    discover_within(inputs, Bounds { entries: MAX_ENTRIES, depth: MAX_DEPTH }, diags)
}

fn discover_within(inputs: &[ManifestInput], bounds: Bounds, diags: &mut Diagnostics) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for input in inputs {
        let before = files.len();
        find(input, bounds, &mut files, diags);
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
    let pos = input.origin.as_ref().and(input.pos);
    let refuse = |diags: &mut Diagnostics, why: String| {
        diags.push(
            Diagnostic::error(&where_, pos, format!("manifest `{}` refused: {why}", file.display()))
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
fn find(input: &ManifestInput, bounds: Bounds, files: &mut Vec<PathBuf>, diags: &mut Diagnostics) {
    if is_glob(&input.pattern) {
        return glob(input, bounds, files, diags);
    }
    let path = join(&input.base, Path::new(&input.pattern));
    match std::fs::metadata(&path) {
        Ok(m) if m.is_dir() => {
            let (before, said) = (files.len(), diags.items().len());
            if walk(input, &path, None, bounds, files, diags) && files.len() == before && diags.items().len() == said {
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

fn glob(input: &ManifestInput, bounds: Bounds, files: &mut Vec<PathBuf>, diags: &mut Diagnostics) {
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
        walk(input, &root, Some(&matcher), bounds, files, diags);
    }
}

/// Recursively collects YAML files below `root` (or, with a matcher, files whose path relative
/// to the base matches it), within `bounds`. Returns whether the walk finished: a refused root or
/// a bound reached is one error, and nothing else the walk found (files or diagnostics) is kept.
fn walk(
    input: &ManifestInput,
    root: &Path,
    matcher: Option<&GlobMatcher>,
    bounds: Bounds,
    files: &mut Vec<PathBuf>,
    diags: &mut Diagnostics,
) -> bool {
    if let Some(repo) = &input.confine_to
        && !folder_confined(repo, input, root, diags)
    {
        return false;
    }
    let resolved = match std::fs::canonicalize(root) {
        Ok(p) => p,
        Err(e) => {
            diags.push(Diagnostic::error(root, None, format!("cannot read: {}", io_reason(&e))));
            return false;
        }
    };
    let mut walker = Walker {
        input,
        start: root,
        matcher,
        bounds,
        read: 0,
        visited: HashSet::new(),
        links: VecDeque::new(),
        found: Vec::new(),
        diags: Diagnostics::default(),
    };
    match walker.run(resolved) {
        Ok(()) => {
            files.append(&mut walker.found);
            diags.extend(walker.diags);
            true
        }
        Err(Stopped(stop)) => {
            diags.push(*stop);
            false
        }
    }
}

/// Whether a folder the repository named (where a walk starts, or a symbolic link met on the
/// way) may be searched: it must resolve inside the repository, outside any hidden folder. A
/// refused folder is named once and never read, so no name below it can reach a log.
fn folder_confined(repo: &Path, input: &ManifestInput, folder: &Path, diags: &mut Diagnostics) -> bool {
    let why = match crate::confine::inside(repo, folder) {
        Ok(resolved) => {
            let root = std::fs::canonicalize(repo).unwrap_or_else(|_| repo.to_path_buf());
            if !crate::confine::names_hidden(resolved.strip_prefix(&root).unwrap_or(&resolved)) {
                return true;
            }
            "it leads into a hidden folder".to_owned()
        }
        Err(ConfineError::Outside { .. }) => match std::fs::read_link(folder) {
            Ok(target) => format!("it is a symbolic link to `{}`, outside the repository", target.display()),
            Err(_) => "it leads outside the repository".to_owned(),
        },
        Err(e) => e.to_string(),
    };
    let diag = match &input.origin {
        Some(origin) => Diagnostic::error(
            origin,
            input.pos,
            format!("manifest folder `{}` refused: {why}; not searched", folder.display()),
        ),
        None => Diagnostic::error(folder, None, format!("manifest folder refused: {why}; not searched")),
    };
    diags.push(diag.with_hint(
        "the folders and globs the repository names, and symbolic links in them, must stay inside the repository",
    ));
    false
}

/// A walk stopped before its end, with its one error (boxed: the walk returns it through every
/// level, and it is rare).
struct Stopped(Box<Diagnostic>);

/// A symbolic link to a folder, met during a walk and followed once the folders themselves are
/// read.
struct Link {
    path: PathBuf,
    /// The folder it is in, resolved.
    within: PathBuf,
    /// Its depth below where the walk started.
    depth: usize,
}

/// One input's walk. Folders are read first and symbolic links to folders after them, so a file
/// is found under its own name when it has one, and each folder is read once however many
/// links lead to it: links that branch and join again cannot make the walk grow exponentially.
struct Walker<'a> {
    input: &'a ManifestInput,
    /// Where the walk started, as found on disk.
    start: &'a Path,
    matcher: Option<&'a GlobMatcher>,
    bounds: Bounds,
    /// Entries read so far, every folder and link included.
    read: usize,
    /// Every folder read so far, resolved.
    visited: HashSet<PathBuf>,
    /// Links to folders not followed yet, in the order they were met.
    links: VecDeque<Link>,
    found: Vec<PathBuf>,
    /// What the walk met, kept only when it finishes.
    diags: Diagnostics,
}

impl Walker<'_> {
    /// Reads the start (`resolved`, through any symbolic link), everything below it, then every
    /// link met on the way.
    fn run(&mut self, resolved: PathBuf) -> Result<(), Stopped> {
        self.visited.insert(resolved.clone());
        self.dir(self.start, &resolved, 0)?;
        while let Some(link) = self.links.pop_front() {
            self.follow(link)?;
        }
        Ok(())
    }

    /// Reads the folder `path` (`resolved`), `depth` folders below the start, and the folders
    /// below it; links to folders are queued.
    fn dir(&mut self, path: &Path, resolved: &Path, depth: usize) -> Result<(), Stopped> {
        if depth >= self.bounds.depth {
            return Err(self.stop(format!(
                "`{}` is {depth} folders deep, and a walk goes at most {} deep",
                path.display(),
                self.bounds.depth
            )));
        }
        let list = match std::fs::read_dir(path) {
            Ok(list) => list,
            Err(e) => {
                self.diags.push(Diagnostic::error(path, None, format!("cannot read: {}", io_reason(&e))));
                return Ok(());
            }
        };
        let mut entries = Vec::new();
        for entry in list {
            self.read += 1;
            if self.read > self.bounds.entries {
                return Err(self.stop(format!("it reaches more than {} entries", self.bounds.entries)));
            }
            match entry.and_then(|e| Ok((e.file_name(), e.file_type()?))) {
                Ok((name, _)) if name.to_string_lossy().starts_with('.') => {}
                Ok(entry) => entries.push(entry),
                Err(e) => self.diags.push(Diagnostic::error(path, None, format!("cannot read: {}", io_reason(&e)))),
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, kind) in entries {
            let child = if path == Path::new(".") { PathBuf::from(&name) } else { path.join(&name) };
            if kind.is_dir() {
                let inner = resolved.join(&name);
                if self.visited.insert(inner.clone()) {
                    self.dir(&child, &inner, depth + 1)?;
                }
            } else if kind.is_symlink() {
                match std::fs::metadata(&child) {
                    Ok(m) if m.is_dir() => {
                        self.links.push_back(Link { path: child, within: resolved.to_path_buf(), depth: depth + 1 });
                    }
                    Ok(_) => self.take(child),
                    Err(e) => {
                        self.diags.push(Diagnostic::error(&child, None, format!("cannot read: {}", io_reason(&e))))
                    }
                }
            } else {
                self.take(child);
            }
        }
        Ok(())
    }

    /// Follows a link to a folder: refused when it leads out of the repository (for the
    /// repository's inputs), reported when it leads back to a folder it is in (a loop), skipped
    /// when its folder was read already.
    fn follow(&mut self, link: Link) -> Result<(), Stopped> {
        if let Some(repo) = &self.input.confine_to
            && !folder_confined(repo, self.input, &link.path, &mut self.diags)
        {
            return Ok(());
        }
        let resolved = match std::fs::canonicalize(&link.path) {
            Ok(p) => p,
            Err(e) => {
                self.diags.push(Diagnostic::error(&link.path, None, format!("cannot read: {}", io_reason(&e))));
                return Ok(());
            }
        };
        if link.within.starts_with(&resolved) {
            self.diags.push(Diagnostic::error(&link.path, None, "symbolic link loop in manifest folder; skipped"));
            return Ok(());
        }
        if !self.visited.insert(resolved.clone()) {
            return Ok(());
        }
        self.dir(&link.path, &resolved, link.depth)
    }

    /// Keeps a file that is not a folder when the input wants it.
    fn take(&mut self, path: PathBuf) {
        let wanted = match self.matcher {
            Some(m) => {
                let base = &self.input.base;
                let rel = if base == Path::new(".") || base.as_os_str().is_empty() {
                    &path
                } else {
                    path.strip_prefix(base).unwrap_or(&path)
                };
                m.is_match(rel)
            }
            None => path.extension().is_some_and(|x| x == "yaml" || x == "yml"),
        };
        if wanted {
            self.found.push(path);
        }
    }

    /// The one error of a walk cut short by a bound, naming what was walked and the bound.
    fn stop(&self, why: String) -> Stopped {
        let what = if is_glob(&self.input.pattern) {
            format!("glob `{}`", self.input.pattern)
        } else {
            format!("folder `{}`", self.start.display())
        };
        let (file, pos) = match &self.input.origin {
            Some(origin) => (origin.clone(), self.input.pos),
            None => (self.start.to_path_buf(), None),
        };
        Stopped(Box::new(
            Diagnostic::error(file, pos, format!("manifest {what} not searched: {why}"))
                .with_hint("name smaller folders, or a narrower glob, that hold only manifests"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(base: &Path, pattern: &str) -> ManifestInput {
        ManifestInput {
            base: base.to_path_buf(),
            pattern: pattern.into(),
            origin: None,
            pos: None,
            confine_to: Some(base.to_path_buf()),
        }
    }

    // The end-to-end tests reach the depth bound; this one the entry bound, made small.
    #[test]
    fn a_walk_stops_at_its_entry_bound_with_one_error_and_keeps_nothing_else() {
        let d = tempfile::tempdir().expect("tmp");
        for i in 0..20 {
            std::fs::create_dir_all(d.path().join(format!("manifests/{i:02}"))).expect("mkdir");
            std::fs::write(d.path().join(format!("manifests/{i:02}/m.yaml")), "x").expect("write");
        }
        // An error met before the bound gives way to the bound's one error.
        std::os::unix::fs::symlink("nowhere.yaml", d.path().join("manifests/00/gone.yaml")).expect("symlink");
        for pattern in ["manifests", "manifests/**/*.yaml"] {
            let mut diags = Diagnostics::default();
            let files = discover_within(&[input(d.path(), pattern)], Bounds { entries: 30, depth: 8 }, &mut diags);
            assert!(files.is_empty(), "{pattern}: {files:?}");
            assert_eq!(diags.items().len(), 1, "{pattern}: {diags:?}");
            let message = &diags.items()[0].message;
            assert!(message.contains("reaches more than 30 entries"), "{pattern}: {message}");
            assert!(message.contains(if pattern.contains('*') { pattern } else { "folder `" }), "{message}");

            let mut diags = Diagnostics::default();
            let files = discover_within(&[input(d.path(), pattern)], Bounds { entries: 50, depth: 8 }, &mut diags);
            assert_eq!((files.len(), diags.items().len()), (20, 1), "{pattern}: {diags:?}");
            assert!(diags.items()[0].message.starts_with("cannot read"), "{diags:?}");
        }
    }

    // Links that branch and join again: each folder is read once, however many names lead to it.
    #[test]
    fn a_folder_reached_through_many_links_is_read_once() {
        let d = tempfile::tempdir().expect("tmp");
        for level in 0..30 {
            let dir = d.path().join(format!("manifests/l{level:02}"));
            std::fs::create_dir_all(&dir).expect("mkdir");
            std::fs::write(dir.join("m.yaml"), "x").expect("write");
            for via in ["a", "b"] {
                std::os::unix::fs::symlink(format!("../l{:02}", level + 1), dir.join(via)).expect("symlink");
            }
        }
        std::fs::create_dir_all(d.path().join("manifests/l30")).expect("mkdir");
        let mut diags = Diagnostics::default();
        let files = discover_within(&[input(d.path(), "manifests")], Bounds { entries: 1000, depth: 64 }, &mut diags);
        assert_eq!((files.len(), diags.items().len()), (30, 0), "{diags:?}");
        let through_a_link = |f: &PathBuf| f.components().any(|c| c.as_os_str() == "a" || c.as_os_str() == "b");
        assert!(!files.iter().any(through_a_link), "each file under its own name: {files:?}");
    }
}

//! The module graph stays a graph without cycles: no module of `src/` reaches itself through the
//! `crate::` paths of its non-test code (ARCHITECTURE.md, "Dependencies between modules"). A
//! module is a top-level one, except inside `core/` and `ci/`, whose parts are each their own (the
//! ledger's model uses an action's identity and an attempt's provenance, and the plan uses the
//! ledger's model). A new arrow
//! that closes a loop fails here, naming the modules in it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every `.rs` file under `dir`, with its path relative to `src/`.
fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(concat!(env!("CARGO_MANIFEST_DIR"), "/src")).expect("under src");
            out.push((rel.to_string_lossy().into_owned(), std::fs::read_to_string(&path).expect("read")));
        }
    }
}

/// Directories whose children are modules of their own in the graph.
const SPLIT: [&str; 2] = ["core", "ci"];

/// The module a file of `src/` belongs to: `ledger/blob.rs` → `ledger`, `core/plan.rs` →
/// `core::plan`, `core/policy/check.rs` → `core::policy`.
fn module_of(rel: &str) -> String {
    let parts: Vec<&str> = rel.trim_end_matches(".rs").split('/').collect();
    match parts.as_slice() {
        [top, sub, ..] if SPLIT.contains(top) && *sub != "mod" => format!("{top}::{sub}"),
        [top, ..] => (*top).to_owned(),
        [] => String::new(),
    }
}

/// The lines of a source file's code: its test module and comments left out.
fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
    code.lines().map(|l| l.split("//").next().unwrap_or_default())
}

/// `crate::name` paths in code, as modules (`crate::core::plan::Plan` → `core::plan`).
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in code_lines(text) {
        for (i, _) in line.match_indices("crate::") {
            let path: String = line[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit() || *c == ':')
                .collect();
            let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
            let name = match segments.as_slice() {
                [top, sub, ..] if SPLIT.contains(top) => format!("{top}::{sub}"),
                [top, ..] => (*top).to_owned(),
                [] => continue,
            };
            found.insert(name);
        }
    }
    found
}

#[test]
fn no_two_modules_reach_each_other() {
    let mut files = Vec::new();
    sources(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")), &mut files);
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in &files {
        if rel.ends_with("tests.rs") || rel == "lib.rs" || rel == "main.rs" {
            continue;
        }
        let top = module_of(rel);
        let uses: Vec<String> = crate_paths(text).into_iter().filter(|m| *m != top).collect();
        deps.entry(top).or_default().extend(uses);
    }
    assert!(deps.len() > 20 && deps["core::plan"].contains("ledger"), "the scan sees the modules: {deps:?}");
    // What each module reaches, by following arrows until nothing changes.
    let mut reach = deps.clone();
    loop {
        let mut grew = false;
        for m in deps.keys() {
            let further: BTreeSet<String> =
                reach[m].iter().flat_map(|d| reach.get(d).cloned().unwrap_or_default()).collect();
            let r = reach.get_mut(m).expect("module");
            let before = r.len();
            r.extend(further);
            grew |= r.len() > before;
        }
        if !grew {
            break;
        }
    }
    let loops: Vec<&String> = reach.iter().filter(|(m, r)| r.contains(*m)).map(|(m, _)| m).collect();
    assert!(loops.is_empty(), "modules that reach themselves through crate:: paths: {loops:?}\n{deps:#?}");
}

/// Time comes from one clock (`src/clock.rs`, carried by the session): nothing else in `src/`
/// reads the system's time, so a test can set it. The exceptions stamp this machine's own time
/// where nothing is decided on it: a token's lifetime and assertion (`graph/auth.rs`,
/// `graph/cert.rs`, which Entra judges), the ledger lock's holder stamps (`ledger/lock.rs`,
/// `ledger/backend/blob.rs`, shown to people; a stale lock is judged on the store's clock), and
/// the simulator, which plays Intune's own clock.
#[test]
fn only_the_clock_reads_the_time() {
    const ALLOWED: [&str; 5] =
        ["clock.rs", "graph/auth.rs", "graph/cert.rs", "ledger/lock.rs", "ledger/backend/blob.rs"];
    let mut files = Vec::new();
    sources(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")), &mut files);
    assert!(files.iter().any(|(rel, _)| rel == "clock.rs"), "the scan sees src/clock.rs");
    let readers: Vec<&String> = files
        .iter()
        .filter(|(rel, _)| !rel.starts_with("sim/") && !ALLOWED.contains(&rel.as_str()) && !rel.ends_with("tests.rs"))
        .filter(|(_, text)| code_lines(text).any(|l| l.contains("Timestamp::now()")))
        .map(|(rel, _)| rel)
        .collect();
    assert!(readers.is_empty(), "read the time through crate::clock, not Timestamp::now(): {readers:?}");
}

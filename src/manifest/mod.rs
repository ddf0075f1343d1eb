//! Manifests: finding them, parsing them, validating them, and turning them into [`Action`]s.
//!
//! Pure apart from reading the files named to it: no network, no clock, no environment.

mod action;
mod discover;
pub(crate) mod raw;
pub(crate) mod source;
pub mod validate;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use discover::{ManifestInput, discover};

use crate::core::action::{Action, ActionKey, ActionKind, Collection, Parameters, Selector};
use crate::diag::{Diagnostic, Diagnostics, Pos};
use raw::RawManifest;

/// A validated manifest: `PasscodeReset`, or `DeviceAction` with its action and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub kind: ActionKind,
    /// `spec.parameters`, defaults filled in.
    pub parameters: Parameters,
    pub name: String,
    pub name_pos: Pos,
    pub file: PathBuf,
    /// `metadata.ticket`, `reason`, `requestedBy` with where they stand (policy points at them).
    pub ticket: Option<(String, Pos)>,
    pub reason: Option<(String, Pos)>,
    pub requested_by: Option<(String, Pos)>,
    /// `metadata.formerNames`: what was recorded under these names is this manifest's.
    pub former_names: Vec<(String, Pos)>,
    pub round: u32,
    pub collection: Collection,
    pub devices: Vec<DeviceEntry>,
}

/// What the reviewer needs to see of a manifest next to its name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

/// [`ManifestInfo`] in the JSON of plans and saved plans (docs/contract.md, JSON): `ticket`,
/// `reason`, `requested_by`. Saved plans of format 1 wrote `requestedBy`, which is still read; the
/// ledger keeps its own form.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ManifestJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "requestedBy")]
    pub requested_by: Option<String>,
}

impl From<&ManifestInfo> for ManifestJson {
    fn from(m: &ManifestInfo) -> Self {
        ManifestJson { ticket: m.ticket.clone(), reason: m.reason.clone(), requested_by: m.requested_by.clone() }
    }
}

impl From<ManifestJson> for ManifestInfo {
    fn from(m: ManifestJson) -> Self {
        ManifestInfo { ticket: m.ticket, reason: m.reason, requested_by: m.requested_by }
    }
}

impl ManifestInfo {
    pub(crate) fn of(m: &Manifest) -> Self {
        let text = |v: &Option<(String, crate::diag::Pos)>| {
            v.as_ref().map(|(t, _)| t.trim().to_owned()).filter(|t| !t.is_empty())
        };
        ManifestInfo { ticket: text(&m.ticket), reason: text(&m.reason), requested_by: text(&m.requested_by) }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ticket.is_none() && self.reason.is_none() && self.requested_by.is_none()
    }
}

/// One entry of `spec.devices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceEntry {
    pub selector: Selector,
    pub pos: Pos,
}

impl Manifest {
    /// One action per device entry, in manifest order.
    pub(crate) fn actions(&self) -> impl Iterator<Item = Action> + '_ {
        self.devices.iter().map(|d| Action {
            key: ActionKey::compute(self.kind, &self.parameters, &self.name, self.round, self.collection, &d.selector),
            former_names: self.former_names.iter().map(|(n, _)| n.clone()).collect(),
            former_keys: self
                .former_names
                .iter()
                .map(|(old, _)| {
                    ActionKey::compute(self.kind, &self.parameters, old, self.round, self.collection, &d.selector)
                })
                .collect(),
            kind: self.kind,
            parameters: self.parameters.clone(),
            manifest: self.name.clone(),
            file: self.file.clone(),
            pos: d.pos,
            round: self.round,
            collection: self.collection,
            selector: d.selector.clone(),
        })
    }
}

/// Everything read from a set of manifest files.
#[derive(Debug, Default)]
pub struct Loaded {
    pub(crate) manifests: Vec<Manifest>,
    pub diagnostics: Diagnostics,
}

impl Loaded {
    pub fn actions(&self) -> Vec<Action> {
        self.manifests.iter().flat_map(Manifest::actions).collect()
    }
}

/// Parses and validates every file, collecting every problem, then checks names across files.
/// Files are parsed on every core, in contiguous runs, and the results kept in file order.
pub fn load(files: &[PathBuf], ctx: validate::Context) -> Loaded {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get).min(files.len()).max(1);
    let parts: Vec<Part> = if threads == 1 {
        vec![load_files(files, ctx)]
    } else {
        std::thread::scope(|s| {
            let runs: Vec<_> =
                files.chunks(files.len().div_ceil(threads)).map(|run| s.spawn(move || load_files(run, ctx))).collect();
            runs.into_iter().map(|r| r.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
        })
    };
    let mut loaded = Loaded::default();
    let mut names = Vec::new();
    for part in parts {
        loaded.manifests.extend(part.manifests);
        loaded.diagnostics.extend(part.diagnostics);
        names.extend(part.names);
    }
    check_unique_names(&names, &mut loaded.diagnostics);
    check_former_names(&loaded.manifests, &mut loaded.diagnostics);
    loaded.diagnostics.sort();
    loaded
}

/// What a run of files holds.
#[derive(Default)]
struct Part {
    manifests: Vec<Manifest>,
    diagnostics: Diagnostics,
    names: Vec<NameSite>,
}

fn load_files(files: &[PathBuf], ctx: validate::Context) -> Part {
    let mut part = Part::default();
    for file in files {
        load_file(file, ctx, &mut part);
    }
    part
}

/// Where a `metadata.name` was written: kept for every parsed document, valid or not, so a
/// duplicate name is reported even next to other errors.
struct NameSite {
    name: String,
    file: PathBuf,
    pos: Pos,
}

fn load_file(file: &Path, ctx: validate::Context, part: &mut Part) {
    let diags = &mut part.diagnostics;
    let Some(src) = source::read_text(file, diags) else { return };
    let docs = source::split_documents(&src.text);
    if docs.is_empty() {
        diags.push(Diagnostic::warning(file, None, "file holds no manifest"));
    }
    for doc in docs {
        let Some(raw) = source::parse_document::<RawManifest>(file, &doc, diags) else { continue };
        part.names.push(NameSite {
            name: raw.metadata.name.value.clone(),
            file: file.to_path_buf(),
            pos: source::pos_of(&raw.metadata.name, doc.line_offset).unwrap_or(Pos::new(1, 1)),
        });
        if let Some(m) = validate::validate(raw, file, doc.line_offset, ctx, diags) {
            part.manifests.push(m);
        }
    }
}

/// A former name belongs to one manifest, and is nobody's current name: otherwise two manifests
/// would claim the same records.
fn check_former_names(manifests: &[Manifest], diags: &mut Diagnostics) {
    let current: HashMap<&str, &Manifest> = manifests.iter().map(|m| (m.name.as_str(), m)).collect();
    let mut claimed: HashMap<&str, (&Manifest, Pos)> = HashMap::new();
    for m in manifests {
        for (old, pos) in &m.former_names {
            if let Some(other) = current.get(old.as_str()) {
                diags.push(
                    Diagnostic::error(
                        &m.file,
                        Some(*pos),
                        format!(
                            "formerNames `{old}` is the name of the manifest at {}:{}",
                            other.file.display(),
                            other.name_pos.line
                        ),
                    )
                    .with_hint("a former name must be a name no manifest has any more"),
                );
            } else if let Some((first, at)) = claimed.get(old.as_str()) {
                diags.push(
                    Diagnostic::error(
                        &m.file,
                        Some(*pos),
                        format!(
                            "formerNames `{old}` is also claimed by manifest `{}` at {}:{}",
                            first.name,
                            first.file.display(),
                            at.line
                        ),
                    )
                    .with_hint("records made under one name can belong to one manifest only"),
                );
            } else {
                claimed.insert(old, (m, *pos));
            }
        }
    }
}

fn check_unique_names(names: &[NameSite], diags: &mut Diagnostics) {
    let mut sites: HashMap<&str, Vec<&NameSite>> = HashMap::new();
    for site in names {
        sites.entry(site.name.as_str()).or_default().push(site);
    }
    let mut twice: Vec<Vec<&NameSite>> = sites.into_values().filter(|s| s.len() > 1).collect();
    twice.sort_by_key(|s| (s[0].file.clone(), s[0].pos));
    for group in twice {
        // The name belongs to the manifest that had it first: the one git saw added earliest (so
        // a pull request that copies a manifest is told about its own file), else the first read.
        let keep = oldest(&group).unwrap_or(0);
        let owner = group[keep];
        for (_, site) in group.iter().enumerate().filter(|(i, _)| *i != keep) {
            diags.push(
                Diagnostic::error(&site.file, Some(site.pos), format!("duplicate metadata.name `{}`", site.name))
                    .with_note(format!(
                        "`{}` is the name of the manifest at {}:{}:{}",
                        owner.name,
                        owner.file.display(),
                        owner.pos.line,
                        owner.pos.column
                    ))
                    .with_hint("every manifest needs its own name; renaming one creates new actions"),
            );
        }
    }
}

/// The site whose file git saw added strictly before every other's, when git can tell.
fn oldest(group: &[&NameSite]) -> Option<usize> {
    let files: Vec<&std::path::Path> = group.iter().map(|s| s.file.as_path()).collect();
    let added = crate::ci::git::added_at(&files)?;
    let min = *added.iter().min()?;
    let mut at = added.iter().enumerate().filter(|(_, t)| **t == min).map(|(i, _)| i);
    let first = at.next()?;
    at.next().is_none().then_some(first)
}

//! Loading what a command works on: settings, manifests and the ledger, with every problem in
//! the user's input collected as diagnostics before anything else happens.

use std::path::PathBuf;

use crate::core::action::Action;
use crate::diag::Diagnostics;
use crate::manifest::{self, Manifest, ManifestInput};
use crate::settings::{self, Overrides, Settings};

/// Settings and manifests, validated.
#[derive(Debug)]
pub(crate) struct Project {
    pub settings: Settings,
    pub manifests: Vec<Manifest>,
    pub files: Vec<PathBuf>,
    /// Whether the run was limited to paths given on the command line.
    pub limited: bool,
    /// Warnings (errors stop loading).
    pub diagnostics: Diagnostics,
}

impl Project {
    pub(crate) fn actions(&self) -> Vec<Action> {
        self.manifests.iter().flat_map(Manifest::actions).collect()
    }

    /// What the plan shows of each manifest next to its name.
    pub(crate) fn manifest_infos(&self) -> std::collections::BTreeMap<String, crate::manifest::ManifestInfo> {
        self.manifests.iter().map(|m| (m.name.clone(), crate::manifest::ManifestInfo::of(m))).collect()
    }
}

/// Reads the config and the manifests (those under `paths` when given, else the config's).
/// Returns every diagnostic as `Err` when any of them is an error.
pub(crate) fn load(
    overrides: &Overrides,
    paths: &[PathBuf],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Project, Diagnostics> {
    let (settings, diags) = load_settings(overrides, env);
    load_manifests(settings, paths, diags)
}

/// The first half of [`load`]: the config and environment, with their diagnostics.
pub(crate) fn load_settings(overrides: &Overrides, env: &dyn Fn(&str) -> Option<String>) -> (Settings, Diagnostics) {
    let mut diags = Diagnostics::default();
    let settings = settings::load(overrides, env, &mut diags);
    (settings, diags)
}

/// The settings alone, refused when they have an error (a command that reads no manifest).
pub(crate) fn settings_only(
    overrides: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, super::Error> {
    let (settings, diags) = load_settings(overrides, env);
    if diags.has_errors() {
        return Err(super::Error::Invalid(diags));
    }
    Ok(settings)
}

/// The second half of [`load`]: the manifests, validated, adding to the settings' diagnostics.
pub(crate) fn load_manifests(
    settings: Settings,
    paths: &[PathBuf],
    mut diags: Diagnostics,
) -> Result<Project, Diagnostics> {
    let inputs: Vec<ManifestInput> = if paths.is_empty() {
        settings.manifests.clone()
    } else {
        paths
            .iter()
            .map(|p| ManifestInput {
                base: PathBuf::from("."),
                pattern: p.display().to_string(),
                origin: None,
                pos: None,
                confine_to: None,
            })
            .collect()
    };
    let files = manifest::discover(&inputs, &mut diags);
    let ctx = manifest::validate::Context { beta_api: settings.graph.api_version == crate::settings::ApiVersion::Beta };
    let loaded = manifest::load(&files, ctx);
    diags.extend(loaded.diagnostics);
    diags.sort();
    if diags.has_errors() {
        return Err(diags);
    }
    Ok(Project { settings, manifests: loaded.manifests, files, limited: !paths.is_empty(), diagnostics: diags })
}

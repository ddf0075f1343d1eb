//! JSON Schemas of the manifest and config formats, generated from their serde types.

use std::path::{Path, PathBuf};

use crate::manifest::raw::RawManifest;
use crate::settings::RawConfig;

/// Every schema this build publishes: file name and content.
pub(crate) fn all() -> Vec<(&'static str, String)> {
    vec![
        ("manifest.v1.json", to_string(schemars::schema_for!(RawManifest))),
        ("config.v1.json", to_string(schemars::schema_for!(RawConfig))),
    ]
}

fn to_string(schema: schemars::Schema) -> String {
    let mut s = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    s.push('\n');
    s
}

/// Writes every schema into `dir`, creating it; returns the paths written.
pub(crate) fn write_all(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    all()
        .into_iter()
        .map(|(name, text)| {
            let path = dir.join(name);
            std::fs::write(&path, text)?;
            Ok(path)
        })
        .collect()
}

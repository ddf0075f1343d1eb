//! JSON Schemas of the manifest and config formats, generated from their serde types.

use std::path::{Path, PathBuf};

use crate::manifest::raw::RawManifest;
use crate::settings::RawConfig;

/// Every schema this build publishes: file name and content.
pub(crate) fn all() -> Vec<(&'static str, String)> {
    vec![
        ("manifest.v1.json", to_string(with_kinds(schemars::schema_for!(RawManifest)))),
        ("config.v1.json", to_string(schemars::schema_for!(RawConfig))),
    ]
}

/// The manifest schema with one `oneOf` branch per kind of action: `PasscodeReset` takes no
/// `spec.action`; `DeviceAction` names one (a `const` each, so editors complete it) with the
/// parameters that action takes, and nothing else.
fn with_kinds(mut schema: schemars::Schema) -> schemars::Schema {
    use serde_json::{Value, json};
    let mut branches = vec![json!({
        "title": "PasscodeReset",
        "properties": {
            "kind": { "const": "PasscodeReset" },
            "spec": { "not": { "anyOf": [{ "required": ["action"] }, { "required": ["parameters"] }] } }
        }
    })];
    for kind in crate::core::kinds::ALL {
        let spec = kind.spec();
        let parameters: Value = if spec.params.is_empty() {
            Value::Bool(false)
        } else {
            let properties: serde_json::Map<String, Value> = spec
                .params
                .iter()
                .map(|p| {
                    let ty = match p.ty {
                        crate::core::kinds::ParamType::Bool => json!({ "type": "boolean", "default": false }),
                        crate::core::kinds::ParamType::Text(max) => {
                            json!({ "type": "string", "minLength": 1, "maxLength": max })
                        }
                    };
                    let mut ty = ty;
                    ty["description"] = Value::String(p.doc.to_owned());
                    (p.name.to_owned(), ty)
                })
                .collect();
            json!({ "type": "object", "additionalProperties": false, "properties": properties })
        };
        let beta = if spec.beta_only { " Beta API only (`graph.apiVersion: beta`)." } else { "" };
        branches.push(json!({
            "title": format!("DeviceAction {}", spec.graph_name),
            "description": format!("{} ({}).{beta}", spec.wording.noun, spec.class.as_str()),
            "properties": {
                "kind": { "const": "DeviceAction" },
                "spec": {
                    "required": ["action"],
                    "properties": { "action": { "const": spec.graph_name }, "parameters": parameters }
                }
            }
        }));
    }
    schema.insert("oneOf".to_owned(), Value::Array(branches));
    schema
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

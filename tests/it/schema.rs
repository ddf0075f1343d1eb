//! The committed JSON Schemas must match what the types generate.

use crate::common::Repo;

#[test]
fn committed_schemas_are_up_to_date() {
    let repo = Repo::empty();
    repo.cmd().args(["schema", "--out", "out"]).assert().success();
    let committed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    for name in ["manifest.v1.json", "config.v1.json"] {
        let fresh = repo.read(&format!("out/{name}"));
        let old = std::fs::read_to_string(committed.join(name)).unwrap_or_default();
        assert!(fresh == old, "schemas/{name} is stale: run `cargo run -- schema` and commit the result");
    }
}

#[test]
fn the_manifest_schema_knows_the_format() {
    let repo = Repo::empty();
    let out = repo.cmd().args(["schema", "--print", "manifest"]).output().expect("run");
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["properties"]["apiVersion"]["const"], "intune-reconcile/v1");
    let device = &schema["$defs"]["RawDevice"];
    assert_eq!(device["maxProperties"], 1);
    assert!(device["properties"]["id"]["pattern"].is_string());
}

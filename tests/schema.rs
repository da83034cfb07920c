//! The checked-in JSON Schema is current, strict, and agrees with the loader.

use std::path::Path;

use invok::api::{json_schema, ScalingDefaults};

fn checked_in() -> serde_json::Value {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/functionpool.schema.json"),
    )
    .expect("schemas/functionpool.schema.json exists");
    serde_json::from_str(&text).expect("the checked-in schema is JSON")
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&checked_in()).expect("the checked-in schema is a valid JSON Schema")
}

fn example_documents() -> Vec<(String, serde_json::Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests");
    let mut docs = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
            docs.push((file.display().to_string(), value));
        }
    }
    assert!(docs.len() >= 5, "manifests/ holds the five examples");
    docs
}

#[test]
fn the_checked_in_schema_matches_what_invok_schema_prints() {
    assert_eq!(
        checked_in(),
        json_schema(),
        "schemas/functionpool.schema.json is stale: run `cargo run -- schema > schemas/functionpool.schema.json`"
    );
}

#[test]
fn the_cli_prints_the_same_schema() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_invok"))
        .arg("schema")
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, checked_in());
}

#[test]
fn every_example_manifest_is_valid_against_the_schema_and_the_loader() {
    let v = validator();
    for (file, doc) in example_documents() {
        let errors: Vec<String> = v.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{file}: {errors:?}");
    }
    let set = invok::manifest::load_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests"),
        &ScalingDefaults::default(),
    )
    .unwrap();
    assert!(set.is_clean(), "{:?}", set.errors);
    assert_eq!(set.pools.len(), 5);
}

#[test]
fn the_schema_rejects_an_unknown_field_anywhere() {
    let v = validator();
    let (_, good) = example_documents().remove(0);
    for pointer in ["", "/metadata", "/spec"] {
        let mut doc = good.clone();
        doc.pointer_mut(pointer)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .insert("bogus".into(), 1.into());
        assert!(!v.is_valid(&doc), "unknown field at {pointer:?} accepted");
    }
    let mut doc = good.clone();
    doc["spec"]["scaling"] = serde_json::json!({"maxContainer": 3});
    assert!(!v.is_valid(&doc), "a typo in scaling accepted");
}

#[test]
fn the_schema_rejects_a_missing_image_and_a_wrong_kind() {
    let v = validator();
    let (_, good) = example_documents().remove(0);
    let mut doc = good.clone();
    doc["spec"].as_object_mut().unwrap().remove("image");
    assert!(!v.is_valid(&doc), "missing image accepted");
    let mut doc = good.clone();
    doc["kind"] = "Deployment".into();
    assert!(!v.is_valid(&doc), "wrong kind accepted");
    let mut doc = good.clone();
    doc["metadata"]["name"] = "Not_A_Label".into();
    assert!(!v.is_valid(&doc), "bad name accepted");
    let mut doc = good;
    doc["spec"]["port"] = 70000.into();
    assert!(!v.is_valid(&doc), "port out of range accepted");
}

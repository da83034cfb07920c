//! `invok export`: the checked-in CRD is current and structural, its schema agrees with
//! the examples, and `export kubernetes` prints the objects kubectl expects.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Map, Value};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs the binary without the seed's variables, so the defaults are the seed's.
fn invok(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_invok"));
    for var in [
        "CPU_OVERLOAD_THRESHOLD",
        "MEMORY_OVERLOAD_THRESHOLD",
        "COOLDOWN_CPU_THRESHOLD",
        "COOLDOWN_DURATION_SECS",
        "MIN_CONTAINERS_PER_FUNCTION",
        "MAX_CONTAINERS_PER_FUNCTION",
        "POLL_INTERVAL_SECS",
    ] {
        cmd.env_remove(var);
    }
    cmd.args(args).output().unwrap()
}

fn checked_in_crd() -> String {
    std::fs::read_to_string(repo("schemas/functionpool.crd.yaml"))
        .expect("schemas/functionpool.crd.yaml exists")
}

/// The CRD's `openAPIV3Schema`, read from the checked-in file.
fn crd_schema() -> Value {
    let crd: Value = serde_yaml::from_str(&checked_in_crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn yaml_documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn example_documents() -> Vec<(String, Value)> {
    let mut files: Vec<_> = std::fs::read_dir(repo("manifests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let docs: Vec<_> = files
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            yaml_documents(&text)
                .into_iter()
                .map(|d| (f.display().to_string(), d))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(docs.len() >= 5, "manifests/ holds the five examples");
    docs
}

// --- The checked-in CRD ------------------------------------------------------------

#[test]
fn the_checked_in_crd_matches_what_invok_export_crd_prints() {
    assert!(
        checked_in_crd() == invok::export::crd_yaml(),
        "schemas/functionpool.crd.yaml is stale: run `cargo run -- export crd > schemas/functionpool.crd.yaml`"
    );
    let out = invok(&["export", "crd"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), checked_in_crd());
}

#[test]
fn the_crd_is_one_apiextensions_v1_document_for_invok_dev() {
    let docs = yaml_documents(&checked_in_crd());
    assert_eq!(docs.len(), 1);
    let crd = &docs[0];
    assert_eq!(crd["apiVersion"], "apiextensions.k8s.io/v1");
    assert_eq!(crd["kind"], "CustomResourceDefinition");
    assert_eq!(crd["metadata"]["name"], "functionpools.invok.dev");
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["fp"]));
    assert_eq!(
        crd["spec"]["versions"][0]["subresources"]["status"],
        json!({})
    );
}

// --- Structural schema -------------------------------------------------------------

/// Keywords the API server's JSONSchemaProps knows; anything else is dropped silently.
const KNOWN_KEYWORDS: &[&str] = &[
    "description",
    "type",
    "format",
    "title",
    "default",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "multipleOf",
    "enum",
    "maxProperties",
    "minProperties",
    "required",
    "items",
    "allOf",
    "oneOf",
    "anyOf",
    "not",
    "properties",
    "additionalProperties",
    "nullable",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-list-type",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
];

#[derive(Clone, Copy, PartialEq)]
enum Level {
    Root,
    Field,
    Item,
}

/// The rules of Kubernetes' structural schemas (apiextensions-apiserver's
/// `schema/validation.go`), plus what the CRD API validation rejects outright.
fn structural_violations(schema: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    walk(schema, "openAPIV3Schema", Level::Root, &mut errors);
    errors
}

fn walk(node: &Value, path: &str, level: Level, errors: &mut Vec<String>) {
    let Some(n) = node.as_object() else {
        errors.push(format!("{path}: must be an object, got {node}"));
        return;
    };
    let mut err = |msg: &str| errors.push(format!("{path}: {msg}"));
    for key in n.keys() {
        if !KNOWN_KEYWORDS.contains(&key.as_str()) {
            err(&format!("{key}: not a JSONSchemaProps keyword"));
        }
    }
    let is_true = |k: &str| n.get(k) == Some(&json!(true));
    let int_or_string = is_true("x-kubernetes-int-or-string");
    let preserve = is_true("x-kubernetes-preserve-unknown-fields");
    let ty = n.get("type");
    match ty {
        None if !int_or_string && !preserve => err("type: must not be empty"),
        Some(Value::String(t)) if t == "null" => err("type: null is not a Kubernetes type"),
        Some(Value::String(_)) | None => {}
        Some(t) => err(&format!("type: must be one string, got {t} (use nullable)")),
    }
    if int_or_string && ty.is_some() {
        err("type: must be empty with x-kubernetes-int-or-string");
    }
    if int_or_string && preserve {
        err("x-kubernetes-preserve-unknown-fields: must be false with x-kubernetes-int-or-string");
    }
    if level == Level::Root {
        if ty != Some(&json!("object")) {
            err("type: must be object at the root");
        }
        if n.contains_key("additionalProperties") {
            err("additionalProperties: must not be used at the root");
        }
    }
    if n.contains_key("properties") && n.contains_key("additionalProperties") {
        err("properties and additionalProperties are mutually exclusive");
    }
    if ty == Some(&json!("array")) && !n.get("items").is_some_and(Value::is_object) {
        err("items: must be one schema for an array");
    }
    if is_true("uniqueItems") {
        err("uniqueItems: must not be true");
    }
    for bound in ["exclusiveMinimum", "exclusiveMaximum"] {
        if n.get(bound).is_some_and(|b| !b.is_boolean()) {
            err(&format!("{bound}: must be a boolean (OpenAPI 3.0)"));
        }
    }
    if n.contains_key("format") && matches!(ty.and_then(Value::as_str), Some("integer" | "number"))
    {
        err("format: numeric formats are not recognized (a warning on every apply)");
    }
    let ios_pattern = json!([{"type": "integer"}, {"type": "string"}]);
    for junctor in ["anyOf", "oneOf", "allOf"] {
        if let Some(list) = n.get(junctor) {
            if junctor == "anyOf" && int_or_string && list == &ios_pattern {
                continue;
            }
            for (i, nested) in list.as_array().into_iter().flatten().enumerate() {
                nested_violations(nested, &format!("{path}.{junctor}[{i}]"), errors);
            }
        }
    }
    if let Some(not) = n.get("not") {
        nested_violations(not, &format!("{path}.not"), errors);
    }
    if let Some(Value::Object(props)) = n.get("properties") {
        for (k, v) in props {
            let child = format!("{path}.properties[{k}]");
            if level == Level::Root && k == "metadata" {
                metadata_violations(v, &child, errors);
            }
            walk(v, &child, Level::Field, errors);
        }
    }
    if let Some(items) = n.get("items") {
        walk(items, &format!("{path}.items"), Level::Item, errors);
    }
    if let Some(ap @ Value::Object(_)) = n.get("additionalProperties") {
        walk(
            ap,
            &format!("{path}.additionalProperties"),
            Level::Field,
            errors,
        );
    }
}

/// Under a logic junctor only value validations are allowed.
fn nested_violations(node: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(n) = node.as_object() else { return };
    for key in [
        "type",
        "description",
        "title",
        "default",
        "nullable",
        "additionalProperties",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-int-or-string",
        "x-kubernetes-embedded-resource",
        "$ref",
    ] {
        if n.contains_key(key) {
            errors.push(format!("{path}.{key}: must be empty to be structural"));
        }
    }
    if let Some(Value::Object(props)) = n.get("properties") {
        for (k, v) in props {
            nested_violations(v, &format!("{path}.properties[{k}]"), errors);
        }
    }
    if let Some(items) = n.get("items") {
        nested_violations(items, &format!("{path}.items"), errors);
    }
}

/// The root's metadata may be `type: object` and restrict `name` and `generateName`.
fn metadata_violations(node: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(n) = node.as_object() else { return };
    for key in n.keys() {
        if key != "type" && key != "properties" {
            errors.push(format!(
                "{path}.{key}: metadata may restrict only name and generateName"
            ));
        }
    }
    if let Some(Value::Object(props)) = n.get("properties") {
        for key in props.keys() {
            if key != "name" && key != "generateName" {
                errors.push(format!(
                    "{path}.properties[{key}]: metadata may restrict only name and generateName"
                ));
            }
        }
    }
}

#[test]
fn the_crd_schema_is_structural() {
    let violations = structural_violations(&crd_schema());
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn the_structural_check_catches_what_the_api_server_rejects() {
    let cases = [
        (
            json!({"type": "object", "properties": {"a": {"$ref": "#/x"}}}),
            "$ref",
        ),
        (
            json!({"type": "object", "properties": {"a": {"description": "untyped"}}}),
            "type: must not be empty",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": ["string", "null"]}}}),
            "use nullable",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {"type": "string"}}, "additionalProperties": false}}}),
            "mutually exclusive",
        ),
        (
            json!({"type": "object", "properties": {"a": {"anyOf": [{"type": "integer"}, {"type": "string"}]}}}),
            "anyOf[0].type",
        ),
        (
            json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}}}),
            "only name and generateName",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "number", "exclusiveMinimum": 0}}}),
            "boolean",
        ),
        (
            json!({"type": "object", "additionalProperties": {"type": "string"}}),
            "at the root",
        ),
    ];
    for (schema, expected) in cases {
        let v = structural_violations(&schema);
        assert!(
            v.iter().any(|e| e.contains(expected)),
            "{schema} should violate {expected:?}: {v:?}"
        );
    }
    let fine = json!({"type": "object", "properties": {"q": {
        "x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]
    }}});
    assert_eq!(structural_violations(&fine), Vec::<String>::new());
}

// --- The schema against the examples ---------------------------------------------

/// The CRD's OpenAPI 3.0 schema as a JSON Schema (2020-12) validator sees it: `nullable`
/// and `x-kubernetes-int-or-string` become types, boolean exclusive bounds numbers. With
/// `strict`, objects without `x-kubernetes-preserve-unknown-fields` refuse unknown
/// fields, as the API server flags them under field validation Strict (and otherwise
/// prunes them). The root's `metadata` stays open: the API server checks it as ObjectMeta.
fn as_json_schema(node: &Value, strict: bool) -> Value {
    convert(node, strict, true)
}

fn convert(node: &Value, strict: bool, root: bool) -> Value {
    let Some(n) = node.as_object() else {
        return node.clone();
    };
    let mut out: Map<String, Value> = Map::new();
    let is_true = |k: &str| n.get(k) == Some(&json!(true));
    for (k, v) in n {
        match k.as_str() {
            "nullable" | "x-kubernetes-int-or-string" | "x-kubernetes-preserve-unknown-fields" => {}
            "exclusiveMinimum" | "exclusiveMaximum" => {
                let bound = if k == "exclusiveMinimum" {
                    "minimum"
                } else {
                    "maximum"
                };
                if v == &json!(true) {
                    out.insert(k.clone(), n[bound].clone());
                }
            }
            "minimum" | "maximum" => {
                let exclusive = if k == "minimum" {
                    "exclusiveMinimum"
                } else {
                    "exclusiveMaximum"
                };
                if !is_true(exclusive) {
                    out.insert(k.clone(), v.clone());
                }
            }
            "properties" => {
                let props = v
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(name, p)| {
                        let open_metadata = root && name == "metadata";
                        (name.clone(), convert(p, strict && !open_metadata, false))
                    })
                    .collect();
                out.insert(k.clone(), Value::Object(props));
            }
            "items" | "additionalProperties" | "not" => {
                out.insert(k.clone(), convert(v, strict, false));
            }
            "anyOf" | "oneOf" | "allOf" => {
                let list = v
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| convert(s, strict, false))
                    .collect();
                out.insert(k.clone(), Value::Array(list));
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    let mut types: Vec<Value> = match n.get("type") {
        Some(t) => vec![t.clone()],
        None if is_true("x-kubernetes-int-or-string") => vec![json!("integer"), json!("string")],
        None => vec![],
    };
    if !types.is_empty() {
        if is_true("nullable") {
            types.push(json!("null"));
        }
        out.insert(
            "type".into(),
            if types.len() == 1 {
                types.remove(0)
            } else {
                Value::Array(types)
            },
        );
    }
    let object = n.get("type") == Some(&json!("object"));
    if strict
        && object
        && !is_true("x-kubernetes-preserve-unknown-fields")
        && !n.contains_key("additionalProperties")
    {
        out.insert("additionalProperties".into(), false.into());
    }
    Value::Object(out)
}

fn validator(strict: bool) -> jsonschema::Validator {
    jsonschema::validator_for(&as_json_schema(&crd_schema(), strict))
        .expect("the converted CRD schema is a valid JSON Schema")
}

#[test]
fn the_crd_schema_accepts_every_example_manifest() {
    for strict in [false, true] {
        let v = validator(strict);
        for (file, doc) in example_documents() {
            let errors: Vec<String> = v.iter_errors(&doc).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{file} (strict: {strict}): {errors:?}");
        }
    }
}

#[test]
fn strict_field_validation_flags_an_unknown_field_anywhere_in_the_spec() {
    let v = validator(true);
    let (_, full) = example_documents()
        .into_iter()
        .find(|(f, _)| f.ends_with("full.yaml"))
        .unwrap();
    assert!(v.is_valid(&full));
    for pointer in [
        "",
        "/spec",
        "/spec/scaling",
        "/spec/resources",
        "/spec/readiness",
        "/spec/env/0",
    ] {
        let mut doc = full.clone();
        doc.pointer_mut(pointer)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .insert("bogus".into(), 1.into());
        assert!(!v.is_valid(&doc), "unknown field at {pointer:?} accepted");
    }
    let mut doc = full.clone();
    doc["spec"]["scaling"]["maxContainer"] = 3.into();
    assert!(!v.is_valid(&doc), "a typo in scaling accepted");
    // Without strict validation the API server prunes what it does not know; the same
    // document passes, which is why the CRD alone cannot replace `invok validate`.
    assert!(validator(false).is_valid(&doc));
}

#[test]
fn the_crd_schema_rejects_what_the_json_schema_rejects() {
    let v = validator(false);
    let (_, full) = example_documents()
        .into_iter()
        .find(|(f, _)| f.ends_with("full.yaml"))
        .unwrap();
    let bad = [
        ("/spec/port", json!(70000)),
        ("/spec/port", json!(0)),
        ("/spec/image", json!("")),
        ("/metadata/name", json!("Not_A_Label")),
        ("/spec/scaling/cpuOverloadThreshold", json!(0)),
        ("/spec/scaling/cpuOverloadThreshold", json!(1.5)),
        ("/spec/scaling/maxContainers", json!(0)),
        ("/spec/scaling/memoryOverloadThreshold", json!("lots")),
        ("/spec/scaling/cooldownDuration", json!(-1)),
        ("/spec/scaling/cooldownDuration", json!(true)),
        ("/spec/resources/cpus", json!(0)),
        ("/spec/readiness/path", json!("healthz")),
    ];
    for (pointer, value) in bad {
        let mut doc = full.clone();
        *doc.pointer_mut(pointer).unwrap() = value.clone();
        assert!(!v.is_valid(&doc), "{pointer} = {value} accepted");
    }
    let mut doc = full.clone();
    doc["spec"].as_object_mut().unwrap().remove("image");
    assert!(!v.is_valid(&doc), "missing image accepted");
    // Quantities and durations take both forms, and null where the field is optional.
    for (pointer, value) in [
        ("/spec/scaling/memoryOverloadThreshold", json!(300000000)),
        ("/spec/scaling/cooldownDuration", json!("1m30s")),
        ("/spec/resources/memory", Value::Null),
    ] {
        let mut doc = full.clone();
        *doc.pointer_mut(pointer).unwrap() = value.clone();
        assert!(v.is_valid(&doc), "{pointer} = {value} rejected");
    }
}

// --- invok export kubernetes -----------------------------------------------------

fn kinds_and_names(docs: &[Value]) -> Vec<(String, String, String)> {
    docs.iter()
        .map(|d| {
            (
                d["apiVersion"].as_str().unwrap().to_string(),
                d["kind"].as_str().unwrap().to_string(),
                d["metadata"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn expected_objects(pools: &[&str]) -> Vec<(String, String, String)> {
    pools
        .iter()
        .flat_map(|p| {
            [
                ("apps/v1", "Deployment"),
                ("v1", "Service"),
                ("autoscaling/v2", "HorizontalPodAutoscaler"),
            ]
            .map(|(a, k)| (a.to_string(), k.to_string(), p.to_string()))
        })
        .collect()
}

const POOLS: [&str; 5] = ["cpu-heavy", "full", "hello", "scale-to-zero", "signals"];

#[test]
fn export_kubernetes_prints_a_deployment_service_and_hpa_per_example_pool() {
    let out = invok(&[
        "export",
        "kubernetes",
        "-f",
        repo("manifests").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with("---\napiVersion: apps/v1\nkind: Deployment\n"),
        "{stdout}"
    );
    let docs = yaml_documents(&stdout);
    assert_eq!(kinds_and_names(&docs), expected_objects(&POOLS));
    // What does not carry over is said, per pool and field.
    for needle in [
        "scale-to-zero: spec.scaling.minContainers: 0 (scale to zero)",
        "full: spec.scaling.targetConcurrency:",
        "full: spec.scaling.cooldownCpuThreshold:",
        "full: spec.timeout:",
        "cpu-heavy: spec.scaling.pollInterval:",
        "signals: spec.scaling.targetRequestsPerSecond:",
        "signals: spec.scaling.customMetrics[0]:",
        "signals: spec.scaling.predictive: not expressible",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
    assert!(
        !stderr.contains("hello:"),
        "the minimal pool exports cleanly: {stderr}"
    );
    for line in stderr.lines() {
        assert!(
            line.starts_with("warning: manifests/") || line.starts_with("warning: /"),
            "{line}"
        );
    }
}

#[test]
fn export_kubernetes_writes_one_file_per_object_into_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("k8s");
    let out = invok(&[
        "export",
        "kubernetes",
        "-f",
        repo("manifests/hello.yaml").to_str().unwrap(),
        "-f",
        repo("manifests/full.yaml").to_str().unwrap(),
        "-o",
        out_dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut files: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "full-deployment.yaml",
            "full-hpa.yaml",
            "full-service.yaml",
            "hello-deployment.yaml",
            "hello-hpa.yaml",
            "hello-service.yaml",
        ]
    );
    let deployment =
        yaml_documents(&std::fs::read_to_string(out_dir.join("full-deployment.yaml")).unwrap());
    assert_eq!(deployment.len(), 1);
    assert_eq!(deployment[0]["kind"], "Deployment");
    assert_eq!(deployment[0]["spec"]["replicas"], 2);
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        printed.lines().count(),
        6,
        "one written path per line: {printed}"
    );
}

#[test]
fn export_kubernetes_reads_standard_input() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_invok"))
        .args(["export", "kubernetes", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(repo("manifests/hello.yaml")).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = yaml_documents(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(kinds_and_names(&docs), expected_objects(&["hello"]));
}

#[test]
fn export_kubernetes_of_an_invalid_manifest_reports_file_line_column_and_prints_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("web.yaml");
    std::fs::write(
        &bad,
        "apiVersion: invok.dev/v1alpha1\nkind: FunctionPool\nmetadata:\n  name: web\nspec:\n  image: x\n  scaling:\n    maxContainer: 3\n",
    )
    .unwrap();
    let out = invok(&["export", "kubernetes", "-f", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:8:5: spec.scaling.maxContainer: unknown field",
            bad.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean maxContainers?"), "{stderr}");
}

#[test]
fn export_kubernetes_of_a_pool_kubernetes_cannot_name_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("digits.yaml");
    std::fs::write(
        &file,
        "apiVersion: invok.dev/v1alpha1\nkind: FunctionPool\nmetadata:\n  name: 9lives\nspec:\n  image: x\n",
    )
    .unwrap();
    let out = invok(&["export", "kubernetes", "-f", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:1:1: metadata.name:", file.display())),
        "{stderr}"
    );
}

#[test]
fn export_kubernetes_without_any_pool_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    )
    .unwrap();
    let out = invok(&["export", "kubernetes", "-f", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("notice:") && stderr.contains("no FunctionPool"),
        "{stderr}"
    );
}

#[test]
fn export_with_a_bad_usage_exits_2() {
    assert_eq!(invok(&["export"]).status.code(), Some(2));
    assert_eq!(invok(&["export", "kubernetes"]).status.code(), Some(2));
}

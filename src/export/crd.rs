//! The `FunctionPool` CustomResourceDefinition, with its schema derived from [`crate::api`].
//!
//! The API server only accepts *structural* schemas: every node typed, no `$ref`, no
//! `additionalProperties: false` beside `properties`, no types under `anyOf`, `nullable`
//! instead of `type: [x, "null"]`, and a root `metadata` that restricts nothing but the
//! name. The schema comes from the same Rust types as `schemas/functionpool.schema.json`,
//! generated with the settings kube-derive uses (OpenAPI 3.0, subschemas inlined, kube's
//! [`StructuralSchemaRewriter`]); the few rewrites kube does not make for our types are the
//! small transforms below, each tested on its own.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube_core::schema::{OptionalEnum, OptionalIntOrString, StructuralSchemaRewriter};
use schemars::generate::SchemaSettings;
use schemars::transform::{transform_subschemas, AddNullable, Transform};
use schemars::Schema;
use serde_json::{json, Map, Value};

use crate::api::{FunctionPool, GROUP, KIND, VERSION};

/// `spec.names.plural`: `kubectl get functionpools`.
pub const PLURAL: &str = "functionpools";
/// `spec.names.singular`.
pub const SINGULAR: &str = "functionpool";
/// `spec.names.shortNames`: `kubectl get fp`.
pub const SHORT_NAME: &str = "fp";
/// The CRD's own name, `<plural>.<group>`.
pub const CRD_NAME: &str = "functionpools.invok.dev";

/// The CustomResourceDefinition that lets a cluster store `FunctionPool` objects, as
/// `invok export crd` prints it.
///
/// ```
/// let crd = invok::export::crd();
/// assert_eq!(crd.metadata.name.as_deref(), Some("functionpools.invok.dev"));
/// assert_eq!(crd.spec.versions[0].name, "v1alpha1");
/// ```
pub fn crd() -> apiext::CustomResourceDefinition {
    let schema: apiext::JSONSchemaProps = serde_json::from_value(crd_schema())
        .expect("the derived schema uses only keywords JSONSchemaProps knows");
    let column = |name: &str, type_: &str, json_path: &str, description: &str| {
        apiext::CustomResourceColumnDefinition {
            name: name.into(),
            type_: type_.into(),
            json_path: json_path.into(),
            description: Some(description.into()),
            ..Default::default()
        }
    };
    apiext::CustomResourceDefinition {
        metadata: ObjectMeta {
            name: Some(CRD_NAME.into()),
            ..Default::default()
        },
        spec: apiext::CustomResourceDefinitionSpec {
            group: GROUP.into(),
            names: apiext::CustomResourceDefinitionNames {
                kind: KIND.into(),
                list_kind: Some(format!("{KIND}List")),
                plural: PLURAL.into(),
                singular: Some(SINGULAR.into()),
                short_names: Some(vec![SHORT_NAME.into()]),
                ..Default::default()
            },
            scope: "Namespaced".into(),
            versions: vec![apiext::CustomResourceDefinitionVersion {
                name: VERSION.into(),
                served: true,
                storage: true,
                schema: Some(apiext::CustomResourceValidation {
                    open_api_v3_schema: Some(schema),
                }),
                subresources: Some(apiext::CustomResourceSubresources {
                    status: Some(apiext::CustomResourceSubresourceStatus(json!({}))),
                    scale: None,
                }),
                // Empty when the manifest leaves the field to the operator's defaults.
                additional_printer_columns: Some(vec![
                    column(
                        "Min",
                        "integer",
                        ".spec.scaling.minContainers",
                        "Containers kept even when idle",
                    ),
                    column(
                        "Max",
                        "integer",
                        ".spec.scaling.maxContainers",
                        "Upper bound on containers",
                    ),
                    column("Image", "string", ".spec.image", "The image to run"),
                    column(
                        "Age",
                        "date",
                        ".metadata.creationTimestamp",
                        "Time since the pool was created",
                    ),
                ]),
                ..Default::default()
            }],
            ..Default::default()
        },
        status: None,
    }
}

/// The CRD's `openAPIV3Schema` as JSON: a structural schema of a `FunctionPool`.
pub fn crd_schema() -> Value {
    let generator = SchemaSettings::openapi3()
        .with(|s| {
            // CRDs allow neither `$ref` nor `$schema`.
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        // Before kube's rewriter, which would strip the types out of the `anyOf`.
        .with_transform(IntOrStringExtension)
        .with_transform(AddNullable::default())
        .with_transform(StructuralSchemaRewriter)
        .with_transform(OptionalEnum)
        .with_transform(OptionalIntOrString)
        .with_transform(BooleanExclusiveBounds)
        .with_transform(NumericFormatsAsBounds)
        .with_transform(ProseDescriptions)
        .into_generator();
    let mut root = generator.into_root_schema_for::<FunctionPool>();
    restrict_root(&mut root);
    root.to_value()
}

/// Rewrites a value "integer or string" (`anyOf: [{type: integer}, {type: string}]`, what
/// our [`crate::api::IntOrString`] derives) into Kubernetes' `x-kubernetes-int-or-string:
/// true`. The branches' bounds and pattern move up to the node, where JSON Schema applies
/// each only to values of its own type (as controller-gen does for `resource.Quantity`).
/// An optional one (`anyOf: [<int-or-string>, <null>]`) becomes the same with
/// `nullable: true`, keeping the field's own description.
#[derive(Clone, Debug, Default)]
pub struct IntOrStringExtension;

impl Transform for IntOrStringExtension {
    fn transform(&mut self, schema: &mut Schema) {
        transform_subschemas(self, schema);
        let Some(node) = schema.as_object_mut() else {
            return;
        };
        let Some(Value::Array(branches)) = node.get("anyOf") else {
            return;
        };
        if let Some(merged) = int_or_string(branches) {
            node.remove("anyOf");
            for (k, v) in merged {
                node.entry(k).or_insert(v);
            }
            node.insert("x-kubernetes-int-or-string".into(), true.into());
        } else if let [value, null] = branches.as_slice() {
            let is_int_or_string = value.get("x-kubernetes-int-or-string") == Some(&json!(true));
            if is_int_or_string && is_null_schema(null) {
                let value = value.as_object().cloned().unwrap_or_default();
                node.remove("anyOf");
                for (k, v) in value {
                    // The field's description says more than the type's.
                    node.entry(k).or_insert(v);
                }
                node.insert("nullable".into(), true.into());
            }
        }
    }
}

/// The keywords of `[{type: integer, ..}, {type: string, ..}]` minus the types, or `None`
/// when `branches` is not that shape.
fn int_or_string(branches: &[Value]) -> Option<Map<String, Value>> {
    let typed = |b: &Value, t: &str| b.get("type") == Some(&json!(t));
    let (int, string) = match branches {
        [a, b] if typed(a, "integer") && typed(b, "string") => (a, b),
        [a, b] if typed(a, "string") && typed(b, "integer") => (b, a),
        _ => return None,
    };
    let mut merged = Map::new();
    for branch in [int, string] {
        for (k, v) in branch.as_object()? {
            if k == "type" || k == "description" {
                continue;
            }
            if k == "format" || merged.contains_key(k) {
                // Bounds in both branches, or a format that types a whole value, would
                // change meaning at the node: not a shape this transform understands.
                return None;
            }
            merged.insert(k.clone(), v.clone());
        }
    }
    Some(merged)
}

/// A schema that accepts only `null`, in any of the forms schemars writes it.
fn is_null_schema(v: &Value) -> bool {
    v.get("type") == Some(&json!("null"))
        || v.get("enum") == Some(&json!([null]))
        || v.get("const") == Some(&Value::Null)
}

/// OpenAPI 3.0 (and so Kubernetes) writes an exclusive bound as `minimum: 0` plus
/// `exclusiveMinimum: true`; JSON Schema 2020-12, which schemars follows, as
/// `exclusiveMinimum: 0`.
#[derive(Clone, Debug, Default)]
pub struct BooleanExclusiveBounds;

impl Transform for BooleanExclusiveBounds {
    fn transform(&mut self, schema: &mut Schema) {
        transform_subschemas(self, schema);
        let Some(node) = schema.as_object_mut() else {
            return;
        };
        for (exclusive, inclusive) in [
            ("exclusiveMinimum", "minimum"),
            ("exclusiveMaximum", "maximum"),
        ] {
            if let Some(Value::Number(bound)) = node.get(exclusive).cloned() {
                node.insert(inclusive.into(), Value::Number(bound));
                node.insert(exclusive.into(), true.into());
            }
        }
    }
}

/// Turns schemars' numeric formats (`uint32`, `double`, ...) into what they mean for
/// validation, bounds, and drops them: they are not OpenAPI formats, and since Kubernetes
/// 1.34 every unrecognized format costs a warning on each `kubectl apply` of the CRD.
#[derive(Clone, Debug, Default)]
pub struct NumericFormatsAsBounds;

impl Transform for NumericFormatsAsBounds {
    fn transform(&mut self, schema: &mut Schema) {
        transform_subschemas(self, schema);
        let Some(node) = schema.as_object_mut() else {
            return;
        };
        let numeric = matches!(
            node.get("type").and_then(Value::as_str),
            Some("integer" | "number")
        );
        let Some(format) = node.get("format").and_then(Value::as_str) else {
            return;
        };
        if !numeric {
            return;
        }
        let (min, max): (Option<f64>, Option<f64>) = match format {
            "uint8" => (Some(0.0), Some(u8::MAX.into())),
            "uint16" => (Some(0.0), Some(u16::MAX.into())),
            "uint32" => (Some(0.0), Some(u32::MAX.into())),
            "uint64" | "uint" => (Some(0.0), None),
            "int8" => (Some(i8::MIN.into()), Some(i8::MAX.into())),
            "int16" => (Some(i16::MIN.into()), Some(i16::MAX.into())),
            "int32" => (Some(i32::MIN.into()), Some(i32::MAX.into())),
            _ => (None, None),
        };
        let bound = |x: f64| json!(x as i64);
        if let Some(min) = min {
            node.entry("minimum").or_insert_with(|| bound(min));
        }
        if let Some(max) = max {
            node.entry("maximum").or_insert_with(|| bound(max));
        }
        node.remove("format");
    }
}

/// Keeps the prose of doc comments and drops their code examples (doc tests), which mean
/// nothing to `kubectl explain`.
#[derive(Clone, Debug, Default)]
pub struct ProseDescriptions;

impl Transform for ProseDescriptions {
    fn transform(&mut self, schema: &mut Schema) {
        transform_subschemas(self, schema);
        if let Some(Value::String(d)) = schema.get("description") {
            let prose = without_code_blocks(d);
            schema.insert("description".into(), prose.into());
        }
    }
}

fn without_code_blocks(text: &str) -> String {
    let mut out = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code {
            out.push(line);
        }
    }
    out.join("\n").trim().to_string()
}

/// What only the root needs: `metadata` may restrict nothing but the name (the API server
/// validates the rest as ObjectMeta), `status` is reserved for a controller, and only
/// `spec` need be required (the API server always sets apiVersion, kind and metadata).
fn restrict_root(root: &mut Schema) {
    let Some(node) = root.as_object_mut() else {
        return;
    };
    node.remove("title");
    let Some(Value::Object(properties)) = node.get_mut("properties") else {
        return;
    };
    let name = properties
        .get("metadata")
        .and_then(|m| m.pointer("/properties/name"))
        .cloned()
        .unwrap_or_else(|| json!({"type": "string"}));
    properties.insert(
        "metadata".into(),
        json!({"type": "object", "properties": {"name": name}}),
    );
    properties.insert(
        "status".into(),
        json!({
            "description": "Reserved for a controller that reports the pool's state; `invok export` writes none.",
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
        }),
    );
    node.insert("required".into(), json!(["spec"]));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transformed(mut t: impl Transform, v: Value) -> Value {
        let mut schema: Schema = serde_json::from_value(v).unwrap();
        t.transform(&mut schema);
        schema.to_value()
    }

    #[test]
    fn an_integer_or_string_becomes_the_kubernetes_extension_with_its_checks_at_the_node() {
        let out = transformed(
            IntOrStringExtension,
            json!({
                "description": "A quantity.",
                "anyOf": [
                    {"type": "integer", "minimum": 0},
                    {"type": "string", "pattern": "^[0-9]+$"}
                ]
            }),
        );
        assert_eq!(
            out,
            json!({
                "description": "A quantity.",
                "x-kubernetes-int-or-string": true,
                "minimum": 0,
                "pattern": "^[0-9]+$"
            })
        );
    }

    #[test]
    fn an_optional_integer_or_string_is_nullable_and_keeps_the_fields_description() {
        let out = transformed(
            IntOrStringExtension,
            json!({
                "description": "Memory limit.",
                "anyOf": [
                    {"description": "A quantity.", "anyOf": [{"type": "integer"}, {"type": "string"}]},
                    {"type": "null"}
                ]
            }),
        );
        assert_eq!(
            out,
            json!({
                "description": "Memory limit.",
                "x-kubernetes-int-or-string": true,
                "nullable": true
            })
        );
    }

    #[test]
    fn other_unions_are_left_to_kube() {
        for v in [
            json!({"anyOf": [{"type": "integer"}, {"type": "boolean"}]}),
            json!({"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "minimum": 2}]}),
            json!({"anyOf": [{"type": "object"}, {"type": "null"}]}),
        ] {
            assert_eq!(transformed(IntOrStringExtension, v.clone()), v);
        }
    }

    #[test]
    fn exclusive_bounds_take_the_openapi_3_0_form() {
        let out = transformed(
            BooleanExclusiveBounds,
            json!({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}),
        );
        assert_eq!(
            out,
            json!({"type": "number", "minimum": 0, "exclusiveMinimum": true,
                   "maximum": 1, "exclusiveMaximum": true})
        );
    }

    #[test]
    fn numeric_formats_become_bounds_and_go() {
        let out = transformed(
            NumericFormatsAsBounds,
            json!({"type": "integer", "format": "uint32", "minimum": 1}),
        );
        assert_eq!(
            out,
            json!({"type": "integer", "minimum": 1, "maximum": 4294967295u32})
        );
        let out = transformed(
            NumericFormatsAsBounds,
            json!({"type": "number", "format": "double"}),
        );
        assert_eq!(out, json!({"type": "number"}));
        let string = json!({"type": "string", "format": "date-time"});
        assert_eq!(transformed(NumericFormatsAsBounds, string.clone()), string);
    }

    #[test]
    fn descriptions_lose_their_code_examples() {
        let out = transformed(
            ProseDescriptions,
            json!({"description": "A pool.\n\n```\nlet x = 1;\n```\nMore."}),
        );
        assert_eq!(out, json!({"description": "A pool.\n\nMore."}));
    }

    #[test]
    fn the_root_restricts_only_the_name_in_metadata_and_reserves_status() {
        let schema = crd_schema();
        assert_eq!(
            schema["properties"]["metadata"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["properties", "type"]
        );
        assert_eq!(
            schema["properties"]["metadata"]["properties"]["name"]["maxLength"],
            63
        );
        assert_eq!(
            schema["properties"]["status"]["x-kubernetes-preserve-unknown-fields"],
            true
        );
        assert_eq!(schema["required"], json!(["spec"]));
    }

    #[test]
    fn quantities_and_durations_are_int_or_string() {
        let schema = crd_schema();
        for pointer in [
            "/properties/spec/properties/resources/properties/memory",
            "/properties/spec/properties/scaling/properties/memoryOverloadThreshold",
            "/properties/spec/properties/scaling/properties/cooldownDuration",
            "/properties/spec/properties/scaling/properties/pollInterval",
            "/properties/spec/properties/timeout",
        ] {
            let node = schema.pointer(pointer).unwrap();
            assert_eq!(node["x-kubernetes-int-or-string"], true, "{pointer}");
            assert_eq!(node["nullable"], true, "{pointer}");
            assert!(node.get("anyOf").is_none(), "{pointer}");
            assert!(node.get("type").is_none(), "{pointer}");
        }
        let memory = schema
            .pointer("/properties/spec/properties/resources/properties/memory/description")
            .unwrap();
        assert!(
            memory.as_str().unwrap().starts_with("Memory limit"),
            "{memory}"
        );
    }

    #[test]
    fn every_keyword_survives_the_trip_through_json_schema_props() {
        // JSONSchemaProps ignores keywords it does not know; none may be lost.
        let schema = crd_schema();
        let props: apiext::JSONSchemaProps = serde_json::from_value(schema.clone()).unwrap();
        let back = serde_json::to_value(props).unwrap();
        assert_eq!(numbers_as_f64(back), numbers_as_f64(schema));
    }

    fn numbers_as_f64(v: Value) -> Value {
        match v {
            Value::Number(n) => json!(n.as_f64().unwrap()),
            Value::Array(a) => Value::Array(a.into_iter().map(numbers_as_f64).collect()),
            Value::Object(o) => {
                Value::Object(o.into_iter().map(|(k, v)| (k, numbers_as_f64(v))).collect())
            }
            v => v,
        }
    }
}

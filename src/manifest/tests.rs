use super::*;
use proptest::prelude::*;

const GOOD: &str = "apiVersion: invok.dev/v1alpha1
kind: FunctionPool
metadata:
  name: web
spec:
  image: invok/demo-fn:latest
  scaling:
    minContainers: 1
";

fn load(text: &str) -> ManifestSet {
    load_str(
        Path::new("pools/web.yaml"),
        text,
        &ScalingDefaults::default(),
    )
}

fn only_error(text: &str) -> String {
    let set = load(text);
    assert_eq!(set.errors.len(), 1, "{:?}", set.errors);
    set.errors[0].to_string()
}

#[test]
fn a_valid_document_loads_with_its_source_location() {
    let set = load(GOOD);
    assert!(set.is_clean(), "{:?}", set.errors);
    let pool = &set.pools["web"];
    assert_eq!(pool.source.to_string(), "pools/web.yaml:1:1");
    assert_eq!(pool.spec.scaling.min, 1);
}

#[test]
fn an_unknown_field_names_file_line_column_and_path_and_suggests_the_right_one() {
    let text = GOOD.replace(
        "    minContainers: 1",
        "    minContainers: 1\n    maxContainer: 3",
    );
    let err = only_error(&text);
    assert!(
        err.starts_with("pools/web.yaml:9:5: spec.scaling.maxContainer: unknown field, expected one of minContainers, maxContainers"),
        "{err}"
    );
    assert!(err.ends_with("did you mean maxContainers?"), "{err}");
}

#[test]
fn a_semantic_error_points_at_the_field() {
    let text = GOOD.replace("minContainers: 1", "minContainers: 5\n    maxContainers: 2");
    assert_eq!(
        only_error(&text),
        "pools/web.yaml:9:5: spec.scaling.maxContainers: minContainers (5) must not exceed maxContainers (2)"
    );
}

#[test]
fn an_error_inside_a_list_points_at_the_item() {
    let text = GOOD.replace(
        "  scaling:",
        "  env:\n    - name: A\n    - name: 'B=C'\n  scaling:",
    );
    let err = only_error(&text);
    assert!(
        err.starts_with("pools/web.yaml:9:7: spec.env[1].name: "),
        "{err}"
    );
}

#[test]
fn a_missing_image_is_reported_at_spec() {
    let text = GOOD.replace("  image: invok/demo-fn:latest\n", "");
    let err = only_error(&text);
    assert!(
        err.starts_with("pools/web.yaml:5:1: spec: missing field image"),
        "{err}"
    );
}

#[test]
fn a_wrong_type_names_the_field() {
    let text = GOOD.replace("minContainers: 1", "minContainers: two");
    let err = only_error(&text);
    assert!(
        err.starts_with("pools/web.yaml:8:5: spec.scaling.minContainers: invalid type"),
        "{err}"
    );
}

#[test]
fn malformed_yaml_is_an_error_with_its_position_and_marks_the_file_broken() {
    let set = load("apiVersion: invok.dev/v1alpha1\nkind: [FunctionPool\n");
    assert_eq!(set.errors.len(), 1);
    assert!(
        set.errors[0].message.starts_with("invalid YAML"),
        "{:?}",
        set.errors
    );
    assert_eq!(set.errors[0].location.line, 3);
    assert!(set.broken_files.contains(Path::new("pools/web.yaml")));
}

#[test]
fn every_document_of_a_stream_is_read_and_errors_do_not_hide_each_other() {
    let text = format!(
        "{GOOD}---\n{}---\n{}",
        GOOD.replace("name: web", "name: api")
            .replace("image: invok/demo-fn:latest", "image: ''"),
        GOOD.replace("name: web", "name: jobs")
            .replace("minContainers: 1", "minContainers: 1\n    bogus: 1"),
    );
    let set = load(&text);
    assert_eq!(set.pools.keys().collect::<Vec<_>>(), ["web"]);
    let errs: Vec<_> = set.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0].starts_with("pools/web.yaml:15:3: spec.image:"),
        "{errs:?}"
    );
    assert!(
        errs[1].starts_with("pools/web.yaml:27:5: spec.scaling.bogus: unknown field"),
        "{errs:?}"
    );
    assert_eq!(
        set.invalid_pools.keys().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from(["api".to_string(), "jobs".to_string()])
    );
}

#[test]
fn documents_of_other_groups_are_skipped_with_a_notice() {
    let text = format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\n---\napiVersion: apps/v1\nkind: Deployment\n---\n{GOOD}");
    let set = load(&text);
    assert!(set.is_clean(), "{:?}", set.errors);
    assert_eq!(set.notices.len(), 2);
    assert!(
        set.notices[1]
            .to_string()
            .contains("skipped Deployment of apiVersion apps/v1"),
        "{:?}",
        set.notices
    );
    assert!(set.pools.contains_key("web"));
}

#[test]
fn unknown_kinds_and_versions_of_our_group_are_errors() {
    let err = only_error(&GOOD.replace("kind: FunctionPool", "kind: FunctionPod"));
    assert!(
        err.starts_with("pools/web.yaml:2:1: kind: unknown kind \"FunctionPod\""),
        "{err}"
    );
    let err = only_error(&GOOD.replace("invok.dev/v1alpha1", "invok.dev/v2"));
    assert!(
        err.starts_with("pools/web.yaml:1:1: apiVersion: unsupported version"),
        "{err}"
    );
}

#[test]
fn documents_without_api_version_or_kind_are_errors() {
    let err = only_error(&GOOD.replace("kind: FunctionPool\n", ""));
    assert!(err.contains("document has no kind"), "{err}");
    let err = only_error(&GOOD.replace("apiVersion: invok.dev/v1alpha1\n", ""));
    assert!(err.contains("document has no apiVersion"), "{err}");
    let err = only_error("- just\n- a list\n");
    assert!(err.contains("expected a mapping"), "{err}");
}

#[test]
fn empty_documents_are_ignored() {
    let set = load(&format!("---\n---\n{GOOD}---\n"));
    assert!(set.is_clean(), "{:?}", set.errors);
    assert_eq!(set.pools.len(), 1);
}

#[test]
fn a_name_declared_twice_is_an_error_naming_both_places() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), GOOD).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/b.yml"), GOOD).unwrap();
    let set = load_dir(dir.path(), &ScalingDefaults::default()).unwrap();
    assert_eq!(set.errors.len(), 1, "{:?}", set.errors);
    let err = set.errors[0].to_string();
    assert!(
        err.contains("sub/b.yml:4:3: metadata.name: pool \"web\" is declared twice; first at "),
        "{err}"
    );
    assert!(err.ends_with("a.yaml:4:3"), "{err}");
    assert!(set.pools.is_empty());
    assert!(set.invalid_pools.contains_key("web"));
}

#[test]
fn directories_are_walked_for_yaml_files_only_skipping_hidden_and_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    for (name, pool) in [("a.yaml", "a"), ("b.yml", "b"), ("nested/c.yaml", "c")] {
        std::fs::create_dir_all(p.join(name).parent().unwrap()).unwrap();
        std::fs::write(
            p.join(name),
            GOOD.replace("name: web", &format!("name: {pool}")),
        )
        .unwrap();
    }
    for ignored in [
        ".hidden.yaml",
        "a.yaml~",
        ".a.yaml.swp",
        "#a.yaml#",
        "notes.txt",
        ".git/x.yaml",
    ] {
        std::fs::create_dir_all(p.join(ignored).parent().unwrap()).unwrap();
        std::fs::write(p.join(ignored), "this: [is not valid").unwrap();
    }
    let set = load_dir(p, &ScalingDefaults::default()).unwrap();
    assert!(set.is_clean(), "{:?}", set.errors);
    assert_eq!(set.pools.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
    assert_eq!(set.files_read, 3);
}

#[test]
fn a_missing_directory_is_an_error_not_an_empty_set() {
    let err = load_dir(Path::new("/nonexistent/invok"), &ScalingDefaults::default()).unwrap_err();
    assert!(err.to_string().starts_with("/nonexistent/invok: "), "{err}");
}

#[test]
fn explicit_files_are_read_whatever_their_extension() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("pool.txt");
    std::fs::write(&f, GOOD).unwrap();
    let set = load_paths(
        &[f, dir.path().join("missing.yaml")],
        &ScalingDefaults::default(),
    );
    assert!(set.pools.contains_key("web"));
    assert_eq!(set.errors.len(), 1);
    assert!(
        set.errors[0]
            .to_string()
            .contains("missing.yaml:1:1: cannot read"),
        "{:?}",
        set.errors
    );
}

fn arb_yaml() -> impl Strategy<Value = serde_yaml::Value> {
    let leaf = prop_oneof![
        Just(serde_yaml::Value::Null),
        any::<bool>().prop_map(serde_yaml::Value::Bool),
        any::<i64>().prop_map(|n| serde_yaml::Value::Number(n.into())),
        any::<f64>().prop_map(|n| serde_yaml::Value::Number(n.into())),
        "[a-zA-Z0-9./:-]{0,12}".prop_map(serde_yaml::Value::String),
        prop_oneof![
            Just("apiVersion"),
            Just("kind"),
            Just("metadata"),
            Just("spec"),
            Just("name"),
            Just("image"),
            Just("scaling"),
            Just("invok.dev/v1alpha1"),
            Just("FunctionPool"),
            Just("minContainers"),
            Just("maxContainers"),
            Just("env"),
            Just("resources")
        ]
        .prop_map(|s| serde_yaml::Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_yaml::Value::Sequence),
            prop::collection::vec((inner.clone(), inner), 0..5)
                .prop_map(|kv| serde_yaml::Value::Mapping(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn the_loader_never_panics_on_arbitrary_text(text in "\\PC{0,200}") {
        let _ = load(&text);
    }

    #[test]
    fn the_loader_never_panics_on_arbitrary_yaml_values(value in arb_yaml()) {
        // serde_yaml cannot emit every value (complex keys); those are not inputs.
        let Ok(text) = serde_yaml::to_string(&value) else { return Ok(()) };
        let set = load(&text);
        // Every error it reports has a real position inside the text.
        for e in &set.errors {
            prop_assert!(e.location.line >= 1 && e.location.column >= 1);
        }
    }

    #[test]
    fn the_loader_never_panics_on_mutated_manifests(cut in 0..GOOD.len(), insert in "[ :\\-\\[\\]{}a-z0-9\n]{0,6}") {
        let mut text = GOOD.as_bytes()[..cut].to_vec();
        text.extend_from_slice(insert.as_bytes());
        text.extend_from_slice(&GOOD.as_bytes()[cut..]);
        let _ = load(&String::from_utf8_lossy(&text));
    }
}

#[test]
fn a_pool_with_a_valid_and_an_invalid_document_is_invalid_in_either_order() {
    let valid = "apiVersion: invok.dev/v1alpha1\nkind: FunctionPool\nmetadata:\n  name: web\nspec:\n  image: x\n";
    let invalid = "apiVersion: invok.dev/v1alpha1\nkind: FunctionPool\nmetadata:\n  name: web\nspec:\n  image: x\n  scaling:\n    minContainers: 5\n    maxContainers: 1\n";
    for text in [
        format!("{valid}---\n{invalid}"),
        format!("{invalid}---\n{valid}"),
    ] {
        let set = load_str(Path::new("web.yaml"), &text, &Default::default());
        assert!(!set.pools.contains_key("web"), "{text}");
        assert!(set.invalid_pools.contains_key("web"), "{text}");
    }
}

use super::*;

fn pool(spec_yaml: &str) -> FunctionPool {
    let doc = format!(
        "apiVersion: invok.dev/v1alpha1\nkind: FunctionPool\nmetadata:\n  name: web\nspec:\n{}",
        spec_yaml
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect::<String>()
    );
    serde_yaml::from_str(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}"))
}

fn errors(spec_yaml: &str) -> Vec<FieldError> {
    pool(spec_yaml)
        .validate(&ScalingDefaults::default())
        .expect_err("expected validation errors")
}

fn assert_one_error(spec_yaml: &str, path: &str, needle: &str) {
    let errs = errors(spec_yaml);
    assert!(
        errs.iter()
            .any(|e| e.path == path && e.message.contains(needle)),
        "wanted {path}: ...{needle}... in {errs:?}"
    );
}

#[test]
fn a_minimal_pool_gets_the_seeds_defaults() {
    let spec = pool("image: invok/demo-fn:latest")
        .validate(&ScalingDefaults::default())
        .unwrap();
    assert_eq!(spec.name, "web");
    assert_eq!(spec.template.port, 8080);
    assert_eq!(spec.readiness, Probe::Tcp);
    let s = &spec.scaling;
    assert_eq!((s.min, s.max), (1, 10));
    assert_eq!(s.cpu_overload_threshold, 0.70);
    assert_eq!(s.memory_overload_threshold, 300_000_000);
    assert_eq!(s.cooldown_cpu_threshold, 0.10);
    assert_eq!(s.cooldown_duration, Duration::from_secs(30));
    assert_eq!(s.poll_interval, Duration::from_secs(2));
    assert_eq!(s.target_concurrency, None);
    assert_eq!(spec.timeout, Duration::from_secs(300));
    assert_eq!(spec.timeout, DEFAULT_TIMEOUT);
}

#[test]
fn a_full_pool_keeps_every_field() {
    let spec = pool(
        "image: img:1\ncommand: [/bin/sh, -c, run]\nenv: [{name: A, value: b}]\nport: 9000\nnetwork: net\n\
resources: {cpus: 0.5, memory: 512Mi}\nscaling: {minContainers: 2, maxContainers: 4, cpuOverloadThreshold: 0.8,\n  \
memoryOverloadThreshold: 1G, cooldownCpuThreshold: 0.2, cooldownDuration: 1m, pollInterval: 500ms, targetConcurrency: 3}\n\
readiness: {path: /healthz}\ntimeout: 1m30s",
    )
    .validate(&ScalingDefaults::default())
    .unwrap();
    let t = &spec.template;
    assert_eq!(t.image, "img:1");
    assert_eq!(
        t.command.as_deref(),
        Some(&["/bin/sh".to_string(), "-c".into(), "run".into()][..])
    );
    assert_eq!(t.env, vec![("A".to_string(), "b".to_string())]);
    assert_eq!((t.port, t.network.as_deref()), (9000, Some("net")));
    assert_eq!((t.cpus, t.memory), (Some(0.5), Some(512 << 20)));
    assert_eq!(t.cpu_capacity(), 0.5);
    let s = &spec.scaling;
    assert_eq!((s.min, s.max, s.target_concurrency), (2, 4, Some(3)));
    assert_eq!(s.memory_overload_threshold, 1_000_000_000);
    assert_eq!(s.cooldown_duration, Duration::from_secs(60));
    assert_eq!(s.poll_interval, Duration::from_millis(500));
    assert_eq!(
        spec.readiness,
        Probe::Http {
            path: "/healthz".into()
        }
    );
    assert_eq!(spec.timeout, Duration::from_secs(90));
}

#[test]
fn names_must_be_dns1123_labels() {
    for bad in ["", "Web", "-web", "web-", "we_b", "web.x", &"a".repeat(64)] {
        let mut p = pool("image: x");
        p.metadata.name = bad.to_string();
        let errs = p.validate(&ScalingDefaults::default()).unwrap_err();
        assert_eq!(errs[0].path, "metadata.name", "{bad}");
    }
    for good in ["a", "web-1", "0x", &"a".repeat(63)] {
        let mut p = pool("image: x");
        p.metadata.name = good.to_string();
        assert!(p.validate(&ScalingDefaults::default()).is_ok(), "{good}");
    }
}

#[test]
fn image_must_be_present_and_without_spaces() {
    assert_one_error("image: ''", "spec.image", "must not be empty");
    assert_one_error("image: 'a b'", "spec.image", "white space");
}

#[test]
fn min_must_not_exceed_max() {
    assert_one_error(
        "image: x\nscaling: {minContainers: 5, maxContainers: 2}",
        "spec.scaling.maxContainers",
        "minContainers (5) must not exceed maxContainers (2)",
    );
    assert_one_error(
        "image: x\nscaling: {minContainers: 11}",
        "spec.scaling.minContainers",
        "MAX_CONTAINERS_PER_FUNCTION",
    );
    assert_one_error(
        "image: x\nscaling: {minContainers: 0, maxContainers: 0}",
        "spec.scaling.maxContainers",
        "at least 1",
    );
}

#[test]
fn thresholds_must_lie_in_zero_to_one() {
    for v in ["0", "-0.1", "1.5", ".nan"] {
        assert_one_error(
            &format!("image: x\nscaling: {{cpuOverloadThreshold: {v}}}"),
            "spec.scaling.cpuOverloadThreshold",
            "must be in (0, 1]",
        );
        assert_one_error(
            &format!("image: x\nscaling: {{cooldownCpuThreshold: {v}}}"),
            "spec.scaling.cooldownCpuThreshold",
            "must be in (0, 1]",
        );
    }
    assert!(pool("image: x\nscaling: {cpuOverloadThreshold: 1}")
        .validate(&ScalingDefaults::default())
        .is_ok());
}

#[test]
fn cooldown_threshold_must_be_below_overload_threshold() {
    assert_one_error(
        "image: x\nscaling: {cooldownCpuThreshold: 0.8}",
        "spec.scaling.cooldownCpuThreshold",
        "must be below cpuOverloadThreshold (0.7)",
    );
    // The overload threshold moved under the default cooldown: blame the field written.
    assert_one_error(
        "image: x\nscaling: {cpuOverloadThreshold: 0.05}",
        "spec.scaling.cpuOverloadThreshold",
        "must be below",
    );
}

#[test]
fn port_must_be_between_1_and_65535() {
    assert_one_error("image: x\nport: 0", "spec.port", "between 1 and 65535");
    assert_one_error("image: x\nport: 70000", "spec.port", "got 70000");
}

#[test]
fn poll_interval_must_be_positive_and_durations_must_parse() {
    assert_one_error(
        "image: x\nscaling: {pollInterval: 0s}",
        "spec.scaling.pollInterval",
        "greater than 0",
    );
    assert_one_error(
        "image: x\nscaling: {pollInterval: 2x}",
        "spec.scaling.pollInterval",
        "invalid unit",
    );
    assert_one_error(
        "image: x\nscaling: {cooldownDuration: soon}",
        "spec.scaling.cooldownDuration",
        "invalid duration",
    );
}

#[test]
fn timeout_takes_the_duration_grammar_and_must_be_positive() {
    for (written, want) in [
        ("500ms", Duration::from_millis(500)),
        ("45", Duration::from_secs(45)),
        ("'45'", Duration::from_secs(45)),
        ("1m30s", Duration::from_secs(90)),
        ("1h", Duration::from_secs(3600)),
    ] {
        let spec = pool(&format!("image: x\ntimeout: {written}"))
            .validate(&ScalingDefaults::default())
            .unwrap();
        assert_eq!(spec.timeout, want, "{written}");
    }
    for zero in ["0", "0s", "0ms"] {
        assert_one_error(
            &format!("image: x\ntimeout: {zero}"),
            "spec.timeout",
            "must be greater than 0",
        );
    }
    assert_one_error("image: x\ntimeout: 2d", "spec.timeout", "invalid unit");
    assert_one_error(
        "image: x\ntimeout: soon",
        "spec.timeout",
        "invalid duration",
    );
}

#[test]
fn memory_quantities_must_parse() {
    assert_one_error(
        "image: x\nresources: {memory: 12XB}",
        "spec.resources.memory",
        "invalid unit",
    );
    assert_one_error(
        "image: x\nresources: {memory: 1Ki}",
        "spec.resources.memory",
        "minimum of 6Mi",
    );
    assert_one_error(
        "image: x\nscaling: {memoryOverloadThreshold: 300MB}",
        "spec.scaling.memoryOverloadThreshold",
        "Kubernetes spells it",
    );
    assert_one_error(
        "image: x\nscaling: {memoryOverloadThreshold: 0}",
        "spec.scaling.memoryOverloadThreshold",
        "greater than 0",
    );
}

#[test]
fn cpus_must_be_positive() {
    assert_one_error(
        "image: x\nresources: {cpus: 0}",
        "spec.resources.cpus",
        "positive",
    );
    assert_one_error(
        "image: x\nresources: {cpus: -1}",
        "spec.resources.cpus",
        "positive",
    );
}

#[test]
fn env_names_must_be_valid_and_unique() {
    assert_one_error(
        "image: x\nenv: [{name: ''}]",
        "spec.env[0].name",
        "not a valid variable name",
    );
    assert_one_error(
        "image: x\nenv: [{name: 'A=B'}]",
        "spec.env[0].name",
        "not a valid",
    );
    assert_one_error(
        "image: x\nenv: [{name: A}, {name: A}]",
        "spec.env[1].name",
        "set twice",
    );
}

#[test]
fn command_readiness_and_network_are_checked() {
    assert_one_error("image: x\ncommand: []", "spec.command", "must not be empty");
    assert_one_error(
        "image: x\nreadiness: {path: healthz}",
        "spec.readiness.path",
        "absolute path",
    );
    assert_one_error("image: x\nnetwork: host", "spec.network", "bridge network");
    assert_one_error(
        "image: x\nscaling: {targetConcurrency: 0}",
        "spec.scaling.targetConcurrency",
        "at least 1",
    );
}

#[test]
fn request_rate_custom_metrics_and_predictive_are_validated_with_defaults() {
    let d = ScalingDefaults::default();
    let spec = pool(
        "image: x\nscaling:\n  targetRequestsPerSecond: 12.5\n  customMetrics: [{name: queue_depth, targetPerContainer: 10}, {name: 'jobs:active', path: /m, targetPerContainer: 0.5}]\n  predictive: {}",
    )
    .validate(&d)
    .unwrap();
    let s = &spec.scaling;
    assert_eq!(s.target_requests_per_second, Some(12.5));
    assert_eq!(
        s.custom_metrics
            .iter()
            .map(|m| (m.name.as_str(), m.path.as_str(), m.target_per_container))
            .collect::<Vec<_>>(),
        [
            ("queue_depth", "/metrics", 10.0),
            ("jobs:active", "/m", 0.5)
        ]
    );
    let p = s.predictive.as_ref().unwrap();
    assert_eq!(
        (p.horizon, p.window),
        (DEFAULT_HORIZON, DEFAULT_FORECAST_WINDOW)
    );
    // None of them shapes a container.
    assert_eq!(
        spec.spec_hash,
        pool("image: x").validate(&d).unwrap().spec_hash
    );
}

#[test]
fn bad_signal_settings_name_their_field() {
    assert_one_error(
        "image: x\nscaling: {targetRequestsPerSecond: 0}",
        "spec.scaling.targetRequestsPerSecond",
        "positive",
    );
    assert_one_error(
        "image: x\nscaling: {predictive: {horizon: 10s}}",
        "spec.scaling.predictive",
        "needs targetRequestsPerSecond",
    );
    assert_one_error(
        "image: x\nscaling: {targetRequestsPerSecond: 5, predictive: {window: 48h}}",
        "spec.scaling.predictive.window",
        "at most 24h",
    );
    assert_one_error(
        "image: x\nscaling: {targetRequestsPerSecond: 5, predictive: {horizon: 0s}}",
        "spec.scaling.predictive.horizon",
        "greater than 0",
    );
    assert_one_error(
        "image: x\nscaling: {customMetrics: [{name: 9lives, targetPerContainer: 1}]}",
        "spec.scaling.customMetrics[0].name",
        "Prometheus metric name",
    );
    assert_one_error(
        "image: x\nscaling: {customMetrics: [{name: q, path: metrics, targetPerContainer: 1}]}",
        "spec.scaling.customMetrics[0].path",
        "absolute path",
    );
    assert_one_error(
        "image: x\nscaling: {customMetrics: [{name: q, targetPerContainer: -1}]}",
        "spec.scaling.customMetrics[0].targetPerContainer",
        "positive",
    );
    assert_one_error(
        "image: x\nscaling: {customMetrics: [{name: q, targetPerContainer: 1}, {name: q, path: /metrics, targetPerContainer: 2}]}",
        "spec.scaling.customMetrics[1].name",
        "listed twice",
    );
}

#[test]
fn all_errors_are_reported_at_once() {
    let errs = errors("image: ''\nport: 0\nscaling: {minContainers: 3, maxContainers: 1}");
    let paths: Vec<_> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["spec.image", "spec.port", "spec.scaling.maxContainers"]
    );
}

#[test]
fn the_spec_hash_changes_with_the_container_shape_only() {
    let d = ScalingDefaults::default();
    let a = pool("image: x").validate(&d).unwrap();
    let b = pool("image: x\nscaling: {maxContainers: 3}\nreadiness: {path: /}")
        .validate(&d)
        .unwrap();
    let c = pool("image: x\nenv: [{name: A, value: b}]")
        .validate(&d)
        .unwrap();
    assert_eq!(a.spec_hash, b.spec_hash);
    assert_ne!(a.spec_hash, c.spec_hash);
    assert_eq!(a.spec_hash.len(), 16);
}

#[test]
fn the_timeout_is_a_routing_setting_outside_the_spec_hash() {
    let d = ScalingDefaults::default();
    let default = pool("image: x").validate(&d).unwrap();
    for written in ["1s", "300s", "10m", "90"] {
        let set = pool(&format!("image: x\ntimeout: {written}"))
            .validate(&d)
            .unwrap();
        // Same containers (no roll), but a different spec in force, so the change is
        // seen by whoever reads the effective spec (the gateway).
        assert_eq!(set.spec_hash, default.spec_hash, "{written}");
        assert_eq!(set.template, default.template, "{written}");
        assert_eq!(set.spec_hash, set.template.hash(), "{written}");
    }
    let short = pool("image: x\ntimeout: 1s").validate(&d).unwrap();
    assert_ne!(short, default, "the timeout is part of the effective spec");
}

#[test]
fn the_timeout_is_served_as_duration_text_and_defaults_when_an_older_operator_omits_it() {
    let spec = pool("image: x\ntimeout: 1m30s")
        .validate(&ScalingDefaults::default())
        .unwrap();
    let mut json = serde_json::to_value(&spec).unwrap();
    assert_eq!(json["timeout"], "1m30s");
    let back: EffectiveSpec = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, spec);
    json.as_object_mut().unwrap().remove("timeout");
    let older: EffectiveSpec = serde_json::from_value(json).unwrap();
    assert_eq!(older.timeout, DEFAULT_TIMEOUT);
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

#[test]
fn defaults_come_from_the_seeds_environment_variables() {
    let d = ScalingDefaults::from_lookup(env_of(&[
        ("CPU_OVERLOAD_THRESHOLD", "0.8"),
        ("MEMORY_OVERLOAD_THRESHOLD", "500000000"),
        ("COOLDOWN_CPU_THRESHOLD", "0.05"),
        ("COOLDOWN_DURATION_SECS", "60"),
        ("MIN_CONTAINERS_PER_FUNCTION", "2"),
        ("MAX_CONTAINERS_PER_FUNCTION", "20"),
        ("POLL_INTERVAL_SECS", "1"),
    ]))
    .unwrap();
    assert_eq!(
        d,
        ScalingDefaults {
            min_containers: 2,
            max_containers: 20,
            cpu_overload_threshold: 0.8,
            memory_overload_threshold: 500_000_000,
            cooldown_cpu_threshold: 0.05,
            cooldown_duration: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
        }
    );
    assert_eq!(
        ScalingDefaults::from_lookup(|_| None).unwrap(),
        ScalingDefaults::default()
    );
}

#[test]
fn a_bad_environment_variable_is_an_error_naming_it() {
    let cases = [
        ("CPU_OVERLOAD_THRESHOLD", "high"),
        ("CPU_OVERLOAD_THRESHOLD", "1.5"),
        ("MEMORY_OVERLOAD_THRESHOLD", "lots"),
        ("COOLDOWN_CPU_THRESHOLD", "0"),
        ("COOLDOWN_DURATION_SECS", "-3"),
        ("MIN_CONTAINERS_PER_FUNCTION", "one"),
        ("MAX_CONTAINERS_PER_FUNCTION", "0"),
        ("POLL_INTERVAL_SECS", "0"),
        ("MIN_CONTAINERS_PER_FUNCTION", "11"),
        ("COOLDOWN_CPU_THRESHOLD", "0.9"),
    ];
    for (var, value) in cases {
        let err = ScalingDefaults::from_lookup(env_of(&[(var, value)])).unwrap_err();
        assert_eq!(err.var, var, "{var}={value}: {err}");
        assert!(
            err.to_string()
                .starts_with(&format!("environment variable {var}=")),
            "{err}"
        );
    }
}

#[test]
fn environment_defaults_apply_only_to_omitted_fields() {
    let d = ScalingDefaults::from_lookup(env_of(&[("MAX_CONTAINERS_PER_FUNCTION", "3")])).unwrap();
    let spec = pool("image: x\nscaling: {minContainers: 2}")
        .validate(&d)
        .unwrap();
    assert_eq!((spec.scaling.min, spec.scaling.max), (2, 3));
    let spec = pool("image: x\nscaling: {maxContainers: 7}")
        .validate(&d)
        .unwrap();
    assert_eq!(spec.scaling.max, 7);
}

#[test]
fn the_schema_is_strict() {
    let schema = json_schema();
    assert_eq!(schema["additionalProperties"], serde_json::json!(false));
    let required = schema["required"].as_array().unwrap();
    for field in ["apiVersion", "kind", "metadata", "spec"] {
        assert!(required.contains(&serde_json::json!(field)), "{field}");
    }
}

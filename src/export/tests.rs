//! The mapping of every FunctionPool field onto Kubernetes objects, and every warning.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::autoscaling::v2::{HPAScalingRules, HorizontalPodAutoscalerSpec};
use k8s_openapi::api::core::v1::{Container, ServiceSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::api::ScalingDefaults;

/// Exports the pool `web` with this `spec` (YAML), with the seed's defaults.
fn export(spec: &str) -> PoolObjects {
    export_with(spec, &ScalingDefaults::default()).expect("exports")
}

fn export_with(spec: &str, defaults: &ScalingDefaults) -> Result<PoolObjects, ExportError> {
    export_doc(
        &format!("apiVersion: invok.dev/v1alpha1\nkind: FunctionPool\nmetadata: {{name: web}}\nspec:\n{spec}"),
        defaults,
    )
}

fn export_doc(doc: &str, defaults: &ScalingDefaults) -> Result<PoolObjects, ExportError> {
    let set = crate::manifest::load_str(Path::new("web.yaml"), doc, defaults);
    assert!(set.is_clean(), "{:?}", set.errors);
    let pool = set.pools.values().next().expect("one pool");
    pool_objects(&pool.manifest, &pool.spec)
}

fn container(o: &PoolObjects) -> Container {
    let spec = o.deployment.spec.clone().unwrap();
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.containers.len(), 1);
    pod.containers[0].clone()
}

fn hpa(o: &PoolObjects) -> HorizontalPodAutoscalerSpec {
    o.autoscaler.spec.clone().unwrap()
}

fn service(o: &PoolObjects) -> ServiceSpec {
    o.service.spec.clone().unwrap()
}

fn scale_up(o: &PoolObjects) -> HPAScalingRules {
    hpa(o).behavior.unwrap().scale_up.unwrap()
}

fn scale_down(o: &PoolObjects) -> HPAScalingRules {
    hpa(o).behavior.unwrap().scale_down.unwrap()
}

fn replicas(o: &PoolObjects) -> Option<i32> {
    o.deployment.spec.as_ref().unwrap().replicas
}

fn resources(o: &PoolObjects, which: &str) -> Option<BTreeMap<String, String>> {
    let r = container(o).resources.unwrap();
    let map = if which == "requests" {
        r.requests
    } else {
        r.limits
    };
    map.map(|m| m.into_iter().map(|(k, Quantity(v))| (k, v)).collect())
}

fn warned(o: &PoolObjects, field: &str) -> Option<String> {
    o.warnings
        .iter()
        .find(|w| w.field == field)
        .map(|w| w.message.clone())
}

fn quantities(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

const MINIMAL: &str = "  image: invok/demo-fn:latest\n";

#[test]
fn a_minimal_pool_exports_without_warnings() {
    let o = export(MINIMAL);
    assert_eq!(o.warnings, []);
    assert_eq!(o.deployment.metadata.name.as_deref(), Some("web"));
    assert_eq!(o.service.metadata.name.as_deref(), Some("web"));
    assert_eq!(o.autoscaler.metadata.name.as_deref(), Some("web"));
}

#[test]
fn image_is_the_containers_image_pulled_only_when_missing() {
    let c = container(&export(MINIMAL));
    assert_eq!(c.name, CONTAINER_NAME);
    assert_eq!(c.image.as_deref(), Some("invok/demo-fn:latest"));
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
}

#[test]
fn command_becomes_args_because_docker_cmd_keeps_the_entrypoint() {
    let c = container(&export("  image: x\n  command: [httpd, -f, -p, '8080']\n"));
    assert_eq!(
        c.args,
        Some(vec![
            "httpd".into(),
            "-f".into(),
            "-p".into(),
            "8080".into()
        ])
    );
    assert_eq!(c.command, None, "command would replace the ENTRYPOINT");
    let c = container(&export(MINIMAL));
    assert_eq!((c.args, c.command), (None, None));
}

#[test]
fn env_keeps_its_order_and_empty_values() {
    let c = container(&export(
        "  image: x\n  env: [{name: B, value: two}, {name: A}]\n",
    ));
    let env: Vec<_> = c
        .env
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.value))
        .collect();
    assert_eq!(
        env,
        [
            ("B".into(), Some("two".into())),
            ("A".into(), Some(String::new()))
        ]
    );
    assert_eq!(container(&export(MINIMAL)).env, None);
}

#[test]
fn port_is_the_named_container_port_behind_service_port_80() {
    for (spec, port) in [(MINIMAL, 8080), ("  image: x\n  port: 9000\n", 9000)] {
        let o = export(spec);
        let ports = container(&o).ports.unwrap();
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].container_port, port);
        assert_eq!(ports[0].name.as_deref(), Some(PORT_NAME));
        assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
        let svc = service(&o);
        assert_eq!(svc.type_.as_deref(), Some("ClusterIP"));
        let sp = &svc.ports.unwrap()[0];
        assert_eq!(sp.port, SERVICE_PORT);
        assert_eq!(sp.target_port, Some(IntOrString::String(PORT_NAME.into())));
    }
}

#[test]
fn cpus_and_memory_are_equal_requests_and_limits() {
    let o = export("  image: x\n  resources: {cpus: 0.5, memory: 256Mi}\n");
    let both = quantities(&[("cpu", "500m"), ("memory", "256Mi")]);
    assert_eq!(resources(&o, "requests"), both);
    assert_eq!(resources(&o, "limits"), both);
    assert_eq!(o.warnings, []);
}

#[test]
fn a_pool_without_cpus_requests_one_core_and_has_no_cpu_limit() {
    let o = export(MINIMAL);
    assert_eq!(
        resources(&o, "requests"),
        quantities(&[("cpu", DEFAULT_CPU_REQUEST)])
    );
    assert_eq!(resources(&o, "limits"), None);
    let o = export("  image: x\n  resources: {memory: 64Mi}\n");
    assert_eq!(
        resources(&o, "requests"),
        quantities(&[("cpu", "1"), ("memory", "64Mi")])
    );
    assert_eq!(resources(&o, "limits"), quantities(&[("memory", "64Mi")]));
}

#[test]
fn cpus_finer_than_a_millicore_are_rounded_with_a_warning() {
    let o = export("  image: x\n  resources: {cpus: 0.0004}\n");
    assert_eq!(resources(&o, "limits"), quantities(&[("cpu", "1m")]));
    assert!(warned(&o, "spec.resources.cpus")
        .unwrap()
        .contains("millicores"));
}

#[test]
fn readiness_path_is_an_http_get_probe_else_a_tcp_probe() {
    let probe = container(&export("  image: x\n  readiness: {path: /healthz}\n"))
        .readiness_probe
        .unwrap();
    let get = probe.http_get.unwrap();
    assert_eq!(get.path.as_deref(), Some("/healthz"));
    assert_eq!(get.port, IntOrString::String(PORT_NAME.into()));
    assert_eq!(probe.tcp_socket, None);

    let probe = container(&export(MINIMAL)).readiness_probe.unwrap();
    assert_eq!(probe.http_get, None);
    assert_eq!(
        probe.tcp_socket.unwrap().port,
        IntOrString::String(PORT_NAME.into())
    );
}

#[test]
fn min_and_max_are_the_replicas_and_the_autoscalers_bounds() {
    let o = export("  image: x\n  scaling: {minContainers: 2, maxContainers: 6}\n");
    assert_eq!(replicas(&o), Some(2));
    assert_eq!(hpa(&o).min_replicas, Some(2));
    assert_eq!(hpa(&o).max_replicas, 6);
    let target = hpa(&o).scale_target_ref;
    assert_eq!(
        (
            target.api_version.as_deref(),
            target.kind.as_str(),
            target.name.as_str()
        ),
        (Some("apps/v1"), "Deployment", "web")
    );
}

#[test]
fn omitted_scaling_fields_take_the_operators_defaults() {
    let defaults = ScalingDefaults {
        min_containers: 3,
        max_containers: 5,
        cpu_overload_threshold: 0.5,
        memory_overload_threshold: 128 << 20,
        cooldown_duration: std::time::Duration::from_secs(90),
        poll_interval: std::time::Duration::from_secs(4),
        ..ScalingDefaults::default()
    };
    let o = export_with(MINIMAL, &defaults).unwrap();
    assert_eq!(replicas(&o), Some(3));
    assert_eq!((hpa(&o).min_replicas, hpa(&o).max_replicas), (Some(3), 5));
    let metrics = hpa(&o).metrics.unwrap();
    let cpu = metrics[0].resource.clone().unwrap();
    assert_eq!(cpu.target.average_utilization, Some(50));
    let memory = metrics[1].resource.clone().unwrap();
    assert_eq!(memory.target.average_value, Some(Quantity("128Mi".into())));
    assert_eq!(scale_down(&o).stabilization_window_seconds, Some(90));
    assert_eq!(scale_up(&o).policies.unwrap()[0].period_seconds, 4);
    assert_eq!(o.warnings, [], "defaults are not the user's choices");
}

#[test]
fn min_zero_parks_the_deployment_at_zero_and_says_why() {
    let o = export("  image: x\n  scaling: {minContainers: 0, maxContainers: 4}\n");
    assert_eq!(replicas(&o), Some(0));
    assert_eq!(hpa(&o).min_replicas, Some(1), "the HPA API needs >= 1");
    let w = warned(&o, "spec.scaling.minContainers").unwrap();
    for needle in [
        "HPAScaleToZero",
        "KEDA",
        "kubectl scale deployment/web --replicas=1",
    ] {
        assert!(w.contains(needle), "{needle:?} missing from {w}");
    }
}

#[test]
fn min_zero_from_the_environment_warns_too() {
    let defaults = ScalingDefaults {
        min_containers: 0,
        ..ScalingDefaults::default()
    };
    let o = export_with(MINIMAL, &defaults).unwrap();
    assert_eq!(replicas(&o), Some(0));
    assert!(warned(&o, "spec.scaling.minContainers").is_some());
}

#[test]
fn cpu_overload_threshold_is_a_utilization_of_the_request() {
    let o = export("  image: x\n  scaling: {cpuOverloadThreshold: 0.6}\n");
    let cpu = hpa(&o).metrics.unwrap()[0].clone();
    assert_eq!(cpu.type_, "Resource");
    let cpu = cpu.resource.unwrap();
    assert_eq!(cpu.name, "cpu");
    assert_eq!(cpu.target.type_, "Utilization");
    assert_eq!(cpu.target.average_utilization, Some(60));
    assert_eq!(o.warnings, []);
}

#[test]
fn a_cpu_threshold_between_whole_percents_is_rounded_with_a_warning() {
    let o = export("  image: x\n  scaling: {cpuOverloadThreshold: 0.655}\n");
    let cpu = hpa(&o).metrics.unwrap()[0].resource.clone().unwrap();
    assert_eq!(cpu.target.average_utilization, Some(66));
    assert!(warned(&o, "spec.scaling.cpuOverloadThreshold").is_some());
}

#[test]
fn memory_overload_threshold_is_an_average_value_per_pod() {
    let o = export("  image: x\n  scaling: {memoryOverloadThreshold: 200Mi}\n");
    let memory = hpa(&o).metrics.unwrap()[1].resource.clone().unwrap();
    assert_eq!(memory.name, "memory");
    assert_eq!(memory.target.type_, "AverageValue");
    assert_eq!(memory.target.average_value, Some(Quantity("200Mi".into())));
    assert_eq!(memory.target.average_utilization, None);
    let o = export(MINIMAL);
    let memory = hpa(&o).metrics.unwrap()[1].resource.clone().unwrap();
    assert_eq!(memory.target.average_value, Some(Quantity("300M".into())));
}

#[test]
fn cooldown_duration_is_the_scale_down_stabilization_window() {
    let o = export("  image: x\n  scaling: {cooldownDuration: 2m}\n");
    let down = scale_down(&o);
    assert_eq!(down.stabilization_window_seconds, Some(120));
    let policy = &down.policies.unwrap()[0];
    assert_eq!((policy.type_.as_str(), policy.value), ("Percent", 100));
    assert_eq!(o.warnings, []);
}

#[test]
fn a_cooldown_beyond_an_hour_or_between_seconds_is_adjusted_with_a_warning() {
    let o = export("  image: x\n  scaling: {cooldownDuration: 90m}\n");
    assert_eq!(scale_down(&o).stabilization_window_seconds, Some(3600));
    assert!(warned(&o, "spec.scaling.cooldownDuration").is_some());
    let o = export("  image: x\n  scaling: {cooldownDuration: 1500ms}\n");
    assert_eq!(scale_down(&o).stabilization_window_seconds, Some(2));
    assert!(warned(&o, "spec.scaling.cooldownDuration").is_some());
}

#[test]
fn scale_up_may_reach_max_in_one_step_without_stabilization() {
    let o = export("  image: x\n  scaling: {maxContainers: 7}\n");
    let up = scale_up(&o);
    assert_eq!(up.stabilization_window_seconds, Some(0));
    assert_eq!(up.select_policy.as_deref(), Some("Max"));
    let policies = up.policies.unwrap();
    assert_eq!(policies.len(), 1);
    assert_eq!((policies[0].type_.as_str(), policies[0].value), ("Pods", 7));
    assert_eq!(policies[0].period_seconds, 2);
}

#[test]
fn poll_interval_sets_the_policy_periods_and_warns_that_the_sync_period_is_global() {
    let o = export("  image: x\n  scaling: {pollInterval: 5s}\n");
    assert_eq!(scale_up(&o).policies.unwrap()[0].period_seconds, 5);
    assert_eq!(scale_down(&o).policies.unwrap()[0].period_seconds, 5);
    let w = warned(&o, "spec.scaling.pollInterval").unwrap();
    assert!(w.contains("horizontal-pod-autoscaler-sync-period"), "{w}");
}

#[test]
fn target_concurrency_is_not_exported_and_says_what_would_do_it() {
    let o = export("  image: x\n  scaling: {targetConcurrency: 8}\n");
    let w = warned(&o, "spec.scaling.targetConcurrency").unwrap();
    assert!(
        w.contains("KEDA") && w.contains("Prometheus adapter"),
        "{w}"
    );
    assert_eq!(
        hpa(&o).metrics.unwrap().len(),
        2,
        "no custom metric invented"
    );
}

#[test]
fn request_rate_and_custom_metrics_become_pods_metrics_and_predictive_is_not_expressible() {
    let o = export(
        "  image: x\n  scaling:\n    targetRequestsPerSecond: 12.5\n    customMetrics: [{name: queue_depth, targetPerContainer: 10}]\n    predictive: {horizon: 1m}\n",
    );
    let metrics = hpa(&o).metrics.unwrap();
    let pods: Vec<(String, String)> = metrics
        .iter()
        .filter_map(|m| m.pods.as_ref())
        .map(|p| {
            (
                p.metric.name.clone(),
                p.target.average_value.clone().unwrap().0,
            )
        })
        .collect();
    assert_eq!(
        pods,
        [
            (workload::RATE_METRIC.to_string(), "12500m".to_string()),
            ("queue_depth".to_string(), "10".to_string())
        ]
    );
    for field in [
        "spec.scaling.targetRequestsPerSecond",
        "spec.scaling.customMetrics[0]",
    ] {
        let w = warned(&o, field).unwrap();
        assert!(w.contains("metrics adapter"), "{field}: {w}");
    }
    let w = warned(&o, "spec.scaling.predictive").unwrap();
    assert!(w.starts_with("not expressible"), "{w}");
}

#[test]
fn a_cooldown_cpu_threshold_that_was_written_warns_that_the_hpa_has_no_idle_threshold() {
    let o = export("  image: x\n  scaling: {cooldownCpuThreshold: 0.2}\n");
    assert!(warned(&o, "spec.scaling.cooldownCpuThreshold").is_some());
    assert_eq!(
        warned(&export(MINIMAL), "spec.scaling.cooldownCpuThreshold"),
        None
    );
}

#[test]
fn a_timeout_that_was_written_warns_that_kubernetes_has_no_request_timeout_here() {
    let o = export("  image: x\n  timeout: 90s\n");
    let w = warned(&o, "spec.timeout").unwrap();
    assert!(w.starts_with("1m30s not exported"), "{w}");
    for place in ["HTTPRoute", "proxy-read-timeout", "timeoutSeconds"] {
        assert!(w.contains(place), "{place} not in {w}");
    }
    // Nothing invented: no field of the objects carries it.
    assert_eq!(o.deployment, export("  image: x\n").deployment);
    assert_eq!(warned(&export(MINIMAL), "spec.timeout"), None);
}

#[test]
fn network_is_not_exported_with_a_warning() {
    let o = export("  image: x\n  network: invok-network\n");
    let w = warned(&o, "spec.network").unwrap();
    assert!(w.contains("NetworkPolicy"), "{w}");
}

#[test]
fn every_object_carries_the_common_labels_and_the_users_and_selects_by_name() {
    let doc = "apiVersion: invok.dev/v1alpha1\nkind: FunctionPool\nmetadata: {name: web, labels: {team: payments}}\nspec: {image: x}\n";
    let o = export_doc(doc, &ScalingDefaults::default()).unwrap();
    let expected: BTreeMap<String, String> = [
        (NAME_LABEL, "web"),
        (MANAGED_BY_LABEL, MANAGED_BY),
        ("team", "payments"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let spec = o.deployment.spec.clone().unwrap();
    for labels in [
        &o.deployment.metadata.labels,
        &o.service.metadata.labels,
        &o.autoscaler.metadata.labels,
        &spec.template.metadata.unwrap().labels,
    ] {
        assert_eq!(labels.as_ref(), Some(&expected));
    }
    let selector = BTreeMap::from([(NAME_LABEL.to_string(), "web".to_string())]);
    assert_eq!(spec.selector.match_labels, Some(selector.clone()));
    assert_eq!(service(&o).selector, Some(selector));
}

#[test]
fn a_user_label_that_would_break_the_selectors_is_replaced_with_a_warning() {
    let doc = "apiVersion: invok.dev/v1alpha1\nkind: FunctionPool\nmetadata: {name: web, labels: {app.kubernetes.io/name: shop}}\nspec: {image: x}\n";
    let o = export_doc(doc, &ScalingDefaults::default()).unwrap();
    let labels = o.deployment.metadata.labels.clone().unwrap();
    assert_eq!(labels[NAME_LABEL], "web");
    assert!(warned(&o, "metadata.labels.app.kubernetes.io/name").is_some());
}

#[test]
fn spec_changes_roll_out_one_pod_at_a_time_new_before_old() {
    let strategy = export(MINIMAL).deployment.spec.unwrap().strategy.unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let rolling = strategy.rolling_update.unwrap();
    assert_eq!(rolling.max_surge, Some(IntOrString::Int(1)));
    assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(0)));
}

#[test]
fn a_pool_name_starting_with_a_digit_cannot_name_a_service() {
    let doc = "apiVersion: invok.dev/v1alpha1\nkind: FunctionPool\nmetadata: {name: 9web}\nspec: {image: x}\n";
    let err = export_doc(doc, &ScalingDefaults::default()).unwrap_err();
    assert_eq!(err.field, "metadata.name");
    assert!(err.message.contains("DNS-1035"), "{err}");
}

#[test]
fn documents_are_named_after_the_pool_and_the_kind() {
    let docs = export(MINIMAL).documents();
    let names: Vec<&str> = docs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["web-deployment.yaml", "web-service.yaml", "web-hpa.yaml"]
    );
    let kinds: Vec<String> = docs
        .iter()
        .map(|(_, d)| {
            let v: serde_yaml::Value = serde_yaml::from_str(d).unwrap();
            format!(
                "{} {}",
                v["apiVersion"].as_str().unwrap(),
                v["kind"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "apps/v1 Deployment",
            "v1 Service",
            "autoscaling/v2 HorizontalPodAutoscaler"
        ]
    );
}

#[test]
fn a_yaml_stream_separates_every_document() {
    let stream = yaml_stream(["a: 1\n".to_string(), "b: 2\n".to_string()]);
    assert_eq!(stream, "---\na: 1\n---\nb: 2\n");
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&stream)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert_eq!(docs.len(), 2);
}

#[test]
fn the_crd_names_the_resource_as_kubectl_shows_it() {
    let crd = crd();
    let names = &crd.spec.names;
    assert_eq!(crd.metadata.name.as_deref(), Some(CRD_NAME));
    assert_eq!(crd.spec.group, "invok.dev");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(names.kind, "FunctionPool");
    assert_eq!(names.plural, PLURAL);
    assert_eq!(names.singular.as_deref(), Some(SINGULAR));
    assert_eq!(names.short_names, Some(vec![SHORT_NAME.to_string()]));
    let version = &crd.spec.versions[0];
    assert_eq!(crd.spec.versions.len(), 1);
    assert_eq!(version.name, "v1alpha1");
    assert!(version.served && version.storage);
    assert!(version.subresources.as_ref().unwrap().status.is_some());
    let columns: Vec<(&str, &str)> = version
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| (c.name.as_str(), c.json_path.as_str()))
        .collect();
    assert_eq!(
        columns,
        [
            ("Min", ".spec.scaling.minContainers"),
            ("Max", ".spec.scaling.maxContainers"),
            ("Image", ".spec.image"),
            ("Age", ".metadata.creationTimestamp"),
        ]
    );
}

//! One pool as a Deployment, a Service and a HorizontalPodAutoscaler.
//!
//! The mapping follows what Invok does on a host, field by field:
//!
//! - The container: `image` (pulled only when missing, as Docker does for Invok), `command`
//!   as the container's `args` (Docker's `Cmd` replaces the image's CMD and keeps its
//!   ENTRYPOINT; in Kubernetes that is `args`, while `command` would replace the
//!   ENTRYPOINT), `env`, `port` as the named port `http`, `resources` as equal requests
//!   and limits, `readiness` as an HTTP GET probe, else a TCP probe of the port.
//! - Replicas: the Deployment starts at `minContainers`; spec changes roll out one pod at a
//!   time, the new one ready before an old one goes (maxSurge 1, maxUnavailable 0), as
//!   Invok rolls containers.
//! - Scaling: the HPA computes `ceil(current * usage / target)` per metric and takes the
//!   larger, the formula Invok's scaler uses. CPU is a utilization of the CPU request,
//!   which is `resources.cpus`, else [`DEFAULT_CPU_REQUEST`] (one core, what Invok measures
//!   an unlimited container against); memory an average value per pod. Scale-up is not
//!   rate-limited beyond one step per `pollInterval` (Invok adds what the load needs at
//!   once); scale-down waits `cooldownDuration` of lower recommendations.
//! - The invocation timeout: a Deployment and a Service have no request timeout (it
//!   belongs to whatever routes requests in, an HTTPRoute, an Ingress, Knative), so a
//!   `timeout` the manifest sets is a warning.
//!
//! What has no equivalent comes back as a [`Warning`] naming the field.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::autoscaling::v2 as autoscaling;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, HTTPGetAction, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, Service, ServicePort, ServiceSpec, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::{self, EffectiveSpec, FunctionPool};

/// The label every object carries with the pool's name; the Service, the Deployment and
/// so the HPA select the pool's pods by it.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// The label that marks an object as exported by Invok.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "invok";
/// Name of the pod's only container (`kubectl logs ... -c function`).
pub const CONTAINER_NAME: &str = "function";
/// Name of the function's port, which the probe and the Service refer to.
pub const PORT_NAME: &str = "http";
/// The Service's port: callers inside the cluster use `http://<pool>/`.
pub const SERVICE_PORT: i32 = 80;
/// CPU request of a pool without `resources.cpus`: one core, the capacity Invok measures
/// the CPU usage of such a container against, so `cpuOverloadThreshold` keeps its meaning
/// as a utilization. No limit is set, as Invok sets none.
pub const DEFAULT_CPU_REQUEST: &str = "1";

/// The HPA API's upper bound on `stabilizationWindowSeconds`.
const MAX_STABILIZATION_SECONDS: u64 = 3600;
/// The HPA API's upper bound on a policy's `periodSeconds`.
const MAX_POLICY_PERIOD_SECONDS: u64 = 1800;
/// How often the readiness probe runs, and how long it may take: Invok gives an HTTP
/// probe 2 s.
const PROBE_SECONDS: i32 = 2;

/// A pool's objects, and what did not carry over.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolObjects {
    /// The pods, `minContainers` of them to start with.
    pub deployment: Deployment,
    /// A ClusterIP Service on port 80 in front of the pods' `http` port.
    pub service: Service,
    /// Scales the Deployment between min and max on CPU and memory.
    pub autoscaler: autoscaling::HorizontalPodAutoscaler,
    /// What Kubernetes cannot express the way Invok does it.
    pub warnings: Vec<Warning>,
}

impl PoolObjects {
    /// The objects as `(file name, YAML document)`, in the order to apply them:
    /// `<pool>-deployment.yaml`, `<pool>-service.yaml`, `<pool>-hpa.yaml`.
    pub fn documents(&self) -> Vec<(String, String)> {
        let name = self.deployment.metadata.name.as_deref().unwrap_or_default();
        vec![
            (
                format!("{name}-deployment.yaml"),
                super::to_yaml(&self.deployment),
            ),
            (
                format!("{name}-service.yaml"),
                super::to_yaml(&self.service),
            ),
            (format!("{name}-hpa.yaml"), super::to_yaml(&self.autoscaler)),
        ]
    }
}

/// Something in a pool that Kubernetes does differently or not at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The field concerned, such as `spec.scaling.targetConcurrency`.
    pub field: String,
    /// What happens instead, and what to use when it matters.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A pool that cannot become Kubernetes objects at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ExportError {
    /// The field concerned.
    pub field: String,
    /// Why, and what to change.
    pub message: String,
}

/// Maps one validated pool to its Kubernetes objects.
///
/// `manifest` is what the user wrote (to tell set fields from defaulted ones, and for the
/// labels); `spec` its validated form, whose defaults come from the operator's environment
/// as they would for `invok run`.
///
/// ```
/// use invok::api::{FunctionPool, ScalingDefaults};
/// let yaml = "apiVersion: invok.dev/v1alpha1\nkind: FunctionPool\nmetadata: {name: hello}\nspec: {image: 'invok/demo-fn:latest'}\n";
/// let pool: FunctionPool = serde_yaml::from_str(yaml).unwrap();
/// let spec = pool.validate(&ScalingDefaults::default()).unwrap();
/// let objects = invok::export::pool_objects(&pool, &spec).unwrap();
/// assert_eq!(objects.deployment.spec.unwrap().replicas, Some(1));
/// assert!(objects.warnings.is_empty());
/// ```
pub fn pool_objects(
    manifest: &FunctionPool,
    spec: &EffectiveSpec,
) -> Result<PoolObjects, ExportError> {
    let name = spec.name.as_str();
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(ExportError {
            field: "metadata.name".into(),
            message: format!(
                "{name:?} cannot name a Kubernetes Service, whose name must start with a letter (DNS-1035 label); rename the pool"
            ),
        });
    }
    let mut warnings = Warnings::default();
    let labels = labels(manifest, name, &mut warnings);
    let pool = Pool {
        name,
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels.clone()),
            ..Default::default()
        },
        labels,
        selector: BTreeMap::from([(NAME_LABEL.to_string(), name.to_string())]),
        min: replicas(
            spec.scaling.min,
            "spec.scaling.minContainers",
            &mut warnings,
        ),
        max: replicas(
            spec.scaling.max,
            "spec.scaling.maxContainers",
            &mut warnings,
        ),
    };
    if pool.min == 0 {
        warnings.add(
            "spec.scaling.minContainers",
            format!(
                "0 (scale to zero) has no HorizontalPodAutoscaler equivalent: the HPA needs minReplicas >= 1 unless the alpha feature gate HPAScaleToZero is on, and nothing in plain Kubernetes starts a pod on the first request. Exported as Deployment replicas 0 and HPA minReplicas 1; the HPA does not act on a Deployment at 0 replicas, so the pool stays at zero until scaled (kubectl scale deployment/{name} --replicas=1), then keeps at least 1. For scale to zero on demand, use KEDA (its HTTP add-on) instead of this HPA"
            ),
        );
    }
    if manifest.spec.timeout.is_some() {
        warnings.add(
            "spec.timeout",
            format!(
                "{} not exported: a Deployment and its Service have no request timeout, so Kubernetes ends no slow request; set it where requests enter the cluster: a Gateway API HTTPRoute's timeouts.request, your Ingress controller's (ingress-nginx: the nginx.ingress.kubernetes.io/proxy-read-timeout annotation), or Knative Serving's timeoutSeconds",
                api::format_duration(spec.timeout)
            ),
        );
    }
    Ok(PoolObjects {
        deployment: deployment(&pool, spec, &mut warnings),
        service: service(&pool),
        autoscaler: autoscaler(&pool, manifest, spec, &mut warnings),
        warnings: warnings.0,
    })
}

/// What every object of a pool shares.
struct Pool<'a> {
    name: &'a str,
    /// Name and labels of each object.
    metadata: ObjectMeta,
    /// The labels of each object and of the pods.
    labels: BTreeMap<String, String>,
    /// What the Deployment and the Service select the pods by.
    selector: BTreeMap<String, String>,
    min: i32,
    max: i32,
}

#[derive(Default)]
struct Warnings(Vec<Warning>);

impl Warnings {
    fn add(&mut self, field: &str, message: String) {
        self.0.push(Warning {
            field: field.into(),
            message,
        });
    }
}

/// The user's labels, then ours, which the selectors rely on.
fn labels(
    manifest: &FunctionPool,
    name: &str,
    warnings: &mut Warnings,
) -> BTreeMap<String, String> {
    let mut labels = manifest.metadata.labels.clone();
    for (key, value) in [(NAME_LABEL, name), (MANAGED_BY_LABEL, MANAGED_BY)] {
        if let Some(theirs) = labels.insert(key.into(), value.into()) {
            if theirs != value {
                warnings.add(
                    &format!("metadata.labels.{key}"),
                    format!("{theirs:?} replaced by {value:?}: the exported objects select the pool's pods by it"),
                );
            }
        }
    }
    labels
}

fn deployment(pool: &Pool, spec: &EffectiveSpec, warnings: &mut Warnings) -> Deployment {
    Deployment {
        metadata: pool.metadata.clone(),
        spec: Some(DeploymentSpec {
            replicas: Some(pool.min),
            selector: LabelSelector {
                match_labels: Some(pool.selector.clone()),
                match_expressions: None,
            },
            // One pod at a time, the new one ready before an old one goes, as Invok rolls.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pool.labels.clone()),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container(spec, warnings)],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

fn container(spec: &EffectiveSpec, warnings: &mut Warnings) -> Container {
    let template = &spec.template;
    let mut requests = BTreeMap::new();
    let mut limits = BTreeMap::new();
    match template.cpus {
        Some(cores) => {
            let q = cpu_quantity(cores, warnings);
            requests.insert("cpu".to_string(), q.clone());
            limits.insert("cpu".to_string(), q);
        }
        None => {
            requests.insert("cpu".to_string(), Quantity(DEFAULT_CPU_REQUEST.into()));
        }
    }
    if let Some(bytes) = template.memory {
        requests.insert("memory".to_string(), memory_quantity(bytes));
        limits.insert("memory".to_string(), memory_quantity(bytes));
    }
    if let Some(network) = &template.network {
        warnings.add(
            "spec.network",
            format!("{network:?} not exported: Kubernetes has no Docker networks; every pod reaches every Service in the cluster (restrict traffic with a NetworkPolicy)"),
        );
    }
    let port = IntOrString::String(PORT_NAME.into());
    let (http_get, tcp_socket) = match &spec.readiness {
        api::Probe::Http { path } => (
            Some(HTTPGetAction {
                path: Some(path.clone()),
                port,
                ..Default::default()
            }),
            None,
        ),
        api::Probe::Tcp => (None, Some(TCPSocketAction { port, host: None })),
    };
    Container {
        name: CONTAINER_NAME.into(),
        image: Some(template.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        // Docker's Cmd: replaces the image's CMD and keeps its ENTRYPOINT.
        args: template.command.clone(),
        env: (!template.env.is_empty()).then(|| {
            template
                .env
                .iter()
                .map(|(name, value)| EnvVar {
                    name: name.clone(),
                    value: Some(value.clone()),
                    value_from: None,
                })
                .collect()
        }),
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME.into()),
            container_port: template.port.into(),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        resources: Some(ResourceRequirements {
            requests: Some(requests),
            limits: (!limits.is_empty()).then_some(limits),
            ..Default::default()
        }),
        readiness_probe: Some(Probe {
            http_get,
            tcp_socket,
            period_seconds: Some(PROBE_SECONDS),
            timeout_seconds: Some(PROBE_SECONDS),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn service(pool: &Pool) -> Service {
    Service {
        metadata: pool.metadata.clone(),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(pool.selector.clone()),
            ports: Some(vec![ServicePort {
                name: Some(PORT_NAME.into()),
                port: SERVICE_PORT,
                target_port: Some(IntOrString::String(PORT_NAME.into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

fn autoscaler(
    pool: &Pool,
    manifest: &FunctionPool,
    spec: &EffectiveSpec,
    warnings: &mut Warnings,
) -> autoscaling::HorizontalPodAutoscaler {
    let s = &spec.scaling;
    let written = manifest.spec.scaling.clone().unwrap_or_default();

    let percent = s.cpu_overload_threshold * 100.0;
    let utilization = (percent.round() as i32).max(1);
    if (percent - f64::from(utilization)).abs() > 1e-6 {
        warnings.add(
            "spec.scaling.cpuOverloadThreshold",
            format!("{} rounded to {utilization}%: the HPA's CPU target is a whole percentage of the request", s.cpu_overload_threshold),
        );
    }
    if written.cooldown_cpu_threshold.is_some() {
        warnings.add(
            "spec.scaling.cooldownCpuThreshold",
            "not exported: the HPA has no idle threshold; it scales down when the pods' average CPU and memory stay far enough below the targets (cpuOverloadThreshold, memoryOverloadThreshold) for the stabilization window (cooldownDuration)".into(),
        );
    }
    if let Some(target) = s.target_concurrency {
        warnings.add(
            "spec.scaling.targetConcurrency",
            format!("{target} not exported: requests in flight per pod are not a metric the HPA has; scale on them with KEDA's HTTP add-on, or a Prometheus adapter serving a Pods metric to this HPA"),
        );
    }
    let pods_metrics = pods_metrics(s, warnings);
    let period = seconds(s.poll_interval, 1, MAX_POLICY_PERIOD_SECONDS);
    if written.poll_interval.is_some() {
        warnings.add(
            "spec.scaling.pollInterval",
            format!("the HPA samples metrics on the cluster-wide --horizontal-pod-autoscaler-sync-period (default 15s), not per object; {} is used only as the period of the scaling policies ({period}s)", api::format_duration(s.poll_interval)),
        );
    } else if whole_seconds(period) != s.poll_interval {
        warnings.add(
            "spec.scaling.pollInterval",
            format!(
                "{} rounded to {period}s as the scaling policies' period",
                api::format_duration(s.poll_interval)
            ),
        );
    }
    let window = seconds(s.cooldown_duration, 0, MAX_STABILIZATION_SECONDS);
    if whole_seconds(window) != s.cooldown_duration {
        warnings.add(
            "spec.scaling.cooldownDuration",
            format!("{} exported as a scale-down stabilization window of {window}s (whole seconds, at most {MAX_STABILIZATION_SECONDS})", api::format_duration(s.cooldown_duration)),
        );
    }

    let resource_metric =
        |resource: &str, target: autoscaling::MetricTarget| autoscaling::MetricSpec {
            type_: "Resource".into(),
            resource: Some(autoscaling::ResourceMetricSource {
                name: resource.into(),
                target,
            }),
            ..Default::default()
        };
    let rule = |window: i32, type_: &str, value: i32| autoscaling::HPAScalingRules {
        stabilization_window_seconds: Some(window),
        select_policy: Some("Max".into()),
        policies: Some(vec![autoscaling::HPAScalingPolicy {
            type_: type_.into(),
            value,
            period_seconds: period,
        }]),
        ..Default::default()
    };
    autoscaling::HorizontalPodAutoscaler {
        metadata: pool.metadata.clone(),
        spec: Some(autoscaling::HorizontalPodAutoscalerSpec {
            scale_target_ref: autoscaling::CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: pool.name.into(),
            },
            min_replicas: Some(pool.min.max(1)),
            max_replicas: pool.max,
            metrics: Some(
                [
                    resource_metric(
                        "cpu",
                        autoscaling::MetricTarget {
                            type_: "Utilization".into(),
                            average_utilization: Some(utilization),
                            ..Default::default()
                        },
                    ),
                    resource_metric(
                        "memory",
                        autoscaling::MetricTarget {
                            type_: "AverageValue".into(),
                            average_value: Some(memory_quantity(s.memory_overload_threshold)),
                            ..Default::default()
                        },
                    ),
                ]
                .into_iter()
                .chain(pods_metrics)
                .collect(),
            ),
            behavior: Some(autoscaling::HorizontalPodAutoscalerBehavior {
                // Up at once to what the load needs, as Invok does: up to max pods a period.
                scale_up: Some(rule(0, "Pods", pool.max)),
                // Down after cooldownDuration of lower recommendations, all at once.
                scale_down: Some(rule(window, "Percent", 100)),
            }),
        }),
        status: None,
    }
}

/// The HPA name the request-rate metric is exported under (a `Pods` metric: something
/// must serve it per pod, as a Prometheus adapter does from the pods' request counts).
pub const RATE_METRIC: &str = "http_requests_per_second";

/// `targetRequestsPerSecond` and `customMetrics` as the HPA's `Pods` metrics (average
/// value per pod, as Invok divides the pool's sum by the target per container), with
/// the warnings that say what they need; `predictive` is not expressible.
fn pods_metrics(s: &api::ScalingPolicy, warnings: &mut Warnings) -> Vec<autoscaling::MetricSpec> {
    let pods = |name: &str, target: f64| autoscaling::MetricSpec {
        type_: "Pods".into(),
        pods: Some(autoscaling::PodsMetricSource {
            metric: autoscaling::MetricIdentifier {
                name: name.into(),
                selector: None,
            },
            target: autoscaling::MetricTarget {
                type_: "AverageValue".into(),
                average_value: Some(decimal_quantity(target)),
                ..Default::default()
            },
        }),
        ..Default::default()
    };
    let mut metrics = Vec::new();
    if let Some(t) = s.target_requests_per_second {
        warnings.add(
            "spec.scaling.targetRequestsPerSecond",
            format!("exported as the Pods metric {RATE_METRIC} (average {t} per pod): the HPA reads it only through a custom metrics adapter (such as the Prometheus adapter) that serves each pod's request rate under that name; the Invok gateway counted it here"),
        );
        metrics.push(pods(RATE_METRIC, t));
    }
    for (i, m) in s.custom_metrics.iter().enumerate() {
        warnings.add(
            &format!("spec.scaling.customMetrics[{i}]"),
            format!("exported as the Pods metric {} (average {} per pod): the HPA reads it only through a custom metrics adapter (such as the Prometheus adapter, with Prometheus scraping {} on the pods); where Invok holds scale-down back while a container's metric is missing, the HPA counts a pod without it at its target", m.name, m.target_per_container, m.path),
        );
        metrics.push(pods(&m.name, m.target_per_container));
    }
    if let Some(p) = &s.predictive {
        warnings.add(
            "spec.scaling.predictive",
            format!("not expressible: the HPA scales on metrics observed now, not on a forecast (horizon {}, window {}); KEDA's predictive scalers or a schedule (KEDA's cron scaler) come closest", api::format_duration(p.horizon), api::format_duration(p.window)),
        );
    }
    metrics
}

/// A decimal as a Kubernetes quantity: whole numbers as they are, else in milli-units
/// (`12.5` is `12500m`), at least `1m`.
fn decimal_quantity(v: f64) -> Quantity {
    let millis = (v * 1000.0).round().max(1.0) as u64;
    Quantity(if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    })
}

/// A replica count as the API's `int32`, saturating (with a warning) above it.
fn replicas(n: usize, field: &str, warnings: &mut Warnings) -> i32 {
    i32::try_from(n).unwrap_or_else(|_| {
        warnings.add(
            field,
            format!("{n} exceeds the API's limit; exported as {}", i32::MAX),
        );
        i32::MAX
    })
}

fn whole_seconds(secs: i32) -> Duration {
    Duration::from_secs(secs.unsigned_abs().into())
}

/// Whole seconds (rounded up), within `[min, max]`.
fn seconds(d: Duration, min: u64, max: u64) -> i32 {
    let whole = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    whole.clamp(min, max) as i32
}

/// Cores as a CPU quantity: `1`, `500m`. Kubernetes counts millicores, so finer values
/// are rounded (never to zero).
fn cpu_quantity(cores: f64, warnings: &mut Warnings) -> Quantity {
    let exact = cores * 1000.0;
    let millis = (exact.round() as u64).max(1);
    if (exact - millis as f64).abs() > 1e-6 {
        warnings.add(
            "spec.resources.cpus",
            format!("{cores} rounded to {millis}m: Kubernetes counts CPU in millicores"),
        );
    }
    if millis.is_multiple_of(1000) {
        Quantity((millis / 1000).to_string())
    } else {
        Quantity(format!("{millis}m"))
    }
}

/// Bytes as the shortest exact quantity: `256Mi`, `300M`, or plain bytes.
fn memory_quantity(bytes: u64) -> Quantity {
    const SUFFIXES: [(&str, u64); 12] = [
        ("Ei", 1 << 60),
        ("Pi", 1 << 50),
        ("Ti", 1 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
        ("E", 1_000_000_000_000_000_000),
        ("P", 1_000_000_000_000_000),
        ("T", 1_000_000_000_000),
        ("G", 1_000_000_000),
        ("M", 1_000_000),
        ("k", 1_000),
    ];
    let best = SUFFIXES
        .iter()
        .filter(|(_, unit)| bytes > 0 && bytes.is_multiple_of(*unit))
        .min_by_key(|(_, unit)| bytes / unit);
    Quantity(match best {
        Some((suffix, unit)) => format!("{}{suffix}", bytes / unit),
        None => bytes.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_takes_the_shortest_exact_unit() {
        let q = |b| memory_quantity(b).0;
        assert_eq!(q(256 << 20), "256Mi");
        assert_eq!(q(300_000_000), "300M");
        assert_eq!(q(1 << 30), "1Gi");
        assert_eq!(q(2_048_000_000), "2048M");
        assert_eq!(q(1_572_864_000), "1500Mi");
        assert_eq!(q(123_457), "123457");
    }

    #[test]
    fn cpus_become_cores_or_millicores_and_warn_only_when_rounded() {
        let cpu = |cores| {
            let mut warnings = Warnings::default();
            let q = cpu_quantity(cores, &mut warnings);
            (q.0, warnings.0.len())
        };
        assert_eq!(cpu(1.0), ("1".into(), 0));
        assert_eq!(cpu(2.0), ("2".into(), 0));
        assert_eq!(cpu(0.5), ("500m".into(), 0));
        assert_eq!(cpu(1.25), ("1250m".into(), 0));
        assert_eq!(cpu(0.1), ("100m".into(), 0));
        assert_eq!(cpu(0.0001), ("1m".into(), 1));
        assert_eq!(cpu(0.3333), ("333m".into(), 1));
    }

    #[test]
    fn seconds_round_up_and_stay_in_bounds() {
        assert_eq!(seconds(Duration::from_millis(500), 1, 1800), 1);
        assert_eq!(seconds(Duration::from_millis(1500), 1, 1800), 2);
        assert_eq!(seconds(Duration::ZERO, 0, 3600), 0);
        assert_eq!(seconds(Duration::from_secs(7200), 0, 3600), 3600);
    }
}

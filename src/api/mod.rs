//! The `FunctionPool` resource: what users write, and what the operator trusts.
//!
//! Two layers, as ripgrep parses arguments: [`FunctionPool`] mirrors the YAML exactly
//! (serde, unknown fields denied, schemars for the JSON Schema), and [`EffectiveSpec`] is
//! the validated form with every default applied. [`FunctionPool::validate`] is the only
//! way from one to the other, so code after the edge never re-checks an invariant.
//! Nothing here does IO; the scaling defaults come in as a [`ScalingDefaults`] value that
//! the caller builds (usually from the environment, see [`ScalingDefaults::from_env`]).

mod quantity;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use quantity::{format_duration, parse_bytes, parse_duration, IntOrString, MAX_DURATION};

/// The API group of Invok's resources.
pub const GROUP: &str = "invok.dev";
/// The only version of the group this build understands.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "invok.dev/v1alpha1";
/// The resource kind.
pub const KIND: &str = "FunctionPool";

/// A pool of identical function containers, scaled on CPU and memory.
///
/// ```
/// let yaml = "apiVersion: invok.dev/v1alpha1\nkind: FunctionPool\nmetadata: {name: hello}\nspec: {image: 'invok/demo-fn:latest'}\n";
/// let pool: invok::api::FunctionPool = serde_yaml::from_str(yaml).unwrap();
/// let spec = pool.validate(&invok::api::ScalingDefaults::default()).unwrap();
/// assert_eq!(spec.scaling.min, 1);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "FunctionPool")]
pub struct FunctionPool {
    /// Always `invok.dev/v1alpha1`.
    #[schemars(extend("enum" = ["invok.dev/v1alpha1"]))]
    pub api_version: String,
    /// Always `FunctionPool`.
    #[schemars(extend("enum" = ["FunctionPool"]))]
    pub kind: String,
    /// Name and optional labels and annotations.
    pub metadata: ObjectMeta,
    /// What to run and how to scale it.
    pub spec: FunctionPoolSpec,
}

/// The subset of Kubernetes' `ObjectMeta` that a pool uses.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// DNS-1123 label (lower-case letters, digits and `-`, at most 63), unique in the directory.
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// Free-form labels, kept for tools such as Kustomize; Invok does not read them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Free-form annotations, kept for tools; Invok does not read them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The desired state of a pool.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FunctionPoolSpec {
    /// The image to run; it must exist locally or be pullable.
    #[schemars(length(min = 1))]
    pub image: String,
    /// Overrides the image's command (entrypoint arguments, as Docker's `Cmd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Environment variables for every container of the pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// The port the function listens on inside the container (default 8080).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u32>,
    /// A Docker network to join, created when missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Docker limits for each container; omitted means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Autoscaling settings; omitted fields take the operator's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<Scaling>,
    /// How to tell that a container is ready; default: a TCP connect to `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Readiness>,
    // The seed's `ContainerDetails.timeout` (300 s there).
    /// The longest an invocation may take (`30s`, `5m`; default 300s); a slower
    /// container's caller gets a 504. A routing setting: changing it replaces no
    /// container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<IntOrString>,
}

/// One environment variable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvVar {
    /// Variable name.
    pub name: String,
    /// Value (empty when omitted).
    #[serde(default)]
    pub value: String,
}

/// Docker resource limits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    /// CPU limit in cores (Docker `NanoCpus`); CPU usage is measured as a fraction of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub cpus: Option<f64>,
    /// Memory limit: bytes or a Kubernetes quantity such as `512Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<IntOrString>,
}

/// Autoscaling settings; every field is optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scaling {
    /// Containers kept even when idle (0 allows scale to zero).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_containers: Option<u32>,
    /// Upper bound on containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_containers: Option<u32>,
    /// CPU fraction (of the limit, or of one core) above which a container is overloaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("exclusiveMinimum" = 0, "maximum" = 1))]
    pub cpu_overload_threshold: Option<f64>,
    /// RSS above which a container is overloaded: bytes or a quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_overload_threshold: Option<IntOrString>,
    /// CPU fraction below which a container counts as idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("exclusiveMinimum" = 0, "maximum" = 1))]
    pub cooldown_cpu_threshold: Option<f64>,
    /// How long a container must stay idle before it is removed (`30s`, `2m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_duration: Option<IntOrString>,
    /// How often container usage is sampled (`2s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_interval: Option<IntOrString>,
    /// Requests in flight per ready container above which the pool scales up at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub target_concurrency: Option<u32>,
    /// Requests per second per ready container (OpenFaaS's rps mode): the gateway counts
    /// the pool's request rate and the pool asks for `ceil(rate / target)` containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub target_requests_per_second: Option<f64>,
    /// Gauges the function serves in Prometheus' text format, scraped from each ready
    /// container every `pollInterval`; each asks for `ceil(sum / targetPerContainer)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_metrics: Vec<CustomMetric>,
    /// Scale up ahead of the request rate forecast from its history (needs
    /// `targetRequestsPerSecond`); a forecast never scales down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictive: Option<Predictive>,
}

/// A metric the function serves about its own load (a queue's depth, jobs in progress).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomMetric {
    /// The metric's name in the function's Prometheus text (a gauge; samples of every
    /// label set are summed, and the sum over the pool's containers is the load).
    #[schemars(pattern(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"))]
    pub name: String,
    /// The path on the function's port that serves it; default `/metrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^/"))]
    pub path: Option<String>,
    /// The value one container should carry: the pool asks for `ceil(sum / target)`.
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub target_per_container: f64,
}

/// Predictive scaling on the request rate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Predictive {
    /// Have capacity ready for the rate expected this far ahead (default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizon: Option<IntOrString>,
    /// How much request-rate history the forecast learns from (default `10m`, at most
    /// `24h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<IntOrString>,
}

/// An HTTP readiness probe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Readiness {
    /// Path for an HTTP GET; any status below 400 means ready.
    #[schemars(pattern(r"^/"))]
    pub path: String,
}

/// Scaling values used where a manifest leaves a field out.
///
/// The seed's values unless the operator's environment says otherwise.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalingDefaults {
    /// `MIN_CONTAINERS_PER_FUNCTION`, default 1.
    pub min_containers: u32,
    /// `MAX_CONTAINERS_PER_FUNCTION`, default 10.
    pub max_containers: u32,
    /// `CPU_OVERLOAD_THRESHOLD`, default 0.70.
    pub cpu_overload_threshold: f64,
    /// `MEMORY_OVERLOAD_THRESHOLD` in bytes, default 300 MB.
    pub memory_overload_threshold: u64,
    /// `COOLDOWN_CPU_THRESHOLD`, default 0.10.
    pub cooldown_cpu_threshold: f64,
    /// `COOLDOWN_DURATION_SECS`, default 30 s.
    pub cooldown_duration: Duration,
    /// `POLL_INTERVAL_SECS`, default 2 s.
    pub poll_interval: Duration,
}

impl Default for ScalingDefaults {
    fn default() -> Self {
        ScalingDefaults {
            min_containers: 1,
            max_containers: 10,
            cpu_overload_threshold: 0.70,
            memory_overload_threshold: 300_000_000,
            cooldown_cpu_threshold: 0.10,
            cooldown_duration: Duration::from_secs(30),
            poll_interval: Duration::from_secs(2),
        }
    }
}

/// A bad value in one of the seed's environment variables.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("environment variable {var}={value:?}: {reason}")]
pub struct EnvError {
    /// The variable's name.
    pub var: &'static str,
    /// What it held.
    pub value: String,
    /// Why it was refused.
    pub reason: String,
}

impl ScalingDefaults {
    /// Reads the seed's variables from the process environment.
    pub fn from_env() -> Result<Self, EnvError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the seed's variables through `lookup`, so tests need not touch the process
    /// environment. Every value is checked as a manifest field would be.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, EnvError> {
        let mut d = ScalingDefaults::default();
        let get = |var: &'static str| {
            lookup(var)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (var, v))
        };
        let bad = |var: &'static str, value: &str, reason: String| EnvError {
            var,
            value: value.to_string(),
            reason,
        };
        let fraction = |var: &'static str, v: &str| -> Result<f64, EnvError> {
            let x: f64 = v
                .trim()
                .parse()
                .map_err(|_| bad(var, v, "expected a number such as 0.70".into()))?;
            check_fraction(x).map_err(|r| bad(var, v, r))?;
            Ok(x)
        };
        let count = |var: &'static str, v: &str| -> Result<u32, EnvError> {
            v.trim()
                .parse()
                .map_err(|_| bad(var, v, "expected a non-negative integer".into()))
        };
        let seconds = |var: &'static str, v: &str| -> Result<Duration, EnvError> {
            let secs: f64 = v
                .trim()
                .parse()
                .map_err(|_| bad(var, v, "expected a number of seconds".into()))?;
            Duration::try_from_secs_f64(secs)
                .map_err(|_| bad(var, v, "expected a non-negative number of seconds".into()))
        };
        if let Some((k, v)) = get("CPU_OVERLOAD_THRESHOLD") {
            d.cpu_overload_threshold = fraction(k, &v)?;
        }
        if let Some((k, v)) = get("MEMORY_OVERLOAD_THRESHOLD") {
            d.memory_overload_threshold = parse_bytes(&v).map_err(|r| bad(k, &v, r))?;
            if d.memory_overload_threshold == 0 {
                return Err(bad(k, &v, "must be greater than 0".into()));
            }
        }
        if let Some((k, v)) = get("COOLDOWN_CPU_THRESHOLD") {
            d.cooldown_cpu_threshold = fraction(k, &v)?;
        }
        if let Some((k, v)) = get("COOLDOWN_DURATION_SECS") {
            d.cooldown_duration = seconds(k, &v)?;
        }
        if let Some((k, v)) = get("MIN_CONTAINERS_PER_FUNCTION") {
            d.min_containers = count(k, &v)?;
        }
        if let Some((k, v)) = get("MAX_CONTAINERS_PER_FUNCTION") {
            d.max_containers = count(k, &v)?;
            if d.max_containers == 0 {
                return Err(bad(k, &v, "must be at least 1".into()));
            }
        }
        if let Some((k, v)) = get("POLL_INTERVAL_SECS") {
            d.poll_interval = seconds(k, &v)?;
            if d.poll_interval.is_zero() {
                return Err(bad(k, &v, "must be greater than 0".into()));
            }
        }
        if d.min_containers > d.max_containers {
            return Err(bad(
                "MIN_CONTAINERS_PER_FUNCTION",
                &d.min_containers.to_string(),
                format!("exceeds MAX_CONTAINERS_PER_FUNCTION ({})", d.max_containers),
            ));
        }
        if d.cooldown_cpu_threshold >= d.cpu_overload_threshold {
            return Err(bad(
                "COOLDOWN_CPU_THRESHOLD",
                &d.cooldown_cpu_threshold.to_string(),
                format!(
                    "must be below CPU_OVERLOAD_THRESHOLD ({})",
                    d.cpu_overload_threshold
                ),
            ));
        }
        Ok(d)
    }
}

fn check_fraction(x: f64) -> Result<(), String> {
    if x.is_finite() && x > 0.0 && x <= 1.0 {
        Ok(())
    } else {
        Err(format!("must be in (0, 1], got {x}"))
    }
}

/// One semantic error in a manifest, with the dotted path of the field it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path such as `spec.scaling.maxContainers` or `spec.env[1].name`.
    pub path: String,
    /// What is wrong and, where it helps, what to write instead.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// How a container is judged ready.
///
/// Read back with `Deserialize` from a pool report: `type` is never optional.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Probe {
    /// A TCP connect to the published port.
    Tcp,
    /// An HTTP GET of this path answering below 400.
    Http {
        /// The request path, starting with `/`.
        path: String,
    },
}

/// Scaling settings with every default applied and every invariant checked:
/// `min <= max`, `max >= 1`, thresholds in (0, 1], `cooldown_cpu < cpu_overload`,
/// `poll_interval > 0`.
///
/// Read back with `Deserialize` from a pool report (durations in the text
/// [`format_duration`] writes): `target_concurrency` reads as `None` when absent; every
/// other field every operator sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalingPolicy {
    /// Fewest containers kept.
    pub min: usize,
    /// Most containers allowed.
    pub max: usize,
    /// CPU fraction above which a container is overloaded.
    pub cpu_overload_threshold: f64,
    /// RSS in bytes above which a container is overloaded.
    pub memory_overload_threshold: u64,
    /// CPU fraction below which a container is idle.
    pub cooldown_cpu_threshold: f64,
    /// Idle time before a container may go.
    #[serde(with = "duration_text")]
    pub cooldown_duration: Duration,
    /// Sampling period.
    #[serde(with = "duration_text")]
    pub poll_interval: Duration,
    /// In-flight requests per ready container that trigger a scale-up, when set.
    pub target_concurrency: Option<u32>,
    /// Requests per second per ready container, when set.
    #[serde(default)]
    pub target_requests_per_second: Option<f64>,
    /// The function's own metrics to scale on, in manifest order.
    #[serde(default)]
    pub custom_metrics: Vec<CustomMetricPolicy>,
    /// Predictive scaling, when set.
    #[serde(default)]
    pub predictive: Option<PredictivePolicy>,
}

/// A validated [`CustomMetric`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomMetricPolicy {
    /// Metric name.
    pub name: String,
    /// Path that serves it (default `/metrics`).
    pub path: String,
    /// Value per container.
    pub target_per_container: f64,
}

/// A validated [`Predictive`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PredictivePolicy {
    /// How far ahead capacity is made ready.
    #[serde(with = "duration_text")]
    pub horizon: Duration,
    /// How much history the forecast reads.
    #[serde(with = "duration_text")]
    pub window: Duration,
}

/// Default `predictive.horizon`.
pub const DEFAULT_HORIZON: Duration = Duration::from_secs(30);
/// Default `predictive.window`.
pub const DEFAULT_FORECAST_WINDOW: Duration = Duration::from_secs(600);
/// The longest `predictive.window`: the history is kept in memory.
pub const MAX_FORECAST_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Default `customMetrics[].path`.
pub const DEFAULT_METRICS_PATH: &str = "/metrics";

/// What a container of the pool looks like; its hash tells old containers from new.
///
/// Read back with `Deserialize` from a pool report: the `Option` fields (`command`,
/// `network`, `cpus`, `memory`) read as `None` when absent; every other field every
/// operator sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerTemplate {
    /// Image reference.
    pub image: String,
    /// Command override.
    pub command: Option<Vec<String>>,
    /// Environment, in manifest order.
    pub env: Vec<(String, String)>,
    /// Port inside the container.
    pub port: u16,
    /// Docker network to join.
    pub network: Option<String>,
    /// CPU limit in cores.
    pub cpus: Option<f64>,
    /// Memory limit in bytes.
    pub memory: Option<u64>,
}

impl ContainerTemplate {
    /// A short, stable hash of everything that shapes a container: when it changes,
    /// containers are replaced. Scaling, readiness and the invocation timeout are not
    /// part of it: the template holds none of them.
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(self).expect("template serializes");
        let digest = Sha256::digest(&json);
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// CPU usage is measured against this many cores: the limit, else one core.
    pub fn cpu_capacity(&self) -> f64 {
        self.cpus.unwrap_or(1.0)
    }
}

/// A validated pool: the type the operator, the scaler and the gateway work with.
///
/// `Deserialize` reads back what an operator served in a pool report (every field is
/// always sent, except `timeout` by an operator older than it, which reads as
/// [`DEFAULT_TIMEOUT`]); it trusts that operator and checks nothing again. Input from
/// anywhere else goes through [`FunctionPool::validate`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveSpec {
    /// The pool's name (a DNS-1123 label).
    pub name: String,
    /// The container shape.
    pub template: ContainerTemplate,
    /// Scaling settings.
    pub scaling: ScalingPolicy,
    /// Readiness probe.
    pub readiness: Probe,
    /// The longest an invocation may take before the gateway gives up on the container
    /// (`spec.timeout`, default [`DEFAULT_TIMEOUT`]; never zero). A routing setting, so
    /// not part of `spec_hash`: changing it rolls no container.
    #[serde(with = "duration_text", default = "default_timeout")]
    pub timeout: Duration,
    /// `template.hash()`, computed once.
    pub spec_hash: String,
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

mod duration_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// Port used when a manifest leaves `spec.port` out.
pub const DEFAULT_PORT: u16 = 8080;

/// Invocation timeout used when a manifest leaves `spec.timeout` out: 300 s, the seed's
/// `ContainerDetails.timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Checks a DNS-1123 label: what Kubernetes accepts as a name, and safe in container names.
pub fn check_dns1123_label(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 63 {
        return Err(format!("must be at most 63 characters, got {}", name.len()));
    }
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok_ends = !name.starts_with('-') && !name.ends_with('-');
    if ok_chars && ok_ends {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a DNS-1123 label: use lower-case letters, digits and '-', starting and ending with a letter or digit"
        ))
    }
}

impl FunctionPool {
    /// Checks every rule and applies `defaults` to omitted scaling fields.
    ///
    /// Returns all errors at once (one pass), each with its field path.
    pub fn validate(&self, defaults: &ScalingDefaults) -> Result<EffectiveSpec, Vec<FieldError>> {
        let mut errs = Vec::new();
        let mut err = |path: &str, message: String| {
            errs.push(FieldError {
                path: path.to_string(),
                message,
            })
        };

        if self.api_version != API_VERSION {
            err(
                "apiVersion",
                format!("must be {API_VERSION}, got {:?}", self.api_version),
            );
        }
        if self.kind != KIND {
            err("kind", format!("must be {KIND}, got {:?}", self.kind));
        }
        if let Err(m) = check_dns1123_label(&self.metadata.name) {
            err("metadata.name", m);
        }

        let spec = &self.spec;
        let image = spec.image.trim();
        if image.is_empty() {
            err(
                "spec.image",
                "must not be empty: name the image to run, e.g. invok/demo-fn:latest".into(),
            );
        } else if image.chars().any(char::is_whitespace) {
            err(
                "spec.image",
                format!("{image:?} must not contain white space"),
            );
        }
        if let Some(cmd) = &spec.command {
            if cmd.is_empty() {
                err(
                    "spec.command",
                    "must not be empty when given; omit it to use the image's command".into(),
                );
            }
        }
        let mut seen = BTreeSet::new();
        for (i, e) in spec.env.iter().enumerate() {
            let valid = !e.name.is_empty()
                && !e.name.contains('=')
                && !e.name.starts_with(|c: char| c.is_ascii_digit())
                && e.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
            if !valid {
                err(
                    &format!("spec.env[{i}].name"),
                    format!("{:?} is not a valid variable name (letters, digits, '_', '-', '.'; not starting with a digit)", e.name),
                );
            } else if !seen.insert(e.name.as_str()) {
                err(
                    &format!("spec.env[{i}].name"),
                    format!("{:?} is set twice", e.name),
                );
            }
        }
        let port = match spec.port {
            None => DEFAULT_PORT,
            Some(p) if (1..=65535).contains(&p) => p as u16,
            Some(p) => {
                err("spec.port", format!("must be between 1 and 65535, got {p}"));
                DEFAULT_PORT
            }
        };
        if let Some(net) = &spec.network {
            if net.trim().is_empty() {
                err("spec.network", "must not be empty when given".into());
            } else if matches!(net.as_str(), "host" | "none") {
                err(
                    "spec.network",
                    format!("{net:?} cannot publish the function port on 127.0.0.1; use a bridge network"),
                );
            }
        }

        let mut cpus = None;
        let mut memory = None;
        if let Some(r) = &spec.resources {
            if let Some(c) = r.cpus {
                if c.is_finite() && c > 0.0 && c <= 1024.0 {
                    cpus = Some(c);
                } else {
                    err(
                        "spec.resources.cpus",
                        format!("must be a positive number of cores, got {c}"),
                    );
                }
            }
            if let Some(m) = &r.memory {
                match m.to_bytes() {
                    Ok(b) if b < 6 * 1024 * 1024 => err(
                        "spec.resources.memory",
                        format!("{m} is below Docker's minimum of 6Mi"),
                    ),
                    Ok(b) => memory = Some(b),
                    Err(e) => err("spec.resources.memory", e),
                }
            }
        }

        let s = spec.scaling.clone().unwrap_or_default();
        let min = s.min_containers.unwrap_or(defaults.min_containers);
        let max = s.max_containers.unwrap_or(defaults.max_containers);
        if max == 0 {
            err("spec.scaling.maxContainers", "must be at least 1".into());
        } else if min > max {
            let (path, from) = if s.max_containers.is_some() {
                ("spec.scaling.maxContainers", "")
            } else {
                (
                    "spec.scaling.minContainers",
                    " (maxContainers defaults from MAX_CONTAINERS_PER_FUNCTION)",
                )
            };
            err(
                path,
                format!("minContainers ({min}) must not exceed maxContainers ({max}){from}"),
            );
        }
        let cpu_overload = s
            .cpu_overload_threshold
            .unwrap_or(defaults.cpu_overload_threshold);
        if let Err(m) = check_fraction(cpu_overload) {
            err("spec.scaling.cpuOverloadThreshold", m);
        }
        let cooldown_cpu = s
            .cooldown_cpu_threshold
            .unwrap_or(defaults.cooldown_cpu_threshold);
        if let Err(m) = check_fraction(cooldown_cpu) {
            err("spec.scaling.cooldownCpuThreshold", m);
        } else if cooldown_cpu >= cpu_overload && check_fraction(cpu_overload).is_ok() {
            let path = if s.cooldown_cpu_threshold.is_some() {
                "spec.scaling.cooldownCpuThreshold"
            } else {
                "spec.scaling.cpuOverloadThreshold"
            };
            err(
                path,
                format!("cooldownCpuThreshold ({cooldown_cpu}) must be below cpuOverloadThreshold ({cpu_overload})"),
            );
        }
        let memory_overload = match &s.memory_overload_threshold {
            None => defaults.memory_overload_threshold,
            Some(q) => match q.to_bytes() {
                Ok(0) => {
                    err(
                        "spec.scaling.memoryOverloadThreshold",
                        "must be greater than 0".into(),
                    );
                    1
                }
                Ok(b) => b,
                Err(e) => {
                    err("spec.scaling.memoryOverloadThreshold", e);
                    1
                }
            },
        };
        let cooldown_duration = match &s.cooldown_duration {
            None => defaults.cooldown_duration,
            Some(d) => d.to_duration().unwrap_or_else(|e| {
                err("spec.scaling.cooldownDuration", e);
                Duration::ZERO
            }),
        };
        let poll_interval = match &s.poll_interval {
            None => defaults.poll_interval,
            Some(d) => match d.to_duration() {
                Ok(p) if p.is_zero() => {
                    err("spec.scaling.pollInterval", "must be greater than 0".into());
                    p
                }
                Ok(p) => p,
                Err(e) => {
                    err("spec.scaling.pollInterval", e);
                    Duration::ZERO
                }
            },
        };
        if s.target_concurrency == Some(0) {
            err(
                "spec.scaling.targetConcurrency",
                "must be at least 1 when given".into(),
            );
        }
        let signals = validate_signals(&s, &mut err);

        let readiness = match &spec.readiness {
            None => Probe::Tcp,
            Some(r) if r.path.starts_with('/') && !r.path.chars().any(char::is_whitespace) => {
                Probe::Http {
                    path: r.path.clone(),
                }
            }
            Some(r) => {
                err(
                    "spec.readiness.path",
                    format!("{:?} must be an absolute path such as /healthz", r.path),
                );
                Probe::Tcp
            }
        };

        let timeout = match &spec.timeout {
            None => DEFAULT_TIMEOUT,
            Some(d) => match d.to_duration() {
                Ok(t) if t.is_zero() => {
                    err("spec.timeout", "must be greater than 0".into());
                    t
                }
                Ok(t) => t,
                Err(e) => {
                    err("spec.timeout", e);
                    DEFAULT_TIMEOUT
                }
            },
        };

        if !errs.is_empty() {
            return Err(errs);
        }
        let template = ContainerTemplate {
            image: image.to_string(),
            command: spec.command.clone(),
            env: spec
                .env
                .iter()
                .map(|e| (e.name.clone(), e.value.clone()))
                .collect(),
            port,
            network: spec.network.clone(),
            cpus,
            memory,
        };
        Ok(EffectiveSpec {
            name: self.metadata.name.clone(),
            spec_hash: template.hash(),
            template,
            scaling: ScalingPolicy {
                min: min as usize,
                max: max as usize,
                cpu_overload_threshold: cpu_overload,
                memory_overload_threshold: memory_overload,
                cooldown_cpu_threshold: cooldown_cpu,
                cooldown_duration,
                poll_interval,
                target_concurrency: s.target_concurrency,
                target_requests_per_second: signals.0,
                custom_metrics: signals.1,
                predictive: signals.2,
            },
            readiness,
            timeout,
        })
    }
}

/// What [`validate_signals`] returns: the request-rate target, the custom metrics and
/// the predictive settings.
type Signals = (
    Option<f64>,
    Vec<CustomMetricPolicy>,
    Option<PredictivePolicy>,
);

/// Checks the scaling signals beyond CPU and memory (`targetRequestsPerSecond`,
/// `customMetrics`, `predictive`), reporting problems through `err`.
fn validate_signals(s: &Scaling, err: &mut impl FnMut(&str, String)) -> Signals {
    let positive = |v: f64| v.is_finite() && v > 0.0;
    let rps = s.target_requests_per_second;
    if let Some(t) = rps.filter(|t| !positive(*t)) {
        err(
            "spec.scaling.targetRequestsPerSecond",
            format!("must be a positive number, got {t}"),
        );
    }
    let mut names = BTreeSet::new();
    let mut metrics = Vec::new();
    for (i, m) in s.custom_metrics.iter().enumerate() {
        let at = |field: &str| format!("spec.scaling.customMetrics[{i}].{field}");
        let valid_name = m.name.chars().enumerate().all(|(j, c)| {
            c.is_ascii_alphabetic() || c == '_' || c == ':' || (j > 0 && c.is_ascii_digit())
        });
        if m.name.is_empty() || !valid_name {
            err(
                &at("name"),
                format!(
                    "{:?} is not a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)",
                    m.name
                ),
            );
        }
        let path = m.path.as_deref().unwrap_or(DEFAULT_METRICS_PATH);
        if !path.starts_with('/') || path.chars().any(char::is_whitespace) {
            err(
                &at("path"),
                format!("{path:?} must be an absolute path such as /metrics"),
            );
        }
        if !names.insert((m.name.as_str(), path)) {
            err(
                &at("name"),
                format!("{:?} at {path} is listed twice", m.name),
            );
        }
        if !positive(m.target_per_container) {
            err(
                &at("targetPerContainer"),
                format!("must be a positive number, got {}", m.target_per_container),
            );
        }
        metrics.push(CustomMetricPolicy {
            name: m.name.clone(),
            path: path.to_string(),
            target_per_container: m.target_per_container,
        });
    }
    let predictive = s.predictive.as_ref().map(|p| {
        let mut duration = |field: &str, v: &Option<IntOrString>, default: Duration| match v {
            None => default,
            Some(d) => match d.to_duration() {
                Ok(d) if d.is_zero() => {
                    err(&format!("spec.scaling.predictive.{field}"), "must be greater than 0".into());
                    default
                }
                Ok(d) => d,
                Err(e) => {
                    err(&format!("spec.scaling.predictive.{field}"), e);
                    default
                }
            },
        };
        let horizon = duration("horizon", &p.horizon, DEFAULT_HORIZON);
        let window = duration("window", &p.window, DEFAULT_FORECAST_WINDOW);
        if window > MAX_FORECAST_WINDOW {
            err(
                "spec.scaling.predictive.window",
                format!("must be at most {}", format_duration(MAX_FORECAST_WINDOW)),
            );
        }
        if rps.is_none() {
            err(
                "spec.scaling.predictive",
                "forecasts the request rate, so it needs targetRequestsPerSecond (the rate one container serves)".into(),
            );
        }
        PredictivePolicy { horizon, window }
    });
    (rps, metrics, predictive)
}

/// The JSON Schema of a `FunctionPool` document, as `invok schema` prints it.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(FunctionPool);
    serde_json::to_value(schema).expect("schema serializes")
}

#[cfg(test)]
mod tests;

//! Prometheus metrics: what the operator did (counters and histograms recorded where the
//! work happens) and what it sees (gauges read from the stores at scrape time).
//!
//! Two kinds of families live in one [`Metrics`]:
//!
//! - Event families are recorded by the code that does the work: reconciles and their
//!   duration ([`Metrics::record_reconcile`]), scale decisions
//!   ([`Metrics::record_scale`]), failed Docker calls ([`Metrics::docker`]), gateway
//!   requests ([`Metrics::observe_gateway`]) and the scheduler's queue depth.
//! - State families (containers per pool and state, CPU and RSS per container, desired
//!   and current counts) are rebuilt from a [`Snapshot`] of the controller's stores on
//!   every scrape, so they can never drift from what `/status` says, and a container
//!   that is gone leaves no stale series behind.
//!
//! [`Metrics::encode`] writes the Prometheus text format (0.0.4), which `promtool check
//! metrics` reads; [`Format::OpenMetrics`] is served to scrapers that ask for it.
//!
//! ```
//! use invok::metrics::{Format, Metrics, Snapshot};
//! let metrics = Metrics::new();
//! metrics.observe_gateway("hello", 200, 0.004);
//! let text = metrics.encode(&Snapshot::default(), Format::Prometheus);
//! assert!(text.contains(r#"invok_gateway_requests_total{pool="hello",code="200"} 1"#));
//! ```

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::runtime::RuntimeError;
use crate::scaler::Reason;

/// The pool label the gateway uses for requests that name no declared pool, so that
/// requests to arbitrary URLs cannot create an unbounded number of series.
pub const UNKNOWN_POOL: &str = "_unknown";

/// Every container state [`Snapshot`] counts, in the order they are exported. Each pool
/// reports all of them (zeros included), so an alert can tell 0 from "no data".
pub const CONTAINER_STATES: [&str; 6] = [
    "starting",
    "healthy",
    "overloaded",
    "idle",
    "failed",
    "draining",
];

/// The Docker operations whose failures are counted; each is exported from the start
/// (at 0), so a rate over them never starts from a missing series.
pub const DOCKER_OPERATIONS: [&str; 6] = [
    "list",
    "events",
    "create",
    "remove",
    "ensure_image",
    "ensure_network",
];

/// Upper bounds (seconds) of the duration histograms: from a no-op reconcile or an echo
/// request (~1 ms) to a cold start or a slow function (tens of seconds).
const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The exposition format of a scrape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4 (`text/plain; version=0.0.4`), the default.
    Prometheus,
    /// OpenMetrics 1.0 text, for scrapers whose `Accept` header asks for it.
    OpenMetrics,
}

impl Format {
    /// Picks the format an HTTP `Accept` header asks for (Prometheus text otherwise).
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolStateLabels {
    pool: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerLabels {
    pool: String,
    container: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScaleLabels {
    pool: String,
    direction: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    pool: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GatewayLabels {
    pool: String,
    code: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// One pool as a scrape sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PoolSample {
    /// The pool's name.
    pub name: String,
    /// Containers per state, indexed like [`CONTAINER_STATES`].
    pub states: [usize; 6],
    /// Containers that count (every state but draining), as `/status`'s `container_count`.
    pub current: usize,
    /// Ready containers.
    pub ready: usize,
    /// The replica count the scaler wants.
    pub desired: usize,
    /// `minContainers` and `maxContainers` in force, when the pool has a valid spec.
    pub bounds: Option<(usize, usize)>,
    /// Per container with a usage sample: (name, CPU fraction of its limit, RSS bytes).
    pub usage: Vec<(String, f64, u64)>,
}

/// What the state families are rebuilt from on each scrape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Every pool the controller knows.
    pub pools: Vec<PoolSample>,
    /// Whether the last Docker call reached the daemon.
    pub docker_reachable: bool,
    /// Errors of the last read of the manifest directory.
    pub manifest_errors: usize,
}

impl PoolSample {
    /// Counts one container in `state` (one of [`CONTAINER_STATES`]).
    pub fn count_state(&mut self, state: &str) {
        self.states[state_index(state)] += 1;
    }
}

fn state_index(state: &str) -> usize {
    CONTAINER_STATES
        .iter()
        .position(|s| *s == state)
        .expect("a known state")
}

/// The scale events a pool's counters start with (at 0): every direction and reason a
/// change of the replica target can have.
const SCALE_SERIES: [(&str, Reason); 10] = [
    ("up", Reason::Cpu),
    ("up", Reason::Memory),
    ("up", Reason::Concurrency),
    ("up", Reason::Demand),
    ("up", Reason::RequestRate),
    ("up", Reason::CustomMetric),
    ("up", Reason::Predictive),
    ("up", Reason::BelowMin),
    ("down", Reason::Idle),
    ("down", Reason::AboveMax),
];

/// The label value of a scaling reason (snake case, as Prometheus labels usually are).
pub fn reason_label(reason: Reason) -> &'static str {
    match reason {
        Reason::Steady => "steady",
        Reason::BelowMin => "below_min",
        Reason::AboveMax => "above_max",
        Reason::Cpu => "cpu",
        Reason::Memory => "memory",
        Reason::Concurrency => "concurrency",
        Reason::Demand => "demand",
        Reason::Idle => "idle",
        Reason::RequestRate => "request_rate",
        Reason::CustomMetric => "custom_metric",
        Reason::Predictive => "predictive",
    }
}

/// The operator's metrics; one per [`crate::controller::Controller`], shared through
/// `Shared::metrics`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// One scrape at a time: the state families are cleared and refilled per scrape.
    scrape: Mutex<()>,
    containers: Family<PoolStateLabels, Gauge>,
    container_cpu: Family<ContainerLabels, Gauge<f64, AtomicU64>>,
    container_rss: Family<ContainerLabels, Gauge>,
    pool_desired: Family<PoolLabels, Gauge>,
    pool_current: Family<PoolLabels, Gauge>,
    pool_ready: Family<PoolLabels, Gauge>,
    pool_min: Family<PoolLabels, Gauge>,
    pool_max: Family<PoolLabels, Gauge>,
    docker_reachable: Gauge,
    manifest_errors: Gauge,
    scale_events: Family<ScaleLabels, Counter>,
    reconciles: Family<ResultLabels, Counter>,
    reconcile_panics: Family<PoolLabels, Counter>,
    reconcile_duration: Histogram,
    queue_depth: Gauge,
    docker_errors: Family<OperationLabels, Counter>,
    gateway_requests: Family<GatewayLabels, Counter>,
    gateway_duration: HistogramFamily<PoolLabels>,
    cost_container_seconds: Family<PoolLabels, Counter<f64, AtomicU64>>,
    cost_cpu_seconds: Family<PoolLabels, Counter<f64, AtomicU64>>,
    cost_memory_byte_seconds: Family<PoolLabels, Counter<f64, AtomicU64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every family registered, all empty.
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::default(),
            scrape: Mutex::new(()),
            containers: Family::default(),
            container_cpu: Family::default(),
            container_rss: Family::default(),
            pool_desired: Family::default(),
            pool_current: Family::default(),
            pool_ready: Family::default(),
            pool_min: Family::default(),
            pool_max: Family::default(),
            docker_reachable: Gauge::default(),
            manifest_errors: Gauge::default(),
            scale_events: Family::default(),
            reconciles: Family::default(),
            reconcile_panics: Family::default(),
            reconcile_duration: duration_histogram(),
            queue_depth: Gauge::default(),
            docker_errors: Family::default(),
            gateway_requests: Family::default(),
            gateway_duration: Family::new_with_constructor(duration_histogram),
            cost_container_seconds: Family::default(),
            cost_cpu_seconds: Family::default(),
            cost_memory_byte_seconds: Family::default(),
        };
        let r = &mut m.registry;
        r.register(
            "invok_containers",
            "Containers per pool and state (starting, healthy, overloaded, idle, failed, draining)",
            m.containers.clone(),
        );
        r.register(
            "invok_container_cpu_ratio",
            "CPU usage of a container as a fraction of its CPU limit (of one core without a limit)",
            m.container_cpu.clone(),
        );
        r.register(
            "invok_container_memory_rss_bytes",
            "Resident memory of a container",
            m.container_rss.clone(),
        );
        r.register(
            "invok_pool_desired_containers",
            "Containers the scaler wants for a pool",
            m.pool_desired.clone(),
        );
        r.register(
            "invok_pool_current_containers",
            "Containers of a pool that exist and are not being removed",
            m.pool_current.clone(),
        );
        r.register(
            "invok_pool_ready_containers",
            "Containers of a pool that passed their readiness probe",
            m.pool_ready.clone(),
        );
        r.register(
            "invok_pool_min_containers",
            "minContainers of a pool's spec in force",
            m.pool_min.clone(),
        );
        r.register(
            "invok_pool_max_containers",
            "maxContainers of a pool's spec in force",
            m.pool_max.clone(),
        );
        r.register(
            "invok_docker_reachable",
            "1 when the last Docker call reached the daemon, else 0",
            m.docker_reachable.clone(),
        );
        r.register(
            "invok_manifest_errors",
            "Errors found by the last read of the manifest directory",
            m.manifest_errors.clone(),
        );
        r.register(
            "invok_scale_events",
            "Changes of a pool's replica target, by direction (up, down) and reason",
            m.scale_events.clone(),
        );
        r.register(
            "invok_reconcile",
            "Reconciles run per pool, by result (ok, error)",
            m.reconciles.clone(),
        );
        r.register(
            "invok_reconcile_panics",
            "Reconciles that panicked (a bug: the pool backs off and shows Degraded), per pool",
            m.reconcile_panics.clone(),
        );
        r.register(
            "invok_reconcile_duration_seconds",
            "Time one reconcile of one pool took",
            m.reconcile_duration.clone(),
        );
        r.register(
            "invok_reconcile_queue_depth",
            "Pools waiting for a free reconcile slot",
            m.queue_depth.clone(),
        );
        r.register(
            "invok_docker_api_errors",
            "Failed calls to the Docker daemon, by operation",
            m.docker_errors.clone(),
        );
        r.register(
            "invok_gateway_requests",
            "Requests the gateway answered, by pool and HTTP status code",
            m.gateway_requests.clone(),
        );
        r.register(
            "invok_gateway_request_duration_seconds",
            "Time the gateway took to answer a request, by pool",
            m.gateway_duration.clone(),
        );
        r.register(
            "invok_pool_container_seconds",
            "Container-seconds a pool's containers (starting or ready) ran",
            m.cost_container_seconds.clone(),
        );
        r.register(
            "invok_pool_cpu_seconds",
            "CPU-seconds (core-seconds) a pool's containers used, from their usage samples",
            m.cost_cpu_seconds.clone(),
        );
        r.register(
            "invok_pool_memory_byte_seconds",
            "Resident memory of a pool's containers times the time they held it",
            m.cost_memory_byte_seconds.clone(),
        );
        for operation in DOCKER_OPERATIONS {
            let _zero = m
                .docker_errors
                .get_or_create(&OperationLabels { operation });
        }
        m
    }

    /// Counts one reconcile of `pool` and observes how long it took.
    /// Both results of a pool are exported once it has been reconciled (the other at 0).
    pub fn record_reconcile(&self, pool: &str, ok: bool, seconds: f64) {
        for (result, happened) in [("ok", ok), ("error", !ok)] {
            let counter = self.reconciles.get_or_create(&ResultLabels {
                pool: pool.to_string(),
                result,
            });
            if happened {
                counter.inc();
            }
        }
        self.reconcile_duration.observe(seconds);
        // Counters exist from the pool's first reconcile, at 0: `increase()` over a
        // series that first appears at 1 reads 0, and an alert on it would miss the
        // first panic or scale event.
        let labels = PoolLabels {
            pool: pool.to_string(),
        };
        drop(self.reconcile_panics.get_or_create(&labels));
        for (direction, reason) in SCALE_SERIES {
            drop(self.scale_events.get_or_create(&ScaleLabels {
                pool: pool.to_string(),
                direction,
                reason: reason_label(reason),
            }));
        }
    }

    /// Adds what `pool` used since the last call to its cost counters: container-seconds,
    /// CPU-seconds and memory byte-seconds.
    pub fn record_cost(&self, pool: &str, used: [f64; 3]) {
        let labels = PoolLabels {
            pool: pool.to_string(),
        };
        let families = [
            &self.cost_container_seconds,
            &self.cost_cpu_seconds,
            &self.cost_memory_byte_seconds,
        ];
        for (family, v) in families.into_iter().zip(used) {
            family.get_or_create(&labels).inc_by(v.max(0.0));
        }
    }

    /// Counts a reconcile of `pool` that panicked (it also counts as an error).
    pub fn record_reconcile_panic(&self, pool: &str) {
        self.reconcile_panics
            .get_or_create(&PoolLabels {
                pool: pool.to_string(),
            })
            .inc();
    }

    /// Counts a change of `pool`'s replica target; `direction` is `up` or `down`.
    pub fn record_scale(&self, pool: &str, direction: &'static str, reason: Reason) {
        self.scale_events
            .get_or_create(&ScaleLabels {
                pool: pool.to_string(),
                direction,
                reason: reason_label(reason),
            })
            .inc();
    }

    /// Counts a failed Docker call; `operation` is one of [`DOCKER_OPERATIONS`].
    pub fn docker_error(&self, operation: &'static str) {
        self.docker_errors
            .get_or_create(&OperationLabels { operation })
            .inc();
    }

    /// Passes a Docker call's result through, counting it when it failed:
    /// `metrics.docker("create", runtime.create(&req).await)?`.
    pub fn docker<T>(
        &self,
        operation: &'static str,
        result: Result<T, RuntimeError>,
    ) -> Result<T, RuntimeError> {
        if result.is_err() {
            self.docker_error(operation);
        }
        result
    }

    /// Sets the scheduler's queue depth (pools waiting for a reconcile slot).
    pub fn set_queue_depth(&self, depth: usize) {
        self.queue_depth.set(depth as i64);
    }

    /// Records one request answered by the gateway: `code` is the status sent to the
    /// client (404 and 503 included), `seconds` the time from receiving the request to
    /// sending the response head.
    ///
    /// Pass the pool name only when the pool is declared, else [`UNKNOWN_POOL`]: the
    /// label must not take values from arbitrary request paths.
    ///
    /// ```
    /// let m = invok::metrics::Metrics::new();
    /// m.observe_gateway("hello", 200, 0.012);
    /// m.observe_gateway(invok::metrics::UNKNOWN_POOL, 404, 0.0001);
    /// ```
    pub fn observe_gateway(&self, pool: &str, code: u16, seconds: f64) {
        self.gateway_requests
            .get_or_create(&GatewayLabels {
                pool: pool.to_string(),
                code: code.to_string(),
            })
            .inc();
        self.gateway_duration
            .get_or_create(&PoolLabels {
                pool: pool.to_string(),
            })
            .observe(seconds);
    }

    /// Rebuilds the state families from `snapshot` and encodes every family.
    pub fn encode(&self, snapshot: &Snapshot, format: Format) -> String {
        let _one_scrape = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        self.refresh(snapshot);
        let mut out = String::new();
        let written = match format {
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            }
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)
            }
        };
        // Writing to a String cannot fail; a label that could not be encoded would be a bug.
        written.expect("metrics encode into a String");
        out
    }

    fn refresh(&self, snapshot: &Snapshot) {
        for family in [
            &self.pool_desired,
            &self.pool_current,
            &self.pool_ready,
            &self.pool_min,
            &self.pool_max,
        ] {
            family.clear();
        }
        self.containers.clear();
        self.container_cpu.clear();
        self.container_rss.clear();
        for p in &snapshot.pools {
            let pool = PoolLabels {
                pool: p.name.clone(),
            };
            for (state, n) in CONTAINER_STATES.iter().zip(p.states) {
                self.containers
                    .get_or_create(&PoolStateLabels {
                        pool: p.name.clone(),
                        state,
                    })
                    .set(n as i64);
            }
            self.pool_desired.get_or_create(&pool).set(p.desired as i64);
            self.pool_current.get_or_create(&pool).set(p.current as i64);
            self.pool_ready.get_or_create(&pool).set(p.ready as i64);
            if let Some((min, max)) = p.bounds {
                self.pool_min.get_or_create(&pool).set(min as i64);
                self.pool_max.get_or_create(&pool).set(max as i64);
            }
            for (container, cpu, rss) in &p.usage {
                let labels = ContainerLabels {
                    pool: p.name.clone(),
                    container: container.clone(),
                };
                self.container_cpu.get_or_create(&labels).set(*cpu);
                self.container_rss
                    .get_or_create(&labels)
                    .set((*rss).min(i64::MAX as u64) as i64);
            }
        }
        self.docker_reachable
            .set(i64::from(snapshot.docker_reachable));
        self.manifest_errors.set(snapshot.manifest_errors as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        Snapshot {
            pools: vec![PoolSample {
                name: "web".into(),
                states: [1, 2, 0, 1, 0, 0],
                current: 4,
                ready: 3,
                desired: 4,
                bounds: Some((2, 5)),
                usage: vec![("invok-web-abcde".into(), 0.25, 12_000_000)],
            }],
            docker_reachable: true,
            manifest_errors: 0,
        }
    }

    /// The families of a text exposition: `# TYPE` lines, name -> type.
    fn types(text: &str) -> std::collections::BTreeMap<String, String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| {
                let (n, t) = l.split_once(' ').unwrap();
                (n.to_string(), t.to_string())
            })
            .collect()
    }

    #[test]
    fn observe_gateway_counts_requests_by_pool_and_code_and_observes_their_duration() {
        let m = Metrics::new();
        m.observe_gateway("hello", 200, 0.003);
        m.observe_gateway("hello", 200, 0.2);
        m.observe_gateway("hello", 503, 5.5);
        let text = m.encode(&Snapshot::default(), Format::Prometheus);
        assert!(text.contains(r#"invok_gateway_requests_total{pool="hello",code="200"} 2"#));
        assert!(text.contains(r#"invok_gateway_requests_total{pool="hello",code="503"} 1"#));
        assert!(
            text.contains(
                r#"invok_gateway_request_duration_seconds_bucket{pool="hello",le="0.005"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"invok_gateway_request_duration_seconds_count{pool="hello"} 3"#));
        assert!(text.contains(
            r#"invok_gateway_request_duration_seconds_bucket{pool="hello",le="+Inf"} 3"#
        ));
    }

    #[test]
    fn every_family_is_declared_with_its_type() {
        let m = Metrics::new();
        m.observe_gateway("web", 200, 0.01);
        m.record_reconcile("web", true, 0.01);
        m.record_scale("web", "up", Reason::BelowMin);
        let text = m.encode(&sample(), Format::Prometheus);
        let t = types(&text);
        for (name, kind) in [
            ("invok_containers", "gauge"),
            ("invok_container_cpu_ratio", "gauge"),
            ("invok_container_memory_rss_bytes", "gauge"),
            ("invok_pool_desired_containers", "gauge"),
            ("invok_pool_current_containers", "gauge"),
            ("invok_pool_ready_containers", "gauge"),
            ("invok_pool_min_containers", "gauge"),
            ("invok_pool_max_containers", "gauge"),
            ("invok_docker_reachable", "gauge"),
            ("invok_manifest_errors", "gauge"),
            ("invok_scale_events_total", "counter"),
            ("invok_reconcile_total", "counter"),
            ("invok_reconcile_panics_total", "counter"),
            ("invok_reconcile_duration_seconds", "histogram"),
            ("invok_reconcile_queue_depth", "gauge"),
            ("invok_docker_api_errors_total", "counter"),
            ("invok_gateway_requests_total", "counter"),
            ("invok_gateway_request_duration_seconds", "histogram"),
        ] {
            assert_eq!(
                t.get(name).map(String::as_str),
                Some(kind),
                "{name} in\n{text}"
            );
        }
        assert_eq!(t.len(), 18, "{text}");
    }

    #[test]
    fn docker_errors_and_both_reconcile_results_start_at_zero() {
        let m = Metrics::new();
        m.record_reconcile("web", true, 0.01);
        let text = m.encode(&Snapshot::default(), Format::Prometheus);
        for op in DOCKER_OPERATIONS {
            let line = format!("invok_docker_api_errors_total{{operation=\"{op}\"}} 0");
            assert!(text.contains(&line), "{line} in\n{text}");
        }
        assert!(text.contains(r#"invok_reconcile_total{pool="web",result="error"} 0"#));
        // So that `increase()`, and the alerts on it, see the first panic and scale.
        assert!(
            text.contains(r#"invok_reconcile_panics_total{pool="web"} 0"#),
            "{text}"
        );
        for (direction, reason) in SCALE_SERIES {
            let line = format!(
                "invok_scale_events_total{{pool=\"web\",direction=\"{direction}\",reason=\"{}\"}} 0",
                reason_label(reason)
            );
            assert!(text.contains(&line), "{line} in\n{text}");
        }
    }

    #[test]
    fn state_families_follow_the_latest_snapshot_and_forget_what_is_gone() {
        let m = Metrics::new();
        let text = m.encode(&sample(), Format::Prometheus);
        assert!(text.contains(r#"invok_containers{pool="web",state="healthy"} 2"#));
        assert!(text.contains(r#"invok_containers{pool="web",state="overloaded"} 0"#));
        assert!(text
            .contains(r#"invok_container_cpu_ratio{pool="web",container="invok-web-abcde"} 0.25"#));
        assert!(text.contains(
            r#"invok_container_memory_rss_bytes{pool="web",container="invok-web-abcde"} 12000000"#
        ));
        assert!(text.contains(r#"invok_pool_desired_containers{pool="web"} 4"#));
        assert!(text.contains(r#"invok_pool_max_containers{pool="web"} 5"#));
        assert!(text.contains("invok_docker_reachable 1"));

        let text = m.encode(&Snapshot::default(), Format::Prometheus);
        assert!(!text.contains("invok-web-abcde"), "{text}");
        assert!(!text.contains(r#"pool="web""#), "{text}");
    }

    #[test]
    fn event_families_count_reconciles_scales_and_docker_errors() {
        let m = Metrics::new();
        m.record_reconcile("web", true, 0.02);
        m.record_reconcile("web", false, 1.5);
        m.record_scale("web", "up", Reason::Cpu);
        m.record_scale("web", "up", Reason::BelowMin);
        let r: Result<(), RuntimeError> = Err(RuntimeError::Api("boom".into()));
        assert!(m.docker("create", r).is_err());
        assert!(m.docker("list", Ok::<_, RuntimeError>(())).is_ok());
        m.set_queue_depth(3);
        let text = m.encode(&Snapshot::default(), Format::Prometheus);
        assert!(text.contains(r#"invok_reconcile_total{pool="web",result="ok"} 1"#));
        assert!(text.contains(r#"invok_reconcile_total{pool="web",result="error"} 1"#));
        assert!(text.contains("invok_reconcile_duration_seconds_count 2"));
        assert!(
            text.contains(r#"invok_scale_events_total{pool="web",direction="up",reason="cpu"} 1"#)
        );
        assert!(text.contains(
            r#"invok_scale_events_total{pool="web",direction="up",reason="below_min"} 1"#
        ));
        assert!(text.contains(r#"invok_docker_api_errors_total{operation="create"} 1"#));
        assert!(text.contains(r#"invok_docker_api_errors_total{operation="list"} 0"#));
        assert!(text.contains("invok_reconcile_queue_depth 3"));
    }

    #[test]
    fn openmetrics_is_served_to_scrapers_that_ask_for_it() {
        assert_eq!(Format::from_accept(None), Format::Prometheus);
        assert_eq!(
            Format::from_accept(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
            )),
            Format::OpenMetrics
        );
        let m = Metrics::new();
        m.record_scale("web", "down", Reason::Idle);
        let text = m.encode(&sample(), Format::OpenMetrics);
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("# TYPE invok_scale_events counter"));
        assert!(text
            .contains(r#"invok_scale_events_total{pool="web",direction="down",reason="idle"} 1"#));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.record_reconcile("we\"b\\\n", true, 0.0);
        let text = m.encode(&Snapshot::default(), Format::Prometheus);
        assert!(text.contains(r#"pool="we\"b\\\n""#), "{text}");
    }
}

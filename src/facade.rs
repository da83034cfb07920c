//! The seed's programmatic API: [`AutoscalingRuntime`] and its builder, over the very
//! engine `invok run` uses.
//!
//! Pools are declared in code instead of manifests: the first container registered for
//! a function creates its pool, with the registered container's image, port and the
//! builder's scaling settings. Registered containers are sampled, probed, counted and
//! routed to like Invok's own, but never replaced or removed; Invok grows such a pool
//! with containers of its own (labelled as such) and shrinks it by removing only those.
//! There is no second implementation here: the controller reconciles, the sampler
//! samples and [`crate::controller::ObservedStore::pick`] picks.
//!
//! ```no_run
//! use invok::AutoscalingRuntime;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = AutoscalingRuntime::new("invok-network".to_string()).await?;
//! runtime.start().await?;
//! runtime.register_container("my-function", "container-123".to_string(), "my-function-container-1".to_string()).await?;
//! if let Some(container_id) = runtime.execute_function("my-function").await? {
//!     println!("Function executed on container: {}", container_id);
//! }
//! println!("{}", serde_json::to_string_pretty(&runtime.get_status())?);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::api::{self, FunctionPool, FunctionPoolSpec, ObjectMeta, Scaling, ScalingDefaults};
use crate::controller::report::PoolSummary;
use crate::controller::{Config, Controller, Shared};
use crate::lock::{InstanceLock, LockError};
use crate::runtime::docker::DockerRuntime;
use crate::runtime::{Runtime, RuntimeError};
use crate::scaler::{self, LoadState, Phase, PoolFacts};

/// How long [`AutoscalingRuntime::register_container`] probes a running container before
/// it returns; a container that answers later is found by the background probe.
pub const REGISTER_PROBE_DEADLINE: Duration = Duration::from_secs(2);
/// The pause between two of those probes (a probe itself gives up connecting after
/// [`crate::runtime::readiness::CONNECT_TIMEOUT`]).
const REGISTER_PROBE_RETRY: Duration = Duration::from_millis(20);

/// Why a call of the programmatic API failed.
#[derive(Debug, thiserror::Error)]
pub enum AutoscalingError {
    /// Docker refused or could not be reached.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// [`AutoscalingRuntime::register_container`] could not register the container:
    /// `source` says why, [`RuntimeError::NotFound`] when there is no such container,
    /// [`RuntimeError::Unavailable`] when Docker cannot be reached.
    #[error("cannot register container {container:?} for function {function:?}: {}", register_failure(.source))]
    Register {
        /// The function it was to serve.
        function: String,
        /// The id or name it was registered by.
        container: String,
        /// What the runtime said.
        source: RuntimeError,
    },
    /// A bad environment variable (for [`AutoscalingRuntime::new`]).
    #[error(transparent)]
    Env(#[from] api::EnvError),
    /// The function name or the pool built from it is invalid.
    #[error("function {function:?}: {message}")]
    InvalidPool {
        /// The function.
        function: String,
        /// What is wrong.
        message: String,
    },
    /// `start` was called twice.
    #[error("the autoscaler is already started")]
    AlreadyStarted,
    /// [`AutoscalingRuntime::start`] found this instance already managed on this Docker
    /// daemon, by an `invok run --instance` of the same name or another
    /// `AutoscalingRuntime`: two would fight over the same containers. Nothing was
    /// started; stop the other, or give this runtime another
    /// [`AutoscalingRuntimeBuilder::instance`].
    #[error(
        "instance {instance:?} is already managed on this Docker daemon by another Invok \
         operator ({holder}): stop it first, or give this runtime another instance \
         (AutoscalingRuntimeBuilder::instance); lock file: {}",
        lock_file.display()
    )]
    InstanceTaken {
        /// The instance.
        instance: String,
        /// Who holds it: its pid and what it is (`invok run` and its admin address, or
        /// the programmatic API in some program).
        holder: String,
        /// The lock file ([`crate::lock`]).
        lock_file: std::path::PathBuf,
    },
    /// The instance lock could not be taken for another reason than another operator
    /// holding it (its directory cannot be written, see [`crate::lock::dir`]).
    #[error(transparent)]
    Lock(LockError),
}

impl From<LockError> for AutoscalingError {
    fn from(e: LockError) -> Self {
        match e {
            LockError::Taken {
                instance,
                holder,
                path,
                ..
            } => AutoscalingError::InstanceTaken {
                instance,
                holder,
                lock_file: path,
            },
            // The daemon could not say who it is: a runtime error like any other.
            LockError::Daemon { source, .. } => AutoscalingError::Runtime(source),
            e @ LockError::Io { .. } => AutoscalingError::Lock(e),
        }
    }
}

/// Who holds an instance taken by [`AutoscalingRuntime::start`], after `pid N, ` in the
/// lock file: what another operator's refusal quotes.
fn lock_holder() -> String {
    let program = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "a program".into());
    format!("AutoscalingRuntime (the invok library) in {program}")
}

/// What went wrong in a registration, in words: what failed first, Docker's own after.
fn register_failure(e: &RuntimeError) -> String {
    match e {
        RuntimeError::NotFound(_) => format!("no such container ({e})"),
        // "Docker is unreachable: ..." says it already.
        other => other.to_string(),
    }
}

/// The autoscaler's settings, printed at start as the seed's log line shows.
#[derive(Clone, Debug, PartialEq)]
pub struct AutoscalerConfig {
    /// CPU fraction above which a container is overloaded.
    pub cpu_overload_threshold: f64,
    /// RSS in bytes above which a container is overloaded.
    pub memory_overload_threshold: u64,
    /// CPU fraction below which a container is idle.
    pub cooldown_cpu_threshold: f64,
    /// Idle time before a container is removed.
    pub cooldown_duration: Duration,
    /// Containers kept per function.
    pub min_containers_per_function: usize,
    /// Containers allowed per function.
    pub max_containers_per_function: usize,
    /// Sampling period.
    pub poll_interval: Duration,
}

impl AutoscalerConfig {
    /// The settings the seed's environment variables give (else the seed's values).
    pub fn from_defaults(d: &ScalingDefaults) -> AutoscalerConfig {
        AutoscalerConfig {
            cpu_overload_threshold: d.cpu_overload_threshold,
            memory_overload_threshold: d.memory_overload_threshold,
            cooldown_cpu_threshold: d.cooldown_cpu_threshold,
            cooldown_duration: d.cooldown_duration,
            min_containers_per_function: d.min_containers as usize,
            max_containers_per_function: d.max_containers as usize,
            poll_interval: d.poll_interval,
        }
    }

    fn scaling(&self) -> Scaling {
        Scaling {
            min_containers: Some(self.min_containers_per_function as u32),
            max_containers: Some(self.max_containers_per_function as u32),
            cpu_overload_threshold: Some(self.cpu_overload_threshold),
            memory_overload_threshold: Some(api::IntOrString::Int(self.memory_overload_threshold)),
            cooldown_cpu_threshold: Some(self.cooldown_cpu_threshold),
            cooldown_duration: Some(api::IntOrString::String(api::format_duration(
                self.cooldown_duration,
            ))),
            poll_interval: Some(api::IntOrString::String(api::format_duration(
                self.poll_interval,
            ))),
            ..Default::default()
        }
    }
}

impl Default for AutoscalerConfig {
    fn default() -> Self {
        AutoscalerConfig::from_defaults(&ScalingDefaults::default())
    }
}

/// Builds an [`AutoscalingRuntime`] with custom settings (the seed's builder).
///
/// ```no_run
/// use invok::AutoscalingRuntimeBuilder;
/// use std::time::Duration;
/// # fn demo(docker: bollard::Docker) {
/// let runtime = AutoscalingRuntimeBuilder::new()
///     .cpu_overload_threshold(0.80)
///     .memory_overload_threshold(500_000_000)
///     .min_containers_per_function(2)
///     .max_containers_per_function(20)
///     .cooldown_duration(Duration::from_secs(60))
///     .poll_interval(Duration::from_secs(1))
///     .build(docker, "invok-network".to_string());
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct AutoscalingRuntimeBuilder {
    config: AutoscalerConfig,
    instance: Option<String>,
}

impl AutoscalingRuntimeBuilder {
    /// Starts from the seed's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// CPU fraction above which a container is overloaded.
    pub fn cpu_overload_threshold(mut self, v: f64) -> Self {
        self.config.cpu_overload_threshold = v;
        self
    }

    /// RSS in bytes above which a container is overloaded.
    pub fn memory_overload_threshold(mut self, v: u64) -> Self {
        self.config.memory_overload_threshold = v;
        self
    }

    /// CPU fraction below which a container is idle.
    pub fn cooldown_cpu_threshold(mut self, v: f64) -> Self {
        self.config.cooldown_cpu_threshold = v;
        self
    }

    /// Containers kept per function.
    pub fn min_containers_per_function(mut self, v: usize) -> Self {
        self.config.min_containers_per_function = v;
        self
    }

    /// Containers allowed per function.
    pub fn max_containers_per_function(mut self, v: usize) -> Self {
        self.config.max_containers_per_function = v;
        self
    }

    /// Idle time before a container is removed.
    pub fn cooldown_duration(mut self, v: Duration) -> Self {
        self.config.cooldown_duration = v;
        self
    }

    /// Sampling period.
    pub fn poll_interval(mut self, v: Duration) -> Self {
        self.config.poll_interval = v;
        self
    }

    /// The instance label of the containers Invok creates (default: the environment's
    /// `INVOK_INSTANCE`, else `library`), so several runtimes on one host keep to their
    /// own.
    pub fn instance(mut self, v: impl Into<String>) -> Self {
        self.instance = Some(v.into());
        self
    }

    /// Builds the runtime over an already connected (and version-negotiated) client.
    pub fn build(self, docker: bollard::Docker, network: String) -> AutoscalingRuntime {
        let runtime = DockerRuntime::with_docker(docker, self.instance_name());
        self.build_on(runtime, network)
    }

    /// The instance label of Invok's containers: [`Self::instance`], else
    /// `INVOK_INSTANCE`, else `library`.
    fn instance_name(&self) -> String {
        self.instance
            .clone()
            .or_else(|| {
                std::env::var("INVOK_INSTANCE")
                    .ok()
                    .filter(|i| !i.is_empty())
            })
            .unwrap_or_else(|| "library".to_string())
    }

    /// Builds the runtime over a Docker runtime of [`Self::instance_name`].
    fn build_on(self, runtime: DockerRuntime, network: String) -> AutoscalingRuntime {
        let instance = runtime.instance().to_string();
        let runtime = Arc::new(runtime);
        let mut config = Config::new("<api>", instance);
        config.watch_manifests = false;
        config.relist_interval = Duration::from_secs(2);
        config.defaults = ScalingDefaults {
            min_containers: self.config.min_containers_per_function as u32,
            max_containers: self.config.max_containers_per_function as u32,
            cpu_overload_threshold: self.config.cpu_overload_threshold,
            memory_overload_threshold: self.config.memory_overload_threshold,
            cooldown_cpu_threshold: self.config.cooldown_cpu_threshold,
            cooldown_duration: self.config.cooldown_duration,
            poll_interval: self.config.poll_interval,
        };
        let controller = Controller::new(runtime.clone(), config);
        AutoscalingRuntime {
            shared: controller.shared(),
            runtime,
            controller: Mutex::new(Some(controller)),
            starting: tokio::sync::Mutex::new(()),
            lock: Mutex::new(None),
            stop: Mutex::new(None),
            config: self.config,
            network,
            user_ids: Mutex::new(BTreeMap::new()),
        }
    }
}

/// The seed's high-level interface: pools of containers per function, autoscaled.
///
/// Dropping it (or [`AutoscalingRuntime::shutdown`]) stops the background tasks and
/// releases its instance; the containers keep running.
pub struct AutoscalingRuntime {
    shared: Arc<Shared<DockerRuntime>>,
    runtime: Arc<DockerRuntime>,
    controller: Mutex<Option<Controller<DockerRuntime>>>,
    /// Held through [`AutoscalingRuntime::start`], so two concurrent starts cannot both
    /// pass the already-started check and then refuse each other the instance lock.
    starting: tokio::sync::Mutex<()>,
    /// The instance on this daemon, from `start` until `shutdown` or drop.
    lock: Mutex<Option<InstanceLock>>,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    config: AutoscalerConfig,
    network: String,
    /// Full container id -> the id the user registered it by.
    user_ids: Mutex<BTreeMap<String, String>>,
}

impl AutoscalingRuntime {
    /// Connects to the local Docker daemon; settings from the seed's environment
    /// variables (`CPU_OVERLOAD_THRESHOLD`, ...), else the seed's values.
    pub async fn new(network: String) -> Result<AutoscalingRuntime, AutoscalingError> {
        let defaults = ScalingDefaults::from_env()?;
        let builder = AutoscalingRuntimeBuilder {
            config: AutoscalerConfig::from_defaults(&defaults),
            instance: None,
        };
        let runtime = DockerRuntime::connect(builder.instance_name()).await?;
        Ok(builder.build_on(runtime, network))
    }

    /// The settings in force.
    pub fn config(&self) -> &AutoscalerConfig {
        &self.config
    }

    /// Starts the background sampling and scaling tasks.
    ///
    /// First takes this runtime's instance on the Docker daemon ([`crate::lock`]), as
    /// `invok run` does, and holds it until [`AutoscalingRuntime::shutdown`] or drop:
    /// [`AutoscalingError::InstanceTaken`] when another operator manages the instance
    /// there, [`AutoscalingError::Runtime`] when the daemon cannot be asked who it is.
    /// Either way nothing is started, and `start` may be called again later.
    pub async fn start(&self) -> Result<(), AutoscalingError> {
        let _starting = self.starting.lock().await;
        if self
            .controller
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
        {
            return Err(AutoscalingError::AlreadyStarted);
        }
        let lock =
            InstanceLock::acquire(&*self.runtime, self.runtime.instance(), &lock_holder()).await?;
        let controller = self
            .controller
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or(AutoscalingError::AlreadyStarted)?;
        *self.lock.lock().unwrap_or_else(|e| e.into_inner()) = Some(lock);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        *self.stop.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        tokio::spawn(controller.run(async move {
            let _ = rx.await;
        }));
        Ok(())
    }

    /// Stops the background tasks and releases the instance (also done on drop).
    /// Containers keep running.
    pub fn shutdown(&self) {
        if let Some(tx) = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take() {
            // Nothing is created or removed once this is set, so the instance is free
            // for another operator at once.
            self.shared.begin_shutdown();
            let _ = tx.send(());
        }
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Adds an existing container to `function`'s pool, creating the pool on first use
    /// from the container's image and port.
    ///
    /// A running container is probed before this returns (the pool's readiness probe,
    /// quick retries for up to [`REGISTER_PROBE_DEADLINE`]), so when its function
    /// answers, [`AutoscalingRuntime::execute_function`] can return it right away, as the
    /// seed's example expects. One that does not answer in that time is registered all
    /// the same: it counts as a starting container, gets no traffic, and the background
    /// probe marks it ready when it answers (or failed after the startup timeout).
    ///
    /// Fails with [`AutoscalingError::Register`] when there is no such container or
    /// Docker cannot be reached.
    pub async fn register_container(
        &self,
        function: &str,
        container_id: String,
        container_name: String,
    ) -> Result<(), AutoscalingError> {
        let registered = self
            .runtime
            .register(&container_id, function)
            .await
            .map_err(|source| AutoscalingError::Register {
                function: function.to_string(),
                container: container_id.clone(),
                source,
            })?;
        let info = registered.container;
        self.user_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(info.id.clone(), container_id.clone());
        // The container joins the store before the pool exists, so the pool's first
        // reconcile counts it (and creates nothing it does not need).
        let (id, running) = (
            info.id.clone(),
            info.state == crate::runtime::RunState::Running,
        );
        let image = info.image.clone();
        // A container started by `invok::runner` carries its `timeout` (seconds).
        let timeout = info
            .labels
            .get(crate::runtime::labels::TIMEOUT)
            .and_then(|t| t.parse::<u64>().ok())
            .filter(|t| *t > 0)
            .map(|t| api::IntOrString::String(format!("{t}s")));
        self.shared.store.upsert(info);
        let existing = self
            .shared
            .desired()
            .pools
            .get(function)
            .map(|p| p.spec.readiness.clone());
        if let Some(probe) = existing {
            if running {
                self.probe_registered(&id, &probe).await;
            }
        } else {
            let port = u32::from(registered.exposed_port.unwrap_or(api::DEFAULT_PORT));
            let manifest = FunctionPool {
                api_version: api::API_VERSION.into(),
                kind: api::KIND.into(),
                metadata: ObjectMeta {
                    name: function.to_string(),
                    ..Default::default()
                },
                spec: FunctionPoolSpec {
                    image,
                    port: Some(port),
                    network: (!self.network.is_empty()).then(|| self.network.clone()),
                    scaling: Some(self.config.scaling()),
                    timeout,
                    ..Default::default()
                },
            };
            let spec = manifest
                .validate(&self.shared.config.defaults)
                .map_err(|errs| AutoscalingError::InvalidPool {
                    function: function.to_string(),
                    message: errs
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("; "),
                })?;
            // Ready (when it answers) before the pool exists: the pool's first reconcile
            // and the first execute_function see a ready container.
            if running {
                self.probe_registered(&id, &spec.readiness).await;
            }
            self.shared.declare_pool(manifest, spec);
        }
        tracing::info!(
            "Registered container {container_name} ({container_id}) for function {function}"
        );
        self.shared.trigger.now(function);
        Ok(())
    }

    /// Probes a registered container until it answers or [`REGISTER_PROBE_DEADLINE`]
    /// passes, and marks it ready in the store when it answers; true when it did. One
    /// without a loopback port cannot be probed and counts as ready while it runs, as
    /// the controller's background probe treats it.
    async fn probe_registered(&self, id: &str, probe: &api::Probe) -> bool {
        let deadline = tokio::time::Instant::now() + REGISTER_PROBE_DEADLINE;
        loop {
            // The store's view, which the relist keeps current (a port, a stop).
            let Some(o) = self.shared.store.get(id) else {
                return false;
            };
            if o.info.state != crate::runtime::RunState::Running {
                return false;
            }
            let answered = o.info.host_port.is_none() || self.runtime.probe(&o.info, probe).await;
            if answered {
                return self.shared.store.mark_ready(id);
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::debug!(
                    container = %o.info.name,
                    "registered container not answering after {REGISTER_PROBE_DEADLINE:?}; \
                     the background probe takes over"
                );
                return false;
            }
            tokio::time::sleep(REGISTER_PROBE_RETRY).await;
        }
    }

    /// The container to run `function` on, by the gateway's picker; `None` when the
    /// pool has no ready container.
    pub async fn execute_function(
        &self,
        function: &str,
    ) -> Result<Option<String>, AutoscalingError> {
        if self.shared.desired().pools.contains_key(function) {
            self.shared.arrivals.note(function);
        }
        let Some(route) = self.shared.pick(function, None) else {
            return Ok(None);
        };
        // This API hands out a container, not a request: nothing stays in flight.
        route.in_flight.fetch_sub(1, Ordering::Relaxed);
        let user_id = self
            .user_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&route.id)
            .cloned();
        Ok(Some(user_id.unwrap_or(route.id)))
    }

    /// The seed's status document (the same as the admin API's `GET /status`).
    pub fn get_status(&self) -> serde_json::Value {
        serde_json::to_value(self.shared.runtime_status()).unwrap_or_default()
    }

    /// The admin API (`/status`, `/api/v1/pools`, `/healthz`, ...) over this runtime's
    /// state, to serve next to an application.
    pub fn admin_router(&self) -> axum::Router {
        crate::admin::router(self.shared.clone())
    }

    /// Serves Invok's gateway over this runtime's pools on `listener` until `shutdown`
    /// resolves: `/function/{name}/...` goes to the least-loaded ready container of the
    /// pool, within the pool's request timeout (for a pool made for a container started
    /// by [`crate::runner::runner`], its `ContainerDetails::timeout`).
    pub async fn serve_gateway(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        crate::gateway::serve(
            listener,
            self.shared.clone(),
            crate::gateway::GatewayConfig::default(),
            shutdown,
        )
        .await
    }

    /// The autoscaler, for the seed's debug calls.
    pub fn autoscaler(&self) -> Autoscaler {
        Autoscaler {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for AutoscalingRuntime {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Coordinates the pools (the seed's debug handle).
#[derive(Clone)]
pub struct Autoscaler {
    shared: Arc<Shared<DockerRuntime>>,
}

impl Autoscaler {
    /// Every pool's status, in the seed's shape.
    pub fn get_all_pool_status(&self) -> Vec<PoolSummary> {
        self.shared.runtime_status().pools.into_values().collect()
    }

    /// A handle on one function's pool (the pool need not have containers yet).
    pub async fn get_or_create_pool(&self, function: &str) -> ContainerPool {
        ContainerPool {
            shared: self.shared.clone(),
            function: function.to_string(),
        }
    }
}

/// A shared handle on one function's pool.
#[derive(Clone)]
pub struct ContainerPool {
    shared: Arc<Shared<DockerRuntime>>,
    function: String,
}

impl ContainerPool {
    /// The function's name.
    pub fn function_name(&self) -> &str {
        &self.function
    }

    /// Containers in the pool (starting or ready).
    pub fn container_count(&self) -> usize {
        self.containers()
            .iter()
            .filter(|c| matches!(c.phase, Phase::Starting | Phase::Ready))
            .count()
    }

    /// One manager per container.
    pub fn containers(&self) -> Vec<ContainerManager> {
        self.shared
            .store
            .pool(&self.function)
            .into_iter()
            .map(|o| ContainerManager {
                phase: o.phase(),
                status: if o.phase() == Phase::Ready {
                    o.load
                } else {
                    None
                },
                cpu: o.usage.map(|u| u.cpu).unwrap_or(0.0),
                memory: o.usage.map(|u| u.rss).unwrap_or(0),
                id: o.info.id,
                name: o.info.name,
            })
            .collect()
    }

    /// Ids of the containers the scaler would remove now (idle past the cooldown,
    /// longest idle first).
    pub fn get_scaledown_candidates(&self) -> Vec<String> {
        let Some(spec) = self
            .shared
            .desired()
            .pools
            .get(&self.function)
            .map(|p| p.spec.clone())
        else {
            return Vec::new();
        };
        let views = self.shared.store.views(&self.function);
        let facts = PoolFacts {
            replicas: self
                .shared
                .pool_status(&self.function)
                .map(|s| s.desired_replicas)
                .unwrap_or(views.len()),
            ..Default::default()
        };
        scaler::decide(&spec, &views, &facts, tokio::time::Instant::now()).victims
    }
}

/// One monitored container (the seed's `ContainerManager`).
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerManager {
    /// Container id.
    pub id: String,
    /// Container name.
    pub name: String,
    phase: Phase,
    status: Option<LoadState>,
    cpu: f64,
    memory: u64,
}

impl ContainerManager {
    /// CPU as a fraction of the container's limit (0.0 until sampled).
    pub fn cpu_usage(&self) -> f64 {
        self.cpu
    }

    /// RSS in bytes (0 until sampled).
    pub fn memory_usage(&self) -> u64 {
        self.memory
    }

    /// Healthy, Overloaded or Idle; `None` while starting or unsampled.
    pub fn status(&self) -> Option<LoadState> {
        self.status
    }

    /// Where the container is in its life.
    pub fn phase(&self) -> Phase {
        self.phase
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::test_support::dead_docker as unreachable_docker;

    #[tokio::test]
    async fn registering_while_docker_is_unreachable_says_so() {
        let (_dir, docker) = unreachable_docker();
        let runtime = AutoscalingRuntimeBuilder::new()
            .instance("facade-unit")
            .build(docker, String::new());
        let err = runtime
            .register_container("f", "c1".into(), "c1".into())
            .await
            .expect_err("no daemon answers");
        assert!(
            matches!(&err, AutoscalingError::Register { source, .. } if source.is_unavailable()),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("cannot register container \"c1\" for function \"f\"")
                && message.contains("Docker is unreachable"),
            "{message}"
        );
        assert!(runtime.get_status()["pools"].get("f").is_none());
    }
}

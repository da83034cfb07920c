//! The control loop: desired pools from the manifest directory, observed containers from
//! Docker, and a reconcile per pool that converges the two.
//!
//! ```text
//! manifest watcher + rescan ---> Desired ---------+
//!                                                 +--> scheduler --> reconcile(pool) --> Runtime
//! docker events + relist ------> ObservedStore ---+         ^               |
//! probes, sampler, gateway ----> ObservedStore -------------+ (triggers)    +--> PoolStatus
//! ```
//!
//! Every input is a trigger for the pools it concerns; the scheduler deduplicates them and
//! runs one reconcile per pool at a time. A reconcile reads the latest desired and
//! observed state (never the event that woke it), so missed or repeated events are
//! harmless, and a pass with nothing to do touches nothing.

pub mod desired;
mod reconcile;
pub mod report;

pub mod status;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;

use crate::api::{EffectiveSpec, FunctionPool, ScalingDefaults};
use crate::manifest::{self, Location, ManifestSet};
use crate::runtime::Runtime;

pub use crate::scheduler::{Action, Trigger};
pub use crate::store::ObservedStore;
pub use desired::{Desired, DesiredPool};
pub use status::PoolStatus;

/// How the operator runs; every field has a sensible default.
#[derive(Clone, Debug)]
pub struct Config {
    /// The manifest directory.
    pub manifests: PathBuf,
    /// This operator's instance name (the `dev.invok.instance` label).
    pub instance: String,
    /// Defaults for omitted scaling fields.
    pub defaults: ScalingDefaults,
    /// Reconciles running at once (different pools).
    pub concurrency: usize,
    /// The directory is re-read this often even without events (safety net).
    pub rescan_interval: Duration,
    /// Containers are relisted this often even without events (repairs missed events).
    pub relist_interval: Duration,
    /// Quiet time after the last file event before the directory is re-read.
    pub debounce: Duration,
    /// A container not ready this long after it appeared is replaced.
    pub startup_timeout: Duration,
    /// SIGTERM grace before SIGKILL when a container is removed.
    pub stop_grace: Duration,
    /// After shutdown begins, running reconciles get this long to finish the Docker
    /// calls they have under way (no new ones start); then they are cancelled. Keeps
    /// SIGTERM-to-exit bounded (under 5 s) whatever the loop was doing.
    pub shutdown_grace: Duration,
    /// Read pools from `manifests`; off when pools are declared through
    /// [`Shared::declare_pool`] (the programmatic API).
    pub watch_manifests: bool,
}

impl Config {
    /// Defaults for a directory and instance.
    pub fn new(manifests: impl Into<PathBuf>, instance: impl Into<String>) -> Config {
        Config {
            manifests: manifests.into(),
            instance: instance.into(),
            defaults: ScalingDefaults::default(),
            concurrency: 8,
            rescan_interval: Duration::from_secs(30),
            relist_interval: Duration::from_secs(10),
            debounce: Duration::from_millis(150),
            startup_timeout: Duration::from_secs(60),
            stop_grace: Duration::from_secs(3),
            shutdown_grace: Duration::from_secs(3),
            watch_manifests: true,
        }
    }
}

/// Per-pool memory of the controller between reconciles.
#[derive(Debug, Default)]
pub(crate) struct PoolState {
    /// The replica target (like a Deployment's `spec.replicas`), set by the scaler.
    pub replicas: Option<usize>,
    /// When the pool last grew because of load.
    pub last_scale_up: Option<Instant>,
    /// Container crashes since the pool last ran cleanly (CrashLoopBackOff).
    pub failures: u32,
    /// When the last crash was seen.
    pub last_failure: Option<Instant>,
    /// A reconcile of this pool is running (checked: never two at once).
    pub reconciling: bool,
    /// No creates before this instant (crash-loop backoff).
    pub create_not_before: Option<Instant>,
    /// Consecutive reconcile errors (error backoff).
    pub errors: u32,
    /// The spec hash whose image and network are known to exist.
    pub prepared: Option<String>,
    /// Requests waiting at the gateway.
    pub waiting: usize,
    /// Status for the admin API.
    pub status: PoolStatus,
    /// The pool was announced in the log.
    pub announced: bool,
}

/// Health of the operator's inputs, for `/readyz`.
#[derive(Debug, Default)]
pub struct Health {
    docker_ok: AtomicBool,
    docker_error: Mutex<Option<String>>,
    /// Full container lists taken (successful or not).
    pub relists: std::sync::atomic::AtomicU64,
    /// Reads of the manifest directory attempted (successful or not).
    pub manifest_reads: std::sync::atomic::AtomicU64,
}

impl Health {
    /// Records the outcome of a Docker call.
    pub fn docker(&self, result: Result<(), String>) {
        let ok = result.is_ok();
        let was = self.docker_ok.swap(ok, Ordering::Relaxed);
        if was && !ok {
            tracing::warn!(
                "Docker became unreachable: {}",
                result.as_ref().unwrap_err()
            );
        } else if !was && ok {
            tracing::info!("Docker answers");
        }
        *self.docker_error.lock().unwrap_or_else(|e| e.into_inner()) = result.err();
    }

    /// Whether the last Docker call reached the daemon, and the error if not.
    pub fn docker_status(&self) -> (bool, Option<String>) {
        (
            self.docker_ok.load(Ordering::Relaxed),
            self.docker_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// The state shared by the controller's tasks and its readers (admin API, gateway).
pub struct Shared<R> {
    /// The container runtime.
    pub runtime: Arc<R>,
    /// Configuration.
    pub config: Config,
    /// Observed containers.
    pub store: Arc<ObservedStore>,
    /// Desired pools.
    pub desired: RwLock<Desired>,
    /// Health of the inputs.
    pub health: Health,
    /// Triggers reconciles.
    pub trigger: Trigger,
    /// Prometheus metrics, recorded where the work happens and served by `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    pub(crate) pools: Mutex<HashMap<String, PoolState>>,
    probing: Mutex<HashSet<String>>,
    relist_now: tokio::sync::Notify,
    /// Set when shutdown begins: no Docker call that creates or removes a container
    /// starts after it (containers are left as they are).
    stopping: AtomicBool,
}

impl<R> Shared<R> {
    /// True once shutdown has begun: reconciles start no more creates or removals.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Marks shutdown as begun, at once: from here no reconcile starts a create or a
    /// removal, whichever worker it runs on. Call it from the signal handler before
    /// resolving the shutdown future given to [`Controller::run`] (which also calls it,
    /// but only when the scheduler next looks).
    pub fn begin_shutdown(&self) {
        if !self.stopping.swap(true, Ordering::AcqRel) {
            tracing::info!("shutting down: no new container changes; containers are left running");
        }
    }

    /// Reads the desired state.
    pub fn desired(&self) -> std::sync::RwLockReadGuard<'_, Desired> {
        self.desired.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn pool_state<T>(&self, pool: &str, f: impl FnOnce(&mut PoolState) -> T) -> T {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        f(pools.entry(pool.to_string()).or_default())
    }

    /// A snapshot of a pool's status.
    pub fn pool_status(&self, pool: &str) -> Option<PoolStatus> {
        let pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools.get(pool).map(|p| p.status.clone())
    }

    /// Every pool the controller knows: declared, invalid or with containers.
    pub fn pool_names(&self) -> BTreeSet<String> {
        let d = self.desired();
        let mut names: BTreeSet<String> = d.pools.keys().cloned().collect();
        names.extend(d.invalid.keys().cloned());
        names.extend(self.store.pools());
        names
    }

    /// Declares (or replaces) a pool without a manifest, as the programmatic API does.
    /// Pools declared this way are never pruned.
    pub fn declare_pool(&self, manifest: FunctionPool, spec: EffectiveSpec) {
        let name = spec.name.clone();
        {
            let mut d = self.desired.write().unwrap_or_else(|e| e.into_inner());
            d.pools.insert(
                name.clone(),
                DesiredPool {
                    spec: Arc::new(spec),
                    manifest,
                    source: Location {
                        file: PathBuf::from("<api>"),
                        line: 0,
                        column: 0,
                    },
                },
            );
        }
        self.trigger.now(&name);
    }

    /// Applies one full read of the manifest directory, as the watcher does after each
    /// change: the desired state changes and the pools concerned (changed ones, and
    /// orphans that may now be pruned) are triggered. The simulation feeds reads in
    /// through here, so it drives exactly the operator's path.
    pub fn apply_manifests(&self, set: ManifestSet) {
        let changed = self
            .desired
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .apply(set);
        for pool in &changed {
            self.trigger.now(pool);
        }
        // Orphans: pools with containers that no manifest declares.
        let desired = self.desired();
        for pool in self.store.pools() {
            if desired.may_prune(&pool) {
                self.trigger.now(&pool);
            }
        }
    }

    /// Adds (or with a negative delta, removes) requests waiting for a container of
    /// `pool`, and wakes its reconcile when the first one arrives.
    pub fn add_waiting(&self, pool: &str, delta: isize) {
        let wake = self.pool_state(pool, |s| {
            let before = s.waiting;
            s.waiting = s.waiting.saturating_add_signed(delta);
            delta > 0 && before == 0
        });
        if wake {
            self.trigger.now(pool);
        }
    }
}

/// The operator: build it with [`Controller::new`], read through [`Controller::shared`],
/// and drive it with [`Controller::run`].
pub struct Controller<R> {
    shared: Arc<Shared<R>>,
    rx: crate::scheduler::Receiver,
}

impl<R: Runtime> Controller<R> {
    /// A controller over `runtime` with `config`.
    pub fn new(runtime: Arc<R>, config: Config) -> Controller<R> {
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let (trigger, rx) = crate::scheduler::channel();
        let depth = metrics.clone();
        let rx = rx.on_queue_depth(move |n| depth.set_queue_depth(n));
        let shared = Arc::new(Shared {
            runtime,
            config,
            store: Arc::new(ObservedStore::new()),
            desired: RwLock::new(Desired::default()),
            health: Health::default(),
            trigger,
            metrics,
            pools: Mutex::new(HashMap::new()),
            probing: Mutex::new(HashSet::new()),
            relist_now: tokio::sync::Notify::new(),
            stopping: AtomicBool::new(false),
        });
        Controller { shared, rx }
    }

    /// The state readers share.
    pub fn shared(&self) -> Arc<Shared<R>> {
        self.shared.clone()
    }

    /// Runs until `shutdown` resolves; then gives running reconciles
    /// [`Config::shutdown_grace`] to finish the calls under way (none starts a create or
    /// a removal after shutdown began), cancels what is left, and returns. Containers are
    /// left running.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send) {
        let shared = self.shared;
        tracing::info!(
            "Starting autoscaler with config: {:?}",
            crate::AutoscalerConfig::from_defaults(&shared.config.defaults)
        );
        let mut tasks = tokio::task::JoinSet::new();
        if shared.config.watch_manifests {
            tasks.spawn(manifest_loop(shared.clone()));
        }
        tasks.spawn(docker_loop(shared.clone()));
        tasks.spawn(relist_loop(shared.clone()));
        let desired = shared.clone();
        tasks.spawn(crate::sampler::run(
            shared.runtime.clone(),
            shared.store.clone(),
            Arc::new(move || {
                desired
                    .desired()
                    .pools
                    .iter()
                    .map(|(name, pool)| (name.clone(), pool.spec.clone()))
                    .collect()
            }),
            shared.trigger.clone(),
        ));
        let s = shared.clone();
        let stopping = shared.clone();
        let shutdown = async move {
            shutdown.await;
            stopping.begin_shutdown();
        };
        crate::scheduler::run(
            self.rx,
            crate::scheduler::Limits {
                concurrency: shared.config.concurrency,
                shutdown_grace: shared.config.shutdown_grace,
            },
            move |pool| {
                let s = s.clone();
                async move { reconcile::reconcile(&s, &pool).await }
            },
            shutdown,
        )
        .await;
        tasks.shutdown().await;
        tracing::info!("control loop stopped; containers left running");
    }
}

/// Re-reads the directory on (debounced) change and every `rescan_interval`.
async fn manifest_loop<R: Runtime>(shared: Arc<Shared<R>>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let mut watcher = None;
    let mut dir_missing_logged = false;
    loop {
        if watcher.is_none() {
            match manifest::watch::watch_dir(
                &shared.config.manifests,
                shared.config.debounce,
                tx.clone(),
            ) {
                Ok(w) => watcher = Some(w),
                Err(e) => {
                    tracing::debug!("not watching {}: {e}", shared.config.manifests.display())
                }
            }
        }
        let dir = shared.config.manifests.clone();
        let defaults = shared.config.defaults.clone();
        let read = tokio::task::spawn_blocking(move || manifest::load_dir(&dir, &defaults)).await;
        shared.health.manifest_reads.fetch_add(1, Ordering::Relaxed);
        match read {
            Ok(Ok(set)) => {
                dir_missing_logged = false;
                shared.apply_manifests(set);
            }
            Ok(Err(e)) => {
                if !dir_missing_logged {
                    tracing::warn!("cannot read manifest directory {e}; nothing is pruned until it can be read");
                    dir_missing_logged = true;
                }
                watcher = None;
            }
            Err(e) => tracing::error!("manifest reader panicked: {e}"),
        }
        let wait = if shared.desired().wants_confirming_read() {
            shared.config.debounce
        } else {
            shared.config.rescan_interval
        };
        tokio::select! {
            _ = rx.recv() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Lists this instance's containers every `relist_interval` and whenever asked.
async fn relist_loop<R: Runtime>(shared: Arc<Shared<R>>) {
    let mut failures = 0u32;
    loop {
        let listed_at = Instant::now();
        let listed = shared.runtime.list().await;
        shared.health.relists.fetch_add(1, Ordering::Relaxed);
        let wait = match listed {
            Ok(list) => {
                failures = 0;
                shared.health.docker(Ok(()));
                let changed = shared.store.apply_list(list, listed_at);
                for pool in changed {
                    shared.trigger.now(&pool);
                }
                shared.config.relist_interval
            }
            Err(e) => {
                failures += 1;
                shared.metrics.docker_error("list");
                shared.health.docker(Err(e.to_string()));
                backoff(
                    failures,
                    Duration::from_millis(500),
                    Duration::from_secs(10),
                )
            }
        };
        tokio::select! {
            _ = shared.relist_now.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Follows Docker events; each one asks for a relist and wakes its pool. When the stream
/// drops, resubscribes with backoff and relists (events may have been missed).
async fn docker_loop<R: Runtime>(shared: Arc<Shared<R>>) {
    let mut failures = 0u32;
    loop {
        // The stream reports events from the moment it is made (`since`), so a relist
        // asked for now misses nothing in between.
        let mut events = shared.runtime.events();
        shared.relist_now.notify_one();
        loop {
            match events.next().await {
                Some(Ok(ev)) => {
                    failures = 0;
                    tracing::debug!(pool = %ev.pool, action = %ev.action, "docker event");
                    shared.relist_now.notify_one();
                    shared.trigger.now(&ev.pool);
                }
                Some(Err(e)) => {
                    shared.metrics.docker_error("events");
                    shared.health.docker(Err(e.to_string()));
                    break;
                }
                None => break,
            }
        }
        failures += 1;
        tokio::time::sleep(backoff(
            failures,
            Duration::from_millis(250),
            Duration::from_secs(10),
        ))
        .await;
        shared.relist_now.notify_one();
    }
}

/// Exponential backoff: `base * 2^(n-1)`, capped.
pub fn backoff(n: u32, base: Duration, cap: Duration) -> Duration {
    let factor = 2u32.saturating_pow(n.saturating_sub(1).min(20));
    base.saturating_mul(factor).min(cap)
}

/// A container that was ready at least this long before it died did not crash: it is
/// replaced at once and does not count towards CrashLoopBackOff.
pub const STABLE_RUN: Duration = Duration::from_secs(10);

/// Consecutive failed probes that take a ready container out of routing (Kubernetes'
/// `failureThreshold` default): one lost connection is no reason to stop routing to it.
pub const PROBE_FAILURE_THRESHOLD: u32 = 3;
/// Between probes of a container that has served (a check after the gateway could not
/// reach it, or waiting for it to answer again): [`PROBE_FAILURE_THRESHOLD`] failures
/// then span about two seconds, so a function that restarts within that time (a process
/// supervisor's restart, a brief pause) never leaves routing. Containers still starting
/// are probed much faster: their first answer is what a cold start waits for.
pub const SERVED_PROBE_PERIOD: Duration = Duration::from_secs(1);

impl<R: Runtime> Shared<R> {
    /// The gateway could not reach a container: probe it. Meanwhile it gets requests
    /// only when no other container is ready; it becomes unready only when
    /// [`PROBE_FAILURE_THRESHOLD`] probes in a row fail, and is back as soon as one
    /// passes. It is never counted as a crash for it.
    pub fn report_unreachable(self: &Arc<Self>, id: &str) {
        let Some(o) = self.store.get(id) else { return };
        self.store.mark_suspect(id);
        let spec = self
            .desired()
            .pools
            .get(&o.info.pool)
            .map(|p| p.spec.clone());
        if let Some(spec) = spec {
            self.ensure_probe(id, &o.info.pool, &spec);
        }
    }

    /// Starts a readiness probe for a container unless one runs already.
    ///
    /// - A container that has not been ready yet is probed until it answers (ready) or
    ///   `startup_timeout` passes (failed, to be replaced).
    /// - A ready container (a check after the gateway could not reach it) stays ready
    ///   unless [`PROBE_FAILURE_THRESHOLD`] probes in a row fail; then it is out of routing
    ///   and probed on until it answers again, or is replaced after `startup_timeout`
    ///   without an answer (as no crash: it had served).
    fn ensure_probe(self: &Arc<Self>, id: &str, pool: &str, spec: &EffectiveSpec) {
        {
            let mut probing = self.probing.lock().unwrap_or_else(|e| e.into_inner());
            if !probing.insert(id.to_string()) {
                return;
            }
        }
        let shared = self.clone();
        let (id, pool, probe) = (id.to_string(), pool.to_string(), spec.readiness.clone());
        tokio::spawn(async move {
            let mut pause = Duration::from_millis(10);
            let mut misses = 0u32;
            while let Some(o) = shared.store.get(&id) {
                if !matches!(
                    o.info.state,
                    crate::runtime::RunState::Running | crate::runtime::RunState::Created
                ) || o.draining
                    || o.failed
                {
                    break;
                }
                if o.info.pinned
                    && o.info.host_port.is_none()
                    && o.info.state == crate::runtime::RunState::Running
                {
                    // A registered container without a loopback port cannot be probed:
                    // running is the best we know.
                    shared.store.mark_ready(&id);
                    shared.trigger.now(&pool);
                    break;
                }
                let answered =
                    o.info.host_port.is_some() && shared.runtime.probe(&o.info, &probe).await;
                if answered {
                    if (o.ready_at.is_none() || o.suspect) && shared.store.mark_ready(&id) {
                        tracing::debug!(container = %o.info.name, "container ready");
                        shared.trigger.now(&pool);
                    }
                    break;
                }
                misses = misses.saturating_add(1);
                if o.ready_at.is_some() {
                    if misses >= PROBE_FAILURE_THRESHOLD && shared.store.mark_unready(&id) {
                        tracing::warn!(
                            container = %o.info.name,
                            "container stopped answering ({misses} probes failed); out of routing until it answers again"
                        );
                        shared.trigger.now(&pool);
                    }
                } else {
                    let since = o.unready_since.unwrap_or(o.first_seen);
                    if since.elapsed() > shared.config.startup_timeout {
                        tracing::warn!(
                            "container {} of function {pool} not ready after {:?}; replacing it",
                            o.info.name,
                            shared.config.startup_timeout
                        );
                        shared.store.mark_failed(&id);
                        shared.trigger.now(&pool);
                        break;
                    }
                }
                if o.served_since.is_some() {
                    tokio::time::sleep(SERVED_PROBE_PERIOD).await;
                } else {
                    tokio::time::sleep(pause).await;
                    pause = pause.saturating_mul(2).min(Duration::from_millis(250));
                }
            }
            shared
                .probing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            // The gateway may have reported it unreachable again after the last probe
            // but before the id left `probing` (its ensure_probe then did nothing): look
            // again rather than leave it suspect with no probe to clear it.
            let recheck = shared.store.get(&id).is_some_and(|o| {
                o.suspect
                    && o.info.state == crate::runtime::RunState::Running
                    && !o.draining
                    && !o.failed
            });
            if recheck {
                if let Some(spec) = shared.desired().pools.get(&pool).map(|p| p.spec.clone()) {
                    shared.ensure_probe(&id, &pool, &spec);
                }
            }
        });
    }
}

#[cfg(test)]
mod failure_tests;
#[cfg(test)]
mod tests;

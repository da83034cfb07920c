//! The controller's shared state, handed to each reconcile (kube-runtime's `Context`)
//! and read by the HTTP surfaces: the runtime, the desired and observed stores, the
//! trigger, the prober, the metrics, and each pool's memory.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::config::Config;
use super::desired::{Desired, DesiredPool};
use super::health::Health;
use super::pools::{PoolState, Pools};
use super::status::PoolStatus;
use crate::api::{EffectiveSpec, FunctionPool};
use crate::manifest::{Location, ManifestSet};
use crate::metrics::Metrics;
use crate::probe::Prober;
use crate::runtime::Runtime;
use crate::scheduler::Trigger;
use crate::store::{ObservedStore, Route};

/// The state shared by the controller's tasks and its readers (admin API, gateway).
pub struct Shared<R> {
    /// The container runtime.
    pub runtime: Arc<R>,
    /// Configuration.
    pub config: Config,
    /// Observed containers.
    pub store: Arc<ObservedStore>,
    /// Desired pools (shared with the prober, which reads the pools' current probes).
    pub desired: Arc<RwLock<Desired>>,
    /// Health of the inputs.
    pub health: Health,
    /// Triggers reconciles.
    pub trigger: Trigger,
    /// Prometheus metrics, recorded where the work happens and served by `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Readiness probes of the containers.
    pub prober: Arc<Prober<R>>,
    pub(crate) pools: Pools,
    /// Asks the relist loop to list now (a Docker event arrived).
    pub(crate) relist_now: tokio::sync::Notify,
    /// The dashboard's recent history of every pool ([`crate::history`]).
    pub history: crate::history::SharedHistory,
    /// Requests that arrived for each declared pool (the request-rate signal).
    pub arrivals: Arrivals,
    /// Set when shutdown begins: no Docker call that creates or removes a container
    /// starts after it (containers are left as they are).
    stopping: AtomicBool,
}

impl<R: Runtime> Shared<R> {
    /// The shared state of a controller over `runtime`, waking reconciles with `trigger`.
    pub(crate) fn new(
        runtime: Arc<R>,
        config: Config,
        trigger: Trigger,
        metrics: Arc<Metrics>,
    ) -> Self {
        let store = Arc::new(ObservedStore::new());
        let desired = Arc::new(RwLock::new(Desired::default()));
        let lookup = desired.clone();
        let prober = Arc::new(Prober::new(
            runtime.clone(),
            store.clone(),
            trigger.clone(),
            Arc::new(move |pool: &str| {
                let d = lookup.read().unwrap_or_else(|e| e.into_inner());
                d.pools.get(pool).map(|p| p.spec.readiness.clone())
            }),
            config.startup_timeout,
        ));
        Shared {
            runtime,
            config,
            store,
            desired,
            health: Health::default(),
            trigger,
            metrics,
            prober,
            pools: Pools::default(),
            relist_now: tokio::sync::Notify::new(),
            history: crate::history::SharedHistory::default(),
            arrivals: Arrivals::default(),
            stopping: AtomicBool::new(false),
        }
    }

    /// The gateway could not reach a container: probe it (see
    /// [`Prober::report_unreachable`]).
    pub fn report_unreachable(&self, id: &str) {
        let probe = self.store.get(id).and_then(|o| {
            self.desired()
                .pools
                .get(&o.info.pool)
                .map(|p| p.spec.readiness.clone())
        });
        self.prober.report_unreachable(id, probe.as_ref());
    }
}

/// Requests that arrived for each pool since the operator started, counted by the
/// gateway (and the library's `execute_function`) once per request, before it waits
/// for or picks a container. The passes sample these counts into each pool's
/// [`crate::forecast::RateHistory`]; a request costs one atomic add under a read lock.
#[derive(Debug, Default)]
pub struct Arrivals(RwLock<HashMap<String, Arc<AtomicU64>>>);

impl Arrivals {
    /// Counts one request for `pool` (only declared pools are counted, so random names
    /// cannot grow the map).
    pub fn note(&self, pool: &str) {
        self.note_many(pool, 1);
    }

    /// Counts `n` requests for `pool` at once (a load generator's batch).
    pub fn note_many(&self, pool: &str, n: u64) {
        if let Some(c) = self.0.read().unwrap_or_else(|e| e.into_inner()).get(pool) {
            c.fetch_add(n, Ordering::Relaxed);
            return;
        }
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        map.entry(pool.to_string())
            .or_default()
            .fetch_add(n, Ordering::Relaxed);
    }

    /// Requests counted for `pool` so far.
    pub fn total(&self, pool: &str) -> u64 {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(pool)
            .map_or(0, |n| n.load(Ordering::Relaxed))
    }
}

impl<R> Shared<R> {
    /// Every declared pool's effective spec, by name (what the sampler and the scraper
    /// read on each tick).
    pub fn pool_specs(&self) -> std::collections::HashMap<String, Arc<EffectiveSpec>> {
        self.desired()
            .pools
            .iter()
            .map(|(name, pool)| (name.clone(), pool.spec.clone()))
            .collect()
    }

    /// True once shutdown has begun: reconciles start no more creates or removals.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Marks shutdown as begun, at once: from here no reconcile starts a create or a
    /// removal, whichever worker it runs on. Call it from the signal handler before
    /// resolving the shutdown future given to [`super::Controller::run`] (which also
    /// calls it, but only when the scheduler next looks).
    pub fn begin_shutdown(&self) {
        if !self.stopping.swap(true, Ordering::AcqRel) {
            tracing::info!("shutting down: no new container changes; containers are left running");
        }
    }

    /// What the backoff jitter of `what` (a pool, `relist`, `events`) is seeded from:
    /// `<instance>/<what>`, so operators of other instances on the same daemon do not
    /// retry in step with this one.
    pub fn backoff_key(&self, what: &str) -> String {
        format!("{}/{what}", self.config.instance)
    }

    /// Reads the desired state.
    pub fn desired(&self) -> std::sync::RwLockReadGuard<'_, Desired> {
        self.desired.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn pool_state<T>(&self, pool: &str, f: impl FnOnce(&mut PoolState) -> T) -> T {
        self.pools.with(pool, f)
    }

    /// A snapshot of a pool's status.
    pub fn pool_status(&self, pool: &str) -> Option<PoolStatus> {
        self.pools.existing(pool, |p| p.status.clone())
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
        let pool = DesiredPool {
            spec: Arc::new(spec),
            manifest,
            source: Location {
                file: PathBuf::from("<api>"),
                line: 0,
                column: 0,
            },
        };
        self.desired
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .pools
            .insert(name.clone(), pool);
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

    /// The least-loaded ready container of `pool` (not `avoid`), its in-flight count
    /// already raised for this request: the gateway's pick. The first request since a
    /// quiet pool's last pass wakes the pool (its reconcile waits for no poll).
    pub fn pick(&self, pool: &str, avoid: Option<&str>) -> Option<Route> {
        let route = self.store.pick(pool, avoid)?;
        if route.wakes_pool {
            self.trigger.now(pool);
        }
        Some(route)
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

//! The observed store: what the daemon says exists, plus what only Invok knows about it
//! (readiness, usage samples, requests in flight).
//!
//! One writer per fact and many cheap readers, as kube-runtime's reflector: the relist
//! task writes container lists, probe tasks write readiness, the sampler writes usage,
//! the gateway counts requests in flight, and the reconciler writes its own creates and
//! removals at once so a relist that raced them cannot bring back the past (fresh
//! entries survive a list taken before they existed; removed ids are remembered).
//! Locks are never held across an `.await`.
#![deny(clippy::too_many_lines)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::api::EffectiveSpec;
use crate::runtime::{ContainerInfo, RunState};
use crate::scaler::{classify, ContainerView, LoadState, Phase, RemoveReason, Usage};

/// How long a removed container's id is remembered, so a stale list cannot revive it.
const TOMBSTONE_TTL: Duration = Duration::from_secs(120);
/// A container still `created` (never started) this long after it was first listed is
/// failed: creating and starting takes a fraction of a second here.
const NEVER_STARTED: Duration = Duration::from_secs(10);

/// One container as the operator sees it.
#[derive(Clone, Debug)]
pub struct Observed {
    /// What Docker listed.
    pub info: ContainerInfo,
    /// As of when `info` is true (when the list it came from was taken, or when this
    /// operator created the container): a list taken earlier never overwrites it.
    pub info_at: Instant,
    /// When this operator first saw it.
    pub first_seen: Instant,
    /// When its probe passed, while it is in routing (cleared when it stops answering).
    pub ready_at: Option<Instant>,
    /// When it first became ready, ever (never cleared): a container that served for a
    /// while and then died is no crash loop.
    pub served_since: Option<Instant>,
    /// When it was first seen failed (exited, dead, or given up on by its probe).
    pub failed_at: Option<Instant>,
    /// Since when a container that was ready has not answered its probe.
    pub unready_since: Option<Instant>,
    /// The gateway could not reach it and a probe is checking: still ready (one lost
    /// connection is no failure), but routed to only when nothing else is ready.
    pub suspect: bool,
    /// The probe gave up on it.
    pub failed: bool,
    /// Taken out of routing to be removed: since when, and why.
    pub draining: Option<Drain>,
    /// Latest usage sample.
    pub usage: Option<Usage>,
    /// Load state of the latest sample.
    pub load: Option<LoadState>,
    /// Since when the CPU has stayed below the cooldown threshold.
    pub idle_since: Option<Instant>,
    /// Requests in flight through the gateway (shared with the gateway).
    pub in_flight: Arc<AtomicUsize>,
    /// How long its function last said it keeps an idle connection open (`Keep-Alive:
    /// timeout=N`, in ms; 0 when it did not say): the gateway reuses connections to it
    /// only then (shared with the gateway).
    pub keep_alive_ms: Arc<AtomicU64>,
    /// Armed by the pass of a quiet pool (see [`ObservedStore::arm_wakes`]): the next
    /// request routed here wakes the pool, which then stops waiting for its quiet recheck
    /// (shared with the gateway).
    pub wake_on_pick: Arc<AtomicBool>,
    /// Requests routed to it so far (the dashboard's requests per second).
    pub served: Arc<AtomicU64>,
    /// The latest scrape of its pool's custom metrics (see
    /// [`crate::scaler::ContainerView::metrics`]); empty before the first.
    pub metrics: Vec<Option<f64>>,
    /// The metric list `metrics` were read for ([`crate::scraper::metrics_key`]).
    pub metrics_key: u64,
}

impl Observed {
    /// The phase the scaler works with.
    pub fn phase(&self) -> Phase {
        if self.draining.is_some() || self.info.state == RunState::Removing {
            return Phase::Draining;
        }
        match self.info.state {
            RunState::Running if self.failed => Phase::Failed,
            RunState::Running if self.ready_at.is_some() => Phase::Ready,
            // Paused by someone: out of routing, but kept (replacing it would lose it;
            // waiting loses nothing); it is probed again once it runs.
            RunState::Running | RunState::Created | RunState::Paused if !self.failed => {
                Phase::Starting
            }
            _ => Phase::Failed,
        }
    }

    /// True when this container failed before it had served for `stable`: it never
    /// became ready, or died soon after (what CrashLoopBackOff is for). A container that
    /// ran ready for a while and was then killed (from outside, by a dockerd restart) is
    /// no crash: it is replaced at once.
    pub fn is_crash(&self, stable: Duration) -> bool {
        match (self.served_since, self.failed_at) {
            (None, _) => true,
            (Some(served), Some(failed)) => failed.saturating_duration_since(served) < stable,
            (Some(served), None) => Instant::now().saturating_duration_since(served) < stable,
        }
    }

    /// The view [`crate::scaler`] decides on.
    pub fn view(&self) -> ContainerView {
        ContainerView {
            id: self.info.id.clone(),
            spec_hash: self.info.spec_hash.clone(),
            phase: self.phase(),
            created: self.first_seen,
            usage: self.usage,
            idle_since: self.idle_since,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            pinned: self.info.pinned,
            metrics: self.metrics.clone(),
        }
    }
}

/// A container taken out of routing to be removed: it gets no new requests, and is
/// stopped once those in flight are done (or the pool's timeout has passed).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Drain {
    /// When it left routing.
    pub since: Instant,
    /// Why it goes (the first reason given).
    pub reason: RemoveReason,
}

/// A change of a container's load state, for the seed's log line.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadChange {
    /// Container name.
    pub name: String,
    /// Pool name.
    pub pool: String,
    /// Previous state (a container starts out Healthy, as in the seed).
    pub from: LoadState,
    /// New state.
    pub to: LoadState,
}

/// The containers, grouped by pool so that the gateway's pick and a reconcile read only
/// their own pool's (the cost of a request must not grow with the other pools).
#[derive(Default)]
struct Inner {
    /// pool -> id -> container.
    pools: HashMap<String, HashMap<String, Observed>>,
    /// id -> pool, to find a container by id alone.
    pool_of: HashMap<String, String>,
    /// Removed ids and when.
    tombstones: HashMap<String, Instant>,
}

impl Inner {
    fn get(&self, id: &str) -> Option<&Observed> {
        self.pools.get(self.pool_of.get(id)?)?.get(id)
    }

    fn get_mut(&mut self, id: &str) -> Option<&mut Observed> {
        let pool = self.pool_of.get(id)?;
        self.pools.get_mut(pool)?.get_mut(id)
    }

    /// Adds or replaces a container (under its pool as its labels say).
    fn insert(&mut self, o: Observed) {
        let id = o.info.id.clone();
        if self.pool_of.get(&id) != Some(&o.info.pool) {
            self.remove(&id);
            self.pool_of.insert(id.clone(), o.info.pool.clone());
        }
        self.pools
            .entry(o.info.pool.clone())
            .or_default()
            .insert(id, o);
    }

    fn remove(&mut self, id: &str) -> Option<Observed> {
        let pool = self.pool_of.remove(id)?;
        let containers = self.pools.get_mut(&pool)?;
        let o = containers.remove(id);
        if containers.is_empty() {
            self.pools.remove(&pool);
        }
        o
    }

    fn of_pool<'a>(&'a self, pool: &str) -> impl Iterator<Item = &'a Observed> + 'a {
        self.pools.get(pool).into_iter().flat_map(HashMap::values)
    }

    fn all(&self) -> impl Iterator<Item = &Observed> {
        self.pools.values().flat_map(HashMap::values)
    }

    fn all_mut(&mut self) -> impl Iterator<Item = &mut Observed> {
        self.pools.values_mut().flat_map(HashMap::values_mut)
    }

    fn len(&self) -> usize {
        self.pool_of.len()
    }

    /// Drops the containers a list taken at `listed_at` did not have (except those first
    /// seen after it); returns their pools.
    fn forget_unlisted(&mut self, listed: &BTreeSet<String>, listed_at: Instant) -> Vec<String> {
        let gone: Vec<(String, String)> = self
            .all()
            .filter(|o| !listed.contains(&o.info.id) && o.first_seen <= listed_at)
            .map(|o| (o.info.id.clone(), o.info.pool.clone()))
            .collect();
        gone.into_iter()
            .map(|(id, pool)| {
                self.remove(&id);
                pool
            })
            .collect()
    }
}

/// Shared, cheaply readable state of this instance's containers.
#[derive(Default)]
pub struct ObservedStore {
    inner: RwLock<Inner>,
    /// A full list has been applied: before that, an empty store means "unknown", not
    /// "no containers", and nothing may be decided from it.
    synced: std::sync::atomic::AtomicBool,
    /// Wakes requests waiting for a ready container (the gateway's cold starts).
    ready: tokio::sync::Notify,
    /// Held by [`ObservedStore::pick`] while it chooses and counts.
    picking: std::sync::Mutex<()>,
}

/// A container the gateway may send a request to.
#[derive(Clone, Debug)]
pub struct Route {
    /// Container id.
    pub id: String,
    /// Container name (for `X-Invok-Container`).
    pub name: String,
    /// The loopback port its function is published on.
    pub port: u16,
    /// Its in-flight counter, already incremented for this request.
    pub in_flight: Arc<AtomicUsize>,
    /// How long its function keeps an idle connection, as it last said (ms; 0: unsaid).
    pub keep_alive_ms: Arc<AtomicU64>,
    /// This request is the first since its quiet pool's pass armed the container: the
    /// pool must be woken (see [`ObservedStore::arm_wakes`]).
    pub wakes_pool: bool,
}

impl ObservedStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the store's content with a full list taken at `listed_at`, keeping what
    /// Invok knows about containers it already had. Returns the pools whose containers
    /// changed (appeared, vanished or changed state).
    pub fn apply_list(&self, list: Vec<ContainerInfo>, listed_at: Instant) -> BTreeSet<String> {
        let mut changed = BTreeSet::new();
        let mut inner = self.write();
        let now = Instant::now();
        inner
            .tombstones
            .retain(|_, t| now.saturating_duration_since(*t) < TOMBSTONE_TTL);
        let listed: BTreeSet<String> = list.iter().map(|c| c.id.clone()).collect();
        let inner = &mut *inner;
        changed.extend(inner.forget_unlisted(&listed, listed_at));
        for info in list {
            if inner.tombstones.contains_key(&info.id) {
                continue;
            }
            let mut relocated = None;
            match inner.get_mut(&info.id) {
                // The store knows something as new as this list or newer (a create that
                // returned, a later list): a list that arrives late must not bring the past
                // back. On a tie the store's own record wins; the next list settles it.
                Some(o) if o.info_at >= listed_at => {}
                Some(o) => {
                    o.info_at = listed_at;
                    if o.info.state != info.state {
                        changed.insert(info.pool.clone());
                    }
                    if o.info.state == RunState::Running && info.state != RunState::Running {
                        // Out of routing; if it runs again it gets its startup time anew.
                        if o.ready_at.take().is_some() {
                            o.unready_since = Some(now);
                        }
                    }
                    if o.info.pool == info.pool {
                        o.info = info;
                    } else {
                        // Pool labels do not change on a container; if one did, file it
                        // under its new pool rather than lose track of it.
                        changed.insert(o.info.pool.clone());
                        changed.insert(info.pool.clone());
                        let mut moved = o.clone();
                        moved.info = info;
                        relocated = Some(moved);
                    }
                }
                None => {
                    changed.insert(info.pool.clone());
                    let mut o = fresh(info, now);
                    o.info_at = listed_at;
                    inner.insert(o);
                }
            }
            if let Some(o) = relocated {
                inner.insert(o);
            }
        }
        for o in inner.all_mut() {
            // Created and never started: a create whose start never came (an operator
            // killed in between). It would never start by itself; replace it.
            if o.info.state == RunState::Created
                && now.saturating_duration_since(o.first_seen) >= NEVER_STARTED
            {
                o.failed = true;
            }
            if o.failed_at.is_none() && o.phase() == Phase::Failed {
                o.failed_at = Some(now);
            }
        }
        // Synced only now, with the list applied and the lock still held: a reconcile that
        // sees `is_synced` also sees every container of that list, never an empty store.
        self.synced
            .store(true, std::sync::atomic::Ordering::Release);
        changed
    }

    /// True once a full list has been applied.
    pub fn is_synced(&self) -> bool {
        self.synced.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Adds a container, or refreshes what Docker says about one already known.
    pub fn upsert(&self, info: ContainerInfo) {
        let mut inner = self.write();
        let o = match inner.get(&info.id) {
            Some(known) => {
                let mut o = known.clone();
                o.info = info;
                o.info_at = Instant::now();
                if o.failed_at.is_none() && o.phase() == Phase::Failed {
                    o.failed_at = Some(Instant::now());
                }
                o
            }
            None => fresh(info, Instant::now()),
        };
        inner.insert(o);
    }

    /// Records a container this operator just created.
    pub fn insert_created(&self, info: ContainerInfo) {
        self.write().insert(fresh(info, Instant::now()));
    }

    /// Takes a container out of routing before it is stopped, for `reason` (kept from
    /// the first call). Returns its drain and the requests it still has in flight, which
    /// from now on only go down: a pick holds the read lock, and this the write lock.
    pub fn mark_draining(&self, id: &str, reason: RemoveReason) -> Option<(Drain, usize)> {
        let mut inner = self.write();
        let o = inner.get_mut(id)?;
        let drain = *o.draining.get_or_insert(Drain {
            since: Instant::now(),
            reason,
        });
        Some((drain, o.in_flight.load(Ordering::Acquire)))
    }

    /// Forgets a removed container, and ignores it in lists taken before the removal.
    pub fn remove(&self, id: &str) {
        let mut inner = self.write();
        inner.remove(id);
        inner.tombstones.insert(id.to_string(), Instant::now());
    }

    /// Marks a container ready (its probe passed). Returns false if it is gone.
    pub fn mark_ready(&self, id: &str) -> bool {
        let found = match self.write().get_mut(id) {
            Some(o) => {
                let now = Instant::now();
                o.ready_at.get_or_insert(now);
                o.served_since.get_or_insert(now);
                o.unready_since = None;
                o.suspect = false;
                true
            }
            None => false,
        };
        if found {
            self.ready.notify_waiters();
        }
        found
    }

    /// Takes a ready container out of routing until its probe passes again (the gateway
    /// could not reach it). Returns false if it is gone.
    pub fn mark_unready(&self, id: &str) -> bool {
        match self.write().get_mut(id) {
            Some(o) => {
                if o.ready_at.take().is_some() {
                    o.unready_since = Some(Instant::now());
                }
                o.suspect = false;
                o.load = None;
                o.idle_since = None;
                true
            }
            None => false,
        }
    }

    /// The gateway could not reach a ready container: route to it only as a last resort
    /// until its probe says more. Returns false if it is gone.
    pub fn mark_suspect(&self, id: &str) -> bool {
        match self.write().get_mut(id) {
            Some(o) => {
                o.suspect = o.ready_at.is_some();
                true
            }
            None => false,
        }
    }

    /// A future that completes the next time any container becomes ready. Create it
    /// before checking [`ObservedStore::pick`], so a readiness in between is not missed.
    pub fn ready_changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.ready.notified()
    }

    /// Picks the container of `pool` for one request and counts the request in flight.
    ///
    /// Among ready containers that are not overloaded: fewest requests in flight, then
    /// lowest CPU (samples lag, in-flight counts do not); an overloaded one only when
    /// no other is ready. `avoid` excludes a container (a retry goes elsewhere).
    pub fn pick(&self, pool: &str, avoid: Option<&str>) -> Option<Route> {
        let inner = self.read();
        // Choosing and counting are one step: two requests arriving together go to two
        // containers, not both to the one that was least loaded before either. Only
        // picks wait for each other here; readers of the store do not.
        let _one_at_a_time = self.picking.lock().unwrap_or_else(|e| e.into_inner());
        let (o, port) = inner
            .of_pool(pool)
            .filter(|o| o.phase() == Phase::Ready && Some(o.info.id.as_str()) != avoid)
            .filter_map(|o| o.info.host_port.map(|port| (o, port)))
            .min_by(|(a, _), (b, _)| {
                route_key(a)
                    .partial_cmp(&route_key(b))
                    .unwrap_or(std::cmp::Ordering::Equal)
            })?;
        o.in_flight.fetch_add(1, Ordering::Relaxed);
        o.served.fetch_add(1, Ordering::Relaxed);
        // A load first: the swap (a write to a shared line) only on the one request
        // that finds it armed.
        let wakes_pool =
            o.wake_on_pick.load(Ordering::Relaxed) && o.wake_on_pick.swap(false, Ordering::Relaxed);
        Some(Route {
            id: o.info.id.clone(),
            name: o.info.name.clone(),
            port,
            in_flight: o.in_flight.clone(),
            keep_alive_ms: o.keep_alive_ms.clone(),
            wakes_pool,
        })
    }

    /// Arms every container of a quiet pool: the next request routed to any of them
    /// sets [`Route::wakes_pool`]. A quiet pool's pass does not poll; requests are one of
    /// the two loads it must not miss (the sampler reports the other, CPU and memory, by
    /// triggering on a load-state change).
    pub fn arm_wakes(&self, pool: &str) {
        for o in self.read().of_pool(pool) {
            o.wake_on_pick.store(true, Ordering::Relaxed);
        }
    }

    /// Whether every container of the pool is still armed: no request was routed to it
    /// since [`ObservedStore::arm_wakes`] (a container seen since then was never armed,
    /// and counts as touched).
    pub fn wakes_armed(&self, pool: &str) -> bool {
        self.read()
            .of_pool(pool)
            .all(|o| o.wake_on_pick.load(Ordering::Relaxed))
    }

    /// Disarms every container of the pool: it polls again, and requests need not wake it.
    pub fn disarm_wakes(&self, pool: &str) {
        for o in self.read().of_pool(pool) {
            o.wake_on_pick.store(false, Ordering::Relaxed);
        }
    }

    /// Marks a container failed: it never became ready, or it stopped answering, or the
    /// gateway could not reach it. It leaves routing at once and is replaced.
    pub fn mark_failed(&self, id: &str) {
        if let Some(o) = self.write().get_mut(id) {
            o.failed = true;
            o.failed_at.get_or_insert_with(Instant::now);
        }
    }

    /// Records a usage sample; returns the load-state change, if any, for logging.
    pub fn record_usage(
        &self,
        id: &str,
        usage: Usage,
        spec: &EffectiveSpec,
        now: Instant,
    ) -> Option<LoadChange> {
        let mut inner = self.write();
        let o = inner.get_mut(id)?;
        o.usage = Some(usage);
        // Starting containers have no load state: they are none of the seed's three.
        o.ready_at?;
        let state = classify(spec, usage);
        if state == LoadState::Idle {
            o.idle_since.get_or_insert(now);
        } else {
            o.idle_since = None;
        }
        let from = o.load.replace(state).unwrap_or(LoadState::Healthy);
        (from != state).then(|| LoadChange {
            name: o.info.name.clone(),
            pool: o.info.pool.clone(),
            from,
            to: state,
        })
    }

    /// Records a scrape of a container's custom metrics (in its pool's spec order);
    /// returns true when they differ from the last scrape (the pool should look again).
    /// `key` names the metric list the readings follow ([`crate::scraper::metrics_key`]):
    /// readings of another list (the spec changed since) are not read as this one's.
    pub fn record_metrics(&self, id: &str, key: u64, metrics: Vec<Option<f64>>) -> bool {
        let mut inner = self.write();
        let Some(o) = inner.get_mut(id) else {
            return false;
        };
        if o.metrics == metrics && o.metrics_key == key {
            return false;
        }
        o.metrics = metrics;
        o.metrics_key = key;
        true
    }

    /// One container by id.
    pub fn get(&self, id: &str) -> Option<Observed> {
        self.read().get(id).cloned()
    }

    /// The containers of one pool, oldest first.
    pub fn pool(&self, pool: &str) -> Vec<Observed> {
        let mut v: Vec<Observed> = self.read().of_pool(pool).cloned().collect();
        v.sort_by(|a, b| {
            a.info
                .created
                .cmp(&b.info.created)
                .then_with(|| a.info.name.cmp(&b.info.name))
        });
        v
    }

    /// Calls `f` on each container of `pool` under the store's read lock, copying none
    /// (the dashboard's sampler; `f` must be quick and must not call the store).
    pub fn for_each_in(&self, pool: &str, f: impl FnMut(&Observed)) {
        self.read().of_pool(pool).for_each(f);
    }

    /// Scaler views of one pool's containers.
    pub fn views(&self, pool: &str) -> Vec<ContainerView> {
        self.pool(pool).iter().map(Observed::view).collect()
    }

    /// Every pool that has containers.
    pub fn pools(&self) -> BTreeSet<String> {
        self.read().pools.keys().cloned().collect()
    }

    /// All running containers (for the sampler): id -> (pool, name).
    pub fn running(&self) -> BTreeMap<String, (String, String)> {
        self.read()
            .all()
            .filter(|o| o.info.state == RunState::Running)
            .map(|o| {
                (
                    o.info.id.clone(),
                    (o.info.pool.clone(), o.info.name.clone()),
                )
            })
            .collect()
    }

    /// How many containers the store holds.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// True when the store holds no container.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Routing preference: not suspect (unreachable a moment ago) and not overloaded first,
/// then fewest in flight, then lowest CPU.
fn route_key(o: &Observed) -> (bool, bool, usize, f64) {
    (
        o.suspect,
        o.load == Some(LoadState::Overloaded),
        o.in_flight.load(Ordering::Relaxed),
        o.usage.map(|u| u.cpu).unwrap_or(0.0),
    )
}

fn fresh(info: ContainerInfo, now: Instant) -> Observed {
    Observed {
        info,
        info_at: now,
        first_seen: now,
        ready_at: None,
        served_since: None,
        failed_at: None,
        unready_since: None,
        suspect: false,
        failed: false,
        draining: None,
        usage: None,
        load: None,
        idle_since: None,
        in_flight: Arc::new(AtomicUsize::new(0)),
        keep_alive_ms: Arc::new(AtomicU64::new(0)),
        wake_on_pick: Arc::new(AtomicBool::new(false)),
        served: Arc::new(AtomicU64::new(0)),
        metrics: Vec::new(),
        metrics_key: 0,
    }
}

#[cfg(test)]
mod tests {
    //! The gateway's pick: which container of a pool gets the next request.

    use std::collections::{BTreeMap, HashSet};
    use std::time::SystemTime;

    use super::*;

    /// A pool with the seed's thresholds (0.70 CPU, 300M memory, 0.10 cooldown).
    fn spec() -> EffectiveSpec {
        use crate::api::{FunctionPool, FunctionPoolSpec, IntOrString, ObjectMeta, Scaling};
        FunctionPool {
            api_version: crate::api::API_VERSION.into(),
            kind: crate::api::KIND.into(),
            metadata: ObjectMeta {
                name: "web".into(),
                ..Default::default()
            },
            spec: FunctionPoolSpec {
                image: "invok/demo-fn:latest".into(),
                scaling: Some(Scaling {
                    cpu_overload_threshold: Some(0.70),
                    memory_overload_threshold: Some(IntOrString::String("300M".into())),
                    cooldown_cpu_threshold: Some(0.10),
                    ..Default::default()
                }),
                ..Default::default()
            },
        }
        .validate(&Default::default())
        .expect("the test pool is valid")
    }

    fn info(pool: &str, id: &str, state: RunState, port: Option<u16>) -> ContainerInfo {
        ContainerInfo {
            id: id.to_string(),
            name: format!("invok-{pool}-{id}"),
            pool: pool.to_string(),
            spec_hash: "h".to_string(),
            state,
            host_port: port,
            created: SystemTime::UNIX_EPOCH,
            image: "invok/demo-fn:latest".to_string(),
            labels: Default::default(),
            pinned: false,
        }
    }

    /// A store holding `list` (listed before anything else happened).
    fn store(list: Vec<ContainerInfo>) -> ObservedStore {
        let s = ObservedStore::new();
        s.apply_list(list, Instant::now());
        s
    }

    /// Ready, running containers of pool `web` with ids `ids` and ports 40001...
    fn ready_store(ids: &[&str]) -> ObservedStore {
        let s = store(
            ids.iter()
                .enumerate()
                .map(|(i, id)| info("web", id, RunState::Running, Some(40001 + i as u16)))
                .collect(),
        );
        for id in ids {
            assert!(s.mark_ready(id));
        }
        s
    }

    fn usage(s: &ObservedStore, id: &str, cpu: f64, rss: u64) {
        s.record_usage(id, Usage { cpu, rss }, &spec(), Instant::now());
    }

    fn in_flight(s: &ObservedStore, id: &str) -> usize {
        s.get(id).unwrap().in_flight.load(Ordering::Relaxed)
    }

    /// Picks and returns the chosen id, releasing the request at once.
    fn pick_released(s: &ObservedStore, avoid: Option<&str>) -> Option<String> {
        s.pick("web", avoid).map(|r| {
            r.in_flight.fetch_sub(1, Ordering::Relaxed);
            r.id
        })
    }

    #[test]
    fn requests_picking_at_the_same_moment_spread_over_the_containers() {
        let ids = ["a", "b", "c", "d", "e", "f", "g", "h"];
        for _ in 0..50 {
            let s = ready_store(&ids);
            let start = std::sync::Barrier::new(ids.len());
            let picked: HashSet<String> = std::thread::scope(|scope| {
                let threads: Vec<_> = ids
                    .iter()
                    .map(|_| {
                        scope.spawn(|| {
                            start.wait();
                            s.pick("web", None).unwrap().id // held: not released
                        })
                    })
                    .collect();
                threads.into_iter().map(|t| t.join().unwrap()).collect()
            });
            assert_eq!(
                picked.len(),
                ids.len(),
                "two requests went to one container"
            );
        }
    }

    #[test]
    fn an_empty_store_or_an_unknown_pool_gives_none() {
        let s = ObservedStore::new();
        assert!(s.pick("web", None).is_none());
        let s = ready_store(&["a"]);
        assert!(s.pick("other", None).is_none());
        assert_eq!(in_flight(&s, "a"), 0, "a failed pick counts nothing");
    }

    #[test]
    fn the_route_names_the_container_and_shares_its_counter() {
        let s = ready_store(&["a"]);
        let r = s.pick("web", None).unwrap();
        assert_eq!(r.id, "a");
        assert_eq!(r.name, "invok-web-a");
        assert_eq!(r.port, 40001);
        assert_eq!(in_flight(&s, "a"), 1);
        assert_eq!(s.views("web")[0].in_flight, 1, "the scaler sees it too");
        r.in_flight.fetch_sub(1, Ordering::Relaxed);
        assert_eq!(in_flight(&s, "a"), 0);
    }

    #[test]
    fn only_ready_containers_with_a_port_are_picked() {
        let s = store(vec![
            info("web", "ready", RunState::Running, Some(40001)),
            info("web", "noport", RunState::Running, None),
            info("web", "starting", RunState::Running, Some(40003)),
            info("web", "created", RunState::Created, Some(40004)),
            info("other", "elsewhere", RunState::Running, Some(40005)),
        ]);
        assert!(s.mark_ready("ready"));
        assert!(s.mark_ready("noport"));
        assert!(s.mark_ready("elsewhere"));
        let mut picked = HashSet::new();
        for _ in 0..10 {
            // Not released: in-flight counts grow, and still nothing else qualifies.
            picked.insert(s.pick("web", None).unwrap().id);
        }
        assert_eq!(picked, HashSet::from(["ready".to_string()]));
        assert_eq!(in_flight(&s, "ready"), 10);
        for id in ["noport", "starting", "created", "elsewhere"] {
            assert_eq!(in_flight(&s, id), 0, "{id} counted a request");
        }
        // A pool of containers none of which qualifies: None.
        s.mark_draining("ready", RemoveReason::Surplus);
        assert!(s.pick("web", None).is_none());
    }

    #[test]
    fn starting_draining_failed_exited_and_unready_containers_are_never_picked() {
        let s = store(vec![
            info("web", "starting", RunState::Running, Some(40001)),
            info("web", "draining", RunState::Running, Some(40002)),
            info("web", "failed", RunState::Running, Some(40003)),
            info("web", "exited", RunState::Running, Some(40004)),
            info("web", "unready", RunState::Running, Some(40005)),
            info("web", "removing", RunState::Running, Some(40006)),
            info("web", "paused", RunState::Running, Some(40007)),
        ]);
        for id in [
            "draining", "failed", "exited", "unready", "removing", "paused",
        ] {
            assert!(s.mark_ready(id));
        }
        s.mark_draining("draining", RemoveReason::Surplus);
        s.mark_failed("failed");
        assert!(s.mark_unready("unready"));
        // A relist sees some of them change state.
        s.apply_list(
            vec![
                info("web", "starting", RunState::Running, Some(40001)),
                info("web", "draining", RunState::Running, Some(40002)),
                info("web", "failed", RunState::Running, Some(40003)),
                info("web", "exited", RunState::Exited, Some(40004)),
                info("web", "unready", RunState::Running, Some(40005)),
                info("web", "removing", RunState::Removing, Some(40006)),
                info("web", "paused", RunState::Paused, Some(40007)),
            ],
            Instant::now(),
        );
        let phases: Vec<(String, Phase)> = s
            .pool("web")
            .iter()
            .map(|o| (o.info.id.clone(), o.phase()))
            .collect();
        assert!(
            phases.iter().all(|(_, p)| *p != Phase::Ready),
            "no container may be ready here: {phases:?}"
        );
        assert!(s.pick("web", None).is_none());
        // Healthy load samples do not make them routable either.
        for (id, _) in &phases {
            usage(&s, id, 0.2, 1 << 20);
        }
        assert!(s.pick("web", None).is_none());
        for (id, _) in &phases {
            assert_eq!(in_flight(&s, id), 0, "{id} counted a request");
        }
        // The one that only lacked readiness becomes routable once its probe passes.
        assert!(s.mark_ready("starting"));
        assert_eq!(pick_released(&s, None).as_deref(), Some("starting"));
    }

    #[test]
    fn a_removed_container_is_not_picked() {
        let s = ready_store(&["a", "b"]);
        s.remove("a");
        for _ in 0..4 {
            assert_eq!(pick_released(&s, None).as_deref(), Some("b"));
        }
        s.remove("b");
        assert!(s.pick("web", None).is_none());
    }

    #[test]
    fn fewest_in_flight_wins_and_a_pick_counts_at_once() {
        let s = ready_store(&["a", "b", "c"]);
        // Three picks without releasing: three different containers.
        let first: HashSet<String> = (0..3).map(|_| s.pick("web", None).unwrap().id).collect();
        assert_eq!(first.len(), 3, "{first:?}");
        // Three more: each container now carries two.
        let second: HashSet<String> = (0..3).map(|_| s.pick("web", None).unwrap().id).collect();
        assert_eq!(second.len(), 3, "{second:?}");
        for id in ["a", "b", "c"] {
            assert_eq!(in_flight(&s, id), 2);
        }
        // One finishes on b: b is the least busy.
        s.get("b")
            .unwrap()
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
        assert_eq!(s.pick("web", None).unwrap().id, "b");
    }

    #[test]
    fn two_picks_go_to_two_containers() {
        let s = ready_store(&["a", "b"]);
        let r1 = s.pick("web", None).unwrap();
        let r2 = s.pick("web", None).unwrap();
        assert_ne!(r1.id, r2.id);
        assert_ne!(r1.port, r2.port);
    }

    #[test]
    fn in_flight_counts_come_before_cpu() {
        let s = ready_store(&["busy", "cpu"]);
        usage(&s, "busy", 0.05, 1 << 20);
        usage(&s, "cpu", 0.60, 1 << 20);
        // busy has the lower CPU but two requests in flight.
        s.get("busy")
            .unwrap()
            .in_flight
            .fetch_add(2, Ordering::Relaxed);
        assert_eq!(pick_released(&s, None).as_deref(), Some("cpu"));
    }

    #[test]
    fn lower_cpu_breaks_ties() {
        let s = ready_store(&["a", "b", "c"]);
        usage(&s, "a", 0.50, 1 << 20);
        usage(&s, "b", 0.20, 1 << 20);
        usage(&s, "c", 0.65, 1 << 20);
        for _ in 0..5 {
            assert_eq!(pick_released(&s, None).as_deref(), Some("b"));
        }
        // Held (not released), the order of CPU decides among the equally busy.
        let order: Vec<String> = (0..3).map(|_| s.pick("web", None).unwrap().id).collect();
        assert_eq!(order, ["b", "a", "c"]);
        // A new sample changes the preference.
        usage(&s, "c", 0.01, 1 << 20);
        usage(&s, "b", 0.40, 1 << 20);
        assert_eq!(s.pick("web", None).unwrap().id, "c");
    }

    #[test]
    fn a_container_without_a_sample_counts_as_no_cpu() {
        let s = ready_store(&["sampled", "new"]);
        usage(&s, "sampled", 0.30, 1 << 20);
        assert_eq!(pick_released(&s, None).as_deref(), Some("new"));
    }

    #[test]
    fn an_overloaded_container_is_only_a_last_resort() {
        let s = ready_store(&["hot", "fat", "ok"]);
        usage(&s, "hot", 0.95, 1 << 20); // CPU above 0.70
        usage(&s, "fat", 0.20, 400_000_000); // RSS above 300M
        usage(&s, "ok", 0.65, 1 << 20);
        // ok is busier and uses more CPU than fat, and still wins.
        s.get("ok")
            .unwrap()
            .in_flight
            .fetch_add(5, Ordering::Relaxed);
        for _ in 0..4 {
            assert_eq!(pick_released(&s, None).as_deref(), Some("ok"));
        }
        // Without ok, the overloaded ones take requests, least in flight then CPU.
        s.mark_draining("ok", RemoveReason::Surplus);
        assert_eq!(pick_released(&s, None).as_deref(), Some("fat"));
        let held = s.pick("web", None).unwrap();
        assert_eq!(held.id, "fat");
        assert_eq!(pick_released(&s, None).as_deref(), Some("hot"));
        // When the load falls, hot is preferred again.
        usage(&s, "hot", 0.30, 1 << 20);
        s.get("hot")
            .unwrap()
            .in_flight
            .fetch_add(3, Ordering::Relaxed);
        assert_eq!(pick_released(&s, None).as_deref(), Some("hot"));
    }

    #[test]
    fn an_overloaded_container_is_picked_when_the_others_are_not_ready() {
        let s = store(vec![
            info("web", "hot", RunState::Running, Some(40001)),
            info("web", "starting", RunState::Running, Some(40002)),
        ]);
        assert!(s.mark_ready("hot"));
        usage(&s, "hot", 0.99, 1 << 20);
        assert_eq!(pick_released(&s, None).as_deref(), Some("hot"));
        assert!(s.mark_ready("starting"));
        assert_eq!(pick_released(&s, None).as_deref(), Some("starting"));
    }

    #[test]
    fn avoid_excludes_a_container() {
        let s = ready_store(&["a", "b"]);
        usage(&s, "a", 0.01, 1 << 20);
        usage(&s, "b", 0.50, 1 << 20);
        assert_eq!(pick_released(&s, None).as_deref(), Some("a"));
        for _ in 0..3 {
            assert_eq!(pick_released(&s, Some("a")).as_deref(), Some("b"));
        }
        assert_eq!(in_flight(&s, "a"), 0);
        // Avoiding the only candidate leaves none; avoiding an unknown id changes nothing.
        s.mark_draining("b", RemoveReason::Surplus);
        assert!(s.pick("web", Some("a")).is_none());
        assert_eq!(pick_released(&s, Some("zzz")).as_deref(), Some("a"));
    }

    #[test]
    fn concurrent_picks_spread_evenly() {
        let s = Arc::new(ready_store(&["a", "b", "c", "d"]));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    (0..25)
                        .map(|_| s.pick("web", None).unwrap())
                        .collect::<Vec<Route>>()
                })
            })
            .collect();
        let routes: Vec<Route> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        assert_eq!(routes.len(), 100);
        let counts: Vec<usize> = ["a", "b", "c", "d"]
            .iter()
            .map(|id| in_flight(&s, id))
            .collect();
        assert_eq!(counts.iter().sum::<usize>(), 100);
        // Picks choose and count as one step: held requests spread exactly.
        assert_eq!(counts, [25, 25, 25, 25], "uneven spread");
    }

    #[test]
    fn a_suspect_container_is_a_last_resort_and_stays_ready() {
        let s = ready_store(&["a", "b"]);
        s.get("b")
            .unwrap()
            .in_flight
            .fetch_add(3, Ordering::Relaxed);
        assert!(s.mark_suspect("a"));
        // a is idle but unreachable a moment ago: b, busy as it is, gets the request.
        assert_eq!(pick_released(&s, None).as_deref(), Some("b"));
        assert_eq!(
            s.get("a").unwrap().phase(),
            Phase::Ready,
            "one lost connection is no failure"
        );
        // Alone, it is still tried.
        assert_eq!(pick_released(&s, Some("b")).as_deref(), Some("a"));
        // Its probe passed: an ordinary candidate again.
        assert!(s.mark_ready("a"));
        assert_eq!(pick_released(&s, None).as_deref(), Some("a"));
    }

    #[test]
    fn the_store_is_synced_only_once_a_list_is_applied() {
        let s = ObservedStore::new();
        assert!(!s.is_synced());
        s.apply_list(
            vec![info("web", "a", RunState::Running, Some(40001))],
            Instant::now(),
        );
        assert!(s.is_synced());
        assert_eq!(s.len(), 1, "synced means the list is in");
    }

    #[tokio::test(start_paused = true)]
    async fn a_crash_is_a_container_that_never_served_or_died_soon_after() {
        let stable = Duration::from_secs(10);
        let s = store(vec![
            info("web", "never", RunState::Running, Some(40001)),
            info("web", "soon", RunState::Running, Some(40002)),
            info("web", "served", RunState::Running, Some(40003)),
        ]);
        assert!(s.mark_ready("soon"));
        assert!(s.mark_ready("served"));
        tokio::time::advance(Duration::from_secs(3)).await;
        s.mark_failed("never");
        s.mark_failed("soon");
        tokio::time::advance(Duration::from_secs(20)).await;
        s.apply_list(
            vec![
                info("web", "never", RunState::Exited, Some(40001)),
                info("web", "soon", RunState::Exited, Some(40002)),
                info("web", "served", RunState::Exited, Some(40003)),
            ],
            Instant::now(),
        );
        // Judged by when it failed, not by when the reconcile looks.
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(s.get("never").unwrap().is_crash(stable));
        assert!(
            s.get("soon").unwrap().is_crash(stable),
            "died 3 s after ready"
        );
        assert!(
            !s.get("served").unwrap().is_crash(stable),
            "served 23 s, then killed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_container_created_but_never_started_is_failed_after_a_while() {
        let s = store(vec![info("web", "c", RunState::Created, None)]);
        assert_eq!(s.get("c").unwrap().phase(), Phase::Starting);
        tokio::time::advance(NEVER_STARTED).await;
        s.apply_list(
            vec![info("web", "c", RunState::Created, None)],
            Instant::now(),
        );
        assert_eq!(s.get("c").unwrap().phase(), Phase::Failed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_list_that_arrives_late_never_brings_an_older_state_back() {
        let s = ObservedStore::new();
        let listed_at = Instant::now();
        tokio::time::advance(Duration::from_millis(50)).await;
        // The create returned (running, with its port) after the list was taken...
        s.insert_created(info("web", "a", RunState::Running, Some(40001)));
        assert!(s.mark_ready("a"));
        // ...and the list, which saw it still `created` without a port, lands now.
        s.apply_list(vec![info("web", "a", RunState::Created, None)], listed_at);
        let o = s.get("a").unwrap();
        assert_eq!(
            (o.info.state, o.info.host_port),
            (RunState::Running, Some(40001))
        );
        assert_eq!(o.phase(), Phase::Ready);
        // A list taken later is news.
        tokio::time::advance(Duration::from_millis(1)).await;
        s.apply_list(
            vec![info("web", "a", RunState::Exited, Some(40001))],
            Instant::now(),
        );
        assert_eq!(s.get("a").unwrap().phase(), Phase::Failed);
    }

    /// One step of [`the_pool_index_always_matches_the_containers`].
    #[derive(Clone, Debug)]
    enum Op {
        List(Vec<(u8, u8)>),
        Upsert(u8, u8),
        Created(u8, u8),
        Remove(u8),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        // Few ids and pools, so ops meet the same containers (and a container's pool
        // label changes now and then, which Docker never does but a store must survive).
        let c = (0u8..6, 0u8..3);
        prop_oneof![
            proptest::collection::vec(c.clone(), 0..6).prop_map(Op::List),
            c.clone().prop_map(|(i, p)| Op::Upsert(i, p)),
            c.prop_map(|(i, p)| Op::Created(i, p)),
            (0u8..6).prop_map(Op::Remove),
        ]
    }

    proptest::proptest! {
        /// Whatever happens, the store holds exactly the containers a plain model says, each
        /// pool's view (`pool`, `pools`, `len`) holds exactly the
        /// containers whose label names it, and every container is found by id.
        #[test]
        fn the_pool_index_always_matches_the_containers(ops in proptest::collection::vec(op(), 0..40)) {
            let s = ObservedStore::new();
            // What the store must hold, id -> pool, kept the simple way.
            let mut model: BTreeMap<String, String> = BTreeMap::new();
            let mut removed: HashSet<String> = HashSet::new();
            let c = |i: u8, p: u8| info(&format!("p{p}"), &format!("c{i}"), RunState::Running, Some(40000 + u16::from(i)));
            for op in ops {
                match op {
                    Op::List(cs) => {
                        // A list taken now: it drops what it lacks, and an id listed
                        // twice keeps its first entry.
                        s.apply_list(cs.iter().map(|&(i, p)| c(i, p)).collect(), Instant::now());
                        let mut listed: BTreeMap<String, String> = BTreeMap::new();
                        for &(i, p) in &cs {
                            listed.entry(format!("c{i}")).or_insert(format!("p{p}"));
                        }
                        // A listed id takes the list's pool, except a removed one, which
                        // the list cannot bring back (nor move, if upserted since).
                        model = listed
                            .into_iter()
                            .filter_map(|(id, p)| match (removed.contains(&id), model.get(&id)) {
                                (false, _) => Some((id, p)),
                                (true, Some(kept)) => Some((id.clone(), kept.clone())),
                                (true, None) => None,
                            })
                            .collect();
                    }
                    Op::Upsert(i, p) | Op::Created(i, p) => {
                        if matches!(op, Op::Upsert(..)) {
                            s.upsert(c(i, p));
                        } else {
                            s.insert_created(c(i, p));
                        }
                        model.insert(format!("c{i}"), format!("p{p}"));
                    }
                    Op::Remove(i) => {
                        s.remove(&format!("c{i}"));
                        model.remove(&format!("c{i}"));
                        removed.insert(format!("c{i}"));
                    }
                }
                let held: BTreeMap<String, String> = s
                    .read()
                    .all()
                    .map(|o| (o.info.id.clone(), o.info.pool.clone()))
                    .collect();
                proptest::prop_assert_eq!(&held, &model);
                proptest::prop_assert_eq!(s.len(), model.len());
                let pools: BTreeSet<String> = model.values().cloned().collect();
                proptest::prop_assert_eq!(s.pools(), pools);
                let inner = s.read();
                let mut seen = 0;
                for (pool, containers) in &inner.pools {
                    proptest::prop_assert!(!containers.is_empty(), "empty pool {pool} kept");
                    for (id, o) in containers {
                        proptest::prop_assert_eq!(&o.info.pool, pool);
                        proptest::prop_assert_eq!(&o.info.id, id);
                        proptest::prop_assert_eq!(inner.pool_of.get(id), Some(pool));
                        seen += 1;
                    }
                }
                proptest::prop_assert_eq!(seen, inner.pool_of.len());
                drop(inner);
                for p in 0..3 {
                    let pool = format!("p{p}");
                    for o in s.pool(&pool) {
                        proptest::prop_assert_eq!(&o.info.pool, &pool);
                        proptest::prop_assert!(s.get(&o.info.id).is_some());
                    }
                }
            }
        }
    }
}

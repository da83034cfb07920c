//! The observed store: what the daemon says exists, plus what only Invok knows about it
//! (readiness, usage samples, requests in flight).
//!
//! One writer per fact and many cheap readers, as kube-runtime's reflector: the relist
//! task writes container lists, probe tasks write readiness, the sampler writes usage,
//! the gateway counts requests in flight, and the reconciler writes its own creates and
//! removals at once so a relist that raced them cannot bring back the past (fresh
//! entries survive a list taken before they existed; removed ids are remembered).
//! Locks are never held across an `.await`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::api::EffectiveSpec;
use crate::runtime::{ContainerInfo, RunState};
use crate::scaler::{classify, ContainerView, LoadState, Phase, Usage};

/// How long a removed container's id is remembered, so a stale list cannot revive it.
const TOMBSTONE_TTL: Duration = Duration::from_secs(120);

/// One container as the operator sees it.
#[derive(Clone, Debug)]
pub struct Observed {
    /// What Docker listed.
    pub info: ContainerInfo,
    /// When this operator first saw it.
    pub first_seen: Instant,
    /// When its probe first passed.
    pub ready_at: Option<Instant>,
    /// The probe gave up on it.
    pub failed: bool,
    /// Taken out of routing, being removed.
    pub draining: bool,
    /// Latest usage sample.
    pub usage: Option<Usage>,
    /// Load state of the latest sample.
    pub load: Option<LoadState>,
    /// Since when the CPU has stayed below the cooldown threshold.
    pub idle_since: Option<Instant>,
    /// Requests in flight through the gateway (shared with the gateway).
    pub in_flight: Arc<AtomicUsize>,
}

impl Observed {
    /// The phase the scaler works with.
    pub fn phase(&self) -> Phase {
        if self.draining || self.info.state == RunState::Removing {
            return Phase::Draining;
        }
        match self.info.state {
            RunState::Running if self.failed => Phase::Failed,
            RunState::Running if self.ready_at.is_some() => Phase::Ready,
            RunState::Running | RunState::Created if !self.failed => Phase::Starting,
            _ => Phase::Failed,
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
        }
    }
}

/// A change of a container's load state, for the seed's log line.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadChange {
    /// Container name.
    pub name: String,
    /// Pool name.
    pub pool: String,
    /// Previous state, if it had one.
    pub from: Option<LoadState>,
    /// New state.
    pub to: LoadState,
}

#[derive(Default)]
struct Inner {
    /// id -> container.
    containers: HashMap<String, Observed>,
    /// Removed ids and when.
    tombstones: HashMap<String, Instant>,
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
        self.synced
            .store(true, std::sync::atomic::Ordering::Release);
        let mut changed = BTreeSet::new();
        let mut inner = self.write();
        let now = Instant::now();
        inner
            .tombstones
            .retain(|_, t| now.saturating_duration_since(*t) < TOMBSTONE_TTL);
        let listed: BTreeSet<String> = list.iter().map(|c| c.id.clone()).collect();
        let inner = &mut *inner;
        inner.containers.retain(|id, o| {
            let keep = listed.contains(id) || o.first_seen > listed_at;
            if !keep {
                changed.insert(o.info.pool.clone());
            }
            keep
        });
        for info in list {
            if inner.tombstones.contains_key(&info.id) {
                continue;
            }
            match inner.containers.get_mut(&info.id) {
                Some(o) => {
                    if o.info.state != info.state {
                        changed.insert(info.pool.clone());
                    }
                    if o.info.state == RunState::Running && info.state != RunState::Running {
                        o.ready_at = None;
                    }
                    o.info = info;
                }
                None => {
                    changed.insert(info.pool.clone());
                    inner.containers.insert(info.id.clone(), fresh(info, now));
                }
            }
        }
        changed
    }

    /// True once a full list has been applied.
    pub fn is_synced(&self) -> bool {
        self.synced.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records a container this operator just created.
    pub fn insert_created(&self, info: ContainerInfo) {
        let mut inner = self.write();
        inner
            .containers
            .insert(info.id.clone(), fresh(info, Instant::now()));
    }

    /// Takes a container out of routing before it is stopped.
    pub fn mark_draining(&self, id: &str) {
        if let Some(o) = self.write().containers.get_mut(id) {
            o.draining = true;
        }
    }

    /// Forgets a removed container, and ignores it in lists taken before the removal.
    pub fn remove(&self, id: &str) {
        let mut inner = self.write();
        inner.containers.remove(id);
        inner.tombstones.insert(id.to_string(), Instant::now());
    }

    /// Marks a container ready (its probe passed). Returns false if it is gone.
    pub fn mark_ready(&self, id: &str) -> bool {
        let found = match self.write().containers.get_mut(id) {
            Some(o) => {
                o.ready_at.get_or_insert_with(Instant::now);
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
        match self.write().containers.get_mut(id) {
            Some(o) => {
                o.ready_at = None;
                o.load = None;
                o.idle_since = None;
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
        let best = inner
            .containers
            .values()
            .filter(|o| o.info.pool == pool && o.phase() == Phase::Ready && Some(o.info.id.as_str()) != avoid)
            .filter_map(|o| o.info.host_port.map(|port| (o, port)))
            .min_by(|(a, _), (b, _)| route_key(a).partial_cmp(&route_key(b)).unwrap_or(std::cmp::Ordering::Equal))?;
        let (o, port) = best;
        o.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(Route {
            id: o.info.id.clone(),
            name: o.info.name.clone(),
            port,
            in_flight: o.in_flight.clone(),
        })
    }

    /// Marks a container failed: it never became ready, or it stopped answering, or the
    /// gateway could not reach it. It leaves routing at once and is replaced.
    pub fn mark_failed(&self, id: &str) {
        if let Some(o) = self.write().containers.get_mut(id) {
            o.failed = true;
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
        let o = inner.containers.get_mut(id)?;
        o.usage = Some(usage);
        // Starting containers have no load state: they are none of the seed's three.
        o.ready_at?;
        let state = classify(spec, usage);
        if state == LoadState::Idle {
            o.idle_since.get_or_insert(now);
        } else {
            o.idle_since = None;
        }
        let from = o.load.replace(state);
        (from != Some(state)).then(|| LoadChange {
            name: o.info.name.clone(),
            pool: o.info.pool.clone(),
            from,
            to: state,
        })
    }

    /// One container by id.
    pub fn get(&self, id: &str) -> Option<Observed> {
        self.read().containers.get(id).cloned()
    }

    /// The containers of one pool, oldest first.
    pub fn pool(&self, pool: &str) -> Vec<Observed> {
        let mut v: Vec<Observed> = self
            .read()
            .containers
            .values()
            .filter(|o| o.info.pool == pool)
            .cloned()
            .collect();
        v.sort_by(|a, b| {
            a.info
                .created
                .cmp(&b.info.created)
                .then_with(|| a.info.name.cmp(&b.info.name))
        });
        v
    }

    /// Scaler views of one pool's containers.
    pub fn views(&self, pool: &str) -> Vec<ContainerView> {
        self.pool(pool).iter().map(Observed::view).collect()
    }

    /// Every pool that has containers.
    pub fn pools(&self) -> BTreeSet<String> {
        self.read()
            .containers
            .values()
            .map(|o| o.info.pool.clone())
            .collect()
    }

    /// All running containers (for the sampler): id -> (pool, name).
    pub fn running(&self) -> BTreeMap<String, (String, String)> {
        self.read()
            .containers
            .values()
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
        self.read().containers.len()
    }

    /// True when the store holds no container.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Routing preference: not overloaded first, then fewest in flight, then lowest CPU.
fn route_key(o: &Observed) -> (bool, usize, f64) {
    (
        o.load == Some(LoadState::Overloaded),
        o.in_flight.load(Ordering::Relaxed),
        o.usage.map(|u| u.cpu).unwrap_or(0.0),
    )
}

fn fresh(info: ContainerInfo, now: Instant) -> Observed {
    Observed {
        info,
        first_seen: now,
        ready_at: None,
        failed: false,
        draining: false,
        usage: None,
        load: None,
        idle_since: None,
        in_flight: Arc::new(AtomicUsize::new(0)),
    }
}

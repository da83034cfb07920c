//! A deterministic, fault-injecting, in-memory [`Runtime`]: the Docker host of the unit
//! tests and of the whole-operator simulation (`tests/simulation.rs`).
//!
//! Containers are records in a map; nothing listens on a socket. Readiness probes and
//! usage samples are answered from the model ([`Runtime::probe`], [`Runtime::read_usage`]),
//! so the real controller runs on tokio's paused clock. Every latency is a
//! `tokio::time::sleep`, every fault a draw from a seeded [`StdRng`], ids and creation
//! times come from counters and the tokio clock: a seed replays the same host.
//!
//! What can go wrong, as on a real host ([`Faults`]): create, start and remove errors,
//! calls that time out (some after taking effect), slow calls, containers that die soon
//! after starting, never become ready or hang their probes, single flaky probes, events
//! lost, duplicated or late, event streams that break, lists that lag behind events, and a
//! Docker outage in which every call is `Unavailable` ([`MemoryRuntime::set_outage`]).
//!
//! Containers of another instance and unlabelled ones live on the same host
//! ([`MemoryRuntime::add_foreign`]); they are never listed nor reported in events, and any
//! call that reaches one is recorded ([`MemoryRuntime::touches`]) so a test can assert
//! that the operator never touches what is not its own. Create calls, container starts
//! (with the running count they bring) and remove calls are logged
//! ([`MemoryRuntime::take_creates`], [`MemoryRuntime::take_starts`],
//! [`MemoryRuntime::take_removes`]).
//!
//! [`MemoryRuntime::new`] has no latency and no faults (the controller's unit tests);
//! [`MemoryRuntime::simulated`] has the latencies measured on the reference host.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::cgroup::RawSample;
use super::{
    labels, ContainerInfo, CreateRequest, EventStream, RunState, Runtime, RuntimeError,
    RuntimeEvent, UsageReading,
};
use crate::api::Probe;

/// The daemon ID every in-memory runtime reports ([`Runtime::daemon_id`]): one fake
/// host, whatever instance it serves.
pub const DAEMON_ID: &str = "invok-memory-runtime";

/// How long a call that "times out" hangs before it fails, as the Docker client's
/// request timeout.
pub const CALL_TIMEOUT: Duration = super::docker::REQUEST_TIMEOUT;

/// How long a probe of a hung container takes to give up, as the real TCP probe.
pub const PROBE_TIMEOUT: Duration = super::readiness::CONNECT_TIMEOUT;

/// Calls made, by kind.
#[derive(Debug, Default)]
pub struct Calls {
    /// `create` calls.
    pub create: AtomicUsize,
    /// `remove` calls.
    pub remove: AtomicUsize,
    /// `list` calls.
    pub list: AtomicUsize,
    /// `probe` calls.
    pub probe: AtomicUsize,
    /// Every other call (`ping`, `daemon_id`, `ensure_image`, `ensure_network`, `events`).
    pub other: AtomicUsize,
}

/// How long each call takes when nothing goes wrong.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Latency {
    /// `create` before the container exists.
    pub create: Duration,
    /// From created to running (the start call).
    pub start: Duration,
    /// Stopping a container that honours SIGTERM.
    pub stop: Duration,
    /// Removing a stopped container.
    pub remove: Duration,
    /// A list.
    pub list: Duration,
    /// One probe of a container that answers.
    pub probe: Duration,
    /// From running to answering its probe.
    pub ready: Duration,
    /// `ping`, `ensure_image`, `ensure_network`.
    pub call: Duration,
}

impl Latency {
    /// The medians measured on the reference host (DESIGN.md: create 8 ms, start 180 ms,
    /// stop + remove 105 ms, a list of a few containers 1 ms).
    pub fn measured() -> Latency {
        Latency {
            create: Duration::from_millis(8),
            start: Duration::from_millis(180),
            stop: Duration::from_millis(90),
            remove: Duration::from_millis(15),
            list: Duration::from_millis(2),
            probe: Duration::from_millis(1),
            ready: Duration::from_millis(30),
            call: Duration::from_millis(1),
        }
    }
}

/// Probabilities (0.0 to 1.0) of each fault, drawn per call or per container.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// A create fails before the container exists.
    pub create_error: f64,
    /// The start fails after the container was created (it is then force-removed).
    pub start_error: f64,
    /// After a failed start, the force-remove fails too: a `created` container stays.
    pub start_cleanup_fails: f64,
    /// A create hangs for [`CALL_TIMEOUT`] and fails `Unavailable`.
    pub create_timeout: f64,
    /// A call that timed out had taken effect anyway (the container exists and runs; the
    /// removal happened).
    pub timeout_took_effect: f64,
    /// A remove fails (`500`), the container stays as it was.
    pub remove_error: f64,
    /// A remove hangs for [`CALL_TIMEOUT`] and fails `Unavailable`.
    pub remove_timeout: f64,
    /// A container ignores SIGTERM: stopping it takes the whole grace period.
    pub stubborn_stop: f64,
    /// A list fails.
    pub list_error: f64,
    /// A list is taken when asked but answered this much later at most (it lags behind
    /// the events of the meantime).
    pub list_lag_max: Duration,
    /// An event is lost.
    pub event_lost: f64,
    /// An event is delivered twice.
    pub event_duplicated: f64,
    /// An event is delivered up to `event_late_max` late.
    pub event_late: f64,
    /// How late a late event may be.
    pub event_late_max: Duration,
    /// After an event, every event stream breaks (the connection dropped).
    pub stream_break: f64,
    /// Any call takes up to `slow_max` longer.
    pub slow_call: f64,
    /// How much slower a slow call may be.
    pub slow_max: Duration,
    /// A started container dies within `die_soon_max`.
    pub die_soon: f64,
    /// How soon a dying container dies.
    pub die_soon_max: Duration,
    /// A started container never answers its probe.
    pub never_ready: f64,
    /// A started container hangs its probes (each takes [`PROBE_TIMEOUT`] and fails).
    pub hung: f64,
    /// A started container takes up to this long (on top of [`Latency::ready`]) to answer.
    pub slow_ready_max: Duration,
    /// One probe of a healthy container fails.
    pub probe_flake: f64,
    /// A scrape of a container's custom metrics gets no answer.
    pub scrape_error: f64,
}

/// Synthetic load of a pool: the demand its ready containers share evenly, as a load
/// balancer would spread it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Load {
    /// CPU demand in cores, over the whole pool.
    pub cpu: f64,
    /// Resident memory demand in bytes, over the whole pool (each container also holds a
    /// baseline of [`BASE_RSS`]).
    pub rss: u64,
}

/// Resident memory of an idle container.
pub const BASE_RSS: u64 = 20_000_000;

/// A container pinned at its CPU limit reads a little above it (CFS granularity; the
/// reference host measured 1.02 to 1.05).
const CPU_OVERSHOOT: f64 = 1.03;

/// One `create` call, when it began.
#[derive(Clone, Debug, PartialEq)]
pub struct CreateCall {
    /// When the call started (tokio clock).
    pub at: Instant,
    /// The pool it was for.
    pub pool: String,
    /// The instance the request named.
    pub instance: String,
    /// The container name asked for.
    pub name: String,
}

/// A container of this instance started (its process now runs): the only moment the
/// number of running containers grows.
#[derive(Clone, Debug, PartialEq)]
pub struct StartRecord {
    /// When (tokio clock).
    pub at: Instant,
    /// Its pool.
    pub pool: String,
    /// Its id.
    pub id: String,
    /// Running containers of this instance, by pool, counting this one.
    pub running: BTreeMap<String, usize>,
}

/// One `remove` call, as it found the host.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoveCall {
    /// When the call started (tokio clock).
    pub at: Instant,
    /// The id asked for.
    pub id: String,
    /// The container's pool, when it existed.
    pub pool: Option<String>,
    /// Its state then, when it existed.
    pub state: Option<RunState>,
    /// The stop grace asked for (zero for a failed container: no drain).
    pub grace: Duration,
}

struct Entry {
    info: ContainerInfo,
    /// Not of this runtime's instance (or unlabelled): must never be touched.
    foreign: bool,
    /// From when it answers probes; `None`: never.
    ready_at: Option<Instant>,
    /// Probes hang and fail.
    hung: bool,
    /// Ignores SIGTERM.
    stubborn: bool,
    /// CPU limit in cores (usage is clamped near it).
    cpus: f64,
    /// Cumulative CPU time, and when it was last brought up to date.
    cpu_ns: u64,
    usage_at: Instant,
    /// Per-container load, overriding the pool's share.
    load: Option<Load>,
    /// The next this many probes fail (a network blip), whatever the container does.
    failing_probes: u32,
}

impl Entry {
    /// A container as a create (or an adoption) leaves it: no fault drawn yet, no CPU
    /// used, no load of its own.
    fn new(
        info: ContainerInfo,
        foreign: bool,
        ready_at: Option<Instant>,
        cpus: f64,
        now: Instant,
    ) -> Entry {
        Entry {
            info,
            foreign,
            ready_at,
            hung: false,
            stubborn: false,
            cpus,
            cpu_ns: 0,
            usage_at: now,
            load: None,
            failing_probes: 0,
        }
    }

    /// Its process runs (a `created` container has none yet, an exited one no more).
    fn live(&self) -> bool {
        matches!(
            self.info.state,
            RunState::Running | RunState::Paused | RunState::Restarting
        )
    }

    fn answers(&self, now: Instant) -> bool {
        self.info.state == RunState::Running
            && !self.hung
            && self.ready_at.is_some_and(|t| t <= now)
    }
}

#[derive(Clone)]
enum Msg {
    Event(RuntimeEvent),
    /// Every stream fails (the connection dropped, or the daemon went away).
    Break(String),
}

struct Model {
    instance: Option<String>,
    containers: BTreeMap<String, Entry>,
    images: BTreeSet<String>,
    next_id: u64,
    epoch: Instant,
    latency: Latency,
    faults: Faults,
    outage: bool,
    seed: u64,
    draws: BTreeMap<(&'static str, String), u64>,
    loads: BTreeMap<String, Load>,
    /// Each pool's custom metric (`queue_depth`), spread evenly over its answering
    /// containers' metrics pages (this instance's: a foreign container with the pool's
    /// label is not one of them).
    metrics: BTreeMap<String, f64>,
    touches: Vec<String>,
    creates: Vec<CreateCall>,
    starts: Vec<StartRecord>,
    removes: Vec<RemoveCall>,
}

impl Model {
    /// A number in [0, 1) for the `n`-th draw of `kind` for `key` (a pool, mostly): draws
    /// for one pool do not depend on how calls of other pools interleave.
    fn draw(&mut self, kind: &'static str, key: &str) -> f64 {
        let n = self.draws.entry((kind, key.to_string())).or_insert(0);
        *n += 1;
        let mix = self.seed
            ^ fnv(kind).rotate_left(7)
            ^ fnv(key).rotate_left(29)
            ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        StdRng::seed_from_u64(mix).random::<f64>()
    }

    fn hit(&mut self, p: f64, kind: &'static str, key: &str) -> bool {
        p > 0.0 && self.draw(kind, key) < p
    }

    fn up_to(&mut self, max: Duration, kind: &'static str, key: &str) -> Duration {
        if max.is_zero() {
            return Duration::ZERO;
        }
        max.mul_f64(self.draw(kind, key))
    }

    /// Extra latency of a slow call.
    fn slowness(&mut self, key: &str) -> Duration {
        if self.hit(self.faults.slow_call, "slow", key) {
            let max = self.faults.slow_max;
            self.up_to(max, "slow-by", key)
        } else {
            Duration::ZERO
        }
    }

    fn owns(&self, labels_: &BTreeMap<String, String>) -> bool {
        labels_.get(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGED_BY_VALUE)
            && match &self.instance {
                Some(i) => labels_.get(labels::INSTANCE) == Some(i),
                None => true,
            }
    }

    fn touch(&mut self, what: String) {
        self.touches.push(what);
    }

    /// Live containers of this instance, by pool.
    fn live_by_pool(&self) -> BTreeMap<String, usize> {
        let mut by_pool = BTreeMap::new();
        for e in self.containers.values().filter(|e| !e.foreign && e.live()) {
            *by_pool.entry(e.info.pool.clone()).or_insert(0) += 1;
        }
        by_pool
    }

    /// Brings a container's CPU counter up to `now` at its current rate.
    fn account(&mut self, id: &str, now: Instant) -> Option<RawSample> {
        let e = self.containers.get(id)?;
        let pool = e.info.pool.clone();
        let share = self.loads.get(&pool).copied().unwrap_or_default();
        let serving = self
            .containers
            .values()
            .filter(|c| !c.foreign && c.info.pool == pool && c.answers(now))
            .count()
            .max(1);
        let e = self.containers.get_mut(id)?;
        let load = match e.load {
            Some(l) => l,
            None if e.answers(now) => Load {
                cpu: share.cpu / serving as f64,
                rss: share.rss / serving as u64,
            },
            None => Load::default(),
        };
        let cores = load.cpu.clamp(0.0, e.cpus * CPU_OVERSHOOT);
        let elapsed = now.saturating_duration_since(e.usage_at);
        e.cpu_ns = e
            .cpu_ns
            .saturating_add((elapsed.as_nanos() as f64 * cores) as u64);
        e.usage_at = now;
        Some(RawSample {
            cpu_ns: e.cpu_ns,
            rss: BASE_RSS.saturating_add(load.rss),
        })
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A deterministic container id: 64 hex digits, unique per runtime, in creation order.
fn container_id(n: u64) -> String {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    format!("{n:016x}{z:016x}{:032x}", u128::from(n) * 0x1f)
}

struct State {
    model: Mutex<Model>,
    events: broadcast::Sender<Msg>,
}

impl State {
    fn model(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends an event through the event faults (lost, duplicated, late, stream break).
    fn emit(self: &Arc<Self>, id: &str, pool: &str, action: &str) {
        let ev = RuntimeEvent {
            id: id.to_string(),
            pool: pool.to_string(),
            action: action.to_string(),
        };
        let (lost, dup, late, brk) = {
            let mut m = self.model();
            if m.outage {
                return;
            }
            let f = m.faults.clone();
            let lost = m.hit(f.event_lost, "event-lost", pool);
            let dup = m.hit(f.event_duplicated, "event-dup", pool);
            let late = if m.hit(f.event_late, "event-late", pool) {
                Some(m.up_to(f.event_late_max, "event-late-by", pool))
            } else {
                None
            };
            let brk = m.hit(f.stream_break, "stream-break", pool);
            (lost, dup, late, brk)
        };
        if !lost {
            let copies = if dup { 2 } else { 1 };
            match late.filter(|d| !d.is_zero()) {
                Some(delay) if tokio::runtime::Handle::try_current().is_ok() => {
                    let state = self.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        if !state.model().outage {
                            for _ in 0..copies {
                                let _ = state.events.send(Msg::Event(ev.clone()));
                            }
                        }
                    });
                }
                _ => {
                    for _ in 0..copies {
                        let _ = self.events.send(Msg::Event(ev.clone()));
                    }
                }
            }
        }
        if brk {
            let _ = self
                .events
                .send(Msg::Break("simulated: the event stream dropped".into()));
        }
    }

    /// A container's process ends.
    fn exit(self: &Arc<Self>, id: &str, event: bool) {
        let pool = {
            let mut m = self.model();
            let now = Instant::now();
            m.account(id, now);
            match m.containers.get_mut(id) {
                Some(e)
                    if matches!(
                        e.info.state,
                        RunState::Running
                            | RunState::Created
                            | RunState::Paused
                            | RunState::Restarting
                    ) =>
                {
                    e.info.state = RunState::Exited;
                    e.ready_at = None;
                    (!e.foreign).then(|| e.info.pool.clone())
                }
                _ => None,
            }
        };
        if let (Some(pool), true) = (pool, event) {
            self.emit(id, &pool, "die");
        }
    }
}

/// The in-memory runtime.
pub struct MemoryRuntime {
    state: Arc<State>,
    /// Counts of calls, for assertions.
    pub calls: Calls,
    /// When set, the next creates start containers that exit at once (a crash loop).
    pub crash_on_start: AtomicBool,
}

impl MemoryRuntime {
    /// A runtime that knows `images`, owns every container labelled `managed-by=invok`
    /// (whatever its instance), answers at once and never fails.
    pub fn new(images: &[&str]) -> Arc<Self> {
        Self::build(images, None, 0, Latency::default())
    }

    /// The simulation's runtime: it owns only containers of `instance`, takes the
    /// measured latencies, and draws its faults from `seed` (none until
    /// [`MemoryRuntime::set_faults`]).
    pub fn simulated(images: &[&str], instance: &str, seed: u64) -> Arc<Self> {
        Self::build(
            images,
            Some(instance.to_string()),
            seed,
            Latency::measured(),
        )
    }

    fn build(images: &[&str], instance: Option<String>, seed: u64, latency: Latency) -> Arc<Self> {
        Arc::new(MemoryRuntime {
            state: Arc::new(State {
                model: Mutex::new(Model {
                    instance,
                    containers: BTreeMap::new(),
                    images: images.iter().map(|s| s.to_string()).collect(),
                    next_id: 1,
                    epoch: Instant::now(),
                    latency,
                    faults: Faults::default(),
                    outage: false,
                    seed,
                    draws: BTreeMap::new(),
                    loads: BTreeMap::new(),
                    metrics: BTreeMap::new(),
                    touches: Vec::new(),
                    creates: Vec::new(),
                    starts: Vec::new(),
                    removes: Vec::new(),
                }),
                events: broadcast::channel(4096).0,
            }),
            calls: Calls::default(),
            crash_on_start: AtomicBool::new(false),
        })
    }

    fn model(&self) -> MutexGuard<'_, Model> {
        self.state.model()
    }

    /// Replaces the fault probabilities.
    pub fn set_faults(&self, faults: Faults) {
        self.model().faults = faults;
    }

    /// The fault probabilities in force.
    pub fn faults(&self) -> Faults {
        self.model().faults.clone()
    }

    /// Replaces the latencies.
    pub fn set_latency(&self, latency: Latency) {
        self.model().latency = latency;
    }

    /// Restarts the fault draws from `seed` (a simulation reseeds at every step, so a
    /// divergence in one step does not shift the faults of every later one).
    pub fn reseed(&self, seed: u64) {
        let mut m = self.model();
        m.seed = seed;
        m.draws.clear();
    }

    /// Starts or ends a Docker outage: while it lasts every call fails `Unavailable` and
    /// event streams break. Containers keep running (probes and usage still answer).
    pub fn set_outage(&self, down: bool) {
        let was = std::mem::replace(&mut self.model().outage, down);
        if down && !was {
            let _ = self.state.events.send(Msg::Break(
                "simulated: the Docker daemon is unreachable".into(),
            ));
        }
    }

    /// True during an outage.
    pub fn is_down(&self) -> bool {
        self.model().outage
    }

    /// Makes `image` known (or, with `false`, unknown: creates fail `ImageUnavailable`).
    pub fn set_image(&self, image: &str, present: bool) {
        let mut m = self.model();
        if present {
            m.images.insert(image.to_string());
        } else {
            m.images.remove(image);
        }
    }

    /// Sets the load a pool's ready containers share.
    pub fn set_load(&self, pool: &str, load: Load) {
        let now = Instant::now();
        let mut m = self.model();
        // Bring every counter up to date at the old rates first.
        let ids: Vec<String> = m.containers.keys().cloned().collect();
        for id in ids {
            m.account(&id, now);
        }
        m.loads.insert(pool.to_string(), load);
    }

    /// Sets the pool's custom metric `queue_depth` (its total over the pool; each
    /// answering container serves an even share on any metrics path).
    pub fn set_metric(&self, pool: &str, total: f64) {
        self.model().metrics.insert(pool.to_string(), total);
    }

    /// The pool's custom metric total (see [`MemoryRuntime::set_metric`]).
    pub fn metric(&self, pool: &str) -> f64 {
        self.model().metrics.get(pool).copied().unwrap_or(0.0)
    }

    /// Sets (or with `None`, clears) one container's own load.
    pub fn set_container_load(&self, id: &str, load: Option<Load>) {
        let now = Instant::now();
        let mut m = self.model();
        m.account(id, now);
        if let Some(e) = m.containers.get_mut(id) {
            e.load = load;
        }
    }

    /// Every container on the host (foreign ones included), as listed.
    pub fn snapshot(&self) -> Vec<ContainerInfo> {
        self.model()
            .containers
            .values()
            .map(|e| e.info.clone())
            .collect()
    }

    /// Containers of this runtime's instance (foreign ones left out).
    pub fn owned(&self) -> Vec<ContainerInfo> {
        self.model()
            .containers
            .values()
            .filter(|e| !e.foreign)
            .map(|e| e.info.clone())
            .collect()
    }

    /// Containers of `pool` that are running.
    pub fn running(&self, pool: &str) -> Vec<ContainerInfo> {
        self.owned()
            .into_iter()
            .filter(|c| c.pool == pool && c.state == RunState::Running)
            .collect()
    }

    /// Owned containers of `pool` whose process runs (running, paused, restarting).
    pub fn live(&self, pool: &str) -> Vec<ContainerInfo> {
        self.model()
            .containers
            .values()
            .filter(|e| !e.foreign && e.live() && e.info.pool == pool)
            .map(|e| e.info.clone())
            .collect()
    }

    /// Owned live containers, in all pools.
    pub fn live_count(&self) -> usize {
        self.model()
            .containers
            .values()
            .filter(|e| !e.foreign && e.live())
            .count()
    }

    /// True when the container runs and answers its probe now.
    pub fn answers(&self, id: &str) -> bool {
        let now = Instant::now();
        self.model()
            .containers
            .get(id)
            .is_some_and(|e| e.answers(now))
    }

    /// The cumulative usage counters of one container, as its cgroup would show them:
    /// `None` for a container that does not run (it has no cgroup) or is not ours (the
    /// read is recorded in [`MemoryRuntime::touches`]).
    pub fn usage_of(&self, id: &str) -> Option<RawSample> {
        let now = Instant::now();
        let mut m = self.model();
        let e = m.containers.get(id)?;
        if e.foreign {
            let what = format!("usage read of {} ({id}), which is not ours", e.info.name);
            m.touch(what);
            return None;
        }
        if e.info.state != RunState::Running {
            // A stopped container has no cgroup.
            return None;
        }
        m.account(id, now)
    }

    /// Makes the next `n` probes of a container fail (a network blip): the container
    /// itself is fine.
    pub fn fail_probes(&self, id: &str, n: u32) {
        if let Some(e) = self.model().containers.get_mut(id) {
            e.failing_probes = n;
        }
    }

    /// Makes a container exit, as if its process died.
    pub fn kill(&self, id: &str) {
        self.state.exit(id, true);
    }

    /// The Docker daemon restarts: every container exits (the events are lost with the
    /// connection) and, with `down`, the daemon stays unreachable until
    /// [`MemoryRuntime::set_outage`]`(false)`.
    pub fn restart_daemon(&self, down: bool) {
        self.set_outage(true);
        let ids: Vec<String> = self.model().containers.keys().cloned().collect();
        for id in ids {
            self.state.exit(&id, false);
        }
        if !down {
            self.set_outage(false);
        }
    }

    /// Adds a running, ready container as if someone (or an earlier operator) had created
    /// it. No call is counted and no fault applies.
    pub async fn adopt(&self, req: &CreateRequest) -> ContainerInfo {
        let now = Instant::now();
        let mut m = self.model();
        let id = container_id(m.next_id);
        let created = created_time(&m, now);
        m.next_id += 1;
        let port = host_port(&id);
        let info = ContainerInfo {
            id: id.clone(),
            name: req.name.clone(),
            pool: req.pool.clone(),
            spec_hash: req.spec_hash.clone(),
            state: RunState::Running,
            host_port: Some(port),
            created,
            image: req.template.image.clone(),
            labels: req.labels().into(),
            pinned: false,
        };
        let foreign = !m.owns(&info.labels);
        m.containers.insert(
            id,
            Entry::new(
                info.clone(),
                foreign,
                Some(now),
                req.template.cpu_capacity(),
                now,
            ),
        );
        info
    }

    /// Adds a running container with exactly `labels` (another instance's, or none): the
    /// operator must never touch it. Returns its id.
    pub fn add_foreign(&self, name: &str, pool: &str, labels_: BTreeMap<String, String>) -> String {
        let now = Instant::now();
        let mut m = self.model();
        let id = container_id(m.next_id);
        let created = created_time(&m, now);
        m.next_id += 1;
        let foreign = !m.owns(&labels_);
        let info = ContainerInfo {
            id: id.clone(),
            name: name.to_string(),
            pool: pool.to_string(),
            spec_hash: labels_.get(labels::SPEC_HASH).cloned().unwrap_or_default(),
            state: RunState::Running,
            host_port: Some(host_port(&id)),
            created,
            image: "someone/else:latest".into(),
            labels: labels_.into(),
            pinned: false,
        };
        m.containers
            .insert(id.clone(), Entry::new(info, foreign, Some(now), 1.0, now));
        id
    }

    /// Every call that reached a container that is not this instance's, or a create for
    /// another instance, in order.
    pub fn touches(&self) -> Vec<String> {
        self.model().touches.clone()
    }

    /// The create calls since the last take.
    pub fn take_creates(&self) -> Vec<CreateCall> {
        std::mem::take(&mut self.model().creates)
    }

    /// The container starts since the last take.
    pub fn take_starts(&self) -> Vec<StartRecord> {
        std::mem::take(&mut self.model().starts)
    }

    /// The remove calls since the last take.
    pub fn take_removes(&self) -> Vec<RemoveCall> {
        std::mem::take(&mut self.model().removes)
    }

    /// Fails the call when Docker is down.
    fn reachable(&self) -> Result<(), RuntimeError> {
        if self.model().outage {
            Err(RuntimeError::Unavailable(
                "simulated outage: cannot connect to the Docker daemon".into(),
            ))
        } else {
            Ok(())
        }
    }
}

fn created_time(m: &Model, now: Instant) -> SystemTime {
    // A fixed epoch plus the tokio clock, plus the id counter in nanoseconds so that two
    // containers created at one instant still sort in creation order.
    UNIX_EPOCH
        + Duration::from_secs(1_700_000_000)
        + now.saturating_duration_since(m.epoch)
        + Duration::from_nanos(m.next_id)
}

/// A made-up loopback port, stable per container.
fn host_port(id: &str) -> u16 {
    20_000 + (fnv(id) % 40_000) as u16
}

async fn pause(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

impl Runtime for MemoryRuntime {
    async fn ping(&self) -> Result<(), RuntimeError> {
        self.calls.other.fetch_add(1, Ordering::Relaxed);
        let d = self.model().latency.call;
        pause(d).await;
        self.reachable()
    }

    async fn daemon_id(&self) -> Result<String, RuntimeError> {
        self.calls.other.fetch_add(1, Ordering::Relaxed);
        self.reachable().map(|()| DAEMON_ID.to_string())
    }

    async fn list(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
        self.calls.list.fetch_add(1, Ordering::Relaxed);
        self.reachable()?;
        let (list, delay, fail) = {
            let mut m = self.model();
            let f = m.faults.clone();
            let fail = m.hit(f.list_error, "list-error", "");
            let lag = m.up_to(f.list_lag_max, "list-lag", "");
            let delay = m.latency.list + lag + m.slowness("list");
            // Taken now, answered after the delay: it may miss what happens meanwhile.
            let list: Vec<ContainerInfo> = m
                .containers
                .values()
                .filter(|e| !e.foreign)
                .map(|e| e.info.clone())
                .collect();
            (list, delay, fail)
        };
        pause(delay).await;
        self.reachable()?;
        if fail {
            return Err(RuntimeError::Api("500: simulated list failure".into()));
        }
        Ok(list)
    }

    async fn ensure_image(&self, image: &str) -> Result<(), RuntimeError> {
        self.calls.other.fetch_add(1, Ordering::Relaxed);
        let d = self.model().latency.call;
        pause(d).await;
        self.reachable()?;
        if self.model().images.contains(image) {
            Ok(())
        } else {
            Err(RuntimeError::ImageUnavailable {
                image: image.into(),
                reason: "no registry in memory".into(),
            })
        }
    }

    async fn ensure_network(&self, _: &str) -> Result<(), RuntimeError> {
        self.calls.other.fetch_add(1, Ordering::Relaxed);
        let d = self.model().latency.call;
        pause(d).await;
        self.reachable()
    }

    async fn create(&self, req: &CreateRequest) -> Result<ContainerInfo, RuntimeError> {
        self.calls.create.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let pool = req.pool.as_str();
        {
            let mut m = self.model();
            m.creates.push(CreateCall {
                at: now,
                pool: req.pool.clone(),
                instance: req.instance.clone(),
                name: req.name.clone(),
            });
            if !m.owns(&req.labels()) {
                m.touch(format!(
                    "create of {} for instance {:?}, which this runtime does not own",
                    req.name, req.instance
                ));
                return Err(RuntimeError::Api(format!(
                    "refusing to create {} for instance {:?}",
                    req.name, req.instance
                )));
            }
        }
        self.reachable()?;
        let (delay, fail, timeout, took_effect) = {
            let mut m = self.model();
            let f = m.faults.clone();
            let delay = m.latency.create + m.slowness(pool);
            let fail = m.hit(f.create_error, "create-error", pool);
            let timeout = m.hit(f.create_timeout, "create-timeout", pool);
            let took_effect = timeout && m.hit(f.timeout_took_effect, "create-took-effect", pool);
            (delay, fail, timeout, took_effect)
        };
        if timeout && !took_effect {
            pause(CALL_TIMEOUT).await;
            return Err(RuntimeError::Unavailable(
                "simulated: the create request timed out".into(),
            ));
        }
        pause(delay).await;
        self.reachable()?;
        if fail {
            return Err(RuntimeError::Api("500: simulated create failure".into()));
        }

        // Create.
        let (id, start_delay) = {
            let mut m = self.model();
            if !m.images.contains(&req.template.image) {
                return Err(RuntimeError::ImageUnavailable {
                    image: req.template.image.clone(),
                    reason: "no registry in memory".into(),
                });
            }
            let conflict = m
                .containers
                .iter()
                .find(|(_, e)| e.info.name == req.name)
                .map(|(id, e)| (id.clone(), e.foreign));
            match conflict {
                Some((id, true)) => {
                    return Err(RuntimeError::Conflict(format!(
                        "409: the name {} is taken by container {id}, which is not ours",
                        req.name
                    )));
                }
                Some((id, false)) => {
                    // A stale container of ours: cleaned up first, as DockerRuntime does.
                    m.containers.remove(&id);
                }
                None => {}
            }
            let now = Instant::now();
            let id = container_id(m.next_id);
            let created = created_time(&m, now);
            m.next_id += 1;
            let info = ContainerInfo {
                id: id.clone(),
                name: req.name.clone(),
                pool: req.pool.clone(),
                spec_hash: req.spec_hash.clone(),
                state: RunState::Created,
                host_port: None,
                created,
                image: req.template.image.clone(),
                labels: req.labels().into(),
                pinned: false,
            };
            m.containers.insert(
                id.clone(),
                Entry::new(info, false, None, req.template.cpu_capacity(), now),
            );
            let start_delay = m.latency.start + m.slowness(pool);
            (id, start_delay)
        };
        self.state.emit(&id, pool, "create");

        // Start. A caller that goes away here (an operator killed mid-create) leaves a
        // `created` container behind, as on a real host.
        pause(start_delay).await;
        self.reachable()?;
        let crash = self.crash_on_start.load(Ordering::Relaxed);
        let (started, die_in) = {
            let mut m = self.model();
            let f = m.faults.clone();
            if !crash && m.hit(f.start_error, "start-error", pool) {
                if !m.hit(f.start_cleanup_fails, "start-cleanup", pool) {
                    m.containers.remove(&id);
                }
                drop(m);
                return Err(RuntimeError::Api("500: simulated start failure".into()));
            }
            let now = Instant::now();
            let never = m.hit(f.never_ready, "never-ready", pool);
            let hung = m.hit(f.hung, "hung", pool);
            let stubborn = m.hit(f.stubborn_stop, "stubborn", pool);
            let slow_ready = m.up_to(f.slow_ready_max, "slow-ready", pool);
            let die_in = if m.hit(f.die_soon, "die-soon", pool) {
                Some(m.up_to(f.die_soon_max, "die-soon-in", pool))
            } else {
                None
            };
            let ready = m.latency.ready + slow_ready;
            let Some(e) = m.containers.get_mut(&id) else {
                return Err(RuntimeError::NotFound(format!(
                    "container {} ({id}) vanished right after its start",
                    req.name
                )));
            };
            if e.info.state != RunState::Created {
                return Err(RuntimeError::Api(format!(
                    "container {} ({id}) is {:?}, it cannot be started",
                    req.name, e.info.state
                )));
            }
            if crash {
                e.info.state = RunState::Exited;
            } else {
                e.info.state = RunState::Running;
                e.info.host_port = Some(host_port(&id));
                e.ready_at = (!never).then_some(now + ready);
                e.hung = hung;
                e.stubborn = stubborn;
                e.usage_at = now;
            }
            let info = e.info.clone();
            if !crash {
                let running = m.live_by_pool();
                m.starts.push(StartRecord {
                    at: now,
                    pool: info.pool.clone(),
                    id: id.clone(),
                    running,
                });
            }
            (info, die_in)
        };
        if crash {
            self.state.emit(&id, pool, "die");
            return Ok(started);
        }
        self.state.emit(&id, pool, "start");
        if let Some(d) = die_in {
            if tokio::runtime::Handle::try_current().is_ok() {
                let state = self.state.clone();
                let id = id.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    state.exit(&id, true);
                });
            }
        }
        if took_effect {
            // The daemon did it; the answer never came.
            pause(CALL_TIMEOUT.saturating_sub(delay + start_delay)).await;
            return Err(RuntimeError::Unavailable(
                "simulated: the create request timed out".into(),
            ));
        }
        Ok(started)
    }

    async fn remove(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        self.calls.remove.fetch_add(1, Ordering::Relaxed);
        let (foreign, pool) = {
            let mut m = self.model();
            let found = m.containers.get(id).map(|e| {
                (
                    e.foreign,
                    e.info.pool.clone(),
                    e.info.state,
                    e.info.name.clone(),
                )
            });
            m.removes.push(RemoveCall {
                at: Instant::now(),
                id: id.to_string(),
                pool: found.as_ref().map(|f| f.1.clone()),
                state: found.as_ref().map(|f| f.2),
                grace,
            });
            match found {
                None => (false, None),
                Some((true, pool, _, name)) => {
                    m.touch(format!(
                        "remove of {name} ({id}), which is not ours (pool label {pool:?})"
                    ));
                    (true, Some(pool))
                }
                Some((false, pool, _, _)) => (false, Some(pool)),
            }
        };
        self.reachable()?;
        let Some(pool) = pool else {
            // Already gone: not an error.
            return Ok(());
        };
        if foreign {
            return Err(RuntimeError::Api(format!(
                "refusing to remove container {id}: it does not carry this instance's labels"
            )));
        }
        let (fail, timeout, took_effect, stop, removal) = {
            let mut m = self.model();
            let f = m.faults.clone();
            let fail = m.hit(f.remove_error, "remove-error", &pool);
            let timeout = m.hit(f.remove_timeout, "remove-timeout", &pool);
            let took_effect = timeout && m.hit(f.timeout_took_effect, "remove-took-effect", &pool);
            let running = m
                .containers
                .get(id)
                .is_some_and(|e| e.info.state == RunState::Running);
            let stubborn = m.containers.get(id).is_some_and(|e| e.stubborn);
            let stop = if !running {
                Duration::ZERO
            } else if stubborn {
                grace
            } else {
                m.latency.stop.min(grace.max(Duration::from_millis(1)))
            };
            let removal = m.latency.remove + m.slowness(&pool);
            (fail, timeout, took_effect, stop, removal)
        };
        if timeout && !took_effect {
            pause(CALL_TIMEOUT + grace).await;
            return Err(RuntimeError::Unavailable(
                "simulated: the remove request timed out".into(),
            ));
        }
        if fail {
            pause(removal).await;
            return Err(RuntimeError::Api(
                "500: simulated removal failure (device or resource busy)".into(),
            ));
        }
        // Stop (SIGTERM, SIGKILL after the grace period), then remove.
        pause(stop).await;
        self.reachable()?;
        self.state.exit(id, true);
        pause(removal).await;
        self.reachable()?;
        let gone = self.model().containers.remove(id).is_some();
        if gone {
            self.state.emit(id, &pool, "destroy");
        }
        if took_effect {
            pause(CALL_TIMEOUT.saturating_sub(stop + removal)).await;
            return Err(RuntimeError::Unavailable(
                "simulated: the remove request timed out".into(),
            ));
        }
        Ok(())
    }

    async fn probe(&self, container: &ContainerInfo, _probe: &Probe) -> bool {
        self.calls.probe.fetch_add(1, Ordering::Relaxed);
        let id = container.id.as_str();
        let (delay, answer) = {
            let mut m = self.model();
            let now = Instant::now();
            let lat = m.latency.probe;
            let flake = m.faults.probe_flake;
            match m.containers.get(id) {
                None => (lat, false),
                Some(e) if e.foreign => {
                    let what = format!("probe of {} ({id}), which is not ours", e.info.name);
                    m.touch(what);
                    (lat, false)
                }
                Some(e) if e.info.state == RunState::Running && e.hung => (PROBE_TIMEOUT, false),
                Some(e) if e.failing_probes > 0 => {
                    if let Some(e) = m.containers.get_mut(id) {
                        e.failing_probes -= 1;
                    }
                    (lat, false)
                }
                Some(e) => {
                    let answers = e.answers(now);
                    let pool = e.info.pool.clone();
                    (lat, answers && !m.hit(flake, "probe-flake", &pool))
                }
            }
        };
        pause(delay).await;
        // Judged when the answer arrives: a container that died meanwhile fails.
        answer && self.answers(id)
    }

    async fn scrape(
        &self,
        container: &ContainerInfo,
        _path: &str,
        _timeout: Duration,
    ) -> Option<String> {
        self.calls.other.fetch_add(1, Ordering::Relaxed);
        let page = {
            let mut m = self.model();
            let now = Instant::now();
            let pool = container.pool.clone();
            let lat = m.latency.probe;
            let fails = m.faults.scrape_error;
            let (foreign, answers) = match m.containers.get(&container.id) {
                Some(e) => (e.foreign, e.answers(now)),
                None => (false, false),
            };
            if foreign {
                let what = format!(
                    "scrape of {} ({}), which is not ours",
                    container.name, container.id
                );
                m.touch(what);
                None
            } else if answers && !m.hit(fails, "scrape-error", &pool) {
                let answering = m
                    .containers
                    .values()
                    .filter(|c| !c.foreign && c.info.pool == pool && c.answers(now))
                    .count()
                    .max(1);
                let total = m.metrics.get(&pool).copied().unwrap_or(0.0);
                let share = total / answering as f64;
                Some((
                    lat,
                    format!("# TYPE queue_depth gauge\nqueue_depth {share}\n"),
                ))
            } else {
                None
            }
        };
        let (delay, text) = page?;
        pause(delay).await;
        Some(text)
    }

    fn read_usage(
        &self,
        due: &[String],
        _running: &HashSet<String>,
    ) -> HashMap<String, UsageReading> {
        due.iter()
            .filter_map(|id| Some((id.clone(), UsageReading::Cumulative(self.usage_of(id)?))))
            .collect()
    }

    fn events(&self) -> EventStream {
        self.calls.other.fetch_add(1, Ordering::Relaxed);
        let rx = self.state.events.subscribe();
        let state = self.state.clone();
        Box::pin(futures_util::stream::unfold(
            (Some(rx), true),
            move |(rx, first)| {
                let state = state.clone();
                async move {
                    let mut rx = rx?;
                    if first && state.model().outage {
                        let e = RuntimeError::Unavailable(
                            "simulated outage: cannot connect to the Docker daemon".into(),
                        );
                        return Some((Err(e), (None, false)));
                    }
                    loop {
                        match rx.recv().await {
                            Ok(Msg::Event(ev)) => return Some((Ok(ev), (Some(rx), false))),
                            Ok(Msg::Break(why)) => {
                                return Some((Err(RuntimeError::Unavailable(why)), (None, false)))
                            }
                            // Lagged messages are lost events: the controller relists.
                            Err(broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(broadcast::error::RecvError::Closed) => return None,
                        }
                    }
                }
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn request(pool: &str, name: &str, instance: &str) -> CreateRequest {
        let manifest = crate::api::FunctionPool {
            api_version: crate::api::API_VERSION.into(),
            kind: crate::api::KIND.into(),
            metadata: crate::api::ObjectMeta {
                name: pool.into(),
                ..Default::default()
            },
            spec: crate::api::FunctionPoolSpec {
                image: "img".into(),
                ..Default::default()
            },
        };
        let spec = manifest.validate(&Default::default()).expect("valid");
        CreateRequest {
            name: name.into(),
            pool: pool.into(),
            instance: instance.into(),
            template: spec.template.clone(),
            spec_hash: spec.spec_hash,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ids_and_creation_times_repeat_from_run_to_run() {
        let mut runs = Vec::new();
        for _ in 0..2 {
            let rt = MemoryRuntime::simulated(&["img"], "sim", 7);
            let a = rt
                .create(&request("web", "invok-web-aaaaa", "sim"))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
            let b = rt
                .create(&request("web", "invok-web-bbbbb", "sim"))
                .await
                .unwrap();
            runs.push((a.id, a.created, b.id, b.created));
        }
        assert_eq!(runs[0].0, runs[1].0);
        assert_eq!(runs[0].2, runs[1].2);
        assert!(runs[0].1 < runs[0].3);
    }

    #[tokio::test(start_paused = true)]
    async fn the_same_seed_draws_the_same_faults() {
        let outcomes = |seed| async move {
            let rt = MemoryRuntime::simulated(&["img"], "sim", seed);
            rt.set_faults(Faults {
                create_error: 0.5,
                ..Default::default()
            });
            let mut v = Vec::new();
            for i in 0..20 {
                v.push(
                    rt.create(&request("web", &format!("invok-web-{i:05}"), "sim"))
                        .await
                        .is_ok(),
                );
            }
            v
        };
        let a = outcomes(1).await;
        assert_eq!(a, outcomes(1).await);
        assert_ne!(a, outcomes(2).await);
        assert!(a.iter().any(|ok| *ok) && a.iter().any(|ok| !ok));
    }

    #[tokio::test(start_paused = true)]
    async fn foreign_containers_are_not_listed_and_every_touch_is_recorded() {
        let rt = MemoryRuntime::simulated(&["img"], "sim", 1);
        let other = request("web", "invok-web-other", "other");
        let theirs = rt.add_foreign("invok-web-other", "web", other.labels());
        let plain = rt.add_foreign("nginx", "", BTreeMap::new());
        let ours = rt
            .create(&request("web", "invok-web-ours1", "sim"))
            .await
            .unwrap();
        let listed: Vec<String> = rt.list().await.unwrap().into_iter().map(|c| c.id).collect();
        assert_eq!(listed, std::slice::from_ref(&ours.id));
        assert!(rt.touches().is_empty());
        assert!(rt.remove(&theirs, Duration::ZERO).await.is_err());
        assert!(rt
            .read_usage(std::slice::from_ref(&plain), &HashSet::new())
            .is_empty());
        assert!(rt.create(&other).await.is_err());
        assert_eq!(rt.touches().len(), 3, "{:?}", rt.touches());
        assert_eq!(rt.snapshot().len(), 3, "nothing foreign was removed");
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_fails_every_call_and_breaks_event_streams() {
        let rt = MemoryRuntime::simulated(&["img"], "sim", 1);
        let mut events = rt.events();
        let c = rt
            .create(&request("web", "invok-web-aaaaa", "sim"))
            .await
            .unwrap();
        assert_eq!(events.next().await.unwrap().unwrap().action, "create");
        assert_eq!(events.next().await.unwrap().unwrap().action, "start");
        rt.set_outage(true);
        assert!(events.next().await.unwrap().unwrap_err().is_unavailable());
        assert!(events.next().await.is_none());
        assert!(rt.list().await.unwrap_err().is_unavailable());
        assert!(rt.ping().await.unwrap_err().is_unavailable());
        assert!(rt
            .remove(&c.id, Duration::ZERO)
            .await
            .unwrap_err()
            .is_unavailable());
        let mut again = rt.events();
        assert!(again.next().await.unwrap().unwrap_err().is_unavailable());
        // Containers keep running through it.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(rt.probe(&c, &Probe::Tcp).await);
        rt.set_outage(false);
        assert_eq!(rt.list().await.unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pool_load_is_shared_by_its_ready_containers_and_clamped_at_the_limit() {
        let rt = MemoryRuntime::simulated(&["img"], "sim", 1);
        let a = rt
            .create(&request("web", "invok-web-aaaaa", "sim"))
            .await
            .unwrap();
        let b = rt
            .create(&request("web", "invok-web-bbbbb", "sim"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        rt.set_load(
            "web",
            Load {
                cpu: 1.0,
                rss: 100_000_000,
            },
        );
        let before = rt.usage_of(&a.id).unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = rt.usage_of(&a.id).unwrap();
        let cores = (after.cpu_ns - before.cpu_ns) as f64 / 2e9;
        assert!((cores - 0.5).abs() < 1e-6, "{cores}");
        assert_eq!(after.rss, BASE_RSS + 50_000_000);
        rt.kill(&b.id);
        rt.set_load("web", Load { cpu: 4.0, rss: 0 });
        let before = rt.usage_of(&a.id).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = rt.usage_of(&a.id).unwrap();
        let cores = (after.cpu_ns - before.cpu_ns) as f64 / 1e9;
        assert!((cores - CPU_OVERSHOOT).abs() < 1e-6, "{cores}");
        assert!(
            rt.usage_of(&b.id).is_none(),
            "an exited container has no cgroup"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_create_that_times_out_after_taking_effect_leaves_a_running_container() {
        let rt = MemoryRuntime::simulated(&["img"], "sim", 1);
        rt.set_faults(Faults {
            create_timeout: 1.0,
            timeout_took_effect: 1.0,
            ..Default::default()
        });
        let t0 = Instant::now();
        let err = rt
            .create(&request("web", "invok-web-aaaaa", "sim"))
            .await
            .unwrap_err();
        assert!(err.is_unavailable());
        assert!(t0.elapsed() >= CALL_TIMEOUT);
        assert_eq!(rt.running("web").len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_create_dropped_before_its_start_leaves_a_created_container() {
        let rt = MemoryRuntime::simulated(&["img"], "sim", 1);
        let req = request("web", "invok-web-aaaaa", "sim");
        let _ = tokio::time::timeout(Duration::from_millis(50), rt.create(&req)).await;
        let left = rt.owned();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].state, RunState::Created);
        assert!(rt.live("web").is_empty(), "no process runs in it");
    }
}

//! The simulator: one seed, one current-thread tokio runtime on a paused clock, the real
//! controller over the fault-injecting [`MemoryRuntime`], and the invariants checked
//! after every step.
//!
//! # What runs
//!
//! `Controller::new(runtime, config).run(shutdown)` as `invok run` runs it, except that
//! the directory is read by the simulation (`config.watch_manifests = false`): after every
//! change, and when the operator's manifest loop would read it (one debounce after a read
//! that asks for a confirming read, else every rescan interval), always through
//! `Shared::apply_manifests(manifest::load_dir(..))`. A content already read is not parsed
//! again (`load_dir` is a pure function of the content; parsing is most of a debug
//! build's time). A crash drops the run future (the task is aborted) and starts a new
//! controller over the same runtime; SIGTERM resolves the shutdown future.
//!
//! # Invariants (the names failures print)
//!
//! - `bounded-containers`: at every container start, the pool runs at most max + 1 (the
//!   rollout surge), max being the largest in force over the preceding [`BOUND_WINDOW`]
//!   (a reconcile acts on what it read when it began). The instance's total follows from
//!   the pools' bounds, except that removals which keep failing (a fault) leave a pool
//!   above its bound; its own starts are held to the bound all the same.
//! - `converges-when-quiet`: after a quiet period (no faults, no outage, load unchanged),
//!   within [`QUIET_DEADLINE`]: every pool with a spec in force runs min..=max containers,
//!   all on the current spec hash, all answering, as many ready in the store, nothing
//!   exited or never started left behind, at least one reconcile finished (every
//!   reconcile ends); a pool kept on its last valid spec says so in its status; a pool no
//!   manifest declares has no container once the directory is clean.
//! - `no-prune-on-broken-edit`: after every read, a pool whose file exists with errors
//!   (or is empty, or holds only skipped documents) keeps its last valid spec in
//!   `shared.desired().pools`; after a restart, while that is so, none of its running
//!   containers is removed.
//! - `desired-follows-manifests`: a pool declared validly once is desired with exactly
//!   that spec (the oracle reads its own documents, no parser involved).
//! - `never-touch-foreign`: no call reaches a container of another instance or an
//!   unlabelled one, and none of them disappears.
//! - `no-panic`: the panic hook saw no panic (tokio catches task panics).
//! - `bounded-shutdown`, `no-create-after-shutdown`, `no-remove-after-shutdown`: SIGTERM
//!   ends `run` within [`SHUTDOWN_BOUND`] of virtual time, and no create or remove call
//!   begins after it.
//! - `unreachable-once-is-not-a-crash`: a healthy container the gateway could not reach
//!   once (and whose next probe fails once) is ready again 3 s later.
//! - `observed-state-never-goes-back`: a container the store saw running is not
//!   `created` again while it still runs.
//! - `requests-wake-the-pool`: after a quiet period has converged and every pool has had
//!   time to stop polling, a request to each pool that did (its status says `quiet`)
//!   brings a reconcile of it within [`WAKE_BOUND`] (a quiet pool learns of requests
//!   only so).
//! - `missing-metric-holds-scale-down`: while every scrape of the custom metrics fails
//!   (the `ScrapesFail` profile), no pool whose spec has a custom metric scales down on
//!   idleness, from one scrape period after the failures began (a missing metric is
//!   never read as zero).
//!
//! The load steps also set each pool's custom metric (`queue_depth`, spread over its
//! containers' metrics pages) and a request rate the harness counts into
//! `Shared::arrivals` every [`ARRIVAL_SLICE`], routing one request of each slice as the
//! gateway would; edits turn `targetRequestsPerSecond`, `predictive` and a custom metric
//! on and off, so every invariant above also covers the signals beyond CPU.
//!
//! Not checked, for want of a hook: one reconcile at a time per pool (a per-pool
//! in-flight count on `Shared` would do), and scale from zero (the gateway's
//! `add_waiting`).
//!
//! # Determinism
//!
//! The steps come from `StdRng::seed_from_u64(seed)` before anything runs; each step
//! reseeds the runtime's fault draws (keyed by kind and pool, so calls of other pools do
//! not shift them) and the harness's own choices, so a dropped step does not shift the
//! faults of the others. Ids, ports and creation times come from counters and the paused
//! clock. The controller still has three sources of nondeterminism the simulation cannot
//! reach: container names (`reconcile::container_name` uses `rand::rng()`), the order
//! in which the scheduler's `HashMap` of timers yields pools that are due together, and
//! `tokio::select!`'s random choice among ready branches (fixable only with
//! `--cfg tokio_unstable` and `Builder::rng_seed`). In practice a replay is identical: the
//! single-seed mode runs the seed twice and says whether the digest of starts, removals
//! and their virtual times matched; names are left out of the comparison.

pub mod model;
pub mod steps;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use invok::api::EffectiveSpec;
use invok::controller::{Config, Controller, Shared};
use invok::runtime::memory::{Faults, Load, MemoryRuntime};
use invok::runtime::{labels, RunState};
use invok::scaler::Phase;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use model::{Dir, Doc, Expect, PoolSpec, Raw, FILES, IMAGES, POOLS};
use steps::{Change, FileBreak, LoadLevel, Planned, Profile, Step};

/// The operator's `--instance`.
pub const INSTANCE: &str = "sim";
/// A create made because of a spec in force this long ago still counts as allowed (a
/// reconcile acts on what it read when it began; slow calls stretch that).
const BOUND_WINDOW: Duration = Duration::from_secs(120);
/// The longest a quiet period may take to converge (CrashLoopBackOff caps at 300 s,
/// startup timeout 60 s, a hung call 60 s).
const QUIET_DEADLINE: Duration = Duration::from_secs(600);
/// How often convergence is looked at during a quiet period.
const QUIET_TICK: Duration = Duration::from_secs(2);
/// A request to a pool that stopped polling brings a reconcile of it within this much
/// (one look of the quiet period: the wake runs the pass at once, and no poll or resync
/// comes that soon).
const WAKE_BOUND: Duration = QUIET_TICK;
/// The longest poll interval the steps set.
const MAX_POLL: Duration = Duration::from_secs(5);
/// SIGTERM must end the operator within this much virtual time.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(5);

thread_local! {
    /// Panics on this thread while a seed runs (tokio catches task panics; the hook
    /// records them here).
    static PANICS: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// Installs the panic hook that records panics of simulation threads (once per process).
pub fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let recorded = PANICS.with(|p| {
                let mut p = p.borrow_mut();
                match p.as_mut() {
                    Some(list) => {
                        let msg = info
                            .payload()
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| info.payload().downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "(non-string panic)".into());
                        let at = info
                            .location()
                            .map(|l| format!("{}:{}", l.file(), l.line()))
                            .unwrap_or_default();
                        list.push(format!("panicked at {at}: {msg}"));
                        true
                    }
                    None => false,
                }
            });
            if !recorded {
                previous(info);
            }
        }));
    });
}

thread_local! {
    /// When this thread's seed began (tokio clock), for the log's timestamps.
    static T0: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

/// Log timestamps in virtual time since the seed began.
struct VirtualTime;

impl tracing_subscriber::fmt::time::FormatTime for VirtualTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        match T0.with(|t| t.get()) {
            Some(t0) => write!(w, "[{:>9.3}s]", (Instant::now() - t0).as_secs_f64()),
            None => write!(w, "[      -   ]"),
        }
    }
}

/// Sends the operator's log to stderr, filtered by `filter` (`INVOK_SIM_LOG`, in the
/// syntax of `RUST_LOG`), with virtual timestamps. For one seed at a time.
pub fn install_log(filter: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_timer(VirtualTime)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

fn take_panics() -> Vec<String> {
    PANICS.with(|p| {
        p.borrow_mut()
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    })
}

/// A broken invariant.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    /// Index of the step (in the seed's full plan) after which it was seen.
    pub step: usize,
    /// Short name of the invariant.
    pub invariant: &'static str,
    /// What was seen.
    pub detail: String,
    /// Virtual time since the seed began.
    pub at: Duration,
}

/// What one run of a seed did.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub steps_run: usize,
    pub virtual_time: Duration,
    pub creates: usize,
    /// Directory reads handed to the operator.
    pub reads: usize,
    pub failure: Option<Failure>,
    /// A digest of what happened, to see whether a seed replays exactly.
    pub digest: u64,
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn faults(profile: Profile) -> Faults {
    let s = Duration::from_secs;
    let ms = Duration::from_millis;
    let light = Faults {
        create_error: 0.05,
        start_error: 0.03,
        start_cleanup_fails: 0.2,
        remove_error: 0.05,
        stubborn_stop: 0.1,
        list_error: 0.05,
        list_lag_max: ms(500),
        event_lost: 0.1,
        event_duplicated: 0.1,
        event_late: 0.1,
        event_late_max: s(2),
        slow_call: 0.1,
        slow_max: s(2),
        die_soon: 0.03,
        die_soon_max: s(10),
        never_ready: 0.03,
        slow_ready_max: s(3),
        probe_flake: 0.05,
        ..Faults::default()
    };
    match profile {
        Profile::None => Faults::default(),
        Profile::Light => light,
        Profile::Heavy => Faults {
            create_error: 0.2,
            start_error: 0.1,
            start_cleanup_fails: 0.5,
            create_timeout: 0.05,
            timeout_took_effect: 0.5,
            remove_error: 0.2,
            remove_timeout: 0.05,
            stubborn_stop: 0.3,
            list_error: 0.2,
            list_lag_max: s(3),
            event_lost: 0.3,
            event_duplicated: 0.3,
            event_late: 0.3,
            event_late_max: s(5),
            stream_break: 0.05,
            slow_call: 0.3,
            slow_max: s(5),
            die_soon: 0.1,
            die_soon_max: s(20),
            never_ready: 0.1,
            hung: 0.05,
            slow_ready_max: s(10),
            probe_flake: 0.2,
            scrape_error: 0.3,
        },
        Profile::ScrapesFail => Faults {
            scrape_error: 1.0,
            ..Faults::default()
        },
        Profile::CreatesFail => Faults {
            create_error: 1.0,
            ..Faults::default()
        },
        Profile::StartsFail => Faults {
            start_error: 1.0,
            start_cleanup_fails: 0.3,
            ..Faults::default()
        },
        Profile::CrashLoop => Faults {
            die_soon: 1.0,
            die_soon_max: s(2),
            ..Faults::default()
        },
        Profile::RemovesFail => Faults {
            remove_error: 1.0,
            ..Faults::default()
        },
        Profile::EventsLost => Faults {
            event_lost: 1.0,
            list_lag_max: s(2),
            ..Faults::default()
        },
        Profile::NeverReady => Faults {
            never_ready: 0.7,
            hung: 0.3,
            ..Faults::default()
        },
        Profile::Timeouts => Faults {
            create_timeout: 0.5,
            remove_timeout: 0.5,
            timeout_took_effect: 0.5,
            ..Faults::default()
        },
        Profile::Flaky => Faults {
            probe_flake: 0.5,
            slow_ready_max: s(20),
            event_late: 0.5,
            event_late_max: s(10),
            ..Faults::default()
        },
    }
}

/// The request rate (per second) and the custom metric's total at a load level.
fn signal_load(level: LoadLevel) -> (f64, f64) {
    match level {
        LoadLevel::Idle => (0.0, 0.0),
        LoadLevel::Low | LoadLevel::MemoryHeavy => (5.0, 3.0),
        LoadLevel::Medium => (30.0, 20.0),
        LoadLevel::High => (100.0, 60.0),
        LoadLevel::Extreme => (20_000.0, 1e9),
    }
}

/// Requests are counted in slices of this much virtual time.
const ARRIVAL_SLICE: Duration = Duration::from_millis(500);

fn load(level: LoadLevel) -> Load {
    match level {
        LoadLevel::Idle => Load { cpu: 0.0, rss: 0 },
        LoadLevel::Low => Load {
            cpu: 0.3,
            rss: 50_000_000,
        },
        LoadLevel::Medium => Load {
            cpu: 1.2,
            rss: 200_000_000,
        },
        LoadLevel::High => Load {
            cpu: 3.0,
            rss: 400_000_000,
        },
        LoadLevel::Extreme => Load {
            cpu: 50.0,
            rss: 1_000_000_000,
        },
        LoadLevel::MemoryHeavy => Load {
            cpu: 0.3,
            rss: 8_000_000_000,
        },
    }
}

struct Operator {
    shared: Arc<Shared<MemoryRuntime>>,
    task: JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// A pool spec this operator incarnation has read valid (so it must keep it).
#[derive(Clone)]
struct Known {
    eff: EffectiveSpec,
}

struct Sim {
    verbose: bool,
    rt: Arc<MemoryRuntime>,
    dir: Dir,
    _tmp: tempfile::TempDir,
    op: Option<Operator>,
    known: BTreeMap<&'static str, Known>,
    /// Max containers the operator knew for each pool, from when.
    history: BTreeMap<&'static str, Vec<(Instant, Option<u32>)>>,
    outage_until: Option<Instant>,
    /// When the operator's manifest loop would read the directory next (a confirming
    /// read one debounce after a read that asks for it, else the periodic rescan).
    next_read: Option<Instant>,
    foreign: Vec<String>,
    rng: StdRng,
    t0: Instant,
    step: usize,
    digest: u64,
    creates: usize,
    reads: usize,
    /// Containers this operator's store has shown running.
    store_running: BTreeSet<String>,
    /// Remove calls taken from the runtime before the step's checks.
    removes_seen: Vec<invok::runtime::memory::RemoveCall>,
    /// Requests held in flight, as the gateway holds them: the route and until when.
    held: Vec<(invok::store::Route, Instant, Instant)>,
    /// Requests routed to a quiet pool: the pool, its reconcile count then, and when.
    /// Each must bring a reconcile within [`WAKE_BOUND`].
    woken: Vec<(&'static str, u64, Instant)>,
    /// Requests per second the harness sends each pool (counted as the gateway counts).
    rates: BTreeMap<&'static str, f64>,
    /// Since when every scrape fails (the `ScrapesFail` profile).
    scrapes_fail_since: Option<Instant>,
    /// Idle scale-downs counted per pool since the scrapes began failing.
    idle_downs: BTreeMap<&'static str, u64>,
    /// Directory contents read before, and what `load_dir` made of them.
    reads_seen: BTreeMap<Vec<(&'static str, Vec<u8>)>, invok::manifest::ManifestSet>,
}

type Check = Result<(), (&'static str, String)>;

fn fail<T>(
    invariant: &'static str,
    detail: impl Into<String>,
) -> Result<T, (&'static str, String)> {
    Err((invariant, detail.into()))
}

impl Sim {
    fn new(seed: u64, verbose: bool) -> Sim {
        // In memory where the host has a tmpfs: the directory is rewritten at every step.
        let shm = std::path::Path::new("/dev/shm");
        let tmp = if shm.is_dir() {
            tempfile::Builder::new()
                .prefix("invok-sim-")
                .tempdir_in(shm)
                .or_else(|_| tempfile::tempdir())
        } else {
            tempfile::tempdir()
        }
        .expect("temporary directory");
        let rt = MemoryRuntime::simulated(&IMAGES, INSTANCE, seed);
        let t0 = Instant::now();
        Sim {
            verbose,
            rt,
            dir: Dir::new(tmp.path()),
            _tmp: tmp,
            op: None,
            known: BTreeMap::new(),
            history: POOLS.iter().map(|p| (*p, vec![(t0, None)])).collect(),
            outage_until: None,
            next_read: None,
            foreign: Vec::new(),
            rng: StdRng::seed_from_u64(seed),
            t0,
            step: 0,
            digest: 0xcbf2_9ce4_8422_2325,
            creates: 0,
            reads: 0,
            reads_seen: BTreeMap::new(),
            rates: BTreeMap::new(),
            scrapes_fail_since: None,
            idle_downs: BTreeMap::new(),
            removes_seen: Vec::new(),
            held: Vec::new(),
            woken: Vec::new(),
            store_running: BTreeSet::new(),
        }
    }

    fn now(&self) -> Duration {
        Instant::now() - self.t0
    }

    fn shared(&self) -> &Arc<Shared<MemoryRuntime>> {
        &self
            .op
            .as_ref()
            .expect("an operator runs between steps")
            .shared
    }

    fn record_known(&mut self) {
        let now = Instant::now();
        for pool in POOLS {
            let max = self.known.get(pool).map(|k| k.eff.scaling.max as u32);
            let h = self
                .history
                .get_mut(pool)
                .expect("every pool has a history");
            if h.last().map(|e| e.1) != Some(max) {
                h.push((now, max));
            }
        }
    }

    /// The most containers a pool may run at `t`: the largest max in force within the
    /// window before `t`, plus the rollout surge of one; zero for a pool the operator
    /// did not know.
    fn allowed(&self, pool: &str, t: Instant) -> usize {
        let Some(h) = self.history.get(pool) else {
            return 0;
        };
        let from = t.checked_sub(BOUND_WINDOW).unwrap_or(self.t0);
        let mut best: Option<u32> = None;
        for (k, (at, max)) in h.iter().enumerate() {
            if *at > t {
                break;
            }
            let until = h.get(k + 1).map(|e| e.0);
            if until.is_some_and(|u| u < from) {
                continue;
            }
            if let Some(m) = max {
                best = Some(best.map_or(*m, |b| b.max(*m)));
            }
        }
        best.map_or(0, |m| m as usize + 1)
    }

    async fn start_operator(&mut self) -> Check {
        let mut config = Config::new(self.dir.root.clone(), INSTANCE);
        config.watch_manifests = false;
        let controller = Controller::new(self.rt.clone(), config);
        let shared = controller.shared();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(controller.run(async move {
            let _ = rx.await;
        }));
        self.op = Some(Operator {
            shared,
            task,
            stop: Some(tx),
        });
        self.known.clear();
        self.store_running.clear();
        // The watcher reads the directory at start.
        self.apply()
    }

    /// Reads the directory as the watcher does and hands it to the operator, then checks
    /// what the operator now desires against the oracle.
    fn apply(&mut self) -> Check {
        self.reads += 1;
        // `load_dir` is a pure function of the directory's content: a content seen before
        // reads as it did then (parsing YAML is most of a debug build's time otherwise).
        let key: Vec<(&'static str, Vec<u8>)> = self
            .dir
            .files
            .iter()
            .map(|(f, file)| (*f, file.text()))
            .collect();
        let set = match self.reads_seen.get(&key) {
            Some(set) => set.clone(),
            None => match invok::manifest::load_dir(&self.dir.root, &self.dir.defaults) {
                Ok(set) => {
                    if self.reads_seen.len() >= 64 {
                        self.reads_seen.clear();
                    }
                    self.reads_seen.insert(key, set.clone());
                    set
                }
                Err(e) => {
                    return fail(
                        "harness",
                        format!("cannot read the manifest directory: {e}"),
                    )
                }
            },
        };
        let shared = self.shared().clone();
        shared.apply_manifests(set);
        let config = &shared.config;
        let wait = if shared.desired().wants_confirming_read() {
            config.debounce
        } else {
            config.rescan_interval
        };
        self.next_read = Some(Instant::now() + wait);
        let mut result = Ok(());
        for pool in POOLS {
            let expect = self.dir.expect(pool);
            self.dir.rehome(pool, &expect);
            let desired = shared.desired().pools.get(pool).map(|d| d.spec.clone());
            match expect {
                Expect::Valid(spec) => match desired {
                    Some(d) => match spec.matches(&d) {
                        Ok(()) => {
                            self.known.insert(pool, Known { eff: (*d).clone() });
                        }
                        Err(e) => {
                            result = result.and(fail(
                                "desired-follows-manifests",
                                format!("pool {pool}: {e}"),
                            ));
                            self.known.remove(pool);
                        }
                    },
                    None => {
                        result = result.and(fail(
                            "desired-follows-manifests",
                            format!("pool {pool} is declared validly but the operator does not desire it"),
                        ));
                        self.known.remove(pool);
                    }
                },
                Expect::Kept { .. } => {
                    if let Some(k) = self.known.get(pool) {
                        let file = self.dir.file_of(pool);
                        match desired {
                            Some(d) if *d == k.eff => {}
                            Some(d) => {
                                result = result.and(fail(
                                    "no-prune-on-broken-edit",
                                    format!("pool {pool}: its file {file} has errors, yet the spec in force changed to {d:?}"),
                                ));
                            }
                            None => {
                                result = result.and(fail(
                                    "no-prune-on-broken-edit",
                                    format!(
                                        "pool {pool} was dropped from the desired pools while its file {file} exists with errors ({})",
                                        self.describe_file(file)
                                    ),
                                ));
                            }
                        }
                    }
                }
                Expect::Ambiguous => match desired {
                    // Whatever the operator chose is in force.
                    Some(d) => {
                        self.known.insert(pool, Known { eff: (*d).clone() });
                    }
                    None => {
                        self.known.remove(pool);
                    }
                },
                // No manifest declares it: the operator may prune it, at once or after a
                // confirming read; until it does, the spec it keeps is the one in force.
                Expect::Gone => match desired {
                    Some(d) => {
                        self.known.insert(pool, Known { eff: (*d).clone() });
                    }
                    None => {
                        self.known.remove(pool);
                    }
                },
            }
        }
        self.record_known();
        result
    }

    /// Lets `d` of virtual time pass, doing the directory reads the operator's manifest
    /// loop would do meanwhile (the simulation reads the directory itself, so that every
    /// read is followed by the oracle's checks).
    async fn advance(&mut self, d: Duration) -> Check {
        let until = Instant::now() + d;
        loop {
            // Requests arrive at each pool's rate, in slices of virtual time.
            let slice = (!self.rates.is_empty()).then(|| Instant::now() + ARRIVAL_SLICE);
            let next = [self.next_read.filter(|_| self.op.is_some()), slice]
                .into_iter()
                .flatten()
                .min()
                .filter(|t| *t <= until);
            match next {
                Some(t) => {
                    tokio::time::sleep_until(t).await;
                    if Some(t) == slice {
                        self.arrive(ARRIVAL_SLICE);
                    }
                    if self.next_read.is_some_and(|r| r <= Instant::now()) && self.op.is_some() {
                        self.apply()?;
                    }
                }
                None => {
                    tokio::time::sleep_until(until).await;
                    return Ok(());
                }
            }
        }
    }

    /// Sets a pool's load: CPU and memory in the runtime's model, its custom metric,
    /// and the request rate the harness sends it.
    fn set_level(&mut self, pool: &'static str, level: LoadLevel) {
        self.rt.set_load(pool, load(level));
        let (rate, metric) = signal_load(level);
        self.rt.set_metric(pool, metric);
        if rate > 0.0 {
            self.rates.insert(pool, rate);
        } else {
            self.rates.remove(pool);
        }
    }

    /// Counts the requests of `slice` at each pool's rate, as the gateway does, and
    /// routes one of them as the gateway would (which wakes a quiet pool).
    fn arrive(&mut self, slice: Duration) {
        let Some(op) = &self.op else { return };
        let shared = op.shared.clone();
        for (pool, rate) in &self.rates {
            if !shared.desired().pools.contains_key(*pool) {
                continue;
            }
            let n = (rate * slice.as_secs_f64()).round().min(1e6) as u64;
            shared.arrivals.note_many(pool, n);
            if let Some(route) = shared.pick(pool, None) {
                route
                    .in_flight
                    .fetch_sub(1, std::sync::atomic::Ordering::Release);
            } else {
                // No container ready: the gateway's request waits, which wakes the pool.
                shared.add_waiting(pool, 1);
                shared.add_waiting(pool, -1);
            }
        }
    }

    /// `missing-metric-holds-scale-down`: while every scrape fails, no pool whose spec
    /// has a custom metric scales down on idleness (its metric is missing, not zero).
    /// Checked from one scrape period after the failures began (the readings from
    /// before may still stand until the next scrape).
    fn missing_metrics_hold(&mut self) -> Check {
        let Some(since) = self.scrapes_fail_since else {
            return Ok(());
        };
        let Some(op) = &self.op else { return Ok(()) };
        if Instant::now() < since + MAX_POLL + Duration::from_secs(2) {
            return Ok(());
        }
        let shared = op.shared.clone();
        let text = shared.metrics.encode(
            &shared.metrics_snapshot(),
            invok::metrics::Format::Prometheus,
        );
        for pool in POOLS {
            let has_metric = shared
                .desired()
                .pools
                .get(pool)
                .is_some_and(|p| !p.spec.scaling.custom_metrics.is_empty());
            if !has_metric {
                self.idle_downs.remove(pool);
                continue;
            }
            let labels = [
                format!("pool=\"{pool}\""),
                "direction=\"down\"".to_string(),
                "reason=\"idle\"".to_string(),
            ];
            let count: u64 = text
                .lines()
                .filter(|l| {
                    l.starts_with("invok_scale_events_total{")
                        && labels.iter().all(|label| l.contains(label.as_str()))
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum();
            let base = *self.idle_downs.entry(pool).or_insert(count);
            if count > base {
                return fail(
                    "missing-metric-holds-scale-down",
                    format!("{pool} scaled down on idleness while every scrape of its custom metric failed ({base} -> {count} idle scale-downs)"),
                );
            }
            // An operator restart counts from zero again.
            self.idle_downs.insert(pool, count);
        }
        Ok(())
    }

    fn describe_file(&self, file: &str) -> String {
        match self.dir.files.get(file) {
            None => "deleted".into(),
            Some(f) => match &f.raw {
                Some(Raw::Truncated(b, _)) => format!("truncated to {} bytes", b.len()),
                Some(r) => format!("{r:?}"),
                None => f
                    .docs
                    .iter()
                    .map(|d| match d {
                        Doc::Pool(s) => format!("{} valid", s.name),
                        Doc::Broken(s, b) => format!("{} broken: {b:?}", s.name),
                        Doc::Dup(s) => format!("{} duplicated", s.name),
                        Doc::Foreign(n) => format!("foreign #{n}"),
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            },
        }
    }

    fn write(&self, file: &str) {
        self.dir.write(file);
    }

    /// After any change to the documents: a pool declared only by its duplicate is
    /// declared by it; files without documents are deleted (an empty file is a step of
    /// its own).
    fn normalize(&mut self) -> Vec<&'static str> {
        let mut touched = Vec::new();
        for pool in POOLS {
            if self.dir.locate(pool).is_none() && self.dir.has_dup(pool) {
                for (f, file) in self.dir.files.iter_mut() {
                    if let Some(d) = file
                        .docs
                        .iter_mut()
                        .find(|d| matches!(d, Doc::Dup(s) if s.name == pool))
                    {
                        if let Doc::Dup(s) = d.clone() {
                            *d = Doc::Pool(s);
                        }
                        touched.push(*f);
                        break;
                    }
                }
            }
        }
        let empty: Vec<&'static str> = self
            .dir
            .files
            .iter()
            .filter(|(_, f)| f.docs.is_empty() && f.raw.is_none())
            .map(|(f, _)| *f)
            .collect();
        for f in empty {
            self.dir.files.remove(f);
            touched.push(f);
        }
        touched
    }

    fn random_spec(&mut self, pool: &'static str) -> PoolSpec {
        let mut s = PoolSpec::new(pool);
        let r = &mut self.rng;
        s.max = [1, 2, 3, 5][r.random_range(0..4)];
        s.min = if pool == "zero" {
            0
        } else {
            r.random_range(0..=s.max.min(2))
        };
        s.cooldown_s = [2, 5, 10, 30][r.random_range(0..4)];
        s.poll_ms = [1000, 2000, 2000, 5000][r.random_range(0..4)];
        s.image = r.random_range(0..IMAGES.len());
        s
    }

    /// Puts a valid document for `spec` where the pool's document is (or in `file`).
    fn put(&mut self, spec: PoolSpec, file: &'static str) -> Vec<&'static str> {
        self.dir.remove_dups(spec.name);
        let mut touched: Vec<&'static str> = Vec::new();
        match self.dir.locate(spec.name) {
            Some((f, i)) => {
                let fm = self.dir.files.get_mut(f).expect("located");
                fm.docs[i] = Doc::Pool(spec);
                fm.raw = None;
                touched.push(f);
            }
            None => {
                let fm = self.dir.files.entry(file).or_default();
                fm.docs.push(Doc::Pool(spec));
                fm.raw = None;
                touched.push(file);
            }
        }
        // Duplicates live in other files: rewrite all.
        touched.extend(FILES.iter().copied());
        touched
    }

    fn write_all(&self, files: &[&'static str]) {
        let set: BTreeSet<&'static str> = files.iter().copied().collect();
        for f in set {
            self.write(f);
        }
    }

    async fn execute(&mut self, step: &Step) -> Check {
        match step {
            Step::Add { pool, file } => {
                let pool = POOLS[*pool];
                let spec = match self.dir.spec_of(pool) {
                    Some(s) => s,
                    None => self.random_spec(pool),
                };
                let touched = self.put(spec, FILES[*file]);
                self.normalize();
                self.write_all(&touched);
                self.apply()
            }
            Step::Edit { pool, change } => {
                let pool = POOLS[*pool];
                let mut s = self
                    .dir
                    .spec_of(pool)
                    .unwrap_or_else(|| PoolSpec::new(pool));
                match *change {
                    Change::Min(v) => {
                        s.min = v;
                        s.max = s.max.max(v).max(1);
                    }
                    Change::Max(v) => {
                        s.max = v;
                        s.min = s.min.min(v);
                    }
                    Change::MinMax(a, b) => {
                        s.max = b.max(1);
                        s.min = a.min(s.max);
                    }
                    Change::MaxBelowLive { min_zero } => {
                        let live = self.rt.live(pool).len() as u32;
                        s.max = live.saturating_sub(1).max(1);
                        s.min = if min_zero { 0 } else { s.min.min(s.max) };
                    }
                    Change::Image(i) => s.image = i,
                    Change::Env(v) => s.env = v,
                    Change::Thresholds { cpu, idle, mem_mb } => {
                        s.cpu = cpu;
                        s.idle = if idle < cpu { idle } else { (cpu / 3).max(1) };
                        s.mem_mb = mem_mb;
                    }
                    Change::Cooldown(c) => s.cooldown_s = c,
                    Change::Poll(p) => s.poll_ms = p,
                    Change::Cpus(c) => s.cpus = c,
                    Change::Signals {
                        rps,
                        predictive,
                        metric,
                    } => {
                        s.rps = rps;
                        s.predictive = predictive && rps.is_some();
                        s.metric = metric;
                    }
                }
                debug_assert!(s.is_valid(), "harness bug: {s:?}");
                let touched = self.put(s, FILES[0]);
                self.normalize();
                self.write_all(&touched);
                self.apply()
            }
            Step::Break { pool, kind } => {
                let pool = POOLS[*pool];
                let Some((f, i)) = self.dir.locate(pool) else {
                    return Ok(());
                };
                self.dir.remove_dups(pool);
                let fm = self.dir.files.get_mut(f).expect("located");
                let spec = match &fm.docs[i] {
                    Doc::Pool(s) | Doc::Broken(s, _) => s.clone(),
                    _ => unreachable!(),
                };
                fm.docs[i] = Doc::Broken(spec, *kind);
                fm.raw = None;
                self.write_all(&FILES);
                self.apply()
            }
            Step::Fix { pool } => {
                let pool = POOLS[*pool];
                let Some(spec) = self.dir.spec_of(pool) else {
                    return Ok(());
                };
                let touched = self.put(spec, FILES[0]);
                self.write_all(&touched);
                self.apply()
            }
            Step::Duplicate { pool, file } => {
                let pool = POOLS[*pool];
                let Some((f, i)) = self.dir.locate(pool) else {
                    return Ok(());
                };
                let Doc::Pool(spec) = self.dir.files[f].docs[i].clone() else {
                    return Ok(());
                };
                if self.dir.files[f].raw.is_some() || self.dir.has_dup(pool) {
                    return Ok(());
                }
                let mut to = FILES[*file];
                if to == f {
                    to = FILES[(*file + 1) % FILES.len()];
                }
                let fm = self.dir.files.entry(to).or_default();
                fm.docs.push(Doc::Dup(spec));
                fm.raw = None;
                self.write(to);
                self.apply()
            }
            Step::BreakFile { file, kind } => {
                let f = FILES[*file];
                if !self.dir.files.contains_key(f) {
                    return Ok(());
                }
                let raw = match kind {
                    FileBreak::NotUtf8 => Raw::NotUtf8,
                    FileBreak::Garbage => Raw::Garbage,
                    FileBreak::Empty => Raw::Empty,
                    FileBreak::CommentsOnly => Raw::CommentsOnly,
                    FileBreak::Truncated(cut) => self.dir.truncated(f, *cut),
                };
                self.dir.files.get_mut(f).expect("exists").raw = Some(raw);
                self.write(f);
                self.apply()
            }
            Step::Truncate { file, cut, gap } => {
                let f = FILES[*file];
                if !self.dir.files.contains_key(f) {
                    return Ok(());
                }
                let prefix = self.dir.truncated(f, *cut);
                let path = self.dir.root.join(f);
                // Not atomic: the editor truncates, the watcher reads, the editor writes.
                if let Raw::Truncated(bytes, _) = &prefix {
                    std::fs::write(&path, bytes).expect("truncate");
                }
                self.dir.forget_written(f);
                let before = self.dir.files[f].raw.clone();
                self.dir.files.get_mut(f).expect("exists").raw = Some(prefix);
                let first = self.apply();
                let waited = self.advance(*gap).await;
                let fm = self.dir.files.get_mut(f).expect("exists");
                fm.raw = match before {
                    Some(Raw::Truncated(..)) | None => None,
                    other => other,
                };
                self.write(f);
                first.and(waited).and(self.apply())
            }
            Step::FixFile { file } => {
                let f = FILES[*file];
                let Some(fm) = self.dir.files.get_mut(f) else {
                    return Ok(());
                };
                fm.raw = None;
                for d in fm.docs.iter_mut() {
                    if let Doc::Broken(s, _) = d {
                        *d = Doc::Pool(s.clone());
                    }
                }
                fm.docs.retain(|d| !matches!(d, Doc::Dup(_)));
                let mut touched = self.normalize();
                touched.push(f);
                self.write_all(&touched);
                self.apply()
            }
            Step::Delete { pool } => {
                let pool = POOLS[*pool];
                let Some((f, i)) = self.dir.locate(pool) else {
                    return Ok(());
                };
                self.dir.remove_dups(pool);
                let fm = self.dir.files.get_mut(f).expect("located");
                fm.docs.remove(i);
                fm.raw = None;
                self.normalize();
                self.write_all(&FILES);
                self.apply()
            }
            Step::DeleteFile { file } => {
                let f = FILES[*file];
                if self.dir.files.remove(f).is_none() {
                    return Ok(());
                }
                self.normalize();
                self.write_all(&FILES);
                self.apply()
            }
            Step::Move { pool, to } => {
                let pool = POOLS[*pool];
                let to = FILES[*to];
                let Some((f, i)) = self.dir.locate(pool) else {
                    return Ok(());
                };
                if f == to {
                    return Ok(());
                }
                self.dir.remove_dups(pool);
                let fm = self.dir.files.get_mut(f).expect("located");
                let doc = fm.docs.remove(i);
                fm.raw = None;
                let tm = self.dir.files.entry(to).or_default();
                tm.docs.push(doc);
                tm.raw = None;
                self.normalize();
                // One change (a `git pull`): both files, then one read.
                self.write_all(&FILES);
                self.apply()
            }
            Step::RenameFile { from, to } => {
                let (from, to) = (FILES[*from], FILES[*to]);
                if from == to || !self.dir.files.contains_key(from) {
                    return Ok(());
                }
                let moved = self.dir.files.remove(from).expect("exists");
                self.dir.files.insert(to, moved);
                let (src, dst) = (self.dir.root.join(from), self.dir.root.join(to));
                if let Some(parent) = dst.parent() {
                    std::fs::create_dir_all(parent).expect("mkdir");
                }
                std::fs::rename(src, dst).expect("rename");
                self.dir.renamed(from, to);
                self.normalize();
                self.write_all(&FILES);
                self.apply()
            }
            Step::ForeignDoc { file } => {
                let f = FILES[*file];
                let n = self.rng.random_range(0..100);
                let fm = self.dir.files.entry(f).or_default();
                fm.docs.push(Doc::Foreign(n));
                fm.raw = None;
                self.write(f);
                self.apply()
            }
            Step::Load { pool, level } => {
                self.set_level(POOLS[*pool], *level);
                Ok(())
            }
            Step::Requests { pool, n, hold } => {
                let shared = self.shared().clone();
                let now = Instant::now();
                for _ in 0..*n {
                    if let Some(route) = shared.pick(POOLS[*pool], None) {
                        self.held.push((route, now, now + *hold));
                    }
                }
                Ok(())
            }
            Step::LoadAll(level) => {
                for pool in POOLS {
                    self.set_level(pool, *level);
                }
                Ok(())
            }
            Step::Kill { n } => {
                let mut live: Vec<String> = self
                    .rt
                    .owned()
                    .into_iter()
                    .filter(|c| c.state == RunState::Running)
                    .map(|c| c.id)
                    .collect();
                for _ in 0..*n {
                    if live.is_empty() {
                        break;
                    }
                    let id = live.remove(self.rng.random_range(0..live.len()));
                    self.rt.kill(&id);
                }
                Ok(())
            }
            Step::KillPool { pool } => {
                for c in self.rt.live(POOLS[*pool]) {
                    self.rt.kill(&c.id);
                }
                Ok(())
            }
            Step::Faults(profile) => {
                self.rt.set_faults(faults(*profile));
                self.scrapes_fail_since = (*profile == Profile::ScrapesFail).then(Instant::now);
                self.idle_downs.clear();
                Ok(())
            }
            Step::Outage { secs } => {
                self.rt.set_outage(true);
                self.outage_until = Some(Instant::now() + Duration::from_secs(*secs));
                Ok(())
            }
            Step::DaemonRestart { down_secs } => {
                self.rt.restart_daemon(true);
                self.outage_until = Some(Instant::now() + Duration::from_secs(*down_secs));
                Ok(())
            }
            Step::Crash { down } => {
                // The gateway dies with the operator, and its requests with it.
                self.release_held(None);
                let op = self.op.take().expect("an operator runs");
                op.task.abort();
                let _ = op.task.await;
                drop(op.shared);
                self.known.clear();
                self.record_known();
                tokio::time::sleep(*down).await;
                self.start_operator().await
            }
            Step::Sigterm { down } => self.sigterm(*down).await,
            Step::Unreachable { pool, kill } => self.unreachable(POOLS[*pool], *kill).await,
            Step::Foreign {
                other_instance,
                pool,
            } => {
                let pool = POOLS[*pool];
                let n = self.foreign.len();
                let id = if *other_instance {
                    let l = BTreeMap::from([
                        (
                            labels::MANAGED_BY.to_string(),
                            labels::MANAGED_BY_VALUE.to_string(),
                        ),
                        (labels::INSTANCE.to_string(), "other".to_string()),
                        (labels::POOL.to_string(), pool.to_string()),
                        (
                            labels::SPEC_HASH.to_string(),
                            "0123456789abcdef".to_string(),
                        ),
                    ]);
                    self.rt
                        .add_foreign(&format!("invok-{pool}-oth{n:02}"), pool, l)
                } else {
                    self.rt
                        .add_foreign(&format!("invok-{pool}-x{n:03}"), "", BTreeMap::new())
                };
                self.foreign.push(id);
                Ok(())
            }
            Step::Quiet => {
                self.release_held(None);
                self.quiet().await
            }
        }
    }

    /// Ends held requests: those due by `now`, or all.
    fn release_held(&mut self, now: Option<Instant>) {
        self.held.retain(|(route, _, until)| {
            let keep = now.is_some_and(|now| *until > now);
            if !keep {
                route
                    .in_flight
                    .fetch_sub(1, std::sync::atomic::Ordering::Release);
            }
            keep
        });
    }

    async fn sigterm(&mut self, down: Duration) -> Check {
        self.release_held(None);
        let mut op = self.op.take().expect("an operator runs");
        let began = Instant::now();
        // Creates logged so far happened before the shutdown began.
        self.creates += self.rt.take_creates().len();
        // As `invok run`'s signal handler does: the flag first, then the shutdown future.
        op.shared.begin_shutdown();
        if let Some(stop) = op.stop.take() {
            let _ = stop.send(());
        }
        let ended = tokio::time::timeout(SHUTDOWN_BOUND, &mut op.task).await;
        let mut result = Ok(());
        if ended.is_err() {
            result = fail(
                "bounded-shutdown",
                format!(
                    "after SIGTERM the operator was still running {SHUTDOWN_BOUND:?} later (virtual time)"
                ),
            );
            op.task.abort();
            let _ = op.task.await;
        }
        drop(op.shared);
        tokio::time::sleep(down).await;
        let late: Vec<String> = self
            .rt
            .take_creates()
            .into_iter()
            .filter(|c| c.at >= began)
            .map(|c| format!("{} of pool {} at +{:?}", c.name, c.pool, c.at - began))
            .collect();
        if !late.is_empty() && result.is_ok() {
            result = fail(
                "no-create-after-shutdown",
                format!(
                    "{} create call(s) began after SIGTERM: {}",
                    late.len(),
                    late.join(", ")
                ),
            );
        }
        self.creates += late.len();
        // SIGTERM leaves containers running: no removal may begin once it is given.
        let removes = self.rt.take_removes();
        let late: Vec<String> = removes
            .iter()
            .filter(|r| r.at >= began)
            .map(|r| format!("{} ({:?}) at +{:?}", r.id, r.pool, r.at - began))
            .collect();
        self.removes_seen.extend(removes);
        if !late.is_empty() && result.is_ok() {
            result = fail(
                "no-remove-after-shutdown",
                format!(
                    "{} remove call(s) began after SIGTERM: {}",
                    late.len(),
                    late.join(", ")
                ),
            );
        }
        result?;
        self.known.clear();
        self.record_known();
        self.start_operator().await
    }

    async fn unreachable(&mut self, pool: &'static str, kill: bool) -> Check {
        let shared = self.shared().clone();
        let mut ready: Vec<String> = shared
            .store
            .pool(pool)
            .into_iter()
            .filter(|o| o.phase() == Phase::Ready)
            .map(|o| o.info.id)
            .collect();
        ready.sort();
        if ready.is_empty() {
            return Ok(());
        }
        let id = ready[self.rng.random_range(0..ready.len())].clone();
        if kill {
            self.rt.kill(&id);
            shared.report_unreachable(&id);
            return Ok(());
        }
        // One connection failed and the next probe fails too (a network blip): the
        // container itself is healthy and must come back into routing.
        let healthy = self.rt.answers(&id);
        self.rt.fail_probes(&id, 1);
        shared.report_unreachable(&id);
        self.advance(Duration::from_secs(3)).await?;
        if !healthy || !self.rt.answers(&id) {
            return Ok(());
        }
        // With flaky probes in force, more failures in a row than the one here may
        // legitimately take it out of routing for a while, but never make it a crash.
        let flaky = self.rt.faults().probe_flake > 0.0;
        match shared.store.get(&id) {
            Some(o) if o.phase() == Phase::Ready || o.draining.is_some() => Ok(()),
            Some(o) if flaky && !o.failed => Ok(()),
            Some(o) => fail(
                "unreachable-once-is-not-a-crash",
                format!(
                    "container {} of {pool} answers again, but 3 s after one failed connection and one failed probe the operator has it {:?} (its store entry: state {:?}, host port {:?}, failed {})",
                    o.info.name,
                    o.phase(),
                    o.info.state,
                    o.info.host_port,
                    o.failed
                ),
            ),
            None => Ok(()),
        }
    }

    async fn quiet(&mut self) -> Check {
        self.rt.set_faults(Faults::default());
        self.scrapes_fail_since = None;
        self.idle_downs.clear();
        self.rt.set_outage(false);
        self.outage_until = None;
        let shared = self.shared().clone();
        let before: BTreeMap<&str, u64> = POOLS
            .iter()
            .map(|p| (*p, shared.pool_status(p).map_or(0, |s| s.reconciles)))
            .collect();
        let deadline = Instant::now() + QUIET_DEADLINE;
        loop {
            self.advance(QUIET_TICK).await?;
            let problems = self.convergence_problems(&before);
            if problems.is_empty() {
                return self.wake_quiet_pools().await;
            }
            if Instant::now() >= deadline {
                return fail(
                    "converges-when-quiet",
                    format!(
                        "{QUIET_DEADLINE:?} without faults, load unchanged: {}",
                        problems.join("; ")
                    ),
                );
            }
        }
    }

    /// After convergence: once every pool has had time to stop polling (two of the
    /// longest poll intervals), one request to each declared pool that did (its status
    /// says `quiet`) must bring a reconcile of it within [`WAKE_BOUND`]
    /// (`requests-wake-the-pool`).
    async fn wake_quiet_pools(&mut self) -> Check {
        self.advance(2 * MAX_POLL + QUIET_TICK).await?;
        let shared = self.shared().clone();
        let now = Instant::now();
        for pool in POOLS {
            // Pools whose convergence was checked whole (so a reconcile finished since the
            // faults ended: none is still hung on a call from before). The gateway routes
            // to declared pools only.
            let checked = matches!(
                self.dir.expect(pool),
                Expect::Valid(_) | Expect::Kept { .. }
            ) && self.known.contains_key(pool);
            let asleep = shared.pool_status(pool).is_some_and(|s| s.quiet);
            if !checked || !asleep || !shared.desired().pools.contains_key(pool) {
                continue;
            }
            let Some(route) = shared.pick(pool, None) else {
                continue;
            };
            route
                .in_flight
                .fetch_sub(1, std::sync::atomic::Ordering::Release);
            let reconciles = shared.pool_status(pool).map_or(0, |s| s.reconciles);
            self.woken.push((pool, reconciles, now));
        }
        while !self.woken.is_empty() {
            self.advance(QUIET_TICK).await?;
            self.requests_woke_their_pools()?;
        }
        Ok(())
    }

    fn convergence_problems(&mut self, reconciles_before: &BTreeMap<&str, u64>) -> Vec<String> {
        let shared = self.shared().clone();
        let mut problems = Vec::new();
        let clean = self.dir.is_clean();
        let owned = self.rt.owned();
        for pool in POOLS {
            let expect = self.dir.expect(pool);
            let target = match &expect {
                Expect::Valid(_) | Expect::Kept { .. } => {
                    self.known.get(pool).map(|k| k.eff.clone())
                }
                Expect::Ambiguous => None,
                Expect::Gone => None,
            };
            let containers: Vec<_> = owned.iter().filter(|c| c.pool == pool).collect();
            let Some(spec) = target else {
                // Orphans may stay beside an empty file (see `has_empty_file`).
                let orphan_kept = self.dir.has_empty_file();
                if expect == Expect::Gone && clean && !orphan_kept && !containers.is_empty() {
                    problems.push(format!(
                        "{pool}: no manifest declares it and the directory is clean, yet {} container(s) remain",
                        containers.len()
                    ));
                }
                continue;
            };
            let (min, max) = (spec.scaling.min, spec.scaling.max);
            let live: Vec<_> = containers
                .iter()
                .filter(|c| {
                    matches!(
                        c.state,
                        RunState::Running | RunState::Paused | RunState::Restarting
                    )
                })
                .collect();
            if live.len() < min || live.len() > max {
                problems.push(format!(
                    "{pool}: {} running, want {min}..={max}",
                    live.len()
                ));
            }
            let outdated = live
                .iter()
                .filter(|c| c.spec_hash != spec.spec_hash)
                .count();
            if outdated > 0 {
                problems.push(format!("{pool}: {outdated} running on an old spec hash"));
            }
            let silent = live.iter().filter(|c| !self.rt.answers(&c.id)).count();
            if silent > 0 {
                problems.push(format!("{pool}: {silent} running but not answering"));
            }
            let dead = containers.len() - live.len();
            if dead > 0 {
                problems.push(format!(
                    "{pool}: {dead} exited or never-started container(s) not cleaned up"
                ));
            }
            let ready = shared
                .store
                .views(pool)
                .iter()
                .filter(|v| v.phase == Phase::Ready)
                .count();
            if ready < min || ready > max {
                problems.push(format!(
                    "{pool}: the operator sees {ready} ready, want {min}..={max}"
                ));
            }
            // The signals beyond CPU drive the count: a steady rate or metric is met.
            let (rate, metric) = (
                self.rates.get(pool).copied().unwrap_or(0.0),
                self.rt.metric(pool),
            );
            let ceil = |load: f64, per: f64| ((load / per) - 1e-9).ceil().max(0.0) as usize;
            let mut wanted = 0;
            if let Some(t) = spec.scaling.target_requests_per_second {
                wanted = wanted.max(ceil(rate, t));
            }
            // A custom metric is served by the containers: none runs, none reports it
            // (the first request starts a pool at zero).
            if ready > 0 {
                for m in &spec.scaling.custom_metrics {
                    wanted = wanted.max(ceil(metric, m.target_per_container));
                }
            }
            let wanted = wanted.min(max);
            if ready < wanted {
                problems.push(format!(
                    "{pool}: {ready} ready, but its request rate ({rate}/s) or custom metric ({metric}) asks for {wanted}"
                ));
            }
            let status = shared.pool_status(pool);
            let reconciles = status.as_ref().map_or(0, |s| s.reconciles);
            if reconciles <= reconciles_before.get(pool).copied().unwrap_or(0) {
                problems.push(format!(
                    "{pool}: no reconcile finished during the quiet period"
                ));
            }
            if matches!(expect, Expect::Kept { shown: true, .. })
                && status.as_ref().is_none_or(|s| s.manifest_error.is_none())
            {
                problems.push(format!(
                    "{pool}: runs on its last valid spec but its status does not say its manifest is invalid ({})",
                    self.describe_file(self.dir.file_of(pool))
                ));
            }
        }
        problems
    }

    /// The invariants that hold after every step.
    fn check(&mut self, protected: &BTreeSet<&'static str>) -> Check {
        let panics = take_panics();
        if !panics.is_empty() {
            return fail("no-panic", panics.join(" | "));
        }
        self.missing_metrics_hold()?;
        let touches = self.rt.touches();
        if !touches.is_empty() {
            return fail("never-touch-foreign", touches.join(" | "));
        }
        let snapshot = self.rt.snapshot();
        // What the store knows never goes back in time: a container it saw running is not
        // `created` again while it still runs (a late list must not undo a newer state).
        let shared = self.shared().clone();
        for c in snapshot.iter().filter(|c| c.state == RunState::Running) {
            let Some(o) = shared.store.get(&c.id) else {
                continue;
            };
            match o.info.state {
                RunState::Running => {
                    self.store_running.insert(c.id.clone());
                }
                RunState::Created if self.store_running.contains(&c.id) => {
                    return fail(
                        "observed-state-never-goes-back",
                        format!(
                            "container {} of {} runs, and the operator had seen it running, but its store now says `created` (host port {:?}, phase {:?})",
                            o.info.name,
                            o.info.pool,
                            o.info.host_port,
                            o.phase()
                        ),
                    );
                }
                _ => {}
            }
        }
        for id in &self.foreign {
            if !snapshot.iter().any(|c| &c.id == id) {
                return fail(
                    "never-touch-foreign",
                    format!("foreign container {id} is gone"),
                );
            }
        }
        self.creates += self.rt.take_creates().len();
        for s in self.rt.take_starts() {
            self.eat(fnv(&s.pool) ^ (s.at - self.t0).as_micros() as u64);
            let allowed = self.allowed(&s.pool, s.at);
            let running = s.running.get(&s.pool).copied().unwrap_or(0);
            if running > allowed {
                return fail(
                    "bounded-containers",
                    format!(
                        "pool {} had {running} running containers at {:?} (a start), over max + surge = {allowed} (the largest max in force over the preceding {BOUND_WINDOW:?}, plus one)",
                        s.pool,
                        s.at - self.t0
                    ),
                );
            }
        }
        let mut removes = std::mem::take(&mut self.removes_seen);
        removes.extend(self.rt.take_removes());
        for r in removes {
            self.eat(fnv(&r.id) ^ (r.at - self.t0).as_micros() as u64);
            let (Some(pool), Some(RunState::Running)) = (r.pool.as_deref(), r.state) else {
                continue;
            };
            // A failed container goes at once (no grace); any other is drained first.
            let held = self
                .held
                .iter()
                .filter(|(route, from, until)| route.id == r.id && *from <= r.at && r.at < *until)
                .count();
            if held > 0 && !r.grace.is_zero() {
                return fail(
                    "drain-before-removal",
                    format!(
                        "container {} of pool {pool} was removed at {:?} with {held} request(s) in flight, long before the pool's timeout",
                        r.id,
                        r.at - self.t0
                    ),
                );
            }
            if protected.contains(pool) {
                return fail(
                    "no-prune-on-broken-edit",
                    format!(
                        "a running container ({}) of pool {pool} was removed at {:?} while its file {} exists with errors ({}) and this operator never read the pool valid",
                        r.id,
                        r.at - self.t0,
                        self.dir.file_of(pool),
                        self.describe_file(self.dir.file_of(pool))
                    ),
                );
            }
        }
        self.release_held(Some(Instant::now()));
        Ok(())
    }

    /// `requests-wake-the-pool`: every request of [`Sim::wake_quiet_pools`] brought a
    /// reconcile of its pool within [`WAKE_BOUND`] (looked at every [`QUIET_TICK`]).
    fn requests_woke_their_pools(&mut self) -> Check {
        let now = Instant::now();
        let shared = self.shared().clone();
        let reconciles = |pool: &str| shared.pool_status(pool).map_or(0, |s| s.reconciles);
        self.woken
            .retain(|(pool, before, _)| reconciles(pool) == *before);
        match self.woken.iter().find(|(_, _, at)| now - *at > WAKE_BOUND) {
            Some((pool, before, at)) => fail(
                "requests-wake-the-pool",
                format!(
                    "a request was routed to quiet pool {pool} at {:?}, and {:?} later it had still finished no reconcile since ({before} before)",
                    *at - self.t0,
                    now - *at
                ),
            ),
            None => Ok(()),
        }
    }

    /// Pools whose file exists with errors and whose spec this operator never read:
    /// nothing may remove their running containers.
    fn protected(&self) -> BTreeSet<&'static str> {
        POOLS
            .iter()
            .copied()
            .filter(|p| {
                matches!(
                    self.dir.expect(p),
                    Expect::Kept {
                        known_only: false,
                        ..
                    }
                ) && !self.known.contains_key(p)
            })
            .collect()
    }

    /// Folds a number into the run's digest.
    fn eat(&mut self, x: u64) {
        self.digest = (self.digest ^ x).wrapping_mul(0x0000_0100_0000_01b3);
    }

    /// Folds the state after a step into the digest (container starts and removals, with
    /// their times, are folded in as they are checked).
    fn fold_digest(&mut self) {
        self.eat(self.step as u64);
        self.eat((Instant::now() - self.t0).as_micros() as u64);
        for pool in POOLS {
            let n = self.rt.live(pool).len() as u64;
            self.eat(n);
        }
    }
}

/// Runs `plan` (only the steps in `keep`, when given) for `seed`.
pub fn run_seed(
    seed: u64,
    plan: &[Planned],
    keep: Option<&BTreeSet<usize>>,
    verbose: bool,
) -> Outcome {
    PANICS.with(|p| *p.borrow_mut() = Some(Vec::new()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("tokio runtime");
    let outcome = runtime.block_on(async {
        let mut sim = Sim::new(seed, verbose);
        T0.with(|t| t.set(Some(sim.t0)));
        // Someone else's containers share the host from the start.
        let other = BTreeMap::from([
            (
                labels::MANAGED_BY.to_string(),
                labels::MANAGED_BY_VALUE.to_string(),
            ),
            (labels::INSTANCE.to_string(), "other".to_string()),
            (labels::POOL.to_string(), "web".to_string()),
            (
                labels::SPEC_HASH.to_string(),
                "0123456789abcdef".to_string(),
            ),
        ]);
        sim.foreign
            .push(sim.rt.add_foreign("invok-web-other", "web", other));
        sim.foreign
            .push(sim.rt.add_foreign("postgres", "", BTreeMap::new()));
        let mut outcome = Outcome::default();
        let started = sim.start_operator().await;
        let mut result = started.map_err(|e| (0usize, e));
        if result.is_ok() {
            for (i, planned) in plan.iter().enumerate() {
                if keep.is_some_and(|k| !k.contains(&i)) {
                    continue;
                }
                sim.step = i;
                sim.rt.reseed(mix(seed, i as u64));
                sim.rng = StdRng::seed_from_u64(mix(seed ^ 0x5eed, i as u64));
                if sim.outage_until.is_some_and(|t| Instant::now() >= t) {
                    sim.rt.set_outage(false);
                    sim.outage_until = None;
                }
                if sim.verbose {
                    eprintln!(
                        "[{:>9.3}s] step {i}: {planned}  (live {:?})",
                        sim.now().as_secs_f64(),
                        POOLS.map(|p| sim.rt.live(p).len())
                    );
                }
                let mut r = sim.execute(&planned.step).await;
                if r.is_ok() {
                    r = sim.advance(planned.wait).await;
                }
                let protected = sim.protected();
                if r.is_ok() {
                    r = sim.check(&protected);
                }
                outcome.steps_run += 1;
                sim.fold_digest();
                if let Err(e) = r {
                    result = Err((i, e));
                    break;
                }
            }
        }
        outcome.virtual_time = sim.now();
        outcome.creates = sim.creates + sim.rt.take_creates().len();
        outcome.digest = sim.digest;
        outcome.reads = sim.reads;
        if let Err((step, (invariant, detail))) = result {
            outcome.failure = Some(Failure {
                step,
                invariant,
                detail,
                at: sim.now(),
            });
        }
        if let Some(op) = sim.op.take() {
            op.task.abort();
        }
        outcome
    });
    drop(runtime);
    PANICS.with(|p| *p.borrow_mut() = None);
    outcome
}

/// Shrinking stops after this much wall-clock time per failing seed.
const SHRINK_TIME: std::time::Duration = std::time::Duration::from_secs(20);

/// The wall clock: the one place the simulation reads real time, for its figures (steps
/// per second) and the shrinker's time budget. Everything it simulates runs on tokio's
/// paused clock, which the lint policy keeps `std::time::Instant` out of.
#[allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "real time for figures and budgets only, beside the simulated clock"
)]
pub fn wall_clock() -> std::time::Instant {
    std::time::Instant::now()
}

/// Drops steps while the seed still fails the same invariant (halving chunks, as ddmin,
/// within `budget` runs and [`SHRINK_TIME`]); returns the steps kept and the failure the
/// shrunk list shows.
pub fn shrink(
    seed: u64,
    plan: &[Planned],
    failure: &Failure,
    budget: usize,
) -> (BTreeSet<usize>, Failure) {
    let began = wall_clock();
    let budget_left = |runs: usize| runs < budget && began.elapsed() < SHRINK_TIME;
    let mut keep: Vec<usize> = (0..=failure.step).collect();
    let mut last = failure.clone();
    let mut runs = 0;
    let mut chunk = keep.len().div_ceil(2);
    while chunk >= 1 && budget_left(runs) {
        let mut i = 0;
        let mut progress = false;
        while i < keep.len() && budget_left(runs) {
            let end = (i + chunk).min(keep.len());
            let candidate: BTreeSet<usize> =
                keep[..i].iter().chain(&keep[end..]).copied().collect();
            if candidate.is_empty() {
                i = end;
                continue;
            }
            runs += 1;
            let out = run_seed(seed, plan, Some(&candidate), false);
            match out.failure {
                Some(f) if f.invariant == failure.invariant => {
                    keep = candidate.into_iter().filter(|s| *s <= f.step).collect();
                    last = f;
                    progress = true;
                }
                _ => i = end,
            }
        }
        if !progress {
            chunk /= 2;
        }
    }
    (keep.into_iter().collect(), last)
}

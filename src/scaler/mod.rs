//! Scaling decisions, as pure functions of (spec, observed containers, clock).
//!
//! Two steps, as Kubernetes splits them between the HPA and the ReplicaSet:
//!
//! 1. [`decide`] looks at the load of the ready containers and says how many containers
//!    the pool should have (`replicas`) and why, and which containers to let go first.
//! 2. [`plan`] turns a replica count into concrete creates and removals: replacing failed
//!    containers, rolling out a new spec one container at a time, and trimming surplus.
//!
//! Nothing here does IO or reads a clock: `now` comes in as an argument, so every rule is
//! unit- and property-tested with a fake clock.
//!
//! Counts here reach Docker as create calls, so integer arithmetic is checked by
//! construction: `clippy::arithmetic_side_effects` is denied in this module, and the
//! invariants (`min <= replicas <= max`, never more creates than the target) are stated
//! as debug assertions where the values are made. A wrapped subtraction once became
//! `usize::MAX` replicas and an operator that created containers without bound.
#![deny(clippy::arithmetic_side_effects, clippy::too_many_lines)]

use std::cmp::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::api::EffectiveSpec;

/// One sample of a container's usage.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Usage {
    /// CPU as a fraction of the container's CPU limit (or of one core without one).
    pub cpu: f64,
    /// Resident memory in bytes.
    pub rss: u64,
}

/// Where a container is in its life, as the controller judges it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Created or running, readiness probe not yet passed: counts as capacity, gets no traffic.
    Starting,
    /// Running and answering its probe.
    Ready,
    /// Exited, dead, or not ready for too long: to be replaced.
    Failed,
    /// Being removed; already out of routing.
    Draining,
}

/// The seed's per-container status, for ready containers with a sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LoadState {
    /// Between the idle and overload thresholds.
    Healthy,
    /// CPU above `cpuOverloadThreshold` or RSS above `memoryOverloadThreshold`.
    Overloaded,
    /// CPU below `cooldownCpuThreshold`.
    Idle,
}

impl std::fmt::Display for LoadState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Classifies one sample against a pool's thresholds (the seed's rules).
pub fn classify(spec: &EffectiveSpec, usage: Usage) -> LoadState {
    let s = &spec.scaling;
    if usage.cpu > s.cpu_overload_threshold || usage.rss > s.memory_overload_threshold {
        LoadState::Overloaded
    } else if usage.cpu < s.cooldown_cpu_threshold {
        LoadState::Idle
    } else {
        LoadState::Healthy
    }
}

/// What the scaler knows about one container.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerView {
    /// Container id.
    pub id: String,
    /// The spec hash it was created from.
    pub spec_hash: String,
    /// Its phase.
    pub phase: Phase,
    /// When it was created (on the controller's clock).
    pub created: Instant,
    /// The latest usage sample, if any.
    pub usage: Option<Usage>,
    /// Since when its CPU has stayed under the cooldown threshold, if it has.
    pub idle_since: Option<Instant>,
    /// Requests in flight through the gateway.
    pub in_flight: usize,
    /// Registered by a library user: counts as current, never removed.
    pub pinned: bool,
    /// The latest scrape of each of the pool's `customMetrics`, in the spec's order:
    /// `None` where the scrape failed or lacked the metric. Empty until the first scrape
    /// (every metric missing). Missing is never zero: it holds scale-down back.
    pub metrics: Vec<Option<f64>>,
}

/// The pool-level facts [`decide`] needs beyond the containers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PoolFacts {
    /// The current replica target (the previous decision, or the adopted count).
    pub replicas: usize,
    /// When the pool last scaled up.
    pub last_scale_up: Option<Instant>,
    /// Requests waiting at the gateway for a container of this pool.
    pub waiting_requests: usize,
    /// The most requests the pool had in flight (and waiting) at any pass during the
    /// last `cooldownDuration`: with a concurrency target, a scale-down must leave room
    /// for these, not only for the requests of this instant (as the HPA's scale-down
    /// stabilization window keeps the highest recent recommendation).
    pub recent_peak_in_flight: usize,
    /// Requests per second the gateway counted for the pool lately
    /// (`targetRequestsPerSecond`); `None` until measured.
    pub request_rate: Option<f64>,
    /// The request rate forecast for `predictive.horizon` ahead; `None` without a
    /// forecast (not predictive, or too little history).
    pub forecast_rate: Option<f64>,
}

/// Which signal moved the replica count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Reason {
    /// Nothing to change.
    Steady,
    /// Raised to `minContainers`.
    BelowMin,
    /// Lowered to `maxContainers`.
    AboveMax,
    /// Every ready container over the CPU threshold.
    Cpu,
    /// Every ready container over the memory threshold (memory's proposal won).
    Memory,
    /// Requests in flight per container over `targetConcurrency`.
    Concurrency,
    /// Requests waiting with no ready container (scale from zero).
    Demand,
    /// Idle containers past their cooldown.
    Idle,
    /// The request rate over `targetRequestsPerSecond` per container.
    RequestRate,
    /// A custom metric's sum over `targetPerContainer` per container.
    CustomMetric,
    /// The request rate forecast for the horizon (predictive scaling).
    Predictive,
}

impl Reason {
    /// True for the reasons that grow a pool because of load (which start the cooldown
    /// after a scale-up), as opposed to bounds and replacements.
    pub fn is_load(self) -> bool {
        matches!(
            self,
            Reason::Cpu
                | Reason::Memory
                | Reason::Concurrency
                | Reason::Demand
                | Reason::RequestRate
                | Reason::CustomMetric
                | Reason::Predictive
        )
    }
}

/// The outcome of [`decide`].
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// How many containers the pool should have.
    pub replicas: usize,
    /// Why.
    pub reason: Reason,
    /// Containers to remove first when trimming, longest idle first.
    pub victims: Vec<String>,
    /// Every ready container is overloaded and the pool is at max (the seed's alert).
    pub at_max_overloaded: bool,
}

fn ceil_div(sum: f64, per: f64) -> usize {
    if per <= 0.0 || !sum.is_finite() {
        return 0;
    }
    // A tiny epsilon keeps 2.0000000001 from becoming 3 through float noise.
    ((sum / per) - 1e-9).ceil().max(0.0) as usize
}

/// Decides the replica count from load, the seed's rules sharpened by the HPA's formula.
///
/// - Scale up when every ready container is overloaded (or in-flight requests per ready
///   container exceed `targetConcurrency`, or requests wait with none ready), to
///   `ceil(sum of usage / threshold)` for CPU and memory (the larger wins), capped at max.
///   The current target counts containers still starting, so one spike is answered once.
/// - The request rate (`targetRequestsPerSecond`), its forecast (`predictive`) and each
///   custom metric propose `ceil(load / target per container)` at any load; the largest
///   proposal of all signals wins, within max.
/// - Scale down idle containers past `cooldownDuration`, longest idle first, never below
///   min, never within `cooldownDuration` of a scale-up, never while any ready container
///   lacks a sample or any container is starting, and only if the containers that stay
///   remain under the CPU and memory thresholds with the load they carry; never below
///   what the rate, the forecast or a custom metric proposes, and not at all while a
///   ready container's custom metric is missing (every signal must agree).
///
/// ```
/// # use invok::scaler::*;
/// # let spec = invok::api::FunctionPool { api_version: "invok.dev/v1alpha1".into(), kind: "FunctionPool".into(),
/// #   metadata: invok::api::ObjectMeta { name: "web".into(), ..Default::default() },
/// #   spec: invok::api::FunctionPoolSpec { image: "x".into(), ..Default::default() } }
/// #   .validate(&Default::default()).unwrap();
/// let now = tokio::time::Instant::now();
/// let busy = ContainerView { id: "a".into(), spec_hash: spec.spec_hash.clone(), phase: Phase::Ready,
///     created: now, usage: Some(Usage { cpu: 1.4, rss: 0 }), idle_since: None, in_flight: 0, pinned: false,
///     metrics: Vec::new() };
/// let d = decide(&spec, &[busy], &PoolFacts { replicas: 1, ..Default::default() }, now);
/// assert_eq!((d.replicas, d.reason), (2, Reason::Cpu)); // ceil(1.4 / 0.7)
/// ```
pub fn decide(
    spec: &EffectiveSpec,
    containers: &[ContainerView],
    facts: &PoolFacts,
    now: Instant,
) -> Decision {
    let s = &spec.scaling;
    let pool = Load::of(spec, containers);
    let replicas = facts.replicas.clamp(s.min, s.max);
    let reason = match facts.replicas.cmp(&replicas) {
        Ordering::Less => Reason::BelowMin,
        Ordering::Greater => Reason::AboveMax,
        Ordering::Equal => Reason::Steady,
    };
    let decision = |replicas: usize, reason, victims, at_max_overloaded| {
        debug_assert!(
            (s.min..=s.max).contains(&replicas),
            "decide: replicas {replicas} outside [{}, {}]",
            s.min,
            s.max
        );
        Decision {
            replicas,
            reason,
            victims,
            at_max_overloaded,
        }
    };

    // Scale up: the largest proposal of any signal.
    let (proposal, proposal_reason) = propose(spec, &pool, facts);
    let wanted = Wanted::of(spec, &pool, facts);
    let (up, up_reason) = if wanted.replicas > proposal {
        (wanted.replicas, wanted.reason)
    } else {
        (proposal, proposal_reason)
    };
    let at_max_overloaded = pool.all_overloaded && replicas >= s.max;
    if up > replicas && replicas < s.max {
        return decision(up.min(s.max), up_reason, Vec::new(), false);
    }
    if proposal > 0 {
        // Load wants more (or at least this many): never scale down now.
        return decision(replicas, reason, Vec::new(), at_max_overloaded);
    }

    // Scale down.
    if replicas <= s.min || scale_down_held(spec, &pool, facts, &wanted, now) {
        return decision(replicas, reason, Vec::new(), false);
    }
    // Every signal must agree: none goes below what the rate, the forecast or a custom
    // metric asks for.
    let keep = wanted.replicas.max(s.min);
    let victims = idle_victims(
        spec,
        &pool,
        replicas,
        keep,
        facts.recent_peak_in_flight,
        now,
    );
    if victims.is_empty() {
        return decision(replicas, reason, victims, false);
    }
    // idle_victims stops before `replicas - victims` would go below `keep` (>= min).
    let replicas = replicas.saturating_sub(victims.len()).max(s.min);
    decision(replicas, Reason::Idle, victims, false)
}

/// Whether anything forbids a scale-down now: within `cooldownDuration` of a scale-up,
/// a container starting, a ready container without a usage sample, requests waiting,
/// or a custom metric missing.
fn scale_down_held(
    spec: &EffectiveSpec,
    pool: &Load<'_>,
    facts: &PoolFacts,
    wanted: &Wanted,
    now: Instant,
) -> bool {
    let cooling = facts
        .last_scale_up
        .is_some_and(|t| now.saturating_duration_since(t) < spec.scaling.cooldown_duration);
    let starting = pool.live.len().saturating_sub(pool.ready.len());
    cooling || starting > 0 || !pool.all_sampled || facts.waiting_requests > 0 || wanted.missing
}

/// A pool's containers as the scale decisions read them.
struct Load<'a> {
    /// Starting and ready containers.
    live: Vec<&'a ContainerView>,
    /// Ready containers.
    ready: Vec<&'a ContainerView>,
    /// The usage samples of the ready containers that have one.
    samples: Vec<Usage>,
    /// Every ready container has a sample (and there is one).
    all_sampled: bool,
    /// Every ready container is overloaded (and all are sampled).
    all_overloaded: bool,
}

impl<'a> Load<'a> {
    fn of(spec: &EffectiveSpec, containers: &'a [ContainerView]) -> Load<'a> {
        let live: Vec<&ContainerView> = containers
            .iter()
            .filter(|c| matches!(c.phase, Phase::Starting | Phase::Ready))
            .collect();
        let ready: Vec<&ContainerView> = live
            .iter()
            .copied()
            .filter(|c| c.phase == Phase::Ready)
            .collect();
        let samples: Vec<Usage> = ready.iter().filter_map(|c| c.usage).collect();
        let all_sampled = !ready.is_empty() && samples.len() == ready.len();
        let all_overloaded = all_sampled
            && samples
                .iter()
                .all(|u| classify(spec, *u) == LoadState::Overloaded);
        Load {
            live,
            ready,
            samples,
            all_sampled,
            all_overloaded,
        }
    }
}

/// The container count load asks for, and which signal asks it (0 and `Steady` when
/// load asks nothing): the HPA's `ceil(usage / threshold)` when every ready container is
/// overloaded, requests in flight over the concurrency target, and requests waiting for
/// a pool with no ready container. The largest proposal wins.
fn propose(spec: &EffectiveSpec, pool: &Load<'_>, facts: &PoolFacts) -> (usize, Reason) {
    let s = &spec.scaling;
    let mut proposal = 0;
    let mut proposal_reason = Reason::Steady;
    if pool.all_overloaded {
        let cpu = ceil_div(
            pool.samples.iter().map(|u| u.cpu).sum(),
            s.cpu_overload_threshold,
        );
        let mem = ceil_div(
            pool.samples.iter().map(|u| u.rss as f64).sum(),
            s.memory_overload_threshold as f64,
        );
        // Overloaded means "more than one container's worth": propose at least one more.
        let at_least = pool.ready.len().saturating_add(1);
        (proposal, proposal_reason) = if mem > cpu {
            (mem.max(at_least), Reason::Memory)
        } else {
            (cpu.max(at_least), Reason::Cpu)
        };
    }
    if let Some(target) = s.target_concurrency {
        let in_flight: usize = pool
            .live
            .iter()
            .fold(facts.waiting_requests, |n, c| n.saturating_add(c.in_flight));
        if !pool.ready.is_empty() && in_flight > (target as usize).saturating_mul(pool.ready.len())
        {
            let conc = in_flight.div_ceil(target as usize);
            if conc > proposal {
                (proposal, proposal_reason) = (conc, Reason::Concurrency);
            }
        }
    }
    if pool.ready.is_empty() && facts.waiting_requests > 0 {
        // Without a concurrency target a container's capacity is unknown: start one and
        // let its CPU and memory ask for more. With one, start what the burst needs.
        let need = match s.target_concurrency {
            Some(t) => facts.waiting_requests.div_ceil(t.max(1) as usize).max(1),
            None => 1,
        };
        if need > proposal {
            (proposal, proposal_reason) = (need, Reason::Demand);
        }
    }
    (proposal, proposal_reason)
}

/// What the signals beyond CPU, memory and concurrency ask for: each proposes the HPA's
/// `ceil(load / target per container)` and the largest wins. These propose a count at
/// any load (not only when every container is overloaded), so they set a floor that a
/// scale-down keeps, where [`propose`] vetoes scale-down outright.
#[derive(Debug, PartialEq)]
struct Wanted {
    /// The largest proposal (0 when no signal is set or all read zero).
    replicas: usize,
    /// The signal that made it.
    reason: Reason,
    /// A ready container's custom metric is missing (its scrape failed): the pool may
    /// not scale down on what it cannot see (stricter than the HPA).
    missing: bool,
}

impl Wanted {
    fn of(spec: &EffectiveSpec, pool: &Load<'_>, facts: &PoolFacts) -> Wanted {
        let s = &spec.scaling;
        let mut w = Wanted {
            replicas: 0,
            reason: Reason::Steady,
            missing: false,
        };
        let offer = |w: &mut Wanted, n: usize, reason: Reason| {
            if n > w.replicas {
                (w.replicas, w.reason) = (n, reason);
            }
        };
        if let Some(target) = s.target_requests_per_second {
            let rate = facts.request_rate.unwrap_or(0.0);
            offer(&mut w, ceil_div(rate, target), Reason::RequestRate);
            // The forecast only ever raises the count: it wins only when it asks more.
            if let Some(ahead) = facts.forecast_rate {
                offer(&mut w, ceil_div(ahead, target), Reason::Predictive);
            }
        }
        for (i, m) in s.custom_metrics.iter().enumerate() {
            let mut sum = 0.0;
            for c in &pool.ready {
                match c.metrics.get(i).copied().flatten() {
                    Some(v) if v.is_finite() => sum += v.max(0.0),
                    _ => w.missing = true,
                }
            }
            offer(
                &mut w,
                ceil_div(sum, m.target_per_container),
                Reason::CustomMetric,
            );
        }
        w
    }
}

/// Ready containers idle for the cooldown that may go, longest idle first: never below
/// `keep` (min, or what another signal asks for), and only while the containers that stay would carry the load under the CPU and
/// memory thresholds and, with a concurrency target, the requests in flight within it
/// (no flapping).
fn idle_victims(
    spec: &EffectiveSpec,
    pool: &Load<'_>,
    replicas: usize,
    keep: usize,
    recent_peak_in_flight: usize,
    now: Instant,
) -> Vec<String> {
    let s = &spec.scaling;
    let mut candidates: Vec<&ContainerView> = pool
        .ready
        .iter()
        .copied()
        .filter(|c| {
            !c.pinned
                && c.in_flight == 0
                && c.usage
                    .is_some_and(|u| classify(spec, u) == LoadState::Idle)
                && c.idle_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= s.cooldown_duration)
        })
        .collect();
    candidates.sort_by(|a, b| {
        a.idle_since
            .cmp(&b.idle_since)
            .then_with(|| a.id.cmp(&b.id))
    });
    let total_cpu: f64 = pool.samples.iter().map(|u| u.cpu).sum();
    let total_rss: f64 = pool.samples.iter().map(|u| u.rss as f64).sum();
    let total_in_flight: usize = pool
        .live
        .iter()
        .fold(0, |n, c| n.saturating_add(c.in_flight));
    let mut victims = Vec::new();
    for c in candidates {
        // There may be more idle candidates than the (clamped) target: stop at `keep`,
        // and never count below zero.
        let gone = victims.len().saturating_add(1);
        match replicas.checked_sub(gone) {
            Some(remaining) if remaining >= keep => {}
            _ => break,
        }
        let Some(remaining_ready) = pool.ready.len().checked_sub(gone) else {
            break;
        };
        let fits = if remaining_ready == 0 {
            total_in_flight == 0 && total_cpu < s.cooldown_cpu_threshold
        } else {
            let n = remaining_ready as f64;
            // With a concurrency target, the requests in flight are load too: a function
            // that waits (on I/O, a sleep) is idle by CPU while it serves, and the count
            // of one instant dips between a client's requests. Without this,
            // the CPU rule removed containers that the concurrency rule at once asked
            // back (the soak's sawtooth: 70 of 75 scale-downs undone within 30 s).
            let requests_fit = s.target_concurrency.is_none_or(|t| {
                total_in_flight.max(recent_peak_in_flight)
                    <= (t as usize).saturating_mul(remaining_ready)
            });
            total_cpu / n < s.cpu_overload_threshold
                && total_rss / n < s.memory_overload_threshold as f64
                && requests_fit
        };
        if !fits {
            break;
        }
        victims.push(c.id.clone());
    }
    victims
}

/// Why a container is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RemoveReason {
    /// It exited, died, or never became ready.
    Failed,
    /// Its spec hash is old and a new container took its place.
    Outdated,
    /// The pool has more containers than it should.
    Surplus,
    /// The pool's manifest is gone.
    Pruned,
    /// An earlier removal failed (the container was already out of routing): tried again.
    Retry,
}

/// Concrete steps that bring a pool to its replica count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// How many new containers (of the current spec) to create now.
    pub create: usize,
    /// Containers to remove now, with why.
    pub remove: Vec<(String, RemoveReason)>,
}

impl Plan {
    /// True when nothing needs doing.
    pub fn is_empty(&self) -> bool {
        self.create == 0 && self.remove.is_empty()
    }
}

/// Puts failed and draining containers into the plan's removals; returns the live ones
/// Invok may remove, and how many registered (pinned) containers serve.
fn sort_out<'a>(containers: &'a [ContainerView], p: &mut Plan) -> (Vec<&'a ContainerView>, usize) {
    let mut live: Vec<&ContainerView> = Vec::new();
    let mut pinned: usize = 0;
    for c in containers {
        match c.phase {
            // Registered containers are the user's: counted while they serve, never removed.
            Phase::Starting | Phase::Ready if c.pinned => pinned = pinned.saturating_add(1),
            _ if c.pinned => {}
            Phase::Failed => p.remove.push((c.id.clone(), RemoveReason::Failed)),
            // A draining container was chosen for removal by an earlier pass: it waits
            // for its requests in flight, or its removal failed. Remove it again (its
            // first reason is kept), never lose it.
            Phase::Draining => p.remove.push((c.id.clone(), RemoveReason::Retry)),
            Phase::Starting | Phase::Ready => live.push(c),
        }
    }
    (live, pinned)
}

/// Where `c` stands among the scaler's idle victims (first goes first); after them all
/// when it is none.
fn victim_rank(victims: &[String], c: &ContainerView) -> usize {
    victims
        .iter()
        .position(|v| *v == c.id)
        .unwrap_or(usize::MAX)
}

/// Removes the first `n` of `outgoing` (old containers) as outdated.
fn retire(p: &mut Plan, outgoing: &[&ContainerView], n: usize) {
    for c in outgoing.iter().take(n) {
        p.remove.push((c.id.clone(), RemoveReason::Outdated));
    }
}

/// Converges containers to `replicas` of `spec_hash`.
///
/// Failed containers go; a spec change rolls out one container at a time, the new one
/// ready before an old one is removed (so ready capacity never drops while rolling);
/// surplus containers go in the order: `victims`, not yet ready, fewest requests in flight.
pub fn plan(
    spec_hash: &str,
    containers: &[ContainerView],
    replicas: usize,
    victims: &[String],
) -> Plan {
    let mut p = Plan::default();
    let (live, pinned) = sort_out(containers, &mut p);
    let replicas = replicas.saturating_sub(pinned);
    let (new, old): (Vec<&ContainerView>, Vec<&ContainerView>) =
        live.into_iter().partition(|c| c.spec_hash == spec_hash);
    // Old containers that are not ready serve nobody: they go at once.
    let (old_ready, old_starting): (Vec<&ContainerView>, Vec<&ContainerView>) =
        old.into_iter().partition(|c| c.phase == Phase::Ready);
    retire(&mut p, &old_starting, old_starting.len());
    let new_ready = new.iter().filter(|c| c.phase == Phase::Ready).count();
    let new_starting = new.len().saturating_sub(new_ready);

    // Old ready containers go victims first, then least busy, then oldest.
    let mut outgoing = old_ready.clone();
    outgoing.sort_by_key(|c| (victim_rank(victims, c), c.in_flight, c.created));

    if let Some(extra) = new.len().checked_sub(replicas) {
        // Surplus goes victims first, then not-ready, then least busy, then newest.
        let mut surplus = new.clone();
        surplus.sort_by_cached_key(|c| {
            let newest = std::cmp::Reverse(c.created);
            (
                victim_rank(victims, c),
                c.phase == Phase::Ready,
                c.in_flight,
                newest,
            )
        });
        surplus.truncate(extra);
        for c in &surplus {
            p.remove.push((c.id.clone(), RemoveReason::Surplus));
        }
        // Old containers go only as new ones are ready to take their place.
        let ready_kept =
            new_ready.saturating_sub(surplus.iter().filter(|c| c.phase == Phase::Ready).count());
        let excess = ready_kept
            .saturating_add(old_ready.len())
            .saturating_sub(replicas);
        retire(&mut p, &outgoing, excess);
        return p;
    }

    if old_ready.is_empty() {
        p.create = replicas.saturating_sub(new.len());
        debug_assert!(
            p.create <= replicas,
            "plan: create {} > replicas {replicas}",
            p.create
        );
        return p;
    }

    // Rolling update: whatever old containers do not cover is created at once; beyond
    // that, one new container at a time (surge of one), and an old one goes only when
    // ready capacity stays at `replicas` without it.
    let covered = new.len().saturating_add(old_ready.len());
    p.create = replicas.saturating_sub(covered);
    if new_starting == 0 && p.create == 0 {
        p.create = 1;
    }
    let excess = new_ready
        .saturating_add(old_ready.len())
        .saturating_sub(replicas);
    retire(&mut p, &outgoing, excess);
    // A rollout surges by one container at most.
    debug_assert!(
        p.create <= replicas.max(1),
        "plan: create {} > replicas {replicas}",
        p.create
    );
    p
}

/// The replica count to start from for a pool whose containers already exist (after an
/// operator restart): what is live, within bounds.
pub fn adopted_replicas(spec: &EffectiveSpec, containers: &[ContainerView]) -> usize {
    let live = containers
        .iter()
        .filter(|c| matches!(c.phase, Phase::Starting | Phase::Ready))
        .count();
    live.clamp(spec.scaling.min, spec.scaling.max)
}

/// How long until [`decide`] might change its mind about idle containers, so the
/// controller can requeue exactly then instead of polling.
pub fn next_idle_deadline(
    spec: &EffectiveSpec,
    containers: &[ContainerView],
    now: Instant,
) -> Option<Duration> {
    containers
        .iter()
        .filter_map(|c| c.idle_since)
        .filter_map(|t| t.checked_add(spec.scaling.cooldown_duration))
        .map(|deadline| deadline.saturating_duration_since(now))
        .filter(|d| !d.is_zero())
        .min()
}

// Tests build scenarios with plain arithmetic on small numbers.
#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests;

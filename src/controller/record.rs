//! What a reconcile says, all in one place: status (conditions, events, the last scale),
//! metrics and the seed's log lines are written here, and only here, from a pass's
//! [`Decision`] ([`decided`], before it acts, as the seed logs "Scaling up function"
//! before the containers start), from each thing the executor did as it happened
//! ([`happened`]), and from its [`Outcome`] ([`acted`], which also chooses the requeue
//! [`Action`]).

use std::any::Any;
use std::time::Duration;

use tokio::time::Instant;

use super::act::DRAIN_RECHECK;
use super::backoff::Backoff;
use super::context::Shared;
use super::pass::{Decision, Happened, Memory, Outcome, Snapshot};
use super::pools::PoolState;
use super::status::{unix_now, PoolStatus, ScaleEvent};
use crate::api::EffectiveSpec;
use crate::runtime::RuntimeError;
use crate::scaler::{self, ContainerView, Phase, Reason, RemoveReason};
use crate::scheduler::Action;

/// A pool that has run converged this long since its last container failure leaves
/// CrashLoopBackOff (Kubernetes resets a container's backoff after 10 minutes of running).
const CLEAN_RUN_RESETS_FAILURES: Duration = Duration::from_secs(600);
/// How long a quiet pool waits for its next pass when nothing triggers it: a resync
/// (like kube-runtime's), not the way it learns of load.
const QUIET_RECHECK: Duration = Duration::from_secs(30);
/// A pass never requeues sooner than this.
const MIN_REQUEUE: Duration = Duration::from_millis(50);

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// A Docker call failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The reconcile panicked: a bug, caught so the pool backs off instead of freezing.
    #[error("internal error: reconcile panicked: {0} (a bug; please report it)")]
    Panic(String),
}

impl Failure {
    /// A caught panic, logged and counted.
    pub fn from_panic<R>(ctx: &Shared<R>, pool: &str, panic: &(dyn Any + Send)) -> Failure {
        let msg = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("(no message)")
            .to_string();
        tracing::error!(pool, "reconcile panicked: {msg}");
        ctx.metrics.record_reconcile_panic(pool);
        Failure::Panic(msg)
    }

    /// The `Degraded` reason it shows as.
    fn reason(&self) -> &'static str {
        match self {
            Failure::Runtime(RuntimeError::Unavailable(_)) => "DockerUnavailable",
            Failure::Runtime(RuntimeError::ImageUnavailable { .. }) => "ImagePullFailed",
            Failure::Runtime(_) => "ReconcileError",
            Failure::Panic(_) => "ReconcilePanic",
        }
    }
}

/// Ends a reconcile: a success clears the error backoff, a failure backs off (per pool,
/// with jitter) and shows at once as `Degraded`.
pub(crate) fn finished<R>(ctx: &Shared<R>, pool: &str, result: Result<Action, Failure>) -> Action {
    ctx.pool_state(pool, |s| s.status.reconciles += 1);
    let e = match result {
        Ok(action) => {
            ctx.pool_state(pool, clear_errors);
            return action;
        }
        Err(e) => e,
    };
    if matches!(&e, Failure::Runtime(r) if r.is_unavailable()) {
        ctx.health.docker(Err(e.to_string()));
    }
    // A failed pass polls (with backoff): it is not quiet, and a request must not cut
    // its backoff short.
    not_quiet(ctx, pool);
    let (n, delay) = ctx.pool_state(pool, |s| {
        s.errors = s.errors.saturating_add(1);
        s.status.consecutive_errors = s.errors;
        s.status.last_error = Some(e.to_string());
        s.status.event("Warning", e.reason(), e.to_string());
        s.status.set_degraded(e.reason(), e.to_string());
        let key = ctx.backoff_key(pool);
        (s.errors, Backoff::RECONCILE_ERRORS.delay(s.errors, &key))
    });
    tracing::warn!(
        pool,
        attempt = n,
        "reconcile failed, retrying in {delay:?}: {e}"
    );
    Action::requeue(delay)
}

fn clear_errors(s: &mut PoolState) {
    s.errors = 0;
    s.status.consecutive_errors = 0;
    s.status.last_error = None;
}

/// The pool's pass did not find it quiet: it polls, and its wakes are disarmed.
fn not_quiet<R>(ctx: &Shared<R>, pool: &str) {
    ctx.pool_state(pool, |s| {
        s.wakes_armed = false;
        s.status.quiet = false;
    });
    ctx.store.disarm_wakes(pool);
}

/// A pool no valid manifest declares and that may not be pruned: say why.
pub(crate) fn undeclared<R>(ctx: &Shared<R>, pool: &str, manifest_error: Option<String>) {
    not_quiet(ctx, pool);
    if let Some(err) = manifest_error {
        ctx.pool_state(pool, |s| s.status.manifest_error = Some(err));
    }
}

/// Records a pass's decision before it acts: the pool's new memory (readers see the new
/// target while containers start) and what the decision says (pool announced, invalid
/// spec, scale up or down, at max, crash loop).
pub(crate) fn decided<R>(ctx: &Shared<R>, s: &Snapshot, d: &Decision) {
    commit(ctx, &s.pool, &d.memory);
    // Until this pass concludes (it may end early, on an error or a shutdown).
    ctx.pool_state(&s.pool, |state| {
        state.status.quiet = false;
        state.status.signals = d.signals.clone();
    });
    ctx.pool_state(&s.pool, |state| record_decision(ctx, s, d, state));
}

/// Keeps a pass's decided memory.
fn commit<R>(ctx: &Shared<R>, pool: &str, m: &Memory) {
    ctx.pool_state(pool, |s| {
        s.replicas = m.replicas;
        s.last_scale_up = m.last_scale_up;
        s.in_flight_peaks = m.in_flight_peaks.clone();
        s.failures = m.failures;
        s.last_failure = m.last_failure;
        s.create_not_before = m.create_not_before;
        s.announced = m.announced;
        s.status.spec_hash = m.spec_hash.clone();
        s.status.manifest_error = m.manifest_error.clone();
        s.status.desired_reason = m.desired_reason;
        s.status.desired_replicas = m.replicas.unwrap_or(0);
        s.status.recent_failures = m.failures;
    });
}

/// Records what a pass did after it acted; the first Docker error of the pass is its
/// result, and a pass that succeeded says when to look again.
pub(crate) fn acted<R>(
    ctx: &Shared<R>,
    s: &Snapshot,
    out: Outcome,
) -> Result<Action, RuntimeError> {
    if let Some(wait) = out.held_back {
        let message = format!("waiting {wait:?} before the next start");
        ctx.pool_state(&s.pool, |state| {
            state.status.event("Normal", "BackOff", message)
        });
    }
    if out.stopped {
        // Shutdown began: containers are left as they are.
        return Ok(Action::await_change());
    }
    if let Some(e) = out.error {
        return Err(e);
    }
    let next = conclude(ctx, &s.pool, &s.spec, s.now);
    if out.draining {
        return Ok(next.sooner(DRAIN_RECHECK));
    }
    Ok(next)
}

fn record_decision<R>(ctx: &Shared<R>, s: &Snapshot, d: &Decision, state: &mut PoolState) {
    let (pool, status) = (&s.pool, &mut state.status);
    if d.announce {
        tracing::info!("Created new container pool for function: {pool}");
        status.event(
            "Normal",
            "PoolCreated",
            format!("pool declared in {}", s.source),
        );
    }
    if let Some(err) = s
        .manifest_error
        .as_ref()
        .filter(|_| d.manifest_error_changed)
    {
        tracing::warn!("pool {pool}: manifest invalid, keeping the last valid spec running: {err}");
        status.event("Warning", "InvalidSpec", err.clone());
    }
    if d.load_scale_up {
        tracing::info!("Scaling up function: {pool}");
    }
    record_scale(ctx, pool, d, status);
    if d.newly_at_max {
        let to = d.scale.replicas;
        tracing::warn!(
            "Max container limit reached for function {pool}: all {to} containers overloaded"
        );
        status.event(
            "Warning",
            "AtMaxCapacity",
            "every container is overloaded at maxContainers",
        );
    }
    if let Some(delay) = d.crash_delay.filter(|d| !d.is_zero()) {
        let n = d.memory.failures;
        tracing::warn!("pool {pool}: containers keep failing ({n} so far); CrashLoopBackOff, next start in {delay:?}");
        status.event(
            "Warning",
            "CrashLoopBackOff",
            format!("{n} failures; next start in {delay:?}"),
        );
    }
}

/// A change of the replica target: the last scale event, an event and a metric.
fn record_scale<R>(ctx: &Shared<R>, pool: &str, d: &Decision, status: &mut PoolStatus) {
    let (from, to, reason) = (d.before, d.scale.replicas, d.scale.reason);
    if from == to {
        return;
    }
    let direction = if to > from { "up" } else { "down" };
    ctx.metrics.record_scale(pool, direction, reason);
    status.last_scale = Some(ScaleEvent {
        time: unix_now(),
        direction: direction.into(),
        reason,
        from,
        to,
    });
    let kind = if direction == "up" {
        "ScaledUp"
    } else {
        "ScaledDown"
    };
    status.event(
        "Normal",
        kind,
        format!("replicas {from} -> {to} ({reason:?})"),
    );
}

/// Records one removal or create, as the executor reports it.
pub(crate) fn happened<R>(ctx: &Shared<R>, s: &Snapshot, d: &Decision, h: Happened) {
    let pool = &s.pool;
    let (reason, message) = match &h {
        Happened::Removed { name, reason } => {
            log_removal(pool, name, *reason, d.scale.reason);
            (format!("{reason:?}"), format!("removed container {name}"))
        }
        Happened::Created { name } if d.load_scale_up => {
            tracing::info!("Successfully scaled up function {pool} with container {name}");
            ("Created".to_string(), format!("created container {name}"))
        }
        Happened::Created { name } => {
            tracing::info!("Created container {name} for function {pool}");
            ("Created".to_string(), format!("created container {name}"))
        }
    };
    ctx.pool_state(pool, |state| state.status.event("Normal", reason, message));
}

/// A pool no manifest declares any more is about to be pruned.
pub(crate) fn pruning<R>(ctx: &Shared<R>, pool: &str) {
    not_quiet(ctx, pool);
    let containers = ctx.store.pool(pool);
    let n = containers.len();
    // Said once: a later pass that finds them all draining says nothing again.
    if containers.iter().any(|o| o.draining.is_none()) {
        tracing::info!("Pruning pool {pool}: no manifest declares it; removing {n} container(s)");
    }
}

/// One container of a pruned pool removed.
pub(crate) fn pruned(pool: &str, h: Happened) {
    if let Happened::Removed { name, .. } = h {
        tracing::info!("Removed container {name} of deleted pool {pool}");
    }
}

fn log_removal(pool: &str, name: &str, why: RemoveReason, scaled: Reason) {
    match why {
        RemoveReason::Surplus if scaled == Reason::Idle => {
            tracing::info!("Scaled down container {name} for function {pool}")
        }
        RemoveReason::Surplus => {
            tracing::info!("Removed surplus container {name} of function {pool}")
        }
        RemoveReason::Outdated => {
            tracing::info!("Replaced outdated container {name} of function {pool}")
        }
        RemoveReason::Failed => {
            tracing::warn!("Removed failed container {name} of function {pool}")
        }
        RemoveReason::Retry => tracing::info!(
            "Removed container {name} of function {pool} (an earlier removal had failed)"
        ),
        RemoveReason::Pruned => {}
    }
}

/// After a pass that succeeded: the conditions from the containers as they are now,
/// the crash-loop reset after a clean run, and when to look again.
fn conclude<R>(ctx: &Shared<R>, pool: &str, spec: &EffectiveSpec, now: Instant) -> Action {
    let views = ctx.store.views(pool);
    let untouched = ctx.store.wakes_armed(pool);
    let (create_not_before, cooled_at, wakes) = ctx.pool_state(pool, |s| {
        // This pass succeeded: an earlier pass's error is history, not a condition.
        clear_errors(s);
        set_conditions(s, &views, spec, now);
        let wakes = Wakes::after(s.wakes_armed, untouched, is_quiet(s, &views, spec, now));
        s.wakes_armed = wakes != Wakes::Disarm;
        s.status.quiet = wakes == Wakes::Sleep;
        let cooled_at = s
            .last_scale_up
            .and_then(|t| t.checked_add(spec.scaling.cooldown_duration));
        (s.create_not_before, cooled_at, wakes)
    });
    let mut after = spec.scaling.poll_interval;
    match wakes {
        Wakes::Disarm => ctx.store.disarm_wakes(pool),
        Wakes::Arm => ctx.store.arm_wakes(pool),
        Wakes::Sleep => after = QUIET_RECHECK,
    }
    if let Some(d) = scaler::next_idle_deadline(spec, &views, now) {
        after = after.min(d);
    }
    for t in [create_not_before, cooled_at].into_iter().flatten() {
        if t > now {
            after = after.min(t - now);
        }
    }
    Action::requeue(after.max(MIN_REQUEUE))
}

/// What a pass does with its pool's wakes, and so whether it polls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wakes {
    /// Not quiet, or a request came since the wakes were armed: poll, and arm nothing
    /// (a pool serving now and then must not take a pass per request).
    Disarm,
    /// Quiet: arm the wakes and poll once more, to see a whole poll interval pass
    /// without a request.
    Arm,
    /// Quiet for a poll interval with the wakes armed and untouched: stop polling.
    /// Only a deadline, a trigger (a load-state change, a request, a Docker event, a
    /// manifest) or [`QUIET_RECHECK`] brings the next pass.
    Sleep,
}

impl Wakes {
    fn after(armed: bool, untouched: bool, quiet: bool) -> Wakes {
        match (quiet, armed, untouched) {
            (false, _, _) | (true, true, false) => Wakes::Disarm,
            (true, false, _) => Wakes::Arm,
            (true, true, true) => Wakes::Sleep,
        }
    }
}

/// Whether nothing about the pool can change without a trigger: converged on its spec,
/// every container ready, sampled, idle and serving nothing, no request waiting or
/// recently in flight, no failure being counted. Time alone changes only its idle and
/// cooldown deadlines, which [`conclude`] requeues for.
fn is_quiet(s: &PoolState, views: &[ContainerView], spec: &EffectiveSpec, now: Instant) -> bool {
    let target = s.replicas.unwrap_or(spec.scaling.min);
    let signals = &s.status.signals;
    s.failures == 0
        // A rate or a forecast changes with time, not with a trigger.
        && signals.request_rate.is_none_or(|r| r <= 0.0)
        && signals.forecast.is_none_or(|f| f.rate <= 0.0)
        && s.create_not_before.is_none_or(|t| t <= now)
        && s.waiting == 0
        && s.in_flight_peaks.iter().all(|(_, n)| *n == 0)
        && views.len() == target
        && views.iter().all(|v| {
            v.phase == Phase::Ready
                && v.spec_hash == spec.spec_hash
                && v.in_flight == 0
                && v.usage
                    .is_some_and(|u| scaler::classify(spec, u) == scaler::LoadState::Idle)
        })
}

fn set_conditions(s: &mut PoolState, views: &[ContainerView], spec: &EffectiveSpec, now: Instant) {
    let ready = views.iter().filter(|v| v.phase == Phase::Ready).count();
    let starting = views.iter().filter(|v| v.phase == Phase::Starting).count();
    let outdated = views
        .iter()
        .filter(|v| {
            matches!(v.phase, Phase::Ready | Phase::Starting) && v.spec_hash != spec.spec_hash
        })
        .count();
    let target = s.replicas.unwrap_or(spec.scaling.min);
    let converged = ready == target && starting == 0 && outdated == 0;
    let clean_for = s.last_failure.map_or(CLEAN_RUN_RESETS_FAILURES, |t| {
        now.saturating_duration_since(t)
    });
    if converged && s.failures > 0 && clean_for >= CLEAN_RUN_RESETS_FAILURES {
        s.last_failure = None;
        s.failures = 0;
        s.create_not_before = None;
        s.status.recent_failures = 0;
    }
    let ready_cond = (
        ready >= target.min(spec.scaling.min.max(1)) || target == 0,
        if ready >= target {
            "AllReady"
        } else {
            "NotEnoughReady"
        },
        format!("{ready}/{target} containers ready"),
    );
    let progressing = (
        !converged,
        match (outdated, starting) {
            (1.., _) => "RollingUpdate",
            (0, 1..) => "ContainersStarting",
            (0, 0) => "Converged",
        },
        format!("{starting} starting, {outdated} outdated"),
    );
    let degraded = degraded(s, now);
    s.status.set_conditions(ready_cond, progressing, degraded);
}

/// The `Degraded` condition: the worst of a reconcile error, a crash loop, an invalid
/// manifest and every container overloaded at max.
fn degraded(s: &PoolState, now: Instant) -> (bool, &'static str, String) {
    if let Some(err) = &s.status.last_error {
        (true, "ReconcileError", err.clone())
    } else if s.create_not_before.is_some_and(|t| t > now) {
        let message = format!("{} container failures; backing off", s.failures);
        (true, "CrashLoopBackOff", message)
    } else if let Some(err) = &s.status.manifest_error {
        (true, "InvalidSpec", err.clone())
    } else if s.status.desired_reason == Some(Reason::AboveMax) {
        let message = "every container is overloaded at maxContainers".to_string();
        (true, "AtMaxCapacity", message)
    } else {
        (false, "AsExpected", String::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{FunctionPool, FunctionPoolSpec, ObjectMeta, Scaling, ScalingDefaults};
    use crate::scaler::Usage;

    fn spec() -> EffectiveSpec {
        FunctionPool {
            api_version: "invok.dev/v1alpha1".into(),
            kind: "FunctionPool".into(),
            metadata: ObjectMeta {
                name: "web".into(),
                ..Default::default()
            },
            spec: FunctionPoolSpec {
                image: "img".into(),
                scaling: Some(Scaling {
                    min_containers: Some(2),
                    max_containers: Some(4),
                    ..Default::default()
                }),
                ..Default::default()
            },
        }
        .validate(&ScalingDefaults::default())
        .unwrap()
    }

    fn idle(spec: &EffectiveSpec, id: &str) -> ContainerView {
        ContainerView {
            id: id.into(),
            spec_hash: spec.spec_hash.clone(),
            phase: Phase::Ready,
            created: Instant::now(),
            usage: Some(Usage { cpu: 0.0, rss: 1 }),
            idle_since: Some(Instant::now()),
            in_flight: 0,
            pinned: false,
            metrics: Vec::new(),
        }
    }

    #[test]
    fn a_pool_stops_polling_only_after_a_whole_quiet_interval_without_a_request() {
        use Wakes::{Arm, Disarm, Sleep};
        // (armed last pass, untouched since, quiet now) -> what this pass does.
        for (armed, untouched, quiet, want) in [
            (false, false, false, Disarm),
            (false, true, false, Disarm),
            (true, true, false, Disarm),
            (true, false, false, Disarm),
            (false, false, true, Arm),
            (false, true, true, Arm),
            // A request came since the wakes were armed: poll once before arming again,
            // so a pool served now and then takes at most two passes per poll interval.
            (true, false, true, Disarm),
            (true, true, true, Sleep),
        ] {
            assert_eq!(
                Wakes::after(armed, untouched, quiet),
                want,
                "{armed} {untouched} {quiet}"
            );
        }
    }

    #[test]
    fn only_a_converged_idle_pool_serving_nothing_is_quiet() {
        let spec = spec();
        let now = Instant::now();
        let calm = || PoolState {
            replicas: Some(2),
            ..Default::default()
        };
        let pool = [idle(&spec, "a"), idle(&spec, "b")];
        assert!(is_quiet(&calm(), &pool, &spec, now));

        let mut v = pool.clone();
        v[1].in_flight = 1;
        assert!(!is_quiet(&calm(), &v, &spec, now), "serving a request");
        v = pool.clone();
        v[1].usage = Some(Usage { cpu: 0.5, rss: 1 });
        assert!(!is_quiet(&calm(), &v, &spec, now), "a container not idle");
        v[1].usage = None;
        assert!(
            !is_quiet(&calm(), &v, &spec, now),
            "a container not sampled yet"
        );
        v = pool.clone();
        v[1].phase = Phase::Starting;
        assert!(!is_quiet(&calm(), &v, &spec, now), "a container starting");
        v = pool.clone();
        v[1].spec_hash = "old".into();
        assert!(!is_quiet(&calm(), &v, &spec, now), "rolling out a new spec");
        assert!(
            !is_quiet(&calm(), &pool[..1], &spec, now),
            "below the target"
        );

        let mut s = calm();
        s.replicas = Some(3);
        assert!(!is_quiet(&s, &pool, &spec, now), "the target differs");
        s = calm();
        s.failures = 1;
        assert!(!is_quiet(&s, &pool, &spec, now), "counting crashes");
        s = calm();
        s.waiting = 1;
        assert!(!is_quiet(&s, &pool, &spec, now), "a request waiting");
        s = calm();
        s.in_flight_peaks.push_back((now, 2));
        assert!(
            !is_quiet(&s, &pool, &spec, now),
            "requests in flight recently"
        );
        s = calm();
        s.create_not_before = Some(now + Duration::from_secs(5));
        assert!(!is_quiet(&s, &pool, &spec, now), "backing off");
    }
}

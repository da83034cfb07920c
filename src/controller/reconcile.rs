//! `reconcile(pool) -> Action`, in four visible steps:
//!
//! 1. [`observe`]: a [`Snapshot`] of the pool's desired and observed state.
//! 2. [`decide`]: the scaler's pure `decide` and `plan`, and the pool's new memory: a
//!    pure function of the snapshot.
//! 3. [`act::execute`]: a thin executor of the plan through the [`Runtime`].
//! 4. [`record`]: status, events, metrics and log lines, all written there: for the
//!    decision before acting, for each removal and create as it happens, and for the
//!    outcome, with when to look again.
//!
//! Errors and panics (bugs) never freeze a pool: they become a backoff requeue, a
//! `Degraded` condition and a metric.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::time::Instant;

use super::act;
use super::backoff::Backoff;
use super::context::Shared;
use super::pass::{note_in_flight, read_rates, Decision, Memory, Snapshot};
use super::record::{self, Failure};
use super::status::{MetricStatus, SignalStatus};
use crate::runtime::{Runtime, RuntimeError};
use crate::scaler::{self, Phase, Reason, RemoveReason};
use crate::scheduler::Action;

/// A container that was ready at least this long before it died did not crash: it is
/// replaced at once and does not count towards CrashLoopBackOff.
pub const STABLE_RUN: Duration = Duration::from_secs(10);

/// How soon a pool looks again while Docker has not been listed once.
const UNSYNCED_RETRY: Duration = Duration::from_millis(200);

/// Reconciles one pool; never fails: errors (and panics, which are bugs) become a
/// backoff requeue, a `Degraded` condition and a metric, never a frozen pool.
pub(crate) async fn reconcile<R: Runtime>(ctx: &Arc<Shared<R>>, pool: &str) -> Action {
    let started = Instant::now();
    let result = match AssertUnwindSafe(reconcile_pool(ctx, pool))
        .catch_unwind()
        .await
    {
        Ok(r) => r.map_err(Failure::from),
        Err(panic) => Err(Failure::from_panic(ctx, pool, panic.as_ref())),
    };
    ctx.metrics
        .record_reconcile(pool, result.is_ok(), started.elapsed().as_secs_f64());
    record::finished(ctx, pool, result)
}

/// What [`observe`] found.
enum Observation {
    /// Docker has not been listed once: an empty pool may just be unknown.
    NotSynced,
    /// No valid manifest declares the pool.
    Undeclared {
        /// Its containers may be removed.
        may_prune: bool,
        /// Why its manifest is invalid, if it has one.
        manifest_error: Option<String>,
    },
    /// The pool is declared.
    Declared(Box<Snapshot>),
}

async fn reconcile_pool<R: Runtime>(
    ctx: &Arc<Shared<R>>,
    pool: &str,
) -> Result<Action, RuntimeError> {
    let _running = Running::enter(ctx, pool);
    match observe(ctx, pool) {
        // Creating containers before the first relist would duplicate the ones a
        // restarted operator is about to adopt; the first relist triggers every pool
        // it finds, and this one looks again shortly.
        Observation::NotSynced => Ok(Action::requeue(UNSYNCED_RETRY)),
        // Shutdown began: nothing more is removed (and nothing said of it).
        Observation::Undeclared {
            may_prune: true, ..
        } if ctx.is_stopping() => Ok(Action::await_change()),
        Observation::Undeclared {
            may_prune: true, ..
        } => {
            record::pruning(ctx, pool);
            if act::prune(ctx, pool, &|h| record::pruned(pool, h)).await? {
                Ok(Action::await_change())
            } else {
                Ok(Action::requeue(act::DRAIN_RECHECK))
            }
        }
        Observation::Undeclared { manifest_error, .. } => {
            record::undeclared(ctx, pool, manifest_error);
            Ok(Action::await_change())
        }
        Observation::Declared(snapshot) => {
            act::probe_starting(ctx, &snapshot);
            let decision = decide(&snapshot);
            record::decided(ctx, &snapshot, &decision);
            let report = |h| record::happened(ctx, &snapshot, &decision, h);
            let outcome = act::execute(ctx, &snapshot, &decision, &report).await;
            record::acted(ctx, &snapshot, outcome)
        }
    }
}

/// Step 1: the pool's desired and observed state, read once.
fn observe<R>(ctx: &Shared<R>, pool: &str) -> Observation {
    if !ctx.store.is_synced() {
        return Observation::NotSynced;
    }
    let (desired, may_prune, manifest_error) = {
        let d = ctx.desired();
        (
            d.pools.get(pool).cloned(),
            d.may_prune(pool),
            d.invalid.get(pool).cloned(),
        )
    };
    let Some(desired) = desired else {
        return Observation::Undeclared {
            may_prune,
            manifest_error,
        };
    };
    let observed = ctx.store.pool(pool);
    let now = Instant::now();
    let arrived = ctx.arrivals.total(pool);
    let (memory, waiting, rates) = ctx.pool_state(pool, |s| {
        s.timeout = Some(desired.spec.timeout);
        let memory = Memory {
            replicas: s.replicas,
            last_scale_up: s.last_scale_up,
            failures: s.failures,
            last_failure: s.last_failure,
            create_not_before: s.create_not_before,
            announced: s.announced,
            spec_hash: s.status.spec_hash.clone(),
            manifest_error: s.status.manifest_error.clone(),
            desired_reason: s.status.desired_reason,
            in_flight_peaks: s.in_flight_peaks.clone(),
        };
        let rates = read_rates(
            &mut s.rates,
            &mut s.forecasts,
            &desired.spec.scaling,
            now,
            arrived,
        );
        (memory, s.waiting, rates)
    });
    Observation::Declared(Box::new(Snapshot {
        pool: pool.to_string(),
        backoff_key: ctx.backoff_key(pool),
        views: views_of(&observed, &desired.spec),
        observed,
        spec: desired.spec,
        source: desired.source,
        manifest_error,
        memory,
        waiting,
        rates,
        now,
    }))
}

/// The scaler's view of each container; custom-metric readings taken for another metric
/// list than the spec's (the manifest changed since the last scrape) read as missing.
fn views_of(
    observed: &[crate::store::Observed],
    spec: &crate::api::EffectiveSpec,
) -> Vec<scaler::ContainerView> {
    let key = (!spec.scaling.custom_metrics.is_empty()).then(|| crate::scraper::metrics_key(spec));
    observed
        .iter()
        .map(|o| {
            let mut v = o.view();
            if key.is_some_and(|k| k != o.metrics_key) {
                v.metrics.clear();
            }
            v
        })
        .collect()
}

/// Step 2, pure: the scaler's decision and plan for the snapshot, the crashes among the
/// plan's removals, and the memory the pool keeps for its next pass.
fn decide(s: &Snapshot) -> Decision {
    let (spec, now) = (&s.spec, s.now);
    let mut memory = s.memory.clone();
    if memory.spec_hash.as_deref() != Some(spec.spec_hash.as_str()) {
        // A new spec (a fixed image, say) starts with a clean slate, as a new Pod does.
        memory.failures = 0;
        memory.last_failure = None;
        memory.create_not_before = None;
        memory.spec_hash = Some(spec.spec_hash.clone());
    }
    // Counted as the scaler counts load: on containers starting or ready, not draining.
    let in_flight = s
        .views
        .iter()
        .filter(|v| matches!(v.phase, Phase::Starting | Phase::Ready))
        .fold(s.waiting, |n, v| n.saturating_add(v.in_flight));
    let mut facts = s.facts();
    facts.recent_peak_in_flight = note_in_flight(
        &mut memory.in_flight_peaks,
        now,
        in_flight,
        spec.scaling.cooldown_duration,
    );
    let scale = scaler::decide(spec, &s.views, &facts, now);
    let load_scale_up = scale.replicas > facts.replicas && scale.reason.is_load();
    let plan = scaler::plan(&spec.spec_hash, &s.views, scale.replicas, &scale.victims);
    // Only crashes count towards CrashLoopBackOff: containers that never became ready or
    // died soon after. One that served for a while and was killed is replaced at once.
    let crashes = plan
        .remove
        .iter()
        .filter(|(id, r)| {
            *r == RemoveReason::Failed && s.container(id).is_none_or(|o| o.is_crash(STABLE_RUN))
        })
        .count();
    let crash_delay = count_crashes(&mut memory, crashes, now, &s.backoff_key);
    if load_scale_up {
        memory.last_scale_up = Some(now);
    }
    memory.replicas = Some(scale.replicas);
    let newly_at_max = scale.at_max_overloaded && memory.desired_reason != Some(Reason::AboveMax);
    memory.desired_reason = Some(if scale.at_max_overloaded {
        Reason::AboveMax
    } else {
        scale.reason
    });
    let announce = !memory.announced;
    memory.announced = true;
    let manifest_error_changed = memory.manifest_error != s.manifest_error;
    memory.manifest_error = s.manifest_error.clone();
    Decision {
        signals: signals(s),
        before: facts.replicas,
        scale,
        plan,
        load_scale_up,
        newly_at_max,
        crash_delay,
        announce,
        manifest_error_changed,
        memory,
    }
}

/// What the pass read of the pool's signals beyond CPU and memory, for its status.
fn signals(s: &Snapshot) -> SignalStatus {
    let ready: Vec<&scaler::ContainerView> =
        s.views.iter().filter(|v| v.phase == Phase::Ready).collect();
    let custom_metrics = s
        .spec
        .scaling
        .custom_metrics
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let values = ready.iter().map(|v| v.metrics.get(i).copied().flatten());
            let (sum, missing) = values.fold((0.0, 0), |(sum, missing), v| match v {
                Some(v) if v.is_finite() => (sum + v.max(0.0), missing),
                _ => (sum, missing + 1),
            });
            MetricStatus {
                name: m.name.clone(),
                sum,
                missing,
            }
        })
        .collect();
    SignalStatus {
        request_rate: s.rates.rate,
        forecast: s.rates.forecast,
        forecast_for_now: s.rates.forecast_for_now,
        custom_metrics,
    }
}

/// Counts `crashes` into the pool's memory and sets when it may start containers again
/// (CrashLoopBackOff); the delay set, when there were crashes. The first crash restarts
/// at once, as Kubernetes does; then the delay grows from [`Backoff::CRASHES`].
fn count_crashes(memory: &mut Memory, crashes: usize, now: Instant, key: &str) -> Option<Duration> {
    if crashes == 0 {
        return None;
    }
    memory.failures = memory
        .failures
        .saturating_add(u32::try_from(crashes).unwrap_or(u32::MAX));
    memory.last_failure = Some(now);
    let delay = match memory.failures {
        0 | 1 => Duration::ZERO,
        n => Backoff::CRASHES.delay(n - 1, key),
    };
    memory.create_not_before = Some(now + delay);
    Some(delay)
}

/// Marks a pool's reconcile as running for as long as it lives, and states the
/// scheduler's promise as an assertion: never two reconciles of one pool at once.
struct Running<'a, R> {
    ctx: &'a Shared<R>,
    pool: &'a str,
}

impl<'a, R> Running<'a, R> {
    fn enter(ctx: &'a Shared<R>, pool: &'a str) -> Self {
        let was = ctx.pool_state(pool, |s| std::mem::replace(&mut s.reconciling, true));
        assert!(!was, "two reconciles of pool {pool} ran at once");
        Running { ctx, pool }
    }
}

impl<R> Drop for Running<'_, R> {
    fn drop(&mut self) {
        // A pool pruned during this reconcile has no state left: none is made here.
        self.ctx
            .pools
            .existing(self.pool, |s| s.reconciling = false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_crash_restarts_at_once_then_the_backoff_grows_to_its_cap() {
        let now = Instant::now();
        let mut m = Memory::default();
        assert_eq!(count_crashes(&mut m, 0, now, "i/web"), None);
        assert_eq!(m, Memory::default(), "no crash, no change");
        assert_eq!(count_crashes(&mut m, 1, now, "i/web"), Some(Duration::ZERO));
        assert_eq!((m.failures, m.create_not_before), (1, Some(now)));
        let mut bound = Backoff::CRASHES.base;
        for failures in 2..40u32 {
            let d = count_crashes(&mut m, 1, now, "i/web").unwrap();
            assert_eq!(m.failures, failures);
            assert_eq!(m.create_not_before, Some(now + d));
            assert!(
                d >= bound / 2 && d < bound,
                "#{failures}: {d:?} not in [{:?}, {bound:?})",
                bound / 2
            );
            bound = bound.saturating_mul(2).min(Backoff::CRASHES.cap);
        }
        // Several crashes seen in one pass count as several.
        let mut m = Memory::default();
        count_crashes(&mut m, 3, now, "i/web");
        assert_eq!(m.failures, 3);
    }

    /// Bug (found in review): custom-metric readings were matched to the spec's metrics
    /// by position only. After an edit put another metric first, the next pass (before
    /// the scraper caught up) read the old metric's 250 as the new one's and sent the
    /// pool to max. Readings taken for another metric list read as missing.
    #[test]
    fn readings_taken_for_another_metric_list_read_as_missing() {
        let spec = |metrics: &str| {
            let yaml = format!("apiVersion: invok.dev/v1alpha1\nkind: FunctionPool\nmetadata: {{name: web}}\nspec:\n  image: x\n  scaling:\n    customMetrics: [{metrics}]\n");
            serde_yaml::from_str::<crate::api::FunctionPool>(&yaml)
                .unwrap()
                .validate(&Default::default())
                .unwrap()
        };
        let before = spec("{name: queue_depth, targetPerContainer: 100}");
        let after = spec("{name: in_flight, targetPerContainer: 1}, {name: queue_depth, targetPerContainer: 100}");
        let store = crate::store::ObservedStore::new();
        store.apply_list(
            vec![crate::runtime::ContainerInfo {
                id: "a".into(),
                name: "invok-web-a".into(),
                pool: "web".into(),
                spec_hash: before.spec_hash.clone(),
                state: crate::runtime::RunState::Running,
                host_port: Some(40001),
                created: std::time::SystemTime::UNIX_EPOCH,
                image: "x".into(),
                labels: Default::default(),
                pinned: false,
            }],
            Instant::now(),
        );
        store.record_metrics("a", crate::scraper::metrics_key(&before), vec![Some(250.0)]);
        let observed = store.pool("web");
        assert_eq!(views_of(&observed, &before)[0].metrics, vec![Some(250.0)]);
        assert!(views_of(&observed, &after)[0].metrics.is_empty());
    }
}

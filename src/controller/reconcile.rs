//! `reconcile(pool)`: read desired and observed state, decide, plan, apply, report.
//!
//! The decisions are [`crate::scaler`]'s pure functions; this file only gathers their
//! inputs, carries out the plan through the [`Runtime`], and keeps the pool's memory
//! (replica target, crash-loop and error backoff) and status.

use std::sync::Arc;
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use futures_util::future::join_all;
use futures_util::{FutureExt, StreamExt};
use rand::Rng;
use tokio::time::Instant;

use super::status::{unix_now, ScaleEvent};
use super::{backoff, Action, Shared, STABLE_RUN};
use crate::api::EffectiveSpec;
use crate::runtime::{CreateRequest, Runtime, RuntimeError};
use crate::scaler::{self, Phase, PoolFacts, Reason, RemoveReason};

/// Containers created in parallel by one reconcile (two cores start ~4 at once well).
pub(crate) const CREATE_PARALLELISM: usize = 4;
/// A pool that has run converged this long since its last container failure leaves
/// CrashLoopBackOff (Kubernetes resets a container's backoff after 10 minutes of running).
const CLEAN_RUN_RESETS_FAILURES: Duration = Duration::from_secs(600);

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// A Docker call failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The reconcile panicked: a bug, caught so the pool backs off instead of freezing.
    #[error("internal error: reconcile panicked: {0} (a bug; please report it)")]
    Panic(String),
}

/// Marks a pool's reconcile as running for as long as it lives, and states the
/// scheduler's promise as an assertion: never two reconciles of one pool at once.
struct Running<'a, R> {
    shared: &'a Shared<R>,
    pool: &'a str,
}

impl<'a, R> Running<'a, R> {
    fn enter(shared: &'a Shared<R>, pool: &'a str) -> Self {
        let was = shared.pool_state(pool, |s| std::mem::replace(&mut s.reconciling, true));
        assert!(!was, "two reconciles of pool {pool} ran at once");
        Running { shared, pool }
    }
}

impl<R> Drop for Running<'_, R> {
    fn drop(&mut self) {
        // A pool pruned during this reconcile has no state left: none is made here.
        let mut pools = self.shared.pools.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = pools.get_mut(self.pool) {
            s.reconciling = false;
        }
    }
}

/// Reconciles one pool; never fails: errors (and panics, which are bugs) become a
/// backoff requeue, a `Degraded` condition and a metric, never a frozen pool.
pub(crate) async fn reconcile<R: Runtime>(shared: &Arc<Shared<R>>, pool: &str) -> Action {
    let started = Instant::now();
    let result = {
        let inner = async {
            let _running = Running::enter(shared, pool);
            reconcile_inner(shared, pool).await
        };
        match AssertUnwindSafe(inner).catch_unwind().await {
            Ok(r) => r.map_err(Failure::from),
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)")
                    .to_string();
                tracing::error!(pool, "reconcile panicked: {msg}");
                shared.metrics.record_reconcile_panic(pool);
                Err(Failure::Panic(msg))
            }
        }
    };
    shared
        .metrics
        .record_reconcile(pool, result.is_ok(), started.elapsed().as_secs_f64());
    shared.pool_state(pool, |s| s.status.reconciles += 1);
    match result {
        Ok(action) => {
            shared.pool_state(pool, |s| {
                s.errors = 0;
                s.status.consecutive_errors = 0;
                s.status.last_error = None;
            });
            action
        }
        Err(e) => {
            if matches!(&e, Failure::Runtime(r) if r.is_unavailable()) {
                shared.health.docker(Err(e.to_string()));
            }
            let (n, delay) = shared.pool_state(pool, |s| {
                s.errors = s.errors.saturating_add(1);
                let delay = backoff(
                    s.errors,
                    Duration::from_millis(500),
                    Duration::from_secs(60),
                );
                s.status.consecutive_errors = s.errors;
                s.status.last_error = Some(e.to_string());
                let reason = match &e {
                    Failure::Runtime(RuntimeError::Unavailable(_)) => "DockerUnavailable",
                    Failure::Runtime(RuntimeError::ImageUnavailable { .. }) => "ImagePullFailed",
                    Failure::Runtime(
                        RuntimeError::Api(_)
                        | RuntimeError::NotFound(_)
                        | RuntimeError::Conflict(_),
                    ) => "ReconcileError",
                    Failure::Panic(_) => "ReconcilePanic",
                };
                s.status.event("Warning", reason, e.to_string());
                s.status.set_degraded(reason, e.to_string());
                (s.errors, delay)
            });
            tracing::warn!(
                pool,
                attempt = n,
                "reconcile failed, retrying in {delay:?}: {e}"
            );
            Action::requeue(delay)
        }
    }
}

async fn reconcile_inner<R: Runtime>(
    shared: &Arc<Shared<R>>,
    pool: &str,
) -> Result<Action, RuntimeError> {
    let now = Instant::now();
    if !shared.store.is_synced() {
        // Until Docker has been listed once, an empty pool may just be unknown: creating
        // containers now would duplicate the ones a restarted operator is about to adopt.
        // The first relist triggers every pool it finds; this pool looks again shortly.
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let (desired, may_prune, manifest_error) = {
        let d = shared.desired();
        (
            d.pools.get(pool).cloned(),
            d.may_prune(pool),
            d.invalid.get(pool).cloned(),
        )
    };
    let Some(desired) = desired else {
        if may_prune {
            prune(shared, pool).await?;
        } else if let Some(err) = manifest_error {
            shared.pool_state(pool, |s| s.status.manifest_error = Some(err));
        }
        return Ok(Action::await_change());
    };
    let spec = desired.spec;

    let observed = shared.store.pool(pool);
    for o in &observed {
        if o.phase() == Phase::Starting {
            shared.ensure_probe(&o.info.id, pool, &spec);
        }
    }
    let views: Vec<scaler::ContainerView> = observed.iter().map(|o| o.view()).collect();

    let facts = shared.pool_state(pool, |s| {
        if !s.announced {
            tracing::info!("Created new container pool for function: {pool}");
            s.status.event(
                "Normal",
                "PoolCreated",
                format!("pool declared in {}", desired.source),
            );
            s.announced = true;
        }
        if s.status.manifest_error != manifest_error {
            if let Some(err) = &manifest_error {
                tracing::warn!(
                    "pool {pool}: manifest invalid, keeping the last valid spec running: {err}"
                );
                s.status.event("Warning", "InvalidSpec", err.clone());
            }
            s.status.manifest_error = manifest_error.clone();
        }
        if s.status.spec_hash.as_deref() != Some(spec.spec_hash.as_str()) && s.failures > 0 {
            // A new spec (a fixed image, say) starts with a clean slate, as a new Pod does.
            s.failures = 0;
            s.last_failure = None;
            s.create_not_before = None;
            s.status.recent_failures = 0;
        }
        s.status.spec_hash = Some(spec.spec_hash.clone());
        PoolFacts {
            replicas: s
                .replicas
                .unwrap_or_else(|| scaler::adopted_replicas(&spec, &views)),
            last_scale_up: s.last_scale_up,
            waiting_requests: s.waiting,
        }
    });

    let decision = scaler::decide(&spec, &views, &facts, now);
    let load_scale_up = decision.replicas > facts.replicas
        && matches!(
            decision.reason,
            Reason::Cpu | Reason::Memory | Reason::Concurrency | Reason::Demand
        );
    if load_scale_up {
        tracing::info!("Scaling up function: {pool}");
    }
    let plan = scaler::plan(
        &spec.spec_hash,
        &views,
        decision.replicas,
        &decision.victims,
    );
    // Only crashes count towards CrashLoopBackOff: containers that never became ready or
    // died soon after. One that served for a while and was killed is replaced at once.
    let failed = plan
        .remove
        .iter()
        .filter(|(id, r)| {
            *r == RemoveReason::Failed
                && observed
                    .iter()
                    .find(|o| o.info.id == *id)
                    .is_none_or(|o| o.is_crash(STABLE_RUN))
        })
        .count();

    let create_not_before = shared.pool_state(pool, |s| {
        if decision.replicas != facts.replicas {
            let direction = if decision.replicas > facts.replicas { "up" } else { "down" };
            shared.metrics.record_scale(pool, direction, decision.reason);
            s.status.last_scale = Some(ScaleEvent {
                time: unix_now(),
                direction,
                reason: decision.reason,
                from: facts.replicas,
                to: decision.replicas,
            });
            s.status.event(
                "Normal",
                if direction == "up" { "ScaledUp" } else { "ScaledDown" },
                format!("replicas {} -> {} ({:?})", facts.replicas, decision.replicas, decision.reason),
            );
            if load_scale_up {
                s.last_scale_up = Some(now);
            }
        }
        if decision.at_max_overloaded && s.status.desired_reason != Some(Reason::AboveMax) {
            tracing::warn!(
                "Max container limit reached for function {pool}: all {} containers overloaded",
                decision.replicas
            );
            s.status.event("Warning", "AtMaxCapacity", "every container is overloaded at maxContainers");
        }
        s.replicas = Some(decision.replicas);
        s.status.desired_replicas = decision.replicas;
        s.status.desired_reason = Some(if decision.at_max_overloaded { Reason::AboveMax } else { decision.reason });
        if failed > 0 {
            s.failures = s.failures.saturating_add(u32::try_from(failed).unwrap_or(u32::MAX));
            s.last_failure = Some(now);
            let delay = if s.failures <= 1 {
                Duration::ZERO
            } else {
                backoff(s.failures - 1, Duration::from_secs(1), Duration::from_secs(300))
            };
            s.create_not_before = Some(now + delay);
            s.status.recent_failures = s.failures;
            if delay > Duration::ZERO {
                tracing::warn!("pool {pool}: containers keep failing ({} so far); CrashLoopBackOff, next start in {delay:?}", s.failures);
                s.status.event("Warning", "CrashLoopBackOff", format!("{} failures; next start in {delay:?}", s.failures));
            }
        }
        s.create_not_before
    });

    if plan.is_empty() {
        return Ok(finish(shared, pool, &spec, now));
    }
    if shared.is_stopping() {
        // Shutdown began: containers are left as they are.
        return Ok(Action::await_change());
    }
    // Removals first: they free capacity and never lower ready capacity below the
    // target (the planner guarantees it).
    let removals = plan.remove.iter().map(|(id, reason)| {
        let shared = shared.clone();
        let o = observed.iter().find(|o| o.info.id == *id).cloned();
        let (id, reason, pool) = (id.clone(), *reason, pool.to_string());
        let scaled_down = decision.reason == Reason::Idle;
        async move {
            if shared.is_stopping() {
                return Ok(());
            }
            let name = o
                .as_ref()
                .map(|o| o.info.name.clone())
                .unwrap_or_else(|| id.clone());
            shared.store.mark_draining(&id);
            let grace = if reason == RemoveReason::Failed {
                Duration::ZERO
            } else {
                shared.config.stop_grace
            };
            shared
                .metrics
                .docker("remove", shared.runtime.remove(&id, grace).await)?;
            shared.store.remove(&id);
            match reason {
                RemoveReason::Surplus if scaled_down => {
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
                RemoveReason::Retry => {
                    tracing::info!("Removed container {name} of function {pool} (an earlier removal had failed)")
                }
                RemoveReason::Pruned => {}
            }
            shared.pool_state(&pool, |s| {
                s.status.event(
                    "Normal",
                    format!("{reason:?}"),
                    format!("removed container {name}"),
                )
            });
            Ok::<(), RuntimeError>(())
        }
    });
    let mut first_error = join_all(removals).await.into_iter().find_map(Result::err);

    // The last line of defence: whatever the planner says, never more containers than
    // max plus one (a rollout's surge) reach Docker. Counted after the removals, with
    // those whose removal failed (still running) included.
    let present = shared
        .store
        .pool(pool)
        .iter()
        .filter(|o| {
            !matches!(
                o.info.state,
                crate::runtime::RunState::Exited | crate::runtime::RunState::Dead
            )
        })
        .count();
    let room = spec.scaling.max.saturating_add(1).saturating_sub(present);
    debug_assert!(
        plan.create <= room || first_error.is_some() || shared.is_stopping(),
        "pool {pool}: plan creates {} with {present} present and max {}",
        plan.create,
        spec.scaling.max
    );
    let create = plan.create.min(room);
    if create > 0 {
        if let Some(t) = create_not_before.filter(|t| *t > now) {
            shared.pool_state(pool, |s| {
                s.status.event(
                    "Normal",
                    "BackOff",
                    format!("waiting {:?} before the next start", t - now),
                )
            });
            if let Some(e) = first_error {
                return Err(e);
            }
            // finish() requeues at the end of the backoff.
            return Ok(finish(shared, pool, &spec, now));
        }
        prepare(shared, pool, &spec).await?;
        // Keep CREATE_PARALLELISM creates in flight (not batches that wait for their
        // slowest start).
        let results: Vec<Result<(), RuntimeError>> = futures_util::stream::iter(
            (0..create).map(|_| create_one(shared, pool, &spec, load_scale_up)),
        )
        .buffer_unordered(CREATE_PARALLELISM)
        .collect()
        .await;
        if let Some(e) = results.into_iter().find_map(Result::err) {
            first_error.get_or_insert(e);
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(finish(shared, pool, &spec, now))
}

/// Makes sure the image and network of the current spec exist (once per spec hash).
async fn prepare<R: Runtime>(
    shared: &Arc<Shared<R>>,
    pool: &str,
    spec: &EffectiveSpec,
) -> Result<(), RuntimeError> {
    if shared.is_stopping()
        || shared.pool_state(pool, |s| s.prepared.as_deref() == Some(&spec.spec_hash))
    {
        return Ok(());
    }
    if let Some(net) = &spec.template.network {
        shared
            .metrics
            .docker("ensure_network", shared.runtime.ensure_network(net).await)?;
    }
    shared.metrics.docker(
        "ensure_image",
        shared.runtime.ensure_image(&spec.template.image).await,
    )?;
    shared.pool_state(pool, |s| s.prepared = Some(spec.spec_hash.clone()));
    Ok(())
}

/// `invok-<pool>-<5 random [a-z0-9]>`.
pub(crate) fn container_name(pool: &str) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect();
    format!("invok-{pool}-{suffix}")
}

async fn create_one<R: Runtime>(
    shared: &Arc<Shared<R>>,
    pool: &str,
    spec: &EffectiveSpec,
    scale_up: bool,
) -> Result<(), RuntimeError> {
    if shared.is_stopping() {
        // No container is created after shutdown begins.
        return Ok(());
    }
    let req = CreateRequest {
        name: container_name(pool),
        pool: pool.to_string(),
        instance: shared.config.instance.clone(),
        template: spec.template.clone(),
        spec_hash: spec.spec_hash.clone(),
    };
    let info = shared
        .metrics
        .docker("create", shared.runtime.create(&req).await)?;
    let (id, name) = (info.id.clone(), info.name.clone());
    shared.store.insert_created(info);
    shared.ensure_probe(&id, pool, spec);
    if scale_up {
        tracing::info!("Successfully scaled up function {pool} with container {name}");
    } else {
        tracing::info!("Created container {name} for function {pool}");
    }
    shared.pool_state(pool, |s| {
        s.status
            .event("Normal", "Created", format!("created container {name}"))
    });
    Ok(())
}

/// Removes every container of a pool that no manifest declares any more.
async fn prune<R: Runtime>(shared: &Arc<Shared<R>>, pool: &str) -> Result<(), RuntimeError> {
    let containers = shared.store.pool(pool);
    if !containers.is_empty() {
        tracing::info!(
            "Pruning pool {pool}: no manifest declares it; removing {} container(s)",
            containers.len()
        );
    }
    let results = join_all(containers.iter().map(|o| {
        let shared = shared.clone();
        async move {
            if shared.is_stopping() {
                return Ok(());
            }
            shared.store.mark_draining(&o.info.id);
            shared.metrics.docker(
                "remove",
                shared
                    .runtime
                    .remove(&o.info.id, shared.config.stop_grace)
                    .await,
            )?;
            shared.store.remove(&o.info.id);
            tracing::info!("Removed container {} of deleted pool {pool}", o.info.name);
            Ok::<(), RuntimeError>(())
        }
    }))
    .await;
    results.into_iter().collect::<Result<(), _>>()?;
    shared
        .pools
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(pool);
    Ok(())
}

/// Updates conditions and says when to look again.
fn finish<R: Runtime>(
    shared: &Arc<Shared<R>>,
    pool: &str,
    spec: &EffectiveSpec,
    now: Instant,
) -> Action {
    let views = shared.store.views(pool);
    let ready = views.iter().filter(|v| v.phase == Phase::Ready).count();
    let starting = views.iter().filter(|v| v.phase == Phase::Starting).count();
    let outdated = views
        .iter()
        .filter(|v| {
            matches!(v.phase, Phase::Ready | Phase::Starting) && v.spec_hash != spec.spec_hash
        })
        .count();
    shared.pool_state(pool, |s| {
        // This pass succeeded: an earlier pass's error is history, not a condition.
        s.errors = 0;
        s.status.consecutive_errors = 0;
        s.status.last_error = None;
        let target = s.replicas.unwrap_or(spec.scaling.min);
        let converged = ready == target && starting == 0 && outdated == 0;
        if converged && s.failures > 0 {
            let clean_for = s
                .last_failure
                .map(|t| now.saturating_duration_since(t))
                .unwrap_or(CLEAN_RUN_RESETS_FAILURES);
            if clean_for >= CLEAN_RUN_RESETS_FAILURES {
                s.last_failure = None;
                s.failures = 0;
                s.create_not_before = None;
                s.status.recent_failures = 0;
            }
        }
        let backing_off = s.create_not_before.is_some_and(|t| t > now);
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
            if outdated > 0 {
                "RollingUpdate"
            } else if starting > 0 {
                "ContainersStarting"
            } else {
                "Converged"
            },
            format!("{starting} starting, {outdated} outdated"),
        );
        let degraded = if let Some(err) = &s.status.last_error {
            (true, "ReconcileError", err.clone())
        } else if backing_off {
            (
                true,
                "CrashLoopBackOff",
                format!("{} container failures; backing off", s.failures),
            )
        } else if let Some(err) = &s.status.manifest_error {
            (true, "InvalidSpec", err.clone())
        } else if s.status.desired_reason == Some(Reason::AboveMax) {
            (
                true,
                "AtMaxCapacity",
                "every container is overloaded at maxContainers".to_string(),
            )
        } else {
            (false, "AsExpected", String::new())
        };
        s.status.set_conditions(ready_cond, progressing, degraded);
    });
    let mut after = spec.scaling.poll_interval;
    if let Some(d) = scaler::next_idle_deadline(spec, &views, now) {
        after = after.min(d);
    }
    if let Some(t) = shared
        .pool_state(pool, |s| s.create_not_before)
        .filter(|t| *t > now)
    {
        after = after.min(t - now);
    }
    Action::requeue(after.max(Duration::from_millis(50)))
}

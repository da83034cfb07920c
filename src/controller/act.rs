//! Step 3 of a reconcile: carry out the plan through the [`Runtime`], and nothing else.
//! Removals first (they free capacity; the planner never lowers ready capacity below
//! the target), then creates, [`CREATE_PARALLELISM`] at a time. Each removal and create
//! is told to `report` as it happens, and the rest goes back as an [`Outcome`]: what is
//! said about it (log lines, events) is the record step's, not written here.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::StreamExt;
use rand::Rng;

use super::context::Shared;
use super::pass::{Decision, Happened, Outcome, Snapshot};
use crate::api::{self, EffectiveSpec};
use crate::runtime::{CreateRequest, RunState, Runtime, RuntimeError};
use crate::scaler::{Phase, RemoveReason};

/// Containers created in parallel by one reconcile (two cores start ~4 at once well).
pub(crate) const CREATE_PARALLELISM: usize = 4;

/// Starts a readiness probe for every container of the snapshot still starting.
pub(crate) fn probe_starting<R: Runtime>(ctx: &Shared<R>, s: &Snapshot) {
    for o in s.observed.iter().filter(|o| o.phase() == Phase::Starting) {
        ctx.prober.ensure(&o.info.id, &s.pool, &s.spec.readiness);
    }
}

/// Carries out `d.plan`. After shutdown begins nothing starts; creates wait for the
/// crash-loop backoff; every Docker call is made even when another failed, and the
/// first error is returned in the outcome.
pub(crate) async fn execute<R: Runtime>(
    ctx: &Arc<Shared<R>>,
    s: &Snapshot,
    d: &Decision,
    report: &(dyn Fn(Happened) + Sync),
) -> Outcome {
    let mut out = Outcome::default();
    if d.plan.is_empty() {
        return out;
    }
    if ctx.is_stopping() {
        out.stopped = true;
        return out;
    }
    let results = join_all(d.plan.remove.iter().map(|(id, reason)| {
        let name = s
            .container(id)
            .map_or_else(|| id.clone(), |o| o.info.name.clone());
        remove(ctx, id, name, *reason, s.spec.timeout, report)
    }))
    .await;
    out.draining = results.iter().any(|r| matches!(r, Ok(Removal::Draining)));
    if let Some(e) = results.into_iter().find_map(Result::err) {
        out.error = Some(e);
    }
    let room = room(ctx, s);
    // The planner counts a draining container out of the pool, but it still runs (and
    // counts in `room`) until its requests are done: creates wait for it then.
    debug_assert!(
        d.plan.create <= room || out.error.is_some() || ctx.is_stopping() || out.draining,
        "pool {}: plan creates {} with room for {room} (max {})",
        s.pool,
        d.plan.create,
        s.spec.scaling.max
    );
    let create = d.plan.create.min(room);
    if create == 0 {
        return out;
    }
    if let Some(t) = d.memory.create_not_before.filter(|t| *t > s.now) {
        out.held_back = Some(t - s.now);
        return out;
    }
    if let Err(e) = prepare(ctx, &s.pool, &s.spec).await {
        out.error = Some(e);
        return out;
    }
    // Keep CREATE_PARALLELISM creates in flight (not batches that wait for their
    // slowest start).
    let results: Vec<_> =
        futures_util::stream::iter((0..create).map(|_| create_one(ctx, s, report)))
            .buffer_unordered(CREATE_PARALLELISM)
            .collect()
            .await;
    if let Some(e) = results.into_iter().find_map(Result::err) {
        out.error.get_or_insert(e);
    }
    out
}

/// The last line of defence: whatever the planner says, never more containers than max
/// plus one (a rollout's surge) reach Docker. Counted after the removals, with those
/// whose removal failed (still running) included.
fn room<R>(ctx: &Shared<R>, s: &Snapshot) -> usize {
    let present = ctx
        .store
        .pool(&s.pool)
        .iter()
        .filter(|o| !matches!(o.info.state, RunState::Exited | RunState::Dead))
        .count();
    s.spec.scaling.max.saturating_add(1).saturating_sub(present)
}

/// How soon a pass with a container draining looks again (the container goes this
/// long after its last request at most).
pub(crate) const DRAIN_RECHECK: Duration = Duration::from_millis(100);

/// What became of one removal.
#[derive(Debug, PartialEq)]
pub(crate) enum Removal {
    /// The container is gone.
    Done,
    /// Out of routing, but requests are still in flight on it: a later pass removes it.
    Draining,
    /// Shutdown began: nothing was done.
    Stopping,
}

/// Drains and removes one container, and reports it; nothing when shutdown began first.
///
/// The container leaves routing at once. One with requests in flight stays until they
/// are done or `drain_for` (the pool's timeout, by which the gateway has ended them) has
/// passed since it left; a failed one goes at once.
async fn remove<R: Runtime>(
    ctx: &Shared<R>,
    id: &str,
    name: String,
    reason: RemoveReason,
    drain_for: Duration,
    report: &(dyn Fn(Happened) + Sync),
) -> Result<Removal, RuntimeError> {
    if ctx.is_stopping() {
        return Ok(Removal::Stopping);
    }
    let mut reason = reason;
    if let Some((drain, in_flight)) = ctx.store.mark_draining(id, reason) {
        if reason == RemoveReason::Retry {
            reason = drain.reason;
        }
        let drained = drain.since.elapsed() >= drain_for;
        if reason != RemoveReason::Failed && in_flight > 0 && !drained {
            return Ok(Removal::Draining);
        }
    }
    let grace = if reason == RemoveReason::Failed {
        Duration::ZERO
    } else {
        ctx.config.stop_grace
    };
    ctx.metrics
        .docker("remove", ctx.runtime.remove(id, grace).await)?;
    ctx.store.remove(id);
    report(Happened::Removed { name, reason });
    Ok(Removal::Done)
}

/// Makes sure the image and network of the current spec exist (once per spec hash).
async fn prepare<R: Runtime>(
    ctx: &Shared<R>,
    pool: &str,
    spec: &EffectiveSpec,
) -> Result<(), RuntimeError> {
    if ctx.is_stopping() || ctx.pool_state(pool, |s| s.prepared.as_deref() == Some(&spec.spec_hash))
    {
        return Ok(());
    }
    if let Some(net) = &spec.template.network {
        ctx.metrics
            .docker("ensure_network", ctx.runtime.ensure_network(net).await)?;
    }
    ctx.metrics.docker(
        "ensure_image",
        ctx.runtime.ensure_image(&spec.template.image).await,
    )?;
    ctx.pool_state(pool, |s| s.prepared = Some(spec.spec_hash.clone()));
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

/// Creates and starts one container of the snapshot's spec, starts its probe, and
/// reports it; nothing when shutdown began first.
async fn create_one<R: Runtime>(
    ctx: &Shared<R>,
    s: &Snapshot,
    report: &(dyn Fn(Happened) + Sync),
) -> Result<(), RuntimeError> {
    if ctx.is_stopping() {
        return Ok(());
    }
    let req = CreateRequest {
        name: container_name(&s.pool),
        pool: s.pool.clone(),
        instance: ctx.config.instance.clone(),
        template: s.spec.template.clone(),
        spec_hash: s.spec.spec_hash.clone(),
    };
    let info = ctx
        .metrics
        .docker("create", ctx.runtime.create(&req).await)?;
    let (id, name) = (info.id.clone(), info.name.clone());
    ctx.store.insert_created(info);
    ctx.prober.ensure(&id, &s.pool, &s.spec.readiness);
    report(Happened::Created { name });
    Ok(())
}

/// Removes every container of a pool that no manifest declares any more, reporting
/// each, then forgets the pool. Containers with requests in flight are drained first,
/// for the timeout of the pool's last spec at most (the one its requests were sent
/// with; [`api::DEFAULT_TIMEOUT`] for a pool this operator never saw declared);
/// `Ok(false)` means some still drain.
pub(crate) async fn prune<R: Runtime>(
    ctx: &Shared<R>,
    pool: &str,
    report: &(dyn Fn(Happened) + Sync),
) -> Result<bool, RuntimeError> {
    let containers = ctx.store.pool(pool);
    let drain_for = ctx
        .pool_state(pool, |s| s.timeout)
        .unwrap_or(api::DEFAULT_TIMEOUT);
    let results = join_all(containers.iter().map(|o| {
        remove(
            ctx,
            &o.info.id,
            o.info.name.clone(),
            RemoveReason::Pruned,
            drain_for,
            report,
        )
    }))
    .await;
    let results = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    if results.iter().any(|r| *r != Removal::Done) {
        return Ok(false);
    }
    ctx.pools.forget(pool);
    Ok(true)
}

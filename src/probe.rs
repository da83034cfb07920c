//! Readiness probes: is a container's function answering, and who asks when.
//!
//! [`Prober`] schedules the probes: one task per container that needs one (a container
//! still starting, or a ready one the gateway could not reach), never two for the same
//! container. It marks containers ready, suspect-cleared, unready or failed in the
//! [`ObservedStore`] and wakes the pool's reconcile through a [`Trigger`]; it knows
//! nothing else of the controller. [`probe_once`] is the check itself.
//!
//! The socket-level check lives with the runtime that publishes the ports
//! ([`crate::runtime::readiness`]); it is re-exported here, where users of
//! `invok::probe` find it.
#![deny(clippy::too_many_lines)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::api::Probe;
use crate::runtime::{RunState, Runtime};
use crate::scheduler::Trigger;
use crate::store::{Observed, ObservedStore};

pub use crate::runtime::readiness::{probe_once, CONNECT_TIMEOUT};

/// Consecutive failed probes that take a ready container out of routing (Kubernetes'
/// `failureThreshold` default): one lost connection is no reason to stop routing to it.
pub const PROBE_FAILURE_THRESHOLD: u32 = 3;
/// Between probes of a container that has served (a check after the gateway could not
/// reach it, or waiting for it to answer again): [`PROBE_FAILURE_THRESHOLD`] failures
/// then span about two seconds, so a function that restarts within that time (a process
/// supervisor's restart, a brief pause) never leaves routing. Containers still starting
/// are probed much faster: their first answer is what a cold start waits for.
pub const SERVED_PROBE_PERIOD: Duration = Duration::from_secs(1);
/// The first pause between probes of a starting container; it doubles up to
/// [`STARTING_PROBE_PAUSE_MAX`].
const STARTING_PROBE_PAUSE: Duration = Duration::from_millis(10);
const STARTING_PROBE_PAUSE_MAX: Duration = Duration::from_millis(250);

/// The readiness probe a pool's spec declares now; `None` when the pool is gone.
pub type ReadinessLookup = Arc<dyn Fn(&str) -> Option<Probe> + Send + Sync>;

/// Schedules readiness probes: at most one task per container.
pub struct Prober<R> {
    runtime: Arc<R>,
    store: Arc<ObservedStore>,
    trigger: Trigger,
    /// Reads a pool's current probe, for a check that starts after the spec changed.
    readiness: ReadinessLookup,
    /// A container not ready this long after it appeared is failed (to be replaced).
    startup_timeout: Duration,
    /// Containers with a probe task running.
    probing: Mutex<HashSet<String>>,
}

/// What one probe pass concluded about a container.
enum Verdict {
    /// Stop probing: it answered, left, or was judged.
    Done,
    /// Probe again after this pause.
    Again(Duration),
}

impl<R: Runtime> Prober<R> {
    /// A prober over `runtime`'s containers as `store` sees them; it wakes pools through
    /// `trigger` and reads their current probes through `readiness`.
    pub fn new(
        runtime: Arc<R>,
        store: Arc<ObservedStore>,
        trigger: Trigger,
        readiness: ReadinessLookup,
        startup_timeout: Duration,
    ) -> Prober<R> {
        Prober {
            runtime,
            store,
            trigger,
            readiness,
            startup_timeout,
            probing: Mutex::new(HashSet::new()),
        }
    }

    /// The gateway could not reach a container: probe it with `probe` (its pool's
    /// readiness probe; `None` when the pool is gone). Meanwhile it gets requests only
    /// when no other container is ready; it becomes unready only when
    /// [`PROBE_FAILURE_THRESHOLD`] probes in a row fail, and is back as soon as one
    /// passes. It is never counted as a crash for it.
    pub fn report_unreachable(self: &Arc<Self>, id: &str, probe: Option<&Probe>) {
        let Some(o) = self.store.get(id) else { return };
        self.store.mark_suspect(id);
        if let Some(probe) = probe {
            self.ensure(id, &o.info.pool, probe);
        }
    }

    /// Starts a readiness probe for a container unless one runs already.
    ///
    /// - A container that has not been ready yet is probed until it answers (ready) or
    ///   the startup timeout passes (failed, to be replaced).
    /// - A ready container (a check after the gateway could not reach it) stays ready
    ///   unless [`PROBE_FAILURE_THRESHOLD`] probes in a row fail; then it is out of routing
    ///   and probed on until it answers again, or is replaced after the startup timeout
    ///   without an answer (as no crash: it had served).
    pub fn ensure(self: &Arc<Self>, id: &str, pool: &str, probe: &Probe) {
        if !self.lock_probing().insert(id.to_string()) {
            return;
        }
        let prober = self.clone();
        let (id, pool, probe) = (id.to_string(), pool.to_string(), probe.clone());
        tokio::spawn(async move { prober.probe_until_done(&id, &pool, &probe).await });
    }

    fn lock_probing(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.probing.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn probe_until_done(self: &Arc<Self>, id: &str, pool: &str, probe: &Probe) {
        // `probe` is the pool's probe when this task started; a recheck reads it anew.
        let mut pause = STARTING_PROBE_PAUSE;
        let mut misses = 0u32;
        while let Some(o) = self.store.get(id) {
            match self.probe_pass(&o, pool, probe, &mut misses, pause).await {
                Verdict::Done => break,
                Verdict::Again(wait) => {
                    tokio::time::sleep(wait).await;
                    pause = pause.saturating_mul(2).min(STARTING_PROBE_PAUSE_MAX);
                }
            }
        }
        self.lock_probing().remove(id);
        // The gateway may have reported it unreachable again after the last probe but
        // before the id left `probing` (its `ensure` then did nothing): look again
        // rather than leave it suspect with no probe to clear it.
        let recheck = self.store.get(id).is_some_and(|o| {
            o.suspect && o.info.state == RunState::Running && o.draining.is_none() && !o.failed
        });
        if let Some(probe) = recheck.then(|| (self.readiness)(pool)).flatten() {
            self.ensure(id, pool, &probe);
        }
    }

    /// Probes `o` once and judges the answer.
    async fn probe_pass(
        &self,
        o: &Observed,
        pool: &str,
        probe: &Probe,
        misses: &mut u32,
        pause: Duration,
    ) -> Verdict {
        let id = o.info.id.as_str();
        if !matches!(o.info.state, RunState::Running | RunState::Created)
            || o.draining.is_some()
            || o.failed
        {
            return Verdict::Done;
        }
        if o.info.pinned && o.info.host_port.is_none() && o.info.state == RunState::Running {
            // A registered container without a loopback port cannot be probed: running
            // is the best we know.
            self.store.mark_ready(id);
            self.trigger.now(pool);
            return Verdict::Done;
        }
        if o.info.host_port.is_some() && self.runtime.probe(&o.info, probe).await {
            if (o.ready_at.is_none() || o.suspect) && self.store.mark_ready(id) {
                tracing::debug!(container = %o.info.name, "container ready");
                self.trigger.now(pool);
            }
            return Verdict::Done;
        }
        *misses = misses.saturating_add(1);
        if o.ready_at.is_some() {
            if *misses >= PROBE_FAILURE_THRESHOLD && self.store.mark_unready(id) {
                tracing::warn!(
                    container = %o.info.name,
                    "container stopped answering ({misses} probes failed); out of routing until it answers again"
                );
                self.trigger.now(pool);
            }
        } else if o.unready_since.unwrap_or(o.first_seen).elapsed() > self.startup_timeout {
            tracing::warn!(
                "container {} of function {pool} not ready after {:?}; replacing it",
                o.info.name,
                self.startup_timeout
            );
            self.store.mark_failed(id);
            self.trigger.now(pool);
            return Verdict::Done;
        }
        Verdict::Again(if o.served_since.is_some() {
            SERVED_PROBE_PERIOD
        } else {
            pause
        })
    }
}

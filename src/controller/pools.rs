//! The controller's memory of each pool between reconciles: the replica target, the
//! crash-loop and error counts, and the status the admin API shows. Everything else a
//! reconcile needs it reads fresh (desired state, observed containers).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::status::PoolStatus;

/// Per-pool memory of the controller between reconciles.
#[derive(Debug, Default)]
pub(crate) struct PoolState {
    /// The replica target (like a Deployment's `spec.replicas`), set by the scaler.
    pub replicas: Option<usize>,
    /// When the pool last grew because of load.
    pub last_scale_up: Option<Instant>,
    /// Recent requests in flight (see [`super::pass::note_in_flight`]).
    pub in_flight_peaks: std::collections::VecDeque<(Instant, usize)>,
    /// Container crashes since the pool last ran cleanly (CrashLoopBackOff).
    pub failures: u32,
    /// When the last crash was seen.
    pub last_failure: Option<Instant>,
    /// A reconcile of this pool is running (checked: never two at once).
    pub reconciling: bool,
    /// No creates before this instant (crash-loop backoff).
    pub create_not_before: Option<Instant>,
    /// Consecutive reconcile errors (error backoff).
    pub errors: u32,
    /// The spec hash whose image and network are known to exist.
    pub prepared: Option<String>,
    /// Requests waiting at the gateway.
    pub waiting: usize,
    /// The last pass found the pool quiet and armed its containers' wakes
    /// ([`crate::store::ObservedStore::arm_wakes`]).
    pub wakes_armed: bool,
    /// Status for the admin API.
    pub status: PoolStatus,
    /// Request arrivals sampled at each pass (pools with `targetRequestsPerSecond`).
    pub rates: Option<crate::forecast::RateHistory>,
    /// Forecasts made, as (the instant they are for, the rate forecast), oldest first:
    /// when a forecast's instant comes, status shows it next to the rate observed.
    pub forecasts: std::collections::VecDeque<(Instant, f64)>,
    /// The pool was announced in the log.
    pub announced: bool,
    /// The request timeout of the pool's last spec: a pruned pool's containers drain
    /// this long at most, as its requests were sent with it.
    pub timeout: Option<Duration>,
}

/// Every pool's [`PoolState`], behind one short-held lock (never held across an await).
#[derive(Debug, Default)]
pub(crate) struct Pools(Mutex<HashMap<String, PoolState>>);

impl Pools {
    /// Runs `f` on a pool's state, creating it empty on first use.
    pub fn with<T>(&self, pool: &str, f: impl FnOnce(&mut PoolState) -> T) -> T {
        let mut pools = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(pools.entry(pool.to_string()).or_default())
    }

    /// Runs `f` on a pool's state if it exists (a pruned pool has none).
    pub fn existing<T>(&self, pool: &str, f: impl FnOnce(&mut PoolState) -> T) -> Option<T> {
        let mut pools = self.0.lock().unwrap_or_else(|e| e.into_inner());
        pools.get_mut(pool).map(f)
    }

    /// Forgets a pool (after its prune).
    pub fn forget(&self, pool: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(pool);
    }
}

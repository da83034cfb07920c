//! One reconcile pass as data: what it observed ([`Snapshot`]), what it decided
//! ([`Decision`], a pure function of the snapshot) and what it did ([`Happened`], as it
//! happened, and [`Outcome`]). The
//! steps of [`super::reconcile`] hand these to each other, so each step reads alone.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::api::{EffectiveSpec, ScalingPolicy};
use crate::forecast::{Forecast, RateHistory};
use crate::manifest::Location;
use crate::runtime::RuntimeError;
use crate::scaler::{self, ContainerView, Plan, PoolFacts, Reason, RemoveReason};
use crate::store::Observed;

/// The part of a pool's memory a pass reads and writes back (the rest of
/// [`super::pools::PoolState`] belongs to others: the gateway's waiting count, the error
/// backoff).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Memory {
    /// The replica target, once decided.
    pub replicas: Option<usize>,
    /// When the pool last grew because of load.
    pub last_scale_up: Option<Instant>,
    /// Crashes since the pool last ran cleanly.
    pub failures: u32,
    /// When the last crash was seen.
    pub last_failure: Option<Instant>,
    /// No creates before this instant (crash-loop backoff).
    pub create_not_before: Option<Instant>,
    /// The pool was announced in the log.
    pub announced: bool,
    /// The spec hash the last pass worked on.
    pub spec_hash: Option<String>,
    /// The manifest error the last pass reported.
    pub manifest_error: Option<String>,
    /// Why the last pass wanted its replica count.
    pub desired_reason: Option<Reason>,
    /// Requests in flight seen by recent passes (see [`note_in_flight`]).
    pub in_flight_peaks: VecDeque<(Instant, usize)>,
}

/// Most entries [`note_in_flight`] keeps (it keeps only decreasing counts, so this is
/// reached only by a long, steady decline).
const MAX_PEAKS: usize = 256;

/// Records that the pool had `n` requests in flight at `now` and returns the most it had
/// at any recorded moment of the last `window`. `peaks` holds the window's decreasing
/// maxima, newest last (a monotonic queue): amortized O(1) a pass.
pub(crate) fn note_in_flight(
    peaks: &mut VecDeque<(Instant, usize)>,
    now: Instant,
    n: usize,
    window: Duration,
) -> usize {
    while peaks.back().is_some_and(|&(_, m)| m <= n) {
        peaks.pop_back();
    }
    peaks.push_back((now, n));
    while peaks
        .front()
        .is_some_and(|&(t, _)| now.saturating_duration_since(t) > window)
    {
        peaks.pop_front();
    }
    if peaks.len() > MAX_PEAKS {
        // Keep the window's maximum (the front): drop the next one instead.
        peaks.remove(1);
    }
    peaks.front().map_or(n, |&(_, m)| m)
}

/// Desired and observed state of one declared pool, read once at the start of a pass.
pub(crate) struct Snapshot {
    /// The pool.
    pub pool: String,
    /// `<instance>/<pool>`: what the pool's backoff jitter is seeded from.
    pub backoff_key: String,
    /// Its effective spec.
    pub spec: Arc<EffectiveSpec>,
    /// Where it is declared.
    pub source: Location,
    /// Why its manifest is invalid now (the last valid spec keeps running), if it is.
    pub manifest_error: Option<String>,
    /// Its containers as the store sees them.
    pub observed: Vec<Observed>,
    /// The same, as the scaler sees them.
    pub views: Vec<ContainerView>,
    /// The pool's memory from the last pass.
    pub memory: Memory,
    /// Requests waiting at the gateway for a container.
    pub waiting: usize,
    /// The request rate and its forecast, for pools that scale on them.
    pub rates: RateReading,
    /// The pass's clock.
    pub now: Instant,
}

/// What a pass read of the pool's request rate (pools with `targetRequestsPerSecond`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct RateReading {
    /// Requests per second over the rate window.
    pub rate: Option<f64>,
    /// The forecast for the horizon (predictive pools).
    pub forecast: Option<Forecast>,
    /// The forecast made about a horizon ago for now.
    pub forecast_for_now: Option<f64>,
}

/// The window the request rate is averaged over: three sampling periods, and at least
/// [`MIN_RATE_WINDOW`] (a shorter one counts the gaps between a client's bursts).
pub(crate) fn rate_window(poll_interval: Duration) -> Duration {
    poll_interval.saturating_mul(3).max(MIN_RATE_WINDOW)
}

/// See [`rate_window`]: Knative's panic window is 6 s too.
pub(crate) const MIN_RATE_WINDOW: Duration = Duration::from_secs(6);

/// Samples `total` arrivals into the pool's history at `now` and reads the rate, the
/// forecast and the forecast made for now. Pools without a rate target keep no history.
pub(crate) fn read_rates(
    rates: &mut Option<RateHistory>,
    forecasts: &mut VecDeque<(Instant, f64)>,
    scaling: &ScalingPolicy,
    now: Instant,
    total: u64,
) -> RateReading {
    if scaling.target_requests_per_second.is_none() {
        *rates = None;
        forecasts.clear();
        return RateReading::default();
    }
    let over = rate_window(scaling.poll_interval);
    let window = scaling
        .predictive
        .as_ref()
        .map_or(over, |p| p.window.max(over));
    let history = rates.get_or_insert_with(|| RateHistory::new(window));
    history.set_window(window);
    history.record(now, total);
    let mut reading = RateReading {
        rate: history.rate(over),
        ..RateReading::default()
    };
    let Some(p) = &scaling.predictive else {
        forecasts.clear();
        return reading;
    };
    // Holt's level and trend shrink towards zero slowly after traffic stops: a forecast
    // far below what one container serves is none (else it kept a container, and kept
    // the pool from sleeping, for as long as the window held any traffic).
    reading.forecast = history.forecast(p.horizon).map(|mut f| {
        if scaling
            .target_requests_per_second
            .is_some_and(|t| f.rate < t * NEGLIGIBLE)
        {
            f.rate = 0.0;
        }
        f
    });
    while forecasts.front().is_some_and(|&(at, _)| at <= now) {
        reading.forecast_for_now = forecasts.pop_front().map(|(_, rate)| rate);
    }
    if let (Some(f), Some(at)) = (reading.forecast, now.checked_add(p.horizon)) {
        forecasts.push_back((at, f.rate));
        // One a pass; a pool passes at most a few times a pollInterval.
        while forecasts.len() > MAX_FORECASTS {
            forecasts.pop_front();
        }
    }
    reading
}

/// A forecast below this fraction of `targetRequestsPerSecond` reads as zero.
const NEGLIGIBLE: f64 = 1e-3;

/// Most forecasts kept waiting for their instant.
const MAX_FORECASTS: usize = 4096;

/// What a pass decided: the scaler's decision and plan, and the pool's new memory.
pub(crate) struct Decision {
    /// What the signals beyond CPU and memory read, for the status.
    pub signals: super::status::SignalStatus,
    /// The replica target before this pass.
    pub before: usize,
    /// The scaler's decision.
    pub scale: scaler::Decision,
    /// The plan that converges the containers to it.
    pub plan: Plan,
    /// The pool grows because of load (not to reach min, not a replacement).
    pub load_scale_up: bool,
    /// Every ready container is overloaded at max, and was not last pass (alert once).
    pub newly_at_max: bool,
    /// The crash-loop delay this pass set, when containers of the plan's removals
    /// crashed (CrashLoopBackOff counts them).
    pub crash_delay: Option<Duration>,
    /// First pass of this pool.
    pub announce: bool,
    /// The manifest error differs from the last pass's.
    pub manifest_error_changed: bool,
    /// The memory to keep.
    pub memory: Memory,
}

/// One thing a pass did, reported by the executor as it happens (so log lines and
/// events come when the container came or went, not when the pass ends).
pub(crate) enum Happened {
    /// A container was removed.
    Removed {
        /// Its name.
        name: String,
        /// Why.
        reason: RemoveReason,
    },
    /// A container was created and started.
    Created {
        /// Its name.
        name: String,
    },
}

/// What a pass did, beyond what it reported as it happened.
#[derive(Default)]
pub(crate) struct Outcome {
    /// Creates the plan wanted but the crash-loop backoff holds back this long.
    pub held_back: Option<Duration>,
    /// Shutdown had begun: nothing was done.
    pub stopped: bool,
    /// A container to remove still has requests in flight: look again soon.
    pub draining: bool,
    /// The first Docker call that failed (the others went on).
    pub error: Option<RuntimeError>,
}

impl Snapshot {
    /// The facts the scaler needs beyond the containers.
    pub fn facts(&self) -> PoolFacts {
        PoolFacts {
            replicas: self
                .memory
                .replicas
                .unwrap_or_else(|| scaler::adopted_replicas(&self.spec, &self.views)),
            last_scale_up: self.memory.last_scale_up,
            waiting_requests: self.waiting,
            // Filled by the pass's decide, which records this pass's count first.
            recent_peak_in_flight: 0,
            request_rate: self.rates.rate,
            forecast_rate: self.rates.forecast.map(|f| f.rate),
        }
    }

    /// The observed container with this id.
    pub fn container(&self, id: &str) -> Option<&Observed> {
        self.observed.iter().find(|o| o.info.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_in_flight_peak_is_the_most_seen_within_the_window() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let w = Duration::from_secs(30);
        let mut q = VecDeque::new();
        assert_eq!(note_in_flight(&mut q, at(0), 5, w), 5);
        // Dips between a client's requests do not lower it.
        assert_eq!(note_in_flight(&mut q, at(1), 4, w), 5);
        assert_eq!(note_in_flight(&mut q, at(2), 0, w), 5);
        assert_eq!(note_in_flight(&mut q, at(20), 3, w), 5);
        // Once the 5 is older than the window, the next highest within it counts.
        assert_eq!(note_in_flight(&mut q, at(31), 1, w), 4);
        assert_eq!(note_in_flight(&mut q, at(32), 1, w), 3);
        assert_eq!(note_in_flight(&mut q, at(51), 0, w), 1);
        assert_eq!(note_in_flight(&mut q, at(63), 0, w), 0);
        assert_eq!(note_in_flight(&mut q, at(100), 0, w), 0);
        // A rise replaces what it exceeds.
        assert_eq!(note_in_flight(&mut q, at(101), 9, w), 9);
        assert_eq!(q.len(), 1);
        // A long steady decline stays bounded.
        for i in 0..10_000u64 {
            note_in_flight(
                &mut q,
                at(102) + Duration::from_micros(i),
                100_000 - i as usize,
                w,
            );
        }
        assert!(q.len() <= MAX_PEAKS, "{}", q.len());
    }
}

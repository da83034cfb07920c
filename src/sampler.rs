//! The metrics sampler: CPU and memory of every running container, for all pools.
//!
//! One loop asks the runtime, at each pool's `pollInterval`, for usage readings of the
//! pool's running containers ([`Runtime::read_usage`]), turns them into usage figures and
//! records them in the observed store, waking a pool's reconcile when a container's load
//! state changes or stays overloaded. Where the readings come from is the runtime's
//! business: Docker reads the cgroup files straight from `/sys/fs/cgroup` (microseconds
//! per container) and follows its streaming stats API where they cannot be read
//! ([`crate::runtime::usage`]); the in-memory runtime answers from its model.
//!
//! CPU usage is a fraction of the container's CPU limit (one core without one), from 0.0
//! to 1.0. From cumulative counters (the cgroup files) it needs two readings: the
//! CPU-time delta over the wall-clock delta. A stats message carries its own two readings
//! (see [`crate::runtime::stats`]). Either way the figure is clamped at the limit
//! ([`cpu_fraction`]): the CFS quota is enforced per 100 ms period, so a container pinned
//! at its limit reads 1.02-1.05 of it over a 1 s window, and more over shorter ones;
//! unclamped, that tipped the scaler's `ceil(sum of usage / threshold)` over the next
//! integer (three containers for a load that needed two).
//!
//! The sampler sees nothing of the controller: it is given the runtime, the store, a way
//! to read the pools' specs and a trigger ([`run`]).
#![deny(clippy::too_many_lines)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::api::EffectiveSpec;
use crate::runtime::cgroup::RawSample;
use crate::runtime::stats::StatsSample;
use crate::runtime::{Runtime, UsageReading};
use crate::scaler::Usage;
use crate::scheduler::Trigger;
use crate::store::ObservedStore;

pub use crate::runtime::usage::Source;

/// The sampler never ticks faster than this, whatever the pools ask.
const MIN_TICK: Duration = Duration::from_millis(200);

/// CPU use of `cores` as a fraction of a container's `cpu_capacity` cores, clamped to
/// 0.0-1.0: a container cannot use more than its limit, and what reads above it is
/// measurement granularity (see the module docs). Non-finite or negative figures read
/// 0.0, so no NaN ever reaches the scaler's sums.
///
/// ```
/// use invok::sampler::cpu_fraction;
/// assert_eq!(cpu_fraction(0.125, 0.25), 0.5);
/// assert_eq!(cpu_fraction(0.2625, 0.25), 1.0); // 1.05 of the limit: at the limit
/// assert_eq!(cpu_fraction(f64::NAN, 0.25), 0.0);
/// assert_eq!(cpu_fraction(-0.1, 1.0), 0.0);
/// ```
pub fn cpu_fraction(cores: f64, cpu_capacity: f64) -> f64 {
    let fraction = cores / cpu_capacity.max(1e-9);
    let fraction = if fraction.is_finite() && fraction > 0.0 {
        fraction.min(1.0)
    } else {
        0.0
    };
    debug_assert!((0.0..=1.0).contains(&fraction), "cpu fraction {fraction}");
    fraction
}

/// Turns two cumulative samples into a usage figure, CPU clamped by [`cpu_fraction`].
///
/// ```
/// use invok::runtime::cgroup::RawSample;
/// use invok::sampler::usage_between;
/// use std::time::Duration;
/// let a = RawSample { cpu_ns: 0, rss: 10 };
/// let b = RawSample { cpu_ns: 500_000_000, rss: 20 };
/// // Half a core for one second, against a 0.5-core limit: 100% of the limit.
/// let u = usage_between(a, b, Duration::from_secs(1), 0.5);
/// assert!((u.cpu - 1.0).abs() < 1e-9 && u.rss == 20);
/// // 0.26 core against a 0.25-core limit (CFS granularity): still 100%, not 104%.
/// let c = RawSample { cpu_ns: 260_000_000, rss: 20 };
/// assert_eq!(usage_between(a, c, Duration::from_secs(1), 0.25).cpu, 1.0);
/// ```
pub fn usage_between(prev: RawSample, now: RawSample, wall: Duration, cpu_capacity: f64) -> Usage {
    let wall_ns = wall.as_nanos().max(1) as f64;
    let cpu_ns = now.cpu_ns.saturating_sub(prev.cpu_ns) as f64;
    Usage {
        cpu: cpu_fraction(cpu_ns / wall_ns, cpu_capacity),
        rss: now.rss,
    }
}

/// The usage a stats message reports, CPU as a fraction of `cpu_capacity` cores clamped
/// to 0.0-1.0 (see [`cpu_fraction`]); `None` without a CPU figure (a stream's first
/// message).
///
/// ```
/// use invok::runtime::stats::StatsSample;
/// use invok::sampler::message_usage;
/// // 0.26 cores against a 0.25-core limit (CFS granularity): at the limit, not above.
/// let s = StatsSample { cpu_cores: Some(0.26), rss: 4096, cpu_ns: 1 };
/// let u = message_usage(&s, 0.25).unwrap();
/// assert_eq!((u.cpu, u.rss), (1.0, 4096));
/// assert_eq!(message_usage(&StatsSample { cpu_cores: None, ..s }, 0.25), None);
/// ```
pub fn message_usage(message: &StatsSample, cpu_capacity: f64) -> Option<Usage> {
    Some(Usage {
        cpu: cpu_fraction(message.cpu_cores?, cpu_capacity),
        rss: message.rss,
    })
}

/// The pools' effective specs by name, read by the sampler on every tick (for each
/// pool's poll interval, CPU capacity and thresholds).
pub type SpecLookup = Arc<dyn Fn() -> HashMap<String, Arc<EffectiveSpec>> + Send + Sync>;

struct Last {
    /// The cumulative sample of the last reading; `None` when it was a stats message (a
    /// message carries its own window, nothing to subtract).
    sample: Option<RawSample>,
    at: Instant,
}

/// Samples until cancelled (the controller aborts it on shutdown): usage of `runtime`'s
/// running containers (as `store` lists them) of the pools `specs` declares, recorded in
/// `store`; `trigger` wakes a pool whose container changed load state or stays
/// overloaded.
pub async fn run<R: Runtime>(
    runtime: Arc<R>,
    store: Arc<ObservedStore>,
    specs: SpecLookup,
    trigger: Trigger,
) {
    let mut last: HashMap<String, Last> = HashMap::new();
    loop {
        let running = store.running();
        let specs = specs();
        let tick = specs
            .values()
            .map(|s| s.scaling.poll_interval)
            .min()
            .unwrap_or(Duration::from_secs(2))
            .max(MIN_TICK);
        let now = Instant::now();
        let due = due(&running, &specs, &last, now);
        let due_ids: Vec<String> = due.iter().map(|(id, _, _)| (*id).clone()).collect();
        let live: HashSet<String> = running.keys().cloned().collect();
        let mut readings = runtime.read_usage(&due_ids, &live);
        for (id, pool, spec) in due {
            let Some(reading) = readings.remove(id) else {
                continue;
            };
            let Some((usage, sample)) = usage_of(reading, last.get(id), spec, now) else {
                continue;
            };
            if let Some(usage) = usage {
                record(&store, &trigger, id, pool, spec, usage, now);
            }
            last.insert(id.clone(), Last { sample, at: now });
        }
        last.retain(|id, _| live.contains(id));
        tokio::time::sleep(tick).await;
    }
}

/// The running containers whose pool wants a sample now: each pool at its own
/// interval, with a little slack for jitter.
fn due<'a>(
    running: &'a BTreeMap<String, (String, String)>,
    specs: &'a HashMap<String, Arc<EffectiveSpec>>,
    last: &HashMap<String, Last>,
    now: Instant,
) -> Vec<(&'a String, &'a String, &'a Arc<EffectiveSpec>)> {
    running
        .iter()
        .filter_map(|(id, (pool, _name))| {
            let spec = specs.get(pool)?;
            let sampled_recently = last.get(id).is_some_and(|l| {
                now.saturating_duration_since(l.at) + MIN_TICK / 2 < spec.scaling.poll_interval
            });
            (!sampled_recently).then_some((id, pool, spec))
        })
        .collect()
}

/// A reading as usage (none yet for a first cumulative sample) and the cumulative
/// sample to keep for the next one; `None` for a stats message without a CPU figure.
fn usage_of(
    reading: UsageReading,
    last: Option<&Last>,
    spec: &EffectiveSpec,
    now: Instant,
) -> Option<(Option<Usage>, Option<RawSample>)> {
    let capacity = spec.template.cpu_capacity();
    match reading {
        UsageReading::Cumulative(sample) => {
            let usage = last.and_then(|prev| {
                Some(usage_between(
                    prev.sample?,
                    sample,
                    now.saturating_duration_since(prev.at),
                    capacity,
                ))
            });
            Some((usage, Some(sample)))
        }
        UsageReading::Message(message) => {
            message_usage(&message, capacity).map(|usage| (Some(usage), None))
        }
    }
}

/// Records a container's usage and wakes its pool when its load state changed (the
/// seed's log line) or it stays overloaded (the scaler looks again with the fresh
/// sample).
fn record(
    store: &ObservedStore,
    trigger: &Trigger,
    id: &str,
    pool: &str,
    spec: &EffectiveSpec,
    usage: Usage,
    now: Instant,
) {
    if let Some(change) = store.record_usage(id, usage, spec, now) {
        tracing::info!(
            "Container {} status changed from {} to {}",
            change.name,
            change.from,
            change.to
        );
        trigger.now(pool);
    } else if usage.cpu > spec.scaling.cpu_overload_threshold
        || usage.rss > spec.scaling.memory_overload_threshold
    {
        trigger.now(pool);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(cpu_ns: u64) -> RawSample {
        RawSample { cpu_ns, rss: 7 }
    }

    #[test]
    fn a_container_pinned_at_its_limit_reads_at_most_the_limit() {
        // 1.02-1.05 of a 0.25-CPU limit over 1 s, as CFS periods make it read here.
        for used_ns in [255_000_000, 262_500_000, 300_000_000] {
            let u = usage_between(at(0), at(used_ns), Duration::from_secs(1), 0.25);
            assert_eq!(u.cpu, 1.0, "{used_ns} ns");
            assert_eq!(u.rss, 7);
        }
        // Below the limit the figure is untouched.
        let u = usage_between(at(0), at(200_000_000), Duration::from_secs(1), 0.25);
        assert!((u.cpu - 0.8).abs() < 1e-9, "{}", u.cpu);
    }

    #[test]
    fn degenerate_windows_and_limits_read_within_zero_and_one() {
        let one_s = Duration::from_secs(1);
        // A counter that went back (a restarted container's cgroup): no negative usage.
        assert_eq!(usage_between(at(500), at(100), one_s, 1.0).cpu, 0.0);
        // No time passed: at most the limit, never infinity.
        assert_eq!(usage_between(at(0), at(100), Duration::ZERO, 1.0).cpu, 1.0);
        assert_eq!(usage_between(at(0), at(0), Duration::ZERO, 1.0).cpu, 0.0);
        // A zero, negative or NaN capacity never yields NaN or infinity.
        for capacity in [0.0, -1.0, f64::NAN] {
            let cpu = usage_between(at(0), at(100), one_s, capacity).cpu;
            assert!((0.0..=1.0).contains(&cpu), "{capacity}: {cpu}");
        }
    }

    #[test]
    fn usage_of_a_stats_message_pinned_at_its_limit_is_clamped_to_the_limit() {
        // The message `runtime::stats` parses for 0.2625 cores (1.05 of a 0.25-core limit,
        // CFS period granularity over a 1 s window): reported as 1.0.
        let s = StatsSample {
            cpu_cores: Some(0.2625),
            rss: 4000,
            cpu_ns: 10_262_500_000,
        };
        let u = message_usage(&s, 0.25).unwrap();
        assert_eq!(u.cpu, 1.0);
        assert_eq!(u.rss, 4000);
        // Below the limit the figure is kept as it is.
        let half = message_usage(&s, 0.5).unwrap().cpu;
        assert!((half - 0.525).abs() < 1e-9, "{half}");
        // A message without a previous reading (a stream's first) has no usage.
        let first = StatsSample {
            cpu_cores: None,
            ..s
        };
        assert_eq!(message_usage(&first, 0.25), None);
    }

    #[test]
    fn cpu_fraction_keeps_non_finite_and_negative_figures_out() {
        for cores in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.5, -0.0] {
            assert_eq!(cpu_fraction(cores, 0.5), 0.0, "{cores}");
        }
        assert_eq!(cpu_fraction(0.25, 0.5), 0.5);
        assert_eq!(cpu_fraction(2.0, 1.0), 1.0);
        assert_eq!(cpu_fraction(0.25, f64::INFINITY), 0.0);
    }
}

//! The metrics sampler: CPU and memory of every running container, for all pools.
//!
//! One loop samples every container at its pool's `pollInterval`. It reads the cgroup
//! files straight from `/sys/fs/cgroup` (microseconds per container); where they cannot
//! be read (a remote daemon) it falls back to Docker's streaming stats API, one
//! long-lived stream per container, never a blocking `stream=false` call per tick.
//!
//! CPU usage is a fraction of the container's CPU limit (one core without one), from 0.0
//! to 1.0. From the cgroup files it needs two samples: the CPU-time delta over the
//! wall-clock delta. A stats message carries its own two readings (see [`stats`]).
//! Either way the figure is clamped at the limit ([`cpu_fraction`]): the CFS quota is
//! enforced per 100 ms period, so a container pinned at its limit reads 1.02-1.05 of it
//! over a 1 s window, and more over shorter ones; unclamped, that tipped the scaler's
//! `ceil(sum of usage / threshold)` over the next integer (three containers for a load
//! that needed two).

pub mod cgroup;
pub mod stats;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::controller::Shared;
use crate::runtime::Runtime;
use crate::scaler::Usage;
use cgroup::{CgroupError, CgroupReader, RawSample};

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
/// use invok::sampler::{cgroup::RawSample, usage_between};
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

/// Where the sampler reads usage from, chosen with `INVOK_SAMPLER` (for figures and for
/// hosts where one path misbehaves).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `auto` (the default): cgroup files, the stats API when none is readable.
    Auto,
    /// `cgroup`: cgroup files only, never the stats API.
    Cgroup,
    /// `stats`: Docker's streaming stats API only, even where cgroup files are readable.
    Stats,
}

impl Source {
    /// Parses `auto`, `cgroup` or `stats`.
    ///
    /// ```
    /// use invok::sampler::Source;
    /// assert_eq!(Source::parse("stats"), Ok(Source::Stats));
    /// assert!(Source::parse("cgroups").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Source, String> {
        match s.trim() {
            "" | "auto" => Ok(Source::Auto),
            "cgroup" => Ok(Source::Cgroup),
            "stats" => Ok(Source::Stats),
            other => Err(format!(
                "INVOK_SAMPLER: {other:?} is not one of auto, cgroup, stats"
            )),
        }
    }

    /// `INVOK_SAMPLER`, or `auto` when unset.
    pub fn from_env() -> Result<Source, String> {
        std::env::var("INVOK_SAMPLER")
            .map(|v| Source::parse(&v))
            .unwrap_or(Ok(Source::Auto))
    }
}

struct Last {
    /// The cgroup sample of the last read; `None` when it came from the stats API (a
    /// stats message carries its own window, nothing to subtract).
    sample: Option<RawSample>,
    at: Instant,
}

/// Where one container's usage came from this tick.
enum Reading {
    /// A cumulative cgroup sample: usage needs the previous one.
    Cgroup(RawSample),
    /// A stats message's own figure.
    Stats(Usage),
}

/// Samples until cancelled (the controller aborts it on shutdown).
pub async fn run<R: Runtime>(shared: Arc<Shared<R>>) {
    let reader = CgroupReader::detect();
    let source = Source::from_env().unwrap_or_else(|e| {
        tracing::error!("{e}; sampling with auto");
        Source::Auto
    });
    let mut fallback: Option<stats::StatsSampler> = None;
    let mut last: HashMap<String, Last> = HashMap::new();
    let mut logged_layout = false;
    let mut missing: HashSet<String> = HashSet::new();
    loop {
        let running = shared.store.running();
        let specs: HashMap<String, Arc<crate::api::EffectiveSpec>> = {
            let d = shared.desired();
            d.pools
                .iter()
                .map(|(k, v)| (k.clone(), v.spec.clone()))
                .collect()
        };
        let tick = specs
            .values()
            .map(|s| s.scaling.poll_interval)
            .min()
            .unwrap_or(Duration::from_secs(2))
            .max(MIN_TICK);
        let now = Instant::now();
        let mut cgroup_failed: Vec<String> = Vec::new();
        // Containers whose cgroup was missing last tick too: a container that vanished
        // between list and read is no sign that cgroup files are unreadable here.
        let missing_before = std::mem::take(&mut missing);
        for (id, (pool, _name)) in &running {
            let Some(spec) = specs.get(pool) else {
                continue;
            };
            if let Some(l) = last.get(id) {
                // Sample each pool at its own interval (with a little slack for jitter).
                if now.saturating_duration_since(l.at) + MIN_TICK / 2 < spec.scaling.poll_interval {
                    continue;
                }
            }
            let read = if let Some(sample) = shared.runtime.read_usage(id) {
                Ok(sample)
            } else if source == Source::Stats {
                Err(CgroupError::NotFound)
            } else {
                reader.read(id)
            };
            let capacity = spec.template.cpu_capacity();
            let reading = match read {
                Ok(s) => Some(Reading::Cgroup(s)),
                Err(e) => {
                    if !matches!(e, CgroupError::NotFound) {
                        tracing::debug!(container = %id, "cgroup read failed: {e}");
                    }
                    cgroup_failed.push(id.clone());
                    fallback
                        .as_ref()
                        .and_then(|f| f.usage(id, capacity))
                        .map(Reading::Stats)
                }
            };
            let Some(reading) = reading else { continue };
            if !logged_layout && matches!(reading, Reading::Cgroup(_)) {
                if let Some(layout) = reader.layout() {
                    tracing::info!("sampling container usage from cgroup files ({layout})");
                    logged_layout = true;
                }
            }
            let (usage, sample) = match reading {
                Reading::Cgroup(sample) => {
                    let usage = last.get(id).and_then(|prev| {
                        Some(usage_between(
                            prev.sample?,
                            sample,
                            now.saturating_duration_since(prev.at),
                            capacity,
                        ))
                    });
                    (usage, Some(sample))
                }
                Reading::Stats(usage) => (Some(usage), None),
            };
            if let Some(usage) = usage {
                if let Some(change) = shared.store.record_usage(id, usage, spec, now) {
                    tracing::info!(
                        "Container {} status changed from {} to {}",
                        change.name,
                        change.from,
                        change.to
                    );
                    shared.trigger.now(pool);
                } else if usage.cpu > spec.scaling.cpu_overload_threshold
                    || usage.rss > spec.scaling.memory_overload_threshold
                {
                    // Still overloaded: let the scaler look again with the fresh sample.
                    shared.trigger.now(pool);
                }
            }
            last.insert(id.clone(), Last { sample, at: now });
        }
        // No cgroup file readable at all (a remote daemon): follow Docker's stats streams.
        // A local container that vanished between list and read is no reason to.
        missing = cgroup_failed.iter().cloned().collect();
        if source == Source::Auto {
            cgroup_failed.retain(|id| missing_before.contains(id));
        }
        let use_stats = match source {
            Source::Auto => reader.layout().is_none(),
            Source::Cgroup => false,
            Source::Stats => true,
        };
        if !cgroup_failed.is_empty() && use_stats {
            if let Some(docker) = shared.runtime.docker_client() {
                let f = fallback.get_or_insert_with(|| {
                    if source == Source::Stats {
                        tracing::info!(
                            "INVOK_SAMPLER=stats: sampling through the Docker stats API"
                        );
                    } else {
                        tracing::info!(
                            "cgroup files not readable; sampling through the Docker stats API"
                        );
                    }
                    stats::StatsSampler::new(docker)
                });
                for id in &cgroup_failed {
                    f.track(id);
                }
            }
        }
        let live: HashSet<String> = running.keys().cloned().collect();
        last.retain(|id, _| live.contains(id));
        if let Some(f) = &fallback {
            f.untrack_missing(&live);
        }
        tokio::time::sleep(tick).await;
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
    fn cpu_fraction_keeps_non_finite_and_negative_figures_out() {
        for cores in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.5, -0.0] {
            assert_eq!(cpu_fraction(cores, 0.5), 0.0, "{cores}");
        }
        assert_eq!(cpu_fraction(0.25, 0.5), 0.5);
        assert_eq!(cpu_fraction(2.0, 1.0), 1.0);
        assert_eq!(cpu_fraction(0.25, f64::INFINITY), 0.0);
    }
}

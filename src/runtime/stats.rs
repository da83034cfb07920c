//! Container usage from Docker's stats API, for when the cgroup files cannot be read (a
//! remote daemon, or a layout [`super::cgroup::CgroupReader`] does not know). Part of the
//! runtime because it is Docker's own stream; [`super::usage`] decides when to follow it.
//!
//! One long-lived streaming request (`stream=true`) per container: the daemon pushes a
//! sample about once a second and [`StatsSampler::latest`] returns the newest one without
//! any request. A `stream=false` call per container per tick would cost 1-2 s each (the
//! daemon samples twice, one second apart).
//!
//! Each message carries two CPU readings, `cpu_stats` and `precpu_stats` (the daemon's
//! previous one), so CPU is computed inside one message as `docker stats` does: the
//! container's CPU-time delta over the host's system-usage delta, times the online CPUs.
//! Deltas of the cumulative figures across messages would divide the daemon's time
//! between two messages (about 1 s, jittered) by the sampler's tick: with a 500 ms tick
//! they read 0 or twice the true figure.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bollard::models::ContainerStatsResponse;
use bollard::query_parameters::StatsOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;
use tokio::task::AbortHandle;

/// What one stats message says about a container. The sampler turns it into a usage
/// figure with `invok::sampler::message_usage` (CPU as a fraction of the container's
/// limit, clamped to it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StatsSample {
    /// Cores used over the message's own window (`cpu_stats` minus `precpu_stats`), as
    /// `docker stats` computes it. `None` when the message holds no previous reading (a
    /// stream's first message) or its counters went backwards.
    pub cpu_cores: Option<f64>,
    /// Resident memory in bytes (`memory_stats.stats` `total_rss`, `rss` or `anon`, else
    /// usage minus page cache).
    pub rss: u64,
    /// The cumulative CPU time of the message (`cpu_stats.cpu_usage.total_usage`, ns):
    /// to tell messages apart and to compare with the cgroup files. CPU usage comes from
    /// [`StatsSample::cpu_cores`], never from deltas of this across messages.
    pub cpu_ns: u64,
}

struct Entry {
    /// Which `track` started the current task: a task that was replaced or untracked
    /// stops writing (and stops) when it sees another generation.
    generation: u64,
    task: AbortHandle,
    latest: Option<StatsSample>,
    /// When `latest` arrived: a stream that ended or stalls must not have its last
    /// figure (perhaps "overloaded") republished on every tick.
    received: Option<tokio::time::Instant>,
}

/// A message older than this is no sample any more (the daemon sends one a second).
pub const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(3);

type Entries = Arc<Mutex<HashMap<String, Entry>>>;

/// Follows the stats streams of a set of containers and keeps the latest sample of each.
///
/// Made by [`super::docker::DockerRuntime::stats_sampler`], on that runtime's daemon.
/// Background tasks run on the Tokio runtime [`StatsSampler::track`] is called from; they
/// are all aborted when the sampler is dropped.
pub struct StatsSampler {
    docker: Docker,
    entries: Entries,
    next_generation: AtomicU64,
}

impl std::fmt::Debug for StatsSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsSampler")
            .field("tracked", &lock(&self.entries).len())
            .finish_non_exhaustive()
    }
}

fn lock(entries: &Entries) -> MutexGuard<'_, HashMap<String, Entry>> {
    // A panic while holding the lock leaves the map consistent (single inserts/removes).
    entries.lock().unwrap_or_else(|e| e.into_inner())
}

impl StatsSampler {
    /// A sampler that talks to this daemon. Starts nothing until [`track`](Self::track).
    pub(crate) fn new(docker: Docker) -> Self {
        StatsSampler {
            docker,
            entries: Arc::new(Mutex::new(HashMap::new())),
            next_generation: AtomicU64::new(0),
        }
    }

    /// Follows the stats stream of the container `id` (id or name) in a background task,
    /// unless one already runs for it. A task whose stream ended or failed (daemon
    /// restart, transient error) is started again; the last sample is kept meanwhile.
    ///
    /// # Panics
    ///
    /// When called outside a Tokio runtime.
    pub fn track(&self, id: &str) {
        let mut entries = lock(&self.entries);
        if let Some(entry) = entries.get(id) {
            if !entry.task.is_finished() {
                return;
            }
        }
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let task = tokio::spawn(follow(
            self.docker.clone(),
            self.entries.clone(),
            id.to_string(),
            generation,
        ))
        .abort_handle();
        let (latest, received) = entries
            .get(id)
            .map(|e| (e.latest, e.received))
            .unwrap_or_default();
        entries.insert(
            id.to_string(),
            Entry {
                generation,
                task,
                latest,
                received,
            },
        );
    }

    /// Stops following the container `id` and forgets its samples.
    pub fn untrack(&self, id: &str) {
        if let Some(entry) = lock(&self.entries).remove(id) {
            entry.task.abort();
        }
    }

    /// Stops following every container whose id is not in `live_ids`, and forgets them.
    pub fn untrack_missing(&self, live_ids: &HashSet<String>) {
        lock(&self.entries).retain(|id, entry| {
            let keep = live_ids.contains(id);
            if !keep {
                entry.task.abort();
            }
            keep
        });
    }

    /// Whether the container `id` is tracked (its task may have ended since).
    pub fn is_tracked(&self, id: &str) -> bool {
        lock(&self.entries).contains_key(id)
    }

    /// The latest message streamed for the container `id`. `None` when it is not tracked,
    /// when the last message is older than [`STALE_AFTER`] (the stream ended or stalls),
    /// or no message has arrived yet (the first one comes within about a second, and
    /// carries a CPU figure from the second on).
    pub fn latest(&self, id: &str) -> Option<StatsSample> {
        lock(&self.entries)
            .get(id)
            .filter(|e| e.received.is_some_and(|t| t.elapsed() < STALE_AFTER))
            .and_then(|e| e.latest)
    }

    /// The latest message of the container `id` if it carries a CPU figure (see
    /// [`StatsSample::cpu_cores`]): `None` until a message with one has arrived, and as
    /// [`latest`](Self::latest) says.
    pub fn latest_with_cpu(&self, id: &str) -> Option<StatsSample> {
        self.latest(id).filter(|s| s.cpu_cores.is_some())
    }
}

impl Drop for StatsSampler {
    fn drop(&mut self) {
        for (_, entry) in lock(&self.entries).drain() {
            entry.task.abort();
        }
    }
}

/// The background task: reads the stream and stores each sample until the stream ends,
/// fails, or the entry is no longer this task's.
async fn follow(docker: Docker, entries: Entries, id: String, generation: u64) {
    let options = StatsOptionsBuilder::new()
        .stream(true)
        .one_shot(false)
        .build();
    let mut stream = docker.stats(&id, Some(options));
    while let Some(item) = stream.next().await {
        let stats = match item {
            Ok(stats) => stats,
            Err(e) => {
                tracing::debug!(container = %id, "stats stream failed: {e}");
                return;
            }
        };
        let sample = raw_sample(&stats);
        let mut entries = lock(&entries);
        match entries.get_mut(&id) {
            Some(entry) if entry.generation == generation => {
                if sample.is_some() {
                    entry.latest = sample;
                    entry.received = Some(tokio::time::Instant::now());
                }
            }
            // Untracked, or replaced by a newer task.
            _ => return,
        }
    }
    tracing::debug!(container = %id, "stats stream ended");
}

/// The sample in one stats message, or `None` when it carries none (a stopped
/// container's stream sends empty messages).
fn raw_sample(stats: &ContainerStatsResponse) -> Option<StatsSample> {
    let cpu_ns = stats.cpu_stats.as_ref()?.cpu_usage.as_ref()?.total_usage?;
    let memory = stats.memory_stats.as_ref()?;
    let values = memory.stats.as_ref();
    let get = |key: &str| values.and_then(|v| v.get(key)).copied();
    let rss = get("total_rss")
        .or_else(|| get("rss"))
        .or_else(|| get("anon"))
        .or_else(|| {
            let usage = memory.usage?;
            let cache = get("total_cache")
                .or_else(|| get("cache"))
                .or_else(|| get("total_inactive_file"))
                .or_else(|| get("inactive_file"))
                .unwrap_or(0);
            Some(usage.saturating_sub(cache))
        })?;
    if cpu_ns == 0 && rss == 0 {
        return None;
    }
    Some(StatsSample {
        cpu_cores: cpu_cores(stats),
        rss,
        cpu_ns,
    })
}

/// Cores used between the message's `precpu_stats` and `cpu_stats`, as `docker stats`
/// computes it (`calculateCPUPercentUnix`, without the factor 100): CPU-time delta over
/// system-usage delta, times the online CPUs (the per-CPU list's length where the daemon
/// does not say). `None` without a previous reading (the daemon zeroes `precpu_stats` in
/// a stream's first message), when no host time passed, or when a counter went back.
fn cpu_cores(stats: &ContainerStatsResponse) -> Option<f64> {
    let now = stats.cpu_stats.as_ref()?;
    let pre = stats.precpu_stats.as_ref()?;
    let pre_system = pre.system_cpu_usage.filter(|&s| s > 0)?;
    let system_delta = now
        .system_cpu_usage?
        .checked_sub(pre_system)
        .filter(|&d| d > 0)?;
    let cpu_delta = now
        .cpu_usage
        .as_ref()?
        .total_usage?
        .checked_sub(pre.cpu_usage.as_ref()?.total_usage?)?;
    let online = now
        .online_cpus
        .filter(|&n| n > 0)
        .map(f64::from)
        .or_else(|| {
            let per_cpu = now.cpu_usage.as_ref()?.percpu_usage.as_ref()?.len();
            (per_cpu > 0).then_some(per_cpu as f64)
        })?;
    let cores = cpu_delta as f64 / system_delta as f64 * online;
    cores.is_finite().then_some(cores)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::test_support::dead_docker;
    use std::time::Duration;

    fn parse(json: &str) -> ContainerStatsResponse {
        serde_json::from_str(json).unwrap()
    }

    /// A message without `precpu_stats`: RSS and cumulative CPU, no CPU figure.
    fn no_cpu_figure(cpu_ns: u64, rss: u64) -> StatsSample {
        StatsSample {
            cpu_cores: None,
            rss,
            cpu_ns,
        }
    }

    /// A cgroup v1 message with both CPU readings (ns), like the daemon streams.
    fn message(cpu: u64, system: u64, pre_cpu: u64, pre_system: u64, online: u32) -> String {
        format!(
            r#"{{"cpu_stats":{{"cpu_usage":{{"total_usage":{cpu}}},"system_cpu_usage":{system},"online_cpus":{online}}},
                "precpu_stats":{{"cpu_usage":{{"total_usage":{pre_cpu}}},"system_cpu_usage":{pre_system},"online_cpus":{online}}},
                "memory_stats":{{"usage":9000,"stats":{{"total_rss":4000}}}}}}"#
        )
    }

    fn cores_of(json: &str) -> Option<f64> {
        raw_sample(&parse(json)).and_then(|s| s.cpu_cores)
    }

    #[test]
    fn cpu_comes_from_the_delta_inside_one_message() {
        // One second of host time on 2 CPUs is 2e9 ns of system usage; the container
        // used 0.25 s of CPU in it: a quarter of one core.
        let json = message(
            10_250_000_000,
            1_002_000_000_000,
            10_000_000_000,
            1_000_000_000_000,
            2,
        );
        let cores = cores_of(&json).unwrap();
        assert!((cores - 0.25).abs() < 1e-9, "{cores}");
        // The cumulative figure is the message's own, not a delta.
        assert_eq!(raw_sample(&parse(&json)).unwrap().cpu_ns, 10_250_000_000);
    }

    #[test]
    fn cpu_is_the_rate_inside_the_message_whatever_the_totals() {
        // Half a core over the daemon's window, early and late in a container's life.
        let late = message(
            60_500_000_000,
            2_002_000_000_000,
            60_000_000_000,
            2_000_000_000_000,
            2,
        );
        let early = message(500_000_000, 4_000_000_000, 0, 2_000_000_000, 2);
        assert_eq!(cores_of(&late), Some(0.5));
        assert_eq!(cores_of(&early), Some(0.5));
    }

    #[test]
    fn online_cpus_falls_back_to_the_per_cpu_list() {
        let json = r#"{"cpu_stats":{"cpu_usage":{"total_usage":2000,"percpu_usage":[1000,1000,0,0]},"system_cpu_usage":8000},
            "precpu_stats":{"cpu_usage":{"total_usage":0},"system_cpu_usage":4000},
            "memory_stats":{"stats":{"rss":1}}}"#;
        // 2000 ns of CPU over 4000 ns of system time on 4 CPUs: two cores.
        assert_eq!(cores_of(json), Some(2.0));
    }

    #[test]
    fn a_message_without_a_previous_reading_has_no_cpu_figure() {
        // A stream's first message: the daemon zeroes precpu_stats.
        let first = message(10_000_000_000, 1_000_000_000_000, 0, 0, 2);
        let s = raw_sample(&parse(&first)).unwrap();
        assert_eq!(s.cpu_cores, None);
        assert_eq!(s.rss, 4000);
        // No host time passed, or a counter went back: no figure either.
        assert_eq!(cores_of(&message(5, 1000, 4, 1000, 2)), None);
        assert_eq!(cores_of(&message(5, 900, 4, 1000, 2)), None);
        assert_eq!(cores_of(&message(3, 2000, 4, 1000, 2)), None);
        // Nothing says how many CPUs there are.
        assert_eq!(cores_of(&message(5, 2000, 4, 1000, 0)), None);
    }

    #[test]
    fn a_container_pinned_at_its_limit_reads_the_cores_it_used_unclamped() {
        // 0.2625 cores against a 0.25-core limit (CFS period granularity over a 1 s
        // window): the message says what it measured; the sampler clamps it to the limit
        // (`sampler::message_usage`, tested there with this very sample).
        let json = message(
            10_262_500_000,
            1_002_000_000_000,
            10_000_000_000,
            1_000_000_000_000,
            2,
        );
        let s = raw_sample(&parse(&json)).unwrap();
        assert!(s.cpu_cores.unwrap() > 0.26);
        assert!((s.cpu_cores.unwrap() - 0.2625).abs() < 1e-9, "{s:?}");
        assert_eq!(s.rss, 4000);
    }

    #[test]
    fn v1_message() {
        let s = parse(
            r#"{"read":"2026-11-27T20:00:00.1Z","cpu_stats":{"cpu_usage":{"total_usage":123456789},
                "system_cpu_usage":1,"online_cpus":2},
                "memory_stats":{"usage":90000000,"stats":{"cache":1000,"rss":4000,"total_rss":67108864}}}"#,
        );
        assert_eq!(raw_sample(&s), Some(no_cpu_figure(123_456_789, 67_108_864)));
    }

    #[test]
    fn v1_without_total_rss_uses_rss() {
        let s = parse(
            r#"{"cpu_stats":{"cpu_usage":{"total_usage":5}},
                "memory_stats":{"usage":9000,"stats":{"cache":1000,"rss":4000}}}"#,
        );
        assert_eq!(raw_sample(&s), Some(no_cpu_figure(5, 4000)));
    }

    #[test]
    fn v2_message_uses_anon() {
        let s = parse(
            r#"{"cpu_stats":{"cpu_usage":{"total_usage":7}},
                "memory_stats":{"usage":9000,"stats":{"anon":3000,"file":5000,"inactive_file":4000}}}"#,
        );
        assert_eq!(raw_sample(&s), Some(no_cpu_figure(7, 3000)));
    }

    #[test]
    fn without_rss_keys_uses_usage_minus_cache() {
        let s = parse(
            r#"{"cpu_stats":{"cpu_usage":{"total_usage":7}},
                "memory_stats":{"usage":9000,"stats":{"inactive_file":4000}}}"#,
        );
        assert_eq!(raw_sample(&s), Some(no_cpu_figure(7, 5000)));
        let s =
            parse(r#"{"cpu_stats":{"cpu_usage":{"total_usage":7}},"memory_stats":{"usage":9000}}"#);
        assert_eq!(raw_sample(&s), Some(no_cpu_figure(7, 9000)));
    }

    #[test]
    fn stopped_container_message_has_no_sample() {
        let s = parse(
            r#"{"read":"0001-01-01T00:00:00Z","cpu_stats":{"cpu_usage":{"total_usage":0}},
                "memory_stats":{}}"#,
        );
        assert_eq!(raw_sample(&s), None);
        assert_eq!(raw_sample(&parse("{}")), None);
    }

    #[tokio::test]
    async fn track_untrack_and_restart() {
        let (_dir, docker) = dead_docker();
        let sampler = StatsSampler::new(docker);
        sampler.track("a");
        sampler.track("b");
        sampler.track("a"); // already tracked: no second task
        assert!(sampler.is_tracked("a") && sampler.is_tracked("b"));
        assert_eq!(sampler.latest("a"), None);

        // The failed stream ends its task; the entry stays until untracked, and `track`
        // starts a new task for it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let finished = lock(&sampler.entries)
                .get("a")
                .map(|e| e.task.is_finished())
                .unwrap();
            if finished {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "task did not end");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let before = lock(&sampler.entries)["a"].generation;
        sampler.track("a");
        assert_ne!(lock(&sampler.entries)["a"].generation, before);

        let live: HashSet<String> = ["b".to_string()].into();
        sampler.untrack_missing(&live);
        assert!(!sampler.is_tracked("a") && sampler.is_tracked("b"));
        sampler.untrack("b");
        assert!(!sampler.is_tracked("b"));
        assert_eq!(sampler.latest("b"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_older_than_the_stale_limit_is_no_sample() {
        let (_dir, docker) = dead_docker();
        let sampler = StatsSampler::new(docker);
        sampler.track("a");
        let sample = StatsSample {
            cpu_cores: Some(0.9),
            rss: 1,
            cpu_ns: 1,
        };
        {
            let mut entries = lock(&sampler.entries);
            let e = entries.get_mut("a").unwrap();
            e.latest = Some(sample);
            e.received = Some(tokio::time::Instant::now());
        }
        assert_eq!(sampler.latest("a"), Some(sample));
        // The stream ended (a dockerd restart): its last figure is not republished.
        tokio::time::advance(STALE_AFTER).await;
        assert_eq!(sampler.latest("a"), None);
        assert_eq!(sampler.latest_with_cpu("a"), None);
    }

    #[tokio::test]
    async fn drop_aborts_tasks() {
        let (_dir, docker) = dead_docker();
        let sampler = StatsSampler::new(docker);
        sampler.track("x");
        let task = lock(&sampler.entries)["x"].task.clone();
        drop(sampler);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !task.is_finished() {
            assert!(tokio::time::Instant::now() < deadline, "task still running");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

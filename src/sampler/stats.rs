//! Container usage from Docker's stats API, for when the cgroup files cannot be read (a
//! remote daemon, or a layout [`super::cgroup::CgroupReader`] does not know).
//!
//! One long-lived streaming request (`stream=true`) per container: the daemon pushes a
//! sample about once a second and [`StatsSampler::latest`] returns the newest one without
//! any request. A `stream=false` call per container per tick would cost 1-2 s each (the
//! daemon samples twice, one second apart).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bollard::models::ContainerStatsResponse;
use bollard::query_parameters::StatsOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;
use tokio::task::AbortHandle;

use super::cgroup::RawSample;

struct Entry {
    /// Which `track` started the current task: a task that was replaced or untracked
    /// stops writing (and stops) when it sees another generation.
    generation: u64,
    task: AbortHandle,
    latest: Option<RawSample>,
}

type Entries = Arc<Mutex<HashMap<String, Entry>>>;

/// Follows the stats streams of a set of containers and keeps the latest sample of each.
///
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
    pub fn new(docker: Docker) -> Self {
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
        let latest = entries.get(id).and_then(|e| e.latest);
        entries.insert(
            id.to_string(),
            Entry {
                generation,
                task,
                latest,
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

    /// The latest sample streamed for the container `id`: cumulative CPU time
    /// (`cpu_stats.cpu_usage.total_usage`, ns) and RSS (`memory_stats.stats` `total_rss`,
    /// `rss` or `anon`, else usage minus page cache). `None` when it is not tracked or no
    /// sample has arrived yet (the first one comes within about a second).
    pub fn latest(&self, id: &str) -> Option<RawSample> {
        lock(&self.entries).get(id).and_then(|e| e.latest)
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
fn raw_sample(stats: &ContainerStatsResponse) -> Option<RawSample> {
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
    Some(RawSample { cpu_ns, rss })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse(json: &str) -> ContainerStatsResponse {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn v1_message() {
        let s = parse(
            r#"{"read":"2026-11-27T20:00:00.1Z","cpu_stats":{"cpu_usage":{"total_usage":123456789},
                "system_cpu_usage":1,"online_cpus":2},
                "memory_stats":{"usage":90000000,"stats":{"cache":1000,"rss":4000,"total_rss":67108864}}}"#,
        );
        assert_eq!(
            raw_sample(&s),
            Some(RawSample {
                cpu_ns: 123_456_789,
                rss: 67_108_864
            })
        );
    }

    #[test]
    fn v1_without_total_rss_uses_rss() {
        let s = parse(
            r#"{"cpu_stats":{"cpu_usage":{"total_usage":5}},
                "memory_stats":{"usage":9000,"stats":{"cache":1000,"rss":4000}}}"#,
        );
        assert_eq!(
            raw_sample(&s),
            Some(RawSample {
                cpu_ns: 5,
                rss: 4000
            })
        );
    }

    #[test]
    fn v2_message_uses_anon() {
        let s = parse(
            r#"{"cpu_stats":{"cpu_usage":{"total_usage":7}},
                "memory_stats":{"usage":9000,"stats":{"anon":3000,"file":5000,"inactive_file":4000}}}"#,
        );
        assert_eq!(
            raw_sample(&s),
            Some(RawSample {
                cpu_ns: 7,
                rss: 3000
            })
        );
    }

    #[test]
    fn without_rss_keys_uses_usage_minus_cache() {
        let s = parse(
            r#"{"cpu_stats":{"cpu_usage":{"total_usage":7}},
                "memory_stats":{"usage":9000,"stats":{"inactive_file":4000}}}"#,
        );
        assert_eq!(
            raw_sample(&s),
            Some(RawSample {
                cpu_ns: 7,
                rss: 5000
            })
        );
        let s =
            parse(r#"{"cpu_stats":{"cpu_usage":{"total_usage":7}},"memory_stats":{"usage":9000}}"#);
        assert_eq!(
            raw_sample(&s),
            Some(RawSample {
                cpu_ns: 7,
                rss: 9000
            })
        );
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

    /// A client for a "socket" that is a plain file: every stream fails at once. Keep the
    /// directory alive as long as the client.
    fn dead_docker() -> (tempfile::TempDir, Docker) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        std::fs::write(&path, "").unwrap();
        let docker =
            Docker::connect_with_unix(path.to_str().unwrap(), 5, bollard::API_DEFAULT_VERSION)
                .unwrap();
        (dir, docker)
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

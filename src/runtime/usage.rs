//! How the Docker runtime reads container usage for the sampler: straight from the cgroup
//! files of the local kernel, or, where none is readable (a remote daemon), from Docker's
//! streaming stats API.
//!
//! The cgroup files cost microseconds per container ([`super::cgroup`]). The stats API
//! is followed with one long-lived stream per container ([`super::stats`]), never a
//! blocking `stream=false` call per tick (one to two seconds each). `INVOK_SAMPLER`
//! ([`Source`]) can force either path, for figures and for hosts where one misbehaves.
//!
//! In `auto`, the streams start only when no cgroup layout has been readable at all, and
//! only for a container whose cgroup was missing on two ticks in a row: a container that
//! vanished between the list and the read is no sign that cgroup files are unreadable
//! here. Streams of containers that stopped running are closed.

use std::collections::{HashMap, HashSet};

use bollard::Docker;

use super::cgroup::{CgroupError, CgroupReader, ContainerFiles};
use super::stats::StatsSampler;
use super::UsageReading;

/// Where the Docker runtime reads usage from, chosen with `INVOK_SAMPLER` (for figures
/// and for hosts where one path misbehaves).
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
    /// use invok::runtime::usage::Source;
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

/// The usage-reading state of one Docker runtime, kept from tick to tick: the cgroup
/// layout that worked, the stats streams, the containers whose cgroup was missing.
#[derive(Debug)]
pub(crate) struct UsageReader {
    source: Source,
    cgroups: CgroupReader,
    /// The cgroup files of the containers read on earlier ticks, kept open; closed
    /// when a container stops running or its files fail.
    files: HashMap<String, ContainerFiles>,
    /// Scratch space for reading them.
    buf: Vec<u8>,
    /// For the stats streams, started on first need.
    docker: Docker,
    streams: Option<StatsSampler>,
    /// Containers whose cgroup could not be read on the last tick.
    missing: HashSet<String>,
    logged_layout: bool,
}

impl UsageReader {
    /// The reader `INVOK_SAMPLER` asks for (`auto` when it is unset or invalid: an
    /// invalid value is logged), on the host's cgroup tree and this daemon.
    pub(crate) fn from_env(docker: Docker) -> UsageReader {
        let source = Source::from_env().unwrap_or_else(|e| {
            tracing::error!("{e}; sampling with auto");
            Source::Auto
        });
        UsageReader::new(source, CgroupReader::detect(), docker)
    }

    pub(crate) fn new(source: Source, cgroups: CgroupReader, docker: Docker) -> UsageReader {
        UsageReader {
            source,
            cgroups,
            files: HashMap::new(),
            buf: Vec::new(),
            docker,
            streams: None,
            missing: HashSet::new(),
            logged_layout: false,
        }
    }

    /// One tick (see [`super::Runtime::read_usage`]): a reading for each container of
    /// `due` that has one; streams started for containers whose cgroup cannot be read
    /// (as the module docs say), and closed for those no longer in `running`.
    pub(crate) fn read(
        &mut self,
        due: &[String],
        running: &HashSet<String>,
    ) -> HashMap<String, UsageReading> {
        let mut readings = HashMap::new();
        let mut failed: Vec<String> = Vec::new();
        let missing_before = std::mem::take(&mut self.missing);
        for id in due {
            let read = if self.source == Source::Stats {
                Err(CgroupError::NotFound)
            } else {
                self.read_cgroup(id)
            };
            match read {
                Ok(sample) => {
                    if !self.logged_layout {
                        if let Some(layout) = self.cgroups.layout() {
                            tracing::info!("sampling container usage from cgroup files ({layout})");
                            self.logged_layout = true;
                        }
                    }
                    readings.insert(id.clone(), UsageReading::Cumulative(sample));
                }
                Err(e) => {
                    if !matches!(e, CgroupError::NotFound) {
                        tracing::debug!(container = %id, "cgroup read failed: {e}");
                    }
                    failed.push(id.clone());
                    if let Some(message) = self.streams.as_ref().and_then(|s| s.latest_with_cpu(id))
                    {
                        readings.insert(id.clone(), UsageReading::Message(message));
                    }
                }
            }
        }
        // No cgroup file readable at all (a remote daemon): follow Docker's stats streams.
        // A local container that vanished between list and read is no reason to.
        self.missing = failed.iter().cloned().collect();
        if self.source == Source::Auto {
            failed.retain(|id| missing_before.contains(id));
        }
        let use_stats = match self.source {
            Source::Auto => self.cgroups.layout().is_none(),
            Source::Cgroup => false,
            Source::Stats => true,
        };
        if !failed.is_empty() && use_stats {
            let (source, docker) = (self.source, &self.docker);
            let streams = self.streams.get_or_insert_with(|| {
                if source == Source::Stats {
                    tracing::info!("INVOK_SAMPLER=stats: sampling through the Docker stats API");
                } else {
                    tracing::info!(
                        "cgroup files not readable; sampling through the Docker stats API"
                    );
                }
                StatsSampler::new(docker.clone())
            });
            for id in &failed {
                streams.track(id);
            }
        }
        if let Some(streams) = &self.streams {
            streams.untrack_missing(running);
        }
        self.files.retain(|id, _| running.contains(id));
        readings
    }

    /// One container's cgroup reading, through its files kept open (opened on its first
    /// reading, and again after a failed one).
    fn read_cgroup(&mut self, id: &str) -> Result<crate::runtime::cgroup::RawSample, CgroupError> {
        if let Some(files) = self.files.get_mut(id) {
            match files.read(&mut self.buf) {
                Ok(sample) => return Ok(sample),
                // Gone, or a file that no longer reads: open afresh (or report it).
                Err(_) => {
                    self.files.remove(id);
                }
            }
        }
        let (files, sample) = self.cgroups.open(id)?;
        self.files.insert(id.to_string(), files);
        Ok(sample)
    }

    /// The stats streams, once started.
    #[cfg(test)]
    fn streams(&self) -> Option<&StatsSampler> {
        self.streams.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::cgroup::RawSample;
    use crate::runtime::test_support::dead_docker;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    /// A cgroup v1 (cgroupfs) tree under `root` with the container `id` in it.
    fn v1_container(root: &std::path::Path, id: &str, cpu_ns: u64, rss: u64) {
        let cpu = root.join(format!("cpuacct/docker/{id}"));
        let mem = root.join(format!("memory/docker/{id}"));
        std::fs::create_dir_all(&cpu).unwrap();
        std::fs::create_dir_all(&mem).unwrap();
        std::fs::write(cpu.join("cpuacct.usage"), format!("{cpu_ns}\n")).unwrap();
        std::fs::write(mem.join("memory.stat"), format!("rss 1\ntotal_rss {rss}\n")).unwrap();
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn set(v: &[&str]) -> HashSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn readable_cgroup_files_give_cumulative_readings_and_start_no_stream() {
        let cgroups = tempfile::tempdir().unwrap();
        v1_container(cgroups.path(), A, 42, 7);
        let (_sock, docker) = dead_docker();
        let mut r = UsageReader::new(Source::Auto, CgroupReader::new(cgroups.path()), docker);
        for _ in 0..3 {
            let readings = r.read(&ids(&[A, B]), &set(&[A, B]));
            assert_eq!(
                readings.get(A),
                Some(&UsageReading::Cumulative(RawSample { cpu_ns: 42, rss: 7 }))
            );
            // B has no cgroup here: it vanished, or is about to; a layout is readable.
            assert_eq!(readings.get(B), None);
        }
        assert!(
            r.streams().is_none(),
            "auto with a readable layout never streams"
        );
    }

    #[tokio::test]
    async fn cgroup_files_stay_open_while_running_and_are_reopened_after_a_failure() {
        let cgroups = tempfile::tempdir().unwrap();
        v1_container(cgroups.path(), A, 42, 7);
        v1_container(cgroups.path(), B, 43, 8);
        let (_sock, docker) = dead_docker();
        let mut r = UsageReader::new(Source::Auto, CgroupReader::new(cgroups.path()), docker);
        r.read(&ids(&[A, B]), &set(&[A, B]));
        assert_eq!(r.files.len(), 2, "both kept open");
        // A is not read this tick but still runs: its files stay; B stopped: closed.
        r.read(&ids(&[]), &set(&[A]));
        assert!(r.files.contains_key(A) && !r.files.contains_key(B));
        // A's cgroup went and came back (a restart): the kept file fails (the kernel
        // says ENODEV; this fake's old file reads empty) and the reading reopens it.
        let old_cpu = cgroups
            .path()
            .join(format!("cpuacct/docker/{A}/cpuacct.usage"));
        std::fs::write(old_cpu, "").unwrap();
        std::fs::remove_dir_all(cgroups.path().join(format!("cpuacct/docker/{A}"))).unwrap();
        std::fs::remove_dir_all(cgroups.path().join(format!("memory/docker/{A}"))).unwrap();
        v1_container(cgroups.path(), A, 5, 9);
        let readings = r.read(&ids(&[A]), &set(&[A]));
        assert_eq!(
            readings.get(A),
            Some(&UsageReading::Cumulative(RawSample { cpu_ns: 5, rss: 9 }))
        );
    }

    #[tokio::test]
    async fn auto_streams_only_a_container_missing_twice_in_a_row_where_no_layout_is_readable() {
        let empty = tempfile::tempdir().unwrap();
        let (_sock, docker) = dead_docker();
        let mut r = UsageReader::new(Source::Auto, CgroupReader::new(empty.path()), docker);
        assert!(r.read(&ids(&[A]), &set(&[A, B])).is_empty());
        assert!(
            r.streams().is_none(),
            "one miss may be a container that just went"
        );
        r.read(&ids(&[B]), &set(&[A, B]));
        assert!(
            r.streams().is_none(),
            "A was not read this tick, B missed once"
        );
        r.read(&ids(&[A, B]), &set(&[A, B]));
        let streams = r
            .streams()
            .expect("streams start after two misses in a row");
        assert!(
            streams.is_tracked(B),
            "B missed on this tick and the one before"
        );
        assert!(
            !streams.is_tracked(A),
            "A's misses were not on consecutive ticks"
        );
        r.read(&ids(&[A, B]), &set(&[A, B]));
        let streams = r.streams().unwrap();
        assert!(streams.is_tracked(A) && streams.is_tracked(B));
        // A container that stops running is no longer followed.
        r.read(&ids(&[A]), &set(&[A]));
        let streams = r.streams().unwrap();
        assert!(streams.is_tracked(A) && !streams.is_tracked(B));
    }

    #[tokio::test]
    async fn cgroup_never_streams_and_stats_streams_at_once_without_reading_cgroups() {
        let empty = tempfile::tempdir().unwrap();
        let (_sock, docker) = dead_docker();
        let mut r = UsageReader::new(Source::Cgroup, CgroupReader::new(empty.path()), docker);
        for _ in 0..3 {
            assert!(r.read(&ids(&[A]), &set(&[A])).is_empty());
        }
        assert!(r.streams().is_none());

        let cgroups = tempfile::tempdir().unwrap();
        v1_container(cgroups.path(), A, 42, 7);
        let (_sock, docker) = dead_docker();
        let mut r = UsageReader::new(Source::Stats, CgroupReader::new(cgroups.path()), docker);
        assert!(
            r.read(&ids(&[A]), &set(&[A])).is_empty(),
            "no cgroup reading"
        );
        assert!(r.streams().expect("streams at once").is_tracked(A));
        assert_eq!(r.cgroups.layout(), None, "the cgroup files were never read");
    }
}

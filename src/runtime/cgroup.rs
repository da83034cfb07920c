//! Container usage read straight from the cgroup files of the local kernel.
//!
//! Part of the runtime because the paths are Docker's: where its cgroup driver puts a
//! container's cgroup, named by the container id. [`super::usage`] decides when to read
//! them.
//!
//! Reading two small files costs microseconds per container, where one Docker stats call
//! (`stream=false`) takes one to two seconds. The reader finds a container's cgroup under
//! every layout Docker uses on Linux:
//!
//! | layout                | CPU (cumulative)                                         | RSS (`memory.stat`)     |
//! |-----------------------|----------------------------------------------------------|-------------------------|
//! | cgroup v1, cgroupfs   | `cpuacct/docker/<id>/cpuacct.usage` (ns)                 | `memory/docker/<id>/`: `total_rss`, else `rss` |
//! | cgroup v1, systemd    | `cpuacct/system.slice/docker-<id>.scope/cpuacct.usage`   | `memory/system.slice/docker-<id>.scope/`       |
//! | cgroup v2, cgroupfs   | `docker/<id>/cpu.stat` `usage_usec` (µs)                 | `docker/<id>/`: `anon`  |
//! | cgroup v2, systemd    | `system.slice/docker-<id>.scope/cpu.stat` `usage_usec`   | `system.slice/docker-<id>.scope/`: `anon` |
//!
//! (all relative to the root, normally `/sys/fs/cgroup`). The v1 CPU controller directory
//! is `cpuacct` on some systems and `cpu,cpuacct` on others; both are tried. On a hybrid
//! host (v1 controllers plus a v2 tree at `/sys/fs/cgroup/unified`) Docker uses v1, so only
//! the v2 layouts directly under the root are tried.
//!
//! The layout that worked last is remembered, so finding a container costs two opens.
//! [`ContainerFiles`] keeps a container's two files open from tick to tick, and re-reads
//! `memory.stat` only when the container used a millisecond of CPU since, or
//! ten seconds passed: what an idle container costs is mostly one `pread` of its CPU
//! counter.

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// One cumulative usage reading of a container.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RawSample {
    /// CPU time used since the container started, in nanoseconds (cumulative).
    pub cpu_ns: u64,
    /// Resident anonymous memory, in bytes (v1 `total_rss`, v2 `anon`).
    pub rss: u64,
}

/// Why a container's usage could not be read from its cgroup.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No cgroup for this container under any known layout: the container is gone, not
    /// running, or not on this host (a remote daemon). Not worth logging.
    #[error("no cgroup found for the container")]
    NotFound,
    /// The cgroup exists but a file could not be read or parsed.
    #[error("cgroup files not readable: {0}")]
    Unreadable(String),
}

/// Where the two files live, relative to the cgroup root.
#[derive(Debug)]
struct Layout {
    name: &'static str,
    /// v2: one directory for both; v1: the CPU controller directory.
    cpu_dir: &'static str,
    /// v1 only: the memory controller directory.
    mem_dir: &'static str,
    /// `true`: files are `cpu.stat`/`memory.stat` of a unified (v2) hierarchy.
    v2: bool,
    /// `true`: `system.slice/docker-<id>.scope`; `false`: `docker/<id>`.
    systemd: bool,
}

/// Tried in this order (after the one that worked last). The most common layouts of
/// current hosts first: v2 systemd (most distributions today), then this project's
/// reference host (v1 cgroupfs).
const LAYOUTS: &[Layout] = &[
    Layout {
        name: "cgroup v2, systemd driver",
        cpu_dir: "",
        mem_dir: "",
        v2: true,
        systemd: true,
    },
    Layout {
        name: "cgroup v1, cgroupfs driver",
        cpu_dir: "cpuacct",
        mem_dir: "memory",
        v2: false,
        systemd: false,
    },
    Layout {
        name: "cgroup v2, cgroupfs driver",
        cpu_dir: "",
        mem_dir: "",
        v2: true,
        systemd: false,
    },
    Layout {
        name: "cgroup v1, systemd driver",
        cpu_dir: "cpuacct",
        mem_dir: "memory",
        v2: false,
        systemd: true,
    },
    Layout {
        name: "cgroup v1 (cpu,cpuacct), cgroupfs driver",
        cpu_dir: "cpu,cpuacct",
        mem_dir: "memory",
        v2: false,
        systemd: false,
    },
    Layout {
        name: "cgroup v1 (cpu,cpuacct), systemd driver",
        cpu_dir: "cpu,cpuacct",
        mem_dir: "memory",
        v2: false,
        systemd: true,
    },
];

/// Sentinel in [`CgroupReader::last`]: no layout has worked yet.
const NONE: usize = usize::MAX;

/// Reads container usage from the cgroup files under a root (normally `/sys/fs/cgroup`).
///
/// Cheap to share: `read` takes `&self` and the reader is `Send + Sync`.
///
/// ```no_run
/// use invok::runtime::cgroup::CgroupReader;
/// let reader = CgroupReader::detect();
/// let sample = reader.read("4f3c...full container id...")?;
/// println!("{} ns CPU, {} bytes RSS ({:?})", sample.cpu_ns, sample.rss, reader.layout());
/// # Ok::<(), invok::runtime::cgroup::CgroupError>(())
/// ```
#[derive(Debug)]
pub struct CgroupReader {
    root: PathBuf,
    /// Index in [`LAYOUTS`] of the layout that worked last, or [`NONE`].
    last: AtomicUsize,
}

impl CgroupReader {
    /// A reader of the cgroup hierarchy mounted at `root` (tests pass a fake tree).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        CgroupReader {
            root: root.into(),
            last: AtomicUsize::new(NONE),
        }
    }

    /// A reader of the host's hierarchy, `/sys/fs/cgroup`.
    pub fn detect() -> Self {
        Self::new("/sys/fs/cgroup")
    }

    /// The root this reader reads under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The layout that worked last (for logs and figures), e.g. `"cgroup v1, cgroupfs
    /// driver"`; `None` until a read succeeded.
    pub fn layout(&self) -> Option<&'static str> {
        LAYOUTS
            .get(self.last.load(Ordering::Relaxed))
            .map(|l| l.name)
    }

    /// The cumulative CPU time and the RSS of the container with this (full) id.
    ///
    /// [`CgroupError::NotFound`] when no layout has a cgroup for it (gone, or not a local
    /// container); [`CgroupError::Unreadable`] when its files exist but cannot be read
    /// or parsed. Opens the files for this one reading; a sampler that reads the same
    /// container every tick keeps them open with [`CgroupReader::open`].
    pub fn read(&self, container_id: &str) -> Result<RawSample, CgroupError> {
        self.open(container_id).map(|(_, sample)| sample)
    }

    /// Opens the cgroup files of the container with this (full) id, and reads them once:
    /// the files, to read again each tick, and that first reading. Errors as
    /// [`CgroupReader::read`].
    pub fn open(&self, container_id: &str) -> Result<(ContainerFiles, RawSample), CgroupError> {
        if container_id.is_empty()
            || container_id.contains('/')
            || container_id.starts_with('.')
            || container_id.contains('\0')
        {
            return Err(CgroupError::NotFound);
        }
        let last = self.last.load(Ordering::Relaxed);
        if let Some(layout) = LAYOUTS.get(last) {
            match self.open_with(layout, container_id) {
                Err(CgroupError::NotFound) => {}
                other => return other,
            }
        }
        for (i, layout) in LAYOUTS.iter().enumerate() {
            if i == last {
                continue;
            }
            match self.open_with(layout, container_id) {
                Err(CgroupError::NotFound) => continue,
                Ok(opened) => {
                    self.last.store(i, Ordering::Relaxed);
                    return Ok(opened);
                }
                Err(e) => return Err(e),
            }
        }
        Err(CgroupError::NotFound)
    }

    fn open_with(
        &self,
        layout: &Layout,
        id: &str,
    ) -> Result<(ContainerFiles, RawSample), CgroupError> {
        let leaf = if layout.systemd {
            format!("system.slice/docker-{id}.scope")
        } else {
            format!("docker/{id}")
        };
        let (cpu_path, memory_path) = if layout.v2 {
            let dir = self.root.join(leaf);
            (dir.join("cpu.stat"), dir.join("memory.stat"))
        } else {
            (
                self.root
                    .join(layout.cpu_dir)
                    .join(&leaf)
                    .join("cpuacct.usage"),
                self.root
                    .join(layout.mem_dir)
                    .join(&leaf)
                    .join("memory.stat"),
            )
        };
        let cpu = open(&cpu_path)?;
        let memory = open(&memory_path)?;
        let mut files = ContainerFiles {
            cpu: (cpu, cpu_path),
            memory: (memory, memory_path),
            v2: layout.v2,
            last: None,
            memory_refresh: MEMORY_REFRESH,
        };
        let sample = files.read(&mut Vec::with_capacity(READ_CHUNK))?;
        Ok((files, sample))
    }
}

/// The longest a reading reuses the last RSS of a container that used almost no CPU
/// since ([`MEMORY_CPU_SLACK_NS`], counted from that RSS reading, so small uses add
/// up): what bounds how stale an RSS figure gets for memory that changes without the
/// container running, which is memory given back (reclaim, swap). Such a figure errs
/// high for up to this long: a scale-down waits, and a container that was over the
/// memory threshold and fell below it without running stays overloaded as long. At
/// 10 s, these re-reads were a tenth of an idle operator's CPU with 1,000 containers
/// (issue 15).
pub const MEMORY_REFRESH: Duration = Duration::from_secs(60);

/// CPU time a container may use before its RSS is read again: 1 ms. An idle function
/// is not quite still (busybox httpd blocked in `accept` uses some 30 µs a second), so
/// "no CPU at all" would re-read almost every container every tick. Memory does not grow
/// without CPU: faulting in and zeroing a page takes about a microsecond, a 2 MiB huge
/// page some 100 µs, so 1 ms of CPU grows RSS by a few MB, a few tens with huge pages,
/// far below a memory threshold worth setting, and only for [`MEMORY_REFRESH`].
pub const MEMORY_CPU_SLACK_NS: u64 = 1_000_000;

/// A container's two cgroup files, kept open from tick to tick ([`CgroupReader::open`]).
///
/// Opening a cgroup file is most of what reading one costs (the path walk through the
/// cgroup filesystem, then the close): seen as 37 % of an idle operator's CPU with 500
/// containers (issue 15). Kept open, each reading re-reads the file from offset 0
/// (`pread`), which the kernel answers with the current figures. And `memory.stat` is
/// the costly file (the kernel formats some forty counters for it): it is re-read only
/// when the container used [`MEMORY_CPU_SLACK_NS`] of CPU or more since its RSS was
/// read, or when [`MEMORY_REFRESH`] has passed: a container whose processes hardly ran
/// allocated next to nothing.
///
/// A container removed after the open reads `ENODEV`, which is
/// [`CgroupError::NotFound`], as a missing file is; the open files do not keep the
/// cgroup from being removed.
#[derive(Debug)]
pub struct ContainerFiles {
    cpu: (File, PathBuf),
    memory: (File, PathBuf),
    v2: bool,
    /// The last RSS read, with the CPU time and the instant it was read at.
    last: Option<(RawSample, Instant)>,
    memory_refresh: Duration,
}

impl ContainerFiles {
    /// The container's current CPU time and RSS; `buf` is scratch space, kept by the
    /// caller from one reading to the next.
    pub fn read(&mut self, buf: &mut Vec<u8>) -> Result<RawSample, CgroupError> {
        let (file, path) = &self.cpu;
        let text = read_file(file, path, buf)?;
        let cpu_ns = if self.v2 {
            stat_value(text, "usage_usec")
                .ok_or_else(|| unreadable(path, "no usage_usec"))?
                .map_err(|e| unreadable(path, &e))?
                .saturating_mul(1000)
        } else {
            text.trim()
                .parse::<u64>()
                .map_err(|e| unreadable(path, &format!("{e} in {:?}", short(text))))?
        };
        let now = Instant::now();
        if let Some((last, at)) = self.last {
            if cpu_ns.saturating_sub(last.cpu_ns) < MEMORY_CPU_SLACK_NS
                && now.saturating_duration_since(at) < self.memory_refresh
            {
                return Ok(RawSample {
                    cpu_ns,
                    rss: last.rss,
                });
            }
        }
        let (file, path) = &self.memory;
        let text = read_file(file, path, buf)?;
        let rss = if self.v2 {
            stat_value(text, "anon").ok_or_else(|| unreadable(path, "no anon"))?
        } else {
            stat_value(text, "total_rss")
                .or_else(|| stat_value(text, "rss"))
                .ok_or_else(|| unreadable(path, "no total_rss or rss"))?
        }
        .map_err(|e| unreadable(path, &e))?;
        let sample = RawSample { cpu_ns, rss };
        self.last = Some((sample, now));
        Ok(sample)
    }
}

/// `ENODEV` on Linux: reading a cgroup file whose cgroup was removed after the open.
const ENODEV: i32 = 19;

/// Bytes asked for per `read(2)`: a whole cgroup file in one call (v1 `memory.stat` is
/// under 2 KiB).
const READ_CHUNK: usize = 8192;

/// A missing file or directory (or a cgroup removed as it was opened) is
/// [`CgroupError::NotFound`]: the layout does not apply, or the container just went away.
fn classify(path: &Path, e: std::io::Error) -> CgroupError {
    // ENOTDIR: a path component is a file (not a cgroup tree).
    if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory)
        || e.raw_os_error() == Some(ENODEV)
    {
        CgroupError::NotFound
    } else {
        unreadable(path, &e.to_string())
    }
}

fn open(path: &Path) -> Result<File, CgroupError> {
    File::open(path).map_err(|e| classify(path, e))
}

/// Reads the whole of an open cgroup file, from its start, into `buf` and returns it as
/// text. `buf` is the caller's scratch space: grown (and zeroed) only when a file is
/// longer than it, so reading into it costs no clearing (an 8 KiB zeroed buffer per file
/// was a sixth of an idle operator's instructions).
///
/// One `pread` per file in the common case: the kernel gives a cgroup file whole when the
/// buffer holds it, so a read that comes back short, ending with a newline, is the whole
/// file; otherwise it reads on until end of file. Measured on the reference host (v1,
/// release build) when each reading opened its files: 12 µs per container (both files,
/// parsed), against 14 µs with `read_to_string` and a kernel floor of ~10.5 µs (3.6 µs
/// `cpuacct.usage`, 6.8 µs `memory.stat`), most of it the open.
fn read_file<'b>(file: &File, path: &Path, buf: &'b mut Vec<u8>) -> Result<&'b str, CgroupError> {
    if buf.len() < READ_CHUNK {
        buf.resize(READ_CHUNK, 0);
    }
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match file.read_at(&mut buf[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                if filled < buf.len() && buf[filled - 1] == b'\n' {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(classify(path, e)),
        }
    }
    std::str::from_utf8(&buf[..filled]).map_err(|e| unreadable(path, &e.to_string()))
}

/// The value of `key` in a flat-keyed file (`key value` per line): `None` when the key is
/// absent, `Some(Err)` when its value is not a number.
fn stat_value(text: &str, key: &str) -> Option<Result<u64, String>> {
    text.lines().find_map(|line| {
        let mut parts = line.split_ascii_whitespace();
        if parts.next() != Some(key) {
            return None;
        }
        let value = parts.next().unwrap_or("");
        Some(
            value
                .parse::<u64>()
                .map_err(|e| format!("{key}: {e} in {:?}", short(value))),
        )
    })
}

fn unreadable(path: &Path, why: &str) -> CgroupError {
    CgroupError::Unreadable(format!("{}: {why}", path.display()))
}

/// At most 40 characters of a file's content, for error messages.
fn short(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn write(root: &Path, rel: &str, content: &str) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    /// A v1 `memory.stat` as the kernel writes it (abridged), with both `rss` and `total_rss`.
    fn v1_memory_stat(rss: u64, total_rss: u64) -> String {
        format!(
            "cache 811008\nrss {rss}\nrss_huge 0\nshmem 0\nmapped_file 0\n\
             hierarchical_memory_limit 9223372036854771712\ntotal_cache 811008\n\
             total_rss {total_rss}\ntotal_rss_huge 0\ntotal_inactive_file 405504\n"
        )
    }

    fn v2_cpu_stat(usec: u64) -> String {
        format!("usage_usec {usec}\nuser_usec 1000\nsystem_usec 2000\nnr_periods 0\n")
    }

    fn v2_memory_stat(anon: u64) -> String {
        format!("anon {anon}\nfile 4096\nkernel_stack 16384\nanon_thp 0\nfile_mapped 0\n")
    }

    #[test]
    fn v1_cgroupfs() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &format!("cpuacct/docker/{ID}/cpuacct.usage"),
            "123456789\n",
        );
        write(
            dir.path(),
            &format!("memory/docker/{ID}/memory.stat"),
            &v1_memory_stat(1, 4_194_304),
        );
        let reader = CgroupReader::new(dir.path());
        assert_eq!(reader.layout(), None);
        let s = reader.read(ID).unwrap();
        assert_eq!(
            s,
            RawSample {
                cpu_ns: 123_456_789,
                rss: 4_194_304
            }
        );
        assert_eq!(reader.layout(), Some("cgroup v1, cgroupfs driver"));
    }

    /// A v1 container whose two files the test rewrites in place (as the kernel's stay
    /// the same files): (cpu path, memory path).
    fn v1_files(root: &Path, cpu_ns: u64, rss: u64) -> (PathBuf, PathBuf) {
        let cpu = format!("cpuacct/docker/{ID}/cpuacct.usage");
        let memory = format!("memory/docker/{ID}/memory.stat");
        write(root, &cpu, &format!("{cpu_ns}\n"));
        write(root, &memory, &v1_memory_stat(1, rss));
        (root.join(cpu), root.join(memory))
    }

    #[test]
    fn kept_open_files_read_the_current_figures_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let (cpu, memory) = v1_files(dir.path(), 1_000, 4096);
        let (mut files, first) = CgroupReader::new(dir.path()).open(ID).unwrap();
        assert_eq!(
            first,
            RawSample {
                cpu_ns: 1_000,
                rss: 4096
            }
        );
        let mut buf = Vec::new();
        // Busy: more than the slack of CPU since, so the memory is read again too.
        let busy = 1_000 + MEMORY_CPU_SLACK_NS;
        fs::write(&cpu, format!("{busy}\n")).unwrap();
        fs::write(&memory, v1_memory_stat(1, 8192)).unwrap();
        assert_eq!(
            files.read(&mut buf).unwrap(),
            RawSample {
                cpu_ns: busy,
                rss: 8192
            }
        );
        // Shorter content than before: nothing of the old text is left over.
        fs::write(&cpu, "7\n").unwrap();
        assert_eq!(files.read(&mut buf).unwrap().cpu_ns, 7);
    }

    #[test]
    fn read_file_reads_whole_files_longer_than_the_buffer_or_without_a_final_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let long: String = (0..3000).map(|i| format!("key{i} {i}\n")).collect();
        assert!(long.len() > 2 * READ_CHUNK);
        let mut buf = Vec::new();
        for content in [long.as_str(), "5", "", "x 1\ny 2"] {
            fs::write(&path, content).unwrap();
            let file = File::open(&path).unwrap();
            assert_eq!(read_file(&file, &path, &mut buf).unwrap(), content);
        }
    }

    #[test]
    fn memory_is_read_again_only_after_the_cpu_slack_or_the_refresh() {
        let dir = tempfile::tempdir().unwrap();
        let (cpu, memory) = v1_files(dir.path(), 1_000, 4096);
        let (mut files, _) = CgroupReader::new(dir.path()).open(ID).unwrap();
        let mut buf = Vec::new();
        fs::write(&memory, v1_memory_stat(1, 8192)).unwrap();
        // Almost idle: the CPU moved by less than the slack; the last RSS stands.
        let idle = 1_000 + MEMORY_CPU_SLACK_NS - 1;
        fs::write(&cpu, format!("{idle}\n")).unwrap();
        assert_eq!(
            files.read(&mut buf).unwrap(),
            RawSample {
                cpu_ns: idle,
                rss: 4096
            }
        );
        // The slack counts from the last memory reading, not from the last tick.
        let past = 1_000 + MEMORY_CPU_SLACK_NS;
        fs::write(&cpu, format!("{past}\n")).unwrap();
        assert_eq!(
            files.read(&mut buf).unwrap(),
            RawSample {
                cpu_ns: past,
                rss: 8192
            }
        );
        // Idle but the refresh has passed: read again.
        fs::write(&memory, v1_memory_stat(1, 12288)).unwrap();
        files.memory_refresh = Duration::ZERO;
        assert_eq!(
            files.read(&mut buf).unwrap(),
            RawSample {
                cpu_ns: past,
                rss: 12288
            }
        );
    }

    #[test]
    fn kept_open_files_that_fail_are_errors_and_a_removed_container_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let (cpu, _) = v1_files(dir.path(), 1_000, 4096);
        let (mut files, _) = CgroupReader::new(dir.path()).open(ID).unwrap();
        // The kernel answers ENODEV for a removed cgroup; a regular file, once emptied,
        // reads as no figure at all: either way the reading fails, and the sampler
        // opens afresh (NotFound once the files are gone).
        fs::write(&cpu, "").unwrap();
        assert!(matches!(
            files.read(&mut Vec::new()),
            Err(CgroupError::Unreadable(_))
        ));
        assert!(matches!(
            classify(&cpu, std::io::Error::from_raw_os_error(ENODEV)),
            CgroupError::NotFound
        ));
        fs::remove_dir_all(dir.path().join("cpuacct")).unwrap();
        assert!(matches!(
            CgroupReader::new(dir.path()).open(ID),
            Err(CgroupError::NotFound)
        ));
    }

    #[test]
    fn v1_falls_back_to_rss_without_total_rss() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &format!("cpuacct/docker/{ID}/cpuacct.usage"),
            "5\n",
        );
        write(
            dir.path(),
            &format!("memory/docker/{ID}/memory.stat"),
            "cache 0\nrss 8192\nrss_huge 0\n",
        );
        let s = CgroupReader::new(dir.path()).read(ID).unwrap();
        assert_eq!(
            s,
            RawSample {
                cpu_ns: 5,
                rss: 8192
            }
        );
    }

    #[test]
    fn v1_systemd() {
        let dir = tempfile::tempdir().unwrap();
        let scope = format!("system.slice/docker-{ID}.scope");
        write(
            dir.path(),
            &format!("cpuacct/{scope}/cpuacct.usage"),
            "42\n",
        );
        write(
            dir.path(),
            &format!("memory/{scope}/memory.stat"),
            &v1_memory_stat(7, 9000),
        );
        let reader = CgroupReader::new(dir.path());
        assert_eq!(
            reader.read(ID).unwrap(),
            RawSample {
                cpu_ns: 42,
                rss: 9000
            }
        );
        assert_eq!(reader.layout(), Some("cgroup v1, systemd driver"));
    }

    #[test]
    fn v1_cpu_cpuacct_controller_dir() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &format!("cpu,cpuacct/docker/{ID}/cpuacct.usage"),
            "77\n",
        );
        write(
            dir.path(),
            &format!("memory/docker/{ID}/memory.stat"),
            &v1_memory_stat(1, 2),
        );
        let reader = CgroupReader::new(dir.path());
        assert_eq!(reader.read(ID).unwrap(), RawSample { cpu_ns: 77, rss: 2 });
        assert_eq!(
            reader.layout(),
            Some("cgroup v1 (cpu,cpuacct), cgroupfs driver")
        );

        let dir = tempfile::tempdir().unwrap();
        let scope = format!("system.slice/docker-{ID}.scope");
        write(
            dir.path(),
            &format!("cpu,cpuacct/{scope}/cpuacct.usage"),
            "78\n",
        );
        write(
            dir.path(),
            &format!("memory/{scope}/memory.stat"),
            &v1_memory_stat(1, 3),
        );
        let reader = CgroupReader::new(dir.path());
        assert_eq!(reader.read(ID).unwrap(), RawSample { cpu_ns: 78, rss: 3 });
        assert_eq!(
            reader.layout(),
            Some("cgroup v1 (cpu,cpuacct), systemd driver")
        );
    }

    #[test]
    fn v2_cgroupfs() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &format!("docker/{ID}/cpu.stat"),
            &v2_cpu_stat(1_500_000),
        );
        write(
            dir.path(),
            &format!("docker/{ID}/memory.stat"),
            &v2_memory_stat(67_108_864),
        );
        let reader = CgroupReader::new(dir.path());
        let s = reader.read(ID).unwrap();
        assert_eq!(
            s,
            RawSample {
                cpu_ns: 1_500_000_000,
                rss: 67_108_864
            }
        );
        assert_eq!(reader.layout(), Some("cgroup v2, cgroupfs driver"));
    }

    #[test]
    fn v2_systemd() {
        let dir = tempfile::tempdir().unwrap();
        let scope = format!("system.slice/docker-{ID}.scope");
        write(dir.path(), &format!("{scope}/cpu.stat"), &v2_cpu_stat(3));
        write(
            dir.path(),
            &format!("{scope}/memory.stat"),
            &v2_memory_stat(12_288),
        );
        let reader = CgroupReader::new(dir.path());
        assert_eq!(
            reader.read(ID).unwrap(),
            RawSample {
                cpu_ns: 3000,
                rss: 12_288
            }
        );
        assert_eq!(reader.layout(), Some("cgroup v2, systemd driver"));
    }

    #[test]
    fn v2_under_unified_is_not_read() {
        // Hybrid hosts mount a v2 tree at <root>/unified; Docker does not use it there.
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &format!("unified/docker/{ID}/cpu.stat"),
            &v2_cpu_stat(3),
        );
        write(
            dir.path(),
            &format!("unified/docker/{ID}/memory.stat"),
            &v2_memory_stat(1),
        );
        assert!(matches!(
            CgroupReader::new(dir.path()).read(ID),
            Err(CgroupError::NotFound)
        ));
    }

    #[test]
    fn missing_container_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let other = "f".repeat(64);
        write(
            dir.path(),
            &format!("cpuacct/docker/{other}/cpuacct.usage"),
            "1\n",
        );
        write(
            dir.path(),
            &format!("memory/docker/{other}/memory.stat"),
            &v1_memory_stat(1, 1),
        );
        let reader = CgroupReader::new(dir.path());
        assert!(reader.read(&other).is_ok());
        assert!(matches!(reader.read(ID), Err(CgroupError::NotFound)));
        // The cached layout survives a miss.
        assert_eq!(reader.layout(), Some("cgroup v1, cgroupfs driver"));
        // Ids that are not ids never escape the tree.
        for bad in ["", "../docker", "a/b", ".", ".."] {
            assert!(
                matches!(reader.read(bad), Err(CgroupError::NotFound)),
                "{bad:?}"
            );
        }
        // An empty root (no cgroup filesystem at all) is NotFound too.
        let empty = tempfile::tempdir().unwrap();
        let missing_root = empty.path().join("nope");
        assert!(matches!(
            CgroupReader::new(&missing_root).read(ID),
            Err(CgroupError::NotFound)
        ));
    }

    #[test]
    fn container_gone_between_files_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &format!("cpuacct/docker/{ID}/cpuacct.usage"),
            "1\n",
        );
        // memory/docker/<id> missing: removed between the two reads.
        assert!(matches!(
            CgroupReader::new(dir.path()).read(ID),
            Err(CgroupError::NotFound)
        ));
    }

    #[test]
    fn garbage_is_unreadable() {
        let cases: Vec<(String, String, String, String)> = vec![
            (
                format!("cpuacct/docker/{ID}/cpuacct.usage"),
                "not a number\n".into(),
                format!("memory/docker/{ID}/memory.stat"),
                v1_memory_stat(1, 1),
            ),
            (
                format!("cpuacct/docker/{ID}/cpuacct.usage"),
                "12\n".into(),
                format!("memory/docker/{ID}/memory.stat"),
                "cache 1\nswap 2\n".into(),
            ),
            (
                format!("cpuacct/docker/{ID}/cpuacct.usage"),
                "12\n".into(),
                format!("memory/docker/{ID}/memory.stat"),
                "total_rss -3\n".into(),
            ),
            (
                format!("docker/{ID}/cpu.stat"),
                "usage_usec many\n".into(),
                format!("docker/{ID}/memory.stat"),
                v2_memory_stat(1),
            ),
            (
                format!("docker/{ID}/cpu.stat"),
                v2_cpu_stat(1),
                format!("docker/{ID}/memory.stat"),
                "file 1\n".into(),
            ),
        ];
        for (cpu_rel, cpu, mem_rel, mem) in cases {
            let dir = tempfile::tempdir().unwrap();
            write(dir.path(), &cpu_rel, &cpu);
            write(dir.path(), &mem_rel, &mem);
            let reader = CgroupReader::new(dir.path());
            match reader.read(ID) {
                Err(CgroupError::Unreadable(msg)) => {
                    assert!(msg.contains(ID), "message names the file: {msg}");
                }
                other => panic!(
                    "{cpu_rel}={cpu:?} {mem_rel}={mem:?}: expected Unreadable, got {other:?}"
                ),
            }
            assert_eq!(reader.layout(), None);
        }
    }

    #[test]
    fn unreadable_file_is_unreadable() {
        // A directory where a file should be: open succeeds, read fails with EISDIR.
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(
            dir.path()
                .join(format!("cpuacct/docker/{ID}/cpuacct.usage")),
        )
        .unwrap();
        write(
            dir.path(),
            &format!("memory/docker/{ID}/memory.stat"),
            &v1_memory_stat(1, 1),
        );
        assert!(matches!(
            CgroupReader::new(dir.path()).read(ID),
            Err(CgroupError::Unreadable(_))
        ));
    }

    #[test]
    fn layout_cache_follows_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let reader = CgroupReader::new(dir.path());
        write(
            dir.path(),
            &format!("docker/{ID}/cpu.stat"),
            &v2_cpu_stat(1),
        );
        write(
            dir.path(),
            &format!("docker/{ID}/memory.stat"),
            &v2_memory_stat(1),
        );
        reader.read(ID).unwrap();
        assert_eq!(reader.layout(), Some("cgroup v2, cgroupfs driver"));
        // Another container under another layout (say, a daemon restarted with another
        // cgroup driver): found, and the cache moves to it.
        let other = "e".repeat(64);
        write(
            dir.path(),
            &format!("cpuacct/docker/{other}/cpuacct.usage"),
            "9\n",
        );
        write(
            dir.path(),
            &format!("memory/docker/{other}/memory.stat"),
            &v1_memory_stat(1, 5),
        );
        assert_eq!(
            reader.read(&other).unwrap(),
            RawSample { cpu_ns: 9, rss: 5 }
        );
        assert_eq!(reader.layout(), Some("cgroup v1, cgroupfs driver"));
        assert_eq!(
            reader.read(ID).unwrap(),
            RawSample {
                cpu_ns: 1000,
                rss: 1
            }
        );
    }

    #[test]
    fn stat_value_parses_flat_keyed_files() {
        let text = "rss_huge 5\nrss 7\ntotal_rss 9\n";
        assert_eq!(stat_value(text, "rss"), Some(Ok(7)));
        assert_eq!(stat_value(text, "total_rss"), Some(Ok(9)));
        assert_eq!(stat_value(text, "anon"), None);
        assert!(matches!(stat_value("anon\n", "anon"), Some(Err(_))));
    }
}

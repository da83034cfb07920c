//! The Docker runtime's two usage readers against real containers on the local daemon:
//! `CgroupReader` (cgroup files) and `StatsSampler` (Docker's streaming stats API).
//!
//! These tests need Docker (start it with `scripts/docker-up.sh`); they fail, never skip,
//! when it does not answer. They use the demo image (`scripts/build-demo-image.sh`,
//! `invok/demo-fn:latest`): `/cgi-bin/cpu?ms=N` burns one core for N ms and
//! `/cgi-bin/mem?mb=N&ms=M` holds N MB of RSS for M ms. Every container carries the label
//! `dev.invok.test=sampler-<random>` and a guard removes them when the test ends, failed
//! or not.
//!
//! The tests run one at a time (a lock): the reference host has two cores, and two
//! burning containers plus the test harness would starve each other (and disturb the
//! read-cost figure). On a shared machine a measurement window can still be disturbed,
//! so a CPU check passes when one of a few 1 s windows meets it, and a failure lists
//! every window.
#![allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "measures real CPU use of real containers over wall-clock windows"
)]

mod support;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use support::docker as docker_cli;

use invok::runtime::cgroup::{CgroupError, CgroupReader, RawSample};
use invok::runtime::docker::DockerRuntime;
use invok::runtime::stats::StatsSample;
use rand::distr::{Alphanumeric, SampleString};

const IMAGE: &str = "invok/demo-fn:latest";
const DEADLINE: Duration = Duration::from_secs(15);
/// Measurement windows tried before a CPU check fails.
const WINDOWS: usize = 6;
const MIB: u64 = 1024 * 1024;

// ---------------------------------------------------------------------------------------
// helpers

fn docker(args: &[&str]) -> String {
    docker_cli(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Fails the test when Docker does not answer, then builds the demo image if needed
/// (once per test process).
fn demo_image() -> &'static str {
    static BUILT: OnceLock<Result<String, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        docker_cli(&["info", "--format", "{{.ServerVersion}}"]).map_err(|e| {
            format!("Docker does not answer ({e}); start it with scripts/docker-up.sh")
        })?;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-demo-image.sh");
        let out = Command::new("bash")
            .arg(script)
            .output()
            .map_err(|e| format!("cannot run {script}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{script} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    });
    match built {
        Ok(_) => IMAGE,
        Err(e) => panic!("{e}"),
    }
}

/// One test at a time (see the module comment).
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The test's containers, removed (`docker rm -f`) when dropped.
struct Containers {
    label: String,
    ids: Vec<String>,
}

impl Containers {
    fn new() -> Containers {
        let suffix = Alphanumeric
            .sample_string(&mut rand::rng(), 8)
            .to_lowercase();
        Containers {
            label: format!("dev.invok.test=sampler-{suffix}"),
            ids: Vec::new(),
        }
    }

    /// `docker run -d` of the demo image, optionally CPU-limited; returns the full id and
    /// the loopback port, once the function answers.
    fn start(&mut self, cpus: Option<&str>) -> (String, u16) {
        let image = demo_image();
        let mut args = vec!["run", "-d", "--init", "--label", &self.label];
        args.extend(["-p", "127.0.0.1::8080"]);
        if let Some(cpus) = cpus {
            args.extend(["--cpus", cpus]);
        }
        args.push(image);
        let id = docker(&args);
        self.ids.push(id.clone());
        assert_eq!(id.len(), 64, "docker run prints the full id: {id:?}");
        let port_line = docker(&["port", &id, "8080/tcp"]);
        let port: u16 = port_line
            .lines()
            .find_map(|l| l.strip_prefix("127.0.0.1:"))
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no loopback port in `docker port`: {port_line:?}"));
        let start = Instant::now();
        loop {
            match http_get(port, "/", Duration::from_secs(2)) {
                Ok(body) if body.contains("ok") => break,
                other => assert!(
                    start.elapsed() < DEADLINE,
                    "container {id} did not answer on 127.0.0.1:{port} within {DEADLINE:?}: {other:?}"
                ),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (id, port)
    }

    fn remove(&mut self, id: &str) {
        docker(&["rm", "-f", id]);
        self.ids.retain(|i| i != id);
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        let filter = format!("label={}", self.label);
        let mut ids: Vec<String> = docker_cli(&["ps", "-aq", "--no-trunc", "--filter", &filter])
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        ids.extend(self.ids.iter().cloned());
        ids.sort();
        ids.dedup();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.iter().map(String::as_str));
            let _ = docker_cli(&args);
        }
    }
}

/// A minimal HTTP/1.0 GET to 127.0.0.1:port; returns the body.
fn http_get(port: u16, path: &str, timeout: Duration) -> Result<String, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(timeout)).ok();
    stream.set_write_timeout(Some(timeout)).ok();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200 ") => {
            Ok(body.to_string())
        }
        _ => Err(format!("unexpected response: {response:?}")),
    }
}

/// Sends a long request in the background (it answers when the work is done; the
/// container's removal ends it otherwise).
fn background_get(port: u16, path: &str) {
    let path = path.to_string();
    std::thread::spawn(move || {
        let _ = http_get(port, &path, Duration::from_secs(120));
    });
}

fn read(reader: &CgroupReader, id: &str) -> RawSample {
    reader
        .read(id)
        .unwrap_or_else(|e| panic!("cgroup read of {id}: {e}"))
}

/// CPU cores used by the container over a window: delta CPU time / delta wall time.
fn cpu_over(reader: &CgroupReader, id: &str, window: Duration) -> f64 {
    let (a, ta) = (read(reader, id), Instant::now());
    std::thread::sleep(window);
    let (b, tb) = (read(reader, id), Instant::now());
    fraction(a, b, tb - ta)
}

fn fraction(a: RawSample, b: RawSample, wall: Duration) -> f64 {
    b.cpu_ns.saturating_sub(a.cpu_ns) as f64 / wall.as_nanos() as f64
}

/// Polls short windows until the container uses more than `cores` (the burn started).
fn wait_busy(reader: &CgroupReader, id: &str, cores: f64) {
    let start = Instant::now();
    loop {
        let used = cpu_over(reader, id, Duration::from_millis(200));
        if used > cores {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "container {id} not busy (> {cores} core) within {DEADLINE:?}: last {used:.3}"
        );
    }
}

/// Measures 1 s windows until one satisfies `ok`; fails listing every window otherwise.
fn window_where(reader: &CgroupReader, id: &str, what: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let mut seen = Vec::new();
    for _ in 0..WINDOWS {
        let used = cpu_over(reader, id, Duration::from_secs(1));
        eprintln!("{what}: {used:.3} core over 1 s");
        if ok(used) {
            return used;
        }
        seen.push(format!("{used:.3}"));
    }
    panic!(
        "{what}: no 1 s window met the check; cores used: {}",
        seen.join(", ")
    );
}

// ---------------------------------------------------------------------------------------
// tests

#[test]
fn burning_container_reads_about_one_core() {
    let _serial = serial();
    let mut containers = Containers::new();
    let (id, port) = containers.start(None);
    let reader = CgroupReader::detect();
    let first = read(&reader, &id);
    eprintln!("layout: {:?}, first sample {first:?}", reader.layout());
    assert!(reader.layout().is_some());

    background_get(port, "/cgi-bin/cpu?ms=60000");
    wait_busy(&reader, &id, 0.5);
    window_where(&reader, &id, "burning, no limit", |c| c > 0.8 && c < 1.2);
}

#[test]
fn idle_container_reads_near_zero() {
    let _serial = serial();
    let mut containers = Containers::new();
    let (id, _port) = containers.start(None);
    let reader = CgroupReader::detect();
    window_where(&reader, &id, "idle", |c| c < 0.05);

    // Gone: NotFound, not an error worth logging.
    containers.remove(&id);
    assert!(
        matches!(reader.read(&id), Err(CgroupError::NotFound)),
        "{:?}",
        reader.read(&id)
    );
}

#[test]
fn half_cpu_container_reads_half_a_core() {
    let _serial = serial();
    let mut containers = Containers::new();
    let (id, port) = containers.start(Some("0.5"));
    let reader = CgroupReader::detect();
    background_get(port, "/cgi-bin/cpu?ms=60000");
    wait_busy(&reader, &id, 0.3);
    let used = window_where(&reader, &id, "burning, --cpus 0.5", |c| {
        c > 0.8 * 0.5 && c < 1.2 * 0.5
    });
    eprintln!("burning, --cpus 0.5: {:.3} of the limit", used / 0.5);
}

#[test]
fn holding_64_mb_reads_at_least_64_mib() {
    let _serial = serial();
    let mut containers = Containers::new();
    let (id, port) = containers.start(None);
    let reader = CgroupReader::detect();
    let idle = read(&reader, &id).rss;
    background_get(port, "/cgi-bin/mem?mb=64&ms=20000");
    let start = Instant::now();
    let rss = loop {
        let rss = read(&reader, &id).rss;
        if rss >= 64 * MIB {
            break rss;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "RSS did not reach 64 MiB within {DEADLINE:?}: {} bytes (idle {idle})",
            rss
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!(
        "holding 64 MB: RSS {:.1} MiB (idle {:.2} MiB), reached in {:?}",
        rss as f64 / MIB as f64,
        idle as f64 / MIB as f64,
        start.elapsed()
    );
}

#[test]
fn cgroup_and_stats_stream_agree() {
    let _serial = serial();
    let mut containers = Containers::new();
    let (id, port) = containers.start(None);
    let reader = CgroupReader::detect();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let docker = rt
        .block_on(DockerRuntime::connect("sampler-test".into()))
        .unwrap_or_else(|e| {
            panic!("Docker does not answer on the local socket ({e}); start it with scripts/docker-up.sh")
        });
    let sampler = docker.stats_sampler();
    sampler.track(&id);

    // Burn one core and hold 64 MB at once.
    background_get(port, "/cgi-bin/mem?mb=64&ms=60000");
    background_get(port, "/cgi-bin/cpu?ms=60000");
    let start = Instant::now();
    while read(&reader, &id).rss < 64 * MIB {
        assert!(start.elapsed() < DEADLINE, "RSS did not reach 64 MiB");
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_busy(&reader, &id, 0.5);

    // The stream pushes a message about once a second, and each message measures CPU
    // over its own window (from the previous message's reading to its own). A window
    // here runs from the arrival of one message to the arrival of the very next, the
    // cgroup files read at those instants: about the window the second message measures.
    let next_stats = |after: Option<StatsSample>| -> (StatsSample, RawSample, Instant) {
        let start = Instant::now();
        loop {
            if let Some(s) = sampler.latest(&id) {
                if Some(s) != after {
                    return (s, read(&reader, &id), Instant::now());
                }
            }
            assert!(
                start.elapsed() < DEADLINE,
                "no new stats message within {DEADLINE:?} (tracked: {})",
                sampler.is_tracked(&id)
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    let (mut prev_stats, _, _) = next_stats(None);
    let mut seen = Vec::new();
    for _ in 0..WINDOWS {
        let (s0, c0, t0) = next_stats(Some(prev_stats));
        let (s1, c1, t1) = next_stats(Some(s0));
        prev_stats = s1;
        let wall = t1 - t0;
        let cpu_cgroup = fraction(c0, c1, wall);
        let cpu_stats = s1.cpu_cores.unwrap_or(f64::NAN);
        let rss_diff = (c1.rss as f64 - s1.rss as f64).abs() / c1.rss as f64;
        let line = format!(
            "window {wall:.2?}: CPU cgroup {cpu_cgroup:.3} stats {cpu_stats:.3} core; \
             RSS cgroup {:.2} MiB stats {:.2} MiB ({:.1}% apart)",
            c1.rss as f64 / MIB as f64,
            s1.rss as f64 / MIB as f64,
            rss_diff * 100.0
        );
        eprintln!("agreement: {line}");
        if (cpu_cgroup - cpu_stats).abs() < 0.2 && rss_diff < 0.10 && cpu_cgroup > 0.5 {
            assert!(s1.rss >= 64 * MIB, "stats RSS below the 64 MB held: {line}");
            // Untracking stops the stream's task.
            let live: HashSet<String> = HashSet::new();
            sampler.untrack_missing(&live);
            assert!(!sampler.is_tracked(&id) && sampler.latest(&id).is_none());
            return;
        }
        seen.push(line);
    }
    panic!("cgroup and stats never agreed:\n{}", seen.join("\n"));
}

#[test]
fn cgroup_read_cost() {
    let _serial = serial();
    let mut containers = Containers::new();
    let (id, _port) = containers.start(None);
    let reader = CgroupReader::detect();
    for _ in 0..50 {
        read(&reader, &id);
    }
    // Five batches of 1000 reads: the median batch is the figure, the spread shows how
    // much other work on the host disturbed it.
    const N: u32 = 1000;
    let mut batches: Vec<Duration> = (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..N {
                std::hint::black_box(read(&reader, &id));
            }
            start.elapsed() / N
        })
        .collect();
    let all = format!("{batches:.1?}");
    batches.sort();
    eprintln!(
        "CgroupReader::read: {:.1?} per container (median of 5 means of {N} reads; all: {all}; {})",
        batches[2],
        reader.layout().unwrap()
    );

    // A container not on this host costs a probe of every layout.
    let missing = "0".repeat(64);
    let start = Instant::now();
    for _ in 0..N {
        assert!(matches!(reader.read(&missing), Err(CgroupError::NotFound)));
    }
    eprintln!(
        "CgroupReader::read of an unknown id: {:?} (mean of {N})",
        start.elapsed() / N
    );
}

//! The demo function image (`invok/demo-fn:latest`, built by
//! `scripts/build-demo-image.sh`) on a real Docker daemon.
//!
//! Every test starts its own container with a unique `dev.invok.test` label
//! and a Docker-chosen port on 127.0.0.1, and removes exactly that container
//! when it ends, failed or not. Without a Docker daemon the tests fail (they
//! never skip): run `bash scripts/docker-up.sh` first.
//!
//! Resource measurements read the container's cgroup v1 files (cgroupfs
//! driver), the way the operator sees load, and cross-check with
//! `docker stats`.
#![allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "drives real containers from blocking test code: real time is the point"
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

const IMAGE: &str = "invok/demo-fn:latest";
const MIB: u64 = 1024 * 1024;

/// Runs `docker ARGS`; Ok(trimmed stdout) on success, Err(description) else.
fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `docker {}`: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "`docker {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn build_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-demo-image.sh")
}

/// Runs the build script; Ok((stdout, stderr)).
fn run_build_script() -> Result<(String, String), String> {
    let out = Command::new("bash")
        .arg(build_script())
        .output()
        .map_err(|e| format!("cannot run the build script: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if out.status.success() {
        Ok((stdout, stderr))
    } else {
        Err(format!(
            "{} failed ({}):\n{stderr}",
            build_script().display(),
            out.status
        ))
    }
}

/// Checks that Docker answers and that the image is built (once per test
/// binary); panics with the reason otherwise.
fn demo_image_id() -> String {
    static BUILT: OnceLock<Result<String, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            docker(&["info", "--format", "{{.ServerVersion}}"]).map_err(|e| {
                format!(
                    "Docker is not reachable, and these tests need a real daemon \
                     (they never skip). Start it with `bash scripts/docker-up.sh`. \
                     Cause: {e}"
                )
            })?;
            let (stdout, _) = run_build_script()?;
            let id = stdout.lines().last().unwrap_or_default().to_string();
            if !id.starts_with("sha256:") {
                return Err(format!("the build script printed no image id: {stdout:?}"));
            }
            Ok(id)
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Serialises the tests that measure CPU and memory, so they do not disturb
/// each other's numbers on a small host.
fn measuring() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One demo container; dropping it runs `docker rm -f` on it (and on
/// anything else carrying its unique label, in case `docker run` created a
/// container but failed before printing its id).
struct DemoContainer {
    id: String,
    label: String,
    addr: SocketAddr,
}

impl DemoContainer {
    fn start() -> DemoContainer {
        demo_image_id();
        let label = format!("dev.invok.test=demo-image-{:016x}", rand::random::<u64>());
        let mut container = DemoContainer {
            id: String::new(),
            label,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        container.id = docker(&[
            "run",
            "-d",
            "--label",
            &container.label,
            "-p",
            "127.0.0.1::8080",
            IMAGE,
        ])
        .unwrap_or_else(|e| panic!("cannot start a demo container: {e}"));
        let mapped = docker(&["port", &container.id, "8080/tcp"])
            .unwrap_or_else(|e| panic!("cannot read the mapped port: {e}"));
        let port = mapped
            .lines()
            .find_map(|line| line.strip_prefix("127.0.0.1:"))
            .and_then(|p| p.trim().parse::<u16>().ok())
            .unwrap_or_else(|| panic!("no 127.0.0.1 port in `docker port` output {mapped:?}"));
        container.addr = SocketAddr::from(([127, 0, 0, 1], port));
        container.wait_ready();
        container
    }

    /// Polls `GET /` until it answers 200, for at most 15 s.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let last = match try_http(self.addr, "GET", "/", b"") {
                Ok(r) if r.status == 200 => return,
                Ok(r) => format!("status {}", r.status),
                Err(e) => e,
            };
            assert!(
                Instant::now() < deadline,
                "container {} not ready on {} within 15 s: {last}",
                self.short_id(),
                self.addr
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn short_id(&self) -> &str {
        &self.id[..12]
    }

    fn get(&self, path: &str) -> Response {
        self.request("GET", path, b"")
    }

    fn request(&self, method: &str, path: &str, body: &[u8]) -> Response {
        try_http(self.addr, method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path} on {}: {e}", self.addr))
    }

    fn cgroup_file(&self, controller: &str, file: &str) -> PathBuf {
        let candidates = [
            format!("/sys/fs/cgroup/{controller}/docker/{}/{file}", self.id),
            format!("/sys/fs/cgroup/cpu,cpuacct/docker/{}/{file}", self.id),
            format!(
                "/sys/fs/cgroup/{controller}/system.slice/docker-{}.scope/{file}",
                self.id
            ),
        ];
        candidates
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("no cgroup v1 file for the container; tried {candidates:?}"))
    }

    /// CPU time the container used so far (cpuacct.usage), in nanoseconds.
    fn cpu_usage_ns(&self) -> u64 {
        let path = self.cgroup_file("cpuacct", "cpuacct.usage");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        text.trim()
            .parse()
            .unwrap_or_else(|e| panic!("bad {}: {text:?}: {e}", path.display()))
    }

    /// `total_rss` of the container's memory cgroup, in bytes.
    fn total_rss(&self) -> u64 {
        let path = self.cgroup_file("memory", "memory.stat");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        text.lines()
            .find_map(|l| l.strip_prefix("total_rss "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no total_rss in {}", path.display()))
    }

    /// `docker stats --no-stream` with FORMAT for this container (takes ~2 s).
    fn stats(&self, format: &str) -> String {
        docker(&["stats", "--no-stream", "--format", format, &self.id])
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for DemoContainer {
    fn drop(&mut self) {
        let filter = format!("label={}", self.label);
        let mut ids: Vec<String> = docker(&["ps", "-aq", "--no-trunc", "--filter", &filter])
            .map(|listed| listed.lines().map(str::to_string).collect())
            .unwrap_or_default();
        if !self.id.is_empty() && !ids.contains(&self.id) {
            ids.push(self.id.clone());
        }
        for id in ids {
            if let Err(e) = docker(&["rm", "-f", &id]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A minimal HTTP/1.0 client: one request per connection, body read until
/// the server closes.
fn try_http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Result<Response, String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    stream
        .write_all(&request)
        .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("receive: {e}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no header end in {:?}", String::from_utf8_lossy(&raw)))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

/// Polls CONDITION every 50 ms until it holds; panics with WHAT after TIMEOUT.
fn poll_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Parses `docker stats` sizes like "65.14MiB" or "540KiB" into bytes.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let factor = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => return None,
    };
    Some((number.trim().parse::<f64>().ok()? * factor) as u64)
}

#[test]
fn demo_image_build_script_is_idempotent() {
    let first = demo_image_id();
    let (stdout, stderr) = run_build_script().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stdout, first, "a second run must keep the same image");
    assert!(
        stderr.contains("up to date"),
        "second run rebuilt: {stderr}"
    );
    let label = docker(&[
        "image",
        "inspect",
        "--format",
        "{{ index .Config.Labels \"dev.invok.demo-hash\" }}",
        IMAGE,
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(label.len(), 64, "content hash label missing: {label:?}");
}

#[test]
fn demo_image_root_answers_ok() {
    let c = DemoContainer::start();
    let r = c.get("/");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "ok\n");
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
}

#[test]
fn demo_image_echo_returns_body_and_hostname() {
    let c = DemoContainer::start();
    let hostname = docker(&["inspect", "--format", "{{.Config.Hostname}}", &c.id])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hostname, c.short_id());
    let body: &[u8] = b"first line\nsecond \"line\" with $HOME `x` 'y' \\ & %20 < > |\r\n\
        \ttabbed \xc3\xa9t\xc3\xa9 \x00 nul\n\n";

    let r = c.request("POST", "/cgi-bin/echo?a=1&b=two", body);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, body, "echo must return the body verbatim");
    assert_eq!(r.header("X-Hostname"), Some(hostname.as_str()));
    assert_eq!(r.header("X-Method"), Some("POST"));
    assert_eq!(r.header("X-Query"), Some("a=1&b=two"));
    assert_eq!(r.header("Content-Type"), Some("text/plain"));

    // "/" with a body dispatches to the echo.
    let r = c.request("POST", "/", body);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, body);
    assert_eq!(r.header("X-Hostname"), Some(hostname.as_str()));

    // A larger body, sent in several segments, comes back whole.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    assert_eq!(c.request("POST", "/cgi-bin/echo", &big).body, big);
}

#[test]
fn demo_image_sleep_status_and_bad_queries_answer_as_documented() {
    let c = DemoContainer::start();
    let started = Instant::now();
    let r = c.get("/cgi-bin/sleep?ms=300");
    assert_eq!((r.status, r.text().as_str()), (200, "slept 300 ms\n"));
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(c.get("/?sleep=10").text(), "slept 10 ms\n");

    let r = c.get("/cgi-bin/status?code=503");
    assert_eq!((r.status, r.text().as_str()), (503, "status 503\n"));

    for bad in [
        "/cgi-bin/cpu?ms=abc",
        "/cgi-bin/cpu",
        "/cgi-bin/sleep?ms=600001",
        "/cgi-bin/sleep?ms=-5",
        "/cgi-bin/mem?mb=64",
        "/cgi-bin/mem?mb=4097&ms=10",
        "/cgi-bin/status?code=99",
        "/?cpu=",
    ] {
        let r = c.get(bad);
        assert_eq!(r.status, 400, "{bad} answered {}: {}", r.status, r.text());
        assert!(!r.body.is_empty(), "{bad}: 400 without a message");
    }
}

#[test]
fn demo_image_cpu_endpoint_burns_one_core() {
    let _one_at_a_time = measuring();
    let c = DemoContainer::start();
    let before = c.cpu_usage_ns();
    let burn = thread::scope(|s| {
        let request = s.spawn(|| {
            let started = Instant::now();
            (c.get("/cgi-bin/cpu?ms=3000"), started.elapsed())
        });
        poll_until(Duration::from_secs(5), "the burn to start", || {
            c.cpu_usage_ns() > before + 50_000_000
        });
        // Measure over a 1.5 s window of the 3 s burn, while `docker stats`
        // samples the same period.
        let stats = s.spawn(|| c.stats("{{.CPUPerc}}"));
        let (u0, t0) = (c.cpu_usage_ns(), Instant::now());
        thread::sleep(Duration::from_millis(1500));
        let (u1, t1) = (c.cpu_usage_ns(), Instant::now());
        let cores = (u1 - u0) as f64 / (t1 - t0).as_nanos() as f64;
        assert!(cores > 0.5, "the burn used only {cores:.2} cores");
        let percent = stats.join().expect("docker stats thread");
        let percent: f64 = percent
            .trim_end_matches('%')
            .parse()
            .unwrap_or_else(|e| panic!("bad CPUPerc {percent:?}: {e}"));
        assert!(
            percent > 50.0,
            "docker stats shows {percent}% CPU during the burn"
        );
        request.join().expect("request thread")
    });
    let (r, took) = burn;
    assert_eq!((r.status, r.text().as_str()), (200, "burned 3000 ms\n"));
    assert!(
        took >= Duration::from_millis(3000),
        "answered after {took:?}"
    );
    // The burner is gone once the answer is out.
    let after = c.cpu_usage_ns();
    thread::sleep(Duration::from_millis(500));
    let idle = (c.cpu_usage_ns() - after) as f64 / 0.5e9;
    assert!(idle < 0.2, "still {idle:.2} cores busy after the answer");
}

#[test]
fn demo_image_mem_endpoint_holds_rss_then_releases_it() {
    let _one_at_a_time = measuring();
    let c = DemoContainer::start();
    let baseline = c.total_rss();
    assert!(
        baseline < 16 * MIB,
        "idle container already has {baseline} B RSS"
    );
    let r = thread::scope(|s| {
        let request = s.spawn(|| c.get("/cgi-bin/mem?mb=64&ms=4000"));
        poll_until(Duration::from_secs(5), "total_rss to reach 60 MiB", || {
            c.total_rss() >= 60 * MIB
        });
        // The same seen through Docker (`docker stats` takes ~2 s of the 4 s).
        let usage = c.stats("{{.MemUsage}}");
        let used = usage
            .split('/')
            .next()
            .and_then(parse_size)
            .unwrap_or_else(|| panic!("bad MemUsage {usage:?}"));
        assert!(
            used >= 60 * MIB,
            "docker stats shows {usage} during the hold"
        );
        request.join().expect("request thread")
    });
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "held 64 MB for 4000 ms\n")
    );
    poll_until(Duration::from_secs(5), "total_rss to fall back", || {
        c.total_rss() < baseline + 16 * MIB
    });
}

#[test]
fn parse_size_reads_docker_stats_units() {
    assert_eq!(parse_size("65.5MiB"), Some(65 * MIB + MIB / 2));
    assert_eq!(parse_size("540KiB"), Some(540 * 1024));
    assert_eq!(parse_size(" 1GiB "), Some(1024 * MIB));
    assert_eq!(parse_size("12B"), Some(12));
    assert_eq!(parse_size("n/a"), None);
}

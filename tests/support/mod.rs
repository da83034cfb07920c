//! Shared helpers for tests that run `invok run` against the real Docker daemon.
//!
//! Each test gets its own `--instance`, manifest directory, lock directory and admin
//! port; dropping the [`Operator`] stops it and force-removes every container carrying
//! that instance label (only those), also when the test fails.
#![allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "helpers for blocking tests against a real operator and a real daemon: real time is the point"
)]
#![allow(dead_code)]

pub mod traffic;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const IMAGE: &str = "invok/demo-fn:latest";

/// Runs `docker ARGS`, returning trimmed stdout or the error.
pub fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "`docker {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Fails the test (never skips) when Docker does not answer; builds the demo image once.
pub fn require_docker() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let r = READY.get_or_init(|| {
        docker(&["info", "--format", "{{.ServerVersion}}"]).map_err(|e| {
            format!("Docker does not answer; these tests need it (run `bash scripts/docker-up.sh`): {e}")
        })?;
        let out = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-demo-image.sh"))
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("build-demo-image.sh failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(())
    });
    if let Err(e) = r {
        panic!("{e}");
    }
}

/// The fast responder image (`scripts/fast-fn`; its answers say in
/// `X-Connection-Requests` how many requests their connection carried), built once.
pub const FAST_IMAGE: &str = "invok/fast-fn:latest";

/// Builds [`FAST_IMAGE`] once per test binary (fails the test when it cannot).
pub fn require_fast_image() {
    require_docker();
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let r = BUILT.get_or_init(|| {
        let out = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-fast-image.sh"))
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "build-fast-image.sh failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    });
    if let Err(e) = r {
        panic!("{e}");
    }
}

/// A unique, valid instance name.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{:x}", std::process::id(), nanos)
}

/// A manifest for the demo image.
pub fn pool_yaml(name: &str, min: u32, max: u32, extra_spec: &str) -> String {
    format!(
        "apiVersion: invok.dev/v1alpha1\nkind: FunctionPool\nmetadata:\n  name: {name}\nspec:\n  image: {IMAGE}\n{extra_spec}  scaling:\n    minContainers: {min}\n    maxContainers: {max}\n    pollInterval: 500ms\n"
    )
}

/// How long [`Operator::wait_reconciles`] waits: more than the operator's 30 s resync of
/// a quiet pool that nothing wakes.
pub const LOOK_TIMEOUT: Duration = Duration::from_secs(45);

/// A container as `docker ps` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Ctr {
    pub id: String,
    pub name: String,
    pub state: String,
    pub pool: String,
    pub spec_hash: String,
}

/// Containers of an instance (all states), optionally of one pool.
pub fn containers(instance: &str, pool: Option<&str>) -> Vec<Ctr> {
    let mut args = vec![
        "ps".to_string(),
        "-a".into(),
        "--no-trunc".into(),
        "--filter".into(),
        format!("label=dev.invok.instance={instance}"),
    ];
    if let Some(p) = pool {
        args.push("--filter".into());
        args.push(format!("label=dev.invok.pool={p}"));
    }
    args.push("--format".into());
    args.push("{{.ID}}|{{.Names}}|{{.State}}|{{.Label \"dev.invok.pool\"}}|{{.Label \"dev.invok.spec-hash\"}}".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    docker(&args)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            Ctr {
                id: f[0].into(),
                name: f[1].into(),
                state: f[2].into(),
                pool: f[3].into(),
                spec_hash: f[4].into(),
            }
        })
        .collect()
}

/// Running containers of a pool, sorted by id.
pub fn running(instance: &str, pool: &str) -> Vec<Ctr> {
    let mut v: Vec<Ctr> = containers(instance, Some(pool))
        .into_iter()
        .filter(|c| c.state == "running")
        .collect();
    v.sort_by(|a, b| a.id.cmp(&b.id));
    v
}

/// Removes every container of an instance.
pub fn remove_instance(instance: &str) {
    let ids: Vec<String> = containers(instance, None)
        .into_iter()
        .map(|c| c.id)
        .collect();
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(ids.iter().map(String::as_str));
        let _ = docker(&args);
    }
}

/// Waits until `cond` holds, polling; panics with `what` after `timeout`.
pub fn eventually(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A minimal HTTP/1.0 GET against loopback: (status, body).
pub fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    http(port, "GET", path, b"")
}

/// A minimal HTTP/1.0 request against loopback: (status, body).
pub fn http(port: u16, method: &str, path: &str, body: &[u8]) -> Result<(u16, String), String> {
    http_full(port, method, path, body).map(|(status, _, body)| (status, body))
}

/// A minimal HTTP/1.0 request against loopback: (status, response head, body).
pub fn http_full(
    port: u16,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, String, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    s.write_all(body).map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&resp).to_string();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad response: {text:?}"))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Ok((status, head.to_string(), body.to_string()))
}

/// A minimal HTTP/1.0 GET against loopback with extra header lines (`"Name: value"`):
/// (status, response head, body).
pub fn http_get_with(
    port: u16,
    path: &str,
    headers: &[&str],
) -> Result<(u16, String, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&resp).to_string();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad response: {text:?}"))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Ok((status, head.to_string(), body.to_string()))
}

/// Runs `cmd` to its end with stdout and stderr in files: (exit code, stderr). Kills it
/// and fails the test when it is still running after `limit`.
pub fn run_within(cmd: &mut Command, limit: Duration) -> (Option<i32>, String) {
    let (code, _, err) = run_capturing(cmd, limit);
    (code, err)
}

/// Runs `cmd` to its end: (exit code, stdout, stderr). Kills it and fails the test when
/// it is still running after `limit`.
pub fn run_capturing(cmd: &mut Command, limit: Duration) -> (Option<i32>, String, String) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let err = tempfile::NamedTempFile::new().unwrap();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.reopen().unwrap())
        .stderr(err.reopen().unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "still running after {limit:?}; stderr so far:\n{}",
                std::fs::read_to_string(err.path()).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.code(),
        std::fs::read_to_string(out.path()).unwrap_or_default(),
        std::fs::read_to_string(err.path()).unwrap_or_default(),
    )
}

/// The Docker daemon's ID (`docker info`), which the instance lock is keyed on.
pub fn daemon_id() -> String {
    docker(&["info", "--format", "{{.ID}}"]).unwrap()
}

/// The names of the files in `dir`, sorted.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `invok run`, its directories and its cleanup.
pub struct Operator {
    pub instance: String,
    pub dir: PathBuf,
    pub admin_port: u16,
    pub gateway_port: u16,
    pub log: PathBuf,
    child: Option<Child>,
    lock_dir: PathBuf,
    _tmp: tempfile::TempDir,
    keep_containers: bool,
    /// Extra `invok run` arguments.
    pub extra_args: Vec<String>,
    /// Extra `invok run` environment (over the defaults, such as its own
    /// `INVOK_LOCK_DIR`), at every (re)start.
    pub extra_env: Vec<(String, String)>,
}

impl Operator {
    /// Starts an operator for a new instance over a new manifest directory holding `files`.
    pub fn start(prefix: &str, files: &[(&str, String)]) -> Operator {
        Operator::start_with(prefix, files, &[])
    }

    /// Like [`Operator::start`], with extra `invok run` arguments.
    pub fn start_with(prefix: &str, files: &[(&str, String)], args: &[&str]) -> Operator {
        Operator::start_with_env(prefix, files, args, &[])
    }

    /// Like [`Operator::start_with`], with extra `invok run` environment.
    pub fn start_with_env(
        prefix: &str,
        files: &[(&str, String)],
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Operator {
        require_docker();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("manifests");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let mut op = Operator {
            instance: unique(prefix),
            dir,
            admin_port: 0,
            gateway_port: 0,
            log: tmp.path().join("operator.log"),
            child: None,
            lock_dir: tmp.path().join("lock"),
            _tmp: tmp,
            keep_containers: false,
            extra_args: args.iter().map(|a| a.to_string()).collect(),
            extra_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        op.spawn(&[]);
        op
    }

    /// (Re)starts the process with the same instance, directory and port.
    pub fn spawn(&mut self, env: &[(&str, &str)]) {
        self.admin_port = free_port();
        self.gateway_port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_invok"));
        cmd.args(["run", "--manifests"])
            .arg(&self.dir)
            .args(["--admin-listen", &format!("127.0.0.1:{}", self.admin_port)])
            .args(["--listen", &format!("127.0.0.1:{}", self.gateway_port)])
            .args(["--instance", &self.instance])
            .args(["--relist-interval", "1s", "--rescan-interval", "1s"])
            .args(&self.extra_args)
            .env("INVOK_LOCK_DIR", &self.lock_dir)
            .env("RUST_LOG", "info,invok=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().unwrap());
        let port = self.admin_port;
        eventually(Duration::from_secs(20), "the admin API answers", || {
            http_get(port, "/healthz").is_ok()
        });
    }

    /// The directory of this operator's instance lock (`INVOK_LOCK_DIR`, unless
    /// `extra_env` sets another).
    pub fn lock_dir(&self) -> PathBuf {
        self.extra_env
            .iter()
            .rev()
            .find(|(k, _)| k == "INVOK_LOCK_DIR")
            .map(|(_, v)| PathBuf::from(v))
            .unwrap_or_else(|| self.lock_dir.clone())
    }

    /// The operator's log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET on the admin API, parsed as JSON.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (_, body) =
            http_get(self.admin_port, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// The seed's status of one pool (Null when unknown).
    pub fn pool_status(&self, pool: &str) -> serde_json::Value {
        http_get(self.admin_port, "/status")
            .ok()
            .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok())
            .map(|v| v["pools"][pool].clone())
            .unwrap_or(serde_json::Value::Null)
    }

    /// Ready containers of a pool per the operator.
    pub fn ready(&self, pool: &str) -> u64 {
        self.pool_status(pool)["ready_containers"]
            .as_u64()
            .unwrap_or(0)
    }

    /// Writes a manifest atomically (as editors and `invok apply` do).
    pub fn write(&self, name: &str, text: &str) {
        let tmp = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, self.dir.join(name)).unwrap();
    }

    /// Sends a signal to the process and waits for it to exit; returns its exit code.
    pub fn signal_and_wait(&mut self, signal: &str) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("operator did not exit after SIG{signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A counter of the operator's own (`relists`, `manifestReads`).
    pub fn counter(&self, name: &str) -> u64 {
        self.get_json("/api/v1/pools")["operator"][name]
            .as_u64()
            .unwrap_or(0)
    }

    /// Waits until the operator relisted containers and re-read its directory `n` more
    /// times each.
    pub fn wait_rounds(&self, n: u64) {
        let (r, m) = (self.counter("relists"), self.counter("manifestReads"));
        eventually(
            Duration::from_secs(30),
            &format!("{n} more relists and directory reads"),
            || self.counter("relists") >= r + n && self.counter("manifestReads") >= m + n,
        );
    }

    /// Reconciles run for a pool so far.
    pub fn reconciles(&self, pool: &str) -> u64 {
        self.get_json(&format!("/api/v1/pools/{pool}"))["reconciles"]
            .as_u64()
            .unwrap_or(0)
    }

    /// Waits until the operator has looked at `pool` `n` more times (see
    /// [`Operator::looked_at`]): the way to let "nothing happens" be observed without a
    /// fixed sleep.
    pub fn wait_reconciles(&self, pool: &str, n: u64) {
        let start = self.reconciles(pool);
        eventually(
            LOOK_TIMEOUT,
            &format!("{n} more reconciles of {pool}"),
            || self.looked_at(pool, start, n),
        );
    }

    /// Whether the operator reconciled `pool` `n` times since its count was `start`, or
    /// once and found it quiet: a quiet pool stops polling, and until something wakes it
    /// (load, a request, an event, an edit) more reconciles would see the same. A caller
    /// that just wrote a manifest first waits for the operator to read it
    /// ([`Operator::wait_manifest_reads`], or the change showing in the status): a pass
    /// that began before the read would count here.
    pub fn looked_at(&self, pool: &str, start: u64, n: u64) -> bool {
        let report = self.get_json(&format!("/api/v1/pools/{pool}"));
        let reconciles = report["reconciles"].as_u64().unwrap_or(0);
        reconciles >= start + n || (reconciles > start && report["quiet"] == true)
    }

    /// Waits until the pool has exactly `n` running containers, all ready per the operator.
    pub fn wait_converged(&self, pool: &str, n: usize, timeout: Duration) {
        eventually(
            timeout,
            &format!("pool {pool} has {n} ready containers"),
            || {
                running(&self.instance, pool).len() == n
                    && self.ready(pool) == n as u64
                    && self.pool_status(pool)["container_count"].as_u64() == Some(n as u64)
            },
        );
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !self.keep_containers {
            remove_instance(&self.instance);
        }
        if std::thread::panicking() {
            eprintln!(
                "---- operator log ({}) ----\n{}",
                self.instance,
                self.logs()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Load and pool reports, for the autoscaling and Docker-outage tests.

/// The loopback port a container publishes the function's port 8080 on (None when the
/// container is gone or publishes nothing).
pub fn host_port(id: &str) -> Option<u16> {
    docker(&["port", id, "8080/tcp"])
        .ok()?
        .lines()
        .find_map(|l| l.trim().strip_prefix("127.0.0.1:")?.parse().ok())
}

/// Load on containers from background threads: each worker sends one request at a time
/// to its container's loopback port, over and over, until the [`Load`] is stopped or
/// dropped, its deadline passes, or the container goes away. Requests are bounded (the
/// caller picks, say, `/cgi-bin/cpu?ms=2000`), so load ends at most one request after
/// [`Load::stop`].
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Requests answered so far, all workers together.
    pub answered: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

type Flag = std::sync::Arc<std::sync::atomic::AtomicBool>;
type Count = std::sync::Arc<std::sync::atomic::AtomicU64>;

fn load_worker(stop: Flag, answered: Count, id: String, path: String, deadline: Instant) {
    std::thread::spawn(move || {
        use std::sync::atomic::Ordering;
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            let Some(port) = host_port(&id) else { return };
            match http_get(port, &path) {
                Ok(_) => {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
                // Not listening yet, or going away: look again shortly.
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    });
}

impl Load {
    fn new() -> Load {
        Load {
            stop: Default::default(),
            answered: Default::default(),
        }
    }

    /// Sends `path` to the container `id` until stopped, or for `max` at most.
    pub fn on(id: &str, path: &str, max: Duration) -> Load {
        let load = Load::new();
        load_worker(
            load.stop.clone(),
            load.answered.clone(),
            id.into(),
            path.into(),
            Instant::now() + max,
        );
        load
    }

    /// Sends `path` to every running container of `pool`, including containers that
    /// appear later (one worker each), until stopped, or for `max` at most.
    pub fn on_all(instance: &str, pool: &str, path: &str, max: Duration) -> Load {
        let load = Load::new();
        let deadline = Instant::now() + max;
        let (instance, pool, path) = (instance.to_string(), pool.to_string(), path.to_string());
        let (stop, answered) = (load.stop.clone(), load.answered.clone());
        std::thread::spawn(move || {
            use std::sync::atomic::Ordering;
            let mut seen = std::collections::HashSet::new();
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                for c in running(&instance, &pool) {
                    if seen.insert(c.id.clone()) {
                        load_worker(stop.clone(), answered.clone(), c.id, path.clone(), deadline);
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        load
    }

    /// Stops sending (the requests in flight run to their end).
    pub fn stop(&self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Operator {
    /// `GET /api/v1/pools/{pool}`.
    pub fn pool_json(&self, pool: &str) -> serde_json::Value {
        self.get_json(&format!("/api/v1/pools/{pool}"))
    }

    /// One container of a pool as the admin API reports it (Null when unknown).
    pub fn container_json(&self, pool: &str, id: &str) -> serde_json::Value {
        self.pool_json(pool)["containers"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["id"] == id).cloned())
            .unwrap_or(serde_json::Value::Null)
    }

    /// `GET /readyz`: (status, body); status 0 when the admin API does not answer.
    pub fn readyz(&self) -> (u16, String) {
        http_get(self.admin_port, "/readyz").unwrap_or_else(|e| (0, e))
    }
}

// ---------------------------------------------------------------------------------------
// For the regression tests: bounded shutdown, counters, Docker events, response headers.

/// Now as `docker events --since/--until` takes it: Unix seconds with nanoseconds.
pub fn docker_time(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

/// Ids of the containers of `instance` for which Docker reported `event` (`create`,
/// `start`, `die`, ...) between `since` and `until` (both in the past or now).
pub fn docker_events(
    instance: &str,
    event: &str,
    since: std::time::SystemTime,
    until: std::time::SystemTime,
) -> Vec<String> {
    docker(&[
        "events",
        "--since",
        &docker_time(since),
        "--until",
        &docker_time(until),
        "--filter",
        &format!("label=dev.invok.instance={instance}"),
        "--filter",
        &format!("event={event}"),
        "--format",
        "{{.ID}}",
    ])
    .unwrap()
    .lines()
    .filter(|l| !l.is_empty())
    .map(str::to_string)
    .collect()
}

/// A minimal HTTP/1.0 GET against loopback: (status, response head, body).
pub fn http_get_with_head(port: u16, path: &str) -> Result<(u16, String, String), String> {
    http_full(port, "GET", path, b"")
}

/// The value of a header in a response head (case-insensitive name).
pub fn header_value(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// How long a container has been up, per Docker (`.State.StartedAt`), as Docker prints it.
pub fn started_at(id: &str) -> Option<String> {
    docker(&["inspect", "-f", "{{.State.StartedAt}}", id]).ok()
}

impl Operator {
    /// Sends a signal and waits at most `limit` for the process to exit: `Ok((exit code,
    /// time taken))`, or `Err(time waited)` after which the process was killed (SIGKILL).
    pub fn signal_within(
        &mut self,
        signal: &str,
        limit: Duration,
    ) -> Result<(Option<i32>, Duration), Duration> {
        let mut child = self.child.take().expect("the operator runs");
        let sent = Instant::now();
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Ok((status.code(), sent.elapsed()));
            }
            if sent.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                return Err(sent.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The operator process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits until the operator has read its manifest directory `n` more times. A read
    /// counts as it ends, before it is applied, and one may have begun before an edit:
    /// wait for 3 to be sure one read that began after the edit has been applied.
    pub fn wait_manifest_reads(&self, n: u64) {
        let start = self.counter("manifestReads");
        eventually(
            Duration::from_secs(30),
            &format!("{n} more reads of the manifest directory"),
            || self.counter("manifestReads") >= start + n,
        );
    }

    /// The reasons of the pool's conditions that are `True`, and of its recent events.
    pub fn condition_and_event_reasons(&self, pool: &str) -> (Vec<String>, Vec<String>) {
        self.condition_and_event_reasons_since(pool, 0)
    }

    /// As [`Operator::condition_and_event_reasons`], events only from `since` (Unix
    /// seconds) on.
    pub fn condition_and_event_reasons_since(
        &self,
        pool: &str,
        since: u64,
    ) -> (Vec<String>, Vec<String>) {
        let r = self.pool_json(pool);
        let reasons = |key: &str, only_true: bool| -> Vec<String> {
            r[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|c| !only_true || c["status"] == "True")
                        .filter(|c| c["time"].as_u64().is_none_or(|t| t >= since))
                        .filter_map(|c| c["reason"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        (reasons("conditions", true), reasons("events", false))
    }

    /// Waits until `pool` has `n` running and ready containers again, none of them in
    /// `gone`; returns how long since `since`, and every `*BackOff` reason the pool's true
    /// conditions or its events from `events_since` (Unix seconds) on showed meanwhile.
    pub fn wait_replaced(
        &self,
        pool: &str,
        n: usize,
        gone: &[String],
        since: Instant,
        events_since: u64,
    ) -> (Duration, Vec<String>) {
        let mut backoff_seen = Vec::new();
        eventually(
            Duration::from_secs(30),
            &format!("{pool} has {n} ready containers again"),
            || {
                let (conditions, events) =
                    self.condition_and_event_reasons_since(pool, events_since);
                for r in conditions.iter().chain(&events) {
                    if r.contains("BackOff") && !backoff_seen.contains(r) {
                        backoff_seen.push(r.clone());
                    }
                }
                let now = running(&self.instance, pool);
                now.len() == n
                    && now.iter().all(|c| !gone.contains(&c.id))
                    && self.ready(pool) == n as u64
            },
        );
        (since.elapsed(), backoff_seen)
    }
}

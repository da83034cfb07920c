//! The chaos suite: faults put on a running operator with traffic flowing, and a checker
//! over the whole history of requests afterwards (Jepsen-style), on real Docker.
//!
//! Each case runs its own operator and instance (cleaned up when it ends, failed or
//! not), its own bounded traffic ([`support::traffic`]: every request recorded with its
//! status and the container that answered), injects its fault, then asserts what must
//! have survived. Figures each case measures are printed (`--nocapture`) and quoted in
//! README's "Reliability" section. Cases that restart dockerd live in
//! `tests/chaos_docker.rs`, a binary of their own.
#![allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "drives real operators and containers from blocking test code: real time is the point"
)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use support::traffic::{by_status, send_one, Sent, Traffic};
use support::*;

const T: Duration = Duration::from_secs(30);

/// Every case holds this: the cases measure how fast things heal, so on a 2-core
/// machine they run one at a time (the tests of one binary run in parallel).
fn alone() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Ready containers of `pool` per the admin API: id -> when Docker started it.
fn ready_containers(op: &Operator, pool: &str) -> BTreeMap<String, String> {
    op.pool_json(pool)["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter(|c| c["ready"] == true)
                .filter_map(|c| c["id"].as_str())
                .map(|id| (id.to_string(), started_at(id).unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// Half the containers of a pool killed at once under load: the pool is whole again
/// within 5 s, and the only requests that failed were on the killed containers.
#[test]
fn half_the_containers_killed_at_once_heal_within_5s_and_only_their_requests_fail() {
    let _alone = alone();
    let op = Operator::start("chaos-half", &[("web.yaml", pool_yaml("web", 4, 4, ""))]);
    op.wait_converged("web", 4, T);
    let traffic = Traffic::start(
        op.gateway_port,
        "web",
        "/?sleep=100",
        8,
        Duration::from_secs(60),
    );
    traffic.wait_more(50, T);
    let victims: Vec<Ctr> = running(&op.instance, "web").into_iter().take(2).collect();
    let killed_at = Instant::now();
    let ids: Vec<&str> = victims.iter().map(|c| c.id.as_str()).collect();
    docker(&[&["kill"], &ids[..]].concat()).unwrap();
    eventually(
        Duration::from_secs(5),
        "4 ready containers again, 2 of them new",
        || {
            let ready = ready_containers(&op, "web");
            ready.len() == 4 && ids.iter().all(|id| !ready.contains_key(*id))
        },
    );
    let healed = killed_at.elapsed();
    traffic.wait_more(50, T);
    let history = traffic.stop();
    let names: BTreeSet<&str> = victims.iter().map(|c| c.name.as_str()).collect();
    let failed: Vec<&Sent> = history.iter().filter(|s| s.status != 200).collect();
    for s in &failed {
        let error = s.error.as_deref().unwrap_or("");
        assert!(
            s.status == 502 && names.iter().any(|n| error.contains(n)),
            "a request failed that was not on a killed container: {s:?}"
        );
        assert!(
            s.started < killed_at + healed,
            "a request sent after the pool healed failed: {s:?}"
        );
    }
    let after_kill = failed.iter().filter(|s| s.started > killed_at).count();
    eprintln!(
        "half killed: healed in {healed:?}; {} requests, by status {:?}; {after_kill} of the failures were sent after the kill, before Docker's event took the container out of routing",
        history.len(),
        by_status(&history)
    );
}

/// The operator killed with SIGKILL under load and started again: the same containers
/// (none restarted, none added), and the gateway answers within 1 s of the new process
/// starting: adopted running containers are routable at once.
#[test]
fn the_operator_killed_under_load_adopts_its_containers_and_serves_within_1s() {
    let _alone = alone();
    let mut op = Operator::start("chaos-kill9", &[("web.yaml", pool_yaml("web", 3, 3, ""))]);
    op.wait_converged("web", 3, T);
    op.wait_reconciles("web", 2);
    let before = ready_containers(&op, "web");
    assert_eq!(before.len(), 3);
    let traffic = Traffic::start(
        op.gateway_port,
        "web",
        "/?sleep=50",
        4,
        Duration::from_secs(60),
    );
    traffic.wait_more(30, T);
    op.signal_and_wait("KILL");
    let history = traffic.stop();
    let restarted = Instant::now();
    op.spawn(&[]);
    let first = loop {
        let s = send_one(op.gateway_port, "web", "/");
        if s.status == 200 {
            break s.ended.duration_since(restarted);
        }
        assert!(
            restarted.elapsed() < T,
            "the gateway never served again: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    op.wait_reconciles("web", 3);
    assert_eq!(
        containers(&op.instance, None).len(),
        3,
        "no container added after the restart"
    );
    assert_eq!(
        ready_containers(&op, "web"),
        before,
        "the same containers, never restarted"
    );
    // Before the kill, every request was answered.
    let served: Vec<&Sent> = history.iter().filter(|s| s.status == 200).collect();
    assert!(served.len() >= 30);
    assert!(
        history.iter().all(|s| s.status == 200 || s.status == 0),
        "only requests cut by the kill itself fail: {:?}",
        by_status(&history)
    );
    eprintln!("kill -9: the new process served its first request {first:?} after it was started");
    assert!(
        first < Duration::from_secs(1),
        "first answer {first:?} after the restart"
    );
}

/// A Kubernetes ConfigMap mount: `web.yaml -> ..data/web.yaml`, `..data -> ..<time>`,
/// updated by writing a new timestamped directory and renaming a new `..data` link over
/// the old one. The operator picks the new spec up.
#[test]
fn a_configmap_mount_whose_data_link_is_swapped_is_picked_up() {
    let _alone = alone();
    let op = Operator::start("chaos-configmap", &[]);
    let root = &op.dir;
    let first = root.join("..2026_12_03_10_00_00.1");
    std::fs::create_dir(&first).unwrap();
    std::fs::write(first.join("web.yaml"), pool_yaml("web", 1, 1, "")).unwrap();
    std::os::unix::fs::symlink("..2026_12_03_10_00_00.1", root.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/web.yaml", root.join("web.yaml")).unwrap();
    op.wait_converged("web", 1, T);
    let second = root.join("..2026_12_03_10_05_00.2");
    std::fs::create_dir(&second).unwrap();
    std::fs::write(second.join("web.yaml"), pool_yaml("web", 2, 2, "")).unwrap();
    std::os::unix::fs::symlink("..2026_12_03_10_05_00.2", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    std::fs::remove_dir_all(&first).unwrap();
    op.wait_converged("web", 2, T);
    assert!(
        op.get_json("/api/v1/pools")["operator"]["manifestErrors"]
            .as_array()
            .is_some_and(|e| e.is_empty()),
        "the swap is no error"
    );
}

/// A thousand manifests written at once: every pool is listed, each reconciled once,
/// and the directory is not re-read in a storm.
#[test]
fn a_thousand_manifests_written_at_once_are_each_reconciled_once() {
    let _alone = alone();
    const N: usize = 1000;
    let op = Operator::start("chaos-thousand", &[]);
    let reads_before = op.counter("manifestReads");
    let started = Instant::now();
    for i in 0..N {
        // min 0: no containers, the cost is the operator's own. A long poll interval:
        // any reconcile beyond the first is the flood's doing, not the load sampler's.
        let name = format!("p{i:04}");
        let yaml = pool_yaml(&name, 0, 1, "").replace("pollInterval: 500ms", "pollInterval: 10m");
        assert!(yaml.contains("10m"));
        op.write(&format!("{name}.yaml"), &yaml);
    }
    let pools_listed = || {
        op.get_json("/api/v1/pools")["pools"]
            .as_array()
            .map_or(0, |p| p.len())
    };
    eventually(T, "every pool is listed", || pools_listed() == N);
    let listed = started.elapsed();
    // A few rescans later: still one reconcile per pool.
    op.wait_rounds(2);
    let pools = op.get_json("/api/v1/pools")["pools"].clone();
    let reconciles: BTreeMap<u64, usize> =
        pools
            .as_array()
            .unwrap()
            .iter()
            .fold(BTreeMap::new(), |mut m, p| {
                *m.entry(p["reconciles"].as_u64().unwrap_or(0)).or_default() += 1;
                m
            });
    let reads = op.counter("manifestReads") - reads_before;

    eprintln!(
        "1,000 manifests: all listed after {listed:?}; reconciles per pool {reconciles:?}; {reads} directory reads"
    );
    assert_eq!(
        reconciles,
        BTreeMap::from([(1, N)]),
        "each pool reconciled exactly once"
    );
}

/// A tmpfs mounted for one test, unmounted (also when the test fails).
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    /// Mounts a tmpfs of `size` (as `mount -o size=`); needs root, as the suite does.
    fn mount(size: &str) -> SmallFs {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (the suite runs as root)"
        );
        SmallFs { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// `invok apply` onto a file system with no space left: a clear error that names the
/// cause, the manifest that was there intact, and no temporary file left behind.
#[test]
fn apply_onto_a_full_file_system_fails_clearly_and_leaves_the_manifest_intact() {
    let _alone = alone();
    let fs = SmallFs::mount("64k");
    let old = pool_yaml("web", 1, 1, "");
    std::fs::write(fs.path().join("web.yaml"), &old).unwrap();
    // Fill what is left.
    let mut filler = std::fs::File::create(fs.path().join("filler")).unwrap();
    let block = vec![0u8; 4096];
    while std::io::Write::write_all(&mut filler, &block).is_ok() {}
    drop(filler);
    let input = tempfile::tempdir().unwrap();
    let new = pool_yaml("web", 2, 5, "  env:\n    - name: BIG\n      value: \"x\"\n");
    std::fs::write(input.path().join("web.yaml"), &new).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_invok"))
        .args(["apply", "-f"])
        .arg(input.path().join("web.yaml"))
        .arg("--manifests")
        .arg(fs.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("No space left on device") && stderr.contains("web.yaml"),
        "the error names the file and the cause: {stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(fs.path().join("web.yaml")).unwrap(),
        old,
        "the manifest that was there is intact"
    );
    assert_eq!(
        file_names(fs.path()),
        vec!["filler".to_string(), "web.yaml".to_string()],
        "no temporary file left"
    );
}

/// Hostile files dropped into the directory of a running operator: a 50 MB file, deep
/// nesting, an alias bomb, invalid UTF-8, a symbolic link loop. Each is a clear error
/// within a few directory reads, the operator stays small, and the running pool is not
/// disturbed (same container, never restarted).
#[test]
fn hostile_manifests_are_refused_in_bounded_time_and_memory_and_disturb_nothing() {
    let _alone = alone();
    let op = Operator::start("chaos-hostile", &[("web.yaml", pool_yaml("web", 1, 1, ""))]);
    op.wait_converged("web", 1, T);
    let before = ready_containers(&op, "web");
    let pid = op.pid().unwrap();
    let rss_before = rss_kb(pid);
    let dir = &op.dir;
    let head = "apiVersion: invok.dev/v1alpha1\nkind: FunctionPool\nmetadata:\n  name: x\nspec:\n  image: x\n";
    // 50 MB: a comment line, as a log or a dump pasted in would be.
    let mut big = String::with_capacity(50 << 20);
    big.push_str(head);
    big.push_str("# ");
    big.push_str(&"x".repeat(50 << 20));
    std::fs::write(dir.join("big.yaml"), big).unwrap();
    let depth = 500_000;
    std::fs::write(
        dir.join("deep.yaml"),
        format!("{head}  env: {}{}\n", "[".repeat(depth), "]".repeat(depth)),
    )
    .unwrap();
    let mut bomb = format!("{head}  labels:\n    a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for i in 1..10 {
        bomb.push_str(&format!(
            "    a{i}: &a{i} [{}]\n",
            vec![format!("*a{}", i - 1); 9].join(",")
        ));
    }
    std::fs::write(dir.join("bomb.yaml"), bomb).unwrap();
    std::fs::write(dir.join("binary.yaml"), b"apiVersion: \xff\xfe\x00\x01\n").unwrap();
    std::os::unix::fs::symlink("loop.yaml", dir.join("loop.yaml")).unwrap();
    let dropped = Instant::now();
    let errors = || -> Vec<String> {
        op.get_json("/api/v1/pools")["operator"]["manifestErrors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    eventually(T, "every hostile file is reported", || {
        let e = errors();
        [
            "big.yaml",
            "deep.yaml",
            "bomb.yaml",
            "binary.yaml",
            "loop.yaml",
        ]
        .iter()
        .all(|f| e.iter().any(|m| m.contains(f)))
    });
    let reported = dropped.elapsed();
    op.wait_rounds(2);
    let rss_after = rss_kb(pid);
    let e = errors();
    let said = |file: &str, what: &str| {
        assert!(
            e.iter().any(|m| m.contains(file) && m.contains(what)),
            "{file}: expected {what:?} in {e:#?}"
        );
    };
    said("big.yaml", "size limit");
    said("deep.yaml", "recursion limit");
    said("bomb.yaml", "repetition limit");
    said("binary.yaml", "UTF-8");
    eprintln!(
        "hostile manifests: all reported after {reported:?}; operator RSS {rss_before} -> {rss_after} KiB"
    );
    assert!(
        rss_after < rss_before + 30 * 1024,
        "the operator grew from {rss_before} to {rss_after} KiB"
    );
    assert_eq!(
        ready_containers(&op, "web"),
        before,
        "the running pool is not disturbed"
    );
    let (status, body) = http_get(op.gateway_port, "/function/web/").unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
}

/// The resident set of a process, in KiB.
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

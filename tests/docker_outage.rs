//! The Docker daemon stops and starts again while `invok run` runs: the operator keeps
//! running, says it is not ready (and why), and converges its pools again once the daemon
//! is back, without duplicates.
//!
//! This stops the machine's shared `dockerd`, so it is a test binary of its own: cargo
//! runs test binaries one after another, so no other test of this crate is using the
//! daemon meanwhile, and the tests here take [`one_at_a_time`] so that they do not stop
//! it under each other. A guard starts Docker again (`scripts/docker-up.sh`) when a test
//! ends, failed or not.
#![allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "drives a real dockerd from blocking test code: real time is the point"
)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::traffic::{by_status, Traffic};
use support::*;

const T: Duration = Duration::from_secs(30);

/// Held by each test for its whole run: one stops the daemon at a time.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static DAEMON: std::sync::Mutex<()> = std::sync::Mutex::new(());
    DAEMON.lock().unwrap_or_else(|e| e.into_inner())
}

fn docker_answers() -> bool {
    docker(&["info", "--format", "{{.ServerVersion}}"]).is_ok()
}

fn dockerd_pids() -> Vec<u32> {
    let out = Command::new("pgrep")
        .args(["-x", "dockerd"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// Starts Docker again when dropped (also when the test fails), after the stopped daemon
/// has exited (`docker-up.sh` starts a new one only when no `dockerd` runs).
struct DockerBack {
    stopped: Vec<u32>,
}

impl DockerBack {
    fn start_docker(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.stopped.iter().any(|p| alive(*p)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        for p in self.stopped.iter().filter(|p| alive(**p)) {
            eprintln!("dockerd {p} still runs 60 s after SIGTERM: SIGKILL");
            let _ = Command::new("kill")
                .args(["-KILL", &p.to_string()])
                .status();
        }
        // docker-up.sh starts a dockerd unless a live one runs (a stopped daemon may linger
        // as a zombie until PID 1 reaps it; the script does not count it).
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/docker-up.sh");
        let out = Command::new("bash")
            .arg(script)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() && docker_answers() {
            Ok(())
        } else {
            Err(format!(
                "docker-up.sh failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

impl Drop for DockerBack {
    fn drop(&mut self) {
        if !docker_answers() {
            if let Err(e) = self.start_docker() {
                eprintln!("could not start Docker again: {e}");
            }
        }
    }
}

/// Also the chaos suite's dockerd case: traffic runs through the gateway the whole time,
/// the pool is back at its size within 10 s of Docker answering again, and every request
/// sent once it is back is answered.
#[test]
fn dockerd_stopped_and_started_again_the_pool_converges_without_duplicates() {
    let _one = one_at_a_time();
    let op = Operator::start("outage", &[("web.yaml", pool_yaml("web", 2, 4, ""))]);
    op.wait_converged("web", 2, T);
    eventually(T, "/readyz answers 200", || op.readyz().0 == 200);
    let traffic = Traffic::start(
        op.gateway_port,
        "web",
        "/?sleep=50",
        2,
        Duration::from_secs(240),
    );
    traffic.wait_more(20, T);
    let before: Vec<String> = running(&op.instance, "web")
        .into_iter()
        .map(|c| c.id)
        .collect();

    // Dropped before `op` (declared after it): Docker answers again when the operator's
    // guard removes the instance's containers.
    let pids = dockerd_pids();
    assert_eq!(pids.len(), 1, "exactly one dockerd runs: {pids:?}");
    let back = DockerBack {
        stopped: pids.clone(),
    };
    let stop_started = Instant::now();
    Command::new("kill")
        .args(["-TERM", &pids[0].to_string()])
        .status()
        .unwrap();
    eventually(Duration::from_secs(60), "docker info fails", || {
        !docker_answers()
    });

    let mut last = (0, String::new());
    eventually(T, "/readyz turns 503 naming Docker", || {
        last = op.readyz();
        last.0 == 503 && last.1.contains("Docker")
    });
    eventually(Duration::from_secs(60), "the stopped dockerd exits", || {
        !pids.iter().any(|p| alive(*p))
    });
    let stop_took = stop_started.elapsed();
    // The operator lives on through the outage, and still says why it is not ready.
    let (code, _) = http_get(op.admin_port, "/healthz").expect("the operator still runs");
    assert_eq!(code, 200);
    assert_eq!(op.readyz().0, 503, "{last:?}");
    assert!(op.logs().contains("Docker became unreachable"));

    back.start_docker().expect("Docker starts again");
    let restarted = Instant::now();
    // Without live-restore the daemon's stop killed the containers: they are exited now,
    // and the operator replaces them.
    op.wait_converged("web", 2, Duration::from_secs(60));
    eventually(T, "/readyz answers 200 again", || op.readyz().0 == 200);
    let recovered_in = restarted.elapsed();
    let back_at = Instant::now();
    traffic.wait_more(40, T);
    let history = traffic.stop();
    let after: Vec<_> = history.iter().filter(|s| s.started > back_at).collect();
    assert!(
        after.iter().all(|s| s.status == 200),
        "every request sent after the pool was back is answered: {:?}",
        after
            .iter()
            .filter(|s| s.status != 200)
            .take(3)
            .collect::<Vec<_>>()
    );
    assert!(
        recovered_in <= Duration::from_secs(10),
        "the pool was back {recovered_in:?} after Docker answered"
    );
    op.wait_reconciles("web", 4);
    let all = containers(&op.instance, None);
    assert_eq!(all.len(), 2, "exactly 2 containers, no duplicates: {all:?}");
    assert!(all.iter().all(|c| c.state == "running"), "{all:?}");
    assert_eq!(op.ready("web"), 2);
    let replaced = all.iter().filter(|c| !before.contains(&c.id)).count();
    eprintln!(
        "dockerd stop took {stop_took:?}; pool converged {recovered_in:?} after Docker \
         answered again; {replaced} of 2 containers replaced; requests by status {:?}",
        by_status(&history)
    );

    // The events stream is followed again (resubscribed after the outage): a removed
    // container shows up as Docker events in the log, and is replaced.
    let seen = op.logs().len();
    let victim = all[0].id.clone();
    docker(&["rm", "-f", &victim]).unwrap();
    eventually(T, "the removed container is replaced", || {
        let cs = running(&op.instance, "web");
        cs.len() == 2 && cs.iter().all(|c| c.id != victim) && op.ready("web") == 2
    });
    eventually(T, "Docker events are followed again", || {
        op.logs()[seen..].contains("docker event")
    });
    drop(back);
}

/// Stops the one `dockerd` (its containers die with it: no live-restore) and starts Docker
/// again; returns once it answers. `back` starts it again should this fail halfway.
fn restart_dockerd() -> DockerBack {
    let pids = dockerd_pids();
    assert_eq!(pids.len(), 1, "exactly one dockerd runs: {pids:?}");
    let back = DockerBack {
        stopped: pids.clone(),
    };
    Command::new("kill")
        .args(["-TERM", &pids[0].to_string()])
        .status()
        .unwrap();
    eventually(Duration::from_secs(60), "docker info fails", || {
        !docker_answers()
    });
    eventually(Duration::from_secs(60), "the stopped dockerd exits", || {
        !pids.iter().any(|p| alive(*p))
    });
    back.start_docker().expect("Docker starts again");
    back
}

/// A user's Docker daemon restarted (its containers died with it), the pool came back,
/// and later two of its four containers were killed with `docker kill`, one after the
/// other. The restart's deaths had counted as crashes and were never forgotten, so the
/// kills put the pool into an 8 s CrashLoopBackOff: the two took 18 s to replace. Must
/// hold: the pool comes back to its size after the restart, and each later kill of a
/// container that had served for a while is replaced within 5 s, with no CrashLoopBackOff.
#[test]
fn after_a_dockerd_restart_killed_containers_are_replaced_at_once_without_backoff() {
    let _one = one_at_a_time();
    let op = Operator::start("outage-kill", &[("web.yaml", pool_yaml("web", 4, 4, ""))]);
    op.wait_converged("web", 4, T);
    eventually(T, "/readyz answers 200", || op.readyz().0 == 200);

    // Dropped before `op`: Docker answers when the operator's guard cleans up.
    let back = restart_dockerd();
    op.wait_converged("web", 4, Duration::from_secs(60));
    let served_from = Instant::now();
    eventually(T, "/readyz answers 200 again", || op.readyz().0 == 200);
    let all = containers(&op.instance, None);
    assert_eq!(
        all.len(),
        4,
        "exactly 4 containers after the restart: {all:?}"
    );

    // Containers that served this long are no crash when they die (the operator counts
    // 10 s).
    std::thread::sleep(
        (invok::controller::STABLE_RUN + Duration::from_secs(2))
            .saturating_sub(served_from.elapsed()),
    );
    let log_from = op.logs().len();
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut gone: Vec<String> = Vec::new();
    for round in 1..=2 {
        // Two of the four that came back after the restart (they served 12 s).
        let victim = all[round - 1].id.clone();
        let killed = Instant::now();
        docker(&["kill", &victim]).unwrap();
        gone.push(victim);
        let (took, backoff) = op.wait_replaced("web", 4, &gone, killed, since);
        eprintln!("kill {round} after the dockerd restart: replaced in {took:?}");
        assert!(
            backoff.is_empty(),
            "kill {round}: the pool reported {backoff:?}"
        );
        assert!(
            took <= Duration::from_secs(5),
            "kill {round}: replaced after {took:?}"
        );
    }
    assert!(
        !op.logs()[log_from..].contains("CrashLoopBackOff"),
        "the log says CrashLoopBackOff after the kills"
    );
    drop(back);
}

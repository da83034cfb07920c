//! The Docker daemon stops and starts again while `invok run` runs: the operator keeps
//! running, says it is not ready (and why), and converges its pools again once the daemon
//! is back, without duplicates.
//!
//! This stops the machine's shared `dockerd`, so it is a test binary of its own with ONE
//! test: cargo runs test binaries one after another, so no other test of this crate is
//! using the daemon meanwhile. A guard starts Docker again (`scripts/docker-up.sh`) when
//! the test ends, failed or not.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

const T: Duration = Duration::from_secs(30);

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

#[test]
fn dockerd_stopped_and_started_again_the_pool_converges_without_duplicates() {
    let op = Operator::start("outage", &[("web.yaml", pool_yaml("web", 2, 4, ""))]);
    op.wait_converged("web", 2, T);
    eventually(T, "/readyz answers 200", || op.readyz().0 == 200);
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
    op.wait_reconciles("web", 4);
    let all = containers(&op.instance, None);
    assert_eq!(all.len(), 2, "exactly 2 containers, no duplicates: {all:?}");
    assert!(all.iter().all(|c| c.state == "running"), "{all:?}");
    assert_eq!(op.ready("web"), 2);
    let replaced = all.iter().filter(|c| !before.contains(&c.id)).count();
    eprintln!(
        "dockerd stop took {stop_took:?}; pool converged {recovered_in:?} after Docker \
         answered again; {replaced} of 2 containers replaced"
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

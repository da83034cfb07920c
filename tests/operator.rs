//! `invok run` against the real Docker daemon: create, heal, roll out, prune, adopt.
//!
//! Each test runs its own operator process with its own `--instance`; the [`Operator`]
//! guard removes that instance's containers when the test ends, failed or not.
#![allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "drives a real operator from blocking test code: real time is the point"
)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

const T: Duration = Duration::from_secs(30);

#[test]
fn a_pool_is_created_at_min_and_follows_min_and_max_changes() {
    // Idle containers wait an hour before the scaler may remove them: what changes here
    // changes through min and max alone.
    let pool_yaml = |name, min, max, extra| {
        pool_yaml(name, min, max, extra).replace(
            "pollInterval: 500ms",
            "pollInterval: 500ms\n    cooldownDuration: 1h",
        )
    };
    let op = Operator::start("op-minmax", &[("web.yaml", pool_yaml("web", 2, 5, ""))]);
    op.wait_converged("web", 2, T);
    for c in running(&op.instance, "web") {
        assert!(
            c.name.starts_with("invok-web-") && c.name.len() == 15,
            "{}",
            c.name
        );
        let labels = docker(&["inspect", "-f", "{{json .Config.Labels}}", &c.id]).unwrap();
        let labels: serde_json::Value = serde_json::from_str(&labels).unwrap();
        assert_eq!(labels["dev.invok.managed-by"], "invok");
        assert_eq!(labels["dev.invok.instance"], op.instance.as_str());
        assert_eq!(labels["dev.invok.pool"], "web");
        assert_eq!(labels["dev.invok.spec-hash"].as_str().unwrap().len(), 16);
        let ports = docker(&["port", &c.id, "8080/tcp"]).unwrap();
        assert!(
            ports.starts_with("127.0.0.1:"),
            "published on loopback only: {ports}"
        );
    }
    assert!(op
        .logs()
        .contains("Created new container pool for function: web"));

    op.write("web.yaml", &pool_yaml("web", 4, 5, ""));
    op.wait_converged("web", 4, T);
    // Lowering min alone keeps what runs (the scaler, not min, shrinks a pool; the pool
    // is quiet after the pass that read the new min, so one more look is enough).
    op.write("web.yaml", &pool_yaml("web", 1, 5, ""));
    op.wait_manifest_reads(3);
    op.wait_reconciles("web", 3);
    assert_eq!(running(&op.instance, "web").len(), 4);
    // Lowering max below the count removes the surplus.
    op.write("web.yaml", &pool_yaml("web", 1, 2, ""));
    op.wait_converged("web", 2, T);
}

#[test]
fn env_and_image_changes_roll_out_one_at_a_time_with_min_ready_throughout() {
    require_docker();
    let tag = format!("invok/demo-fn:{}", unique("roll"));
    docker(&["tag", IMAGE, &tag]).unwrap();
    struct Untag(String);
    impl Drop for Untag {
        fn drop(&mut self) {
            let _ = docker(&["rmi", &self.0]);
        }
    }
    let _untag = Untag(tag.clone());

    let op = Operator::start("op-roll", &[("web.yaml", pool_yaml("web", 3, 5, ""))]);
    op.wait_converged("web", 3, T);
    let original: Vec<String> = running(&op.instance, "web")
        .into_iter()
        .map(|c| c.id)
        .collect();
    let first_hash = running(&op.instance, "web")[0].spec_hash.clone();

    let sample_until_rolled = |expected_image: &str, from_hash: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut min_ready = u64::MAX;
        loop {
            let st = op.pool_status("web");
            let ready = st["ready_containers"].as_u64().unwrap_or(0);
            min_ready = min_ready.min(ready);
            let cs = running(&op.instance, "web");
            let done = cs.len() == 3 && ready == 3 && cs.iter().all(|c| c.spec_hash != from_hash);
            if done {
                for c in &cs {
                    let image = docker(&["inspect", "-f", "{{.Config.Image}}", &c.id]).unwrap();
                    assert_eq!(image, expected_image);
                }
                return (min_ready, cs);
            }
            assert!(
                Instant::now() < deadline,
                "rollout did not finish; status {st}"
            );
            std::thread::sleep(Duration::from_millis(30));
        }
    };

    op.write(
        "web.yaml",
        &pool_yaml(
            "web",
            3,
            5,
            "  env:\n    - name: GREETING\n      value: hello\n",
        ),
    );
    let (min_ready, after_env) = sample_until_rolled(IMAGE, &first_hash);
    assert!(
        min_ready >= 3,
        "ready count dropped to {min_ready} during the env rollout"
    );
    assert!(after_env.iter().all(|c| !original.contains(&c.id)));
    let env = docker(&["inspect", "-f", "{{json .Config.Env}}", &after_env[0].id]).unwrap();
    assert!(env.contains("GREETING=hello"), "{env}");

    let second_hash = after_env[0].spec_hash.clone();
    let yaml = pool_yaml(
        "web",
        3,
        5,
        "  env:\n    - name: GREETING\n      value: hello\n",
    )
    .replace(IMAGE, &tag);
    op.write("web.yaml", &yaml);
    let (min_ready, _) = sample_until_rolled(&tag, &second_hash);
    assert!(
        min_ready >= 3,
        "ready count dropped to {min_ready} during the image rollout"
    );
    // One at a time: never more than max+1 containers existed.
    assert!(op.logs().matches("Replaced outdated container").count() >= 6);
}

#[test]
fn an_invalid_edit_changes_nothing_and_restoring_the_spec_restarts_nothing() {
    let good = pool_yaml("web", 2, 4, "");
    let op = Operator::start("op-invalid", &[("web.yaml", good.clone())]);
    op.wait_converged("web", 2, T);
    let before = running(&op.instance, "web");
    op.write("web.yaml", &good.replace("maxContainers", "maxContainer"));
    eventually(T, "the error is reported with FILE:LINE:COL", || {
        let r = op.get_json("/api/v1/pools/web");
        r["manifestError"]
            .as_str()
            .is_some_and(|e| e.contains("web.yaml:9:5: spec.scaling.maxContainer: unknown field"))
            && r["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["reason"] == "InvalidSpec"))
    });
    assert!(op
        .logs()
        .contains("web.yaml:9:5: spec.scaling.maxContainer"));
    assert_eq!(running(&op.instance, "web"), before);
    op.write("web.yaml", &good);
    eventually(T, "the error clears", || {
        op.get_json("/api/v1/pools/web")["manifestError"].is_null()
    });
    op.wait_reconciles("web", 3);
    assert_eq!(
        running(&op.instance, "web"),
        before,
        "restoring the same spec restarted containers"
    );
}

#[test]
fn a_removed_or_killed_container_is_replaced() {
    let op = Operator::start("op-heal", &[("web.yaml", pool_yaml("web", 2, 4, ""))]);
    op.wait_converged("web", 2, T);
    let cs = running(&op.instance, "web");
    docker(&["rm", "-f", &cs[0].id]).unwrap();
    eventually(T, "the removed container is replaced", || {
        let now = running(&op.instance, "web");
        now.len() == 2 && now.iter().all(|c| c.id != cs[0].id) && op.ready("web") == 2
    });
    // Killed from inside: the function process dies, the container exits. The exec'd
    // shell may die with it (PID 1 gone, the kernel kills the rest of the namespace)
    // before it reports, so `docker exec` fails exactly when the kill worked too early
    // for it: accept that failure only if the container really stopped.
    if let Err(e) = docker(&["exec", &cs[1].id, "sh", "-c", "kill 1"]) {
        let state = docker(&["inspect", "-f", "{{.State.Running}}", &cs[1].id]);
        assert!(
            state.as_deref().map_or(true, |s| s.trim() == "false"),
            "docker exec failed ({e}) and the container still runs ({state:?})"
        );
    }
    eventually(T, "the killed container is replaced and removed", || {
        let all = containers(&op.instance, Some("web"));
        all.len() == 2
            && all.iter().all(|c| c.id != cs[1].id && c.state == "running")
            && op.ready("web") == 2
    });
}

#[test]
fn a_crash_looping_command_backs_off() {
    let yaml = pool_yaml(
        "crash",
        1,
        1,
        "  command: [\"/bin/sh\", \"-c\", \"exit 3\"]\n",
    );
    let op = Operator::start("op-crash", &[("crash.yaml", yaml)]);
    let since = docker(&["version", "-f", "{{.Server.Version}}"])
        .map(|_| chrono_now())
        .unwrap();
    eventually(T, "CrashLoopBackOff is reported", || {
        op.get_json("/api/v1/pools/crash")["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["reason"] == "CrashLoopBackOff"))
    });
    // Observe for 20 s of relists (one per second).
    op.wait_rounds(20);
    let until = chrono_now();
    let created = docker(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        &format!("label=dev.invok.instance={}", op.instance),
        "--filter",
        "event=create",
        "--format",
        "{{.ID}}",
    ])
    .unwrap();
    let n = created.lines().count();
    // 1 s, 2 s, 4 s, 8 s ... backoff: a handful in ~25 s, not one per reconcile.
    assert!((2..=8).contains(&n), "{n} containers created in ~25 s");
}

fn chrono_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

#[test]
fn a_missing_image_is_reported_and_other_pools_keep_going() {
    let missing = pool_yaml("ghost", 1, 1, "").replace(IMAGE, "127.0.0.1:1/invok/missing:1");
    let op = Operator::start(
        "op-image",
        &[
            ("ghost.yaml", missing),
            ("web.yaml", pool_yaml("web", 1, 1, "")),
        ],
    );
    op.wait_converged("web", 1, T);
    eventually(T, "ImagePullFailed is reported", || {
        let r = op.get_json("/api/v1/pools/ghost");
        r["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("127.0.0.1:1/invok/missing:1"))
            && r["events"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["reason"] == "ImagePullFailed"))
    });
    assert!(running(&op.instance, "ghost").is_empty());
}

#[test]
fn a_deleted_manifest_prunes_its_pool() {
    let op = Operator::start(
        "op-prune",
        &[
            ("a.yaml", pool_yaml("a", 2, 2, "")),
            ("b.yaml", pool_yaml("b", 1, 1, "")),
        ],
    );
    op.wait_converged("a", 2, T);
    op.wait_converged("b", 1, T);
    std::fs::remove_file(op.dir.join("a.yaml")).unwrap();
    eventually(T, "pool a is pruned", || {
        containers(&op.instance, Some("a")).is_empty()
    });
    assert_eq!(running(&op.instance, "b").len(), 1);
}

#[test]
fn orphans_are_removed_but_foreign_containers_are_untouched() {
    require_docker();
    let op = Operator::start("op-orphan", &[("web.yaml", pool_yaml("web", 1, 1, ""))]);
    op.wait_converged("web", 1, T);
    let other_instance = unique("other");
    let run = |labels: &[String]| container_with(&["run", "-d", "--init"], labels);
    // The operator may prune the orphan between its create and its start, so it is only
    // created: a created container of an undeclared pool is an orphan all the same.
    let orphan = container_with(
        &["create", "--init"],
        &[
            "dev.invok.managed-by=invok".into(),
            format!("dev.invok.instance={}", op.instance),
            "dev.invok.pool=undeclared".into(),
            "dev.invok.spec-hash=0000000000000000".into(),
        ],
    );
    let foreign = run(&[
        "dev.invok.managed-by=invok".into(),
        format!("dev.invok.instance={other_instance}"),
        "dev.invok.pool=web".into(),
    ]);
    let plain = run(&[format!("dev.invok.test={other_instance}")]);
    struct Cleanup(Vec<String>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for id in &self.0 {
                let _ = docker(&["rm", "-f", id]);
            }
        }
    }
    let _cleanup = Cleanup(vec![foreign.clone(), plain.clone()]);
    eventually(T, "the orphan is removed", || {
        docker(&["inspect", &orphan]).is_err()
    });
    op.wait_reconciles("web", 3);
    for id in [&foreign, &plain] {
        let state = docker(&["inspect", "-f", "{{.State.Status}}", id]).unwrap();
        assert_eq!(state, "running", "a container that is not ours was touched");
    }
}

#[test]
fn a_killed_operator_restarted_adopts_exactly_the_same_containers() {
    let mut op = Operator::start("op-adopt", &[("web.yaml", pool_yaml("web", 3, 5, ""))]);
    op.wait_converged("web", 3, T);
    let before = running(&op.instance, "web");
    op.signal_and_wait("KILL");
    op.spawn(&[]);
    op.wait_converged("web", 3, T);
    op.wait_reconciles("web", 3);
    assert_eq!(
        running(&op.instance, "web"),
        before,
        "containers were restarted or duplicated"
    );
    assert_eq!(containers(&op.instance, None).len(), 3);
}

#[test]
fn sigterm_stops_the_operator_and_leaves_containers_running() {
    let mut op = Operator::start("op-term", &[("web.yaml", pool_yaml("web", 2, 2, ""))]);
    op.wait_converged("web", 2, T);
    let before = running(&op.instance, "web");
    assert_eq!(op.signal_and_wait("TERM"), Some(0));
    assert_eq!(running(&op.instance, "web"), before);
    assert!(op.logs().contains("containers left running"));
}

#[test]
fn a_missing_directory_removes_nothing() {
    let mut op = Operator::start("op-missing", &[("web.yaml", pool_yaml("web", 2, 2, ""))]);
    op.wait_converged("web", 2, T);
    let before = running(&op.instance, "web");
    op.signal_and_wait("TERM");
    let moved = op.dir.with_file_name("elsewhere");
    std::fs::rename(&op.dir, &moved).unwrap();
    op.spawn(&[]);
    eventually(T, "the operator reports the directory", || {
        op.logs().contains("cannot read manifest directory")
    });
    op.wait_rounds(3);
    assert_eq!(running(&op.instance, "web"), before);
    std::fs::rename(&moved, &op.dir).unwrap();
}

/// `invok run` for `op`'s instance and directory on new ports, with `DOCKER_HOST` as
/// given (`None`: unset), as a second operator would be started.
fn second_operator(op: &Operator, docker_host: Option<&str>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_invok"));
    cmd.args(["run", "--manifests"])
        .arg(&op.dir)
        .args(["--admin-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--instance", &op.instance])
        .env("INVOK_LOCK_DIR", op.lock_dir())
        .env_remove("DOCKER_HOST");
    if let Some(host) = docker_host {
        cmd.env("DOCKER_HOST", host);
    }
    cmd
}

/// Asserts that `err` is the refusal of a second operator of `op`'s instance.
#[track_caller]
fn assert_refused(err: &str, op: &Operator) {
    for part in [
        format!(
            "already manages instance \"{}\" on this Docker daemon",
            op.instance
        ),
        format!("pid {}", op.pid().unwrap()),
        format!("admin API 127.0.0.1:{}", op.admin_port),
        "Stop it first".to_string(),
        "another instance name".to_string(),
        op.lock_dir().display().to_string(),
    ] {
        assert!(err.contains(&part), "{part:?} missing from: {err}");
    }
}

/// The lock is keyed on the daemon's ID from `docker info`, not on how `DOCKER_HOST`
/// spells the way to it: here /var/run is a link to /run, so the three spellings below
/// reach one socket, and one daemon.
#[test]
fn a_second_operator_of_the_instance_refuses_to_start_however_docker_host_names_the_daemon() {
    assert_eq!(
        std::fs::canonicalize("/var/run/docker.sock").unwrap(),
        std::fs::canonicalize("/run/docker.sock").unwrap(),
        "this test expects /var/run to be /run"
    );
    let op = Operator::start_with_env(
        "op-lock",
        &[("web.yaml", pool_yaml("web", 1, 1, ""))],
        &[],
        &[("DOCKER_HOST", "unix:///run/docker.sock")],
    );
    op.wait_converged("web", 1, T);
    let before = running(&op.instance, "web");
    assert_eq!(
        file_names(&op.lock_dir()),
        [invok::lock::file_name(&op.instance, &daemon_id())],
        "one lock, named after the instance and the daemon's ID"
    );
    for host in [
        None,
        Some("unix:///var/run/docker.sock"),
        Some("unix:///run/docker.sock"),
    ] {
        let (code, err) = run_within(&mut second_operator(&op, host), T);
        assert_eq!(code, Some(1), "DOCKER_HOST={host:?}: {err}");
        assert_refused(&err, &op);
    }
    op.wait_reconciles("web", 2);
    assert_eq!(running(&op.instance, "web"), before, "nothing was touched");
}

#[test]
fn operators_of_different_instances_run_side_by_side_on_one_daemon() {
    let locks = tempfile::tempdir().unwrap();
    let dir = locks.path().to_str().unwrap();
    let files = [("web.yaml", pool_yaml("web", 1, 1, ""))];
    let a = Operator::start_with_env("op-side-a", &files, &[], &[("INVOK_LOCK_DIR", dir)]);
    let b = Operator::start_with_env("op-side-b", &files, &[], &[("INVOK_LOCK_DIR", dir)]);
    a.wait_converged("web", 1, T);
    b.wait_converged("web", 1, T);
    let id = daemon_id();
    let mut expected = vec![
        invok::lock::file_name(&a.instance, &id),
        invok::lock::file_name(&b.instance, &id),
    ];
    expected.sort();
    assert_eq!(file_names(locks.path()), expected);
    assert_ne!(running(&a.instance, "web"), running(&b.instance, "web"));
}

/// Without Docker the daemon's ID is unknown, so the operator cannot lock its instance
/// at start: it starts all the same (the admin API says it is not ready), touches
/// nothing, and locks the instance as soon as Docker answers, before it creates anything.
#[test]
fn an_operator_started_before_docker_answers_locks_the_instance_once_it_does() {
    let sock_dir = tempfile::tempdir().unwrap();
    let sock = sock_dir.path().join("docker.sock");
    // A file where the socket should be: every connection fails at once.
    std::fs::write(&sock, "").unwrap();
    let host = format!("unix://{}", sock.display());
    let op = Operator::start_with_env(
        "op-late",
        &[("web.yaml", pool_yaml("web", 1, 1, ""))],
        &[],
        &[("DOCKER_HOST", &host)],
    );
    assert_eq!(op.readyz().0, 503);
    assert!(
        file_names(&op.lock_dir()).is_empty(),
        "no lock without the daemon's ID"
    );
    assert!(containers(&op.instance, None).is_empty());

    let link = sock_dir.path().join("link");
    std::os::unix::fs::symlink("/run/docker.sock", &link).unwrap();
    std::fs::rename(&link, &sock).unwrap();
    op.wait_converged("web", 1, T);
    assert_eq!(
        file_names(&op.lock_dir()),
        [invok::lock::file_name(&op.instance, &daemon_id())]
    );
    assert!(op.logs().contains("instance locked on this Docker daemon"));
    let (code, err) = run_within(&mut second_operator(&op, None), T);
    assert_eq!(code, Some(1), "{err}");
    assert_refused(&err, &op);
}

#[test]
fn sigterm_before_docker_ever_answered_exits_0_having_touched_nothing() {
    let sock_dir = tempfile::tempdir().unwrap();
    let sock = sock_dir.path().join("docker.sock");
    std::fs::write(&sock, "").unwrap();
    let host = format!("unix://{}", sock.display());
    let mut op = Operator::start_with_env(
        "op-late-term",
        &[("web.yaml", pool_yaml("web", 1, 1, ""))],
        &[],
        &[("DOCKER_HOST", &host)],
    );
    assert_eq!(op.signal_and_wait("TERM"), Some(0));
    assert!(file_names(&op.lock_dir()).is_empty());
    assert!(containers(&op.instance, None).is_empty());
}

/// `docker VERB... --label L... IMAGE`, returning the container id.
fn container_with(verb: &[&str], labels: &[String]) -> String {
    let mut args: Vec<String> = verb.iter().map(|v| v.to_string()).collect();
    for l in labels {
        args.push("--label".into());
        args.push(l.clone());
    }
    args.push(IMAGE.into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    docker(&args).unwrap()
}

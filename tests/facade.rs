//! The seed's programmatic API on real Docker: registering, picking, filling, alerting,
//! and the seed's example itself.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use invok::runtime::RuntimeError;
use invok::{AutoscalingError, AutoscalingRuntimeBuilder};
use support::*;

/// Containers this test started itself (not through Invok); removed on drop.
struct Started(Vec<String>);

impl Drop for Started {
    fn drop(&mut self) {
        for id in &self.0 {
            let _ = docker(&["rm", "-f", id]);
        }
    }
}

/// Removes every container Invok created for an instance, also when the test fails.
struct InstanceCleanup(String);

impl Drop for InstanceCleanup {
    fn drop(&mut self) {
        remove_instance(&self.0);
    }
}

fn run_demo(name: &str, label: &str) -> String {
    docker(&[
        "run",
        "-d",
        "--init",
        "--name",
        name,
        "--label",
        &format!("dev.invok.test={label}"),
        "-p",
        "127.0.0.1::8080",
        IMAGE,
    ])
    .unwrap()
}

fn port_of(id: &str) -> u16 {
    docker(&["port", id, "8080/tcp"])
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

async fn bollard() -> bollard::Docker {
    bollard::Docker::connect_with_local_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap()
}

/// Captures the log lines of this test's runtime.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).to_string()
    }

    /// The log of every runtime in this test binary (tracing caches per call site
    /// whether anyone listens, so a per-test subscriber would miss lines).
    fn global() -> Logs {
        static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = Logs::default();
            let writer = logs.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
            logs
        })
        .clone()
    }
}

async fn eventually_async(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn burn(port: u16, ms: u32) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let _ = http_get(port, &format!("/cgi-bin/cpu?ms={ms}"));
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_function_returns_the_container_that_is_not_burning() {
    require_docker();
    Logs::global();
    let tag = unique("facade-pick");
    let a = run_demo(&format!("{tag}-a"), &tag);
    let b = run_demo(&format!("{tag}-b"), &tag);
    let _started = Started(vec![a.clone(), b.clone()]);
    let instance = unique("lib-pick");
    let _cleanup = InstanceCleanup(instance.clone());
    let runtime = AutoscalingRuntimeBuilder::new()
        .instance(instance)
        // Low thresholds: one burning core must read as overloaded even on a busy host.
        .cpu_overload_threshold(0.25)
        .cooldown_cpu_threshold(0.05)
        .min_containers_per_function(1)
        .max_containers_per_function(2)
        .cooldown_duration(Duration::from_secs(120))
        .poll_interval(Duration::from_millis(500))
        .build(bollard().await, String::new());
    runtime.start().await.unwrap();
    runtime
        .register_container("picker", format!("{tag}-a"), format!("{tag}-a"))
        .await
        .unwrap();
    runtime
        .register_container("picker", format!("{tag}-b"), format!("{tag}-b"))
        .await
        .unwrap();
    let pool = runtime.autoscaler().get_or_create_pool("picker").await;
    assert_eq!(pool.container_count(), 2);
    let burner = burn(port_of(&a), 8000);
    eventually_async("a reads overloaded", || {
        let cs = pool.containers();
        eprintln!(
            "{:?}",
            cs.iter()
                .map(|c| (&c.name, c.cpu_usage(), c.status()))
                .collect::<Vec<_>>()
        );
        cs.iter()
            .any(|c| c.id == a && c.status() == Some(invok::scaler::LoadState::Overloaded))
    })
    .await;
    for _ in 0..5 {
        assert_eq!(
            runtime.execute_function("picker").await.unwrap().as_deref(),
            Some(format!("{tag}-b").as_str())
        );
    }
    runtime.shutdown();
    burner.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_below_its_min_is_filled_from_a_registered_containers_image() {
    require_docker();
    Logs::global();
    let tag = unique("facade-fill");
    let instance = unique("lib-fill");
    let a = run_demo(&format!("{tag}-a"), &tag);
    let _started = Started(vec![a.clone()]);
    let _cleanup = InstanceCleanup(instance.clone());
    let runtime = AutoscalingRuntimeBuilder::new()
        .instance(instance.clone())
        .min_containers_per_function(3)
        .build(bollard().await, String::new());
    runtime.start().await.unwrap();
    runtime
        .register_container("filled", a.clone(), format!("{tag}-a"))
        .await
        .unwrap();
    eventually_async("two containers of Invok's join the registered one", || {
        running(&instance, "filled").len() == 2
    })
    .await;
    for c in running(&instance, "filled") {
        assert_eq!(
            docker(&["inspect", "-f", "{{.Config.Image}}", &c.id]).unwrap(),
            IMAGE
        );
    }
    let pool = runtime.autoscaler().get_or_create_pool("filled").await;
    eventually_async("the pool counts three", || pool.container_count() == 3).await;
    // The registered container is the user's: still running, never relabelled.
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Status}}", &a]).unwrap(),
        "running"
    );
    runtime.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_pool_overloaded_at_max_logs_the_alert_and_status_matches_the_admin_api() {
    require_docker();
    let logs = Logs::global();
    let tag = unique("facade-max");
    let a = run_demo(&format!("{tag}-a"), &tag);
    let _started = Started(vec![a.clone()]);
    let instance = unique("lib-max");
    let _cleanup = InstanceCleanup(instance.clone());
    let runtime = AutoscalingRuntimeBuilder::new()
        .instance(instance)
        .cpu_overload_threshold(0.25)
        .cooldown_cpu_threshold(0.05)
        .min_containers_per_function(1)
        .max_containers_per_function(1)
        .poll_interval(Duration::from_millis(500))
        .build(bollard().await, String::new());
    runtime.start().await.unwrap();
    runtime
        .register_container("maxed", a.clone(), "maxed-1".into())
        .await
        .unwrap();
    let burner = burn(port_of(&a), 6000);
    eventually_async("the seed's alert is logged", || {
        logs.text()
            .contains("Max container limit reached for function maxed")
    })
    .await;
    assert!(
        logs.text().contains(
            "Starting autoscaler with config: AutoscalerConfig { cpu_overload_threshold:"
        ),
        "{}",
        logs.text()
    );
    assert!(logs
        .text()
        .contains("Created new container pool for function: maxed"));
    assert!(logs.text().contains("status changed from"));

    // get_status() is what the admin API's /status says.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = runtime.admin_router();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let status = runtime.get_status();
    let (_, body) = tokio::task::spawn_blocking(move || http_get(port, "/status").unwrap())
        .await
        .unwrap();
    let served: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(served, status);
    assert_eq!(status["runtime"], "autoscaling");
    assert_eq!(status["pools"]["maxed"]["function_name"], "maxed");
    assert_eq!(status["pools"]["maxed"]["container_count"], 1);
    server.abort();
    runtime.shutdown();
    burner.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_a_container_that_does_not_exist_fails_as_not_found() {
    require_docker();
    let instance = unique("lib-missing");
    let _cleanup = InstanceCleanup(instance.clone());
    // A name no container has: this test never makes one.
    let missing = unique("facade-missing");
    let runtime = AutoscalingRuntimeBuilder::new()
        .instance(instance.clone())
        .build(bollard().await, String::new());
    runtime.start().await.unwrap();
    let err = runtime
        .register_container("ghost", missing.clone(), missing.clone())
        .await
        .expect_err("registering a container that does not exist fails");
    match &err {
        AutoscalingError::Register {
            function,
            container,
            source,
        } => {
            assert_eq!(
                (function.as_str(), container.as_str()),
                ("ghost", &*missing)
            );
            assert!(
                matches!(source, RuntimeError::NotFound(_)),
                "Docker's 404 is classified as not found: {source:?}"
            );
            assert!(!source.is_unavailable(), "{source:?}");
        }
        other => panic!("expected AutoscalingError::Register, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("no such container") && message.contains(&missing),
        "the message says what failed: {message}"
    );
    // Nothing was declared for it.
    assert!(
        runtime.get_status()["pools"].get("ghost").is_none(),
        "{}",
        runtime.get_status()
    );
    assert!(running(&instance, "ghost").is_empty());
    runtime.shutdown();
}

#[test]
fn the_seeds_basic_example_runs_against_a_real_container() {
    require_docker();
    // The example registers a container called "container-123"; make one, ours.
    let _ = docker(&["rm", "-f", "container-123"]);
    // Containers of Invok's own left by an earlier run that was killed before cleaning up
    // would be adopted into the pool and counted below.
    remove_instance("library");
    let id = run_demo("container-123", "basic-usage-example");
    let _started = Started(vec![id.clone()]);
    let _library = InstanceCleanup("library".into());
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("basic_usage");
    let out = if example.exists() {
        std::process::Command::new(&example).output().unwrap()
    } else {
        std::process::Command::new(env!("CARGO"))
            .args(["run", "--quiet", "--example", "basic_usage"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap()
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Function executed on container: container-123"),
        "{stdout}"
    );
    let json = stdout.split_once("Runtime status: ").unwrap().1;
    let status: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(status["runtime"], "autoscaling");
    assert_eq!(
        status["pools"]["my-function"]["function_name"],
        "my-function"
    );
    // The registered container, and only it: min is 1 and it counts towards it.
    assert_eq!(
        status["pools"]["my-function"]["container_count"], 1,
        "{status}"
    );
}

/// The programmatic API takes the same instance lock as `invok run`, in the same
/// directory (`INVOK_LOCK_DIR`, else /run/invok): `start` refuses an instance that an
/// operator manages on this daemon with its own error and starts nothing (it can be
/// called again), holds the instance once started, and frees it at shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_refuses_an_instance_that_invok_run_manages_and_holds_its_own_until_shutdown() {
    require_docker();
    let dir = invok::lock::dir();
    let mut op = Operator::start_with_env(
        "lib-lock",
        &[],
        &[],
        &[("INVOK_LOCK_DIR", dir.to_str().unwrap())],
    );
    let lock_file = dir.join(invok::lock::file_name(&op.instance, &daemon_id()));
    let runtime = AutoscalingRuntimeBuilder::new()
        .instance(op.instance.clone())
        .build(bollard().await, String::new());
    match runtime.start().await {
        Err(e @ AutoscalingError::InstanceTaken { .. }) => {
            let message = e.to_string();
            let AutoscalingError::InstanceTaken {
                instance,
                holder,
                lock_file: file,
            } = e
            else {
                unreachable!()
            };
            assert_eq!(instance, op.instance);
            assert!(
                holder.contains(&format!("pid {}", op.pid().unwrap()))
                    && holder.contains(&format!("admin API 127.0.0.1:{}", op.admin_port)),
                "{holder}"
            );
            assert_eq!(file, lock_file);
            assert!(message.contains("stop it first"), "{message}");
        }
        other => panic!("expected InstanceTaken, got {other:?}"),
    }

    // The operator stops: the instance is free, and the same runtime starts.
    assert_eq!(op.signal_and_wait("TERM"), Some(0));
    runtime.start().await.unwrap();
    let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_invok"));
    second
        .args(["run", "--manifests"])
        .arg(&op.dir)
        .args(["--admin-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--instance", &op.instance])
        .env("INVOK_LOCK_DIR", &dir);
    let (code, err) = run_within(&mut second, Duration::from_secs(30));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("AutoscalingRuntime (the invok library)")
            && err.contains(&format!("pid {}", std::process::id())),
        "names the runtime holding the instance: {err}"
    );

    runtime.shutdown();
    invok::lock::InstanceLock::for_daemon(&dir, &daemon_id(), &op.instance, "this test")
        .expect("shutdown frees the instance");
}

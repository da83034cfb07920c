//! The seed's "Integration with Existing Invok Code" and "Migration Guide" examples, as
//! `examples/integration.rs` and `examples/migration.rs` hold them (the seed's text with
//! `runtime::core` replaced by `invok`), run against real Docker; and the errors of the
//! seed's `runner` (`invok::runner`), each saying what failed.

mod support;

use std::time::Duration;

use invok::runner::{runner, ContainerDetails, RunnerError};
use support::*;

/// Removes, also when the test fails, the containers named `<prefix>-...` (what the
/// examples' runner started) and those Invok created for `instance`.
struct Cleanup {
    prefix: String,
    instance: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let filter = format!("name=^/{}-", self.prefix);
        if let Ok(ids) = docker(&["ps", "-aq", "--filter", &filter]) {
            for id in ids.split_whitespace() {
                let _ = docker(&["rm", "-f", id]);
            }
        }
        remove_instance(&self.instance);
    }
}

/// Runs an example binary (built with the tests) with `args`, as instance `instance`;
/// its standard output.
fn example(name: &str, args: &[&str], instance: &str) -> String {
    let exe = std::env::current_exe().unwrap();
    let built = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    let mut cmd = if built.exists() {
        std::process::Command::new(&built)
    } else {
        let mut c = std::process::Command::new(env!("CARGO"));
        c.args(["run", "--quiet", "--example", name, "--"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        c
    };
    let (code, stdout, stderr) = run_capturing(
        cmd.args(args)
            .env("INVOK_INSTANCE", instance)
            .env("INVOK_LOCK_DIR", std::env::temp_dir().join(instance)),
        Duration::from_secs(120),
    );
    assert_eq!(code, Some(0), "example {name}: {stdout}\n{stderr}");
    stdout
}

fn status_json(stdout: &str) -> serde_json::Value {
    let json = stdout.split_once("Runtime status: ").unwrap().1;
    serde_json::from_str(json).unwrap()
}

/// The seed's integration function: the first call starts a container with `runner` and
/// registers it; it is routable at once; the second call uses it.
#[test]
fn the_seeds_integration_example_runs_unchanged() {
    require_docker();
    let function = unique("seed-int");
    let instance = unique("seed-int-lib");
    let _cleanup = Cleanup {
        prefix: function.clone(),
        instance: instance.clone(),
    };
    let stdout = example("integration", &[&function], &instance);
    let started = containers_named(&function);
    assert_eq!(
        started.len(),
        1,
        "one container started by runner: {started:?}"
    );
    let name = &started[0];
    assert!(
        stdout.contains(&format!("Routable at once: {name}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("Using existing container: {name}")),
        "{stdout}"
    );
    let status = status_json(&stdout);
    assert_eq!(status["pools"][&function]["container_count"], 1, "{status}");
    // The seed's bind_port and network.
    let inspect = docker(&[
        "inspect",
        "--format",
        "{{(index (index .HostConfig.PortBindings \"8080/tcp\") 0).HostIp}}:{{(index (index .HostConfig.PortBindings \"8080/tcp\") 0).HostPort}} {{.HostConfig.NetworkMode}} {{index .Config.Labels \"dev.invok.timeout\"}}",
        name,
    ])
    .unwrap();
    assert_eq!(inspect.trim(), "127.0.0.1:8080 invok-network 300");
}

/// The seed's migration steps: configuration, runner then execute_function, status.
#[test]
fn the_seeds_migration_example_runs_unchanged() {
    require_docker();
    let function = unique("seed-mig");
    let instance = unique("seed-mig-lib");
    let _cleanup = Cleanup {
        prefix: function.clone(),
        instance: instance.clone(),
    };
    let stdout = example("migration", &[&function], &instance);
    assert_eq!(containers_named(&function).len(), 1, "{stdout}");
    let status = status_json(&stdout);
    assert_eq!(status["runtime"], "autoscaling", "{status}");
}

/// Names of the containers whose name starts with `<prefix>-`.
fn containers_named(prefix: &str) -> Vec<String> {
    docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("name=^/{prefix}-"),
        "--format",
        "{{.Names}}",
    ])
    .unwrap()
    .lines()
    .map(str::to_string)
    .collect()
}

fn details(name: &str) -> ContainerDetails {
    ContainerDetails {
        container_port: 8080,
        bind_port: "0".into(),
        container_name: name.into(),
        timeout: 30,
        docker_compose_network_host: String::new(),
    }
}

/// `runner`'s errors name what failed: a missing image, a name taken, bad details,
/// Docker unreachable.
#[tokio::test]
async fn runner_errors_say_what_failed() {
    require_docker();
    let prefix = unique("seed-err");
    let _cleanup = Cleanup {
        prefix: prefix.clone(),
        instance: format!("{prefix}-none"),
    };
    let taken = format!("{prefix}-taken");
    let id = runner(IMAGE, details(&taken)).await.unwrap();
    // Published on loopback at a port Docker picked.
    let port = host_port(&id).expect("a loopback port");
    eventually(
        Duration::from_secs(20),
        "the runner's container answers",
        || http_get(port, "/").is_ok_and(|(code, _)| code == 200),
    );
    match runner(IMAGE, details(&taken)).await {
        Err(e @ RunnerError::NameTaken { .. }) => {
            assert!(e.to_string().contains(&taken), "{e}")
        }
        other => panic!("expected NameTaken, got {other:?}"),
    }
    let missing = "invok/no-such-image-for-a-test:latest";
    match runner(missing, details(&format!("{prefix}-img"))).await {
        Err(e @ RunnerError::ImageMissing { .. }) => {
            assert!(e.to_string().contains(missing), "{e}")
        }
        other => panic!("expected ImageMissing, got {other:?}"),
    }
    let mut bad = details(&format!("{prefix}-bad"));
    bad.bind_port = "eighty".into();
    assert!(matches!(
        runner(IMAGE, bad).await,
        Err(RunnerError::InvalidDetails(m)) if m.contains("eighty")
    ));
    // With ? in a function returning Box<dyn Error>.
    async fn boxed(image: &str, d: ContainerDetails) -> Result<String, Box<dyn std::error::Error>> {
        Ok(runner(image, d).await?)
    }
    assert!(boxed(missing, details(&format!("{prefix}-boxed")))
        .await
        .is_err());
    assert_eq!(
        containers_named(&prefix),
        vec![taken],
        "nothing else was left behind"
    );
}

/// `ContainerDetails::timeout` is the request timeout of the pool `register_container`
/// makes for the container: the gateway answers 504 after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runners_timeout_bounds_an_invocation_through_the_gateway() {
    require_docker();
    let prefix = unique("seed-timeout");
    let instance = format!("{prefix}-lib");
    let _cleanup = Cleanup {
        prefix: prefix.clone(),
        instance: instance.clone(),
    };
    let name = format!("{prefix}-1");
    let mut d = details(&name);
    d.timeout = 1;
    runner(IMAGE, d).await.unwrap();
    let docker = bollard::Docker::connect_with_local_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap();
    let rt = invok::integration::AutoscalingRuntimeBuilder::new()
        .instance(&instance)
        .build(docker, String::new());
    rt.register_container("slow", name.clone(), name.clone())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let rt = std::sync::Arc::new(rt);
    let serving = {
        let rt = rt.clone();
        tokio::spawn(async move {
            rt.serve_gateway(listener, async move {
                let _ = stopped.await;
            })
            .await
        })
    };
    let (fast, slow) = tokio::task::spawn_blocking(move || {
        (
            http_get(port, "/function/slow/?sleep=10").map(|r| r.0),
            http_get(port, "/function/slow/?sleep=3000").map(|r| r.0),
        )
    })
    .await
    .unwrap();
    assert_eq!(fast, Ok(200));
    assert_eq!(
        slow,
        Ok(504),
        "a 3 s invocation ends at the runner's 1 s timeout"
    );
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
    rt.shutdown();
}

/// Docker unreachable: a daemon socket that is not there.
#[test]
fn runner_says_when_docker_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "unreachable_child",
            "--nocapture",
            "--include-ignored",
        ])
        .env(
            "DOCKER_HOST",
            format!("unix://{}", dir.path().join("docker.sock").display()),
        )
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("runner said: Docker is unreachable"),
        "{text}"
    );
}

/// Run by [`runner_says_when_docker_is_unreachable`] in a process whose `DOCKER_HOST`
/// points nowhere (the environment of this process is left alone).
#[tokio::test]
#[ignore = "run by runner_says_when_docker_is_unreachable with DOCKER_HOST set"]
async fn unreachable_child() {
    let e = runner(IMAGE, details("never-started")).await.unwrap_err();
    assert!(matches!(e, RunnerError::DockerUnreachable(_)), "{e:?}");
    println!("runner said: {e}");
}

//! `DockerRuntime` against the real local daemon.
//!
//! These tests need Docker (start it with `scripts/docker-up.sh`); they fail, never skip,
//! when it does not answer. They build their own tiny image (`invok-test/busybox:latest`,
//! the host's static busybox running `httpd` on 8080) with `docker import`, so they need
//! no registry and no other script. Each test works under its own instance name, and a
//! guard removes everything carrying that instance label when the test ends, failed or not.
#![allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "times real Docker calls: real time is the point"
)]

mod support;

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::docker as docker_cli;

use futures_util::StreamExt;
use invok::api::ContainerTemplate;
use invok::runtime::docker::DockerRuntime;
use invok::runtime::{labels, CreateRequest, RunState, Runtime, RuntimeError};
use rand::distr::{Alphanumeric, SampleString};

const IMAGE: &str = "invok-test/busybox:latest";
const PORT: u16 = 8080;
const DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// helpers

fn docker(args: &[&str]) -> String {
    docker_cli(args).unwrap_or_else(|e| panic!("{e}"))
}

fn random_suffix(n: usize) -> String {
    Alphanumeric
        .sample_string(&mut rand::rng(), n)
        .to_lowercase()
}

/// Builds the test image when it is not there (checked on every call: other work on this
/// host may remove images), one build at a time in this process.
fn test_image() -> &'static str {
    static BUILDING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    if docker_cli(&["image", "inspect", IMAGE]).is_ok() {
        return IMAGE;
    }
    let dir = std::env::temp_dir().join(format!("invok-test-image-{}", random_suffix(8)));
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", dir.join("bin/busybox"))
        .expect("the test image needs a static busybox at /bin/busybox (Debian busybox-static)");
    let tar = dir.join("rootfs.tar");
    let status = Command::new("tar")
        .args(["-C"])
        .arg(&dir)
        .args(["-cf"])
        .arg(&tar)
        .arg("bin")
        .status()
        .expect("run tar");
    assert!(status.success(), "tar of the test rootfs failed");
    docker(&[
        "import",
        "--change",
        r#"CMD ["/bin/busybox","httpd","-f","-p","8080","-h","/"]"#,
        tar.to_str().unwrap(),
        IMAGE,
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    IMAGE
}

/// Connects, failing the test with a clear message when Docker does not answer.
async fn runtime(instance: &str) -> DockerRuntime {
    let rt = DockerRuntime::connect(instance.to_string())
        .await
        .unwrap_or_else(|e| {
            panic!("Docker does not answer on the local socket ({e}); start it with scripts/docker-up.sh")
        });
    rt.ping().await.expect("Docker answers ping");
    rt
}

/// Removes every container of the instance (and the extra containers and networks a test
/// registered) when dropped, so cleanup happens when a test fails too.
struct Guard {
    instance: String,
    containers: Vec<String>,
    networks: Vec<String>,
}

impl Guard {
    fn new(test: &str) -> Guard {
        Guard {
            instance: format!("test-rt-{test}-{}", random_suffix(6)),
            containers: Vec::new(),
            networks: Vec::new(),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let filter = format!("label={}={}", labels::INSTANCE, self.instance);
        let mut ids: Vec<String> = docker_cli(&["ps", "-aq", "--filter", &filter])
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        ids.extend(self.containers.iter().cloned());
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.iter().map(String::as_str));
            let _ = docker_cli(&args);
        }
        for net in &self.networks {
            // Several networks may carry the name if a test failed mid-race.
            let ids = docker_cli(&["network", "ls", "-q", "--filter", &format!("name=^{net}$")])
                .unwrap_or_default();
            for id in ids.split_whitespace() {
                let _ = docker_cli(&["network", "rm", id]);
            }
        }
    }
}

fn template() -> ContainerTemplate {
    ContainerTemplate {
        image: test_image().to_string(),
        command: None,
        env: vec![
            ("GREETING".into(), "hi".into()),
            ("EMPTY".into(), String::new()),
        ],
        port: PORT,
        network: None,
        cpus: Some(0.5),
        memory: Some(64 * 1024 * 1024),
    }
}

fn request(instance: &str, pool: &str, template: ContainerTemplate) -> CreateRequest {
    CreateRequest {
        name: format!("invok-{pool}-{}", random_suffix(5)),
        pool: pool.to_string(),
        instance: instance.to_string(),
        spec_hash: template.hash(),
        template,
    }
}

/// Polls a TCP connect to the loopback port until it answers or the deadline passes.
async fn wait_tcp(port: u16) -> Duration {
    let start = Instant::now();
    loop {
        let attempt = tokio::time::timeout(
            Duration::from_millis(250),
            tokio::net::TcpStream::connect(("127.0.0.1", port)),
        )
        .await;
        if let Ok(Ok(_)) = attempt {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < DEADLINE,
            "127.0.0.1:{port} did not accept a connection within {DEADLINE:?}: {attempt:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn inspect(id: &str) -> serde_json::Value {
    let text = docker(&["inspect", "--type", "container", id]);
    let mut all: Vec<serde_json::Value> = serde_json::from_str(&text).expect("inspect is JSON");
    all.remove(0)
}

fn exists(id: &str) -> bool {
    docker_cli(&["inspect", "--type", "container", id]).is_ok()
}

/// `docker run -d` of the test image with these labels; returns the id.
fn foreign_container(name: &str, labels: &[(&str, &str)]) -> String {
    let mut args = vec!["run".to_string(), "-d".into(), "--name".into(), name.into()];
    for (k, v) in labels {
        args.push("--label".into());
        args.push(format!("{k}={v}"));
    }
    args.push(test_image().into());
    docker(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

// ---------------------------------------------------------------------------------------
// tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_gives_a_running_labelled_container_with_its_port_on_loopback_and_its_limits() {
    let guard = Guard::new("create");
    let rt = runtime(&guard.instance).await;
    let req = request(&guard.instance, "hello", template());

    let t0 = Instant::now();
    let info = rt.create(&req).await.expect("create");
    let create_took = t0.elapsed();

    assert_eq!(info.name, req.name);
    assert_eq!(info.state, RunState::Running);
    assert_eq!(info.pool, "hello");
    assert_eq!(info.spec_hash, req.spec_hash);
    assert_eq!(info.image, IMAGE);
    assert_eq!(*info.labels, req.labels());
    assert_eq!(info.labels.len(), 4);
    let port = info.host_port.expect("the function port is published");
    assert_ne!(port, 0);
    let answered = wait_tcp(port).await;

    let c = inspect(&info.id);
    assert_eq!(c["Name"], format!("/{}", req.name));
    assert_eq!(c["State"]["Running"], true);
    let labels = &c["Config"]["Labels"];
    assert_eq!(labels[labels::MANAGED_BY], labels::MANAGED_BY_VALUE);
    assert_eq!(labels[labels::INSTANCE], guard.instance.as_str());
    assert_eq!(labels[labels::POOL], "hello");
    assert_eq!(labels[labels::SPEC_HASH], req.spec_hash.as_str());
    let env: Vec<&str> = c["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(env.contains(&"GREETING=hi"), "env: {env:?}");
    assert!(env.contains(&"EMPTY="), "env: {env:?}");
    let hc = &c["HostConfig"];
    assert_eq!(hc["NanoCpus"], 500_000_000);
    assert_eq!(hc["Memory"], 64 * 1024 * 1024);
    assert_eq!(hc["RestartPolicy"]["Name"], "no");
    let binding = &hc["PortBindings"]["8080/tcp"][0];
    assert_eq!(binding["HostIp"], "127.0.0.1");
    let published = &c["NetworkSettings"]["Ports"]["8080/tcp"];
    assert_eq!(
        published.as_array().map(|a| a.len()),
        Some(1),
        "published only once, on loopback: {published}"
    );
    assert_eq!(published[0]["HostIp"], "127.0.0.1");
    assert_eq!(published[0]["HostPort"], port.to_string());

    let t1 = Instant::now();
    rt.remove(&info.id, Duration::from_secs(0))
        .await
        .expect("remove");
    let remove_took = t1.elapsed();
    assert!(!exists(&info.id), "the container is gone after remove");
    eprintln!(
        "timing: create+start {create_took:?}, port answered {answered:?} later, stop(t=0)+remove {remove_took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_sees_only_this_instances_containers_and_remove_refuses_the_others() {
    let mut guard = Guard::new("list");
    let rt = runtime(&guard.instance).await;
    let ours = rt
        .create(&request(&guard.instance, "mine", template()))
        .await
        .expect("create");

    let suffix = random_suffix(6);
    let other_name = format!("invok-test-other-{suffix}");
    let bare_name = format!("invok-test-bare-{suffix}");
    let half_name = format!("invok-test-half-{suffix}");
    guard
        .containers
        .extend([other_name.clone(), bare_name.clone(), half_name.clone()]);
    let other_instance = format!("{}-other", guard.instance);
    let other = foreign_container(
        &other_name,
        &[
            (labels::MANAGED_BY, labels::MANAGED_BY_VALUE),
            (labels::INSTANCE, &other_instance),
            (labels::POOL, "mine"),
        ],
    );
    let bare = foreign_container(&bare_name, &[]);
    // Our instance label without the managed-by label is not ours either.
    let half = foreign_container(&half_name, &[(labels::INSTANCE, &guard.instance)]);

    let listed = rt.list().await.expect("list");
    let ids: Vec<&str> = listed.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, vec![ours.id.as_str()], "list shows only our container");
    assert_eq!(listed[0], ours, "list agrees with what create returned");

    for (id, what) in [
        (&other, "another instance's"),
        (&bare, "an unlabelled"),
        (&half, "a half-labelled"),
    ] {
        let err = rt
            .remove(id, Duration::ZERO)
            .await
            .expect_err(&format!("remove refuses {what} container"));
        assert!(matches!(err, RuntimeError::Api(_)), "{err:?}");
        assert!(err.to_string().contains("refusing"), "{err}");
        assert!(exists(id), "{what} container is untouched");
        assert_eq!(
            inspect(id)["State"]["Running"],
            true,
            "{what} container still runs"
        );
    }

    // A stopped container of ours is listed too, with its state.
    docker(&["stop", "-t", "0", &ours.id]);
    let listed = rt.list().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, RunState::Exited);
    assert_eq!(
        listed[0].host_port, None,
        "an exited container publishes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_of_a_gone_container_succeeds() {
    let guard = Guard::new("gone");
    let rt = runtime(&guard.instance).await;
    let info = rt
        .create(&request(&guard.instance, "gone", template()))
        .await
        .expect("create");
    rt.remove(&info.id, Duration::from_secs(1))
        .await
        .expect("first remove");
    assert!(!exists(&info.id));
    rt.remove(&info.id, Duration::from_secs(1))
        .await
        .expect("removing it again succeeds");
    let never_existed = "0".repeat(64);
    rt.remove(&never_existed, Duration::ZERO)
        .await
        .expect("removing an unknown id succeeds");

    // A container removed behind our back between list and remove is fine too.
    let info = rt
        .create(&request(&guard.instance, "gone", template()))
        .await
        .expect("create");
    docker(&["rm", "-f", &info.id]);
    rt.remove(&info.id, Duration::ZERO)
        .await
        .expect("remove after docker rm");
    assert!(rt.list().await.expect("list").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_conflict_with_a_stale_container_of_ours_is_cleaned_up_and_create_succeeds() {
    let mut guard = Guard::new("conflict");
    let rt = runtime(&guard.instance).await;
    let req = request(&guard.instance, "stale", template());
    let stale = docker(&[
        "create",
        "--name",
        &req.name,
        "--label",
        &format!("{}={}", labels::MANAGED_BY, labels::MANAGED_BY_VALUE),
        "--label",
        &format!("{}={}", labels::INSTANCE, guard.instance),
        "--label",
        &format!("{}=stale", labels::POOL),
        test_image(),
    ]);

    let info = rt
        .create(&req)
        .await
        .expect("create replaces the stale container");
    assert_ne!(info.id, stale);
    assert_eq!(info.name, req.name);
    assert_eq!(info.state, RunState::Running);
    assert!(!exists(&stale), "the stale container was removed");
    wait_tcp(info.host_port.expect("published")).await;

    // A name held by a container that is not ours is an error naming it, and it stays.
    let foreign_name = format!("invok-test-foreign-{}", random_suffix(6));
    guard.containers.push(foreign_name.clone());
    let foreign = docker(&["create", "--name", &foreign_name, test_image()]);
    let mut req2 = request(&guard.instance, "stale", template());
    req2.name = foreign_name.clone();
    let err = rt
        .create(&req2)
        .await
        .expect_err("create must not take a foreign name");
    assert!(matches!(err, RuntimeError::Conflict(_)), "{err:?}");
    assert!(err.to_string().contains(&foreign_name), "{err}");
    assert!(err.to_string().contains(&foreign), "{err}");
    assert!(exists(&foreign), "the foreign container is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_binary_gives_a_container_that_exits_and_a_missing_image_an_error() {
    let guard = Guard::new("nostart");
    let rt = runtime(&guard.instance).await;
    let mut t = template();
    t.command = Some(vec!["/no/such/binary".into()]);
    let req = request(&guard.instance, "broken", t);
    // With an init process as PID 1 (so SIGTERM works for any image), the start itself
    // succeeds and the container exits at once; the controller replaces exited ones.
    let info = rt.create(&req).await.expect("the init process starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listed = rt.list().await.expect("list");
        if listed
            .iter()
            .any(|c| c.id == info.id && c.state == invok::runtime::RunState::Exited)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the container never exited: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A missing image is reported as such.
    let mut t = template();
    t.image = format!("127.0.0.1:1/invok-test/missing-{}:latest", random_suffix(6));
    let err = rt
        .create(&request(&guard.instance, "broken", t))
        .await
        .expect_err("no image");
    assert!(
        matches!(err, RuntimeError::ImageUnavailable { .. }),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_report_start_and_die_for_our_containers_only() {
    let mut guard = Guard::new("events");
    let rt = runtime(&guard.instance).await;
    let mut events = rt.events();
    // bollard sends the request on the first poll: poll once before acting.
    let first = tokio::time::timeout(Duration::from_millis(200), events.next()).await;
    assert!(
        first.is_err(),
        "no event before anything happened: {first:?}"
    );

    let foreign_name = format!("invok-test-evforeign-{}", random_suffix(6));
    guard.containers.push(foreign_name.clone());
    let foreign = foreign_container(
        &foreign_name,
        &[
            (labels::MANAGED_BY, labels::MANAGED_BY_VALUE),
            (labels::INSTANCE, "someone-else"),
        ],
    );
    let info = rt
        .create(&request(&guard.instance, "ev", template()))
        .await
        .expect("create");
    let removed_at = Instant::now();
    rt.remove(&info.id, Duration::ZERO).await.expect("remove");
    docker(&["rm", "-f", &foreign]);

    let mut seen = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while !(seen.contains(&"start".to_string())
        && seen.contains(&"die".to_string())
        && seen.contains(&"destroy".to_string()))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = tokio::time::timeout(left, events.next())
            .await
            .unwrap_or_else(|_| panic!("start, die and destroy within {DEADLINE:?}; saw {seen:?}"))
            .expect("the event stream stays open")
            .expect("events arrive without error");
        assert_ne!(
            ev.id, foreign,
            "another instance's container is filtered out"
        );
        assert_eq!(ev.id, info.id, "only our container: {ev:?}");
        assert_eq!(ev.pool, "ev");
        seen.push(ev.action);
    }
    let order = |a: &str| seen.iter().position(|s| s == a).unwrap();
    assert!(
        order("create") < order("start") && order("start") < order("die"),
        "{seen:?}"
    );
    assert!(order("die") < order("destroy"), "{seen:?}");
    eprintln!(
        "timing: events {seen:?} complete {:?} after remove started",
        removed_at.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_image_on_a_missing_image_returns_image_unavailable_within_the_timeout() {
    let guard = Guard::new("image");
    let rt = runtime(&guard.instance).await;
    rt.ensure_image(test_image())
        .await
        .expect("a present image is fine");

    // A registry on loopback that does not exist: the pull fails without leaving the host.
    let missing = format!("127.0.0.1:1/invok-test/missing-{}:latest", random_suffix(6));
    let t0 = Instant::now();
    let err = rt
        .ensure_image(&missing)
        .await
        .expect_err("cannot be pulled");
    let took = t0.elapsed();
    match &err {
        RuntimeError::ImageUnavailable { image, reason } => {
            assert_eq!(image, &missing);
            assert!(!reason.is_empty());
        }
        other => panic!("expected ImageUnavailable, got {other:?}"),
    }
    assert!(
        took < Duration::from_secs(25),
        "bounded by the pull timeout, took {took:?}"
    );
    eprintln!("timing: failed pull {took:?}: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_network_creates_one_labelled_network_that_containers_can_join() {
    let mut guard = Guard::new("net");
    let net = format!("invok-test-net-{}", random_suffix(6));
    guard.networks.push(net.clone());
    let rt = runtime(&guard.instance).await;

    // Three runtimes (three locks) racing, as two operators would.
    let (a, b, c) = (
        runtime(&guard.instance).await,
        runtime(&guard.instance).await,
        rt.clone(),
    );
    let (ra, rb, rc) = tokio::join!(
        a.ensure_network(&net),
        b.ensure_network(&net),
        c.ensure_network(&net)
    );
    ra.expect("ensure_network a");
    rb.expect("ensure_network b");
    rc.expect("ensure_network c");
    rt.ensure_network(&net)
        .await
        .expect("ensure_network again is a no-op");

    let ids = docker(&["network", "ls", "-q", "--filter", &format!("name=^{net}$")]);
    assert_eq!(
        ids.split_whitespace().count(),
        1,
        "exactly one network {net}: {ids}"
    );
    let info: serde_json::Value = serde_json::from_str(&docker(&[
        "network",
        "inspect",
        &net,
        "--format",
        "{{json .}}",
    ]))
    .unwrap();
    assert_eq!(info["Driver"], "bridge");
    assert_eq!(info["Labels"][labels::MANAGED_BY], labels::MANAGED_BY_VALUE);

    let mut t = template();
    t.network = Some(net.clone());
    let c = rt
        .create(&request(&guard.instance, "net", t))
        .await
        .expect("create on the network");
    assert_eq!(inspect(&c.id)["HostConfig"]["NetworkMode"], net.as_str());
    wait_tcp(c.host_port.expect("published")).await;
    rt.remove(&c.id, Duration::ZERO).await.expect("remove");
    docker(&["network", "rm", &net]);
}

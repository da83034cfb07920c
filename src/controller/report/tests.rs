//! Reports read back: what the admin API serves, `Deserialize` reads as it was built
//! (the command line reads the operator this way), and a report from an older operator,
//! without the optional fields, still reads.

use std::time::Duration;

use serde::de::DeserializeOwned;

use super::*;
use crate::api::{FunctionPool, Probe, ScalingDefaults, ScalingPolicy};
use crate::controller::{Config, Controller};
use crate::runtime::memory::{Load, MemoryRuntime};
use crate::runtime::RunState;

const IMAGE: &str = "invok/demo-fn:latest";

/// Every optional field of the spec set, so the report carries all of them.
const MANIFEST: &str = "\
apiVersion: invok.dev/v1alpha1
kind: FunctionPool
metadata: {name: web}
spec:
  image: invok/demo-fn:latest
  command: [/bin/sh, -c, serve]
  env: [{name: GREETING, value: hi}]
  port: 9090
  network: invok-network
  resources: {cpus: 0.5, memory: 256Mi}
  scaling:
    minContainers: 2
    maxContainers: 4
    memoryOverloadThreshold: 300M
    cooldownDuration: 1m30s
    pollInterval: 500ms
    targetConcurrency: 4
  readiness: {path: /healthz}
  timeout: 45s
";

/// Runs the operator on the in-memory runtime (paused clock) under a load its minimum
/// cannot carry, until the pool has scaled up, every container is ready and has a usage
/// sample; then returns what the admin API would serve: the `/status` document and the
/// pool's report.
async fn served() -> (RuntimeStatus, PoolReport) {
    let rt = MemoryRuntime::new(&[IMAGE]);
    let mut config = Config::new("/nonexistent", "report-tests");
    config.watch_manifests = false;
    let controller = Controller::new(rt.clone(), config);
    let shared = controller.shared();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(controller.run(async move {
        let _ = stopped.await;
    }));
    let pool: FunctionPool = serde_yaml::from_str(MANIFEST).unwrap();
    let spec = pool.validate(&ScalingDefaults::default()).unwrap();
    shared.declare_pool(pool, spec);
    rt.set_load(
        "web",
        Load {
            cpu: 0.9,
            rss: 10_000_000,
        },
    );
    let sampled = |r: &PoolReport| {
        r.last_scale.is_some()
            && r.summary.starting_containers == 0
            && r.summary.ready_containers == r.summary.desired_containers
            && r.containers.iter().all(|c| c.cpu.is_some())
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let report = loop {
        if let Some(r) = shared.pool_report("web").filter(sampled) {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pool never became ready with samples: {:#?}",
            shared.pool_report("web")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let status = shared.runtime_status();
    let _ = stop.send(());
    task.await.unwrap();
    (status, report)
}

fn read_back<T: Serialize + DeserializeOwned>(value: &T) -> T {
    let json = serde_json::to_string(value).unwrap();
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

#[tokio::test(start_paused = true)]
async fn a_served_report_reads_back_as_it_was_built() {
    let (status, report) = served().await;
    // The report carries what the optional fields hold, so reading them is proven too.
    let spec = report.spec.as_ref().unwrap();
    assert!(spec.template.command.is_some() && spec.template.memory.is_some());
    assert_eq!(spec.scaling.target_concurrency, Some(4));
    assert_eq!(spec.timeout, Duration::from_secs(45));
    assert!(report.containers.iter().all(|c| c.host_port.is_some()));
    assert!(!report.conditions.is_empty() && !report.events.is_empty());

    assert_eq!(read_back(&report), report);
    assert_eq!(read_back(&status), status);
}

#[tokio::test(start_paused = true)]
async fn a_report_without_the_optional_fields_still_reads() {
    let (status, report) = served().await;
    let mut json = serde_json::to_value(&report).unwrap();
    let drop = |v: &mut serde_json::Value, keys: &[&str]| {
        let o = v.as_object_mut().unwrap();
        for k in keys {
            assert!(o.remove(*k).is_some(), "{k} is served");
        }
    };
    drop(
        &mut json,
        &[
            "source",
            "desiredReason",
            "manifestError",
            "lastError",
            "lastScale",
        ],
    );
    drop(
        &mut json["spec"]["template"],
        &["command", "network", "cpus", "memory"],
    );
    drop(&mut json["spec"]["scaling"], &["targetConcurrency"]);
    // An operator older than `spec.timeout` did not send it.
    drop(&mut json["spec"], &["timeout"]);
    for c in json["containers"].as_array_mut().unwrap() {
        drop(c, &["status", "cpu", "rss", "hostPort"]);
    }
    // Unknown fields, as a newer operator may send, are ignored.
    json["addedLater"] = serde_json::json!({"any": "thing"});
    json["summary"]["addedLater"] = serde_json::json!(1);

    let read: PoolReport = serde_json::from_value(json).unwrap();
    assert_eq!(read.name, report.name);
    assert_eq!(read.summary, report.summary);
    assert_eq!(read.containers.len(), report.containers.len());
    assert!(read.source.is_none() && read.last_scale.is_none());
    let spec = read.spec.unwrap();
    assert!(spec.template.command.is_none() && spec.template.memory.is_none());
    assert_eq!(spec.scaling.target_concurrency, None);
    assert_eq!(spec.timeout, crate::api::DEFAULT_TIMEOUT);
    assert!(read
        .containers
        .iter()
        .all(|c| c.cpu.is_none() && c.host_port.is_none()));

    // `/status` leaves manifest_error out unless a manifest is broken.
    let json = serde_json::to_value(&status).unwrap();
    assert!(json["pools"]["web"].get("manifest_error").is_none());
    let read: RuntimeStatus = serde_json::from_value(json).unwrap();
    assert_eq!(read.pools["web"].manifest_error, None);
}

#[test]
fn every_word_the_reports_use_reads_back() {
    for r in [
        Reason::Steady,
        Reason::BelowMin,
        Reason::AboveMax,
        Reason::Cpu,
        Reason::Memory,
        Reason::Concurrency,
        Reason::Demand,
        Reason::Idle,
    ] {
        assert_eq!(read_back(&r), r);
    }
    for p in [
        Phase::Starting,
        Phase::Ready,
        Phase::Failed,
        Phase::Draining,
    ] {
        assert_eq!(read_back(&p), p);
    }
    for l in [LoadState::Healthy, LoadState::Overloaded, LoadState::Idle] {
        assert_eq!(read_back(&l), l);
    }
    for s in [
        RunState::Created,
        RunState::Running,
        RunState::Paused,
        RunState::Restarting,
        RunState::Removing,
        RunState::Exited,
        RunState::Dead,
    ] {
        assert_eq!(read_back(&s), s);
    }
    for p in [Probe::Tcp, Probe::Http { path: "/ok".into() }] {
        assert_eq!(read_back(&p), p);
    }
}

#[test]
fn durations_read_back_from_the_text_they_are_served_as() {
    let pool: FunctionPool = serde_yaml::from_str(MANIFEST).unwrap();
    let scaling = pool.validate(&ScalingDefaults::default()).unwrap().scaling;
    for (d, text) in [
        // As manifests write them (the published grammar: milliseconds at the finest).
        (Duration::from_millis(1500), "1500ms"),
        (Duration::from_secs(90 * 60), "1h30m"),
        (Duration::from_millis(1), "1ms"),
        (Duration::from_secs(30 * 86_400), "720h"),
    ] {
        let policy = ScalingPolicy {
            cooldown_duration: d,
            poll_interval: d,
            ..scaling.clone()
        };
        let json = serde_json::to_value(&policy).unwrap();
        assert_eq!(json["cooldownDuration"], text);
        assert_eq!(read_back(&policy), policy);
    }
}

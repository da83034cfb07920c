//! Autoscaling end to end: `invok run` against the real Docker daemon, load driven by the
//! demo image's CPU and memory endpoints, sent straight to the containers' loopback ports
//! from background threads (bounded requests; the load stops itself).
//!
//! The tests run one at a time (a lock): the reference host has two cores, and two tests
//! burning CPU at once would starve each other's containers. Where a test needs a
//! container to read as overloaded whatever else runs on the machine, it gives the
//! container a CPU limit (usage is a fraction of the limit), so a burn reads ~1.0 even on
//! a busy host; thresholds leave room on both sides of the expected readings.

mod support;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use support::*;

const T: Duration = Duration::from_secs(30);
/// No load runs longer than this, whatever happens to the test.
const LOAD_MAX: Duration = Duration::from_secs(90);
/// One CPU burn request: short, so load ends soon after it is stopped.
const BURN: &str = "/cgi-bin/cpu?ms=2000";

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// `pool_yaml` with more `scaling` fields (its `scaling` block comes last).
fn pool(name: &str, min: u32, max: u32, extra_spec: &str, scaling: &[&str]) -> String {
    let mut y = pool_yaml(name, min, max, extra_spec);
    for line in scaling {
        y.push_str(&format!("    {line}\n"));
    }
    y
}

/// Waits until the operator has sampled the container and calls it `status`.
fn wait_status(op: &Operator, pool: &str, id: &str, status: &str, timeout: Duration) -> Value {
    let mut last = Value::Null;
    eventually(timeout, &format!("container {id} reads {status}"), || {
        last = op.container_json(pool, id);
        last["status"] == status
    });
    last
}

/// The only running container of a converged pool.
fn only(op: &Operator, pool: &str) -> Ctr {
    let cs = running(&op.instance, pool);
    assert_eq!(cs.len(), 1, "{cs:?}");
    cs.into_iter().next().unwrap()
}

#[test]
fn cpu_burn_in_one_container_brings_a_second_and_the_pool_holds() {
    let _serial = serial();
    // Half a core: the burner reads ~1.0 of its limit, never much more (the limit caps
    // it), and over 0.6 even when other work slows it down; ceil(<=1.2 / 0.6) = 2.
    let yaml = pool(
        "web",
        1,
        4,
        "  resources:\n    cpus: 0.5\n",
        &["cpuOverloadThreshold: 0.6", "cooldownDuration: 60s"],
    );
    let op = Operator::start("as-one", &[("web.yaml", yaml)]);
    op.wait_converged("web", 1, T);
    let seed = only(&op, "web");
    // Sampled once before the load, so its change to Overloaded is a logged transition.
    wait_status(&op, "web", &seed.id, "Idle", T);

    let load = Load::on(&seed.id, BURN, LOAD_MAX);
    op.wait_converged("web", 2, T);

    // The burn goes on in the seed; the new container idles: not every container is
    // overloaded, so the pool holds at 2 over many more looks.
    let mut seen_overloaded = false;
    let start = op.reconciles("web");
    eventually(T, "10 more reconciles of web", || {
        let all = containers(&op.instance, Some("web"));
        assert!(all.len() <= 2, "the pool kept growing: {all:?}");
        let report = op.pool_json("web");
        seen_overloaded |= report["summary"]["overloaded_containers"].as_u64() >= Some(1);
        report["reconciles"].as_u64().unwrap_or(0) >= start + 10
    });
    assert!(
        seen_overloaded,
        "the burn went on in the seed while the pool held"
    );
    assert_eq!(running(&op.instance, "web").len(), 2);
    assert_eq!(op.pool_status("web")["desired_containers"], 2);
    drop(load);

    let logs = op.logs();
    let changed = |from: &str| {
        logs.contains(&format!(
            "Container {} status changed from {from} to Overloaded",
            seed.name
        ))
    };
    assert!(
        changed("Idle") || changed("Healthy"),
        "status change of {} logged",
        seed.name
    );
    assert!(logs.contains("Scaling up function: web"));
    assert!(logs.contains("Successfully scaled up function web with container invok-web-"));
    let scale = &op.pool_json("web")["lastScale"];
    assert_eq!(scale["direction"], "up", "{scale}");
    assert_eq!(scale["reason"], "cpu", "{scale}");
    assert_eq!(
        (&scale["from"], &scale["to"]),
        (&1.into(), &2.into()),
        "{scale}"
    );
}

#[test]
fn burn_in_all_containers_reaches_max_and_never_beyond() {
    let _serial = serial();
    // A quarter core each: three burners use three quarters of the host, and each reads
    // ~1.0 of its limit (0.6-0.7 when other work crowds the host: hence the 0.5 threshold).
    let yaml = pool(
        "web",
        1,
        3,
        "  resources:\n    cpus: 0.25\n",
        &["cpuOverloadThreshold: 0.5", "cooldownDuration: 60s"],
    );
    let op = Operator::start("as-max", &[("web.yaml", yaml)]);
    op.wait_converged("web", 1, T);
    let bounded = || {
        let all = containers(&op.instance, Some("web"));
        assert!(all.len() <= 3, "beyond max: {all:?}");
    };

    let _load = Load::on_all(&op.instance, "web", BURN, LOAD_MAX);
    eventually(Duration::from_secs(60), "web reaches max (3 ready)", || {
        bounded();
        running(&op.instance, "web").len() == 3 && op.ready("web") == 3
    });
    eventually(T, "every container reads Overloaded at max", || {
        bounded();
        op.pool_status("web")["overloaded_containers"] == 3
    });
    eventually(T, "the max-limit warning is logged", || {
        bounded();
        op.logs()
            .contains("Max container limit reached for function web")
    });
    let start = op.reconciles("web");
    eventually(T, "10 more reconciles of web", || {
        bounded();
        op.reconciles("web") >= start + 10
    });
    assert_eq!(running(&op.instance, "web").len(), 3);
    let report = op.pool_json("web");
    assert_eq!(report["summary"]["desired_containers"], 3, "{report}");
    // The alert is also an event of the pool (the condition follows the latest samples).
    let events = report["events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["reason"] == "AtMaxCapacity"),
        "{report}"
    );
    assert!(
        events
            .iter()
            .all(|e| e["message"] != "replicas 3 -> 4 (Cpu)"),
        "{report}"
    );
}

#[test]
fn load_ends_and_after_the_cooldown_the_pool_returns_to_min() {
    let _serial = serial();
    let yaml = pool(
        "web",
        1,
        3,
        "  resources:\n    cpus: 0.5\n",
        &["cooldownDuration: 5s"],
    );
    let op = Operator::start("as-down", &[("web.yaml", yaml)]);
    op.wait_converged("web", 1, T);
    let seed = only(&op, "web");

    let load = Load::on(&seed.id, BURN, LOAD_MAX);
    op.wait_converged("web", 2, T);
    load.stop();

    // The last burn ends within 2 s; then 5 s idle (and 5 s since the scale-up).
    op.wait_converged("web", 1, T);
    // Logged once the container is removed (after it stopped).
    eventually(T, "the scale-down is logged", || {
        op.logs().lines().any(|l| {
            l.contains("Scaled down container invok-web-") && l.ends_with(" for function web")
        })
    });
    let scale = &op.pool_json("web")["lastScale"];
    assert_eq!(scale["direction"], "down", "{scale}");
    assert_eq!(scale["reason"], "idle", "{scale}");
    assert_eq!(scale["to"], 1, "{scale}");
    // Back at min, it stays there.
    op.wait_reconciles("web", 4);
    assert_eq!(containers(&op.instance, Some("web")).len(), 1);
}

#[test]
fn memory_over_its_threshold_scales_up() {
    let _serial = serial();
    let yaml = pool(
        "web",
        1,
        4,
        "",
        &["memoryOverloadThreshold: 32Mi", "cooldownDuration: 60s"],
    );
    let op = Operator::start("as-mem", &[("web.yaml", yaml)]);
    op.wait_converged("web", 1, T);
    let seed = only(&op, "web");

    let _load = Load::on(&seed.id, "/cgi-bin/mem?mb=64&ms=5000", LOAD_MAX);
    let mut report = Value::Null;
    eventually(T, "web scales up on memory", || {
        report = op.pool_json("web");
        report["lastScale"]["reason"] == "memory" || report["desiredReason"] == "memory"
    });
    let c = op.container_json("web", &seed.id);
    eventually(T, "the seed holds its 64 MB", || {
        op.container_json("web", &seed.id)["rss"].as_u64() > Some(32 << 20)
    });
    // 64 MiB over a 32 MiB threshold: 2 or 3 containers (the RSS is a bit over 64 MiB).
    eventually(T, "web has its new containers ready", || {
        let n = running(&op.instance, "web").len();
        (2..=3).contains(&n) && op.ready("web") == n as u64
    });
    assert!(
        op.logs().contains("Scaling up function: web"),
        "{report}\n{c}"
    );
}

#[test]
fn a_half_cpu_container_burning_its_limit_is_overloaded() {
    let _serial = serial();
    let yaml = pool("web", 1, 1, "  resources:\n    cpus: 0.5\n", &[]);
    let op = Operator::start("as-half", &[("web.yaml", yaml)]);
    op.wait_converged("web", 1, T);
    let seed = only(&op, "web");

    let _load = Load::on(&seed.id, BURN, LOAD_MAX);
    let mut last = Value::Null;
    eventually(
        T,
        "the container reads Overloaded at ~1.0 of its limit",
        || {
            last = op.container_json("web", &seed.id);
            let cpu = last["cpu"].as_f64().unwrap_or(0.0);
            last["status"] == "Overloaded" && (0.8..=1.25).contains(&cpu)
        },
    );
    // Half a core is ~0.5 of one core: with no limit this container would be Healthy.
    assert_eq!(op.pool_status("web")["overloaded_containers"], 1, "{last}");
}

//! Scaling beyond CPU and memory, on real Docker: a custom metric the function serves, the
//! request rate the gateway counts, and the forecast of that rate (issue 17).
#![allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "blocking tests against a real operator; the load generator paces requests on the wall clock (an open-loop schedule, not a wait for a condition)"
)]

mod support;

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::*;

const T: Duration = Duration::from_secs(30);

/// A pool of the demo image with `scaling` lines appended (cooldown 1 h: nothing here
/// waits for a scale-down).
fn pool(name: &str, min: u32, max: u32, scaling: &str) -> String {
    pool_yaml(name, min, max, "") + "    cooldownDuration: 1h\n" + scaling
}

/// A pool (min 1) scaling on `queue_depth` served at `path`, 10 per container.
fn metric_pool(name: &str, max: u32, path: &str) -> String {
    pool(
        name,
        1,
        max,
        &format!("    customMetrics:\n    - name: queue_depth\n      path: {path}\n      targetPerContainer: 10\n"),
    )
}

/// Sends requests to `paths` (each gets every request) through the gateway at `rate(t)`
/// requests per second, `t` in seconds since the start, for `duration`: an open-loop
/// schedule (a slow answer does not delay the next request), each request on its own
/// thread with its own timeout. Returns the senders; each yields its HTTP status.
fn replay(
    port: u16,
    paths: &[String],
    duration: Duration,
    rate: impl Fn(f64) -> f64,
) -> Vec<JoinHandle<u16>> {
    let start = Instant::now();
    let mut handles = Vec::new();
    let mut due = 0.0;
    let mut t = 0.0;
    // Arrivals by integrating the rate in 10 ms steps.
    while t < duration.as_secs_f64() {
        due += rate(t) * 0.01;
        while due >= 1.0 {
            due -= 1.0;
            let at = start + Duration::from_secs_f64(t);
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            for path in paths {
                let path = path.clone();
                handles.push(std::thread::spawn(move || {
                    http_get(port, &path).map_or(0, |(code, _)| code)
                }));
            }
        }
        t += 0.01;
    }
    handles
}

/// Every request answered 200.
fn all_ok(handles: Vec<JoinHandle<u16>>) {
    let codes: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let failed = codes.iter().filter(|c| **c != 200).count();
    assert_eq!(failed, 0, "{failed} of {} requests failed", codes.len());
}

#[test]
fn a_pool_scales_on_a_custom_metric_its_container_serves() {
    let op = Operator::start(
        "sig-metric",
        &[("queue.yaml", metric_pool("queue", 4, "/cgi-bin/metrics"))],
    );
    op.wait_converged("queue", 1, T);
    eventually(T, "the metric is read (0)", || {
        let m = &op.pool_json("queue")["signals"]["customMetrics"][0];
        m["missing"] == 0 && m["sum"] == 0.0
    });
    let first = running(&op.instance, "queue").remove(0);
    // The function's queue grows: the value changes inside the container.
    docker(&[
        "exec",
        &first.id,
        "sh",
        "-c",
        "mkdir -p /tmp/metrics && echo 35 >/tmp/metrics/queue_depth",
    ])
    .unwrap();
    let asked = Instant::now();
    // ceil(35 / 10) = 4 containers.
    op.wait_converged("queue", 4, T);
    eventually(T, "every container's metric is read", || {
        op.pool_json("queue")["signals"]["customMetrics"][0]["missing"] == 0
    });
    let report = op.pool_json("queue");
    assert_eq!(report["lastScale"]["reason"], "customMetric", "{report}");
    assert_eq!(
        report["signals"]["customMetrics"][0],
        serde_json::json!({"name": "queue_depth", "sum": 35.0, "missing": 0}),
        "{report}"
    );
    eprintln!(
        "custom metric: 4 containers ready {:?} after the queue grew",
        asked.elapsed()
    );
    // `invok describe` shows it.
    let (code, out, err) = run_capturing(
        std::process::Command::new(env!("CARGO_BIN_EXE_invok")).args([
            "describe",
            "queue",
            "--server",
            &format!("http://127.0.0.1:{}", op.admin_port),
        ]),
        T,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("queue_depth at /cgi-bin/metrics (10 per container)"),
        "{out}"
    );
    assert!(
        out.contains("Signals:") && out.contains("queue_depth 35"),
        "{out}"
    );
}

/// A metric that cannot be read is missing, not zero: it holds scale-down back. Two
/// pools, identical but for the metric's path, are lowered from min 2 to min 1 with a
/// 2 s cooldown: the one whose metric reads 0 scales down (the control: there was time
/// to), the one whose metrics page is not there keeps both containers.
#[test]
fn a_custom_metric_that_cannot_be_read_holds_scale_down() {
    let yaml = |name: &str, min: u32, path: &str| {
        pool_yaml(name, min, 3, "")
            + &format!("    cooldownDuration: 2s\n    customMetrics:\n    - name: queue_depth\n      path: {path}\n      targetPerContainer: 10\n")
    };
    let op = Operator::start(
        "sig-missing",
        &[
            ("seen.yaml", yaml("seen", 2, "/cgi-bin/metrics")),
            ("blind.yaml", yaml("blind", 2, "/no-such-page")),
        ],
    );
    op.wait_converged("seen", 2, T);
    op.wait_converged("blind", 2, T);
    eventually(T, "both containers' metric is read", || {
        op.pool_json("seen")["signals"]["customMetrics"][0]["missing"] == 0
    });
    op.write("seen.yaml", &yaml("seen", 1, "/cgi-bin/metrics"));
    op.write("blind.yaml", &yaml("blind", 1, "/no-such-page"));
    op.wait_converged("seen", 1, T);
    // The control scaled down; the blind pool keeps both for as long again and more
    // (checked throughout, not once).
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(6) {
        assert_eq!(
            running(&op.instance, "blind").len(),
            2,
            "{}",
            op.pool_json("blind")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let report = op.pool_json("blind");
    assert_eq!(
        report["signals"]["customMetrics"][0]["missing"], 2,
        "{report}"
    );
    assert_eq!(
        report["spec"]["scaling"]["min"], 1,
        "the edit was read: {report}"
    );
}

#[test]
fn a_pool_scales_on_its_request_rate() {
    let op = Operator::start(
        "sig-rate",
        &[(
            "busy.yaml",
            pool("busy", 1, 3, "    targetRequestsPerSecond: 4\n"),
        )],
    );
    op.wait_converged("busy", 1, T);
    let started = Instant::now();
    // 10 requests/s for 12 s: ceil(10 / 4) = 3 containers.
    let load = replay(
        op.gateway_port,
        &["/function/busy/".to_string()],
        Duration::from_secs(12),
        |_| 10.0,
    );
    let report = op.pool_json("busy");
    all_ok(load);
    assert_eq!(report["lastScale"]["reason"], "requestRate", "{report}");
    assert_eq!(report["lastScale"]["to"], 3, "{report}");
    let rate = report["signals"]["requestRate"].as_f64().unwrap();
    assert!(
        (6.0..=14.0).contains(&rate),
        "the rate read {rate}: {report}"
    );
    op.wait_converged("busy", 3, T);
    eprintln!(
        "request rate: 3 containers ready {:?} after the load began",
        started.elapsed()
    );
    // Cost accrues: container-seconds of three containers.
    eventually(T, "container-seconds are counted", || {
        op.pool_json("busy")["cost"]["containerSeconds"].as_f64() > Some(10.0)
    });
    let metrics = http_get(op.admin_port, "/metrics").unwrap().1;
    assert!(
        metrics.contains("invok_pool_container_seconds_total{pool=\"busy\"}"),
        "{metrics}"
    );
}

/// Two identical pools but for `predictive`, the same ramp of requests to both: the
/// predictive one has its capacity earlier.
#[test]
fn a_predictive_pool_reaches_capacity_before_a_reactive_one_on_a_ramp() {
    let scaling = "    targetRequestsPerSecond: 5\n";
    let op = Operator::start(
        "sig-predict",
        &[
            ("reactive.yaml", pool("reactive", 1, 6, scaling)),
            (
                "ahead.yaml",
                pool(
                    "ahead",
                    1,
                    6,
                    &format!("{scaling}    predictive:\n      horizon: 20s\n      window: 10m\n"),
                ),
            ),
        ],
    );
    op.wait_converged("reactive", 1, T);
    op.wait_converged("ahead", 1, T);
    // 1 -> 25 requests/s over 40 s, to both.
    let ramp_for = Duration::from_secs(40);
    let port = op.gateway_port;
    let paths = [
        "/function/reactive/".to_string(),
        "/function/ahead/".to_string(),
    ];
    let started = Instant::now();
    let sender = std::thread::spawn(move || replay(port, &paths, ramp_for, |t| 1.0 + 0.6 * t));
    // When each pool first has 4 ready containers (capacity for 20 requests/s).
    let (mut reactive, mut ahead) = (None, None);
    let mut forecast_seen = serde_json::Value::Null;
    eventually(ramp_for + T, "both pools reach 4 ready containers", || {
        for (pool, when) in [("reactive", &mut reactive), ("ahead", &mut ahead)] {
            if when.is_none() && op.ready(pool) >= 4 {
                *when = Some(started.elapsed());
            }
        }
        if forecast_seen.is_null() {
            forecast_seen = op.pool_json("ahead")["signals"]["forecast"].clone();
        }
        reactive.is_some() && ahead.is_some()
    });
    all_ok(sender.join().unwrap());
    let (reactive, ahead) = (reactive.unwrap(), ahead.unwrap());
    eprintln!("ramp: 4 ready after {ahead:?} (predictive) and {reactive:?} (reactive); forecast {forecast_seen}");
    // The forecast is 20 s of ramp (12 requests/s) ahead: it has capacity for 20
    // requests/s when the rate passes 8; the reactive pool when it passes 15 (some 11 s
    // later on this ramp).
    assert!(
        ahead + Duration::from_secs(5) <= reactive,
        "predictive {ahead:?}, reactive {reactive:?}"
    );
    let report = op.pool_json("ahead");
    assert!(
        report["signals"]["forecast"]["rate"].as_f64().is_some(),
        "{report}"
    );
    let scaled_for: Vec<String> = report["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].to_string())
        .collect();
    assert!(
        scaled_for.iter().any(|m| m.contains("(Predictive)")),
        "the predictive pool says a forecast scaled it: {scaled_for:?}"
    );
}

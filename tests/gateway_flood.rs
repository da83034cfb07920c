//! The gateway under a flood, on real Docker, in its own test binary (it loads the
//! machine, and timing-sensitive tests elsewhere should not run beside it).
//!
//! 1,500 connections each send one slow request at once while 200 more send half a
//! request head and stall (slowloris). The operator must stay up and small, answer
//! `/healthz` within a second throughout, hold at most `--max-in-flight` requests and
//! turn the rest away at once with `503` and `Retry-After`, and cut the stalled
//! connections off at the header read timeout. The load is bounded: 1,700 connections,
//! one request each, every read with a deadline.
#![allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "a blocking test against a real operator and a real daemon: real time is the point"
)]

mod support;

use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FLOOD: usize = 1_500;
const STALLED: usize = 200;
const MAX_IN_FLIGHT: usize = 100;
/// The operator's resident memory may grow by at most this much under the flood (a
/// connection costs a task and its buffers, a few KiB; 1,700 of them stay far under).
const RSS_GROWTH_LIMIT_KB: u64 = 32 * 1024;

/// Resident memory of a process, in KiB.
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Lets this test process open its 1,700 sockets whatever the soft limit is.
fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if let Some(max) = lim.maximum {
        lim.current = Some(max);
        let _ = setrlimit(Resource::Nofile, lim);
    }
}

/// One flood request: Ok((status, has Retry-After)) or why it got no answer.
async fn one_request(port: u16) -> Result<(u16, bool), String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    s.write_all(
        b"GET /function/web/?sleep=3000 HTTP/1.1\r\nHost: flood\r\nConnection: close\r\n\r\n",
    )
    .await
    .map_err(|e| format!("write: {e}"))?;
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut resp))
        .await
        .map_err(|_| "no answer within 60 s".to_string())?
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&resp);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad response {text:?}"))?;
    let retry_after = text.to_ascii_lowercase().contains("\r\nretry-after: 1\r\n");
    Ok((status, retry_after))
}

/// A slowloris connection: half a head, then nothing. Returns how long the gateway
/// kept it open.
async fn stalled(port: u16) -> Result<Duration, String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let started = Instant::now();
    s.write_all(b"GET /function/web/ HTTP/1.1\r\nHo")
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf))
        .await
        .map_err(|_| "still open after 30 s".to_string())?
        .ok();
    Ok(started.elapsed())
}

#[test]
fn a_connection_flood_leaves_the_operator_up_small_and_answering() {
    raise_open_files_limit();
    let op = Operator::start_with(
        "gw-flood",
        &[("web.yaml", pool_yaml("web", 1, 1, ""))],
        &[
            "--max-in-flight",
            &MAX_IN_FLIGHT.to_string(),
            "--header-read-timeout",
            "1s",
        ],
    );
    op.wait_converged("web", 1, Duration::from_secs(30));
    let pid = op.pid().expect("the operator runs");
    let rss_before = rss_kb(pid);
    let port = op.gateway_port;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let flood: Vec<_> = (0..FLOOD).map(|_| rt.spawn(one_request(port))).collect();
    let slow: Vec<_> = (0..STALLED).map(|_| rt.spawn(stalled(port))).collect();
    // The admin API has the same header read timeout.
    let slow_admin: Vec<_> = (0..5).map(|_| rt.spawn(stalled(op.admin_port))).collect();
    let id = running(&op.instance, "web")[0].id.clone();

    // While the flood is on: /healthz within a second, every time.
    let mut worst = Duration::ZERO;
    let mut rss_peak = rss_before;
    let mut most_in_flight = 0;
    let watch_until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < watch_until {
        let t = Instant::now();
        let health = http_get(op.admin_port, "/healthz");
        let took = t.elapsed();
        assert!(
            matches!(health, Ok((200, _))),
            "/healthz under the flood: {health:?}"
        );
        worst = worst.max(took);
        rss_peak = rss_peak.max(rss_kb(pid));
        let in_flight = op.container_json("web", &id)["inFlight"]
            .as_u64()
            .unwrap_or(0);
        most_in_flight = most_in_flight.max(in_flight);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        worst < Duration::from_secs(1),
        "/healthz took {worst:?} under the flood"
    );
    assert!(
        most_in_flight <= MAX_IN_FLIGHT as u64,
        "{most_in_flight} requests in flight on the container, over --max-in-flight {MAX_IN_FLIGHT}"
    );

    let (mut ok, mut turned_away, mut other) = (0, 0, Vec::new());
    for h in flood {
        match rt.block_on(h).unwrap() {
            Ok((200, _)) => ok += 1,
            Ok((503, true)) => turned_away += 1,
            r => other.push(r),
        }
    }
    for (h, api) in slow
        .into_iter()
        .map(|h| (h, "gateway"))
        .chain(slow_admin.into_iter().map(|h| (h, "admin API")))
    {
        let held = rt.block_on(h).unwrap().expect("a stalled connection");
        assert!(
            held < Duration::from_secs(5),
            "the {api} kept a client that never finished its head {held:?} (header read timeout 1s)"
        );
    }
    rss_peak = rss_peak.max(rss_kb(pid));
    assert!(
        other.is_empty(),
        "every flood request gets its answer or a 503 with Retry-After; {} did not: {:?}",
        other.len(),
        &other[..other.len().min(5)]
    );
    assert!(ok >= MAX_IN_FLIGHT, "only {ok} requests were served");
    assert!(
        turned_away > 0,
        "the limit of {MAX_IN_FLIGHT} was never reached"
    );
    assert!(
        rss_peak.saturating_sub(rss_before) < RSS_GROWTH_LIMIT_KB,
        "operator memory grew from {rss_before} KiB to {rss_peak} KiB"
    );
    eprintln!(
        "flood: {ok} served, {turned_away} turned away; /healthz worst {worst:?}; RSS {rss_before} -> peak {rss_peak} KiB"
    );

    // Afterwards: still up, nothing left counted, and serving.
    eventually(Duration::from_secs(30), "no request left in flight", || {
        op.container_json("web", &id)["inFlight"] == 0
    });
    let (status, body) = http_get(op.gateway_port, "/function/web/").unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
}

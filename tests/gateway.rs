//! The gateway on real Docker: pass-through, spreading, failures, scale from zero.
#![allow(
    clippy::disallowed_types,
    reason = "blocking tests against a real operator: a 504 must come at the pool's timeout, on the wall clock"
)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::*;

const T: Duration = Duration::from_secs(30);

/// A raw HTTP/1.1 exchange: (status, headers lower-cased, body).
fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, BTreeMap<String, String>, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    parse_response(&resp)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}

fn json_error(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)));
    v["error"]
        .as_str()
        .expect("a JSON body with an error")
        .to_string()
}

#[test]
fn body_and_headers_pass_through_both_ways() {
    let op = Operator::start("gw-echo", &[("web.yaml", pool_yaml("web", 1, 1, ""))]);
    op.wait_converged("web", 1, T);
    let body = b"line one\nline two: {\"json\": true} \xc3\xa9\n";
    let (status, headers, echoed) = request(
        op.gateway_port,
        "POST",
        "/function/web/cgi-bin/echo?a=1&b=two",
        &[("X-Test", "hello")],
        body,
    );
    assert_eq!(status, 200);
    assert_eq!(echoed, body);
    let container = running(&op.instance, "web").remove(0);
    assert_eq!(headers["x-invok-container"], container.name);
    assert_eq!(headers["x-hostname"], container.id[..12]);
    assert_eq!(headers["x-method"], "POST");
    assert_eq!(headers["x-query"], "a=1&b=two");
    // GET through the bare function path reaches "/".
    let (status, headers, body) = request(op.gateway_port, "GET", "/function/web", &[], b"");
    assert_eq!((status, body.as_slice()), (200, &b"ok\n"[..]));
    assert!(headers.contains_key("x-invok-container"));
}

#[test]
fn unknown_pools_get_404_and_big_bodies_413_as_json() {
    let op = Operator::start_with(
        "gw-errors",
        &[("web.yaml", pool_yaml("web", 1, 1, ""))],
        &["--max-body", "1Ki"],
    );
    op.wait_converged("web", 1, T);
    let (status, _, body) = request(op.gateway_port, "GET", "/function/nope", &[], b"");
    assert_eq!(status, 404);
    assert!(json_error(&body).contains("\"nope\" not found"));
    let (status, _, body) = request(
        op.gateway_port,
        "POST",
        "/function/web/cgi-bin/echo",
        &[],
        &[b'x'; 2048],
    );
    assert_eq!(status, 413);
    assert!(json_error(&body).contains("exceeds the limit of 1024 bytes"));
}

#[test]
fn concurrent_slow_requests_spread_over_all_ready_containers() {
    let op = Operator::start("gw-spread", &[("web.yaml", pool_yaml("web", 3, 3, ""))]);
    op.wait_converged("web", 3, T);
    let port = op.gateway_port;
    let handles: Vec<_> = (0..6)
        .map(|_| {
            std::thread::spawn(move || {
                request(port, "GET", "/function/web/cgi-bin/sleep?ms=1500", &[], b"")
            })
        })
        .collect();
    let mut used = BTreeMap::new();
    for h in handles {
        let (status, headers, _) = h.join().unwrap();
        assert_eq!(status, 200);
        *used
            .entry(headers["x-invok-container"].clone())
            .or_insert(0) += 1;
    }
    assert_eq!(used.len(), 3, "every container got requests: {used:?}");
    assert!(
        used.values().all(|n| *n == 2),
        "two each, by requests in flight: {used:?}"
    );
}

#[test]
fn a_container_killed_during_traffic_costs_at_most_its_in_flight_requests() {
    let op = Operator::start("gw-kill", &[("web.yaml", pool_yaml("web", 2, 2, ""))]);
    op.wait_converged("web", 2, T);
    let port = op.gateway_port;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut ok, mut failed) = (0, 0);
                for _ in 0..400 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    match request(port, "POST", "/function/web/cgi-bin/sleep?ms=50", &[], b"x") {
                        (200, _, _) => ok += 1,
                        _ => failed += 1,
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    eventually(T, "traffic flows", || {
        op.pool_status("web")["ready_containers"] == 2
    });
    let victim = running(&op.instance, "web").remove(0);
    docker(&["kill", &victim.id]).unwrap();
    eventually(T, "the pool heals", || {
        let now = running(&op.instance, "web");
        now.len() == 2 && now.iter().all(|c| c.id != victim.id) && op.ready("web") == 2
    });
    // Later requests succeed.
    for _ in 0..10 {
        assert_eq!(request(port, "GET", "/function/web", &[], b"").0, 200);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, 0);
    for c in clients {
        let (o, f) = c.join().unwrap();
        ok += o;
        failed += f;
    }
    assert!(ok > 10, "traffic flowed: {ok}");
    // At most one request per client was on the victim when it died.
    assert!(failed <= 2, "{failed} failed requests for 2 clients");
}

#[test]
fn a_zero_pool_starts_on_the_first_request_and_returns_to_zero() {
    let yaml = pool_yaml("zero", 0, 3, "").replace(
        "pollInterval: 500ms",
        "pollInterval: 500ms\n    cooldownDuration: 3s",
    );
    let op = Operator::start("gw-zero", &[("zero.yaml", yaml)]);
    op.wait_rounds(2);
    assert!(running(&op.instance, "zero").is_empty());
    let (status, headers, body) = request(op.gateway_port, "GET", "/function/zero", &[], b"");
    assert_eq!((status, body.as_slice()), (200, &b"ok\n"[..]));
    let first = running(&op.instance, "zero");
    assert_eq!(first.len(), 1);
    assert_eq!(headers["x-invok-container"], first[0].name);
    eventually(
        Duration::from_secs(40),
        "the idle pool goes back to zero",
        || containers(&op.instance, Some("zero")).is_empty(),
    );
    assert!(op.logs().contains("Scaled down container"));
}

#[test]
fn a_burst_of_first_requests_to_a_zero_pool_all_succeed() {
    let op = Operator::start("gw-burst", &[("zero.yaml", pool_yaml("zero", 0, 3, ""))]);
    op.wait_rounds(2);
    let port = op.gateway_port;
    let handles: Vec<_> = (0..10)
        .map(|_| std::thread::spawn(move || request(port, "GET", "/function/zero", &[], b"")))
        .collect();
    let mut names = BTreeSet::new();
    for h in handles {
        let (status, headers, body) = h.join().unwrap();
        assert_eq!((status, body.as_slice()), (200, &b"ok\n"[..]));
        names.insert(headers["x-invok-container"].clone());
    }
    // Without targetConcurrency a burst starts one container, not one per request.
    assert_eq!(names.len(), 1, "{names:?}");
    assert_eq!(running(&op.instance, "zero").len(), 1);
}

#[test]
fn no_container_ready_in_time_is_a_503_with_a_json_error() {
    let yaml = pool_yaml("ghost", 0, 1, "").replace(IMAGE, "127.0.0.1:1/invok/missing:1");
    let op = Operator::start_with(
        "gw-503",
        &[("ghost.yaml", yaml)],
        &["--cold-start-timeout", "2s"],
    );
    let (status, _, body) = request(op.gateway_port, "GET", "/function/ghost", &[], b"");
    assert_eq!(status, 503);
    assert!(json_error(&body).contains("no container of \"ghost\" became ready within 2s"));
}

#[test]
fn a_container_that_hangs_up_without_answering_is_a_502() {
    // The function accepts connections and closes them without an answer.
    let yaml = pool_yaml(
        "broken",
        1,
        1,
        "  command: [\"/bin/sh\", \"-c\", \"while true; do nc -l -p 8080 -e sleep 1; done\"]\n",
    );
    let op = Operator::start("gw-502", &[("broken.yaml", yaml)]);
    op.wait_converged("broken", 1, T);
    let (status, _, body) = request(op.gateway_port, "POST", "/function/broken", &[], b"x");
    assert_eq!(status, 502);
    assert!(
        json_error(&body).contains("failed"),
        "{}",
        String::from_utf8_lossy(&body)
    );
}

/// A pool of 1 to 4 containers with `targetConcurrency: 1`, polling every `poll`.
fn concurrency_pool(name: &str, poll: &str) -> String {
    pool_yaml(name, 1, 4, "").replace(
        "pollInterval: 500ms",
        &format!("pollInterval: {poll}\n    targetConcurrency: 1\n    cooldownDuration: 60s"),
    )
}

/// `n` requests to `pool` that each sleep `ms` in the function (no CPU: only in-flight
/// counts see this load), each on its own thread; they yield their status codes.
fn sleeping_requests(
    port: u16,
    pool: &str,
    n: usize,
    ms: u64,
) -> Vec<std::thread::JoinHandle<u16>> {
    (0..n)
        .map(|_| {
            let path = format!("/function/{pool}/cgi-bin/sleep?ms={ms}");
            std::thread::spawn(move || request(port, "GET", &path, &[], b"").0)
        })
        .collect()
}

#[test]
fn target_concurrency_scales_up_before_cpu_does() {
    let op = Operator::start(
        "gw-conc",
        &[("conc.yaml", concurrency_pool("conc", "500ms"))],
    );
    op.wait_converged("conc", 1, T);
    let handles = sleeping_requests(op.gateway_port, "conc", 3, 4000);
    eventually(T, "the pool grows on concurrency", || {
        running(&op.instance, "conc").len() >= 3
    });
    let report = op.get_json("/api/v1/pools/conc");
    assert_eq!(report["lastScale"]["reason"], "concurrency", "{report}");
    for h in handles {
        assert_eq!(h.join().unwrap(), 200);
    }
}

/// A quiet pool (converged, its container idle and serving nothing) stops polling; the
/// first request routed to it wakes its reconcile, so concurrency still scales it up
/// within a poll interval or two, not at the 30 s resync.
#[test]
fn a_quiet_pool_that_stopped_polling_wakes_on_its_first_request() {
    let op = Operator::start("gw-quiet", &[("calm.yaml", concurrency_pool("calm", "1s"))]);
    op.wait_converged("calm", 1, T);
    eventually(T, "the pool says it is quiet", || {
        op.pool_json("calm")["quiet"] == true
    });
    // Stopped polling: three poll intervals without a reconcile.
    let still = op.reconciles("calm");
    let mut since = Instant::now();
    let mut last = still;
    eventually(T, "3 s without a reconcile of the quiet pool", || {
        let now = op.reconciles("calm");
        if now != last {
            (last, since) = (now, Instant::now());
        }
        since.elapsed() >= Duration::from_secs(3)
    });
    let asked = Instant::now();
    let handles = sleeping_requests(op.gateway_port, "calm", 3, 8000);
    // Without the wake, the next pass would come at the resync, up to 30 s after the
    // pool fell asleep, and find the requests gone.
    eventually(
        Duration::from_secs(15),
        "the quiet pool grows on concurrency",
        || running(&op.instance, "calm").len() >= 3,
    );
    let woke_in = asked.elapsed();
    let report = op.pool_json("calm");
    assert_eq!(report["lastScale"]["reason"], "concurrency", "{report}");
    assert_eq!(report["quiet"], false, "{report}");
    for h in handles {
        assert_eq!(h.join().unwrap(), 200);
    }
    eprintln!("quiet pool: 3 containers running {woke_in:?} after the first request");
}

#[test]
fn invok_invoke_answers_through_the_gateway_including_from_zero() {
    let op = Operator::start("gw-invoke", &[("zero.yaml", pool_yaml("zero", 0, 2, ""))]);
    let gateway = format!("http://127.0.0.1:{}", op.gateway_port);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_invok"))
        .args([
            "invoke",
            "zero",
            "--data",
            "hello from invoke",
            "--path",
            "cgi-bin/echo",
            "--gateway",
            &gateway,
            "-v",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from invoke");
    assert!(String::from_utf8_lossy(&out.stderr).contains("200 OK from invok-zero-"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_invok"))
        .args(["invoke", "nope", "--gateway", &gateway])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
}

/// Regression: a request replayed after a stale kept-alive connection was counted out
/// twice, leaving in-flight counts wrapped below zero (and routing blind).
#[test]
fn in_flight_counts_return_to_zero_after_traffic() {
    let op = Operator::start("gw-inflight", &[("web.yaml", pool_yaml("web", 2, 2, ""))]);
    op.wait_converged("web", 2, T);
    for _ in 0..30 {
        assert_eq!(
            request(op.gateway_port, "GET", "/function/web", &[], b"").0,
            200
        );
    }
    eventually(T, "every container has nothing in flight", || {
        let report = op.get_json("/api/v1/pools/web");
        let cs = report["containers"].as_array().cloned().unwrap_or_default();
        cs.len() == 2 && cs.iter().all(|c| c["inFlight"] == 0)
    });
}

/// Sends `head` (a request line and headers, without the blank line) and then `body`
/// as chunks, on a raw connection: (status, headers, body).
fn chunked_request(
    port: u16,
    head: &str,
    chunks: &[&[u8]],
) -> (u16, BTreeMap<String, String>, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut out = format!(
        "{head}\r\nHost: 127.0.0.1\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for c in chunks {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    // The gateway may answer 413 and close before it read everything: a write error
    // then is expected, the answer is what counts.
    let _ = s.write_all(&out);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    parse_response(&resp)
}

fn parse_response(resp: &[u8]) -> (u16, BTreeMap<String, String>, Vec<u8>) {
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(resp)));
    let head = String::from_utf8_lossy(&resp[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = resp[split + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    (status, headers, body)
}

#[test]
fn path_and_query_reach_the_function_byte_for_byte_with_forwarded_headers() {
    // A function that answers with its request head exactly as it arrived (busybox
    // httpd would show a CGI the path decoded and normalised).
    let raw = pool_yaml(
        "raw",
        1,
        1,
        "  command: [\"nc\", \"-ll\", \"-p\", \"8080\", \"-e\", \"/usr/lib/demo-fn/raw-request\"]\n",
    );
    let op = Operator::start("gw-exact", &[("raw.yaml", raw)]);
    op.wait_converged("raw", 1, T);
    let path = "/a%2Fb/%65cho//c%20d/%3F?q=%3F%2F%20&r=a+b&s=%25&&t";
    let (status, _, body) = request(
        op.gateway_port,
        "PUT",
        &format!("/function/raw{path}"),
        &[
            ("X-Forwarded-For", "203.0.113.9"),
            ("Connection", "x-hop"),
            ("X-Hop", "1"),
        ],
        b"",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let head = String::from_utf8(body).unwrap();
    let mut lines = head.lines();
    assert_eq!(lines.next(), Some(format!("PUT {path} HTTP/1.1").as_str()));
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(
        headers["x-forwarded-host"],
        format!("127.0.0.1:{}", op.gateway_port)
    );
    assert_eq!(headers["x-forwarded-prefix"], "/function/raw");
    assert!(
        !headers.contains_key("x-hop") && !headers.contains_key("connection"),
        "hop-by-hop headers stay behind: {headers:?}"
    );
}

#[test]
fn a_function_slower_than_the_pools_timeout_is_a_504_and_leaves_no_count() {
    let op = Operator::start(
        "gw-504",
        &[("web.yaml", pool_yaml("web", 1, 1, "  timeout: 1s\n"))],
    );
    op.wait_converged("web", 1, T);
    let started = std::time::Instant::now();
    let (status, _, body) = request(
        op.gateway_port,
        "GET",
        "/function/web/?sleep=5000",
        &[],
        b"",
    );
    let took = started.elapsed();
    assert_eq!(status, 504);
    assert!(
        json_error(&body).contains("did not answer within the pool's timeout of 1s"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(
        took < Duration::from_secs(4),
        "answered after {took:?}, not at the timeout"
    );
    let id = running(&op.instance, "web")[0].id.clone();
    eventually(T, "the request is no longer counted in flight", || {
        op.container_json("web", &id)["inFlight"] == 0
    });
    // A function within its timeout answers as before.
    let (status, _, body) = request(op.gateway_port, "GET", "/function/web/?sleep=200", &[], b"");
    assert_eq!((status, body.as_slice()), (200, &b"slept 200 ms\n"[..]));
}

#[test]
fn chunked_uploads_over_max_body_get_413_and_small_ones_arrive_whole() {
    let op = Operator::start_with(
        "gw-chunked",
        &[("web.yaml", pool_yaml("web", 1, 1, ""))],
        &["--max-body", "1Ki"],
    );
    op.wait_converged("web", 1, T);
    let big = [b'x'; 700];
    let (status, _, body) = chunked_request(
        op.gateway_port,
        "POST /function/web/cgi-bin/echo HTTP/1.1",
        &[&big, &big],
    );
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    assert!(json_error(&body).contains("exceeds the limit of 1024 bytes"));
    // A small chunked body reaches a function that only reads Content-Length.
    let (status, _, body) = chunked_request(
        op.gateway_port,
        "POST /function/web/cgi-bin/echo HTTP/1.1",
        &[b"hello, ", b"chunked world"],
    );
    assert_eq!(
        (status, body.as_slice()),
        (200, &b"hello, chunked world"[..])
    );
}

#[test]
fn a_request_in_flight_during_a_scale_down_completes() {
    let op = Operator::start("gw-drain", &[("web.yaml", pool_yaml("web", 2, 2, ""))]);
    op.wait_converged("web", 2, T);
    let port = op.gateway_port;
    // One slow request on each container: slow enough that the operator reacts to the
    // edit well within it, even on a loaded machine.
    let slow: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || request(port, "GET", "/function/web/?sleep=15000", &[], b""))
        })
        .collect();
    eventually(T, "both containers have a request in flight", || {
        op.pool_json("web")["containers"]
            .as_array()
            .is_some_and(|cs| cs.iter().filter(|c| c["inFlight"] == 1).count() == 2)
    });
    op.write("web.yaml", &pool_yaml("web", 1, 1, ""));
    eventually(T, "one container drains", || {
        op.pool_json("web")["containers"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["phase"] == "draining"))
    });
    let draining = op.pool_json("web")["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["phase"] == "draining")
        .map(|c| c["name"].as_str().unwrap().to_string())
        .unwrap();
    // New requests go to the container that stays.
    for _ in 0..3 {
        let (status, headers, _) = request(port, "GET", "/function/web", &[], b"");
        assert_eq!(status, 200);
        assert_ne!(
            headers["x-invok-container"], draining,
            "routed to a draining container"
        );
    }
    for h in slow {
        let (status, _, body) = h.join().unwrap();
        assert_eq!(
            (status, body.as_slice()),
            (200, &b"slept 15000 ms\n"[..]),
            "a request in flight during the scale-down completes"
        );
    }
    eventually(T, "the drained container is removed", || {
        running(&op.instance, "web").len() == 1
    });
    assert!(running(&op.instance, "web")
        .iter()
        .all(|c| c.name != draining));
}

#[test]
fn a_post_whose_container_dies_is_a_502_and_is_never_sent_again() {
    let op = Operator::start("gw-noreplay", &[("web.yaml", pool_yaml("web", 2, 2, ""))]);
    op.wait_converged("web", 2, T);
    let port = op.gateway_port;
    let post = std::thread::spawn(move || {
        request(
            port,
            "POST",
            "/function/web/?sleep=8000",
            &[],
            b"charge the card once",
        )
    });
    let mut victim = None;
    eventually(T, "the POST is running in a container", || {
        victim = op.pool_json("web")["containers"].as_array().and_then(|cs| {
            cs.iter()
                .find(|c| c["inFlight"] == 1)
                .map(|c| c["id"].as_str().unwrap().to_string())
        });
        victim.is_some()
    });
    let victim = victim.unwrap();
    // The other container, named before the kill: its replacement must not be taken
    // for it.
    let other = running(&op.instance, "web")
        .into_iter()
        .find(|c| c.id != victim)
        .expect("the other container runs");
    docker(&["kill", &victim]).unwrap();
    let (status, _, body) = post.join().unwrap();
    assert_eq!(status, 502, "{}", String::from_utf8_lossy(&body));
    assert!(json_error(&body).contains("failed"));
    // Had the gateway sent it again, the other container would be sleeping in it now.
    let procs = docker(&["top", &other.id]).unwrap();
    assert!(
        !procs.contains("usleep"),
        "the POST was replayed on {}: {procs}",
        other.name
    );
    assert!(
        !op.logs().contains("cannot connect to container"),
        "a connection that was made is never a refusal"
    );
}

/// Sends `method /function/{pool}/` with a fresh client connection and returns the
/// status and the container's `X-Connection-Requests` (how many requests the gateway's
/// connection to it has carried).
fn connection_requests(port: u16, method: &str, pool: &str) -> (u16, Option<u64>) {
    let (status, headers, _) = request(port, method, &format!("/function/{pool}/"), &[], b"");
    let n = headers
        .get("x-connection-requests")
        .and_then(|v| v.parse().ok());
    (status, n)
}

#[test]
fn connections_are_kept_alive_to_a_function_that_says_how_long_it_keeps_them() {
    require_fast_image();
    // fast-fn answers with `Keep-Alive: timeout=5`; `short` says 1 s, too short to reuse
    // safely (the gateway keeps an idle connection up to 1 s, plus a 1 s margin).
    let yaml = pool_yaml("fast", 1, 1, "").replace(IMAGE, FAST_IMAGE);
    let short =
        pool_yaml("short", 1, 1, "  command: [\"8080\", \"1\"]\n").replace(IMAGE, FAST_IMAGE);
    let op = Operator::start(
        "gw-keepalive",
        &[("fast.yaml", yaml), ("short.yaml", short)],
    );
    op.wait_converged("fast", 1, T);
    op.wait_converged("short", 1, T);
    let port = op.gateway_port;
    for method in ["GET", "POST", "PUT", "DELETE", "HEAD"] {
        // Sequential requests: the gateway's connection to the container carries several.
        let carried: Vec<Option<u64>> = (0..6)
            .map(|_| {
                let (status, n) = connection_requests(port, method, "fast");
                assert_eq!(status, 200, "{method}");
                n
            })
            .collect();
        assert!(
            carried.iter().any(|n| n.unwrap_or(0) >= 2),
            "no {method} travelled on a kept-alive connection: {carried:?}"
        );
    }
    // A connection idle for longer than the gateway keeps one is not reused (the time
    // waited is what is tested here, not a stand-in for a condition).
    #[allow(
        clippy::disallowed_methods,
        reason = "idleness is the input: a blocking test waits it out on the wall clock"
    )]
    std::thread::sleep(upstream_idle() + Duration::from_millis(500));
    assert_eq!(connection_requests(port, "GET", "fast"), (200, Some(1)));
    // A function that keeps idle connections only 1 s gets a new one every time.
    for _ in 0..6 {
        assert_eq!(connection_requests(port, "GET", "short"), (200, Some(1)));
    }
}

/// How long the gateway keeps an idle connection to a container.
fn upstream_idle() -> Duration {
    invok::gateway::UPSTREAM_IDLE_TIMEOUT
}

#[test]
fn a_function_that_closes_connections_unannounced_gets_a_new_one_per_request() {
    // Answers the first request of each connection as HTTP/1.1 (kept alive by default,
    // no `Keep-Alive: timeout`), then closes the connection as the next request arrives,
    // without answering it: the race a reused connection can lose (busybox httpd after
    // a CGI answer, Node at its idle timeout), made certain. A request lost that way
    // could not be sent again; so the gateway never reuses such a connection.
    let script = r#"read -r l; while read -r h; do [ ${#h} -le 1 ] && break; done; printf 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n'; read -r next"#;
    let yaml = pool_yaml(
        "closer",
        1,
        1,
        &format!(
            "  command: [\"nc\", \"-ll\", \"-p\", \"8080\", \"-e\", \"sh\", \"-c\", {}]\n",
            serde_json::to_string(script).unwrap()
        ),
    );
    let op = Operator::start("gw-stale", &[("closer.yaml", yaml)]);
    op.wait_converged("closer", 1, T);
    for i in 0..10 {
        let method = if i % 2 == 0 { "GET" } else { "POST" };
        let (status, _, body) = request(op.gateway_port, method, "/function/closer/", &[], b"");
        assert_eq!(
            (status, body.as_slice()),
            (200, b"ok\n".as_slice()),
            "{method} {i}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    assert_eq!(op.ready("closer"), 1);
}

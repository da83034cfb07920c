//! Regression tests: the gateway against clients that misbehave, on real Docker.
//!
//! Each test runs its own operator with `--max-in-flight 1`: a request that keeps its
//! place past its time shows as a `503` for the next one.
#![allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "drives a real operator from blocking test code: real time is the point"
)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use super::support::*;

const T: Duration = Duration::from_secs(30);

/// An operator with one ready container of a pool whose timeout is 2 s, holding at most
/// one request at a time.
fn one_at_a_time(prefix: &str) -> Operator {
    let op = Operator::start_with(
        prefix,
        &[("web.yaml", pool_yaml("web", 1, 1, "  timeout: 2s\n"))],
        &["--max-in-flight", "1"],
    );
    op.wait_converged("web", 1, T);
    op
}

/// A connection to the gateway that has sent `head` (a request line and headers, then
/// `Host`, `Connection: close` and the blank line are added) and `body`.
fn send(op: &Operator, head: &str, body: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", op.gateway_port)).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let head = format!("{head}\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    s
}

/// The status and body of the answer on `s`, read to its end.
fn answer(mut s: TcpStream) -> (u16, String) {
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)
        .expect("the gateway answers and closes");
    let text = String::from_utf8_lossy(&resp).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// The gateway serves the next request: nothing is held any more.
fn serves_again(op: &Operator, what: &str) {
    let id = running(&op.instance, "web")[0].id.clone();
    eventually(T, &format!("{what}: no request counted in flight"), || {
        op.container_json("web", &id)["inFlight"] == 0
    });
    let (status, body) = http_get(op.gateway_port, "/function/web/").unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, "ok\n"),
        "{what}: the place is free"
    );
}

/// Bug: a client that asked for a large answer and then stopped reading it kept its
/// request counted in flight, and its place under `--max-in-flight`, forever: hyper
/// polls a response body only while the client takes what was written, so the pool's
/// timeout inside the body never fired. Every other request got `503` from then on.
/// The timeout must end it: counts released, the client's connection closed.
#[test]
fn a_client_that_stops_reading_a_large_answer_holds_nothing_past_the_timeout() {
    let op = one_at_a_time("rg-stop-reading");
    // 200 MB: far more than the socket buffers between the container and this client.
    let stalled = send(
        &op,
        "GET /function/web/cgi-bin/bytes?n=200000000 HTTP/1.1",
        b"",
    );
    serves_again(&op, "after the timeout of a client that stopped reading");
    // The stalled client's connection was closed: what it reads now ends, short.
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    let mut s = stalled;
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the cut-off connection should end, not {e}"),
        }
    }
    assert!(got < 200_000_000, "the answer was cut off, got {got} bytes");
}

/// Bug: a client that sent its headers and then its body slowly (or not at all) kept
/// its place under `--max-in-flight` forever while the gateway read a chunked body's
/// first bytes, and, with a `Content-Length`, got `504` blaming the function. The
/// pool's timeout bounds the upload too, and the client gets `408`.
#[test]
fn a_client_that_sends_its_body_too_slowly_gets_408_and_holds_nothing() {
    let op = one_at_a_time("rg-slow-body");
    let cases = [
        // The gateway reads a chunked body's first 64 KiB before it picks a container.
        (
            "chunked",
            "POST /function/web/cgi-bin/echo HTTP/1.1\r\nTransfer-Encoding: chunked",
            &b"5\r\nhello\r\n"[..],
        ),
        // A body with a length streams to the container as it comes.
        (
            "with a length",
            "POST /function/web/cgi-bin/echo HTTP/1.1\r\nContent-Length: 100",
            &b"0123456789"[..],
        ),
    ];
    for (what, head, part) in cases {
        let started = std::time::Instant::now();
        let (status, body) = answer(send(&op, head, part));
        assert_eq!(status, 408, "{what}: {body}");
        assert!(
            body.contains("did not arrive within the pool's timeout of 2s"),
            "{what}: {body}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what}: answered after {:?}, not at the timeout",
            started.elapsed()
        );
        serves_again(&op, what);
    }
}

/// Bug: a client that hung up halfway through its upload made the gateway report the
/// container unreachable (probing it as a suspect) and count a `502`: the client's
/// broken body was taken for the container's failure. It is the client's: `400`, and
/// the container is not suspected.
#[test]
fn a_client_that_hangs_up_mid_upload_is_not_the_containers_failure() {
    let op = one_at_a_time("rg-hangup-upload");
    let s = send(
        &op,
        "POST /function/web/cgi-bin/echo HTTP/1.1\r\nContent-Length: 100000",
        &[b'x'; 1000],
    );
    s.shutdown(Shutdown::Both).unwrap();
    drop(s);
    let metrics = || http_get(op.admin_port, "/metrics").unwrap().1;
    eventually(
        T,
        "the broken upload is counted as the client's (400)",
        || metrics().contains(r#"invok_gateway_requests_total{pool="web",code="400"} 1"#),
    );
    let text = metrics();
    assert!(
        !text.contains(r#"invok_gateway_requests_total{pool="web",code="502"}"#),
        "no 502 for a client's broken body:\n{text}"
    );
    serves_again(&op, "after a broken upload");
    assert!(
        !op.logs().contains("request to container failed"),
        "the container is not blamed:\n{}",
        op.logs()
    );
}

/// Bug: a `GET` with a chunked body larger than the 64 KiB the gateway reads ahead
/// reached the function without its body: hyper never sends a chunked body with a
/// `GET`, `HEAD` or `CONNECT`, and dropped it without a word. Such a body is read whole
/// (up to `--max-body`) and sent with its length.
#[test]
fn a_get_with_a_large_chunked_body_reaches_the_function_with_it() {
    // A function that answers with its request head exactly as it arrived.
    let raw = pool_yaml(
        "raw",
        1,
        1,
        "  command: [\"nc\", \"-ll\", \"-p\", \"8080\", \"-e\", \"/usr/lib/demo-fn/raw-request\"]\n",
    );
    let op = Operator::start("rg-get-body", &[("raw.yaml", raw)]);
    op.wait_converged("raw", 1, T);
    let size = 100 << 10;
    let mut body = Vec::new();
    for chunk in [vec![b'x'; 70 << 10], vec![b'y'; 30 << 10]] {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(&chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let s = send(
        &op,
        "GET /function/raw/ HTTP/1.1\r\nTransfer-Encoding: chunked",
        &body,
    );
    let (status, head) = answer(s);
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-length: {size}\n")),
        "the body went with its length: {head}"
    );
}

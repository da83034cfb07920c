//! `fast-fn`: answers every HTTP/1.1 request with `200 ok`, keeping connections alive.
//!
//! The upstream of Invok's proxy benchmarks (`scripts/bench-proxy.sh`). busybox httpd forks
//! per request and closes every connection, which caps it near 2,500 requests/s here and
//! hides what a proxy in front of it costs; this answers from memory on one thread per
//! connection. Written by hand on std alone (no hyper) so that it builds in seconds,
//! statically, into a `FROM scratch` image with nothing else in it: it understands just
//! enough HTTP/1.1 for a benchmark (request heads, `Content-Length` bodies, which it
//! skips, pipelining, `Connection: close`), not chunked request bodies, which it refuses.
//!
//! Listens on `0.0.0.0:8080` (or the port given as its one argument). Each answer says
//! in `X-Connection-Requests` how many requests its connection has carried, and, as Node
//! does, `Keep-Alive: timeout=5` (it never closes an idle connection itself).

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};

/// The answer, with the count of requests served on this connection (so tests can see
/// whether a client kept its connection alive).
fn ok(out: &mut Vec<u8>, nth: u64, head_only: bool) {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nKeep-Alive: timeout=5\r\nX-Connection-Requests: {nth}\r\n\r\nok\n"
    );
    // A HEAD answer says the length of the body it does not carry.
    let head = if head_only {
        head.trim_end_matches("ok\n")
    } else {
        &head
    };
    out.extend_from_slice(head.as_bytes());
}
const BAD: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
/// The largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;

fn main() -> io::Result<()> {
    let port = std::env::args().nth(1).unwrap_or_else(|| "8080".into());
    let listener = TcpListener::bind(format!("0.0.0.0:{port}"))?;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        std::thread::spawn(move || {
            // A client that goes away is not an error worth reporting here.
            let _ = serve(stream);
        });
    }
    Ok(())
}

/// What one request head says about the connection.
struct Head {
    /// Bytes of the head, up to and including the blank line.
    len: usize,
    /// Body bytes that follow it.
    body: usize,
    close: bool,
    /// A `HEAD` request: the answer has no body.
    head_only: bool,
}

fn serve(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; MAX_HEAD];
    let mut filled = 0;
    // Body bytes of the last request still to be read and dropped.
    let mut skip = 0usize;
    let mut out = Vec::with_capacity(1024);
    let mut served = 0u64;
    loop {
        let n = stream.read(&mut buf[filled..])?;
        if n == 0 {
            return Ok(());
        }
        filled += n;
        let mut start = 0;
        loop {
            let dropped = skip.min(filled - start);
            skip -= dropped;
            start += dropped;
            if skip > 0 {
                break;
            }
            match parse(&buf[start..filled]) {
                Ok(Some(head)) => {
                    start += head.len;
                    skip = head.body;
                    served += 1;
                    ok(&mut out, served, head.head_only);
                    if head.close {
                        stream.write_all(&out)?;
                        return Ok(());
                    }
                }
                Ok(None) => break,
                Err(()) => {
                    out.extend_from_slice(BAD);
                    stream.write_all(&out)?;
                    return Ok(());
                }
            }
        }
        if !out.is_empty() {
            stream.write_all(&out)?;
            out.clear();
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
        if filled == buf.len() {
            stream.write_all(BAD)?;
            return Ok(());
        }
    }
}

/// Parses one request head at the start of `b`: `None` until it is whole.
fn parse(b: &[u8]) -> Result<Option<Head>, ()> {
    let Some(end) = b.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&b[..end]).map_err(|_| ())?;
    let mut lines = head.split("\r\n");
    let request = lines.next().ok_or(())?;
    let http10 = request.ends_with("HTTP/1.0");
    let (mut body, mut close) = (0, http10);
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(())?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            body = value.parse().map_err(|_| ())?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(());
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close")
                || (http10 && !value.eq_ignore_ascii_case("keep-alive"));
        }
    }
    Ok(Some(Head {
        len: end + 4,
        body,
        close,
        head_only: request.starts_with("HEAD "),
    }))
}

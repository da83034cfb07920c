//! `fast-fn`: answers every HTTP/1.1 request with `200 ok`, keeping connections alive.
//!
//! The upstream of Invok's proxy benchmarks (`scripts/bench-proxy.sh`) and of the
//! gateway's keep-alive tests. busybox httpd forks per request and closes every
//! connection, which caps it near 2,500 requests/s here and hides what a proxy in front
//! of it costs; this answers from memory on one thread per connection. Written by hand
//! on std alone (no hyper) so that it builds in seconds, statically, into a `FROM
//! scratch` image with nothing else in it: it understands just enough HTTP/1.1 for a
//! benchmark (request heads, `Content-Length` bodies, which it reads and drops before
//! answering, pipelining, `Connection: close`), not chunked request bodies, which it
//! refuses.
//!
//! `fast-fn [PORT [KEEP_ALIVE_SECS]]`: listens on `0.0.0.0:PORT` (8080). Each answer says
//! in `X-Connection-Requests` how many requests its connection has carried, and, as Node
//! does, `Keep-Alive: timeout=KEEP_ALIVE_SECS` (5; 0 leaves the header out). It never
//! closes an idle connection itself.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

/// The largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// What answers say in `Keep-Alive` (empty: nothing).
static KEEP_ALIVE: OnceLock<String> = OnceLock::new();

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port = args.next().unwrap_or_else(|| "8080".into());
    let secs: u64 = args.next().map_or(Ok(5), |s| s.parse()).map_err(|e| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("KEEP_ALIVE_SECS: {e}"))
    })?;
    let header = if secs == 0 {
        String::new()
    } else {
        format!("Keep-Alive: timeout={secs}\r\n")
    };
    KEEP_ALIVE.get_or_init(|| header);
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

/// Appends the answer to the `nth` request of a connection.
fn ok(out: &mut Vec<u8>, nth: u64, head: &Head) {
    let connection = if head.close {
        "Connection: close\r\n"
    } else {
        KEEP_ALIVE.get().map_or("", String::as_str)
    };
    // A HEAD answer says the length of the body it does not carry.
    let body = if head.head_only { "" } else { "ok\n" };
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n{connection}X-Connection-Requests: {nth}\r\n\r\n{body}"
    );
    out.extend_from_slice(answer.as_bytes());
}

/// What one request head says.
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
    // The request whose body is still being read (answered once it is whole), and how
    // many of its body bytes are still to come.
    let mut pending: Option<Head> = None;
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
            if let Some(head) = pending.take() {
                served += 1;
                ok(&mut out, served, &head);
                if head.close {
                    return close(stream, &out);
                }
            }
            match parse(&buf[start..filled]) {
                Ok(Some(head)) => {
                    start += head.len;
                    skip = head.body;
                    pending = Some(head);
                }
                Ok(None) => break,
                Err(()) => {
                    out.extend_from_slice(
                        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    return close(stream, &out);
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
            return close(stream, b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    }
}

/// Sends `last` and closes gracefully: the write side first, then whatever the client
/// still sends is read and dropped (a close with unread bytes would reset the
/// connection and could destroy the answer).
fn close(mut stream: TcpStream, last: &[u8]) -> io::Result<()> {
    stream.write_all(last)?;
    stream.shutdown(Shutdown::Write)?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut sink = [0u8; 4096];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
    Ok(())
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
    let (mut body, mut close, mut keep) = (0, false, false);
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(())?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            body = value.parse().map_err(|_| ())?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(());
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                close |= token.eq_ignore_ascii_case("close");
                keep |= token.eq_ignore_ascii_case("keep-alive");
            }
        }
    }
    Ok(Some(Head {
        len: end + 4,
        body,
        close: close || (http10 && !keep),
        head_only: request.starts_with("HEAD "),
    }))
}

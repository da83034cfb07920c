//! The readiness check: is a container's function answering on its loopback port?
//!
//! It lives in the runtime because what "answering" means depends on how the runtime
//! publishes ports: [`super::Runtime::probe`] uses it by default, and the in-memory
//! runtime answers from its model instead.
//!
//! Docker's userland proxy accepts connections on a published port even before the
//! process inside listens, then closes them. A bare connect therefore proves nothing:
//! the TCP probe also waits briefly for the proxy to hang up. The HTTP probe sends a GET
//! and wants a status below 400.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::api::Probe;

/// How long one probe may take to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// How long the TCP probe waits to see whether the proxy hangs up.
const HANGUP_WINDOW: Duration = Duration::from_millis(50);
/// How long an HTTP probe may take in all.
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

/// Probes `127.0.0.1:port` once; true when the function answers.
pub async fn probe_once(probe: &Probe, port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match probe {
        Probe::Tcp => tcp(addr).await,
        Probe::Http { path } => tokio::time::timeout(HTTP_TIMEOUT, http(addr, path))
            .await
            .unwrap_or(false),
    }
}

async fn tcp(addr: SocketAddr) -> bool {
    let Ok(Ok(mut stream)) = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await
    else {
        return false;
    };
    let mut buf = [0u8; 1];
    match tokio::time::timeout(HANGUP_WINDOW, stream.read(&mut buf)).await {
        // The proxy hung up: nothing listens behind it yet.
        Ok(Ok(0)) | Ok(Err(_)) => false,
        // The server spoke first, or waits for a request: it is there.
        Ok(Ok(_)) | Err(_) => true,
    }
}

async fn http(addr: SocketAddr, path: &str) -> bool {
    let Ok(Ok(stream)) = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await
    else {
        return false;
    };
    let io = hyper_util::rt::TokioIo::new(stream);
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io).await
    else {
        return false;
    };
    let driver = tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, format!("127.0.0.1:{}", addr.port()))
        .header("user-agent", "invok-probe")
        .body(Empty::new());
    let ok = match req {
        Ok(req) => {
            matches!(sender.send_request(req).await, Ok(resp) if resp.status().as_u16() < 400)
        }
        Err(_) => false,
    };
    driver.abort();
    ok
}

/// The most of an answer [`get_text`] reads: a metrics page is a few kB.
pub const MAX_TEXT: usize = 1024 * 1024;

/// GETs `path` from `127.0.0.1:port` within `timeout`: the answer's body as text when
/// the status is 2xx and the body fits [`MAX_TEXT`], else `None` (a custom-metrics
/// scrape; see [`crate::scraper`]).
pub async fn get_text(port: u16, path: &str, timeout: Duration) -> Option<String> {
    tokio::time::timeout(
        timeout,
        get(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), path),
    )
    .await
    .ok()
    .flatten()
}

async fn get(addr: SocketAddr, path: &str) -> Option<String> {
    use http_body_util::{BodyExt, Limited};
    let stream = TcpStream::connect(addr).await.ok()?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io)
        .await
        .ok()?;
    // Aborted when this future ends (answered or timed out).
    let driver = AbortOnDrop(tokio::spawn(conn));
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, format!("127.0.0.1:{}", addr.port()))
        .header("user-agent", "invok-scraper")
        .header(hyper::header::ACCEPT, "text/plain")
        .body(Empty::new())
        .ok()?;
    let resp = sender.send_request(req).await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let body = Limited::new(resp.into_body(), MAX_TEXT)
        .collect()
        .await
        .ok()?;
    drop(driver);
    String::from_utf8(body.to_bytes().to_vec()).ok()
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn tcp_probe_passes_on_a_listening_server_and_fails_on_a_closed_port() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                // Hold the connection open like a server waiting for a request.
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    drop(s);
                });
            }
        });
        assert!(probe_once(&Probe::Tcp, port).await);
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        assert!(!probe_once(&Probe::Tcp, closed_port).await);
    }

    #[tokio::test]
    async fn tcp_probe_fails_when_a_proxy_accepts_and_hangs_up() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                drop(s);
            }
        });
        assert!(!probe_once(&Probe::Tcp, port).await);
    }

    #[tokio::test]
    async fn http_probe_wants_a_status_below_400() {
        for (status, want) in [
            ("200 OK", true),
            ("302 Found", true),
            ("503 Service Unavailable", false),
        ] {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = l.local_addr().unwrap().port();
            let line = status.to_string();
            tokio::spawn(async move {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let resp = format!("HTTP/1.1 {line}\r\ncontent-length: 0\r\n\r\n");
                s.write_all(resp.as_bytes()).await.unwrap();
            });
            let probe = Probe::Http {
                path: "/healthz".into(),
            };
            assert_eq!(probe_once(&probe, port).await, want, "{status}");
        }
    }
}

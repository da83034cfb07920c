//! Serving HTTP/1.1 for the gateway and the admin API: an accept loop over hyper with
//! the limits a server facing unknown clients needs.
//!
//! axum's own `serve` has no header read timeout, so a client that sends its headers
//! one byte a minute (slowloris) would hold a connection and its task for as long as it
//! likes. Here hyper cuts it off after `header_read_timeout`, which also closes a
//! kept-alive connection idle that long. A failed `accept` (out of file descriptors
//! under a flood) pauses accepting briefly instead of spinning, and the connections
//! already open go on. On shutdown the listener closes first, then open connections
//! finish their requests (the caller bounds how long that may take).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tower_service::Service;

/// The address of the client a request came from, in the request's extensions.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// Limits on what a client may hold.
#[derive(Clone, Copy, Debug)]
pub struct ServeLimits {
    /// A client must send a request's headers within this (and a kept-alive connection
    /// idle this long is closed).
    pub header_read_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_read_timeout: Duration::from_secs(30),
        }
    }
}

/// How long accepting pauses after `accept` failed (out of file descriptors).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Serves `router` on `listener` until `shutdown` resolves, then waits for the open
/// connections to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!("accept failed: {e}");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Without TCP_NODELAY a response written in two parts (head, then body) waits
        // for the client's delayed ACK: ~40 ms at p99.
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ClientAddr(peer));
            let mut router = router.clone();
            async move {
                let response = match router.call(req.map(Body::new)).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                Ok::<_, Infallible>(response)
            }
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(client = %peer, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

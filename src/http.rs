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
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::Notify;
use tower_service::Service;

/// The address of the client a request came from, in the request's extensions.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// Closes the connection a request came on, in the request's extensions.
///
/// hyper polls a response body only while the client takes what was written, so a
/// deadline inside the body never fires for a client that stopped reading; whoever
/// holds this can end the connection from outside (its socket closes, the response
/// body is dropped, and everything it held is released).
#[derive(Clone, Debug, Default)]
pub struct Closer(Arc<Notify>);

impl Closer {
    /// Ends the connection now (also if it is not being waited on yet).
    pub fn close(&self) {
        self.0.notify_one();
    }
}

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

/// The most a connection buffers of what a client sent and the handler has not taken
/// (request heads included): hyper's default is ~400 KiB per connection, which a flood
/// of connections that each send a large head would multiply.
pub const MAX_CONNECTION_BUFFER: usize = 64 << 10;

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
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_CONNECTION_BUFFER);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // At most one line per pause: a flood cannot flood the log.
                    tracing::warn!("accepting a connection failed (pausing {ACCEPT_ERROR_PAUSE:?}): {e}");
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
        let closer = Closer::default();
        let close = closer.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ClientAddr(peer));
            req.extensions_mut().insert(close.clone());
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
            tokio::select! {
                ended = conn => if let Err(e) = ended {
                    tracing::debug!(client = %peer, "connection ended: {e}");
                },
                () = closer.0.notified() => {
                    tracing::debug!(client = %peer, "connection closed by its handler");
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

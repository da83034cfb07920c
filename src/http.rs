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

/// Closes the connection a request came on, in the request's extensions; at once
/// ([`Closer::close`]) or when a response's deadline passes ([`Closer::arm`]).
///
/// hyper polls a response body only while the client takes what was written, so a
/// deadline inside the body never fires for a client that stopped reading (nor for one
/// whose earlier pipelined answers fill the connection's buffer, so that a new body is
/// not polled at all); whoever holds this can end the connection from outside (its
/// socket closes, the response body is dropped, and everything it held is released).
///
/// The connection's own task keeps the deadline, so a response costs no task or timer
/// of its own: the task wakes at the deadline of the response in progress when it
/// armed one, looks at the one armed now (a later response's, usually), and sleeps on.
/// Arming wakes it only when the new deadline is sooner than its next wake.
#[derive(Clone, Debug, Default)]
pub struct Closer(Arc<CloserInner>);

#[derive(Debug, Default)]
struct CloserInner {
    close: Notify,
    rearm: Notify,
    state: std::sync::Mutex<Armed>,
}

#[derive(Debug, Default)]
struct Armed {
    /// Counts arms, so that a response disarms only its own deadline.
    generation: u64,
    deadline: Option<tokio::time::Instant>,
    /// When the connection's task wakes next to look (`None`: not until told).
    wakes_at: Option<tokio::time::Instant>,
}

/// What [`Closer::arm`] gives back, for [`Closer::disarm`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArmedGeneration(u64);

impl Closer {
    /// Ends the connection now (also if it is not being waited on yet).
    pub fn close(&self) {
        self.0.close.notify_one();
    }

    /// Ends the connection at `deadline` unless disarmed before: a response in progress.
    pub fn arm(&self, deadline: tokio::time::Instant) -> ArmedGeneration {
        let (generation, sooner) = {
            let mut a = self.state();
            a.generation += 1;
            a.deadline = Some(deadline);
            (a.generation, a.wakes_at.is_none_or(|w| deadline < w))
        };
        if sooner {
            self.0.rearm.notify_one();
        }
        ArmedGeneration(generation)
    }

    /// The response armed as `armed` is done in time.
    pub fn disarm(&self, armed: ArmedGeneration) {
        let mut a = self.state();
        if a.generation == armed.0 {
            a.deadline = None;
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Armed> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// For the connection's task: the armed deadline, now also when it wakes next.
    fn schedule(&self) -> Option<tokio::time::Instant> {
        let mut a = self.state();
        a.wakes_at = a.deadline;
        a.deadline
    }

    /// For the connection's task: whether the armed deadline has passed.
    fn expired(&self) -> bool {
        self.state()
            .deadline
            .is_some_and(|d| d <= tokio::time::Instant::now())
    }

    /// Until the connection should end: closed, or an armed deadline passed.
    async fn ended(&self) {
        loop {
            let wake = self.schedule();
            let at_deadline = async {
                match wake {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.0.close.notified() => return,
                () = self.0.rearm.notified() => {}
                () = at_deadline => if self.expired() {
                    tracing::warn!("an answer still going at the pool's timeout: connection closed");
                    return;
                },
            }
        }
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
                () = closer.ended() => {
                    tracing::debug!(client = %peer, "connection closed by its handler");
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    const SECOND: Duration = Duration::from_secs(1);

    /// Whether `closer.ended()` resolves within `within` (on tokio's paused clock).
    async fn ends_within(closer: &Closer, within: Duration) -> bool {
        tokio::time::timeout(within, closer.ended()).await.is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn an_armed_deadline_ends_the_connection_when_it_passes_and_not_before() {
        let closer = Closer::default();
        closer.arm(Instant::now() + 5 * SECOND);
        assert!(
            !ends_within(&closer, 4 * SECOND).await,
            "ended before its deadline"
        );
        assert!(
            ends_within(&closer, 2 * SECOND).await,
            "not ended at its deadline"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_disarmed_deadline_ends_nothing_but_a_later_armed_one_does() {
        let closer = Closer::default();
        // One response done in time, the next one armed later, with a later deadline:
        // the connection's task wakes at the first, finds the second, sleeps on.
        let first = closer.arm(Instant::now() + 2 * SECOND);
        let waiting = tokio::spawn({
            let closer = closer.clone();
            async move {
                let started = Instant::now();
                closer.ended().await;
                started.elapsed()
            }
        });
        tokio::time::sleep(SECOND).await;
        closer.disarm(first);
        let second = closer.arm(Instant::now() + 3 * SECOND);
        // An older response's disarm does not undo the newer one's deadline.
        closer.disarm(first);
        let took = waiting.await.unwrap();
        assert_eq!(
            took.as_secs(),
            4,
            "ended at the second deadline, took {took:?}"
        );
        closer.disarm(second);
        assert!(
            !ends_within(&closer, 60 * SECOND).await,
            "nothing armed: never ends"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_sooner_deadline_wakes_a_connection_waiting_on_a_later_one() {
        let closer = Closer::default();
        let late = closer.arm(Instant::now() + 60 * SECOND);
        let waiting = tokio::spawn({
            let closer = closer.clone();
            async move { closer.ended().await }
        });
        tokio::time::sleep(SECOND).await;
        closer.disarm(late);
        closer.arm(Instant::now() + 2 * SECOND);
        tokio::time::timeout(3 * SECOND, waiting)
            .await
            .expect("the sooner deadline was not seen")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn close_ends_the_connection_at_once_also_before_anyone_waits() {
        let closer = Closer::default();
        closer.close();
        assert!(ends_within(&closer, Duration::from_millis(1)).await);
    }
}

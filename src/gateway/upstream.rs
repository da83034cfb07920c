//! The gateway's HTTP client towards containers, and when it keeps connections alive.
//!
//! A kept-alive connection saves a loopback connect per request, and through Docker's
//! userland proxy a second one behind it. Its risk is the race every HTTP/1.1 client
//! knows: a server may close an idle connection just as a request goes out on it
//! (busybox httpd closes after every CGI answer without saying so). Such a request fails
//! before any answer, and whether the function saw it is unknown: it could not be sent
//! again, since the gateway resends only what provably never reached a container. So
//! the gateway keeps a connection to a container only when its function said how long
//! it keeps idle connections open (`Keep-Alive: timeout=N`, as Node and Apache say) and
//! N is at least [`IDLE_TIMEOUT`] + [`MARGIN`]; it reuses one only within
//! [`IDLE_TIMEOUT`] of idleness, and retires it ([`KeptConnection`]) when its answer did
//! not say so, or was still streaming when the server's clock (which may start when the
//! answer's head was written) could run out before the gateway's: undici, Node's HTTP
//! client, likewise subtracts a margin from the server's hint. A function that does not
//! say gets a new connection per request, which fails only on a refusal (provably
//! unsent: resent elsewhere) or a real fault of the container (a 502, never a replay).
//!
//! Left: connections are pooled per `127.0.0.1:port`. A container removed and another
//! given the same host port within the idle second could, without Docker's userland
//! proxy (whose exit closes the connection), be sent a request on the old container's
//! connection; Docker allocates host ports in sequence, so a port comes back only after
//! the whole range has been used.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName};
use hyper_util::client::legacy::connect::{capture_connection, CaptureConnection, HttpConnector};
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;

/// How long an idle connection to a container is kept.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(1);
/// Time allowed for the server's idle clock and the gateway's to disagree (the server's
/// starts when it wrote its answer, before the gateway has read it).
pub const MARGIN: Duration = Duration::from_secs(1);
/// Idle connections kept per container (beyond them, a connection closes after use).
pub const MAX_IDLE_PER_CONTAINER: usize = 32;

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// The clients the gateway sends requests to containers with.
pub struct Upstream {
    /// A new connection per request.
    fresh: Client<HttpConnector, Body>,
    /// Kept-alive connections, for containers that said how long they keep them.
    kept: Client<HttpConnector, Body>,
}

impl Upstream {
    /// Clients that give up connecting after `connect_timeout`.
    pub fn new(connect_timeout: Duration) -> Upstream {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        Upstream {
            fresh: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build(connector.clone()),
            kept: Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(IDLE_TIMEOUT)
                .pool_max_idle_per_host(MAX_IDLE_PER_CONTAINER)
                .build(connector),
        }
    }

    /// Sends `req` to a container whose function last said it keeps idle connections
    /// `keep_alive` long: on a kept-alive connection when that is long enough (then with
    /// a handle on that connection, to stop its reuse), else on a new one.
    pub fn send(
        &self,
        mut req: hyper::Request<Body>,
        keep_alive: Duration,
    ) -> (ResponseFuture, Option<CaptureConnection>) {
        if keep_alive >= IDLE_TIMEOUT + MARGIN {
            let capture = capture_connection(&mut req);
            (self.kept.request(req), Some(capture))
        } else {
            (self.fresh.request(req), None)
        }
    }
}

/// A kept-alive connection an answer is streaming on, and until when it may go back
/// into reuse: its server said (on this answer) how long it keeps an idle connection,
/// and its idle clock may have started as soon as the answer's head was written. If
/// the answer is still streaming then (a slow client), the connection is never reused.
pub struct KeptConnection {
    capture: CaptureConnection,
    /// When an answer still streaming makes the connection too old to reuse.
    pub reusable_until: Instant,
}

impl KeptConnection {
    /// For an answer whose head arrived at `head_at` on the connection `capture` saw,
    /// with the server's word `said` (see [`advertised_keep_alive`]). `None`, and the
    /// connection is never reused, when the server said too little (or nothing: a
    /// function whose earlier answers said enough may stop saying so).
    pub fn judge(capture: CaptureConnection, said: Duration, head_at: Instant) -> Option<Self> {
        match said.checked_sub(IDLE_TIMEOUT + MARGIN) {
            Some(left) => Some(KeptConnection {
                capture,
                reusable_until: head_at + left,
            }),
            None => {
                poison(&capture);
                None
            }
        }
    }

    /// Takes the connection out of reuse (it closes once this answer is done).
    pub fn retire(&self) {
        poison(&self.capture);
    }
}

fn poison(capture: &CaptureConnection) {
    if let Some(c) = capture.connection_metadata().as_ref() {
        c.poison();
    }
}

/// How long an answer's `Keep-Alive: timeout=N[, max=M]` header says its server keeps an
/// idle connection; zero when it does not say, or says `Connection: close`.
pub fn advertised_keep_alive(headers: &HeaderMap) -> Duration {
    let closes = headers
        .get_all(axum::http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("close"));
    if closes {
        return Duration::ZERO;
    }
    headers
        .get_all(&KEEP_ALIVE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("timeout"))
        .and_then(|(_, v)| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::forwarding::tests::headers;

    #[test]
    fn a_connection_is_reusable_only_within_what_the_server_said_less_the_margins() {
        let head_at = Instant::now();
        let capture = || capture_connection(&mut hyper::Request::new(()));
        for said in [0, 1, 1999] {
            let said = Duration::from_millis(said);
            assert!(
                KeptConnection::judge(capture(), said, head_at).is_none(),
                "{said:?}"
            );
        }
        let kept = KeptConnection::judge(capture(), Duration::from_secs(5), head_at).unwrap();
        assert_eq!(kept.reusable_until, head_at + Duration::from_secs(3));
        let kept = KeptConnection::judge(capture(), Duration::from_secs(2), head_at).unwrap();
        assert_eq!(kept.reusable_until, head_at);
    }

    #[test]
    fn the_keep_alive_timeout_is_read_from_the_answer() {
        let secs = |pairs: &[(&str, &str)]| advertised_keep_alive(&headers(pairs)).as_secs();
        assert_eq!(secs(&[("keep-alive", "timeout=5")]), 5);
        assert_eq!(secs(&[("Keep-Alive", "max=100, Timeout = 15")]), 15);
        assert_eq!(
            secs(&[("keep-alive", "timeout=5"), ("connection", "keep-alive")]),
            5
        );
        // Not said, said badly, or contradicted: no reuse.
        assert_eq!(secs(&[]), 0);
        assert_eq!(secs(&[("connection", "keep-alive")]), 0);
        assert_eq!(secs(&[("keep-alive", "timeout=soon")]), 0);
        assert_eq!(secs(&[("keep-alive", "timeout=-1")]), 0);
        assert_eq!(secs(&[("keep-alive", "max=5")]), 0);
        assert_eq!(
            secs(&[
                ("keep-alive", "timeout=5"),
                ("connection", "Upgrade, close")
            ]),
            0
        );
    }
}

//! The gateway: `ANY /function/{name}[/{rest}]` goes to the least-loaded ready container.
//!
//! Clients call a function, not a container. The pick is in memory (see
//! [`crate::store::ObservedStore::pick`]): ready and not overloaded first, fewest
//! requests in flight, then lowest CPU. In-flight counts are kept here and live in the
//! observed store, where the scaler reads them (`targetConcurrency`) and a container
//! being removed is drained by them (no new requests; stopped once they are done).
//!
//! A pool with no ready container (scale from zero, or all replaced) asks the controller
//! for capacity at once and holds the request until a container is ready or the
//! cold-start deadline passes (503). The gateway never waits on the reconcile loop: it
//! only reads the store and sends triggers.
//!
//! What a client can count on:
//!
//! | answer | when |
//! |---|---|
//! | the function's | it answered within the pool's `timeout` |
//! | 400 | the client's body broke off (the client's fault: the container is not probed) |
//! | 404 | no pool of that name |
//! | 408 | the client's body did not arrive within the pool's `timeout` |
//! | 413 | the body is over `--max-body` (declared or, chunked, as it arrives) |
//! | 502 | the container failed on the way (it is probed; the request is not resent) |
//! | 503 + `Retry-After` | more than `--max-in-flight` requests are held |
//! | 503 | no container became ready within `--cold-start-timeout` |
//! | 504 | the function did not answer within the pool's `timeout` |
//!
//! Errors carry a JSON body `{"error": ...}`. A request is sent again (to another ready
//! container) only when it provably never reached one: the connection was refused.
//! Connections to a container are kept alive only when its function says how long it
//! keeps them (`Keep-Alive: timeout=N`; see `upstream.rs`), so that none closes under a
//! request that could then not be sent again.

mod body;
mod forwarding;
mod upstream;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use self::body::{Guarded, Held, InFlight, Upload};
pub use self::forwarding::{strip_hop_by_hop, target, upstream_headers, Target};
pub use self::upstream::IDLE_TIMEOUT as UPSTREAM_IDLE_TIMEOUT;
use self::upstream::{KeptConnection, Upstream};
use crate::controller::Shared;
use crate::http::{ClientAddr, Closer, ServeLimits};
use crate::runtime::Runtime;
use crate::store::Route;

/// The response header naming the container that answered.
pub const CONTAINER_HEADER: &str = "x-invok-container";

/// Seconds a client is told to wait (`Retry-After`) when the gateway is full.
pub const RETRY_AFTER_SECS: u32 = 1;

/// Gateway settings.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Largest request body accepted (413 above).
    pub max_body: usize,
    /// How long a request waits for a ready container before a 503.
    pub cold_start_timeout: Duration,
    /// How long to wait for a connection to a container.
    pub connect_timeout: Duration,
    /// Requests held at once (waiting, forwarded or streaming their answer); beyond
    /// it a request gets a 503 with `Retry-After` at once.
    pub max_in_flight: usize,
    /// Limits on clients' connections.
    pub limits: ServeLimits,
}

/// Envoy's default for a cluster's concurrent requests (its circuit breaker).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            max_body: 10 << 20,
            cold_start_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(1),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            limits: ServeLimits::default(),
        }
    }
}

struct Gateway<R> {
    shared: Arc<Shared<R>>,
    config: GatewayConfig,
    upstream: Upstream,
    held: Arc<Semaphore>,
}

/// The gateway's routes over the controller's shared state.
///
/// Serve it with [`serve`] (or [`crate::http::serve`]): that puts a
/// [`crate::http::Closer`] in each request, which ends a client's connection when an
/// answer it stopped reading outlives the pool's timeout. Served otherwise, such an
/// answer holds its place under `--max-in-flight` until the client goes away.
pub fn router<R: Runtime>(shared: Arc<Shared<R>>, config: GatewayConfig) -> Router {
    let gw = Arc::new(Gateway {
        shared,
        upstream: Upstream::new(config.connect_timeout),
        held: Arc::new(Semaphore::new(config.max_in_flight)),
        config,
    });
    Router::new().fallback(handle::<R>).with_state(gw)
}

/// Serves the gateway on `listener` until `shutdown` resolves.
pub async fn serve<R: Runtime>(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared<R>>,
    config: GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = config.limits;
    crate::http::serve(listener, router(shared, config), limits, shutdown).await
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(json!({ "error": message.into() }))).into_response()
}

/// Counts a request waiting for a ready container until dropped (also when the client
/// goes away mid-wait).
struct Waiting<'a, R> {
    shared: &'a Shared<R>,
    pool: &'a str,
}

impl<R> Drop for Waiting<'_, R> {
    fn drop(&mut self) {
        self.shared.add_waiting(self.pool, -1);
    }
}

/// Waits for a ready container of `pool` (asking for one if there is none) and takes it.
async fn acquire<R: Runtime>(gw: &Gateway<R>, pool: &str) -> Option<Route> {
    let store = &gw.shared.store;
    // Counted once, on arrival (waiting or not): the pool's request rate.
    gw.shared.arrivals.note(pool);
    let deadline = after(gw.config.cold_start_timeout);
    let mut waiting: Option<Waiting<'_, R>> = None;
    loop {
        let notified = store.ready_changed();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(route) = gw.shared.pick(pool, None) {
            return Some(route);
        }
        if waiting.is_none() {
            gw.shared.add_waiting(pool, 1);
            waiting = Some(Waiting {
                shared: &gw.shared,
                pool,
            });
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(deadline) => return None,
            // Readiness can also change without a notification (a relist); look again.
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

async fn handle<R: Runtime>(State(gw): State<Arc<Gateway<R>>>, req: Request) -> Response {
    let started = Instant::now();
    let uri = req.uri().clone();
    let Some(target) = target(uri.path(), uri.query()) else {
        return error(
            StatusCode::NOT_FOUND,
            "not found: call /function/{name}[/{path}]",
        );
    };
    let response = forward(&gw, &target, req).await;
    let elapsed = started.elapsed();
    let pool = target.pool;
    tracing::debug!(pool, status = response.status().as_u16(), elapsed = ?elapsed, "gateway request");
    // Undeclared names share one series, so random URLs cannot grow the metrics.
    let label = if gw.shared.desired().pools.contains_key(pool) {
        pool
    } else {
        crate::metrics::UNKNOWN_POOL
    };
    gw.shared
        .metrics
        .observe_gateway(label, response.status().as_u16(), elapsed.as_secs_f64());
    response
}

/// The pool's request timeout, if the pool is declared.
fn pool_timeout<R>(gw: &Gateway<R>, pool: &str) -> Option<Duration> {
    gw.shared.desired().pools.get(pool).map(|p| p.spec.timeout)
}

async fn forward<R: Runtime>(gw: &Gateway<R>, target: &Target<'_>, req: Request) -> Response {
    let pool = target.pool;
    let Some(timeout) = pool_timeout(gw, pool) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("function {pool:?} not found"),
        );
    };
    let Ok(permit) = gw.held.clone().try_acquire_owned() else {
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the gateway holds its limit of {} requests; retry later",
                gw.config.max_in_flight
            ),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        return r;
    };
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > gw.config.max_body as u64) {
        return too_large(format!(
            "request body of {n} bytes exceeds the limit of {} bytes",
            gw.config.max_body
        ));
    }
    // The pool's timeout bounds the whole request: a client sending its body slowly
    // holds its place no longer than a slow function does.
    // hyper sends no chunked body with these methods: read it whole, to send it with
    // its length, rather than lose it.
    let whole = if matches!(parts.method, Method::GET | Method::HEAD | Method::CONNECT) {
        gw.config.max_body
    } else {
        body::SMALL_CHUNKED
    };
    let upload = match Upload::read(body, gw.config.max_body, whole, after(timeout)).await {
        Ok(upload) => upload,
        Err(e) => return error(e.status(), body_failed(e, gw, timeout)),
    };
    let client = parts.extensions.get::<ClientAddr>().map(|c| c.0.ip());
    let closer = parts.extensions.get::<Closer>().cloned();
    let headers = upstream_headers(parts.headers, pool, client);
    let mut avoid: Option<String> = None;
    loop {
        let route = match pick_route(gw, pool, avoid.as_deref()).await {
            Ok(route) => route,
            Err(response) => return response,
        };
        let in_flight = InFlight(route.in_flight.clone());
        let keep_alive = Duration::from_millis(route.keep_alive_ms.load(Ordering::Relaxed));
        let uri: Uri =
            match format!("http://127.0.0.1:{}{}", route.port, target.path_and_query).parse() {
                Ok(u) => u,
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad request path: {e}")),
            };
        let deadline = after(timeout);
        let mut upstream = hyper::Request::new(upload.attempt(deadline));
        *upstream.method_mut() = parts.method.clone();
        *upstream.uri_mut() = uri;
        *upstream.headers_mut() = headers.clone();
        let (sent, capture) = gw.upstream.send(upstream, keep_alive);
        let e = match tokio::time::timeout_at(deadline, sent).await {
            Ok(Ok(resp)) => {
                let (mut rparts, rbody) = resp.into_parts();
                let said = upstream::advertised_keep_alive(&rparts.headers);
                route.keep_alive_ms.store(
                    said.as_millis().try_into().unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                let kept = capture.and_then(|c| KeptConnection::judge(c, said, Instant::now()));
                strip_hop_by_hop(&mut rparts.headers);
                if let Ok(v) = HeaderValue::from_str(&route.name) {
                    rparts.headers.insert(CONTAINER_HEADER, v);
                }
                let held = Held::new(in_flight, permit);
                let body = Guarded::new(rbody, deadline, held, closer, kept);
                return Response::from_parts(rparts, Body::new(body));
            }
            Ok(Err(e)) => e,
            // The client's body stalled: its fault, not the function's.
            Err(_) if upload.stalled() || upload.failed().is_some() => {
                let failed = upload.failed().unwrap_or(body::UploadError::TimedOut);
                return error(failed.status(), body_failed(failed, gw, timeout));
            }
            Err(_) => {
                tracing::warn!(pool, container = %route.name, "no answer within the pool's timeout ({timeout:?})");
                return error(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "container {} of {pool:?} did not answer within the pool's timeout of {timeout:?}",
                        route.name
                    ),
                );
            }
        };
        drop(in_flight);
        if let Some(failed) = upload.failed() {
            // The client's doing (too much, too slow, broken off): the container is fine.
            tracing::debug!(pool, container = %route.name, "request body failed: {failed}");
            return error(failed.status(), body_failed(failed, gw, timeout));
        }
        if capture.is_some() && !e.is_connect() {
            // A kept-alive connection failed: the function does not keep its word (or
            // died). New connections for it until an answer says otherwise again.
            route.keep_alive_ms.store(0, Ordering::Relaxed);
        }
        gw.shared.report_unreachable(&route.id);
        if e.is_connect() && !upload.taken() && avoid.is_none() {
            // Refused (or no connection in time): nothing reached the container, so the
            // request may go to another one. The probe decides about this one.
            tracing::warn!(pool, container = %route.name, "cannot connect to container: {e}");
            avoid = Some(route.id);
            continue;
        }
        tracing::warn!(pool, container = %route.name, "request to container failed: {e}");
        return error(
            StatusCode::BAD_GATEWAY,
            format!("container {} of {pool:?} failed: {}", route.name, chain(&e)),
        );
    }
}

/// The container a request goes to: any ready one of `pool` (waiting for one if there is
/// none), or, for a resend after `avoid` refused the connection, another one now.
async fn pick_route<R: Runtime>(
    gw: &Gateway<R>,
    pool: &str,
    avoid: Option<&str>,
) -> Result<Route, Response> {
    match avoid {
        Some(failed) => gw.shared.pick(pool, Some(failed)).ok_or_else(|| {
            error(
                StatusCode::BAD_GATEWAY,
                format!("a container of {pool:?} refused the connection and no other is ready"),
            )
        }),
        None => acquire(gw, pool).await.ok_or_else(|| {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "no container of {pool:?} became ready within {:?}",
                    gw.config.cold_start_timeout
                ),
            )
        }),
    }
}

/// The instant `d` from now, or a year from now for a longer `d` (a timeout of
/// `100000h` is valid and must not overflow the clock).
fn after(d: Duration) -> Instant {
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    Instant::now() + d.min(YEAR)
}

fn too_large(message: String) -> Response {
    error(StatusCode::PAYLOAD_TOO_LARGE, message)
}

/// What a client is told when its body did not arrive whole.
fn body_failed<R>(e: body::UploadError, gw: &Gateway<R>, timeout: Duration) -> String {
    match e {
        body::UploadError::TooLarge(_) => format!(
            "request body exceeds the limit of {} bytes",
            gw.config.max_body
        ),
        body::UploadError::TimedOut => {
            format!("the request body did not arrive within the pool's timeout of {timeout:?}")
        }
        body::UploadError::Broken => e.to_string(),
    }
}

/// An error with its causes, `a: b: c`.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

//! The gateway: `ANY /function/{name}[/{rest}]` goes to the least-loaded ready container.
//!
//! Clients call a function, not a container. The pick is in memory (see
//! [`crate::controller::ObservedStore::pick`]): ready and not overloaded first, fewest
//! requests in flight, then lowest CPU. In-flight counts are kept here and live in the
//! observed store, where the scaler reads them (`targetConcurrency`).
//!
//! A pool with no ready container (scale from zero, or all replaced) asks the controller
//! for capacity at once and holds the request until a container is ready or the
//! cold-start deadline passes (503). A container that cannot be reached leaves routing
//! at once and is probed again; an idempotent request is retried once elsewhere, any
//! other gets a 502. The gateway never waits on the reconcile loop: it only reads the
//! store and sends triggers.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tokio::time::Instant;

use crate::controller::Shared;
use crate::runtime::Runtime;
use crate::store::Route;

/// Bodies up to this size are buffered (and can be replayed); larger ones stream.
const REPLAY_BUFFER: usize = 64 << 10;

/// The response header naming the container that answered.
pub const CONTAINER_HEADER: &str = "x-invok-container";

/// Gateway settings.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Largest request body accepted (413 above).
    pub max_body: usize,
    /// How long a request waits for a ready container before a 503.
    pub cold_start_timeout: Duration,
    /// How long to wait for a connection to a container.
    pub connect_timeout: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            max_body: 10 << 20,
            cold_start_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(1),
        }
    }
}

struct Gateway<R> {
    shared: Arc<Shared<R>>,
    config: GatewayConfig,
    /// Keeps connections alive between requests.
    pooled: Client<HttpConnector, Body>,
    /// A new connection per request, for containers whose server closes connections
    /// without saying so.
    fresh: Client<HttpConnector, Body>,
    /// Containers seen closing kept-alive connections.
    no_keepalive: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl<R> Gateway<R> {
    /// Another ready container of `pool` than `failed`, taken now (no waiting), with
    /// whether it needs fresh connections.
    fn other_than(&self, pool: &str, failed: &str) -> Option<(Route, bool)> {
        let route = self.shared.store.pick(pool, Some(failed))?;
        let fresh = self.closes_connections(&route.id);
        Some((route, fresh))
    }

    fn closes_connections(&self, id: &str) -> bool {
        self.no_keepalive
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(id)
    }

    fn mark_closes_connections(&self, id: &str) {
        let mut set = self.no_keepalive.lock().unwrap_or_else(|e| e.into_inner());
        // Ids of removed containers are not worth keeping forever.
        if set.len() > 10_000 {
            set.clear();
        }
        set.insert(id.to_string());
    }
}

/// The gateway's routes over the controller's shared state.
pub fn router<R: Runtime>(shared: Arc<Shared<R>>, config: GatewayConfig) -> Router {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(config.connect_timeout));
    connector.set_nodelay(true);
    let pooled = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build(connector.clone());
    let fresh = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector);
    let gw = Arc::new(Gateway {
        shared,
        config,
        pooled,
        fresh,
        no_keepalive: Default::default(),
    });
    Router::new()
        .route("/function/{name}", any(handle::<R>))
        .route("/function/{name}/", any(handle::<R>))
        .route("/function/{name}/{*rest}", any(handle::<R>))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "not found: call /function/{name}[/{path}]",
            )
        })
        .with_state(gw)
}

/// Serves the gateway on `listener` until `shutdown` resolves.
pub async fn serve<R: Runtime>(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared<R>>,
    config: GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Without TCP_NODELAY a response written in two parts (headers, then body) waits
    // for the client's delayed ACK: ~40 ms at p99.
    let listener = axum::serve::ListenerExt::tap_io(listener, |s| {
        let _ = s.set_nodelay(true);
    });
    axum::serve(listener, router(shared, config))
        .with_graceful_shutdown(shutdown)
        .await
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(json!({ "error": message.into() }))).into_response()
}

/// Headers that belong to one connection, not to the request (RFC 9110 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Counts a request in flight on a container until dropped (after the response body).
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
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

/// A response body that keeps its request counted in flight until it is done.
struct Guarded {
    inner: Incoming,
    _in_flight: InFlight,
}

impl hyper::body::Body for Guarded {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Waits for a ready container of `pool` (asking for one if there is none) and takes it.
async fn acquire<R: Runtime>(gw: &Gateway<R>, pool: &str, avoid: Option<&str>) -> Option<Route> {
    let store = &gw.shared.store;
    let deadline = Instant::now()
        .checked_add(gw.config.cold_start_timeout)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600));
    let mut waiting: Option<Waiting<'_, R>> = None;
    loop {
        let notified = store.ready_changed();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(route) = store.pick(pool, avoid) {
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

enum Outgoing {
    /// Buffered, so it can be sent twice.
    Buffered(Bytes),
    /// Streamed once.
    Stream(Option<Body>),
}

impl Outgoing {
    fn take(&mut self) -> Body {
        match self {
            Outgoing::Buffered(b) => Body::from(b.clone()),
            Outgoing::Stream(b) => b.take().unwrap_or_else(Body::empty),
        }
    }
}

async fn handle<R: Runtime>(
    State(gw): State<Arc<Gateway<R>>>,
    Path(params): Path<Vec<(String, String)>>,
    req: Request,
) -> Response {
    let pool = params
        .iter()
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let rest = params
        .iter()
        .find(|(k, _)| k == "rest")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let started = Instant::now();
    let response = forward(&gw, &pool, &rest, req).await;
    let elapsed = started.elapsed();
    tracing::debug!(pool = %pool, status = response.status().as_u16(), elapsed = ?elapsed, "gateway request");
    // Undeclared names share one series, so random URLs cannot grow the metrics.
    let label = if gw.shared.desired().pools.contains_key(&pool) {
        pool.as_str()
    } else {
        crate::metrics::UNKNOWN_POOL
    };
    gw.shared
        .metrics
        .observe_gateway(label, response.status().as_u16(), elapsed.as_secs_f64());
    response
}

async fn forward<R: Runtime>(gw: &Gateway<R>, pool: &str, rest: &str, req: Request) -> Response {
    if !gw.shared.desired().pools.contains_key(pool) {
        return error(
            StatusCode::NOT_FOUND,
            format!("function {pool:?} not found"),
        );
    }
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > gw.config.max_body) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body of {} bytes exceeds the limit of {} bytes",
                declared.unwrap_or(0),
                gw.config.max_body
            ),
        );
    }
    let idempotent = is_idempotent(&parts.method);
    let limited = http_body_util::Limited::new(body, gw.config.max_body);
    // Small bodies (and every idempotent request's) are buffered so that a request that
    // never reached a container can be sent again; large ones stream through once.
    let small = declared.is_some_and(|n| n <= REPLAY_BUFFER);
    let mut outgoing = if idempotent || small {
        match limited.collect().await {
            Ok(collected) => Outgoing::Buffered(collected.to_bytes()),
            Err(_) => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "request body exceeds the limit of {} bytes",
                        gw.config.max_body
                    ),
                )
            }
        }
    } else {
        Outgoing::Stream(Some(Body::new(limited)))
    };

    let mut headers = parts.headers.clone();
    strip_hop_by_hop(&mut headers);
    if let Some(host) = headers.remove(header::HOST) {
        headers.insert("x-forwarded-host", host);
    }
    headers.insert(
        "x-forwarded-prefix",
        HeaderValue::from_str(&format!("/function/{pool}"))
            .unwrap_or(HeaderValue::from_static("/function")),
    );
    let path_and_query = match parts.uri.query() {
        Some(q) => format!("/{rest}?{q}"),
        None => format!("/{rest}"),
    };

    // Attempt 1 waits for a ready container. A retry (at most one) goes to another
    // ready container after a connect failure, or to the same one over a fresh
    // connection after a stale pooled one.
    let mut retry: Option<(Route, bool)> = None;
    for attempt in 0..2 {
        let (route, fresh) = match retry.take() {
            Some(r) => r,
            None => match acquire(gw, pool, None).await {
                Some(route) => {
                    let fresh = gw.closes_connections(&route.id);
                    (route, fresh)
                }
                None => {
                    return error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "no container of {pool:?} became ready within {:?}",
                            gw.config.cold_start_timeout
                        ),
                    )
                }
            },
        };
        let in_flight = InFlight(route.in_flight.clone());
        let uri: Uri = match format!("http://127.0.0.1:{}{path_and_query}", route.port).parse() {
            Ok(u) => u,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad request path: {e}")),
        };
        let mut upstream = hyper::Request::new(outgoing.take());
        *upstream.method_mut() = parts.method.clone();
        *upstream.uri_mut() = uri;
        *upstream.headers_mut() = headers.clone();
        let client = if fresh { &gw.fresh } else { &gw.pooled };
        let e = match client.request(upstream).await {
            Ok(resp) => {
                let (mut rparts, rbody) = resp.into_parts();
                strip_hop_by_hop(&mut rparts.headers);
                if let Ok(v) = HeaderValue::from_str(&route.name) {
                    rparts.headers.insert(CONTAINER_HEADER, v);
                }
                let body = Body::new(Guarded {
                    inner: rbody,
                    _in_flight: in_flight,
                });
                return Response::from_parts(rparts, body);
            }
            Err(e) => e,
        };
        drop(in_flight);
        let replayable = matches!(outgoing, Outgoing::Buffered(_)) && attempt == 0;
        if e.is_connect() {
            // Nothing was sent: the container may not be there. Probe it (it leaves routing
            // after consecutive failures), and any request may go elsewhere.
            tracing::warn!(pool, container = %route.name, "cannot connect to container: {e}");
            gw.shared.report_unreachable(&route.id);
            if replayable {
                retry = gw.other_than(pool, &route.id);
                if retry.is_some() {
                    continue;
                }
            }
            return error(
                StatusCode::BAD_GATEWAY,
                format!(
                    "container {} of {pool:?} refused the connection and no other is ready",
                    route.name
                ),
            );
        }
        if !fresh && replayable {
            // A kept-alive connection that the server had already closed (HTTP/1.1
            // servers may close idle connections without saying so; busybox httpd
            // always does): the request never reached it. Send it again on a new
            // connection, and use new connections for this container from now on.
            tracing::debug!(pool, container = %route.name, "stale pooled connection ({e}); retrying on a fresh one");
            gw.mark_closes_connections(&route.id);
            // The guard above released this request's count; the retry counts it again.
            route.in_flight.fetch_add(1, Ordering::Relaxed);
            retry = Some((route, true));
            continue;
        }
        // A fresh connection that ends without an answer: the container died or its
        // server is broken. Probe it: out of routing once probes keep failing.
        tracing::warn!(pool, container = %route.name, "request to container failed: {e}");
        gw.shared.report_unreachable(&route.id);
        if idempotent && attempt == 0 {
            retry = gw.other_than(pool, &route.id);
            if retry.is_some() {
                continue;
            }
        }
        return error(
            StatusCode::BAD_GATEWAY,
            format!("container {} of {pool:?} failed: {e}", route.name),
        );
    }
    error(
        StatusCode::BAD_GATEWAY,
        format!("no container of {pool:?} could answer"),
    )
}

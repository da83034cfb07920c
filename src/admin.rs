//! The admin API: status for people and scripts, health for supervisors.
//!
//! `GET /` is the dashboard page; `GET /status` the seed's document;
//! `GET /api/v1/pools[/{name}]` the detailed reports; `GET /api/v1/history` the
//! dashboard's samples ([`crate::history`]); `GET /metrics` the Prometheus metrics
//! ([`crate::metrics`]); `GET /healthz`
//! says the process lives; `GET /readyz` says the manifests were read and Docker answers
//! (503 with the reason otherwise). Read-only: nothing here can change a pool.
//!
//! With an [`AdminToken`] (`invok run --admin-token`, required off loopback), every
//! endpoint but `/healthz`, `/readyz` (what supervisors and load balancers probe) and
//! the static page `/`
//! wants `Authorization: Bearer <token>`; anything else gets `401` with
//! `WWW-Authenticate: Bearer` and the usual `{"error": ...}` body. The token is kept as
//! its SHA-256 digest and compared in constant time; it is never logged nor printed.

use std::future::Future;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::controller::Shared;
use crate::runtime::Runtime;

/// The admin API's routes over the controller's shared state.
pub fn router<R: Runtime>(shared: Arc<Shared<R>>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz::<R>))
        .route("/status", get(status::<R>))
        .route("/api/v1/pools", get(pools::<R>))
        .route("/api/v1/pools/{name}", get(pool::<R>))
        .route("/metrics", get(metrics::<R>))
        .route("/", get(dashboard))
        .route("/api/v1/history", get(history::<R>))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(shared)
}

/// [`router`], with every endpoint but [`OPEN_PATHS`] behind `token` when there is one.
pub fn router_with_token<R: Runtime>(shared: Arc<Shared<R>>, token: Option<AdminToken>) -> Router {
    let router = router(shared);
    match token {
        Some(token) => router.layer(axum::middleware::from_fn_with_state(token, require_token)),
        None => router,
    }
}

/// Serves the admin API on `listener` until `shutdown` resolves, behind `token` when
/// there is one ([`router_with_token`]), with the same client limits as the gateway.
pub async fn serve<R: Runtime>(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared<R>>,
    token: Option<AdminToken>,
    limits: crate::http::ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::http::serve(listener, router_with_token(shared, token), limits, shutdown).await
}

/// The endpoints a token never guards: liveness and readiness, which supervisors and
/// load balancers probe without credentials, and the dashboard page, which a browser
/// loads without a header (its script sends the token); none says anything about the
/// pools.
pub const OPEN_PATHS: [&str; 3] = ["/healthz", "/readyz", "/"];

/// The bearer token the admin API requires (`invok run --admin-token`).
///
/// Only its SHA-256 digest is kept; a presented token is hashed and the two digests
/// compared in constant time, so neither the token nor how much of it a guess got right
/// leaks through timing. `Debug` prints no part of it.
///
/// ```
/// use invok::admin::AdminToken;
/// use axum::http::{header, HeaderMap};
///
/// let token = AdminToken::new("s3cret-t0ken").unwrap();
/// let mut headers = HeaderMap::new();
/// headers.insert(header::AUTHORIZATION, "Bearer s3cret-t0ken".parse().unwrap());
/// assert!(token.check(&headers).is_ok());
/// assert_eq!(format!("{token:?}"), "AdminToken(<redacted>)");
/// ```
#[derive(Clone)]
pub struct AdminToken {
    digest: [u8; 32],
}

/// Why a string cannot be an [`AdminToken`]. The messages never quote the token.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Empty, or only white space.
    #[error("the admin token is empty")]
    Empty,
    /// A character a client cannot send after `Bearer ` in an HTTP header.
    #[error(
        "the admin token may only hold visible ASCII characters (no spaces or control \
         characters); character {position} is not one"
    )]
    InvalidCharacter {
        /// 1-based position of the first offending character.
        position: usize,
    },
}

/// Why a request was refused ([`AdminToken::check`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// No `Authorization: Bearer ...` header.
    Missing,
    /// A bearer token that is not this one.
    Invalid,
}

impl AdminToken {
    /// A token from its text: visible ASCII (`!` to `~`), at least one character.
    pub fn new(token: &str) -> Result<AdminToken, TokenError> {
        if token.trim().is_empty() {
            return Err(TokenError::Empty);
        }
        if let Some(i) = token.chars().position(|c| !c.is_ascii_graphic()) {
            return Err(TokenError::InvalidCharacter { position: i + 1 });
        }
        Ok(AdminToken {
            digest: Sha256::digest(token.as_bytes()).into(),
        })
    }

    /// Whether `headers` carry `Authorization: Bearer <this token>` (the scheme in any
    /// case, as RFC 7235 has it).
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Denied> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(bearer)
            .ok_or(Denied::Missing)?;
        let digest: [u8; 32] = Sha256::digest(presented).into();
        // Every byte is compared whatever the earlier ones gave; black_box keeps the
        // optimizer from turning the fold into an early exit.
        let diff = digest
            .iter()
            .zip(self.digest.iter())
            .fold(0u8, |acc, (a, b)| std::hint::black_box(acc | (a ^ b)));
        if diff == 0 {
            Ok(())
        } else {
            Err(Denied::Invalid)
        }
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// The credentials of an `Authorization: Bearer <credentials>` value.
fn bearer(value: &HeaderValue) -> Option<&[u8]> {
    let v = value.as_bytes();
    let (scheme, rest) = v.split_at(v.iter().position(|b| *b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let credentials = rest.trim_ascii();
    (!credentials.is_empty()).then_some(credentials)
}

async fn require_token(State(token): State<AdminToken>, req: Request, next: Next) -> Response {
    if OPEN_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    match token.check(req.headers()) {
        Ok(()) => next.run(req).await,
        Err(denied) => unauthorized(denied),
    }
}

/// `401` with the challenge RFC 6750 asks for, and the admin API's JSON error.
fn unauthorized(denied: Denied) -> Response {
    let (challenge, message) = match denied {
        Denied::Missing => (
            r#"Bearer realm="invok""#,
            "this admin API requires a bearer token: send `Authorization: Bearer <token>` \
             with the operator's --admin-token (INVOK_ADMIN_TOKEN)",
        ),
        Denied::Invalid => (
            r#"Bearer realm="invok", error="invalid_token""#,
            "the bearer token is not this operator's --admin-token",
        ),
    };
    let mut resp = error(StatusCode::UNAUTHORIZED, message);
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    resp
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(json!({ "error": message.into() }))).into_response()
}

async fn readyz<R: Runtime>(State(shared): State<Arc<Shared<R>>>) -> Response {
    let synced = shared.desired().synced;
    let (docker_ok, docker_error) = shared.health.docker_status();
    if !synced {
        return error(StatusCode::SERVICE_UNAVAILABLE, "manifests not read yet");
    }
    if !docker_ok {
        let reason = docker_error.unwrap_or_else(|| "Docker not reached yet".into());
        return error(StatusCode::SERVICE_UNAVAILABLE, reason);
    }
    (StatusCode::OK, "ok\n").into_response()
}

async fn metrics<R: Runtime>(State(shared): State<Arc<Shared<R>>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = crate::metrics::Format::from_accept(accept);
    let body = shared.scrape_metrics(format);
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

async fn status<R: Runtime>(State(shared): State<Arc<Shared<R>>>) -> Response {
    Json(shared.runtime_status()).into_response()
}

async fn pools<R: Runtime>(State(shared): State<Arc<Shared<R>>>) -> Response {
    let reports: Vec<_> = shared
        .pool_names()
        .into_iter()
        .filter_map(|n| shared.pool_report(&n))
        .collect();
    let h = &shared.health;
    let operator = json!({
        "instance": shared.config.instance,
        "manifestsSynced": shared.desired().synced,
        "manifestErrors": shared.desired().errors,
        "manifestReads": h.manifest_reads.load(std::sync::atomic::Ordering::Relaxed),
        "relists": h.relists.load(std::sync::atomic::Ordering::Relaxed),
        "dockerReachable": h.docker_status().0,
    });
    Json(json!({ "pools": reports, "operator": operator })).into_response()
}

/// The dashboard page (`GET /`): static, embedded, fetching nothing from elsewhere. It
/// holds no data of its own; its script reads `/api/v1/history` and `/api/v1/pools`
/// (with the admin token from the page's `#token=` fragment when one is set).
async fn dashboard() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("dashboard.html"),
    )
        .into_response()
}

/// Every pool's samples over the dashboard's window, oldest first.
async fn history<R: Runtime>(State(shared): State<Arc<Shared<R>>>) -> Response {
    let h = shared.history.lock().unwrap_or_else(|e| e.into_inner());
    Json(json!({
        "windowSeconds": crate::history::WINDOW.as_secs(),
        "sampleEverySeconds": crate::history::SAMPLE_EVERY.as_secs(),
        "pools": h.pools(),
    }))
    .into_response()
}

async fn pool<R: Runtime>(
    State(shared): State<Arc<Shared<R>>>,
    Path(name): Path<String>,
) -> Response {
    match shared.pool_report(&name) {
        Some(r) => Json(r).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("pool {name:?} not found")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::{Config, Controller};
    use crate::runtime::memory::MemoryRuntime;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const TOKEN: &str = "s3cret-t0ken";

    fn headers(authorization: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = authorization {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn only_the_exact_token_under_the_bearer_scheme_is_accepted() {
        let token = AdminToken::new(TOKEN).unwrap();
        let check = |a: Option<&str>| token.check(&headers(a));
        assert_eq!(check(Some("Bearer s3cret-t0ken")), Ok(()));
        assert_eq!(
            check(Some("bearer s3cret-t0ken")),
            Ok(()),
            "the scheme is case-insensitive"
        );
        assert_eq!(check(Some("BEARER   s3cret-t0ken ")), Ok(()));
        assert_eq!(check(None), Err(Denied::Missing));
        assert_eq!(check(Some("Bearer")), Err(Denied::Missing));
        assert_eq!(check(Some("Bearer ")), Err(Denied::Missing));
        assert_eq!(check(Some("Basic czNjcmV0LXQwa2Vu")), Err(Denied::Missing));
        assert_eq!(check(Some("s3cret-t0ken")), Err(Denied::Missing));
        for wrong in [
            "S3cret-t0ken",
            "s3cret-t0ke",
            "s3cret-t0ken2",
            "x",
            "s3cret t0ken",
        ] {
            assert_eq!(
                check(Some(&format!("Bearer {wrong}"))),
                Err(Denied::Invalid),
                "{wrong}"
            );
        }
    }

    #[test]
    fn a_token_must_be_sendable_and_its_errors_never_quote_it() {
        assert_eq!(AdminToken::new("").unwrap_err(), TokenError::Empty);
        assert_eq!(AdminToken::new("  \t").unwrap_err(), TokenError::Empty);
        for (bad, position) in [("abc def", 4), ("tök", 2), ("ab\ncd", 3)] {
            let err = AdminToken::new(bad).unwrap_err();
            assert_eq!(err, TokenError::InvalidCharacter { position });
            assert!(!err.to_string().contains(bad), "{err}");
        }
        let token = AdminToken::new(TOKEN).unwrap();
        assert!(!format!("{token:?}").contains(TOKEN));
    }

    /// `GET path` on loopback: (status, head, body).
    async fn get(port: u16, path: &str, authorization: Option<&str>) -> (u16, String, String) {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let auth = authorization
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).await.unwrap();
        let (head, body) = resp.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head.to_string(), body.to_string())
    }

    /// Serves the admin API of an idle operator on the in-memory runtime, on a loopback
    /// port; returns the port.
    async fn serve_on_loopback(token: Option<AdminToken>) -> u16 {
        let mut config = Config::new("/nonexistent", "admin-tests");
        config.watch_manifests = false;
        let shared = Controller::new(MemoryRuntime::new(&[]), config).shared();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(serve(
            listener,
            shared,
            token,
            crate::http::ServeLimits::default(),
            std::future::pending(),
        ));
        port
    }

    #[tokio::test]
    async fn with_a_token_every_endpoint_but_health_and_readiness_wants_it() {
        let port = serve_on_loopback(Some(AdminToken::new(TOKEN).unwrap())).await;
        let good = Some("Bearer s3cret-t0ken");
        for path in [
            "/status",
            "/api/v1/pools",
            "/api/v1/pools/web",
            "/metrics",
            "/nope",
        ] {
            let (code, head, body) = get(port, path, None).await;
            assert_eq!(code, 401, "{path}");
            assert!(
                head.to_ascii_lowercase()
                    .contains("www-authenticate: bearer realm=\"invok\"\r"),
                "{path}: {head}"
            );
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert!(
                v["error"].as_str().unwrap().contains("bearer token"),
                "{body}"
            );
            let (code, head, _) = get(port, path, Some("Bearer wrong")).await;
            assert_eq!(code, 401, "{path}");
            assert!(head.contains("error=\"invalid_token\""), "{head}");
            let (code, _, body) = get(port, path, good).await;
            let expected = if path.ends_with("/web") || path == "/nope" {
                404
            } else {
                200
            };
            assert_eq!(code, expected, "{path}: {body}");
        }
        assert_eq!(get(port, "/healthz", None).await.0, 200);
        // Not ready (no manifests read), but answered without a token.
        assert_eq!(get(port, "/readyz", None).await.0, 503);
    }

    #[tokio::test]
    async fn without_a_token_everything_is_open_as_before() {
        let port = serve_on_loopback(None).await;
        assert_eq!(get(port, "/status", None).await.0, 200);
        assert_eq!(get(port, "/status", Some("Bearer anything")).await.0, 200);
    }
}

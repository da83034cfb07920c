//! The admin API: status for people and scripts, health for supervisors.
//!
//! `GET /status` is the seed's document; `GET /api/v1/pools[/{name}]` the detailed
//! reports; `GET /metrics` the Prometheus metrics ([`crate::metrics`]); `GET /healthz`
//! says the process lives; `GET /readyz` says the manifests were read and Docker answers
//! (503 with the reason otherwise). Read-only: nothing here can change a pool.

use std::future::Future;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

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
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(shared)
}

/// Serves the admin API on `listener` until `shutdown` resolves.
pub async fn serve<R: Runtime>(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared<R>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = crate::http::ServeLimits::default();
    crate::http::serve(listener, router(shared), limits, shutdown).await
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

async fn pool<R: Runtime>(
    State(shared): State<Arc<Shared<R>>>,
    Path(name): Path<String>,
) -> Response {
    match shared.pool_report(&name) {
        Some(r) => Json(r).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("pool {name:?} not found")),
    }
}

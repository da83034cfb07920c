//! The gateway's own cost per request, against direct access in the same run.
//!
//! In process, no Docker: a small HTTP/1.1 function server on loopback (answers `ok`
//! to a GET and echoes a POST body), and the real gateway (`gateway::router` served by
//! `http::serve`, as `invok run` serves it) routing one pool to it through the real
//! store and pick. Sequential requests from one client:
//!
//! - `direct/new-conn`: straight to the function, a new connection per request (what
//!   the gateway does towards a container, so no request is lost on a connection the
//!   server is closing);
//! - `direct/keep-alive`: straight to the function on one kept-alive connection;
//! - `gateway`: through the gateway, the client's connection to it kept alive.
//!
//! for `GET` and for a 64 KiB `POST` echoed back. The gateway's cost is its time minus
//! `direct/new-conn`'s (the same upstream work), and its ratio to either direct case is
//! what hardening must not worsen.
//!
//! `cargo bench --bench gateway` (add `-- --quick` for a faster, rougher run).
#![allow(
    clippy::disallowed_types,
    reason = "a benchmark on the wall clock; criterion measures real time"
)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use invok::controller::{Config, Controller};
use invok::gateway::GatewayConfig;
use invok::http::ServeLimits;
use invok::runtime::memory::MemoryRuntime;
use invok::runtime::{ContainerInfo, RunState};
use tokio::runtime::Runtime;

const POOL: &str = "bench";
const IMAGE: &str = "invok/demo-fn:latest";
const POST_BYTES: usize = 64 << 10;

/// Serves `router` on a loopback port; the server runs until the process ends.
async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(invok::http::serve(
        listener,
        router,
        ServeLimits::default(),
        std::future::pending(),
    ));
    addr
}

/// The function: `ok` to a GET, the body back to a POST.
fn function() -> Router {
    Router::new().route(
        "/",
        get(|| async { "ok\n" }).post(|body: axum::body::Bytes| async move { body }),
    )
}

/// A gateway whose one pool has one ready container: the function at `upstream`.
async fn gateway(upstream: SocketAddr) -> SocketAddr {
    let manifest = format!("apiVersion: invok.dev/v1alpha1\nkind: FunctionPool\nmetadata:\n  name: {POOL}\nspec:\n  image: {IMAGE}\n  scaling:\n    minContainers: 1\n    maxContainers: 1\n");
    let loaded = invok::manifest::load_str(Path::new("bench.yaml"), &manifest, &Default::default())
        .pools
        .remove(POOL)
        .expect("a valid manifest");
    let controller = Controller::new(
        MemoryRuntime::new(&[IMAGE]),
        Config::new("/nonexistent", "bench"),
    );
    let shared = controller.shared();
    let hash = loaded.spec.spec_hash.clone();
    shared.declare_pool(loaded.manifest, loaded.spec);
    let id = format!("{:064x}", 1);
    shared.store.apply_list(
        vec![ContainerInfo {
            id: id.clone(),
            name: format!("invok-{POOL}-bench"),
            pool: POOL.to_string(),
            spec_hash: hash,
            state: RunState::Running,
            host_port: Some(upstream.port()),
            created: SystemTime::now(),
            image: IMAGE.to_string(),
            labels: Default::default(),
            pinned: false,
        }],
        tokio::time::Instant::now(),
    );
    assert!(shared.store.mark_ready(&id));
    serve(invok::gateway::router(shared, GatewayConfig::default())).await
}

type HttpClient = Client<HttpConnector, Body>;

fn client(keep_alive: bool) -> HttpClient {
    let mut b = Client::builder(TokioExecutor::new());
    if !keep_alive {
        b.pool_max_idle_per_host(0);
    }
    b.build(HttpConnector::new())
}

/// One request; panics unless it is a 200 with the expected body length.
async fn call(client: &HttpClient, url: &str, body: Option<&bytes::Bytes>) {
    let req = match body {
        Some(b) => hyper::Request::post(url).body(Body::from(b.clone())),
        None => hyper::Request::get(url).body(Body::empty()),
    }
    .unwrap();
    let resp = client.request(req).await.expect("an answer");
    assert_eq!(resp.status(), 200);
    let got = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(got.len(), body.map_or(3, |b| b.len()));
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (function, gw) = rt.block_on(async {
        let function = serve(function()).await;
        (function, gateway(function).await)
    });
    let direct = format!("http://{function}/");
    let through = format!("http://{gw}/function/{POOL}/");
    let payload = bytes::Bytes::from(vec![b'x'; POST_BYTES]);
    let cases: [(&str, &str, bool); 3] = [
        ("direct/new-conn", &direct, false),
        ("direct/keep-alive", &direct, true),
        ("gateway", &through, true),
    ];
    for (method, body) in [("GET", None), ("POST 64KiB", Some(&payload))] {
        let mut group = c.benchmark_group(method);
        group.measurement_time(Duration::from_secs(5));
        for (name, url, keep_alive) in cases {
            let client = client(keep_alive);
            // Warm: the first request opens connections and checks the answer.
            rt.block_on(call(&client, url, body));
            group.bench_function(name, |b| b.iter(|| run(&rt, &client, url, body)));
        }
        group.finish();
    }
}

fn run(rt: &Runtime, client: &HttpClient, url: &str, body: Option<&bytes::Bytes>) {
    rt.block_on(call(client, url, body));
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! The gateway's HTTP client towards containers: a new connection per request.
//!
//! Reusing a kept-alive connection would save a loopback connect (tens of µs), but a
//! server may close an idle connection just as a request goes out on it (busybox httpd
//! closes after every CGI answer without saying so, measured at under a millisecond
//! after the answer; Node closes after 5 s idle). Such a request may or may not have
//! reached the function, so it could not be sent again: a 502 for nothing. A fresh
//! connection fails only on a refusal (provably unsent: resent elsewhere) or a real
//! fault of the container.

use std::time::Duration;

use axum::body::Body;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The client the gateway sends every request to a container with.
pub type Upstream = Client<HttpConnector, Body>;

/// A client that gives up connecting after `connect_timeout` and keeps no connection
/// idle.
pub fn client(connect_timeout: Duration) -> Upstream {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector)
}

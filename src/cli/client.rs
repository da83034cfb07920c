//! A small client of the admin API, for the commands that talk to a running operator
//! (`get`, `describe`, `apply --wait`, `delete --wait`), and what they ask of the
//! reports it reads (the library's own types, read back from the server's JSON).
//!
//! Blocking on purpose: each command makes a handful of GETs, so the client owns a
//! current-thread runtime and hides it. Every failure to reach the server becomes one
//! line that names the address tried and what to do; so does a `401` from an operator
//! whose admin API wants a token (`--token`, `INVOK_ADMIN_TOKEN`).

use std::ops::Deref;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use invok::controller::report::{self, ContainerReport};
use invok::controller::status::Condition;
use invok::scaler::Phase;
use serde::{Deserialize, Serialize};

/// Connecting to a loopback admin API is instant; a slow one is most likely wrong.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A whole request, body included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// `--server` and `--token`, shared by every command that talks to the operator.
#[derive(clap::Args, Clone)]
pub struct ServerArgs {
    /// The operator's admin API (`invok run --admin-listen`).
    #[arg(
        long,
        env = "INVOK_SERVER",
        default_value = "http://127.0.0.1:8081",
        value_name = "URL"
    )]
    pub server: String,
    /// The bearer token the operator's admin API requires (`invok run --admin-token`).
    /// Prefer INVOK_ADMIN_TOKEN to the flag: a flag shows in `ps`.
    #[arg(
        long,
        env = "INVOK_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
}

/// A connection to one operator's admin API.
pub struct Client {
    base: String,
    /// `Bearer <token>`, marked sensitive (kept out of hyper's debug output).
    authorization: Option<http::HeaderValue>,
    rt: tokio::runtime::Runtime,
    http: hyper_util::client::legacy::Client<HttpConnector, Empty<Bytes>>,
}

impl Client {
    /// A client for `server.server` (`http://HOST:PORT[/PREFIX]`, or `HOST:PORT`) that
    /// sends `server.token`, if any.
    pub fn new(server: &ServerArgs) -> anyhow::Result<Client> {
        let base = normalize(&server.server)?;
        let authorization = server.token.as_deref().map(authorization).transpose()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1)
            .build(connector);
        Ok(Client {
            base,
            authorization,
            rt,
            http,
        })
    }

    /// The server's base URL, as requests use it.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path`: the status code and body.
    pub fn get(&self, path: &str) -> anyhow::Result<(u16, Bytes)> {
        let url = format!("{}{path}", self.base);
        let uri: http::Uri = url.parse().with_context(|| format!("invalid URL {url}"))?;
        let mut req = http::Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .context("building the request")?;
        if let Some(auth) = &self.authorization {
            req.headers_mut()
                .insert(http::header::AUTHORIZATION, auth.clone());
        }
        let unreachable = |cause: String| {
            anyhow!(
                "cannot reach the Invok admin API at {}: {cause}; is `invok run` running? \
                 Point --server (or INVOK_SERVER) at its --admin-listen address",
                self.base
            )
        };
        let (status, body) = self.rt.block_on(async {
            let sent = tokio::time::timeout(REQUEST_TIMEOUT, async {
                let resp = self.http.request(req).await?;
                let status = resp.status().as_u16();
                let body = resp.into_body().collect().await?.to_bytes();
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body))
            })
            .await;
            match sent {
                Err(_) => Err(unreachable(format!(
                    "no answer within {}s",
                    REQUEST_TIMEOUT.as_secs()
                ))),
                Ok(Err(e)) => Err(unreachable(root_cause(e.as_ref()))),
                Ok(Ok(r)) => Ok(r),
            }
        })?;
        if status == 401 {
            bail!("{}", self.unauthorized());
        }
        Ok((status, body))
    }

    /// What a `401` means here: no token sent, or not the operator's.
    fn unauthorized(&self) -> String {
        match self.authorization {
            None => format!(
                "the Invok admin API at {} requires a token (HTTP 401): set INVOK_ADMIN_TOKEN \
                 (or pass --token) to the operator's --admin-token",
                self.base
            ),
            Some(_) => format!(
                "the Invok admin API at {} refused the token (HTTP 401): INVOK_ADMIN_TOKEN \
                 (or --token) must be the operator's --admin-token",
                self.base
            ),
        }
    }

    /// `GET path` as JSON; `None` when the server answers 404.
    pub fn get_json(&self, path: &str) -> anyhow::Result<Option<serde_json::Value>> {
        let (status, body) = self.get(path)?;
        if status == 404 {
            return Ok(None);
        }
        if status != 200 {
            bail!(
                "GET {}{path}: HTTP {status}: {}",
                self.base,
                String::from_utf8_lossy(&body).trim()
            );
        }
        serde_json::from_slice(&body)
            .map(Some)
            .with_context(|| format!("GET {}{path}: the answer is not JSON", self.base))
    }

    /// Every pool's report, as the server sent them.
    pub fn pools(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let v = self.get_json("/api/v1/pools")?.ok_or_else(|| {
            anyhow!(
                "{} has no /api/v1/pools: is it an Invok admin API?",
                self.base
            )
        })?;
        match v.get("pools") {
            Some(serde_json::Value::Array(a)) => Ok(a.clone()),
            _ => bail!(
                "{}/api/v1/pools: unexpected answer (no \"pools\" list)",
                self.base
            ),
        }
    }

    /// One pool's report, as the server sent it; `None` when the operator does not know it.
    pub fn pool(&self, name: &str) -> anyhow::Result<Option<serde_json::Value>> {
        self.get_json(&format!("/api/v1/pools/{name}"))
    }
}

fn normalize(server: &str) -> anyhow::Result<String> {
    let s = server.trim().trim_end_matches('/');
    if s.is_empty() {
        bail!("--server is empty: give the admin API's address, e.g. http://127.0.0.1:8081");
    }
    if s.starts_with("https://") {
        bail!("--server {server}: https is not supported; the admin API speaks plain HTTP (keep it on loopback)");
    }
    let url = if s.contains("://") {
        s.to_string()
    } else {
        format!("http://{s}")
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|e| anyhow!("--server {server}: not a URL ({e}); expected http://HOST:PORT"))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        bail!("--server {server}: expected http://HOST:PORT");
    }
    Ok(url)
}

/// The `Authorization` value for `token`, refused (without quoting it) when a header
/// cannot carry it.
fn authorization(token: &str) -> anyhow::Result<http::HeaderValue> {
    let token = token.trim();
    if token.is_empty() {
        bail!("--token (INVOK_ADMIN_TOKEN) is empty");
    }
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        bail!(
            "--token (INVOK_ADMIN_TOKEN) may only hold visible ASCII characters, as the \
             operator's --admin-token"
        );
    }
    let mut value = http::HeaderValue::from_str(&format!("Bearer {token}"))
        .context("--token (INVOK_ADMIN_TOKEN) cannot be sent in a header")?;
    value.set_sensitive(true);
    Ok(value)
}

/// The innermost cause of an error: "Connection refused (os error 111)" rather than
/// "client error (Connect)".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    let text = cur.to_string();
    if text.is_empty() {
        e.to_string()
    } else {
        text
    }
}

/// A pool report (`GET /api/v1/pools/{name}`): the library's own
/// [`report::PoolReport`], read back from the server's JSON, with what the commands
/// ask of it (kubectl's STATUS word, an age: the command line's questions, so they live
/// here rather than in the library). It dereferences to the report, so fields read as
/// the library names them. Unknown fields are ignored, so a newer operator does not
/// break an older command line; which fields an older operator may leave out, the
/// library's types say.
#[derive(Clone, Debug)]
pub struct PoolReport(report::PoolReport);

impl Deref for PoolReport {
    type Target = report::PoolReport;

    fn deref(&self) -> &report::PoolReport {
        &self.0
    }
}

impl From<report::PoolReport> for PoolReport {
    fn from(r: report::PoolReport) -> PoolReport {
        PoolReport(r)
    }
}

impl PoolReport {
    /// Parses a report the server sent.
    pub fn from_json(v: &serde_json::Value) -> anyhow::Result<PoolReport> {
        report::PoolReport::deserialize(v)
            .map(PoolReport)
            .context("unexpected pool report from the server")
    }

    /// The condition of this type, if reported.
    pub fn condition(&self, kind: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }

    /// Containers that are not being removed.
    pub fn live_containers(&self) -> impl Iterator<Item = &ContainerReport> {
        self.containers
            .iter()
            .filter(|c| c.phase != Phase::Draining)
    }

    /// Live containers made from another spec than the one in force (a rollout's rest).
    pub fn outdated(&self) -> usize {
        let Some(spec) = &self.spec else { return 0 };
        self.live_containers()
            .filter(|c| c.phase != Phase::Failed && c.spec_hash != spec.spec_hash)
            .count()
    }

    /// One word for the pool, as kubectl's STATUS column: the Degraded reason when
    /// degraded, else the Progressing reason while progressing, else Ready or NotReady.
    pub fn status_word(&self) -> String {
        if self.spec.is_none() {
            return if self.manifest_error.is_some() {
                "InvalidSpec".into()
            } else {
                "Terminating".into()
            };
        }
        let is = |kind: &str| self.condition(kind).is_some_and(|c| c.status == "True");
        if is("Degraded") {
            return self
                .condition("Degraded")
                .map(|c| c.reason.clone())
                .unwrap_or_default();
        }
        if is("Progressing") {
            return self
                .condition("Progressing")
                .map(|c| c.reason.clone())
                .unwrap_or_default();
        }
        if self.conditions.is_empty() {
            return "Pending".into();
        }
        if is("Ready") {
            "Ready".into()
        } else {
            "NotReady".into()
        }
    }

    /// Seconds since the pool was first seen: its `PoolCreated` event or its oldest
    /// container, whichever is older (both restart with the operator).
    pub fn age_seconds(&self, now: u64) -> Option<u64> {
        let created = self
            .events
            .iter()
            .find(|e| e.reason == "PoolCreated")
            .map(|e| now.saturating_sub(e.time));
        let oldest = self.containers.iter().map(|c| c.age_seconds).max();
        created.into_iter().chain(oldest).max()
    }
}

/// The word the admin API sends for `value` (`cpu`, `draining`, `exited`,
/// `Overloaded`), which is what the commands print for it.
pub fn word<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(e) => format!("<{e}>"),
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An age as kubectl prints it: `45s`, `3m12s`, `25m`, `5h`, `3d`.
pub fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Bytes in binary units: `812Ki`, `12.5Mi`, `1.2Gi`.
pub fn bytes(n: u64) -> String {
    const UNITS: [(&str, f64); 3] = [("Gi", 1073741824.0), ("Mi", 1048576.0), ("Ki", 1024.0)];
    for (unit, size) in UNITS {
        let v = n as f64 / size;
        if v >= 1.0 {
            let text = if v >= 100.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            };
            return format!("{}{unit}", text.trim_end_matches(".0"));
        }
    }
    n.to_string()
}

/// A CPU fraction as a percentage: `0.253` -> `25%`.
pub fn percent(f: f64) -> String {
    format!("{:.0}%", f * 100.0)
}

/// Columns padded to their widest cell, separated by three spaces (as kubectl prints).
pub fn table(rows: &[Vec<String>]) -> String {
    let widths = widths(rows, &[]);
    rows.iter().map(|r| format_row(r, &widths)).collect()
}

/// The width of each column: its widest cell, and at least `at_least` (to keep a
/// watched table aligned with what was printed before).
pub fn widths(rows: &[Vec<String>], at_least: &[usize]) -> Vec<usize> {
    let cols = rows
        .iter()
        .map(Vec::len)
        .max()
        .unwrap_or(0)
        .max(at_least.len());
    (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .chain(at_least.get(i).copied())
                .max()
                .unwrap_or(0)
        })
        .collect()
}

/// One table line, padded to `widths`.
pub fn format_row(row: &[String], widths: &[usize]) -> String {
    let mut line = String::new();
    for (i, cell) in row.iter().enumerate() {
        if i + 1 == row.len() {
            line.push_str(cell);
        } else {
            let w = widths.get(i).copied().unwrap_or(0);
            line.push_str(&format!("{cell:<w$}   "));
        }
    }
    let mut line = line.trim_end().to_string();
    line.push('\n');
    line
}

/// Reports as a running operator serves them, built from the library's own types and
/// serialized as the admin API does: the input of the printing tests.
#[cfg(test)]
pub(crate) mod fixture {
    use invok::api::{FunctionPool, ScalingDefaults};
    use invok::controller::report::{ContainerReport, PoolReport, PoolSummary};
    use invok::controller::status::{PoolStatus, ScaleEvent};
    use invok::runtime::RunState;
    use invok::scaler::{LoadState, Phase, Reason};

    /// The clock the fixtures' times are relative to.
    pub const NOW: u64 = 1_800_000_000;

    const MANIFEST: &str = "\
apiVersion: invok.dev/v1alpha1
kind: FunctionPool
metadata: {name: web}
spec:
  image: invok/demo-fn:latest
  command: [/bin/sh, -c, serve]
  env: [{name: GREETING, value: hi}, {name: MODE, value: fast}]
  port: 9090
  network: invok-network
  resources: {cpus: 0.5, memory: 256Mi}
  scaling:
    minContainers: 1
    maxContainers: 5
    cpuOverloadThreshold: 0.7
    memoryOverloadThreshold: 300M
    cooldownCpuThreshold: 0.1
    cooldownDuration: 1m30s
    pollInterval: 500ms
    targetConcurrency: 4
  readiness: {path: /healthz}
  timeout: 45s
";

    fn container(name: &str, phase: Phase, hash: &str) -> ContainerReport {
        ContainerReport {
            name: name.into(),
            id: format!("{name}-id"),
            state: RunState::Running,
            phase,
            ready: phase == Phase::Ready,
            status: None,
            cpu: None,
            rss: None,
            in_flight: 0,
            age_seconds: 40,
            host_port: None,
            spec_hash: hash.into(),
        }
    }

    /// The library's report of a pool with every section filled: a ready, a starting, a
    /// failed and a draining container, conditions, a scale event and events.
    pub fn full() -> PoolReport {
        let pool: FunctionPool = serde_yaml::from_str(MANIFEST).unwrap();
        let mut spec = pool.validate(&ScalingDefaults::default()).unwrap();
        // Fixed, so the printed text does not move when the template gains a field.
        spec.spec_hash = "d30f29dcb5e99689".into();
        let hash = spec.spec_hash.clone();
        let mut status = PoolStatus::default();
        status.set_conditions(
            (false, "NotEnoughReady", "1 of 2 ready".into()),
            (true, "ContainersStarting", "1 starting".into()),
            (false, "AsExpected", String::new()),
        );
        status.event("Normal", "PoolCreated", "pool web created");
        status.event("Normal", "ScaledUp", "replicas 1 -> 2 (Cpu)");
        status.event("Warning", "ContainerFailed", "web-3 exited 1");
        for (e, ago) in status.events.iter_mut().zip([700, 65, 3]) {
            e.time = NOW - ago;
        }
        let ready = ContainerReport {
            status: Some(LoadState::Overloaded),
            cpu: Some(0.853),
            rss: Some(13_000_000),
            in_flight: 2,
            age_seconds: 200,
            host_port: Some(32768),
            ..container("web-1", Phase::Ready, &hash)
        };
        let starting = ContainerReport {
            state: RunState::Created,
            host_port: Some(32769),
            ..container("web-2", Phase::Starting, &hash)
        };
        let failed = ContainerReport {
            state: RunState::Exited,
            ..container("web-3", Phase::Failed, "0ld")
        };
        let draining = ContainerReport {
            cpu: Some(0.05),
            rss: Some(2_000_000),
            ..container("web-0", Phase::Draining, "0ld")
        };
        PoolReport {
            name: "web".into(),
            source: Some("manifests/web.yaml".into()),
            spec: Some(spec),
            summary: PoolSummary {
                function_name: "web".into(),
                container_count: 3,
                healthy_containers: 0,
                overloaded_containers: 1,
                idle_containers: 0,
                ready_containers: 1,
                starting_containers: 1,
                desired_containers: 2,
                manifest_error: None,
            },
            desired_reason: Some(Reason::Cpu),
            manifest_error: None,
            last_error: Some("creating a container: no such image".into()),
            containers: vec![draining, ready, starting, failed],
            conditions: status.conditions,
            observed_spec_hashes: vec!["0ld".into(), hash],
            last_scale: Some(ScaleEvent {
                time: NOW - 65,
                direction: "up".into(),
                reason: Reason::Cpu,
                from: 1,
                to: 2,
            }),
            reconciles: 17,
            quiet: false,
            events: status.events.into_iter().collect(),
            signals: Default::default(),
            cost: Default::default(),
        }
    }

    /// A pool whose manifest turned invalid before any spec was in force.
    pub fn invalid() -> PoolReport {
        let mut r = full();
        r.spec = None;
        r.containers.clear();
        r.conditions.clear();
        r.events.clear();
        r.last_scale = None;
        r.desired_reason = None;
        r.last_error = None;
        r.manifest_error = Some("web.yaml:9:5: spec.scaling: min > max".into());
        r.summary.manifest_error = r.manifest_error.clone();
        r
    }

    /// `report` as the admin API serves it.
    pub fn served(report: &PoolReport) -> serde_json::Value {
        serde_json::to_value(report).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_without_a_scheme_is_http_and_https_is_refused() {
        assert_eq!(
            normalize("127.0.0.1:9081").unwrap(),
            "http://127.0.0.1:9081"
        );
        assert_eq!(
            normalize("http://localhost:8081/").unwrap(),
            "http://localhost:8081"
        );
        assert!(normalize("https://x:1")
            .unwrap_err()
            .to_string()
            .contains("https"));
        assert!(normalize("").is_err());
    }

    #[test]
    fn sizes_and_ages_read_like_kubectl() {
        assert_eq!(bytes(512), "512");
        assert_eq!(bytes(2048), "2Ki");
        assert_eq!(bytes(12_582_912), "12Mi");
        assert_eq!(bytes(13_000_000), "12.4Mi");
        assert_eq!(age(59), "59s");
        assert_eq!(age(200), "3m20s");
        assert_eq!(age(7200), "120m");
        assert_eq!(age(4 * 86400), "4d");
        assert_eq!(percent(0.253), "25%");
    }

    #[test]
    fn tables_align_columns() {
        let t = table(&[
            vec!["NAME".into(), "READY".into()],
            vec!["hello-world".into(), "1/1".into()],
        ]);
        assert_eq!(t, "NAME          READY\nhello-world   1/1\n");
    }
}

//! The admin API of a running operator on real Docker: `/metrics` parses strictly and
//! carries every family with the right labels, `/status` has the seed's shape, and
//! `/readyz` answers 200 once converged.
//!
//! When `INVOK_METRICS_SNAPSHOT` names a file, the scraped text is written there, so
//! `scripts/test.sh` can run `promtool check metrics` on what a real operator serves.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::*;

const T: Duration = Duration::from_secs(30);

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// One family: its `# TYPE` and its samples.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    samples: Vec<Sample>,
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

/// `{a="x",b="y"}` -> labels, and the rest of the line.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = s.strip_prefix('{').ok_or("expected {")?;
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let (name, r) = rest.split_once("=\"").ok_or("expected name=\"")?;
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = r.char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    c => return Err(format!("bad escape \\{c}")),
                },
                (_, c) => value.push(c),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        rest = &r[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|e| format!("bad value {s:?}: {e}")),
    }
}

/// A strict parser of the Prometheus text format (0.0.4) as Invok writes it: HELP then
/// TYPE before each family's samples, samples only of the family just declared, no
/// series twice, histograms cumulative with a +Inf bucket equal to their count.
fn parse(text: &str) -> Result<BTreeMap<String, Family>, String> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut helped: Option<String> = None;
    let mut current: Option<String> = None;
    let mut seen = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest
                .split_once(' ')
                .ok_or_else(|| at("HELP without text".into()))?;
            if !is_metric_name(name) || help.trim().is_empty() {
                return Err(at("bad HELP".into()));
            }
            helped = Some(name.to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| at("TYPE without type".into()))?;
            if helped.as_deref() != Some(name) {
                return Err(at("TYPE without HELP just before".into()));
            }
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(at(format!("unknown type {kind}")));
            }
            if families.contains_key(name) {
                return Err(at("family declared twice".into()));
            }
            families.insert(
                name.to_string(),
                Family {
                    kind: kind.into(),
                    samples: vec![],
                },
            );
            current = Some(name.to_string());
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            return Err(at("unexpected comment or blank line".into()));
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(at("bad metric name".into()));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(at)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let mut parts = rest.split_whitespace();
        let value = parse_value(parts.next().ok_or_else(|| at("no value".into()))?).map_err(at)?;
        if parts.next().is_some_and(|ts| ts.parse::<i64>().is_err()) {
            return Err(at("bad timestamp".into()));
        }
        let fam_name = current
            .clone()
            .ok_or_else(|| at("sample before any TYPE".into()))?;
        let fam = families.get_mut(&fam_name).unwrap();
        let belongs = name == fam_name
            || (fam.kind == "histogram"
                && [("_bucket", true), ("_sum", false), ("_count", false)]
                    .iter()
                    .any(|(suffix, le)| {
                        name.strip_suffix(suffix) == Some(fam_name.as_str())
                            && labels.contains_key("le") == *le
                    }));
        if !belongs {
            return Err(at(format!("sample outside its family {fam_name}")));
        }
        if !seen.insert(format!("{name}{labels:?}")) {
            return Err(at("series twice".into()));
        }
        fam.samples.push(Sample {
            name: name.into(),
            labels,
            value,
        });
    }
    for (name, fam) in &families {
        if fam.kind != "histogram" {
            continue;
        }
        let mut by_series: BTreeMap<Vec<(String, String)>, Vec<&Sample>> = BTreeMap::new();
        for s in &fam.samples {
            let key = s
                .labels
                .iter()
                .filter(|(k, _)| *k != "le")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            by_series.entry(key).or_default().push(s);
        }
        for (key, samples) in by_series {
            let buckets: Vec<f64> = samples
                .iter()
                .filter(|s| s.name.ends_with("_bucket"))
                .map(|s| s.value)
                .collect();
            let count = samples
                .iter()
                .find(|s| s.name.ends_with("_count"))
                .map(|s| s.value);
            let inf = samples
                .iter()
                .find(|s| s.labels.get("le").map(String::as_str) == Some("+Inf"))
                .map(|s| s.value);
            if !buckets.windows(2).all(|w| w[0] <= w[1]) || count.is_none() || inf != count {
                return Err(format!(
                    "histogram {name}{key:?} is not cumulative or lacks +Inf/count"
                ));
            }
        }
    }
    Ok(families)
}

fn scrape(op: &Operator) -> (String, BTreeMap<String, Family>) {
    let (code, text) = http_get(op.admin_port, "/metrics").expect("GET /metrics");
    assert_eq!(code, 200, "{text}");
    let families = parse(&text).unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{text}"));
    (text, families)
}

/// The value of the series of `family` whose labels include `labels`.
fn value(f: &BTreeMap<String, Family>, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    f.get(family)?
        .samples
        .iter()
        .find(|s| {
            s.name == family
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

fn label_names(f: &BTreeMap<String, Family>, family: &str) -> Vec<String> {
    let mut names: Vec<String> = f[family]
        .samples
        .iter()
        .flat_map(|s| s.labels.keys().cloned())
        .filter(|k| k != "le")
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn the_strict_parser_rejects_what_prometheus_would() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 2\n";
    assert!(parse(ok).is_ok());
    for bad in [
        "a_total 1\n",                               // no TYPE
        "# HELP a A.\n# TYPE a counter\nb 1\n",      // other family
        "# HELP a A.\n# TYPE a gauge\na{x=\"1} 1\n", // unterminated
        "# HELP a A.\n# TYPE a gauge\na 1\na 2\n",   // series twice
        "# HELP a A.\n# TYPE a gauge\na one\n",      // bad value
        "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 3\nh_sum 1\n", // +Inf != count
    ] {
        assert!(parse(bad).is_err(), "accepted {bad:?}");
    }
}

#[test]
fn metrics_status_and_readyz_describe_a_running_pool() {
    let op = Operator::start("metrics", &[("web.yaml", pool_yaml("web", 2, 4, ""))]);
    op.wait_converged("web", 2, T);

    // /readyz: manifests read and Docker reachable.
    let (code, body) = http_get(op.admin_port, "/readyz").unwrap();
    assert_eq!((code, body.trim()), (200, "ok"));

    // /status: the seed's shape.
    let status = op.get_json("/status");
    let top: Vec<&String> = status.as_object().unwrap().keys().collect();
    assert_eq!(top, ["pools", "runtime"], "{status}");
    assert_eq!(status["runtime"], "autoscaling");
    let web = &status["pools"]["web"];
    assert_eq!(web["function_name"], "web");
    assert_eq!(web["container_count"], 2);
    for key in [
        "healthy_containers",
        "overloaded_containers",
        "idle_containers",
    ] {
        assert!(web[key].is_u64(), "{key} in {web}");
    }
    let states: u64 = [
        "healthy_containers",
        "overloaded_containers",
        "idle_containers",
    ]
    .iter()
    .map(|k| web[*k].as_u64().unwrap())
    .sum();
    assert_eq!(
        states, 2,
        "every ready container has one of the seed's states: {web}"
    );

    // A scale event: raising min scales up for below_min.
    op.write("web.yaml", &pool_yaml("web", 3, 4, ""));
    op.wait_converged("web", 3, T);

    // One request through the gateway, so its families have series in the scrape
    // (scripts/test.sh checks the scrape with promtool, and the metrics monitoring/
    // queries against it).
    assert_eq!(http_get(op.gateway_port, "/function/web/").unwrap().0, 200);

    // CPU needs two samples: wait until every container has both figures.
    let names: Vec<String> = running(&op.instance, "web")
        .into_iter()
        .map(|c| c.name)
        .collect();
    eventually(T, "CPU and RSS of every container are exported", || {
        let (_, f) = scrape(&op);
        names.iter().all(|n| {
            value(
                &f,
                "invok_container_cpu_ratio",
                &[("pool", "web"), ("container", n)],
            )
            .is_some()
                && value(
                    &f,
                    "invok_container_memory_rss_bytes",
                    &[("pool", "web"), ("container", n)],
                )
                .is_some_and(|v| v > 0.0)
        })
    });

    let (text, f) = scrape(&op);
    if let Some(path) = std::env::var_os("INVOK_METRICS_SNAPSHOT") {
        std::fs::write(&path, &text).expect("writing INVOK_METRICS_SNAPSHOT");
    }
    for (family, kind, labels) in [
        ("invok_containers", "gauge", &["pool", "state"][..]),
        ("invok_container_cpu_ratio", "gauge", &["container", "pool"]),
        (
            "invok_container_memory_rss_bytes",
            "gauge",
            &["container", "pool"],
        ),
        ("invok_pool_desired_containers", "gauge", &["pool"]),
        ("invok_pool_current_containers", "gauge", &["pool"]),
        ("invok_pool_ready_containers", "gauge", &["pool"]),
        ("invok_pool_min_containers", "gauge", &["pool"]),
        ("invok_pool_max_containers", "gauge", &["pool"]),
        (
            "invok_scale_events_total",
            "counter",
            &["direction", "pool", "reason"],
        ),
        ("invok_reconcile_total", "counter", &["pool", "result"]),
        ("invok_reconcile_duration_seconds", "histogram", &[]),
        ("invok_reconcile_queue_depth", "gauge", &[]),
        ("invok_docker_api_errors_total", "counter", &["operation"]),
        ("invok_docker_reachable", "gauge", &[]),
        ("invok_manifest_errors", "gauge", &[]),
    ] {
        let fam = f
            .get(family)
            .unwrap_or_else(|| panic!("{family} missing in\n{text}"));
        assert_eq!(fam.kind, kind, "{family}");
        assert_eq!(label_names(&f, family), labels, "{family}");
    }

    let states: Vec<String> = f["invok_containers"]
        .samples
        .iter()
        .filter(|s| s.labels["pool"] == "web")
        .map(|s| s.labels["state"].clone())
        .collect();
    for s in [
        "starting",
        "healthy",
        "overloaded",
        "idle",
        "failed",
        "draining",
    ] {
        assert!(
            states.contains(&s.to_string()),
            "state {s} missing: {states:?}"
        );
    }
    let live: f64 = ["starting", "healthy", "overloaded", "idle", "failed"]
        .iter()
        .map(|s| value(&f, "invok_containers", &[("pool", "web"), ("state", s)]).unwrap())
        .sum();
    assert_eq!(live, 3.0);
    assert_eq!(
        value(&f, "invok_pool_desired_containers", &[("pool", "web")]),
        Some(3.0)
    );
    assert_eq!(
        value(&f, "invok_pool_current_containers", &[("pool", "web")]),
        Some(3.0)
    );
    assert_eq!(
        value(&f, "invok_pool_max_containers", &[("pool", "web")]),
        Some(4.0)
    );
    assert!(
        value(
            &f,
            "invok_scale_events_total",
            &[
                ("pool", "web"),
                ("direction", "up"),
                ("reason", "below_min")
            ]
        )
        .is_some_and(|v| v >= 1.0),
        "{text}"
    );
    assert!(value(
        &f,
        "invok_reconcile_total",
        &[("pool", "web"), ("result", "ok")]
    )
    .is_some_and(|v| v > 0.0));
    let reconciles = f["invok_reconcile_duration_seconds"]
        .samples
        .iter()
        .find(|s| s.name == "invok_reconcile_duration_seconds_count")
        .map(|s| s.value);
    assert!(reconciles.is_some_and(|v| v > 0.0), "{text}");
    assert_eq!(value(&f, "invok_docker_reachable", &[]), Some(1.0));
    for op_name in ["list", "create", "remove"] {
        assert!(value(
            &f,
            "invok_docker_api_errors_total",
            &[("operation", op_name)]
        )
        .is_some());
    }
}

#[test]
fn gateway_requests_are_counted_by_pool_and_code_in_either_format() {
    let op = Operator::start("metrics-gw", &[("web.yaml", pool_yaml("web", 1, 2, ""))]);
    op.wait_converged("web", 1, T);
    for _ in 0..3 {
        let (code, _) = http_get(op.gateway_port, "/function/web/").unwrap();
        assert_eq!(code, 200);
    }
    let (code, _) = http_get(op.gateway_port, "/function/web/?status=503").unwrap();
    assert_eq!(code, 503);

    let (text, f) = scrape(&op);
    assert_eq!(f["invok_gateway_requests_total"].kind, "counter", "{text}");
    assert_eq!(
        label_names(&f, "invok_gateway_requests_total"),
        ["code", "pool"]
    );
    assert_eq!(
        value(
            &f,
            "invok_gateway_requests_total",
            &[("pool", "web"), ("code", "200")]
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value(
            &f,
            "invok_gateway_requests_total",
            &[("pool", "web"), ("code", "503")]
        ),
        Some(1.0),
        "{text}"
    );
    let count = f["invok_gateway_request_duration_seconds"]
        .samples
        .iter()
        .find(|s| {
            s.name.ends_with("_count") && s.labels.get("pool").map(String::as_str) == Some("web")
        })
        .map(|s| s.value);
    assert_eq!(count, Some(4.0), "{text}");

    let mut s = std::net::TcpStream::connect(("127.0.0.1", op.admin_port)).unwrap();
    use std::io::{Read, Write};
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(
        resp.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{resp}"
    );
    assert!(
        resp.contains("# TYPE invok_gateway_requests counter"),
        "{resp}"
    );
    assert!(resp.ends_with("# EOF\n"), "{resp}");
}

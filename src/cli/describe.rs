//! `invok describe`: everything a running operator knows about one pool, for people.

use anyhow::bail;
use invok::api::{format_duration, Probe};
use invok::controller::status::SignalStatus;
use invok::forecast::Model;
use invok::scaler::Phase;

use super::client::{self, Client, PoolReport, ServerArgs};
use super::EXIT_OK;

/// Show one pool in detail, from a running operator.
///
/// Prints the effective spec (defaults applied, the invocation timeout included), the
/// replica counts and why, the conditions (Ready, Progressing, Degraded with their
/// reasons), every container with its state, readiness, load status, CPU (of its
/// limit), RSS, requests in flight, age and loopback port, the last scale event and the
/// recent events.
///
/// Example:
///   invok describe hello
///   invok describe web --server http://127.0.0.1:9081
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The pool.
    name: String,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let client = Client::new(&args.server)?;
    let Some(v) = client.pool(&args.name)? else {
        bail!(
            "functionpool/{} not found (the operator at {} does not know it)",
            args.name,
            client.base()
        );
    };
    print!(
        "{}",
        render(&PoolReport::from_json(&v)?, client::unix_now())
    );
    Ok(EXIT_OK)
}

fn or_none(v: Option<String>) -> String {
    v.unwrap_or_else(|| "<none>".into())
}

/// Indents a table under a section title.
fn section(out: &mut String, title: &str, rows: Vec<Vec<String>>) {
    out.push_str(title);
    out.push_str(":\n");
    if rows.len() <= 1 {
        out.push_str("  <none>\n");
        return;
    }
    for line in client::table(&rows).lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
}

/// The whole description of a pool.
pub fn render(r: &PoolReport, now: u64) -> String {
    let mut fields: Vec<(&str, String)> = vec![
        ("Name", r.name.clone()),
        ("Source", or_none(r.source.clone())),
        ("Status", r.status_word()),
    ];
    if let Some(sp) = &r.spec {
        let t = &sp.template;
        let s = &sp.scaling;
        fields.extend([
            ("Image", t.image.clone()),
            (
                "Command",
                t.command
                    .as_ref()
                    .map(|c| format!("{c:?}"))
                    .unwrap_or_else(|| "<image default>".into()),
            ),
            ("Port", t.port.to_string()),
            ("Network", or_none(t.network.clone())),
            (
                "Environment",
                if t.env.is_empty() {
                    "<none>".into()
                } else {
                    t.env
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            ),
            (
                "Limits",
                match (t.cpus, t.memory) {
                    (None, None) => "<none>".into(),
                    (cpus, mem) => [
                        cpus.map(|c| format!("cpus {c}")),
                        mem.map(|m| format!("memory {}", client::bytes(m))),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(", "),
                },
            ),
            (
                "Readiness",
                match &sp.readiness {
                    Probe::Http { path } => format!("HTTP GET {path} (below 400 is ready)"),
                    Probe::Tcp => "TCP connect to the port".into(),
                },
            ),
            ("Containers", format!("min {}, max {}", s.min, s.max)),
            (
                "Overloaded",
                format!(
                    "CPU above {} of {}, or RSS above {}",
                    client::percent(s.cpu_overload_threshold),
                    if t.cpus.is_some() {
                        "the limit"
                    } else {
                        "one core"
                    },
                    client::bytes(s.memory_overload_threshold)
                ),
            ),
            (
                "Idle",
                format!(
                    "CPU below {}; removed after {} idle",
                    client::percent(s.cooldown_cpu_threshold),
                    format_duration(s.cooldown_duration)
                ),
            ),
            ("Poll interval", format_duration(s.poll_interval)),
            (
                "Target concurrency",
                s.target_concurrency
                    .map(|c| format!("{c} requests in flight per container"))
                    .unwrap_or_else(|| "<none>".into()),
            ),
            (
                "Timeout",
                format!("{} per invocation", format_duration(sp.timeout)),
            ),
            ("Spec hash", sp.spec_hash.clone()),
        ]);
        // The signals beyond CPU and memory, when the pool scales on them.
        if let Some(t) = s.target_requests_per_second {
            fields.push(("Target rate", format!("{t} requests/s per container")));
        }
        if !s.custom_metrics.is_empty() {
            let metrics: Vec<String> = s
                .custom_metrics
                .iter()
                .map(|m| {
                    format!(
                        "{} at {} ({} per container)",
                        m.name, m.path, m.target_per_container
                    )
                })
                .collect();
            fields.push(("Custom metrics", metrics.join(", ")));
        }
        if let Some(p) = &s.predictive {
            fields.push((
                "Predictive",
                format!(
                    "capacity for the rate forecast {} ahead, from {} of history",
                    format_duration(p.horizon),
                    format_duration(p.window)
                ),
            ));
        }
    }
    let sm = &r.summary;
    fields.push((
        "Replicas",
        format!(
            "{} desired ({}), {} current, {} ready, {} starting, {} outdated",
            sm.desired_containers,
            r.desired_reason
                .as_ref()
                .map_or_else(|| "-".into(), client::word),
            sm.container_count,
            sm.ready_containers,
            sm.starting_containers,
            r.outdated()
        ),
    ));
    fields.push((
        "Load",
        format!(
            "{} healthy, {} overloaded, {} idle",
            sm.healthy_containers, sm.overloaded_containers, sm.idle_containers
        ),
    ));
    if let Some(line) = signals_line(&r.signals) {
        fields.push(("Signals", line));
    }
    let c = &r.cost;
    fields.push((
        "Cost",
        format!(
            "{:.0} container-seconds, {:.1} CPU-seconds, {} byte-seconds of memory (since the operator started)",
            c.container_seconds,
            c.cpu_seconds,
            client::bytes(c.memory_byte_seconds as u64)
        ),
    ));
    fields.push((
        "Last scale",
        or_none(r.last_scale.as_ref().map(|l| {
            format!(
                "{} {} -> {} ({}), {} ago",
                l.direction,
                l.from,
                l.to,
                client::word(&l.reason),
                client::age(now.saturating_sub(l.time))
            )
        })),
    ));
    if let Some(e) = &r.manifest_error {
        fields.push(("Manifest error", e.clone()));
    }
    if let Some(e) = &r.last_error {
        fields.push(("Last error", e.clone()));
    }
    let reconciles = if r.quiet {
        format!(
            "{} (quiet: no polling; a load change, a request or an edit wakes it)",
            r.reconciles
        )
    } else {
        r.reconciles.to_string()
    };
    fields.push(("Reconciles", reconciles));

    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 2;
    let mut out = String::new();
    for (k, v) in &fields {
        out.push_str(&format!("{:<width$}{v}\n", format!("{k}:")));
    }

    let mut conditions = vec![vec![
        "TYPE".to_string(),
        "STATUS".into(),
        "REASON".into(),
        "MESSAGE".into(),
    ]];
    conditions.extend(r.conditions.iter().map(|c| {
        vec![
            c.kind.clone(),
            c.status.clone(),
            c.reason.clone(),
            c.message.clone(),
        ]
    }));
    section(&mut out, "Conditions", conditions);

    let mut containers = vec![[
        "NAME",
        "STATE",
        "READY",
        "STATUS",
        "CPU",
        "RSS",
        "IN-FLIGHT",
        "AGE",
        "PORT",
        "SPEC",
    ]
    .map(String::from)
    .to_vec()];
    let current_hash = r.spec.as_ref().map(|s| s.spec_hash.as_str());
    containers.extend(r.containers.iter().map(|c| {
        vec![
            c.name.clone(),
            if c.phase == Phase::Draining {
                client::word(&c.phase)
            } else {
                client::word(&c.state)
            },
            if c.ready { "yes" } else { "no" }.into(),
            c.status.as_ref().map_or_else(|| "-".into(), client::word),
            c.cpu.map(client::percent).unwrap_or_else(|| "-".into()),
            c.rss.map(client::bytes).unwrap_or_else(|| "-".into()),
            c.in_flight.to_string(),
            client::age(c.age_seconds),
            c.host_port
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            if Some(c.spec_hash.as_str()) == current_hash {
                "current".into()
            } else {
                "outdated".into()
            },
        ]
    }));
    section(&mut out, "Containers", containers);

    let mut events = vec![["AGE", "TYPE", "REASON", "MESSAGE"]
        .map(String::from)
        .to_vec()];
    events.extend(r.events.iter().map(|e| {
        vec![
            client::age(now.saturating_sub(e.time)),
            e.kind.clone(),
            e.reason.clone(),
            e.message.clone(),
        ]
    }));
    section(&mut out, "Events", events);
    out
}

/// The request rate, the forecast beside what it forecast, and the custom metrics, as
/// the last pass read them; `None` when the pool scales on none of them.
fn signals_line(s: &SignalStatus) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(r) = s.request_rate {
        parts.push(format!("{r:.1} requests/s"));
    }
    if let Some(f) = &s.forecast {
        let model = match f.model {
            Model::Trend => "trend".to_string(),
            Model::Seasonal { period_seconds } => format!("seasonal, period {period_seconds:.0}s"),
        };
        parts.push(format!("forecast {:.1}/s ({model})", f.rate));
    }
    if let Some(then) = s.forecast_for_now {
        parts.push(format!("forecast for now was {then:.1}/s"));
    }
    for m in &s.custom_metrics {
        let missing = if m.missing > 0 {
            format!(" ({} containers missing it: no scale-down)", m.missing)
        } else {
            String::new()
        };
        parts.push(format!("{} {}{missing}", m.name, m.sum));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_without_containers_or_events_says_none() {
        let mut r = super::client::fixture::full();
        r.containers.clear();
        r.events.clear();
        let text = render(&r.into(), 0);
        assert!(text.starts_with("Name:"), "{text}");
        assert!(text.contains("Containers:\n  <none>\n"), "{text}");
        assert!(text.contains("Events:\n  <none>\n"), "{text}");
    }

    #[test]
    fn a_full_report_prints_every_section() {
        use super::client::fixture;
        let r = PoolReport::from_json(&fixture::served(&fixture::full())).unwrap();
        let text = render(&r, fixture::NOW);
        assert_eq!(
            text,
            "\
Name:               web
Source:             manifests/web.yaml
Status:             ContainersStarting
Image:              invok/demo-fn:latest
Command:            [\"/bin/sh\", \"-c\", \"serve\"]
Port:               9090
Network:            invok-network
Environment:        GREETING=hi, MODE=fast
Limits:             cpus 0.5, memory 256Mi
Readiness:          HTTP GET /healthz (below 400 is ready)
Containers:         min 1, max 5
Overloaded:         CPU above 70% of the limit, or RSS above 286Mi
Idle:               CPU below 10%; removed after 1m30s idle
Poll interval:      500ms
Target concurrency: 4 requests in flight per container
Timeout:            45s per invocation
Spec hash:          d30f29dcb5e99689
Replicas:           2 desired (cpu), 3 current, 1 ready, 1 starting, 0 outdated
Load:               0 healthy, 1 overloaded, 0 idle
Cost:               0 container-seconds, 0.0 CPU-seconds, 0 byte-seconds of memory (since the operator started)
Last scale:         up 1 -> 2 (cpu), 65s ago
Last error:         creating a container: no such image
Reconciles:         17
Conditions:
  TYPE          STATUS   REASON               MESSAGE
  Ready         False    NotEnoughReady       1 of 2 ready
  Progressing   True     ContainersStarting   1 starting
  Degraded      False    AsExpected
Containers:
  NAME    STATE      READY   STATUS       CPU   RSS      IN-FLIGHT   AGE     PORT    SPEC
  web-0   draining   no      -            5%    1.9Mi    0           40s     -       outdated
  web-1   running    yes     Overloaded   85%   12.4Mi   2           3m20s   32768   current
  web-2   created    no      -            -     -        0           40s     32769   current
  web-3   exited     no      -            -     -        0           40s     -       outdated
Events:
  AGE   TYPE      REASON            MESSAGE
  11m   Normal    PoolCreated       pool web created
  65s   Normal    ScaledUp          replicas 1 -> 2 (Cpu)
  3s    Warning   ContainerFailed   web-3 exited 1
"
        );
    }

    #[test]
    fn an_invalid_manifest_prints_its_error() {
        use super::client::fixture;
        let r = PoolReport::from_json(&fixture::served(&fixture::invalid())).unwrap();
        let text = render(&r, fixture::NOW);
        assert_eq!(
            text,
            "\
Name:           web
Source:         manifests/web.yaml
Status:         InvalidSpec
Replicas:       2 desired (-), 3 current, 1 ready, 1 starting, 0 outdated
Load:           0 healthy, 1 overloaded, 0 idle
Cost:           0 container-seconds, 0.0 CPU-seconds, 0 byte-seconds of memory (since the operator started)
Last scale:     <none>
Manifest error: web.yaml:9:5: spec.scaling: min > max
Reconciles:     17
Conditions:
  <none>
Containers:
  <none>
Events:
  <none>
"
        );
    }
}

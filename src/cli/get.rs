//! `invok get`: the pools a running operator knows, as a table or as its reports.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

use super::client::{self, Client, PoolReport, ServerArgs};
use super::EXIT_OK;

/// Output format of `get`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// NAME READY DESIRED MIN MAX STATUS AGE.
    Table,
    /// The table plus IMAGE, CPU (mean of the containers, of their limit), MEMORY (total
    /// RSS) and REASON (why the desired count is what it is).
    Wide,
    /// The pool reports as the admin API serves them (a list: {"items": [...]}).
    Json,
    /// The same as YAML.
    Yaml,
    /// functionpool/NAME, one per line.
    Name,
}

/// List pools and their state, from a running operator.
///
/// Reads the admin API of `invok run` (--server, INVOK_SERVER). READY is ready/desired
/// containers; STATUS is the Degraded reason when degraded (CrashLoopBackOff,
/// InvalidSpec, ImagePullFailed, AtMaxCapacity, ...), the Progressing reason while
/// containers start or roll (ContainersStarting, RollingUpdate), else Ready; AGE counts
/// from when this operator first saw the pool or its oldest container.
/// -w prints the table again, a line per pool that changed, every second until Ctrl-C.
///
/// Example:
///   invok get
///   invok get hello -o wide
///   invok get -o json | jq '.items[].summary'
///   invok get -w --server http://127.0.0.1:9081
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// One pool (default: all).
    name: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    output: Output,
    /// Watch: after the first listing, print each pool again when it changes.
    #[arg(short, long)]
    watch: bool,
    #[command(flatten)]
    server: ServerArgs,
}

/// The reports to print: one pool or all of them, as the server sent them.
fn fetch(client: &Client, name: Option<&str>) -> anyhow::Result<Vec<Value>> {
    match name {
        Some(n) => match client.pool(n)? {
            Some(v) => Ok(vec![v]),
            None => bail!(
                "functionpool/{n} not found (the operator at {} does not know it)",
                client.base()
            ),
        },
        None => client.pools(),
    }
}

fn header(wide: bool) -> Vec<String> {
    let mut h = vec!["NAME", "READY", "DESIRED", "MIN", "MAX", "STATUS", "AGE"];
    if wide {
        h.extend(["IMAGE", "CPU", "MEMORY", "REASON"]);
    }
    h.into_iter().map(String::from).collect()
}

/// One table row; the AGE cell is at index 6.
fn row(r: &PoolReport, wide: bool, now: u64) -> Vec<String> {
    let s = &r.summary;
    let (min, max) = r
        .spec
        .as_ref()
        .map(|sp| (sp.scaling.min.to_string(), sp.scaling.max.to_string()))
        .unwrap_or_else(|| ("-".into(), "-".into()));
    let mut cells = vec![
        r.name.clone(),
        format!("{}/{}", s.ready_containers, s.desired_containers),
        s.desired_containers.to_string(),
        min,
        max,
        r.status_word(),
        r.age_seconds(now)
            .map(client::age)
            .unwrap_or_else(|| "-".into()),
    ];
    if wide {
        let live: Vec<_> = r.live_containers().collect();
        let cpus: Vec<f64> = live.iter().filter_map(|c| c.cpu).collect();
        let cpu = if cpus.is_empty() {
            "-".to_string()
        } else {
            client::percent(cpus.iter().sum::<f64>() / cpus.len() as f64)
        };
        let rss: Vec<u64> = live.iter().filter_map(|c| c.rss).collect();
        let memory = if rss.is_empty() {
            "-".to_string()
        } else {
            client::bytes(rss.iter().sum())
        };
        cells.extend([
            r.spec
                .as_ref()
                .map(|sp| sp.template.image.clone())
                .unwrap_or_else(|| "-".into()),
            cpu,
            memory,
            r.desired_reason
                .as_ref()
                .map_or_else(|| "-".into(), client::word),
        ]);
    }
    cells
}

/// A report without what changes every second (ages), to notice real changes.
fn without_ages(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(Value::Array(cs)) = v.get_mut("containers") {
        for c in cs {
            if let Some(o) = c.as_object_mut() {
                o.remove("ageSeconds");
            }
        }
    }
    v
}

fn print_documents(items: &[Value], output: Output, list: bool) -> anyhow::Result<()> {
    let doc = if list {
        serde_json::json!({ "items": items })
    } else {
        items.first().cloned().unwrap_or(Value::Null)
    };
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&doc)?),
        Output::Yaml => print!("{}", serde_yaml::to_string(&doc).context("printing YAML")?),
        _ => unreachable!("documents are JSON or YAML"),
    }
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let client = Client::new(&args.server)?;
    let wide = args.output == Output::Wide;
    let items = fetch(&client, args.name.as_deref())?;
    let reports: Vec<PoolReport> = items
        .iter()
        .map(PoolReport::from_json)
        .collect::<Result<_, _>>()?;
    let now = client::unix_now();
    let mut table = Table {
        wide,
        widths: Vec::new(),
        header_printed: false,
        rows: BTreeMap::new(),
    };
    match args.output {
        Output::Table | Output::Wide => {
            if reports.is_empty() {
                eprintln!("No pools found at {}.", client.base());
            }
            table.print(
                reports
                    .iter()
                    .map(|r| (r.name.clone(), row(r, wide, now)))
                    .collect(),
            );
        }
        Output::Json | Output::Yaml => print_documents(&items, args.output, args.name.is_none())?,
        Output::Name => {
            for r in &reports {
                println!("functionpool/{}", r.name);
            }
        }
    }
    if args.watch {
        watch(&client, &args, items, table)?;
    }
    Ok(EXIT_OK)
}

/// A table printed in pieces (a watch prints one row at a time), kept aligned.
struct Table {
    wide: bool,
    widths: Vec<usize>,
    header_printed: bool,
    /// The last row printed per pool.
    rows: BTreeMap<String, Vec<String>>,
}

impl Table {
    fn print(&mut self, rows: Vec<(String, Vec<String>)>) {
        if rows.is_empty() {
            return;
        }
        let mut lines: Vec<Vec<String>> = Vec::new();
        if !self.header_printed {
            lines.push(header(self.wide));
            self.header_printed = true;
        }
        for (name, cells) in rows {
            lines.push(cells.clone());
            self.rows.insert(name, cells);
        }
        self.widths = client::widths(&lines, &self.widths);
        for l in &lines {
            print!("{}", client::format_row(l, &self.widths));
        }
    }
}

/// Polls every second and prints each pool whose state changed (ages aside); a pool
/// that disappears is printed once more with STATUS Deleted.
fn watch(client: &Client, args: &Args, first: Vec<Value>, mut table: Table) -> anyhow::Result<()> {
    let wide = args.output == Output::Wide;
    let key = |v: &Value| {
        v.get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let mut seen: BTreeMap<String, Value> =
        first.iter().map(|v| (key(v), without_ages(v))).collect();
    loop {
        let _ = std::io::Write::flush(&mut std::io::stdout());
        std::thread::sleep(Duration::from_secs(1));
        let items = match fetch(client, args.name.as_deref()) {
            Ok(items) => items,
            Err(e) if args.name.is_some() && e.to_string().contains("not found") => Vec::new(),
            Err(e) => return Err(e),
        };
        let now = client::unix_now();
        let mut current = BTreeMap::new();
        let mut changed_rows = Vec::new();
        for v in items {
            let name = key(&v);
            let stripped = without_ages(&v);
            if seen.get(&name) != Some(&stripped) {
                let r = PoolReport::from_json(&v)?;
                match args.output {
                    Output::Table | Output::Wide => {
                        changed_rows.push((name.clone(), row(&r, wide, now)))
                    }
                    Output::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                    Output::Yaml => print!("---\n{}", serde_yaml::to_string(&v)?),
                    Output::Name => println!("functionpool/{name}"),
                }
            }
            current.insert(name, stripped);
        }
        for gone in seen.keys().filter(|k| !current.contains_key(*k)) {
            match args.output {
                Output::Table | Output::Wide => {
                    let mut cells = table.rows.get(gone).cloned().unwrap_or_else(|| {
                        let mut c = vec![gone.clone()];
                        c.resize(header(wide).len(), "-".into());
                        c
                    });
                    cells[5] = "Deleted".into();
                    changed_rows.push((gone.clone(), cells));
                }
                _ => println!("functionpool/{gone} deleted"),
            }
        }
        table.print(changed_rows);
        seen = current;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use client::fixture;

    fn printed(r: &invok::controller::report::PoolReport, wide: bool) -> String {
        let r = PoolReport::from_json(&fixture::served(r)).unwrap();
        client::table(&[header(wide), row(&r, wide, fixture::NOW)])
    }

    #[test]
    fn rows_read_the_served_report() {
        let text = [
            printed(&fixture::full(), false),
            printed(&fixture::full(), true),
            printed(&fixture::invalid(), true),
        ]
        .concat();
        assert_eq!(
            text,
            "\
NAME   READY   DESIRED   MIN   MAX   STATUS               AGE
web    1/2     2         1     5     ContainersStarting   11m
NAME   READY   DESIRED   MIN   MAX   STATUS               AGE   IMAGE                  CPU   MEMORY   REASON
web    1/2     2         1     5     ContainersStarting   11m   invok/demo-fn:latest   85%   12.4Mi   cpu
NAME   READY   DESIRED   MIN   MAX   STATUS        AGE   IMAGE   CPU   MEMORY   REASON
web    1/2     2         -     -     InvalidSpec   -     -       -     -        -
"
        );
    }
}

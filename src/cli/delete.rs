//! `invok delete`: remove pools from the watched manifest directory; the operator then
//! removes their containers (prune).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::client::{Client, PoolReport, ServerArgs};
use super::manifests::{self, DirArgs, DirIndex};
use super::{EXIT_FAILURE, EXIT_OK};
use invok::manifest::files;

/// Delete pools: remove their documents from the manifest directory.
///
/// Give pool names, or -f with the manifests that declare them. A file that holds only
/// the pool is removed; a file that holds other documents too is rewritten without it
/// (atomically). The operator then removes the pool's containers. --wait follows the
/// admin API until they are gone (at most TIMEOUT, default 5m).
///
/// Exit status: 0 when every pool was deleted, 1 when one was not found or on any
/// failure, 2 on usage errors.
///
/// Example:
///   invok delete hello
///   invok delete -f web.yaml --wait
///   invok delete web api --manifests /etc/invok/manifests
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Pool names.
    #[arg(value_name = "NAME", required_unless_present = "files")]
    names: Vec<String>,
    /// Manifest files (or directories, or `-`) naming the pools to delete.
    #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-")]
    files: Vec<PathBuf>,
    /// Also read the subdirectories of directories given with -f.
    #[arg(short = 'R', long)]
    recursive: bool,
    #[command(flatten)]
    dir: DirArgs,
    /// Print what would be done; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Wait until the pools' containers are gone (at most TIMEOUT).
    #[arg(
        long,
        value_name = "TIMEOUT",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "5m",
        value_parser = manifests::parse_timeout
    )]
    wait: Option<Duration>,
    #[command(flatten)]
    server: ServerArgs,
}

/// The pool names the -f inputs declare (valid or not: a broken pool can be deleted too).
fn names_in_files(args: &Args) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for f in &args.files {
        let texts: Vec<String> = if f.as_os_str() == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("reading stdin")?;
            vec![text]
        } else if f.is_dir() {
            manifests::manifest_files(f, args.recursive)?
                .iter()
                .map(|p| {
                    std::fs::read_to_string(p)
                        .with_context(|| format!("{}: cannot read", p.display()))
                })
                .collect::<Result<_, _>>()?
        } else {
            vec![std::fs::read_to_string(f)
                .with_context(|| format!("{}: cannot read", f.display()))?]
        };
        let before = names.len();
        for t in texts {
            names.extend(
                files::split_documents(&t)
                    .iter()
                    .filter_map(|d| files::pool_name(d)),
            );
        }
        if names.len() == before {
            bail!("{}: declares no FunctionPool", f.display());
        }
    }
    Ok(names)
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let mut names = args.names.clone();
    names.extend(names_in_files(&args)?);
    let mut seen = std::collections::BTreeSet::new();
    names.retain(|n| seen.insert(n.clone()));
    let index = DirIndex::read(&args.dir.manifests)?;

    // File -> the documents to drop from it.
    let mut edits: BTreeMap<PathBuf, Vec<usize>> = BTreeMap::new();
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in &names {
        match index.pools.get(name) {
            Some(places) if !places.is_empty() => {
                for p in places {
                    edits.entry(p.file.clone()).or_default().push(p.doc);
                }
                found.push(name.clone());
            }
            _ => missing.push(name.clone()),
        }
    }
    // What stays of each file edited: nothing (the file goes), or documents to rewrite.
    let rests: Vec<(&PathBuf, Vec<&String>)> = edits
        .iter()
        .map(|(file, drop)| {
            let rest = index.files[file]
                .iter()
                .enumerate()
                .filter(|(i, _)| !drop.contains(i))
                .map(|(_, d)| d)
                .collect();
            (file, rest)
        })
        .collect();
    // A link is removed when nothing stays, never rewritten: checked before anything
    // changes, so a refusal changes nothing.
    let refusals: Vec<String> = rests
        .iter()
        .filter(|(_, rest)| !rest.iter().all(|d| files::is_blank(d)))
        .filter_map(|(file, _)| manifests::link_refusal(file))
        .collect();
    if !refusals.is_empty() {
        for r in &refusals {
            eprintln!("{r}");
        }
        bail!(
            "{} file(s) cannot be rewritten; nothing was changed",
            refusals.len()
        );
    }
    if !args.dry_run {
        for (file, rest) in rests {
            if rest.iter().all(|d| files::is_blank(d)) {
                files::remove_file(file).with_context(|| format!("removing {}", file.display()))?;
            } else {
                let text: String = rest.into_iter().map(String::as_str).collect();
                files::atomic_write(file, &text)
                    .with_context(|| format!("writing {}", file.display()))?;
            }
        }
    }
    let suffix = if args.dry_run { " (dry run)" } else { "" };
    for name in &found {
        println!("functionpool/{name} deleted{suffix}");
    }
    for name in &missing {
        eprintln!(
            "error: functionpool/{name} not found in {}",
            args.dir.manifests.display()
        );
    }
    if let (Some(timeout), false) = (args.wait, args.dry_run) {
        if !found.is_empty() {
            let client = Client::new(&args.server)?;
            wait_gone(&client, &found, timeout)?;
        }
    }
    Ok(if missing.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILURE
    })
}

/// Waits until the operator reports no container for each pool (or no pool at all).
fn wait_gone(client: &Client, names: &[String], timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let tty = std::io::stdout().is_terminal();
    for name in names {
        let mut last = None;
        loop {
            let left = match client.pool(name)? {
                None => 0,
                Some(v) => PoolReport::from_json(&v)?.containers.len(),
            };
            if left == 0 {
                if tty && last.is_some() {
                    print!("\r\x1b[2K");
                }
                println!("functionpool/{name}: containers gone");
                break;
            }
            if last != Some(left) {
                let line = format!("functionpool/{name}: {left} container(s) left");
                if tty {
                    print!("\r\x1b[2K{line}");
                    let _ = std::io::Write::flush(&mut std::io::stdout());
                } else {
                    println!("{line}");
                }
                last = Some(left);
            }
            if Instant::now() >= deadline {
                if tty {
                    println!();
                }
                bail!(
                    "timed out after {} waiting for the containers of functionpool/{name} to go: {left} left",
                    invok::api::format_duration(timeout)
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    Ok(())
}

//! `invok apply`: write validated pools into the watched manifest directory, as
//! `kubectl apply` writes objects to the API server.
//!
//! Everything is read and validated first, then planned against the directory, and only
//! then written: an invalid input, or a plan that cannot be carried out, changes
//! nothing. Each pool lives in its own file, written atomically
//! ([`invok::manifest::files::atomic_write`]), so the operator's watcher never sees
//! half a file. `diff` is apply's plan without the writes.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use invok::api::{FunctionPool, ScalingDefaults, GROUP, KIND};
use invok::manifest::{self, files, ManifestSet};

use super::client::{Client, PoolReport, ServerArgs};
use super::manifests::{link_refusal, manifest_files, parse_timeout, DirArgs, DirIndex, InputArgs};
use super::EXIT_OK;

/// Apply FunctionPool manifests to the operator's manifest directory.
///
/// Reads FILE (or every .yaml/.yml file of DIR; with -R, of its subdirectories too; `-`
/// reads stdin), validates every FunctionPool in it, and writes each pool to its own file
/// in the manifest directory: <name>.yaml, or the file that already declares it when it
/// holds only that pool. Nothing is written unless every input is valid. Prints, per
/// pool, `functionpool/NAME created`, `configured` or `unchanged` (compared by content,
/// not by text: comments and formatting alone do not change a pool).
///
/// --wait follows each pool through the admin API until its containers are ready and
/// run the applied spec (ready = desired, none starting or outdated); it gives up after
/// TIMEOUT (default 5m) with exit status 1.
///
/// Exit status: 0 on success, 1 on invalid input or any failure, 2 on usage errors.
///
/// Example:
///   invok apply -f web.yaml
///   invok apply -f pools/ -R --manifests /etc/invok/manifests
///   cat web.yaml | invok apply -f - --dry-run
///   invok apply -f web.yaml --wait=2m
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    dir: DirArgs,
    /// Print what would be done; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Wait until every applied pool is ready on the operator (at most TIMEOUT).
    #[arg(
        long,
        value_name = "TIMEOUT",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "5m",
        value_parser = parse_timeout
    )]
    wait: Option<Duration>,
    #[command(flatten)]
    server: ServerArgs,
}

/// A pool read from the input, with the text to write for it.
pub struct InputPool {
    /// The pool's name.
    pub name: String,
    /// What the document says.
    pub manifest: FunctionPool,
    /// The hash its containers will carry (independent of the operator's defaults).
    pub spec_hash: String,
    /// The document's own text (comments kept), as a file of its own.
    pub text: String,
}

/// Reads and validates every input; prints every problem (FILE:LINE:COL) and fails when
/// there is any, or when the input holds no FunctionPool.
pub fn read_inputs(input: &InputArgs) -> anyhow::Result<Vec<InputPool>> {
    let defaults = ScalingDefaults::from_env()?;
    let mut files = Vec::new();
    let mut stdin_text = None;
    for f in &input.files {
        if f.as_os_str() == "-" {
            if stdin_text.is_some() {
                bail!("-f - given twice: stdin can be read once");
            }
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading stdin")?;
            stdin_text = Some(text);
            continue;
        }
        let meta = std::fs::metadata(f).with_context(|| format!("{}: cannot read", f.display()))?;
        if meta.is_dir() {
            files.extend(manifest_files(f, input.recursive)?);
        } else {
            files.push(f.clone());
        }
    }
    let mut set = manifest::load_paths(&files, &defaults);
    let mut texts: Vec<(PathBuf, String)> = Vec::new();
    for f in &files {
        texts.push((f.clone(), std::fs::read_to_string(f).unwrap_or_default()));
    }
    if let Some(text) = stdin_text {
        let path = PathBuf::from("<stdin>");
        let more = manifest::load_str(&path, &text, &defaults);
        merge(&mut set, more);
        texts.push((path, text));
    }
    for n in &set.notices {
        eprintln!("notice: {n}");
    }
    if !set.errors.is_empty() {
        for e in &set.errors {
            eprintln!("{e}");
        }
        bail!(
            "{} error(s) in the input; nothing was changed",
            set.errors.len()
        );
    }
    if set.pools.is_empty() {
        bail!("no FunctionPool in the input (apiVersion {GROUP}/..., kind {KIND})");
    }
    let mut docs: BTreeMap<String, String> = BTreeMap::new();
    for (_, text) in &texts {
        for d in files::split_documents(text) {
            if let Some(name) = files::pool_name(&d) {
                docs.entry(name).or_insert(d);
            }
        }
    }
    let mut out = Vec::new();
    for (name, p) in set.pools {
        let text = docs
            .get(&name)
            .map(|d| standalone(d, &p.manifest, &defaults))
            .unwrap_or_else(|| canonical(&p.manifest));
        out.push(InputPool {
            spec_hash: p.spec.spec_hash.clone(),
            manifest: p.manifest,
            name,
            text,
        });
    }
    Ok(out)
}

/// Adds the pools of `more` (stdin) to `set`, reporting names declared in both.
fn merge(set: &mut ManifestSet, more: ManifestSet) {
    set.errors.extend(more.errors);
    set.notices.extend(more.notices);
    for (name, p) in more.pools {
        if let Some(first) = set.pools.get(&name) {
            set.errors.push(manifest::ManifestError {
                location: p.source.clone(),
                field: Some("metadata.name".into()),
                message: format!("pool {name:?} is declared twice; first at {}", first.source),
            });
        } else {
            set.pools.insert(name, p);
        }
    }
}

/// The text of one input document as a file of its own: its lines as written (comments
/// kept), without its `---` line. Falls back to a canonical rendering if that text
/// would not read back as the same pool.
fn standalone(doc: &str, manifest: &FunctionPool, defaults: &ScalingDefaults) -> String {
    let mut text = match doc.split_once('\n') {
        Some((first, rest)) if first.trim_end() == "---" => rest.to_string(),
        _ => doc.to_string(),
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let back = manifest::load_str(Path::new("check.yaml"), &text, defaults);
    let same = back.errors.is_empty()
        && back.pools.len() == 1
        && back
            .pools
            .values()
            .next()
            .is_some_and(|p| p.manifest == *manifest);
    if same {
        text
    } else {
        canonical(manifest)
    }
}

fn canonical(manifest: &FunctionPool) -> String {
    serde_yaml::to_string(manifest).expect("a FunctionPool serializes")
}

/// What applying one pool does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A new file.
    Created,
    /// A file rewritten.
    Configured,
    /// Nothing to write.
    Unchanged,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
        })
    }
}

/// One pool's planned change.
pub struct Change {
    /// The pool.
    pub name: String,
    /// What happens.
    pub outcome: Outcome,
    /// The file written (or left alone).
    pub file: PathBuf,
    /// Its text now (`None` when it does not exist).
    pub old: Option<String>,
    /// Its text after the apply.
    pub new: String,
}

/// Decides what applying `pools` to the directory does, without writing anything. Fails
/// (changing nothing) when a pool cannot be written in its own file.
pub fn plan(index: &DirIndex, pools: &[InputPool]) -> anyhow::Result<Vec<Change>> {
    let mut changes = Vec::new();
    let mut problems = Vec::new();
    for p in pools {
        match index.pools.get(&p.name).map(Vec::as_slice) {
            None | Some([]) => {
                let file = index.dir.join(format!("{}.yaml", p.name));
                if file.exists() {
                    problems.push(format!(
                        "functionpool/{}: {} exists and does not declare this pool; rename or remove it first",
                        p.name,
                        file.display()
                    ));
                    continue;
                }
                changes.push(Change {
                    name: p.name.clone(),
                    outcome: Outcome::Created,
                    file,
                    old: None,
                    new: p.text.clone(),
                });
            }
            Some([at]) => {
                let old_doc = &index.files[&at.file][at.doc];
                let current: Option<FunctionPool> = serde_yaml::from_str(old_doc).ok();
                let old = index.text(&at.file);
                if current.as_ref() == Some(&p.manifest) {
                    changes.push(Change {
                        name: p.name.clone(),
                        outcome: Outcome::Unchanged,
                        file: at.file.clone(),
                        new: old.clone(),
                        old: Some(old),
                    });
                } else if let Some(why) = link_refusal(&at.file) {
                    problems.push(format!("functionpool/{}: {why}", p.name));
                } else if index.holds_only(&at.file, at.doc) {
                    changes.push(Change {
                        name: p.name.clone(),
                        outcome: Outcome::Configured,
                        file: at.file.clone(),
                        old: Some(old),
                        new: p.text.clone(),
                    });
                } else {
                    problems.push(format!(
                        "functionpool/{}: declared in {} together with other documents; apply writes one pool per file: \
                         move it to a file of its own (or edit that file), then apply again",
                        p.name,
                        at.file.display()
                    ));
                }
            }
            Some(many) => {
                let files: Vec<String> =
                    many.iter().map(|d| d.file.display().to_string()).collect();
                problems.push(format!(
                    "functionpool/{}: declared more than once in {} ({}); the operator ignores it until one declaration is left",
                    p.name,
                    index.dir.display(),
                    files.join(", ")
                ));
            }
        }
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("{p}");
        }
        bail!(
            "{} pool(s) cannot be applied; nothing was changed",
            problems.len()
        );
    }
    Ok(changes)
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let pools = read_inputs(&args.input)?;
    let index = DirIndex::read(&args.dir.manifests)?;
    let changes = plan(&index, &pools)?;
    let suffix = if args.dry_run { " (dry run)" } else { "" };
    for c in &changes {
        if c.outcome != Outcome::Unchanged && !args.dry_run {
            files::atomic_write(&c.file, &c.new)
                .with_context(|| format!("writing {}", c.file.display()))?;
        }
        println!("functionpool/{} {}{suffix}", c.name, c.outcome);
    }
    if let Some(timeout) = args.wait {
        if args.dry_run {
            eprintln!("--wait ignored with --dry-run: nothing was applied");
        } else {
            let client = Client::new(&args.server)?;
            wait_ready(&client, &pools, timeout)?;
        }
    }
    Ok(EXIT_OK)
}

/// How far a pool is from running what was applied.
#[derive(Clone, Debug, PartialEq)]
enum Progress {
    /// The operator has not read the applied manifest yet.
    Pending(String),
    /// Converging: ready/desired, starting, outdated.
    Rolling {
        ready: usize,
        desired: usize,
        starting: usize,
        outdated: usize,
    },
    /// Converged.
    Ready { ready: usize, desired: usize },
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Progress::Pending(why) => write!(f, "{why}"),
            Progress::Rolling {
                ready,
                desired,
                starting,
                outdated,
            } => {
                write!(f, "ready {ready}/{desired}")?;
                if *starting > 0 {
                    write!(f, ", {starting} starting")?;
                }
                if *outdated > 0 {
                    write!(f, ", {outdated} outdated")?;
                }
                Ok(())
            }
            Progress::Ready { ready, desired } => write!(f, "ready {ready}/{desired}"),
        }
    }
}

fn progress(p: &InputPool, report: Option<&PoolReport>) -> Progress {
    let Some(r) = report else {
        return Progress::Pending("not known to the operator yet".into());
    };
    let Some(spec) = &r.spec else {
        return Progress::Pending(match &r.manifest_error {
            Some(e) => format!("manifest rejected by the operator: {e}"),
            None => "no spec in force yet".into(),
        });
    };
    let scaling = p.manifest.spec.scaling.as_ref();
    let wants = |set: Option<u32>, have: usize| set.is_none_or(|v| v as usize == have);
    let current = spec.spec_hash == p.spec_hash
        && wants(scaling.and_then(|s| s.min_containers), spec.scaling.min)
        && wants(scaling.and_then(|s| s.max_containers), spec.scaling.max);
    if !current {
        return Progress::Pending("the operator has not read the applied spec yet".into());
    }
    let s = &r.summary;
    let outdated = r.outdated();
    let done = r.reconciles > 0
        && s.ready_containers == s.desired_containers
        && s.desired_containers >= spec.scaling.min
        && s.starting_containers == 0
        && outdated == 0;
    if done {
        Progress::Ready {
            ready: s.ready_containers,
            desired: s.desired_containers,
        }
    } else {
        Progress::Rolling {
            ready: s.ready_containers,
            desired: s.desired_containers,
            starting: s.starting_containers,
            outdated,
        }
    }
}

/// Follows each pool until it runs what was applied, printing progress (one updating
/// line on a terminal, a line per change otherwise).
fn wait_ready(client: &Client, pools: &[InputPool], timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let tty = std::io::stdout().is_terminal();
    for p in pools {
        let mut last: Option<Progress> = None;
        loop {
            let report = client
                .pool(&p.name)?
                .map(|v| PoolReport::from_json(&v))
                .transpose()?;
            let now = progress(p, report.as_ref());
            let line = format!("functionpool/{}: {now}", p.name);
            if matches!(now, Progress::Ready { .. }) {
                if tty {
                    print!("\r\x1b[2K");
                }
                println!("functionpool/{} {now}", p.name);
                break;
            }
            if last.as_ref() != Some(&now) {
                if tty {
                    print!("\r\x1b[2K{line}");
                    let _ = std::io::stdout().flush();
                } else {
                    println!("{line}");
                }
                last = Some(now.clone());
            }
            if Instant::now() >= deadline {
                if tty {
                    println!();
                }
                let degraded = report
                    .as_ref()
                    .and_then(|r| r.condition("Degraded"))
                    .filter(|c| c.status == "True")
                    .map(|c| format!(" (Degraded: {}: {})", c.reason, c.message))
                    .unwrap_or_default();
                bail!(
                    "timed out after {} waiting for functionpool/{}: {now}{degraded}",
                    invok::api::format_duration(timeout),
                    p.name
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    Ok(())
}

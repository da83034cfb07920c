//! `invok apply`: write validated pools into the watched manifest directory, as
//! `kubectl apply` writes objects to the API server.
//!
//! Everything is read and validated first, then planned against the directory, and only
//! then written: an invalid input, or a plan that cannot be carried out, changes
//! nothing. Each pool lives in its own file, written atomically (a hidden temporary file
//! in the same directory, then a rename), so the operator's watcher never sees half a
//! file. Also home of the helpers `diff` and `delete` share: reading inputs, indexing the
//! directory's documents, atomic writes.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use invok::api::{FunctionPool, ScalingDefaults, GROUP, KIND};
use invok::manifest::{self, ManifestSet};

use super::client::{Client, PoolReport, ServerArgs};
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

/// `-f` and `-R`, as kubectl takes them.
#[derive(clap::Args, Clone, Debug)]
pub struct InputArgs {
    /// A manifest file, a directory of them, or `-` for stdin (repeatable).
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE|DIR|-",
        required = true
    )]
    pub files: Vec<PathBuf>,
    /// Also read the subdirectories of directories given with -f.
    #[arg(short = 'R', long)]
    pub recursive: bool,
}

/// `--manifests`: the directory `invok run` watches.
#[derive(clap::Args, Clone, Debug)]
pub struct DirArgs {
    /// The manifest directory the operator watches.
    #[arg(
        long,
        env = "INVOK_MANIFESTS",
        default_value = "./manifests",
        value_name = "DIR"
    )]
    pub manifests: PathBuf,
}

/// Parses `--wait=TIMEOUT` (`30s`, `2m`, a number of seconds).
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    match invok::api::parse_duration(s)? {
        d if d.is_zero() => Err("must be greater than 0".into()),
        d => Ok(d),
    }
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
            list_manifest_files(f, input.recursive, &mut files)
                .with_context(|| format!("{}: cannot read directory", f.display()))?;
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
        for d in split_documents(text) {
            if let Some(name) = pool_name(&d) {
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

/// The manifest files of a directory as `-f DIR` reads them: the top level only unless
/// `recursive`; hidden files and editor temporaries skipped.
pub fn list_manifest_files(
    dir: &Path,
    recursive: bool,
    out: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() && recursive => list_manifest_files(&path, true, out)?,
            Ok(m) if m.is_file() && manifest::is_manifest_file(&path) => out.push(path),
            _ => {}
        }
    }
    Ok(())
}

/// Splits YAML text into its documents, each from its `---` line (if any) up to the
/// next one. Joined back together they give the text unchanged.
pub fn split_documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.split_inclusive('\n') {
        let is_separator = line
            .strip_prefix("---")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']));
        if is_separator {
            docs.push(String::new());
        }
        docs.last_mut().expect("one document").push_str(line);
    }
    docs
}

/// The name of the FunctionPool a document declares, if it declares one (valid or not).
pub fn pool_name(doc: &str) -> Option<String> {
    let value: serde_yaml::Value = serde_yaml::from_str(doc).ok()?;
    let api_version = value.get("apiVersion")?.as_str()?;
    let (group, _) = api_version.rsplit_once('/')?;
    if group != GROUP || value.get("kind")?.as_str()? != KIND {
        return None;
    }
    Some(value.get("metadata")?.get("name")?.as_str()?.to_string())
}

/// True when a document holds nothing (blank lines, comments, a lone `---`).
fn is_blank(doc: &str) -> bool {
    matches!(
        serde_yaml::from_str::<serde_yaml::Value>(doc),
        Ok(serde_yaml::Value::Null)
    )
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

/// Where a pool is declared in the manifest directory.
#[derive(Clone, Debug)]
pub struct Declared {
    /// The file.
    pub file: PathBuf,
    /// Which of its documents ([`split_documents`]).
    pub doc: usize,
}

/// The FunctionPool documents of the manifest directory, by pool name, and each file's
/// documents.
pub struct DirIndex {
    /// The directory.
    pub dir: PathBuf,
    /// Pool name -> every place that declares it (more than one is an error).
    pub pools: BTreeMap<String, Vec<Declared>>,
    /// File -> its documents.
    pub files: BTreeMap<PathBuf, Vec<String>>,
}

impl DirIndex {
    /// Reads every manifest file of `dir` as the operator does (recursively).
    pub fn read(dir: &Path) -> anyhow::Result<DirIndex> {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => bail!("--manifests {}: not a directory", dir.display()),
            Err(e) => bail!(
                "manifest directory {}: {e}; create it, or point --manifests (INVOK_MANIFESTS) at the directory `invok run` watches",
                dir.display()
            ),
        }
        let mut paths = Vec::new();
        list_manifest_files(dir, true, &mut paths)
            .with_context(|| format!("reading {}", dir.display()))?;
        let mut index = DirIndex {
            dir: dir.to_path_buf(),
            pools: BTreeMap::new(),
            files: BTreeMap::new(),
        };
        for path in paths {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("{}: cannot read", path.display()))?;
            let docs = split_documents(&text);
            for (i, d) in docs.iter().enumerate() {
                if let Some(name) = pool_name(d) {
                    index.pools.entry(name).or_default().push(Declared {
                        file: path.clone(),
                        doc: i,
                    });
                }
            }
            index.files.insert(path, docs);
        }
        Ok(index)
    }

    /// True when `file` holds no document but `doc`.
    pub fn holds_only(&self, file: &Path, doc: usize) -> bool {
        self.files.get(file).is_some_and(|docs| {
            docs.iter()
                .enumerate()
                .all(|(i, d)| i == doc || is_blank(d))
        })
    }

    /// The text of `file`.
    pub fn text(&self, file: &Path) -> String {
        self.files.get(file).map(|d| d.concat()).unwrap_or_default()
    }
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

/// Replaces `path` with `text` atomically: a hidden temporary file in the same directory
/// (ignored by the operator's reader), flushed to disk, then renamed over the target.
pub fn atomic_write(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{}: not a file path", path.display()))?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        if let Ok(meta) = std::fs::metadata(path) {
            f.set_permissions(meta.permissions())?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable; not every filesystem allows syncing a directory.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.with_context(|| format!("writing {}", path.display()))
}

/// Removes `path`, making the removal durable.
pub fn remove_file(path: &Path) -> anyhow::Result<()> {
    std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    if let Some(d) = path.parent().and_then(|d| std::fs::File::open(d).ok()) {
        let _ = d.sync_all();
    }
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let pools = read_inputs(&args.input)?;
    let index = DirIndex::read(&args.dir.manifests)?;
    let changes = plan(&index, &pools)?;
    let suffix = if args.dry_run { " (dry run)" } else { "" };
    for c in &changes {
        if c.outcome != Outcome::Unchanged && !args.dry_run {
            atomic_write(&c.file, &c.new)?;
        }
        println!("functionpool/{} {}{suffix}", c.name, c.outcome);
    }
    if let Some(timeout) = args.wait {
        if args.dry_run {
            eprintln!("--wait ignored with --dry-run: nothing was applied");
        } else {
            let client = Client::new(&args.server.server)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_split_and_join_back_to_the_same_text() {
        let text = "# head\na: 1\n---\nb: 2\n--- # c\nc: 3\n---x: no\n";
        let docs = split_documents(text);
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[1], "---\nb: 2\n");
        assert_eq!(docs[2], "--- # c\nc: 3\n---x: no\n");
        assert_eq!(docs.concat(), text);
    }

    #[test]
    fn pool_names_come_only_from_invok_function_pools() {
        let pool =
            "apiVersion: invok.dev/v1alpha1\nkind: FunctionPool\nmetadata: {name: web}\nspec: {}\n";
        assert_eq!(pool_name(pool).as_deref(), Some("web"));
        assert_eq!(
            pool_name("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\n"),
            None
        );
        assert_eq!(pool_name("# only a comment\n"), None);
        assert!(is_blank("---\n# only a comment\n"));
        assert!(!is_blank(pool));
    }
}

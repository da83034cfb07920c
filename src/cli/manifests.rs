//! The manifest directory as the writing commands (`apply`, `diff`, `delete`) see it:
//! their shared arguments, the files an `-f DIR` names, and an index of the directory's
//! FunctionPool documents by pool name. Walking and splitting are the library's
//! ([`invok::manifest::files`]), the same the operator reads with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use invok::manifest::files;

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

/// Why `file` must not be rewritten, when it is a symbolic link: writing the new text in
/// its place would replace the link with a regular file, silently cutting what it links
/// to (a file shared with another checkout, a mounted ConfigMap).
pub fn link_refusal(file: &Path) -> Option<String> {
    let meta = std::fs::symlink_metadata(file).ok()?;
    if !meta.file_type().is_symlink() {
        return None;
    }
    let target = std::fs::read_link(file)
        .map(|t| t.display().to_string())
        .unwrap_or_else(|e| format!("(unreadable: {e})"));
    Some(format!(
        "{} is a symbolic link to {target}; writing it would replace the link with a file: \
         edit {target} (or replace the link with a file of its own), then try again",
        file.display()
    ))
}

/// The manifest files of `dir` (its subdirectories too when `recursive`), as the
/// operator's walker lists them; a name it cannot read (a dangling link) is an error.
pub fn manifest_files(dir: &Path, recursive: bool) -> anyhow::Result<Vec<PathBuf>> {
    let walk = files::walk(dir, recursive)
        .with_context(|| format!("{}: cannot read directory", dir.display()))?;
    if let Some((path, why)) = walk.broken.first() {
        bail!("{}: {why}", path.display());
    }
    for (path, message) in &walk.notices {
        eprintln!("notice: {}: {message}", path.display());
    }
    Ok(walk.files)
}

/// Where a pool is declared in the manifest directory.
#[derive(Clone, Debug)]
pub struct Declared {
    /// The file.
    pub file: PathBuf,
    /// Which of its documents ([`files::split_documents`]).
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
        let paths = manifest_files(dir, true)?;
        let mut index = DirIndex {
            dir: dir.to_path_buf(),
            pools: BTreeMap::new(),
            files: BTreeMap::new(),
        };
        for path in paths {
            let text = files::read_manifest(&path)
                .with_context(|| format!("{}: cannot read", path.display()))?;
            let docs = files::split_documents(&text);
            for (i, d) in docs.iter().enumerate() {
                if let Some(name) = files::pool_name(d) {
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
                .all(|(i, d)| i == doc || files::is_blank(d))
        })
    }

    /// The text of `file`.
    pub fn text(&self, file: &Path) -> String {
        self.files.get(file).map(|d| d.concat()).unwrap_or_default()
    }
}

//! Reading manifests: files and directories of YAML into validated pools.
//!
//! A directory is read in full every time (never one changed file alone: `git pull` and
//! editors touch many files, and a half-read directory must never look like deletions).
//! Every problem carries FILE:LINE:COL and the field path, and one bad document never
//! hides the errors of the others. The operator decides what to do with a partial read:
//! [`ManifestSet::invalid_pools`] and [`ManifestSet::broken_files`] tell it which pools
//! must keep their last valid spec instead of being pruned.

pub mod files;
mod positions;
pub mod watch;

pub use files::is_manifest_file;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::api::{EffectiveSpec, FunctionPool, ScalingDefaults, API_VERSION, GROUP, KIND, VERSION};
use positions::Positions;

/// A place in a manifest file; line and column count from 1.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Location {
    /// The file as it was given or found.
    pub file: PathBuf,
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// Something wrong in a manifest: `FILE:LINE:COL: field: message`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, thiserror::Error)]
pub struct ManifestError {
    /// Where it is.
    #[serde(flatten)]
    pub location: Location,
    /// The field path (`spec.scaling.maxContainers`), when the problem is in one field.
    pub field: Option<String>,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{}: {}: {}", self.location, field, self.message),
            None => write!(f, "{}: {}", self.location, self.message),
        }
    }
}

/// Something worth telling that is not an error, such as a skipped foreign document.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Notice {
    /// Where it is.
    #[serde(flatten)]
    pub location: Location,
    /// What happened.
    pub message: String,
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// A pool read from a manifest, in both forms.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedPool {
    /// What the user wrote.
    pub manifest: FunctionPool,
    /// The validated form with defaults applied.
    pub spec: EffectiveSpec,
    /// Where its document starts.
    pub source: Location,
}

/// The result of reading manifests: the valid pools and everything that went wrong.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ManifestSet {
    /// Valid pools by name.
    pub pools: BTreeMap<String, LoadedPool>,
    /// Every error found: what the walk could not read first, then file by file.
    pub errors: Vec<ManifestError>,
    /// Notices (skipped documents).
    pub notices: Vec<Notice>,
    /// Pools whose documents are invalid, with their first error: they keep their last
    /// valid spec.
    pub invalid_pools: BTreeMap<String, ManifestError>,
    /// Files (or, from the walk, directories and dangling links) that could not be read
    /// or parsed at all: pools last seen there are kept, and nothing is pruned while
    /// one exists.
    pub broken_files: BTreeSet<PathBuf>,
    /// How many files were read.
    pub files_read: usize,
    /// What each file read holds, for the prune rules (a pool is pruned only when its
    /// file is gone, or parses cleanly and no longer declares it).
    pub files: BTreeMap<PathBuf, FileReport>,
}

/// What one file held, as far as pruning is concerned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileReport {
    /// Pools its documents name, valid or not.
    pub pools: BTreeSet<String>,
    /// Errors found in it (a file that could not be read or parsed has at least one).
    pub errors: usize,
    /// Documents of kind `FunctionPool` skipped for another API group: most likely a
    /// misspelt `apiVersion` (`invok.de/v1alpha1`), so not a sign that a pool was dropped.
    pub foreign_pools: usize,
    /// Non-empty documents in it, of any group.
    pub documents: usize,
}

impl FileReport {
    /// Why pools this file declared before but not now must be kept running, if they
    /// must: it has errors, a misspelt-looking `FunctionPool`, or no pool at all (only
    /// other resources, or nothing: an editor's truncate-and-rewrite, a half-done write).
    /// `None`: the file parses cleanly and declares other pools, so a pool missing from
    /// it was removed on purpose.
    pub fn keeps_dropped_pools(&self) -> Option<&'static str> {
        if self.errors > 0 {
            Some("the file has errors")
        } else if self.foreign_pools > 0 {
            Some("the file holds a FunctionPool of another apiVersion group (a typo?)")
        } else if self.pools.is_empty() && self.documents == 0 {
            Some("the file is empty")
        } else if self.pools.is_empty() {
            Some("the file declares no pool, only resources of other groups")
        } else {
            None
        }
    }

    /// True when this file may hide a pool the operator cannot see, so nothing may be
    /// pruned while it is so: errors, a misspelt-looking `FunctionPool`, or, when it
    /// `declared_pools` on the last read, no document at all (an editor's
    /// truncate-and-rewrite seen mid-way). An empty file that never declared a pool
    /// (a placeholder, a comment) hides nothing.
    pub fn may_hide_pools(&self, declared_pools: bool) -> bool {
        self.errors > 0 || self.foreign_pools > 0 || (self.documents == 0 && declared_pools)
    }
}

impl ManifestSet {
    /// True when nothing was wrong.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }
}

/// The directory itself could not be read, so nothing in it can be trusted (and nothing
/// may be pruned because of it).
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct DirError {
    /// The directory.
    pub path: PathBuf,
    /// Why it could not be read.
    pub reason: String,
}

/// Reads a manifest directory (recursively) as the operator does, through
/// [`files::walk`] (see there what symbolic links mean).
///
/// Fails only when the directory itself is missing or unreadable; problems inside it
/// (files with errors, dangling links, subdirectories that cannot be listed) are
/// reported in the returned set, and such a file holds prunes up.
pub fn load_dir(dir: &Path, defaults: &ScalingDefaults) -> Result<ManifestSet, DirError> {
    let dir_error = |reason: String| DirError {
        path: dir.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(dir).map_err(|e| dir_error(e.to_string()))?;
    if !meta.is_dir() {
        return Err(dir_error("not a directory".into()));
    }
    let walk = files::walk(dir, true).map_err(|e| dir_error(e.to_string()))?;
    let mut set = ManifestSet::default();
    add_walk_problems(&mut set, &walk);
    Ok(merge_loaded(set, load_files(&walk.files, defaults)))
}

/// Reads files and directories as `invok validate` takes them: a file named explicitly is
/// read whatever its extension; directories are walked for `.yaml`/`.yml` files.
pub fn load_paths(paths: &[PathBuf], defaults: &ScalingDefaults) -> ManifestSet {
    let mut files = Vec::new();
    let mut set = ManifestSet::default();
    for p in paths {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => match files::walk(p, true) {
                Ok(walk) => {
                    add_walk_problems(&mut set, &walk);
                    files.extend(walk.files);
                }
                Err(e) => set
                    .errors
                    .push(file_error(p, format!("cannot read directory: {e}"))),
            },
            Ok(_) => files.push(p.clone()),
            Err(e) => set.errors.push(file_error(p, format!("cannot read: {e}"))),
        }
    }
    merge_loaded(set, load_files(&files, defaults))
}

/// Records what a walk could not read (errors that hold prunes up) and skipped.
fn add_walk_problems(set: &mut ManifestSet, walk: &files::Walk) {
    for (path, why) in &walk.broken {
        set.errors.push(file_error(path, why.clone()));
        set.broken_files.insert(path.clone());
        set.files.entry(path.clone()).or_default().errors += 1;
    }
    for (path, message) in &walk.notices {
        set.notices.push(Notice {
            location: Location {
                file: path.clone(),
                line: 1,
                column: 1,
            },
            message: message.clone(),
        });
    }
}

/// `loaded` with the errors, notices and broken files found before loading first.
fn merge_loaded(mut before: ManifestSet, mut loaded: ManifestSet) -> ManifestSet {
    before.errors.append(&mut loaded.errors);
    before.notices.append(&mut loaded.notices);
    loaded.errors = before.errors;
    loaded.notices = before.notices;
    loaded.broken_files.append(&mut before.broken_files);
    for (path, report) in before.files {
        loaded.files.entry(path).or_insert(report);
    }
    loaded
}

/// Parses manifest text as if it were the file `file` (used for stdin and tests).
pub fn load_str(file: &Path, text: &str, defaults: &ScalingDefaults) -> ManifestSet {
    let mut set = ManifestSet {
        files_read: 1,
        ..Default::default()
    };
    let mut seen = BTreeMap::new();
    read_text(file, text, defaults, &mut set, &mut seen);
    count_errors_per_file(&mut set);
    set
}

fn file_error(file: &Path, message: String) -> ManifestError {
    ManifestError {
        location: Location {
            file: file.to_path_buf(),
            line: 1,
            column: 1,
        },
        field: None,
        message,
    }
}

fn load_files(files: &[PathBuf], defaults: &ScalingDefaults) -> ManifestSet {
    let mut set = ManifestSet::default();
    let mut seen: BTreeMap<String, Location> = BTreeMap::new();
    for file in files {
        set.files_read += 1;
        match files::read_manifest(file) {
            Ok(text) => read_text(file, &text, defaults, &mut set, &mut seen),
            Err(e) => {
                set.errors.push(file_error(file, e.to_string()));
                set.broken_files.insert(file.clone());
            }
        }
    }
    count_errors_per_file(&mut set);
    set
}

/// Fills in [`FileReport::errors`] from the errors found (every error names its file).
fn count_errors_per_file(set: &mut ManifestSet) {
    for e in &set.errors {
        let report = set.files.entry(e.location.file.clone()).or_default();
        report.errors = report.errors.saturating_add(1);
    }
}

fn read_text(
    file: &Path,
    text: &str,
    defaults: &ScalingDefaults,
    set: &mut ManifestSet,
    seen: &mut BTreeMap<String, Location>,
) {
    let at = |line: usize, column: usize| Location {
        file: file.to_path_buf(),
        line,
        column,
    };
    set.files.entry(file.to_path_buf()).or_default();
    let positions = match Positions::parse(text) {
        Ok(p) => p,
        Err((line, column, message)) => {
            set.errors.push(ManifestError {
                location: at(line, column),
                field: None,
                message: format!("invalid YAML: {message}"),
            });
            set.broken_files.insert(file.to_path_buf());
            return;
        }
    };
    for (index, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let doc_pos = positions.document(index);
        let locate = |field: &str| {
            let (line, column) = doc_pos.map(|d| d.find(field)).unwrap_or((1, 1));
            at(line, column)
        };
        let value = match serde_yaml::Value::deserialize(doc) {
            Ok(v) => v,
            Err(e) => {
                let (line, column) = e
                    .location()
                    .map(|l| (l.line(), l.column()))
                    .unwrap_or((1, 1));
                set.errors.push(ManifestError {
                    location: at(line, column),
                    field: None,
                    message: format!("invalid YAML: {e}"),
                });
                set.broken_files.insert(file.to_path_buf());
                return;
            }
        };
        let error = |field: &str, message: String| ManifestError {
            location: locate(field),
            field: (!field.is_empty()).then(|| field.to_string()),
            message,
        };
        if !value.is_null() {
            if let Some(report) = set.files.get_mut(file) {
                report.documents = report.documents.saturating_add(1);
            }
        }
        let map = match &value {
            serde_yaml::Value::Null => continue,
            serde_yaml::Value::Mapping(m) => m,
            _ => {
                set.errors.push(error(
                    "",
                    "expected a mapping with apiVersion, kind, metadata and spec".into(),
                ));
                continue;
            }
        };
        let name = map
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(|n| n.as_str())
            .map(str::to_string);
        let api_version = map.get("apiVersion").and_then(|v| v.as_str());
        let kind = map.get("kind").and_then(|v| v.as_str());
        let (Some(api_version), Some(kind)) = (api_version, kind) else {
            let missing = if api_version.is_none() {
                "apiVersion"
            } else {
                "kind"
            };
            reject(set, name.as_deref(), error(
                "",
                format!("document has no {missing}: every document needs apiVersion and kind (apiVersion: {API_VERSION}, kind: {KIND})"),
            ));
            continue;
        };
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        if group == GROUP {
            if let (Some(name), Some(report)) = (&name, set.files.get_mut(file)) {
                report.pools.insert(name.clone());
            }
        }
        if group != GROUP {
            if kind == KIND {
                if let Some(report) = set.files.get_mut(file) {
                    report.foreign_pools = report.foreign_pools.saturating_add(1);
                }
            }
            set.notices.push(Notice {
                location: locate(""),
                message: format!(
                    "skipped {kind} of apiVersion {api_version}: not an {GROUP} resource"
                ),
            });
            continue;
        }
        if version != VERSION {
            reject(
                set,
                name.as_deref(),
                error(
                    "apiVersion",
                    format!(
                        "unsupported version {api_version:?}: this build understands {API_VERSION}"
                    ),
                ),
            );
            continue;
        }
        if kind != KIND {
            reject(
                set,
                name.as_deref(),
                error(
                    "kind",
                    format!("unknown kind {kind:?} in {GROUP}: expected {KIND}"),
                ),
            );
            continue;
        }
        let manifest: FunctionPool = match serde_path_to_error::deserialize(value) {
            Ok(m) => m,
            Err(e) => {
                let path = e.path().to_string();
                let field = if path == "." { String::new() } else { path };
                let message = explain_serde_error(&e.into_inner().to_string());
                reject(set, name.as_deref(), error(&field, message));
                continue;
            }
        };
        let spec = match manifest.validate(defaults) {
            Ok(spec) => spec,
            Err(errs) => {
                for e in errs {
                    reject(
                        set,
                        Some(&manifest.metadata.name),
                        error(&e.path, e.message),
                    );
                }
                continue;
            }
        };
        let source = locate("");
        if let Some(first) = seen.get(&spec.name) {
            let e = error(
                "metadata.name",
                format!("pool {:?} is declared twice; first at {first}", spec.name),
            );
            set.pools.remove(&spec.name);
            reject(set, Some(&spec.name), e);
            continue;
        }
        seen.insert(spec.name.clone(), locate("metadata.name"));
        if set.invalid_pools.contains_key(&spec.name) {
            continue;
        }
        set.pools.insert(
            spec.name.clone(),
            LoadedPool {
                manifest,
                spec,
                source,
            },
        );
    }
}

/// Records an error, and the first error of its pool when the document names one.
fn reject(set: &mut ManifestSet, pool: Option<&str>, e: ManifestError) {
    if let Some(pool) = pool {
        // A pool with any invalid document is invalid, whichever document came first:
        // the outcome must not depend on the order of file names.
        set.pools.remove(pool);
        set.invalid_pools
            .entry(pool.to_string())
            .or_insert_with(|| e.clone());
    }
    set.errors.push(e);
}

/// Makes serde's messages read well and suggests the closest field name for typos.
fn explain_serde_error(message: &str) -> String {
    let message = message.replace('`', "");
    if let Some(rest) = message.strip_prefix("unknown field ") {
        if let Some((field, expected)) = rest.split_once(", expected one of ") {
            let options: Vec<&str> = expected.split(", ").map(str::trim).collect();
            let best = options
                .iter()
                .map(|o| (strsim::jaro_winkler(field, o), *o))
                .max_by(|a, b| a.0.total_cmp(&b.0));
            let hint = match best {
                Some((score, o)) if score > 0.8 => format!("; did you mean {o}?"),
                _ => String::new(),
            };
            return format!(
                "unknown field, expected one of {}{hint}",
                options.join(", ")
            );
        }
        if let Some((_, expected)) = rest.split_once(", expected ") {
            return format!("unknown field, expected {expected}");
        }
        return "unknown field".to_string();
    }
    message
}

#[cfg(test)]
mod tests;

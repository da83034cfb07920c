//! The desired state: what the manifest directory declares, and the prune rules.
//!
//! Every full read of the directory is applied here ([`Desired::apply`]); the reconciler
//! asks [`Desired::may_prune`] before it removes a pool's containers. Kept apart from the
//! loop so the rules that decide what may be deleted can be read, and tested, alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::api::{EffectiveSpec, FunctionPool};
use crate::manifest::{FileReport, Location, ManifestSet};

/// What becomes of a pool the last read declared and this one does not.
enum Dropped {
    /// Its document is invalid now: the last valid spec keeps running.
    Invalid,
    /// Its file cannot be trusted to have dropped it: kept, reported invalid.
    Kept(String),
    /// Another file that may declare it cannot be read: kept until it can.
    Blocked(String),
    /// Gone on this read only: pruned if the next read agrees.
    Pending,
    /// Two reads agree: pruned.
    Gone,
}

/// A pool as the manifests declare it.
#[derive(Clone, Debug)]
pub struct DesiredPool {
    /// The validated spec in force (the last valid one).
    pub spec: Arc<EffectiveSpec>,
    /// What the user wrote.
    pub manifest: FunctionPool,
    /// Where.
    pub source: Location,
}

/// The desired state: every pool the directory declares, and what could not be read.
///
/// The prune rules live here, and they lose nothing on a broken edit:
/// - a pool whose document is invalid, or whose file has errors, holds a `FunctionPool`
///   of another group (a misspelt `apiVersion`), is empty, or declares no pool any more,
///   keeps its last valid spec and is reported invalid;
/// - a pool is pruned only when its file is gone, or parses cleanly and no longer
///   declares it, and only when a second read at least one debounce later agrees (a
///   `git pull` that moves a pool between files, or an editor's truncate-and-rewrite,
///   is seen mid-way by the first read, never by both);
/// - containers of pools no manifest declares (orphans) are pruned only after two reads
///   agree, and never while a file that may hide a pool cannot be read cleanly (errors, a
///   misspelt-group `FunctionPool`, or an empty file that declared pools before).
#[derive(Debug, Default)]
pub struct Desired {
    /// Pools with a valid spec (current, or the last valid one).
    pub pools: BTreeMap<String, DesiredPool>,
    /// Pools whose manifest is currently invalid, with the first error.
    pub invalid: BTreeMap<String, String>,
    /// The directory has been read successfully at least once.
    pub synced: bool,
    /// Some file may hide pools this operator has not seen (it has errors, a misspelt
    /// group, or no document at all: after a restart an empty file may be one caught
    /// mid-rewrite): containers of pools never declared here (orphans) are not pruned.
    pub prune_blocked: bool,
    /// Some file may hide a pool this operator knew (errors, a misspelt group, or emptied
    /// after it declared pools): no pool is pruned, not even one seen deleted.
    pub deletion_blocked: bool,
    /// Pools this operator saw deleted (two reads agreed, nothing blocked): their
    /// containers may go even while an empty placeholder file holds orphan prunes up.
    pub released: BTreeSet<String>,
    /// The errors of the last read.
    pub errors: Vec<String>,
    /// Pools the last read found gone: pruned if the next read agrees.
    pub pending_prune: BTreeSet<String>,
    /// Successful reads applied.
    pub reads: u64,
}

impl Desired {
    /// Applies a full read of the directory; returns the pools that changed.
    pub fn apply(&mut self, set: ManifestSet) -> BTreeSet<String> {
        self.log_new_errors(&set.errors);
        let mut invalid: BTreeMap<String, String> = set
            .invalid_pools
            .iter()
            .map(|(name, e)| (name.clone(), e.to_string()))
            .collect();
        let (mut next, mut changed) = self.declared(set.pools);
        let blocker = self.blocker(&set.broken_files, &set.files);
        let mut pending = BTreeSet::new();
        for (name, old) in std::mem::take(&mut self.pools) {
            if next.contains_key(&name) {
                continue;
            }
            match self.dropped(&name, &old, &set.files, blocker, &invalid) {
                // Invalid now: keep the last valid spec running.
                Dropped::Invalid => {}
                Dropped::Kept(text) => {
                    invalid.insert(name.clone(), text);
                }
                Dropped::Blocked(text) => {
                    invalid.insert(name.clone(), text);
                    pending.insert(name.clone());
                }
                Dropped::Pending => {
                    pending.insert(name.clone());
                }
                Dropped::Gone => {
                    self.released.insert(name.clone());
                    changed.insert(name);
                    continue;
                }
            }
            next.insert(name, old);
        }
        changed.extend(self.invalid_changes(&invalid));
        let blocked = blocker.is_some();
        self.prune_blocked = blocked || set.files.values().any(|f| f.documents == 0);
        self.deletion_blocked = blocked;
        self.pools = next;
        self.invalid = invalid;
        self.pending_prune = pending;
        self.released.retain(|name| !self.pools.contains_key(name));
        self.errors = set.errors.iter().map(|e| e.to_string()).collect();
        self.synced = true;
        self.reads = self.reads.saturating_add(1);
        changed
    }

    /// Logs each problem once, when it appears, not on every rescan.
    fn log_new_errors(&self, errors: &[crate::manifest::ManifestError]) {
        for e in errors {
            let text = e.to_string();
            if !self.errors.contains(&text) {
                tracing::warn!("invalid manifest: {text}");
            }
        }
    }

    /// The pools a read declares, and those whose spec differs from the last read's.
    fn declared(
        &self,
        pools: BTreeMap<String, crate::manifest::LoadedPool>,
    ) -> (BTreeMap<String, DesiredPool>, BTreeSet<String>) {
        let mut changed = BTreeSet::new();
        let mut next = BTreeMap::new();
        for (name, p) in pools {
            let spec = Arc::new(p.spec);
            if self.pools.get(&name).is_none_or(|old| *old.spec != *spec) {
                changed.insert(name.clone());
            }
            let pool = DesiredPool {
                spec,
                manifest: p.manifest,
                source: p.source,
            };
            next.insert(name, pool);
        }
        (next, changed)
    }

    /// A file that cannot be trusted may declare any pool: nothing is pruned while one
    /// exists. Untrusted: errors, a misspelt-group FunctionPool, or an empty file that
    /// declared pools on the last read (an editor's truncate-and-rewrite, mid-way).
    fn blocker<'a>(
        &self,
        broken_files: &'a BTreeSet<PathBuf>,
        files: &'a BTreeMap<PathBuf, FileReport>,
    ) -> Option<&'a Path> {
        let declared_in: BTreeSet<&Path> = self
            .pools
            .values()
            .map(|p| p.source.file.as_path())
            .collect();
        broken_files
            .iter()
            .map(PathBuf::as_path)
            .chain(
                files
                    .iter()
                    .filter(|(f, r)| r.may_hide_pools(declared_in.contains(f.as_path())))
                    .map(|(f, _)| f.as_path()),
            )
            .next()
    }

    /// What becomes of a pool the last read declared and this one does not.
    fn dropped(
        &self,
        name: &str,
        old: &DesiredPool,
        files: &BTreeMap<PathBuf, FileReport>,
        blocker: Option<&Path>,
        invalid: &BTreeMap<String, String>,
    ) -> Dropped {
        if invalid.contains_key(name) {
            return Dropped::Invalid;
        }
        let file = &old.source.file;
        // A file seen deleted that comes back holding only other resources was
        // replaced, not caught mid-edit: the deletion stands.
        let replaced = self.pending_prune.contains(name)
            && files.get(file).is_some_and(|f| {
                f.errors == 0 && f.foreign_pools == 0 && f.documents > 0 && f.pools.is_empty()
            });
        let keep_why = files.get(file).and_then(|f| f.keeps_dropped_pools());
        if let Some(why) = keep_why.filter(|_| !replaced) {
            let text = format!(
                "{}: pool {name} is no longer declared there and {why}; keeping its last valid spec running (fix the file, or remove the pool's document from a file that parses cleanly, or delete the file, to remove it)",
                file.display()
            );
            self.warn_once(name, &text);
            return Dropped::Kept(text);
        }
        if let Some(blocker) = blocker {
            let text = format!(
                "{}: pool {name} is no longer declared there, but {} cannot be read cleanly and may declare it; keeping its last valid spec running until it can",
                file.display(),
                blocker.display()
            );
            self.warn_once(name, &text);
            Dropped::Blocked(text)
        } else if self.pending_prune.contains(name) {
            // Two reads agree: the pool is gone.
            Dropped::Gone
        } else {
            Dropped::Pending
        }
    }

    fn warn_once(&self, name: &str, text: &str) {
        if self.invalid.get(name).is_none_or(|t| t != text) {
            tracing::warn!("{text}");
        }
    }

    /// Pools whose problem appeared, changed or went away (not every invalid pool on
    /// every read: a rescan with nothing new wakes nothing).
    fn invalid_changes(&self, invalid: &BTreeMap<String, String>) -> BTreeSet<String> {
        let appeared = invalid
            .iter()
            .filter(|(name, text)| self.invalid.get(*name) != Some(*text))
            .map(|(name, _)| name.clone());
        let gone = self
            .invalid
            .keys()
            .filter(|name| !invalid.contains_key(*name))
            .cloned();
        appeared.chain(gone).collect()
    }

    /// True when the next read should come soon (one debounce), not at the rescan
    /// interval: a prune waits for it to agree, or orphans wait for a second read.
    /// While a broken file blocks pruning, the next read waits for a change to the
    /// directory (or the rescan): reading every debounce would only parse it again.
    pub fn wants_confirming_read(&self) -> bool {
        (!self.pending_prune.is_empty() && !self.deletion_blocked) || self.reads == 1
    }

    /// True when containers of `pool` may be removed because no manifest declares it.
    pub fn may_prune(&self, pool: &str) -> bool {
        let blocked = if self.released.contains(pool) {
            self.deletion_blocked
        } else {
            self.prune_blocked
        };
        self.synced
            && self.reads >= 2
            && !blocked
            && !self.pools.contains_key(pool)
            && !self.invalid.contains_key(pool)
    }
}

#[cfg(test)]
mod tests;

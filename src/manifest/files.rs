//! The manifest directory as files: the one walker every reader uses (`invok run`,
//! `invok validate`, `invok apply`, `diff` and `delete`), the one splitter of a file's
//! text into its documents (for writers, which keep comments), and atomic writes.
//!
//! # Symbolic links
//!
//! A visible name that is a symbolic link is followed, to a file or a directory, even
//! when the target is hidden. Hidden entries themselves (names starting with `.`) are
//! never walked. That is exactly what a Kubernetes ConfigMap mount needs: it is a tree
//! of links, `web.yaml -> ..data/web.yaml` and `..data -> ..2026_12_03_10_00_00.1234`,
//! with the real files in the hidden timestamped directory; each file is read once,
//! through its visible name, and swapping `..data` (an atomic rename) swaps every spec
//! at once. A link whose target is missing (dangling) is an error, never silence, when
//! it has a manifest name or the walk is recursive (where it may have been a directory
//! of pools, a mount gone away): it may hide pools, so nothing is pruned because of it. A
//! directory reached twice (a link back up the tree) is walked once and the second
//! path is reported as a notice; a walk always ends.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::api::{GROUP, KIND};

/// True for files a directory walk reads: `.yaml`/`.yml`, not hidden, not an editor's
/// temporary or backup file.
pub fn is_manifest_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let hidden_or_temp = name.starts_with('.')
        || name.starts_with('#')
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".tmp");
    !hidden_or_temp && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

/// The largest manifest file read, in bytes: 1.5 MiB, as Kubernetes refuses larger
/// objects (etcd's request limit). A pool's manifest is a few hundred bytes; a file
/// above this is a mistake (a log, a dump) or an attack, and is refused without being
/// read whole: its pools keep their last good spec, as for any broken file.
pub const MAX_MANIFEST_BYTES: u64 = 1536 * 1024;

/// Why a manifest file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    /// The file is larger than [`MAX_MANIFEST_BYTES`].
    #[error("file is over the manifest size limit of {MAX_MANIFEST_BYTES} bytes (1.5 MiB, as Kubernetes); a pool's manifest is a few hundred bytes")]
    TooLarge,
    /// The file is not UTF-8 text.
    #[error("not valid UTF-8 text")]
    NotUtf8,
}

/// Reads a manifest file's text, at most [`MAX_MANIFEST_BYTES`] of it: a larger file
/// (or one growing while read) is refused after reading one byte past the limit.
pub fn read_manifest(path: &Path) -> Result<String, ReadError> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(ReadError::TooLarge);
    }
    String::from_utf8(bytes).map_err(|_| ReadError::NotUtf8)
}

/// What a walk found.
#[derive(Debug, Default)]
pub struct Walk {
    /// Manifest files (`.yaml`/`.yml`, not hidden, not an editor's temporary), sorted
    /// by path within each directory.
    pub files: Vec<PathBuf>,
    /// Entries that could not be read and may hide pools (a dangling link, a
    /// subdirectory that cannot be listed), with why.
    pub broken: Vec<(PathBuf, String)>,
    /// Things skipped on purpose that a user may want to know (a directory reached a
    /// second time through a link), with where.
    pub notices: Vec<(PathBuf, String)>,
}

/// Lists the manifest files under `dir`: the top level only, or every level when
/// `recursive`. Fails only when `dir` itself cannot be listed.
pub fn walk(dir: &Path, recursive: bool) -> std::io::Result<Walk> {
    let mut walk = Walk::default();
    let mut visited = BTreeSet::new();
    if let Ok(real) = std::fs::canonicalize(dir) {
        visited.insert(real);
    }
    let entries = sorted_entries(dir)?;
    walk_entries(entries, recursive, &mut visited, &mut walk);
    Ok(walk)
}

fn sorted_entries(dir: &Path) -> std::io::Result<Vec<std::fs::DirEntry>> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    Ok(entries)
}

fn walk_entries(
    entries: Vec<std::fs::DirEntry>,
    recursive: bool,
    visited: &mut BTreeSet<PathBuf>,
    walk: &mut Walk,
) {
    for entry in entries {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        // `metadata` follows links: a linked file or directory counts as what it is.
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() && recursive => walk_subdir(&path, visited, walk),
            Ok(m) if m.is_file() && is_manifest_file(&path) => walk.files.push(path),
            Ok(_) => {}
            // A link to nothing under a manifest name may be a pool mid-update; in a
            // recursive walk any such link may be a directory of pools (a mount that
            // went away): either way it holds prunes up rather than read as "no pools".
            Err(e) if recursive || is_manifest_file(&path) => {
                let why = if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_symlink()) {
                    format!("symbolic link to nothing readable ({e})")
                } else {
                    format!("cannot read: {e}")
                };
                walk.broken.push((path, why));
            }
            Err(_) => {}
        }
    }
}

fn walk_subdir(path: &Path, visited: &mut BTreeSet<PathBuf>, walk: &mut Walk) {
    match std::fs::canonicalize(path) {
        Ok(real) if !visited.insert(real.clone()) => walk.notices.push((
            path.to_path_buf(),
            format!("leads to {}, already read; not read twice", real.display()),
        )),
        _ => match sorted_entries(path) {
            Ok(entries) => walk_entries(entries, true, visited, walk),
            Err(e) => walk
                .broken
                .push((path.to_path_buf(), format!("cannot read directory: {e}"))),
        },
    }
}

/// Splits YAML text into its documents, each from its `---` line (if any) up to the
/// next one. Joined back together they give the text unchanged, comments included.
///
/// It splits where YAML does (a `---` at the start of a line, alone or before a space),
/// so its documents are the ones the loader parses; a test checks that they agree.
///
/// ```
/// use invok::manifest::files::split_documents;
/// let text = "# a\nkind: A\n---\nkind: B\n";
/// assert_eq!(split_documents(text), ["# a\nkind: A\n", "---\nkind: B\n"]);
/// assert_eq!(split_documents(text).concat(), text);
/// ```
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

/// The name of the FunctionPool a document declares, if it declares one (valid or
/// not): the writers find a pool's document by it.
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
pub fn is_blank(doc: &str) -> bool {
    matches!(
        serde_yaml::from_str::<serde_yaml::Value>(doc),
        Ok(serde_yaml::Value::Null)
    )
}

/// Replaces `path` with `text` atomically, so the operator reads the old text or the
/// new, never half of one: a temporary file with an unpredictable name is created in
/// the same directory (exclusively: it never follows a planted link), written, flushed,
/// given the old file's permissions, and renamed over `path`. On any error (a full
/// disk, say) the temporary file is removed and `path` is untouched.
///
/// The temporary file's name starts with `.`, so a reader walking the directory at that
/// moment skips it.
pub fn atomic_write(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".invok-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    // The temporary file is made 0600; the file it becomes keeps the mode of the one it
    // replaces, or gets what a plain create would give it (0666 less the umask), so an
    // operator running as another user can still read a pool applied with sudo.
    let mode = match std::fs::metadata(path) {
        Ok(meta) => meta.permissions(),
        Err(_) => std::fs::Permissions::from_mode(0o666 & !umask()),
    };
    tmp.as_file().set_permissions(mode)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir);
    Ok(())
}

/// This process's umask, from `/proc/self/status` (reading it with `umask(2)` would set
/// it too, and needs `unsafe`); 022, the usual one, where that cannot be read.
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Umask:"))?;
            u32::from_str_radix(line.trim_start_matches("Umask:").trim(), 8).ok()
        })
        .unwrap_or(0o022)
}

/// Removes `path`, making the removal durable.
pub fn remove_file(path: &Path) -> std::io::Result<()> {
    std::fs::remove_file(path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir);
    }
    Ok(())
}

/// Makes a rename or removal in `dir` durable; not every filesystem allows syncing a
/// directory, and the change itself has happened either way.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_manifest_over_the_size_limit_is_refused_and_one_at_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join("at.yaml");
        let mut text = "# ".to_string();
        text.push_str(&"x".repeat(MAX_MANIFEST_BYTES as usize - 3));
        text.push('\n');
        std::fs::write(&at, &text).unwrap();
        assert_eq!(read_manifest(&at).unwrap().len() as u64, MAX_MANIFEST_BYTES);
        let over = dir.path().join("over.yaml");
        text.push('\n');
        std::fs::write(&over, &text).unwrap();
        let e = read_manifest(&over).unwrap_err();
        assert!(matches!(e, ReadError::TooLarge), "{e}");
        assert!(e.to_string().contains("1.5 MiB"), "{e}");
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, b"name: \xff\n").unwrap();
        assert!(matches!(read_manifest(&bad), Err(ReadError::NotUtf8)));
    }

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

    const POOL: &str =
        "apiVersion: invok.dev/v1alpha1\nkind: FunctionPool\nmetadata:\n  name: web\nspec:\n  image: a\n";

    fn names(walk: &Walk, root: &Path) -> Vec<String> {
        walk.files
            .iter()
            .map(|p| p.strip_prefix(root).unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn the_splitter_finds_the_documents_the_loader_parses() {
        let texts = [
            POOL.to_string(),
            format!("# head\n{POOL}---\n{}", POOL.replace("web", "api")),
            format!(
                "---\n{POOL}--- # trailing comment\n{}---\n",
                POOL.replace("web", "db")
            ),
            "a: |\n  ---not a separator\n  text\n---\nb: 2\n".to_string(),
            "# only comments\n---\n---\n".to_string(),
            format!("# preamble\n---\n{POOL}"),
        ];
        for text in texts {
            // Every document with content, in order. (Blank chunks differ harmlessly:
            // a comment-only preamble is a chunk of its own to the splitter, which keeps
            // it as text, and part of the next document to YAML.)
            let parsed: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
                .map(|d| serde::Deserialize::deserialize(d).unwrap())
                .filter(|v: &serde_yaml::Value| !v.is_null())
                .collect();
            let split: Vec<serde_yaml::Value> = split_documents(&text)
                .iter()
                .filter(|d| !is_blank(d))
                .map(|d| serde_yaml::from_str(d).unwrap())
                .collect();
            assert_eq!(split, parsed, "{text:?}");
        }
    }

    #[test]
    fn a_configmap_mount_is_read_once_through_its_visible_links_and_swaps_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let v1 = root.join("..2026_12_03_10_00_00.1");
        std::fs::create_dir(&v1).unwrap();
        std::fs::write(v1.join("web.yaml"), POOL).unwrap();
        symlink("..2026_12_03_10_00_00.1", root.join("..data")).unwrap();
        symlink("..data/web.yaml", root.join("web.yaml")).unwrap();
        let walk = walk(root, true).unwrap();
        assert_eq!(names(&walk, root), ["web.yaml"]);
        assert!(
            walk.broken.is_empty() && walk.notices.is_empty(),
            "{walk:?}"
        );
        assert!(std::fs::read_to_string(&walk.files[0])
            .unwrap()
            .contains("image: a"));
        // Kubernetes' update: a new timestamped directory, a new link, one rename.
        let v2 = root.join("..2026_12_03_10_05_00.2");
        std::fs::create_dir(&v2).unwrap();
        std::fs::write(v2.join("web.yaml"), POOL.replace("image: a", "image: b")).unwrap();
        symlink("..2026_12_03_10_05_00.2", root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        std::fs::remove_dir_all(&v1).unwrap();
        let set = crate::manifest::load_dir(root, &Default::default()).unwrap();
        assert!(set.errors.is_empty(), "{:?}", set.errors);
        assert_eq!(set.pools["web"].spec.template.image, "b");
        assert_eq!(set.files.len(), 1, "read once: {:?}", set.files.keys());
    }

    #[test]
    fn a_dangling_link_is_an_error_of_its_file_and_holds_prunes_up() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("api.yaml"), POOL.replace("web", "api")).unwrap();
        symlink("..data/web.yaml", root.join("web.yaml")).unwrap();
        symlink("/mnt/gone", root.join("team-a")).unwrap();
        // The top level only: just the manifest name counts.
        let top = walk(root, false).unwrap();
        assert_eq!(top.broken.len(), 1, "{top:?}");
        assert_eq!(top.broken[0].0, root.join("web.yaml"));
        assert!(top.broken[0].1.contains("symbolic link"), "{top:?}");
        // Recursive: `team-a` may have been a directory of pools.
        let walk = walk(root, true).unwrap();
        assert_eq!(names(&walk, root), ["api.yaml"]);
        let broken: Vec<&PathBuf> = walk.broken.iter().map(|(p, _)| p).collect();
        assert_eq!(broken, [&root.join("team-a"), &root.join("web.yaml")]);
        let set = crate::manifest::load_dir(root, &Default::default()).unwrap();
        assert!(set.pools.contains_key("api"));
        assert!(set.broken_files.contains(&root.join("web.yaml")));
        assert!(set.broken_files.contains(&root.join("team-a")));
        assert!(set
            .errors
            .iter()
            .any(|e| e.to_string().contains("web.yaml")));
    }

    #[test]
    fn a_link_back_up_the_tree_is_walked_once_and_the_walk_ends() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("pools")).unwrap();
        std::fs::write(root.join("pools/web.yaml"), POOL).unwrap();
        symlink("..", root.join("pools/up")).unwrap();
        symlink("loop.yaml", root.join("loop.yaml")).unwrap();
        let walk = walk(root, true).unwrap();
        assert_eq!(names(&walk, root), ["pools/web.yaml"]);
        assert_eq!(walk.notices.len(), 1, "{walk:?}");
        assert_eq!(walk.notices[0].0, root.join("pools/up"));
        // A link to itself is a clear error of its own, not a hang.
        assert_eq!(walk.broken.len(), 1, "{walk:?}");
        assert_eq!(walk.broken[0].0, root.join("loop.yaml"));
    }

    #[test]
    fn the_top_level_only_unless_recursive_and_hidden_entries_never() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        for f in [
            "a.yaml",
            "b.yml",
            "sub/c.yaml",
            ".git/d.yaml",
            ".e.yaml",
            "f.yaml~",
            "g.txt",
        ] {
            std::fs::write(root.join(f), POOL).unwrap();
        }
        assert_eq!(
            names(&walk(root, false).unwrap(), root),
            ["a.yaml", "b.yml"]
        );
        assert_eq!(
            names(&walk(root, true).unwrap(), root),
            ["a.yaml", "b.yml", "sub/c.yaml"]
        );
    }

    #[test]
    fn an_atomic_write_replaces_the_file_keeps_its_mode_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yaml");
        std::fs::write(&path, "old\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        atomic_write(&path, "new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }

    #[test]
    fn a_new_file_gets_the_mode_a_plain_create_gives_not_the_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.yaml");
        std::fs::write(&plain, "x\n").unwrap();
        let applied = dir.path().join("applied.yaml");
        atomic_write(&applied, "x\n").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&applied), mode(&plain));
        assert_ne!(
            mode(&applied) & 0o044,
            0,
            "readable by others: {:o}",
            mode(&applied)
        );
    }

    #[test]
    fn a_failed_atomic_write_leaves_the_old_file_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yaml");
        std::fs::write(&path, "old\n").unwrap();
        // Renaming a file over a directory fails after the temporary file was written.
        let blocked = dir.path().join("blocked.yaml");
        std::fs::create_dir(&blocked).unwrap();
        let err = atomic_write(&blocked, "new\n").unwrap_err();
        assert!(!err.to_string().is_empty());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\n");
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        left.sort();
        assert_eq!(left, ["blocked.yaml", "web.yaml"]);
    }
}

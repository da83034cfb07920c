//! One operator per instance per Docker daemon.
//!
//! Two operators of the same instance on one daemon would fight: each removes what the
//! other creates as surplus. So whoever manages an instance (`invok run`, or the
//! programmatic API's [`crate::AutoscalingRuntime::start`]) first takes an exclusive
//! file lock named after the instance and the daemon's own identity
//! ([`crate::runtime::Runtime::daemon_id`], Docker's `ID` from `docker info`), and holds
//! it for as long as it runs. Keyed on the daemon rather than on how it is reached, the
//! lock is the same whether `DOCKER_HOST` is `unix:///var/run/docker.sock`,
//! `unix:///run/docker.sock` or unset; another daemon, or another instance, is another
//! lock.
//!
//! The lock is an advisory `flock` on `<dir>/<instance>@<daemon id>.lock`, so the kernel
//! releases it when its holder exits, however it exits: there is no stale lock to clean
//! up (a holder that ends normally also removes the file, so that locks of instances
//! gone do not pile up; one that dies leaves it, unlocked). The holder writes
//! `pid N, <who>` into the file, which a refused second operator quotes. The directory is `INVOK_LOCK_DIR`, else `/run/invok`, else the temporary
//! directory ([`dir`]). Operators on other hosts that manage the same remote daemon do
//! not see each other's locks.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::runtime::{Runtime, RuntimeError};

/// Why an instance could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another operator holds the instance on this daemon.
    #[error(
        "another Invok operator already manages instance {instance:?} on this Docker daemon \
         (ID {daemon}): {holder}. Stop it first, or give this one another instance name \
         (`invok run --instance`, `AutoscalingRuntimeBuilder::instance`); lock file: {}",
        path.display()
    )]
    Taken {
        /// The instance asked for.
        instance: String,
        /// The daemon's ID.
        daemon: String,
        /// What the holder wrote: its pid and what it is (`invok run` and its admin
        /// address, or the programmatic API).
        holder: String,
        /// The lock file.
        path: PathBuf,
    },
    /// The daemon could not tell who it is (unreachable, or no ID), so there is nothing to
    /// key the lock on.
    #[error("cannot lock instance {instance:?} before the Docker daemon says who it is: {source}")]
    Daemon {
        /// The instance asked for.
        instance: String,
        /// What the runtime said.
        source: RuntimeError,
    },
    /// The lock directory or file could not be made, opened or written.
    #[error("cannot use the instance lock {}: {source}", path.display())]
    Io {
        /// The directory or file concerned.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl LockError {
    /// True when the daemon could not be reached to learn its ID: worth retrying, unlike
    /// a lock that is taken.
    pub fn is_daemon_unavailable(&self) -> bool {
        matches!(self, LockError::Daemon { source, .. } if source.is_unavailable())
    }
}

/// An instance held on one daemon; the lock is released when this is dropped (or the
/// process ends).
#[derive(Debug)]
pub struct InstanceLock {
    /// Open and locked for as long as this lives.
    file: File,
    path: PathBuf,
    daemon: String,
}

impl Drop for InstanceLock {
    /// Removes the file, still locked, so that locks of instances gone do not pile up in
    /// the directory; then closing the file releases the lock. A file that is no longer
    /// ours (someone removed ours and another operator made a new one) stays.
    fn drop(&mut self) {
        if still_at(&self.file, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// How many times [`InstanceLock::for_daemon`] opens the path again when the file it
/// locked was removed meanwhile (by a holder letting go).
const LOCK_ATTEMPTS: usize = 10;

/// True when `path` still names the file `file` has open (not removed, not replaced).
fn still_at(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

/// [`LockError::Taken`], quoting what the holder wrote in `file`.
fn taken(file: &mut File, instance: &str, daemon: &str, path: PathBuf) -> LockError {
    let mut text = Vec::new();
    let _ = file.read_to_end(&mut text);
    let text = String::from_utf8_lossy(&text).trim().to_string();
    LockError::Taken {
        instance: instance.to_string(),
        daemon: daemon.to_string(),
        holder: if text.is_empty() {
            "its holder has not written its pid yet".to_string()
        } else {
            text
        },
        path,
    }
}

/// Maps an IO error on `path` to [`LockError::Io`].
fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> LockError {
    let path = path.to_path_buf();
    move |source| LockError::Io { path, source }
}

impl InstanceLock {
    /// Locks `instance` on the daemon `runtime` talks to, in [`dir`]. `holder` says who
    /// takes it (after `pid N, ` in the file), for the message another operator gets.
    ///
    /// ```no_run
    /// use invok::lock::InstanceLock;
    /// use invok::runtime::docker::DockerRuntime;
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let runtime = DockerRuntime::connect("web".to_string()).await?;
    /// let _lock = InstanceLock::acquire(&runtime, "web", "my service").await?;
    /// // ... manage the containers of instance `web` ...
    /// # Ok(()) }
    /// ```
    pub async fn acquire<R: Runtime>(
        runtime: &R,
        instance: &str,
        holder: &str,
    ) -> Result<InstanceLock, LockError> {
        InstanceLock::acquire_in(&dir(), runtime, instance, holder).await
    }

    /// [`InstanceLock::acquire`] in the directory `dir`.
    pub async fn acquire_in<R: Runtime>(
        dir: &Path,
        runtime: &R,
        instance: &str,
        holder: &str,
    ) -> Result<InstanceLock, LockError> {
        let daemon = runtime
            .daemon_id()
            .await
            .map_err(|source| LockError::Daemon {
                instance: instance.to_string(),
                source,
            })?;
        InstanceLock::for_daemon(dir, &daemon, instance, holder)
    }

    /// Locks `instance` on the daemon whose ID is `daemon`, in `dir` (created if
    /// missing). Does not block: a lock held elsewhere is [`LockError::Taken`] at once.
    ///
    /// ```
    /// use invok::lock::{InstanceLock, LockError};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let first = InstanceLock::for_daemon(dir.path(), "7ANO:A3IO", "web", "first").unwrap();
    /// let second = InstanceLock::for_daemon(dir.path(), "7ANO:A3IO", "web", "second");
    /// assert!(matches!(second, Err(LockError::Taken { .. })));
    /// drop(first);
    /// assert!(InstanceLock::for_daemon(dir.path(), "7ANO:A3IO", "web", "second").is_ok());
    /// ```
    pub fn for_daemon(
        dir: &Path,
        daemon: &str,
        instance: &str,
        holder: &str,
    ) -> Result<InstanceLock, LockError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let path = dir.join(file_name(instance, daemon));
        // A holder removes the file as it lets go: a file opened just before that is not
        // the lock any more once locked, so open the path again.
        for _ in 0..LOCK_ATTEMPTS {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io_error(&path))?;
            match file.try_lock() {
                Ok(()) if still_at(&file, &path) => {}
                Ok(()) => continue,
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(taken(&mut file, instance, daemon, path))
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io_error(&path)(e)),
            }
            let write = |file: &mut File| -> std::io::Result<()> {
                file.set_len(0)?;
                file.rewind()?;
                write!(file, "pid {}, {holder}", std::process::id())?;
                file.flush()
            };
            write(&mut file).map_err(io_error(&path))?;
            return Ok(InstanceLock {
                file,
                path,
                daemon: daemon.to_string(),
            });
        }
        Err(io_error(&path)(std::io::Error::other(
            "the lock file was replaced under every attempt to lock it",
        )))
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The ID of the daemon the instance is locked on.
    pub fn daemon_id(&self) -> &str {
        &self.daemon
    }
}

/// The lock directory: `INVOK_LOCK_DIR`, else `/run/invok` when it exists or can be
/// made, else the temporary directory.
pub fn dir() -> PathBuf {
    if let Some(d) = std::env::var_os("INVOK_LOCK_DIR") {
        return PathBuf::from(d);
    }
    let run = PathBuf::from("/run/invok");
    if std::fs::create_dir_all(&run).is_ok() {
        run
    } else {
        std::env::temp_dir()
    }
}

/// The lock file's name for `instance` on the daemon `daemon`:
/// `<instance>@<daemon>.lock`, each part kept to `[A-Za-z0-9.-]`, with `:` (which
/// Docker's IDs hold) written `_` and any other byte `%XX`, so that two different pairs
/// never share a file.
///
/// ```
/// assert_eq!(invok::lock::file_name("web", "7ANO:A3IO"), "web@7ANO_A3IO.lock");
/// ```
pub fn file_name(instance: &str, daemon: &str) -> String {
    format!("{}@{}.lock", escape(instance), escape(daemon))
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' {
            out.push(char::from(b));
        } else if b == b':' {
            out.push('_');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::memory::{MemoryRuntime, DAEMON_ID};

    #[test]
    fn the_lock_is_keyed_on_the_daemon_and_the_instance_only() {
        let dir = tempfile::tempdir().unwrap();
        let held = InstanceLock::for_daemon(dir.path(), "ID:A", "web", "invok run").unwrap();
        // The same daemon, however it was reached: the same lock.
        match InstanceLock::for_daemon(dir.path(), "ID:A", "web", "another") {
            Err(LockError::Taken {
                instance,
                daemon,
                holder,
                path,
            }) => {
                assert_eq!((instance.as_str(), daemon.as_str()), ("web", "ID:A"));
                assert_eq!(holder, format!("pid {}, invok run", std::process::id()));
                assert_eq!(path, held.path());
            }
            other => panic!("expected Taken, got {other:?}"),
        }
        // Another instance, or another daemon: free.
        let _other_instance = InstanceLock::for_daemon(dir.path(), "ID:A", "api", "x").unwrap();
        let _other_daemon = InstanceLock::for_daemon(dir.path(), "ID:B", "web", "x").unwrap();
    }

    #[test]
    fn a_released_lock_can_be_taken_again_and_names_its_new_holder() {
        let dir = tempfile::tempdir().unwrap();
        drop(
            InstanceLock::for_daemon(dir.path(), "D", "web", "first, with a longer note").unwrap(),
        );
        let _second = InstanceLock::for_daemon(dir.path(), "D", "web", "second").unwrap();
        let Err(LockError::Taken { holder, .. }) =
            InstanceLock::for_daemon(dir.path(), "D", "web", "third")
        else {
            panic!("the second holds it");
        };
        assert_eq!(holder, format!("pid {}, second", std::process::id()));
    }

    #[test]
    fn a_released_lock_removes_its_file_and_a_file_opened_before_is_not_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let held = InstanceLock::for_daemon(dir.path(), "D", "web", "first").unwrap();
        let path = held.path().to_path_buf();
        // What a second operator opened just before the holder let go.
        let opened_before = File::open(&path).unwrap();
        drop(held);
        assert!(!path.exists(), "the file goes with the lock");
        opened_before.try_lock().unwrap();
        assert!(
            !still_at(&opened_before, &path),
            "a removed file is not the lock"
        );
        let next = InstanceLock::for_daemon(dir.path(), "D", "web", "next").unwrap();
        assert!(!still_at(&opened_before, &path), "nor is it once replaced");
        assert!(still_at(&next.file, &path));
        // Someone removed the file while it was held and another operator made a new
        // one: the first, letting go, leaves the second's alone.
        std::fs::remove_file(&path).unwrap();
        let second = InstanceLock::for_daemon(dir.path(), "D", "web", "second").unwrap();
        drop(next);
        assert!(path.exists());
        drop(second);
        assert!(!path.exists());
    }

    #[test]
    fn the_message_names_the_instance_the_holder_the_file_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let _held = InstanceLock::for_daemon(
            dir.path(),
            "D",
            "web",
            "invok run, admin API 127.0.0.1:8081",
        )
        .unwrap();
        let err = InstanceLock::for_daemon(dir.path(), "D", "web", "x").unwrap_err();
        let msg = err.to_string();
        for part in [
            "\"web\"",
            "admin API 127.0.0.1:8081",
            &format!("pid {}", std::process::id()),
            &dir.path().join("web@D.lock").display().to_string(),
            "Stop it first",
            "another instance name",
        ] {
            assert!(msg.contains(part), "{part:?} missing from: {msg}");
        }
    }

    #[test]
    fn file_names_never_collide_and_stay_in_the_directory() {
        assert_eq!(file_name("web", "7ANO:A3IO"), "web@7ANO_A3IO.lock");
        assert_ne!(file_name("a_b", "d"), file_name("a/b", "d"));
        assert_ne!(file_name("a_b", "d"), file_name("a:b", "d"));
        assert_ne!(file_name("a@b", "c"), file_name("a", "b@c"));
        assert!(!file_name("../x", "/etc").contains('/'));
    }

    #[tokio::test]
    async fn the_runtime_names_the_daemon_the_lock_is_keyed_on() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = MemoryRuntime::new(&[]);
        let lock = InstanceLock::acquire_in(dir.path(), &*runtime, "web", "t")
            .await
            .unwrap();
        assert_eq!(lock.daemon_id(), DAEMON_ID);
        let again = InstanceLock::acquire_in(dir.path(), &*runtime, "web", "t").await;
        assert!(matches!(again, Err(LockError::Taken { .. })), "{again:?}");
    }

    #[tokio::test]
    async fn an_unreachable_daemon_is_a_retryable_error_and_creates_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = MemoryRuntime::new(&[]);
        runtime.set_outage(true);
        let err = InstanceLock::acquire_in(dir.path(), &*runtime, "web", "t")
            .await
            .unwrap_err();
        assert!(err.is_daemon_unavailable(), "{err:?}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}

//! Telling the operator that the manifest directory changed.
//!
//! Events are only a hint: editors save by rename and truncate, and `git pull` touches
//! many files at once, so the watcher debounces them and sends a bare "something
//! changed" signal. The receiver re-reads the whole directory; it never acts on the file
//! an event names. A periodic rescan covers what the watcher misses (and directories
//! that do not exist yet).

use std::path::Path;
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::{new_debouncer, DebounceEventResult, Debouncer, RecommendedCache};
use tokio::sync::mpsc;

/// Keeps the OS watch alive; dropping it stops the notifications.
pub struct DirWatcher {
    _debouncer: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
}

/// Watches `dir` recursively and sends `()` on `tx` at most once per `debounce` window
/// after changes settle. Sends never block: a pending signal already says "re-read".
pub fn watch_dir(
    dir: &Path,
    debounce: Duration,
    tx: mpsc::Sender<()>,
) -> notify::Result<DirWatcher> {
    let mut debouncer = new_debouncer(debounce, None, move |result: DebounceEventResult| {
        let relevant = match result {
            Ok(events) => events.iter().any(|e| !e.kind.is_access()),
            Err(_) => true,
        };
        if relevant {
            let _ = tx.try_send(());
        }
    })?;
    debouncer.watch(dir, RecursiveMode::Recursive)?;
    Ok(DirWatcher {
        _debouncer: debouncer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[tokio::test]
    async fn swapping_a_configmap_mounts_data_link_signals_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("..v1")).unwrap();
        std::fs::write(root.join("..v1/web.yaml"), "a: 1\n").unwrap();
        symlink("..v1", root.join("..data")).unwrap();
        symlink("..data/web.yaml", root.join("web.yaml")).unwrap();
        let (tx, mut rx) = mpsc::channel(1);
        let _watcher = watch_dir(root, Duration::from_millis(50), tx).unwrap();
        // Kubernetes' update: only hidden entries change; the visible link stays.
        std::fs::create_dir(root.join("..v2")).unwrap();
        std::fs::write(root.join("..v2/web.yaml"), "a: 2\n").unwrap();
        symlink("..v2", root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        let signalled = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
        assert_eq!(signalled, Ok(Some(())), "no change signalled within 10 s");
    }
}

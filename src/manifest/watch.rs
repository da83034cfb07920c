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

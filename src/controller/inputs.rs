//! The controller's inputs, each a loop that turns what it sees into triggers: the
//! manifest directory (debounced watch plus a periodic rescan) into the desired state,
//! Docker's container list (periodic, and on every event) and its event stream into the
//! observed store. A reconcile never reads an event itself, only the state these keep.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::StreamExt;
use tokio::time::Instant;

use super::backoff::Backoff;
use super::context::Shared;
use crate::manifest;
use crate::runtime::Runtime;

/// Re-reads the directory on (debounced) change and every `rescan_interval`.
pub(crate) async fn manifest_loop<R: Runtime>(shared: Arc<Shared<R>>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let mut watcher = None;
    let mut dir_missing_logged = false;
    loop {
        if watcher.is_none() {
            match manifest::watch::watch_dir(
                &shared.config.manifests,
                shared.config.debounce,
                tx.clone(),
            ) {
                Ok(w) => watcher = Some(w),
                Err(e) => {
                    tracing::debug!("not watching {}: {e}", shared.config.manifests.display())
                }
            }
        }
        let dir = shared.config.manifests.clone();
        let defaults = shared.config.defaults.clone();
        let read = tokio::task::spawn_blocking(move || manifest::load_dir(&dir, &defaults)).await;
        shared.health.manifest_reads.fetch_add(1, Ordering::Relaxed);
        match read {
            Ok(Ok(set)) => {
                dir_missing_logged = false;
                shared.apply_manifests(set);
            }
            Ok(Err(e)) => {
                if !dir_missing_logged {
                    tracing::warn!("cannot read manifest directory {e}; nothing is pruned until it can be read");
                    dir_missing_logged = true;
                }
                watcher = None;
            }
            Err(e) => tracing::error!("manifest reader panicked: {e}"),
        }
        let wait = if shared.desired().wants_confirming_read() {
            shared.config.debounce
        } else {
            shared.config.rescan_interval
        };
        tokio::select! {
            _ = rx.recv() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Lists this instance's containers every `relist_interval` and whenever asked.
pub(crate) async fn relist_loop<R: Runtime>(shared: Arc<Shared<R>>) {
    let mut failures = 0u32;
    loop {
        let listed_at = Instant::now();
        let listed = shared.runtime.list().await;
        shared.health.relists.fetch_add(1, Ordering::Relaxed);
        let wait = match listed {
            Ok(list) => {
                failures = 0;
                shared.health.docker(Ok(()));
                let changed = shared.store.apply_list(list, listed_at);
                for pool in changed {
                    shared.trigger.now(&pool);
                }
                shared.config.relist_interval
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                shared.metrics.docker_error("list");
                shared.health.docker(Err(e.to_string()));
                Backoff::RELIST.delay(failures, &shared.backoff_key("relist"))
            }
        };
        tokio::select! {
            _ = shared.relist_now.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Follows Docker events; each one asks for a relist and wakes its pool. When the stream
/// drops, resubscribes with backoff and relists (events may have been missed).
pub(crate) async fn docker_loop<R: Runtime>(shared: Arc<Shared<R>>) {
    let mut failures = 0u32;
    loop {
        // The stream reports events from the moment it is made (`since`), so a relist
        // asked for now misses nothing in between.
        let mut events = shared.runtime.events();
        shared.relist_now.notify_one();
        loop {
            match events.next().await {
                Some(Ok(ev)) => {
                    failures = 0;
                    tracing::debug!(pool = %ev.pool, action = %ev.action, "docker event");
                    shared.relist_now.notify_one();
                    shared.trigger.now(&ev.pool);
                }
                Some(Err(e)) => {
                    shared.metrics.docker_error("events");
                    shared.health.docker(Err(e.to_string()));
                    break;
                }
                None => break,
            }
        }
        failures = failures.saturating_add(1);
        tokio::time::sleep(Backoff::EVENTS.delay(failures, &shared.backoff_key("events"))).await;
        shared.relist_now.notify_one();
    }
}

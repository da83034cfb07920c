//! How the operator runs: the manifest directory, the instance, and the timings of the
//! loop. Every field has a sensible default ([`Config::new`]); `invok run` and the
//! programmatic API set the ones their users choose.

use std::path::PathBuf;
use std::time::Duration;

use crate::api::ScalingDefaults;

/// How the operator runs; every field has a sensible default.
#[derive(Clone, Debug)]
pub struct Config {
    /// The manifest directory.
    pub manifests: PathBuf,
    /// This operator's instance name (the `dev.invok.instance` label).
    pub instance: String,
    /// Defaults for omitted scaling fields.
    pub defaults: ScalingDefaults,
    /// Reconciles running at once (different pools).
    pub concurrency: usize,
    /// The directory is re-read this often even without events (safety net).
    pub rescan_interval: Duration,
    /// Containers are relisted this often even without events (repairs missed events).
    pub relist_interval: Duration,
    /// Quiet time after the last file event before the directory is re-read.
    pub debounce: Duration,
    /// A container not ready this long after it appeared is replaced.
    pub startup_timeout: Duration,
    /// SIGTERM grace before SIGKILL when a container is removed.
    pub stop_grace: Duration,
    /// After shutdown begins, running reconciles get this long to finish the Docker
    /// calls they have under way (no new ones start); then they are cancelled. Keeps
    /// SIGTERM-to-exit bounded (under 5 s) whatever the loop was doing.
    pub shutdown_grace: Duration,
    /// Read pools from `manifests`; off when pools are declared through
    /// [`super::Shared::declare_pool`] (the programmatic API).
    pub watch_manifests: bool,
}

impl Config {
    /// Defaults for a directory and instance.
    pub fn new(manifests: impl Into<PathBuf>, instance: impl Into<String>) -> Config {
        Config {
            manifests: manifests.into(),
            instance: instance.into(),
            defaults: ScalingDefaults::default(),
            concurrency: 8,
            rescan_interval: Duration::from_secs(30),
            relist_interval: Duration::from_secs(10),
            debounce: Duration::from_millis(150),
            startup_timeout: Duration::from_secs(60),
            stop_grace: Duration::from_secs(3),
            shutdown_grace: Duration::from_secs(3),
            watch_manifests: true,
        }
    }
}

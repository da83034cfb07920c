//! The control loop: desired pools from the manifest directory, observed containers from
//! Docker, and a reconcile per pool that converges the two.
//!
//! ```text
//! inputs: manifest watcher + rescan --> Desired ------+
//!                                                     +--> scheduler --> reconcile(pool) --> Runtime
//! inputs: docker events + relist ----> ObservedStore -+         ^    observe, decide,
//! probe, sampler, gateway ------------> ObservedStore ----------+    act, record
//! ```
//!
//! Every input is a trigger for the pools it concerns; the scheduler deduplicates them and
//! runs one reconcile per pool at a time. A reconcile reads the latest desired and
//! observed state (never the event that woke it), so missed or repeated events are
//! harmless, and a pass with nothing to do touches nothing.
//!
//! The files, each readable alone: [`config`] (how it runs), [`context`] (the state a
//! reconcile and the HTTP surfaces share), `inputs` (the loops that watch), `reconcile`
//! (the four steps) with `pass` (their data), `act` (the executor) and `record` (status,
//! events, metrics, logs), [`desired`] (the desired state and its prune rules), `pools`
//! (each pool's memory), [`status`] and [`report`] (what is shown), [`backoff`], [`health`].

#![deny(clippy::too_many_lines)]

mod act;
pub mod backoff;
pub mod config;
pub mod context;
pub mod desired;
pub mod health;
mod history;
mod inputs;
mod pass;
mod pools;
mod reconcile;
mod record;
pub mod report;
pub mod status;

use std::sync::Arc;

use crate::metrics::Metrics;
use crate::runtime::Runtime;

pub use crate::scheduler::{Action, Trigger};
pub use crate::store::ObservedStore;
pub use backoff::Backoff;
pub use config::Config;
pub use context::Shared;
pub use desired::{Desired, DesiredPool};
pub use health::Health;
pub use reconcile::STABLE_RUN;
pub use status::PoolStatus;

/// The operator: build it with [`Controller::new`], read through [`Controller::shared`],
/// and drive it with [`Controller::run`].
pub struct Controller<R> {
    shared: Arc<Shared<R>>,
    rx: crate::scheduler::Receiver,
}

impl<R: Runtime> Controller<R> {
    /// A controller over `runtime` with `config`.
    pub fn new(runtime: Arc<R>, config: Config) -> Controller<R> {
        let metrics = Arc::new(Metrics::new());
        let (trigger, rx) = crate::scheduler::channel();
        let depth = metrics.clone();
        let rx = rx.on_queue_depth(move |n| depth.set_queue_depth(n));
        let shared = Arc::new(Shared::new(runtime, config, trigger, metrics));
        Controller { shared, rx }
    }

    /// The state readers share.
    pub fn shared(&self) -> Arc<Shared<R>> {
        self.shared.clone()
    }

    /// Runs until `shutdown` resolves; then gives running reconciles
    /// [`Config::shutdown_grace`] to finish the calls under way (none starts a create or
    /// a removal after shutdown began), cancels what is left, and returns. Containers are
    /// left running.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send) {
        let shared = self.shared;
        tracing::info!(
            "Starting autoscaler with config: {:?}",
            crate::AutoscalerConfig::from_defaults(&shared.config.defaults)
        );
        let mut tasks = tokio::task::JoinSet::new();
        if shared.config.watch_manifests {
            tasks.spawn(inputs::manifest_loop(shared.clone()));
        }
        tasks.spawn(inputs::docker_loop(shared.clone()));
        tasks.spawn(inputs::relist_loop(shared.clone()));
        let desired = shared.clone();
        tasks.spawn(crate::sampler::run(
            shared.runtime.clone(),
            shared.store.clone(),
            Arc::new(move || desired.pool_specs()),
            shared.trigger.clone(),
        ));
        let desired = shared.clone();
        tasks.spawn(crate::scraper::run(
            shared.runtime.clone(),
            shared.store.clone(),
            Arc::new(move || desired.pool_specs()),
            shared.trigger.clone(),
        ));
        tasks.spawn(history::run(shared.clone(), shared.history.clone()));
        let s = shared.clone();
        let stopping = shared.clone();
        let shutdown = async move {
            shutdown.await;
            stopping.begin_shutdown();
        };
        crate::scheduler::run(
            self.rx,
            crate::scheduler::Limits {
                concurrency: shared.config.concurrency,
                shutdown_grace: shared.config.shutdown_grace,
            },
            move |pool| {
                let s = s.clone();
                async move { reconcile::reconcile(&s, &pool).await }
            },
            shutdown,
        )
        .await;
        tasks.shutdown().await;
        tracing::info!("control loop stopped; containers left running");
    }
}

#[cfg(test)]
mod failure_tests;
#[cfg(test)]
mod tests;

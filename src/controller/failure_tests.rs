//! Faults inside the loop itself: a reconcile that panics (a bug) must not freeze its
//! pool, and a reconcile interrupted by shutdown starts no container afterwards.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::probe::PROBE_FAILURE_THRESHOLD;

use super::*;
use crate::runtime::memory::MemoryRuntime;
use crate::runtime::{ContainerInfo, CreateRequest, EventStream, RuntimeError};

const IMAGE: &str = "invok/demo-fn:latest";

/// The in-memory runtime, but the first `panics` creates panic (as a bug in the loop
/// would), and every create can be made to wait for `gate` (to catch the loop mid-way).
struct Faulty {
    inner: Arc<MemoryRuntime>,
    panics: AtomicUsize,
    gate: tokio::sync::Semaphore,
}

impl Runtime for Faulty {
    async fn ping(&self) -> Result<(), RuntimeError> {
        self.inner.ping().await
    }
    async fn daemon_id(&self) -> Result<String, RuntimeError> {
        self.inner.daemon_id().await
    }
    async fn list(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
        self.inner.list().await
    }
    async fn ensure_image(&self, image: &str) -> Result<(), RuntimeError> {
        self.inner.ensure_image(image).await
    }
    async fn ensure_network(&self, network: &str) -> Result<(), RuntimeError> {
        self.inner.ensure_network(network).await
    }
    async fn create(&self, req: &CreateRequest) -> Result<ContainerInfo, RuntimeError> {
        let left = self.panics.load(Ordering::Relaxed);
        if left > 0 {
            self.panics.store(left - 1, Ordering::Relaxed);
            panic!("injected panic in create");
        }
        let _permit = self.gate.acquire().await;
        self.inner.create(req).await
    }
    async fn remove(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        self.inner.remove(id, grace).await
    }
    async fn probe(&self, c: &ContainerInfo, p: &crate::api::Probe) -> bool {
        self.inner.probe(c, p).await
    }
    fn read_usage(
        &self,
        due: &[String],
        running: &std::collections::HashSet<String>,
    ) -> HashMap<String, crate::runtime::UsageReading> {
        self.inner.read_usage(due, running)
    }
    fn events(&self) -> EventStream {
        self.inner.events()
    }
}

fn faulty(panics: usize, gate_permits: usize) -> Arc<Faulty> {
    Arc::new(Faulty {
        inner: MemoryRuntime::new(&[IMAGE]),
        panics: AtomicUsize::new(panics),
        gate: tokio::sync::Semaphore::new(gate_permits),
    })
}

fn declare(shared: &Shared<Faulty>, min: u32) {
    let text = format!(
        "apiVersion: invok.dev/v1alpha1\nkind: FunctionPool\nmetadata:\n  name: web\nspec:\n  image: {IMAGE}\n  scaling:\n    minContainers: {min}\n    maxContainers: 30\n    pollInterval: 200ms\n"
    );
    let p = crate::manifest::load_str(std::path::Path::new("web.yaml"), &text, &Default::default())
        .pools
        .remove("web")
        .expect("valid manifest");
    shared.declare_pool(p.manifest, p.spec);
}

fn start(
    rt: Arc<Faulty>,
) -> (
    Arc<Shared<Faulty>>,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let mut config = Config::new("/nonexistent", "test");
    config.watch_manifests = false;
    config.relist_interval = Duration::from_millis(200);
    let controller = Controller::new(rt, config);
    let shared = controller.shared();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(controller.run(async move {
        let _ = rx.await;
    }));
    (shared, tx, task)
}

async fn until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_reconcile_that_panics_shows_degraded_backs_off_and_recovers() {
    let rt = faulty(1, 1_000);
    let (shared, stop, task) = start(rt.clone());
    declare(&shared, 2);
    until(
        "the panic shows as Degraded",
        Duration::from_secs(10),
        || {
            shared.pool_status("web").is_some_and(|s| {
                s.condition("Degraded")
                    .is_some_and(|c| c.status == "True" && c.reason == "ReconcilePanic")
                    && s.last_error
                        .as_deref()
                        .is_some_and(|e| e.contains("injected panic"))
            })
        },
    )
    .await;
    let scrape = shared.scrape_metrics(crate::metrics::Format::from_accept(None));
    assert!(
        scrape.contains(r#"invok_reconcile_panics_total{pool="web"} 1"#),
        "{scrape}"
    );
    // The pool is not frozen: the next attempt (after the backoff) converges.
    until("2 containers ready", Duration::from_secs(30), || {
        shared
            .store
            .views("web")
            .iter()
            .filter(|v| v.phase == crate::scaler::Phase::Ready)
            .count()
            == 2
    })
    .await;
    until("Degraded clears", Duration::from_secs(10), || {
        shared
            .pool_status("web")
            .and_then(|s| s.condition("Degraded").map(|c| c.status == "False"))
            .unwrap_or(false)
    })
    .await;
    let _ = stop.send(());
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn shutdown_mid_scale_up_is_bounded_and_starts_no_more_creates() {
    // Creates block until let through: the loop is caught with creates under way.
    let rt = faulty(0, 0);
    let (shared, stop, task) = start(rt.clone());
    declare(&shared, 20);
    until("creates are under way", Duration::from_secs(10), || {
        rt.gate.available_permits() == 0 && shared.pool_status("web").is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t0 = Instant::now();
    let _ = stop.send(());
    until("shutdown has begun", Duration::from_secs(1), || {
        shared.is_stopping()
    })
    .await;
    // Let the blocked creates through: none may start after shutdown began.
    rt.gate.add_permits(1_000);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("shutdown took more than 5 s")
        .unwrap();
    assert!(Instant::now() - t0 <= shared.config.shutdown_grace);
    let made = rt.inner.snapshot().len();
    assert!(
        made <= super::act::CREATE_PARALLELISM,
        "{made} containers created; at most the {} under way when shutdown began may finish",
        super::act::CREATE_PARALLELISM
    );
}

fn ready_ids(shared: &Shared<Faulty>) -> Vec<String> {
    shared
        .store
        .views("web")
        .into_iter()
        .filter(|v| v.phase == crate::scaler::Phase::Ready)
        .map(|v| v.id)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_ready_container_leaves_routing_only_after_consecutive_failed_probes() {
    let rt = faulty(0, 1_000);
    let (shared, stop, task) = start(rt.clone());
    declare(&shared, 1);
    until("1 ready", Duration::from_secs(10), || {
        ready_ids(&shared).len() == 1
    })
    .await;
    let id = ready_ids(&shared)[0].clone();

    // Two failures, then it answers: never out of routing, never replaced.
    rt.inner.fail_probes(&id, PROBE_FAILURE_THRESHOLD - 1);
    shared.report_unreachable(&id);
    assert!(
        shared.store.get(&id).unwrap().suspect,
        "routed to last while checked"
    );
    for _ in 0..50 {
        assert!(
            shared.store.get(&id).unwrap().ready_at.is_some(),
            "unready after 2 failures"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let o = shared.store.get(&id).unwrap();
    assert!(!o.suspect && o.ready_at.is_some(), "{o:?}");

    // Three failures in a row: out of routing, then back as soon as it answers.
    rt.inner.fail_probes(&id, PROBE_FAILURE_THRESHOLD);
    shared.report_unreachable(&id);
    until("unready", Duration::from_secs(10), || {
        shared.store.get(&id).is_some_and(|o| o.ready_at.is_none())
    })
    .await;
    until("ready again", Duration::from_secs(10), || {
        ready_ids(&shared) == [id.clone()]
    })
    .await;
    let status = shared.pool_status("web").unwrap();
    assert_eq!(status.recent_failures, 0, "an unanswered check is no crash");
    assert_eq!(rt.inner.snapshot().len(), 1, "nothing was replaced");
    let _ = stop.send(());
    task.await.unwrap();
}

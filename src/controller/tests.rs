//! The loop against the in-memory runtime: fast, no Docker. The real-Docker proofs are
//! in `tests/operator.rs`.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::runtime::memory::MemoryRuntime;
use crate::runtime::{CreateRequest, RunState};

const IMAGE: &str = "invok/demo-fn:latest";

fn manifest(name: &str, min: u32, max: u32) -> String {
    format!(
        "apiVersion: invok.dev/v1alpha1\nkind: FunctionPool\nmetadata:\n  name: {name}\nspec:\n  image: {IMAGE}\n  scaling:\n    minContainers: {min}\n    maxContainers: {max}\n    pollInterval: 200ms\n"
    )
}

struct Harness {
    dir: tempfile::TempDir,
    rt: Arc<MemoryRuntime>,
    shared: Arc<Shared<MemoryRuntime>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Harness {
    async fn start_with(
        rt: Arc<MemoryRuntime>,
        dir: tempfile::TempDir,
        manifests: PathBuf,
    ) -> Harness {
        let mut config = Config::new(manifests, "test");
        config.relist_interval = Duration::from_millis(200);
        config.rescan_interval = Duration::from_millis(300);
        config.debounce = Duration::from_millis(50);
        config.stop_grace = Duration::ZERO;
        let controller = Controller::new(rt.clone(), config);
        let shared = controller.shared();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(controller.run(async move {
            let _ = rx.await;
        }));
        Harness {
            dir,
            rt,
            shared,
            stop: Some(tx),
            task,
        }
    }

    async fn start(files: &[(&str, String)]) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let path = dir.path().to_path_buf();
        Harness::start_with(MemoryRuntime::new(&[IMAGE]), dir, path).await
    }

    fn write(&self, name: &str, text: &str) {
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, self.dir.path().join(name)).unwrap();
    }

    fn ready(&self, pool: &str) -> usize {
        self.shared
            .store
            .views(pool)
            .iter()
            .filter(|v| v.phase == crate::scaler::Phase::Ready)
            .count()
    }

    async fn stop(mut self) -> Arc<MemoryRuntime> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .unwrap()
            .unwrap();
        self.rt.clone()
    }
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_new_pool_is_created_at_min_and_becomes_ready() {
    let h = Harness::start(&[("web.yaml", manifest("web", 3, 5))]).await;
    eventually("3 containers are ready", || h.ready("web") == 3).await;
    assert_eq!(h.rt.running("web").len(), 3);
    for c in h.rt.running("web") {
        assert!(
            c.name.starts_with("invok-web-") && c.name.len() == "invok-web-".len() + 5,
            "{}",
            c.name
        );
    }
    let status = h.shared.pool_status("web").unwrap();
    assert_eq!(status.desired_replicas, 3);
    assert_eq!(status.condition("Ready").unwrap().status, "True");
    h.stop().await;
}

#[tokio::test]
async fn a_converged_pool_makes_no_more_create_or_remove_calls() {
    let h = Harness::start(&[("web.yaml", manifest("web", 2, 5))]).await;
    eventually("2 ready", || h.ready("web") == 2).await;
    let creates = h.rt.calls.create.load(Ordering::Relaxed);
    let removes = h.rt.calls.remove.load(Ordering::Relaxed);
    // Many relists, rescans and requeues later, nothing was touched.
    let lists = h.rt.calls.list.load(Ordering::Relaxed);
    eventually("several relists", || {
        h.rt.calls.list.load(Ordering::Relaxed) >= lists + 4
    })
    .await;
    assert_eq!(h.rt.calls.create.load(Ordering::Relaxed), creates);
    assert_eq!(h.rt.calls.remove.load(Ordering::Relaxed), removes);
    h.stop().await;
}

#[tokio::test]
async fn raising_and_lowering_min_and_max_converges() {
    let h = Harness::start(&[("web.yaml", manifest("web", 1, 5))]).await;
    eventually("1 ready", || h.ready("web") == 1).await;
    h.write("web.yaml", &manifest("web", 4, 5));
    eventually("4 ready", || {
        h.ready("web") == 4 && h.rt.running("web").len() == 4
    })
    .await;
    h.write("web.yaml", &manifest("web", 1, 2));
    eventually("lowered to max 2", || {
        h.rt.running("web").len() == 2 && h.ready("web") == 2
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn changing_the_timeout_takes_effect_without_replacing_a_container() {
    let h = Harness::start(&[("web.yaml", manifest("web", 2, 5))]).await;
    eventually("2 ready", || h.ready("web") == 2).await;
    let ids = |h: &Harness| {
        let mut ids: Vec<String> = h.rt.running("web").into_iter().map(|c| c.id).collect();
        ids.sort();
        ids
    };
    let before = ids(&h);
    let hash = h.shared.desired().pools["web"].spec.spec_hash.clone();
    let creates = h.rt.calls.create.load(Ordering::Relaxed);
    let removes = h.rt.calls.remove.load(Ordering::Relaxed);
    h.write(
        "web.yaml",
        &format!("{}  timeout: 5s\n", manifest("web", 2, 5)),
    );
    eventually("the new timeout is in force", || {
        h.shared.desired().pools["web"].spec.timeout == Duration::from_secs(5)
    })
    .await;
    let lists = h.rt.calls.list.load(Ordering::Relaxed);
    eventually("several relists", || {
        h.rt.calls.list.load(Ordering::Relaxed) >= lists + 4
    })
    .await;
    assert_eq!(h.shared.desired().pools["web"].spec.spec_hash, hash);
    assert_eq!(ids(&h), before, "no container was replaced");
    assert_eq!(h.rt.calls.create.load(Ordering::Relaxed), creates);
    assert_eq!(h.rt.calls.remove.load(Ordering::Relaxed), removes);
    h.stop().await;
}

#[tokio::test]
async fn an_exited_container_is_replaced() {
    let h = Harness::start(&[("web.yaml", manifest("web", 2, 5))]).await;
    eventually("2 ready", || h.ready("web") == 2).await;
    let victim = h.rt.running("web")[0].id.clone();
    h.rt.kill(&victim);
    eventually("replaced", || {
        let running = h.rt.running("web");
        running.len() == 2 && running.iter().all(|c| c.id != victim) && h.ready("web") == 2
    })
    .await;
    assert!(
        h.rt.snapshot().iter().all(|c| c.id != victim),
        "the exited container was removed"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_crash_looping_pool_backs_off_instead_of_churning() {
    let rt = MemoryRuntime::new(&[IMAGE]);
    rt.crash_on_start.store(true, Ordering::Relaxed);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("web.yaml"), manifest("web", 1, 1)).unwrap();
    let path = dir.path().to_path_buf();
    let h = Harness::start_with(rt, dir, path).await;
    eventually("in CrashLoopBackOff", || {
        h.shared.pool_status("web").is_some_and(|s| {
            s.condition("Degraded")
                .is_some_and(|c| c.reason == "CrashLoopBackOff")
        })
    })
    .await;
    let t0 = Instant::now();
    let c0 = h.rt.calls.create.load(Ordering::Relaxed);
    eventually("3 more seconds pass", || {
        t0.elapsed() >= Duration::from_secs(3)
    })
    .await;
    let c1 = h.rt.calls.create.load(Ordering::Relaxed);
    // Backoff 1 s, 2 s, 4 s...: at most a few creates in 3 s, not one per reconcile.
    assert!(c1 - c0 <= 3, "{} creates in 3 s", c1 - c0);
    h.stop().await;
}

#[tokio::test]
async fn a_missing_image_is_reported_and_other_pools_keep_going() {
    let bad = manifest("bad", 1, 1).replace(IMAGE, "nowhere/missing:1");
    let h = Harness::start(&[("bad.yaml", bad), ("web.yaml", manifest("web", 1, 1))]).await;
    eventually("web ready", || h.ready("web") == 1).await;
    eventually("bad reports ImagePullFailed", || {
        h.shared.pool_status("bad").is_some_and(|s| {
            s.last_error
                .as_deref()
                .is_some_and(|e| e.contains("nowhere/missing:1"))
                && s.events.iter().any(|e| e.reason == "ImagePullFailed")
        })
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn an_invalid_edit_keeps_the_last_valid_spec_running() {
    let h = Harness::start(&[("web.yaml", manifest("web", 2, 3))]).await;
    eventually("2 ready", || h.ready("web") == 2).await;
    let before: Vec<String> = h.rt.running("web").into_iter().map(|c| c.id).collect();
    h.write(
        "web.yaml",
        &manifest("web", 2, 3).replace("maxContainers", "maxContainer"),
    );
    eventually("the error is in status", || {
        h.shared.pool_status("web").is_some_and(|s| {
            s.manifest_error
                .as_deref()
                .is_some_and(|e| e.contains("web.yaml:9:5: spec.scaling.maxContainer"))
        })
    })
    .await;
    let after: Vec<String> = h.rt.running("web").into_iter().map(|c| c.id).collect();
    assert_eq!(before, after);
    h.stop().await;
}

#[tokio::test]
async fn a_deleted_manifest_prunes_its_pool_and_orphans_go_too() {
    let rt = MemoryRuntime::new(&[IMAGE]);
    let spec = crate::manifest::load_str(
        std::path::Path::new("x.yaml"),
        &manifest("ghost", 1, 1),
        &Default::default(),
    )
    .pools
    .remove("ghost")
    .unwrap()
    .spec;
    let orphan = rt
        .adopt(&CreateRequest {
            name: "invok-ghost-abcde".into(),
            pool: "ghost".into(),
            instance: "test".into(),
            template: spec.template.clone(),
            spec_hash: spec.spec_hash.clone(),
        })
        .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("web.yaml"), manifest("web", 1, 1)).unwrap();
    let path = dir.path().to_path_buf();
    let h = Harness::start_with(rt, dir, path).await;
    eventually("web ready and the orphan gone", || {
        h.ready("web") == 1 && h.rt.snapshot().iter().all(|c| c.id != orphan.id)
    })
    .await;
    std::fs::remove_file(h.dir.path().join("web.yaml")).unwrap();
    eventually("web pruned", || h.rt.snapshot().is_empty()).await;
    h.stop().await;
}

#[tokio::test]
async fn a_missing_directory_prunes_nothing() {
    let rt = MemoryRuntime::new(&[IMAGE]);
    let spec = crate::manifest::load_str(
        std::path::Path::new("x.yaml"),
        &manifest("web", 1, 1),
        &Default::default(),
    )
    .pools
    .remove("web")
    .unwrap()
    .spec;
    let existing = rt
        .adopt(&CreateRequest {
            name: "invok-web-abcde".into(),
            pool: "web".into(),
            instance: "test".into(),
            template: spec.template.clone(),
            spec_hash: spec.spec_hash.clone(),
        })
        .await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not-there");
    let h = Harness::start_with(rt, dir, missing).await;
    let lists = h.rt.calls.list.load(Ordering::Relaxed);
    eventually("several relists and rescans", || {
        h.rt.calls.list.load(Ordering::Relaxed) >= lists + 5
    })
    .await;
    assert_eq!(h.rt.snapshot().len(), 1);
    assert_eq!(h.rt.snapshot()[0].id, existing.id);
    assert_eq!(h.rt.snapshot()[0].state, RunState::Running);
    assert_eq!(h.rt.calls.remove.load(Ordering::Relaxed), 0);
    h.stop().await;
}

#[tokio::test]
async fn a_restarted_operator_adopts_what_it_finds() {
    let h = Harness::start(&[("web.yaml", manifest("web", 3, 5))]).await;
    eventually("3 ready", || h.ready("web") == 3).await;
    let before: Vec<String> = h.rt.running("web").into_iter().map(|c| c.id).collect();
    let creates = h.rt.calls.create.load(Ordering::Relaxed);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(h.dir.path().join("web.yaml"), dir.path().join("web.yaml")).unwrap();
    let rt = h.stop().await;
    let path = dir.path().to_path_buf();
    let h2 = Harness::start_with(rt, dir, path).await;
    eventually("adopted 3 ready", || h2.ready("web") == 3).await;
    let lists = h2.rt.calls.list.load(Ordering::Relaxed);
    eventually("a few relists", || {
        h2.rt.calls.list.load(Ordering::Relaxed) >= lists + 3
    })
    .await;
    let after: Vec<String> = h2.rt.running("web").into_iter().map(|c| c.id).collect();
    assert_eq!(before, after);
    assert_eq!(h2.rt.calls.create.load(Ordering::Relaxed), creates);
    h2.stop().await;
}

/// Takes one request in flight on every ready container of `pool`, as the gateway does.
fn hold_requests(h: &Harness, pool: &str) -> Vec<crate::store::Route> {
    let mut held = Vec::new();
    let ready = h.ready(pool);
    for _ in 0..ready {
        held.push(h.shared.store.pick(pool, None).expect("a ready container"));
    }
    held
}

fn release(routes: Vec<crate::store::Route>) {
    for r in routes {
        r.in_flight.fetch_sub(1, Ordering::Release);
    }
}

#[tokio::test]
async fn a_container_with_requests_in_flight_drains_before_it_is_removed() {
    let h = Harness::start(&[("web.yaml", manifest("web", 3, 5))]).await;
    eventually("3 ready", || h.ready("web") == 3).await;
    let held = hold_requests(&h, "web");
    let removes = h.rt.calls.remove.load(Ordering::Relaxed);
    h.write("web.yaml", &manifest("web", 1, 1));
    eventually("2 draining", || {
        let views = h.shared.store.views("web");
        views
            .iter()
            .filter(|v| v.phase == crate::scaler::Phase::Draining)
            .count()
            == 2
    })
    .await;
    // Several passes later, with requests still in flight, nothing was stopped.
    let passes = h.shared.pool_state("web", |s| s.status.reconciles);
    eventually("several passes", || {
        h.shared.pool_state("web", |s| s.status.reconciles) >= passes + 5
    })
    .await;
    assert_eq!(h.rt.calls.remove.load(Ordering::Relaxed), removes);
    assert_eq!(h.rt.running("web").len(), 3);
    assert!(
        h.shared.store.pick("web", None).is_some_and(|r| {
            let kept = h.shared.store.get(&r.id).unwrap().draining.is_none();
            r.in_flight.fetch_sub(1, Ordering::Release);
            kept
        }),
        "new requests go to the container that stays"
    );
    release(held);
    eventually("drained and removed", || h.rt.running("web").len() == 1).await;
    assert_eq!(h.rt.calls.remove.load(Ordering::Relaxed), removes + 2);
    h.stop().await;
}

#[tokio::test]
async fn a_drain_ends_at_the_pools_timeout() {
    let slow = format!("{}  timeout: 300ms\n", manifest("web", 2, 2));
    let h = Harness::start(&[("web.yaml", slow)]).await;
    eventually("2 ready", || h.ready("web") == 2).await;
    let held = hold_requests(&h, "web");
    h.write(
        "web.yaml",
        &format!("{}  timeout: 300ms\n", manifest("web", 1, 1)),
    );
    eventually("one removed although its request never ended", || {
        h.rt.running("web").len() == 1
    })
    .await;
    release(held);
    h.stop().await;
}

#[tokio::test]
async fn a_deleted_pool_drains_its_requests_before_it_is_pruned() {
    let h = Harness::start(&[("web.yaml", manifest("web", 2, 2))]).await;
    eventually("2 ready", || h.ready("web") == 2).await;
    let held = hold_requests(&h, "web");
    std::fs::remove_file(h.dir.path().join("web.yaml")).unwrap();
    eventually("both draining", || {
        let views = h.shared.store.views("web");
        views.len() == 2
            && views
                .iter()
                .all(|v| v.phase == crate::scaler::Phase::Draining)
    })
    .await;
    let passes = h.shared.pool_state("web", |s| s.status.reconciles);
    eventually("several passes", || {
        h.shared.pool_state("web", |s| s.status.reconciles) >= passes + 5
    })
    .await;
    assert_eq!(
        h.rt.running("web").len(),
        2,
        "requests in flight hold the prune"
    );
    release(held);
    eventually("pruned", || h.rt.snapshot().is_empty()).await;
    h.stop().await;
}

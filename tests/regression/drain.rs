//! Regression tests: draining containers before removal, on the in-memory runtime.
//!
//! The gateway always ends a request at its pool's timeout, so on real Docker a drain
//! never waits longer than that anyway; these tests hold requests the way the gateway
//! does (through the store's pick) and never release them, to see the removal's own
//! bound.
#![allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "waits on a running controller with real time"
)]

use std::time::{Duration, Instant};

use invok::controller::{Config, Controller};
use invok::runtime::memory::MemoryRuntime;
use invok::scaler::Phase;

const IMAGE: &str = "invok/demo-fn:latest";

async fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Bug: a pool deleted while its containers had requests in flight drained them for
/// the 300 s default timeout, not the pool's own (its spec was gone, and with it the
/// timeout its requests were sent with). A pool with `timeout: 300ms` kept its
/// containers five minutes. The drain's bound is the timeout of the pool's last spec.
#[tokio::test]
async fn a_deleted_pool_drains_for_its_own_timeout_not_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: invok.dev/v1alpha1\nkind: FunctionPool\nmetadata:\n  name: web\nspec:\n  image: {IMAGE}\n  timeout: 300ms\n  scaling:\n    minContainers: 2\n    maxContainers: 2\n    pollInterval: 200ms\n"
        ),
    )
    .unwrap();
    let mut config = Config::new(dir.path(), "rg-prune-timeout");
    config.relist_interval = Duration::from_millis(200);
    config.debounce = Duration::from_millis(50);
    config.stop_grace = Duration::ZERO;
    let rt = MemoryRuntime::new(&[IMAGE]);
    let controller = Controller::new(rt.clone(), config);
    let shared = controller.shared();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(controller.run(async move {
        let _ = stopped.await;
    }));
    let ready = || {
        shared
            .store
            .views("web")
            .iter()
            .filter(|v| v.phase == Phase::Ready)
            .count()
    };
    eventually(Duration::from_secs(10), "2 ready", || ready() == 2).await;
    // A request on each container that never ends (as if the gateway lost it).
    let held: Vec<_> = (0..2)
        .map(|_| shared.store.pick("web", None).expect("a ready container"))
        .collect();
    std::fs::remove_file(&file).unwrap();
    eventually(
        Duration::from_secs(10),
        "the deleted pool's containers are removed after its 300ms timeout",
        || rt.running("web").is_empty(),
    )
    .await;
    drop(held);
    let _ = stop.send(());
    task.await.unwrap();
}

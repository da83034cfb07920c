//! An in-memory [`Runtime`] for fast unit tests of the control loop.
//!
//! Containers are records in a map; each "running" one owns a real loopback listener so
//! readiness probes work unchanged. Tests can kill containers, make creates fail, and
//! count calls to prove that an idle pass does nothing.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::broadcast;

use super::{
    ContainerInfo, CreateRequest, EventStream, RunState, Runtime, RuntimeError, RuntimeEvent,
};

/// Calls made, by kind.
#[derive(Debug, Default)]
pub struct Calls {
    /// `create` calls.
    pub create: AtomicUsize,
    /// `remove` calls.
    pub remove: AtomicUsize,
    /// `list` calls.
    pub list: AtomicUsize,
}

struct Entry {
    info: ContainerInfo,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// The in-memory runtime.
pub struct MemoryRuntime {
    containers: Mutex<BTreeMap<String, Entry>>,
    images: Mutex<HashSet<String>>,
    next_id: AtomicUsize,
    events: broadcast::Sender<RuntimeEvent>,
    /// Counts of calls, for assertions.
    pub calls: Calls,
    /// When set, the next creates start containers that exit at once (a crash loop).
    pub crash_on_start: std::sync::atomic::AtomicBool,
}

impl MemoryRuntime {
    /// A runtime that knows `images`.
    pub fn new(images: &[&str]) -> Arc<Self> {
        Arc::new(MemoryRuntime {
            containers: Mutex::new(BTreeMap::new()),
            images: Mutex::new(images.iter().map(|s| s.to_string()).collect()),
            next_id: AtomicUsize::new(1),
            events: broadcast::channel(1024).0,
            calls: Calls::default(),
            crash_on_start: Default::default(),
        })
    }

    /// Every container, as listed.
    pub fn snapshot(&self) -> Vec<ContainerInfo> {
        self.containers
            .lock()
            .unwrap()
            .values()
            .map(|e| e.info.clone())
            .collect()
    }

    /// Containers of `pool` that are running.
    pub fn running(&self, pool: &str) -> Vec<ContainerInfo> {
        self.snapshot()
            .into_iter()
            .filter(|c| c.pool == pool && c.state == RunState::Running)
            .collect()
    }

    /// Makes a container exit, as if its process died.
    pub fn kill(&self, id: &str) {
        let mut map = self.containers.lock().unwrap();
        if let Some(e) = map.get_mut(id) {
            e.info.state = RunState::Exited;
            if let Some(s) = e.server.take() {
                s.abort();
            }
            let _ = self.events.send(RuntimeEvent {
                id: id.into(),
                pool: e.info.pool.clone(),
                action: "die".into(),
            });
        }
    }

    /// Adds a container as if someone (or an earlier operator) had created it.
    pub async fn adopt(&self, req: &CreateRequest) -> ContainerInfo {
        self.create(req).await.unwrap()
    }
}

async fn serve() -> (u16, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    (port, task)
}

impl Runtime for MemoryRuntime {
    async fn ping(&self) -> Result<(), RuntimeError> {
        Ok(())
    }

    async fn list(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
        self.calls.list.fetch_add(1, Ordering::Relaxed);
        Ok(self.snapshot())
    }

    async fn ensure_image(&self, image: &str) -> Result<(), RuntimeError> {
        if self.images.lock().unwrap().contains(image) {
            Ok(())
        } else {
            Err(RuntimeError::ImageUnavailable {
                image: image.into(),
                reason: "no registry in memory".into(),
            })
        }
    }

    async fn ensure_network(&self, _: &str) -> Result<(), RuntimeError> {
        Ok(())
    }

    async fn create(&self, req: &CreateRequest) -> Result<ContainerInfo, RuntimeError> {
        self.calls.create.fetch_add(1, Ordering::Relaxed);
        let crash = self.crash_on_start.load(Ordering::Relaxed);
        let (port, server) = if crash {
            (0, None)
        } else {
            let (p, s) = serve().await;
            (p, Some(s))
        };
        let id = format!("{:064x}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let info = ContainerInfo {
            id: id.clone(),
            name: req.name.clone(),
            pool: req.pool.clone(),
            spec_hash: req.spec_hash.clone(),
            state: if crash {
                RunState::Exited
            } else {
                RunState::Running
            },
            host_port: (!crash).then_some(port),
            created: SystemTime::now(),
            image: req.template.image.clone(),
            labels: req.labels(),
            pinned: false,
        };
        self.containers.lock().unwrap().insert(
            id.clone(),
            Entry {
                info: info.clone(),
                server,
            },
        );
        let _ = self.events.send(RuntimeEvent {
            id,
            pool: req.pool.clone(),
            action: if crash { "die" } else { "start" }.into(),
        });
        Ok(info)
    }

    async fn remove(&self, id: &str, _grace: Duration) -> Result<(), RuntimeError> {
        self.calls.remove.fetch_add(1, Ordering::Relaxed);
        if let Some(e) = self.containers.lock().unwrap().remove(id) {
            if let Some(s) = e.server {
                s.abort();
            }
            let _ = self.events.send(RuntimeEvent {
                id: id.into(),
                pool: e.info.pool,
                action: "destroy".into(),
            });
        }
        Ok(())
    }

    fn events(&self) -> EventStream {
        // Lagged messages are skipped: the controller relists on every event anyway.
        let rx = self.events.subscribe();
        Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => return Some((Ok(ev), rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }))
    }
}

//! The container runtime: the only place that talks to Docker.
//!
//! The controller sees containers through the small [`Runtime`] trait, so the same loop
//! runs against the real daemon ([`docker::DockerRuntime`]) and, in unit tests, against
//! an in-memory fake. Every call is idempotent in the way a reconciler needs: removing
//! something already gone, or starting something already running, is not an error.
//!
//! No Docker (bollard) type crosses the trait: what is Docker's own stays in here, the
//! readiness check of a published port ([`readiness`]) and the container usage read from
//! Docker's cgroup files ([`cgroup`]) or its stats streams ([`stats`], chosen by
//! [`usage`]).

pub mod cgroup;
pub mod docker;
pub mod memory;
pub mod readiness;
pub mod stats;
pub mod usage;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::Stream;

use crate::api::{ContainerTemplate, Probe};
use cgroup::RawSample;
use stats::StatsSample;

/// Label keys that mark what Invok owns. The operator never touches a container that
/// lacks its own `managed-by` and `instance` labels.
pub mod labels {
    /// Always `invok`.
    pub const MANAGED_BY: &str = "dev.invok.managed-by";
    /// The operator's `--instance`.
    pub const INSTANCE: &str = "dev.invok.instance";
    /// The pool's name.
    pub const POOL: &str = "dev.invok.pool";
    /// The hash of the container template the container was made from.
    pub const SPEC_HASH: &str = "dev.invok.spec-hash";
    /// Value of [`MANAGED_BY`].
    pub const MANAGED_BY_VALUE: &str = "invok";
    /// On a container started by [`crate::runner::runner`]: its `timeout` in seconds,
    /// which `register_container` makes the request timeout of the pool it creates.
    pub const TIMEOUT: &str = "dev.invok.timeout";
    /// On a container started by [`crate::runner::runner`]: `true`.
    pub const RUNNER: &str = "dev.invok.runner";
}

/// What Docker says about a container's process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Created but never started (or a create that a crash interrupted).
    Created,
    /// The process runs.
    Running,
    /// Paused by someone; it cannot serve.
    Paused,
    /// Docker restarts it (we set no restart policy, so someone else did).
    Restarting,
    /// Being removed.
    Removing,
    /// The process ended.
    Exited,
    /// Docker could not clean it up.
    Dead,
}

impl RunState {
    /// Parses Docker's `State` string; unknown values count as `Dead` so they get replaced.
    pub fn from_docker(s: &str) -> RunState {
        match s {
            "created" => RunState::Created,
            "running" => RunState::Running,
            "paused" => RunState::Paused,
            "restarting" => RunState::Restarting,
            "removing" => RunState::Removing,
            "exited" => RunState::Exited,
            _ => RunState::Dead,
        }
    }
}

/// A container of this instance as the daemon lists it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ContainerInfo {
    /// Full container id.
    pub id: String,
    /// Name without the leading `/`.
    pub name: String,
    /// Value of the pool label.
    pub pool: String,
    /// Value of the spec-hash label.
    pub spec_hash: String,
    /// Process state.
    pub state: RunState,
    /// The loopback host port the function port is published on, once known.
    pub host_port: Option<u16>,
    /// When Docker created it.
    #[serde(with = "unix_secs")]
    pub created: SystemTime,
    /// Image reference it runs.
    pub image: String,
    /// All labels, for adoption checks. Shared: a pass clones the containers of its
    /// pool, and cloning every label of each showed in an idle operator's profile.
    #[serde(skip)]
    pub labels: Arc<BTreeMap<String, String>>,
    /// Registered by a library user rather than created by Invok: routed to and counted,
    /// never replaced or removed.
    pub pinned: bool,
}

mod unix_secs {
    use serde::Serializer;
    use std::time::{SystemTime, UNIX_EPOCH};
    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(
            t.duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        )
    }
}

/// Everything needed to create one container of a pool.
#[derive(Clone, Debug, PartialEq)]
pub struct CreateRequest {
    /// `invok-<pool>-<5 random [a-z0-9]>`.
    pub name: String,
    /// The pool it belongs to.
    pub pool: String,
    /// The operator instance that owns it.
    pub instance: String,
    /// The container's shape.
    pub template: ContainerTemplate,
    /// `template.hash()`, stored as a label.
    pub spec_hash: String,
}

impl CreateRequest {
    /// The labels the container is created with.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                labels::MANAGED_BY.to_string(),
                labels::MANAGED_BY_VALUE.to_string(),
            ),
            (labels::INSTANCE.to_string(), self.instance.clone()),
            (labels::POOL.to_string(), self.pool.clone()),
            (labels::SPEC_HASH.to_string(), self.spec_hash.clone()),
        ])
    }
}

/// A change the daemon reported for one of this instance's containers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeEvent {
    /// Container id.
    pub id: String,
    /// Pool label of the container.
    pub pool: String,
    /// Docker's action (`start`, `die`, `destroy`, `oom`, ...).
    pub action: String,
}

/// What a runtime can say about a running container's usage ([`Runtime::read_usage`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UsageReading {
    /// Cumulative counters (the cgroup files; the in-memory runtime's model): the CPU
    /// usage is the difference to the previous reading, over the time between the two.
    Cumulative(RawSample),
    /// The latest message of a Docker stats stream, which measures CPU over its own
    /// window (see [`stats`]): nothing to subtract.
    Message(StatsSample),
}

/// Why a runtime call failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The daemon could not be reached.
    #[error("Docker is unreachable: {0}")]
    Unavailable(String),
    /// What the call names does not exist (Docker answered 404): a container removed
    /// meanwhile, or never there. Calls for which "already gone" is success (remove)
    /// return `Ok` instead.
    #[error("Docker: {0}")]
    NotFound(String),
    /// The call conflicts with what exists (Docker answered 409): a container name
    /// taken by a container that is not ours.
    #[error("Docker: {0}")]
    Conflict(String),
    /// The image is not present and could not be pulled.
    #[error("image {image} is not available locally and could not be pulled: {reason}")]
    ImageUnavailable {
        /// The image reference.
        image: String,
        /// What the pull said.
        reason: String,
    },
    /// Any other error the daemon returned.
    #[error("Docker: {0}")]
    Api(String),
}

impl RuntimeError {
    /// True when the daemon could not be reached at all (as opposed to refusing a call).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, RuntimeError::Unavailable(_))
    }

    /// True when what the call named does not exist ([`RuntimeError::NotFound`]).
    pub fn is_not_found(&self) -> bool {
        matches!(self, RuntimeError::NotFound(_))
    }
}

/// A boxed stream of runtime events, as [`Runtime::events`] returns it.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<RuntimeEvent, RuntimeError>> + Send>>;

/// The operations the controller needs from a container engine.
///
/// Implementations only see containers of one operator instance (`instance` given at
/// construction), so nothing here can touch another instance's containers.
pub trait Runtime: Send + Sync + 'static {
    /// Checks that the daemon answers.
    fn ping(&self) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// The daemon's own identity (Docker's `ID` in `docker info`): the same whichever
    /// address reaches it (`unix:///var/run/docker.sock`, `unix:///run/docker.sock`, an
    /// unset `DOCKER_HOST`), and another for another daemon. [`crate::lock`] keys the
    /// one-operator-per-instance lock on it.
    fn daemon_id(&self) -> impl Future<Output = Result<String, RuntimeError>> + Send;

    /// Lists this instance's containers, in every state.
    fn list(&self) -> impl Future<Output = Result<Vec<ContainerInfo>, RuntimeError>> + Send;

    /// Makes sure `image` is present, pulling it once if it is not.
    fn ensure_image(&self, image: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Makes sure the Docker network exists, creating it when missing.
    fn ensure_network(
        &self,
        network: &str,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Creates and starts a container, returning it as listed after the start (with its
    /// host port). A name conflict with a stale container of ours is cleaned up first.
    fn create(
        &self,
        req: &CreateRequest,
    ) -> impl Future<Output = Result<ContainerInfo, RuntimeError>> + Send;

    /// Stops a container (SIGTERM, then SIGKILL after `grace`) and removes it. Removing a
    /// container that is already gone succeeds.
    fn remove(
        &self,
        id: &str,
        grace: Duration,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Probes a container's function once (readiness): true when it answers.
    ///
    /// The default probes the loopback host port, which is what every real runtime
    /// wants; the in-memory runtime answers from its model, so the simulation runs on
    /// tokio's paused clock without sockets.
    fn probe(&self, container: &ContainerInfo, probe: &Probe) -> impl Future<Output = bool> + Send {
        let port = container.host_port;
        let probe = probe.clone();
        async move {
            match port {
                Some(port) => readiness::probe_once(&probe, port).await,
                None => false,
            }
        }
    }

    /// Fetches a container's metrics page (`path` on its function's port) within
    /// `timeout`: the text, or `None` when it did not answer with one (see
    /// [`crate::scraper`]). The default GETs the loopback host port; the in-memory
    /// runtime answers from its model.
    fn scrape(
        &self,
        container: &ContainerInfo,
        path: &str,
        timeout: Duration,
    ) -> impl Future<Output = Option<String>> + Send {
        let port = container.host_port;
        let path = path.to_string();
        async move {
            match port {
                Some(port) => readiness::get_text(port, &path, timeout).await,
                None => None,
            }
        }
    }

    /// One tick of the sampler: a usage reading for each container of `due` (running
    /// containers whose pool wants a sample now) that the runtime can read, keyed by id;
    /// one it cannot read is left out. `running` holds every running container: what
    /// the runtime keeps for any other (a Docker stats stream) is dropped.
    ///
    /// Docker reads the cgroup files, or follows its stats streams where none is
    /// readable ([`usage`], `INVOK_SAMPLER`); the in-memory runtime returns the
    /// synthetic load of the simulation.
    fn read_usage(
        &self,
        due: &[String],
        running: &HashSet<String>,
    ) -> HashMap<String, UsageReading>;

    /// Events for this instance's containers, from now on. The stream ends or errors when
    /// the connection drops; the caller resubscribes and relists.
    fn events(&self) -> EventStream;
}

/// Helpers for the library's own tests.
#[cfg(test)]
pub(crate) mod test_support {
    /// A client for a "socket" that is a plain file: every call and stream fails to
    /// connect at once. Keep the directory alive as long as the client.
    pub(crate) fn dead_docker() -> (tempfile::TempDir, bollard::Docker) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        std::fs::write(&path, "").unwrap();
        let docker = bollard::Docker::connect_with_unix(
            path.to_str().unwrap(),
            5,
            bollard::API_DEFAULT_VERSION,
        )
        .unwrap();
        (dir, docker)
    }
}

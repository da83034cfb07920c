//! The Docker implementation of [`super::Runtime`], through bollard.
//!
//! [`DockerRuntime`] talks to the local daemon (the Unix socket, or `DOCKER_HOST` when it
//! is a `unix://` address) and only ever sees the containers of one operator instance:
//! every list and event subscription filters on both the `dev.invok.managed-by=invok` and
//! the `dev.invok.instance=<instance>` labels, and [`Runtime::remove`] inspects a
//! container first and refuses one that lacks them.
//!
//! Containers are created with the function port published on `127.0.0.1` with a host
//! port that Docker picks, the CPU and memory limits of the template, no restart policy
//! (the controller replaces crashed containers itself), and the four Invok labels. Every
//! call is idempotent in the way a reconciler needs: a name taken by a stale container of
//! ours is cleaned up and the create retried once, removing a container that is gone
//! succeeds, and a network created concurrently is not an error.
//!
//! Container usage comes from the cgroup files, or Docker's stats streams where none is
//! readable ([`super::usage`]).
//!
//! Errors map onto [`RuntimeError`]: a daemon that cannot be reached (socket missing,
//! connection refused, I/O error, timeout) is [`RuntimeError::Unavailable`]; an error
//! status is [`RuntimeError::NotFound`] (404), [`RuntimeError::Conflict`] (409) or
//! [`RuntimeError::Api`] (any other), each with `"<status>: <message>"`; an image that
//! is neither present nor pullable is [`RuntimeError::ImageUnavailable`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ContainerSummary, EventMessage, HostConfig, NetworkCreateRequest,
    PortBinding, PortSummaryTypeEnum, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptionsBuilder,
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::{future, StreamExt, TryStreamExt};

use super::stats::StatsSampler;
use super::usage::UsageReader;
use super::{
    labels, ContainerInfo, CreateRequest, EventStream, RunState, Runtime, RuntimeError,
    RuntimeEvent, UsageReading,
};

/// How long [`DockerRuntime::connect`] waits for the daemon to answer the version call.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long any single request may wait for the daemon's response headers. A stop call
/// gets its grace period on top.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How long [`Runtime::ensure_image`] lets one pull run before giving up.
pub const PULL_TIMEOUT: Duration = Duration::from_secs(20);

/// The [`Runtime`] backed by a Docker daemon, scoped to one operator instance.
///
/// Cheap to clone: clones share the connection pool and the network-creation lock.
#[derive(Clone, Debug)]
pub struct DockerRuntime {
    docker: Docker,
    instance: String,
    /// Serializes [`Runtime::ensure_network`]: Docker 20.10 does not reject a duplicate
    /// network name unless the (removed from bollard's models) `CheckDuplicate` flag is
    /// set, so two pools creating the same network at once would otherwise make two.
    network_lock: Arc<tokio::sync::Mutex<()>>,
    /// Containers a library user registered (full id -> pool): listed as that pool's,
    /// pinned (never removed), although they carry none of our labels.
    registered: Arc<std::sync::RwLock<BTreeMap<String, String>>>,
    /// How [`Runtime::read_usage`] reads: made at the first read (so `INVOK_SAMPLER` is
    /// read when sampling starts), then kept (the cgroup layout, the stats streams).
    usage: Arc<Mutex<Option<UsageReader>>>,
}

/// A container [`DockerRuntime::register`] added to a pool.
#[derive(Clone, Debug, PartialEq)]
pub struct Registered {
    /// The container as listed: pinned, a member of the pool it was registered for.
    pub container: ContainerInfo,
    /// A port the container exposes (its image's `EXPOSE`, or `--expose`), inside the
    /// container: the function's port when the pool is made from this container.
    pub exposed_port: Option<u16>,
}

impl DockerRuntime {
    /// Connects to the local daemon and negotiates the API version (the daemon's, when it
    /// is older than bollard's). Fails with [`RuntimeError::Unavailable`] when the socket
    /// is missing or the daemon does not answer within [`CONNECT_TIMEOUT`].
    pub async fn connect(instance: String) -> Result<Self, RuntimeError> {
        let docker = Docker::connect_with_local_defaults()
            .map_err(map_err)?
            .with_timeout(REQUEST_TIMEOUT);
        let docker = tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version())
            .await
            .map_err(|_| {
                RuntimeError::Unavailable(format!(
                    "the daemon did not answer within {}s",
                    CONNECT_TIMEOUT.as_secs()
                ))
            })?
            .map_err(map_err)?;
        tracing::debug!(instance = %instance, api = ?docker.client_version(), "connected to Docker");
        Ok(Self::with_docker(docker, instance))
    }

    /// Connects like [`DockerRuntime::connect`]; when the daemon does not answer yet, returns
    /// a client pinned to API 1.41 (which every daemon since Docker 20.10 speaks) instead
    /// of failing, so the operator can start, report Docker as unreachable, and recover by
    /// itself when the daemon comes up.
    pub async fn connect_or_pin(instance: String) -> Result<Self, RuntimeError> {
        match Self::connect(instance.clone()).await {
            Ok(rt) => Ok(rt),
            Err(RuntimeError::Unavailable(reason)) => {
                tracing::warn!("Docker is unreachable ({reason}); will keep retrying");
                let addr = std::env::var("DOCKER_HOST")
                    .unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
                let pinned = bollard::ClientVersion {
                    major_version: 1,
                    minor_version: 41,
                };
                let docker = Docker::connect_with_local(&addr, REQUEST_TIMEOUT.as_secs(), &pinned)
                    .map_err(map_err)?;
                Ok(Self::with_docker(docker, instance))
            }
            Err(e) => Err(e),
        }
    }

    /// Wraps an existing client (already connected and negotiated by the caller) for the
    /// containers of `instance`. Crate-only, so that no bollard type crosses the
    /// runtime's API: the seed's `AutoscalingRuntimeBuilder::build`, which takes a
    /// client, is the one way in.
    pub(crate) fn with_docker(docker: Docker, instance: String) -> Self {
        DockerRuntime {
            docker,
            instance,
            network_lock: Arc::new(tokio::sync::Mutex::new(())),
            registered: Default::default(),
            usage: Default::default(),
        }
    }

    /// A follower of Docker's stats streams on this runtime's daemon, for figures and
    /// tests; [`Runtime::read_usage`] keeps its own.
    pub fn stats_sampler(&self) -> StatsSampler {
        StatsSampler::new(self.docker.clone())
    }

    /// The operator instance whose containers this runtime sees.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The `label=` filter values that select this instance's containers.
    fn label_filters(&self) -> Vec<String> {
        vec![
            format!("{}={}", labels::MANAGED_BY, labels::MANAGED_BY_VALUE),
            format!("{}={}", labels::INSTANCE, self.instance),
        ]
    }

    /// True when `labels` carry this instance's managed-by and instance labels.
    fn owns(&self, labels: Option<&HashMap<String, String>>) -> bool {
        let Some(l) = labels else { return false };
        l.get(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGED_BY_VALUE)
            && l.get(labels::INSTANCE) == Some(&self.instance)
    }

    /// Containers in every state matching `filters`.
    async fn list_summaries(
        &self,
        filters: &HashMap<&str, Vec<String>>,
    ) -> Result<Vec<ContainerSummary>, RuntimeError> {
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(filters)
            .build();
        self.docker
            .list_containers(Some(opts))
            .await
            .map_err(map_err)
    }

    /// Lists this instance's containers, optionally narrowed to one id.
    async fn list_filtered(&self, id: Option<&str>) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let mut filters: HashMap<&str, Vec<String>> = HashMap::new();
        filters.insert("label", self.label_filters());
        if let Some(id) = id {
            filters.insert("id", vec![id.to_string()]);
        }
        let summaries = self.list_summaries(&filters).await?;
        Ok(summaries
            .into_iter()
            // The daemon filtered already; checking again costs nothing and keeps the
            // promise even against a daemon that ignores a filter.
            .filter(|s| self.owns(s.labels.as_ref()))
            .filter_map(container_info)
            .collect())
    }

    /// Registers a container that Invok did not create (by id or name) as a member of
    /// `pool`: it is listed, sampled, probed and routed to like the pool's own, but it is
    /// never replaced or removed. Returns it as listed, with the port its image exposes.
    ///
    /// [`RuntimeError::NotFound`] when there is no such container (or it went away while
    /// being registered), [`RuntimeError::Unavailable`] when Docker cannot be reached.
    pub async fn register(&self, id_or_name: &str, pool: &str) -> Result<Registered, RuntimeError> {
        let c = self
            .docker
            .inspect_container(id_or_name, None)
            .await
            .map_err(map_err)?;
        let exposed_port = c
            .config
            .as_ref()
            .and_then(|c| c.exposed_ports.as_ref())
            .and_then(|ports| ports.iter().find_map(|p| p.split('/').next()?.parse().ok()));
        let id =
            c.id.ok_or_else(|| RuntimeError::Api(format!("{id_or_name}: Docker gave no id")))?;
        self.registered
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), pool.to_string());
        let container = self
            .list_registered()
            .await?
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| {
                RuntimeError::NotFound(format!("{id_or_name} vanished while being registered"))
            })?;
        Ok(Registered {
            container,
            exposed_port,
        })
    }

    /// The registered containers that still exist, as their pools' members.
    async fn list_registered(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let registered = self
            .registered
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if registered.is_empty() {
            return Ok(Vec::new());
        }
        let mut filters: HashMap<&str, Vec<String>> = HashMap::new();
        filters.insert("id", registered.keys().cloned().collect());
        let summaries = self.list_summaries(&filters).await?;
        let mut seen = Vec::new();
        let infos = summaries
            .into_iter()
            .filter_map(|s| {
                // A registered container may publish on all interfaces; loopback reaches it.
                let any_port = s.ports.as_deref().unwrap_or_default().iter().find_map(|p| {
                    (matches!(p.ip.as_deref(), Some("127.0.0.1") | Some("0.0.0.0")))
                        .then_some(p.public_port)
                        .flatten()
                });
                let mut info = container_info(s)?;
                let pool = registered.get(&info.id)?.clone();
                seen.push(info.id.clone());
                info.pool = pool;
                info.pinned = true;
                info.host_port = info.host_port.or(any_port);
                Some(info)
            })
            .collect();
        // Forget containers that are gone for good; one registered while we listed was
        // not asked about and stays.
        self.registered
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id, _| seen.contains(id) || !registered.contains_key(id));
        Ok(infos)
    }

    /// Force-removes a container; gone or already being removed counts as done.
    async fn force_remove(&self, id: &str) -> Result<(), RuntimeError> {
        let opts = RemoveContainerOptionsBuilder::new().force(true).build();
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_status(&e, &[404]) || is_removal_in_progress(&e) => Ok(()),
            Err(e) => Err(map_err(e)),
        }
    }

    /// When `name` is taken by a container of ours, removes it and returns `Ok`; when it is
    /// someone else's, an error naming it.
    async fn clear_name_conflict(&self, name: &str) -> Result<(), RuntimeError> {
        let existing = match self.docker.inspect_container(name, None).await {
            Ok(c) => c,
            // Removed in the meantime: the retry will find the name free.
            Err(e) if is_status(&e, &[404]) => return Ok(()),
            Err(e) => return Err(map_err(e)),
        };
        let id = existing.id.clone().unwrap_or_default();
        let labels = existing.config.as_ref().and_then(|c| c.labels.as_ref());
        if !self.owns(labels) {
            return Err(RuntimeError::Conflict(format!(
                "409: the name {name} is taken by container {id}, which does not carry \
                 {}={} and {}={}; it is not ours to remove",
                labels::MANAGED_BY,
                labels::MANAGED_BY_VALUE,
                labels::INSTANCE,
                self.instance
            )));
        }
        tracing::info!(name, id = %id, "removing a stale container of ours that holds the name");
        self.force_remove(&id).await
    }

    /// Creates, starts and lists one container; the retry-free core of [`Runtime::create`].
    async fn create_once(
        &self,
        req: &CreateRequest,
        body: ContainerCreateBody,
    ) -> Result<String, DockerError> {
        let opts = CreateContainerOptionsBuilder::new().name(&req.name).build();
        let created = self.docker.create_container(Some(opts), body).await?;
        for w in created.warnings.iter().filter(|w| !w.is_empty()) {
            tracing::warn!(name = %req.name, warning = %w, "Docker warned on create");
        }
        Ok(created.id)
    }

    /// Creates and starts one container outside any pool (the seed's `runner`): `name`,
    /// the function's `port` published on 127.0.0.1 at `host_port` (empty: Docker picks),
    /// joined to `network`, with `labels`, restarted never, an init as PID 1 as pool
    /// containers have. The image must be present or pullable and the network exist
    /// (see [`super::Runtime::ensure_network`]). Returns the container's id.
    pub async fn run_named(
        &self,
        image: &str,
        name: &str,
        port: u16,
        host_port: &str,
        network: &str,
        labels: HashMap<String, String>,
    ) -> Result<String, RuntimeError> {
        let port_key = format!("{port}/tcp");
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            labels: Some(labels),
            exposed_ports: Some(vec![port_key.clone()]),
            host_config: Some(HostConfig {
                port_bindings: Some(HashMap::from([(
                    port_key,
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".to_string()),
                        host_port: Some(host_port.to_string()),
                    }]),
                )])),
                network_mode: (!network.is_empty()).then(|| network.to_string()),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::NO),
                    maximum_retry_count: None,
                }),
                init: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::new().name(name).build();
        let id = match self.docker.create_container(Some(opts), body).await {
            Ok(created) => created.id,
            Err(e) if is_status(&e, &[404]) && error_message(&e).contains("No such image") => {
                return Err(RuntimeError::ImageUnavailable {
                    image: image.to_string(),
                    reason: error_message(&e),
                });
            }
            Err(e) => return Err(map_err(e)),
        };
        if let Err(e) = self.docker.start_container(&id, None).await {
            // A container that cannot start (its port taken, say) is not left behind.
            let force = RemoveContainerOptionsBuilder::new().force(true).build();
            let _ = self.docker.remove_container(&id, Some(force)).await;
            return Err(map_err(e));
        }
        Ok(id)
    }

    /// Makes sure exactly one network called `name` exists, removing duplicates of ours
    /// made by a concurrent creator (keeping the one with the smallest id, which every
    /// racer agrees on).
    async fn dedupe_network(&self, name: &str) -> Result<(), RuntimeError> {
        let filters = HashMap::from([("name", vec![name.to_string()])]);
        let opts = ListNetworksOptionsBuilder::new().filters(&filters).build();
        let mut same: Vec<_> = self
            .docker
            .list_networks(Some(opts))
            .await
            .map_err(map_err)?
            .into_iter()
            // The name filter matches substrings.
            .filter(|n| n.name.as_deref() == Some(name))
            .collect();
        same.sort_by(|a, b| a.id.cmp(&b.id));
        for extra in same.iter().skip(1) {
            let id = extra.id.as_deref().unwrap_or_default();
            let ours = extra
                .labels
                .as_ref()
                .and_then(|l| l.get(labels::MANAGED_BY))
                .map(String::as_str)
                == Some(labels::MANAGED_BY_VALUE);
            if !ours {
                return Err(RuntimeError::Api(format!(
                    "network name {name} is ambiguous: network {id} has it too and is not managed by invok"
                )));
            }
            tracing::info!(network = name, id, "removing a duplicate network");
            match self.docker.remove_network(id).await {
                Ok(()) => {}
                Err(e) if is_status(&e, &[404]) => {}
                Err(e) => return Err(map_err(e)),
            }
        }
        Ok(())
    }
}

impl Runtime for DockerRuntime {
    fn read_usage(
        &self,
        due: &[String],
        running: &HashSet<String>,
    ) -> HashMap<String, UsageReading> {
        // Held for file reads of a few microseconds each, never across an await.
        let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        usage
            .get_or_insert_with(|| UsageReader::from_env(self.docker.clone()))
            .read(due, running)
    }

    #[tracing::instrument(skip(self), fields(instance = %self.instance))]
    async fn ping(&self) -> Result<(), RuntimeError> {
        self.docker.ping().await.map(|_| ()).map_err(map_err)
    }

    #[tracing::instrument(skip(self), fields(instance = %self.instance))]
    async fn daemon_id(&self) -> Result<String, RuntimeError> {
        let info = self.docker.info().await.map_err(map_err)?;
        match info.id.filter(|id| !id.trim().is_empty()) {
            Some(id) => Ok(id),
            None => Err(RuntimeError::Api(
                "the daemon reports no ID in `docker info`, so it cannot be told apart from \
                 another daemon"
                    .into(),
            )),
        }
    }

    #[tracing::instrument(skip(self), fields(instance = %self.instance))]
    async fn list(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let mut list = self.list_filtered(None).await?;
        list.extend(self.list_registered().await?);
        Ok(list)
    }

    #[tracing::instrument(skip(self))]
    async fn ensure_image(&self, image: &str) -> Result<(), RuntimeError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => return Ok(()),
            Err(e) if is_status(&e, &[404]) => {}
            Err(e) => return Err(map_err(e)),
        }
        tracing::info!(image, "image not present locally, pulling it");
        let unavailable = |reason: String| RuntimeError::ImageUnavailable {
            image: image.to_string(),
            reason,
        };
        let pull = self
            .docker
            .create_image(Some(pull_options(image)), None, None)
            .try_for_each(|_progress| future::ready(Ok(())));
        match tokio::time::timeout(PULL_TIMEOUT, pull).await {
            Err(_) => Err(unavailable(format!(
                "the pull did not finish within {}s",
                PULL_TIMEOUT.as_secs()
            ))),
            Ok(Err(e)) => match map_err(e) {
                RuntimeError::Unavailable(m) => Err(RuntimeError::Unavailable(m)),
                RuntimeError::Api(m)
                | RuntimeError::NotFound(m)
                | RuntimeError::Conflict(m)
                | RuntimeError::ImageUnavailable { reason: m, .. } => Err(unavailable(m)),
            },
            Ok(Ok(())) => Ok(()),
        }
    }

    #[tracing::instrument(skip(self))]
    async fn ensure_network(&self, network: &str) -> Result<(), RuntimeError> {
        let _serialized = self.network_lock.lock().await;
        match self.docker.inspect_network(network, None).await {
            Ok(_) => return Ok(()),
            Err(e) if is_status(&e, &[404]) => {}
            // "2 matches found based on name": someone raced us; repair below.
            Err(e) if is_status(&e, &[400]) && error_message(&e).contains("ambiguous") => {
                return self.dedupe_network(network).await;
            }
            Err(e) => return Err(map_err(e)),
        }
        let body = NetworkCreateRequest {
            name: network.to_string(),
            driver: Some("bridge".to_string()),
            labels: Some(HashMap::from([(
                labels::MANAGED_BY.to_string(),
                labels::MANAGED_BY_VALUE.to_string(),
            )])),
            ..Default::default()
        };
        match self.docker.create_network(body).await {
            Ok(r) => tracing::info!(network, id = %r.id, "created network"),
            // Newer daemons refuse duplicates with 409: someone else made it.
            Err(e) if is_status(&e, &[409]) => return Ok(()),
            Err(e) => return Err(map_err(e)),
        }
        // Older daemons (20.10) accept duplicate names: another operator may have made
        // the same network at the same moment.
        self.dedupe_network(network).await
    }

    #[tracing::instrument(skip(self, req), fields(name = %req.name, pool = %req.pool, instance = %self.instance))]
    async fn create(&self, req: &CreateRequest) -> Result<ContainerInfo, RuntimeError> {
        if req.instance != self.instance {
            return Err(RuntimeError::Api(format!(
                "refusing to create {} for instance {:?}: this runtime manages instance {:?}",
                req.name, req.instance, self.instance
            )));
        }
        let started_at = Instant::now();
        let body = create_body(req);
        let mut conflicts = 0;
        let id = loop {
            match self.create_once(req, body.clone()).await {
                Ok(id) => break id,
                Err(e) if is_status(&e, &[409]) && conflicts == 0 => {
                    conflicts += 1;
                    self.clear_name_conflict(&req.name).await?;
                }
                Err(e) if is_status(&e, &[404]) && error_message(&e).contains("No such image") => {
                    return Err(RuntimeError::ImageUnavailable {
                        image: req.template.image.clone(),
                        reason: error_message(&e),
                    });
                }
                Err(e) => return Err(map_err(e)),
            }
        };
        // 304 (already started) is a success for bollard.
        if let Err(e) = self.docker.start_container(&id, None).await {
            let err = map_err(e);
            tracing::warn!(id = %id, error = %err, "start failed, removing the half-created container");
            if let Err(cleanup) = self.force_remove(&id).await {
                tracing::warn!(id = %id, error = %cleanup, "could not remove the container that failed to start");
            }
            return Err(err);
        }
        let info = self
            .list_filtered(Some(&id))
            .await?
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| {
                RuntimeError::NotFound(format!(
                    "container {} ({id}) vanished right after its start",
                    req.name
                ))
            })?;
        tracing::debug!(
            id = %id,
            host_port = ?info.host_port,
            elapsed_ms = started_at.elapsed().as_millis() as u64,
            "container created and started"
        );
        Ok(info)
    }

    #[tracing::instrument(skip(self), fields(instance = %self.instance))]
    async fn remove(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let existing = match self.docker.inspect_container(id, None).await {
            Ok(c) => c,
            Err(e) if is_status(&e, &[404]) => return Ok(()),
            Err(e) => return Err(map_err(e)),
        };
        let labels = existing.config.as_ref().and_then(|c| c.labels.as_ref());
        if !self.owns(labels) {
            let name = existing
                .name
                .as_deref()
                .unwrap_or_default()
                .trim_start_matches('/');
            return Err(RuntimeError::Api(format!(
                "refusing to remove container {name} ({id}): it does not carry {}={} and {}={}",
                labels::MANAGED_BY,
                labels::MANAGED_BY_VALUE,
                labels::INSTANCE,
                self.instance
            )));
        }
        // Use the full id from here on: a prefix could match another container later.
        let id = existing.id.as_deref().unwrap_or(id);
        let secs = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        let t = i32::try_from(secs).unwrap_or(i32::MAX);
        let opts = StopContainerOptionsBuilder::new().t(t).build();
        // The stop call returns only after the grace period: give it that on top.
        let stopper = self
            .docker
            .clone()
            .with_timeout(REQUEST_TIMEOUT + Duration::from_secs(secs));
        match stopper.stop_container(id, Some(opts)).await {
            // 304 (already stopped) is a success for bollard.
            Ok(()) => {}
            Err(e) if is_status(&e, &[404]) => return Ok(()),
            Err(e) => {
                let err = map_err(e);
                if err.is_unavailable() {
                    return Err(err);
                }
                // The forced removal below kills it anyway.
                tracing::warn!(id, error = %err, "stop failed, removing by force");
            }
        }
        self.force_remove(id).await
    }

    fn events(&self) -> EventStream {
        let filters = HashMap::from([
            ("type", vec!["container".to_string()]),
            ("label", self.label_filters()),
        ]);
        // bollard sends the request on the first poll only; `since` makes the stream
        // start now, when it is asked for, whenever the caller gets to polling it.
        let since = unix_timestamp(SystemTime::now());
        let opts = EventsOptionsBuilder::new()
            .since(&since)
            .filters(&filters)
            .build();
        let this = self.clone();
        let stream = self.docker.events(Some(opts)).filter_map(move |msg| {
            future::ready(match msg {
                Ok(m) => this.runtime_event(m).map(Ok),
                Err(e) => Some(Err(map_err(e))),
            })
        });
        Box::pin(stream)
    }
}

impl DockerRuntime {
    /// The event as the controller sees it, or `None` for one that is not about a
    /// container of this instance.
    fn runtime_event(&self, m: EventMessage) -> Option<RuntimeEvent> {
        let actor = m.actor?;
        let id = actor.id?;
        if !self.owns(actor.attributes.as_ref()) {
            return None;
        }
        let pool = actor
            .attributes
            .as_ref()
            .and_then(|a| a.get(labels::POOL))
            .cloned()
            .unwrap_or_default();
        Some(RuntimeEvent {
            id,
            pool,
            action: m.action.unwrap_or_default(),
        })
    }
}

/// The create body for a request: image, command, env, labels, the function port
/// published on loopback with a Docker-chosen host port, limits, no restart policy.
fn create_body(req: &CreateRequest) -> ContainerCreateBody {
    let t = &req.template;
    let port_key = format!("{}/tcp", t.port);
    let bindings = HashMap::from([(
        port_key.clone(),
        Some(vec![PortBinding {
            host_ip: Some("127.0.0.1".to_string()),
            host_port: Some(String::new()),
        }]),
    )]);
    ContainerCreateBody {
        image: Some(t.image.clone()),
        cmd: t.command.clone(),
        env: Some(t.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(req.labels().into_iter().collect()),
        exposed_ports: Some(vec![port_key]),
        host_config: Some(HostConfig {
            port_bindings: Some(bindings),
            nano_cpus: t.cpus.map(|c| (c * 1e9).round() as i64),
            memory: t.memory.map(|m| i64::try_from(m).unwrap_or(i64::MAX)),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            network_mode: t.network.clone(),
            // A tiny init as PID 1 forwards SIGTERM, so graceful stops take milliseconds
            // even for images whose server ignores signals as PID 1 (busybox httpd does).
            init: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Pull options for `image`. A reference without tag or digest gets `latest`: an empty
/// tag would make the daemon pull every tag of the repository.
fn pull_options(image: &str) -> bollard::query_parameters::CreateImageOptions {
    let last = image.rsplit('/').next().unwrap_or(image);
    let builder = CreateImageOptionsBuilder::new().from_image(image);
    if image.contains('@') || last.contains(':') {
        builder.build()
    } else {
        builder.tag("latest").build()
    }
}

/// A listed container as [`ContainerInfo`]; `None` when Docker left out the id.
fn container_info(s: ContainerSummary) -> Option<ContainerInfo> {
    let id = s.id?;
    let labels: BTreeMap<String, String> = s.labels.unwrap_or_default().into_iter().collect();
    let host_port = s.ports.as_deref().unwrap_or_default().iter().find_map(|p| {
        let tcp = matches!(p.typ, Some(PortSummaryTypeEnum::TCP) | None);
        (tcp && p.ip.as_deref() == Some("127.0.0.1"))
            .then_some(p.public_port)
            .flatten()
            .filter(|port| *port != 0)
    });
    Some(ContainerInfo {
        name: s
            .names
            .as_deref()
            .and_then(|n| n.first())
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_default(),
        pool: labels.get(labels::POOL).cloned().unwrap_or_default(),
        spec_hash: labels.get(labels::SPEC_HASH).cloned().unwrap_or_default(),
        state: RunState::from_docker(s.state.as_ref().map(AsRef::as_ref).unwrap_or("")),
        host_port,
        created: UNIX_EPOCH + Duration::from_secs(s.created.unwrap_or(0).max(0) as u64),
        image: s.image.unwrap_or_default(),
        labels: labels.into(),
        id,
        pinned: false,
    })
}

/// `secs.nanos`, the form the events API accepts for `since`.
fn unix_timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

/// Maps a bollard error onto [`RuntimeError`]: unreachable daemon, or what it said.
fn map_err(e: DockerError) -> RuntimeError {
    match e {
        DockerError::DockerResponseServerError {
            status_code: 404,
            message,
        } => RuntimeError::NotFound(format!("404: {message}")),
        DockerError::DockerResponseServerError {
            status_code: 409,
            message,
        } => RuntimeError::Conflict(format!("409: {message}")),
        DockerError::DockerResponseServerError {
            status_code,
            message,
        } => RuntimeError::Api(format!("{status_code}: {message}")),
        DockerError::RequestTimeoutError => {
            RuntimeError::Unavailable("the daemon did not answer in time".to_string())
        }
        e @ (DockerError::SocketNotFoundError(_)
        | DockerError::IOError { .. }
        | DockerError::HyperResponseError { .. }
        | DockerError::HyperLegacyError { .. }) => RuntimeError::Unavailable(error_chain(&e)),
        e => RuntimeError::Api(error_chain(&e)),
    }
}

/// The error and its sources, `: `-joined (hyper hides the useful part in the sources).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
}

/// The HTTP status the daemon answered with, when it answered with an error.
fn status_code(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// True when the daemon answered with one of `codes`.
fn is_status(e: &DockerError, codes: &[u16]) -> bool {
    status_code(e).is_some_and(|c| codes.contains(&c))
}

/// The daemon's message, or the error's text.
fn error_message(e: &DockerError) -> String {
    match e {
        DockerError::DockerResponseServerError { message, .. } => message.clone(),
        e => e.to_string(),
    }
}

/// 409 "removal of container ... is already in progress".
fn is_removal_in_progress(e: &DockerError) -> bool {
    is_status(e, &[409]) && error_message(e).contains("already in progress")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::PortSummary;

    #[test]
    fn pull_options_default_the_tag_to_latest_only_when_there_is_none() {
        let o = pull_options("busybox");
        assert_eq!(
            (o.from_image.as_deref(), o.tag.as_deref()),
            (Some("busybox"), Some("latest"))
        );
        let o = pull_options("127.0.0.1:5000/x/y");
        assert_eq!(o.tag.as_deref(), Some("latest"));
        assert_eq!(pull_options("127.0.0.1:5000/x/y:1").tag, None);
        assert_eq!(pull_options("x/y@sha256:abcd").tag, None);
    }

    #[test]
    fn container_info_takes_the_loopback_tcp_port_and_strips_the_name() {
        let port = |ip: Option<&str>, private, public, typ| PortSummary {
            ip: ip.map(str::to_string),
            private_port: private,
            public_port: public,
            typ: Some(typ),
        };
        let s = ContainerSummary {
            id: Some("abc".into()),
            names: Some(vec!["/invok-hello-x1y2z".into()]),
            created: Some(1_700_000_000),
            state: Some(bollard::models::ContainerSummaryStateEnum::RUNNING),
            ports: Some(vec![
                port(None, 9090, None, PortSummaryTypeEnum::TCP),
                port(
                    Some("127.0.0.1"),
                    8080,
                    Some(4242),
                    PortSummaryTypeEnum::UDP,
                ),
                port(
                    Some("127.0.0.1"),
                    8080,
                    Some(49153),
                    PortSummaryTypeEnum::TCP,
                ),
            ]),
            labels: Some(HashMap::from([
                (labels::POOL.to_string(), "hello".to_string()),
                (labels::SPEC_HASH.to_string(), "h1".to_string()),
            ])),
            ..Default::default()
        };
        let c = container_info(s).unwrap();
        assert_eq!(c.name, "invok-hello-x1y2z");
        assert_eq!(c.host_port, Some(49153));
        assert_eq!(c.state, RunState::Running);
        assert_eq!((c.pool.as_str(), c.spec_hash.as_str()), ("hello", "h1"));
        assert_eq!(c.created, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    }

    #[test]
    fn server_errors_map_to_api_and_transport_errors_to_unavailable() {
        let e = DockerError::DockerResponseServerError {
            status_code: 500,
            message: "boom".into(),
        };
        assert!(is_status(&e, &[404, 500]));
        assert!(!is_status(&e, &[404]));
        assert!(matches!(map_err(e), RuntimeError::Api(m) if m == "500: boom"));
        let gone = map_err(DockerError::DockerResponseServerError {
            status_code: 404,
            message: "No such container: x".into(),
        });
        assert!(gone.is_not_found() && !gone.is_unavailable(), "{gone:?}");
        assert_eq!(gone.to_string(), "Docker: 404: No such container: x");
        let taken = map_err(DockerError::DockerResponseServerError {
            status_code: 409,
            message: "name in use".into(),
        });
        assert!(matches!(&taken, RuntimeError::Conflict(m) if m == "409: name in use"));
        assert!(!taken.is_unavailable());
        assert!(map_err(DockerError::RequestTimeoutError).is_unavailable());
        assert!(map_err(DockerError::SocketNotFoundError("/x.sock".into())).is_unavailable());
    }
}

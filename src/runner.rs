//! The seed's `runner`: start one function container by hand, outside any pool.
//!
//! The seed's "Integration with Existing Invok Code" and "Migration Guide" start a
//! container with `runner(image_name, container_details)` and then hand it to
//! [`crate::AutoscalingRuntime::register_container`]. This is that function, at the
//! seed's path with the crate name changed (`runtime::core::runner` is
//! `invok::runner`), over the same Docker runtime the operator uses:
//!
//! ```no_run
//! use invok::runner::{runner, ContainerDetails};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let details = ContainerDetails {
//!     container_port: 8080,
//!     bind_port: "0".to_string(), // Docker picks the host port
//!     container_name: "hello-1".to_string(),
//!     timeout: 30,
//!     docker_compose_network_host: "invok-network".to_string(),
//! };
//! let id = runner("invok/demo-fn:latest", details).await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;

use crate::runtime::docker::DockerRuntime;
use crate::runtime::{labels, Runtime, RuntimeError};

/// How to start a function container: the seed's fields, unchanged.
#[derive(Clone, Debug)]
pub struct ContainerDetails {
    /// The port the function listens on inside the container.
    pub container_port: u16,
    /// The host port to publish it on, on 127.0.0.1 only; empty or `"0"`: Docker picks a
    /// free one.
    pub bind_port: String,
    /// The container's name (it must be free).
    pub container_name: String,
    /// The longest an invocation of this container may take, in seconds: a pool that
    /// [`crate::AutoscalingRuntime::register_container`] creates for this container
    /// gets it as its request timeout (the gateway answers 504 after it), as the seed's
    /// static timeout bounded an invocation. Recorded on the container as the label
    /// `dev.invok.timeout`. Must be above 0.
    pub timeout: u64,
    /// The Docker network to join, created when missing (as pools create theirs); empty:
    /// Docker's default bridge.
    pub docker_compose_network_host: String,
}

/// Why [`runner`] could not start the container; each says what failed.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The Docker daemon did not answer.
    #[error("Docker is unreachable: {0}")]
    DockerUnreachable(String),
    /// The image is not on this host and could not be pulled.
    #[error("image {image} is missing: it is not on this host and could not be pulled ({reason})")]
    ImageMissing {
        /// The image asked for.
        image: String,
        /// What Docker said.
        reason: String,
    },
    /// Another container has the name.
    #[error("the container name {name:?} is taken by another container: {reason}")]
    NameTaken {
        /// The name asked for.
        name: String,
        /// What Docker said.
        reason: String,
    },
    /// The network could not be found or created.
    #[error("network {network:?}: {reason}")]
    Network {
        /// The network asked for.
        network: String,
        /// What went wrong.
        reason: String,
    },
    /// A field of [`ContainerDetails`] is not usable.
    #[error("invalid ContainerDetails: {0}")]
    InvalidDetails(String),
    /// Docker refused the container for another reason (the host port taken, say).
    #[error("starting {name:?}: {reason}")]
    Docker {
        /// The container's name.
        name: String,
        /// What Docker said.
        reason: String,
    },
}

/// Creates and starts a container of `image_name` as `details` say, and returns its id:
/// named `container_name`, joined to `docker_compose_network_host` (created if missing),
/// the function's `container_port` published on 127.0.0.1 at `bind_port`. It uses its
/// own Docker connection (the local daemon, API version negotiated). The container
/// belongs to the caller: no pool owns it until it is registered, and Invok never
/// removes a registered container.
pub async fn runner(image_name: &str, details: ContainerDetails) -> Result<String, RunnerError> {
    let bind_port = match details.bind_port.trim() {
        "" | "0" => String::new(),
        p => match p.parse::<u16>() {
            Ok(n) if n > 0 => n.to_string(),
            _ => {
                return Err(RunnerError::InvalidDetails(format!(
                    "bind_port {:?} is not a port (1-65535, or empty or \"0\" for any)",
                    details.bind_port
                )))
            }
        },
    };
    if details.container_port == 0 {
        return Err(RunnerError::InvalidDetails("container_port is 0".into()));
    }
    if details.timeout == 0 {
        return Err(RunnerError::InvalidDetails(
            "timeout is 0 s: an invocation needs some time".into(),
        ));
    }
    let docker = DockerRuntime::connect("runner".into())
        .await
        .map_err(|e| RunnerError::DockerUnreachable(e.to_string()))?;
    let image_error = |e: RuntimeError| match e {
        RuntimeError::Unavailable(m) => RunnerError::DockerUnreachable(m),
        RuntimeError::ImageUnavailable { reason, .. } => RunnerError::ImageMissing {
            image: image_name.to_string(),
            reason,
        },
        other => RunnerError::ImageMissing {
            image: image_name.to_string(),
            reason: other.to_string(),
        },
    };
    docker.ensure_image(image_name).await.map_err(image_error)?;
    let network = details.docker_compose_network_host.trim();
    if !network.is_empty() {
        docker.ensure_network(network).await.map_err(|e| match e {
            RuntimeError::Unavailable(m) => RunnerError::DockerUnreachable(m),
            other => RunnerError::Network {
                network: network.to_string(),
                reason: other.to_string(),
            },
        })?;
    }
    let labels = HashMap::from([
        (labels::RUNNER.to_string(), "true".to_string()),
        (labels::TIMEOUT.to_string(), details.timeout.to_string()),
    ]);
    let name = details.container_name.clone();
    docker
        .run_named(
            image_name,
            &name,
            details.container_port,
            &bind_port,
            network,
            labels,
        )
        .await
        .map_err(|e| match e {
            RuntimeError::Unavailable(m) => RunnerError::DockerUnreachable(m),
            RuntimeError::Conflict(reason) => RunnerError::NameTaken { name, reason },
            RuntimeError::ImageUnavailable { reason, .. } => RunnerError::ImageMissing {
                image: image_name.to_string(),
                reason,
            },
            other => RunnerError::Docker {
                name,
                reason: other.to_string(),
            },
        })
}

//! Invok keeps pools of function containers on a Docker host at the size their load needs.
//!
//! Users declare `FunctionPool` manifests in a directory; `invok run` converges Docker to
//! them, scales each pool on CPU, memory and concurrency, and routes invocations to the
//! least-loaded ready container. The same engine is available as a library through the
//! seed's [`AutoscalingRuntime`].
//!
//! # Layout
//!
//! Data flows one way, one module per step:
//!
//! ```text
//! manifest dir --(manifest: read, validate, watch)--> Desired ------+
//!                                                                   +--> controller: scheduler -> reconcile(pool)
//! runtime (Docker): events + relist --------------> ObservedStore --+        |  scaler::decide + scaler::plan
//! sampler (cgroups), probe, gateway (in flight) --> ObservedStore            +--> runtime (create/remove)
//!                                                                            +--> status --> admin API / CLI
//! gateway (HTTP) --> ObservedStore::pick --> proxy to the container's loopback port
//! ```
//!
//! - [`api`]: the `FunctionPool` resource and its validated form, [`api::EffectiveSpec`].
//! - [`manifest`]: reads a directory of YAML into validated pools, with FILE:LINE:COL errors;
//!   the debounced watcher.
//! - [`runtime`]: the only module that talks to Docker (bollard), behind the
//!   [`runtime::Runtime`] trait, which no bollard type crosses: containers, events,
//!   the readiness check of a published port, and usage readings (cgroup files, or
//!   Docker's stats streams where none is readable).
//! - [`scaler`]: the decisions, pure functions of (spec, observed containers, clock).
//! - [`sampler`]: CPU and RSS of every container, from the runtime's usage readings,
//!   into the observed store.
//! - [`controller`]: the desired state and its prune rules, the observed store, the
//!   scheduler, `reconcile`, backoff and status.
//! - [`probe`]: readiness probes.
//! - [`gateway`], [`admin`], [`metrics`]: the HTTP surfaces.
//! - [`export`]: the same pools as Kubernetes objects.
//! - [`facade`]: the seed's programmatic API.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod api;
pub mod controller;
pub mod export;
pub mod facade;
pub mod gateway;
pub mod manifest;
pub mod metrics;
pub mod probe;
pub mod runtime;
pub mod sampler;
pub mod scaler;
pub mod scheduler;
pub mod store;

pub use facade::{
    Autoscaler, AutoscalerConfig, AutoscalingError, AutoscalingRuntime, AutoscalingRuntimeBuilder,
    ContainerManager, ContainerPool,
};

//! Invok keeps pools of function containers on a Docker host at the size their load needs.
//!
//! Users declare `FunctionPool` manifests in a directory; `invok run` converges Docker to
//! them, scales each pool on CPU, memory and concurrency, and routes invocations to the
//! least-loaded ready container. The same engine is available as a library through the
//! seed's [`AutoscalingRuntime`].
//!
//! # Layout
//!
//! Data flows one way, one module per step, and no module imports one that imports it
//! back (`tests/architecture.rs` checks it, for the modules and for the files inside
//! each module directory):
//!
//! ```text
//! manifest dir --(manifest: read, validate, watch)--> controller::Desired --+
//!                                                                           +--> scheduler --> controller: reconcile(pool)
//! runtime (Docker): events + relist ----------------> store::ObservedStore -+      observe -> scaler::decide + plan (pure)
//! sampler (usage), probe (readiness), gateway ------> store::ObservedStore         -> act (runtime); record (status,
//!                                                                                     events, metrics, logs) of the
//!                                                                                     decision, of each container as
//!                                                                                     act reports it, of the outcome
//! gateway (HTTP) --> ObservedStore::pick --> proxy to the container's loopback port
//! admin (HTTP), cli --> controller::report (read-only views) and metrics
//! ```
//!
//! - [`api`]: the `FunctionPool` resource and its validated form, [`api::EffectiveSpec`].
//!   No IO.
//! - [`manifest`]: reads a directory of YAML into validated pools, with FILE:LINE:COL
//!   errors; the debounced watcher.
//! - [`runtime`]: the only module that talks to Docker (bollard), behind the
//!   [`runtime::Runtime`] trait, which no bollard type crosses: containers, events,
//!   the readiness check of a published port, and usage readings (cgroup files, or
//!   Docker's stats streams where none is readable); an in-memory runtime with fault
//!   injection for tests and the simulation.
//! - [`scaler`]: the decisions, pure functions of (spec, observed containers, clock).
//! - [`store`]: the observed containers (one writer per fact, many cheap readers), and
//!   the gateway's pick.
//! - [`scheduler`]: deduplicated, delayed triggers; never two reconciles of one pool.
//! - [`sampler`]: CPU and RSS of every running container, into the store.
//! - [`probe`]: readiness probes, scheduled per container, into the store.
//! - [`metrics`]: Prometheus families; recorded where work happens, state rebuilt from a
//!   snapshot the controller hands it.
//! - [`controller`]: the desired state and its prune rules, the input loops, and
//!   `reconcile` in four steps (observe, decide, act, record), backoff and status.
//! - [`gateway`], [`admin`]: the HTTP surfaces, served by [`http`] (hyper with a header
//!   read timeout; a failed accept pauses instead of spinning).
//! - [`export`]: the same pools as Kubernetes objects.
//! - [`lock`]: one operator per instance per Docker daemon (a file lock keyed on the
//!   daemon's ID), taken by `invok run` and by the programmatic API.
//! - [`facade`]: the seed's programmatic API over the same engine.
//!
//! # Tests, and what each proves
//!
//! - Unit and property tests beside the code: validation, quantities and durations, the
//!   manifest loader, the prune rules (`controller/desired`), the scaler's invariants,
//!   the scheduler on paused time, the store, the loop against the in-memory runtime
//!   (`controller/tests.rs`, `controller/failure_tests.rs`: panics, shutdown, probes).
//! - `tests/simulation.rs` (+ `tests/sim/`): the whole operator on tokio's paused clock
//!   against the fault-injecting in-memory runtime, seeded, invariants after every step.
//! - `tests/regression.rs` (+ `tests/regression/`): one test per bug found, on real Docker.
//! - `tests/architecture.rs`: no import cycles.
//! - `tests/schema.rs`, `tests/cli_validate.rs`, `tests/export.rs`: the JSON Schema, `invok
//!   validate`, the CRD and Kubernetes objects.
//! - On real Docker: `tests/demo_image.rs` (the demo function), `tests/runtime_docker.rs`
//!   (the bollard runtime), `tests/sampler_cgroup.rs` (cgroup and stats readings agree),
//!   `tests/operator.rs` (`invok run`: create, heal, roll out, prune, adopt),
//!   `tests/autoscale.rs` (scaling on CPU and memory), `tests/gateway.rs` (routing,
//!   failures, scale from zero), `tests/cli.rs` (apply, diff, get, describe, delete),
//!   `tests/metrics.rs` (`/metrics`, `/status`, `/readyz`), `tests/facade.rs` (the seed's
//!   programmatic API), `tests/docker_outage.rs` (dockerd stopped and started under a
//!   running operator; a binary of its own).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod api;
pub mod controller;
pub mod export;
pub mod facade;
pub mod forecast;
pub mod gateway;
pub mod history;
pub mod http;
pub mod integration;
pub mod lock;
pub mod manifest;
pub mod metrics;
pub mod probe;
pub mod runner;
pub mod runtime;
pub mod sampler;
pub mod scaler;
pub mod scheduler;
pub mod scraper;
pub mod store;

pub use facade::{
    Autoscaler, AutoscalerConfig, AutoscalingError, AutoscalingRuntime, AutoscalingRuntimeBuilder,
    ContainerManager, ContainerPool,
};

//! Invok keeps pools of function containers on a Docker host at the size their load needs.
//!
//! # Layout
//!
//! Data flows one way, one module per step:
//!
//! ```text
//! manifest dir --(manifest: read, validate, watch)--> desired pools --+
//!                                                                      +--> controller --> runtime (Docker)
//! runtime: events + relist + metrics -------------> observed state ----+
//! ```
//!
//! - [`api`]: the `FunctionPool` resource and its validated form, [`api::EffectiveSpec`].
//! - [`manifest`]: reads a directory of YAML into validated pools, with FILE:LINE:COL errors.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod api;
pub mod controller;
pub mod export;
pub mod gateway;
pub mod manifest;
pub mod metrics;
pub mod probe;
pub mod runtime;
pub mod sampler;
pub mod scaler;
pub mod facade;

pub use facade::{Autoscaler, AutoscalerConfig, AutoscalingError, AutoscalingRuntime, AutoscalingRuntimeBuilder, ContainerManager, ContainerPool};

//! Readiness probes: is a container's function answering on its loopback port?
//!
//! The socket-level check lives with the runtime that publishes the ports
//! ([`crate::runtime::readiness`]); it is re-exported here, where users of
//! `invok::probe` find it.

pub use crate::runtime::readiness::{probe_once, CONNECT_TIMEOUT};

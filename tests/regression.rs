//! One test per bug found, named after the bug (as ripgrep's `tests/regression.rs`).
//!
//! Each test states the bug it guards against in its doc comment: what a user did, what
//! went wrong, and what must hold instead. Tests that involve Docker run against the
//! real daemon, each with its own `--instance`, and clean up what carries that label.
//! The tests live in submodules by area so that each stays readable on its own.

mod support;

/// Tests that measure CPU, and tests that load the host with many containers, hold this
/// lock, so that on a 2-core machine a measurement never runs beside a load (the tests
/// of one binary run in parallel).
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[path = "regression/apply.rs"]
mod apply;
#[path = "regression/drain.rs"]
mod drain;
#[path = "regression/facade.rs"]
mod facade;
#[path = "regression/fuzz.rs"]
mod fuzz;
#[path = "regression/gateway.rs"]
mod gateway;
#[path = "regression/operator.rs"]
mod operator;
#[path = "regression/sampler.rs"]
mod sampler;
#[path = "regression/signals.rs"]
mod signals;

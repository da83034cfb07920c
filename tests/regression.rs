//! One test per bug found, named after the bug (as ripgrep's `tests/regression.rs`).
//!
//! Each test states the bug it guards against in its doc comment: what a user did, what
//! went wrong, and what must hold instead. Tests that involve Docker run against the
//! real daemon, each with its own `--instance`, and clean up what carries that label.
//! The tests live in submodules by area so that each stays readable on its own.

mod support;

#[path = "regression/facade.rs"]
mod facade;
#[path = "regression/operator.rs"]
mod operator;
#[path = "regression/sampler.rs"]
mod sampler;

//! From one host to a cluster: the same `FunctionPool` manifests as Kubernetes objects.
//!
//! When a team outgrows one Docker host, Invok should not grow into a cluster manager:
//! Kubernetes already is one. This module maps what Invok does on a host onto what
//! Kubernetes does in a cluster, as pure functions that return typed k8s-openapi objects
//! and say, as [`Warning`]s, what does not carry over the same way:
//!
//! - [`crd()`]: the `CustomResourceDefinition` of `FunctionPool`, its structural schema
//!   derived from the same types as `schemas/functionpool.schema.json`;
//! - [`pool_objects`]: for one validated pool, a `Deployment`, a `Service` and an
//!   autoscaling/v2 `HorizontalPodAutoscaler`.
//!
//! The CLI (`invok export`) only prints them, with [`to_yaml`].

mod crd;
mod workload;

pub use crd::{
    crd, crd_schema, BooleanExclusiveBounds, IntOrStringExtension, NumericFormatsAsBounds,
    ProseDescriptions, CRD_NAME, PLURAL, SHORT_NAME, SINGULAR,
};
pub use workload::{
    pool_objects, ExportError, PoolObjects, Warning, CONTAINER_NAME, DEFAULT_CPU_REQUEST,
    MANAGED_BY, MANAGED_BY_LABEL, NAME_LABEL, PORT_NAME, SERVICE_PORT,
};

/// The CRD as `invok export crd` prints it and `schemas/functionpool.crd.yaml` holds it.
pub fn crd_yaml() -> String {
    format!(
        "# Generated from the FunctionPool Rust types by `invok export crd`; do not edit.\n{}",
        to_yaml(&crd())
    )
}

/// One object as a YAML document (without the `---` separator).
///
/// ```
/// let yaml = invok::export::to_yaml(&invok::export::crd());
/// assert!(yaml.starts_with("apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"));
/// ```
pub fn to_yaml<T: serde::Serialize>(object: &T) -> String {
    serde_yaml::to_string(object).expect("Kubernetes objects serialize to YAML")
}

/// Documents joined into one multi-document YAML stream, as `kubectl apply -f -` reads it.
pub fn yaml_stream<I: IntoIterator<Item = String>>(documents: I) -> String {
    documents.into_iter().map(|d| format!("---\n{d}")).collect()
}

#[cfg(test)]
mod tests;

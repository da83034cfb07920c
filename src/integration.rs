//! The seed's `runtime::core::integration` path: the programmatic API under the name the
//! seed's examples import it by (`invok::integration::AutoscalingRuntime`). The same
//! types are re-exported at the crate root.

pub use crate::facade::{
    Autoscaler, AutoscalerConfig, AutoscalingError, AutoscalingRuntime, AutoscalingRuntimeBuilder,
    ContainerManager, ContainerPool,
};

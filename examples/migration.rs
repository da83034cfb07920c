//! The seed's "Migration Guide" (from a static timeout and direct `runner` calls to
//! autoscaling), its three steps copied from the seed with only `runtime::core`
//! replaced by `invok`, in one function with the bindings the snippets assume. `main`
//! (not part of the seed's text) supplies them and runs it.
//!
//!   cargo run --example migration [FUNCTION]    (default migrate-fn)
//!
//! It starts one container with the seed's `runner` (Docker picks its host port); the
//! container stays afterwards, as the seed's runner leaves it:
//! `docker rm -f $(docker ps -q --filter label=dev.invok.runner=true)`.

use std::time::Duration;

use invok::integration::AutoscalingRuntimeBuilder;
use invok::runner::{runner, ContainerDetails};

#[rustfmt::skip]
#[allow(unused_variables)] // the seed's "old" timeout, kept to show what it replaces
async fn migrate(
    docker: bollard::Docker,
    network_host: String,
    image_name: &str,
    container_details: ContainerDetails,
    function_name: &str,
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    // ---- the seed's text, `runtime::core` -> `invok` ----
    // 1. Update configuration:
   // Old: Fixed timeout
   let timeout = Duration::from_secs(12);
   
   // New: Autoscaling configuration
   let runtime = AutoscalingRuntimeBuilder::new()
       .cpu_overload_threshold(0.70)
       .build(docker, network_host);

    // 2. Update function execution:
   // Old: Direct runner call
   runner(image_name, container_details).await?;
   
   // New: Autoscaling-aware execution
   runtime.execute_function(function_name).await?;

    // 3. Update monitoring:
   // Old: Manual container tracking
   // New: Built-in pool status
   let status = runtime.get_status();
    // ---- end of the seed's text ----
    Ok(status)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let function = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "migrate-fn".to_string());
    let docker = bollard::Docker::connect_with_local_defaults()?
        .negotiate_version()
        .await?;
    let details = ContainerDetails {
        container_port: 8080,
        bind_port: String::new(),
        container_name: format!("{function}-{}", uuid::Uuid::new_v4()),
        timeout: 12,
        docker_compose_network_host: "invok-network".to_string(),
    };
    let status = migrate(
        docker,
        "invok-network".into(),
        "invok/demo-fn:latest",
        details,
        &function,
    )
    .await?;
    println!("Runtime status: {}", serde_json::to_string_pretty(&status)?);
    Ok(())
}

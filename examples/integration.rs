//! The seed's "Integration with Existing Invok Code" example, copied from the seed with
//! only `runtime::core` replaced by `invok`: use a pooled container when one is ready,
//! else start one with the seed's `runner` and register it with the autoscaler. `main`
//! (not part of the seed's text) calls it twice: the first call starts and registers a
//! container (published on 127.0.0.1:8080, as the seed's `bind_port` says), the second
//! finds it.
//!
//!   cargo run --example integration [FUNCTION]    (default hello-fn)
//!
//! The container stays running afterwards (it is the caller's, as with the seed's
//! runner): `docker rm -f $(docker ps -q --filter label=dev.invok.runner=true)`.

// ---- the seed's text, `runtime::core` -> `invok` (kept as written: not reformatted) ----
use invok::integration::AutoscalingRuntime;
use invok::runner::{runner, ContainerDetails};

#[rustfmt::skip]
async fn enhanced_function_execution(
    runtime: &AutoscalingRuntime,
    function_name: &str,
    image_name: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    // Try to get an existing healthy container
    if let Some(container_id) = runtime.execute_function(function_name).await? {
        println!("Using existing container: {}", container_id);
        return Ok(());
    }
    
    // If no containers available, create a new one
    let container_details = ContainerDetails {
        container_port: 8080,
        bind_port: "8080".to_string(),
        container_name: format!("{}-{}", function_name, uuid::Uuid::new_v4()),
        timeout: 300,
        docker_compose_network_host: "invok-network".to_string(),
    };
    
    // Start the container using existing runner
    runner(image_name, container_details.clone()).await?;
    
    // Register it with the autoscaler
    runtime.register_container(
        function_name,
        container_details.container_name.clone(),
        container_details.container_name,
    ).await?;
    
    Ok(())
}
// ---- end of the seed's text ----

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let function = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "hello-fn".to_string());
    let runtime = AutoscalingRuntime::new("invok-network".to_string()).await?;
    runtime.start().await?;
    enhanced_function_execution(&runtime, &function, "invok/demo-fn:latest").await?;
    // Routable as soon as register_container returned.
    match runtime.execute_function(&function).await? {
        Some(id) => println!("Routable at once: {id}"),
        None => return Err("the registered container is not routable".into()),
    }
    enhanced_function_execution(&runtime, &function, "invok/demo-fn:latest").await?;
    println!(
        "Runtime status: {}",
        serde_json::to_string_pretty(&runtime.get_status())?
    );
    runtime.shutdown();
    Ok(())
}

//! The seed's "Basic Usage" example, unchanged apart from the crate path.
//!
//! Run it with a container named `container-123` on the host (any image that listens
//! on a published port), e.g.:
//!   docker run -d --name container-123 -p 127.0.0.1::8080 invok/demo-fn:latest
//!   cargo run --example basic_usage
use invok::AutoscalingRuntime;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Create autoscaling runtime with defaults
    let runtime = AutoscalingRuntime::new("invok-network".to_string()).await?;

    // Start the autoscaler background tasks
    runtime.start().await?;

    // Register a container for a function
    runtime
        .register_container(
            "my-function",
            "container-123".to_string(),
            "my-function-container-1".to_string(),
        )
        .await?;

    // Execute function (will use best available container)
    if let Some(container_id) = runtime.execute_function("my-function").await? {
        println!("Function executed on container: {}", container_id);
    }

    // Get status of all pools
    let status = runtime.get_status();
    println!("Runtime status: {}", serde_json::to_string_pretty(&status)?);

    Ok(())
}

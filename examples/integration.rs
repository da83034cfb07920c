//! The seed's "Integration with Existing Invok Code" example: use a pooled container
//! when one is ready, else create one (with bollard, where the seed used its `runner`)
//! and register it with the autoscaler.
//!
//!   cargo run --example integration
use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::CreateContainerOptionsBuilder;
use invok::AutoscalingRuntime;

/// What the seed's runner took to start a container.
#[derive(Clone)]
struct ContainerDetails {
    container_port: u16,
    container_name: String,
}

async fn runner(
    docker: &bollard::Docker,
    image_name: &str,
    details: ContainerDetails,
) -> Result<(), Box<dyn std::error::Error>> {
    let port = format!("{}/tcp", details.container_port);
    let body = ContainerCreateBody {
        image: Some(image_name.to_string()),
        exposed_ports: Some(vec![port.clone()]),
        labels: Some(HashMap::from([(
            "dev.invok.example".to_string(),
            "integration".to_string(),
        )])),
        host_config: Some(HostConfig {
            port_bindings: Some(HashMap::from([(
                port,
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(String::new()),
                }]),
            )])),
            init: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptionsBuilder::new()
        .name(&details.container_name)
        .build();
    docker.create_container(Some(opts), body).await?;
    docker
        .start_container(&details.container_name, None)
        .await?;
    Ok(())
}

async fn enhanced_function_execution(
    runtime: &AutoscalingRuntime,
    docker: &bollard::Docker,
    function_name: &str,
    image_name: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    // Try to get an existing healthy container
    if let Some(container_id) = runtime.execute_function(function_name).await? {
        println!("Using existing container: {}", container_id);
        return Ok(());
    }

    // If no containers available, create a new one
    let suffix: u32 = rand::random();
    let container_details = ContainerDetails {
        container_port: 8080,
        container_name: format!("{}-{:08x}", function_name, suffix),
    };

    // Start the container (the seed's runner, here with bollard)
    runner(docker, image_name, container_details.clone()).await?;

    // Register it with the autoscaler
    runtime
        .register_container(
            function_name,
            container_details.container_name.clone(),
            container_details.container_name,
        )
        .await?;

    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let docker = bollard::Docker::connect_with_local_defaults()?
        .negotiate_version()
        .await?;
    let runtime = AutoscalingRuntime::new("invok-network".to_string()).await?;
    runtime.start().await?;
    // The first call creates and registers a container; the second uses it.
    enhanced_function_execution(&runtime, &docker, "hello-fn", "invok/demo-fn:latest").await?;
    enhanced_function_execution(&runtime, &docker, "hello-fn", "invok/demo-fn:latest").await?;
    println!("{}", serde_json::to_string_pretty(&runtime.get_status())?);
    Ok(())
}

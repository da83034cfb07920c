//! Regression tests: facade (the seed's programmatic API).

use invok::scaler::Phase;
use invok::AutoscalingRuntimeBuilder;

use super::support;

/// Removes, when dropped (also when the test fails), the containers this test started
/// itself (labelled `dev.invok.test=<tag>`) and those Invok created for its instances.
struct Cleanup {
    tag: String,
    instances: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let filter = format!("label=dev.invok.test={}", self.tag);
        if let Ok(ids) = support::docker(&["ps", "-aq", "--no-trunc", "--filter", &filter]) {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids);
                let _ = support::docker(&args);
            }
        }
        for instance in &self.instances {
            support::remove_instance(instance);
        }
    }
}

/// `docker run -d` of the demo image under a name, published on loopback, as a user's
/// own runner would start it; returns the full id.
fn run_demo(name: &str, tag: &str) -> String {
    support::docker(&[
        "run",
        "-d",
        "--init",
        "--name",
        name,
        "--label",
        &format!("dev.invok.test={tag}"),
        "-p",
        "127.0.0.1::8080",
        support::IMAGE,
    ])
    .unwrap_or_else(|e| panic!("{e}"))
}

async fn bollard() -> bollard::Docker {
    bollard::Docker::connect_with_local_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap_or_else(|e| panic!("Docker does not answer on the local socket ({e})"))
}

/// Issue 11: the seed's "Basic Usage" example (start the runtime, register a running
/// container, `execute_function`) printed nothing: `execute_function` returned `None`,
/// because a registered container was routable only after a later background probe.
///
/// What must hold: right after `register_container` returns, `execute_function` returns
/// the registered container, every time (five rounds, each with a fresh runtime and a
/// fresh container, as separate runs of the example); the status counts exactly that
/// container; and a second container registered into the now existing pool is ready
/// when its registration returns too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_basic_example_returns_the_registered_container_right_after_registering_it() {
    support::require_docker();
    let tag = support::unique("reg-basic");
    let mut cleanup = Cleanup {
        tag: tag.clone(),
        instances: Vec::new(),
    };
    for round in 0..5 {
        let instance = format!("{tag}-{round}");
        cleanup.instances.push(instance.clone());
        let first = format!("{tag}-{round}-a");
        let second = format!("{tag}-{round}-b");
        run_demo(&first, &tag);
        run_demo(&second, &tag);

        let runtime = AutoscalingRuntimeBuilder::new()
            .instance(instance)
            .build(bollard().await, String::new());
        runtime.start().await.unwrap();
        runtime
            .register_container("my-function", first.clone(), first.clone())
            .await
            .unwrap();
        let pool = runtime.autoscaler().get_or_create_pool("my-function").await;
        let phases = || {
            pool.containers()
                .iter()
                .map(|c| format!("{} {:?}", c.name, c.phase()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            runtime.execute_function("my-function").await.unwrap(),
            Some(first.clone()),
            "round {round}: the registered container is not routable: {:?}",
            phases()
        );
        let status = runtime.get_status();
        let pool_status = &status["pools"]["my-function"];
        assert_eq!(pool_status["container_count"], 1, "round {round}: {status}");
        assert_eq!(
            pool_status["ready_containers"], 1,
            "round {round}: {status}"
        );

        // Into the pool that exists now: ready when its registration returns.
        runtime
            .register_container("my-function", second.clone(), second.clone())
            .await
            .unwrap();
        let ready: Vec<String> = pool
            .containers()
            .into_iter()
            .filter(|c| c.phase() == Phase::Ready)
            .map(|c| c.name)
            .collect();
        assert!(
            ready.contains(&second) && ready.contains(&first),
            "round {round}: both registered containers should be ready: {:?}",
            phases()
        );
        runtime.shutdown();
    }
}

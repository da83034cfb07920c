//! `invok run`: the operator.

use std::io::{Read, Seek, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use invok::api::{check_dns1123_label, ScalingDefaults};
use invok::controller::{Config, Controller};
use invok::runtime::docker::DockerRuntime;

use super::EXIT_OK;

/// Run the operator: keep every pool of the manifest directory converged on Docker,
/// and route invocations to them through the gateway.
///
/// Watches the directory (re-reading it in full after each burst of changes, and every
/// 30 s), follows Docker's events (and relists every 10 s), samples CPU and memory of
/// every container, and scales each pool within [minContainers, maxContainers].
/// A manifest that turns invalid keeps its last valid spec running; a deleted one
/// removes its containers. All state lives in Docker: a restarted operator adopts the
/// containers it finds. SIGINT/SIGTERM stop the operator and leave containers running.
///
/// Omitted scaling fields take their defaults from CPU_OVERLOAD_THRESHOLD,
/// MEMORY_OVERLOAD_THRESHOLD, COOLDOWN_CPU_THRESHOLD, COOLDOWN_DURATION_SECS,
/// MIN_CONTAINERS_PER_FUNCTION, MAX_CONTAINERS_PER_FUNCTION and POLL_INTERVAL_SECS.
/// Logs go to stderr; RUST_LOG=debug shows more.
///
/// Example:
///   invok run --manifests ./manifests
///   INVOK_INSTANCE=staging invok run --listen 127.0.0.1:9080 --admin-listen 127.0.0.1:9081
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The manifest directory to watch.
    #[arg(
        long,
        env = "INVOK_MANIFESTS",
        default_value = "./manifests",
        value_name = "DIR"
    )]
    manifests: PathBuf,
    /// Address of the gateway (ANY /function/NAME[/PATH]).
    #[arg(
        long,
        env = "INVOK_LISTEN",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    listen: SocketAddr,
    /// Largest request body the gateway accepts (bytes or a quantity such as 10Mi).
    #[arg(long, env = "INVOK_MAX_BODY", default_value = "10Mi", value_parser = parse_size, value_name = "SIZE")]
    max_body: u64,
    /// How long a request waits for a ready container (scale from zero) before a 503.
    #[arg(long, env = "INVOK_COLD_START_TIMEOUT", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    cold_start_timeout: std::time::Duration,
    /// Requests the gateway holds at once (waiting for a container, forwarded, or
    /// streaming their answer); more get a 503 with `Retry-After: 1` at once.
    #[arg(long, env = "INVOK_MAX_IN_FLIGHT", default_value_t = invok::gateway::DEFAULT_MAX_IN_FLIGHT as u32, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    max_in_flight: u32,
    /// A client must send a request's headers within this, on the gateway and the admin
    /// API (slow clients are cut off); a kept-alive connection idle this long is closed.
    #[arg(long, env = "INVOK_HEADER_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    header_read_timeout: std::time::Duration,
    /// Address of the admin API (/status, /api/v1/pools, /healthz, /readyz).
    #[arg(
        long,
        env = "INVOK_ADMIN_LISTEN",
        default_value = "127.0.0.1:8081",
        value_name = "ADDR"
    )]
    admin_listen: SocketAddr,
    /// This operator's name on the Docker host: it only touches containers labelled
    /// with it, and two operators with the same instance refuse to run together.
    #[arg(
        long,
        env = "INVOK_INSTANCE",
        default_value = "default",
        value_name = "NAME"
    )]
    instance: String,
    /// How often the manifest directory is re-read even without file events.
    #[arg(long, env = "INVOK_RESCAN_INTERVAL", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    rescan_interval: std::time::Duration,
    /// How often containers are relisted even without Docker events.
    #[arg(long, env = "INVOK_RELIST_INTERVAL", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    relist_interval: std::time::Duration,
    /// Quiet time after the last file change before the directory is re-read. A pool
    /// whose manifest is gone is pruned only when a second read, at least this much
    /// later, agrees: raise it when changes land slowly (a large `git pull`, a network
    /// file system).
    #[arg(long, env = "INVOK_DEBOUNCE", default_value = "150ms", value_parser = parse_duration, value_name = "DURATION")]
    debounce: std::time::Duration,
}

fn parse_size(s: &str) -> Result<u64, String> {
    invok::api::parse_bytes(s)
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    match invok::api::parse_duration(s)? {
        d if d.is_zero() => Err("must be greater than 0".into()),
        d => Ok(d),
    }
}

/// Holds the instance lock for as long as the operator runs.
struct InstanceLock {
    _file: std::fs::File,
}

fn lock_instance(instance: &str, admin: SocketAddr) -> anyhow::Result<InstanceLock> {
    let dir = std::env::var_os("INVOK_LOCK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let run = PathBuf::from("/run/invok");
            if std::fs::create_dir_all(&run).is_ok() {
                run
            } else {
                std::env::temp_dir()
            }
        });
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating lock directory {}", dir.display()))?;
    let daemon = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "local".into());
    let daemon_tag: String = daemon
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let path = dir.join(format!("{instance}@{daemon_tag}.lock"));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening lock file {}", path.display()))?;
    if file.try_lock().is_err() {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        bail!(
            "another `invok run --instance {instance}` already manages this Docker host ({}); \
             stop it first, or give this one another --instance (lock: {})",
            holder.trim(),
            path.display()
        );
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "pid {}, admin API {admin}", std::process::id())?;
    file.flush()?;
    Ok(InstanceLock { _file: file })
}

/// Raises the soft limit on open files to the hard one, as Go's runtime and systemd do
/// for servers: every request through the gateway holds two sockets (and Debian's soft
/// default is 1024), and an operator out of descriptors could not even answer
/// `/healthz`. Returns the limit now in force.
fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let lim = getrlimit(Resource::Nofile);
    let (Some(current), Some(max)) = (lim.current, lim.maximum) else {
        return lim.current;
    };
    if current < max {
        let mut raised = lim;
        raised.current = Some(max);
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return Some(max);
        }
    }
    Some(current)
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    check_dns1123_label(&args.instance).map_err(|e| anyhow::anyhow!("--instance: {e}"))?;
    let defaults = ScalingDefaults::from_env()?;
    let _lock = lock_instance(&args.instance, args.admin_listen)?;
    super::init_logging();
    let open_files = raise_open_files_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = rt.block_on(async move {
        let admin = tokio::net::TcpListener::bind(args.admin_listen)
            .await
            .with_context(|| format!("binding the admin API to {}", args.admin_listen))?;
        let gateway = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding the gateway to {}", args.listen))?;
        let gateway_config = invok::gateway::GatewayConfig {
            max_body: usize::try_from(args.max_body).unwrap_or(usize::MAX),
            cold_start_timeout: args.cold_start_timeout,
            max_in_flight: args.max_in_flight as usize,
            limits: invok::http::ServeLimits {
                header_read_timeout: args.header_read_timeout,
            },
            ..Default::default()
        };
        let runtime = Arc::new(DockerRuntime::connect_or_pin(args.instance.clone()).await?);
        let mut config = Config::new(&args.manifests, &args.instance);
        config.defaults = defaults;
        config.rescan_interval = args.rescan_interval;
        config.debounce = args.debounce;
        config.relist_interval = args.relist_interval;
        tracing::info!(
            instance = %args.instance,
            manifests = %args.manifests.display(),
            gateway = %args.listen,
            admin = %args.admin_listen,
            open_files = ?open_files,
            "invok operator starting"
        );
        let controller = Controller::new(runtime, config);
        let shared = controller.shared();
        let stopping = shared.clone();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let admin_task = tokio::spawn(invok::admin::serve(
            admin,
            shared.clone(),
            stopped(stop_rx.clone()),
        ));
        let gateway_task = tokio::spawn(invok::gateway::serve(
            gateway,
            shared,
            gateway_config,
            stopped(stop_rx.clone()),
        ));
        let signal = async move {
            shutdown_signal().await;
            stopping.begin_shutdown();
            let _ = stop_tx.send(true);
        };
        tokio::join!(controller.run(stopped(stop_rx.clone())), signal);
        // Shutdown is bounded (SIGTERM to exit well under 5 s): requests still in flight
        // through the gateway get what is left of a second, then the process exits.
        let servers = async {
            let _ = admin_task.await;
            let _ = gateway_task.await;
        };
        if tokio::time::timeout(SERVER_DRAIN, servers).await.is_err() {
            tracing::warn!("requests still in flight after {SERVER_DRAIN:?}; exiting anyway");
        }
        tracing::info!("operator stopped; containers left running");
        Ok(EXIT_OK)
    });
    // A manifest read still running on the blocking pool must not hold the exit up.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    result
}

/// How long the HTTP servers may take to finish in-flight requests at shutdown.
const SERVER_DRAIN: std::time::Duration = std::time::Duration::from_secs(1);

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

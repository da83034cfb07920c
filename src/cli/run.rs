//! `invok run`: the operator.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use invok::admin::AdminToken;
use invok::api::{check_dns1123_label, ScalingDefaults};
use invok::controller::{Config, Controller};
use invok::gateway::GatewayConfig;
use invok::http::ServeLimits;
use invok::lock::{InstanceLock, LockError};
use invok::runtime::docker::DockerRuntime;
use tokio::net::TcpListener;

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
/// The admin API is open on loopback. Off loopback it needs a bearer token
/// (INVOK_ADMIN_TOKEN or --admin-token), which every endpoint but /healthz and /readyz
/// then requires; clients send it from the same INVOK_ADMIN_TOKEN.
///
/// Example:
///   invok run --manifests ./manifests
///   INVOK_INSTANCE=staging invok run --listen 127.0.0.1:9080 --admin-listen 127.0.0.1:9081
///   INVOK_ADMIN_TOKEN=$(cat /etc/invok/admin-token) invok run --admin-listen 0.0.0.0:8081
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
    /// Bearer token the admin API then requires (`Authorization: Bearer TOKEN`) on every
    /// endpoint but /healthz and /readyz; required when --admin-listen is not a loopback
    /// address. Prefer INVOK_ADMIN_TOKEN to the flag: a flag shows in `ps`. Clients
    /// (`invok get`, `describe`, `apply --wait`, `delete --wait`) read the same variable.
    #[arg(
        long,
        env = "INVOK_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    admin_token: Option<String>,
    /// This operator's name on the Docker host: it only touches containers labelled
    /// with it, and a second operator (or library runtime) of the same instance on the
    /// same Docker daemon, however DOCKER_HOST names it, refuses to start (exit 1, naming
    /// the first one's pid and admin address). The lock files live in INVOK_LOCK_DIR
    /// (default /run/invok).
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

/// What the admin API requires: `--admin-token` when given (any address), and a token
/// when it listens off loopback. The messages never quote the token.
fn admin_token(token: Option<&str>, listen: SocketAddr) -> anyhow::Result<Option<AdminToken>> {
    match token {
        Some(t) => AdminToken::new(t)
            .map(Some)
            .map_err(|e| anyhow!("--admin-token (INVOK_ADMIN_TOKEN): {e}")),
        None if listen.ip().to_canonical().is_loopback() => Ok(None),
        None => bail!(
            "--admin-listen {listen} is not a loopback address, so the admin API needs a \
             token: set INVOK_ADMIN_TOKEN to a secret (or pass --admin-token; a flag shows in \
             `ps`), and give clients the same INVOK_ADMIN_TOKEN; or keep the admin API on \
             loopback (the default, 127.0.0.1:8081)"
        ),
    }
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
    check_dns1123_label(&args.instance).map_err(|e| anyhow!("--instance: {e}"))?;
    let defaults = ScalingDefaults::from_env()?;
    let token = admin_token(args.admin_token.as_deref(), args.admin_listen)?;
    super::init_logging();
    let open_files = raise_open_files_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = rt.block_on(operate(args, defaults, token, open_files));
    // A manifest read still running on the blocking pool must not hold the exit up.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    result
}

/// Connects to Docker, takes the instance, then runs the operator until a signal.
///
/// The instance lock is keyed on the daemon's ID, so it can only be taken once Docker
/// answers. When it answers at start (the usual case) the lock comes before anything is
/// bound: a second operator of the instance says so, not that a port is taken. When it
/// does not, the operator starts anyway (the admin API reports Docker unreachable) and
/// takes the lock as soon as Docker answers, before it touches any container.
async fn operate(
    args: Args,
    defaults: ScalingDefaults,
    token: Option<AdminToken>,
    open_files: Option<u64>,
) -> anyhow::Result<u8> {
    let runtime = Arc::new(DockerRuntime::connect_or_pin(args.instance.clone()).await?);
    let holder = format!("`invok run`, admin API {}", args.admin_listen);
    let early_lock = match InstanceLock::acquire(&*runtime, &args.instance, &holder).await {
        Ok(lock) => Some(lock),
        Err(e) if e.is_daemon_unavailable() => None,
        Err(e) => return Err(e.into()),
    };
    let (admin, gateway) = bind(&args).await?;
    let (config, gateway_config) = configs(&args, defaults);
    tracing::info!(
        instance = %args.instance,
        manifests = %args.manifests.display(),
        gateway = %args.listen,
        admin = %args.admin_listen,
        admin_auth = if token.is_some() { "bearer token" } else { "none" },
        open_files = ?open_files,
        "invok operator starting"
    );
    let controller = Controller::new(runtime.clone(), config);
    let shared = controller.shared();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let admin_task = tokio::spawn(invok::admin::serve(
        admin,
        shared.clone(),
        token,
        gateway_config.limits,
        stopped(stop_rx.clone()),
    ));
    let gateway_task = tokio::spawn(invok::gateway::serve(
        gateway,
        shared.clone(),
        gateway_config,
        stopped(stop_rx.clone()),
    ));
    let stop = {
        let (shared, stop_tx) = (shared.clone(), stop_tx.clone());
        move || {
            shared.begin_shutdown();
            let _ = stop_tx.send(true);
        }
    };
    let signal = tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown_signal().await;
            stop();
        }
    });
    let lock = match early_lock {
        Some(lock) => Ok(Some(lock)),
        None => tokio::select! {
            lock = lock_when_docker_answers(&runtime, &args.instance, &holder) => lock.map(Some),
            () = stopped(stop_rx.clone()) => Ok(None),
        },
    };
    let result = match lock {
        Ok(Some(lock)) => {
            tracing::info!(
                instance = %args.instance,
                daemon = lock.daemon_id(),
                lock = %lock.path().display(),
                "instance locked on this Docker daemon"
            );
            controller.run(stopped(stop_rx.clone())).await;
            drop(lock);
            Ok(EXIT_OK)
        }
        // A signal before Docker ever answered: nothing was touched.
        Ok(None) => Ok(EXIT_OK),
        Err(e) => {
            stop();
            Err(e.into())
        }
    };
    signal.abort();
    // Shutdown is bounded (SIGTERM to exit well under 5 s): requests still in flight
    // through the gateway get what is left of a second, then the process exits.
    let servers = async {
        let _ = admin_task.await;
        let _ = gateway_task.await;
    };
    if tokio::time::timeout(SERVER_DRAIN, servers).await.is_err() {
        tracing::warn!("requests still in flight after {SERVER_DRAIN:?}; exiting anyway");
    }
    if result.is_ok() {
        tracing::info!("operator stopped; containers left running");
    }
    result
}

/// The controller's and the gateway's settings from the command line.
fn configs(args: &Args, defaults: ScalingDefaults) -> (Config, GatewayConfig) {
    let mut config = Config::new(&args.manifests, &args.instance);
    config.defaults = defaults;
    config.rescan_interval = args.rescan_interval;
    config.debounce = args.debounce;
    config.relist_interval = args.relist_interval;
    let gateway = GatewayConfig {
        max_body: usize::try_from(args.max_body).unwrap_or(usize::MAX),
        cold_start_timeout: args.cold_start_timeout,
        max_in_flight: args.max_in_flight as usize,
        limits: ServeLimits {
            header_read_timeout: args.header_read_timeout,
        },
        ..Default::default()
    };
    (config, gateway)
}

/// Binds the admin API and the gateway.
async fn bind(args: &Args) -> anyhow::Result<(TcpListener, TcpListener)> {
    let admin = TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("binding the admin API to {}", args.admin_listen))?;
    let gateway = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding the gateway to {}", args.listen))?;
    Ok((admin, gateway))
}

/// Takes the instance once Docker answers (it did not at start), retrying with a
/// growing delay. Anything but an unreachable daemon (a lock taken meanwhile) ends it.
async fn lock_when_docker_answers(
    runtime: &DockerRuntime,
    instance: &str,
    holder: &str,
) -> Result<InstanceLock, LockError> {
    tracing::warn!(
        instance,
        "Docker is unreachable: waiting for it to answer, to lock the instance on that \
         daemon before managing any container"
    );
    let mut delay = LOCK_RETRY_FIRST;
    loop {
        tokio::time::sleep(delay).await;
        match InstanceLock::acquire(runtime, instance, holder).await {
            Err(e) if e.is_daemon_unavailable() => {
                tracing::debug!(error = %e, "Docker still unreachable");
                delay = (delay * 2).min(LOCK_RETRY_MAX);
            }
            other => return other,
        }
    }
}

/// First and longest pause between two attempts to lock the instance while Docker is
/// unreachable.
const LOCK_RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(250);
const LOCK_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(5);

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

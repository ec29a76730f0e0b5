//! `jobhost serve`: runs the JSON-RPC server of `jobhost-server` in this process until
//! Ctrl-C or until it stops. The command's work is turning flags into a
//! [`ServerConfig`]: the data dir, the listen address, the retention, and the
//! transport limits, each refused at 0 here so a typo fails at start rather than
//! leaving a server that takes nothing.

use super::{DEFAULT_LISTEN, default_data_dir};
use anyhow::{Context as _, bail};
use clap::Args;
use jobhost_server::{self as server, ServerConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// `jobhost serve` options.
#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = DEFAULT_LISTEN, env = "JOBHOST_LISTEN")]
    listen: SocketAddr,
    /// Data directory [default: $XDG_DATA_HOME/jobhost].
    #[arg(long, env = "JOBHOST_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Most jobs running at once; 0 makes an API-only node, which takes submits for the
    /// other nodes on its database and runs none [default: 4 per core, as many as the
    /// cores hold at the default `cpus` of 0.25].
    #[arg(long)]
    concurrency: Option<usize>,
    /// PostgreSQL database for the records (`postgres://user:password@host/db`)
    /// [default: SQLite in the data dir].
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// This node's name in `workers.list` [default: the host name].
    #[arg(long)]
    name: Option<String>,
    /// Labels jobs may require of this node (comma-separated: `linux,gpu`).
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
    /// The URL other nodes reach this one at (for files it holds: artifacts)
    /// [default: http://<the address it listens on>, unless that is 0.0.0.0 or ::].
    #[arg(long)]
    advertise: Option<String>,
    /// A file holding the secret the nodes on one database share (at least 32
    /// characters), with which one fetches files another holds.
    #[arg(long)]
    cluster_secret_file: Option<PathBuf>,
    /// Allow listening on an address other than loopback (other machines can connect).
    #[arg(long)]
    allow_remote: bool,
    /// Also serve `GET /metrics` (Prometheus text) here without a token, e.g.
    /// `127.0.0.1:9717`; on the main port it needs an admin token.
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
    /// The container engine that runs container jobs: `docker` (the Docker Engine API
    /// at `DOCKER_HOST` or the default socket; Podman's compatible socket works) or
    /// `none`. Without an engine answering at start, container jobs are refused.
    #[arg(long, default_value = "docker", value_parser = ["docker", "none"])]
    container_engine: String,
    /// A JSON file declaring this node's GPUs (`[{"index": 0, "uuid": "GPU-…",
    /// "type": "h100", "memory_mb": 81920}, …]`) instead of asking NVML; `[]`: none.
    #[arg(long)]
    gpus: Option<PathBuf>,
    /// Runs a job may have: one whose node was lost (or that was running when the
    /// server stopped) runs again while it has runs left, otherwise it fails.
    #[arg(long, default_value_t = 1)]
    max_attempts: u32,
    /// Days an ended job is kept before its files and logs are removed.
    #[arg(long, default_value_t = 30)]
    retention_days: u32,
    /// Largest request body, bytes [default: 64 MiB].
    #[arg(long)]
    max_request_bytes: Option<u32>,
    /// Most calls in one JSON-RPC batch [default: 1000].
    #[arg(long)]
    max_batch: Option<u32>,
    /// Most sockets open at once, over every client [default: 10000].
    #[arg(long)]
    max_connections: Option<u32>,
    /// Connections one client address may hold without a token [default: 128].
    #[arg(long)]
    max_connections_per_address: Option<u32>,
    /// Connections (WebSockets included) one token may hold at once [default: 512].
    #[arg(long)]
    max_connections_per_token: Option<u32>,
    /// `jobs.wait` calls one token may have waiting at once [default: 4096].
    #[arg(long)]
    max_waits_per_token: Option<u32>,
    /// Seconds a JSON-RPC body may take to arrive, and a file's body may go quiet [default: 60].
    #[arg(long)]
    body_read_timeout_s: Option<u32>,
    /// Seconds a request's headers may take to arrive, and an idle connection may stay [default: 30].
    #[arg(long)]
    header_read_timeout_s: Option<u32>,
    /// Calls per second each token may make, sustained [default: 5000].
    #[arg(long)]
    rate_per_s: Option<u32>,
    /// Calls a token may make in a burst [default: 50000].
    #[arg(long)]
    rate_burst: Option<u32>,
    /// Subscriptions a token may hold open at once [default: 256].
    #[arg(long)]
    max_subscriptions_per_token: Option<u32>,
}

/// Serves until Ctrl-C or until the server stops of itself.
pub(super) async fn exec(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let telemetry = crate::telemetry::init("info", crate::telemetry::Traces::FromEnv)?;
    let data_dir = match args.data_dir {
        Some(d) => d,
        None => default_data_dir()?,
    };
    let mut config = ServerConfig::new(data_dir);
    config.listen = args.listen;
    config.allow_remote = args.allow_remote;
    config.metrics_listen = args.metrics_listen;
    config.job_traces = telemetry.traces();
    if let Some(bad) = args.labels.iter().find_map(|l| jobhost_model::label_error(l)) {
        bail!("--labels: {bad}");
    }
    let gpus = match &args.gpus {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("--gpus: reading {}", path.display()))?;
            let gpus: Vec<jobhost_model::Gpu> = serde_json::from_str(&text)
                .with_context(|| format!("--gpus: {} is not a JSON array of GPUs", path.display()))?;
            if let Some(bad) = jobhost_model::inventory_error(&gpus) {
                bail!("--gpus: {bad}");
            }
            Some(gpus)
        }
        None => None,
    };
    config.node = server::nodes::NodeConfig { name: args.name, labels: args.labels, advertise: args.advertise, gpus };
    if let Some(path) = &args.cluster_secret_file {
        let secret = std::fs::read_to_string(path)
            .with_context(|| format!("--cluster-secret-file: reading {}", path.display()))?
            .trim()
            .to_owned();
        if secret.len() < server::cluster::MIN_SECRET {
            bail!("--cluster-secret-file: the secret in {} is shorter than 32 characters", path.display());
        }
        config.cluster_secret = Some(secret);
    }
    if let Some(url) = args.database_url {
        if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            bail!("--database-url must be a postgres:// URL (without it, records are kept in SQLite in the data dir)");
        }
        config.database_url = Some(server::DatabaseUrl(url));
    }
    if args.max_attempts == 0 {
        bail!("--max-attempts must be at least 1");
    }
    config.limits.max_attempts = args.max_attempts;
    config.container_engine = args.container_engine == "docker";
    if args.retention_days == 0 {
        bail!("--retention-days must be at least 1");
    }
    config.retention = Duration::from_secs(u64::from(args.retention_days) * 24 * 3600);
    let t = &mut config.transport;
    for (value, slot, name) in [
        (args.max_request_bytes, &mut t.max_body_bytes, "--max-request-bytes"),
        (args.max_batch, &mut t.max_batch, "--max-batch"),
        (args.max_connections, &mut t.max_connections, "--max-connections"),
        (args.max_connections_per_address, &mut t.max_connections_per_address, "--max-connections-per-address"),
        (args.max_connections_per_token, &mut t.max_connections_per_token, "--max-connections-per-token"),
        (args.max_waits_per_token, &mut t.max_waits_per_token, "--max-waits-per-token"),
        (args.rate_per_s, &mut t.rate_per_s, "--rate-per-s"),
        (args.rate_burst, &mut t.rate_burst, "--rate-burst"),
        (args.max_subscriptions_per_token, &mut t.max_subscriptions_per_token, "--max-subscriptions-per-token"),
    ] {
        match value {
            Some(0) => bail!("{name} must be at least 1"),
            Some(v) => *slot = v,
            None => {}
        }
    }
    for (value, slot, name) in [
        (args.body_read_timeout_s, &mut t.body_read_timeout, "--body-read-timeout-s"),
        (args.header_read_timeout_s, &mut t.header_read_timeout, "--header-read-timeout-s"),
    ] {
        match value {
            Some(0) => bail!("{name} must be at least 1"),
            Some(v) => *slot = Duration::from_secs(u64::from(v)),
            None => {}
        }
    }
    config.hub = jobhost_server::models::HubConfig::from_vars(|k| std::env::var(k).ok());
    if let Some(n) = args.concurrency {
        config.concurrency = n;
    }
    let server = server::start(config).await?;
    eprintln!("jobhost {} listening on {}", jobhost_model::VERSION, server.url());
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = server.stopped() => {}
    }
    server.stop().await;
    telemetry.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

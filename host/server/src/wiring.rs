//! Wires the layers into a running server: data dir, store, runtime, domain,
//! scheduler and RPC. Tests and `jobhost run` start it in-process on `127.0.0.1:0`.

use crate::auth::Auth;
use crate::jobs::{Jobs, Limits};
use crate::models::{HubConfig, Models};
use crate::plugins::Plugins;
use crate::rpc::{self, RpcServer, TransportLimits};
use crate::scheduler::sweeper::Sweeper;
use crate::scheduler::{Grants, Scheduler};
use crate::uploads::{UploadLimits, Uploads};
use anyhow::Context as _;
use jobhost_executors::Executors;
use jobhost_executors::container::ContainerExecutor;
use jobhost_executors::wasm::WasmExecutor;
use jobhost_model::JobKind;
use jobhost_runtime::{Runtime, RuntimeConfig};
use jobhost_store::{PgStore, SqliteStore, Store};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Name of the database file in the data dir.
pub const DB_FILE: &str = "jobhost.db";

/// Everything `jobhost serve` can be told.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Root of all state.
    pub data_dir: PathBuf,
    /// Most jobs running at once; 0: an API-only node, which runs none.
    pub concurrency: usize,
    /// Per-job defaults and maxima.
    pub limits: Limits,
    /// Bytes of stdout, stderr and log lines stored per job.
    pub max_log_bytes: u64,
    /// Bytes a job may leave under `/output`.
    pub max_output_bytes: u64,
    /// Resources (files, streams) a job may hold open at once.
    pub max_open_resources: usize,
    /// Wasm stack per job, bytes.
    pub max_wasm_stack: usize,
    /// The hub models are pulled from (`HF_ENDPOINT`, `HF_TOKEN`, `JOBHOST_HUB_FILE_HOSTS`).
    pub hub: HubConfig,
    /// Limits on uploads.
    pub uploads: UploadLimits,
    /// How long ended jobs are kept before the sweeper cleans them.
    pub retention: Duration,
    /// How often the sweeper runs.
    pub sweep_every: Duration,
    /// Limits of the HTTP/WebSocket transport.
    pub transport: TransportLimits,
    /// Allow listening on an address other than loopback.
    pub allow_remote: bool,
    /// Where precompiled components are kept; none: `<data>/plugins/cache`. Several data
    /// dirs may share one (entries are keyed by the wasm's hash and the engine's).
    pub component_cache: Option<PathBuf>,
    /// Whether to compile (or load from the cache) the built-in model puller at start,
    /// in the background, so the first pull does not wait for it.
    pub prepare_puller: bool,
    /// The PostgreSQL database holding the records (`DATABASE_URL`); none: SQLite in
    /// the data dir.
    pub database_url: Option<DatabaseUrl>,
    /// What this node says of itself in `workers.list`.
    pub node: crate::nodes::NodeConfig,
    /// Whether to run container jobs through a container engine (`DOCKER_HOST` or the
    /// default socket) when one answers at start; `jobhost serve --container-engine
    /// none` turns it off.
    pub container_engine: bool,
    /// The engine's socket (`unix:///path`) instead of `DOCKER_HOST` or the default.
    pub container_socket: Option<String>,
    /// Where to serve `GET /metrics` without a token (`--metrics-listen`); none: only
    /// the main port serves it, to admins.
    pub metrics_listen: Option<SocketAddr>,
    /// Where every job's trace goes, submit to end (see [`crate::jobs::trace`]);
    /// `jobhost serve` gives its OTLP exporter when an endpoint is set. None: no
    /// trace is kept.
    pub job_traces: Option<Arc<dyn crate::jobs::trace::TraceSink>>,
    /// The clock workflow schedules are read against (a test sets its own).
    pub clock: Arc<dyn crate::runs::Clock>,
    /// The secret nodes on one database prove themselves to each other with when one
    /// fetches files another holds (`--cluster-secret-file`); none: files held by
    /// another node cannot be fetched through this one.
    pub cluster_secret: Option<String>,
}

/// A `postgres://` URL. Its `Debug` form hides the password, so a logged config never
/// shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(pub String);

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = &self.0;
        let shown = match (url.find("://"), url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                let user = &url[scheme + 3..at];
                let user = user.split_once(':').map_or(user, |(name, _)| name);
                format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
            }
            _ => url.clone(),
        };
        f.write_str(&shown)
    }
}

impl ServerConfig {
    /// Defaults for a data dir: listen on `127.0.0.1:7717`, as many jobs at once as
    /// the cores hold at the default `cpus` (see [`Limits::default_concurrency`]).
    pub fn new(data_dir: PathBuf) -> ServerConfig {
        let limits = Limits::default();
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7717)),
            data_dir,
            concurrency: limits.default_concurrency(),
            limits,
            max_log_bytes: 8 << 20,
            max_output_bytes: 1 << 30,
            max_open_resources: 4096,
            max_wasm_stack: 1 << 20,
            hub: HubConfig::default(),
            uploads: UploadLimits::default(),
            retention: Duration::from_secs(30 * 24 * 3600),
            sweep_every: Duration::from_secs(60),
            transport: TransportLimits::default(),
            allow_remote: false,
            component_cache: None,
            prepare_puller: true,
            database_url: None,
            node: crate::nodes::NodeConfig::default(),
            container_engine: true,
            container_socket: None,
            metrics_listen: None,
            job_traces: None,
            clock: Arc::new(crate::runs::SystemClock),
            cluster_secret: None,
        }
    }
}

/// A server that is up; stop it with [`RunningServer::stop`].
#[derive(Debug)]
pub struct RunningServer {
    /// Where it listens (the real port when configured with port 0).
    pub local_addr: SocketAddr,
    /// The data dir.
    pub data_dir: PathBuf,
    rpc: RpcServer,
    shutdown: CancellationToken,
    exec: Option<tokio::runtime::Runtime>,
    store: Arc<dyn Store>,
    nodes: crate::nodes::Nodes,
    metrics_addr: Option<SocketAddr>,
}

impl RunningServer {
    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// The first admin's API token, from `DATA_DIR/token`.
    pub fn admin_token(&self) -> std::io::Result<String> {
        crate::auth::read_token_file(&self.data_dir.join(crate::auth::TOKEN_FILE))
    }

    /// `ws://<addr>`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.local_addr)
    }

    /// Resolves when the RPC server has stopped.
    pub async fn stopped(&self) {
        self.rpc.handle.clone().stopped().await
    }

    /// Stops serving and running. Jobs still running are left `running` in the
    /// database, exactly as after a crash: the next start recovers them.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let _ = self.rpc.handle.stop();
        self.rpc.handle.clone().stopped().await;
        if let Some(exec) = self.exec.take() {
            exec.shutdown_background();
        }
        self.nodes.leave().await;
        self.store.close().await;
    }

    /// Where `--metrics-listen` serves `/metrics`, if it does.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// This node's id in `workers.list`.
    pub fn node_id(&self) -> &str {
        self.nodes.id()
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        // Dropping a tokio runtime blocks, which is not allowed inside async code; a
        // server dropped without `stop` lets its job threads go in the background.
        self.shutdown.cancel();
        let _ = self.rpc.handle.stop();
        if let Some(exec) = self.exec.take() {
            exec.shutdown_background();
        }
    }
}

/// Opens the data dir and starts serving.
pub async fn start(config: ServerConfig) -> anyhow::Result<RunningServer> {
    if !config.listen.ip().is_loopback() && !config.allow_remote {
        anyhow::bail!(
            "{} is not a loopback address: listening where other machines can connect needs --allow-remote",
            config.listen
        );
    }
    let data = &config.data_dir;
    std::fs::create_dir_all(data).with_context(|| format!("creating data dir {}", data.display()))?;
    // Job arguments, logs, uploads and artifacts are the users' own: no other account
    // on the machine may read them, whatever the umask.
    std::fs::set_permissions(data, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .with_context(|| format!("making data dir {} private", data.display()))?;
    let jobs_dir = data.join("jobs");
    let uploads_dir = data.join("uploads");
    for dir in [&jobs_dir, &uploads_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }

    let store: Arc<dyn Store> = match &config.database_url {
        Some(url) => Arc::new(PgStore::connect(&url.0).await?),
        None => Arc::new(SqliteStore::open(&data.join(DB_FILE)).await?),
    };
    let auth = Auth::new(store.clone());
    auth.bootstrap(data).await.context("creating the first admin token")?;
    rpc::conn::raise_open_files();
    // Bound now: a node that was given no address advertises the one it listens on.
    let listener = rpc::conn::listen(config.listen).with_context(|| format!("listening on {}", config.listen))?;
    let local_addr = listener.local_addr().context("reading the listening address")?;
    let mut node = config.node.clone();
    // Declared GPUs, or what NVML finds (none on a machine without the driver).
    let gpus = node.gpus.take().unwrap_or_else(jobhost_executors::gpus::discover);
    if let Some(bad) = jobhost_model::inventory_error(&gpus) {
        anyhow::bail!("GPUs: {bad}");
    }
    if !gpus.is_empty() {
        tracing::info!(gpus = gpus.len(), "GPUs on this node");
    }
    node.gpus = Some(gpus.clone());
    if node.advertise.is_none() && !local_addr.ip().is_unspecified() {
        node.advertise = Some(format!("http://{local_addr}"));
    }
    let worker_id = crate::nodes::worker_id(data).context("reading this node's id")?;
    let nodes = crate::nodes::Nodes::register(
        store.clone(),
        &worker_id,
        &node,
        config.concurrency,
        config.limits.capacity_cpus.saturating_mul(1000),
        u64::from(config.limits.capacity_memory_mb),
    )
    .await
    .map_err(|e| anyhow::anyhow!("registering this node: {e}"))?;
    let runtime = Arc::new(Runtime::new(RuntimeConfig {
        plugins_dir: data.join("plugins"),
        cache_dir: config.component_cache.clone().unwrap_or_else(|| data.join("plugins").join("cache")),
        jobs_dir: jobs_dir.clone(),
        max_instances: u32::try_from(config.concurrency).unwrap_or(u32::MAX),
        max_memory_mb: config.limits.max_memory_mb,
        max_log_bytes: config.max_log_bytes,
        max_output_bytes: config.max_output_bytes,
        max_open_resources: config.max_open_resources,
        max_wasm_stack: config.max_wasm_stack,
    })?);
    // Container jobs run when an engine answers now; without one they are refused.
    let containers = if config.container_engine {
        let socket = config.container_socket.as_deref();
        match ContainerExecutor::connect(socket, &worker_id, config.max_log_bytes, config.max_output_bytes).await {
            Ok(executor) => {
                // What a previous process of this node left running belongs to no run.
                match executor.reconcile().await {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(removed = n, "removed containers a previous process left"),
                    Err(e) => tracing::warn!(error = %e, "removing containers a previous process left"),
                }
                Some(Arc::new(executor))
            }
            Err(e) => {
                tracing::info!(error = %e, "container jobs are refused on this node");
                None
            }
        }
    } else {
        None
    };
    let limits = crate::jobs::Limits { containers: containers.is_some(), ..config.limits.clone() };
    let here = crate::jobs::Here {
        worker_id: worker_id.clone().into(),
        labels: config.node.labels.clone().into(),
        gpus: gpus.into(),
    };
    let jobs = Jobs::new(store.clone(), here, limits, (jobs_dir, uploads_dir.clone()), config.job_traces.clone());
    let uploads = Uploads::new(store.clone(), config.uploads.clone(), uploads_dir, worker_id.into());
    uploads.reset_staging().context("preparing the uploads directory")?;
    let (requeued, failed) = jobs.recover().await.map_err(|e| anyhow::anyhow!("recovering jobs: {e}"))?;
    if requeued + failed > 0 {
        tracing::warn!(requeued, failed, "recovered jobs left running by a previous process");
    }
    let plugins = Plugins::new(store.clone(), runtime.clone());
    let models_dir = data.join("models");
    std::fs::create_dir_all(&models_dir).with_context(|| format!("creating {}", models_dir.display()))?;
    let models = Models::new(jobs.clone(), plugins.clone(), config.hub.clone(), models_dir);

    if config.prepare_puller {
        let models = models.clone();
        tokio::spawn(async move {
            if let Err(e) = models.prepare_puller().await {
                tracing::warn!(error = %e, "preparing the model puller; the first pull will try again");
            }
        });
    }

    let exec = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(1, |n| n.get()))
        .thread_name("jobhost-job")
        .enable_all()
        .build()
        .context("starting the job runtime")?;
    let shutdown = CancellationToken::new();
    tokio::spawn(nodes.clone().heartbeat(jobs.clone(), shutdown.clone()));
    tokio::spawn(jobs.clone().release_held(shutdown.clone()));
    let cluster = crate::cluster::Cluster::new(nodes.clone(), config.cluster_secret.clone());
    // The kinds that run a component share the Wasm executor (what differs is the grant
    // their service gives); containers have theirs, when an engine answered.
    let mut executors = Executors::default();
    let wasm = Arc::new(WasmExecutor::new(runtime));
    for kind in JobKind::ALL.into_iter().filter(|k| k.runs_component()) {
        executors.insert(kind, wasm.clone());
    }
    let mut grants = Grants::default();
    grants.insert(JobKind::Pull, models.grant());
    // Components granted `containers` start theirs on the same executor.
    match containers {
        Some(containers) => {
            grants.containers(containers.clone());
            executors.insert(JobKind::Container, containers);
        }
        None => grants.containers(Arc::new(jobhost_executors::container::NoEngine)),
    }
    let scheduler = Scheduler {
        jobs: jobs.clone(),
        executors,
        grants,
        concurrency: config.concurrency,
        exec: exec.handle().clone(),
        plugins: plugins.clone(),
        uploads: uploads.clone(),
        cluster: cluster.clone(),
        draining: nodes.draining().clone(),
    };
    // An API-only node (`concurrency` 0) claims nothing: other nodes run what it takes.
    if config.concurrency > 0 {
        tokio::spawn(scheduler.run(shutdown.clone()));
    }
    let sweeper = Sweeper {
        jobs: jobs.clone(),
        uploads: uploads.clone(),
        retention: config.retention,
        every: config.sweep_every,
    };
    tokio::spawn(sweeper.clone().run(shutdown.clone()));

    let metrics_addr = match config.metrics_listen {
        Some(addr) => {
            if !addr.ip().is_loopback() && !config.allow_remote {
                anyhow::bail!("--metrics-listen {addr} is not a loopback address: that needs --allow-remote");
            }
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening for metrics on {addr}"))?;
            let bound = listener.local_addr().context("reading the metrics address")?;
            tokio::spawn(rpc::serve_metrics(listener, jobs.clone(), shutdown.clone()));
            tracing::info!(addr = %bound, "serving /metrics");
            Some(bound)
        }
        None => None,
    };
    let runs = crate::runs::Runs::new(store.clone(), jobs.clone(), uploads.clone(), config.clock.clone());
    tokio::spawn(runs.clone().drive(shutdown.clone()));
    tokio::spawn(runs.clone().schedule(shutdown.clone()));
    let services = rpc::Services {
        jobs: jobs.clone(),
        plugins,
        uploads,
        auth,
        sweeper,
        models,
        nodes: nodes.clone(),
        cluster,
        runs,
    };
    let ctx = rpc::Context::new(services, &config.transport);
    let rpc = rpc::serve(listener, ctx, &config.transport).await.with_context(|| format!("serving on {local_addr}"))?;
    // A drained node stops serving once its runs have ended; `RunningServer::stopped`
    // then resolves, and `jobhost serve` exits.
    let (handle, drained) = (rpc.handle.clone(), nodes.clone());
    tokio::spawn(async move {
        tokio::select! {
            _ = drained.drained(&jobs) => {
                tracing::info!("drained: every run has ended; stopping");
                let _ = handle.stop();
            }
            _ = handle.clone().stopped() => {}
        }
    });
    tracing::info!(addr = %rpc.local_addr, data_dir = %data.display(), "jobhost serving");
    Ok(RunningServer {
        local_addr: rpc.local_addr,
        data_dir: data.clone(),
        rpc,
        shutdown,
        exec: Some(exec),
        store,
        nodes,
        metrics_addr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_never_shows_its_password() {
        let shown = |url: &str| format!("{:?}", DatabaseUrl(url.into()));
        assert_eq!(shown("postgres://jobhost:s3cret@127.0.0.1:5432/db"), "postgres://jobhost:***@127.0.0.1:5432/db");
        assert_eq!(shown("postgres://jobhost@127.0.0.1/db"), "postgres://jobhost:***@127.0.0.1/db");
        assert_eq!(shown("postgres://127.0.0.1/db?sslmode=disable"), "postgres://127.0.0.1/db?sslmode=disable");
        // An `@` in the password itself is hidden with the rest of it.
        assert_eq!(shown("postgres://u:p@ss@h/db"), "postgres://u:***@h/db");
        let config = ServerConfig {
            database_url: Some(DatabaseUrl("postgres://u:pw@h/d".into())),
            ..ServerConfig::new("d".into())
        };
        assert!(!format!("{config:?}").contains("pw@"));
    }
}

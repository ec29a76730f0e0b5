//! Runs components. Owns the wasmtime engine, the linker, the on-disk cache of
//! precompiled components, the sandbox of each run and the host side of `wit/`.
//!
//! Nothing outside this folder sees a wasmtime type. The domain hands [`Runtime::run`] a
//! [`RunSpec`] and a [`JobSink`]; the run reports output and progress through the sink
//! and returns a [`RunOutcome`].
//!
//! - Components are compiled once, at install, and kept as `plugins/<hex>.wasm` plus
//!   `plugins/cache/<hex>-<engine>.cwasm` (keyed by the wasm's hash and the engine's
//!   compatibility hash; a cwasm that does not load is a cache miss, recompiled).
//! - Each run instantiates through a pre-linked `InstancePre` with the pooling
//!   allocator, so per-job work is a slot from the pool plus a fresh WASI context.
//! - Guests run with epoch interruption and yield to the async runtime on every tick,
//!   so a busy guest cannot starve other tasks and stops promptly at its deadline or
//!   when cancelled.
//! - Writes under `/output` are counted where the guest makes them and refused past the
//!   job's limit (`quota`); a measurement of the directory is the backstop.

mod capture;
mod host;
pub mod http;
mod quota;
pub mod sandbox;
mod transfer;

use crate::jobs::model::{Artifact, JobStatus, LogChunk, LogStream, PluginKind, Progress};
use capture::LogCapture;
pub use http::HttpGrant;
use quota::{OutputQuota, OutputQuotaView};
use sandbox::Sandbox;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Trap};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// How often the engine's epoch advances. A guest yields at every tick, so this bounds
/// how long a busy guest holds a worker thread and how late a deadline can be noticed.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
/// How often captured output is handed to the sink while a job runs.
pub const LOG_FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// How often the size of a running job's `/output` is measured against its limit.
/// Writes through `/output` descriptors are refused at the limit (see `quota`); the
/// measurement is the backstop for what reaches `/output` another way (a rename or
/// hard link from `/work`, `set-size`), which can overshoot by one period.
pub const OUTPUT_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Settings of the runtime, fixed for the life of the process.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where installed components and the precompiled cache live (`<data>/plugins`).
    pub plugins_dir: PathBuf,
    /// Where jobs' directories live (`<data>/jobs`), and the pool of spare sandboxes.
    pub jobs_dir: PathBuf,
    /// Instances the pooling allocator holds slots for: the most jobs that can run at once.
    pub max_instances: u32,
    /// The largest memory limit any job may have, MiB (sizes the pool's slots).
    pub max_memory_mb: u32,
    /// Bytes of output stored per job.
    pub max_log_bytes: u64,
    /// Bytes a job may leave under `/output`.
    pub max_output_bytes: u64,
    /// Resources (open files, streams, …) a job may hold at once.
    pub max_open_resources: usize,
    /// Wasm stack a guest may use, bytes; deeper recursion traps.
    pub max_wasm_stack: usize,
}

/// What went wrong installing or loading a component.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The bytes are not a component we can run (a client error).
    #[error("{0}")]
    Invalid(String),
    /// The component is not installed (its files are missing).
    #[error("component {0} is not installed")]
    Missing(String),
    /// A file system error in the plugins directory.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Any other engine failure.
    #[error("{0}")]
    Engine(String),
}

type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// A component accepted by [`Runtime::install`].
#[derive(Debug, Clone)]
pub struct Installed {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Plugin of world `job`, or WASI command.
    pub kind: PluginKind,
    /// Bytes of wasm.
    pub size_bytes: u64,
}

/// Where a running job reports what it produces. Calls must not block: they hand the
/// data on (the domain batches it into the database).
pub trait JobSink: Send + Sync {
    /// New output chunks of `job_id`, in order.
    fn logs(&self, job_id: &str, chunks: Vec<LogChunk>);
    /// New progress of `job_id`.
    fn progress(&self, job_id: &str, progress: Progress);
}

/// Everything a run needs to know about its job.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The job.
    pub job_id: String,
    /// Installed name (argv[0]).
    pub plugin: String,
    /// Which component to run.
    pub digest: String,
    /// argv[1..].
    pub args: Vec<String>,
    /// The whole environment.
    pub env: BTreeMap<String, String>,
    /// JSON text for `job-input.input-json`.
    pub input_json: String,
    /// Linear memory limit, MiB.
    pub memory_mb: u32,
    /// Wall-clock limit.
    pub timeout: Duration,
    /// `jobs/<id>`.
    pub job_dir: PathBuf,
    /// Hosts the job may reach over `wasi:http` (none for an ordinary job).
    pub http: Arc<HttpGrant>,
    /// Directories shown to the guest read-write, `(host path, guest path)`, instead
    /// of the sandbox's `/input`, `/output` and `/work` (the model puller sees only
    /// `/models`). Empty: the sandbox's three.
    pub mounts: Vec<(PathBuf, String)>,
    /// Whether the job may use `jobhost:plugin/transfer` (the model puller). Only
    /// honoured with `mounts`: its writes are not counted against an `/output` quota.
    pub transfer: bool,
    /// Files to move in as `input/` before the first run (a consumed upload's).
    pub input_from: Option<PathBuf>,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// `completed`, `failed`, `timed_out` or `cancelled`.
    pub status: JobStatus,
    /// The exit code, where the guest produced one.
    pub exit_code: Option<i32>,
    /// Why it did not complete.
    pub error: Option<String>,
    /// The chain of causes behind `error`, when the guest or the engine gave one.
    pub detail: Option<String>,
    /// Files left in `/output`.
    pub artifacts: Vec<Artifact>,
}

/// A component ready to instantiate.
enum Prepared {
    Command(CommandPre<JobState>),
    Plugin(host::JobPre<JobState>),
}

/// The runtime: engine, linker and component cache.
pub struct Runtime {
    engine: Engine,
    linker: Linker<JobState>,
    config: RuntimeConfig,
    /// Engine compatibility hash, part of every cwasm file name.
    engine_key: String,
    prepared: Mutex<HashMap<String, Arc<Prepared>>>,
    spares: Arc<sandbox::Spares>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Runtime {
    /// Builds the engine and linker and starts the epoch ticker.
    pub fn new(config: RuntimeConfig) -> Result<Runtime> {
        let engine_err = |e: wasmtime::Error| RuntimeError::Engine(format!("{e:#}"));
        let mut pool = PoolingAllocationConfig::default();
        let n = config.max_instances.max(1);
        // A Rust component has one or two memories and tables and a handful of core
        // instances; the multipliers leave room for components built by other tools.
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(8))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(4))
            .total_stacks(n)
            .max_memory_size((config.max_memory_mb as usize) << 20);
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(config.max_wasm_stack)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(engine_err)?;

        let mut linker = Linker::new(&engine);
        // WASI 0.2.12's `exit-with-code` is part of this set: it is how a command reports
        // an exact exit code (std maps every non-zero `exit` to 1).
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_err)?;
        // Every component may import `wasi:http`; what it reaches is the job's
        // allowlist, checked per request (empty unless the host grants one).
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(engine_err)?;
        quota::add_to_linker(&mut linker).map_err(engine_err)?;
        host::add_to_linker(&mut linker).map_err(engine_err)?;

        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = format!("{:016x}", hasher.finish());

        let weak = engine.weak();
        std::thread::Builder::new()
            .name("jobhost-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| RuntimeError::Engine(format!("starting the epoch thread: {e}")))?;

        std::fs::create_dir_all(config.plugins_dir.join("cache")).map_err(|source| RuntimeError::Io {
            context: format!("creating {}", config.plugins_dir.display()),
            source,
        })?;
        let spares = sandbox::Spares::new(&config.jobs_dir).map_err(|source| RuntimeError::Io {
            context: format!("preparing {}", config.jobs_dir.join(sandbox::SPARES).display()),
            source,
        })?;
        Ok(Runtime {
            engine,
            linker,
            config,
            engine_key,
            prepared: Mutex::new(HashMap::new()),
            spares: Arc::new(spares),
        })
    }

    /// Validates, classifies and precompiles `wasm`, then stores it under its digest.
    /// Nothing is written unless the component compiles and links.
    pub async fn install(self: &Arc<Self>, wasm: Vec<u8>) -> Result<Installed> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.install_blocking(&wasm))
            .await
            .map_err(|e| RuntimeError::Engine(format!("install task: {e}")))?
    }

    fn install_blocking(&self, wasm: &[u8]) -> Result<Installed> {
        let hex = hex::encode(Sha256::digest(wasm));
        let component = Component::new(&self.engine, wasm)
            .map_err(|e| RuntimeError::Invalid(format!("not a valid WebAssembly component: {}", root_message(&e))))?;
        let prepared = self.prepare(&component)?;
        let kind = match prepared {
            Prepared::Command(_) => PluginKind::Command,
            Prepared::Plugin(_) => PluginKind::Plugin,
        };
        let cwasm = component
            .serialize()
            .map_err(|e| RuntimeError::Engine(format!("serializing compiled component: {e:#}")))?;
        write_atomic(&self.wasm_path(&hex), wasm)?;
        write_atomic(&self.cwasm_path(&hex), &cwasm)?;
        self.cache_put(&hex, prepared);
        Ok(Installed { digest: format!("sha256:{hex}"), kind, size_bytes: wasm.len() as u64 })
    }

    /// Links `component` and decides which kind it is.
    fn prepare(&self, component: &Component) -> Result<Prepared> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| RuntimeError::Invalid(format!("unsupported component: {}", root_message(&e))))?;
        if let Ok(command) = CommandPre::new(pre.clone()) {
            return Ok(Prepared::Command(command));
        }
        host::JobPre::new(pre).map(Prepared::Plugin).map_err(|_| {
            RuntimeError::Invalid(
                "unsupported component: it exports neither `wasi:cli/run` (a WASI command) \
                 nor `run` of world jobhost:plugin/job"
                    .into(),
            )
        })
    }

    /// Makes sure the component `digest` is loaded, from the cache on disk if possible.
    pub async fn load(self: &Arc<Self>, digest: &str) -> Result<()> {
        let this = self.clone();
        let digest = digest.to_owned();
        tokio::task::spawn_blocking(move || this.load_blocking(&digest).map(|_| ()))
            .await
            .map_err(|e| RuntimeError::Engine(format!("load task: {e}")))?
    }

    fn load_blocking(&self, digest: &str) -> Result<Arc<Prepared>> {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        if let Some(p) = self.prepared.lock().unwrap_or_else(PoisonError::into_inner).get(hex) {
            return Ok(p.clone());
        }
        let component = match self.deserialize_cached(hex) {
            Some(c) => c,
            None => {
                let wasm = std::fs::read(self.wasm_path(hex)).map_err(|_| RuntimeError::Missing(digest.to_owned()))?;
                let component = Component::new(&self.engine, &wasm)
                    .map_err(|e| RuntimeError::Engine(format!("compiling {digest}: {e:#}")))?;
                if let Ok(cwasm) = component.serialize() {
                    // A failed cache write only costs a recompile next time.
                    let _ = write_atomic(&self.cwasm_path(hex), &cwasm);
                }
                component
            }
        };
        let prepared = self.prepare(&component)?;
        Ok(self.cache_put(hex, prepared))
    }

    /// Loads a precompiled component; `None` (a miss) when absent or made by an
    /// incompatible engine.
    #[allow(unsafe_code)]
    fn deserialize_cached(&self, hex: &str) -> Option<Component> {
        let path = self.cwasm_path(hex);
        if !path.exists() {
            return None;
        }
        // SAFETY: the file is one this runtime wrote into its own plugins directory
        // (never a client upload), and wasmtime checks its header and the engine
        // settings before use; a file that fails those checks is treated as a miss.
        unsafe { Component::deserialize_file(&self.engine, &path) }.ok()
    }

    fn cache_put(&self, hex: &str, prepared: Prepared) -> Arc<Prepared> {
        let prepared = Arc::new(prepared);
        self.prepared.lock().unwrap_or_else(PoisonError::into_inner).insert(hex.to_owned(), prepared.clone());
        prepared
    }

    fn wasm_path(&self, hex: &str) -> PathBuf {
        self.config.plugins_dir.join(format!("{hex}.wasm"))
    }

    fn cwasm_path(&self, hex: &str) -> PathBuf {
        self.config.plugins_dir.join("cache").join(format!("{hex}-{}.cwasm", self.engine_key))
    }

    /// Runs one job to its end: prepares its sandbox, instantiates the component,
    /// enforces the deadline and cancellation, flushes output and collects artifacts.
    pub async fn run(self: &Arc<Self>, spec: RunSpec, sink: Arc<dyn JobSink>, cancel: CancellationToken) -> RunOutcome {
        let (mut sandbox, layout) = match self.sandbox(&spec).await {
            Ok(ready) => ready,
            Err(e) => {
                return RunOutcome {
                    status: JobStatus::Failed,
                    exit_code: None,
                    error: Some(format!("preparing the sandbox: {e}")),
                    detail: None,
                    artifacts: Vec::new(),
                };
            }
        };
        let capture = LogCapture::new(self.config.max_log_bytes);
        let flusher = {
            let (capture, sink, job_id) = (capture.clone(), sink.clone(), spec.job_id.clone());
            let stop = CancellationToken::new();
            let handle = tokio::spawn({
                let stop = stop.clone();
                async move {
                    // Nothing to flush at the start: the first flush is one period in.
                    let mut tick =
                        tokio::time::interval_at(tokio::time::Instant::now() + LOG_FLUSH_INTERVAL, LOG_FLUSH_INTERVAL);
                    loop {
                        tokio::select! {
                            _ = tick.tick() => {}
                            _ = stop.cancelled() => break,
                        }
                        let chunks = capture.take(false);
                        if !chunks.is_empty() {
                            sink.logs(&job_id, chunks);
                        }
                    }
                }
            });
            (stop, handle)
        };

        let timeout = spec.timeout;
        // Whether the guest was stopped in the middle (its last host call may still be
        // finishing on a blocking thread), rather than returning.
        let mut interrupted = true;
        let mut outcome = tokio::select! {
            r = self.execute(&spec, &sandbox, &layout, capture.clone(), sink.clone()) => {
                interrupted = false;
                r
            }
            _ = tokio::time::sleep(timeout) => Ended::new(
                JobStatus::TimedOut,
                None,
                Some(format!("timeout_s limit of {} s reached", timeout.as_secs())),
            ),
            _ = cancel.cancelled() => Ended::new(JobStatus::Cancelled, None, Some("cancelled by request".into())),
            over = watch_output(sandbox.output(), self.config.max_output_bytes) => Ended::new(
                JobStatus::Failed,
                None,
                Some(format!(
                    "output limit of {} bytes exceeded ({over} bytes under /output)",
                    self.config.max_output_bytes
                )),
            ),
        };

        flusher.0.cancel();
        let _ = flusher.1.await;
        let rest = capture.take(true);
        if !rest.is_empty() {
            sink.logs(&spec.job_id, rest);
        }

        // A spare left empty goes back to the pool; one with files becomes `jobs/<id>/`,
        // and so does the spare of an interrupted guest, whatever it holds: a file
        // operation it started may still land, and must land in its own directory.
        // Metadata operations only: two directory reads, and a `mkdir` and renames when
        // the spare is kept.
        let given_back = sandbox.settle(&self.spares, !interrupted).unwrap_or_else(|e| {
            outcome.note(&format!("moving the sandbox into place failed: {e}"));
            false
        });
        // No files (a spare given back) or an empty `/output` (most short jobs) is seen
        // at once; files are walked and hashed on a blocking thread.
        let collected = if given_back || sandbox.output_is_empty() {
            Ok(Ok(Vec::new()))
        } else {
            tokio::task::spawn_blocking(move || sandbox.collect_artifacts()).await
        };
        let artifacts = match collected {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                outcome.note(&format!("collecting artifacts failed: {e}"));
                Vec::new()
            }
            Err(e) => {
                outcome.note(&format!("collecting artifacts failed: {e}"));
                Vec::new()
            }
        };
        // The watcher samples; a guest that moves a large file into `/output` and exits
        // at once ends between two samples. What it left is measured here too.
        let left: u64 = artifacts.iter().map(|a| a.size_bytes).sum();
        if outcome.status == JobStatus::Completed && left > self.config.max_output_bytes {
            outcome = Ended::new(
                JobStatus::Failed,
                outcome.exit_code,
                Some(format!(
                    "output limit of {} bytes exceeded ({left} bytes under /output)",
                    self.config.max_output_bytes
                )),
            );
        }
        RunOutcome {
            status: outcome.status,
            exit_code: outcome.exit_code,
            error: outcome.error,
            detail: outcome.detail,
            artifacts,
        }
    }

    /// The job's sandbox: a spare from the pool when one is ready and the job may use
    /// it (no file system work at all), else made on a blocking thread.
    async fn sandbox(&self, spec: &RunSpec) -> std::io::Result<(Sandbox, sandbox::Prepared)> {
        let sandbox = Sandbox::new(spec.job_dir.clone()).with_input_from(spec.input_from.clone());
        // A job shown its own mounts uses none of the sandbox's directories but its own.
        if spec.mounts.is_empty()
            && sandbox.may_use_spare()
            && let Some(spare) = self.spares.pop()
        {
            return Ok(sandbox.in_spare(spare));
        }
        let (spares, own) = (self.spares.clone(), !spec.mounts.is_empty());
        tokio::task::spawn_blocking(move || {
            if own {
                let prepared = sandbox.prepare()?;
                Ok((sandbox, prepared))
            } else {
                sandbox.prepare_with(&spares)
            }
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?
    }

    async fn execute(
        self: &Arc<Self>,
        spec: &RunSpec,
        sandbox: &Sandbox,
        layout: &sandbox::Prepared,
        capture: Arc<LogCapture>,
        sink: Arc<dyn JobSink>,
    ) -> Ended {
        let failed = |msg: String| Ended::new(JobStatus::Failed, None, Some(msg));
        let hex = spec.digest.strip_prefix("sha256:").unwrap_or(&spec.digest);
        let cached = self.prepared.lock().unwrap_or_else(PoisonError::into_inner).get(hex).cloned();
        let prepared = match cached {
            Some(p) => p,
            // Not loaded yet: reading and perhaps compiling it is blocking work.
            None => {
                let this = self.clone();
                let digest = spec.digest.clone();
                match tokio::task::spawn_blocking(move || this.load_blocking(&digest)).await {
                    Ok(Ok(p)) => p,
                    Ok(Err(e)) => return failed(format!("loading the component: {e}")),
                    Err(e) => return failed(format!("loading the component: {e}")),
                }
            }
        };

        let mut wasi = WasiCtxBuilder::new();
        let mut argv = Vec::with_capacity(spec.args.len() + 1);
        argv.push(spec.plugin.clone());
        argv.extend(spec.args.iter().cloned());
        wasi.args(&argv)
            .envs(&spec.env.iter().collect::<Vec<_>>())
            .stdout(capture.stream(LogStream::Stdout))
            .stderr(capture.stream(LogStream::Stderr));
        if spec.mounts.is_empty() {
            if let Err(e) = sandbox.apply(&mut wasi, &layout.input) {
                return failed(format!("preparing the sandbox: {e}"));
            }
        } else {
            for (host_dir, guest) in &spec.mounts {
                if let Err(e) = wasi.preopened_dir(host_dir, guest, wasmtime_wasi::FsPerms::ReadWrite) {
                    return failed(format!(
                        "preparing the sandbox: preopen {guest} from {}: {e:#}",
                        host_dir.display()
                    ));
                }
            }
            // The same policy as the sandbox's, over these directories instead.
            wasi.initial_cwd(&spec.mounts[0].1)
                .max_random_size(sandbox::MAX_RANDOM_BYTES)
                .allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false)
                .socket_addr_check(|_, _| Box::pin(async { false }));
        }
        let mut table = ResourceTable::new();
        table.set_max_capacity(self.config.max_open_resources);
        let mut state = JobState {
            wasi: wasi.build(),
            table,
            limits: JobLimits::new(u64::from(spec.memory_mb) << 20),
            output: OutputQuota::new(self.config.max_output_bytes, layout.output_used),
            capture,
            sink,
            job_id: spec.job_id.clone(),
            input_json: spec.input_json.clone(),
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            http_hooks: http::JobHttpHooks { job_id: spec.job_id.clone(), grant: spec.http.clone() },
            transfer: spec.transfer && !spec.mounts.is_empty(),
        };
        // A job shown its own mounts instead of the sandbox has no `/output` to meter.
        if spec.mounts.is_empty() {
            match quota::track_preopen(&mut state, sandbox::OUTPUT) {
                Ok(true) => {}
                Ok(false) => return failed(format!("preparing the sandbox: no {} preopen", sandbox::OUTPUT)),
                Err(e) => return failed(format!("preparing the sandbox: {}", root_message(&e))),
            }
        }
        let mut store = wasmtime::Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);

        let result: wasmtime::Result<Result<(), String>> = match &*prepared {
            Prepared::Command(pre) => match pre.instantiate_async(&mut store).await {
                Ok(cmd) => cmd.wasi_cli_run().call_run(&mut store).await.map(|r| r.map_err(|()| String::new())),
                Err(e) => Err(e),
            },
            Prepared::Plugin(pre) => match pre.instantiate_async(&mut store).await {
                Ok(job) => job.call_run(&mut store).await,
                Err(e) => Err(e),
            },
        };
        let limit_hit = store.data().limits.hit.clone();
        let mut ended = self.ended(result, limit_hit);
        // A refused write under `/output` fails the job whatever the guest did next:
        // its output is cut short. What the guest did is kept after the limit.
        if let Some(refusal) = store.data().output.refusal() {
            let then = ended.error.take();
            ended = Ended::new(JobStatus::Failed, ended.exit_code, Some(refusal));
            if let Some(then) = then {
                ended.note(&format!("then: {then}"));
            }
        }
        ended
    }

    /// How a run ended, from the guest's result and the memory or table limit it hit.
    fn ended(&self, result: wasmtime::Result<Result<(), String>>, limit_hit: Option<String>) -> Ended {
        match result {
            Ok(Ok(())) => Ended::new(JobStatus::Completed, Some(0), None),
            // A command's `exit(1)` (std maps every failure exit to it) carries no message.
            Ok(Err(msg)) if msg.is_empty() => Ended::new(JobStatus::Failed, Some(1), Some("exited with code 1".into())),
            // A plugin's error: its first line is the message, the lines after it the
            // chain of causes (see the SDK's `Error::to_job_error`).
            Ok(Err(msg)) => {
                let (first, causes) = msg.split_once('\n').unwrap_or((&msg, ""));
                let mut ended = Ended::new(JobStatus::Failed, Some(1), Some(first.to_owned()));
                ended.detail = (!causes.trim().is_empty()).then(|| causes.to_owned());
                ended
            }
            Err(e) => {
                // The engine's whole account: the error chain and the guest's backtrace.
                let detail = Some(format!("{e:?}"));
                let failed =
                    |msg: String| Ended { detail: detail.clone(), ..Ended::new(JobStatus::Failed, None, Some(msg)) };
                if let Some(exit) = e.downcast_ref::<I32Exit>() {
                    let code = exit.0;
                    return if code == 0 {
                        Ended::new(JobStatus::Completed, Some(0), None)
                    } else {
                        Ended::new(JobStatus::Failed, Some(code), Some(format!("exited with code {code}")))
                    };
                }
                if let Some(hit) = limit_hit {
                    return failed(hit);
                }
                if let Some(wasmtime::component::ResourceTableError::Full) =
                    e.downcast_ref::<wasmtime::component::ResourceTableError>()
                {
                    return failed(format!(
                        "open resources limit of {} reached (files, streams and other handles held at once)",
                        self.config.max_open_resources
                    ));
                }
                match e.downcast_ref::<Trap>() {
                    Some(Trap::StackOverflow) => failed(format!(
                        "the component trapped: stack limit of {} KiB exhausted",
                        self.config.max_wasm_stack / 1024
                    )),
                    Some(trap) => failed(format!("the component trapped: {trap}")),
                    None => failed(format!("the component failed: {}", root_message(&e))),
                }
            }
        }
    }
}

/// Resolves with the size of `dir` once it exceeds `limit` bytes.
async fn watch_output(dir: PathBuf, limit: u64) -> u64 {
    // The first measure is one period in: at the start there is nothing to measure,
    // and a walk of the tree per job start is a cost every short job would pay.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + OUTPUT_CHECK_INTERVAL, OUTPUT_CHECK_INTERVAL);
    loop {
        tick.tick().await;
        let d = dir.clone();
        let size = tokio::task::spawn_blocking(move || sandbox::tree_size(&d)).await.unwrap_or(0);
        if size > limit {
            return size;
        }
    }
}

/// The end of a run before artifacts are attached.
struct Ended {
    status: JobStatus,
    exit_code: Option<i32>,
    error: Option<String>,
    detail: Option<String>,
}

impl Ended {
    fn new(status: JobStatus, exit_code: Option<i32>, error: Option<String>) -> Ended {
        Ended { status, exit_code, error, detail: None }
    }

    fn note(&mut self, text: &str) {
        self.error = Some(match self.error.take() {
            Some(e) => format!("{e}; {text}"),
            None => text.to_owned(),
        });
    }
}

/// Store data of one job's instance.
pub struct JobState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: JobLimits,
    /// Bytes the job may still write under `/output`.
    output: OutputQuota,
    capture: Arc<LogCapture>,
    sink: Arc<dyn JobSink>,
    job_id: String,
    input_json: String,
    http: wasmtime_wasi_http::WasiHttpCtx,
    http_hooks: http::JobHttpHooks,
    /// Granted `jobhost:plugin/transfer`.
    transfer: bool,
}

impl WasiView for JobState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl wasmtime_wasi_http::WasiHttpView for JobState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.http_hooks }
    }
}

impl OutputQuotaView for JobState {
    fn output_quota(&mut self) -> &mut OutputQuota {
        &mut self.output
    }
}

/// Per-job limits on memories and tables, remembering which one stopped the job.
struct JobLimits {
    max_memory_bytes: u64,
    /// Elements a table may grow to; generous for real programs, finite for hostile ones.
    max_table_elements: usize,
    hit: Option<String>,
}

impl JobLimits {
    /// A table with more entries than this is not a program we want to run.
    const MAX_TABLE_ELEMENTS: usize = 1 << 20;

    fn new(max_memory_bytes: u64) -> JobLimits {
        JobLimits { max_memory_bytes, max_table_elements: Self::MAX_TABLE_ELEMENTS, hit: None }
    }
}

impl ResourceLimiter for JobLimits {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired as u64 > self.max_memory_bytes {
            let msg = format!(
                "memory limit of {} MiB exceeded (the job tried to grow its memory from {} to {} MiB)",
                self.max_memory_bytes >> 20,
                current >> 20,
                desired >> 20
            );
            self.hit = Some(msg.clone());
            return Err(wasmtime::Error::msg(msg));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_table_elements {
            let msg = format!("table limit of {} elements exceeded", self.max_table_elements);
            self.hit = Some(msg.clone());
            return Err(wasmtime::Error::msg(msg));
        }
        Ok(true)
    }
}

/// The innermost message of an error chain: what a user can act on, without the
/// wrapping ("failed to parse …") and without a wasm backtrace.
fn root_message(e: &wasmtime::Error) -> String {
    e.root_cause().to_string()
}

/// Writes a file by writing a temporary sibling and renaming it into place, so a
/// crash never leaves a half-written component under its final name.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io_err = |source| RuntimeError::Io { context: format!("writing {}", path.display()), source };
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io_err)?;
    std::fs::rename(&tmp, path).map_err(io_err)
}

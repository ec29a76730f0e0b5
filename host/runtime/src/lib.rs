//! Runs components. Owns the wasmtime engine, the linker, the on-disk cache of
//! precompiled components, the sandbox of each run and the host side of `wit/`.
//!
//! Nothing outside this folder sees a wasmtime type. The domain hands [`Runtime::run`] a
//! [`RunSpec`] and a [`JobSink`]; the run reports output and progress through the sink
//! and returns a [`RunOutcome`](jobhost_model::RunOutcome).
//!
//! - Components are compiled once, at install, and kept as `plugins/<hex>.wasm` plus
//!   `<cache dir>/<hex>-<engine>.cwasm` (keyed by the wasm's hash and the engine's
//!   compatibility hash; a cwasm that does not load is a cache miss, recompiled). The
//!   cache dir is `plugins/cache` unless several data dirs share one; an install of
//!   bytes found there (or already linked) compiles nothing.
//! - Each run instantiates through a pre-linked `InstancePre` with the pooling
//!   allocator, so per-job work is a slot from the pool plus a fresh WASI context.
//! - Guests run with epoch interruption and yield to the async runtime on every tick,
//!   so a busy guest cannot starve other tasks and stops promptly at its deadline or
//!   when cancelled.
//! - Writes under `/output` are counted where the guest makes them and refused past the
//!   job's limit (`quota`); a measurement of the directory is the backstop.
//!
//! # Layout
//!
//! This file holds the public types; [`Runtime`]'s methods live beside what they do.
//!
//! - `engine`: [`Runtime::new`]: the engine, its pool, the linker, the epoch thread.
//! - `cache`: [`Runtime::install`] and [`Runtime::load`], the wasm and cwasm files.
//! - `run`: [`Runtime::run`]: the sandbox choice, the race, how a run ended.
//! - `state`: [`JobState`], each instance's store data, and its memory and table limits.
//! - `host`, `transfer`, `http`, `quota`: the host interfaces a guest imports;
//!   `capture` takes its output; [`sandbox`] is its directories.

mod cache;
pub mod capture;
mod engine;
mod host;
pub mod http;
mod launch;
mod quota;
mod run;
pub mod sandbox;
mod state;
mod transfer;

pub use engine::EPOCH_TICK;
pub use jobhost_model::JobSink;
pub use run::{LOG_FLUSH_INTERVAL, OUTPUT_CHECK_INTERVAL};
pub use state::JobState;

use cache::Prepared;
use jobhost_model::{PluginKind, RunGrant};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::Engine;
use wasmtime::component::Linker;

/// Settings of the runtime, fixed for the life of the process.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where installed components live (`<data>/plugins`).
    pub plugins_dir: PathBuf,
    /// Where precompiled components are kept: `<data>/plugins/cache` for a server; a
    /// directory several data dirs share (the user's cache dir for `jobhost run`'s
    /// embedded servers), keyed the same way, so a component is compiled once.
    pub cache_dir: PathBuf,
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
    /// Whether this install compiled it (`false`: it was compiled already, in memory
    /// or in the cache on disk).
    pub compiled: bool,
}

/// Everything a run needs to know about its job.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The job.
    pub job_id: String,
    /// Installed name (`argv[0]`).
    pub plugin: String,
    /// Which component to run.
    pub digest: String,
    /// `argv[1..]`.
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
    /// What the job's kind grants beyond the sandbox (HTTP hosts, mounts, transfers).
    pub grant: RunGrant,
    /// Files to move in as `input/` before the first run (a consumed upload's).
    pub input_from: Option<PathBuf>,
    /// The attempt running.
    pub attempt: u32,
    /// The CPUs the job declared (what the containers it starts get).
    pub cpus: jobhost_model::Cpus,
    /// The GPU devices it holds (what the containers it starts see).
    pub gpu_devices: Vec<u32>,
}

/// The runtime: engine, linker and component cache.
pub struct Runtime {
    engine: Engine,
    linker: Linker<JobState>,
    config: RuntimeConfig,
    /// Engine compatibility hash, part of every cwasm file name.
    engine_key: String,
    prepared: Mutex<HashMap<String, Arc<Prepared>>>,
    /// Held for the whole of an install (see `install_blocking`).
    installing: Mutex<()>,
    /// Components compiled so far (see [`Runtime::compilations`]).
    compilations: std::sync::atomic::AtomicU64,
    spares: Arc<sandbox::Spares>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("config", &self.config).finish_non_exhaustive()
    }
}

/// The innermost message of an error chain: what a user can act on, without the
/// wrapping ("failed to parse …") and without a wasm backtrace.
fn root_message(e: &wasmtime::Error) -> String {
    e.root_cause().to_string()
}

//! Building the [`Runtime`]: the wasmtime engine and its pooling allocator, the linker
//! holding every host interface a job may import, and the thread that advances the
//! engine's epoch.
//!
//! All of it is made once per process and shared by every run. The pool is sized from
//! [`RuntimeConfig`] up front, so a job's instantiation is a slot taken from it rather
//! than an allocation; the epoch thread is what makes a busy guest yield (see
//! [`EPOCH_TICK`]) and ends by itself when the engine is dropped.

use crate::{Result, Runtime, RuntimeConfig, RuntimeError, host, quota, sandbox};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the engine's epoch advances. A guest yields at every tick, so this bounds
/// how long a busy guest holds a worker thread and how late a deadline can be noticed.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Bytes of a finished job's linear memory reset in place, page by page, rather than
/// given back with `madvise` (see [`Runtime::new`]): a short job dirties a few dozen
/// KiB; 1 MiB covers a `std` guest's stack and heap start with room to spare.
pub const KEEP_RESIDENT_BYTES: usize = 1 << 20;

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
            .max_memory_size((config.max_memory_mb as usize) << 20)
            // A finished job's memory and tables are reset for the next instance. By
            // default that is an `madvise` per slot, and on a multi-threaded process
            // every `madvise` that drops pages interrupts the other cores to flush
            // their TLBs: the largest single cost of a short job with a real memory
            // (a Rust `std` guest), 13% of a profile. With `PAGEMAP_SCAN` (Linux 6.7+;
            // without it this changes nothing) the pool finds the pages a job dirtied
            // and copies them back from the image, up to these budgets, keeping them
            // resident: no system call, no interrupt, no page fault on reuse. A job
            // that dirties more falls back to `madvise` for the rest. The cost is RSS:
            // up to the budget per warm slot.
            .pagemap_scan(wasmtime::Enabled::Auto)
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(KEEP_RESIDENT_BYTES / 8);
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

        for dir in [&config.plugins_dir, &config.cache_dir] {
            std::fs::create_dir_all(dir)
                .map_err(|source| RuntimeError::Io { context: format!("creating {}", dir.display()), source })?;
        }
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
            installing: Mutex::new(()),
            compilations: std::sync::atomic::AtomicU64::new(0),
            spares: Arc::new(spares),
        })
    }
}

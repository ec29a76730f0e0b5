//! The Wasm executor: runs a job's component on the [`Runtime`] (wasmtime, the
//! component cache, the sandbox). Plugins of world `job`, WASI commands and the
//! built-in model puller all run here; what differs between them is their grant.

use crate::{Executor, Task};
use jobhost_model::{JobSink, RunOutcome};
use jobhost_runtime::{RunSpec, Runtime};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs components.
#[derive(Debug, Clone)]
pub struct WasmExecutor {
    runtime: Arc<Runtime>,
}

impl WasmExecutor {
    /// An executor over `runtime`.
    pub fn new(runtime: Arc<Runtime>) -> WasmExecutor {
        WasmExecutor { runtime }
    }
}

#[async_trait::async_trait]
impl Executor for WasmExecutor {
    async fn run(&self, task: Task, sink: Arc<dyn JobSink>, cancel: CancellationToken) -> RunOutcome {
        let Task { job, job_dir, input_from, grant } = task;
        let spec = RunSpec {
            input_json: job.input.as_ref().map_or_else(|| "null".to_owned(), |v| v.to_string()),
            memory_mb: job.memory_mb,
            timeout: Duration::from_secs(u64::from(job.timeout_s)),
            job_id: job.id,
            plugin: job.plugin,
            digest: job.plugin_digest,
            args: job.args,
            env: job.env,
            job_dir,
            grant,
            input_from,
            attempt: job.attempt,
            cpus: job.cpus,
            gpu_devices: job.gpu_devices,
        };
        self.runtime.run(spec, sink, cancel).await
    }
}

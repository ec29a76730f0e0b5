//! The store data of one job's instance ([`JobState`]): its WASI and HTTP contexts, the
//! resource table, where its output goes, what its grant allows, and the limits on its
//! memories and tables ([`JobLimits`], the store's `ResourceLimiter`).
//!
//! Every host interface is implemented on `JobState` (WASI and `wasi:http` here, the
//! `/output` quota in `quota`, `wit/` in `host` and `transfer`), so its fields are open
//! to the crate. The limiter remembers which limit stopped a job, because the trap the
//! guest sees says only that a grow failed.

use crate::capture::LogCapture;
use crate::http;
use crate::quota::{OutputQuota, OutputQuotaView};
use jobhost_model::JobSink;
use std::sync::Arc;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Store data of one job's instance.
pub struct JobState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: JobLimits,
    /// Bytes the job may still write under `/output`.
    pub(crate) output: OutputQuota,
    pub(crate) capture: Arc<LogCapture>,
    pub(crate) sink: Arc<dyn JobSink>,
    pub(crate) job_id: String,
    pub(crate) attempt: u32,
    pub(crate) input_json: String,
    pub(crate) http: wasmtime_wasi_http::WasiHttpCtx,
    pub(crate) http_hooks: http::JobHttpHooks,
    /// Granted `jobhost:plugin/transfer`.
    pub(crate) transfer: bool,
    /// Granted `jobhost:plugin/executor`: what runs its containers, and what they share.
    pub(crate) containers: Option<crate::launch::Containers>,
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
pub(crate) struct JobLimits {
    max_memory_bytes: u64,
    /// Elements a table may grow to; generous for real programs, finite for hostile ones.
    max_table_elements: usize,
    pub(crate) hit: Option<String>,
}

impl JobLimits {
    /// A table with more entries than this is not a program we want to run.
    const MAX_TABLE_ELEMENTS: usize = 1 << 20;

    pub(crate) fn new(max_memory_bytes: u64) -> JobLimits {
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

//! Nodes sharing the database (see `jobhost_model::Worker`).

use crate::{Result, StoreError};
use jobhost_model::{Worker, WorkerStatus};
use std::collections::HashMap;

/// The `workers` table: each node's own record, written by that node.
#[async_trait::async_trait]
pub trait WorkerStore: Send + Sync {
    /// Records a node that has just started: a new row, or the row of the same id
    /// (the same node started again) replaced.
    async fn register_worker(&self, worker: &Worker) -> Result<()>;

    /// Sets `last_seen` of node `id` to `at`; returns the status recorded (another
    /// node may have asked it to drain), none when there is no such node.
    async fn heartbeat(&self, id: &str, at: &str) -> Result<Option<WorkerStatus>>;

    /// Sets the status of node `id` (and `last_seen` to `at`); `false` when there is no
    /// such node.
    async fn set_worker_status(&self, id: &str, status: WorkerStatus, at: &str) -> Result<bool>;

    /// Every node as recorded, the most recently started first, with what it has
    /// `starting` or `running` now.
    async fn list_workers(&self) -> Result<Vec<Worker>>;
}

/// A `workers` row of either backend, its columns selected by these names (timestamps
/// and labels as text), decoded the same way from both.
pub(crate) fn worker_from_row<R>(row: &R) -> Result<Worker>
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let id: String = row.try_get("id")?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("worker {id}: {what}"));
    let labels: String = row.try_get("labels")?;
    let status: String = row.try_get("status")?;
    let gpus: String = row.try_get("gpus")?;
    let number = |name: &str| -> Result<i64> { Ok(row.try_get(name)?) };
    Ok(Worker {
        name: row.try_get("name")?,
        labels: serde_json::from_str(&labels).map_err(|e| corrupt(&format!("labels: {e}")))?,
        status: WorkerStatus::parse(&status).ok_or_else(|| corrupt(&format!("status {status:?}")))?,
        version: row.try_get("version")?,
        advertise: row.try_get("advertise")?,
        concurrency: u32::try_from(number("concurrency")?).unwrap_or(u32::MAX),
        millicpus: u32::try_from(number("millicpus")?).unwrap_or(u32::MAX),
        memory_mb: u64::try_from(number("memory_mb")?).unwrap_or(0),
        started_at: row.try_get("started_at")?,
        last_seen: row.try_get("last_seen")?,
        running_jobs: u64::try_from(number("running_jobs")?).unwrap_or(0),
        used_millicpus: u32::try_from(number("used_millicpus")?).unwrap_or(u32::MAX),
        used_memory_mb: u64::try_from(number("used_memory_mb")?).unwrap_or(0),
        gpus: serde_json::from_str(&gpus).map_err(|e| corrupt(&format!("gpus: {e}")))?,
        gpu_usage: Vec::new(),
        id,
    })
}

/// `workers` with their GPU use filled in from the devices each one's live jobs hold.
pub(crate) fn with_gpu_usage(mut workers: Vec<Worker>, held: &HashMap<String, Vec<u32>>) -> Vec<Worker> {
    for w in &mut workers {
        w.gpu_usage = jobhost_model::gpu_usage(&w.gpus, held.get(&w.id).map_or(&[], Vec::as_slice));
    }
    workers
}

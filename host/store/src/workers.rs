//! Nodes sharing the database (see `jobhost_model::Worker`).

use crate::Result;
use jobhost_model::{Worker, WorkerStatus};

/// The `workers` table: each node's own record, written by that node.
#[async_trait::async_trait]
pub trait WorkerStore: Send + Sync {
    /// Records a node that has just started.
    async fn register_worker(&self, worker: &Worker) -> Result<()>;

    /// Sets `last_seen` of node `id` to `at`; `false` when there is no such node.
    async fn heartbeat(&self, id: &str, at: &str) -> Result<bool>;

    /// Sets the status of node `id` (and `last_seen` to `at`); `false` when there is no
    /// such node.
    async fn set_worker_status(&self, id: &str, status: WorkerStatus, at: &str) -> Result<bool>;

    /// Every node as recorded, the most recently started first.
    async fn list_workers(&self) -> Result<Vec<Worker>>;
}

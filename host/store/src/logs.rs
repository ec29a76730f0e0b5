//! What running jobs produce: output chunks, progress, artifacts.

use crate::{Queued, Result};
use jobhost_model::{Artifact, LogChunk, Progress};

/// A log chunk on its way to the database.
#[derive(Debug, Clone)]
pub struct StoredChunk {
    /// The job.
    pub job_id: String,
    /// The chunk.
    pub chunk: LogChunk,
}

/// Called once a queued write is committed (or failed).
pub type Done = Box<dyn FnOnce(Result<()>) + Send>;

/// Output, progress and artifacts of jobs.
#[async_trait::async_trait]
pub trait LogStore: Send + Sync {
    /// Records the progress a running job reported. Queued at once (group commit).
    fn set_progress(&self, id: &str, progress: &Progress) -> Queued<()>;

    /// Queues a progress update; `done` is called once it is committed (or failed).
    fn set_progress_then(&self, id: &str, progress: Progress, done: Done);

    /// Appends log chunks, of any number of jobs, together. Queued at once (group
    /// commit).
    fn append_logs(&self, chunks: &[StoredChunk]) -> Queued<()>;

    /// Queues log chunks; `done` is called once they are committed (or failed). Chunks
    /// queued before a job's [`JobStore::finish`](crate::JobStore::finish) are committed no later than it.
    fn append_logs_then(&self, chunks: Vec<StoredChunk>, done: Done);

    /// Resolves once every write queued before it is committed.
    async fn flush(&self) -> Result<()>;

    /// Up to `limit` chunks of `job_id` from `since_seq` on, in order.
    async fn read_logs(&self, job_id: &str, since_seq: u64, limit: u32) -> Result<Vec<LogChunk>>;

    /// Deletes the log chunks of `job_id`; returns how many.
    async fn prune_logs(&self, job_id: &str) -> Result<u64>;

    /// The artifact `name` of `job_id`.
    async fn get_artifact(&self, job_id: &str, name: &str) -> Result<Option<Artifact>>;

    /// The artifacts of `job_id`, by name.
    async fn list_artifacts(&self, job_id: &str) -> Result<Vec<Artifact>>;
}

//! Where a running job reports what it produces, whatever runs it.

use crate::job::{LogChunk, Progress};

/// Where a running job reports what it produces. Calls must not block: they hand the
/// data on (the domain batches it into the database).
pub trait JobSink: Send + Sync {
    /// New output chunks of `job_id`, in order.
    fn logs(&self, job_id: &str, chunks: Vec<LogChunk>);
    /// New progress of `job_id`.
    fn progress(&self, job_id: &str, progress: Progress);
    /// Attempt `attempt` of `job_id` runs in container `container_id` (a container
    /// job's executor says so once it is created).
    fn container(&self, job_id: &str, attempt: u32, container_id: &str);
    /// `job_id` downloaded `bytes` more through `jobhost:plugin/transfer` (a model
    /// pull's data path); counted, not recorded.
    fn transferred(&self, job_id: &str, bytes: u64) {
        let _ = (job_id, bytes);
    }
}

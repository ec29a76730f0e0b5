//! Group commit of what running jobs report.
//!
//! Runners hand output chunks and progress to the [`Recorder`] without waiting; it
//! queues them on the store's group-commit writer, where they share transactions (and
//! fsyncs) with every other job's writes, and publishes the events once they are
//! committed. The writer keeps order, so a job's output queued before its final status
//! is on disk no later than that status, and its log events are published before it.

use super::events::EventBus;
use jobhost_model::JobSink;
use jobhost_model::{EventKind, JobEvent, JobStatus, LogChunk, Progress};
use jobhost_store::{Store, StoredChunk};
use std::sync::Arc;

/// Handle to the recording path; cheap to clone.
#[derive(Clone, Debug)]
pub struct Recorder {
    store: Arc<dyn Store>,
    events: EventBus,
    metrics: crate::metrics::Metrics,
}

impl Recorder {
    /// A recorder writing through `store` and publishing on `events`.
    pub fn start(store: Arc<dyn Store>, events: EventBus, metrics: crate::metrics::Metrics) -> Recorder {
        Recorder { store, events, metrics }
    }

    /// Resolves once everything queued before the call is committed.
    pub async fn barrier(&self) {
        if let Err(e) = self.store.flush().await {
            tracing::error!(error = %e, "flushing recorded output");
        }
    }
}

impl JobSink for Recorder {
    fn logs(&self, job_id: &str, chunks: Vec<LogChunk>) {
        if chunks.is_empty() {
            return;
        }
        self.metrics.log_bytes(chunks.iter().map(|c| c.data.len() as u64).sum());
        let stored: Vec<StoredChunk> =
            chunks.into_iter().map(|chunk| StoredChunk { job_id: job_id.to_owned(), chunk }).collect();
        let events = self.events.clone();
        let published = stored.clone();
        self.store.append_logs_then(
            stored,
            Box::new(move |result| match result {
                Ok(()) => {
                    for c in published {
                        events.publish(JobEvent {
                            kind: EventKind::Log,
                            job_id: c.job_id,
                            status: Some(JobStatus::Running),
                            progress: None,
                            log: Some(c.chunk),
                            missed: None,
                        });
                    }
                }
                Err(e) => tracing::error!(error = %e, chunks = published.len(), "recording log chunks"),
            }),
        );
    }

    fn transferred(&self, _job_id: &str, bytes: u64) {
        self.metrics.pull_bytes(bytes);
    }

    fn container(&self, job_id: &str, attempt: u32, container_id: &str) {
        let (store, id, container) = (self.store.clone(), job_id.to_owned(), container_id.to_owned());
        tokio::spawn(async move {
            if let Err(e) = store.set_container_id(&id, attempt, &container).await {
                tracing::warn!(job_id = id, error = %e, "recording a job's container");
            }
        });
    }

    fn progress(&self, job_id: &str, progress: Progress) {
        let events = self.events.clone();
        let (id, published) = (job_id.to_owned(), progress.clone());
        self.store.set_progress_then(
            job_id,
            progress,
            Box::new(move |result| match result {
                Ok(()) => events.publish(JobEvent {
                    kind: EventKind::Progress,
                    job_id: id,
                    status: Some(JobStatus::Running),
                    progress: Some(published),
                    log: None,
                    missed: None,
                }),
                Err(e) => tracing::error!(error = %e, job_id = id, "recording progress"),
            }),
        );
    }
}

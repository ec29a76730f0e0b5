//! Group commit of what running jobs report.
//!
//! Runners hand output chunks and progress to the [`Recorder`] without waiting; one
//! task drains everything queued and writes it in a single transaction, then publishes
//! the events. Many jobs' chunks share one fsync, which is where durable throughput
//! comes from. [`Recorder::barrier`] waits until everything queued before it is
//! committed: a job's output is on disk before its final status is.

use super::events::EventBus;
use super::model::{EventKind, JobEvent, JobStatus, LogChunk, Progress};
use crate::runtime::JobSink;
use crate::store::{Store, StoredChunk};
use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot};

/// Most commands folded into one transaction; bounds the latency of a single commit.
const MAX_BATCH: usize = 4096;

enum Command {
    Logs(String, Vec<LogChunk>),
    Progress(String, Progress),
    Barrier(oneshot::Sender<()>),
}

/// Handle to the recording task; cheap to clone.
#[derive(Clone, Debug)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Logs(..) => "Logs",
            Command::Progress(..) => "Progress",
            Command::Barrier(_) => "Barrier",
        })
    }
}

impl Recorder {
    /// Starts the recording task.
    pub fn start(store: Store, events: EventBus) -> Recorder {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(store, events, rx));
        Recorder { tx }
    }

    /// Resolves once everything queued before the call is committed.
    pub async fn barrier(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Barrier(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

impl JobSink for Recorder {
    fn logs(&self, job_id: &str, chunks: Vec<LogChunk>) {
        let _ = self.tx.send(Command::Logs(job_id.to_owned(), chunks));
    }

    fn progress(&self, job_id: &str, progress: Progress) {
        let _ = self.tx.send(Command::Progress(job_id.to_owned(), progress));
    }
}

async fn run(store: Store, events: EventBus, mut rx: mpsc::UnboundedReceiver<Command>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut chunks = Vec::new();
        let mut progress: HashMap<String, Progress> = HashMap::new();
        let mut barriers = Vec::new();
        for cmd in batch.drain(..) {
            match cmd {
                Command::Logs(job_id, cs) => {
                    chunks.extend(cs.into_iter().map(|chunk| StoredChunk { job_id: job_id.clone(), chunk }))
                }
                Command::Progress(job_id, p) => {
                    progress.insert(job_id, p);
                }
                Command::Barrier(tx) => barriers.push(tx),
            }
        }
        if let Err(e) = store.append_logs(&chunks).await {
            tracing::error!(error = %e, chunks = chunks.len(), "recording log chunks");
        }
        for (job_id, p) in &progress {
            if let Err(e) = store.set_progress(job_id, p).await {
                tracing::error!(error = %e, job_id, "recording progress");
            }
        }
        for c in chunks {
            events.publish(JobEvent {
                kind: EventKind::Log,
                job_id: c.job_id,
                status: Some(JobStatus::Running),
                progress: None,
                log: Some(c.chunk),
                missed: None,
            });
        }
        for (job_id, p) in progress {
            events.publish(JobEvent {
                kind: EventKind::Progress,
                job_id,
                status: Some(JobStatus::Running),
                progress: Some(p),
                log: None,
                missed: None,
            });
        }
        for b in barriers {
            let _ = b.send(());
        }
    }
}

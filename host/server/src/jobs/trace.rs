//! Job traces: one `tracing` span per job, from its submit to its end, with a child
//! span for each stage — `submit` (validation and the insert's commit), `claim`
//! (waiting in the queue until a node's claim commits), `run` (the executor's run)
//! and `finish` (recording the end). Every span carries `job_id`, so an OTLP exporter
//! behind the subscriber shows a job as one trace.
//!
//! The spans live in [`JobTraces`] between stages, keyed by job id, because a job's
//! stages happen on different tasks: the RPC call, the store's writer (which reports
//! the insert and the claim as they commit; it only queues them, and a task of ours
//! makes and ends the spans, so the writer, which every job's writes pass through,
//! does none of that work) and the scheduler's run. A job this node
//! did not submit (a claim of another node's job, a job recovered after a restart)
//! gets its root span at the claim. Tracing is off unless the server is told to keep
//! traces ([`crate::ServerConfig::job_traces`]); off, no span is made and nothing is
//! kept.

use jobhost_model::{Job, JobStatus};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tracing::Span;

/// The target of every job span: an exporter's filter selects them by it.
pub const TARGET: &str = "jobhost::job";

/// The open spans of this node's live jobs.
#[derive(Debug)]
pub struct JobTraces {
    live: Mutex<HashMap<String, Live>>,
    /// Transitions, in commit order, for [`JobTraces::follow`]: the store's writer
    /// only queues them, so making and ending spans never slows the writer.
    moves: tokio::sync::mpsc::UnboundedSender<Moved>,
}

/// What a span needs of a job's transition.
#[derive(Debug)]
struct Moved {
    id: String,
    plugin: String,
    kind: &'static str,
    status: JobStatus,
    attempt: u32,
    worker_id: Option<String>,
    /// Moved by another node: only spans this node holds end.
    remote: bool,
}

#[derive(Debug)]
struct Live {
    job: Span,
    claim: Option<Span>,
}

impl JobTraces {
    /// Traces kept, behind an `Arc` for the observer and the service to share; a task
    /// on the current runtime follows the transitions.
    pub fn new() -> Arc<JobTraces> {
        let (moves, mut follow) = tokio::sync::mpsc::unbounded_channel();
        let traces = Arc::new(JobTraces { live: Mutex::default(), moves });
        let weak = Arc::downgrade(&traces);
        tokio::spawn(async move {
            while let Some(moved) = follow.recv().await {
                let Some(traces) = weak.upgrade() else { return };
                traces.follow(moved);
            }
        });
        traces
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The root span of a job being submitted, and its `submit` span: the caller enters
    /// `submit` for the validation and the insert.
    pub fn submitting(&self, id: &str, plugin: &str, kind: &str) -> Span {
        let job = root(id, plugin, kind);
        let submit = tracing::info_span!(target: TARGET, parent: &job, "submit", job_id = id);
        self.live().insert(id.to_owned(), Live { job, claim: None });
        submit
    }

    /// A submit that made no job (refused, or answered by an existing one): its spans
    /// end here.
    pub fn not_submitted(&self, id: &str) {
        self.live().remove(id);
    }

    /// What the store's writer reports as it commits, queued for [`JobTraces::follow`].
    pub fn moved(&self, job: &Job) {
        if matches!(job.status, JobStatus::Pending | JobStatus::Starting) || job.status.is_terminal() {
            let _ = self.moves.send(Moved {
                id: job.id.clone(),
                plugin: job.plugin.clone(),
                kind: job.kind.as_str(),
                status: job.status,
                attempt: job.attempt,
                worker_id: job.worker_id.clone(),
                remote: false,
            });
        }
    }

    /// What another node moved (heard through the store): a job this node submitted
    /// that another claimed or ended ends its spans here too, so none is kept forever.
    pub fn moved_elsewhere(&self, id: &str, status: JobStatus) {
        if status == JobStatus::Starting || status.is_terminal() {
            let _ = self.moves.send(Moved {
                id: id.to_owned(),
                plugin: String::new(),
                kind: "",
                status,
                attempt: 0,
                worker_id: None,
                remote: true,
            });
        }
    }

    /// A job pending (from then until a claim, `claim` is open), claimed (`claim`
    /// ends) or ended (the root ends).
    fn follow(&self, job: Moved) {
        let mut live = self.live();
        if job.remote && !live.contains_key(&job.id) {
            return;
        }
        match job.status {
            JobStatus::Pending if job.remote => {}
            JobStatus::Pending => {
                let entry = live
                    .entry(job.id.clone())
                    .or_insert_with(|| Live { job: root(&job.id, &job.plugin, job.kind), claim: None });
                let claim = tracing::info_span!(
                    target: TARGET,
                    parent: &entry.job, "claim",
                    job_id = job.id,
                    attempt = job.attempt + 1,
                    worker_id = tracing::field::Empty
                );
                entry.claim = Some(claim);
            }
            JobStatus::Starting => {
                let entry = live
                    .entry(job.id.clone())
                    .or_insert_with(|| Live { job: root(&job.id, &job.plugin, job.kind), claim: None });
                if let Some(claim) = entry.claim.take() {
                    claim.record("worker_id", job.worker_id.as_deref().unwrap_or_default());
                }
            }
            status => {
                if let Some(ended) = live.remove(&job.id) {
                    drop(live);
                    ended.job.record("status", status.as_str());
                }
            }
        }
    }

    /// The span of a stage of `id`'s run on this node (`run`, `finish`), a child of its
    /// root; an orphan span when the job has none here.
    pub fn stage(&self, id: &str, stage: Stage) -> Span {
        let live = self.live();
        let parent = live.get(id).map(|l| l.job.clone()).unwrap_or_else(Span::none);
        match stage {
            Stage::Run => {
                tracing::info_span!(target: TARGET, parent: &parent, "run", job_id = id, status = tracing::field::Empty)
            }
            Stage::Finish => tracing::info_span!(target: TARGET, parent: &parent, "finish", job_id = id),
        }
    }
}

/// A stage of a run with a span of its own.
#[derive(Debug, Clone, Copy)]
pub enum Stage {
    /// The executor runs the job.
    Run,
    /// Its end is recorded.
    Finish,
}

fn root(id: &str, plugin: &str, kind: &str) -> Span {
    tracing::info_span!(
        target: TARGET,
        parent: None,
        "job",
        job_id = id,
        plugin = plugin,
        kind = kind,
        status = tracing::field::Empty
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_job_ended_on_another_node_leaves_no_span_here() {
        let traces = JobTraces::new();
        let _submit = traces.submitting("job_a", "probe", "wasm");
        let _other = traces.submitting("job_b", "probe", "wasm");
        traces.moved_elsewhere("job_a", JobStatus::Starting);
        traces.moved_elsewhere("job_a", JobStatus::Completed);
        // A job this node never held is not made up from what another node did.
        traces.moved_elsewhere("job_c", JobStatus::Completed);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let live: Vec<String> = traces.live().keys().cloned().collect();
            if live == ["job_b"] {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "still held: {live:?}");
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
}

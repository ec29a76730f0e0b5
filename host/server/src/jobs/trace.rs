//! Job traces: each job is one trace, a `job` span from its submit to its end with a
//! child span for each stage — `submit` (validation and the insert's commit), `claim`
//! (waiting in the queue until a node's claim commits), `run` (the executor's run)
//! and `finish` (recording the end). Every span carries `job_id`.
//!
//! The stages happen on different tasks: the RPC call, the store's writer (which
//! reports the insert and the claim as they commit, and notes them in place: the
//! writer, which every job's writes pass through, only takes a lock and writes a time,
//! wakes no other thread, and makes no spans: a trace it ends goes to a task of ours
//! for the sink) and the scheduler's run. Each only notes the time its stage began and
//! ended, in [`JobTraces`], keyed by job id; when the job ends, its whole trace goes
//! at once to the process's exporter ([`TraceSink`]), which makes the spans with
//! those times. So nothing but a few timestamps is kept while a job lives, and no
//! span machinery runs on a job's path. A job this node did not submit (a claim of
//! another node's job, a job recovered after a restart) has its trace begin at the
//! claim; one this node submitted that another claims has its trace end there.
//! Tracing is off unless the server is given a sink
//! ([`crate::ServerConfig::job_traces`]); off, nothing is noted.

use jobhost_model::{Job, JobStatus};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

/// Where each job's trace goes once the job has ended.
pub trait TraceSink: Send + Sync + std::fmt::Debug + 'static {
    /// Makes and exports the spans of `trace`.
    fn export(&self, trace: JobTrace);
}

/// One job's trace: the `job` span and its stages.
#[derive(Debug, Clone, PartialEq)]
pub struct JobTrace {
    /// The job.
    pub job_id: String,
    /// Its component (or image).
    pub plugin: String,
    /// Its kind (`wasm`, `pull`, `container`).
    pub kind: &'static str,
    /// How it ended; `None` when it goes on on another node.
    pub status: Option<JobStatus>,
    /// Its submit (or its claim here, for a job submitted elsewhere).
    pub start: SystemTime,
    /// Its end (or its claim by another node).
    pub end: SystemTime,
    /// The stages, in the order they began.
    pub stages: Vec<StageTrace>,
}

/// A stage of a job: a child span of its `job` span.
#[derive(Debug, Clone, PartialEq)]
pub struct StageTrace {
    /// `submit`, `claim`, `run` or `finish`.
    pub name: &'static str,
    /// When it began.
    pub start: SystemTime,
    /// When it ended.
    pub end: SystemTime,
    /// The attempt a `claim` was for (1 for the first run).
    pub attempt: Option<u32>,
    /// The node whose claim ended a `claim`.
    pub worker_id: Option<String>,
    /// How a `run` ended.
    pub status: Option<JobStatus>,
}

impl StageTrace {
    fn new(name: &'static str, start: SystemTime, end: SystemTime) -> StageTrace {
        StageTrace { name, start, end, attempt: None, worker_id: None, status: None }
    }
}

/// The traces of this node's live jobs.
#[derive(Debug)]
pub struct JobTraces {
    live: Mutex<HashMap<String, Live>>,
    /// Traces ended by a transition, for a task of ours to hand to the sink, so the
    /// store's writer makes no spans.
    ended: tokio::sync::mpsc::UnboundedSender<JobTrace>,
    sink: Arc<dyn TraceSink>,
}

/// What a trace needs of a job's transition, borrowed from the job.
#[derive(Debug)]
struct Moved<'a> {
    id: &'a str,
    plugin: &'a str,
    kind: &'static str,
    status: JobStatus,
    attempt: u32,
    worker_id: Option<&'a str>,
    /// Moved by another node: only traces this node holds are touched.
    remote: bool,
    at: SystemTime,
}

/// A live job's trace so far.
#[derive(Debug)]
struct Live {
    plugin: String,
    kind: &'static str,
    start: SystemTime,
    stages: Vec<StageTrace>,
    /// The claim being waited for: since when, for which attempt.
    claim: Option<(SystemTime, u32)>,
    /// Run here now: its end is sent by the run, once recorded.
    running: bool,
    /// How and when the job ended, as committed.
    ended: Option<(JobStatus, SystemTime)>,
}

impl Live {
    fn new(plugin: &str, kind: &'static str, start: SystemTime) -> Live {
        Live {
            plugin: plugin.to_owned(),
            kind,
            start,
            stages: Vec::with_capacity(4),
            claim: None,
            running: false,
            ended: None,
        }
    }

    fn into_trace(mut self, job_id: String, status: Option<JobStatus>, at: SystemTime) -> JobTrace {
        // Noted on different tasks, the stages may have come in out of order.
        self.stages.sort_by_key(|s| s.start);
        let end = self.stages.iter().map(|s| s.end).chain([at]).max().unwrap_or(at);
        JobTrace { job_id, plugin: self.plugin, kind: self.kind, status, start: self.start, end, stages: self.stages }
    }
}

impl JobTraces {
    /// Traces sent to `sink`, behind an `Arc` for the observer, the service and the
    /// runs to share; a task on the current runtime hands the sink the traces that
    /// transitions end.
    pub fn new(sink: Arc<dyn TraceSink>) -> Arc<JobTraces> {
        let (ended, mut export) = tokio::sync::mpsc::unbounded_channel::<JobTrace>();
        let exporting = sink.clone();
        tokio::spawn(async move {
            while let Some(trace) = export.recv().await {
                exporting.export(trace);
            }
        });
        Arc::new(JobTraces { live: Mutex::default(), ended, sink })
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A job being submitted: its trace begins now.
    pub fn submitting(&self, id: &str, plugin: &str, kind: &'static str) {
        self.live().insert(id.to_owned(), Live::new(plugin, kind, SystemTime::now()));
    }

    /// Its insert committed: the `submit` stage ends now.
    pub fn submitted(&self, id: &str) {
        if let Some(live) = self.live().get_mut(id) {
            let stage = StageTrace::new("submit", live.start, SystemTime::now());
            live.stages.push(stage);
        }
    }

    /// A submit that made no job (refused, or answered by an existing one): forgotten.
    pub fn not_submitted(&self, id: &str) {
        self.live().remove(id);
    }

    /// What the store's writer reports as it commits. Noted in place: a time or two in
    /// the map, no allocation for a job this node submitted, and no other thread woken
    /// (the writer is the one thread every job's writes pass through).
    pub fn moved(&self, job: &Job) {
        if matches!(job.status, JobStatus::Pending | JobStatus::Starting) || job.status.is_terminal() {
            self.follow(Moved {
                id: &job.id,
                plugin: &job.plugin,
                kind: job.kind.as_str(),
                status: job.status,
                attempt: job.attempt,
                worker_id: job.worker_id.as_deref(),
                remote: false,
                at: SystemTime::now(),
            });
        }
    }

    /// What another node moved (heard through the store): a job this node submitted
    /// that another claimed or ended has its trace end here, so none is kept forever.
    pub fn moved_elsewhere(&self, id: &str, status: JobStatus) {
        if status == JobStatus::Starting || status.is_terminal() {
            self.follow(Moved {
                id,
                plugin: "",
                kind: "",
                status,
                attempt: 0,
                worker_id: None,
                remote: true,
                at: SystemTime::now(),
            });
        }
    }

    /// A job pending (its `claim` stage begins), claimed (it ends) or ended (the trace
    /// goes, unless its run here has yet to record its end).
    fn follow(&self, job: Moved<'_>) {
        let mut live = self.live();
        let begun = || Live::new(job.plugin, job.kind, job.at);
        let ended = match job.status {
            JobStatus::Pending if job.remote => None,
            JobStatus::Pending => {
                traced(&mut live, job.id, begun, |trace| trace.claim = Some((job.at, job.attempt + 1)));
                None
            }
            JobStatus::Starting => {
                if job.remote && !live.contains_key(job.id) {
                    return;
                }
                let running = traced(&mut live, job.id, begun, |trace| {
                    if let Some((since, attempt)) = trace.claim.take() {
                        let mut claim = StageTrace::new("claim", since, job.at);
                        claim.attempt = Some(attempt);
                        claim.worker_id = job.worker_id.map(str::to_owned);
                        trace.stages.push(claim);
                    }
                    trace.running
                });
                // Claimed by another node: what follows is that node's to trace.
                if job.remote && !running {
                    live.remove_entry(job.id).map(|(id, trace)| trace.into_trace(id, None, job.at))
                } else {
                    None
                }
            }
            status => {
                let Some(trace) = live.get_mut(job.id) else { return };
                if trace.running {
                    trace.ended = Some((status, job.at));
                    None
                } else {
                    live.remove_entry(job.id).map(|(id, trace)| trace.into_trace(id, Some(status), job.at))
                }
            }
        };
        drop(live);
        if let Some(trace) = ended {
            let _ = self.ended.send(trace);
        }
    }

    /// The run of `job` on this node begins now; see [`Run`].
    pub fn run(self: &Arc<Self>, job: &Job) -> Run {
        let at = SystemTime::now();
        let begun = || Live::new(&job.plugin, job.kind.as_str(), at);
        traced(&mut self.live(), &job.id, begun, |trace| trace.running = true);
        Run { traces: Some(self.clone()), id: job.id.clone(), since: at }
    }
}

/// `f` of the live trace of job `id`, `begun` if this node holds none (a job it did not
/// submit); only then is the id copied.
fn traced<R>(
    live: &mut HashMap<String, Live>,
    id: &str,
    begun: impl FnOnce() -> Live,
    f: impl FnOnce(&mut Live) -> R,
) -> R {
    if let Some(trace) = live.get_mut(id) {
        return f(trace);
    }
    f(live.entry(id.to_owned()).or_insert_with(begun))
}

/// A job's run on this node, timed: [`Run::ran`] when the executor is done, then
/// [`Run::finished`] once its end is recorded. Dropped before that (the run was
/// abandoned), the trace goes once the job's end commits, or at once if it has.
#[derive(Debug)]
pub struct Run {
    traces: Option<Arc<JobTraces>>,
    id: String,
    since: SystemTime,
}

impl Run {
    /// The executor answered `status`: the `run` stage ends, `finish` begins.
    pub fn ran(mut self, status: JobStatus) -> Run {
        let at = SystemTime::now();
        if let Some(traces) = &self.traces
            && let Some(trace) = traces.live().get_mut(&self.id)
        {
            let mut run = StageTrace::new("run", self.since, at);
            run.status = Some(status);
            trace.stages.push(run);
        }
        self.since = at;
        self
    }

    /// The end is recorded: the `finish` stage ends, and the trace goes with the job's
    /// final status, `ended` (`None` when another attempt follows).
    pub fn finished(mut self, ended: Option<JobStatus>) {
        let Some(traces) = self.traces.take() else { return };
        let at = SystemTime::now();
        let mut live = traces.live();
        let Some(trace) = live.get_mut(&self.id) else { return };
        trace.stages.push(StageTrace::new("finish", self.since, at));
        trace.running = false;
        let Some(status) = ended else { return };
        let Some(trace) = live.remove(&self.id) else { return };
        drop(live);
        let status = trace.ended.map_or(status, |(committed, _)| committed);
        traces.sink.export(trace.into_trace(std::mem::take(&mut self.id), Some(status), at));
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let Some(traces) = self.traces.take() else { return };
        let mut live = traces.live();
        let Some(trace) = live.get_mut(&self.id) else { return };
        trace.running = false;
        let Some((status, at)) = trace.ended else { return };
        let Some(trace) = live.remove(&self.id) else { return };
        drop(live);
        traces.sink.export(trace.into_trace(std::mem::take(&mut self.id), Some(status), at));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink keeping what it is sent.
    #[derive(Debug, Default)]
    struct Kept(Mutex<Vec<JobTrace>>);

    impl TraceSink for Kept {
        fn export(&self, trace: JobTrace) {
            self.0.lock().unwrap().push(trace);
        }
    }

    fn job(id: &str, status: JobStatus) -> Job {
        let mut job: Job = serde_json::from_value(serde_json::json!({
            "id": id, "user_id": "usr_a", "kind": "wasm", "plugin": "probe", "plugin_digest": "sha256:0",
            "status": "pending", "args": [], "env": {}, "input": null, "labels": {}, "priority": 0,
            "cpus": 1, "memory_mb": 256, "timeout_s": 600, "client_job_id": null, "attempt": 0,
            "max_attempts": 1, "exit_code": null, "error": null, "progress": null,
            "created_at": "2026-11-30T00:00:00Z", "started_at": null, "completed_at": null,
        }))
        .unwrap();
        job.status = status;
        job.worker_id = Some("wrk_here".into());
        job
    }

    /// The jobs whose traces are held, in order.
    fn held(traces: &JobTraces) -> Vec<String> {
        let mut live: Vec<String> = traces.live().keys().cloned().collect();
        live.sort();
        live
    }

    /// What the sink was sent, once it has `n` traces (those a transition ended reach
    /// it through the export task).
    async fn sent(kept: &Kept, n: usize) -> Vec<JobTrace> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let sent = kept.0.lock().unwrap().clone();
            if sent.len() >= n {
                return sent;
            }
            assert!(tokio::time::Instant::now() < deadline, "sent so far: {sent:?}");
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    #[tokio::test]
    async fn a_job_run_here_is_one_trace_of_its_four_stages_sent_once_it_is_recorded() {
        let kept = Arc::new(Kept::default());
        let traces = JobTraces::new(kept.clone());
        traces.submitting("job_a", "probe", "wasm");
        traces.moved(&job("job_a", JobStatus::Pending));
        traces.submitted("job_a");
        traces.moved(&job("job_a", JobStatus::Starting));
        assert_eq!(held(&traces), ["job_a"]);
        let run = traces.run(&job("job_a", JobStatus::Starting)).ran(JobStatus::Completed);
        // The end commits before the run hears it is recorded: nothing goes yet.
        traces.moved(&job("job_a", JobStatus::Completed));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(kept.0.lock().unwrap().is_empty());
        run.finished(Some(JobStatus::Completed));
        assert_eq!(held(&traces), [] as [&str; 0]);
        let sent = sent(&kept, 1).await;
        assert_eq!(sent.len(), 1);
        let trace = &sent[0];
        assert_eq!((trace.job_id.as_str(), trace.status), ("job_a", Some(JobStatus::Completed)));
        let names: Vec<&str> = trace.stages.iter().map(|s| s.name).collect();
        assert_eq!(names, ["submit", "claim", "run", "finish"]);
        let claim = &trace.stages[1];
        assert_eq!((claim.attempt, claim.worker_id.as_deref()), (Some(1), Some("wrk_here")));
        for stage in &trace.stages {
            assert!(trace.start <= stage.start && stage.start <= stage.end && stage.end <= trace.end, "{stage:?}");
        }
    }

    #[tokio::test]
    async fn a_job_ended_or_claimed_on_another_node_or_cancelled_before_its_run_is_not_kept_here() {
        let kept = Arc::new(Kept::default());
        let traces = JobTraces::new(kept.clone());
        traces.submitting("job_a", "probe", "wasm");
        traces.submitting("job_b", "probe", "wasm");
        traces.submitting("job_c", "probe", "wasm");
        traces.moved_elsewhere("job_a", JobStatus::Starting);
        traces.moved_elsewhere("job_c", JobStatus::Cancelled);
        // A job this node never held is not made up from what another node did.
        traces.moved_elsewhere("job_d", JobStatus::Completed);
        assert_eq!(held(&traces), ["job_b"]);
        // Cancelled here before it ran: its trace goes behind the others, so a trace
        // made up for `job_d` would be among the first three.
        traces.moved(&job("job_b", JobStatus::Cancelled));
        assert_eq!(held(&traces), [] as [&str; 0]);
        let mut sent: Vec<(String, Option<JobStatus>)> =
            sent(&kept, 3).await.iter().take(3).map(|t| (t.job_id.clone(), t.status)).collect();
        sent.sort_by(|a, b| a.0.cmp(&b.0));
        let cancelled = Some(JobStatus::Cancelled);
        assert_eq!(
            sent,
            [("job_a".to_owned(), None), ("job_b".to_owned(), cancelled), ("job_c".to_owned(), cancelled)]
        );
    }
}

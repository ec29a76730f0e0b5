//! The jobs domain: what a job is, the rules of its life (validation, idempotency,
//! transitions, who may see it) and the queries clients make about it.
//!
//! It talks to the [`Store`] for every record and to nobody's wire format: the RPC
//! layer turns its [`Error`] into JSON-RPC errors, and the runtime reaches it only
//! through the [`Recorder`] sink it is handed.
//!
//! One [`Jobs`] value serves it all, its methods kept by concern: `limits` (what a job
//! may ask for), `submit` (validation and idempotency), `query` (what clients read and
//! watch), `lifecycle` (every transition after the submit, the scheduler's among
//! them). `events` carries status, progress and log events to subscribers and
//! waiters; `recorder` is the sink a run reports through.

pub mod events;
mod lifecycle;
mod limits;
mod query;
pub mod recorder;
mod submit;
pub mod trace;

use events::EventBus;
pub use jobhost_model::{
    Caller, DEFAULT_PAGE, DEFAULT_WAIT, Error, JobPage, LogPage, MAX_PAGE, MAX_WAIT, ResourceUsage, Result,
    SubmitRequest, Submitted,
};
use jobhost_model::{EventKind, Job, JobEvent, JobStatus};
use jobhost_store::{Remote, Store};
pub use limits::{DEFAULT_CPUS, Limits};
pub use query::{ListFilter, Subscription};
use recorder::Recorder;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use tokio_util::sync::CancellationToken;

/// The node this process is, as the queue sees it: what its claims record, and the
/// labels that decide which jobs it may take.
#[derive(Clone, Debug)]
pub struct Here {
    /// Its `workers` id.
    pub worker_id: Arc<str>,
    /// Its labels.
    pub labels: Arc<[String]>,
    /// Its GPUs.
    pub gpus: Arc<[jobhost_model::Gpu]>,
}

/// The jobs service; cheap to clone.
#[derive(Clone, Debug)]
pub struct Jobs {
    store: Arc<dyn Store>,
    here: Here,
    events: EventBus,
    recorder: Recorder,
    limits: Limits,
    /// `<data>/jobs`, where each job's files live.
    jobs_dir: PathBuf,
    /// `<data>/uploads`, where an upload's files wait for the job that consumes them.
    uploads_dir: PathBuf,
    /// Cancellation handles of the runs in this process.
    running: Arc<Mutex<HashMap<String, CancellationToken>>>,
    /// Wakes the scheduler when work arrives.
    work: Arc<tokio::sync::Notify>,
    /// Wakes the release of held jobs when one is added (see [`Jobs::release_held`]).
    held: Arc<tokio::sync::Notify>,
    /// Called right after a submit's insert is queued (see [`Jobs::on_submit`]).
    submit_hook: Arc<HookSlot>,
    /// Told the run of every task whose end this node publishes (see [`Jobs::on_task_end`]).
    task_end: Arc<TaskEndSlot>,
    /// What `/metrics` shows.
    metrics: crate::metrics::Metrics,
    /// The traces of live jobs, when traces are kept.
    traces: Option<Arc<trace::JobTraces>>,
}

/// What is told of a workflow task's end: its run's id.
pub type TaskEndHook = Arc<dyn Fn(&str) + Send + Sync>;

/// Where the task-end hook is kept.
#[derive(Default)]
struct TaskEndSlot(Mutex<Option<TaskEndHook>>);

impl std::fmt::Debug for TaskEndSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TaskEndSlot")
    }
}

impl TaskEndSlot {
    /// Tells the hook when `job` is a task that has ended.
    fn tell(&self, job: &Job) {
        if let Some(run) = &job.run_id
            && job.status.is_terminal()
            && let Some(hook) = self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
        {
            hook(run);
        }
    }
}

/// What the scheduler does when a job is submitted: claim into free slots at once.
/// Returns whether it saw to the job (a claim is queued behind it, and whatever that
/// claim leaves in the queue is the scheduler's to look at); when it did not, the
/// submit wakes the scheduler's claim loop.
pub type SubmitHook = Arc<dyn Fn() -> bool + Send + Sync>;

/// Where the submit hook is kept.
#[derive(Default)]
struct HookSlot(Mutex<Option<SubmitHook>>);

impl std::fmt::Debug for HookSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = self.0.lock().unwrap_or_else(PoisonError::into_inner).is_some();
        f.debug_tuple("HookSlot").field(&if set { "set" } else { "unset" }).finish()
    }
}

impl Jobs {
    /// The service over `store`, run by node `here`; with `traces`, every job is a
    /// trace of spans ([`trace`]).
    pub fn new(
        store: Arc<dyn Store>,
        here: Here,
        limits: Limits,
        (jobs_dir, uploads_dir): (PathBuf, PathBuf),
        traces: Option<Arc<dyn trace::TraceSink>>,
    ) -> Jobs {
        let events = EventBus::new();
        // Status events of what the store group-commits (submits, claims, starts, ends)
        // are published by the store's writer, in commit order.
        let published = events.clone();
        let task_end = Arc::new(TaskEndSlot::default());
        let told = task_end.clone();
        let metrics = crate::metrics::Metrics::new();
        let counted = metrics.clone();
        let traces = traces.map(trace::JobTraces::new);
        let traced = traces.clone();
        if !store.observe(Box::new(move |job| {
            publish(&published, job);
            told.tell(job);
            counted.job_moved(job);
            if let Some(traced) = &traced {
                traced.moved(job);
            }
        })) {
            tracing::warn!("the store already has an observer; status events come from it");
        }
        let commits = metrics.clone();
        store.observe_commits(Box::new(move |ops, took| commits.commit(ops, took)));
        let recorder = Recorder::start(store.clone(), events.clone(), metrics.clone());
        let jobs = Jobs {
            store,
            here,
            events,
            recorder,
            limits,
            jobs_dir,
            uploads_dir,
            running: Arc::default(),
            work: Arc::default(),
            held: Arc::default(),
            submit_hook: Arc::default(),
            task_end,
            metrics,
            traces,
        };
        // What other nodes move: the hook holds no `Jobs` (the store would then hold
        // itself), only what hearing needs.
        let hearing = Hearing {
            store: Arc::downgrade(&jobs.store),
            events: jobs.events.clone(),
            running: jobs.running.clone(),
            work: jobs.work.clone(),
            traces: jobs.traces.clone(),
        };
        jobs.store.on_remote(Box::new(move |remote| hearing.hear(remote)));
        jobs
    }

    /// How many runs this process has now.
    pub fn running_count(&self) -> usize {
        self.running.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// The store, for other domain services sharing it.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// `<data>/jobs`.
    pub fn jobs_dir(&self) -> &Path {
        &self.jobs_dir
    }

    /// Where the files of the upload a job consumed wait until it starts.
    pub fn input_source(&self, job: &Job) -> Option<PathBuf> {
        job.files_id.as_ref().map(|f| self.uploads_dir.join(f))
    }

    /// The sink runs report through.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// Sets (or with `None` removes) what runs right after each submit's insert is
    /// queued. The scheduler uses it to queue a claim right behind the insert, so the
    /// claim shares the insert's commit instead of following it.
    pub fn on_submit(&self, hook: Option<SubmitHook>) {
        *self.submit_hook.0.lock().unwrap_or_else(PoisonError::into_inner) = hook;
    }

    /// Notified whenever a job becomes pending.
    pub fn work_signal(&self) -> Arc<tokio::sync::Notify> {
        self.work.clone()
    }

    fn publish_status(&self, job: &Job) {
        publish(&self.events, job);
        self.task_end.tell(job);
        self.metrics.job_moved(job);
        if let Some(traces) = &self.traces {
            traces.moved(job);
        }
    }

    /// The run of `job` here, timed for its trace; `None` when traces are off.
    pub fn trace_run(&self, job: &Job) -> Option<trace::Run> {
        self.traces.as_ref().map(|traces| traces.run(job))
    }

    /// What `/metrics` shows.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// The text of `/metrics`: every metric, with the queue depth and this node's
    /// running jobs read now.
    pub async fn render_metrics(&self) -> Result<String> {
        let depth = self.store.queue_depth().await?;
        let (_, running) = self.store.usage(&self.here.worker_id).await?;
        Ok(self.metrics.render(depth, running))
    }

    /// Tells `hook` the run of every workflow task whose end this node publishes.
    pub fn on_task_end(&self, hook: TaskEndHook) {
        *self.task_end.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(hook);
    }
}

/// What this node does with the jobs other nodes move.
struct Hearing {
    store: std::sync::Weak<dyn Store>,
    events: EventBus,
    running: Arc<Mutex<HashMap<String, CancellationToken>>>,
    work: Arc<tokio::sync::Notify>,
    traces: Option<Arc<trace::JobTraces>>,
}

impl Hearing {
    /// A job made pending elsewhere wakes the scheduler (so every node takes a share of
    /// what one node was given); one cancelled elsewhere while it runs here is stopped;
    /// and, when anyone here listens, the jobs are read and their status published, so
    /// `jobs.wait` and `jobs.subscribe` on this node follow jobs run on others. A
    /// remote job is published as it is when read, so a listener may see it skip a
    /// status it passed through quickly, never go back.
    fn hear(&self, remote: Remote) {
        let moved = match remote {
            Remote::Missed => return self.work.notify_one(),
            Remote::Moved(moved) => moved,
        };
        if moved.iter().any(|(_, status)| *status == JobStatus::Pending) {
            self.work.notify_one();
        }
        if let Some(traces) = &self.traces {
            moved.iter().for_each(|(id, status)| traces.moved_elsewhere(id, *status));
        }
        {
            let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            for (id, status) in &moved {
                if status.is_terminal()
                    && let Some(token) = running.get(id)
                {
                    token.cancel();
                }
            }
        }
        if !self.events.has_listeners() {
            return;
        }
        let (Some(store), events) = (self.store.upgrade(), self.events.clone()) else { return };
        let ids: Vec<String> = moved.into_iter().map(|(id, _)| id).collect();
        tokio::spawn(async move {
            match store.get_jobs(&ids).await {
                Ok(jobs) => jobs.iter().for_each(|job| publish(&events, job)),
                Err(e) => tracing::warn!(error = %e, "reading jobs another node moved"),
            }
        });
    }
}

/// The status event of `job`, and the job itself to `jobs.wait` when it has ended.
fn publish(events: &EventBus, job: &Job) {
    events.publish(status_event(job));
    if job.status.is_terminal() {
        events.publish_end(job);
    }
}

fn status_event(job: &Job) -> JobEvent {
    JobEvent {
        kind: EventKind::Status,
        job_id: job.id.clone(),
        status: Some(job.status),
        progress: job.progress.clone(),
        log: None,
        missed: None,
    }
}

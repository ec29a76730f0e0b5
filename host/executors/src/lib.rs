//! Executors: what runs a claimed job. The scheduler hands an executor a [`Task`] — the
//! job, its directory, the files it consumes and what its kind was granted — with a
//! sink for its output and progress and a token that cancels it; the executor runs it
//! to its end and answers how it ended. Streaming goes through the sink while the run
//! lasts, cancel (and the deadline, which the executor enforces from the job's
//! `timeout_s`) end it promptly, and the outcome is the one answer.
//!
//! Executors are picked by job kind ([`Executors`]): Wasm components
//! ([`wasm::WasmExecutor`]) and containers ([`container::ContainerExecutor`], through
//! the Docker Engine API); each is a module of this crate implementing [`Executor`].
//! [`gpus`] finds the node's GPUs, which jobs are given by device (the container
//! executor hands them to the engine).

pub mod container;
pub mod gpus;
pub mod wasm;

use jobhost_model::{Job, JobKind, JobSink, RunGrant, RunOutcome};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// One claimed job, as an executor gets it.
#[derive(Debug, Clone)]
pub struct Task {
    /// The job, as claimed (its attempt is the one running).
    pub job: Job,
    /// `jobs/<id>`: where its files live.
    pub job_dir: PathBuf,
    /// Files to move in as `input/` before the first run (a consumed upload's).
    pub input_from: Option<PathBuf>,
    /// What the job's kind grants beyond the sandbox.
    pub grant: RunGrant,
}

/// Runs jobs of some kind.
#[async_trait::async_trait]
pub trait Executor: std::fmt::Debug + Send + Sync {
    /// Runs `task` to its end: prepares its sandbox, starts the workload, streams its
    /// output and progress to `sink` as it comes, stops it at its deadline or when
    /// `cancel` fires, and collects its artifacts. Never fails: a run that could not
    /// start is an outcome too (`failed`, saying why).
    async fn run(&self, task: Task, sink: Arc<dyn JobSink>, cancel: CancellationToken) -> RunOutcome;
}

/// The executor of each job kind; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Executors {
    by_kind: HashMap<JobKind, Arc<dyn Executor>>,
}

impl Executors {
    /// Runs every job of `kind` on `executor` (replacing an earlier one).
    pub fn insert(&mut self, kind: JobKind, executor: Arc<dyn Executor>) {
        self.by_kind.insert(kind, executor);
    }

    /// The executor of `kind`, if there is one.
    pub fn for_kind(&self, kind: JobKind) -> Option<&Arc<dyn Executor>> {
        self.by_kind.get(&kind)
    }
}

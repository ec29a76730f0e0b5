//! The driver: moves runs along as their tasks end. Advancing a run reads its tasks
//! (one indexed query), starts every step whose needs all succeeded, and ends the run:
//! `success` once every step has, `failed` as soon as a task failed after its retries
//! (or was cancelled on its own), its live tasks then cancelled and its waiting steps
//! never started. Every write is idempotent (tasks by their key `run/step/index`,
//! runs by conditional moves), so nodes advancing one run at once, or a restart half
//! way through a fan-out, make no task twice and lose none.

use super::{Result, Runs, owner};
use crate::jobs::SubmitRequest;
use futures::StreamExt as _;
use jobhost_model::{Error, JobKind, JobStatus, Run, RunStatus, Step, StepStatus, check_steps, ids};
use jobhost_store::TaskRow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often every live run is looked at, whatever this node heard.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// The least time between two advances prompted by task ends: the ends of a fan-out
/// arrive by thousands a second, and one advance reads every task of its run, so they
/// are taken together.
const GATHER: Duration = Duration::from_millis(20);
/// Task submissions in flight at once while a step fans out.
const SUBMITS_IN_FLIGHT: usize = 512;

impl Runs {
    /// Advances runs until `shutdown`: those whose tasks ended here as soon as they
    /// end, and every live run each second.
    pub async fn drive(self, shutdown: CancellationToken) {
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        loop {
            tokio::select! {
                () = self.wake.notified() => {}
                _ = sweep.tick() => match self.store.live_runs().await {
                    Ok(ids) => self.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(ids),
                    Err(e) => tracing::warn!(error = %e, "listing live runs"),
                },
                () = shutdown.cancelled() => return,
            }
            let ids: Vec<String> =
                self.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain().collect();
            for id in ids {
                if let Err(e) = self.advance(&id).await {
                    tracing::warn!(run_id = id, error = %e, "advancing a run");
                }
            }
            tokio::time::sleep(GATHER).await;
        }
    }

    /// Moves run `id` along: starts it when it waits for a concurrency slot that is
    /// free, starts the steps that may start, and ends it when it is over.
    pub(super) async fn advance(&self, id: &str) -> Result<()> {
        let Some((run, steps)) = self.store.get_run(id).await? else { return Ok(()) };
        match run.status {
            RunStatus::Pending => {
                let cap = self.store.get_workflow(&run.workflow_id).await?.and_then(|w| w.concurrency);
                if !self.store.start_run(&run.id, &run.workflow_id, cap, &ids::now()).await? {
                    return Ok(());
                }
            }
            RunStatus::Running => {}
            // An ended run keeps nothing running (a task submitted by a node that had
            // not seen the end yet is stopped here).
            RunStatus::Failed | RunStatus::Cancelled => {
                let tasks = self.store.run_tasks(&run.id).await?;
                if tasks.iter().any(|t| !t.status.is_terminal()) {
                    self.stop_tasks(&run).await;
                }
                return Ok(());
            }
            RunStatus::Success => return Ok(()),
        }
        let tasks = self.store.run_tasks(&run.id).await?;
        let view = step_states(&steps, &tasks);
        if let Some(failure) = view.failure {
            let now = ids::now();
            let moved = self.store.move_run(&run.id, &[RunStatus::Running], RunStatus::Failed, Some(&failure), &now);
            if let Some(run) = moved.await? {
                self.stop_tasks(&run).await;
            }
            return Ok(());
        }
        if view.states.iter().all(|(_, s)| *s == StepStatus::Success) {
            self.store.move_run(&run.id, &[RunStatus::Running], RunStatus::Success, None, &ids::now()).await?;
            return Ok(());
        }
        for (i, step) in steps.iter().enumerate() {
            let made = tasks.iter().filter(|t| t.step == step.name).count();
            let ready = step.needs.iter().all(|n| view.state(n) == Some(StepStatus::Success));
            if ready && made < step.tasks() as usize {
                self.start_step(&run, i, step, &steps, &tasks).await?;
            }
        }
        Ok(())
    }

    /// Submits the tasks of `step` that `tasks` does not hold yet, each seeing the
    /// outputs of the steps it needs under `/input/<step>/<index>/`.
    async fn start_step(&self, run: &Run, i: usize, step: &Step, steps: &[Step], tasks: &[TaskRow]) -> Result<()> {
        let caller = owner(&run.user_id);
        let have: Vec<u32> = tasks.iter().filter(|t| t.step == step.name).map(|t| t.index).collect();
        let missing: Vec<u32> = (0..step.tasks()).filter(|n| !have.contains(n)).collect();
        // What each task is shown of the steps it needs: every task's output directory.
        let inputs: Vec<(String, PathBuf)> = tasks
            .iter()
            .filter(|t| step.needs.contains(&t.step))
            .map(|t| (format!("{}/{}", t.step, t.index), self.jobs.jobs_dir().join(&t.job_id).join("output")))
            .collect();
        tracing::debug!(
            run_id = run.id,
            step = step.name,
            tasks = missing.len(),
            index = i,
            of = steps.len(),
            "starting a step"
        );
        let submits = missing.into_iter().map(|index| {
            let (caller, inputs) = (&caller, &inputs);
            async move {
                let files_id = if step.needs.is_empty() { None } else { Some(self.assemble(caller, inputs).await?) };
                let req = task_request(run, step, index, files_id);
                let kind = if step.image.is_some() { JobKind::Container } else { JobKind::Wasm };
                let task = (run.id.clone(), step.name.clone(), index);
                self.jobs.submit_task(caller, req, kind, task).await.map(|_| ())
            }
        });
        let mut pending = futures::stream::iter(submits).buffer_unordered(SUBMITS_IN_FLIGHT);
        let mut first_error = None;
        while let Some(result) = pending.next().await {
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            // A task that cannot be submitted (its plugin is gone, a limit) fails the run.
            Some(e) => {
                let why = format!("step {}: its tasks could not be submitted: {e}", step.name);
                if let Some(run) = self
                    .store
                    .move_run(&run.id, &[RunStatus::Running], RunStatus::Failed, Some(&why), &ids::now())
                    .await?
                {
                    self.stop_tasks(&run).await;
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// A finalized upload of the caller's holding `inputs` (`(path, directory)`), each
    /// directory's files linked in under its path: what a task is shown at `/input`.
    async fn assemble(&self, caller: &jobhost_model::Caller, inputs: &[(String, PathBuf)]) -> Result<String> {
        let upload = self.uploads.create(caller).await?;
        let root = self.uploads.files_dir(&upload.id);
        let parts = inputs.to_vec();
        tokio::task::spawn_blocking(move || {
            for (path, dir) in parts {
                link_tree(&dir, &root.join(path))?;
            }
            Ok::<_, std::io::Error>(())
        })
        .await
        .map_err(|e| Error::Internal(format!("gathering a task's inputs: {e}")))?
        .map_err(|e| Error::Internal(format!("gathering a task's inputs: {e}")))?;
        Ok(self.uploads.finalize(caller, &upload.id).await?.id)
    }
}

/// The request for task `index` of `step` in `run`.
fn task_request(run: &Run, step: &Step, index: u32, files_id: Option<String>) -> SubmitRequest {
    let mut env = step.env.clone();
    env.insert("TASK_INDEX".into(), index.to_string());
    env.insert("TASK_COUNT".into(), step.tasks().to_string());
    env.insert("JOBHOST_RUN".into(), run.id.clone());
    env.insert("JOBHOST_STEP".into(), step.name.clone());
    let mut input = match &step.input {
        Some(serde_json::Value::Object(fields)) => fields.clone(),
        _ => serde_json::Map::new(),
    };
    input.insert("params".into(), run.params.clone());
    input.insert("task_index".into(), index.into());
    input.insert("task_count".into(), step.tasks().into());
    input.insert("run_id".into(), run.id.clone().into());
    SubmitRequest {
        plugin: if step.image.is_some() { String::new() } else { step.plugin.clone() },
        args: step.args.clone(),
        image: step.image.clone(),
        command: step.command.clone(),
        env,
        input: Some(serde_json::Value::Object(input)),
        files_id,
        cpus: step.cpus,
        memory_mb: step.memory_mb,
        timeout_s: step.timeout_s,
        client_job_id: Some(format!("{}/{}/{index}", run.id, step.name)),
        requires: step.requires.clone(),
        max_attempts: step.max_attempts,
        retry: step.retry,
        ..SubmitRequest::default()
    }
}

/// How each step of a run stands, from its tasks, and why the run failed if it did.
struct View {
    states: Vec<(String, StepStatus)>,
    failure: Option<String>,
}

impl View {
    fn state(&self, step: &str) -> Option<StepStatus> {
        self.states.iter().find(|(n, _)| n == step).map(|(_, s)| *s)
    }
}

/// The steps' states in DAG order: a step with every task succeeded is `success`, one
/// with a failed or cancelled task `failed`, one whose needs have not all succeeded
/// `waiting`, otherwise `running`.
fn step_states(steps: &[Step], tasks: &[TaskRow]) -> View {
    let order = check_steps(steps).unwrap_or_else(|_| (0..steps.len()).collect());
    let mut by_step: HashMap<&str, Vec<&TaskRow>> = HashMap::new();
    for t in tasks {
        by_step.entry(t.step.as_str()).or_default().push(t);
    }
    let mut view = View { states: Vec::new(), failure: None };
    for i in order {
        let step = &steps[i];
        let mine = by_step.get(step.name.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let bad =
            mine.iter().find(|t| matches!(t.status, JobStatus::Failed | JobStatus::TimedOut | JobStatus::Cancelled));
        let state = if let Some(t) = bad {
            view.failure.get_or_insert_with(|| {
                format!(
                    "step {} task {} {}: {}",
                    step.name,
                    t.index,
                    t.status,
                    t.error.as_deref().unwrap_or("no error recorded")
                )
            });
            StepStatus::Failed
        } else if mine.len() == step.tasks() as usize && mine.iter().all(|t| t.status.is_terminal()) {
            StepStatus::Success
        } else if mine.is_empty() && !step.needs.iter().all(|n| view.state(n) == Some(StepStatus::Success)) {
            StepStatus::Waiting
        } else {
            StepStatus::Running
        };
        view.states.push((step.name.clone(), state));
    }
    view
}

/// The steps of a run as `runs.get` shows them.
pub(super) fn steps_view(run: &Run, steps: &[Step], tasks: &[TaskRow]) -> Vec<jobhost_model::RunStep> {
    let view = step_states(steps, tasks);
    view.states
        .into_iter()
        .map(|(name, mut status)| {
            let mine: Vec<jobhost_model::RunTask> = tasks
                .iter()
                .filter(|t| t.step == name)
                .map(|t| jobhost_model::RunTask {
                    index: t.index,
                    job_id: t.job_id.clone(),
                    status: jobhost_model::TaskStatus::of(t.status),
                    attempt: t.attempt,
                    error: t.error.clone(),
                    started_at: t.started_at.clone(),
                    completed_at: t.completed_at.clone(),
                })
                .collect();
            // A step that had not ended when its run did never will.
            if run.status.is_terminal() && matches!(status, StepStatus::Waiting | StepStatus::Running) {
                status = StepStatus::Cancelled;
            }
            jobhost_model::RunStep { name, status, tasks: mine }
        })
        .collect()
}

/// Links every file under `from` into `to` (same paths), making directories; copies
/// where a link cannot be made. A missing `from` (a task that left no output) is empty.
fn link_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    let entries = match std::fs::read_dir(from) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if kind.is_dir() {
            link_tree(&src, &dst)?;
        } else if kind.is_file() && std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst)?;
        }
        // Anything else (a link a task left) is not passed on.
    }
    Ok(())
}

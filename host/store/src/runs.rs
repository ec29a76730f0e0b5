//! Workflows and their runs (see `jobhost_model::Workflow`). A run's tasks are jobs
//! that name it (`run_id`, `step`, `task_index`), so a run's state is read from them
//! ([`RunStore::run_tasks`]) and nothing here duplicates what the jobs table knows.

use crate::{Result, StoreError};
use jobhost_model::{JobStatus, Run, RunStatus, Step, Workflow};

/// A run to record.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// `run_…`.
    pub id: String,
    /// Its workflow.
    pub workflow: Workflow,
    /// `pending` (waiting for a concurrency slot) or `running`.
    pub status: RunStatus,
    /// Its parameters (a JSON object).
    pub params: serde_json::Value,
    /// `manual`, `api` or `schedule`.
    pub triggered_by: String,
    /// The caller's idempotency key.
    pub client_run_id: Option<String>,
    /// The schedule tick it runs for.
    pub tick: Option<String>,
}

/// One task of a run as its job stands.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    /// Its step.
    pub step: String,
    /// Its index in the step.
    pub index: u32,
    /// Its job.
    pub job_id: String,
    /// The job's status.
    pub status: JobStatus,
    /// The job's attempt.
    pub attempt: u32,
    /// The job's error.
    pub error: Option<String>,
    /// When the job started.
    pub started_at: Option<String>,
    /// When it ended.
    pub completed_at: Option<String>,
}

/// Workflows and runs.
#[async_trait::async_trait]
pub trait RunStore: Send + Sync {
    /// Records a new workflow; `false` when its owner has one of that name already.
    async fn insert_workflow(&self, workflow: &Workflow) -> Result<bool>;

    /// Replaces the definition of workflow `workflow.id` (everything but its id, owner
    /// and creation time); `false` when it is gone or the new name is taken.
    async fn update_workflow(&self, workflow: &Workflow) -> Result<bool>;

    /// Workflow `id`.
    async fn get_workflow(&self, id: &str) -> Result<Option<Workflow>>;

    /// `user_id`'s workflow named `name`.
    async fn find_workflow(&self, user_id: &str, name: &str) -> Result<Option<Workflow>>;

    /// Every workflow (of `user_id`, when given), by name.
    async fn list_workflows(&self, user_id: Option<&str>) -> Result<Vec<Workflow>>;

    /// Deletes workflow `id` (its runs stay); `false` when it is gone.
    async fn delete_workflow(&self, id: &str) -> Result<bool>;

    /// The workflows whose schedule's next tick is at `now` or earlier.
    async fn due_workflows(&self, now: &str) -> Result<Vec<Workflow>>;

    /// Sets the next tick of workflow `id`'s schedule.
    async fn set_next_run_at(&self, id: &str, next: Option<&str>) -> Result<()>;

    /// Records a run; none when its `client_run_id` (for its owner) or its `tick` (for
    /// its workflow) names a run already.
    async fn insert_run(&self, run: &NewRun) -> Result<Option<Run>>;

    /// `user_id`'s run with idempotency key `client_run_id`.
    async fn find_run(&self, user_id: &str, client_run_id: &str) -> Result<Option<Run>>;

    /// Run `id` and the steps it was started with.
    async fn get_run(&self, id: &str) -> Result<Option<(Run, Vec<Step>)>>;

    /// Runs, newest first: of `user_id`, of `workflow_id`, with `status`, when given.
    async fn list_runs(
        &self,
        user_id: Option<&str>,
        workflow_id: Option<&str>,
        status: Option<RunStatus>,
        limit: u32,
    ) -> Result<Vec<Run>>;

    /// The ids of every `pending` and `running` run, oldest first.
    async fn live_runs(&self) -> Result<Vec<String>>;

    /// Moves run `id` from one of `from` to `to` (a terminal `to` records `ended_at`,
    /// `running` its `started_at`), with `error`; the run as moved, none when it was
    /// not in `from`.
    async fn move_run(
        &self,
        id: &str,
        from: &[RunStatus],
        to: RunStatus,
        error: Option<&str>,
        now: &str,
    ) -> Result<Option<Run>>;

    /// Starts pending run `id` of `workflow_id` if fewer than `cap` of its runs are
    /// running (no cap: always), in one step no other writer can interleave with;
    /// whether it started.
    async fn start_run(&self, id: &str, workflow_id: &str, cap: Option<u32>, now: &str) -> Result<bool>;

    /// Every task of run `id`, by step and index.
    async fn run_tasks(&self, id: &str) -> Result<Vec<TaskRow>>;
}

/// The columns both backends select for a workflow (timestamps and JSON as text).
pub(crate) fn workflow_from_row<R>(row: &R) -> Result<Workflow>
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let id: String = row.try_get("id")?;
    let corrupt = |what: &str, e: &dyn std::fmt::Display| StoreError::Corrupt(format!("workflow {id}: {what}: {e}"));
    let steps: String = row.try_get("steps")?;
    let schema: Option<String> = row.try_get("params_schema")?;
    Ok(Workflow {
        name: row.try_get("name")?,
        user_id: row.try_get("user_id")?,
        description: row.try_get("description")?,
        steps: serde_json::from_str(&steps).map_err(|e| corrupt("steps", &e))?,
        schedule: row.try_get("schedule")?,
        concurrency: row.try_get::<Option<i64>, _>("concurrency")?.and_then(|c| u32::try_from(c).ok()),
        params_schema: schema
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(|e| corrupt("params_schema", &e))?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        next_run_at: row.try_get("next_run_at")?,
        id,
    })
}

/// A run row of either backend, with the steps it was started with.
pub(crate) fn run_from_row<R>(row: &R) -> Result<(Run, Vec<Step>)>
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let id: String = row.try_get("id")?;
    let corrupt = |what: &str, e: &dyn std::fmt::Display| StoreError::Corrupt(format!("run {id}: {what}: {e}"));
    let status: String = row.try_get("status")?;
    let params: String = row.try_get("params")?;
    let steps: String = row.try_get("steps")?;
    let steps: Vec<Step> = serde_json::from_str(&steps).map_err(|e| corrupt("steps", &e))?;
    let run = Run {
        workflow_id: row.try_get("workflow_id")?,
        workflow: row.try_get("workflow")?,
        user_id: row.try_get("user_id")?,
        status: RunStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        params: serde_json::from_str(&params).map_err(|e| corrupt("params", &e))?,
        triggered_by: row.try_get("triggered_by")?,
        client_run_id: row.try_get("client_run_id")?,
        tick: row.try_get("tick")?,
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
        steps: Vec::new(),
        id,
    };
    Ok((run, steps))
}

/// A task row of either backend.
pub(crate) fn task_from_row<R>(row: &R) -> Result<TaskRow>
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let status: String = row.try_get("status")?;
    Ok(TaskRow {
        step: row.try_get("step")?,
        index: u32::try_from(row.try_get::<i64, _>("task_index")?).unwrap_or(u32::MAX),
        job_id: row.try_get("id")?,
        status: JobStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("task status {status:?}")))?,
        attempt: u32::try_from(row.try_get::<i64, _>("attempt")?).unwrap_or(0),
        error: row.try_get("error")?,
        started_at: row.try_get("started_at")?,
        completed_at: row.try_get("completed_at")?,
    })
}

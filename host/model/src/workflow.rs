//! Workflows, runs and tasks: a workflow is a DAG of steps, each a job template; a run
//! is one execution of it, and a step with `task_count: N` becomes N tasks. A task is a
//! job (kind, limits, retries, logs, artifacts and all) that also names its run, step
//! and index, so everything a job has a task has, and a run's state is read from its
//! tasks' jobs.
//!
//! The DAG is checked when a workflow is written ([`check_steps`]): names unique,
//! every `needs` known, no cycle; a bad step is `invalid_params` naming it.

use crate::job::{Cpus, JobStatus, RetryPolicy};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most steps in a workflow.
pub const MAX_STEPS: usize = 100;
/// Most tasks one step fans out into.
pub const MAX_TASKS: u32 = 100_000;

/// One step of a workflow: a job template, run once per task when the steps it needs
/// have succeeded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Unique in the workflow: 1–64 of `[a-z0-9_-]`, starting with a letter or digit
    /// (it names the directory its outputs are shown under: `/input/<step>/`).
    pub name: String,
    /// The installed component its tasks run (or `image`).
    #[serde(default)]
    pub plugin: String,
    /// A container image its tasks run `command` in, instead of a component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// A container step's command.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// A component step's argv after argv[0].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// The plugin input of its tasks (an object); each task's also holds `params`,
    /// `task_index` and `task_count`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<serde_json::Value>,
    /// Environment of its tasks (`TASK_INDEX`, `TASK_COUNT`, `JOBHOST_RUN` and
    /// `JOBHOST_ATTEMPT` are added).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Steps that must succeed before it starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    /// How many tasks it fans out into [default: 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_count: Option<u32>,
    /// CPUs of each task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<Cpus>,
    /// Memory limit of each task, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
    /// Wall-clock limit of each task, s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u32>,
    /// Attempts each task may have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Backoff between a task's attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Labels the node running a task must have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
}

impl Step {
    /// How many tasks it has.
    pub fn tasks(&self) -> u32 {
        self.task_count.unwrap_or(1)
    }
}

/// `workflows.create` and `workflows.update` parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowRequest {
    /// 1–64 of `[a-z0-9._-]`, unique among the caller's workflows.
    pub name: String,
    /// What it is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Its steps (at most 100), a DAG through their `needs`.
    pub steps: Vec<Step>,
    /// A 5-field cron expression (UTC) that starts runs on its own.
    #[serde(default)]
    pub schedule: Option<String>,
    /// Most runs of it running at once; the rest wait [default: no limit].
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// A JSON Schema that the `params` of `runs.start` must match (a run started by
    /// the schedule has `{}`).
    #[serde(default)]
    pub params_schema: Option<serde_json::Value>,
}

/// A workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Workflow {
    /// `wf_` + UUIDv7.
    pub id: String,
    /// Its name, unique among its owner's workflows.
    pub name: String,
    /// Owner.
    pub user_id: String,
    /// What it is for.
    pub description: Option<String>,
    /// Its steps.
    pub steps: Vec<Step>,
    /// Its cron schedule, if any.
    pub schedule: Option<String>,
    /// Most runs running at once, if limited.
    pub concurrency: Option<u32>,
    /// The schema of a run's `params`.
    pub params_schema: Option<serde_json::Value>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// The next tick of its schedule.
    #[serde(default)]
    pub next_run_at: Option<String>,
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Waiting for a slot of its workflow's `concurrency`.
    Pending,
    /// Its steps are running.
    Running,
    /// Every step succeeded.
    Success,
    /// A step failed after its retries.
    Failed,
    /// Cancelled by request.
    Cancelled,
}

impl RunStatus {
    /// Every status.
    pub const ALL: [RunStatus; 5] = [Self::Pending, Self::Running, Self::Success, Self::Failed, Self::Cancelled];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Success => "success",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses a stored or wire name.
    pub fn parse(s: &str) -> Option<RunStatus> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether the run has ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Success | Self::Failed | Self::Cancelled)
    }
}

/// A task's status, from its job's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Not claimed yet (or waiting for a retry).
    Pending,
    /// Claimed by a node, starting.
    Dispatched,
    /// Running.
    Running,
    /// Its job completed.
    Success,
    /// Its job failed or timed out, after its retries.
    Failed,
    /// Its job was cancelled.
    Cancelled,
}

impl TaskStatus {
    /// The status of a task whose job is `status`.
    pub fn of(status: JobStatus) -> TaskStatus {
        match status {
            JobStatus::Pending => Self::Pending,
            JobStatus::Starting => Self::Dispatched,
            JobStatus::Running => Self::Running,
            JobStatus::Completed => Self::Success,
            JobStatus::Failed | JobStatus::TimedOut => Self::Failed,
            JobStatus::Cancelled => Self::Cancelled,
            // A cleaned task ended before; its status was recorded at its end.
            JobStatus::Cleaning | JobStatus::Cleaned => Self::Success,
        }
    }
}

/// How a step of a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Its needs have not all succeeded yet.
    Waiting,
    /// Some of its tasks have not ended.
    Running,
    /// Every task succeeded.
    Success,
    /// A task failed.
    Failed,
    /// Its run was cancelled (or failed) before it could end.
    Cancelled,
}

/// One task of a run, as `runs.get` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunTask {
    /// Its index in its step, from 0.
    pub index: u32,
    /// The job that runs it.
    pub job_id: String,
    /// Where it is.
    pub status: TaskStatus,
    /// The job's attempt.
    pub attempt: u32,
    /// Why it failed.
    pub error: Option<String>,
    /// When it started.
    pub started_at: Option<String>,
    /// When it ended.
    pub completed_at: Option<String>,
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunStep {
    /// The step's name.
    pub name: String,
    /// Where it is.
    pub status: StepStatus,
    /// Its tasks, by index (none before it starts).
    pub tasks: Vec<RunTask>,
}

/// One run of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Run {
    /// `run_` + UUIDv7.
    pub id: String,
    /// The workflow's id.
    pub workflow_id: String,
    /// The workflow's name.
    pub workflow: String,
    /// Owner (the workflow's).
    pub user_id: String,
    /// Where it is.
    pub status: RunStatus,
    /// What it was started with.
    pub params: serde_json::Value,
    /// `manual` (the CLI), `api`, or `schedule`.
    pub triggered_by: String,
    /// The caller's idempotency key.
    pub client_run_id: Option<String>,
    /// The schedule tick it runs for (scheduled runs).
    pub tick: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// When its first step started.
    pub started_at: Option<String>,
    /// When it ended.
    pub ended_at: Option<String>,
    /// Its steps and their tasks (`runs.get` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<RunStep>,
}

/// `runs.start` parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    /// The workflow's name (or id).
    pub workflow: String,
    /// Parameters, an object handed to every task in its input.
    #[serde(default)]
    pub params: Option<serde_json::Value>,
    /// Idempotency key: a second start with it returns the first run.
    #[serde(default)]
    pub client_run_id: Option<String>,
    /// `api` (default) or `manual`.
    #[serde(default)]
    pub triggered_by: Option<String>,
}

/// `runs.start` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct StartedRun {
    /// The run.
    pub run: Run,
    /// Whether this call created it.
    pub created: bool,
}

/// `workflows.list` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct WorkflowList {
    /// By name.
    pub workflows: Vec<Workflow>,
}

/// `runs.list` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RunList {
    /// Newest first.
    pub runs: Vec<Run>,
}

/// Why a step name is not one, if it is not.
fn step_name_error(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b));
    (!ok).then(|| {
        format!("{name:?} is not a step name (1 to 64 of a-z, 0-9, '_', '-', starting with a letter or digit)")
    })
}

/// Checks a workflow's steps: names valid and unique, every `needs` a step, no cycle,
/// a component or an image each, fan-out within bounds. Returns the steps in an order
/// where every step comes after the steps it needs; an error is `(field, message)`,
/// the field naming the step (`steps[2].needs`).
pub fn check_steps(steps: &[Step]) -> Result<Vec<usize>, (String, String)> {
    if steps.is_empty() {
        return Err(("steps".into(), "a workflow has at least one step".into()));
    }
    if steps.len() > MAX_STEPS {
        return Err(("steps".into(), format!("at most {MAX_STEPS} steps, not {}", steps.len())));
    }
    let at = |i: usize, field: &str| format!("steps[{i}].{field}");
    for (i, step) in steps.iter().enumerate() {
        if let Some(bad) = step_name_error(&step.name) {
            return Err((at(i, "name"), bad));
        }
        if steps[..i].iter().any(|s| s.name == step.name) {
            return Err((at(i, "name"), format!("step {:?} is named twice", step.name)));
        }
        match (&step.image, step.plugin.is_empty()) {
            (Some(_), false) => {
                return Err((at(i, "plugin"), format!("step {:?}: a plugin or an image, not both", step.name)));
            }
            (None, true) => return Err((at(i, "plugin"), format!("step {:?}: give a plugin or an image", step.name))),
            (Some(_), true) if !step.args.is_empty() => {
                return Err((at(i, "args"), format!("step {:?}: a container step takes `command`", step.name)));
            }
            (None, false) if !step.command.is_empty() => {
                return Err((at(i, "command"), format!("step {:?}: `command` is for a container step", step.name)));
            }
            _ => {}
        }
        if !(1..=MAX_TASKS).contains(&step.tasks()) {
            return Err((at(i, "task_count"), format!("step {:?}: task_count is 1 to {MAX_TASKS}", step.name)));
        }
        if step.input.as_ref().is_some_and(|v| !v.is_object() && !v.is_null()) {
            return Err((at(i, "input"), format!("step {:?}: input must be a JSON object", step.name)));
        }
        for need in &step.needs {
            if !steps.iter().any(|s| &s.name == need) {
                return Err((at(i, "needs"), format!("step {:?} needs {need:?}, which is not a step", step.name)));
            }
            if need == &step.name {
                return Err((at(i, "needs"), format!("step {:?} needs itself", step.name)));
            }
        }
    }
    // Kahn's algorithm: a step is placed once every step it needs is.
    let mut order = Vec::with_capacity(steps.len());
    let mut placed = vec![false; steps.len()];
    while order.len() < steps.len() {
        let ready = (0..steps.len()).find(|&i| {
            !placed[i]
                && steps[i].needs.iter().all(|n| steps.iter().position(|s| &s.name == n).is_some_and(|j| placed[j]))
        });
        match ready {
            Some(i) => {
                placed[i] = true;
                order.push(i);
            }
            None => {
                let stuck: Vec<&str> =
                    (0..steps.len()).filter(|&i| !placed[i]).map(|i| steps[i].name.as_str()).collect();
                let first = (0..steps.len()).find(|&i| !placed[i]).unwrap_or(0);
                return Err((at(first, "needs"), format!("the needs of steps {stuck:?} form a cycle")));
            }
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, needs: &[&str]) -> Step {
        Step {
            name: name.into(),
            plugin: "p".into(),
            needs: needs.iter().map(|n| n.to_string()).collect(),
            ..Step::default()
        }
    }

    #[test]
    fn a_dag_is_ordered_and_a_bad_one_names_its_step() {
        let steps = [step("c", &["b"]), step("a", &[]), step("b", &["a"])];
        assert_eq!(check_steps(&steps), Ok(vec![1, 2, 0]));
        let field = |steps: &[Step]| check_steps(steps).unwrap_err().0;
        assert_eq!(field(&[step("a", &["x"])]), "steps[0].needs");
        assert_eq!(field(&[step("a", &[]), step("a", &[])]), "steps[1].name");
        assert_eq!(field(&[step("a", &["b"]), step("b", &["a"])]), "steps[0].needs");
        assert_eq!(field(&[step("a", &["a"])]), "steps[0].needs");
        assert_eq!(field(&[step("A", &[])]), "steps[0].name");
        assert_eq!(field(&[Step { task_count: Some(0), ..step("a", &[]) }]), "steps[0].task_count");
        assert_eq!(field(&[Step { plugin: String::new(), ..step("a", &[]) }]), "steps[0].plugin");
        assert!(check_steps(&[step("a", &["b"]), step("b", &["a"])]).unwrap_err().1.contains("cycle"));
        assert_eq!(field(&[]), "steps");
    }
}

//! `workflows.*` and `runs.*`: workflows (DAGs of steps) and their runs. Writing a
//! workflow and starting or cancelling a run needs `submit`, reading `read`; each
//! user has their own workflows and runs (an admin sees everyone's).

use super::api::{Access, Api};
use super::{Empty, IdRequest, to_rpc_error};
use crate::auth::Scope;
use jobhost_model::{Run, RunList, RunStatus, StartRun, StartedRun, Workflow, WorkflowList, WorkflowRequest};
use schemars::JsonSchema;
use serde::Deserialize;

/// `workflows.get` and `workflows.delete` params.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NameRequest {
    /// The workflow's name (or id).
    name: String,
}

/// `workflows.update` params: the new definition of workflow `workflow`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct UpdateRequest {
    /// The workflow's current name (or id).
    workflow: String,
    /// Its new definition (a rename is allowed).
    #[serde(flatten)]
    definition: WorkflowRequest,
}

/// `runs.list` params.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListRuns {
    /// Only runs of this workflow (name or id).
    #[serde(default)]
    workflow: Option<String>,
    /// Only runs in this status.
    #[serde(default)]
    status: Option<RunStatus>,
    /// Most runs to return [default: 100, at most 1000].
    #[serde(default)]
    limit: Option<u32>,
}

/// Registers `workflows.create/update/get/list/delete` and `runs.start/get/list/cancel`.
pub(super) fn register(api: &mut Api) -> anyhow::Result<()> {
    use Access::Scope as Needs;
    use Scope::{Read, Submit};
    api.method::<WorkflowRequest, Workflow, _, _>(
        "workflows.create",
        "Records a workflow: steps (each a job template: plugin or image, args or command, input, env, \
         limits, max_attempts, retry, requires, needs, task_count), a DAG through their needs; an \
         optional 5-field cron schedule (UTC) and concurrency.",
        Needs(Submit),
        |req, caller, ctx| async move { ctx.runs.create_workflow(&caller, req).await.map_err(to_rpc_error) },
    )?;
    api.method::<UpdateRequest, Workflow, _, _>(
        "workflows.update",
        "Replaces a workflow's definition; runs already started keep theirs.",
        Needs(Submit),
        |req, caller, ctx| async move {
            ctx.runs.update_workflow(&caller, &req.workflow, req.definition).await.map_err(to_rpc_error)
        },
    )?;
    api.method::<NameRequest, Workflow, _, _>(
        "workflows.get",
        "One workflow.",
        Needs(Read),
        |req, caller, ctx| async move { ctx.runs.workflow(&caller, &req.name).await.map_err(to_rpc_error) },
    )?;
    api.method::<Empty, WorkflowList, _, _>(
        "workflows.list",
        "The caller's workflows, by name.",
        Needs(Read),
        |_, caller, ctx| async move {
            ctx.runs.workflows(&caller).await.map(|workflows| WorkflowList { workflows }).map_err(to_rpc_error)
        },
    )?;
    api.method::<NameRequest, Workflow, _, _>(
        "workflows.delete",
        "Deletes a workflow (its runs are kept); one with a live run is a conflict.",
        Needs(Submit),
        |req, caller, ctx| async move { ctx.runs.delete_workflow(&caller, &req.name).await.map_err(to_rpc_error) },
    )?;
    api.method::<StartRun, StartedRun, _, _>(
        "runs.start",
        "Starts a run of a workflow with params (idempotent by client_run_id).",
        Needs(Submit),
        |req, caller, ctx| async move { ctx.runs.start(&caller, req).await.map_err(to_rpc_error) },
    )?;
    api.method::<IdRequest, Run, _, _>(
        "runs.get",
        "A run with its steps and their tasks (status, attempt, job id, error).",
        Needs(Read),
        |req, caller, ctx| async move { ctx.runs.get(&caller, &req.id).await.map_err(to_rpc_error) },
    )?;
    api.method::<ListRuns, RunList, _, _>(
        "runs.list",
        "Runs, newest first, of one workflow or status when asked.",
        Needs(Read),
        |req, caller, ctx| async move {
            let runs = ctx.runs.list(&caller, req.workflow.as_deref(), req.status, req.limit).await;
            runs.map(|runs| RunList { runs }).map_err(to_rpc_error)
        },
    )?;
    api.method::<IdRequest, Run, _, _>(
        "runs.cancel",
        "Cancels a run: pending tasks are cancelled, running ones stopped.",
        Needs(Submit),
        |req, caller, ctx| async move { ctx.runs.cancel(&caller, &req.id).await.map_err(to_rpc_error) },
    )?;
    Ok(())
}

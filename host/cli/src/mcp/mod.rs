//! The MCP server (`jobhost mcp`): speaks the Model Context Protocol over stdio (the
//! `rmcp` crate) to an agent, and drives a jobhost server through [`jobhost_client`] —
//! a client of the JSON-RPC API like the CLI, never of the domain.
//!
//! Tools (each with an input and an output schema generated from the types in
//! [`tools`]): `run_job`, `submit_job`, `job_status`, `job_logs`, `cancel_job`,
//! `upload_file`, `read_artifact`, `pull_model`, `list_plugins`, `start_workflow`,
//! `workflow_status`. A tool that fails — a bad argument, an unknown job, a server
//! without the feature — returns a result with `isError: true` and a message the agent
//! can act on, never a protocol error.
//!
//! While `run_job` waits, a request that carried a `progressToken` gets
//! `notifications/progress` about once a second: the job's own progress when it
//! reports one, else the seconds it has run. `notifications/cancelled` for the request
//! cancels the job.

pub mod tools;

use jobhost_client::Client;
use jobhost_model::Job;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, JsonObject, ListToolsResult,
    PaginatedRequestParams, ProgressNotificationParam, ProgressToken, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::{Peer, RequestContext, RoleServer};
use rmcp::{ErrorData as McpError, ServerHandler, ServiceExt};
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tools::{
    JobIdInput, JobInput, JobLogsInput, NoInput, PullModelInput, ReadArtifactInput, RunJobOutput, ToolError,
    ToolOutput, UploadFileInput, call_error, parse_input,
};

/// How often a waiting `run_job` looks at its job (and reports progress).
const PROGRESS_PERIOD: Duration = Duration::from_secs(1);

/// Serves MCP on stdin/stdout until the client closes it.
pub async fn serve_stdio(client: Client) -> anyhow::Result<()> {
    let service = JobhostMcp { client }.serve(rmcp::transport::stdio()).await?;
    service.waiting().await?;
    Ok(())
}

/// The MCP server: a [`Client`] of one jobhost server.
#[derive(Debug, Clone)]
pub struct JobhostMcp {
    client: Client,
}

impl JobhostMcp {
    /// A server driving the jobhost server behind `client`.
    pub fn new(client: Client) -> JobhostMcp {
        JobhostMcp { client }
    }

    /// Runs tool `name`; `None` when there is no such tool.
    pub async fn dispatch(
        &self,
        name: &str,
        args: Option<JsonObject>,
        progress: Option<Progress>,
        ct: CancellationToken,
    ) -> Option<CallToolResult> {
        let c = &self.client;
        Some(match name {
            "run_job" => respond(async { self.run_job(parse_input(args)?, progress, ct).await }.await),
            "submit_job" => respond(
                async {
                    let input: JobInput = parse_input(args)?;
                    c.submit(&input).await.map_err(|e| call_error(c, "jobs.submit", e))
                }
                .await,
            ),
            "job_status" => respond(
                async {
                    let input: JobIdInput = parse_input(args)?;
                    c.get(&input.job_id).await.map_err(|e| call_error(c, "jobs.get", e))
                }
                .await,
            ),
            "job_logs" => respond(
                async {
                    let input: JobLogsInput = parse_input(args)?;
                    c.logs(&input.job_id, input.since_seq.unwrap_or(0), input.limit)
                        .await
                        .map_err(|e| call_error(c, "jobs.logs", e))
                }
                .await,
            ),
            "cancel_job" => respond(
                async {
                    let input: JobIdInput = parse_input(args)?;
                    c.cancel(&input.job_id).await.map_err(|e| call_error(c, "jobs.cancel", e))
                }
                .await,
            ),
            "upload_file" => respond(async { tools::upload_file(c, parse_input(args)?).await }.await),
            "read_artifact" => respond(async { tools::read_artifact(c, parse_input(args)?).await }.await),
            "pull_model" => respond(
                async {
                    let input: PullModelInput = parse_input(args)?;
                    let mut params = serde_json::json!({ "model": input.model });
                    if let Some(r) = input.revision {
                        params["revision"] = r.into();
                    }
                    c.call::<jobhost_model::Submitted>("models.pull", params)
                        .await
                        .map_err(|e| call_error(c, "models.pull", e))
                }
                .await,
            ),
            "start_workflow" => respond(
                async {
                    let input: jobhost_model::StartRun = parse_input(args)?;
                    c.start_run(&input).await.map_err(|e| call_error(c, "runs.start", e))
                }
                .await,
            ),
            "workflow_status" => respond(
                async {
                    let input: tools::RunIdInput = parse_input(args)?;
                    c.run(&input.run_id).await.map_err(|e| call_error(c, "runs.get", e))
                }
                .await,
            ),
            "list_plugins" => respond(
                async {
                    let _: NoInput = parse_input(args)?;
                    let plugins = c.plugins().await.map_err(|e| call_error(c, "plugins.list", e))?;
                    Ok(jobhost_model::PluginList { plugins })
                }
                .await,
            ),
            _ => return None,
        })
    }

    /// Submits, waits (reporting progress, honouring cancellation) and collects the
    /// outcome.
    async fn run_job(
        &self,
        input: JobInput,
        progress: Option<Progress>,
        ct: CancellationToken,
    ) -> Result<RunJobOutput, ToolError> {
        let c = &self.client;
        let submitted = c.submit(&input).await.map_err(|e| call_error(c, "jobs.submit", e))?;
        let id = submitted.job.id;
        let started = Instant::now();
        let mut progress = progress;
        let job = loop {
            let job = tokio::select! {
                _ = ct.cancelled() => {
                    // The agent gave up on the call: the job goes too. It may have
                    // ended meanwhile, which makes the cancel a harmless conflict.
                    let status = match c.cancel(&id).await {
                        Ok(job) => job.status.to_string(),
                        Err(e) => e.to_string(),
                    };
                    return Err(ToolError(format!("the call was cancelled; job {id}: {status}")));
                }
                r = c.wait(&id, PROGRESS_PERIOD) => r.map_err(|e| call_error(c, "jobs.wait", e))?,
            };
            if job.status.is_terminal() {
                break job;
            }
            if let Some(p) = progress.as_mut() {
                p.report(&job, started.elapsed()).await;
            }
        };
        let (out, err) = tools::tails(c, &id).await?;
        let (out, err) = (out.finish(), err.finish());
        let artifacts = c.artifacts(&id).await.map_err(|e| call_error(c, "artifacts.list", e))?;
        Ok(RunJobOutput {
            job_id: job.id,
            status: job.status,
            exit_code: job.exit_code,
            error: job.error,
            stdout_tail: out.text,
            stderr_tail: err.text,
            stdout_truncated: out.truncated,
            stderr_truncated: err.truncated,
            artifacts,
            progress: job.progress,
        })
    }
}

/// Sends `notifications/progress` for one request.
#[derive(Debug)]
pub struct Progress {
    peer: Peer<RoleServer>,
    token: ProgressToken,
    /// The last value sent: MCP wants each notification's value to be larger.
    last: Option<f64>,
}

impl Progress {
    /// Reports how far `job` has come: its own progress when it has reported any,
    /// else the whole seconds it has been waited for.
    async fn report(&mut self, job: &Job, elapsed: Duration) {
        let (value, total, message) = progress_of(job, elapsed);
        if self.last.is_some_and(|last| value <= last) {
            return;
        }
        self.last = Some(value);
        let mut param = ProgressNotificationParam::new(self.token.clone(), value).with_message(message);
        if let Some(t) = total {
            param = param.with_total(t);
        }
        // A client that went away is noticed by the wait loop's cancellation.
        let _ = self.peer.notify_progress(param).await;
    }
}

/// A progress notification's value, total and message for `job`, waited for `elapsed`.
fn progress_of(job: &Job, elapsed: Duration) -> (f64, Option<f64>, String) {
    let secs = elapsed.as_secs();
    let (value, total, detail) = match &job.progress {
        Some(p) => {
            (p.done as f64, p.total.map(|t| t as f64), p.message.clone().unwrap_or_else(|| format!("{} done", p.done)))
        }
        None => (secs as f64, None, format!("{secs} s")),
    };
    (value, total, format!("job {} {}: {detail}", job.id, job.status))
}

impl ServerHandler for JobhostMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("jobhost", jobhost_model::VERSION))
            .with_instructions(
                "Runs jobs as sandboxed WebAssembly components on a jobhost server. \
                 list_plugins shows what can run; run_job runs one and waits for it; \
                 submit_job + job_status/job_logs for long jobs; upload_file gives a job \
                 files at /input; read_artifact reads what it left in /output.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(tool_list()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let progress =
            context.meta.get_progress_token().map(|token| Progress { peer: context.peer.clone(), token, last: None });
        match self.dispatch(&request.name, request.arguments, progress, context.ct.clone()).await {
            Some(result) => Ok(result.into()),
            None => Err(McpError::invalid_params(format!("unknown tool {:?}", request.name), None)),
        }
    }
}

/// A tool's outcome as MCP has it: the output as `structuredContent` plus a text
/// block, or `isError` with the message.
fn respond<O: ToolOutput>(outcome: Result<O, ToolError>) -> CallToolResult {
    let out = match outcome {
        Ok(out) => out,
        Err(e) => return CallToolResult::error(vec![ContentBlock::text(e.0)]),
    };
    match serde_json::to_value(&out) {
        Ok(value) => {
            let mut result = CallToolResult::structured(value);
            result.content = vec![ContentBlock::text(out.text())];
            result
        }
        Err(e) => CallToolResult::error(vec![ContentBlock::text(format!("encoding the result: {e}"))]),
    }
}

/// Every tool, with its schemas.
pub fn tool_list() -> Vec<Tool> {
    let read_only = ToolAnnotations::new().read_only(true).open_world(false);
    let acts = ToolAnnotations::new().read_only(false).destructive(false).open_world(false);
    vec![
        tool::<JobInput, RunJobOutput>(
            "run_job",
            "Run an installed component as a sandboxed job and wait for it to end. Returns its status, \
             exit code, the end of its stdout and stderr, and its artifacts. Sends progress while it \
             runs; cancelling the call cancels the job.",
            acts.clone(),
        ),
        tool::<JobInput, jobhost_model::Submitted>(
            "submit_job",
            "Queue a job and return at once (follow it with job_status and job_logs).",
            acts.clone(),
        ),
        tool::<JobIdInput, Job>(
            "job_status",
            "A job's current record: status, exit code, progress, error.",
            read_only.clone(),
        ),
        tool::<JobLogsInput, jobhost_model::LogPage>(
            "job_logs",
            "A page of a job's output chunks (stdout, stderr, log, system), from since_seq on.",
            read_only.clone(),
        ),
        tool::<JobIdInput, Job>(
            "cancel_job",
            "Cancel a pending or running job.",
            ToolAnnotations::new().read_only(false).destructive(true).idempotent(false).open_world(false),
        ),
        tool::<UploadFileInput, tools::UploadFileOutput>(
            "upload_file",
            "Upload a file for jobs to read at /input; pass the returned files_id to run_job.",
            acts.clone(),
        ),
        tool::<ReadArtifactInput, tools::ReadArtifactOutput>(
            "read_artifact",
            "Read (part of) a file a job left in /output.",
            read_only.clone(),
        ),
        tool::<PullModelInput, jobhost_model::Submitted>(
            "pull_model",
            "Start downloading a model from the configured hub; returns the pull job.",
            ToolAnnotations::new().read_only(false).destructive(false).open_world(true),
        ),
        tool::<jobhost_model::StartRun, jobhost_model::StartedRun>(
            "start_workflow",
            "Start a run of a workflow (a DAG of steps whose tasks are jobs) with params; returns the run \
             (follow it with workflow_status).",
            acts.clone(),
        ),
        tool::<tools::RunIdInput, jobhost_model::Run>(
            "workflow_status",
            "A workflow run: its status, and each step with its tasks (status, attempt, job id, error).",
            read_only.clone(),
        ),
        tool::<NoInput, jobhost_model::PluginList>(
            "list_plugins",
            "The components installed on the server.",
            read_only,
        ),
    ]
}

fn tool<I: JsonSchema, O: JsonSchema>(
    name: &'static str,
    description: &'static str,
    annotations: ToolAnnotations,
) -> Tool {
    let input = SchemaSettings::draft2020_12().for_deserialize().into_generator().into_root_schema_for::<I>();
    let output = SchemaSettings::draft2020_12().for_serialize().into_generator().into_root_schema_for::<O>();
    Tool::new(name, description, object(input.into()))
        .with_raw_output_schema(object(output.into()))
        .with_annotations(annotations)
}

fn object(schema: Value) -> Arc<JsonObject> {
    Arc::new(match schema {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_the_jobs_own_else_the_seconds_it_has_run() {
        let mut job: Job = serde_json::from_value(serde_json::json!({
            "id": "job_1", "user_id": "admin", "kind": "wasm", "plugin": "p", "plugin_digest": "sha256:0",
            "status": "running", "args": [], "env": {}, "input": null, "labels": {}, "priority": 0,
            "cpus": 1, "memory_mb": 256, "timeout_s": 600, "client_job_id": null, "attempt": 1,
            "max_attempts": 1, "exit_code": null, "error": null, "progress": null,
            "created_at": "2026-01-01T00:00:00Z", "started_at": null, "completed_at": null,
        }))
        .unwrap();
        assert_eq!(progress_of(&job, Duration::from_millis(3500)), (3.0, None, "job job_1 running: 3 s".into()));
        job.progress =
            Some(jobhost_model::Progress { done: 40, total: Some(100), message: Some("downloading".into()) });
        assert_eq!(
            progress_of(&job, Duration::from_secs(9)),
            (40.0, Some(100.0), "job job_1 running: downloading".into())
        );
    }

    #[tokio::test]
    async fn every_listed_tool_is_dispatched_and_has_object_schemas() {
        // Nothing listens on port 9: each tool fails with an isError result, but none
        // is unknown.
        let mcp = JobhostMcp::new(Client::new("http://127.0.0.1:9").unwrap());
        for tool in tool_list() {
            assert_eq!(tool.input_schema.get("type"), Some(&Value::from("object")), "{}", tool.name);
            let out = tool.output_schema.clone().unwrap();
            assert_eq!(out.get("type"), Some(&Value::from("object")), "{}", tool.name);
            let result = mcp.dispatch(&tool.name, None, None, CancellationToken::new()).await;
            let result = result.unwrap_or_else(|| panic!("{} is listed but not dispatched", tool.name));
            assert_eq!(result.is_error, Some(true), "{}", tool.name);
        }
        assert!(mcp.dispatch("no_such_tool", None, None, CancellationToken::new()).await.is_none());
    }
}

//! The JSON-RPC 2.0 server (jsonrpsee): HTTP POST and WebSocket on one port, batches
//! allowed. This is the only place that knows jsonrpsee's server types.
//!
//! Each method parses its params into a typed request (unknown fields refused, a
//! wrongly typed field named by its path), calls the domain, and maps the domain's
//! error to one JSON-RPC error code with a stable `data.kind` — in [`to_rpc_error`],
//! and nowhere else. Methods are registered through the [`Api`] table (`api.rs`),
//! which also builds the `rpc.discover` document from the same types.

pub mod api;

use crate::jobs::model::{Artifact, Job, JobEvent, JobStatus, Plugin};
use crate::jobs::{self, Caller, JobPage, Jobs, LogPage, ResourceUsage, SubmitRequest, Submitted};
use crate::plugins::Plugins;
pub use api::Api;
use base64::Engine as _;
use jsonrpsee::server::{
    BatchRequestConfig, PendingSubscriptionSink, RpcModule, Server, ServerConfig, ServerHandle, SubscriptionMessage,
};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The largest request body accepted: a component travels base64-encoded in
/// `plugins.install`, so this bounds the size of an installable component (~48 MiB).
pub const MAX_REQUEST_BODY: u32 = 64 << 20;
/// Most calls in one batch.
pub const MAX_BATCH: u32 = 1000;
/// Most connections at once.
pub const MAX_CONNECTIONS: u32 = 1024;

/// `artifacts.read` without `length`.
pub const DEFAULT_READ: u64 = 1 << 20;
/// The most one `artifacts.read` returns (base64 makes it a third larger on the wire).
pub const MAX_READ: u64 = 16 << 20;

/// JSON-RPC error codes by kind (`data.kind`). Standard codes where JSON-RPC has one.
pub mod codes {
    /// `invalid_params`.
    pub const INVALID_PARAMS: i32 = -32602;
    /// `internal`.
    pub const INTERNAL: i32 = -32603;
    /// `not_found`.
    pub const NOT_FOUND: i32 = -32001;
    /// `conflict`.
    pub const CONFLICT: i32 = -32002;
    /// `unauthorized`.
    pub const UNAUTHORIZED: i32 = -32003;
    /// `forbidden`.
    pub const FORBIDDEN: i32 = -32004;
    /// `limit_exceeded`.
    pub const LIMIT_EXCEEDED: i32 = -32005;
    /// `unavailable`.
    pub const UNAVAILABLE: i32 = -32006;
}

/// What every method handler can reach.
#[derive(Debug)]
pub struct Context {
    /// The jobs domain.
    pub jobs: Jobs,
    /// Installed components.
    pub plugins: Plugins,
    /// The caller every request acts as (the local admin until tokens exist).
    pub caller: Caller,
}

/// A running RPC server.
#[derive(Debug)]
pub struct RpcServer {
    /// Where it listens.
    pub local_addr: SocketAddr,
    /// Stops it.
    pub handle: ServerHandle,
}

/// Binds `listen` and serves the API.
pub async fn serve(listen: SocketAddr, ctx: Context) -> anyhow::Result<RpcServer> {
    let config = ServerConfig::builder()
        .max_request_body_size(MAX_REQUEST_BODY)
        .max_response_body_size(MAX_REQUEST_BODY)
        .max_connections(MAX_CONNECTIONS)
        .set_batch_request_config(BatchRequestConfig::Limit(MAX_BATCH))
        .build();
    let server = Server::builder().set_config(config).build(listen).await?;
    let local_addr = server.local_addr()?;
    let handle = server.start(module(ctx)?);
    Ok(RpcServer { local_addr, handle })
}

/// Every method of the API, registered on one module through the [`Api`] table (which
/// also builds the `rpc.discover` document from the same types).
pub fn module(ctx: Context) -> anyhow::Result<RpcModule<Context>> {
    let mut api = Api::new(ctx);
    api.method::<Empty, Health, _, _>(
        "system.health",
        "Whether the server answers, and its version.",
        |_, _, _| async { Ok(Health { status: "ok".into(), version: crate::VERSION.into() }) },
    )?;

    api.method::<InstallRequest, Plugin, _, _>(
        "plugins.install",
        "Installs a component (a `job`-world plugin or a WASI command) under a name.",
        |req, ctx, _| async move { ctx.plugins.install(&req.name, &req.wasm_base64).await.map_err(to_rpc_error) },
    )?;
    api.method::<Empty, PluginList, _, _>("plugins.list", "Installed components.", |_, ctx, _| async move {
        let plugins = ctx.plugins.list().await.map_err(to_rpc_error)?;
        Ok(PluginList { plugins })
    })?;

    api.method::<SubmitRequest, Submitted, _, _>(
        "jobs.submit",
        "Records and queues a job (or returns the live one with the same client_job_id).",
        |req, ctx, _| async move { ctx.jobs.submit(&ctx.caller, req).await.map_err(to_rpc_error) },
    )?;
    api.method::<IdRequest, Job, _, _>("jobs.get", "One job.", |req, ctx, _| async move {
        ctx.jobs.get(&ctx.caller, &req.id).await.map_err(to_rpc_error)
    })?;
    api.method::<ListRequest, JobPage, _, _>(
        "jobs.list",
        "Jobs, newest first, a page at a time.",
        |req, ctx, _| async move {
            ctx.jobs.list(&ctx.caller, req.status, req.cursor, req.limit).await.map_err(to_rpc_error)
        },
    )?;
    api.method::<WaitRequest, Job, _, _>(
        "jobs.wait",
        "The job once it has ended, or as it is when timeout_s runs out.",
        |req, ctx, _| async move {
            let timeout = match req.timeout_s {
                None => jobs::DEFAULT_WAIT,
                Some(t) if t.is_finite() && (0.0..=jobs::MAX_WAIT.as_secs_f64()).contains(&t) => {
                    Duration::from_secs_f64(t)
                }
                Some(_) => {
                    return Err(to_rpc_error(jobs::Error::invalid(
                        "timeout_s",
                        format!("must be between 0 and {}", jobs::MAX_WAIT.as_secs()),
                    )));
                }
            };
            ctx.jobs.wait(&ctx.caller, &req.id, timeout).await.map_err(to_rpc_error)
        },
    )?;
    api.method::<IdRequest, Job, _, _>("jobs.cancel", "Cancels a pending or running job.", |req, ctx, _| async move {
        ctx.jobs.cancel(&ctx.caller, &req.id).await.map_err(to_rpc_error)
    })?;
    api.method::<LogsRequest, LogPage, _, _>(
        "jobs.logs",
        "A page of a job's output chunks.",
        |req, ctx, _| async move {
            ctx.jobs.logs(&ctx.caller, &req.id, req.since_seq.unwrap_or(0), req.limit).await.map_err(to_rpc_error)
        },
    )?;
    api.method::<JobIdRequest, ArtifactList, _, _>(
        "artifacts.list",
        "The files a job left in /output.",
        |req, ctx, _| async move {
            let artifacts = ctx.jobs.artifacts(&ctx.caller, &req.job_id).await.map_err(to_rpc_error)?;
            Ok(ArtifactList { artifacts })
        },
    )?;

    api.method::<IdRequest, Job, _, _>(
        "jobs.cleanup",
        "Removes an ended job's files and frees its client_job_id.",
        |req, ctx, _| async move { ctx.jobs.cleanup(&ctx.caller, &req.id).await.map_err(to_rpc_error) },
    )?;
    api.method::<ReadArtifactRequest, ArtifactData, _, _>(
        "artifacts.read",
        "A range of one artifact's bytes, base64-encoded.",
        |req, ctx, _| async move {
            let length = req.length.unwrap_or(DEFAULT_READ);
            if length == 0 || length > MAX_READ {
                return Err(to_rpc_error(jobs::Error::invalid("length", format!("must be between 1 and {MAX_READ}"))));
            }
            let (data, eof) = ctx
                .jobs
                .read_artifact(&ctx.caller, &req.job_id, &req.name, req.offset.unwrap_or(0), length)
                .await
                .map_err(to_rpc_error)?;
            let data_base64 = base64::engine::general_purpose::STANDARD.encode(data);
            Ok(ArtifactData { data_base64, eof })
        },
    )?;
    api.method::<Empty, ResourceUsage, _, _>(
        "resources.usage",
        "What running jobs have declared, and the capacity.",
        |_, ctx, _| async move { ctx.jobs.usage().await.map_err(to_rpc_error) },
    )?;

    api.subscription::<SubscribeRequest, JobEvent, _, _>(
        "jobs.subscribe",
        "jobs.event",
        "jobs.unsubscribe",
        "Live events (status, progress, log, lagged) of one job, or of all the caller's jobs.",
        |req, pending, ctx, _| async move { subscribe(req, pending, ctx).await },
    )?;
    api.finish()
}

async fn subscribe(req: SubscribeRequest, pending: PendingSubscriptionSink, ctx: Arc<Context>) {
    let mut sub = match ctx.jobs.subscribe(&ctx.caller, req.id.as_deref()).await {
        Ok(s) => s,
        Err(e) => return pending.reject(to_rpc_error(e)).await,
    };
    let Ok(sink) = pending.accept().await else { return };
    loop {
        let ev = tokio::select! {
            ev = sub.next() => ev,
            _ = sink.closed() => return,
        };
        let Some(ev) = ev else { return };
        let Ok(raw) = serde_json::value::to_raw_value(&ev) else { return };
        if sink.send(SubscriptionMessage::from(raw)).await.is_err() || sub.ends_with(&ev) {
            return;
        }
    }
}

/// Parses named params into `T`. Missing params count as `{}`; positional params are
/// refused; a type error names the offending field by its path.
fn parse<T: DeserializeOwned>(params: &Params<'_>) -> Result<T, ErrorObjectOwned> {
    let value: serde_json::Value = match params.as_str() {
        None => serde_json::Value::Object(Default::default()),
        Some(text) => serde_json::from_str(text).map_err(|e| {
            to_rpc_error(jobs::Error::InvalidParams { message: format!("params are not valid JSON: {e}"), field: None })
        })?,
    };
    if !value.is_object() {
        return Err(to_rpc_error(jobs::Error::InvalidParams {
            message: "params must be an object of named parameters".into(),
            field: None,
        }));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde reports a missing or unknown field at the enclosing path ("."); the
        // field's own name is in its message.
        let field = if path == "." { field_from_message(&inner) } else { Some(path) };
        let message = match &field {
            Some(f) => format!("invalid params: {f}: {inner}"),
            None => format!("invalid params: {inner}"),
        };
        to_rpc_error(jobs::Error::InvalidParams { message, field })
    })
}

/// Pulls the field name out of serde's "missing field `x`" / "unknown field `x`".
fn field_from_message(msg: &str) -> Option<String> {
    let start = msg.find('`')? + 1;
    let len = msg[start..].find('`')?;
    Some(msg[start..start + len].to_owned())
}

/// The one mapping from domain errors to JSON-RPC errors.
pub fn to_rpc_error(e: jobs::Error) -> ErrorObjectOwned {
    use jobs::Error as E;
    let code = match &e {
        E::NotFound(_) => codes::NOT_FOUND,
        E::InvalidParams { .. } => codes::INVALID_PARAMS,
        E::Conflict(_) => codes::CONFLICT,
        E::Forbidden(_) => codes::FORBIDDEN,
        E::LimitExceeded(_) => codes::LIMIT_EXCEEDED,
        E::Unavailable(_) => codes::UNAVAILABLE,
        E::Internal(_) => codes::INTERNAL,
    };
    let data = match &e {
        E::InvalidParams { field: Some(field), .. } => serde_json::json!({ "kind": e.kind(), "field": field }),
        _ => serde_json::json!({ "kind": e.kind() }),
    };
    ErrorObjectOwned::owned(code, e.to_string(), Some(data))
}

/// `system.health` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    /// Always `ok` when the server answers.
    pub status: String,
    /// The server's version.
    pub version: String,
}

/// `plugins.list` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PluginList {
    /// Every installed component, by name.
    pub plugins: Vec<Plugin>,
}

/// `artifacts.list` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ArtifactList {
    /// The job's artifacts, by name.
    pub artifacts: Vec<Artifact>,
}

/// `artifacts.read` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ArtifactData {
    /// The bytes read, base64 (standard alphabet, padded).
    pub data_base64: String,
    /// Whether the read reached the end of the artifact.
    pub eof: bool,
}

/// No params.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct InstallRequest {
    /// 1–64 of `[a-z0-9._-]`, starting with a letter or digit.
    name: String,
    /// The component's wasm bytes, base64.
    wasm_base64: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct IdRequest {
    /// The job's id.
    id: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct JobIdRequest {
    /// The job's id.
    job_id: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReadArtifactRequest {
    /// The job's id.
    job_id: String,
    /// The artifact's name (its path under `/output`).
    name: String,
    /// First byte to read (default 0).
    #[serde(default)]
    offset: Option<u64>,
    /// Most bytes to read, 1 B–16 MiB (default 1 MiB).
    #[serde(default)]
    length: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListRequest {
    /// Only jobs with this status.
    #[serde(default)]
    status: Option<JobStatus>,
    /// The last id of the previous page.
    #[serde(default)]
    cursor: Option<String>,
    /// Page size, 1–1000 (default 100).
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct WaitRequest {
    /// The job's id.
    id: String,
    /// Longest wait, 0–3600 s (default 60).
    #[serde(default)]
    timeout_s: Option<f64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct LogsRequest {
    /// The job's id.
    id: String,
    /// First chunk to return, inclusive (default 0).
    #[serde(default)]
    since_seq: Option<u64>,
    /// Page size, 1–1000 (default 100).
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SubscribeRequest {
    /// One job's events; without it, all of the caller's jobs.
    #[serde(default)]
    id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrongly_typed_field_is_named() {
        let p = Params::new(Some(r#"{"plugin":"x","timeout_s":"soon"}"#));
        let e = parse::<SubmitRequest>(&p).err().map(|e| (e.code(), e.message().to_owned()));
        let (code, msg) = e.unwrap_or_default();
        assert_eq!(code, codes::INVALID_PARAMS);
        assert!(msg.contains("timeout_s"), "{msg}");
    }

    #[test]
    fn a_missing_field_is_named() {
        let p = Params::new(Some(r#"{}"#));
        let e = parse::<IdRequest>(&p).err();
        let data = e.and_then(|e| e.data().map(|d| d.get().to_owned())).unwrap_or_default();
        assert!(data.contains(r#""field":"id""#), "{data}");
    }

    /// A context over a fresh data dir, as the server builds it.
    async fn context(dir: &std::path::Path) -> Context {
        use crate::runtime::{Runtime, RuntimeConfig};
        let store = crate::store::Store::open(&dir.join("jobhost.db")).await.unwrap();
        let admin = store.ensure_user("admin", true).await.unwrap();
        let runtime = Arc::new(
            Runtime::new(RuntimeConfig {
                plugins_dir: dir.join("plugins"),
                max_instances: 1,
                max_memory_mb: 64,
                max_log_bytes: 1 << 20,
                max_output_bytes: 1 << 20,
                max_open_resources: 64,
                max_wasm_stack: 1 << 20,
            })
            .unwrap(),
        );
        let jobs = Jobs::new(store.clone(), jobs::Limits::default(), dir.join("jobs"));
        Context { jobs, plugins: Plugins::new(store, runtime), caller: Caller { user_id: admin, is_admin: true } }
    }

    /// The document `rpc.discover` returns, from a module over a fresh context.
    async fn discover(module: &RpcModule<Context>) -> serde_json::Value {
        module.call("rpc.discover", jsonrpsee::rpc_params![]).await.unwrap()
    }

    #[tokio::test]
    async fn every_registered_method_is_in_the_openrpc_document() {
        let dir = tempfile::tempdir().unwrap();
        let module = module(context(dir.path()).await).unwrap();
        let doc = discover(&module).await;
        let documented: std::collections::BTreeSet<String> =
            doc["methods"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap().to_owned()).collect();
        let registered: std::collections::BTreeSet<String> = module.method_names().map(str::to_owned).collect();
        let missing: Vec<_> = registered.difference(&documented).collect();
        assert!(missing.is_empty(), "registered but not in rpc.discover: {missing:?}");
        let phantom: Vec<_> = documented.difference(&registered).collect();
        assert!(phantom.is_empty(), "in rpc.discover but not registered: {phantom:?}");
        assert_eq!(documented.len(), doc["methods"].as_array().unwrap().len(), "a method is listed twice");
    }

    #[tokio::test]
    async fn the_document_describes_params_and_results_from_the_rust_types() {
        let dir = tempfile::tempdir().unwrap();
        let doc = discover(&module(context(dir.path()).await).unwrap()).await;
        assert_eq!(doc["openrpc"], api::OPENRPC_VERSION);
        let method =
            |name: &str| doc["methods"].as_array().unwrap().iter().find(|m| m["name"] == name).cloned().unwrap();
        let submit = method("jobs.submit");
        let params: Vec<&str> =
            submit["params"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        for field in ["plugin", "args", "env", "input", "files_id", "timeout_s", "client_job_id"] {
            assert!(params.contains(&field), "jobs.submit lacks param {field}: {params:?}");
        }
        let plugin = submit["params"].as_array().unwrap().iter().find(|p| p["name"] == "plugin").unwrap();
        assert_eq!(plugin["required"], true);
        assert_eq!(submit["result"]["schema"]["$ref"], "#/components/schemas/Submitted");
        let job = &doc["components"]["schemas"]["Job"];
        for field in ["id", "status", "exit_code", "progress", "created_at"] {
            assert!(job["properties"].get(field).is_some(), "Job schema lacks {field}");
        }
        let statuses = &doc["components"]["schemas"]["JobStatus"];
        assert!(statuses.to_string().contains("timed_out"), "{statuses}");
        assert_eq!(doc["components"]["errors"]["not_found"]["code"], codes::NOT_FOUND);
        let sub = method("jobs.subscribe");
        assert_eq!(sub["x-subscription"]["notification"], "jobs.event");
        // A method without params takes none, and refuses any.
        assert_eq!(method("system.health")["params"], serde_json::json!([]));
    }

    #[test]
    fn positional_params_are_refused() {
        let p = Params::new(Some(r#"["x"]"#));
        assert!(parse::<IdRequest>(&p).is_err());
    }
}

//! The JSON-RPC 2.0 server (jsonrpsee): HTTP POST and WebSocket on one port, batches
//! allowed. This is the only place that knows jsonrpsee's server types.
//!
//! Each method parses its params into a typed request (unknown fields refused, a
//! wrongly typed field named by its path), calls the domain, and maps the domain's
//! error to one JSON-RPC error code with a stable `data.kind` — in [`to_rpc_error`],
//! and nowhere else. Methods are registered through the [`Api`] table (`api.rs`),
//! which also builds the `rpc.discover` document from the same types.
//!
//! Who calls is settled in front of jsonrpsee, by the HTTP layer in [`http`]: each
//! method names the scope it needs ([`Access`]) and gets the caller through
//! [`authorize`], which also applies the per-token request rate.

pub mod api;
mod batch;
pub mod http;
mod rate;

use crate::auth::Auth;
use crate::auth::{NewToken, Scope, TokenInfo, User};
use crate::jobs::model::{Artifact, Job, JobEvent, JobStatus, Plugin};
use crate::jobs::{self, Caller, JobPage, Jobs, LogPage, ResourceUsage, SubmitRequest, Submitted};
use crate::models::Models;
use crate::plugins::Plugins;
use crate::scheduler::sweeper::{GcReport, Sweeper};
use crate::uploads::{PutResult, Upload, Uploads};
pub use api::{Access, Api};
use base64::Engine as _;
use jsonrpsee::Extensions;
use jsonrpsee::server::middleware::rpc::RpcServiceBuilder;
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

mod models;

/// Limits of the transport, each refused with a clear error when passed.
#[derive(Debug, Clone)]
pub struct TransportLimits {
    /// The largest request body (and response) in bytes. A component travels
    /// base64-encoded in `plugins.install`, so this bounds an installable component.
    pub max_body_bytes: u32,
    /// Most calls in one batch.
    pub max_batch: u32,
    /// Most connections at once.
    pub max_connections: u32,
    /// Calls per second each token may make, sustained.
    pub rate_per_s: u32,
    /// Calls a token may make in a burst above the sustained rate.
    pub rate_burst: u32,
}

impl Default for TransportLimits {
    fn default() -> Self {
        TransportLimits {
            max_body_bytes: 64 << 20,
            max_batch: 1000,
            max_connections: 1024,
            rate_per_s: 5_000,
            rate_burst: 50_000,
        }
    }
}

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
    /// Uploads.
    pub uploads: Uploads,
    /// Model pulls and the model cache.
    pub models: Models,
    /// Users and tokens.
    pub auth: Auth,
    /// Retention and expiry, for `system.gc`.
    pub sweeper: Sweeper,
    /// Per-token request rates.
    pub rate: rate::RateLimiter,
}

impl Context {
    /// The context of a server with `limits`.
    pub fn new(
        jobs: Jobs,
        plugins: Plugins,
        uploads: Uploads,
        auth: Auth,
        sweeper: Sweeper,
        models: Models,
        limits: &TransportLimits,
    ) -> Context {
        let rate = rate::RateLimiter::new(limits.rate_per_s, limits.rate_burst);
        Context { jobs, plugins, uploads, models, auth, sweeper, rate }
    }
}

/// The caller of a request, if it may act with `scope` and is within its rate.
pub fn authorize(ctx: &Context, ext: &Extensions, scope: Scope) -> Result<Caller, ErrorObjectOwned> {
    let Some(caller) = ext.get::<Caller>() else {
        return Err(to_rpc_error(jobs::Error::Unauthorized(
            "this call needs an `Authorization: Bearer <token>` header".into(),
        )));
    };
    if !caller.has(scope) {
        return Err(to_rpc_error(jobs::Error::Forbidden(format!(
            "this token lacks the {:?} scope this call needs",
            scope.as_str()
        ))));
    }
    if let Some(token) = &caller.token_id
        && !ctx.rate.allow(token)
    {
        return Err(to_rpc_error(jobs::Error::LimitExceeded(format!(
            "request rate: this token may make {} calls per second",
            ctx.rate.per_s()
        ))));
    }
    Ok(caller.clone())
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
pub async fn serve(listen: SocketAddr, ctx: Context, limits: &TransportLimits) -> anyhow::Result<RpcServer> {
    let config = ServerConfig::builder()
        .max_request_body_size(limits.max_body_bytes)
        .max_response_body_size(limits.max_body_bytes)
        .max_connections(limits.max_connections)
        .set_batch_request_config(BatchRequestConfig::Limit(limits.max_batch))
        .build();
    let layer = http::HttpLayer::new(http::HttpContext {
        auth: ctx.auth.clone(),
        uploads: ctx.uploads.clone(),
        jobs: ctx.jobs.clone(),
    });
    let max_batch_answer = limits.max_body_bytes as usize;
    let server = Server::builder()
        .set_config(config)
        .set_http_middleware(tower::ServiceBuilder::new().layer(layer))
        .set_rpc_middleware(
            RpcServiceBuilder::new().layer_fn(move |service| batch::ConcurrentBatch::new(service, max_batch_answer)),
        )
        .build(listen)
        .await?;
    let local_addr = server.local_addr()?;
    let handle = server.start(module(ctx)?);
    Ok(RpcServer { local_addr, handle })
}

/// Every method of the API, registered on one module through the [`Api`] table (which
/// also builds the `rpc.discover` document from the same types).
pub fn module(ctx: Context) -> anyhow::Result<RpcModule<Context>> {
    use Access::{ReadOrSubmit, Scope as Needs};
    use Scope::{Admin, Read, Submit};
    let mut api = Api::new(ctx);
    api.public_method::<Empty, Health, _, _>(
        "system.health",
        "Whether the server answers, and its version.",
        |_, _| async { Ok(Health { status: "ok".into(), version: crate::VERSION.into() }) },
    )?;

    api.method::<InstallRequest, Plugin, _, _>(
        "plugins.install",
        "Installs a component (a `job`-world plugin or a WASI command) under a name.",
        Needs(Admin),
        |req, _, ctx| async move { ctx.plugins.install(&req.name, &req.wasm_base64).await.map_err(to_rpc_error) },
    )?;
    api.method::<Empty, PluginList, _, _>(
        "plugins.list",
        "Installed components.",
        Needs(Read),
        |_, _, ctx| async move {
            let plugins = ctx.plugins.list().await.map_err(to_rpc_error)?;
            Ok(PluginList { plugins })
        },
    )?;

    api.method::<SubmitRequest, Submitted, _, _>(
        "jobs.submit",
        "Records and queues a job (or returns the live one with the same client_job_id).",
        Needs(Submit),
        |req, caller, ctx| async move { ctx.jobs.submit(&caller, req).await.map_err(to_rpc_error) },
    )?;
    api.method::<IdRequest, Job, _, _>("jobs.get", "One job.", Needs(Read), |req, caller, ctx| async move {
        ctx.jobs.get(&caller, &req.id).await.map_err(to_rpc_error)
    })?;
    api.method::<ListRequest, JobPage, _, _>(
        "jobs.list",
        "Jobs, newest first, a page at a time.",
        Needs(Read),
        |req, caller, ctx| async move {
            ctx.jobs.list(&caller, req.status, req.cursor, req.limit).await.map_err(to_rpc_error)
        },
    )?;
    api.method::<WaitRequest, Job, _, _>(
        "jobs.wait",
        "The job once it has ended, or as it is when timeout_s runs out.",
        Needs(Read),
        |req, caller, ctx| async move {
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
            ctx.jobs.wait(&caller, &req.id, timeout).await.map_err(to_rpc_error)
        },
    )?;
    api.method::<IdRequest, Job, _, _>(
        "jobs.cancel",
        "Cancels a pending or running job.",
        Needs(Submit),
        |req, caller, ctx| async move { ctx.jobs.cancel(&caller, &req.id).await.map_err(to_rpc_error) },
    )?;
    api.method::<LogsRequest, LogPage, _, _>(
        "jobs.logs",
        "A page of a job's output chunks.",
        Needs(Read),
        |req, caller, ctx| async move {
            ctx.jobs.logs(&caller, &req.id, req.since_seq.unwrap_or(0), req.limit).await.map_err(to_rpc_error)
        },
    )?;
    api.method::<JobIdRequest, ArtifactList, _, _>(
        "artifacts.list",
        "The files a job left in /output.",
        Needs(Read),
        |req, caller, ctx| async move {
            let artifacts = ctx.jobs.artifacts(&caller, &req.job_id).await.map_err(to_rpc_error)?;
            Ok(ArtifactList { artifacts })
        },
    )?;

    api.method::<IdRequest, Job, _, _>(
        "jobs.cleanup",
        "Removes an ended job's files and frees its client_job_id.",
        Needs(Submit),
        |req, caller, ctx| async move { ctx.jobs.cleanup(&caller, &req.id).await.map_err(to_rpc_error) },
    )?;
    api.method::<ReadArtifactRequest, ArtifactData, _, _>(
        "artifacts.read",
        "A range of one artifact's bytes, base64-encoded.",
        Needs(Read),
        |req, caller, ctx| async move {
            let length = req.length.unwrap_or(DEFAULT_READ);
            if length == 0 || length > MAX_READ {
                return Err(to_rpc_error(jobs::Error::invalid("length", format!("must be between 1 and {MAX_READ}"))));
            }
            let (data, eof) = ctx
                .jobs
                .read_artifact(&caller, &req.job_id, &req.name, req.offset.unwrap_or(0), length)
                .await
                .map_err(to_rpc_error)?;
            let data_base64 = base64::engine::general_purpose::STANDARD.encode(data);
            Ok(ArtifactData { data_base64, eof })
        },
    )?;
    api.method::<Empty, ResourceUsage, _, _>(
        "resources.usage",
        "What running jobs have declared, and the capacity.",
        Needs(Read),
        |_, _, ctx| async move { ctx.jobs.usage().await.map_err(to_rpc_error) },
    )?;

    models::register(&mut api)?;

    api.method::<Empty, Upload, _, _>(
        "uploads.create",
        "Starts an upload (files go in with uploads.put or over HTTP).",
        Needs(Submit),
        |_, caller, ctx| async move { ctx.uploads.create(&caller).await.map_err(to_rpc_error) },
    )?;
    api.method::<PutRequest, PutResult, _, _>(
        "uploads.put",
        "Writes (part of) one file of an open upload.",
        Needs(Submit),
        |req, caller, ctx| async move {
            let data = base64::engine::general_purpose::STANDARD
                .decode(req.data_base64.trim())
                .map_err(|e| to_rpc_error(jobs::Error::invalid("data_base64", format!("is not valid base64: {e}"))))?;
            ctx.uploads.put(&caller, &req.id, &req.path, data, req.offset).await.map_err(to_rpc_error)
        },
    )?;
    api.method::<IdRequest, Upload, _, _>(
        "uploads.finalize",
        "Seals an upload so jobs can use it as files_id.",
        Needs(Submit),
        |req, caller, ctx| async move { ctx.uploads.finalize(&caller, &req.id).await.map_err(to_rpc_error) },
    )?;
    api.method::<IdRequest, Upload, _, _>("uploads.get", "One upload.", Needs(Read), |req, caller, ctx| async move {
        ctx.uploads.get(&caller, &req.id).await.map_err(to_rpc_error)
    })?;

    api.method::<CreateUserRequest, User, _, _>(
        "users.create",
        "Creates a user.",
        Needs(Admin),
        |req, caller, ctx| async move {
            ctx.auth.create_user(&caller, &req.name, req.is_admin).await.map_err(to_rpc_error)
        },
    )?;
    api.method::<Empty, UserList, _, _>(
        "users.list",
        "Users the caller may see.",
        Needs(Read),
        |_, caller, ctx| async move {
            let users = ctx.auth.list_users(&caller).await.map_err(to_rpc_error)?;
            Ok(UserList { users })
        },
    )?;
    // Any scope will do for tokens.*: what a token may do is checked against the caller's.
    api.method::<CreateTokenRequest, NewToken, _, _>(
        "tokens.create",
        "Mints an API token; its secret is shown only in this answer.",
        ReadOrSubmit,
        |req, caller, ctx| async move {
            ctx.auth
                .create_token(&caller, req.user.as_deref(), &req.scopes, req.expires_in_s)
                .await
                .map_err(to_rpc_error)
        },
    )?;
    api.method::<Empty, TokenList, _, _>(
        "tokens.list",
        "The caller's tokens (all tokens for an admin), without secrets.",
        ReadOrSubmit,
        |_, caller, ctx| async move {
            let tokens = ctx.auth.list_tokens(&caller).await.map_err(to_rpc_error)?;
            Ok(TokenList { tokens })
        },
    )?;
    api.method::<IdRequest, TokenInfo, _, _>(
        "tokens.revoke",
        "Revokes a token.",
        ReadOrSubmit,
        |req, caller, ctx| async move { ctx.auth.revoke_token(&caller, &req.id).await.map_err(to_rpc_error) },
    )?;
    api.method::<Empty, GcReport, _, _>(
        "system.gc",
        "Sweeps now: expires stale uploads, cleans jobs past the retention, prunes their logs.",
        Needs(Admin),
        |_, _, ctx| async move { ctx.sweeper.sweep_now().await.map_err(to_rpc_error) },
    )?;

    api.subscription::<SubscribeRequest, JobEvent, _, _>(
        "jobs.subscribe",
        "jobs.event",
        "jobs.unsubscribe",
        "Live events (status, progress, log, lagged) of one job, or of all the caller's jobs.",
        Needs(Read),
        |req, caller, pending, ctx| async move { subscribe(req, caller, pending, ctx).await },
    )?;
    api.finish()
}

async fn subscribe(req: SubscribeRequest, caller: Caller, pending: PendingSubscriptionSink, ctx: Arc<Context>) {
    let mut sub = match ctx.jobs.subscribe(&caller, req.id.as_deref()).await {
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
    let (code, message, data) = error_parts(&e);
    ErrorObjectOwned::owned(code, message, Some(data))
}

/// The error as the JSON of a JSON-RPC error object, for answers made outside
/// jsonrpsee (the HTTP layer).
pub fn error_object(e: &jobs::Error) -> serde_json::Value {
    let (code, message, data) = error_parts(e);
    serde_json::json!({ "code": code, "message": message, "data": data })
}

fn error_parts(e: &jobs::Error) -> (i32, String, serde_json::Value) {
    use jobs::Error as E;
    let code = match e {
        E::NotFound(_) => codes::NOT_FOUND,
        E::InvalidParams { .. } => codes::INVALID_PARAMS,
        E::Conflict(_) => codes::CONFLICT,
        E::Unauthorized(_) => codes::UNAUTHORIZED,
        E::Forbidden(_) => codes::FORBIDDEN,
        E::LimitExceeded(_) => codes::LIMIT_EXCEEDED,
        E::Unavailable(_) => codes::UNAVAILABLE,
        E::Internal(_) => codes::INTERNAL,
    };
    let data = match e {
        E::InvalidParams { field: Some(field), .. } => serde_json::json!({ "kind": e.kind(), "field": field }),
        _ => serde_json::json!({ "kind": e.kind() }),
    };
    (code, e.to_string(), data)
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

/// `users.list` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct UserList {
    /// The users the caller may see.
    pub users: Vec<User>,
}

/// `tokens.list` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TokenList {
    /// The tokens, without their secrets.
    pub tokens: Vec<TokenInfo>,
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
struct PutRequest {
    /// The upload's id.
    id: String,
    /// The file's path under `/input` (relative, `/`-separated).
    path: String,
    /// The bytes, base64.
    data_base64: String,
    /// Where in the file they go (default 0: the file starts with them).
    #[serde(default)]
    offset: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateUserRequest {
    /// The user's name.
    name: String,
    /// Whether the user is an admin.
    #[serde(default)]
    is_admin: bool,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateTokenRequest {
    /// Whose token (default: the caller's own).
    #[serde(default)]
    user: Option<String>,
    /// What it may do.
    scopes: Vec<Scope>,
    /// Lifetime in seconds (default: no expiry).
    #[serde(default)]
    expires_in_s: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct IdRequest {
    /// The record's id (`job_…`, `upl_…`, `tok_…`).
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
                jobs_dir: dir.join("jobs"),
                max_instances: 1,
                max_memory_mb: 64,
                max_log_bytes: 1 << 20,
                max_output_bytes: 1 << 20,
                max_open_resources: 64,
                max_wasm_stack: 1 << 20,
            })
            .unwrap(),
        );
        let _ = admin;
        let jobs = Jobs::new(store.clone(), jobs::Limits::default(), dir.join("jobs"), dir.join("uploads"));
        let uploads = Uploads::new(store.clone(), crate::uploads::UploadLimits::default(), dir.join("uploads"));
        let sweeper = Sweeper {
            jobs: jobs.clone(),
            uploads: uploads.clone(),
            retention: Duration::from_secs(3600),
            every: Duration::from_secs(3600),
        };
        let auth = Auth::new(store.clone());
        let plugins = Plugins::new(store, runtime);
        let models = crate::models::Models::new(
            jobs.clone(),
            plugins.clone(),
            crate::models::HubConfig::default(),
            dir.join("models"),
        );
        Context::new(jobs, plugins, uploads, auth, sweeper, models, &TransportLimits::default())
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

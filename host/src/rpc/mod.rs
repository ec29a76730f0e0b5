//! The JSON-RPC 2.0 server (jsonrpsee): HTTP POST and WebSocket on one port, batches
//! allowed. This is the only place that knows jsonrpsee's server types.
//!
//! Each method parses its params into a typed request (unknown fields refused, a
//! wrongly typed field named by its path), calls the domain, and maps the domain's
//! error to one JSON-RPC error code with a stable `data.kind` — in [`to_rpc_error`],
//! and nowhere else.
//!
//! Who calls is settled in front of jsonrpsee, by the HTTP layer in [`http`]: each
//! method names the scope it needs and gets the caller through [`authorize`], which
//! also applies the per-token request rate.

pub mod http;
mod rate;

use crate::auth::{Auth, Scope};
use crate::jobs::model::JobStatus;
use crate::jobs::{self, Caller, Jobs, SubmitRequest};
use crate::models::Models;
use crate::plugins::Plugins;
use crate::scheduler::sweeper::Sweeper;
use crate::uploads::Uploads;
use base64::Engine as _;
use jsonrpsee::Extensions;
use jsonrpsee::server::{
    BatchRequestConfig, PendingSubscriptionSink, RpcModule, Server, ServerConfig, ServerHandle, SubscriptionMessage,
};
use jsonrpsee::types::{ErrorObjectOwned, Params};
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
    let server = Server::builder()
        .set_config(config)
        .set_http_middleware(tower::ServiceBuilder::new().layer(layer))
        .build(listen)
        .await?;
    let local_addr = server.local_addr()?;
    let handle = server.start(module(ctx)?);
    Ok(RpcServer { local_addr, handle })
}

/// Every method of the API, registered on one module.
pub fn module(ctx: Context) -> anyhow::Result<RpcModule<Context>> {
    let mut m = RpcModule::new(ctx);
    m.register_method("system.health", |_, _, _| {
        Ok::<_, ErrorObjectOwned>(Health { status: "ok".into(), version: crate::VERSION.into() })
    })?;

    m.register_async_method("plugins.install", |p, ctx, ext| async move {
        authorize(&ctx, &ext, Scope::Admin)?;
        let req: InstallRequest = parse(&p)?;
        let plugin = ctx.plugins.install(&req.name, &req.wasm_base64).await.map_err(to_rpc_error)?;
        Ok::<_, ErrorObjectOwned>(serde_json::json!({
            "name": plugin.name, "digest": plugin.digest, "kind": plugin.kind,
            "size_bytes": plugin.size_bytes, "installed_at": plugin.installed_at,
        }))
    })?;
    m.register_async_method("plugins.list", |p, ctx, ext| async move {
        authorize(&ctx, &ext, Scope::Read)?;
        let _: Empty = parse(&p)?;
        let plugins = ctx.plugins.list().await.map_err(to_rpc_error)?;
        Ok::<_, ErrorObjectOwned>(serde_json::json!({ "plugins": plugins }))
    })?;

    m.register_async_method("jobs.submit", |p, ctx, ext| async move {
        let caller = authorize(&ctx, &ext, Scope::Submit)?;
        let req: SubmitRequest = parse(&p)?;
        ctx.jobs.submit(&caller, req).await.map_err(to_rpc_error)
    })?;
    m.register_async_method("jobs.get", |p, ctx, ext| async move {
        let caller = authorize(&ctx, &ext, Scope::Read)?;
        let req: IdRequest = parse(&p)?;
        ctx.jobs.get(&caller, &req.id).await.map_err(to_rpc_error)
    })?;
    m.register_async_method("jobs.list", |p, ctx, ext| async move {
        let caller = authorize(&ctx, &ext, Scope::Read)?;
        let req: ListRequest = parse(&p)?;
        ctx.jobs.list(&caller, req.status, req.cursor, req.limit).await.map_err(to_rpc_error)
    })?;
    m.register_async_method("jobs.wait", |p, ctx, ext| async move {
        let caller = authorize(&ctx, &ext, Scope::Read)?;
        let req: WaitRequest = parse(&p)?;
        let timeout = match req.timeout_s {
            None => jobs::DEFAULT_WAIT,
            Some(t) if t.is_finite() && (0.0..=jobs::MAX_WAIT.as_secs_f64()).contains(&t) => Duration::from_secs_f64(t),
            Some(_) => {
                return Err(to_rpc_error(jobs::Error::invalid(
                    "timeout_s",
                    format!("must be between 0 and {}", jobs::MAX_WAIT.as_secs()),
                )));
            }
        };
        ctx.jobs.wait(&caller, &req.id, timeout).await.map_err(to_rpc_error)
    })?;
    m.register_async_method("jobs.cancel", |p, ctx, ext| async move {
        let caller = authorize(&ctx, &ext, Scope::Submit)?;
        let req: IdRequest = parse(&p)?;
        ctx.jobs.cancel(&caller, &req.id).await.map_err(to_rpc_error)
    })?;
    m.register_async_method("jobs.logs", |p, ctx, ext| async move {
        let caller = authorize(&ctx, &ext, Scope::Read)?;
        let req: LogsRequest = parse(&p)?;
        ctx.jobs.logs(&caller, &req.id, req.since_seq.unwrap_or(0), req.limit).await.map_err(to_rpc_error)
    })?;
    m.register_async_method("artifacts.list", |p, ctx, ext| async move {
        let caller = authorize(&ctx, &ext, Scope::Read)?;
        let req: JobIdRequest = parse(&p)?;
        let artifacts = ctx.jobs.artifacts(&caller, &req.job_id).await.map_err(to_rpc_error)?;
        Ok::<_, ErrorObjectOwned>(serde_json::json!({ "artifacts": artifacts }))
    })?;

    m.register_async_method("jobs.cleanup", |p, ctx, ext| async move {
        let caller = authorize(&ctx, &ext, Scope::Submit)?;
        let req: IdRequest = parse(&p)?;
        ctx.jobs.cleanup(&caller, &req.id).await.map_err(to_rpc_error)
    })?;
    m.register_async_method("artifacts.read", |p, ctx, ext| async move {
        let caller = authorize(&ctx, &ext, Scope::Read)?;
        let req: ReadArtifactRequest = parse(&p)?;
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
        Ok::<_, ErrorObjectOwned>(serde_json::json!({ "data_base64": data_base64, "eof": eof }))
    })?;
    m.register_async_method("resources.usage", |p, ctx, ext| async move {
        authorize(&ctx, &ext, Scope::Read)?;
        let _: Empty = parse(&p)?;
        ctx.jobs.usage().await.map_err(to_rpc_error)
    })?;

    models::register(&mut m)?;

    m.register_async_method("uploads.create", |p, ctx, ext| async move {
        let caller = authorize(&ctx, &ext, Scope::Submit)?;
        let _: Empty = parse(&p)?;
        ctx.uploads.create(&caller).await.map_err(to_rpc_error)
    })?;
    m.register_async_method("uploads.put", |p, ctx, ext| async move {
        let caller = authorize(&ctx, &ext, Scope::Submit)?;
        let req: PutRequest = parse(&p)?;
        let data = base64::engine::general_purpose::STANDARD
            .decode(req.data_base64.trim())
            .map_err(|e| to_rpc_error(jobs::Error::invalid("data_base64", format!("is not valid base64: {e}"))))?;
        ctx.uploads.put(&caller, &req.id, &req.path, data, req.offset).await.map_err(to_rpc_error)
    })?;
    m.register_async_method("uploads.finalize", |p, ctx, ext| async move {
        let caller = authorize(&ctx, &ext, Scope::Submit)?;
        let req: IdRequest = parse(&p)?;
        ctx.uploads.finalize(&caller, &req.id).await.map_err(to_rpc_error)
    })?;
    m.register_async_method("uploads.get", |p, ctx, ext| async move {
        let caller = authorize(&ctx, &ext, Scope::Read)?;
        let req: IdRequest = parse(&p)?;
        ctx.uploads.get(&caller, &req.id).await.map_err(to_rpc_error)
    })?;

    m.register_async_method("users.create", |p, ctx, ext| async move {
        let caller = authorize(&ctx, &ext, Scope::Admin)?;
        let req: CreateUserRequest = parse(&p)?;
        ctx.auth.create_user(&caller, &req.name, req.is_admin).await.map_err(to_rpc_error)
    })?;
    m.register_async_method("users.list", |p, ctx, ext| async move {
        let caller = authorize(&ctx, &ext, Scope::Read)?;
        let _: Empty = parse(&p)?;
        let users = ctx.auth.list_users(&caller).await.map_err(to_rpc_error)?;
        Ok::<_, ErrorObjectOwned>(serde_json::json!({ "users": users }))
    })?;
    m.register_async_method("tokens.create", |p, ctx, ext| async move {
        // Any scope will do: what the new token may hold is checked against the caller's.
        let caller = authorize(&ctx, &ext, Scope::Read).or_else(|_| authorize(&ctx, &ext, Scope::Submit))?;
        let req: CreateTokenRequest = parse(&p)?;
        ctx.auth.create_token(&caller, req.user.as_deref(), &req.scopes, req.expires_in_s).await.map_err(to_rpc_error)
    })?;
    m.register_async_method("tokens.list", |p, ctx, ext| async move {
        let caller = authorize(&ctx, &ext, Scope::Read).or_else(|_| authorize(&ctx, &ext, Scope::Submit))?;
        let _: Empty = parse(&p)?;
        let tokens = ctx.auth.list_tokens(&caller).await.map_err(to_rpc_error)?;
        Ok::<_, ErrorObjectOwned>(serde_json::json!({ "tokens": tokens }))
    })?;
    m.register_async_method("tokens.revoke", |p, ctx, ext| async move {
        let caller = authorize(&ctx, &ext, Scope::Read).or_else(|_| authorize(&ctx, &ext, Scope::Submit))?;
        let req: IdRequest = parse(&p)?;
        ctx.auth.revoke_token(&caller, &req.id).await.map_err(to_rpc_error)
    })?;
    m.register_async_method("system.gc", |p, ctx, ext| async move {
        authorize(&ctx, &ext, Scope::Admin)?;
        let _: Empty = parse(&p)?;
        ctx.sweeper.sweep_now().await.map_err(to_rpc_error)
    })?;

    m.register_subscription("jobs.subscribe", "jobs.event", "jobs.unsubscribe", |p, pending, ctx, ext| async move {
        subscribe(p, pending, ctx, ext).await
    })?;
    Ok(m)
}

async fn subscribe(p: Params<'static>, pending: PendingSubscriptionSink, ctx: Arc<Context>, ext: Extensions) {
    let caller = match authorize(&ctx, &ext, Scope::Read) {
        Ok(c) => c,
        Err(e) => return pending.reject(e).await,
    };
    let req: SubscribeRequest = match parse(&p) {
        Ok(r) => r,
        Err(e) => return pending.reject(e).await,
    };
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    /// Always `ok` when the server answers.
    pub status: String,
    /// The server's version.
    pub version: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InstallRequest {
    name: String,
    wasm_base64: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutRequest {
    id: String,
    path: String,
    data_base64: String,
    #[serde(default)]
    offset: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUserRequest {
    name: String,
    #[serde(default)]
    is_admin: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTokenRequest {
    #[serde(default)]
    user: Option<String>,
    scopes: Vec<Scope>,
    #[serde(default)]
    expires_in_s: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdRequest {
    id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JobIdRequest {
    job_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadArtifactRequest {
    job_id: String,
    name: String,
    #[serde(default)]
    offset: Option<u64>,
    #[serde(default)]
    length: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListRequest {
    #[serde(default)]
    status: Option<JobStatus>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitRequest {
    id: String,
    #[serde(default)]
    timeout_s: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsRequest {
    id: String,
    #[serde(default)]
    since_seq: Option<u64>,
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeRequest {
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

    #[test]
    fn positional_params_are_refused() {
        let p = Params::new(Some(r#"["x"]"#));
        assert!(parse::<IdRequest>(&p).is_err());
    }
}

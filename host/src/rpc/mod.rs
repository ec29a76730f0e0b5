//! The JSON-RPC 2.0 server (jsonrpsee): HTTP POST and WebSocket on one port, batches
//! allowed. This is the only place that knows jsonrpsee's server types.
//!
//! Each method parses its params into a typed request (unknown fields refused, a
//! wrongly typed field named by its path), calls the domain, and maps the domain's
//! error to one JSON-RPC error code with a stable `data.kind` — in [`to_rpc_error`],
//! and nowhere else.

mod batch;

use crate::jobs::model::JobStatus;
use crate::jobs::{self, Caller, Jobs, SubmitRequest};
use crate::plugins::Plugins;
use base64::Engine as _;
use jsonrpsee::server::middleware::rpc::RpcServiceBuilder;
use jsonrpsee::server::{
    BatchRequestConfig, PendingSubscriptionSink, RpcModule, Server, ServerConfig, ServerHandle, SubscriptionMessage,
};
use jsonrpsee::types::{ErrorObjectOwned, Params};
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
    let batches =
        RpcServiceBuilder::new().layer_fn(|service| batch::ConcurrentBatch::new(service, MAX_REQUEST_BODY as usize));
    let server = Server::builder().set_config(config).set_rpc_middleware(batches).build(listen).await?;
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

    m.register_async_method("plugins.install", |p, ctx, _| async move {
        let req: InstallRequest = parse(&p)?;
        let plugin = ctx.plugins.install(&req.name, &req.wasm_base64).await.map_err(to_rpc_error)?;
        Ok::<_, ErrorObjectOwned>(serde_json::json!({
            "name": plugin.name, "digest": plugin.digest, "kind": plugin.kind,
            "size_bytes": plugin.size_bytes, "installed_at": plugin.installed_at,
        }))
    })?;
    m.register_async_method("plugins.list", |p, ctx, _| async move {
        let _: Empty = parse(&p)?;
        let plugins = ctx.plugins.list().await.map_err(to_rpc_error)?;
        Ok::<_, ErrorObjectOwned>(serde_json::json!({ "plugins": plugins }))
    })?;

    m.register_async_method("jobs.submit", |p, ctx, _| async move {
        let req: SubmitRequest = parse(&p)?;
        ctx.jobs.submit(&ctx.caller, req).await.map_err(to_rpc_error)
    })?;
    m.register_async_method("jobs.get", |p, ctx, _| async move {
        let req: IdRequest = parse(&p)?;
        ctx.jobs.get(&ctx.caller, &req.id).await.map_err(to_rpc_error)
    })?;
    m.register_async_method("jobs.list", |p, ctx, _| async move {
        let req: ListRequest = parse(&p)?;
        ctx.jobs.list(&ctx.caller, req.status, req.cursor, req.limit).await.map_err(to_rpc_error)
    })?;
    m.register_async_method("jobs.wait", |p, ctx, _| async move {
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
        ctx.jobs.wait(&ctx.caller, &req.id, timeout).await.map_err(to_rpc_error)
    })?;
    m.register_async_method("jobs.cancel", |p, ctx, _| async move {
        let req: IdRequest = parse(&p)?;
        ctx.jobs.cancel(&ctx.caller, &req.id).await.map_err(to_rpc_error)
    })?;
    m.register_async_method("jobs.logs", |p, ctx, _| async move {
        let req: LogsRequest = parse(&p)?;
        ctx.jobs.logs(&ctx.caller, &req.id, req.since_seq.unwrap_or(0), req.limit).await.map_err(to_rpc_error)
    })?;
    m.register_async_method("artifacts.list", |p, ctx, _| async move {
        let req: JobIdRequest = parse(&p)?;
        let artifacts = ctx.jobs.artifacts(&ctx.caller, &req.job_id).await.map_err(to_rpc_error)?;
        Ok::<_, ErrorObjectOwned>(serde_json::json!({ "artifacts": artifacts }))
    })?;

    m.register_async_method("jobs.cleanup", |p, ctx, _| async move {
        let req: IdRequest = parse(&p)?;
        ctx.jobs.cleanup(&ctx.caller, &req.id).await.map_err(to_rpc_error)
    })?;
    m.register_async_method("artifacts.read", |p, ctx, _| async move {
        let req: ReadArtifactRequest = parse(&p)?;
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
        Ok::<_, ErrorObjectOwned>(serde_json::json!({ "data_base64": data_base64, "eof": eof }))
    })?;
    m.register_async_method("resources.usage", |p, ctx, _| async move {
        let _: Empty = parse(&p)?;
        ctx.jobs.usage().await.map_err(to_rpc_error)
    })?;

    m.register_subscription("jobs.subscribe", "jobs.event", "jobs.unsubscribe", |p, pending, ctx, _| async move {
        subscribe(p, pending, ctx).await
    })?;
    Ok(m)
}

async fn subscribe(p: Params<'static>, pending: PendingSubscriptionSink, ctx: Arc<Context>) {
    let req: SubscribeRequest = match parse(&p) {
        Ok(r) => r,
        Err(e) => return pending.reject(e).await,
    };
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

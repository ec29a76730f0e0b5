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
//!
//! The methods are kept by API area, one file each with a `register` that adds the
//! area's methods and owns their request types: `system` (health, gc, resource usage),
//! `plugins`, `jobs` (with the `jobs.subscribe` subscription), `artifacts`, `models`,
//! `uploads`, and `access` (users and tokens). [`module`] calls them all; the params
//! types several areas share (`Empty` and `IdRequest`) live here.

mod access;
pub mod api;
mod artifacts;
mod batch;
pub mod conn;
mod files;
mod generations;
mod held;
pub mod http;
mod jobs;
mod metrics;
mod models;
pub use metrics::serve_metrics;
mod plugins;
pub mod rate;
mod runs;
mod system;
mod ui;
mod uploads;
mod workers;

use crate::auth::{Auth, Scope};
use crate::jobs::{Caller, Error, Jobs};
use crate::models::Models;
use crate::plugins::Plugins;
use crate::scheduler::sweeper::Sweeper;
use crate::uploads::Uploads;
pub use api::{Access, Api};
pub use artifacts::{DEFAULT_READ, MAX_READ};
pub use jobhost_model::{ArtifactData, ArtifactList, Health, PluginList, TokenList, UserList, codes};
use jsonrpsee::Extensions;
use jsonrpsee::server::middleware::rpc::RpcServiceBuilder;
use jsonrpsee::server::{BatchRequestConfig, RpcModule, Server, ServerConfig, ServerHandle, stop_channel};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::sync::Arc;

/// Limits of the transport, each refused with a clear error when passed.
#[derive(Debug, Clone)]
pub struct TransportLimits {
    /// The largest request body (and response) in bytes. A component travels
    /// base64-encoded in `plugins.install`, so this bounds an installable component.
    pub max_body_bytes: u32,
    /// Most calls in one batch.
    pub max_batch: u32,
    /// Most sockets open at once, over every client: the last guard of the server's
    /// file descriptors (see [`conn`] for the caps that come first).
    pub max_connections: u32,
    /// Connections one client address may hold before a token has claimed them.
    pub max_connections_per_address: u32,
    /// Connections (WebSockets included) one token may hold at once.
    pub max_connections_per_token: u32,
    /// `jobs.wait` calls one token may have waiting at once.
    pub max_waits_per_token: u32,
    /// Calls per second each token may make, sustained.
    pub rate_per_s: u32,
    /// Calls a token may make in a burst above the sustained rate.
    pub rate_burst: u32,
    /// Subscriptions a token may hold open at once (over all its connections).
    pub max_subscriptions_per_token: u32,
    /// How long a request's headers may take to arrive (and an idle keep-alive
    /// connection may stay open).
    pub header_read_timeout: std::time::Duration,
    /// How long a JSON-RPC call's body may take to arrive, and a file route's body
    /// may go without a byte.
    pub body_read_timeout: std::time::Duration,
}

impl Default for TransportLimits {
    fn default() -> Self {
        TransportLimits {
            max_body_bytes: 64 << 20,
            max_batch: 1000,
            max_connections: 10_000,
            max_connections_per_address: 128,
            max_connections_per_token: 512,
            max_waits_per_token: 4096,
            rate_per_s: 5_000,
            rate_burst: 50_000,
            max_subscriptions_per_token: 256,
            header_read_timeout: std::time::Duration::from_secs(30),
            body_read_timeout: std::time::Duration::from_secs(60),
        }
    }
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
    /// This node and the others on the database.
    pub nodes: crate::nodes::Nodes,
    /// Files held by other nodes.
    pub cluster: crate::cluster::Cluster,
    /// Workflows and their runs.
    pub runs: crate::runs::Runs,
    /// Per-token request rates.
    pub rate: Arc<rate::RateLimiter>,
    /// Per-token live subscriptions.
    pub subscriptions: held::PerKey,
    /// Told when subscriptions end and sockets close.
    pub trimmer: conn::Trimmer,
}

/// The services the API calls into.
#[derive(Clone)]
pub struct Services {
    /// The jobs domain.
    pub jobs: Jobs,
    /// Installed components.
    pub plugins: Plugins,
    /// Uploads.
    pub uploads: Uploads,
    /// Users and tokens.
    pub auth: Auth,
    /// Retention and expiry.
    pub sweeper: Sweeper,
    /// Model pulls and the model cache.
    pub models: Models,
    /// This node and the others on the database.
    pub nodes: crate::nodes::Nodes,
    /// Files held by other nodes.
    pub cluster: crate::cluster::Cluster,
    /// Workflows and their runs.
    pub runs: crate::runs::Runs,
}

impl Context {
    /// The context of a server over these services, its rate limits those of `limits`.
    pub fn new(services: Services, limits: &TransportLimits) -> Context {
        let Services { jobs, plugins, uploads, auth, sweeper, models, nodes, cluster, runs } = services;
        let rate = Arc::new(rate::RateLimiter::new(limits.rate_per_s, limits.rate_burst));
        let subscriptions =
            held::PerKey::new(usize::try_from(limits.max_subscriptions_per_token).unwrap_or(usize::MAX));
        let trimmer = conn::Trimmer::start();
        Context { jobs, plugins, uploads, models, auth, sweeper, nodes, cluster, runs, rate, subscriptions, trimmer }
    }
}

/// The caller of a request, if it may act with `scope` and is within its rate.
pub fn authorize(ctx: &Context, ext: &Extensions, scope: Scope) -> Result<Caller, ErrorObjectOwned> {
    let Some(caller) = ext.get::<Caller>() else {
        return Err(to_rpc_error(Error::Unauthorized(
            "this call needs an `Authorization: Bearer <token>` header".into(),
        )));
    };
    if !caller.has(scope) {
        return Err(to_rpc_error(Error::Forbidden(format!(
            "this token lacks the {:?} scope this call needs",
            scope.as_str()
        ))));
    }
    if let Some(token) = &caller.token_id
        && !ctx.rate.allow(token)
    {
        return Err(to_rpc_error(Error::LimitExceeded(format!(
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

/// Serves the API on `listener` (bound by the caller, who may need its address first).
/// Connections are accepted by [`conn::accept`], which counts them against their caps
/// and hands each to jsonrpsee's service for one connection.
pub async fn serve(
    listener: std::net::TcpListener,
    ctx: Context,
    limits: &TransportLimits,
) -> anyhow::Result<RpcServer> {
    let config = ServerConfig::builder()
        .max_request_body_size(limits.max_body_bytes)
        .max_response_body_size(limits.max_body_bytes)
        // jsonrpsee counts requests in flight against this; the caps that matter are
        // counted per connection, by `conn`.
        .max_connections(u32::MAX)
        // Above the token's own cap (which counts its subscriptions over all its
        // connections), so the refusal a subscriber meets is ours, with its
        // `limit_exceeded` kind, never jsonrpsee's bare -32006.
        .max_subscriptions_per_connection(limits.max_subscriptions_per_token.saturating_add(1).max(1024))
        .set_batch_request_config(BatchRequestConfig::Limit(limits.max_batch))
        .build();
    let auth = ctx.auth.clone();
    let (metrics, trimmer) = (ctx.jobs.metrics().clone(), ctx.trimmer.clone());
    let layer = http::HttpLayer::new(http::HttpContext {
        auth: ctx.auth.clone(),
        uploads: ctx.uploads.clone(),
        jobs: ctx.jobs.clone(),
        cluster: ctx.cluster.clone(),
        rate: ctx.rate.clone(),
        max_body_bytes: limits.max_body_bytes,
        body_read_timeout: limits.body_read_timeout,
    });
    let max_batch_answer = limits.max_body_bytes as usize;
    let builder = Server::builder()
        .set_config(config)
        .set_http_middleware(tower::ServiceBuilder::new().layer(layer))
        .set_rpc_middleware(
            RpcServiceBuilder::new().layer_fn(move |service| batch::ConcurrentBatch::new(service, max_batch_answer)),
        )
        .to_service_builder();
    let generations = Arc::new(generations::Generations::new(Arc::new(ctx))?);
    let weak = Arc::downgrade(&generations);
    trimmer.on_renew(move || {
        if let Some(generations) = weak.upgrade() {
            generations.renew();
        }
    });
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let local_addr = listener.local_addr()?;
    let (stop, handle) = stop_channel();
    let accept = conn::Accept {
        make: Arc::new(move |conn_stop| builder.clone().build(generations.current(), conn_stop)),
        caps: Arc::new(conn::Caps::new(limits, metrics, trimmer)),
        auth,
        deadlines: conn::Deadlines { header_read: limits.header_read_timeout },
    };
    tokio::spawn(conn::accept(listener, accept, stop));
    Ok(RpcServer { local_addr, handle })
}

/// Every method of the API, registered on one module through the [`Api`] table (which
/// also builds the `rpc.discover` document from the same types).
pub fn module(ctx: Arc<Context>) -> anyhow::Result<RpcModule<Context>> {
    let mut api = Api::new(ctx);
    system::register(&mut api)?;
    plugins::register(&mut api)?;
    jobs::register(&mut api)?;
    artifacts::register(&mut api)?;
    models::register(&mut api)?;
    uploads::register(&mut api)?;
    access::register(&mut api)?;
    workers::register(&mut api)?;
    runs::register(&mut api)?;
    api.finish()
}

/// Parses named params into `T`. Missing params count as `{}`; positional params are
/// refused; a type error names the offending field by its path.
fn parse<T: DeserializeOwned>(params: &Params<'_>) -> Result<T, ErrorObjectOwned> {
    let value: serde_json::Value = match params.as_str() {
        None => serde_json::Value::Object(Default::default()),
        Some(text) => serde_json::from_str(text).map_err(|e| {
            to_rpc_error(Error::InvalidParams { message: format!("params are not valid JSON: {e}"), field: None })
        })?,
    };
    if !value.is_object() {
        return Err(to_rpc_error(Error::InvalidParams {
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
        to_rpc_error(Error::InvalidParams { message, field })
    })
}

/// Pulls the field name out of serde's "missing field `x`" / "unknown field `x`".
fn field_from_message(msg: &str) -> Option<String> {
    let start = msg.find('`')? + 1;
    let len = msg[start..].find('`')?;
    Some(msg[start..start + len].to_owned())
}

/// A domain error as a JSON-RPC error (the error type owns its code and data).
pub fn to_rpc_error(e: Error) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(e.rpc_code(), e.to_string(), Some(e.data()))
}

/// No params.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct IdRequest {
    /// The record's id (`job_…`, `upl_…`, `tok_…`).
    id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::SubmitRequest;
    use std::sync::Arc;
    use std::time::Duration;

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
        use jobhost_runtime::{Runtime, RuntimeConfig};
        let store: Arc<dyn jobhost_store::Store> =
            Arc::new(jobhost_store::SqliteStore::open(&dir.join("jobhost.db")).await.unwrap());
        let admin = store.ensure_user("admin", true).await.unwrap();
        let runtime = Arc::new(
            Runtime::new(RuntimeConfig {
                plugins_dir: dir.join("plugins"),
                cache_dir: dir.join("plugins").join("cache"),
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
        let here = crate::jobs::Here { worker_id: "wrk_test".into(), labels: Arc::new([]), gpus: Arc::new([]) };
        let jobs = Jobs::new(
            store.clone(),
            here,
            crate::jobs::Limits::default(),
            (dir.join("jobs"), dir.join("uploads")),
            None,
        );
        let uploads = Uploads::new(
            store.clone(),
            crate::uploads::UploadLimits::default(),
            dir.join("uploads"),
            "wrk_test".into(),
        );
        let sweeper = Sweeper {
            jobs: jobs.clone(),
            uploads: uploads.clone(),
            retention: Duration::from_secs(3600),
            every: Duration::from_secs(3600),
        };
        let auth = Auth::new(store.clone());
        let store_for_nodes = store.clone();
        let store_for_runs = store.clone();
        let plugins = Plugins::new(store, runtime);
        let models = crate::models::Models::new(
            jobs.clone(),
            plugins.clone(),
            crate::models::HubConfig::default(),
            dir.join("models"),
        );
        let node = crate::nodes::NodeConfig::default();
        let nodes = crate::nodes::Nodes::register(store_for_nodes, "wrk_test", &node, 1, 1000, 1024).await.unwrap();
        let cluster = crate::cluster::Cluster::new(nodes.clone(), None);
        let runs = crate::runs::Runs::new(
            store_for_runs,
            jobs.clone(),
            uploads.clone(),
            std::sync::Arc::new(crate::runs::SystemClock),
        );
        let services = Services { jobs, plugins, uploads, auth, sweeper, models, nodes, cluster, runs };
        Context::new(services, &TransportLimits::default())
    }

    /// The document `rpc.discover` returns, from a module over a fresh context.
    async fn discover(module: &RpcModule<Context>) -> serde_json::Value {
        module.call("rpc.discover", jsonrpsee::rpc_params![]).await.unwrap()
    }

    #[tokio::test]
    async fn every_registered_method_is_in_the_openrpc_document() {
        let dir = tempfile::tempdir().unwrap();
        let module = module(Arc::new(context(dir.path()).await)).unwrap();
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
        let doc = discover(&module(Arc::new(context(dir.path()).await)).unwrap()).await;
        assert_eq!(doc["openrpc"], api::OPENRPC_VERSION);
        let method =
            |name: &str| doc["methods"].as_array().unwrap().iter().find(|m| m["name"] == name).cloned().unwrap();
        let submit = method("jobs.submit");
        let params: Vec<&str> =
            submit["params"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        for field in ["plugin", "args", "env", "input", "files_id", "timeout_s", "client_job_id", "image", "command"] {
            assert!(params.contains(&field), "jobs.submit lacks param {field}: {params:?}");
        }
        // A job names a component or an image: neither is required alone.
        let plugin = submit["params"].as_array().unwrap().iter().find(|p| p["name"] == "plugin").unwrap();
        assert_eq!(plugin["required"], false, "{plugin}");
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

//! The typed client of the JSON-RPC API, over HTTP for calls and WebSocket for
//! subscriptions. The CLI, the MCP server and the end-to-end tests all go through it,
//! so they exercise exactly what editors and agents use. The only place that knows
//! jsonrpsee's client types.

mod batch;

pub use batch::submit_params;

use crate::jobs::model::{Artifact, Job, JobEvent, JobStatus, Plugin};
use crate::jobs::{JobPage, LogPage, ResourceUsage, SubmitRequest, Submitted};
use crate::rpc::Health;
use base64::Engine as _;
use jsonrpsee::core::client::{ClientT, Subscription, SubscriptionClientT};
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use jsonrpsee::ws_client::{WsClient, WsClientBuilder};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use std::time::Duration;

/// Calls may wait this long (`jobs.wait` can ask for up to an hour).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3660);
/// Largest request or response: matches the server's limit.
const MAX_BODY: u32 = 64 << 20;

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a JSON-RPC error.
    #[error("{message} ({kind})")]
    Rpc {
        /// JSON-RPC error code.
        code: i32,
        /// Human-readable message.
        message: String,
        /// `data.kind`: `not_found`, `invalid_params`, ….
        kind: String,
        /// `data.field`, for `invalid_params` about one field.
        field: Option<String>,
    },
    /// The server could not be reached or answered nonsense.
    #[error("{0}")]
    Transport(String),
}

impl Error {
    /// `data.kind` of an RPC error (`None` for transport errors).
    pub fn kind(&self) -> Option<&str> {
        match self {
            Error::Rpc { kind, .. } => Some(kind),
            Error::Transport(_) => None,
        }
    }
}

impl From<jsonrpsee::core::ClientError> for Error {
    fn from(e: jsonrpsee::core::ClientError) -> Error {
        match e {
            jsonrpsee::core::ClientError::Call(obj) => {
                let data: Value = obj.data().and_then(|d| serde_json::from_str(d.get()).ok()).unwrap_or(Value::Null);
                Error::Rpc {
                    code: obj.code(),
                    message: obj.message().to_owned(),
                    kind: data["kind"].as_str().unwrap_or("unknown").to_owned(),
                    field: data["field"].as_str().map(str::to_owned),
                }
            }
            other => Error::Transport(other.to_string()),
        }
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A connection to a jobhost server.
#[derive(Debug, Clone)]
pub struct Client {
    http: HttpClient,
    url: String,
}

impl Client {
    /// A client of the server at `url` (`http://host:port`).
    pub fn new(url: &str) -> Result<Client> {
        let http = HttpClientBuilder::default()
            .request_timeout(REQUEST_TIMEOUT)
            .max_request_size(MAX_BODY)
            .max_response_size(MAX_BODY)
            .build(url)
            .map_err(|e| Error::Transport(e.to_string()))?;
        Ok(Client { http, url: url.to_owned() })
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Calls `method` with named `params` (a JSON object) and decodes the result.
    pub async fn call<T: DeserializeOwned>(&self, method: &str, params: Value) -> Result<T> {
        let params: Map<String, Value> = match params {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            other => return Err(Error::Transport(format!("params must be an object, not {other}"))),
        };
        Ok(self.http.request(method, params).await?)
    }

    /// `system.health`.
    pub async fn health(&self) -> Result<Health> {
        self.call("system.health", Value::Null).await
    }

    /// `plugins.install` of raw wasm bytes.
    pub async fn install(&self, name: &str, wasm: &[u8]) -> Result<Plugin> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(wasm);
        self.call("plugins.install", json!({ "name": name, "wasm_base64": b64 })).await
    }

    /// `plugins.list`.
    pub async fn plugins(&self) -> Result<Vec<Plugin>> {
        #[derive(serde::Deserialize)]
        struct R {
            plugins: Vec<Plugin>,
        }
        Ok(self.call::<R>("plugins.list", Value::Null).await?.plugins)
    }

    /// `jobs.submit`.
    pub async fn submit(&self, req: &SubmitRequest) -> Result<Submitted> {
        self.call("jobs.submit", Value::Object(batch::submit_params(req)?)).await
    }

    /// `jobs.get`.
    pub async fn get(&self, id: &str) -> Result<Job> {
        self.call("jobs.get", json!({ "id": id })).await
    }

    /// `jobs.list`.
    pub async fn list(&self, status: Option<JobStatus>, cursor: Option<&str>, limit: Option<u32>) -> Result<JobPage> {
        let mut p = Map::new();
        if let Some(s) = status {
            p.insert("status".into(), json!(s));
        }
        if let Some(c) = cursor {
            p.insert("cursor".into(), json!(c));
        }
        if let Some(l) = limit {
            p.insert("limit".into(), json!(l));
        }
        self.call("jobs.list", Value::Object(p)).await
    }

    /// `jobs.wait`: the job once terminal, or as it is after `timeout`.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<Job> {
        self.call("jobs.wait", json!({ "id": id, "timeout_s": timeout.as_secs_f64() })).await
    }

    /// `jobs.cancel`.
    pub async fn cancel(&self, id: &str) -> Result<Job> {
        self.call("jobs.cancel", json!({ "id": id })).await
    }

    /// `jobs.logs`.
    pub async fn logs(&self, id: &str, since_seq: u64, limit: Option<u32>) -> Result<LogPage> {
        let mut p = json!({ "id": id, "since_seq": since_seq });
        if let Some(l) = limit {
            p["limit"] = json!(l);
        }
        self.call("jobs.logs", p).await
    }

    /// `artifacts.list`.
    pub async fn artifacts(&self, job_id: &str) -> Result<Vec<Artifact>> {
        #[derive(serde::Deserialize)]
        struct R {
            artifacts: Vec<Artifact>,
        }
        Ok(self.call::<R>("artifacts.list", json!({ "job_id": job_id })).await?.artifacts)
    }

    /// `jobs.cleanup`.
    pub async fn cleanup(&self, id: &str) -> Result<Job> {
        self.call("jobs.cleanup", json!({ "id": id })).await
    }

    /// `artifacts.read` of a whole artifact, page by page.
    pub async fn read_artifact(&self, job_id: &str, name: &str) -> Result<Vec<u8>> {
        #[derive(serde::Deserialize)]
        struct R {
            data_base64: String,
            eof: bool,
        }
        let mut data = Vec::new();
        loop {
            let page: R =
                self.call("artifacts.read", json!({ "job_id": job_id, "name": name, "offset": data.len() })).await?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(page.data_base64)
                .map_err(|e| Error::Transport(format!("artifacts.read sent invalid base64: {e}")))?;
            let empty = bytes.is_empty();
            data.extend(bytes);
            if page.eof || empty {
                return Ok(data);
            }
        }
    }

    /// `resources.usage`.
    pub async fn usage(&self) -> Result<ResourceUsage> {
        self.call("resources.usage", Value::Null).await
    }

    /// Opens a WebSocket to the same server (for subscriptions).
    pub async fn websocket(&self) -> Result<Events> {
        let ws_url = if let Some(rest) = self.url.strip_prefix("http://") {
            format!("ws://{rest}")
        } else if let Some(rest) = self.url.strip_prefix("https://") {
            format!("wss://{rest}")
        } else {
            self.url.clone()
        };
        let ws = WsClientBuilder::default()
            .request_timeout(REQUEST_TIMEOUT)
            .max_request_size(MAX_BODY)
            .max_response_size(MAX_BODY)
            .build(&ws_url)
            .await
            .map_err(|e| Error::Transport(e.to_string()))?;
        Ok(Events { ws })
    }
}

/// A WebSocket connection, for `jobs.subscribe`.
#[derive(Debug)]
pub struct Events {
    ws: WsClient,
}

impl Events {
    /// `jobs.subscribe`: events of job `id` (all of the caller's jobs when `None`).
    pub async fn subscribe(&self, id: Option<&str>) -> Result<Subscription<JobEvent>> {
        let mut p = Map::new();
        if let Some(id) = id {
            p.insert("id".into(), json!(id));
        }
        Ok(self.ws.subscribe("jobs.subscribe", p, "jobs.unsubscribe").await?)
    }

    /// Any call over the WebSocket.
    pub async fn call<T: DeserializeOwned>(&self, method: &str, params: Map<String, Value>) -> Result<T> {
        Ok(self.ws.request(method, params).await?)
    }
}

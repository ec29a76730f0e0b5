//! The typed client of the JSON-RPC API, over HTTP for calls and WebSocket for
//! subscriptions. The CLI, the MCP server and the end-to-end tests all go through it,
//! so they exercise exactly what editors and agents use. The only place that knows
//! jsonrpsee's client types.

mod batch;

pub use batch::submit_params;

use base64::Engine as _;
use http_body_util::BodyExt as _;
use jobhost_model::{
    Artifact, GcReport, Health, Installed, Job, JobEvent, JobPage, JobStatus, LogPage, NewToken, Plugin, ResourceUsage,
    Scope, SubmitRequest, Submitted, TokenInfo, Upload, User, Worker, WorkerList,
};
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

    /// `data.field` of an `invalid_params` error about one field.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Rpc { field, .. } => field.as_deref(),
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
            other => Error::transport(other.to_string()),
        }
    }
}

impl Error {
    /// A transport failure; an HTTP 401 (a refused token) reads as `unauthorized`,
    /// the same kind the server gives in JSON.
    fn transport(text: String) -> Error {
        let lower = text.to_ascii_lowercase();
        if lower.contains("rejected") && lower.contains("401") {
            return Error::Rpc {
                code: jobhost_model::codes::UNAUTHORIZED,
                message: format!("the server refused the token: {text}"),
                kind: "unauthorized".into(),
                field: None,
            };
        }
        Error::Transport(text)
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A connection to a jobhost server.
#[derive(Debug, Clone)]
pub struct Client {
    http: HttpClient,
    url: String,
    /// The API token sent as `Authorization: Bearer` (none: only `system.health` works).
    token: Option<String>,
    /// Plain HTTP, for the file routes.
    files: hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, FileBody>,
}

/// A request body of the file routes: bytes in memory or a stream read as it is sent.
type FileBody = http_body_util::combinators::BoxBody<bytes::Bytes, std::io::Error>;

/// Reads the whole answer of a file route.
async fn collect(resp: http::Response<hyper::body::Incoming>) -> Result<FileResponse> {
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = resp.into_body().collect().await.map_err(|e| Error::Transport(e.to_string()))?.to_bytes().to_vec();
    Ok(FileResponse { status, headers, body })
}

/// An answer of a file route.
#[derive(Debug, Clone)]
pub struct FileResponse {
    /// HTTP status.
    pub status: u16,
    /// Response headers, lower-case names.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl FileResponse {
    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

impl Client {
    /// A client of the server at `url` (`http://host:port`) without a token.
    pub fn new(url: &str) -> Result<Client> {
        Self::with_token(url, None)
    }

    /// A client of the server at `url` that presents `token`.
    pub fn with_token(url: &str, token: Option<&str>) -> Result<Client> {
        let http = HttpClientBuilder::default()
            .request_timeout(REQUEST_TIMEOUT)
            .max_request_size(MAX_BODY)
            .max_response_size(MAX_BODY)
            .set_headers(auth_headers(token)?)
            .build(url)
            .map_err(|e| Error::Transport(e.to_string()))?;
        let files = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
        Ok(Client { http, url: url.to_owned(), token: token.map(str::to_owned), files })
    }

    /// The token this client presents.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// A raw HTTP request to `path` on the server, with this client's token.
    pub async fn http_request(&self, method: &str, path: &str, body: Vec<u8>) -> Result<FileResponse> {
        let len = body.len() as u64;
        let body = http_body_util::Full::new(bytes::Bytes::from(body)).map_err(|never| match never {}).boxed();
        collect(self.send(method, path, body, Some(len)).await?).await
    }

    /// Sends a request with `body` (of `len` bytes when known) and returns the answer
    /// with its body unread.
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: FileBody,
        len: Option<u64>,
    ) -> Result<http::Response<hyper::body::Incoming>> {
        let mut req = http::Request::builder().method(method).uri(format!("{}{path}", self.url.trim_end_matches('/')));
        if let Some(t) = &self.token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Some(len) = len {
            req = req.header(http::header::CONTENT_LENGTH, len);
        }
        let req = req.body(body).map_err(|e| Error::Transport(e.to_string()))?;
        self.files.request(req).await.map_err(|e| Error::Transport(e.to_string()))
    }

    /// Fails with the server's error when a file route did not answer 2xx.
    fn file_ok(resp: FileResponse) -> Result<FileResponse> {
        if (200..300).contains(&resp.status) {
            return Ok(resp);
        }
        let err = &resp.json()["error"];
        Err(Error::Rpc {
            code: err["code"].as_i64().and_then(|c| i32::try_from(c).ok()).unwrap_or(0),
            message: err["message"].as_str().map_or_else(|| format!("HTTP {}", resp.status), str::to_owned),
            kind: err["data"]["kind"].as_str().unwrap_or("unknown").to_owned(),
            field: err["data"]["field"].as_str().map(str::to_owned),
        })
    }

    /// `PUT /uploads/<id>/files/<path>`: one file of an upload, in one request.
    pub async fn put_file(&self, upload_id: &str, path: &str, data: Vec<u8>) -> Result<Value> {
        let path = encode_path(path);
        Ok(Self::file_ok(self.http_request("PUT", &format!("/uploads/{upload_id}/files/{path}"), data).await?)?.json())
    }

    /// `PUT /uploads/<id>/archive`: a tar archive unpacked into the upload.
    pub async fn put_archive(&self, upload_id: &str, tar: Vec<u8>) -> Result<Value> {
        Ok(Self::file_ok(self.http_request("PUT", &format!("/uploads/{upload_id}/archive"), tar).await?)?.json())
    }

    /// `PUT /uploads/<id>/archive` of `len` bytes read from `chunks` as they are sent:
    /// an archive of any size without holding it in memory.
    pub async fn put_archive_stream<S>(&self, upload_id: &str, len: u64, chunks: S) -> Result<Value>
    where
        S: futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + Sync + 'static,
    {
        use futures::TryStreamExt as _;
        let body = http_body_util::StreamBody::new(chunks.map_ok(hyper::body::Frame::data)).boxed();
        let resp = self.send("PUT", &format!("/uploads/{upload_id}/archive"), body, Some(len)).await?;
        Ok(Self::file_ok(collect(resp).await?)?.json())
    }

    /// `GET /jobs/<id>/artifacts/<name>`, each piece of the body handed to `sink` as it
    /// arrives; the number of bytes received. An error answer is returned as the error,
    /// and `sink` sees none of it.
    pub async fn download_artifact_into(
        &self,
        job_id: &str,
        name: &str,
        mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<u64> {
        let path = format!("/jobs/{job_id}/artifacts/{}", encode_path(name));
        let empty = http_body_util::Empty::new().map_err(|never| match never {}).boxed();
        let resp = self.send("GET", &path, empty, None).await?;
        if !resp.status().is_success() {
            Self::file_ok(collect(resp).await?)?;
            return Err(Error::Transport(format!("GET {path}: unexpected answer")));
        }
        let mut body = resp.into_body();
        let mut received = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Error::Transport(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                sink(&data).map_err(|e| Error::Transport(format!("writing {name}: {e}")))?;
                received += data.len() as u64;
            }
        }
        Ok(received)
    }

    /// `GET /jobs/<id>/artifacts/<name>`: the artifact's bytes.
    pub async fn download_artifact(&self, job_id: &str, name: &str) -> Result<FileResponse> {
        let name = encode_path(name);
        Self::file_ok(self.http_request("GET", &format!("/jobs/{job_id}/artifacts/{name}"), Vec::new()).await?)
    }

    /// `uploads.create`.
    pub async fn create_upload(&self) -> Result<Upload> {
        self.call("uploads.create", Value::Null).await
    }

    /// `uploads.put` of a whole small file.
    pub async fn upload_put(&self, upload_id: &str, path: &str, data: &[u8]) -> Result<Value> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(data);
        self.call("uploads.put", json!({ "id": upload_id, "path": path, "data_base64": b64 })).await
    }

    /// `uploads.finalize`.
    pub async fn finalize_upload(&self, upload_id: &str) -> Result<Upload> {
        self.call("uploads.finalize", json!({ "id": upload_id })).await
    }

    /// `uploads.get`.
    pub async fn get_upload(&self, upload_id: &str) -> Result<Upload> {
        self.call("uploads.get", json!({ "id": upload_id })).await
    }

    /// `users.create`.
    pub async fn create_user(&self, name: &str, is_admin: bool) -> Result<User> {
        self.call("users.create", json!({ "name": name, "is_admin": is_admin })).await
    }

    /// `tokens.create` for `user` (oneself when `None`).
    pub async fn create_token(
        &self,
        user: Option<&str>,
        scopes: &[Scope],
        expires_in_s: Option<u64>,
    ) -> Result<NewToken> {
        let mut p = json!({ "scopes": scopes });
        if let Some(u) = user {
            p["user"] = json!(u);
        }
        if let Some(s) = expires_in_s {
            p["expires_in_s"] = json!(s);
        }
        self.call("tokens.create", p).await
    }

    /// `tokens.revoke`.
    pub async fn revoke_token(&self, id: &str) -> Result<TokenInfo> {
        self.call("tokens.revoke", json!({ "id": id })).await
    }

    /// `tokens.list`.
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>> {
        #[derive(serde::Deserialize)]
        struct R {
            tokens: Vec<TokenInfo>,
        }
        Ok(self.call::<R>("tokens.list", Value::Null).await?.tokens)
    }

    /// `system.gc`.
    pub async fn gc(&self) -> Result<GcReport> {
        self.call("system.gc", Value::Null).await
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
    pub async fn install(&self, name: &str, wasm: &[u8]) -> Result<Installed> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(wasm);
        self.call("plugins.install", json!({ "name": name, "wasm_base64": b64 })).await
    }

    /// `plugins.install` with grants (`containers`): an admin lets the component's jobs
    /// do more than the sandbox allows.
    pub async fn install_granted(
        &self,
        name: &str,
        wasm: &[u8],
        grants: &[jobhost_model::PluginGrant],
    ) -> Result<Installed> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(wasm);
        self.call("plugins.install", json!({ "name": name, "wasm_base64": b64, "grants": grants })).await
    }

    /// `plugins.install` by digest: names a component the server already holds
    /// (`not_found` when it does not).
    pub async fn install_digest(&self, name: &str, digest: &str) -> Result<Installed> {
        self.call("plugins.install", json!({ "name": name, "digest": digest })).await
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

    /// `workflows.create`.
    pub async fn create_workflow(&self, workflow: &jobhost_model::WorkflowRequest) -> Result<jobhost_model::Workflow> {
        self.call(
            "workflows.create",
            serde_json::to_value(workflow).map_err(|e| Error::Transport(format!("encoding the request: {e}")))?,
        )
        .await
    }

    /// `workflows.list`.
    pub async fn workflows(&self) -> Result<Vec<jobhost_model::Workflow>> {
        Ok(self.call::<jobhost_model::WorkflowList>("workflows.list", Value::Null).await?.workflows)
    }

    /// `runs.start`.
    pub async fn start_run(&self, start: &jobhost_model::StartRun) -> Result<jobhost_model::StartedRun> {
        self.call(
            "runs.start",
            serde_json::to_value(start).map_err(|e| Error::Transport(format!("encoding the request: {e}")))?,
        )
        .await
    }

    /// `runs.get`: the run with its steps and tasks.
    pub async fn run(&self, id: &str) -> Result<jobhost_model::Run> {
        self.call("runs.get", json!({ "id": id })).await
    }

    /// `runs.list`, of one workflow when given.
    pub async fn runs(&self, workflow: Option<&str>) -> Result<Vec<jobhost_model::Run>> {
        let params = match workflow {
            Some(w) => json!({ "workflow": w }),
            None => json!({}),
        };
        Ok(self.call::<jobhost_model::RunList>("runs.list", params).await?.runs)
    }

    /// `runs.cancel`.
    pub async fn cancel_run(&self, id: &str) -> Result<jobhost_model::Run> {
        self.call("runs.cancel", json!({ "id": id })).await
    }

    /// `jobs.attempts`: how each ended attempt of job `id` went.
    pub async fn attempts(&self, id: &str) -> Result<Vec<jobhost_model::JobAttempt>> {
        Ok(self.call::<jobhost_model::AttemptList>("jobs.attempts", json!({ "id": id })).await?.attempts)
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

    /// `workers.list`: every node on the server's database.
    pub async fn workers(&self) -> Result<Vec<Worker>> {
        Ok(self.call::<WorkerList>("workers.list", Value::Null).await?.workers)
    }

    /// `workers.drain`: node `id` takes no new job and stops once its runs end.
    pub async fn drain(&self, id: &str) -> Result<Worker> {
        self.call("workers.drain", serde_json::json!({ "id": id })).await
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
            .set_headers(auth_headers(self.token.as_deref())?)
            .request_timeout(REQUEST_TIMEOUT)
            .max_request_size(MAX_BODY)
            .max_response_size(MAX_BODY)
            .build(&ws_url)
            .await
            .map_err(|e| Error::transport(e.to_string()))?;
        Ok(Events { ws })
    }
}

/// The `Authorization` header for `token`.
fn auth_headers(token: Option<&str>) -> Result<http::HeaderMap> {
    let mut headers = http::HeaderMap::new();
    if let Some(t) = token {
        let value = http::HeaderValue::from_str(&format!("Bearer {t}"))
            .map_err(|_| Error::Transport("the token has characters a header cannot carry".into()))?;
        headers.insert(http::header::AUTHORIZATION, value);
    }
    Ok(headers)
}

/// Percent-encodes each segment of a `/`-separated path.
fn encode_path(path: &str) -> String {
    let segments: Vec<String> = path
        .split('/')
        .map(|s| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string())
        .collect();
    segments.join("/")
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

    /// Resolves once the socket is closed (by the server, or broken).
    pub async fn closed(&self) {
        let _closed_by = self.ws.on_disconnect().await;
    }
}

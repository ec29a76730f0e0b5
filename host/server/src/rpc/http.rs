//! The HTTP side of the one port: authentication of every request, its connection
//! caps, and the routing to the file routes that do not fit JSON-RPC ([`super::files`]).
//!
//! A tower layer in front of jsonrpsee. It reads `Authorization: Bearer <token>`:
//! a token that is unknown, expired or revoked is answered `401` at once, on any
//! path; a valid one becomes the request's [`Caller`], which jsonrpsee hands to every
//! method (over HTTP and over the WebSocket the request opens). A JSON-RPC POST
//! without a token goes through, and every method but `system.health` refuses it
//! (`unauthorized`); a WebSocket upgrade or a file route without a token is `401`.
//! A JSON-RPC call over plain HTTP is read whole here (up to the body limit, chunked
//! or not) and refused when its `id` is an object or an array, before jsonrpsee
//! parses it again ([`whole_call`]).
//! A WebSocket upgrade may instead carry a one-time `?ticket=` from `tokens.ticket`
//! (browsers cannot set the header there); the dashboard's files under `/ui/` need
//! nothing ([`super::ui`]).
//!
//! Another node's request for a file route proves itself with the cluster secret in
//! the [`CLUSTER_HEADER`] header instead of a token.

use super::conn::{Call, Conn};
use super::files::{get_artifact, get_upload_archive, put_archive, put_file};
use crate::auth::Auth;
use crate::cluster::{CLUSTER_HEADER, Cluster};
use crate::jobs::{Caller, Error, Jobs};
use crate::uploads::Uploads;
use ::http::{HeaderValue, Method, StatusCode, header};
use bytes::Bytes;
use futures::FutureExt as _;
use http_body_util::BodyExt as _;
use jsonrpsee::core::BoxError;
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// What the file routes and the authentication need.
#[derive(Debug, Clone)]
pub struct HttpContext {
    /// Token checks.
    pub auth: Auth,
    /// Upload files.
    pub uploads: Uploads,
    /// Artifacts.
    pub jobs: Jobs,
    /// Artifacts held by other nodes, and their requests.
    pub cluster: Cluster,
    /// The per-token request rate, shared with the JSON-RPC calls.
    pub rate: std::sync::Arc<super::rate::RateLimiter>,
    /// The largest JSON-RPC request body.
    pub max_body_bytes: u32,
    /// How long a JSON-RPC body may take to arrive, and a file's body may go without a byte.
    pub body_read_timeout: std::time::Duration,
}

/// The layer; see the module docs.
#[derive(Debug, Clone)]
pub struct HttpLayer {
    ctx: HttpContext,
}

impl HttpLayer {
    /// A layer over `ctx`.
    pub fn new(ctx: HttpContext) -> HttpLayer {
        HttpLayer { ctx }
    }
}

impl<S> Layer<S> for HttpLayer {
    type Service = HttpService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpService { inner, ctx: self.ctx.clone() }
    }
}

/// The service the layer makes.
#[derive(Debug, Clone)]
pub struct HttpService<S> {
    inner: S,
    ctx: HttpContext,
}

/// A path this layer answers itself.
enum Route {
    UploadFile {
        id: String,
        path: String,
    },
    UploadArchive {
        id: String,
    },
    UploadPack {
        id: String,
    },
    Artifact {
        job_id: String,
        name: String,
    },
    /// A file route whose path is not percent-encoded UTF-8.
    BadEncoding {
        what: &'static str,
    },
    /// `GET /metrics`, for an admin.
    Metrics,
    /// `GET /ui/…`, the dashboard's files.
    Ui,
    Rpc,
}

impl Route {
    /// Its name in `jobhost_http_requests_total`.
    fn name(&self) -> &'static str {
        match self {
            Route::UploadFile { .. } => "upload_file",
            Route::UploadArchive { .. } => "upload_archive",
            Route::UploadPack { .. } => "upload_pack",
            Route::Artifact { .. } => "artifact",
            Route::BadEncoding { .. } => "bad_encoding",
            Route::Metrics => "metrics",
            Route::Ui => "ui",
            Route::Rpc => "rpc",
        }
    }
}

impl<S, B> Service<HttpRequest<B>> for HttpService<S>
where
    S: Service<HttpRequest<HttpBody>, Response = HttpResponse> + Clone + Send + 'static,
    S::Error: Into<BoxError> + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError> + Send,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, BoxError>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: HttpRequest<B>) -> Self::Future {
        let ctx = self.ctx.clone();
        let mut inner = self.inner.clone();
        // The clone is not the service that was polled ready; swap so the ready one runs.
        std::mem::swap(&mut inner, &mut self.inner);
        async move {
            let route = route(req.method(), req.uri().path());
            if let Route::Ui = route
                && let Some(answer) = super::ui::answer(req.uri().path())
            {
                return Ok(answer);
            }
            // Another node asking for files it was asked for, or that a job it runs needs.
            if let Some(presented) = req.headers().get(CLUSTER_HEADER) {
                let Some(peer) = presented.to_str().ok().and_then(|p| ctx.cluster.peer(p)) else {
                    return Ok(error_response(&Error::Unauthorized("the cluster secret is wrong".into())));
                };
                let result = match &route {
                    Route::Artifact { job_id, name } => {
                        let head = req.method() == Method::HEAD;
                        get_artifact(&ctx, &peer, job_id, name, head, req.headers()).await
                    }
                    Route::UploadPack { id } => get_upload_archive(&ctx, &peer, id).await,
                    _ => Err(Error::Forbidden("the cluster secret opens only the file routes other nodes use".into())),
                };
                return Ok(result.unwrap_or_else(|e| error_response(&e)));
            }
            let token = bearer(req.headers());
            let caller = match token {
                // A browser's WebSocket, which cannot carry the header: a one-time ticket.
                None => match ticket(&req) {
                    Some(ticket) if is_upgrade(&req) => match ctx.auth.redeem(ticket).await {
                        Ok(Ok(caller)) => Some(caller),
                        Ok(Err(refusal)) => return Ok(error_response(&Error::Unauthorized(refusal.message().into()))),
                        Err(e) => return Ok(error_response(&e)),
                    },
                    _ => None,
                },
                Some(Err(())) => {
                    return Ok(error_response(&Error::Unauthorized("malformed Authorization header".into())));
                }
                Some(Ok(token)) => match ctx.auth.authenticate(&token).await {
                    Ok(Ok(caller)) => Some(caller),
                    Ok(Err(refusal)) => return Ok(error_response(&Error::Unauthorized(refusal.message().into()))),
                    Err(e) => return Ok(error_response(&e)),
                },
            };
            // The connection's caps (absent only for a service not behind `conn::accept`).
            let conn = req.extensions().get::<Arc<Conn>>().cloned();
            let admit = |caller: Option<&Caller>, call: Call| match &conn {
                Some(conn) => conn.admit(caller, call),
                None => Ok(None),
            };
            if let Route::Rpc = route {
                let upgrade = is_upgrade(&req);
                if upgrade {
                    let Some(caller) = caller else { return Ok(error_response(&needs_token())) };
                    if let Err(e) = admit(Some(&caller), Call::Other) {
                        return Ok(error_response(&e));
                    }
                    if let Some(conn) = &conn {
                        conn.becomes_socket(&caller);
                    }
                    req.extensions_mut().insert(caller);
                    return inner.call(req.map(HttpBody::new)).await.map_err(Into::into);
                }
                req.extensions_mut().insert(PlainHttp);
                let (req, call) = match whole_call(req, ctx.max_body_bytes, ctx.body_read_timeout).await {
                    Ok(read) => read,
                    Err(e) => return Ok(error_response(&e)),
                };
                // Held until the answer is made: a long poll's place among its token's waits.
                let _wait = match admit(caller.as_ref(), call) {
                    Ok(wait) => wait,
                    Err(e) => return Ok(error_response(&e)),
                };
                let mut req = req;
                if let Some(caller) = caller {
                    req.extensions_mut().insert(caller);
                }
                return inner.call(req).await.map_err(Into::into);
            }
            let Some(caller) = caller else { return Ok(error_response(&needs_token())) };
            if let Err(e) = admit(Some(&caller), Call::Other) {
                return Ok(error_response(&e));
            }
            // A file transfer counts against its token's rate as a call does.
            if let Some(token) = &caller.token_id
                && !ctx.rate.allow(token)
            {
                let e = Error::LimitExceeded(format!(
                    "request rate: this token may make {} calls per second",
                    ctx.rate.per_s()
                ));
                return Ok(error_response(&e));
            }
            let name = route.name();
            let result = match route {
                Route::Metrics if !caller.is_admin => {
                    Err(Error::Forbidden("/metrics needs an admin token (or serve it with --metrics-listen)".into()))
                }
                Route::Metrics => ctx.jobs.render_metrics().await.map(metrics_response),
                Route::UploadFile { id, path } => put_file(&ctx, &caller, &id, &path, req).await,
                Route::UploadArchive { id } => put_archive(&ctx, &caller, &id, req).await,
                Route::UploadPack { id } => get_upload_archive(&ctx, &caller, &id).await,
                Route::Artifact { job_id, name } => {
                    let head = req.method() == Method::HEAD;
                    get_artifact(&ctx, &caller, &job_id, &name, head, req.headers()).await
                }
                Route::BadEncoding { what } => Err(Error::invalid(
                    what,
                    "is not valid percent-encoded UTF-8 (a `%` escape names a byte that is not)",
                )),
                Route::Rpc | Route::Ui => Err(Error::Internal("unreachable route".into())),
            };
            let response = result.unwrap_or_else(|e| error_response(&e));
            ctx.jobs.metrics().route(name, response.status().as_u16());
            Ok(response)
        }
        .boxed()
    }
}

/// A JSON-RPC call (or batch) over plain HTTP, read whole here, up to `max` bytes and
/// within `deadline`, and checked for what jsonrpsee would answer unclearly: a body
/// over the limit sent without a `Content-Length` (chunked) is `limit_exceeded` (HTTP
/// 413), one still arriving at the deadline is `request_timeout` (HTTP 408), and a
/// call whose `id` is an object or an array is `invalid_request` (-32600; jsonrpsee
/// would answer `null`). A batch with such a call is refused whole. Also answers what
/// the call is, for the connection caps.
async fn whole_call<B>(
    req: HttpRequest<B>,
    max: u32,
    deadline: std::time::Duration,
) -> Result<(HttpRequest<HttpBody>, Call), Error>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (parts, body) = req.into_parts();
    let read = tokio::time::timeout(deadline, http_body_util::Limited::new(body, max as usize).collect());
    let bytes = match read.await {
        Err(_) => {
            return Err(Error::RequestTimeout(format!(
                "request body: it did not arrive within {} s",
                deadline.as_secs_f64()
            )));
        }
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(Error::LimitExceeded(format!("request body: the limit is {max} bytes")));
        }
        Ok(Err(e)) => return Err(Error::InvalidRequest(format!("reading the request body: {e}"))),
    };
    let (structured, call) = inspect(&bytes);
    if structured {
        return Err(Error::InvalidRequest(
            "invalid request: an `id` must be a string, a number or null (not an object or an array)".into(),
        ));
    }
    Ok((HttpRequest::from_parts(parts, HttpBody::new(http_body_util::Full::new(bytes))), call))
}

/// Whether a call, or any call of a batch, has an `id` that is an object or an array,
/// and what the body asks for: one `system.health` or one `jobs.wait` call, or else.
fn inspect(body: &[u8]) -> (bool, Call) {
    #[derive(serde::Deserialize)]
    struct One<'a> {
        #[serde(borrow, default)]
        id: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow, default)]
        method: Option<std::borrow::Cow<'a, str>>,
    }
    let structured =
        |call: &One<'_>| call.id.is_some_and(|id| matches!(id.get().as_bytes().first(), Some(b'{' | b'[')));
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => match serde_json::from_slice::<One<'_>>(body) {
            Ok(call) => {
                let kind = match call.method.as_deref() {
                    Some("system.health") => Call::Health,
                    Some("jobs.wait") => Call::LongPoll,
                    _ => Call::Other,
                };
                (structured(&call), kind)
            }
            Err(_) => (false, Call::Other),
        },
        Some(b'[') => {
            let structured =
                serde_json::from_slice::<Vec<One<'_>>>(body).is_ok_and(|calls| calls.iter().any(structured));
            (structured, Call::Other)
        }
        _ => (false, Call::Other),
    }
}

/// A `/metrics` answer: the Prometheus text format.
pub fn metrics_response(text: String) -> HttpResponse {
    let mut response = HttpResponse::new(HttpBody::from(text));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

/// Marks a JSON-RPC call that came over plain HTTP (not a WebSocket): subscriptions
/// are refused there, saying why.
#[derive(Debug, Clone, Copy)]
pub struct PlainHttp;

fn needs_token() -> Error {
    Error::Unauthorized("this request needs an `Authorization: Bearer <token>` header".into())
}

/// The token of an `Authorization: Bearer` header; `Err` when the header is there
/// but is not a bearer token.
fn bearer(headers: &http::HeaderMap) -> Option<Result<String, ()>> {
    let value = headers.get(header::AUTHORIZATION)?;
    let text = value.to_str().ok();
    Some(
        text.and_then(|t| t.strip_prefix("Bearer ").or_else(|| t.strip_prefix("bearer ")))
            .map(|t| t.trim().to_owned())
            .ok_or(()),
    )
}

/// The `ticket` of the query string (`?ticket=jht_…`), see [`Auth::ticket`].
fn ticket<B>(req: &HttpRequest<B>) -> Option<&str> {
    req.uri().query()?.split('&').find_map(|pair| pair.strip_prefix("ticket="))
}

fn is_upgrade<B>(req: &HttpRequest<B>) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn route(method: &Method, path: &str) -> Route {
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8().ok().map(|c| c.into_owned());
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(4, '/').collect();
    match (method, parts.as_slice()) {
        (&Method::PUT, ["uploads", id, "files", rest]) => match decode(rest) {
            Some(path) => Route::UploadFile { id: (*id).to_owned(), path },
            None => Route::BadEncoding { what: "path" },
        },
        (&Method::GET, ["metrics"]) => Route::Metrics,
        (&Method::GET | &Method::HEAD, ["ui", ..]) => Route::Ui,
        (&Method::PUT, ["uploads", id, "archive"]) => Route::UploadArchive { id: (*id).to_owned() },
        (&Method::GET, ["uploads", id, "archive"]) => Route::UploadPack { id: (*id).to_owned() },
        (&Method::GET | &Method::HEAD, ["jobs", id, "artifacts", rest]) => match decode(rest) {
            Some(name) => Route::Artifact { job_id: (*id).to_owned(), name },
            None => Route::BadEncoding { what: "name" },
        },
        _ => Route::Rpc,
    }
}

fn status_of(e: &Error) -> StatusCode {
    StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// An error as a JSON-RPC error object (id null), with the matching HTTP status.
pub fn error_response(e: &Error) -> HttpResponse {
    let err = e.to_object();
    let body = serde_json::json!({ "jsonrpc": "2.0", "id": null, "error": err });
    let mut resp = json_response(status_of(e), &body);
    match e {
        Error::Unauthorized(_) => {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        // A connection over its cap, or one whose body was too slow, is not kept.
        Error::Busy(_) | Error::RequestTimeout(_) => {
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        _ => {}
    }
    resp
}

pub(super) fn json_response(status: StatusCode, body: &serde_json::Value) -> HttpResponse {
    let mut resp = http::Response::new(HttpBody::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

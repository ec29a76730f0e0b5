//! The file routes, which do not fit JSON-RPC, streamed both ways and never buffered
//! whole ([`super::http`] routes and authenticates them):
//! - `PUT /uploads/<id>/files/<path>`: the body becomes that file of the upload.
//! - `PUT /uploads/<id>/archive`: a tar archive, checked whole, then unpacked.
//! - `GET /uploads/<id>/archive`: the files of an upload this node holds, as a tar
//!   archive (for the node that runs the job consuming it).
//! - `GET|HEAD /jobs/<id>/artifacts/<name>`: an artifact, with `Content-Length` and
//!   `ETag` = its SHA-256; `Range: bytes=first-last` (or `first-`) answers `206` with
//!   that part. An artifact on another node is fetched from it and passed on
//!   ([`crate::cluster::Cluster`]).

use super::http::{HttpContext, json_response};
use crate::auth::Scope;
use crate::cluster::Cluster;
use crate::jobs::{Caller, Error};
use ::http::{StatusCode, header};
use bytes::Bytes;
use http_body_util::BodyExt as _;
use jsonrpsee::core::BoxError;
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse};
use tokio::io::AsyncWriteExt as _;

fn require(caller: &Caller, scope: Scope) -> Result<(), Error> {
    if caller.has(scope) {
        Ok(())
    } else {
        Err(Error::Forbidden(format!("this token lacks the {:?} scope", scope.as_str())))
    }
}

/// The bytes the request says it carries, when it says so.
fn content_length<B>(req: &HttpRequest<B>) -> Option<u64> {
    req.headers().get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Receives the body into a staged file, failing once more than `max` bytes arrived
/// (or when `Content-Length` already says so), or when the body goes quiet for the
/// body read timeout.
async fn receive<B>(ctx: &HttpContext, req: HttpRequest<B>, max: u64) -> Result<tempfile::TempPath, Error>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let too_big = || Error::LimitExceeded(format!("bytes per upload: the limit is {}", ctx.uploads.limits().max_bytes));
    if content_length(&req).is_some_and(|n| n > max) {
        return Err(too_big());
    }
    let (file, path) = ctx.uploads.stage()?.into_parts();
    let mut file = tokio::fs::File::from_std(file);
    let mut body = req.into_body();
    let mut written = 0u64;
    let idle = ctx.body_read_timeout;
    let stalled = || Error::RequestTimeout(format!("request body: no byte arrived for {} s", idle.as_secs_f64()));
    while let Some(frame) = tokio::time::timeout(idle, body.frame()).await.map_err(|_| stalled())? {
        let frame = frame.map_err(|e| Error::invalid("body", format!("reading the request body: {}", e.into())))?;
        let Ok(data) = frame.into_data() else { continue };
        written += data.len() as u64;
        if written > max {
            return Err(too_big());
        }
        file.write_all(&data).await.map_err(|e| io_internal("receiving a file", &e))?;
    }
    file.sync_all().await.map_err(|e| io_internal("receiving a file", &e))?;
    Ok(path)
}

pub(super) async fn put_file<B>(
    ctx: &HttpContext,
    caller: &Caller,
    id: &str,
    path: &str,
    req: HttpRequest<B>,
) -> Result<HttpResponse, Error>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    require(caller, Scope::Submit)?;
    // Refuse early what can be refused before reading the body.
    let upload = ctx.uploads.open_for_write(caller, id).await?;
    crate::uploads::check_path(path).map_err(|m| Error::invalid("path", m))?;
    let max = ctx.uploads.limits().max_bytes;
    // Received whole beside the upload, then moved in: a refused or broken transfer
    // never leaves a partial file in it.
    let staged = receive(ctx, req, max).await?;
    let size = ctx.uploads.place(caller, &upload.id, path, staged).await?;
    Ok(json_response(StatusCode::OK, &serde_json::json!({ "id": upload.id, "path": path, "size_bytes": size })))
}

pub(super) async fn put_archive<B>(
    ctx: &HttpContext,
    caller: &Caller,
    id: &str,
    req: HttpRequest<B>,
) -> Result<HttpResponse, Error>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    require(caller, Scope::Submit)?;
    let upload = ctx.uploads.open_for_write(caller, id).await?;
    let limits = ctx.uploads.limits();
    // Tar adds a 512-byte header per entry and pads each entry to 512 bytes.
    let max = limits.max_bytes.saturating_add(limits.max_files.saturating_mul(1024)).saturating_add(1 << 20);
    let staged = receive(ctx, req, max).await?;
    let unpacked = ctx.uploads.unpack(caller, &upload.id, staged).await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "id": upload.id, "files": unpacked.files, "bytes": unpacked.bytes }),
    ))
}

pub(super) async fn get_artifact(
    ctx: &HttpContext,
    caller: &Caller,
    job_id: &str,
    name: &str,
    head: bool,
    headers: &http::HeaderMap,
) -> Result<HttpResponse, Error> {
    require(caller, Scope::Read)?;
    let if_none_match = headers.get(header::IF_NONE_MATCH);
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    if let Some(node) = ctx.jobs.files_elsewhere(caller, job_id).await? {
        if Cluster::is_peer(caller) {
            // The asking node thinks they are here; they are not: never ask on.
            return Err(Error::NotFound(format!("the files of job {job_id} are not on this node")));
        }
        let range = match range {
            Some(r) => {
                Some(parse_range(r, u64::MAX).ok_or_else(|| Error::invalid("Range", "must be bytes=first-last"))?)
            }
            None => None,
        };
        let answer = ctx.cluster.artifact(&node, job_id, name, head, range, if_none_match).await?;
        return Ok(passed_on(answer));
    }
    let (artifact, file) = ctx.jobs.open_artifact(caller, job_id, name).await?;
    let etag = format!("\"{}\"", artifact.sha256);
    let builder = http::Response::builder()
        .header(header::ETAG, &etag)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ACCEPT_RANGES, "bytes");
    if if_none_match.and_then(|v| v.to_str().ok()).is_some_and(|v| v.split(',').any(|t| t.trim() == etag)) {
        return builder.status(StatusCode::NOT_MODIFIED).body(HttpBody::from(Vec::new())).map_err(http_internal);
    }
    let size = artifact.size_bytes;
    let (builder, first, length) = match range {
        None => (builder.status(StatusCode::OK), 0, size),
        Some(r) => match parse_range(r, size) {
            Some((first, last)) if first < size => {
                let last = last.min(size - 1);
                let builder = builder
                    .status(StatusCode::PARTIAL_CONTENT)
                    .header(header::CONTENT_RANGE, format!("bytes {first}-{last}/{size}"));
                (builder, first, last - first + 1)
            }
            _ => {
                return builder
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                    .body(HttpBody::from(Vec::new()))
                    .map_err(http_internal);
            }
        },
    };
    let builder = builder.header(header::CONTENT_LENGTH, length);
    if head {
        return builder.body(HttpBody::from(Vec::new())).map_err(http_internal);
    }
    let mut file = tokio::fs::File::from_std(file);
    if first > 0 {
        use tokio::io::AsyncSeekExt as _;
        file.seek(std::io::SeekFrom::Start(first)).await.map_err(|e| {
            tracing::error!(job_id, error = %e, "seeking in an artifact");
            Error::Internal("reading the artifact failed".into())
        })?;
    }
    let stream = tokio_util::io::ReaderStream::new(tokio::io::AsyncReadExt::take(file, length));
    let body = http_body_util::StreamBody::new(futures::TryStreamExt::map_ok(stream, http_body::Frame::data));
    builder.body(HttpBody::new(body)).map_err(http_internal)
}

/// The files of an upload this node holds, as a tar archive (what another node fetches
/// for the job it runs that consumes it).
pub(super) async fn get_upload_archive(ctx: &HttpContext, caller: &Caller, id: &str) -> Result<HttpResponse, Error> {
    require(caller, Scope::Read)?;
    let (path, size) = ctx.uploads.pack(caller, id).await?;
    let file = tokio::fs::File::open(&path).await.map_err(|e| {
        tracing::error!(upload_id = id, error = %e, "opening a packed upload");
        Error::Internal("reading the upload failed".into())
    })?;
    // The staged archive is unlinked now; the open file streams on.
    drop(path);
    let stream = tokio_util::io::ReaderStream::new(file);
    let body = http_body_util::StreamBody::new(futures::TryStreamExt::map_ok(stream, http_body::Frame::data));
    http::Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-tar")
        .header(header::CONTENT_LENGTH, size)
        .body(HttpBody::new(body))
        .map_err(http_internal)
}

/// `bytes=first-last` or `bytes=first-` (to the end of `size` bytes), one range only.
fn parse_range(value: &str, size: u64) -> Option<(u64, u64)> {
    let (first, last) = value.trim().strip_prefix("bytes=")?.split_once('-')?;
    let first: u64 = first.trim().parse().ok()?;
    let last: u64 = match last.trim() {
        "" => size.saturating_sub(1),
        l => l.parse().ok()?,
    };
    (first <= last).then_some((first, last))
}

/// Another node's answer, passed on as it came: status, the headers that describe
/// the body, and the body streamed.
fn passed_on(answer: crate::cluster::Answer) -> HttpResponse {
    let (parts, body) = answer.into_parts();
    let mut response = http::Response::new(HttpBody::new(body));
    *response.status_mut() = parts.status;
    for name in [
        header::CONTENT_TYPE,
        header::CONTENT_LENGTH,
        header::CONTENT_RANGE,
        header::ETAG,
        header::ACCEPT_RANGES,
        header::WWW_AUTHENTICATE,
    ] {
        if let Some(v) = parts.headers.get(&name) {
            response.headers_mut().insert(name, v.clone());
        }
    }
    response
}

fn io_internal(what: &str, e: &std::io::Error) -> Error {
    tracing::error!(error = %e, "{what}");
    Error::Internal(format!("{what} failed"))
}

fn http_internal(e: http::Error) -> Error {
    tracing::error!(error = %e, "building a response");
    Error::Internal("building the response failed".into())
}

//! `uploads.*`: files sent in for a job to find under `/input`. An upload is opened,
//! filled a file (or a range of one) at a time, and finalized before a job may name it
//! as `files_id`; all of that needs `submit`, reading one back `read`. Bytes travel
//! base64-encoded here; large files go over HTTP instead (`PUT /uploads/<id>/…`, in
//! [`http`](super::http)).

use super::api::{Access, Api};
use super::{Empty, IdRequest, to_rpc_error};
use crate::auth::Scope;
use crate::jobs;
use crate::uploads::PutResult;
use base64::Engine as _;
use jobhost_model::Upload;
use schemars::JsonSchema;
use serde::Deserialize;

/// Registers `uploads.create`, `uploads.put`, `uploads.finalize`, `uploads.get` and
/// `uploads.list`.
pub(super) fn register(api: &mut Api) -> anyhow::Result<()> {
    use Access::Scope as Needs;
    use Scope::{Read, Submit};
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
    api.method::<ListRequest, jobhost_model::UploadPage, _, _>(
        "uploads.list",
        "Uploads, newest first, a page at a time.",
        Needs(Read),
        |req, caller, ctx| async move {
            ctx.uploads.list(&caller, req.cursor.as_deref(), req.limit).await.map_err(to_rpc_error)
        },
    )?;
    Ok(())
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
struct ListRequest {
    /// The last id of the previous page.
    #[serde(default)]
    cursor: Option<String>,
    /// Page size, 1–1000 (default 100).
    #[serde(default)]
    limit: Option<u32>,
}

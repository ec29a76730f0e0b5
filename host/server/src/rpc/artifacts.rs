//! `artifacts.*`: the files a job left in `/output`, listed and read over JSON-RPC.
//! A read returns a bounded range, base64-encoded, so a large artifact never fills one
//! answer; whole files stream over HTTP instead (`GET /jobs/<id>/artifacts/<name>`, in
//! [`http`](super::http)). Both need `read` and see only the caller's jobs.

use super::api::{Access, Api};
use super::to_rpc_error;
use crate::auth::Scope;
use crate::jobs;
use base64::Engine as _;
use jobhost_model::{ArtifactData, ArtifactList};
use schemars::JsonSchema;
use serde::Deserialize;

/// `artifacts.read` without `length`.
pub const DEFAULT_READ: u64 = 1 << 20;
/// The most one `artifacts.read` returns (base64 makes it a third larger on the wire).
pub const MAX_READ: u64 = 16 << 20;

/// Registers `artifacts.list` and `artifacts.read`.
pub(super) fn register(api: &mut Api) -> anyhow::Result<()> {
    use Access::Scope as Needs;
    use Scope::Read;
    api.method::<JobIdRequest, ArtifactList, _, _>(
        "artifacts.list",
        "The files a job left in /output.",
        Needs(Read),
        |req, caller, ctx| async move {
            let artifacts = ctx.jobs.artifacts(&caller, &req.job_id).await.map_err(to_rpc_error)?;
            Ok(ArtifactList { artifacts })
        },
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
            let offset = req.offset.unwrap_or(0);
            let elsewhere = ctx.jobs.files_elsewhere(&caller, &req.job_id).await.map_err(to_rpc_error)?;
            let (data, eof) = match elsewhere {
                None => ctx.jobs.read_artifact(&caller, &req.job_id, &req.name, offset, length).await,
                Some(node) => read_elsewhere(&ctx, &caller, &node, &req.job_id, &req.name, offset, length).await,
            }
            .map_err(to_rpc_error)?;
            let data_base64 = base64::engine::general_purpose::STANDARD.encode(data);
            Ok(ArtifactData { data_base64, eof })
        },
    )?;
    Ok(())
}

/// `artifacts.read` of an artifact on node `node`: the range is asked of that node.
async fn read_elsewhere(
    ctx: &super::Context,
    caller: &jobs::Caller,
    node: &str,
    job_id: &str,
    name: &str,
    offset: u64,
    length: u64,
) -> jobs::Result<(Vec<u8>, bool)> {
    use http_body_util::BodyExt as _;
    let size = ctx.jobs.artifact(caller, job_id, name).await?.size_bytes;
    if offset > size {
        return Err(jobs::Error::invalid("offset", format!("is past the end ({size} bytes)")));
    }
    if offset == size {
        return Ok((Vec::new(), true));
    }
    let last = offset.saturating_add(length).min(size) - 1;
    let answer = ctx.cluster.artifact(node, job_id, name, false, Some((offset, last)), None).await?;
    let status = answer.status();
    let body = answer.into_body().collect().await.map_err(|e| {
        jobs::Error::Unavailable(format!("reading artifact {name:?} of job {job_id} from worker {node}: {e}"))
    })?;
    if status != ::http::StatusCode::PARTIAL_CONTENT {
        tracing::warn!(job_id, node, %status, "another node did not give an artifact's range");
        return Err(jobs::Error::Unavailable(format!(
            "worker {node} answered {status} for artifact {name:?} of job {job_id}"
        )));
    }
    let data = body.to_bytes().to_vec();
    let eof = offset + data.len() as u64 >= size;
    Ok((data, eof))
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

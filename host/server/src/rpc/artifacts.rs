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
            let (data, eof) = ctx
                .jobs
                .read_artifact(&caller, &req.job_id, &req.name, req.offset.unwrap_or(0), length)
                .await
                .map_err(to_rpc_error)?;
            let data_base64 = base64::engine::general_purpose::STANDARD.encode(data);
            Ok(ArtifactData { data_base64, eof })
        },
    )?;
    Ok(())
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

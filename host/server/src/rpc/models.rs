//! `models.*`: pulls from the hub and the local model cache. The cache is the
//! server's, shared by its users: pulling needs `submit`, listing `read`, and deleting
//! a model or pruning pull jobs `admin`.

use super::api::{Access, Api};
use super::to_rpc_error;
use crate::auth::Scope;
use crate::jobs::Submitted;
use crate::models::{ModelEntry, PullRequest};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Registers `models.pull`, `models.list`, `models.delete` and `models.prune`.
pub(super) fn register(api: &mut Api) -> anyhow::Result<()> {
    api.method::<PullRequest, Submitted, _, _>(
        "models.pull",
        "Starts (or returns the running) pull of a model from the hub: a job of kind pull.",
        Access::Scope(Scope::Submit),
        |req, caller, ctx| async move { ctx.models.pull(&caller, req).await.map_err(to_rpc_error) },
    )?;
    api.method::<super::Empty, ModelList, _, _>(
        "models.list",
        "The snapshots in the server's model cache.",
        Access::Scope(Scope::Read),
        |_, _, ctx| async move {
            let models = ctx.models.list().await.map_err(to_rpc_error)?;
            Ok(ModelList { models })
        },
    )?;
    api.method::<ModelRequest, Deleted, _, _>(
        "models.delete",
        "Removes a model (every revision) from the cache.",
        Access::Scope(Scope::Admin),
        |req, _, ctx| async move {
            ctx.models.delete(&req.model).await.map_err(to_rpc_error)?;
            Ok(Deleted { model: req.model, deleted: true })
        },
    )?;
    api.method::<PruneRequest, Pruned, _, _>(
        "models.prune",
        "Deletes pull jobs that ended more than older_than_days days ago.",
        Access::Scope(Scope::Admin),
        |req, caller, ctx| async move {
            let pruned = ctx.models.prune(&caller, req.older_than_days).await.map_err(to_rpc_error)?;
            Ok(Pruned { pruned })
        },
    )?;
    Ok(())
}

/// `models.delete` params.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ModelRequest {
    /// Repository, `org/name`.
    model: String,
}

/// `models.prune` params.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PruneRequest {
    /// Pull jobs that ended longer ago than this many days are deleted.
    older_than_days: u32,
}

/// `models.list` result.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ModelList {
    /// One entry per snapshot (and per ref pointing at it).
    pub models: Vec<ModelEntry>,
}

/// `models.delete` result.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Deleted {
    /// The repository.
    pub model: String,
    /// Always true: a model that is not cached is a `not_found` error.
    pub deleted: bool,
}

/// `models.prune` result.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Pruned {
    /// How many pull jobs were deleted.
    pub pruned: u64,
}

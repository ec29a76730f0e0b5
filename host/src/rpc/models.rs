//! `models.*`: pulls from the hub and the local model cache. The cache is the
//! server's, shared by its users: pulling needs `submit`, listing `read`, and deleting
//! a model or pruning pull jobs `admin`.

use super::{Context, authorize, parse, to_rpc_error};
use crate::auth::Scope;
use crate::models::PullRequest;
use jsonrpsee::RpcModule;
use jsonrpsee::types::ErrorObjectOwned;
use serde::Deserialize;

/// Registers `models.pull`, `models.list`, `models.delete` and `models.prune`.
pub(super) fn register(m: &mut RpcModule<Context>) -> anyhow::Result<()> {
    m.register_async_method("models.pull", |p, ctx, ext| async move {
        let caller = authorize(&ctx, &ext, Scope::Submit)?;
        let req: PullRequest = parse(&p)?;
        ctx.models.pull(&caller, req).await.map_err(to_rpc_error)
    })?;
    m.register_async_method("models.list", |p, ctx, ext| async move {
        authorize(&ctx, &ext, Scope::Read)?;
        let _: super::Empty = parse(&p)?;
        let models = ctx.models.list().await.map_err(to_rpc_error)?;
        Ok::<_, ErrorObjectOwned>(serde_json::json!({ "models": models }))
    })?;
    m.register_async_method("models.delete", |p, ctx, ext| async move {
        authorize(&ctx, &ext, Scope::Admin)?;
        let req: ModelRequest = parse(&p)?;
        ctx.models.delete(&req.model).await.map_err(to_rpc_error)?;
        Ok::<_, ErrorObjectOwned>(serde_json::json!({ "model": req.model, "deleted": true }))
    })?;
    m.register_async_method("models.prune", |p, ctx, ext| async move {
        let caller = authorize(&ctx, &ext, Scope::Admin)?;
        let req: PruneRequest = parse(&p)?;
        let pruned = ctx.models.prune(&caller, req.older_than_days).await.map_err(to_rpc_error)?;
        Ok::<_, ErrorObjectOwned>(serde_json::json!({ "pruned": pruned }))
    })?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelRequest {
    model: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PruneRequest {
    older_than_days: u32,
}

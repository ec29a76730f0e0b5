//! `workers.list`: the nodes sharing this server's database, as they report themselves
//! (see `nodes`); `read` scope, since it shows only what the nodes offer.
//! `workers.drain`: asks a node to take no new job and stop once its runs end; `admin`.

use super::api::{Access, Api};
use super::{Empty, to_rpc_error};
use crate::auth::Scope;
use jobhost_model::{Worker, WorkerList};
use schemars::JsonSchema;
use serde::Deserialize;

/// `workers.drain` params.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct DrainRequest {
    /// The node's id (`wrk_…`, from `workers.list`).
    id: String,
}

/// Registers `workers.list` and `workers.drain`.
pub(super) fn register(api: &mut Api) -> anyhow::Result<()> {
    api.method::<Empty, WorkerList, _, _>(
        "workers.list",
        "Every node on this database, the most recently started first: name, labels, status \
         (online, draining, offline; offline once it missed three heartbeats), version, \
         address, capacity, start and last heartbeat, and the jobs it runs now with what they \
         declared.",
        Access::Scope(Scope::Read),
        |_, _, ctx| async move { ctx.nodes.list().await.map(|workers| WorkerList { workers }).map_err(to_rpc_error) },
    )?;
    api.method::<DrainRequest, Worker, _, _>(
        "workers.drain",
        "Asks a node to drain: it claims no new job and stops once its running jobs end. \
         Returns the node, now draining; an offline node is a conflict.",
        Access::Scope(Scope::Admin),
        |req, _, ctx| async move { ctx.nodes.drain(&req.id).await.map_err(to_rpc_error) },
    )?;
    Ok(())
}

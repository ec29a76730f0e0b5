//! `workers.list`: the nodes sharing this server's database, as they report themselves
//! (see `nodes`); `read` scope, since it shows only what the nodes offer.

use super::api::{Access, Api};
use super::{Empty, to_rpc_error};
use crate::auth::Scope;
use jobhost_model::WorkerList;

/// Registers `workers.list`.
pub(super) fn register(api: &mut Api) -> anyhow::Result<()> {
    api.method::<Empty, WorkerList, _, _>(
        "workers.list",
        "Every node on this database, the most recently started first: name, labels, status \
         (online, draining, offline; offline once it missed three heartbeats), version, \
         address, capacity, start and last heartbeat.",
        Access::Scope(Scope::Read),
        |_, _, ctx| async move { ctx.nodes.list().await.map(|workers| WorkerList { workers }).map_err(to_rpc_error) },
    )?;
    Ok(())
}

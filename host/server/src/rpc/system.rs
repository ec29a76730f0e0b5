//! `system.*` and `resources.usage`: the server itself rather than any one record.
//! `system.health` is the one method that needs no token, so a client can tell a
//! server that answers from one that refuses it; `resources.usage` needs `read`, and
//! `system.gc`, which deletes files on the server's schedule, `admin`.

use super::api::{Access, Api};
use super::{Empty, to_rpc_error};
use crate::auth::Scope;
use crate::jobs::ResourceUsage;
use jobhost_model::{GcReport, Health};

/// Registers `system.health`, `resources.usage` and `system.gc`.
pub(super) fn register(api: &mut Api) -> anyhow::Result<()> {
    use Access::Scope as Needs;
    use Scope::{Admin, Read};
    api.public_method::<Empty, Health, _, _>(
        "system.health",
        "Whether the server answers, and its version.",
        |_, _| async { Ok(Health { status: "ok".into(), version: jobhost_model::VERSION.into() }) },
    )?;
    api.method::<Empty, ResourceUsage, _, _>(
        "resources.usage",
        "What running jobs have declared, and the capacity.",
        Needs(Read),
        |_, _, ctx| async move { ctx.jobs.usage().await.map_err(to_rpc_error) },
    )?;
    api.method::<Empty, GcReport, _, _>(
        "system.gc",
        "Sweeps now: expires stale uploads, cleans jobs past the retention, prunes their logs.",
        Needs(Admin),
        |_, _, ctx| async move { ctx.sweeper.sweep_now().await.map_err(to_rpc_error) },
    )?;
    Ok(())
}

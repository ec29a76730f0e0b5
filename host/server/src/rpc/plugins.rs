//! `plugins.*`: the components jobs run. Installing one needs `admin`, since every
//! user's jobs may then run it under the name it takes; listing them needs `read`.
//! A component travels base64-encoded in the request, so the transport's body limit
//! ([`TransportLimits`](super::TransportLimits)) bounds what can be installed.

use super::api::{Access, Api};
use super::{Empty, to_rpc_error};
use crate::auth::Scope;
use jobhost_model::{Installed, PluginList};
use schemars::JsonSchema;
use serde::Deserialize;

/// Registers `plugins.install` and `plugins.list`.
pub(super) fn register(api: &mut Api) -> anyhow::Result<()> {
    use Access::Scope as Needs;
    use Scope::{Admin, Read};
    api.method::<InstallRequest, Installed, _, _>(
        "plugins.install",
        "Installs a component (a `job`-world plugin or a WASI command) under a name: from its bytes, or by \
         the digest of bytes the server already holds (`not_found` when it does not). Bytes the server has \
         compiled already are not compiled again (`compiled: false`). `grants: [\"containers\"]` lets its jobs \
         run containers through `jobhost:plugin/executor`.",
        Needs(Admin),
        |req, _, ctx| async move {
            match (req.wasm_base64, req.digest) {
                (Some(wasm), None) => ctx.plugins.install(&req.name, &wasm, req.grants).await,
                (None, Some(digest)) => ctx.plugins.install_digest(&req.name, &digest, req.grants).await,
                _ => Err(jobhost_model::Error::invalid("wasm_base64", "give either wasm_base64 or digest")),
            }
            .map_err(to_rpc_error)
        },
    )?;
    api.method::<Empty, PluginList, _, _>(
        "plugins.list",
        "Installed components.",
        Needs(Read),
        |_, _, ctx| async move {
            let plugins = ctx.plugins.list().await.map_err(to_rpc_error)?;
            Ok(PluginList { plugins })
        },
    )?;
    Ok(())
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct InstallRequest {
    /// 1–64 of `[a-z0-9._-]`, starting with a letter or digit.
    name: String,
    /// The component's wasm bytes, base64.
    #[serde(default)]
    wasm_base64: Option<String>,
    /// Instead of the bytes: `sha256:<hex>` of a component the server already holds.
    #[serde(default)]
    digest: Option<String>,
    /// What its jobs may do beyond the sandbox: `containers` (run containers through
    /// `jobhost:plugin/executor`). None by default; an install replaces the grants.
    #[serde(default)]
    grants: Vec<jobhost_model::PluginGrant>,
}

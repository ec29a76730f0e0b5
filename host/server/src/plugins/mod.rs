//! Installed components: validating a name, handing the bytes to the runtime to
//! compile and classify, and recording the result with what an admin granted it
//! (installing needs `admin`, so granting does too). An install that fails leaves
//! nothing behind: the record is written only after the runtime accepted the bytes.

use crate::jobs::{Error, Result};
use base64::Engine as _;
use jobhost_model::ids;
use jobhost_model::{Installed, Plugin, PluginGrant};
use jobhost_runtime::{Runtime, RuntimeError};
use jobhost_store::Store;
use std::sync::Arc;

/// Longest plugin name.
const MAX_NAME: usize = 64;

/// The name the built-in model puller is installed under (by the models service).
pub const PULLER: &str = "model-pull";

/// Names of built-in components, which clients cannot install over.
pub const RESERVED: &[&str] = &[PULLER];

/// The plugins service; cheap to clone.
#[derive(Clone, Debug)]
pub struct Plugins {
    store: Arc<dyn Store>,
    runtime: Arc<Runtime>,
}

impl Plugins {
    /// The service over `store`, compiling with `runtime`.
    pub fn new(store: Arc<dyn Store>, runtime: Arc<Runtime>) -> Plugins {
        Plugins { store, runtime }
    }

    /// Installs (or replaces) the component `name` from base64-encoded wasm.
    pub async fn install(&self, name: &str, wasm_base64: &str, grants: Vec<PluginGrant>) -> Result<Installed> {
        validate_name(name)?;
        let wasm = base64::engine::general_purpose::STANDARD
            .decode(wasm_base64.trim())
            .map_err(|e| Error::invalid("wasm_base64", format!("is not valid base64: {e}")))?;
        client_name(name)?;
        self.store_component(name, wasm, grants).await
    }

    /// Names the component `digest` that the server already holds `name`, without its
    /// bytes: `not_found` when the server does not have it (send the bytes then).
    pub async fn install_digest(&self, name: &str, digest: &str, grants: Vec<PluginGrant>) -> Result<Installed> {
        client_name(name)?;
        let hex = digest.strip_prefix("sha256:").unwrap_or_default();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            return Err(Error::invalid("digest", "must be sha256: and 64 lower-case hex digits"));
        }
        let installed = match self.runtime.install_digest(digest).await {
            Err(RuntimeError::Missing(_)) => self.fetch(digest).await?.ok_or_else(|| {
                Error::NotFound(format!("component {digest} is not on this server; install it with its bytes"))
            })?,
            other => other.map_err(install_error)?,
        };
        self.record(name, installed, grants).await
    }

    /// Makes sure this node holds component `digest`, fetching it from the store when
    /// another node installed it. Cheap when it is linked here already.
    pub async fn ensure(&self, digest: &str) -> Result<()> {
        if self.runtime.is_linked(digest) {
            return Ok(());
        }
        match self.runtime.install_digest(digest).await {
            Ok(_) => Ok(()),
            Err(RuntimeError::Missing(_)) => match self.fetch(digest).await? {
                Some(_) => Ok(()),
                None => Err(Error::NotFound(format!("component {digest} is on no node and not in the database"))),
            },
            Err(other) => Err(install_error(other)),
        }
    }

    /// Installs component `digest` from the bytes the store keeps, if it keeps them.
    async fn fetch(&self, digest: &str) -> Result<Option<jobhost_runtime::Installed>> {
        let Some(wasm) = self.store.component(digest).await? else { return Ok(None) };
        let installed = self.runtime.install(wasm).await.map_err(install_error)?;
        if installed.digest != digest {
            tracing::error!(digest, got = installed.digest, "the stored bytes of a component have another digest");
            return Err(Error::Internal(format!("the stored bytes of component {digest} are corrupt")));
        }
        Ok(Some(installed))
    }

    /// Installs (or replaces) the component `name` from raw wasm bytes.
    pub async fn install_bytes(&self, name: &str, wasm: Vec<u8>) -> Result<Installed> {
        client_name(name)?;
        self.store_component(name, wasm, Vec::new()).await
    }

    /// Installs a built-in component under its reserved name.
    pub async fn install_reserved(&self, name: &str, wasm: Vec<u8>) -> Result<Installed> {
        self.store_component(name, wasm, Vec::new()).await
    }

    async fn store_component(&self, name: &str, wasm: Vec<u8>, grants: Vec<PluginGrant>) -> Result<Installed> {
        validate_name(name)?;
        if wasm.is_empty() {
            return Err(Error::invalid("wasm_base64", "is empty"));
        }
        let kept = wasm.clone();
        let installed = self.runtime.install(wasm).await.map_err(install_error)?;
        // Every node sharing the store can run it from now on.
        if !self.store.has_component(&installed.digest).await? {
            self.store.put_component(&installed.digest, &kept).await?;
        }
        self.record(name, installed, grants).await
    }

    /// Records `installed` under `name`.
    async fn record(
        &self,
        name: &str,
        installed: jobhost_runtime::Installed,
        mut grants: Vec<PluginGrant>,
    ) -> Result<Installed> {
        grants.sort();
        grants.dedup();
        let plugin = Plugin {
            grants,
            name: name.to_owned(),
            digest: installed.digest,
            kind: installed.kind,
            size_bytes: installed.size_bytes,
            installed_at: ids::now(),
        };
        self.store.put_plugin(&plugin).await?;
        Ok(Installed { plugin, compiled: installed.compiled })
    }

    /// Compiles `wasm` (or loads it from the cache on disk) without installing it under
    /// any name: a later install of the same bytes compiles nothing.
    pub async fn prepare(&self, wasm: Vec<u8>) -> Result<()> {
        self.runtime.install(wasm).await.map(|_| ()).map_err(install_error)
    }

    /// Every installed component.
    pub async fn list(&self) -> Result<Vec<Plugin>> {
        Ok(self.store.list_plugins().await?)
    }
}

/// The API's error for a component the runtime refused or could not store.
fn install_error(e: RuntimeError) -> Error {
    match e {
        RuntimeError::Invalid(msg) => Error::invalid("wasm_base64", msg),
        other => {
            tracing::error!(error = %other, "installing a component");
            Error::Internal("the component could not be stored".into())
        }
    }
}

/// A name a client may install under: valid, and not a built-in's.
fn client_name(name: &str) -> Result<()> {
    validate_name(name)?;
    if RESERVED.contains(&name) {
        return Err(Error::Forbidden(format!("{name:?} is reserved for a built-in component")));
    }
    Ok(())
}

/// A name is 1–64 of `[a-z0-9._-]`, starting with a letter or digit: safe in a URL,
/// a file name and argv[0].
fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "name",
            format!("must be 1 to {MAX_NAME} characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["hello", "word-count", "a.b_c", "9lives"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Hello", "../x", "-x", "a b", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}

//! Installed components by name.

use crate::Result;
use jobhost_model::Plugin;

/// Installed components.
#[async_trait::async_trait]
pub trait PluginStore: Send + Sync {
    /// Records `plugin` under its name, replacing an earlier install of that name.
    async fn put_plugin(&self, plugin: &Plugin) -> Result<()>;

    /// The plugin installed as `name`.
    /// Every submit asks this, so answers are kept in memory once read: the table
    /// changes only through [`PluginStore::put_plugin`] of this store, which updates them.
    async fn get_plugin(&self, name: &str) -> Result<Option<Plugin>>;

    /// Every installed plugin, by name.
    async fn list_plugins(&self) -> Result<Vec<Plugin>>;

    /// Whether the bytes of component `digest` are kept.
    async fn has_component(&self, digest: &str) -> Result<bool>;

    /// Keeps the bytes of component `digest` (`sha256:<hex>`), so that every node
    /// sharing the store can run it; bytes kept already stay as they are.
    async fn put_component(&self, digest: &str, wasm: &[u8]) -> Result<()>;

    /// The bytes of component `digest`, if kept.
    async fn component(&self, digest: &str) -> Result<Option<Vec<u8>>>;
}

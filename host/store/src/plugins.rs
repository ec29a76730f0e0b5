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
}

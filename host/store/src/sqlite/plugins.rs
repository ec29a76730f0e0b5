//! Installed components on SQLite, with the read-through cache every submit uses.

use super::{SqliteStore, plugin_from_row, to_i64};
use crate::{PluginStore, Result};
use jobhost_model::Plugin;
use std::sync::PoisonError;

#[async_trait::async_trait]
impl PluginStore for SqliteStore {
    async fn put_plugin(&self, plugin: &Plugin) -> Result<()> {
        sqlx::query(
            "INSERT INTO plugins (name, digest, kind, size_bytes, installed_at, grants) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET digest = excluded.digest, kind = excluded.kind, \
             size_bytes = excluded.size_bytes, installed_at = excluded.installed_at, grants = excluded.grants",
        )
        .bind(&plugin.name)
        .bind(&plugin.digest)
        .bind(plugin.kind.as_str())
        .bind(to_i64(plugin.size_bytes))
        .bind(&plugin.installed_at)
        .bind(serde_json::to_string(&plugin.grants).unwrap_or_else(|_| "[]".into()))
        .execute(&mut *self.write_turn().await?)
        .await?;
        self.plugins.write().unwrap_or_else(PoisonError::into_inner).insert(plugin.name.clone(), plugin.clone());
        Ok(())
    }

    async fn get_plugin(&self, name: &str) -> Result<Option<Plugin>> {
        if let Some(p) = self.plugins.read().unwrap_or_else(PoisonError::into_inner).get(name) {
            return Ok(Some(p.clone()));
        }
        let plugin =
            sqlx::query("SELECT name, digest, kind, size_bytes, installed_at, grants FROM plugins WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.read)
                .await?
                .map(|row| plugin_from_row(&row))
                .transpose()?;
        if let Some(p) = &plugin {
            self.plugins
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(p.name.clone())
                .or_insert_with(|| p.clone());
        }
        Ok(plugin)
    }

    async fn list_plugins(&self) -> Result<Vec<Plugin>> {
        sqlx::query("SELECT name, digest, kind, size_bytes, installed_at, grants FROM plugins ORDER BY name")
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(plugin_from_row)
            .collect()
    }

    async fn has_component(&self, digest: &str) -> Result<bool> {
        Ok(sqlx::query_scalar::<_, i64>("SELECT 1 FROM components WHERE digest = ?")
            .bind(digest)
            .fetch_optional(&self.read)
            .await?
            .is_some())
    }

    async fn put_component(&self, digest: &str, wasm: &[u8]) -> Result<()> {
        sqlx::query("INSERT INTO components (digest, wasm, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
            .bind(digest)
            .bind(wasm)
            .bind(jobhost_model::ids::now())
            .execute(&mut *self.write_turn().await?)
            .await?;
        Ok(())
    }

    async fn component(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT wasm FROM components WHERE digest = ?")
            .bind(digest)
            .fetch_optional(&self.read)
            .await?)
    }
}

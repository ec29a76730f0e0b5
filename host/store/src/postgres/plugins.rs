//! Installed components on Postgres.
//!
//! Unlike SQLite's, this backend keeps no copy of the plugins it read: several nodes
//! may install under the same name, and a copy would go on answering with the digest
//! another node replaced. Every answer is read from the table (one indexed look-up).

use super::{PgStore, plugin_from_row, to_i64};
use crate::{PluginStore, Result};
use jobhost_model::Plugin;

/// Every column of a plugin row.
macro_rules! plugin_columns {
    () => {
        concat!("name, digest, kind, size_bytes, grants, ", ts!("installed_at"))
    };
}

#[async_trait::async_trait]
impl PluginStore for PgStore {
    async fn put_plugin(&self, plugin: &Plugin) -> Result<()> {
        sqlx::query(
            "INSERT INTO plugins (name, digest, kind, size_bytes, installed_at, grants) \
             VALUES ($1, $2, $3, $4, $5::timestamptz, $6) \
             ON CONFLICT (name) DO UPDATE SET digest = excluded.digest, kind = excluded.kind, \
             size_bytes = excluded.size_bytes, installed_at = excluded.installed_at, grants = excluded.grants",
        )
        .bind(&plugin.name)
        .bind(&plugin.digest)
        .bind(plugin.kind.as_str())
        .bind(to_i64(plugin.size_bytes))
        .bind(&plugin.installed_at)
        .bind(plugin.grants.iter().map(|g| g.as_str()).collect::<Vec<_>>())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_plugin(&self, name: &str) -> Result<Option<Plugin>> {
        sqlx::query(concat!("SELECT ", plugin_columns!(), " FROM plugins WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| plugin_from_row(&row))
            .transpose()
    }

    async fn list_plugins(&self) -> Result<Vec<Plugin>> {
        sqlx::query(concat!("SELECT ", plugin_columns!(), " FROM plugins ORDER BY name"))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(plugin_from_row)
            .collect()
    }

    async fn has_component(&self, digest: &str) -> Result<bool> {
        Ok(sqlx::query_scalar::<_, i32>("SELECT 1 FROM components WHERE digest = $1")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    async fn put_component(&self, digest: &str, wasm: &[u8]) -> Result<()> {
        sqlx::query(
            "INSERT INTO components (digest, wasm, created_at) VALUES ($1, $2, $3::timestamptz) ON CONFLICT DO NOTHING",
        )
        .bind(digest)
        .bind(wasm)
        .bind(jobhost_model::ids::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn component(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT wasm FROM components WHERE digest = $1")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await?)
    }
}

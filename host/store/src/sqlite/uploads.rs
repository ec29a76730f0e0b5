//! Upload records on SQLite.

use super::{SqliteStore, to_i64, to_u64};
use crate::uploads::upload_from_row;
use crate::{Result, UploadStore};
use jobhost_model::{Upload, ids};
use sqlx::Row;

/// Every column of an upload row.
macro_rules! upload_columns {
    () => {
        "id, user_id, state, size_bytes, file_count, job_id, expires_at, created_at, worker_id"
    };
}

#[async_trait::async_trait]
impl UploadStore for SqliteStore {
    async fn insert_upload(&self, u: &Upload) -> Result<()> {
        sqlx::query(
            "INSERT INTO uploads (id, user_id, state, expires_at, created_at, updated_at, worker_id) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&u.id)
        .bind(&u.user_id)
        .bind(u.state.as_str())
        .bind(&u.expires_at)
        .bind(&u.created_at)
        .bind(&u.created_at)
        .bind(&u.worker_id)
        .execute(&mut *self.write_turn().await?)
        .await?;
        Ok(())
    }

    async fn get_upload(&self, id: &str) -> Result<Option<Upload>> {
        let sql = concat!("SELECT ", upload_columns!(), " FROM uploads WHERE id = ?");
        sqlx::query(sql).bind(id).fetch_optional(&self.read).await?.map(|r| upload_from_row(&r)).transpose()
    }

    async fn list_uploads(&self, user_id: Option<&str>, before_id: Option<&str>, limit: u32) -> Result<Vec<Upload>> {
        let sql = concat!(
            "SELECT ",
            upload_columns!(),
            " FROM uploads WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3"
        );
        let rows = sqlx::query(sql).bind(user_id).bind(before_id).bind(limit).fetch_all(&self.read).await?;
        rows.iter().map(upload_from_row).collect()
    }

    async fn live_uploads_of(&self, user_id: &str) -> Result<(u64, u64)> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(size_bytes), 0) AS bytes FROM uploads \
             WHERE user_id = ? AND state IN ('open', 'finalized')",
        )
        .bind(user_id)
        .fetch_one(&self.read)
        .await?;
        Ok((to_u64(row.try_get("n")?), to_u64(row.try_get("bytes")?)))
    }

    async fn set_upload_size(&self, id: &str, bytes: u64, files: u64) -> Result<()> {
        sqlx::query(
            "UPDATE uploads SET size_bytes = ?, file_count = ?, updated_at = ? WHERE id = ? AND state = 'open'",
        )
        .bind(to_i64(bytes))
        .bind(to_i64(files))
        .bind(ids::now())
        .bind(id)
        .execute(&mut *self.write_turn().await?)
        .await?;
        Ok(())
    }

    async fn finalize_upload(&self, id: &str, bytes: u64, files: u64) -> Result<Option<Upload>> {
        let sql = concat!(
            "UPDATE uploads SET state = 'finalized', size_bytes = ?, file_count = ?, updated_at = ? \
             WHERE id = ? AND state = 'open' RETURNING ",
            upload_columns!()
        );
        sqlx::query(sql)
            .bind(to_i64(bytes))
            .bind(to_i64(files))
            .bind(ids::now())
            .bind(id)
            .fetch_optional(&mut *self.write_turn().await?)
            .await?
            .map(|r| upload_from_row(&r))
            .transpose()
    }

    async fn expire_uploads(&self, now: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "UPDATE uploads SET state = 'expired', updated_at = ?1 \
             WHERE state IN ('open', 'finalized') AND expires_at <= ?1 RETURNING id",
        )
        .bind(now)
        .fetch_all(&mut *self.write_turn().await?)
        .await?)
    }
}

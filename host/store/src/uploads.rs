//! Uploads: their records and states (their files live on disk, owned by the uploads
//! service).

use crate::{Result, StoreError};
use jobhost_model::{Upload, UploadState};

/// Upload records.
#[async_trait::async_trait]
pub trait UploadStore: Send + Sync {
    /// Records a new upload.
    async fn insert_upload(&self, u: &Upload) -> Result<()>;

    /// The upload `id`.
    async fn get_upload(&self, id: &str) -> Result<Option<Upload>>;

    /// Uploads newest first, up to `limit`: only `user_id`'s when given, only those
    /// older than `before_id` when given.
    async fn list_uploads(&self, user_id: Option<&str>, before_id: Option<&str>, limit: u32) -> Result<Vec<Upload>>;

    /// How many open or finalized uploads `user_id` has, and their bytes.
    async fn live_uploads_of(&self, user_id: &str) -> Result<(u64, u64)>;

    /// Records the measured size of an open upload.
    async fn set_upload_size(&self, id: &str, bytes: u64, files: u64) -> Result<()>;

    /// `open` → `finalized` with its final size; `None` if it was not open.
    async fn finalize_upload(&self, id: &str, bytes: u64, files: u64) -> Result<Option<Upload>>;

    /// Marks every open or finalized upload whose time is past `now` expired; returns
    /// their ids (their files are to be deleted).
    async fn expire_uploads(&self, now: &str) -> Result<Vec<String>>;
}

/// An `uploads` row of either backend, its columns selected by these names (timestamps
/// as text), decoded the same way from both.
pub(crate) fn upload_from_row<R>(row: &R) -> Result<Upload>
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let state: String = row.try_get("state")?;
    let size = |name: &str| -> Result<u64> { Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or(0)) };
    Ok(Upload {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        state: UploadState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("upload state {state:?}")))?,
        size_bytes: size("size_bytes")?,
        file_count: size("file_count")?,
        job_id: row.try_get("job_id")?,
        expires_at: row.try_get("expires_at")?,
        created_at: row.try_get("created_at")?,
        worker_id: row.try_get("worker_id")?,
    })
}

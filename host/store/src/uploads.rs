//! Uploads: their records and states (their files live on disk, owned by the uploads
//! service).

use crate::Result;
use jobhost_model::Upload;

/// Upload records.
#[async_trait::async_trait]
pub trait UploadStore: Send + Sync {
    /// Records a new upload.
    async fn insert_upload(&self, u: &Upload) -> Result<()>;

    /// The upload `id`.
    async fn get_upload(&self, id: &str) -> Result<Option<Upload>>;

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

//! Output chunks, progress and artifacts on SQLite.

use super::{SqliteStore, artifact_from_row, to_i64, to_u64, writer};
use crate::queue;
use crate::{Done, LogStore, Queued, Result, StoreError, StoredChunk};
use jobhost_model::{Artifact, LogChunk, LogStream, Progress};
use sqlx::Row;

#[async_trait::async_trait]
impl LogStore for SqliteStore {
    fn set_progress(&self, id: &str, progress: &Progress) -> Queued<()> {
        let (done, answer) = queue::done_future();
        self.set_progress_then(id, progress.clone(), done);
        answer
    }

    fn set_progress_then(&self, id: &str, progress: Progress, done: Done) {
        queue::send(&self.ops, writer::Op::Progress(id.to_owned(), progress, done));
    }

    fn append_logs(&self, chunks: &[StoredChunk]) -> Queued<()> {
        if chunks.is_empty() {
            return Box::pin(async { Ok(()) });
        }
        let (done, answer) = queue::done_future();
        self.append_logs_then(chunks.to_vec(), done);
        answer
    }

    fn append_logs_then(&self, chunks: Vec<StoredChunk>, done: Done) {
        queue::send(&self.ops, writer::Op::AppendLogs(chunks, done));
    }

    async fn flush(&self) -> Result<()> {
        let (done, answer) = queue::done_future();
        queue::send(&self.ops, writer::Op::Flush(done));
        answer.await
    }

    async fn read_logs(&self, job_id: &str, since_seq: u64, limit: u32) -> Result<Vec<LogChunk>> {
        sqlx::query(
            "SELECT seq, stream, data, at FROM log_chunks WHERE job_id = ? AND seq >= ? \
             ORDER BY seq LIMIT ?",
        )
        .bind(job_id)
        .bind(to_i64(since_seq))
        .bind(limit)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|row| {
            let stream: String = row.try_get("stream")?;
            let seq = to_u64(row.try_get("seq")?);
            Ok(LogChunk {
                seq,
                attempt: jobhost_model::attempt_of_seq(seq),
                stream: LogStream::parse(&stream)
                    .ok_or_else(|| StoreError::Corrupt(format!("log stream {stream:?}")))?,
                data: row.try_get("data")?,
                at: row.try_get("at")?,
            })
        })
        .collect()
    }

    async fn prune_logs(&self, job_id: &str) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM log_chunks WHERE job_id = ?")
            .bind(job_id)
            .execute(&mut *self.write_turn().await?)
            .await?
            .rows_affected())
    }

    async fn get_artifact(&self, job_id: &str, name: &str) -> Result<Option<Artifact>> {
        sqlx::query("SELECT name, size_bytes, sha256 FROM artifacts WHERE job_id = ? AND name = ?")
            .bind(job_id)
            .bind(name)
            .fetch_optional(&self.read)
            .await?
            .map(|row| artifact_from_row(&row))
            .transpose()
    }

    async fn list_artifacts(&self, job_id: &str) -> Result<Vec<Artifact>> {
        sqlx::query("SELECT name, size_bytes, sha256 FROM artifacts WHERE job_id = ? ORDER BY name")
            .bind(job_id)
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(artifact_from_row)
            .collect()
    }
}

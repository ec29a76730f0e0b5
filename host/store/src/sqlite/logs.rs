//! Output chunks, progress and artifacts on SQLite.

use super::{SqliteStore, artifact_from_row, to_i64, to_u64, writer};
use crate::{Done, LogStore, Queued, Result, StoreError, StoredChunk};
use jobhost_model::{Artifact, LogChunk, LogStream, Progress};
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

#[async_trait::async_trait]
impl LogStore for SqliteStore {
    fn set_progress(&self, id: &str, progress: &Progress) -> Queued<()> {
        let (tx, rx) = oneshot::channel();
        self.set_progress_then(id, progress.clone(), Box::new(move |r| drop(tx.send(r))));
        Box::pin(
            async move { rx.await.unwrap_or_else(|_| Err(StoreError::Commit("the store's writer stopped".into()))) },
        )
    }

    fn set_progress_then(&self, id: &str, progress: Progress, done: Done) {
        if let Err(mpsc::error::SendError(op)) = self.ops.send(writer::Op::Progress(id.to_owned(), progress, done))
            && let writer::Op::Progress(_, _, done) = op
        {
            done(Err(StoreError::Commit("the store is closed".into())));
        }
    }

    fn append_logs(&self, chunks: &[StoredChunk]) -> Queued<()> {
        let (tx, rx) = oneshot::channel();
        if chunks.is_empty() {
            drop(tx.send(Ok(())));
        } else {
            self.append_logs_then(chunks.to_vec(), Box::new(move |r| drop(tx.send(r))));
        }
        Box::pin(
            async move { rx.await.unwrap_or_else(|_| Err(StoreError::Commit("the store's writer stopped".into()))) },
        )
    }

    fn append_logs_then(&self, chunks: Vec<StoredChunk>, done: Done) {
        if let Err(mpsc::error::SendError(op)) = self.ops.send(writer::Op::AppendLogs(chunks, done))
            && let writer::Op::AppendLogs(_, done) = op
        {
            done(Err(StoreError::Commit("the store is closed".into())));
        }
    }

    async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError(op)) = self.ops.send(writer::Op::Flush(Box::new(move |r| drop(tx.send(r)))))
            && let writer::Op::Flush(done) = op
        {
            done(Err(StoreError::Commit("the store is closed".into())));
        }
        rx.await.unwrap_or_else(|_| Err(StoreError::Commit("the store's writer stopped".into())))
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
            Ok(LogChunk {
                seq: to_u64(row.try_get("seq")?),
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

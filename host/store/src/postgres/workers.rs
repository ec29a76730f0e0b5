//! Nodes on Postgres: each node writes its own row; every node reads them all.

use super::{PgStore, to_i64};
use crate::workers::worker_from_row;
use crate::{Result, StoreError, WorkerStore};
use jobhost_model::{Worker, WorkerStatus};

#[async_trait::async_trait]
impl WorkerStore for PgStore {
    async fn register_worker(&self, w: &Worker) -> Result<()> {
        let labels = serde_json::to_string(&w.labels).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO workers (id, name, labels, status, version, advertise, concurrency, millicpus, \
             memory_mb, started_at, last_seen, gpus) \
             VALUES ($1, $2, $3::json, $4, $5, $6, $7, $8, $9, $10::timestamptz, $11::timestamptz, $12::json) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, labels = excluded.labels, \
             status = excluded.status, version = excluded.version, advertise = excluded.advertise, \
             concurrency = excluded.concurrency, millicpus = excluded.millicpus, memory_mb = excluded.memory_mb, \
             started_at = excluded.started_at, last_seen = excluded.last_seen, gpus = excluded.gpus",
        )
        .bind(&w.id)
        .bind(&w.name)
        .bind(labels)
        .bind(w.status.as_str())
        .bind(&w.version)
        .bind(&w.advertise)
        .bind(i64::from(w.concurrency))
        .bind(i64::from(w.millicpus))
        .bind(to_i64(w.memory_mb))
        .bind(&w.started_at)
        .bind(&w.last_seen)
        .bind(serde_json::to_string(&w.gpus).map_err(|e| StoreError::Corrupt(e.to_string()))?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn heartbeat(&self, id: &str, at: &str) -> Result<Option<WorkerStatus>> {
        let status: Option<String> =
            sqlx::query_scalar("UPDATE workers SET last_seen = $1::timestamptz WHERE id = $2 RETURNING status")
                .bind(at)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        status
            .map(|s| WorkerStatus::parse(&s).ok_or_else(|| StoreError::Corrupt(format!("worker {id}: status {s:?}"))))
            .transpose()
    }

    async fn set_worker_status(&self, id: &str, status: WorkerStatus, at: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE workers SET status = $1, last_seen = $2::timestamptz WHERE id = $3")
            .bind(status.as_str())
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_workers(&self) -> Result<Vec<Worker>> {
        let held = crate::JobStore::held_gpus(self, None).await?;
        sqlx::query(concat!(
            "SELECT id, name, labels::text AS labels, status, version, advertise, concurrency, millicpus, \
             memory_mb, gpus::text AS gpus, ",
            ts!("started_at"),
            ", ",
            ts!("last_seen"),
            ", COALESCE(live.jobs, 0) AS running_jobs, COALESCE(live.cpus, 0)::bigint AS used_millicpus, \
             COALESCE(live.mem, 0)::bigint AS used_memory_mb \
             FROM workers LEFT JOIN (SELECT worker_id, COUNT(*) AS jobs, SUM(millicpus) AS cpus, \
             SUM(memory_mb) AS mem FROM jobs WHERE status IN ('starting', 'running') GROUP BY worker_id) \
             AS live ON live.worker_id = workers.id ORDER BY workers.started_at DESC, id DESC"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(worker_from_row)
        .collect::<Result<Vec<_>>>()
        .map(|workers| crate::workers::with_gpu_usage(workers, &held))
    }
}

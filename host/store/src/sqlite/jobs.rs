//! The queue and each job's life on SQLite: the group-committed writes go to the
//! writer thread; cleanup, cancel, leases and recovery use the async connection.

use super::{SqliteStore, job_from_row, to_u64, writer};
use crate::{Claimant, Claimed, Finish, JobMinutes, JobQuery, JobStore, NewJob, Queued, RemoteHook, Result};
use jobhost_model::{Artifact, Cpus, Job, JobKind, JobStatus, Usage, ids};
use sqlx::Row;
use tokio::sync::oneshot;

#[async_trait::async_trait]
impl JobStore for SqliteStore {
    fn insert_job(&self, job: &NewJob) -> Queued<Option<(Job, bool)>> {
        let (reply, rx) = oneshot::channel();
        self.send(writer::Op::InsertJob(Box::new(job.clone()), reply), rx)
    }

    async fn get_job(&self, id: &str) -> Result<Option<Job>> {
        self.get_job_from(&self.read, id).await
    }

    async fn list_jobs(&self, q: &JobQuery) -> Result<Vec<Job>> {
        sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR status = ?2) \
             AND (?3 IS NULL OR id < ?3) AND (?5 IS NULL OR plugin = ?5) \
             AND (?6 IS NULL OR EXISTS (SELECT 1 FROM json_each(jobs.labels) WHERE key = ?6 AND value = ?7)) \
             ORDER BY id DESC LIMIT ?4"
        ))
        .bind(&q.user_id)
        .bind(q.status.map(JobStatus::as_str))
        .bind(&q.before_id)
        .bind(q.limit)
        .bind(&q.plugin)
        .bind(q.label.as_ref().map(|(k, _)| k))
        .bind(q.label.as_ref().map(|(_, v)| v))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(job_from_row)
        .collect()
    }

    async fn get_jobs(&self, ids: &[String]) -> Result<Vec<Job>> {
        let mut jobs = Vec::with_capacity(ids.len());
        for id in ids {
            jobs.extend(self.get_job_from(&self.read, id).await?);
        }
        Ok(jobs)
    }

    async fn claim_next(&self, lease_until: &str, node: &Claimant) -> Result<Option<Job>> {
        Ok(self.claim(lease_until, node, 1).await?.pop())
    }

    fn claim(&self, lease_until: &str, node: &Claimant, max: usize) -> Queued<Vec<Job>> {
        let claimed = self.claim_early(lease_until, node, max);
        Box::pin(async move {
            let claimed = claimed.await?;
            claimed.committed.wait().await?;
            Ok(claimed.jobs)
        })
    }

    fn claim_early(&self, lease_until: &str, node: &Claimant, max: usize) -> Queued<Claimed> {
        let (reply, rx) = oneshot::channel();
        let node = Box::new(node.clone());
        self.send(writer::Op::Claim { lease_until: lease_until.to_owned(), node, max, reply }, rx)
    }

    async fn queue_depth(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE status = 'pending' AND run_at IS NULL")
            .fetch_one(&self.read)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn job_minutes(&self, user_id: Option<&str>, since_id: &str) -> Result<JobMinutes> {
        let rows: Vec<(String, Option<String>, Option<String>, i64)> = sqlx::query_as(
            "SELECT substr(created_at, 1, 16), substr(COALESCE(started_at, completed_at), 1, 16), \
             substr(completed_at, 1, 16), COUNT(*) FROM jobs WHERE id >= ?1 AND (?2 IS NULL OR user_id = ?2) \
             GROUP BY 1, 2, 3",
        )
        .bind(since_id)
        .bind(user_id)
        .fetch_all(&self.read)
        .await?;
        let now: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, COUNT(*) FROM jobs WHERE status IN ('pending', 'starting', 'running') \
             AND (?1 IS NULL OR user_id = ?1) GROUP BY status",
        )
        .bind(user_id)
        .fetch_all(&self.read)
        .await?;
        Ok(crate::jobs::minutes_from(rows, now))
    }

    async fn release_held(&self, now: &str) -> Result<u64> {
        Ok(sqlx::query(
            "UPDATE jobs SET run_at = NULL, updated_at = ?1 \
             WHERE status = 'pending' AND run_at IS NOT NULL AND run_at <= ?1",
        )
        .bind(now)
        .execute(&mut *self.write_turn().await?)
        .await?
        .rows_affected())
    }

    async fn next_held(&self) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT MIN(run_at) FROM jobs WHERE status = 'pending' AND run_at IS NOT NULL")
            .fetch_one(&self.read)
            .await?)
    }

    async fn attempts(&self, id: &str) -> Result<Vec<jobhost_model::JobAttempt>> {
        sqlx::query(
            "SELECT attempt, status, exit_code, error, started_at, ended_at, worker_id FROM job_attempts \
             WHERE job_id = ? ORDER BY attempt",
        )
        .bind(id)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(crate::jobs::attempt_from_row)
        .collect()
    }

    async fn held_gpus(&self, worker_id: Option<&str>) -> Result<std::collections::HashMap<String, Vec<u32>>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT jobs.worker_id, f.value FROM jobs, json_each(jobs.gpu_devices) AS f \
             WHERE jobs.status IN ('starting', 'running') AND jobs.gpus > 0 AND jobs.worker_id IS NOT NULL \
             AND (?1 IS NULL OR jobs.worker_id = ?1)",
        )
        .bind(worker_id)
        .fetch_all(&self.read)
        .await?;
        let mut held = std::collections::HashMap::<String, Vec<u32>>::new();
        for (worker, device) in rows {
            held.entry(worker).or_default().extend(u32::try_from(device).ok());
        }
        Ok(held)
    }

    async fn usage(&self, worker_id: &str) -> Result<(Usage, u64)> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(millicpus), 0) AS millicpus, COALESCE(SUM(memory_mb), 0) AS memory_mb, \
             COUNT(*) AS jobs FROM jobs WHERE status IN ('starting', 'running') AND worker_id = ?",
        )
        .bind(worker_id)
        .fetch_one(&self.read)
        .await?;
        Ok((
            Usage {
                cpus: Cpus::from_millis(u32::try_from(row.try_get::<i64, _>("millicpus")?).unwrap_or(u32::MAX)),
                memory_mb: to_u64(row.try_get("memory_mb")?),
            },
            to_u64(row.try_get("jobs")?),
        ))
    }

    fn mark_running(&self, id: &str, attempt: u32) -> Queued<Option<Job>> {
        let (reply, rx) = oneshot::channel();
        self.send(writer::Op::MarkRunning { id: id.to_owned(), attempt, reply }, rx)
    }

    async fn set_container_id(&self, id: &str, attempt: u32, container_id: &str) -> Result<bool> {
        Ok(sqlx::query("UPDATE jobs SET container_id = ? WHERE id = ? AND attempt = ?")
            .bind(container_id)
            .bind(id)
            .bind(attempt)
            .execute(&mut *self.write_turn().await?)
            .await?
            .rows_affected()
            == 1)
    }

    async fn renew_lease(&self, id: &str, attempt: u32, lease_until: &str) -> Result<bool> {
        Ok(sqlx::query(
            "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND attempt = ? \
             AND status IN ('starting', 'running')",
        )
        .bind(lease_until)
        .bind(id)
        .bind(attempt)
        .execute(&mut *self.write_turn().await?)
        .await?
        .rows_affected()
            == 1)
    }

    fn finish(&self, id: &str, attempt: u32, finish: &Finish, artifacts: &[Artifact]) -> Queued<Option<Job>> {
        let (reply, rx) = oneshot::channel();
        let (id, finish, artifacts) = (id.to_owned(), finish.clone(), artifacts.to_vec());
        self.send(writer::Op::Finish { id, attempt, finish, artifacts, reply }, rx)
    }

    async fn cancel(&self, id: &str, reason: &str) -> Result<Option<Job>> {
        let now = ids::now();
        sqlx::query(concat!(
            "UPDATE jobs SET status = 'cancelled', error = ?1, completed_at = ?2, updated_at = ?2, \
             lease_expires_at = NULL WHERE id = ?3 AND status IN ('pending', 'starting', 'running') \
             RETURNING ",
            job_columns!()
        ))
        .bind(reason)
        .bind(&now)
        .bind(id)
        .fetch_optional(&mut *self.write_turn().await?)
        .await?
        .map(|row| job_from_row(&row))
        .transpose()
    }

    async fn begin_cleanup(&self, id: &str) -> Result<Option<Job>> {
        sqlx::query(concat!(
            "UPDATE jobs SET status = 'cleaning', updated_at = ?1 WHERE id = ?2 \
             AND status IN ('completed', 'failed', 'timed_out', 'cancelled') RETURNING ",
            job_columns!()
        ))
        .bind(ids::now())
        .bind(id)
        .fetch_optional(&mut *self.write_turn().await?)
        .await?
        .map(|row| job_from_row(&row))
        .transpose()
    }

    async fn finish_cleanup(&self, id: &str) -> Result<Option<Job>> {
        let mut turn = self.write_turn().await?;
        let mut tx = sqlx::Connection::begin(&mut *turn).await?;
        sqlx::query("DELETE FROM artifacts WHERE job_id = ?").bind(id).execute(&mut *tx).await?;
        let job = sqlx::query(concat!(
            "UPDATE jobs SET status = 'cleaned', updated_at = ?1 WHERE id = ?2 AND status = 'cleaning' RETURNING ",
            job_columns!()
        ))
        .bind(ids::now())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| job_from_row(&row))
        .transpose()?;
        tx.commit().await?;
        Ok(job)
    }

    async fn recover_orphans(&self, worker_id: &str, error: &str) -> Result<Vec<Job>> {
        let sql =
            concat!(recover_sql!("?1", "?2"), " AND (worker_id = ?3 OR worker_id IS NULL) RETURNING ", job_columns!());
        sqlx::query(sql)
            .bind(error)
            .bind(ids::now())
            .bind(worker_id)
            .fetch_all(&mut *self.write_turn().await?)
            .await?
            .iter()
            .map(job_from_row)
            .collect()
    }

    async fn recover_lapsed(&self, now: &str) -> Result<Vec<Job>> {
        let sql = concat!(
            recover_sql!(
                "'worker ' || COALESCE((SELECT name FROM workers WHERE workers.id = jobs.worker_id), 'unknown') || ' lost'",
                "?1"
            ),
            " AND lease_expires_at < ?1 RETURNING ",
            job_columns!()
        );
        sqlx::query(sql).bind(now).fetch_all(&mut *self.write_turn().await?).await?.iter().map(job_from_row).collect()
    }

    fn on_remote(&self, _hook: RemoteHook) -> bool {
        // One process writes a SQLite file: there are no other writers to hear of.
        true
    }

    async fn jobs_ended_before(&self, before: &str, limit: u32) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM jobs WHERE status IN ('completed', 'failed', 'timed_out', 'cancelled') \
             AND completed_at < ? ORDER BY completed_at LIMIT ?",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(&self.read)
        .await?)
    }

    async fn active_pull(&self, model: &str, revision: Option<&str>) -> Result<Option<Job>> {
        sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE kind = 'pull' AND status IN ('pending', 'starting', 'running') \
             AND json_extract(input, '$.model') = ?1 \
             AND (?2 IS NULL OR COALESCE(json_extract(input, '$.revision'), 'main') = ?2) \
             ORDER BY id LIMIT 1"
        ))
        .bind(model)
        .bind(revision)
        .fetch_optional(&self.read)
        .await?
        .map(|row| job_from_row(&row))
        .transpose()
    }

    async fn prune_jobs(&self, kind: JobKind, ended_before: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "DELETE FROM jobs WHERE kind = ?1 \
             AND status IN ('completed', 'failed', 'timed_out', 'cancelled', 'cleaned') \
             AND completed_at IS NOT NULL AND completed_at < ?2 RETURNING id",
        )
        .bind(kind.as_str())
        .bind(ended_before)
        .fetch_all(&mut *self.write_turn().await?)
        .await?;
        rows.iter().map(|r| Ok(sqlx::Row::try_get::<String, _>(r, "id")?)).collect()
    }
}

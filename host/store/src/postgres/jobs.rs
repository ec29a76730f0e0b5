//! The queue and each job's life on Postgres: the group-committed writes go to the
//! writer task; cleanup, cancel, leases and recovery use the pool.

use super::writer::sql::notify_moved;
use super::{PgStore, job_from_row, no_nul, to_u64};
use crate::queue::{self, Op};
use crate::{Claimant, Claimed, Finish, JobMinutes, JobQuery, JobStore, NewJob, Queued, RemoteHook, Result};
use jobhost_model::{Artifact, Cpus, Job, JobKind, JobStatus, Usage, ids};
use sqlx::Row;
use tokio::sync::oneshot;

#[async_trait::async_trait]
impl JobStore for PgStore {
    fn insert_job(&self, job: &NewJob) -> Queued<Option<(Job, bool)>> {
        let (reply, rx) = oneshot::channel();
        queue::send_for(&self.ops, Op::InsertJob(Box::new(job.clone()), reply), rx)
    }

    async fn get_job(&self, id: &str) -> Result<Option<Job>> {
        self.get_job_from(id).await
    }

    async fn list_jobs(&self, q: &JobQuery) -> Result<Vec<Job>> {
        sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE ($1::text IS NULL OR user_id = $1) AND ($2::text IS NULL OR status = $2) \
             AND ($3::text IS NULL OR id < $3) AND ($5::text IS NULL OR plugin = $5) \
             AND ($6::text IS NULL OR labels::jsonb ->> $6 = $7) ORDER BY id DESC LIMIT $4"
        ))
        .bind(&q.user_id)
        .bind(q.status.map(JobStatus::as_str))
        .bind(&q.before_id)
        .bind(i64::from(q.limit))
        .bind(&q.plugin)
        .bind(q.label.as_ref().map(|(k, _)| k))
        .bind(q.label.as_ref().map(|(_, v)| v))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(job_from_row)
        .collect()
    }

    async fn get_jobs(&self, ids: &[String]) -> Result<Vec<Job>> {
        sqlx::query(concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = ANY($1)"))
            .bind(ids)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(job_from_row)
            .collect()
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
        let op = Op::Claim { lease_until: lease_until.to_owned(), node: Box::new(node.clone()), max, reply };
        queue::send_for(&self.ops, op, rx)
    }

    async fn queue_depth(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE status = 'pending' AND run_at IS NULL")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn job_minutes(&self, user_id: Option<&str>, since_id: &str) -> Result<JobMinutes> {
        let rows: Vec<(String, Option<String>, Option<String>, i64)> = sqlx::query_as(
            "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI'), \
             to_char(COALESCE(started_at, completed_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI'), \
             to_char(completed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI'), COUNT(*) \
             FROM jobs WHERE id >= $1 AND ($2::text IS NULL OR user_id = $2) GROUP BY 1, 2, 3",
        )
        .bind(since_id)
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        let now: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, COUNT(*) FROM jobs WHERE status IN ('pending', 'starting', 'running') \
             AND ($1::text IS NULL OR user_id = $1) GROUP BY status",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(crate::jobs::minutes_from(rows, now))
    }

    async fn release_held(&self, now: &str) -> Result<u64> {
        Ok(sqlx::query(
            "UPDATE jobs SET run_at = NULL, updated_at = $1::timestamptz \
             WHERE status = 'pending' AND run_at IS NOT NULL AND run_at <= $1::timestamptz",
        )
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn next_held(&self) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(concat!(
            "SELECT ",
            ts!("MIN(run_at)", "due"),
            " FROM jobs WHERE status = 'pending' AND run_at IS NOT NULL"
        ))
        .fetch_one(&self.pool)
        .await?)
    }

    async fn attempts(&self, id: &str) -> Result<Vec<jobhost_model::JobAttempt>> {
        sqlx::query(concat!(
            "SELECT attempt, status, exit_code, error, ",
            ts!("started_at"),
            ", ",
            ts!("ended_at"),
            ", worker_id FROM job_attempts WHERE job_id = $1 ORDER BY attempt"
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(crate::jobs::attempt_from_row)
        .collect()
    }

    async fn held_gpus(&self, worker_id: Option<&str>) -> Result<std::collections::HashMap<String, Vec<u32>>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT worker_id, unnest(gpu_devices) FROM jobs WHERE status IN ('starting', 'running') AND gpus > 0 \
             AND worker_id IS NOT NULL AND ($1::text IS NULL OR worker_id = $1)",
        )
        .bind(worker_id)
        .fetch_all(&self.pool)
        .await?;
        let mut held = std::collections::HashMap::<String, Vec<u32>>::new();
        for (worker, device) in rows {
            held.entry(worker).or_default().extend(u32::try_from(device).ok());
        }
        Ok(held)
    }

    async fn usage(&self, worker_id: &str) -> Result<(Usage, u64)> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(millicpus), 0)::BIGINT AS millicpus, COALESCE(SUM(memory_mb), 0)::BIGINT AS memory_mb, \
             COUNT(*) AS jobs FROM jobs WHERE status IN ('starting', 'running') AND worker_id = $1",
        )
        .bind(worker_id)
        .fetch_one(&self.pool)
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
        queue::send_for(&self.ops, Op::MarkRunning { id: id.to_owned(), attempt, reply }, rx)
    }

    async fn set_container_id(&self, id: &str, attempt: u32, container_id: &str) -> Result<bool> {
        Ok(sqlx::query("UPDATE jobs SET container_id = $1 WHERE id = $2 AND attempt = $3")
            .bind(container_id)
            .bind(id)
            .bind(i64::from(attempt))
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1)
    }

    async fn renew_lease(&self, id: &str, attempt: u32, lease_until: &str) -> Result<bool> {
        Ok(sqlx::query(
            "UPDATE jobs SET lease_expires_at = $1::timestamptz WHERE id = $2 AND attempt = $3 \
             AND status IN ('starting', 'running')",
        )
        .bind(lease_until)
        .bind(id)
        .bind(i64::from(attempt))
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    fn finish(&self, id: &str, attempt: u32, finish: &Finish, artifacts: &[Artifact]) -> Queued<Option<Job>> {
        let (reply, rx) = oneshot::channel();
        let (id, finish, artifacts) = (id.to_owned(), finish.clone(), artifacts.to_vec());
        queue::send_for(&self.ops, Op::Finish { id, attempt, finish, artifacts, reply }, rx)
    }

    async fn cancel(&self, id: &str, reason: &str) -> Result<Option<Job>> {
        let mut tx = self.pool.begin().await?;
        let job = sqlx::query(concat!(
            "UPDATE jobs SET status = 'cancelled', error = $1, completed_at = $2::timestamptz, \
             updated_at = $2::timestamptz, lease_expires_at = NULL \
             WHERE id = $3 AND status IN ('pending', 'starting', 'running') RETURNING ",
            job_columns!()
        ))
        .bind(no_nul(reason))
        .bind(ids::now())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| job_from_row(&row))
        .transpose()?;
        if let Some(job) = &job {
            // The node running it stops the run when it hears of this.
            notify_moved(&mut tx, &self.origin, &[(&job.id, job.status)]).await?;
        }
        tx.commit().await?;
        Ok(job)
    }

    async fn begin_cleanup(&self, id: &str) -> Result<Option<Job>> {
        sqlx::query(concat!(
            "UPDATE jobs SET status = 'cleaning', updated_at = $1::timestamptz WHERE id = $2 \
             AND status IN ('completed', 'failed', 'timed_out', 'cancelled') RETURNING ",
            job_columns!()
        ))
        .bind(ids::now())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(|row| job_from_row(&row))
        .transpose()
    }

    async fn finish_cleanup(&self, id: &str) -> Result<Option<Job>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM artifacts WHERE job_id = $1").bind(id).execute(&mut *tx).await?;
        let job = sqlx::query(concat!(
            "UPDATE jobs SET status = 'cleaned', updated_at = $1::timestamptz WHERE id = $2 \
             AND status = 'cleaning' RETURNING ",
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
        let sql = concat!(
            recover_sql!("$1", "$2::timestamptz"),
            " AND (worker_id = $3 OR worker_id IS NULL) RETURNING ",
            job_columns!()
        );
        let query = sqlx::query(sql).bind(no_nul(error).into_owned()).bind(ids::now()).bind(worker_id.to_owned());
        self.recover(query).await
    }

    async fn recover_lapsed(&self, now: &str) -> Result<Vec<Job>> {
        let sql = concat!(
            recover_sql!(
                "'worker ' || COALESCE((SELECT name FROM workers WHERE workers.id = jobs.worker_id), 'unknown') || ' lost'",
                "$1::timestamptz"
            ),
            " AND lease_expires_at < $1::timestamptz RETURNING ",
            job_columns!()
        );
        self.recover(sqlx::query(sql).bind(now.to_owned())).await
    }

    fn on_remote(&self, hook: RemoteHook) -> bool {
        let mut listener = self.listener.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if listener.is_some() {
            return false;
        }
        let task = tokio::spawn(super::listen::run(self.pool.clone(), self.origin.clone(), hook));
        *listener = Some(task.abort_handle());
        true
    }

    async fn jobs_ended_before(&self, before: &str, limit: u32) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM jobs WHERE status IN ('completed', 'failed', 'timed_out', 'cancelled') \
             AND completed_at < $1::timestamptz ORDER BY completed_at LIMIT $2",
        )
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    /// The input is matched here rather than in SQL: Postgres cannot read a field of a
    /// JSON value that holds the escape `\u0000` anywhere, and a client's input may.
    async fn active_pull(&self, model: &str, revision: Option<&str>) -> Result<Option<Job>> {
        let jobs = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE kind = 'pull' AND status IN ('pending', 'starting', 'running') ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        for row in &jobs {
            let job = job_from_row(row)?;
            if pulls(&job, model, revision) {
                return Ok(Some(job));
            }
        }
        Ok(None)
    }

    async fn prune_jobs(&self, kind: JobKind, ended_before: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "DELETE FROM jobs WHERE kind = $1 \
             AND status IN ('completed', 'failed', 'timed_out', 'cancelled', 'cleaned') \
             AND completed_at IS NOT NULL AND completed_at < $2::timestamptz RETURNING id",
        )
        .bind(kind.as_str())
        .bind(ended_before)
        .fetch_all(&self.pool)
        .await?)
    }
}

/// Whether the pull `job` fetches `model` at `revision` (any revision when `None`),
/// as SQLite's `json_extract` reads the input: `model` a string equal to `model`,
/// `revision` a string equal to `revision`, a missing or null one meaning `main`.
fn pulls(job: &Job, model: &str, revision: Option<&str>) -> bool {
    let Some(input) = &job.input else { return false };
    if input.get("model").and_then(serde_json::Value::as_str) != Some(model) {
        return false;
    }
    match (revision, input.get("revision")) {
        (None, _) => true,
        (Some(want), None | Some(serde_json::Value::Null)) => want == "main",
        (Some(want), Some(got)) => got.as_str() == Some(want),
    }
}

impl PgStore {
    /// Runs a recovery statement ([`recover_sql!`]) and tells the other nodes of the
    /// jobs it moved (those back in the queue wake them), in one transaction.
    async fn recover(
        &self,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Vec<Job>> {
        let mut tx = self.pool.begin().await?;
        let jobs = query.fetch_all(&mut *tx).await?.iter().map(job_from_row).collect::<Result<Vec<_>>>()?;
        if !jobs.is_empty() {
            let moved: Vec<(&str, JobStatus)> = jobs.iter().map(|j| (j.id.as_str(), j.status)).collect();
            notify_moved(&mut tx, &self.origin, &moved).await?;
        }
        tx.commit().await?;
        Ok(jobs)
    }
}

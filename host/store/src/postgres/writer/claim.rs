//! The claim statements: admission of pending jobs into the capacity the `starting`
//! and `running` jobs leave, in queue order (priority, then age), as on SQLite.
//!
//! Admission is arithmetic inside the statement, so it stays exact however many
//! claims share a batch: each sees the rows the ones before it moved. What Postgres
//! adds is other writers: the rows a claim picks are locked `FOR UPDATE SKIP LOCKED`,
//! so a claim of another node running at the same moment passes over them (and this
//! one over its), and the outer `status = 'pending'` guard still holds after the lock,
//! so no job is ever taken twice. A claim does not wait for another node's claim to
//! commit; what that one takes counts against the capacity once it has committed.
//!
//! A claim is for one node ([`Claimant`]): only that node's live jobs count against
//! its capacity (no other node's claim changes them, so admission stays exact across
//! nodes), the jobs it takes record it as their `worker_id`, and a job whose
//! `requires` is not contained in the node's labels (`<@`) is passed over. A node
//! recorded `draining` claims nothing, from the moment that is committed.

use super::sql::jobs_of;
use crate::postgres::to_i64;
use crate::{Claimant, Result};
use jobhost_model::{Job, ids};
use sqlx::postgres::PgConnection;

/// Every claim starts with [`claim_head`]. Unlike SQLite, where a statement is a call
/// in the same thread and eight single claims cost about one windowed claim, each
/// statement here is a round trip: measured on the bench, one head claim of four jobs
/// cost 0.63 ms of the server's time against 0.35 ms for each single claim.
const HEAD_CLAIM_AT: usize = 1;

/// Up to `max` claims. First one conditional UPDATE takes the
/// longest run at the head of the queue that fits in the room left (running sums over
/// the queue order); then single claims, each seeing the ones before it, go on past a
/// job too large for the room, as [`claim_one`] always does.
pub(super) async fn claim(conn: &mut PgConnection, lease_until: &str, node: &Claimant, max: usize) -> Result<Vec<Job>> {
    let now = ids::now();
    let mut jobs =
        if node.gpus.is_empty() { Vec::new() } else { claim_gpu_jobs(conn, lease_until, &now, node, max).await? };
    if max - jobs.len() >= HEAD_CLAIM_AT {
        jobs.extend(claim_head(conn, lease_until, &now, node, max - jobs.len()).await?);
    }
    while jobs.len() < max {
        match claim_one(conn, lease_until, &now, node).await? {
            Some(job) => jobs.push(job),
            None => break,
        }
    }
    Ok(jobs)
}

/// Claims the longest prefix (at most `max` jobs) of the pending jobs no other writer
/// holds whose declared CPUs and memory fit in what the `starting` and `running` jobs
/// leave, in queue order. The head is locked before the sums are taken, so the
/// prefix is made of rows this transaction holds. The ids are picked first, once
/// (`= ANY(ARRAY(…))`), and the rows then found by primary key: written as `IN (…)`,
/// the planner may walk every pending job and test each against the prefix.
async fn claim_head(
    conn: &mut PgConnection,
    lease_until: &str,
    now: &str,
    node: &Claimant,
    max: usize,
) -> Result<Vec<Job>> {
    let query = sqlx::query(concat!(
        "UPDATE jobs SET status = 'starting', attempt = attempt + 1, lease_expires_at = $1::timestamptz, \
         updated_at = $2::timestamptz, worker_id = $6 \
         WHERE status = 'pending' AND NOT EXISTS (SELECT 1 FROM workers WHERE id = $6 AND status = 'draining') \
         AND id = ANY(ARRAY(\
           SELECT id FROM (\
             SELECT id, SUM(millicpus) OVER w AS cpus_upto, SUM(memory_mb) OVER w AS memory_upto FROM (\
               SELECT id, priority, millicpus, memory_mb FROM jobs WHERE status = 'pending' AND run_at IS NULL AND gpus = 0 \
               AND requires <@ $7::text[] \
               ORDER BY priority DESC, id LIMIT $5 FOR UPDATE SKIP LOCKED) AS head \
             WINDOW w AS (ORDER BY priority DESC, id ROWS UNBOUNDED PRECEDING)) AS sums \
           WHERE cpus_upto <= $3 - (SELECT COALESCE(SUM(millicpus), 0) FROM jobs \
                                    WHERE status IN ('starting', 'running') AND worker_id = $6) \
             AND memory_upto <= $4 - (SELECT COALESCE(SUM(memory_mb), 0) FROM jobs \
                                      WHERE status IN ('starting', 'running') AND worker_id = $6))) \
         RETURNING ",
        job_columns!()
    ))
    .bind(lease_until)
    .bind(now)
    .bind(i64::from(node.capacity.cpus.millis()))
    .bind(to_i64(node.capacity.memory_mb))
    .bind(i64::try_from(max).unwrap_or(i64::MAX))
    .bind(&node.worker_id)
    .bind(&node.labels);
    let mut jobs = jobs_of(conn, query).await?;
    jobs.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id)));
    Ok(jobs)
}

/// Claims the next pending job no other writer holds that fits in what `capacity`
/// leaves: one conditional UPDATE. A job too large for the room left waits while
/// smaller ones behind it start.
async fn claim_one(conn: &mut PgConnection, lease_until: &str, now: &str, node: &Claimant) -> Result<Option<Job>> {
    let query = sqlx::query(concat!(
        "UPDATE jobs SET status = 'starting', attempt = attempt + 1, lease_expires_at = $1::timestamptz, \
         updated_at = $2::timestamptz, worker_id = $5 WHERE id = (SELECT id FROM jobs WHERE status = 'pending' \
         AND run_at IS NULL AND gpus = 0 AND millicpus <= $3 - (SELECT COALESCE(SUM(millicpus), 0) FROM jobs \
                                WHERE status IN ('starting', 'running') AND worker_id = $5) \
         AND memory_mb <= $4 - (SELECT COALESCE(SUM(memory_mb), 0) FROM jobs \
                                WHERE status IN ('starting', 'running') AND worker_id = $5) \
         AND requires <@ $6::text[] \
         ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED) AND status = 'pending' \
         AND NOT EXISTS (SELECT 1 FROM workers WHERE id = $5 AND status = 'draining') RETURNING ",
        job_columns!()
    ))
    .bind(lease_until)
    .bind(now)
    .bind(i64::from(node.capacity.cpus.millis()))
    .bind(to_i64(node.capacity.memory_mb))
    .bind(&node.worker_id)
    .bind(&node.labels);
    Ok(jobs_of(conn, query).await?.pop())
}

/// Claims jobs asking for GPUs, one at a time while `max` allows: the next pending
/// one no other writer holds whose CPUs and memory fit and whose GPUs are free on the
/// node (of its type, when it names one), each given the lowest free device indices
/// and recording them. No other node changes this node's live jobs, so the devices
/// read are the devices held.
async fn claim_gpu_jobs(
    conn: &mut PgConnection,
    lease_until: &str,
    now: &str,
    node: &Claimant,
    max: usize,
) -> Result<Vec<Job>> {
    let mut jobs = Vec::new();
    while jobs.len() < max {
        let held: Vec<i64> = sqlx::query_scalar(
            "SELECT unnest(gpu_devices) FROM jobs WHERE status IN ('starting', 'running') AND worker_id = $1 \
             AND gpus > 0",
        )
        .bind(&node.worker_id)
        .fetch_all(&mut *conn)
        .await?;
        let held: Vec<u32> = held.into_iter().filter_map(|d| u32::try_from(d).ok()).collect();
        let free = jobhost_model::free_types(&node.gpus, &held);
        if free.is_empty() {
            break;
        }
        let query = sqlx::query(concat!(
            "UPDATE jobs SET status = 'starting', attempt = attempt + 1, lease_expires_at = $1::timestamptz, \
             updated_at = $2::timestamptz, worker_id = $5 WHERE id = (SELECT id FROM jobs WHERE status = 'pending' \
             AND run_at IS NULL AND gpus > 0 AND gpus <= (SELECT COUNT(*) FROM unnest($7::text[]) AS f(t) \
                                       WHERE jobs.gpu_type IS NULL OR f.t = jobs.gpu_type) \
             AND millicpus <= $3 - (SELECT COALESCE(SUM(millicpus), 0) FROM jobs \
                                    WHERE status IN ('starting', 'running') AND worker_id = $5) \
             AND memory_mb <= $4 - (SELECT COALESCE(SUM(memory_mb), 0) FROM jobs \
                                    WHERE status IN ('starting', 'running') AND worker_id = $5) \
             AND requires <@ $6::text[] \
             ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED) AND status = 'pending' \
             AND NOT EXISTS (SELECT 1 FROM workers WHERE id = $5 AND status = 'draining') RETURNING ",
            job_columns!()
        ))
        .bind(lease_until)
        .bind(now)
        .bind(i64::from(node.capacity.cpus.millis()))
        .bind(to_i64(node.capacity.memory_mb))
        .bind(&node.worker_id)
        .bind(&node.labels)
        .bind(&free);
        let Some(mut job) = jobs_of(conn, query).await?.pop() else { break };
        // The statement admitted it only with enough free devices of its type.
        let devices =
            jobhost_model::choose_devices(&node.gpus, &held, job.gpus, job.gpu_type.as_deref()).unwrap_or_default();
        sqlx::query("UPDATE jobs SET gpu_devices = $1 WHERE id = $2")
            .bind(devices.iter().map(|&d| i64::from(d)).collect::<Vec<_>>())
            .bind(&job.id)
            .execute(&mut *conn)
            .await?;
        job.gpu_devices = devices;
        jobs.push(job);
    }
    Ok(jobs)
}

//! The claim statements: admission of pending jobs into the capacity the `starting`
//! and `running` jobs leave, in queue order (priority, then age).
//!
//! Admission is arithmetic inside the statement (each claim subtracts what is live
//! from the capacity and compares the job's declared CPUs and memory), so it stays
//! exact however many claims share a batch: each sees the rows the ones before it
//! moved. Apart from the other statements because the cost trade-off between the
//! windowed head claim and the single claims is its own concern.
//!
//! A claim is for one node ([`Claimant`]): only that node's live jobs count against
//! its capacity, the jobs it takes record it as their `worker_id`, and a job whose
//! `requires` (a JSON array; `'[]'` for most jobs, which the test short-cuts) names a
//! label the node lacks is passed over. A node recorded `draining` claims nothing,
//! from the moment that is committed.
//!
//! Jobs asking for GPUs are claimed apart ([`claim_gpu_jobs`]), first, and only by a
//! node that has GPUs: each claim reads the devices the node's live jobs hold, admits
//! a job only while enough devices of its type are free, and records the devices it
//! gets ([`jobhost_model::choose_devices`]) in the same transaction, so the next
//! claim, in this batch or a later one, sees them held.

use super::sql::{job_of, jobs_of, text};
use crate::sqlite::to_i64;
use crate::{Claimant, Result};
use jobhost_model::{Job, ids};
use rusqlite::Connection;
use rusqlite::types::Value;

/// Whether the node's labels (the JSON array bound at `$labels`) cover the `requires`
/// of the `jobs` row in scope.
macro_rules! labels_cover {
    ($labels:literal) => {
        concat!(
            "(requires = '[]' OR NOT EXISTS (SELECT 1 FROM json_each(requires) AS r \
             WHERE r.value NOT IN (SELECT value FROM json_each(",
            $labels,
            "))))"
        )
    };
}

/// Claims of this many jobs or more start with [`claim_head`]; its window query costs
/// about as much as eight single claims.
const HEAD_CLAIM_AT: usize = 8;

/// Up to `max` claims. For a large `max`, first one conditional UPDATE takes the
/// longest run at the head of the queue that fits in the room left (running sums over
/// the queue order); then single claims, each seeing the ones before it, go on past a
/// job too large for the room, as [`claim_one`] always does. Admission stays exact
/// either way.
pub(super) fn claim(conn: &Connection, lease_until: &str, node: &Claimant, max: usize) -> Result<Vec<Job>> {
    let now = ids::now();
    let labels = serde_json::to_string(&node.labels).unwrap_or_else(|_| "[]".into());
    let mut jobs =
        if node.gpus.is_empty() { Vec::new() } else { claim_gpu_jobs(conn, lease_until, &now, node, &labels, max)? };
    if max - jobs.len() >= HEAD_CLAIM_AT {
        jobs.extend(claim_head(conn, lease_until, &now, node, &labels, max - jobs.len())?);
    }
    while jobs.len() < max {
        match claim_one(conn, lease_until, &now, node, &labels)? {
            Some(job) => jobs.push(job),
            None => break,
        }
    }
    Ok(jobs)
}

/// Claims the longest prefix (at most `max` jobs) of the pending queue whose
/// declared CPUs and memory fit in what the `starting` and `running` jobs leave, in
/// queue order. The outer `+status` keeps SQLite from walking every pending job in
/// the status index to find the few ids the subquery picked: it looks them up by id.
fn claim_head(
    conn: &Connection,
    lease_until: &str,
    now: &str,
    node: &Claimant,
    labels: &str,
    max: usize,
) -> Result<Vec<Job>> {
    let mut jobs = jobs_of(
        conn,
        concat!(
            "UPDATE jobs SET status = 'starting', attempt = attempt + 1, lease_expires_at = ?1, updated_at = ?2, \
             worker_id = ?6 WHERE +status = 'pending' \
             AND NOT EXISTS (SELECT 1 FROM workers WHERE id = ?6 AND status = 'draining') AND id IN (\
               SELECT id FROM (\
                 SELECT id, SUM(millicpus) OVER w AS cpus_upto, SUM(memory_mb) OVER w AS memory_upto FROM (\
                   SELECT id, priority, millicpus, memory_mb FROM jobs WHERE status = 'pending' AND run_at IS NULL AND gpus = 0 AND ",
            labels_cover!("?7"),
            " ORDER BY priority DESC, id LIMIT ?5) \
                 WINDOW w AS (ORDER BY priority DESC, id ROWS UNBOUNDED PRECEDING)) \
               WHERE cpus_upto <= ?3 - (SELECT COALESCE(SUM(millicpus), 0) FROM jobs \
                                        WHERE status IN ('starting', 'running') AND worker_id = ?6) \
                 AND memory_upto <= ?4 - (SELECT COALESCE(SUM(memory_mb), 0) FROM jobs \
                                          WHERE status IN ('starting', 'running') AND worker_id = ?6)) \
             RETURNING ",
            job_columns!()
        ),
        [
            text(lease_until),
            text(now),
            Value::Integer(node.capacity.cpus.millis().into()),
            Value::Integer(to_i64(node.capacity.memory_mb)),
            Value::Integer(i64::try_from(max).unwrap_or(i64::MAX)),
            text(&node.worker_id),
            text(labels),
        ],
    )?;
    jobs.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id)));
    Ok(jobs)
}

/// Claims the next pending job that fits in what `capacity` leaves: one conditional
/// UPDATE. A job too large for the room left waits while smaller ones behind it start.
fn claim_one(conn: &Connection, lease_until: &str, now: &str, node: &Claimant, labels: &str) -> Result<Option<Job>> {
    job_of(
        conn,
        concat!(
            "UPDATE jobs SET status = 'starting', attempt = attempt + 1, lease_expires_at = ?1, \
             updated_at = ?2, worker_id = ?5 WHERE id = (SELECT id FROM jobs WHERE status = 'pending' AND run_at IS NULL AND gpus = 0 \
             AND millicpus <= ?3 - (SELECT COALESCE(SUM(millicpus), 0) FROM jobs \
                                    WHERE status IN ('starting', 'running') AND worker_id = ?5) \
             AND memory_mb <= ?4 - (SELECT COALESCE(SUM(memory_mb), 0) FROM jobs \
                                    WHERE status IN ('starting', 'running') AND worker_id = ?5) AND ",
            labels_cover!("?6"),
            " ORDER BY priority DESC, id LIMIT 1) AND status = 'pending' \
             AND NOT EXISTS (SELECT 1 FROM workers WHERE id = ?5 AND status = 'draining') RETURNING ",
            job_columns!()
        ),
        [
            text(lease_until),
            text(now),
            Value::Integer(node.capacity.cpus.millis().into()),
            Value::Integer(to_i64(node.capacity.memory_mb)),
            text(&node.worker_id),
            text(labels),
        ],
    )
}

/// Claims jobs asking for GPUs, one at a time while `max` allows: the next pending
/// one whose CPUs and memory fit and whose GPUs are free on the node (of its type,
/// when it names one), each given the lowest free device indices and recording them.
fn claim_gpu_jobs(
    conn: &Connection,
    lease_until: &str,
    now: &str,
    node: &Claimant,
    labels: &str,
    max: usize,
) -> Result<Vec<Job>> {
    let mut jobs = Vec::new();
    while jobs.len() < max {
        let held = held_gpus(conn, &node.worker_id)?;
        let free = jobhost_model::free_types(&node.gpus, &held);
        if free.is_empty() {
            break;
        }
        let claimed = job_of(
            conn,
            concat!(
                "UPDATE jobs SET status = 'starting', attempt = attempt + 1, lease_expires_at = ?1, \
                 updated_at = ?2, worker_id = ?5 WHERE id = (SELECT id FROM jobs WHERE status = 'pending' \
                 AND run_at IS NULL AND gpus > 0 AND gpus <= (SELECT COUNT(*) FROM json_each(?7) AS f \
                                           WHERE jobs.gpu_type IS NULL OR f.value = jobs.gpu_type) \
                 AND millicpus <= ?3 - (SELECT COALESCE(SUM(millicpus), 0) FROM jobs \
                                        WHERE status IN ('starting', 'running') AND worker_id = ?5) \
                 AND memory_mb <= ?4 - (SELECT COALESCE(SUM(memory_mb), 0) FROM jobs \
                                        WHERE status IN ('starting', 'running') AND worker_id = ?5) AND ",
                labels_cover!("?6"),
                " ORDER BY priority DESC, id LIMIT 1) AND status = 'pending' \
                 AND NOT EXISTS (SELECT 1 FROM workers WHERE id = ?5 AND status = 'draining') RETURNING ",
                job_columns!()
            ),
            [
                text(lease_until),
                text(now),
                Value::Integer(node.capacity.cpus.millis().into()),
                Value::Integer(to_i64(node.capacity.memory_mb)),
                text(&node.worker_id),
                text(labels),
                text(&serde_json::to_string(&free).unwrap_or_else(|_| "[]".into())),
            ],
        )?;
        let Some(mut job) = claimed else { break };
        // The statement admitted it only with enough free devices of its type.
        let devices =
            jobhost_model::choose_devices(&node.gpus, &held, job.gpus, job.gpu_type.as_deref()).unwrap_or_default();
        conn.prepare_cached("UPDATE jobs SET gpu_devices = ?1 WHERE id = ?2")?
            .execute([text(&serde_json::to_string(&devices).unwrap_or_else(|_| "[]".into())), text(&job.id)])?;
        job.gpu_devices = devices;
        jobs.push(job);
    }
    Ok(jobs)
}

/// The devices the live jobs of node `worker_id` hold.
fn held_gpus(conn: &Connection, worker_id: &str) -> Result<Vec<u32>> {
    let mut stmt = conn.prepare_cached(
        "SELECT f.value FROM jobs, json_each(jobs.gpu_devices) AS f \
         WHERE jobs.status IN ('starting', 'running') AND jobs.worker_id = ?1 AND jobs.gpus > 0",
    )?;
    let held = stmt.query_map([worker_id], |row| row.get::<_, i64>(0))?;
    Ok(held.filter_map(|d| d.ok().and_then(|d| u32::try_from(d).ok())).collect())
}

//! The writer's statements and the values they bind: job inserts (bulk, and one by
//! one with the upload they consume), the `running` and end transitions, artifacts,
//! log chunks, progress and the wake-up notification.
//!
//! A statement for many ops binds one array per column and reads the rows back with
//! `UNNEST`, so its text is the same whatever the batch holds: it is prepared once per
//! connection, and no batch comes near Postgres' limit on parameters. None of these
//! opens a savepoint: the batch plan (`batch`) decides which run inside one.

use crate::postgres::{NOTIFY_CHANNEL, job_from_row, no_nul, to_i64};
use crate::{Finish, NewJob, Result, StoreError, StoredChunk};
use jobhost_model::{Artifact, Job, JobStatus, Progress, ids};
use sqlx::PgConnection;
use sqlx::postgres::{PgArguments, Postgres};
use sqlx::query::Query;
use std::collections::HashMap;

/// Runs `query` and reads every row it returns as a job.
pub(super) async fn jobs_of(conn: &mut PgConnection, query: Query<'_, Postgres, PgArguments>) -> Result<Vec<Job>> {
    query.fetch_all(conn).await?.iter().map(job_from_row).collect()
}

/// Inserts every job of `jobs` that does not collide with an existing one (or an
/// earlier one of `jobs`), in order, in one statement; returns the inserted jobs by id.
pub(super) async fn bulk_insert(conn: &mut PgConnection, jobs: &[&NewJob]) -> Result<HashMap<String, Job>> {
    let col = |f: fn(&NewJob) -> &str| jobs.iter().map(|j| f(j)).collect::<Vec<_>>();
    let opt = |f: fn(&NewJob) -> Option<&str>| jobs.iter().map(|j| f(j)).collect::<Vec<_>>();
    let int = |f: fn(&NewJob) -> i64| jobs.iter().map(|j| f(j)).collect::<Vec<_>>();
    let query = sqlx::query(concat!(
        "INSERT INTO jobs (id, user_id, kind, plugin, plugin_digest, status, args, env, input, labels, priority, \
         millicpus, memory_mb, timeout_s, client_job_id, max_attempts, created_at, updated_at, requires, container, \
         gpus, gpu_type, grants, run_at, retry, run_id, step, task_index) \
         SELECT v_id, v_user_id, v_kind, v_plugin, v_digest, 'pending', v_args::json, v_env::json, v_input::json, \
         v_labels::json, v_priority, v_millicpus, v_memory_mb, v_timeout_s, v_client_job_id, v_max_attempts, \
         $16::timestamptz, $16::timestamptz, \
         CASE WHEN v_requires = '[]' THEN '{}'::text[] \
              ELSE ARRAY(SELECT json_array_elements_text(v_requires::json)) END, v_container::json, \
         v_gpus, v_gpu_type, \
         CASE WHEN v_grants = '[]' THEN '{}'::text[] \
              ELSE ARRAY(SELECT json_array_elements_text(v_grants::json)) END, \
         v_run_at::timestamptz, v_retry::json, v_run_id, v_step, v_task_index \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
         $8::text[], $9::text[], $10::int8[], $11::int8[], $12::int8[], $13::int8[], $14::text[], $15::int8[], \
         $17::text[], $18::text[], $19::int8[], $20::text[], $21::text[], $22::text[], $23::text[], $24::text[], $25::text[], \
         $26::int8[]) \
         WITH ORDINALITY AS v (v_id, v_user_id, v_kind, v_plugin, v_digest, v_args, v_env, v_input, v_labels, \
         v_priority, v_millicpus, v_memory_mb, v_timeout_s, v_client_job_id, v_max_attempts, v_requires, v_container, \
         v_gpus, v_gpu_type, v_grants, v_run_at, v_retry, v_run_id, v_step, v_task_index, v_n) \
         ORDER BY v_n ON CONFLICT DO NOTHING RETURNING ",
        job_columns!()
    ))
    .bind(col(|j| &j.id))
    .bind(col(|j| &j.user_id))
    .bind(col(|j| j.kind.as_str()))
    .bind(col(|j| &j.plugin))
    .bind(col(|j| &j.plugin_digest))
    .bind(col(|j| &j.args))
    .bind(col(|j| &j.env))
    .bind(opt(|j| j.input.as_deref()))
    .bind(col(|j| &j.labels))
    .bind(int(|j| j.priority))
    .bind(int(|j| j.cpus.millis().into()))
    .bind(int(|j| j.memory_mb.into()))
    .bind(int(|j| j.timeout_s.into()))
    .bind(opt(|j| j.client_job_id.as_deref()))
    .bind(int(|j| j.max_attempts.into()))
    .bind(ids::now())
    .bind(jobs.iter().map(|j| serde_json::to_string(&j.requires).unwrap_or_else(|_| "[]".into())).collect::<Vec<_>>())
    .bind(opt(|j| j.container.as_deref()))
    .bind(int(|j| j.gpus.into()))
    .bind(opt(|j| j.gpu_type.as_deref()))
    .bind(jobs.iter().map(|j| serde_json::to_string(&j.grants).unwrap_or_else(|_| "[]".into())).collect::<Vec<_>>())
    .bind(opt(|j| j.run_at.as_deref()))
    .bind(opt(|j| j.retry.as_deref()))
    .bind(opt(|j| j.task.as_ref().map(|t| t.0.as_str())))
    .bind(opt(|j| j.task.as_ref().map(|t| t.1.as_str())))
    .bind(jobs.iter().map(|j| j.task.as_ref().map(|t| i64::from(t.2))).collect::<Vec<_>>());
    Ok(jobs_of(conn, query).await?.into_iter().map(|j| (j.id.clone(), j)).collect())
}

/// One job, as [`bulk_insert`] does for many, consuming its upload when it names one:
/// `None` when the upload is not the user's, not finalized or expired, in which case
/// the caller must undo the insert (it runs inside the caller's savepoint). A job
/// whose idempotency key names a live job of the user is that job, with `false`.
pub(super) async fn insert_job(conn: &mut PgConnection, job: &NewJob) -> Result<Option<(Job, bool)>> {
    let now = ids::now();
    let query = sqlx::query(concat!(
        "INSERT INTO jobs (id, user_id, kind, plugin, plugin_digest, status, args, env, input, labels, priority, \
         millicpus, memory_mb, timeout_s, client_job_id, max_attempts, created_at, updated_at, files_id, requires, \
         container, gpus, gpu_type, grants, run_at, retry, run_id, step, task_index) \
         VALUES ($1, $2, $3, $4, $5, 'pending', $6::json, $7::json, $8::json, $9::json, $10, $11, $12, $13, $14, \
         $15, $16::timestamptz, $16::timestamptz, $17, $18, $19::json, $20, $21, $22, $23::timestamptz, $24::json, \
         $25, $26, $27) \
         ON CONFLICT DO NOTHING RETURNING ",
        job_columns!()
    ))
    .bind(&job.id)
    .bind(&job.user_id)
    .bind(job.kind.as_str())
    .bind(&job.plugin)
    .bind(&job.plugin_digest)
    .bind(&job.args)
    .bind(&job.env)
    .bind(&job.input)
    .bind(&job.labels)
    .bind(job.priority)
    .bind(i64::from(job.cpus.millis()))
    .bind(i64::from(job.memory_mb))
    .bind(i64::from(job.timeout_s))
    .bind(&job.client_job_id)
    .bind(i64::from(job.max_attempts))
    .bind(&now)
    .bind(&job.files_id)
    .bind(&job.requires)
    .bind(&job.container)
    .bind(i64::from(job.gpus))
    .bind(&job.gpu_type)
    .bind(job.grants.iter().map(|g| g.as_str()).collect::<Vec<_>>())
    .bind(&job.run_at)
    .bind(&job.retry)
    .bind(job.task.as_ref().map(|t| t.0.as_str()))
    .bind(job.task.as_ref().map(|t| t.1.as_str()))
    .bind(job.task.as_ref().map(|t| i64::from(t.2)));
    if let Some(created) = jobs_of(conn, query).await?.pop() {
        if let Some(files_id) = &job.files_id {
            let consumed = sqlx::query(
                "UPDATE uploads SET state = 'consumed', job_id = $1, updated_at = $2::timestamptz \
                 WHERE id = $3 AND user_id = $4 AND state = 'finalized' AND expires_at > $2::timestamptz",
            )
            .bind(&job.id)
            .bind(&now)
            .bind(files_id)
            .bind(&job.user_id)
            .execute(&mut *conn)
            .await?
            .rows_affected()
                == 1;
            if !consumed {
                return Ok(None);
            }
        }
        return Ok(Some((created, true)));
    }
    // Not inserted: the idempotency key names a live job of this user; return it.
    let query = sqlx::query(concat!(
        "SELECT ",
        job_columns!(),
        " FROM jobs WHERE user_id = $1 AND client_job_id = $2 AND status <> 'cleaned'"
    ))
    .bind(&job.user_id)
    .bind(&job.client_job_id);
    jobs_of(conn, query)
        .await?
        .pop()
        .map(|j| Some((j, false)))
        .ok_or_else(|| StoreError::Corrupt(format!("job {} was neither inserted nor found", job.id)))
}

/// Tells the other processes listening on [`NOTIFY_CHANNEL`] which jobs this
/// transaction moved, and to what (delivered at its commit). See [`notify_payloads`].
pub(in crate::postgres) async fn notify_moved(
    conn: &mut PgConnection,
    origin: &str,
    moved: &[(&str, JobStatus)],
) -> Result<()> {
    for payload in notify_payloads(origin, moved) {
        sqlx::query("SELECT pg_notify($1, current_schema() || ' ' || $2)")
            .bind(NOTIFY_CHANNEL)
            .bind(payload)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The notification payloads (after the schema, which the statement puts first) that
/// tell of `moved`: `<origin> <id>:<status> …`, each under Postgres' limit of 8,000
/// bytes. `origin` names the store that made the change, so it can skip its own.
pub(in crate::postgres) fn notify_payloads(origin: &str, moved: &[(&str, JobStatus)]) -> Vec<String> {
    const MAX_PAYLOAD: usize = 7000;
    let mut payloads = Vec::new();
    let mut current = String::new();
    for (id, status) in moved {
        if current.is_empty() {
            current.push_str(origin);
        }
        current.push(' ');
        current.push_str(id);
        current.push(':');
        current.push_str(status.as_str());
        if current.len() >= MAX_PAYLOAD {
            payloads.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        payloads.push(current);
    }
    payloads
}

/// `starting` → `running` for each `(id, attempt)`, in one statement; returns the
/// jobs that moved.
pub(super) async fn bulk_mark_running(conn: &mut PgConnection, runs: &[(&str, u32)]) -> Result<Vec<Job>> {
    let query = sqlx::query(concat!(
        "UPDATE jobs SET status = 'running', started_at = $1::timestamptz, updated_at = $1::timestamptz \
         FROM UNNEST($2::text[], $3::int8[]) AS v (v_id, v_attempt) \
         WHERE jobs.id = v.v_id AND jobs.attempt = v.v_attempt AND jobs.status = 'starting' RETURNING ",
        job_columns!()
    ))
    .bind(ids::now())
    .bind(runs.iter().map(|r| r.0).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| i64::from(r.1)).collect::<Vec<_>>());
    jobs_of(conn, query).await
}

/// Records the end of each `(id, attempt, finish, started)` whose attempt is current
/// and live, in one statement; returns the jobs that ended. `started` also records the
/// `running` transition (its `started_at`) of a run whose start is in the same batch.
pub(super) async fn bulk_finish(conn: &mut PgConnection, ends: &[(&str, u32, &Finish, bool)]) -> Result<Vec<Job>> {
    let query = sqlx::query(concat!(
        "UPDATE jobs SET status = CASE WHEN v.v_retry_at IS NULL THEN v.v_status ELSE 'pending' END, \
         outcome = v.v_status, run_at = v.v_retry_at::timestamptz, \
         exit_code = v.v_exit_code, error = v.v_error, detail = v.v_detail, \
         started_at = CASE WHEN v.v_started AND jobs.status = 'starting' THEN $1::timestamptz \
                      ELSE jobs.started_at END, \
         completed_at = CASE WHEN v.v_retry_at IS NULL THEN $1::timestamptz END, updated_at = $1::timestamptz, \
         lease_expires_at = NULL \
         FROM UNNEST($2::text[], $3::int8[], $4::text[], $5::int4[], $6::text[], $7::text[], $8::bool[], \
         $9::text[]) AS v (v_id, v_attempt, v_status, v_exit_code, v_error, v_detail, v_started, v_retry_at) \
         WHERE jobs.id = v.v_id AND jobs.attempt = v.v_attempt \
         AND jobs.status IN ('starting', 'running') RETURNING ",
        job_columns!()
    ))
    .bind(ids::now())
    .bind(ends.iter().map(|e| e.0).collect::<Vec<_>>())
    .bind(ends.iter().map(|e| i64::from(e.1)).collect::<Vec<_>>())
    .bind(ends.iter().map(|e| e.2.status.as_str()).collect::<Vec<_>>())
    .bind(ends.iter().map(|e| e.2.exit_code).collect::<Vec<_>>())
    .bind(ends.iter().map(|e| e.2.error.as_deref().map(no_nul)).collect::<Vec<_>>())
    .bind(ends.iter().map(|e| e.2.detail.as_deref().map(no_nul)).collect::<Vec<_>>())
    .bind(ends.iter().map(|e| e.3).collect::<Vec<_>>())
    .bind(ends.iter().map(|e| e.2.retry_at.as_deref()).collect::<Vec<_>>());
    jobs_of(conn, query).await
}

/// The end of one attempt with its artifacts (recorded even when the end is refused,
/// since the files exist). The caller runs it in a savepoint, so the two apply together.
pub(super) async fn finish_job(
    conn: &mut PgConnection,
    id: &str,
    attempt: u32,
    finish: &Finish,
    artifacts: &[Artifact],
) -> Result<Option<Job>> {
    let job = bulk_finish(conn, &[(id, attempt, finish, false)]).await?.pop();
    // An artifact named twice is recorded as its last mention, as one upsert after
    // another would leave it.
    let mut last: HashMap<&str, &Artifact> = HashMap::new();
    for a in artifacts {
        last.insert(&a.name, a);
    }
    let artifacts: Vec<&Artifact> = last.into_values().collect();
    sqlx::query(
        "INSERT INTO artifacts (id, job_id, name, size_bytes, sha256, created_at) \
         SELECT v_id, $1, v_name, v_size, v_sha256, $2::timestamptz \
         FROM UNNEST($3::text[], $4::text[], $5::int8[], $6::text[]) AS v (v_id, v_name, v_size, v_sha256) \
         ON CONFLICT (job_id, name) DO UPDATE SET size_bytes = excluded.size_bytes, sha256 = excluded.sha256",
    )
    .bind(id)
    .bind(ids::now())
    .bind(artifacts.iter().map(|_| ids::new(ids::ARTIFACT)).collect::<Vec<_>>())
    .bind(artifacts.iter().map(|a| a.name.as_str()).collect::<Vec<_>>())
    .bind(artifacts.iter().map(|a| to_i64(a.size_bytes)).collect::<Vec<_>>())
    .bind(artifacts.iter().map(|a| a.sha256.as_str()).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(job)
}

/// Every chunk of `chunks` in one statement, all or none.
pub(super) async fn append_logs(conn: &mut PgConnection, chunks: &[&StoredChunk]) -> Result<()> {
    sqlx::query(
        "INSERT INTO log_chunks (job_id, seq, stream, data, at) \
         SELECT v_job_id, v_seq, v_stream, v_data, v_at::timestamptz \
         FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::bytea[], $5::text[]) \
         AS v (v_job_id, v_seq, v_stream, v_data, v_at)",
    )
    .bind(chunks.iter().map(|c| c.job_id.as_str()).collect::<Vec<_>>())
    .bind(chunks.iter().map(|c| to_i64(c.chunk.seq)).collect::<Vec<_>>())
    .bind(chunks.iter().map(|c| c.chunk.stream.as_str()).collect::<Vec<_>>())
    .bind(chunks.iter().map(|c| c.chunk.data.as_bytes()).collect::<Vec<_>>())
    .bind(chunks.iter().map(|c| c.chunk.at.as_str()).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// Records the progress of each job of `updates` that is starting or running, in one
/// statement. A job named twice must be named once, with its last progress: the
/// statement changes a row once.
pub(super) async fn set_progress(conn: &mut PgConnection, updates: &[(&str, &Progress)]) -> Result<()> {
    sqlx::query(
        "UPDATE jobs SET progress_done = v.v_done, progress_total = v.v_total, progress_message = v.v_message \
         FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::text[]) AS v (v_id, v_done, v_total, v_message) \
         WHERE jobs.id = v.v_id AND jobs.status IN ('starting', 'running')",
    )
    .bind(updates.iter().map(|u| u.0).collect::<Vec<_>>())
    .bind(updates.iter().map(|u| to_i64(u.1.done)).collect::<Vec<_>>())
    .bind(updates.iter().map(|u| u.1.total.map(to_i64)).collect::<Vec<_>>())
    .bind(updates.iter().map(|u| u.1.message.as_deref().map(no_nul)).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

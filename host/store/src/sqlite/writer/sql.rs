//! The writer's statements and the row values they bind: job inserts (bulk, and one
//! by one with the upload they consume), the `running` and end transitions, artifacts,
//! log chunks and progress.
//!
//! Each kind has a multi-row form, used for a whole batch, and a single-op form, used
//! when the multi-row one fails so that each op learns its own error. They live apart
//! from the batch plan so that the plan reads as ordering and fallback, and each
//! statement beside the values it binds.

use crate::sqlite::{job_from_row, to_i64};
use crate::{Finish, NewJob, Result, StoreError, StoredChunk};
use jobhost_model::{Artifact, Job, Progress, ids};
use rusqlite::types::Value;
use rusqlite::{Connection, params, params_from_iter};
use std::collections::HashMap;

/// Rows per multi-row statement: 27 parameters a row stays well under SQLite's
/// 32,766 parameters per statement.
pub(super) const BULK_ROWS: usize = 1000;

/// `rows` copies of `row` (a parenthesized list of `?`), comma-separated.
fn rows_sql(rows: usize, row: &str) -> String {
    let mut sql = String::with_capacity(rows * (row.len() + 2));
    for n in 0..rows {
        if n > 0 {
            sql.push_str(", ");
        }
        sql.push_str(row);
    }
    sql
}

pub(super) fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn opt_text(s: Option<&str>) -> Value {
    s.map_or(Value::Null, text)
}

/// Runs `sql` (prepared once) with `values` and reads every row as a job.
pub(super) fn jobs_of(conn: &Connection, sql: &str, values: impl IntoIterator<Item = Value>) -> Result<Vec<Job>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params_from_iter(values))?;
    let mut jobs = Vec::new();
    while let Some(row) = rows.next()? {
        jobs.push(job_from_row(row)?);
    }
    Ok(jobs)
}

/// [`jobs_of`] for a statement that moves at most one job.
pub(super) fn job_of(conn: &Connection, sql: &str, values: impl IntoIterator<Item = Value>) -> Result<Option<Job>> {
    Ok(jobs_of(conn, sql, values)?.pop())
}

/// A new job's values for the columns from `id` to `task_index` of an insert, in
/// that order (`status` is written as a literal between `plugin_digest` and `args`).
fn new_job_values(job: &NewJob) -> [Value; 25] {
    [
        text(&job.id),
        text(&job.user_id),
        text(job.kind.as_str()),
        text(&job.plugin),
        text(&job.plugin_digest),
        text(&job.args),
        text(&job.env),
        opt_text(job.input.as_deref()),
        text(&job.labels),
        Value::Integer(job.priority),
        Value::Integer(job.cpus.millis().into()),
        Value::Integer(job.memory_mb.into()),
        Value::Integer(job.timeout_s.into()),
        opt_text(job.client_job_id.as_deref()),
        Value::Integer(job.max_attempts.into()),
        Value::Text(serde_json::to_string(&job.requires).unwrap_or_else(|_| "[]".into())),
        opt_text(job.container.as_deref()),
        Value::Integer(job.gpus.into()),
        opt_text(job.gpu_type.as_deref()),
        Value::Text(serde_json::to_string(&job.grants).unwrap_or_else(|_| "[]".into())),
        opt_text(job.run_at.as_deref()),
        opt_text(job.retry.as_deref()),
        opt_text(job.task.as_ref().map(|t| t.0.as_str())),
        opt_text(job.task.as_ref().map(|t| t.1.as_str())),
        job.task.as_ref().map_or(Value::Null, |t| Value::Integer(t.2.into())),
    ]
}

/// Inserts every job of `jobs` that does not collide with an existing one, in one
/// statement; returns the inserted jobs by id.
pub(super) fn bulk_insert<'a>(
    conn: &Connection,
    jobs: impl ExactSizeIterator<Item = &'a NewJob>,
) -> Result<HashMap<String, Job>> {
    let now = ids::now();
    let rows = jobs.len();
    let mut values = Vec::with_capacity(rows * 27);
    for job in jobs {
        values.extend(new_job_values(job));
        values.extend([text(&now), text(&now)]);
    }
    let sql = format!(
        concat!(
            "INSERT INTO jobs (id, user_id, kind, plugin, plugin_digest, status, args, env, input, \
             labels, priority, millicpus, memory_mb, timeout_s, client_job_id, max_attempts, requires, container, \
             gpus, gpu_type, grants, run_at, retry, run_id, step, task_index, created_at, updated_at) VALUES {} \
             ON CONFLICT DO NOTHING RETURNING ",
            job_columns!()
        ),
        rows_sql(rows, "(?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
    );
    Ok(jobs_of(conn, &sql, values)?.into_iter().map(|j| (j.id.clone(), j)).collect())
}

/// `starting` → `running` for each `(id, attempt)`, in one statement; returns the
/// jobs that moved.
pub(super) fn bulk_mark_running<'a>(
    conn: &Connection,
    runs: impl ExactSizeIterator<Item = (&'a str, u32)>,
) -> Result<Vec<Job>> {
    let now = ids::now();
    let rows = runs.len();
    let mut values = vec![text(&now)];
    for (id, attempt) in runs {
        values.extend([text(id), Value::Integer(attempt.into())]);
    }
    let sql = format!(
        concat!(
            "UPDATE jobs SET status = 'running', started_at = ?1, updated_at = ?1 FROM (VALUES {}) AS v \
             WHERE jobs.id = v.column1 AND jobs.attempt = v.column2 AND jobs.status = 'starting' RETURNING ",
            job_columns!()
        ),
        rows_sql(rows, "(?, ?)")
    );
    jobs_of(conn, &sql, values)
}

/// Records the end of each `(id, attempt, finish, started)` whose attempt is current
/// and live, in one statement; returns the jobs that ended. `started` also records the
/// `running` transition (its `started_at`) of a run whose start is in the same batch.
pub(super) fn bulk_finish<'a>(
    conn: &Connection,
    ends: impl ExactSizeIterator<Item = (&'a str, u32, &'a Finish, bool)>,
) -> Result<Vec<Job>> {
    let now = ids::now();
    let rows = ends.len();
    let mut values = vec![text(&now)];
    for (id, attempt, finish, started) in ends {
        values.extend([
            text(id),
            Value::Integer(attempt.into()),
            text(finish.status.as_str()),
            finish.exit_code.map_or(Value::Null, |c| Value::Integer(c.into())),
            opt_text(finish.error.as_deref()),
            opt_text(finish.detail.as_deref()),
            Value::Integer(started.into()),
            opt_text(finish.retry_at.as_deref()),
        ]);
    }
    let sql = format!(
        concat!(
            "UPDATE jobs SET status = CASE WHEN v.column8 IS NULL THEN v.column3 ELSE 'pending' END, \
             outcome = v.column3, run_at = v.column8, exit_code = v.column4, error = v.column5, detail = v.column6, \
             started_at = CASE WHEN v.column7 AND jobs.status = 'starting' THEN ?1 ELSE jobs.started_at END, \
             completed_at = CASE WHEN v.column8 IS NULL THEN ?1 END, updated_at = ?1, lease_expires_at = NULL \
             FROM (VALUES {}) AS v \
             WHERE jobs.id = v.column1 AND jobs.attempt = v.column2 \
             AND jobs.status IN ('starting', 'running') RETURNING ",
            job_columns!()
        ),
        rows_sql(rows, "(?, ?, ?, ?, ?, ?, ?, ?)")
    );
    jobs_of(conn, &sql, values)
}

/// Runs `body` inside a savepoint: its statements apply together or not at all.
fn atomically<T>(conn: &Connection, body: impl FnOnce() -> Result<T>) -> Result<T> {
    conn.prepare_cached("SAVEPOINT op")?.execute([])?;
    let result = body();
    if result.is_err() {
        conn.prepare_cached("ROLLBACK TO op")?.execute([])?;
    }
    conn.prepare_cached("RELEASE op")?.execute([])?;
    result
}

/// Every chunk of `chunks` in one statement per [`BULK_ROWS`], all or none.
pub(super) fn bulk_append_logs(conn: &Connection, chunks: &[&StoredChunk]) -> Result<()> {
    if chunks.len() <= BULK_ROWS {
        return bulk_append_logs_part(conn, chunks);
    }
    atomically(conn, || chunks.chunks(BULK_ROWS).try_for_each(|part| bulk_append_logs_part(conn, part)))
}

fn bulk_append_logs_part(conn: &Connection, part: &[&StoredChunk]) -> Result<()> {
    let mut values = Vec::with_capacity(part.len() * 5);
    for c in part {
        values.extend([
            text(&c.job_id),
            Value::Integer(to_i64(c.chunk.seq)),
            text(c.chunk.stream.as_str()),
            text(&c.chunk.data),
            text(&c.chunk.at),
        ]);
    }
    let sql = format!(
        "INSERT INTO log_chunks (job_id, seq, stream, data, at) VALUES {}",
        rows_sql(part.len(), "(?, ?, ?, ?, ?)")
    );
    conn.prepare_cached(&sql)?.execute(params_from_iter(values))?;
    Ok(())
}

/// One job, as [`bulk_insert`] does for many, and consuming its upload when it names
/// one: `None` (nothing inserted) when the upload is not the user's, not finalized or
/// expired.
pub(super) fn insert_job(conn: &Connection, job: &NewJob) -> Result<Option<(Job, bool)>> {
    // In a savepoint: an upload that cannot be consumed undoes the insert.
    conn.prepare_cached("SAVEPOINT op")?.execute([])?;
    let result = insert_and_consume(conn, job);
    if !matches!(result, Ok(Some(_))) {
        conn.prepare_cached("ROLLBACK TO op")?.execute([])?;
    }
    conn.prepare_cached("RELEASE op")?.execute([])?;
    result
}

fn insert_and_consume(conn: &Connection, job: &NewJob) -> Result<Option<(Job, bool)>> {
    let now = ids::now();
    let inserted = job_of(
        conn,
        concat!(
            "INSERT INTO jobs (id, user_id, kind, plugin, plugin_digest, status, args, env, input, \
             labels, priority, millicpus, memory_mb, timeout_s, client_job_id, max_attempts, requires, container, \
             gpus, gpu_type, grants, run_at, retry, run_id, step, task_index, created_at, updated_at, files_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, \
             ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?26, ?27) \
             ON CONFLICT DO NOTHING RETURNING ",
            job_columns!()
        ),
        new_job_values(job).into_iter().chain([text(&now), opt_text(job.files_id.as_deref())]),
    )?;
    if let Some(created) = inserted {
        if let Some(files_id) = &job.files_id {
            let consumed = conn
                .prepare_cached(
                    "UPDATE uploads SET state = 'consumed', job_id = ?1, updated_at = ?2 \
                     WHERE id = ?3 AND user_id = ?4 AND state = 'finalized' AND expires_at > ?2",
                )?
                .execute(params![job.id, now, files_id, job.user_id])?
                == 1;
            if !consumed {
                // The caller's savepoint undoes the insert.
                return Ok(None);
            }
        }
        return Ok(Some((created, true)));
    }
    // Not inserted: the idempotency key names a live job of this user; return it.
    job_of(
        conn,
        concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE user_id = ? AND client_job_id = ? AND status <> 'cleaned'"
        ),
        [text(&job.user_id), opt_text(job.client_job_id.as_deref())],
    )?
    .map(|j| Some((j, false)))
    .ok_or_else(|| StoreError::Corrupt(format!("job {} was neither inserted nor found", job.id)))
}

pub(super) fn mark_running(conn: &Connection, id: &str, attempt: u32) -> Result<Option<Job>> {
    job_of(
        conn,
        concat!(
            "UPDATE jobs SET status = 'running', started_at = ?1, updated_at = ?1 \
             WHERE id = ?2 AND attempt = ?3 AND status = 'starting' RETURNING ",
            job_columns!()
        ),
        [text(&ids::now()), text(id), Value::Integer(attempt.into())],
    )
}

pub(super) fn finish_job(
    conn: &Connection,
    id: &str,
    attempt: u32,
    finish: &Finish,
    artifacts: &[Artifact],
) -> Result<Option<Job>> {
    let now = ids::now();
    let update = || {
        job_of(
            conn,
            concat!(
                "UPDATE jobs SET status = CASE WHEN ?8 IS NULL THEN ?1 ELSE 'pending' END, outcome = ?1, \
                 run_at = ?8, exit_code = ?2, error = ?3, completed_at = CASE WHEN ?8 IS NULL THEN ?4 END, \
                 updated_at = ?4, lease_expires_at = NULL, detail = ?7 \
                 WHERE id = ?5 AND attempt = ?6 AND status IN ('starting', 'running') RETURNING ",
                job_columns!()
            ),
            [
                text(finish.status.as_str()),
                finish.exit_code.map_or(Value::Null, |c| Value::Integer(c.into())),
                opt_text(finish.error.as_deref()),
                text(&now),
                text(id),
                Value::Integer(attempt.into()),
                opt_text(finish.detail.as_deref()),
                opt_text(finish.retry_at.as_deref()),
            ],
        )
    };
    if artifacts.is_empty() {
        return update();
    }
    atomically(conn, || {
        let job = update()?;
        insert_artifacts(conn, id, artifacts, &now)?;
        Ok(job)
    })
}

fn insert_artifacts(conn: &Connection, job_id: &str, artifacts: &[Artifact], now: &str) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO artifacts (id, job_id, name, size_bytes, sha256, created_at) \
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, name) DO UPDATE SET \
         size_bytes = excluded.size_bytes, sha256 = excluded.sha256",
    )?;
    for a in artifacts {
        stmt.execute(params![ids::new(ids::ARTIFACT), job_id, a.name, to_i64(a.size_bytes), a.sha256, now])?;
    }
    Ok(())
}

pub(super) fn append_logs(conn: &Connection, chunks: &[StoredChunk]) -> Result<()> {
    atomically(conn, || {
        let mut stmt =
            conn.prepare_cached("INSERT INTO log_chunks (job_id, seq, stream, data, at) VALUES (?, ?, ?, ?, ?)")?;
        for c in chunks {
            stmt.execute(params![c.job_id, to_i64(c.chunk.seq), c.chunk.stream.as_str(), c.chunk.data, c.chunk.at])?;
        }
        Ok(())
    })
}

pub(super) fn set_progress(conn: &Connection, id: &str, progress: &Progress) -> Result<()> {
    conn.prepare_cached(
        "UPDATE jobs SET progress_done = ?, progress_total = ?, progress_message = ? \
         WHERE id = ? AND status IN ('starting', 'running')",
    )?
    .execute(params![to_i64(progress.done), progress.total.map(to_i64), progress.message, id])?;
    Ok(())
}

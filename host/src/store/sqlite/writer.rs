//! Group commit of the hot-path writes: job inserts, claims, transitions, log chunks
//! and progress.
//!
//! Callers hand an [`Op`] to one writer task and (usually) wait for its answer. The
//! task takes everything queued, up to [`MAX_OPS`], runs it in order in one
//! transaction on the write connection and commits once (`synchronous=FULL`: one
//! fsync for the lot), and only then answers each op. So an answer always means "on
//! disk", while many jobs share each fsync: durable throughput scales with the queue
//! instead of stopping at the disk's commit rate.
//!
//! Claims are the one exception to "answered after the commit": a claim is answered
//! as soon as its statement has run, with a [`Committed`] handle that resolves with
//! the commit. The scheduler may start a run while the commit goes to disk; nothing
//! of that run becomes visible before it, because every write the run makes is queued
//! after the claim and so committed after it (see `scheduler`).
//!
//! Order is kept: an op queued after another is committed in the same transaction or
//! a later one, and answered after it. That is what lets a job's last log chunks
//! (queued when its run ends) be on disk before its final status, and lets a claim
//! queued after a finish see the capacity that finish freed.
//!
//! Each op is still its own conditional statement (guarded by status and attempt); a
//! failing op reports its own error and does not stop the others, and an op of several
//! statements runs inside a savepoint so it applies whole or not at all. If the commit
//! fails, every op of the batch gets the error.

use super::{claim_one, job_from_row, to_i64};
use crate::ids;
use crate::jobs::model::{Artifact, Job, JobStatus, Progress};
use crate::store::{Claimed, Committed, Finish, NewJob, Result, StoreError, StoredChunk, Usage};
use sqlx::sqlite::{SqliteConnection, SqlitePool};
use sqlx::{QueryBuilder, Sqlite};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, oneshot, watch};

/// Most ops in one transaction: bounds how long the first op of a large batch waits
/// for its answer, and the memory a batch holds.
const MAX_OPS: usize = 2048;

/// Called with the outcome of an op once its transaction is committed (or failed).
pub(crate) type Done = Box<dyn FnOnce(Result<()>) + Send>;

/// One write, with where its answer goes.
pub(super) enum Op {
    InsertJob(Box<NewJob>, oneshot::Sender<Result<Option<(Job, bool)>>>),
    Claim {
        lease_until: String,
        capacity: Usage,
        max: usize,
        reply: oneshot::Sender<Result<Claimed>>,
    },
    MarkRunning {
        id: String,
        attempt: u32,
        reply: oneshot::Sender<Result<Option<Job>>>,
    },
    Finish {
        id: String,
        attempt: u32,
        finish: Finish,
        artifacts: Vec<Artifact>,
        reply: oneshot::Sender<Result<Option<Job>>>,
    },
    AppendLogs(Vec<StoredChunk>, Done),
    Progress(String, Progress, Done),
    /// Answered once everything queued before it is committed.
    Flush(Done),
}

/// The answer of an op, held until the commit.
enum Answer {
    Inserted(oneshot::Sender<Result<Option<(Job, bool)>>>, Result<Option<(Job, bool)>>),
    /// A claim that failed (answered after the commit, like any op).
    Claimed(oneshot::Sender<Result<Claimed>>, StoreError),
    /// A claim already answered before the commit: only its jobs are left to observe.
    ClaimedEarly(Vec<Job>),
    Job(oneshot::Sender<Result<Option<Job>>>, Result<Option<Job>>),
    Done(Done, Result<()>),
}

/// Told of every job a committed op moved (created, claimed, started, ended), in
/// commit order, before the op's own answer is delivered.
pub(crate) type Observer = Box<dyn Fn(&Job) + Send + Sync>;

impl Answer {
    /// Tells `observer` of the jobs this answer moved (only after a commit).
    fn observe(&self, observer: &Observer) {
        match self {
            Answer::Inserted(_, Ok(Some((job, true)))) => observer(job),
            Answer::ClaimedEarly(jobs) => jobs.iter().for_each(observer),
            Answer::Job(_, Ok(Some(job))) => observer(job),
            _ => {}
        }
    }

    /// Delivers the answer, or `failed` instead when the commit did not happen.
    fn deliver(self, failed: Option<&str>) {
        let err = |msg: &str| StoreError::Commit(msg.to_owned());
        match self {
            Answer::Inserted(tx, r) => drop(tx.send(failed.map_or(r, |m| Err(err(m))))),
            Answer::Claimed(tx, e) => drop(tx.send(Err(failed.map_or(e, err)))),
            Answer::ClaimedEarly(_) => {}
            Answer::Job(tx, r) => drop(tx.send(failed.map_or(r, |m| Err(err(m))))),
            Answer::Done(done, r) => done(failed.map_or(r, |m| Err(err(m)))),
        }
    }
}

/// Starts the writer task on the current runtime; it ends when every sender is gone.
pub(super) fn start(pool: SqlitePool, observer: Arc<OnceLock<Observer>>) -> mpsc::UnboundedSender<Op> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(pool, rx, observer));
    tx
}

/// Runs `body` inside a savepoint: its statements apply together or not at all.
macro_rules! atomically {
    ($conn:expr, $body:expr) => {{
        sqlx::query("SAVEPOINT op").execute(&mut *$conn).await?;
        let result = $body;
        if result.is_ok() {
            sqlx::query("RELEASE op").execute(&mut *$conn).await?;
        } else {
            sqlx::query("ROLLBACK TO op").execute(&mut *$conn).await?;
            sqlx::query("RELEASE op").execute(&mut *$conn).await?;
        }
        result
    }};
}

async fn run(pool: SqlitePool, mut rx: mpsc::UnboundedReceiver<Op>, observer: Arc<OnceLock<Observer>>) {
    let mut ops = Vec::with_capacity(MAX_OPS);
    while rx.recv_many(&mut ops, MAX_OPS).await > 0 {
        // Let the tasks that were woken with the first op (a scheduler about to claim
        // the job just inserted, a runner about to record its end) queue theirs, so
        // they share this commit instead of waiting for the next.
        tokio::task::yield_now().await;
        while ops.len() < MAX_OPS
            && let Ok(op) = rx.try_recv()
        {
            ops.push(op);
        }
        let mut answers: Vec<Option<Answer>> = Vec::with_capacity(ops.len());
        let (commit_tx, commit_rx) = watch::channel(None);
        let committed = Committed(commit_rx);
        let failed = match apply(&pool, std::mem::take(&mut ops), &mut answers, &committed).await {
            Ok(()) => None,
            Err(e) => {
                tracing::error!(error = %e, ops = answers.len(), "group commit failed");
                Some(e.to_string())
            }
        };
        if let (None, Some(observer)) = (&failed, observer.get()) {
            answers.iter().flatten().for_each(|a| a.observe(observer));
        }
        commit_tx.send_replace(Some(failed.clone().map_or(Ok(()), Err)));
        for a in answers.into_iter().flatten() {
            a.deliver(failed.as_deref());
        }
    }
}

/// Runs `ops` in one transaction and fills `answers` with one answer per op, in op
/// order.
///
/// Ops of a kind run together, as one statement per kind where they can (a
/// multi-row INSERT, an `UPDATE … FROM (VALUES …)`): the connection lives on a thread
/// of its own, and a round trip to it per statement would cost more than the
/// statement. The kinds run in an order that keeps every dependency an op can have on
/// an earlier one: inserts, then log chunks and progress, then `running`, then ends,
/// then claims (which see the jobs just inserted and the capacity just freed). A
/// statement that fails is retried op by op, so each op gets its own error.
async fn apply(
    pool: &SqlitePool,
    ops: Vec<Op>,
    answers: &mut Vec<Option<Answer>>,
    committed: &Committed,
) -> Result<()> {
    answers.resize_with(ops.len(), || None);
    let mut tx = match pool.begin().await {
        Ok(tx) => tx,
        Err(e) => {
            let msg = e.to_string();
            for (slot, op) in answers.iter_mut().zip(ops) {
                *slot = Some(answer_err(op, &msg));
            }
            return Err(e.into());
        }
    };
    let conn: &mut SqliteConnection = &mut tx;
    let mut inserts = Vec::new();
    let mut logs = Vec::new();
    let mut marks = Vec::new();
    let mut finishes = Vec::new();
    let mut claims = Vec::new();
    for (i, op) in ops.into_iter().enumerate() {
        match op {
            Op::InsertJob(job, reply) => inserts.push((i, job, reply)),
            Op::AppendLogs(chunks, done) => logs.push((i, chunks, done)),
            Op::MarkRunning { id, attempt, reply } => marks.push((i, id, attempt, reply)),
            Op::Finish { id, attempt, finish, artifacts, reply } => {
                finishes.push((i, id, attempt, finish, artifacts, reply))
            }
            Op::Claim { lease_until, capacity, max, reply } => claims.push((i, lease_until, capacity, max, reply)),
            Op::Progress(id, progress, done) => {
                answers[i] = Some(Answer::Done(done, set_progress(conn, &id, &progress).await));
            }
            Op::Flush(done) => answers[i] = Some(Answer::Done(done, Ok(()))),
        }
    }

    // A job that consumes an upload inserts alone (the upload's row changes with it).
    let (plain, with_files): (Vec<_>, Vec<_>) = inserts.into_iter().partition(|(_, job, _)| job.files_id.is_none());
    for (i, job, reply) in with_files {
        answers[i] = Some(Answer::Inserted(reply, insert_job(conn, &job).await));
    }
    let mut inserts = plain;
    while !inserts.is_empty() {
        let chunk: Vec<_> = inserts.drain(..inserts.len().min(BULK_ROWS)).collect();
        let mut created = bulk_insert(conn, chunk.iter().map(|(_, job, _)| &**job)).await.unwrap_or_default();
        for (i, job, reply) in chunk {
            let result = match created.remove(&job.id) {
                Some(j) => Ok(Some((j, true))),
                // Not in the bulk answer: a duplicate idempotency key (or the bulk
                // statement failed); this op alone says which.
                None => insert_job(conn, &job).await,
            };
            answers[i] = Some(Answer::Inserted(reply, result));
        }
    }

    if !logs.is_empty() {
        let all: Vec<&StoredChunk> = logs.iter().flat_map(|(_, chunks, _)| chunks.iter()).collect();
        let bulk_ok = bulk_append_logs(conn, &all).await.is_ok();
        for (i, chunks, done) in logs {
            let result = if bulk_ok { Ok(()) } else { append_logs(conn, &chunks).await };
            answers[i] = Some(Answer::Done(done, result));
        }
    }

    // A run's `running` and its end in the same batch (a short run queues both at
    // once): the end's statement makes both changes, in this same transaction, so no
    // reader could ever have seen the `running` row in between. The `running` op is
    // answered (and observed) with the job as it was between the two.
    let ending: HashSet<(&str, u32)> =
        finishes.iter().filter(|f| f.4.is_empty()).map(|f| (f.1.as_str(), f.2)).collect();
    let (mut merged, mut marks): (Vec<_>, Vec<_>) =
        marks.into_iter().partition(|(_, id, attempt, _)| ending.contains(&(id.as_str(), *attempt)));
    let merged_keys: HashSet<(String, u32)> = merged.iter().map(|(_, id, attempt, _)| (id.clone(), *attempt)).collect();
    drop(ending);

    while !marks.is_empty() {
        let chunk: Vec<_> = marks.drain(..marks.len().min(BULK_ROWS)).collect();
        let bulk = bulk_mark_running(conn, chunk.iter().map(|(_, id, attempt, _)| (id.as_str(), *attempt))).await;
        for (i, id, attempt, reply) in chunk {
            let result = match &bulk {
                Ok(rows) => Ok(rows.iter().find(|j| j.id == id).cloned()),
                Err(_) => mark_running(conn, &id, attempt).await,
            };
            answers[i] = Some(Answer::Job(reply, result));
        }
    }

    // Ends with artifacts run one by one (they insert rows of their own); the rest
    // share one statement per chunk.
    let (plain, with_files): (Vec<_>, Vec<_>) = finishes.into_iter().partition(|f| f.4.is_empty());
    for (i, id, attempt, finish, artifacts, reply) in with_files {
        answers[i] = Some(Answer::Job(reply, finish_job(conn, &id, attempt, &finish, &artifacts).await));
    }
    let mut plain = plain;
    let mut ended: HashMap<String, Job> = HashMap::new();
    let mut bulk_failed = false;
    while !plain.is_empty() {
        let chunk: Vec<_> = plain.drain(..plain.len().min(BULK_ROWS)).collect();
        let bulk = bulk_finish(
            conn,
            chunk.iter().map(|(_, id, attempt, finish, _, _)| {
                (id.as_str(), *attempt, finish, merged_keys.contains(&(id.clone(), *attempt)))
            }),
        )
        .await;
        if bulk.is_err() && !bulk_failed {
            // Op by op from here: each `running` before its end, as queued.
            bulk_failed = true;
            let (done, pending): (Vec<_>, Vec<_>) = merged.into_iter().partition(|m| ended.contains_key(&m.1));
            merged = done;
            for (i, id, attempt, reply) in pending {
                answers[i] = Some(Answer::Job(reply, mark_running(conn, &id, attempt).await));
            }
        }
        for (i, id, attempt, finish, _, reply) in chunk {
            let result = match &bulk {
                Ok(rows) => Ok(rows.iter().find(|j| j.id == id).cloned()),
                Err(_) => finish_job(conn, &id, attempt, &finish, &[]).await,
            };
            if let Ok(Some(job)) = &result {
                ended.insert(job.id.clone(), job.clone());
            }
            answers[i] = Some(Answer::Job(reply, result));
        }
    }
    for (i, id, _, reply) in merged {
        answers[i] = Some(Answer::Job(reply, Ok(ended.get(&id).map(running_before))));
    }

    // Answered now, before the commit, with the handle that tells of it.
    for (i, lease_until, capacity, max, reply) in claims {
        answers[i] = Some(match claim(conn, &lease_until, &capacity, max).await {
            Ok(jobs) => {
                let _ = reply.send(Ok(Claimed { jobs: jobs.clone(), committed: committed.clone() }));
                Answer::ClaimedEarly(jobs)
            }
            Err(e) => Answer::Claimed(reply, e),
        });
    }

    tx.commit().await?;
    Ok(())
}

/// Rows per multi-row statement: 17 parameters a row stays well under SQLite's
/// 32,766 parameters per statement.
const BULK_ROWS: usize = 1000;

/// Inserts every job of `jobs` that does not collide with an existing one, in one
/// statement; returns the inserted jobs by id.
async fn bulk_insert<'a>(
    conn: &mut SqliteConnection,
    jobs: impl Iterator<Item = &'a NewJob>,
) -> Result<HashMap<String, Job>> {
    let now = ids::now();
    let mut q = QueryBuilder::<Sqlite>::new(
        "INSERT INTO jobs (id, user_id, kind, plugin, plugin_digest, status, args, env, input, \
         labels, priority, cpus, memory_mb, timeout_s, client_job_id, max_attempts, created_at, updated_at) ",
    );
    q.push_values(jobs, |mut row, job| {
        row.push_bind(job.id.clone())
            .push_bind(job.user_id.clone())
            .push_bind(job.kind.clone())
            .push_bind(job.plugin.clone())
            .push_bind(job.plugin_digest.clone())
            .push("'pending'")
            .push_bind(job.args.clone())
            .push_bind(job.env.clone())
            .push_bind(job.input.clone())
            .push_bind(job.labels.clone())
            .push_bind(job.priority)
            .push_bind(job.cpus)
            .push_bind(job.memory_mb)
            .push_bind(job.timeout_s)
            .push_bind(job.client_job_id.clone())
            .push_bind(job.max_attempts)
            .push_bind(now.clone())
            .push_bind(now.clone());
    });
    q.push(concat!(" ON CONFLICT DO NOTHING RETURNING ", job_columns!()));
    let rows = q.build().fetch_all(&mut *conn).await?;
    rows.iter().map(|row| job_from_row(row).map(|j| (j.id.clone(), j))).collect()
}

/// `starting` → `running` for each `(id, attempt)`, in one statement; returns the
/// jobs that moved.
async fn bulk_mark_running<'a>(
    conn: &mut SqliteConnection,
    runs: impl Iterator<Item = (&'a str, u32)>,
) -> Result<Vec<Job>> {
    let now = ids::now();
    let mut q = QueryBuilder::<Sqlite>::new("UPDATE jobs SET status = 'running', started_at = ");
    q.push_bind(now.clone()).push(", updated_at = ").push_bind(now).push(" FROM (");
    q.push_values(runs, |mut row, (id, attempt)| {
        row.push_bind(id.to_owned()).push_bind(attempt);
    });
    q.push(concat!(
        ") AS v WHERE jobs.id = v.column1 AND jobs.attempt = v.column2 AND jobs.status = 'starting' RETURNING ",
        job_columns!()
    ));
    let rows = q.build().fetch_all(&mut *conn).await?;
    rows.iter().map(job_from_row).collect()
}

/// Records the end of each `(id, attempt, finish, started)` whose attempt is current
/// and live, in one statement; returns the jobs that ended. `started` also records the
/// `running` transition (its `started_at`) of a run whose start is in the same batch.
async fn bulk_finish<'a>(
    conn: &mut SqliteConnection,
    ends: impl Iterator<Item = (&'a str, u32, &'a Finish, bool)>,
) -> Result<Vec<Job>> {
    let now = ids::now();
    let mut q = QueryBuilder::<Sqlite>::new(
        "UPDATE jobs SET status = v.column3, exit_code = v.column4, error = v.column5, detail = v.column6, \
         started_at = CASE WHEN v.column7 THEN COALESCE(jobs.started_at, ",
    );
    q.push_bind(now.clone()).push(") ELSE jobs.started_at END, completed_at = ");
    q.push_bind(now.clone()).push(", updated_at = ").push_bind(now).push(", lease_expires_at = NULL FROM (");
    q.push_values(ends, |mut row, (id, attempt, finish, started)| {
        row.push_bind(id.to_owned())
            .push_bind(attempt)
            .push_bind(finish.status.as_str())
            .push_bind(finish.exit_code)
            .push_bind(finish.error.clone())
            .push_bind(finish.detail.clone())
            .push_bind(started);
    });
    q.push(concat!(
        ") AS v WHERE jobs.id = v.column1 AND jobs.attempt = v.column2 \
         AND jobs.status IN ('starting', 'running') RETURNING ",
        job_columns!()
    ));
    let rows = q.build().fetch_all(&mut *conn).await?;
    rows.iter().map(job_from_row).collect()
}

/// The job as it was after its `running` transition and before its end, for a run
/// whose two transitions one statement made.
fn running_before(ended: &Job) -> Job {
    Job { status: JobStatus::Running, exit_code: None, error: None, detail: None, completed_at: None, ..ended.clone() }
}

/// Every chunk of `chunks` in one statement per [`BULK_ROWS`], all or none.
async fn bulk_append_logs(conn: &mut SqliteConnection, chunks: &[&StoredChunk]) -> Result<()> {
    if chunks.len() <= BULK_ROWS {
        return bulk_append_logs_part(conn, chunks).await;
    }
    atomically!(conn, {
        async {
            for part in chunks.chunks(BULK_ROWS) {
                bulk_append_logs_part(&mut *conn, part).await?;
            }
            Ok::<_, StoreError>(())
        }
        .await
    })
}

async fn bulk_append_logs_part(conn: &mut SqliteConnection, part: &[&StoredChunk]) -> Result<()> {
    {
        let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO log_chunks (job_id, seq, stream, data, at) ");
        q.push_values(part, |mut row, c| {
            row.push_bind(c.job_id.clone())
                .push_bind(to_i64(c.chunk.seq))
                .push_bind(c.chunk.stream.as_str())
                .push_bind(c.chunk.data.clone())
                .push_bind(c.chunk.at.clone());
        });
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}

fn answer_err(op: Op, msg: &str) -> Answer {
    let err = || StoreError::Commit(msg.to_owned());
    match op {
        Op::InsertJob(_, reply) => Answer::Inserted(reply, Err(err())),
        Op::Claim { reply, .. } => Answer::Claimed(reply, err()),
        Op::MarkRunning { reply, .. } | Op::Finish { reply, .. } => Answer::Job(reply, Err(err())),
        Op::AppendLogs(_, done) | Op::Progress(_, _, done) | Op::Flush(done) => Answer::Done(done, Err(err())),
    }
}

/// One job, as [`bulk_insert`] does for many, and consuming its upload when it names
/// one: `None` (nothing inserted) when the upload is not the user's, not finalized or
/// expired.
async fn insert_job(conn: &mut SqliteConnection, job: &NewJob) -> Result<Option<(Job, bool)>> {
    // In a savepoint: an upload that cannot be consumed undoes the insert.
    sqlx::query("SAVEPOINT op").execute(&mut *conn).await?;
    let result = insert_and_consume(&mut *conn, job).await;
    if !matches!(result, Ok(Some(_))) {
        sqlx::query("ROLLBACK TO op").execute(&mut *conn).await?;
    }
    sqlx::query("RELEASE op").execute(&mut *conn).await?;
    result
}

async fn insert_and_consume(conn: &mut SqliteConnection, job: &NewJob) -> Result<Option<(Job, bool)>> {
    let now = ids::now();
    let inserted = sqlx::query(concat!(
        "INSERT INTO jobs (id, user_id, kind, plugin, plugin_digest, status, args, env, input, \
         labels, priority, cpus, memory_mb, timeout_s, client_job_id, max_attempts, created_at, \
         updated_at, files_id) VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
         ?15, ?16, ?16, ?17) ON CONFLICT DO NOTHING RETURNING ",
        job_columns!()
    ))
    .bind(&job.id)
    .bind(&job.user_id)
    .bind(&job.kind)
    .bind(&job.plugin)
    .bind(&job.plugin_digest)
    .bind(&job.args)
    .bind(&job.env)
    .bind(&job.input)
    .bind(&job.labels)
    .bind(job.priority)
    .bind(job.cpus)
    .bind(job.memory_mb)
    .bind(job.timeout_s)
    .bind(&job.client_job_id)
    .bind(job.max_attempts)
    .bind(&now)
    .bind(&job.files_id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = inserted {
        if let Some(files_id) = &job.files_id {
            let consumed = sqlx::query(
                "UPDATE uploads SET state = 'consumed', job_id = ?1, updated_at = ?2 \
                 WHERE id = ?3 AND user_id = ?4 AND state = 'finalized' AND expires_at > ?2",
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
                // The caller's savepoint undoes the insert.
                return Ok(None);
            }
        }
        return Ok(Some((job_from_row(&row)?, true)));
    }
    // Not inserted: the idempotency key names a live job of this user; return it.
    sqlx::query(concat!(
        "SELECT ",
        job_columns!(),
        " FROM jobs WHERE user_id = ? AND client_job_id = ? AND status <> 'cleaned'"
    ))
    .bind(&job.user_id)
    .bind(&job.client_job_id)
    .fetch_optional(&mut *conn)
    .await?
    .map(|row| job_from_row(&row).map(|j| Some((j, false))))
    .transpose()?
    .ok_or_else(|| StoreError::Corrupt(format!("job {} was neither inserted nor found", job.id)))
}

/// Up to `max` claims. First one conditional UPDATE takes the longest run at the head
/// of the queue that fits in the room left (running sums over the queue order); then
/// single claims, each seeing the ones before it, go on past a job too large for the
/// room, as [`claim_one`] always does. Admission stays exact either way.
async fn claim(conn: &mut SqliteConnection, lease_until: &str, capacity: &Usage, max: usize) -> Result<Vec<Job>> {
    let now = ids::now();
    let mut jobs = if max > 1 { claim_head(conn, lease_until, &now, capacity, max).await? } else { Vec::new() };
    while jobs.len() < max {
        match claim_one(&mut *conn, lease_until, &now, capacity).await? {
            Some(job) => jobs.push(job),
            None => break,
        }
    }
    Ok(jobs)
}

/// Claims the longest prefix (at most `max` jobs) of the pending queue whose
/// declared CPUs and memory fit in what the `starting` and `running` jobs leave, in
/// queue order.
async fn claim_head(
    conn: &mut SqliteConnection,
    lease_until: &str,
    now: &str,
    capacity: &Usage,
    max: usize,
) -> Result<Vec<Job>> {
    let mut jobs = sqlx::query(concat!(
        "UPDATE jobs SET status = 'starting', attempt = attempt + 1, lease_expires_at = ?1, updated_at = ?2 \
         WHERE status = 'pending' AND id IN (\
           SELECT id FROM (\
             SELECT id, SUM(cpus) OVER w AS cpus_upto, SUM(memory_mb) OVER w AS memory_upto FROM (\
               SELECT id, priority, cpus, memory_mb FROM jobs WHERE status = 'pending' \
               ORDER BY priority DESC, id LIMIT ?5) \
             WINDOW w AS (ORDER BY priority DESC, id ROWS UNBOUNDED PRECEDING)) \
           WHERE cpus_upto <= ?3 - (SELECT COALESCE(SUM(cpus), 0) FROM jobs WHERE status IN ('starting', 'running')) \
             AND memory_upto <= ?4 - (SELECT COALESCE(SUM(memory_mb), 0) FROM jobs \
                                      WHERE status IN ('starting', 'running'))) \
         RETURNING ",
        job_columns!()
    ))
    .bind(lease_until)
    .bind(now)
    .bind(to_i64(capacity.cpus))
    .bind(to_i64(capacity.memory_mb))
    .bind(i64::try_from(max).unwrap_or(i64::MAX))
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(job_from_row)
    .collect::<Result<Vec<_>>>()?;
    jobs.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id)));
    Ok(jobs)
}

async fn mark_running(conn: &mut SqliteConnection, id: &str, attempt: u32) -> Result<Option<Job>> {
    sqlx::query(concat!(
        "UPDATE jobs SET status = 'running', started_at = ?1, updated_at = ?1 \
         WHERE id = ?2 AND attempt = ?3 AND status = 'starting' RETURNING ",
        job_columns!()
    ))
    .bind(ids::now())
    .bind(id)
    .bind(attempt)
    .fetch_optional(&mut *conn)
    .await?
    .map(|row| job_from_row(&row))
    .transpose()
}

async fn finish_job(
    conn: &mut SqliteConnection,
    id: &str,
    attempt: u32,
    finish: &Finish,
    artifacts: &[Artifact],
) -> Result<Option<Job>> {
    let now = ids::now();
    let update = sqlx::query(concat!(
        "UPDATE jobs SET status = ?1, exit_code = ?2, error = ?3, completed_at = ?4, \
         updated_at = ?4, lease_expires_at = NULL, detail = ?7 \
         WHERE id = ?5 AND attempt = ?6 AND status IN ('starting', 'running') RETURNING ",
        job_columns!()
    ))
    .bind(finish.status.as_str())
    .bind(finish.exit_code)
    .bind(&finish.error)
    .bind(&now)
    .bind(id)
    .bind(attempt)
    .bind(&finish.detail);
    if artifacts.is_empty() {
        return update.fetch_optional(&mut *conn).await?.map(|row| job_from_row(&row)).transpose();
    }
    atomically!(conn, {
        async {
            let job = update.fetch_optional(&mut *conn).await?.map(|row| job_from_row(&row)).transpose()?;
            super::insert_artifacts(&mut *conn, id, artifacts, &now).await?;
            Ok::<_, StoreError>(job)
        }
        .await
    })
}

async fn append_logs(conn: &mut SqliteConnection, chunks: &[StoredChunk]) -> Result<()> {
    atomically!(conn, {
        async {
            for c in chunks {
                sqlx::query("INSERT INTO log_chunks (job_id, seq, stream, data, at) VALUES (?, ?, ?, ?, ?)")
                    .bind(&c.job_id)
                    .bind(to_i64(c.chunk.seq))
                    .bind(c.chunk.stream.as_str())
                    .bind(&c.chunk.data)
                    .bind(&c.chunk.at)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok::<_, StoreError>(())
        }
        .await
    })
}

async fn set_progress(conn: &mut SqliteConnection, id: &str, progress: &Progress) -> Result<()> {
    sqlx::query(
        "UPDATE jobs SET progress_done = ?, progress_total = ?, progress_message = ? \
         WHERE id = ? AND status IN ('starting', 'running')",
    )
    .bind(to_i64(progress.done))
    .bind(progress.total.map(to_i64))
    .bind(&progress.message)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

//! Group commit of the hot-path writes: job inserts, claims, transitions, log chunks
//! and progress.
//!
//! Callers hand an [`Op`] to one writer thread and (usually) wait for its answer. The
//! thread takes everything queued, up to [`MAX_OPS`], runs it in order in one
//! transaction on a connection of its own and commits once (`synchronous=FULL`: one
//! fsync for the lot), and only then answers each op. So an answer always means "on
//! disk", while many jobs share each fsync: durable throughput scales with the queue
//! instead of stopping at the disk's commit rate.
//!
//! The thread drives SQLite directly (rusqlite, statements prepared once and cached):
//! a whole batch, from `BEGIN` to the commit's fsync, runs without leaving the thread.
//! Through an async driver each statement is a round trip to the connection's own
//! thread, and on a small machine those hops cost more than the statements. The
//! store's other writes (a separate, async connection) take the same in-process
//! [`WriteGate`] around each of theirs, so the two connections never wait on SQLite's
//! busy handler for each other.
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

use super::{BUSY_TIMEOUT, job_from_row, settings_ok, to_i64};
use crate::ids;
use crate::jobs::model::{Artifact, Job, JobStatus, Progress};
use crate::store::{Claimed, Committed, Finish, NewJob, Result, StoreError, StoredChunk, Usage};
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, TransactionBehavior, params, params_from_iter};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, oneshot, watch};

/// Most ops in one transaction: bounds how long the first op of a large batch waits
/// for its answer, and the memory a batch holds.
const MAX_OPS: usize = 2048;

/// Statements the writer keeps prepared (the bulk ones differ by their row count).
const STATEMENT_CACHE: usize = 128;

/// Called with the outcome of an op once its transaction is committed (or failed).
pub(crate) type Done = Box<dyn FnOnce(Result<()>) + Send>;

/// Held by whoever writes to the database from this process: the writer thread for
/// each of its transactions, the async connection for each of its writes. Fair (first
/// come, first served), so neither side starves the other.
pub(crate) type WriteGate = Arc<tokio::sync::Mutex<()>>;

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
    /// Commits what is queued before it, closes the connection and stops the thread;
    /// answered once the connection is closed.
    Close(oneshot::Sender<()>),
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

/// Opens the writer's connection to the database at `path` (already created and
/// migrated), checks its settings, and starts the writer thread; it ends at
/// [`Op::Close`] or when every sender is gone. Answers are delivered on that thread,
/// inside the runtime that called this, so `done` callbacks may spawn tasks.
pub(super) fn start(
    path: &Path,
    gate: WriteGate,
    observer: Arc<OnceLock<Observer>>,
) -> std::result::Result<mpsc::UnboundedSender<Op>, String> {
    let conn = open(path).map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::unbounded_channel();
    let runtime = tokio::runtime::Handle::try_current().ok();
    std::thread::Builder::new()
        .name("jobhost-writer".into())
        .spawn(move || {
            let _entered = runtime.as_ref().map(tokio::runtime::Handle::enter);
            run(conn, rx, &gate, &observer);
        })
        .map_err(|e| format!("starting the writer thread: {e}"))?;
    Ok(tx)
}

/// A read-write connection with the same settings as the async ones, read back.
fn open(path: &Path) -> std::result::Result<Connection, String> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| e.to_string())?;
    let setup = || -> rusqlite::Result<(String, i64, i64)> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let journal = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        let synchronous = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
        let foreign_keys = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
        Ok((journal, synchronous, foreign_keys))
    };
    let (journal, synchronous, foreign_keys) = setup().map_err(|e| e.to_string())?;
    settings_ok(&journal, synchronous, foreign_keys)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

fn run(mut conn: Connection, mut rx: mpsc::UnboundedReceiver<Op>, gate: &WriteGate, observer: &OnceLock<Observer>) {
    let mut ops = Vec::with_capacity(MAX_OPS);
    while let Some(first) = rx.blocking_recv() {
        // Everything queued meanwhile (while the last commit went to disk) shares
        // this transaction.
        ops.push(first);
        while ops.len() < MAX_OPS
            && let Ok(op) = rx.try_recv()
        {
            ops.push(op);
        }
        let close = match ops.iter().position(|op| matches!(op, Op::Close(_))) {
            Some(at) => {
                // Ops queued after the close are refused, as after it.
                let Op::Close(reply) = ops.remove(at) else { unreachable!("the op at {at} is a close") };
                ops.drain(at..).for_each(refuse);
                Some(reply)
            }
            None => None,
        };
        if !ops.is_empty() {
            commit_batch(&mut conn, std::mem::take(&mut ops), gate, observer);
        }
        if let Some(reply) = close {
            rx.close();
            while let Ok(op) = rx.try_recv() {
                refuse(op);
            }
            drop(conn);
            let _ = reply.send(());
            return;
        }
    }
}

/// Runs one batch in one transaction, then tells the observer and answers.
fn commit_batch(conn: &mut Connection, ops: Vec<Op>, gate: &WriteGate, observer: &OnceLock<Observer>) {
    let mut answers: Vec<Option<Answer>> = Vec::with_capacity(ops.len());
    let (commit_tx, commit_rx) = watch::channel(None);
    let committed = Committed(commit_rx);
    let failed = {
        let _turn = gate.blocking_lock();
        match apply(conn, ops, &mut answers, &committed) {
            Ok(()) => None,
            Err(e) => {
                tracing::error!(error = %e, ops = answers.len(), "group commit failed");
                Some(e.to_string())
            }
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

/// Runs `ops` in one transaction and fills `answers` with one answer per op, in op
/// order.
///
/// Ops of a kind run together, as one statement per kind where they can (a
/// multi-row INSERT, an `UPDATE … FROM (VALUES …)`). The kinds run in an order that
/// keeps every dependency an op can have on an earlier one: inserts, then log chunks
/// and progress, then `running`, then ends, then claims (which see the jobs just
/// inserted and the capacity just freed). A statement that fails is retried op by op,
/// so each op gets its own error.
fn apply(conn: &mut Connection, ops: Vec<Op>, answers: &mut Vec<Option<Answer>>, committed: &Committed) -> Result<()> {
    answers.resize_with(ops.len(), || None);
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let msg = e.to_string();
            for (slot, op) in answers.iter_mut().zip(ops) {
                *slot = answer_err(op, &msg);
            }
            return Err(e.into());
        }
    };
    let conn: &Connection = &tx;
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
                answers[i] = Some(Answer::Done(done, set_progress(conn, &id, &progress)));
            }
            Op::Flush(done) => answers[i] = Some(Answer::Done(done, Ok(()))),
            // `run` takes every close out of a batch before it gets here.
            Op::Close(reply) => drop(reply),
        }
    }

    // A job that consumes an upload inserts alone (the upload's row changes with it).
    let (plain, with_files): (Vec<_>, Vec<_>) = inserts.into_iter().partition(|(_, job, _)| job.files_id.is_none());
    for (i, job, reply) in with_files {
        answers[i] = Some(Answer::Inserted(reply, insert_job(conn, &job)));
    }
    let mut plain = plain;
    while !plain.is_empty() {
        let chunk: Vec<_> = plain.drain(..plain.len().min(BULK_ROWS)).collect();
        let mut created = bulk_insert(conn, chunk.iter().map(|(_, job, _)| &**job)).unwrap_or_default();
        for (i, job, reply) in chunk {
            let result = match created.remove(&job.id) {
                Some(j) => Ok(Some((j, true))),
                // Not in the bulk answer: a duplicate idempotency key (or the bulk
                // statement failed); this op alone says which.
                None => insert_job(conn, &job),
            };
            answers[i] = Some(Answer::Inserted(reply, result));
        }
    }

    if !logs.is_empty() {
        let all: Vec<&StoredChunk> = logs.iter().flat_map(|(_, chunks, _)| chunks.iter()).collect();
        let bulk_ok = bulk_append_logs(conn, &all).is_ok();
        for (i, chunks, done) in logs {
            let result = if bulk_ok { Ok(()) } else { append_logs(conn, &chunks) };
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
        let bulk = bulk_mark_running(conn, chunk.iter().map(|(_, id, attempt, _)| (id.as_str(), *attempt)));
        for (i, id, attempt, reply) in chunk {
            let result = match &bulk {
                Ok(rows) => Ok(rows.iter().find(|j| j.id == id).cloned()),
                Err(_) => mark_running(conn, &id, attempt),
            };
            answers[i] = Some(Answer::Job(reply, result));
        }
    }

    // Ends with artifacts run one by one (they insert rows of their own); the rest
    // share one statement per chunk.
    let (mut plain, with_files): (Vec<_>, Vec<_>) = finishes.into_iter().partition(|f| f.4.is_empty());
    for (i, id, attempt, finish, artifacts, reply) in with_files {
        answers[i] = Some(Answer::Job(reply, finish_job(conn, &id, attempt, &finish, &artifacts)));
    }
    let mut ended: HashMap<String, Job> = HashMap::new();
    let mut bulk_failed = false;
    while !plain.is_empty() {
        let chunk: Vec<_> = plain.drain(..plain.len().min(BULK_ROWS)).collect();
        let bulk = bulk_finish(
            conn,
            chunk.iter().map(|(_, id, attempt, finish, _, _)| {
                (id.as_str(), *attempt, finish, merged_keys.contains(&(id.clone(), *attempt)))
            }),
        );
        if bulk.is_err() && !bulk_failed {
            // Op by op from here: each `running` before its end, as queued.
            bulk_failed = true;
            let (done, pending): (Vec<_>, Vec<_>) = merged.into_iter().partition(|m| ended.contains_key(&m.1));
            merged = done;
            for (i, id, attempt, reply) in pending {
                answers[i] = Some(Answer::Job(reply, mark_running(conn, &id, attempt)));
            }
        }
        for (i, id, attempt, finish, _, reply) in chunk {
            let result = match &bulk {
                Ok(rows) => Ok(rows.iter().find(|j| j.id == id).cloned()),
                Err(_) => finish_job(conn, &id, attempt, &finish, &[]),
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
        answers[i] = Some(match claim(conn, &lease_until, &capacity, max) {
            Ok(jobs) => {
                let _ = reply.send(Ok(Claimed { jobs: jobs.clone(), committed: committed.clone() }));
                Answer::ClaimedEarly(jobs)
            }
            Err(e) => Answer::Claimed(reply, e),
        });
    }

    tx.commit()?;
    Ok(())
}

/// Rows per multi-row statement: 17 parameters a row stays well under SQLite's
/// 32,766 parameters per statement.
const BULK_ROWS: usize = 1000;

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

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn opt_text(s: Option<&str>) -> Value {
    s.map_or(Value::Null, text)
}

/// Runs `sql` (prepared once) with `values` and reads every row as a job.
fn jobs_of(conn: &Connection, sql: &str, values: impl IntoIterator<Item = Value>) -> Result<Vec<Job>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params_from_iter(values))?;
    let mut jobs = Vec::new();
    while let Some(row) = rows.next()? {
        jobs.push(job_from_row(row)?);
    }
    Ok(jobs)
}

/// [`jobs_of`] for a statement that moves at most one job.
fn job_of(conn: &Connection, sql: &str, values: impl IntoIterator<Item = Value>) -> Result<Option<Job>> {
    Ok(jobs_of(conn, sql, values)?.pop())
}

/// A new job's values for the columns from `id` to `max_attempts` of an insert, in
/// that order (`status` is written as a literal between `plugin_digest` and `args`).
fn new_job_values(job: &NewJob) -> [Value; 15] {
    [
        text(&job.id),
        text(&job.user_id),
        text(&job.kind),
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
    ]
}

/// Inserts every job of `jobs` that does not collide with an existing one, in one
/// statement; returns the inserted jobs by id.
fn bulk_insert<'a>(conn: &Connection, jobs: impl ExactSizeIterator<Item = &'a NewJob>) -> Result<HashMap<String, Job>> {
    let now = ids::now();
    let rows = jobs.len();
    let mut values = Vec::with_capacity(rows * 17);
    for job in jobs {
        values.extend(new_job_values(job));
        values.extend([text(&now), text(&now)]);
    }
    let sql = format!(
        concat!(
            "INSERT INTO jobs (id, user_id, kind, plugin, plugin_digest, status, args, env, input, \
             labels, priority, millicpus, memory_mb, timeout_s, client_job_id, max_attempts, created_at, updated_at) \
             VALUES {} ON CONFLICT DO NOTHING RETURNING ",
            job_columns!()
        ),
        rows_sql(rows, "(?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
    );
    Ok(jobs_of(conn, &sql, values)?.into_iter().map(|j| (j.id.clone(), j)).collect())
}

/// `starting` → `running` for each `(id, attempt)`, in one statement; returns the
/// jobs that moved.
fn bulk_mark_running<'a>(conn: &Connection, runs: impl ExactSizeIterator<Item = (&'a str, u32)>) -> Result<Vec<Job>> {
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
fn bulk_finish<'a>(
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
        ]);
    }
    let sql = format!(
        concat!(
            "UPDATE jobs SET status = v.column3, exit_code = v.column4, error = v.column5, detail = v.column6, \
             started_at = CASE WHEN v.column7 THEN COALESCE(jobs.started_at, ?1) ELSE jobs.started_at END, \
             completed_at = ?1, updated_at = ?1, lease_expires_at = NULL FROM (VALUES {}) AS v \
             WHERE jobs.id = v.column1 AND jobs.attempt = v.column2 \
             AND jobs.status IN ('starting', 'running') RETURNING ",
            job_columns!()
        ),
        rows_sql(rows, "(?, ?, ?, ?, ?, ?, ?)")
    );
    jobs_of(conn, &sql, values)
}

/// The job as it was after its `running` transition and before its end, for a run
/// whose two transitions one statement made.
fn running_before(ended: &Job) -> Job {
    Job { status: JobStatus::Running, exit_code: None, error: None, detail: None, completed_at: None, ..ended.clone() }
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
fn bulk_append_logs(conn: &Connection, chunks: &[&StoredChunk]) -> Result<()> {
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

/// Answers an op that came after [`Op::Close`].
fn refuse(op: Op) {
    if let Some(answer) = answer_err(op, "the store is closed") {
        answer.deliver(None);
    }
}

/// The answer `op` gets when it is not made; none for a close (whose sender learns
/// of it when its reply is dropped).
fn answer_err(op: Op, msg: &str) -> Option<Answer> {
    let err = || StoreError::Commit(msg.to_owned());
    Some(match op {
        Op::InsertJob(_, reply) => Answer::Inserted(reply, Err(err())),
        Op::Claim { reply, .. } => Answer::Claimed(reply, err()),
        Op::MarkRunning { reply, .. } | Op::Finish { reply, .. } => Answer::Job(reply, Err(err())),
        Op::AppendLogs(_, done) | Op::Progress(_, _, done) | Op::Flush(done) => Answer::Done(done, Err(err())),
        Op::Close(_) => return None,
    })
}

/// One job, as [`bulk_insert`] does for many, and consuming its upload when it names
/// one: `None` (nothing inserted) when the upload is not the user's, not finalized or
/// expired.
fn insert_job(conn: &Connection, job: &NewJob) -> Result<Option<(Job, bool)>> {
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
             labels, priority, millicpus, memory_mb, timeout_s, client_job_id, max_attempts, created_at, \
             updated_at, files_id) VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
             ?15, ?16, ?16, ?17) ON CONFLICT DO NOTHING RETURNING ",
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

/// Claims of this many jobs or more start with [`claim_head`]; its window query costs
/// about as much as eight single claims.
const HEAD_CLAIM_AT: usize = 8;

/// Up to `max` claims. For a large `max`, first one conditional UPDATE takes the
/// longest run at the head of the queue that fits in the room left (running sums over
/// the queue order); then single claims, each seeing the ones before it, go on past a
/// job too large for the room, as [`claim_one`] always does. Admission stays exact
/// either way.
fn claim(conn: &Connection, lease_until: &str, capacity: &Usage, max: usize) -> Result<Vec<Job>> {
    let now = ids::now();
    let mut jobs = if max >= HEAD_CLAIM_AT { claim_head(conn, lease_until, &now, capacity, max)? } else { Vec::new() };
    while jobs.len() < max {
        match claim_one(conn, lease_until, &now, capacity)? {
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
fn claim_head(conn: &Connection, lease_until: &str, now: &str, capacity: &Usage, max: usize) -> Result<Vec<Job>> {
    let mut jobs = jobs_of(
        conn,
        concat!(
            "UPDATE jobs SET status = 'starting', attempt = attempt + 1, lease_expires_at = ?1, updated_at = ?2 \
             WHERE +status = 'pending' AND id IN (\
               SELECT id FROM (\
                 SELECT id, SUM(millicpus) OVER w AS cpus_upto, SUM(memory_mb) OVER w AS memory_upto FROM (\
                   SELECT id, priority, millicpus, memory_mb FROM jobs WHERE status = 'pending' \
                   ORDER BY priority DESC, id LIMIT ?5) \
                 WINDOW w AS (ORDER BY priority DESC, id ROWS UNBOUNDED PRECEDING)) \
               WHERE cpus_upto <= ?3 - (SELECT COALESCE(SUM(millicpus), 0) FROM jobs WHERE status IN ('starting', 'running')) \
                 AND memory_upto <= ?4 - (SELECT COALESCE(SUM(memory_mb), 0) FROM jobs \
                                          WHERE status IN ('starting', 'running'))) \
             RETURNING ",
            job_columns!()
        ),
        [
            text(lease_until),
            text(now),
            Value::Integer(capacity.cpus.millis().into()),
            Value::Integer(to_i64(capacity.memory_mb)),
            Value::Integer(i64::try_from(max).unwrap_or(i64::MAX)),
        ],
    )?;
    jobs.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id)));
    Ok(jobs)
}

/// Claims the next pending job that fits in what `capacity` leaves: one conditional
/// UPDATE. A job too large for the room left waits while smaller ones behind it start.
fn claim_one(conn: &Connection, lease_until: &str, now: &str, capacity: &Usage) -> Result<Option<Job>> {
    job_of(
        conn,
        concat!(
            "UPDATE jobs SET status = 'starting', attempt = attempt + 1, lease_expires_at = ?1, \
             updated_at = ?2 WHERE id = (SELECT id FROM jobs WHERE status = 'pending' \
             AND millicpus <= ?3 - (SELECT COALESCE(SUM(millicpus), 0) FROM jobs WHERE status IN ('starting', 'running')) \
             AND memory_mb <= ?4 - (SELECT COALESCE(SUM(memory_mb), 0) FROM jobs \
                                    WHERE status IN ('starting', 'running')) \
             ORDER BY priority DESC, id LIMIT 1) AND status = 'pending' RETURNING ",
            job_columns!()
        ),
        [
            text(lease_until),
            text(now),
            Value::Integer(capacity.cpus.millis().into()),
            Value::Integer(to_i64(capacity.memory_mb)),
        ],
    )
}

fn mark_running(conn: &Connection, id: &str, attempt: u32) -> Result<Option<Job>> {
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

fn finish_job(
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
                "UPDATE jobs SET status = ?1, exit_code = ?2, error = ?3, completed_at = ?4, \
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

fn append_logs(conn: &Connection, chunks: &[StoredChunk]) -> Result<()> {
    atomically(conn, || {
        let mut stmt =
            conn.prepare_cached("INSERT INTO log_chunks (job_id, seq, stream, data, at) VALUES (?, ?, ?, ?, ?)")?;
        for c in chunks {
            stmt.execute(params![c.job_id, to_i64(c.chunk.seq), c.chunk.stream.as_str(), c.chunk.data, c.chunk.at])?;
        }
        Ok(())
    })
}

fn set_progress(conn: &Connection, id: &str, progress: &Progress) -> Result<()> {
    conn.prepare_cached(
        "UPDATE jobs SET progress_done = ?, progress_total = ?, progress_message = ? \
         WHERE id = ? AND status IN ('starting', 'running')",
    )?
    .execute(params![to_i64(progress.done), progress.total.map(to_i64), progress.message, id])?;
    Ok(())
}

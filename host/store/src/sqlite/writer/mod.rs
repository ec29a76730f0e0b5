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
//!
//! Layout: this module owns the queue ([`Op`]), the thread (its loop, the gate, the
//! commit) and the delivery of answers; [`batch`] plans and runs one batch inside its
//! transaction; [`claim`] holds the admission statements; [`sql`] the rest of the
//! statements and the row values they bind.

mod batch;
mod claim;
mod sql;

use super::{BUSY_TIMEOUT, settings_ok};
use crate::{Claimed, Committed, Done, Finish, NewJob, Observer, Result, StoreError, StoredChunk};
use jobhost_model::{Artifact, Job, Progress, Usage};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, oneshot, watch};

/// Most ops in one transaction: bounds how long the first op of a large batch waits
/// for its answer, and the memory a batch holds.
const MAX_OPS: usize = 2048;

/// Statements the writer keeps prepared (the bulk ones differ by their row count).
const STATEMENT_CACHE: usize = 128;

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
        match batch::apply(conn, ops, &mut answers, &committed) {
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

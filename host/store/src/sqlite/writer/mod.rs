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
//! Layout: the queue's ops and answers, and how a batch's answers are delivered, are
//! shared with the other backends (`crate::queue`); this module owns the thread (its
//! loop, the gate, the commit); [`batch`] plans and runs one batch inside its
//! transaction; [`claim`] holds the admission statements; [`sql`] the rest of the
//! statements and the row values they bind.

mod batch;
mod claim;
mod sql;

use super::{BUSY_TIMEOUT, settings_ok};
use crate::queue::{self, Answer, MAX_OPS, answer_err};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::mpsc;

pub(super) use crate::queue::Op;

/// Statements the writer keeps prepared (the bulk ones differ by their row count).
const STATEMENT_CACHE: usize = 128;

/// Held by whoever writes to the database from this process: the writer thread for
/// each of its transactions, the async connection for each of its writes. Fair (first
/// come, first served), so neither side starves the other.
pub(crate) type WriteGate = Arc<tokio::sync::Mutex<()>>;

/// Opens the writer's connection to the database at `path` (already created and
/// migrated), checks its settings, and starts the writer thread; it ends at
/// [`Op::Close`] or when every sender is gone. Answers are delivered on that thread,
/// inside the runtime that called this, so `done` callbacks may spawn tasks.
pub(super) fn start(
    path: &Path,
    gate: WriteGate,
    observer: Arc<crate::Observers>,
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

fn run(mut conn: Connection, mut rx: mpsc::UnboundedReceiver<Op>, gate: &WriteGate, observer: &crate::Observers) {
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
        let close = queue::take_close(&mut ops);
        if !ops.is_empty() {
            commit_batch(&mut conn, std::mem::take(&mut ops), gate, observer);
        }
        if let Some(reply) = close {
            rx.close();
            while let Ok(op) = rx.try_recv() {
                queue::refuse(op);
            }
            drop(conn);
            let _ = reply.send(());
            return;
        }
    }
}

/// Runs one batch in one transaction, then tells the observer and answers.
fn commit_batch(conn: &mut Connection, ops: Vec<Op>, gate: &WriteGate, observer: &crate::Observers) {
    let mut answers: Vec<Option<Answer>> = Vec::with_capacity(ops.len());
    let (commit, committed) = queue::commit_signal();
    let began = std::time::Instant::now();
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
    observer.committed(failed.is_none(), answers.len(), began.elapsed());
    queue::settle(answers, failed, &commit, &observer.jobs);
}

//! Group commit of the hot-path writes on Postgres: job inserts, claims, transitions,
//! log chunks and progress.
//!
//! The contract is SQLite's (`sqlite::writer`): callers hand an [`Op`] to one writer
//! and wait for its answer; the writer takes everything queued, up to `MAX_OPS`, runs
//! it in order in one transaction and commits once, and only then tells the observer
//! and answers each op (claims excepted: they are answered when their statement has
//! run, with a handle that resolves at the commit). So an answer always means
//! "committed", while many jobs share each commit, which costs milliseconds here.
//!
//! The writer is a task on the runtime that connected, driving a connection of its
//! own. A batch that fails drops that connection and the next batch opens a new one,
//! so a restarted server or a killed backend costs the ops of one batch, which get
//! the error, and nothing after it.
//!
//! Layout: this module owns the task (its loop, its connection) and hands each batch
//! to [`batch`], which plans it and runs it in its transaction; [`claim`] holds the
//! admission statements; [`sql`] the rest of the statements and the values they bind.

mod batch;
mod claim;
pub(super) mod sql;

use crate::queue::{self, Answer, MAX_OPS, answer_err};
use crate::{Result, StoreError};
use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use std::sync::Arc;
use tokio::sync::mpsc;

pub(super) use crate::queue::Op;

/// Opens the writer's connection with `options` (to a database already migrated) and
/// starts the writer task; it ends at [`Op::Close`] or when every sender is gone.
/// Answers are delivered on that task, so `done` callbacks may spawn tasks.
pub(super) async fn start(
    options: PgConnectOptions,
    origin: Arc<str>,
    observer: Arc<crate::Observers>,
) -> Result<mpsc::UnboundedSender<Op>> {
    let conn = options.connect().await?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(options, origin, Some(conn), rx, observer));
    Ok(tx)
}

async fn run(
    options: PgConnectOptions,
    origin: Arc<str>,
    mut conn: Option<PgConnection>,
    mut rx: mpsc::UnboundedReceiver<Op>,
    observer: Arc<crate::Observers>,
) {
    let mut ops = Vec::with_capacity(MAX_OPS);
    while let Some(first) = rx.recv().await {
        // Everything queued meanwhile (while the last commit was made) shares this
        // transaction.
        ops.push(first);
        while ops.len() < MAX_OPS
            && let Ok(op) = rx.try_recv()
        {
            ops.push(op);
        }
        let close = queue::take_close(&mut ops);
        if !ops.is_empty() {
            commit_batch(&options, &origin, &mut conn, std::mem::take(&mut ops), &observer).await;
        }
        if let Some(reply) = close {
            rx.close();
            while let Ok(op) = rx.try_recv() {
                queue::refuse(op);
            }
            if let Some(conn) = conn.take() {
                let _ = sqlx::Connection::close(conn).await;
            }
            let _ = reply.send(());
            return;
        }
    }
    if let Some(conn) = conn.take() {
        let _ = sqlx::Connection::close(conn).await;
    }
}

/// Runs one batch in one transaction, then tells the observer and answers.
async fn commit_batch(
    options: &PgConnectOptions,
    origin: &str,
    conn: &mut Option<PgConnection>,
    ops: Vec<Op>,
    observer: &crate::Observers,
) {
    let mut answers: Vec<Option<Answer>> = Vec::with_capacity(ops.len());
    let (commit, committed) = queue::commit_signal();
    let began = std::time::Instant::now();
    let outcome = match connection(options, conn).await {
        Ok(c) => batch::apply(c, origin, ops, &mut answers, &committed).await,
        Err(e) => {
            let msg = e.to_string();
            answers.extend(ops.into_iter().map(|op| answer_err(op, &msg)));
            Err(e)
        }
    };
    let failed = outcome.err().map(|e| {
        tracing::error!(error = %e, ops = answers.len(), "group commit failed");
        // The connection may be what failed: the next batch opens a new one.
        *conn = None;
        e.to_string()
    });
    observer.committed(failed.is_none(), answers.len(), began.elapsed());
    queue::settle(answers, failed, &commit, &observer.jobs);
}

/// The writer's connection, opened again if the last batch dropped it.
async fn connection<'c>(
    options: &PgConnectOptions,
    conn: &'c mut Option<PgConnection>,
) -> Result<&'c mut PgConnection> {
    if conn.is_none() {
        *conn = Some(options.connect().await?);
    }
    conn.as_mut().ok_or_else(|| StoreError::Commit("the writer has no connection".into()))
}

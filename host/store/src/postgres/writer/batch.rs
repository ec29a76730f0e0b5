//! One batch of the group commit, planned and run inside its transaction: the ops are
//! grouped by kind and each kind runs as one statement (a node's claims as one claim
//! of their total), in the order SQLite's writer
//! keeps (progress, inserts, log chunks, `running`, ends, claims), for the same
//! reasons: a claim sees the jobs just inserted and the capacity just freed, a run's
//! last chunks are on disk no later than its end, and a short run's `running` and end
//! are one statement.
//!
//! A failed statement aborts a Postgres transaction, and a COMMIT of an aborted one
//! quietly rolls back. So the statements an op's own values can make fail (inserts:
//! a missing user, a duplicate id; log chunks: a sequence number already stored, a
//! missing job; an end with artifacts) run in a savepoint, and when the statement for
//! many ops fails, its ops run one by one, each in a savepoint of its own, so each
//! gets its own error and the rest are kept. The others (progress, `running`, ends,
//! claims) cannot fail because of one op's values; if one fails anyway (a lost
//! connection, a deadlock), [`Tx`] remembers it and the whole batch fails.

use super::claim::claim;
use super::sql::{
    append_logs, bulk_finish, bulk_insert, bulk_mark_running, finish_job, insert_job, notify_moved, set_progress,
};
use crate::queue::{self, Answer, ClaimReply, Op, Sorted, answer_err};
use crate::{Claimant, Claimed, Committed, Result, StoreError, StoredChunk};
use jobhost_model::{Job, JobStatus, Progress};
use sqlx::postgres::PgConnection;
use std::collections::{HashMap, HashSet};

/// The batch's transaction, and the first failure that left it unusable.
struct Tx<'c> {
    conn: &'c mut PgConnection,
    broken: Option<String>,
}

impl Tx<'_> {
    /// Remembers a failure that aborted the transaction; passes `r` on.
    fn check<T>(&mut self, r: Result<T>) -> Result<T> {
        if let (Err(e), None) = (&r, &self.broken) {
            self.broken = Some(e.to_string());
        }
        r
    }

    async fn run(&mut self, sql: &'static str) {
        let r = sqlx::raw_sql(sql).execute(&mut *self.conn).await.map(drop).map_err(StoreError::from);
        let _ = self.check(r);
    }

    /// Opens a savepoint: what runs until [`Tx::settle`] may fail without aborting
    /// the transaction.
    async fn savepoint(&mut self) {
        self.run("SAVEPOINT op").await;
    }

    /// Closes the savepoint, undoing what ran since it unless `keep`.
    async fn settle(&mut self, keep: bool) {
        if !keep {
            self.run("ROLLBACK TO SAVEPOINT op").await;
        }
        self.run("RELEASE SAVEPOINT op").await;
    }
}

/// A result shared by several ops: each gets the value, or the error as text.
fn shared<T, U>(r: &Result<T>, f: impl FnOnce(&T) -> U) -> Result<U> {
    r.as_ref().map(f).map_err(|e| StoreError::Commit(e.to_string()))
}

/// Runs `ops` in one transaction and fills `answers` with one answer per op, in op
/// order (see the module's documentation), telling the other processes of the jobs it
/// moved as from `origin`. `Err` when the transaction did not commit.
pub(super) async fn apply(
    conn: &mut PgConnection,
    origin: &str,
    ops: Vec<Op>,
    answers: &mut Vec<Option<Answer>>,
    committed: &Committed,
) -> Result<()> {
    answers.resize_with(ops.len(), || None);
    if let Err(e) = sqlx::raw_sql("BEGIN").execute(&mut *conn).await {
        let msg = e.to_string();
        for (slot, op) in answers.iter_mut().zip(ops) {
            *slot = answer_err(op, &msg);
        }
        return Err(e.into());
    }
    let mut tx = Tx { conn, broken: None };
    let Sorted { inserts, logs, marks, finishes, claims, progress } = Sorted::new(ops, answers);

    // Progress first, as on SQLite; a job
    // reported twice keeps its last report.
    if !progress.is_empty() {
        let mut last: HashMap<&str, &Progress> = HashMap::new();
        for (_, id, p, _) in &progress {
            last.insert(id, p);
        }
        let updates: Vec<(&str, &Progress)> = last.into_iter().collect();
        let r = set_progress(tx.conn, &updates).await;
        let r = tx.check(r);
        for (i, _, _, done) in progress {
            answers[i] = Some(Answer::Done(done, shared(&r, |_| ())));
        }
    }

    // A job that consumes an upload inserts alone (the upload's row changes with it).
    let (plain, with_files): (Vec<_>, Vec<_>) = inserts.into_iter().partition(|(_, job, _)| job.files_id.is_none());
    for (i, job, reply) in with_files {
        tx.savepoint().await;
        let r = insert_job(tx.conn, &job).await;
        tx.settle(matches!(r, Ok(Some(_)))).await;
        answers[i] = Some(Answer::Inserted(reply, r));
    }
    if !plain.is_empty() {
        tx.savepoint().await;
        let r = bulk_insert(tx.conn, &plain.iter().map(|(_, job, _)| &**job).collect::<Vec<_>>()).await;
        tx.settle(r.is_ok()).await;
        let mut created = r.unwrap_or_default();
        for (i, job, reply) in plain {
            let result = match created.remove(&job.id) {
                Some(j) => Ok(Some((j, true))),
                // Not in the bulk answer: a duplicate idempotency key (or the bulk
                // statement failed); this op alone says which.
                None => {
                    tx.savepoint().await;
                    let r = insert_job(tx.conn, &job).await;
                    tx.settle(matches!(r, Ok(Some(_)))).await;
                    r
                }
            };
            answers[i] = Some(Answer::Inserted(reply, result));
        }
    }
    if !logs.is_empty() {
        let all: Vec<&StoredChunk> = logs.iter().flat_map(|(_, chunks, _)| chunks.iter()).collect();
        tx.savepoint().await;
        let r = append_logs(tx.conn, &all).await;
        let bulk_ok = r.is_ok();
        tx.settle(bulk_ok).await;
        for (i, chunks, done) in logs {
            let result = if bulk_ok {
                Ok(())
            } else {
                tx.savepoint().await;
                let r = append_logs(tx.conn, &chunks.iter().collect::<Vec<_>>()).await;
                tx.settle(r.is_ok()).await;
                r
            };
            answers[i] = Some(Answer::Done(done, result));
        }
    }

    // A run's `running` and its end in the same batch (a short run queues both at
    // once): the end's statement makes both changes, so no reader could ever have
    // seen the `running` row in between. The `running` op is answered (and observed)
    // with the job as it was between the two.
    let ending: HashSet<(&str, u32)> =
        finishes.iter().filter(|f| f.4.is_empty()).map(|f| (f.1.as_str(), f.2)).collect();
    let (merged, marks): (Vec<_>, Vec<_>) =
        marks.into_iter().partition(|(_, id, attempt, _)| ending.contains(&(id.as_str(), *attempt)));
    let merged_keys: HashSet<(String, u32)> = merged.iter().map(|(_, id, attempt, _)| (id.clone(), *attempt)).collect();
    drop(ending);

    if !marks.is_empty() {
        let runs: Vec<(&str, u32)> = marks.iter().map(|(_, id, attempt, _)| (id.as_str(), *attempt)).collect();
        let r = bulk_mark_running(tx.conn, &runs).await;
        let r = tx.check(r);
        for (i, id, _, reply) in marks {
            answers[i] = Some(Answer::Job(reply, shared(&r, |rows| rows.iter().find(|j| j.id == id).cloned())));
        }
    }

    // Ends with artifacts run one by one (they insert rows of their own); the rest
    // share one statement.
    let (plain, with_files): (Vec<_>, Vec<_>) = finishes.into_iter().partition(|f| f.4.is_empty());
    for (i, id, attempt, finish, artifacts, reply) in with_files {
        tx.savepoint().await;
        let r = finish_job(tx.conn, &id, attempt, &finish, &artifacts).await;
        tx.settle(r.is_ok()).await;
        answers[i] = Some(Answer::Job(reply, r));
    }
    if !plain.is_empty() {
        let ends: Vec<_> = plain
            .iter()
            .map(|(_, id, attempt, finish, _, _)| {
                (id.as_str(), *attempt, finish, merged_keys.contains(&(id.clone(), *attempt)))
            })
            .collect();
        let r = bulk_finish(tx.conn, &ends).await;
        let ended = tx.check(r);
        for (i, id, _, _, _, reply) in plain {
            answers[i] = Some(Answer::Job(reply, shared(&ended, |rows| rows.iter().find(|j| j.id == id).cloned())));
        }
        for (i, id, _, reply) in merged {
            let running = shared(&ended, |rows| rows.iter().find(|j| j.id == id).map(running_before));
            answers[i] = Some(Answer::Job(reply, running));
        }
    }

    // Answered now, before the commit, with the handle that tells of it. The claims of
    // one node share one claim of their total (a statement is a round trip here, and
    // a submit queues a claim of one job behind it): its jobs go to them in op order,
    // each taking up to what it asked for, under the latest lease asked.
    let mut groups: Vec<NodeClaims> = Vec::new();
    for (i, lease_until, node, max, reply) in claims {
        match groups.iter_mut().find(|g| g.node == node) {
            Some(g) => {
                if lease_until > g.lease_until {
                    g.lease_until = lease_until;
                }
                g.ops.push((i, max, reply));
            }
            None => groups.push(NodeClaims { node, lease_until, ops: vec![(i, max, reply)] }),
        }
    }
    for NodeClaims { node, lease_until, ops } in groups {
        let total = ops.iter().map(|(_, max, _)| max).sum();
        let r = claim(tx.conn, &lease_until, &node, total).await;
        match tx.check(r) {
            Ok(jobs) => {
                let mut jobs = jobs.into_iter();
                for (i, max, reply) in ops {
                    let mine: Vec<Job> = jobs.by_ref().take(max).collect();
                    let _ = reply.send(Ok(Claimed { jobs: mine.clone(), committed: committed.clone() }));
                    answers[i] = Some(Answer::ClaimedEarly(mine));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for (i, _, reply) in ops {
                    answers[i] = Some(Answer::Claimed(reply, StoreError::Commit(msg.clone())));
                }
            }
        }
    }

    let moved = queue::moved(answers);
    if !moved.is_empty() {
        let r = notify_moved(tx.conn, origin, &moved).await;
        let _ = tx.check(r);
    }

    if let Some(msg) = tx.broken {
        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *tx.conn).await;
        return Err(StoreError::Commit(msg));
    }
    sqlx::raw_sql("COMMIT").execute(&mut *tx.conn).await?;
    Ok(())
}

/// The claims of one node in a batch: made as one claim of their total.
struct NodeClaims {
    node: Box<Claimant>,
    /// The latest lease any of them asked for.
    lease_until: String,
    /// Each claim's place in the batch, how many jobs it asked for, and its reply.
    ops: Vec<(usize, usize, ClaimReply)>,
}

/// The job as it was after its `running` transition and before its end, for a run
/// whose two transitions one statement made.
fn running_before(ended: &Job) -> Job {
    Job { status: JobStatus::Running, exit_code: None, error: None, detail: None, completed_at: None, ..ended.clone() }
}

//! One batch of the group commit, planned and run inside its transaction: the ops are
//! grouped by kind, each kind runs as one multi-row statement per [`BULK_ROWS`] where
//! it can, and a statement that fails falls back to its ops one by one so that each
//! op gets its own error.
//!
//! The plan lives apart from the thread (`writer`) and from the statements (`sql`,
//! `claim`) because it is where the batch's ordering guarantees are kept: the order
//! the kinds run in, the `running` and end of a short run folded into one statement,
//! and claims answered before the commit.

use super::claim::claim;
use super::sql::{
    BULK_ROWS, append_logs, bulk_append_logs, bulk_finish, bulk_insert, bulk_mark_running, finish_job, insert_job,
    mark_running, set_progress,
};
use super::{Answer, Op, answer_err};
use crate::queue::Sorted;
use crate::{Claimed, Committed, Result, StoredChunk};
use jobhost_model::{Job, JobStatus};
use rusqlite::{Connection, TransactionBehavior};
use std::collections::{HashMap, HashSet};

/// Runs `ops` in one transaction and fills `answers` with one answer per op, in op
/// order.
///
/// Ops of a kind run together, as one statement per kind where they can (a
/// multi-row INSERT, an `UPDATE … FROM (VALUES …)`). The kinds run in an order that
/// keeps every dependency an op can have on an earlier one: inserts, then log chunks
/// and progress, then `running`, then ends, then claims (which see the jobs just
/// inserted and the capacity just freed). A statement that fails is retried op by op,
/// so each op gets its own error.
pub(super) fn apply(
    conn: &mut Connection,
    ops: Vec<Op>,
    answers: &mut Vec<Option<Answer>>,
    committed: &Committed,
) -> Result<()> {
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
    let Sorted { inserts, logs, marks, finishes, claims, progress } = Sorted::new(ops, answers);
    // Progress first, each report as it came (the last of a job's reports wins).
    for (i, id, progress, done) in progress {
        answers[i] = Some(Answer::Done(done, set_progress(conn, &id, &progress)));
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
    for (i, lease_until, node, max, reply) in claims {
        answers[i] = Some(match claim(conn, &lease_until, &node, max) {
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

/// The job as it was after its `running` transition and before its end, for a run
/// whose two transitions one statement made.
fn running_before(ended: &Job) -> Job {
    Job { status: JobStatus::Running, exit_code: None, error: None, detail: None, completed_at: None, ..ended.clone() }
}

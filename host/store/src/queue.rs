//! The group commit's queue, shared by the backends' writers: the ops callers hand
//! over ([`Op`]), the answers a writer holds until its commit ([`Answer`]), and what
//! happens to them at the end of a batch ([`settle`]: op by op in commit order, observe
//! then answer) and at close ([`take_close`], [`refuse`]).
//!
//! Each backend plans and runs a batch its own way (SQLite on a thread of its own,
//! Postgres on an async connection); what a caller sees of the queue is kept in this
//! one place, so the backends cannot drift apart on it: an answer means "committed",
//! the observer sees an op's moved jobs after the commit and before that op's answer,
//! a job's log events come before the status its end moves it to, and an op
//! queued after a close is refused with "the store is closed".

use crate::{Claimant, Claimed, Committed, Done, Finish, NewJob, Observer, Queued, Result, StoreError, StoredChunk};
use jobhost_model::{Artifact, Job, Progress};
use std::sync::OnceLock;
use tokio::sync::{mpsc, oneshot, watch};

/// Most ops in one transaction: bounds how long the first op of a large batch waits
/// for its answer, and the memory a batch holds.
pub(crate) const MAX_OPS: usize = 2048;

/// One write, with where its answer goes.
pub(crate) enum Op {
    InsertJob(Box<NewJob>, InsertReply),
    Claim {
        lease_until: String,
        node: Box<Claimant>,
        max: usize,
        reply: ClaimReply,
    },
    MarkRunning {
        id: String,
        attempt: u32,
        reply: JobReply,
    },
    Finish {
        id: String,
        attempt: u32,
        finish: Finish,
        artifacts: Vec<Artifact>,
        reply: JobReply,
    },
    AppendLogs(Vec<StoredChunk>, Done),
    Progress(String, Progress, Done),
    /// Answered once everything queued before it is committed.
    Flush(Done),
    /// Commits what is queued before it, closes the connection and stops the writer;
    /// answered once the connection is closed.
    Close(oneshot::Sender<()>),
}

/// Where the answers of the ops go.
type JobReply = oneshot::Sender<Result<Option<Job>>>;
type InsertReply = oneshot::Sender<Result<Option<(Job, bool)>>>;
pub(crate) type ClaimReply = oneshot::Sender<Result<Claimed>>;

/// One batch's ops by kind, each with its position in the batch (where its answer
/// goes): what both writers run, kind by kind, in their dependency order. A flush is
/// answered while sorting (it only waits for the commit); a close never reaches here.
#[derive(Default)]
pub(crate) struct Sorted {
    pub(crate) inserts: Vec<(usize, Box<NewJob>, InsertReply)>,
    pub(crate) logs: Vec<(usize, Vec<StoredChunk>, Done)>,
    pub(crate) marks: Vec<(usize, String, u32, JobReply)>,
    pub(crate) finishes: Vec<(usize, String, u32, Finish, Vec<Artifact>, JobReply)>,
    pub(crate) claims: Vec<(usize, String, Box<Claimant>, usize, ClaimReply)>,
    pub(crate) progress: Vec<(usize, String, Progress, Done)>,
}

impl Sorted {
    /// Sorts `ops`, answering flushes in `answers` (which has a slot per op).
    pub(crate) fn new(ops: Vec<Op>, answers: &mut [Option<Answer>]) -> Sorted {
        let mut s = Sorted::default();
        for (i, op) in ops.into_iter().enumerate() {
            match op {
                Op::InsertJob(job, reply) => s.inserts.push((i, job, reply)),
                Op::AppendLogs(chunks, done) => s.logs.push((i, chunks, done)),
                Op::MarkRunning { id, attempt, reply } => s.marks.push((i, id, attempt, reply)),
                Op::Finish { id, attempt, finish, artifacts, reply } => {
                    s.finishes.push((i, id, attempt, finish, artifacts, reply))
                }
                Op::Claim { lease_until, node, max, reply } => s.claims.push((i, lease_until, node, max, reply)),
                Op::Progress(id, p, done) => s.progress.push((i, id, p, done)),
                Op::Flush(done) => answers[i] = Some(Answer::Done(done, Ok(()))),
                // A writer takes every close out of a batch before it gets here.
                Op::Close(reply) => drop(reply),
            }
        }
        s
    }
}

/// The answer of an op, held until the commit.
pub(crate) enum Answer {
    Inserted(InsertReply, Result<Option<(Job, bool)>>),
    /// A claim that failed (answered after the commit, like any op).
    Claimed(ClaimReply, StoreError),
    /// A claim already answered before the commit: only its jobs are left to observe.
    ClaimedEarly(Vec<Job>),
    Job(JobReply, Result<Option<Job>>),
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

/// Every job the answers moved, with its new status, in op order: what a batch tells
/// other processes sharing the database.
#[cfg(feature = "postgres")]
pub(crate) fn moved(answers: &[Option<Answer>]) -> Vec<(&str, jobhost_model::JobStatus)> {
    let mut jobs = Vec::new();
    for answer in answers.iter().flatten() {
        match answer {
            Answer::Inserted(_, Ok(Some((job, true)))) | Answer::Job(_, Ok(Some(job))) => {
                jobs.push((job.id.as_str(), job.status))
            }
            Answer::ClaimedEarly(claimed) => jobs.extend(claimed.iter().map(|j| (j.id.as_str(), j.status))),
            _ => {}
        }
    }
    jobs
}

/// The answer `op` gets when it is not made; none for a close (whose sender learns
/// of it when its reply is dropped).
pub(crate) fn answer_err(op: Op, msg: &str) -> Option<Answer> {
    let err = || StoreError::Commit(msg.to_owned());
    Some(match op {
        Op::InsertJob(_, reply) => Answer::Inserted(reply, Err(err())),
        Op::Claim { reply, .. } => Answer::Claimed(reply, err()),
        Op::MarkRunning { reply, .. } | Op::Finish { reply, .. } => Answer::Job(reply, Err(err())),
        Op::AppendLogs(_, done) | Op::Progress(_, _, done) | Op::Flush(done) => Answer::Done(done, Err(err())),
        Op::Close(_) => return None,
    })
}

/// Answers an op that came after [`Op::Close`].
pub(crate) fn refuse(op: Op) {
    if let Some(answer) = answer_err(op, "the store is closed") {
        answer.deliver(None);
    }
}

/// Hands `op` to the writer behind `ops`; refuses it at once when the writer is gone.
pub(crate) fn send(ops: &mpsc::UnboundedSender<Op>, op: Op) {
    if let Err(mpsc::error::SendError(op)) = ops.send(op) {
        refuse(op);
    }
}

/// Hands `op` to the writer now; the future resolves with its answer (`rx`) after the
/// commit.
pub(crate) fn send_for<T: Send + 'static>(
    ops: &mpsc::UnboundedSender<Op>,
    op: Op,
    rx: oneshot::Receiver<Result<T>>,
) -> Queued<T> {
    send(ops, op);
    Box::pin(async move { rx.await.unwrap_or_else(|_| Err(StoreError::Commit("the store's writer stopped".into()))) })
}

/// A [`Done`] that hands its outcome to the returned future.
pub(crate) fn done_future() -> (Done, Queued<()>) {
    let (tx, rx) = oneshot::channel();
    let done: Done = Box::new(move |r| drop(tx.send(r)));
    let fut: Queued<()> =
        Box::pin(
            async move { rx.await.unwrap_or_else(|_| Err(StoreError::Commit("the store's writer stopped".into()))) },
        );
    (done, fut)
}

/// Takes the first close out of a batch: the ops queued after it are refused, as any
/// op after a close is. Returns the close's reply, if the batch has one.
pub(crate) fn take_close(ops: &mut Vec<Op>) -> Option<oneshot::Sender<()>> {
    let at = ops.iter().position(|op| matches!(op, Op::Close(_)))?;
    let mut rest = ops.split_off(at).into_iter();
    let reply = match rest.next() {
        Some(Op::Close(reply)) => Some(reply),
        _ => None,
    };
    rest.for_each(refuse);
    reply
}

/// The handle every early claim of a batch gets, and the sender that resolves it.
pub(crate) fn commit_signal() -> (watch::Sender<Option<Result<(), String>>>, Committed) {
    let (tx, rx) = watch::channel(None);
    (tx, Committed(rx))
}

/// Ends a batch: op by op, in op order, when it was committed (`failed` is none) tells
/// the observer of the jobs the op moved and then delivers its answer (replaced by the
/// commit's error when the commit failed); then resolves the early claims' handle.
/// One op at a time, so what an op's answer publishes (a log chunk's event) comes
/// before the status events of the ops queued after it in the same batch (that job's
/// end).
pub(crate) fn settle(
    answers: Vec<Option<Answer>>,
    failed: Option<String>,
    commit: &watch::Sender<Option<Result<(), String>>>,
    observer: &OnceLock<Observer>,
) {
    let observer = if failed.is_none() { observer.get() } else { None };
    for a in answers.into_iter().flatten() {
        if let Some(observer) = observer {
            a.observe(observer);
        }
        a.deliver(failed.as_deref());
    }
    commit.send_replace(Some(failed.map_or(Ok(()), Err)));
}

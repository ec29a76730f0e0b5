//! Claims pending jobs and runs them, at most `concurrency` at once.
//!
//! A claim is one conditional UPDATE that moves the oldest highest-priority pending
//! job to `starting`, bumps its attempt and takes a lease; one transaction claims a job
//! for every free slot. The runner renews the lease while the job runs and records the
//! end only for its own attempt. The loop sleeps until a submit wakes it (or
//! [`IDLE_POLL`] passes, for jobs re-queued by others).
//!
//! A job's writes ride on the store's group commit, and its runner waits for as few of
//! them as it can:
//! - A claim is answered before its commit (see [`jobhost_store::Claimed`]), and a job
//!   whose effects stay inside its own directory starts at once, while the commit goes
//!   to disk. Nothing of the run is seen before that commit: its transitions, logs and
//!   end are written after the claim, so committed after it, and the end is queued only
//!   once the claim is known to be on disk. If that commit fails, the run is dropped
//!   unrecorded and the job is pending again, as after a crash. A job that consumes an
//!   upload or is shown other directories (a pull's `/models`) waits for the commit.
//! - The guest starts without waiting for the `running` transition (a short run queues
//!   it together with its end), and the slot is free as soon as the end is queued.
//!
//! A slot therefore waits for no commit of its own between two jobs: the end of one
//! and the claim of the next share a transaction, and the next run overlaps its commit.

mod grants;
pub mod sweeper;

pub use grants::Grants;

use crate::jobs::Jobs;
use jobhost_executors::{Executors, Task};
use jobhost_model::{Job, JobStatus, RunOutcome};
use jobhost_store::{Claimed, Committed, Finish};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// How long a claim holds a job without renewal; a host that dies lets it lapse.
pub const LEASE: Duration = Duration::from_secs(30);
/// Renewal period: a third of the lease, so two renewals may fail before it lapses.
pub const RENEW_EVERY: Duration = Duration::from_secs(10);
/// Most jobs one claim takes (when that many slots are free): bounds one transaction.
pub const MAX_CLAIM: usize = 256;
/// How long a run goes before its `running` transition is queued on its own; a
/// shorter run records it in the same commit as its end. Well under the log flush
/// period, so a job that writes output is marked running before its first chunk.
pub const START_GRACE: Duration = Duration::from_millis(5);
/// How often an idle scheduler looks for work nobody announced.
pub const IDLE_POLL: Duration = Duration::from_secs(1);

/// The scheduler of one host.
#[derive(Debug, Clone)]
pub struct Scheduler {
    /// The jobs domain.
    pub jobs: Jobs,
    /// What runs each kind of job.
    pub executors: Executors,
    /// What each kind of job is granted beyond its sandbox.
    pub grants: Grants,
    /// Most jobs running at once.
    pub concurrency: usize,
    /// Where runs execute: a runtime of their own, so guests never share worker
    /// threads with the RPC server.
    pub exec: tokio::runtime::Handle,
    /// Fetches a component this node does not hold (another node installed it).
    pub plugins: crate::plugins::Plugins,
    /// Where uploads wait for the jobs that consume them.
    pub uploads: crate::uploads::Uploads,
    /// Fetches the files of an upload another node holds.
    pub cluster: crate::cluster::Cluster,
    /// Cancelled when this node drains: it claims no more, and the runs go on.
    pub draining: CancellationToken,
}

impl Scheduler {
    /// Claims and runs jobs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.concurrency.max(1)));
        let hook: crate::jobs::SubmitHook = {
            let (this, slots, shutdown) = (self.clone(), slots.clone(), shutdown.clone());
            Arc::new(move || !shutdown.is_cancelled() && !this.draining.is_cancelled() && this.claim_free_slot(&slots))
        };
        self.jobs.on_submit(Some(hook));
        self.claim_loop(&slots, &shutdown).await;
        // The hook holds this scheduler (and through it the jobs service): let go.
        self.jobs.on_submit(None);
    }

    /// Right after a submit: takes a free slot and queues a claim of one job for it,
    /// behind the submit's insert, and runs what it gets (one job for one submit: the
    /// claim is a single indexed UPDATE). Returns `false` when every slot is busy:
    /// the loop claims when one frees.
    fn claim_free_slot(&self, slots: &Arc<Semaphore>) -> bool {
        let Ok(permit) = slots.clone().try_acquire_owned() else { return false };
        let permits = vec![permit];
        let claimed = self.jobs.claim(LEASE, 1);
        let this = self.clone();
        tokio::spawn(async move {
            match claimed.await {
                Ok(claimed) => this.spawn_runs(claimed, permits),
                Err(e) => {
                    tracing::error!(error = %e, "claiming jobs");
                    this.jobs.work_signal().notify_one();
                }
            }
        });
        true
    }

    /// Runs each job in one of `permits` (the rest are given back).
    fn spawn_runs(&self, claimed: Claimed, mut permits: Vec<OwnedSemaphorePermit>) {
        for (job, permit) in claimed.jobs.into_iter().zip(permits.drain(..)) {
            let this = self.clone();
            let committed = claimed.committed.clone();
            self.exec.spawn(async move { this.run_one(job, committed, permit).await });
        }
    }

    async fn claim_loop(&self, slots: &Arc<Semaphore>, shutdown: &CancellationToken) {
        let work = self.jobs.work_signal();
        loop {
            // Shutdown first: a stop frees the slots of the runs it drops, and those must
            // not be filled again.
            let first = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                _ = self.draining.cancelled() => return,
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            };
            // Every free slot is filled by one claim (one transaction).
            let mut permits = vec![first];
            while permits.len() < MAX_CLAIM {
                match slots.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            let asked = permits.len();
            match self.jobs.claim(LEASE, asked).await {
                Ok(claimed) => {
                    let drained = claimed.jobs.len() < asked;
                    self.spawn_runs(claimed, permits);
                    if drained {
                        // The queue had no more that fit: sleep until a submit (or a
                        // poll, for work that arrives without one).
                        tokio::select! {
                            _ = work.notified() => {}
                            _ = tokio::time::sleep(IDLE_POLL) => {}
                            _ = shutdown.cancelled() => return,
                            _ = self.draining.cancelled() => return,
                        }
                    }
                }
                Err(e) => {
                    drop(permits);
                    tracing::error!(error = %e, "claiming jobs");
                    tokio::select! {
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
        }
    }

    /// Runs one claimed job in its slot. A job confined to its own directory starts
    /// before its claim is committed; its end is queued only after. The `running`
    /// transition is queued once the run has lasted [`START_GRACE`], or together with
    /// the end for a run that is over sooner, so a short job costs one commit after
    /// its claim, not two. A refused start (the job was cancelled or taken over)
    /// cancels the run, and the end, a conditional update too, is then refused. The
    /// slot is given back as soon as the end is queued, so the next claim shares that
    /// transaction and sees the capacity this job freed.
    async fn run_one(&self, claimed: Job, committed: Committed, permit: OwnedSemaphorePermit) {
        let job = &claimed;
        let cancel = self.jobs.track(job);
        tracing::debug!(job_id = job.id, plugin = job.plugin, "running");
        let mut run_job = claimed.clone();
        // A job that may run again, and every workflow task, tells its runs apart:
        // `JOBHOST_ATTEMPT`, from 1, and `attempt` in an input that is an object.
        if job.max_attempts > 1 || job.run_id.is_some() {
            run_job.env.insert("JOBHOST_ATTEMPT".into(), job.attempt.to_string());
            if let Some(serde_json::Value::Object(input)) = &mut run_job.input {
                input.insert("attempt".into(), job.attempt.into());
            }
        }
        let task = Task {
            job: run_job,
            job_dir: self.jobs.jobs_dir().join(&job.id),
            input_from: self.jobs.input_source(job),
            grant: self.grants.for_job(job),
        };
        // Only a run whose effects stay inside `jobs/<id>` may start before the claim is
        // on disk: a consumed upload's files are moved in, and other mounts are shared.
        let confined = task.input_from.is_none() && task.grant.is_confined();
        if !confined && let Err(e) = committed.clone().wait().await {
            tracing::warn!(job_id = job.id, error = %e, "the claim was not committed; the job is not run");
            return self.jobs.abandon(job).await;
        }
        let sink = Arc::new(self.jobs.recorder().clone());
        let (executor, kind, stop) = (self.executors.for_kind(job.kind).cloned(), job.kind, cancel.clone());
        let (plugins, uploads, cluster) = (self.plugins.clone(), self.uploads.clone(), self.cluster.clone());
        let traced = self.jobs.trace_run(job);
        let run = async move {
            // Installed through another node: fetched and compiled here first.
            if task.job.kind.runs_component()
                && let Err(e) = plugins.ensure(&task.job.plugin_digest).await
            {
                return RunOutcome::failed(e.to_string());
            }
            // Files uploaded through another node: fetched before the job starts.
            if let Some(files) = &task.job.files_id
                && let Err(e) = cluster.fetch_upload(&uploads, files).await
            {
                return RunOutcome::failed(format!("fetching the job's input: {e}"));
            }
            match executor {
                Some(executor) => executor.run(task, sink, stop).await,
                None => RunOutcome::failed(format!("no executor runs jobs of kind {kind}")),
            }
        };
        // A short run is over before anything else is set up for it: no lease renewal,
        // no task to watch its start. (The run, and so its span, ends with the block.)
        let (outcome, started) = {
            tokio::pin!(run);
            tokio::select! {
                biased;
                outcome = &mut run => (outcome, None),
                _ = tokio::time::sleep(START_GRACE) => {
                    // A refused start must stop the run while it goes on: watch it apart.
                    let started = tokio::spawn(self.jobs.start(job, &cancel));
                    let renewer = tokio::spawn(renew(self.jobs.clone(), claimed.clone(), cancel.clone()));
                    let outcome = run.await;
                    renewer.abort();
                    (outcome, Some(started))
                }
            }
        };
        // Nothing of the run is recorded before its claim is on disk.
        if let Err(e) = committed.wait().await {
            tracing::warn!(job_id = job.id, error = %e, "the claim was not committed; the run is dropped unrecorded");
            if let Some(watched) = started {
                watched.abort();
            }
            drop(permit);
            return self.jobs.abandon(job).await;
        }
        // Queued now, right before the end (a short run's start and end share a commit).
        let start_now = started.is_none().then(|| self.jobs.start(job, &cancel));
        // A failed or timed-out attempt runs again, after its backoff, while attempts
        // remain; its files stay in the job's directory and become artifacts only
        // with the attempt that ends the job.
        let retry_at = (matches!(outcome.status, JobStatus::Failed | JobStatus::TimedOut)
            && job.attempt < job.max_attempts)
            .then(|| retry_time(job));
        let artifacts = if retry_at.is_some() { &[][..] } else { &outcome.artifacts[..] };
        let retried = retry_at.is_some();
        let finish = Finish {
            status: outcome.status,
            retry_at,
            exit_code: outcome.exit_code,
            error: outcome.error,
            detail: outcome.detail,
        };
        let status = finish.status;
        let traced = traced.map(|run| run.ran(status));
        let recorded = self.jobs.finish(job, finish, artifacts);
        if retried {
            self.jobs.held_changed();
        }
        drop(permit);
        let started = match (started, start_now) {
            (Some(watched), _) => watched.await.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string())),
            (None, Some(now)) => now.await.map_err(|e| e.to_string()),
            (None, None) => Ok(None),
        };
        match started {
            Ok(Some(_)) => {}
            Ok(None) => tracing::debug!(job_id = job.id, "the job moved on before its start was recorded"),
            Err(e) => tracing::error!(job_id = job.id, error = %e, "starting a job"),
        }
        let recorded = recorded.await;
        if let Some(run) = traced {
            run.finished((!retried).then_some(status));
        }
        match recorded {
            Ok(done) => tracing::debug!(job_id = done.id, status = %done.status, "finished"),
            Err(e) => tracing::error!(job_id = job.id, error = %e, "recording the end of a job"),
        }
    }
}

/// When the attempt after `job`'s current one may start: its retry policy's backoff,
/// with jitter.
fn retry_time(job: &Job) -> String {
    let delay = job.retry.delay(job.attempt, rand::random::<f64>());
    let at = chrono::Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Renews the lease of a running attempt every [`RENEW_EVERY`] until aborted; cancels
/// the run when the job is no longer ours (cancelled, or taken over).
async fn renew(jobs: Jobs, job: Job, cancel: CancellationToken) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + RENEW_EVERY, RENEW_EVERY);
    loop {
        tick.tick().await;
        match jobs.renew(&job, LEASE).await {
            Ok(true) => {}
            Ok(false) => return cancel.cancel(),
            Err(e) => tracing::warn!(job_id = job.id, error = %e, "renewing a lease"),
        }
    }
}

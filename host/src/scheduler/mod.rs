//! Claims pending jobs and runs them, at most `concurrency` at once.
//!
//! A claim is one conditional UPDATE that moves the oldest highest-priority pending
//! job to `starting`, bumps its attempt and takes a lease; the runner renews the lease
//! while the job runs and records the end only for its own attempt. The loop sleeps
//! until a submit wakes it (or [`IDLE_POLL`] passes, for jobs re-queued by others).

pub mod sweeper;

use crate::jobs::Jobs;
use crate::jobs::model::Job;
use crate::runtime::{RunSpec, Runtime};
use crate::store::Finish;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// How long a claim holds a job without renewal; a host that dies lets it lapse.
pub const LEASE: Duration = Duration::from_secs(30);
/// Renewal period: a third of the lease, so two renewals may fail before it lapses.
pub const RENEW_EVERY: Duration = Duration::from_secs(10);
/// How often an idle scheduler looks for work nobody announced.
pub const IDLE_POLL: Duration = Duration::from_secs(1);

/// The scheduler of one host.
#[derive(Debug, Clone)]
pub struct Scheduler {
    /// The jobs domain.
    pub jobs: Jobs,
    /// Runs components.
    pub runtime: Arc<Runtime>,
    /// Most jobs running at once.
    pub concurrency: usize,
    /// Where runs execute: a runtime of their own, so guests never share worker
    /// threads with the RPC server.
    pub exec: tokio::runtime::Handle,
}

impl Scheduler {
    /// Claims and runs jobs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.concurrency.max(1)));
        let work = self.jobs.work_signal();
        loop {
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                _ = shutdown.cancelled() => return,
            };
            match self.jobs.claim_next(LEASE).await {
                Ok(Some(job)) => {
                    let this = self.clone();
                    self.exec.spawn(async move {
                        this.run_one(job).await;
                        drop(permit);
                    });
                }
                Ok(None) => {
                    drop(permit);
                    tokio::select! {
                        _ = work.notified() => {}
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
                Err(e) => {
                    drop(permit);
                    tracing::error!(error = %e, "claiming a job");
                    tokio::select! {
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
        }
    }

    async fn run_one(&self, claimed: Job) {
        let (job, cancel) = match self.jobs.start(&claimed).await {
            Ok(Some(started)) => started,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(job_id = claimed.id, error = %e, "starting a job");
                return;
            }
        };
        tracing::debug!(job_id = job.id, plugin = job.plugin, "running");
        let renewer = {
            let (jobs, job, cancel) = (self.jobs.clone(), job.clone(), cancel.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(RENEW_EVERY);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    match jobs.renew(&job, LEASE).await {
                        Ok(true) => {}
                        // The job is no longer ours (cancelled, or taken over): stop it.
                        Ok(false) => return cancel.cancel(),
                        Err(e) => tracing::warn!(job_id = job.id, error = %e, "renewing a lease"),
                    }
                }
            })
        };
        let spec = RunSpec {
            job_id: job.id.clone(),
            plugin: job.plugin.clone(),
            digest: job.plugin_digest.clone(),
            args: job.args.clone(),
            env: job.env.clone(),
            input_json: job.input.as_ref().map_or_else(|| "null".to_owned(), |v| v.to_string()),
            memory_mb: job.memory_mb,
            timeout: Duration::from_secs(u64::from(job.timeout_s)),
            job_dir: self.jobs.jobs_dir().join(&job.id),
            input_from: self.jobs.input_source(&job),
        };
        let sink = Arc::new(self.jobs.recorder().clone());
        let outcome = self.runtime.run(spec, sink, cancel).await;
        renewer.abort();
        let finish = Finish { status: outcome.status, exit_code: outcome.exit_code, error: outcome.error };
        match self.jobs.finish(&job, finish, &outcome.artifacts).await {
            Ok(done) => tracing::debug!(job_id = done.id, status = %done.status, "finished"),
            Err(e) => tracing::error!(job_id = job.id, error = %e, "recording the end of a job"),
        }
    }
}

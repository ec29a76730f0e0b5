//! Every transition of a job after its submit. Clients cancel and clean up; the
//! sweeper cleans what outlived the retention and prunes by kind; the scheduler
//! recovers what a previous process left running, claims, tracks, starts, renews and
//! finishes runs. The store makes each transition a conditional update, so a stale
//! attempt or a job cancelled meanwhile keeps its status, and the transitions the
//! scheduler makes are queued at once and answered after their group commit.

use super::{Caller, Error, Jobs, Result};
use jobhost_model::{Artifact, Cpus, Job, JobKind, Usage, ids};
use jobhost_store::{Claimant, Claimed, Finish};
use std::future::Future;
use std::sync::PoisonError;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

impl Jobs {
    /// Cancels a job that has not ended; a running one is interrupted.
    pub async fn cancel(&self, caller: &Caller, id: &str) -> Result<Job> {
        let job = self.get(caller, id).await?;
        if job.status.is_terminal() {
            return Err(Error::Conflict(format!("job {id} has already ended ({})", job.status)));
        }
        match self.store.cancel(id, "cancelled by request").await? {
            Some(job) => {
                if let Some(token) = self.running.lock().unwrap_or_else(PoisonError::into_inner).get(id) {
                    token.cancel();
                }
                self.publish_status(&job);
                Ok(job)
            }
            None => {
                let job = self.get(caller, id).await?;
                Err(Error::Conflict(format!("job {id} has already ended ({})", job.status)))
            }
        }
    }

    /// Removes an ended job's files: `cleaning`, then `cleaned`; its idempotency key is
    /// free again. Cleaning a job that is running or already cleaned is a conflict.
    pub async fn cleanup(&self, caller: &Caller, id: &str) -> Result<Job> {
        let job = self.get(caller, id).await?;
        let Some(cleaning) = self.store.begin_cleanup(id).await? else {
            return Err(Error::Conflict(format!("job {id} is {}; only an ended job can be cleaned", job.status)));
        };
        self.publish_status(&cleaning);
        self.remove_files(&cleaning).await?;
        let cleaned = self
            .store
            .finish_cleanup(id)
            .await?
            .ok_or_else(|| Error::Conflict(format!("job {id} was cleaned by another request")))?;
        self.publish_status(&cleaned);
        Ok(cleaned)
    }

    /// Removes a job's directory and the files of its upload if they never moved in.
    async fn remove_files(&self, job: &Job) -> Result<()> {
        let mut dirs = vec![self.jobs_dir.join(&job.id)];
        dirs.extend(self.input_source(job));
        for dir in dirs {
            match tokio::fs::remove_dir_all(&dir).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::error!(job_id = job.id, error = %e, "removing job files");
                    return Err(Error::Internal(format!(
                        "removing the files of job {} failed; it stays cleaning",
                        job.id
                    )));
                }
            }
        }
        Ok(())
    }

    /// Deletes the jobs of `kind` that ended before `ended_before` (RFC 3339), records,
    /// logs and files; returns how many.
    pub async fn prune(&self, kind: JobKind, ended_before: &str) -> Result<u64> {
        let pruned = self.store.prune_jobs(kind, ended_before).await?;
        for id in &pruned {
            if ids::has_prefix(id, ids::JOB) {
                // Best effort: the record is gone, and a leftover directory is only space.
                let _ = tokio::fs::remove_dir_all(self.jobs_dir.join(id)).await;
            }
        }
        Ok(pruned.len() as u64)
    }

    /// Cleans every job that ended longer than `retention` ago and deletes its logs.
    /// Returns how many jobs were cleaned and how many log chunks went with them.
    pub async fn sweep_retention(&self, retention: Duration) -> Result<(u64, u64)> {
        let cutoff = chrono::Utc::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        let cutoff = cutoff.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let (mut cleaned, mut chunks) = (0, 0);
        loop {
            let ids = self.store.jobs_ended_before(&cutoff, 500).await?;
            if ids.is_empty() {
                return Ok((cleaned, chunks));
            }
            for id in ids {
                let Some(cleaning) = self.store.begin_cleanup(&id).await? else { continue };
                self.publish_status(&cleaning);
                self.remove_files(&cleaning).await?;
                if let Some(done) = self.store.finish_cleanup(&id).await? {
                    self.publish_status(&done);
                    cleaned += 1;
                }
                chunks += self.store.prune_logs(&id).await?;
            }
        }
    }

    // ---- the scheduler's side ----

    /// Re-queues or fails the jobs a previous process of this node left running;
    /// returns how many went back to the queue and how many failed.
    pub async fn recover(&self) -> Result<(usize, usize)> {
        let moved = self
            .store
            .recover_orphans(&self.here.worker_id, "the host stopped while the job ran and it has no attempts left")
            .await?;
        Ok(self.taken_back(&moved))
    }

    /// Re-queues or fails the jobs whose lease lapsed: their node was lost (or cannot
    /// reach the database). Any node may do it; a job is taken back once, by one
    /// conditional update. Returns how many went back to the queue and how many failed.
    pub async fn recover_lapsed(&self) -> Result<(usize, usize)> {
        let moved = self.store.recover_lapsed(&ids::now()).await?;
        Ok(self.taken_back(&moved))
    }

    /// Publishes the jobs a recovery moved and wakes the scheduler for those pending.
    fn taken_back(&self, moved: &[Job]) -> (usize, usize) {
        moved.iter().for_each(|job| self.publish_status(job));
        let requeued = moved.iter().filter(|j| j.status == jobhost_model::JobStatus::Pending).count();
        if requeued > 0 {
            self.work.notify_one();
        }
        (requeued, moved.len() - requeued)
    }

    /// Claims up to `max` pending jobs (in queue order, as far as they fit in the
    /// capacity) with a lease of `lease`, in one transaction. Queued at once, and
    /// answered before the commit: see [`Claimed`].
    pub fn claim(&self, lease: Duration, max: usize) -> impl Future<Output = Result<Claimed>> + Send + 'static + use<> {
        let node = Claimant {
            worker_id: self.here.worker_id.to_string(),
            labels: self.here.labels.to_vec(),
            capacity: Usage {
                cpus: Cpus::whole(self.limits.capacity_cpus),
                memory_mb: u64::from(self.limits.capacity_memory_mb),
            },
            gpus: self.here.gpus.to_vec(),
        };
        let claimed = self.store.claim_early(&lease_until(lease), &node, max);
        let timer = self.metrics.claim_timer();
        async move {
            let claimed = claimed.await?;
            timer.claimed(claimed.jobs.len());
            Ok(claimed)
        }
    }

    /// Registers the cancellation handle of a claimed job's run: from now on
    /// `jobs.cancel` interrupts it.
    pub fn track(&self, job: &Job) -> CancellationToken {
        let token = CancellationToken::new();
        self.running.lock().unwrap_or_else(PoisonError::into_inner).insert(job.id.clone(), token.clone());
        token
    }

    /// Lets go of a run whose claim was never committed (the commit failed). The job,
    /// if it is still there, is pending again and its next attempt finds what this run
    /// left, as after a crash. A job that is not there was never committed either (its
    /// submit failed): no attempt will use its directory, so it is removed.
    pub async fn abandon(&self, job: &Job) {
        self.running.lock().unwrap_or_else(PoisonError::into_inner).remove(&job.id);
        if let Ok(None) = self.store.get_job(&job.id).await {
            let dir = self.jobs_dir().join(&job.id);
            let removed = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
            if let Ok(Err(e)) = removed
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(job_id = job.id, error = %e, "removing the directory of a job that was never committed");
            }
        }
    }

    /// Marks a claimed job running. The transition is queued at once; the returned
    /// future resolves after its commit with the running job, or `None` when the job
    /// was cancelled (or taken over) in the meantime, in which case the run's `token`
    /// is cancelled. The run may start before that, and its end may be queued before
    /// it resolves: the end is a conditional update too, refused for such a job.
    pub fn start(
        &self,
        job: &Job,
        token: &CancellationToken,
    ) -> impl Future<Output = Result<Option<Job>>> + Send + 'static + use<> {
        let marked = self.store.mark_running(&job.id, job.attempt);
        let (this, id, cancel) = (self.clone(), job.id.clone(), token.clone());
        async move {
            let result = marked.await;
            match &result {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    this.running.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
                    cancel.cancel();
                }
            }
            Ok(result?)
        }
    }

    /// Extends the lease of a running attempt.
    pub async fn renew(&self, job: &Job, lease: Duration) -> Result<bool> {
        Ok(self.store.renew_lease(&job.id, job.attempt, &lease_until(lease)).await?)
    }

    /// Records the end of an attempt. The write is queued at once, after the run's
    /// output (the recorder queued it first, and the store keeps order), so the output
    /// is on disk no later than the final status; the future resolves after the commit.
    /// A stale attempt or a job cancelled meanwhile keeps its status.
    pub fn finish(
        &self,
        job: &Job,
        finish: Finish,
        artifacts: &[Artifact],
    ) -> impl Future<Output = Result<Job>> + Send + 'static + use<> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner).remove(&job.id);
        self.metrics.artifact_bytes(artifacts.iter().map(|a| a.size_bytes).sum());
        let recorded = self.store.finish(&job.id, job.attempt, &finish, artifacts);
        let (this, id) = (self.clone(), job.id.clone());
        async move {
            match recorded.await? {
                Some(done) => Ok(done),
                None => {
                    Ok(this.store.get_job(&id).await?.ok_or_else(|| Error::Internal(format!("job {id} vanished")))?)
                }
            }
        }
    }

    /// Says a job was held (delayed, or a retry backing off), so the release loop
    /// looks at the earliest time again.
    pub fn held_changed(&self) {
        self.held.notify_one();
    }

    /// Makes held jobs claimable when their time comes, until `shutdown`: sleeps
    /// until the earliest is due (at most a second, since other nodes hold jobs too)
    /// or one is added, releases what is due in one indexed UPDATE, and wakes the
    /// scheduler. Claims never walk held jobs.
    pub async fn release_held(self, shutdown: CancellationToken) {
        const MOST: Duration = Duration::from_secs(1);
        loop {
            let wait = match self.store.next_held().await {
                Ok(Some(due)) => chrono::DateTime::parse_from_rfc3339(&due)
                    .ok()
                    .and_then(|due| (due.to_utc() - chrono::Utc::now()).to_std().ok())
                    .unwrap_or(Duration::ZERO)
                    .min(MOST),
                Ok(None) => MOST,
                Err(e) => {
                    tracing::warn!(error = %e, "looking for held jobs");
                    MOST
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.held.notified() => continue,
                () = shutdown.cancelled() => return,
            }
            match self.store.release_held(&jobhost_model::ids::now()).await {
                Ok(0) => {}
                Ok(_) => self.work.notify_one(),
                Err(e) => tracing::warn!(error = %e, "releasing held jobs"),
            }
        }
    }

    /// Cancels every run of this process (at shutdown).
    pub fn cancel_all_runs(&self) {
        for token in self.running.lock().unwrap_or_else(PoisonError::into_inner).values() {
            token.cancel();
        }
    }
}

fn lease_until(lease: Duration) -> String {
    let until = chrono::Utc::now() + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
    until.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

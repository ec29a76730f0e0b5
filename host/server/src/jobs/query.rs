//! What clients read and watch about jobs: one job, pages of jobs and of their logs,
//! a wait for a job's end, its artifacts (opened only by recorded name, through
//! cap-std, inside the job's `output/`), the resources declared against the capacity,
//! and live event [`Subscription`]s. Every read goes through [`Jobs::get`], so a caller
//! sees only its own jobs (an admin, everyone's) and an unknown id and someone else's
//! job answer alike.

use super::{Caller, DEFAULT_PAGE, Error, JobPage, Jobs, LogPage, MAX_PAGE, ResourceUsage, Result, status_event};
use jobhost_model::{Artifact, Cpus, EventKind, Job, JobEvent, JobStatus, Usage, ids};
use jobhost_store::JobQuery;
use std::time::Duration;

/// What `jobs.list` narrows the caller's jobs to.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only jobs with this status.
    pub status: Option<JobStatus>,
    /// Only jobs of this component (or image).
    pub plugin: Option<String>,
    /// Only jobs with this label, as `key=value`.
    pub label: Option<String>,
}

/// `key=value` → (key, value); the key must not be empty.
fn parse_label(label: &str) -> Result<(String, String)> {
    match label.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(Error::invalid("label", "must be `key=value`")),
    }
}

impl Jobs {
    /// The job `id`, if the caller may see it.
    pub async fn get(&self, caller: &Caller, id: &str) -> Result<Job> {
        let job = if ids::has_prefix(id, ids::JOB) { self.store.get_job(id).await? } else { None };
        match job {
            Some(job) if caller.is_admin || job.user_id == caller.user_id => self.with_waiting(job).await,
            _ => Err(Error::NotFound(format!("job {id:?} not found"))),
        }
    }

    /// Every ended attempt of job `id` (`jobs.attempts`).
    pub async fn attempts(&self, caller: &Caller, id: &str) -> Result<Vec<jobhost_model::JobAttempt>> {
        let job = self.get(caller, id).await?;
        Ok(self.store.attempts(&job.id).await?)
    }

    /// `job`, saying why when it is pending: held until a time (delayed, or a retry
    /// backing off), or for labels no online node has.
    async fn with_waiting(&self, mut job: Job) -> Result<Job> {
        if job.status == JobStatus::Pending
            && let Some(at) = &job.run_at
        {
            job.waiting = Some(format!("scheduled: held until {at}"));
            return Ok(job);
        }
        if job.status == JobStatus::Pending && !job.requires.is_empty() {
            let now = chrono::Utc::now();
            let workers = self.store.list_workers().await?;
            let able = workers.into_iter().map(|w| w.seen_within(now)).any(|w| {
                w.status == jobhost_model::WorkerStatus::Online && w.concurrency > 0 && w.has_labels(&job.requires)
            });
            if !able {
                job.waiting = Some(format!("no online worker has labels [{}]", job.requires.join(", ")));
            }
        }
        Ok(job)
    }

    /// The node holding the files of job `id` when it is another one (its last attempt
    /// ran there): artifacts are then read through that node. `None` when they are here.
    pub async fn files_elsewhere(&self, caller: &Caller, id: &str) -> Result<Option<String>> {
        let job = self.get(caller, id).await?;
        Ok(job.worker_id.filter(|w| **w != *self.here.worker_id))
    }

    /// The caller's jobs (everyone's for an admin) over the last hour, a minute at a
    /// time: submitted, started and ended, and the queue depth at each minute's end,
    /// worked back from the depth now.
    pub async fn stats(&self, caller: &Caller) -> Result<jobhost_model::JobStats> {
        use chrono::{DurationRound as _, TimeDelta, Utc};
        let minute = TimeDelta::minutes(1);
        let this_minute = Utc::now().duration_trunc(minute).map_err(|e| Error::Internal(e.to_string()))?;
        let first = this_minute - TimeDelta::minutes(59);
        let user = (!caller.is_admin).then_some(caller.user_id.as_str());
        let counted = self.store.job_minutes(user, &ids::floor(ids::JOB, first)).await?;
        let starts: Vec<chrono::DateTime<Utc>> = (0..60).map(|i| first + minute * i).collect();
        let mut minutes: Vec<jobhost_model::MinuteStats> = starts
            .iter()
            .map(|t| jobhost_model::MinuteStats {
                at: t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                submitted: 0,
                started: 0,
                ended: 0,
                queue_depth: 0,
            })
            .collect();
        // The store names minutes `YYYY-MM-DDTHH:MM`.
        let index: std::collections::HashMap<String, usize> =
            starts.iter().enumerate().map(|(i, t)| (t.format("%Y-%m-%dT%H:%M").to_string(), i)).collect();
        for (created, left, ended, n) in &counted.rows {
            if let Some(&i) = index.get(created) {
                minutes[i].submitted += n;
            }
            if let Some(&i) = left.as_ref().and_then(|m| index.get(m)) {
                minutes[i].started += n;
            }
            if let Some(&i) = ended.as_ref().and_then(|m| index.get(m)) {
                minutes[i].ended += n;
            }
        }
        // Back from now: before a minute's arrivals and departures, the queue held
        // what it holds after them, less the arrivals, plus the departures.
        let mut depth = i64::try_from(counted.pending).unwrap_or(i64::MAX);
        for m in minutes.iter_mut().rev() {
            m.queue_depth = u64::try_from(depth.max(0)).unwrap_or(0);
            depth = depth - i64::try_from(m.submitted).unwrap_or(0) + i64::try_from(m.started).unwrap_or(0);
        }
        Ok(jobhost_model::JobStats { minutes, queue_depth: counted.pending, running: counted.live })
    }

    /// A page of the caller's jobs (everyone's for an admin), newest first.
    pub async fn list(
        &self,
        caller: &Caller,
        filter: ListFilter,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> Result<JobPage> {
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        if limit == 0 || limit > MAX_PAGE {
            return Err(Error::invalid("limit", format!("must be between 1 and {MAX_PAGE}")));
        }
        if let Some(c) = &cursor
            && !ids::has_prefix(c, ids::JOB)
        {
            return Err(Error::invalid("cursor", "is not a cursor returned by jobs.list"));
        }
        let mut jobs = self
            .store
            .list_jobs(&JobQuery {
                user_id: (!caller.is_admin).then(|| caller.user_id.clone()),
                status: filter.status,
                plugin: filter.plugin,
                label: match filter.label {
                    Some(label) => Some(parse_label(&label)?),
                    None => None,
                },
                before_id: cursor,
                limit: limit + 1,
            })
            .await?;
        let next_cursor = if jobs.len() > limit as usize {
            jobs.truncate(limit as usize);
            jobs.last().map(|j| j.id.clone())
        } else {
            None
        };
        Ok(JobPage { jobs, next_cursor })
    }

    /// Waits until the job is terminal or `timeout` passes; returns it either way.
    pub async fn wait(&self, caller: &Caller, id: &str, timeout: Duration) -> Result<Job> {
        let mut rx = self.events.ends();
        let job = self.get(caller, id).await?;
        if job.status.is_terminal() {
            return Ok(job);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) => return self.get(caller, id).await,
                // The record as its end committed it (the caller may see it: checked above).
                Ok(Ok(ended)) if ended.id == id => return Ok(Job::clone(&ended)),
                Ok(Ok(_)) => {}
                // Missed events: look at the record itself.
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {
                    let job = self.get(caller, id).await?;
                    if job.status.is_terminal() {
                        return Ok(job);
                    }
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                    return Err(Error::Unavailable("the server is shutting down".into()));
                }
            }
        }
    }

    /// Up to `limit` log chunks of the job from `since_seq` on.
    pub async fn logs(&self, caller: &Caller, id: &str, since_seq: u64, limit: Option<u32>) -> Result<LogPage> {
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        if limit == 0 || limit > MAX_PAGE {
            return Err(Error::invalid("limit", format!("must be between 1 and {MAX_PAGE}")));
        }
        // Read the status first: chunks are committed before a terminal status, so a
        // terminal job's chunks read after it are complete.
        let job = self.get(caller, id).await?;
        let chunks = self.store.read_logs(id, since_seq, limit).await?;
        let next_seq = chunks.last().map_or(since_seq, |c| c.seq + 1);
        let eof = job.status.is_terminal() && chunks.len() < limit as usize;
        Ok(LogPage { chunks, next_seq, eof })
    }

    /// The artifacts of a job the caller may see.
    pub async fn artifacts(&self, caller: &Caller, id: &str) -> Result<Vec<Artifact>> {
        self.get(caller, id).await?;
        Ok(self.store.list_artifacts(id).await?)
    }

    /// The record of artifact `name` of job `job_id`.
    pub async fn artifact(&self, caller: &Caller, job_id: &str, name: &str) -> Result<Artifact> {
        self.get(caller, job_id).await?;
        self.store
            .get_artifact(job_id, name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("job {job_id} has no artifact {name:?}")))
    }

    /// The record and an open file of artifact `name`. Only names recorded as
    /// artifacts are opened, through cap-std, inside the job's `output/`.
    pub async fn open_artifact(&self, caller: &Caller, job_id: &str, name: &str) -> Result<(Artifact, std::fs::File)> {
        self.get(caller, job_id).await?;
        let artifact = self
            .store
            .get_artifact(job_id, name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("job {job_id} has no artifact {name:?}")))?;
        let output = self.jobs_dir.join(job_id).join("output");
        let rel = name.to_owned();
        let opened = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let dir = cap_std::fs::Dir::open_ambient_dir(&output, cap_std::ambient_authority())?;
            Ok(dir.open(&rel)?.into_std())
        })
        .await
        .map_err(|e| Error::Internal(format!("opening an artifact: {e}")))?;
        let file = opened.map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(format!("the files of job {job_id} are gone")),
            _ => {
                tracing::error!(job_id, error = %e, "opening an artifact");
                Error::Internal("opening the artifact failed".into())
            }
        })?;
        Ok((artifact, file))
    }

    /// Up to `length` bytes of artifact `name` from `offset`, and whether that reaches
    /// its end.
    pub async fn read_artifact(
        &self,
        caller: &Caller,
        job_id: &str,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<(Vec<u8>, bool)> {
        let (artifact, mut file) = self.open_artifact(caller, job_id, name).await?;
        if offset > artifact.size_bytes {
            return Err(Error::invalid("offset", format!("is past the end ({} bytes)", artifact.size_bytes)));
        }
        let read = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
            use std::io::{Read, Seek, SeekFrom};
            file.seek(SeekFrom::Start(offset))?;
            let mut buf = Vec::new();
            file.take(length).read_to_end(&mut buf)?;
            Ok(buf)
        })
        .await
        .map_err(|e| Error::Internal(format!("reading an artifact: {e}")))?;
        let data = read.map_err(|e| {
            tracing::error!(job_id, error = %e, "reading an artifact");
            Error::Internal("reading the artifact failed".into())
        })?;
        let eof = offset + data.len() as u64 >= artifact.size_bytes;
        Ok((data, eof))
    }

    /// What this node's `starting` and `running` jobs declared, against its capacity.
    pub async fn usage(&self) -> Result<ResourceUsage> {
        let (used, running_jobs) = self.store.usage(&self.here.worker_id).await?;
        let held = self.store.held_gpus(Some(&self.here.worker_id)).await?;
        let held = held.get(&*self.here.worker_id).map_or(&[][..], Vec::as_slice);
        Ok(ResourceUsage {
            used_cpus: used.cpus,
            used_memory_mb: used.memory_mb,
            running_jobs,
            capacity: Usage {
                cpus: Cpus::whole(self.limits.capacity_cpus),
                memory_mb: u64::from(self.limits.capacity_memory_mb),
            },
            gpus: jobhost_model::gpu_usage(&self.here.gpus, held),
        })
    }

    /// A pull of `model` that has not ended yet, oldest first.
    pub async fn active_pull(&self, model: &str) -> Result<Option<Job>> {
        Ok(self.store.active_pull(model, None).await?)
    }

    /// A listener for events, checked against what the caller may see: the job's
    /// current state as a first event when `id` is given, then the live stream.
    pub async fn subscribe(&self, caller: &Caller, id: Option<&str>) -> Result<Subscription> {
        let rx = self.events.listen();
        let first = match id {
            Some(id) => {
                let job = self.get(caller, id).await?;
                Some(status_event(&job))
            }
            None => None,
        };
        Ok(Subscription { rx, first, job_id: id.map(str::to_owned), caller: caller.clone(), jobs: self.clone() })
    }
}

/// A live view of job events for one caller.
#[derive(Debug)]
pub struct Subscription {
    rx: tokio::sync::broadcast::Receiver<JobEvent>,
    first: Option<JobEvent>,
    job_id: Option<String>,
    caller: Caller,
    jobs: Jobs,
}

impl Subscription {
    /// The next event the caller may see; `None` when the stream is over (the job
    /// ended, or the server is shutting down).
    pub async fn next(&mut self) -> Option<JobEvent> {
        if let Some(ev) = self.first.take() {
            return Some(ev);
        }
        loop {
            match self.rx.recv().await {
                Ok(ev) => {
                    if let Some(id) = &self.job_id {
                        if &ev.job_id != id {
                            continue;
                        }
                    } else if !self.caller.is_admin && !Box::pin(self.owns(&ev.job_id)).await {
                        continue;
                    }
                    return Some(ev);
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    return Some(JobEvent {
                        kind: EventKind::Lagged,
                        job_id: self.job_id.clone().unwrap_or_default(),
                        status: None,
                        progress: None,
                        log: None,
                        missed: Some(n),
                    });
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Whether the stream ends after `ev` (a single job's subscription ends with it).
    pub fn ends_with(&self, ev: &JobEvent) -> bool {
        self.job_id.is_some() && ev.kind == EventKind::Status && ev.status.is_some_and(JobStatus::is_terminal)
    }

    /// Boxed where it is awaited: a store call's future is large, and a subscription
    /// holds its `next` for as long as it lives.
    async fn owns(&self, job_id: &str) -> bool {
        self.jobs.get(&self.caller, job_id).await.is_ok()
    }
}

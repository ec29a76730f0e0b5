//! The jobs domain: what a job is, the rules of its life (validation, idempotency,
//! transitions, who may see it) and the queries clients make about it.
//!
//! It talks to the [`Store`] for every record and to nobody's wire format: the RPC
//! layer turns its [`Error`] into JSON-RPC errors, and the runtime reaches it only
//! through the [`Recorder`] sink it is handed.

pub mod error;
pub mod events;
pub mod model;
pub mod recorder;

pub use error::{Error, Result};

use crate::ids;
use crate::store::{Claimed, Finish, JobQuery, NewJob, Store, Usage};
use crate::uploads::UploadState;
use events::EventBus;
use model::{Artifact, Cpus, EventKind, Job, JobEvent, JobStatus, LogChunk};
use recorder::Recorder;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Who is asking. Every query is answered from the caller's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user.
    pub user_id: String,
    /// Admins see and act on every user's jobs.
    pub is_admin: bool,
    /// What the presented token may do.
    pub scopes: Vec<crate::auth::Scope>,
    /// The token presented (`None` for the server acting on its own).
    pub token_id: Option<String>,
}

impl Caller {
    /// Whether the caller may act with `scope` (`admin` may do everything).
    pub fn has(&self, scope: crate::auth::Scope) -> bool {
        self.is_admin || self.scopes.contains(&scope)
    }
}

/// Server-wide defaults and maxima of per-job requests.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `memory_mb` when a job does not say.
    pub default_memory_mb: u32,
    /// The most `memory_mb` a job may ask for.
    pub max_memory_mb: u32,
    /// `timeout_s` when a job does not say.
    pub default_timeout_s: u32,
    /// The most `timeout_s` a job may ask for.
    pub max_timeout_s: u32,
    /// CPUs jobs may declare in all at once (default: the machine's cores); a job
    /// asking for more could never start.
    pub capacity_cpus: u32,
    /// `cpus` when a job does not say: a quarter of a CPU, so short jobs share a core
    /// four ways; a job that computes for long declares what it needs.
    pub default_cpus: Cpus,
    /// Memory jobs may declare in all at once, MiB (default: 80% of the machine's).
    pub capacity_memory_mb: u32,
    /// Claims a job gets before a run lost to a crash fails it.
    pub max_attempts: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            default_memory_mb: 256,
            max_memory_mb: 4096,
            default_timeout_s: 600,
            max_timeout_s: 7 * 24 * 3600,
            capacity_cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            default_cpus: DEFAULT_CPUS,
            capacity_memory_mb: machine_memory_mb().map_or(4096, |mb| (mb / 5 * 4) as u32),
            max_attempts: 1,
        }
    }
}

impl Limits {
    /// How many jobs of the default `cpus` the CPU capacity holds: the default number
    /// of jobs a server runs at once (4 per core with the defaults).
    pub fn default_concurrency(&self) -> usize {
        let held = u64::from(self.capacity_cpus) * 1000 / u64::from(self.default_cpus.millis().max(1));
        usize::try_from(held).unwrap_or(usize::MAX).max(1)
    }
}

/// Total memory of the machine from `/proc/meminfo`, MiB.
fn machine_memory_mb() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

/// Bytes of JSON in `args`, `env`, `input` and `labels` together; jobs carry data in
/// files, not in their record.
const MAX_REQUEST_JSON_BYTES: usize = 1 << 20;
/// `cpus` of a job that does not say, unless the server is told otherwise.
pub const DEFAULT_CPUS: Cpus = Cpus::from_millis(250);
/// The longest `jobs.wait` a client may ask for in one call.
pub const MAX_WAIT: Duration = Duration::from_secs(3600);
/// `jobs.wait` without `timeout_s`.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(60);
/// Page size of `jobs.list` and `jobs.logs` without `limit`, and their maximum.
pub const DEFAULT_PAGE: u32 = 100;
/// The largest page a client may ask for.
pub const MAX_PAGE: u32 = 1000;

/// `jobs.submit` parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// Installed component to run.
    pub plugin: String,
    /// argv after argv[0].
    #[serde(default)]
    pub args: Vec<String>,
    /// The job's whole environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Input for plugins of world `job`.
    #[serde(default)]
    pub input: Option<serde_json::Value>,
    /// A finalized upload to consume: its files are the job's `/input`.
    #[serde(default)]
    pub files_id: Option<String>,
    /// CPUs the job needs, in steps of 0.001 (default: the server's, 0.25).
    #[serde(default)]
    pub cpus: Option<Cpus>,
    /// Memory limit, MiB.
    #[serde(default)]
    pub memory_mb: Option<u32>,
    /// Wall-clock limit, s.
    #[serde(default)]
    pub timeout_s: Option<u32>,
    /// Idempotency key.
    #[serde(default)]
    pub client_job_id: Option<String>,
    /// Free-form labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Higher runs first.
    #[serde(default)]
    pub priority: Option<i64>,
}

/// `jobs.submit` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Submitted {
    /// The job (the existing one when the idempotency key matched).
    pub job: Job,
    /// Whether this call created it.
    pub created: bool,
}

/// One page of `jobs.list`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JobPage {
    /// Newest first.
    pub jobs: Vec<Job>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// One page of `jobs.logs`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LogPage {
    /// In order.
    pub chunks: Vec<LogChunk>,
    /// Pass as `since_seq` to continue.
    pub next_seq: u64,
    /// The job has ended and these are its last chunks.
    pub eof: bool,
}

/// `resources.usage` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ResourceUsage {
    /// CPUs declared by jobs starting or running.
    pub used_cpus: Cpus,
    /// Memory declared by jobs starting or running, MiB.
    pub used_memory_mb: u64,
    /// Jobs starting or running.
    pub running_jobs: u64,
    /// What jobs may declare in all at once.
    pub capacity: Usage,
}

/// The jobs service; cheap to clone.
#[derive(Clone, Debug)]
pub struct Jobs {
    store: Store,
    events: EventBus,
    recorder: Recorder,
    limits: Limits,
    /// `<data>/jobs`, where each job's files live.
    jobs_dir: PathBuf,
    /// `<data>/uploads`, where an upload's files wait for the job that consumes them.
    uploads_dir: PathBuf,
    /// Cancellation handles of the runs in this process.
    running: Arc<Mutex<HashMap<String, CancellationToken>>>,
    /// Wakes the scheduler when work arrives.
    work: Arc<tokio::sync::Notify>,
    /// Called right after a submit's insert is queued (see [`Jobs::on_submit`]).
    submit_hook: Arc<HookSlot>,
}

/// What the scheduler does when a job is submitted: claim into free slots at once.
/// Returns whether it saw to the job (a claim is queued behind it, and whatever that
/// claim leaves in the queue is the scheduler's to look at); when it did not, the
/// submit wakes the scheduler's claim loop.
pub type SubmitHook = Arc<dyn Fn() -> bool + Send + Sync>;

/// Where the submit hook is kept.
#[derive(Default)]
struct HookSlot(Mutex<Option<SubmitHook>>);

impl std::fmt::Debug for HookSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = self.0.lock().unwrap_or_else(PoisonError::into_inner).is_some();
        f.debug_tuple("HookSlot").field(&if set { "set" } else { "unset" }).finish()
    }
}

impl Jobs {
    /// The service over `store`.
    pub fn new(store: Store, limits: Limits, jobs_dir: PathBuf, uploads_dir: PathBuf) -> Jobs {
        let events = EventBus::new();
        // Status events of what the store group-commits (submits, claims, starts, ends)
        // are published by the store's writer, in commit order.
        let published = events.clone();
        if !store.observe(move |job| publish(&published, job)) {
            tracing::warn!("the store already has an observer; status events come from it");
        }
        let recorder = Recorder::start(store.clone(), events.clone());
        Jobs {
            store,
            events,
            recorder,
            limits,
            jobs_dir,
            uploads_dir,
            running: Arc::default(),
            work: Arc::default(),
            submit_hook: Arc::default(),
        }
    }

    /// The store, for other domain services sharing it.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// `<data>/jobs`.
    pub fn jobs_dir(&self) -> &Path {
        &self.jobs_dir
    }

    /// Where the files of the upload a job consumed wait until it starts.
    pub fn input_source(&self, job: &Job) -> Option<PathBuf> {
        job.files_id.as_ref().map(|f| self.uploads_dir.join(f))
    }

    /// The sink runs report through.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// Sets (or with `None` removes) what runs right after each submit's insert is
    /// queued. The scheduler uses it to queue a claim right behind the insert, so the
    /// claim shares the insert's commit instead of following it.
    pub fn on_submit(&self, hook: Option<SubmitHook>) {
        *self.submit_hook.0.lock().unwrap_or_else(PoisonError::into_inner) = hook;
    }

    /// Notified whenever a job becomes pending.
    pub fn work_signal(&self) -> Arc<tokio::sync::Notify> {
        self.work.clone()
    }

    /// Validates and records a job. With a `client_job_id` already naming a live job
    /// of the caller, returns that job with `created: false`.
    pub async fn submit(&self, caller: &Caller, req: SubmitRequest) -> Result<Submitted> {
        self.submit_kind(caller, req, "wasm").await
    }

    /// [`Jobs::submit`] for a job of another `kind` (e.g. `pull`, submitted by the
    /// models service), which decides what the scheduler grants the run.
    pub async fn submit_kind(&self, caller: &Caller, req: SubmitRequest, kind: &str) -> Result<Submitted> {
        let new = self.validate(caller, req, kind).await?;
        let inserted = self.store.insert_job(&new);
        // Claim now rather than after the commit: queued behind the insert, the claim
        // shares its transaction (it sees the job).
        let hook = self.submit_hook.0.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if !hook.is_some_and(|hook| hook()) {
            self.work.notify_one();
        }
        let Some((job, created)) = inserted.await? else {
            return Err(self.unusable_upload(caller, new.files_id.as_deref().unwrap_or_default()).await);
        };
        Ok(Submitted { job, created })
    }

    async fn validate(&self, caller: &Caller, req: SubmitRequest, kind: &str) -> Result<NewJob> {
        let limits = &self.limits;
        if req.plugin.is_empty() {
            return Err(Error::invalid("plugin", "must not be empty"));
        }
        let plugin = self
            .store
            .get_plugin(&req.plugin)
            .await?
            .ok_or_else(|| Error::NotFound(format!("plugin {:?} is not installed", req.plugin)))?;
        if let Some(files_id) = &req.files_id {
            let upload =
                if ids::has_prefix(files_id, ids::UPLOAD) { self.store.get_upload(files_id).await? } else { None };
            if upload.is_none_or(|u| u.user_id != caller.user_id) {
                return Err(Error::NotFound(format!("upload {files_id:?} not found")));
            }
        }
        for (i, a) in req.args.iter().enumerate() {
            if a.contains('\0') {
                return Err(Error::invalid(&format!("args[{i}]"), "must not contain NUL"));
            }
        }
        for (k, v) in &req.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(Error::invalid(&format!("env.{k}"), "a name must be non-empty without '=' or NUL"));
            }
            if v.contains('\0') {
                return Err(Error::invalid(&format!("env.{k}"), "must not contain NUL"));
            }
        }
        let memory_mb = req.memory_mb.unwrap_or(limits.default_memory_mb);
        if memory_mb == 0 || memory_mb > limits.max_memory_mb {
            return Err(Error::invalid(
                "memory_mb",
                format!("must be between 1 and {} (the server's maximum)", limits.max_memory_mb),
            ));
        }
        let timeout_s = req.timeout_s.unwrap_or(limits.default_timeout_s);
        if timeout_s == 0 || timeout_s > limits.max_timeout_s {
            return Err(Error::invalid(
                "timeout_s",
                format!("must be between 1 and {} (the server's maximum)", limits.max_timeout_s),
            ));
        }
        let cpus = req.cpus.unwrap_or(limits.default_cpus);
        if cpus.millis() == 0 {
            return Err(Error::invalid("cpus", "must be more than 0"));
        }
        if cpus > Cpus::whole(limits.capacity_cpus) {
            return Err(Error::LimitExceeded(format!(
                "cpus: the job asks for {cpus} CPUs but this server has {}; it could never start",
                limits.capacity_cpus
            )));
        }
        if memory_mb > limits.capacity_memory_mb {
            return Err(Error::LimitExceeded(format!(
                "memory_mb: the job asks for {memory_mb} MiB but this server runs jobs in {} MiB; \
                 it could never start",
                limits.capacity_memory_mb
            )));
        }
        if let Some(key) = &req.client_job_id
            && (key.is_empty() || key.len() > 200)
        {
            return Err(Error::invalid("client_job_id", "must be 1 to 200 characters"));
        }
        let args = to_json(&req.args);
        let env = to_json(&req.env);
        let labels = to_json(&req.labels);
        let input = req.input.as_ref().map(|v| v.to_string());
        let size = args.len() + env.len() + labels.len() + input.as_ref().map_or(0, String::len);
        if size > MAX_REQUEST_JSON_BYTES {
            return Err(Error::LimitExceeded(format!(
                "args, env, input and labels take {size} bytes; the limit is {MAX_REQUEST_JSON_BYTES} \
                 (pass large data as files)"
            )));
        }
        Ok(NewJob {
            id: ids::new(ids::JOB),
            user_id: caller.user_id.clone(),
            kind: kind.to_owned(),
            plugin: plugin.name,
            plugin_digest: plugin.digest,
            args,
            env,
            input,
            labels,
            priority: req.priority.unwrap_or(0),
            cpus,
            memory_mb,
            timeout_s,
            client_job_id: req.client_job_id,
            max_attempts: limits.max_attempts,
            files_id: req.files_id,
        })
    }

    /// Why the upload `id` could not be consumed, in the caller's terms.
    async fn unusable_upload(&self, caller: &Caller, id: &str) -> Error {
        match self.store.get_upload(id).await {
            Ok(Some(u)) if caller.is_admin || u.user_id == caller.user_id => match u.state {
                UploadState::Open => Error::Conflict(format!("upload {id} is not finalized yet")),
                UploadState::Finalized => Error::Conflict(format!("upload {id} has expired")),
                UploadState::Consumed => Error::Conflict(format!(
                    "upload {id} was already consumed by job {}",
                    u.job_id.as_deref().unwrap_or("(cleaned)")
                )),
                UploadState::Expired => Error::Conflict(format!("upload {id} has expired")),
            },
            Ok(_) => Error::NotFound(format!("upload {id:?} not found")),
            Err(e) => e.into(),
        }
    }

    /// The job `id`, if the caller may see it.
    pub async fn get(&self, caller: &Caller, id: &str) -> Result<Job> {
        let job = if ids::has_prefix(id, ids::JOB) { self.store.get_job(id).await? } else { None };
        match job {
            Some(job) if caller.is_admin || job.user_id == caller.user_id => Ok(job),
            _ => Err(Error::NotFound(format!("job {id:?} not found"))),
        }
    }

    /// A page of the caller's jobs (everyone's for an admin), newest first.
    pub async fn list(
        &self,
        caller: &Caller,
        status: Option<JobStatus>,
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
                status,
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

    /// What the `starting` and `running` jobs declared, against the capacity.
    pub async fn usage(&self) -> Result<ResourceUsage> {
        let (used, running_jobs) = self.store.usage().await?;
        Ok(ResourceUsage {
            used_cpus: used.cpus,
            used_memory_mb: used.memory_mb,
            running_jobs,
            capacity: Usage {
                cpus: Cpus::whole(self.limits.capacity_cpus),
                memory_mb: u64::from(self.limits.capacity_memory_mb),
            },
        })
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

    // ---- the scheduler's side ----

    /// Re-queues or fails jobs a previous process left running.
    pub async fn recover(&self) -> Result<crate::store::Recovery> {
        let r = self.store.recover_orphans("the host stopped while the job ran and it has no attempts left").await?;
        if r.requeued > 0 {
            self.work.notify_one();
        }
        Ok(r)
    }

    /// Claims up to `max` pending jobs (in queue order, as far as they fit in the
    /// capacity) with a lease of `lease`, in one transaction. Queued at once, and
    /// answered before the commit: see [`Claimed`].
    pub fn claim(&self, lease: Duration, max: usize) -> impl Future<Output = Result<Claimed>> + Send + 'static + use<> {
        let capacity = Usage {
            cpus: Cpus::whole(self.limits.capacity_cpus),
            memory_mb: u64::from(self.limits.capacity_memory_mb),
        };
        let claimed = self.store.claim_early(&lease_until(lease), &capacity, max);
        async move { Ok(claimed.await?) }
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

    /// Cancels every run of this process (at shutdown).
    pub fn cancel_all_runs(&self) {
        for token in self.running.lock().unwrap_or_else(PoisonError::into_inner).values() {
            token.cancel();
        }
    }

    fn publish_status(&self, job: &Job) {
        publish(&self.events, job);
    }
}

/// The status event of `job`, and the job itself to `jobs.wait` when it has ended.
fn publish(events: &EventBus, job: &Job) {
    events.publish(status_event(job));
    if job.status.is_terminal() {
        events.publish_end(job);
    }
}

fn status_event(job: &Job) -> JobEvent {
    JobEvent {
        kind: EventKind::Status,
        job_id: job.id.clone(),
        status: Some(job.status),
        progress: job.progress.clone(),
        log: None,
        missed: None,
    }
}

fn lease_until(lease: Duration) -> String {
    let until = chrono::Utc::now() + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
    until.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
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
                    } else if !self.caller.is_admin && !self.owns(&ev.job_id).await {
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

    async fn owns(&self, job_id: &str) -> bool {
        self.jobs.get(&self.caller, job_id).await.is_ok()
    }
}

/// Serializing our own vectors and string maps to JSON cannot fail; this keeps the
/// `unwrap`-free rule without an error path that can never be taken.
fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

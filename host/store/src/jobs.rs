//! The queue and each job's life: insert, claim, transitions, end, cleanup, recovery.

use crate::{Queued, Result, StoreError};
use jobhost_model::{Artifact, Cpus, Job, JobKind, JobStatus, Usage};

/// A job as the submit path hands it to the store.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Fresh id.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// What it is.
    pub kind: JobKind,
    /// Component name.
    pub plugin: String,
    /// Component digest at submit time.
    pub plugin_digest: String,
    /// JSON array.
    pub args: String,
    /// JSON object.
    pub env: String,
    /// JSON value or none.
    pub input: Option<String>,
    /// JSON object.
    pub labels: String,
    /// Higher first.
    pub priority: i64,
    /// Declared CPUs.
    pub cpus: Cpus,
    /// Memory limit, MiB.
    pub memory_mb: u32,
    /// Wall-clock limit, s.
    pub timeout_s: u32,
    /// Idempotency key.
    pub client_job_id: Option<String>,
    /// Claims allowed before a lost run fails the job.
    pub max_attempts: u32,
    /// A finalized upload the job consumes as its `/input`.
    pub files_id: Option<String>,
    /// Labels a node must have to claim it, sorted, without repeats.
    pub requires: Vec<String>,
    /// A container job's spec (`ContainerSpec` as JSON).
    pub container: Option<String>,
    /// GPUs it needs (0: none).
    pub gpus: u32,
    /// The type they must be.
    pub gpu_type: Option<String>,
    /// What its plugin was granted at install.
    pub grants: Vec<jobhost_model::PluginGrant>,
    /// Held until then (RFC 3339, as `ids::now` writes it); none: claimable at once.
    pub run_at: Option<String>,
    /// Its retry policy (`RetryPolicy` as JSON).
    pub retry: Option<String>,
    /// The run, step and index it is a task of.
    pub task: Option<(String, String, u32)>,
}

/// The node a claim is made for: only what it has `starting` or `running` counts
/// against its capacity, and it takes only jobs whose `requires` its labels cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimant {
    /// Its `workers` id, recorded on every job it claims.
    pub worker_id: String,
    /// Its labels.
    pub labels: Vec<String>,
    /// What it offers jobs.
    pub capacity: Usage,
    /// Its GPUs: a job asking for some is claimed only when enough of them are free,
    /// and gets specific ones (recorded as its `gpu_devices`).
    pub gpus: Vec<jobhost_model::Gpu>,
}

/// How a run ended, as the store records it.
#[derive(Debug, Clone)]
pub struct Finish {
    /// How the attempt ended (a terminal status).
    pub status: JobStatus,
    /// Run the job again, from this time (RFC 3339): it goes back to `pending`, held
    /// until then, and `status` is only the attempt's outcome.
    pub retry_at: Option<String>,
    /// Exit code, when there is one.
    pub exit_code: Option<i32>,
    /// Error text, when there is one.
    pub error: Option<String>,
    /// The chain of causes behind `error`, when known.
    pub detail: Option<String>,
}

/// Jobs a claim took, handed over as soon as the claim's statement has run, before its
/// transaction is committed: the claimer may start work right away, as long as it
/// makes nothing of it visible before [`Committed::wait`] says the claim is on disk.
#[derive(Debug)]
pub struct Claimed {
    /// The jobs, now `starting` (in the transaction being committed).
    pub jobs: Vec<Job>,
    /// Resolves when that transaction is committed, or failed (the claim did not happen).
    pub committed: Committed,
}

/// Resolves once the transaction of a group of writes is committed: `Ok` when it is on
/// disk, an error when it failed and nothing of it was made.
#[derive(Debug, Clone)]
pub struct Committed(pub(crate) tokio::sync::watch::Receiver<Option<Result<(), String>>>);

impl Committed {
    /// Waits for the commit.
    pub async fn wait(mut self) -> Result<()> {
        let outcome = match self.0.wait_for(Option::is_some).await {
            Ok(seen) => seen.clone(),
            Err(_) => None,
        };
        match outcome {
            Some(Ok(())) => Ok(()),
            Some(Err(msg)) => Err(StoreError::Commit(msg)),
            None => Err(StoreError::Commit("the store's writer stopped".into())),
        }
    }
}

/// Filter and page of a job listing.
#[derive(Debug, Clone, Default)]
pub struct JobQuery {
    /// Only this owner's jobs (none: everyone's).
    pub user_id: Option<String>,
    /// Only jobs with this status.
    pub status: Option<JobStatus>,
    /// Only jobs of this component (or image).
    pub plugin: Option<String>,
    /// Only jobs with this label (key, value).
    pub label: Option<(String, String)>,
    /// Only jobs older than this id (the previous page's last id).
    pub before_id: Option<String>,
    /// Page size.
    pub limit: u32,
}

/// What [`JobStore::job_minutes`] counts. Minutes are `YYYY-MM-DDTHH:MM`, UTC.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobMinutes {
    /// (created, left the queue, ended) → how many jobs.
    pub rows: Vec<(String, Option<String>, Option<String>, u64)>,
    /// Jobs pending now, held ones included.
    pub pending: u64,
    /// Jobs starting or running now.
    pub live: u64,
}

/// A change other processes made, as a store shared with them hears of it.
#[derive(Debug, Clone)]
pub enum Remote {
    /// These jobs moved to these statuses (in commit order).
    Moved(Vec<(String, JobStatus)>),
    /// Changes may have been missed (the listening connection was lost meanwhile).
    Missed,
}

/// What a store shared with other processes calls with their changes.
pub type RemoteHook = Box<dyn Fn(Remote) + Send + Sync>;

/// The jobs table: the queue and every transition of a job's life.
#[async_trait::async_trait]
pub trait JobStore: Send + Sync {
    /// Inserts a pending job. With a `client_job_id` that already names a live job of
    /// the same user, nothing is inserted and that job is returned with `false`.
    /// The unique index decides, so concurrent duplicates still create exactly one job.
    /// A job with `files_id` consumes that upload in the same transaction; `None` when
    /// the upload is not the user's, not finalized or expired (nothing is inserted).
    /// Queued at once (group commit); the answer comes after the commit.
    fn insert_job(&self, job: &NewJob) -> Queued<Option<(Job, bool)>>;

    /// The job `id`.
    async fn get_job(&self, id: &str) -> Result<Option<Job>>;

    /// Jobs matching `q`, newest first.
    async fn list_jobs(&self, q: &JobQuery) -> Result<Vec<Job>>;

    /// The jobs among `ids` that exist, in no particular order.
    async fn get_jobs(&self, ids: &[String]) -> Result<Vec<Job>>;

    /// Claims the next pending job that `node` may run (its labels cover the job's
    /// `requires`) and that fits in what its capacity leaves after its own `starting`
    /// and `running` jobs: `starting`, attempt + 1, `worker_id` = the node, lease until
    /// `lease_until`. A job too large for the room left waits while smaller ones
    /// behind it start.
    async fn claim_next(&self, lease_until: &str, node: &Claimant) -> Result<Option<Job>>;

    /// Claims up to `max` pending jobs, as [`JobStore::claim_next`] would one after the
    /// other, in one transaction. Queued at once (group commit); resolves after the
    /// commit.
    fn claim(&self, lease_until: &str, node: &Claimant, max: usize) -> Queued<Vec<Job>>;

    /// [`JobStore::claim`], answered as soon as the claim's statement has run, before the
    /// commit: see [`Claimed`].
    fn claim_early(&self, lease_until: &str, node: &Claimant, max: usize) -> Queued<Claimed>;

    /// CPUs and memory declared by the `starting` and `running` jobs of node
    /// `worker_id`, and how many.
    async fn usage(&self, worker_id: &str) -> Result<(Usage, u64)>;

    /// Jobs pending and claimable now (not held), on every node.
    async fn queue_depth(&self) -> Result<u64>;

    /// The jobs whose id is `since_id` or later (created since the time the id was
    /// made from, [`jobhost_model::ids::floor`]), counted by the minutes they were
    /// created, left the queue and ended; with the jobs pending and live now. Only
    /// `user_id`'s jobs when given.
    async fn job_minutes(&self, user_id: Option<&str>, since_id: &str) -> Result<JobMinutes>;

    /// Makes every job held until `now` or earlier claimable; returns how many.
    async fn release_held(&self, now: &str) -> Result<u64>;

    /// When the earliest held job is due, if any job is held.
    async fn next_held(&self) -> Result<Option<String>>;

    /// Every ended attempt of job `id`, the first first.
    async fn attempts(&self, id: &str) -> Result<Vec<jobhost_model::JobAttempt>>;

    /// The GPU devices held by `starting` and `running` jobs, by node (of node
    /// `worker_id` only, when given).
    async fn held_gpus(&self, worker_id: Option<&str>) -> Result<std::collections::HashMap<String, Vec<u32>>>;

    /// `starting` → `running` for the current attempt; `None` if the job moved on
    /// (cancelled meanwhile, or the attempt is stale). Queued at once (group commit).
    fn mark_running(&self, id: &str, attempt: u32) -> Queued<Option<Job>>;

    /// Records the container attempt `attempt` of job `id` runs in; `false` if the
    /// attempt is no longer the current one.
    async fn set_container_id(&self, id: &str, attempt: u32, container_id: &str) -> Result<bool>;

    /// Extends the lease of the current attempt; `false` if the job is no longer ours.
    async fn renew_lease(&self, id: &str, attempt: u32, lease_until: &str) -> Result<bool>;

    /// Records the end of the current attempt and its artifacts, together. Refused
    /// (`None`) when the attempt is stale or the job already ended (e.g. it was
    /// cancelled while it ran); artifacts are recorded either way, since the files
    /// exist. Queued at once (group commit).
    fn finish(&self, id: &str, attempt: u32, finish: &Finish, artifacts: &[Artifact]) -> Queued<Option<Job>>;

    /// Cancels a job that has not ended: `None` if it already had.
    async fn cancel(&self, id: &str, reason: &str) -> Result<Option<Job>>;

    /// Ended job → `cleaning`; `None` if the job is not in an ended status.
    async fn begin_cleanup(&self, id: &str) -> Result<Option<Job>>;

    /// `cleaning` → `cleaned`, forgetting the artifacts whose files are gone. The
    /// idempotency key is free from this commit on.
    async fn finish_cleanup(&self, id: &str) -> Result<Option<Job>>;

    /// Deals with the jobs a previous process of node `worker_id` (or one from before
    /// nodes were recorded) left `starting` or `running`: back to `pending` while
    /// attempts remain, otherwise `failed` with `error`. Returns the jobs it moved.
    async fn recover_orphans(&self, worker_id: &str, error: &str) -> Result<Vec<Job>>;

    /// Deals likewise with every `starting` or `running` job whose lease lapsed before
    /// `now` (its node was lost, or cannot reach the database): those out of attempts
    /// fail with "worker <name> lost". Returns the jobs it moved.
    async fn recover_lapsed(&self, now: &str) -> Result<Vec<Job>>;

    /// Calls `hook` with the changes other processes make to jobs, for a store shared
    /// with them (Postgres listens for them); a store no other process writes never
    /// calls it. `false` when a hook was set already.
    fn on_remote(&self, hook: RemoteHook) -> bool;

    /// Ids of jobs that ended (or were cancelled) before `before` and are not yet
    /// cleaned, oldest first, at most `limit`.
    async fn jobs_ended_before(&self, before: &str, limit: u32) -> Result<Vec<String>>;

    /// A pull job of `model` (at `revision`, or any revision when `None`) that has not
    /// ended yet, oldest first.
    async fn active_pull(&self, model: &str, revision: Option<&str>) -> Result<Option<Job>>;

    /// Deletes the jobs of `kind` that ended before `ended_before` (RFC 3339), with
    /// their logs and artifact records; returns their ids so their files can be removed.
    async fn prune_jobs(&self, kind: JobKind, ended_before: &str) -> Result<Vec<String>>;
}

/// A `job_attempts` row of either backend (timestamps selected as text).
pub(crate) fn attempt_from_row<R>(row: &R) -> Result<jobhost_model::JobAttempt>
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i32>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(jobhost_model::JobAttempt {
        attempt: u32::try_from(row.try_get::<i64, _>("attempt")?).unwrap_or(0),
        status: row.try_get("status")?,
        exit_code: row.try_get("exit_code")?,
        error: row.try_get("error")?,
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
        worker_id: row.try_get("worker_id")?,
    })
}

/// [`JobMinutes`] from the rows of a `job_minutes` query (created, left, ended,
/// count) and the counts by live status.
pub(crate) fn minutes_from(
    rows: Vec<(String, Option<String>, Option<String>, i64)>,
    now: Vec<(String, i64)>,
) -> JobMinutes {
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    let rows = rows.into_iter().map(|(created, left, ended, n)| (created, left, ended, count(n))).collect();
    let of = |status: &str| now.iter().filter(|(s, _)| s == status).map(|(_, n)| count(*n)).sum::<u64>();
    JobMinutes { rows, pending: of("pending"), live: of("starting") + of("running") }
}

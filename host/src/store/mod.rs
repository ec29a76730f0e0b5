//! All SQL lives here. The store owns the database file, its settings and migrations,
//! and offers the domain one method per question or state change it needs.
//!
//! Backends are sibling files; today there is `sqlite`. A transition is always a single
//! conditional `UPDATE … WHERE id = ? AND status = ? [AND attempt = ?]`, so two actors
//! racing for the same job can never both win. Errors never carry SQL text to clients:
//! [`StoreError`] keeps the detail for logs and says "internal database error" outward.

mod sqlite;

pub use sqlite::Store;

use crate::jobs::model::{Cpus, Job, JobStatus, LogChunk};

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or does not have the settings we rely on.
    #[error("database at {path}: {reason}")]
    Open {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A migration failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A database error on the group-commit writer's connection.
    #[error("database error: {0}")]
    Writer(#[from] rusqlite::Error),
    /// A group commit did not happen (the write was not made).
    #[error("database commit failed: {0}")]
    Commit(String),
    /// A stored value did not decode (a bug or a hand-edited database).
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

/// Result with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A job as the submit path hands it to the store.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Fresh id.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// `wasm`, ….
    pub kind: String,
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
}

/// How a run ended, as the store records it.
#[derive(Debug, Clone)]
pub struct Finish {
    /// Terminal status.
    pub status: JobStatus,
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

/// A log chunk on its way to the database.
#[derive(Debug, Clone)]
pub struct StoredChunk {
    /// The job.
    pub job_id: String,
    /// The chunk.
    pub chunk: LogChunk,
}

/// Filter and page of a job listing.
#[derive(Debug, Clone, Default)]
pub struct JobQuery {
    /// Only this owner's jobs (none: everyone's).
    pub user_id: Option<String>,
    /// Only jobs with this status.
    pub status: Option<JobStatus>,
    /// Only jobs older than this id (the previous page's last id).
    pub before_id: Option<String>,
    /// Page size.
    pub limit: u32,
}

/// What start-up recovery did with jobs a previous process left running.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Put back in the queue.
    pub requeued: u64,
    /// Failed because their attempts were used up.
    pub failed: u64,
}

/// Resources declared by jobs (or available to them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Usage {
    /// CPUs.
    pub cpus: Cpus,
    /// Memory, MiB.
    pub memory_mb: u64,
}

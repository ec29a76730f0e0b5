//! All SQL lives here. The store owns the database, its settings and migrations, and
//! offers the domain one method per question or state change it needs.
//!
//! The domain sees the store through traits, one per area — [`JobStore`] (the queue
//! and each job's life), [`LogStore`] (output, progress, artifacts), [`AccessStore`]
//! (users and tokens), [`UploadStore`], [`PluginStore`], [`WorkerStore`] (nodes) — gathered in [`Store`], which
//! the services hold as `Arc<dyn Store>`. A backend is a sibling module that implements
//! them all and passes the same suite ([`suite`]): [`sqlite`], the default, and
//! `postgres` (the cargo feature of that name), for several nodes sharing one queue.
//! Their writers share the group commit's queue (`queue`), so what a caller sees of it
//! is the same on both.
//!
//! Contracts every backend keeps: a transition is a single conditional
//! `UPDATE … WHERE id = ? AND status = ? [AND attempt = ?]`, so two actors racing for
//! the same job can never both win; the writes on a job's path are queued and
//! group-committed ([`Queued`]), in order; errors never carry SQL text to clients
//! ([`StoreError`] keeps the detail for logs and says "internal database error"
//! outward).

/// The UPDATE that takes back `starting` and `running` jobs (the caller adds which):
/// each goes back to `pending` while it has attempts left, otherwise fails with the SQL
/// expression `$error`, ending at `$now`. Both backends recover with it, so a job
/// taken back looks the same on either.
macro_rules! recover_sql {
    ($error:literal, $now:literal) => {
        concat!(
            "UPDATE jobs SET status = CASE WHEN attempt < max_attempts THEN 'pending' ELSE 'failed' END, \
             error = CASE WHEN attempt < max_attempts THEN error ELSE ",
            $error,
            " END, completed_at = CASE WHEN attempt < max_attempts THEN NULL ELSE ",
            $now,
            " END, started_at = CASE WHEN attempt < max_attempts THEN NULL ELSE started_at END, \
             progress_done = CASE WHEN attempt < max_attempts THEN NULL ELSE progress_done END, \
             progress_total = CASE WHEN attempt < max_attempts THEN NULL ELSE progress_total END, \
             progress_message = CASE WHEN attempt < max_attempts THEN NULL ELSE progress_message END, \
             lease_expires_at = NULL, outcome = 'lost', updated_at = ",
            $now,
            " WHERE status IN ('starting', 'running')"
        )
    };
}

mod access;
mod jobs;
mod logs;
mod plugins;
#[cfg(feature = "postgres")]
pub mod postgres;
mod queue;
mod runs;
pub mod sqlite;
#[cfg(any(test, feature = "suite"))]
pub mod suite;
#[cfg(all(feature = "postgres", any(test, feature = "suite")))]
pub mod testdb;
mod uploads;
mod workers;

pub use access::{AccessStore, StoredToken};
pub use jobs::{Claimant, Claimed, Committed, Finish, JobMinutes, JobQuery, JobStore, NewJob, Remote, RemoteHook};
pub use logs::{Done, LogStore, StoredChunk};
pub use plugins::PluginStore;
#[cfg(feature = "postgres")]
pub use postgres::PgStore;
pub use runs::{NewRun, RunStore, TaskRow};
pub use sqlite::SqliteStore;
pub use uploads::UploadStore;
pub use workers::WorkerStore;

use jobhost_model::Job;
use std::future::Future;
use std::pin::Pin;

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened, does not have the settings we rely on, or
    /// has a schema this build does not know.
    #[error("database at {path}: {reason}")]
    Open {
        /// The file, or the server and database (never a password).
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
    /// A database error on the SQLite group-commit writer's connection.
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

impl From<StoreError> for jobhost_model::Error {
    fn from(e: StoreError) -> jobhost_model::Error {
        tracing::error!(error = %e, "store");
        jobhost_model::Error::Internal("an internal database error occurred".into())
    }
}

/// A write queued on the group commit: handed to the writer when the method is called,
/// resolving with its answer once its transaction is committed.
pub type Queued<T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'static>>;

/// Told of every job the group commit moves, in commit order (see [`Store::observe`]).
pub type Observer = Box<dyn Fn(&Job) + Send + Sync>;

/// Told of every group commit that succeeded: how many ops it carried, and how long
/// it took from its first statement to its commit (see [`Store::observe_commits`]).
pub type CommitObserver = Box<dyn Fn(usize, std::time::Duration) + Send + Sync>;

/// A store's observers, each set once.
#[derive(Default)]
pub(crate) struct Observers {
    pub(crate) jobs: std::sync::OnceLock<Observer>,
    pub(crate) commits: std::sync::OnceLock<CommitObserver>,
}

impl Observers {
    /// Tells the commit observer of a batch of `ops` that took `took`, if it committed.
    pub(crate) fn committed(&self, ok: bool, ops: usize, took: std::time::Duration) {
        if ok && let Some(observe) = self.commits.get() {
            observe(ops, took);
        }
    }
}

impl std::fmt::Debug for Observers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observers")
    }
}

/// The whole store: every area, and the handle's own life.
#[async_trait::async_trait]
pub trait Store:
    JobStore + LogStore + AccessStore + UploadStore + PluginStore + WorkerStore + RunStore + std::fmt::Debug + Send + Sync
{
    /// Sets the one observer of group-committed transitions: it is called with every
    /// job that an insert, claim, `running` transition or end moved, right after the
    /// commit and in commit order (so in the order of the transitions), before the
    /// caller's answer. The domain publishes its status events from here, which keeps
    /// them in order even when different tasks wait for the answers. A second call
    /// changes nothing and returns `false`.
    fn observe(&self, observer: Observer) -> bool;

    /// Sets the one observer of group commits (their size and time, for metrics); a
    /// second call changes nothing and returns `false`.
    fn observe_commits(&self, observer: CommitObserver) -> bool;

    /// Commits what is queued, then closes the writer's connection and both pools,
    /// waiting for statements in flight. Writes queued afterwards fail.
    async fn close(&self);

    /// `"ok"` when the database is healthy, otherwise what is wrong: SQLite's
    /// `PRAGMA integrity_check`; on Postgres, whether the server answers and the schema
    /// is at this build's version.
    async fn integrity_check(&self) -> Result<String>;
}

//! The Postgres backend: the same records and contracts as [`sqlite`](crate::sqlite),
//! for several jobhost nodes sharing one queue.
//!
//! The writes on a job's path (insert, claim, transitions, log chunks, progress) are
//! group-committed by the task in [`writer`], on a connection of its own: one commit
//! costs milliseconds here, so many jobs' writes share each transaction, exactly as on
//! SQLite. Claims lock the rows they take with `FOR UPDATE SKIP LOCKED`, so writers of
//! other nodes claiming at the same time pass over them instead of waiting, and never
//! take the same job. Every other statement goes through one pool: Postgres orders
//! concurrent writers by row locks, so no in-process write gate is needed, and a new
//! pending job is announced with `NOTIFY` on [`NOTIFY_CHANNEL`] in the transaction that
//! makes it (or puts it back in the queue).
//!
//! What differs from SQLite is only how values are kept: timestamps are TIMESTAMPTZ
//! (bound as RFC 3339 text, read back as the same text through `ts!`), JSON values
//! JSON, log chunk data BYTEA; text a job reports (error, detail, progress message)
//! has any NUL replaced by U+FFFD, since Postgres text cannot hold NUL; and installed
//! plugins are read from the table on every ask, never kept in memory, since another
//! node may replace them. The schema check at connect refuses a database migrated by
//! a newer build.

use crate::{Observer, Result, Store, StoreError};
use jobhost_model::{Artifact, Cpus, Job, JobKind, JobStatus, Plugin, PluginKind, Progress};
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Connections of the pool (reads and the writes that are not group-committed).
const POOL_CONNECTIONS: u32 = 8;

/// The channel told, in the transaction that moves jobs, which jobs moved and to what:
/// `<schema> <origin> <id>:<status> …` (see `writer::sql::notify_payloads`). Every
/// node listens ([`Store`]'s `on_remote`): a pending job wakes its scheduler instead
/// of a poll, an end reaches its `jobs.wait`, a cancel stops the run on the node that
/// has it.
pub const NOTIFY_CHANNEL: &str = "jobhost_jobs";

/// A TIMESTAMPTZ column read back as the text the model carries: RFC 3339, UTC,
/// milliseconds, `Z` (what `ids::now` writes). `ts!("created_at")` keeps the column's
/// name; `ts!("t.created_at", "created_at")` names it.
macro_rules! ts {
    ($col:literal) => {
        ts!($col, $col)
    };
    ($col:literal, $name:literal) => {
        concat!("to_char(", $col, " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS ", $name)
    };
}

/// Every column of a job row, in the order [`job_from_row`] reads them by name.
macro_rules! job_columns {
    () => {
        concat!(
            "id, user_id, kind, plugin, plugin_digest, status, args::text AS args, env::text AS env, \
             input::text AS input, labels::text AS labels, priority, millicpus, memory_mb, timeout_s, \
             client_job_id, attempt, max_attempts, exit_code, error, progress_done, progress_total, \
             progress_message, ",
            ts!("created_at"),
            ", ",
            ts!("started_at"),
            ", ",
            ts!("completed_at"),
            ", files_id, detail, requires, worker_id, container::text AS container, container_id, gpus, gpu_type, \
             gpu_devices, grants, retry::text AS retry, ",
            ts!("run_at"),
            ", run_id, step, task_index"
        )
    };
}

mod access;
mod jobs;
mod listen;
mod logs;
mod plugins;
mod runs;
pub mod scratch;
#[cfg(test)]
mod tests;
mod uploads;
mod workers;
mod writer;

/// The embedded, numbered migrations under `migrations/postgres/`.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    /// Reads, and the writes that are not group-committed.
    pool: PgPool,
    /// The group-commit writer's queue.
    ops: mpsc::UnboundedSender<writer::Op>,
    /// Told of every job the writer moves, in commit order (see [`Store::observe`]).
    observer: Arc<crate::Observers>,
    /// Names this store in its notifications, so it skips its own.
    origin: Arc<str>,
    /// The task listening for other processes' changes, once `on_remote` started it.
    listener: Arc<std::sync::Mutex<Option<tokio::task::AbortHandle>>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("pool", &self.pool).finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`;
    /// `options[search_path]=schema` puts the records in a schema of their own), refuses
    /// a schema this build does not know, applies migrations and starts the writer.
    pub async fn connect(url: &str) -> Result<PgStore> {
        let options = PgConnectOptions::from_str(url).map_err(|e| StoreError::Open {
            path: "the Postgres URL".into(),
            reason: format!("not a Postgres URL: {e}"),
        })?;
        let shown = format!(
            "postgres://{}@{}:{}/{}",
            options.get_username(),
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or_default()
        );
        let open_err = |reason: String| StoreError::Open { path: shown.clone(), reason };
        // Text bound without an offset is read as UTC, whatever the server's default.
        let options = options.options([("TimeZone", "UTC")]);
        let pool = PgPoolOptions::new()
            .max_connections(POOL_CONNECTIONS)
            .connect_with(options.clone())
            .await
            .map_err(|e| open_err(e.to_string()))?;
        check_schema(&pool).await.map_err(open_err)?;
        MIGRATOR.run(&pool).await?;
        let observer = Arc::new(crate::Observers::default());
        let origin: Arc<str> = jobhost_model::ids::new("st_").into();
        let ops =
            writer::start(options, origin.clone(), observer.clone()).await.map_err(|e| open_err(e.to_string()))?;
        Ok(PgStore { pool, ops, observer, origin, listener: Arc::default() })
    }

    async fn get_job_from(&self, id: &str) -> Result<Option<Job>> {
        sqlx::query(concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| job_from_row(&row))
            .transpose()
    }
}

#[async_trait::async_trait]
impl Store for PgStore {
    fn observe(&self, observer: Observer) -> bool {
        self.observer.jobs.set(observer).is_ok()
    }

    fn observe_commits(&self, observer: crate::CommitObserver) -> bool {
        self.observer.commits.set(observer).is_ok()
    }

    async fn close(&self) {
        if let Some(listener) = self.listener.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            listener.abort();
        }
        let (tx, rx) = oneshot::channel();
        if self.ops.send(writer::Op::Close(tx)).is_ok() {
            let _ = rx.await;
        }
        self.pool.close().await;
    }

    /// `"ok"` when the server answers and every migration of this build is applied;
    /// otherwise what is wrong.
    async fn integrity_check(&self) -> Result<String> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        let (applied, failed): (Option<i64>, i64) = sqlx::query_as(
            "SELECT MAX(version) FILTER (WHERE success), COUNT(*) FILTER (WHERE NOT success) FROM _sqlx_migrations",
        )
        .fetch_one(&self.pool)
        .await?;
        let expected = MIGRATOR.iter().map(|m| m.version).max();
        Ok(if failed > 0 {
            format!("{failed} migration(s) failed part-way")
        } else if applied != expected {
            format!("schema at version {applied:?}, expected {expected:?}")
        } else {
            "ok".into()
        })
    }
}

/// Refuses a database whose migrations this build does not all know (a newer build
/// migrated it: this one would misread its records) or one left by a failed
/// migration. A database without the migrations table is new and passes.
async fn check_schema(pool: &PgPool) -> std::result::Result<(), String> {
    let known: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await
        .map_err(|e| e.to_string())?;
    if !known {
        return Ok(());
    }
    let applied: Vec<(i64, bool)> = sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
        .fetch_all(pool)
        .await
        .map_err(|e| e.to_string())?;
    let newest = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    for (version, success) in applied {
        if !MIGRATOR.version_exists(version) {
            return Err(format!(
                "the schema has migration {version}, unknown to this build (which knows up to {newest}): \
                 a newer jobhost migrated it"
            ));
        }
        if !success {
            return Err(format!("migration {version} failed part-way; the schema needs repair"));
        }
    }
    Ok(())
}

fn artifact_from_row(row: &PgRow) -> Result<Artifact> {
    Ok(Artifact {
        name: row.try_get("name")?,
        size_bytes: to_u64(row.try_get("size_bytes")?),
        sha256: row.try_get("sha256")?,
    })
}

fn plugin_from_row(row: &PgRow) -> Result<Plugin> {
    let kind: String = row.try_get("kind")?;
    Ok(Plugin {
        name: row.try_get("name")?,
        digest: row.try_get("digest")?,
        kind: PluginKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("plugin kind {kind:?}")))?,
        size_bytes: to_u64(row.try_get("size_bytes")?),
        installed_at: row.try_get("installed_at")?,
        grants: grants_of(row.try_get("grants")?)?,
    })
}

fn job_from_row(row: &PgRow) -> Result<Job> {
    let id: String = row.try_get("id")?;
    let corrupt = |what: &str, e: &dyn std::fmt::Display| StoreError::Corrupt(format!("job {id}: {what}: {e}"));
    let int = |name: &str| -> Result<u32> {
        let v: i64 = row.try_get(name)?;
        u32::try_from(v).map_err(|e| corrupt(name, &e))
    };
    let status: String = row.try_get("status")?;
    let args: String = row.try_get("args")?;
    let env: String = row.try_get("env")?;
    let labels: String = row.try_get("labels")?;
    let input: Option<String> = row.try_get("input")?;
    let progress_done: Option<i64> = row.try_get("progress_done")?;
    let kind: String = row.try_get("kind")?;
    Ok(Job {
        user_id: row.try_get("user_id")?,
        kind: JobKind::parse(&kind).ok_or_else(|| corrupt("kind", &kind))?,
        plugin: row.try_get("plugin")?,
        plugin_digest: row.try_get("plugin_digest")?,
        status: JobStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        args: serde_json::from_str(&args).map_err(|e| corrupt("args", &e))?,
        env: serde_json::from_str(&env).map_err(|e| corrupt("env", &e))?,
        input: input.map(|s| serde_json::from_str(&s)).transpose().map_err(|e| corrupt("input", &e))?,
        labels: serde_json::from_str(&labels).map_err(|e| corrupt("labels", &e))?,
        priority: row.try_get("priority")?,
        cpus: Cpus::from_millis(int("millicpus")?),
        memory_mb: int("memory_mb")?,
        timeout_s: int("timeout_s")?,
        client_job_id: row.try_get("client_job_id")?,
        attempt: int("attempt")?,
        max_attempts: int("max_attempts")?,
        exit_code: row.try_get("exit_code")?,
        error: row.try_get("error")?,
        progress: match progress_done {
            None => None,
            Some(done) => Some(Progress {
                done: to_u64(done),
                total: row.try_get::<Option<i64>, _>("progress_total")?.map(to_u64),
                message: row.try_get("progress_message")?,
            }),
        },
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        completed_at: row.try_get("completed_at")?,
        files_id: row.try_get("files_id")?,
        detail: row.try_get("detail")?,
        requires: row.try_get("requires")?,
        worker_id: row.try_get("worker_id")?,
        container: row
            .try_get::<Option<String>, _>("container")?
            .map(|c| serde_json::from_str(&c))
            .transpose()
            .map_err(|e| corrupt("container", &e))?,
        container_id: row.try_get("container_id")?,
        gpus: int("gpus")?,
        gpu_type: row.try_get("gpu_type")?,
        gpu_devices: row
            .try_get::<Vec<i64>, _>("gpu_devices")?
            .into_iter()
            .map(|d| u32::try_from(d).map_err(|e| corrupt("gpu_devices", &e)))
            .collect::<Result<_>>()?,
        grants: grants_of(row.try_get("grants")?)?,
        run_at: row.try_get("run_at")?,
        run_id: row.try_get("run_id")?,
        step: row.try_get("step")?,
        task_index: row.try_get::<Option<i64>, _>("task_index")?.and_then(|i| u32::try_from(i).ok()),
        retry: row
            .try_get::<Option<String>, _>("retry")?
            .map(|r| serde_json::from_str(&r))
            .transpose()
            .map_err(|e| corrupt("retry", &e))?
            .unwrap_or_default(),
        waiting: None,
        id,
    })
}

/// Grants stored by name.
fn grants_of(names: Vec<String>) -> Result<Vec<jobhost_model::PluginGrant>> {
    names
        .iter()
        .map(|n| {
            jobhost_model::PluginGrant::parse(n).ok_or_else(|| StoreError::Corrupt(format!("unknown grant {n:?}")))
        })
        .collect()
}

/// Postgres integers are signed; sizes and counts past i64::MAX saturate.
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Negative stored sizes cannot happen through this code; read them as 0.
fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Text a job reported, as Postgres can keep it: NUL (which a TEXT value cannot hold)
/// becomes U+FFFD, the rest is unchanged.
fn no_nul(s: &str) -> Cow<'_, str> {
    if s.contains('\0') { Cow::Owned(s.replace('\0', "\u{FFFD}")) } else { Cow::Borrowed(s) }
}

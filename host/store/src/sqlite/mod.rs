//! The SQLite backend: one file, WAL, `synchronous=FULL`, foreign keys on.
//!
//! The writes on a job's path (insert, claim, transitions, log chunks, progress) are
//! group-committed by the thread in [`writer`], on a connection of its own: many jobs'
//! writes share one transaction and one fsync. The other writes go through a pool of
//! exactly one connection. Both take the in-process [`writer::WriteGate`] around each
//! write, so writers queue in-process instead of spinning on SQLite's busy handler.
//! Reads use their own pool and, under WAL, never wait for a writer.

use crate::{Observer, Queued, Result, Store, StoreError};
use jobhost_model::{Artifact, Cpus, Job, JobKind, JobStatus, Plugin, PluginKind, Progress};
use sqlx::Row;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqliteConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Readers allowed at once; WAL lets them run beside the writer.
const READ_CONNECTIONS: u32 = 8;
/// How long a statement waits for a lock held by another process before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Every column of a job row, in the order [`job_from_row`] reads them by name.
macro_rules! job_columns {
    () => {
        "id, user_id, kind, plugin, plugin_digest, status, args, env, input, labels, priority, \
         millicpus, memory_mb, timeout_s, client_job_id, attempt, max_attempts, exit_code, error, \
         progress_done, progress_total, progress_message, created_at, started_at, completed_at, files_id, detail, \
         requires, worker_id, container, container_id, gpus, gpu_type, gpu_devices, grants, run_at, retry, run_id, step, task_index"
    };
}

mod access;
mod jobs;
mod logs;
mod plugins;
mod runs;
#[cfg(test)]
mod tests;
mod uploads;
mod workers;
mod writer;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The embedded, numbered migrations under `migrations/sqlite/`.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    /// For the writes that are not group-committed; see [`SqliteStore::write_turn`].
    write: SqlitePool,
    /// Taken around every write this process makes (see [`writer::WriteGate`]).
    gate: writer::WriteGate,
    read: SqlitePool,
    /// The group-commit writer's queue.
    ops: mpsc::UnboundedSender<writer::Op>,
    /// Told of every job the writer moves, in commit order (see [`Store::observe`]).
    observer: Arc<crate::Observers>,
    /// Installed plugins already read, by name (see [`PluginStore::get_plugin`](crate::PluginStore::get_plugin)). Any write
    /// to the `plugins` table must update it.
    plugins: Arc<RwLock<HashMap<String, Plugin>>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("write", &self.write).field("read", &self.read).finish_non_exhaustive()
    }
}

/// A turn at writing through the async connection (see [`SqliteStore::write_turn`]); derefs
/// to the connection. The connection goes back to the pool before the gate opens.
struct WriteTurn {
    conn: PoolConnection<sqlx::Sqlite>,
    _gate: tokio::sync::OwnedMutexGuard<()>,
}

impl Deref for WriteTurn {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.conn
    }
}

impl DerefMut for WriteTurn {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, checks that WAL,
    /// `synchronous=FULL` and foreign keys are really in force, and applies migrations.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        let shown = path.display().to_string();
        let open_err = |reason: String| StoreError::Open { path: shown.clone(), reason };
        make_private(path).map_err(|e| open_err(format!("making the database private: {e}")))?;
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| open_err(e.to_string()))?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        // Neither pool pings a connection before handing it out: a connection to a
        // local file does not go stale, and the ping is a round trip to the
        // connection's thread on every transaction of the writer.
        let write = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await
            .map_err(|e| open_err(e.to_string()))?;
        let read = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(READ_CONNECTIONS)
            .connect_with(options.read_only(true))
            .await
            .map_err(|e| open_err(e.to_string()))?;
        for pool in [&write, &read] {
            check_settings(pool).await.map_err(open_err)?;
        }
        MIGRATOR.run(&write).await?;
        let observer = Arc::new(crate::Observers::default());
        let gate = writer::WriteGate::default();
        let ops = writer::start(path, gate.clone(), observer.clone()).map_err(open_err)?;
        Ok(SqliteStore { write, gate, read, ops, observer, plugins: Arc::default() })
    }

    /// This process's turn to write through the async connection: the gate, then the
    /// pool's one connection. Held for one statement or one transaction.
    async fn write_turn(&self) -> Result<WriteTurn> {
        let gate = self.gate.clone().lock_owned().await;
        let conn = self.write.acquire().await?;
        Ok(WriteTurn { conn, _gate: gate })
    }

    /// Hands `op` to the writer now; the future resolves with its answer (`rx`) after
    /// the commit.
    fn send<T: Send + 'static>(&self, op: writer::Op, rx: oneshot::Receiver<Result<T>>) -> Queued<T> {
        crate::queue::send_for(&self.ops, op, rx)
    }

    async fn get_job_from(&self, pool: &SqlitePool, id: &str) -> Result<Option<Job>> {
        sqlx::query(concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = ?"))
            .bind(id)
            .fetch_optional(pool)
            .await?
            .map(|row| job_from_row(&row))
            .transpose()
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn observe(&self, observer: Observer) -> bool {
        self.observer.jobs.set(observer).is_ok()
    }

    fn observe_commits(&self, observer: crate::CommitObserver) -> bool {
        self.observer.commits.set(observer).is_ok()
    }

    async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.ops.send(writer::Op::Close(tx)).is_ok() {
            let _ = rx.await;
        }
        self.write.close().await;
        self.read.close().await;
    }

    async fn integrity_check(&self) -> Result<String> {
        Ok(sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&self.read).await?)
    }
}

/// Reads back the settings durability depends on; a database that silently ignored
/// one (e.g. a file system without WAL support) must not be used.
async fn check_settings(pool: &SqlitePool) -> std::result::Result<(), String> {
    let mut conn = pool.acquire().await.map_err(|e| e.to_string())?;
    let journal: String =
        sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut *conn).await.map_err(|e| e.to_string())?;
    let synchronous: i64 =
        sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut *conn).await.map_err(|e| e.to_string())?;
    let foreign_keys: i64 =
        sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(&mut *conn).await.map_err(|e| e.to_string())?;
    settings_ok(&journal, synchronous, foreign_keys)
}

/// Whether the settings a connection reports are the ones durability depends on.
fn settings_ok(journal: &str, synchronous: i64, foreign_keys: i64) -> std::result::Result<(), String> {
    if !journal.eq_ignore_ascii_case("wal") {
        return Err(format!("journal_mode is {journal:?}, expected \"wal\""));
    }
    // 2 is FULL (3 would be EXTRA, which is stricter and also acceptable).
    if synchronous < 2 {
        return Err(format!("synchronous is {synchronous}, expected 2 (FULL)"));
    }
    if foreign_keys != 1 {
        return Err("foreign_keys is off".into());
    }
    Ok(())
}

fn artifact_from_row(row: &SqliteRow) -> Result<Artifact> {
    Ok(Artifact {
        name: row.try_get("name")?,
        size_bytes: to_u64(row.try_get("size_bytes")?),
        sha256: row.try_get("sha256")?,
    })
}

fn plugin_from_row(row: &SqliteRow) -> Result<Plugin> {
    let kind: String = row.try_get("kind")?;
    Ok(Plugin {
        name: row.try_get("name")?,
        digest: row.try_get("digest")?,
        kind: PluginKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("plugin kind {kind:?}")))?,
        size_bytes: to_u64(row.try_get("size_bytes")?),
        installed_at: row.try_get("installed_at")?,
        grants: serde_json::from_str(&row.try_get::<String, _>("grants")?)
            .map_err(|e| StoreError::Corrupt(format!("plugin grants: {e}")))?,
    })
}

/// The columns [`job_columns!`] selects, in its order: a job row is read by position,
/// found here by name. rusqlite's own lookup by name asks SQLite for every column's
/// name and compares them case-insensitively, for each of a row's 27 columns; on the
/// writer thread, which decodes several job rows per job, that was a visible share of
/// its time.
const JOB_COLUMNS: [&str; 40] = [
    "id",
    "user_id",
    "kind",
    "plugin",
    "plugin_digest",
    "status",
    "args",
    "env",
    "input",
    "labels",
    "priority",
    "millicpus",
    "memory_mb",
    "timeout_s",
    "client_job_id",
    "attempt",
    "max_attempts",
    "exit_code",
    "error",
    "progress_done",
    "progress_total",
    "progress_message",
    "created_at",
    "started_at",
    "completed_at",
    "files_id",
    "detail",
    "requires",
    "worker_id",
    "container",
    "container_id",
    "gpus",
    "gpu_type",
    "gpu_devices",
    "grants",
    "run_at",
    "retry",
    "run_id",
    "step",
    "task_index",
];

/// The position of job column `name` (past the end for an unknown name, which the
/// drivers refuse as an error).
fn job_column(name: &str) -> usize {
    JOB_COLUMNS.iter().position(|c| *c == name).unwrap_or(JOB_COLUMNS.len())
}

/// A job row of either driver (the async pools' or the writer thread's), selected with
/// [`job_columns!`] and read by column name, so a job decodes the same way from both.
trait Columns {
    fn col<T>(&self, name: &str) -> Result<T>
    where
        T: rusqlite::types::FromSql + for<'r> sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>;
}

impl Columns for SqliteRow {
    fn col<T>(&self, name: &str) -> Result<T>
    where
        T: rusqlite::types::FromSql + for<'r> sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
    {
        Ok(self.try_get(job_column(name))?)
    }
}

impl Columns for rusqlite::Row<'_> {
    fn col<T>(&self, name: &str) -> Result<T>
    where
        T: rusqlite::types::FromSql + for<'r> sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
    {
        Ok(self.get(job_column(name))?)
    }
}

fn job_from_row(row: &impl Columns) -> Result<Job> {
    let id: String = row.col("id")?;
    let corrupt = |what: &str, e: &dyn std::fmt::Display| StoreError::Corrupt(format!("job {id}: {what}: {e}"));
    let status: String = row.col("status")?;
    let args: String = row.col("args")?;
    let env: String = row.col("env")?;
    let labels: String = row.col("labels")?;
    let input: Option<String> = row.col("input")?;
    let progress_done: Option<i64> = row.col("progress_done")?;
    let kind: String = row.col("kind")?;
    let requires: String = row.col("requires")?;
    let container: Option<String> = row.col("container")?;
    let gpu_devices: String = row.col("gpu_devices")?;
    let grants: String = row.col("grants")?;
    let retry: Option<String> = row.col("retry")?;
    Ok(Job {
        user_id: row.col("user_id")?,
        kind: JobKind::parse(&kind).ok_or_else(|| corrupt("kind", &kind))?,
        plugin: row.col("plugin")?,
        plugin_digest: row.col("plugin_digest")?,
        status: JobStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        args: serde_json::from_str(&args).map_err(|e| corrupt("args", &e))?,
        env: serde_json::from_str(&env).map_err(|e| corrupt("env", &e))?,
        input: input.map(|s| serde_json::from_str(&s)).transpose().map_err(|e| corrupt("input", &e))?,
        labels: serde_json::from_str(&labels).map_err(|e| corrupt("labels", &e))?,
        priority: row.col("priority")?,
        cpus: Cpus::from_millis(row.col("millicpus")?),
        memory_mb: row.col("memory_mb")?,
        timeout_s: row.col("timeout_s")?,
        client_job_id: row.col("client_job_id")?,
        attempt: row.col("attempt")?,
        max_attempts: row.col("max_attempts")?,
        exit_code: row.col("exit_code")?,
        error: row.col("error")?,
        progress: match progress_done {
            None => None,
            Some(done) => Some(Progress {
                done: to_u64(done),
                total: row.col::<Option<i64>>("progress_total")?.map(to_u64),
                message: row.col("progress_message")?,
            }),
        },
        created_at: row.col("created_at")?,
        started_at: row.col("started_at")?,
        completed_at: row.col("completed_at")?,
        files_id: row.col("files_id")?,
        detail: row.col("detail")?,
        requires: serde_json::from_str(&requires).map_err(|e| corrupt("requires", &e))?,
        worker_id: row.col("worker_id")?,
        container: container.map(|c| serde_json::from_str(&c)).transpose().map_err(|e| corrupt("container", &e))?,
        container_id: row.col("container_id")?,
        gpus: row.col("gpus")?,
        gpu_type: row.col("gpu_type")?,
        gpu_devices: serde_json::from_str(&gpu_devices).map_err(|e| corrupt("gpu_devices", &e))?,
        grants: serde_json::from_str(&grants).map_err(|e| corrupt("grants", &e))?,
        run_at: row.col("run_at")?,
        run_id: row.col("run_id")?,
        step: row.col("step")?,
        task_index: row.col("task_index")?,
        retry: retry
            .map(|r| serde_json::from_str(&r))
            .transpose()
            .map_err(|e| corrupt("retry", &e))?
            .unwrap_or_default(),
        waiting: None,
        id,
    })
}

/// Makes the database file and its journals readable by this user only, whatever the
/// umask: the file is made (empty, which SQLite reads as a new database) with mode
/// 0600 when missing, and SQLite gives the `-wal` and `-shm` files it creates the
/// database file's mode. Files an earlier start left with another mode are set to it.
fn make_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
    let name = path.as_os_str().to_owned();
    for suffix in ["", "-wal", "-shm"] {
        let mut file = name.clone();
        file.push(suffix);
        match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// SQLite integers are signed; sizes and counts past i64::MAX saturate.
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Negative stored sizes cannot happen through this code; read them as 0.
fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

//! The SQLite backend: one file, WAL, `synchronous=FULL`, foreign keys on.
//!
//! The writes on a job's path (insert, claim, transitions, log chunks, progress) are
//! group-committed by the thread in [`writer`], on a connection of its own: many jobs'
//! writes share one transaction and one fsync. The other writes go through a pool of
//! exactly one connection. Both take the in-process [`writer::WriteGate`] around each
//! write, so writers queue in-process instead of spinning on SQLite's busy handler.
//! Reads use their own pool and, under WAL, never wait for a writer.

use super::{Claimed, Finish, JobQuery, NewJob, Recovery, Result, StoreError, StoredChunk, Usage};
use crate::ids;
use crate::jobs::model::{Artifact, Cpus, Job, JobStatus, LogChunk, LogStream, Plugin, PluginKind, Progress};
use sqlx::Row;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqliteConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use std::future::Future;
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
         progress_done, progress_total, progress_message, created_at, started_at, completed_at, files_id, detail"
    };
}

mod writer;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
pub(crate) use writer::Done;

/// The embedded, numbered migrations under `migrations/sqlite/`.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// For the writes that are not group-committed; see [`Store::write_turn`].
    write: SqlitePool,
    /// Taken around every write this process makes (see [`writer::WriteGate`]).
    gate: writer::WriteGate,
    read: SqlitePool,
    /// The group-commit writer's queue.
    ops: mpsc::UnboundedSender<writer::Op>,
    /// Told of every job the writer moves, in commit order (see [`Store::observe`]).
    observer: Arc<OnceLock<writer::Observer>>,
    /// Installed plugins already read, by name (see [`Store::get_plugin`]). Any write
    /// to the `plugins` table must update it.
    plugins: Arc<RwLock<HashMap<String, Plugin>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("write", &self.write).field("read", &self.read).finish_non_exhaustive()
    }
}

/// A turn at writing through the async connection (see [`Store::write_turn`]); derefs
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

impl Store {
    /// Opens (creating if needed) the database at `path`, checks that WAL,
    /// `synchronous=FULL` and foreign keys are really in force, and applies migrations.
    pub async fn open(path: &Path) -> Result<Store> {
        let shown = path.display().to_string();
        let open_err = |reason: String| StoreError::Open { path: shown.clone(), reason };
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
        let observer = Arc::new(OnceLock::new());
        let gate = writer::WriteGate::default();
        let ops = writer::start(path, gate.clone(), observer.clone()).map_err(open_err)?;
        Ok(Store { write, gate, read, ops, observer, plugins: Arc::default() })
    }

    /// This process's turn to write through the async connection: the gate, then the
    /// pool's one connection. Held for one statement or one transaction.
    async fn write_turn(&self) -> Result<WriteTurn> {
        let gate = self.gate.clone().lock_owned().await;
        let conn = self.write.acquire().await?;
        Ok(WriteTurn { conn, _gate: gate })
    }

    /// Sets the one observer of group-committed transitions: it is called with every
    /// job that an insert, claim, `running` transition or end moved, right after the
    /// commit and in commit order (so in the order of the transitions), before the
    /// caller's answer. The domain publishes its status events from here, which keeps
    /// them in order even when different tasks wait for the answers. A second call
    /// changes nothing and returns `false`.
    pub fn observe(&self, observer: impl Fn(&Job) + Send + Sync + 'static) -> bool {
        self.observer.set(Box::new(observer)).is_ok()
    }

    /// Commits what is queued, then closes the writer's connection and both pools,
    /// waiting for statements in flight. Writes queued afterwards fail.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.ops.send(writer::Op::Close(tx)).is_ok() {
            let _ = rx.await;
        }
        self.write.close().await;
        self.read.close().await;
    }

    /// `PRAGMA integrity_check` result (`"ok"` when healthy).
    pub async fn integrity_check(&self) -> Result<String> {
        Ok(sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&self.read).await?)
    }

    /// Returns the id of the user `name`, creating it (with `is_admin`) if missing.
    pub async fn ensure_user(&self, name: &str, is_admin: bool) -> Result<String> {
        sqlx::query(
            "INSERT INTO users (id, name, is_admin, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(ids::new(ids::USER))
        .bind(name)
        .bind(is_admin)
        .bind(ids::now())
        .execute(&mut *self.write_turn().await?)
        .await?;
        Ok(sqlx::query_scalar("SELECT id FROM users WHERE name = ?")
            .bind(name)
            .fetch_one(&mut *self.write_turn().await?)
            .await?)
    }

    /// Records `plugin` under its name, replacing an earlier install of that name.
    pub async fn put_plugin(&self, plugin: &Plugin) -> Result<()> {
        sqlx::query(
            "INSERT INTO plugins (name, digest, kind, size_bytes, installed_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET digest = excluded.digest, kind = excluded.kind, \
             size_bytes = excluded.size_bytes, installed_at = excluded.installed_at",
        )
        .bind(&plugin.name)
        .bind(&plugin.digest)
        .bind(plugin.kind.as_str())
        .bind(to_i64(plugin.size_bytes))
        .bind(&plugin.installed_at)
        .execute(&mut *self.write_turn().await?)
        .await?;
        self.plugins.write().unwrap_or_else(PoisonError::into_inner).insert(plugin.name.clone(), plugin.clone());
        Ok(())
    }

    /// The plugin installed as `name`.
    /// Every submit asks this, so answers are kept in memory once read: the table
    /// changes only through [`Store::put_plugin`] of this store, which updates them.
    pub async fn get_plugin(&self, name: &str) -> Result<Option<Plugin>> {
        if let Some(p) = self.plugins.read().unwrap_or_else(PoisonError::into_inner).get(name) {
            return Ok(Some(p.clone()));
        }
        let plugin = sqlx::query("SELECT name, digest, kind, size_bytes, installed_at FROM plugins WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.read)
            .await?
            .map(|row| plugin_from_row(&row))
            .transpose()?;
        if let Some(p) = &plugin {
            self.plugins
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(p.name.clone())
                .or_insert_with(|| p.clone());
        }
        Ok(plugin)
    }

    /// Every installed plugin, by name.
    pub async fn list_plugins(&self) -> Result<Vec<Plugin>> {
        sqlx::query("SELECT name, digest, kind, size_bytes, installed_at FROM plugins ORDER BY name")
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(plugin_from_row)
            .collect()
    }

    /// Inserts a pending job. With a `client_job_id` that already names a live job of
    /// the same user, nothing is inserted and that job is returned with `false`.
    /// The unique index decides, so concurrent duplicates still create exactly one job.
    /// A job with `files_id` consumes that upload in the same transaction; `None` when
    /// the upload is not the user's, not finalized or expired (nothing is inserted).
    /// Queued at once (group commit); the answer comes after the commit.
    pub fn insert_job(
        &self,
        job: &NewJob,
    ) -> impl Future<Output = Result<Option<(Job, bool)>>> + Send + 'static + use<> {
        let (reply, rx) = oneshot::channel();
        self.send(writer::Op::InsertJob(Box::new(job.clone()), reply), rx)
    }

    /// Hands `op` to the writer now; the future resolves with its answer (`rx`) after
    /// the commit.
    fn send<T: Send + 'static>(
        &self,
        op: writer::Op,
        rx: oneshot::Receiver<Result<T>>,
    ) -> impl Future<Output = Result<T>> + Send + 'static + use<T> {
        let sent = self.ops.send(op).is_ok();
        async move {
            if !sent {
                return Err(StoreError::Commit("the store is closed".into()));
            }
            rx.await.unwrap_or_else(|_| Err(StoreError::Commit("the store's writer stopped".into())))
        }
    }

    /// The job `id`.
    pub async fn get_job(&self, id: &str) -> Result<Option<Job>> {
        self.get_job_from(&self.read, id).await
    }

    async fn get_job_from(&self, pool: &SqlitePool, id: &str) -> Result<Option<Job>> {
        sqlx::query(concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = ?"))
            .bind(id)
            .fetch_optional(pool)
            .await?
            .map(|row| job_from_row(&row))
            .transpose()
    }

    /// Jobs matching `q`, newest first.
    pub async fn list_jobs(&self, q: &JobQuery) -> Result<Vec<Job>> {
        sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR status = ?2) \
             AND (?3 IS NULL OR id < ?3) ORDER BY id DESC LIMIT ?4"
        ))
        .bind(&q.user_id)
        .bind(q.status.map(JobStatus::as_str))
        .bind(&q.before_id)
        .bind(q.limit)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(job_from_row)
        .collect()
    }

    /// Claims the next pending job that fits in what `capacity` leaves after the
    /// `starting` and `running` jobs: `starting`, attempt + 1, lease until `lease_until`.
    /// A job too large for the room left waits while smaller ones behind it start.
    pub async fn claim_next(&self, lease_until: &str, capacity: &Usage) -> Result<Option<Job>> {
        Ok(self.claim(lease_until, capacity, 1).await?.pop())
    }

    /// Claims up to `max` pending jobs, as [`Store::claim_next`] would one after the
    /// other, in one transaction. Queued at once (group commit); resolves after the
    /// commit.
    pub fn claim(
        &self,
        lease_until: &str,
        capacity: &Usage,
        max: usize,
    ) -> impl Future<Output = Result<Vec<Job>>> + Send + 'static + use<> {
        let claimed = self.claim_early(lease_until, capacity, max);
        async move {
            let claimed = claimed.await?;
            claimed.committed.wait().await?;
            Ok(claimed.jobs)
        }
    }

    /// [`Store::claim`], answered as soon as the claim's statement has run, before the
    /// commit: see [`Claimed`].
    pub fn claim_early(
        &self,
        lease_until: &str,
        capacity: &Usage,
        max: usize,
    ) -> impl Future<Output = Result<Claimed>> + Send + 'static + use<> {
        let (reply, rx) = oneshot::channel();
        self.send(writer::Op::Claim { lease_until: lease_until.to_owned(), capacity: *capacity, max, reply }, rx)
    }

    /// CPUs and memory declared by the `starting` and `running` jobs, and how many.
    pub async fn usage(&self) -> Result<(Usage, u64)> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(millicpus), 0) AS millicpus, COALESCE(SUM(memory_mb), 0) AS memory_mb, \
             COUNT(*) AS jobs FROM jobs WHERE status IN ('starting', 'running')",
        )
        .fetch_one(&self.read)
        .await?;
        Ok((
            Usage {
                cpus: Cpus::from_millis(u32::try_from(row.try_get::<i64, _>("millicpus")?).unwrap_or(u32::MAX)),
                memory_mb: to_u64(row.try_get("memory_mb")?),
            },
            to_u64(row.try_get("jobs")?),
        ))
    }

    /// Ended job → `cleaning`; `None` if the job is not in an ended status.
    pub async fn begin_cleanup(&self, id: &str) -> Result<Option<Job>> {
        sqlx::query(concat!(
            "UPDATE jobs SET status = 'cleaning', updated_at = ?1 WHERE id = ?2 \
             AND status IN ('completed', 'failed', 'timed_out', 'cancelled') RETURNING ",
            job_columns!()
        ))
        .bind(ids::now())
        .bind(id)
        .fetch_optional(&mut *self.write_turn().await?)
        .await?
        .map(|row| job_from_row(&row))
        .transpose()
    }

    /// `cleaning` → `cleaned`, forgetting the artifacts whose files are gone. The
    /// idempotency key is free from this commit on.
    pub async fn finish_cleanup(&self, id: &str) -> Result<Option<Job>> {
        let mut turn = self.write_turn().await?;
        let mut tx = sqlx::Connection::begin(&mut *turn).await?;
        sqlx::query("DELETE FROM artifacts WHERE job_id = ?").bind(id).execute(&mut *tx).await?;
        let job = sqlx::query(concat!(
            "UPDATE jobs SET status = 'cleaned', updated_at = ?1 WHERE id = ?2 AND status = 'cleaning' RETURNING ",
            job_columns!()
        ))
        .bind(ids::now())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| job_from_row(&row))
        .transpose()?;
        tx.commit().await?;
        Ok(job)
    }

    /// The artifact `name` of `job_id`.
    pub async fn get_artifact(&self, job_id: &str, name: &str) -> Result<Option<Artifact>> {
        sqlx::query("SELECT name, size_bytes, sha256 FROM artifacts WHERE job_id = ? AND name = ?")
            .bind(job_id)
            .bind(name)
            .fetch_optional(&self.read)
            .await?
            .map(|row| artifact_from_row(&row))
            .transpose()
    }

    /// `starting` → `running` for the current attempt; `None` if the job moved on
    /// (cancelled meanwhile, or the attempt is stale). Queued at once (group commit).
    pub fn mark_running(
        &self,
        id: &str,
        attempt: u32,
    ) -> impl Future<Output = Result<Option<Job>>> + Send + 'static + use<> {
        let (reply, rx) = oneshot::channel();
        self.send(writer::Op::MarkRunning { id: id.to_owned(), attempt, reply }, rx)
    }

    /// Extends the lease of the current attempt; `false` if the job is no longer ours.
    pub async fn renew_lease(&self, id: &str, attempt: u32, lease_until: &str) -> Result<bool> {
        Ok(sqlx::query(
            "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND attempt = ? \
             AND status IN ('starting', 'running')",
        )
        .bind(lease_until)
        .bind(id)
        .bind(attempt)
        .execute(&mut *self.write_turn().await?)
        .await?
        .rows_affected()
            == 1)
    }

    /// Records the end of the current attempt and its artifacts, together. Refused
    /// (`None`) when the attempt is stale or the job already ended (e.g. it was
    /// cancelled while it ran); artifacts are recorded either way, since the files
    /// exist. Queued at once (group commit).
    pub fn finish(
        &self,
        id: &str,
        attempt: u32,
        finish: &Finish,
        artifacts: &[Artifact],
    ) -> impl Future<Output = Result<Option<Job>>> + Send + 'static + use<> {
        let (reply, rx) = oneshot::channel();
        let (id, finish, artifacts) = (id.to_owned(), finish.clone(), artifacts.to_vec());
        self.send(writer::Op::Finish { id, attempt, finish, artifacts, reply }, rx)
    }

    /// Cancels a job that has not ended: `None` if it already had.
    pub async fn cancel(&self, id: &str, reason: &str) -> Result<Option<Job>> {
        let now = ids::now();
        sqlx::query(concat!(
            "UPDATE jobs SET status = 'cancelled', error = ?1, completed_at = ?2, updated_at = ?2, \
             lease_expires_at = NULL WHERE id = ?3 AND status IN ('pending', 'starting', 'running') \
             RETURNING ",
            job_columns!()
        ))
        .bind(reason)
        .bind(&now)
        .bind(id)
        .fetch_optional(&mut *self.write_turn().await?)
        .await?
        .map(|row| job_from_row(&row))
        .transpose()
    }

    /// Records the progress a running job reported. Queued at once (group commit).
    pub fn set_progress(
        &self,
        id: &str,
        progress: &Progress,
    ) -> impl Future<Output = Result<()>> + Send + 'static + use<> {
        let (tx, rx) = oneshot::channel();
        self.set_progress_then(id, progress.clone(), Box::new(move |r| drop(tx.send(r))));
        async move { rx.await.unwrap_or_else(|_| Err(StoreError::Commit("the store's writer stopped".into()))) }
    }

    /// Queues a progress update; `done` is called once it is committed (or failed).
    pub(crate) fn set_progress_then(&self, id: &str, progress: Progress, done: Done) {
        if let Err(mpsc::error::SendError(op)) = self.ops.send(writer::Op::Progress(id.to_owned(), progress, done))
            && let writer::Op::Progress(_, _, done) = op
        {
            done(Err(StoreError::Commit("the store is closed".into())));
        }
    }

    /// Appends log chunks, of any number of jobs, together. Queued at once (group
    /// commit).
    pub fn append_logs(&self, chunks: &[StoredChunk]) -> impl Future<Output = Result<()>> + Send + 'static + use<> {
        let (tx, rx) = oneshot::channel();
        if chunks.is_empty() {
            drop(tx.send(Ok(())));
        } else {
            self.append_logs_then(chunks.to_vec(), Box::new(move |r| drop(tx.send(r))));
        }
        async move { rx.await.unwrap_or_else(|_| Err(StoreError::Commit("the store's writer stopped".into()))) }
    }

    /// Queues log chunks; `done` is called once they are committed (or failed). Chunks
    /// queued before a job's [`Store::finish`] are committed no later than it.
    pub(crate) fn append_logs_then(&self, chunks: Vec<StoredChunk>, done: Done) {
        if let Err(mpsc::error::SendError(op)) = self.ops.send(writer::Op::AppendLogs(chunks, done))
            && let writer::Op::AppendLogs(_, done) = op
        {
            done(Err(StoreError::Commit("the store is closed".into())));
        }
    }

    /// Resolves once every write queued before it is committed.
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError(op)) = self.ops.send(writer::Op::Flush(Box::new(move |r| drop(tx.send(r)))))
            && let writer::Op::Flush(done) = op
        {
            done(Err(StoreError::Commit("the store is closed".into())));
        }
        rx.await.unwrap_or_else(|_| Err(StoreError::Commit("the store's writer stopped".into())))
    }

    /// Up to `limit` chunks of `job_id` from `since_seq` on, in order.
    pub async fn read_logs(&self, job_id: &str, since_seq: u64, limit: u32) -> Result<Vec<LogChunk>> {
        sqlx::query(
            "SELECT seq, stream, data, at FROM log_chunks WHERE job_id = ? AND seq >= ? \
             ORDER BY seq LIMIT ?",
        )
        .bind(job_id)
        .bind(to_i64(since_seq))
        .bind(limit)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|row| {
            let stream: String = row.try_get("stream")?;
            Ok(LogChunk {
                seq: to_u64(row.try_get("seq")?),
                stream: LogStream::parse(&stream)
                    .ok_or_else(|| StoreError::Corrupt(format!("log stream {stream:?}")))?,
                data: row.try_get("data")?,
                at: row.try_get("at")?,
            })
        })
        .collect()
    }

    /// The artifacts of `job_id`, by name.
    pub async fn list_artifacts(&self, job_id: &str) -> Result<Vec<Artifact>> {
        sqlx::query("SELECT name, size_bytes, sha256 FROM artifacts WHERE job_id = ? ORDER BY name")
            .bind(job_id)
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(artifact_from_row)
            .collect()
    }

    /// Deals with jobs a previous process left `starting` or `running`: back to
    /// `pending` while attempts remain, otherwise `failed` with `error`.
    pub async fn recover_orphans(&self, error: &str) -> Result<Recovery> {
        let now = ids::now();
        let mut turn = self.write_turn().await?;
        let mut tx = sqlx::Connection::begin(&mut *turn).await?;
        let requeued = sqlx::query(
            "UPDATE jobs SET status = 'pending', lease_expires_at = NULL, started_at = NULL, \
             progress_done = NULL, progress_total = NULL, progress_message = NULL, updated_at = ? \
             WHERE status IN ('starting', 'running') AND attempt < max_attempts",
        )
        .bind(&now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let failed = sqlx::query(
            "UPDATE jobs SET status = 'failed', error = ?1, completed_at = ?2, updated_at = ?2, \
             lease_expires_at = NULL WHERE status IN ('starting', 'running')",
        )
        .bind(error)
        .bind(&now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(Recovery { requeued, failed })
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
    })
}

/// A result row of either driver (the async pools' or the writer thread's), read by
/// column name, so a job decodes the same way from both.
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
        Ok(self.try_get(name)?)
    }
}

impl Columns for rusqlite::Row<'_> {
    fn col<T>(&self, name: &str) -> Result<T>
    where
        T: rusqlite::types::FromSql + for<'r> sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
    {
        Ok(self.get(name)?)
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
    Ok(Job {
        user_id: row.col("user_id")?,
        kind: row.col("kind")?,
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
        id,
    })
}

/// SQLite integers are signed; sizes and counts past i64::MAX saturate.
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Negative stored sizes cannot happen through this code; read them as 0.
fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Store {
    /// Ids of jobs that ended (or were cancelled) before `before` and are not yet
    /// cleaned, oldest first, at most `limit`.
    pub async fn jobs_ended_before(&self, before: &str, limit: u32) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM jobs WHERE status IN ('completed', 'failed', 'timed_out', 'cancelled') \
             AND completed_at < ? ORDER BY completed_at LIMIT ?",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(&self.read)
        .await?)
    }

    /// Deletes the log chunks of `job_id`; returns how many.
    pub async fn prune_logs(&self, job_id: &str) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM log_chunks WHERE job_id = ?")
            .bind(job_id)
            .execute(&mut *self.write_turn().await?)
            .await?
            .rows_affected())
    }
}

mod access;
#[cfg(test)]
mod tests;

mod pulls;

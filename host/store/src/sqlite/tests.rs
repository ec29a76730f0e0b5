//! The SQLite backend's tests: the store suite, and what only SQLite has (its
//! migrations, settings and the async connection beside the writer).

use super::*;
use crate::suite::{Fixture, new_job, seed};
use crate::{AccessStore, JobQuery, JobStore};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use std::sync::Arc;

/// A fresh database in a temporary directory; every `open` opens it again.
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let path = dir.path().join("t.db");
    Fixture::new(
        move || {
            let path = path.clone();
            Box::pin(async move {
                Arc::new(SqliteStore::open(&path).await.unwrap_or_else(|e| panic!("open: {e}"))) as Arc<dyn Store>
            })
        },
        dir,
    )
}

crate::store_suite!(fixture());

async fn seeded() -> (tempfile::TempDir, SqliteStore, String) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap_or_else(|e| panic!("open: {e}"));
    let user = seed(&store).await;
    (dir, store, user)
}

#[tokio::test]
async fn reopening_applies_no_migration_twice_and_keeps_settings() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let path = dir.path().join("t.db");
    let first = SqliteStore::open(&path).await?;
    let user = first.ensure_user("u", true).await?;
    first.close().await;
    let second = SqliteStore::open(&path).await?;
    assert_eq!(second.ensure_user("u", true).await?, user);
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations").fetch_one(&second.read).await?;
    assert_eq!(applied, super::MIGRATOR.iter().count() as i64);
    assert_eq!(second.integrity_check().await?, "ok");
    Ok(())
}

#[tokio::test]
async fn writes_of_the_async_connection_interleave_with_group_commits() -> Result<()> {
    let (_dir, store, user) = seeded().await;
    let mut first = Vec::new();
    for _ in 0..100 {
        let job = new_job(&user, None, 0);
        store.insert_job(&job).await?;
        first.push(job.id);
    }
    // Group-committed inserts keep the writer busy while the other connection cancels
    // the first jobs: every write lands, none waits out SQLite's busy timeout.
    let started = std::time::Instant::now();
    let more: Vec<_> = (0..200).map(|_| store.insert_job(&new_job(&user, None, 0))).collect();
    for id in &first {
        assert!(store.cancel(id, "stop").await?.is_some(), "cancel {id}");
    }
    for insert in more {
        assert!(insert.await?.is_some());
    }
    assert!(started.elapsed() < BUSY_TIMEOUT, "a write waited for the busy timeout");
    let all = store.list_jobs(&JobQuery { limit: 1000, ..Default::default() }).await?;
    assert_eq!(all.len(), 300);
    assert_eq!(all.iter().filter(|j| j.status == JobStatus::Cancelled).count(), 100);
    Ok(())
}

/// A database written before CPU requests were fractional keeps what its jobs asked
/// for: 2 CPUs stay 2 CPUs.
#[tokio::test]
async fn whole_cpu_requests_survive_the_move_to_thousandths() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let path = dir.path().join("t.db");
    let old = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::new().filename(&path).create_if_missing(true))
        .await?;
    super::MIGRATOR.run_to(3, &old).await?;
    sqlx::query("INSERT INTO users (id, name, created_at) VALUES ('usr_1', 'u', 'now')").execute(&old).await?;
    sqlx::query(
        "INSERT INTO jobs (id, user_id, kind, plugin, plugin_digest, status, args, env, labels, cpus, \
         memory_mb, timeout_s, created_at, updated_at) \
         VALUES ('job_1', 'usr_1', 'wasm', 'p', 'sha256:00', 'completed', '[]', '{}', '{}', 2, 64, 10, 'now', 'now')",
    )
    .execute(&old)
    .await?;
    old.close().await;

    let store = SqliteStore::open(&path).await?;
    assert_eq!(store.get_job("job_1").await?.map(|j| j.cpus), Some(Cpus::whole(2)));
    Ok(())
}

/// Job rows are read by position: the names listed for that must be the columns
/// `job_columns!` selects, in its order.
#[test]
fn job_rows_are_read_in_the_order_they_are_selected() {
    let selected: Vec<&str> = job_columns!().split(',').map(str::trim).collect();
    assert_eq!(selected, JOB_COLUMNS);
    assert_eq!(job_column("detail"), 26);
    assert_eq!(job_column("no_such_column"), JOB_COLUMNS.len());
}

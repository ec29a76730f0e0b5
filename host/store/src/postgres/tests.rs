//! The Postgres backend's tests: the store suite, and what only Postgres has (several
//! stores on one database, the schema check, the notifications of moved jobs, how values are
//! kept, the writer's reconnection).
//!
//! They need a server: `JOBHOST_TEST_DATABASE_URL` names a database the tests may
//! create schemas in (`.ci/test` starts one). Each test gets a schema of its own,
//! dropped when it ends, so they run in parallel. Without the variable they fail.

use super::*;
use crate::suite::{Fixture, new_job, seed};
use crate::testdb::PgSchema as Schema;
use crate::{AccessStore, Claimant, Finish, JobQuery, JobStore, LogStore, Remote, StoredChunk};
use jobhost_model::{JobKind, LogChunk, LogStream, Usage, User, ids};
use std::collections::HashSet;
use std::time::Duration;

async fn connect(schema: &Schema) -> PgStore {
    PgStore::connect(&schema.url()).await.unwrap_or_else(|e| panic!("connect: {e}"))
}

/// A fresh schema; every `open` connects to it again.
async fn fixture() -> Fixture {
    let schema = Schema::new().await;
    let url = schema.url();
    Fixture::new(
        move || {
            let url = url.clone();
            Box::pin(async move {
                Arc::new(PgStore::connect(&url).await.unwrap_or_else(|e| panic!("connect: {e}"))) as Arc<dyn Store>
            })
        },
        schema,
    )
}

crate::store_suite!(fixture());

async fn seeded() -> (Schema, PgStore, String) {
    let schema = Schema::new().await;
    let store = connect(&schema).await;
    let user = seed(&store).await;
    (schema, store, user)
}

const ROOMY: Usage = Usage { cpus: Cpus::from_millis(u32::MAX), memory_mb: 1 << 40 };

/// A claim for node `wrk_t` with room for everything.
fn roomy() -> Claimant {
    Claimant { worker_id: "wrk_t".into(), labels: vec![], capacity: ROOMY, gpus: vec![] }
}

#[tokio::test]
async fn reconnecting_applies_no_migration_twice() -> Result<()> {
    let schema = Schema::new().await;
    let first = connect(&schema).await;
    let user = first.ensure_user("u", true).await?;
    first.close().await;
    let second = connect(&schema).await;
    assert_eq!(second.ensure_user("u", true).await?, user);
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations").fetch_one(&second.pool).await?;
    assert_eq!(applied, MIGRATOR.iter().count() as i64);
    assert_eq!(second.integrity_check().await?, "ok");
    Ok(())
}

/// A database a newer build migrated is refused at connect, before anything is
/// written to it, and `integrity_check` tells a schema behind or ahead of this build.
#[tokio::test]
async fn a_schema_from_a_newer_build_is_refused() -> Result<()> {
    let schema = Schema::new().await;
    let store = connect(&schema).await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101, 'from the future', TRUE, '\\x00', 0)",
    )
    .execute(&store.pool)
    .await?;
    assert!(store.integrity_check().await?.contains("expected"), "a schema ahead of this build is not ok");
    store.close().await;
    match PgStore::connect(&schema.url()).await {
        Err(StoreError::Open { path, reason }) => {
            assert!(reason.contains("99990101"), "{reason}");
            assert!(!path.contains("jobhost:jobhost"), "the password is not shown: {path}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    Ok(())
}

/// Two stores on one database (two nodes) claim from one queue at the same time, with
/// single claims and head claims: every job is claimed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_claiming_at_once_never_take_the_same_job() -> Result<()> {
    let (schema, a, user) = seeded().await;
    let b = connect(&schema).await;
    let inserts: Vec<_> = (0..400).map(|i| a.insert_job(&new_job(&user, None, i % 3))).collect();
    let mut all = HashSet::new();
    for insert in inserts {
        all.insert(insert.await?.map(|(j, _)| j.id).unwrap_or_default());
    }
    let mut claimers = Vec::new();
    for (n, store) in [a.clone(), b.clone(), a.clone(), b.clone(), a, b].into_iter().enumerate() {
        // Alternately single claims and head claims (8 or more).
        let max = if n % 2 == 0 { 3 } else { 9 };
        claimers.push(tokio::spawn(async move {
            let mut taken = Vec::new();
            loop {
                let jobs = store.claim("2099-01-01T00:00:00Z", &roomy(), max).await?;
                if jobs.is_empty() {
                    return Ok::<_, StoreError>(taken);
                }
                assert!(jobs.iter().all(|j| j.status == JobStatus::Starting && j.attempt == 1), "{jobs:?}");
                taken.extend(jobs.into_iter().map(|j| j.id));
            }
        }));
    }
    let mut seen = HashSet::new();
    for claimer in claimers {
        for id in claimer.await.unwrap_or_else(|e| panic!("claimer: {e}"))? {
            assert!(seen.insert(id.clone()), "{id} was claimed twice");
        }
    }
    assert_eq!(seen, all, "every job was claimed");
    Ok(())
}

/// Another store on the same schema hears, once committed, every job this one moved:
/// an insert, a claim, a requeue and a cancel, with the status each moved it to.
#[tokio::test]
async fn other_nodes_hear_what_a_node_moved() -> Result<()> {
    let (schema, store, user) = seeded().await;
    let other = connect(&schema).await;
    let (tx, mut heard) = tokio::sync::mpsc::unbounded_channel();
    assert!(other.on_remote(Box::new(move |r| drop(tx.send(r)))));
    let mut next = async || -> Vec<(String, JobStatus)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, heard.recv()).await {
                Ok(Some(Remote::Moved(moved))) => return moved,
                Ok(Some(Remote::Missed)) => continue,
                _ => return Vec::new(),
            }
        }
    };
    // The listener says it may have missed changes once it listens: from then on it hears.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (job, _) = store.insert_job(&new_job(&user, None, 0)).await?.unwrap_or_else(|| panic!("inserted"));
    assert_eq!(next().await, [(job.id.clone(), JobStatus::Pending)], "an insert");
    store.claim("2099-01-01T00:00:00Z", &roomy(), 1).await?;
    assert_eq!(next().await, [(job.id.clone(), JobStatus::Starting)], "a claim");
    assert_eq!(store.recover_orphans("wrk_t", "host stopped").await?.len(), 1);
    assert_eq!(next().await, [(job.id.clone(), JobStatus::Pending)], "a requeue");
    store.cancel(&job.id, "by request").await?;
    assert_eq!(next().await, [(job.id.clone(), JobStatus::Cancelled)], "a cancel");
    other.close().await;
    Ok(())
}

/// Timestamps are TIMESTAMPTZ and read back as the text written; output holding NUL
/// is kept whole; reported text with NUL keeps the rest of its text.
#[tokio::test]
async fn values_read_back_as_written() -> Result<()> {
    let (_schema, store, user) = seeded().await;
    let at = ids::now();
    let u = User { id: ids::new(ids::USER), name: "v".into(), is_admin: false, created_at: at.clone() };
    assert!(store.insert_user(&u).await?);
    assert_eq!(store.get_user(&u.id).await?.map(|u| u.created_at), Some(at.clone()));

    let mut job = new_job(&user, None, 0);
    job.input = Some(r#"{"text": "a\u0000b", "n": 1.50}"#.into());
    let (job, _) = store.insert_job(&job).await?.unwrap_or_else(|| panic!("inserted"));
    assert_eq!(job.input, Some(serde_json::json!({"text": "a\u{0}b", "n": 1.5})));
    let chunk = LogChunk { seq: 0, attempt: 1, stream: LogStream::Stdout, data: "bin\0ary ✓".into(), at: at.clone() };
    store.append_logs(&[StoredChunk { job_id: job.id.clone(), chunk: chunk.clone() }]).await?;
    let read = store.read_logs(&job.id, 0, 10).await?;
    assert_eq!((read[0].data.as_str(), read[0].at.as_str()), (chunk.data.as_str(), at.as_str()));

    store.claim("2099-01-01T00:00:00Z", &roomy(), 1).await?;
    let failed = Finish {
        status: JobStatus::Failed,
        retry_at: None,
        exit_code: None,
        error: Some("bad\0byte".into()),
        detail: None,
    };
    let ended = store.finish(&job.id, 1, &failed, &[]).await?.unwrap_or_else(|| panic!("ended"));
    assert_eq!(ended.error.as_deref(), Some("bad\u{FFFD}byte"));
    let stored = store.get_job(&job.id).await?.unwrap_or_else(|| panic!("stored"));
    assert_eq!((stored.created_at, stored.completed_at), (job.created_at, ended.completed_at));
    Ok(())
}

/// Writes through the pool and group commits interleave: every write lands.
#[tokio::test]
async fn writes_of_the_pool_interleave_with_group_commits() -> Result<()> {
    let (_schema, store, user) = seeded().await;
    let mut first = Vec::new();
    for _ in 0..100 {
        let job = new_job(&user, None, 0);
        store.insert_job(&job).await?;
        first.push(job.id);
    }
    let more: Vec<_> = (0..200).map(|_| store.insert_job(&new_job(&user, None, 0))).collect();
    for id in &first {
        assert!(store.cancel(id, "stop").await?.is_some(), "cancel {id}");
    }
    for insert in more {
        assert!(insert.await?.is_some());
    }
    let all = store.list_jobs(&JobQuery { limit: 1000, ..Default::default() }).await?;
    assert_eq!(all.len(), 300);
    assert_eq!(all.iter().filter(|j| j.status == JobStatus::Cancelled).count(), 100);
    Ok(())
}

/// When the writer's connection dies, the batch that meets it fails and the next one
/// connects again.
#[tokio::test]
async fn the_writer_connects_again_after_losing_its_connection() -> Result<()> {
    let schema = Schema::new().await;
    let app = ids::new("jobhost_t");
    let store = PgStore::connect(&schema.url_named(&app)).await?;
    let user = seed(&store).await;
    store.insert_job(&new_job(&user, None, 0)).await?;
    let killed: Vec<bool> =
        sqlx::query_scalar("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE application_name = $1")
            .bind(&app)
            .fetch_all(&PgPool::connect(&schema.scratch.base).await?)
            .await?;
    assert!(!killed.is_empty() && killed.iter().all(|k| *k), "{killed:?}");
    let lost = store.insert_job(&new_job(&user, None, 0)).await;
    assert!(matches!(lost, Err(StoreError::Commit(_))), "{lost:?}");
    let job = new_job(&user, None, 0);
    assert!(store.insert_job(&job).await?.is_some_and(|(_, created)| created));
    assert!(store.get_job(&job.id).await?.is_some());
    assert_eq!(store.list_jobs(&JobQuery { limit: 10, ..Default::default() }).await?.len(), 2);
    Ok(())
}

/// Writes queued together share one transaction: the rows they make carry one `xmin`.
#[tokio::test]
async fn queued_inserts_share_transactions() -> Result<()> {
    let (_schema, store, user) = seeded().await;
    let inserts: Vec<_> = (0..300).map(|_| store.insert_job(&new_job(&user, None, 0))).collect();
    for insert in inserts {
        assert!(insert.await?.is_some());
    }
    let transactions: i64 =
        sqlx::query_scalar("SELECT COUNT(DISTINCT xmin::text) FROM jobs").fetch_one(&store.pool).await?;
    assert!(transactions <= 3, "300 queued inserts took {transactions} transactions");
    Ok(())
}

/// An insert that fails (its user does not exist) fails alone: the rest of its batch
/// is committed, though the statement they shared failed.
#[tokio::test]
async fn a_failing_insert_fails_alone() -> Result<()> {
    let (_schema, store, user) = seeded().await;
    let before: Vec<_> = (0..5).map(|_| store.insert_job(&new_job(&user, None, 0))).collect();
    let orphan = store.insert_job(&new_job("usr_nobody", None, 0));
    let after: Vec<_> = (0..5).map(|_| store.insert_job(&new_job(&user, None, 0))).collect();
    assert!(matches!(orphan.await, Err(StoreError::Database(_))));
    for insert in before.into_iter().chain(after) {
        assert!(insert.await?.is_some_and(|(_, created)| created));
    }
    assert_eq!(store.list_jobs(&JobQuery { limit: 100, ..Default::default() }).await?.len(), 10);
    Ok(())
}

/// A pull of a model is found by its input's `model` and `revision` (none meaning
/// `main`), even beside an input Postgres could not read a field of.
#[tokio::test]
async fn an_active_pull_is_found_by_model_and_revision() -> Result<()> {
    let (_schema, store, user) = seeded().await;
    let pull = |input: &str| {
        let mut job = new_job(&user, None, 0);
        job.kind = JobKind::Pull;
        job.input = Some(input.into());
        job
    };
    let odd = store.insert_job(&pull(r#"{"model": "m", "note": "\u0000"}"#)).await?;
    let main = store.insert_job(&pull(r#"{"model": "m", "revision": null}"#)).await?;
    let v2 = store.insert_job(&pull(r#"{"model": "m", "revision": "v2"}"#)).await?;
    let [odd, main, v2] = [odd, main, v2].map(|j| j.map(|(j, _)| j.id));
    let found = async |model, revision| Ok::<_, StoreError>(store.active_pull(model, revision).await?.map(|j| j.id));
    assert_eq!(found("m", None).await?, odd);
    assert_eq!(found("m", Some("main")).await?, odd);
    assert_eq!(found("m", Some("v2")).await?, v2);
    assert_eq!(found("x", None).await?, None);
    store.cancel(odd.as_deref().unwrap_or_default(), "stop").await?;
    assert_eq!(found("m", Some("main")).await?, main);
    Ok(())
}

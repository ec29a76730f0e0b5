//! The store suite: what every backend must do, written once against `dyn Store`.
//! A backend runs it with [`store_suite!`](crate::store_suite) and a [`Fixture`] that
//! opens a fresh database (and the same one again, for the tests that reopen it).

// Test code: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::{Claimant, Finish, JobQuery, NewJob, Result, Store, StoreError, StoredChunk};
use jobhost_model::{Cpus, JobKind, JobStatus, LogChunk, LogStream, Plugin, PluginKind, Usage, ids};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

mod nodes;
mod runs;

pub use nodes::*;
pub use runs::*;

/// How a fixture opens its database.
type Opener = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Arc<dyn Store>> + Send>> + Send + Sync>;

/// Opens a backend's database for one test: each call opens the same database again.
pub struct Fixture {
    open: Opener,
    /// Whatever must live as long as the database (a temporary directory).
    _keep: Box<dyn std::any::Any + Send + Sync>,
}

impl Fixture {
    /// A fixture whose `open` opens (or reopens) the test's database; `keep` lives as
    /// long as the fixture.
    pub fn new(
        open: impl Fn() -> Pin<Box<dyn Future<Output = Arc<dyn Store>> + Send>> + Send + Sync + 'static,
        keep: impl std::any::Any + Send + Sync,
    ) -> Fixture {
        Fixture { open: Box::new(open), _keep: Box::new(keep) }
    }

    /// Opens the database.
    pub async fn open(&self) -> Arc<dyn Store> {
        (self.open)().await
    }
}

/// Runs every test of the suite against `$fixture` (an async expression giving a
/// [`Fixture`]), one `#[tokio::test]` each.
#[macro_export]
macro_rules! store_suite {
    ($fixture:expr) => {
        $crate::store_suite!(@tests $fixture; an_idempotency_key_names_one_job,
            claims_take_priority_then_age_and_bump_the_attempt,
            a_stale_attempt_cannot_finish_and_an_ended_job_cannot_be_cancelled,
            orphans_are_requeued_while_attempts_remain_then_failed,
            log_chunks_read_back_in_order_from_a_sequence_number,
            a_claim_admits_only_what_fits_beside_the_running_jobs,
            queued_writes_share_a_commit_and_answer_each_op,
            a_claim_of_several_admits_exactly_what_fits,
            log_chunks_of_many_jobs_share_a_commit,
            an_early_claim_answers_before_its_commit_and_says_when_it_is_on_disk,
            a_start_and_an_end_queued_together_are_both_recorded,
            close_commits_what_was_queued_and_refuses_what_comes_after,
            fractional_cpus_are_admitted_exactly,
            output_queued_before_an_end_is_answered_before_the_end_is_observed,
            nodes_register_heartbeat_and_are_listed_newest_first,
            claims_count_each_nodes_own_jobs_and_honour_requires,
            lapsed_leases_are_taken_back_naming_the_lost_node,
            component_bytes_are_kept_by_digest,
            gpu_jobs_get_free_devices_of_their_type_and_wait_for_busy_ones,
            a_retry_holds_the_job_and_every_attempt_is_kept,
            workflows_and_runs_keep_their_keys_and_their_concurrency);
    };
    (@tests $fixture:expr; $($name:ident),*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let fx = $fixture.await;
                $crate::suite::$name(&fx).await.unwrap_or_else(|e| panic!("{e}"));
            }
        )*
    };
}

/// A database with the user `u` and the plugin `p`.
async fn seeded(fx: &Fixture) -> (Arc<dyn Store>, String) {
    let store = fx.open().await;
    let user = seed(store.as_ref()).await;
    (store, user)
}

/// Adds the user `u` and the plugin `p` to `store`; returns the user's id.
pub async fn seed(store: &dyn Store) -> String {
    let user = store.ensure_user("u", false).await.unwrap_or_else(|e| panic!("{e}"));
    store
        .put_plugin(&Plugin {
            name: "p".into(),
            digest: "sha256:00".into(),
            kind: PluginKind::Command,
            size_bytes: 1,
            installed_at: ids::now(),
            grants: vec![],
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    user
}

const ROOMY: Usage = Usage { cpus: Cpus::whole(64), memory_mb: 1 << 20 };

/// The node the suite's claims are made for.
const NODE: &str = "wrk_suite";

/// A claim for [`NODE`], without labels, within `capacity`.
fn node(capacity: Usage) -> Claimant {
    Claimant { worker_id: NODE.into(), labels: vec![], capacity, gpus: vec![] }
}

/// A pending job of `user` running `p`.
pub fn new_job(user: &str, key: Option<&str>, priority: i64) -> NewJob {
    NewJob {
        id: ids::new(ids::JOB),
        user_id: user.into(),
        kind: JobKind::Wasm,
        plugin: "p".into(),
        plugin_digest: "sha256:00".into(),
        args: "[]".into(),
        env: "{}".into(),
        input: None,
        labels: "{}".into(),
        priority,
        cpus: Cpus::ONE,
        memory_mb: 64,
        timeout_s: 10,
        client_job_id: key.map(str::to_owned),
        max_attempts: 2,
        files_id: None,
        requires: vec![],
        container: None,
        gpus: 0,
        gpu_type: None,
        grants: vec![],
        run_at: None,
        retry: None,
        task: None,
    }
}

pub async fn an_idempotency_key_names_one_job(fx: &Fixture) -> Result<()> {
    let (store, user) = seeded(fx).await;
    let (a, created_a) = store.insert_job(&new_job(&user, Some("k"), 0)).await?.expect("no upload to consume");
    let (b, created_b) = store.insert_job(&new_job(&user, Some("k"), 0)).await?.expect("no upload to consume");
    assert!(created_a && !created_b);
    assert_eq!(a.id, b.id);
    let (c, created_c) = store.insert_job(&new_job(&user, None, 0)).await?.expect("no upload to consume");
    assert!(created_c && c.id != a.id);
    Ok(())
}

pub async fn claims_take_priority_then_age_and_bump_the_attempt(fx: &Fixture) -> Result<()> {
    let (store, user) = seeded(fx).await;
    let (low, _) = store.insert_job(&new_job(&user, None, 0)).await?.expect("no upload to consume");
    let (high, _) = store.insert_job(&new_job(&user, None, 5)).await?.expect("no upload to consume");
    let first = store.claim_next("2099-01-01T00:00:00Z", &node(ROOMY)).await?.map(|j| (j.id, j.status, j.attempt));
    assert_eq!(first, Some((high.id, JobStatus::Starting, 1)));
    let second = store.claim_next("2099-01-01T00:00:00Z", &node(ROOMY)).await?.map(|j| j.id);
    assert_eq!(second, Some(low.id));
    assert!(store.claim_next("2099-01-01T00:00:00Z", &node(ROOMY)).await?.is_none());
    Ok(())
}

pub async fn a_stale_attempt_cannot_finish_and_an_ended_job_cannot_be_cancelled(fx: &Fixture) -> Result<()> {
    let (store, user) = seeded(fx).await;
    let (job, _) = store.insert_job(&new_job(&user, None, 0)).await?.expect("no upload to consume");
    let claimed = store.claim_next("2099-01-01T00:00:00Z", &node(ROOMY)).await?.map(|j| j.attempt);
    assert_eq!(claimed, Some(1));
    assert!(store.mark_running(&job.id, 1).await?.is_some());
    let done = Finish { status: JobStatus::Completed, retry_at: None, exit_code: Some(0), error: None, detail: None };
    assert!(store.finish(&job.id, 2, &done, &[]).await?.is_none(), "attempt 2 is not the current one");
    let finished = store.finish(&job.id, 1, &done, &[]).await?.map(|j| j.status);
    assert_eq!(finished, Some(JobStatus::Completed));
    assert!(store.finish(&job.id, 1, &done, &[]).await?.is_none(), "already ended");
    assert!(store.cancel(&job.id, "x").await?.is_none());
    Ok(())
}

pub async fn orphans_are_requeued_while_attempts_remain_then_failed(fx: &Fixture) -> Result<()> {
    let (store, user) = seeded(fx).await;
    let (job, _) = store.insert_job(&new_job(&user, None, 0)).await?.expect("no upload to consume");
    store.claim_next("2099-01-01T00:00:00Z", &node(ROOMY)).await?;
    assert!(store.recover_orphans("wrk_other", "host stopped").await?.is_empty(), "another node's job");
    let statuses = |jobs: Vec<jobhost_model::Job>| jobs.into_iter().map(|j| (j.id, j.status)).collect::<Vec<_>>();
    assert_eq!(statuses(store.recover_orphans(NODE, "host stopped").await?), [(job.id.clone(), JobStatus::Pending)]);
    assert_eq!(store.get_job(&job.id).await?.map(|j| j.status), Some(JobStatus::Pending));
    store.claim_next("2099-01-01T00:00:00Z", &node(ROOMY)).await?;
    assert_eq!(statuses(store.recover_orphans(NODE, "host stopped").await?), [(job.id.clone(), JobStatus::Failed)]);
    let failed = store.get_job(&job.id).await?;
    assert_eq!(failed.as_ref().map(|j| j.status), Some(JobStatus::Failed));
    assert_eq!(failed.and_then(|j| j.error).as_deref(), Some("host stopped"));
    Ok(())
}

pub async fn log_chunks_read_back_in_order_from_a_sequence_number(fx: &Fixture) -> Result<()> {
    let (store, user) = seeded(fx).await;
    let (job, _) = store.insert_job(&new_job(&user, None, 0)).await?.expect("no upload to consume");
    let chunks: Vec<StoredChunk> = (0..5)
        .map(|i| StoredChunk {
            job_id: job.id.clone(),
            chunk: LogChunk { seq: i, attempt: 1, stream: LogStream::Stdout, data: format!("{i}"), at: ids::now() },
        })
        .collect();
    store.append_logs(&chunks).await?;
    let got: Vec<u64> = store.read_logs(&job.id, 2, 2).await?.iter().map(|c| c.seq).collect();
    assert_eq!(got, [2, 3]);
    Ok(())
}

pub async fn a_claim_admits_only_what_fits_beside_the_running_jobs(fx: &Fixture) -> Result<()> {
    let (store, user) = seeded(fx).await;
    let capacity = Usage { cpus: Cpus::whole(2), memory_mb: 100 };
    let (a, _) = store.insert_job(&new_job(&user, None, 0)).await?.expect("no upload to consume"); // 64 MiB each
    let (b, _) = store.insert_job(&new_job(&user, None, 0)).await?.expect("no upload to consume");
    assert_eq!(store.claim_next("2099-01-01T00:00:00Z", &node(capacity)).await?.map(|j| j.id), Some(a.id.clone()));
    assert!(store.claim_next("2099-01-01T00:00:00Z", &node(capacity)).await?.is_none(), "128 MiB > 100");
    assert_eq!(store.usage(NODE).await?, (Usage { cpus: Cpus::ONE, memory_mb: 64 }, 1));
    let done = Finish { status: JobStatus::Completed, retry_at: None, exit_code: Some(0), error: None, detail: None };
    store.finish(&a.id, 1, &done, &[]).await?;
    assert_eq!(store.claim_next("2099-01-01T00:00:00Z", &node(capacity)).await?.map(|j| j.id), Some(b.id));
    Ok(())
}

/// Writes queued together share one transaction and still answer one by one.
pub async fn queued_writes_share_a_commit_and_answer_each_op(fx: &Fixture) -> Result<()> {
    let (store, user) = seeded(fx).await;
    // Queued before anything is awaited: they land in the writer's queue together.
    let inserts: Vec<_> = (0..50).map(|_| store.insert_job(&new_job(&user, None, 0))).collect();
    let twin_a = store.insert_job(&new_job(&user, Some("twin"), 0));
    let twin_b = store.insert_job(&new_job(&user, Some("twin"), 0));
    let claimed = store.claim("2099-01-01T00:00:00Z", &node(ROOMY), 10);
    let mut ids = Vec::new();
    for i in inserts {
        let (job, created) = i.await?.expect("no upload to consume");
        assert!(created);
        ids.push(job.id);
    }
    let (a, created_a) = twin_a.await?.expect("no upload to consume");
    let (b, created_b) = twin_b.await?.expect("no upload to consume");
    assert_eq!(a.id, b.id, "one job per idempotency key, even within one batch");
    assert!(created_a != created_b);
    // The claim was queued after the inserts, so it sees them, in queue order.
    let claimed: Vec<String> = claimed.await?.into_iter().map(|j| j.id).collect();
    assert_eq!(claimed, ids[..10]);

    // Transitions of several jobs in one batch, one of them with a stale attempt.
    let running: Vec<_> = claimed.iter().map(|id| store.mark_running(id, 1)).collect();
    let done = Finish { status: JobStatus::Completed, retry_at: None, exit_code: Some(0), error: None, detail: None };
    let stale = store.finish(&claimed[0], 2, &done, &[]);
    let ends: Vec<_> = claimed[1..].iter().map(|id| store.finish(id, 1, &done, &[])).collect();
    for r in running {
        assert_eq!(r.await?.map(|j| j.status), Some(JobStatus::Running));
    }
    assert!(stale.await?.is_none(), "attempt 2 is not the current one");
    for e in ends {
        assert_eq!(e.await?.map(|j| j.status), Some(JobStatus::Completed));
    }
    assert_eq!(store.get_job(&claimed[0]).await?.map(|j| j.status), Some(JobStatus::Running));
    Ok(())
}

/// A claim of several jobs admits a run of the queue that fits, then goes on past a
/// job too large for the room left, as single claims do.
pub async fn a_claim_of_several_admits_exactly_what_fits(fx: &Fixture) -> Result<()> {
    let (store, user) = seeded(fx).await;
    let capacity = Usage { cpus: Cpus::whole(3), memory_mb: 1 << 20 };
    let (a, _) = store.insert_job(&new_job(&user, None, 0)).await?.expect("no upload to consume");
    let (b, _) = store.insert_job(&new_job(&user, None, 0)).await?.expect("no upload to consume");
    let mut big = new_job(&user, None, 0);
    big.cpus = Cpus::whole(3);
    let (_big, _) = store.insert_job(&big).await?.expect("no upload to consume");
    let (c, _) = store.insert_job(&new_job(&user, None, 0)).await?.expect("no upload to consume");
    let (_d2, _) = store.insert_job(&new_job(&user, None, 0)).await?.expect("no upload to consume");
    let got: Vec<String> =
        store.claim("2099-01-01T00:00:00Z", &node(capacity), 10).await?.into_iter().map(|j| j.id).collect();
    assert_eq!(got, [a.id, b.id, c.id], "three 1-CPU jobs fit in 3 CPUs; the 3-CPU job waits");
    assert_eq!(store.usage(NODE).await?.0.cpus, Cpus::whole(3));
    assert!(store.claim("2099-01-01T00:00:00Z", &node(capacity), 10).await?.is_empty());
    Ok(())
}

/// Log chunks of many jobs queued together are all stored, in order per job.
pub async fn log_chunks_of_many_jobs_share_a_commit(fx: &Fixture) -> Result<()> {
    let (store, user) = seeded(fx).await;
    let (a, _) = store.insert_job(&new_job(&user, None, 0)).await?.expect("no upload to consume");
    let (b, _) = store.insert_job(&new_job(&user, None, 0)).await?.expect("no upload to consume");
    let chunk = |job: &str, seq: u64| StoredChunk {
        job_id: job.to_owned(),
        chunk: LogChunk { seq, attempt: 1, stream: LogStream::Stdout, data: format!("{seq}"), at: ids::now() },
    };
    let mut pending = Vec::new();
    for seq in 0..1500 {
        pending.push(store.append_logs(&[chunk(&a.id, seq)]));
    }
    let (to_b, dup) = (store.append_logs(&[chunk(&b.id, 0)]), store.append_logs(&[chunk(&a.id, 3)]));
    for p in pending {
        p.await?;
    }
    to_b.await?;
    assert!(dup.await.is_err(), "a chunk with a sequence number already stored is refused");
    assert_eq!(store.read_logs(&a.id, 1498, 10).await?.len(), 2);
    assert_eq!(store.read_logs(&b.id, 0, 10).await?.len(), 1);
    Ok(())
}

/// A claim is answered before its commit; its handle says when the claim is on disk,
/// and only then do other connections (readers) see the jobs taken.
pub async fn an_early_claim_answers_before_its_commit_and_says_when_it_is_on_disk(fx: &Fixture) -> Result<()> {
    let (store, user) = seeded(fx).await;
    let a = store.insert_job(&new_job(&user, None, 0)).await?.expect("inserted").0;
    let b = store.insert_job(&new_job(&user, None, 0)).await?.expect("inserted").0;
    let claimed = store.claim_early("2099-01-01T00:00:00Z", &node(ROOMY), 5).await?;
    let ids: Vec<&str> = claimed.jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, [a.id.as_str(), b.id.as_str()]);
    assert!(claimed.jobs.iter().all(|j| j.status == JobStatus::Starting && j.attempt == 1));
    claimed.committed.clone().wait().await?;
    claimed.committed.wait().await?;
    for id in [&a.id, &b.id] {
        assert_eq!(store.get_job(id).await?.map(|j| j.status), Some(JobStatus::Starting));
    }
    // A later claim sees them taken.
    assert!(store.claim_early("2099-01-01T00:00:00Z", &node(ROOMY), 5).await?.jobs.is_empty());
    Ok(())
}

/// A short run queues its `running` and its end together: one statement records both,
/// and each op still gets its own answer (the job running, then ended, with the time
/// it started).
pub async fn a_start_and_an_end_queued_together_are_both_recorded(fx: &Fixture) -> Result<()> {
    let (store, user) = seeded(fx).await;
    let job = store.insert_job(&new_job(&user, None, 0)).await?.expect("inserted").0;
    let stale = store.insert_job(&new_job(&user, None, 0)).await?.expect("inserted").0;
    let claimed = store.claim("2099-01-01T00:00:00Z", &node(ROOMY), 2).await?;
    assert_eq!(claimed.len(), 2);
    let done = Finish { status: JobStatus::Completed, retry_at: None, exit_code: Some(0), error: None, detail: None };
    let started = store.mark_running(&job.id, 1);
    let ended = store.finish(&job.id, 1, &done, &[]);
    // A stale attempt is refused on both counts.
    let stale_started = store.mark_running(&stale.id, 7);
    let stale_ended = store.finish(&stale.id, 7, &done, &[]);

    let running = started.await?.expect("the start was recorded");
    assert_eq!((running.status, running.completed_at.clone()), (JobStatus::Running, None));
    let ended = ended.await?.expect("the end was recorded");
    assert_eq!(ended.status, JobStatus::Completed);
    assert!(ended.started_at.is_some() && ended.completed_at.is_some(), "{ended:?}");
    assert_eq!(running.started_at, ended.started_at);
    assert!(stale_started.await?.is_none());
    assert!(stale_ended.await?.is_none());
    assert_eq!(store.get_job(&stale.id).await?.map(|j| (j.status, j.started_at)), Some((JobStatus::Starting, None)));
    Ok(())
}

pub async fn close_commits_what_was_queued_and_refuses_what_comes_after(fx: &Fixture) -> Result<()> {
    let (store, user) = seeded(fx).await;
    // Queued, not awaited, before the close: it must still be on disk afterwards.
    let queued = new_job(&user, None, 0);
    let insert = store.insert_job(&queued);
    store.close().await;
    assert!(insert.await?.is_some_and(|(_, created)| created));
    let late = store.insert_job(&new_job(&user, None, 0)).await;
    assert!(matches!(late, Err(StoreError::Commit(ref m)) if m.contains("closed")), "{late:?}");

    let reopened = fx.open().await;
    assert!(reopened.get_job(&queued.id).await?.is_some());
    assert_eq!(reopened.list_jobs(&JobQuery { limit: 10, ..Default::default() }).await?.len(), 1);
    Ok(())
}

/// Fractional requests add up exactly, whether a claim takes single jobs or a head of
/// the queue: four quarter-CPU jobs and a half fill 1.5 CPUs, the next quarter waits.
pub async fn fractional_cpus_are_admitted_exactly(fx: &Fixture) -> Result<()> {
    let (store, user) = seeded(fx).await;
    let capacity = Usage { cpus: Cpus::from_millis(1500), memory_mb: 1 << 20 };
    let job = |millis| {
        let mut j = new_job(&user, None, 0);
        j.cpus = Cpus::from_millis(millis);
        j
    };
    for millis in [250, 250, 500, 250, 250, 250] {
        store.insert_job(&job(millis)).await?;
    }
    // Single claims (fewer than a head claim's threshold).
    assert_eq!(store.claim("2099-01-01T00:00:00Z", &node(capacity), 2).await?.len(), 2);
    // A head claim takes the rest that fits: 0.5 + 0.25 + 0.25 more.
    let head = store.claim("2099-01-01T00:00:00Z", &node(capacity), 10).await?;
    assert_eq!(head.iter().map(|j| j.cpus.millis()).collect::<Vec<_>>(), [500, 250, 250]);
    let (used, running) = store.usage(NODE).await?;
    assert_eq!((used.cpus, running), (Cpus::from_millis(1500), 5));
    assert!(store.claim("2099-01-01T00:00:00Z", &node(capacity), 10).await?.is_empty(), "1.75 > 1.5");
    assert_eq!(store.get_job(&head[0].id).await?.map(|j| j.cpus), Some(Cpus::from_millis(500)));
    Ok(())
}

/// A job's last output and its end often share a commit: the output's answer (which
/// publishes its log events) still comes before the observer hears of the end, so a
/// subscriber sees every line of a job before its final status.
pub async fn output_queued_before_an_end_is_answered_before_the_end_is_observed(fx: &Fixture) -> Result<()> {
    let (store, user) = seeded(fx).await;
    let told = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = told.clone();
    assert!(store.observe(Box::new(move |job| seen.lock().unwrap().push(format!("{:?} {}", job.status, job.id)))));
    let done = Finish { status: JobStatus::Completed, retry_at: None, exit_code: Some(0), error: None, detail: None };
    let mut ends = Vec::new();
    for _ in 0..20 {
        let (job, _) = store.insert_job(&new_job(&user, None, 0)).await?.expect("no upload to consume");
        ends.push(job.id);
    }
    assert_eq!(
        store
            .claim("2099-01-01T00:00:00Z", &node(Usage { cpus: Cpus::from_millis(u32::MAX), memory_mb: 1 << 40 }), 20)
            .await?
            .len(),
        20
    );
    // Queued back to back without waiting, behind other writes, so most pairs land in
    // one batch.
    let mut answers = Vec::new();
    for id in &ends {
        let chunk = StoredChunk {
            job_id: id.clone(),
            chunk: LogChunk { seq: 0, attempt: 1, stream: LogStream::Stdout, data: "last line".into(), at: ids::now() },
        };
        let (log_told, id2) = (told.clone(), id.clone());
        store.append_logs_then(
            vec![chunk],
            Box::new(move |r| log_told.lock().unwrap().push(format!("log {} {id2}", r.is_ok()))),
        );
        answers.push(store.finish(id, 1, &done, &[]));
    }
    for a in answers {
        assert!(a.await?.is_some(), "the end was recorded");
    }
    let told = told.lock().unwrap().clone();
    for id in &ends {
        let at = |what: &str| told.iter().position(|t| t == &format!("{what} {id}"));
        let (log, end) = (at("log true"), at("Completed"));
        assert!(log.is_some() && end.is_some() && log < end, "{id}: the log after the end in {told:#?}");
    }
    Ok(())
}

pub async fn component_bytes_are_kept_by_digest(fx: &Fixture) -> Result<()> {
    let store = fx.open().await;
    assert!(!store.has_component("sha256:aa").await?);
    assert_eq!(store.component("sha256:aa").await?, None);
    store.put_component("sha256:aa", b"\0asm bytes").await?;
    store.put_component("sha256:aa", b"other").await?;
    assert!(store.has_component("sha256:aa").await?);
    assert_eq!(store.component("sha256:aa").await?.as_deref(), Some(&b"\0asm bytes"[..]), "the first bytes stay");
    Ok(())
}

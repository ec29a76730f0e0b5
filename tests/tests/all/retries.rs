//! Queue semantics: a failed or timed-out job runs again after its backoff while
//! attempts remain, every attempt's end is kept, and a job can be held until a time.

use crate::*;
use jobhost_model::RetryPolicy;

fn probe(args: &[&str], max_attempts: u32, backoff_s: u32) -> SubmitRequest {
    SubmitRequest {
        plugin: "probe".into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        max_attempts: Some(max_attempts),
        retry: Some(RetryPolicy { backoff_s, max_backoff_s: 10 }),
        ..SubmitRequest::default()
    }
}

/// `(status, exit code)` of each attempt of job `id`.
async fn attempts(t: &TestServer, id: &str) -> Vec<(String, Option<i32>)> {
    t.client.attempts(id).await.unwrap().into_iter().map(|a| (a.status, a.exit_code)).collect()
}

fn seconds(from: Option<&str>, to: Option<&str>) -> f64 {
    let at = |t: Option<&str>| chrono::DateTime::parse_from_rfc3339(t.unwrap_or_default()).unwrap();
    (at(to) - at(from)).num_milliseconds() as f64 / 1000.0
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_job_runs_again_until_it_succeeds_or_its_attempts_are_used() {
    let t = TestServer::start().await;
    t.install("probe", jobhost_tests::PROBE_WASM).await;
    // Fails twice, then succeeds on its third attempt.
    let job = t.client.submit(&probe(&["fail-until", "3"], 3, 0)).await.unwrap().job;
    let done = t.wait(&job.id).await;
    assert_eq!((done.status, done.attempt, done.exit_code), (JobStatus::Completed, 3, Some(0)), "{done:?}");
    let failed = ("failed".to_owned(), Some(1));
    assert_eq!(attempts(&t, &job.id).await, [failed.clone(), failed.clone(), ("completed".into(), Some(0))]);
    // Each attempt's output says which attempt wrote it, in order.
    let stdout: Vec<(u32, String)> = t
        .logs(&job.id)
        .await
        .into_iter()
        .filter(|c| c.stream == LogStream::Stdout)
        .map(|c| (c.attempt, c.data))
        .collect();
    assert_eq!(stdout, [(1, "attempt 1\n".into()), (2, "attempt 2\n".into()), (3, "attempt 3\n".into())]);

    // With two attempts it fails for good, and says why.
    let used_up = t.wait(&t.client.submit(&probe(&["fail-until", "3"], 2, 0)).await.unwrap().job.id).await;
    assert_eq!((used_up.status, used_up.attempt), (JobStatus::Failed, 2));
    assert_eq!(used_up.error.as_deref(), Some("exited with code 1"));
    assert_eq!(attempts(&t, &used_up.id).await, [failed.clone(), failed.clone()]);

    // The second attempt waits for the backoff (1 s, plus jitter).
    let backed_off = t.wait(&t.client.submit(&probe(&["fail-until", "2"], 2, 1)).await.unwrap().job.id).await;
    assert_eq!(backed_off.status, JobStatus::Completed);
    let runs = t.client.attempts(&backed_off.id).await.unwrap();
    let waited = seconds(Some(&runs[0].ended_at), runs[1].started_at.as_deref());
    assert!((1.0..3.0).contains(&waited), "the retry started {waited} s after the failure");

    // A timed-out attempt is retried too; a cancelled one never.
    let mut slow = probe(&["sleep", "30"], 2, 0);
    slow.timeout_s = Some(1);
    let slow = t.wait(&t.client.submit(&slow).await.unwrap().job.id).await;
    assert_eq!((slow.status, slow.attempt), (JobStatus::TimedOut, 2));
    let timed_out = ("timed_out".to_owned(), None);
    assert_eq!(attempts(&t, &slow.id).await, [timed_out.clone(), timed_out]);
    let long = t.client.submit(&probe(&["sleep", "30"], 3, 0)).await.unwrap().job;
    eventually(20, || async { t.client.get(&long.id).await.unwrap().status == JobStatus::Running }).await;
    t.client.cancel(&long.id).await.unwrap();
    let long = t.wait(&long.id).await;
    assert_eq!((long.status, long.attempt), (JobStatus::Cancelled, 1));
    assert_eq!(attempts(&t, &long.id).await, [("cancelled".to_owned(), None)]);

    // A job that may run once is not told its attempt.
    let once = SubmitRequest { plugin: "probe".into(), args: vec!["env-dump".into()], ..SubmitRequest::default() };
    let once = t.wait(&t.client.submit(&once).await.unwrap().job.id).await;
    assert_eq!(t.stream_text(&once.id, LogStream::Stdout).await, "env-count:0\n");

    let bad = SubmitRequest { max_attempts: Some(0), ..probe(&["noop"], 1, 0) };
    assert_eq!(t.client.submit(&bad).await.unwrap_err().kind(), Some("invalid_params"));
    let bad = probe(&["noop"], 2, 100_000);
    assert_eq!(t.client.submit(&bad).await.unwrap_err().kind(), Some("invalid_params"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delayed_job_is_held_until_its_time() {
    let t = TestServer::start().await;
    t.install("probe", jobhost_tests::PROBE_WASM).await;
    let noop = || SubmitRequest { plugin: "probe".into(), args: vec!["noop".into()], ..SubmitRequest::default() };
    let job = t.client.submit(&SubmitRequest { delay_s: Some(2), ..noop() }).await.unwrap().job;
    let held = t.client.get(&job.id).await.unwrap();
    assert_eq!(held.status, JobStatus::Pending);
    assert!(held.run_at.is_some(), "{held:?}");
    assert_contains(held.waiting.as_deref().unwrap_or_default(), "scheduled");
    let done = t.wait(&job.id).await;
    assert_eq!(done.status, JobStatus::Completed);
    let waited = seconds(Some(&done.created_at), done.started_at.as_deref());
    assert!(waited >= 2.0, "started {waited} s after its submit");

    // A time already past runs at once; a held job can be cancelled.
    let past = SubmitRequest { run_at: Some("2020-01-01T00:00:00Z".into()), ..noop() };
    let past = t.client.submit(&past).await.unwrap().job;
    assert_eq!(past.run_at, None);
    assert_eq!(t.wait(&past.id).await.status, JobStatus::Completed);
    // Any offset is read, and the time is kept in UTC.
    let at = chrono::Timelike::with_nanosecond(&(chrono::Utc::now() + chrono::Duration::days(30)), 0).unwrap();
    let in_paris = at.with_timezone(&chrono::FixedOffset::east_opt(7200).unwrap()).to_rfc3339();
    let later = t.client.submit(&SubmitRequest { run_at: Some(in_paris), ..noop() }).await.unwrap().job;
    let utc = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    assert_eq!(later.run_at.as_deref(), Some(utc.as_str()));
    assert_eq!(t.client.cancel(&later.id).await.unwrap().status, JobStatus::Cancelled);

    for (bad, field) in [
        (SubmitRequest { run_at: Some("tomorrow".into()), ..noop() }, "run_at"),
        (SubmitRequest { run_at: Some("2099-01-01T00:00:00Z".into()), delay_s: Some(1), ..noop() }, "delay_s"),
        (SubmitRequest { delay_s: Some(400 * 24 * 3600), ..noop() }, "delay_s"),
    ] {
        let e = t.client.submit(&bad).await.unwrap_err();
        assert_eq!((e.kind(), e.field()), (Some("invalid_params"), Some(field)), "{e}");
    }
}

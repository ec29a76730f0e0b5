//! Idempotency keys, cleanup, artifact reads and resource admission.

use super::*;
use jobhost_tests::PROBE_WASM;

fn keyed(key: &str) -> SubmitRequest {
    SubmitRequest {
        plugin: "probe".into(),
        args: vec!["echo".into()],
        client_job_id: Some(key.into()),
        ..SubmitRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_concurrent_duplicates_make_one_job_and_cleanup_frees_the_key() {
    let t = TestServer::start().await;
    t.install("probe", PROBE_WASM).await;
    let calls = (0..20).map(|_| {
        let client = t.client.clone();
        tokio::spawn(async move { client.submit(&keyed("same-key")).await.unwrap() })
    });
    let results: Vec<_> = futures::future::join_all(calls).await.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.created).count(), 1);
    let id = results[0].job.id.clone();
    assert!(results.iter().all(|r| r.job.id == id));
    assert_eq!(t.client.list(None, None, None).await.unwrap().jobs.len(), 1);

    let job = t.wait(&id).await;
    assert_eq!(job.status, JobStatus::Completed);
    let job_dir = t.dir.path().join("jobs").join(&id);
    assert!(job_dir.exists());
    let cleaned = t.client.cleanup(&id).await.unwrap();
    assert_eq!(cleaned.status, JobStatus::Cleaned);
    assert!(!job_dir.exists(), "files removed");
    assert!(t.client.artifacts(&id).await.unwrap().is_empty());
    let again = t.client.cleanup(&id).await.unwrap_err();
    assert_eq!(again.kind(), Some("conflict"));
    let fresh = t.client.submit(&keyed("same-key")).await.unwrap();
    assert!(fresh.created, "the key is free after cleanup");
    assert_ne!(fresh.job.id, id);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_job_cannot_be_cleaned() {
    let t = TestServer::start().await;
    t.install("probe", PROBE_WASM).await;
    let job = t.submit("probe", &["sleep", "30"]).await;
    let err = t.client.cleanup(&job.id).await.unwrap_err();
    assert_eq!(err.kind(), Some("conflict"));
    t.client.cancel(&job.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn artifacts_read_back_byte_for_byte() {
    let t = TestServer::start().await;
    t.install("probe", PROBE_WASM).await;
    let job = t.run("probe", &["write-output", "3"]).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    let listed = t.client.artifacts(&job.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    let data = t.client.read_artifact(&job.id, "big.bin").await.unwrap();
    assert_eq!(data.len() as u64, listed[0].size_bytes);
    assert_eq!(sha256_hex(&data), listed[0].sha256);
    let on_disk = std::fs::read(t.dir.path().join("jobs").join(&job.id).join("output/big.bin")).unwrap();
    assert_eq!(data, on_disk);
    let missing = t.client.read_artifact(&job.id, "../../jobhost.db").await.unwrap_err();
    assert_eq!(missing.kind(), Some("not_found"));
}

#[tokio::test(flavor = "multi_thread")]
async fn cpus_are_fractional_and_a_job_declares_a_quarter_by_default() {
    // One CPU of capacity and the default concurrency it implies: four default jobs.
    let t = TestServer::start_with(|c| {
        c.limits.capacity_cpus = 1;
        c.concurrency = c.limits.default_concurrency();
    })
    .await;
    t.install("probe", PROBE_WASM).await;
    let sleeper = |cpus: Option<Cpus>| SubmitRequest {
        plugin: "probe".into(),
        args: vec!["sleep".into(), "2".into()],
        cpus,
        ..Default::default()
    };
    let mut quarter = Vec::new();
    for _ in 0..4 {
        quarter.push(t.client.submit(&sleeper(None)).await.unwrap().job);
    }
    assert!(quarter.iter().all(|j| j.cpus == Cpus::from_millis(250)), "{quarter:?}");
    let waiting = t.client.submit(&sleeper(Cpus::from_cpus(0.5))).await.unwrap().job;
    assert_eq!(waiting.cpus, Cpus::from_millis(500));
    eventually(10, || async { t.client.usage().await.unwrap().running_jobs == 4 }).await;
    let usage = t.client.usage().await.unwrap();
    assert_eq!((usage.used_cpus, usage.capacity.cpus), (Cpus::ONE, Cpus::ONE), "four quarters fill one CPU");
    assert_eq!(t.client.get(&waiting.id).await.unwrap().status, JobStatus::Pending, "1 + 0.5 > 1");

    // On the wire: a number of CPUs, whole ones as integers.
    let resp =
        post_raw(&t, r#"{"jsonrpc":"2.0","id":1,"method":"jobs.submit","params":{"plugin":"probe","cpus":0.75}}"#)
            .await;
    assert_eq!(resp["result"]["job"]["cpus"], serde_json::json!(0.75), "{resp}");
    let resp =
        post_raw(&t, r#"{"jsonrpc":"2.0","id":2,"method":"jobs.submit","params":{"plugin":"probe","cpus":1}}"#).await;
    assert_eq!(resp["result"]["job"]["cpus"].to_string(), "1", "{resp}");
    for bad in ["0", "-1", "0.0001", "\"1\""] {
        let body =
            format!(r#"{{"jsonrpc":"2.0","id":3,"method":"jobs.submit","params":{{"plugin":"probe","cpus":{bad}}}}}"#);
        let resp = post_raw(&t, &body).await;
        assert_eq!(resp["error"]["data"]["kind"], "invalid_params", "cpus {bad}: {resp}");
        assert_eq!(resp["error"]["data"]["field"], "cpus", "cpus {bad}: {resp}");
    }
    let mut first_end = None;
    for job in &quarter {
        let done = t.wait(&job.id).await;
        assert_eq!(done.status, JobStatus::Completed);
        first_end = first_end.min(done.completed_at.clone()).or(done.completed_at);
    }
    let last = t.wait(&waiting.id).await;
    assert_eq!(last.status, JobStatus::Completed);
    assert!(last.started_at >= first_end, "the half-CPU job started once a quarter was free");
}

#[tokio::test(flavor = "multi_thread")]
async fn admission_keeps_declared_resources_within_capacity() {
    let t = TestServer::start_with(|c| {
        c.limits.capacity_memory_mb = 1000;
        c.limits.max_memory_mb = 1000;
    })
    .await;
    t.install("probe", PROBE_WASM).await;
    let too_many_cpus = SubmitRequest { plugin: "probe".into(), cpus: Some(Cpus::whole(10_000)), ..Default::default() };
    assert_eq!(t.client.submit(&too_many_cpus).await.unwrap_err().kind(), Some("limit_exceeded"));

    let big = |secs: &str| SubmitRequest {
        plugin: "probe".into(),
        args: vec!["sleep".into(), secs.into()],
        memory_mb: Some(600),
        ..Default::default()
    };
    let first = t.client.submit(&big("1")).await.unwrap().job.id;
    let second = t.client.submit(&big("1")).await.unwrap().job.id;
    eventually(10, || async { t.client.get(&first).await.unwrap().status == JobStatus::Running }).await;
    let usage = t.client.usage().await.unwrap();
    assert_eq!((usage.used_memory_mb, usage.running_jobs, usage.capacity.memory_mb), (600, 1, 1000));
    assert_eq!(t.client.get(&second).await.unwrap().status, JobStatus::Pending, "600 + 600 > 1000");
    let (a, b) = (t.wait(&first).await, t.wait(&second).await);
    assert_eq!((a.status, b.status), (JobStatus::Completed, JobStatus::Completed));
    assert!(b.started_at.unwrap() >= a.completed_at.unwrap(), "they ran one after the other");
}

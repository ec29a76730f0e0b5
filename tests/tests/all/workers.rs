//! Nodes: a server registers itself at start with what it offers, is listed `online`,
//! and reads `offline` once it has stopped; a restart on the same data dir is the same
//! node.

use crate::*;
use jobhost_model::WorkerStatus;
use jobhost_tests::PROBE_WASM;

#[tokio::test(flavor = "multi_thread")]
async fn a_node_registers_at_start_counts_its_jobs_and_a_restart_is_the_same_node() {
    let mut t = TestServer::start_with(|c| {
        c.node.name = Some("node-a".into());
        c.node.labels = vec!["linux".into(), "fast".into()];
        c.node.advertise = Some("http://127.0.0.1:7717".into());
    })
    .await;
    let first = t.server().node_id().to_owned();
    let workers = t.client.workers().await.unwrap();
    assert_eq!(workers.len(), 1, "{workers:?}");
    let me = &workers[0];
    assert_eq!((me.id.as_str(), me.name.as_str(), me.status), (first.as_str(), "node-a", WorkerStatus::Online));
    assert_eq!(me.labels, ["linux", "fast"]);
    assert_eq!(me.advertise.as_deref(), Some("http://127.0.0.1:7717"));
    assert_eq!((me.concurrency, me.version.as_str()), (2, jobhost_model::VERSION));
    assert!(me.millicpus >= 1000 && me.memory_mb > 0, "{me:?}");

    assert_eq!((me.running_jobs, me.used_millicpus), (0, 0));

    // A job it runs is counted against it while it runs, and records the node.
    t.install("probe", PROBE_WASM).await;
    let running = t.submit("probe", &["sleep", "2"]).await;
    eventually(20, || async { t.client.workers().await.unwrap()[0].running_jobs == 1 }).await;
    assert_eq!(t.client.workers().await.unwrap()[0].used_millicpus, 250);
    let done = t.wait(&running.id).await;
    assert_eq!(done.worker_id.as_deref(), Some(first.as_str()));

    // A restart on the same data dir is the same node, with what this start was given.
    t.restart_with(|_| {}).await;
    assert_eq!(t.server().node_id(), first);
    let workers = t.client.workers().await.unwrap();
    let status: Vec<(&str, WorkerStatus)> = workers.iter().map(|w| (w.id.as_str(), w.status)).collect();
    assert_eq!(status, [(first.as_str(), WorkerStatus::Online)]);
    assert!(workers[0].labels.is_empty(), "labels are what each start is given");
    let dir = t.server().data_dir.clone();
    assert_eq!(std::fs::read_to_string(dir.join("worker-id")).unwrap(), first);

    // Listing needs a token with `read`.
    let anonymous = jobhost_client::Client::new(&t.server().url()).unwrap();
    assert_eq!(anonymous.workers().await.unwrap_err().kind(), Some("unauthorized"));
}

/// Two nodes on one PostgreSQL database: an API-only node (`concurrency` 0) takes a
/// submit and runs nothing; the other node runs the job, and the API-only node reports
/// its end. (Postgres whatever the suite's backend: two nodes need one database.)
#[tokio::test(flavor = "multi_thread")]
async fn an_api_only_node_takes_submits_that_another_node_runs() {
    let db = jobhost_store::testdb::PgSchema::new().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let api_only = start_at(dir_a.path(), Some(&db), |c| c.concurrency = 0).await;
    let a = admin_client(&api_only);
    // Installed through the API-only node only: the runner fetches the bytes from the
    // database.
    let wasm = std::fs::read(PROBE_WASM).unwrap();
    a.install("probe", &wasm).await.unwrap();
    let req = SubmitRequest { plugin: "probe".into(), args: vec!["noop".into()], ..SubmitRequest::default() };
    let id = a.submit(&req).await.unwrap().job.id;
    // Alone, the API-only node leaves it pending (past its claim loop's idle poll).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(a.get(&id).await.unwrap().status, JobStatus::Pending);
    let waiting = a.get(&id).await.unwrap();
    assert_eq!(waiting.waiting, None, "nothing is required of a node: it waits for one to start");

    let runner = start_at(dir_b.path(), Some(&db), |_| {}).await;
    let b = admin_client(&runner);
    let workers = a.workers().await.unwrap();
    let concurrency = |id: &str| workers.iter().find(|w| w.id == id).map(|w| w.concurrency);
    assert_eq!((concurrency(api_only.node_id()), concurrency(runner.node_id())), (Some(0), Some(2)));

    // The job submitted before the runner started runs now; jobs.wait on the API-only
    // node hears of its end from the runner.
    let done = a.wait(&id, Duration::from_secs(30)).await.unwrap();
    assert_eq!((done.status, done.worker_id.as_deref()), (JobStatus::Completed, Some(runner.node_id())));
    let id = a.submit(&req).await.unwrap().job.id;
    let done = a.wait(&id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(b.get(&id).await.unwrap().status, JobStatus::Completed);
    assert_eq!(a.usage().await.unwrap().running_jobs, 0);
    runner.stop().await;
    api_only.stop().await;
}

//! Nodes: a server registers itself at start with what it offers, is listed `online`,
//! and reads `offline` once it has stopped.

use crate::*;
use jobhost_model::WorkerStatus;
use jobhost_tests::PROBE_WASM;

#[tokio::test(flavor = "multi_thread")]
async fn a_node_registers_at_start_and_reads_offline_after_it_stops() {
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

    // A restart is a new node; the one before stopped cleanly and says so.
    t.restart_with(|_| {}).await;
    let second = t.server().node_id().to_owned();
    assert_ne!(first, second);
    let workers = t.client.workers().await.unwrap();
    let status: Vec<(&str, WorkerStatus)> = workers.iter().map(|w| (w.id.as_str(), w.status)).collect();
    assert_eq!(status, [(second.as_str(), WorkerStatus::Online), (first.as_str(), WorkerStatus::Offline)]);
    assert!(workers[0].labels.is_empty(), "labels are what each start is given");

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
    // Each node holds the bytes of what it runs (fetching them from another node is
    // still to come): installed through both, one record.
    let wasm = std::fs::read(PROBE_WASM).unwrap();
    a.install("probe", &wasm).await.unwrap();
    let req = SubmitRequest { plugin: "probe".into(), args: vec!["noop".into()], ..SubmitRequest::default() };
    let id = a.submit(&req).await.unwrap().job.id;
    // Alone, the API-only node leaves it pending (past its claim loop's idle poll).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(a.get(&id).await.unwrap().status, JobStatus::Pending);
    // Withdrawn: a node starting now would claim it before it has the component.
    assert_eq!(a.cancel(&id).await.unwrap().status, JobStatus::Cancelled);

    let runner = start_at(dir_b.path(), Some(&db), |_| {}).await;
    let b = admin_client(&runner);
    b.install("probe", &wasm).await.unwrap();
    let workers = a.workers().await.unwrap();
    let concurrency = |id: &str| workers.iter().find(|w| w.id == id).map(|w| w.concurrency);
    assert_eq!((concurrency(api_only.node_id()), concurrency(runner.node_id())), (Some(0), Some(2)));

    let id = a.submit(&req).await.unwrap().job.id;
    eventually(30, || async { a.get(&id).await.unwrap().status.is_terminal() }).await;
    assert_eq!(a.get(&id).await.unwrap().status, JobStatus::Completed);
    assert_eq!(b.get(&id).await.unwrap().status, JobStatus::Completed);
    assert_eq!(a.usage().await.unwrap().running_jobs, 0);
    runner.stop().await;
    api_only.stop().await;
}

//! Nodes: a server registers itself at start with what it offers, is listed `online`,
//! and reads `offline` once it has stopped.

use crate::*;
use jobhost_model::WorkerStatus;

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

//! The suite's tests of nodes: registration and heartbeats, claims made for a node
//! (its own capacity, its labels, draining), lapsed leases, and GPU devices.

use super::*;

/// A node's record: registered at start, its heartbeat and status changes kept, every
/// node listed with the most recently started first.
pub async fn nodes_register_heartbeat_and_are_listed_newest_first(fx: &Fixture) -> Result<()> {
    use jobhost_model::{Worker, WorkerStatus};
    let store = fx.open().await;
    let node = |id: &str, started: &str| Worker {
        id: id.into(),
        name: format!("node-{id}"),
        labels: vec!["linux".into(), "gpu".into()],
        status: WorkerStatus::Online,
        version: "1.2.3".into(),
        advertise: Some("http://127.0.0.1:7717".into()),
        concurrency: 8,
        millicpus: 2000,
        memory_mb: 4096,
        started_at: started.into(),
        last_seen: started.into(),
        running_jobs: 0,
        used_millicpus: 0,
        used_memory_mb: 0,
        gpus: vec![],
        gpu_usage: vec![],
    };
    let (old, new) = (node("wrk_a", "2026-01-01T00:00:00.000Z"), node("wrk_b", "2026-01-02T00:00:00.000Z"));
    // A node started again under its id (its data dir keeps it) replaces its record.
    store.register_worker(&Worker { name: "before".into(), status: WorkerStatus::Offline, ..old.clone() }).await?;
    store.register_worker(&old).await?;
    store.register_worker(&new).await?;
    assert_eq!(store.heartbeat("wrk_b", "2026-01-02T00:00:05.000Z").await?, Some(WorkerStatus::Online));
    assert!(store.set_worker_status("wrk_a", WorkerStatus::Draining, "2026-01-01T00:00:30.000Z").await?);
    assert_eq!(store.heartbeat("wrk_a", "2026-01-01T00:00:40.000Z").await?, Some(WorkerStatus::Draining));
    assert!(store.set_worker_status("wrk_a", WorkerStatus::Offline, "2026-01-01T00:01:00.000Z").await?);
    assert_eq!(store.heartbeat("wrk_missing", "2026-01-02T00:00:05.000Z").await?, None);
    let listed = store.list_workers().await?;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0], Worker { last_seen: "2026-01-02T00:00:05.000Z".into(), ..new });
    assert_eq!(
        listed[1],
        Worker { status: WorkerStatus::Offline, last_seen: "2026-01-01T00:01:00.000Z".into(), ..old }
    );
    Ok(())
}

pub async fn claims_count_each_nodes_own_jobs_and_honour_requires(fx: &Fixture) -> Result<()> {
    let (store, user) = seeded(fx).await;
    let one_cpu = Usage { cpus: Cpus::ONE, memory_mb: 1024 };
    let on = |id: &str, labels: &[&str]| Claimant {
        worker_id: id.into(),
        labels: labels.iter().map(|l| l.to_string()).collect(),
        capacity: one_cpu,
        gpus: vec![],
    };
    let (a, _) = store.insert_job(&new_job(&user, None, 0)).await?.expect("no upload"); // 1 CPU each
    let (b, _) = store.insert_job(&new_job(&user, None, 0)).await?.expect("no upload");
    let gpu = NewJob { requires: vec!["fast".into(), "gpu".into()], ..new_job(&user, None, 9) };
    let (gpu, _) = store.insert_job(&gpu).await?.expect("no upload");
    assert_eq!(gpu.requires, ["fast", "gpu"]);
    // The highest-priority job needs labels node 1 lacks: it takes the next one.
    let first = store.claim_next("2099-01-01T00:00:00Z", &on("wrk_1", &["gpu"])).await?.expect("a job fits");
    assert_eq!((first.id.as_str(), first.worker_id.as_deref()), (a.id.as_str(), Some("wrk_1")));
    assert!(store.claim_next("2099-01-01T00:00:00Z", &on("wrk_1", &["gpu"])).await?.is_none(), "node 1 is full");
    // Node 2's capacity is its own: node 1's job does not count against it.
    let second = store.claim("2099-01-01T00:00:00Z", &on("wrk_2", &[]), 10).await?;
    assert_eq!(second.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), [b.id.as_str()]);
    assert_eq!(store.usage("wrk_1").await?.1, 1);
    assert_eq!(store.usage("wrk_2").await?, (Usage { cpus: Cpus::ONE, memory_mb: 64 }, 1));
    // A node recorded draining claims nothing.
    store.register_worker(&worker("wrk_3", "node-3")).await?;
    store.set_worker_status("wrk_3", jobhost_model::WorkerStatus::Draining, &ids::now()).await?;
    assert!(store.claim("2099-01-01T00:00:00Z", &on("wrk_3", &["gpu", "fast"]), 5).await?.is_empty());
    store.set_worker_status("wrk_3", jobhost_model::WorkerStatus::Online, &ids::now()).await?;
    let third = store.claim_next("2099-01-01T00:00:00Z", &on("wrk_3", &["gpu", "fast", "x"])).await?;
    assert_eq!(third.map(|j| (j.id, j.worker_id)), Some((gpu.id.clone(), Some("wrk_3".into()))));
    assert_eq!(store.get_job(&gpu.id).await?.and_then(|j| j.worker_id).as_deref(), Some("wrk_3"));
    Ok(())
}

pub async fn lapsed_leases_are_taken_back_naming_the_lost_node(fx: &Fixture) -> Result<()> {
    let (store, user) = seeded(fx).await;
    let now = ids::now();
    store.register_worker(&worker("wrk_lost", "node-b")).await?;
    let on = |id: &str| Claimant { worker_id: id.into(), labels: vec![], capacity: ROOMY, gpus: vec![] };
    let (job, _) = store.insert_job(&new_job(&user, None, 1)).await?.expect("no upload");
    let (live, _) = store.insert_job(&new_job(&user, None, 0)).await?.expect("no upload");
    assert!(store.claim_next("2000-01-01T00:00:00.000Z", &on("wrk_lost")).await?.is_some());
    assert!(store.claim_next("2099-01-01T00:00:00.000Z", &on("wrk_live")).await?.is_some());
    let moved = store.recover_lapsed(&now).await?;
    assert_eq!(
        moved.iter().map(|j| (j.id.as_str(), j.status)).collect::<Vec<_>>(),
        [(job.id.as_str(), JobStatus::Pending)]
    );
    assert_eq!(store.get_job(&live.id).await?.map(|j| j.status), Some(JobStatus::Starting), "its lease holds");
    // The second attempt is the last (max_attempts 2): it fails, naming the node.
    assert!(store.claim_next("2000-01-01T00:00:00.000Z", &on("wrk_lost")).await?.is_some());
    let moved = store.recover_lapsed(&ids::now()).await?;
    assert_eq!(moved.len(), 1);
    assert_eq!((moved[0].status, moved[0].error.as_deref()), (JobStatus::Failed, Some("worker node-b lost")));
    assert!(store.recover_lapsed(&ids::now()).await?.is_empty());
    Ok(())
}

pub async fn gpu_jobs_get_free_devices_of_their_type_and_wait_for_busy_ones(fx: &Fixture) -> Result<()> {
    let (store, user) = seeded(fx).await;
    let gpu = |index: u32, gpu_type: &str| jobhost_model::Gpu {
        index,
        uuid: format!("GPU-{index}"),
        gpu_type: gpu_type.into(),
        memory_mb: 1024,
    };
    let with_gpus = Claimant { gpus: vec![gpu(0, "h100"), gpu(1, "h100"), gpu(2, "l4")], ..node(ROOMY) };
    let mut registered = worker(NODE, "gpu-node");
    registered.gpus = with_gpus.gpus.clone();
    store.register_worker(&registered).await?;
    let asks = |gpus: u32, gpu_type: Option<&str>, priority: i64| NewJob {
        gpus,
        gpu_type: gpu_type.map(str::to_owned),
        ..new_job(&user, None, priority)
    };
    let (two_h100, _) = store.insert_job(&asks(2, Some("h100"), 5)).await?.expect("no upload");
    let (one_h100, _) = store.insert_job(&asks(1, Some("h100"), 4)).await?.expect("no upload");
    let (any_one, _) = store.insert_job(&asks(1, None, 3)).await?.expect("no upload");
    let (plain, _) = store.insert_job(&new_job(&user, None, 0)).await?.expect("no upload");
    // A node without GPUs takes only the job that needs none.
    let elsewhere = Claimant { worker_id: "wrk_plain".into(), ..node(ROOMY) };
    let took = store.claim("2099-01-01T00:00:00Z", &elsewhere, 10).await?;
    assert_eq!(took.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), [plain.id.as_str()]);
    // Both H100s go to the first job; the second H100 job waits; the untyped job
    // takes what is left (the L4).
    let took = store.claim("2099-01-01T00:00:00Z", &with_gpus, 10).await?;
    let devices =
        |jobs: &[jobhost_model::Job]| jobs.iter().map(|j| (j.id.clone(), j.gpu_devices.clone())).collect::<Vec<_>>();
    assert_eq!(devices(&took), [(two_h100.id.clone(), vec![0, 1]), (any_one.id.clone(), vec![2])]);
    assert_eq!(store.get_job(&two_h100.id).await?.map(|j| j.gpu_devices), Some(vec![0, 1]), "recorded");
    assert!(store.claim("2099-01-01T00:00:00Z", &with_gpus, 10).await?.is_empty(), "every device is held");
    let held = store.held_gpus(Some(NODE)).await?;
    assert_eq!(
        held.get(NODE).map(|d| d.iter().copied().collect::<std::collections::BTreeSet<_>>()),
        Some([0, 1, 2].into())
    );
    let listed = store.list_workers().await?.into_iter().find(|w| w.id == NODE).expect("registered");
    assert_eq!(
        listed.gpu_usage,
        [
            jobhost_model::GpuUsage { gpu_type: "h100".into(), used: 2, total: 2 },
            jobhost_model::GpuUsage { gpu_type: "l4".into(), used: 1, total: 1 }
        ]
    );
    // The end of a run frees its devices for the job that waited.
    let done = Finish { status: JobStatus::Completed, retry_at: None, exit_code: Some(0), error: None, detail: None };
    store.finish(&two_h100.id, 1, &done, &[]).await?;
    let took = store.claim("2099-01-01T00:00:00Z", &with_gpus, 10).await?;
    assert_eq!(devices(&took), [(one_h100.id.clone(), vec![0])]);
    Ok(())
}

/// An online node `id` named `name`, registered now.
fn worker(id: &str, name: &str) -> jobhost_model::Worker {
    let now = ids::now();
    jobhost_model::Worker {
        id: id.into(),
        name: name.into(),
        labels: vec![],
        status: jobhost_model::WorkerStatus::Online,
        version: "0".into(),
        advertise: None,
        concurrency: 1,
        millicpus: 1000,
        memory_mb: 1024,
        started_at: now.clone(),
        last_seen: now,
        running_jobs: 0,
        used_millicpus: 0,
        used_memory_mb: 0,
        gpus: vec![],
        gpu_usage: vec![],
    }
}

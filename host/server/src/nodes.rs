//! This process as a node: every `jobhost serve` registers itself in the `workers`
//! table at start, under the id its data dir keeps (`<data>/worker-id`, made at the
//! first start: a restart is the same node, and takes back what it left running),
//! renews `last_seen` every [`HEARTBEAT_SECS`](jobhost_model::HEARTBEAT_SECS), and
//! marks itself `offline` when it stops. A node killed without a word stops
//! heartbeating and reads `offline` to everyone after
//! [`MISSED_HEARTBEATS`](jobhost_model::MISSED_HEARTBEATS) of them
//! ([`Worker::seen_within`]); its jobs' leases lapse, and every heartbeat of every
//! node takes back the jobs whose lease lapsed.
//!
//! Drain: `workers.drain` records `draining`; the node reads it back with its next
//! heartbeat, stops claiming ([`Nodes::draining`]), and the server stops once its
//! runs have ended.

use crate::jobs::Jobs;
use jobhost_model::{Error, HEARTBEAT_SECS, Worker, WorkerStatus, ids};
use jobhost_store::Store;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The file in the data dir that keeps the node's id.
pub const WORKER_ID_FILE: &str = "worker-id";

/// What a node says of itself at start.
#[derive(Debug, Clone, Default)]
pub struct NodeConfig {
    /// Its name [default: the host name].
    pub name: Option<String>,
    /// What jobs may require of it.
    pub labels: Vec<String>,
    /// The address other nodes reach it at.
    pub advertise: Option<String>,
    /// Its GPUs as declared (`--gpus FILE`); none: what NVML finds, if anything.
    pub gpus: Option<Vec<jobhost_model::Gpu>>,
}

/// The id of the node whose data dir is `data`: read from [`WORKER_ID_FILE`], or made
/// and written there (atomically) at the first start.
pub fn worker_id(data: &Path) -> std::io::Result<String> {
    let path = data.join(WORKER_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(id) if ids::has_prefix(id.trim(), "wrk_") => return Ok(id.trim().to_owned()),
        Ok(_) => return Err(std::io::Error::other(format!("{} does not hold a worker id", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let id = ids::new("wrk_");
    let mut file = tempfile::NamedTempFile::new_in(data)?;
    std::io::Write::write_all(&mut file, id.as_bytes())?;
    file.persist(&path).map_err(|e| e.error)?;
    Ok(id)
}

/// This node and the view of all nodes; cheap to clone.
#[derive(Clone, Debug)]
pub struct Nodes {
    store: Arc<dyn Store>,
    id: Arc<str>,
    /// Cancelled once this node drains: it claims no more.
    draining: CancellationToken,
}

impl Nodes {
    /// Registers node `id`, `online`, offering `concurrency` jobs at once within
    /// `millicpus` and `memory_mb`.
    pub async fn register(
        store: Arc<dyn Store>,
        id: &str,
        config: &NodeConfig,
        concurrency: usize,
        millicpus: u32,
        memory_mb: u64,
    ) -> Result<Nodes, Error> {
        let now = ids::now();
        let worker = Worker {
            id: id.to_owned(),
            name: config.name.clone().unwrap_or_else(host_name),
            labels: config.labels.clone(),
            status: WorkerStatus::Online,
            version: jobhost_model::VERSION.into(),
            advertise: config.advertise.clone(),
            concurrency: u32::try_from(concurrency).unwrap_or(u32::MAX),
            millicpus,
            memory_mb,
            started_at: now.clone(),
            last_seen: now,
            running_jobs: 0,
            used_millicpus: 0,
            used_memory_mb: 0,
            gpus: config.gpus.clone().unwrap_or_default(),
            gpu_usage: Vec::new(),
        };
        store.register_worker(&worker).await?;
        Ok(Nodes { store, id: worker.id.into(), draining: CancellationToken::new() })
    }

    /// Cancelled once this node is draining.
    pub fn draining(&self) -> &CancellationToken {
        &self.draining
    }

    /// Asks node `id` to drain: it takes no new job and stops once its runs end.
    /// `not_found` for an unknown node; `conflict` for one that is offline.
    pub async fn drain(&self, id: &str) -> Result<Worker, Error> {
        let worker = self
            .list()
            .await?
            .into_iter()
            .find(|w| w.id == id)
            .ok_or_else(|| Error::NotFound(format!("worker {id:?} not found")))?;
        match worker.status {
            WorkerStatus::Offline => Err(Error::Conflict(format!("worker {} ({id}) is offline", worker.name))),
            WorkerStatus::Draining => Ok(worker),
            WorkerStatus::Online => {
                self.store.set_worker_status(id, WorkerStatus::Draining, &ids::now()).await?;
                if *self.id == *id {
                    self.draining.cancel();
                }
                Ok(Worker { status: WorkerStatus::Draining, ..worker })
            }
        }
    }

    /// This node's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Renews `last_seen` until `shutdown`, learning whether this node was asked to
    /// drain, and takes back the jobs whose lease lapsed (with `jobs`). A failed
    /// heartbeat is logged and the next one tried: a database away for a moment must
    /// not stop the node.
    pub async fn heartbeat(self, jobs: Jobs, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(HEARTBEAT_SECS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            let beat = self.store.heartbeat(&self.id, &ids::now()).await;
            if beat.is_ok() {
                jobs.metrics().heartbeat();
            }
            match beat {
                Ok(Some(WorkerStatus::Draining)) if !self.draining.is_cancelled() => {
                    tracing::info!(worker = %self.id, "draining: no new jobs; stopping once the running ones end");
                    self.draining.cancel();
                }
                Ok(Some(_)) => {}
                Ok(None) => tracing::warn!(worker = %self.id, "this node's record is gone; heartbeat not kept"),
                Err(e) => tracing::warn!(worker = %self.id, error = %e, "heartbeat failed; trying again"),
            }
            match jobs.recover_lapsed().await {
                Ok((0, 0)) => {}
                Ok((requeued, failed)) => {
                    tracing::warn!(requeued, failed, "took back jobs whose node was lost (their lease lapsed)")
                }
                Err(e) => tracing::warn!(error = %e, "taking back jobs whose lease lapsed"),
            }
        }
    }

    /// Resolves once this node drained: it was asked to, and no run is left.
    pub async fn drained(&self, jobs: &Jobs) {
        self.draining.cancelled().await;
        while jobs.running_count() > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Marks this node `offline` (a clean stop).
    pub async fn leave(&self) {
        if let Err(e) = self.store.set_worker_status(&self.id, WorkerStatus::Offline, &ids::now()).await {
            tracing::warn!(worker = %self.id, error = %e, "marking this node offline");
        }
    }

    /// Every node, the most recently started first, each `offline` once it has not
    /// been heard from for three heartbeats.
    pub async fn list(&self) -> Result<Vec<Worker>, Error> {
        let now = chrono::Utc::now();
        Ok(self.store.list_workers().await?.into_iter().map(|w| w.seen_within(now)).collect())
    }
}

/// The machine's host name (`/etc/hostname`, else `HOSTNAME`), else `jobhost`.
fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "jobhost".into())
}

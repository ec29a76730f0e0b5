//! This process as a node: every `jobhost serve` registers itself in the `workers`
//! table at start (a new id each start), renews `last_seen` every
//! [`HEARTBEAT_SECS`](jobhost_model::HEARTBEAT_SECS), and marks itself `offline` when
//! it stops. A node killed without a word stops heartbeating and reads `offline` to
//! everyone after [`MISSED_HEARTBEATS`](jobhost_model::MISSED_HEARTBEATS) of them
//! ([`Worker::seen_within`]); taking its jobs back is the work of leases (issue 17).

use jobhost_model::{Error, HEARTBEAT_SECS, Worker, WorkerStatus, ids};
use jobhost_store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What a node says of itself at start.
#[derive(Debug, Clone, Default)]
pub struct NodeConfig {
    /// Its name [default: the host name].
    pub name: Option<String>,
    /// What jobs may require of it.
    pub labels: Vec<String>,
    /// The address other nodes reach it at.
    pub advertise: Option<String>,
}

/// This node and the view of all nodes; cheap to clone.
#[derive(Clone, Debug)]
pub struct Nodes {
    store: Arc<dyn Store>,
    id: Arc<str>,
}

impl Nodes {
    /// Registers this node, `online`, offering `concurrency` jobs at once within
    /// `millicpus` and `memory_mb`.
    pub async fn register(
        store: Arc<dyn Store>,
        config: &NodeConfig,
        concurrency: usize,
        millicpus: u32,
        memory_mb: u64,
    ) -> Result<Nodes, Error> {
        let now = ids::now();
        let worker = Worker {
            id: ids::new("wrk_"),
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
        };
        store.register_worker(&worker).await?;
        Ok(Nodes { store, id: worker.id.into() })
    }

    /// This node's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Renews `last_seen` until `shutdown`. A failed heartbeat is logged and the next
    /// one tried: a database away for a moment must not stop the node.
    pub async fn heartbeat(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(HEARTBEAT_SECS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            match self.store.heartbeat(&self.id, &ids::now()).await {
                Ok(true) => {}
                Ok(false) => tracing::warn!(worker = %self.id, "this node's record is gone; heartbeat not kept"),
                Err(e) => tracing::warn!(worker = %self.id, error = %e, "heartbeat failed; trying again"),
            }
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

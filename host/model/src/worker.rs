//! Nodes: every `jobhost serve` on one database registers as a worker, says it is alive
//! with a heartbeat, and is listed with what it offers. The record is the node's own
//! account; whether it is still heard from is judged when it is read
//! ([`Worker::seen_within`]), so a node killed without a word reads `offline` once its
//! heartbeats stop.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How often a node renews its `last_seen`.
pub const HEARTBEAT_SECS: u64 = 5;
/// A node not heard from for this many heartbeats is shown `offline`.
pub const MISSED_HEARTBEATS: u64 = 3;

/// Most labels a job may require.
pub const MAX_REQUIRES: usize = 16;

/// Why `label` is not a label, if it is not: a node's labels and a job's `requires`
/// are 1–64 characters without whitespace or commas (the CLI takes them comma-separated).
pub fn label_error(label: &str) -> Option<String> {
    let bad = label.is_empty() || label.chars().count() > 64 || label.chars().any(|c| c.is_whitespace() || c == ',');
    bad.then(|| format!("{label:?} is not a label (1 to 64 characters, no spaces or commas)"))
}

/// What a node is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkerStatus {
    /// Serving and taking jobs.
    Online,
    /// Taking no new job; exits once its running jobs end.
    Draining,
    /// Stopped, or not heard from for [`MISSED_HEARTBEATS`] heartbeats.
    Offline,
}

impl WorkerStatus {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerStatus::Online => "online",
            WorkerStatus::Draining => "draining",
            WorkerStatus::Offline => "offline",
        }
    }

    /// The status named `s`.
    pub fn parse(s: &str) -> Option<WorkerStatus> {
        match s {
            "online" => Some(WorkerStatus::Online),
            "draining" => Some(WorkerStatus::Draining),
            "offline" => Some(WorkerStatus::Offline),
            _ => None,
        }
    }
}

/// One node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Worker {
    /// `wrk_…`, made at a data dir's first start and kept in it (`<data>/worker-id`):
    /// a restart is the same node.
    pub id: String,
    /// The node's name (`--name`, default the host name).
    pub name: String,
    /// What jobs may require of it (`--labels`).
    pub labels: Vec<String>,
    /// What it is doing; `offline` once it has not been heard from for
    /// [`MISSED_HEARTBEATS`] heartbeats.
    pub status: WorkerStatus,
    /// The jobhost version it runs.
    pub version: String,
    /// The address other nodes reach it at (`--advertise`).
    pub advertise: Option<String>,
    /// Most jobs it runs at once (0: an API-only node).
    pub concurrency: u32,
    /// CPUs it offers jobs, in thousandths.
    pub millicpus: u32,
    /// Memory it offers jobs, MiB.
    pub memory_mb: u64,
    /// When it started, RFC 3339.
    pub started_at: String,
    /// Its last heartbeat, RFC 3339.
    pub last_seen: String,
    /// Jobs it has `starting` or `running` now.
    #[serde(default)]
    pub running_jobs: u64,
    /// CPUs those jobs declared, in thousandths.
    #[serde(default)]
    pub used_millicpus: u32,
    /// Memory those jobs declared, MiB.
    #[serde(default)]
    pub used_memory_mb: u64,
    /// Its GPUs (found through NVML or declared with `--gpus FILE`).
    #[serde(default)]
    pub gpus: Vec<crate::Gpu>,
    /// Its GPUs by type: held by its running jobs, and in all.
    #[serde(default)]
    pub gpu_usage: Vec<crate::GpuUsage>,
}

impl Worker {
    /// Whether it has every label of `required`.
    pub fn has_labels(&self, required: &[String]) -> bool {
        required.iter().all(|l| self.labels.contains(l))
    }

    /// The record as a reader at `now` should see it: a node whose last heartbeat is
    /// older than [`MISSED_HEARTBEATS`] heartbeats reads `offline`, whatever it last said.
    pub fn seen_within(mut self, now: chrono::DateTime<chrono::Utc>) -> Worker {
        let stale = chrono::DateTime::parse_from_rfc3339(&self.last_seen).map_or(true, |seen| {
            now.signed_duration_since(seen).num_seconds() >= (HEARTBEAT_SECS * MISSED_HEARTBEATS) as i64
        });
        if stale {
            self.status = WorkerStatus::Offline;
        }
        self
    }
}

/// `workers.list` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct WorkerList {
    /// Every node, the newest first.
    pub workers: Vec<Worker>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(last_seen: &str) -> Worker {
        Worker {
            id: "wrk_1".into(),
            name: "a".into(),
            labels: vec![],
            status: WorkerStatus::Online,
            version: "0".into(),
            advertise: None,
            concurrency: 1,
            millicpus: 1000,
            memory_mb: 1,
            started_at: last_seen.into(),
            last_seen: last_seen.into(),
            running_jobs: 0,
            used_millicpus: 0,
            used_memory_mb: 0,
            gpus: vec![],
            gpu_usage: vec![],
        }
    }

    #[test]
    fn a_node_not_heard_from_for_three_heartbeats_reads_offline() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:01:00Z").unwrap().to_utc();
        assert_eq!(worker("2026-01-01T00:00:50Z").seen_within(now).status, WorkerStatus::Online);
        assert_eq!(worker("2026-01-01T00:00:45Z").seen_within(now).status, WorkerStatus::Offline);
        assert_eq!(worker("not a time").seen_within(now).status, WorkerStatus::Offline);
        for s in [WorkerStatus::Online, WorkerStatus::Draining, WorkerStatus::Offline] {
            assert_eq!(WorkerStatus::parse(s.as_str()), Some(s));
        }
    }
}

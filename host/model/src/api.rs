//! The request and result types of the JSON-RPC API that the server and its clients
//! share. Every field name here is part of the public contract (DESIGN.md).

use crate::access::{TokenInfo, User};
use crate::job::{Artifact, Cpus, Job, LogChunk, Plugin};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The longest `jobs.wait` a client may ask for in one call.
pub const MAX_WAIT: Duration = Duration::from_secs(3600);
/// `jobs.wait` without `timeout_s`.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(60);
/// Page size of `jobs.list` and `jobs.logs` without `limit`, and their maximum.
pub const DEFAULT_PAGE: u32 = 100;
/// The largest page a client may ask for.
pub const MAX_PAGE: u32 = 1000;

/// `jobs.submit` parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// Installed component to run (or `image` instead).
    #[serde(default)]
    pub plugin: String,
    /// argv after argv[0].
    #[serde(default)]
    pub args: Vec<String>,
    /// A container image to run instead of a component: the job is of kind
    /// `container` and runs `command` in it (the image must be on the machine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// A container job's command (the image's default when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Replaces a container image's entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// A container job's working directory [default: `/work`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// The job's whole environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Input for plugins of world `job`.
    #[serde(default)]
    pub input: Option<serde_json::Value>,
    /// A finalized upload to consume: its files are the job's `/input`.
    #[serde(default)]
    pub files_id: Option<String>,
    /// CPUs the job needs, in steps of 0.001 (default: the server's, 0.25).
    #[serde(default)]
    pub cpus: Option<Cpus>,
    /// Memory limit, MiB.
    #[serde(default)]
    pub memory_mb: Option<u32>,
    /// Wall-clock limit, s.
    #[serde(default)]
    pub timeout_s: Option<u32>,
    /// Idempotency key.
    #[serde(default)]
    pub client_job_id: Option<String>,
    /// Free-form labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Higher runs first.
    #[serde(default)]
    pub priority: Option<i64>,
    /// Labels a node must have, all of them, to run the job (`jobhost serve --labels`);
    /// each 1–64 characters without spaces or commas, at most 16. While no online node has them the job
    /// stays pending, and `jobs.get` says so in `waiting`.
    #[serde(default)]
    pub requires: Vec<String>,
    /// GPUs the job needs: that many devices of the node that runs it, held by it
    /// alone while it runs (a container sees them; more than any node has is
    /// `limit_exceeded`, busy ones make it wait).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    /// The type its GPUs must be (`h100`); only with `gpus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_type: Option<String>,
    /// Attempts the job may have (1–100) [default: the server's `--max-attempts`]: one
    /// that fails or times out runs again, after `retry`'s backoff, while attempts
    /// remain, and so does one whose node was lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// How long to wait between attempts [default: 1 s doubling up to 300 s].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<crate::RetryPolicy>,
    /// Hold the job until this time (RFC 3339); it is not claimed earlier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<String>,
    /// Hold the job this many seconds from now (instead of `run_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_s: Option<u32>,
}

/// `jobs.attempts` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AttemptList {
    /// Every ended attempt, the first first.
    pub attempts: Vec<crate::JobAttempt>,
}

/// `jobs.submit` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Submitted {
    /// The job (the existing one when the idempotency key matched).
    pub job: Job,
    /// Whether this call created it.
    pub created: bool,
}

/// One page of `jobs.list`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JobPage {
    /// Newest first.
    pub jobs: Vec<Job>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// `jobs.stats` result: the caller's jobs (everyone's for an admin) over the last
/// hour, a minute at a time, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JobStats {
    /// The last 60 minutes, the current one last.
    pub minutes: Vec<MinuteStats>,
    /// Jobs pending now (held ones included).
    pub queue_depth: u64,
    /// Jobs starting or running now.
    pub running: u64,
}

/// One minute of [`JobStats`]. Counts jobs submitted in the last hour; one waiting
/// since before then shows in `queue_depth` only.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MinuteStats {
    /// The minute's start, RFC 3339 UTC.
    pub at: String,
    /// Jobs submitted in it.
    pub submitted: u64,
    /// Jobs that left the queue in it (started, or ended before starting).
    pub started: u64,
    /// Jobs that ended in it.
    pub ended: u64,
    /// Jobs pending at its end.
    pub queue_depth: u64,
}

/// `tokens.ticket` result: what opens one WebSocket where no `Authorization` header
/// can be set (a browser's), as `ws://host/?ticket=…`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Ticket {
    /// `jht_…`; good for one WebSocket.
    pub ticket: String,
    /// Seconds it stays usable.
    pub expires_in_s: u64,
}

/// One page of `uploads.list`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct UploadPage {
    /// Newest first.
    pub uploads: Vec<crate::Upload>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// One page of `jobs.logs`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LogPage {
    /// In order.
    pub chunks: Vec<LogChunk>,
    /// Pass as `since_seq` to continue.
    pub next_seq: u64,
    /// The job has ended and these are its last chunks.
    pub eof: bool,
}

/// `resources.usage` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ResourceUsage {
    /// CPUs declared by jobs starting or running.
    pub used_cpus: Cpus,
    /// Memory declared by jobs starting or running, MiB.
    pub used_memory_mb: u64,
    /// Jobs starting or running.
    pub running_jobs: u64,
    /// What jobs may declare in all at once.
    pub capacity: Usage,
    /// This node's GPUs by type: held by running jobs, and in all.
    #[serde(default)]
    pub gpus: Vec<crate::GpuUsage>,
}

/// Resources declared by jobs (or available to them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Usage {
    /// CPUs.
    pub cpus: Cpus,
    /// Memory, MiB.
    pub memory_mb: u64,
}

/// `system.health` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    /// Always `ok` when the server answers.
    pub status: String,
    /// The server's version.
    pub version: String,
}

/// `plugins.list` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PluginList {
    /// Every installed component, by name.
    pub plugins: Vec<Plugin>,
}

/// `plugins.install` result: the component as installed, and whether this install
/// compiled it (`false` when the server had these bytes compiled already).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Installed {
    /// The installed component.
    #[serde(flatten)]
    pub plugin: Plugin,
    /// Whether the server compiled it for this install.
    pub compiled: bool,
}

/// `artifacts.list` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ArtifactList {
    /// The job's artifacts, by name.
    pub artifacts: Vec<Artifact>,
}

/// `artifacts.read` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ArtifactData {
    /// The bytes read, base64 (standard alphabet, padded).
    pub data_base64: String,
    /// Whether the read reached the end of the artifact.
    pub eof: bool,
}

/// `users.list` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct UserList {
    /// The users the caller may see.
    pub users: Vec<User>,
}

/// `tokens.list` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TokenList {
    /// The tokens, without their secrets.
    pub tokens: Vec<TokenInfo>,
}

/// What one sweep removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GcReport {
    /// Uploads that expired unused (their files deleted).
    pub uploads_expired: u64,
    /// Ended jobs past the retention that were cleaned.
    pub jobs_cleaned: u64,
    /// Log chunks of those jobs deleted.
    pub log_chunks_pruned: u64,
}

//! The records of the jobs domain as clients see them: every field name here is part
//! of the public JSON-RPC contract (DESIGN.md), so renaming one is a breaking change.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where a job is in its life. One vocabulary for the store, the API and the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Recorded and queued, not yet claimed.
    Pending,
    /// Claimed by a runner that is preparing its sandbox.
    Starting,
    /// The component is executing.
    Running,
    /// Ended with success (exit code 0 or `ok` from `run`).
    Completed,
    /// Ended with a non-zero exit code, a trap, an error or a limit.
    Failed,
    /// Stopped at its wall-clock deadline.
    TimedOut,
    /// Stopped (or never started) because a client asked.
    Cancelled,
    /// Its files are being removed.
    Cleaning,
    /// Its files are gone; its record and idempotency key are released.
    Cleaned,
}

impl JobStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [JobStatus; 9] = [
        Self::Pending,
        Self::Starting,
        Self::Running,
        Self::Completed,
        Self::Failed,
        Self::TimedOut,
        Self::Cancelled,
        Self::Cleaning,
        Self::Cleaned,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
            Self::Cleaning => "cleaning",
            Self::Cleaned => "cleaned",
        }
    }

    /// Parses a stored or wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the job has stopped running for good (cleanup states included).
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Pending | Self::Starting | Self::Running)
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far a running job has come, as it last reported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Progress {
    /// Units done so far.
    pub done: u64,
    /// Units in all, when the job knows.
    pub total: Option<u64>,
    /// What it is doing now.
    pub message: Option<String>,
}

/// A job record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Job {
    /// `job_` + UUIDv7.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// `wasm` for installed components (plugins and commands); later `agent`, `pull`, ….
    pub kind: String,
    /// Name of the installed component it runs.
    pub plugin: String,
    /// Digest of the component as it was when the job was submitted.
    pub plugin_digest: String,
    /// Current status.
    pub status: JobStatus,
    /// argv after argv[0] (which is the plugin name).
    pub args: Vec<String>,
    /// The job's whole environment.
    pub env: BTreeMap<String, String>,
    /// Free-form input handed to plugins of world `job`.
    pub input: Option<serde_json::Value>,
    /// Free-form labels for the client's own bookkeeping.
    pub labels: BTreeMap<String, String>,
    /// Higher runs first.
    pub priority: i64,
    /// CPUs the job declared.
    pub cpus: u32,
    /// Memory limit of the job's linear memories, MiB.
    pub memory_mb: u32,
    /// Wall-clock limit, seconds.
    pub timeout_s: u32,
    /// The caller's idempotency key, if any.
    pub client_job_id: Option<String>,
    /// How many times a runner claimed it.
    pub attempt: u32,
    /// How many claims it may have before a lost run fails it.
    pub max_attempts: u32,
    /// Exit code of a command component (0 for a plugin that returned `ok`).
    pub exit_code: Option<i32>,
    /// Why it failed, timed out or was cancelled.
    pub error: Option<String>,
    /// Last reported progress.
    pub progress: Option<Progress>,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// When a runner started it.
    pub started_at: Option<String>,
    /// When it reached a terminal status.
    pub completed_at: Option<String>,
    /// The upload whose files the job sees at `/input`.
    #[serde(default)]
    pub files_id: Option<String>,
    /// The chain of causes behind `error`, one per line, outermost first (a plugin's
    /// error context, or the component's backtrace when it trapped).
    #[serde(default)]
    pub detail: Option<String>,
}

/// Which output stream a log chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    /// The guest's stdout.
    Stdout,
    /// The guest's stderr.
    Stderr,
    /// Lines written through the `log` interface of world `job`.
    Log,
    /// Notes from the host itself (e.g. that output was truncated).
    System,
}

impl LogStream {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
            Self::Log => "log",
            Self::System => "system",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Stdout, Self::Stderr, Self::Log, Self::System].into_iter().find(|st| st.as_str() == s)
    }
}

/// One piece of a job's output, in the order the guest produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LogChunk {
    /// Position in the job's log, from 0, across all streams.
    pub seq: u64,
    /// Where it came from.
    pub stream: LogStream,
    /// The text (invalid UTF-8 is replaced with U+FFFD).
    pub data: String,
    /// When it was captured.
    pub at: String,
}

/// A file the job left in `/output`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Artifact {
    /// Path relative to `/output`, with `/` separators; unique per job.
    pub name: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Hex SHA-256 of the content.
    pub sha256: String,
}

/// What an installed component is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PluginKind {
    /// A component of world `job` (exports `run`).
    Plugin,
    /// A standard WASI 0.2 command (exports `wasi:cli/run`).
    Command,
}

impl PluginKind {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plugin => "plugin",
            Self::Command => "command",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "plugin" => Some(Self::Plugin),
            "command" => Some(Self::Command),
            _ => None,
        }
    }
}

/// An installed component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Plugin {
    /// The name jobs refer to.
    pub name: String,
    /// `sha256:<hex>` of the wasm bytes.
    pub digest: String,
    /// Plugin or command.
    pub kind: PluginKind,
    /// Size of the wasm.
    pub size_bytes: u64,
    /// When this digest was installed under the name.
    pub installed_at: String,
}

/// What a job event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The job's status changed (or, first on a subscription, what it is now).
    Status,
    /// The job reported progress.
    Progress,
    /// The job wrote output.
    Log,
    /// The subscriber fell behind and missed events; read `jobs.logs` to catch up.
    Lagged,
}

/// One event on `jobs.subscribe`, in order per job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JobEvent {
    /// What happened.
    pub kind: EventKind,
    /// The job it concerns (empty for `lagged`).
    pub job_id: String,
    /// The job's status when the event was sent.
    pub status: Option<JobStatus>,
    /// Progress, on `progress` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// The chunk, on `log` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogChunk>,
    /// How many events were missed, on `lagged` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed: Option<u64>,
}

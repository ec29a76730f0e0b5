//! The records of the jobs domain as clients see them: every field name here is part
//! of the public JSON-RPC contract (DESIGN.md), so renaming one is a breaking change.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An amount of CPU, in whole thousandths of a CPU ("millicores"). On the wire it is
/// a JSON number of CPUs: `1`, `0.25`, `2.5`; at most three decimals, not negative
/// (a usage can be 0; a job's request is checked to be more than 0 where it is made).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cpus(u32);

impl Cpus {
    /// One whole CPU.
    pub const ONE: Cpus = Cpus(1000);

    /// `millis` thousandths of a CPU.
    pub const fn from_millis(millis: u32) -> Cpus {
        Cpus(millis)
    }

    /// `n` whole CPUs (saturating).
    pub const fn whole(n: u32) -> Cpus {
        Cpus(n.saturating_mul(1000))
    }

    /// In thousandths of a CPU.
    pub const fn millis(self) -> u32 {
        self.0
    }

    /// A number of CPUs as a client writes it: `None` unless it has at most three
    /// decimals, is not negative, and is representable.
    pub fn from_cpus(cpus: f64) -> Option<Cpus> {
        let millis = cpus * 1000.0;
        let whole = millis.round();
        let exact = (millis - whole).abs() < 1e-6;
        (exact && whole >= 0.0 && whole <= f64::from(u32::MAX)).then_some(Cpus(whole as u32))
    }
}

impl std::fmt::Display for Cpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_multiple_of(1000) {
            write!(f, "{}", self.0 / 1000)
        } else {
            write!(f, "{}", f64::from(self.0) / 1000.0)
        }
    }
}

impl Serialize for Cpus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Whole CPUs stay integers on the wire.
        if self.0.is_multiple_of(1000) {
            s.serialize_u32(self.0 / 1000)
        } else {
            s.serialize_f64(f64::from(self.0) / 1000.0)
        }
    }
}

impl<'de> Deserialize<'de> for Cpus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Cpus, D::Error> {
        let cpus = f64::deserialize(d)?;
        Cpus::from_cpus(cpus).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{cpus} is not a number of CPUs: not negative, in steps of 0.001 (a thousandth of a CPU)"
            ))
        })
    }
}

impl JsonSchema for Cpus {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Cpus".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "number",
            "minimum": 0,
            "description": "CPUs, in steps of 0.001 (e.g. 0.25, 1, 2.5)"
        })
    }
}

/// What a job is, which decides the executor that runs it and what it is granted
/// beyond the sandbox (see `RunGrant`): the scheduler asks by kind and knows no kind's
/// special needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// An installed component (a plugin of world `job` or a WASI command).
    Wasm,
    /// A model download, run by the built-in puller.
    Pull,
    /// A command in a container image, run by the container engine.
    Container,
}

impl JobKind {
    /// Every kind.
    pub const ALL: [JobKind; 3] = [JobKind::Wasm, JobKind::Pull, JobKind::Container];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wasm => "wasm",
            Self::Pull => "pull",
            Self::Container => "container",
        }
    }

    /// Whether jobs of this kind run an installed component (`plugin_digest`).
    pub fn runs_component(self) -> bool {
        matches!(self, Self::Wasm | Self::Pull)
    }

    /// Parses a stored or wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    /// What runs it and what it is granted (see [`JobKind`]).
    pub kind: JobKind,
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
    /// CPUs the job declared (a share of the capacity it is admitted against).
    pub cpus: Cpus,
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
    /// Labels a node must have, all of them, to run it (`requires` at submit).
    #[serde(default)]
    pub requires: Vec<String>,
    /// The node (`workers.list` id) that took its latest attempt; none before a claim.
    #[serde(default)]
    pub worker_id: Option<String>,
    /// What a container job runs (`kind` `container`; `plugin` is its image and `args`
    /// its command then); none for other kinds.
    #[serde(default)]
    pub container: Option<ContainerSpec>,
    /// The engine's id of the container its latest attempt ran in (container jobs).
    #[serde(default)]
    pub container_id: Option<String>,
    /// GPUs the job asked for (`gpus` at submit; 0: none).
    #[serde(default)]
    pub gpus: u32,
    /// The type its GPUs must be, when it said (`gpu_type` at submit).
    #[serde(default)]
    pub gpu_type: Option<String>,
    /// The device indices its latest attempt holds on its node (empty before a claim
    /// and for a job without GPUs); the containers it runs see exactly these.
    #[serde(default)]
    pub gpu_devices: Vec<u32>,
    /// What its plugin was granted at install when the job was submitted.
    #[serde(default)]
    pub grants: Vec<PluginGrant>,
    /// A pending job held until this time (a delayed job, or a retry backing off);
    /// none once it may be claimed.
    #[serde(default)]
    pub run_at: Option<String>,
    /// How a failed or timed-out attempt is retried while attempts remain.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// The workflow run it is a task of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Its step in that run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Its index in that step, from 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_index: Option<u32>,
    /// Why a pending job is not starting, when the host can tell (`jobs.get` only):
    /// "no online worker has labels [gpu]".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

/// How a job that failed or timed out is retried while it has attempts left
/// (`max_attempts`): after `backoff_s` × 2^(attempt − 1) seconds, at most
/// `max_backoff_s`, plus up to a quarter more at random (jitter, so retries of many
/// jobs failing together spread out). A cancelled job is never retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// The first wait, seconds (0: retry at once).
    #[serde(default = "RetryPolicy::default_backoff_s")]
    pub backoff_s: u32,
    /// The longest wait, seconds.
    #[serde(default = "RetryPolicy::default_max_backoff_s")]
    pub max_backoff_s: u32,
}

impl RetryPolicy {
    fn default_backoff_s() -> u32 {
        1
    }

    fn default_max_backoff_s() -> u32 {
        300
    }

    /// The wait before attempt `attempt + 1`, given `jitter` in `[0, 1)`.
    pub fn delay(&self, attempt: u32, jitter: f64) -> std::time::Duration {
        let doublings = attempt.saturating_sub(1).min(32);
        let base = f64::from(self.backoff_s) * 2f64.powi(doublings as i32);
        let capped = base.min(f64::from(self.max_backoff_s.max(self.backoff_s)));
        std::time::Duration::from_secs_f64(capped * (1.0 + jitter.clamp(0.0, 1.0) / 4.0))
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { backoff_s: Self::default_backoff_s(), max_backoff_s: Self::default_max_backoff_s() }
    }
}

/// One attempt of a job: how it ended (`jobs.attempts`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JobAttempt {
    /// 1-based.
    pub attempt: u32,
    /// `completed`, `failed`, `timed_out`, `cancelled`, or `lost` (its node was lost or
    /// stopped while it ran).
    pub status: String,
    /// Its exit code, when it had one.
    pub exit_code: Option<i32>,
    /// Why it did not complete.
    pub error: Option<String>,
    /// When it started running, if it did.
    pub started_at: Option<String>,
    /// When it ended.
    pub ended_at: String,
    /// The node that ran it.
    pub worker_id: Option<String>,
}

/// A container job's image and how its command starts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    /// The image, as the engine names it (`busybox:latest`, an id); run only when it is
    /// on the machine already (no pull).
    pub image: String,
    /// Replaces the image's entrypoint.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// The command's working directory [default: `/work`].
    #[serde(default)]
    pub workdir: Option<String>,
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
    /// Position in the job's log, across all streams and attempts: attempt `n`
    /// writes from `(n − 1) × 2^32` on, so the attempts follow each other in order.
    pub seq: u64,
    /// The attempt that wrote it (1-based; from `seq`).
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// Where it came from.
    pub stream: LogStream,
    /// The text (invalid UTF-8 is replaced with U+FFFD).
    pub data: String,
    /// When it was captured.
    pub at: String,
}

fn first_attempt() -> u32 {
    1
}

/// The first `seq` of attempt `attempt`'s log chunks.
pub fn first_seq_of_attempt(attempt: u32) -> u64 {
    u64::from(attempt.saturating_sub(1)) << 32
}

/// The attempt whose log chunk has `seq`.
pub fn attempt_of_seq(seq: u64) -> u32 {
    u32::try_from(seq >> 32).unwrap_or(u32::MAX - 1) + 1
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
    /// What an admin granted it beyond the sandbox at install.
    #[serde(default)]
    pub grants: Vec<PluginGrant>,
}

/// What an admin may grant a plugin at install (`plugins.install {grants}`), beyond
/// the sandbox every job has; a job of the plugin carries the grants it had at submit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PluginGrant {
    /// Running containers through `jobhost:plugin/executor` (without it every call
    /// answers `denied`).
    Containers,
}

impl PluginGrant {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Containers => "containers",
        }
    }

    /// Parses a stored or wire name.
    pub fn parse(s: &str) -> Option<Self> {
        (s == "containers").then_some(Self::Containers)
    }
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

#[cfg(test)]
mod cpus_tests {
    use super::Cpus;

    #[test]
    fn cpus_take_thousandths_and_print_whole_ones_as_integers() {
        assert_eq!(Cpus::from_cpus(0.25), Some(Cpus::from_millis(250)));
        assert_eq!(Cpus::from_cpus(0.001), Some(Cpus::from_millis(1)));
        assert_eq!(Cpus::from_cpus(2.5), Some(Cpus::from_millis(2500)));
        assert_eq!(Cpus::from_cpus(0.0), Some(Cpus::from_millis(0)), "a usage can be nothing");
        for bad in [-1.0, -0.001, 0.0004, 0.2501, f64::NAN, f64::INFINITY, 1e12] {
            assert_eq!(Cpus::from_cpus(bad), None, "{bad}");
        }
        assert_eq!(serde_json::to_string(&Cpus::whole(2)).ok().as_deref(), Some("2"));
        assert_eq!(serde_json::to_string(&Cpus::from_millis(250)).ok().as_deref(), Some("0.25"));
        assert_eq!(serde_json::from_str::<Cpus>("1").ok(), Some(Cpus::ONE));
        assert_eq!(serde_json::from_str::<Cpus>("0.125").ok(), Some(Cpus::from_millis(125)));
        assert_eq!(serde_json::from_str::<Cpus>("0").ok(), Some(Cpus::from_millis(0)));
        assert!(serde_json::from_str::<Cpus>("-0.5").is_err());
        assert!(serde_json::from_str::<Cpus>("\"1\"").is_err());
        assert_eq!(Cpus::from_millis(1500).to_string(), "1.5");
        assert_eq!(Cpus::whole(3).to_string(), "3");
    }
}

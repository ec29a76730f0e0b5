//! What a job is granted beyond its sandbox. Each job kind maps to one [`RunGrant`],
//! provided by the service that owns the kind (model pulls: the hub's hosts, the model
//! cache, native transfers); the scheduler hands it to the executor and knows nothing
//! of what a kind needs. An ordinary job's grant is the default: nothing.

use crate::job::{Cpus, LogStream};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

/// What one job may reach over HTTP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpGrant {
    /// Hosts the job may send requests to: `name` allows every port of that host,
    /// `name:port` only that port. Empty: no outbound HTTP at all.
    pub allow_hosts: Vec<String>,
    /// `Authorization` to add to requests whose authority is exactly `.0` (host:port
    /// as in the URL, or host alone for the scheme's default port).
    pub authorization: Option<(String, String)>,
}

impl HttpGrant {
    /// Whether a request to `host` (lower-case, without brackets) on `port` is allowed.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        self.allow_hosts.iter().any(|entry| {
            let entry = entry.trim().to_ascii_lowercase();
            match entry.rsplit_once(':') {
                Some((h, p)) if p.parse::<u16>().is_ok() && !h.contains(':') => h == host && p == port.to_string(),
                _ => entry == host,
            }
        })
    }
}

/// A host directory shown to the guest read-write at `guest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The directory on the host.
    pub host: PathBuf,
    /// Where the guest sees it (absolute).
    pub guest: String,
}

/// Everything a job of some kind gets besides the sandbox; the default grants nothing.
#[derive(Debug, Clone, Default)]
pub struct RunGrant {
    /// Hosts the job may reach over `wasi:http` (none for an ordinary job).
    pub http: Arc<HttpGrant>,
    /// Directories shown to the guest read-write instead of the sandbox's `/input`,
    /// `/output` and `/work` (the model puller sees only `/models`). Empty: the
    /// sandbox's three.
    pub mounts: Vec<Mount>,
    /// Whether the job may use `jobhost:plugin/transfer` (the model puller). Only
    /// honoured with `mounts`: its writes are not counted against an `/output` quota.
    pub transfer: bool,
    /// What runs the containers the job starts through `jobhost:plugin/executor`
    /// (its plugin was granted `containers`); none: every call answers `denied`.
    pub containers: Option<Arc<dyn ContainerLauncher>>,
}

impl RunGrant {
    /// Whether the job's effects stay inside its own directory (no shared mounts, no
    /// containers): such a run may start before its claim is committed.
    pub fn is_confined(&self) -> bool {
        self.mounts.is_empty() && self.containers.is_none()
    }
}

/// A container a component asks to run through `jobhost:plugin/executor`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerRequest {
    /// The image (on the machine already: nothing is pulled).
    pub image: String,
    /// The command (the image's default when empty).
    pub command: Vec<String>,
    /// Replaces the image's entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// The working directory [default: `/work`].
    pub workdir: Option<String>,
    /// The container's whole environment.
    pub env: Vec<(String, String)>,
    /// Seconds before the container is killed; none: as long as the calling job runs.
    pub timeout_s: Option<u32>,
}

/// The job a component's container runs for, and what the container shares with it:
/// its `/work` (read-write, so files flow both ways), its `/input` (read-only), its
/// CPUs, memory limit and GPU devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerCaller {
    /// The calling job.
    pub job_id: String,
    /// Its attempt.
    pub attempt: u32,
    /// The host directory the job sees as `/work`.
    pub work_dir: PathBuf,
    /// The host directory the job sees as `/input`.
    pub input_dir: PathBuf,
    /// The job's CPUs.
    pub cpus: Cpus,
    /// The job's memory limit, MiB.
    pub memory_mb: u32,
    /// The GPU devices the job holds.
    pub gpu_devices: Vec<u32>,
}

/// Why a component's container did not run to an exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchError {
    /// No container engine can run it on this node.
    Unavailable(String),
    /// It could not be created or started, or was stopped at its deadline.
    Failed(String),
}

/// Where a component's container writes its output: the calling job's log.
pub type ContainerOutput = Arc<dyn Fn(LogStream, &[u8]) + Send + Sync>;

/// What the launch of one container resolves to: its exit code, or why it has none.
pub type Launch = Pin<Box<dyn Future<Output = Result<i32, LaunchError>> + Send>>;

/// Runs the containers components start (`jobhost:plugin/executor`). Dropping the
/// future stops and removes the container: a calling job that ends, is cancelled or
/// times out leaves nothing running.
pub trait ContainerLauncher: std::fmt::Debug + Send + Sync {
    /// Runs `request` for `caller` to its exit, its output going to `output`.
    fn launch(&self, caller: ContainerCaller, request: ContainerRequest, output: ContainerOutput) -> Launch;
}

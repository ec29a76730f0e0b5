//! What a job is granted beyond its sandbox. Each job kind maps to one [`RunGrant`],
//! provided by the service that owns the kind (model pulls: the hub's hosts, the model
//! cache, native transfers); the scheduler hands it to the executor and knows nothing
//! of what a kind needs. An ordinary job's grant is the default: nothing.

use std::path::PathBuf;
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
}

impl RunGrant {
    /// Whether the job's effects stay inside its own directory (no shared mounts):
    /// such a run may start before its claim is committed.
    pub fn is_confined(&self) -> bool {
        self.mounts.is_empty()
    }
}

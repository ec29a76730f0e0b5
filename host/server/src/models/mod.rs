//! Models: pulls from a Hugging Face compatible hub, and the local cache they fill.
//!
//! A pull is a job of kind `pull` that runs the built-in `model-pull` component
//! (`plugins/model-pull`, embedded in this binary and installed under that reserved
//! name the first time it is needed). The scheduler grants a `pull` job what no other
//! job gets: outbound HTTP to the hub and its file hosts ([`HubConfig::grant`]) and the
//! models directory, read-write, as `/models`. The hub's token is added by the host
//! to requests to the hub's own host only; it is never stored on the job.
//!
//! The cache is `DATA_DIR/models` in the Hugging Face layout
//! (`models--{org}--{name}/{blobs,snapshots,refs}`); [`Models::list`] reads it from
//! disk, so it also shows models put there by other tools.

use crate::jobs::{Caller, Error, Jobs, Result, SubmitRequest, Submitted};
use crate::plugins::Plugins;
use jobhost_model::Job;
use jobhost_model::{HttpGrant, JobKind, Mount, RunGrant};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The built-in puller, built from `plugins/model-pull` by `build.rs`.
pub static MODEL_PULL_WASM: &[u8] = include_bytes!(env!("MODEL_PULL_WASM"));

pub use crate::plugins::PULLER;

/// Guest path of the models directory in a pull job.
pub const MODELS_GUEST_DIR: &str = "/models";

/// The public hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Hosts huggingface.co redirects file downloads to (LFS and Xet storage).
pub const DEFAULT_FILE_HOSTS: &[&str] = &[
    "cdn-lfs.huggingface.co",
    "cdn-lfs-us-1.huggingface.co",
    "cdn-lfs-eu-1.huggingface.co",
    "cdn-lfs.hf.co",
    "cdn-lfs-us-1.hf.co",
    "cdn-lfs-eu-1.hf.co",
    "cas-bridge.xethub.hf.co",
    "cas-server.xethub.hf.co",
    "transfer.xethub.hf.co",
];

/// A pull may run this long by default (large models on slow links).
pub const PULL_TIMEOUT_S: u32 = 24 * 3600;

/// Where models come from: `HF_ENDPOINT`, `HF_TOKEN` and `JOBHOST_HUB_FILE_HOSTS`, as
/// `jobhost serve` reads them.
#[derive(Clone, PartialEq, Eq)]
pub struct HubConfig {
    /// Base URL of the hub.
    pub endpoint: String,
    /// Sent as `Authorization: Bearer …` to the hub's host only.
    pub token: Option<String>,
    /// Hosts the hub may redirect downloads to, besides itself.
    pub file_hosts: Vec<String>,
}

impl std::fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubConfig")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("file_hosts", &self.file_hosts)
            .finish()
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            endpoint: DEFAULT_ENDPOINT.to_owned(),
            token: None,
            file_hosts: DEFAULT_FILE_HOSTS.iter().map(|h| (*h).to_owned()).collect(),
        }
    }
}

impl HubConfig {
    /// The defaults, changed by `HF_ENDPOINT`, `HF_TOKEN` and `JOBHOST_HUB_FILE_HOSTS`
    /// (comma-separated host names added to the defaults) as found by `var`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> HubConfig {
        let mut hub = HubConfig::default();
        if let Some(e) = var("HF_ENDPOINT").filter(|e| !e.trim().is_empty()) {
            hub.endpoint = e.trim().trim_end_matches('/').to_owned();
        }
        hub.token = var("HF_TOKEN").map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
        if let Some(extra) = var("JOBHOST_HUB_FILE_HOSTS") {
            hub.file_hosts.extend(extra.split(',').map(str::trim).filter(|h| !h.is_empty()).map(str::to_owned));
        }
        hub
    }

    /// `host[:port]` of the endpoint, as it appears in its URL.
    pub fn authority(&self) -> Option<String> {
        let rest = self.endpoint.split_once("://").map_or(self.endpoint.as_str(), |(_, r)| r);
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        (!authority.is_empty()).then(|| authority.to_ascii_lowercase())
    }

    /// What a pull job may reach: the hub (its host, and only its port when the
    /// endpoint names one) and the file hosts; the token for the hub's authority.
    pub fn grant(&self) -> HttpGrant {
        let mut allow_hosts = self.file_hosts.clone();
        if let Some(authority) = self.authority() {
            allow_hosts.insert(0, authority.replace(['[', ']'], ""));
        }
        let authorization =
            self.token.as_ref().zip(self.authority()).map(|(token, authority)| (authority, format!("Bearer {token}")));
        HttpGrant { allow_hosts, authorization }
    }
}

/// `models.pull` parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PullRequest {
    /// `org/name`.
    pub model: String,
    /// Branch, tag or commit (default `main`).
    #[serde(default)]
    pub revision: Option<String>,
    /// Which variant to take where the repo has several (e.g. `q4_k_m` among GGUF files).
    #[serde(default)]
    pub quantize: Option<String>,
    /// Handed to an inference executor when one is configured; recorded either way.
    #[serde(default)]
    pub init: Option<serde_json::Value>,
    /// Only files matching one of these globs (`*.json`, `onnx/`).
    #[serde(default)]
    pub allow_patterns: Vec<String>,
}

/// One entry of `models.list`: a snapshot in the cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ModelEntry {
    /// `org/name`.
    pub repo: String,
    /// The ref that points at the snapshot (the commit itself when none does).
    pub revision: String,
    /// The snapshot's commit.
    pub commit: String,
    /// Bytes of the files in the snapshot.
    pub size: u64,
    /// The snapshot directory on the server.
    pub path: String,
}

/// The models service; cheap to clone.
#[derive(Debug, Clone)]
pub struct Models {
    jobs: Jobs,
    plugins: Plugins,
    hub: HubConfig,
    models_dir: PathBuf,
    /// Held while the puller is (re)installed, so concurrent pulls install it once.
    install: Arc<tokio::sync::Mutex<()>>,
}

impl Models {
    /// The service over the cache at `models_dir`.
    pub fn new(jobs: Jobs, plugins: Plugins, hub: HubConfig, models_dir: PathBuf) -> Models {
        Models { jobs, plugins, hub, models_dir, install: Arc::default() }
    }

    /// What the scheduler grants pull jobs: the hub and its file hosts, the model cache at
    /// `/models` (and nothing else), native transfers.
    pub fn grant(&self) -> RunGrant {
        RunGrant {
            http: Arc::new(self.hub.grant()),
            mounts: vec![Mount { host: self.models_dir.clone(), guest: MODELS_GUEST_DIR.to_owned() }],
            transfer: true,
            containers: None,
        }
    }

    /// Installs the embedded puller unless the same build is installed already.
    pub async fn ensure_puller(&self) -> Result<()> {
        let _guard = self.install.lock().await;
        let digest = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(MODEL_PULL_WASM)));
        let installed = self.plugins.list().await?.into_iter().any(|p| p.name == PULLER && p.digest == digest);
        if !installed {
            self.plugins.install_reserved(PULLER, MODEL_PULL_WASM.to_vec()).await?;
        }
        Ok(())
    }

    /// Compiles the embedded puller (or loads it from the cache on disk) without
    /// installing it, so the first pull finds it ready; run at start, in the background.
    pub async fn prepare_puller(&self) -> Result<()> {
        self.plugins.prepare(MODEL_PULL_WASM.to_vec()).await
    }

    /// Starts a pull; a pull of the same model and revision that has not ended is
    /// returned instead (`created: false`), and one of another revision or user is a
    /// conflict.
    pub async fn pull(&self, caller: &Caller, req: PullRequest) -> Result<Submitted> {
        validate_model(&req.model)?;
        let revision = req.revision.clone().unwrap_or_else(|| "main".to_owned());
        if revision.is_empty()
            || revision.len() > 200
            || revision.split('/').any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(Error::invalid("revision", "must be a branch, tag or commit name"));
        }
        // Two pulls of one repo would write the same partial blobs: while one runs, the
        // same request gets it back and any other is refused.
        if let Some(job) = self.jobs.active_pull(&req.model).await? {
            let running_rev = job.input.as_ref().and_then(|i| i.get("revision")).and_then(|r| r.as_str());
            if running_rev == Some(revision.as_str()) && (caller.is_admin || job.user_id == caller.user_id) {
                return Ok(Submitted { job, created: false });
            }
            return Err(Error::Conflict(format!(
                "{} is being pulled (job {}, revision {}); wait for it to end or cancel it",
                req.model,
                job.id,
                running_rev.unwrap_or("?")
            )));
        }
        self.ensure_puller().await?;
        let input = serde_json::json!({
            "endpoint": self.hub.endpoint,
            "model": req.model,
            "revision": revision,
            "quantize": req.quantize,
            "init": req.init,
            "allow_patterns": req.allow_patterns,
            "executor": false,
        });
        let submit = SubmitRequest {
            plugin: PULLER.to_owned(),
            input: Some(input),
            timeout_s: Some(PULL_TIMEOUT_S.min(self.jobs.limits().max_timeout_s)),
            labels: [("model".to_owned(), req.model.clone())].into(),
            ..SubmitRequest::default()
        };
        self.jobs.submit_kind(caller, submit, JobKind::Pull).await
    }

    /// Every snapshot in the cache.
    pub async fn list(&self) -> Result<Vec<ModelEntry>> {
        let dir = self.models_dir.clone();
        tokio::task::spawn_blocking(move || scan(&dir))
            .await
            .map_err(|e| Error::Internal(format!("listing models: {e}")))?
            .map_err(|e| {
                tracing::error!(error = %e, "listing models");
                Error::Internal("listing models failed".into())
            })
    }

    /// Removes a model from the cache (every revision). A model being pulled is a
    /// conflict.
    pub async fn delete(&self, model: &str) -> Result<()> {
        validate_model(model)?;
        if let Some(job) = self.jobs.active_pull(model).await? {
            return Err(Error::Conflict(format!("{model} is being pulled by job {}; cancel it first", job.id)));
        }
        let dir = self.models_dir.join(repo_folder(model));
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::NotFound(format!("model {model} is not in the cache")))
            }
            Err(e) => {
                tracing::error!(error = %e, dir = %dir.display(), "deleting a model");
                Err(Error::Internal(format!("deleting {model} failed")))
            }
        }
    }

    /// Deletes pull jobs that ended more than `older_than_days` days ago, with their
    /// files; returns how many. Only admins may prune.
    pub async fn prune(&self, caller: &Caller, older_than_days: u32) -> Result<u64> {
        if !caller.is_admin {
            return Err(Error::Forbidden("pruning pull jobs needs an admin".into()));
        }
        let cutoff = chrono::Utc::now() - chrono::Duration::days(i64::from(older_than_days));
        let cutoff = cutoff.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        self.jobs.prune(JobKind::Pull, &cutoff).await
    }

    /// The pull job `id` (any job the caller may see).
    pub async fn job(&self, caller: &Caller, id: &str) -> Result<Job> {
        self.jobs.get(caller, id).await
    }
}

/// `models--org--name`.
pub fn repo_folder(model: &str) -> String {
    format!("models--{}", model.replace('/', "--"))
}

/// `org/name` (or a bare `name`), of `[A-Za-z0-9._-]`, no `.`/`..` parts.
fn validate_model(model: &str) -> Result<()> {
    let parts: Vec<&str> = model.split('/').collect();
    let ok = !model.is_empty()
        && model.len() <= 200
        && parts.len() <= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && *p != "."
                && *p != ".."
                && !p.contains("--")
                && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
    if ok { Ok(()) } else { Err(Error::invalid("model", "must be a repository name like org/name")) }
}

/// Reads the cache: one entry per snapshot, named by the refs pointing at it.
fn scan(models_dir: &Path) -> std::io::Result<Vec<ModelEntry>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(models_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    let mut repos: Vec<(String, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        if let Some(rest) = name.strip_prefix("models--") {
            repos.push((rest.replace("--", "/"), entry.path()));
        }
    }
    repos.sort();
    for (repo, dir) in repos {
        let mut refs: Vec<(String, String)> = Vec::new();
        let refs_dir = dir.join("refs");
        for entry in walkdir::WalkDir::new(&refs_dir).into_iter().filter_map(|e| e.ok()) {
            if !entry.file_type().is_file() {
                continue;
            }
            let Ok(rel) = entry.path().strip_prefix(&refs_dir) else { continue };
            let Some(name) = rel.to_str() else { continue };
            if let Ok(commit) = std::fs::read_to_string(entry.path()) {
                refs.push((name.to_owned(), commit.trim().to_owned()));
            }
        }
        let Ok(snapshots) = std::fs::read_dir(dir.join("snapshots")) else { continue };
        let mut commits: Vec<(String, PathBuf)> = snapshots
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(|n| (n.to_owned(), e.path())))
            .collect();
        commits.sort();
        for (commit, path) in commits {
            let size = walkdir::WalkDir::new(&path)
                .follow_links(true)
                .into_iter()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_file())
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum();
            let mut names: Vec<&str> = refs.iter().filter(|(_, c)| *c == commit).map(|(r, _)| r.as_str()).collect();
            if names.is_empty() {
                names.push(&commit);
            }
            for revision in names {
                out.push(ModelEntry {
                    repo: repo.clone(),
                    revision: revision.to_owned(),
                    commit: commit.clone(),
                    size,
                    path: path.display().to_string(),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_settings_come_from_variables() {
        let vars = |k: &str| match k {
            "HF_ENDPOINT" => Some("http://127.0.0.1:8080/".to_owned()),
            "HF_TOKEN" => Some("hf_secret".to_owned()),
            "JOBHOST_HUB_FILE_HOSTS" => Some("127.0.0.2, files.example".to_owned()),
            _ => None,
        };
        let hub = HubConfig::from_vars(vars);
        assert_eq!(hub.endpoint, "http://127.0.0.1:8080");
        let grant = hub.grant();
        assert!(grant.allows("127.0.0.1", 8080));
        assert!(!grant.allows("127.0.0.1", 7717), "only the hub's port of its host");
        assert!(grant.allows("127.0.0.2", 9999));
        assert!(grant.allows("files.example", 443));
        assert!(grant.allows("cdn-lfs.huggingface.co", 443));
        assert!(!grant.allows("127.0.0.3", 8080));
        assert_eq!(grant.authorization, Some(("127.0.0.1:8080".to_owned(), "Bearer hf_secret".to_owned())));
        assert!(!format!("{hub:?}").contains("hf_secret"));

        let default = HubConfig::from_vars(|_| None);
        assert!(default.grant().allows("huggingface.co", 443));
        assert_eq!(default.grant().authorization, None);
    }

    #[test]
    fn model_names_are_checked() {
        for good in ["org/name", "Qwen/Qwen2.5-0.5B-Instruct", "gpt2"] {
            assert!(validate_model(good).is_ok(), "{good}");
        }
        for bad in ["", "../x", "a/b/c", "a//b", "a b/c", "a--b/c"] {
            assert!(validate_model(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_cache_is_listed_by_snapshot() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let repo = dir.path().join("models--org--m");
        std::fs::create_dir_all(repo.join("blobs"))?;
        std::fs::create_dir_all(repo.join("snapshots/abc"))?;
        std::fs::create_dir_all(repo.join("refs"))?;
        std::fs::write(repo.join("blobs/e1"), b"12345")?;
        std::os::unix::fs::symlink("../../blobs/e1", repo.join("snapshots/abc/a.bin"))?;
        std::fs::write(repo.join("refs/main"), "abc")?;
        let got = scan(dir.path())?;
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].repo.as_str(), got[0].revision.as_str(), got[0].commit.as_str(), got[0].size),
            ("org/m", "main", "abc", 5)
        );
        Ok(())
    }
}

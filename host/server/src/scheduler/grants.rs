//! What each job is granted beyond its sandbox. The service that owns a kind
//! registers its grant at start (model pulls: the hub's hosts, `/models`, native
//! transfers); what an admin granted a plugin at install (`containers`) travels on its
//! jobs and is added here. The scheduler asks for a job's grant and knows no kind's
//! special needs. A kind nobody registered gets the default grant: nothing.

use jobhost_model::{ContainerLauncher, Job, JobKind, PluginGrant, RunGrant};
use std::collections::HashMap;
use std::sync::Arc;

/// The grant of each job kind, and what plugin grants give; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    by_kind: HashMap<JobKind, RunGrant>,
    /// What runs the containers of jobs whose plugin was granted `containers`.
    containers: Option<Arc<dyn ContainerLauncher>>,
}

impl Grants {
    /// Grants `grant` to every job of `kind` (replacing an earlier grant).
    pub fn insert(&mut self, kind: JobKind, grant: RunGrant) {
        self.by_kind.insert(kind, grant);
    }

    /// Runs the containers of jobs granted `containers` on `launcher`.
    pub fn containers(&mut self, launcher: Arc<dyn ContainerLauncher>) {
        self.containers = Some(launcher);
    }

    /// What a job of `kind` is granted.
    pub fn for_kind(&self, kind: JobKind) -> RunGrant {
        self.by_kind.get(&kind).cloned().unwrap_or_default()
    }

    /// What `job` is granted: its kind's grant, and its plugin's.
    pub fn for_job(&self, job: &Job) -> RunGrant {
        let mut grant = self.for_kind(job.kind);
        if job.kind.runs_component() && job.grants.contains(&PluginGrant::Containers) {
            grant.containers.clone_from(&self.containers);
        }
        grant
    }
}

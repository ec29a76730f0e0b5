//! What each kind of job is granted beyond its sandbox. The service that owns a kind
//! registers its grant at start (model pulls: the hub's hosts, `/models`, native
//! transfers); the scheduler asks by kind and knows no kind's special needs. A kind
//! nobody registered gets the default grant: nothing.

use jobhost_model::{JobKind, RunGrant};
use std::collections::HashMap;

/// The grant of each job kind; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    by_kind: HashMap<JobKind, RunGrant>,
}

impl Grants {
    /// Grants `grant` to every job of `kind` (replacing an earlier grant).
    pub fn insert(&mut self, kind: JobKind, grant: RunGrant) {
        self.by_kind.insert(kind, grant);
    }

    /// What a job of `kind` is granted.
    pub fn for_kind(&self, kind: JobKind) -> RunGrant {
        self.by_kind.get(&kind).cloned().unwrap_or_default()
    }
}

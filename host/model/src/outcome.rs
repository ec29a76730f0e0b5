//! How a run ended, as every executor reports it.

use crate::job::{Artifact, JobStatus};

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// `completed`, `failed`, `timed_out` or `cancelled`.
    pub status: JobStatus,
    /// The exit code, where the workload produced one.
    pub exit_code: Option<i32>,
    /// Why it did not complete.
    pub error: Option<String>,
    /// The chain of causes behind `error`, when the workload or the engine gave one.
    pub detail: Option<String>,
    /// Files left in `/output`.
    pub artifacts: Vec<Artifact>,
}

impl RunOutcome {
    /// A run that failed before its workload started.
    pub fn failed(error: String) -> RunOutcome {
        RunOutcome {
            status: JobStatus::Failed,
            exit_code: None,
            error: Some(error),
            detail: None,
            artifacts: Vec::new(),
        }
    }
}

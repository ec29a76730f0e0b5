//! Uploads: files sent in for jobs, as the API shows them.

use serde::{Deserialize, Serialize};

/// Where an upload is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UploadState {
    /// Accepting files.
    Open,
    /// Sealed; a job may consume it.
    Finalized,
    /// Taken by a job (`job_id`).
    Consumed,
    /// Passed its expiry unused; its files are gone.
    Expired,
}

impl UploadState {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            UploadState::Open => "open",
            UploadState::Finalized => "finalized",
            UploadState::Consumed => "consumed",
            UploadState::Expired => "expired",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<UploadState> {
        [UploadState::Open, UploadState::Finalized, UploadState::Consumed, UploadState::Expired]
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}

/// An upload record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Upload {
    /// `upl_…`.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// Where it is in its life.
    pub state: UploadState,
    /// Bytes of all its files (recorded at every write and at finalize).
    pub size_bytes: u64,
    /// How many files.
    pub file_count: u64,
    /// The job that consumed it.
    pub job_id: Option<String>,
    /// When it expires unless consumed.
    pub expires_at: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// The node holding its files (the one it was created through).
    #[serde(default)]
    pub worker_id: Option<String>,
}

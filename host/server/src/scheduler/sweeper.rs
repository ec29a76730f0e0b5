//! Sweepers: the periodic work that keeps the data dir from filling up. Uploads past
//! their expiry are marked `expired` and their files deleted; jobs that ended longer
//! ago than the retention are cleaned (files removed, idempotency key freed) and
//! their logs pruned. `system.gc` (and `jobhost gc`) runs the same sweep at once.

use crate::jobs::{Jobs, Result};
use crate::uploads::Uploads;
pub use jobhost_model::GcReport;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The sweeper of one server.
#[derive(Debug, Clone)]
pub struct Sweeper {
    /// Jobs, for retention.
    pub jobs: Jobs,
    /// Uploads, for expiry.
    pub uploads: Uploads,
    /// How long an ended job is kept before it is cleaned.
    pub retention: Duration,
    /// How often the sweep runs by itself.
    pub every: Duration,
}

impl Sweeper {
    /// One sweep, now.
    pub async fn sweep_now(&self) -> Result<GcReport> {
        let uploads_expired = self.uploads.sweep().await?;
        let (jobs_cleaned, log_chunks_pruned) = self.jobs.sweep_retention(self.retention).await?;
        let report = GcReport { uploads_expired, jobs_cleaned, log_chunks_pruned };
        if report != GcReport::default() {
            tracing::info!(?report, "swept");
        }
        Ok(report)
    }

    /// Sweeps every `every` until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            if let Err(e) = self.sweep_now().await {
                tracing::error!(error = %e, "sweeping");
            }
        }
    }
}

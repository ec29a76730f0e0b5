//! Cron schedules: a workflow's `schedule` (5 fields, UTC) starts a run at each tick.
//! The workflow keeps its next tick (`next_run_at`); when a node sees it due, it
//! starts one run for the latest tick that has passed (a unique key per workflow and
//! tick, so several nodes start it once) and moves `next_run_at` past now. Ticks
//! missed while no node was up thus make one catch-up run, not a burst.

use super::Runs;
use chrono::{DateTime, Utc};
use croner::Cron;
use std::str::FromStr as _;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often schedules are looked at.
const LOOK_EVERY: Duration = Duration::from_millis(250);

/// Parses a 5-field cron expression (minute hour day-of-month month day-of-week).
fn parse(cron: &str) -> Result<Cron, String> {
    let fields = cron.split_whitespace().count();
    if fields != 5 {
        return Err(format!("{cron:?} has {fields} fields; a schedule has 5 (minute hour day month weekday, UTC)"));
    }
    Cron::from_str(cron).map_err(|e| format!("{cron:?} is not a cron expression: {e}"))
}

/// The first tick of `cron` after `now`, as stored.
pub(super) fn next_tick(cron: &str, now: DateTime<Utc>) -> Result<String, String> {
    let next = parse(cron)?.find_next_occurrence(&now, false).map_err(|e| format!("{cron:?} never fires: {e}"))?;
    Ok(stamp(next))
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Runs {
    /// Starts the runs of due schedules until `shutdown`.
    pub async fn schedule(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(LOOK_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            if let Err(e) = self.start_due().await {
                tracing::warn!(error = %e, "starting scheduled runs");
            }
        }
    }

    /// One look: a run for each due workflow's latest passed tick, and its next tick.
    async fn start_due(&self) -> super::Result<()> {
        let now = self.clock.now();
        for workflow in self.store.due_workflows(&stamp(now)).await? {
            let Some(cron) = workflow.schedule.as_deref() else { continue };
            let parsed = match parse(cron) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(workflow = workflow.id, error = e, "a stored schedule does not parse");
                    self.store.set_next_run_at(&workflow.id, None).await?;
                    continue;
                }
            };
            if let Ok(latest) = parsed.find_previous_occurrence(&now, true) {
                let params = serde_json::json!({});
                match self.begin(&workflow, params, "schedule", None, Some(stamp(latest))).await? {
                    Some(run) => {
                        tracing::info!(workflow = workflow.name, run_id = run.id, tick = %latest, "scheduled run")
                    }
                    None => tracing::debug!(workflow = workflow.name, tick = %latest, "another node started this tick"),
                }
            }
            let next = parsed.find_next_occurrence(&now, false).ok().map(stamp);
            self.store.set_next_run_at(&workflow.id, next.as_deref()).await?;
        }
        Ok(())
    }
}

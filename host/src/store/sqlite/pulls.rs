//! Queries of the models domain: finding a pull in progress and pruning old pulls.

use super::{Result, Store, job_from_row};
use crate::jobs::model::Job;

impl Store {
    /// A pull job of `model` (at `revision`, or any revision when `None`) that has not
    /// ended yet, oldest first.
    pub async fn active_pull(&self, model: &str, revision: Option<&str>) -> Result<Option<Job>> {
        sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE kind = 'pull' AND status IN ('pending', 'starting', 'running') \
             AND json_extract(input, '$.model') = ?1 \
             AND (?2 IS NULL OR COALESCE(json_extract(input, '$.revision'), 'main') = ?2) \
             ORDER BY id LIMIT 1"
        ))
        .bind(model)
        .bind(revision)
        .fetch_optional(&self.read)
        .await?
        .map(|row| job_from_row(&row))
        .transpose()
    }

    /// Deletes pull jobs that ended before `ended_before` (RFC 3339), with their logs
    /// and artifact records; returns their ids so their files can be removed.
    pub async fn prune_pulls(&self, ended_before: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "DELETE FROM jobs WHERE kind = 'pull' \
             AND status IN ('completed', 'failed', 'timed_out', 'cancelled', 'cleaned') \
             AND completed_at IS NOT NULL AND completed_at < ?1 RETURNING id",
        )
        .bind(ended_before)
        .fetch_all(&mut *self.write_turn().await?)
        .await?;
        rows.iter().map(|r| Ok(sqlx::Row::try_get::<String, _>(r, "id")?)).collect()
    }
}

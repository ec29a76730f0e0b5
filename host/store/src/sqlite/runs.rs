//! Workflows and runs on SQLite.

use super::SqliteStore;
use crate::runs::{NewRun, TaskRow, run_from_row, task_from_row, workflow_from_row};
use crate::{Result, RunStore, StoreError};
use jobhost_model::{Run, RunStatus, Step, Workflow};

/// Every column of a workflow row.
macro_rules! workflow_columns {
    () => {
        "id, user_id, name, description, steps, schedule, concurrency, params_schema, next_run_at, created_at, \
         updated_at"
    };
}

/// Every column of a run row.
macro_rules! run_columns {
    () => {
        "id, workflow_id, workflow, user_id, status, params, steps, triggered_by, client_run_id, tick, error, \
         created_at, started_at, ended_at"
    };
}

fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Whether `e` is a unique index refusing a row.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[async_trait::async_trait]
impl RunStore for SqliteStore {
    async fn insert_workflow(&self, w: &Workflow) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO workflows (id, user_id, name, description, steps, schedule, concurrency, params_schema, \
             next_run_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(&w.id)
        .bind(&w.user_id)
        .bind(&w.name)
        .bind(&w.description)
        .bind(json(&w.steps)?)
        .bind(&w.schedule)
        .bind(w.concurrency.map(i64::from))
        .bind(w.params_schema.as_ref().map(json).transpose()?)
        .bind(&w.next_run_at)
        .bind(&w.created_at)
        .bind(&w.updated_at)
        .execute(&mut *self.write_turn().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn update_workflow(&self, w: &Workflow) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE workflows SET name = ?, description = ?, steps = ?, schedule = ?, concurrency = ?, \
             params_schema = ?, next_run_at = ?, updated_at = ? WHERE id = ?",
        )
        .bind(&w.name)
        .bind(&w.description)
        .bind(json(&w.steps)?)
        .bind(&w.schedule)
        .bind(w.concurrency.map(i64::from))
        .bind(w.params_schema.as_ref().map(json).transpose()?)
        .bind(&w.next_run_at)
        .bind(&w.updated_at)
        .bind(&w.id)
        .execute(&mut *self.write_turn().await?)
        .await;
        match done {
            Ok(done) => Ok(done.rows_affected() == 1),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn get_workflow(&self, id: &str) -> Result<Option<Workflow>> {
        sqlx::query(concat!("SELECT ", workflow_columns!(), " FROM workflows WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?
            .map(|row| workflow_from_row(&row))
            .transpose()
    }

    async fn find_workflow(&self, user_id: &str, name: &str) -> Result<Option<Workflow>> {
        sqlx::query(concat!("SELECT ", workflow_columns!(), " FROM workflows WHERE user_id = ? AND name = ?"))
            .bind(user_id)
            .bind(name)
            .fetch_optional(&self.read)
            .await?
            .map(|row| workflow_from_row(&row))
            .transpose()
    }

    async fn list_workflows(&self, user_id: Option<&str>) -> Result<Vec<Workflow>> {
        sqlx::query(concat!(
            "SELECT ",
            workflow_columns!(),
            " FROM workflows WHERE ?1 IS NULL OR user_id = ?1 ORDER BY name, id"
        ))
        .bind(user_id)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(workflow_from_row)
        .collect()
    }

    async fn delete_workflow(&self, id: &str) -> Result<bool> {
        let done =
            sqlx::query("DELETE FROM workflows WHERE id = ?").bind(id).execute(&mut *self.write_turn().await?).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn due_workflows(&self, now: &str) -> Result<Vec<Workflow>> {
        sqlx::query(concat!(
            "SELECT ",
            workflow_columns!(),
            " FROM workflows WHERE schedule IS NOT NULL AND next_run_at <= ? ORDER BY next_run_at"
        ))
        .bind(now)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(workflow_from_row)
        .collect()
    }

    async fn set_next_run_at(&self, id: &str, next: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE workflows SET next_run_at = ? WHERE id = ?")
            .bind(next)
            .bind(id)
            .execute(&mut *self.write_turn().await?)
            .await?;
        Ok(())
    }

    async fn insert_run(&self, r: &NewRun) -> Result<Option<Run>> {
        let now = jobhost_model::ids::now();
        let started = (r.status == RunStatus::Running).then_some(now.as_str());
        let row = sqlx::query(concat!(
            "INSERT INTO runs (id, workflow_id, workflow, user_id, status, params, steps, triggered_by, \
             client_run_id, tick, created_at, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT DO NOTHING RETURNING ",
            run_columns!()
        ))
        .bind(&r.id)
        .bind(&r.workflow.id)
        .bind(&r.workflow.name)
        .bind(&r.workflow.user_id)
        .bind(r.status.as_str())
        .bind(json(&r.params)?)
        .bind(json(&r.workflow.steps)?)
        .bind(&r.triggered_by)
        .bind(&r.client_run_id)
        .bind(&r.tick)
        .bind(&now)
        .bind(started)
        .fetch_optional(&mut *self.write_turn().await?)
        .await?;
        row.map(|row| run_from_row(&row).map(|(run, _)| run)).transpose()
    }

    async fn find_run(&self, user_id: &str, client_run_id: &str) -> Result<Option<Run>> {
        sqlx::query(concat!("SELECT ", run_columns!(), " FROM runs WHERE user_id = ? AND client_run_id = ?"))
            .bind(user_id)
            .bind(client_run_id)
            .fetch_optional(&self.read)
            .await?
            .map(|row| run_from_row(&row).map(|(run, _)| run))
            .transpose()
    }

    async fn get_run(&self, id: &str) -> Result<Option<(Run, Vec<Step>)>> {
        sqlx::query(concat!("SELECT ", run_columns!(), " FROM runs WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?
            .map(|row| run_from_row(&row))
            .transpose()
    }

    async fn list_runs(
        &self,
        user_id: Option<&str>,
        workflow_id: Option<&str>,
        status: Option<RunStatus>,
        limit: u32,
    ) -> Result<Vec<Run>> {
        sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR workflow_id = ?2) \
             AND (?3 IS NULL OR status = ?3) ORDER BY id DESC LIMIT ?4"
        ))
        .bind(user_id)
        .bind(workflow_id)
        .bind(status.map(RunStatus::as_str))
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|row| run_from_row(row).map(|(run, _)| run))
        .collect()
    }

    async fn live_runs(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT id FROM runs WHERE status IN ('pending', 'running') ORDER BY id")
            .fetch_all(&self.read)
            .await?)
    }

    async fn move_run(
        &self,
        id: &str,
        from: &[RunStatus],
        to: RunStatus,
        error: Option<&str>,
        now: &str,
    ) -> Result<Option<Run>> {
        let from = json(&from.iter().map(|s| s.as_str()).collect::<Vec<_>>())?;
        sqlx::query(concat!(
            "UPDATE runs SET status = ?1, error = COALESCE(?2, error), \
             started_at = CASE WHEN ?1 = 'running' THEN COALESCE(started_at, ?3) ELSE started_at END, \
             ended_at = CASE WHEN ?1 IN ('success', 'failed', 'cancelled') THEN ?3 ELSE ended_at END \
             WHERE id = ?4 AND status IN (SELECT value FROM json_each(?5)) RETURNING ",
            run_columns!()
        ))
        .bind(to.as_str())
        .bind(error)
        .bind(now)
        .bind(id)
        .bind(from)
        .fetch_optional(&mut *self.write_turn().await?)
        .await?
        .map(|row| run_from_row(&row).map(|(run, _)| run))
        .transpose()
    }

    async fn start_run(&self, id: &str, workflow_id: &str, cap: Option<u32>, now: &str) -> Result<bool> {
        // One writer at a time: the count and the move cannot interleave with another.
        let done = sqlx::query(
            "UPDATE runs SET status = 'running', started_at = ?1 WHERE id = ?2 AND status = 'pending' \
             AND (?3 IS NULL OR (SELECT COUNT(*) FROM runs WHERE workflow_id = ?4 AND status = 'running') < ?3)",
        )
        .bind(now)
        .bind(id)
        .bind(cap.map(i64::from))
        .bind(workflow_id)
        .execute(&mut *self.write_turn().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn run_tasks(&self, id: &str) -> Result<Vec<TaskRow>> {
        sqlx::query(
            "SELECT id, step, task_index, status, attempt, error, started_at, completed_at FROM jobs \
             WHERE run_id = ? ORDER BY step, task_index",
        )
        .bind(id)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(task_from_row)
        .collect()
    }
}

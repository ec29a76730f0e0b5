//! Workflows and runs on Postgres.

use super::PgStore;
use crate::runs::{NewRun, TaskRow, run_from_row, task_from_row, workflow_from_row};
use crate::{Result, RunStore, StoreError};
use jobhost_model::{Run, RunStatus, Step, Workflow};

/// Every column of a workflow row.
macro_rules! workflow_columns {
    () => {
        concat!(
            "id, user_id, name, description, steps::text AS steps, schedule, concurrency, \
             params_schema::text AS params_schema, ",
            ts!("next_run_at"),
            ", ",
            ts!("created_at"),
            ", ",
            ts!("updated_at")
        )
    };
}

/// Every column of a run row.
macro_rules! run_columns {
    () => {
        concat!(
            "id, workflow_id, workflow, user_id, status, params::text AS params, steps::text AS steps, \
             triggered_by, client_run_id, error, ",
            ts!("tick"),
            ", ",
            ts!("created_at"),
            ", ",
            ts!("started_at"),
            ", ",
            ts!("ended_at")
        )
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
impl RunStore for PgStore {
    async fn insert_workflow(&self, w: &Workflow) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO workflows (id, user_id, name, description, steps, schedule, concurrency, params_schema, \
             next_run_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5::json, $6, $7, $8::json, $9::timestamptz, \
             $10::timestamptz, $11::timestamptz) ON CONFLICT DO NOTHING",
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
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn update_workflow(&self, w: &Workflow) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE workflows SET name = $1, description = $2, steps = $3::json, schedule = $4, concurrency = $5, \
             params_schema = $6::json, next_run_at = $7::timestamptz, updated_at = $8::timestamptz WHERE id = $9",
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
        .execute(&self.pool)
        .await;
        match done {
            Ok(done) => Ok(done.rows_affected() == 1),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn get_workflow(&self, id: &str) -> Result<Option<Workflow>> {
        sqlx::query(concat!("SELECT ", workflow_columns!(), " FROM workflows WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| workflow_from_row(&row))
            .transpose()
    }

    async fn find_workflow(&self, user_id: &str, name: &str) -> Result<Option<Workflow>> {
        sqlx::query(concat!("SELECT ", workflow_columns!(), " FROM workflows WHERE user_id = $1 AND name = $2"))
            .bind(user_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| workflow_from_row(&row))
            .transpose()
    }

    async fn list_workflows(&self, user_id: Option<&str>) -> Result<Vec<Workflow>> {
        sqlx::query(concat!(
            "SELECT ",
            workflow_columns!(),
            " FROM workflows WHERE $1::text IS NULL OR user_id = $1 ORDER BY name, id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(workflow_from_row)
        .collect()
    }

    async fn delete_workflow(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM workflows WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn due_workflows(&self, now: &str) -> Result<Vec<Workflow>> {
        sqlx::query(concat!(
            "SELECT ",
            workflow_columns!(),
            " FROM workflows WHERE schedule IS NOT NULL AND next_run_at <= $1::timestamptz ORDER BY next_run_at"
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(workflow_from_row)
        .collect()
    }

    async fn set_next_run_at(&self, id: &str, next: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE workflows SET next_run_at = $1::timestamptz WHERE id = $2")
            .bind(next)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert_run(&self, r: &NewRun) -> Result<Option<Run>> {
        let now = jobhost_model::ids::now();
        let started = (r.status == RunStatus::Running).then_some(now.as_str());
        let row = sqlx::query(concat!(
            "INSERT INTO runs (id, workflow_id, workflow, user_id, status, params, steps, triggered_by, \
             client_run_id, tick, created_at, started_at) VALUES ($1, $2, $3, $4, $5, $6::json, $7::json, $8, $9, \
             $10::timestamptz, $11::timestamptz, $12::timestamptz) \
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
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| run_from_row(&row).map(|(run, _)| run)).transpose()
    }

    async fn find_run(&self, user_id: &str, client_run_id: &str) -> Result<Option<Run>> {
        sqlx::query(concat!("SELECT ", run_columns!(), " FROM runs WHERE user_id = $1 AND client_run_id = $2"))
            .bind(user_id)
            .bind(client_run_id)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| run_from_row(&row).map(|(run, _)| run))
            .transpose()
    }

    async fn get_run(&self, id: &str) -> Result<Option<(Run, Vec<Step>)>> {
        sqlx::query(concat!("SELECT ", run_columns!(), " FROM runs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
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
            " FROM runs WHERE ($1::text IS NULL OR user_id = $1) AND ($2::text IS NULL OR workflow_id = $2) \
             AND ($3::text IS NULL OR status = $3) ORDER BY id DESC LIMIT $4"
        ))
        .bind(user_id)
        .bind(workflow_id)
        .bind(status.map(RunStatus::as_str))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| run_from_row(row).map(|(run, _)| run))
        .collect()
    }

    async fn live_runs(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT id FROM runs WHERE status IN ('pending', 'running') ORDER BY id")
            .fetch_all(&self.pool)
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
        let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        sqlx::query(concat!(
            "UPDATE runs SET status = $1, error = COALESCE($2, error), \
             started_at = CASE WHEN $1 = 'running' THEN COALESCE(started_at, $3::timestamptz) ELSE started_at END, \
             ended_at = CASE WHEN $1 IN ('success', 'failed', 'cancelled') THEN $3::timestamptz ELSE ended_at END \
             WHERE id = $4 AND status = ANY($5) RETURNING ",
            run_columns!()
        ))
        .bind(to.as_str())
        .bind(error)
        .bind(now)
        .bind(id)
        .bind(from)
        .fetch_optional(&self.pool)
        .await?
        .map(|row| run_from_row(&row).map(|(run, _)| run))
        .transpose()
    }

    async fn start_run(&self, id: &str, workflow_id: &str, cap: Option<u32>, now: &str) -> Result<bool> {
        // The workflow's lock, held to the commit: two nodes starting its runs at once
        // count one after the other.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))").bind(workflow_id).execute(&mut *tx).await?;
        let done = sqlx::query(
            "UPDATE runs SET status = 'running', started_at = $1::timestamptz WHERE id = $2 AND status = 'pending' \
             AND ($3::int8 IS NULL OR (SELECT COUNT(*) FROM runs WHERE workflow_id = $4 AND status = 'running') < $3)",
        )
        .bind(now)
        .bind(id)
        .bind(cap.map(i64::from))
        .bind(workflow_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn run_tasks(&self, id: &str) -> Result<Vec<TaskRow>> {
        sqlx::query(concat!(
            "SELECT id, step, task_index, status, attempt, error, ",
            ts!("started_at"),
            ", ",
            ts!("completed_at"),
            " FROM jobs WHERE run_id = $1 ORDER BY step, task_index"
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(task_from_row)
        .collect()
    }
}

//! `runs.start` and `runs.cancel`.

use super::{Error, Result, Runs, may_see, owner};
use jobhost_model::{Caller, Run, RunStatus, StartRun, StartedRun, Workflow, ids};
use jobhost_store::NewRun;

impl Runs {
    /// `runs.start`: a run of the caller's workflow with `params` (an object). With a
    /// `client_run_id` naming a run of the caller, that run (`created: false`).
    pub async fn start(&self, caller: &Caller, req: StartRun) -> Result<StartedRun> {
        let workflow = self.workflow(caller, &req.workflow).await?;
        let params = req.params.unwrap_or_else(|| serde_json::json!({}));
        if !params.is_object() {
            return Err(Error::invalid("params", "must be a JSON object"));
        }
        if let Some(schema) = &workflow.params_schema {
            let validator = jsonschema::validator_for(schema)
                .map_err(|e| Error::Internal(format!("workflow {}: its params_schema: {e}", workflow.id)))?;
            if let Err(e) = validator.validate(&params) {
                let at = e.instance_path().to_string();
                let place = if at.is_empty() { String::new() } else { format!(" at {at}") };
                return Err(Error::invalid("params", format!("do not match the workflow's params_schema{place}: {e}")));
            }
        }
        if let Some(key) = &req.client_run_id {
            if key.is_empty() || key.len() > 200 {
                return Err(Error::invalid("client_run_id", "must be 1 to 200 characters"));
            }
            if let Some(run) = self.store.find_run(&caller.user_id, key).await? {
                return Ok(StartedRun { run, created: false });
            }
        }
        let triggered_by = match req.triggered_by.as_deref() {
            None | Some("api") => "api",
            Some("manual") => "manual",
            Some(_) => return Err(Error::invalid("triggered_by", "is api or manual")),
        };
        match self.begin(&workflow, params, triggered_by, req.client_run_id.clone(), None).await? {
            Some(run) => Ok(StartedRun { run, created: true }),
            // Another start with the same key won the race: its run.
            None => {
                let key = req.client_run_id.as_deref().unwrap_or_default();
                let run = self.store.find_run(&caller.user_id, key).await?;
                run.map(|run| StartedRun { run, created: false })
                    .ok_or_else(|| Error::Conflict("the run could not be recorded".into()))
            }
        }
    }

    /// Records a run of `workflow` (pending when its concurrency is used up, otherwise
    /// running) and has it advanced; none when its key or tick names a run already.
    pub(super) async fn begin(
        &self,
        workflow: &Workflow,
        params: serde_json::Value,
        triggered_by: &str,
        client_run_id: Option<String>,
        tick: Option<String>,
    ) -> Result<Option<Run>> {
        let new = NewRun {
            id: ids::new(ids::RUN),
            workflow: workflow.clone(),
            // Started by the driver, which counts the running runs under the workflow's lock.
            status: RunStatus::Pending,
            params,
            triggered_by: triggered_by.to_owned(),
            client_run_id,
            tick,
        };
        let run = self.store.insert_run(&new).await?;
        if let Some(run) = &run {
            // Started here at once when a slot is free, so `runs.start` answers running.
            let cap = workflow.concurrency;
            if self.store.start_run(&run.id, &workflow.id, cap, &ids::now()).await? {
                self.poke(&run.id);
                return Ok(self.store.get_run(&run.id).await?.map(|(run, _)| run));
            }
            self.poke(&run.id);
        }
        Ok(run)
    }

    /// `runs.cancel`: the run ends `cancelled`, its pending tasks are cancelled and its
    /// running ones stopped. An ended run is a conflict.
    pub async fn cancel(&self, caller: &Caller, id: &str) -> Result<Run> {
        let run = self.run_record(caller, id).await?;
        let moved = self
            .store
            .move_run(
                &run.id,
                &[RunStatus::Pending, RunStatus::Running],
                RunStatus::Cancelled,
                Some("cancelled by request"),
                &ids::now(),
            )
            .await?;
        let Some(run) = moved else {
            return Err(Error::Conflict(format!("run {id} has ended already")));
        };
        self.stop_tasks(&run).await;
        Ok(run)
    }

    /// Cancels every task of `run` that has not ended.
    pub(super) async fn stop_tasks(&self, run: &Run) {
        let tasks = match self.store.run_tasks(&run.id).await {
            Ok(t) => t,
            Err(e) => return tracing::warn!(run_id = run.id, error = %e, "reading a run's tasks to stop them"),
        };
        let caller = owner(&run.user_id);
        let live = tasks.iter().filter(|t| !t.status.is_terminal());
        let stops = live.map(|t| self.jobs.cancel(&caller, &t.job_id));
        for result in futures::future::join_all(stops).await {
            if let Err(e) = result
                && !matches!(e, Error::Conflict(_))
            {
                tracing::warn!(run_id = run.id, error = %e, "cancelling a task");
            }
        }
    }

    /// Run `id` as recorded, if the caller may see it.
    pub(super) async fn run_record(&self, caller: &Caller, id: &str) -> Result<Run> {
        let found = if ids::has_prefix(id, ids::RUN) { self.store.get_run(id).await? } else { None };
        found
            .map(|(run, _)| run)
            .filter(|run| may_see(caller, &run.user_id))
            .ok_or_else(|| Error::NotFound(format!("run {id:?} not found")))
    }
}

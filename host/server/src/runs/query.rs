//! `runs.get` and `runs.list`.

use super::{Error, Result, Runs};
use jobhost_model::{Caller, Run, RunStatus};

/// Most runs in one `runs.list` answer.
const MAX_LIST: u32 = 1000;

impl Runs {
    /// `runs.get`: the run with its steps and their tasks.
    pub async fn get(&self, caller: &Caller, id: &str) -> Result<Run> {
        let mut run = self.run_record(caller, id).await?;
        let (_, steps) =
            self.store.get_run(&run.id).await?.ok_or_else(|| Error::NotFound(format!("run {id:?} not found")))?;
        let tasks = self.store.run_tasks(&run.id).await?;
        run.steps = super::advance::steps_view(&run, &steps, &tasks);
        Ok(run)
    }

    /// `runs.list`: the caller's runs (everyone's for an admin), newest first, of one
    /// workflow and in one status when asked.
    pub async fn list(
        &self,
        caller: &Caller,
        workflow: Option<&str>,
        status: Option<RunStatus>,
        limit: Option<u32>,
    ) -> Result<Vec<Run>> {
        let workflow_id = match workflow {
            Some(w) => Some(self.workflow(caller, w).await?.id),
            None => None,
        };
        let user = (!caller.is_admin).then_some(caller.user_id.as_str());
        let limit = limit.unwrap_or(100).clamp(1, MAX_LIST);
        Ok(self.store.list_runs(user, workflow_id.as_deref(), status, limit).await?)
    }
}

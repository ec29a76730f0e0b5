//! `workflows.*`: writing a workflow checks its DAG and its schedule, and names are a
//! user's own (an admin sees everyone's).

use super::{Error, Result, Runs, may_see};
use jobhost_model::{Caller, Workflow, WorkflowRequest, check_steps, ids};

/// Longest workflow name.
const MAX_NAME: usize = 64;

impl Runs {
    /// `workflows.create`.
    pub async fn create_workflow(&self, caller: &Caller, req: WorkflowRequest) -> Result<Workflow> {
        let now = ids::now();
        let mut workflow = Workflow {
            id: ids::new(ids::WORKFLOW),
            name: String::new(),
            user_id: caller.user_id.clone(),
            description: None,
            steps: Vec::new(),
            schedule: None,
            concurrency: None,
            params_schema: None,
            created_at: now.clone(),
            updated_at: now,
            next_run_at: None,
        };
        self.define(&mut workflow, req)?;
        if !self.store.insert_workflow(&workflow).await? {
            return Err(Error::Conflict(format!("you have a workflow named {:?} already", workflow.name)));
        }
        Ok(workflow)
    }

    /// `workflows.update`: replaces the definition of the caller's workflow named (or
    /// with the id) `name_or_id`; runs already started keep the steps they started with.
    pub async fn update_workflow(&self, caller: &Caller, name_or_id: &str, req: WorkflowRequest) -> Result<Workflow> {
        let mut workflow = self.workflow(caller, name_or_id).await?;
        self.define(&mut workflow, req)?;
        workflow.updated_at = ids::now();
        if !self.store.update_workflow(&workflow).await? {
            return Err(Error::Conflict(format!("you have a workflow named {:?} already", workflow.name)));
        }
        Ok(workflow)
    }

    /// `workflows.get`.
    pub async fn workflow(&self, caller: &Caller, name_or_id: &str) -> Result<Workflow> {
        let found = if ids::has_prefix(name_or_id, ids::WORKFLOW) {
            self.store.get_workflow(name_or_id).await?
        } else {
            self.store.find_workflow(&caller.user_id, name_or_id).await?
        };
        found
            .filter(|w| may_see(caller, &w.user_id))
            .ok_or_else(|| Error::NotFound(format!("workflow {name_or_id:?} not found")))
    }

    /// `workflows.list`: the caller's (every user's for an admin), by name.
    pub async fn workflows(&self, caller: &Caller) -> Result<Vec<Workflow>> {
        let user = (!caller.is_admin).then_some(caller.user_id.as_str());
        Ok(self.store.list_workflows(user).await?)
    }

    /// `workflows.delete`: its runs are kept; a workflow with a live run cannot go.
    pub async fn delete_workflow(&self, caller: &Caller, name_or_id: &str) -> Result<Workflow> {
        let workflow = self.workflow(caller, name_or_id).await?;
        for status in [jobhost_model::RunStatus::Pending, jobhost_model::RunStatus::Running] {
            if !self.store.list_runs(None, Some(&workflow.id), Some(status), 1).await?.is_empty() {
                return Err(Error::Conflict(format!(
                    "workflow {:?} has a {} run; cancel it first",
                    workflow.name,
                    status.as_str()
                )));
            }
        }
        self.store.delete_workflow(&workflow.id).await?;
        Ok(workflow)
    }

    /// Checks `req` and writes it into `workflow`, with the next tick of its schedule.
    fn define(&self, workflow: &mut Workflow, req: WorkflowRequest) -> Result<()> {
        let name_ok = !req.name.is_empty()
            && req.name.len() <= MAX_NAME
            && req.name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && req.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if !name_ok {
            return Err(Error::invalid(
                "name",
                format!("must be 1 to {MAX_NAME} of a-z, 0-9, '.', '_', '-', starting with a letter or digit"),
            ));
        }
        check_steps(&req.steps).map_err(|(field, message)| Error::invalid(&field, message))?;
        for (i, step) in req.steps.iter().enumerate() {
            if let Some((key, _)) = step.env.iter().find(|(k, _)| k.is_empty() || k.contains('=') || k.contains('\0')) {
                return Err(Error::invalid(
                    &format!("steps[{i}].env.{key}"),
                    "a name must be non-empty without '=' or NUL",
                ));
            }
        }
        if req.concurrency == Some(0) {
            return Err(Error::invalid("concurrency", "must be at least 1"));
        }
        if let Some(schema) = &req.params_schema {
            if !schema.is_object() {
                return Err(Error::invalid("params_schema", "must be a JSON Schema object"));
            }
            jsonschema::validator_for(schema)
                .map_err(|e| Error::invalid("params_schema", format!("is not a valid JSON Schema: {e}")))?;
        }
        let next_run_at = match &req.schedule {
            Some(cron) => {
                Some(super::schedule::next_tick(cron, self.clock.now()).map_err(|e| Error::invalid("schedule", e))?)
            }
            None => None,
        };
        workflow.name = req.name;
        workflow.description = req.description;
        workflow.steps = req.steps;
        workflow.schedule = req.schedule;
        workflow.concurrency = req.concurrency;
        workflow.params_schema = req.params_schema;
        workflow.next_run_at = next_run_at;
        Ok(())
    }
}

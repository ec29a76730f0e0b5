//! Workflows and their runs: a workflow is a DAG of steps, a run one execution of it,
//! and each step's tasks are jobs (`run_id`, `step`, `task_index` on the job), so they
//! get everything a job has: limits, retries, logs, artifacts, cancel, every node.
//!
//! - `workflows`: `workflows.create/update/get/list/delete`, the DAG checked at write.
//! - `start`: `runs.start` (idempotent by `client_run_id`) and `runs.cancel`.
//! - `advance`: the driver. A run moves when one of its tasks ends (the jobs service
//!   tells it, for ends this node commits) and at least every second for every live
//!   run (ends on other nodes, a crash mid-way): it reads the run's tasks, starts the
//!   steps whose needs all succeeded (their tasks submitted with idempotency keys, so
//!   two nodes or a restart never make one twice), and ends the run.
//! - `schedule`: cron schedules (5 fields, UTC), read against a [`Clock`] the tests
//!   can set; one run per tick whichever node sees it first, one catch-up run for
//!   the ticks missed while no node was up.
//! - `query`: `runs.get` (steps and tasks) and `runs.list`.

mod advance;
mod query;
mod schedule;
mod start;
mod workflows;

use crate::jobs::Jobs;
use crate::uploads::Uploads;
use jobhost_model::{Caller, Scope};
use jobhost_store::Store;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

pub use jobhost_model::Error;
/// Result with the domain [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The time schedules are read against: the system's, or one a test sets.
pub trait Clock: std::fmt::Debug + Send + Sync {
    /// Now.
    fn now(&self) -> chrono::DateTime<chrono::Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }
}

/// The workflows service; cheap to clone.
#[derive(Clone, Debug)]
pub struct Runs {
    store: Arc<dyn Store>,
    jobs: Jobs,
    uploads: Uploads,
    clock: Arc<dyn Clock>,
    /// Runs to advance soon.
    dirty: Arc<Mutex<HashSet<String>>>,
    /// Wakes the driver.
    wake: Arc<tokio::sync::Notify>,
}

impl Runs {
    /// The service over `store`, submitting tasks through `jobs`, its schedules read
    /// against `clock`. Tells `jobs` to report the ends of tasks here.
    pub fn new(store: Arc<dyn Store>, jobs: Jobs, uploads: Uploads, clock: Arc<dyn Clock>) -> Runs {
        let runs = Runs { store, jobs: jobs.clone(), uploads, clock, dirty: Arc::default(), wake: Arc::default() };
        let (dirty, wake) = (runs.dirty.clone(), runs.wake.clone());
        jobs.on_task_end(Arc::new(move |run_id: &str| {
            dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(run_id.to_owned());
            wake.notify_one();
        }));
        runs
    }

    /// Has run `id` advanced soon.
    fn poke(&self, id: &str) {
        self.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id.to_owned());
        self.wake.notify_one();
    }
}

/// The server acting for `user_id` (a run's owner) on the tasks of its runs.
fn owner(user_id: &str) -> Caller {
    Caller { user_id: user_id.to_owned(), is_admin: false, scopes: vec![Scope::Submit, Scope::Read], token_id: None }
}

/// Whether `caller` may see `user_id`'s workflows and runs.
fn may_see(caller: &Caller, user_id: &str) -> bool {
    caller.is_admin || caller.user_id == user_id
}

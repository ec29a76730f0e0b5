//! `jobhost bench --workflow-tasks N`: one run of a one-step workflow that fans out
//! into N tasks of the no-op component, on a fresh in-process server: from
//! `runs.start` to the run's `success`, and the tasks per second that makes (see
//! `BENCHMARKS.md`). It covers what a fan-out costs beyond the jobs themselves: the
//! tasks' submits (idempotency keys included), the driver reading the run as its
//! tasks end, and the run's end.

use super::bench::{self, BenchArgs};
use anyhow::{Context as _, ensure};
use jobhost_model::{RunStatus, StartRun, Step, WorkflowRequest};
use serde::Serialize;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The figures, under the names `BENCHMARKS.md` and the `--json` line use.
#[derive(Debug, Serialize)]
struct Report {
    tasks: u32,
    run_s: f64,
    tasks_per_s: f64,
}

/// Runs the fan-out and prints its report.
pub(super) async fn exec(args: &BenchArgs, tasks: u32, noop: &[u8]) -> anyhow::Result<ExitCode> {
    ensure!(tasks > 0, "--workflow-tasks must be at least 1");
    let tmp = tempfile::tempdir().context("creating a temporary data dir")?;
    let server = bench::start(&tmp.path().join("data"), |c| bench::concurrency(c, args)).await?;
    let client = bench::client_of(&server)?;
    client.install("noop", noop).await?;
    let step = Step { name: "fan".into(), plugin: "noop".into(), task_count: Some(tasks), ..Step::default() };
    let workflow = WorkflowRequest { name: "fan-out".into(), steps: vec![step], ..WorkflowRequest::default() };
    client.create_workflow(&workflow).await?;
    let t0 = Instant::now();
    let run = client.start_run(&StartRun { workflow: "fan-out".into(), ..StartRun::default() }).await?.run;
    // Watched through `runs.list` (the run's record only): `runs.get` would read and
    // send all its tasks each time.
    let done = loop {
        let runs = client.runs(Some("fan-out")).await?;
        let run = runs.into_iter().find(|r| r.id == run.id).context("the run vanished")?;
        if run.status.is_terminal() {
            break run;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let elapsed = t0.elapsed().as_secs_f64();
    ensure!(done.status == RunStatus::Success, "the run ended {}: {:?}", done.status.as_str(), done.error);
    server.stop().await;
    let report = Report { tasks, run_s: elapsed, tasks_per_s: f64::from(tasks) / elapsed };
    println!("workflow run of {tasks} no-op tasks, start → success   {:.2} s", report.run_s);
    println!("tasks per second                                  {:.0}", report.tasks_per_s);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(ExitCode::SUCCESS)
}

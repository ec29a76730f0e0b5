//! `jobhost wait ID`: waits for a job to end (or `--timeout-s` to pass), prints it and
//! exits with the job's exit code, so a script can `submit` and then `wait` as if it
//! had run the job itself. On a terminal it draws the job's progress while it waits.

use super::conn::Conn;
use super::output::{exit_code_of, print_job};
use super::progress::{PROGRESS_LOOK, ProgressView};
use clap::Args;
use jobhost_client::Client;
use jobhost_model::Job;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// `jobhost wait` options.
#[derive(Debug, Args)]
pub(super) struct WaitArgs {
    #[command(flatten)]
    conn: Conn,
    /// Job id.
    id: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3600.0)]
    timeout_s: f64,
}

/// Waits, prints the job and answers its exit code.
pub(super) async fn exec(args: WaitArgs) -> anyhow::Result<ExitCode> {
    let client = args.conn.client()?;
    let job = wait_showing_progress(&client, &args.id, Duration::from_secs_f64(args.timeout_s), args.conn.json).await?;
    print_job(&job, args.conn.json)?;
    Ok(exit_code_of(&job))
}

/// `jobs.wait` up to `timeout`; on a terminal (not `--json`), in short steps that
/// draw the job's progress.
async fn wait_showing_progress(client: &Client, id: &str, timeout: Duration, json: bool) -> anyhow::Result<Job> {
    let mut view = ProgressView::for_terminal(json);
    if !view.is_on() {
        return Ok(client.wait(id, timeout).await?);
    }
    let deadline = Instant::now() + timeout;
    loop {
        let step = deadline.saturating_duration_since(Instant::now()).min(PROGRESS_LOOK);
        let job = client.wait(id, step).await?;
        if job.status.is_terminal() || Instant::now() >= deadline {
            view.finish();
            return Ok(job);
        }
        view.update(&job);
    }
}

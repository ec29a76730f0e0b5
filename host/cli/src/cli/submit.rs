//! `jobhost submit PLUGIN -- ARGS`: queues a job of an installed component and prints
//! its id (or the whole `Submitted` with `--json`) without waiting for it, for scripts
//! that then `wait` or `logs -f` it.

use super::conn::Conn;
use super::job_args::JobArgs;
use clap::Args;
use std::process::ExitCode;

/// `jobhost submit` options.
#[derive(Debug, Args)]
pub(super) struct SubmitArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(flatten)]
    job: JobArgs,
    /// Installed component name.
    plugin: String,
    /// Arguments (argv[1..]).
    #[arg(last = true)]
    args: Vec<String>,
}

/// Submits the job and prints its id.
pub(super) async fn exec(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let SubmitArgs { conn, job, plugin, args } = args;
    let client = conn.client()?;
    let submitted = client.submit(&job.request(plugin, args)?).await?;
    if conn.json {
        println!("{}", serde_json::to_string(&submitted)?);
    } else {
        println!("{}", submitted.job.id);
    }
    Ok(ExitCode::SUCCESS)
}

//! `jobhost submit PLUGIN -- ARGS` (or `jobhost submit --image IMAGE -- COMMAND`):
//! queues a job of an installed component (or a container job) and prints its id (or
//! the whole `Submitted` with `--json`) without waiting for it, for scripts that then
//! `wait` or `logs -f` it.

use super::conn::Conn;
use super::job_args::JobArgs;
use super::transfer::upload_dir;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// `jobhost submit` options.
#[derive(Debug, Args)]
pub(super) struct SubmitArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(flatten)]
    job: JobArgs,
    /// Send this directory as the job's `/input` (read-only).
    #[arg(long, value_name = "DIR", conflicts_with = "files_id")]
    files: Option<PathBuf>,
    /// An upload already finalized (`jobhost upload`) as the job's `/input`.
    #[arg(long, value_name = "ID")]
    files_id: Option<String>,
    /// Installed component name (none with `--image`).
    #[arg(required_unless_present = "image")]
    plugin: Option<String>,
    /// Arguments (argv[1..]), or the container's command with `--image`.
    #[arg(last = true)]
    args: Vec<String>,
}

/// Submits the job and prints its id.
pub(super) async fn exec(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let SubmitArgs { conn, job, files, files_id, plugin, args } = args;
    let client = conn.client()?;
    let mut request = job.request(plugin.unwrap_or_default(), args)?;
    request.files_id = match files {
        Some(dir) => Some(upload_dir(&client, &dir).await?.id),
        None => files_id,
    };
    let submitted = client.submit(&request).await?;
    if conn.json {
        println!("{}", serde_json::to_string(&submitted)?);
    } else {
        println!("{}", submitted.job.id);
    }
    Ok(ExitCode::SUCCESS)
}

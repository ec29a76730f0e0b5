//! `jobhost get ID`: shows one job as it is now, in the format every command uses for a
//! job; unlike `wait`, it exits 0 whatever the job's state, as it only looks.

use super::conn::Conn;
use super::output::print_job;
use clap::Args;
use std::process::ExitCode;

/// `jobhost get` options.
#[derive(Debug, Args)]
pub(super) struct GetArgs {
    #[command(flatten)]
    conn: Conn,
    /// Job id.
    id: String,
}

/// Prints the job.
pub(super) async fn exec(args: GetArgs) -> anyhow::Result<ExitCode> {
    let job = args.conn.client()?.get(&args.id).await?;
    print_job(&job, args.conn.json)?;
    Ok(ExitCode::SUCCESS)
}

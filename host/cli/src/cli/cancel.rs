//! `jobhost cancel ID`: asks the server to cancel a job and prints the job as the
//! server then reports it; exits 0 once the request is taken, whatever the job's end.

use super::conn::Conn;
use super::output::print_job;
use clap::Args;
use std::process::ExitCode;

/// `jobhost cancel` options.
#[derive(Debug, Args)]
pub(super) struct CancelArgs {
    #[command(flatten)]
    conn: Conn,
    /// Job id.
    id: String,
}

/// Cancels the job and prints it.
pub(super) async fn exec(args: CancelArgs) -> anyhow::Result<ExitCode> {
    let job = args.conn.client()?.cancel(&args.id).await?;
    print_job(&job, args.conn.json)?;
    Ok(ExitCode::SUCCESS)
}

//! `jobhost gc`: runs the server's sweepers now instead of at their next period
//! (expired uploads, jobs past the retention, their logs) and prints what each removed.

use super::conn::Conn;
use clap::Args;
use std::process::ExitCode;

/// `jobhost gc` options.
#[derive(Debug, Args)]
pub(super) struct GcArgs {
    #[command(flatten)]
    conn: Conn,
}

/// Sweeps and prints the counts.
pub(super) async fn exec(args: GcArgs) -> anyhow::Result<ExitCode> {
    let report = args.conn.client()?.gc().await?;
    if args.conn.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "removed {} expired uploads, cleaned {} jobs past retention, pruned {} log chunks",
            report.uploads_expired, report.jobs_cleaned, report.log_chunks_pruned
        );
    }
    Ok(ExitCode::SUCCESS)
}

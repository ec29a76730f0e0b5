//! `jobhost upload DIR`: sends a directory as one finalized upload and prints its id,
//! for `submit --files-id` (or `jobs.submit`'s `files_id`).

use super::conn::Conn;
use super::transfer::upload_dir;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// `jobhost upload` options.
#[derive(Debug, Args)]
pub(super) struct UploadArgs {
    #[command(flatten)]
    conn: Conn,
    /// The directory whose files a job will see at `/input`.
    dir: PathBuf,
}

/// Uploads the directory and prints the upload's id (its record with `--json`).
pub(super) async fn exec(args: UploadArgs) -> anyhow::Result<ExitCode> {
    let client = args.conn.client()?;
    let upload = upload_dir(&client, &args.dir).await?;
    if args.conn.json {
        println!("{}", serde_json::to_string(&upload)?);
    } else {
        println!("{}", upload.id);
    }
    Ok(ExitCode::SUCCESS)
}

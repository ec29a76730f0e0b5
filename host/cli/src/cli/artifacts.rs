//! `jobhost artifacts ID`: lists a job's artifacts; `--get NAME [-o FILE]` downloads
//! one (to stdout without `-o`), `--all -o DIR` every one, sub-paths kept. Every
//! download is checked against the artifact's recorded size and SHA-256.

use super::conn::Conn;
use super::transfer::{bar, download_all, fetch, fetch_to};
use anyhow::bail;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// `jobhost artifacts` options.
#[derive(Debug, Args)]
pub(super) struct ArtifactsArgs {
    #[command(flatten)]
    conn: Conn,
    /// Job id.
    id: String,
    /// Download the artifact NAME (to stdout, or to `-o FILE`).
    #[arg(long, value_name = "NAME", conflicts_with = "all")]
    get: Option<String>,
    /// Download every artifact into `-o DIR`.
    #[arg(long, requires = "output")]
    all: bool,
    /// Where to write: a file with `--get`, a directory with `--all`.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

/// Lists or downloads.
pub(super) async fn exec(args: ArtifactsArgs) -> anyhow::Result<ExitCode> {
    let client = args.conn.client()?;
    if let Some(name) = &args.get {
        let artifacts = client.artifacts(&args.id).await?;
        let Some(artifact) = artifacts.iter().find(|a| &a.name == name) else {
            bail!("job {} has no artifact {name:?}", args.id);
        };
        let bar = bar(artifact.size_bytes, "downloading");
        match &args.output {
            Some(file) => fetch_to(&client, &args.id, artifact, file, &bar).await?,
            None => fetch(&client, &args.id, artifact, std::io::stdout(), &bar).await?,
        }
        bar.finish_and_clear();
        return Ok(ExitCode::SUCCESS);
    }
    let listed = match (&args.output, args.all) {
        (Some(dir), true) => download_all(&client, &args.id, dir).await?,
        _ => client.artifacts(&args.id).await?,
    };
    if args.conn.json {
        println!("{}", serde_json::to_string(&listed)?);
    } else if !args.all {
        for a in &listed {
            println!("{}  {:>12}  {}", a.sha256, a.size_bytes, a.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

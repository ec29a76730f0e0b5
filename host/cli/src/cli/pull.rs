//! `jobhost pull ORG/NAME`: starts a model pull on the server and shows its progress
//! (bytes, rate, ETA) until it ends; exits like `jobhost wait`. `--json` prints the
//! ended job instead of a bar. Interrupting the command leaves the pull running on the
//! server (`jobhost cancel <id>` stops it).

use super::conn::Conn;
use super::output::{exit_code_of, print_job};
use clap::Args;
use jobhost_model::Job;
use jobhost_model::Submitted;
use std::process::ExitCode;
use std::time::Duration;

/// How often the job is polled for progress.
const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Args)]
pub(super) struct PullArgs {
    #[command(flatten)]
    conn: Conn,
    /// Repository on the hub, `org/name`.
    model: String,
    /// Branch, tag or commit.
    #[arg(long)]
    revision: Option<String>,
    /// Variant to take among GGUF files (e.g. `q4_k_m`).
    #[arg(long)]
    quantize: Option<String>,
    /// Only files matching these globs (repeatable), e.g. `*.json`.
    #[arg(long = "include")]
    allow_patterns: Vec<String>,
}

pub(super) async fn exec(args: PullArgs) -> anyhow::Result<ExitCode> {
    let client = args.conn.client()?;
    let mut params = serde_json::json!({ "model": args.model, "allow_patterns": args.allow_patterns });
    if let Some(r) = &args.revision {
        params["revision"] = r.clone().into();
    }
    if let Some(q) = &args.quantize {
        params["quantize"] = q.clone().into();
    }
    let submitted: Submitted = client.call("models.pull", params).await?;
    let id = submitted.job.id.clone();
    let bar = (!args.conn.json).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(format!("{} {}", args.model, if submitted.created { "" } else { "(already running)" }));
        bar
    });
    let job = loop {
        let job: Job = client.get(&id).await?;
        if let (Some(bar), Some(p)) = (&bar, &job.progress) {
            if let Some(total) = p.total {
                bar.set_length(total);
            }
            bar.set_position(p.done);
        }
        if job.status.is_terminal() {
            break job;
        }
        tokio::time::sleep(POLL).await;
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    print_job(&job, args.conn.json)?;
    Ok(exit_code_of(&job))
}

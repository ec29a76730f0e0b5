//! `jobhost run-workflow NAME -p key=value… [--wait]`, `jobhost runs [--workflow NAME]`
//! and `jobhost run-status ID [--watch]`: starting runs and following them step by step
//! (one line per step: its status, tasks done of all, a bar).

use super::conn::Conn;
use clap::Args;
use jobhost_client::Client;
use jobhost_model::{Run, RunStatus, StartRun, TaskStatus};
use std::process::ExitCode;
use std::time::Duration;

/// How often a run is looked at while waiting for it.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// `jobhost run-workflow` options.
#[derive(Debug, Args)]
pub(super) struct RunWorkflowArgs {
    /// The workflow's name.
    name: String,
    /// A parameter (repeatable), `KEY=VALUE`; a value that is valid JSON is taken as
    /// such (`n=3`, `flags=[1,2]`), anything else as a string.
    #[arg(short = 'p', long = "param", value_parser = parse_param)]
    params: Vec<(String, serde_json::Value)>,
    /// Idempotency key.
    #[arg(long)]
    client_run_id: Option<String>,
    /// Wait for the run to end, showing its steps; exit 0 on success, 1 on failure, 130
    /// when cancelled.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    conn: Conn,
}

fn parse_param(s: &str) -> Result<(String, serde_json::Value), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))?;
    let value = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_owned()));
    Ok((k.to_owned(), value))
}

/// Starts the run.
pub(super) async fn run_workflow(args: RunWorkflowArgs) -> anyhow::Result<ExitCode> {
    let client = args.conn.client()?;
    let params: serde_json::Map<String, serde_json::Value> = args.params.into_iter().collect();
    let start = StartRun {
        workflow: args.name,
        params: Some(params.into()),
        client_run_id: args.client_run_id,
        triggered_by: Some("manual".into()),
    };
    let started = client.start_run(&start).await?;
    if !args.wait {
        if args.conn.json {
            println!("{}", serde_json::to_string(&started.run)?);
        } else {
            println!("{}  {}", started.run.id, started.run.status.as_str());
        }
        return Ok(ExitCode::SUCCESS);
    }
    follow(&client, &started.run.id, args.conn.json).await
}

/// `jobhost runs` options.
#[derive(Debug, Args)]
pub(super) struct RunsArgs {
    /// Only runs of this workflow.
    #[arg(long)]
    workflow: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

/// Lists runs, newest first.
pub(super) async fn runs(args: RunsArgs) -> anyhow::Result<ExitCode> {
    let runs = args.conn.client()?.runs(args.workflow.as_deref()).await?;
    if args.conn.json {
        println!("{}", serde_json::to_string(&runs)?);
        return Ok(ExitCode::SUCCESS);
    }
    for r in &runs {
        println!("{}  {:<9}  {}  {}  {}", r.id, r.status.as_str(), r.workflow, r.triggered_by, r.created_at);
    }
    Ok(ExitCode::SUCCESS)
}

/// `jobhost run-status` options.
#[derive(Debug, Args)]
pub(super) struct RunStatusArgs {
    /// The run's id.
    id: String,
    /// Follow the run until it ends (exit code as `run-workflow --wait`).
    #[arg(long)]
    watch: bool,
    #[command(flatten)]
    conn: Conn,
}

/// Shows a run step by step.
pub(super) async fn run_status(args: RunStatusArgs) -> anyhow::Result<ExitCode> {
    let client = args.conn.client()?;
    if args.watch {
        return follow(&client, &args.id, args.conn.json).await;
    }
    let run = client.run(&args.id).await?;
    if args.conn.json {
        println!("{}", serde_json::to_string(&run)?);
    } else {
        print!("{}", status_view(&run));
    }
    Ok(ExitCode::SUCCESS)
}

/// Waits for run `id` to end, redrawing its steps on a terminal; prints it at the end.
async fn follow(client: &Client, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let live = !json && std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut drawn = 0;
    let run = loop {
        let run = client.run(id).await?;
        if live {
            let view = status_view(&run);
            // Back over what was drawn before, then the fresh view.
            print!("{}{view}", "\x1b[1A\x1b[2K".repeat(drawn));
            drawn = view.lines().count();
        }
        if run.status.is_terminal() {
            break run;
        }
        tokio::time::sleep(LOOK_EVERY).await;
    };
    if json {
        println!("{}", serde_json::to_string(&run)?);
    } else if !live {
        print!("{}", status_view(&run));
    }
    Ok(match run.status {
        RunStatus::Success => ExitCode::SUCCESS,
        RunStatus::Cancelled => ExitCode::from(130),
        _ => ExitCode::FAILURE,
    })
}

/// The run and one line per step: status, tasks done of all, a bar.
fn status_view(run: &Run) -> String {
    let mut out = format!("{}  {}  {}", run.id, run.workflow, run.status.as_str());
    if let Some(e) = &run.error {
        out.push_str(&format!("  ({e})"));
    }
    out.push('\n');
    let width = run.steps.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for step in &run.steps {
        let total = step.tasks.len().max(1);
        let done = step.tasks.iter().filter(|t| t.status == TaskStatus::Success).count();
        let failed =
            step.tasks.iter().filter(|t| matches!(t.status, TaskStatus::Failed | TaskStatus::Cancelled)).count();
        let filled = done * 20 / total;
        let status =
            serde_json::to_value(step.status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        out.push_str(&format!(
            "  {:<width$}  {:<9} [{}{}] {done}/{}{}\n",
            step.name,
            status,
            "#".repeat(filled),
            "-".repeat(20 - filled),
            step.tasks.len(),
            if failed > 0 { format!(" ({failed} failed)") } else { String::new() },
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_json_when_they_can_be() {
        assert_eq!(parse_param("n=3").unwrap(), ("n".into(), serde_json::json!(3)));
        assert_eq!(parse_param("name=ada").unwrap(), ("name".into(), serde_json::json!("ada")));
        assert_eq!(parse_param("xs=[1,2]").unwrap(), ("xs".into(), serde_json::json!([1, 2])));
        assert!(parse_param("novalue").is_err());
    }
}

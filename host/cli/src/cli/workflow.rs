//! `jobhost workflow create|update FILE.json|FILE.toml`, `workflow list`, `workflow get
//! NAME`, `workflow delete NAME`: workflows from files (the `workflows.create` request,
//! in JSON or TOML, so `[[steps]]` tables read naturally).

use super::conn::Conn;
use anyhow::Context as _;
use clap::{Args, Subcommand};
use jobhost_model::{Workflow, WorkflowRequest};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `jobhost workflow` options.
#[derive(Debug, Args)]
pub(super) struct WorkflowArgs {
    #[command(subcommand)]
    command: WorkflowCommand,
}

#[derive(Debug, Subcommand)]
enum WorkflowCommand {
    /// Record a workflow from a file (.json or .toml).
    Create {
        /// The definition: name, description, steps, schedule, concurrency.
        file: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
    /// Replace a workflow's definition from a file (.json or .toml).
    Update {
        /// The workflow's current name.
        name: String,
        /// The new definition.
        file: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
    /// List your workflows.
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Show one workflow.
    Get {
        /// Its name.
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete a workflow (its runs are kept).
    Delete {
        /// Its name.
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
}

/// Reads a workflow definition: TOML when the file ends in `.toml`, else JSON.
pub(super) fn read_definition(path: &Path) -> anyhow::Result<WorkflowRequest> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "toml") {
        toml::from_str(&text).with_context(|| format!("{} is not a workflow in TOML", path.display()))
    } else {
        serde_json::from_str(&text).with_context(|| format!("{} is not a workflow in JSON", path.display()))
    }
}

/// Runs the subcommand.
pub(super) async fn exec(args: WorkflowArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        WorkflowCommand::Create { file, conn } => {
            let workflow = conn.client()?.create_workflow(&read_definition(&file)?).await?;
            show(&workflow, conn.json)
        }
        WorkflowCommand::Update { name, file, conn } => {
            let mut params = serde_json::to_value(read_definition(&file)?)?;
            params["workflow"] = name.into();
            let workflow: Workflow = conn.client()?.call("workflows.update", params).await?;
            show(&workflow, conn.json)
        }
        WorkflowCommand::List { conn } => {
            let workflows = conn.client()?.workflows().await?;
            if conn.json {
                println!("{}", serde_json::to_string(&workflows)?);
            }
            for w in workflows.iter().filter(|_| !conn.json) {
                let schedule = w.schedule.as_deref().unwrap_or("-");
                println!("{}  {}  steps={}  schedule={schedule}", w.id, w.name, w.steps.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        WorkflowCommand::Get { name, conn } => {
            let workflow: Workflow = conn.client()?.call("workflows.get", serde_json::json!({ "name": name })).await?;
            println!("{}", serde_json::to_string_pretty(&workflow)?);
            Ok(ExitCode::SUCCESS)
        }
        WorkflowCommand::Delete { name, conn } => {
            let workflow: Workflow =
                conn.client()?.call("workflows.delete", serde_json::json!({ "name": name })).await?;
            show(&workflow, conn.json)
        }
    }
}

fn show(workflow: &Workflow, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string(workflow)?);
    } else {
        let steps: Vec<String> = workflow
            .steps
            .iter()
            .map(|s| if s.tasks() > 1 { format!("{}×{}", s.name, s.tasks()) } else { s.name.clone() })
            .collect();
        println!("{}  {}  steps: {}", workflow.id, workflow.name, steps.join(", "));
        if let Some(next) = &workflow.next_run_at {
            println!("next scheduled run: {next}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workflow_reads_from_toml_and_json_alike() {
        let dir = tempfile::tempdir().unwrap();
        let toml_path = dir.path().join("w.toml");
        std::fs::write(
            &toml_path,
            "name = \"build\"\nschedule = \"0 3 * * *\"\n\n[[steps]]\nname = \"a\"\nplugin = \"p\"\n\n\
             [[steps]]\nname = \"b\"\nplugin = \"p\"\nneeds = [\"a\"]\ntask_count = 4\n",
        )
        .unwrap();
        let json_path = dir.path().join("w.json");
        std::fs::write(
            &json_path,
            r#"{"name": "build", "schedule": "0 3 * * *", "steps": [{"name": "a", "plugin": "p"},
                {"name": "b", "plugin": "p", "needs": ["a"], "task_count": 4}]}"#,
        )
        .unwrap();
        let (from_toml, from_json) = (read_definition(&toml_path).unwrap(), read_definition(&json_path).unwrap());
        assert_eq!(serde_json::to_value(&from_toml).unwrap(), serde_json::to_value(&from_json).unwrap());
        assert_eq!(from_toml.steps[1].needs, ["a"]);
        std::fs::write(&toml_path, "name = \"x\"\n[[steps]]\nname = \"a\"\nunknown = 1\n").unwrap();
        assert!(read_definition(&toml_path).is_err(), "unknown fields are refused");
    }
}

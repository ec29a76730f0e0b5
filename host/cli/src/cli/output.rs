//! What the commands print and how they exit: a job as one text line (or one JSON
//! line with `--json`), a log chunk to the stream it came from, and the process exit
//! code a job's end maps to. Scripts read these formats, so every command that shows
//! a job shows it through here.

use jobhost_model::{Job, JobStatus, LogChunk, LogStream};
use std::io::Write;
use std::process::ExitCode;

/// Writes a chunk of a job's output: stdout's to stdout, the rest to stderr, or the
/// chunk as a JSON line with `json`.
pub(super) fn print_chunk(chunk: &LogChunk, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(chunk)?);
        return Ok(());
    }
    match chunk.stream {
        LogStream::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(chunk.data.as_bytes())?;
            out.flush()?;
        }
        LogStream::Stderr | LogStream::Log | LogStream::System => {
            let mut err = std::io::stderr().lock();
            err.write_all(chunk.data.as_bytes())?;
            err.flush()?;
        }
    }
    Ok(())
}

/// Prints a job: id, status and plugin, then its exit code and error when it has
/// them; the job as a JSON line with `json`.
pub(super) fn print_job(job: &Job, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(job)?);
    } else {
        println!("{}  {}  {}", job.id, job.status, job.plugin);
        if let Some(code) = job.exit_code {
            println!("exit code: {code}");
        }
        if let Some(e) = &job.error {
            println!("error: {e}");
        }
    }
    Ok(())
}

/// The process exit code for a job: its own exit code when it has one, 124 for a
/// timeout and 130 for a cancel (as shells report them), 1 for other failures, 75
/// (EX_TEMPFAIL) when it has not ended.
pub(super) fn exit_code_of(job: &Job) -> ExitCode {
    match job.status {
        JobStatus::Completed => ExitCode::SUCCESS,
        JobStatus::TimedOut => ExitCode::from(124),
        JobStatus::Cancelled => ExitCode::from(130),
        JobStatus::Failed => match job.exit_code {
            Some(c) if (1..=255).contains(&c) => ExitCode::from(c as u8),
            _ => ExitCode::FAILURE,
        },
        _ if !job.status.is_terminal() => ExitCode::from(75),
        _ => ExitCode::SUCCESS,
    }
}

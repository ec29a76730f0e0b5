//! `jobhost bench --container IMAGE`: a trivial container job (`true` in `IMAGE`),
//! submit → completed one at a time through the API, against `docker run --rm` of the
//! same image and command (with the same `--network none`) in the same run.
//!
//! Both sides do the same work on the engine: create, start, wait, remove. What the
//! job adds is the API call, the record's commits, the sandbox directory, the log
//! stream and the artifact walk. The figures (see `BENCHMARKS.md`):
//! `container_job_p50_ms`, `docker_run_p50_ms` and `vs_docker_run`, their ratio.

use super::bench::{self, BenchArgs};
use anyhow::{Context as _, ensure};
use jobhost_model::{JobStatus, SubmitRequest};
use serde::Serialize;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The figures, under the names `BENCHMARKS.md` and the `--json` line use.
#[derive(Debug, Serialize)]
struct Report {
    runs: usize,
    container_job_p50_ms: f64,
    container_job_p99_ms: f64,
    docker_run_p50_ms: f64,
    docker_run_p99_ms: f64,
    vs_docker_run: f64,
}

/// Runs the comparison and prints its report.
pub(super) async fn exec(args: &BenchArgs, image: &str, runs: usize) -> anyhow::Result<ExitCode> {
    ensure!(runs > 0, "--container-runs must be at least 1");
    let tmp = tempfile::tempdir().context("creating a temporary data dir")?;
    let server = bench::start(&tmp.path().join("data"), |c| c.container_engine = true).await?;
    let client = bench::client_of(&server)?;
    let req = SubmitRequest { image: Some(image.to_owned()), command: vec!["true".into()], ..SubmitRequest::default() };
    // One of each first, so neither side pays for a cold image cache in the figures.
    let mut jobs = Vec::with_capacity(runs);
    for n in 0..=runs {
        let t0 = Instant::now();
        let job = client.submit(&req).await?.job;
        let done = client.wait(&job.id, Duration::from_secs(120)).await?;
        ensure!(
            done.status == JobStatus::Completed,
            "container job {} ended {}: {:?}",
            done.id,
            done.status,
            done.error
        );
        if n > 0 {
            jobs.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
    }
    server.stop().await;
    let mut docker = Vec::with_capacity(runs);
    for n in 0..=runs {
        let t0 = Instant::now();
        let out = tokio::process::Command::new("docker")
            .args(["run", "--rm", "--network", "none", image, "true"])
            .output()
            .await
            .context("running docker")?;
        ensure!(out.status.success(), "docker run: {}", String::from_utf8_lossy(&out.stderr));
        if n > 0 {
            docker.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
    }
    jobs.sort_by(f64::total_cmp);
    docker.sort_by(f64::total_cmp);
    let report = Report {
        runs,
        container_job_p50_ms: bench::percentile(&jobs, 50.0),
        container_job_p99_ms: bench::percentile(&jobs, 99.0),
        docker_run_p50_ms: bench::percentile(&docker, 50.0),
        docker_run_p99_ms: bench::percentile(&docker, 99.0),
        vs_docker_run: bench::percentile(&jobs, 50.0) / bench::percentile(&docker, 50.0),
    };
    println!(
        "container job ({runs} runs of `true` in {image}), p50 / p99   {:.1} / {:.1} ms",
        report.container_job_p50_ms, report.container_job_p99_ms
    );
    println!(
        "docker run --rm, same image and command, p50 / p99   {:.1} / {:.1} ms",
        report.docker_run_p50_ms, report.docker_run_p99_ms
    );
    println!("container job vs docker run (p50)                    {:.2}x", report.vs_docker_run);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(ExitCode::SUCCESS)
}

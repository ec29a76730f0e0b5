//! What `jobhost bench` measures beside the job runs: the native process-spawn
//! baseline (`process_spawn_per_s`) and the memory of a server holding many sleeping
//! jobs (`rss_1000_concurrent_mb`, and `idle_rss_mb` through [`rss_mb`]).

use super::bench::{PHASE_TIMEOUT, client_of, count, start};
use anyhow::{Context as _, bail};
use jobhost_model::{JobStatus, SubmitRequest};
use std::path::Path;
use std::time::{Duration, Instant};

/// A WASI 0.2 command that sleeps for [`SLEEP_NS`] on a monotonic-clock pollable and
/// returns `ok`: a job that holds its instance, sandbox and task without using a CPU.
pub(super) const SLEEP_WAT: &str = r#"
(component
  (import "wasi:io/poll@0.2.0" (instance $poll
    (export "pollable" (type (sub resource)))
    (export "[method]pollable.block" (func (param "self" (borrow 0))))))
  (alias export $poll "pollable" (type $pollable))
  (import "wasi:clocks/monotonic-clock@0.2.0" (instance $clock
    (alias outer 1 $pollable (type))
    (export "pollable" (type (eq 0)))
    (export "subscribe-duration" (func (param "when" u64) (result (own 1))))))
  (core func $subscribe (canon lower (func $clock "subscribe-duration")))
  (core func $block (canon lower (func $poll "[method]pollable.block")))
  (core func $drop (canon resource.drop $pollable))
  (core module $m
    (import "host" "subscribe" (func $subscribe (param i64) (result i32)))
    (import "host" "block" (func $block (param i32)))
    (import "host" "drop" (func $drop (param i32)))
    (func (export "run") (result i32)
      (local $p i32)
      (local.set $p (call $subscribe (i64.const SLEEP_NS)))
      (call $block (local.get $p))
      (call $drop (local.get $p))
      (i32.const 0)))
  (core instance $host
    (export "subscribe" (func $subscribe))
    (export "block" (func $block))
    (export "drop" (func $drop)))
  (core instance $i (instantiate $m (with "host" (instance $host))))
  (func $run (result (result)) (canon lift (core func $i "run")))
  (instance $cli-run (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $cli-run)))
"#;

/// How long a sleeping job sleeps: far longer than the measurement, which cancels the
/// jobs once it has its figure.
pub(super) const SLEEP_NS: u64 = 600_000_000_000;

/// `n` native processes doing nothing, spawned and reaped by one thread per core:
/// processes per second.
pub(super) async fn spawn_rate(n: usize) -> anyhow::Result<f64> {
    let program = if Path::new("/bin/true").exists() { "/bin/true" } else { "true" };
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get()).min(n);
    tokio::task::spawn_blocking(move || {
        let t0 = Instant::now();
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let share = n / threads + usize::from(t < n % threads);
                    s.spawn(move || -> std::io::Result<()> {
                        for _ in 0..share {
                            let status = std::process::Command::new(program)
                                .stdin(std::process::Stdio::null())
                                .stdout(std::process::Stdio::null())
                                .stderr(std::process::Stdio::null())
                                .status()?;
                            if !status.success() {
                                return Err(std::io::Error::other(format!("{program} exited with {status}")));
                            }
                        }
                        Ok(())
                    })
                })
                .collect();
            for w in workers {
                match w.join() {
                    Ok(r) => r.with_context(|| format!("spawning {program}"))?,
                    Err(_) => bail!("a spawning thread panicked"),
                }
            }
            Ok(())
        })?;
        Ok(n as f64 / t0.elapsed().as_secs_f64())
    })
    .await
    .context("the spawning task")?
}

/// RSS of this process with `n` sleeping jobs running at once on a server whose
/// concurrency and capacity allow them all, MB. The jobs are cancelled afterwards.
pub(super) async fn concurrent_rss(data: &Path, sleeper: &[u8], n: usize) -> anyhow::Result<f64> {
    let per_job_mb = 16;
    let server = start(data, |c| {
        c.concurrency = n;
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        c.limits.capacity_cpus = c.limits.capacity_cpus.max(n);
        c.limits.capacity_memory_mb = c.limits.capacity_memory_mb.max(n.saturating_mul(per_job_mb));
    })
    .await?;
    let client = client_of(&server)?;
    client.install("sleep", sleeper).await?;
    let events = client.websocket().await?;
    let req = SubmitRequest {
        plugin: "sleep".into(),
        memory_mb: Some(per_job_mb),
        timeout_s: Some(u32::try_from(SLEEP_NS / 1_000_000_000).unwrap_or(u32::MAX)),
        ..SubmitRequest::default()
    };
    let mut ids = Vec::with_capacity(n);
    let batch = vec![req; n.min(1000)];
    while ids.len() < n {
        let size = (n - ids.len()).min(batch.len());
        for a in events.submit_batch(&batch[..size]).await? {
            ids.push(a.context("submitting a sleeping job")?.job.id);
        }
    }
    let deadline = Instant::now() + PHASE_TIMEOUT;
    let running = loop {
        let usage = client.usage().await?;
        if usage.running_jobs as usize >= n && count(&client, JobStatus::Running).await? >= n {
            break rss_mb()?;
        }
        if Instant::now() > deadline {
            bail!("{n} sleeping jobs were not all running within {} s", PHASE_TIMEOUT.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for chunk in ids.chunks(1000) {
        let params = chunk
            .iter()
            .map(|id| {
                let mut p = serde_json::Map::new();
                p.insert("id".into(), id.clone().into());
                p
            })
            .collect();
        for a in events.batch::<jobhost_model::Job>("jobs.cancel", params).await? {
            a.context("cancelling a sleeping job")?;
        }
    }
    drop(events);
    server.stop().await;
    Ok(running)
}

/// Resident set size of this process (`VmRSS` in `/proc/self/status`), MB.
pub(super) fn rss_mb() -> anyhow::Result<f64> {
    rss_mb_of("self")
}

/// Resident set size of process `pid` (`self` for this one), MB.
pub(super) fn rss_mb_of(pid: &str) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no VmRSS in {path}"))?;
    Ok(kb / 1024.0)
}

//! `jobhost bench --traces`: what watching costs. The no-op throughput (as `jobhost
//! bench` measures it) on fresh in-process servers, alternately with job traces off
//! and on, `--rounds` times each (off first in odd rounds, on first in even ones); on,
//! every job's spans go over OTLP/HTTP to a receiver in this process (which reads and
//! drops them, counting the requests and bytes).
//! Either way `/metrics` is scraped every second, as a Prometheus server would. It
//! prints the median of each and their ratio (see `BENCHMARKS.md`), and the process's
//! CPU time a job in each: on a machine whose throughput moves by more than the gap
//! being measured, the CPU a traced job adds is the steadier figure.

use super::bench::{self, BenchArgs};
use crate::telemetry::{self, Traces};
use anyhow::Context as _;
use serde::Serialize;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

/// The figures, under the names `BENCHMARKS.md` and the `--json` line use.
#[derive(Debug, Serialize)]
struct Report {
    jobs_per_run: usize,
    untraced_jobs_per_s: Vec<f64>,
    traced_jobs_per_s: Vec<f64>,
    untraced_median: f64,
    traced_median: f64,
    traced_vs_untraced: f64,
    /// Each round's traced run over its untraced one: the two ran back to back, so
    /// what the machine did for minutes moves both.
    traced_vs_untraced_by_round: Vec<f64>,
    /// The process's CPU time (all threads) over each run's submits and runs, a job.
    untraced_cpu_us_per_job: Vec<f64>,
    traced_cpu_us_per_job: Vec<f64>,
    /// The medians' difference: what tracing a job costs in CPU.
    cpu_us_per_traced_job: f64,
    otlp_requests: u64,
    otlp_bytes: u64,
}

/// Runs the comparison and prints its report.
pub(super) async fn exec(args: &BenchArgs, noop: &[u8]) -> anyhow::Result<ExitCode> {
    let sink = Sink::start().await?;
    let telemetry = telemetry::init("warn", Traces::To(format!("http://{}", sink.addr)))?;
    let (mut untraced, mut traced) = (Vec::new(), Vec::new());
    let (mut untraced_cpu, mut traced_cpu) = (Vec::new(), Vec::new());
    let rounds = args.rounds;
    for round in 1..=rounds {
        // Which goes first changes every round: the second run of a pair meets the
        // disk the first one left (its WAL, its deleted data dir), which would
        // otherwise count against one side only.
        let order = if round % 2 == 1 { [false, true] } else { [true, false] };
        for traces in order {
            if !args.json {
                eprintln!("bench: round {round} of {rounds}, traces {}", if traces { "on" } else { "off" });
            }
            let (rate, cpu) = run(args, noop, if traces { telemetry.traces() } else { None }).await?;
            if traces { &mut traced } else { &mut untraced }.push(rate);
            let cpu_us_per_job = cpu.as_secs_f64() * 1e6 / args.jobs as f64;
            if traces { &mut traced_cpu } else { &mut untraced_cpu }.push(cpu_us_per_job);
        }
    }
    telemetry.shutdown().await;
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        bench::percentile(v, 50.0)
    };
    let (untraced_median, traced_median) = (median(&mut untraced.clone()), median(&mut traced.clone()));
    let by_round = traced.iter().zip(&untraced).map(|(on, off)| on / off).collect();
    let cpu_us_per_traced_job = median(&mut traced_cpu.clone()) - median(&mut untraced_cpu.clone());
    let report = Report {
        jobs_per_run: args.jobs,
        untraced_jobs_per_s: untraced,
        traced_jobs_per_s: traced,
        untraced_median,
        traced_median,
        traced_vs_untraced: traced_median / untraced_median,
        traced_vs_untraced_by_round: by_round,
        untraced_cpu_us_per_job: untraced_cpu,
        traced_cpu_us_per_job: traced_cpu,
        cpu_us_per_traced_job,
        otlp_requests: sink.requests.load(Ordering::Relaxed),
        otlp_bytes: sink.bytes.load(Ordering::Relaxed),
    };
    if report.otlp_bytes == 0 {
        eprintln!("bench: the traced runs exported nothing (does OTEL_TRACES_SAMPLER sample nothing?)");
    }
    println!("no-op jobs per run                        {}", report.jobs_per_run);
    println!("throughput, traces off (median of {rounds})    {:.0} jobs/s", report.untraced_median);
    println!("throughput, traces on  (median of {rounds})    {:.0} jobs/s", report.traced_median);
    println!("traced / untraced                          {:.3}", report.traced_vs_untraced);
    let by_round: Vec<String> = report.traced_vs_untraced_by_round.iter().map(|r| format!("{r:.3}")).collect();
    println!("traced / untraced, each round              {}", by_round.join(" "));
    println!("CPU a traced job adds (medians)            {:.1} µs", report.cpu_us_per_traced_job);
    println!(
        "exported                                   {} requests, {} bytes",
        report.otlp_requests, report.otlp_bytes
    );
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// One throughput run on a fresh server, traces `traces`, `/metrics` scraped each
/// second: its jobs a second, and the process's CPU time over the submits and runs.
async fn run(
    args: &BenchArgs,
    noop: &[u8],
    traces: Option<std::sync::Arc<dyn jobhost_server::jobs::trace::TraceSink>>,
) -> anyhow::Result<(f64, Duration)> {
    let tmp = tempfile::tempdir().context("creating a temporary data dir")?;
    let server = bench::start(&tmp.path().join("data"), |c| {
        bench::concurrency(c, args);
        c.job_traces = traces;
    })
    .await?;
    let client = bench::client_of(&server)?;
    client.install("noop", noop).await?;
    bench::run_one(&client).await?;
    let scraper = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if client.http_request("GET", "/metrics", Vec::new()).await.is_err() {
                return;
            }
        }
    });
    let events = bench::client_of(&server)?.websocket().await?;
    let cpu = cpu_time::ProcessTime::try_now().context("reading the process's CPU time")?;
    let rate = bench::throughput(&[&server], &events, args, &bench::noop_request()).await;
    let cpu = cpu.try_elapsed().context("reading the process's CPU time")?;
    scraper.abort();
    drop(events);
    server.stop().await;
    Ok((rate?, cpu))
}

/// An OTLP/HTTP receiver that reads every request and answers `200`.
pub(crate) struct Sink {
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) requests: Arc<AtomicU64>,
    pub(crate) bytes: Arc<AtomicU64>,
}

impl Sink {
    pub(crate) async fn start() -> anyhow::Result<Sink> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the OTLP receiver")?;
        let addr = listener.local_addr()?;
        let (requests, bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (r, b) = (requests.clone(), bytes.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, r.clone(), b.clone()));
            }
        });
        Ok(Sink { addr, requests, bytes })
    }
}

/// Requests one after another on one connection, each with a `Content-Length`.
async fn serve(stream: tokio::net::TcpStream, requests: Arc<AtomicU64>, bytes: Arc<AtomicU64>) -> std::io::Result<()> {
    let mut stream = tokio::io::BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if stream.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut len = 0usize;
        loop {
            line.clear();
            stream.read_line(&mut line).await?;
            if line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                len = value.trim().parse().unwrap_or(0);
            }
        }
        // Read and dropped through one small buffer: the receiver should cost little
        // beside what it measures.
        let mut left = len;
        while left > 0 {
            let got = stream.fill_buf().await?.len().min(left);
            if got == 0 {
                return Ok(());
            }
            stream.consume(got);
            left -= got;
        }
        requests.fetch_add(1, Ordering::Relaxed);
        bytes.fetch_add(len as u64, Ordering::Relaxed);
        stream.get_mut().write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await?;
    }
}

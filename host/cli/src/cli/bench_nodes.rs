//! `jobhost bench --database-url URL --nodes N`: throughput and latency of N servers
//! sharing one PostgreSQL database, beside one server on SQLite in the same run.
//!
//! The nodes run in this process, each with a data dir, a store and a job runtime of
//! its own, on a schema made for the run in the given database (dropped after it);
//! jobs are submitted through the first node, and every node claims from the one
//! queue, woken by the others' notifications. Durability is the production setting on
//! both (`synchronous_commit` as the server has it, on by default; SQLite
//! `synchronous=FULL`): a submit counts once its commit is on disk. The figures (see
//! `BENCHMARKS.md`): `postgres_throughput_jobs_per_s` (`--jobs` no-op jobs, first
//! submit to last completion), `postgres_latency_p50_ms`/`_p99_ms` (submit →
//! completed, one at a time), how many jobs each node ran, and the same two figures on
//! SQLite.

use super::bench::{self, BenchArgs};
use anyhow::Context as _;
use jobhost_model::JobStatus;
use jobhost_server::{DatabaseUrl, RunningServer};
use jobhost_store::postgres::scratch::Scratch;
use serde::Serialize;
use std::collections::BTreeMap;
use std::process::ExitCode;

/// The figures, under the names `BENCHMARKS.md` and the `--json` line use.
#[derive(Debug, Serialize)]
struct Report {
    nodes: usize,
    postgres_throughput_jobs_per_s: f64,
    postgres_latency_p50_ms: f64,
    postgres_latency_p99_ms: f64,
    /// Jobs of the throughput run each node ran, by node name.
    jobs_per_node: BTreeMap<String, usize>,
    sqlite_throughput_jobs_per_s: f64,
    sqlite_latency_p50_ms: f64,
    sqlite_latency_p99_ms: f64,
}

/// Runs the comparison and prints its report.
pub(super) async fn exec(args: &BenchArgs, url: &str, nodes: usize, noop: &[u8]) -> anyhow::Result<ExitCode> {
    let say = |what: &str| {
        if !args.json {
            eprintln!("bench: {what}");
        }
    };
    let tmp = tempfile::tempdir().context("creating a temporary data dir")?;
    let scratch = Scratch::create(url, "jobhost_bench_").await.context("making a schema for the run")?;

    say(&format!("{nodes} nodes on PostgreSQL"));
    let mut servers = Vec::with_capacity(nodes);
    for n in 0..nodes {
        let database = DatabaseUrl(scratch.url());
        servers.push(
            bench::start(&tmp.path().join(format!("node-{n}")), |c| {
                bench::concurrency(c, args);
                c.database_url = Some(database);
                c.node.name = Some(format!("node-{n}"));
            })
            .await?,
        );
    }
    let on_pg = measure(&servers.iter().collect::<Vec<_>>(), args, noop).await;
    let jobs_per_node = match &on_pg {
        Ok(_) => per_node(&servers[0]).await,
        Err(_) => Ok(BTreeMap::new()),
    };
    for server in servers {
        server.stop().await;
    }
    scratch.drop_now().await.context("dropping the run's schema")?;
    let (pg_throughput, pg_latencies) = on_pg?;

    say("one node on SQLite");
    let sqlite = bench::start(&tmp.path().join("sqlite"), |c| bench::concurrency(c, args)).await?;
    let on_sqlite = measure(&[&sqlite], args, noop).await;
    sqlite.stop().await;
    let (sqlite_throughput, sqlite_latencies) = on_sqlite?;

    let report = Report {
        nodes,
        postgres_throughput_jobs_per_s: pg_throughput,
        postgres_latency_p50_ms: bench::percentile(&pg_latencies, 50.0),
        postgres_latency_p99_ms: bench::percentile(&pg_latencies, 99.0),
        jobs_per_node: jobs_per_node?,
        sqlite_throughput_jobs_per_s: sqlite_throughput,
        sqlite_latency_p50_ms: bench::percentile(&sqlite_latencies, 50.0),
        sqlite_latency_p99_ms: bench::percentile(&sqlite_latencies, 99.0),
    };
    print_table(&report, args);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// Installs the no-op through the first node, then measures latency and throughput
/// through it: jobs per second, and the sorted latencies in ms.
async fn measure(nodes: &[&RunningServer], args: &BenchArgs, noop: &[u8]) -> anyhow::Result<(f64, Vec<f64>)> {
    let first = nodes.first().context("no node")?;
    let client = bench::client_of(first)?;
    client.install("noop", noop).await?;
    bench::run_one(&client).await?;
    let events = client.websocket().await?;
    let latencies = bench::latency(&events, args.latency_jobs).await?;
    let throughput = bench::throughput(nodes, &events, args, &bench::noop_request()).await?;
    Ok((throughput, latencies))
}

/// How many completed jobs each node ran, by name.
async fn per_node(server: &RunningServer) -> anyhow::Result<BTreeMap<String, usize>> {
    let client = bench::client_of(server)?;
    let names: BTreeMap<String, String> = client.workers().await?.into_iter().map(|w| (w.id, w.name)).collect();
    let mut ran = BTreeMap::new();
    let mut cursor = None;
    loop {
        let page = client.list(Some(JobStatus::Completed), cursor.as_deref(), Some(jobhost_model::MAX_PAGE)).await?;
        for job in &page.jobs {
            let node = job.worker_id.as_ref().and_then(|w| names.get(w)).cloned().unwrap_or_else(|| "?".into());
            *ran.entry(node).or_default() += 1;
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(ran),
        }
    }
}

fn print_table(r: &Report, args: &BenchArgs) {
    let mut rows = vec![
        (
            format!("PostgreSQL, {} nodes: throughput ({} no-op jobs)", r.nodes, args.jobs),
            format!("{:.0} jobs/s", r.postgres_throughput_jobs_per_s),
        ),
        (
            format!("PostgreSQL: latency p50 ({} jobs, one at a time)", args.latency_jobs),
            format!("{:.2} ms", r.postgres_latency_p50_ms),
        ),
        ("PostgreSQL: latency p99".into(), format!("{:.2} ms", r.postgres_latency_p99_ms)),
    ];
    for (node, n) in &r.jobs_per_node {
        rows.push((format!("PostgreSQL: jobs run by {node}"), n.to_string()));
    }
    rows.extend([
        ("SQLite, 1 node: throughput".into(), format!("{:.0} jobs/s", r.sqlite_throughput_jobs_per_s)),
        ("SQLite: latency p50".into(), format!("{:.2} ms", r.sqlite_latency_p50_ms)),
        ("SQLite: latency p99".into(), format!("{:.2} ms", r.sqlite_latency_p99_ms)),
    ]);
    let width = rows.iter().map(|(k, _): &(String, String)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        println!("{k:<width$}  {v:>14}");
    }
}

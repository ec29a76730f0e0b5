//! `jobhost bench --subscriptions N`: the memory a server spends on open
//! subscriptions, and whether it gives it back. A `jobhost serve` of this binary runs
//! as a child process on a fresh data dir, so its resident set is its own; this
//! process opens `--sockets` WebSockets holding N `jobs.subscribe` each, then closes
//! them all, three times over. The child's RSS is read before, with everything open,
//! and after everything closed (once the server has seen every socket go, and 2 s
//! more, in which it gives its free memory back): memory a leak keeps would grow round
//! after round, memory the allocator keeps would not.

use super::bench::BenchArgs;
use super::bench_baselines::rss_mb_of;
use anyhow::{Context as _, bail, ensure};
use jobhost_client::Client;
use serde::Serialize;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt as _;

/// Rounds of open-all, close-all.
const ROUNDS: usize = 3;

/// One round's figures.
#[derive(Debug, Serialize)]
struct Round {
    open_rss_mb: f64,
    closed_rss_mb: f64,
}

/// The figures, under the names `BENCHMARKS.md` and the `--json` line use.
#[derive(Debug, Serialize)]
struct Report {
    sockets: u32,
    subscriptions_per_socket: u32,
    before_rss_mb: f64,
    rounds: Vec<Round>,
    /// RSS with every socket closed, after the last round, over RSS before.
    after_over_before: f64,
    /// Bytes of RSS per open subscription, from the first round.
    bytes_per_subscription: f64,
}

/// Runs the rounds and prints the report.
pub(super) async fn exec(args: &BenchArgs, per_socket: u32) -> anyhow::Result<ExitCode> {
    ensure!(per_socket > 0, "--subscriptions must be at least 1");
    ensure!(args.sockets > 0, "--sockets must be at least 1");
    let tmp = tempfile::tempdir().context("creating a temporary data dir")?;
    let data = tmp.path().join("data");
    let total = u64::from(per_socket) * u64::from(args.sockets);
    let mut child = tokio::process::Command::new(std::env::current_exe().context("finding this binary")?)
        .arg("serve")
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0", "--container-engine", "none"])
        .args(["--max-subscriptions-per-token", &total.to_string()])
        .args(["--max-connections-per-token", &(args.sockets + 16).to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting `jobhost serve`")?;
    let pid = child.id().context("the server exited at once")?.to_string();
    let url = listening_on(&mut child).await?;
    let token = std::fs::read_to_string(data.join("token")).context("reading the server's token")?;
    let client = Client::with_token(&url, Some(token.trim()))?;
    client.health().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_rss_mb = rss_mb_of(&pid)?;
    let mut rounds = Vec::new();
    for round in 1..=ROUNDS {
        let mut open = Vec::new();
        for _ in 0..args.sockets {
            let socket = client.websocket().await?;
            let mut subs = Vec::new();
            for _ in 0..per_socket {
                subs.push(socket.subscribe(None).await?);
            }
            open.push((socket, subs));
        }
        let open_rss_mb = rss_mb_of(&pid)?;
        drop(open);
        // Every socket seen gone: this token can hold its whole cap again.
        settled(&client).await?;
        // The server gives its free memory back a second after sockets close.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let closed_rss_mb = rss_mb_of(&pid)?;
        if !args.json {
            eprintln!("bench: round {round}: open {open_rss_mb:.1} MB, closed {closed_rss_mb:.1} MB");
        }
        rounds.push(Round { open_rss_mb, closed_rss_mb });
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    let last = rounds.last().map_or(before_rss_mb, |r| r.closed_rss_mb);
    let report = Report {
        sockets: args.sockets,
        subscriptions_per_socket: per_socket,
        before_rss_mb,
        after_over_before: last / before_rss_mb,
        bytes_per_subscription: (rounds[0].open_rss_mb - before_rss_mb) * 1024.0 * 1024.0 / total as f64,
        rounds,
    };
    println!("{} sockets × {} subscriptions on a `jobhost serve` process", report.sockets, per_socket);
    println!("RSS before                                       {:>8.1} MB", report.before_rss_mb);
    for (n, r) in report.rounds.iter().enumerate() {
        println!(
            "round {}: all open / all closed                 {:>8.1} / {:.1} MB",
            n + 1,
            r.open_rss_mb,
            r.closed_rss_mb
        );
    }
    println!("after / before                                   {:>8.2}", report.after_over_before);
    println!("bytes per open subscription                      {:>8.0}", report.bytes_per_subscription);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// The URL the child prints once it listens (`jobhost … listening on http://…`); its
/// later output is read and dropped so it never blocks on a full pipe.
async fn listening_on(child: &mut tokio::process::Child) -> anyhow::Result<String> {
    let stderr = child.stderr.take().context("the server's stderr")?;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let deadline = Instant::now() + super::bench::PHASE_TIMEOUT;
    while Instant::now() < deadline {
        let Some(line) = lines.next_line().await? else { bail!("the server exited before it listened") };
        if let Some((_, url)) = line.split_once("listening on ") {
            let url = url.trim().to_owned();
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok(url);
        }
    }
    bail!("the server did not listen in time")
}

/// Waits until the server's `/metrics` show no subscription open and no WebSocket
/// left (the one connection open is the client's own, asking).
async fn settled(client: &Client) -> anyhow::Result<()> {
    let deadline = Instant::now() + super::bench::PHASE_TIMEOUT;
    while Instant::now() < deadline {
        let answer = client.http_request("GET", "/metrics", Vec::new()).await?;
        let text = String::from_utf8_lossy(&answer.body).into_owned();
        let gauge = |name: &str| {
            text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok()).unwrap_or(f64::NAN)
        };
        if gauge("jobhost_subscriptions_open ") == 0.0 && gauge("jobhost_connections_open ") <= 1.0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the server still holds subscriptions")
}

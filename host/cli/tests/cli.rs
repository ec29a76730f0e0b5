//! The `jobhost` binary as a user runs it: `jobhost run` with an embedded server (with
//! its progress bar on a terminal), and a server process killed with SIGKILL and
//! started again on the same data dir.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jobhost_client::Client;
use jobhost_model::JobStatus;
use jobhost_model::SubmitRequest;
use jobhost_store::Store as _;
use jobhost_tests::{PROBE_WASM, STEPS_WASM};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_jobhost");
/// A loopback port nothing listens on, so `run` must bring up its own server.
const NO_SERVER: &str = "http://127.0.0.1:1";

#[test]
fn run_streams_output_and_exits_with_the_job_exit_code() {
    let ok = Command::new(BIN).args(["run", "--server", NO_SERVER, PROBE_WASM, "--", "echo", "hi"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(ok.status.code(), Some(0), "{stdout} {}", String::from_utf8_lossy(&ok.stderr));
    assert!(stdout.contains("arg:hi"), "{stdout}");
    assert!(String::from_utf8_lossy(&ok.stderr).contains("to-stderr"));

    let three = Command::new(BIN).args(["run", "--server", NO_SERVER, PROBE_WASM, "--", "exit", "3"]).output().unwrap();
    assert_eq!(three.status.code(), Some(3), "{}", String::from_utf8_lossy(&three.stderr));
    assert!(String::from_utf8_lossy(&three.stdout).contains("exiting 3"));
}

#[test]
fn run_takes_a_fractional_cpu_request_and_refuses_a_bad_one() {
    let half = Command::new(BIN)
        .args(["run", "--json", "--cpus", "0.5", "--server", NO_SERVER, PROBE_WASM, "--", "echo", "hi"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&half.stdout);
    assert_eq!(half.status.code(), Some(0), "{stdout} {}", String::from_utf8_lossy(&half.stderr));
    let job: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(job["cpus"], serde_json::json!(0.5), "{job}");

    let zero = Command::new(BIN).args(["run", "--cpus", "0", "--server", NO_SERVER, PROBE_WASM]).output().unwrap();
    assert_eq!(zero.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&zero.stderr).contains("not a number of CPUs"));
}

/// Runs `jobhost ARGS` with a terminal for stdin/stdout/stderr (util-linux `script`),
/// returning everything the terminal showed.
fn on_a_terminal(args: &str) -> String {
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &format!("{BIN} {args}"), "/dev/null"])
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .expect("running `script` (util-linux) to give the command a terminal");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{args}: {}\n{text}", out.status);
    text
}

#[test]
fn run_shows_a_progress_bar_on_a_terminal_but_never_in_json_mode() {
    let job = format!("run --server {NO_SERVER} --input '{{\"steps\":4,\"interval_ms\":300}}' {STEPS_WASM}");
    let shown = on_a_terminal(&job);
    assert!(shown.contains("step 4\r\n") || shown.contains("step 4\n"), "{shown:?}");
    // The bar: position/length and the job's message, drawn with terminal escapes.
    assert!(shown.contains("/4 step "), "no progress bar in {shown:?}");
    assert!(shown.contains('\x1b'), "{shown:?}");

    let json = on_a_terminal(&format!("{job} --json"));
    assert!(!json.contains('\x1b') && !json.contains("/4 step "), "a bar in --json output: {json:?}");
    for line in json.lines().map(str::trim).filter(|l| !l.is_empty()) {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_and_logs_follow_show_the_bar_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, url) = serve(dir.path());
    let token_path = dir.path().join("token");
    let token = jobhost_server::auth::read_token_file(&token_path).unwrap();
    let client = Client::with_token(&url, Some(&token)).unwrap();
    client.install("steps", &std::fs::read(STEPS_WASM).unwrap()).await.unwrap();
    for command in ["wait", "logs -f"] {
        let req = SubmitRequest {
            plugin: "steps".into(),
            input: Some(serde_json::json!({ "steps": 6, "interval_ms": 400 })),
            ..SubmitRequest::default()
        };
        let id = client.submit(&req).await.unwrap().job.id;
        let args = format!("{command} --server {url} --token-file {} {id}", token_path.display());
        let shown = tokio::task::spawn_blocking(move || on_a_terminal(&args)).await.unwrap();
        assert!(shown.contains("/6 step "), "no progress bar from `{command}`: {shown:?}");
        assert_eq!(client.get(&id).await.unwrap().status, JobStatus::Completed);
    }
    server.kill().unwrap();
    server.wait().unwrap();
}

/// Starts `jobhost serve` on a free loopback port and returns it with its URL.
fn serve(data_dir: &std::path::Path) -> (Child, String) {
    let (child, url, _) = serve_logged(data_dir, "warn");
    (child, url)
}

/// Starts `jobhost serve` logging at `level`; the log collects in the returned buffer.
fn serve_logged(data_dir: &std::path::Path, level: &str) -> (Child, String, Arc<Mutex<String>>) {
    serve_with(data_dir, level, &["--concurrency", "2"])
}

/// Starts `jobhost serve` with `extra` flags, logging at `level`.
fn serve_with(data_dir: &std::path::Path, level: &str, extra: &[&str]) -> (Child, String, Arc<Mutex<String>>) {
    serve_env(data_dir, level, extra, &[])
}

/// [`serve_with`], with `env` set.
fn serve_env(
    data_dir: &std::path::Path,
    level: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Child, String, Arc<Mutex<String>>) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env("JOBHOST_LOG", level)
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("server exited before listening").unwrap();
        log.lock().unwrap().push_str(&format!("{line}\n"));
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.trim().to_owned();
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push_str(&format!("{line}\n"));
        }
    });
    (child, url, log)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_log_holds_the_token_path_but_never_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, url, log) = serve_logged(dir.path(), "debug");
    let token_path = dir.path().join("token");
    let admin = jobhost_server::auth::read_token_file(&token_path).unwrap();
    let client = Client::with_token(&url, Some(&admin)).unwrap();
    let minted = client.create_token(None, &[jobhost_model::Scope::Read], None).await.unwrap();
    let bad = Client::with_token(&url, Some("jh_wrongwrongwrongwrongwrongwrongwrongwrongwro")).unwrap();
    assert!(bad.list(None, None, None).await.is_err());
    // The CLI finds the token through --token-file.
    let out =
        Command::new(BIN).args(["jobs", "--json", "--server", &url, "--token-file"]).arg(&token_path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let gc =
        Command::new(BIN).args(["gc", "--json", "--server", &url, "--token-file"]).arg(&token_path).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&gc.stdout).unwrap();
    assert_eq!(report["jobs_cleaned"], 0, "{report}");
    assert_eq!(report["uploads_expired"], 0, "{report}");
    // A token without the admin scope may not sweep.
    let denied = Command::new(BIN).args(["gc", "--server", &url, "--token", &minted.token]).output().unwrap();
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("forbidden"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    server.kill().unwrap();
    server.wait().unwrap();
    let log = log.lock().unwrap().clone();
    assert!(log.contains(&token_path.display().to_string()), "the log names the token file:\n{log}");
    for secret in [&admin, &minted.token] {
        assert!(!log.contains(secret.as_str()), "a token is in the server log:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_server_loses_no_job() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, url) = serve(dir.path());
    let token = jobhost_server::auth::read_token_file(&dir.path().join("token")).unwrap();
    let client = Client::with_token(&url, Some(&token)).unwrap();
    client.install("probe", &std::fs::read(PROBE_WASM).unwrap()).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..12 {
        let req = SubmitRequest {
            plugin: "probe".into(),
            args: vec!["sleep".into(), "1".into()],
            ..SubmitRequest::default()
        };
        ids.push(client.submit(&req).await.unwrap().job.id);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let running = client.list(Some(JobStatus::Running), None, None).await.unwrap().jobs.len();
        if running == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "jobs never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().unwrap(); // SIGKILL: no shutdown code runs.
    first.wait().unwrap();

    let (mut second, url) = serve(dir.path());
    let client = Client::with_token(&url, Some(&token)).unwrap();
    let mut failed = 0;
    for id in &ids {
        let job = client.wait(id, Duration::from_secs(60)).await.unwrap();
        match job.status {
            JobStatus::Completed => {}
            JobStatus::Failed => {
                failed += 1;
                assert!(job.error.unwrap_or_default().contains("host stopped"), "{id}");
            }
            other => panic!("job {id} ended {other}"),
        }
    }
    // The two that were running had their one attempt; every other job ran.
    assert_eq!(failed, 2);
    second.kill().unwrap();
    second.wait().unwrap();

    let store = jobhost_store::SqliteStore::open(&dir.path().join("jobhost.db")).await.unwrap();
    assert_eq!(store.integrity_check().await.unwrap(), "ok");
}

/// A server killed with SIGKILL while three container jobs run: started again, it
/// removes the containers its previous process left, and every job ends.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_server_leaves_no_container_behind() {
    let image = tokio::task::spawn_blocking(jobhost_tests::busybox_image).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut first, url, _) = serve_with(dir.path(), "warn", &["--concurrency", "4"]);
    let token = jobhost_server::auth::read_token_file(&dir.path().join("token")).unwrap();
    let client = Client::with_token(&url, Some(&token)).unwrap();
    let req = SubmitRequest {
        image: Some(image.into()),
        command: vec!["sleep".into(), "300".into()],
        ..SubmitRequest::default()
    };
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(client.submit(&req).await.unwrap().job.id);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while ids.iter().any(|id| jobhost_tests::containers_of_job(id).is_empty()) {
        assert!(Instant::now() < deadline, "the containers never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first.kill().unwrap(); // SIGKILL: the containers run on without it.
    first.wait().unwrap();
    assert!(ids.iter().all(|id| !jobhost_tests::containers_of_job(id).is_empty()));

    let (mut second, url, _) = serve_with(dir.path(), "warn", &["--concurrency", "4"]);
    let client = Client::with_token(&url, Some(&token)).unwrap();
    for id in &ids {
        let job = client.wait(id, Duration::from_secs(60)).await.unwrap();
        assert_eq!(job.status, JobStatus::Failed, "{job:?}");
        assert!(job.error.unwrap_or_default().contains("host stopped"), "{id}");
        assert_eq!(jobhost_tests::containers_of_job(id), "", "a container of {id} was left behind");
    }
    second.kill().unwrap();
    second.wait().unwrap();
}

#[test]
fn bench_of_containers_prints_its_figures_as_one_json_line() {
    let image = jobhost_tests::busybox_image();
    let out =
        Command::new(BIN).args(["bench", "--container", image, "--container-runs", "2", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    for figure in
        ["container_job_p50_ms", "container_job_p99_ms", "docker_run_p50_ms", "docker_run_p99_ms", "vs_docker_run"]
    {
        assert!(report[figure].as_f64().is_some_and(|v| v > 0.0), "{figure} in {report}");
    }
    assert_eq!(report["runs"], 2);
}

#[test]
fn bench_of_a_workflow_fan_out_prints_its_figures_as_one_json_line() {
    let out = Command::new(BIN).args(["bench", "--workflow-tasks", "300", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(report["tasks"], 300);
    for figure in ["run_s", "tasks_per_s"] {
        assert!(report[figure].as_f64().is_some_and(|v| v > 0.0), "{figure} in {report}");
    }
}

#[test]
fn bench_of_an_archive_unpack_prints_its_figures_as_one_json_line() {
    let out = Command::new(BIN).args(["bench", "--unpack-files", "500", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(report["files"], 500, "{report}");
    for figure in ["archive_bytes", "unpack_s", "files_per_s"] {
        assert!(report[figure].as_f64().is_some_and(|v| v > 0.0), "{figure} in {report}");
    }
}

#[test]
fn bench_of_subscriptions_measures_a_server_process_and_sees_them_all_closed() {
    let out = Command::new(BIN).args(["bench", "--subscriptions", "64", "--sockets", "4", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    assert_eq!((report["sockets"].as_u64(), report["subscriptions_per_socket"].as_u64()), (Some(4), Some(64)));
    let rounds = report["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 3, "{report}");
    for round in rounds {
        for figure in ["open_rss_mb", "closed_rss_mb"] {
            assert!(round[figure].as_f64().is_some_and(|v| v > 0.0), "{figure} in {report}");
        }
    }
    assert!(report["before_rss_mb"].as_f64().is_some_and(|v| v > 0.0), "{report}");
}

#[test]
fn bench_of_traces_compares_runs_with_and_without_and_exports_spans() {
    let out =
        Command::new(BIN).args(["bench", "--traces", "--rounds", "2", "--jobs", "40", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    for runs in ["untraced_jobs_per_s", "traced_jobs_per_s", "traced_vs_untraced_by_round"] {
        assert_eq!(report[runs].as_array().map(Vec::len), Some(2), "{runs} in {report}");
    }
    for cpu in ["untraced_cpu_us_per_job", "traced_cpu_us_per_job"] {
        let each = report[cpu].as_array().unwrap_or_else(|| panic!("{cpu} in {report}"));
        assert!(each.len() == 2 && each.iter().all(|c| c.as_f64().is_some_and(|c| c > 0.0)), "{cpu} in {report}");
    }
    assert!(report["cpu_us_per_traced_job"].is_f64(), "{report}");
    assert!(report["otlp_bytes"].as_u64().is_some_and(|b| b > 0), "the traced runs exported spans: {report}");
    assert!(report["traced_vs_untraced"].as_f64().is_some_and(|r| r > 0.0), "{report}");
}

#[test]
fn bench_prints_every_figure_as_one_json_line() {
    let out = Command::new(BIN)
        .args(["bench", "--jobs", "200", "--latency-jobs", "20", "--spawns", "20", "--concurrent", "20", "--json"])
        .args(["--guest", jobhost_tests::PROBE_WASM, "--guest-arg", "noop"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    let last = stdout.lines().last().unwrap();
    let figures: serde_json::Map<String, serde_json::Value> = serde_json::from_str(last).unwrap();
    let mut keys: Vec<&str> = figures.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "cold_start_ms",
            "guest_throughput_jobs_per_s",
            "idle_rss_mb",
            "latency_p50_ms",
            "latency_p99_ms",
            "process_spawn_per_s",
            "rss_1000_concurrent_mb",
            "throughput_jobs_per_s",
            "vs_process_spawn",
            "warm_start_ms",
        ]
    );
    for (key, value) in &figures {
        let v = value.as_f64().unwrap_or_else(|| panic!("{key} is not a number: {value}"));
        assert!(v.is_finite() && v > 0.0, "{key} = {v}");
    }
    let f = |k: &str| figures[k].as_f64().unwrap();
    assert!(f("latency_p50_ms") <= f("latency_p99_ms"));
    // The human table comes first, on the same stdout.
    assert!(stdout.contains("throughput (200 no-op jobs)"), "{stdout}");
    assert!(stdout.contains("throughput (200 jobs of probe.wasm)"), "{stdout}");
}

#[test]
fn bench_refuses_sizes_it_cannot_run() {
    let out = Command::new(BIN).args(["bench", "--batch", "2000"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--batch must be between 1 and 1000"));
}

/// The precompiled components of `cache` (`XDG_CACHE_HOME`), each with its inode and
/// modification time: a component compiled again is written anew (a new inode).
fn compiled_in(cache: &std::path::Path) -> Vec<(String, u64, std::time::SystemTime)> {
    use std::os::unix::fs::MetadataExt as _;
    let dir = cache.join("jobhost").join("components");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            (e.file_name().to_string_lossy().into_owned(), meta.ino(), meta.modified().unwrap())
        })
        .filter(|(name, _, _)| name.ends_with(".cwasm"))
        .collect();
    files.sort();
    files
}

#[test]
fn a_second_embedded_run_of_a_component_compiles_nothing() {
    let cache = tempfile::tempdir().unwrap();
    let run = || {
        let out = Command::new(BIN)
            .args(["run", "--server", NO_SERVER, PROBE_WASM, "--", "echo", "again"])
            .env("XDG_CACHE_HOME", cache.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("arg:again"));
    };
    run();
    let first = compiled_in(cache.path());
    assert_eq!(first.len(), 1, "the probe, compiled once into the user's cache: {first:?}");
    run();
    assert_eq!(compiled_in(cache.path()), first, "the second run found it compiled and wrote nothing");
}

/// A source tree for the search tests: two files that hold `needle` (one in a
/// sub-directory) and one that does not.
fn source_tree() -> tempfile::TempDir {
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("sub/deeper")).unwrap();
    std::fs::write(src.path().join("a.txt"), "a needle here\nnothing\n").unwrap();
    std::fs::write(src.path().join("sub/deeper/b.rs"), "fn x() {}\n// needle too\n").unwrap();
    std::fs::write(src.path().join("c.txt"), "no match\n").unwrap();
    src
}

/// Asserts that `out` holds exactly the files of `src` that contain `needle`, byte for byte.
fn assert_matches_copied(src: &std::path::Path, out: &std::path::Path) {
    let files: Vec<_> = walk(out).into_iter().map(|p| p.strip_prefix(out).unwrap().to_path_buf()).collect();
    assert_eq!(files, [std::path::PathBuf::from("a.txt"), "sub/deeper/b.rs".into()], "{}", out.display());
    for rel in files {
        assert_eq!(std::fs::read(out.join(&rel)).unwrap(), std::fs::read(src.join(&rel)).unwrap(), "{}", rel.display());
    }
}

/// Every file under `dir`, sorted.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { dirs.push(path) } else { files.push(path) }
        }
    }
    files.sort();
    files
}

#[test]
fn run_sends_a_tree_in_and_brings_every_artifact_back() {
    let (src, out, cache) = (source_tree(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let run = Command::new(BIN)
        .args(["run", "--server", NO_SERVER, "--files"])
        .arg(src.path())
        .arg("--artifacts")
        .arg(out.path().join("found"))
        .args([PROBE_WASM, "--", "grep", "needle"])
        .env("XDG_CACHE_HOME", cache.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(0), "{stdout} {}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains("match:a.txt:a needle here"), "{stdout}");
    assert!(stdout.contains("match:sub/deeper/b.rs:// needle too"), "{stdout}");
    assert!(stdout.contains("grep-files:2"), "{stdout}");
    assert_matches_copied(src.path(), &out.path().join("found"));

    // A directory that is not one is refused before anything is submitted.
    let missing = Command::new(BIN)
        .args(["run", "--server", NO_SERVER, "--files", "/nonexistent/dir", PROBE_WASM, "--", "noop"])
        .env("XDG_CACHE_HOME", cache.path())
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("is not a directory"));
}

/// A server in this process on a temporary data dir (its token in `DIR/token`), with
/// the probe installed, and an admin client of it.
async fn probe_server() -> (tempfile::TempDir, jobhost_server::RunningServer, Client) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = jobhost_server::ServerConfig::new(dir.path().to_path_buf());
    config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.prepare_puller = false;
    let server = jobhost_server::start(config).await.unwrap();
    let client = Client::with_token(&server.url(), Some(&server.admin_token().unwrap())).unwrap();
    client.install("probe", &std::fs::read(PROBE_WASM).unwrap()).await.unwrap();
    (dir, server, client)
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_submit_and_artifacts_move_files_through_a_server() {
    let (dir, server, client) = probe_server().await;
    let url = server.url();
    let token_file = dir.path().join("token");
    let jobhost = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new(BIN);
        // The connection flags go right after the command: anything after `--` is the job's.
        cmd.arg(args[0]).arg("--server").arg(&url).arg("--token-file").arg(&token_file).args(&args[1..]);
        async move {
            let out = cmd.output().await.unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
            stdout
        }
    };
    let src = source_tree();
    let upload_id = jobhost(&["upload", src.path().to_str().unwrap()]).await.trim().to_owned();
    assert!(upload_id.starts_with("upl_"), "{upload_id}");
    let job_id =
        jobhost(&["submit", "--files-id", &upload_id, "probe", "--", "grep", "needle"]).await.trim().to_owned();
    assert!(client.wait(&job_id, Duration::from_secs(60)).await.unwrap().status == JobStatus::Completed);

    let listed = jobhost(&["artifacts", &job_id]).await;
    let sha = sha256_of(&std::fs::read(src.path().join("a.txt")).unwrap());
    assert!(listed.lines().any(|l| l.starts_with(&sha) && l.ends_with(" a.txt")), "{listed}");
    assert!(listed.contains("sub/deeper/b.rs"), "{listed}");
    let one = dir.path().join("one.txt");
    jobhost(&["artifacts", &job_id, "--get", "a.txt", "-o", one.to_str().unwrap()]).await;
    assert_eq!(std::fs::read(&one).unwrap(), std::fs::read(src.path().join("a.txt")).unwrap());
    let all = dir.path().join("all");
    jobhost(&["artifacts", &job_id, "--all", "-o", all.to_str().unwrap()]).await;
    assert_matches_copied(src.path(), &all);

    // The node this server is, as `jobhost workers` lists it.
    let workers = jobhost(&["workers"]).await;
    assert!(workers.starts_with(server.node_id()) && workers.contains(" online "), "{workers}");

    // submit --files uploads and submits in one step.
    let direct = jobhost(&["submit", "--files", src.path().to_str().unwrap(), "probe", "--", "grep", "needle"]).await;
    let job = client.wait(direct.trim(), Duration::from_secs(60)).await.unwrap();
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(client.artifacts(&job.id).await.unwrap().len(), 2);
    server.stop().await;
}

/// Transfers of 8 MiB or more draw a byte bar on a terminal, upload and download, and
/// what streams through arrives whole.
#[tokio::test(flavor = "multi_thread")]
async fn large_transfers_stream_with_a_byte_bar_on_a_terminal() {
    let (dir, server, client) = probe_server().await;
    let conn = format!("--server {} --token-file {}", server.url(), dir.path().join("token").display());

    let src = tempfile::tempdir().unwrap();
    let mut big = b"needle\n".to_vec();
    big.extend((0..12u32 << 20).map(|i| if i % 1024 == 1023 { b'\n' } else { b'a' + (i % 26) as u8 }));
    std::fs::write(src.path().join("big.txt"), &big).unwrap();

    let up = format!("upload {conn} {}", src.path().display());
    let shown = tokio::task::spawn_blocking(move || on_a_terminal(&up)).await.unwrap();
    assert!(shown.contains("uploading") && shown.contains("MiB"), "no upload bar in {shown:?}");
    // The id is printed once the bar is cleared, on the line the bar was drawn on.
    let at = shown.find("upl_").unwrap_or_else(|| panic!("no upload id in {shown:?}"));
    let upload_id: String = shown[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    let req = SubmitRequest {
        plugin: "probe".into(),
        args: vec!["grep".into(), "needle".into()],
        files_id: Some(upload_id),
        ..SubmitRequest::default()
    };
    let job = client.submit(&req).await.unwrap().job;
    assert_eq!(client.wait(&job.id, Duration::from_secs(60)).await.unwrap().status, JobStatus::Completed);

    let got = dir.path().join("got.txt");
    let down = format!("artifacts {conn} {} --get big.txt -o {}", job.id, got.display());
    let shown = tokio::task::spawn_blocking(move || on_a_terminal(&down)).await.unwrap();
    assert!(shown.contains("downloading") && shown.contains("MiB"), "no download bar in {shown:?}");
    assert!(std::fs::read(&got).unwrap() == big, "the downloaded artifact differs from what was uploaded");
    server.stop().await;
}

fn sha256_of(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}

/// Under umask 022 the data dir is 0700 and the database files 0600: no other account
/// on the machine reads job arguments, logs, uploads or artifacts.
#[tokio::test(flavor = "multi_thread")]
async fn the_data_dir_and_database_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("umask 022 && exec {BIN} serve --listen 127.0.0.1:0 --data-dir {}", data.display()))
        .env("JOBHOST_LOG", "warn")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("server exited before listening").unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.trim().to_owned();
        }
    };
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
    // A job and an upload, so that every kind of file exists.
    let token = jobhost_server::auth::read_token_file(&data.join("token")).unwrap();
    let client = Client::with_token(&url, Some(&token)).unwrap();
    client.install("probe", &std::fs::read(PROBE_WASM).unwrap()).await.unwrap();
    let job = client.submit(&SubmitRequest { plugin: "probe".into(), ..Default::default() }).await.unwrap().job;
    client.wait(&job.id, Duration::from_secs(30)).await.unwrap();
    client.create_upload().await.unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "the data dir");
    for db in ["jobhost.db", "jobhost.db-wal", "jobhost.db-shm"] {
        assert_eq!(mode(&data.join(db)), 0o600, "{db}");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A server killed with SIGKILL in the middle of a 500-task fan-out: started again, the
/// run completes with every task once (one job per index), none lost.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_server_finishes_a_fan_out_with_every_task_once() {
    use jobhost_model::{RunStatus, StartRun, Step, TaskStatus, WorkflowRequest};
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--concurrency", "8", "--max-attempts", "3"];
    let (mut first, url, _) = serve_with(dir.path(), "warn", &flags);
    let token = jobhost_server::auth::read_token_file(&dir.path().join("token")).unwrap();
    let client = Client::with_token(&url, Some(&token)).unwrap();
    client.install("probe", &std::fs::read(PROBE_WASM).unwrap()).await.unwrap();
    let step = Step {
        name: "wide".into(),
        plugin: "probe".into(),
        args: vec!["sleep".into(), "0.02".into()],
        task_count: Some(500),
        ..Step::default()
    };
    let workflow = WorkflowRequest { name: "wide".into(), steps: vec![step], ..WorkflowRequest::default() };
    client.create_workflow(&workflow).await.unwrap();
    let run = client.start_run(&StartRun { workflow: "wide".into(), ..StartRun::default() }).await.unwrap().run;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = client.run(&run.id).await.unwrap();
        let done = now.steps[0].tasks.iter().filter(|t| t.status == TaskStatus::Success).count();
        if done >= 50 {
            break;
        }
        assert!(Instant::now() < deadline, "the fan-out never got going: {done} done");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().unwrap(); // SIGKILL: in the middle of the fan-out.
    first.wait().unwrap();

    let (mut second, url, _) = serve_with(dir.path(), "warn", &flags);
    let client = Client::with_token(&url, Some(&token)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let now = client.run(&run.id).await.unwrap();
        if now.status.is_terminal() {
            break now;
        }
        assert!(Instant::now() < deadline, "the run did not end after the restart: {:?}", now.status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done.status, RunStatus::Success, "{:?}", done.error);
    let tasks = &done.steps[0].tasks;
    assert_eq!(tasks.iter().map(|t| t.index).collect::<Vec<_>>(), (0..500).collect::<Vec<_>>(), "one task per index");
    assert!(tasks.iter().all(|t| t.status == TaskStatus::Success));
    let jobs: std::collections::HashSet<&str> = tasks.iter().map(|t| t.job_id.as_str()).collect();
    assert_eq!(jobs.len(), 500, "one job per task");
    second.kill().unwrap();
    second.wait().unwrap();
}

/// Workflows from the terminal: one defined in TOML, run with a parameter and waited
/// for (the exit code says how it ended), listed, and shown step by step.
#[tokio::test(flavor = "multi_thread")]
async fn a_workflow_is_defined_run_and_followed_from_the_terminal() {
    let (dir, server, client) = probe_server().await;
    let conn =
        ["--server".to_owned(), server.url(), "--token-file".into(), dir.path().join("token").display().to_string()];
    let jobhost = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.args(args).args(&conn);
        async move { cmd.output().await.unwrap() }
    };
    let file = dir.path().join("flow.toml");
    std::fs::write(
        &file,
        "name = \"flow\"\n\n[[steps]]\nname = \"first\"\nplugin = \"probe\"\nargs = [\"task-output\"]\n\n\
         [[steps]]\nname = \"then\"\nplugin = \"probe\"\nargs = [\"gather\"]\nneeds = [\"first\"]\ntask_count = 3\n",
    )
    .unwrap();
    let created = jobhost(&["workflow", "create", file.to_str().unwrap()]).await;
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    assert!(String::from_utf8_lossy(&created.stdout).contains("flow  steps: first, then×3"));

    let ran = jobhost(&["run-workflow", "flow", "-p", "n=3", "--wait"]).await;
    let shown = String::from_utf8_lossy(&ran.stdout).into_owned();
    assert_eq!(ran.status.code(), Some(0), "{shown}\n{}", String::from_utf8_lossy(&ran.stderr));
    assert!(shown.contains(" success"), "{shown}");
    assert!(shown.lines().any(|l| l.contains("then") && l.contains("[####################] 3/3")), "{shown}");
    let run_id = shown.split_whitespace().next().unwrap().to_owned();
    let run = client.run(&run_id).await.unwrap();
    assert_eq!(run.params, serde_json::json!({"n": 3}));
    assert_eq!(run.triggered_by, "manual");

    let listed = jobhost(&["runs", "--workflow", "flow"]).await;
    assert!(String::from_utf8_lossy(&listed.stdout).starts_with(&run_id));
    let status = jobhost(&["run-status", &run_id]).await;
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.lines().any(|l| l.contains("first") && l.contains("1/1")), "{status}");

    // A run that fails exits 1.
    std::fs::write(&file, "name = \"broken\"\n[[steps]]\nname = \"x\"\nplugin = \"probe\"\nargs = [\"exit\", \"3\"]\n")
        .unwrap();
    assert!(jobhost(&["workflow", "create", file.to_str().unwrap()]).await.status.success());
    assert_eq!(jobhost(&["run-workflow", "broken", "--wait"]).await.status.code(), Some(1));
    server.stop().await;
}

/// `jobhost workers` shows a node's GPUs by type, used of all.
#[tokio::test(flavor = "multi_thread")]
async fn workers_shows_a_nodes_gpus_by_type() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = jobhost_server::ServerConfig::new(dir.path().to_path_buf());
    config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.prepare_puller = false;
    let gpu = |index: u32, gpu_type: &str| jobhost_model::Gpu {
        index,
        uuid: format!("GPU-{index}"),
        gpu_type: gpu_type.into(),
        memory_mb: 1024,
    };
    config.node.gpus = Some(vec![gpu(0, "h100"), gpu(1, "h100"), gpu(2, "l4")]);
    let server = jobhost_server::start(config).await.unwrap();
    let out = tokio::process::Command::new(BIN)
        .args(["workers", "--server", &server.url(), "--token-file"])
        .arg(dir.path().join("token"))
        .output()
        .await
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("  gpus.h100=0/2  gpus.l4=0/1  "), "{shown}");
    server.stop().await;
}

/// An OTLP/HTTP trace receiver on loopback: every span of every `POST /v1/traces`,
/// decoded from protobuf.
mod otlp {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    pub use opentelemetry_proto::tonic::trace::v1::Span;
    use prost::Message as _;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

    /// The receiver's address and what it received.
    pub async fn receiver() -> (std::net::SocketAddr, Arc<Mutex<Vec<Span>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let got = spans.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let got = got.clone();
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    // One request after another on a kept-alive connection.
                    loop {
                        let (mut path, mut len) = (String::new(), 0usize);
                        let mut line = String::new();
                        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        path.push_str(line.split_whitespace().nth(1).unwrap_or_default());
                        loop {
                            line.clear();
                            stream.read_line(&mut line).await.unwrap();
                            if line.trim().is_empty() {
                                break;
                            }
                            if let Some((name, value)) = line.split_once(':')
                                && name.eq_ignore_ascii_case("content-length")
                            {
                                len = value.trim().parse().unwrap();
                            }
                        }
                        let mut body = vec![0; len];
                        stream.read_exact(&mut body).await.unwrap();
                        assert_eq!(path, "/v1/traces");
                        let request = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
                        for resource in request.resource_spans {
                            for scope in resource.scope_spans {
                                got.lock().unwrap().extend(scope.spans);
                            }
                        }
                        let ok = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                        stream.get_mut().write_all(ok.as_bytes()).await.unwrap();
                    }
                });
            }
        });
        (addr, spans)
    }

    /// The value of string attribute `key` of `span`.
    pub fn attr(span: &Span, key: &str) -> Option<String> {
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        span.attributes.iter().find(|a| a.key == key).and_then(|a| match a.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            other => Some(format!("{other:?}")),
        })
    }
}

/// With `OTEL_EXPORTER_OTLP_ENDPOINT` set, a job reaches the OTLP receiver as one
/// trace: a `job` span whose children `submit`, `claim`, `run` and `finish` follow one
/// another, each carrying the job's id.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_is_exported_as_one_trace_from_submit_to_finish() {
    let (addr, received) = otlp::receiver().await;
    let endpoint = format!("http://{addr}");
    let dir = tempfile::tempdir().unwrap();
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let (mut server, url, log) = serve_env(dir.path(), "warn", &["--concurrency", "2"], &env);
    let token = jobhost_server::auth::read_token_file(&dir.path().join("token")).unwrap();
    let client = Client::with_token(&url, Some(&token)).unwrap();
    client.install("probe", &std::fs::read(PROBE_WASM).unwrap()).await.unwrap();
    let req =
        SubmitRequest { plugin: "probe".into(), args: vec!["sleep".into(), "0.2".into()], ..SubmitRequest::default() };
    let id = client.submit(&req).await.unwrap().job.id;
    assert_eq!(client.wait(&id, Duration::from_secs(30)).await.unwrap().status, JobStatus::Completed);

    let names = ["job", "submit", "claim", "run", "finish"];
    let deadline = Instant::now() + Duration::from_secs(20);
    let spans = loop {
        let spans: Vec<otlp::Span> = received
            .lock()
            .unwrap()
            .iter()
            .filter(|s| otlp::attr(s, "job_id").as_deref() == Some(id.as_str()))
            .cloned()
            .collect();
        if names.iter().all(|n| spans.iter().any(|s| s.name == *n)) {
            break spans;
        }
        assert!(Instant::now() < deadline, "spans of {id} never arrived: {spans:#?}\n{}", log.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    server.kill().unwrap();
    server.wait().unwrap();

    let span = |name: &str| spans.iter().find(|s| s.name == name).unwrap();
    let job = span("job");
    assert!(job.parent_span_id.is_empty(), "the job span is a root");
    assert_eq!(otlp::attr(job, "plugin").as_deref(), Some("probe"));
    assert_eq!(otlp::attr(job, "status").as_deref(), Some("completed"));
    for stage in &names[1..] {
        let s = span(stage);
        assert_eq!(s.trace_id, job.trace_id, "{stage} is in the job's trace");
        assert_eq!(s.parent_span_id, job.span_id, "{stage} is a child of the job span");
        assert!(s.start_time_unix_nano >= job.start_time_unix_nano && s.end_time_unix_nano <= job.end_time_unix_nano);
    }
    // The stages follow one another; the run took the job's 0.2 s sleep.
    let (submit, claim, run, finish) = (span("submit"), span("claim"), span("run"), span("finish"));
    assert!(submit.start_time_unix_nano <= claim.start_time_unix_nano);
    assert!(claim.end_time_unix_nano <= run.end_time_unix_nano);
    assert!(run.end_time_unix_nano <= finish.end_time_unix_nano);
    assert!(run.end_time_unix_nano - run.start_time_unix_nano >= 200_000_000, "{run:?}");
    assert_eq!(otlp::attr(run, "status").as_deref(), Some("completed"));
}

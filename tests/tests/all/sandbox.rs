//! The adversarial suite: each hostile guest is contained with the right status and a
//! clear error, and a well-behaved job running beside it is unaffected.

use super::*;
use jobhost_tests::PROBE_WASM;
use std::time::Instant;

/// Submits `args` with limits, and an ordinary job beside it; checks the ordinary job
/// completes and returns the hostile one's end.
async fn contained(t: &TestServer, args: &[&str], tweak: impl FnOnce(&mut SubmitRequest)) -> Job {
    let mut req = SubmitRequest {
        plugin: "probe".into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        ..SubmitRequest::default()
    };
    tweak(&mut req);
    let hostile = t.client.submit(&req).await.unwrap().job;
    let bystander = t.run("probe", &["echo", "bystander"]).await;
    assert_eq!(bystander.status, JobStatus::Completed, "a job beside {args:?} was affected: {bystander:?}");
    t.wait(&hostile.id).await
}

async fn probe_server() -> TestServer {
    let t = TestServer::start_with(|c| c.max_output_bytes = 64 << 20).await;
    t.install("probe", PROBE_WASM).await;
    t
}

#[tokio::test(flavor = "multi_thread")]
async fn path_escapes_are_blocked() {
    // Seed /input of a job before it starts (as an upload would): hold the only slot
    // with a sleeper, submit, write the file, then free the slot.
    let t = TestServer::start_with(|c| c.concurrency = 1).await;
    t.install("probe", PROBE_WASM).await;
    let sleeper = t.submit("probe", &["sleep", "30"]).await;
    eventually(10, || async { t.client.get(&sleeper.id).await.unwrap().status == JobStatus::Running }).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let job = t.submit("probe", &["escape", &port]).await;
    let input = t.dir.path().join("jobs").join(&job.id).join("input");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("data.txt"), "precious\n").unwrap();
    t.client.cancel(&sleeper.id).await.unwrap();
    let job = t.wait(&job.id).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");

    let out = t.stream_text(&job.id, LogStream::Stdout).await;
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("escape:")).collect();
    let expected = [
        "etc-passwd",
        "input-dotdot",
        "cwd-dotdot",
        "read-dir-root",
        "symlink-root",
        "symlink-etc",
        "symlink-dotdot",
        "symlink-trailing-slash",
        "hardlink-input",
        "write-input",
        "truncate-input",
        "create-input",
        "rename-input",
        "tcp-connect",
    ];
    for name in expected {
        let line = lines.iter().find(|l| l.starts_with(&format!("escape:{name}:"))).copied();
        let line = line.unwrap_or_else(|| panic!("no report for {name}:\n{out}"));
        assert!(line.starts_with(&format!("escape:{name}:blocked:")), "{line}\n{out}");
    }
    assert_eq!(std::fs::read_to_string(input.join("data.txt")).unwrap(), "precious\n", "/input is untouched");
    // The links it made to climb out are gone once it ended.
    let job_dir = t.dir.path().join("jobs").join(&job.id);
    let links: Vec<_> = walk_links(&job_dir);
    assert!(links.is_empty(), "symlinks left in the job's tree: {links:?}");
    assert!(!input.join("new.txt").exists());
    let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(accepted.is_err(), "nothing connected to the loopback listener");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_host_environment_leaks_in() {
    let t = probe_server().await;
    // The server process has PATH (and more); the guest's environment is only the
    // job's `env`, here empty.
    let job = contained(&t, &["env-dump"], |_| {}).await;
    assert_eq!(job.status, JobStatus::Completed);
    let out = t.stream_text(&job.id, LogStream::Stdout).await;
    assert!(out.contains("env-count:0"), "{out}");
    assert!(std::env::var("PATH").is_ok() && !out.contains("PATH"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_loop_times_out_on_time() {
    let t = probe_server().await;
    let started = Instant::now();
    let job = contained(&t, &["spin"], |r| r.timeout_s = Some(2)).await;
    let took = started.elapsed();
    assert_eq!(job.status, JobStatus::TimedOut, "{job:?}");
    assert!(took < Duration::from_millis(2500), "timed out after {took:?}");
    assert!(job.error.unwrap_or_default().contains("timeout_s limit of 2 s"));
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_growth_stops_at_the_limit() {
    let t = probe_server().await;
    let job = contained(&t, &["alloc", "16"], |r| r.memory_mb = Some(64)).await;
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    let error = job.error.unwrap_or_default();
    assert!(error.contains("memory limit of 64 MiB"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unbounded_recursion_fails() {
    let t = probe_server().await;
    let job = contained(&t, &["recurse"], |_| {}).await;
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    let error = job.error.unwrap_or_default();
    // Rust keeps its stack in linear memory: overflowing it traps on the memory's
    // bounds before the engine's own stack limit is reached.
    assert!(error.contains("trapped"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn opening_files_stops_at_the_limit() {
    let t = probe_server().await;
    let job = contained(&t, &["open-files", "100000"], |_| {}).await;
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    let error = job.error.unwrap_or_default();
    assert!(error.contains("open resources limit of 4096"), "{error}");
    let out = t.stream_text(&job.id, LogStream::Stdout).await;
    assert!(out.contains("opened 4000") && !out.contains("opened 5000"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stdout_flood_is_capped() {
    let t = probe_server().await;
    let job = contained(&t, &["flood", "100"], |_| {}).await;
    assert_eq!(job.status, JobStatus::Completed, "the job keeps running past the log cap: {job:?}");
    let chunks = t.logs(&job.id).await;
    let stored: usize = chunks.iter().filter(|c| c.stream == LogStream::Stdout).map(|c| c.data.len()).sum();
    assert!(stored <= 8 << 20, "stored {stored} bytes");
    assert!(stored >= 7 << 20, "kept the first 8 MiB, stored {stored}");
    let notes: Vec<&LogChunk> = chunks.iter().filter(|c| c.stream == LogStream::System).collect();
    assert_eq!(notes.len(), 1);
    assert!(notes[0].data.contains("truncated"));
}

#[tokio::test(flavor = "multi_thread")]
async fn writing_past_the_output_limit_fails_inside_the_guest_and_fails_the_job() {
    let t = probe_server().await;
    let job = contained(&t, &["write-output", "2048"], |_| {}).await;
    // The guest saw its write fail at the limit (64 MiB) and said so. (Rust std writes
    // files through the WASI preview 1 adapter, which reports any failed stream write
    // as an I/O error; a WASI 0.2 guest sees `insufficient-space`, tested below.)
    let err = t.stream_text(&job.id, LogStream::Stderr).await;
    assert!(err.contains("write failed at 64 MiB: "), "{err}");
    assert!(!t.stream_text(&job.id, LogStream::Stdout).await.contains("wrote"));
    // The job records which limit it hit and its value.
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    let error = job.error.clone().unwrap_or_default();
    assert!(error.starts_with("output limit of 67108864 bytes exceeded"), "{error}");
    // Nothing past the limit reached the disk.
    let artifacts = t.client.artifacts(&job.id).await.unwrap();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    assert_eq!(artifacts[0].size_bytes, 64 << 20);
}

/// A server whose jobs may leave 4 MiB under `/output`.
async fn small_output_server() -> TestServer {
    let t = TestServer::start_with(|c| c.max_output_bytes = 4 << 20).await;
    t.install("probe", PROBE_WASM).await;
    t
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_output_write_fails_the_job_even_when_the_guest_exits_0() {
    let t = small_output_server().await;
    let job = t.run("probe", &["write-output", "5", "ignore-errors"]).await;
    let err = t.stream_text(&job.id, LogStream::Stderr).await;
    assert!(err.contains("write failed at 4 MiB: "), "{err}");
    assert!(t.stream_text(&job.id, LogStream::Stdout).await.contains("done"));
    // A truncated output is no success.
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    assert_eq!(job.exit_code, Some(0));
    let error = job.error.clone().unwrap_or_default();
    assert!(error.starts_with("output limit of 4194304 bytes exceeded"), "{error}");

    // A guest that gives up with an error of its own keeps it after the limit.
    let job = t.run("probe", &["write-output", "5"]).await;
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    let error = job.error.clone().unwrap_or_default();
    assert!(error.starts_with("output limit of 4194304 bytes exceeded"), "{error}");
    assert!(error.ends_with("then: exited with code 1"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wasi_guest_sees_insufficient_space_in_a_sub_directory_of_output() {
    let t = small_output_server().await;
    let job = t.run("probe", &["write-output-wasi", "5"]).await;
    let out = t.stream_text(&job.id, LogStream::Stdout).await;
    assert!(out.contains("write failed at 4 MiB: insufficient-space"), "{out}");
    assert!(out.contains("positional write failed: insufficient-space"), "{out}");
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    assert!(job.error.clone().unwrap_or_default().starts_with("output limit of 4194304 bytes exceeded"), "{job:?}");
    let artifacts = t.client.artifacts(&job.id).await.unwrap();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    assert_eq!((artifacts[0].name.as_str(), artifacts[0].size_bytes), ("deep/big.bin", 4 << 20));
}

#[tokio::test(flavor = "multi_thread")]
async fn output_up_to_the_limit_and_work_files_past_it_are_fine() {
    let t = small_output_server().await;
    // Exactly the limit under /output.
    let job = t.run("probe", &["write-output", "4"]).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    assert!(t.stream_text(&job.id, LogStream::Stdout).await.contains("wrote 4 MiB"));
    // Four times the limit under /work: not counted.
    let job = t.run("probe", &["write-work", "16"]).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    assert!(t.stream_text(&job.id, LogStream::Stdout).await.contains("wrote 16 MiB"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_moved_into_output_past_the_limit_fails_the_job() {
    // A rename is no write under /output: the measurement catches it, even when the
    // guest exits right after.
    let t = small_output_server().await;
    let job = t.run("probe", &["move-to-output", "8"]).await;
    assert!(t.stream_text(&job.id, LogStream::Stdout).await.contains("moved"));
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    let error = job.error.clone().unwrap_or_default();
    assert!(error.starts_with("output limit of 4194304 bytes exceeded"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_job_is_cancelled_within_a_second() {
    let t = probe_server().await;
    let job = t.submit("probe", &["sleep", "60"]).await;
    eventually(10, || async { t.client.get(&job.id).await.unwrap().status == JobStatus::Running }).await;
    let asked = Instant::now();
    assert_eq!(t.client.cancel(&job.id).await.unwrap().status, JobStatus::Cancelled);
    let ended = t.wait(&job.id).await;
    assert_eq!(ended.status, JobStatus::Cancelled);
    assert!(asked.elapsed() < Duration::from_secs(1), "took {:?}", asked.elapsed());
    // The slot is free again.
    assert_eq!(t.run("probe", &["noop"]).await.status, JobStatus::Completed);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_answers_while_guests_keep_both_cores_busy() {
    let t = probe_server().await;
    let mut busy = Vec::new();
    for _ in 0..2 {
        busy.push(t.submit("probe", &["spin"]).await.id);
    }
    for id in &busy {
        eventually(10, || async { t.client.get(id).await.unwrap().status == JobStatus::Running }).await;
    }
    let mut took = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        t.client.health().await.unwrap();
        took.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    took.sort();
    println!("health latency with two busy guests: median {:?}, max {:?}", took[10], took[19]);
    assert!(took[10] < Duration::from_millis(100), "median {:?}", took[10]);
    for id in &busy {
        t.client.cancel(id).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_given_no_files_sees_an_empty_input_it_cannot_write() {
    let t = probe_server().await;
    let create = t.run("probe", &["create", "/input/new.txt"]).await;
    assert_eq!(create.status, JobStatus::Completed, "{create:?}");
    let out = t.stream_text(&create.id, LogStream::Stdout).await;
    assert!(out.contains("create:/input/new.txt:blocked:"), "{out}");
    // The same program may write where it is allowed to.
    let allowed = t.run("probe", &["create", "/work/new.txt"]).await;
    assert!(t.stream_text(&allowed.id, LogStream::Stdout).await.contains("create:/work/new.txt:ok"));

    let read = t.run("probe", &["read-input"]).await;
    assert_eq!(read.status, JobStatus::Completed, "{read:?}");
    assert!(t.stream_text(&read.id, LogStream::Stdout).await.contains("input-count:0"));

    // One shared empty directory stands for every such job's /input, and stays empty.
    let jobs = t.dir.path().join("jobs");
    assert_eq!(std::fs::read_dir(jobs.join(".empty-input")).unwrap().count(), 0);
    assert!(!jobs.join(&create.id).join("input").exists());
    assert!(jobs.join(&allowed.id).join("work").join("new.txt").exists());
}

/// Every symlink under `dir`, with its target.
fn walk_links(dir: &std::path::Path) -> Vec<(std::path::PathBuf, std::path::PathBuf)> {
    let mut links = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap().map(Result::unwrap) {
            let kind = entry.file_type().unwrap();
            if kind.is_symlink() {
                links.push((entry.path(), std::fs::read_link(entry.path()).unwrap()));
            } else if kind.is_dir() {
                todo.push(entry.path());
            }
        }
    }
    links
}

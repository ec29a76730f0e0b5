//! Several `jobhost serve` processes on 127.0.0.1 sharing one PostgreSQL database (a
//! schema of its own per test, in `JOBHOST_TEST_DATABASE_URL`): one queue that every
//! node takes from, jobs that require labels, artifacts read through a node that did
//! not run the job, a node killed with SIGKILL whose jobs run again elsewhere, and a
//! node that drains.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jobhost_client::Client;
use jobhost_model::{Job, JobStatus, SubmitRequest, WorkerStatus};
use jobhost_store::testdb::PgSchema;
use jobhost_tests::PROBE_WASM;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_jobhost");

/// One `jobhost serve` process, killed when dropped.
struct Node {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Node {
    /// Starts a node on `db` named `name` with `labels`, running `concurrency` jobs at
    /// once, with its own data dir.
    fn start(db: &PgSchema, secret: &Path, name: &str, labels: &str, concurrency: u32) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--name", name])
            .args(["--max-attempts", "2", "--cluster-secret-file"])
            .arg(secret)
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--concurrency", &concurrency.to_string()])
            .env("DATABASE_URL", db.url())
            .env("JOBHOST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if !labels.is_empty() {
            cmd.args(["--labels", labels]);
        }
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let url = loop {
            let line = lines.next().unwrap_or_else(|| panic!("node {name} exited before listening")).unwrap();
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.trim().to_owned();
            }
        };
        let prefix = name.to_owned();
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(|line| eprintln!("[{prefix}] {line}")));
        Node { child, url, dir }
    }

    /// A client with the admin token this node wrote at start (tokens are in the
    /// database: it works on every node).
    fn client(&self) -> Client {
        let token = jobhost_server::auth::read_token_file(&self.dir.path().join("token")).unwrap();
        Client::with_token(&self.url, Some(&token)).unwrap()
    }

    /// This node's id, from its data dir.
    fn id(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(jobhost_server::nodes::WORKER_ID_FILE)).unwrap().trim().to_owned()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A cluster secret in a file of its own.
fn secret() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster-secret");
    std::fs::write(&path, "s3cret-shared-by-the-nodes-of-this-test-only\n").unwrap();
    (dir, path)
}

fn probe(args: &[&str]) -> SubmitRequest {
    SubmitRequest { plugin: "probe".into(), args: args.iter().map(|a| a.to_string()).collect(), ..Default::default() }
}

/// Waits (up to `secs`) for job `id` to end, through `client`'s node.
async fn ended(client: &Client, id: &str, secs: u64) -> Job {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let job = client.wait(id, Duration::from_secs(5)).await.unwrap();
        if job.status.is_terminal() || Instant::now() > deadline {
            return job;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_share_one_queue_and_each_others_files() {
    let db = PgSchema::new().await;
    let (_keep, secret) = secret();
    let a = Node::start(&db, &secret, "node-a", "linux", 2);
    let b = Node::start(&db, &secret, "node-b", "linux", 2);
    let c = Node::start(&db, &secret, "node-c", "linux,gpu", 2);
    let client = a.client();
    // Installed through one node: the others fetch its bytes from the database.
    client.install("probe", &std::fs::read(PROBE_WASM).unwrap()).await.unwrap();

    let workers = client.workers().await.unwrap();
    assert_eq!(workers.len(), 3, "{workers:?}");
    assert!(workers.iter().all(|w| w.status == WorkerStatus::Online && w.advertise.is_some()), "{workers:?}");

    // 300 jobs submitted through one node: all complete, and every node ran some.
    let mut ids = Vec::new();
    for _ in 0..300 {
        ids.push(client.submit(&probe(&["sleep", "0.02"])).await.unwrap().job.id);
    }
    let mut ran_on: HashMap<String, usize> = HashMap::new();
    for id in &ids {
        let job = ended(&client, id, 120).await;
        assert_eq!((job.status, job.attempt), (JobStatus::Completed, 1), "{job:?}");
        *ran_on.entry(job.worker_id.clone().expect("the node that ran it")).or_default() += 1;
    }
    for node in [&a, &b, &c] {
        assert!(ran_on.get(&node.id()).copied().unwrap_or(0) > 0, "node {} ran none: {ran_on:?}", node.id());
    }

    // A job that requires a label runs only on the node that has it, and one that
    // requires a label no node has waits, saying why.
    let mut gpu = probe(&["write-output", "3"]);
    gpu.requires = vec!["gpu".into()];
    let gpu = client.submit(&gpu).await.unwrap().job.id;
    let mut nowhere = probe(&["noop"]);
    nowhere.requires = vec!["tpu".into()];
    let nowhere = client.submit(&nowhere).await.unwrap().job.id;
    let done = ended(&client, &gpu, 60).await;
    assert_eq!((done.status, done.worker_id.as_deref()), (JobStatus::Completed, Some(c.id().as_str())), "{done:?}");
    let waiting = client.get(&nowhere).await.unwrap();
    assert_eq!(waiting.status, JobStatus::Pending);
    assert_eq!(waiting.waiting.as_deref(), Some("no online worker has labels [tpu]"));
    let bad = SubmitRequest { requires: vec!["has space".into()], ..probe(&["noop"]) };
    assert_eq!(client.submit(&bad).await.unwrap_err().kind(), Some("invalid_params"));

    // The artifact, on node c, read through node a and node b, byte for byte: over
    // HTTP (streamed) and over JSON-RPC (in ranges).
    let expected = vec![0xa5u8; 3 << 20];
    let mut downloaded = Vec::new();
    let size = client
        .download_artifact_into(&gpu, "big.bin", |piece| {
            downloaded.extend_from_slice(piece);
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(size, 3 << 20);
    assert!(downloaded == expected, "downloaded through node a: {} bytes", downloaded.len());
    let through_b = b.client().read_artifact(&gpu, "big.bin").await.unwrap();
    assert!(through_b == expected, "read through node b: {} bytes", through_b.len());

    // Files uploaded through node a feed a job that runs on node c: it fetches them
    // before it starts. Adding files through another node than the holder is refused.
    let upload = client.create_upload().await.unwrap();
    client.upload_put(&upload.id, "dir/a.txt", b"hello").await.unwrap();
    client.put_file(&upload.id, "b.bin", vec![7u8; 100_000]).await.unwrap();
    let refused = b.client().upload_put(&upload.id, "c.txt", b"x").await.unwrap_err();
    assert_eq!(refused.kind(), Some("conflict"), "{refused}");
    client.finalize_upload(&upload.id).await.unwrap();
    let mut reader = probe(&["read-input"]);
    (reader.requires, reader.files_id) = (vec!["gpu".into()], Some(upload.id.clone()));
    let reader = client.submit(&reader).await.unwrap().job.id;
    let read = ended(&client, &reader, 60).await;
    assert_eq!((read.status, read.worker_id.as_deref()), (JobStatus::Completed, Some(c.id().as_str())), "{read:?}");
    let stdout: String = client.logs(&reader, 0, None).await.unwrap().chunks.into_iter().map(|c| c.data).collect();
    for line in ["input:/input/dir/a.txt:5", "input:/input/b.bin:100000", "input-count:2"] {
        assert!(stdout.contains(line), "{line} not in {stdout:?}");
    }

    // A cancel through node a stops the run on node c at once (it hears of it).
    let mut long = probe(&["sleep", "60"]);
    long.requires = vec!["gpu".into()];
    let long = client.submit(&long).await.unwrap().job.id;
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(&long).await.unwrap().status != JobStatus::Running {
        assert!(Instant::now() < deadline, "the long job never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(client.cancel(&long).await.unwrap().status, JobStatus::Cancelled);
    // Its slot is free again: two jobs then run side by side on node c (2 slots).
    let mut pair = probe(&["sleep", "1"]);
    pair.requires = vec!["gpu".into()];
    let (x, y) = (client.submit(&pair).await.unwrap().job.id, client.submit(&pair).await.unwrap().job.id);
    let (x, y) = (ended(&client, &x, 30).await, ended(&client, &y, 30).await);
    let span = |j: &Job| (j.started_at.clone().unwrap_or_default(), j.completed_at.clone().unwrap_or_default());
    let ((x0, x1), (y0, y1)) = (span(&x), span(&y));
    assert!(x0 < y1 && y0 < x1, "the two jobs did not overlap: {x:?} {y:?}");

    // With node c gone, its files are `unavailable`, and the error names it.
    drop(c);
    let err = client.read_artifact(&gpu, "big.bin").await.unwrap_err();
    assert_eq!(err.kind(), Some("unavailable"), "{err}");
    assert!(err.to_string().contains("node-c"), "{err}");
    client.cancel(&nowhere).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_nodes_jobs_run_again_on_another_node() {
    let db = PgSchema::new().await;
    let (_keep, secret) = secret();
    let mut victim = Node::start(&db, &secret, "victim", "", 4);
    let client = victim.client();
    client.install("probe", &std::fs::read(PROBE_WASM).unwrap()).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(client.submit(&probe(&["sleep", "4"])).await.unwrap().job.id);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let mut running = 0;
        for id in &ids {
            running += usize::from(client.get(id).await.unwrap().status == JobStatus::Running);
        }
        if running == ids.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let survivor = Node::start(&db, &secret, "survivor", "", 2);
    let client = survivor.client();
    victim.child.kill().unwrap(); // SIGKILL: the node says nothing.
    victim.child.wait().unwrap();
    let killed = Instant::now();

    // Every job runs again on the survivor, within the lease (30 s) and a heartbeat
    // or so: never lost, never completed twice.
    for id in &ids {
        let job = ended(&client, id, 90).await;
        assert_eq!(job.status, JobStatus::Completed, "{job:?}");
        assert_eq!((job.attempt, job.worker_id.as_deref()), (2, Some(survivor.id().as_str())), "{job:?}");
    }
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(30 + 5 + 4 + 2), "the jobs ran again {took:?} after the kill");
    let workers = client.workers().await.unwrap();
    let status = |id: &str| workers.iter().find(|w| w.id == id).map(|w| w.status);
    assert_eq!(status(&victim.id()), Some(WorkerStatus::Offline), "{workers:?}");
    assert_eq!(status(&survivor.id()), Some(WorkerStatus::Online), "{workers:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_draining_node_takes_no_new_job_and_exits_once_its_jobs_end() {
    let db = PgSchema::new().await;
    let (_keep, secret) = secret();
    let mut draining = Node::start(&db, &secret, "drained", "d", 2);
    let other = Node::start(&db, &secret, "other", "", 2);
    let client = other.client();
    client.install("probe", &std::fs::read(PROBE_WASM).unwrap()).await.unwrap();
    let mut on_d = probe(&["sleep", "2"]);
    on_d.requires = vec!["d".into()];
    let first: Vec<String> =
        vec![client.submit(&on_d).await.unwrap().job.id, client.submit(&on_d).await.unwrap().job.id];
    for id in &first {
        let deadline = Instant::now() + Duration::from_secs(20);
        while client.get(id).await.unwrap().status != JobStatus::Running && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Through the CLI, as an operator would.
    let token = other.dir.path().join("token");
    let out = Command::new(BIN)
        .args(["drain", &draining.id(), "--server", &other.url, "--token-file"])
        .arg(&token)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("is draining"));
    let late = client.submit(&on_d).await.unwrap().job.id;

    // The node exits by itself once its two jobs ended; the late job never started.
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(status) = draining.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the drained node did not exit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(exit.success(), "{exit}");
    for id in &first {
        assert_eq!(client.get(id).await.unwrap().status, JobStatus::Completed);
    }
    let late = client.get(&late).await.unwrap();
    assert_eq!((late.status, late.waiting.as_deref()), (JobStatus::Pending, Some("no online worker has labels [d]")));
    let workers = client.workers().await.unwrap();
    let status = workers.iter().find(|w| w.id == draining.id()).map(|w| w.status);
    assert_eq!(status, Some(WorkerStatus::Offline), "{workers:?}");
    let offline = client.drain(&draining.id()).await.unwrap_err();
    assert_eq!(offline.kind(), Some("conflict"), "{offline}");
}

//! Container jobs on the real Docker Engine: an image the tests build from scratch (a
//! static busybox), its command's output, exit code and files, and the sandbox around
//! it. Without an engine these tests fail, never skip.

use crate::*;
use jobhost_model::JobKind;
use jobhost_tests::containers_of_job as containers_of;

/// The image every test here runs, built once per test process.
async fn image() -> &'static str {
    tokio::task::spawn_blocking(jobhost_tests::busybox_image).await.unwrap()
}

fn container(image: &str, script: &str) -> SubmitRequest {
    SubmitRequest {
        image: Some(image.into()),
        command: vec!["sh".into(), "-c".into(), script.into()],
        ..SubmitRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_job_runs_its_command_with_its_files() {
    let image = image().await;
    let t = TestServer::start().await;
    let upload = t.client.create_upload().await.unwrap();
    t.client.upload_put(&upload.id, "in.txt", b"from the upload").await.unwrap();
    t.client.finalize_upload(&upload.id).await.unwrap();
    let mut req =
        container(image, "cat /input/in.txt; echo; echo to-stderr >&2; pwd; echo made > /output/result.txt; exit 3");
    req.files_id = Some(upload.id.clone());
    let job = t.client.submit(&req).await.unwrap().job;
    assert_eq!((job.kind, job.plugin.as_str()), (JobKind::Container, image));
    assert_eq!(job.container.as_ref().map(|c| c.image.as_str()), Some(image));
    let done = t.wait(&job.id).await;
    assert_eq!(
        (done.status, done.exit_code, done.error.as_deref()),
        (JobStatus::Failed, Some(3), Some("exited with code 3"))
    );
    let container_id = done.container_id.clone().expect("the container it ran in");
    assert!(container_id.len() == 64 && container_id.bytes().all(|b| b.is_ascii_hexdigit()), "{container_id}");
    let stdout = t.stream_text(&job.id, LogStream::Stdout).await;
    assert_eq!(stdout, "from the upload\n/work\n");
    assert_eq!(t.stream_text(&job.id, LogStream::Stderr).await, "to-stderr\n");
    assert_eq!(t.client.read_artifact(&job.id, "result.txt").await.unwrap(), b"made\n");

    let ok = t.client.submit(&container(image, "echo fine")).await.unwrap().job;
    let ok = t.wait(&ok.id).await;
    assert_eq!((ok.status, ok.exit_code), (JobStatus::Completed, Some(0)), "{ok:?}");
    for id in [&job.id, &ok.id] {
        assert_eq!(containers_of(id), "", "a container was left behind");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_has_no_network_a_read_only_root_and_its_limits() {
    let image = image().await;
    let t = TestServer::start().await;
    // No network but its own loopback; nothing written outside /output, /work, /tmp.
    let probe = t
        .client
        .submit(&container(
            image,
            "ls /sys/class/net; touch /etc/x || echo root-is-read-only; touch /tmp/x && echo tmp-ok",
        ))
        .await
        .unwrap()
        .job;
    let probe = t.wait(&probe.id).await;
    assert_eq!(probe.status, JobStatus::Completed, "{probe:?}");
    let out = t.stream_text(&probe.id, LogStream::Stdout).await;
    assert_eq!(out, "lo\nroot-is-read-only\ntmp-ok\n", "{}", t.stream_text(&probe.id, LogStream::Stderr).await);

    // A memory bomb is killed at the job's limit.
    let mut bomb = container(image, "dd if=/dev/zero of=/dev/null bs=64M count=1");
    bomb.memory_mb = Some(32);
    let bomb = t.client.submit(&bomb).await.unwrap().job;
    let bomb = t.wait(&bomb.id).await;
    assert_eq!(bomb.status, JobStatus::Failed, "{bomb:?}");
    assert_contains(bomb.error.as_deref().unwrap_or_default(), "memory limit of 32 MiB");

    // The deadline kills it.
    let mut slow = container(image, "sleep 100");
    slow.timeout_s = Some(2);
    let slow = t.client.submit(&slow).await.unwrap().job;
    let slow = t.wait(&slow.id).await;
    assert_eq!(slow.status, JobStatus::TimedOut, "{slow:?}");
    let took = seconds_between(slow.started_at.as_deref(), slow.completed_at.as_deref());
    assert!(took < 3.0, "timed out after {took} s");

    // A cancel stops it, and the container is gone within 5 s.
    let long = t.client.submit(&container(image, "sleep 100")).await.unwrap().job;
    eventually(20, || async { t.client.get(&long.id).await.unwrap().status == JobStatus::Running }).await;
    let cancelled = t.client.cancel(&long.id).await.unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    eventually(5, || async { containers_of(&long.id).is_empty() }).await;
    for id in [&probe.id, &bomb.id, &slow.id] {
        assert_eq!(containers_of(id), "", "a container was left behind");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_job_needs_an_engine_and_an_image_on_the_machine() {
    let image = image().await;
    let t = TestServer::start_with(|c| c.container_engine = false).await;
    let refused = t.client.submit(&container(image, "true")).await.unwrap_err();
    assert_eq!(refused.kind(), Some("unavailable"), "{refused}");
    let both = SubmitRequest { plugin: "probe".into(), ..container(image, "true") };
    assert_eq!(t.client.submit(&both).await.unwrap_err().kind(), Some("invalid_params"));

    let t = TestServer::start().await;
    let missing = t.client.submit(&container("jobhost-test-no-such-image:1", "true")).await.unwrap().job;
    let missing = t.wait(&missing.id).await;
    assert_eq!(missing.status, JobStatus::Failed);
    assert_contains(missing.error.as_deref().unwrap_or_default(), "is not on this machine");
}

/// Seconds from `from` to `to` (RFC 3339).
fn seconds_between(from: Option<&str>, to: Option<&str>) -> f64 {
    let at = |t: Option<&str>| chrono::DateTime::parse_from_rfc3339(t.unwrap_or_default()).unwrap();
    (at(to) - at(from)).num_milliseconds() as f64 / 1000.0
}

/// `container-step` running `script` in the test image, keeping `keep` from `/work`.
fn step(plugin: &str, image: &str, script: &str, keep: &[&str]) -> SubmitRequest {
    SubmitRequest {
        plugin: plugin.into(),
        input: Some(serde_json::json!({"image": image, "command": ["sh", "-c", script], "keep": keep})),
        ..SubmitRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_granted_containers_runs_one_that_shares_its_work_dir() {
    let image = image().await;
    let t = TestServer::start().await;
    let wasm = std::fs::read(jobhost_tests::CONTAINER_STEP_WASM).unwrap();
    let granted = t.client.install_granted("step", &wasm, &[jobhost_model::PluginGrant::Containers]).await.unwrap();
    assert_eq!(granted.plugin.grants, [jobhost_model::PluginGrant::Containers]);
    let script = "echo made-in-the-container > /work/result.txt; echo to-stdout; echo to-stderr >&2; \
                  ls /output 2>&1 | head -1; wget -q -T 2 http://127.0.0.1:9 2>/dev/null || echo no-network";
    let job = t.client.submit(&step("step", image, script, &["result.txt"])).await.unwrap().job;
    assert_eq!(job.grants, [jobhost_model::PluginGrant::Containers]);
    let done = t.wait(&job.id).await;
    assert_eq!(done.status, JobStatus::Completed, "{done:?} {:?}", t.logs(&job.id).await);
    // The plugin read what the container wrote in the shared /work.
    assert_eq!(t.client.read_artifact(&job.id, "result.txt").await.unwrap(), b"made-in-the-container\n");
    let stdout = t.stream_text(&job.id, LogStream::Stdout).await;
    assert_contains(&stdout, "to-stdout\n");
    assert_contains(&stdout, "no-network\n");
    assert_contains(&stdout, "/output: No such file or directory");
    assert_eq!(t.stream_text(&job.id, LogStream::Stderr).await, "to-stderr\n");
    assert_contains(&t.stream_text(&job.id, LogStream::Log).await, "the step exited with 0");
    assert_eq!(containers_of(&job.id), "", "a container was left behind");

    // A failing step fails the job with its exit code.
    let failing = t.client.submit(&step("step", image, "exit 4", &[])).await.unwrap().job;
    let failing = t.wait(&failing.id).await;
    assert_eq!(failing.status, JobStatus::Failed);
    assert_eq!(failing.error.as_deref(), Some("the step exited with code 4"));

    // The same component installed without the grant is denied.
    t.client.install("step-plain", &wasm).await.unwrap();
    let denied = t.client.submit(&step("step-plain", image, "touch /work/x", &[])).await.unwrap().job;
    let denied = t.wait(&denied.id).await;
    assert_eq!(denied.status, JobStatus::Failed);
    assert_contains(denied.error.as_deref().unwrap_or_default(), "not granted");
    assert_eq!(containers_of(&denied.id), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_components_container_stops_with_its_job() {
    let image = image().await;
    let t = TestServer::start().await;
    let wasm = std::fs::read(jobhost_tests::CONTAINER_STEP_WASM).unwrap();
    t.client.install_granted("step", &wasm, &[jobhost_model::PluginGrant::Containers]).await.unwrap();
    // Cancelled while its container runs: the container goes with it.
    let job = t.client.submit(&step("step", image, "echo started; sleep 100", &[])).await.unwrap().job;
    eventually(20, || async { t.stream_text(&job.id, LogStream::Stdout).await == "started\n" }).await;
    assert_ne!(containers_of(&job.id), "", "its container runs");
    assert_eq!(t.client.cancel(&job.id).await.unwrap().status, JobStatus::Cancelled);
    eventually(5, || async { containers_of(&job.id).is_empty() }).await;
    // Timed out while its container runs: the same.
    let mut slow = step("step", image, "sleep 100", &[]);
    slow.timeout_s = Some(2);
    let slow = t.wait(&t.client.submit(&slow).await.unwrap().job.id).await;
    assert_eq!(slow.status, JobStatus::TimedOut, "{slow:?}");
    eventually(5, || async { containers_of(&slow.id).is_empty() }).await;
    // Without an engine the call answers `unavailable`.
    let off = TestServer::start_with(|c| c.container_engine = false).await;
    off.client.install_granted("step", &wasm, &[jobhost_model::PluginGrant::Containers]).await.unwrap();
    let refused = off.wait(&off.client.submit(&step("step", image, "true", &[])).await.unwrap().job.id).await;
    assert_eq!(refused.status, JobStatus::Failed);
    assert_contains(refused.error.as_deref().unwrap_or_default(), "no container engine");
}

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

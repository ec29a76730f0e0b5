//! GPUs: a declared inventory (`--gpus FILE`; how these machines, which have no GPU,
//! exercise it), jobs given specific devices and made to wait for busy ones, the
//! usage shown by type, and a GPU container job's request to the real Docker Engine,
//! which here has no NVIDIA runtime and refuses it.

use crate::*;
use jobhost_model::{Gpu, GpuUsage};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

fn gpu(index: u32) -> Gpu {
    Gpu { index, uuid: format!("GPU-0000000{index}"), gpu_type: "h100".into(), memory_mb: 81920 }
}

/// A server whose node declares two H100s.
async fn with_two_gpus(tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
    TestServer::start_with(|c| {
        c.node.gpus = Some(vec![gpu(0), gpu(1)]);
        tweak(c);
    })
    .await
}

fn sleeper(gpus: u32, seconds: &str) -> SubmitRequest {
    SubmitRequest {
        plugin: "probe".into(),
        args: vec!["sleep".into(), seconds.into()],
        gpus: Some(gpus),
        ..SubmitRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gpu_jobs_get_their_own_devices_and_wait_for_busy_ones() {
    let t = with_two_gpus(|_| {}).await;
    t.install("probe", jobhost_tests::PROBE_WASM).await;
    let mut jobs = Vec::new();
    for _ in 0..3 {
        jobs.push(t.client.submit(&sleeper(1, "1.5")).await.unwrap().job);
    }
    // Two run at once, on distinct devices; the third waits for one.
    eventually(20, || async {
        let running = futures::future::join_all(jobs.iter().map(|j| t.client.get(&j.id))).await;
        running.iter().filter(|j| j.as_ref().is_ok_and(|j| j.status == JobStatus::Running)).count() == 2
    })
    .await;
    let now = futures::future::join_all(jobs.iter().map(|j| t.client.get(&j.id))).await;
    let now: Vec<Job> = now.into_iter().map(Result::unwrap).collect();
    let held: Vec<&Job> = now.iter().filter(|j| j.status == JobStatus::Running).collect();
    let devices: BTreeSet<u32> = held.iter().flat_map(|j| j.gpu_devices.iter().copied()).collect();
    assert_eq!(devices, [0, 1].into(), "{held:?}");
    assert!(held.iter().all(|j| j.gpu_devices.len() == 1));
    let waiting = now.iter().find(|j| j.status != JobStatus::Running).unwrap();
    assert_eq!((waiting.status, waiting.gpu_devices.as_slice()), (JobStatus::Pending, &[][..]), "{waiting:?}");
    let in_use = [GpuUsage { gpu_type: "h100".into(), used: 2, total: 2 }];
    assert_eq!(t.client.usage().await.unwrap().gpus, in_use);
    let node = t.client.workers().await.unwrap().into_iter().find(|w| w.id == t.server().node_id()).unwrap();
    assert_eq!((node.gpus.len(), node.gpu_usage.as_slice()), (2, &in_use[..]));

    // Each ends; the one that waited got a device freed by another.
    for job in &jobs {
        let done = t.wait(&job.id).await;
        assert_eq!((done.status, done.gpus), (JobStatus::Completed, 1), "{done:?}");
        assert_eq!(done.gpu_devices.len(), 1);
    }
    assert_eq!(t.client.usage().await.unwrap().gpus, [GpuUsage { gpu_type: "h100".into(), used: 0, total: 2 }]);

    // A job no node could run is refused, and so is a type without a count.
    let too_many = t.client.submit(&sleeper(3, "0")).await.unwrap_err();
    assert_eq!(too_many.kind(), Some("limit_exceeded"), "{too_many}");
    assert_contains(&too_many.to_string(), "the most any online node has is 2");
    let wrong_type = SubmitRequest { gpu_type: Some("a100".into()), ..sleeper(1, "0") };
    assert_eq!(t.client.submit(&wrong_type).await.unwrap_err().kind(), Some("limit_exceeded"));
    let type_only = SubmitRequest { gpus: None, gpu_type: Some("h100".into()), ..sleeper(0, "0") };
    assert_eq!(t.client.submit(&type_only).await.unwrap_err().kind(), Some("invalid_params"));

    // A node without GPUs runs no GPU job.
    let plain = TestServer::start().await;
    plain.install("probe", jobhost_tests::PROBE_WASM).await;
    assert_eq!(plain.client.submit(&sleeper(1, "0")).await.unwrap_err().kind(), Some("limit_exceeded"));
}

/// A Unix socket in front of the Docker Engine's that passes everything through both
/// ways and keeps a copy of what its clients sent: the requests the server made.
struct EngineTap {
    socket: String,
    sent: Arc<Mutex<Vec<u8>>>,
    _dir: tempfile::TempDir,
}

impl EngineTap {
    async fn start() -> EngineTap {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let copy = sent.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let sent = copy.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                    let engine = tokio::net::UnixStream::connect("/var/run/docker.sock").await.unwrap();
                    let (mut from_client, mut to_client) = client.into_split();
                    let (mut from_engine, mut to_engine) = engine.into_split();
                    let up = async move {
                        let mut buf = vec![0; 64 << 10];
                        while let Ok(n) = from_client.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            sent.lock().unwrap().extend_from_slice(&buf[..n]);
                            if to_engine.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = to_engine.shutdown().await;
                    };
                    let down = async move {
                        let _ = tokio::io::copy(&mut from_engine, &mut to_client).await;
                        let _ = to_client.shutdown().await;
                    };
                    tokio::join!(up, down);
                });
            }
        });
        EngineTap { socket: format!("unix://{}", path.display()), sent, _dir: dir }
    }

    /// The JSON body of the create request of the container named `name`.
    fn create_body(&self, name: &str) -> serde_json::Value {
        let sent = self.sent.lock().unwrap().clone();
        let text = String::from_utf8_lossy(&sent);
        let at = text.find(&format!("/containers/create?name={name}")).expect("the create request");
        let body = at + text[at..].find("\r\n\r\n").expect("its headers end") + 4;
        let mut values = serde_json::Deserializer::from_str(&text[body..]).into_iter::<serde_json::Value>();
        values.next().expect("a JSON body").expect("a JSON body")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gpu_container_asks_the_engine_for_its_devices_and_fails_without_the_nvidia_runtime() {
    let image = tokio::task::spawn_blocking(jobhost_tests::busybox_image).await.unwrap();
    let tap = EngineTap::start().await;
    let socket = tap.socket.clone();
    let t = with_two_gpus(|c| c.container_socket = Some(socket)).await;
    let req = SubmitRequest {
        image: Some(image.into()),
        command: vec!["true".into()],
        gpus: Some(1),
        gpu_type: Some("h100".into()),
        ..SubmitRequest::default()
    };
    let job = t.client.submit(&req).await.unwrap().job;
    let done = t.wait(&job.id).await;
    assert_eq!((done.status, done.gpu_devices.as_slice()), (JobStatus::Failed, &[0][..]), "{done:?}");
    assert_contains(done.error.as_deref().unwrap_or_default(), "no NVIDIA container runtime");

    // What the engine was asked for: the job's device, by the nvidia driver.
    let body = tap.create_body(&format!("jobhost-{}-1", job.id));
    assert_eq!(
        body["HostConfig"]["DeviceRequests"],
        serde_json::json!([{"Driver": "nvidia", "DeviceIDs": ["0"], "Capabilities": [["gpu"]]}]),
        "{body}"
    );
    let env: Vec<&str> = body["Env"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert!(env.contains(&"NVIDIA_VISIBLE_DEVICES=0"), "{env:?}");
    assert_eq!(jobhost_tests::containers_of_job(&job.id), "", "a container was left behind");

    // Its device was freed: the next GPU job gets the same one.
    assert_eq!(t.client.usage().await.unwrap().gpus, [GpuUsage { gpu_type: "h100".into(), used: 0, total: 2 }]);
    let again = t.wait(&t.client.submit(&req).await.unwrap().job.id).await;
    assert_eq!(again.gpu_devices, [0]);
}

//! Uploads in, artifacts out, and the sweeper that keeps the data dir from filling up.

use super::*;
use jobhost_tests::PROBE_WASM;

fn with_files(args: &[&str], files_id: &str) -> SubmitRequest {
    SubmitRequest {
        plugin: "probe".into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        files_id: Some(files_id.into()),
        ..SubmitRequest::default()
    }
}

async fn probe_server() -> TestServer {
    let t = TestServer::start().await;
    t.install("probe", PROBE_WASM).await;
    t
}

/// A tar archive with the given raw entries: (name, kind, data or link target).
fn tar_of(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        // Written raw, as a hostile tool would: `set_path` refuses `..`.
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        if *kind == tar::EntryType::Symlink {
            h.set_size(0);
            h.set_link_name(std::str::from_utf8(data).unwrap()).unwrap();
            h.set_cksum();
            b.append(&h, std::io::empty()).unwrap();
        } else {
            h.set_size(data.len() as u64);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
    }
    b.into_inner().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_reads_an_upload_at_input_and_the_upload_is_consumed_once() {
    let t = probe_server().await;
    let upload = t.client.create_upload().await.unwrap();
    assert!(upload.id.starts_with("upl_"));
    t.client.upload_put(&upload.id, "a.txt", b"hello\n").await.unwrap();
    t.client.upload_put(&upload.id, "sub/b.txt", b"in a folder\n").await.unwrap();

    // Not finalized yet: a job cannot take it.
    let early = t.client.submit(&with_files(&["read-input"], &upload.id)).await.unwrap_err();
    assert_eq!(early.kind(), Some("conflict"), "{early}");

    let sealed = t.client.finalize_upload(&upload.id).await.unwrap();
    assert_eq!(sealed.state, jobhost_model::UploadState::Finalized);
    assert_eq!((sealed.size_bytes, sealed.file_count), (18, 2));
    let late = t.client.upload_put(&upload.id, "c.txt", b"x").await.unwrap_err();
    assert_eq!(late.kind(), Some("conflict"), "a finalized upload takes no more files");

    let job = t.client.submit(&with_files(&["read-input"], &upload.id)).await.unwrap().job;
    assert_eq!(job.files_id.as_deref(), Some(upload.id.as_str()));
    let consumed = t.client.get_upload(&upload.id).await.unwrap();
    assert_eq!(consumed.state, jobhost_model::UploadState::Consumed);
    assert_eq!(consumed.job_id.as_deref(), Some(job.id.as_str()));

    let done = t.wait(&job.id).await;
    assert_eq!(done.status, JobStatus::Completed, "{done:?}");
    let out = t.stream_text(&job.id, LogStream::Stdout).await;
    assert!(out.contains("input:/input/a.txt:6"), "{out}");
    assert!(out.contains("input:/input/sub/b.txt:12"), "{out}");
    assert!(out.contains("input-count:2"), "{out}");

    let again = t.client.submit(&with_files(&["read-input"], &upload.id)).await.unwrap_err();
    assert_eq!(again.kind(), Some("conflict"), "{again}");
    assert!(again.to_string().contains("consumed"), "{again}");
    let unknown = t.client.submit(&with_files(&["read-input"], "upl_0000000000000000000000000000000a")).await;
    assert_eq!(unknown.unwrap_err().kind(), Some("not_found"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_cannot_modify_its_input() {
    let t = probe_server().await;
    let upload = t.client.create_upload().await.unwrap();
    t.client.upload_put(&upload.id, "data.txt", b"precious\n").await.unwrap();
    t.client.finalize_upload(&upload.id).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let job = t.client.submit(&with_files(&["escape", &port], &upload.id)).await.unwrap().job;
    let job = t.wait(&job.id).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    let out = t.stream_text(&job.id, LogStream::Stdout).await;
    for name in ["write-input", "truncate-input", "create-input", "rename-input", "hardlink-input"] {
        let line = out.lines().find(|l| l.starts_with(&format!("escape:{name}:"))).unwrap_or_default();
        assert!(line.starts_with(&format!("escape:{name}:blocked:")), "{name}: {line}\n{out}");
    }
    let input = t.dir.path().join("jobs").join(&job.id).join("input");
    assert_eq!(std::fs::read_to_string(input.join("data.txt")).unwrap(), "precious\n");
    assert_eq!(std::fs::read_dir(&input).unwrap().count(), 1, "nothing was created in /input");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_file_goes_over_http_put_and_reaches_the_job_intact() {
    let t = probe_server().await;
    let upload = t.client.create_upload().await.unwrap();
    let data: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let put = t.client.put_file(&upload.id, "big/blob.bin", data.clone()).await.unwrap();
    assert_eq!(put["size_bytes"], 3 * 1024 * 1024, "{put}");
    let sealed = t.client.finalize_upload(&upload.id).await.unwrap();
    assert_eq!(sealed.size_bytes, data.len() as u64);
    let job = t.client.submit(&with_files(&["read-input"], &upload.id)).await.unwrap().job;
    let job = t.wait(&job.id).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    let out = t.stream_text(&job.id, LogStream::Stdout).await;
    assert!(out.contains(&format!("input:/input/big/blob.bin:{}", data.len())), "{out}");
    let on_disk = std::fs::read(t.dir.path().join("jobs").join(&job.id).join("input/big/blob.bin")).unwrap();
    assert!(on_disk == data, "byte for byte");

    // Bad paths and other users' intentions are refused over HTTP as over RPC.
    let other = t.client.create_upload().await.unwrap();
    let escape = t.client.put_file(&other.id, "../evil", b"x".to_vec()).await.unwrap_err();
    assert_eq!(escape.kind(), Some("invalid_params"), "{escape}");
    assert!(!t.dir.path().join("uploads/evil").exists());
    let (status, _) =
        http_raw(t.server().local_addr, "PUT", &format!("/uploads/{}/files/x.txt", other.id), None, b"no token").await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_zip_slip_archive_is_refused_and_nothing_is_written() {
    let t = probe_server().await;
    let upload = t.client.create_upload().await.unwrap();
    let uploads = t.dir.path().join("uploads");
    let hostile = [
        tar_of(&[("ok.txt", tar::EntryType::Regular, b"fine"), ("../evil", tar::EntryType::Regular, b"pwned")]),
        tar_of(&[("ok.txt", tar::EntryType::Regular, b"fine"), ("etc", tar::EntryType::Symlink, b"/etc")]),
        tar_of(&[("/abs.txt", tar::EntryType::Regular, b"pwned")]),
        tar_of(&[("dup", tar::EntryType::Regular, b"1"), ("dup", tar::EntryType::Regular, b"2")]),
    ];
    for archive in hostile {
        let err = t.client.put_archive(&upload.id, archive).await.unwrap_err();
        assert_eq!(err.kind(), Some("invalid_params"), "{err}");
    }
    assert!(!uploads.join("evil").exists() && !t.dir.path().join("evil").exists());
    assert_eq!(std::fs::read_dir(uploads.join(&upload.id)).unwrap().count(), 0, "nothing was unpacked");

    let good = tar_of(&[("dir/", tar::EntryType::Directory, b""), ("dir/a.txt", tar::EntryType::Regular, b"abc")]);
    let unpacked = t.client.put_archive(&upload.id, good).await.unwrap();
    assert_eq!(unpacked["files"], 1, "{unpacked}");
    let sealed = t.client.finalize_upload(&upload.id).await.unwrap();
    assert_eq!((sealed.size_bytes, sealed.file_count), (3, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn artifacts_match_over_rpc_and_http() {
    let t = probe_server().await;
    let job = t.run("probe", &["write-output", "2"]).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    let listed = t.client.artifacts(&job.id).await.unwrap();
    assert!(!listed.is_empty());
    for a in &listed {
        let rpc = t.client.read_artifact(&job.id, &a.name).await.unwrap();
        let http = t.client.download_artifact(&job.id, &a.name).await.unwrap();
        assert!(rpc == http.body, "{} differs between RPC and HTTP", a.name);
        assert_eq!(sha256_hex(&http.body), a.sha256);
        assert_eq!(http.header("etag"), Some(format!("\"{}\"", a.sha256).as_str()));
        assert_eq!(http.header("content-length"), Some(a.size_bytes.to_string().as_str()));
    }
    let missing = t.client.download_artifact(&job.id, "no-such-file").await.unwrap_err();
    assert_eq!(missing.kind(), Some("not_found"));
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_uploads_are_swept_and_refused() {
    let t = TestServer::start_with(|c| {
        c.uploads.ttl = Duration::from_secs(1);
        c.sweep_every = Duration::from_millis(200);
    })
    .await;
    t.install("probe", PROBE_WASM).await;
    let upload = t.client.create_upload().await.unwrap();
    t.client.upload_put(&upload.id, "a.txt", b"soon gone").await.unwrap();
    t.client.finalize_upload(&upload.id).await.unwrap();
    let dir = t.dir.path().join("uploads").join(&upload.id);
    assert!(dir.exists());
    // The sweep marks the upload expired, then deletes its files.
    eventually(10, || async {
        t.client.get_upload(&upload.id).await.unwrap().state == jobhost_model::UploadState::Expired && !dir.exists()
    })
    .await;
    let err = t.client.submit(&with_files(&["read-input"], &upload.id)).await.unwrap_err();
    assert_eq!(err.kind(), Some("conflict"), "{err}");
    assert!(err.to_string().contains("expired"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_cleans_jobs_past_the_retention_and_prunes_their_logs() {
    let t = TestServer::start_with(|c| {
        c.retention = Duration::from_millis(300);
        c.sweep_every = Duration::from_secs(3600);
    })
    .await;
    t.install("probe", PROBE_WASM).await;
    let old = t.run("probe", &["echo", "old"]).await;
    assert!(!t.logs(&old.id).await.is_empty());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let running = t.submit("probe", &["sleep", "30"]).await;
    let report = t.client.gc().await.unwrap();
    assert_eq!(report.jobs_cleaned, 1, "{report:?}");
    assert!(report.log_chunks_pruned > 0, "{report:?}");
    assert_eq!(t.client.get(&old.id).await.unwrap().status, JobStatus::Cleaned);
    assert!(t.logs(&old.id).await.is_empty());
    assert!(!t.dir.path().join("jobs").join(&old.id).exists());
    assert!(!t.client.get(&running.id).await.unwrap().status.is_terminal(), "live jobs are never swept");
    t.client.cancel(&running.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_limits_are_enforced_with_limit_exceeded() {
    let t = TestServer::start_with(|c| {
        c.uploads.max_bytes = 1024;
        c.uploads.max_files = 2;
        c.uploads.max_live_per_user = 2;
    })
    .await;
    let upload = t.client.create_upload().await.unwrap();
    let too_big = t.client.upload_put(&upload.id, "big", &[0u8; 2048]).await.unwrap_err();
    assert_eq!(too_big.kind(), Some("limit_exceeded"), "{too_big}");
    let too_big_http = t.client.put_file(&upload.id, "big", vec![0u8; 2048]).await.unwrap_err();
    assert_eq!(too_big_http.kind(), Some("limit_exceeded"), "{too_big_http}");
    t.client.upload_put(&upload.id, "one", b"1").await.unwrap();
    t.client.upload_put(&upload.id, "two", b"2").await.unwrap();
    let third = t.client.upload_put(&upload.id, "three", b"3").await.unwrap_err();
    assert_eq!(third.kind(), Some("limit_exceeded"), "{third}");
    let third_http = t.client.put_file(&upload.id, "three", b"3".to_vec()).await.unwrap_err();
    assert_eq!(third_http.kind(), Some("limit_exceeded"), "{third_http}");
    let replaced = t.client.put_file(&upload.id, "two", b"22".to_vec()).await.unwrap();
    assert_eq!(replaced["size_bytes"], 2, "replacing a file needs no new slot");
    t.client.create_upload().await.unwrap();
    let many = t.client.create_upload().await.unwrap_err();
    assert_eq!(many.kind(), Some("limit_exceeded"), "{many}");
    let sealed = t.client.finalize_upload(&upload.id).await.unwrap();
    assert_eq!((sealed.size_bytes, sealed.file_count), (3, 2), "refused writes left nothing behind");
    let staging = t.dir.path().join("uploads/.incoming");
    assert_eq!(std::fs::read_dir(staging).unwrap().count(), 0, "no received body is left over");
}

/// An archive lands whole or not at all: one that fails part-way (a file `d`, then
/// `d/a.txt`) and one whose file meets a directory the upload has leave nothing of
/// themselves, and nothing stays behind in the staging area.
#[tokio::test(flavor = "multi_thread")]
async fn an_archive_that_fails_part_way_leaves_nothing() {
    let t = probe_server().await;
    let upload = t.client.create_upload().await.unwrap();
    t.client.upload_put(&upload.id, "keep.txt", b"kept").await.unwrap();
    t.client.upload_put(&upload.id, "dir/x.txt", b"x").await.unwrap();
    let file_then_child =
        tar_of(&[("d", tar::EntryType::Regular, b"file"), ("d/a.txt", tar::EntryType::Regular, b"a")]);
    let err = t.client.put_archive(&upload.id, file_then_child).await.unwrap_err();
    assert_eq!(err.kind(), Some("conflict"), "{err}");
    let over_a_dir = tar_of(&[("new.txt", tar::EntryType::Regular, b"new"), ("dir", tar::EntryType::Regular, b"f")]);
    let err = t.client.put_archive(&upload.id, over_a_dir).await.unwrap_err();
    assert_eq!(err.kind(), Some("conflict"), "{err}");
    let staging = t.dir.path().join("uploads").join(".incoming");
    let left: Vec<_> = std::fs::read_dir(&staging).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "left in staging: {left:?}");
    let sealed = t.client.finalize_upload(&upload.id).await.unwrap();
    assert_eq!((sealed.file_count, sealed.size_bytes), (2, 5), "only the two files put before");
}

/// A file route's path whose `%` escapes are not UTF-8 says so, as `invalid_params`
/// about the path (or the artifact's name), never that it is empty.
#[tokio::test(flavor = "multi_thread")]
async fn a_path_that_is_not_percent_encoded_utf8_says_so() {
    let t = probe_server().await;
    let upload = t.client.create_upload().await.unwrap();
    let auth = format!("Bearer {}", t.server().admin_token().unwrap());
    let addr = t.server().local_addr;
    let put = format!("/uploads/{}/files/%C0%AE", upload.id);
    let (status, body) = http_raw(addr, "PUT", &put, Some(&auth), b"x").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        (body["error"]["data"]["kind"].as_str(), body["error"]["data"]["field"].as_str()),
        (Some("invalid_params"), Some("path"))
    );
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("percent-encoded UTF-8"), "{body}");
    let (status, body) = http_raw(addr, "GET", "/jobs/job_x/artifacts/%FF", Some(&auth), b"").await;
    assert_eq!((status, body["error"]["data"]["field"].as_str()), (400, Some("name")), "{body}");
}

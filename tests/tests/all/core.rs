//! The walking skeleton: install, submit, run, logs, artifacts, errors, events,
//! restarts.

use super::*;
use jobhost_model::EventKind;
use jobhost_tests::{HELLO_WASM, PROBE_WASM, WORDCOUNT_WASM};
use serde_json::json;
use std::collections::BTreeMap;

#[tokio::test(flavor = "multi_thread")]
async fn a_command_gets_args_and_env_and_its_output_is_kept() {
    let t = TestServer::start().await;
    t.install("probe", PROBE_WASM).await;
    let req = SubmitRequest {
        plugin: "probe".into(),
        args: vec!["echo".into(), "a b".into(), "c".into()],
        env: BTreeMap::from([("GREETING".to_string(), "hi".to_string())]),
        ..SubmitRequest::default()
    };
    let submitted = t.client.submit(&req).await.unwrap();
    assert!(submitted.created);
    assert_eq!(submitted.job.status, JobStatus::Pending);
    let job = t.wait(&submitted.job.id).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    assert_eq!(job.exit_code, Some(0));
    assert!(job.started_at.is_some() && job.completed_at.is_some());

    let chunks = t.logs(&job.id).await;
    let seqs: Vec<u64> = chunks.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, (0..chunks.len() as u64).collect::<Vec<_>>(), "sequence numbers are dense and ordered");
    let stdout: String = chunks.iter().filter(|c| c.stream == LogStream::Stdout).map(|c| c.data.as_str()).collect();
    let stderr: String = chunks.iter().filter(|c| c.stream == LogStream::Stderr).map(|c| c.data.as_str()).collect();
    assert!(stdout.contains("arg:a b\narg:c\n"), "{stdout}");
    // The job's env is its whole environment: nothing of the host leaks in.
    let env_lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("env:")).collect();
    assert_eq!(env_lines, ["env:GREETING=hi"], "{stdout}");
    assert!(stderr.contains("to-stderr"), "{stderr}");
    let last_stdout = chunks.iter().filter(|c| c.stream == LogStream::Stdout).map(|c| c.seq).max().unwrap();
    let first_stderr = chunks.iter().filter(|c| c.stream == LogStream::Stderr).map(|c| c.seq).min().unwrap();
    assert!(last_stdout < first_stderr, "stdout was written (and flushed) before stderr");
    let page = t.client.logs(&job.id, 0, None).await.unwrap();
    assert!(page.eof);

    let artifacts = t.client.artifacts(&job.id).await.unwrap();
    let got: Vec<(&str, u64, &str)> =
        artifacts.iter().map(|a| (a.name.as_str(), a.size_bytes, a.sha256.as_str())).collect();
    let (r, x) = (sha256_hex(b"result\n"), sha256_hex(b"x\n"));
    assert_eq!(got, [("result.txt", 7, r.as_str()), ("sub/x.txt", 2, x.as_str())]);
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_and_traps_fail_the_job() {
    let t = TestServer::start().await;
    t.install("probe", PROBE_WASM).await;
    let exit3 = t.run("probe", &["exit", "3"]).await;
    assert_eq!(exit3.status, JobStatus::Failed, "{exit3:?}");
    assert_eq!(exit3.exit_code, Some(3));
    let exit1 = t.run("probe", &["exit", "1"]).await;
    assert_eq!((exit1.status, exit1.exit_code), (JobStatus::Failed, Some(1)));
    let trap = t.run("probe", &["trap"]).await;
    assert_eq!(trap.status, JobStatus::Failed);
    let error = trap.error.clone().unwrap_or_default();
    assert!(error.contains("trap"), "{error}");
    let detail = trap.detail.unwrap_or_default();
    assert!(detail.contains("wasm backtrace"), "a trap's detail is its backtrace: {detail}");
    assert!(t.stream_text(&trap.id, LogStream::Stderr).await.contains("probe trap"));
    let usage = t.run("probe", &["no-such-mode"]).await;
    assert_eq!((usage.status, usage.exit_code), (JobStatus::Failed, Some(2)));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sdk_plugin_logs_reports_progress_and_writes_output() {
    let t = TestServer::start().await;
    t.install("hello", HELLO_WASM).await;
    let plugins = t.client.plugins().await.unwrap();
    assert_eq!(plugins.len(), 1);
    assert_eq!(plugins[0].kind, jobhost_model::PluginKind::Plugin);
    let req = SubmitRequest { plugin: "hello".into(), input: Some(json!({"name": "jobhost"})), ..Default::default() };
    let id = t.client.submit(&req).await.unwrap().job.id;
    let job = t.wait(&id).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    let log = t.stream_text(&id, LogStream::Log).await;
    assert!(log.contains("hello, jobhost"), "{log}");
    let progress = job.progress.expect("progress recorded");
    assert_eq!((progress.done, progress.total), (1, Some(1)));
    let artifacts = t.client.artifacts(&id).await.unwrap();
    assert_eq!(artifacts.len(), 1);
    assert_eq!(artifacts[0].name, "hello.txt");
    assert_eq!(artifacts[0].sha256, sha256_hex(b"hello, jobhost\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_wordcount_plugin_reports_on_an_empty_input() {
    let t = TestServer::start().await;
    t.install("wordcount", WORDCOUNT_WASM).await;
    let job = t.run("wordcount", &[]).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    let names: Vec<String> = t.client.artifacts(&job.id).await.unwrap().into_iter().map(|a| a.name).collect();
    assert_eq!(names, ["report.json", "report.txt"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_components_and_bad_params_are_refused_with_stable_kinds() {
    let t = TestServer::start().await;
    let not_wasm = t.client.install("bad", b"definitely not wasm").await.unwrap_err();
    assert_eq!(not_wasm.kind(), Some("invalid_params"), "{not_wasm}");
    // A valid core module is still not a component.
    let core_module = t.client.install("core", b"\0asm\x01\0\0\0").await.unwrap_err();
    assert_eq!(core_module.kind(), Some("invalid_params"), "{core_module}");
    let bad_name = t.client.install("../x", b"\0asm\x01\0\0\0").await.unwrap_err();
    assert_eq!(bad_name.kind(), Some("invalid_params"));
    assert!(t.client.plugins().await.unwrap().is_empty(), "nothing was stored");

    let unknown = t.client.submit(&SubmitRequest { plugin: "nope".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(unknown.kind(), Some("not_found"), "{unknown}");
    let missing_job = t.client.get("job_0000000000000000000000000000000a").await.unwrap_err();
    assert_eq!(missing_job.kind(), Some("not_found"));

    // What any HTTP client sees for a wrongly typed field.
    let resp =
        post_raw(&t, r#"{"jsonrpc":"2.0","id":1,"method":"jobs.submit","params":{"plugin":"x","timeout_s":"soon"}}"#)
            .await;
    assert_eq!(resp["error"]["code"], -32602, "{resp}");
    assert_eq!(resp["error"]["data"]["kind"], "invalid_params");
    assert_eq!(resp["error"]["data"]["field"], "timeout_s");
    assert!(resp["error"]["message"].as_str().unwrap().contains("timeout_s"));

    let resp = post_raw(&t, r#"{"jsonrpc":"2.0","id":2,"method":"jobs.get","params":{"id":"x","extra":1}}"#).await;
    assert_eq!(resp["error"]["data"]["field"], "extra", "{resp}");
    let resp =
        post_raw(&t, r#"{"jsonrpc":"2.0","id":3,"method":"jobs.wait","params":{"id":"x","timeout_s":-1}}"#).await;
    assert_eq!(resp["error"]["data"]["kind"], "invalid_params", "{resp}");
    let resp = post_raw(&t, r#"{"jsonrpc":"2.0","id":4,"method":"no.such.method"}"#).await;
    assert_eq!(resp["error"]["code"], -32601, "{resp}");
    // A subscription over plain HTTP says it needs a WebSocket, alone or in a batch.
    let resp = post_raw(&t, r#"{"jsonrpc":"2.0","id":5,"method":"jobs.subscribe","params":{}}"#).await;
    assert_eq!(resp["error"]["data"]["kind"], "unavailable", "{resp}");
    assert_contains(resp["error"]["message"].as_str().unwrap_or_default(), "needs a WebSocket");
    let resp = post_raw(&t, r#"[{"jsonrpc":"2.0","id":6,"method":"jobs.subscribe","params":{}}]"#).await;
    assert_eq!(resp[0]["error"]["data"]["kind"], "unavailable", "{resp}");
    // An id must be a string, a number or null: an object or an array is an invalid
    // request (-32600), alone or in a batch (the batch is refused whole).
    for call in [
        r#"{"jsonrpc":"2.0","id":{"a":1},"method":"jobs.submit","params":{"plugin":"probe"}}"#,
        r#"{"jsonrpc":"2.0","id":[7],"method":"system.health"}"#,
        r#"[{"jsonrpc":"2.0","id":8,"method":"system.health"},{"jsonrpc":"2.0","id":{},"method":"system.health"}]"#,
    ] {
        let resp = post_raw(&t, call).await;
        assert_eq!(resp["error"]["code"], -32600, "{call}: {resp}");
        assert_eq!(resp["error"]["data"]["kind"], "invalid_request", "{resp}");
        assert_eq!(resp["id"], serde_json::Value::Null, "{resp}");
        assert_contains(resp["error"]["message"].as_str().unwrap_or_default(), "an `id` must be");
    }
    assert_eq!(post_raw(&t, r#"{"jsonrpc":"2.0","id":"x","method":"system.health"}"#).await["result"]["status"], "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_are_answered_call_by_call() {
    let t = TestServer::start().await;
    let resp = post_raw(
        &t,
        r#"[{"jsonrpc":"2.0","id":1,"method":"system.health"},
            {"jsonrpc":"2.0","id":2,"method":"jobs.get","params":{"id":"job_x"}}]"#,
    )
    .await;
    let answers = resp.as_array().unwrap();
    assert_eq!(answers.len(), 2);
    let by_id = |id: i64| answers.iter().find(|a| a["id"] == id).unwrap();
    assert_eq!(by_id(1)["result"]["status"], "ok");
    assert_eq!(by_id(2)["error"]["data"]["kind"], "not_found");
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_calls_and_events_follow_a_job_to_completed() {
    let t = TestServer::start().await;
    t.install("probe", PROBE_WASM).await;
    let ws = t.client.websocket().await.unwrap();
    let mut events = ws.subscribe(None).await.unwrap();
    let mut params = serde_json::Map::new();
    params.insert("plugin".into(), json!("probe"));
    params.insert("args".into(), json!(["echo", "over-ws"]));
    let submitted: jobhost_model::Submitted = ws.call("jobs.submit", params).await.unwrap();
    let id = submitted.job.id;
    let mut seen = Vec::new();
    let mut saw_log = false;
    while seen.last() != Some(&JobStatus::Completed) {
        let ev = tokio::time::timeout(Duration::from_secs(30), events.next()).await.unwrap().unwrap().unwrap();
        if ev.job_id != id {
            continue;
        }
        match ev.kind {
            EventKind::Status => seen.push(ev.status.unwrap()),
            EventKind::Log => saw_log |= ev.log.is_some_and(|l| l.data.contains("arg:over-ws")),
            _ => {}
        }
    }
    assert_eq!(seen, [JobStatus::Pending, JobStatus::Starting, JobStatus::Running, JobStatus::Completed]);
    assert!(saw_log, "log chunks are pushed to subscribers");

    // A subscription to one job starts with its current state and ends with it.
    let mut one = ws.subscribe(Some(&id)).await.unwrap();
    let first = one.next().await.unwrap().unwrap();
    assert_eq!((first.kind, first.status), (EventKind::Status, Some(JobStatus::Completed)));
    let missing = ws.subscribe(Some("job_0000000000000000000000000000000a")).await.unwrap_err();
    assert_eq!(missing.kind(), Some("not_found"));
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_list_filters_by_status_and_pages_with_a_cursor() {
    let t = TestServer::start().await;
    t.install("probe", PROBE_WASM).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let code = if i % 2 == 0 { "0" } else { "4" };
        ids.push(t.run("probe", &["exit", code]).await.id);
    }
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = t.client.list(None, cursor.as_deref(), Some(2)).await.unwrap();
        assert!(page.jobs.len() <= 2);
        paged.extend(page.jobs.into_iter().map(|j| j.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(paged, ids, "every job once, newest first");
    let failed = t.client.list(Some(JobStatus::Failed), None, None).await.unwrap();
    assert_eq!(failed.jobs.len(), 2);
    assert!(failed.jobs.iter().all(|j| j.status == JobStatus::Failed && j.exit_code == Some(4)));
    let bad = t.client.list(None, Some("nonsense"), None).await.unwrap_err();
    assert_eq!(bad.kind(), Some("invalid_params"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pending_job_cancelled_never_starts_and_an_ended_one_cannot_be() {
    let t = TestServer::start_with(|c| c.concurrency = 1).await;
    t.install("probe", PROBE_WASM).await;
    let busy = t.submit("probe", &["sleep", "30"]).await;
    eventually(10, || async { t.client.get(&busy.id).await.unwrap().status == JobStatus::Running }).await;
    let queued = t.submit("probe", &["echo"]).await;
    let cancelled = t.client.cancel(&queued.id).await.unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    // The running job is interrupted promptly.
    let stopped = t.client.cancel(&busy.id).await.unwrap();
    assert_eq!(stopped.status, JobStatus::Cancelled);
    let busy = t.wait(&busy.id).await;
    assert_eq!(busy.status, JobStatus::Cancelled);
    let queued = t.client.get(&queued.id).await.unwrap();
    assert_eq!(queued.status, JobStatus::Cancelled);
    assert!(queued.started_at.is_none(), "a cancelled pending job never starts");
    let again = t.client.cancel(&queued.id).await.unwrap_err();
    assert_eq!(again.kind(), Some("conflict"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_keeps_everything_and_runs_what_was_left() {
    let mut t = TestServer::start_with(|c| c.concurrency = 1).await;
    t.install("probe", PROBE_WASM).await;
    let done = t.run("probe", &["echo", "kept"]).await;
    assert_eq!(done.status, JobStatus::Completed);
    let interrupted = t.submit("probe", &["sleep", "60"]).await;
    eventually(10, || async { t.client.get(&interrupted.id).await.unwrap().status == JobStatus::Running }).await;
    let left_pending = t.submit("probe", &["echo", "later"]).await;
    assert_eq!(t.client.get(&left_pending.id).await.unwrap().status, JobStatus::Pending);
    let artifacts_before = t.client.artifacts(&done.id).await.unwrap();
    let logs_before = t.logs(&done.id).await;

    t.restart_with(|c| c.concurrency = 1).await;
    // Started twice on one data dir: migrations were not applied again (that fails).
    let plugins = t.client.plugins().await.unwrap();
    assert_eq!(plugins.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["probe"]);
    assert_eq!(t.client.get(&done.id).await.unwrap(), done);
    assert_eq!(t.logs(&done.id).await, logs_before);
    assert_eq!(t.client.artifacts(&done.id).await.unwrap(), artifacts_before);

    let interrupted = t.wait(&interrupted.id).await;
    assert_eq!(interrupted.status, JobStatus::Failed);
    assert!(interrupted.error.unwrap_or_default().contains("host stopped"));
    let later = t.wait(&left_pending.id).await;
    assert_eq!(later.status, JobStatus::Completed, "{later:?}");
    assert!(t.stream_text(&later.id, LogStream::Stdout).await.contains("arg:later"));
    t.stop().await;
}

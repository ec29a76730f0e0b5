//! `GET /metrics`: the Prometheus text format, read with the official Python parser
//! (`prometheus_client`), whose counters move by exactly the jobs run; an admin's on
//! the main port, anyone's on `--metrics-listen`.

use crate::*;
use jobhost_model::Scope;
use std::collections::HashMap;

/// `GET path` on `addr`: the status and the body.
async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let (status, _, body) = http_get(addr, path, token).await;
    (status, body)
}

/// Every sample of `text` as the Python parser reads it: `name{labels}` → value.
fn parse(text: &str) -> HashMap<String, f64> {
    const SCRIPT: &str = "import json, sys\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        for family in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in family.samples:\n\
        \x20       labels = ','.join(f'{k}={v}' for k, v in sorted(s.labels.items()))\n\
        \x20       print(json.dumps([f'{s.name}{{{labels}}}', s.value]))\n";
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = std::process::Command::new(&python)
        .args(["-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {python} (with prometheus_client installed): {e}"));
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the parser refused the text: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str::<(String, f64)>(l).unwrap()).collect()
}

/// Every sample `t`'s `/metrics` shows an admin, parsed.
pub(crate) async fn scrape(t: &TestServer) -> HashMap<String, f64> {
    let admin = t.server().admin_token().unwrap();
    parse(&get(t.server().local_addr, "/metrics", Some(&admin)).await.1)
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_exactly_the_jobs_run() {
    let t = TestServer::start_with(|c| c.metrics_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)))).await;
    t.install("probe", jobhost_tests::PROBE_WASM).await;
    let admin = t.server().admin_token().unwrap();
    let scrape = || async { parse(&get(t.server().local_addr, "/metrics", Some(&admin)).await.1) };
    let before = scrape().await;
    for _ in 0..7 {
        t.run("probe", &["noop"]).await;
    }
    assert_eq!(t.run("probe", &["exit", "3"]).await.status, JobStatus::Failed);
    let missing = SubmitRequest { plugin: "nothing-installed".into(), ..SubmitRequest::default() };
    assert_eq!(t.client.submit(&missing).await.unwrap_err().kind(), Some("not_found"));
    let after = scrape().await;
    let moved = |sample: &str| after.get(sample).copied().unwrap_or(0.0) - before.get(sample).copied().unwrap_or(0.0);
    assert_eq!(moved("jobhost_jobs_submitted_total{kind=wasm}"), 8.0, "{after:?}");
    assert_eq!(moved("jobhost_jobs_started_total{kind=wasm}"), 8.0);
    assert_eq!(moved("jobhost_jobs_ended_total{kind=wasm,status=completed}"), 7.0);
    assert_eq!(moved("jobhost_jobs_ended_total{kind=wasm,status=failed}"), 1.0);
    assert_eq!(moved("jobhost_job_run_seconds_count{kind=wasm}"), 8.0);
    assert_eq!(moved("jobhost_job_wait_seconds_count{}"), 8.0);
    // Each job was taken by a claim; a claim may also find the queue empty.
    assert!(moved("jobhost_claim_seconds_count{}") >= 8.0);
    assert_eq!(moved("jobhost_claim_jobs_sum{}"), 8.0);
    assert_eq!(moved("jobhost_rpc_requests_total{code=ok,method=jobs.submit}"), 8.0);
    assert_eq!(moved("jobhost_rpc_requests_total{code=not_found,method=jobs.submit}"), 1.0);
    assert_eq!(after.get("jobhost_queue_depth{}"), Some(&0.0));
    assert_eq!(after.get("jobhost_jobs_running{}"), Some(&0.0));
    assert!(moved("jobhost_log_bytes_total{}") > 0.0, "the probe printed `exiting 3`");
    // Every write went through group commits: at least one per job, and at most a
    // few (insert, claim, start and end can each be one).
    let commits = moved("jobhost_commit_seconds_count{}");
    assert!((8.0..=40.0).contains(&commits), "{commits} commits for 8 jobs");
    assert!(moved("jobhost_commit_ops_sum{}") >= 16.0, "each job's insert and end at least");

    // Only an admin reads it on the main port; anyone on --metrics-listen.
    let reader = t.client.create_token(None, &[Scope::Read], None).await.unwrap();
    assert_eq!(get(t.server().local_addr, "/metrics", Some(&reader.token)).await.0, 403);
    assert_eq!(get(t.server().local_addr, "/metrics", None).await.0, 401);
    let side = t.server().metrics_addr().expect("--metrics-listen is on");
    let (status, text) = get(side, "/metrics", None).await;
    assert_eq!(status, 200);
    assert!(parse(&text).contains_key("jobhost_jobs_submitted_total{kind=wasm}"));
    assert_eq!(get(side, "/anything-else", None).await.0, 404);
}

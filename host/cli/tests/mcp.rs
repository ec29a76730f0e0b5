//! `jobhost mcp` driven by a real MCP client nobody here wrote: the official Python
//! SDK (`mcp` on PyPI, installed by `.ci/run`), through `tests/mcp/client.py`, against
//! a real server. Without python3 or the package the test fails; it never skips.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jobhost_client::Client;
use jobhost_model::JobStatus;
use jobhost_server::{self as server, ServerConfig};
use jobhost_tests::{PROBE_WASM, STEPS_WASM};
use serde_json::Value;
use std::net::SocketAddr;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_jobhost");
const CLIENT_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/mcp/client.py");

/// The Python that has the SDK (`PYTHON` overrides `python3`).
fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_python_sdk_over_the_initialize_handshake() {
    let report = drive("legacy").await;
    assert!(report["protocol_version"].as_str().is_some_and(|v| v.starts_with("20")), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_python_sdk_over_the_newest_protocol_it_negotiates() {
    drive("auto").await;
}

/// Runs tests/mcp/client.py in SDK connect `mode` against a fresh server, checks
/// everything it saw, and returns its report.
async fn drive(mode: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path().to_path_buf());
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.concurrency = 2;
    // pull_model starts a pull: its hub is a loopback port nothing listens on (tests
    // never leave 127.0.0.0/8).
    config.hub.endpoint = "http://127.0.0.1:9".into();
    let server = server::start(config).await.unwrap();
    let token = server.admin_token().unwrap();
    let client = Client::with_token(&server.url(), Some(&token)).unwrap();
    client.install("probe", &std::fs::read(PROBE_WASM).unwrap()).await.unwrap();
    client.install("steps", &std::fs::read(STEPS_WASM).unwrap()).await.unwrap();
    let flow = jobhost_model::Step {
        name: "greet".into(),
        plugin: "probe".into(),
        args: vec!["echo".into(), "from-a-workflow".into()],
        task_count: Some(2),
        ..jobhost_model::Step::default()
    };
    let flow = jobhost_model::WorkflowRequest { name: "mcp-flow".into(), steps: vec![flow], ..Default::default() };
    client.create_workflow(&flow).await.unwrap();
    // The server wrote its admin token there at first start.
    let token_file = dir.path().join("token");

    let out = tokio::process::Command::new(python())
        .arg(CLIENT_PY)
        .args(["--jobhost", BIN, "--server", &server.url(), "--plugin", "probe", "--mode", mode, "--token-file"])
        .arg(&token_file)
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {} (python3 with `mcp` installed is required): {e}", python()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "client.py failed ({}):\n{stderr}", out.status);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("client.py printed no JSON ({e}): {}\n{stderr}", String::from_utf8_lossy(&out.stdout))
    });

    // initialize: the handshake named the server.
    assert_eq!(report["server_name"], "jobhost", "{report}");
    // tools/list: every tool, each with an object input and output schema.
    let tools = report["tools"].as_object().unwrap();
    for name in [
        "run_job",
        "submit_job",
        "job_status",
        "job_logs",
        "cancel_job",
        "upload_file",
        "read_artifact",
        "pull_model",
        "list_plugins",
        "start_workflow",
        "workflow_status",
    ] {
        let tool = tools.get(name).unwrap_or_else(|| panic!("tools/list lacks {name}: {report}"));
        assert_eq!(tool["input_schema"]["type"], "object", "{name}");
        assert_eq!(tool["output_schema"]["type"], "object", "{name}");
    }
    // A job runs an installed component or a container image: neither field is
    // required alone (the server refuses a request with neither or both).
    let input = &tools["run_job"]["input_schema"];
    for field in ["plugin", "image", "command", "args"] {
        assert!(input["properties"].get(field).is_some(), "run_job takes {field}: {input}");
    }
    assert!(input.get("required").is_none_or(|r| r.as_array().is_some_and(|r| r.is_empty())), "{input}");

    // tools/call run_job: the component's output, as structured content and as text.
    let run = &report["run_job"];
    assert_eq!(run["is_error"], false, "{run}");
    let s = &run["structured"];
    assert_eq!(s["status"], "completed", "{run}");
    assert_eq!(s["exit_code"], 0);
    assert!(s["stdout_tail"].as_str().unwrap().contains("arg:from-mcp"), "{run}");
    assert!(s["stderr_tail"].as_str().unwrap().contains("to-stderr"), "{run}");
    let names: Vec<&str> = s["artifacts"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["result.txt", "sub/x.txt"], "{run}");
    let text = run["text"][0].as_str().unwrap();
    assert!(text.contains("completed") && text.contains("arg:from-mcp") && text.contains("result.txt"), "{text}");
    let job = client.get(s["job_id"].as_str().unwrap()).await.unwrap();
    assert_eq!(job.status, JobStatus::Completed);

    // A failure is a tool result with isError and a message, not a protocol error.
    let missing = &report["missing_job"];
    assert_eq!(missing["is_error"], true, "{missing}");
    assert!(missing["text"][0].as_str().unwrap().contains("not_found"), "{missing}");

    // read_artifact returns the file's text; list_plugins the installed component.
    let read = &report["read_artifact"]["structured"];
    assert_eq!(
        (read["content"].as_str(), read["encoding"].as_str(), read["eof"].as_bool()),
        (Some("result\n"), Some("utf8"), Some(true)),
        "{report}"
    );
    // start_workflow started a run; workflow_status followed it to its end.
    assert_eq!(report["start_workflow"]["structured"]["created"], true, "{report}");
    assert_eq!(report["start_workflow"]["structured"]["run"]["params"]["who"], "mcp", "{report}");
    let status = &report["workflow_status"]["structured"];
    assert_eq!(status["status"], "success", "{report}");
    assert_eq!(status["steps"][0]["tasks"].as_array().map(Vec::len), Some(2), "{report}");
    let plugins = report["list_plugins"]["structured"]["plugins"].as_array().unwrap();
    assert!(plugins.iter().any(|p| p["name"] == "probe"), "{report}");

    // upload_file and pull_model use methods a server may not have: what the tool
    // answers follows what rpc.discover says the server offers.
    let doc: Value = client.call("rpc.discover", Value::Null).await.unwrap();
    let offers = |m: &str| doc["methods"].as_array().unwrap().iter().any(|x| x["name"] == m);
    for (tool, method) in [("upload_file", "uploads.create"), ("pull_model", "models.pull")] {
        let r = &report[tool];
        let text = r["text"][0].as_str().unwrap_or_default();
        if offers(method) {
            assert!(!text.contains("does not offer"), "{tool}: {r}");
        } else {
            assert_eq!(r["is_error"], true, "{tool}: {r}");
            assert!(text.contains(&format!("does not offer `{method}`")), "{tool}: {r}");
        }
    }
    if offers("uploads.create") {
        let up = &report["upload_file"];
        assert_eq!(up["is_error"], false, "{up}");
        assert!(up["structured"]["files_id"].as_str().unwrap().starts_with("upl_"), "{up}");
        // A job given the upload sees the file at /input.
        let seen = &report["read_input"]["structured"];
        assert!(seen["stdout_tail"].as_str().unwrap().contains("notes.txt:15"), "{report}");
    }

    // A job that reports progress: the notifications carry its own done and total.
    let steps = &report["steps"];
    assert_eq!(steps["structured"]["status"], "completed", "{steps}");
    assert!(steps["structured"]["stdout_tail"].as_str().unwrap().contains("step 4"), "{steps}");
    let reported = report["steps_progress"].as_array().unwrap();
    assert!(
        reported.iter().any(|p| p["total"] == 4.0 && p["message"].as_str().unwrap().contains(" of 4")),
        "expected the job's own progress: {reported:?}"
    );

    // A long job sends progress (elapsed seconds: probe reports none), and cancelling
    // the call cancels the job.
    let progress = report["progress"].as_array().unwrap();
    assert!(progress.len() >= 2, "expected progress notifications: {report}");
    let values: Vec<f64> = progress.iter().map(|p| p["progress"].as_f64().unwrap()).collect();
    assert!(values.windows(2).all(|w| w[1] > w[0]), "progress must increase: {values:?}");
    assert_eq!(report["long_call_returned"], false, "the call was cancelled before it ended");
    let long_id = report["long_job_id"].as_str().unwrap_or_else(|| panic!("no job id in progress: {report}"));
    assert_eq!(report["long_job_status"], "cancelled", "{report}");
    assert_eq!(client.get(long_id).await.unwrap().status, JobStatus::Cancelled);
    assert!(report["long_job_seconds"].as_f64().unwrap() < 30.0, "cancel took too long: {report}");

    server.stop().await;
    report
}

/// `jobhost mcp` with a token file that does not exist refuses to start.
#[test]
fn a_missing_token_file_is_an_error() {
    let out = Command::new(BIN)
        .args(["mcp", "--server", "http://127.0.0.1:9", "--token-file", "/nonexistent/jobhost-token"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("token file"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A refused token is a tool result an agent can read (isError, `unauthorized`), not a
/// protocol error; with the right token the same tool works.
#[tokio::test(flavor = "multi_thread")]
async fn a_bad_token_is_an_error_result_naming_the_problem() {
    use jobhost::mcp::JobhostMcp;
    use tokio_util::sync::CancellationToken;
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path().to_path_buf());
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let server = server::start(config).await.unwrap();

    let bad = JobhostMcp::new(Client::with_token(&server.url(), Some("jh_not-a-token")).unwrap());
    let result = bad.dispatch("list_plugins", None, None, CancellationToken::new()).await.unwrap();
    assert_eq!(result.is_error, Some(true));
    let text = serde_json::to_string(&result.content).unwrap();
    assert!(text.contains("plugins.list failed") && text.contains("unauthorized"), "{text}");

    let good = JobhostMcp::new(Client::with_token(&server.url(), Some(&server.admin_token().unwrap())).unwrap());
    let result = good.dispatch("list_plugins", None, None, CancellationToken::new()).await.unwrap();
    assert_eq!(result.is_error, Some(false), "{result:?}");
    assert_eq!(result.structured_content, Some(serde_json::json!({ "plugins": [] })));
    server.stop().await;
}

//! `rpc.discover`: an OpenRPC document that validates against the official OpenRPC
//! meta-schema (vendored in tests/openrpc/, checked by `validate.py` with Python's
//! `jsonschema`, which `.ci/run` installs) and lists every method of the API.

use crate::TestServer;
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};

const VALIDATE_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openrpc/validate.py");

#[tokio::test(flavor = "multi_thread")]
async fn rpc_discover_validates_against_the_openrpc_meta_schema_and_lists_every_method() {
    let t = TestServer::start().await;
    let doc: Value = t.client.call("rpc.discover", Value::Null).await.unwrap();

    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(&python)
        .arg(VALIDATE_PY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {python} (python3 with jsonschema is required): {e}"));
    child.stdin.take().unwrap().write_all(doc.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the document does not validate:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let names: Vec<&str> = doc["methods"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    for method in [
        "system.health",
        "rpc.discover",
        "plugins.install",
        "plugins.list",
        "jobs.submit",
        "jobs.get",
        "jobs.list",
        "jobs.wait",
        "jobs.cancel",
        "jobs.logs",
        "jobs.cleanup",
        "jobs.subscribe",
        "jobs.unsubscribe",
        "artifacts.list",
        "artifacts.read",
        "resources.usage",
        "uploads.create",
        "uploads.put",
        "uploads.finalize",
        "uploads.get",
        "users.create",
        "users.list",
        "tokens.create",
        "tokens.list",
        "tokens.revoke",
        "workers.list",
        "system.gc",
    ] {
        assert!(names.contains(&method), "rpc.discover lacks {method}: {names:?}");
    }
    // Each method says which token scopes may call it.
    let scopes =
        |name: &str| doc["methods"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap()["x-scopes"].clone();
    assert_eq!(scopes("jobs.submit"), serde_json::json!(["submit"]));
    assert_eq!(scopes("system.gc"), serde_json::json!(["admin"]));
    assert_eq!(scopes("system.health"), serde_json::json!([]));

    // The document is what the server answers: a method it lists is callable.
    let health: Value = t.client.call("system.health", Value::Null).await.unwrap();
    assert_eq!(health["status"], "ok");
    // Wrong params are refused as for any method.
    let e = t.client.call::<Value>("rpc.discover", serde_json::json!({ "x": 1 })).await.unwrap_err();
    assert_eq!(e.kind(), Some("invalid_params"));
}

//! `jobhost pull` and `jobhost bench-pull` as a user runs them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_jobhost");

/// `jobhost serve` reads HF_ENDPOINT; `jobhost pull --json` prints the ended job and
/// exits non-zero when the pull fails (here: nothing listens at the hub's address).
#[test]
fn pull_reports_an_unreachable_hub_and_fails() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut server = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("HF_ENDPOINT", format!("http://{free}"))
        .env("JOBHOST_LOG", "warn")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("server exited before listening").unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    let out = Command::new(BIN)
        .args(["pull", "acme/tiny", "--json", "--server", &url, "--token-file"])
        .arg(dir.path().join("token"))
        .output()
        .unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job["kind"], "pull");
    assert_eq!(job["status"], "failed");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(error.contains("unreachable") && error.contains(&free.to_string()), "{error}");
}

/// The benchmark pulls a generated repo from its own local hub and times curl on the
/// same files, after a warm-up pull and, with `--first`, as a fresh server's first pull.
#[test]
fn bench_pull_times_the_pull_and_curl() {
    for first in [false, true] {
        let mut cmd = Command::new(BIN);
        cmd.args(["bench-pull", "--size-mb", "4", "--files", "2", "--json"]);
        if first {
            cmd.arg("--first");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(report["bytes"].as_u64().is_some_and(|b| b >= 4 << 20), "{report}");
        for key in ["pull_s", "curl_s", "curl_sha256sum_s", "ratio"] {
            assert!(report[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {report}");
        }
    }
}

//! Installing components: bytes the server has compiled are not compiled again, a
//! component the server holds can be named by its digest alone, and the built-in
//! model puller is compiled at start, before any pull asks for it.

use crate::{TestServer, eventually};
use jobhost_model::JobStatus;
use jobhost_tests::PROBE_WASM;

#[tokio::test(flavor = "multi_thread")]
async fn the_same_bytes_compile_once_and_a_digest_names_them() {
    let mut t = TestServer::start().await;
    let wasm = std::fs::read(PROBE_WASM).unwrap();
    let first = t.client.install("probe", &wasm).await.unwrap();
    assert!(first.compiled, "a new component is compiled");
    let again = t.client.install("probe", &wasm).await.unwrap();
    assert!(!again.compiled, "the same bytes were compiled again");
    assert_eq!(again.plugin.digest, first.plugin.digest);

    // By digest, under another name: no bytes sent, nothing compiled, and it runs.
    let named = t.client.install_digest("probe2", &first.plugin.digest).await.unwrap();
    assert!(!named.compiled);
    assert_eq!((named.plugin.name.as_str(), named.plugin.kind), ("probe2", first.plugin.kind));
    assert_eq!(t.run("probe2", &["echo", "x"]).await.status, JobStatus::Completed);
    let unknown = t.client.install_digest("nope", &format!("sha256:{}", "0".repeat(64))).await.unwrap_err();
    assert_eq!(unknown.kind(), Some("not_found"), "{unknown}");
    let malformed = t.client.install_digest("nope", "sha256:xyz").await.unwrap_err();
    assert_eq!(malformed.kind(), Some("invalid_params"), "{malformed}");
    let reserved = t.client.install_digest("model-pull", &first.plugin.digest).await.unwrap_err();
    assert_eq!(reserved.kind(), Some("forbidden"), "{reserved}");
    let names: Vec<_> = t.client.plugins().await.unwrap().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["probe", "probe2"], "refused installs recorded nothing");

    // A restart keeps the compiled component on disk: installing it again compiles nothing.
    t.restart_with(|_| {}).await;
    assert!(!t.client.install("probe", &wasm).await.unwrap().compiled);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_model_puller_is_compiled_at_start_without_being_installed() {
    let t = TestServer::start_with(|c| c.prepare_puller = true).await;
    let cache = t.dir.path().join("plugins").join("cache");
    eventually(120, || async { std::fs::read_dir(&cache).is_ok_and(|mut d| d.next().is_some()) }).await;
    assert!(t.client.plugins().await.unwrap().is_empty(), "compiled, not installed under any name");
}

//! Fixtures for jobhost's end-to-end tests (in `tests/`): the paths of the wasm
//! components that `build.rs` builds for wasm32-wasip2 (dev profile) under
//! `target/wasm/`, and the container image the container tests run.

// Test support: a failed setup step is a failed test.
#![allow(clippy::panic)]

/// `plugins/hello`: a `job`-world plugin greeting `input.name` into `/output/hello.txt`.
pub const HELLO_WASM: &str = env!("HELLO_WASM");

/// `plugins/wordcount`: a `job`-world plugin counting lines/words/bytes of `/input`
/// into `/output/report.json` and `/output/report.txt`.
pub const WORDCOUNT_WASM: &str = env!("WORDCOUNT_WASM");

/// `plugins/container-step`: a `job`-world plugin that runs `input.command` in
/// `input.image` through `jobhost:plugin/executor` and copies the `/work` files named
/// in `input.keep` to `/output` (it needs the `containers` grant).
pub const CONTAINER_STEP_WASM: &str = env!("CONTAINER_STEP_WASM");

/// `tests/guests/probe`: a plain WASI 0.2 command whose behaviour `argv[1]` picks
/// (echo, exit, trap, sleep, spin, alloc, recurse, open-files, flood, write-output,
/// read-input, env-dump, escape, noop); see its `src/main.rs`.
pub const PROBE_WASM: &str = env!("PROBE_WASM");

/// `tests/guests/http-probe`: a WASI 0.2 command that GETs `argv[1]` through
/// `wasi:http` and prints `status <code>`, or `error <code>` on stderr and exits 1.
pub const HTTP_PROBE_WASM: &str = env!("HTTP_PROBE_WASM");
/// `tests/guests/transfer-probe`: a WASI 0.2 command that tries `jobhost:plugin/transfer`
/// (copies a `/work` file's stream into `/output/dst.bin`, hashes the file) and prints
/// `copy …` and `absorb …` with what each call answered.
pub const TRANSFER_PROBE_WASM: &str = env!("TRANSFER_PROBE_WASM");
/// `tests/guests/steps`: a `job`-world plugin that sleeps and reports progress
/// `i` of `N` (`step i of N`) N times; input `{"steps": N, "interval_ms": M}`.
pub const STEPS_WASM: &str = env!("STEPS_WASM");

/// The container image the container tests run (`FROM scratch`, Debian's static
/// busybox and its applet links), built on the machine's Docker Engine the first time
/// a test process asks for it: no registry is needed.
pub fn busybox_image() -> &'static str {
    const IMAGE: &str = "jobhost-test-busybox:1";
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let dir = std::env::temp_dir().join(format!("jobhost-busybox-image-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        std::fs::copy("/bin/busybox", dir.join("busybox"))
            .unwrap_or_else(|e| panic!("a static /bin/busybox (Debian's busybox-static) to build the image from: {e}"));
        std::fs::write(
            dir.join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
        )
        .unwrap_or_else(|e| panic!("writing the Dockerfile: {e}"));
        let built = std::process::Command::new("docker")
            .args(["build", "-q", "-t", IMAGE])
            .arg(&dir)
            .output()
            .unwrap_or_else(|e| panic!("running docker build: {e}"));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(built.status.success(), "docker build: {}", String::from_utf8_lossy(&built.stderr));
    });
    IMAGE
}

/// The containers the Docker Engine still has (running or not) labelled as job `id`'s,
/// one id per line.
pub fn containers_of_job(id: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["ps", "-a", "-q", "--filter", &format!("label=jobhost.job={id}")])
        .output()
        .unwrap_or_else(|e| panic!("running docker ps: {e}"));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

//! Fixtures for jobhost's end-to-end tests (in `tests/`): the paths of the wasm
//! components that `build.rs` builds for wasm32-wasip2 (dev profile) under
//! `target/wasm/`.

/// `plugins/hello`: a `job`-world plugin greeting `input.name` into `/output/hello.txt`.
pub const HELLO_WASM: &str = env!("HELLO_WASM");

/// `plugins/wordcount`: a `job`-world plugin counting lines/words/bytes of `/input`
/// into `/output/report.json` and `/output/report.txt`.
pub const WORDCOUNT_WASM: &str = env!("WORDCOUNT_WASM");

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

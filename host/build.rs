//! Builds the built-in model puller (`plugins/model-pull`) for wasm32-wasip2 so the
//! `jobhost` binary embeds it (`include_bytes!` in `src/models/mod.rs`): a fresh
//! install can pull models without installing anything.
//!
//! The inner cargo uses its own target dir, `target/wasm-embed`: the outer build holds
//! the lock on its own target dir for as long as this script runs, so sharing it would
//! deadlock (and `target/wasm`, the test fixtures', builds other packages with other
//! features). It always builds the release profile: the binary ships it, and its few
//! dependencies make that build cheap; it is redone only when its sources change.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const TARGET: &str = "wasm32-wasip2";
const PACKAGE: &str = "model-pull";

fn main() {
    if let Err(message) = run() {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").map_err(|e| format!("CARGO_MANIFEST_DIR: {e}"))?);
    let root = manifest_dir.parent().ok_or("host/ has no parent directory")?.to_path_buf();
    for watched in ["wit", "sdk", "plugins/model-pull", "Cargo.lock"] {
        println!("cargo::rerun-if-changed={}", root.join(watched).display());
    }
    check_target_installed()?;

    let target_dir = root.join("target").join("wasm-embed");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .args(["--target", TARGET, "-p", PACKAGE])
        .arg("--target-dir")
        .arg(&target_dir);
    // What the outer build passes down is meant for the host target, or would redirect
    // the inner build: flags for x86_64 (coverage, target-cpu) break or slow wasm, and
    // under `cargo clippy` the workspace wrapper would lint the guest as well.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CLIPPY_ARGS",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_PROFILE_RELEASE_DEBUG",
        "CARGO_PROFILE_RELEASE_LTO",
    ] {
        cmd.env_remove(var);
    }
    // This script's stdout is read by cargo as directives: keep the inner output off it.
    cmd.stdout(Stdio::from(std::io::stderr()));
    let status = cmd.status().map_err(|e| format!("running cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building the built-in {PACKAGE} component for {TARGET} failed: {status}"));
    }
    let wasm = target_dir.join(TARGET).join("release").join("model_pull.wasm");
    if !wasm.is_file() {
        return Err(format!("{PACKAGE} built, but {} is missing", wasm.display()));
    }
    println!("cargo::rustc-env=MODEL_PULL_WASM={}", wasm.display());
    Ok(())
}

/// Fails with the fix in the message when the wasm32-wasip2 standard library is missing.
fn check_target_installed() -> Result<(), String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .map_err(|e| format!("running rustc: {e}"))?;
    let libdir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || libdir.is_empty() || !Path::new(&libdir).is_dir() {
        return Err(format!(
            "the {TARGET} target is not installed, and jobhost embeds a component built for it: \
             run `rustup target add {TARGET}`"
        ));
    }
    Ok(())
}

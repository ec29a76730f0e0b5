//! Builds the wasm fixtures the end-to-end tests run: the example plugins `hello` and
//! `wordcount` and every guest crate under `tests/guests/`, for wasm32-wasip2 in the dev
//! profile, and exports each one's path as `<NAME>_WASM` (e.g. `HELLO_WASM`,
//! `PROBE_WASM`) for `env!` in `src/lib.rs`.
//!
//! The inner cargo uses its own target dir, `target/wasm`: the outer build holds the
//! lock on its own target dir for as long as this script runs, so sharing it would
//! deadlock.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const TARGET: &str = "wasm32-wasip2";

/// The `plugins/` crates the tests use (each a `cdylib`).
const PLUGINS: &[&str] = &["hello", "wordcount"];

fn main() {
    if let Err(message) = run() {
        // A build script fails by exiting non-zero; cargo shows its stderr.
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir.parent().ok_or("tests/ has no parent directory")?.to_path_buf();

    for watched in ["wit", "sdk", "plugins", "tests/guests", "Cargo.toml", "Cargo.lock"] {
        println!("cargo::rerun-if-changed={}", root.join(watched).display());
    }

    check_target_installed()?;

    // Guest crates are found by folder; the folder name must be the package name.
    let guests_dir = manifest_dir.join("guests");
    let mut guests = Vec::new();
    let entries = std::fs::read_dir(&guests_dir).map_err(|e| format!("listing {}: {e}", guests_dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| format!("listing {}: {e}", guests_dir.display()))?.path();
        if path.join("Cargo.toml").is_file()
            && let Some(name) = path.file_name().and_then(|n| n.to_str())
        {
            guests.push(name.to_owned());
        }
    }
    guests.sort();

    let packages: Vec<String> = PLUGINS.iter().map(|p| (*p).to_owned()).chain(guests).collect();
    let target_dir = root.join("target").join("wasm");

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .args(["--target", TARGET])
        .arg("--target-dir")
        .arg(&target_dir);
    for p in &packages {
        cmd.args(["-p", p]);
    }
    // What the outer build passes down is meant for the host target, or would redirect
    // the inner build: flags for x86_64 (coverage, target-cpu) break or slow wasm, and
    // under `cargo clippy` the workspace wrapper would lint the fixtures as well.
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
    ] {
        cmd.env_remove(var);
    }
    // This script's stdout is read by cargo as directives: keep the inner output off it.
    cmd.stdout(Stdio::from(std::io::stderr()));

    let status = cmd.status().map_err(|e| format!("running cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building the wasm fixtures ({}) for {TARGET} failed: {status}", packages.join(", ")));
    }

    let out_dir = target_dir.join(TARGET).join("debug");
    for p in &packages {
        let wasm = artifact(&out_dir, p)?;
        let var = format!("{}_WASM", p.to_uppercase().replace('-', "_"));
        println!("cargo::rustc-env={var}={}", wasm.display());
    }
    Ok(())
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|e| format!("${name}: {e}"))
}

/// Fails with the fix in the message when the wasm32-wasip2 standard library is missing
/// (otherwise the inner build's "can't find crate for `core`" hides the cause).
fn check_target_installed() -> Result<(), String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .map_err(|e| format!("running rustc: {e}"))?;
    let libdir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || libdir.is_empty() || !Path::new(&libdir).is_dir() {
        return Err(format!(
            "the {TARGET} target is not installed, and the end-to-end tests need it to build their wasm \
             fixtures: run `rustup target add {TARGET}`"
        ));
    }
    Ok(())
}

/// The built component of package `name`: a `cdylib` is named with `_`, a binary as is.
fn artifact(out_dir: &Path, name: &str) -> Result<PathBuf, String> {
    let candidates = [out_dir.join(format!("{}.wasm", name.replace('-', "_"))), out_dir.join(format!("{name}.wasm"))];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| format!("{name} built, but no {} found", candidates[0].display()))
}

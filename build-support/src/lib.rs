//! What the build scripts of `host` (the embedded model puller) and `tests` (the wasm
//! fixtures) share: building workspace packages for wasm32-wasip2 with a nested cargo,
//! from inside a build script.
//!
//! The nested cargo must use a target dir of its own: the outer build holds the lock
//! on its target dir for as long as the build script runs, so sharing it would
//! deadlock.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The target every component is built for.
pub const TARGET: &str = "wasm32-wasip2";

/// What the outer build passes down that is meant for the host target, or would
/// redirect the inner build: flags for x86_64 (coverage, target-cpu) break or slow wasm,
/// and under `cargo clippy` the workspace wrapper would lint the guests as well.
const OUTER_ONLY: &[&str] = &[
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
];

/// Runs `main` of a build script: an error is printed and fails the build (cargo
/// shows the script's stderr).
pub fn run_script(main: impl FnOnce() -> Result<(), String>) {
    if let Err(message) = main() {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

/// The workspace root: the nearest folder above the calling package that holds the
/// workspace manifest.
pub fn workspace_root() -> Result<PathBuf, String> {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").map_err(|e| format!("$CARGO_MANIFEST_DIR: {e}"))?);
    // The nearest folder above the crate whose manifest declares the workspace.
    manifest_dir
        .ancestors()
        .skip(1)
        .find(|dir| std::fs::read_to_string(dir.join("Cargo.toml")).is_ok_and(|m| m.contains("[workspace]")))
        .map(Path::to_path_buf)
        .ok_or_else(|| format!("no workspace above {}", manifest_dir.display()))
}

/// Reruns the build script when anything under these paths (relative to `root`) changes.
pub fn rerun_if_changed(root: &Path, paths: &[&str]) {
    for path in paths {
        println!("cargo::rerun-if-changed={}", root.join(path).display());
    }
}

/// Fails with the fix in the message when the wasm32-wasip2 standard library is missing
/// (otherwise the inner build's "can't find crate for `core`" hides the cause);
/// `needed_for` says what needs it.
pub fn check_target_installed(needed_for: &str) -> Result<(), String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .map_err(|e| format!("running rustc: {e}"))?;
    let libdir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || libdir.is_empty() || !Path::new(&libdir).is_dir() {
        return Err(format!(
            "the {TARGET} target is not installed, and {needed_for}: run `rustup target add {TARGET}`"
        ));
    }
    Ok(())
}

/// Builds `packages` of the workspace at `root` for [`TARGET`] into `target_dir` (the
/// release profile when `release`, else dev); returns the directory the components
/// are in.
pub fn build(root: &Path, target_dir: &Path, release: bool, packages: &[&str]) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .args(["--target", TARGET])
        .arg("--target-dir")
        .arg(target_dir);
    if release {
        cmd.arg("--release");
    }
    for p in packages {
        cmd.args(["-p", p]);
    }
    for var in OUTER_ONLY {
        cmd.env_remove(var);
    }
    // A build script's stdout is read by cargo as directives: keep the inner output off it.
    cmd.stdout(Stdio::from(std::io::stderr()));
    let status = cmd.status().map_err(|e| format!("running cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building {} for {TARGET} failed: {status}", packages.join(", ")));
    }
    Ok(target_dir.join(TARGET).join(if release { "release" } else { "debug" }))
}

/// The built component of package `name` in `out_dir`: a `cdylib` is named with `_`,
/// a binary as is.
pub fn artifact(out_dir: &Path, name: &str) -> Result<PathBuf, String> {
    let candidates = [out_dir.join(format!("{}.wasm", name.replace('-', "_"))), out_dir.join(format!("{name}.wasm"))];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| format!("{name} built, but no {} found", candidates[0].display()))
}

//! Builds the built-in model puller (`plugins/model-pull`) for wasm32-wasip2 so the
//! `jobhost` binary embeds it (`include_bytes!` in `src/models/mod.rs`): a fresh
//! install can pull models without installing anything.
//!
//! The inner cargo uses its own target dir, `target/wasm-embed` (`target/wasm`, the
//! test fixtures', builds other packages with other features). It always builds the
//! release profile: the binary ships it, and its few dependencies make that build
//! cheap; it is redone only when its sources change.

use jobhost_build::{artifact, build, check_target_installed, rerun_if_changed, run_script, workspace_root};

const PACKAGE: &str = "model-pull";

fn main() {
    run_script(|| {
        let root = workspace_root()?;
        rerun_if_changed(&root, &["wit", "sdk", "plugins/model-pull", "Cargo.lock"]);
        check_target_installed("jobhost embeds a component built for it")?;
        let out_dir = build(&root, &root.join("target").join("wasm-embed"), true, &[PACKAGE])
            .map_err(|e| format!("the built-in {PACKAGE} component: {e}"))?;
        let wasm = artifact(&out_dir, PACKAGE)?;
        println!("cargo::rustc-env=MODEL_PULL_WASM={}", wasm.display());
        Ok(())
    });
}

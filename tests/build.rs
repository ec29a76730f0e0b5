//! Builds the wasm fixtures the end-to-end tests run: the example plugins `hello`,
//! `wordcount` and `container-step` and every guest crate under `tests/guests/`, for wasm32-wasip2 in the dev
//! profile, and exports each one's path as `<NAME>_WASM` (e.g. `HELLO_WASM`,
//! `PROBE_WASM`) for `env!` in `src/lib.rs`. The inner cargo uses its own target dir,
//! `target/wasm`.

use jobhost_build::{artifact, build, check_target_installed, rerun_if_changed, run_script, workspace_root};

/// The `plugins/` crates the tests use (each a `cdylib`).
const PLUGINS: &[&str] = &["hello", "wordcount", "container-step"];

fn main() {
    run_script(|| {
        let root = workspace_root()?;
        rerun_if_changed(&root, &["wit", "sdk", "plugins", "tests/guests", "Cargo.toml", "Cargo.lock"]);
        check_target_installed("the end-to-end tests need it to build their wasm fixtures")?;

        // Guest crates are found by folder; the folder name must be the package name.
        let guests_dir = root.join("tests").join("guests");
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

        let packages: Vec<&str> = PLUGINS.iter().copied().chain(guests.iter().map(String::as_str)).collect();
        let out_dir = build(&root, &root.join("target").join("wasm"), false, &packages)
            .map_err(|e| format!("the wasm fixtures: {e}"))?;
        for p in &packages {
            let wasm = artifact(&out_dir, p)?;
            let var = format!("{}_WASM", p.to_uppercase().replace('-', "_"));
            println!("cargo::rustc-env={var}={}", wasm.display());
        }
        Ok(())
    });
}

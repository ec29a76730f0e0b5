//! The layer rules of DESIGN.md, checked against the workspace itself: the crate graph
//! as `cargo metadata` reports it, and the paths the sources name. A change that
//! crosses a layer fails here, whatever else it does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The jobhost crates under `host/`, by package name.
const MODEL: &str = "jobhost-model";
const STORE: &str = "jobhost-store";
const RUNTIME: &str = "jobhost-runtime";
const EXECUTORS: &str = "jobhost-executors";
const SERVER: &str = "jobhost-server";
const CLIENT: &str = "jobhost-client";
const CLI: &str = "jobhost";

/// The workspace as `cargo metadata` sees it: each host crate's normal dependencies
/// (by name) and its directory.
struct Workspace {
    deps: BTreeMap<String, BTreeSet<String>>,
    dirs: BTreeMap<String, PathBuf>,
}

fn workspace() -> Workspace {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (mut deps, mut dirs) = (BTreeMap::new(), BTreeMap::new());
    for package in meta["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap().to_owned();
        let manifest = PathBuf::from(package["manifest_path"].as_str().unwrap());
        if !manifest.starts_with(root.join("host")) {
            continue;
        }
        let normal: BTreeSet<String> = package["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null())
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .collect();
        dirs.insert(name.clone(), manifest.parent().unwrap().to_path_buf());
        deps.insert(name, normal);
    }
    Workspace { deps, dirs }
}

impl Workspace {
    fn deps_of(&self, krate: &str) -> &BTreeSet<String> {
        self.deps.get(krate).unwrap_or_else(|| panic!("no crate {krate} under host/"))
    }

    /// The jobhost crates `krate` depends on.
    fn jobhost_deps(&self, krate: &str) -> BTreeSet<&str> {
        self.deps_of(krate).iter().filter(|d| d.starts_with("jobhost")).map(String::as_str).collect()
    }

    /// Every `.rs` file under `krate`'s `src/`, with its text.
    fn sources(&self, krate: &str) -> Vec<(PathBuf, String)> {
        let mut files = Vec::new();
        let mut stack = vec![self.dirs[krate].join("src")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    files.push((path, text));
                }
            }
        }
        files
    }

    /// The files of every host crate but `except` that name `what` in code (comments
    /// aside).
    fn naming(&self, what: &str, except: &[&str]) -> Vec<PathBuf> {
        self.deps
            .keys()
            .filter(|k| !except.contains(&k.as_str()))
            .flat_map(|k| self.sources(k))
            .filter(|(_, text)| code_lines(text).any(|l| l.contains(what)))
            .map(|(path, _)| path)
            .collect()
    }
}

/// The lines of `text` that are code, not comments.
fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter(|l| !l.trim_start().starts_with("//"))
}

#[test]
fn the_model_is_a_leaf_and_the_client_depends_on_it_alone() {
    let ws = workspace();
    assert_eq!(ws.jobhost_deps(MODEL), BTreeSet::new(), "{MODEL} must depend on no jobhost crate");
    assert_eq!(ws.jobhost_deps(CLIENT), BTreeSet::from([MODEL]), "{CLIENT} may depend on {MODEL} only");
}

#[test]
fn the_store_knows_no_runtime_executor_or_server_and_holds_all_sql() {
    let ws = workspace();
    for other in [RUNTIME, EXECUTORS, SERVER, CLIENT, CLI] {
        assert!(!ws.jobhost_deps(STORE).contains(other), "{STORE} depends on {other}");
    }
    for driver in ["sqlx", "rusqlite"] {
        let users: Vec<_> = ws.deps.iter().filter(|(k, d)| *k != STORE && d.contains(driver)).map(|(k, _)| k).collect();
        assert!(users.is_empty(), "{users:?} depend on {driver}: SQL lives in {STORE} only");
        assert_eq!(ws.naming(&format!("{driver}::"), &[STORE]), Vec::<PathBuf>::new(), "{driver} outside {STORE}");
    }
}

#[test]
fn wasmtime_stays_in_the_runtime_and_the_wasm_executor() {
    let ws = workspace();
    for other in [STORE, SERVER, CLIENT, CLI] {
        assert!(!ws.jobhost_deps(RUNTIME).contains(other), "{RUNTIME} depends on {other}");
    }
    for krate in ws.deps.keys().filter(|k| *k != RUNTIME) {
        let wasm_deps: Vec<_> = ws.deps_of(krate).iter().filter(|d| d.starts_with("wasmtime")).collect();
        assert!(wasm_deps.is_empty(), "{krate} depends on {wasm_deps:?}: wasmtime lives in {RUNTIME}");
    }
    let outside: Vec<_> =
        ws.naming("wasmtime", &[RUNTIME]).into_iter().filter(|p| !p.ends_with("executors/src/wasm.rs")).collect();
    assert_eq!(outside, Vec::<PathBuf>::new(), "wasmtime named outside {RUNTIME} and the wasm executor");
}

#[test]
fn jsonrpsee_stays_in_the_rpc_module_and_the_client() {
    let ws = workspace();
    for krate in ws.deps.keys().filter(|k| *k != SERVER && *k != CLIENT) {
        assert!(!ws.deps_of(krate).contains("jsonrpsee"), "{krate} depends on jsonrpsee");
    }
    let rpc = ws.dirs[SERVER].join("src").join("rpc");
    let outside: Vec<_> = ws.naming("jsonrpsee", &[CLIENT]).into_iter().filter(|p| !p.starts_with(&rpc)).collect();
    assert_eq!(outside, Vec::<PathBuf>::new(), "jsonrpsee named outside the rpc module and {CLIENT}");
}

#[test]
fn the_modules_of_the_server_form_no_cycle() {
    let ws = workspace();
    let src = ws.dirs[SERVER].join("src");
    // A top-level module is a folder or a file of `src/` (lib.rs aside).
    let module_of = |path: &Path| -> Option<String> {
        let first = path.strip_prefix(&src).ok()?.components().next()?.as_os_str().to_str()?.to_owned();
        let name = first.trim_end_matches(".rs").to_owned();
        (name != "lib").then_some(name)
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, text) in ws.sources(SERVER) {
        let Some(from) = module_of(&path) else { continue };
        let uses = edges.entry(from.clone()).or_default();
        for line in code_lines(&text) {
            for (at, _) in line.match_indices("crate::") {
                let rest = &line[at + "crate::".len()..];
                let to: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !to.is_empty() && to != from {
                    uses.insert(to);
                }
            }
        }
    }
    // Depth-first search for a back edge.
    fn visit<'a>(
        node: &'a str,
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(node) {
            return;
        }
        if let Some(at) = path.iter().position(|n| *n == node) {
            panic!("the server's modules form a cycle: {} -> {node}", path[at..].join(" -> "));
        }
        path.push(node);
        for next in edges.get(node).into_iter().flatten() {
            visit(next, edges, path, done);
        }
        path.pop();
        done.insert(node);
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        visit(node, &edges, &mut Vec::new(), &mut done);
    }
    assert!(done.contains("jobs") && done.contains("rpc"), "the modules were not found: {edges:?}");
}

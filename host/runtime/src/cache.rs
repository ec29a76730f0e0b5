//! Installing and loading components: validation and classification at install, the
//! on-disk store of `plugins/<hex>.wasm` and its precompiled
//! `plugins/cache/<hex>-<engine>.cwasm`, and the in-memory map of linked components
//! ([`Prepared`]) that runs instantiate from.
//!
//! Compilation is the expensive step, so it happens once, at install, and its result is
//! kept on disk keyed by the wasm's hash and the engine's compatibility hash: a new
//! engine (another wasmtime or other settings) never loads a stale cwasm, and a cwasm
//! that does not load is a miss, recompiled from the wasm. Files are written whole or
//! not at all ([`write_atomic`]), since a half-written component would fail every run.

use crate::state::JobState;
use crate::{Installed, Result, Runtime, RuntimeError, host, root_message};
use jobhost_model::PluginKind;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};
use wasmtime::component::Component;
use wasmtime_wasi::p2::bindings::CommandPre;

/// A component ready to instantiate.
pub(crate) enum Prepared {
    Command(CommandPre<JobState>),
    Plugin(host::JobPre<JobState>),
}

impl Prepared {
    /// Which kind of component it is.
    fn kind(&self) -> PluginKind {
        match self {
            Prepared::Command(_) => PluginKind::Command,
            Prepared::Plugin(_) => PluginKind::Plugin,
        }
    }
}

impl Runtime {
    /// Validates, classifies and precompiles `wasm`, then stores it under its digest.
    /// Nothing is written unless the component compiles and links.
    pub async fn install(self: &Arc<Self>, wasm: Vec<u8>) -> Result<Installed> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.install_blocking(&wasm))
            .await
            .map_err(|e| RuntimeError::Engine(format!("install task: {e}")))?
    }

    /// Whether component `digest` is linked (installed, or run, since the start): a
    /// look-up in memory, no file system.
    pub fn is_linked(&self, digest: &str) -> bool {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.prepared.lock().unwrap_or_else(PoisonError::into_inner).contains_key(hex)
    }

    /// [`Runtime::install`] of bytes this runtime already holds, named by their
    /// `digest`: [`RuntimeError::Missing`] when it does not hold them.
    pub async fn install_digest(self: &Arc<Self>, digest: &str) -> Result<Installed> {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest).to_owned();
        // Linked already (it was installed, or has run, since the start): the bytes were
        // checked then, so there is nothing to read, hash or compile. `jobhost run` asks
        // this before every run; reading and hashing a 20 MB component each time cost
        // more than the run.
        let linked = self.prepared.lock().unwrap_or_else(PoisonError::into_inner).get(&hex).map(|p| p.kind());
        if let (Some(kind), Ok(meta)) = (linked, std::fs::metadata(self.wasm_path(&hex))) {
            return Ok(Installed { digest: format!("sha256:{hex}"), kind, size_bytes: meta.len(), compiled: false });
        }
        let (this, digest) = (self.clone(), digest.to_owned());
        tokio::task::spawn_blocking(move || {
            let wasm = std::fs::read(this.wasm_path(&hex)).map_err(|_| RuntimeError::Missing(digest))?;
            this.install_blocking(&wasm)
        })
        .await
        .map_err(|e| RuntimeError::Engine(format!("install task: {e}")))?
    }

    fn install_blocking(&self, wasm: &[u8]) -> Result<Installed> {
        let hex = hex::encode(Sha256::digest(wasm));
        // One install at a time: two installs of the same bytes (the puller prepared at
        // start while the first pull installs it) compile once, and the second finds it.
        let _one_at_a_time = self.installing.lock().unwrap_or_else(PoisonError::into_inner);
        // The same bytes again: linked already, or precompiled on disk (an install
        // before a restart, or another data dir sharing the cache) — nothing to compile.
        if let Some(prepared) = self.compiled(&hex) {
            if !self.wasm_path(&hex).exists() {
                write_atomic(&self.wasm_path(&hex), wasm)?;
            }
            return Ok(Installed {
                digest: format!("sha256:{hex}"),
                kind: prepared.kind(),
                size_bytes: wasm.len() as u64,
                compiled: false,
            });
        }
        let component = self
            .compile(wasm)
            .map_err(|e| RuntimeError::Invalid(format!("not a valid WebAssembly component: {}", root_message(&e))))?;
        let prepared = self.prepare(&component)?;
        let kind = prepared.kind();
        let cwasm = component
            .serialize()
            .map_err(|e| RuntimeError::Engine(format!("serializing compiled component: {e:#}")))?;
        write_atomic(&self.wasm_path(&hex), wasm)?;
        write_atomic(&self.cwasm_path(&hex), &cwasm)?;
        self.cache_put(&hex, prepared);
        Ok(Installed { digest: format!("sha256:{hex}"), kind, size_bytes: wasm.len() as u64, compiled: true })
    }

    /// The component `hex` if it needs no compiling: linked already, or precompiled in
    /// the cache on disk (then linked and kept).
    fn compiled(&self, hex: &str) -> Option<Arc<Prepared>> {
        if let Some(p) = self.prepared.lock().unwrap_or_else(PoisonError::into_inner).get(hex) {
            return Some(p.clone());
        }
        let component = self.deserialize_cached(hex)?;
        let prepared = self.prepare(&component).ok()?;
        Some(self.cache_put(hex, prepared))
    }

    /// Compiles `wasm`, counting it (see [`Runtime::compilations`]).
    fn compile(&self, wasm: &[u8]) -> wasmtime::Result<Component> {
        self.compilations.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Component::new(&self.engine, wasm)
    }

    /// How many components this runtime has compiled (installs and cache misses): an
    /// install or load that found a precompiled component adds nothing.
    pub fn compilations(&self) -> u64 {
        self.compilations.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Links `component` and decides which kind it is.
    fn prepare(&self, component: &Component) -> Result<Prepared> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| RuntimeError::Invalid(format!("unsupported component: {}", root_message(&e))))?;
        if let Ok(command) = CommandPre::new(pre.clone()) {
            return Ok(Prepared::Command(command));
        }
        host::JobPre::new(pre).map(Prepared::Plugin).map_err(|_| {
            RuntimeError::Invalid(
                "unsupported component: it exports neither `wasi:cli/run` (a WASI command) \
                 nor `run` of world jobhost:plugin/job"
                    .into(),
            )
        })
    }

    /// Makes sure the component `digest` is loaded, from the cache on disk if possible.
    pub async fn load(self: &Arc<Self>, digest: &str) -> Result<()> {
        let this = self.clone();
        let digest = digest.to_owned();
        tokio::task::spawn_blocking(move || this.load_blocking(&digest).map(|_| ()))
            .await
            .map_err(|e| RuntimeError::Engine(format!("load task: {e}")))?
    }

    pub(crate) fn load_blocking(&self, digest: &str) -> Result<Arc<Prepared>> {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        if let Some(p) = self.prepared.lock().unwrap_or_else(PoisonError::into_inner).get(hex) {
            return Ok(p.clone());
        }
        let component = match self.deserialize_cached(hex) {
            Some(c) => c,
            None => {
                let wasm = std::fs::read(self.wasm_path(hex)).map_err(|_| RuntimeError::Missing(digest.to_owned()))?;
                let component =
                    self.compile(&wasm).map_err(|e| RuntimeError::Engine(format!("compiling {digest}: {e:#}")))?;
                if let Ok(cwasm) = component.serialize() {
                    // A failed cache write only costs a recompile next time.
                    let _ = write_atomic(&self.cwasm_path(hex), &cwasm);
                }
                component
            }
        };
        let prepared = self.prepare(&component)?;
        Ok(self.cache_put(hex, prepared))
    }

    /// Loads a precompiled component; `None` (a miss) when absent or made by an
    /// incompatible engine.
    #[allow(unsafe_code)]
    fn deserialize_cached(&self, hex: &str) -> Option<Component> {
        let path = self.cwasm_path(hex);
        if !path.exists() {
            return None;
        }
        // SAFETY: the file is one this runtime wrote into its own plugins directory
        // (never a client upload), and wasmtime checks its header and the engine
        // settings before use; a file that fails those checks is treated as a miss.
        unsafe { Component::deserialize_file(&self.engine, &path) }.ok()
    }

    fn cache_put(&self, hex: &str, prepared: Prepared) -> Arc<Prepared> {
        let prepared = Arc::new(prepared);
        self.prepared.lock().unwrap_or_else(PoisonError::into_inner).insert(hex.to_owned(), prepared.clone());
        prepared
    }

    fn wasm_path(&self, hex: &str) -> PathBuf {
        self.config.plugins_dir.join(format!("{hex}.wasm"))
    }

    fn cwasm_path(&self, hex: &str) -> PathBuf {
        self.config.cache_dir.join(format!("{hex}-{}.cwasm", self.engine_key))
    }
}

/// Writes a file by writing a temporary sibling and renaming it into place, so a
/// crash never leaves a half-written component under its final name.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io_err = |source| RuntimeError::Io { context: format!("writing {}", path.display()), source };
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io_err)?;
    std::fs::rename(&tmp, path).map_err(io_err)
}

//! The Hugging Face cache layout under the models directory, which is what lets
//! huggingface_hub and other tools use a pulled model offline: one folder per
//! repository, its files stored once as `blobs/<etag>`, each commit a tree of relative
//! symlinks in `snapshots/<commit>/`, and `refs/<revision>` naming the commit a branch
//! or tag pointed to. A blob is only ever complete: it is written as
//! `<etag>.incomplete` and renamed into place once checked, so what is on disk tells a
//! later pull both what is done and where to resume. Opening a blob goes through the
//! WASI descriptor of the `/models` preopen because the host's transfer takes one.

use jobhost_sdk::Error;
use std::fs;
use wasip2::filesystem::types::{Descriptor, DescriptorFlags, OpenFlags, PathFlags};

use crate::select::FileSpec;

/// Where the host mounts the models directory.
pub const MODELS_DIR: &str = "/models";

/// Makes sure `models--{org}--{name}/{blobs,snapshots,refs}` exist; returns the
/// repository's directory.
pub fn create_repo(model: &str) -> Result<String, Error> {
    let repo_dir = format!("{MODELS_DIR}/models--{}", model.replace('/', "--"));
    for sub in ["blobs", "snapshots", "refs"] {
        fs::create_dir_all(format!("{repo_dir}/{sub}"))
            .map_err(|e| Error::new(format!("creating {repo_dir}/{sub}: {e}")))?;
    }
    Ok(repo_dir)
}

/// Bytes of `f` already on disk (complete or partial).
pub fn on_disk(repo_dir: &str, f: &FileSpec) -> u64 {
    let blob = format!("{repo_dir}/blobs/{}", f.etag);
    match fs::metadata(&blob) {
        Ok(m) if m.len() == f.size => f.size,
        _ => fs::metadata(format!("{blob}.incomplete")).map_or(0, |m| m.len().min(f.size)),
    }
}

/// Opens `path` (under [`MODELS_DIR`]) through the WASI descriptor of the models
/// directory, as `transfer` takes it.
pub fn open_blob(path: &str, open: OpenFlags, flags: DescriptorFlags) -> Result<Descriptor, String> {
    let rel = path
        .strip_prefix(MODELS_DIR)
        .map(|p| p.trim_start_matches('/'))
        .ok_or_else(|| format!("{path} is not under {MODELS_DIR}"))?;
    let dirs = wasip2::filesystem::preopens::get_directories();
    let (models, _) =
        dirs.iter().find(|(_, p)| p == MODELS_DIR).ok_or_else(|| format!("{MODELS_DIR} is not mounted"))?;
    models.open_at(PathFlags::empty(), rel, open, flags).map_err(|e| e.name().to_owned())
}

/// `snapshots/<commit>/<path>` → the blob, as a relative symlink.
pub fn link(repo_dir: &str, commit: &str, f: &FileSpec) -> Result<(), Error> {
    let rel = format!("{}/snapshots/{commit}/{}", repo_dir.trim_start_matches(&format!("{MODELS_DIR}/")), f.path);
    let full = format!("{MODELS_DIR}/{rel}");
    if let Some((parent, _)) = full.rsplit_once('/') {
        fs::create_dir_all(parent).map_err(|e| Error::new(format!("creating {parent}: {e}")))?;
    }
    let ups = 2 + f.path.matches('/').count();
    let target = format!("{}blobs/{}", "../".repeat(ups), f.etag);
    if fs::read_link(&full).is_ok_and(|t| t.to_str() == Some(target.as_str())) {
        return Ok(());
    }
    let _ = fs::remove_file(&full);
    let dirs = wasip2::filesystem::preopens::get_directories();
    let (models, _) =
        dirs.iter().find(|(_, p)| p == MODELS_DIR).ok_or_else(|| Error::new(format!("{MODELS_DIR} is not mounted")))?;
    models.symlink_at(&target, &rel).map_err(|e| Error::new(format!("linking {full} to {target}: {}", e.name())))
}

/// `refs/<revision>` → `commit`, so the revision resolves offline.
pub fn write_ref(repo_dir: &str, revision: &str, commit: &str) -> Result<(), Error> {
    let r = format!("{repo_dir}/refs/{revision}");
    if let Some(parent) = r.rsplit_once('/').map(|(p, _)| p) {
        fs::create_dir_all(parent).map_err(|e| Error::new(format!("creating {parent}: {e}")))?;
    }
    fs::write(&r, commit).map_err(|e| Error::new(format!("writing {r}: {e}")))
}

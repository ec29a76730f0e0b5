//! Uploads: files a client sends in before a job consumes them as its `/input`.
//!
//! Life of an upload: `open` (files are written: over RPC in base64 pieces, over HTTP
//! streamed, or as a tar archive unpacked safely) → `finalized` (sealed, sizes
//! recorded) → `consumed` by exactly one `jobs.submit` (its files move to the job's
//! `input/` when the job starts). An upload not consumed before `expires_at` becomes
//! `expired` and its files are deleted by the sweeper. Files live in
//! `DATA_DIR/uploads/<id>/`; every path a client names is checked to be relative and
//! plain, then opened through cap-std inside that directory, so nothing is ever
//! written outside it.

pub mod archive;

use crate::jobs::{Caller, Error, Result};
pub use jobhost_model::{Upload, UploadState};
use jobhost_model::{UploadPage, ids};
use jobhost_runtime::sandbox::tree_stats;
use jobhost_store::Store;
use serde::{Deserialize, Serialize};
use std::io::{self, Seek as _, SeekFrom, Write as _};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Server-wide limits on uploads.
#[derive(Debug, Clone)]
pub struct UploadLimits {
    /// How long an upload lives unless consumed.
    pub ttl: Duration,
    /// Bytes in one upload.
    pub max_bytes: u64,
    /// Files in one upload.
    pub max_files: u64,
    /// Uploads a user may have open or finalized at once.
    pub max_live_per_user: u64,
    /// Bytes of all of a user's open or finalized uploads together.
    pub max_bytes_per_user: u64,
}

impl Default for UploadLimits {
    fn default() -> Self {
        UploadLimits {
            ttl: Duration::from_secs(3600),
            max_bytes: 1 << 30,
            max_files: 10_000,
            max_live_per_user: 64,
            max_bytes_per_user: 4 << 30,
        }
    }
}

/// Where HTTP bodies are received before they join an upload (`uploads/.incoming`;
/// upload ids never start with a dot).
const STAGING: &str = ".incoming";
/// The longest path (in bytes) a file in an upload may have.
const MAX_PATH: usize = 1024;
/// The deepest a file may be nested.
const MAX_DEPTH: usize = 32;

/// `uploads.put` result.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PutResult {
    /// The upload.
    pub id: String,
    /// The file written.
    pub path: String,
    /// Its size now.
    pub size_bytes: u64,
}

/// The uploads service; cheap to clone.
#[derive(Clone, Debug)]
pub struct Uploads {
    store: Arc<dyn Store>,
    limits: UploadLimits,
    /// `DATA_DIR/uploads`.
    dir: PathBuf,
    /// This node: an upload's files are written only on the node it was created through.
    here: Arc<str>,
}

impl Uploads {
    /// The service over `store`, keeping files under `dir`, on node `here`.
    pub fn new(store: Arc<dyn Store>, limits: UploadLimits, dir: PathBuf, here: Arc<str>) -> Uploads {
        Uploads { store, limits, dir, here }
    }

    /// Whether this node holds the files of `upload` (an upload from before nodes were
    /// recorded is held where it is).
    pub fn held_here(&self, upload: &Upload) -> bool {
        upload.worker_id.as_deref().is_none_or(|w| *w == *self.here)
    }

    /// Refuses to write or seal `upload` on a node that does not hold its files.
    fn check_held_here(&self, upload: &Upload) -> Result<()> {
        match &upload.worker_id {
            Some(w) if !self.held_here(upload) => Err(Error::Conflict(format!(
                "upload {} is held by worker {w}: send its files and finalize it through that node",
                upload.id
            ))),
            _ => Ok(()),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &UploadLimits {
        &self.limits
    }

    /// The directory holding the files of upload `id`.
    pub fn files_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// `uploads.create`.
    pub async fn create(&self, caller: &Caller) -> Result<Upload> {
        let (live, bytes) = self.store.live_uploads_of(&caller.user_id).await?;
        if live >= self.limits.max_live_per_user {
            return Err(Error::LimitExceeded(format!(
                "uploads: you have {live} open or finalized uploads; the limit is {} (use or let them expire)",
                self.limits.max_live_per_user
            )));
        }
        if bytes >= self.limits.max_bytes_per_user {
            return Err(Error::LimitExceeded(format!(
                "uploads: your open and finalized uploads hold {bytes} bytes; the limit is {}",
                self.limits.max_bytes_per_user
            )));
        }
        let now = chrono::Utc::now();
        let expires = now + chrono::Duration::from_std(self.limits.ttl).unwrap_or(chrono::Duration::MAX);
        let upload = Upload {
            id: ids::new(ids::UPLOAD),
            user_id: caller.user_id.clone(),
            state: UploadState::Open,
            size_bytes: 0,
            file_count: 0,
            job_id: None,
            expires_at: expires.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            created_at: ids::now(),
            worker_id: Some(self.here.to_string()),
        };
        let dir = self.files_dir(&upload.id);
        tokio::fs::create_dir_all(&dir).await.map_err(|e| internal("creating an upload directory", &e))?;
        self.store.insert_upload(&upload).await?;
        Ok(upload)
    }

    /// The upload `id`, if the caller may see it.
    pub async fn get(&self, caller: &Caller, id: &str) -> Result<Upload> {
        let upload = if ids::has_prefix(id, ids::UPLOAD) { self.store.get_upload(id).await? } else { None };
        match upload {
            Some(u) if caller.is_admin || u.user_id == caller.user_id => Ok(u),
            _ => Err(Error::NotFound(format!("upload {id:?} not found"))),
        }
    }

    /// A page of the caller's uploads (everyone's for an admin), newest first.
    pub async fn list(&self, caller: &Caller, cursor: Option<&str>, limit: Option<u32>) -> Result<UploadPage> {
        let limit = limit.unwrap_or(jobhost_model::DEFAULT_PAGE);
        if limit == 0 || limit > jobhost_model::MAX_PAGE {
            return Err(Error::invalid("limit", format!("must be between 1 and {}", jobhost_model::MAX_PAGE)));
        }
        if cursor.is_some_and(|c| !ids::has_prefix(c, ids::UPLOAD)) {
            return Err(Error::invalid("cursor", "is not a cursor returned by uploads.list"));
        }
        let user = (!caller.is_admin).then_some(caller.user_id.as_str());
        let mut uploads = self.store.list_uploads(user, cursor, limit + 1).await?;
        let next_cursor = (uploads.len() > limit as usize).then(|| {
            uploads.truncate(limit as usize);
            uploads.last().map(|u| u.id.clone())
        });
        Ok(UploadPage { uploads, next_cursor: next_cursor.flatten() })
    }

    /// The caller's upload `id`, still open for writing.
    pub async fn open_for_write(&self, caller: &Caller, id: &str) -> Result<Upload> {
        let upload = self.get(caller, id).await?;
        if upload.state != UploadState::Open {
            return Err(Error::Conflict(format!(
                "upload {id} is {}; files can only be added while it is open",
                upload.state.as_str()
            )));
        }
        if upload.expires_at.as_str() <= ids::now().as_str() {
            return Err(Error::Conflict(format!("upload {id} has expired")));
        }
        self.check_held_here(&upload)?;
        Ok(upload)
    }

    /// `uploads.put`: writes `data` at `offset` (default: a new file from its start) of
    /// the file at `path`.
    pub async fn put(
        &self,
        caller: &Caller,
        id: &str,
        path: &str,
        data: Vec<u8>,
        offset: Option<u64>,
    ) -> Result<PutResult> {
        let upload = self.open_for_write(caller, id).await?;
        let rel = check_path(path).map_err(|m| Error::invalid("path", m))?;
        let root = self.files_dir(&upload.id);
        let limits = self.limits.clone();
        let shown = path.to_owned();
        let size = tokio::task::spawn_blocking(move || -> Result<u64> {
            let (bytes, files) = tree_stats(&root);
            let dir = open_dir(&root)?;
            let existing = dir.metadata(&rel).ok().filter(|m| m.is_file()).map(|m| m.len());
            let offset = offset.unwrap_or(0);
            if offset > existing.unwrap_or(0) {
                return Err(Error::invalid(
                    "offset",
                    format!("is past the end of {shown} ({} bytes)", existing.unwrap_or(0)),
                ));
            }
            let end = offset + data.len() as u64;
            // A write from the start replaces the file; one further on may grow it.
            let new_size = if offset == 0 { end } else { end.max(existing.unwrap_or(0)) };
            check_room(bytes, files, existing, new_size, &limits)?;
            if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
                dir.create_dir_all(parent).map_err(|e| file_error(&shown, &e))?;
            }
            let mut opts = cap_std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(offset == 0);
            let mut file = dir.open_with(&rel, &opts).map_err(|e| file_error(&shown, &e))?;
            file.seek(SeekFrom::Start(offset)).map_err(|e| file_error(&shown, &e))?;
            file.write_all(&data).map_err(|e| file_error(&shown, &e))?;
            file.sync_all().map_err(|e| file_error(&shown, &e))?;
            Ok(file.metadata().map_err(|e| file_error(&shown, &e))?.len())
        })
        .await
        .map_err(|e| Error::Internal(format!("writing an upload: {e}")))??;
        self.record_size(&upload.id).await?;
        Ok(PutResult { id: upload.id, path: path.to_owned(), size_bytes: size })
    }

    /// The files of upload `id` this node holds, as a tar archive in a staged file
    /// (another node runs the job that consumes it): its path and size.
    pub async fn pack(&self, caller: &Caller, id: &str) -> Result<(tempfile::TempPath, u64)> {
        let upload = self.get(caller, id).await?;
        let root = self.files_dir(&upload.id);
        if !self.held_here(&upload) || !root.is_dir() {
            return Err(Error::NotFound(format!("the files of upload {id} are not on this node")));
        }
        let staged = self.stage()?;
        tokio::task::spawn_blocking(move || -> io::Result<(tempfile::TempPath, u64)> {
            let (file, path) = staged.into_parts();
            let mut tar = tar::Builder::new(io::BufWriter::new(file));
            for entry in walkdir::WalkDir::new(&root).min_depth(1).sort_by_file_name() {
                let entry = entry.map_err(io::Error::other)?;
                let rel = entry.path().strip_prefix(&root).map_err(io::Error::other)?;
                tar.append_path_with_name(entry.path(), rel)?;
            }
            let mut out = tar.into_inner()?;
            out.flush()?;
            let size = std::fs::metadata(&path)?.len();
            Ok((path, size))
        })
        .await
        .map_err(|e| Error::Internal(format!("packing an upload: {e}")))?
        .map_err(|e| internal("packing an upload", &e))
    }

    /// Unpacks `archive` (from the node holding upload `id`) as this node's copy of its
    /// files, checked as any archive a client sends; in place only once whole.
    pub async fn unpack_copy(&self, id: &str, archive: tempfile::TempPath) -> Result<()> {
        let (dest, limits) = (self.files_dir(id), self.limits.clone());
        let partial = self.dir.join(STAGING).join(format!("copy-{id}"));
        tokio::task::spawn_blocking(move || -> Result<()> {
            let _ = std::fs::remove_dir_all(&partial);
            std::fs::create_dir_all(&partial).map_err(|e| internal("unpacking an upload", &e))?;
            archive::unpack(&archive, &partial, &limits, 0, 0)?;
            std::fs::rename(&partial, &dest).map_err(|e| internal("placing an upload", &e))?;
            archive::sync(&dest)
        })
        .await
        .map_err(|e| Error::Internal(format!("unpacking an upload: {e}")))?
    }

    /// The record of upload `id`, whoever it belongs to (for the node running the job
    /// that consumes it).
    pub async fn record(&self, id: &str) -> Result<Option<Upload>> {
        Ok(self.store.get_upload(id).await?)
    }

    /// Empties the directory where HTTP bodies are received (left-overs of transfers a
    /// stopped process never finished) and makes sure it exists.
    pub fn reset_staging(&self) -> io::Result<()> {
        let staging = self.dir.join(STAGING);
        match std::fs::remove_dir_all(&staging) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::create_dir_all(staging)
    }

    /// A new temporary file to receive a body into, deleted when dropped unless it was
    /// moved into an upload.
    pub fn stage(&self) -> Result<tempfile::NamedTempFile> {
        tempfile::Builder::new()
            .prefix("body-")
            .tempfile_in(self.dir.join(STAGING))
            .map_err(|e| internal("receiving a file", &e))
    }

    /// Moves a received file in as `path` of the caller's open upload `id`, within
    /// the upload's limits; returns its size.
    pub async fn place(&self, caller: &Caller, id: &str, path: &str, staged: tempfile::TempPath) -> Result<u64> {
        let upload = self.open_for_write(caller, id).await?;
        let rel = check_path(path).map_err(|m| Error::invalid("path", m))?;
        let (root, staging, limits, shown) =
            (self.files_dir(&upload.id), self.dir.join(STAGING), self.limits.clone(), path.to_owned());
        let size = tokio::task::spawn_blocking(move || -> Result<u64> {
            let new_size = std::fs::metadata(&staged).map_err(|e| internal("receiving a file", &e))?.len();
            let (bytes, files) = tree_stats(&root);
            let dir = open_dir(&root)?;
            let existing = dir.metadata(&rel).ok().filter(|m| m.is_file()).map(|m| m.len());
            check_room(bytes, files, existing, new_size, &limits)?;
            if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
                dir.create_dir_all(parent).map_err(|e| file_error(&shown, &e))?;
            }
            let from = open_dir(&staging)?;
            let name = staged.file_name().map(PathBuf::from).unwrap_or_default();
            from.rename(&name, &dir, &rel).map_err(|e| file_error(&shown, &e))?;
            Ok(new_size)
        })
        .await
        .map_err(|e| Error::Internal(format!("placing an upload file: {e}")))??;
        self.record_size(&upload.id).await?;
        Ok(size)
    }

    /// Checks a received tar archive whole, then unpacks it into the caller's open
    /// upload `id` (see [`archive`]): into a directory of its own first, moved in only
    /// once every entry is written, so an archive lands whole or not at all.
    pub async fn unpack(&self, caller: &Caller, id: &str, staged: tempfile::TempPath) -> Result<archive::Unpacked> {
        let upload = self.open_for_write(caller, id).await?;
        let (root, limits, area) = (self.files_dir(&upload.id), self.limits.clone(), self.dir.join(STAGING));
        let unpacked = tokio::task::spawn_blocking(move || {
            let (bytes, files) = tree_stats(&root);
            let scratch = tempfile::Builder::new()
                .prefix("unpack-")
                .tempdir_in(&area)
                .map_err(|e| internal("unpacking an archive", &e))?;
            let unpacked = archive::unpack(&staged, scratch.path(), &limits, bytes, files)?;
            archive::move_in(scratch.path(), &root)?;
            archive::sync(&root)?;
            Ok::<_, Error>(unpacked)
        })
        .await
        .map_err(|e| Error::Internal(format!("unpacking an archive: {e}")))??;
        self.record_size(&upload.id).await?;
        Ok(unpacked)
    }

    /// Re-measures an upload's files and records their size and count.
    pub async fn record_size(&self, id: &str) -> Result<(u64, u64)> {
        let root = self.files_dir(id);
        let (bytes, files) =
            tokio::task::spawn_blocking(move || tree_stats(&root)).await.map_err(|e| Error::Internal(e.to_string()))?;
        self.store.set_upload_size(id, bytes, files).await?;
        Ok((bytes, files))
    }

    /// `uploads.finalize`: seals an open upload (a finalized one is returned as it is).
    pub async fn finalize(&self, caller: &Caller, id: &str) -> Result<Upload> {
        let upload = self.get(caller, id).await?;
        match upload.state {
            UploadState::Finalized => return Ok(upload),
            UploadState::Open => {}
            other => return Err(Error::Conflict(format!("upload {id} is {}", other.as_str()))),
        }
        self.check_held_here(&upload)?;
        if upload.expires_at.as_str() <= ids::now().as_str() {
            return Err(Error::Conflict(format!("upload {id} has expired")));
        }
        let (bytes, files) = self.record_size(id).await?;
        match self.store.finalize_upload(id, bytes, files).await? {
            Some(u) => Ok(u),
            None => Err(Error::Conflict(format!("upload {id} changed state meanwhile"))),
        }
    }

    /// Expires uploads past their time and deletes their files; returns how many.
    /// Then removes the files this node holds for uploads whose life ended while
    /// another node swept or ran them (see [`Uploads::sweep_held`]).
    pub async fn sweep(&self) -> Result<u64> {
        let expired = self.store.expire_uploads(&ids::now()).await?;
        for id in &expired {
            remove_dir(&self.files_dir(id)).await;
        }
        self.sweep_held().await?;
        Ok(expired.len() as u64)
    }

    /// Removes the files of uploads this node holds that no job will read any more:
    /// expired ones (another node's sweep expired them), and consumed ones whose job
    /// ended (it ran on another node, which fetched a copy).
    async fn sweep_held(&self) -> Result<()> {
        let mut entries = match tokio::fs::read_dir(&self.dir).await {
            Ok(entries) => entries,
            Err(e) => return Err(internal("listing the uploads directory", &e)),
        };
        while let Some(entry) = entries.next_entry().await.map_err(|e| internal("listing uploads", &e))? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !ids::has_prefix(&name, ids::UPLOAD) {
                continue;
            }
            let Some(upload) = self.store.get_upload(&name).await? else { continue };
            let done = match (upload.state, &upload.job_id) {
                (UploadState::Expired, _) => true,
                (UploadState::Consumed, Some(job)) => {
                    self.store.get_job(job).await?.is_none_or(|j| j.status.is_terminal())
                }
                _ => false,
            };
            if done {
                remove_dir(&entry.path()).await;
            }
        }
        Ok(())
    }
}

/// Removes a directory tree, ignoring one that is already gone.
pub async fn remove_dir(dir: &Path) {
    match tokio::fs::remove_dir_all(dir).await {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::error!(dir = %dir.display(), error = %e, "removing files"),
    }
}

/// Checks that an upload holding `bytes` in `files` files stays within its limits
/// when one file (now `existing` bytes, or absent) becomes `new_size` bytes.
fn check_room(bytes: u64, files: u64, existing: Option<u64>, new_size: u64, limits: &UploadLimits) -> Result<()> {
    if files + u64::from(existing.is_none()) > limits.max_files {
        return Err(Error::LimitExceeded(format!("files per upload: the limit is {}", limits.max_files)));
    }
    if bytes - existing.unwrap_or(0).min(bytes) + new_size > limits.max_bytes {
        return Err(Error::LimitExceeded(format!("bytes per upload: the limit is {}", limits.max_bytes)));
    }
    Ok(())
}

/// Opens an upload's directory as a capability: nothing outside it can be reached.
pub fn open_dir(root: &Path) -> Result<cap_std::fs::Dir> {
    cap_std::fs::Dir::open_ambient_dir(root, cap_std::ambient_authority()).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::Conflict("the upload's files are gone".into()),
        _ => internal("opening an upload directory", &e),
    })
}

fn file_error(path: &str, e: &io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::AlreadyExists | io::ErrorKind::NotADirectory | io::ErrorKind::IsADirectory => {
            Error::Conflict(format!("{path}: {e}"))
        }
        io::ErrorKind::PermissionDenied => Error::invalid("path", format!("{path} leaves the upload")),
        _ => internal("writing an upload file", e),
    }
}

fn internal(what: &str, e: &dyn std::fmt::Display) -> Error {
    tracing::error!(error = %e, "{what}");
    Error::Internal(format!("{what} failed"))
}

/// Checks that `path` names a file inside an upload: relative, only plain
/// components (no `.`, `..`, root or empty parts), no NUL, bounded length and depth.
pub fn check_path(path: &str) -> std::result::Result<PathBuf, String> {
    if path.is_empty() {
        return Err("must not be empty".into());
    }
    if path.len() > MAX_PATH {
        return Err(format!("must be at most {MAX_PATH} bytes"));
    }
    if path.contains('\0') {
        return Err("must not contain NUL".into());
    }
    if path.starts_with('/') {
        return Err(format!("{path:?} is absolute; paths are relative to the upload"));
    }
    // Split by hand: `Path::components` silently drops `.` parts.
    let parts: Vec<&str> = path.split('/').collect();
    if parts.iter().any(|p| p.is_empty() || *p == "." || *p == "..") {
        return Err(format!("{path:?} may only have plain parts (no '.', '..' or empty parts)"));
    }
    if parts.len() > MAX_DEPTH {
        return Err(format!("must be at most {MAX_DEPTH} levels deep"));
    }
    let p = Path::new(path);
    if !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!("{path:?} may only have plain parts"));
    }
    Ok(p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_accepted() {
        for good in ["a.txt", "sub/b.txt", "a/b/c/d", "..hidden", "x..y"] {
            assert!(check_path(good).is_ok(), "{good}");
        }
        for bad in ["", "/etc/passwd", "../evil", "a/../../b", "a/./b", "./a", "a//b", "a/", "a\0b"] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
    }
}

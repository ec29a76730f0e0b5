//! The download of one file into its blob: skip it when complete, resume an
//! `.incomplete` blob with `Range`, start over when the server ignores the range, and
//! check an LFS blob's sha256 before it is renamed into place. The bytes never pass
//! through this component: the host's `transfer` moves the response body into the file
//! and feeds the hash, and returns often enough for [`Meter`] to report progress
//! between calls. A failure keeps the partial blob, so pulling again resumes it, except
//! when its bytes are known to be wrong (too many, or a hash mismatch): then it is
//! deleted. What is wrong with the hub's answer is said here, with the file's path.

use crate::cache::open_blob;
use crate::http::{self, Failure, Url};
use crate::hub::{hub_error, hub_message};
use crate::select::FileSpec;
use crate::transfer::{self, Sha256};
use jobhost_sdk::{Error, log, progress};
use std::fs::{self, File};
use std::time::{Duration, Instant};
use wasip2::filesystem::types::{DescriptorFlags, OpenFlags};

/// Progress is reported at least this often while bytes arrive.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Why a download did not finish; `Failed` keeps the partial blob for a resume.
pub enum FetchError {
    Http(Failure),
    Failed(String),
}

pub fn hub_error_for(endpoint: &Url, e: FetchError) -> Error {
    match e {
        FetchError::Http(f) => hub_error(endpoint, f),
        FetchError::Failed(msg) => Error::new(msg),
    }
}

/// Downloads `f` into `blobs/<etag>` unless it is there; returns the bytes fetched.
pub fn fetch(url: &Url, repo_dir: &str, f: &FileSpec, commit: &str, meter: &mut Meter) -> Result<u64, FetchError> {
    let failed = FetchError::Failed;
    let blob = format!("{repo_dir}/blobs/{}", f.etag);
    if fs::metadata(&blob).is_ok_and(|m| m.len() == f.size) {
        return Ok(0);
    }
    let partial = format!("{blob}.incomplete");
    let mut offset = fs::metadata(&partial).map_or(0, |m| m.len());
    if offset > f.size {
        meter.done = meter.done.saturating_sub(f.size);
        offset = 0;
    }
    let mut fetched = 0u64;
    // LFS blobs are hashed as the bytes arrive; a resumed one first hashes what is on disk.
    let mut hasher = None;
    if f.sha256.is_some() && offset < f.size {
        let h = Sha256::new();
        if offset > 0 {
            let on_disk = open_blob(&partial, OpenFlags::empty(), DescriptorFlags::READ)
                .map_err(|e| failed(format!("opening {partial}: {e}")))?;
            h.absorb_file(&on_disk, offset)
                .map_err(|e| failed(format!("reading {partial}: {}", transfer::describe(e))))?;
        }
        hasher = Some(h);
    }
    let started = Instant::now();
    let mut calls = 0u64;
    if offset < f.size {
        let mut headers = Vec::new();
        if offset > 0 {
            headers.push(("range", format!("bytes={offset}-")));
        }
        let mut response = http::get(url, &headers).map_err(FetchError::Http)?;
        match response.status {
            206 if offset > 0 => {
                let range = response.header("content-range").unwrap_or_default();
                if !range.trim().starts_with(&format!("bytes {offset}-")) {
                    return Err(failed(format!(
                        "downloading {}: the server answered a resume with Content-Range {range:?}",
                        f.path
                    )));
                }
                log::info(format!("resuming {} at byte {offset} of {}", f.path, f.size));
            }
            200 => {
                if offset > 0 {
                    log::info(format!("{}: the server ignored the Range request; starting over", f.path));
                    meter.done = meter.done.saturating_sub(offset);
                    offset = 0;
                    if hasher.is_some() {
                        hasher = Some(Sha256::new());
                    }
                }
            }
            404 => {
                return Err(failed(format!(
                    "downloading {}: not found on the hub ({})",
                    f.path,
                    hub_message(&mut response)
                )));
            }
            status => {
                let from = response.url.clone();
                let message = hub_message(&mut response);
                return Err(failed(format!("downloading {} from {from}: HTTP {status} ({message})", f.path)));
            }
        }
        if let Some(c) = response.hub_header("x-repo-commit")
            && c != commit
        {
            log::warn(format!("{}: the hub served commit {c}, expected {commit}", f.path));
        }
        if let Some(etag) = response.hub_header("x-linked-etag").or_else(|| response.hub_header("etag")) {
            let etag = etag.trim().trim_start_matches("W/").trim_matches('"').to_owned();
            if !etag.is_empty() && etag != f.etag {
                log::warn(format!("{}: the hub's etag {etag} differs from the tree's {}", f.path, f.etag));
            }
        }
        let mut flags = OpenFlags::CREATE;
        if offset == 0 {
            flags |= OpenFlags::TRUNCATE;
        }
        let out = open_blob(&partial, flags, DescriptorFlags::WRITE)
            .map_err(|e| failed(format!("opening {partial}: {e}")))?;
        let mut written = offset;
        // The host moves the body into the file, feeding the hash, and comes back at
        // least every 100 ms while bytes arrive: progress is reported between calls.
        while let Some(body) = response.body_stream() {
            // One byte more than the file has left: a server that sends more is caught.
            let room = f.size - written + 1;
            let got = transfer::copy(body, &out, written, room, hasher.as_ref())
                .map_err(|e| failed(format!("downloading {}: {}", f.path, transfer::describe(e))))?;
            written += got.bytes;
            fetched += got.bytes;
            calls += 1;
            if written > f.size {
                drop(out);
                let _ = fs::remove_file(&partial);
                return Err(failed(format!(
                    "downloading {}: the server sent more than the {} bytes the tree lists; discarded",
                    f.path, f.size
                )));
            }
            meter.done += got.bytes;
            meter.report(false, None);
            if got.ended {
                break;
            }
        }
        if written != f.size {
            return Err(failed(format!(
                "downloading {}: the connection ended after {written} of {} bytes; pull again to resume",
                f.path, f.size
            )));
        }
    }
    if let Some(expected) = &f.sha256 {
        let got = match hasher {
            Some(h) => h.hex_digest(),
            // Complete on disk but never moved into place (stopped while verifying).
            None => {
                meter.report(true, Some(format!("verifying {}", f.path)));
                let h = Sha256::new();
                let on_disk = open_blob(&partial, OpenFlags::empty(), DescriptorFlags::READ)
                    .map_err(|e| failed(format!("verifying {}: opening {partial}: {e}", f.path)))?;
                h.absorb_file(&on_disk, f.size)
                    .map_err(|e| failed(format!("verifying {}: {}", f.path, transfer::describe(e))))?;
                h.hex_digest()
            }
        };
        if &got != expected {
            let _ = fs::remove_file(&partial);
            meter.done = meter.done.saturating_sub(f.size);
            return Err(failed(format!(
                "sha256 mismatch for {}: the hub's tree lists {expected} but the downloaded bytes hash to {got}; \
                 the blob was discarded",
                f.path
            )));
        }
    }
    if f.size == 0 {
        // An empty file needs no download; its blob is made here.
        File::create(&partial).map_err(|e| failed(format!("creating {partial}: {e}")))?;
    }
    fs::rename(&partial, &blob).map_err(|e| failed(format!("moving {partial} into place: {e}")))?;
    let secs = started.elapsed().as_secs_f64();
    log::debug(format!(
        "{}: {fetched} bytes in {calls} transfers, {secs:.3} s ({:.0} MiB/s)",
        f.path,
        fetched as f64 / secs.max(1e-9) / 1048576.0
    ));
    Ok(fetched)
}

/// Reports progress at most every [`PROGRESS_EVERY`] unless forced.
pub struct Meter {
    /// Bytes of the selected files, the end the progress counts to.
    total: u64,
    /// Bytes of them on disk; taken back when bytes on disk turn out to be unusable.
    pub done: u64,
    /// When progress was last reported, to space reports out.
    last: Option<Instant>,
}

impl Meter {
    pub fn new(total: u64) -> Meter {
        Meter { total, done: 0, last: None }
    }

    pub fn report(&mut self, force: bool, message: Option<String>) {
        let now = Instant::now();
        if force || self.last.is_none_or(|t| now.duration_since(t) >= PROGRESS_EVERY) {
            self.last = Some(now);
            progress(self.done.min(self.total), Some(self.total), message.as_deref());
        }
    }
}

//! The per-job limit on bytes under `/output`, enforced where the guest writes.
//!
//! wasmtime-wasi writes guest files straight to cap-std files, with no hook for a
//! quota. So the job's linker re-defines the four `wasi:filesystem/types` functions
//! that write or open files (`write-via-stream`, `append-via-stream`, `write`,
//! `open-at`) on top of wasmtime-wasi's own implementations:
//!
//! - `open-at` notes every descriptor opened from one that is inside `/output` (the
//!   preopen itself is noted when the job starts), so the set of `/output` descriptors
//!   follows the guest through sub-directories while `/work` and `/input` stay out;
//! - a stream opened for writing on an `/output` file is wrapped in a [`QuotaStream`],
//!   and a positional `write` on one is checked the same way: a write that would take
//!   the job's files under `/output` past the limit is refused whole, and the guest
//!   sees WASI's `insufficient-space` (a guest whose writes go through the WASI
//!   preview 1 adapter, as Rust std's do today, sees an I/O error: the adapter reports
//!   every failed stream write so). The job then ends `failed` (see [`OutputQuota::refusal`]);
//! - writes anywhere else go to wasmtime-wasi's streams untouched, at full speed.
//!
//! What is counted is growth: the bytes by which writes extend a file past its end, so
//! rewriting a file in place costs nothing. Deleting or truncating files does not give
//! bytes back within a run. Paths that change the tree without a write through an
//! `/output` descriptor (a rename or hard link from `/work`, `set-size`) are not seen
//! here; the runtime's measuring watcher is the backstop for those.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::filesystem::WasiFilesystemView;
use wasmtime_wasi::p2::bindings::filesystem::preopens::Host as PreopensHost;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    Descriptor, DescriptorFlags, ErrorCode, HostDescriptor, OpenFlags, PathFlags,
};
use wasmtime_wasi::p2::{DynOutputStream, OutputStream, Pollable, StreamError, StreamResult};

/// The `wasi:filesystem/types` instance wasmtime-wasi 48 defines; guests importing an
/// older 0.2.x version are matched to it by semver, and so reach these definitions.
/// It must follow wasmtime-wasi's version: if it stops matching, these definitions
/// no longer replace wasmtime-wasi's, and the sandbox tests of the output limit fail.
const FILESYSTEM_TYPES: &str = "wasi:filesystem/types@0.2.12";
/// `ENOSPC` (the same number on Linux, macOS and the BSDs): wasmtime-wasi turns an
/// I/O error with this code into WASI's `insufficient-space`, which is what a guest's
/// libc reports as "No space left on device".
const ENOSPC: i32 = 28;
/// The set of `/output` descriptors is swept of closed ones once it reaches this size
/// (and then each time it doubles), so a guest that opens and closes many files does
/// not grow it without bound.
const MIN_SWEEP_AT: usize = 256;

/// Store data that carries a job's output quota.
pub trait OutputQuotaView: WasiView + 'static {
    /// The job's quota.
    fn output_quota(&mut self) -> &mut OutputQuota;
}

/// One job's output quota: the byte counter and the `/output` descriptors.
#[derive(Debug)]
pub struct OutputQuota {
    counter: Arc<Counter>,
    tree: OutputTree,
}

impl OutputQuota {
    /// A quota of `limit` bytes of which `used` are already taken (files left in
    /// `/output` by an earlier attempt of the job).
    pub fn new(limit: u64, used: u64) -> OutputQuota {
        OutputQuota {
            counter: Arc::new(Counter { limit, used: AtomicU64::new(used), refused: AtomicBool::new(false) }),
            tree: OutputTree::default(),
        }
    }

    /// Why the job must fail, if a write was refused: the limit and its value.
    pub fn refusal(&self) -> Option<String> {
        self.counter.refused.load(Ordering::Relaxed).then(|| {
            format!("output limit of {} bytes exceeded (a write under /output was refused)", self.counter.limit)
        })
    }

    /// Bytes counted so far.
    #[cfg(test)]
    fn used(&self) -> u64 {
        self.counter.used.load(Ordering::Relaxed)
    }
}

/// Notes the preopen named `guest_path` as the root of the counted tree. Returns false
/// when the context has no such preopen.
pub fn track_preopen<T: OutputQuotaView>(state: &mut T, guest_path: &str) -> wasmtime::Result<bool> {
    // The preopens are handed out as fresh descriptors sharing the context's host
    // directory handles; look at them once, then give the table its slots back.
    let dirs = PreopensHost::get_directories(&mut state.filesystem())?;
    let mut found = None;
    for (fd, name) in dirs {
        let file = host_file(state, &fd);
        state.ctx().table.delete(fd)?;
        if name == guest_path {
            found = file;
        }
    }
    let Some(file) = found else { return Ok(false) };
    state.output_quota().tree.insert(&file);
    Ok(true)
}

/// Re-defines the writing and opening functions of `wasi:filesystem/types` in a linker
/// that already holds wasmtime-wasi's (`wasmtime_wasi::p2::add_to_linker_async`).
pub fn add_to_linker<T: OutputQuotaView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let defined = define(linker);
    linker.allow_shadowing(false);
    defined
}

fn define<T: OutputQuotaView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    let mut types = linker.instance(FILESYSTEM_TYPES)?;

    types.func_wrap_async(
        "[method]descriptor.open-at",
        |mut store: StoreContextMut<'_, T>,
         (fd, path_flags, path, oflags, flags): (
            Resource<Descriptor>,
            PathFlags,
            String,
            OpenFlags,
            DescriptorFlags,
        )| {
            Box::new(async move {
                let state = store.data_mut();
                let inside = output_file(state, &fd).is_some();
                let opened =
                    match HostDescriptor::open_at(&mut state.filesystem(), fd, path_flags, path, oflags, flags).await {
                        Ok(opened) => opened,
                        Err(e) => return Ok((Err(e.downcast()?),)),
                    };
                if inside && let Some(file) = host_file(state, &opened) {
                    state.output_quota().tree.insert(&file);
                }
                Ok((Ok(opened),))
            })
        },
    )?;

    types.func_wrap(
        "[method]descriptor.write-via-stream",
        |mut store: StoreContextMut<'_, T>, (fd, offset): (Resource<Descriptor>, u64)| {
            let state = store.data_mut();
            let file = output_file(state, &fd);
            let stream = match HostDescriptor::write_via_stream(&mut state.filesystem(), fd, offset) {
                Ok(stream) => stream,
                Err(e) => return Ok((Err(e.downcast()?),)),
            };
            let Some(file) = file else { return Ok((Ok(stream),)) };
            // Where the file ends now; if that cannot be read, count every byte.
            let end = file.metadata().map_or(offset, |m| m.len());
            Ok((Ok(wrap(state, stream, Growth::At { next: offset, end })?),))
        },
    )?;

    types.func_wrap(
        "[method]descriptor.append-via-stream",
        |mut store: StoreContextMut<'_, T>, (fd,): (Resource<Descriptor>,)| {
            let state = store.data_mut();
            let file = output_file(state, &fd);
            let stream = match HostDescriptor::append_via_stream(&mut state.filesystem(), fd) {
                Ok(stream) => stream,
                Err(e) => return Ok((Err(e.downcast()?),)),
            };
            if file.is_none() {
                return Ok((Ok(stream),));
            }
            Ok((Ok(wrap(state, stream, Growth::Append)?),))
        },
    )?;

    types.func_wrap_async(
        "[method]descriptor.write",
        |mut store: StoreContextMut<'_, T>, (fd, buf, offset): (Resource<Descriptor>, Vec<u8>, u64)| {
            Box::new(async move {
                let state = store.data_mut();
                let mut reserved = 0;
                if let Some(file) = output_file(state, &fd) {
                    let end = file.metadata().map_or(offset, |m| m.len());
                    reserved = offset.saturating_add(buf.len() as u64).saturating_sub(end);
                    if !state.output_quota().counter.reserve(reserved) {
                        return Ok((Err(ErrorCode::InsufficientSpace),));
                    }
                }
                match HostDescriptor::write(&mut state.filesystem(), fd, buf, offset).await {
                    Ok(n) => Ok((Ok(n),)),
                    Err(e) => {
                        // Nothing was written (a read-only descriptor, a full disk):
                        // the bytes go back.
                        state.output_quota().counter.release(reserved);
                        Ok((Err(e.downcast()?),))
                    }
                }
            })
        },
    )?;
    Ok(())
}

/// Replaces the stream behind `stream` with a counting one.
fn wrap<T: OutputQuotaView>(
    state: &mut T,
    stream: Resource<DynOutputStream>,
    growth: Growth,
) -> wasmtime::Result<Resource<DynOutputStream>> {
    let counter = state.output_quota().counter.clone();
    let table = state.ctx().table;
    let inner = table.delete(stream)?;
    let wrapped: DynOutputStream = Box::new(QuotaStream { inner, counter, growth, refused: false });
    Ok(table.push(wrapped)?)
}

/// The host file behind `fd` when `fd` is inside `/output`.
fn output_file<T: OutputQuotaView>(state: &mut T, fd: &Resource<Descriptor>) -> Option<Arc<std::fs::File>> {
    let file = host_file(state, fd)?;
    state.output_quota().tree.contains(&file).then_some(file)
}

/// The host file or directory handle behind `fd`; `None` for a bad descriptor (which
/// wasmtime-wasi's own function then reports).
fn host_file<T: WasiView>(state: &mut T, fd: &Resource<Descriptor>) -> Option<Arc<std::fs::File>> {
    match state.ctx().table.get(fd).ok()? {
        Descriptor::File(f) => Some(f.file.clone()),
        Descriptor::Dir(d) => Some(d.dir.clone()),
    }
}

/// The job's byte counter, shared by its counting streams.
#[derive(Debug)]
struct Counter {
    limit: u64,
    used: AtomicU64,
    /// Set once a write has been refused: the job ends `failed`.
    refused: AtomicBool,
}

impl Counter {
    /// Takes `bytes` from the quota, or refuses (and remembers the refusal) when they
    /// do not fit.
    fn reserve(&self, bytes: u64) -> bool {
        if bytes == 0 {
            return true;
        }
        let fits = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok();
        if !fits {
            self.refused.store(true, Ordering::Relaxed);
        }
        fits
    }

    /// Gives back `bytes` taken by a write that did not happen.
    fn release(&self, bytes: u64) {
        // `fetch_update` with a closure that always answers cannot fail.
        let _ = self.used.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| Some(used.saturating_sub(bytes)));
    }
}

/// The descriptors inside `/output`, by the address of their host handle. Descriptors
/// are cloned around wasmtime-wasi (into streams, into each `get-directories` answer)
/// but share one `Arc`'d handle, so the address names the file, not one resource. The
/// `Weak` kept beside it holds that allocation, so no other file can take the address
/// while it is listed.
#[derive(Debug, Default)]
struct OutputTree {
    members: HashMap<usize, Weak<std::fs::File>>,
    sweep_at: usize,
}

impl OutputTree {
    fn contains(&self, file: &Arc<std::fs::File>) -> bool {
        self.members.contains_key(&address(file))
    }

    fn insert(&mut self, file: &Arc<std::fs::File>) {
        if self.members.len() >= self.sweep_at.max(MIN_SWEEP_AT) {
            self.members.retain(|_, w| w.strong_count() > 0);
            self.sweep_at = self.members.len().saturating_mul(2);
        }
        self.members.insert(address(file), Arc::downgrade(file));
    }
}

fn address(file: &Arc<std::fs::File>) -> usize {
    Arc::as_ptr(file) as usize
}

/// How writes through a stream grow its file.
#[derive(Debug, Clone, Copy)]
enum Growth {
    /// Writes at `next`, onwards; the file ended at `end` when last seen.
    At { next: u64, end: u64 },
    /// Every byte appended is new.
    Append,
}

impl Growth {
    /// The bytes a write of `len` adds to the file, advancing the position.
    fn advance(&mut self, len: u64) -> u64 {
        match self {
            Growth::At { next, end } => {
                let new_next = next.saturating_add(len);
                let grown = new_next.saturating_sub(*end);
                *next = new_next;
                *end = (*end).max(new_next);
                grown
            }
            Growth::Append => len,
        }
    }
}

/// An output stream on an `/output` file that refuses writes past the job's quota.
/// Everything else is the wrapped wasmtime-wasi stream's, including its fast
/// `blocking-write-and-flush`.
struct QuotaStream {
    inner: DynOutputStream,
    counter: Arc<Counter>,
    growth: Growth,
    /// After a refusal the stream is closed, as WASI streams are after a failure.
    refused: bool,
}

impl QuotaStream {
    fn admit(&mut self, len: usize) -> StreamResult<()> {
        if self.refused {
            return Err(StreamError::Closed);
        }
        let mut after = self.growth;
        if self.counter.reserve(after.advance(len as u64)) {
            self.growth = after;
            return Ok(());
        }
        self.refused = true;
        Err(StreamError::LastOperationFailed(std::io::Error::from_raw_os_error(ENOSPC).into()))
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for QuotaStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.admit(bytes.len())?;
        self.inner.write(bytes)
    }

    async fn blocking_write_and_flush(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.admit(bytes.len())?;
        self.inner.blocking_write_and_flush(bytes).await
    }

    fn flush(&mut self) -> StreamResult<()> {
        if self.refused {
            return Err(StreamError::Closed);
        }
        self.inner.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        if self.refused {
            return Err(StreamError::Closed);
        }
        self.inner.check_write()
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await;
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for QuotaStream {
    async fn ready(&mut self) {
        self.inner.ready().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_counts_only_bytes_past_the_end() {
        let mut g = Growth::At { next: 0, end: 10 };
        assert_eq!(g.advance(4), 0, "rewriting inside the file is free");
        assert_eq!(g.advance(10), 4, "bytes 10..14 are new");
        assert_eq!(g.advance(3), 3);
        let mut a = Growth::Append;
        assert_eq!(a.advance(7), 7);
    }

    #[test]
    fn the_counter_refuses_what_does_not_fit_and_remembers() {
        let q = OutputQuota::new(10, 4);
        assert!(q.counter.reserve(6));
        assert_eq!(q.refusal(), None);
        assert!(!q.counter.reserve(1));
        assert_eq!(q.used(), 10, "a refused write takes nothing");
        q.counter.release(6);
        assert_eq!(q.used(), 4);
        let msg = q.refusal().unwrap();
        assert!(msg.starts_with("output limit of 10 bytes exceeded"), "{msg}");
    }

    #[test]
    fn the_tree_forgets_closed_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut tree = OutputTree::default();
        let kept = Arc::new(std::fs::File::create(dir.path().join("kept")).unwrap());
        tree.insert(&kept);
        for i in 0..(MIN_SWEEP_AT * 4) {
            let f = Arc::new(std::fs::File::create(dir.path().join(format!("f{i}"))).unwrap());
            tree.insert(&f);
            assert!(tree.contains(&f));
        }
        assert!(tree.contains(&kept));
        assert!(tree.members.len() <= MIN_SWEEP_AT + 1, "{} entries", tree.members.len());
    }
}

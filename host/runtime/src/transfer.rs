//! Host side of `jobhost:plugin/transfer` (`wit/job.wit`): the model puller's data
//! path. A download's body goes from the HTTP stream into the blob file, and through
//! SHA-256, in the host; it never enters the guest's memory. Done in the guest, the
//! same work cost a copy into linear memory and one out of it for every byte, and a
//! SHA-256 in wasm, which has no SHA instructions: about a third of the host's speed
//! with them, and most of a pull's time.
//!
//! One `copy` is a two-stage pipeline: the calling task takes the body's frames off
//! the stream (refcounted [`Bytes`], not copied) and writes each at its offset, and a
//! blocking task hashes them, a bounded channel ([`PIPELINE_DEPTH`] frames) apart. The
//! hash, the costliest step per byte, so runs beside the receive and the write instead
//! of after them. The write is a positioned write of one frame into the page cache,
//! made on the job runtime's worker, which runs guest code for whole epoch ticks
//! anyway; a hop through the blocking pool per frame (as wasmtime-wasi's own file
//! writes take) measured slower, one more thread to schedule on a machine with few
//! cores. Since the write happens in the call, a dropped call (a cancelled job) writes
//! nothing more.
//!
//! The interface is granted per job ([`RunSpec::transfer`](super::RunSpec)), only to
//! the model puller; any other job's `copy` and `absorb-file` fail with `denied`.
//! Writes go through descriptors the guest opened for writing, checked as
//! wasmtime-wasi's own `write` checks them; they are not counted against an output
//! quota, which is why a job with the sandbox's metered `/output` is never granted it.

use super::JobState;
use super::host::jobhost::plugin::transfer::{Copied, Host, HostSha256, TransferError};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::os::unix::fs::FileExt as _;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::OpenMode;
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::p2::{DynInputStream, StreamError};

/// Frames queued for the hasher. A frame is what the HTTP connection read at once
/// (hyper reads up to ~400 KiB; ~340 KiB seen on loopback), so a copy holds at most
/// ~6 MiB of the body in the host; enough slack that a hiccup of one stage does not
/// stall the other.
const PIPELINE_DEPTH: usize = 16;
/// A `copy` returns once this long has passed with bytes copied, so its caller can
/// report progress well within the 250 ms a pull promises.
const COPY_BUDGET: Duration = Duration::from_millis(100);
/// Largest piece asked of the stream at once (a frame is handed over whole below it).
const MAX_READ: usize = 4 << 20;
/// Piece read from a file by `absorb-file`.
const ABSORB_CHUNK: usize = 1 << 20;
/// Wake-ups in a row with nothing to read before a stream is declared stuck
/// (wasmtime-wasi's own `blocking-read` gives up the same way).
const MAX_IDLE_WAKEUPS: u32 = 100;

/// The state of a `sha256` resource. `None` while a `copy` is feeding it: the hasher
/// is then on the hashing task, and comes back when the call ends.
pub struct Sha256State {
    hasher: Option<Sha256>,
}

impl Sha256State {
    fn take(&mut self) -> wasmtime::Result<Sha256> {
        self.hasher.take().ok_or_else(|| wasmtime::Error::msg("the sha256 is in use by another transfer"))
    }
}

impl Host for JobState {
    async fn copy(
        &mut self,
        source: Resource<DynInputStream>,
        file: Resource<Descriptor>,
        offset: u64,
        max: u64,
        digest: Option<Resource<Sha256State>>,
    ) -> wasmtime::Result<Result<Copied, TransferError>> {
        if !self.transfer {
            return Ok(Err(TransferError::Denied));
        }
        let out = match open_file(&self.table, &file, OpenMode::WRITE)? {
            Ok(f) => f,
            Err(e) => return Ok(Err(e)),
        };
        let hasher = match &digest {
            Some(d) => Some(self.table.get_mut(d)?.take()?),
            None => None,
        };

        let hashing = hasher.map(|mut h| {
            let (tx, mut rx) = mpsc::channel::<Bytes>(PIPELINE_DEPTH);
            let task = tokio::task::spawn_blocking(move || {
                while let Some(piece) = rx.blocking_recv() {
                    h.update(&piece);
                }
                h
            });
            (tx, task)
        });

        let started = Instant::now();
        let (mut copied, mut ended, mut idle) = (0u64, false, 0u32);
        let mut failure = None;
        while copied < max {
            let stream = self.table.get_mut(&source)?;
            let want = usize::try_from(max - copied).unwrap_or(usize::MAX).min(MAX_READ);
            let piece = match stream.read(want) {
                Ok(piece) if piece.is_empty() => {
                    idle += 1;
                    if idle > MAX_IDLE_WAKEUPS {
                        failure = Some(TransferError::Stream("the stream made no progress".into()));
                        break;
                    }
                    if copied == 0 {
                        stream.ready().await;
                        continue;
                    }
                    // Bytes to report: wait only for what is left of the budget.
                    let left = COPY_BUDGET.saturating_sub(started.elapsed());
                    if left.is_zero() || tokio::time::timeout(left, stream.ready()).await.is_err() {
                        break;
                    }
                    continue;
                }
                Ok(piece) => piece,
                Err(StreamError::Closed) => {
                    ended = true;
                    break;
                }
                Err(StreamError::LastOperationFailed(e)) => {
                    failure = Some(TransferError::Stream(format!("{e:#}")));
                    break;
                }
                Err(StreamError::Trap(e)) => return Err(e),
            };
            idle = 0;
            if let Some((tx, _)) = &hashing {
                // The hasher only stops when this side is done: a send cannot fail first.
                let _ = tx.send(piece.clone()).await;
            }
            if let Err(e) = out.write_all_at(&piece, offset + copied) {
                failure = Some(TransferError::File(format!("writing: {e}")));
                break;
            }
            copied += piece.len() as u64;
            if started.elapsed() >= COPY_BUDGET {
                break;
            }
        }

        if let Some((tx, task)) = hashing {
            drop(tx);
            let hasher = task.await?;
            if let Some(d) = &digest {
                self.table.get_mut(d)?.hasher = Some(hasher);
            }
        }
        if copied > 0 {
            self.sink.transferred(&self.job_id, copied);
        }
        Ok(match failure {
            Some(e) => Err(e),
            None => Ok(Copied { bytes: copied, ended }),
        })
    }
}

impl HostSha256 for JobState {
    async fn new(&mut self) -> wasmtime::Result<Resource<Sha256State>> {
        Ok(self.table.push(Sha256State { hasher: Some(Sha256::new()) })?)
    }

    async fn absorb_file(
        &mut self,
        this: Resource<Sha256State>,
        file: Resource<Descriptor>,
        len: u64,
    ) -> wasmtime::Result<Result<(), TransferError>> {
        if !self.transfer {
            return Ok(Err(TransferError::Denied));
        }
        let source = match open_file(&self.table, &file, OpenMode::READ)? {
            Ok(f) => f,
            Err(e) => return Ok(Err(e)),
        };
        let mut hasher = self.table.get_mut(&this)?.take()?;
        let (hasher, read) = tokio::task::spawn_blocking(move || {
            let read = absorb(&source, len, &mut hasher);
            (hasher, read)
        })
        .await?;
        self.table.get_mut(&this)?.hasher = Some(hasher);
        Ok(read.map_err(|e| TransferError::File(format!("reading: {e}"))))
    }

    async fn hex_digest(&mut self, this: Resource<Sha256State>) -> wasmtime::Result<String> {
        let state = self.table.get(&this)?;
        let hasher = state.hasher.clone().ok_or_else(|| wasmtime::Error::msg("the sha256 is in use"))?;
        Ok(hex::encode(hasher.finalize()))
    }

    async fn drop(&mut self, this: Resource<Sha256State>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

/// The host file behind `fd`, if it is a file open for `mode` (and, for writing, one
/// the job may write).
fn open_file(
    table: &ResourceTable,
    fd: &Resource<Descriptor>,
    mode: OpenMode,
) -> wasmtime::Result<Result<Arc<std::fs::File>, TransferError>> {
    Ok(match table.get(fd)? {
        Descriptor::File(f) if !f.open_mode.contains(mode) => {
            Err(TransferError::File(format!("the file is not open for {}", mode_name(mode))))
        }
        Descriptor::File(f) if mode.contains(OpenMode::WRITE) && f.perms.write_not_permitted() => {
            Err(TransferError::File("the file is read-only to this job".into()))
        }
        Descriptor::File(f) => Ok(f.file.clone()),
        Descriptor::Dir(_) => Err(TransferError::File("the descriptor is a directory, not a file".into())),
    })
}

fn mode_name(mode: OpenMode) -> &'static str {
    if mode.contains(OpenMode::WRITE) { "writing" } else { "reading" }
}

/// Feeds the first `len` bytes of `file` to `hasher`.
fn absorb(file: &std::fs::File, len: u64, hasher: &mut Sha256) -> std::io::Result<()> {
    let mut buf = vec![0u8; ABSORB_CHUNK];
    let mut at = 0u64;
    while at < len {
        let want = usize::try_from(len - at).unwrap_or(usize::MAX).min(buf.len());
        let n = file.read_at(&mut buf[..want], at)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the file ends at byte {at}, before the {len} asked for"),
            ));
        }
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absorb_hashes_a_files_prefix_and_refuses_a_short_file() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("partial");
        let data: Vec<u8> = (0..3 * ABSORB_CHUNK / 2).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data)?;
        let file = std::fs::File::open(&path)?;

        // A resumed download's prefix, across a chunk boundary.
        let len = ABSORB_CHUNK + 1000;
        let mut hasher = Sha256::new();
        absorb(&file, len as u64, &mut hasher)?;
        assert_eq!(hasher.finalize(), Sha256::digest(&data[..len]));

        // A file shorter than what is asked for is an error, not a silent short hash.
        let mut hasher = Sha256::new();
        let err = absorb(&file, data.len() as u64 + 1, &mut hasher).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(err.to_string().contains(&format!("ends at byte {}", data.len())), "{err}");
        Ok(())
    }
}

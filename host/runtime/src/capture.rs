//! Captures a guest's stdout, stderr and `log` lines as ordered log chunks.
//!
//! Writes from the guest land here synchronously and cheaply: bytes are appended to
//! the newest pending chunk of the same stream (or start a new one with the next
//! sequence number), and a flusher hands pending chunks to the job's sink every
//! [`super::LOG_FLUSH_INTERVAL`]. What is stored is capped per job; past the cap the
//! guest keeps running, its output is counted but dropped, and one `system` chunk
//! says the log was truncated.

use bytes::Bytes;
use jobhost_model::{LogChunk, LogStream, ids};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// A pending chunk grows by appends until it reaches this size; then a new one starts.
/// Small enough that a full page of `jobs.logs` stays well under the response limit.
const MAX_CHUNK_BYTES: usize = 16 * 1024;
/// How much the guest may write in one `write` call (WASI's `check-write` permit).
const WRITE_PERMIT: usize = 64 * 1024;

/// The per-job capture shared by the job's output streams.
#[derive(Debug)]
pub struct LogCapture {
    state: Mutex<CaptureState>,
}

#[derive(Debug)]
struct CaptureState {
    /// Sequence number of the next new chunk.
    next_seq: u64,
    /// Chunks not yet handed to the sink, oldest first.
    pending: Vec<LogChunk>,
    /// Bytes of output kept so far (what counts against `max_bytes`).
    kept_bytes: u64,
    /// The per-job cap on kept bytes.
    max_bytes: u64,
    /// Whether the truncation note was already added.
    truncated: bool,
    /// Trailing bytes of an unfinished UTF-8 character, per stream (stdout, stderr).
    carry: [Vec<u8>; 2],
}

impl LogCapture {
    /// A capture that keeps at most `max_bytes` of output.
    pub fn new(max_bytes: u64) -> Arc<LogCapture> {
        LogCapture::for_attempt(max_bytes, 1)
    }

    /// A capture of attempt `attempt`: its chunks are numbered from the attempt's
    /// first sequence number on, after every earlier attempt's.
    pub fn for_attempt(max_bytes: u64, attempt: u32) -> Arc<LogCapture> {
        Arc::new(LogCapture {
            state: Mutex::new(CaptureState {
                next_seq: jobhost_model::first_seq_of_attempt(attempt),
                pending: Vec::new(),
                kept_bytes: 0,
                max_bytes,
                truncated: false,
                carry: [Vec::new(), Vec::new()],
            }),
        })
    }

    /// The stream to hand to WASI as stdout or stderr.
    pub fn stream(self: &Arc<Self>, stream: LogStream) -> CaptureStream {
        CaptureStream { capture: self.clone(), stream }
    }

    /// Records bytes the guest wrote to `stream`.
    pub fn write(&self, stream: LogStream, bytes: &[u8]) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let room = st.max_bytes.saturating_sub(st.kept_bytes);
        let keep = &bytes[..bytes.len().min(usize::try_from(room).unwrap_or(usize::MAX))];
        if !keep.is_empty() {
            st.kept_bytes += keep.len() as u64;
            let text = st.decode(stream, keep);
            st.push(stream, &text);
        }
        if keep.len() < bytes.len() && !st.truncated {
            st.truncated = true;
            let note = format!(
                "output truncated: the log limit of {} bytes was reached; further output is discarded",
                st.max_bytes
            );
            st.push(LogStream::System, &note);
        }
    }

    /// Records one line from the `log` interface (counted against the same cap).
    pub fn line(&self, stream: LogStream, line: &str) {
        let mut text = String::with_capacity(line.len() + 1);
        text.push_str(line);
        text.push('\n');
        self.write(stream, text.as_bytes());
    }

    /// Takes the chunks not yet handed on, finishing any split UTF-8 characters when
    /// `final_flush` is set (the guest will write no more).
    pub fn take(&self, final_flush: bool) -> Vec<LogChunk> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if final_flush {
            for (i, stream) in [LogStream::Stdout, LogStream::Stderr].into_iter().enumerate() {
                let rest = std::mem::take(&mut st.carry[i]);
                if !rest.is_empty() {
                    let text = String::from_utf8_lossy(&rest).into_owned();
                    st.push(stream, &text);
                }
            }
        }
        std::mem::take(&mut st.pending)
    }
}

impl CaptureState {
    /// Turns bytes into text, holding back an incomplete trailing UTF-8 sequence so a
    /// character split across two writes is not mangled.
    fn decode(&mut self, stream: LogStream, bytes: &[u8]) -> String {
        let slot = match stream {
            LogStream::Stdout => 0,
            LogStream::Stderr => 1,
            LogStream::Log | LogStream::System => return String::from_utf8_lossy(bytes).into_owned(),
        };
        let mut buf = std::mem::take(&mut self.carry[slot]);
        buf.extend_from_slice(bytes);
        let mut out = String::with_capacity(buf.len());
        let mut rest: &[u8] = &buf;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(&String::from_utf8_lossy(valid));
                    match e.error_len() {
                        None => {
                            self.carry[slot] = after.to_vec();
                            break;
                        }
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[n..];
                        }
                    }
                }
            }
        }
        out
    }

    fn push(&mut self, stream: LogStream, text: &str) {
        if text.is_empty() {
            return;
        }
        if let Some(last) = self.pending.last_mut()
            && last.stream == stream
            && last.data.len() < MAX_CHUNK_BYTES
        {
            last.data.push_str(text);
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let attempt = jobhost_model::attempt_of_seq(seq);
        self.pending.push(LogChunk { seq, attempt, stream, data: text.to_owned(), at: ids::now() });
    }
}

/// One of the job's output streams, as WASI sees it.
#[derive(Debug, Clone)]
pub struct CaptureStream {
    capture: Arc<LogCapture>,
    stream: LogStream,
}

impl IsTerminal for CaptureStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CaptureStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

impl OutputStream for CaptureStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.capture.write(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CaptureStream {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CaptureStream {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.capture.write(self.stream, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaved_streams_keep_their_order() {
        let c = LogCapture::new(1 << 20);
        c.write(LogStream::Stdout, b"a\n");
        c.write(LogStream::Stdout, b"b\n");
        c.write(LogStream::Stderr, b"e\n");
        c.write(LogStream::Stdout, b"c\n");
        let chunks = c.take(true);
        let got: Vec<_> = chunks.iter().map(|c| (c.seq, c.stream, c.data.as_str())).collect();
        assert_eq!(
            got,
            vec![(0, LogStream::Stdout, "a\nb\n"), (1, LogStream::Stderr, "e\n"), (2, LogStream::Stdout, "c\n")]
        );
    }

    #[test]
    fn a_character_split_across_writes_survives() {
        let c = LogCapture::new(1 << 20);
        let snow = "❄".as_bytes();
        c.write(LogStream::Stdout, &snow[..1]);
        c.write(LogStream::Stdout, &snow[1..]);
        c.write(LogStream::Stdout, b"\xff!");
        let text: String = c.take(true).into_iter().map(|c| c.data).collect();
        assert_eq!(text, "❄\u{fffd}!");
    }

    #[test]
    fn output_past_the_cap_is_dropped_with_one_note() {
        let c = LogCapture::new(10);
        c.write(LogStream::Stdout, b"0123456789abcdef");
        c.write(LogStream::Stdout, b"more");
        let chunks = c.take(true);
        assert_eq!(chunks[0].data, "0123456789");
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[1].stream, LogStream::System);
        assert!(chunks[1].data.contains("truncated"), "{}", chunks[1].data);
    }
}

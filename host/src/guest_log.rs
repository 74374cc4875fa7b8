//! A guest's stdout and stderr, forwarded line by line to the host's log,
//! tagged with the route (DESIGN.md "Sandbox").

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// A line longer than this is logged in pieces, so a guest that never writes
/// a newline cannot grow host memory without bound. The pending line is one
/// per stream and request, however many handles the guest opens.
pub const MAX_LINE: usize = 16 * 1024;

/// Bytes one request may add to the log, stdout and stderr together; past
/// it lines are dropped and one note at the end says how many. 64 KiB holds
/// hundreds of ordinary log lines or a panic with its backtrace (a few KiB),
/// while a guest looping on `println!` adds at most 64 KiB per request to
/// the log (64 MB/s at 1000 requests/s) instead of gigabytes.
pub const MAX_OUTPUT_PER_REQUEST: usize = 64 * 1024;

/// Which of the guest's output streams.
#[derive(Debug, Clone, Copy)]
pub enum GuestStream {
    /// Logged at `info`.
    Stdout,
    /// Logged at `warn`: panics and error reports land here.
    Stderr,
}

/// One request's guest output: both streams' pending lines and what is
/// left of its budget. Dropped when the instance is, which logs the last
/// partial lines and the note on what was dropped.
#[derive(Debug, Clone)]
pub struct GuestOutput(Arc<Mutex<Output>>);

impl GuestOutput {
    /// The output of one request to `route`.
    pub fn new(route: Arc<str>) -> GuestOutput {
        GuestOutput(Arc::new(Mutex::new(Output {
            route,
            left: MAX_OUTPUT_PER_REQUEST,
            dropped_lines: 0,
            dropped_bytes: 0,
            stdout: Vec::new(),
            stderr: Vec::new(),
        })))
    }

    /// The `stdout` or `stderr` to give the guest's `WasiCtx`.
    pub fn stream(&self, stream: GuestStream) -> GuestLog {
        GuestLog {
            output: self.0.clone(),
            stream,
        }
    }
}

#[derive(Debug)]
struct Output {
    route: Arc<str>,
    /// Bytes the request may still log.
    left: usize,
    dropped_lines: u64,
    dropped_bytes: u64,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Output {
    fn pending(&mut self, stream: GuestStream) -> &mut Vec<u8> {
        match stream {
            GuestStream::Stdout => &mut self.stdout,
            GuestStream::Stderr => &mut self.stderr,
        }
    }

    fn push(&mut self, stream: GuestStream, mut bytes: &[u8]) {
        while let Some(newline) = bytes.iter().position(|&b| b == b'\n') {
            let mut line = std::mem::take(self.pending(stream));
            line.extend_from_slice(&bytes[..newline]);
            self.emit(stream, &line);
            line.clear();
            *self.pending(stream) = line;
            bytes = &bytes[newline + 1..];
        }
        let room = MAX_LINE - self.pending(stream).len();
        if bytes.len() < room {
            self.pending(stream).extend_from_slice(bytes);
            return;
        }
        // A line that reaches MAX_LINE is logged in pieces of MAX_LINE.
        let mut line = std::mem::take(self.pending(stream));
        line.extend_from_slice(&bytes[..room]);
        self.emit(stream, &line);
        let mut rest = &bytes[room..];
        while rest.len() >= MAX_LINE {
            self.emit(stream, &rest[..MAX_LINE]);
            rest = &rest[MAX_LINE..];
        }
        line.clear();
        line.extend_from_slice(rest);
        *self.pending(stream) = line;
    }

    fn emit(&mut self, stream: GuestStream, line: &[u8]) {
        // What the guest wrote: the line and its newline.
        let written = line.len() + 1;
        if written > self.left {
            // Once over, every later line is dropped too, so the log keeps
            // the request's first lines whole.
            self.left = 0;
            self.dropped_lines += 1;
            self.dropped_bytes += written as u64;
            return;
        }
        self.left -= written;
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            return;
        }
        let route = &self.route;
        match stream {
            GuestStream::Stdout => {
                tracing::info!(target: "wedge::guest", route = %route, "stdout: {line}");
            }
            GuestStream::Stderr => {
                tracing::warn!(target: "wedge::guest", route = %route, "stderr: {line}");
            }
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        for stream in [GuestStream::Stdout, GuestStream::Stderr] {
            let line = std::mem::take(self.pending(stream));
            if !line.is_empty() {
                self.emit(stream, &line);
            }
        }
        if self.dropped_lines > 0 {
            tracing::warn!(
                target: "wedge::guest",
                route = %self.route,
                "guest output over {} KiB for this request: {} more line(s), {} bytes, dropped",
                MAX_OUTPUT_PER_REQUEST / 1024,
                self.dropped_lines,
                self.dropped_bytes,
            );
        }
    }
}

/// One of a request's output streams, given to its `WasiCtx`.
#[derive(Debug, Clone)]
pub struct GuestLog {
    output: Arc<Mutex<Output>>,
    stream: GuestStream,
}

impl GuestLog {
    fn writer(&self) -> LineWriter {
        LineWriter { log: self.clone() }
    }

    fn push(&self, bytes: &[u8]) {
        // A panic while logging cannot leave the buffers inconsistent
        // enough to matter: keep logging.
        let mut output = self.output.lock().unwrap_or_else(PoisonError::into_inner);
        output.push(self.stream, bytes);
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.writer())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.writer())
    }
}

/// A guest's handle on one of its output streams; the partial line it
/// writes waits in the request's [`GuestOutput`], shared by every handle.
struct LineWriter {
    log: GuestLog,
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.log.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(MAX_LINE)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().log.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output() -> Output {
        Output {
            route: Arc::from("/t"),
            left: MAX_OUTPUT_PER_REQUEST,
            dropped_lines: 0,
            dropped_bytes: 0,
            stdout: Vec::new(),
            stderr: Vec::new(),
        }
    }

    #[test]
    fn output_past_the_budget_is_dropped_and_counted() {
        let mut output = output();
        let line = [b'x'; 1023];
        for _ in 0..100 {
            output.push(GuestStream::Stdout, &line);
            output.push(GuestStream::Stderr, b"");
            output.push(GuestStream::Stdout, b"\n");
        }
        assert_eq!(output.left, 0);
        assert_eq!(output.dropped_lines, 100 - 64);
        assert_eq!(output.dropped_bytes, (100 - 64) * 1024);
    }

    #[test]
    fn a_line_without_newline_is_held_once_per_stream() {
        let mut output = output();
        for _ in 0..10 {
            output.push(GuestStream::Stdout, &[b'y'; 4000]);
        }
        assert!(output.stdout.len() < MAX_LINE);
        assert_eq!(output.left, MAX_OUTPUT_PER_REQUEST - 2 * (MAX_LINE + 1));
    }
}

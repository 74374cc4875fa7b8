//! The bodies that cross the sandbox: the client's request body, counted
//! against `max_body`, and the guest's response body, cut when the guest fails.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::oneshot::{self, error::TryRecvError};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::RunStats;
use super::run::Failure;

/// The client's request body, failing once more than `limit` bytes arrive,
/// whatever `content-length` said (a chunked upload is counted as it streams).
pub(super) struct LimitedBody<B> {
    body: B,
    limit: u64,
    read: u64,
    exceeded: Arc<AtomicBool>,
    stats: Arc<RunStats>,
}

impl<B> LimitedBody<B> {
    /// `exceeded` is set when the body passes `limit`; what is read is
    /// counted in `stats`.
    pub(super) fn new(
        body: B,
        limit: u64,
        exceeded: Arc<AtomicBool>,
        stats: Arc<RunStats>,
    ) -> Self {
        LimitedBody {
            body,
            limit,
            read: 0,
            exceeded,
            stats,
        }
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = frame.data_ref() {
            self.read += data.len() as u64;
            self.stats.add_body_read(data.len() as u64);
            if self.read > self.limit {
                self.exceeded.store(true, Ordering::Release);
                let read = self.read;
                return Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpRequestBodySize(
                    Some(read),
                ))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A guest's response body that ends in an error, not cleanly, when the
/// guest failed before finishing it (trap, timeout, body limit).
/// wasmtime-wasi-http ends the body of a guest that trapped as if it were
/// complete, which would hand the client a truncated response that looks
/// whole; an error makes hyper cut it (HTTP/1.1: no last chunk, connection
/// closed; HTTP/2: stream reset).
pub(super) struct GuestBody {
    pub(super) body: HyperOutgoingBody,
    pub(super) outcome: oneshot::Receiver<Result<(), Failure>>,
}

impl Body for GuestBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            // Still running (it finished the body and works on) or done: a
            // clean end. Failed, or its task died: the body was never finished.
            Poll::Ready(None) => match self.outcome.try_recv() {
                Ok(Ok(())) | Err(TryRecvError::Empty) => Poll::Ready(None),
                Ok(Err(_)) | Err(TryRecvError::Closed) => {
                    Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpProtocolError)))
                }
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

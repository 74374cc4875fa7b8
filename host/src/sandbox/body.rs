//! The bodies that cross the sandbox: the client's request body, counted
//! against `max_body`, and the guest's response body, cut when the guest fails.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::oneshot::{self, error::TryRecvError};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::RunStats;
use super::run::Failure;

/// Most request-body bytes read and thrown away after a 413, so that the
/// client, still sending, reads its answer instead of a reset (a socket
/// closed with unread data sends RST, and the client's stack may discard
/// the 413 it had received). nginx's lingering close does the same, bounded
/// in time; this bounds bytes too: past them the connection is closed.
pub const LINGER_BYTES: u64 = 16 << 20;

/// How long a 413's lingering read lasts at most, and how long it waits for
/// each next piece of the body.
pub const LINGER_TIME: Duration = Duration::from_secs(5);

/// Reads and discards what is left of a refused request body, on a task of
/// its own, up to [`LINGER_BYTES`] and [`LINGER_TIME`]; then drops it,
/// which closes the connection unless the body ended. The task's handle
/// tells when it is done.
pub fn linger<B>(body: B) -> tokio::task::JoinHandle<()>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
{
    let deadline = tokio::time::Instant::now() + LINGER_TIME;
    tokio::spawn(async move {
        let mut body = body;
        let mut read = 0u64;
        while read <= LINGER_BYTES {
            let next = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx));
            match tokio::time::timeout_at(deadline, next).await {
                Ok(Some(Ok(frame))) => {
                    read += frame.data_ref().map_or(0, |data| data.len() as u64);
                }
                Ok(None | Some(Err(_))) | Err(_) => break,
            }
        }
    })
}

/// Whether a request body passed its limit, and the [`linger`] reading
/// what the client still sends of it.
#[derive(Default)]
pub(super) struct Overflow {
    exceeded: AtomicBool,
    linger: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Overflow {
    /// The request body passed its limit.
    pub(super) fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Acquire)
    }

    /// Refuses the rest of `body`: [`linger`]s over it.
    fn refuse<B>(&self, body: B)
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
    {
        let linger = linger(body);
        *self.linger.lock().unwrap_or_else(PoisonError::into_inner) = Some(linger);
        self.exceeded.store(true, Ordering::Release);
    }

    /// Ready once no refused request body is being read.
    fn poll_drained(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut linger = self.linger.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = linger.as_mut() {
            // A linger that failed (panicked) ends the wait all the same.
            let _ = ready!(Pin::new(task).poll(cx));
            *linger = None;
        }
        Poll::Ready(())
    }
}

/// A guest's response body that, when it fails after the request body
/// passed its limit, holds its failure until the rest of the request body
/// is read and discarded. The failure closes the connection to cut the
/// response, and a socket closed with request data unread sends RST: the
/// client's stack may then discard the part of the response (its head
/// included) that it has received but not yet read.
pub(super) struct CutAfterDrain<B> {
    body: B,
    overflow: Arc<Overflow>,
    failed: Option<wasmtime_wasi_http::Error>,
}

impl<B> CutAfterDrain<B> {
    pub(super) fn new(body: B, overflow: Arc<Overflow>) -> CutAfterDrain<B> {
        CutAfterDrain {
            body,
            overflow,
            failed: None,
        }
    }
}

impl<B> Body for CutAfterDrain<B>
where
    B: Body<Data = Bytes, Error = wasmtime_wasi_http::Error> + Unpin,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.failed.is_none() {
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Err(error)) if self.overflow.exceeded() => self.failed = Some(error),
                other => return Poll::Ready(other),
            }
        }
        ready!(self.overflow.poll_drained(cx));
        Poll::Ready(self.failed.take().map(Err))
    }

    fn is_end_stream(&self) -> bool {
        self.failed.is_none() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The client's request body, failing once more than `limit` bytes arrive,
/// whatever `content-length` said (a chunked upload is counted as it streams).
/// The rest of a body over the limit is [lingered](linger) over.
pub(super) struct LimitedBody<B> {
    /// `None` once over the limit: handed to [`linger`].
    body: Option<B>,
    limit: u64,
    read: u64,
    overflow: Arc<Overflow>,
    stats: Arc<RunStats>,
}

impl<B> LimitedBody<B> {
    /// `overflow` learns when the body passes `limit`; what is read is
    /// counted in `stats`.
    pub(super) fn new(body: B, limit: u64, overflow: Arc<Overflow>, stats: Arc<RunStats>) -> Self {
        LimitedBody {
            body: Some(body),
            limit,
            read: 0,
            overflow,
            stats,
        }
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let Some(body) = self.body.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = match Pin::new(body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = frame.data_ref() {
            self.read += data.len() as u64;
            self.stats.add_body_read(data.len() as u64);
            if self.read > self.limit {
                if let Some(body) = self.body.take() {
                    self.overflow.refuse(body);
                }
                let read = self.read;
                return Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpRequestBodySize(
                    Some(read),
                ))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// A guest's response body that ends in an error, not cleanly, when the
/// guest failed before finishing it (trap, timeout, body limit). Dropped
/// before its end (the client left, or a `HEAD` answer), it stops the
/// guest, whose instance slot is then free for others.
/// wasmtime-wasi-http ends the body of a guest that trapped as if it were
/// complete, which would hand the client a truncated response that looks
/// whole; an error makes hyper cut it (HTTP/1.1: no last chunk, connection
/// closed; HTTP/2: stream reset).
pub(super) struct GuestBody {
    body: HyperOutgoingBody,
    outcome: oneshot::Receiver<Result<(), Failure>>,
    guest: StopOnDrop,
    /// The length the guest declared, and what of it was sent: hyper stops
    /// polling once a declared length is sent, so the end is not seen.
    length: Option<u64>,
    sent: u64,
}

impl GuestBody {
    pub(super) fn new(
        body: HyperOutgoingBody,
        outcome: oneshot::Receiver<Result<(), Failure>>,
        guest: StopOnDrop,
    ) -> GuestBody {
        let length = body.size_hint().exact();
        GuestBody {
            body,
            outcome,
            guest,
            length,
            sent: 0,
        }
    }
}

impl Drop for GuestBody {
    fn drop(&mut self) {
        if self.length.is_some_and(|length| self.sent >= length) {
            self.guest.let_go();
        }
    }
}

/// Stops a guest's task when dropped, unless let go first.
pub(super) struct StopOnDrop(pub(super) Option<tokio::task::AbortHandle>);

impl StopOnDrop {
    /// The guest may run on to its end (bounded by its timeout).
    pub(super) fn let_go(&mut self) {
        self.0 = None;
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(guest) = self.0.take() {
            guest.abort();
        }
    }
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
                Ok(Ok(())) | Err(TryRecvError::Empty) => {
                    // The body is whole; what the guest does after it
                    // (post-response work) is its own, within its timeout.
                    self.guest.let_go();
                    Poll::Ready(None)
                }
                Ok(Err(_)) | Err(TryRecvError::Closed) => {
                    Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpProtocolError)))
                }
            },
            Poll::Ready(Some(Ok(frame))) => {
                self.sent += frame.data_ref().map_or(0, |data| data.len() as u64);
                Poll::Ready(Some(Ok(frame)))
            }
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

//! A guest's response body on its way to the client and into the cache.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::{Fill, ResponseHead};

/// Passes the guest's body through, keeping a copy; stores the response
/// when the body has ended whole within the entry limit. A body that fails
/// (the guest trapped or timed out after its headers), grows past the
/// limit, has trailers, or is dropped early (the client left) is not
/// stored, and the [`Fill`] it held wakes the requests waiting on it.
pub struct Filling {
    body: HyperOutgoingBody,
    /// `None` once the copy is abandoned or stored.
    keeping: Option<Keeping>,
}

struct Keeping {
    fill: Fill,
    /// The request's headers, for the response's `Vary`.
    request: HeaderMap,
    head: ResponseHead,
    chunks: Vec<Bytes>,
    size: u64,
    limit: u64,
    /// The response's `content-length`: hyper may stop polling once it
    /// has sent that much, before the body says it has ended.
    length: Option<u64>,
}

impl Filling {
    pub(super) fn new(
        body: HyperOutgoingBody,
        fill: Fill,
        request: HeaderMap,
        head: ResponseHead,
        limit: u64,
    ) -> Filling {
        let length = super::policy::declared_length(&head.headers);
        Filling {
            body,
            keeping: Some(Keeping {
                fill,
                request,
                head,
                chunks: Vec::new(),
                size: 0,
                limit,
                length,
            }),
        }
    }

    /// Stores the copy: the body has ended whole.
    fn finish(&mut self) {
        let Some(keeping) = self.keeping.take() else {
            return;
        };
        let body = match keeping.chunks.len() {
            0 => Bytes::new(),
            1 => keeping.chunks.into_iter().next().unwrap_or_default(),
            _ => {
                let mut whole = BytesMut::with_capacity(keeping.size as usize);
                for chunk in keeping.chunks {
                    whole.extend_from_slice(&chunk);
                }
                whole.freeze()
            }
        };
        let cache = keeping.fill.cache.clone();
        cache.store(&keeping.fill, &keeping.request, keeping.head, body);
    }
}

impl Body for Filling {
    type Data = Bytes;
    type Error = <HyperOutgoingBody as Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(keeping) = &mut this.keeping {
                    match frame.data_ref() {
                        Some(data) if keeping.size + data.len() as u64 <= keeping.limit => {
                            keeping.size += data.len() as u64;
                            keeping.chunks.push(data.clone());
                        }
                        // Too large to keep, or trailers: served, not stored,
                        // and not worth waiting for next time.
                        _ => {
                            if let Some(keeping) = this.keeping.take() {
                                keeping.fill.cache.pass(&keeping.fill.key);
                            }
                        }
                    }
                }
                let whole = this.keeping.as_ref().is_some_and(|keeping| {
                    keeping.length.is_some_and(|length| keeping.size >= length)
                });
                if whole || this.body.is_end_stream() {
                    this.finish();
                }
            }
            Poll::Ready(Some(Err(_))) => this.keeping = None,
            Poll::Ready(None) => this.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

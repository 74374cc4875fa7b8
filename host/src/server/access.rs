//! The access log and the request metrics: one line (`wedge::access`) and
//! one count per request, when its response has been sent, so that bytes
//! and duration are the whole response's, streamed bodies included.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::Method;
use http_body::{Body, Frame, SizeHint};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::metrics::{Metrics, RequestRecord};
use crate::response_cache::CacheStatus;
use crate::sandbox::RunStats;

/// What is known of a request before its response is sent.
pub struct Exchange {
    /// Counted here when the response ends.
    pub metrics: Arc<Metrics>,
    /// The request id.
    pub id: String,
    /// The client, as `wedge-client-addr` gives it.
    pub client: String,
    /// The method as received.
    pub method: Method,
    /// The path, without the query (which may hold secrets).
    pub path: String,
    /// When the request arrived.
    pub started: Instant,
    /// The matched pattern, if any.
    pub route: Option<Arc<str>>,
    /// The status sent.
    pub status: u16,
    /// What the guest's run measured, if one ran.
    pub stats: Arc<RunStats>,
    /// What the response cache did, if the request reached it.
    pub cache: Option<CacheStatus>,
}

/// A response body that logs and counts its exchange when it is done:
/// at its end, or when hyper drops it (the client left, or the body failed).
pub struct Metered {
    body: HyperOutgoingBody,
    exchange: Option<Exchange>,
    sent: u64,
    /// When the last frame was sent; `None` while unfinished.
    ended: Option<Instant>,
    /// Whether the body failed (the response was cut).
    failed: bool,
    /// The response's `content-length`: hyper may stop polling once it is sent.
    length: Option<u64>,
}

impl Metered {
    /// `body`, of `length` bytes if the response declares it, to be
    /// logged with `exchange`.
    pub fn new(body: HyperOutgoingBody, length: Option<u64>, exchange: Exchange) -> Metered {
        Metered {
            body,
            exchange: Some(exchange),
            sent: 0,
            ended: None,
            failed: false,
            length,
        }
    }

    /// Logs and counts the exchange, once.
    fn finish(&mut self) {
        let Some(exchange) = self.exchange.take() else {
            return;
        };
        let duration = self.ended.unwrap_or_else(Instant::now) - exchange.started;
        let whole = self.ended.is_some()
            || self.body.is_end_stream()
            || self.length.is_some_and(|length| self.sent >= length);
        let complete = whole && !self.failed;
        let instantiation = exchange.stats.instantiation();
        let bytes_in = exchange.stats.body_read();
        tracing::info!(
            target: crate::log_format::ACCESS_TARGET,
            id = %exchange.id,
            client = %exchange.client,
            method = %exchange.method,
            path = %exchange.path,
            route = %exchange.route.as_deref().unwrap_or("-"),
            status = exchange.status,
            bytes_in,
            bytes_out = self.sent,
            ms = millis(duration),
            instantiate_ms = instantiation.map_or(0.0, millis),
            cache = %exchange.cache.map_or("-", CacheStatus::as_str),
            complete,
        );
        exchange.metrics.record_request(&RequestRecord {
            route: exchange.route.as_ref(),
            status: exchange.status,
            duration,
            instantiation,
            bytes_in,
            bytes_out: self.sent,
            cache: exchange.cache,
        });
    }
}

/// Milliseconds to the microsecond: a number in JSON, short in text.
fn millis(duration: std::time::Duration) -> f64 {
    (duration.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Body for Metered {
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
                if let Some(data) = frame.data_ref() {
                    this.sent += data.len() as u64;
                }
                if this.body.is_end_stream() {
                    this.ended = Some(Instant::now());
                }
            }
            Poll::Ready(Some(Err(_))) => {
                this.failed = true;
                this.ended = Some(Instant::now());
            }
            Poll::Ready(None) => this.ended = Some(Instant::now()),
            Poll::Pending => {}
        }
        if this.ended.is_some() {
            this.finish();
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

//! One client connection, from accept to close, with the time limits that
//! keep a silent or slow client from holding a connection slot.
//!
//! hyper's own `header_read_timeout` starts only once hyper-util has told
//! HTTP/1 from HTTP/2, and HTTP/2 has no idle cut at all, so a socket that
//! sends nothing, half an HTTP/2 preface, a TLS handshake and then silence,
//! or an HTTP/2 peer that answers pings but never opens a stream would each
//! hold a slot for ever. Here one clock covers all of them:
//!
//! - from accept to the first complete request head (TLS handshake,
//!   protocol detection, HTTP/1 head or first HTTP/2 stream), at most the
//!   header timeout;
//! - after that, a connection with no request in flight for the idle
//!   timeout is closed (HTTP/1 keep-alive and HTTP/2 alike).
//!
//! The public listener and the admin listener both serve through
//! [`Connections::spawn`], each with its own connection cap.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

/// How long a connection may take to deliver its first request head, and
/// how long it may then sit with no request in flight.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    /// From accept to the first complete request head.
    pub(crate) first_request: Duration,
    /// With no request in flight, after the last response.
    pub(crate) idle: Duration,
}

/// How one listener serves its connections.
pub(crate) struct Connections {
    /// HTTP/1.1 and HTTP/2 settings.
    pub(crate) builder: auto::Builder<TokioExecutor>,
    /// HTTPS: every connection starts with this handshake.
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    /// When a connection is closed for silence.
    pub(crate) deadlines: Deadlines,
}

impl Connections {
    /// Serves `stream` on a task of its own: TLS first if configured, then
    /// HTTP/1.1 or HTTP/2, each request answered by `handler`. The
    /// connection is closed when its deadlines pass; `permit` (its
    /// connection slot) is held until it is; `watcher` drains it at
    /// shutdown.
    pub(crate) fn spawn<H, F, B>(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        handler: H,
        watcher: Watcher,
        permit: OwnedSemaphorePermit,
    ) where
        H: Fn(hyper::Request<Incoming>) -> F + Send + Sync + 'static,
        F: Future<Output = hyper::Response<B>> + Send + 'static,
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%peer, "cannot set TCP_NODELAY: {error}");
        }
        let (builder, tls, deadlines) = (self.builder.clone(), self.tls.clone(), self.deadlines);
        tokio::spawn(async move {
            let first_request = Instant::now() + deadlines.first_request;
            let idle = deadlines.idle;
            let ended = match tls {
                None => serve(&builder, stream, first_request, idle, handler, watcher).await,
                Some(tls) => match tokio::time::timeout_at(first_request, tls.accept(stream)).await
                {
                    Ok(Ok(stream)) => {
                        serve(&builder, stream, first_request, idle, handler, watcher).await
                    }
                    Ok(Err(error)) => Ended::Failed(format!("TLS handshake failed: {error}")),
                    Err(_) => Ended::NoRequest,
                },
            };
            match ended {
                Ended::Done => {}
                Ended::Failed(error) => tracing::debug!(%peer, "connection ended: {error}"),
                Ended::NoRequest => tracing::debug!(
                    %peer,
                    "connection closed: no request within {:?}",
                    deadlines.first_request
                ),
                Ended::Idle => tracing::debug!(%peer, "connection closed: idle for {idle:?}"),
            }
            drop(permit);
        });
    }
}

/// How a connection ended.
enum Ended {
    /// The client closed it, or it was drained at shutdown.
    Done,
    /// An I/O or protocol error.
    Failed(String),
    /// No complete request head arrived in time.
    NoRequest,
    /// No request in flight for the idle timeout.
    Idle,
}

async fn serve<I, H, F, B>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    first_request: Instant,
    idle: Duration,
    handler: H,
    watcher: Watcher,
) -> Ended
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(hyper::Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = hyper::Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let activity = Arc::new(Activity::default());
    let service = service_fn({
        let activity = activity.clone();
        move |request| {
            let guard = activity.begin();
            let response = handler(request);
            async move {
                let response = response.await;
                Ok::<_, Infallible>(response.map(|body| Tracked {
                    body,
                    _guard: guard,
                }))
            }
        }
    });
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .into_owned();
    let connection = watcher.watch(connection);
    tokio::pin!(connection);
    let mut wake_at = first_request;
    loop {
        tokio::select! {
            result = &mut connection => {
                return match result {
                    Ok(()) => Ended::Done,
                    Err(error) => Ended::Failed(error.to_string()),
                };
            }
            () = tokio::time::sleep_until(wake_at) => {
                match activity.next_check(first_request, idle, Instant::now()) {
                    Check::Expired if activity.requests() == 0 => return Ended::NoRequest,
                    Check::Expired => return Ended::Idle,
                    Check::At(next) => wake_at = next,
                }
            }
        }
    }
}

/// What a connection's requests are doing, kept cheap: the request path
/// only bumps counters; the connection's timer reads them when it fires.
#[derive(Debug)]
struct Activity {
    /// Requests whose head arrived and whose response body is not yet done.
    in_flight: AtomicUsize,
    /// Requests begun so far.
    requests: AtomicU64,
    /// When the last request ended, as nanoseconds after `epoch`.
    last_end: AtomicU64,
    epoch: Instant,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            last_end: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

/// What the connection's timer should do next.
#[derive(Debug, PartialEq, Eq)]
enum Check {
    /// Close the connection.
    Expired,
    /// Look again then.
    At(Instant),
}

impl Activity {
    fn begin(self: &Arc<Self>) -> ActiveRequest {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        ActiveRequest(self.clone())
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn next_check(&self, first_request: Instant, idle: Duration, now: Instant) -> Check {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            // A request bounded by its own route's timeout: look again later.
            return Check::At(now + idle);
        }
        let due = if self.requests() == 0 {
            first_request
        } else {
            self.epoch + Duration::from_nanos(self.last_end.load(Ordering::Acquire)) + idle
        };
        if due <= now {
            Check::Expired
        } else {
            Check::At(due)
        }
    }
}

/// One request in flight on a connection, until its response body is done
/// (or dropped: the client left).
struct ActiveRequest(Arc<Activity>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        let activity = &self.0;
        let since = u64::try_from(activity.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        activity.last_end.store(since, Ordering::Release);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in flight until hyper
/// is done with it.
struct Tracked<B> {
    body: B,
    _guard: ActiveRequest,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_without_a_request_expires_at_its_first_deadline() {
        let activity = Arc::new(Activity::default());
        let now = Instant::now();
        let first = now + Duration::from_secs(1);
        let idle = Duration::from_secs(5);
        assert_eq!(activity.next_check(first, idle, now), Check::At(first));
        assert_eq!(activity.next_check(first, idle, first), Check::Expired);
    }

    #[test]
    fn a_request_in_flight_keeps_its_connection_and_idleness_counts_from_its_end() {
        let activity = Arc::new(Activity::default());
        let idle = Duration::from_secs(5);
        let first = Instant::now() + Duration::from_millis(1);
        let request = activity.begin();
        let later = first + Duration::from_secs(60);
        assert_eq!(
            activity.next_check(first, idle, later),
            Check::At(later + idle)
        );
        drop(request);
        let now = Instant::now();
        match activity.next_check(first, idle, now) {
            Check::At(due) => assert!(due > now && due <= now + idle, "{due:?}"),
            Check::Expired => panic!("expired right after a response"),
        }
        assert_eq!(
            activity.next_check(first, idle, now + idle + idle),
            Check::Expired
        );
    }
}

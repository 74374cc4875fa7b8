//! Sending an allowed request: resolve, guard, connect, TLS, HTTP/1.1.
//!
//! Adapted from `wasmtime_wasi_http::default_send_request`, with the allow
//! list checked first, the SSRF guard between resolving and connecting, the
//! route's cap on open connections and the server's cap on lookups, and
//! the whole exchange bounded by the route's timeout.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Interval, Sleep};
use tokio_rustls::rustls;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

use super::AllowList;
use super::address::{address_allowed, classify};
use super::entry::{OutboundHost, OutboundScheme, RequestTarget, TargetError, TargetHost};
use super::limits::{ConnectionCap, lookup};

/// A connected stream, plain TCP or TLS over it.
trait Connection: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T> Connection for T where T: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

type Sender = hyper::client::conn::http1::SendRequest<WasiBody>;
type Driver = hyper::client::conn::http1::Connection<TokioIo<Box<dyn Connection>>, WasiBody>;

/// Sends a guest's outgoing request if `allow` lets it, for the route `route`.
///
/// Denied (logged, naming the route and the entry to add; the guest sees
/// `HTTP-request-denied`): a target no entry matches, a URI with userinfo,
/// and a host whose every resolved address the SSRF guard refuses
/// ([`address_allowed`]). Otherwise connects to the first allowed address
/// that accepts, with TLS for `https` (webpki roots, SNI = the URI's host),
/// and speaks HTTP/1.1. Redirects are returned to the guest, not followed.
///
/// An allowed request first waits for room under the route's
/// `connections` cap (until its connect deadline, then
/// `ConnectionLimitReached`); the connection counts until it is closed:
/// the response body read or dropped, or the deadline passed.
///
/// Everything is bounded by `timeout`, the route's timeout, counted from
/// this call: connecting (with the guest's `connect_timeout`, if shorter)
/// fails with `ConnectionTimeout`; waiting for the response head (with
/// `first_byte_timeout`), reading its body (with `between_bytes_timeout`)
/// and the connection driver fail with `ConnectionReadTimeout`.
///
/// Returns the response and the connection driver, which must be polled
/// (spawned) for the body to arrive, as with `default_send_request`.
///
/// A request that fails before it is sent (denied, not resolved, refused,
/// timed out connecting) still has its body read, and dropped, until the
/// guest finishes it or the route's deadline: a guest writing into a body
/// the host had closed would get "connection reset" from its write, and
/// wstd's client reports that instead of the real error code.
pub async fn send_request(
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    allow: &AllowList,
    connections: &ConnectionCap,
    route: &str,
    timeout: Duration,
) -> Result<
    (
        http::Response<WasiBody>,
        impl Future<Output = Result<(), Error>> + Send + use<>,
    ),
    Error,
> {
    let deadline = deadline_after(Instant::now(), timeout);
    let options = options.unwrap_or_default();
    let (mut parts, body) = request.into_parts();
    let opened = open(&mut parts, &options, allow, connections, route, deadline).await;
    let (sender, driver, permit) = match opened {
        Ok(connection) => connection,
        Err(error) => {
            discard(body, deadline);
            return Err(error);
        }
    };
    let request = http::Request::from_parts(parts, body);
    exchange(sender, driver, permit, request, &options, deadline).await
}

/// Checks the target, waits for room under the route's cap, connects, and
/// rewrites the URI for the wire; the permit is the connection's room.
async fn open(
    parts: &mut http::request::Parts,
    options: &RequestOptions,
    allow: &AllowList,
    connections: &ConnectionCap,
    route: &str,
    deadline: Instant,
) -> Result<(Sender, Driver, OwnedSemaphorePermit), Error> {
    let (target, entry) = allowed_target(&parts.uri, allow, route)?;
    let connect_deadline = phase_deadline(deadline, options.connect_timeout);
    let permit = connections.acquire(connect_deadline, route).await?;
    let connecting = connect(&target, entry, route, connect_deadline);
    let (sender, driver) = tokio::time::timeout_at(connect_deadline, connecting)
        .await
        .map_err(|_| Error::ConnectionTimeout)??;
    // The request holds the scheme and authority, but on the wire they belong
    // only in requests to a proxy; hyper does not strip them for us.
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = http::Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    Ok((sender, driver, permit))
}

/// Reads `body` to its end (or `deadline`) and drops what it reads.
fn discard(mut body: WasiBody, deadline: Instant) {
    tokio::spawn(tokio::time::timeout_at(deadline, async move {
        while let Some(Ok(_)) = body.frame().await {}
    }));
}

/// The request's target and the entry allowing it; a denial is logged.
fn allowed_target<'a>(
    uri: &http::Uri,
    allow: &'a AllowList,
    route: &str,
) -> Result<(RequestTarget, &'a OutboundHost), Error> {
    let target = match RequestTarget::from_uri(uri) {
        Ok(target) => target,
        Err(TargetError::NoAuthority) => return Err(Error::HttpRequestUriInvalid),
        Err(TargetError::UnsupportedScheme) => {
            tracing::warn!(
                route,
                scheme = uri.scheme_str().unwrap_or(""),
                "outbound request denied: only http and https requests can be allowed"
            );
            return Err(Error::HttpRequestDenied);
        }
        Err(TargetError::Userinfo) => {
            // The userinfo itself is not logged: it may be a credential.
            tracing::warn!(
                route,
                "outbound request denied: its URI has userinfo (`user@host`), which is never allowed"
            );
            return Err(Error::HttpRequestDenied);
        }
    };
    let Some(entry) = allow.matching(&target) else {
        tracing::warn!(
            route,
            denied = %target,
            "outbound request denied: add \"{}\" to `allowed_outbound_hosts` in the route's sidecar \
             to allow it",
            target.suggested_entry()
        );
        return Err(Error::HttpRequestDenied);
    };
    Ok((target, entry))
}

/// Resolves, applies the SSRF guard, connects, does TLS for `https`, and
/// performs the HTTP/1.1 handshake.
async fn connect(
    target: &RequestTarget,
    entry: &OutboundHost,
    route: &str,
    deadline: Instant,
) -> Result<(Sender, Driver), Error> {
    let addrs = resolve(target, deadline).await?;
    let (allowed, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = addrs
        .into_iter()
        .partition(|addr| address_allowed(entry, addr.ip()));
    if !refused.is_empty() {
        let refused: Vec<String> = refused
            .iter()
            .map(|addr| format!("{} ({:?})", addr.ip(), classify(addr.ip())))
            .collect();
        tracing::warn!(
            route,
            target = %target,
            entry = %entry,
            refused = ?refused,
            "outbound addresses refused by the SSRF guard: link-local is never allowed, and \
             loopback or private only when the entry is that IP literal (or localhost)"
        );
    }
    if allowed.is_empty() {
        tracing::warn!(
            route,
            target = %target,
            "outbound request denied: every address its host resolved to was refused (SSRF guard)"
        );
        return Err(Error::HttpRequestDenied);
    }

    let tcp = connect_first(&allowed).await?;
    let stream: Box<dyn Connection> = match target.scheme {
        OutboundScheme::Http => Box::new(tcp),
        OutboundScheme::Https => Box::new(tls_connect(target, tcp).await?),
    };
    let (sender, driver) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await?;
    Ok((sender, driver))
}

/// The addresses to try: an IP literal as is, a name through the resolver
/// (within the server's cap on lookups at once).
async fn resolve(target: &RequestTarget, deadline: Instant) -> Result<Vec<SocketAddr>, Error> {
    let name = match &target.host {
        TargetHost::Ip(ip) => return Ok(vec![SocketAddr::new(*ip, target.port)]),
        TargetHost::Name(name) => name.as_str(),
    };
    let addrs = lookup(name, target.port, deadline).await?;
    if addrs.is_empty() {
        return Err(Error::DestinationNotFound);
    }
    Ok(addrs)
}

/// Tries each address in order, like `TcpStream::connect` does for a name.
async fn connect_first(addrs: &[SocketAddr]) -> Result<TcpStream, Error> {
    let mut last_error = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(err) => last_error = Some(err),
        }
    }
    Err(Error::Connect(last_error.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no address to connect to")
    })))
}

/// TLS with the webpki roots; SNI and certificate name are the URI's host.
async fn tls_connect(
    target: &RequestTarget,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Error> {
    let server_name = match &target.host {
        TargetHost::Ip(ip) => rustls::pki_types::ServerName::from(*ip),
        TargetHost::Name(name) => rustls::pki_types::ServerName::try_from(name.clone())?,
    };
    // Built per request, as `default_send_request` does: the roots are
    // borrowed statics, so this is cheap, and no process-wide state is kept.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| Error::InternalError(Some(format!("TLS configuration: {err}"))))?
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        })
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .map_err(Error::Tls)
}

/// Sends the request and waits for the response head while driving the
/// connection; returns the response and what is left of the driver, which
/// holds the connection's `permit` until the connection is closed.
async fn exchange(
    mut sender: Sender,
    driver: Driver,
    permit: OwnedSemaphorePermit,
    request: http::Request<WasiBody>,
    options: &RequestOptions,
    deadline: Instant,
) -> Result<
    (
        http::Response<WasiBody>,
        impl Future<Output = Result<(), Error>> + Send + use<>,
    ),
    Error,
> {
    let head_deadline = phase_deadline(deadline, options.first_byte_timeout);
    let between_bytes = options.between_bytes_timeout;
    let send = async move {
        let response = tokio::time::timeout_at(head_deadline, sender.send_request(request))
            .await
            .map_err(|_| Error::ConnectionReadTimeout)??;
        Ok::<_, Error>(
            response.map(|incoming| ResponseBody::new(incoming, between_bytes, deadline)),
        )
    };
    let mut send = std::pin::pin!(send);
    let mut driver = Some(driver);
    // Wait for the response while driving the connection's I/O.
    let response = std::future::poll_fn(|cx| match send.as_mut().poll(cx) {
        Poll::Ready(result) => Poll::Ready(result),
        Poll::Pending => {
            let Some(running) = driver.as_mut() else {
                return Poll::Pending;
            };
            let finished = ready!(Pin::new(running).poll(cx));
            driver = None;
            match finished {
                Ok(()) => send.as_mut().poll(cx),
                Err(err) => Poll::Ready(Err(Error::from(err))),
            }
        }
    })
    .await?;
    let driver = async move {
        let _permit = permit;
        let Some(driver) = driver else {
            return Ok(());
        };
        match tokio::time::timeout_at(deadline, driver).await {
            Err(_) => Err(Error::ConnectionReadTimeout),
            Ok(Err(err)) if err.is_timeout() => Err(Error::HttpResponseTimeout),
            Ok(Err(err)) => Err(Error::from(err)),
            Ok(Ok(())) => Ok(()),
        }
    };
    Ok((response.map(BodyExt::boxed_unsync), driver))
}

/// A response body that fails with `ConnectionReadTimeout` when a frame is
/// later than `between_bytes_timeout` or the route's deadline passes.
struct ResponseBody {
    incoming: hyper::body::Incoming,
    between_bytes: Option<Interval>,
    deadline: Pin<Box<Sleep>>,
}

impl ResponseBody {
    fn new(
        incoming: hyper::body::Incoming,
        between_bytes: Option<Duration>,
        deadline: Instant,
    ) -> Self {
        let between_bytes = between_bytes.map(|period| {
            // Tokio panics on a zero-period interval; 1ns is as good as zero.
            let mut interval = tokio::time::interval(period.max(Duration::from_nanos(1)));
            interval.reset();
            interval
        });
        Self {
            incoming,
            between_bytes,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        // The deadline first: past it the driver is gone too, and the guest
        // should learn why rather than see a closed connection.
        if this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Error::ConnectionReadTimeout)));
        }
        match Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(err))) if err.is_timeout() => {
                Poll::Ready(Some(Err(Error::HttpResponseTimeout)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(Error::from(err)))),
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(interval) = &mut this.between_bytes {
                    interval.reset();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                let late = this
                    .between_bytes
                    .as_mut()
                    .is_some_and(|interval| interval.poll_tick(cx).is_ready());
                if late {
                    Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}

/// `now + timeout`, or far enough ahead to mean "never" if that overflows.
fn deadline_after(now: Instant, timeout: Duration) -> Instant {
    /// About 30 years: never, for a request.
    const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);
    now.checked_add(timeout)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

/// The earlier of the route's deadline and a guest-requested phase timeout.
fn phase_deadline(deadline: Instant, phase: Option<Duration>) -> Instant {
    phase.map_or(deadline, |phase| {
        deadline.min(deadline_after(Instant::now(), phase))
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// Generous: these tests assert that a limit fires, not how fast.
    const TEST_TIMEOUT: Duration = Duration::from_secs(10);
    const ROUTE: &str = "/api/test";

    /// A loopback server that reads each request head, writes `reply`, and
    /// holds the connection open; with the number of connections accepted.
    async fn server(reply: &'static [u8]) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    socket.write_all(reply).await.unwrap();
                    tokio::time::sleep(Duration::from_secs(60)).await;
                });
            }
        });
        (addr, accepted)
    }

    fn allow(entry: String) -> AllowList {
        AllowList::parse(&[entry]).unwrap()
    }

    fn get(uri: &str) -> http::Request<WasiBody> {
        let body = http_body_util::Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync();
        http::Request::get(uri).body(body).unwrap()
    }

    async fn send(
        uri: &str,
        allow: &AllowList,
        timeout: Duration,
    ) -> Result<http::Response<WasiBody>, Error> {
        let cap = ConnectionCap::default();
        let (response, driver) = send_request(get(uri), None, allow, &cap, ROUTE, timeout).await?;
        tokio::spawn(driver);
        Ok(response)
    }

    async fn body_text(response: http::Response<WasiBody>) -> Result<String, Error> {
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok(String::from_utf8(bytes.to_vec()).unwrap())
    }

    const HELLO: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";

    #[tokio::test]
    async fn an_allowed_ip_literal_reaches_the_loopback_server() {
        let (addr, _) = server(HELLO).await;
        let allow = allow(format!("http://127.0.0.1:{}", addr.port()));
        let uri = format!("http://127.0.0.1:{}/hello?x=1", addr.port());
        let response = send(&uri, &allow, TEST_TIMEOUT).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
        assert_eq!(body_text(response).await.unwrap(), "hello");
    }

    #[tokio::test]
    async fn a_localhost_entry_reaches_the_loopback_server() {
        // `localhost` may resolve to `::1` first, where nothing listens: the
        // next allowed address is tried.
        let (addr, accepted) = server(HELLO).await;
        let allow = allow("http://localhost:*".to_owned());
        let uri = format!("http://localhost:{}/", addr.port());
        let response = send(&uri, &allow, TEST_TIMEOUT).await.unwrap();
        assert_eq!(body_text(response).await.unwrap(), "hello");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn denied_requests_never_connect() {
        let (addr, accepted) = server(HELLO).await;
        let port = addr.port();
        let cases = [
            // entry, request
            (
                format!("http://127.0.0.1:{}", port.wrapping_add(1)),
                format!("http://127.0.0.1:{port}/"),
            ),
            (
                format!("https://127.0.0.1:{port}"),
                format!("http://127.0.0.1:{port}/"),
            ),
            (
                format!("http://127.0.0.1:{port}"),
                format!("http://user@127.0.0.1:{port}/"),
            ),
            (
                format!("http://127.0.0.1:{port}"),
                format!("http://127.1:{port}/"),
            ),
            (
                format!("http://127.0.0.1:{port}"),
                format!("http://localhost:{port}/"),
            ),
            // Listed literally, so matched, but `127.1` is a name that
            // resolves to loopback: the SSRF guard refuses it.
            (
                format!("http://127.1:{port}"),
                format!("http://127.1:{port}/"),
            ),
        ];
        for (entry, uri) in &cases {
            let result = send(uri, &allow(entry.clone()), TEST_TIMEOUT).await;
            assert!(
                matches!(result, Err(Error::HttpRequestDenied)),
                "{entry} vs {uri}: {result:?}"
            );
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_silent_server_runs_into_the_route_timeout() {
        let (addr, _) = server(b"").await;
        let allow = allow(format!("http://127.0.0.1:{}", addr.port()));
        let uri = format!("http://127.0.0.1:{}/", addr.port());
        let result = send(&uri, &allow, Duration::from_millis(300)).await;
        assert!(
            matches!(result, Err(Error::ConnectionReadTimeout)),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn a_shorter_first_byte_timeout_from_the_guest_wins() {
        let (addr, _) = server(b"").await;
        let allow = allow(format!("http://127.0.0.1:{}", addr.port()));
        let uri = format!("http://127.0.0.1:{}/", addr.port());
        let options = RequestOptions {
            first_byte_timeout: Some(Duration::from_millis(200)),
            ..RequestOptions::default()
        };
        let started = Instant::now();
        let cap = ConnectionCap::default();
        let result =
            send_request(get(&uri), Some(options), &allow, &cap, ROUTE, TEST_TIMEOUT).await;
        assert!(
            matches!(result, Err(Error::ConnectionReadTimeout)),
            "{:?}",
            result.err()
        );
        assert!(started.elapsed() < TEST_TIMEOUT);
    }

    #[tokio::test]
    async fn a_stalled_body_is_cut_at_the_route_deadline() {
        let (addr, _) = server(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nab").await;
        let allow = allow(format!("http://127.0.0.1:{}", addr.port()));
        let uri = format!("http://127.0.0.1:{}/", addr.port());
        let response = send(&uri, &allow, Duration::from_millis(500))
            .await
            .unwrap();
        let result = body_text(response).await;
        assert!(
            matches!(result, Err(Error::ConnectionReadTimeout)),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn a_stuck_tls_handshake_runs_into_the_connection_timeout() {
        // The server waits for an HTTP head a TLS client never sends.
        let (addr, accepted) = server(HELLO).await;
        let allow = allow(format!("https://127.0.0.1:{}", addr.port()));
        let uri = format!("https://127.0.0.1:{}/", addr.port());
        let result = send(&uri, &allow, Duration::from_millis(300)).await;
        assert!(
            matches!(result, Err(Error::ConnectionTimeout)),
            "{result:?}"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_counts_against_the_cap_until_it_closes() {
        // Half a body: the connection stays open until the body is dropped.
        let (addr, accepted) = server(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nab").await;
        let allow = allow(format!("http://127.0.0.1:{}", addr.port()));
        let uri = format!("http://127.0.0.1:{}/", addr.port());
        let cap = ConnectionCap::new(1);
        let first = send_request(get(&uri), None, &allow, &cap, ROUTE, TEST_TIMEOUT).await;
        let (response, driver) = first.unwrap();
        let driver = tokio::spawn(driver);
        assert_eq!(cap.open(), 1);
        // A second request waits for room until its deadline, and never
        // connects.
        let short = Duration::from_millis(300);
        let second = send_request(get(&uri), None, &allow, &cap, ROUTE, short).await;
        assert!(
            matches!(second, Err(Error::ConnectionLimitReached)),
            "{:?}",
            second.err()
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        // The guest drops the response: the connection closes, its room frees.
        drop(response);
        let closed = tokio::time::timeout(TEST_TIMEOUT, driver).await;
        assert!(closed.is_ok(), "the connection stayed open");
        assert_eq!(cap.open(), 0);
        let third = send_request(get(&uri), None, &allow, &cap, ROUTE, TEST_TIMEOUT).await;
        assert_eq!(third.unwrap().0.status(), http::StatusCode::OK);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_huge_route_timeout_means_never_rather_than_overflow() {
        let now = Instant::now();
        let deadline = deadline_after(now, Duration::MAX);
        assert!(deadline > now + Duration::from_secs(365 * 24 * 60 * 60));
    }
}

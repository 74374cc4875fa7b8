//! The request a WASI 0.2 handler receives and the responses its fetches
//! get, with bodies read frame by frame that wait without spinning.
//!
//! wstd 0.6.8 reads a request body through its reactor, and its reader stays
//! registered with the reactor after a read that found data without waiting.
//! While the handler then waits on something else (a full response stream, a
//! fetch, a timer) and request data is waiting, every `wasi:io/poll` the
//! reactor makes returns at once for that stale registration: the guest spins
//! on the CPU until the other thing is ready, which, for an echo to a client
//! that reads slowly, is as long as the client takes. This reader holds a
//! registration only while it waits.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use wasip2::http::types::{
    Fields, FutureTrailers, IncomingBody as WasiBody, IncomingRequest, IncomingResponse,
    Method as WasiMethod, Scheme as WasiScheme,
};
use wasip2::io::poll::Pollable;
use wasip2::io::streams::{InputStream, StreamError};
use wstd::http::body::{Frame, HttpBody, SizeHint};
use wstd::http::error::Context as _;
use wstd::http::{Body, Error};
use wstd::runtime::{AsyncPollable, Reactor, WaitFor};

/// Most bytes one read takes from the host (wstd's frame size).
const FRAME: u64 = 64 * 1024;

/// `incoming` as an `http` request whose body is an [`IncomingBody`].
pub(crate) fn request(incoming: IncomingRequest) -> Result<http::Request<Body>, Error> {
    let headers = header_map(incoming.headers()).context("the request's headers")?;
    let method = method(incoming.method())?;
    let mut uri = Uri::builder();
    if let Some(scheme) = incoming.scheme() {
        uri = uri.scheme(scheme_from(scheme)?);
    }
    if let Some(authority) = incoming.authority() {
        uri = uri.authority(Authority::try_from(authority).context("the request's authority")?);
    }
    if let Some(path) = incoming.path_with_query() {
        uri = uri.path_and_query(PathAndQuery::try_from(path).context("the request's path")?);
    }
    let uri = uri.build().context("the request's URI")?;
    let length = content_length(&headers).context("the request's content-length")?;
    let body = incoming
        .consume()
        .map_err(|()| Error::msg("the request's body was already taken"))?;
    let body = IncomingBody::new(body, length, "request")?;
    let mut request = http::Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from_http_body(body))?;
    *request.headers_mut() = headers;
    Ok(request)
}

/// `incoming` as an `http` response whose body is an [`IncomingBody`].
pub(crate) fn response(incoming: IncomingResponse) -> Result<http::Response<Body>, Error> {
    let headers = header_map(incoming.headers()).context("the response's headers")?;
    let status = StatusCode::from_u16(incoming.status()).context("the response's status")?;
    let length = content_length(&headers).context("the response's content-length")?;
    let body = incoming
        .consume()
        .map_err(|()| Error::msg("the response's body was already taken"))?;
    let mut response = http::Response::builder()
        .status(status)
        .body(Body::from_http_body(IncomingBody::new(
            body, length, "response",
        )?))?;
    *response.headers_mut() = headers;
    Ok(response)
}

/// The length `content-length` in `headers` gives, if it is there.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, Error> {
    let Some(value) = headers.get(CONTENT_LENGTH) else {
        return Ok(None);
    };
    let length = value.to_str().ok().and_then(|value| value.parse().ok());
    length
        .map(Some)
        .ok_or_else(|| Error::msg(format!("not a length: {value:?}")))
}

/// `fields` as a header map.
fn header_map(fields: Fields) -> Result<HeaderMap, Error> {
    let mut map = HeaderMap::new();
    for (name, value) in fields.entries() {
        let name = HeaderName::from_bytes(name.as_bytes())
            .with_context(|| format!("header name {name:?}"))?;
        let value =
            HeaderValue::from_bytes(&value).with_context(|| format!("value of header {name}"))?;
        map.append(name, value);
    }
    Ok(map)
}

fn method(method: WasiMethod) -> Result<Method, Error> {
    Ok(match method {
        WasiMethod::Get => Method::GET,
        WasiMethod::Head => Method::HEAD,
        WasiMethod::Post => Method::POST,
        WasiMethod::Put => Method::PUT,
        WasiMethod::Delete => Method::DELETE,
        WasiMethod::Connect => Method::CONNECT,
        WasiMethod::Options => Method::OPTIONS,
        WasiMethod::Trace => Method::TRACE,
        WasiMethod::Patch => Method::PATCH,
        WasiMethod::Other(other) => {
            Method::from_bytes(other.as_bytes()).with_context(|| format!("method {other:?}"))?
        }
    })
}

fn scheme_from(scheme: WasiScheme) -> Result<Scheme, Error> {
    Ok(match scheme {
        WasiScheme::Http => Scheme::HTTP,
        WasiScheme::Https => Scheme::HTTPS,
        WasiScheme::Other(other) => {
            Scheme::try_from(other.as_str()).with_context(|| format!("scheme {other:?}"))?
        }
    })
}

/// A `wasi:http` incoming body as an `http_body::Body`: its data in frames
/// of at most [`FRAME`] bytes, then its trailers if it has any.
pub(crate) struct IncomingBody {
    state: State,
    /// Bytes left by `content-length`, if it gave one.
    remaining: Option<u64>,
    /// Whose body it is (`request` or `response`), for its errors.
    of: &'static str,
}

enum State {
    /// Reading data. `ready` is dropped before `stream`, and `stream`
    /// before `body`, its parent.
    Data {
        ready: Readiness,
        stream: InputStream,
        body: WasiBody,
    },
    /// The data ended; waiting for the trailers.
    Trailers {
        ready: Readiness,
        trailers: FutureTrailers,
    },
    Done,
}

impl IncomingBody {
    /// Reads `body`, which `content-length` says is `length` bytes long,
    /// the body of the `of` (`request` or `response`).
    pub(crate) fn new(
        body: WasiBody,
        length: Option<u64>,
        of: &'static str,
    ) -> Result<IncomingBody, Error> {
        let stream = body
            .stream()
            .map_err(|()| Error::msg("the body's stream was already taken"))?;
        Ok(IncomingBody {
            state: State::Data {
                ready: Readiness::default(),
                stream,
                body,
            },
            remaining: length,
            of,
        })
    }
}

impl HttpBody for IncomingBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        loop {
            match &mut self.state {
                State::Data { ready, stream, .. } => match stream.read(FRAME) {
                    Ok(data) if data.is_empty() => {
                        if ready.poll(cx, || stream.subscribe()).is_pending() {
                            return Poll::Pending;
                        }
                    }
                    Ok(data) => {
                        ready.stop();
                        if let Some(remaining) = &mut self.remaining {
                            *remaining = remaining.saturating_sub(data.len() as u64);
                        }
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(data)))));
                    }
                    Err(StreamError::Closed) => {
                        let State::Data {
                            ready,
                            stream,
                            body,
                        } = std::mem::replace(&mut self.state, State::Done)
                        else {
                            unreachable!("matched above")
                        };
                        drop((ready, stream));
                        let trailers = WasiBody::finish(body);
                        self.state = State::Trailers {
                            ready: Readiness::default(),
                            trailers,
                        };
                    }
                    Err(StreamError::LastOperationFailed(error)) => {
                        self.state = State::Done;
                        return Poll::Ready(Some(Err(Error::msg(error.to_debug_string())
                            .context(format!("reading the {} body", self.of)))));
                    }
                },
                State::Trailers { ready, trailers } => {
                    let Some(got) = trailers.get() else {
                        if ready.poll(cx, || trailers.subscribe()).is_pending() {
                            return Poll::Pending;
                        }
                        continue;
                    };
                    self.state = State::Done;
                    return Poll::Ready(match got {
                        Ok(Ok(Some(fields))) => Some(
                            header_map(fields)
                                .with_context(|| format!("the {}'s trailers", self.of))
                                .map(Frame::trailers),
                        ),
                        Ok(Ok(None)) => None,
                        Ok(Err(code)) => Some(Err(Error::from(code)
                            .context(format!("reading the {}'s trailers", self.of)))),
                        Err(()) => Some(Err(Error::msg(format!(
                            "the {}'s trailers were taken",
                            self.of
                        )))),
                    });
                }
                State::Done => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(remaining) => SizeHint::with_exact(remaining),
            None => SizeHint::default(),
        }
    }
}

/// A pollable, subscribed to when first waited on and registered with
/// wstd's reactor only while a reader waits on it.
#[derive(Default)]
struct Readiness {
    pollable: Option<AsyncPollable>,
    wait: Option<Pin<Box<WaitFor>>>,
}

impl Readiness {
    /// Waits until the pollable `subscribe` makes is ready; registered
    /// until then.
    fn poll(&mut self, cx: &mut Context<'_>, subscribe: impl FnOnce() -> Pollable) -> Poll<()> {
        let pollable = self
            .pollable
            .get_or_insert_with(|| Reactor::current().schedule(subscribe()));
        let wait = self
            .wait
            .get_or_insert_with(|| Box::pin(pollable.wait_for()));
        let ready = wait.as_mut().poll(cx);
        if ready.is_ready() {
            self.wait = None;
        }
        ready
    }

    /// No longer waiting: drops the registration.
    fn stop(&mut self) {
        self.wait = None;
    }
}

//! One request: redirect, route, prepare, run, and the one place where
//! errors become HTTP responses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::ServerState;
use super::access::{Exchange, Metered};
use super::cors::Cors;
use super::methods::{MethodDecision, decide};
use super::page::dev_page;
use super::request::{set_boundary_headers, trailing_slash_redirect};
use super::request_id::X_REQUEST_ID;
use crate::loader::{LoadError, Ready};
use crate::response_cache::policy::{RequestHead, declared_length};
use crate::response_cache::{CacheStatus, Fill, Key, Lookup, ResponseCache, X_WEDGE_CACHE};
use crate::sandbox::{self, GuestError, Pool, PoolError, Pre, RunStats, SlotTaker};
use crate::settings::{Dynamic, ReuseLimits, RouteSettings};

/// Why a request got no answer from a guest.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// The request lacks a `Host` header (and an authority).
    #[error("request has no Host header")]
    MissingHost,
    /// No route serves the path.
    #[error("no route")]
    NotFound,
    /// The route does not list the method; carries the `Allow` value.
    #[error("method not allowed")]
    MethodNotAllowed(String),
    /// The declared `content-length` is over the route's `max_body`.
    #[error("declared body of {declared} bytes is over the route's max_body of {limit}")]
    BodyTooLarge {
        /// The client's `content-length`.
        declared: u64,
        /// The route's `max_body`.
        limit: u64,
    },
    /// Every instance slot (or the route's `max_concurrency`) is taken.
    #[error("no free instance slot")]
    Busy,
    /// The route's file did not compile or link.
    #[error("route {route} failed to load: {error}")]
    RouteFailedToLoad {
        /// The route's pattern.
        route: Arc<str>,
        /// Why.
        error: Arc<LoadError>,
    },
    /// `wedge dev` only: the route's last build failed (its working
    /// version, if any, is still on disk).
    #[error("route {route} failed to build:\n{failure}")]
    BuildFailed {
        /// The route's pattern.
        route: Arc<str>,
        /// The build's error and output.
        failure: Arc<str>,
    },
    /// The guest trapped, or answered with no response.
    #[error("route {route}: {error}")]
    Guest {
        /// The route's pattern.
        route: Arc<str>,
        /// What went wrong.
        error: GuestError,
    },
}

impl DispatchError {
    /// The status and the client's short body; the detail goes to the log.
    fn status_and_body(&self) -> (StatusCode, &'static str) {
        match self {
            DispatchError::MissingHost => (
                StatusCode::BAD_REQUEST,
                "bad request: missing Host header\n",
            ),
            DispatchError::NotFound => (StatusCode::NOT_FOUND, "not found\n"),
            DispatchError::MethodNotAllowed(_) => {
                (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
            }
            DispatchError::BodyTooLarge { .. }
            | DispatchError::Guest {
                error: GuestError::BodyTooLarge(_),
                ..
            } => (StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n"),
            DispatchError::Busy
            | DispatchError::Guest {
                error: GuestError::PoolExhausted(_),
                ..
            } => (StatusCode::SERVICE_UNAVAILABLE, "busy, retry shortly\n"),
            DispatchError::Guest {
                error: GuestError::Timeout(_),
                ..
            } => (StatusCode::GATEWAY_TIMEOUT, "handler timed out\n"),
            DispatchError::Guest {
                error: GuestError::CpuTime(_),
                ..
            } => (
                StatusCode::GATEWAY_TIMEOUT,
                "handler used up its CPU time\n",
            ),
            DispatchError::RouteFailedToLoad { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "route failed to load\n")
            }
            DispatchError::BuildFailed { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "route failed to build\n")
            }
            DispatchError::Guest {
                error: GuestError::Trapped(_) | GuestError::ErrorCode(_) | GuestError::NoResponse,
                ..
            } => (StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n"),
        }
    }

    /// The client's short answer; the detail goes to the log, and in dev
    /// mode to the client too, as an HTML page if it asked for HTML.
    fn into_response(self, dev: bool, wants_html: bool) -> Response<HyperOutgoingBody> {
        let (status, short) = self.status_and_body();
        let (content_type, body) = match &self {
            DispatchError::RouteFailedToLoad { .. }
            | DispatchError::BuildFailed { .. }
            | DispatchError::Guest { .. }
                if dev =>
            {
                dev_page(short.trim_end(), &self.to_string(), wants_html)
            }
            _ => (
                "text/plain; charset=utf-8",
                Bytes::from_static(short.as_bytes()),
            ),
        };
        match &self {
            DispatchError::MissingHost
            | DispatchError::NotFound
            | DispatchError::MethodNotAllowed(_)
            | DispatchError::BodyTooLarge { .. }
            | DispatchError::Busy
            // The build already logged its output, once.
            | DispatchError::BuildFailed { .. } => {}
            DispatchError::Guest {
                error: GuestError::BodyTooLarge(_),
                ..
            } => tracing::info!("{self}"),
            // The server is full, not the guest at fault: no trap logged.
            DispatchError::Guest {
                error: GuestError::PoolExhausted(_),
                ..
            } => tracing::warn!("{self}"),
            DispatchError::RouteFailedToLoad { .. } | DispatchError::Guest { .. } => {
                tracing::error!("{self}");
            }
        }
        let mut response = bytes_response(status, body);
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        match self {
            DispatchError::MethodNotAllowed(allow) => {
                headers.insert(header::ALLOW, header_value(allow));
            }
            DispatchError::Busy
            | DispatchError::Guest {
                error: GuestError::PoolExhausted(_),
                ..
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

fn header_value(value: String) -> HeaderValue {
    HeaderValue::try_from(value).expect("bug: method names are valid header values")
}

fn text_response(status: StatusCode, body: &'static str) -> Response<HyperOutgoingBody> {
    bytes_response(status, Bytes::from_static(body.as_bytes()))
}

fn bytes_response(status: StatusCode, body: Bytes) -> Response<HyperOutgoingBody> {
    let body = Full::new(body)
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}

/// Answers one request; never fails, since every error has a response.
/// The response's body logs and counts the exchange when it is sent.
pub async fn dispatch(
    state: &Arc<ServerState>,
    mut request: hyper::Request<Incoming>,
    peer: SocketAddr,
) -> Response<Metered> {
    let started = Instant::now();
    let trusted = state.proxies.is_empty() || state.proxies.trusts(peer.ip());
    let id = state.request_ids.for_request(request.headers(), trusted);
    let id_value = HeaderValue::try_from(id.as_str()).expect("bug: request ids are header-safe");
    // The guest sees the id, to log it or pass it on.
    request.headers_mut().insert(X_REQUEST_ID, id_value.clone());
    let client = state.proxies.client(peer, request.headers());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let stats = Arc::new(RunStats::default());
    let span = tracing::info_span!("request", id = %id);
    let Answer {
        route,
        mut response,
        cache,
        ..
    } = answer(state, request, &client, &stats)
        .instrument(span)
        .await;
    response.headers_mut().insert(X_REQUEST_ID, id_value);
    let length = declared_length(response.headers());
    let exchange = Exchange {
        metrics: state.routes.metrics().clone(),
        id,
        client,
        method,
        path,
        started,
        route,
        status: response.status().as_u16(),
        stats,
        cache,
    };
    response.map(|body| Metered::new(body, length, exchange))
}

async fn answer(
    state: &Arc<ServerState>,
    request: hyper::Request<Incoming>,
    client: &str,
    stats: &Arc<RunStats>,
) -> Answer {
    let head = request.method() == Method::HEAD;
    let wants_html = accepts_html(request.headers());
    let mut answer = match route(state, request, client, stats).await {
        Ok(answer) => answer,
        Err(Refused {
            route,
            error,
            cache,
            cors,
        }) => Answer {
            route,
            response: error.into_response(state.options.dev, wants_html),
            cache,
            cors,
        },
    };
    let headers = answer.response.headers_mut();
    if let Some(cache) = answer.cache {
        headers.insert(X_WEDGE_CACHE, cache.header());
    }
    if let Some(cors) = &answer.cors {
        cors.decorate(headers);
    }
    if head {
        answer.response = without_body(answer.response);
    }
    answer
}

/// A response, and what the access log and the last headers need of how
/// it was made.
struct Answer {
    /// The route it came from, if one was found.
    route: Option<Arc<str>>,
    response: Response<HyperOutgoingBody>,
    /// What the response cache did, if the request reached it.
    cache: Option<CacheStatus>,
    /// The route's `[cors]` headers to add.
    cors: Option<Cors>,
}

/// A request no guest answers: why, and what was known of it.
struct Refused {
    route: Option<Arc<str>>,
    error: DispatchError,
    cache: Option<CacheStatus>,
    cors: Option<Cors>,
}

impl Refused {
    /// Refused before any route was found.
    fn unrouted(error: DispatchError) -> Refused {
        Refused {
            route: None,
            error,
            cache: None,
            cors: None,
        }
    }
}

/// What is known of a request once its route is found.
struct Routed {
    name: Arc<str>,
    cors: Option<Cors>,
    cache: Option<CacheStatus>,
}

impl Routed {
    fn answer(self, response: Response<HyperOutgoingBody>) -> Answer {
        Answer {
            route: Some(self.name),
            response,
            cache: self.cache,
            cors: self.cors,
        }
    }

    fn refuse(self, error: DispatchError) -> Refused {
        Refused {
            route: Some(self.name),
            error,
            cache: self.cache,
            cors: self.cors,
        }
    }
}

async fn route(
    state: &Arc<ServerState>,
    request: hyper::Request<Incoming>,
    client: &str,
    stats: &Arc<RunStats>,
) -> Result<Answer, Refused> {
    if let Some(location) = trailing_slash_redirect(request.uri()) {
        let mut response = text_response(StatusCode::PERMANENT_REDIRECT, "");
        let location = HeaderValue::try_from(location)
            .expect("bug: a location built from a valid URI is a valid header value");
        response.headers_mut().insert(header::LOCATION, location);
        return Ok(Answer {
            route: None,
            response,
            cache: None,
            cors: None,
        });
    }
    if request.uri().authority().is_none() && !request.headers().contains_key(header::HOST) {
        return Err(Refused::unrouted(DispatchError::MissingHost));
    }
    // In `wedge dev`, a route being rebuilt answers once its build ends.
    let build = match &state.builds {
        Some(builds) => builds.settle(request.uri().path()).await,
        None => None,
    };
    let table = state.routes.current();
    let found = table.lookup(request.uri().path());
    // A failed build answers for its route: where the table serves the
    // path from the file it builds, or nothing serves the path yet (never
    // built). Another file serving the path is more specific: it answers.
    if let Some(build) = build
        && found
            .as_ref()
            .is_none_or(|found| found.route.file == build.target)
    {
        let error = DispatchError::BuildFailed {
            route: build.route.clone(),
            failure: build.output,
        };
        return Err(Refused {
            route: Some(build.route),
            ..Refused::unrouted(error)
        });
    }
    let Some(found) = found else {
        return Err(Refused::unrouted(DispatchError::NotFound));
    };
    let loaded = &found.route.value;
    let name = loaded.name.clone();
    let ready = match &loaded.state {
        Ok(ready) => ready,
        Err(error) => {
            let error = DispatchError::RouteFailedToLoad {
                route: name.clone(),
                error: error.clone(),
            };
            return Err(Refused {
                route: Some(name),
                ..Refused::unrouted(error)
            });
        }
    };
    let settings = &ready.settings;
    let mut routed = Routed {
        name,
        cors: Cors::for_request(settings, request.headers()),
        cache: None,
    };
    if let Some(cors) = &routed.cors
        && Cors::is_preflight(request.method(), request.headers())
    {
        let response = cors.preflight(settings.methods.as_deref());
        routed.cors = None;
        return Ok(routed.answer(response));
    }
    let head = request.method() == Method::HEAD;
    let mut request = match precheck(settings, request) {
        Ok(Precheck::Run(request)) => request,
        Ok(Precheck::Answered(response)) => return Ok(routed.answer(response)),
        Err(error) => return Err(routed.refuse(error)),
    };
    let cache = state.routes.response_cache();
    // Set only where a guest runs: a hit needs none of them.
    let routed_name = routed.name.clone();
    let boundary = |headers: &mut http::HeaderMap| {
        set_boundary_headers(headers, &routed_name, &found.params, client);
    };
    if !cacheable(cache, settings, &request) {
        boundary(request.headers_mut());
        routed.cache = Some(CacheStatus::Bypass);
        return match run_guest(state, &routed.name, ready, request, stats).await {
            Ok(response) => Ok(routed.answer(response)),
            Err(error) => Err(routed.refuse(error)),
        };
    }
    let key = cache_key(&routed.name, &request);
    let mut waited = false;
    let fill = loop {
        let lead = !head && !waited;
        match cache.lookup(&key, settings, request.headers(), lead) {
            Lookup::Hit(stored) => {
                routed.cache = Some(CacheStatus::Hit);
                return Ok(routed.answer(stored.response(Instant::now())));
            }
            Lookup::Stale(stored, refresh) => {
                if let Some(fill) = refresh {
                    let mut headers = request.headers().clone();
                    boundary(&mut headers);
                    revalidate(state, &routed.name, ready, request.uri(), headers, fill);
                }
                routed.cache = Some(CacheStatus::Stale);
                return Ok(routed.answer(stored.response(Instant::now())));
            }
            Lookup::Wait(mut filled) => {
                // Woken when the other request's answer is stored, or
                // dropped; past the timeout, run the guest anyway.
                let _ = tokio::time::timeout(settings.timeout, filled.changed()).await;
                waited = true;
            }
            Lookup::Miss(fill) => break fill,
        }
    };
    routed.cache = Some(CacheStatus::Miss);
    // The client's headers, as the response's `Vary` refers to them.
    let (method, uri, headers) = (
        request.method().clone(),
        request.uri().clone(),
        request.headers().clone(),
    );
    boundary(request.headers_mut());
    match run_guest(state, &routed.name, ready, request, stats).await {
        Ok(response) if head => Ok(routed.answer(response)),
        Ok(response) => {
            let asked = RequestHead {
                method: &method,
                uri: &uri,
                headers: &headers,
            };
            Ok(routed.answer(fill.wrap(&asked, response)))
        }
        Err(error) => Err(routed.refuse(error)),
    }
}

/// Whether the response cache serves `request`: the cache is on, the
/// method is `GET` or `HEAD`, the route is not `force-dynamic`, and the
/// request carries no `Authorization` (a shared cache must not hand one
/// user's answer to another).
fn cacheable<B>(
    cache: &ResponseCache,
    settings: &RouteSettings,
    request: &hyper::Request<B>,
) -> bool {
    cache.enabled()
        && matches!(*request.method(), Method::GET | Method::HEAD)
        && settings.dynamic != Dynamic::ForceDynamic
        && !request.headers().contains_key(header::AUTHORIZATION)
}

/// The cache key of `request` to `route`: its host and its path and query.
fn cache_key<B>(route: &Arc<str>, request: &hyper::Request<B>) -> Key {
    let uri = request.uri();
    let host = match uri.authority() {
        Some(authority) => authority.as_str(),
        None => request
            .headers()
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .unwrap_or_default(),
    };
    let target = uri.path_and_query().map_or("/", |target| target.as_str());
    Key::new(route, host, target)
}

/// Runs `request` through a fresh instance of `ready`, the version of
/// `name` it was routed to, if an instance slot is free.
async fn run_guest<B>(
    state: &ServerState,
    name: &Arc<str>,
    ready: &Ready,
    request: hyper::Request<B>,
    stats: &Arc<RunStats>,
) -> Result<Response<HyperOutgoingBody>, DispatchError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let route = sandbox::Route {
        name,
        settings: &ready.settings,
        stores: &state.stores,
    };
    let guest_error = |error| DispatchError::Guest {
        route: name.clone(),
        error,
    };
    if let (Pre::Http02(pre), None) = (&ready.pre, ready.reuse) {
        let (instance, route_slot) = take_slots(state, ready)?;
        let slots = (
            instance,
            route_slot,
            state.routes.metrics().instance_started(),
        );
        return sandbox::handle(pre, route, slots, stats, state.scheme(), request)
            .await
            .map_err(guest_error);
    }
    // A WASI 0.3 route (one with `reuse = false` gets pool instances that
    // take one request each), or a WASI 0.2 one that reuses instances.
    let limits = ready.reuse.unwrap_or(ReuseLimits {
        max_requests: 1,
        max_concurrent: 1,
        ..ReuseLimits::default()
    });
    let route_slot = take_route_slot(ready)?;
    let pool = ready.pool.get_or_init(|| {
        let (instances, metrics) = (state.instances.clone(), state.routes.metrics().clone());
        let take_slot: SlotTaker = Arc::new(move || {
            let permit = instances.clone().try_acquire_owned().ok()?;
            Some(Box::new((permit, metrics.instance_started())))
        });
        Pool::new(&ready.pre, route, limits, take_slot)
    });
    pool.handle(request, state.scheme(), stats, route_slot)
        .await
        .map_err(|error| match error {
            PoolError::Full => DispatchError::Busy,
            PoolError::Guest(error) => guest_error(error),
        })
}

/// Refreshes a stale cached answer in the background: `GET uri` with
/// `headers` (the request's, boundary headers set) and no body, through a
/// fresh instance; its answer is stored by `fill` if it may be. A server
/// with no free instance slot skips it (the next request for the key tries
/// again).
fn revalidate(
    state: &Arc<ServerState>,
    name: &Arc<str>,
    ready: &Ready,
    uri: &http::Uri,
    headers: http::HeaderMap,
    fill: Fill,
) {
    let mut refresh = http::Request::new(http_body_util::Empty::<Bytes>::new());
    *refresh.method_mut() = Method::GET;
    *refresh.uri_mut() = uri.clone();
    *refresh.headers_mut() = headers;
    let (state, name, ready) = (state.clone(), name.clone(), ready.clone());
    let span = tracing::info_span!("revalidate", route = %name);
    tokio::spawn(
        async move {
            let metrics = state.routes.response_cache().metrics().clone();
            let (method, uri, headers) = (
                Method::GET,
                refresh.uri().clone(),
                refresh.headers().clone(),
            );
            let stats = Arc::new(RunStats::default());
            match run_guest(&state, &name, &ready, refresh, &stats).await {
                Ok(response) => {
                    let asked = RequestHead {
                        method: &method,
                        uri: &uri,
                        headers: &headers,
                    };
                    let body = fill.wrap(&asked, response).into_body();
                    // Read to its end, which stores it.
                    let outcome = match body.collect().await {
                        Ok(_) => "answered",
                        Err(_) => "failed",
                    };
                    metrics.revalidated(&name, outcome);
                }
                Err(DispatchError::Busy) => metrics.revalidated(&name, "busy"),
                Err(error) => {
                    tracing::warn!("background revalidation failed: {error}");
                    metrics.revalidated(&name, "failed");
                }
            }
        }
        .instrument(span),
    );
}

/// What [`precheck`] leaves to do.
enum Precheck {
    /// The host answered (an `OPTIONS` for a route that lists methods).
    Answered(Response<HyperOutgoingBody>),
    /// The guest answers this request.
    Run(hyper::Request<Incoming>),
}

/// What the route's settings decide before any guest runs: a method it
/// does not list, a `HEAD` it serves as `GET`, an `OPTIONS` the host
/// answers, a declared body over its `max_body`.
fn precheck(
    settings: &RouteSettings,
    mut request: hyper::Request<Incoming>,
) -> Result<Precheck, DispatchError> {
    match decide(settings.methods.as_deref(), request.method()) {
        MethodDecision::Pass => {}
        MethodDecision::HeadAsGet => *request.method_mut() = Method::GET,
        MethodDecision::Options(allow) => {
            let mut response = text_response(StatusCode::NO_CONTENT, "");
            response
                .headers_mut()
                .insert(header::ALLOW, header_value(allow));
            return Ok(Precheck::Answered(response));
        }
        MethodDecision::NotAllowed(allow) => return Err(DispatchError::MethodNotAllowed(allow)),
    }
    if let Some(declared) = declared_length(request.headers())
        && declared > settings.max_body
    {
        let limit = settings.max_body;
        // A client that waits for `100 Continue` sends nothing more; one
        // that is already sending gets its 413 read, not reset.
        if !expects_continue(request.headers()) {
            sandbox::linger(request.into_body());
        }
        return Err(DispatchError::BodyTooLarge { declared, limit });
    }
    Ok(Precheck::Run(request))
}

/// An instance slot of the server, and one of the route's if it sets
/// `max_concurrency`, taken without waiting: a full server answers 503 at
/// once.
fn take_slots(
    state: &ServerState,
    ready: &Ready,
) -> Result<(OwnedSemaphorePermit, Option<OwnedSemaphorePermit>), DispatchError> {
    let instance = state
        .instances
        .clone()
        .try_acquire_owned()
        .map_err(|_| DispatchError::Busy)?;
    Ok((instance, take_route_slot(ready)?))
}

/// One of the route's `max_concurrency` slots, if it sets one, taken
/// without waiting.
fn take_route_slot(ready: &Ready) -> Result<Option<OwnedSemaphorePermit>, DispatchError> {
    ready
        .slots
        .as_ref()
        .map(|slots| slots.clone().try_acquire_owned())
        .transpose()
        .map_err(|_| DispatchError::Busy)
}

/// A `HEAD` answer: the headers, no body (HTTP/2 refuses data on a `HEAD`
/// stream). Dropping the guest's body stops the guest: it ran as for
/// `GET`, up to its headers, and what it would write next is not wanted, so
/// it does not hold an instance slot while it writes to no one.
fn without_body(response: Response<HyperOutgoingBody>) -> Response<HyperOutgoingBody> {
    let (parts, _body) = response.into_parts();
    let empty = http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync();
    Response::from_parts(parts, empty)
}

/// Whether the client asked for HTML (a browser): its `Accept` lists
/// `text/html`.
fn accepts_html(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains("text/html"))
}

/// Whether the client waits for `100 Continue` before sending its body.
fn expects_continue(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

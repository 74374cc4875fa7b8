//! One request: redirect, route, prepare, run, and the one place where
//! errors become HTTP responses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::ServerState;
use super::request::{set_boundary_headers, trailing_slash_redirect};
use crate::loader::LoadError;
use crate::sandbox::{self, GuestError};

/// Why a request got no answer from a guest.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// The request lacks a `Host` header (and an authority).
    #[error("request has no Host header")]
    MissingHost,
    /// No route serves the path.
    #[error("no route")]
    NotFound,
    /// The route's file did not compile or link.
    #[error("route {route} failed to load: {error}")]
    RouteFailedToLoad {
        /// The route's pattern.
        route: Arc<str>,
        /// Why.
        error: Arc<LoadError>,
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
    fn status(&self) -> StatusCode {
        match self {
            DispatchError::MissingHost => StatusCode::BAD_REQUEST,
            DispatchError::NotFound => StatusCode::NOT_FOUND,
            DispatchError::RouteFailedToLoad { .. } | DispatchError::Guest { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The client's short answer; the detail goes to the log.
    fn into_response(self) -> Response<HyperOutgoingBody> {
        let body = match &self {
            DispatchError::MissingHost => "bad request: missing Host header\n",
            DispatchError::NotFound => "not found\n",
            DispatchError::RouteFailedToLoad { .. } => "route failed to load\n",
            DispatchError::Guest { .. } => "internal server error\n",
        };
        match &self {
            DispatchError::MissingHost | DispatchError::NotFound => {}
            DispatchError::RouteFailedToLoad { .. } | DispatchError::Guest { .. } => {
                tracing::error!("{self}");
            }
        }
        let mut response = text_response(self.status(), body);
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

fn text_response(status: StatusCode, body: &'static str) -> Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from_static(body.as_bytes()))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}

/// Answers one request; never fails, since every error has a response.
pub async fn dispatch(
    state: &ServerState,
    request: hyper::Request<Incoming>,
    client: SocketAddr,
) -> Response<HyperOutgoingBody> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let (route, response) = match route(state, request, client).await {
        Ok(answer) => answer,
        Err((route, error)) => (route, error.into_response()),
    };
    tracing::info!(
        target: "wedge::access",
        %method,
        path,
        route = route.as_deref().unwrap_or("-"),
        status = response.status().as_u16(),
        ms = %format_args!("{:.3}", started.elapsed().as_secs_f64() * 1000.0),
    );
    response
}

type Answer = (Option<Arc<str>>, Response<HyperOutgoingBody>);

async fn route(
    state: &ServerState,
    mut request: hyper::Request<Incoming>,
    client: SocketAddr,
) -> Result<Answer, (Option<Arc<str>>, DispatchError)> {
    if let Some(location) = trailing_slash_redirect(request.uri()) {
        let mut response = text_response(StatusCode::PERMANENT_REDIRECT, "");
        let location = HeaderValue::try_from(location)
            .expect("bug: a location built from a valid URI is a valid header value");
        response.headers_mut().insert(header::LOCATION, location);
        return Ok((None, response));
    }
    if request.uri().authority().is_none() && !request.headers().contains_key(header::HOST) {
        return Err((None, DispatchError::MissingHost));
    }
    let table = state.routes();
    let Some(found) = table.lookup(request.uri().path()) else {
        return Err((None, DispatchError::NotFound));
    };
    let loaded = &found.route.value;
    let route = loaded.name.clone();
    let pre = match &loaded.state {
        Ok(pre) => pre,
        Err(error) => {
            let error = DispatchError::RouteFailedToLoad {
                route: route.clone(),
                error: error.clone(),
            };
            return Err((Some(route), error));
        }
    };
    set_boundary_headers(request.headers_mut(), &route, &found.params, client);
    match sandbox::handle(pre, &route, request).await {
        Ok(response) => Ok((Some(route), response)),
        Err(error) => Err((Some(route.clone()), DispatchError::Guest { route, error })),
    }
}

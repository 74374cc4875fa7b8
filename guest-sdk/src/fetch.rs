//! [`fetch`]: outbound HTTP, for calling third-party APIs.

use std::fmt;

use wstd::http::{Body, ErrorCode};

use crate::response::Response;

/// Sends `request` and waits for the response head; the body streams.
///
/// The host lets a route reach only the origins in its sidecar's
/// `allowed_outbound_hosts` (none by default). Anything else fails with a
/// [`FetchError`] that [is denied](FetchError::is_denied) and whose message
/// names the entry to add. With `?` in a handler, a failed fetch becomes a
/// `500` and its message goes to the log.
///
/// ```
/// use wedge_sdk::{Body, Error, Json, Request, fetch, http};
///
/// async fn weather(_request: Request) -> Result<Json<serde_json::Value>, Error> {
///     let upstream = http::Request::get("https://api.example.com/weather?city=Oslo")
///         .header("accept", "application/json")
///         .body(Body::empty())?;
///     let mut response = fetch(upstream).await?;
///     if !response.status().is_success() {
///         return Err(Error::internal(format!("weather API: {}", response.status())));
///     }
///     Ok(Json(response.body_mut().json().await?))
/// }
/// ```
pub async fn fetch<B: Into<Body>>(request: http::Request<B>) -> Result<Response, FetchError> {
    let (parts, body) = request.into_parts();
    let origin = Origin::of(&parts.uri);
    crate::wasi::send(http::Request::from_parts(parts, body.into()))
        .await
        .map_err(|cause| FetchError { origin, cause })
}

/// Why a [`fetch`] got no response.
///
/// Its message says what to do where there is something to do:
///
/// ```text
/// outbound request to https://api.example.com denied by the host: add "https://api.example.com" to allowed_outbound_hosts in this route's sidecar .toml
/// ```
pub struct FetchError {
    origin: Origin,
    cause: wstd::http::Error,
}

impl FetchError {
    /// The `wasi:http` error code the host gave, if it gave one (it does for
    /// refused, timed-out and denied requests).
    ///
    /// ```
    /// use wedge_sdk::{FetchError, wstd::http::ErrorCode};
    ///
    /// fn timed_out(error: &FetchError) -> bool {
    ///     matches!(error.code(), Some(ErrorCode::ConnectionTimeout | ErrorCode::ConnectionReadTimeout))
    /// }
    /// ```
    pub fn code(&self) -> Option<&ErrorCode> {
        self.cause.downcast_ref::<ErrorCode>()
    }

    /// Whether the host refused the request: its origin is not in the
    /// route's `allowed_outbound_hosts`, or its address is one the host
    /// never connects to (link-local, or private for a name).
    ///
    /// ```
    /// use wedge_sdk::FetchError;
    ///
    /// fn explain(error: &FetchError) -> &'static str {
    ///     if error.is_denied() { "not allowed" } else { "failed" }
    /// }
    /// ```
    pub fn is_denied(&self) -> bool {
        matches!(self.code(), Some(ErrorCode::HttpRequestDenied))
    }

    /// Whether a write to the request body failed because the host had
    /// closed it: the request was refused or failed before the body was
    /// sent, and the failed write was reported before the reason came.
    fn body_closed(&self) -> bool {
        self.cause.chain().any(|cause| {
            cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionReset)
        })
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = &self.origin;
        if self.is_denied() {
            write!(
                f,
                "outbound request to {origin} denied by the host: add \"{origin}\" to \
                 allowed_outbound_hosts in this route's sidecar .toml"
            )
        } else if let Some(code) = self.code() {
            write!(f, "outbound request to {origin} failed: {code}")
        } else if self.body_closed() {
            write!(
                f,
                "outbound request to {origin} failed: the host closed the request before its \
                 body was sent (denied, or the connection failed: the host's log says which)"
            )
        } else {
            write!(f, "outbound request to {origin} failed: {:#}", self.cause)
        }
    }
}

impl fmt::Debug for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchError")
            .field("origin", &self.origin.0)
            .field("cause", &self.cause)
            .finish()
    }
}

impl std::error::Error for FetchError {}

/// `scheme://host[:port]` of a request, as `allowed_outbound_hosts` spells
/// it; without userinfo, which may be a credential.
struct Origin(String);

impl Origin {
    fn of(uri: &http::Uri) -> Origin {
        let scheme = uri.scheme_str().unwrap_or("https");
        let host = uri.host().unwrap_or("(no host)");
        let origin = match uri.port_u16() {
            Some(port) => format!("{scheme}://{host}:{port}"),
            None => format!("{scheme}://{host}"),
        };
        Origin(origin)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(uri: &str, cause: impl Into<wstd::http::Error>) -> FetchError {
        FetchError {
            origin: Origin::of(&uri.parse().expect("a URI")),
            cause: cause.into(),
        }
    }

    #[test]
    fn a_denied_request_names_the_entry_to_add() {
        let denied = error(
            "http://user:secret@127.0.0.1:8080/x?q=1",
            ErrorCode::HttpRequestDenied,
        );
        assert!(denied.is_denied());
        assert_eq!(
            denied.to_string(),
            "outbound request to http://127.0.0.1:8080 denied by the host: add \
             \"http://127.0.0.1:8080\" to allowed_outbound_hosts in this route's sidecar .toml"
        );
    }

    #[test]
    fn other_codes_are_named() {
        let refused = error("https://api.example.com/", ErrorCode::ConnectionRefused);
        assert!(!refused.is_denied());
        assert!(matches!(refused.code(), Some(ErrorCode::ConnectionRefused)));
        assert!(
            refused
                .to_string()
                .starts_with("outbound request to https://api.example.com failed: "),
            "{refused}"
        );
    }

    #[test]
    fn a_closed_request_body_says_why_it_closes() {
        let reset =
            wstd::http::Error::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
                .context("sending outgoing body");
        let closed = error("https://api.example.com/", reset);
        assert!(
            closed.to_string().contains("the host closed the request"),
            "{closed}"
        );
    }
}

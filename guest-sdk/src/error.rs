//! [`Error`]: what a handler's `?` turns a failure into.

use std::fmt;

use http::StatusCode;

use crate::response::{IntoResponse, Response, text_response};

/// A failed request: a status for the client and, for server errors, a
/// cause for the log.
///
/// Any error converts into one with `?` as a `500`: the client gets
/// `internal server error`, and the cause, with its chain of sources, is
/// written to stderr, which Wedge logs with the route and request id. The
/// SDK's own checks fail with client errors instead (a malformed JSON body is
/// a `400` saying what is wrong), and [`Error::new`] makes one of your own;
/// their message is the response body, so it must not hold secrets.
///
/// ```
/// use wedge_sdk::{Error, Request, RequestExt as _, StatusCode};
///
/// async fn show(request: Request) -> Result<String, Error> {
///     let id: u32 = request.param("id")?; // 400 unless `id` is a number
///     if id == 0 {
///         return Err(Error::new(StatusCode::NOT_FOUND, "no user 0"));
///     }
///     let limit: u32 = std::env::var("LIMIT")?.parse()?; // 500, cause logged
///     Ok(format!("user {id} of {limit}"))
/// }
/// ```
pub struct Error {
    status: StatusCode,
    message: String,
    cause: Option<wstd::http::Error>,
}

impl Error {
    /// An error answered with `status` and `message` as a plain-text body.
    ///
    /// A `5xx` status is logged too; the client still sees `message`.
    ///
    /// ```
    /// use wedge_sdk::{Error, StatusCode};
    ///
    /// let error = Error::new(StatusCode::UNPROCESSABLE_ENTITY, "`title` must not be empty");
    /// assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
    /// ```
    pub fn new(status: StatusCode, message: impl Into<String>) -> Error {
        Error {
            status,
            message: message.into(),
            cause: None,
        }
    }

    /// A `400 Bad Request` with `message` as its body.
    ///
    /// ```
    /// use wedge_sdk::{Error, StatusCode};
    ///
    /// assert_eq!(Error::bad_request("no name").status(), StatusCode::BAD_REQUEST);
    /// ```
    pub fn bad_request(message: impl Into<String>) -> Error {
        Error::new(StatusCode::BAD_REQUEST, message)
    }

    /// A `500` whose `message` is logged but never shown to the client.
    ///
    /// ```
    /// use wedge_sdk::{Error, StatusCode};
    ///
    /// let error = Error::internal("the upstream answered 503");
    /// assert_eq!(error.status(), StatusCode::INTERNAL_SERVER_ERROR);
    /// ```
    pub fn internal(message: impl Into<String>) -> Error {
        Error {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            cause: None,
        }
        .hidden()
    }

    /// The status the client gets.
    ///
    /// ```
    /// use wedge_sdk::{Error, StatusCode};
    ///
    /// let error = Error::from(std::fmt::Error);
    /// assert_eq!(error.status(), StatusCode::INTERNAL_SERVER_ERROR);
    /// ```
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Moves the message into the cause, so that the client gets only the
    /// status's reason phrase.
    fn hidden(mut self) -> Error {
        let message = std::mem::take(&mut self.message);
        self.cause = Some(wstd::http::Error::msg(message));
        self
    }
}

/// `?` on any error: a `500`, its cause logged; a [`kv::Error`](crate::kv::Error)
/// keeps [its own status](crate::kv::Error::status). (Like `anyhow::Error`,
/// [`Error`] is not itself a `std::error::Error`, which is what lets this
/// impl cover every error type.)
impl<E> From<E> for Error
where
    E: Into<wstd::http::Error>,
{
    fn from(cause: E) -> Error {
        let cause = cause.into();
        let status = cause
            .downcast_ref::<crate::kv::Error>()
            .map_or(StatusCode::INTERNAL_SERVER_ERROR, crate::kv::Error::status);
        Error {
            status,
            message: String::new(),
            cause: Some(cause),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            Some(cause) => write!(f, "{cause:#}"),
            None => write!(f, "{}", self.message),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("status", &self.status)
            .field("message", &self.message)
            .field("cause", &self.cause)
            .finish()
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            // stderr reaches the host's log, tagged with the route and the
            // request id; the client gets no internals.
            eprintln!("error: {self}");
        }
        let body = match self.cause {
            Some(_) => self
                .status
                .canonical_reason()
                .unwrap_or("error")
                .to_ascii_lowercase(),
            None => self.message,
        };
        let mut response = text_response(body);
        *response.status_mut() = self.status;
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_error_becomes_a_500_that_hides_its_cause() {
        let error = Error::from(std::io::Error::other("disk on fire"));
        assert_eq!(error.to_string(), "disk on fire");
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            crate::response::tests::body_text(response),
            "internal server error"
        );
    }

    #[test]
    fn client_errors_show_their_message() {
        let response = Error::bad_request("`name` is required").into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            crate::response::tests::body_text(response),
            "`name` is required"
        );
    }

    #[test]
    fn internal_errors_keep_their_message_for_the_log_only() {
        let error = Error::internal("token rejected upstream");
        assert_eq!(error.to_string(), "token rejected upstream");
        assert_eq!(
            crate::response::tests::body_text(error.into_response()),
            "internal server error"
        );
    }
}

//! [`IntoResponse`]: what a handler may return.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, StatusCode};
use wstd::http::Body;

/// The response type handlers build: the `http` crate's, with a wstd
/// [`Body`]. (Its builder is the `http` crate's: `http::Response::builder()`.)
///
/// ```
/// use wedge_sdk::{Error, Response, http};
///
/// async fn teapot() -> Result<Response, Error> {
///     Ok(http::Response::builder().status(418).header("x-brew", "earl grey").body("I'm a teapot".into())?)
/// }
/// ```
pub type Response = http::Response<Body>;

/// A value a handler can answer with.
///
/// | returned | response |
/// |---|---|
/// | [`Response`], or `http::Response<B>` for any `B: Into<Body>` | as built |
/// | `&'static str`, `String` | `200`, `text/plain; charset=utf-8` |
/// | `Vec<u8>`, [`Bytes`] | `200`, `application/octet-stream` |
/// | [`StatusCode`] | that status, empty body |
/// | `(StatusCode, T)` | `T`'s response with that status |
/// | `(P, T)`, `(P1, P2, T)`, `(P1, P2, P3, T)` | `T`'s response changed by each [`ResponsePart`] `P` (a status, [cookies](crate::SetCookies), [caching](crate::CacheControl)) |
/// | [`Redirect`](crate::Redirect) | `303`, `307` or `308` with `Location` |
/// | [`Json<T>`](crate::Json) | `200`, `application/json` |
/// | `Result<T, E>` | `T`'s or `E`'s response; an [`Error`](crate::Error) is logged if a `5xx` |
///
/// ```
/// use wedge_sdk::{IntoResponse, StatusCode};
///
/// let response = (StatusCode::CREATED, "made it").into_response();
/// assert_eq!(response.status(), StatusCode::CREATED);
/// assert_eq!(response.headers()["content-type"], "text/plain; charset=utf-8");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a Wedge response",
    label = "a handler returns something that implements `wedge_sdk::IntoResponse`",
    note = "return a `Response`, `&'static str`, `String`, `Json<T>`, `StatusCode`, `Redirect`, \
            `(StatusCode, T)`, or `Result<T, wedge_sdk::Error>` of one of those"
)]
pub trait IntoResponse {
    /// Builds the response.
    ///
    /// ```
    /// use wedge_sdk::{IntoResponse, Json, StatusCode};
    ///
    /// let response = Json(vec![1, 2, 3]).into_response();
    /// assert_eq!(response.headers()["content-type"], "application/json");
    /// assert_eq!(StatusCode::GONE.into_response().status(), StatusCode::GONE);
    /// ```
    fn into_response(self) -> Response;
}

impl<B: Into<Body>> IntoResponse for http::Response<B> {
    fn into_response(self) -> Response {
        self.map(Into::into)
    }
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response {
        text_response(self)
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        text_response(self)
    }
}

impl IntoResponse for Vec<u8> {
    fn into_response(self) -> Response {
        with_content_type(self.into(), "application/octet-stream")
    }
}

impl IntoResponse for Bytes {
    fn into_response(self) -> Response {
        with_content_type(self.into(), "application/octet-stream")
    }
}

impl IntoResponse for StatusCode {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = self;
        response
    }
}

/// Something that changes a response a handler returns: its status, or
/// headers such as `Set-Cookie` or `Cache-Control`. Put parts before the
/// body in a tuple, `(part, body)` or `(part, part, body)`; they apply in
/// order, after the body's own response is built, so a part wins over what
/// the body set.
///
/// | part | sets |
/// |---|---|
/// | [`StatusCode`] | the status |
/// | [`SetCookies`](crate::SetCookies) | a `Set-Cookie` header per cookie |
/// | [`CacheControl`](crate::CacheControl) | `Cache-Control` |
///
/// ```
/// use wedge_sdk::{CacheControl, IntoResponse, StatusCode};
///
/// let response = (StatusCode::CREATED, CacheControl::no_store(), "made it").into_response();
/// assert_eq!(response.status(), StatusCode::CREATED);
/// assert_eq!(response.headers()["cache-control"], "no-store");
/// ```
pub trait ResponsePart {
    /// Changes `response`. A handler that builds a [`Response`] itself
    /// applies parts with this.
    ///
    /// ```
    /// use wedge_sdk::{CacheControl, Response, ResponsePart as _};
    ///
    /// let mut response = Response::new("hello".into());
    /// CacheControl::public().max_age(60).apply(&mut response);
    /// assert_eq!(response.headers()["cache-control"], "public, max-age=60");
    /// ```
    fn apply(self, response: &mut Response);
}

impl ResponsePart for StatusCode {
    fn apply(self, response: &mut Response) {
        *response.status_mut() = self;
    }
}

impl<P: ResponsePart, T: IntoResponse> IntoResponse for (P, T) {
    fn into_response(self) -> Response {
        let (part, inner) = self;
        let mut response = inner.into_response();
        part.apply(&mut response);
        response
    }
}

impl<P1: ResponsePart, P2: ResponsePart, T: IntoResponse> IntoResponse for (P1, P2, T) {
    fn into_response(self) -> Response {
        let (first, second, inner) = self;
        let mut response = inner.into_response();
        first.apply(&mut response);
        second.apply(&mut response);
        response
    }
}

impl<P1, P2, P3, T> IntoResponse for (P1, P2, P3, T)
where
    P1: ResponsePart,
    P2: ResponsePart,
    P3: ResponsePart,
    T: IntoResponse,
{
    fn into_response(self) -> Response {
        let (first, second, third, inner) = self;
        let mut response = inner.into_response();
        first.apply(&mut response);
        second.apply(&mut response);
        third.apply(&mut response);
        response
    }
}

impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(value) => value.into_response(),
            Err(error) => error.into_response(),
        }
    }
}

/// A `200` with `body` as `text/plain; charset=utf-8`.
pub(crate) fn text_response(body: impl Into<Body>) -> Response {
    with_content_type(body.into(), "text/plain; charset=utf-8")
}

pub(crate) fn with_content_type(body: Body, content_type: &'static str) -> Response {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A response body built in memory, as text.
    pub(crate) fn body_text(response: Response) -> String {
        let mut body = response.into_body();
        let bytes = futures_lite::future::block_on(body.contents())
            .expect("an in-memory body")
            .to_vec();
        String::from_utf8(bytes).expect("a UTF-8 body")
    }

    #[test]
    fn text_is_plain_utf8() {
        let response = "hi".into_response();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        assert_eq!(body_text(response), "hi");
    }

    #[test]
    fn bytes_are_octet_streams() {
        let response = vec![1u8, 2].into_response();
        assert_eq!(response.headers()[CONTENT_TYPE], "application/octet-stream");
    }

    #[test]
    fn a_status_is_an_empty_response() {
        let response = StatusCode::NO_CONTENT.into_response();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_eq!(body_text(response), "");
    }

    #[test]
    fn a_status_pair_overrides_the_inner_status() {
        let response = (StatusCode::ACCEPTED, String::from("queued")).into_response();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(body_text(response), "queued");
    }

    #[test]
    fn a_result_answers_with_either_side() {
        let ok: Result<&'static str, StatusCode> = Ok("fine");
        assert_eq!(ok.into_response().status(), StatusCode::OK);
        let err: Result<&'static str, StatusCode> = Err(StatusCode::CONFLICT);
        assert_eq!(err.into_response().status(), StatusCode::CONFLICT);
    }
}

//! [`Redirect`]: answer with a `Location` to go to instead.

use http::header::LOCATION;
use http::{HeaderValue, StatusCode};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use wstd::http::Body;

use crate::response::{IntoResponse, Response};

/// What a `Location` percent-encodes, as a browser does when it follows a
/// link: control characters, spaces and (always) non-ASCII. What is left is
/// visible ASCII, which every header value accepts.
const NOT_IN_A_LOCATION: &AsciiSet = &CONTROLS.add(b' ');

/// A redirect: a `3xx` status with a `Location` header and no body, as
/// Next.js's `redirect()` and `permanentRedirect()`.
///
/// | constructor | status | the client's next request |
/// |---|---|---|
/// | [`Redirect::temporary`] | `307 Temporary Redirect` | the same method and body, to `location`; not cached |
/// | [`Redirect::permanent`] | `308 Permanent Redirect` | the same method and body; browsers and caches remember it |
/// | [`Redirect::see_other`] | `303 See Other` | a `GET` to `location`: the answer to a form `POST` |
///
/// `location` is a URL or a path (`/thanks`, `https://example.com/a`),
/// sent as given except that control characters, spaces and non-ASCII
/// characters are percent-encoded (`/café` goes out as `/caf%C3%A9`), so
/// building a redirect never fails: any string makes a valid header.
///
/// ```
/// use wedge_sdk::{IntoResponse, Redirect, Request, RequestExt as _, StatusCode};
///
/// /// GET /go/docs: 307 to the docs; any other name: 404.
/// async fn go(request: Request) -> Result<Redirect, StatusCode> {
///     match request.param::<String>("name").as_deref() {
///         Ok("docs") => Ok(Redirect::temporary("https://docs.example.com/")),
///         _ => Err(StatusCode::NOT_FOUND),
///     }
/// }
///
/// let response = Redirect::see_other("/thanks").into_response();
/// assert_eq!(response.status(), StatusCode::SEE_OTHER);
/// assert_eq!(response.headers()["location"], "/thanks");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    status: StatusCode,
    location: HeaderValue,
}

impl Redirect {
    /// A `307 Temporary Redirect` to `location`: the client repeats its
    /// request, method and body, there, and keeps using this URL.
    ///
    /// ```
    /// use wedge_sdk::{Redirect, StatusCode};
    ///
    /// let redirect = Redirect::temporary("/login?next=%2Fsettings");
    /// assert_eq!(redirect.status(), StatusCode::TEMPORARY_REDIRECT);
    /// assert_eq!(redirect.location(), "/login?next=%2Fsettings");
    /// ```
    pub fn temporary(location: impl AsRef<str>) -> Redirect {
        Redirect::with_status(StatusCode::TEMPORARY_REDIRECT, location.as_ref())
    }

    /// A `308 Permanent Redirect` to `location`: the resource has moved for
    /// good; the method and body are kept, and browsers and caches may
    /// remember it.
    ///
    /// ```
    /// use wedge_sdk::{Redirect, StatusCode};
    ///
    /// let redirect = Redirect::permanent("/new-page");
    /// assert_eq!(redirect.status(), StatusCode::PERMANENT_REDIRECT);
    /// ```
    pub fn permanent(location: impl AsRef<str>) -> Redirect {
        Redirect::with_status(StatusCode::PERMANENT_REDIRECT, location.as_ref())
    }

    /// A `303 See Other` to `location`: the client fetches it with `GET`.
    /// The answer to a form `POST` (post, redirect, get), so that reloading
    /// the page does not post again.
    ///
    /// ```
    /// use wedge_sdk::{Redirect, StatusCode};
    ///
    /// let redirect = Redirect::see_other("/thanks");
    /// assert_eq!(redirect.status(), StatusCode::SEE_OTHER);
    /// ```
    pub fn see_other(location: impl AsRef<str>) -> Redirect {
        Redirect::with_status(StatusCode::SEE_OTHER, location.as_ref())
    }

    /// The status: `303`, `307` or `308`.
    ///
    /// ```
    /// # use wedge_sdk::{Redirect, StatusCode};
    /// assert_eq!(Redirect::temporary("/").status(), StatusCode::TEMPORARY_REDIRECT);
    /// ```
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `Location` sent, percent-encoded where it had to be.
    ///
    /// ```
    /// # use wedge_sdk::Redirect;
    /// assert_eq!(Redirect::temporary("/a b/café").location(), "/a%20b/caf%C3%A9");
    /// ```
    pub fn location(&self) -> &str {
        self.location
            .to_str()
            .expect("bug: a Location is percent-encoded to visible ASCII")
    }

    fn with_status(status: StatusCode, location: &str) -> Redirect {
        let encoded = utf8_percent_encode(location, NOT_IN_A_LOCATION).to_string();
        let location = HeaderValue::try_from(encoded)
            .expect("bug: a percent-encoded Location is visible ASCII, a valid header value");
        Redirect { status, location }
    }
}

impl IntoResponse for Redirect {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = self.status;
        response.headers_mut().insert(LOCATION, self.location);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_status_and_location() {
        let cases = [
            (Redirect::temporary("/a"), 307),
            (Redirect::permanent("/a"), 308),
            (Redirect::see_other("/a"), 303),
        ];
        for (redirect, status) in cases {
            let response = redirect.into_response();
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(response.headers()[LOCATION], "/a");
            assert_eq!(crate::response::tests::body_text(response), "");
        }
    }

    #[test]
    fn a_location_is_kept_as_given_when_it_is_already_valid() {
        let url = "https://example.com/search?q=a%20b&x=1#top";
        assert_eq!(Redirect::temporary(url).location(), url);
    }

    #[test]
    fn what_no_header_may_hold_is_percent_encoded() {
        let cases = [
            ("/a b", "/a%20b"),
            ("/x\r\nSet-Cookie: evil=1", "/x%0D%0ASet-Cookie:%20evil=1"),
            ("/ünï", "/%C3%BCn%C3%AF"),
            ("/tab\there", "/tab%09here"),
        ];
        for (given, sent) in cases {
            assert_eq!(Redirect::see_other(given).location(), sent, "{given:?}");
        }
    }
}

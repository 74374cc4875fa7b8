//! Cookies: read the request's `Cookie` header, set and delete cookies
//! with `Set-Cookie`, on the [`cookie`] crate's [`Cookie`].

use cookie::Cookie;
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};

use crate::error::Error;
use crate::response::{IntoResponse as _, Response, ResponsePart};

/// The cookies of every `Cookie` header in `headers` (HTTP/2 may send
/// several), in order. A pair that does not parse is skipped, as browsers
/// and servers do.
pub(crate) fn parse(headers: &HeaderMap) -> Vec<Cookie<'static>> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .map(Cookie::into_owned)
        .collect()
}

/// Cookies to set, or delete, with the response: one `Set-Cookie` header
/// each. As Next.js's `cookies().set(…)` and `cookies().delete(…)`, or
/// axum-extra's `CookieJar`, it goes before the body in the tuple a handler
/// returns (it is a [`ResponsePart`]).
///
/// A cookie is a [`Cookie`] (re-exported from the [`cookie`] crate), built
/// with its attributes: `Cookie::build(("session", id)).http_only(true)
/// .secure(true).same_site(SameSite::Lax).max_age(…).domain(…)`. A cookie
/// with no `Path` gets `Path=/`, as in Next.js, so that it reaches every
/// route of the site and deleting it later names the same cookie. A value
/// is sent as given: keep it to letters, digits and `-._~+/=` (a
/// percent-encoded, base64 or hex string). A cookie that cannot be a header
/// at all (a control character in it) turns the response into a `500`,
/// the cookie's name logged.
///
/// ```
/// use wedge_sdk::cookie::time::Duration;
/// use wedge_sdk::{Cookie, IntoResponse, SameSite, SetCookies};
///
/// async fn login() -> impl IntoResponse {
///     let session = Cookie::build(("session", "ada"))
///         .http_only(true)
///         .same_site(SameSite::Lax)
///         .max_age(Duration::hours(8));
///     (SetCookies::new().set(session), "welcome, ada")
/// }
///
/// async fn logout() -> impl IntoResponse {
///     (SetCookies::new().delete("session"), "bye")
/// }
///
/// let cookies = SetCookies::new().set(("theme", "dark")).delete("session");
/// let response = (cookies, "ok").into_response();
/// let set: Vec<_> = response.headers().get_all("set-cookie").iter().collect();
/// assert_eq!(set[0], "theme=dark; Path=/");
/// assert!(set[1].to_str().unwrap().starts_with("session=; Path=/; Max-Age=0; Expires="));
/// ```
#[derive(Debug, Clone, Default)]
#[must_use = "cookies are set only when returned with the response"]
pub struct SetCookies {
    cookies: Vec<Cookie<'static>>,
}

impl SetCookies {
    /// No cookies yet.
    ///
    /// ```
    /// let cookies = wedge_sdk::SetCookies::new();
    /// ```
    pub fn new() -> SetCookies {
        SetCookies::default()
    }

    /// Sets `cookie`: a [`Cookie`], its builder, or a `(name, value)` pair.
    /// It gets `Path=/` if it names no path.
    ///
    /// ```
    /// use wedge_sdk::{Cookie, SameSite, SetCookies};
    ///
    /// let user = String::from("ada");
    /// let cookies = SetCookies::new()
    ///     .set(Cookie::build(("session", user)).http_only(true).secure(true).same_site(SameSite::Strict))
    ///     .set(("theme", "dark"));
    /// ```
    pub fn set(mut self, cookie: impl Into<Cookie<'static>>) -> SetCookies {
        let mut cookie = cookie.into();
        if cookie.path().is_none() {
            cookie.set_path("/");
        }
        self.cookies.push(cookie);
        self
    }

    /// Deletes `cookie` from the client: sets it with an empty value,
    /// `Max-Age=0` and an `Expires` in the past. A cookie is told apart by
    /// its name, path and domain: delete one set with a `Path` or `Domain`
    /// other than `/` and none with a cookie that names the same ones.
    ///
    /// ```
    /// use wedge_sdk::{Cookie, SetCookies};
    ///
    /// let cookies = SetCookies::new()
    ///     .delete("session")
    ///     .delete(Cookie::build("cart").path("/shop").domain("example.com"));
    /// ```
    pub fn delete(self, cookie: impl Into<Cookie<'static>>) -> SetCookies {
        let mut cookie = cookie.into();
        cookie.make_removal();
        self.set(cookie)
    }

    /// The cookies to set, deletions included, in order.
    ///
    /// ```
    /// # use wedge_sdk::SetCookies;
    /// let cookies = SetCookies::new().set(("a", "1")).delete("b");
    /// assert_eq!(cookies.iter().map(|c| c.name()).collect::<Vec<_>>(), ["a", "b"]);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = &Cookie<'static>> {
        self.cookies.iter()
    }
}

impl ResponsePart for SetCookies {
    fn apply(self, response: &mut Response) {
        for cookie in self.cookies {
            match HeaderValue::try_from(cookie.to_string()) {
                Ok(value) => {
                    response.headers_mut().append(SET_COOKIE, value);
                }
                Err(_) => {
                    let why = format!(
                        "the cookie `{}` cannot be sent: a control character in its \
                         name, value or attributes",
                        cookie.name().escape_debug()
                    );
                    *response = Error::internal(why).into_response();
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cookie::SameSite;
    use cookie::time::Duration;
    use http::StatusCode;

    use super::*;
    use crate::{Body, Request, RequestExt as _};

    fn request(cookie_headers: &[&str]) -> Request {
        let mut request = http::Request::get("/");
        for value in cookie_headers {
            request = request.header(COOKIE, *value);
        }
        request.body(Body::empty()).expect("a request")
    }

    fn set_cookie_headers(response: &Response) -> Vec<String> {
        response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|value| value.to_str().expect("ASCII").to_owned())
            .collect()
    }

    #[test]
    fn cookies_are_read_from_every_cookie_header() {
        let request = request(&["a=1; session=ada", "theme=dark"]);
        let names: Vec<_> = request
            .cookies()
            .iter()
            .map(|cookie| format!("{}={}", cookie.name(), cookie.value()))
            .collect();
        assert_eq!(names, ["a=1", "session=ada", "theme=dark"]);
        assert_eq!(
            request.cookie("session").map(|c| c.value().to_owned()),
            Some("ada".into())
        );
        assert_eq!(request.cookie("missing"), None);
    }

    #[test]
    fn a_malformed_pair_is_skipped_and_the_rest_kept() {
        let request = request(&["=nameless; ok=1; ;"]);
        let cookies = request.cookies();
        assert_eq!(cookies.len(), 1, "{cookies:?}");
        assert_eq!(cookies[0].value(), "1");
    }

    #[test]
    fn no_cookie_header_is_no_cookies() {
        assert!(request(&[]).cookies().is_empty());
    }

    #[test]
    fn attributes_are_written_as_set() {
        let session = Cookie::build(("session", "ada"))
            .http_only(true)
            .secure(true)
            .same_site(SameSite::Lax)
            .max_age(Duration::seconds(3600))
            .domain("example.com")
            .path("/app");
        let response = (SetCookies::new().set(session), "hi").into_response();
        assert_eq!(
            set_cookie_headers(&response),
            [
                "session=ada; HttpOnly; SameSite=Lax; Secure; Path=/app; Domain=example.com; Max-Age=3600"
            ]
        );
        assert_eq!(crate::response::tests::body_text(response), "hi");
    }

    #[test]
    fn a_deletion_empties_the_cookie_and_expires_it() {
        let response =
            (SetCookies::new().delete("session"), StatusCode::NO_CONTENT).into_response();
        let headers = set_cookie_headers(&response);
        assert_eq!(headers.len(), 1);
        let header = &headers[0];
        assert!(
            header.starts_with("session=; Path=/; Max-Age=0; Expires="),
            "{header}"
        );
        let expires = header.rsplit("Expires=").next().expect("an Expires");
        let year: i32 = expires
            .split(' ')
            .nth(3)
            .expect("a year")
            .parse()
            .expect("a number");
        let now = cookie::time::OffsetDateTime::now_utc().year();
        assert!(year < now, "{header}");
    }

    #[test]
    fn a_cookie_that_cannot_be_a_header_is_a_500() {
        let response = (SetCookies::new().set(("bad", "a\nb")), "hi").into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(set_cookie_headers(&response).is_empty());
    }
}

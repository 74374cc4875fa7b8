//! [`Cors`]: which other sites' pages may call a route from a browser.

use std::time::Duration;

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::Request;
use crate::response::Response;

/// Cross-origin resource sharing for a [`Router`](crate::Router), added
/// with [`Router::cors`](crate::Router::cors): the `Access-Control-*`
/// headers that let a page on another origin (`https://app.example.com`)
/// call the route with `fetch`.
///
/// What it does, for a request with an `Origin` header:
///
/// - A preflight (`OPTIONS` with `Access-Control-Request-Method`) is
///   answered `204 No Content` without calling a handler. From an allowed
///   origin it carries `Access-Control-Allow-Origin`, `-Allow-Methods`
///   (the [configured](Cors::allow_methods) methods, by default the
///   router's), `-Allow-Headers`, `-Allow-Credentials` and `-Max-Age` as
///   configured; from any other origin it carries none of them, and the
///   browser refuses the call. (A `204` either way: the answer does not tell
///   a stranger which origins are allowed.)
/// - Any other request reaches its handler; if its origin is allowed, the
///   response gets `Access-Control-Allow-Origin` (with
///   `-Allow-Credentials` and `-Expose-Headers` as configured). From
///   another origin the response goes out without them, and the browser
///   keeps it from the page.
/// - Unless any origin is allowed, every response carries `Vary: Origin`
///   (added to any `Vary` the handler set), so that a cache keeps one copy
///   per origin.
///
/// Requests without `Origin` (same-origin page loads, curl, servers) are
/// routed as if there were no `Cors`.
///
/// Origins compare whole and ignoring ASCII case: `https://app.example.com`
/// allows neither `http://app.example.com` nor
/// `https://app.example.com:8443`.
///
/// ```
/// use std::time::Duration;
/// use wedge_sdk::{Cors, Json, Method, Request, Router};
///
/// async fn list(_request: Request) -> Json<Vec<&'static str>> {
///     Json(vec!["a", "b"])
/// }
///
/// #[wedge_sdk::handler]
/// fn routes() -> Router {
///     Router::new().get(list).cors(
///         Cors::new()
///             .allow_origin("https://app.example.com")
///             .allow_methods([Method::GET])
///             .allow_headers(["content-type", "authorization"])
///             .allow_credentials(true)
///             .max_age(Duration::from_secs(600)),
///     )
/// }
/// ```
///
/// A configuration that breaks the CORS rules panics with a message that
/// says why when the router is built (on the first request, then, with the
/// message in the log): an origin or header name that is not one, or
/// [`allow_credentials`](Cors::allow_credentials) with
/// [any origin](Cors::any), which the standard forbids (browsers refuse
/// `Access-Control-Allow-Origin: *` with credentials); list the origins
/// instead.
#[derive(Debug, Clone, Default)]
#[must_use = "a Cors does nothing until given to Router::cors"]
pub struct Cors {
    any_origin: bool,
    origins: Vec<HeaderValue>,
    methods: Option<Vec<Method>>,
    headers: Vec<HeaderName>,
    expose: Vec<HeaderName>,
    credentials: bool,
    max_age: Option<Duration>,
}

impl Cors {
    /// Allows no origin yet: add them with [`allow_origin`](Cors::allow_origin).
    ///
    /// ```
    /// let cors = wedge_sdk::Cors::new().allow_origin("https://app.example.com");
    /// ```
    pub fn new() -> Cors {
        Cors::default()
    }

    /// Allows every origin (`Access-Control-Allow-Origin: *`): for a public
    /// API that needs no cookies or credentials.
    ///
    /// ```
    /// let cors = wedge_sdk::Cors::any();
    /// ```
    pub fn any() -> Cors {
        Cors::new().allow_any_origin()
    }

    /// Allows every origin, as [`Cors::any`].
    ///
    /// ```
    /// let cors = wedge_sdk::Cors::new().allow_any_origin();
    /// ```
    pub fn allow_any_origin(mut self) -> Cors {
        self.any_origin = true;
        self
    }

    /// Allows `origin`, a scheme, host and port as browsers send it:
    /// `https://app.example.com`, `http://localhost:5173`. Call it once per
    /// origin.
    ///
    /// # Panics
    ///
    /// If `origin` is not one: a path, a trailing `/`, or a character no
    /// header may hold.
    ///
    /// ```
    /// let cors = wedge_sdk::Cors::new()
    ///     .allow_origin("https://app.example.com")
    ///     .allow_origin("http://localhost:5173");
    /// ```
    pub fn allow_origin(mut self, origin: &str) -> Cors {
        let (scheme, host) = origin.split_once("://").unwrap_or_else(|| {
            panic!("Cors::allow_origin({origin:?}): an origin is scheme://host[:port]")
        });
        assert!(
            !scheme.is_empty() && !host.is_empty() && !host.contains('/'),
            "Cors::allow_origin({origin:?}): an origin is scheme://host[:port], \
             with no path (not even a trailing `/`)"
        );
        let value = HeaderValue::from_str(origin)
            .unwrap_or_else(|_| panic!("Cors::allow_origin({origin:?}): not a valid header value"));
        self.origins.push(value);
        self
    }

    /// The methods a preflight allows (`Access-Control-Allow-Methods`). By
    /// default, the methods the router has handlers for (with `HEAD` for
    /// `GET`).
    ///
    /// ```
    /// use wedge_sdk::{Cors, Method};
    ///
    /// let cors = Cors::any().allow_methods([Method::GET, Method::POST]);
    /// ```
    pub fn allow_methods(mut self, methods: impl IntoIterator<Item = Method>) -> Cors {
        self.methods = Some(methods.into_iter().collect());
        self
    }

    /// The request headers a preflight allows (`Access-Control-Allow-Headers`),
    /// beyond the few browsers always allow: `content-type` for a JSON body,
    /// `authorization`, your own. None by default.
    ///
    /// # Panics
    ///
    /// If one is not a header name.
    ///
    /// ```
    /// let cors = wedge_sdk::Cors::any().allow_headers(["content-type", "x-api-key"]);
    /// ```
    pub fn allow_headers<I>(mut self, headers: I) -> Cors
    where
        I: IntoIterator<Item: AsRef<str>>,
    {
        self.headers.extend(header_names("allow_headers", headers));
        self
    }

    /// The response headers the page may read (`Access-Control-Expose-Headers`),
    /// beyond the few browsers always expose. None by default.
    ///
    /// # Panics
    ///
    /// If one is not a header name.
    ///
    /// ```
    /// let cors = wedge_sdk::Cors::any().expose_headers(["x-request-id"]);
    /// ```
    pub fn expose_headers<I>(mut self, headers: I) -> Cors
    where
        I: IntoIterator<Item: AsRef<str>>,
    {
        self.expose.extend(header_names("expose_headers", headers));
        self
    }

    /// Whether the page may send cookies and `Authorization`
    /// (`fetch(…, {credentials: "include"})`) and read the answer:
    /// `Access-Control-Allow-Credentials: true`. Off by default; refused
    /// with [any origin](Cors::any) (see [`Cors`]).
    ///
    /// ```
    /// let cors = wedge_sdk::Cors::new()
    ///     .allow_origin("https://app.example.com")
    ///     .allow_credentials(true);
    /// ```
    pub fn allow_credentials(mut self, allow: bool) -> Cors {
        self.credentials = allow;
        self
    }

    /// How long a browser may keep a preflight's answer
    /// (`Access-Control-Max-Age`, in whole seconds). Unset, browsers keep
    /// it 5 seconds.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let cors = wedge_sdk::Cors::any().max_age(Duration::from_secs(3600));
    /// ```
    pub fn max_age(mut self, max_age: Duration) -> Cors {
        self.max_age = Some(max_age);
        self
    }

    /// Panics if the configuration breaks the CORS rules.
    pub(crate) fn check(&self) {
        assert!(
            !(self.any_origin && self.credentials),
            "Cors: allow_credentials(true) with any origin is refused: browsers reject \
             `Access-Control-Allow-Origin: *` on a request with credentials. \
             List the origins with allow_origin(…) instead"
        );
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        self.any_origin
            || self
                .origins
                .iter()
                .any(|allowed| allowed.as_bytes().eq_ignore_ascii_case(origin.as_bytes()))
    }

    /// `origin`, if this `Cors` allows it.
    fn allowed<'o>(&self, origin: Option<&'o HeaderValue>) -> Option<&'o HeaderValue> {
        origin.filter(|origin| self.allows(origin))
    }

    /// Whether `request` is a preflight: an answer from [`Cors::preflight`]
    /// replaces the handler's.
    pub(crate) fn is_preflight(request: &Request) -> bool {
        request.method() == Method::OPTIONS
            && request.headers().contains_key(ORIGIN)
            && request
                .headers()
                .contains_key(ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// The preflight's answer's headers; `router_methods` is what
    /// `Access-Control-Allow-Methods` lists unless configured.
    pub(crate) fn preflight(
        &self,
        request: &Request,
        router_methods: &str,
        response: &mut Response,
    ) {
        let headers = response.headers_mut();
        self.vary(
            headers,
            &[
                "origin",
                "access-control-request-method",
                "access-control-request-headers",
            ],
        );
        let Some(origin) = self.allowed(request.headers().get(ORIGIN)) else {
            return;
        };
        self.allow_origin_headers(origin, headers);
        let methods = match &self.methods {
            Some(methods) => methods
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            None => router_methods.to_owned(),
        };
        headers.insert(ACCESS_CONTROL_ALLOW_METHODS, header_value(&methods));
        if !self.headers.is_empty() {
            headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, joined(&self.headers));
        }
        if let Some(max_age) = self.max_age {
            headers.insert(ACCESS_CONTROL_MAX_AGE, max_age.as_secs().into());
        }
    }

    /// Adds the CORS headers to a handler's `response` to a request from
    /// `origin` (its `Origin` header).
    pub(crate) fn actual(&self, origin: Option<&HeaderValue>, response: &mut Response) {
        let headers = response.headers_mut();
        self.vary(headers, &["origin"]);
        let Some(origin) = self.allowed(origin) else {
            return;
        };
        self.allow_origin_headers(origin, headers);
        if !self.expose.is_empty() {
            headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, joined(&self.expose));
        }
    }

    fn allow_origin_headers(&self, origin: &HeaderValue, headers: &mut HeaderMap) {
        let allowed = if self.any_origin {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        };
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        if self.credentials {
            headers.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }

    /// Adds `names` to `Vary` unless any origin is allowed (then the answer
    /// is the same for all) or `Vary` already names them or `*`.
    fn vary(&self, headers: &mut HeaderMap, names: &[&str]) {
        if self.any_origin {
            return;
        }
        let present: Vec<String> = headers
            .get_all(VARY)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(|name| name.trim().to_ascii_lowercase())
            .collect();
        if present.iter().any(|name| name == "*") {
            return;
        }
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|name| !present.iter().any(|p| p == name))
            .collect();
        if !missing.is_empty() {
            headers.append(VARY, header_value(&missing.join(", ")));
        }
    }
}

fn header_names<I>(method: &str, names: I) -> Vec<HeaderName>
where
    I: IntoIterator<Item: AsRef<str>>,
{
    names
        .into_iter()
        .map(|name| {
            let name = name.as_ref();
            HeaderName::try_from(name)
                .unwrap_or_else(|_| panic!("Cors::{method}: {name:?} is not a header name"))
        })
        .collect()
}

fn joined(names: &[HeaderName]) -> HeaderValue {
    header_value(
        &names
            .iter()
            .map(HeaderName::as_str)
            .collect::<Vec<_>>()
            .join(", "),
    )
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).expect("bug: header and method names are tokens, valid in a header")
}

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use http::header::ALLOW;

    use super::*;
    use crate::response::tests::body_text;
    use crate::{Body, Handler as _, Router};

    const APP: &str = "https://app.example.com";

    async fn list(_request: Request) -> &'static str {
        "list"
    }

    fn router(cors: Cors) -> Router {
        Router::new().get(list).cors(cors)
    }

    fn call(router: &Router, method: Method, headers: &[(&str, &str)]) -> Response {
        let mut request = http::Request::builder().method(method).uri("/api/list");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Body::empty()).expect("a request");
        futures_lite::future::block_on(router.call(request))
    }

    fn header<'r>(response: &'r Response, name: &str) -> Option<&'r str> {
        response
            .headers()
            .get(name)
            .map(|value| value.to_str().expect("ASCII"))
    }

    fn cors_headers(response: &Response) -> Vec<&str> {
        let mut names: Vec<&str> = response
            .headers()
            .keys()
            .map(HeaderName::as_str)
            .filter(|name| name.starts_with("access-control-"))
            .collect();
        names.sort_unstable();
        names
    }

    fn preflight(router: &Router, origin: &str) -> Response {
        call(
            router,
            Method::OPTIONS,
            &[("origin", origin), ("access-control-request-method", "GET")],
        )
    }

    #[test]
    fn a_preflight_from_an_allowed_origin_is_answered_without_the_handler() {
        let cors = Cors::new()
            .allow_origin(APP)
            .allow_headers(["content-type", "x-api-key"])
            .allow_credentials(true)
            .max_age(Duration::from_secs(600));
        let response = preflight(&router(cors), APP);
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_eq!(header(&response, "access-control-allow-origin"), Some(APP));
        assert_eq!(
            header(&response, "access-control-allow-methods"),
            Some("GET, HEAD, OPTIONS")
        );
        assert_eq!(
            header(&response, "access-control-allow-headers"),
            Some("content-type, x-api-key")
        );
        assert_eq!(
            header(&response, "access-control-allow-credentials"),
            Some("true")
        );
        assert_eq!(header(&response, "access-control-max-age"), Some("600"));
        assert_eq!(
            header(&response, "vary"),
            Some("origin, access-control-request-method, access-control-request-headers")
        );
        assert_eq!(
            header(&response, ALLOW.as_str()),
            Some("GET, HEAD, OPTIONS")
        );
        assert_eq!(body_text(response), "");
    }

    #[test]
    fn configured_methods_replace_the_routers() {
        let cors = Cors::new()
            .allow_origin(APP)
            .allow_methods([Method::GET, Method::PUT]);
        let response = preflight(&router(cors), APP);
        assert_eq!(
            header(&response, "access-control-allow-methods"),
            Some("GET, PUT")
        );
    }

    #[test]
    fn a_preflight_from_another_origin_gets_no_cors_headers() {
        let router = router(Cors::new().allow_origin(APP));
        for origin in [
            "https://evil.example",
            "http://app.example.com",
            "https://app.example.com:8443",
        ] {
            let response = preflight(&router, origin);
            assert_eq!(response.status(), StatusCode::NO_CONTENT, "{origin}");
            assert_eq!(cors_headers(&response), Vec::<&str>::new(), "{origin}");
        }
        let response = preflight(&router, "HTTPS://APP.EXAMPLE.COM");
        assert_eq!(
            cors_headers(&response),
            [
                "access-control-allow-methods",
                "access-control-allow-origin"
            ]
        );
    }

    #[test]
    fn an_actual_request_from_an_allowed_origin_gets_allow_origin_and_vary() {
        let cors = Cors::new()
            .allow_origin("https://other.example")
            .allow_origin(APP)
            .allow_credentials(true)
            .expose_headers(["x-request-id"]);
        let response = call(&router(cors), Method::GET, &[("origin", APP)]);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "access-control-allow-origin"), Some(APP));
        assert_eq!(
            header(&response, "access-control-allow-credentials"),
            Some("true")
        );
        assert_eq!(
            header(&response, "access-control-expose-headers"),
            Some("x-request-id")
        );
        assert_eq!(header(&response, "vary"), Some("origin"));
        assert_eq!(body_text(response), "list");
    }

    #[test]
    fn an_actual_request_from_another_origin_is_answered_without_cors_headers() {
        let router = router(Cors::new().allow_origin(APP));
        let response = call(&router, Method::GET, &[("origin", "https://evil.example")]);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(cors_headers(&response), Vec::<&str>::new());
        assert_eq!(header(&response, "vary"), Some("origin"));
    }

    #[test]
    fn requests_without_origin_are_routed_as_usual() {
        let router = router(Cors::new().allow_origin(APP));
        let response = call(&router, Method::GET, &[]);
        assert_eq!(body_text(response), "list");
        let options = call(&router, Method::OPTIONS, &[]);
        assert_eq!(options.status(), StatusCode::NO_CONTENT);
        assert_eq!(cors_headers(&options), Vec::<&str>::new());
        let post = call(&router, Method::POST, &[("origin", APP)]);
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn any_origin_is_a_star_without_vary() {
        let router = router(Cors::any());
        let response = call(
            &router,
            Method::GET,
            &[("origin", "https://anyone.example")],
        );
        assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));
        assert_eq!(header(&response, "vary"), None);
        let response = preflight(&router, "https://anyone.example");
        assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));
    }

    #[test]
    fn vary_is_added_to_the_handlers_once() {
        async fn varies(_request: Request) -> Response {
            http::Response::builder()
                .header(VARY, "Accept-Encoding")
                .header(VARY, "Origin")
                .body(Body::empty())
                .expect("a response")
        }
        let router = Router::new()
            .get(varies)
            .cors(Cors::new().allow_origin(APP));
        let response = call(&router, Method::GET, &[("origin", APP)]);
        let vary: Vec<_> = response.headers().get_all(VARY).iter().collect();
        assert_eq!(vary, ["Accept-Encoding", "Origin"]);
    }

    #[test]
    #[should_panic(expected = "allow_credentials(true) with any origin is refused")]
    fn credentials_with_any_origin_panic_when_the_router_is_built() {
        let _ = router(Cors::any().allow_credentials(true));
    }

    #[test]
    #[should_panic(expected = "an origin is scheme://host[:port], with no path")]
    fn an_origin_with_a_path_panics() {
        let _ = Cors::new().allow_origin("https://app.example.com/");
    }

    #[test]
    #[should_panic(expected = "\"bad header\" is not a header name")]
    fn a_header_that_is_not_a_name_panics() {
        let _ = Cors::new().allow_headers(["bad header"]);
    }
}

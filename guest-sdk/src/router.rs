//! [`Router`]: one handler per HTTP method, as a Next.js `route.js` exports
//! `GET`, `POST`, … from one file.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use http::header::{ALLOW, ORIGIN};
use http::{HeaderValue, Method, StatusCode};
use wstd::http::Body;

use crate::Request;
use crate::cors::Cors;
use crate::response::{IntoResponse, Response};

/// A boxed handler future. Not `Send`: a component runs on one thread.
type ResponseFuture = Pin<Box<dyn Future<Output = Response>>>;

/// Something that answers a request: any `async fn(Request) -> impl
/// IntoResponse`, and a [`Router`].
///
/// ```
/// use wedge_sdk::{Handler, Request};
///
/// async fn hello(_request: Request) -> &'static str {
///     "hello"
/// }
///
/// fn takes_a_handler(_handler: impl Handler) {}
/// takes_a_handler(hello);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a Wedge handler",
    note = "a handler is an `async fn(request: Request) -> impl IntoResponse`, or a `Router`"
)]
pub trait Handler: 'static {
    /// Answers `request`. Handlers are tested like any async function:
    ///
    /// ```
    /// use wedge_sdk::{Body, Handler, Request, Router, StatusCode, http};
    ///
    /// async fn list(_request: Request) -> &'static str {
    ///     "[]"
    /// }
    ///
    /// let router = Router::new().get(list);
    /// let request = http::Request::delete("/api/todos").body(Body::empty()).unwrap();
    /// let response = wedge_sdk::wstd::runtime::block_on(router.call(request));
    /// assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    /// ```
    fn call(&self, request: Request) -> ResponseFuture;
}

impl<F, Fut> Handler for F
where
    F: Fn(Request) -> Fut + 'static,
    Fut: Future<Output: IntoResponse> + 'static,
{
    fn call(&self, request: Request) -> ResponseFuture {
        let future = self(request);
        Box::pin(async move { future.await.into_response() })
    }
}

/// Sends each request to the handler registered for its method.
///
/// - A method with no handler gets `405 Method Not Allowed` with an `Allow`
///   header listing the methods that have one.
/// - `HEAD` runs the `GET` handler and drops its body (keeping its headers),
///   unless a `HEAD` handler is registered.
/// - `OPTIONS` gets `204 No Content` with `Allow`, unless an `OPTIONS`
///   handler is registered.
/// - With [`Router::cors`], CORS preflights are answered before any
///   handler, and responses to other origins get CORS headers: see [`Cors`].
///
/// Handlers are plain `async fn`s, as in axum or a Next.js route file.
/// Return the router from a plain `fn` marked [`#[handler]`](crate::handler):
///
/// ```
/// use wedge_sdk::{Request, Router};
///
/// async fn show(_request: Request) -> &'static str {
///     "one todo"
/// }
///
/// async fn remove(_request: Request) -> wedge_sdk::StatusCode {
///     wedge_sdk::StatusCode::NO_CONTENT
/// }
///
/// #[wedge_sdk::handler]
/// fn routes() -> Router {
///     Router::new().get(show).delete(remove)
/// }
/// ```
#[derive(Default)]
pub struct Router {
    routes: Vec<(Method, Box<dyn Handler>)>,
    cors: Option<Rc<Cors>>,
}

impl Router {
    /// A router with no handlers: every method but `OPTIONS` gets `405`.
    ///
    /// ```
    /// let router = wedge_sdk::Router::new();
    /// ```
    pub fn new() -> Router {
        Router::default()
    }

    /// Registers `handler` for `method`, replacing an earlier one.
    ///
    /// ```
    /// use wedge_sdk::{Request, Router, http::Method};
    ///
    /// async fn report(_request: Request) -> &'static str {
    ///     "noted"
    /// }
    ///
    /// let router = Router::new().on(Method::from_bytes(b"REPORT").unwrap(), report);
    /// ```
    pub fn on(mut self, method: Method, handler: impl Handler) -> Router {
        self.routes.retain(|(registered, _)| *registered != method);
        self.routes.push((method, Box::new(handler)));
        self
    }

    /// Registers `handler` for `GET` (and so for `HEAD`).
    ///
    /// ```
    /// # async fn list(_: wedge_sdk::Request) -> &'static str { "[]" }
    /// let router = wedge_sdk::Router::new().get(list);
    /// ```
    pub fn get(self, handler: impl Handler) -> Router {
        self.on(Method::GET, handler)
    }

    /// Registers `handler` for `POST`.
    ///
    /// ```
    /// # async fn create(_: wedge_sdk::Request) -> &'static str { "made" }
    /// let router = wedge_sdk::Router::new().post(create);
    /// ```
    pub fn post(self, handler: impl Handler) -> Router {
        self.on(Method::POST, handler)
    }

    /// Registers `handler` for `PUT`.
    ///
    /// ```
    /// # async fn replace(_: wedge_sdk::Request) -> &'static str { "replaced" }
    /// let router = wedge_sdk::Router::new().put(replace);
    /// ```
    pub fn put(self, handler: impl Handler) -> Router {
        self.on(Method::PUT, handler)
    }

    /// Registers `handler` for `PATCH`.
    ///
    /// ```
    /// # async fn update(_: wedge_sdk::Request) -> &'static str { "updated" }
    /// let router = wedge_sdk::Router::new().patch(update);
    /// ```
    pub fn patch(self, handler: impl Handler) -> Router {
        self.on(Method::PATCH, handler)
    }

    /// Registers `handler` for `DELETE`.
    ///
    /// ```
    /// # async fn remove(_: wedge_sdk::Request) -> &'static str { "gone" }
    /// let router = wedge_sdk::Router::new().delete(remove);
    /// ```
    pub fn delete(self, handler: impl Handler) -> Router {
        self.on(Method::DELETE, handler)
    }

    /// Answers CORS preflights and adds CORS headers to the handlers'
    /// responses, as `cors` says: see [`Cors`].
    ///
    /// # Panics
    ///
    /// If `cors` breaks the CORS rules: [any origin](Cors::any) with
    /// [credentials](Cors::allow_credentials).
    ///
    /// ```
    /// use wedge_sdk::{Cors, Request, Router};
    ///
    /// async fn list(_request: Request) -> &'static str {
    ///     "[]"
    /// }
    ///
    /// let router = Router::new().get(list).cors(Cors::new().allow_origin("https://app.example.com"));
    /// ```
    pub fn cors(mut self, cors: Cors) -> Router {
        cors.check();
        self.cors = Some(Rc::new(cors));
        self
    }

    /// The value of `Allow`: the registered methods, `HEAD` with `GET`, and
    /// `OPTIONS`, in a fixed order.
    fn allow(&self) -> String {
        let has = |method: &Method| self.routes.iter().any(|(m, _)| m == method);
        let mut allowed: Vec<&str> = self.routes.iter().map(|(m, _)| m.as_str()).collect();
        if has(&Method::GET) && !has(&Method::HEAD) {
            allowed.push(Method::HEAD.as_str());
        }
        if !has(&Method::OPTIONS) {
            allowed.push(Method::OPTIONS.as_str());
        }
        allowed.sort_unstable();
        allowed.join(", ")
    }

    fn handler(&self, method: &Method) -> Option<&dyn Handler> {
        self.routes
            .iter()
            .find(|(registered, _)| registered == method)
            .map(|(_, handler)| handler.as_ref())
    }

    fn with_allow(&self, status: StatusCode) -> Response {
        let mut response = status.into_response();
        let allow = HeaderValue::from_str(&self.allow())
            .expect("bug: method names are tokens, valid in a header");
        response.headers_mut().insert(ALLOW, allow);
        response
    }
}

impl Handler for Router {
    fn call(&self, request: Request) -> ResponseFuture {
        let Some(cors) = &self.cors else {
            return self.route(request);
        };
        if Cors::is_preflight(&request) {
            let mut response = self.with_allow(StatusCode::NO_CONTENT);
            cors.preflight(&request, &self.allow(), &mut response);
            return Box::pin(async move { response });
        }
        let origin = request.headers().get(ORIGIN).cloned();
        let cors = Rc::clone(cors);
        let response = self.route(request);
        Box::pin(async move {
            let mut response = response.await;
            cors.actual(origin.as_ref(), &mut response);
            response
        })
    }
}

impl Router {
    /// The handler's response to `request`, or the router's own.
    fn route(&self, request: Request) -> ResponseFuture {
        let method = request.method().clone();
        if let Some(handler) = self.handler(&method) {
            return handler.call(request);
        }
        if method == Method::HEAD
            && let Some(get) = self.handler(&Method::GET)
        {
            let response = get.call(request);
            return Box::pin(async move {
                let (parts, _body) = response.await.into_parts();
                Response::from_parts(parts, Body::empty())
            });
        }
        let status = if method == Method::OPTIONS {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::METHOD_NOT_ALLOWED
        };
        let response = self.with_allow(status);
        Box::pin(async move { response })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::tests::body_text;

    async fn list(_request: Request) -> &'static str {
        "list"
    }

    async fn create(_request: Request) -> (StatusCode, &'static str) {
        (StatusCode::CREATED, "created")
    }

    fn call(router: &Router, method: Method) -> Response {
        let request = http::Request::builder()
            .method(method)
            .body(Body::empty())
            .expect("a request");
        futures_lite::future::block_on(router.call(request))
    }

    #[test]
    fn each_method_reaches_its_handler() {
        let router = Router::new().get(list).post(create);
        assert_eq!(body_text(call(&router, Method::GET)), "list");
        let created = call(&router, Method::POST);
        assert_eq!(created.status(), StatusCode::CREATED);
    }

    #[test]
    fn other_methods_get_405_with_allow() {
        let router = Router::new().get(list).post(create);
        let response = call(&router, Method::DELETE);
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[ALLOW], "GET, HEAD, OPTIONS, POST");
    }

    #[test]
    fn head_runs_get_without_its_body() {
        let response = call(&Router::new().get(list), Method::HEAD);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; charset=utf-8"
        );
        assert_eq!(body_text(response), "");
    }

    #[test]
    fn head_without_get_is_405() {
        let response = call(&Router::new().post(create), Method::HEAD);
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[ALLOW], "OPTIONS, POST");
    }

    #[test]
    fn options_is_answered_unless_registered() {
        let response = call(&Router::new().get(list), Method::OPTIONS);
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_eq!(response.headers()[ALLOW], "GET, HEAD, OPTIONS");

        let router = Router::new().get(list).on(Method::OPTIONS, create);
        assert_eq!(call(&router, Method::OPTIONS).status(), StatusCode::CREATED);
    }

    #[test]
    fn a_later_registration_replaces_an_earlier_one() {
        let router = Router::new().get(create).get(list);
        assert_eq!(body_text(call(&router, Method::GET)), "list");
    }
}

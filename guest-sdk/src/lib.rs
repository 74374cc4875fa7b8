//! Write Wedge route handlers in Rust.
//!
//! A Wedge route is a WebAssembly component, built for `wasm32-wasip2`, that
//! exports `wasi:http/incoming-handler`; Wedge serves
//! `routes/api/users/[id].wasm` at `/api/users/42`. This crate makes writing
//! one feel like a Next.js route handler or an axum handler: an `async fn`
//! from a [`Request`] to anything that is [`IntoResponse`], on the [`http`]
//! crate's types and [`wstd`], the Bytecode Alliance's async library for
//! WASI 0.2. The result is a plain `wasi:http/proxy` component: any host
//! that runs those (`wasmtime serve -Scli`, say) runs it too. With the
//! `wasi-0-3` feature, the same code builds a WASI 0.3 component instead:
//! see [WASI 0.3](#wasi-03).
//!
//! # A complete handler
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "users"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [dependencies]
//! wedge-sdk = { path = "../guest-sdk" }
//! serde = { version = "1", features = ["derive"] }
//! ```
//!
//! `src/main.rs`:
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use wedge_sdk::{Error, Json, Request, RequestExt as _, Router, StatusCode};
//!
//! #[derive(Serialize, Deserialize)]
//! struct User {
//!     id: u32,
//!     name: String,
//! }
//!
//! /// GET /api/users/42
//! async fn show(request: Request) -> Result<Json<User>, Error> {
//!     let id: u32 = request.param("id")?;
//!     Ok(Json(User { id, name: format!("user {id}") }))
//! }
//!
//! /// PUT /api/users/42 with a JSON body
//! async fn replace(mut request: Request) -> Result<Json<User>, Error> {
//!     let user: User = request.json().await?;
//!     if user.name.is_empty() {
//!         return Err(Error::new(StatusCode::UNPROCESSABLE_ENTITY, "`name` must not be empty"));
//!     }
//!     Ok(Json(user))
//! }
//!
//! #[wedge_sdk::handler]
//! fn routes() -> Router {
//!     Router::new().get(show).put(replace)
//! }
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` and copy
//! `target/wasm32-wasip2/release/users.wasm` to `routes/api/users/[id].wasm`.
//! `GET /api/users/42` answers `{"id":42,"name":"user 42"}`, `GET
//! /api/users/x` a `400` saying why, `DELETE` a `405` with `Allow: GET,
//! HEAD, OPTIONS, PUT`.
//!
//! # What is here
//!
//! - [`#[handler]`](handler): the entry point.
//! - [`RequestExt`]: what Wedge tells a handler (the matched
//!   [route](RequestExt::route), typed [params](RequestExt::param), a
//!   catch-all's [segments](RequestExt::segments)), the
//!   [query string](RequestExt::query) and a [JSON body](RequestExt::json).
//! - [`IntoResponse`]: what a handler may return; [`Json`] for JSON out;
//!   [`Redirect`] for `303`/`307`/`308`; a [`ResponsePart`] before the body
//!   (`(part, body)`) changes the response: a status, [`SetCookies`],
//!   [`CacheControl`].
//! - Forms: [`RequestExt::form`] reads a urlencoded or multipart form into
//!   a serde type; [`RequestExt::multipart`] streams uploads field by field
//!   ([`Multipart`]), within [`FormLimits`].
//! - Cookies: [`RequestExt::cookie`] and [`RequestExt::cookies`] read them
//!   ([`Cookie`], from the [`cookie`] crate); [`SetCookies`] sets and
//!   deletes them.
//! - Caching: [`CacheControl`] says who may keep a response, and how long
//!   (Wedge's shared cache honours it).
//! - [`Error`]: `?` in a handler; a `500` whose cause is logged, or a client
//!   error that says what was wrong.
//! - [`Router`]: one handler per method, with `405`, `HEAD` and `OPTIONS`;
//!   [`Router::cors`] adds CORS ([`Cors`]): preflights answered, origins
//!   checked.
//! - [`fetch`]: outbound HTTP to the hosts the route's sidecar allows.
//! - [`kv`]: key-value stores that outlive the request, for the stores the
//!   route's sidecar lists.
//! - [`body`]: streaming response and request bodies.
//!
//! # WASI 0.3
//!
//! The same handler builds as a WASI 0.3 component (export
//! `wasi:http/handler@0.3.0`, world `wasi:http/service`) with the
//! `wasi-0-3` feature; its source does not change:
//!
//! ```toml
//! [dependencies]
//! wedge-sdk = { path = "../guest-sdk", features = ["wasi-0-3"] }
//! ```
//!
//! Wedge then reuses the component's instance for many requests, several
//! at once, so statics persist between requests (see [State](#state)).
//! The API is the same; underneath, requests, [`fetch`] and [`body::stream`]
//! run on WASI 0.3's own executor, not on wstd's, which is WASI 0.2's. Of
//! [`wstd`] itself, the types ([`Body`], `wstd::http::ErrorCode`) work,
//! but nothing that waits on wstd's reactor: its timers
//! (`wstd::task::sleep`, `wstd::time::Timer`), `wstd::runtime::spawn`,
//! its HTTP `Client`, `wstd::io` streams and `wstd::net` panic ("must be
//! called within a wstd runtime"), and `wstd::runtime::block_on` would
//! stall the instance. Use [`fetch`] for HTTP, [`body::stream`] for a body
//! written after the handler returns, and the re-exported `wasip3` crate
//! for the rest: `wasip3::clocks::monotonic_clock::wait_for(nanoseconds)
//! .await` to sleep, `wasip3::spawn` to run a task beside the handler.
//!
//! Cargo unifies a dependency's features across the packages it builds
//! together: in a workspace built with `--workspace`, one crate's
//! `wasi-0-3` makes every wedge-sdk handler in that build WASI 0.3. Keep a
//! WASI 0.3 route in its own workspace, or build it on its own (`-p`).
//!
//! # Environment and secrets
//!
//! `std::env::var` works and sees exactly the route's `[env]` table in its
//! sidecar `.toml`, nothing of the host's environment. That is where API
//! tokens belong: `API_TOKEN = "${API_TOKEN}"` copies the host's variable
//! in when the route loads, so the secret lives in the host's environment
//! and the guest, never in the component or the response.
//!
//! # State
//!
//! Wedge runs every request of a WASI 0.2 component in a fresh instance,
//! so statics and `thread_local!`s start anew each time (a WASI 0.3
//! instance serves many requests, but which one serves a request is not
//! yours to choose): keep state in a [`kv`] store
//! (`key_value_stores = ["default"]` in the sidecar), or in a database or
//! an upstream API reached with [`fetch`].

pub mod body;
mod cache;
mod cookies;
mod cors;
mod error;
mod fetch;
pub mod form;
#[cfg(not(feature = "wasi-0-3"))]
mod incoming;
#[cfg(feature = "json")]
mod json;
pub mod kv;
mod params;
mod redirect;
mod response;
mod router;
#[cfg(not(feature = "wasi-0-3"))]
mod wasi02;
#[cfg(feature = "wasi-0-3")]
mod wasi03;

// What differs between the worlds: the export, spawning, outbound requests.
#[cfg(not(feature = "wasi-0-3"))]
use wasi02 as wasi;
#[cfg(feature = "wasi-0-3")]
use wasi03 as wasi;

pub use cache::CacheControl;
pub use cookies::SetCookies;
pub use cors::Cors;
pub use error::Error;
pub use fetch::{FetchError, fetch};
pub use form::{Field, FormLimits, Multipart};
#[cfg(feature = "json")]
pub use json::Json;
pub use params::Params;
pub use redirect::Redirect;
pub use response::{IntoResponse, Response, ResponsePart};
pub use router::{Handler, Router};

pub use cookie;
pub use cookie::{Cookie, SameSite};
pub use http;
pub use http::{Method, StatusCode};
#[cfg(feature = "json")]
pub use serde_json;
#[cfg(feature = "wasi-0-3")]
pub use wasip3;
pub use wstd;
pub use wstd::http::Body;

/// Makes a function the component's request handler (its
/// `wasi:http/incoming-handler` export, or with the `wasi-0-3` feature
/// its `wasi:http/handler@0.3.0` export). One per component.
///
/// It takes one of three shapes. An `async fn` that takes the request:
///
/// ```
/// use wedge_sdk::{IntoResponse, Request};
///
/// #[wedge_sdk::handler]
/// async fn handler(request: Request) -> impl IntoResponse {
///     format!("{} {}", request.method(), request.uri().path())
/// }
/// ```
///
/// An `async fn` that needs nothing from it:
///
/// ```
/// #[wedge_sdk::handler]
/// async fn handler() -> &'static str {
///     "hello"
/// }
/// ```
///
/// A plain `fn` that returns the [`Router`] to answer with:
///
/// ```
/// use wedge_sdk::{Request, Router};
///
/// async fn list(_request: Request) -> &'static str {
///     "[]"
/// }
///
/// #[wedge_sdk::handler]
/// fn routes() -> Router {
///     Router::new().get(list)
/// }
/// ```
///
/// The function keeps its name, `main` excepted: the macro provides the
/// `fn main` a binary crate needs, and renames yours, so this works too:
///
/// ```no_run
/// #[wedge_sdk::handler]
/// async fn main() -> &'static str {
///     "hello"
/// }
/// ```
/// A wrong signature is
/// a compile error on your code: a handler that is not `async`, takes more
/// than the request, or returns something that is not [`IntoResponse`].
///
/// The request is read before the handler runs; a request the SDK cannot
/// read (the host sent a malformed one) is refused without calling it. The
/// response is sent after the handler returns; if sending its body fails
/// (the client went away), the failure goes to stderr.
pub use wedge_sdk_macros::handler;

/// The request type handlers take: the `http` crate's, with a wstd
/// [`Body`] that streams.
///
/// ```
/// use wedge_sdk::{Body, Request, http};
///
/// async fn describe(request: Request) -> String {
///     format!("{} {}", request.method(), request.uri())
/// }
///
/// // Built by hand, as in a unit test of a handler:
/// let request: Request = http::Request::get("/api/todos").body(Body::empty()).unwrap();
/// ```
pub type Request = http::Request<Body>;

/// The header in which Wedge names the route pattern that matched, such as
/// `/api/users/[id]`; [`RequestExt::route`] reads it.
///
/// ```
/// use wedge_sdk::{Body, ROUTE_HEADER, Request, RequestExt as _, http};
///
/// let request: Request = http::Request::get("/api/users/42")
///     .header(ROUTE_HEADER, "/api/users/[id]")
///     .body(Body::empty())
///     .unwrap();
/// assert_eq!(request.route(), Some("/api/users/[id]"));
/// ```
pub const ROUTE_HEADER: &str = "wedge-route";

/// The header in which Wedge passes the route's params, in pattern order, as
/// `application/x-www-form-urlencoded`; [`RequestExt::param`] reads it.
///
/// ```
/// use wedge_sdk::{Body, PARAMS_HEADER, Request, RequestExt as _, http};
///
/// let request: Request = http::Request::get("/api/users/42")
///     .header(PARAMS_HEADER, "id=42")
///     .body(Body::empty())
///     .unwrap();
/// assert_eq!(request.param::<u32>("id").unwrap(), 42);
/// ```
pub const PARAMS_HEADER: &str = "wedge-params";

/// The header in which Wedge passes the client's socket address;
/// [`RequestExt::client_addr`] reads it.
///
/// ```
/// use wedge_sdk::{Body, CLIENT_ADDR_HEADER, Request, RequestExt as _, http};
///
/// let request: Request = http::Request::get("/")
///     .header(CLIENT_ADDR_HEADER, "127.0.0.1:53412")
///     .body(Body::empty())
///     .unwrap();
/// assert_eq!(request.client_addr(), Some("127.0.0.1:53412"));
/// ```
pub const CLIENT_ADDR_HEADER: &str = "wedge-client-addr";

/// What Wedge tells a handler about the request, and the request's query and
/// body in the forms handlers want.
///
/// Wedge's headers (`wedge-route`, `wedge-params`, `wedge-client-addr`) are
/// set by the host, which strips any a client sends, so they can be trusted.
/// Outside Wedge (under `wasmtime serve`, say) they are absent: no route, no
/// params.
pub trait RequestExt {
    /// The route pattern that matched, such as `/api/users/[id]`.
    ///
    /// ```
    /// use wedge_sdk::{Request, RequestExt as _};
    ///
    /// fn route(request: &Request) -> &str {
    ///     request.route().unwrap_or("(not under Wedge)")
    /// }
    /// ```
    fn route(&self) -> Option<&str>;

    /// All the route's params, such as `id` in `/api/users/[id]`.
    ///
    /// ```
    /// use wedge_sdk::{Request, RequestExt as _};
    ///
    /// fn id(request: &Request) -> Option<String> {
    ///     request.params().get("id").map(str::to_owned)
    /// }
    /// ```
    fn params(&self) -> Params;

    /// The param `name`, parsed as `T` (a `String`, a number, anything
    /// [`FromStr`](std::str::FromStr)), percent-decoded.
    ///
    /// A value that does not parse is a `400` naming the param; a route
    /// without that param is a `500` (the file's name and the code
    /// disagree), logged with the fix.
    ///
    /// ```
    /// use wedge_sdk::{Error, Request, RequestExt as _};
    ///
    /// async fn show(request: Request) -> Result<String, Error> {
    ///     let id: u64 = request.param("id")?;
    ///     Ok(format!("user {id}"))
    /// }
    /// ```
    fn param<T>(&self, name: &str) -> Result<T, Error>
    where
        T: std::str::FromStr<Err: std::fmt::Display>;

    /// A catch-all's segments: `["2024", "hello world"]` for
    /// `/blog/2024/hello%20world` on `/blog/[...slug]`, each decoded on its
    /// own (so `a%2Fb` stays one segment, `a/b`). Empty for a
    /// `[[...optional]]` at its bare path, and when the route has no
    /// catch-all called `name`.
    ///
    /// ```
    /// use wedge_sdk::{Request, RequestExt as _};
    ///
    /// async fn post(request: Request) -> String {
    ///     request.segments("slug").join(" › ")
    /// }
    /// ```
    fn segments(&self, name: &str) -> Vec<String>;

    /// The client's socket address, such as `127.0.0.1:53412`.
    ///
    /// ```
    /// use wedge_sdk::{Request, RequestExt as _};
    ///
    /// fn who(request: &Request) -> String {
    ///     request.client_addr().unwrap_or("unknown").to_owned()
    /// }
    /// ```
    fn client_addr(&self) -> Option<&str>;

    /// The query string deserialized as `T`: a `400` that says what was
    /// wrong if it does not fit. No query is an empty one.
    ///
    /// ```
    /// use serde::Deserialize;
    /// use wedge_sdk::{Error, Request, RequestExt as _};
    ///
    /// #[derive(Deserialize)]
    /// struct Page {
    ///     #[serde(default)]
    ///     offset: u32,
    ///     limit: Option<u32>,
    /// }
    ///
    /// async fn list(request: Request) -> Result<String, Error> {
    ///     let page: Page = request.query()?;
    ///     Ok(format!("from {} take {:?}", page.offset, page.limit))
    /// }
    /// ```
    fn query<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error>;

    /// The first value of query parameter `name`, decoded, as Next.js's
    /// `searchParams.get(name)`.
    ///
    /// ```
    /// use wedge_sdk::{Request, RequestExt as _};
    ///
    /// async fn hello(request: Request) -> String {
    ///     let name = request.query_param("name").unwrap_or_else(|| "world".into());
    ///     format!("hello, {name}")
    /// }
    /// ```
    fn query_param(&self, name: &str) -> Option<String>;

    /// Reads the whole body and deserializes it as JSON, as Next.js's
    /// `await request.json()`: a `400` saying what was wrong if it is not
    /// the JSON `T` expects. See [`Json`].
    ///
    /// ```
    /// use wedge_sdk::{Error, Request, RequestExt as _};
    ///
    /// async fn total(mut request: Request) -> Result<String, Error> {
    ///     let prices: Vec<f64> = request.json().await?;
    ///     Ok(prices.iter().sum::<f64>().to_string())
    /// }
    /// ```
    #[cfg(feature = "json")]
    #[expect(
        async_fn_in_trait,
        reason = "a component runs on one thread: nothing needs this future to be Send"
    )]
    async fn json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, Error>;

    /// Reads an HTML form's body into `T`, as Next.js's `await
    /// request.formData()`, with serde: `application/x-www-form-urlencoded`,
    /// or the text fields of `multipart/form-data` (file fields are left
    /// out: read those with [`multipart`](RequestExt::multipart)). The body
    /// is taken from the request.
    ///
    /// A form that is not the `T` expected is a `400` saying why (``invalid
    /// form: missing field `email` ``); another `Content-Type` is a `415`;
    /// a body over the [default caps](FormLimits) a `413`
    /// ([`form_with`](RequestExt::form_with) sets others).
    ///
    /// ```
    /// use serde::Deserialize;
    /// use wedge_sdk::{Error, Redirect, Request, RequestExt as _};
    ///
    /// #[derive(Deserialize)]
    /// struct Signup {
    ///     email: String,
    ///     #[serde(default)]
    ///     newsletter: Option<String>, // a checkbox: absent when unticked
    /// }
    ///
    /// async fn signup(mut request: Request) -> Result<Redirect, Error> {
    ///     let form: Signup = request.form().await?;
    ///     if !form.email.contains('@') {
    ///         return Err(Error::bad_request("`email` is not an address"));
    ///     }
    ///     Ok(Redirect::see_other("/welcome"))
    /// }
    /// ```
    #[expect(
        async_fn_in_trait,
        reason = "a component runs on one thread: nothing needs this future to be Send"
    )]
    async fn form<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, Error>;

    /// [`form`](RequestExt::form) with other caps than the defaults.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use wedge_sdk::{Error, FormLimits, Request, RequestExt as _};
    ///
    /// async fn small(mut request: Request) -> Result<String, Error> {
    ///     let form: HashMap<String, String> = request.form_with(FormLimits::new().max_body(4096)).await?;
    ///     Ok(format!("{} fields", form.len()))
    /// }
    /// ```
    #[expect(
        async_fn_in_trait,
        reason = "a component runs on one thread: nothing needs this future to be Send"
    )]
    async fn form_with<T: serde::de::DeserializeOwned>(
        &mut self,
        limits: FormLimits,
    ) -> Result<T, Error>;

    /// A `multipart/form-data` body (a form with files), read field by
    /// field as it arrives: see [`Multipart`]. The body is taken from the
    /// request. Another `Content-Type` is a `415`, one without a boundary a
    /// `400`; the fields are capped by the [default caps](FormLimits).
    ///
    /// ```
    /// use wedge_sdk::{Error, Request, RequestExt as _};
    ///
    /// async fn upload(mut request: Request) -> Result<String, Error> {
    ///     let mut form = request.multipart()?;
    ///     let mut files = 0;
    ///     while let Some(field) = form.next_field().await? {
    ///         files += usize::from(field.file_name().is_some());
    ///     }
    ///     Ok(format!("{files} files"))
    /// }
    /// ```
    fn multipart(&mut self) -> Result<Multipart, Error>;

    /// [`multipart`](RequestExt::multipart) with other caps than the defaults.
    ///
    /// ```
    /// use wedge_sdk::{Error, FormLimits, Multipart, Request, RequestExt as _};
    ///
    /// fn open(request: &mut Request) -> Result<Multipart, Error> {
    ///     request.multipart_with(FormLimits::new().max_field(20 * 1024 * 1024).max_body(21 * 1024 * 1024))
    /// }
    /// ```
    fn multipart_with(&mut self, limits: FormLimits) -> Result<Multipart, Error>;

    /// The cookie called `name` from the request's `Cookie` header, as
    /// Next.js's `cookies().get(name)`.
    ///
    /// ```
    /// use wedge_sdk::{Request, RequestExt as _};
    ///
    /// async fn whoami(request: Request) -> String {
    ///     match request.cookie("session") {
    ///         Some(session) => format!("you are {}", session.value()),
    ///         None => "not signed in".to_owned(),
    ///     }
    /// }
    /// ```
    fn cookie(&self, name: &str) -> Option<Cookie<'static>>;

    /// Every cookie the request carries, in order (a pair that does not
    /// parse is skipped). Set cookies with [`SetCookies`].
    ///
    /// ```
    /// use wedge_sdk::{Request, RequestExt as _};
    ///
    /// async fn names(request: Request) -> String {
    ///     request.cookies().iter().map(|cookie| cookie.name()).collect::<Vec<_>>().join(", ")
    /// }
    /// ```
    fn cookies(&self) -> Vec<Cookie<'static>>;
}

impl RequestExt for Request {
    fn route(&self) -> Option<&str> {
        header_str(self, ROUTE_HEADER)
    }

    fn params(&self) -> Params {
        Params::from_headers(self.headers())
    }

    fn param<T>(&self, name: &str) -> Result<T, Error>
    where
        T: std::str::FromStr<Err: std::fmt::Display>,
    {
        let params = self.params();
        let Some(value) = params.get(name) else {
            return Err(Error::internal(format!(
                "the route {} has no param `{name}`: name the file [{name}].wasm \
                 (or a folder [{name}]), or read another param",
                self.route().unwrap_or("(none: not served by Wedge?)")
            )));
        };
        value
            .parse()
            .map_err(|error| Error::bad_request(format!("invalid `{name}` in the path: {error}")))
    }

    fn segments(&self, name: &str) -> Vec<String> {
        self.route()
            .and_then(|route| params::catch_all_segments(route, self.uri().path(), name))
            .unwrap_or_default()
    }

    fn client_addr(&self) -> Option<&str> {
        header_str(self, CLIENT_ADDR_HEADER)
    }

    fn query<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        let query = self.uri().query().unwrap_or_default();
        serde_urlencoded::from_str(query)
            .map_err(|error| Error::bad_request(format!("invalid query string: {error}")))
    }

    fn query_param(&self, name: &str) -> Option<String> {
        let query = self.uri().query()?;
        form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    #[cfg(feature = "json")]
    async fn json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, Error> {
        let bytes = self.body_mut().contents().await.map_err(|error| {
            Error::bad_request(format!("cannot read the request body: {error}"))
        })?;
        json::parse(bytes)
    }

    async fn form<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, Error> {
        form::read(self, FormLimits::default()).await
    }

    async fn form_with<T: serde::de::DeserializeOwned>(
        &mut self,
        limits: FormLimits,
    ) -> Result<T, Error> {
        form::read(self, limits).await
    }

    fn multipart(&mut self) -> Result<Multipart, Error> {
        form::multipart(self, FormLimits::default())
    }

    fn multipart_with(&mut self, limits: FormLimits) -> Result<Multipart, Error> {
        form::multipart(self, limits)
    }

    fn cookie(&self, name: &str) -> Option<Cookie<'static>> {
        cookies::parse(self.headers())
            .into_iter()
            .find(|cookie| cookie.name() == name)
    }

    fn cookies(&self) -> Vec<Cookie<'static>> {
        cookies::parse(self.headers())
    }
}

fn header_str<'r>(request: &'r Request, name: &str) -> Option<&'r str> {
    request.headers().get(name)?.to_str().ok()
}

/// What `#[handler]` expands to. Not public API.
#[doc(hidden)]
pub mod __private {
    use std::future::Future;

    pub use wasip2;
    #[cfg(feature = "wasi-0-3")]
    pub use wasip3;

    pub use crate::__export_handler as export_handler;
    pub use crate::wasi::run;
    use crate::{Handler, IntoResponse, Request, Router};

    /// Checks, spanned to the handler's argument, that it takes a [`Request`].
    pub fn is_request<T: IsRequest>() {}

    #[diagnostic::on_unimplemented(
        message = "a Wedge handler takes a `wedge_sdk::Request`, not `{Self}`",
        note = "write `async fn handler(request: wedge_sdk::Request) -> impl IntoResponse`"
    )]
    pub trait IsRequest {}
    impl IsRequest for Request {}

    /// An `async fn(Request) -> impl IntoResponse` as a [`Handler`].
    pub fn responds<F, Fut>(handler: F) -> impl Handler
    where
        F: Fn(Request) -> Fut + 'static,
        Fut: Future<Output: IntoResponse> + 'static,
    {
        handler
    }

    /// A `fn() -> Router`'s router as a [`Handler`].
    pub fn router_handler(router: Router) -> impl Handler {
        router
    }
}

/// Exports a [`Handler`] expression as the component's
/// `wasi:http/incoming-handler@0.2` handler: what `#[handler]` expands to
/// without the `wasi-0-3` feature. Not public API.
#[cfg(not(feature = "wasi-0-3"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_handler {
    ($handler:expr) => {
        const _: () = {
            struct WedgeHandler;

            impl $crate::__private::wasip2::exports::http::incoming_handler::Guest for WedgeHandler {
                fn handle(
                    request: $crate::__private::wasip2::http::types::IncomingRequest,
                    response_out: $crate::__private::wasip2::http::types::ResponseOutparam,
                ) {
                    $crate::__private::run(request, response_out, $handler);
                }
            }

            $crate::__private::wasip2::http::proxy::export!(
                WedgeHandler with_types_in $crate::__private::wasip2
            );
        };
    };
}

/// Exports a [`Handler`] expression as the component's
/// `wasi:http/handler@0.3.0` handler (world `wasi:http/service`): what
/// `#[handler]` expands to with the `wasi-0-3` feature. Not public API.
#[cfg(feature = "wasi-0-3")]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_handler {
    ($handler:expr) => {
        const _: () = {
            struct WedgeHandler;

            impl $crate::__private::wasip3::exports::http::handler::Guest for WedgeHandler {
                async fn handle(
                    request: $crate::__private::wasip3::http::types::Request,
                ) -> ::core::result::Result<
                    $crate::__private::wasip3::http::types::Response,
                    $crate::__private::wasip3::http::types::ErrorCode,
                > {
                    $crate::__private::run(request, $handler).await
                }
            }

            $crate::__private::wasip3::http::service::export!(
                WedgeHandler with_types_in $crate::__private::wasip3
            );
        };
    };
}

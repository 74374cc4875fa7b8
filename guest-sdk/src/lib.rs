//! Write Wedge route handlers in Rust.
//!
//! A Wedge route is a WebAssembly component, built for `wasm32-wasip2`, that
//! exports `wasi:http/incoming-handler`; Wedge serves
//! `routes/api/users/[id].wasm` at `/api/users/42`. This crate is a thin layer
//! over [`wstd`] (the Bytecode Alliance's async library for WASI 0.2) and the
//! [`http`] crate's types:
//!
//! - [`RequestExt`] reads what Wedge adds to each request: the matched
//!   [route](RequestExt::route), its [params](RequestExt::params) and the
//!   [client's address](RequestExt::client_addr).
//! - [`json`] answers with a JSON body; [`method_not_allowed`] answers `405`
//!   with `Allow`.
//! - [`wstd`], [`http`] and [`serde_json`] are re-exported: wstd for bodies,
//!   timers and outbound HTTP, `http` for header names and the like.
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
//! wstd = "0.6.8"
//! ```
//!
//! `src/main.rs`:
//!
//! ```no_run
//! use wedge_sdk::wstd::http::error::Context as _;
//! use wedge_sdk::wstd::http::{Body, Error, Method, Request, Response};
//! use wedge_sdk::{RequestExt as _, json, method_not_allowed};
//!
//! #[wstd::http_server]
//! async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
//!     if request.method() != Method::GET {
//!         return Ok(method_not_allowed(&[Method::GET]));
//!     }
//!     let params = request.params();
//!     let id = params
//!         .get("id")
//!         .context("no `id` param: serve this file as routes/api/users/[id].wasm")?;
//!     json(&wedge_sdk::serde_json::json!({ "id": id }))
//! }
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` and copy
//! `target/wasm32-wasip2/release/users.wasm` to `routes/api/users/[id].wasm`;
//! `GET /api/users/42` then answers `{"id":"42"}`.
//!
//! # The entry point
//!
//! [`#[wstd::http_server]`](wstd::http_server) turns `async fn main` into the
//! component's `wasi:http/incoming-handler` export. Its expansion names the
//! crate as `::wstd`, so a handler crate lists `wstd` among its own
//! dependencies, as above (cargo unifies it with this crate's copy); without
//! that, even `#[wedge_sdk::wstd::http_server]` does not compile.
//!
//! An `Err` returned from `main` reaches Wedge as the `internal-error` HTTP
//! error code carrying the error's text: the client gets a `500` and the
//! host's log gets the text. A panic writes its message to stderr (forwarded
//! to the host's log) and traps the instance: also a `500`.
//!
//! # Streaming
//!
//! Request and response bodies are streams. Returning the request's body as
//! the response's, as in `Response::new(request.into_body())`, copies it
//! through without ever holding it whole; [`wstd::http::Body`] documents the
//! ways to build and read bodies.

mod params;

pub use params::Params;

pub use http;
pub use serde_json;
pub use wstd;

use http::header::{ALLOW, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, StatusCode};
use wstd::http::error::Context as _;
use wstd::http::{Body, Error, Response};

/// The header in which Wedge names the route pattern that matched, such as
/// `/api/users/[id]`.
pub const ROUTE_HEADER: &str = "wedge-route";

/// The header in which Wedge passes the route's params, in pattern order, as
/// `application/x-www-form-urlencoded`.
pub const PARAMS_HEADER: &str = "wedge-params";

/// The header in which Wedge passes the client's socket address.
pub const CLIENT_ADDR_HEADER: &str = "wedge-client-addr";

/// What Wedge tells a handler about the request, read from the headers it
/// adds (and strips from what the client sent, so they can be trusted).
///
/// Outside Wedge (under `wasmtime serve`, say) the headers are absent: the
/// methods answer `None` and an empty [`Params`].
pub trait RequestExt {
    /// The route pattern that matched, such as `/api/users/[id]` or
    /// `/blog/[...slug]`.
    fn route(&self) -> Option<&str>;

    /// The values of the route's `[param]`s, such as `id` in
    /// `/api/users/[id]`.
    fn params(&self) -> Params;

    /// The client's socket address, such as `127.0.0.1:53412`.
    fn client_addr(&self) -> Option<&str>;
}

impl<B> RequestExt for Request<B> {
    fn route(&self) -> Option<&str> {
        header_str(self, ROUTE_HEADER)
    }

    fn params(&self) -> Params {
        Params::from_headers(self.headers())
    }

    fn client_addr(&self) -> Option<&str> {
        header_str(self, CLIENT_ADDR_HEADER)
    }
}

fn header_str<'r, B>(request: &'r Request<B>, name: &str) -> Option<&'r str> {
    request.headers().get(name)?.to_str().ok()
}

/// A `200 OK` response whose body is `value` as JSON, with
/// `content-type: application/json`.
///
/// Set another status through [`Response::status_mut`]. Fails only if `value`
/// cannot be written as JSON (a map with non-string keys, say).
pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Response<Body>, Error> {
    let body = serde_json::to_vec(value).context("writing the response body as JSON")?;
    let mut response = Response::new(Body::from(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// A `405 Method Not Allowed` response whose `Allow` header lists `allowed`.
pub fn method_not_allowed(allowed: &[Method]) -> Response<Body> {
    let allow = allowed
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response.headers_mut().insert(
        ALLOW,
        HeaderValue::from_str(&allow).expect("bug: method names are tokens, valid in a header"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wedge_headers_are_read_from_the_request() {
        let request = Request::builder()
            .header(ROUTE_HEADER, "/api/users/[id]")
            .header(PARAMS_HEADER, "id=42")
            .header(CLIENT_ADDR_HEADER, "127.0.0.1:53412")
            .body(())
            .expect("a valid request");
        assert_eq!(request.route(), Some("/api/users/[id]"));
        assert_eq!(request.params().get("id"), Some("42"));
        assert_eq!(request.client_addr(), Some("127.0.0.1:53412"));
    }

    #[test]
    fn outside_wedge_there_is_no_route() {
        let request = Request::new(());
        assert_eq!(request.route(), None);
        assert!(request.params().is_empty());
        assert_eq!(request.client_addr(), None);
    }

    #[test]
    fn json_response_is_200_with_json_content_type() {
        let response = json(&serde_json::json!({ "id": "42" })).expect("serializable");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(response.body().content_length(), Some(11));
    }

    #[test]
    fn json_refuses_a_map_with_non_string_keys() {
        let map = std::collections::HashMap::from([((1, 2), "x")]);
        assert!(json(&map).is_err());
    }

    #[test]
    fn method_not_allowed_lists_the_allowed_methods() {
        let response = method_not_allowed(&[Method::GET, Method::HEAD]);
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[ALLOW], "GET, HEAD");
    }
}

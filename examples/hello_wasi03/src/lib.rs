//! `GET /api/hello-wasi03` (route `api/hello-wasi03`): the `hello`
//! example's greeting, written against WASI 0.3 (`wasi:http/handler@0.3.0`)
//! with the `wasip3` crate: the handler is an `async fn`, and Wedge reuses
//! its instance for many requests, several at once.
//!
//! `{"message":"Hello from Wedge!","served":N}`; with `?name=Ada`,
//! `{"message":"Hello, Ada!","served":N}`. `served` counts the requests
//! this instance has answered: statics persist while Wedge reuses it.

use std::sync::atomic::{AtomicU64, Ordering};

use wasip3::http::types::{ErrorCode, Request, Response};
use wasip3::http_compat::{http_from_wasi_request, http_into_wasi_response};

wasip3::http::service::export!(Hello);

struct Hello;

/// Requests this instance has answered.
static SERVED: AtomicU64 = AtomicU64::new(0);

impl wasip3::exports::http::handler::Guest for Hello {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let request = http_from_wasi_request(request)?;
        let name = request.uri().query().and_then(|query| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix("name="))
                .map(|name| name.replace("%20", " "))
        });
        let message = match name {
            Some(name) => format!("Hello, {name}!"),
            None => "Hello from Wedge!".to_owned(),
        };
        let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
        let body = serde_json::json!({ "message": message, "served": served }).to_string();
        let response = http::Response::builder()
            .header("content-type", "application/json")
            .body(body)
            .map_err(|error| ErrorCode::InternalError(Some(error.to_string())))?;
        http_into_wasi_response(response)
    }
}

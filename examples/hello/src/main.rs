//! `GET /api/hello` (route `api/hello`): a JSON greeting,
//! `{"message":"Hello from Wedge!"}`.

use wedge_sdk::wstd::http::{Body, Error, Method, Request, Response};
use wedge_sdk::{json, method_not_allowed, serde_json};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return Ok(method_not_allowed(&[Method::GET, Method::HEAD]));
    }
    json(&serde_json::json!({ "message": "Hello from Wedge!" }))
}

//! `GET /api/users/42` (route `api/users/[id]`): a dynamic segment, read from
//! the route params: `{"id":"42"}`.

use wedge_sdk::wstd::http::error::Context as _;
use wedge_sdk::wstd::http::{Body, Error, Method, Request, Response};
use wedge_sdk::{RequestExt as _, json, method_not_allowed, serde_json};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return Ok(method_not_allowed(&[Method::GET, Method::HEAD]));
    }
    let params = request.params();
    let id = params
        .get("id")
        .context("no `id` param: serve this file as routes/api/users/[id].wasm")?;
    json(&serde_json::json!({ "id": id }))
}

//! `GET /blog/2024/hello` (route `blog/[...slug]`): a catch-all, one or more
//! segments; the param holds them joined with `/`: `{"slug":"2024/hello"}`.

use wedge_sdk::wstd::http::error::Context as _;
use wedge_sdk::wstd::http::{Body, Error, Method, Request, Response};
use wedge_sdk::{RequestExt as _, json, method_not_allowed, serde_json};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return Ok(method_not_allowed(&[Method::GET, Method::HEAD]));
    }
    let params = request.params();
    let slug = params
        .get("slug")
        .context("no `slug` param: serve this file as routes/blog/[...slug].wasm")?;
    json(&serde_json::json!({ "slug": slug }))
}

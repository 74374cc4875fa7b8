//! `POST /api/echo` (route `api/echo`): answers with the request's body and
//! content type.
//!
//! The body streams through: wstd copies the incoming stream into the
//! outgoing one as it arrives, so a body of any size passes in little memory.

use wedge_sdk::http::header::CONTENT_TYPE;
use wedge_sdk::method_not_allowed;
use wedge_sdk::wstd::http::{Body, Error, Method, Request, Response};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    if request.method() != Method::POST {
        return Ok(method_not_allowed(&[Method::POST]));
    }
    let (parts, body) = request.into_parts();
    let mut response = Response::new(body);
    if let Some(content_type) = parts.headers.get(CONTENT_TYPE) {
        response
            .headers_mut()
            .insert(CONTENT_TYPE, content_type.clone());
    }
    Ok(response)
}

//! `POST /api/echo` (route `api/echo`): answers with the request's body and
//! content type.
//!
//! The body streams through: the incoming stream is copied into the
//! outgoing one as it arrives, so a body of any size passes in little
//! memory.

use wedge_sdk::http::header::CONTENT_TYPE;
use wedge_sdk::{Request, Response, Router};

async fn echo(request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let mut response = Response::new(body);
    if let Some(content_type) = parts.headers.get(CONTENT_TYPE) {
        response.headers_mut().insert(CONTENT_TYPE, content_type.clone());
    }
    response
}

#[wedge_sdk::handler]
fn routes() -> Router {
    Router::new().post(echo)
}

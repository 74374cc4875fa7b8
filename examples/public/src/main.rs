//! `/api/public` (route `api/public`): a JSON API that pages on one other
//! origin, `https://app.example.com`, may call from the browser, with the
//! router's CORS layer (as Next.js's `headers()` config or a middleware
//! that sets `Access-Control-Allow-*`).
//!
//! - A preflight (`OPTIONS` with `Origin` and
//!   `Access-Control-Request-Method`) from that origin gets `204` with
//!   `Access-Control-Allow-Origin`, `-Methods` (`GET, POST`), `-Headers`
//!   (`content-type`) and `-Max-Age`; from any other origin, `204` without
//!   them, and the browser refuses the call. No handler runs.
//! - `GET` answers `{"items":[…]}` and `POST` echoes a JSON body; from that
//!   origin with `Access-Control-Allow-Origin` and `Vary: Origin`.
//!
//! ```sh
//! curl -i -X OPTIONS -H 'Origin: https://app.example.com' \
//!     -H 'Access-Control-Request-Method: POST' localhost:3000/api/public
//! curl -i -H 'Origin: https://app.example.com' localhost:3000/api/public
//! curl -i -H 'Origin: https://evil.example' localhost:3000/api/public  # no CORS headers
//! ```

use std::time::Duration;

use wedge_sdk::serde_json::{Value, json};
use wedge_sdk::{Cors, Error, Json, Method, Request, RequestExt as _, Router};

/// The one origin whose pages may call this API.
const APP_ORIGIN: &str = "https://app.example.com";

async fn list(_request: Request) -> Json<Value> {
    Json(json!({ "items": ["alpha", "beta"] }))
}

async fn echo(mut request: Request) -> Result<Json<Value>, Error> {
    let body: Value = request.json().await?;
    Ok(Json(json!({ "received": body })))
}

#[wedge_sdk::handler]
fn routes() -> Router {
    Router::new().get(list).post(echo).cors(
        Cors::new()
            .allow_origin(APP_ORIGIN)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers(["content-type"])
            .max_age(Duration::from_secs(600)),
    )
}

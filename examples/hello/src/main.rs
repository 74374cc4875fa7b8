//! `GET /api/hello` (route `api/hello`): a JSON greeting, as a Next.js
//! `export async function GET(request)` returning `Response.json(…)`.
//!
//! `{"message":"Hello from Wedge!"}`; with `?name=Ada`,
//! `{"message":"Hello, Ada!"}`.

use wedge_sdk::serde_json::{Value, json};
use wedge_sdk::{Json, Request, RequestExt as _, Router};

async fn greet(request: Request) -> Json<Value> {
    let message = match request.query_param("name") {
        Some(name) => format!("Hello, {name}!"),
        None => "Hello from Wedge!".to_owned(),
    };
    Json(json!({ "message": message }))
}

#[wedge_sdk::handler]
fn routes() -> Router {
    Router::new().get(greet)
}

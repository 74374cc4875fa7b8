//! `GET /blog/2024/hello` (route `blog/[...slug]`): a catch-all, one or more
//! segments, each percent-decoded on its own:
//! `{"slug":"2024/hello","segments":["2024","hello"]}`.

use wedge_sdk::serde_json::{Value, json};
use wedge_sdk::{Json, Request, RequestExt as _, Router};

async fn post(request: Request) -> Json<Value> {
    let segments = request.segments("slug");
    Json(json!({ "slug": segments.join("/"), "segments": segments }))
}

#[wedge_sdk::handler]
fn routes() -> Router {
    Router::new().get(post)
}

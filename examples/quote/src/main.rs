//! `GET /api/quote` (route `api/quote`): a quote, with a `Cache-Control`
//! that lets shared caches keep it, as a Next.js route handler that sets
//! `Cache-Control` on its `Response`.
//!
//! `public, s-maxage=10, stale-while-revalidate=30`: Wedge's shared cache
//! (or a CDN in front of it) may answer from its copy for 10 seconds, and
//! for 30 more while it fetches a fresh one; browsers revalidate each time.
//! `served_at` (Unix seconds) shows when the handler ran, so a cached copy
//! shows the same value.
//!
//! ```sh
//! curl -i localhost:3000/api/quote
//! # cache-control: public, s-maxage=10, stale-while-revalidate=30
//! # {"quote":"…","served_at":1767225600}
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use wedge_sdk::serde_json::{Value, json};
use wedge_sdk::{CacheControl, Error, IntoResponse, Json, Request, Router};

const QUOTES: &[&str] = &[
    "Simple things should be simple, complex things should be possible.",
    "Make it work, make it right, make it fast.",
    "The best way out is always through.",
];

async fn quote(_request: Request) -> Result<impl IntoResponse, Error> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    // A new quote each minute.
    let quote = QUOTES[(now / 60) as usize % QUOTES.len()];
    let cache = CacheControl::public().s_maxage(10).stale_while_revalidate(30);
    Ok((cache, Json::<Value>(json!({ "quote": quote, "served_at": now }))))
}

#[wedge_sdk::handler]
fn routes() -> Router {
    Router::new().get(quote)
}

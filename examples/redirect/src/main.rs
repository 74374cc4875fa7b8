//! `GET /go/[name]` (route `go/[name]`): short links, as Next.js's
//! `redirect()` and `permanentRedirect()`.
//!
//! A known name answers a redirect to its URL, `307 Temporary Redirect`
//! (the link may change) or `308 Permanent Redirect` (browsers and caches
//! may remember it); any other name a `404`.
//!
//! ```sh
//! curl -i localhost:3000/go/docs     # 307, Location: https://docs.rs/wstd
//! curl -i localhost:3000/go/home     # 308, Location: /
//! curl -i localhost:3000/go/nowhere  # 404 no link called `nowhere`
//! ```

use wedge_sdk::{Error, Redirect, Request, RequestExt as _, Router, StatusCode};

/// The links: name, where it goes, whether that is for good.
const LINKS: &[(&str, &str, bool)] = &[
    ("docs", "https://docs.rs/wstd", false),
    ("wasi", "https://wasi.dev/", false),
    ("home", "/", true),
];

async fn go(request: Request) -> Result<Redirect, Error> {
    let name: String = request.param("name")?;
    let Some(&(_, url, permanent)) = LINKS.iter().find(|(link, _, _)| *link == name) else {
        return Err(Error::new(StatusCode::NOT_FOUND, format!("no link called `{name}`")));
    };
    Ok(if permanent { Redirect::permanent(url) } else { Redirect::temporary(url) })
}

#[wedge_sdk::handler]
fn routes() -> Router {
    Router::new().get(go)
}

//! `GET /` (route `index`): an HTML page linking to the other examples.

use wedge_sdk::http::header::CONTENT_TYPE;
use wedge_sdk::{Request, Response, Router};

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Wedge examples</title>
</head>
<body>
<h1>Wedge examples</h1>
<p>Each route below is its own WebAssembly component.</p>
<ul>
<li><a href="/api/hello?name=Ada"><code>GET /api/hello</code></a>: JSON, with a query parameter</li>
<li><a href="/api/todos"><code>GET /api/todos</code></a>, <code>POST /api/todos</code>: a validated JSON body, kept in a key-value store</li>
<li><a href="/api/todos/1"><code>GET /api/todos/[id]</code></a>, <code>PUT</code>, <code>PATCH</code>, <code>DELETE</code>: a dynamic segment, a method router, a compare-and-swap</li>
<li><a href="/blog/2024/hello-world"><code>GET /blog/[...slug]</code></a>: a catch-all</li>
<li><a href="/api/users/1"><code>GET /api/users/[id]</code></a>: a third-party API, reshaped</li>
<li><a href="/api/weather?city=Oslo"><code>GET /api/weather</code></a>: an upstream called with a secret</li>
<li><a href="/api/stream"><code>GET /api/stream</code></a>: a streamed response</li>
<li><code>POST /api/echo</code>: streams the request body back
  (<code>curl --data-binary @file localhost:3000/api/echo</code>)</li>
</ul>
</body>
</html>
"#;

async fn page(_request: Request) -> Response {
    let mut response = Response::new(PAGE.into());
    let html = "text/html; charset=utf-8".parse().expect("a valid header value");
    response.headers_mut().insert(CONTENT_TYPE, html);
    response
}

#[wedge_sdk::handler]
fn routes() -> Router {
    Router::new().get(page)
}

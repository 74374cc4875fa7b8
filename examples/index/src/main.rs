//! `GET /` (route `index`): an HTML page linking to the other examples.

use wedge_sdk::http::header::CONTENT_TYPE;
use wedge_sdk::method_not_allowed;
use wedge_sdk::wstd::http::{Body, Error, Method, Request, Response};

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
<li><a href="/api/hello"><code>GET /api/hello</code></a>: a JSON greeting</li>
<li><code>POST /api/echo</code>: streams the request body back
  (<code>curl --data-binary @file localhost:3000/api/echo</code>)</li>
<li><a href="/api/users/42"><code>GET /api/users/[id]</code></a>: a dynamic segment</li>
<li><a href="/blog/2024/hello-world"><code>GET /blog/[...slug]</code></a>: a catch-all</li>
</ul>
</body>
</html>
"#;

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return Ok(method_not_allowed(&[Method::GET, Method::HEAD]));
    }
    Ok(Response::builder()
        .header(CONTENT_TYPE, "text/html; charset=utf-8")
        .body(PAGE.into())?)
}

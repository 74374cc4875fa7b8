//! File-system routing and the boundary headers, over HTTP/1.1 and HTTP/2.

use serde_json::Value;

use crate::harness::{Routes, Server, json, text};

/// Every route file of DESIGN.md's routing table, each served by `inspect`.
fn routes() -> Routes {
    [
        "index.wasm",
        "hello.wasm",
        "about/index.wasm",
        "api/users/[id].wasm",
        "api/users/me.wasm",
        "blog/[...slug].wasm",
        "blog/featured.wasm",
        "docs/[[...slug]].wasm",
        "shop/[cat]/[item].wasm",
        "_private.wasm",
        ".hidden/secret.wasm",
    ]
    .into_iter()
    .fold(Routes::new(), |routes, file| routes.with(file, "inspect"))
}

fn header<'a>(seen: &'a Value, name: &str) -> Option<&'a str> {
    seen["headers"][name][0].as_str()
}

#[tokio::test]
async fn paths_reach_the_most_specific_route_with_its_params() {
    let routes = routes();
    let server = Server::start(routes.path()).await;
    let cases: &[(&str, Option<(&str, &str)>)] = &[
        ("/", Some(("/", ""))),
        ("/hello", Some(("/hello", ""))),
        ("/hello?x=1", Some(("/hello", ""))),
        ("/about", Some(("/about", ""))),
        ("/api/users/42", Some(("/api/users/[id]", "id=42"))),
        ("/api/users/me", Some(("/api/users/me", ""))),
        (
            "/api/users/a%20b%2Fc",
            Some(("/api/users/[id]", "id=a+b%2Fc")),
        ),
        (
            "/api/users/caf%C3%A9",
            Some(("/api/users/[id]", "id=caf%C3%A9")),
        ),
        ("/blog/a", Some(("/blog/[...slug]", "slug=a"))),
        ("/blog/a/b%20c", Some(("/blog/[...slug]", "slug=a%2Fb+c"))),
        ("/blog/featured", Some(("/blog/featured", ""))),
        ("/docs", Some(("/docs/[[...slug]]", ""))),
        ("/docs/x/y", Some(("/docs/[[...slug]]", "slug=x%2Fy"))),
        (
            "/shop/toys/car",
            Some(("/shop/[cat]/[item]", "cat=toys&item=car")),
        ),
        ("/index", None),
        ("/Hello", None),
        ("/blog", None),
        ("/_private", None),
        ("/.hidden/secret", None),
        ("/api/users/42/extra", None),
    ];
    for client in server.clients() {
        for (path, expected) in cases {
            let answer = client.get(path).await;
            let what = format!("GET {path} over {}", client.version);
            let Some((route, params)) = expected else {
                assert_eq!(answer.status(), 404, "{what}");
                assert_eq!(text(&answer), "not found\n", "{what}");
                continue;
            };
            assert_eq!(answer.status(), 200, "{what}: {:?}", answer.body());
            let seen = json(&answer);
            assert_eq!(seen["path_with_query"], *path, "{what}");
            assert_eq!(header(&seen, "wedge-route"), Some(*route), "{what}");
            assert_eq!(header(&seen, "wedge-params"), Some(*params), "{what}");
        }
    }
}

#[tokio::test]
async fn trailing_slash_redirects_with_308_keeping_the_query() {
    let routes = routes();
    let server = Server::start(routes.path()).await;
    for client in server.clients() {
        for (path, location) in [
            ("/hello/", "/hello"),
            ("/api/users/42/?a=1&b", "/api/users/42?a=1&b"),
            ("/no/such/route/", "/no/such/route"),
            ("//evil.example/", "/evil.example"),
        ] {
            let answer = client.get(path).await;
            assert_eq!(answer.status(), 308, "GET {path} over {}", client.version);
            assert_eq!(answer.headers()["location"], location, "GET {path}");
        }
        assert_eq!(client.get("/").await.status(), 200);
    }
}

#[tokio::test]
async fn host_sets_boundary_headers_and_replaces_spoofed_ones() {
    let routes = routes();
    let server = Server::start(routes.path()).await;
    for client in server.clients() {
        let request = client
            .request("GET", "/api/users/7")
            .header("wedge-params", "id=spoofed")
            .header("Wedge-Route", "/spoofed")
            .header("wedge-client-addr", "203.0.113.9:1")
            .header("x-custom", "kept")
            .body(crate::harness::empty())
            .unwrap();
        let seen = json(&client.send(request).await);
        let what = client.version;
        let headers = &seen["headers"];
        assert_eq!(
            headers["wedge-params"],
            serde_json::json!(["id=7"]),
            "{what}"
        );
        assert_eq!(
            headers["wedge-route"],
            serde_json::json!(["/api/users/[id]"]),
            "{what}"
        );
        assert_eq!(headers["x-custom"], serde_json::json!(["kept"]), "{what}");
        let addr = headers["wedge-client-addr"][0].as_str().unwrap();
        let addr: std::net::SocketAddr = addr.parse().expect("a socket address");
        assert!(
            addr.ip().is_loopback() && addr.port() != 0,
            "{what}: {addr}"
        );
        assert_eq!(headers["wedge-client-addr"].as_array().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn hop_by_hop_headers_do_not_reach_the_guest() {
    let routes = routes();
    let server = Server::start(routes.path()).await;
    let client = server.http1();
    let request = client
        .request("GET", "/hello")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "private to this connection")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("accept", "text/plain")
        .body(crate::harness::empty())
        .unwrap();
    let seen = json(&client.send(request).await);
    let headers = seen["headers"].as_object().unwrap();
    for gone in [
        "connection",
        "x-hop",
        "keep-alive",
        "te",
        "transfer-encoding",
    ] {
        assert!(
            !headers.contains_key(gone),
            "{gone} reached the guest: {headers:?}"
        );
    }
    assert_eq!(headers["accept"], serde_json::json!(["text/plain"]));
}

#[tokio::test]
async fn route_table_is_printed_after_the_address() {
    let routes = routes();
    let server = Server::start(routes.path()).await;
    let table = server.stdout.wait_for("/shop/[cat]/[item]").await;
    assert!(table.starts_with("routes (9):\n"), "{table}");
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    for row in [
        ["/api/users/[id]", "api/users/[id].wasm"],
        ["/about", "about/index.wasm"],
        ["/docs/[[...slug]]", "docs/[[...slug]].wasm"],
        ["/", "index.wasm"],
    ] {
        assert!(
            rows.contains(&row.to_vec()),
            "{row:?} missing from:\n{table}"
        );
    }
    assert!(
        !table.contains("_private") && !table.contains("secret"),
        "{table}"
    );
}

#[tokio::test]
async fn symlinked_files_serve_as_kubernetes_mounts_them() {
    // A ConfigMap volume: the files are symlinks through `..data`, itself a
    // symlink to a timestamped folder.
    let routes = Routes::new().with("..2026_11_25/hello.wasm", "inspect");
    let dir = routes.path();
    std::os::unix::fs::symlink("..2026_11_25", dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/hello.wasm", dir.join("hello.wasm")).unwrap();
    std::fs::create_dir(dir.join("api")).unwrap();
    std::os::unix::fs::symlink("../..data/hello.wasm", dir.join("api/linked.wasm")).unwrap();
    let server = Server::start(dir).await;
    let client = server.http1();
    for (path, route) in [("/hello", "/hello"), ("/api/linked", "/api/linked")] {
        let answer = client.get(path).await;
        assert_eq!(answer.status(), 200, "GET {path}");
        assert_eq!(header(&json(&answer), "wedge-route"), Some(route));
    }
    let table = server.stdout.wait_for("/hello").await;
    assert!(
        table.starts_with("routes (2):\n"),
        "the private folders serve nothing:\n{table}"
    );
}

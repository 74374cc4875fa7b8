//! Misbehaving guests and broken route files.

use crate::harness::{Routes, Server, text};

#[tokio::test]
async fn a_trapping_guest_answers_500_and_the_trap_is_logged() {
    let routes = Routes::new()
        .with("boom.wasm", "trap")
        .with("ok.wasm", "inspect");
    let server = Server::start(routes.path()).await;
    for client in server.clients() {
        let answer = client.get("/boom").await;
        assert_eq!(answer.status(), 500, "{}", client.version);
        assert_eq!(text(&answer), "internal server error\n");
        // The next request gets a fresh instance and is unaffected.
        assert_eq!(client.get("/ok").await.status(), 200);
    }
    let log = server.log.wait_for("guest trapped").await;
    assert!(log.contains("fixture trap: deliberate panic"), "{log}");
    assert!(log.contains("route=/boom"), "{log}");
}

#[tokio::test]
async fn a_trap_after_the_headers_cuts_the_response() {
    use http_body_util::BodyExt;
    let routes = Routes::new().with("late.wasm", "trap_after_headers");
    let server = Server::start(routes.path()).await;
    for client in server.clients() {
        for path in ["/late", "/late?length"] {
            let what = format!("GET {path} over {}", client.version);
            let request = client
                .request("GET", path)
                .body(crate::harness::empty())
                .unwrap();
            let response = client.send_streaming(request).await;
            assert_eq!(response.status(), 200, "{what}");
            let mut body = response.into_body();
            let mut received = Vec::new();
            let ending = loop {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        received.extend_from_slice(frame.data_ref().map_or(&[][..], |d| d))
                    }
                    Some(Err(error)) => break Err(error),
                    None => break Ok(()),
                }
            };
            assert!(ending.is_err(), "{what}: the cut body ended cleanly");
            assert_eq!(received, b"first part of the body\n", "{what}");
        }
    }
    let log = server.log.wait_for("response cut").await;
    assert!(
        log.contains("panic after the response headers went out"),
        "{log}"
    );
}

#[tokio::test]
async fn broken_routes_answer_500_while_the_others_serve() {
    let routes = Routes::new()
        .with("ok.wasm", "inspect")
        .with_bytes("notwasm.wasm", b"not wasm at all")
        .with_bytes("core.wasm", b"\0asm\x01\0\0\0")
        .with("command.wasm", "not_http")
        .with("dup.wasm", "inspect")
        .with("dup/index.wasm", "trap");
    let server = Server::start(routes.path()).await;
    let client = server.http1();
    assert_eq!(client.get("/ok").await.status(), 200);
    // The lexicographically first of two conflicting files serves.
    assert_eq!(client.get("/dup").await.status(), 200);
    for path in ["/notwasm", "/core", "/command"] {
        let answer = client.get(path).await;
        assert_eq!(answer.status(), 500, "GET {path}");
        assert_eq!(text(&answer), "route failed to load\n", "GET {path}");
    }
    let log = server.log.text();
    for expected in [
        "notwasm.wasm: is not a WebAssembly component",
        "core.wasm: is a core wasm module, not a component",
        "command.wasm: exports neither wasi:http/handler@0.3.0 nor wasi:http/incoming-handler",
    ] {
        assert!(
            log.contains(expected),
            "`{expected}` missing from log:\n{log}"
        );
    }
    let table = server.stdout.wait_for("/ok").await;
    assert!(table.contains("core.wasm  (failed to load)"), "{table}");
}

#[tokio::test]
async fn a_dangling_symlink_costs_only_itself() {
    let routes = Routes::new().with("ok.wasm", "inspect");
    let dangling = routes.path().join("gone.wasm");
    std::os::unix::fs::symlink("nowhere/gone.wasm", &dangling).unwrap();
    let server = Server::start(routes.path()).await;
    assert_eq!(server.http1().get("/ok").await.status(), 200);
    assert_eq!(server.http1().get("/gone").await.status(), 404);
    let log = server.log.text();
    assert!(
        log.contains(&format!("{}: cannot read", dangling.display())),
        "{log}"
    );
}

#[tokio::test]
async fn guest_output_reaches_the_log_tagged_with_the_route() {
    let routes = Routes::new().with("api/users/[id].wasm", "inspect");
    let server = Server::start(routes.path()).await;
    server.http1().post("/api/users/5?q", "four").await;
    let log = server.log.wait_for("inspect: read 4 body bytes").await;
    let stdout_line = log
        .lines()
        .find(|line| line.contains("stdout: inspect: POST /api/users/5?q"))
        .unwrap_or_else(|| panic!("guest stdout missing:\n{log}"));
    assert!(
        stdout_line.contains("route=/api/users/[id]"),
        "{stdout_line}"
    );
}

#[tokio::test]
async fn a_request_without_host_is_refused_with_400() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let routes = Routes::new().with("index.wasm", "inspect");
    let server = Server::start(routes.path()).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.0 400"), "{response}");
}

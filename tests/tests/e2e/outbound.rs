//! Outbound HTTP from guests: only to `allowed_outbound_hosts`, matched
//! literally, with the SSRF guard on the address connected.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::harness::{Routes, Server, json};

/// A loopback upstream answering `upstream ok`; counts connections.
async fn upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the upstream");
    let addr = listener.local_addr().expect("the upstream's address");
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = service_fn(|_request| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                        "upstream ok",
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, connections)
}

fn fetch_path(route: &str, url: &str) -> String {
    let query: String = form_urlencoded_pair("url", url);
    format!("/{route}?{query}")
}

fn form_urlencoded_pair(name: &str, value: &str) -> String {
    let mut out = format!("{name}=");
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[tokio::test]
async fn guests_reach_only_the_hosts_their_sidecar_allows() {
    let (upstream, connections) = upstream().await;
    let port = upstream.port();
    let routes = Routes::new()
        .with("allowed.wasm", "fetch")
        .with_bytes(
            "allowed.toml",
            format!("allowed_outbound_hosts = [\"http://127.0.0.1:{port}\"]\n").as_bytes(),
        )
        .with("local.wasm", "fetch")
        .with_bytes(
            "local.toml",
            format!("allowed_outbound_hosts = [\"http://localhost:{port}\"]\n").as_bytes(),
        )
        .with("nothing.wasm", "fetch");
    let server = Server::start(routes.path()).await;
    let client = server.http1();

    for route in ["allowed", "local"] {
        let host = if route == "allowed" {
            "127.0.0.1"
        } else {
            "localhost"
        };
        let seen = json(
            &client
                .get(&fetch_path(route, &format!("http://{host}:{port}/x")))
                .await,
        );
        assert_eq!(seen["ok"], true, "{route}: {seen}");
        assert_eq!(seen["body"], "upstream ok", "{route}");
    }
    let reached = connections.load(Ordering::SeqCst);
    assert!(reached >= 2, "{reached}");

    // Everything else is denied before any connection is made.
    let attempts = [
        ("nothing", format!("http://127.0.0.1:{port}/")),
        ("allowed", format!("http://localhost:{port}/")),
        ("allowed", format!("http://2130706433:{port}/")),
        ("allowed", format!("http://0x7f.0.0.1:{port}/")),
        ("allowed", format!("http://127.1:{port}/")),
        ("allowed", format!("http://[::ffff:127.0.0.1]:{port}/")),
        (
            "allowed",
            format!("http://127.0.0.1:{}/", port.wrapping_add(1).max(1)),
        ),
        ("allowed", format!("https://127.0.0.1:{port}/")),
        ("allowed", format!("http://127.0.0.1.nip.io:{port}/")),
        ("local", format!("http://127.0.0.1:{port}/")),
    ];
    for (route, url) in &attempts {
        let seen = json(&client.get(&fetch_path(route, url)).await);
        assert_eq!(seen["ok"], false, "{route} {url}: {seen}");
        assert!(
            seen["error"]
                .as_str()
                .unwrap()
                .contains("HttpRequestDenied"),
            "{route} {url}: {seen}"
        );
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        reached,
        "a denied request connected"
    );
    let log = server.log.text();
    assert!(
        log.contains("allowed_outbound_hosts"),
        "the denial does not say which key to add:\n{log}"
    );
}

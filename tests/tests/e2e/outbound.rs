//! Outbound HTTP from guests: only to `allowed_outbound_hosts`, matched
//! literally, with the SSRF guard on the address connected.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

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
    // The denial says which key to add.
    server.log.wait_for("allowed_outbound_hosts").await;
}

/// A loopback upstream that holds every request until released, and counts
/// its open connections: now, at most at once, and in all.
struct GatedUpstream {
    addr: SocketAddr,
    open: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
    release: tokio::sync::watch::Sender<bool>,
}

impl GatedUpstream {
    async fn start() -> GatedUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the upstream");
        let addr = listener.local_addr().expect("the upstream's address");
        let (release, released) = tokio::sync::watch::channel(false);
        let upstream = GatedUpstream {
            addr,
            open: Arc::default(),
            peak: Arc::default(),
            accepted: Arc::default(),
            release,
        };
        let (open, peak, accepted) = (
            upstream.open.clone(),
            upstream.peak.clone(),
            upstream.accepted.clone(),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                let (open, released) = (open.clone(), released.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |_request| {
                        let mut released = released.clone();
                        async move {
                            let _ = released.wait_for(|released| *released).await;
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::from("upstream ok"),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        upstream
    }

    fn counts(&self) -> (usize, usize, usize) {
        (
            self.open.load(Ordering::SeqCst),
            self.peak.load(Ordering::SeqCst),
            self.accepted.load(Ordering::SeqCst),
        )
    }
}

#[tokio::test]
async fn a_routes_open_connections_stay_under_its_cap_and_other_routes_are_unaffected() {
    const CAP: usize = 2;
    const CAPPED_REQUESTS: usize = 5;
    const FREE_REQUESTS: usize = 4;
    let (capped, free) = (GatedUpstream::start().await, GatedUpstream::start().await);
    let routes = Routes::new()
        .with("capped.wasm", "fetch")
        .with_bytes(
            "capped.toml",
            format!(
                "allowed_outbound_hosts = [\"http://{}\"]\nmax_outbound_connections = {CAP}\n",
                capped.addr
            )
            .as_bytes(),
        )
        .with("free.wasm", "fetch")
        .with_bytes(
            "free.toml",
            format!("allowed_outbound_hosts = [\"http://{}\"]\n", free.addr).as_bytes(),
        );
    let args = ["--admin".as_ref(), "127.0.0.1:0".as_ref()];
    let server = Server::start_with(routes.path(), &args).await;

    let mut requests = Vec::new();
    for (route, upstream, n) in [
        ("capped", &capped, CAPPED_REQUESTS),
        ("free", &free, FREE_REQUESTS),
    ] {
        for _ in 0..n {
            let client = server.http1();
            let path = fetch_path(route, &format!("http://{}/", upstream.addr));
            requests.push(tokio::spawn(async move { json(&client.get(&path).await) }));
        }
    }

    // Every guest is running, the free route has all its connections open
    // and the capped route as many as its cap allows.
    let admin = server.admin();
    let in_flight = format!(
        "wedge_instances_in_flight {}",
        CAPPED_REQUESTS + FREE_REQUESTS
    );
    let mut all_running = false;
    for _ in 0..300 {
        let metrics = admin.get("/metrics").await;
        all_running = crate::harness::text(&metrics)
            .lines()
            .any(|l| l == in_flight);
        if all_running && capped.counts().0 >= CAP && free.counts().0 == FREE_REQUESTS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        all_running,
        "not every guest started: capped {:?}, free {:?}",
        capped.counts(),
        free.counts()
    );
    assert_eq!(
        free.counts().0,
        FREE_REQUESTS,
        "the free route was held back"
    );
    // A wait, not a poll: a window in which the waiting guests would connect
    // if nothing held them (without the cap, all five are connected within
    // milliseconds).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(capped.counts().1, CAP, "the cap did not hold");

    capped.release.send_replace(true);
    free.release.send_replace(true);
    for request in requests {
        let seen = request.await.expect("the client task");
        assert_eq!(seen["ok"], true, "{seen}");
        assert_eq!(seen["body"], "upstream ok", "{seen}");
    }
    // The waiting guests got their turn. (The peak is not checked from here
    // on: the upstream may accept a new connection before it sees an old one
    // close.)
    assert_eq!(capped.counts().2, CAPPED_REQUESTS, "capped route");
}

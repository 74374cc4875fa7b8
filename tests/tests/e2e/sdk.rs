//! wedge-sdk inside the real host, through the `sdk_probe` fixture: handler
//! errors, query parsing, outbound `fetch` (hundreds in a row, denied, cut short),
//! streaming request and response bodies.
//!
//! Each test runs on both worlds (`both_worlds!`): on `sdk_probe`, and on
//! `sdk_probe_wasi03`, the same source built with the SDK's `wasi-0-3`
//! feature, a WASI 0.3 component.

use std::time::Duration;

use futures::StreamExt as _;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::harness::{Routes, Server, Upstream, World, both_worlds, json, text};

impl World {
    /// Which build of the probe: the SDK on WASI 0.2, or with `wasi-0-3`.
    fn sdk_probe(self) -> &'static str {
        match self {
            World::P2 => "sdk_probe",
            World::P3 => "sdk_probe_wasi03",
        }
    }
}

both_worlds!(
    a_handler_error_is_a_500_whose_cause_is_logged,
    the_query_string_is_parsed_or_refused_with_why,
    hundreds_of_fetches_in_a_row_all_succeed,
    a_denied_fetch_says_which_entry_to_add,
    a_request_body_is_read_chunk_by_chunk_and_answered_as_a_stream,
    a_refused_fetch_with_a_body_reports_the_refusal,
    a_fetched_body_cut_short_is_an_error_that_names_the_response,
    a_handler_waiting_for_a_client_that_does_not_read_uses_no_cpu,
);

/// `probe/[...case]`, served by `world`'s probe, with a sidecar allowing
/// `allowed`. The host must see the probe as a `world` component: the
/// feature, not the source, picks the world.
async fn probe(world: World, allowed: &str) -> (Server, Routes) {
    let sidecar = format!("allowed_outbound_hosts = [\"{allowed}\"]\n");
    let routes = Routes::new()
        .with("probe/[...case].wasm", world.sdk_probe())
        .with_bytes("probe/[...case].toml", sidecar.as_bytes());
    let admin = ["--admin", "127.0.0.1:0"].map(std::ffi::OsStr::new);
    let server = Server::start_with(routes.path(), &admin).await;
    let table = json(&server.admin().get("/routes").await);
    assert_eq!(table[0]["world"], world.name(), "{table}");
    (server, routes)
}

async fn hello_upstream() -> Upstream {
    Upstream::start(|method, _| (200, format!("{{\"method\":\"{method}\"}}"))).await
}

async fn a_handler_error_is_a_500_whose_cause_is_logged(world: World) {
    let (server, _routes) = probe(world, "http://127.0.0.1:1").await;
    for client in server.clients() {
        let answer = client.get("/probe/error").await;
        assert_eq!(
            (answer.status().as_u16(), text(&answer)),
            (500, "internal server error")
        );
    }
    let log = server.log.wait_for("disk on fire").await;
    let line = log
        .lines()
        .find(|l| l.contains("disk on fire"))
        .expect("wait_for returns a log with that line");
    assert!(
        line.contains("/probe/[...case]"),
        "not tagged with the route: {line}"
    );
}

async fn the_query_string_is_parsed_or_refused_with_why(world: World) {
    let (server, _routes) = probe(world, "http://127.0.0.1:1").await;
    let client = server.http1();
    assert_eq!(
        text(&client.get("/probe/query?limit=7&other=x").await),
        "limit 7"
    );
    let cases = [
        (
            "/probe/query?limit=300",
            "invalid query string: number too large",
        ),
        (
            "/probe/query?limit=x",
            "invalid query string: invalid digit",
        ),
        (
            "/probe/query",
            "invalid query string: missing field `limit`",
        ),
    ];
    for (path, message) in cases {
        let refused = client.get(path).await;
        assert_eq!(refused.status(), 400, "{path}");
        assert!(
            text(&refused).starts_with(message),
            "{path}: {}",
            text(&refused)
        );
    }
}

/// wstd sends an empty body as a zero-length write, which fails once the
/// host has closed the request body; the SDK sends none. Hundreds of calls
/// in a row, bodiless and with a body, must all succeed.
async fn hundreds_of_fetches_in_a_row_all_succeed(world: World) {
    let upstream = hello_upstream().await;
    let (server, _routes) = probe(world, &upstream.origin()).await;
    let client = server.http1();
    let url = format!("{}/hello", upstream.origin());
    let gets = json(
        &client
            .get(&format!("/probe/fetch?times=300&url={url}"))
            .await,
    );
    assert_eq!(
        gets,
        serde_json::json!({"ok": 300, "statuses": [200], "errors": []})
    );
    let posts = json(
        &client
            .get(&format!("/probe/fetch?times=100&bytes=2&url={url}"))
            .await,
    );
    assert_eq!(
        posts,
        serde_json::json!({"ok": 100, "statuses": [200], "errors": []})
    );
    let methods = upstream
        .seen()
        .iter()
        .filter(|seen| seen.target.starts_with("POST"))
        .count();
    assert_eq!((upstream.seen().len(), methods), (400, 100));
}

async fn a_denied_fetch_says_which_entry_to_add(world: World) {
    let upstream = hello_upstream().await;
    let (server, _routes) = probe(world, "http://127.0.0.1:1").await;
    let client = server.http1();
    let origin = upstream.origin();
    let expected = format!(
        "outbound request to {origin} denied by the host: add \"{origin}\" to \
         allowed_outbound_hosts in this route's sidecar .toml"
    );
    // A body larger than the host's buffer: without the host reading it
    // after the denial, the guest's write would fail first.
    for body in ["", "&bytes=5", "&bytes=1048576"] {
        let path = format!("/probe/fetch?times=3{body}&url={origin}/x");
        let seen = json(&client.get(&path).await);
        assert_eq!(
            seen,
            serde_json::json!({"ok": 0, "statuses": [], "errors": [expected]}),
            "{path}"
        );
    }
    assert!(
        upstream.seen().is_empty(),
        "a denied request reached the upstream"
    );
}

async fn a_request_body_is_read_chunk_by_chunk_and_answered_as_a_stream(world: World) {
    let (server, _routes) = probe(world, "http://127.0.0.1:1").await;
    for client in server.clients() {
        const CHUNK: usize = 64 * 1024;
        let chunks = futures::stream::iter(0..16)
            .map(|_| Ok::<_, std::io::Error>(Frame::data(bytes::Bytes::from(vec![7u8; CHUNK]))));
        let request = client
            .request("POST", "/probe/upload")
            .body(BodyExt::boxed(StreamBody::new(chunks)))
            .expect("a valid request");
        let answer = client.send(request).await;
        assert_eq!(answer.status(), 200);
        let lines: Vec<&str> = text(&answer).lines().collect();
        assert_eq!(
            lines.last(),
            Some(&"total: 1048576 bytes"),
            "{}",
            client.version
        );
        // The guest saw the upload in pieces, not as one buffered body.
        assert!(lines.len() > 2, "{}: {lines:?}", client.version);
    }
}

/// A request that fails before it is sent reports its own error code, even
/// when the guest is still writing its body.
async fn a_refused_fetch_with_a_body_reports_the_refusal(world: World) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let origin = format!("http://{}", closed.local_addr().expect("a bound port"));
    drop(closed);
    let (server, _routes) = probe(world, &origin).await;
    let client = server.http1();
    let expected = format!("outbound request to {origin} failed: ErrorCode::ConnectionRefused");
    for body in ["", "&bytes=5", "&bytes=1048576"] {
        let seen = json(
            &client
                .get(&format!("/probe/fetch?times=20{body}&url={origin}/"))
                .await,
        );
        assert_eq!(
            seen,
            serde_json::json!({"ok": 0, "statuses": [], "errors": [expected]}),
            "{body}"
        );
    }
}

/// An upstream that promises more body than it sends: reading the fetched
/// body fails, and the error says it was the response's body.
async fn a_fetched_body_cut_short_is_an_error_that_names_the_response(world: World) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let origin = format!("http://{}", listener.local_addr().expect("a bound port"));
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0; 1024];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => head.extend_from_slice(&buffer[..read]),
                    }
                }
                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort";
                let _ = stream.write_all(answer).await;
                // Dropped: the connection closes 95 bytes short.
            });
        }
    });
    let (server, _routes) = probe(world, &origin).await;
    let seen = json(
        &server
            .http1()
            .get(&format!("/probe/fetch?times=1&url={origin}/"))
            .await,
    );
    assert_eq!(seen["ok"], 0, "{seen}");
    let errors = seen["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{seen}");
    let error = errors[0].as_str().expect("an error");
    assert!(error.starts_with("reading the body: "), "{seen}");
    if world == World::P2 {
        // The SDK's own reader, on WASI 0.2.
        assert!(
            error.starts_with("reading the body: reading the response body: "),
            "{seen}"
        );
    }
}

/// A handler that streams a body back (the request's, or a fetched
/// response's) waits, off the CPU, while the client does not read its
/// answer: its response stream is full and body data waits, which must not
/// make the guest poll in a loop. A guest spinning in that wait would use
/// the whole second below.
async fn a_handler_waiting_for_a_client_that_does_not_read_uses_no_cpu(world: World) {
    // More than the socket buffers on both sides hold.
    const SIZE: usize = 32 << 20;
    let upstream = Upstream::start(|_, _| (200, "~".repeat(SIZE))).await;
    let sidecar = format!(
        "max_body = \"64MiB\"\nallowed_outbound_hosts = [\"{}\"]\n",
        upstream.origin()
    );
    let routes = Routes::new()
        .with("probe/[...case].wasm", world.sdk_probe())
        .with_bytes("probe/[...case].toml", sidecar.as_bytes());
    let server = Server::start(routes.path()).await;
    let echo = format!(
        "POST /probe/echo HTTP/1.1\r\nhost: wedge\r\ncontent-length: {SIZE}\r\n\r\n{}",
        "~".repeat(SIZE)
    );
    let relay = format!(
        "GET /probe/relay?url={}/ HTTP/1.1\r\nhost: wedge\r\n\r\n",
        upstream.origin()
    );
    for request in [echo, relay] {
        let line = request.lines().next().unwrap_or_default().to_owned();
        let mut stream = tokio::net::TcpStream::connect(server.addr)
            .await
            .expect("connect");
        let (mut reader, mut writer) = stream.split();
        // Sent whole only once the answer is being read below.
        let send = async { writer.write_all(request.as_bytes()).await.expect("send") };
        let wait = async {
            // Let the socket buffers fill, then measure a second in which
            // nobody reads the answer.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let before = server.cpu_time();
            tokio::time::sleep(Duration::from_secs(1)).await;
            let used = server.cpu_time() - before;
            assert!(
                used < Duration::from_millis(300),
                "{line}: the server used {used:?} of CPU in a second of waiting"
            );
            let mut answer = Vec::new();
            let mut buffer = vec![0; 1 << 16];
            while !answer.ends_with(b"0\r\n\r\n") {
                let read = reader.read(&mut buffer).await.expect("read the answer");
                assert!(read > 0, "{line}: the answer ended early");
                answer.extend_from_slice(&buffer[..read]);
            }
            answer
        };
        let ((), answer) = tokio::join!(send, wait);
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{line}");
        // Chunked: the body is every `~`, between chunk-size lines.
        let streamed = answer.iter().filter(|&&byte| byte == b'~').count();
        assert_eq!(streamed, SIZE, "{line}");
    }
}

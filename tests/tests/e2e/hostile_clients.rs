//! Clients that try to take the server down: silent sockets, half-sent
//! HTTP/2 prefaces, HTTP/2 peers that never open a stream, uploads over the
//! limit, requests that leave early, and headers crafted to confuse the host.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Routes, Server, json, text};

fn args(list: &[&'static str]) -> Vec<&'static OsStr> {
    list.iter().map(|arg| OsStr::new(*arg)).collect()
}

/// Whether the server closes `stream` within `within` (reading and
/// discarding whatever it sends first).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut sink = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut sink))
        .await
        .is_ok()
}

/// The server's open file descriptors.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .count()
}

/// Sends a raw HTTP/1.1 request and reads until the server closes or
/// `within` passes; what arrived.
async fn raw_exchange(addr: SocketAddr, request: &[u8], within: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("send the request");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(within, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn silent_sockets_and_half_prefaces_do_not_hold_the_connection_slots() {
    let routes = Routes::new().with("ok.wasm", "hello_v1");
    let flags = args(&["--max-connections", "50", "--header-timeout", "1s"]);
    let server = Server::start_with(routes.path(), &flags).await;
    let mut hostile = Vec::new();
    for n in 0..60 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        if n % 3 == 1 {
            // Half an HTTP/2 preface: enough to pass for HTTP/2, never done.
            stream.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        }
        hostile.push(stream);
    }
    // A well-behaved client, queued behind them, is served.
    let started = Instant::now();
    let served = tokio::time::timeout(Duration::from_secs(10), server.http1().get("/ok")).await;
    assert_eq!(
        served
            .expect("a client was starved by silent sockets")
            .status(),
        200
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    for (n, stream) in hostile.iter_mut().enumerate() {
        assert!(
            closed_within(stream, Duration::from_secs(5)).await,
            "silent socket {n} still open"
        );
    }
}

/// An HTTP/2 connection driven by hyper's client, which answers the
/// server's pings: only the server's own deadlines can close it.
async fn h2_connection(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    (sender, task)
}

#[tokio::test]
async fn an_h2_peer_that_never_opens_a_stream_or_goes_idle_is_closed() {
    let routes = Routes::new().with("ok.wasm", "hello_v1");
    let flags = args(&["--header-timeout", "1s"]);
    let server = Server::start_with(routes.path(), &flags).await;
    // Never opens a stream.
    let (_sender, silent) = h2_connection(server.addr).await;
    let closed = tokio::time::timeout(Duration::from_secs(6), silent).await;
    assert!(
        closed.is_ok(),
        "an h2 connection with no stream stayed open"
    );
    // One request, then idle.
    let (mut sender, idle) = h2_connection(server.addr).await;
    let request = http::Request::get(format!("http://{}/ok", server.addr))
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.expect("served");
    assert_eq!(response.status(), 200);
    drop(response);
    let closed = tokio::time::timeout(Duration::from_secs(6), idle).await;
    assert!(closed.is_ok(), "an idle h2 connection stayed open");
}

#[tokio::test]
async fn the_admin_listener_is_capped_and_times_out_silent_sockets() {
    let routes = Routes::new().with("ok.wasm", "hello_v1");
    let flags = args(&["--admin", "127.0.0.1:0", "--header-timeout", "1s"]);
    let server = Server::start_with(routes.path(), &flags).await;
    let admin = server.admin.expect("admin address");
    // Counted once the server has opened what it keeps (watcher, runtimes).
    // The two requests' connections may still be open on the server's side
    // (their clients are gone, the server has yet to notice): `before` may
    // count them, two fds within the slack of the bound below.
    assert_eq!(server.admin().get("/healthz").await.status(), 200);
    assert_eq!(server.http1().get("/ok").await.status(), 200);
    let before = open_fds(server.pid());
    let mut silent = Vec::new();
    for _ in 0..150 {
        silent.push(TcpStream::connect(admin).await.unwrap());
    }
    // The server takes connections up to its cap (less the two above, if
    // they have closed since)...
    let cap = wedge::ADMIN_MAX_CONNECTIONS;
    crate::harness::wait_until(
        "the admin listener holds its cap of connections",
        async || open_fds(server.pid()) + 2 >= before + cap,
    )
    .await;
    // ...and no more: past the cap, connections wait in the kernel's queue,
    // not as fds. A wait, not a poll (an uncapped server would take them
    // within milliseconds), and well inside the 1 s header timeout that
    // closes the first ones.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = open_fds(server.pid());
    assert!(
        during <= before + wedge::ADMIN_MAX_CONNECTIONS + 16,
        "{before} fds before, {during} with 150 silent admin sockets"
    );
    for (n, stream) in silent.iter_mut().enumerate() {
        assert!(
            closed_within(stream, Duration::from_secs(10)).await,
            "silent admin socket {n} still open"
        );
    }
    assert_eq!(server.admin().get("/healthz").await.status(), 200);
}

/// Sends `head` then `body_bytes` of body (chunked when `chunked`) while
/// reading the answer; the answer, and whether every byte could be sent.
async fn upload(
    addr: SocketAddr,
    head: String,
    body_bytes: usize,
    chunked: bool,
) -> (String, bool) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let sender = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        let piece = vec![b'x'; 64 << 10];
        let mut sent = 0;
        while sent < body_bytes {
            if chunked {
                writer
                    .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                    .await?;
                writer.write_all(&piece).await?;
                writer.write_all(b"\r\n").await?;
            } else {
                writer.write_all(&piece).await?;
            }
            sent += piece.len();
        }
        if chunked {
            writer.write_all(b"0\r\n\r\n").await?;
        }
        std::io::Result::Ok(writer)
    });
    let mut answer = vec![0u8; 4096];
    let mut read = 0;
    while !String::from_utf8_lossy(&answer[..read]).contains("\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(10), reader.read(&mut answer[read..])).await
        {
            Ok(Ok(n)) if n > 0 => read += n,
            _ => break,
        }
    }
    let sent = tokio::time::timeout(Duration::from_secs(10), sender).await;
    let sent = matches!(sent, Ok(Ok(Ok(_))));
    (String::from_utf8_lossy(&answer[..read]).into_owned(), sent)
}

#[tokio::test]
async fn a_client_still_sending_an_upload_over_max_body_reads_its_413() {
    let routes = Routes::new()
        .with("never.wasm", "trap")
        .with_bytes("never.toml", br#"max_body = "1KiB""#)
        .with("count.wasm", "inspect")
        .with_bytes("count.toml", br#"max_body = "1KiB""#);
    let server = Server::start(routes.path()).await;
    let eight_mib = 8 << 20;
    for round in 0..3 {
        // Chunked: the guest is reading when the limit passes.
        let head = "POST /count HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        let (answer, sent) = upload(server.addr, head.into(), eight_mib, true).await;
        assert!(
            answer.starts_with("HTTP/1.1 413"),
            "round {round}: {answer:?}"
        );
        assert!(
            sent,
            "round {round}: the upload was cut (reset) after the 413"
        );
        // Declared too large: refused before the guest starts.
        let head =
            format!("POST /never HTTP/1.1\r\nHost: x\r\nContent-Length: {eight_mib}\r\n\r\n");
        let (answer, sent) = upload(server.addr, head, eight_mib, false).await;
        assert!(
            answer.starts_with("HTTP/1.1 413"),
            "round {round}: {answer:?}"
        );
        assert!(
            sent,
            "round {round}: the upload was cut (reset) after the 413"
        );
    }
}

#[tokio::test]
async fn a_head_request_and_a_client_that_leaves_free_their_instance_slot() {
    let routes = Routes::new()
        .with("stream.wasm", "slow_stream")
        .with_bytes("stream.toml", b"max_concurrency = 1")
        .with("sleep.wasm", "sleepy")
        .with_bytes("sleep.toml", b"max_concurrency = 1");
    let server = Server::start(routes.path()).await;
    let client = server.http1();
    // HEAD: headers only; the guest streaming its body for ~2 s is stopped.
    let head = client.call("HEAD", "/stream").await;
    assert_eq!(head.status(), 200);
    assert_eq!(
        eventually_ok(&server, "/stream", Duration::from_secs(1)).await,
        200
    );
    // A client that leaves before the headers: its guest is stopped.
    let mut leaving = TcpStream::connect(server.addr).await.unwrap();
    leaving
        .write_all(b"GET /sleep?ms=60000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Its guest holds the route's one slot: others get 503.
    let started = Instant::now();
    loop {
        let status = client.get("/sleep?ms=0").await.status();
        if status == 503 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never held: {status}"
        );
    }
    drop(leaving);
    let status = eventually_ok(&server, "/sleep?ms=0", Duration::from_secs(2)).await;
    assert_eq!(status, 200, "the slot stayed taken after its client left");
}

/// Gets `path` until it answers 200 or `within` passes; the last status.
async fn eventually_ok(server: &Server, path: &str, within: Duration) -> u16 {
    let client = server.http1();
    let started = Instant::now();
    loop {
        let status = client.get(path).await.status().as_u16();
        if status == 200 || started.elapsed() > within {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn connection_host_cannot_strip_the_requests_authority() {
    let routes = Routes::new().with("ok.wasm", "inspect");
    let server = Server::start(routes.path()).await;
    let within = Duration::from_secs(5);
    let answer = raw_exchange(
        server.addr,
        b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: host, close\r\n\r\n",
        within,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""path_with_query":"/ok""#), "{answer}");
}

#[tokio::test]
async fn a_backslash_path_is_not_redirected_off_site() {
    let routes = Routes::new().with("ok.wasm", "inspect");
    let server = Server::start(routes.path()).await;
    // Browsers read `\` as `/`: `/\evil.example` would be `//evil.example`.
    let answer = raw_exchange(
        server.addr,
        b"GET /\\evil.example/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
    let location = answer
        .lines()
        .find_map(|line| line.strip_prefix("location: "))
        .unwrap_or_default();
    assert_eq!(location, "/%5Cevil.example", "{answer}");
}

#[tokio::test]
async fn a_non_ascii_forwarded_entry_spoils_only_itself() {
    let routes = Routes::new().with("ok.wasm", "inspect");
    let flags = args(&["--trust-proxy", "127.0.0.1"]);
    let server = Server::start_with(routes.path(), &flags).await;
    let mut request = b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".to_vec();
    request.extend_from_slice(b"X-Forwarded-For: \xff, 203.0.113.7\r\n\r\n");
    let answer = raw_exchange(server.addr, &request, Duration::from_secs(5)).await;
    // The JSON object, whether the body came chunked or not.
    let body = match (answer.find('{'), answer.rfind('}')) {
        (Some(start), Some(end)) => &answer[start..=end],
        _ => "",
    };
    let seen: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    assert_eq!(
        seen["headers"]["wedge-client-addr"][0], "203.0.113.7",
        "{answer}"
    );
    // The harness client agrees on the plain cases.
    let answer = server.http1().get("/ok").await;
    assert_eq!(json(&answer)["method"], "GET", "{}", text(&answer));
}

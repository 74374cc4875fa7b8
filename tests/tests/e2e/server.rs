//! Server-wide behaviour: request ids, dev mode, hostile clients, noisy
//! neighbours, graceful shutdown.

use std::ffi::OsStr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Routes, Server, text};

#[tokio::test]
async fn every_response_carries_a_request_id_that_the_log_and_guest_share() {
    let routes = Routes::new()
        .with("ok.wasm", "inspect")
        .with("boom.wasm", "trap");
    let server = Server::start(routes.path()).await;
    let client = server.http1();
    let answer = client.get("/ok").await;
    let id = answer.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 16, "{id}");
    assert_eq!(
        crate::harness::json(&answer)["headers"]["x-request-id"][0],
        id.as_str()
    );

    // A well-formed incoming id is kept; a malformed one is replaced.
    for (incoming, kept) in [("req-42.a_b", true), ("bad id", false)] {
        let request = client
            .request("GET", "/boom")
            .header("x-request-id", incoming);
        let answer = client
            .send(request.body(crate::harness::empty()).unwrap())
            .await;
        let id = answer.headers()["x-request-id"].to_str().unwrap();
        assert_eq!(id == incoming, kept, "{incoming:?} -> {id}");
    }
    // The log is written off the serving threads: it may trail the response.
    let mut log = server.log.wait_for("request{id=req-42.a_b}").await;
    for _ in 0..200 {
        if log
            .lines()
            .any(|l| l.contains("guest trapped") && l.contains("req-42.a_b"))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        log = server.log.text();
    }
    let trap_line = log
        .lines()
        .find(|l| l.contains("guest trapped") && l.contains("req-42.a_b"))
        .unwrap_or_else(|| panic!("the trap is not logged with its request id:\n{log}"));
    assert!(trap_line.contains("route /boom"), "{trap_line}");
    assert!(
        log.lines()
            .any(|l| l.contains("stderr: fixture trap") && l.contains("req-42.a_b")),
        "guest output lacks the request id:\n{log}"
    );
}

#[tokio::test]
async fn dev_mode_shows_the_trap_to_the_client_and_serve_never_does() {
    let routes = Routes::new().with("boom.wasm", "trap");
    let dev = Server::start_with(routes.path(), &[OsStr::new("--dev")]).await;
    let answer = dev.http1().get("/boom").await;
    assert_eq!(answer.status(), 500);
    assert!(
        text(&answer).contains("wasm backtrace"),
        "{}",
        text(&answer)
    );
    assert!(text(&answer).contains("unreachable"), "{}", text(&answer));
    assert_eq!(
        answer.headers()["content-type"],
        "text/plain; charset=utf-8"
    );

    // A browser gets the same as a page.
    let accept = [("accept", "text/html,application/xhtml+xml,*/*;q=0.8")];
    let page = dev.http1().call_with("GET", "/boom", &accept, "").await;
    assert_eq!(page.status(), 500);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = text(&page);
    assert!(html.starts_with("<!doctype html>"), "{html}");
    assert!(
        html.contains("<pre>") && html.contains("wasm backtrace"),
        "{html}"
    );

    let plain = Server::start(routes.path()).await;
    let answer = plain.http1().get("/boom").await;
    assert_eq!(text(&answer), "internal server error\n");
    let html = plain
        .http1()
        .call_with("GET", "/boom", &[("accept", "text/html")], "")
        .await;
    assert_eq!(text(&html), "internal server error\n");
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let routes = Routes::new().with("ok.wasm", "inspect");
    let server = Server::start_with(
        routes.path(),
        &[OsStr::new("--header-timeout"), OsStr::new("1s")],
    )
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "still connected after 10 s");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // Headers too large are refused.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let huge = format!(
        "GET /ok HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100 << 10)
    );
    let _ = stream.write_all(huge.as_bytes()).await;
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    assert!(
        response.is_empty() || response.starts_with("HTTP/1.1 431"),
        "{response}"
    );
    assert_eq!(server.http1().get("/ok").await.status(), 200);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let routes = Routes::new().with("ok.wasm", "hello_v1");
    let server = Server::start_with(
        routes.path(),
        &[OsStr::new("--header-timeout"), OsStr::new("1s")],
    )
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 4096];
    let n = stream.read(&mut buffer).await.unwrap();
    assert!(
        buffer[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buffer[..n])
    );
    // Now idle: the server closes the connection after about the timeout.
    let started = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "an idle connection stayed open for 10 s");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn connections_over_the_cap_wait_to_be_accepted() {
    let routes = Routes::new().with("ok.wasm", "inspect");
    // The cap is the server's, not each serving thread's.
    let args = ["--max-connections", "1", "--threads", "2"].map(OsStr::new);
    let server = Server::start_with(routes.path(), &args).await;
    // Answered, so accepted: the holder has the one connection slot, and
    // keeps it while idle (for the 10 s header timeout).
    let mut holder = TcpStream::connect(server.addr).await.unwrap();
    holder
        .write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 4096];
    let n = holder.read(&mut buffer).await.unwrap();
    assert!(
        buffer[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buffer[..n])
    );
    let waiting = tokio::spawn({
        let client = server.http1();
        async move { client.get("/ok").await.status() }
    });
    // A wait, not a poll: the second connection must *not* be served
    // during it (an uncapped server answers within milliseconds).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a second connection was served past the cap"
    );
    drop(holder);
    let status = tokio::time::timeout(Duration::from_secs(10), waiting).await;
    assert_eq!(status.expect("served once the first closed").unwrap(), 200);
}

#[tokio::test]
async fn every_serving_thread_takes_connections() {
    let routes = Routes::new().with("ok.wasm", "hello_v1");
    let args = ["--threads", "3"].map(OsStr::new);
    let server = Server::start_with(routes.path(), &args).await;
    server.log.wait_for("serving on 3 thread(s)").await;
    #[cfg(target_os = "linux")]
    {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", server.pid())).unwrap();
        let serving = tasks
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with("wedge-serve-"))
            .count();
        assert_eq!(serving, 3);
    }
    // New connections, each one request, many at once: whichever thread
    // accepts one serves it.
    let requests: Vec<_> = (0..48)
        .map(|_| {
            let client = server.http1();
            tokio::spawn(async move {
                let answer = client.get("/ok").await;
                (answer.status().as_u16(), text(&answer).to_owned())
            })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap(), (200, "v1".to_owned()));
    }
}

#[tokio::test]
async fn a_noisy_neighbour_does_not_stop_a_well_behaved_route() {
    let routes = Routes::new()
        .with("spin.wasm", "busy_loop")
        .with_bytes("spin.toml", b"timeout = \"1s\"\n")
        .with("ok.wasm", "hello_v1");
    let server =
        Server::start_with(routes.path(), &["--admin", "127.0.0.1:0"].map(OsStr::new)).await;
    let noise: Vec<_> = (0..4)
        .map(|_| {
            let client = server.http1();
            tokio::spawn(async move {
                let started = Instant::now();
                while started.elapsed() < Duration::from_secs(3) {
                    assert_eq!(client.get("/spin").await.status(), 504);
                }
            })
        })
        .collect();
    // All four spin before the well-behaved route is measured.
    server.wait_for_in_flight(4).await;
    let client = server.http1();
    let started = Instant::now();
    let mut served = 0;
    while started.elapsed() < Duration::from_millis(2500) {
        let answer = client.get("/ok").await;
        assert_eq!((answer.status().as_u16(), text(&answer)), (200, "v1"));
        served += 1;
    }
    assert!(
        served > 10,
        "only {served} requests served beside the noise"
    );
    for task in noise {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish_then_exits_zero() {
    let routes = Routes::new().with("wait.wasm", "sleepy");
    let args = ["--admin", "127.0.0.1:0"].map(OsStr::new);
    let server = Server::start_with(routes.path(), &args).await;
    let client = server.http1();
    let in_flight = tokio::spawn(async move { client.get("/wait?ms=1500").await });
    server.wait_for_in_flight(1).await;
    let addr = server.addr;
    let log = server.log.clone();
    assert_eq!(server.stop().await, 0);
    let answer = in_flight.await.unwrap();
    assert_eq!(
        (answer.status().as_u16(), text(&answer)),
        (200, "slept 1500 ms")
    );
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
    // The process has exited, but its last lines may still be in the pipe.
    log.wait_for("shutting down").await;
}

#[tokio::test]
async fn shutdown_closes_what_is_still_running_after_the_grace() {
    let routes = Routes::new().with("wait.wasm", "sleepy");
    let args = ["--shutdown-grace", "1s", "--admin", "127.0.0.1:0"].map(OsStr::new);
    let server = Server::start_with(routes.path(), &args).await;
    let client = server.http1();
    let request = client
        .request("GET", "/wait?ms=60000")
        .body(crate::harness::empty())
        .unwrap();
    let in_flight = tokio::spawn(async move { client.try_send(request).await });
    server.wait_for_in_flight(1).await;
    let log = server.log.clone();
    let started = Instant::now();
    assert_eq!(server.stop().await, 0);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert!(
        in_flight.await.unwrap().is_err(),
        "the request was cut, not answered"
    );
    log.wait_for("1 guest instance(s) still running").await;
}

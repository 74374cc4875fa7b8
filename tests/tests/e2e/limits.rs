//! Per-route settings (sidecar `.toml`) and the sandbox's limits, with real
//! misbehaving guests.

use std::ffi::OsStr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

use crate::harness::{Routes, Server, json, text};

impl Routes {
    /// Writes the sidecar `file` (e.g. `a.toml`).
    fn sidecar(self, file: &str, toml: &str) -> Routes {
        self.with_bytes(file, toml.as_bytes())
    }
}

#[tokio::test]
async fn methods_not_listed_get_405_without_starting_the_guest() {
    // `trap` would answer 500 if it ever ran.
    let routes = Routes::new()
        .with("only-post.wasm", "trap")
        .sidecar("only-post.toml", r#"methods = ["POST"]"#)
        .with("get.wasm", "inspect")
        .sidecar("get.toml", r#"methods = ["GET", "PUT"]"#)
        .with("cors.wasm", "inspect")
        .sidecar("cors.toml", r#"methods = ["GET", "OPTIONS"]"#);
    let server = Server::start(routes.path()).await;
    for client in server.clients() {
        let what = client.version;
        for method in ["GET", "DELETE", "HEAD"] {
            let answer = client.call(method, "/only-post").await;
            assert_eq!(answer.status(), 405, "{method} over {what}");
            assert_eq!(answer.headers()["allow"], "POST, OPTIONS", "{what}");
        }
        let delete = client.call("DELETE", "/get").await;
        assert_eq!(delete.status(), 405);
        assert_eq!(delete.headers()["allow"], "GET, PUT, HEAD, OPTIONS");

        // HEAD goes to the GET handler; the client gets no body.
        let head = client.call("HEAD", "/get").await;
        assert_eq!(head.status(), 200, "{what}");
        assert!(head.body().is_empty(), "{what}");

        // OPTIONS not listed: the host answers.
        let options = client.call("OPTIONS", "/get").await;
        assert_eq!(options.status(), 204, "{what}");
        assert_eq!(options.headers()["allow"], "GET, PUT, HEAD, OPTIONS");

        // OPTIONS listed: the guest answers its own preflights.
        let preflight = client.call("OPTIONS", "/cors").await;
        assert_eq!(preflight.status(), 200, "{what}");
        assert_eq!(json(&preflight)["method"], "OPTIONS");
    }
    // HEAD reached the guest as GET.
    let log = server.log.wait_for("stdout: inspect: GET /get").await;
    assert!(!log.contains("guest trapped"), "the guest ran:\n{log}");
}

#[tokio::test]
async fn a_guest_over_its_timeout_gets_504_and_frees_its_slot() {
    let routes = Routes::new()
        .with("spin.wasm", "busy_loop")
        .sidecar("spin.toml", r#"timeout = "1s""#)
        .with("wait.wasm", "sleepy")
        .sidecar("wait.toml", r#"timeout = "500ms""#)
        .with("ok.wasm", "inspect");
    let args = ["--max-instances".as_ref(), "1".as_ref()];
    let server = Server::start_with(routes.path(), &args).await;
    let client = server.http1();
    for (path, timeout) in [("/spin", 1.0), ("/wait?ms=60000", 0.5)] {
        let started = Instant::now();
        let answer = client.get(path).await;
        let took = started.elapsed().as_secs_f64();
        assert_eq!(
            (answer.status().as_u16(), text(&answer)),
            (504, "handler timed out\n"),
            "GET {path}, after {took} s"
        );
        assert!(
            took >= timeout && took < timeout + 5.0,
            "GET {path} took {took} s"
        );
        // The only instance slot is free again.
        let after = client.get("/ok").await;
        assert_eq!(after.status(), 200, "after GET {path}: {}", text(&after));
    }
    // A guest that answers in time is unaffected.
    let answer = client.get("/wait?ms=10").await;
    assert_eq!(
        (answer.status().as_u16(), text(&answer)),
        (200, "slept 10 ms")
    );
}

#[tokio::test]
async fn a_guest_growing_past_its_memory_traps_and_others_are_unaffected() {
    let routes = Routes::new()
        .with("bomb.wasm", "memory_bomb")
        .sidecar("bomb.toml", r#"memory = "32MiB""#)
        .with("ok.wasm", "inspect");
    let server = Server::start(routes.path()).await;
    let client = server.http1();
    let answer = client.get("/bomb?mb=8").await;
    assert_eq!(
        (answer.status().as_u16(), text(&answer)),
        (200, "allocated 8 MiB")
    );
    let answer = client.get("/bomb").await;
    assert_eq!(answer.status(), 500);
    assert_eq!(client.get("/ok").await.status(), 200);
    let answer = client.get("/bomb?mb=64").await;
    assert_eq!(answer.status(), 500, "64 MiB is over the route's 32 MiB");
}

#[tokio::test]
async fn a_body_over_max_body_gets_413_with_or_without_content_length() {
    let routes = Routes::new()
        .with("never.wasm", "trap")
        .sidecar("never.toml", r#"max_body = "1KiB""#)
        .with("count.wasm", "inspect")
        .sidecar("count.toml", "max_body = 1024");
    let server = Server::start(routes.path()).await;
    for client in server.clients() {
        let what = client.version;
        // Declared too large: refused before the guest starts (it would trap).
        let answer = client.post("/never", vec![b'x'; 2048]).await;
        assert_eq!(answer.status(), 413, "{what}");
        // Within the limit: the guest reads it.
        let answer = client.post("/count", vec![b'x'; 1024]).await;
        assert_eq!(json(&answer)["body_len"], 1024, "{what}");
        // Streamed with no length: counted as it arrives.
        let chunks = futures::stream::iter(0..4)
            .map(|_| Ok::<_, std::io::Error>(Frame::data(Bytes::from(vec![b'y'; 512]))));
        let request = client
            .request("POST", "/count")
            .body(BodyExt::boxed(StreamBody::new(chunks)))
            .unwrap();
        assert!(request.headers().get("content-length").is_none());
        let answer = client.send(request).await;
        assert_eq!(answer.status(), 413, "{what}: {:?}", answer.body());
    }
}

#[tokio::test]
async fn env_comes_only_from_the_sidecar_with_host_variables_substituted() {
    let routes = Routes::new()
        .with("env.wasm", "env_dump")
        .sidecar(
            "env.toml",
            "[env]\nAPI_TOKEN = \"Bearer ${WEDGE_TEST_SECRET}\"\nPRICE = \"$$5\"\n",
        )
        .with("missing.wasm", "env_dump")
        .sidecar("missing.toml", "[env]\nKEY = \"${WEDGE_TEST_UNSET}\"\n");
    let env_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(env_file.path(), "FROM_FILE=one\n").unwrap();
    let args = ["--env-file".as_ref(), env_file.path().as_os_str()];
    let server = Server::start_with_env(
        routes.path(),
        &args,
        &[("WEDGE_TEST_SECRET", "s3cr3t-value"), ("HOST_ONLY", "leak")],
    )
    .await;
    let client = server.http1();
    let seen = json(&client.get("/env").await);
    assert_eq!(
        seen,
        serde_json::json!({"API_TOKEN": "Bearer s3cr3t-value", "PRICE": "$5"})
    );

    let answer = client.get("/missing").await;
    assert_eq!(
        (answer.status().as_u16(), text(&answer)),
        (500, "route failed to load\n")
    );
    let log = server.log.text();
    assert!(log.contains("WEDGE_TEST_UNSET"), "{log}");
    assert!(log.contains("missing.toml"), "{log}");
    assert!(
        !log.contains("s3cr3t-value"),
        "a secret reached the log:\n{log}"
    );

    // Variables from the env file, re-read when it changes.
    std::fs::write(
        routes.path().join("env.toml"),
        "[env]\nFROM_FILE = \"${FROM_FILE}\"\n",
    )
    .unwrap();
    crate::reload::eventually_json(&client, "/env", serde_json::json!({"FROM_FILE": "one"})).await;
    std::fs::write(env_file.path(), "FROM_FILE=two\n").unwrap();
    crate::reload::eventually_json(&client, "/env", serde_json::json!({"FROM_FILE": "two"})).await;
}

#[tokio::test]
async fn a_bad_sidecar_fails_its_route_and_never_replaces_good_settings() {
    let routes = Routes::new()
        .with("bad.wasm", "inspect")
        .sidecar("bad.toml", "methods = [\"GET\"]\ntimeuot = \"1s\"\n")
        .with("good.wasm", "inspect")
        .sidecar("good.toml", r#"methods = ["GET"]"#);
    let server = Server::start(routes.path()).await;
    let client = server.http1();
    let answer = client.get("/bad").await;
    assert_eq!(
        (answer.status().as_u16(), text(&answer)),
        (500, "route failed to load\n")
    );
    let log = server.log.text();
    assert!(log.contains("bad.toml") && log.contains("timeuot"), "{log}");

    assert_eq!(client.post("/good", "x").await.status(), 405);
    std::fs::write(routes.path().join("good.toml"), "methods = \"GET\"\n").unwrap();
    server.log.wait_for("good.toml").await;
    server.log.wait_for("still serving version").await;
    // The previous settings stay: still GET only.
    assert_eq!(client.post("/good", "x").await.status(), 405);
    assert_eq!(client.get("/good").await.status(), 200);
    // A fixed sidecar is picked up.
    std::fs::write(
        routes.path().join("good.toml"),
        r#"methods = ["GET", "POST"]"#,
    )
    .unwrap();
    crate::reload::eventually_post_ok(&client, "/good").await;
}

#[tokio::test]
async fn full_slots_answer_503_at_once() {
    let routes = Routes::new()
        .with("one.wasm", "sleepy")
        .sidecar("one.toml", "max_concurrency = 1")
        .with("other.wasm", "sleepy");
    let args = ["--max-instances", "2", "--admin", "127.0.0.1:0"].map(OsStr::new);
    let server = Server::start_with(routes.path(), &args).await;
    let client = server.http1();
    let slow = |path: &'static str| {
        let client = server.http1();
        tokio::spawn(async move { client.get(path).await.status() })
    };
    // The route's share: one in flight, the next refused.
    let first = slow("/one?ms=2000");
    server.wait_for_in_flight(1).await;
    let started = Instant::now();
    let busy = client.get("/one?ms=1").await;
    assert_eq!(busy.status(), 503);
    assert_eq!(busy.headers()["retry-after"], "1");
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "503 came after {:?}",
        started.elapsed()
    );
    // The server's slots: two in flight in all, the third refused.
    let second = slow("/other?ms=2000");
    server.wait_for_in_flight(2).await;
    assert_eq!(client.get("/other?ms=1").await.status(), 503);
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(second.await.unwrap(), 200);
    assert_eq!(client.get("/other?ms=1").await.status(), 200);
}

#[tokio::test]
async fn config_defaults_apply_unless_a_sidecar_overrides_them() {
    let routes = Routes::new()
        .with("default.wasm", "inspect")
        .with("own.wasm", "inspect")
        .sidecar("own.toml", r#"methods = ["GET", "POST"]"#);
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        "[defaults]\nmethods = [\"GET\"]\nmax_body = 10\n",
    )
    .unwrap();
    let args = ["--config".as_ref(), config.path().as_os_str()];
    let server = Server::start_with(routes.path(), &args).await;
    let client = server.http1();
    assert_eq!(client.post("/default", "x").await.status(), 405);
    // `methods` from the sidecar, `max_body` still from the defaults.
    assert_eq!(client.post("/own", "small").await.status(), 200);
    assert_eq!(
        client
            .post("/own", "far more than ten bytes")
            .await
            .status(),
        413
    );
}

/// Reads a response whose body must end in an error; what arrived before it.
async fn cut_body(response: http::Response<hyper::body::Incoming>) -> Vec<u8> {
    let mut body = response.into_body();
    let mut received = Vec::new();
    loop {
        match body.frame().await {
            Some(Ok(frame)) => received.extend_from_slice(frame.data_ref().map_or(&[][..], |d| d)),
            Some(Err(_)) => return received,
            None => panic!("the body ended cleanly after {} bytes", received.len()),
        }
    }
}

#[tokio::test]
async fn limits_that_hit_after_the_headers_cut_the_response() {
    let routes = Routes::new()
        .with("slow.wasm", "slow_stream")
        .sidecar("slow.toml", r#"timeout = "500ms""#)
        .with("echo.wasm", "echo_stream")
        .sidecar("echo.toml", r#"max_body = "64KiB""#);
    let server = Server::start(routes.path()).await;
    for client in server.clients() {
        let what = client.version;
        // The timeout covers the streamed body.
        let request = client
            .request("GET", "/slow")
            .body(crate::harness::empty())
            .unwrap();
        let response = client.send_streaming(request).await;
        assert_eq!(response.status(), 200, "{what}");
        let received = cut_body(response).await;
        assert!(
            received.starts_with(b"chunk 0\n") && received.len() < 200,
            "{what}: {received:?}"
        );

        // An upload passing max_body after the guest answered: the guest's
        // body stream fails, and the response is cut.
        let chunks = futures::stream::iter(0..64)
            .map(|_| Ok::<_, std::io::Error>(Frame::data(Bytes::from(vec![b'z'; 16 << 10]))));
        let request = client
            .request("POST", "/echo")
            .body(BodyExt::boxed(StreamBody::new(chunks)))
            .unwrap();
        let response = client.send_streaming(request).await;
        if response.status() == 413 {
            continue; // The limit hit before the guest answered: also right.
        }
        assert_eq!(response.status(), 200, "{what}");
        let received = cut_body(response).await;
        assert!(
            received.len() <= 64 << 10,
            "{what}: {} bytes echoed past the limit",
            received.len()
        );
    }
    server.log.wait_for("stopped at its timeout").await;
}

/// A response cut because the upload passed `max_body` reaches a client
/// that goes on sending: the connection closes once the rest of the upload
/// is read and discarded, not while it arrives. Closing with upload data
/// unread resets the connection: the client's writes fail, and its HTTP
/// stack may give up on the answer it has not read yet.
#[tokio::test]
async fn a_response_cut_at_the_body_limit_reaches_a_client_still_sending() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let routes = Routes::new()
        .with("echo.wasm", "echo_stream")
        .sidecar("echo.toml", r#"max_body = "64KiB""#);
    let server = Server::start(routes.path()).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    // Chunked, so the limit is found as the body streams, after the guest
    // has answered; 2 MiB, more than the socket buffers hold.
    let mut upload =
        b"POST /echo HTTP/1.1\r\nhost: wedge\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..128 {
        upload.extend_from_slice(format!("{:x}\r\n", 16 << 10).as_bytes());
        upload.extend_from_slice(&[b'~'; 16 << 10]);
        upload.extend_from_slice(b"\r\n");
    }
    upload.extend_from_slice(b"0\r\n\r\n");
    stream
        .write_all(&upload)
        .await
        .expect("the whole upload is taken");
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .await
        .expect("the answer, then the connection closed without a reset");
    let start = String::from_utf8_lossy(&answer[..answer.len().min(100)]).into_owned();
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{start}");
    // Cut: chunked, without the last chunk; no more echoed than the limit.
    assert!(!answer.ends_with(b"0\r\n\r\n"), "{start}");
    let echoed = answer.iter().filter(|&&byte| byte == b'~').count();
    assert!(echoed <= 64 << 10, "{echoed} bytes echoed");
    server
        .log
        .wait_for("guest failed after sending its response headers")
        .await;
}

#[tokio::test]
async fn without_address_space_for_the_pool_wedge_falls_back_and_serves() {
    let routes = Routes::new().with("ok.wasm", "hello_v1");
    let cache = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    // 24 GiB of address space: far less than the pool's reservation (1000
    // instances of 4 GiB memories), enough for on-demand instances.
    let script = format!(
        "ulimit -v 25165824 && exec {} serve \"$1\" --listen 127.0.0.1:0 --cache-dir \"$2\" \
         --data-dir \"$3/data\"",
        crate::harness::WEDGE
    );
    let mut child = tokio::process::Command::new("sh")
        .args(["-c", &script, "sh"])
        .arg(routes.path())
        .arg(cache.path())
        .arg(data.path())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(120), stdout.next_line()).await;
    let first = first.unwrap().unwrap().unwrap_or_default();
    let addr: std::net::SocketAddr = first
        .strip_prefix("listening on http://")
        .unwrap()
        .parse()
        .unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let warning = stderr.next_line().await.unwrap().unwrap_or_default();
    assert!(
        warning.contains("falling back to on-demand allocation"),
        "{warning}"
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\r\nv1\r\n"), "{response}");
}

#[tokio::test]
async fn a_busy_guest_stops_at_its_cpu_time_and_a_waiting_one_does_not_use_it() {
    let routes = Routes::new()
        .with("spin.wasm", "busy_loop")
        .sidecar("spin.toml", "timeout = \"60s\"\ncpu_time = \"200ms\"")
        .with("sleep.wasm", "sleepy")
        .sidecar("sleep.toml", "cpu_time = \"50ms\"");
    let server = Server::start(routes.path()).await;
    let client = server.http1();
    let started = Instant::now();
    let answer = client.get("/spin").await;
    assert_eq!(answer.status(), 504, "{:?}", answer.body());
    assert_eq!(text(&answer), "handler used up its CPU time\n");
    // Well before the 60 s wall-clock timeout (generous for a loaded machine).
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    server.log.wait_for("used up its CPU time of 200ms").await;
    // Waiting on the host is not running: 500 ms asleep within 50 ms of CPU.
    let answer = client.get("/sleep?ms=500").await;
    assert_eq!(answer.status(), 200, "{:?}", answer.body());
}

//! Operating Wedge: the admin listener (health, readiness, metrics, the
//! route table), the access log in both formats, `--trust-proxy`, and the
//! shutdown sequence a load balancer needs.

use std::ffi::OsStr;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Http, Routes, Server, guest, json, sample, text};

async fn metrics(admin: &Http) -> String {
    let answer = admin.get("/metrics").await;
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    text(&answer).to_owned()
}

/// Waits up to 10 s for `name{labels}` to read `expected` (a response is
/// counted once hyper has sent its end, a moment after the client read it).
async fn eventually_sample(admin: &Http, name: &str, labels: &[(&str, &str)], expected: f64) {
    let mut last = String::new();
    for _ in 0..100 {
        last = metrics(admin).await;
        if sample(&last, name, labels) == Some(expected) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name}{labels:?} never reached {expected}:\n{last}");
}

fn route<'a>(routes: &'a Value, pattern: &str) -> &'a Value {
    routes
        .as_array()
        .expect("/routes is an array")
        .iter()
        .find(|route| route["pattern"] == pattern)
        .unwrap_or_else(|| panic!("{pattern} not in /routes: {routes:#}"))
}

const HELLO_SIDECAR: &str = "methods = [\"GET\"]\n[env]\nSECRET = \"hunter2\"\n";

/// A route of each kind the admin listener reports on: `/hello` (its
/// sidecar holds a secret), `/echo`, `/wait` (sleeps `?ms=N`) and
/// `/broken`, not wasm. Three components to compile, one load error.
fn admin_routes() -> Routes {
    Routes::new()
        .with("hello.wasm", "hello_v1")
        .with_bytes("hello.toml", HELLO_SIDECAR.as_bytes())
        .with("echo.wasm", "inspect")
        .with("wait.wasm", "sleepy")
        .with_bytes("broken.wasm", b"not wasm")
}

/// `wedge serve ROUTES --admin 127.0.0.1:0 ARGS`.
async fn start_with_admin(routes: &Routes, args: &[&OsStr]) -> Server {
    let mut all = vec![OsStr::new("--admin"), OsStr::new("127.0.0.1:0")];
    all.extend(args);
    Server::start_with(routes.path(), &all).await
}

#[tokio::test]
async fn health_and_readiness_answer_on_the_admin_listener_only() {
    let routes = admin_routes();
    let server = start_with_admin(&routes, &[]).await;
    let admin = server.admin();
    assert_ne!(server.admin, Some(server.addr));

    let health = admin.get("/healthz").await;
    assert_eq!((health.status().as_u16(), text(&health)), (200, "ok\n"));
    let ready = admin.get("/readyz").await;
    assert_eq!((ready.status().as_u16(), text(&ready)), (200, "ready\n"));
    assert_eq!(admin.get("/nothing").await.status(), 404);
    assert_eq!(admin.call("POST", "/healthz").await.status(), 405);
    // Never on the public listener.
    let client = server.http1();
    for path in ["/healthz", "/readyz", "/metrics", "/routes"] {
        assert_eq!(client.get(path).await.status(), 404, "{path}");
    }
}

#[tokio::test]
async fn metrics_count_requests_durations_instantiations_and_body_bytes_by_route() {
    let routes = admin_routes();
    let server = start_with_admin(&routes, &[]).await;
    let admin = server.admin();
    let client = server.http1();
    // Admin paths are no routes of the public listener: four 404s.
    for path in ["/healthz", "/readyz", "/metrics", "/routes"] {
        assert_eq!(client.get(path).await.status(), 404, "{path}");
    }
    for _ in 0..3 {
        assert_eq!(text(&client.get("/hello").await), "v1");
    }
    assert_eq!(json(&client.post("/echo", "12345").await)["body_len"], 5);
    assert_eq!(client.get("/broken").await.status(), 500);

    let hello = [("route", "/hello")];
    eventually_sample(
        &admin,
        "wedge_requests_total",
        &[("route", "/hello"), ("status", "200")],
        3.0,
    )
    .await;
    // The last request: once it is counted, every one before it is.
    eventually_sample(
        &admin,
        "wedge_requests_total",
        &[("route", "/broken"), ("status", "500")],
        1.0,
    )
    .await;
    let text = metrics(&admin).await;
    let read = |name: &str, labels: &[(&str, &str)]| {
        sample(&text, name, labels).unwrap_or_else(|| panic!("no {name}{labels:?} in:\n{text}"))
    };
    // The four lookups of public admin paths, and none for the route table.
    assert_eq!(
        read("wedge_requests_total", &[("route", ""), ("status", "404")]),
        4.0
    );
    assert_eq!(
        read(
            "wedge_requests_total",
            &[("route", "/broken"), ("status", "500")]
        ),
        1.0
    );
    assert_eq!(read("wedge_request_duration_seconds_count", &hello), 3.0);
    assert_eq!(
        read(
            "wedge_request_duration_seconds_bucket",
            &[("route", "/hello"), ("le", "+Inf")]
        ),
        3.0
    );
    let buckets = text
        .lines()
        .filter(|l| l.starts_with("wedge_request_duration_seconds_bucket") && l.contains("/hello"))
        .count();
    assert!(buckets >= 10, "{buckets} buckets:\n{text}");
    assert_eq!(
        read("wedge_instantiation_duration_seconds_count", &hello),
        3.0
    );
    assert!(read("wedge_instantiation_duration_seconds_sum", &hello) > 0.0);
    // A route that failed to load never instantiates.
    assert_eq!(
        sample(
            &text,
            "wedge_instantiation_duration_seconds_count",
            &[("route", "/broken")]
        ),
        None
    );
    assert_eq!(read("wedge_response_body_bytes_total", &hello), 6.0);
    assert_eq!(
        read("wedge_request_body_bytes_total", &[("route", "/echo")]),
        5.0
    );
    assert_eq!(
        read("wedge_route_load_errors_total", &[("route", "/broken")]),
        1.0
    );
}

#[tokio::test]
async fn an_instance_counts_as_in_flight_while_it_runs() {
    let routes = admin_routes();
    let server = start_with_admin(&routes, &[]).await;
    let admin = server.admin();
    let idle = metrics(&admin).await;
    assert_eq!(sample(&idle, "wedge_instances_in_flight", &[]), Some(0.0));

    let slow = {
        let client = server.http1();
        tokio::spawn(async move { client.get("/wait?ms=1500").await })
    };
    eventually_sample(&admin, "wedge_instances_in_flight", &[], 1.0).await;
    assert_eq!(slow.await.expect("slow request").status(), 200);
    eventually_sample(&admin, "wedge_instances_in_flight", &[], 0.0).await;
}

#[tokio::test]
async fn the_route_table_shows_each_routes_state_hash_and_settings_but_no_secret() {
    let routes = admin_routes();
    let server = start_with_admin(&routes, &[]).await;
    let table = server.admin().get("/routes").await;
    assert_eq!(table.headers()["content-type"], "application/json");
    assert!(!text_of(&table).contains("hunter2"), "a secret leaked");
    let table = json(&table);
    let hello = route(&table, "/hello");
    assert_eq!(hello["file"], "hello.wasm");
    assert_eq!(hello["state"], "serving");
    assert_eq!(hello["last_error"], Value::Null);
    let hash = hello["hash"].as_str().expect("hash");
    assert!(
        hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "{hash}"
    );
    assert_is_rfc3339(&hello["loaded_at"]);
    assert_eq!(hello["settings"]["methods"], serde_json::json!(["GET"]));
    assert_eq!(hello["settings"]["env"], serde_json::json!(["SECRET"]));
    assert_eq!(hello["settings"]["timeout"], "30s");
    let broken = route(&table, "/broken");
    assert_eq!(broken["state"], "failed");
    assert_eq!(broken["settings"], Value::Null);
    let error = broken["last_error"].as_str().expect("last_error");
    assert!(error.contains("broken.wasm"), "{error}");
}

#[tokio::test]
async fn a_restart_with_the_same_cache_compiles_nothing() {
    let routes = admin_routes();
    let cache = tempfile::tempdir().expect("cache dir");
    let args = [OsStr::new("--cache-dir"), cache.path().as_os_str()];
    let server = start_with_admin(&routes, &args).await;
    let text = metrics(&server.admin()).await;
    assert_eq!(
        sample(&text, "wedge_compile_cache_misses_total", &[]),
        Some(3.0)
    );
    assert_eq!(
        sample(&text, "wedge_compile_cache_hits_total", &[]),
        Some(0.0)
    );

    assert_eq!(server.stop().await, 0);
    let server = start_with_admin(&routes, &args).await;
    let text = metrics(&server.admin()).await;
    assert_eq!(
        sample(&text, "wedge_compile_cache_hits_total", &[]),
        Some(3.0)
    );
    assert_eq!(
        sample(&text, "wedge_compile_cache_misses_total", &[]),
        Some(0.0)
    );
}

fn text_of(answer: &crate::harness::Answer) -> String {
    String::from_utf8_lossy(answer.body()).into_owned()
}

fn assert_is_rfc3339(value: &Value) {
    let text = value.as_str().expect("a string");
    let shape = text.len() == "2026-12-01T22:10:15.123Z".len()
        && text.ends_with('Z')
        && text.as_bytes()[10] == b'T';
    assert!(shape, "not RFC 3339 UTC: {text}");
}

async fn eventually_routes(admin: &Http, pattern: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        last = json(&admin.get("/routes").await);
        if done(route(&last, pattern)) {
            return route(&last, pattern).clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{pattern} never got there: {last:#}");
}

#[tokio::test]
async fn routes_and_metrics_follow_reloads_and_failed_loads() {
    let routes = Routes::new().with("a.wasm", "hello_v1");
    let server = Server::start_with(
        routes.path(),
        &[OsStr::new("--admin"), OsStr::new("127.0.0.1:0")],
    )
    .await;
    let admin = server.admin();
    let first = json(&admin.get("/routes").await);
    let first = route(&first, "/a").clone();
    assert_eq!(
        sample(
            &metrics(&admin).await,
            "wedge_route_reloads_total",
            &[("route", "/a")]
        ),
        None,
        "the first load is no reload"
    );

    std::fs::write(
        routes.path().join("a.wasm"),
        std::fs::read(guest("hello_v2")).unwrap(),
    )
    .unwrap();
    let second = eventually_routes(&admin, "/a", |r| r["hash"] != first["hash"]).await;
    assert_eq!(second["state"], "serving");
    assert_eq!(second["last_error"], Value::Null);
    assert!(
        second["loaded_at"].as_str() > first["loaded_at"].as_str(),
        "{first} {second}"
    );
    eventually_sample(&admin, "wedge_route_reloads_total", &[("route", "/a")], 1.0).await;

    // A broken build keeps the working version; /routes says why.
    std::fs::write(routes.path().join("a.wasm"), b"not wasm").unwrap();
    let third = eventually_routes(&admin, "/a", |r| !r["last_error"].is_null()).await;
    assert_eq!(third["state"], "serving");
    assert_eq!(third["hash"], second["hash"]);
    let error = third["last_error"].as_str().expect("an error");
    assert!(error.contains("a.wasm"), "{error}");
    eventually_sample(
        &admin,
        "wedge_route_load_errors_total",
        &[("route", "/a")],
        1.0,
    )
    .await;
    assert_eq!(text(&server.http1().get("/a").await), "v2");

    // Fixed again: the error clears.
    std::fs::write(
        routes.path().join("a.wasm"),
        std::fs::read(guest("hello_v1")).unwrap(),
    )
    .unwrap();
    let fourth = eventually_routes(&admin, "/a", |r| r["last_error"].is_null()).await;
    assert_eq!(fourth["hash"], first["hash"]);
    eventually_sample(&admin, "wedge_route_reloads_total", &[("route", "/a")], 2.0).await;
}

/// A port free now, for a server whose admin address must be known before
/// it prints it.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr").port()
}

#[tokio::test]
async fn readyz_is_503_until_the_first_table_is_loaded() {
    // Twelve distinct components: compiling them keeps the server loading
    // for a while, with its admin listener already up.
    let hello = std::fs::read(guest("hello_v1")).unwrap();
    let mut routes = Routes::new();
    for n in 0..12 {
        let mut bytes = hello.clone();
        bytes.extend(wedge_toolchains::custom_section("nonce", &[n]));
        routes = routes.with_bytes(&format!("r{n}.wasm"), &bytes);
    }
    let port = free_port();
    let admin_addr = format!("127.0.0.1:{port}");
    let starting = {
        let (dir, admin_addr) = (routes.path().to_owned(), admin_addr.clone());
        tokio::spawn(async move {
            Server::start_with(&dir, &[OsStr::new("--admin"), OsStr::new(&admin_addr)]).await
        })
    };
    let mut seen = Vec::new();
    while !starting.is_finished() {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(&admin_addr).await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let probe = b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
            if stream.write_all(probe).await.is_ok() {
                let mut answer = String::new();
                let _ = stream.read_to_string(&mut answer).await;
                if let Some(status) = answer.get(9..12) {
                    seen.push(status.to_owned());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let server = starting.await.expect("server started");
    assert!(
        seen.iter().any(|status| status == "503"),
        "never unready while loading: {seen:?}"
    );
    assert_eq!(server.admin().get("/readyz").await.status(), 200);
    assert_eq!(server.admin().get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn on_sigterm_readyz_turns_503_while_requests_are_still_accepted() {
    let routes = Routes::new().with("hello.wasm", "hello_v1");
    let args = [
        OsStr::new("--admin"),
        OsStr::new("127.0.0.1:0"),
        OsStr::new("--shutdown-delay"),
        OsStr::new("3s"),
    ];
    let server = Server::start_with(routes.path(), &args).await;
    let admin = server.admin();
    assert_eq!(admin.get("/readyz").await.status(), 200);
    let started = std::time::Instant::now();
    server.terminate();
    let mut status = 200;
    while status == 200 && started.elapsed() < Duration::from_secs(1) {
        status = admin.get("/readyz").await.status().as_u16();
    }
    assert_eq!(status, 503, "/readyz still ready after SIGTERM");
    let readyz = admin.get("/readyz").await;
    assert_eq!(text(&readyz), "shutting down\n");
    assert_eq!(admin.get("/healthz").await.status(), 200);
    // The delay: new connections are still taken and answered.
    let late = server.http1();
    assert_eq!(text(&late.get("/hello").await), "v1");
    assert!(
        started.elapsed() < Duration::from_millis(2900),
        "the checks took too long to prove anything"
    );
    server.log.wait_for("still accepting for 3s").await;
    let log = server.log.clone();
    assert_eq!(server.wait().await, 0);
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "exited before --shutdown-delay"
    );
    // The process has exited, but its last lines may still be in the pipe.
    let log = log.wait_for("shutting down: no new connections").await;
    let signal = log.find("still accepting").expect("delay logged");
    let draining = log
        .find("shutting down: no new connections")
        .expect("drain logged");
    assert!(signal < draining, "{log}");
}

/// Every `wedge::access` JSON line of `log`.
fn access_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["target"] == "wedge::access")
        .collect()
}

#[tokio::test]
async fn json_logs_carry_every_access_field_and_tag_guest_output() {
    let routes = Routes::new()
        .with("hello.wasm", "hello_v1")
        .with("echo.wasm", "inspect");
    let server = Server::start_with(
        routes.path(),
        &[OsStr::new("--log-format"), OsStr::new("json")],
    )
    .await;
    let client = server.http1();
    let answer = client
        .call_with(
            "POST",
            "/echo?token=secret",
            &[("x-request-id", "trace-7.a_b")],
            "abcd",
        )
        .await;
    assert_eq!(answer.headers()["x-request-id"], "trace-7.a_b");
    let forged = client
        .call_with("GET", "/hello", &[("x-request-id", "two words")], "")
        .await;
    let new_id = forged.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_id, "two words");
    assert_eq!(client.get("/missing").await.status(), 404);

    server.log.wait_for("\"path\":\"/missing\"").await;
    let log = server.log.text();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let parsed: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
        assert!(
            parsed["timestamp"].is_string() && parsed["level"].is_string(),
            "{line}"
        );
    }
    let lines = access_lines(&log);
    let echo = lines
        .iter()
        .find(|l| l["id"] == "trace-7.a_b")
        .unwrap_or_else(|| panic!("no access line for the request:\n{log}"));
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/echo", "the query stays out of the log");
    assert_eq!(echo["route"], "/echo");
    assert_eq!(echo["status"], 200);
    assert_eq!(echo["bytes_in"], 4);
    assert_eq!(echo["bytes_out"].as_u64(), Some(answer.body().len() as u64));
    assert_eq!(echo["complete"], true);
    let ms = echo["ms"].as_f64().expect("ms, a number");
    let instantiate = echo["instantiate_ms"]
        .as_f64()
        .expect("instantiate_ms, a number");
    assert!(instantiate > 0.0 && instantiate <= ms, "{echo}");
    assert!(
        echo["client"]
            .as_str()
            .is_some_and(|c| c.starts_with("127.0.0.1:")),
        "{echo}"
    );
    assert!(
        lines
            .iter()
            .all(|l| !l.to_string().contains("token=secret")),
        "the query was logged:\n{log}"
    );
    let forged = lines
        .iter()
        .find(|l| l["id"] == new_id.as_str())
        .expect("replaced id logged");
    assert_eq!(forged["route"], "/hello");
    let missing = lines
        .iter()
        .find(|l| l["path"] == "/missing")
        .expect("404 logged");
    assert_eq!(
        (missing["status"].as_u64(), missing["route"].as_str()),
        (Some(404), Some("-"))
    );
    assert_eq!(missing["instantiate_ms"].as_f64(), Some(0.0));

    // The guest's stdout and stderr: its route, and the request's id.
    let guest: Vec<Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["target"] == "wedge::guest")
        .collect();
    for stream in [
        "stdout: inspect: POST /echo",
        "stderr: inspect: read 4 body bytes",
    ] {
        let line = guest
            .iter()
            .find(|l| l["message"].as_str().is_some_and(|m| m.starts_with(stream)))
            .unwrap_or_else(|| panic!("no `{stream}` line:\n{log}"));
        assert_eq!(line["route"], "/echo", "{line}");
        assert_eq!(line["span"]["id"], "trace-7.a_b", "{line}");
    }
}

#[tokio::test]
async fn pretty_access_lines_name_the_same_fields() {
    let routes = Routes::new().with("hello.wasm", "hello_v1");
    let server = Server::start(routes.path()).await;
    let answer = server
        .http1()
        .call_with("GET", "/hello", &[("x-request-id", "pretty-1")], "")
        .await;
    assert_eq!(answer.status(), 200);
    let log = server.log.wait_for("id=pretty-1").await;
    let line = log
        .lines()
        .find(|l| l.contains("wedge::access") && l.contains("id=pretty-1"))
        .unwrap_or_else(|| panic!("no access line:\n{log}"));
    for field in [
        "method=GET",
        "path=/hello",
        "route=/hello",
        "status=200",
        "bytes_in=0",
        "bytes_out=2",
        "ms=",
        "instantiate_ms=",
        "client=127.0.0.1:",
        "complete=true",
    ] {
        assert!(line.contains(field), "`{field}` missing: {line}");
    }
}

#[tokio::test]
async fn a_trusted_proxy_names_the_client_and_others_cannot() {
    let routes = Routes::new().with("who.wasm", "inspect");
    let forwarded = [
        ("x-forwarded-for", "6.6.6.6, 203.0.113.7"),
        ("x-request-id", "from-proxy"),
    ];
    let seen = |answer: &crate::harness::Answer| {
        json(answer)["headers"]["wedge-client-addr"][0]
            .as_str()
            .expect("wedge-client-addr")
            .to_owned()
    };

    let behind = Server::start_with(
        routes.path(),
        &[
            OsStr::new("--trust-proxy"),
            OsStr::new("10.0.0.0/8,127.0.0.1"),
        ],
    )
    .await;
    let answer = behind
        .http1()
        .call_with("GET", "/who", &forwarded, "")
        .await;
    assert_eq!(seen(&answer), "203.0.113.7");
    assert_eq!(answer.headers()["x-request-id"], "from-proxy");
    // The guest's lines carry the id too and may come first: wait for the access line.
    let log = behind.log.wait_for("client=203.0.113.7").await;
    assert!(
        log.lines()
            .any(|l| l.contains("wedge::access") && l.contains("client=203.0.113.7")),
        "{log}"
    );

    // A peer outside the trusted ranges names neither client nor id.
    let untrusted = Server::start_with(
        routes.path(),
        &[OsStr::new("--trust-proxy"), OsStr::new("10.0.0.0/8")],
    )
    .await;
    let answer = untrusted
        .http1()
        .call_with("GET", "/who", &forwarded, "")
        .await;
    assert!(seen(&answer).starts_with("127.0.0.1:"), "{}", seen(&answer));
    assert_ne!(answer.headers()["x-request-id"], "from-proxy");

    // Without --trust-proxy the header is the guest's to read, never the host's.
    let direct = Server::start(routes.path()).await;
    let answer = direct
        .http1()
        .call_with("GET", "/who", &forwarded, "")
        .await;
    assert!(seen(&answer).starts_with("127.0.0.1:"), "{}", seen(&answer));
    assert_eq!(
        json(&answer)["headers"]["x-forwarded-for"][0],
        "6.6.6.6, 203.0.113.7"
    );

    let (code, _, stderr) = crate::harness::run_wedge(&[
        OsStr::new("serve"),
        routes.path().as_os_str(),
        OsStr::new("--trust-proxy"),
        OsStr::new("10.0.0/8"),
    ])
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--trust-proxy") && stderr.contains("10.0.0.0/8"),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_admin_address_in_use_is_a_clear_start_up_error() {
    let routes = Routes::new().with("hello.wasm", "hello_v1");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("local addr").to_string();
    let (code, _, stderr) = crate::harness::run_wedge(&[
        OsStr::new("serve"),
        routes.path().as_os_str(),
        OsStr::new("--listen"),
        OsStr::new("127.0.0.1:0"),
        OsStr::new("--admin"),
        OsStr::new(&addr),
    ])
    .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr} for --admin")),
        "{stderr}"
    );
}

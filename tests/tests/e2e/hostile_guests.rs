//! Guests that attack the host rather than fail: resources the memory limit
//! does not see, components that would take the whole instance pool, and
//! output floods. Each must end in an error for its own request only.

use std::time::{Duration, Instant};

use crate::harness::{Routes, Server, text};

/// What `wedge::sandbox::limits` documents one instance may hold on the
/// host besides its linear memory (1024 resources × 64 KiB, and the output
/// buffers), in KiB.
const HOST_SIDE_BOUND_KIB: u64 = 64 * 1024 + 32;

trait Sidecar {
    fn sidecar(self, file: &str, toml: &str) -> Self;
}

impl Sidecar for Routes {
    fn sidecar(self, file: &str, toml: &str) -> Routes {
        self.with_bytes(file, toml.as_bytes())
    }
}

#[tokio::test]
async fn host_side_resources_are_bounded_by_the_documented_figure() {
    let routes = Routes::new()
        .with("bomb.wasm", "resource_bomb")
        .sidecar("bomb.toml", "memory = \"16MiB\"\ntimeout = \"60s\"")
        .with("ok.wasm", "inspect");
    let server = Server::start(routes.path()).await;
    let client = server.http1();
    assert_eq!(client.get("/ok").await.status(), 200);
    for mode in ["fields", "bodies", "stdout"] {
        let baseline = server.peak_rss_kib();
        // Unbounded, this pins 512 MiB on the host; bounded, it traps
        // after at most the documented figure.
        let answer = client.get(&format!("/bomb?mode={mode}&mb=512")).await;
        let growth = server.peak_rss_kib().saturating_sub(baseline);
        println!("{mode}: the server's peak RSS grew by {growth} KiB");
        assert_eq!(answer.status(), 500, "{mode}: {}", text(&answer));
        // The bound, plus the guest's 16 MiB memory, plus as much again
        // for allocator slack and the log.
        let bound = 2 * (HOST_SIDE_BOUND_KIB + 16 * 1024);
        assert!(
            growth < bound,
            "{mode}: the server grew by {growth} KiB; the bound is {bound} KiB"
        );
        assert_eq!(client.get("/ok").await.status(), 200, "after {mode}");
    }
    // Each bomb trapped on the resource limit (the log is written from
    // its own thread: the last line may follow the last answer).
    server
        .log
        .wait_for_count("resource table has no free keys", 3)
        .await;
}

/// A component with `memories` core modules, each with one linear memory
/// of `pages` 64 KiB pages, whose `wasi:http` handler spins forever (when
/// `spin`) or returns without answering.
fn component_with_memories(memories: usize, pages: u32, spin: bool) -> Vec<u8> {
    let body = if spin { "(loop $spin (br $spin))" } else { "" };
    let extra: String = (1..memories)
        .map(|n| {
            format!("(core module $m{n} (memory {pages})) (core instance (instantiate $m{n}))\n")
        })
        .collect();
    let text = format!(
        r#"(component
            (import "wasi:http/types@0.2.0" (instance $types
                (export "incoming-request" (type (sub resource)))
                (export "response-outparam" (type (sub resource)))))
            (alias export $types "incoming-request" (type $request))
            (alias export $types "response-outparam" (type $outparam))
            (core module $main
                (memory (export "memory") {pages})
                (func (export "handle") (param i32 i32) {body}))
            (core instance $main (instantiate $main))
            {extra}
            (type $handle (func (param "request" (own $request))
                                (param "response-out" (own $outparam))))
            (func $handle (type $handle) (canon lift (core func $main "handle")))
            (instance $handler (export "handle" (func $handle)))
            (export "wasi:http/incoming-handler@0.2.0" (instance $handler)))"#
    );
    wat::parse_str(text).expect("the test's component text is valid")
}

#[tokio::test]
async fn a_component_needing_more_than_its_share_of_the_pool_fails_to_load() {
    // Four memories: with --max-instances 2 the pool holds four in all, so
    // one instance of it would leave none for any other route.
    let routes = Routes::new()
        .with_bytes("hog.wasm", &component_with_memories(4, 1, true))
        .sidecar("hog.toml", r#"timeout = "5s""#)
        .with("ok.wasm", "inspect");
    let server =
        Server::start_with(routes.path(), &["--max-instances".as_ref(), "2".as_ref()]).await;
    let log = server.log.wait_for("build it with fewer").await;
    assert!(
        log.contains("4 Wasm linear memories") && log.contains("build it with fewer"),
        "the load error names the file, the count and what to do:\n{log}"
    );
    let client = server.http1();
    let hog = tokio::spawn({
        let client = server.http1();
        async move { client.get("/hog").await }
    });
    for _ in 0..20 {
        assert_eq!(client.get("/ok").await.status(), 200);
    }
    let hog = hog.await.expect("the /hog request ran");
    assert_eq!(
        (hog.status().as_u16(), text(&hog)),
        (500, "route failed to load\n")
    );
}

#[tokio::test]
async fn a_routes_memory_limit_counts_all_its_memories() {
    // Two memories of 12 MiB each: each is under the route's 16 MiB, together over.
    let routes = Routes::new()
        .with_bytes("two.wasm", &component_with_memories(2, 192, false))
        .sidecar("two.toml", r#"memory = "16MiB""#)
        .with_bytes("one.wasm", &component_with_memories(1, 192, false))
        .sidecar("one.toml", r#"memory = "16MiB""#);
    let server = Server::start(routes.path()).await;
    let client = server.http1();
    // One memory of 12 MiB instantiates; the guest returns without answering.
    assert_eq!(client.get("/one").await.status(), 500);
    server
        .log
        .wait_for("guest returned without sending a response")
        .await;
    let answer = client.get("/two").await;
    assert_eq!(answer.status(), 500);
    let log = server.log.wait_for("exceeds memory limits").await;
    assert!(
        !log.contains("route /two: guest returned without sending a response"),
        "/two fails to instantiate for memory, not after running:\n{log}"
    );
}

#[tokio::test]
async fn guest_output_is_bounded_per_request_with_a_note() {
    let routes = Routes::new().with("flood.wasm", "log_flood");
    let server = Server::start(routes.path()).await;
    let client = server.http1();
    let started = Instant::now();
    let answer = client.get("/flood?mb=100").await;
    assert_eq!(answer.status(), 200, "{}", text(&answer));
    assert!(started.elapsed() < Duration::from_secs(60));
    let log = server.log.wait_for("dropped").await;
    let logged = log.lines().filter(|l| l.contains("flood line")).count();
    // 64 KiB of 100-byte lines.
    assert!(logged <= 655, "{logged} lines logged of a 100 MiB flood");
    assert!(logged >= 600, "the first 64 KiB are logged: {logged} lines");
    let notes: Vec<&str> = log.lines().filter(|l| l.contains("dropped")).collect();
    assert_eq!(notes.len(), 1, "one note:\n{notes:#?}");
    assert!(
        notes[0].contains("64 KiB") && notes[0].contains("/flood"),
        "the note names the limit and the route: {}",
        notes[0]
    );
}

#[tokio::test]
async fn a_stalled_log_sink_drops_lines_and_never_stalls_requests() {
    let routes = Routes::new().with("flood.wasm", "log_flood");
    let mut server =
        Server::start_with_log_unread(routes.path(), &["--admin".as_ref(), "127.0.0.1:0".as_ref()])
            .await;
    let client = server.http1();
    // Each request logs 64 KiB of lines: 40 of them fill the pipe and the
    // writer's queue many times over.
    for n in 0..40 {
        let answer = tokio::time::timeout(Duration::from_secs(20), client.get("/flood?mb=1"))
            .await
            .unwrap_or_else(|_| panic!("request {n} stalled behind the log"));
        assert_eq!(answer.status(), 200);
    }
    let metrics = server.admin().get("/metrics").await;
    let dropped = text(&metrics)
        .lines()
        .find_map(|line| line.strip_prefix("wedge_log_lines_dropped_total "))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .expect("wedge_log_lines_dropped_total in /metrics");
    assert!(dropped > 0, "lines were dropped and counted");
    // Once read again, the log flows.
    server.read_log();
    assert_eq!(client.get("/flood?mb=1").await.status(), 200);
    server.log.wait_for("flood line").await;
}

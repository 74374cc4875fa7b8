//! WASI 0.2 and WASI 0.3 components side by side, and instance reuse.
//!
//! The tests that hold for both worlds are written once and run on each
//! (`both_worlds!`), against `wasi02_probe` and `wasi03_probe`: twin guests
//! that answer the same paths the same way. `/count` answers
//! `<instance id> <requests this instance served>`, which is how the reuse
//! tests see which instance served a request.

use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;

use crate::harness::{Http, Routes, Server, Upstream, World, both_worlds, json, text, wait_until};

impl World {
    fn probe(self) -> &'static str {
        match self {
            World::P2 => "wasi02_probe",
            World::P3 => "wasi03_probe",
        }
    }

    fn hello(self) -> &'static str {
        match self {
            World::P2 => "hello from wasi 0.2",
            World::P3 => "hello from wasi 0.3",
        }
    }
}

both_worlds!(
    routing_headers_methods_env_and_routes,
    limits_hold,
    outbound_only_to_allowed_hosts,
    a_failure_after_the_headers_cuts_the_response,
    a_reload_swaps_worlds_and_lets_requests_in_flight_finish,
    an_instance_serves_max_requests_then_a_new_one_takes_over,
    concurrent_requests_share_an_instance_only_on_wasi_0_3,
    a_trap_retires_the_instance_and_fails_only_its_requests,
    a_request_past_its_timeout_under_reuse_gets_504_and_a_new_instance,
    a_restart_loads_from_the_compile_cache,
    wedge_dev_builds_and_rebuilds_it,
);

/// Starts a server on `routes` with an admin listener, and `args`.
async fn start(routes: &Routes, args: &[&OsStr]) -> Server {
    let mut all = vec![OsStr::new("--admin"), OsStr::new("127.0.0.1:0")];
    all.extend(args);
    Server::start_with(routes.path(), &all).await
}

/// Every route `/routes` lists.
async fn listed(server: &Server) -> Vec<serde_json::Value> {
    let table = json(&server.admin().get("/routes").await);
    table.as_array().expect("/routes is an array").clone()
}

/// `<instance id> <n>` from `/count` or `/sleep`.
fn instance(answer: &crate::harness::Answer) -> (String, u64) {
    assert_eq!(answer.status(), 200, "{:?}", answer.body());
    let body = text(answer);
    let (id, n) = body
        .split_once(' ')
        .unwrap_or_else(|| panic!("not `<id> <n>`: {body:?}"));
    (id.to_owned(), n.parse().expect("a count"))
}

async fn routing_headers_methods_env_and_routes(world: World) {
    let probe = world.probe();
    let routes = Routes::new()
        .with("api/[id]/headers.wasm", probe)
        .with("post-only.wasm", probe)
        .with_bytes("post-only.toml", br#"methods = ["POST"]"#)
        .with("e/[...rest].wasm", probe)
        .with_bytes("e/[...rest].toml", b"[env]\nGREETING = \"hi\"\n");
    let server = start(&routes, &[]).await;
    for client in server.clients() {
        let what = format!("{world:?} over {}", client.version);
        let request = client
            .request("GET", "/api/42/headers")
            .header("wedge-route", "/spoofed")
            .body(crate::harness::empty())
            .expect("a request");
        let answer = client.send(request).await;
        assert_eq!(answer.status(), 200, "{what}");
        let seen = text(&answer);
        assert!(
            seen.contains("wedge-route: /api/[id]/headers\n"),
            "{what}: {seen}"
        );
        assert!(seen.contains("wedge-params: id=42\n"), "{what}: {seen}");
        assert!(!seen.contains("spoofed"), "{what}: {seen}");

        assert_eq!(client.get("/post-only").await.status(), 405, "{what}");
        let posted = client.post("/post-only", "x").await;
        assert_eq!(text(&posted), world.hello(), "{what}");

        assert_eq!(text(&client.get("/e/env/GREETING").await), "hi", "{what}");
        assert_eq!(client.get("/e/env/HOME").await.status(), 404, "{what}");
    }
    server
        .log
        .wait_for("route=/api/[id]/headers status=200")
        .await;
    let routes = listed(&server).await;
    assert_eq!(routes.len(), 3);
    for route in &routes {
        assert_eq!(route["world"], world.name(), "{route}");
        let reuse = &route["settings"]["reuse"];
        match world {
            World::P2 => assert_eq!(*reuse, false, "{route}"),
            World::P3 => {
                assert_eq!(reuse["max_requests"], 128, "{route}");
                assert_eq!(reuse["max_concurrent"], 16, "{route}");
                assert_eq!(reuse["idle_timeout"], "1s", "{route}");
            }
        }
    }
}

async fn limits_hold(world: World) {
    let probe = world.probe();
    let routes = Routes::new()
        .with("spin.wasm", probe)
        .with_bytes("spin.toml", br#"timeout = "1s""#)
        .with("grow.wasm", probe)
        .with_bytes("grow.toml", br#"memory = "16MiB""#)
        .with("echo.wasm", probe)
        .with_bytes("echo.toml", br#"max_body = "1KiB""#)
        .with("count.wasm", probe);
    let server = start(&routes, &[]).await;
    let client = server.http1();
    let started = Instant::now();
    assert_eq!(client.get("/spin").await.status(), 504, "{world:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "{world:?}");
    assert_eq!(client.get("/grow").await.status(), 500, "{world:?}");
    assert_eq!(client.post("/echo", vec![b'x'; 2048]).await.status(), 413);
    let small = client.post("/echo", "small enough").await;
    assert_eq!(text(&small), "small enough", "{world:?}");
    instance(&client.get("/count").await);
    server.log.wait_for("route=/spin status=504").await;
}

async fn outbound_only_to_allowed_hosts(world: World) {
    let upstream = Upstream::start(|_, _| (200, "upstream says hi".into())).await;
    let origin = upstream.origin();
    let routes = Routes::new()
        .with("allowed/fetch.wasm", world.probe())
        .with_bytes(
            "allowed/fetch.toml",
            format!("allowed_outbound_hosts = [\"{origin}\"]\n").as_bytes(),
        )
        .with("denied/fetch.wasm", world.probe());
    let server = start(&routes, &[]).await;
    let client = server.http1();
    let allowed = client.get(&format!("/allowed/fetch?url={origin}/x")).await;
    assert_eq!(text(&allowed), "200 upstream says hi", "{world:?}");
    let denied = client.get(&format!("/denied/fetch?url={origin}/x")).await;
    assert_eq!(denied.status(), 502, "{world:?}: {}", text(&denied));
    assert!(text(&denied).starts_with("refused"), "{}", text(&denied));
    assert_eq!(
        upstream.seen().len(),
        1,
        "only the allowed route reached it"
    );
}

async fn a_failure_after_the_headers_cuts_the_response(world: World) {
    let routes = Routes::new().with("late.wasm", world.probe());
    let server = start(&routes, &[]).await;
    for client in server.clients() {
        let request = client.request("GET", "/late").body(crate::harness::empty());
        let response = client.send_streaming(request.expect("a request")).await;
        assert_eq!(response.status(), 200, "{world:?} over {}", client.version);
        let mut body = response.into_body();
        let mut received = Vec::new();
        let cut = loop {
            match body.frame().await {
                Some(Ok(frame)) => {
                    received.extend_from_slice(frame.data_ref().map_or(&[][..], |d| d))
                }
                Some(Err(_)) => break true,
                None => break false,
            }
        };
        assert!(cut, "{world:?}: the body ended cleanly: {received:?}");
        assert_eq!(received, b"first part of the body\n");
    }
    server.log.wait_for("complete=false").await;
}

/// Replaces `to` the way a build tool does: a temporary file renamed over it.
fn rename_into_place(to: &Path, from: &Path) {
    let temporary = to.with_extension("tmp");
    std::fs::copy(from, &temporary).expect("copy the new version");
    std::fs::rename(&temporary, to).expect("rename it into place");
}

async fn a_reload_swaps_worlds_and_lets_requests_in_flight_finish(world: World) {
    // Both versions reuse, so that the request in flight runs on the
    // instance `/r/count` saw.
    let routes = Routes::new()
        .with("r/[...rest].wasm", world.other().probe())
        .with_bytes("r/[...rest].toml", b"reuse = true\n");
    let server = start(&routes, &[]).await;
    let client = server.http1();
    assert_eq!(text(&client.get("/r/x").await), world.other().hello());
    let (before, _) = instance(&client.get("/r/count").await);
    let swap = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let file = routes.path().join("r/[...rest].wasm");
        rename_into_place(&file, &crate::harness::guest(world.probe()));
        wait_until("the new version serves", async || {
            text(&client.get("/r/x").await) == world.hello()
        })
        .await;
        instance(&client.get("/r/count").await)
    };
    let (finished, (after, n)) = tokio::join!(client.get("/r/sleep?ms=1500"), swap);
    assert_ne!(after, before, "a new version never reuses an old instance");
    assert!(n <= 2, "{n}");
    let (old, _) = instance(&finished);
    assert_eq!(old, before, "the request in flight finished on its version");
    assert_eq!(listed(&server).await[0]["world"], world.name());
}

async fn an_instance_serves_max_requests_then_a_new_one_takes_over(world: World) {
    let routes = Routes::new()
        .with("count.wasm", world.probe())
        .with_bytes("count.toml", b"[reuse]\nmax_requests = 3\n")
        .with("fresh/count.wasm", world.probe())
        .with_bytes("fresh/count.toml", b"reuse = false\n")
        .with("default/count.wasm", world.probe());
    let server = start(&routes, &[]).await;
    let client = server.http1();
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(instance(&client.get("/count").await));
    }
    assert_eq!(seen[0].0, seen[1].0, "{seen:?}");
    assert_eq!(seen[1].0, seen[2].0, "{seen:?}");
    let counts: Vec<u64> = seen.iter().map(|(_, n)| *n).collect();
    assert_eq!(
        counts,
        [1, 2, 3, 1],
        "statics persist on one instance: {seen:?}"
    );
    assert_ne!(seen[3].0, seen[0].0, "a fourth request gets a new instance");

    let first = instance(&client.get("/fresh/count").await);
    let second = instance(&client.get("/fresh/count").await);
    assert_eq!(
        (first.1, second.1),
        (1, 1),
        "reuse = false: a fresh instance each"
    );
    assert_ne!(first.0, second.0);

    // Unset, the world decides: WASI 0.3 reuses, WASI 0.2 does not.
    let first = instance(&client.get("/default/count").await);
    let second = instance(&client.get("/default/count").await);
    match world {
        World::P2 => assert_eq!((first.1, second.1), (1, 1)),
        World::P3 => assert_eq!((first.0.as_str(), second.1), (second.0.as_str(), 2)),
    }
}

/// A request waiting (`/sleep`) on an instance, then another one.
async fn two_at_once(client: &Http, path: &str) -> ((String, u64), (String, u64)) {
    let (sleep, count) = (format!("{path}/sleep?ms=1500"), format!("{path}/count"));
    let (first, second) = tokio::join!(client.get(&sleep), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        client.get(&count).await
    });
    (instance(&first), instance(&second))
}

async fn concurrent_requests_share_an_instance_only_on_wasi_0_3(world: World) {
    let routes = Routes::new()
        .with("c/[...rest].wasm", world.probe())
        .with_bytes("c/[...rest].toml", b"[reuse]\nmax_concurrent = 16\n");
    let server = start(&routes, &[]).await;
    let client = server.http1();
    // Warm one instance, so that both requests find it.
    let (warm, _) = instance(&client.get("/c/count").await);
    let (first, second) = two_at_once(&client, "/c").await;
    assert_eq!(first.0, warm);
    match world {
        // The waiting request holds the only instance's one turn.
        World::P2 => assert_ne!(second.0, first.0, "{first:?} {second:?}"),
        World::P3 => assert_eq!(second.0, first.0, "{first:?} {second:?}"),
    }
    let routes = listed(&server).await;
    let reuse = &routes[0]["settings"]["reuse"];
    let expected = if world == World::P2 { 1 } else { 16 };
    assert_eq!(reuse["max_concurrent"], expected, "{reuse}");
}

async fn a_trap_retires_the_instance_and_fails_only_its_requests(world: World) {
    let routes = Routes::new()
        .with("t/[...rest].wasm", world.probe())
        .with_bytes("t/[...rest].toml", b"reuse = true\n")
        .with("other/[...rest].wasm", world.probe())
        .with_bytes("other/[...rest].toml", b"reuse = true\n");
    let server = start(&routes, &[]).await;
    let client = server.http1();
    let (other, _) = instance(&client.get("/other/count").await);
    let (trapping, _) = instance(&client.get("/t/count").await);
    let waiting = async {
        if world == World::P3 {
            Some(client.get("/t/sleep?ms=2000").await)
        } else {
            None
        }
    };
    let trap = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        client.get("/t/trap").await
    };
    let (waiting, trap) = tokio::join!(waiting, trap);
    assert_eq!(trap.status(), 500, "{world:?}");
    if let Some(cut) = waiting {
        // It was on the instance that trapped.
        assert_eq!(cut.status(), 500, "{world:?}: {:?}", cut.body());
    }
    let (next, n) = instance(&client.get("/t/count").await);
    assert_ne!(next, trapping, "the trapped instance serves no more");
    assert_eq!(n, 1);
    let (still, n) = instance(&client.get("/other/count").await);
    assert_eq!(
        (still.as_str(), n),
        (other.as_str(), 2),
        "another route's instance is untouched"
    );
    server.log.wait_for("guest trapped").await;
}

async fn a_request_past_its_timeout_under_reuse_gets_504_and_a_new_instance(world: World) {
    let routes = Routes::new()
        .with("s/[...rest].wasm", world.probe())
        .with_bytes(
            "s/[...rest].toml",
            b"timeout = \"1s\"\n[reuse]\nmax_requests = 100\n",
        );
    let server = start(&routes, &[]).await;
    let client = server.http1();
    let (spinning, _) = instance(&client.get("/s/count").await);
    let started = Instant::now();
    assert_eq!(client.get("/s/spin").await.status(), 504, "{world:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let (next, n) = instance(&client.get("/s/count").await);
    assert_ne!(
        next, spinning,
        "the instance that could not be stopped is retired"
    );
    assert_eq!(n, 1);
    // A guest that waits past the timeout is answered 504 at the timeout.
    let started = Instant::now();
    assert_eq!(
        client.get("/s/sleep?ms=5000").await.status(),
        504,
        "{world:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    server.log.wait_for("route=/s/[...rest] status=504").await;
}

#[tokio::test]
async fn max_instances_counts_instances_and_max_concurrency_counts_requests() {
    let routes = Routes::new()
        .with("c/[...rest].wasm", World::P3.probe())
        .with("one/[...rest].wasm", World::P3.probe())
        .with_bytes("one/[...rest].toml", b"max_concurrency = 1\n");
    let server = start(&routes, &[OsStr::new("--max-instances"), OsStr::new("1")]).await;
    let client = server.http1();
    // One instance slot: both requests run on the one instance.
    instance(&client.get("/c/count").await);
    let (first, second) = two_at_once(&client, "/c").await;
    assert_eq!(first.0, second.0);

    // One request at a time on `/one`, whatever the instance could take;
    // `/c`'s instance gives its slot back once idle past `idle_timeout`.
    server.wait_for_in_flight(0).await;
    let (waiting, refused) = tokio::join!(client.get("/one/sleep?ms=1000"), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        client.get("/one/count").await
    });
    assert_eq!(refused.status(), 503);
    assert_eq!(waiting.status(), 200);
}

async fn a_restart_loads_from_the_compile_cache(world: World) {
    let routes = Routes::new().with("a.wasm", world.probe());
    let cache = tempfile::tempdir().expect("a cache folder");
    let args = [OsStr::new("--cache-dir"), cache.path().as_os_str()];
    let first = Server::start_with(routes.path(), &args).await;
    assert_eq!(text(&first.http1().get("/a").await), world.hello());
    assert_eq!(first.log.text().matches("(compiled in").count(), 1);
    assert_eq!(first.stop().await, 0);
    let second = Server::start_with(routes.path(), &args).await;
    assert_eq!(text(&second.http1().get("/a").await), world.hello());
    let log = second.log.text();
    assert_eq!(log.matches("(from cache in").count(), 1, "{log}");
    assert!(!log.contains("(compiled in"), "{log}");
}

async fn wedge_dev_builds_and_rebuilds_it(world: World) {
    // A "build" that copies a built component into place: what cargo's
    // would produce, without a compile in the test.
    let routes = Routes::new()
        .with("src/probe.wasm", world.probe())
        .with_bytes(
            "routes/d/[...rest].toml",
            b"[build]\nworkdir = \"../../src\"\ncommand = \"cp probe.wasm built.wasm\"\n\
              watch = [\"probe.wasm\"]\noutput = \"built.wasm\"\n",
        );
    let dev = Server::start_dev(&routes.path().join("routes"), &[], &[]).await;
    let client = dev.http1();
    assert_eq!(text(&client.get("/d/x").await), world.hello());
    let source = routes.path().join("src/probe.wasm");
    rename_into_place(&source, &crate::harness::guest(world.other().probe()));
    wait_until("the rebuilt route serves", async || {
        text(&client.get("/d/x").await) == world.other().hello()
    })
    .await;
}

#[tokio::test]
async fn without_wasi_0_3_a_wasi_0_3_route_fails_to_load_and_reuse_is_ignored() {
    let routes = Routes::new()
        .with("p3.wasm", World::P3.probe())
        .with("p2/count.wasm", World::P2.probe())
        .with_bytes("p2/count.toml", b"reuse = true\n");
    let server = start(&routes, &[OsStr::new("--no-wasi-0-3")]).await;
    let client = server.http1();
    assert_eq!(client.get("/p3").await.status(), 500);
    server
        .log
        .wait_for("this server runs with --no-wasi-0-3: drop the flag")
        .await;
    let (first, n) = instance(&client.get("/p2/count").await);
    let (second, m) = instance(&client.get("/p2/count").await);
    assert_eq!((n, m), (1, 1), "a fresh instance each");
    assert_ne!(first, second);
    server.log.wait_for("`reuse` is ignored").await;
    let routes = listed(&server).await;
    let p2 = routes
        .iter()
        .find(|route| route["pattern"] == "/p2/count")
        .expect("/p2/count in /routes");
    assert_eq!(p2["settings"]["reuse"], false);
}

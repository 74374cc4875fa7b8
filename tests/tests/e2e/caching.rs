//! The response cache and the host's `[cors]`, through a real server: what
//! RFC 9111 lets a shared cache keep (and what it must not), `Age`, `HEAD`
//! from a cached `GET`, `Vary`, coalescing, stale-while-revalidate, the
//! sidecar's `dynamic`/`revalidate`, purges, reloads and the memory bound.
//! The guest is `cache_probe` (its module doc is the URL contract): each of
//! its runs answers `run=<random>`, so the same run twice is a cached answer.

use std::ffi::OsStr;
use std::time::Duration;

use futures::future::join_all;

use crate::harness::{Answer, Http, Routes, Server, sample, text, wait_until};

/// `cache_probe` at `/c` (sidecar: `sidecar`), and at `/p` with the
/// defaults.
fn routes(sidecar: &str) -> Routes {
    Routes::new()
        .with("c.wasm", "cache_probe")
        .with_bytes("c.toml", sidecar.as_bytes())
        .with("p.wasm", "cache_probe")
}

async fn start(routes: &Routes, extra: &[&str]) -> Server {
    let mut args = vec![OsStr::new("--admin"), OsStr::new("127.0.0.1:0")];
    args.extend(extra.iter().map(OsStr::new));
    Server::start_with(routes.path(), &args).await
}

/// `s` as a query value.
fn q(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The guest run that made `answer`.
fn run(answer: &Answer) -> String {
    let body = text(answer);
    assert!(body.starts_with("run="), "{} {body}", answer.status());
    body.lines().next().unwrap_or_default().to_owned()
}

fn cache_header(answer: &Answer) -> &str {
    answer
        .headers()
        .get("x-wedge-cache")
        .map_or("(none)", |value| value.to_str().unwrap_or("(bad)"))
}

async fn metrics(admin: &Http) -> String {
    text(&admin.get("/metrics").await).to_owned()
}

/// Instances made for `route`, as the instantiation histogram counts them,
/// once every request so far has been counted.
async fn instantiations(admin: &Http, route: &str) -> f64 {
    let labels = [("route", route)];
    sample(
        &metrics(admin).await,
        "wedge_instantiation_duration_seconds_count",
        &labels,
    )
    .unwrap_or(0.0)
}

/// Waits until the metrics count `count` requests to `route` with `result`.
async fn wait_for_results(admin: &Http, route: &str, result: &str, count: f64) {
    wait_until(&format!("{count} {result} on {route}"), async || {
        let text = metrics(admin).await;
        sample(
            &text,
            "wedge_cache_requests_total",
            &[("route", route), ("result", result)],
        ) == Some(count)
    })
    .await;
}

#[tokio::test]
async fn a_cacheable_answer_is_served_again_without_a_guest() {
    let routes = routes("");
    let server = start(&routes, &[]).await;
    let (client, admin) = (server.http1(), server.admin());
    let path = format!("/c?cc={}", q("public, s-maxage=60"));
    let first = client.get(&path).await;
    assert_eq!(first.status(), 200);
    assert_eq!(cache_header(&first), "MISS");
    for http in server.clients() {
        let again = http.get(&path).await;
        assert_eq!(cache_header(&again), "HIT");
        assert_eq!(run(&again), run(&first), "the same answer");
        assert_eq!(again.headers()["cache-control"], "public, s-maxage=60");
        let age: u64 = again.headers()["age"].to_str().unwrap().parse().unwrap();
        assert!(age <= 1, "age {age}");
    }
    // HEAD is answered from the cached GET: its headers, no body.
    let head = client.call("HEAD", &path).await;
    assert_eq!(cache_header(&head), "HIT");
    assert!(head.body().is_empty());
    assert_eq!(head.headers()["x-run"], first.headers()["x-run"]);
    // Another query is another key.
    let other = client.get(&format!("{path}&n=2")).await;
    assert_eq!(cache_header(&other), "MISS");
    assert_ne!(run(&other), run(&first));

    wait_for_results(&admin, "/c", "hit", 3.0).await;
    wait_for_results(&admin, "/c", "miss", 2.0).await;
    assert_eq!(
        instantiations(&admin, "/c").await,
        2.0,
        "hits made no instance"
    );
    let text = metrics(&admin).await;
    assert!(
        sample(&text, "wedge_cache_bytes", &[]).unwrap() > 0.0,
        "{text}"
    );
    // The access log says what the cache did.
    server.log.wait_for("cache=hit").await;
    server.log.wait_for("cache=miss").await;
}

#[tokio::test]
async fn what_a_shared_cache_must_not_keep_is_asked_again() {
    let routes = routes("");
    let server = start(&routes, &[]).await;
    let client = server.http1();
    for query in [
        format!("cc={}", q("private, max-age=60")),
        format!("cc={}", q("no-store, s-maxage=60")),
        format!("cc={}", q("no-cache, s-maxage=60")),
        format!(
            "cc={}&cookie={}",
            q("public, s-maxage=60"),
            q("session=abc")
        ),
        format!("cc={}&vary=*", q("public, s-maxage=60")),
        format!("cc={}&status=500", q("public, s-maxage=60")),
        // Nothing said: no guessed lifetime.
        String::new(),
    ] {
        let path = format!("/c?{query}");
        let (first, second) = (client.get(&path).await, client.get(&path).await);
        assert_eq!(cache_header(&first), "MISS", "{query}");
        assert_eq!(cache_header(&second), "MISS", "{query}");
        assert_ne!(run(&first), run(&second), "{query}: asked again");
    }
    // A request with credentials is never served from, or into, the cache.
    let path = format!("/c?cc={}", q("public, s-maxage=60"));
    let stored = client.get(&path).await;
    let authorized = client
        .call_with("GET", &path, &[("authorization", "Bearer t")], "")
        .await;
    assert_eq!(cache_header(&authorized), "BYPASS");
    assert_ne!(run(&authorized), run(&stored));
    // Other methods go to the guest.
    let post = client.post(&path, "x").await;
    assert_eq!(cache_header(&post), "BYPASS");
}

#[tokio::test]
async fn s_maxage_wins_over_max_age_and_an_expired_answer_is_asked_again() {
    let routes = routes("");
    let server = start(&routes, &[]).await;
    let client = server.http1();
    let path = format!("/c?cc={}", q("max-age=600, s-maxage=1"));
    let first = client.get(&path).await;
    assert_eq!(run(&client.get(&path).await), run(&first));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let later = client.get(&path).await;
    assert_eq!(cache_header(&later), "MISS");
    assert_ne!(run(&later), run(&first));
}

#[tokio::test]
async fn vary_keeps_one_answer_per_header_value() {
    let routes = routes("");
    let server = start(&routes, &[]).await;
    let client = server.http1();
    let path = format!("/c?cc={}&vary=accept-language", q("public, s-maxage=60"));
    let ask = async |language: &str| {
        client
            .call_with("GET", &path, &[("accept-language", language)], "")
            .await
    };
    let en = ask("en").await;
    let fr = ask("fr").await;
    assert!(text(&en).contains("vary=en") && text(&fr).contains("vary=fr"));
    assert_ne!(run(&en), run(&fr));
    let en_again = ask("en").await;
    assert_eq!(cache_header(&en_again), "HIT");
    assert_eq!(text(&en_again), text(&en));
    let fr_again = ask("fr").await;
    assert_eq!(text(&fr_again), text(&fr));
    assert_eq!(cache_header(&ask("de").await), "MISS");
}

#[tokio::test]
async fn concurrent_misses_run_the_guest_once() {
    let routes = routes("");
    let server = start(&routes, &[]).await;
    let admin = server.admin();
    let cc = q("public, s-maxage=60");
    // Misses are coalesced on a route that caches: one whose guest has
    // answered cacheably before (or whose sidecar says revalidate).
    server.http1().get(&format!("/c?cc={cc}&first")).await;
    let path = format!("/c?cc={cc}&ms=400");
    let clients: Vec<Http> = (0..20).map(|_| server.http1()).collect();
    let answers = join_all(clients.iter().map(|client| client.get(&path))).await;
    let first = run(&answers[0]);
    for answer in &answers {
        assert_eq!(answer.status(), 200);
        assert_eq!(run(answer), first, "every client got the one run's answer");
    }
    let misses = answers
        .iter()
        .filter(|answer| cache_header(answer) == "MISS")
        .count();
    assert_eq!(misses, 1, "one guest run, the others waited for it");
    wait_for_results(&admin, "/c", "hit", 19.0).await;
    assert_eq!(
        instantiations(&admin, "/c").await,
        2.0,
        "the first, and one for 20"
    );

    // A route that never cached is not coalesced, and neither is a key whose
    // answer could not be stored: clients run at once (a 400 ms guest, 10
    // of them, well under 10 × 400 ms).
    let private = "/p?cc=private&ms=400";
    let started = std::time::Instant::now();
    let answers = join_all(clients[..10].iter().map(|client| client.get(private))).await;
    assert!(answers.iter().all(|answer| cache_header(answer) == "MISS"));
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "requests to a dynamic route ran one after another: {:?}",
        started.elapsed()
    );
    server.http1().get(&format!("/p?cc={cc}")).await;
    let started = std::time::Instant::now();
    let answers = join_all(clients[..10].iter().map(|client| client.get(private))).await;
    assert!(answers.iter().all(|answer| cache_header(answer) == "MISS"));
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "uncacheable requests ran one after another: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_stale_answer_is_served_while_one_run_refreshes_it() {
    let routes = routes("");
    let server = start(&routes, &[]).await;
    let (client, admin) = (server.http1(), server.admin());
    let path = format!(
        "/c?cc={}&ms=300",
        q("public, s-maxage=1, stale-while-revalidate=60")
    );
    let first = client.get(&path).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let clients: Vec<Http> = (0..10).map(|_| server.http1()).collect();
    let stale = join_all(clients.iter().map(|client| client.get(&path))).await;
    for answer in &stale {
        assert_eq!(cache_header(answer), "STALE");
        assert_eq!(run(answer), run(&first), "the stale answer, at once");
    }
    let mut refreshed = None;
    wait_until("the refreshed answer", async || {
        let answer = client.get(&path).await;
        let fresh = cache_header(&answer) == "HIT";
        if fresh {
            refreshed = Some(answer);
        }
        fresh
    })
    .await;
    let refreshed = refreshed.expect("set when fresh");
    assert_ne!(run(&refreshed), run(&first), "a new run's answer");
    let text = metrics(&admin).await;
    assert_eq!(
        sample(
            &text,
            "wedge_cache_revalidations_total",
            &[("route", "/c"), ("outcome", "answered")]
        ),
        Some(1.0),
        "one background run for every stale answer: {text}"
    );
}

#[tokio::test]
async fn the_sidecar_decides_for_guests_that_say_nothing_or_too_much() {
    let routes = Routes::new()
        .with("isr.wasm", "cache_probe")
        .with_bytes("isr.toml", b"revalidate = \"60s\"\n")
        .with("dynamic.wasm", "cache_probe")
        .with_bytes("dynamic.toml", b"dynamic = \"force-dynamic\"\n")
        .with("static.wasm", "cache_probe")
        .with_bytes("static.toml", b"dynamic = \"force-static\"\n");
    let server = start(&routes, &[]).await;
    let client = server.http1();
    // `revalidate` for a guest that sets no Cache-Control.
    let isr = client.get("/isr").await;
    assert_eq!(cache_header(&client.get("/isr").await), "HIT");
    // ...but the guest's own word wins under "auto".
    let private = client.get("/isr?cc=private").await;
    assert_ne!(run(&client.get("/isr?cc=private").await), run(&private));
    assert_ne!(run(&private), run(&isr));
    // force-dynamic: never, whatever the guest says.
    let path = format!("/dynamic?cc={}", q("public, s-maxage=60"));
    let (a, b) = (client.get(&path).await, client.get(&path).await);
    assert_eq!((cache_header(&a), cache_header(&b)), ("BYPASS", "BYPASS"));
    assert_ne!(run(&a), run(&b));
    // force-static: cached even when the guest says private...
    let forced = client.get("/static?cc=private").await;
    let again = client.get("/static?cc=private").await;
    assert_eq!(cache_header(&again), "HIT");
    assert_eq!(run(&again), run(&forced));
    // ...but never a cookie.
    let cookie = client.get("/static?cookie=s%3D1").await;
    assert_ne!(run(&client.get("/static?cookie=s%3D1").await), run(&cookie));
}

#[tokio::test]
async fn purges_and_reloads_drop_what_they_name() {
    let routes = routes("");
    let server = start(&routes, &[]).await;
    let (client, admin) = (server.http1(), server.admin());
    let cached = format!("?cc={}", q("public, s-maxage=600"));
    let get = async |path: &str| client.get(&format!("{path}{cached}")).await;
    let c1 = get("/c").await;
    let p1 = get("/p").await;
    assert_eq!(cache_header(&get("/c").await), "HIT");

    // revalidatePath: one path, whatever its query.
    let purged = admin.post("/cache/purge?path=/c", "").await;
    assert_eq!(purged.status(), 200, "{}", text(&purged));
    assert!(text(&purged).contains("\"purged\":1"), "{}", text(&purged));
    let c2 = get("/c").await;
    assert_ne!(run(&c2), run(&c1));
    assert_eq!(run(&get("/p").await), run(&p1), "other paths stay");
    // One route.
    admin.post("/cache/purge?route=/p", "").await;
    let p2 = get("/p").await;
    assert_ne!(run(&p2), run(&p1));
    // Bad purges say what to send.
    assert_eq!(admin.get("/cache/purge").await.status(), 405);
    let bad = admin.post("/cache/purge?key=/c", "").await;
    assert_eq!(bad.status(), 400);
    assert!(text(&bad).contains("?route="), "{}", text(&bad));

    // A new version of /c (a changed sidecar) drops its answers; /p keeps.
    std::fs::write(routes.path().join("c.toml"), "timeout = \"9s\"\n").unwrap();
    server.log.wait_for("route settings updated").await;
    let c3 = get("/c").await;
    assert_eq!(cache_header(&c3), "MISS");
    assert_ne!(run(&c3), run(&c2));
    assert_eq!(run(&get("/p").await), run(&p2));
    // Everything.
    admin.post("/cache/purge", "").await;
    assert_ne!(run(&get("/p").await), run(&p2));
}

#[tokio::test]
async fn the_cache_stays_within_its_memory() {
    let routes = routes("");
    let server = start(&routes, &["--cache-memory", "64KiB"]).await;
    let (client, admin) = (server.http1(), server.admin());
    let cc = q("public, s-maxage=600");
    // Over an eighth of the cache (8 KiB): served, not stored.
    let big = format!("/c?cc={cc}&size=10000");
    let first = client.get(&big).await;
    assert_eq!(first.body().len(), run(&first).len() + 1 + 10000);
    assert_ne!(run(&client.get(&big).await), run(&first));
    // Many 4 KiB answers: the oldest go, the total stays under the bound.
    for n in 0..40 {
        client.get(&format!("/c?cc={cc}&size=4000&n={n}")).await;
        let text = metrics(&admin).await;
        let bytes = sample(&text, "wedge_cache_bytes", &[]).unwrap();
        assert!(bytes <= 65536.0, "{bytes} bytes after {n}");
    }
    let newest = format!("/c?cc={cc}&size=4000&n=39");
    assert_eq!(cache_header(&client.get(&newest).await), "HIT");
    let oldest = format!("/c?cc={cc}&size=4000&n=0");
    assert_eq!(cache_header(&client.get(&oldest).await), "MISS");
    // --cache-memory 0 turns it off.
    let off = start(&routes, &["--cache-memory", "0"]).await;
    let path = format!("/c?cc={cc}");
    let answer = off.http1().get(&path).await;
    assert_eq!(cache_header(&answer), "BYPASS");
}

#[tokio::test]
async fn the_host_answers_cors_preflights_and_adds_the_headers() {
    let routes = Routes::new()
        .with("api.wasm", "hello_v1")
        .with_bytes(
            "api.toml",
            b"methods = [\"GET\", \"PUT\"]\n[cors]\nallow_origins = [\"https://app.example.com\"]\n\
              allow_headers = [\"content-type\"]\nexpose_headers = [\"x-request-id\"]\n\
              allow_credentials = true\nmax_age = \"10m\"\n",
        )
        .with("open.wasm", "hello_v1")
        .with_bytes("open.toml", b"[cors]\nallow_origins = [\"*\"]\n");
    let server = start(&routes, &[]).await;
    let (client, admin) = (server.http1(), server.admin());
    let preflight = |origin: &'static str| {
        [
            ("origin", origin),
            ("access-control-request-method", "PUT"),
            ("access-control-request-headers", "content-type"),
        ]
    };
    let allowed = client
        .call_with("OPTIONS", "/api", &preflight("https://app.example.com"), "")
        .await;
    assert_eq!(allowed.status(), 204);
    let headers = allowed.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(headers["access-control-allow-methods"], "GET, PUT");
    assert_eq!(headers["access-control-allow-headers"], "content-type");
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert_eq!(headers["access-control-max-age"], "600");
    assert!(headers["vary"].to_str().unwrap().contains("Origin"));
    let refused = client
        .call_with("OPTIONS", "/api", &preflight("https://evil.example"), "")
        .await;
    assert_eq!(refused.status(), 204);
    assert!(
        !refused
            .headers()
            .contains_key("access-control-allow-origin")
    );
    assert_eq!(
        instantiations(&admin, "/api").await,
        0.0,
        "no guest for preflights"
    );

    let actual = client
        .call_with("GET", "/api", &[("origin", "https://app.example.com")], "")
        .await;
    assert_eq!(text(&actual), "v1");
    let headers = actual.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert_eq!(headers["access-control-expose-headers"], "x-request-id");
    assert!(headers.get_all("vary").iter().any(|v| v == "Origin"));
    let other = client
        .call_with("GET", "/api", &[("origin", "https://evil.example")], "")
        .await;
    assert!(!other.headers().contains_key("access-control-allow-origin"));
    let no_origin = client.get("/api").await;
    assert!(
        !no_origin
            .headers()
            .contains_key("access-control-allow-origin")
    );
    // Host refusals carry the headers too, so the page can read them.
    let refused = client
        .call_with(
            "DELETE",
            "/api",
            &[("origin", "https://app.example.com")],
            "",
        )
        .await;
    assert_eq!(refused.status(), 405);
    assert_eq!(
        refused.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    // Any origin, no credentials: `*`, no Vary.
    let open = client
        .call_with("GET", "/open", &[("origin", "https://anyone.example")], "")
        .await;
    assert_eq!(open.headers()["access-control-allow-origin"], "*");
    assert!(!open.headers().contains_key("vary"));
}

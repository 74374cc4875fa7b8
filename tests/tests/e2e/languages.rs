//! Handlers in JavaScript (ComponentizeJS) and Python (componentize-py),
//! built from `examples/` by the toolchains the xtask installs, served
//! unchanged: params, env, a body echoed, a streamed response, outbound
//! calls through the allow-list; and each language's counter, which keeps
//! its count in a key-value store through the standard `wasi:keyvalue`.
//! Skipped, saying what to install, where `node` or `python3` is missing.

use std::ffi::OsStr;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use wedge_toolchains::World;

use crate::harness::{Http, Routes, Server, Upstream, json, text};

/// Builds `examples/<source>` into a component of `world`; `None` (after
/// saying so on stderr, which the test runner shows even for passing tests)
/// if this machine lacks the toolchain's runtime.
async fn build(source: &str, world: World) -> Option<(tempfile::TempDir, PathBuf)> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(source);
    let dir = tempfile::tempdir().expect("a temp dir");
    let output = dir.path().join("handler.wasm");
    let built = {
        let (source, output) = (source.clone(), output.clone());
        tokio::task::spawn_blocking(move || {
            wedge_toolchains::Toolchains::new()?.componentize(&source, world, &output)
        })
        .await
        .expect("the build ran")
    };
    match built {
        Ok(()) => Some((dir, output)),
        Err(error) if error.is_missing() => {
            let _ = writeln!(std::io::stderr(), "SKIPPED: {}: {error}", source.display());
            None
        }
        Err(error) => panic!("building {}: {error}", source.display()),
    }
}

/// The JavaScript and the Python example answer the same API.
async fn serves_unchanged(source: &str, prefix: &str) {
    let Some((_dir, wasm)) = build(source, World::Handler).await else {
        return;
    };
    let upstream = Upstream::start(|method, _| (200, format!("{{\"method\":\"{method}\"}}"))).await;
    let origin = upstream.origin();
    let sidecar = format!(
        "allowed_outbound_hosts = [\"{origin}\"]\n[env]\nGREETING = \"Hello from the sidecar\"\n"
    );
    let bytes = std::fs::read(&wasm).expect("the built component");
    let routes = Routes::new()
        .with_bytes(&format!("{prefix}/[name].wasm"), &bytes)
        .with_bytes(&format!("{prefix}/[name].toml"), sidecar.as_bytes());
    let server = Server::start(routes.path()).await;
    for client in server.clients() {
        let hello = client.get(&format!("/{prefix}/ada%20l")).await;
        assert_eq!(hello.status(), 200, "{}", text(&hello));
        let route = format!("/{prefix}/[name]");
        let expected =
            json!({"hello": "ada l", "greeting": "Hello from the sidecar", "route": route});
        assert_eq!(json(&hello), expected, "{}", client.version);

        let content_type = [("content-type", "text/x-ping")];
        let echo = client
            .call_with(
                "POST",
                &format!("/{prefix}/echo"),
                &content_type,
                "ping pong",
            )
            .await;
        assert_eq!((echo.status().as_u16(), text(&echo)), (200, "ping pong"));
        assert_eq!(echo.headers()["content-type"], "text/x-ping");

        let (streamed, spread) = client.get_streamed(&format!("/{prefix}/stream")).await;
        assert_eq!(streamed.body(), "line 1\nline 2\nline 3\nline 4\nline 5\n");
        assert!(
            spread >= Duration::from_millis(300),
            "{}: {spread:?}",
            client.version
        );

        let fetched = client
            .get(&format!("/{prefix}/fetch?url={origin}/hello"))
            .await;
        assert_eq!(
            json(&fetched),
            json!({"status": 200, "body": "{\"method\":\"GET\"}"})
        );
        let denied = client
            .get(&format!("/{prefix}/fetch?url=http://127.0.0.1:1/"))
            .await;
        assert_eq!(denied.status(), 502, "{}", text(&denied));
    }
    assert_eq!(upstream.seen().len(), 2, "one allowed fetch per client");
    server
        .log
        .wait_for("add \"http://127.0.0.1:1\" to `allowed_outbound_hosts`")
        .await;
}

#[tokio::test]
async fn a_javascript_handler_serves_unchanged() {
    serves_unchanged("js/app.js", "js").await;
}

#[tokio::test]
async fn a_python_handler_serves_unchanged() {
    serves_unchanged("python/app.py", "py").await;
}

/// The committed sidecar of `route` (e.g. `js/counter`): what `cargo xtask
/// serve` serves it with (`wedge serve` ignores its `[build]`).
fn committed_sidecar(route: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../routes")
        .join(format!("{route}.toml"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `GET path` answers `{"count": count}`.
async fn assert_counts(client: &Http, path: &str, count: u64) {
    let answer = client.get(path).await;
    assert_eq!(
        answer.status(),
        200,
        "{}: {}",
        client.version,
        text(&answer)
    );
    assert_eq!(answer.headers()["content-type"], "application/json");
    assert_eq!(json(&answer), json!({"count": count}), "{}", client.version);
}

/// The counter example `source` at `route` with its committed sidecar,
/// which grants the store "default": it counts from 1 over both protocols
/// and goes on after a restart on the same data folder. The same component
/// at a route granted no store answers 503, naming the store's error.
async fn counts_in_its_store(source: &str, route: &str) {
    let Some((_dir, wasm)) = build(source, World::StatefulHandler).await else {
        return;
    };
    let bytes = std::fs::read(&wasm).expect("the built component");
    let routes = Routes::new()
        .with_bytes(&format!("{route}.wasm"), &bytes)
        .with_bytes(&format!("{route}.toml"), &committed_sidecar(route))
        .with_bytes("ungranted/counter.wasm", &bytes);
    let (data, cache) = (tempfile::tempdir(), tempfile::tempdir());
    let (data, cache) = (data.expect("a data folder"), cache.expect("a cache"));
    // One compile cache for both servers: the restart loads, not compiles.
    let args = [
        OsStr::new("--data-dir"),
        data.path().as_os_str(),
        OsStr::new("--cache-dir"),
        cache.path().as_os_str(),
    ];
    let path = format!("/{route}");

    let server = Server::start_with(routes.path(), &args).await;
    for (client, count) in server.clients().iter().zip(1..) {
        assert_counts(client, &path, count).await;
    }
    assert_counts(&server.http1(), &path, 3).await;

    let denied = server.http1().get("/ungranted/counter").await;
    assert_eq!(denied.status(), 503, "{}", text(&denied));
    assert_eq!(denied.headers()["content-type"], "application/json");
    let error = json(&denied)["error"].as_str().map(str::to_owned);
    let error = error.unwrap_or_else(|| panic!("no error message: {}", text(&denied)));
    assert!(error.contains("access-denied"), "{error}");
    assert_eq!(server.stop().await, 0);

    let server = Server::start_with(routes.path(), &args).await;
    for (client, count) in server.clients().iter().zip(4..) {
        assert_counts(client, &path, count).await;
    }
}

#[tokio::test]
async fn a_javascript_counter_counts_in_its_store_across_restarts() {
    counts_in_its_store("js/counter.js", "js/counter").await;
}

#[tokio::test]
async fn a_python_counter_counts_in_its_store_across_restarts() {
    counts_in_its_store("python/counter.py", "py/counter").await;
}

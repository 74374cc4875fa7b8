//! Handlers in JavaScript (ComponentizeJS) and Python (componentize-py),
//! built from `examples/` by the toolchains the xtask installs, served
//! unchanged: params, env, a body echoed, a streamed response, outbound
//! calls through the allow-list. Skipped, saying what to install, where
//! `node` or `python3` is missing.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::harness::{Routes, Server, Upstream, json, text};

/// Builds `examples/<source>` into a component; `None` (after saying so
/// on stderr, which the test runner shows even for passing tests) if this
/// machine lacks the toolchain's runtime.
async fn build(source: &str) -> Option<(tempfile::TempDir, PathBuf)> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(source);
    let dir = tempfile::tempdir().expect("a temp dir");
    let output = dir.path().join("handler.wasm");
    let built = {
        let (source, output) = (source.clone(), output.clone());
        tokio::task::spawn_blocking(move || {
            wedge_toolchains::Toolchains::new()?.componentize(&source, &output)
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
    let Some((_dir, wasm)) = build(source).await else {
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

//! `wedge dev`: routes rebuilt from source by their sidecar's `[build]`,
//! build errors shown where the developer looks, and `wedge serve` never
//! running a build.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::{Http, Routes, Server, guest, text};

/// How long a rebuilt route may take to answer with its new version: a
/// warm incremental build of a one-file handler, with room for a loaded CI.
const REBUILD_DEADLINE: Duration = Duration::from_secs(180);

/// Where the handler crates built here put their output: beside the test
/// guests, kept between runs, so only the first run builds the SDK's
/// dependencies.
fn handlers_target() -> PathBuf {
    Path::new(env!("WEDGE_GUESTS_DIR"))
        .ancestors()
        .nth(3)
        .expect("the guests dir is <target>/wasm-guests/wasm32-wasip2/release")
        .join("dev-handlers")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
        .canonicalize()
        .expect("the repository path")
}

/// A one-file handler crate on wedge-sdk, and a routes folder whose
/// `hello.toml` builds it into `hello.wasm`.
struct HandlerCrate {
    dir: tempfile::TempDir,
}

impl HandlerCrate {
    fn new(body: &str) -> HandlerCrate {
        let dir = tempfile::tempdir().expect("a temp dir");
        let krate = dir.path().join("hello");
        std::fs::create_dir_all(krate.join("src")).expect("create src/");
        let manifest = format!(
            "[package]\nname = \"hello\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
             [dependencies]\nwedge-sdk = {{ path = \"{}\" }}\n\n\
             [profile.release]\ndebug = false\n\n[workspace]\n",
            repo().join("guest-sdk").display()
        );
        std::fs::write(krate.join("Cargo.toml"), manifest).expect("write Cargo.toml");
        // The examples' lock: the versions this machine has already fetched.
        std::fs::copy(repo().join("examples/Cargo.lock"), krate.join("Cargo.lock"))
            .expect("copy the examples' Cargo.lock");
        let handler = HandlerCrate { dir };
        handler.write(body);
        let output = handlers_target().join("wasm32-wasip2/release/hello.wasm");
        let sidecar = format!(
            "[build]\nworkdir = \"../hello\"\ncommand = \"{}\"\nwatch = [\"src/**/*.rs\"]\n\
             output = \"{}\"\n",
            handler.command(),
            output.display()
        );
        std::fs::create_dir_all(handler.routes()).expect("create routes/");
        std::fs::write(handler.routes().join("hello.toml"), sidecar).expect("write the sidecar");
        handler
    }

    /// The build command, with its target dir explicit, so that a
    /// `CARGO_TARGET_DIR` the tests inherit cannot move the output.
    fn command(&self) -> String {
        format!(
            "cargo build --release --target wasm32-wasip2 --target-dir {}",
            handlers_target().display()
        )
    }

    /// Replaces the handler's source with one answering `body`.
    fn write(&self, body: &str) {
        let source = format!(
            "#[wedge_sdk::handler]\nasync fn handler() -> &'static str {{\n    \"{body}\"\n}}\n"
        );
        self.write_source(&source);
    }

    fn write_source(&self, source: &str) {
        std::fs::write(self.dir.path().join("hello/src/main.rs"), source).expect("write main.rs");
    }

    fn routes(&self) -> PathBuf {
        self.dir.path().join("routes")
    }

    /// Builds once before the server starts: a cold target dir compiles
    /// the SDK's dependencies, which takes far longer than a rebuild.
    async fn warm_up(&self) {
        let mut build = tokio::process::Command::new("sh");
        build
            .args(["-c", &self.command()])
            .current_dir(self.dir.path().join("hello"))
            .env_remove("CARGO_TARGET_DIR");
        let status = tokio::time::timeout(Duration::from_secs(900), build.status())
            .await
            .expect("the first build of the handler finished")
            .expect("run cargo");
        assert!(status.success(), "the handler does not build");
    }
}

/// Polls `GET path` until it answers `200 expected`; how long that took.
async fn answers(client: &Http, path: &str, expected: &str) -> Duration {
    let started = Instant::now();
    loop {
        let answer = client.get(path).await;
        if answer.status() == 200 && text(&answer) == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < REBUILD_DEADLINE,
            "{path} never answered {expected:?}; last: {} {}",
            answer.status(),
            text(&answer)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_edit_is_rebuilt_and_served_and_a_broken_build_keeps_the_last_good_version() {
    let handler = HandlerCrate::new("v1");
    handler.warm_up().await;
    let server = Server::start_dev(&handler.routes(), &[], &[("CARGO_TARGET_DIR", None)]).await;
    let client = server.http1();
    // The first request waits for the first build.
    assert_eq!(text(&client.get("/hello").await), "v1");

    handler.write("v2");
    answers(&client, "/hello", "v2").await;
    let good = std::fs::read(handler.routes().join("hello.wasm")).unwrap();

    handler
        .write_source("#[wedge_sdk::handler]\nasync fn handler() -> &'static str {\n    \"v3\"\n");
    let broken = loop {
        let answer = client.get("/hello").await;
        if answer.status() == 500 {
            break answer;
        }
        assert_eq!(
            text(&answer),
            "v2",
            "before the failed build ends, v2 serves"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let page = text(&broken);
    assert!(page.starts_with("route failed to build"), "{page}");
    assert!(
        page.contains("error: this file contains an unclosed delimiter"),
        "{page}"
    );
    assert!(page.contains("src/main.rs"), "{page}");
    let accept = [("accept", "text/html,application/xhtml+xml")];
    let html = client.call_with("GET", "/hello", &accept, "").await;
    assert_eq!(html.status(), 500);
    assert_eq!(html.headers()["content-type"], "text/html; charset=utf-8");
    assert!(text(&html).contains("<pre>"), "{}", text(&html));
    assert!(
        text(&html).contains("unclosed delimiter"),
        "{}",
        text(&html)
    );
    assert_eq!(
        std::fs::read(handler.routes().join("hello.wasm")).unwrap(),
        good,
        "a failed build replaced the last good .wasm"
    );
    server.log.wait_for("build failed in").await;

    handler.write("v3");
    answers(&client, "/hello", "v3").await;

    // Two edits in a row: the last one wins, and stays. The pause waits for
    // nothing: it makes two saves, closer together than the source debounce.
    handler.write("v4");
    tokio::time::sleep(Duration::from_millis(20)).await;
    handler.write("v5");
    answers(&client, "/hello", "v5").await;
    // A wait, not a poll: a build of v4 must not land over v5 during it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(text(&client.get("/hello").await), "v5");

    server.log.wait_for("build ok in").await;
    server.log.wait_for("route updated").await;
}

/// Routes whose `[build]` runs a shell command (no compiler): `/made`
/// copies a fixture into place and leaves a marker, `/fails` prints an
/// error and fails, `/nowhere` names a workdir that does not exist.
fn shell_builds(marker: &Path) -> Routes {
    let made = format!(
        "[build]\ncommand = \"touch '{}' && cp '{}' built.wasm\"\noutput = \"built.wasm\"\n",
        marker.display(),
        guest("hello_v1").display()
    );
    let fails = "[build]\ncommand = \"echo 'boom: no compiler here' >&2; exit 3\"\n\
                 output = \"never.wasm\"\n";
    let nowhere = "[build]\nworkdir = \"missing\"\ncommand = \"true\"\noutput = \"x.wasm\"\n";
    Routes::new()
        .with_bytes("made.toml", made.as_bytes())
        .with_bytes("fails.toml", fails.as_bytes())
        .with_bytes("nowhere.toml", nowhere.as_bytes())
}

#[tokio::test]
async fn serve_never_runs_a_build_and_dev_runs_each() {
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("ran");
    let routes = shell_builds(&marker);

    let serve = Server::start(routes.path()).await;
    assert_eq!(serve.http1().get("/made").await.status(), 404);
    assert_eq!(serve.http1().get("/fails").await.status(), 404);
    // A wait, not a poll: no build may start during it (`wedge dev` starts
    // them all at once).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!marker.exists(), "wedge serve ran a [build] command");
    drop(serve);

    let dev = Server::start_dev(routes.path(), &[], &[]).await;
    let client = dev.http1();
    let made = client.get("/made").await;
    assert_eq!((made.status().as_u16(), text(&made)), (200, "v1"));
    assert!(marker.exists(), "wedge dev did not run the build");
    assert!(routes.path().join("made.wasm").exists());

    // Never built: the build's error answers, though no route file exists.
    let fails = client.get("/fails").await;
    assert_eq!(fails.status(), 500);
    assert!(
        text(&fails).contains("boom: no compiler here"),
        "{}",
        text(&fails)
    );
    assert!(text(&fails).contains("exit status: 3"), "{}", text(&fails));

    assert_eq!(client.get("/nowhere").await.status(), 404);
    let log = dev.log.wait_for("`build.workdir`").await;
    assert!(log.contains("nowhere.toml"), "{log}");
}

//! The examples in `examples/`, served at the routes their crates declare,
//! with the sidecars docs/handlers.md describes. The third-party APIs
//! are upstreams on loopback.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::harness::{Http, Routes, Server, Upstream, json, text};

/// The weather example's API key: it must reach the upstream and nothing else.
const SECRET: &str = "s3cr3t-weather-key";

/// Every Rust example at the route whose committed sidecar builds it, with
/// that sidecar: what `cargo xtask serve` (`wedge dev routes`) serves.
fn example_routes() -> Routes {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut routes = Routes::new();
    let mut built = Vec::new();
    for entry in walk(&repo.join("routes")) {
        let Some(relative) = entry.strip_prefix(repo.join("routes")).ok() else {
            continue;
        };
        if entry.extension().is_none_or(|ext| ext != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&entry).expect("read a committed sidecar");
        let layer = wedge::settings::SettingsLayer::parse_sidecar(&entry, &text)
            .expect("a valid committed sidecar");
        let build = layer
            .build()
            .expect("every committed sidecar builds an example");
        let workdir = build.workdir.as_ref().expect("a workdir in examples/");
        let package = utf8_name(workdir);
        if !repo
            .join("examples")
            .join(&package)
            .join("Cargo.toml")
            .exists()
        {
            continue; // JavaScript or Python: see languages.rs
        }
        let wasm = relative.with_extension("wasm");
        routes = routes
            .with(&wasm.to_string_lossy(), &package)
            .with_bytes(&relative.to_string_lossy(), text.as_bytes());
        built.push(package);
    }
    built.sort();
    let mut examples: Vec<String> = entries(&repo.join("examples"))
        .into_iter()
        .filter(|path| path.join("Cargo.toml").exists())
        .map(|path| utf8_name(&path))
        .collect();
    examples.sort();
    assert_eq!(built, examples, "every Rust example has a route, once");
    routes
}

/// The entries of `dir`.
fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("read a folder of the repository")
        .map(|entry| entry.expect("a folder entry").path())
        .collect()
}

/// The last component of `path`, which the repository spells in UTF-8.
fn utf8_name(path: &Path) -> String {
    path.file_name()
        .expect("a named path")
        .to_string_lossy()
        .into_owned()
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in entries(dir) {
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// The users and weather sidecars, pointed at `users` and `weather`.
fn with_upstreams(routes: Routes, users: &Upstream, weather: &Upstream) -> Routes {
    let (users, weather) = (users.origin(), weather.origin());
    let users = format!("allowed_outbound_hosts = [\"{users}\"]\n[env]\nUSERS_API = \"{users}\"\n");
    let weather = format!(
        "allowed_outbound_hosts = [\"{weather}\"]\n[env]\nWEATHER_API = \"{weather}\"\n\
         WEATHER_API_KEY = \"${{WEATHER_API_KEY}}\"\n"
    );
    routes
        .with_bytes("api/users/[id].toml", users.as_bytes())
        .with_bytes("api/weather.toml", weather.as_bytes())
}

async fn users_api() -> Upstream {
    Upstream::start(|_, target| match target {
        "/users/1" => (
            200,
            json!({
                "id": 1, "name": "Leanne Graham", "username": "Bret",
                "email": "Sincere@april.biz", "phone": "1-770-736-8031",
                "address": {"street": "Kulas Light", "city": "Gwenborough"},
            })
            .to_string(),
        ),
        _ => (404, "{}".into()),
    })
    .await
}

async fn weather_api() -> Upstream {
    Upstream::start(|_, target| {
        if target.contains("q=Nowhere") {
            (401, format!("{{\"error\":\"key {SECRET} is revoked\"}}"))
        } else {
            (
                200,
                json!({"temp_c": 4.5, "condition": "sleet", "station": "OSL"}).to_string(),
            )
        }
    })
    .await
}

async fn start() -> (Server, Routes, Upstream, Upstream) {
    let (users, weather) = (users_api().await, weather_api().await);
    let routes = with_upstreams(example_routes(), &users, &weather);
    let server = Server::start_with_env(routes.path(), &[], &[("WEATHER_API_KEY", SECRET)]).await;
    (server, routes, users, weather)
}

#[tokio::test]
async fn json_get_post_and_a_method_router_answer_as_the_readme_says() {
    let (server, _routes, _, _) = start().await;
    for client in server.clients() {
        let hello = client.get("/api/hello").await;
        assert_eq!(hello.headers()["content-type"], "application/json");
        assert_eq!(json(&hello), json!({"message": "Hello from Wedge!"}));
        let named = client.get("/api/hello?name=Ada%20L").await;
        assert_eq!(json(&named), json!({"message": "Hello, Ada L!"}));
        let post = client.post("/api/hello", "").await;
        assert_eq!(post.status(), 405);
        assert_eq!(post.headers()["allow"], "GET, HEAD, OPTIONS");
        let head = client.call("HEAD", "/api/hello").await;
        assert_eq!((head.status().as_u16(), head.body().len()), (200, 0));

        todos_are_kept_in_the_default_store(&client).await;
    }
}

#[tokio::test]
async fn the_wasi_0_3_greeting_answers_from_one_reused_instance() {
    let (server, _routes, _, _) = start().await;
    let mut served = Vec::new();
    for client in server.clients() {
        let hello = client.get("/api/hello-wasi03").await;
        assert_eq!(hello.headers()["content-type"], "application/json");
        let hello = json(&hello);
        assert_eq!(hello["message"], "Hello from Wedge!");
        served.push(hello["served"].as_u64().expect("a count"));
        let named = json(&client.get("/api/hello-wasi03?name=Ada%20L").await);
        assert_eq!(named["message"], "Hello, Ada L!");
        served.push(named["served"].as_u64().expect("a count"));
    }
    // One request at a time: the instance that answered the first answers
    // every one after it, its counter going on.
    assert_eq!(served, [1, 2, 3, 4]);
}

/// `api/todos` and `api/todos/[id]` against the `default` store their
/// sidecars grant. The store outlives requests and is shared by both
/// routes (and both protocols' clients): ids are compared, never assumed.
async fn todos_are_kept_in_the_default_store(client: &Http) {
    let id = |todo: &serde_json::Value| todo["id"].as_u64().expect("a numeric id");
    let created = client
        .post("/api/todos", r#"{"title":"Walk the dog"}"#)
        .await;
    assert_eq!(created.status(), 201, "{}", text(&created));
    let first = json(&created);
    let first_id = id(&first);
    assert_eq!(
        first,
        json!({"id": first_id, "title": "Walk the dog", "done": false})
    );
    let second = json(
        &client
            .post("/api/todos", r#"{"title":"Feed the cat"}"#)
            .await,
    );
    assert!(id(&second) > first_id, "{first} then {second}");

    // Created is stored: read back, and listed by id.
    let path = format!("/api/todos/{first_id}");
    assert_eq!(json(&client.get(&path).await), first);
    let list = json(&client.get("/api/todos").await);
    let listed = list.as_array().expect("a JSON array");
    assert!(
        listed.contains(&first) && listed.contains(&second),
        "{list}"
    );
    let ids: Vec<u64> = listed.iter().map(id).collect();
    assert!(ids.is_sorted(), "{ids:?}");

    // Requests at once get distinct ids: `increment` is atomic.
    let posts = (0..6).map(|n| client.post("/api/todos", format!(r#"{{"title":"Task {n}"}}"#)));
    let mut batch: Vec<u64> = futures::future::join_all(posts)
        .await
        .iter()
        .map(|answer| {
            assert_eq!(answer.status(), 201, "{}", text(answer));
            id(&json(answer))
        })
        .collect();
    batch.sort_unstable();
    batch.dedup();
    assert_eq!(batch.len(), 6, "{batch:?}");

    let cases = [
        (
            r#"{"title": 5}"#,
            400,
            "invalid JSON body: invalid type: integer `5`",
        ),
        (
            r#"{"title": "x", "due": 1}"#,
            400,
            "invalid JSON body: unknown field `due`",
        ),
        (r#"{"title": "#, 400, "invalid JSON body: EOF while parsing"),
        (r#"{"title": "   "}"#, 422, "`title` must be 1-200 bytes"),
    ];
    for (body, status, message) in cases {
        let refused = client.post("/api/todos", body).await;
        assert_eq!(refused.status(), status, "{body}: {}", text(&refused));
        assert!(
            text(&refused).starts_with(message),
            "{body}: {}",
            text(&refused)
        );
    }

    // PUT replaces and PATCH changes the fields given; both last.
    let put = client
        .call_with("PUT", &path, &[], r#"{"title":"Done","done":true}"#)
        .await;
    assert_eq!(put.status(), 200, "{}", text(&put));
    assert_eq!(
        json(&put),
        json!({"id": first_id, "title": "Done", "done": true})
    );
    assert_eq!(json(&client.get(&path).await), json(&put));
    let patch = client
        .call_with("PATCH", &path, &[], r#"{"done":false}"#)
        .await;
    assert_eq!(patch.status(), 200, "{}", text(&patch));
    let patched = json!({"id": first_id, "title": "Done", "done": false});
    assert_eq!(json(&patch), patched);
    let other_id = format!(r#"{{"id":{},"title":"x","done":true}}"#, first_id + 1);
    let refusals = [
        ("PUT", other_id.as_str(), 422, "`id` cannot change"),
        (
            "PUT",
            r#"{"title":"x"}"#,
            400,
            "invalid JSON body: missing field `done`",
        ),
        (
            "PATCH",
            r#"{"title":""}"#,
            422,
            "`title` must be 1-200 bytes",
        ),
        (
            "PATCH",
            r#"{"done":"yes"}"#,
            400,
            "invalid JSON body: invalid type",
        ),
        (
            "PATCH",
            r#"{"due":1}"#,
            400,
            "invalid JSON body: unknown field `due`",
        ),
    ];
    for (method, body, status, message) in refusals {
        let refused = client.call_with(method, &path, &[], body.to_owned()).await;
        assert_eq!(
            refused.status(),
            status,
            "{method} {body}: {}",
            text(&refused)
        );
        assert!(
            text(&refused).starts_with(message),
            "{method} {body}: {}",
            text(&refused)
        );
    }
    assert_eq!(
        json(&client.get(&path).await),
        patched,
        "refusals change nothing"
    );

    // DELETE removes it for good; the others stay.
    assert_eq!(client.call("DELETE", &path).await.status(), 204);
    let gone = client.get(&path).await;
    assert_eq!(
        (gone.status().as_u16(), text(&gone)),
        (404, format!("no todo {first_id}").as_str())
    );
    assert_eq!(client.call("DELETE", &path).await.status(), 404);
    let put = client
        .call_with("PUT", &path, &[], r#"{"title":"Back","done":false}"#)
        .await;
    assert_eq!(
        put.status(),
        404,
        "a PUT does not bring a deleted todo back"
    );
    let patch = client
        .call_with("PATCH", &path, &[], r#"{"done":true}"#)
        .await;
    assert_eq!(patch.status(), 404, "nor does a PATCH");
    assert_eq!(client.get(&path).await.status(), 404);
    let list = json(&client.get("/api/todos").await);
    let ids: Vec<u64> = list
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(id)
        .collect();
    assert!(
        !ids.contains(&first_id) && ids.contains(&id(&second)),
        "{ids:?}"
    );

    let missing = client.get("/api/todos/999999").await;
    assert_eq!(
        (missing.status().as_u16(), text(&missing)),
        (404, "no todo 999999")
    );
    let bad = client.get("/api/todos/abc").await;
    assert_eq!(bad.status(), 400);
    assert!(
        text(&bad).starts_with("invalid `id` in the path"),
        "{}",
        text(&bad)
    );
    let post = client.post(&path, "").await;
    assert_eq!(post.status(), 405);
    assert_eq!(
        post.headers()["allow"],
        "DELETE, GET, HEAD, OPTIONS, PATCH, PUT"
    );
    let options = client.call("OPTIONS", &path).await;
    assert_eq!(options.status(), 204);
    assert_eq!(
        options.headers()["allow"],
        "DELETE, GET, HEAD, OPTIONS, PATCH, PUT"
    );
}

#[tokio::test]
async fn catch_all_echo_and_index_answer_as_the_readme_says() {
    let (server, _routes, _, _) = start().await;
    for (n, client) in server.clients().into_iter().enumerate() {
        let post = client.get("/blog/2026/hello%2Fworld").await;
        assert_eq!(
            json(&post),
            json!({"slug": "2026/hello/world", "segments": ["2026", "hello/world"]})
        );
        // The sidecar's `revalidate`: the second client gets the first's
        // answer from the cache.
        let cached = if n == 0 { "MISS" } else { "HIT" };
        assert_eq!(post.headers()["x-wedge-cache"], cached);

        let content_type = [("content-type", "text/x-ping")];
        let echo = client
            .call_with("POST", "/api/echo", &content_type, "ping pong")
            .await;
        assert_eq!((echo.status().as_u16(), text(&echo)), (200, "ping pong"));
        assert_eq!(echo.headers()["content-type"], "text/x-ping");
        assert_eq!(client.get("/api/echo").await.status(), 405);

        let index = client.get("/").await;
        assert_eq!(index.headers()["content-type"], "text/html; charset=utf-8");
        assert!(text(&index).contains("/api/todos/1"), "{}", text(&index));
    }
}

#[tokio::test]
async fn a_third_party_api_is_called_and_its_json_reshaped() {
    let (server, _routes, users, _) = start().await;
    let client = server.http1();
    let user = client.get("/api/users/1").await;
    assert_eq!(user.status(), 200, "{}", text(&user));
    assert_eq!(
        json(&user),
        json!({"id": 1, "name": "Leanne Graham", "email": "Sincere@april.biz", "city": "Gwenborough"})
    );
    let missing = client.get("/api/users/2").await;
    assert_eq!(
        (missing.status().as_u16(), text(&missing)),
        (404, "no such user")
    );
    let targets: Vec<String> = users.seen().into_iter().map(|seen| seen.target).collect();
    assert_eq!(targets, ["GET /users/1", "GET /users/2"]);
}

#[tokio::test]
async fn a_secret_from_env_reaches_the_upstream_and_nothing_else() {
    let (server, _routes, _, weather) = start().await;
    let client = server.http1();
    let forecast = client.get("/api/weather?city=Oslo%20S").await;
    assert_eq!(forecast.status(), 200, "{}", text(&forecast));
    assert_eq!(
        json(&forecast),
        json!({"city": "Oslo S", "temperature_c": 4.5, "summary": "sleet"})
    );
    let revoked = client.get("/api/weather?city=Nowhere").await;
    assert_eq!(revoked.status(), 502);
    let no_city = client.get("/api/weather").await;
    assert_eq!(
        (no_city.status().as_u16(), text(&no_city)),
        (400, "add ?city=…")
    );

    let seen = weather.seen();
    assert_eq!(seen[0].target, "GET /current?q=Oslo+S");
    for request in &seen {
        assert_eq!(request.headers["authorization"], format!("Bearer {SECRET}"));
    }
    for answer in [&forecast, &revoked, &no_city] {
        assert!(!text(answer).contains(SECRET), "{}", text(answer));
        assert!(
            answer
                .headers()
                .values()
                .all(|v| !v.to_str().unwrap_or("").contains(SECRET))
        );
    }
    let log = server.log.wait_for("weather API answered 401").await;
    assert!(!log.contains(SECRET), "the secret reached the log:\n{log}");
}

#[tokio::test]
async fn a_streamed_response_arrives_while_it_is_written() {
    let (server, _routes, _, _) = start().await;
    for client in server.clients() {
        let (response, spread) = client.get_streamed("/api/stream").await;
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; charset=utf-8"
        );
        assert_eq!(response.body(), "line 1\nline 2\nline 3\nline 4\nline 5\n");
        // Written 100 ms apart: a buffered body would arrive all at once.
        assert!(
            spread >= Duration::from_millis(300),
            "{}: {spread:?}",
            client.version
        );
    }
}

/// The sidecars committed in `routes/` (what `cargo xtask serve` serves)
/// load with the examples, given the weather key, and not without it.
#[tokio::test]
async fn the_committed_sidecars_load() {
    let routes = example_routes();
    let cache = tempfile::tempdir().unwrap();
    let args = [
        "routes".as_ref(),
        routes.path().as_os_str(),
        "--cache-dir".as_ref(),
        cache.path().as_os_str(),
    ];
    let key = [
        ("WEATHER_API_KEY", Some(SECRET)),
        ("WEBHOOK_SECRET", Some("s")),
    ];
    let (code, stdout, stderr) = crate::harness::run_wedge_with_env(&args, &key).await;
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("/api/weather"), "{stdout}");
    let no_key = [("WEATHER_API_KEY", None), ("WEBHOOK_SECRET", Some("s"))];
    let (code, _, stderr) = crate::harness::run_wedge_with_env(&args, &no_key).await;
    assert_eq!(
        code, 1,
        "without WEATHER_API_KEY the weather route cannot load"
    );
    assert!(stderr.contains("WEATHER_API_KEY"), "{stderr}");
}

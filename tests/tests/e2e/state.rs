//! Key-value stores through `wasi:keyvalue`: the embedded store in the data
//! folder (crash-safe, one server per folder), a real `redis-server`
//! shared by two Wedge processes, access per route, limits, outages.
//! The guest is `kv_probe` (its module doc is the URL contract).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::join_all;

use crate::harness::{Answer, Redis, Routes, Server, json, run_wedge, sample, text, wait_until};

/// Asserts `answer` is `status` with a body that says `says`.
#[track_caller]
fn expect(answer: &Answer, status: u16, says: &str) {
    let body = text(answer);
    assert_eq!(answer.status(), status, "{body}");
    assert!(body.contains(says), "{status}, expected {says:?}: {body}");
}

/// The probe at `kv/[...op]`, granted `stores`, with the hello route beside
/// it for "the others keep serving".
fn probe_routes(stores: &[&str]) -> Routes {
    let list: Vec<String> = stores.iter().map(|name| format!("{name:?}")).collect();
    let sidecar = format!(
        "key_value_stores = [{}]\ntimeout = \"3s\"\n",
        list.join(", ")
    );
    Routes::new()
        .with("kv/[...op].wasm", "kv_probe")
        .with_bytes("kv/[...op].toml", sidecar.as_bytes())
        .with("hello.wasm", "hello_v1")
}

fn os(text: &str) -> &std::ffi::OsStr {
    text.as_ref()
}

/// Starts a server on `routes` with `data` as its data folder and `config`
/// (if any) as its `--config`.
async fn start(routes: &Routes, data: &Path, config: Option<&Path>, admin: bool) -> Server {
    let mut args = vec![os("--data-dir"), data.as_os_str()];
    if let Some(config) = config {
        args.extend([os("--config"), config.as_os_str()]);
    }
    if admin {
        args.extend([os("--admin"), os("127.0.0.1:0")]);
    }
    Server::start_with(routes.path(), &args).await
}

/// A `--config` whose `default` store is on `redis`.
fn redis_config(dir: &Path, redis: &Redis, extra: &str) -> std::path::PathBuf {
    let file = dir.join("wedge.toml");
    let text = format!(
        "[key_value.default]\nbackend = \"redis\"\nurl = \"{}\"\n{extra}",
        redis.url()
    );
    std::fs::write(&file, text).expect("write the config");
    file
}

#[tokio::test]
async fn a_value_set_is_read_back_and_outlives_the_server() {
    let routes = probe_routes(&["default"]);
    let dir = tempfile::tempdir().expect("a folder");
    let data = dir.path().join("data");
    let server = start(&routes, &data, None, false).await;
    let client = server.http1();
    assert_eq!(client.get("/kv/default/greeting").await.status(), 404);
    let set = client
        .call_with("PUT", "/kv/default/greeting", &[], "hello")
        .await;
    assert_eq!(set.status(), 204, "{}", text(&set));
    let got = client.get("/kv/default/greeting").await;
    assert_eq!((got.status().as_u16(), text(&got)), (200, "hello"));
    let exists = client.get("/kv/default/greeting?exists").await;
    assert_eq!(text(&exists), "true");
    let counted = client.post("/kv/default/visits?incr=5", "").await;
    assert_eq!((counted.status().as_u16(), text(&counted)), (200, "5"));
    let not_a_number = client.post("/kv/default/greeting?incr=1", "").await;
    expect(&not_a_number, 503, "not an integer");
    assert_eq!(server.stop().await, 0);

    // The data folder was made private, and a restart finds the value.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&data)
        .expect("the folder")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    let server = start(&routes, &data, None, false).await;
    let client = server.http1();
    assert_eq!(text(&client.get("/kv/default/greeting").await), "hello");
    assert_eq!(
        text(&client.post("/kv/default/visits?incr=1", "").await),
        "6"
    );
    let deleted = client.call("DELETE", "/kv/default/greeting").await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(client.get("/kv/default/greeting").await.status(), 404);
    assert_eq!(
        text(&client.get("/kv/default/greeting?exists").await),
        "false"
    );
}

#[tokio::test]
async fn a_store_the_sidecar_does_not_grant_is_access_denied_and_the_log_says_which_key() {
    let routes = probe_routes(&["default"]);
    let data = tempfile::tempdir().expect("a data folder");
    let server = start(&routes, data.path(), None, true).await;
    let client = server.http1();
    let denied = client.call_with("PUT", "/kv/sessions/a", &[], "x").await;
    expect(&denied, 403, "access-denied");
    let line = server
        .log
        .wait_for("opened key-value store \"sessions\"")
        .await;
    assert!(line.contains("key_value_stores"), "{line}");
    // /routes shows what each route is granted.
    let table = json(&server.admin().get("/routes").await);
    let probe = table
        .as_array()
        .expect("a list")
        .iter()
        .find(|route| route["pattern"] == "/kv/[...op]")
        .expect("the probe's route");
    assert_eq!(
        probe["settings"]["key_value_stores"],
        serde_json::json!(["default"])
    );
    // The granted store works beside the denied one, and is counted.
    let set = client.call_with("PUT", "/kv/default/a", &[], "x").await;
    assert_eq!(set.status(), 204);
    let metrics = text(&server.admin().get("/metrics").await).to_owned();
    let labels = [("store", "default"), ("op", "set"), ("outcome", "ok")];
    assert_eq!(
        sample(&metrics, "wedge_kv_operations_total", &labels),
        Some(1.0)
    );
    let denied = [("store", ""), ("op", "open"), ("outcome", "denied")];
    assert_eq!(
        sample(&metrics, "wedge_kv_operations_total", &denied),
        Some(1.0)
    );
    // Granting the store is a sidecar change: it reloads, no restart.
    let sidecar = routes.path().join("kv/[...op].toml");
    std::fs::write(&sidecar, "key_value_stores = [\"default\", \"sessions\"]\n")
        .expect("rewrite the sidecar");
    wait_until("the reloaded sidecar grants sessions", async || {
        client
            .call_with("PUT", "/kv/sessions/a", &[], "x")
            .await
            .status()
            == 204
    })
    .await;
}

#[tokio::test]
async fn keys_and_values_over_the_limits_are_errors_that_store_nothing() {
    let dir = tempfile::tempdir().expect("a folder");
    let config = dir.path().join("wedge.toml");
    std::fs::write(
        &config,
        "[key_value.small]\nmax_key_size = 16\nmax_value_size = \"64\"\n",
    )
    .expect("write the config");
    let routes = probe_routes(&["default", "small"]);
    let server = start(&routes, &dir.path().join("data"), Some(&config), false).await;
    let client = server.http1();
    let long_key = "k".repeat(17);
    let refused = client
        .call_with("PUT", &format!("/kv/small/{long_key}"), &[], "v")
        .await;
    expect(&refused, 503, "max_key_size");
    let refused = client
        .call_with("PUT", "/kv/small/big", &[], vec![b'v'; 65])
        .await;
    expect(&refused, 503, "max_value_size");
    assert_eq!(
        client.get("/kv/small/big").await.status(),
        404,
        "nothing stored"
    );
    let fits = client
        .call_with("PUT", "/kv/small/big", &[], vec![b'v'; 64])
        .await;
    assert_eq!(fits.status(), 204);
    // The default store's limits are the defaults: 1 KiB keys.
    let key = "k".repeat(1024);
    let fits = client
        .call_with("PUT", &format!("/kv/default/{key}"), &[], "v")
        .await;
    assert_eq!(fits.status(), 204, "{}", text(&fits));
    let key = "k".repeat(1025);
    let refused = client
        .call_with("PUT", &format!("/kv/default/{key}"), &[], "v")
        .await;
    assert_eq!(refused.status(), 503);
    // An empty key is refused by the store; a key that is not UTF-8 never
    // reaches it (keys are WIT strings).
    let empty = client.call_with("PUT", "/kv/default?key=", &[], "v").await;
    expect(&empty, 503, "empty");
    let not_utf8 = client
        .call_with("PUT", "/kv/default?key=%FF%FE", &[], "v")
        .await;
    assert_eq!(not_utf8.status(), 400, "{}", text(&not_utf8));
    // The server keeps serving.
    assert_eq!(client.get("/hello").await.status(), 200);
}

#[tokio::test]
async fn list_keys_follows_its_cursor_over_many_pages() {
    let routes = probe_routes(&["default"]);
    let data = tempfile::tempdir().expect("a data folder");
    let server = start(&routes, data.path(), None, false).await;
    let client = server.http1();
    let filled = client.post("/kv/default?fill=2500&prefix=item-", "").await;
    assert!(filled.status().is_success(), "{}", text(&filled));
    let listed = json(&client.get("/kv/default?keys").await);
    let keys = listed["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2500);
    assert_eq!(listed["pages"], 3, "1000 keys a page");
    assert_eq!(keys[0], "item-0");
}

/// Writes `key` (value: the key) and says whether it was acknowledged.
async fn acknowledged(client: &crate::harness::Http, key: &str) -> bool {
    let request = client
        .request("PUT", &format!("/kv/default/{key}"))
        .body(crate::harness::full(key.to_owned()))
        .expect("a request");
    matches!(client.try_send(request).await, Ok(answer) if answer.status() == 204)
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9_alone_and_under_concurrent_load() {
    let routes = probe_routes(&["default"]);
    let data = tempfile::tempdir().expect("a data folder");
    let server = start(&routes, data.path(), None, false).await;
    let client = server.http1();
    for i in 0..1000 {
        assert!(
            acknowledged(&client, &format!("one-{i}")).await,
            "write {i}"
        );
    }
    server.kill().await;

    let server = start(&routes, data.path(), None, false).await;
    let client = Arc::new(server.http1());
    let listed = json(&client.get("/kv/default?keys").await);
    assert_eq!(listed["keys"].as_array().map(Vec::len), Some(1000));
    assert_eq!(text(&client.get("/kv/default/one-999").await), "one-999");
    // 32 writers; the server is killed while they write.
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..32)
        .map(|writer| {
            let (client, acked, count) = (client.clone(), acked.clone(), count.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    let key = format!("many-{writer}-{i}");
                    if !acknowledged(&client, &key).await {
                        return;
                    }
                    acked.lock().expect("not poisoned").push(key);
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    wait_until("1000 concurrent writes acknowledged", async || {
        count.load(Ordering::Relaxed) >= 1000
    })
    .await;
    server.kill().await;
    join_all(writers).await;

    let server = start(&routes, data.path(), None, false).await;
    let client = server.http1();
    let listed = json(&client.get("/kv/default?keys").await);
    let keys: std::collections::HashSet<&str> = listed["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|key| key.as_str())
        .collect();
    let acked = acked.lock().expect("not poisoned").clone();
    assert!(acked.len() >= 1000);
    let lost: Vec<&String> = acked
        .iter()
        .filter(|key| !keys.contains(key.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost: {lost:?}",
        lost.len()
    );
}

#[tokio::test]
async fn a_second_server_on_the_same_data_folder_fails_naming_it() {
    let routes = probe_routes(&["default"]);
    let data = tempfile::tempdir().expect("a data folder");
    let _first = start(&routes, data.path(), None, false).await;
    let (code, _, stderr) = run_wedge(&[
        os("serve"),
        routes.path().as_os_str(),
        os("--listen"),
        os("127.0.0.1:0"),
        os("--data-dir"),
        data.path().as_os_str(),
    ])
    .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&data.path().display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("backend = \"redis\""), "{stderr}");
    // Nor may the data live among the routes.
    let inside = routes.path().join("state");
    let (code, _, stderr) = run_wedge(&[
        os("serve"),
        routes.path().as_os_str(),
        os("--listen"),
        os("127.0.0.1:0"),
        os("--data-dir"),
        inside.as_os_str(),
    ])
    .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("inside the routes folder"), "{stderr}");
}

#[tokio::test]
async fn two_servers_on_one_redis_share_writes_counters_and_swaps_exactly() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("a folder");
    let config = redis_config(dir.path(), &redis, "");
    let routes = probe_routes(&["default"]);
    let a = start(&routes, &dir.path().join("a"), Some(&config), false).await;
    let b = start(&routes, &dir.path().join("b"), Some(&config), false).await;
    let (a, b) = (Arc::new(a.http1()), Arc::new(b.http1()));
    let set = a
        .call_with("PUT", "/kv/default/shared", &[], "from a")
        .await;
    assert_eq!(set.status(), 204, "{}", text(&set));
    assert_eq!(text(&b.get("/kv/default/shared").await), "from a");

    // 2 × 500 increments, 64 at a time through each server.
    let increments = |client: Arc<crate::harness::Http>| async move {
        let semaphore = Arc::new(tokio::sync::Semaphore::new(64));
        let runs = (0..500).map(|_| {
            let (client, semaphore) = (client.clone(), semaphore.clone());
            async move {
                let _permit = semaphore.acquire().await.expect("open");
                let answer = client.post("/kv/default/counter?incr=1", "").await;
                assert_eq!(answer.status(), 200, "{}", text(&answer));
            }
        });
        join_all(runs).await;
    };
    tokio::join!(increments(a.clone()), increments(b.clone()));
    assert_eq!(text(&a.get("/kv/default/counter").await), "1000");

    // Read-modify-writes racing through both servers lose nothing: each
    // appends one letter by compare-and-swap.
    let appends = (0..40).map(|i| {
        let client = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move {
            let answer = client.post("/kv/default/letters?append", "x").await;
            assert_eq!(answer.status(), 200, "{}", text(&answer));
        }
    });
    join_all(appends).await;
    assert_eq!(text(&b.get("/kv/default/letters").await), "x".repeat(40));
    let listed = json(&a.get("/kv/default?keys").await);
    let mut keys: Vec<&str> = listed["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|key| key.as_str())
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["counter", "letters", "shared"],
        "the prefix is stripped"
    );
}

#[tokio::test]
async fn a_redis_outage_is_the_guests_error_and_the_store_reconnects() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("a folder");
    let config = redis_config(dir.path(), &redis, "");
    let routes = probe_routes(&["default"]);
    let server = start(&routes, &dir.path().join("data"), Some(&config), true).await;
    let client = server.http1();
    let admin = server.admin();
    wait_until("/readyz is 200", async || {
        admin.get("/readyz").await.status() == 200
    })
    .await;
    let set = client.call_with("PUT", "/kv/default/k", &[], "v").await;
    assert_eq!(set.status(), 204, "{}", text(&set));

    redis.stop().await;
    for _ in 0..3 {
        let started = Instant::now();
        let answer = client.get("/kv/default/k").await;
        expect(&answer, 503, "unreachable");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        client.get("/hello").await.status(),
        200,
        "other routes serve"
    );
    server.log.wait_for("is unreachable").await;
    let said = server.log.text().matches("is unreachable (").count();
    assert_eq!(said, 1, "one line per outage:\n{}", server.log.text());

    redis.restart().await;
    wait_until("the store answers again", async || {
        client
            .call_with("PUT", "/kv/default/k", &[], "back")
            .await
            .status()
            == 204
    })
    .await;
    assert_eq!(text(&client.get("/kv/default/k").await), "back");
    server.log.wait_for("answers again").await;
}

#[tokio::test]
async fn readyz_waits_for_a_redis_store_that_cannot_be_reached_at_start_up() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    redis.stop().await;
    let dir = tempfile::tempdir().expect("a folder");
    let config = redis_config(dir.path(), &redis, "");
    let routes = probe_routes(&["default"]);
    let server = start(&routes, &dir.path().join("data"), Some(&config), true).await;
    let admin = server.admin();
    let ready = admin.get("/readyz").await;
    expect(&ready, 503, "\"default\"");
    redis.restart().await;
    wait_until("/readyz is 200", async || {
        admin.get("/readyz").await.status() == 200
    })
    .await;
}

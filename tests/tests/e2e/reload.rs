//! Hot reload: routes change in the running server, and no request fails.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use wedge_toolchains::custom_section;

use crate::harness::{Http, Routes, Server, guest, text};

/// Writes `bytes` to `to` the way a deploy does: a temporary file, then a rename.
fn rename_into_place(to: &Path, bytes: &[u8]) {
    let temporary = to.with_file_name(format!(
        ".{}.tmp",
        to.file_name().expect("a file name").to_string_lossy()
    ));
    std::fs::write(&temporary, bytes).expect("write the new version");
    std::fs::rename(&temporary, to).expect("rename it into place");
}

/// Waits until `GET path` answers `status` with `body`; panics after 10 s.
async fn eventually(client: &Http, path: &str, status: u16, body: &str) {
    let mut last = None;
    for _ in 0..1000 {
        let answer = client.get(path).await;
        if answer.status() == status && text(&answer) == body {
            return;
        }
        last = Some((answer.status(), answer.body().clone()));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("GET {path} never answered {status} {body:?}; last: {last:?}");
}

/// Waits until `GET path` answers 200 with the JSON `expected`; panics after 10 s.
pub(crate) async fn eventually_json(client: &Http, path: &str, expected: serde_json::Value) {
    let mut last = None;
    for _ in 0..1000 {
        let answer = client.get(path).await;
        if answer.status() == 200
            && serde_json::from_slice::<serde_json::Value>(answer.body())
                .ok()
                .as_ref()
                == Some(&expected)
        {
            return;
        }
        last = Some((answer.status(), answer.body().clone()));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("GET {path} never answered {expected}; last: {last:?}");
}

/// Waits until `POST path` (body `x`) answers 200; panics after ~5 s.
pub(crate) async fn eventually_post_ok(client: &Http, path: &str) {
    let mut status = 0;
    for _ in 0..500 {
        status = client.post(path, "x").await.status().as_u16();
        if status == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("POST {path} never answered 200; last: {status}");
}

fn v1() -> Vec<u8> {
    std::fs::read(guest("hello_v1")).expect("read hello_v1")
}

fn v2() -> Vec<u8> {
    std::fs::read(guest("hello_v2")).expect("read hello_v2")
}

#[tokio::test]
async fn a_hundred_swaps_under_load_fail_no_request() {
    let routes = Routes::new()
        .with("r.wasm", "hello_v1")
        .with("other.wasm", "inspect");
    let file = routes.path().join("r.wasm");
    let server = Server::start(routes.path()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for i in 0..4 {
        let client = if i % 2 == 0 {
            server.http1()
        } else {
            server.http2()
        };
        let (stop, served) = (stop.clone(), served.clone());
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let answer = client.get("/r").await;
                if answer.status() != 200 || !matches!(text(&answer), "v1" | "v2") {
                    failures.push(format!("{} {:?}", answer.status(), answer.body()));
                }
                served.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }
    let checker = server.http1();
    let (v1, v2) = (v1(), v2());
    for swap in 0..100 {
        let (bytes, expected) = if swap % 2 == 0 {
            (&v2, "v2")
        } else {
            (&v1, "v1")
        };
        if swap % 4 < 2 {
            rename_into_place(&file, bytes);
        } else {
            // `cp` over the file: the server may see it truncated or half written.
            std::fs::write(&file, bytes).unwrap();
        }
        eventually(&checker, "/r", 200, expected).await;
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let failures = client.await.unwrap();
        assert_eq!(failures, Vec::<String>::new());
    }
    assert!(
        served.load(Ordering::Relaxed) > 100,
        "the load kept running"
    );
    let log = server.log.wait_for("route updated: ").await;
    // A hundred rescans, and the unchanged route was loaded once.
    let loads = |name: &str| {
        log.lines()
            .filter(|l| l.contains("loading component") && l.contains(name))
            .count()
    };
    assert_eq!(loads("other.wasm"), 1, "{log}");
    assert!(text(&server.http1().get("/other").await).contains("\"method\""));
}

#[tokio::test]
async fn an_idle_server_does_not_rescan() {
    let routes = Routes::new().with("r.wasm", "hello_v1");
    let server = Server::start(routes.path()).await;
    eventually(&server.http1(), "/r", 200, "v1").await;
    // Reading the files during a rescan must not look like a change.
    // Waits, not polls: the first lets a rescan that follows the start
    // finish (two are allowed below), the second is a window that must see
    // none.
    server.log.wait_for("rescanning").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.log.text().matches("rescanning").count();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.log.text().matches("rescanning").count();
    assert_eq!(before, after, "rescans while nothing changed");
    assert!(after <= 2, "{after} rescans for one start");
}

#[tokio::test]
async fn a_request_in_flight_finishes_on_the_version_it_started_on() {
    let routes = Routes::new().with("slow.wasm", "slow_stream");
    let server = Server::start(routes.path()).await;
    for client in server.clients() {
        rename_into_place(
            &routes.path().join("slow.wasm"),
            &std::fs::read(guest("slow_stream")).unwrap(),
        );
        eventually(
            &client,
            "/slow",
            200,
            &(0..20).map(|i| format!("chunk {i}\n")).collect::<String>(),
        )
        .await;
        let request = client
            .request("GET", "/slow")
            .body(crate::harness::empty())
            .unwrap();
        let mut body = client.send_streaming(request).await.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "chunk 0\n");
        rename_into_place(&routes.path().join("slow.wasm"), &v1());
        eventually(&client, "/slow", 200, "v1").await;
        let rest = body
            .collect()
            .await
            .expect("the old version's body completes")
            .to_bytes();
        let expected: String = (1..20).map(|i| format!("chunk {i}\n")).collect();
        assert_eq!(
            String::from_utf8_lossy(&rest),
            expected,
            "{}",
            client.version
        );
    }
}

#[tokio::test]
async fn a_broken_file_never_replaces_a_working_version() {
    let routes = Routes::new().with("r.wasm", "hello_v1");
    let file = routes.path().join("r.wasm");
    let server = Server::start(routes.path()).await;
    let client = server.http1();
    let v2 = v2();
    for (broken, error) in [
        (&v2[..v2.len() / 2], "r.wasm: invalid component"),
        (
            &b"hello, not a component"[..],
            "r.wasm: is not a WebAssembly component",
        ),
    ] {
        rename_into_place(&file, broken);
        server.log.wait_for(error).await;
        server
            .log
            .wait_for("new version failed to load; still serving version")
            .await;
        let answer = client.get("/r").await;
        assert_eq!((answer.status().as_u16(), text(&answer)), (200, "v1"));
    }
    // Fixing the file is picked up.
    rename_into_place(&file, &v2);
    eventually(&client, "/r", 200, "v2").await;
    // A brand-new broken file answers 500 until fixed.
    rename_into_place(&routes.path().join("new.wasm"), b"\0asm\x01\0\0\0");
    eventually(&client, "/new", 500, "route failed to load\n").await;
    server.log.wait_for("new.wasm: is a core wasm module").await;
    rename_into_place(&routes.path().join("new.wasm"), &v2);
    eventually(&client, "/new", 200, "v2").await;
}

#[tokio::test]
async fn a_file_written_in_place_keeps_its_version_until_it_is_filled() {
    let routes = Routes::new()
        .with("r.wasm", "hello_v1")
        .with_bytes("r.toml", br#"methods = ["GET"]"#);
    let server = Server::start(routes.path()).await;
    let client = server.http1();
    assert_eq!(client.post("/r", "x").await.status(), 405);
    // Truncated, then filled a moment later, as `>`, `cp` and most editors
    // write. Rescans run while it is empty: an empty sidecar would mean the
    // defaults (every method), an empty `.wasm` a load error.
    let sidecar = b"methods = [\"GET\"]\ntimeout = \"5s\"\n".to_vec();
    for (file, content, body) in [("r.toml", sidecar, "v1"), ("r.wasm", v2(), "v2")] {
        let mut emptied = std::fs::File::create(routes.path().join(file)).expect("truncate");
        let until = Instant::now() + Duration::from_millis(300);
        while Instant::now() < until {
            let answer = client.get("/r").await;
            assert_eq!(
                (answer.status().as_u16(), text(&answer)),
                (200, "v1"),
                "{file} empty"
            );
            assert_eq!(client.post("/r", "x").await.status(), 405, "{file} empty");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        emptied.write_all(&content).expect("fill");
        drop(emptied);
        eventually(&client, "/r", 200, body).await;
        assert_eq!(client.post("/r", "x").await.status(), 405);
    }
    assert!(
        !server.log.text().contains("is not a WebAssembly component"),
        "the empty .wasm was loaded:\n{}",
        server.log.text()
    );
    // A sidecar that stays empty means the defaults: every method.
    std::fs::File::create(routes.path().join("r.toml")).expect("truncate");
    eventually_post_ok(&client, "/r").await;
}

#[tokio::test]
async fn files_arriving_every_way_update_the_table() {
    let routes = Routes::new().with("r.wasm", "hello_v1");
    let dir = routes.path();
    let server = Server::start(dir).await;
    let client = server.http1();

    // A large component copied over in pieces, as a slow `cp` writes it.
    let mut large = v2();
    large.extend(custom_section("padding", &vec![0u8; 8 << 20]));
    let mut file = std::fs::File::create(dir.join("r.wasm")).unwrap();
    for piece in large.chunks(512 << 10) {
        std::io::Write::write_all(&mut file, piece).unwrap();
        std::io::Write::flush(&mut file).unwrap();
        let answer = client.get("/r").await;
        assert_eq!(answer.status(), 200, "mid-copy");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(file);
    eventually(&client, "/r", 200, "v2").await;

    // Delete: the route is gone.
    std::fs::remove_file(dir.join("r.wasm")).unwrap();
    eventually(&client, "/r", 404, "not found\n").await;

    // A nested folder with dynamic segments, moved in whole, then removed.
    let staging = dir.join("_staging/shop/[cat]");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("[item].wasm"), v1()).unwrap();
    std::fs::rename(dir.join("_staging/shop"), dir.join("shop")).unwrap();
    eventually(&client, "/shop/toys/car", 200, "v1").await;
    std::fs::remove_dir_all(dir.join("shop")).unwrap();
    eventually(&client, "/shop/toys/car", 404, "not found\n").await;

    // Editors' temp and swap files are not routes.
    rename_into_place(&dir.join("r.wasm"), &v1());
    eventually(&client, "/r", 200, "v1").await;
    let temps = [
        ".r.wasm.swp",
        "r.wasm~",
        "4913",
        "#r.wasm#",
        ".#r.wasm",
        "r.wasm.orig",
    ];
    for temp in temps {
        std::fs::write(dir.join(temp), b"editor junk").unwrap();
    }
    // A marker file after them: once it serves, they have been scanned.
    rename_into_place(&dir.join("marker.wasm"), &v2());
    eventually(&client, "/marker", 200, "v2").await;
    let log = server.log.text();
    for temp in temps {
        // As a path (`file=…/4913`, `route=/4913`): a bare `4913` can be
        // part of a timestamp or a request id.
        let as_path = format!("/{temp}");
        assert!(
            !log.contains(&as_path),
            "{temp} was taken for a route:\n{log}"
        );
    }
    assert_eq!(text(&client.get("/r").await), "v1");
}

#[tokio::test]
async fn the_kubernetes_data_symlink_swap_is_picked_up() {
    let routes = Routes::new().with("..2026_01/hello.wasm", "hello_v1");
    let dir = routes.path();
    std::os::unix::fs::symlink("..2026_01", dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/hello.wasm", dir.join("hello.wasm")).unwrap();
    let server = Server::start(dir).await;
    let client = server.http1();
    eventually(&client, "/hello", 200, "v1").await;
    // What the kubelet does: write the new version beside the old, point a
    // temporary symlink at it, rename that over `..data`, remove the old.
    std::fs::create_dir(dir.join("..2026_02")).unwrap();
    std::fs::write(dir.join("..2026_02/hello.wasm"), v2()).unwrap();
    std::os::unix::fs::symlink("..2026_02", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join("..2026_01")).unwrap();
    eventually(&client, "/hello", 200, "v2").await;
}

#[tokio::test]
async fn a_restart_loads_from_the_cache_without_compiling() {
    let routes = Routes::new()
        .with("a.wasm", "hello_v1")
        .with("b.wasm", "inspect");
    let cache = tempfile::tempdir().unwrap();
    let args = [
        "--cache-dir".as_ref(),
        cache.path().as_os_str(),
        "--no-watch".as_ref(),
    ];

    let first = Server::start_with(routes.path(), &args).await;
    assert_eq!(text(&first.http1().get("/a").await), "v1");
    let log = first.log.text();
    assert_eq!(log.matches("(compiled in").count(), 2, "{log}");
    assert_eq!(first.stop().await, 0);

    let second = Server::start_with(routes.path(), &args).await;
    assert_eq!(text(&second.http1().get("/a").await), "v1");
    let log = second.log.text();
    assert_eq!(log.matches("(from cache in").count(), 2, "{log}");
    assert!(!log.contains("(compiled in"), "{log}");
    assert_eq!(second.stop().await, 0);

    // A corrupted entry is detected, not loaded, and recompiled.
    let entry = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .unwrap();
    let mut bytes = std::fs::read(&entry).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&entry, bytes).unwrap();
    let third = Server::start_with(routes.path(), &args).await;
    assert_eq!(third.http1().get("/a").await.status(), 200);
    assert_eq!(third.http1().get("/b").await.status(), 200);
    let log = third.log.text();
    assert!(log.contains("is corrupt (checksum mismatch)"), "{log}");
    assert_eq!(log.matches("(compiled in").count(), 1, "{log}");
    assert_eq!(log.matches("(from cache in").count(), 1, "{log}");
}

#[tokio::test]
async fn a_cache_folder_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let routes = Routes::new().with("a.wasm", "hello_v1");
    let cache = tempfile::tempdir().unwrap();
    std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let args = [
        "serve".as_ref(),
        routes.path().as_os_str(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--cache-dir".as_ref(),
        cache.path().as_os_str(),
    ];
    let (code, _, stderr) = crate::harness::run_wedge(&args).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("is writable by other users"), "{stderr}");
    assert!(
        stderr.contains(&format!("chmod 700 {}", cache.path().display())),
        "{stderr}"
    );
}

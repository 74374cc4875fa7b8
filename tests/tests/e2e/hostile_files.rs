//! Hostile files in the routes folder (FIFOs, devices, huge files, symlinks
//! out of the tree, files dated in the future) and a compile cache others
//! could write: each costs its own route at most, never the server.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use wedge_toolchains::custom_section;

use crate::harness::{Http, Routes, Server, guest, run_wedge, text};
use crate::reload::eventually_post_ok;

/// Longest a first load may take here before the server counts as stuck:
/// as long as the harness waits for any start (two dozen cold compiles on a
/// machine busy with other builds can take a minute).
const STUCK: Duration = Duration::from_secs(120);

fn mkfifo(path: &Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo {}", path.display());
}

/// Starts a server on `routes` with `args`, failing the test if its first
/// load does not finish within [`STUCK`].
async fn start(routes: &Path, args: &[&OsStr]) -> Server {
    tokio::time::timeout(STUCK, Server::start_with(routes, args))
        .await
        .unwrap_or_else(|_| panic!("the first load of {} never finished", routes.display()))
}

/// Waits until `GET path` answers `status` (and `body`, if given); panics after 10 s.
async fn eventually(client: &Http, path: &str, status: u16, body: Option<&str>) {
    let mut last = None;
    for _ in 0..1000 {
        let answer = client.get(path).await;
        if answer.status() == status && body.is_none_or(|body| text(&answer) == body) {
            return;
        }
        last = Some((answer.status(), answer.body().clone()));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("GET {path} never answered {status} {body:?}; last: {last:?}");
}

#[tokio::test]
async fn fifos_and_devices_are_load_errors_and_the_rest_serves() {
    let routes = Routes::new()
        .with("a.wasm", "hello_v1")
        .with("b.wasm", "hello_v2")
        .with("z.wasm", "hello_v2");
    let dir = routes.path();
    // A FIFO sidecar blocked the first load (and /readyz) forever; one
    // linked to /dev/zero read until the server ran out of memory.
    mkfifo(&dir.join("a.toml"));
    std::os::unix::fs::symlink("/dev/zero", dir.join("z.toml")).unwrap();
    mkfifo(&dir.join("pipe.wasm"));
    let server = start(dir, &["--admin".as_ref(), "127.0.0.1:0".as_ref()]).await;
    assert_eq!(server.admin().get("/readyz").await.status(), 200);
    let client = server.http1();
    assert_eq!(text(&client.get("/b").await), "v2");
    for path in ["/a", "/z", "/pipe"] {
        assert_eq!(client.get(path).await.status(), 500, "{path}");
    }
    let log = server.log.text();
    for (file, kind) in [
        ("a.toml", "a FIFO (named pipe)"),
        ("z.toml", "a character device"),
        ("pipe.wasm", "a FIFO (named pipe)"),
    ] {
        let expected = format!("{file}: is {kind}, not a regular file");
        assert!(log.contains(&expected), "{expected}\n{log}");
    }
    assert!(log.contains("replace it with a file or remove it"), "{log}");
}

#[tokio::test]
async fn a_fifo_arriving_during_a_reload_does_not_stop_later_reloads() {
    let routes = Routes::new().with("a.wasm", "hello_v1");
    let dir = routes.path();
    let server = start(dir, &[]).await;
    let client = server.http1();
    // A reload that met the FIFO blocked on it, holding the reload lock:
    // the file after it, and every later change, never loaded.
    mkfifo(&dir.join("a.toml"));
    std::fs::write(
        dir.join("c.wasm"),
        std::fs::read(guest("hello_v2")).unwrap(),
    )
    .unwrap();
    eventually(&client, "/c", 200, Some("v2")).await;
    server.log.wait_for("a.toml: is a FIFO").await;
    std::fs::write(
        dir.join("d.wasm"),
        std::fs::read(guest("hello_v2")).unwrap(),
    )
    .unwrap();
    eventually(&client, "/d", 200, Some("v2")).await;
    // The working version stays beside its broken sidecar.
    assert_eq!(text(&client.get("/a").await), "v1");
}

#[tokio::test]
async fn files_over_their_size_cap_are_load_errors_and_the_rest_serves() {
    let mut large = std::fs::read(guest("hello_v1")).unwrap();
    large.extend(custom_section("padding", &vec![0u8; 2 << 20]));
    let routes = Routes::new()
        .with_bytes("large.wasm", &large)
        .with("sidecar.wasm", "hello_v1")
        .with_bytes("sidecar.toml", &vec![b'#'; (1 << 20) + 1])
        .with("ok.wasm", "hello_v2");
    let dir = routes.path();
    let server = start(dir, &["--max-wasm-size".as_ref(), "1MiB".as_ref()]).await;
    let client = server.http1();
    assert_eq!(text(&client.get("/ok").await), "v2");
    assert_eq!(client.get("/large").await.status(), 500);
    assert_eq!(client.get("/sidecar").await.status(), 500);
    let log = server.log.text();
    let wasm = format!(
        "large.wasm: is {} bytes, over the 1.0 MiB cap of --max-wasm-size; raise \
         --max-wasm-size",
        large.len()
    );
    assert!(log.contains(&wasm), "{wasm}\n{log}");
    let sidecar = format!(
        "sidecar.toml: is {} bytes, over the 1.0 MiB cap of --max-sidecar-size",
        (1 << 20) + 1
    );
    assert!(log.contains(&sidecar), "{sidecar}\n{log}");

    // A file that grows over its cap while served: the old version stays.
    std::fs::write(dir.join("ok.wasm"), &large).unwrap();
    server
        .log
        .wait_for("new version failed to load; still serving version")
        .await;
    assert_eq!(text(&client.get("/ok").await), "v2");
}

#[tokio::test]
async fn an_oversized_config_or_env_file_is_refused() {
    let routes = Routes::new().with("a.wasm", "hello_v1");
    let settings = tempfile::tempdir().unwrap();
    let big = settings.path().join("big");
    std::fs::write(&big, vec![b'#'; 4096]).unwrap();
    for flag in ["--config", "--env-file"] {
        let args = [
            "routes".as_ref(),
            routes.path().as_os_str(),
            flag.as_ref(),
            big.as_os_str(),
            "--max-sidecar-size".as_ref(),
            "1KiB".as_ref(),
        ];
        let (code, _, stderr) = run_wedge(&args).await;
        assert_eq!(code, 1, "{flag}: {stderr}");
        assert!(
            stderr.contains("is 4096 bytes, over the 1.0 KiB cap of --max-sidecar-size"),
            "{flag}: {stderr}"
        );
    }
}

#[tokio::test]
async fn a_folder_symlink_out_of_the_routes_folder_is_not_followed() {
    let outside = Routes::new().with("secret.wasm", "hello_v2");
    let routes = Routes::new()
        .with("ok.wasm", "hello_v1")
        .with("inner/page.wasm", "hello_v2");
    let dir = routes.path();
    std::os::unix::fs::symlink(outside.path(), dir.join("ext")).unwrap();
    // Inside the tree: followed.
    std::os::unix::fs::symlink("inner", dir.join("alias")).unwrap();
    // A loop: reported, never followed round.
    std::os::unix::fs::symlink(".", dir.join("inner/loop")).unwrap();
    // A symlinked file may point anywhere.
    std::os::unix::fs::symlink(outside.path().join("secret.wasm"), dir.join("file.wasm")).unwrap();
    let server = start(dir, &[]).await;
    let client = server.http1();
    assert_eq!(client.get("/ext/secret").await.status(), 404);
    assert_eq!(text(&client.get("/ok").await), "v1");
    assert_eq!(text(&client.get("/alias/page").await), "v2");
    assert_eq!(text(&client.get("/inner/page").await), "v2");
    assert_eq!(text(&client.get("/file").await), "v2");
    let log = server.log.text();
    let target = std::fs::canonicalize(outside.path()).unwrap();
    let expected = format!(
        "{}: a symlink to the folder {}, outside the routes folder",
        dir.join("ext").display(),
        target.display()
    );
    assert!(log.contains(&expected), "{expected}\n{log}");
    assert!(log.contains("File system loop found"), "{log}");
}

/// How many rescans the server has logged.
fn rescans(server: &Server) -> usize {
    server.log.text().matches("rescanning").count()
}

#[tokio::test]
async fn empty_files_dated_in_the_future_settle_and_rescans_stop() {
    let routes = Routes::new()
        .with("r.wasm", "hello_v1")
        .with_bytes("r.toml", br#"methods = ["GET"]"#);
    let dir = routes.path();
    let server = start(dir, &[]).await;
    let client = server.http1();
    assert_eq!(client.post("/r", "x").await.status(), 405);
    let future = SystemTime::now() + Duration::from_secs(3600);
    for file in ["r.toml", "empty.wasm"] {
        let emptied = std::fs::File::create(dir.join(file)).unwrap();
        emptied.set_modified(future).unwrap();
    }
    // Empty for SETTLE: taken as it is, whatever its date. An empty
    // sidecar means the defaults (every method); an empty .wasm fails.
    eventually_post_ok(&client, "/r").await;
    server
        .log
        .wait_for("empty.wasm: is not a WebAssembly component")
        .await;
    // And the reloader stops: no rescan over several SETTLE periods.
    let mut before = rescans(&server);
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = rescans(&server);
        if after == before {
            break;
        }
        before = after;
    }
    // A wait, not a poll: several SETTLE periods that must see no rescan.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = rescans(&server);
    assert_eq!(before, after, "still rescanning:\n{}", server.log.text());
}

#[tokio::test]
async fn a_load_does_not_hold_every_file_at_once() {
    // Distinct 8 MiB components, four per compile thread (at least 24):
    // reading them all before compiling any held 192 MiB or more at once;
    // now each compile thread holds one file at a time.
    const FILE_MIB: u64 = 8;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let files = (4 * threads).max(24);
    let hello = std::fs::read(guest("hello_v1")).unwrap();
    let mut routes = Routes::new();
    for n in 0..files {
        let mut bytes = hello.clone();
        bytes.extend(custom_section(
            "padding",
            &vec![n as u8; (FILE_MIB << 20) as usize],
        ));
        routes = routes.with_bytes(&format!("r{n}.wasm"), &bytes);
    }
    let server = start(routes.path(), &[]).await;
    let client = server.http1();
    assert_eq!(text(&client.get(&format!("/r{}", files - 1)).await), "v1");
    // The server's own ~100 MiB, and twice a file per compile thread (the
    // bytes and what wasmtime builds from them); all the files are more.
    let bound_mib = 96 + 2 * FILE_MIB * threads;
    let peak_mib = server.peak_rss_kib() / 1024;
    assert!(
        peak_mib < bound_mib,
        "peak RSS {peak_mib} MiB (bound {bound_mib}) loading {files} files of {FILE_MIB} MiB"
    );
}

/// `wedge routes` with `--cache-dir cache`: its exit code and stderr.
async fn routes_with_cache(cache: &Path) -> (i32, String) {
    let routes = Routes::new().with("a.wasm", "hello_v1");
    let args = [
        "routes".as_ref(),
        routes.path().as_os_str(),
        "--cache-dir".as_ref(),
        cache.as_os_str(),
    ];
    let (code, _, stderr) = run_wedge(&args).await;
    (code, stderr)
}

#[tokio::test]
async fn a_cache_folder_another_user_owns_or_could_replace_is_refused() {
    let parent = tempfile::tempdir().unwrap();
    let cache = parent.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(routes_with_cache(&cache).await.0, 0);

    // A parent that group members may write: they could swap the folder.
    std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o770)).unwrap();
    let (code, stderr) = routes_with_cache(&cache).await;
    assert_eq!(code, 1, "{stderr}");
    let expected = format!(
        "cache folder {}: the folder {} above it is writable by other users (mode 770)",
        cache.display(),
        parent.path().display()
    );
    assert!(stderr.contains(&expected), "{expected}\n{stderr}");
    assert!(stderr.contains("--cache-dir"), "{stderr}");
    std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o700)).unwrap();

    // Owned by another user (nobody): its `.cwasm` files would be theirs.
    if wedge_runs_as_root() {
        std::os::unix::fs::chown(&cache, Some(65534), Some(65534)).unwrap();
        let (code, stderr) = routes_with_cache(&cache).await;
        assert_eq!(code, 1, "{stderr}");
        let expected = format!(
            "cache folder {}: {} is owned by another user (uid 65534)",
            cache.display(),
            cache.display()
        );
        assert!(stderr.contains(&expected), "{expected}\n{stderr}");
        assert!(stderr.contains("pass --cache-dir"), "{stderr}");
    } else {
        eprintln!("skipped the other-owner case: only root can give a folder away");
    }
}

/// Whether this test (and so the server it starts) runs as root.
fn wedge_runs_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    let probe = tempfile::tempfile().expect("create a file");
    probe.metadata().expect("stat it").uid() == 0
}

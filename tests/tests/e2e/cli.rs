//! `wedge routes` and `wedge serve` start-up errors: output and exit codes.

use std::ffi::OsStr;

use crate::harness::{Routes, Server, run_wedge};

#[tokio::test]
async fn routes_lists_every_route_and_exits_zero() {
    let routes = Routes::new()
        .with("index.wasm", "inspect")
        .with("api/users/[id].wasm", "inspect")
        .with("blog/[...slug].wasm", "inspect");
    let (code, stdout, stderr) =
        run_wedge(&[OsStr::new("routes"), routes.path().as_os_str()]).await;
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let expected = "routes (3):\n\
        \x20 /api/users/[id]  api/users/[id].wasm\n\
        \x20 /blog/[...slug]  blog/[...slug].wasm\n\
        \x20 /                index.wasm\n";
    assert_eq!(stdout, expected);
}

#[tokio::test]
async fn routes_exits_non_zero_naming_each_failing_file() {
    let routes = Routes::new()
        .with("good.wasm", "inspect")
        .with_bytes("junk.wasm", b"\x7fELF")
        .with("command.wasm", "not_http")
        .with("dup.wasm", "inspect")
        .with("dup/index.wasm", "inspect")
        .with("[id].wasm", "inspect")
        .with("[slug]/edit.wasm", "inspect")
        .with("bad[name.wasm", "inspect");
    let (code, stdout, stderr) =
        run_wedge(&[OsStr::new("routes"), routes.path().as_os_str()]).await;
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    for expected in [
        "junk.wasm: is not a WebAssembly component",
        "command.wasm: does not export wasi:http/incoming-handler",
        "dup/index.wasm conflicts with",
        "dup.wasm (/dup): both serve the same route",
        "[slug]/edit.wasm conflicts with",
        "different param names at one level",
        "bad[name.wasm: `bad[name` is not a valid segment",
        "5 route file(s) failed",
    ] {
        assert!(
            stderr.contains(expected),
            "`{expected}` missing from:\n{stderr}"
        );
    }
    let table: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(table.contains(&vec!["/good", "good.wasm"]), "{stdout}");
    assert!(
        table.contains(&vec!["/junk", "junk.wasm", "(failed", "to", "load)"]),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_missing_routes_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let missing = missing.as_os_str();
    let serve = [
        OsStr::new("serve"),
        missing,
        OsStr::new("--listen"),
        OsStr::new("127.0.0.1:0"),
    ];
    let routes = [OsStr::new("routes"), missing];
    for args in [&serve[..], &routes] {
        let command = args[0].to_string_lossy();
        let (code, _, stderr) = run_wedge(args).await;
        assert_eq!(code, 1, "{command}: {stderr}");
        assert!(stderr.contains("routes folder"), "{command}: {stderr}");
        assert!(
            stderr.contains(&*missing.to_string_lossy()),
            "{command}: {stderr}"
        );
    }
}

#[tokio::test]
async fn a_port_in_use_is_a_clear_error() {
    let routes = Routes::new().with("index.wasm", "inspect");
    let server = Server::start(routes.path()).await;
    let addr = server.addr.to_string();
    let args = [
        OsStr::new("serve"),
        routes.path().as_os_str(),
        OsStr::new("--listen"),
        OsStr::new(&addr),
    ];
    let (code, _, stderr) = run_wedge(&args).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(stderr.contains("--listen"), "{stderr}");
}

#[tokio::test]
async fn bad_flags_exit_with_usage_error_2() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["serve", "--listen", "not-an-address"],
            "invalid value 'not-an-address' for '--listen",
        ),
        (
            &["serve", "--threads", "0"],
            "invalid value '0' for '--threads",
        ),
        (&["serve", "--bogus"], "unexpected argument '--bogus'"),
        (&["frobnicate"], "unrecognized subcommand 'frobnicate'"),
    ];
    for (args, expected) in cases {
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        let (code, _, stderr) = run_wedge(&args).await;
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

//! `wedge routes` and `wedge serve` start-up errors: output and exit codes.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::Path;

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
        "command.wasm: exports neither wasi:http/handler@0.3.0 nor wasi:http/incoming-handler",
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

#[tokio::test]
async fn print_config_prints_the_resolved_settings_without_binding_or_reading() {
    // A port in use and files that do not exist: neither is touched.
    let routes = Routes::new().with("index.wasm", "inspect");
    let server = Server::start(routes.path()).await;
    let addr = server.addr.to_string();
    let args = [
        "--log-format",
        "json",
        "serve",
        "/nowhere/routes",
        "--listen",
        &addr,
        "--config",
        "/nowhere/wedge.toml",
        "--tls-cert",
        "/nowhere/cert.pem",
        "--tls-key",
        "/nowhere/key.pem",
        "--max-header-size",
        "16KiB",
        "--print-config",
    ];
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let (code, stdout, stderr) = run_wedge(&args).await;
    assert_eq!(code, 0, "{stderr}");
    let config: serde_json::Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    assert_eq!(config["command"], "serve");
    assert_eq!(config["log_format"], "json");
    assert_eq!(config["routes_dir"], "/nowhere/routes");
    assert_eq!(config["listen"], addr.as_str());
    assert_eq!(config["config"], "/nowhere/wedge.toml");
    assert_eq!(config["tls_cert"], "/nowhere/cert.pem");
    assert_eq!(config["max_header_size"], 16 << 10);
    // Defaults come out resolved.
    assert_eq!(config["header_timeout_ms"], 10_000);
    assert_eq!(config["max_instances"], 1000);
    assert_eq!(config["watch"], true);
    assert_eq!(config["dev"], false);
    assert_eq!(config["data_dir"], ".wedge/data");
}

/// Flags that `--help` does not show, documented all the same: the
/// configuration docs may have a row for each without `--help` listing it.
const HIDDEN_FLAGS: [&str; 1] = ["--print-config"];

#[tokio::test]
async fn every_flag_and_default_in_help_is_in_the_configuration_docs() {
    let docs_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
    let docs = std::fs::read_to_string(&docs_file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", docs_file.display()));
    let rows = documented_flags(&docs);
    assert!(
        rows.len() > 10,
        "found only {} `| `--flag` | default | what it does |` rows in docs/configuration.md",
        rows.len()
    );
    let mut in_help = BTreeSet::new();
    for command in ["serve", "dev", "routes"] {
        let (code, help, stderr) = run_wedge(&[OsStr::new(command), OsStr::new("--help")]).await;
        assert_eq!(code, 0, "wedge {command} --help: {stderr}");
        let flags = help_flags(&help);
        assert!(
            flags.iter().any(|(flag, _)| flag == "--cache-dir"),
            "no flags parsed from `wedge {command} --help`:\n{help}"
        );
        for (flag, default) in flags {
            if flag == "--help" || flag == "--version" {
                continue;
            }
            let expected = default.unwrap_or_else(|| "—".to_owned());
            let Some(documented) = rows.get(&flag) else {
                panic!(
                    "`wedge {command} --help` lists `{flag}` (default: {expected}), but \
                     docs/configuration.md has no row for it: add \
                     `| `{flag}` | {expected} | what it does |` to its flag table"
                );
            };
            assert_eq!(
                documented, &expected,
                "docs/configuration.md gives `{flag}` the default `{documented}`, but \
                 `wedge {command} --help` says `{expected}`: fix the row's Default column"
            );
            in_help.insert(flag);
        }
    }
    for flag in rows.keys() {
        assert!(
            in_help.contains(flag) || HIDDEN_FLAGS.contains(&flag.as_str()),
            "docs/configuration.md has a row for `{flag}`, which no `wedge serve|dev|routes \
             --help` lists: remove or fix the row (or, for a hidden flag, add it to \
             HIDDEN_FLAGS in tests/tests/e2e/cli.rs)"
        );
    }
    for flag in HIDDEN_FLAGS {
        assert!(
            rows.contains_key(flag),
            "the hidden flag `{flag}` has no row in docs/configuration.md: add one"
        );
    }
}

/// The flag table rows of the docs, `| `--flag` | default | what it does |`:
/// each flag with its default (backticks dropped; `—` for none).
fn documented_flags(docs: &str) -> BTreeMap<String, String> {
    let mut rows = BTreeMap::new();
    for line in docs.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // `| a | b | c |` splits into "", "a", "b", "c", "".
        if cells.len() < 5 || !cells[0].is_empty() || !cells[1].starts_with("`--") {
            continue;
        }
        let flag = cells[1].trim_matches('`').to_owned();
        let default = words(cells[2].trim_matches('`'));
        if let Some(earlier) = rows.insert(flag.clone(), default.clone()) {
            assert_eq!(
                earlier, default,
                "docs/configuration.md has two rows for `{flag}` with different defaults"
            );
        }
    }
    rows
}

/// Every long flag of a `--help` text with the `[default: …]` of its
/// description, if it has one. A flag's description runs from its own line
/// to the next flag's line or section heading, over as many lines as clap
/// wraps it to.
fn help_flags(help: &str) -> Vec<(String, Option<String>)> {
    let mut flags: Vec<(String, String)> = Vec::new();
    let mut in_flag = false;
    for line in help.lines() {
        if let Some(flag) = flag_of(line) {
            flags.push((flag, line.to_owned()));
            in_flag = true;
        } else if !line.starts_with(char::is_whitespace) && !line.trim().is_empty() {
            // A heading (`Options:`) ends the flag before it.
            in_flag = false;
        } else if in_flag && let Some((_, text)) = flags.last_mut() {
            text.push(' ');
            text.push_str(line.trim());
        }
    }
    flags
        .into_iter()
        .map(|(flag, text)| {
            let default = text
                .split_once("[default: ")
                .and_then(|(_, rest)| rest.split_once(']').map(|(value, _)| words(value)));
            (flag, default)
        })
        .collect()
}

/// The long flag a `--help` line starts, as in `  -h, --help` or
/// `      --listen <LISTEN>`. Descriptions are indented further, and a
/// possible value's line (`- pretty: …`) has a space after its dash.
fn flag_of(line: &str) -> Option<String> {
    let text = line.trim_start();
    let indent = line.len() - text.len();
    let mut chars = text.chars();
    let starts_flag = chars.next() == Some('-')
        && chars
            .next()
            .is_some_and(|c| c == '-' || c.is_ascii_alphanumeric());
    if indent == 0 || indent > 8 || !starts_flag {
        return None;
    }
    text.split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '<' || c == '[')
        .find(|word| word.len() > 2 && word.starts_with("--"))
        .map(str::to_owned)
}

/// `text` with its runs of whitespace made single spaces.
fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

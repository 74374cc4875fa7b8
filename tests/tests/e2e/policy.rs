//! The operator's policy over sidecars: which host variables `${NAME}` may
//! read (`--env-allow`, `env_allow`), and `[limits]` ceilings in `--config`.

use std::ffi::OsStr;

use crate::harness::{Routes, Server, json, run_wedge, text};

/// The start-up warning when no allow-list is given.
const EVERY_VARIABLE_WARNING: &str = "every host variable is readable by every sidecar";

/// Waits until the server has logged a request after its start-up, so that
/// everything it logs while starting is in `server.log`; returns the log.
async fn log_after_start(server: &Server) -> String {
    let answer = server.http1().get("/policy-probe-not-a-route").await;
    assert_eq!(answer.status(), 404);
    server.log.wait_for("/policy-probe-not-a-route").await
}

fn write_temp(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("create a temp file");
    std::fs::write(file.path(), text).expect("write the temp file");
    file
}

#[tokio::test]
async fn a_sidecar_reading_a_variable_off_the_allow_list_fails_to_load_naming_it() {
    let routes = Routes::new()
        .with("weather.wasm", "env_dump")
        .with_bytes(
            "weather.toml",
            b"[env]\nKEY = \"${WEATHER_KEY}\"\nCITY = \"${WEATHER_CITY}\"\n",
        )
        .with("stolen.wasm", "env_dump")
        .with_bytes(
            "stolen.toml",
            b"[env]\nPW = \"pw=${WEDGE_TEST_DB_PASSWORD}\"\n",
        )
        .with("from_file.wasm", "env_dump")
        .with_bytes("from_file.toml", b"[env]\nT = \"${FILE_TOKEN}\"\n");
    // The list applies to --env-file variables too.
    let env_file = write_temp("WEATHER_CITY=Oslo\nFILE_TOKEN=file-secret-value\n");
    let config = write_temp("env_allow = [\"WEATHER_CITY\"]\n");
    let args = [
        "--env-allow".as_ref(),
        "WEATHER_K*".as_ref(),
        "--env-file".as_ref(),
        env_file.path().as_os_str(),
        "--config".as_ref(),
        config.path().as_os_str(),
    ];
    let env = [
        ("WEATHER_KEY", "w-key"),
        ("WEDGE_TEST_DB_PASSWORD", "hunter2-db-secret"),
    ];
    let server = Server::start_with_env(routes.path(), &args, &env).await;
    let client = server.http1();

    // Allowed by the flag (WEATHER_KEY) and by the config file (WEATHER_CITY).
    let seen = json(&client.get("/weather").await);
    assert_eq!(seen, serde_json::json!({"KEY": "w-key", "CITY": "Oslo"}));

    for (route, sidecar, name) in [
        ("/stolen", "stolen.toml", "WEDGE_TEST_DB_PASSWORD"),
        ("/from_file", "from_file.toml", "FILE_TOKEN"),
    ] {
        let answer = client.get(route).await;
        assert_eq!(
            (answer.status().as_u16(), text(&answer)),
            (500, "route failed to load\n"),
            "{route}"
        );
        let log = server.log.wait_for(sidecar).await;
        let line = log
            .lines()
            .find(|line| line.contains(sidecar))
            .expect("a line names the sidecar");
        for fragment in [name, "--env-allow", "allow-list"] {
            assert!(line.contains(fragment), "`{fragment}` missing from: {line}");
        }
    }
    let log = log_after_start(&server).await;
    for secret in ["hunter2-db-secret", "file-secret-value", "w-key"] {
        assert!(!log.contains(secret), "a secret reached the log:\n{log}");
    }
    assert!(
        !log.contains(EVERY_VARIABLE_WARNING),
        "warned despite a list:\n{log}"
    );
}

#[tokio::test]
async fn serve_without_an_allow_list_warns_once_but_dev_does_not() {
    let routes = Routes::new()
        .with("env.wasm", "env_dump")
        .with_bytes("env.toml", b"[env]\nANY = \"${WEDGE_TEST_ANY}\"\n");
    let env = [("WEDGE_TEST_ANY", "still-readable")];

    // Today's behaviour stays: any variable, with a warning at start-up.
    let server = Server::start_with_env(routes.path(), &[], &env).await;
    assert_eq!(
        json(&server.http1().get("/env").await),
        serde_json::json!({"ANY": "still-readable"})
    );
    let log = log_after_start(&server).await;
    assert_eq!(
        log.matches(EVERY_VARIABLE_WARNING).count(),
        1,
        "one warning expected:\n{log}"
    );
    assert!(log.contains("--env-allow"), "{log}");

    // Not with --dev, nor in `wedge dev`: a developer's own machine.
    let dev_flag = Server::start_with_env(routes.path(), &["--dev".as_ref()], &env).await;
    let dev_cmd = Server::start_dev(routes.path(), &[], &[("WEDGE_TEST_ANY", Some("x"))]).await;
    for server in [&dev_flag, &dev_cmd] {
        let log = log_after_start(server).await;
        assert!(!log.contains(EVERY_VARIABLE_WARNING), "{log}");
    }
}

#[tokio::test]
async fn limits_in_the_config_are_ceilings_for_sidecars() {
    let routes = Routes::new()
        .with("over.wasm", "inspect")
        .with_bytes("over.toml", b"timeout = \"5s\"\n")
        .with("cpu.wasm", "inspect")
        .with_bytes("cpu.toml", b"cpu_time = \"3s\"\n")
        .with("outbound.wasm", "inspect")
        .with_bytes("outbound.toml", b"max_outbound_connections = 100\n")
        .with("within.wasm", "inspect")
        .with_bytes("within.toml", b"timeout = \"1s\"\n")
        .with("plain.wasm", "inspect");
    let config = write_temp(
        "[limits]\ntimeout = \"1s\"\ncpu_time = \"2s\"\nmax_body = 10\n\
         max_outbound_connections = 50\n",
    );
    let args = [
        "--config".as_ref(),
        config.path().as_os_str(),
        "--admin".as_ref(),
        "127.0.0.1:0".as_ref(),
    ];
    let server = Server::start_with(routes.path(), &args).await;
    let client = server.http1();

    for (route, sidecar, expected) in [
        (
            "/over",
            "over.toml",
            "`timeout`: \"5s\" is over the server's ceiling `limits.timeout = \"1s\"`",
        ),
        (
            "/cpu",
            "cpu.toml",
            "`cpu_time`: \"3s\" is over the server's ceiling `limits.cpu_time = \"2s\"`",
        ),
        (
            "/outbound",
            "outbound.toml",
            "`max_outbound_connections`: 100 is over the server's ceiling \
             `limits.max_outbound_connections = 50`",
        ),
    ] {
        let answer = client.get(route).await;
        assert_eq!(answer.status(), 500, "{route}");
        let log = server.log.wait_for(sidecar).await;
        let line = log.lines().find(|line| line.contains(sidecar)).unwrap();
        assert!(line.contains(expected), "{route}: {line}");
        assert!(
            line.contains(&config.path().display().to_string()),
            "{line}"
        );
    }
    assert_eq!(client.get("/within").await.status(), 200);
    // A built-in default over a ceiling is brought down to it, and
    // `cpu_time` follows the route's timeout; /routes shows both.
    assert_eq!(client.post("/plain", "ten bytes!").await.status(), 200);
    assert_eq!(client.post("/plain", "eleven byte").await.status(), 413);
    let routes = json(&server.admin().get("/routes").await);
    let plain = routes
        .as_array()
        .expect("/routes is an array")
        .iter()
        .find(|route| route["pattern"] == "/plain")
        .expect("/plain in /routes");
    let settings = &plain["settings"];
    assert_eq!(settings["timeout"], "1s", "{settings}");
    assert_eq!(settings["cpu_time"], "1s", "{settings}");
    assert_eq!(settings["max_body"], 10, "{settings}");
    assert_eq!(settings["max_outbound_connections"], 50, "{settings}");
}

#[tokio::test]
async fn defaults_over_a_ceiling_or_an_absurd_duration_stop_the_start() {
    let routes = Routes::new().with("plain.wasm", "inspect");
    for (config, expected) in [
        (
            "[defaults]\ntimeout = \"2m\"\n[limits]\ntimeout = \"1m\"\n",
            "`defaults.timeout`: \"2m\" is over `limits.timeout = \"1m\"` in this file",
        ),
        (
            "[defaults]\ntimeout = \"100y\"\n",
            "`defaults.timeout`: \"100y\" is more than the most allowed, \"1day\"",
        ),
        (
            "env_allow = [\"A B\"]\n",
            "`env_allow`: invalid variable pattern \"A B\"",
        ),
    ] {
        let file = write_temp(config);
        let (code, _, stderr) = run_wedge(&[
            OsStr::new("serve"),
            routes.path().as_os_str(),
            OsStr::new("--listen"),
            OsStr::new("127.0.0.1:0"),
            OsStr::new("--config"),
            file.path().as_os_str(),
        ])
        .await;
        assert_eq!(code, 1, "{config}: {stderr}");
        assert!(stderr.contains(expected), "{config}: {stderr}");
        assert!(
            stderr.contains(&file.path().display().to_string()),
            "{stderr}"
        );
    }
    let (code, _, stderr) = run_wedge(&[
        OsStr::new("serve"),
        routes.path().as_os_str(),
        OsStr::new("--env-allow"),
        OsStr::new("WEATHER_{A,B}"),
    ])
    .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("--env-allow") && stderr.contains("WEATHER_{A,B}"),
        "{stderr}"
    );
}

/// Replaces `file`'s content at once, as editors and secret managers do
/// (a new file renamed over it), so no reload reads it half-written.
fn replace(file: &std::path::Path, text: &str) {
    let new = file.with_extension("new");
    std::fs::write(&new, text).expect("write the new config");
    std::fs::rename(&new, file).expect("rename it into place");
}

#[tokio::test]
async fn a_config_change_reloads_and_a_broken_config_keeps_the_settings() {
    let routes = Routes::new().with("r.wasm", "inspect");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wedge.toml");
    std::fs::write(&config, "[defaults]\nmethods = [\"GET\"]\n").unwrap();
    let args: [&OsStr; 2] = ["--config".as_ref(), config.as_os_str()];
    let server = Server::start_with(routes.path(), &args).await;
    let client = server.http1();
    assert_eq!(client.post("/r", "x").await.status(), 405);

    // A new [defaults] applies without a restart.
    replace(&config, "[defaults]\nmethods = [\"GET\", \"POST\"]\n");
    crate::reload::eventually_post_ok(&client, "/r").await;

    // A broken one is an error naming the file; the route keeps serving
    // with the settings it had.
    replace(&config, "[defaults]\nmethods = \"GET\"\n");
    let log = server.log.wait_for("still serving version").await;
    assert!(
        log.contains(&config.display().to_string()),
        "the error names the config file:\n{log}"
    );
    assert_eq!(client.post("/r", "x").await.status(), 200);
    assert_eq!(client.get("/r").await.status(), 200);
}

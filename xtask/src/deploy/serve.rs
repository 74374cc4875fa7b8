//! What a place's `wedge` arguments mean, as the host itself says: `wedge
//! serve … --print-config` (or `wedge dev …`) prints the settings it
//! resolved, defaults included, as one JSON object and exits 0, binding no
//! socket and reading no file; arguments it refuses exit 2 with clap's
//! message. [`ServeConfig`] is the part of that object the checks read.
//!
//! The checks of the settings on their own are here; those that tie them
//! to the manifests and the Dockerfile are in [`super::pod`],
//! [`super::manifests`] and [`super::dockerfile`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

use super::under;

/// What a place's `wedge` arguments resolve to, or why wedge refused them:
/// [`resolve`] with the built binary, a fixed value in the tests.
pub(crate) type Resolve<'a> = dyn Fn(&[&str]) -> Result<ServeConfig, String> + 'a;

/// The settings of `wedge … --print-config` that the checks read. It
/// prints more (TLS, proxies, limits not checked here), which is ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct ServeConfig {
    /// `serve`, or `dev`.
    pub(crate) command: String,
    /// `--log-format`: `pretty` or `json`.
    pub(crate) log_format: String,
    /// The routes folder, as given.
    pub(crate) routes_dir: String,
    /// `--listen`.
    pub(crate) listen: SocketAddr,
    /// `--admin`; `None` when the admin listener is off.
    pub(crate) admin: Option<SocketAddr>,
    /// `--cache-dir` as given; `None` is wedge's default, under the user's
    /// cache folder.
    pub(crate) cache_dir: Option<String>,
    /// `--data-dir` as given (default `.wedge/data`, under the working
    /// folder): where the embedded key-value stores are.
    pub(crate) data_dir: String,
    /// `--config` as given: among others, where the key-value stores are.
    pub(crate) config: Option<String>,
    /// `--shutdown-grace`.
    pub(crate) shutdown_grace_ms: u64,
    /// `--shutdown-delay`.
    pub(crate) shutdown_delay_ms: u64,
    /// `--max-instances`.
    pub(crate) max_instances: u64,
    /// `--max-instance-memory`, in bytes.
    pub(crate) max_instance_memory: u64,
}

impl ServeConfig {
    /// Reads what `--print-config` printed.
    pub(crate) fn from_json(printed: Value) -> Result<ServeConfig, String> {
        serde_json::from_value(printed)
            .map_err(|e| format!("xtask cannot read what wedge --print-config printed: {e}"))
    }

    /// The routes folder without a trailing `/`, if it is absolute (and not
    /// `/` itself).
    pub(crate) fn routes(&self) -> Option<&str> {
        absolute(&self.routes_dir)
    }

    /// `--cache-dir` without a trailing `/`, if it is given and absolute.
    pub(crate) fn cache(&self) -> Option<&str> {
        self.cache_dir.as_deref().and_then(absolute)
    }

    /// `--data-dir` without a trailing `/`, if it is absolute.
    pub(crate) fn data(&self) -> Option<&str> {
        absolute(&self.data_dir)
    }
}

fn absolute(path: &str) -> Option<&str> {
    let trimmed = path.trim_end_matches('/');
    (path.starts_with('/') && !trimmed.is_empty()).then_some(trimmed)
}

/// Builds the host's `wedge` binary (dev profile, in the workspace's target
/// dir like every other build of xtask) and returns its path. Called once
/// per check; cargo does nothing when it is up to date.
pub(crate) fn wedge_binary() -> anyhow::Result<PathBuf> {
    // The whole workspace with its test targets, as `cargo test
    // --workspace` builds it: the same features everywhere, so that the
    // tests reuse this build instead of compiling wasmtime a second time.
    let mut build = crate::cargo();
    build.args(["build", "--workspace", "--all-targets"]);
    crate::run(build)?;
    let name = format!("wedge{}", std::env::consts::EXE_SUFFIX);
    Ok(crate::target_dir()?.join("debug").join(name))
}

/// Runs `wedge ARGS --print-config`: the settings wedge resolves from
/// `args` as JSON, or what it printed on stderr (clap's message, exit 2)
/// as the error. `args` are what follows the program name, global flags
/// such as `--log-format` before the subcommand included.
pub(crate) fn print_config(wedge: &Path, args: &[&str]) -> Result<Value, String> {
    let output = Command::new(wedge)
        .args(args)
        .arg("--print-config")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", wedge.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        return Err(if stderr.is_empty() {
            format!("wedge --print-config failed ({})", output.status)
        } else {
            stderr
        });
    }
    serde_json::from_slice(&output.stdout).map_err(|e| {
        format!(
            "wedge --print-config printed no JSON ({e}): {:?}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// [`print_config`], read as a [`ServeConfig`].
pub(crate) fn resolve(wedge: &Path, args: &[&str]) -> Result<ServeConfig, String> {
    print_config(wedge, args).and_then(ServeConfig::from_json)
}

/// The settings' own rules, whatever runs them; `context` names where the
/// arguments came from.
pub(crate) fn check_settings(config: &ServeConfig, context: &str, problems: &mut Vec<String>) {
    check_command(config, context, problems);
    check_routes_dir(config, context, problems);
    check_listeners(config, context, problems);
    check_cache_dir(config, context, problems);
    check_data_dir(config, context, problems);
}

/// The command is `wedge serve`: `wedge dev` rebuilds routes from source
/// and shows every error in full.
fn check_command(config: &ServeConfig, context: &str, problems: &mut Vec<String>) {
    if config.command != "serve" {
        problems.push(format!(
            "{context}: runs `wedge {}`, not `wedge serve`",
            config.command
        ));
    }
}

/// The routes folder is an absolute path, not one relative to whatever
/// working directory the container has.
fn check_routes_dir(config: &ServeConfig, context: &str, problems: &mut Vec<String>) {
    if config.routes().is_none() {
        problems.push(format!(
            "{context}: name the routes folder as an absolute path (`serve /routes`), \
             not {:?}",
            config.routes_dir
        ));
    }
}

/// `--admin` is on (the probes and metrics need it), and neither listener
/// is on loopback, which nothing outside the container reaches.
fn check_listeners(config: &ServeConfig, context: &str, problems: &mut Vec<String>) {
    if config.admin.is_none() {
        problems.push(format!(
            "{context}: no --admin (the probes and metrics need the admin listener)"
        ));
    }
    let listeners = [("--listen", Some(config.listen)), ("--admin", config.admin)];
    for (flag, address) in listeners {
        if let Some(address) = address
            && address.ip().is_loopback()
        {
            problems.push(format!(
                "{context}: {flag} {address} is loopback: unreachable from outside the container"
            ));
        }
    }
}

/// `--cache-dir` is absolute, since the default is under `$HOME`, which is
/// not writable in the image; and outside the routes folder, which wedge
/// watches.
fn check_cache_dir(config: &ServeConfig, context: &str, problems: &mut Vec<String>) {
    let Some(cache) = config.cache() else {
        problems.push(format!(
            "{context}: no absolute --cache-dir (the default is under $HOME, \
             which is not writable in the image)"
        ));
        return;
    };
    if let Some(routes) = config.routes()
        && under(cache, routes)
    {
        problems.push(format!(
            "{context}: --cache-dir {cache} is inside the watched routes folder {routes}"
        ));
    }
}

/// `--data-dir` is absolute, since the default is under the working
/// folder (`/` in the image, not writable) and wedge opens it at every
/// start-up; outside the routes folder, which wedge refuses; and apart
/// from `--cache-dir`: a cache is for throwing away, the stores are not.
fn check_data_dir(config: &ServeConfig, context: &str, problems: &mut Vec<String>) {
    let Some(data) = config.data() else {
        problems.push(format!(
            "{context}: no absolute --data-dir (the default {:?} is under the working \
             folder, / in the image, which is not writable; wedge opens it at every start-up)",
            config.data_dir
        ));
        return;
    };
    if let Some(routes) = config.routes()
        && under(data, routes)
    {
        problems.push(format!(
            "{context}: --data-dir {data} is inside the routes folder {routes}, which wedge refuses"
        ));
    }
    if let Some(cache) = config.cache()
        && (under(data, cache) || under(cache, data))
    {
        problems.push(format!(
            "{context}: --data-dir {data} and --cache-dir {cache} overlap: give each a folder \
             of its own"
        ));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// What `wedge serve /routes --listen=0.0.0.0:3000 --admin=0.0.0.0:9000
    /// --cache-dir=/cache/wedge --data-dir=/data/wedge --log-format=json
    /// --shutdown-delay=5s --max-instances=4 --max-instance-memory=16MiB
    /// --print-config` prints:
    /// the settings the tests' Dockerfile and manifests agree with.
    pub(crate) fn printed() -> Value {
        json!({
            "command": "serve",
            "log_format": "json",
            "routes_dir": "/routes",
            "listen": "0.0.0.0:3000",
            "admin": "0.0.0.0:9000",
            "tls_cert": null, "tls_key": null,
            "trust_proxy": [],
            "watch": true,
            "dev": false,
            "shutdown_grace_ms": 10000,
            "shutdown_delay_ms": 5000,
            "header_timeout_ms": 10000,
            "max_header_size": 65536,
            "max_connections": 10000,
            "threads": null,
            "cache_dir": "/cache/wedge",
            "data_dir": "/data/wedge",
            "config": null, "env_file": null,
            "env_allow": [],
            "max_instances": 4,
            "max_instance_memory": 16777216,
            "max_wasm_size": 268435456,
            "max_sidecar_size": 1048576
        })
    }

    /// [`printed`] with `change` made, read as a [`ServeConfig`].
    pub(crate) fn settings_with(change: impl FnOnce(&mut Value)) -> ServeConfig {
        let mut printed = printed();
        change(&mut printed);
        ServeConfig::from_json(printed).expect("the tests' settings read")
    }

    #[test]
    fn printed_settings_read_with_nulls_and_unknown_fields() {
        let settings = settings_with(|p| {
            p["admin"] = Value::Null;
            p["cache_dir"] = Value::Null;
            p["listen"] = json!("[::]:8080");
        });
        assert_eq!(settings.admin, None);
        assert_eq!(settings.cache(), None);
        assert_eq!(settings.listen.port(), 8080);
        assert_eq!(settings.max_instance_memory, 16 << 20);
        let missing = ServeConfig::from_json(json!({"command": "serve"}));
        assert!(missing.is_err_and(|e| e.contains("missing field")));
    }

    #[test]
    fn only_absolute_folders_count() {
        let settings = settings_with(|p| {
            p["routes_dir"] = json!("/srv/routes/");
            p["cache_dir"] = json!("cache");
        });
        assert_eq!(settings.routes(), Some("/srv/routes"));
        assert_eq!(settings.cache(), None);
        assert_eq!(
            settings_with(|p| p["routes_dir"] = json!("/")).routes(),
            None
        );
    }

    /// A change to the printed settings, and what the problem says.
    type Case = (&'static str, fn(&mut Value));

    #[test]
    fn each_rule_names_the_flag_to_change() {
        let problems = |settings: &ServeConfig| {
            let mut problems = Vec::new();
            check_settings(settings, "here", &mut problems);
            problems
        };
        assert_eq!(problems(&settings_with(|_| {})), Vec::<String>::new());
        let cases: [Case; 9] = [
            ("runs `wedge dev`", |p| p["command"] = json!("dev")),
            ("absolute path", |p| p["routes_dir"] = json!("routes")),
            ("no --admin", |p| p["admin"] = Value::Null),
            ("--listen 127.0.0.1:3000 is loopback", |p| {
                p["listen"] = json!("127.0.0.1:3000");
            }),
            ("no absolute --cache-dir", |p| p["cache_dir"] = Value::Null),
            ("inside the watched routes folder", |p| {
                p["cache_dir"] = json!("/routes/.cache");
            }),
            ("no absolute --data-dir", |p| {
                p["data_dir"] = json!(".wedge/data")
            }),
            ("--data-dir /routes/data is inside the routes folder", |p| {
                p["data_dir"] = json!("/routes/data");
            }),
            (
                "--data-dir /cache/wedge/kv and --cache-dir /cache/wedge overlap",
                |p| {
                    p["data_dir"] = json!("/cache/wedge/kv");
                },
            ),
        ];
        for (expected, change) in cases {
            let problems = problems(&settings_with(change));
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with("here: ") && p.contains(expected)),
                "{expected:?} not in {problems:#?}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn print_config_appends_the_flag_and_reads_stdout_or_stderr() {
        let sh = Path::new("/bin/sh");
        let script = r#"test "$1" = --print-config && echo '{"command": "serve"}'"#;
        assert_eq!(
            print_config(sh, &["-c", script, "sh"]),
            Ok(json!({"command": "serve"}))
        );
        let refusal = "echo \"error: unexpected argument '--nope'\" >&2; exit 2";
        assert_eq!(
            print_config(sh, &["-c", refusal, "sh"]),
            Err("error: unexpected argument '--nope'".to_owned())
        );
        assert!(print_config(sh, &["-c", "echo serving", "sh"]).is_err());
    }
}

//! From a file's text to a validated [`SettingsLayer`]: one check per key,
//! each error naming the key and saying what it allows.
//!
//! The TOML is read into a [`Table`] and walked by hand rather than
//! deserialized into a struct, so that every error carries the dotted key
//! (`build.output`, `env.API_TOKEN`) in [`SettingsError::key`] and says what
//! the key allows in Wedge's words, not serde's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytesize::ByteSize;
use http::Method;
use toml::{Table, Value};

use super::caching;
use super::cors::parse_cors;
use super::env_allow::EnvAllow;
use super::env_template::EnvTemplate;
use super::key_value;
use super::limits::{Limits, Shown, defaults_over};
use super::reuse::parse_reuse;
use super::{
    BuildSettings, ConfigFile, MAX_DURATION, MAX_SIZE, SettingsError, SettingsLayer, is_env_name,
};
use crate::outbound::AllowList;

const SIDECAR_KEYS: &[&str] = &[
    "allowed_outbound_hosts",
    "methods",
    "max_concurrency",
    "timeout",
    "memory",
    "max_body",
    "cpu_time",
    "max_outbound_connections",
    "key_value_stores",
    "dynamic",
    "revalidate",
    "cors",
    "reuse",
    "env",
    "build",
];
const DEFAULTS_KEYS: &[&str] = &[
    "allowed_outbound_hosts",
    "methods",
    "max_concurrency",
    "timeout",
    "memory",
    "max_body",
    "cpu_time",
    "max_outbound_connections",
    "key_value_stores",
    "dynamic",
    "revalidate",
    "cors",
    "reuse",
    "env",
];
const LIMITS_KEYS: &[&str] = &[
    "max_concurrency",
    "timeout",
    "memory",
    "max_body",
    "cpu_time",
    "max_outbound_connections",
];
const CONFIG_KEYS: &[&str] = &["defaults", "limits", "env_allow", "key_value"];
const BUILD_KEYS: &[&str] = &["workdir", "command", "watch", "output"];

/// One WebAssembly page: no module runs with less linear memory.
const MIN_MEMORY: u64 = 64 << 10;

/// RFC 9110's methods, to catch `"get"` (methods are case-sensitive, and a
/// lowercase `get` would never match a client's `GET`).
const STANDARD_METHODS: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::CONNECT,
    Method::OPTIONS,
    Method::TRACE,
    Method::PATCH,
];

const SIZE_FORMS: &str = "an integer (bytes) or a string like \"128MiB\" (KiB, MiB, GiB: powers \
                          of 1024) or \"10MB\" (KB, MB, GB: powers of 1000)";

/// A table's place, for error messages: its file and its keys' dotted prefix.
pub(super) struct Ctx<'a> {
    file: &'a Path,
    prefix: String,
}

impl Ctx<'_> {
    pub(super) fn top(file: &Path) -> Ctx<'_> {
        Ctx {
            file,
            prefix: String::new(),
        }
    }

    pub(super) fn error(&self, key: &str, message: impl Into<String>) -> SettingsError {
        SettingsError::new(self.file, Some(format!("{}{key}", self.prefix)), message)
    }

    pub(super) fn nested(&self, key: &str) -> Ctx<'_> {
        Ctx {
            file: self.file,
            prefix: format!("{}{key}.", self.prefix),
        }
    }

    /// Removes `key` from `table` and checks it with `check`.
    pub(super) fn take<T>(
        &self,
        table: &mut Table,
        key: &str,
        check: fn(Value) -> Result<T, String>,
    ) -> Result<Option<T>, SettingsError> {
        table
            .remove(key)
            .map(check)
            .transpose()
            .map_err(|message| self.error(key, message))
    }

    pub(super) fn reject_unknown(
        &self,
        table: &Table,
        allowed: &[&str],
    ) -> Result<(), SettingsError> {
        match table.keys().find(|key| !allowed.contains(&key.as_str())) {
            Some(key) => Err(self.error(
                key,
                format!("unknown key; allowed here: {}", allowed.join(", ")),
            )),
            None => Ok(()),
        }
    }
}

pub(super) fn parse_sidecar(file: &Path, text: &str) -> Result<SettingsLayer, SettingsError> {
    let ctx = Ctx::top(file);
    parse_layer(&ctx, parse_toml(file, text)?, SIDECAR_KEYS)
}

pub(super) fn parse_config(file: &Path, text: &str) -> Result<ConfigFile, SettingsError> {
    let mut table = parse_toml(file, text)?;
    let ctx = Ctx::top(file);
    ctx.reject_unknown(&table, CONFIG_KEYS)?;
    let defaults = match table.remove("defaults") {
        None => SettingsLayer::default(),
        Some(Value::Table(defaults)) => {
            if defaults.contains_key("build") {
                return Err(ctx.nested("defaults").error(
                    "build",
                    "[build] belongs in a route's sidecar: each route builds its own component",
                ));
            }
            parse_layer(&ctx.nested("defaults"), defaults, DEFAULTS_KEYS)?
        }
        Some(other) => return Err(ctx.error("defaults", wrong_type("a table", &other))),
    };
    let limits = match table.remove("limits") {
        None => Limits::default(),
        Some(Value::Table(limits)) => parse_limits(&ctx.nested("limits"), limits)?,
        Some(other) => return Err(ctx.error("limits", wrong_type("a table", &other))),
    };
    check_defaults(&ctx.nested("defaults"), &defaults, &limits)?;
    let env_allow = ctx.take(&mut table, "env_allow", env_allow)?;
    let key_value = match table.remove("key_value") {
        None => BTreeMap::new(),
        Some(Value::Table(stores)) => key_value::parse(&ctx.nested("key_value"), stores)?,
        Some(other) => {
            return Err(ctx.error(
                "key_value",
                wrong_type("a table of stores ([key_value.NAME])", &other),
            ));
        }
    };
    Ok(ConfigFile {
        defaults,
        limits,
        env_allow,
        key_value,
    })
}

fn parse_limits(ctx: &Ctx<'_>, mut table: Table) -> Result<Limits, SettingsError> {
    ctx.reject_unknown(&table, LIMITS_KEYS)?;
    Ok(Limits {
        timeout: ctx.take(&mut table, "timeout", timeout)?,
        cpu_time: ctx.take(&mut table, "cpu_time", timeout)?,
        memory: ctx.take(&mut table, "memory", memory)?,
        max_body: ctx.take(&mut table, "max_body", bounded_size)?,
        max_concurrency: ctx.take(&mut table, "max_concurrency", count)?,
        max_outbound_connections: ctx.take(&mut table, "max_outbound_connections", count)?,
    })
}

/// `[defaults]` may not exceed `[limits]` in the same file: an error at
/// start-up, before any route loads.
fn check_defaults(
    ctx: &Ctx<'_>,
    defaults: &SettingsLayer,
    limits: &Limits,
) -> Result<(), SettingsError> {
    fn check<T: Shown>(
        ctx: &Ctx<'_>,
        key: &str,
        value: Option<T>,
        ceiling: Option<T>,
    ) -> Result<(), SettingsError> {
        match (value, ceiling) {
            (Some(value), Some(ceiling)) if value > ceiling => {
                Err(ctx.error(key, defaults_over(key, value, ceiling)))
            }
            _ => Ok(()),
        }
    }
    check(ctx, "timeout", defaults.timeout, limits.timeout)?;
    check(ctx, "cpu_time", defaults.cpu_time, limits.cpu_time)?;
    check(ctx, "memory", defaults.memory, limits.memory)?;
    check(ctx, "max_body", defaults.max_body, limits.max_body)?;
    check(
        ctx,
        "max_concurrency",
        defaults.max_concurrency,
        limits.max_concurrency,
    )?;
    check(
        ctx,
        "max_outbound_connections",
        defaults.max_outbound_connections,
        limits.max_outbound_connections,
    )
}

fn env_allow(value: Value) -> Result<Vec<String>, String> {
    const EXPECTED: &str = "a list of variable names or globs, like [\"WEATHER_*\", \"DB_URL\"]";
    let Value::Array(items) = value else {
        return Err(wrong_type(EXPECTED, &value));
    };
    let patterns = items
        .into_iter()
        .map(|item| match item {
            Value::String(pattern) => Ok(pattern),
            other => Err(wrong_type(EXPECTED, &other)),
        })
        .collect::<Result<Vec<_>, _>>()?;
    EnvAllow::new(&patterns).map_err(|error| error.to_string())?;
    Ok(patterns)
}

/// Syntax errors give toml's message and the line and column, never the
/// line's text: it may hold a secret.
fn parse_toml(file: &Path, text: &str) -> Result<Table, SettingsError> {
    text.parse::<Table>().map_err(|error| {
        let at = error.span().map_or(String::new(), |span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: ")
        });
        SettingsError::new(file, None, format!("{at}invalid TOML: {}", error.message()))
    })
}

fn parse_layer(
    ctx: &Ctx<'_>,
    mut table: Table,
    allowed: &[&str],
) -> Result<SettingsLayer, SettingsError> {
    ctx.reject_unknown(&table, allowed)?;
    Ok(SettingsLayer {
        methods: ctx.take(&mut table, "methods", methods)?,
        max_concurrency: ctx.take(&mut table, "max_concurrency", count)?,
        timeout: ctx.take(&mut table, "timeout", timeout)?,
        memory: ctx.take(&mut table, "memory", memory)?,
        max_body: ctx.take(&mut table, "max_body", bounded_size)?,
        cpu_time: ctx.take(&mut table, "cpu_time", timeout)?,
        max_outbound_connections: ctx.take(&mut table, "max_outbound_connections", count)?,
        allowed_outbound_hosts: ctx.take(&mut table, "allowed_outbound_hosts", outbound_hosts)?,
        key_value_stores: ctx.take(&mut table, "key_value_stores", key_value::store_names)?,
        dynamic: ctx.take(&mut table, "dynamic", caching::dynamic)?,
        revalidate: ctx.take(&mut table, "revalidate", caching::revalidate)?,
        cors: match table.remove("cors") {
            None => None,
            Some(Value::Table(cors)) => Some(Arc::new(parse_cors(&ctx.nested("cors"), cors)?)),
            Some(other) => return Err(ctx.error("cors", wrong_type("a table ([cors])", &other))),
        },
        reuse: match table.remove("reuse") {
            None => None,
            Some(value) => Some(parse_reuse(ctx, value)?),
        },
        env: match table.remove("env") {
            None => BTreeMap::new(),
            Some(Value::Table(env)) => parse_env(&ctx.nested("env"), env)?,
            Some(other) => return Err(ctx.error("env", wrong_type("a table ([env])", &other))),
        },
        build: match table.remove("build") {
            None => None,
            Some(Value::Table(build)) => Some(parse_build(&ctx.nested("build"), build)?),
            Some(other) => return Err(ctx.error("build", wrong_type("a table ([build])", &other))),
        },
    })
}

fn outbound_hosts(value: Value) -> Result<AllowList, String> {
    const EXPECTED: &str =
        "a list of \"scheme://host[:port]\" strings, like [\"https://api.example.com\"]";
    let Value::Array(items) = value else {
        return Err(wrong_type(EXPECTED, &value));
    };
    let entries = items
        .into_iter()
        .map(|item| match item {
            Value::String(entry) => Ok(entry),
            other => Err(wrong_type(EXPECTED, &other)),
        })
        .collect::<Result<Vec<_>, _>>()?;
    AllowList::parse(&entries).map_err(|error| error.to_string())
}

/// "must be {expected}; found {what `found` is}".
pub(super) fn wrong_type(expected: &str, found: &Value) -> String {
    let found = match found {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "a list",
        Value::Table(_) => "a table",
    };
    format!("must be {expected}; found {found}")
}

pub(super) fn methods(value: Value) -> Result<Vec<Method>, String> {
    const EXPECTED: &str = "a list of HTTP methods, like [\"GET\", \"POST\"]";
    let Value::Array(items) = value else {
        return Err(wrong_type(EXPECTED, &value));
    };
    if items.is_empty() {
        return Err(
            "an empty list would refuse every request; list the methods to pass to the \
                    guest, or remove the key to pass them all"
                .into(),
        );
    }
    let mut methods = Vec::with_capacity(items.len());
    for item in items {
        let Value::String(name) = item else {
            return Err(wrong_type(EXPECTED, &item));
        };
        let upper = name.to_ascii_uppercase();
        if let Some(standard) = STANDARD_METHODS
            .iter()
            .find(|m| upper != name && m.as_str() == upper)
        {
            return Err(format!(
                "methods are case-sensitive: did you mean {standard}?"
            ));
        }
        let method = Method::from_bytes(name.as_bytes()).map_err(|_| {
            format!(
                "{name:?} is not an HTTP method: one word of letters, digits or !#$%&'*+-.^_`|~"
            )
        })?;
        if methods.contains(&method) {
            return Err(format!("{method} is listed twice"));
        }
        methods.push(method);
    }
    Ok(methods)
}

/// `max_concurrency`, `max_outbound_connections`.
fn count(value: Value) -> Result<u32, String> {
    let expected = format!("an integer from 1 to {}", u32::MAX);
    match value {
        Value::Integer(n) => u32::try_from(n)
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("must be {expected}; found {n}")),
        other => Err(wrong_type(&expected, &other)),
    }
}

/// `timeout`, `cpu_time`: more than 0, at most [`MAX_DURATION`].
fn timeout(value: Value) -> Result<Duration, String> {
    const EXPECTED: &str = "a duration like \"10s\", \"500ms\" or \"1m 30s\"";
    let Value::String(text) = value else {
        return Err(wrong_type(EXPECTED, &value));
    };
    match humantime::parse_duration(&text) {
        Ok(duration) if duration.is_zero() => Err(format!("must be more than 0, {EXPECTED}")),
        Ok(duration) if duration > MAX_DURATION => Err(format!(
            "{text:?} is more than the most allowed, {}: a request that needs longer is a \
             job for something else",
            MAX_DURATION.shown()
        )),
        Ok(duration) => Ok(duration),
        Err(error) => Err(format!(
            "{text:?} is not a duration ({error}); write {EXPECTED}"
        )),
    }
}

pub(super) fn size(value: Value) -> Result<u64, String> {
    match value {
        Value::Integer(n) => {
            u64::try_from(n).map_err(|_| format!("must be {SIZE_FORMS}; found {n}"))
        }
        Value::String(text) => text
            .trim()
            .parse::<ByteSize>()
            .map(|size| size.as_u64())
            .map_err(|_| format!("{text:?} is not a size; write {SIZE_FORMS}")),
        other => Err(wrong_type(SIZE_FORMS, &other)),
    }
}

/// A size at most [`MAX_SIZE`].
fn bounded_size(value: Value) -> Result<u64, String> {
    let size = size(value)?;
    if size > MAX_SIZE {
        return Err(format!(
            "{} is more than the most allowed, {}; is the unit right?",
            size.shown(),
            MAX_SIZE.shown()
        ));
    }
    Ok(size)
}

fn memory(value: Value) -> Result<u64, String> {
    let memory = bounded_size(value)?;
    if memory < MIN_MEMORY {
        return Err(format!(
            "is {memory} bytes; must be at least 64KiB (one WebAssembly page)"
        ));
    }
    Ok(memory)
}

fn parse_env(ctx: &Ctx<'_>, table: Table) -> Result<BTreeMap<String, EnvTemplate>, SettingsError> {
    table
        .into_iter()
        .map(|(name, value)| {
            if !is_env_name(&name) {
                return Err(ctx.error(
                    &name,
                    "is not an environment variable name: use letters, digits and _, not \
                     starting with a digit",
                ));
            }
            let Value::String(text) = value else {
                return Err(ctx.error(&name, wrong_type("a string (quote it)", &value)));
            };
            let template =
                EnvTemplate::parse(&text).map_err(|message| ctx.error(&name, message))?;
            Ok((name, template))
        })
        .collect()
}

fn parse_build(ctx: &Ctx<'_>, mut table: Table) -> Result<BuildSettings, SettingsError> {
    ctx.reject_unknown(&table, BUILD_KEYS)?;
    let command = ctx.take(&mut table, "command", |v| {
        non_empty_string(v, "the build command")
    })?;
    let output = ctx.take(&mut table, "output", |v| {
        non_empty_string(v, "the built .wasm's path")
    })?;
    let workdir = ctx.take(&mut table, "workdir", |v| {
        non_empty_string(v, "a folder path")
    })?;
    let watch = ctx.take(&mut table, "watch", |value| {
        const EXPECTED: &str = "a list of glob strings, like [\"src/**/*.rs\"]";
        let Value::Array(items) = value else {
            return Err(wrong_type(EXPECTED, &value));
        };
        items
            .into_iter()
            .map(|item| non_empty_string(item, EXPECTED))
            .collect()
    })?;
    let required = |key: &str, what: &str| ctx.error(key, format!("is required: {what}"));
    Ok(BuildSettings {
        command: command.ok_or_else(|| required("command", "the command that builds the route"))?,
        output: output.map(PathBuf::from).ok_or_else(|| {
            required(
                "output",
                "the path of the .wasm the command builds, relative to workdir",
            )
        })?,
        workdir: workdir.map(PathBuf::from),
        watch: watch.unwrap_or_default(),
    })
}

fn non_empty_string(value: Value, expected: &str) -> Result<String, String> {
    match value {
        Value::String(text) if !text.trim().is_empty() => Ok(text),
        Value::String(_) => Err(format!("must be {expected}; found an empty string")),
        other => Err(wrong_type(expected, &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SettingsLayer, SettingsError> {
        SettingsLayer::parse_sidecar(Path::new("r.toml"), text)
    }

    /// The error's key and message, for a text that must fail.
    fn error(text: &str) -> (String, String) {
        let error = parse(text).unwrap_err();
        assert_eq!(error.file, Path::new("r.toml"));
        (error.key.unwrap_or_default(), error.message)
    }

    #[test]
    fn reuse_is_off_on_or_a_table_with_wasmtime_serves_defaults() {
        use crate::settings::{Reuse, ReuseLimits};
        let reuse = |text: &str| parse(text).expect("valid").reuse;
        assert_eq!(reuse("reuse = false"), Some(Reuse::Off));
        assert_eq!(
            reuse("reuse = true"),
            Some(Reuse::On(ReuseLimits::default()))
        );
        assert_eq!(
            reuse("[reuse]\nmax_requests = 3\nidle_timeout = \"250ms\""),
            Some(Reuse::On(ReuseLimits {
                max_requests: 3,
                max_concurrent: 16,
                idle_timeout: Duration::from_millis(250),
            }))
        );
        assert_eq!(reuse(""), None);
    }

    #[test]
    fn an_empty_sidecar_sets_nothing() {
        assert_eq!(parse("# nothing\n").unwrap(), SettingsLayer::default());
    }

    #[test]
    fn sizes_accept_integers_and_binary_and_decimal_units() {
        let cases = [
            ("0", 0),
            ("1048576", 1 << 20),
            ("\"64KiB\"", 64 << 10),
            ("\"128MiB\"", 128 << 20),
            ("\"1GiB\"", 1 << 30),
            ("\"10MB\"", 10_000_000),
            ("\"1 KB\"", 1_000),
            ("\"2GB\"", 2_000_000_000),
            ("\"512\"", 512),
        ];
        for (value, bytes) in cases {
            assert_eq!(
                parse(&format!("max_body = {value}")).unwrap().max_body,
                Some(bytes),
                "{value}"
            );
        }
    }

    #[test]
    fn bad_values_say_what_is_allowed() {
        let cases = [
            (
                "dynamic = \"static\"",
                "dynamic",
                "must be \"auto\", \"force-dynamic\" or \"force-static\"",
            ),
            ("revalidate = 60", "revalidate", "a duration like \"60s\""),
            ("revalidate = \"500ms\"", "revalidate", "less than a second"),
            (
                "revalidate = \"2y\"",
                "revalidate",
                "more than the most allowed",
            ),
            ("cors = true", "cors", "a table ([cors])"),
            ("reuse = 128", "reuse", "true, false, or a table ([reuse])"),
            (
                "[reuse]\nmax_requests = 0",
                "reuse.max_requests",
                "from 1 to 1000000",
            ),
            (
                "[reuse]\nmax_concurrent = 1001",
                "reuse.max_concurrent",
                "from 1 to 1000",
            ),
            (
                "[reuse]\nidle_timeout = \"0s\"",
                "reuse.idle_timeout",
                "reuse = false",
            ),
            (
                "[reuse]\nidle_timeout = \"2h\"",
                "reuse.idle_timeout",
                "most allowed",
            ),
            ("[reuse]\nmax = 3", "reuse.max", "unknown key"),
            (
                "max_body = -1",
                "max_body",
                "an integer (bytes) or a string like \"128MiB\"",
            ),
            ("max_body = \"ten\"", "max_body", "\"ten\" is not a size"),
            ("max_body = 1.5", "max_body", "found a float"),
            (
                "memory = 1024",
                "memory",
                "at least 64KiB (one WebAssembly page)",
            ),
            (
                "max_concurrency = 0",
                "max_concurrency",
                "an integer from 1 to 4294967295; found 0",
            ),
            (
                "max_concurrency = \"5\"",
                "max_concurrency",
                "found a string",
            ),
            ("timeout = 10", "timeout", "a duration like \"10s\""),
            ("timeout = \"0s\"", "timeout", "more than 0"),
            ("timeout = \"10 parsecs\"", "timeout", "is not a duration"),
            ("methods = []", "methods", "remove the key to pass them all"),
            ("methods = \"GET\"", "methods", "a list of HTTP methods"),
            (
                "methods = [\"GET\", \"GET\"]",
                "methods",
                "GET is listed twice",
            ),
            (
                "methods = [\"get\"]",
                "methods",
                "methods are case-sensitive: did you mean GET?",
            ),
            ("methods = [\"Patch\"]", "methods", "did you mean PATCH?"),
            (
                "methods = [\"GE T\"]",
                "methods",
                "\"GE T\" is not an HTTP method",
            ),
            ("env = 1", "env", "must be a table ([env])"),
            (
                "[env]\n1X = \"v\"",
                "env.1X",
                "not an environment variable name",
            ),
            (
                "[env]\nX = 1",
                "env.X",
                "must be a string (quote it); found an integer",
            ),
            ("build = 1", "build", "must be a table ([build])"),
            (
                "[build]\noutput = \"a.wasm\"",
                "build.command",
                "is required",
            ),
            ("[build]\ncommand = \"make\"", "build.output", "is required"),
            (
                "[build]\ncommand = \"\"\noutput = \"a\"",
                "build.command",
                "empty string",
            ),
            (
                "[build]\ncommand = \"m\"\noutput = \"a\"\nwatch = \"src\"",
                "build.watch",
                "a list",
            ),
        ];
        for (text, key, fragment) in cases {
            let (got_key, message) = error(text);
            assert_eq!(got_key, key, "{text}");
            assert!(message.contains(fragment), "{text}: {message}");
        }
    }

    #[test]
    fn durations_and_sizes_have_absolute_maximums() {
        let cases = [
            (
                "timeout = \"100y\"",
                "timeout",
                "more than the most allowed, \"1day\"",
            ),
            (
                "timeout = \"24h 1s\"",
                "timeout",
                "more than the most allowed",
            ),
            (
                "cpu_time = \"25h\"",
                "cpu_time",
                "more than the most allowed",
            ),
            ("cpu_time = \"0s\"", "cpu_time", "more than 0"),
            ("cpu_time = 5", "cpu_time", "a duration like"),
            (
                "max_body = \"2TiB\"",
                "max_body",
                "more than the most allowed, \"1.0 TiB\"",
            ),
            ("memory = \"100PB\"", "memory", "is the unit right?"),
            (
                "max_outbound_connections = 0",
                "max_outbound_connections",
                "an integer from 1 to 4294967295; found 0",
            ),
            (
                "max_outbound_connections = \"5\"",
                "max_outbound_connections",
                "found a string",
            ),
        ];
        for (text, key, fragment) in cases {
            let (got_key, message) = error(text);
            assert_eq!(got_key, key, "{text}");
            assert!(message.contains(fragment), "{text}: {message}");
        }
        let at_most = parse("timeout = \"24h\"\ncpu_time = \"24h\"\nmax_body = \"1TiB\"").unwrap();
        assert_eq!(at_most.timeout, Some(MAX_DURATION));
        assert_eq!(at_most.cpu_time, Some(MAX_DURATION));
        assert_eq!(at_most.max_body, Some(MAX_SIZE));
        let layer = parse("cpu_time = \"250ms\"\nmax_outbound_connections = 8").unwrap();
        assert_eq!(layer.cpu_time, Some(Duration::from_millis(250)));
        assert_eq!(layer.max_outbound_connections, Some(8));
    }

    #[test]
    fn config_limits_and_env_allow_are_parsed_and_checked() {
        let config = |text: &str| ConfigFile::parse(Path::new("wedge.toml"), text);
        let parsed = config(
            "env_allow = [\"WEATHER_*\", \"DB_URL\"]\n[limits]\ntimeout = \"1m\"\n\
             cpu_time = \"2s\"\nmemory = \"64MiB\"\nmax_body = \"1MiB\"\nmax_concurrency = 10\n\
             max_outbound_connections = 20",
        )
        .unwrap();
        assert_eq!(
            parsed.env_allow,
            Some(vec!["WEATHER_*".to_owned(), "DB_URL".to_owned()])
        );
        let expected = Limits {
            timeout: Some(Duration::from_secs(60)),
            cpu_time: Some(Duration::from_secs(2)),
            memory: Some(64 << 20),
            max_body: Some(1 << 20),
            max_concurrency: Some(10),
            max_outbound_connections: Some(20),
        };
        assert_eq!(parsed.limits, expected);
        assert_eq!(config("").unwrap().env_allow, None);
        assert_eq!(config("env_allow = []").unwrap().env_allow, Some(vec![]));
        let cases = [
            (
                "[limits]\nmethods = [\"GET\"]",
                "limits.methods",
                "unknown key",
            ),
            (
                "[limits]\ntimeout = \"100y\"",
                "limits.timeout",
                "most allowed",
            ),
            ("limits = 1", "limits", "must be a table"),
            (
                "env_allow = \"A_*\"",
                "env_allow",
                "a list of variable names or globs",
            ),
            (
                "env_allow = [\"A B\"]",
                "env_allow",
                "invalid variable pattern \"A B\"",
            ),
        ];
        for (text, key, fragment) in cases {
            let error = config(text).unwrap_err();
            assert_eq!(error.key.as_deref(), Some(key), "{text}");
            assert!(error.message.contains(fragment), "{text}: {error}");
        }
    }

    #[test]
    fn lowercase_non_standard_methods_are_tokens() {
        let methods = parse("methods = [\"GET\", \"purge\", \"MKCOL\"]")
            .unwrap()
            .methods
            .unwrap();
        assert_eq!(
            methods.iter().map(Method::as_str).collect::<Vec<_>>(),
            ["GET", "purge", "MKCOL"]
        );
    }

    #[test]
    fn unknown_key_names_the_key_and_the_allowed_ones() {
        let (key, message) = error("timout = \"1s\"");
        assert_eq!(key, "timout");
        assert!(message.contains(
            "methods, max_concurrency, timeout, memory, max_body, cpu_time, \
                 max_outbound_connections, key_value_stores, dynamic, revalidate, cors, reuse, env, build"
        ));
        let (key, message) = error("[build]\ncommand = \"m\"\noutput = \"o\"\ncmd = \"x\"");
        assert_eq!(
            (key.as_str(), message.as_str()),
            (
                "build.cmd",
                "unknown key; allowed here: workdir, command, watch, output"
            )
        );
        let config = |text| {
            ConfigFile::parse(Path::new("wedge.toml"), text)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            config("[default]"),
            "wedge.toml: `default`: unknown key; allowed here: defaults, limits, env_allow, key_value"
        );
        assert!(
            config("[defaults]\nmemroy = 1")
                .starts_with("wedge.toml: `defaults.memroy`: unknown key")
        );
        assert!(
            config("[defaults.build]\ncommand = \"m\"")
                .contains("`defaults.build`: [build] belongs")
        );
    }

    #[test]
    fn outbound_hosts_are_parsed_and_bad_entries_name_the_key() {
        let layer = parse_sidecar(
            Path::new("r.toml"),
            "allowed_outbound_hosts = [\"https://api.example.com\", \"http://127.0.0.1:*\"]",
        )
        .unwrap();
        assert_eq!(
            layer.allowed_outbound_hosts.map(|a| a.entries().len()),
            Some(2)
        );
        for bad in [
            "allowed_outbound_hosts = [\"ftp://x\"]",
            "allowed_outbound_hosts = \"https://a.example\"",
            "allowed_outbound_hosts = [\"https://a.example/path\"]",
        ] {
            let error = parse_sidecar(Path::new("r.toml"), bad).unwrap_err();
            assert_eq!(
                error.key.as_deref(),
                Some("allowed_outbound_hosts"),
                "{bad}"
            );
        }
    }

    #[test]
    fn build_table_is_parsed() {
        let text = "[build]\nworkdir = \"../h\"\ncommand = \"cargo build\"\nwatch = [\"src/**/*.rs\"]\n\
                    output = \"target/a.wasm\"";
        let expected = BuildSettings {
            workdir: Some("../h".into()),
            command: "cargo build".into(),
            watch: vec!["src/**/*.rs".into()],
            output: "target/a.wasm".into(),
        };
        assert_eq!(parse(text).unwrap().build, Some(expected));
        let minimal = parse("[build]\ncommand = \"make\"\noutput = \"a.wasm\"")
            .unwrap()
            .build
            .unwrap();
        assert_eq!((minimal.workdir, minimal.watch), (None, vec![]));
    }

    #[test]
    fn toml_syntax_error_gives_line_and_column_without_the_text() {
        let error = parse("timeout = \"1s\"\n[env]\nTOKEN = \"hunter2").unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with("r.toml: line 3, column 17: invalid TOML: "),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
    }
}

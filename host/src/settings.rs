//! Per-route settings: a sidecar `.toml` beside each route's `.wasm`.
//!
//! `routes/api/users/[id].toml` configures `routes/api/users/[id].wasm`.
//! Every key is optional and is looked up in three layers, most specific
//! first:
//!
//! 1. the route's sidecar,
//! 2. the `[defaults]` table of the server's `--config wedge.toml`,
//! 3. the built-in defaults ([`DEFAULT_TIMEOUT`], [`DEFAULT_MEMORY`],
//!    [`DEFAULT_MAX_BODY`], [`DEFAULT_MAX_OUTBOUND_CONNECTIONS`]; `cpu_time`
//!    as the route's timeout; no method filter, no per-route cap, no env).
//!
//! A key replaces the same key of the layer below it whole: a sidecar's
//! `methods` is the list, not an addition to the defaults' list. `[env]` is a
//! table of keys, so a sidecar's `env.NAME` replaces the defaults' `env.NAME`
//! and names set only in `[defaults]` still reach the guest. The layers exist
//! so that an operator states policy for every route once (a tighter timeout,
//! a smaller body limit) and a route that needs something else says so beside
//! its code, where whoever reviews the route sees it.
//!
//! The operator's [`Policy`] bounds what a sidecar may ask for: `[limits]` in
//! the config file are ceilings ([`Limits`]; a sidecar over one fails to
//! load, a built-in default over one is brought down to it), and an
//! allow-list ([`EnvAllow`]: `--env-allow`, `env_allow`) says which host
//! variables a sidecar's `${NAME}` may read.
//!
//! Reading a file ([`SettingsLayer::parse_sidecar`], [`ConfigFile::parse`])
//! checks it on its own, so a typo is reported against the file that has it.
//! [`RouteSettings::resolve`] then stacks the layers and does what needs the
//! server: fills `${NAME}` in `[env]` from the host's environment (or
//! `--env-file`, see [`parse_env_file`]) and checks `memory` against the
//! instance pool. Every error names the file and the key (keys of the config
//! file as `defaults.KEY`) and says what is allowed.
//!
//! `[env]` values are secrets: errors, logs and `Debug` output show names,
//! never values.
//!
//! ```
//! use std::path::Path;
//! use wedge::settings::{ConfigFile, Policy, RouteSettings, SettingsLayer};
//!
//! let config = Path::new("wedge.toml");
//! let defaults = ConfigFile::parse(config, "[defaults]\ntimeout = \"5s\"\n")?.defaults;
//! let sidecar = Path::new("routes/api/users/[id].toml");
//! let route = SettingsLayer::parse_sidecar(
//!     sidecar,
//!     "methods = [\"GET\"]\n[env]\nTOKEN = \"Bearer ${API_TOKEN}\"\n",
//! )?;
//! let vars = |name: &str| (name == "API_TOKEN").then(|| "s3cret".to_owned());
//! let settings = RouteSettings::resolve(
//!     Some((sidecar, &route)),
//!     Some((config, &defaults)),
//!     256 << 20,
//!     &Policy::default(),
//!     &vars,
//! )?;
//! assert_eq!(settings.timeout, std::time::Duration::from_secs(5));
//! assert_eq!(settings.env, [("TOKEN".to_owned(), "Bearer s3cret".to_owned())]);
//! # Ok::<(), wedge::settings::SettingsError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytesize::ByteSize;
use http::Method;

use crate::outbound::{AllowList, ConnectionCap};

mod caching;
mod cors;
mod env_allow;
mod env_file;
mod env_template;
mod key_value;
mod layer;
mod limits;
mod reuse;

pub use crate::outbound::DEFAULT_MAX_OUTBOUND_CONNECTIONS;
pub use caching::{Dynamic, MAX_REVALIDATE};
pub use cors::{CorsSettings, MAX_CORS_MAX_AGE, Origins};
use env_allow::resolve_env;
pub use env_allow::{EnvAllow, InvalidEnvPattern};
pub use env_file::parse_env_file;
use env_template::EnvTemplate;
pub use key_value::{
    Backend, DEFAULT_MAX_KEY_SIZE, DEFAULT_MAX_VALUE_SIZE, StoreConfig, is_store_name,
};
use limits::Ceilings;
pub use limits::Limits;
pub use reuse::{
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONCURRENT, DEFAULT_MAX_REQUESTS, Reuse, ReuseLimits,
};

/// Wall-clock time a request may run: long enough for a handler waiting on a
/// slow upstream, short enough that a stuck one frees its instance slot
/// before clients and proxies in front (often 60 s) give up on it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Linear memory per instance: a Rust handler needs a few MiB, a component
/// carrying a JS or Python interpreter 30–100 MiB; half of the default
/// 256 MiB pool slot. Shrunk to the slot when `--max-instance-memory` is
/// smaller, so the built-in default never fails a route.
pub const DEFAULT_MEMORY: u64 = 128 << 20;

/// Request body size: room for JSON APIs and form posts with small uploads;
/// a route taking larger uploads opts in.
pub const DEFAULT_MAX_BODY: u64 = 10 << 20;

/// CPU time per request, for a route that sets neither `cpu_time` nor
/// `timeout`: the default timeout, so that no guest that finishes in time
/// today is stopped by its CPU budget (Cloudflare's default CPU limit is
/// 30 s too). A route that sets only `timeout` gets that as its `cpu_time`;
/// a tighter budget is the operator's (`[defaults]`, `[limits]`) or the
/// route's choice.
pub const DEFAULT_CPU_TIME: Duration = DEFAULT_TIMEOUT;

/// The longest `timeout` or `cpu_time`: a request running longer than a
/// day is a job, not a request, and `"100y"` is a typo, not a plan.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// The largest `memory` or `max_body`: a TiB is more than any instance or
/// upload a request handles, so a larger value is a unit typo.
pub const MAX_SIZE: u64 = 1 << 40;

/// What one file says (a sidecar, or the config's `[defaults]`); every key
/// optional. Values are validated when the file is read; only `${NAME}`
/// references and the `memory` ceiling wait for [`RouteSettings::resolve`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SettingsLayer {
    methods: Option<Vec<Method>>,
    max_concurrency: Option<u32>,
    timeout: Option<Duration>,
    memory: Option<u64>,
    max_body: Option<u64>,
    cpu_time: Option<Duration>,
    max_outbound_connections: Option<u32>,
    allowed_outbound_hosts: Option<AllowList>,
    key_value_stores: Option<Vec<String>>,
    dynamic: Option<Dynamic>,
    revalidate: Option<Duration>,
    cors: Option<Arc<CorsSettings>>,
    reuse: Option<Reuse>,
    env: BTreeMap<String, EnvTemplate>,
    build: Option<BuildSettings>,
}

impl SettingsLayer {
    /// Parses a sidecar file's text. Unknown keys, wrong types and bad values
    /// are errors naming `file` and the key and saying what is allowed.
    pub fn parse_sidecar(file: &Path, text: &str) -> Result<SettingsLayer, SettingsError> {
        layer::parse_sidecar(file, text)
    }

    /// The `[build]` table, which only `wedge dev` reads.
    pub fn build(&self) -> Option<&BuildSettings> {
        self.build.as_ref()
    }
}

/// The server config file (`--config wedge.toml`): a `[defaults]` table,
/// whose keys are a sidecar's keys except `[build]`; `[limits]`, ceilings
/// on those keys; `env_allow`, the host variables `${NAME}` may read.
#[derive(Debug, Clone, Default)]
pub struct ConfigFile {
    /// The `[defaults]` table: the layer under every route's sidecar.
    pub defaults: SettingsLayer,
    /// The `[limits]` table; no key: no ceiling.
    pub limits: Limits,
    /// `env_allow`, checked as globs; `None`: not given.
    pub env_allow: Option<Vec<String>>,
    /// `[key_value.NAME]` tables: each named store's backend and limits.
    pub key_value: BTreeMap<String, StoreConfig>,
}

impl ConfigFile {
    /// Parses the config file's text; unknown keys, at the top, in
    /// `[defaults]` or `[limits]`, are errors, and so is a `[defaults]` key
    /// over its `[limits]` ceiling.
    pub fn parse(file: &Path, text: &str) -> Result<ConfigFile, SettingsError> {
        layer::parse_config(file, text)
    }
}

/// Fully resolved settings for one route.
///
/// `Debug` shows the `[env]` names only: the values are secrets.
#[derive(Clone, PartialEq)]
pub struct RouteSettings {
    /// The methods passed to the guest; `None`: every method is.
    pub methods: Option<Vec<Method>>,
    /// This route's cap on concurrent instances; `None`: only the server's.
    pub max_concurrency: Option<u32>,
    /// Wall-clock limit per request.
    pub timeout: Duration,
    /// Linear memory per instance, in bytes.
    pub memory: u64,
    /// Request body limit, in bytes.
    pub max_body: u64,
    /// CPU time a request's guest may use (counted while it runs, not
    /// while it waits); unset in every layer: the route's `timeout`.
    pub cpu_time: Duration,
    /// `max_outbound_connections`, with the permits every request of this
    /// route shares.
    pub outbound_connections: ConnectionCap,
    /// Where the guest may send outbound HTTP requests; empty: nowhere.
    pub allowed_outbound_hosts: AllowList,
    /// The key-value stores the guest may open, sorted; empty: none.
    pub key_value_stores: Vec<String>,
    /// Whether the response cache keeps the route's answers.
    pub dynamic: Dynamic,
    /// How long a cached answer stays fresh when the guest's
    /// `Cache-Control` does not say (or `dynamic` is `force-static`).
    pub revalidate: Option<Duration>,
    /// The origins whose pages may call the route; the host answers their
    /// preflights.
    pub cors: Option<Arc<CorsSettings>>,
    /// Whether one instance serves several requests; `None`: the
    /// component's world decides (see [`crate::sandbox::World::reuse`]).
    pub reuse: Option<Reuse>,
    /// The guest's whole environment, values resolved, sorted by name.
    pub env: Vec<(String, String)>,
    /// How `wedge dev` rebuilds the route; never run by `wedge serve`.
    pub build: Option<BuildSettings>,
}

/// A sidecar's `[build]` table: how `wedge dev` rebuilds the route's `.wasm`.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildSettings {
    /// Where `command` runs, relative to the sidecar's folder; `None`: that
    /// folder.
    pub workdir: Option<PathBuf>,
    /// The build command, as written.
    pub command: String,
    /// Globs, relative to `workdir`, whose changes trigger a rebuild.
    pub watch: Vec<String>,
    /// The built component, relative to `workdir`.
    pub output: PathBuf,
}

/// A sidecar, config file or env file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}{message}", file.display(), KeyPrefix(key))]
pub struct SettingsError {
    /// The file at fault.
    pub file: PathBuf,
    /// The dotted key at fault (`timeout`, `env.API_TOKEN`,
    /// `defaults.memory`), if the error is about one.
    pub key: Option<String>,
    /// What is wrong and what is allowed; never an `[env]` value.
    pub message: String,
}

impl SettingsError {
    fn new(file: &Path, key: Option<String>, message: impl Into<String>) -> SettingsError {
        SettingsError {
            file: file.to_owned(),
            key,
            message: message.into(),
        }
    }
}

/// Writes "`key`: " before an error's message, or nothing.
struct KeyPrefix<'a>(&'a Option<String>);

impl fmt::Display for KeyPrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(key) => write!(f, "`{key}`: "),
            None => Ok(()),
        }
    }
}

impl Default for RouteSettings {
    /// The built-in defaults: every method, no per-route cap, the `DEFAULT_*`
    /// limits, an empty environment, no build.
    fn default() -> RouteSettings {
        RouteSettings {
            methods: None,
            max_concurrency: None,
            timeout: DEFAULT_TIMEOUT,
            memory: DEFAULT_MEMORY,
            max_body: DEFAULT_MAX_BODY,
            cpu_time: DEFAULT_CPU_TIME,
            outbound_connections: ConnectionCap::default(),
            allowed_outbound_hosts: AllowList::default(),
            key_value_stores: Vec::new(),
            dynamic: Dynamic::Auto,
            revalidate: None,
            cors: None,
            reuse: None,
            env: Vec::new(),
            build: None,
        }
    }
}

/// The `${NAME}` allow-list from `--env-allow` (`flags`) and `env_allow`
/// in `--config`: a list if either gives one, else `None` (any variable).
pub fn env_allow_list(
    flags: &[String],
    config: Option<&[String]>,
) -> Result<Option<EnvAllow>, InvalidEnvPattern> {
    if flags.is_empty() && config.is_none() {
        return Ok(None);
    }
    let mut patterns = flags.to_vec();
    patterns.extend(config.unwrap_or_default().iter().cloned());
    EnvAllow::new(&patterns).map(Some)
}

/// What the operator imposes on every route, beside `[defaults]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    /// `[limits]` of `--config`, with that file.
    pub limits: Option<(PathBuf, Limits)>,
    /// `--env-allow` and `env_allow`; `None`: a sidecar's `${NAME}` may
    /// read every variable.
    pub env_allow: Option<EnvAllow>,
}

/// A layer with the file it came from, so an error names the right file.
struct Source<'a> {
    file: &'a Path,
    /// Written before its keys in errors: `defaults.` for the config file.
    prefix: &'static str,
    layer: &'a SettingsLayer,
}

impl Source<'_> {
    fn error(&self, key: &str, message: String) -> SettingsError {
        SettingsError::new(self.file, Some(format!("{}{key}", self.prefix)), message)
    }
}

/// The first layer (most specific first) that sets a key, with its value.
fn first<'a, T>(
    sources: &'a [Source<'a>],
    get: impl Fn(&'a SettingsLayer) -> Option<T>,
) -> Option<(T, &'a Source<'a>)> {
    sources
        .iter()
        .find_map(|source| get(source.layer).map(|value| (value, source)))
}

impl RouteSettings {
    /// Layers `sidecar` over `defaults` over the built-in defaults, checks
    /// each limited key against `policy`'s `[limits]` and `memory` against
    /// `max_memory`, the pool's per-instance size (`--max-instance-memory`),
    /// and resolves `${NAME}` in `[env]` values with `vars` (a sidecar's only
    /// within `policy`'s allow-list). An error names the file of the layer
    /// the failing key came from.
    pub fn resolve(
        sidecar: Option<(&Path, &SettingsLayer)>,
        defaults: Option<(&Path, &SettingsLayer)>,
        max_memory: u64,
        policy: &Policy,
        vars: &dyn Fn(&str) -> Option<String>,
    ) -> Result<RouteSettings, SettingsError> {
        let sidecar = sidecar.map(|(file, layer)| Source {
            file,
            prefix: "",
            layer,
        });
        let defaults = defaults.map(|(file, layer)| Source {
            file,
            prefix: "defaults.",
            layer,
        });
        let sources: Vec<Source<'_>> = sidecar.into_iter().chain(defaults).collect();
        let no_limits = Limits::default();
        let ceilings = match &policy.limits {
            Some((file, limits)) => Ceilings { limits, file },
            None => Ceilings {
                limits: &no_limits,
                file: Path::new(""),
            },
        };
        let limits = ceilings.limits;

        let memory = match first(&sources, |layer| layer.memory) {
            Some((memory, source)) if memory > max_memory => {
                return Err(source.error(
                    "memory",
                    format!(
                        "{} is more than each instance may have (--max-instance-memory is {}); \
                         lower `memory` or raise --max-instance-memory",
                        ByteSize(memory),
                        ByteSize(max_memory)
                    ),
                ));
            }
            found => found,
        };
        let memory = ceilings.capped(
            "memory",
            memory,
            DEFAULT_MEMORY.min(max_memory),
            limits.memory,
        )?;
        let timeout = first(&sources, |layer| layer.timeout);
        let timeout = ceilings.capped("timeout", timeout, DEFAULT_TIMEOUT, limits.timeout)?;
        let cpu_time = first(&sources, |layer| layer.cpu_time);
        let cpu_time = ceilings.capped("cpu_time", cpu_time, timeout, limits.cpu_time)?;
        let max_body = first(&sources, |layer| layer.max_body);
        let max_body = ceilings.capped("max_body", max_body, DEFAULT_MAX_BODY, limits.max_body)?;
        let max_concurrency = first(&sources, |layer| layer.max_concurrency);
        let max_concurrency = ceilings.ceiling(
            "max_concurrency",
            max_concurrency,
            None,
            limits.max_concurrency,
        )?;
        let connections = first(&sources, |layer| layer.max_outbound_connections);
        let connections = ceilings.capped(
            "max_outbound_connections",
            connections,
            DEFAULT_MAX_OUTBOUND_CONNECTIONS,
            limits.max_outbound_connections,
        )?;

        Ok(RouteSettings {
            methods: first(&sources, |layer| layer.methods.clone()).map(|(value, _)| value),
            max_concurrency,
            timeout,
            memory,
            max_body,
            cpu_time,
            outbound_connections: ConnectionCap::new(connections),
            allowed_outbound_hosts: first(&sources, |layer| layer.allowed_outbound_hosts.clone())
                .map(|(value, _)| value)
                .unwrap_or_default(),
            key_value_stores: first(&sources, |layer| layer.key_value_stores.clone())
                .map(|(value, _)| value)
                .unwrap_or_default(),
            dynamic: first(&sources, |layer| layer.dynamic)
                .map(|(value, _)| value)
                .unwrap_or_default(),
            revalidate: first(&sources, |layer| layer.revalidate).map(|(value, _)| value),
            cors: first(&sources, |layer| layer.cors.clone()).map(|(value, _)| value),
            reuse: first(&sources, |layer| layer.reuse).map(|(value, _)| value),
            env: resolve_env(&sources, policy.env_allow.as_ref(), vars)?,
            build: first(&sources, |layer| layer.build.clone()).map(|(value, _)| value),
        })
    }

    /// The `[env]` names, sorted (values are secrets: never log them).
    pub fn env_names(&self) -> impl Iterator<Item = &str> {
        self.env.iter().map(|(name, _)| name.as_str())
    }
}

impl fmt::Debug for RouteSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteSettings")
            .field("methods", &self.methods)
            .field("max_concurrency", &self.max_concurrency)
            .field("timeout", &self.timeout)
            .field("memory", &self.memory)
            .field("max_body", &self.max_body)
            .field("cpu_time", &self.cpu_time)
            .field("outbound_connections", &self.outbound_connections)
            .field("allowed_outbound_hosts", &self.allowed_outbound_hosts)
            .field("key_value_stores", &self.key_value_stores)
            .field("dynamic", &self.dynamic)
            .field("revalidate", &self.revalidate)
            .field("cors", &self.cors)
            .field("reuse", &self.reuse)
            .field("env", &EnvNames(self))
            .field("build", &self.build)
            .finish()
    }
}

/// Debugs as `{"NAME": <redacted>, ...}`.
struct EnvNames<'a>(&'a RouteSettings);

impl fmt::Debug for EnvNames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.env_names().map(|name| (name, Redacted)))
            .finish()
    }
}

/// Stands in for a secret in `Debug` output.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// An environment variable name as POSIX shells accept it.
fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn sidecar(text: &str) -> SettingsLayer {
        SettingsLayer::parse_sidecar(Path::new("r.toml"), text).unwrap()
    }

    fn defaults(text: &str) -> SettingsLayer {
        ConfigFile::parse(Path::new("wedge.toml"), text)
            .unwrap()
            .defaults
    }

    fn resolve_with(
        route: Option<&str>,
        config: Option<&str>,
        max_memory: u64,
        vars: &[(&str, &str)],
    ) -> Result<RouteSettings, SettingsError> {
        resolve_under(route, config, max_memory, &Policy::default(), vars)
    }

    fn resolve_under(
        route: Option<&str>,
        config: Option<&str>,
        max_memory: u64,
        policy: &Policy,
        vars: &[(&str, &str)],
    ) -> Result<RouteSettings, SettingsError> {
        let (route, config) = (route.map(sidecar), config.map(defaults));
        let lookup = |name: &str| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, value)| (*value).to_owned())
        };
        RouteSettings::resolve(
            route.as_ref().map(|layer| (Path::new("r.toml"), layer)),
            config
                .as_ref()
                .map(|layer| (Path::new("wedge.toml"), layer)),
            max_memory,
            policy,
            &lookup,
        )
    }

    fn resolve(route: Option<&str>, config: Option<&str>) -> RouteSettings {
        resolve_with(route, config, 256 * MIB, &[]).unwrap()
    }

    #[test]
    fn built_in_defaults_apply_when_no_file_sets_a_key() {
        let expected = RouteSettings::default();
        assert_eq!(resolve(None, None), expected);
        assert_eq!(resolve(Some(""), Some("[defaults]")), expected);
        assert_eq!(expected.timeout, Duration::from_secs(30));
        assert_eq!((expected.memory, expected.max_body), (128 * MIB, 10 * MIB));
        assert_eq!(expected.cpu_time, DEFAULT_CPU_TIME);
        assert_eq!(expected.outbound_connections.max(), 256);
    }

    #[test]
    fn cpu_time_follows_the_timeout_unless_set() {
        let cases = [
            (None, None, DEFAULT_TIMEOUT),
            (Some("timeout = \"2m\""), None, Duration::from_secs(120)),
            (
                Some("timeout = \"2m\""),
                Some("[defaults]\ncpu_time = \"5s\""),
                Duration::from_secs(5),
            ),
            (
                Some("timeout = \"2s\"\ncpu_time = \"10s\""),
                None,
                Duration::from_secs(10),
            ),
            (
                None,
                Some("[defaults]\ntimeout = \"3s\""),
                Duration::from_secs(3),
            ),
        ];
        for (route, config, cpu_time) in cases {
            assert_eq!(
                resolve(route, config).cpu_time,
                cpu_time,
                "{route:?} {config:?}"
            );
        }
    }

    #[test]
    fn sidecar_key_replaces_default() {
        let cases = [
            ("methods = [\"GET\"]", "methods = [\"PUT\", \"POST\"]"),
            ("max_concurrency = 5", "max_concurrency = 7"),
            ("timeout = \"1s\"", "timeout = \"2s\""),
            ("memory = \"1MiB\"", "memory = \"2MiB\""),
            ("max_body = 0", "max_body = 9"),
            ("cpu_time = \"1s\"", "cpu_time = \"2s\""),
            (
                "max_outbound_connections = 1",
                "max_outbound_connections = 2",
            ),
            ("[env]\nA = \"route\"", "[env]\nA = \"config\""),
        ];
        for (route, default) in cases {
            let config = format!("[defaults]\n{default}").replace("[env]", "[defaults.env]");
            let (from_route, from_defaults) =
                (resolve(Some(route), None), resolve(Some(default), None));
            assert_ne!(from_route, from_defaults, "{route}");
            assert_eq!(resolve(Some(route), Some(&config)), from_route, "{route}");
            assert_eq!(resolve(Some(""), Some(&config)), from_defaults, "{default}");
            assert_eq!(resolve(None, Some(&config)), from_defaults, "{default}");
        }
    }

    #[test]
    fn env_merges_by_name_and_the_sidecar_wins() {
        let settings = resolve(
            Some("[env]\nB = \"route\"\nC = \"route\""),
            Some("[defaults.env]\nA = \"config\"\nB = \"config\""),
        );
        let expected = [("A", "config"), ("B", "route"), ("C", "route")];
        let expected: Vec<_> = expected
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(settings.env, expected);
        assert_eq!(settings.env_names().collect::<Vec<_>>(), ["A", "B", "C"]);
    }

    #[test]
    fn env_references_are_filled_anywhere_and_dollar_dollar_is_a_literal_dollar() {
        let cases = [
            ("${T}", "tok"),
            ("Bearer ${T}!", "Bearer tok!"),
            ("${T}${U}", "toku"),
            ("$$T costs $$5", "$T costs $5"),
            ("$${T}", "${T}"),
            ("", ""),
        ];
        for (template, expected) in cases {
            let text = format!("[env]\nX = {template:?}");
            let settings = resolve_with(Some(&text), None, MIB, &[("T", "tok"), ("U", "u")]);
            assert_eq!(settings.unwrap().env[0].1, expected, "{template}");
        }
    }

    #[test]
    fn missing_env_variable_names_the_variable_not_a_value() {
        let text = "[env]\nAPI = \"secret-literal ${API_TOKEN}\"";
        let error = resolve_with(Some(text), None, MIB, &[]).unwrap_err();
        assert_eq!(error.file, Path::new("r.toml"));
        assert_eq!(error.key.as_deref(), Some("env.API"));
        assert!(error.message.contains("API_TOKEN") && error.message.contains("--env-file"));
        assert!(!error.to_string().contains("secret-literal"), "{error}");
    }

    #[test]
    fn memory_above_the_pool_is_refused() {
        let cases = [
            (Some("memory = \"65MiB\""), None, "r.toml", "memory"),
            (
                None,
                Some("[defaults]\nmemory = \"65MiB\""),
                "wedge.toml",
                "defaults.memory",
            ),
            (
                Some(""),
                Some("[defaults]\nmemory = \"65MiB\""),
                "wedge.toml",
                "defaults.memory",
            ),
        ];
        for (route, config, file, key) in cases {
            let error = resolve_with(route, config, 64 * MIB, &[]).unwrap_err();
            assert_eq!(
                (error.file.to_str(), error.key.as_deref()),
                (Some(file), Some(key))
            );
            assert!(
                error.message.contains("--max-instance-memory is 64.0 MiB"),
                "{error}"
            );
        }
        let fits = resolve_with(Some("memory = \"64MiB\""), None, 64 * MIB, &[]).unwrap();
        assert_eq!(fits.memory, 64 * MIB);
    }

    #[test]
    fn built_in_memory_shrinks_to_a_smaller_pool() {
        assert_eq!(
            resolve_with(None, None, 32 * MIB, &[]).unwrap().memory,
            32 * MIB
        );
    }

    #[test]
    fn error_from_defaults_names_the_config_file() {
        let error =
            resolve_with(Some(""), Some("[defaults.env]\nK = \"${NOPE}\""), MIB, &[]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "wedge.toml: `defaults.env.K`: `${NOPE}` is not set: set NOPE in the host's \
             environment or in an --env-file"
        );
    }

    fn allowing(patterns: &[&str]) -> Policy {
        let patterns: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
        Policy {
            limits: None,
            env_allow: Some(EnvAllow::new(&patterns).unwrap()),
        }
    }

    #[test]
    fn a_sidecar_reference_outside_the_allow_list_fails_naming_it_and_the_flag() {
        let vars = [("WEATHER_KEY", "w"), ("AWS_SECRET", "s")];
        let policy = allowing(&["WEATHER_*"]);
        let text = "[env]\nKEY = \"${WEATHER_KEY}\"\nSTOLEN = \"x ${AWS_SECRET}\"";
        let error = resolve_under(Some(text), None, MIB, &policy, &vars).unwrap_err();
        assert_eq!(error.file, Path::new("r.toml"));
        assert_eq!(error.key.as_deref(), Some("env.STOLEN"));
        for fragment in ["${AWS_SECRET}", "--env-allow", "allowed: WEATHER_*"] {
            assert!(error.message.contains(fragment), "{error}");
        }
        let fine = resolve_under(
            Some("[env]\nKEY = \"${WEATHER_KEY}\""),
            None,
            MIB,
            &policy,
            &vars,
        );
        assert_eq!(fine.unwrap().env, [("KEY".to_owned(), "w".to_owned())]);
        // Literal values need no list; an empty list allows no reference.
        let none = allowing(&[]);
        resolve_under(Some("[env]\nA = \"$$AWS_SECRET\""), None, MIB, &none, &vars).unwrap();
        let error = resolve_under(
            Some("[env]\nK = \"${WEATHER_KEY}\""),
            None,
            MIB,
            &none,
            &vars,
        );
        assert!(error.unwrap_err().message.contains("allowed: none"));
        // Without a list, today's behaviour: any variable.
        resolve_under(Some(text), None, MIB, &Policy::default(), &vars).unwrap();
    }

    #[test]
    fn the_operators_defaults_env_is_not_held_to_the_allow_list() {
        let vars = [("DB_URL", "postgres://")];
        let policy = allowing(&["WEATHER_*"]);
        let settings = resolve_under(
            Some(""),
            Some("[defaults.env]\nDB = \"${DB_URL}\""),
            MIB,
            &policy,
            &vars,
        );
        assert_eq!(settings.unwrap().env[0].1, "postgres://");
    }

    #[test]
    fn debug_output_hides_env_values() {
        let settings = resolve(Some("[env]\nTOKEN = \"hunter2\""), None);
        let debug = format!("{settings:?} {:?}", sidecar("[env]\nTOKEN = \"hunter2\""));
        assert!(
            debug.contains("TOKEN") && !debug.contains("hunter2"),
            "{debug}"
        );
    }
}

//! `[limits]` in `--config`: ceilings that no sidecar and no `[defaults]`
//! may exceed, and that shrink the built-in defaults.

use std::path::Path;
use std::time::Duration;

use bytesize::ByteSize;

use super::{SettingsError, Source};

/// The `[limits]` table of `--config`: for each key, the most a route may
/// ask for. A sidecar over one is a load error naming both values; a
/// built-in default over one becomes the ceiling (`[limits] timeout = "10s"`
/// makes every route's default timeout 10 s).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    pub(super) timeout: Option<Duration>,
    pub(super) cpu_time: Option<Duration>,
    pub(super) memory: Option<u64>,
    pub(super) max_body: Option<u64>,
    pub(super) max_concurrency: Option<u32>,
    pub(super) max_outbound_connections: Option<u32>,
}

/// A limited key's value as the files write it, for messages: durations
/// as durations, `u64` as sizes, `u32` as counts.
pub(super) trait Shown: Copy + PartialOrd {
    fn shown(self) -> String;
}

impl Shown for Duration {
    fn shown(self) -> String {
        format!("\"{}\"", humantime::format_duration(self))
    }
}

impl Shown for u64 {
    fn shown(self) -> String {
        format!("\"{}\"", ByteSize(self))
    }
}

impl Shown for u32 {
    fn shown(self) -> String {
        self.to_string()
    }
}

/// `[limits]` with the file it came from, applied to one route's layers.
pub(super) struct Ceilings<'a> {
    pub(super) limits: &'a Limits,
    pub(super) file: &'a Path,
}

impl Ceilings<'_> {
    /// The value for `key`: the layer's `found`, which must not be over
    /// `ceiling`, or else `built_in` brought down to `ceiling`.
    pub(super) fn capped<T: Shown>(
        &self,
        key: &str,
        found: Option<(T, &Source<'_>)>,
        built_in: T,
        ceiling: Option<T>,
    ) -> Result<T, SettingsError> {
        Ok(self
            .ceiling(key, found, Some(built_in), ceiling)?
            .unwrap_or(built_in))
    }

    /// As [`Ceilings::capped`], for a key whose built-in default is "none"
    /// (`max_concurrency`): a ceiling then becomes the value.
    pub(super) fn ceiling<T: Shown>(
        &self,
        key: &str,
        found: Option<(T, &Source<'_>)>,
        built_in: Option<T>,
        ceiling: Option<T>,
    ) -> Result<Option<T>, SettingsError> {
        match (found, ceiling) {
            (Some((value, source)), Some(ceiling)) if value > ceiling => Err(source.error(
                key,
                format!(
                    "{} is over the server's ceiling `limits.{key} = {}` in {}; lower `{}{key}`, \
                     or ask the operator to raise [limits] {key}",
                    value.shown(),
                    ceiling.shown(),
                    self.file.display(),
                    source.prefix,
                ),
            )),
            (Some((value, _)), _) => Ok(Some(value)),
            (None, Some(ceiling)) => Ok(Some(match built_in {
                Some(built_in) if built_in < ceiling => built_in,
                _ => ceiling,
            })),
            (None, None) => Ok(built_in),
        }
    }
}

/// The message for `[defaults]` over `[limits]` in one config file.
pub(super) fn defaults_over<T: Shown>(key: &str, value: T, ceiling: T) -> String {
    format!(
        "{} is over `limits.{key} = {}` in this file; lower `defaults.{key}` or raise \
         `limits.{key}`",
        value.shown(),
        ceiling.shown()
    )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::settings::{ConfigFile, Policy, RouteSettings, SettingsLayer};

    const MIB: u64 = 1 << 20;

    fn resolve(route: Option<&str>, policy: &Policy) -> Result<RouteSettings, SettingsError> {
        let file = Path::new("r.toml");
        let route = route.map(|text| SettingsLayer::parse_sidecar(file, text).unwrap());
        RouteSettings::resolve(
            route.as_ref().map(|layer| (file, layer)),
            None,
            256 * MIB,
            policy,
            &|_| None,
        )
    }

    fn limits(text: &str) -> Policy {
        let config = ConfigFile::parse(Path::new("wedge.toml"), text).unwrap();
        Policy {
            limits: Some((PathBuf::from("wedge.toml"), config.limits)),
            env_allow: None,
        }
    }

    #[test]
    fn a_sidecar_over_a_ceiling_fails_naming_both_values() {
        let cases = [
            (
                "timeout = \"2m\"",
                "timeout = \"1m\"",
                "timeout",
                "\"2m\"",
                "\"1m\"",
            ),
            (
                "cpu_time = \"2s\"",
                "cpu_time = \"1s\"",
                "cpu_time",
                "\"2s\"",
                "\"1s\"",
            ),
            (
                "memory = \"64MiB\"",
                "memory = \"32MiB\"",
                "memory",
                "\"64.0 MiB\"",
                "\"32.0 MiB\"",
            ),
            (
                "max_body = 2048",
                "max_body = \"1KiB\"",
                "max_body",
                "\"2.0 KiB\"",
                "\"1.0 KiB\"",
            ),
            (
                "max_concurrency = 9",
                "max_concurrency = 8",
                "max_concurrency",
                "9",
                "8",
            ),
            (
                "max_outbound_connections = 5",
                "max_outbound_connections = 4",
                "max_outbound_connections",
                "5",
                "4",
            ),
        ];
        for (route, ceiling, key, value, limit) in cases {
            let policy = limits(&format!("[limits]\n{ceiling}"));
            let error = resolve(Some(route), &policy).unwrap_err();
            assert_eq!(error.file, Path::new("r.toml"), "{route}");
            assert_eq!(error.key.as_deref(), Some(key), "{route}");
            let expected = format!(
                "{value} is over the server's ceiling `limits.{key} = {limit}` in wedge.toml"
            );
            assert!(error.message.starts_with(&expected), "{route}: {error}");
            // At the ceiling is fine.
            resolve(Some(ceiling), &policy).unwrap();
        }
    }

    #[test]
    fn built_in_defaults_come_down_to_the_ceilings() {
        let policy = limits(
            "[limits]\ntimeout = \"5s\"\ncpu_time = \"1s\"\nmemory = \"16MiB\"\n\
             max_body = \"1KiB\"\nmax_concurrency = 3\nmax_outbound_connections = 2",
        );
        let settings = resolve(None, &policy).unwrap();
        assert_eq!(settings.timeout, Duration::from_secs(5));
        assert_eq!(settings.cpu_time, Duration::from_secs(1));
        assert_eq!((settings.memory, settings.max_body), (16 * MIB, 1024));
        assert_eq!(settings.max_concurrency, Some(3));
        assert_eq!(settings.outbound_connections.max(), 2);
        // Ceilings above the built-in defaults change nothing.
        let high = limits(
            "[limits]\ntimeout = \"1h\"\nmemory = \"1GiB\"\nmax_outbound_connections = 1000",
        );
        let settings = resolve(None, &high).unwrap();
        assert_eq!(settings, RouteSettings::default());
        // cpu_time follows a lower timeout below its own ceiling.
        let settings = resolve(Some("timeout = \"500ms\""), &policy);
        assert_eq!(settings.unwrap().cpu_time, Duration::from_millis(500));
    }

    #[test]
    fn defaults_over_a_ceiling_are_a_config_error_naming_both() {
        let error = ConfigFile::parse(
            Path::new("wedge.toml"),
            "[defaults]\ntimeout = \"100s\"\n[limits]\ntimeout = \"1m\"",
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "wedge.toml: `defaults.timeout`: \"1m 40s\" is over `limits.timeout = \"1m\"` in \
             this file; lower `defaults.timeout` or raise `limits.timeout`"
        );
        for (defaults, ceiling) in [
            ("max_concurrency = 5", "max_concurrency = 4"),
            ("memory = \"2MiB\"", "memory = \"1MiB\""),
            (
                "max_outbound_connections = 5",
                "max_outbound_connections = 4",
            ),
        ] {
            let text = format!("[defaults]\n{defaults}\n[limits]\n{ceiling}");
            let error = ConfigFile::parse(Path::new("wedge.toml"), &text).unwrap_err();
            assert!(error.to_string().contains("is over `limits."), "{error}");
        }
    }
}

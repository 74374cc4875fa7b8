//! Key-value stores in the settings: a sidecar's `key_value_stores`, the
//! stores its route may open, and `--config`'s `[key_value.NAME]` tables,
//! where each store keeps its data.
//!
//! A store named in no `[key_value.…]` table is embedded, so `default`
//! works with no configuration at all.

use std::collections::BTreeMap;

use toml::{Table, Value};

use super::SettingsError;
use super::layer::{Ctx, size, wrong_type};
use super::limits::Shown;

/// `max_key_size` when a store sets none: 1 KiB, Spin's limit too.
pub const DEFAULT_MAX_KEY_SIZE: u64 = 1 << 10;
/// `max_value_size` when a store sets none: 1 MiB.
pub const DEFAULT_MAX_VALUE_SIZE: u64 = 1 << 20;
/// The largest `max_key_size`.
const MAX_KEY_SIZE_LIMIT: u64 = 64 << 10;
/// The largest `max_value_size`: a value is held whole in host memory while
/// it is read or written, so a larger one belongs in object storage.
const MAX_VALUE_SIZE_LIMIT: u64 = 64 << 20;
/// The longest store name.
const MAX_STORE_NAME: usize = 64;

const STORE_KEYS: &[&str] = &["backend", "url", "prefix", "max_key_size", "max_value_size"];

/// One store's `[key_value.NAME]` table, or the defaults for a store that
/// has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Where the store keeps its data.
    pub backend: Backend,
    /// The longest key, in bytes.
    pub max_key_size: usize,
    /// The largest value, in bytes.
    pub max_value_size: usize,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            backend: Backend::Embedded,
            max_key_size: to_usize(DEFAULT_MAX_KEY_SIZE),
            max_value_size: to_usize(DEFAULT_MAX_VALUE_SIZE),
        }
    }
}

/// A store's backend.
#[derive(Clone, PartialEq, Eq)]
pub enum Backend {
    /// In the server's data folder (`--data-dir`).
    Embedded,
    /// On a Redis server, shared by every Wedge server that names it.
    Redis {
        /// `redis://[user:password@]HOST[:PORT][/DB]`; may hold a password,
        /// so never logged: [`Backend::redis_address`] is.
        url: String,
        /// Put before every key; default `wedge:NAME:`.
        prefix: String,
    },
}

impl Backend {
    /// `HOST:PORT/DB` of a Redis URL, without its credentials, for logs.
    pub fn redis_address(url: &str) -> &str {
        let rest = url.strip_prefix("redis://").unwrap_or(url);
        rest.rsplit_once('@').map_or(rest, |(_, address)| address)
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Embedded => f.write_str("Embedded"),
            Backend::Redis { url, prefix } => f
                .debug_struct("Redis")
                .field("address", &Backend::redis_address(url))
                .field("prefix", prefix)
                .finish(),
        }
    }
}

/// Whether `name` may name a store: letters, digits, `_`, `-` and `.`,
/// starting with a letter or digit, at most 64 bytes.
pub fn is_store_name(name: &str) -> bool {
    name.len() <= MAX_STORE_NAME
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn to_usize(size: u64) -> usize {
    usize::try_from(size).unwrap_or(usize::MAX)
}

/// `key_value_stores = ["default", "sessions"]`: sorted, each once.
pub(super) fn store_names(value: Value) -> Result<Vec<String>, String> {
    const EXPECTED: &str = "a list of store names, like [\"default\"]";
    let Value::Array(items) = value else {
        return Err(wrong_type(EXPECTED, &value));
    };
    let mut names = Vec::with_capacity(items.len());
    for item in items {
        let Value::String(name) = item else {
            return Err(wrong_type(EXPECTED, &item));
        };
        if !is_store_name(&name) {
            return Err(format!(
                "{name:?} is not a store name: letters, digits, _, - and ., starting with a \
                 letter or digit, at most {MAX_STORE_NAME} bytes"
            ));
        }
        if names.contains(&name) {
            return Err(format!("{name:?} is listed twice"));
        }
        names.push(name);
    }
    names.sort();
    Ok(names)
}

/// The `[key_value]` table of `--config`: one table per store.
pub(super) fn parse(
    ctx: &Ctx<'_>,
    stores: Table,
) -> Result<BTreeMap<String, StoreConfig>, SettingsError> {
    stores
        .into_iter()
        .map(|(name, value)| {
            if !is_store_name(&name) {
                return Err(ctx.error(
                    &name,
                    "is not a store name: letters, digits, _, - and ., starting with a letter \
                     or digit",
                ));
            }
            let Value::Table(table) = value else {
                return Err(ctx.error(&name, wrong_type("a table ([key_value.NAME])", &value)));
            };
            let store = parse_store(&ctx.nested(&name), &name, table)?;
            Ok((name, store))
        })
        .collect()
}

fn parse_store(ctx: &Ctx<'_>, name: &str, mut table: Table) -> Result<StoreConfig, SettingsError> {
    ctx.reject_unknown(&table, STORE_KEYS)?;
    let backend = ctx.take(&mut table, "backend", backend_name)?;
    let url = ctx.take(&mut table, "url", redis_url)?;
    let prefix = ctx.take(&mut table, "prefix", prefix)?;
    let backend = match (backend, url) {
        (None | Some(BackendName::Embedded), None) => {
            if prefix.is_some() {
                return Err(ctx.error(
                    "prefix",
                    "only a store with backend = \"redis\" has a prefix; remove it",
                ));
            }
            Backend::Embedded
        }
        (None | Some(BackendName::Embedded), Some(_)) => {
            return Err(ctx.error(
                "url",
                "only a store with backend = \"redis\" has a url; add backend = \"redis\" or \
                 remove the url",
            ));
        }
        (Some(BackendName::Redis), None) => {
            return Err(ctx.error(
                "url",
                "is missing: a store with backend = \"redis\" needs url = \
                 \"redis://HOST:PORT/DB\"",
            ));
        }
        (Some(BackendName::Redis), Some(url)) => Backend::Redis {
            url,
            prefix: prefix.unwrap_or_else(|| format!("wedge:{name}:")),
        },
    };
    let max_key_size = ctx.take(&mut table, "max_key_size", |value| {
        limit(value, MAX_KEY_SIZE_LIMIT)
    })?;
    let max_value_size = ctx.take(&mut table, "max_value_size", |value| {
        limit(value, MAX_VALUE_SIZE_LIMIT)
    })?;
    Ok(StoreConfig {
        backend,
        max_key_size: to_usize(max_key_size.unwrap_or(DEFAULT_MAX_KEY_SIZE)),
        max_value_size: to_usize(max_value_size.unwrap_or(DEFAULT_MAX_VALUE_SIZE)),
    })
}

enum BackendName {
    Embedded,
    Redis,
}

fn backend_name(value: Value) -> Result<BackendName, String> {
    const EXPECTED: &str = "\"embedded\" or \"redis\"";
    match value {
        Value::String(name) if name == "embedded" => Ok(BackendName::Embedded),
        Value::String(name) if name == "redis" => Ok(BackendName::Redis),
        Value::String(name) => Err(format!("{name:?} is not a backend; use {EXPECTED}")),
        other => Err(wrong_type(EXPECTED, &other)),
    }
}

fn redis_url(value: Value) -> Result<String, String> {
    const EXPECTED: &str = "a URL like \"redis://HOST:PORT/DB\"";
    let Value::String(url) = value else {
        return Err(wrong_type(EXPECTED, &value));
    };
    if url.starts_with("rediss://") {
        return Err(
            "TLS to Redis (rediss://) is not supported; reach Redis over a private network or \
             a local TLS tunnel, with redis://"
                .into(),
        );
    }
    match url.strip_prefix("redis://") {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(url),
        _ => Err(format!("is not {EXPECTED}")),
    }
}

fn prefix(value: Value) -> Result<String, String> {
    match value {
        Value::String(prefix) if prefix.contains(['*', '?', '[', ']', '\\']) => Err(format!(
            "{prefix:?} holds a glob character (* ? [ ] \\); choose a prefix without them"
        )),
        Value::String(prefix) => Ok(prefix),
        other => Err(wrong_type("a string, like \"myapp:\"", &other)),
    }
}

fn limit(value: Value, most: u64) -> Result<u64, String> {
    let size = size(value)?;
    if size == 0 {
        return Err("must be more than 0".into());
    }
    if size > most {
        return Err(format!(
            "{} is more than the most allowed, {}",
            size.shown(),
            most.shown()
        ));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::settings::{ConfigFile, SettingsLayer};

    fn config(text: &str) -> Result<BTreeMap<String, StoreConfig>, (Option<String>, String)> {
        ConfigFile::parse(Path::new("wedge.toml"), text)
            .map(|config| config.key_value)
            .map_err(|error| (error.key, error.message))
    }

    #[test]
    fn stores_are_embedded_unless_a_table_says_redis() {
        let stores = config(
            "[key_value.default]\nmax_value_size = \"64KiB\"\n\
             [key_value.shared]\nbackend = \"redis\"\nurl = \"redis://:pw@cache:6379/2\"",
        )
        .unwrap();
        assert_eq!(
            stores["default"],
            StoreConfig {
                max_value_size: 64 << 10,
                ..StoreConfig::default()
            }
        );
        assert_eq!(
            stores["shared"].backend,
            Backend::Redis {
                url: "redis://:pw@cache:6379/2".into(),
                prefix: "wedge:shared:".into()
            }
        );
        assert_eq!(
            Backend::redis_address("redis://:pw@cache:6379/2"),
            "cache:6379/2"
        );
        assert!(!format!("{:?}", stores["shared"]).contains("pw"));
    }

    #[test]
    fn bad_store_tables_name_the_key() {
        for (text, key, says) in [
            (
                "[key_value.s]\nbackend = \"redis\"",
                "key_value.s.url",
                "is missing",
            ),
            (
                "[key_value.s]\nbackend = \"memcached\"",
                "key_value.s.backend",
                "not a backend",
            ),
            (
                "[key_value.s]\nurl = \"redis://h\"",
                "key_value.s.url",
                "backend = \"redis\"",
            ),
            (
                "[key_value.s]\nbackend = \"redis\"\nurl = \"rediss://h\"",
                "key_value.s.url",
                "not supported",
            ),
            (
                "[key_value.s]\nmax_key_size = \"1GiB\"",
                "key_value.s.max_key_size",
                "most allowed",
            ),
            ("[key_value.s]\nttl = 3", "key_value.s.ttl", "unknown key"),
            ("[key_value.\"a b\"]\n", "key_value.a b", "not a store name"),
        ] {
            let (found_key, message) = config(text).unwrap_err();
            assert_eq!(found_key.as_deref(), Some(key), "{text}");
            assert!(message.contains(says), "{text}: {message}");
        }
    }

    #[test]
    fn a_sidecar_lists_store_names_once_each() {
        let layer =
            SettingsLayer::parse_sidecar(Path::new("r.toml"), "key_value_stores = [\"b\", \"a\"]")
                .unwrap();
        assert_eq!(layer.key_value_stores, Some(vec!["a".into(), "b".into()]));
        for (text, says) in [
            ("key_value_stores = \"default\"", "must be a list"),
            ("key_value_stores = [\"a\", \"a\"]", "listed twice"),
            ("key_value_stores = [\"../x\"]", "not a store name"),
        ] {
            let error = SettingsLayer::parse_sidecar(Path::new("r.toml"), text).unwrap_err();
            assert_eq!(error.key.as_deref(), Some("key_value_stores"));
            assert!(error.message.contains(says), "{text}: {}", error.message);
        }
    }
}

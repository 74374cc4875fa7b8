//! Key-value stores for handlers, through the standard
//! `wasi:keyvalue@0.2.0-draft2` interfaces (`store`, `atomics`, `batch`).
//!
//! Linked for every route, granted per route: a guest opens only the
//! stores its sidecar lists in `key_value_stores`; any other name is
//! `error::access-denied`, and the log names the key to add. Each store
//! lives where `--config`'s `[key_value.NAME]` says: in the server's data
//! folder ([`embedded`], the default for a store no table names) or on a
//! Redis server ([`redis`]). Keys and values are checked against the
//! store's `max_key_size` and `max_value_size` before anything is sent;
//! every operation ends within the route's timeout; a store that fails
//! gives the guest `error::other` with the reason, never a trap.

mod embedded;
mod guest;
mod metrics;
mod redis;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

pub use embedded::prepare_dir;
pub use guest::{KvCtx, KvView, add_to_linker};
pub use metrics::KvMetrics;

use self::embedded::{Embedded, WriteOp};
use self::redis::RedisStore;
use crate::settings::{Backend, StoreConfig};

/// Most keys in one page of `list-keys`.
pub const LIST_PAGE: usize = 1000;

/// The default data folder, under the current folder.
pub const DEFAULT_DATA_DIR: &str = ".wedge/data";

/// One page of keys, and the cursor for the next (`None`: the last).
#[derive(Debug, Default)]
pub struct KeyPage {
    /// The keys, without the store's prefix.
    pub keys: Vec<String>,
    /// Where the next page starts.
    pub cursor: Option<String>,
}

/// Why an `increment` could not count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CounterError {
    /// The key holds something other than an integer's decimal text.
    #[error("the key's value is not an integer (a counter is stored as its decimal text)")]
    NotAnInteger,
    /// The sum does not fit a signed 64-bit integer.
    #[error("the counter would overflow a signed 64-bit integer")]
    Overflow,
}

impl CounterError {
    fn from_redis(error: &::redis::RedisError) -> CounterError {
        if error.to_string().contains("overflow") {
            CounterError::Overflow
        } else {
            CounterError::NotAnInteger
        }
    }
}

/// `current` (absent: 0) plus `delta`, as `INCRBY` counts.
fn add_to_counter(current: Option<&[u8]>, delta: i64) -> Result<i64, CounterError> {
    let current = match current {
        None => 0,
        Some(text) => std::str::from_utf8(text)
            .ok()
            .and_then(|text| text.parse::<i64>().ok())
            .ok_or(CounterError::NotAnInteger)?,
    };
    current.checked_add(delta).ok_or(CounterError::Overflow)
}

/// Where one store's operations go.
#[derive(Clone)]
enum Place {
    Embedded(Arc<Embedded>),
    Redis(Arc<RedisStore>),
}

/// Every store the server knows: the configured ones, and the embedded
/// database that holds any other granted name.
pub struct Stores {
    /// `[key_value.NAME]`'s stores, made once at start-up.
    configured: BTreeMap<String, Store>,
    embedded: Arc<Embedded>,
    /// The limits of a store that no table names.
    defaults: Arc<StoreConfig>,
    metrics: KvMetrics,
}

impl Stores {
    /// Opens the data folder's database (refusing a folder another server
    /// holds) and prepares each `[key_value.NAME]` store; Redis stores
    /// connect at their first operation.
    pub fn open(
        data_dir: &Path,
        configured: &BTreeMap<String, StoreConfig>,
        metrics: KvMetrics,
    ) -> anyhow::Result<Stores> {
        let data_dir = prepare_dir(data_dir)?;
        let embedded = Arc::new(Embedded::open(&data_dir)?);
        let mut stores = BTreeMap::new();
        for (name, config) in configured {
            let place = match &config.backend {
                Backend::Embedded => Place::Embedded(embedded.clone()),
                Backend::Redis { url, prefix } => {
                    Place::Redis(Arc::new(RedisStore::new(name, url, prefix)?))
                }
            };
            let store = Store {
                name: Arc::from(name.as_str()),
                config: Arc::new(config.clone()),
                place,
                metrics: metrics.clone(),
            };
            stores.insert(name.clone(), store);
        }
        Ok(Stores {
            configured: stores,
            embedded,
            defaults: Arc::new(StoreConfig::default()),
            metrics,
        })
    }

    /// The embedded database's file.
    pub fn database_file(&self) -> &Path {
        self.embedded.path()
    }

    /// The Redis stores, as (name, address).
    pub fn redis_stores(&self) -> impl Iterator<Item = (&str, &str)> {
        self.redis().map(|(name, store)| (name, store.address()))
    }

    fn redis(&self) -> impl Iterator<Item = (&str, &Arc<RedisStore>)> {
        self.configured
            .iter()
            .filter_map(|(name, store)| match &store.place {
                Place::Redis(store) => Some((name.as_str(), store)),
                Place::Embedded(_) => None,
            })
    }

    /// Pings each Redis store until it answers, once a second, logging the
    /// first failure of each: until then `/readyz` says it is unreachable
    /// ([`Stores::unreached`]). Returns once every Redis store has answered.
    pub async fn reach_redis(&self) {
        let mut logged = std::collections::BTreeSet::new();
        loop {
            let mut waiting = false;
            for (name, store) in self.redis() {
                if store.reached() {
                    continue;
                }
                match store.ping().await {
                    Ok(()) => tracing::info!(
                        "key-value store {name:?}: Redis at {} answers",
                        store.address()
                    ),
                    Err(error) => {
                        waiting = true;
                        if logged.insert(name.to_owned()) {
                            tracing::warn!(
                                "key-value store {name:?}: {error}; /readyz answers 503 until \
                                 it answers"
                            );
                        }
                    }
                }
            }
            if !waiting {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }

    /// The Redis stores that have not answered since start-up, said for
    /// `/readyz`.
    pub fn unreached(&self) -> Vec<String> {
        self.redis()
            .filter(|(_, store)| !store.reached())
            .map(|(name, store)| {
                format!(
                    "key-value store {name:?}: Redis at {} has not answered",
                    store.address()
                )
            })
            .collect()
    }

    /// The store `name`, as a guest opens it: a configured one, or an
    /// embedded one with the default limits.
    fn store(&self, name: &str) -> Store {
        match self.configured.get(name) {
            Some(store) => store.clone(),
            None => Store {
                name: Arc::from(name),
                config: self.defaults.clone(),
                place: Place::Embedded(self.embedded.clone()),
                metrics: self.metrics.clone(),
            },
        }
    }
}

/// One opened store: a guest's `bucket`.
#[derive(Clone)]
pub struct Store {
    name: Arc<str>,
    config: Arc<StoreConfig>,
    place: Place,
    metrics: KvMetrics,
}

/// Why an operation failed, said to the guest as `error::other`.
#[derive(Debug)]
enum OpError {
    /// The guest's key or value broke the store's limits: nothing was sent.
    Rejected(String),
    /// The store failed or did not answer in time.
    Failed(String),
}

impl OpError {
    fn message(self) -> String {
        match self {
            OpError::Rejected(message) | OpError::Failed(message) => message,
        }
    }
}

impl Store {
    fn check_key(&self, key: &str) -> Result<(), OpError> {
        if key.is_empty() {
            return Err(OpError::Rejected("the key is empty".into()));
        }
        if key.len() > self.config.max_key_size {
            return Err(OpError::Rejected(format!(
                "the key is {} bytes, over store {:?}'s max_key_size of {} bytes",
                key.len(),
                self.name,
                self.config.max_key_size
            )));
        }
        Ok(())
    }

    fn check_value(&self, key: &str, value: &[u8]) -> Result<(), OpError> {
        if value.len() > self.config.max_value_size {
            return Err(OpError::Rejected(format!(
                "the value for {key:?} is {} bytes, over store {:?}'s max_value_size of {} \
                 bytes; nothing was stored",
                value.len(),
                self.name,
                self.config.max_value_size
            )));
        }
        Ok(())
    }

    /// Runs one operation within `timeout`, counted in the metrics.
    async fn measured<T>(
        &self,
        op: &'static str,
        timeout: std::time::Duration,
        run: impl Future<Output = Result<T, OpError>>,
    ) -> Result<T, String> {
        let started = std::time::Instant::now();
        let outcome = match tokio::time::timeout(timeout, run).await {
            Ok(outcome) => outcome,
            Err(_) => Err(OpError::Failed(format!(
                "key-value store {:?} did not answer within the route's timeout of {timeout:?}",
                self.name
            ))),
        };
        let label = match &outcome {
            Ok(_) => "ok",
            Err(OpError::Rejected(_)) => "rejected",
            Err(OpError::Failed(_)) => "error",
        };
        self.metrics
            .record(&self.name, op, label, started.elapsed());
        outcome.map_err(OpError::message)
    }

    async fn get(&self, key: String) -> Result<Option<Vec<u8>>, OpError> {
        self.check_key(&key)?;
        match &self.place {
            Place::Embedded(db) => db.get(&self.name, &key),
            Place::Redis(redis) => redis.get(&key).await,
        }
        .map_err(OpError::Failed)
    }

    async fn set(&self, key: String, value: Vec<u8>) -> Result<(), OpError> {
        self.check_key(&key)?;
        self.check_value(&key, &value)?;
        match &self.place {
            Place::Embedded(db) => db.apply(&self.name, WriteOp::Set(key, value)).await,
            Place::Redis(redis) => redis.set(&key, value).await,
        }
        .map_err(OpError::Failed)
    }

    async fn delete(&self, key: String) -> Result<(), OpError> {
        self.check_key(&key)?;
        match &self.place {
            Place::Embedded(db) => db.apply(&self.name, WriteOp::Delete(key)).await,
            Place::Redis(redis) => redis.delete(&key).await,
        }
        .map_err(OpError::Failed)
    }

    async fn exists(&self, key: String) -> Result<bool, OpError> {
        self.check_key(&key)?;
        match &self.place {
            Place::Embedded(db) => db.exists(&self.name, &key),
            Place::Redis(redis) => redis.exists(&key).await,
        }
        .map_err(OpError::Failed)
    }

    async fn list_keys(&self, cursor: Option<String>) -> Result<KeyPage, OpError> {
        match &self.place {
            Place::Embedded(db) => db.list_keys(&self.name, cursor).await,
            Place::Redis(redis) => redis.list_keys(cursor).await,
        }
        .map_err(OpError::Failed)
    }

    async fn increment(&self, key: String, delta: i64) -> Result<i64, OpError> {
        self.check_key(&key)?;
        let counted = match &self.place {
            Place::Embedded(db) => db.increment(&self.name, key.clone(), delta).await,
            Place::Redis(redis) => redis.increment(&key, delta).await,
        }
        .map_err(OpError::Failed)?;
        counted.map_err(|error| OpError::Rejected(format!("cannot increment {key:?}: {error}")))
    }

    /// Sets `key` to `value` if it still holds `expected`; whether it did.
    async fn swap(
        &self,
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> Result<bool, OpError> {
        self.check_key(&key)?;
        self.check_value(&key, &value)?;
        match &self.place {
            Place::Embedded(db) => db.swap(&self.name, key, expected, value).await,
            Place::Redis(redis) => redis.swap(&key, expected, value).await,
        }
        .map_err(OpError::Failed)
    }

    async fn get_many(&self, keys: Vec<String>) -> Result<Vec<Option<Vec<u8>>>, OpError> {
        for key in &keys {
            self.check_key(key)?;
        }
        match &self.place {
            Place::Embedded(db) => db.get_many(&self.name, keys).await,
            Place::Redis(redis) => redis.get_many(&keys).await,
        }
        .map_err(OpError::Failed)
    }

    async fn set_many(&self, pairs: Vec<(String, Vec<u8>)>) -> Result<(), OpError> {
        for (key, value) in &pairs {
            self.check_key(key)?;
            self.check_value(key, value)?;
        }
        match &self.place {
            Place::Embedded(db) => db.apply(&self.name, WriteOp::SetMany(pairs)).await,
            Place::Redis(redis) => redis.set_many(pairs).await,
        }
        .map_err(OpError::Failed)
    }

    async fn delete_many(&self, keys: Vec<String>) -> Result<(), OpError> {
        for key in &keys {
            self.check_key(key)?;
        }
        match &self.place {
            Place::Embedded(db) => db.apply(&self.name, WriteOp::DeleteMany(keys)).await,
            Place::Redis(redis) => redis.delete_many(&keys).await,
        }
        .map_err(OpError::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_count_as_incrby_does() {
        assert_eq!(add_to_counter(None, 5), Ok(5));
        assert_eq!(add_to_counter(Some(b"-3"), 5), Ok(2));
        assert_eq!(
            add_to_counter(Some(b"three"), 1),
            Err(CounterError::NotAnInteger)
        );
        assert_eq!(
            add_to_counter(Some(i64::MAX.to_string().as_bytes()), 1),
            Err(CounterError::Overflow)
        );
    }
}

//! The Redis backend: a store shared by every Wedge server that names the
//! same Redis, through the `redis` crate's connection manager, which
//! reconnects by itself after an outage.
//!
//! Every key is the store's prefix followed by the guest's key, so stores
//! (and other users of the database) do not see each other's keys.
//! `increment` is `INCRBY`; the compare-and-swap is a Lua script, so it
//! runs exactly once, atomically, on the server; `list-keys` pages with
//! `SCAN`; batches are `MGET`, `MSET` and `DEL`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands as _, Client, RedisError, Script};
use tokio::sync::OnceCell;

use super::{CounterError, KeyPage, LIST_PAGE};
use crate::settings::Backend;

/// How long connecting may take before the operation fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one command may take before the operation fails.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Sets `KEYS[1]` to `ARGV[3]` only if it holds `ARGV[2]` (`ARGV[1]` is
/// `1`) or is absent (`ARGV[1]` is `0`); 1 if it did.
const SWAP: &str = r"
local current = redis.call('GET', KEYS[1])
local absent = current == false
if (ARGV[1] == '0' and absent) or (ARGV[1] == '1' and not absent and current == ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[3])
  return 1
end
return 0
";

/// One `[key_value.NAME]` store with `backend = "redis"`.
pub struct RedisStore {
    name: String,
    client: Client,
    /// `HOST:PORT/DB`, for messages (the URL may hold a password).
    address: String,
    prefix: String,
    /// Made at the first operation, on the serving thread that runs it;
    /// after that it reconnects by itself.
    connection: OnceCell<ConnectionManager>,
    /// Whether the last operation failed to reach Redis, so an outage is
    /// logged once, and its end once.
    down: AtomicBool,
    /// Whether Redis has answered since the server started (`/readyz`).
    reached: AtomicBool,
    swap: Script,
}

/// Why an operation failed: Redis unreachable or refusing, said for the guest.
pub type Failure = String;

impl RedisStore {
    /// A store on the Redis at `url`; connects at its first operation.
    pub fn new(name: &str, url: &str, prefix: &str) -> anyhow::Result<RedisStore> {
        let client = Client::open(url).map_err(|error| {
            anyhow::anyhow!(
                "--config [key_value.{name}] url: {error}; write \"redis://HOST:PORT/DB\""
            )
        })?;
        Ok(RedisStore {
            name: name.to_owned(),
            client,
            address: Backend::redis_address(url).to_owned(),
            prefix: prefix.to_owned(),
            connection: OnceCell::new(),
            down: AtomicBool::new(false),
            reached: AtomicBool::new(false),
            swap: Script::new(SWAP),
        })
    }

    /// `HOST:PORT/DB`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Whether Redis has answered since the server started.
    pub fn reached(&self) -> bool {
        self.reached.load(Ordering::Relaxed)
    }

    /// Pings Redis on a connection of its own, at start-up: a store whose
    /// Redis cannot be reached is said in the log and keeps `/readyz` at
    /// 503 until it answers.
    pub async fn ping(&self) -> Result<(), Failure> {
        let attempt = async {
            let mut connection = self.client.get_multiplexed_async_connection().await?;
            redis::cmd("PING").query_async::<()>(&mut connection).await
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(())) => {
                self.reached.store(true, Ordering::Relaxed);
                Ok(())
            }
            Ok(Err(error)) => Err(self.failed(&error)),
            Err(_) => Err(format!(
                "Redis at {} did not answer within {CONNECT_TIMEOUT:?}",
                self.address
            )),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    async fn connection(&self) -> Result<ConnectionManager, Failure> {
        let connection = self
            .connection
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            })
            .await
            .map_err(|error| self.failed(&error))?;
        Ok(connection.clone())
    }

    /// Runs one command; logs the start and the end of an outage once each.
    async fn run<T>(
        &self,
        command: impl AsyncFnOnce(&mut ConnectionManager) -> Result<T, RedisError>,
    ) -> Result<T, Failure> {
        let mut connection = self.connection().await?;
        match command(&mut connection).await {
            Ok(value) => {
                self.reached.store(true, Ordering::Relaxed);
                if self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        store = %self.name,
                        "key-value store {:?}: Redis at {} answers again",
                        self.name,
                        self.address
                    );
                }
                Ok(value)
            }
            Err(error) => Err(self.failed(&error)),
        }
    }

    fn failed(&self, error: &RedisError) -> Failure {
        let unreachable = error.is_io_error()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.is_timeout();
        if unreachable {
            if !self.down.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    store = %self.name,
                    "key-value store {:?}: Redis at {} is unreachable ({error}); operations \
                     fail until it answers again",
                    self.name,
                    self.address
                );
            }
            format!(
                "key-value store {:?} is unavailable: Redis at {} is unreachable",
                self.name, self.address
            )
        } else {
            format!(
                "key-value store {:?}: Redis answered an error: {error}",
                self.name
            )
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Failure> {
        let key = self.key(key);
        self.run(async move |c| c.get(key).await).await
    }

    pub async fn set(&self, key: &str, value: Vec<u8>) -> Result<(), Failure> {
        let key = self.key(key);
        self.run(async move |c| c.set(key, value).await).await
    }

    pub async fn delete(&self, key: &str) -> Result<(), Failure> {
        let key = self.key(key);
        self.run(async move |c| c.del(key).await).await
    }

    pub async fn exists(&self, key: &str) -> Result<bool, Failure> {
        let key = self.key(key);
        self.run(async move |c| c.exists(key).await).await
    }

    pub async fn increment(
        &self,
        key: &str,
        delta: i64,
    ) -> Result<Result<i64, CounterError>, Failure> {
        let key = self.key(key);
        let outcome = self
            .run(async move |c| match c.incr::<_, _, i64>(key, delta).await {
                Ok(value) => Ok(Ok(value)),
                // Not an integer, or the sum out of range: the guest's error.
                Err(error)
                    if error.kind()
                        == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) =>
                {
                    Ok(Err(CounterError::from_redis(&error)))
                }
                Err(error) => Err(error),
            })
            .await?;
        Ok(outcome)
    }

    /// Sets `key` to `value` if it still holds `expected`; whether it did.
    pub async fn swap(
        &self,
        key: &str,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> Result<bool, Failure> {
        let key = self.key(key);
        let swap = &self.swap;
        self.run(async move |c| {
            let mut invocation = swap.key(key);
            match &expected {
                Some(expected) => invocation.arg("1").arg(expected.as_slice()),
                None => invocation.arg("0").arg(""),
            };
            let swapped: i64 = invocation.arg(value).invoke_async(c).await?;
            Ok(swapped == 1)
        })
        .await
    }

    pub async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, Failure> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = keys.iter().map(|key| self.key(key)).collect();
        self.run(async move |c| redis::cmd("MGET").arg(&keys).query_async(c).await)
            .await
    }

    pub async fn set_many(&self, pairs: Vec<(String, Vec<u8>)>) -> Result<(), Failure> {
        if pairs.is_empty() {
            return Ok(());
        }
        let pairs: Vec<(String, Vec<u8>)> = pairs
            .into_iter()
            .map(|(key, value)| (self.key(&key), value))
            .collect();
        self.run(async move |c| c.mset(&pairs).await).await
    }

    pub async fn delete_many(&self, keys: &[String]) -> Result<(), Failure> {
        if keys.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = keys.iter().map(|key| self.key(key)).collect();
        self.run(async move |c| c.del(&keys).await).await
    }

    /// One `SCAN` step over the store's prefix. Redis may return fewer keys
    /// than asked, or none, with more to come; and, as `SCAN` does, a key
    /// may appear on two pages if the keyspace is resized between them.
    pub async fn list_keys(&self, cursor: Option<String>) -> Result<KeyPage, Failure> {
        let cursor: u64 = match cursor.as_deref() {
            None => 0,
            Some(text) => text
                .parse()
                .map_err(|_| format!("{text:?} is not a cursor this store returned"))?,
        };
        let pattern = format!("{}*", self.prefix);
        let count = LIST_PAGE;
        let (next, keys): (u64, Vec<String>) = self
            .run(async move |c| {
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(count)
                    .query_async(c)
                    .await
            })
            .await?;
        let keys = keys
            .into_iter()
            .filter_map(|key| key.strip_prefix(&self.prefix).map(str::to_owned))
            .collect();
        Ok(KeyPage {
            keys,
            cursor: (next != 0).then(|| next.to_string()),
        })
    }
}

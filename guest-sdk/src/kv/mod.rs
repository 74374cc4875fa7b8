//! Key-value stores: state that outlives the request.
//!
//! Wedge runs every request in a fresh instance, so a handler remembers
//! nothing by itself. A [`Store`] is a named key-value store the host
//! keeps: keys are strings, values bytes (or JSON, with
//! [`get_json`](Store::get_json) and [`set_json`](Store::set_json)). A
//! route opens only the stores its sidecar `.toml` lists:
//!
//! ```toml
//! key_value_stores = ["default"]
//! ```
//!
//! Any other name is [`Error::AccessDenied`], whose message names the entry
//! to add. Underneath is the standard `wasi:keyvalue` interface
//! (`0.2.0-draft2`), so the component runs on any host that provides it.
//!
//! # A visit counter
//!
//! ```
//! use wedge_sdk::{Error, Json, Request, kv};
//!
//! #[wedge_sdk::handler]
//! async fn handler(_request: Request) -> Result<Json<serde_json::Value>, Error> {
//!     let store = kv::Store::open("default")?;
//!     let visits = store.increment("visits", 1)?;
//!     Ok(Json(serde_json::json!({ "visits": visits })))
//! }
//! ```
//!
//! # What the host guarantees
//!
//! - Each operation is atomic on its key, and a route reads its own writes.
//!   Two requests that read a value, change it and write it back can lose
//!   one of the changes: [`increment`](Store::increment) counts atomically,
//!   and [`update`](Store::update) (or [`update_json`](Store::update_json))
//!   makes any read-change-write safe with a compare-and-swap.
//! - `increment` keeps a counter as its decimal text (as Redis's `INCRBY`
//!   does): after `increment("hits", 5)`, `get("hits")` is `b"5"`.
//!   Incrementing a value that is not a decimal integer is
//!   [`Error::Other`].
//! - The batch operations ([`get_many`](Store::get_many),
//!   [`set_many`](Store::set_many), [`delete_many`](Store::delete_many))
//!   save round trips, not atomicity: a failure midway may leave some keys
//!   written.
//! - Keys are non-empty and at most 1 KiB, values at most 1 MiB (Wedge's
//!   defaults): anything larger is [`Error::Other`] and nothing is stored.
//! - A store that fails (its backend is down) is [`Error::Other`], never a
//!   crash: a handler that passes it on with `?` answers `503`.
//!
//! # Errors
//!
//! Every operation returns a [`kv::Error`](Error); with `?` in a handler it
//! becomes a [`wedge_sdk::Error`](crate::Error) with the status
//! [`Error::status`] gives (`503` for a store that failed, `500` for a
//! store the route may not open), its message written to the log.

mod bindings;
mod error;
#[cfg(feature = "json")]
mod json;
mod update;

use std::collections::HashMap;
use std::fmt;

pub use error::Error;
pub use update::UPDATE_ATTEMPTS;

use bindings::{atomics, batch, store};

/// An open key-value store.
///
/// Opening is cheap: open the store in each handler that needs it.
///
/// ```
/// use wedge_sdk::{Error, Request, RequestExt as _, StatusCode, kv};
///
/// /// GET /api/notes/[name]
/// async fn show(request: Request) -> Result<Vec<u8>, Error> {
///     let name: String = request.param("name")?;
///     let store = kv::Store::open("default")?;
///     let note = store.get(&format!("note:{name}"))?;
///     note.ok_or_else(|| Error::new(StatusCode::NOT_FOUND, format!("no note {name}")))
/// }
/// ```
pub struct Store {
    name: String,
    bucket: store::Bucket,
}

/// One page of a store's keys, from [`Store::list_keys`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPage {
    /// The keys on this page, in no particular order.
    pub keys: Vec<String>,
    /// Where the next page starts; `None` on the last page.
    pub cursor: Option<String>,
}

impl Store {
    /// Opens the store called `name`: [`Error::AccessDenied`] unless the
    /// route's sidecar lists it in `key_value_stores`,
    /// [`Error::NoSuchStore`] if the host has no such store.
    ///
    /// ```
    /// use wedge_sdk::kv;
    ///
    /// fn sessions() -> Result<kv::Store, kv::Error> {
    ///     kv::Store::open("sessions")
    /// }
    /// ```
    pub fn open(name: &str) -> Result<Store, Error> {
        let bucket = store::open(name).map_err(|error| Error::from_host(name, error))?;
        Ok(Store {
            name: name.to_owned(),
            bucket,
        })
    }

    /// The name the store was opened with.
    ///
    /// ```
    /// use wedge_sdk::kv;
    ///
    /// fn describe(store: &kv::Store) -> String {
    ///     format!("store {}", store.name())
    /// }
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value of `key`; `None` if it has none.
    ///
    /// ```
    /// use wedge_sdk::kv;
    ///
    /// fn greeting(store: &kv::Store) -> Result<String, kv::Error> {
    ///     let bytes = store.get("greeting")?.unwrap_or_else(|| b"hello".to_vec());
    ///     Ok(String::from_utf8_lossy(&bytes).into_owned())
    /// }
    /// ```
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.bucket.get(key).map_err(|error| self.error(error))
    }

    /// Sets `key` to `value`, replacing any value it had.
    ///
    /// ```
    /// use wedge_sdk::kv;
    ///
    /// fn remember(store: &kv::Store, user: u64, theme: &str) -> Result<(), kv::Error> {
    ///     store.set(&format!("theme:{user}"), theme)
    /// }
    /// ```
    pub fn set(&self, key: &str, value: impl AsRef<[u8]>) -> Result<(), Error> {
        self.bucket
            .set(key, value.as_ref())
            .map_err(|error| self.error(error))
    }

    /// Removes `key` and its value; nothing happens if it has none.
    ///
    /// ```
    /// use wedge_sdk::kv;
    ///
    /// fn log_out(store: &kv::Store, session: &str) -> Result<(), kv::Error> {
    ///     store.delete(&format!("session:{session}"))
    /// }
    /// ```
    pub fn delete(&self, key: &str) -> Result<(), Error> {
        self.bucket.delete(key).map_err(|error| self.error(error))
    }

    /// Whether `key` has a value, without reading it.
    ///
    /// ```
    /// use wedge_sdk::kv;
    ///
    /// fn taken(store: &kv::Store, username: &str) -> Result<bool, kv::Error> {
    ///     store.exists(&format!("user:{username}"))
    /// }
    /// ```
    pub fn exists(&self, key: &str) -> Result<bool, Error> {
        self.bucket.exists(key).map_err(|error| self.error(error))
    }

    /// Adds `delta` (which may be negative) to the counter at `key`
    /// atomically and returns its new value; a key with no value counts
    /// from `0`. The counter is stored as its decimal text, so [`get`]
    /// reads `b"5"`; a value that is not a decimal integer is
    /// [`Error::Other`].
    ///
    /// [`get`]: Store::get
    ///
    /// ```
    /// use wedge_sdk::kv;
    ///
    /// fn next_order_number(store: &kv::Store) -> Result<i64, kv::Error> {
    ///     store.increment("orders:next", 1)
    /// }
    /// ```
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, Error> {
        atomics::increment(&self.bucket, key, delta).map_err(|error| self.error(error))
    }

    /// One page of the store's keys: pass `None` for the first, then each
    /// page's [`cursor`](KeyPage::cursor) until it is `None`. The host
    /// decides the page size (Wedge's pages hold at most 1000 keys). For
    /// all the keys at once, see [`keys`](Store::keys).
    ///
    /// ```
    /// use wedge_sdk::kv;
    ///
    /// fn count_keys(store: &kv::Store) -> Result<usize, kv::Error> {
    ///     let (mut count, mut cursor) = (0, None);
    ///     loop {
    ///         let page = store.list_keys(cursor.as_deref())?;
    ///         count += page.keys.len();
    ///         cursor = page.cursor;
    ///         if cursor.is_none() {
    ///             return Ok(count);
    ///         }
    ///     }
    /// }
    /// ```
    pub fn list_keys(&self, cursor: Option<&str>) -> Result<KeyPage, Error> {
        let page = self
            .bucket
            .list_keys(cursor)
            .map_err(|error| self.error(error))?;
        Ok(KeyPage {
            keys: page.keys,
            cursor: page.cursor,
        })
    }

    /// Every key in the store, in no particular order, read page by page
    /// with [`list_keys`](Store::list_keys). Keys written while it runs
    /// may be missed.
    ///
    /// ```
    /// use wedge_sdk::kv;
    ///
    /// fn session_keys(store: &kv::Store) -> Result<Vec<String>, kv::Error> {
    ///     let mut keys = store.keys()?;
    ///     keys.retain(|key| key.starts_with("session:"));
    ///     keys.sort();
    ///     Ok(keys)
    /// }
    /// ```
    pub fn keys(&self) -> Result<Vec<String>, Error> {
        all_keys(|cursor| self.list_keys(cursor))
    }

    /// The values of `keys`, in the same order: `None` for a key with no
    /// value. One call to the host, however many keys.
    ///
    /// ```
    /// use wedge_sdk::kv;
    ///
    /// fn prices(store: &kv::Store, items: &[&str]) -> Result<Vec<Option<Vec<u8>>>, kv::Error> {
    ///     let keys: Vec<String> = items.iter().map(|item| format!("price:{item}")).collect();
    ///     store.get_many(&keys)
    /// }
    /// ```
    pub fn get_many<K: AsRef<str>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<Vec<Option<Vec<u8>>>, Error> {
        let keys = owned_keys(keys);
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let found = batch::get_many(&self.bucket, &keys).map_err(|error| self.error(error))?;
        Ok(in_order_of(&keys, found))
    }

    /// Sets each key to its value; one call to the host. Not atomic: if it
    /// fails, some of the keys may have been written.
    ///
    /// ```
    /// use wedge_sdk::kv;
    ///
    /// fn save_settings(store: &kv::Store, user: u64) -> Result<(), kv::Error> {
    ///     store.set_many([
    ///         (format!("theme:{user}"), "dark"),
    ///         (format!("language:{user}"), "nb"),
    ///     ])
    /// }
    /// ```
    pub fn set_many<K: AsRef<str>, V: AsRef<[u8]>>(
        &self,
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(), Error> {
        let entries: Vec<(String, Vec<u8>)> = entries
            .into_iter()
            .map(|(key, value)| (key.as_ref().to_owned(), value.as_ref().to_vec()))
            .collect();
        if entries.is_empty() {
            return Ok(());
        }
        batch::set_many(&self.bucket, &entries).map_err(|error| self.error(error))
    }

    /// Removes each key and its value; one call to the host. Not atomic: if
    /// it fails, some of the keys may have been removed.
    ///
    /// ```
    /// use wedge_sdk::kv;
    ///
    /// fn clear_sessions(store: &kv::Store) -> Result<(), kv::Error> {
    ///     let keys = store.keys()?;
    ///     store.delete_many(keys.iter().filter(|key| key.starts_with("session:")))
    /// }
    /// ```
    pub fn delete_many<K: AsRef<str>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<(), Error> {
        let keys = owned_keys(keys);
        if keys.is_empty() {
            return Ok(());
        }
        batch::delete_many(&self.bucket, &keys).map_err(|error| self.error(error))
    }

    /// Changes the value of `key` with `change` atomically, however many
    /// requests change it at once, and returns the value it holds then.
    ///
    /// `change` gets the current value (`None` if there is none) and
    /// returns the new one, or `Ok(None)` to leave the value as it is.
    /// Its value is written only if nobody wrote `key` in the meantime
    /// (a compare-and-swap); if somebody did, `change` runs again on the
    /// newer value, so it must not do anything but compute. After
    /// [`UPDATE_ATTEMPTS`] lost races it gives up with
    /// [`Error::Contended`]. Its error type is `change`'s, into which a
    /// [`kv::Error`](Error) converts: [`wedge_sdk::Error`](crate::Error)
    /// or `kv::Error` itself. Where `change` only uses `?`, name that type
    /// for the compiler: `|old| -> Result<_, Error> { … }`.
    ///
    /// ```
    /// use wedge_sdk::{Error, StatusCode, kv};
    ///
    /// /// Takes one seat, or answers 409 if none is left.
    /// fn book(store: &kv::Store, show: &str) -> Result<(), Error> {
    ///     store.update(&format!("seats:{show}"), |seats| -> Result<_, Error> {
    ///         let left: u32 = match seats {
    ///             Some(text) => std::str::from_utf8(text)?.parse()?,
    ///             None => 0,
    ///         };
    ///         if left == 0 {
    ///             return Err(Error::new(StatusCode::CONFLICT, "sold out"));
    ///         }
    ///         Ok(Some((left - 1).to_string().into_bytes()))
    ///     })?;
    ///     Ok(())
    /// }
    /// ```
    pub fn update<E: From<Error>>(
        &self,
        key: &str,
        change: impl FnMut(Option<&[u8]>) -> Result<Option<Vec<u8>>, E>,
    ) -> Result<Option<Vec<u8>>, E> {
        let cas = atomics::Cas::new(&self.bucket, key).map_err(|error| self.error(error))?;
        update::run(cas, UPDATE_ATTEMPTS, change).map_err(|failure| match failure {
            update::Failure::Change(error) => error,
            update::Failure::Store(error) => self.error(error).into(),
            update::Failure::Contended => Error::Contended {
                store: self.name.clone(),
                key: key.to_owned(),
                attempts: UPDATE_ATTEMPTS,
            }
            .into(),
        })
    }

    /// A host error from an operation on this store.
    fn error(&self, error: store::Error) -> Error {
        Error::from_host(&self.name, error)
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("name", &self.name).finish()
    }
}

/// `keys` as the owned strings the host's batch calls take.
fn owned_keys<K: AsRef<str>>(keys: impl IntoIterator<Item = K>) -> Vec<String> {
    keys.into_iter()
        .map(|key| key.as_ref().to_owned())
        .collect()
}

/// Every key, following `page`'s cursors from the first page to the last.
fn all_keys(
    mut page: impl FnMut(Option<&str>) -> Result<KeyPage, Error>,
) -> Result<Vec<String>, Error> {
    let mut keys = Vec::new();
    let mut cursor = None;
    loop {
        let next = page(cursor.as_deref())?;
        keys.extend(next.keys);
        cursor = next.cursor;
        if cursor.is_none() {
            return Ok(keys);
        }
    }
}

/// The values `get-many` found, lined up with the `keys` asked for. The
/// host answers key-value pairs (and `none` for a missing key); matching
/// them by key keeps the answer right whatever order they come in.
fn in_order_of(keys: &[String], found: Vec<Option<(String, Vec<u8>)>>) -> Vec<Option<Vec<u8>>> {
    let mut values: HashMap<String, Vec<u8>> = found.into_iter().flatten().collect();
    let last_use: HashMap<&str, usize> = keys
        .iter()
        .enumerate()
        .map(|(index, key)| (key.as_str(), index))
        .collect();
    keys.iter()
        .enumerate()
        .map(|(index, key)| {
            // A key asked for twice gets the value each time: moved out on
            // its last use, cloned before.
            if last_use[key.as_str()] == index {
                values.remove(key)
            } else {
                values.get(key).cloned()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| (*item).to_owned()).collect()
    }

    #[test]
    fn all_keys_follows_cursors_to_the_last_page() {
        let pages = [
            (None, &["a", "b"][..], Some("after-b")),
            (Some("after-b"), &["c"][..], Some("after-c")),
            (Some("after-c"), &[][..], None),
        ];
        let mut asked = Vec::new();
        let keys = all_keys(|cursor| {
            asked.push(cursor.map(str::to_owned));
            let (_, keys, next) = pages[asked.len() - 1];
            assert_eq!(cursor, pages[asked.len() - 1].0, "the cursor passed on");
            Ok(KeyPage {
                keys: strings(keys),
                cursor: next.map(str::to_owned),
            })
        })
        .unwrap();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(asked.len(), 3);
    }

    #[test]
    fn all_keys_stops_at_the_first_error() {
        let mut calls = 0;
        let error = all_keys(|_| {
            calls += 1;
            if calls == 1 {
                Ok(KeyPage {
                    keys: strings(&["a"]),
                    cursor: Some("next".into()),
                })
            } else {
                Err(Error::Other {
                    store: "default".into(),
                    message: "timeout".into(),
                })
            }
        })
        .unwrap_err();
        assert_eq!(error.to_string(), "key-value store \"default\": timeout");
        assert_eq!(calls, 2);
    }

    #[test]
    fn get_many_lines_values_up_with_the_keys_asked_for() {
        let keys = strings(&["a", "missing", "b", "a"]);
        let found = vec![
            Some(("b".to_owned(), b"2".to_vec())),
            None,
            Some(("a".to_owned(), b"1".to_vec())),
        ];
        let values = in_order_of(&keys, found);
        let expected: [Option<&[u8]>; 4] = [Some(b"1"), None, Some(b"2"), Some(b"1")];
        assert_eq!(values, expected.map(|value| value.map(<[u8]>::to_vec)));
    }
}

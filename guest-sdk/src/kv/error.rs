//! [`Error`]: why a key-value operation failed, and what to do about it.

use std::fmt;

use http::StatusCode;

use super::bindings::store;

/// Why a key-value operation failed.
///
/// Its message says what to do where there is something to do:
///
/// ```text
/// key-value store "default" denied by the host: add "default" to `key_value_stores` in this route's sidecar .toml
/// ```
///
/// With `?` in a handler it becomes a [`wedge_sdk::Error`](crate::Error)
/// with [this status](Error::status), whose message goes to the log and
/// not to the client (it may name the store's backend, or a key):
///
/// ```
/// use wedge_sdk::{Error, Request, kv};
///
/// async fn visits(_request: Request) -> Result<String, Error> {
///     let store = kv::Store::open("default")?; // a 500 if the sidecar does not grant it
///     let count = store.increment("visits", 1)?; // a 503 if the store is down
///     Ok(format!("visit number {count}"))
/// }
/// ```
///
/// Match on it to answer otherwise:
///
/// ```
/// use wedge_sdk::kv;
///
/// fn cached(cache: &kv::Store, key: &str) -> Result<Option<Vec<u8>>, kv::Error> {
///     match cache.get(key) {
///         Err(kv::Error::Other { .. }) => Ok(None), // a cache that is down is a miss
///         result => result,
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The host has no store called `store`.
    NoSuchStore {
        /// The name the route asked for.
        store: String,
    },
    /// The route may not open `store`: its sidecar's `key_value_stores`
    /// does not list it.
    AccessDenied {
        /// The name the route asked for.
        store: String,
    },
    /// The store failed or refused the operation: its backend is down, or
    /// the key or value broke one of the host's limits (an empty key, a key
    /// over 1 KiB, a value over 1 MiB, by default), or
    /// [`increment`](super::Store::increment) met a value that is not a
    /// decimal integer.
    Other {
        /// The store.
        store: String,
        /// What the host said.
        message: String,
    },
    /// [`update`](super::Store::update) lost the race for `key` to other
    /// writers on every one of its `attempts`.
    Contended {
        /// The store.
        store: String,
        /// The key being updated.
        key: String,
        /// How many times the change was tried.
        attempts: u32,
    },
    /// The value under `key` is not the JSON the caller expects, or the
    /// value given cannot be written as JSON.
    #[cfg(feature = "json")]
    Json {
        /// The store.
        store: String,
        /// The key read or written.
        key: String,
        /// What serde_json said.
        message: String,
    },
}

impl Error {
    /// The status a handler answers with when this error reaches it through
    /// `?`: `503 Service Unavailable` for [`Other`](Error::Other) (the store
    /// is down or refused a value, so a retry or a smaller value may work)
    /// and [`Contended`](Error::Contended) (a retry may win); `500` for the
    /// rest, which are mistakes in the route or its sidecar.
    ///
    /// ```
    /// use wedge_sdk::{StatusCode, kv};
    ///
    /// let denied = kv::Error::AccessDenied { store: "default".into() };
    /// assert_eq!(denied.status(), StatusCode::INTERNAL_SERVER_ERROR);
    /// ```
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Other { .. } | Error::Contended { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::NoSuchStore { .. } | Error::AccessDenied { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            #[cfg(feature = "json")]
            Error::Json { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The WIT error the host returned for an operation on `store`.
    pub(super) fn from_host(store: &str, error: store::Error) -> Error {
        let store = store.to_owned();
        match error {
            store::Error::NoSuchStore => Error::NoSuchStore { store },
            store::Error::AccessDenied => Error::AccessDenied { store },
            store::Error::Other(message) => Error::Other { store, message },
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoSuchStore { store } => write!(
                f,
                "the host has no key-value store \"{store}\": open one of the stores it is \
                 configured with"
            ),
            Error::AccessDenied { store } => write!(
                f,
                "key-value store \"{store}\" denied by the host: add \"{store}\" to \
                 `key_value_stores` in this route's sidecar .toml"
            ),
            Error::Other { store, message } => write!(f, "key-value store \"{store}\": {message}"),
            Error::Contended {
                store,
                key,
                attempts,
            } => write!(
                f,
                "key-value store \"{store}\": \"{key}\" changed under each of {attempts} attempts \
                 to update it; try again later"
            ),
            #[cfg(feature = "json")]
            Error::Json {
                store,
                key,
                message,
            } => write!(f, "key-value store \"{store}\", key \"{key}\": {message}"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IntoResponse as _;
    use crate::response::tests::body_text;

    #[test]
    fn host_errors_keep_the_store_name() {
        let cases = [
            (
                store::Error::NoSuchStore,
                Error::NoSuchStore {
                    store: "cache".into(),
                },
            ),
            (
                store::Error::AccessDenied,
                Error::AccessDenied {
                    store: "cache".into(),
                },
            ),
            (
                store::Error::Other("disk full".into()),
                Error::Other {
                    store: "cache".into(),
                    message: "disk full".into(),
                },
            ),
        ];
        for (host, expected) in cases {
            assert_eq!(Error::from_host("cache", host), expected);
        }
    }

    #[test]
    fn a_denied_store_names_the_sidecar_entry_to_add() {
        let denied = Error::AccessDenied {
            store: "sessions".into(),
        };
        assert_eq!(
            denied.to_string(),
            "key-value store \"sessions\" denied by the host: add \"sessions\" to \
             `key_value_stores` in this route's sidecar .toml"
        );
    }

    #[test]
    fn outages_and_contention_are_503s_and_mistakes_500s() {
        let store = || "default".to_owned();
        let cases = [
            (Error::NoSuchStore { store: store() }, 500),
            (Error::AccessDenied { store: store() }, 500),
            (
                Error::Other {
                    store: store(),
                    message: "connection refused".into(),
                },
                503,
            ),
            (
                Error::Contended {
                    store: store(),
                    key: "hits".into(),
                    attempts: 3,
                },
                503,
            ),
            #[cfg(feature = "json")]
            (
                Error::Json {
                    store: store(),
                    key: "todo:1".into(),
                    message: "expected value at line 1 column 1".into(),
                },
                500,
            ),
        ];
        for (error, status) in cases {
            assert_eq!(error.status(), status, "{error}");
        }
    }

    #[test]
    fn through_question_mark_the_status_holds_and_the_message_is_logged_only() {
        let error = crate::Error::from(Error::Other {
            store: "default".into(),
            message: "redis at 10.0.0.7:6379: connection refused".into(),
        });
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            error.to_string(),
            "key-value store \"default\": redis at 10.0.0.7:6379: connection refused"
        );
        assert_eq!(body_text(error.into_response()), "service unavailable");

        let denied = crate::Error::from(Error::AccessDenied {
            store: "default".into(),
        });
        assert_eq!(denied.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body_text(denied.into_response()), "internal server error");
    }
}

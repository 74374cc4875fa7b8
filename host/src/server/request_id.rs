//! Request ids: one per request, returned as `x-request-id` and carried by
//! every log line about the request (the access log, the guest's output,
//! traps). An incoming `x-request-id` is kept only if it is well formed, so
//! a client cannot forge log lines or flood them, and, with `--trust-proxy`,
//! only from a trusted proxy.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderMap, HeaderName};

/// The header name.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Makes ids unique within the process and unpredictable across processes.
pub struct RequestIds {
    seed: RandomState,
    next: AtomicU64,
}

impl RequestIds {
    pub fn new() -> RequestIds {
        RequestIds {
            seed: RandomState::new(),
            next: AtomicU64::new(0),
        }
    }

    /// The incoming id if `trusted` and well formed (`[A-Za-z0-9._-]{1,128}`),
    /// else a new one.
    pub fn for_request(&self, headers: &HeaderMap, trusted: bool) -> String {
        if trusted
            && let Some(id) = headers.get(X_REQUEST_ID).and_then(|v| v.to_str().ok())
            && is_well_formed(id)
        {
            return id.to_owned();
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}", self.seed.hash_one(n))
    }
}

fn is_well_formed(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_formed_incoming_id_is_kept_and_others_are_replaced() {
        let ids = RequestIds::new();
        let long = "a".repeat(129);
        for (incoming, kept) in [
            ("abc-123_x.y", true),
            ("", false),
            ("has space", false),
            ("line\\nbreak", false),
            ("ünïcode", false),
            (long.as_str(), false),
        ] {
            let mut headers = HeaderMap::new();
            if let Ok(value) = incoming.parse() {
                headers.insert(X_REQUEST_ID, value);
            }
            let id = ids.for_request(&headers, true);
            assert_eq!(id == incoming, kept, "{incoming:?} -> {id}");
            assert!(is_well_formed(&id));
            let id = ids.for_request(&headers, false);
            assert_ne!(id, incoming, "kept from an untrusted peer");
            assert!(is_well_formed(&id));
        }
        assert_ne!(
            ids.for_request(&HeaderMap::new(), true),
            ids.for_request(&HeaderMap::new(), true)
        );
    }
}

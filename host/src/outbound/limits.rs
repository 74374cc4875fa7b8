//! How many outbound connections a route may hold open, and how many DNS
//! lookups the whole server runs at once.
//!
//! Both wait rather than fail at once, as Cloudflare Workers queue a
//! connection over their per-request limit until another closes: a burst
//! slows down instead of breaking. The wait ends at the request's connect
//! deadline (the route's `timeout`, or the guest's `connect_timeout` if
//! shorter); then the guest sees `connection-limit-reached` (connections) or
//! `DNS-timeout` (lookups).

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use wasmtime_wasi_http::Error;

/// Outbound connections one route may have open at once, across all its
/// requests: Chrome's limit for a whole browser profile, far more than a
/// handler fanning out to a few APIs needs, and few enough that one route
/// cannot use up the process's file descriptors (which the listener,
/// every other route and the routes folder share).
pub const DEFAULT_MAX_OUTBOUND_CONNECTIONS: u32 = 256;

/// DNS lookups running at once in the whole server. Each holds a thread
/// (`getaddrinfo` blocks) from the runtime's blocking pool, which file
/// reads and compiles share; a lookup takes milliseconds, so 64 at once
/// allow thousands per second, while a guest asking for names whose
/// servers never answer (5 s per try) holds at most 64 threads.
pub const MAX_DNS_LOOKUPS: usize = 64;

/// Process-wide, as the blocking pool it protects is: every route's
/// lookups share it.
static DNS_LOOKUPS: Semaphore = Semaphore::const_new(MAX_DNS_LOOKUPS);

/// A route's `max_outbound_connections`, with the permits its requests
/// share: clones share them.
///
/// Compared by the cap alone: the permits are run-time state, and equal
/// settings keep the route's version, and so its permits, on reload.
#[derive(Clone)]
pub struct ConnectionCap {
    max: u32,
    open: Arc<Semaphore>,
}

impl ConnectionCap {
    /// A cap of `max` connections open at once.
    pub fn new(max: u32) -> ConnectionCap {
        let permits = usize::try_from(max)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        ConnectionCap {
            max,
            open: Arc::new(Semaphore::new(permits)),
        }
    }

    /// The cap.
    pub fn max(&self) -> u32 {
        self.max
    }

    /// Connections open now (or being opened).
    pub fn open(&self) -> usize {
        let max = usize::try_from(self.max).unwrap_or(usize::MAX);
        max.min(Semaphore::MAX_PERMITS) - self.open.available_permits()
    }

    /// Waits, until `deadline`, for room for one more connection; the
    /// permit is held until the connection is closed.
    pub(crate) async fn acquire(
        &self,
        deadline: Instant,
        route: &str,
    ) -> Result<OwnedSemaphorePermit, Error> {
        match tokio::time::timeout_at(deadline, self.open.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_closed)) => unreachable!("bug: a route's connection semaphore is never closed"),
            Err(_elapsed) => {
                tracing::warn!(
                    route,
                    max_outbound_connections = self.max,
                    "outbound request failed: the route had {} connections open until its \
                     deadline; raise `max_outbound_connections` in the route's sidecar, or \
                     close responses sooner",
                    self.max
                );
                Err(Error::ConnectionLimitReached)
            }
        }
    }
}

impl Default for ConnectionCap {
    fn default() -> ConnectionCap {
        ConnectionCap::new(DEFAULT_MAX_OUTBOUND_CONNECTIONS)
    }
}

impl PartialEq for ConnectionCap {
    fn eq(&self, other: &ConnectionCap) -> bool {
        self.max == other.max
    }
}

impl fmt::Debug for ConnectionCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionCap")
            .field("max", &self.max)
            .field("open", &self.open())
            .finish()
    }
}

/// Resolves `name` with the system resolver, within the server's cap on
/// lookups at once. The permit goes with the lookup onto its thread, so a
/// lookup the request stopped waiting for still counts until it returns.
pub(crate) async fn lookup(
    name: &str,
    port: u16,
    deadline: Instant,
) -> Result<Vec<SocketAddr>, Error> {
    lookup_within(&DNS_LOOKUPS, name, port, deadline).await
}

async fn lookup_within(
    lookups: &'static Semaphore,
    name: &str,
    port: u16,
    deadline: Instant,
) -> Result<Vec<SocketAddr>, Error> {
    let permit = match tokio::time::timeout_at(deadline, lookups.acquire()).await {
        Ok(Ok(permit)) => permit,
        Ok(Err(_closed)) => unreachable!("bug: the DNS lookup semaphore is never closed"),
        Err(_elapsed) => return Err(Error::DnsTimeout),
    };
    let name = name.to_owned();
    let resolving = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        (name.as_str(), port)
            .to_socket_addrs()
            .map(Iterator::collect::<Vec<_>>)
    });
    match tokio::time::timeout_at(deadline, resolving).await {
        Err(_elapsed) => Err(Error::DnsTimeout),
        Ok(Err(join)) => Err(Error::InternalError(Some(format!("DNS lookup: {join}")))),
        Ok(Ok(Err(err))) => Err(Error::DnsError {
            rcode: Some(err.to_string()),
            info_code: None,
        }),
        Ok(Ok(Ok(addrs))) => Ok(addrs),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_full_connection_cap_waits_then_fails_with_connection_limit_reached() {
        let cap = ConnectionCap::new(2);
        let soon = || Instant::now() + Duration::from_millis(100);
        let first = cap.acquire(soon(), "/r").await.unwrap();
        let _second = cap.acquire(soon(), "/r").await.unwrap();
        assert_eq!(cap.open(), 2);
        let third = cap.acquire(soon(), "/r").await;
        assert!(
            matches!(third, Err(Error::ConnectionLimitReached)),
            "{third:?}"
        );
        // A waiting request gets the first connection that closes.
        let waiting = tokio::spawn({
            let cap = cap.clone();
            async move {
                cap.acquire(Instant::now() + Duration::from_secs(10), "/r")
                    .await
                    .is_ok()
            }
        });
        drop(first);
        assert!(waiting.await.unwrap());
    }

    #[test]
    fn caps_compare_by_size_only_and_clones_share_permits() {
        let cap = ConnectionCap::new(3);
        assert_eq!(cap, ConnectionCap::new(3));
        assert_ne!(cap, ConnectionCap::new(4));
        assert_eq!(
            ConnectionCap::default().max(),
            DEFAULT_MAX_OUTBOUND_CONNECTIONS
        );
        let _held = cap.open.clone().try_acquire_owned().unwrap();
        assert_eq!(cap.clone().open(), 1);
    }

    #[tokio::test]
    async fn lookups_over_the_cap_wait_and_time_out_as_dns_timeout() {
        static LOOKUPS: Semaphore = Semaphore::const_new(1);
        let held = LOOKUPS.acquire().await.unwrap();
        let soon = Instant::now() + Duration::from_millis(100);
        let result = lookup_within(&LOOKUPS, "localhost", 80, soon).await;
        assert!(matches!(result, Err(Error::DnsTimeout)), "{result:?}");
        drop(held);
        let later = Instant::now() + Duration::from_secs(10);
        let addrs = lookup_within(&LOOKUPS, "localhost", 80, later)
            .await
            .unwrap();
        assert!(
            addrs.iter().all(|addr| addr.ip().is_loopback()),
            "{addrs:?}"
        );
        assert_eq!(LOOKUPS.available_permits(), 1, "the permit came back");
    }
}

//! `wedge_cache_requests_total{route,result}`, `wedge_cache_bytes`,
//! `wedge_cache_entries` and `wedge_cache_revalidations_total{route,outcome}`.
//! Labels are route patterns and fixed words, so the series are bounded by
//! the routes folder.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::CacheStatus;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Result {
    route: Arc<str>,
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Revalidation {
    route: Arc<str>,
    outcome: &'static str,
}

/// The response cache's metrics.
#[derive(Debug, Clone, Default)]
pub struct CacheMetrics {
    requests: Family<Result, Counter>,
    revalidations: Family<Revalidation, Counter>,
    bytes: Gauge,
    entries: Gauge,
}

impl CacheMetrics {
    /// Adds the metrics to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "cache_requests",
            "Requests to routes by what the response cache did (hit, miss, stale, bypass), \
             by route",
            self.requests.clone(),
        );
        registry.register(
            "cache_revalidations",
            "Background refreshes of stale cached responses, by route and outcome (answered: \
             the guest answered, stored if it may be; failed: it did not; busy: no instance \
             slot was free)",
            self.revalidations.clone(),
        );
        registry.register(
            "cache_bytes",
            "Bytes the response cache holds (bodies, headers and keys)",
            self.bytes.clone(),
        );
        registry.register(
            "cache_entries",
            "Keys in the response cache",
            self.entries.clone(),
        );
    }

    /// Counts one request to `route`.
    pub fn record(&self, route: &Arc<str>, status: CacheStatus) {
        self.requests
            .get_or_create(&Result {
                route: route.clone(),
                result: status.as_str(),
            })
            .inc();
    }

    /// Counts one background refresh of `route`.
    pub fn revalidated(&self, route: &Arc<str>, outcome: &'static str) {
        self.revalidations
            .get_or_create(&Revalidation {
                route: route.clone(),
                outcome,
            })
            .inc();
    }

    pub(super) fn set_size(&self, bytes: u64, entries: usize) {
        self.bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.entries.set(i64::try_from(entries).unwrap_or(i64::MAX));
    }
}

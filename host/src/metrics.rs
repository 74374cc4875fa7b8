//! What the admin listener's `/metrics` reports, in the Prometheus text
//! format (`prometheus-client`). Every label is a route pattern or a status
//! code, never a path, so the series are bounded by the routes folder.

use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::cache::CacheStats;
use crate::kv::KvMetrics;
use crate::loader::{LoadedRoute, same_error};
use crate::response_cache::{CacheMetrics, CacheStatus};
use crate::routing::RouteTable;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Request durations: 0.5 ms (a hello world) to 30 s (a slow upstream).
const DURATION_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Instantiation: tens of microseconds (a small Rust guest, memory kept
/// resident) to 100 ms (a large interpreter image).
const INSTANTIATION_BUCKETS: [f64; 12] = [
    0.000_025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
];

/// Where the count of log lines dropped comes from: the log writer, set up
/// once per process before any metrics exist (`cli`).
static LOG_LINES_DROPPED: OnceLock<Box<dyn Fn() -> u64 + Send + Sync>> = OnceLock::new();

/// Counts log lines the process's log writer dropped because its sink (the
/// terminal, a pipe) was slower than the server wrote; called once, when
/// logging is set up.
pub fn count_log_drops(dropped: impl Fn() -> u64 + Send + Sync + 'static) {
    let _ = LOG_LINES_DROPPED.set(Box::new(dropped));
}

/// The label of requests that matched no route (404s, redirects).
static NO_ROUTE: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(""));

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabel {
    route: Arc<str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteStatus {
    route: Arc<str>,
    status: u16,
}

type Histograms = Family<RouteLabel, Histogram, fn() -> Histogram>;

/// One request, as counted when its response ended.
#[derive(Debug)]
pub struct RequestRecord<'a> {
    /// The matched pattern, if any.
    pub route: Option<&'a Arc<str>>,
    /// The status sent.
    pub status: u16,
    /// From the request's arrival to its response's end.
    pub duration: Duration,
    /// How long the guest's instance took to create, if one ran.
    pub instantiation: Option<Duration>,
    /// Request body bytes the guest read.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// What the response cache did, if the request reached it.
    pub cache: Option<CacheStatus>,
}

/// The server's metrics, registered once at start-up.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteStatus, Counter>,
    request_duration: Histograms,
    instantiation: Histograms,
    instances: Gauge,
    bytes_in: Family<RouteLabel, Counter>,
    bytes_out: Family<RouteLabel, Counter>,
    reloads: Family<RouteLabel, Counter>,
    load_errors: Family<RouteLabel, Counter>,
    log_lines_dropped: Counter,
    response_cache: CacheMetrics,
}

impl Metrics {
    /// Registers every metric; `cache` is the loader's compile-cache
    /// counters, `kv` the key-value stores'.
    pub fn new(cache: &CacheStats, kv: &KvMetrics) -> Metrics {
        let mut registry = Registry::with_prefix("wedge");
        kv.register(&mut registry);
        let response_cache = CacheMetrics::default();
        response_cache.register(&mut registry);
        let requests = Family::default();
        registry.register(
            "requests",
            "Requests answered, by route pattern (empty: no route) and status code",
            requests.clone(),
        );
        let request_duration: Histograms =
            Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS));
        registry.register_with_unit(
            "request_duration",
            "From a request's arrival to the end of its response, by route",
            Unit::Seconds,
            request_duration.clone(),
        );
        let instantiation: Histograms =
            Family::new_with_constructor(|| Histogram::new(INSTANTIATION_BUCKETS));
        registry.register_with_unit(
            "instantiation_duration",
            "Time to create a request's guest instance, by route",
            Unit::Seconds,
            instantiation.clone(),
        );
        let instances = Gauge::default();
        registry.register(
            "instances_in_flight",
            "Guest instances running now",
            instances.clone(),
        );
        let bytes_in = Family::default();
        registry.register_with_unit(
            "request_body",
            "Request body bytes read by guests, by route",
            Unit::Bytes,
            bytes_in.clone(),
        );
        let bytes_out = Family::default();
        registry.register_with_unit(
            "response_body",
            "Response body bytes sent, by route",
            Unit::Bytes,
            bytes_out.clone(),
        );
        let reloads = Family::default();
        registry.register(
            "route_reloads",
            "New versions of a route swapped in by hot reload",
            reloads.clone(),
        );
        let load_errors = Family::default();
        registry.register(
            "route_load_errors",
            "Loads of a route's file (or sidecar) that failed",
            load_errors.clone(),
        );
        registry.register(
            "compile_cache_hits",
            "Components deserialized from the compile cache",
            cache.hits.clone(),
        );
        registry.register(
            "compile_cache_misses",
            "Components compiled because the compile cache did not hold them",
            cache.misses.clone(),
        );
        let log_lines_dropped = Counter::default();
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because the log's sink was slower than the server wrote",
            log_lines_dropped.clone(),
        );
        Metrics {
            registry,
            requests,
            request_duration,
            instantiation,
            instances,
            bytes_in,
            bytes_out,
            reloads,
            load_errors,
            log_lines_dropped,
            response_cache,
        }
    }

    /// The response cache's metrics, registered with the others.
    pub fn response_cache(&self) -> &CacheMetrics {
        &self.response_cache
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        if let Some(dropped) = LOG_LINES_DROPPED.get() {
            // The writer's count only grows: taking the larger keeps the
            // counter monotonic under concurrent renders.
            let counter = self.log_lines_dropped.inner();
            counter.fetch_max(dropped(), std::sync::atomic::Ordering::Relaxed);
        }
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            .expect("bug: writing to a String cannot fail");
        text
    }

    /// Counts one request whose response has ended.
    pub fn record_request(&self, request: &RequestRecord<'_>) {
        let route = request.route.unwrap_or(&NO_ROUTE).clone();
        let label = RouteLabel { route };
        self.request_duration
            .get_or_create(&label)
            .observe(request.duration.as_secs_f64());
        if let Some(instantiation) = request.instantiation {
            self.instantiation
                .get_or_create(&label)
                .observe(instantiation.as_secs_f64());
        }
        if request.bytes_in > 0 {
            self.bytes_in.get_or_create(&label).inc_by(request.bytes_in);
        }
        self.bytes_out
            .get_or_create(&label)
            .inc_by(request.bytes_out);
        if let Some(cache) = request.cache {
            self.response_cache.record(&label.route, cache);
        }
        let status = request.status;
        self.requests
            .get_or_create(&RouteStatus {
                route: label.route,
                status,
            })
            .inc();
    }

    /// An instance starts; it counts as in flight until the guard drops.
    pub fn instance_started(&self) -> InFlight {
        self.instances.inc();
        InFlight(self.instances.clone())
    }

    /// Counts what a load changed: every new version swapped in over
    /// `previous` (none at start-up) as a reload, every new failure as a
    /// load error.
    pub fn record_load(
        &self,
        previous: Option<&RouteTable<LoadedRoute>>,
        next: &RouteTable<LoadedRoute>,
    ) {
        for route in next.routes() {
            let new = &route.value;
            let old = previous.and_then(|table| table.by_file(&route.file));
            let old = old.map(|old| &old.value);
            let label = RouteLabel {
                route: new.name.clone(),
            };
            if previous.is_some()
                && new.state.is_ok()
                && old.is_none_or(|old| old.loaded_at != new.loaded_at)
            {
                self.reloads.get_or_create(&label).inc();
            }
            if let Some(error) = &new.last_error
                && !old.is_some_and(|old| same_error(old.last_error.as_ref(), Some(error)))
            {
                self.load_errors.get_or_create(&label).inc();
            }
        }
    }
}

/// A guest instance in flight; dropping it counts it out.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

//! `wedge_kv_operations_total{store,op,outcome}` and
//! `wedge_kv_operation_duration_seconds{store,op}`. Labels are store names
//! a sidecar granted and the interface's operation names, so the series
//! are bounded by the routes folder; a denied `open` is counted under no
//! store (its name is the guest's to choose).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Operation durations: 20 µs (an embedded read) to 5 s (Redis's timeout).
const BUCKETS: [f64; 12] = [
    0.00002, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 5.0,
];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Outcome {
    store: Arc<str>,
    op: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Operation {
    store: Arc<str>,
    op: &'static str,
}

type Durations = Family<Operation, Histogram, fn() -> Histogram>;

/// The key-value metrics, shared by every store.
#[derive(Debug, Clone)]
pub struct KvMetrics {
    operations: Family<Outcome, Counter>,
    durations: Durations,
}

impl Default for KvMetrics {
    fn default() -> KvMetrics {
        KvMetrics {
            operations: Family::default(),
            durations: Family::new_with_constructor(|| Histogram::new(BUCKETS)),
        }
    }
}

impl KvMetrics {
    /// Adds the metrics to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "kv_operations",
            "Key-value operations, by store, operation and outcome (ok; rejected: over a \
             limit, nothing sent; error: the store failed or timed out; denied: a store the \
             route is not granted)",
            self.operations.clone(),
        );
        registry.register_with_unit(
            "kv_operation_duration",
            "Time a key-value operation took, by store and operation",
            Unit::Seconds,
            self.durations.clone(),
        );
    }

    /// Counts one operation on `store`.
    pub fn record(
        &self,
        store: &Arc<str>,
        op: &'static str,
        outcome: &'static str,
        took: Duration,
    ) {
        let store = store.clone();
        self.durations
            .get_or_create(&Operation {
                store: store.clone(),
                op,
            })
            .observe(took.as_secs_f64());
        self.operations
            .get_or_create(&Outcome { store, op, outcome })
            .inc();
    }

    /// Counts an `open` the route was not granted.
    pub fn record_denied(&self) {
        self.operations
            .get_or_create(&Outcome {
                store: Arc::from(""),
                op: "open",
                outcome: "denied",
            })
            .inc();
    }
}

//! Prometheus metrics of the gateway. Labels carry models, endpoints,
//! statuses and upstream names — never keys or anything secret.

use std::cell::RefCell;
use std::collections::HashMap as StdMap;
use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Histogram};

/// Thread-local maps of handles: foldhash, not SipHash (keys are
/// endpoint and model names from the configuration).
type HashMap<K, V> = StdMap<K, V, foldhash::fast::RandomState>;

/// Latency buckets, in seconds, for request durations.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// One endpoint and model's handles. Looking a labelled metric up builds
/// its key (allocating each label) and searches the registry, so every
/// thread keeps the handles it has used; models come from the
/// configuration, so these stay few.
struct Finished {
    duration: Histogram,
    by_status: HashMap<u16, Counter>,
}

thread_local! {
    static FINISHED: RefCell<HashMap<&'static str, HashMap<String, Finished>>> =
        RefCell::new(HashMap::default());
}

pub fn request_finished(endpoint: &'static str, model: &str, status: u16, elapsed: Duration) {
    FINISHED.with_borrow_mut(|all| {
        let models = all.entry(endpoint).or_default();
        if !models.contains_key(model) {
            let duration = histogram!("keyward_gateway_request_duration_seconds", "endpoint" => endpoint, "model" => model.to_owned());
            models.insert(
                model.to_owned(),
                Finished {
                    duration,
                    by_status: HashMap::default(),
                },
            );
        }
        let Some(m) = models.get_mut(model) else {
            return;
        };
        m.by_status
            .entry(status)
            .or_insert_with(|| {
                counter!("keyward_gateway_requests_total", "endpoint" => endpoint, "model" => model.to_owned(), "status" => status.to_string())
            })
            .increment(1);
        m.duration.record(elapsed.as_secs_f64());
    });
}

/// A request refused before routing: bad key, missing permission, bad input, limits.
pub fn request_refused(reason: &'static str) {
    counter!("keyward_gateway_refused_total", "reason" => reason).increment(1);
}

pub fn upstream_error(upstream: &str, kind: &'static str) {
    counter!("keyward_upstream_errors_total", "upstream" => upstream.to_owned(), "kind" => kind)
        .increment(1);
}

pub fn ledger_queue_depth(depth: i64) {
    gauge!("keyward_ledger_queue_depth").set(depth as f64);
}

/// A ledger batch that could not be written (it is retried).
pub fn ledger_write_failed() {
    counter!("keyward_ledger_write_failures_total").increment(1);
}

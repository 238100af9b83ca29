//! Prometheus metrics of the gateway. Labels carry models, endpoints,
//! statuses and upstream names — never keys or anything secret.

use std::time::Duration;

use metrics::{counter, gauge, histogram};

/// Latency buckets, in seconds, for request durations.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

pub fn request_finished(endpoint: &'static str, model: &str, status: u16, elapsed: Duration) {
    let status = status.to_string();
    counter!("keyward_gateway_requests_total", "endpoint" => endpoint, "model" => model.to_owned(), "status" => status)
        .increment(1);
    histogram!("keyward_gateway_request_duration_seconds", "endpoint" => endpoint, "model" => model.to_owned())
        .record(elapsed.as_secs_f64());
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

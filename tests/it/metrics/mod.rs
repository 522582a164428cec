//! `/metrics`, `/healthz` and `/readyz` (issue #6), seen from outside: the real daemon, real
//! HTTP, real sockets. One module per topic:
//!
//! - [`corpus`]: the fixture corpus fed over the socket makes `/metrics` show exactly what
//!   was fed. The expectations come from the reviewed golden files of `golden.rs`
//!   (`tests/golden/*`: the import summary per fixture and its spans), not from the code
//!   under test: a count, a label, a bucket that differs fails.
//! - [`readyz`]: `/readyz` follows the queue's high-water mark and the inputs.
//! - [`labels`]: the label caps hold.
//! - [`http`]: bad HTTP clients get clean errors while spans keep flowing.
//!
//! The promtool checks of the exposition, the alert rules and the dashboard are in
//! `dashboards.rs`.

mod corpus;
mod http;
mod labels;
mod readyz;

use crate::support::{Daemon, http_agent};

// The metric names these tests and `dashboards.rs` read.
pub const RECEIVED: &str = "auditspan_events_received_total";
pub const INVALID: &str = "auditspan_events_invalid_total";
pub const IGNORED: &str = "auditspan_events_ignored_total";
pub const CREATED: &str = "auditspan_spans_created_total";
pub const EXPORTED: &str = "auditspan_sink_exported_spans_total";
pub const LAG: &str = "auditspan_sink_lag_spans";
pub const PENDING: &str = "auditspan_correlator_pending";
pub const COMMITTED: &str = "auditspan_queue_committed_sequence";
pub const COMMIT_LATENCY: &str = "auditspan_commit_latency_seconds";
pub const EXPORT_DURATION: &str = "auditspan_sink_export_duration_seconds";
pub const VAULT_REQUESTS: &str = "auditspan_vault_requests_total";
pub const VAULT_DURATION: &str = "auditspan_vault_request_duration_seconds";
pub const FOLDED: &str = "auditspan_metric_labels_folded_total";

/// GET `path` on the metrics server: status and body.
pub fn get(daemon: &Daemon, path: &str) -> (u16, String) {
    let url = format!("http://{}{path}", daemon.metrics_addr());
    let mut response = http_agent()
        .get(&url)
        .call()
        .unwrap_or_else(|e| daemon.fail(&format!("GET {url}: {e}")));
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

/// One scrape, as text.
pub fn exposition(daemon: &Daemon) -> String {
    let (status, body) = get(daemon, "/metrics");
    assert_eq!(status, 200, "{body}");
    body
}

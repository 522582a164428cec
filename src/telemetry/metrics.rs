//! Metric names, help texts, histogram buckets and handles (DESIGN "Self-metrics").
//!
//! Call sites never name a metric by string: they take a handle from a function here once
//! (per input, per reason) and increment it on the hot path, which avoids a registry lookup
//! per event.
//!
//! Every histogram is a Prometheus histogram with the buckets set in [`install`] (the
//! exporter would render a summary otherwise, which cannot be aggregated across instances).
//! The recorder keeps each histogram sample until the next scrape or upkeep drains it into
//! its buckets; [`install`] starts the upkeep thread that does that every
//! [`UPKEEP_INTERVAL`], so memory stays bounded when nobody scrapes.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use metrics::{
    Counter, Gauge, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram,
    gauge, histogram,
};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

pub const EVENTS_RECEIVED: &str = "auditspan_events_received_total";
pub const EVENTS_INVALID: &str = "auditspan_events_invalid_total";
pub const EVENTS_IGNORED: &str = "auditspan_events_ignored_total";
pub const ATTRIBUTES_TRUNCATED: &str = "auditspan_attributes_truncated_total";
pub const SPANS_CREATED: &str = "auditspan_spans_created_total";
pub const CORRELATOR_PENDING: &str = "auditspan_correlator_pending";
pub const QUEUE_SPANS: &str = "auditspan_queue_spans";
pub const QUEUE_BYTES: &str = "auditspan_queue_bytes";
pub const QUEUE_COMMITTED_SEQUENCE: &str = "auditspan_queue_committed_sequence";
pub const QUEUE_DROPPED_SPANS: &str = "auditspan_queue_dropped_spans_total";
pub const QUEUE_CORRUPT_RECORDS: &str = "auditspan_queue_corrupt_records_total";
pub const QUEUE_DISK_FULL: &str = "auditspan_queue_disk_full";
pub const SINK_EXPORTED_SPANS: &str = "auditspan_sink_exported_spans_total";
pub const SINK_FAILED_EXPORTS: &str = "auditspan_sink_failed_exports_total";
pub const SINK_RETRIES: &str = "auditspan_sink_retries_total";
pub const SINK_LAG_SPANS: &str = "auditspan_sink_lag_spans";
pub const SINK_EXPORT_DURATION: &str = "auditspan_sink_export_duration_seconds";
pub const SINK_UNREADABLE_ANSWERS: &str = "auditspan_sink_unreadable_answers_total";
pub const DEADLETTER_WRITE_ERRORS: &str = "auditspan_deadletter_write_errors_total";
pub const COMMIT_LATENCY: &str = "auditspan_commit_latency_seconds";
pub const VAULT_REQUESTS: &str = "auditspan_vault_requests_total";
pub const VAULT_REQUEST_DURATION: &str = "auditspan_vault_request_duration_seconds";
pub const METRIC_LABELS_FOLDED: &str = "auditspan_metric_labels_folded_total";
pub const INPUT_ERRORS: &str = "auditspan_input_errors_total";
pub const INPUT_HTTP_RESPONSES: &str = "auditspan_input_http_responses_total";

/// `auditspan_input_errors_total{reason}`: a file the pattern names, or a named pipe,
/// could not be opened (file, fifo).
pub const INPUT_ERROR_OPEN: &str = "open";
/// Reading a followed file or a pipe failed (file, fifo, stdin).
pub const INPUT_ERROR_READ: &str = "read";
/// A followed file was truncated or replaced in place (copytruncate); lines written
/// between the copy and the truncate that were not read yet are lost (file).
pub const INPUT_ERROR_TRUNCATED: &str = "truncated";
/// A file named by the checkpoint could not be found at start; what it held past the
/// checkpoint is lost (file).
pub const INPUT_ERROR_FILE_GONE: &str = "file_gone";
/// Copying raw lines to stdout failed; the lines are still read (fifo, stdin with tee).
pub const INPUT_ERROR_TEE: &str = "tee";

/// A datagram longer than the receive buffer (udp, syslog); it is also rejected as one
/// `too_long` line.
pub const INPUT_ERROR_DATAGRAM_TRUNCATED: &str = "datagram_truncated";
/// Datagrams the kernel dropped because the socket's receive buffer was full, counted
/// when the next datagram is read (udp, syslog over UDP).
pub const INPUT_ERROR_DATAGRAM_DROPPED: &str = "datagram_dropped";
/// A syslog message whose header does not parse (syslog); its text is parsed as it is.
pub const INPUT_ERROR_SYSLOG_HEADER: &str = "syslog_header";
/// A syslog frame over TCP that starts with digits not followed by a space within 10
/// bytes, so is no RFC 6587 octet count; it is read up to its newline instead (syslog).
pub const INPUT_ERROR_OCTET_COUNT: &str = "octet_count";
/// An http request without the right bearer token, answered 401 (http).
pub const INPUT_ERROR_UNAUTHORIZED: &str = "unauthorized";
/// An http request whose body did not arrive within the body timeout, answered 408 (http).
pub const INPUT_ERROR_BODY_TIMEOUT: &str = "body_timeout";

/// Every `failure.reason` a sink can report (DESIGN: `sink_failed_exports_total`).
pub const SINK_FAILURE_REASONS: [&str; 4] = ["retryable", "rejected", "timeout", "connect"];

/// How often histogram samples are drained into their buckets when nobody scrapes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Read → committed: one commit window (5 ms by default) plus the commit's fsync, so most
/// samples fall between 5 and 50 ms; the long tail is a slow or full disk.
pub const COMMIT_LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// One export call: a local write (stdout) takes microseconds to milliseconds, a network
/// backend milliseconds to its timeout (seconds).
pub const SINK_EXPORT_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Vault's own request durations: a cached token lookup takes well under a millisecond,
/// a kv read a few, a login with bcrypt or a database credential ~100 ms, a slow plugin
/// or storage seconds (issue #6: 0.5 ms … 10 s).
pub const VAULT_REQUEST_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Why the recorder could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("histogram buckets: {0}")]
    Buckets(BuildError),
    #[error("a metrics recorder is installed already")]
    AlreadyInstalled,
    #[error("starting the metrics upkeep thread: {0}")]
    Upkeep(std::io::Error),
}

// By hand rather than `#[from]`, which would also make the cause the error's `source()`:
// the message names it already, and `{:#}` would print it twice.
impl From<BuildError> for InstallError {
    fn from(cause: BuildError) -> Self {
        InstallError::Buckets(cause)
    }
}

impl From<std::io::Error> for InstallError {
    fn from(cause: std::io::Error) -> Self {
        InstallError::Upkeep(cause)
    }
}

/// Set once [`install`] succeeded.
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Whether this process records metrics (the endpoint is on); work done only to feed
/// metrics is skipped otherwise.
pub fn installed() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}

/// Installs the Prometheus recorder for this process, describes every metric and starts
/// the upkeep thread. Returns the handle that renders `/metrics`.
pub fn install() -> Result<PrometheusHandle, InstallError> {
    let recorder = builder()?.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|_| InstallError::AlreadyInstalled)?;
    INSTALLED.store(true, Ordering::Relaxed);
    describe();
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            }
        })?;
    Ok(handle)
}

/// The exporter's configuration: a bucket list per histogram.
fn builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(COMMIT_LATENCY.into()),
            &COMMIT_LATENCY_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(SINK_EXPORT_DURATION.into()),
            &SINK_EXPORT_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(VAULT_REQUEST_DURATION.into()),
            &VAULT_REQUEST_BUCKETS,
        )
}

fn describe() {
    // The exporter appends `_total` to counters itself only when asked to; our names
    // already carry it, as DESIGN spells them.
    describe_counter!(
        EVENTS_RECEIVED,
        Unit::Count,
        "Lines framed by an input, valid or not."
    );
    describe_counter!(
        EVENTS_INVALID,
        Unit::Count,
        "Lines rejected by the parser, by reason; each one is dead-lettered."
    );
    describe_counter!(
        EVENTS_IGNORED,
        Unit::Count,
        "Valid events dropped on purpose: the audit device test message and duplicates."
    );
    describe_counter!(
        ATTRIBUTES_TRUNCATED,
        Unit::Count,
        "Attributes cut or dropped by the parse limits, by limit."
    );
    describe_counter!(
        SPANS_CREATED,
        Unit::Count,
        "Spans made by the correlator, by outcome."
    );
    describe_gauge!(
        CORRELATOR_PENDING,
        Unit::Count,
        "Events waiting for their partner in the correlator."
    );
    describe_gauge!(
        QUEUE_SPANS,
        Unit::Count,
        "Spans kept in the queue until every sink has them."
    );
    describe_gauge!(
        QUEUE_BYTES,
        Unit::Bytes,
        "Bytes of span records in the queue (what queue.max_bytes bounds)."
    );
    describe_gauge!(
        QUEUE_COMMITTED_SEQUENCE,
        Unit::Count,
        "Sequence number of the last span committed to disk."
    );
    describe_counter!(
        QUEUE_DROPPED_SPANS,
        Unit::Count,
        "Spans dropped before every sink had them: overflow = drop_oldest, or held in memory past the limit while the disk was full."
    );
    describe_counter!(
        QUEUE_CORRUPT_RECORDS,
        Unit::Count,
        "Queue records that failed their checksum or decoding and were skipped."
    );
    describe_gauge!(
        QUEUE_DISK_FULL,
        Unit::Count,
        "1 while commits fail because the disk is full (spans wait in memory), else 0."
    );
    describe_counter!(
        SINK_EXPORTED_SPANS,
        Unit::Count,
        "Spans a sink's backend acknowledged."
    );
    describe_counter!(
        SINK_FAILED_EXPORTS,
        Unit::Count,
        "Failed export attempts, by reason; for reason=\"rejected\", spans the backend refused for good (dead-lettered or dropped by it)."
    );
    describe_counter!(SINK_RETRIES, Unit::Count, "Export retries after a failure.");
    describe_counter!(
        SINK_UNREADABLE_ANSWERS,
        Unit::Count,
        "2xx answers that do not say what became of each span sent (Honeycomb: not one status per event); their spans are sent again, a bounded number of times."
    );
    describe_counter!(
        DEADLETTER_WRITE_ERRORS,
        Unit::Count,
        "Writes to the dead-letter file that failed (full disk, unwritable path); rejected spans stay in the queue until a retry succeeds, rejected lines are lost."
    );
    describe_gauge!(
        SINK_LAG_SPANS,
        Unit::Count,
        "Committed spans a sink has not acknowledged yet."
    );
    describe_histogram!(
        SINK_EXPORT_DURATION,
        Unit::Seconds,
        "Time one export request to the backend took, answered or not."
    );
    describe_counter!(
        VAULT_REQUESTS,
        Unit::Count,
        "Vault requests whose response was audited (spans paired or request_missing), by operation, mount point, namespace and status (error when the audit events carry an error)."
    );
    describe_histogram!(
        VAULT_REQUEST_DURATION,
        Unit::Seconds,
        "Vault request durations by Vault's own clock (response time minus request time), paired spans only."
    );
    describe_counter!(
        METRIC_LABELS_FOLDED,
        Unit::Count,
        "Vault requests counted under the label value \"other\" because the label had metrics.max_label_values distinct values already, by label."
    );
    describe_counter!(
        INPUT_ERRORS,
        Unit::Count,
        "Problems an input met below the line level, by reason: open, read, truncated and file_gone (file inputs), tee (fifo, stdin), datagram_truncated and datagram_dropped (udp, syslog), syslog_header, octet_count (syslog over TCP), unauthorized and body_timeout (http)."
    );
    describe_counter!(
        INPUT_HTTP_RESPONSES,
        Unit::Count,
        "Requests an http input answered, by status code (2xx only once the events are committed, with ack = commit)."
    );
    describe_histogram!(
        COMMIT_LATENCY,
        Unit::Seconds,
        "Time from reading events off an input to committing the spans and waiting entries they made, per event."
    );
}

pub fn events_received(input: &str) -> Counter {
    counter!(EVENTS_RECEIVED, "input" => input.to_owned())
}

pub fn events_invalid(input: &str, reason: &'static str) -> Counter {
    counter!(EVENTS_INVALID, "input" => input.to_owned(), "reason" => reason)
}

pub fn events_ignored(input: &str, reason: &'static str) -> Counter {
    counter!(EVENTS_IGNORED, "input" => input.to_owned(), "reason" => reason)
}

pub fn input_errors(input: &str, reason: &'static str) -> Counter {
    counter!(INPUT_ERRORS, "input" => input.to_owned(), "reason" => reason)
}

pub fn input_http_responses(input: &str, code: u16) -> Counter {
    counter!(INPUT_HTTP_RESPONSES, "input" => input.to_owned(), "code" => code.to_string())
}

pub fn attributes_truncated(reason: &'static str) -> Counter {
    counter!(ATTRIBUTES_TRUNCATED, "reason" => reason)
}

pub fn spans_created(outcome: crate::span::Outcome) -> Counter {
    counter!(SPANS_CREATED, "outcome" => outcome.as_str())
}

pub fn correlator_pending() -> Gauge {
    gauge!(CORRELATOR_PENDING)
}

pub fn queue_spans() -> Gauge {
    gauge!(QUEUE_SPANS)
}

pub fn queue_bytes() -> Gauge {
    gauge!(QUEUE_BYTES)
}

pub fn queue_committed_sequence() -> Gauge {
    gauge!(QUEUE_COMMITTED_SEQUENCE)
}

pub fn queue_disk_full() -> Gauge {
    gauge!(QUEUE_DISK_FULL)
}

pub fn queue_dropped_spans() -> Counter {
    counter!(QUEUE_DROPPED_SPANS)
}

pub fn queue_corrupt_records() -> Counter {
    counter!(QUEUE_CORRUPT_RECORDS)
}

pub fn sink_lag(sink: &str) -> Gauge {
    gauge!(SINK_LAG_SPANS, "sink" => sink.to_owned())
}

pub fn sink_exported(sink: &str) -> Counter {
    counter!(SINK_EXPORTED_SPANS, "sink" => sink.to_owned())
}

pub fn sink_failed(sink: &str, reason: &'static str) -> Counter {
    counter!(SINK_FAILED_EXPORTS, "sink" => sink.to_owned(), "reason" => reason)
}

pub fn sink_retries(sink: &str) -> Counter {
    counter!(SINK_RETRIES, "sink" => sink.to_owned())
}

pub fn sink_unreadable_answers(sink: &str) -> Counter {
    counter!(SINK_UNREADABLE_ANSWERS, "sink" => sink.to_owned())
}

pub fn deadletter_write_errors() -> Counter {
    counter!(DEADLETTER_WRITE_ERRORS)
}

pub fn sink_export_duration(sink: &str) -> Histogram {
    histogram!(SINK_EXPORT_DURATION, "sink" => sink.to_owned())
}

/// Registers a sink's series at zero, so that `rate()` and alerts see them before the
/// first export or failure.
pub fn register_sink(sink: &str) {
    // Taking a handle registers the series; adding 0 keeps clippy's must-use quiet.
    sink_exported(sink).increment(0);
    sink_retries(sink).increment(0);
    for reason in SINK_FAILURE_REASONS {
        sink_failed(sink, reason).increment(0);
    }
    drop(sink_export_duration(sink));
}

pub fn commit_latency() -> Histogram {
    histogram!(COMMIT_LATENCY)
}

pub fn vault_requests(
    operation: &'static str,
    mount_point: &str,
    namespace: &str,
    status: &'static str,
) -> Counter {
    counter!(
        VAULT_REQUESTS,
        "operation" => operation,
        "mount_point" => mount_point.to_owned(),
        "namespace" => namespace.to_owned(),
        "status" => status,
    )
}

pub fn vault_request_duration(operation: &'static str, mount_point: &str) -> Histogram {
    histogram!(
        VAULT_REQUEST_DURATION,
        "operation" => operation,
        "mount_point" => mount_point.to_owned(),
    )
}

pub fn metric_labels_folded(label: &'static str) -> Counter {
    counter!(METRIC_LABELS_FOLDED, "label" => label)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Buckets ascend (the exporter and Prometheus need that), and the Vault request
    /// buckets span 0.5 ms to 10 s as issue #6 asks.
    #[test]
    fn buckets_ascend() {
        for buckets in [
            &COMMIT_LATENCY_BUCKETS[..],
            &SINK_EXPORT_BUCKETS[..],
            &VAULT_REQUEST_BUCKETS[..],
        ] {
            assert!(buckets.windows(2).all(|w| w[0] < w[1]), "{buckets:?}");
        }
        assert_eq!(VAULT_REQUEST_BUCKETS[0], 0.0005);
        assert_eq!(VAULT_REQUEST_BUCKETS[VAULT_REQUEST_BUCKETS.len() - 1], 10.0);
        builder().unwrap();
    }
}

//! Metric names, help texts and handles (DESIGN "Self-metrics").
//!
//! Call sites never name a metric by string: they take a handle from a function here once
//! (per input, per reason) and increment it on the hot path, which avoids a registry lookup
//! per event.

use metrics::{
    Counter, Gauge, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram,
    gauge, histogram,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

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
pub const COMMIT_LATENCY: &str = "auditspan_commit_latency_seconds";

/// Installs the Prometheus recorder for this process and describes every metric. Returns
/// the handle that renders `/metrics`.
pub fn install() -> Result<
    PrometheusHandle,
    metrics::SetRecorderError<metrics_exporter_prometheus::PrometheusRecorder>,
> {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)?;
    describe();
    Ok(handle)
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

pub fn sink_export_duration(sink: &str) -> Histogram {
    histogram!(SINK_EXPORT_DURATION, "sink" => sink.to_owned())
}

pub fn commit_latency() -> Histogram {
    histogram!(COMMIT_LATENCY)
}

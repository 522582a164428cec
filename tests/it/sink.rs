//! The sink contract against a failing output: stdout whose reader has gone away.

use crate::support::{DEADLINE, Event, Options, Stdout, default_config, send};

/// A write error on stdout (EPIPE: nobody reads it any more) is retried with backoff,
/// counted per attempt, and the span stays in the queue instead of being lost.
#[test]
fn failed_exports_are_retried_and_keep_the_span_queued() {
    let daemon = Options::default()
        .stdout(Stdout::Pipe)
        .start(default_config);
    // Close the read end: every write to stdout now fails with EPIPE.
    drop(daemon.take_stdout());
    let id = "00000000-0000-4000-8000-00000000beef";
    let events = Event::request(id, 100).line() + &Event::response(id, 900).line();
    send(&daemon, events);
    daemon.wait_until(DEADLINE, "three failed attempts and two retries", || {
        let m = daemon.metrics();
        m.get(
            "auditspan_sink_failed_exports_total",
            &[("sink", "stdout"), ("reason", "connect")],
        ) >= 3.0
            && m.get("auditspan_sink_retries_total", &[("sink", "stdout")]) >= 2.0
    });
    let m = daemon.metrics();
    assert_eq!(
        m.get("auditspan_spans_created_total", &[("outcome", "paired")]),
        1.0
    );
    assert_eq!(
        m.get("auditspan_sink_exported_spans_total", &[("sink", "stdout")]),
        0.0
    );
    assert_eq!(
        m.get("auditspan_sink_lag_spans", &[("sink", "stdout")]),
        1.0,
        "the span waits in the queue"
    );
    assert_eq!(m.get("auditspan_queue_spans", &[]), 1.0);
    assert!(daemon.stderr().contains("Export failed; retrying."));
}

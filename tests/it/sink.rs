//! The sink contract against a failing output: stdout whose reader has gone away.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    process::Stdio,
    sync::{Arc, Mutex},
};

use crate::support::{DEADLINE, Event, Metrics, auditspan, default_config, http_agent, wait_until};

/// A write error on stdout (EPIPE: nobody reads it any more) is retried with backoff,
/// counted per attempt, and the span stays in the queue instead of being lost.
#[test]
fn failed_exports_are_retried_and_keep_the_span_queued() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("auditspan.toml");
    std::fs::write(&config, default_config(dir.path())).unwrap();
    let mut child = auditspan(dir.path())
        .arg("run")
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end: every write to stdout now fails with EPIPE.
    drop(child.stdout.take());
    let stderr = Arc::new(Mutex::new(String::new()));
    let collected = Arc::clone(&stderr);
    let pipe = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            collected.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let addr = || {
        let text = stderr.lock().unwrap().clone();
        text.split("Serving metrics. addr=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .map(str::to_owned)
    };
    wait_until(DEADLINE, "the metrics address", || addr().is_some());
    let url = format!("http://{}/metrics", addr().unwrap());
    let metrics = || {
        Metrics::parse(
            &http_agent()
                .get(&url)
                .call()
                .unwrap()
                .body_mut()
                .read_to_string()
                .unwrap(),
        )
    };

    let socket = dir.path().join("audit.sock");
    wait_until(DEADLINE, "the socket", || {
        UnixStream::connect(&socket).is_ok()
    });
    let mut conn = UnixStream::connect(&socket).unwrap();
    let id = "00000000-0000-4000-8000-00000000beef";
    for event in [Event::request(id, 100), Event::response(id, 900)] {
        conn.write_all(event.line().as_bytes()).unwrap();
    }
    wait_until(DEADLINE, "three failed attempts and two retries", || {
        let m = metrics();
        m.get(
            "auditspan_sink_failed_exports_total",
            &[("sink", "stdout"), ("reason", "connect")],
        ) >= 3.0
            && m.get("auditspan_sink_retries_total", &[("sink", "stdout")]) >= 2.0
    });
    let m = metrics();
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
    assert!(stderr.lock().unwrap().contains("Export failed; retrying."));
    child.kill().unwrap();
    child.wait().unwrap();
}

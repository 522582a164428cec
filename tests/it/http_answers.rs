//! How the HTTP sinks read awkward answers (issue #14 item 3), against the scripted HTTP
//! receiver: `Retry-After` given as an HTTP date, and Honeycomb answers 2xx that do not
//! say what became of each event (counted, retried a bounded number of times, then
//! dead-lettered).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use serde_json::{Value, json};

use crate::support::{
    DEADLINE, Daemon, config_with_sink,
    receiver::http::{Receiver, Reply, Request},
    request_id, send_pairs,
};

const SINK: [(&str, &str); 1] = [("sink", "honeycomb")];
const UNREADABLE: &str = "auditspan_sink_unreadable_answers_total";
/// `MAX_UNREADABLE_ANSWERS` in `src/sink/honeycomb.rs`.
const MAX_UNREADABLE_ANSWERS: usize = 10;

/// A Honeycomb sink at `endpoint`, retrying quickly.
fn honeycomb_sink(endpoint: &str) -> String {
    format!(
        "[[sink]]\ntype = \"honeycomb\"\nendpoint = \"{endpoint}\"\ndataset = \"d\"\n\
         api_key = \"key\"\nmax_retry_delay = \"500ms\"\n"
    )
}

/// The `vault.request.id` of every event in a Honeycomb batch.
fn ids(request: &Request) -> Vec<String> {
    match request.json() {
        Value::Array(events) => events
            .iter()
            .map(|e| e["data"]["vault.request.id"].as_str().unwrap().to_owned())
            .collect(),
        other => panic!("a Honeycomb batch is a list of events: {other}"),
    }
}

/// 202 for every event of the batch.
fn ack_all(request: &Request) -> Reply {
    let statuses: Vec<Value> = ids(request)
        .iter()
        .map(|_| json!({"status": 202}))
        .collect();
    Reply::json(200, &Value::Array(statuses))
}

/// A 503 whose `Retry-After` is an HTTP date 3 s ahead: the sink sends again no sooner
/// than that date (its own backoff, capped at 0.5 s here, would have tried after 0.1 s),
/// and then delivers.
#[test]
fn retry_after_given_as_an_http_date_is_honoured() {
    let arrivals: Arc<Mutex<Vec<(Instant, SystemTime)>>> = Arc::default();
    let seen = Arc::clone(&arrivals);
    let receiver = Receiver::start(move |request| {
        let mut seen = seen.lock().unwrap();
        seen.push((Instant::now(), SystemTime::now()));
        if seen.len() == 1 {
            let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3));
            Reply {
                status: 503,
                headers: vec![("retry-after".into(), date)],
                body: b"busy".to_vec(),
            }
        } else {
            ack_all(request)
        }
    });
    let daemon =
        Daemon::start_with(|dir| config_with_sink(dir, &honeycomb_sink(&receiver.url(""))));
    send_pairs(&daemon, 0..1);
    daemon.wait_until(DEADLINE, "the span delivered", || {
        daemon
            .metrics()
            .get("auditspan_sink_exported_spans_total", &SINK)
            == 1.0
    });
    let arrivals = arrivals.lock().unwrap();
    assert_eq!(arrivals.len(), 2, "one refusal, one delivery");
    // The date has whole seconds: it is between 2 and 3 s after the first answer.
    let waited = arrivals[1].0 - arrivals[0].0;
    assert!(
        waited >= Duration::from_millis(1900),
        "sent again after {waited:?}, before the Retry-After date"
    );
    assert_eq!(
        daemon.metrics().get(
            "auditspan_sink_failed_exports_total",
            &[("sink", "honeycomb"), ("reason", "retryable")]
        ),
        1.0
    );
}

/// Answers 200 that are not one status per event (empty, HTML, a list one short) are
/// counted and their events sent again: an event that only ever gets such answers is
/// dead-lettered after 10 of them, saying it may or may not have been stored, and the
/// sink moves on; an event that gets two and then a proper answer is delivered.
#[test]
fn unreadable_honeycomb_answers_are_counted_retried_then_dead_lettered() {
    let first_phase: Vec<String> = (0..3).map(request_id).collect();
    let doomed_ids = first_phase.clone();
    let arrivals: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let seen = Arc::clone(&arrivals);
    let receiver = Receiver::start(move |request| {
        let ids = ids(request);
        let mut seen = seen.lock().unwrap();
        let mut fewest = usize::MAX;
        for id in &ids {
            let count = seen.entry(id.clone()).or_default();
            *count += 1;
            fewest = fewest.min(*count);
        }
        let doomed = ids.iter().any(|id| first_phase.contains(id));
        if doomed || fewest <= 2 {
            match fewest % 3 {
                0 => Reply::status(200),
                1 => Reply::text(200, "<html><body>OK</body></html>"),
                _ => Reply::json(
                    200,
                    &Value::Array(vec![json!({"status": 202}); ids.len() - 1]),
                ),
            }
        } else {
            ack_all(request)
        }
    });
    let daemon =
        Daemon::start_with(|dir| config_with_sink(dir, &honeycomb_sink(&receiver.url(""))));
    send_pairs(&daemon, 0..3);
    daemon.wait_until(DEADLINE, "the first spans dead-lettered", || {
        daemon.metrics().get("auditspan_sink_lag_spans", &SINK) == 0.0
            && daemon.dead_letters().len() == 3
    });
    send_pairs(&daemon, 3..4);
    daemon.wait_until(DEADLINE, "the last span delivered", || {
        let m = daemon.metrics();
        m.get("auditspan_sink_lag_spans", &SINK) == 0.0
            && m.get("auditspan_sink_exported_spans_total", &SINK) == 1.0
    });

    let arrivals = arrivals.lock().unwrap();
    for n in 0..3 {
        assert_eq!(
            arrivals.get(&request_id(n)).copied(),
            Some(MAX_UNREADABLE_ANSWERS),
            "span {n}: {arrivals:?}"
        );
    }
    assert_eq!(arrivals.get(&request_id(3)).copied(), Some(3));
    let first_phase_requests = receiver
        .requests()
        .iter()
        .filter(|r| ids(r).iter().any(|id| doomed_ids.contains(id)))
        .count();
    let m = daemon.metrics();
    assert_eq!(
        m.get(UNREADABLE, &SINK),
        (first_phase_requests + 2) as f64,
        "every unreadable answer is counted"
    );
    assert_eq!(
        m.get(
            "auditspan_sink_failed_exports_total",
            &[("sink", "honeycomb"), ("reason", "rejected")]
        ),
        3.0
    );
    for record in daemon.dead_letters() {
        assert_eq!(record["sink"], "honeycomb");
        let message = record["message"].as_str().unwrap();
        assert!(
            message.starts_with("10 answers without a status for this event")
                && message.ends_with("it may or may not have been stored"),
            "{message}"
        );
    }
    let stderr = daemon.stderr();
    assert!(
        stderr.contains("does not say what became of each event"),
        "{stderr}"
    );
}

//! The Zipkin sink against a real HTTP receiver on loopback: bodies valid against
//! `shared/schemas/zipkin2-span.schema.json` with the expected values, a poisoned span
//! isolated and dead-lettered, and an outage survived on disk.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Condvar, Mutex},
};

use serde_json::{Map, Value, json};

use crate::support::{
    DEADLINE, Daemon, config_with_sink, import_fixture,
    receiver::http::{FIXTURES, Receiver, Reply, Request, outage_then_delivery},
    request_id,
    schema::{assert_schema_examples, assert_valid, schema},
    send_pairs, span_times,
    tmpfs::Tmpfs,
};

const SCHEMA: &str = "zipkin2-span.schema.json";
const PATH: &str = "/api/v2/spans";
const SINK: [(&str, &str); 1] = [("sink", "zipkin")];

/// A `[[sink]]` table for a Zipkin sink posting to `url`, retrying quickly.
fn zipkin_sink(url: &str) -> String {
    format!("[[sink]]\ntype = \"zipkin\"\nendpoint = \"{url}\"\nmax_retry_delay = \"500ms\"\n")
}

fn spans_of(request: &Request) -> Vec<Value> {
    match request.json() {
        Value::Array(spans) => spans,
        other => panic!("a Zipkin body is a list of spans: {other}"),
    }
}

/// The `vault.request.id` tag of every span in the request.
fn ids(request: &Request) -> Vec<String> {
    spans_of(request)
        .iter()
        .map(|s| s["tags"]["vault.request.id"].as_str().unwrap().to_owned())
        .collect()
}

/// The Zipkin span the sink must send for a span the stdout sink printed: written here
/// from the mapping rules (ZIPKIN.md), independently of the sink's code.
fn expected(stdout: &Value) -> Value {
    let (start, end) = span_times(stdout);
    let attributes = stdout["attributes"].as_object().unwrap();
    let mut tags = Map::new();
    for (key, value) in attributes {
        if key == "error" {
            continue;
        }
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        tags.insert(key.clone(), Value::String(text));
    }
    let resource = &stdout["resource"];
    tags.insert(
        "service.instance.id".into(),
        resource["service.instance.id"].clone(),
    );
    tags.insert("host.name".into(), resource["host.name"].clone());
    if stdout["status"]["code"] == "error" {
        tags.insert("otel.status_code".into(), json!("ERROR"));
        tags.insert("error".into(), stdout["status"]["message"].clone());
    }
    let mut span = json!({
        "traceId": stdout["trace_id"],
        "id": stdout["span_id"],
        "kind": "SERVER",
        "name": stdout["name"],
        "timestamp": start / 1000,
        "duration": ((end - start) / 1000).max(1),
        "localEndpoint": {"serviceName": resource["service.name"].as_str().unwrap().to_lowercase()},
        "tags": tags,
    });
    if !stdout["parent_span_id"].is_null() {
        span["parentId"] = stdout["parent_span_id"].clone();
    }
    let ip = attributes
        .get("request.remote_address")
        .and_then(Value::as_str)
        .and_then(|a| a.parse::<IpAddr>().ok());
    if let Some(ip) = ip {
        let mut remote = Map::new();
        let key = if ip.is_ipv4() { "ipv4" } else { "ipv6" };
        remote.insert(key.into(), json!(ip.to_string()));
        if let Some(port) = attributes
            .get("request.remote_port")
            .and_then(Value::as_u64)
            .filter(|p| (1..=65535).contains(p))
        {
            remote.insert("port".into(), json!(port));
        }
        span["remoteEndpoint"] = Value::Object(remote);
    }
    span
}

/// The schema used below accepts its own valid examples and rejects the invalid ones.
#[test]
fn schema_sorts_its_examples() {
    assert_schema_examples(&schema(SCHEMA), "zipkin");
}

/// Every fixture span arrives once, in bodies that validate against the Zipkin v2 schema,
/// with the values the mapping promises (ids, parent, times in µs, string tags, the
/// `error` tag only on error spans, the resource).
#[test]
fn fixture_spans_arrive_as_valid_zipkin_v2() {
    let receiver = Receiver::start(|_| Reply::status(202));
    let validator = schema(SCHEMA);
    let config = format!(
        "instance_id = \"vault-0\"\n[[sink]]\ntype = \"stdout\"\n\n{}",
        zipkin_sink(&receiver.url(PATH))
    );
    let mut seen = 0;
    let mut errors = 0;
    let mut joined = 0;
    for fixture in FIXTURES {
        let before = receiver.requests().len();
        let imported = import_fixture(&config, fixture, &[]);
        assert!(!imported.spans.is_empty(), "{fixture} makes spans");
        let mut received: HashMap<String, Value> = HashMap::new();
        for request in &receiver.requests()[before..] {
            assert_eq!(request.method, "POST");
            assert_eq!(request.path, PATH);
            assert_eq!(request.header("content-type"), Some("application/json"));
            assert!(!request.gzipped, "compression is off by default");
            assert_valid(&validator, &request.json(), fixture);
            for span in spans_of(request) {
                let id = span["id"].as_str().unwrap().to_owned();
                assert!(
                    received.insert(id, span).is_none(),
                    "{fixture}: a span twice"
                );
            }
        }
        assert_eq!(
            received.len(),
            imported.spans.len(),
            "{fixture}: every span once"
        );
        for stdout in &imported.spans {
            let id = stdout["span_id"].as_str().unwrap();
            let span = &received[id];
            assert_eq!(span, &expected(stdout), "{fixture}: span {id}");
            let is_error = stdout["status"]["code"] == "error";
            assert_eq!(span["tags"].get("error").is_some(), is_error);
            errors += usize::from(is_error);
            joined += usize::from(span.get("parentId").is_some());
        }
        seen += received.len();
    }
    assert!(seen >= 90, "{seen} spans");
    assert!(errors >= 4, "the fixtures' error spans: {errors}");
    assert!(
        joined >= 1,
        "the OpenBao session's traceparent span has a parent"
    );

    // Two values spelled out, from the OpenBao session (tests/golden has them too).
    let requests = receiver.requests();
    let all: Vec<Value> = requests.iter().flat_map(spans_of).collect();
    let root_token = all
        .iter()
        .find(|s| s["id"] == "3a724616a0d651ac")
        .expect("the dev root token span");
    assert_eq!(root_token["traceId"], "725fb538a1cb127bd27c34c75a9280ec");
    assert_eq!(root_token["timestamp"], 1_795_625_839_459_973_i64);
    assert_eq!(root_token["duration"], 2053);
    assert_eq!(root_token["name"], "update auth/token/");
    assert_eq!(root_token["tags"]["auth.policies"], "[\"root\"]");
    assert_eq!(root_token["tags"]["auth.policy_results.allowed"], "true");
    let joined = all
        .iter()
        .find(|s| s["traceId"] == "4bf92f3577b34da6a3ce929d0e0e4736")
        .expect("the span that joined the caller's trace");
    assert_eq!(joined["parentId"], "00f067aa0ba902b7");
}

/// A backend that answers 400 to any request holding one poisoned span: the batch is split
/// until that span is alone, it is dead-lettered (counted as rejected), and every other
/// span of its batch is delivered exactly once.
#[test]
fn poisoned_span_is_dead_lettered_and_the_rest_delivered() {
    let poison = request_id(10);
    // Holds the first export until the test has committed the rest, so that the second
    // batch is all 20 other spans.
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let held = Arc::clone(&gate);
    let bad = poison.clone();
    let receiver = Receiver::start(move |request| {
        let (open, changed) = &*held;
        let guard = changed
            .wait_timeout_while(open.lock().unwrap(), DEADLINE, |open| !*open)
            .unwrap();
        drop(guard);
        if ids(request).contains(&bad) {
            Reply::text(400, "poisoned span")
        } else {
            Reply::status(202)
        }
    });
    let sink = zipkin_sink(&receiver.url(PATH)) + "timeout = \"120s\"\n";
    let daemon = Daemon::start_with(|dir| config_with_sink(dir, &sink));
    send_pairs(&daemon, 0..1);
    daemon.wait_until(DEADLINE, "the first export to arrive", || {
        receiver.requests().len() == 1
    });
    send_pairs(&daemon, 1..21);
    daemon.wait_for_spans(21);
    {
        let (open, changed) = &*gate;
        *open.lock().unwrap() = true;
        changed.notify_all();
    }
    daemon.wait_until(DEADLINE, "the poisoned span to be rejected", || {
        let m = daemon.metrics();
        m.get(
            "auditspan_sink_failed_exports_total",
            &[("sink", "zipkin"), ("reason", "rejected")],
        ) == 1.0
            && m.get("auditspan_sink_lag_spans", &SINK) == 0.0
    });

    let requests = receiver.requests();
    let mut delivered: HashMap<String, usize> = HashMap::new();
    let mut rejected_sizes = Vec::new();
    for request in &requests {
        let ids = ids(request);
        if ids.contains(&poison) {
            rejected_sizes.push(ids.len());
        } else {
            for id in ids {
                *delivered.entry(id).or_default() += 1;
            }
        }
    }
    assert_eq!(
        rejected_sizes.first(),
        Some(&20),
        "the batch of 20 was refused whole first: {rejected_sizes:?}"
    );
    assert_eq!(rejected_sizes.last(), Some(&1), "then the span alone");
    for n in (0..21).filter(|n| *n != 10) {
        assert_eq!(
            delivered.get(&request_id(n)),
            Some(&1),
            "span {n}: {delivered:?}"
        );
    }
    assert_eq!(delivered.len(), 20);
    let m = daemon.metrics();
    assert_eq!(m.get("auditspan_sink_exported_spans_total", &SINK), 20.0);

    let records = daemon.dead_letters();
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record["reason"], "rejected");
    assert_eq!(record["sink"], "zipkin");
    assert_eq!(
        record["span"]["attributes"]["vault.request.id"],
        poison.as_str()
    );
    let message = record["message"].as_str().unwrap();
    assert!(
        message.contains("400") && message.contains("poisoned span"),
        "{message}"
    );
    // The stdout sink is not concerned.
    assert_eq!(daemon.spans().len(), 21);
}

/// The dead-letter file's file system is full when a span is rejected for good: the span
/// stays in the queue (the sink's lag holds it and the spans after it), the write is
/// retried with backoff, and `/readyz` and `auditspan_deadletter_write_errors_total` say
/// so. Once there is room the span is written exactly once, as whole records, and the sink
/// moves on to deliver the rest.
#[test]
fn rejected_span_stays_queued_while_the_dead_letter_file_cannot_take_it() {
    const ERRORS: &str = "auditspan_deadletter_write_errors_total";
    let mnt = tempfile::tempdir().unwrap();
    let tmpfs = Tmpfs::mount(mnt.path(), "1m");
    let poison = request_id(1);
    let bad = poison.clone();
    let receiver = Receiver::start(move |request| {
        if ids(request).contains(&bad) {
            Reply::text(400, "poisoned span")
        } else {
            Reply::status(202)
        }
    });
    let sink = zipkin_sink(&receiver.url(PATH));
    let target = mnt.path().join("deadletter.jsonl");
    let daemon = Daemon::start_with(|dir| {
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::os::unix::fs::symlink(&target, dir.join("data/deadletter.jsonl")).unwrap();
        config_with_sink(dir, &sink)
    });
    send_pairs(&daemon, 0..1);
    daemon.wait_until(DEADLINE, "the first span to be exported", || {
        daemon
            .metrics()
            .get("auditspan_sink_exported_spans_total", &SINK)
            == 1.0
    });
    let filler = tmpfs.fill(0);
    send_pairs(&daemon, 1..2);
    daemon.wait_until(DEADLINE, "two failed dead-letter writes", || {
        daemon.metrics().get(ERRORS, &[]) >= 2.0
    });
    send_pairs(&daemon, 2..3);
    daemon.wait_for_spans(3);
    let (status, body) = daemon.readyz();
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("the dead-letter file cannot be written"),
        "{body}"
    );
    let m = daemon.metrics();
    assert_eq!(m.get("auditspan_sink_lag_spans", &SINK), 2.0);
    assert_eq!(
        m.get(
            "auditspan_sink_failed_exports_total",
            &[("sink", "zipkin"), ("reason", "rejected")]
        ),
        0.0,
        "not counted as handled before the file has it"
    );
    assert!(
        daemon.stderr().contains("could not be dead-lettered"),
        "{}",
        daemon.stderr_tail()
    );
    assert!(
        daemon.stderr().contains("No space left on device"),
        "{}",
        daemon.stderr_tail()
    );

    std::fs::remove_file(&filler).unwrap();
    daemon.wait_until(DEADLINE, "the sink to catch up", || {
        daemon.metrics().get("auditspan_sink_lag_spans", &SINK) == 0.0
    });
    let (status, body) = daemon.readyz();
    assert_eq!(status, 200, "{body}");
    let records = daemon.dead_letters();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        records[0]["span"]["attributes"]["vault.request.id"],
        poison.as_str()
    );
    let m = daemon.metrics();
    assert_eq!(
        m.get(
            "auditspan_sink_failed_exports_total",
            &[("sink", "zipkin"), ("reason", "rejected")]
        ),
        1.0
    );
    let mut delivered: Vec<String> = receiver.requests().iter().flat_map(ids).collect();
    delivered.retain(|id| *id != poison);
    assert_eq!(delivered, [request_id(0), request_id(2)]);
}

/// Zipkin down → spans wait on disk while stdout delivers them → Zipkin up → every span
/// arrives exactly once.
#[test]
fn outage_waits_on_disk_then_delivers_every_span_once() {
    outage_then_delivery(
        "zipkin",
        |addr| zipkin_sink(&format!("http://{addr}{PATH}")),
        ids,
        |_| Reply::status(202),
    );
}

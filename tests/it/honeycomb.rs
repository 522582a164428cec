//! The Honeycomb sink against a real HTTP receiver on loopback: batches valid against
//! `shared/schemas/honeycomb-batch.schema.json` with the expected values and the API key
//! in its header (never in a log), per-event statuses (only the failed events retried,
//! the permanently refused ones dead-lettered), a refused key, and an outage.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use serde_json::{Map, Value, json};

use crate::support::{
    DEADLINE, Daemon, auditspan, config_with_sink, default_config, import_fixture, pair_with,
    receiver::http::{FIXTURES, Receiver, Reply, Request, outage_then_delivery},
    request_id,
    schema::{assert_schema_examples, assert_valid, example, schema},
    send, send_pairs, span_times,
};

const SCHEMA: &str = "honeycomb-batch.schema.json";
const RESPONSE_SCHEMA: &str = "honeycomb-batch-response.schema.json";
/// The dataset every test uses: a space, to see it percent-encoded in the path.
const DATASET: &str = "vault audit";
const PATH: &str = "/1/batch/vault%20audit";
/// Looks like a real ingest key, so that a leak would be unmistakable.
const API_KEY: &str = "hcaik_01jtestkeyvalue0000000000000000000000000000000000000000";
const SINK: [(&str, &str); 1] = [("sink", "honeycomb")];

/// A `[[sink]]` table for a Honeycomb sink at `endpoint` (the API host), retrying quickly.
fn honeycomb_sink(endpoint: &str) -> String {
    format!(
        "[[sink]]\ntype = \"honeycomb\"\nendpoint = \"{endpoint}\"\ndataset = \"{DATASET}\"\n\
         api_key = \"{API_KEY}\"\nmax_retry_delay = \"500ms\"\n"
    )
}

fn events_of(request: &Request) -> Vec<Value> {
    match request.json() {
        Value::Array(events) => events,
        other => panic!("a Honeycomb batch is a list of events: {other}"),
    }
}

/// The `vault.request.id` of every event in the request.
fn ids(request: &Request) -> Vec<String> {
    events_of(request)
        .iter()
        .map(|e| e["data"]["vault.request.id"].as_str().unwrap().to_owned())
        .collect()
}

/// 202 for every event of the batch.
fn ack_all(request: &Request) -> Reply {
    let statuses: Vec<Value> = events_of(request)
        .iter()
        .map(|_| json!({"status": 202}))
        .collect();
    Reply::json(200, &Value::Array(statuses))
}

/// The event the sink must send for a span the stdout sink printed, written here from the
/// field rules (DESIGN, HONEYCOMB.md), independently of the sink's code. `time` is
/// compared separately, as an instant.
fn expected_data(stdout: &Value) -> Value {
    const OWN: [&str; 10] = [
        "trace.trace_id",
        "trace.span_id",
        "trace.parent_id",
        "name",
        "service.name",
        "service.instance.id",
        "host.name",
        "span.kind",
        "duration_ms",
        "error",
    ];
    let (start, end) = span_times(stdout);
    let resource = &stdout["resource"];
    let mut data = json!({
        "trace.trace_id": stdout["trace_id"],
        "trace.span_id": stdout["span_id"],
        "name": stdout["name"],
        "service.name": resource["service.name"],
        "service.instance.id": resource["service.instance.id"],
        "host.name": resource["host.name"],
        "span.kind": "server",
        "duration_ms": (end - start) as f64 / 1e6,
    });
    if !stdout["parent_span_id"].is_null() {
        data["trace.parent_id"] = stdout["parent_span_id"].clone();
    }
    if stdout["status"]["code"] == "error" {
        data["error"] = stdout["status"]["message"].clone();
    }
    let data = data.as_object_mut().unwrap();
    let attributes: &Map<String, Value> = stdout["attributes"].as_object().unwrap();
    for (key, value) in attributes {
        if OWN.contains(&key.as_str()) {
            continue;
        }
        let value = match value {
            Value::Array(_) => Value::String(value.to_string()),
            other => other.clone(),
        };
        data.insert(key.clone(), value);
    }
    Value::Object(data.clone())
}

/// The schemas used below accept their own valid examples and reject the invalid ones.
#[test]
fn schemas_sort_their_examples() {
    assert_schema_examples(&schema(SCHEMA), "honeycomb");
    let response = schema(RESPONSE_SCHEMA);
    let ok = example("honeycomb/response-ok.json");
    assert_valid(&response, &ok, "response-ok.json");
}

/// Every fixture span arrives once as an event: gzipped batches at `/1/batch/{dataset}`
/// that validate against the batch schema, with the API key (from `api_key_env`) in
/// `X-Honeycomb-Team`, `time` = the span's start, and the promised fields. The key appears
/// in no output.
#[test]
fn fixture_spans_arrive_as_valid_honeycomb_events() {
    let receiver = Receiver::start(ack_all);
    let validator = schema(SCHEMA);
    let config = format!(
        "instance_id = \"vault-0\"\n[[sink]]\ntype = \"stdout\"\n\n[[sink]]\ntype = \"honeycomb\"\n\
         endpoint = \"{}\"\ndataset = \"{DATASET}\"\napi_key_env = \"AUDITSPAN_TEST_HONEYCOMB_KEY\"\n",
        receiver.url("")
    );
    let mut seen = 0;
    let mut errors = 0;
    for fixture in FIXTURES {
        let before = receiver.requests().len();
        let imported = import_fixture(
            &config,
            fixture,
            &[("AUDITSPAN_TEST_HONEYCOMB_KEY", API_KEY)],
        );
        assert!(!imported.stderr.contains(API_KEY) && !imported.stdout.contains(API_KEY));
        let mut received: HashMap<String, Value> = HashMap::new();
        for request in &receiver.requests()[before..] {
            assert_eq!(request.method, "POST");
            assert_eq!(request.path, PATH);
            assert_eq!(request.header("x-honeycomb-team"), Some(API_KEY));
            assert_eq!(request.header("content-type"), Some("application/json"));
            assert!(request.gzipped, "gzip is on by default");
            assert_valid(&validator, &request.json(), fixture);
            for event in events_of(request) {
                let id = event["data"]["trace.span_id"].as_str().unwrap().to_owned();
                assert!(
                    received.insert(id, event).is_none(),
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
            let event = &received[id];
            assert_eq!(event["data"], expected_data(stdout), "{fixture}: span {id}");
            let time: jiff::Timestamp = event["time"].as_str().unwrap().parse().unwrap();
            assert_eq!(time.as_nanosecond(), i128::from(span_times(stdout).0));
            let is_error = stdout["status"]["code"] == "error";
            assert_eq!(event["data"].get("error").is_some(), is_error);
            errors += usize::from(is_error);
        }
        seen += received.len();
    }
    assert!(seen >= 90, "{seen} spans");
    assert!(errors >= 4, "the fixtures' error spans: {errors}");

    let all: Vec<Value> = receiver.requests().iter().flat_map(events_of).collect();
    let root_token = all
        .iter()
        .find(|e| e["data"]["trace.span_id"] == "3a724616a0d651ac")
        .expect("the dev root token span");
    assert_eq!(root_token["time"], "2026-11-25T16:57:19.459973533Z");
    assert_eq!(root_token["data"]["duration_ms"], json!(2.053055));
    assert!(
        root_token["data"].get("trace.parent_id").is_none(),
        "a root span"
    );
    let joined = all
        .iter()
        .find(|e| e["data"]["trace.trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736")
        .expect("the span that joined the caller's trace");
    assert_eq!(joined["data"]["trace.parent_id"], "00f067aa0ba902b7");
}

/// Per-event statuses 202, 400, 429 and 500: the 429 and 500 events are sent again (and
/// then acknowledged), the 202 ones are not, the 400 ones are dead-lettered with
/// Honeycomb's error text and counted as rejected.
#[test]
fn mixed_event_statuses_retry_exactly_the_failed_events() {
    const STATUSES: [u16; 4] = [202, 400, 429, 500];
    let response_schema = Arc::new(schema(RESPONSE_SCHEMA));
    let first_seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let seen = Arc::clone(&first_seen);
    let receiver = Receiver::start(move |request| {
        let mut seen = seen.lock().unwrap();
        let results: Vec<Value> = ids(request)
            .into_iter()
            .map(|id| {
                let count = seen.entry(id.clone()).or_default();
                *count += 1;
                let n = u64::from_str_radix(id.rsplit('-').next().unwrap(), 16).unwrap();
                match (*count, STATUSES[(n % 4) as usize]) {
                    (1, 400) => json!({"status": 400, "error": "Event has too many columns."}),
                    (1, 429) => {
                        json!({"status": 429, "error": "Request dropped due to rate limiting."})
                    }
                    (1, 500) => json!({"status": 500, "error": "internal error"}),
                    _ => json!({"status": 202}),
                }
            })
            .collect();
        let body = Value::Array(results);
        assert!(response_schema.is_valid(&body));
        Reply::json(200, &body)
    });
    let daemon =
        Daemon::start_with(|dir| config_with_sink(dir, &honeycomb_sink(&receiver.url(""))));
    send_pairs(&daemon, 0..16);
    daemon.wait_until(
        DEADLINE,
        "every event acknowledged or dead-lettered",
        || {
            let m = daemon.metrics();
            m.get("auditspan_sink_lag_spans", &SINK) == 0.0
                && m.get("auditspan_sink_exported_spans_total", &SINK) == 12.0
        },
    );
    let mut arrivals: HashMap<String, usize> = HashMap::new();
    for request in receiver.requests() {
        for id in ids(&request) {
            *arrivals.entry(id).or_default() += 1;
        }
    }
    for n in 0..16 {
        let expected = match STATUSES[(n % 4) as usize] {
            429 | 500 => 2,
            _ => 1,
        };
        assert_eq!(
            arrivals.get(&request_id(n)).copied(),
            Some(expected),
            "span {n} (first answered {}): {arrivals:?}",
            STATUSES[(n % 4) as usize]
        );
    }
    let m = daemon.metrics();
    assert_eq!(
        m.get(
            "auditspan_sink_failed_exports_total",
            &[("sink", "honeycomb"), ("reason", "rejected")]
        ),
        4.0
    );
    assert!(m.get("auditspan_sink_retries_total", &SINK) >= 1.0);

    let mut records = daemon.dead_letters();
    records.sort_by_key(|r| r["span"]["attributes"]["vault.request.id"].to_string());
    let rejected: Vec<String> = (0..16).filter(|n| n % 4 == 1).map(request_id).collect();
    assert_eq!(
        records
            .iter()
            .map(|r| r["span"]["attributes"]["vault.request.id"]
                .as_str()
                .unwrap()
                .to_owned())
            .collect::<Vec<_>>(),
        rejected
    );
    for record in &records {
        assert_eq!(record["reason"], "rejected");
        assert_eq!(record["sink"], "honeycomb");
        assert_eq!(
            record["message"],
            "Honeycomb event status 400: Event has too many columns."
        );
        assert_eq!(record["span"]["kind"], "server");
    }
}

/// A batch larger than Honeycomb's 5 MB goes as several requests, each under the limit,
/// and each request's per-event statuses apply to its own events: the one event answered
/// 500 in the second request, and only it, is sent again.
#[test]
fn large_batches_go_as_several_requests_with_their_own_statuses() {
    // Five 60,000-byte strings per span: about 300 KB per event, 19 spans about 5.7 MB.
    let data = format!(
        "{{{}}}",
        (0..5)
            .map(|i| format!("\"f{i}\":\"{}\"", "x".repeat(60_000)))
            .collect::<Vec<_>>()
            .join(",")
    );
    let retried = request_id(19);
    let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let held = Arc::clone(&gate);
    let answered = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let seen = Arc::clone(&answered);
    let failing = retried.clone();
    let receiver = Receiver::start(move |request| {
        let (open, changed) = &*held;
        drop(
            changed
                .wait_timeout_while(open.lock().unwrap(), DEADLINE, |open| !*open)
                .unwrap(),
        );
        let mut seen = seen.lock().unwrap();
        let results: Vec<Value> = ids(request)
            .into_iter()
            .map(|id| {
                let count = seen.entry(id.clone()).or_default();
                *count += 1;
                if id == failing && *count == 1 {
                    json!({"status": 500, "error": "try again"})
                } else {
                    json!({"status": 202})
                }
            })
            .collect();
        Reply::json(200, &Value::Array(results))
    });
    let sink = honeycomb_sink(&receiver.url("")) + "timeout = \"120s\"\n";
    let daemon = Daemon::start_with(|dir| {
        format!(
            "{}\n[parse]\nmax_value_bytes = \"64KiB\"\nmax_span_bytes = \"384KiB\"\n\n\
             [[sink]]\ntype = \"stdout\"\n\n{sink}",
            default_config(dir)
        )
    });
    send(&daemon, pair_with(0, |e| e.data(&data)));
    daemon.wait_until(DEADLINE, "the first export to arrive", || {
        receiver.requests().len() == 1
    });
    send(
        &daemon,
        (1..20)
            .map(|n| pair_with(n, |e| e.data(&data)))
            .collect::<String>(),
    );
    daemon.wait_for_spans(20);
    {
        let (open, changed) = &*gate;
        *open.lock().unwrap() = true;
        changed.notify_all();
    }
    daemon.wait_until(DEADLINE, "every span delivered", || {
        daemon
            .metrics()
            .get("auditspan_sink_exported_spans_total", &SINK)
            == 20.0
    });
    let requests = receiver.requests();
    for request in &requests {
        assert!(
            request.body.len() <= 5_000_000,
            "a request of {} bytes",
            request.body.len()
        );
    }
    let sizes: Vec<usize> = requests.iter().map(|r| ids(r).len()).collect();
    assert_eq!(sizes[0], 1, "{sizes:?}");
    assert!(
        sizes.len() >= 4 && sizes[1] + sizes[2] == 19 && sizes[1] > 1 && sizes[2] > 1,
        "the batch of 19 went as two requests, then the failed event alone: {sizes:?}"
    );
    assert_eq!(
        ids(&requests[3]),
        std::slice::from_ref(&retried),
        "{sizes:?}"
    );
    let answered = answered.lock().unwrap();
    for n in 0..20 {
        let id = request_id(n);
        let expected = if id == retried { 2 } else { 1 };
        assert_eq!(answered.get(&id), Some(&expected), "span {n}");
    }
    assert_eq!(requests.len(), 4, "{sizes:?}");
    // The strings arrive whole: under Honeycomb's 64 KB.
    let event = &events_of(&requests[1])[0];
    assert_eq!(
        event["data"]["response.data.f0"].as_str().unwrap().len(),
        60_000
    );
}

/// A refused key (401) is retried with a log line that says so; the key reaches the
/// receiver in its header and never appears in stderr (not even when the backend's error
/// text quotes it), `/metrics` or the dead-letter file.
#[test]
fn refused_api_key_is_retried_and_never_logged() {
    let calls = Arc::new(Mutex::new(0));
    let counted = Arc::clone(&calls);
    let receiver = Receiver::start(move |request| {
        let mut calls = counted.lock().unwrap();
        *calls += 1;
        if *calls <= 2 {
            // A careless proxy quoting the header back: the sink must not log it.
            let key = request.header("x-honeycomb-team").unwrap_or_default();
            Reply::json(
                401,
                &json!({"error": format!("unknown API key {key} - check your credentials")}),
            )
        } else {
            ack_all(request)
        }
    });
    let daemon =
        Daemon::start_with(|dir| config_with_sink(dir, &honeycomb_sink(&receiver.url(""))));
    send_pairs(&daemon, 0..3);
    daemon.wait_until(
        DEADLINE,
        "the spans delivered after the key was refused",
        || {
            daemon
                .metrics()
                .get("auditspan_sink_exported_spans_total", &SINK)
                == 3.0
        },
    );
    let requests = receiver.requests();
    assert!(requests.len() >= 3);
    assert!(
        requests
            .iter()
            .all(|r| r.header("x-honeycomb-team") == Some(API_KEY))
    );
    let stderr = daemon.stderr();
    assert!(stderr.contains("API key rejected"), "{stderr}");
    assert!(stderr.contains("401"), "{stderr}");
    assert!(stderr.contains("unknown API key <redacted>"), "{stderr}");
    assert!(
        !stderr.contains(API_KEY),
        "the key is in the log:\n{stderr}"
    );
    let metrics = crate::support::http_agent()
        .get(&format!("http://{}/metrics", daemon.metrics_addr()))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(!metrics.contains(API_KEY));
    assert!(daemon.dead_letters().is_empty());
    assert!(daemon.stdout_lines().iter().all(|l| !l.contains(API_KEY)));
    assert_eq!(
        daemon.metrics().get(
            "auditspan_sink_failed_exports_total",
            &[("sink", "honeycomb"), ("reason", "retryable")]
        ),
        2.0
    );
}

/// A key named by `api_key_env` that is not set stops the daemon at start with a message
/// naming the sink and the variable.
#[test]
fn missing_api_key_variable_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[[sink]]\ntype = \"honeycomb\"\ndataset = \"d\"\napi_key_env = \"AUDITSPAN_TEST_UNSET_HONEYCOMB_KEY\"\n",
        default_config(dir.path())
    );
    std::fs::write(dir.path().join("c.toml"), config).unwrap();
    let output = auditspan(dir.path())
        .args(["run", "--config", "c.toml"])
        .env_remove("AUDITSPAN_TEST_UNSET_HONEYCOMB_KEY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("sink \"honeycomb\"")
            && stderr.contains("AUDITSPAN_TEST_UNSET_HONEYCOMB_KEY"),
        "{stderr}"
    );
}

/// Honeycomb down → events wait on disk while stdout delivers the spans → Honeycomb up →
/// every span arrives exactly once.
#[test]
fn outage_waits_on_disk_then_delivers_every_span_once() {
    outage_then_delivery(
        "honeycomb",
        |addr| honeycomb_sink(&format!("http://{addr}")),
        ids,
        ack_all,
    );
}

//! The OTLP sink against real OTLP receivers on loopback (gRPC with tonic, HTTP/protobuf
//! with actix-web; see `support::receiver::otlp`), driven through the real binary: what arrives is
//! exactly what the stdout sink prints for the same input, gzip and headers included; the
//! `OTEL_*` environment configures it; rejected spans are dead-lettered while the rest of
//! their batch is delivered; retryable answers and outages delay spans without losing or
//! repeating them; `auditspan check` shows the effective settings and no secret.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use crate::support::net::private_ca;
use crate::support::receiver::{
    free_port,
    otlp::{Answer, Protocol, Receiver, assert_same_spans, delivered_as_stdout_json, hex},
};
use crate::support::{
    DEADLINE, Daemon, Event, auditspan, default_config, fixture, request_id, send, toml_string,
};

const PROTOCOLS: [Protocol; 2] = [Protocol::Grpc, Protocol::Http];

/// `auditspan import FILES` in `dir` with `config` and `env`; fails the test unless it
/// exits 0.
fn import(dir: &Path, config: &str, env: &[(&str, &str)], files: &[PathBuf]) -> Output {
    let path = dir.join("import.toml");
    std::fs::write(&path, config).unwrap();
    let output = auditspan(dir)
        .envs(env.iter().copied())
        .arg("import")
        .arg("--config")
        .arg(&path)
        .arg("--deadletter")
        .arg(dir.join("import-deadletter.jsonl"))
        .args(files)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout_spans(output: &Output) -> Vec<Value> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A request/response pair with request id `id` and `request.path` `path`, the request at
/// `millis` after 2025-03-11T14:00:00Z and the response 1 ms later, its data naming
/// `millis` (so that no two spans have the same attributes).
fn pair(id: &str, path: &str, millis: u64) -> String {
    let data = format!(r#"{{"n":{millis}}}"#);
    Event::request(id, millis).path(path).line()
        + &Event::response(id, millis + 1)
            .path(path)
            .data(&data)
            .line()
}

/// A daemon config: the default input and metrics, an OTLP sink named `otlp` with
/// `extra` lines, and a stdout sink first when `with_stdout`.
fn daemon_config(
    dir: &Path,
    protocol: Protocol,
    endpoint: &str,
    extra: &str,
    with_stdout: bool,
) -> String {
    let stdout = if with_stdout {
        "[[sink]]\ntype = \"stdout\"\n\n"
    } else {
        ""
    };
    format!(
        "{}\n{stdout}[[sink]]\ntype = \"otlp\"\nname = \"otlp\"\nprotocol = \"{}\"\nendpoint = {}\n{extra}\n",
        default_config(dir),
        protocol.config_value(),
        toml_string(Path::new(endpoint)),
    )
}

fn request_path(span: &opentelemetry_proto::tonic::trace::v1::Span) -> String {
    span.attributes
        .iter()
        .find(|kv| kv.key == "request.path")
        .map(|kv| crate::support::receiver::otlp::json_value(kv.value.as_ref()))
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Counts per span id of what `receiver` delivered.
fn delivered_ids(receiver: &Receiver) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for span in receiver.delivered() {
        *ids.entry(hex(&span.span_id)).or_default() += 1;
    }
    ids
}

/// The fixture spans (the real OpenBao session, the awkward authored file, and pairs with
/// bool and float arrays) arrive over gRPC and HTTP exactly as stdout prints them: ids,
/// parent ids, names, kind, times, status, typed attributes, resource; every request
/// gzip-compressed and carrying the headers from `headers` and from `headers_env`.
#[test]
fn fixture_spans_arrive_exactly_as_stdout_prints_them() {
    for protocol in PROTOCOLS {
        let receiver = Receiver::start(protocol);
        let dir = tempfile::tempdir().unwrap();
        let typed = dir.path().join("typed.jsonl");
        std::fs::write(
            &typed,
            concat!(
                r#"{"time":"2025-03-11T16:00:00.000001Z","type":"request","request":{"id":"00000000-0000-4000-8000-0000000000a1","operation":"update","mount_point":"kv/","path":"kv/typed","data":{"flags":[true,false],"ratios":[0.5,1.25,-3e-7],"big":18446744073709551615,"ratio":2.71}}}"#,
                "\n",
                r#"{"time":"2025-03-11T16:00:00.002Z","type":"response","request":{"id":"00000000-0000-4000-8000-0000000000a1","operation":"update","mount_point":"kv/","path":"kv/typed"},"response":{"data":{"counts":[1,-2,9007199254740993]}}}"#,
                "\n"
            ),
        )
        .unwrap();
        let config = format!(
            r#"[[sink]]
type = "stdout"

[[sink]]
type = "otlp"
protocol = "{}"
endpoint = "{}"
compression = "gzip"
headers = {{ "X-File-Header" = "from-file" }}
headers_env = {{ "authorization" = "OTLP_IT_AUTH" }}
"#,
            protocol.config_value(),
            receiver.endpoint()
        );
        let output = import(
            dir.path(),
            &config,
            &[("OTLP_IT_AUTH", "Bearer it-secret")],
            &[
                fixture("openbao-2.7.2-dev-session.jsonl"),
                fixture("authored-edge.jsonl"),
                typed,
            ],
        );
        let expected = stdout_spans(&output);
        assert!(expected.len() > 60, "{} spans", expected.len());
        assert!(expected.iter().any(|s| s["parent_span_id"].is_string()));
        assert!(expected.iter().any(|s| s["status"]["code"] == "error"));

        let received = receiver.received();
        assert!(!received.is_empty());
        for r in &received {
            assert!(r.gzip, "{protocol:?}: a request without gzip");
            assert_eq!(r.header("x-file-header"), Some("from-file"), "{protocol:?}");
            assert_eq!(
                r.header("authorization"),
                Some("Bearer it-secret"),
                "{protocol:?}"
            );
            assert!(
                r.header("user-agent")
                    .is_some_and(|ua| ua.starts_with("auditspan/")),
                "{protocol:?}: {:?}",
                r.header("user-agent")
            );
            if protocol == Protocol::Http {
                assert_eq!(r.path, "/v1/traces");
                assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
            }
            assert_eq!(r.answer, Answer::Ok);
        }
        let actual = delivered_as_stdout_json(&receiver);
        assert_same_spans(&expected, &actual);

        // The typed pair: arrays of bools and doubles and ints, a u64 beyond i64 as text.
        let typed = actual
            .iter()
            .find(|s| s["attributes"]["request.path"] == "kv/typed")
            .unwrap();
        let attrs = &typed["attributes"];
        assert_eq!(
            attrs["request.data.flags"],
            serde_json::json!([true, false])
        );
        assert_eq!(
            attrs["request.data.ratios"],
            serde_json::json!([0.5, 1.25, -3e-7])
        );
        assert_eq!(attrs["request.data.ratio"], serde_json::json!(2.71));
        assert_eq!(
            attrs["request.data.big"],
            serde_json::json!("18446744073709551615")
        );
        assert_eq!(
            attrs["response.data.counts"],
            serde_json::json!([1, -2, 9007199254740993_i64])
        );
    }
}

/// With no endpoint or protocol in the file, the OTEL_* environment decides: the generic
/// endpoint gets /v1/traces for HTTP, headers are percent-decoded, gzip and the resource
/// come from the environment (for OTLP only: stdout keeps the config's resource); a
/// service_name in the file outranks OTEL_SERVICE_NAME; the traces endpoint with the
/// default protocol reaches a gRPC receiver.
#[test]
fn otel_environment_configures_the_sink() {
    let dir = tempfile::tempdir().unwrap();
    let files = [fixture("authored-basic.jsonl")];
    let http = Receiver::start(Protocol::Http);
    let base = format!("http://{}", http.addr);
    let env = [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", base.as_str()),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "X-Env-Header=a%20b%2Cc,x-other=1",
        ),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ("OTEL_SERVICE_NAME", "from-otel"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=it,service.instance.id=i-9",
        ),
    ];
    let sinks = "[[sink]]\ntype = \"stdout\"\n[[sink]]\ntype = \"otlp\"\n";
    let output = import(dir.path(), sinks, &env, &files);
    let stdout = stdout_spans(&output);
    assert_eq!(stdout.len(), 20);
    assert_eq!(stdout[0]["resource"]["service.name"], "vault");
    let received = http.received();
    assert!(!received.is_empty());
    for r in &received {
        assert_eq!(r.path, "/v1/traces");
        assert!(r.gzip);
        assert_eq!(r.header("x-env-header"), Some("a b,c"));
        assert_eq!(r.header("x-other"), Some("1"));
    }
    let spans = delivered_as_stdout_json(&http);
    assert_eq!(spans.len(), 20);
    let host = stdout[0]["resource"]["host.name"].clone();
    assert_eq!(
        spans[0]["resource"],
        serde_json::json!({
            "service.name": "from-otel",
            "service.instance.id": "i-9",
            "host.name": host,
            "deployment.environment": "it",
        })
    );
    let resource_keys: Vec<String> = received[0].request.resource_spans[0]
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .map(|kv| kv.key.clone())
        .collect();
    assert_eq!(
        resource_keys,
        [
            "service.name",
            "service.instance.id",
            "host.name",
            "deployment.environment"
        ]
    );

    // The file's service_name and instance_id outrank OTEL_SERVICE_NAME and the resource
    // attributes.
    let http = Receiver::start(Protocol::Http);
    let base = format!("http://{}", http.addr);
    let mut env2 = env;
    env2[1].1 = &base;
    let config = format!("service_name = \"from-file\"\ninstance_id = \"file-1\"\n{sinks}");
    import(dir.path(), &config, &env2, &files);
    let spans = delivered_as_stdout_json(&http);
    assert_eq!(spans.len(), 20);
    assert_eq!(spans[0]["resource"]["service.name"], "from-file");
    assert_eq!(spans[0]["resource"]["service.instance.id"], "file-1");
    assert_eq!(spans[0]["resource"]["deployment.environment"], "it");

    // The traces-specific endpoint, as is, with the default protocol: gRPC.
    let grpc = Receiver::start(Protocol::Grpc);
    let endpoint = grpc.endpoint();
    import(
        dir.path(),
        sinks,
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-traces=yes"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-generic=ignored"),
        ],
        &files,
    );
    assert_eq!(grpc.delivered_count(), 20);
    for r in grpc.received() {
        assert!(!r.gzip, "compression defaults to none");
        assert_eq!(r.header("x-traces"), Some("yes"));
        assert_eq!(
            r.header("x-generic"),
            None,
            "the traces variable wins whole"
        );
    }
}

/// `check` prints each OTLP sink's effective settings after the environment, with the
/// source of each, header values redacted wherever they come from; an unsupported
/// protocol in the environment fails `check` with a clear message.
#[test]
fn check_shows_effective_otlp_settings_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        r#"[[sink]]
type = "otlp"
headers = { "authorization" = "Bearer file-s3cret" }
headers_env = { "x-team" = "TEAM_KEY" }
"#,
    )
    .unwrap();
    let out = auditspan(dir.path())
        .args(["check", "--config", "c.toml"])
        .env("TEAM_KEY", "env-s3cret")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "https://collector.example:4318",
        )
        .env("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=otel-s3cret")
        .env("OTEL_SERVICE_NAME", "checked")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stdout.contains("s3cret") && !stderr.contains("s3cret"),
        "{stdout}"
    );
    for needle in [
        r#"#   protocol    = "http/protobuf"  # OTEL_EXPORTER_OTLP_PROTOCOL"#,
        r#"#   endpoint    = "https://collector.example:4318/v1/traces"  # OTEL_EXPORTER_OTLP_ENDPOINT + v1/traces"#,
        r#"#   header      "authorization" = "<redacted>"  # config"#,
        r#"#   header      "x-team" = "<redacted>"  # config, value from $TEAM_KEY"#,
        r#"#   header      "x-api-key" = "<redacted>"  # OTEL_EXPORTER_OTLP_HEADERS"#,
        r#"#   resource    "service.name" = "checked"  # OTEL_SERVICE_NAME"#,
        r#"#   timeout     = "10s"  # default"#,
    ] {
        assert!(stdout.contains(needle), "no {needle:?} in:\n{stdout}");
    }
    // Still valid input for `check`.
    let printed: toml::Table = toml::from_str(&stdout).unwrap();
    assert!(printed.contains_key("sink"));

    let out = auditspan(dir.path())
        .args(["check", "--config", "c.toml"])
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("OTEL_EXPORTER_OTLP_PROTOCOL=http/json: OTLP/JSON is not supported"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

/// A receiver that refuses every request holding one poisoned span (HTTP 400 /
/// INVALID_ARGUMENT): the worker splits the batch until that span is alone, dead-letters
/// it (with the sink's name and the span) and delivers every other span once.
#[test]
fn poisoned_span_is_dead_lettered_and_the_rest_delivered() {
    for protocol in PROTOCOLS {
        let receiver = Receiver::start(protocol);
        receiver.poison("kv/poison");
        let endpoint = receiver.endpoint();
        let daemon = Daemon::start_with(|dir| {
            daemon_config(dir, protocol, &endpoint, "batch_size = 64", false)
        });
        let mut events = String::new();
        for n in 0..9 {
            let path = if n == 5 { "kv/poison" } else { "kv/fine" };
            events.push_str(&pair(&request_id(n + 1), path, n * 10));
        }
        send(&daemon, &events);
        let rejected = [("sink", "otlp"), ("reason", "rejected")];
        daemon.wait_until(DEADLINE, "8 spans delivered and 1 rejected", || {
            let m = daemon.metrics();
            receiver.delivered_count() >= 8
                && m.get("auditspan_sink_failed_exports_total", &rejected) >= 1.0
                && m.get("auditspan_sink_lag_spans", &[("sink", "otlp")]) == 0.0
        });
        let m = daemon.metrics();
        assert_eq!(
            m.get("auditspan_sink_failed_exports_total", &rejected),
            1.0,
            "{protocol:?}"
        );
        assert_eq!(
            m.get("auditspan_sink_exported_spans_total", &[("sink", "otlp")]),
            8.0
        );
        let ids = delivered_ids(&receiver);
        assert_eq!(ids.len(), 8, "{protocol:?}: {ids:?}");
        assert!(ids.values().all(|n| *n == 1), "{protocol:?}: {ids:?}");
        assert!(
            receiver
                .delivered()
                .iter()
                .all(|s| request_path(s) == "kv/fine")
        );
        let refused = receiver
            .received()
            .iter()
            .filter(|r| r.answer == Answer::invalid())
            .count();
        assert!(refused >= 1, "{protocol:?}");

        let text = std::fs::read_to_string(daemon.dir().join("data/deadletter.jsonl"))
            .unwrap_or_else(|e| daemon.fail(&format!("deadletter.jsonl: {e}")));
        let records: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(records.len(), 1, "{protocol:?}: {text}");
        let record = &records[0];
        assert_eq!(record["sink"], "otlp");
        assert_eq!(record["reason"], "rejected");
        assert!(
            record["message"]
                .as_str()
                .unwrap()
                .contains(match protocol {
                    Protocol::Grpc => "InvalidArgument",
                    Protocol::Http => "400",
                }),
            "{record}"
        );
        assert_eq!(record["span"]["attributes"]["request.path"], "kv/poison");
        assert_eq!(
            record["span"]["attributes"]["vault.request.id"],
            request_id(6)
        );
    }
}

/// Throttling and unavailability are retried with the server's delay (RetryInfo /
/// Retry-After) honoured: UNAVAILABLE and RESOURCE_EXHAUSTED with RetryInfo (HTTP 429 with
/// Retry-After, then 503), then success — every span delivered once, the retries counted.
#[test]
fn retryable_answers_are_retried_until_delivered() {
    for protocol in PROTOCOLS {
        let receiver = Receiver::start(protocol);
        receiver.script([
            Answer::Fail {
                grpc: tonic::Code::ResourceExhausted,
                http: 429,
                retry_after: Some(Duration::from_secs(1)),
            },
            Answer::Fail {
                grpc: tonic::Code::Unavailable,
                http: 503,
                retry_after: Some(Duration::from_secs(1)),
            },
        ]);
        let endpoint = receiver.endpoint();
        let daemon = Daemon::start_with(|dir| {
            daemon_config(dir, protocol, &endpoint, "max_retry_delay = \"5s\"", false)
        });
        let mut events = String::new();
        for n in 0..3 {
            events.push_str(&pair(&request_id(n + 1), "kv/x", n * 10));
        }
        send(&daemon, &events);
        daemon.wait_until(DEADLINE, "3 spans delivered", || {
            receiver.delivered_count() >= 3
                && daemon
                    .metrics()
                    .get("auditspan_sink_lag_spans", &[("sink", "otlp")])
                    == 0.0
        });
        let received = receiver.received();
        let answers: Vec<bool> = received
            .iter()
            .map(|r| matches!(r.answer, Answer::Ok))
            .collect();
        assert_eq!(
            answers.iter().filter(|ok| !**ok).count(),
            2,
            "{protocol:?}: {answers:?}"
        );
        assert_eq!(answers.last(), Some(&true));
        let ids = delivered_ids(&receiver);
        assert_eq!(ids.len(), 3);
        assert!(ids.values().all(|n| *n == 1), "{ids:?}");
        // The server's delay is honoured (the backoff alone starts at 0.1 s).
        for pair in received.windows(2) {
            let gap = pair[1].at - pair[0].at;
            if !matches!(pair[0].answer, Answer::Ok) {
                assert!(gap >= Duration::from_millis(950), "{protocol:?}: {gap:?}");
            }
        }
        let m = daemon.metrics();
        let labels = [("sink", "otlp"), ("reason", "retryable")];
        assert!(m.get("auditspan_sink_failed_exports_total", &labels) >= 2.0);
        assert!(m.get("auditspan_sink_retries_total", &[("sink", "otlp")]) >= 2.0);
        assert_eq!(
            m.get("auditspan_sink_exported_spans_total", &[("sink", "otlp")]),
            3.0
        );
    }
}

/// A partial success is not retried: the spans the backend says it rejected are counted
/// as rejected, the others as exported, and the request is sent once.
#[test]
fn partial_success_rejections_are_counted_not_retried() {
    for protocol in PROTOCOLS {
        let receiver = Receiver::start(protocol);
        receiver.script([Answer::Partial {
            rejected: 2,
            message: "two spans too old".into(),
        }]);
        let endpoint = receiver.endpoint();
        let daemon = Daemon::start_with(|dir| daemon_config(dir, protocol, &endpoint, "", false));
        let mut events = String::new();
        for n in 0..3 {
            events.push_str(&pair(&request_id(n + 1), "kv/x", n * 10));
        }
        send(&daemon, &events);
        let rejected = [("sink", "otlp"), ("reason", "rejected")];
        daemon.wait_until(DEADLINE, "3 spans acknowledged", || {
            let m = daemon.metrics();
            m.get("auditspan_sink_failed_exports_total", &rejected)
                + m.get("auditspan_sink_exported_spans_total", &[("sink", "otlp")])
                >= 3.0
                && m.get("auditspan_sink_lag_spans", &[("sink", "otlp")]) == 0.0
        });
        let m = daemon.metrics();
        assert_eq!(m.get("auditspan_sink_failed_exports_total", &rejected), 2.0);
        assert_eq!(
            m.get("auditspan_sink_exported_spans_total", &[("sink", "otlp")]),
            1.0
        );
        let received = receiver.received();
        assert_eq!(received.len(), 1, "{protocol:?}: sent once");
        assert_eq!(received[0].spans().count(), 3);
        assert!(daemon.stderr().contains("two spans too old"));
        assert!(!daemon.dir().join("data/deadletter.jsonl").exists());
    }
}

/// The receiver is down: the OTLP sink's spans wait on disk (its lag and the queue hold
/// them) while the stdout sink beside it delivers everything at once; once the receiver
/// is up, every span arrives exactly once.
#[test]
fn outage_keeps_spans_on_disk_and_does_not_hold_back_stdout() {
    for protocol in PROTOCOLS {
        let addr = free_port();
        let endpoint = match protocol {
            Protocol::Grpc => format!("http://{addr}"),
            Protocol::Http => format!("http://{addr}/v1/traces"),
        };
        let daemon = Daemon::start_with(|dir| {
            daemon_config(
                dir,
                protocol,
                &endpoint,
                "max_retry_delay = \"1s\"\ntimeout = \"5s\"",
                true,
            )
        });
        const FIRST: u64 = 40;
        const TOTAL: u64 = 100;
        let events: String = (0..FIRST)
            .map(|n| pair(&request_id(n + 1), "kv/x", n * 10))
            .collect();
        send(&daemon, &events);
        let otlp = [("sink", "otlp")];
        let connect = [("sink", "otlp"), ("reason", "connect")];
        daemon.wait_until(DEADLINE, "stdout has the first spans, OTLP none", || {
            let m = daemon.metrics();
            daemon.stdout_count() >= FIRST as usize
                && m.get("auditspan_sink_lag_spans", &otlp) == FIRST as f64
                && m.get("auditspan_sink_failed_exports_total", &connect) >= 2.0
        });
        // More while it is down: the lag grows, stdout keeps up.
        let events: String = (FIRST..TOTAL)
            .map(|n| pair(&request_id(n + 1), "kv/x", n * 10))
            .collect();
        send(&daemon, &events);
        daemon.wait_until(DEADLINE, "stdout has every span, OTLP none", || {
            let m = daemon.metrics();
            daemon.stdout_count() >= TOTAL as usize
                && m.get("auditspan_sink_lag_spans", &otlp) == TOTAL as f64
        });
        let m = daemon.metrics();
        assert_eq!(m.get("auditspan_queue_spans", &[]), TOTAL as f64);
        assert_eq!(
            m.get("auditspan_sink_lag_spans", &[("sink", "stdout")]),
            0.0
        );
        assert_eq!(m.get("auditspan_sink_exported_spans_total", &otlp), 0.0);

        let receiver = Receiver::start_on(protocol, addr);
        daemon.wait_until(DEADLINE, "every span delivered over OTLP", || {
            let m = daemon.metrics();
            m.get("auditspan_sink_lag_spans", &otlp) == 0.0
                && m.get("auditspan_queue_spans", &[]) == 0.0
        });
        let ids = delivered_ids(&receiver);
        assert_eq!(ids.len(), TOTAL as usize, "{protocol:?}");
        assert!(
            ids.values().all(|n| *n == 1),
            "{protocol:?}: a span arrived twice: {ids:?}"
        );
        let stdout_ids: std::collections::BTreeSet<String> = daemon
            .spans()
            .iter()
            .map(|s| s["span_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            stdout_ids,
            ids.keys().cloned().collect(),
            "{protocol:?}: the same spans"
        );
    }
}

/// TLS to a gRPC receiver whose certificate a private CA signed: without `ca_file` the
/// certificate is refused (and the spans are not delivered: the import times out); with
/// it, every span arrives.
#[test]
fn tls_trusts_the_ca_file_besides_the_system_roots() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_ca(dir.path());
    let receiver =
        Receiver::start_grpc_tls(&std::fs::read(cert).unwrap(), &std::fs::read(key).unwrap());
    let endpoint = format!("https://127.0.0.1:{}", receiver.addr.port());
    let files = [fixture("authored-basic.jsonl")];

    let config = format!(
        "import_timeout = \"2s\"\n[[sink]]\ntype = \"otlp\"\nendpoint = \"{endpoint}\"\nmax_retry_delay = \"200ms\"\n"
    );
    std::fs::write(dir.path().join("untrusted.toml"), &config).unwrap();
    let out = auditspan(dir.path())
        .args(["import", "--config", "untrusted.toml"])
        .args(&files)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
    assert_eq!(receiver.delivered_count(), 0);

    let config = format!(
        "[[sink]]\ntype = \"otlp\"\nendpoint = \"{endpoint}\"\nca_file = {}\n",
        toml_string(&ca)
    );
    import(dir.path(), &config, &[], &files);
    assert_eq!(receiver.delivered_count(), 20);
}

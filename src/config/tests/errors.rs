//! The messages of rejected configurations: each names where the value came from (file
//! and line, or flag and variable), the key, and the offending value, never a secret.

use super::*;

/// A bad override names the flag and the environment variable it may have come from.
#[test]
fn bad_override_names_flag_and_env() {
    let err = load(&Overrides {
        metrics_listen: Some("localhost".into()),
        ..Overrides::default()
    })
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "--metrics-listen / AUDITSPAN_METRICS_LISTEN: metrics.listen: \"localhost\" is not a \
         socket address; write IP:PORT such as \"127.0.0.1:9464\" or \"[::1]:9464\", or \"\" \
         to disable"
    );
}

#[test]
fn unknown_top_level_key_names_key_and_line() {
    let err = error("service_name = \"vault\"\n\nservice_nam = \"x\"\n");
    assert!(
        err.starts_with("config file ./x.toml, line 3, column 1: unknown field `service_nam`"),
        "{err}"
    );
    assert!(err.contains("expected one of"), "{err}");
}

#[test]
fn unknown_key_in_queue_names_key_and_line() {
    let err = error("[queue]\nflush_intervall = \"5ms\"\n");
    assert!(
        err.starts_with("config file ./x.toml, line 2, column 1: unknown field `flush_intervall`, expected one of `flush_interval`"),
        "{err}"
    );
}

#[test]
fn unknown_key_in_input_names_key_and_line() {
    let err = error("[[input]]\ntype = \"unix\"\nsocket = \"/tmp/a.sock\"\n");
    assert!(
        err.starts_with("config file ./x.toml, line 3, column 1: unknown field `socket`"),
        "{err}"
    );
    assert!(err.contains("`path`"), "{err}");
}

#[test]
fn bad_duration_names_field_value_and_line() {
    let err = error("[queue]\nflush_interval = \"5 parsecs\"\n");
    assert!(
        err.starts_with(
            "config file ./x.toml, line 2: queue.flush_interval: \"5 parsecs\" is not a duration ("
        ),
        "{err}"
    );
    assert!(
        err.ends_with("write e.g. \"10s\", \"5ms\", \"1m 30s\""),
        "{err}"
    );
    let err = error("shutdown_timeout = \"0s\"\n");
    assert_eq!(
        err,
        "config file ./x.toml, line 1: shutdown_timeout: \"0s\" is zero; the duration must be positive"
    );
    let err = error("[queue]\nflush_interval = \"1m\"\n");
    assert!(err.starts_with("config file ./x.toml, line 2: queue.flush_interval: \"1m\" is longer than the maximum \"10s\""), "{err}");
}

/// A duration must be a string: a bare number has no unit.
#[test]
fn duration_as_number_is_a_type_error() {
    let err = error("[correlate]\npair_timeout = 10\n");
    assert!(
        err.starts_with(
            "config file ./x.toml, line 2, column 16: invalid type: integer `10`, expected"
        ),
        "{err}"
    );
}

#[test]
fn bad_size_names_field_value_and_line() {
    let err = error("[queue]\nmax_bytes = \"1 gigabyte\"\n");
    assert!(
        err.starts_with(
            "config file ./x.toml, line 2: queue.max_bytes: \"1 gigabyte\" is not a size ("
        ),
        "{err}"
    );
    let err = error("[[input]]\nmax_line_bytes = -1\n");
    assert_eq!(
        err,
        "config file ./x.toml, line 2: input #1.max_line_bytes: -1 is negative; the size must be positive"
    );
    let err = error("[parse]\nmax_value_bytes = \"8KiB\"\nmax_span_bytes = \"4KiB\"\n");
    assert_eq!(
        err,
        "config file ./x.toml, line 2: parse.max_value_bytes: 8192 bytes is more than \
         parse.max_span_bytes (4096 bytes)"
    );
}

#[test]
fn bad_mode_names_value_and_line() {
    for mode in ["\"0800\"", "\"1777\"", "\"60\"", "\"rw-------\""] {
        let err = error(&format!("[[input]]\nmode = {mode}\n"));
        assert_eq!(
            err,
            format!(
                "config file ./x.toml, line 2: input #1.mode: {mode} is not a file mode; write 3 \
                 or 4 octal digits up to \"0777\", e.g. \"0600\""
            )
        );
    }
    let err = error("[[input]]\nmode = 0o600\n");
    assert!(
        err.contains("line 2")
            && err.contains("invalid type: integer `384`, expected a file mode as an octal string such as \"0600\""),
        "{err}"
    );
}

#[test]
fn unknown_input_type_lists_the_supported_ones() {
    // `path` is a key many types take: the message is about the type, not the key.
    let err = error("[[input]]\ntype = \"carrier-pigeon\"\npath = \"/tmp/x\"\n");
    assert_eq!(
        err,
        "config file ./x.toml, line 2: input type \"carrier-pigeon\" is unknown (this version \
         supports: unix, file, fifo, stdin, tcp, udp, http, syslog)"
    );
}

/// Each network input type takes only its own keys, needs its address, and the http
/// input's auth rules hold: a token variable, or `auth = "none"` on loopback only.
#[test]
fn network_input_keys_are_checked_per_type() {
    let cases: &[(&str, &str)] = &[
        (
            "type = \"tcp\"\naddress = \"127.0.0.1:1\"\nmode = \"0600\"",
            "line 4: input #1.mode: a tcp input does not take this key",
        ),
        (
            "type = \"udp\"\naddress = \"127.0.0.1:1\"\nack = \"commit\"",
            "line 4: input #1.ack: a udp input does not take this key",
        ),
        (
            "type = \"unix\"\naddress = \"127.0.0.1:1\"",
            "line 3: input #1.address: a unix input does not take this key",
        ),
        (
            "type = \"tcp\"",
            "line 1: input #1.address: a tcp input needs an address (IP:PORT)",
        ),
        (
            "type = \"udp\"\naddress = \"localhost:514\"",
            "line 3: input #1.address: \"localhost:514\" is not a socket address",
        ),
        (
            "type = \"http\"\naddress = \"127.0.0.1:1\"",
            "input #1.auth_token_env: an http input needs auth_token_env",
        ),
        (
            "type = \"http\"\naddress = \"0.0.0.0:8200\"\nauth = \"none\"",
            "line 4: input #1.auth: auth = \"none\" is refused on 0.0.0.0:8200, which is not a loopback address",
        ),
        (
            "type = \"http\"\naddress = \"127.0.0.1:1\"\nauth = \"basic\"",
            "line 4: input #1.auth: \"basic\" is not an auth mode",
        ),
        (
            "type = \"http\"\naddress = \"127.0.0.1:1\"\nauth = \"none\"\nauth_token_env = \"T\"",
            "line 5: input #1.auth_token_env: give auth = \"none\" or auth_token_env, not both",
        ),
        (
            "type = \"http\"\naddress = \"127.0.0.1:1\"\nauth = \"none\"\ntls_cert = \"c.pem\"",
            "line 5: input #1.tls_key: tls_cert needs tls_key",
        ),
        (
            "type = \"http\"\naddress = \"127.0.0.1:1\"\nauth = \"none\"\nack = \"never\"",
            "line 5: input #1.ack: \"never\" is not an ack mode; write \"commit\" or \"received\"",
        ),
        (
            "type = \"syslog\"",
            "input #1.path: a syslog input needs path (a unix datagram socket) or address",
        ),
        (
            "type = \"syslog\"\npath = \"s.sock\"\naddress = \"127.0.0.1:1\"",
            "line 3: input #1.path: give path (a unix datagram socket) or address, not both",
        ),
        (
            "type = \"syslog\"\npath = \"s.sock\"\nprotocol = \"tcp\"",
            "line 4: input #1.protocol: protocol goes with address",
        ),
        (
            "type = \"syslog\"\naddress = \"127.0.0.1:1\"\nprotocol = \"tls\"",
            "line 4: input #1.protocol: \"tls\" is not a protocol; write \"udp\" or \"tcp\"",
        ),
        (
            "type = \"syslog\"\naddress = \"127.0.0.1:1\"\nmode = \"0600\"",
            "line 4: input #1.mode: mode goes with path",
        ),
    ];
    for (entry, expected) in cases {
        let err = error(&format!("[[input]]\n{entry}\n"));
        assert!(
            err.contains(expected),
            "{entry}:\n{err}\nexpected: {expected}"
        );
    }
}

/// Two inputs on one address with one transport are refused; tcp and udp on one port
/// are not, and port 0 (any free port) never conflicts.
#[test]
fn network_inputs_on_one_address_are_named() {
    let err = error(
        "[[input]]\ntype = \"tcp\"\naddress = \"127.0.0.1:9000\"\n\
         [[input]]\ntype = \"http\"\naddress = \"127.0.0.1:9000\"\nauth = \"none\"\n",
    );
    assert!(
        err.contains("input #2.address: input #1 already listens on \"tcp 127.0.0.1:9000\""),
        "{err}"
    );
    parse(
        "[[input]]\ntype = \"tcp\"\naddress = \"127.0.0.1:9000\"\n\
         [[input]]\ntype = \"udp\"\naddress = \"127.0.0.1:9000\"\n\
         [[input]]\ntype = \"syslog\"\naddress = \"127.0.0.1:0\"\n\
         [[input]]\ntype = \"syslog\"\nname = \"s2\"\naddress = \"127.0.0.1:0\"\n",
    )
    .unwrap();
}

#[test]
fn unknown_sink_type_lists_the_supported_ones() {
    let err = error("[[sink]]\ntype = \"stdout\"\n\n[[sink]]\ntype = \"jaeger\"\n");
    assert_eq!(
        err,
        "config file ./x.toml, line 5: sink type \"jaeger\" is unknown (this version supports: stdout, otlp, zipkin, honeycomb)"
    );
}

/// Network sink keys: what each type takes, and the messages for what it does not.
#[test]
fn network_sink_keys_are_checked_per_type() {
    for (text, expected) in [
        (
            "[[sink]]\nendpoint = \"http://x\"\n",
            "line 2: sink #1.endpoint: a stdout sink does not take this key",
        ),
        (
            "[[sink]]\ntype = \"zipkin\"\nprotocol = \"grpc\"\n",
            "line 3: sink #1.protocol: a zipkin sink does not take this key",
        ),
        (
            "[[sink]]\ntype = \"otlp\"\ndataset = \"d\"\n",
            "line 3: sink #1.dataset: a otlp sink does not take this key",
        ),
        (
            "[[sink]]\ntype = \"otlp\"\nendpoint = \"localhost:4317\"\n",
            "line 3: sink #1.endpoint: \"localhost:4317\": the scheme must be http or https, not localhost",
        ),
        (
            "[[sink]]\ntype = \"zipkin\"\nendpoint = \"not a url\"\n",
            "line 3: sink #1.endpoint: \"not a url\" is not a URL: relative URL without a base",
        ),
        (
            "[[sink]]\ntype = \"zipkin\"\nendpoint = \"https://u:pw@zipkin/api/v2/spans\"\n",
            "line 3: sink #1.endpoint: credentials in the URL are not allowed; use headers or headers_env",
        ),
        (
            "[[sink]]\ntype = \"honeycomb\"\napi_key_env = \"K\"\n",
            "line 1: sink #1.dataset: a honeycomb sink needs a dataset",
        ),
        (
            "[[sink]]\ntype = \"honeycomb\"\ndataset = \"d\"\n",
            "line 1: sink #1.api_key: a honeycomb sink needs api_key or api_key_env",
        ),
        (
            "[[sink]]\ntype = \"honeycomb\"\ndataset = \"a/b\"\napi_key = \"k\"\n",
            "line 3: sink #1.dataset: a dataset name cannot contain \"/\"",
        ),
        (
            "[[sink]]\ntype = \"honeycomb\"\ndataset = \"d\"\napi_key = \"s3cret\"\napi_key_env = \"K\"\n",
            "line 5: sink #1.api_key_env: give api_key or api_key_env, not both",
        ),
        (
            "[[sink]]\ntype = \"otlp\"\nheaders = { \"bad header\" = \"v\" }\n",
            "line 3: sink #1.headers.bad header: \"bad header\" is not a valid header name",
        ),
        (
            "[[sink]]\ntype = \"otlp\"\nheaders = { \"a\" = \"x\" }\nheaders_env = { \"A\" = \"E\" }\n",
            "line 4: sink #1.headers_env.A: header given twice (headers and headers_env, or two spellings)",
        ),
        (
            "[[sink]]\ntype = \"otlp\"\ntimeout = \"0s\"\n",
            "line 3: sink #1.timeout:",
        ),
    ] {
        let err = error(text);
        assert!(
            err.contains(expected),
            "{text:?}\n  got: {err}\n  expected: {expected}"
        );
        assert!(!err.contains("s3cret"), "{err}");
    }
    let err = error("[[sink]]\ntype = \"otlp\"\nprotocol = \"http/json\"\n");
    assert!(err.contains("http/protobuf"), "{err}");
}

#[test]
fn duplicate_sink_name_is_named() {
    let err = error("[[sink]]\ntype = \"stdout\"\n\n[[sink]]\nname = \"stdout\"\n");
    assert_eq!(
        err,
        "config file ./x.toml, line 4: sink #2.name: duplicate sink name \"stdout\" (sink #1 has \
         it too; names must be unique)"
    );
}

#[test]
fn duplicate_input_name_and_path_are_named() {
    let err = error("[[input]]\npath = \"a.sock\"\n[[input]]\npath = \"b.sock\"\n");
    assert!(
        err.contains("input #2.name: duplicate input name \"unix\""),
        "{err}"
    );
    let err = error("[[input]]\npath = \"a.sock\"\n[[input]]\nname = \"b\"\npath = \"a.sock\"\n");
    assert!(
        err.contains("input #2.path: input #1 already listens on \"a.sock\""),
        "{err}"
    );
}

#[test]
fn max_depth_zero_is_out_of_range() {
    let err = error("[parse]\nmax_depth = 0\n");
    assert_eq!(
        err,
        "config file ./x.toml, line 2: parse.max_depth: 0 is out of range (1 to 128)"
    );
    assert!(error("[parse]\nmax_depth = 129\n").contains("129 is out of range"));
}

#[test]
fn bad_metrics_listen_names_value() {
    let err = error("[metrics]\nlisten = \"localhost:9464\"\n");
    assert!(
        err.starts_with("config file ./x.toml, line 2: metrics.listen: \"localhost:9464\" is not a socket address"),
        "{err}"
    );
}

#[test]
fn metrics_max_label_values_is_checked() {
    assert_eq!(parse("").unwrap().metrics.max_label_values, 500);
    let err = error("[metrics]\nmax_label_values = 0\n");
    assert!(
        err.starts_with(
            "config file ./x.toml, line 2: metrics.max_label_values: 0 is out of range (1 to 100000)"
        ),
        "{err}"
    );
    let err = error("[metrics]\nmax_label_value = 5\n");
    assert!(
        err.starts_with("config file ./x.toml, line 2, column 1: unknown field `max_label_value`"),
        "{err}"
    );
    assert!(err.contains("`max_label_values`"), "{err}");
}

#[test]
fn bad_overflow_lists_the_choices() {
    let err = error("[queue]\noverflow = \"drop_newest\"\n");
    assert!(
        err.starts_with(
            "config file ./x.toml, line 2, column 12: unknown variant `drop_newest`, expected"
        ),
        "{err}"
    );
    assert!(
        err.contains("drop_oldest") && err.contains("block"),
        "{err}"
    );
}

#[test]
fn empty_names_and_empty_arrays_are_rejected() {
    assert!(error("[[sink]]\nname = \"\"\n").contains("sink #1.name: must not be empty"));
    assert!(error("sink = []\n").contains("at least one [[sink]] is needed"));
    assert!(error("input = []\n").contains("at least one [[input]] is needed"));
}

#[test]
fn toml_syntax_error_names_line() {
    let err = error("service_name = \"vault\"\n[queue\n");
    assert!(
        err.starts_with("config file ./x.toml, line 2, column "),
        "{err}"
    );
}

#[test]
fn missing_file_names_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.toml");
    let err = load(&Overrides {
        config: Some(path.clone()),
        ..Overrides::default()
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot read config file {}", path.display())
    );
    let ConfigError::Read { source, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn unreadable_file_names_path() {
    // A directory cannot be read as a file, whatever user runs the test (root included).
    let dir = tempfile::tempdir().unwrap();
    let err = load(&Overrides {
        config: Some(dir.path().to_path_buf()),
        ..Overrides::default()
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot read config file {}", dir.path().display())
    );
}

/// A queue that cannot hold one span of `parse.max_span_bytes` is refused, naming both keys
/// and the size that would do; a smaller `max_span_bytes` makes the same queue fine.
#[test]
fn queue_smaller_than_one_largest_span_is_refused() {
    let err = error("[queue]\nmax_bytes = \"256KiB\"\n");
    assert_eq!(
        err,
        "config file ./x.toml, line 2: queue.max_bytes: 262144 bytes cannot hold one span of \
         parse.max_span_bytes (262144 bytes, up to 327680 bytes in the queue with the span's \
         other fields); raise queue.max_bytes to at least 327680 bytes or lower \
         parse.max_span_bytes"
    );
    parse("[queue]\nmax_bytes = \"256KiB\"\n[parse]\nmax_span_bytes = \"128KiB\"\n").unwrap();
    parse("[queue]\nmax_bytes = \"320KiB\"\n").unwrap();
    let err = error("[parse]\nmax_span_bytes = \"384KiB\"\n[queue]\nmax_bytes = \"400KiB\"\n");
    assert!(
        err.starts_with("config file ./x.toml, line 4: queue.max_bytes: 409600 bytes cannot hold one span of parse.max_span_bytes (393216 bytes"),
        "{err}"
    );
}

/// A sink whose endpoint is the daemon's own metrics server is refused (it would be
/// answered 404 forever), naming the sink's endpoint and `metrics.listen`, whether the
/// file sets both or an override moves the metrics server there.
#[test]
fn sink_sending_to_the_own_metrics_server_is_refused() {
    let err = error(
        "[metrics]\nlisten = \"127.0.0.1:9464\"\n\n[[sink]]\ntype = \"stdout\"\n\n[[sink]]\n\
         type = \"zipkin\"\nendpoint = \"http://localhost:9464/api/v2/spans\"\n",
    );
    assert_eq!(
        err,
        "config file ./x.toml, line 9: sink #2.endpoint: \"http://localhost:9464/api/v2/spans\" \
         is this daemon's own metrics.listen (127.0.0.1:9464): the sink would send its spans \
         to auditspan's metrics server, which refuses them, forever"
    );
    // The default metrics.listen is 127.0.0.1:9464.
    let err = error("[[sink]]\ntype = \"otlp\"\nendpoint = \"http://127.0.0.1:9464/v1/traces\"\n");
    assert!(
        err.starts_with("config file ./x.toml, line 3: sink #1.endpoint:"),
        "{err}"
    );
    // Another port, or metrics off: fine.
    parse("[[sink]]\ntype = \"otlp\"\nendpoint = \"http://127.0.0.1:4318/v1/traces\"\n").unwrap();
    parse(
        "[metrics]\nlisten = \"\"\n[[sink]]\ntype = \"otlp\"\nendpoint = \"http://127.0.0.1:9464\"\n",
    )
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[[sink]]\ntype = \"otlp\"\nendpoint = \"http://127.0.0.1:9500/v1/traces\"\n",
    )
    .unwrap();
    let err = load(&Overrides {
        config: Some(path),
        metrics_listen: Some("0.0.0.0:9500".into()),
        ..Overrides::default()
    })
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "--metrics-listen / AUDITSPAN_METRICS_LISTEN: metrics.listen: sink #1.endpoint \
         \"http://127.0.0.1:9500/v1/traces\" is this daemon's own metrics.listen \
         (0.0.0.0:9500): the sink would send its spans to auditspan's metrics server, which \
         refuses them, forever"
    );
}

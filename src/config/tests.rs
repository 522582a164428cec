//! Tests of reading, defaulting, overriding and printing back the configuration, and of
//! `docs/configuration.md` against the code. The error messages are tested in `errors`.

use std::collections::BTreeSet;

use super::raw::Size;
use super::units::{format_size, parse_size};
use super::*;

mod errors;
mod input_file;

fn parse(text: &str) -> Result<Config, ConfigError> {
    from_toml_str(text, Path::new("./x.toml"))
}

fn error(text: &str) -> String {
    match parse(text) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

/// The operator's configuration reference, where the one annotated list of defaults lives.
const CONFIGURATION_MD: &str = include_str!("../../docs/configuration.md");

/// The heading of that list in `docs/configuration.md`.
const REFERENCE_HEADING: &str = "Reference: every key with its default";

/// The ```toml blocks of `docs/configuration.md`, each with the heading it sits under.
fn doc_toml_blocks() -> Vec<(&'static str, String)> {
    let mut blocks = Vec::new();
    let mut heading = "";
    let mut lines = CONFIGURATION_MD.lines();
    while let Some(line) = lines.next() {
        if let Some(lang) = line.strip_prefix("```") {
            let body: String = lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .flat_map(|l| [l, "\n"])
                .collect();
            if lang == "toml" {
                blocks.push((heading, body));
            }
        } else if line.starts_with('#') {
            heading = line.trim_start_matches('#').trim();
        }
    }
    blocks
}

/// The one TOML block under the reference heading.
fn doc_reference() -> String {
    let mut found = doc_toml_blocks()
        .into_iter()
        .filter(|(heading, _)| *heading == REFERENCE_HEADING);
    let (_, reference) = found
        .next()
        .expect("no toml block under the reference heading");
    assert!(
        found.next().is_none(),
        "two toml blocks under the reference heading"
    );
    reference
}

/// The keys that hold a value in `table`, at any depth: a table's keys rather than its
/// name, except for the header maps, whose keys are header names.
fn value_keys(table: &toml::Table, out: &mut BTreeSet<String>) {
    for (key, value) in table {
        match value {
            toml::Value::Table(inner) if key != "headers" && key != "headers_env" => {
                value_keys(inner, out);
            }
            toml::Value::Array(items) if items.iter().all(toml::Value::is_table) => {
                for inner in items.iter().filter_map(toml::Value::as_table) {
                    value_keys(inner, out);
                }
            }
            _ => {
                out.insert(key.clone());
            }
        }
    }
}

/// Every key with a non-default value, one entry of each array more than the default.
const FULL: &str = r#"
data_dir = "/var/lib/auditspan"
service_name = "vault-prod"
instance_id = "vault-1"
shutdown_timeout = "1m 30s"
import_timeout = "2m"
deadletter_max_bytes = "64 MiB"

[[input]]
type = "unix"
name = "primary"
path = "/run/auditspan/audit.sock"
mode = "0660"
prefix = "AUDIT: "
max_line_bytes = 1048576

[[input]]
name = "secondary"
path = "/run/auditspan/audit2.sock"
mode = "640"

[[input]]
type = "file"
name = "vault-file"
path = "/var/log/vault/audit*.log"
start_at = "end"

[[input]]
type = "fifo"
path = "/run/auditspan/audit.fifo"
mode = "0620"

[[input]]
type = "stdin"

[[input]]
type = "tcp"
address = "127.0.0.1:9090"

[[input]]
type = "udp"
address = "[::1]:9090"

[[input]]
type = "http"
name = "bao-http"
address = "0.0.0.0:8200"
auth_token_env = "AUDITSPAN_HTTP_TOKEN"
tls_cert = "/etc/auditspan/cert.pem"
tls_key = "/etc/auditspan/key.pem"
ack = "received"

[[input]]
type = "http"
name = "local-http"
address = "127.0.0.1:8201"
auth = "none"

[[input]]
type = "syslog"
name = "bao-syslog"
path = "/run/auditspan/syslog.sock"
mode = "0666"

[[input]]
type = "syslog"
name = "relay-tcp"
address = "127.0.0.1:6514"
protocol = "tcp"

[[input]]
type = "syslog"
name = "relay-udp"
address = "127.0.0.1:6514"

[parse]
max_depth = 16
max_attributes = 1000
max_value_bytes = "8KiB"
max_span_bytes = "300KiB"

[correlate]
pair_timeout = "30s"
join_traceparent = false

[queue]
flush_interval = "1.5ms"
max_bytes = "10GB"
overflow = "block"

[[sink]]
type = "stdout"

[[sink]]
type = "stdout"
name = "debug"
batch_size = 64
max_retry_delay = "2s"

[[sink]]
type = "otlp"
protocol = "http/protobuf"
endpoint = "https://otel.example:4318/v1/traces"
headers_env = { "Authorization" = "OTLP_AUTH" }
compression = "gzip"
timeout = "3s"
ca_file = "/etc/ssl/ca.pem"

[[sink]]
type = "zipkin"
endpoint = "http://zipkin:9411/api/v2/spans"
compression = "none"

[[sink]]
type = "honeycomb"
dataset = "vault"
api_key_env = "HONEYCOMB_API_KEY"

[metrics]
listen = "[::1]:0"
max_label_values = 20
"#;

/// No file: the documented defaults.
#[test]
fn no_file_gives_defaults() {
    let config = load(&Overrides::default()).unwrap();
    assert_eq!(config, Config::default());
    assert_eq!(config.data_dir, PathBuf::from("./auditspan-data"));
    assert_eq!(config.service_name, "vault");
    assert!(!config.instance_id.is_empty());
    assert_eq!(config.shutdown_timeout, Duration::from_secs(10));
    assert_eq!(config.import_timeout, Duration::from_secs(60));
    assert_eq!(config.deadletter_max_bytes, 64 << 20);
    assert_eq!(
        config.inputs,
        vec![InputConfig {
            name: "unix".into(),
            kind: InputKind::Unix(UnixInput {
                path: "./auditspan.sock".into(),
                mode: 0o600,
            }),
            prefix: String::new(),
            max_line_bytes: 4 << 20,
        }]
    );
    assert_eq!(
        config.parse,
        ParseConfig {
            max_depth: 32,
            max_attributes: 256,
            max_value_bytes: 4096,
            max_span_bytes: 256 << 10
        }
    );
    assert_eq!(config.parse.limits(), ParseLimits::default());
    assert_eq!(
        config.correlate,
        CorrelateConfig {
            pair_timeout: Duration::from_secs(10),
            join_traceparent: true
        }
    );
    assert_eq!(
        config.queue,
        QueueConfig {
            flush_interval: Duration::from_millis(5),
            max_bytes: 1 << 30,
            overflow: Overflow::DropOldest,
            segment_bytes: 8 << 20,
        }
    );
    assert_eq!(
        config.sinks,
        vec![SinkConfig::new("stdout", SinkKind::Stdout)]
    );
    assert_eq!(
        config.metrics.listen,
        Some("127.0.0.1:9464".parse().unwrap())
    );
}

/// An empty file means the defaults.
#[test]
fn empty_file_is_the_defaults() {
    assert_eq!(parse("").unwrap(), Config::default());
}

/// The reference block of `docs/configuration.md` writes every key at its default (keys
/// that must stay unset are comments), so as a file it means the defaults. This is what
/// keeps the one reference from drifting from the code.
#[test]
fn reference_in_docs_is_the_defaults() {
    let reference = doc_reference();
    for table in [
        "[[input]]",
        "[parse]",
        "[correlate]",
        "[queue]",
        "[[sink]]",
        "[metrics]",
    ] {
        assert!(
            reference.contains(table),
            "{table} missing in:\n{reference}"
        );
    }
    assert_eq!(parse(&reference).unwrap(), Config::default());
}

/// The reference names every key the code reads (set or commented out): a key added to
/// the code but not to the reference fails here.
#[test]
fn reference_in_docs_names_every_key() {
    // A leading newline, so that the first line's key is found like any other.
    let reference = format!("\n{}", doc_reference());
    let printed: toml::Table = toml::from_str(&parse(FULL).unwrap().to_toml_redacted()).unwrap();
    let mut keys = BTreeSet::new();
    value_keys(&printed, &mut keys);
    assert!(keys.len() > 30, "{keys:?}");
    for key in keys {
        assert!(
            reference.contains(&format!("\n{key} =")) || reference.contains(&format!("# {key} =")),
            "`{key}` is missing from the reference in docs/configuration.md"
        );
    }
}

/// Every TOML example in `docs/configuration.md` is a valid config file.
#[test]
fn every_toml_example_in_docs_parses() {
    let blocks = doc_toml_blocks();
    assert!(blocks.len() >= 2, "{blocks:?}");
    for (heading, block) in blocks {
        if let Err(e) = parse(&block) {
            panic!("the example under \"{heading}\" in docs/configuration.md: {e}\n{block}");
        }
    }
}

/// Every key is read, and `to_toml_redacted` prints something that reads back equal.
#[test]
fn full_file_round_trips() {
    let config = parse(FULL).unwrap();
    assert_eq!(config.shutdown_timeout, Duration::from_secs(90));
    assert_eq!(config.deadletter_max_bytes, 64 << 20);
    assert_eq!(config.inputs.len(), 12);
    let mode = |i: usize| match &config.inputs[i].kind {
        InputKind::Unix(u) => u.mode,
        other => panic!("{other:?}"),
    };
    assert_eq!(mode(0), 0o660);
    assert_eq!(config.inputs[0].prefix, "AUDIT: ");
    assert_eq!(config.inputs[0].max_line_bytes, 1 << 20);
    assert_eq!(mode(1), 0o640);
    assert_eq!(config.inputs[1].max_line_bytes, 4 << 20);
    assert_eq!(
        config.inputs[2].kind,
        InputKind::File(FileInput {
            path: "/var/log/vault/audit*.log".into(),
            start_at: StartAt::End
        })
    );
    assert_eq!(
        config.inputs[3].kind,
        InputKind::Fifo(FifoInput {
            path: "/run/auditspan/audit.fifo".into(),
            mode: 0o620,
            tee: None
        })
    );
    assert_eq!(config.inputs[3].name, "fifo");
    assert_eq!(
        config.inputs[4].kind,
        InputKind::Stdin(StdinInput { tee: None })
    );
    assert_eq!(
        config.inputs[5].kind,
        InputKind::Tcp("127.0.0.1:9090".parse().unwrap())
    );
    assert_eq!(config.inputs[5].name, "tcp");
    assert_eq!(
        config.inputs[6].kind,
        InputKind::Udp("[::1]:9090".parse().unwrap())
    );
    assert_eq!(
        config.inputs[7].kind,
        InputKind::Http(HttpInput {
            address: "0.0.0.0:8200".parse().unwrap(),
            auth: HttpAuth::BearerEnv("AUDITSPAN_HTTP_TOKEN".into()),
            tls: Some(TlsFiles {
                cert: "/etc/auditspan/cert.pem".into(),
                key: "/etc/auditspan/key.pem".into(),
            }),
            ack: Ack::Received,
        })
    );
    assert_eq!(
        config.inputs[8].kind,
        InputKind::Http(HttpInput {
            address: "127.0.0.1:8201".parse().unwrap(),
            auth: HttpAuth::None,
            tls: None,
            ack: Ack::Commit,
        })
    );
    assert_eq!(
        config.inputs[9].kind,
        InputKind::Syslog(SyslogInput {
            socket: SyslogSocket::Unix {
                path: "/run/auditspan/syslog.sock".into(),
                mode: 0o666,
            }
        })
    );
    assert_eq!(
        config.inputs[10].kind,
        InputKind::Syslog(SyslogInput {
            socket: SyslogSocket::Tcp("127.0.0.1:6514".parse().unwrap())
        })
    );
    assert_eq!(
        config.inputs[11].kind,
        InputKind::Syslog(SyslogInput {
            socket: SyslogSocket::Udp("127.0.0.1:6514".parse().unwrap())
        })
    );
    assert_eq!(config.parse.max_span_bytes, 300 << 10);
    assert_eq!(config.queue.flush_interval, Duration::from_micros(1500));
    assert_eq!(config.queue.max_bytes, 10_000_000_000);
    assert_eq!(config.queue.overflow, Overflow::Block);
    assert_eq!(config.sinks[0].name, "stdout");
    assert_eq!(config.sinks[1].name, "debug");
    assert_eq!(config.sinks[1].batch_size, 64);
    assert_eq!(config.sinks[1].max_retry_delay, Duration::from_secs(2));
    assert_eq!(config.sinks[0].batch_size, 512);
    let SinkKind::Otlp(otlp) = &config.sinks[2].kind else {
        panic!("{:?}", config.sinks[2]);
    };
    assert_eq!(otlp.protocol, Some(OtlpProtocol::HttpProtobuf));
    assert_eq!(
        otlp.connection.headers,
        [(
            "authorization".to_owned(),
            Secret::Env("OTLP_AUTH".to_owned())
        )]
    );
    assert_eq!(otlp.connection.compression, Some(Compression::Gzip));
    assert_eq!(otlp.connection.timeout, Some(Duration::from_secs(3)));
    assert_eq!(
        otlp.connection.ca_file,
        Some(PathBuf::from("/etc/ssl/ca.pem"))
    );
    assert_eq!(config.sinks[3].name, "zipkin");
    let SinkKind::Honeycomb(honeycomb) = &config.sinks[4].kind else {
        panic!("{:?}", config.sinks[4]);
    };
    assert_eq!(honeycomb.dataset, "vault");
    assert_eq!(
        honeycomb.api_key,
        Secret::Env("HONEYCOMB_API_KEY".to_owned())
    );
    assert_eq!(honeycomb.connection.endpoint, None);
    assert_eq!(config.metrics.listen, Some("[::1]:0".parse().unwrap()));
    assert_eq!(config.metrics.max_label_values, 20);

    let printed = config.to_toml_redacted();
    assert_eq!(parse(&printed).unwrap(), config, "printed:\n{printed}");
    let defaults = Config::default().to_toml_redacted();
    assert_eq!(
        parse(&defaults).unwrap(),
        Config::default(),
        "printed:\n{defaults}"
    );
}

/// `tee` (which FULL cannot hold beside its stdout sinks) reads, prints back, and is in
/// the reference of `docs/configuration.md`.
#[test]
fn tee_round_trips_and_is_documented() {
    let config = parse(
        "[[input]]\ntype = \"fifo\"\npath = \"a.fifo\"\ntee = \"stdout\"\n\
         [[input]]\ntype = \"stdin\"\ntee = \"stdout\"\n\
         [[sink]]\ntype = \"zipkin\"\n",
    )
    .unwrap();
    assert_eq!(config.inputs[0].kind.tee(), Some(Tee::Stdout));
    assert_eq!(config.inputs[1].kind.tee(), Some(Tee::Stdout));
    let printed = config.to_toml_redacted();
    assert_eq!(parse(&printed).unwrap(), config, "printed:\n{printed}");
    assert!(doc_reference().contains("# tee = \"stdout\""));
}

/// `listen = ""` disables metrics, and prints back as "".
#[test]
fn empty_listen_disables_metrics() {
    let config = parse("[metrics]\nlisten = \"\"\n").unwrap();
    assert_eq!(config.metrics.listen, None);
    assert_eq!(parse(&config.to_toml_redacted()).unwrap(), config);
}

/// Secret keys print as "<redacted>" at any depth; `*_env` names do not.
#[test]
fn redaction_hides_secret_values() {
    let mut table: toml::Table = toml::from_str(
        r#"
        [[sink]]
        type = "honeycomb"
        api_key = "hcaik_secret"
        api_key_env = "HONEYCOMB_API_KEY"
        [sink.headers]
        authorization = "Bearer secret"
        "#,
    )
    .unwrap();
    redact_table(&mut table);
    let printed = toml::to_string(&table).unwrap();
    assert!(!printed.contains("secret"), "{printed}");
    assert!(printed.contains(r#"api_key = "<redacted>""#), "{printed}");
    assert!(
        printed.contains(r#"authorization = "<redacted>""#),
        "{printed}"
    );
    assert!(
        printed.contains(r#"api_key_env = "HONEYCOMB_API_KEY""#),
        "{printed}"
    );
}

/// Secrets written in the file print redacted and never show in `Debug`.
#[test]
fn sink_secrets_are_redacted() {
    let config = parse(
        "[[sink]]\ntype = \"honeycomb\"\ndataset = \"d\"\napi_key = \"hc-s3cret\"\n\
         headers = { \"x-extra\" = \"h-s3cret\" }\n",
    )
    .unwrap();
    let printed = config.to_toml_redacted();
    let debug = format!("{config:?}");
    for shown in [&printed, &debug] {
        assert!(!shown.contains("s3cret"), "{shown}");
    }
    assert!(printed.contains("api_key = \"<redacted>\""), "{printed}");
    assert!(printed.contains("x-extra = \"<redacted>\""), "{printed}");
    let SinkKind::Honeycomb(hc) = &config.sinks[0].kind else {
        panic!()
    };
    assert_eq!(hc.api_key.resolve().unwrap(), "hc-s3cret");
    let missing = Secret::Env("AUDITSPAN_TEST_SURELY_UNSET".to_owned());
    assert_eq!(
        missing.resolve().unwrap_err(),
        "environment variable AUDITSPAN_TEST_SURELY_UNSET is not set or not UTF-8"
    );
}

/// CLI/env overrides beat the file; the file beats the defaults.
#[test]
fn overrides_beat_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auditspan.toml");
    std::fs::write(
        &path,
        "data_dir = \"/from/file\"\nservice_name = \"file\"\nshutdown_timeout = \"3s\"\n[metrics]\nlisten = \"127.0.0.1:1\"\n",
    )
    .unwrap();

    let file_only = load(&Overrides {
        config: Some(path.clone()),
        ..Overrides::default()
    })
    .unwrap();
    assert_eq!(file_only.data_dir, PathBuf::from("/from/file"));
    assert_eq!(file_only.service_name, "file");

    let config = load(&Overrides {
        config: Some(path),
        data_dir: Some("/from/cli".into()),
        metrics_listen: Some(String::new()),
        service_name: Some("cli".into()),
    })
    .unwrap();
    assert_eq!(config.data_dir, PathBuf::from("/from/cli"));
    assert_eq!(config.service_name, "cli");
    assert_eq!(config.metrics.listen, None);
    assert_eq!(config.shutdown_timeout, Duration::from_secs(3));
}

#[test]
fn size_formats_read_back() {
    for (text, bytes) in [
        ("4MiB", 4 << 20),
        ("64 MiB", 64 << 20),
        ("1GiB", 1 << 30),
        ("4096", 4096),
        ("4KB", 4000),
    ] {
        assert_eq!(parse_size(&Size::Text(text.into())), Ok(bytes), "{text}");
    }
    for bytes in [
        1,
        1000,
        4096,
        5 << 20,
        (3 << 30) + 1,
        7 << 40,
        10_000_000_000,
    ] {
        assert_eq!(parse_size(&Size::Text(format_size(bytes))), Ok(bytes));
    }
    assert_eq!(format_size(10_000_000_000), "10GB");
    assert_eq!(format_size(64 << 20), "64MiB");
    assert!(
        parse_size(&Size::Text("99999999999EiB".into()))
            .unwrap_err()
            .contains("too large")
    );
}

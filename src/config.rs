//! The daemon's configuration: one TOML file, `AUDITSPAN_*` environment variables and CLI
//! flags, merged into one validated [`Config`].
//!
//! Operators read `docs/configuration.md`: every key with its default, the accepted
//! formats and the precedence, in one place. A unit test parses that page's reference
//! block and requires it to equal [`Config::default`], so the page cannot drift from the
//! code; change both together.
//!
//! # Precedence
//! CLI flags > `AUDITSPAN_*` environment > config file > defaults. clap merges the flags
//! with the environment (its `env` attribute) into [`Overrides`]; [`load`] reads the file
//! named there (no file → defaults), applies the overrides and validates. The file is
//! validated on its own before overrides apply, so `auditspan check --config FILE` gives
//! the same verdict whatever the environment holds. (The OTLP sink ranks its `OTEL_*`
//! variables between the file and the defaults; that happens in the sink, not here.)
//!
//! # Invariants
//! - A [`Config`] that exists is valid: every range and cross-field rule below has been
//!   checked, so consumers never re-validate.
//! - Every key is optional; unknown keys are errors naming the key and its line. Raw serde
//!   structs (`deny_unknown_fields`) mirror the file; a validation step maps them to the
//!   public types and keeps each value's span so errors can name the line.
//! - [`Config::to_toml_redacted`] prints TOML that [`from_toml_str`] accepts back as an
//!   equal [`Config`], except that secret values (keys in `SECRET_KEYS`) print as
//!   `"<redacted>"`.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use toml::Spanned;

use crate::event::ParseLimits;

/// Names the config file (the `--config` flag's environment variable).
pub const ENV_CONFIG: &str = "AUDITSPAN_CONFIG";
/// Overrides `data_dir` (`--data-dir`).
pub const ENV_DATA_DIR: &str = "AUDITSPAN_DATA_DIR";
/// Overrides `metrics.listen` (`--metrics-listen`); `""` disables the endpoint.
pub const ENV_METRICS_LISTEN: &str = "AUDITSPAN_METRICS_LISTEN";
/// Overrides `service_name` (`--service-name`).
pub const ENV_SERVICE_NAME: &str = "AUDITSPAN_SERVICE_NAME";

/// What [`Config::to_toml_redacted`] prints instead of a secret.
pub const REDACTED: &str = "<redacted>";

/// Keys whose values are secrets, wherever they appear. A table value (`headers`) keeps its
/// keys (header names help debugging) and has every value redacted. The `*_env` variants
/// name an environment variable, not a secret, and print as they are.
const SECRET_KEYS: &[&str] = &["api_key", "headers"];

const DEFAULT_DATA_DIR: &str = "./auditspan-data";
const DEFAULT_SERVICE_NAME: &str = "vault";
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_IMPORT_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_DEADLETTER_MAX_BYTES: u64 = 64 * MIB;
const DEFAULT_SOCKET_PATH: &str = "./auditspan.sock";
const DEFAULT_SOCKET_MODE: u32 = 0o600;
const DEFAULT_MAX_LINE_BYTES: usize = 4 * MIB as usize;
const DEFAULT_MAX_DEPTH: usize = 32;
const DEFAULT_MAX_ATTRIBUTES: usize = 256;
const DEFAULT_MAX_VALUE_BYTES: usize = 4 * KIB as usize;
const DEFAULT_MAX_SPAN_BYTES: usize = 256 * KIB as usize;
const DEFAULT_SINK_BATCH_SIZE: usize = 512;
/// Largest `parse.max_span_bytes`: a span's attributes plus its other fields must stay under
/// the queue's `MAX_SPAN_BYTES` (448 KiB).
const MAX_SPAN_BYTES_LIMIT: usize = 384 << 10;
/// Largest `batch_size`: a batch is read from the queue and held in memory at once.
const MAX_SINK_BATCH_SIZE: i64 = 100_000;
const DEFAULT_MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
const DEFAULT_PAIR_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(5);
const DEFAULT_QUEUE_MAX_BYTES: u64 = GIB;
const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9464));
const DEFAULT_MAX_LABEL_VALUES: usize = 500;
/// Largest `metrics.max_label_values`: every value is a Prometheus series per operation.
const MAX_LABEL_VALUES_LIMIT: usize = 100_000;

/// `parse.max_depth` bound: serde_json's own default recursion limit, which Vault's
/// deepest real events stay far below.
const MAX_DEPTH_LIMIT: usize = 128;
/// `queue.flush_interval` bound: the window is also the crash loss window (DESIGN
/// invariant 3); longer than this is almost certainly a unit mistake.
const MAX_FLUSH_INTERVAL: Duration = Duration::from_secs(10);

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

const INPUT_TYPES: &str = "unix";
const INPUT_TYPES_LATER: &[&str] = &["tcp", "udp", "file", "fifo", "stdin", "syslog"];
const SINK_TYPES: &str = "stdout, otlp, zipkin, honeycomb";
const SINK_TYPES_LATER: &[&str] = &[];

/// Values from CLI flags, already merged by clap with the `AUDITSPAN_*` environment
/// (CLI wins). `None` means neither was given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// The config file; `None` → built-in defaults.
    pub config: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    /// A socket address, or `""` to disable the metrics endpoint.
    pub metrics_listen: Option<String>,
    pub service_name: Option<String>,
}

/// The effective, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Holds the queue database and the dead-letter file.
    pub data_dir: PathBuf,
    /// `service.name` of every span.
    pub service_name: String,
    /// `service.instance.id` of every span; defaults to the host name.
    pub instance_id: String,
    /// Whether `service_name` was set (file, flag or environment) rather than defaulted:
    /// only a set value ranks above `OTEL_SERVICE_NAME` in the OTLP sink's resource.
    pub service_name_given: bool,
    /// Whether `instance_id` was set in the file rather than defaulted: only a set value
    /// ranks above `OTEL_RESOURCE_ATTRIBUTES`' `service.instance.id` (OTLP sink).
    pub instance_id_given: bool,
    /// How long sinks may drain after SIGTERM/SIGINT.
    pub shutdown_timeout: Duration,
    /// How long `auditspan import` waits for an unreachable sink before failing.
    pub import_timeout: Duration,
    /// Size past which the dead-letter file rotates.
    pub deadletter_max_bytes: u64,
    /// `[[input]]` entries; never empty, names unique.
    pub inputs: Vec<InputConfig>,
    pub parse: ParseConfig,
    pub correlate: CorrelateConfig,
    pub queue: QueueConfig,
    /// `[[sink]]` entries; never empty, names unique.
    pub sinks: Vec<SinkConfig>,
    pub metrics: MetricsConfig,
}

/// One `[[input]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputConfig {
    /// Unique among inputs; the `input` metric label and dead-letter field.
    pub name: String,
    pub kind: InputKind,
    /// The socket path (unix); relative to the working directory if relative.
    pub path: PathBuf,
    /// Permission bits of the socket file, at most `0o777`.
    pub mode: u32,
    /// Text the audit device writes before each JSON object; stripped when present.
    pub prefix: String,
    /// Longer lines are rejected as `too_long`.
    pub max_line_bytes: usize,
}

/// The input types this version implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Unix,
}

impl InputKind {
    /// The `type` value in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            InputKind::Unix => "unix",
        }
    }
}

/// `[parse]`: limits applied to each event and span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseConfig {
    /// 1..=128.
    pub max_depth: usize,
    pub max_attributes: usize,
    /// At most `max_span_bytes`.
    pub max_value_bytes: usize,
    pub max_span_bytes: usize,
}

impl ParseConfig {
    /// The per-event limits the parser applies (`max_span_bytes` applies per span, later).
    pub fn limits(&self) -> ParseLimits {
        ParseLimits {
            max_depth: self.max_depth,
            max_attributes: self.max_attributes,
            max_value_bytes: self.max_value_bytes,
        }
    }
}

/// `[correlate]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorrelateConfig {
    /// Positive.
    pub pair_timeout: Duration,
    pub join_traceparent: bool,
}

/// `[queue]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Positive and at most 10 s.
    pub flush_interval: Duration,
    pub max_bytes: u64,
    pub overflow: Overflow,
}

/// What the queue does when it reaches `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Delete the oldest spans (counted and logged) so ingestion never stalls.
    DropOldest,
    /// Stop reading inputs until sinks catch up; Vault may then block on its audit device.
    Block,
}

/// One `[[sink]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkConfig {
    /// Unique among sinks; keys the sink's queue cursor and its metric label.
    pub name: String,
    pub kind: SinkKind,
    /// Spans handed to the backend per export, at most.
    pub batch_size: usize,
    /// The longest wait between two retries of a failed export.
    pub max_retry_delay: Duration,
}

impl SinkConfig {
    /// A sink with the default batch size and retry cap.
    pub fn new(name: impl Into<String>, kind: SinkKind) -> SinkConfig {
        SinkConfig {
            name: name.into(),
            kind,
            batch_size: DEFAULT_SINK_BATCH_SIZE,
            max_retry_delay: DEFAULT_MAX_RETRY_DELAY,
        }
    }
}

/// The sink types this version implements, with their type-specific settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkKind {
    Stdout,
    Otlp(OtlpConfig),
    Zipkin(ZipkinConfig),
    Honeycomb(HoneycombConfig),
}

impl SinkKind {
    /// The `type` value in the file.
    pub fn as_str(&self) -> &'static str {
        match self {
            SinkKind::Stdout => "stdout",
            SinkKind::Otlp(_) => "otlp",
            SinkKind::Zipkin(_) => "zipkin",
            SinkKind::Honeycomb(_) => "honeycomb",
        }
    }

    /// The connection settings of a network sink.
    pub fn connection(&self) -> Option<&Connection> {
        match self {
            SinkKind::Stdout => None,
            SinkKind::Otlp(c) => Some(&c.connection),
            SinkKind::Zipkin(c) => Some(&c.connection),
            SinkKind::Honeycomb(c) => Some(&c.connection),
        }
    }
}

/// A value that is either written in the file or named by an environment variable
/// (`api_key` / `api_key_env`, `headers` / `headers_env`). Its `Debug` never shows a value.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Value(String),
    /// The name of the environment variable holding the value, read when the sink starts.
    Env(String),
}

impl Secret {
    /// The value; for [`Secret::Env`], read from the environment now. The error names the
    /// variable, never a value.
    pub fn resolve(&self) -> Result<String, String> {
        match self {
            Secret::Value(v) => Ok(v.clone()),
            Secret::Env(name) => std::env::var(name)
                .map_err(|_| format!("environment variable {name} is not set or not UTF-8")),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Value(_) => f.write_str("Value(<redacted>)"),
            Secret::Env(name) => f.debug_tuple("Env").field(name).finish(),
        }
    }
}

/// Body compression of a network sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    None,
    Gzip,
}

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum OtlpProtocol {
    #[serde(rename = "grpc")]
    Grpc,
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

/// What every network sink shares: where to send, how, and with which extra headers.
///
/// Fields the file leaves out are `None` here and take the sink's own default (for OTLP,
/// the `OTEL_EXPORTER_OTLP_*` environment first); see each sink's module.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connection {
    /// An absolute `http` or `https` URL.
    pub endpoint: Option<String>,
    /// Extra request headers (lower-case names), in file order: `headers` first, then
    /// `headers_env`.
    pub headers: Vec<(String, Secret)>,
    pub compression: Option<Compression>,
    /// Per request.
    pub timeout: Option<Duration>,
    /// PEM file with extra CA certificates, trusted besides the system roots.
    pub ca_file: Option<PathBuf>,
}

/// `type = "otlp"`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OtlpConfig {
    pub protocol: Option<OtlpProtocol>,
    pub connection: Connection,
}

/// `type = "zipkin"`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZipkinConfig {
    pub connection: Connection,
}

/// `type = "honeycomb"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoneycombConfig {
    pub dataset: String,
    /// The `X-Honeycomb-Team` value.
    pub api_key: Secret,
    pub connection: Connection,
}

/// `[metrics]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `None`: the HTTP endpoint is disabled (`listen = ""`).
    pub listen: Option<SocketAddr>,
    /// Distinct values the `mount_point` and the `namespace` label of the Vault request
    /// metrics take each; later values are counted as `other`.
    pub max_label_values: usize,
}

/// Why the configuration was rejected. Every message starts with where the value came
/// from (the file and, when known, the line) and quotes the offending key or value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read: missing, not permitted, a directory, or not
    /// UTF-8. The OS error is the `source`.
    #[error("cannot read config file {}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    /// The file is not valid TOML, has an unknown key, or a value of the wrong TOML type
    /// or an unknown enum value; `message` is toml's (it names the key or value).
    #[error("config file {}{}: {message}", .path.display(), Position(*.line, *.column))]
    Toml {
        path: PathBuf,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },

    /// An `[[input]]` or `[[sink]]` names a `type` this version does not implement.
    #[error(
        "{origin}{}: {section} type \"{kind}\" is {}",
        Position(*.line, None),
        unsupported_reason(.section, .kind)
    )]
    UnsupportedType {
        origin: String,
        line: Option<usize>,
        /// `"input"` or `"sink"`.
        section: &'static str,
        kind: String,
    },

    /// A value is malformed (duration, size, mode, address) or out of range, or values
    /// conflict (duplicate names, `max_value_bytes` > `max_span_bytes`).
    #[error("{origin}{}: {field}: {reason}", Position(*.line, None))]
    Invalid {
        /// `config file PATH`, or the flag and environment variable an override came from.
        origin: String,
        line: Option<usize>,
        /// Dotted key, with 1-based entry numbers for arrays: `input #2.mode`.
        field: String,
        /// Quotes the offending value.
        reason: String,
    },
}

/// `", line L, column C"` or nothing, for error messages.
struct Position(Option<usize>, Option<usize>);

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.0 {
            write!(f, ", line {line}")?;
            if let Some(column) = self.1 {
                write!(f, ", column {column}")?;
            }
        }
        Ok(())
    }
}

fn unsupported_reason(section: &str, kind: &str) -> String {
    let (now, later) = match section {
        "input" => (INPUT_TYPES, INPUT_TYPES_LATER),
        _ => (SINK_TYPES, SINK_TYPES_LATER),
    };
    if later.contains(&kind) {
        format!("not supported yet (this version supports: {now})")
    } else if later.is_empty() {
        format!("unknown (this version supports: {now})")
    } else {
        format!(
            "unknown (this version supports: {now}; planned: {})",
            later.join(", ")
        )
    }
}

/// Reads the file named in `overrides` (defaults when none), applies the overrides and
/// validates the result.
pub fn load(overrides: &Overrides) -> Result<Config, ConfigError> {
    let mut config = match &overrides.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            from_toml_str(&text, path)?
        }
        None => Config::default(),
    };
    config.apply(overrides)?;
    Ok(config)
}

/// Parses `text` as a config file, fills in defaults and validates. `origin` names the
/// file in error messages only.
pub fn from_toml_str(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    let ctx = Ctx { path: origin, text };
    // A first, lenient pass looks only at the `type` of each entry: an unsupported type
    // must be reported as such, not as an "unknown field" for a key that type would take.
    let probe: TypeProbe = toml::from_str(text).map_err(|e| ctx.toml_error(e))?;
    for entry in &probe.input {
        if let Some(kind) = &entry.kind {
            ctx.input_kind(kind)?;
        }
    }
    for entry in &probe.sink {
        if let Some(kind) = &entry.kind {
            ctx.sink_kind(kind)?;
        }
    }
    let raw: RawConfig = toml::from_str(text).map_err(|e| ctx.toml_error(e))?;
    ctx.build(raw)
}

impl Default for Config {
    /// The configuration used when no file is given.
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            service_name: DEFAULT_SERVICE_NAME.to_owned(),
            instance_id: default_instance_id(),
            service_name_given: false,
            instance_id_given: false,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            import_timeout: DEFAULT_IMPORT_TIMEOUT,
            deadletter_max_bytes: DEFAULT_DEADLETTER_MAX_BYTES,
            inputs: vec![default_input(InputKind::Unix)],
            parse: ParseConfig {
                max_depth: DEFAULT_MAX_DEPTH,
                max_attributes: DEFAULT_MAX_ATTRIBUTES,
                max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
                max_span_bytes: DEFAULT_MAX_SPAN_BYTES,
            },
            correlate: CorrelateConfig {
                pair_timeout: DEFAULT_PAIR_TIMEOUT,
                join_traceparent: true,
            },
            queue: QueueConfig {
                flush_interval: DEFAULT_FLUSH_INTERVAL,
                max_bytes: DEFAULT_QUEUE_MAX_BYTES,
                overflow: Overflow::DropOldest,
            },
            sinks: vec![SinkConfig::new(SinkKind::Stdout.as_str(), SinkKind::Stdout)],
            metrics: MetricsConfig {
                listen: Some(DEFAULT_METRICS_LISTEN),
                max_label_values: DEFAULT_MAX_LABEL_VALUES,
            },
        }
    }
}

fn default_input(kind: InputKind) -> InputConfig {
    InputConfig {
        name: kind.as_str().to_owned(),
        kind,
        path: PathBuf::from(DEFAULT_SOCKET_PATH),
        mode: DEFAULT_SOCKET_MODE,
        prefix: String::new(),
        max_line_bytes: DEFAULT_MAX_LINE_BYTES,
    }
}

/// The host name, or `"localhost"` if the system reports none (an empty
/// `service.instance.id` would be dropped by most backends).
fn default_instance_id() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    if host.is_empty() {
        "localhost".to_owned()
    } else {
        host
    }
}

impl Config {
    /// Applies CLI/environment overrides; each is validated like its file key.
    fn apply(&mut self, overrides: &Overrides) -> Result<(), ConfigError> {
        if let Some(dir) = &overrides.data_dir {
            if dir.as_os_str().is_empty() {
                return Err(override_error(
                    "--data-dir",
                    ENV_DATA_DIR,
                    "data_dir",
                    "must not be empty",
                ));
            }
            self.data_dir = dir.clone();
        }
        if let Some(name) = &overrides.service_name {
            if name.is_empty() {
                return Err(override_error(
                    "--service-name",
                    ENV_SERVICE_NAME,
                    "service_name",
                    "must not be empty",
                ));
            }
            self.service_name = name.clone();
            self.service_name_given = true;
        }
        if let Some(listen) = &overrides.metrics_listen {
            self.metrics.listen = parse_listen(listen).map_err(|reason| {
                override_error(
                    "--metrics-listen",
                    ENV_METRICS_LISTEN,
                    "metrics.listen",
                    &reason,
                )
            })?;
        }
        Ok(())
    }

    /// The effective configuration as TOML that [`from_toml_str`] accepts back, every key
    /// written out, secrets (`api_key`, `headers` values) replaced by `"<redacted>"`.
    /// What `auditspan check` prints. A defaulted `service_name` / `instance_id` is printed
    /// as a comment, so that it reads back as defaulted (see [`Config::service_name_given`]).
    pub fn to_toml_redacted(&self) -> String {
        let raw = RawConfig::from(self);
        let rendered = toml::Table::try_from(&raw).and_then(|mut table| {
            redact_table(&mut table);
            toml::to_string(&table)
        });
        let mut out = String::new();
        let defaulted = [
            (!self.service_name_given).then_some(("service_name", &self.service_name)),
            (!self.instance_id_given).then_some(("instance_id", &self.instance_id)),
        ];
        for (key, value) in defaulted.into_iter().flatten() {
            out.push_str(&format!(
                "# {key} = {}  # default; below OTEL_* in the OTLP sink's resource\n",
                toml::Value::String(value.clone())
            ));
        }
        // Every value is a string, integer, bool or table, so serialization cannot fail;
        // if it ever does, say so in the output rather than panic in `check`.
        out.push_str(
            &rendered.unwrap_or_else(|e| format!("# cannot render the configuration: {e}\n")),
        );
        out
    }
}

/// A sink endpoint must be an absolute http(s) URL with a host and no credentials (they
/// would be printed by `check`; use `headers` or `headers_env`).
pub(crate) fn check_endpoint(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| format!("\"{text}\" is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "\"{text}\": the scheme must be http or https, not {}",
            url.scheme()
        ));
    }
    if url.host().is_none() {
        return Err(format!("\"{text}\" has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "credentials in the URL are not allowed; use headers or headers_env".to_owned(),
        );
    }
    Ok(())
}

/// Header names must be valid HTTP tokens; a value written in the file must be a valid
/// header value (an `headers_env` value names a variable). Errors never quote the value.
fn check_header(name: &str, value: &str, from_env: bool) -> Result<(), String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(format!("\"{name}\" is not a valid header name"));
    }
    if from_env {
        if value.is_empty() {
            return Err("the environment variable name must not be empty".to_owned());
        }
    } else if value.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
        return Err("the value holds control characters".to_owned());
    }
    Ok(())
}

fn override_error(flag: &str, env: &str, field: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        origin: format!("{flag} / {env}"),
        line: None,
        field: field.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Replaces secret values, at any depth, by [`REDACTED`].
fn redact_table(table: &mut toml::Table) {
    for (key, value) in table.iter_mut() {
        if SECRET_KEYS.contains(&key.as_str()) {
            match value {
                toml::Value::Table(inner) => {
                    for (_, v) in inner.iter_mut() {
                        *v = toml::Value::String(REDACTED.to_owned());
                    }
                }
                other => *other = toml::Value::String(REDACTED.to_owned()),
            }
        } else {
            redact_value(value);
        }
    }
}

fn redact_value(value: &mut toml::Value) {
    match value {
        toml::Value::Table(inner) => redact_table(inner),
        toml::Value::Array(items) => items.iter_mut().for_each(redact_value),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------
// Raw file structs: they mirror the TOML exactly. Values whose errors should name a line
// are `Spanned`; strings that need parsing (durations, sizes, modes, addresses) are parsed
// in `Ctx::build`, where the field name is known.

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    data_dir: Option<Spanned<String>>,
    service_name: Option<Spanned<String>>,
    instance_id: Option<Spanned<String>>,
    shutdown_timeout: Option<Spanned<DurationText>>,
    import_timeout: Option<Spanned<DurationText>>,
    deadletter_max_bytes: Option<Spanned<Size>>,
    #[serde(rename = "input")]
    inputs: Option<Vec<Spanned<RawInput>>>,
    parse: Option<RawParse>,
    correlate: Option<RawCorrelate>,
    queue: Option<RawQueue>,
    #[serde(rename = "sink")]
    sinks: Option<Vec<Spanned<RawSink>>>,
    metrics: Option<RawMetrics>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    name: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    mode: Option<Spanned<ModeText>>,
    prefix: Option<Spanned<String>>,
    max_line_bytes: Option<Spanned<Size>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawParse {
    max_depth: Option<Spanned<i64>>,
    max_attributes: Option<Spanned<i64>>,
    max_value_bytes: Option<Spanned<Size>>,
    max_span_bytes: Option<Spanned<Size>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawCorrelate {
    pair_timeout: Option<Spanned<DurationText>>,
    join_traceparent: Option<bool>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    flush_interval: Option<Spanned<DurationText>>,
    max_bytes: Option<Spanned<Size>>,
    overflow: Option<Overflow>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    name: Option<Spanned<String>>,
    batch_size: Option<Spanned<i64>>,
    max_retry_delay: Option<Spanned<DurationText>>,
    endpoint: Option<Spanned<String>>,
    protocol: Option<Spanned<OtlpProtocol>>,
    headers: Option<Spanned<std::collections::BTreeMap<String, String>>>,
    headers_env: Option<Spanned<std::collections::BTreeMap<String, String>>>,
    compression: Option<Spanned<Compression>>,
    timeout: Option<Spanned<DurationText>>,
    ca_file: Option<Spanned<String>>,
    dataset: Option<Spanned<String>>,
    api_key: Option<Spanned<String>>,
    api_key_env: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<Spanned<String>>,
    max_label_values: Option<Spanned<i64>>,
}

/// The lenient first pass of [`from_toml_str`]: only each entry's `type`.
#[derive(Debug, Deserialize)]
struct TypeProbe {
    #[serde(default)]
    input: Vec<TypeProbeEntry>,
    #[serde(default)]
    sink: Vec<TypeProbeEntry>,
}

#[derive(Debug, Deserialize)]
struct TypeProbeEntry {
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
}

/// Declares a string newtype whose type error says what the string should look like:
/// toml's error for `pair_timeout = 10` then reads "expected a duration string such as
/// \"10s\"" rather than just "expected a string".
macro_rules! string_value {
    ($(#[$doc:meta])* $name:ident, $expecting:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        struct $name(String);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct StrVisitor;
                impl Visitor<'_> for StrVisitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        Ok($name(v.to_owned()))
                    }
                }
                deserializer.deserialize_str(StrVisitor)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }
    };
}

string_value!(
    /// A duration as written, parsed by [`parse_duration`].
    DurationText,
    "a duration string such as \"10s\", \"5ms\" or \"1m 30s\""
);
string_value!(
    /// A file mode as written, parsed by [`parse_mode`].
    ModeText,
    "a file mode as an octal string such as \"0600\""
);

/// A size as written: an integer number of bytes or a string (`"4MiB"`, `"4096"`).
#[derive(Debug, Clone, PartialEq)]
enum Size {
    Bytes(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: a number of bytes or a string such as \"4MiB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                Ok(Size::Bytes(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                i64::try_from(v)
                    .map(Size::Bytes)
                    .map_err(|_| E::custom(format!("size {v} is too large")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                Ok(Size::Text(v.to_owned()))
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Size::Bytes(n) => serializer.serialize_i64(*n),
            Size::Text(s) => serializer.serialize_str(s),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Validation: raw → Config.

/// The file being validated, for error positions.
struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn origin(&self) -> String {
        format!("config file {}", self.path.display())
    }

    fn line(&self, span: Range<usize>) -> Option<usize> {
        // Values built by `RawConfig::from(&Config)` carry an empty span; they have no line.
        if span.is_empty() && span.start == 0 {
            return None;
        }
        Some(position(self.text, span.start).0)
    }

    fn toml_error(&self, error: toml::de::Error) -> ConfigError {
        let (line, column) = match error.span() {
            Some(span) => {
                let (line, column) = position(self.text, span.start);
                (Some(line), Some(column))
            }
            None => (None, None),
        };
        ConfigError::Toml {
            path: self.path.to_path_buf(),
            line,
            column,
            message: error.message().trim_end().to_owned(),
        }
    }

    fn invalid(&self, span: Option<Range<usize>>, field: &str, reason: String) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin(),
            line: span.and_then(|s| self.line(s)),
            field: field.to_owned(),
            reason,
        }
    }

    fn input_kind(&self, kind: &Spanned<String>) -> Result<InputKind, ConfigError> {
        match kind.get_ref().as_str() {
            "unix" => Ok(InputKind::Unix),
            other => Err(ConfigError::UnsupportedType {
                origin: self.origin(),
                line: self.line(kind.span()),
                section: "input",
                kind: other.to_owned(),
            }),
        }
    }

    /// Checks a sink `type`; the settings are filled in by [`Ctx::sinks`].
    fn sink_kind(&self, kind: &Spanned<String>) -> Result<&'static str, ConfigError> {
        match kind.get_ref().as_str() {
            "stdout" => Ok("stdout"),
            "otlp" => Ok("otlp"),
            "zipkin" => Ok("zipkin"),
            "honeycomb" => Ok("honeycomb"),
            other => Err(ConfigError::UnsupportedType {
                origin: self.origin(),
                line: self.line(kind.span()),
                section: "sink",
                kind: other.to_owned(),
            }),
        }
    }

    fn build(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let defaults = Config::default();
        let data_dir = match raw.data_dir {
            Some(v) => PathBuf::from(self.non_empty(v, "data_dir")?),
            None => defaults.data_dir,
        };
        let service_name_given = raw.service_name.is_some();
        let instance_id_given = raw.instance_id.is_some();
        let service_name = match raw.service_name {
            Some(v) => self.non_empty(v, "service_name")?,
            None => defaults.service_name,
        };
        let instance_id = match raw.instance_id {
            Some(v) => self.non_empty(v, "instance_id")?,
            None => defaults.instance_id,
        };
        let shutdown_timeout = self.duration(
            raw.shutdown_timeout,
            "shutdown_timeout",
            defaults.shutdown_timeout,
        )?;
        let import_timeout = self.duration(
            raw.import_timeout,
            "import_timeout",
            defaults.import_timeout,
        )?;
        let deadletter_max_bytes = self.size(
            raw.deadletter_max_bytes,
            "deadletter_max_bytes",
            defaults.deadletter_max_bytes,
        )?;

        let inputs = match raw.inputs {
            None => defaults.inputs,
            Some(entries) => self.inputs(entries)?,
        };
        let parse = self.parse(raw.parse.unwrap_or_default(), defaults.parse)?;
        let correlate = self.correlate(raw.correlate.unwrap_or_default(), defaults.correlate)?;
        let queue = self.queue(raw.queue.unwrap_or_default(), defaults.queue)?;
        let sinks = match raw.sinks {
            None => defaults.sinks,
            Some(entries) => self.sinks(entries)?,
        };
        let metrics = self.metrics(raw.metrics.unwrap_or_default(), defaults.metrics)?;
        Ok(Config {
            data_dir,
            service_name,
            instance_id,
            service_name_given,
            instance_id_given,
            shutdown_timeout,
            import_timeout,
            deadletter_max_bytes,
            inputs,
            parse,
            correlate,
            queue,
            sinks,
            metrics,
        })
    }

    fn inputs(&self, entries: Vec<Spanned<RawInput>>) -> Result<Vec<InputConfig>, ConfigError> {
        if entries.is_empty() {
            return Err(self.invalid(
                None,
                "input",
                "at least one [[input]] is needed (leave the key out for the default)".to_owned(),
            ));
        }
        let mut inputs: Vec<InputConfig> = Vec::with_capacity(entries.len());
        for (i, entry) in entries.into_iter().enumerate() {
            let n = i + 1;
            let entry_span = entry.span();
            let raw = entry.into_inner();
            let kind = match &raw.kind {
                Some(k) => self.input_kind(k)?,
                None => InputKind::Unix,
            };
            let mut input = default_input(kind);
            if let Some(v) = raw.name {
                input.name = self.non_empty(v, &format!("input #{n}.name"))?;
            }
            if let Some(v) = raw.path {
                input.path = PathBuf::from(self.non_empty(v, &format!("input #{n}.path"))?);
            }
            if let Some(v) = raw.mode {
                input.mode = parse_mode(&v.get_ref().0)
                    .map_err(|r| self.invalid(Some(v.span()), &format!("input #{n}.mode"), r))?;
            }
            if let Some(v) = raw.prefix {
                input.prefix = v.into_inner();
            }
            input.max_line_bytes = self.size_usize(
                raw.max_line_bytes,
                &format!("input #{n}.max_line_bytes"),
                input.max_line_bytes,
            )?;
            if let Some(j) = inputs.iter().position(|other| other.name == input.name) {
                return Err(self.invalid(
                    Some(entry_span),
                    &format!("input #{n}.name"),
                    format!(
                        "duplicate input name \"{}\" (input #{} has it too; names must be unique)",
                        input.name,
                        j + 1
                    ),
                ));
            }
            if let Some(j) = inputs.iter().position(|other| other.path == input.path) {
                return Err(self.invalid(
                    Some(entry_span),
                    &format!("input #{n}.path"),
                    format!(
                        "input #{} already listens on \"{}\"",
                        j + 1,
                        input.path.display()
                    ),
                ));
            }
            inputs.push(input);
        }
        Ok(inputs)
    }

    fn sinks(&self, entries: Vec<Spanned<RawSink>>) -> Result<Vec<SinkConfig>, ConfigError> {
        if entries.is_empty() {
            return Err(self.invalid(
                None,
                "sink",
                "at least one [[sink]] is needed (leave the key out for the default)".to_owned(),
            ));
        }
        let mut sinks: Vec<SinkConfig> = Vec::with_capacity(entries.len());
        for (i, entry) in entries.into_iter().enumerate() {
            let n = i + 1;
            let entry_span = entry.span();
            let mut raw = entry.into_inner();
            let type_name = match &raw.kind {
                Some(k) => self.sink_kind(k)?,
                None => "stdout",
            };
            let kind = self.sink_settings(type_name, &mut raw, n, entry_span.clone())?;
            let name = match raw.name {
                Some(v) => self.non_empty(v, &format!("sink #{n}.name"))?,
                None => kind.as_str().to_owned(),
            };
            if let Some(j) = sinks.iter().position(|other| other.name == name) {
                return Err(self.invalid(
                    Some(entry_span),
                    &format!("sink #{n}.name"),
                    format!(
                        "duplicate sink name \"{name}\" (sink #{} has it too; names must be unique)",
                        j + 1
                    ),
                ));
            }
            let mut sink = SinkConfig::new(name, kind);
            if let Some(v) = raw.batch_size {
                sink.batch_size = match usize::try_from(*v.get_ref()) {
                    Ok(n) if (1..=MAX_SINK_BATCH_SIZE).contains(v.get_ref()) => n,
                    _ => {
                        return Err(self.invalid(
                            Some(v.span()),
                            &format!("sink #{n}.batch_size"),
                            format!(
                                "{} is out of range (1 to {MAX_SINK_BATCH_SIZE})",
                                v.get_ref()
                            ),
                        ));
                    }
                };
            }
            sink.max_retry_delay = self.duration(
                raw.max_retry_delay,
                &format!("sink #{n}.max_retry_delay"),
                sink.max_retry_delay,
            )?;
            sinks.push(sink);
        }
        Ok(sinks)
    }

    /// The type-specific keys of sink #`n`; a key its type does not take is an error.
    fn sink_settings(
        &self,
        type_name: &str,
        raw: &mut RawSink,
        n: usize,
        entry_span: Range<usize>,
    ) -> Result<SinkKind, ConfigError> {
        let field = |key: &str| format!("sink #{n}.{key}");
        let not_for = |span: Range<usize>, key: &str| {
            self.invalid(
                Some(span),
                &field(key),
                format!("a {type_name} sink does not take this key"),
            )
        };
        if type_name == "stdout" {
            let stray = [
                raw.endpoint.as_ref().map(|v| (v.span(), "endpoint")),
                raw.headers.as_ref().map(|v| (v.span(), "headers")),
                raw.headers_env.as_ref().map(|v| (v.span(), "headers_env")),
                raw.compression.as_ref().map(|v| (v.span(), "compression")),
                raw.timeout.as_ref().map(|v| (v.span(), "timeout")),
                raw.ca_file.as_ref().map(|v| (v.span(), "ca_file")),
            ];
            if let Some((span, key)) = stray.into_iter().flatten().next() {
                return Err(not_for(span, key));
            }
        }
        if type_name != "otlp"
            && let Some(v) = &raw.protocol
        {
            return Err(not_for(v.span(), "protocol"));
        }
        if type_name != "honeycomb" {
            let stray = [
                raw.dataset.as_ref().map(|v| (v.span(), "dataset")),
                raw.api_key.as_ref().map(|v| (v.span(), "api_key")),
                raw.api_key_env.as_ref().map(|v| (v.span(), "api_key_env")),
            ];
            if let Some((span, key)) = stray.into_iter().flatten().next() {
                return Err(not_for(span, key));
            }
        }
        let connection = |raw: &mut RawSink| self.connection(raw, n);
        Ok(match type_name {
            "otlp" => SinkKind::Otlp(OtlpConfig {
                protocol: raw.protocol.take().map(Spanned::into_inner),
                connection: connection(raw)?,
            }),
            "zipkin" => SinkKind::Zipkin(ZipkinConfig {
                connection: connection(raw)?,
            }),
            "honeycomb" => {
                let dataset = match raw.dataset.take() {
                    Some(v) if v.get_ref().contains('/') => {
                        return Err(self.invalid(
                            Some(v.span()),
                            &field("dataset"),
                            "a dataset name cannot contain \"/\" (Honeycomb takes no encoded \
                             slash in the URL)"
                                .to_owned(),
                        ));
                    }
                    Some(v) => self.non_empty(v, &field("dataset"))?,
                    None => {
                        return Err(self.invalid(
                            Some(entry_span),
                            &field("dataset"),
                            "a honeycomb sink needs a dataset".to_owned(),
                        ));
                    }
                };
                let api_key = match (raw.api_key.take(), raw.api_key_env.take()) {
                    (Some(v), None) => Secret::Value(self.non_empty(v, &field("api_key"))?),
                    (None, Some(v)) => Secret::Env(self.non_empty(v, &field("api_key_env"))?),
                    (Some(_), Some(v)) => {
                        return Err(self.invalid(
                            Some(v.span()),
                            &field("api_key_env"),
                            "give api_key or api_key_env, not both".to_owned(),
                        ));
                    }
                    (None, None) => {
                        return Err(self.invalid(
                            Some(entry_span),
                            &field("api_key"),
                            "a honeycomb sink needs api_key or api_key_env".to_owned(),
                        ));
                    }
                };
                SinkKind::Honeycomb(HoneycombConfig {
                    dataset,
                    api_key,
                    connection: connection(raw)?,
                })
            }
            _ => SinkKind::Stdout,
        })
    }

    /// `endpoint`, `headers`, `headers_env`, `compression`, `timeout`, `ca_file`.
    fn connection(&self, raw: &mut RawSink, n: usize) -> Result<Connection, ConfigError> {
        let field = |key: &str| format!("sink #{n}.{key}");
        let endpoint = match raw.endpoint.take() {
            None => None,
            Some(v) => {
                let span = v.span();
                let text = v.into_inner();
                check_endpoint(&text)
                    .map_err(|reason| self.invalid(Some(span), &field("endpoint"), reason))?;
                Some(text)
            }
        };
        let mut headers: Vec<(String, Secret)> = Vec::new();
        let sources = [
            (raw.headers.take(), "headers", false),
            (raw.headers_env.take(), "headers_env", true),
        ];
        for (table, key, from_env) in sources {
            let Some(table) = table else { continue };
            let span = table.span();
            for (name, value) in table.into_inner() {
                let lower = name.to_ascii_lowercase();
                check_header(&lower, &value, from_env).map_err(|reason| {
                    self.invalid(
                        Some(span.clone()),
                        &format!("{}.{name}", field(key)),
                        reason,
                    )
                })?;
                if headers.iter().any(|(h, _)| *h == lower) {
                    return Err(self.invalid(
                        Some(span.clone()),
                        &format!("{}.{name}", field(key)),
                        "header given twice (headers and headers_env, or two spellings)".to_owned(),
                    ));
                }
                let secret = if from_env {
                    Secret::Env(value)
                } else {
                    Secret::Value(value)
                };
                headers.push((lower, secret));
            }
        }
        let timeout = match raw.timeout.take() {
            None => None,
            Some(v) => Some(self.duration(Some(v), &field("timeout"), Duration::ZERO)?),
        };
        let ca_file = match raw.ca_file.take() {
            None => None,
            Some(v) => Some(PathBuf::from(self.non_empty(v, &field("ca_file"))?)),
        };
        Ok(Connection {
            endpoint,
            headers,
            compression: raw.compression.take().map(Spanned::into_inner),
            timeout,
            ca_file,
        })
    }

    fn parse(&self, raw: RawParse, defaults: ParseConfig) -> Result<ParseConfig, ConfigError> {
        let max_depth = match raw.max_depth {
            None => defaults.max_depth,
            Some(v) => match usize::try_from(*v.get_ref()) {
                Ok(d) if (1..=MAX_DEPTH_LIMIT).contains(&d) => d,
                _ => {
                    return Err(self.invalid(
                        Some(v.span()),
                        "parse.max_depth",
                        format!("{} is out of range (1 to {MAX_DEPTH_LIMIT})", v.get_ref()),
                    ));
                }
            },
        };
        let max_attributes = match raw.max_attributes {
            None => defaults.max_attributes,
            Some(v) => match usize::try_from(*v.get_ref()) {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(self.invalid(
                        Some(v.span()),
                        "parse.max_attributes",
                        format!("{} must be greater than 0", v.get_ref()),
                    ));
                }
            },
        };
        let value_span = raw.max_value_bytes.as_ref().map(|v| v.span());
        let max_value_bytes = self.size_usize(
            raw.max_value_bytes,
            "parse.max_value_bytes",
            defaults.max_value_bytes,
        )?;
        let span_span = raw.max_span_bytes.as_ref().map(|v| v.span());
        let max_span_bytes = self.size_usize(
            raw.max_span_bytes,
            "parse.max_span_bytes",
            defaults.max_span_bytes,
        )?;
        if max_span_bytes > MAX_SPAN_BYTES_LIMIT {
            return Err(self.invalid(
                span_span,
                "parse.max_span_bytes",
                format!(
                    "{max_span_bytes} bytes is more than {MAX_SPAN_BYTES_LIMIT} bytes (384 KiB), the largest span the queue stores"
                ),
            ));
        }
        if max_value_bytes > max_span_bytes {
            return Err(self.invalid(
                value_span,
                "parse.max_value_bytes",
                format!(
                    "{max_value_bytes} bytes is more than parse.max_span_bytes ({max_span_bytes} bytes)"
                ),
            ));
        }
        Ok(ParseConfig {
            max_depth,
            max_attributes,
            max_value_bytes,
            max_span_bytes,
        })
    }

    fn metrics(
        &self,
        raw: RawMetrics,
        defaults: MetricsConfig,
    ) -> Result<MetricsConfig, ConfigError> {
        let listen = match raw.listen {
            None => defaults.listen,
            Some(v) => parse_listen(v.get_ref())
                .map_err(|reason| self.invalid(Some(v.span()), "metrics.listen", reason))?,
        };
        let max_label_values = match raw.max_label_values {
            None => defaults.max_label_values,
            Some(v) => match usize::try_from(*v.get_ref()) {
                Ok(n) if (1..=MAX_LABEL_VALUES_LIMIT).contains(&n) => n,
                _ => {
                    return Err(self.invalid(
                        Some(v.span()),
                        "metrics.max_label_values",
                        format!(
                            "{} is out of range (1 to {MAX_LABEL_VALUES_LIMIT})",
                            v.get_ref()
                        ),
                    ));
                }
            },
        };
        Ok(MetricsConfig {
            listen,
            max_label_values,
        })
    }

    fn correlate(
        &self,
        raw: RawCorrelate,
        defaults: CorrelateConfig,
    ) -> Result<CorrelateConfig, ConfigError> {
        Ok(CorrelateConfig {
            pair_timeout: self.duration(
                raw.pair_timeout,
                "correlate.pair_timeout",
                defaults.pair_timeout,
            )?,
            join_traceparent: raw.join_traceparent.unwrap_or(defaults.join_traceparent),
        })
    }

    fn queue(&self, raw: RawQueue, defaults: QueueConfig) -> Result<QueueConfig, ConfigError> {
        let interval_span = raw.flush_interval.as_ref().map(|v| v.span());
        let flush_interval = self.duration(
            raw.flush_interval,
            "queue.flush_interval",
            defaults.flush_interval,
        )?;
        if flush_interval > MAX_FLUSH_INTERVAL {
            return Err(self.invalid(
                interval_span,
                "queue.flush_interval",
                format!(
                    "\"{}\" is longer than the maximum \"{}\" (it is also the crash loss window)",
                    FriendlyDuration(flush_interval),
                    FriendlyDuration(MAX_FLUSH_INTERVAL)
                ),
            ));
        }
        Ok(QueueConfig {
            flush_interval,
            max_bytes: self.size(raw.max_bytes, "queue.max_bytes", defaults.max_bytes)?,
            overflow: raw.overflow.unwrap_or(defaults.overflow),
        })
    }

    fn non_empty(&self, value: Spanned<String>, field: &str) -> Result<String, ConfigError> {
        if value.get_ref().is_empty() {
            return Err(self.invalid(Some(value.span()), field, "must not be empty".to_owned()));
        }
        Ok(value.into_inner())
    }

    /// A positive duration, or `default` when absent.
    fn duration(
        &self,
        value: Option<Spanned<DurationText>>,
        field: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match value {
            None => Ok(default),
            Some(v) => {
                parse_duration(&v.get_ref().0).map_err(|r| self.invalid(Some(v.span()), field, r))
            }
        }
    }

    /// A positive size in bytes, or `default` when absent.
    fn size(
        &self,
        value: Option<Spanned<Size>>,
        field: &str,
        default: u64,
    ) -> Result<u64, ConfigError> {
        match value {
            None => Ok(default),
            Some(v) => parse_size(v.get_ref()).map_err(|r| self.invalid(Some(v.span()), field, r)),
        }
    }

    fn size_usize(
        &self,
        value: Option<Spanned<Size>>,
        field: &str,
        default: usize,
    ) -> Result<usize, ConfigError> {
        let span = value.as_ref().map(|v| v.span());
        let bytes = self.size(value, field, default as u64)?;
        usize::try_from(bytes).map_err(|_| {
            self.invalid(
                span,
                field,
                format!("{bytes} bytes is too large for this platform"),
            )
        })
    }
}

/// 1-based (line, column) of byte `offset` in `text`; the column counts characters.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// A positive duration in jiff's friendly format (or ISO 8601).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let signed: jiff::SignedDuration = text.trim().parse().map_err(|e| {
        format!("\"{text}\" is not a duration ({e}); write e.g. \"10s\", \"5ms\", \"1m 30s\"")
    })?;
    let duration = Duration::try_from(signed)
        .map_err(|_| format!("\"{text}\" is negative; the duration must be positive"))?;
    if duration.is_zero() {
        return Err(format!("\"{text}\" is zero; the duration must be positive"));
    }
    Ok(duration)
}

/// A positive size in bytes: a number of bytes, or a number with a binary (`KiB`) or
/// decimal (`KB`, `K`) unit.
fn parse_size(size: &Size) -> Result<u64, String> {
    let bytes = match size {
        Size::Bytes(n) => {
            u64::try_from(*n).map_err(|_| format!("{n} is negative; the size must be positive"))?
        }
        Size::Text(text) => {
            let parsed: bytesize::ByteSize = text.trim().parse().map_err(|e| {
                format!("\"{text}\" is not a size ({e}); write e.g. \"4MiB\", \"64 MiB\", \"1GiB\" or a number of bytes")
            })?;
            // bytesize saturates on overflow instead of failing.
            if parsed.as_u64() == u64::MAX {
                return Err(format!("\"{text}\" is too large"));
            }
            parsed.as_u64()
        }
    };
    if bytes == 0 {
        return Err(format!(
            "{} is zero; the size must be positive",
            size_display(size)
        ));
    }
    Ok(bytes)
}

fn size_display(size: &Size) -> String {
    match size {
        Size::Bytes(n) => n.to_string(),
        Size::Text(t) => format!("\"{t}\""),
    }
}

/// The permission bits of a file mode written as an octal string: `"600"` or `"0600"`.
/// A string, not a TOML integer, because `mode = 600` would silently mean decimal 600.
fn parse_mode(text: &str) -> Result<u32, String> {
    let well_formed =
        (3..=4).contains(&text.len()) && text.bytes().all(|b| (b'0'..=b'7').contains(&b));
    let mode = if well_formed {
        u32::from_str_radix(text, 8).ok()
    } else {
        None
    };
    match mode {
        Some(m) if m <= 0o777 => Ok(m),
        _ => Err(format!(
            "\"{text}\" is not a file mode; write 3 or 4 octal digits up to \"0777\", e.g. \"0600\""
        )),
    }
}

/// A socket address to listen on, or `""` for none.
fn parse_listen(text: &str) -> Result<Option<SocketAddr>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        format!(
            "\"{text}\" is not a socket address; write IP:PORT such as \"127.0.0.1:9464\" or \"[::1]:9464\", or \"\" to disable"
        )
    })
}

/// Prints a duration in the friendly format `parse_duration` reads back.
struct FriendlyDuration(Duration);

impl fmt::Display for FriendlyDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match jiff::SignedDuration::try_from(self.0) {
            Ok(d) => write!(f, "{d:#}"),
            // Beyond i64 seconds (~292 billion years): cannot come from a parsed config.
            Err(_) => write!(f, "{}s", self.0.as_secs()),
        }
    }
}

/// A size in the largest unit that divides it exactly, else in bytes.
/// Decimal units are candidates too, so `"10GB"` prints back as itself, not `"9765625KiB"`.
fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 8] = [
        (TIB, "TiB"),
        (1_000_000_000_000, "TB"),
        (GIB, "GiB"),
        (1_000_000_000, "GB"),
        (MIB, "MiB"),
        (1_000_000, "MB"),
        (KIB, "KiB"),
        (1_000, "KB"),
    ];
    for (unit, name) in UNITS {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{name}", bytes / unit);
        }
    }
    bytes.to_string()
}

// ---------------------------------------------------------------------------------------
// Config → raw, for `to_toml_redacted`. Every key is written out.

fn unspanned<T>(value: T) -> Spanned<T> {
    Spanned::new(0..0, value)
}

fn text(value: impl Into<String>) -> Option<Spanned<String>> {
    Some(unspanned(value.into()))
}

fn duration_text(value: Duration) -> Option<Spanned<DurationText>> {
    Some(unspanned(DurationText(FriendlyDuration(value).to_string())))
}

fn size_text(bytes: u64) -> Option<Spanned<Size>> {
    Some(unspanned(Size::Text(format_size(bytes))))
}

impl From<&Config> for RawConfig {
    fn from(c: &Config) -> Self {
        RawConfig {
            data_dir: text(c.data_dir.to_string_lossy()),
            // Defaulted values are printed as comments by `to_toml_redacted`: written out,
            // they would read back as set and outrank the OTEL_* environment.
            service_name: c
                .service_name_given
                .then(|| text(c.service_name.as_str()))
                .flatten(),
            instance_id: c
                .instance_id_given
                .then(|| text(c.instance_id.as_str()))
                .flatten(),
            shutdown_timeout: duration_text(c.shutdown_timeout),
            import_timeout: duration_text(c.import_timeout),
            deadletter_max_bytes: size_text(c.deadletter_max_bytes),
            inputs: Some(
                c.inputs
                    .iter()
                    .map(|i| {
                        unspanned(RawInput {
                            kind: text(i.kind.as_str()),
                            name: text(i.name.as_str()),
                            path: text(i.path.to_string_lossy()),
                            mode: Some(unspanned(ModeText(format!("{:04o}", i.mode)))),
                            prefix: text(i.prefix.as_str()),
                            max_line_bytes: size_text(i.max_line_bytes as u64),
                        })
                    })
                    .collect(),
            ),
            parse: Some(RawParse {
                max_depth: Some(unspanned(
                    i64::try_from(c.parse.max_depth).unwrap_or(i64::MAX),
                )),
                max_attributes: Some(unspanned(
                    i64::try_from(c.parse.max_attributes).unwrap_or(i64::MAX),
                )),
                max_value_bytes: size_text(c.parse.max_value_bytes as u64),
                max_span_bytes: size_text(c.parse.max_span_bytes as u64),
            }),
            correlate: Some(RawCorrelate {
                pair_timeout: duration_text(c.correlate.pair_timeout),
                join_traceparent: Some(c.correlate.join_traceparent),
            }),
            queue: Some(RawQueue {
                flush_interval: duration_text(c.queue.flush_interval),
                max_bytes: size_text(c.queue.max_bytes),
                overflow: Some(c.queue.overflow),
            }),
            sinks: Some(
                c.sinks
                    .iter()
                    .map(|s| {
                        let mut raw = RawSink {
                            kind: text(s.kind.as_str()),
                            name: text(s.name.as_str()),
                            batch_size: Some(unspanned(
                                i64::try_from(s.batch_size).unwrap_or(i64::MAX),
                            )),
                            max_retry_delay: duration_text(s.max_retry_delay),
                            ..RawSink::default()
                        };
                        match &s.kind {
                            SinkKind::Stdout => {}
                            SinkKind::Otlp(c) => {
                                raw.protocol = c.protocol.map(unspanned);
                            }
                            SinkKind::Zipkin(_) => {}
                            SinkKind::Honeycomb(c) => {
                                raw.dataset = text(c.dataset.as_str());
                                match &c.api_key {
                                    Secret::Value(v) => raw.api_key = text(v.as_str()),
                                    Secret::Env(v) => raw.api_key_env = text(v.as_str()),
                                }
                            }
                        }
                        if let Some(c) = s.kind.connection() {
                            raw.endpoint = c.endpoint.as_deref().and_then(text);
                            let pick = |env: bool| {
                                let map: std::collections::BTreeMap<String, String> = c
                                    .headers
                                    .iter()
                                    .filter_map(|(name, secret)| match secret {
                                        Secret::Value(v) if !env => Some((name.clone(), v.clone())),
                                        Secret::Env(v) if env => Some((name.clone(), v.clone())),
                                        _ => None,
                                    })
                                    .collect();
                                (!map.is_empty()).then(|| unspanned(map))
                            };
                            raw.headers = pick(false);
                            raw.headers_env = pick(true);
                            raw.compression = c.compression.map(unspanned);
                            raw.timeout = c.timeout.and_then(duration_text);
                            raw.ca_file =
                                c.ca_file.as_ref().and_then(|p| text(p.to_string_lossy()));
                        }
                        unspanned(raw)
                    })
                    .collect(),
            ),
            metrics: Some(RawMetrics {
                listen: text(c.metrics.listen.map(|a| a.to_string()).unwrap_or_default()),
                max_label_values: Some(unspanned(
                    i64::try_from(c.metrics.max_label_values).unwrap_or(i64::MAX),
                )),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

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
    const CONFIGURATION_MD: &str = include_str!("../docs/configuration.md");

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
                kind: InputKind::Unix,
                path: "./auditspan.sock".into(),
                mode: 0o600,
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
                overflow: Overflow::DropOldest
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
        let printed: toml::Table =
            toml::from_str(&parse(FULL).unwrap().to_toml_redacted()).unwrap();
        let mut keys = BTreeSet::new();
        value_keys(&printed, &mut keys);
        assert!(keys.len() > 30, "{keys:?}");
        for key in keys {
            assert!(
                reference.contains(&format!("\n{key} ="))
                    || reference.contains(&format!("# {key} =")),
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
        assert_eq!(config.inputs.len(), 2);
        assert_eq!(config.inputs[0].mode, 0o660);
        assert_eq!(config.inputs[0].prefix, "AUDIT: ");
        assert_eq!(config.inputs[0].max_line_bytes, 1 << 20);
        assert_eq!(config.inputs[1].mode, 0o640);
        assert_eq!(config.inputs[1].max_line_bytes, 4 << 20);
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
            err.starts_with("config file ./x.toml, line 2: queue.flush_interval: \"5 parsecs\" is not a duration ("),
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
    fn planned_input_type_is_not_supported_yet() {
        // `address` is a tcp key: the message is about the type, not the unknown key.
        let err = error("[[input]]\ntype = \"tcp\"\naddress = \"127.0.0.1:9090\"\n");
        assert_eq!(
            err,
            "config file ./x.toml, line 2: input type \"tcp\" is not supported yet (this version supports: unix)"
        );
        let err = error("[[input]]\ntype = \"carrier-pigeon\"\n");
        assert_eq!(
            err,
            "config file ./x.toml, line 2: input type \"carrier-pigeon\" is unknown (this version \
             supports: unix; planned: tcp, udp, file, fifo, stdin, syslog)"
        );
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
        let err =
            error("[[input]]\npath = \"a.sock\"\n[[input]]\nname = \"b\"\npath = \"a.sock\"\n");
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
            err.starts_with(
                "config file ./x.toml, line 2, column 1: unknown field `max_label_value`"
            ),
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
}

//! `[[sink]]`: where spans go, the settings of each sink type, and the validation of
//! their keys.
//!
//! Invariants of a validated sink:
//! - Its name is unique and keys its cursor in the queue, so renaming a sink makes it start
//!   over at the oldest span still queued.
//! - It holds only the keys its type takes: any other key is an error naming it, never
//!   silently ignored.
//! - Secrets (`api_key`, `headers` values) are [`Secret`]s: `Debug` never shows them, and
//!   [`Config::to_toml_redacted`](super::Config::to_toml_redacted) prints them redacted.
//!   Validation errors never quote them.
//! - An endpoint is an absolute http(s) URL with a host and no credentials in it; header
//!   names are lower-cased HTTP tokens, each given once.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::error::ConfigError;
use super::raw::RawSink;
use super::validate::Ctx;

/// The sink types this version implements, for error messages.
pub(super) const SINK_TYPES: &str = "stdout, otlp, zipkin, honeycomb";
/// The sink types DESIGN plans: "not supported yet" rather than "unknown".
pub(super) const SINK_TYPES_LATER: &[&str] = &[];

const DEFAULT_SINK_BATCH_SIZE: usize = 512;
/// Largest `batch_size`: a batch is read from the queue and held in memory at once.
const MAX_SINK_BATCH_SIZE: i64 = 100_000;
const DEFAULT_MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

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

impl Ctx<'_> {
    /// Checks a sink `type`; the settings are filled in by [`Ctx::sinks`].
    pub(super) fn sink_kind(&self, kind: &Spanned<String>) -> Result<&'static str, ConfigError> {
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

    pub(super) fn sinks(
        &self,
        entries: Vec<Spanned<RawSink>>,
    ) -> Result<Vec<SinkConfig>, ConfigError> {
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
}

//! The raw serde mirror of the config file, both ways: read from TOML, and built from a
//! [`Config`] to print it back.
//!
//! These structs mirror the TOML exactly (`deny_unknown_fields`, so an unknown key is an
//! error naming it and its line). Values whose errors should name a line are `Spanned`;
//! strings that need parsing (durations, sizes, modes, addresses) are kept as written and
//! parsed during validation, where the field name is known. Nothing here checks a range.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use toml::Spanned;

use super::input::{Ack, HttpAuth, InputConfig, InputKind, SyslogSocket};
use super::sink::{Compression, OtlpProtocol, Secret, SinkKind};
use super::units::{FriendlyDuration, format_size};
use super::{Config, Overflow};

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) data_dir: Option<Spanned<String>>,
    pub(super) service_name: Option<Spanned<String>>,
    pub(super) instance_id: Option<Spanned<String>>,
    pub(super) shutdown_timeout: Option<Spanned<DurationText>>,
    pub(super) import_timeout: Option<Spanned<DurationText>>,
    pub(super) deadletter_max_bytes: Option<Spanned<Size>>,
    #[serde(rename = "input")]
    pub(super) inputs: Option<Vec<Spanned<RawInput>>>,
    pub(super) parse: Option<RawParse>,
    pub(super) correlate: Option<RawCorrelate>,
    pub(super) queue: Option<RawQueue>,
    #[serde(rename = "sink")]
    pub(super) sinks: Option<Vec<Spanned<RawSink>>>,
    pub(super) metrics: Option<RawMetrics>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInput {
    #[serde(rename = "type")]
    pub(super) kind: Option<Spanned<String>>,
    pub(super) name: Option<Spanned<String>>,
    pub(super) path: Option<Spanned<String>>,
    pub(super) mode: Option<Spanned<ModeText>>,
    pub(super) prefix: Option<Spanned<String>>,
    pub(super) max_line_bytes: Option<Spanned<Size>>,
    // File inputs (file, fifo, stdin; see input_file.rs).
    pub(super) start_at: Option<Spanned<String>>,
    pub(super) tee: Option<Spanned<String>>,
    // Network inputs (tcp, udp, http, syslog; see input_net.rs).
    pub(super) address: Option<Spanned<String>>,
    pub(super) protocol: Option<Spanned<String>>,
    pub(super) auth: Option<Spanned<String>>,
    pub(super) auth_token_env: Option<Spanned<String>>,
    pub(super) tls_cert: Option<Spanned<String>>,
    pub(super) tls_key: Option<Spanned<String>>,
    pub(super) ack: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawParse {
    pub(super) max_depth: Option<Spanned<i64>>,
    pub(super) max_attributes: Option<Spanned<i64>>,
    pub(super) max_value_bytes: Option<Spanned<Size>>,
    pub(super) max_span_bytes: Option<Spanned<Size>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCorrelate {
    pub(super) pair_timeout: Option<Spanned<DurationText>>,
    pub(super) join_traceparent: Option<bool>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQueue {
    pub(super) flush_interval: Option<Spanned<DurationText>>,
    pub(super) max_bytes: Option<Spanned<Size>>,
    pub(super) overflow: Option<Overflow>,
    pub(super) segment_bytes: Option<Spanned<Size>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSink {
    #[serde(rename = "type")]
    pub(super) kind: Option<Spanned<String>>,
    pub(super) name: Option<Spanned<String>>,
    pub(super) batch_size: Option<Spanned<i64>>,
    pub(super) max_retry_delay: Option<Spanned<DurationText>>,
    pub(super) endpoint: Option<Spanned<String>>,
    pub(super) protocol: Option<Spanned<OtlpProtocol>>,
    pub(super) headers: Option<Spanned<BTreeMap<String, String>>>,
    pub(super) headers_env: Option<Spanned<BTreeMap<String, String>>>,
    pub(super) compression: Option<Spanned<Compression>>,
    pub(super) timeout: Option<Spanned<DurationText>>,
    pub(super) ca_file: Option<Spanned<String>>,
    pub(super) dataset: Option<Spanned<String>>,
    pub(super) api_key: Option<Spanned<String>>,
    pub(super) api_key_env: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) max_label_values: Option<Spanned<i64>>,
}

/// The lenient first pass of [`from_toml_str`]: only each entry's `type`.
#[derive(Debug, Deserialize)]
pub(super) struct TypeProbe {
    #[serde(default)]
    pub(super) input: Vec<TypeProbeEntry>,
    #[serde(default)]
    pub(super) sink: Vec<TypeProbeEntry>,
}

#[derive(Debug, Deserialize)]
pub(super) struct TypeProbeEntry {
    #[serde(rename = "type")]
    pub(super) kind: Option<Spanned<String>>,
}

/// Declares a string newtype whose type error says what the string should look like:
/// toml's error for `pair_timeout = 10` then reads "expected a duration string such as
/// \"10s\"" rather than just "expected a string".
macro_rules! string_value {
    ($(#[$doc:meta])* $name:ident, $expecting:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub(super) struct $name(pub(super) String);

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
pub(super) enum Size {
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
                    .map(|i| unspanned(RawInput::from(i)))
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
                segment_bytes: size_text(c.queue.segment_bytes),
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
                                let map: BTreeMap<String, String> = c
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

fn mode_text(mode: u32) -> Option<Spanned<ModeText>> {
    Some(unspanned(ModeText(format!("{mode:04o}"))))
}

impl From<&InputConfig> for RawInput {
    fn from(i: &InputConfig) -> Self {
        let mut raw = RawInput {
            kind: text(i.kind.as_str()),
            name: text(i.name.as_str()),
            prefix: text(i.prefix.as_str()),
            max_line_bytes: size_text(i.max_line_bytes as u64),
            ..RawInput::default()
        };
        match &i.kind {
            InputKind::Unix(u) => {
                raw.path = text(u.path.to_string_lossy());
                raw.mode = mode_text(u.mode);
            }
            // File inputs.
            InputKind::File(f) => {
                raw.path = text(f.path.as_str());
                raw.start_at = text(f.start_at.as_str());
            }
            InputKind::Fifo(f) => {
                raw.path = text(f.path.to_string_lossy());
                raw.mode = mode_text(f.mode);
                raw.tee = f.tee.and_then(|t| text(t.as_str()));
            }
            InputKind::Stdin(s) => raw.tee = s.tee.and_then(|t| text(t.as_str())),
            // Network inputs.
            InputKind::Tcp(address) | InputKind::Udp(address) => {
                raw.address = text(address.to_string());
            }
            InputKind::Http(h) => {
                raw.address = text(h.address.to_string());
                match &h.auth {
                    HttpAuth::None => raw.auth = text("none"),
                    HttpAuth::BearerEnv(var) => raw.auth_token_env = text(var.as_str()),
                }
                if let Some(tls) = &h.tls {
                    raw.tls_cert = text(tls.cert.to_string_lossy());
                    raw.tls_key = text(tls.key.to_string_lossy());
                }
                raw.ack = text(match h.ack {
                    Ack::Commit => "commit",
                    Ack::Received => "received",
                });
            }
            InputKind::Syslog(s) => match &s.socket {
                SyslogSocket::Unix { path, mode } => {
                    raw.path = text(path.to_string_lossy());
                    raw.mode = mode_text(*mode);
                }
                SyslogSocket::Udp(address) => {
                    raw.address = text(address.to_string());
                    raw.protocol = text("udp");
                }
                SyslogSocket::Tcp(address) => {
                    raw.address = text(address.to_string());
                    raw.protocol = text("tcp");
                }
            },
        }
        raw
    }
}

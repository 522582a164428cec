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
//! - A [`Config`] that exists is valid: every range and cross-field rule has been
//!   checked, so consumers never re-validate.
//! - Every key is optional; unknown keys are errors naming the key and its line. Raw serde
//!   structs (`deny_unknown_fields`, in `raw.rs`) mirror the file; a validation step
//!   (`validate.rs`, `input.rs`, `sink.rs`) maps them to the public types and keeps each
//!   value's span so errors can name the line.
//! - [`Config::to_toml_redacted`] prints TOML that [`from_toml_str`] accepts back as an
//!   equal [`Config`], except that secret values (keys in `SECRET_KEYS`) print as
//!   `"<redacted>"`.
//!
//! # Layout
//! - `mod.rs`: the public types of the top-level keys and tables, [`load`],
//!   [`from_toml_str`], overrides and printing back.
//! - `input.rs`, `sink.rs`: the `[[input]]` and `[[sink]]` types and their validation;
//!   `input_file.rs`: the file inputs' (file, fifo, stdin).
//!   `input_net.rs`: the network inputs' (tcp, udp, http, syslog).
//! - `raw.rs`: the serde mirror of the file, read and written.
//! - `validate.rs`: `Ctx`, which turns the mirror into a [`Config`] with the line of every
//!   bad value; `coherence.rs`: the rules between sections (a config that cannot work);
//!   `error.rs`: [`ConfigError`].
//! - `units.rs`: durations, sizes, file modes and listen addresses, parsed and printed.

mod coherence;
mod error;
mod input;
mod input_file;
mod input_net;
mod raw;
mod sink;
#[cfg(test)]
mod tests;
mod units;
mod validate;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::error::ConfigError;
use self::input::default_input;
pub use self::input::{
    Ack, FifoInput, FileInput, HttpAuth, HttpInput, InputConfig, InputKind, StartAt, StdinInput,
    SyslogInput, SyslogSocket, Tee, TlsFiles, UnixInput,
};
use self::raw::{RawConfig, TypeProbe};
pub(crate) use self::sink::check_endpoint;
pub use self::sink::{
    Compression, Connection, HoneycombConfig, OtlpConfig, OtlpProtocol, Secret, SinkConfig,
    SinkKind, ZipkinConfig,
};
use self::units::{GIB, KIB, MIB, parse_listen};
use self::validate::Ctx;
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
const DEFAULT_MAX_DEPTH: usize = 32;
const DEFAULT_MAX_ATTRIBUTES: usize = 256;
const DEFAULT_MAX_VALUE_BYTES: usize = 4 * KIB as usize;
const DEFAULT_MAX_SPAN_BYTES: usize = 256 * KIB as usize;
const DEFAULT_PAIR_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(5);
const DEFAULT_QUEUE_MAX_BYTES: u64 = GIB;
const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9464));
const DEFAULT_MAX_LABEL_VALUES: usize = 500;

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
    /// Span bytes per queue segment; 64 KiB to 256 MiB.
    pub segment_bytes: u64,
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

/// `[metrics]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `None`: the HTTP endpoint is disabled (`listen = ""`).
    pub listen: Option<SocketAddr>,
    /// Distinct values the `mount_point` and the `namespace` label of the Vault request
    /// metrics take each; later values are counted as `other`.
    pub max_label_values: usize,
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
            inputs: vec![default_input()],
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
                segment_bytes: crate::queue::SEGMENT_BYTES,
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
            if let Some((n, endpoint, listen)) = coherence::own_metrics_endpoint(self) {
                return Err(override_error(
                    "--metrics-listen",
                    ENV_METRICS_LISTEN,
                    "metrics.listen",
                    &format!(
                        "sink #{}.endpoint {}",
                        n + 1,
                        coherence::own_metrics_reason(endpoint, listen)
                    ),
                ));
            }
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

//! Validation: the raw mirror of the file → a [`Config`], every value checked.
//!
//! [`Ctx`] carries the file's path and text, so that each error names the line of the
//! value at fault. This file validates the top-level keys and the single tables
//! (`[parse]`, `[correlate]`, `[queue]`, `[metrics]`); `input.rs` and `sink.rs` add the
//! methods for their arrays. A rule between fields is checked where both are known:
//! `max_value_bytes` ≤ `max_span_bytes` here, unique names in `input.rs` and `sink.rs`;
//! rules between sections, once the whole config is built, in `coherence.rs`.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::coherence::Positions;
use super::error::{ConfigError, position};
use super::raw::{DurationText, RawConfig, RawCorrelate, RawMetrics, RawParse, RawQueue, Size};
use super::units::{FriendlyDuration, parse_duration, parse_listen, parse_size};
use super::{Config, CorrelateConfig, MetricsConfig, ParseConfig, QueueConfig};

/// Largest `parse.max_span_bytes`: a span's attributes plus its other fields must stay under
/// the queue's `MAX_SPAN_BYTES` (448 KiB).
pub(super) const MAX_SPAN_BYTES_LIMIT: usize = 384 << 10;
/// Largest `metrics.max_label_values`: every value is a Prometheus series per operation.
const MAX_LABEL_VALUES_LIMIT: usize = 100_000;
/// `parse.max_depth` bound: serde_json's own default recursion limit, which Vault's
/// deepest real events stay far below.
const MAX_DEPTH_LIMIT: usize = 128;
/// `queue.flush_interval` bound: the window is also the crash loss window (DESIGN
/// invariant 3); longer than this is almost certainly a unit mistake.
const MAX_FLUSH_INTERVAL: Duration = Duration::from_secs(10);
/// `queue.segment_bytes` bounds: below, a segment holds too few records to be worth a
/// database; above, what sled keeps in memory of a segment outgrows a sidecar's limit.
const SEGMENT_BYTES_RANGE: std::ops::RangeInclusive<u64> = (64 << 10)..=(256 << 20);

/// The file being validated, for error positions.
pub(super) struct Ctx<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
}

impl Ctx<'_> {
    pub(super) fn origin(&self) -> String {
        format!("config file {}", self.path.display())
    }

    pub(super) fn line(&self, span: Range<usize>) -> Option<usize> {
        // Values built by `RawConfig::from(&Config)` carry an empty span; they have no line.
        if span.is_empty() && span.start == 0 {
            return None;
        }
        Some(position(self.text, span.start).0)
    }

    pub(super) fn toml_error(&self, error: toml::de::Error) -> ConfigError {
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

    pub(super) fn invalid(
        &self,
        span: Option<Range<usize>>,
        field: &str,
        reason: String,
    ) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin(),
            line: span.and_then(|s| self.line(s)),
            field: field.to_owned(),
            reason,
        }
    }

    pub(super) fn build(&self, raw: RawConfig) -> Result<Config, ConfigError> {
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

        let tee_spans = super::input_file::tee_spans(raw.inputs.as_ref());
        let positions = Positions {
            max_bytes: raw
                .queue
                .as_ref()
                .and_then(|q| q.max_bytes.as_ref().map(|v| v.span())),
            max_span_bytes: raw
                .parse
                .as_ref()
                .and_then(|p| p.max_span_bytes.as_ref().map(|v| v.span())),
            sink_endpoints: raw
                .sinks
                .iter()
                .flatten()
                .map(|s| s.get_ref().endpoint.as_ref().map(|v| v.span()))
                .collect(),
        };
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
        self.tee_and_stdout_sink(&inputs, &sinks, &tee_spans)?;
        let metrics = self.metrics(raw.metrics.unwrap_or_default(), defaults.metrics)?;
        let config = Config {
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
        };
        self.coherent(&config, &positions)?;
        Ok(config)
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
        let segment_span = raw.segment_bytes.as_ref().map(|v| v.span());
        let segment_bytes = self.size(
            raw.segment_bytes,
            "queue.segment_bytes",
            defaults.segment_bytes,
        )?;
        if !SEGMENT_BYTES_RANGE.contains(&segment_bytes) {
            return Err(self.invalid(
                segment_span,
                "queue.segment_bytes",
                format!("{segment_bytes} bytes is outside 64 KiB to 256 MiB"),
            ));
        }
        Ok(QueueConfig {
            flush_interval,
            max_bytes: self.size(raw.max_bytes, "queue.max_bytes", defaults.max_bytes)?,
            overflow: raw.overflow.unwrap_or(defaults.overflow),
            segment_bytes,
        })
    }

    pub(super) fn non_empty(
        &self,
        value: Spanned<String>,
        field: &str,
    ) -> Result<String, ConfigError> {
        if value.get_ref().is_empty() {
            return Err(self.invalid(Some(value.span()), field, "must not be empty".to_owned()));
        }
        Ok(value.into_inner())
    }

    /// A positive duration, or `default` when absent.
    pub(super) fn duration(
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
    pub(super) fn size(
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

    pub(super) fn size_usize(
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

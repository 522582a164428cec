//! Sinks: where spans go. A [`Sink`] only encodes and sends a batch and reads the
//! backend's answer; its [`worker::SinkWorker`] owns the rest (cursor, batching, retries,
//! splitting rejected batches, dead-lettering, acknowledgement).
//!
//! Every sink is built in one place, [`build`], from its `[[sink]]` section; the kinds are
//! listed once more only in [`AnySink`], which the worker drives. Building fails with a
//! [`SinkError`] that names the setting, header, variable or file at fault, never a secret.

pub mod honeycomb;
pub mod http;
pub mod json;
pub mod otlp;
pub mod stdout;
pub mod worker;
pub mod zipkin;

use std::{future::Future, io::Write, path::PathBuf, time::Duration};

use tracing::{info, warn};

use crate::{
    config::{Config, SinkConfig, SinkKind},
    queue::ReadSpans,
    span::Span,
};
use honeycomb::HoneycombSink;
use otlp::OtlpSink;
use stdout::StdoutSink;
use zipkin::ZipkinSink;

/// A backend. `export` delivers the batch or says which spans failed and why.
///
/// Contract: `Ok` means the backend acknowledged the whole request (a backend may still
/// report some spans as dropped, [`Exported::rejected`]); `Err` says what the worker does
/// next ([`FailedSpans`]). A sink never retries by itself.
pub trait Sink: Send + 'static {
    /// The configured name: the key of the sink's cursor and its metric label.
    fn name(&self) -> &str;

    fn export(
        &mut self,
        spans: &[Span],
    ) -> impl Future<Output = Result<Exported, ExportFailure>> + Send;

    /// Delivers the batch as the queue stores it, without decoding it first, for a sink
    /// that writes the stored bytes in its own form itself (stdout): `None` (the default)
    /// when the sink cannot, and the worker decodes the batch and calls
    /// [`Sink::export`]. A sink that can takes every span of the batch or fails as a whole.
    fn export_stored(&mut self, _spans: &ReadSpans) -> Option<Result<StoredExport, ExportFailure>> {
        None
    }
}

/// What [`Sink::export_stored`] delivered.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StoredExport {
    pub exported: Exported,
    /// Spans that did not decode: logged and left out, as the worker leaves out those it
    /// cannot decode for [`Sink::export`].
    pub undecodable: u64,
}

/// A request the backend acknowledged.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Exported {
    /// Spans the backend accepted the request for but reports it dropped (OTLP
    /// `partial_success.rejected_spans`). They are counted as rejected, not retried: the
    /// backend does not say which ones they were.
    pub rejected: u64,
    /// The backend's explanation of `rejected`, for the log.
    pub message: Option<String>,
}

/// Why an export attempt failed: the `reason` label of `sink_failed_exports_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// The backend answered that it cannot take the spans now (e.g. 503, 429).
    Retryable,
    /// The backend refused spans for good (HTTP 400, INVALID_ARGUMENT, a per-event 4xx).
    Rejected,
    /// No answer in time.
    Timeout,
    /// The backend could not be reached (or a local write failed).
    Connect,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Retryable => "retryable",
            FailureReason::Rejected => "rejected",
            FailureReason::Timeout => "timeout",
            FailureReason::Connect => "connect",
        }
    }
}

/// The result of one export attempt that did not deliver everything.
#[derive(Debug)]
pub struct ExportFailure {
    pub reason: FailureReason,
    /// For the log: what the backend or the connection said. Never contains secrets.
    pub message: String,
    /// Which spans failed, and so what the worker does with each.
    pub failed: FailedSpans,
    /// The backend's own wish (`Retry-After`, `RetryInfo`), honoured when longer than the
    /// backoff's delay.
    pub retry_after: Option<Duration>,
}

/// Which spans of an attempted batch failed. Indices are into the attempted slice.
#[derive(Debug, PartialEq, Eq)]
pub enum FailedSpans {
    /// The answer names them: `retry` are sent again after a backoff, `rejected` were
    /// refused for good (each with its reason) and are dead-lettered, and every other span
    /// of the batch was delivered.
    Named {
        retry: Vec<usize>,
        rejected: Vec<(usize, String)>,
    },
    /// The request as a whole was refused as invalid (HTTP 400/413, INVALID_ARGUMENT)
    /// without naming a span: the worker splits the batch in halves until the span at
    /// fault is alone, dead-letters that one and delivers the others.
    WholeBatchInvalid,
}

impl ExportFailure {
    /// Every one of `len` spans is to be sent again.
    pub fn all(reason: FailureReason, message: impl Into<String>, len: usize) -> Self {
        ExportFailure {
            reason,
            message: message.into(),
            failed: FailedSpans::Named {
                retry: (0..len).collect(),
                rejected: Vec::new(),
            },
            retry_after: None,
        }
    }

    /// The backend refused the request as invalid without saying which span is at fault.
    pub fn batch_rejected(message: impl Into<String>) -> Self {
        ExportFailure {
            reason: FailureReason::Rejected,
            message: message.into(),
            failed: FailedSpans::WholeBatchInvalid,
            retry_after: None,
        }
    }

    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// The spans to send again (none when the whole batch was refused as invalid).
    pub fn retry(&self) -> &[usize] {
        match &self.failed {
            FailedSpans::Named { retry, .. } => retry,
            FailedSpans::WholeBatchInvalid => &[],
        }
    }

    pub fn is_whole_batch_invalid(&self) -> bool {
        self.failed == FailedSpans::WholeBatchInvalid
    }
}

/// Why a sink could not be built. Messages name the setting, header, variable or file,
/// never a secret value.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A secret (`api_key`, a header) cannot be read (its `*_env` variable is not set) or
    /// is unusable (empty).
    #[error("{setting}: {reason}")]
    Secret { setting: String, reason: String },
    /// An `OTEL_*` variable holds a value the OTLP sink cannot use. `setting` names the
    /// variable, with its value where that is no secret.
    #[error("{setting}: {reason}")]
    Env { setting: String, reason: String },
    /// The endpoint URL cannot be used.
    #[error("endpoint \"{url}\": {reason}")]
    Endpoint { url: String, reason: String },
    /// A header name or value the protocol cannot carry.
    #[error("header {name}: {reason}")]
    Header { name: String, reason: String },
    /// The `ca_file` cannot be read or holds no certificate.
    #[error("ca_file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    /// The HTTP or gRPC client refused its settings (TLS set-up).
    #[error("{0}")]
    Client(String),
}

/// The resource every span of this process carries (DESIGN "Span contract").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub service_name: String,
    pub instance_id: String,
    pub host_name: String,
}

impl Resource {
    /// `service_name` and `instance_id` from the config, `host.name` from this machine.
    pub fn from_config(config: &Config) -> Resource {
        Resource {
            service_name: config.service_name.clone(),
            instance_id: config.instance_id.clone(),
            host_name: gethostname::gethostname().to_string_lossy().into_owned(),
        }
    }

    /// `(key, value)` pairs in the order sinks write them.
    pub fn attributes(&self) -> [(&'static str, &str); 3] {
        [
            ("service.name", &self.service_name),
            ("service.instance.id", &self.instance_id),
            ("host.name", &self.host_name),
        ]
    }
}

/// Where the stdout sink writes: the process's stdout in the daemon, a buffer in tests.
pub type StdoutFactory<'a> = &'a dyn Fn() -> Box<dyn Write + Send>;

/// Any configured sink, so that one worker type drives them all.
pub enum AnySink {
    Stdout(StdoutSink),
    Otlp(Box<OtlpSink>),
    Zipkin(ZipkinSink),
    Honeycomb(HoneycombSink),
}

impl Sink for AnySink {
    fn name(&self) -> &str {
        match self {
            AnySink::Stdout(s) => s.name(),
            AnySink::Otlp(s) => s.name(),
            AnySink::Zipkin(s) => s.name(),
            AnySink::Honeycomb(s) => s.name(),
        }
    }

    async fn export(&mut self, spans: &[Span]) -> Result<Exported, ExportFailure> {
        match self {
            AnySink::Stdout(s) => s.export(spans).await,
            AnySink::Otlp(s) => s.export(spans).await,
            AnySink::Zipkin(s) => s.export(spans).await,
            AnySink::Honeycomb(s) => s.export(spans).await,
        }
    }

    fn export_stored(&mut self, spans: &ReadSpans) -> Option<Result<StoredExport, ExportFailure>> {
        match self {
            AnySink::Stdout(s) => s.export_stored(spans),
            AnySink::Otlp(_) | AnySink::Zipkin(_) | AnySink::Honeycomb(_) => None,
        }
    }
}

/// Builds the sink `sink` of `config` (stdout writes to what `stdout` returns). The OTLP
/// sink logs its effective endpoint and any warning about its `OTEL_*` environment.
pub fn build(
    sink: &SinkConfig,
    config: &Config,
    stdout: StdoutFactory<'_>,
) -> Result<AnySink, SinkError> {
    let resource = Resource::from_config(config);
    let name = sink.name.clone();
    Ok(match &sink.kind {
        SinkKind::Stdout => AnySink::Stdout(StdoutSink::with_writer(name, resource, stdout())),
        SinkKind::Zipkin(c) => AnySink::Zipkin(ZipkinSink::new(name, c, &resource)?),
        SinkKind::Honeycomb(c) => AnySink::Honeycomb(HoneycombSink::new(name, c, &resource)?),
        SinkKind::Otlp(c) => {
            let env = otlp::settings::process_env;
            let defaults = otlp::ResourceDefaults::from_config(config);
            let effective = otlp::Settings::resolve(c, &defaults, &env)?;
            for warning in &effective.warnings {
                warn!(sink = %sink.name, "{warning}");
            }
            info!(
                sink = %sink.name,
                protocol = ?effective.protocol.0,
                endpoint = %effective.endpoint.0,
                "OTLP sink configured."
            );
            AnySink::Otlp(Box::new(OtlpSink::new(name, &effective, &env)?))
        }
    })
}

/// For `auditspan check`: the settings a sink takes from outside the config file (the
/// OTLP sink's `OTEL_*` environment), as TOML comments; `None` for sinks that take none.
pub fn describe_environment(
    sink: &SinkConfig,
    config: &Config,
) -> Result<Option<String>, SinkError> {
    match &sink.kind {
        SinkKind::Otlp(c) => {
            let defaults = otlp::ResourceDefaults::from_config(config);
            let settings = otlp::Settings::resolve(c, &defaults, &otlp::settings::process_env)?;
            Ok(Some(settings.describe(&sink.name)))
        }
        SinkKind::Stdout | SinkKind::Zipkin(_) | SinkKind::Honeycomb(_) => Ok(None),
    }
}

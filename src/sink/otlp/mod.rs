//! The OTLP sink: spans to an OpenTelemetry collector or any OTLP backend, over gRPC or
//! HTTP/protobuf (DESIGN "Per sink: OTLP").
//!
//! - [`settings`]: the effective settings, `[[sink]]` entry > `OTEL_*` environment >
//!   defaults, and what `auditspan check` prints of them.
//! - [`encode`]: our span → `opentelemetry-proto`'s generated types; one
//!   `ResourceSpans`/`ScopeSpans` per request.
//! - [`grpc`] (tonic) and [`http`] (reqwest, the client every HTTP sink shares): send one
//!   request and turn the answer into an export result the worker acts on — retry,
//!   dead-letter, or split the batch. Each module doc has its status table.
//! - [`rpc`]: the `google.rpc` messages servers answer failures with (`RetryInfo`).
//!
//! Built on the generated types rather than opentelemetry-otlp's `SpanExporter`, which
//! reports every failure as `InternalFailure(String)` and so hides retryability,
//! `Retry-After`/`RetryInfo` and partial success.
//!
//! A request is capped at [`MAX_REQUEST_BYTES`] (the receive limit collectors have by
//! default for gRPC): a larger batch is split by the worker as if it had been refused, and
//! a single span is always sent.

pub mod encode;
pub mod grpc;
pub mod http;
pub mod rpc;
pub mod settings;

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tracing::warn;

pub use settings::{ResourceDefaults, Settings};

use super::{ExportFailure, Exported, Sink, SinkError};
use crate::{
    config::{Compression, Connection, OtlpProtocol, Secret},
    span::Span,
};

/// Largest request sent with more than one span in it: 4 MiB, the default receive limit of
/// the OpenTelemetry Collector's gRPC receiver (and of gRPC servers in general).
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// Largest answer read (OTLP spec: clients treat larger responses as failed).
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// What "no timeout" (`OTEL_EXPORTER_OTLP_TIMEOUT=0`) is for the HTTP client, which
/// always has one.
const NO_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

enum Transport {
    // One per sink: its size does not matter.
    Grpc(Box<grpc::GrpcExporter>),
    Http(http::HttpExporter),
}

/// Sends spans to an OTLP receiver.
pub struct OtlpSink {
    name: String,
    encoder: encode::Encoder,
    transport: Transport,
}

impl OtlpSink {
    /// A sink with `settings`; header values named by `headers_env` are read from `env`.
    /// Errors (a missing variable, an unreadable CA file, a header gRPC cannot carry) name
    /// the variable, file or header, never a value.
    pub fn new(
        name: String,
        settings: &Settings,
        env: settings::Env<'_>,
    ) -> Result<Self, SinkError> {
        let headers = settings
            .headers
            .iter()
            .map(|h| match &h.value {
                Secret::Value(v) => Ok((h.name.clone(), v.clone())),
                Secret::Env(var) => {
                    env(var)
                        .map(|v| (h.name.clone(), v))
                        .ok_or_else(|| SinkError::Secret {
                            setting: format!("header {}", h.name),
                            reason: format!("environment variable {var} is not set"),
                        })
                }
            })
            .collect::<Result<Vec<_>, SinkError>>()?;
        let ca_pem = match &settings.ca_file {
            None => None,
            Some((path, _)) => Some(crate::sink::http::ca_certificates(path)?.0),
        };
        let (url, _) = &settings.endpoint;
        let (compression, _) = settings.compression;
        let (timeout, _) = settings.timeout;
        let transport = match settings.protocol.0 {
            OtlpProtocol::Grpc => Transport::Grpc(Box::new(grpc::GrpcExporter::new(
                url,
                &headers,
                compression == Compression::Gzip,
                timeout,
                ca_pem.as_deref(),
            )?)),
            OtlpProtocol::HttpProtobuf => {
                let connection = Connection {
                    endpoint: Some(url.clone()),
                    headers: headers
                        .into_iter()
                        .map(|(name, value)| (name, Secret::Value(value)))
                        .collect(),
                    compression: Some(compression),
                    timeout: Some(timeout.unwrap_or(NO_TIMEOUT)),
                    ca_file: settings.ca_file.as_ref().map(|(path, _)| path.clone()),
                };
                let client = super::http::client(&connection, settings::DEFAULT_TIMEOUT, &[])?;
                Transport::Http(http::HttpExporter::new(client, url.clone(), compression))
            }
        };
        Ok(OtlpSink {
            name,
            encoder: encode::Encoder::new(
                settings
                    .resource
                    .iter()
                    .map(|(k, v, _)| (k.as_str(), v.as_str())),
            ),
            transport,
        })
    }
}

impl Sink for OtlpSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn export(&mut self, spans: &[Span]) -> Result<Exported, ExportFailure> {
        if spans.is_empty() {
            // The spec asks senders not to send empty envelopes.
            return Ok(Exported::default());
        }
        let request = self.encoder.request(spans);
        if spans.len() > 1 {
            let size = request.encoded_len();
            if size > MAX_REQUEST_BYTES {
                return Err(ExportFailure::batch_rejected(format!(
                    "{} spans take {size} bytes, over the {MAX_REQUEST_BYTES}-byte request limit; splitting",
                    spans.len()
                )));
            }
        }
        let result = match &mut self.transport {
            Transport::Grpc(grpc) => grpc.export(request, spans.len()).await,
            Transport::Http(http) => http.export(request, spans.len()).await,
        };
        if let Ok(Exported {
            rejected: 0,
            message: Some(message),
        }) = &result
        {
            warn!(sink = %self.name, message = %message, "The backend accepted the spans with a warning.");
        }
        result
    }
}

/// An acknowledged request: `partial_success` says how many spans the backend dropped.
fn exported(response: ExportTraceServiceResponse) -> Exported {
    match response.partial_success {
        None => Exported::default(),
        Some(partial) => Exported {
            rejected: u64::try_from(partial.rejected_spans).unwrap_or(0),
            message: (!partial.error_message.is_empty()).then_some(partial.error_message),
        },
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess;

    use super::*;

    #[test]
    fn partial_success_is_counted() {
        assert_eq!(
            exported(ExportTraceServiceResponse {
                partial_success: None
            }),
            Exported::default()
        );
        let partial = |rejected_spans, message: &str| ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans,
                error_message: message.into(),
            }),
        };
        assert_eq!(
            exported(partial(2, "bad spans")),
            Exported {
                rejected: 2,
                message: Some("bad spans".into())
            }
        );
        assert_eq!(exported(partial(-1, "")), Exported::default());
    }

    fn settings(env: &[(&str, &str)]) -> Settings {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let defaults = ResourceDefaults {
            service_name: "vault".into(),
            service_name_given: false,
            instance_id: "i".into(),
            instance_id_given: false,
            host_name: "h".into(),
        };
        Settings::resolve(&Default::default(), &defaults, &|name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
        .unwrap()
    }

    #[test]
    fn missing_secret_and_bad_ca_file_are_named() {
        let mut s = settings(&[]);
        s.headers.push(settings::Header {
            name: "authorization".into(),
            value: Secret::Env("OTLP_TEST_KEY".into()),
            source: settings::Source::File,
        });
        let err = OtlpSink::new("otlp".into(), &s, &|_| None).err().unwrap();
        assert!(matches!(err, SinkError::Secret { .. }), "{err:?}");
        let err = err.to_string();
        assert!(err.contains("OTLP_TEST_KEY"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "no certificate here").unwrap();
        let mut s = settings(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]);
        s.ca_file = Some((path.clone(), settings::Source::File));
        let err = OtlpSink::new("otlp".into(), &s, &|_| None).err().unwrap();
        assert!(matches!(err, SinkError::CaFile { .. }), "{err:?}");
        let err = err.to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
    }
}

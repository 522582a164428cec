//! OTLP/gRPC: `TraceService/Export` with tonic, and what its status codes mean for the
//! spans.
//!
//! The channel is created on the first export, on the sink's own thread: tonic spawns the
//! channel's worker task on the runtime that creates it. It reconnects by itself after a
//! failure. TLS (for `https://` endpoints) trusts the system roots plus the CA file.
//!
//! Status codes (OTLP spec, `shared/specs/OTLP.md` §2, and DESIGN "Sink batches"):
//! - `OK`: delivered; `partial_success.rejected_spans` are counted as rejected (the spec
//!   forbids retrying them).
//! - `INVALID_ARGUMENT`: the request is bad → the worker splits it until the bad span is
//!   alone and dead-letters that span.
//! - `RESOURCE_EXHAUSTED` with `google.rpc.RetryInfo`: throttled → retried after the delay.
//!   Without `RetryInfo` it is not retryable (the spec): it is a server's answer to a
//!   request over its size limit, so the request is split like an invalid one. A single
//!   span (at most 448 KiB, far below any receiver's message limit) is retried instead:
//!   then the answer is a quota without `RetryInfo`, and dead-lettering span after span
//!   would empty the queue into a file.
//! - `UNAVAILABLE`, `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`, `OUT_OF_RANGE`,
//!   `DATA_LOSS`: retried (with `RetryInfo`'s delay when given).
//! - Every other code (`UNAUTHENTICATED`, `PERMISSION_DENIED`, `NOT_FOUND`,
//!   `UNIMPLEMENTED`, `FAILED_PRECONDITION`, `INTERNAL`, `UNKNOWN`, ...) is retried too,
//!   although the spec calls them non-retryable: they say the key, the endpoint or the
//!   server is wrong, not the spans, and dead-lettering everything until an operator fixes
//!   a key would empty the queue into a file. The sink stalls, visibly
//!   (`sink_failed_exports_total{reason="retryable"}`, `sink_lag_spans`, the log), and
//!   resumes once the cause is fixed. This is the rule the HTTP sinks follow for 401/403/404.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, trace_service_client::TraceServiceClient,
};
use tonic::{
    Code, Status,
    codec::CompressionEncoding,
    metadata::{MetadataKey, MetadataMap, MetadataValue},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

use super::{MAX_RESPONSE_BYTES, exported};
use crate::sink::http::error_chain;
use crate::sink::{ExportFailure, Exported, FailureReason, SinkError};

/// An OTLP/gRPC client.
pub struct GrpcExporter {
    endpoint: Endpoint,
    /// Created by the first export (see the module doc).
    client: Option<TraceServiceClient<Channel>>,
    metadata: MetadataMap,
    gzip: bool,
}

impl GrpcExporter {
    /// Checks everything that can be checked before connecting: the URL, the headers as
    /// metadata, the CA file. Errors name the header, never its value.
    pub fn new(
        url: &str,
        headers: &[(String, String)],
        gzip: bool,
        timeout: Option<Duration>,
        ca_pem: Option<&[u8]>,
    ) -> Result<GrpcExporter, SinkError> {
        let endpoint_error = |reason: String| SinkError::Endpoint {
            url: url.to_owned(),
            reason,
        };
        let mut endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| endpoint_error(e.to_string()))?
            .user_agent(concat!("auditspan/", env!("CARGO_PKG_VERSION")))
            .map_err(|e| SinkError::Client(format!("user agent: {e}")))?;
        if let Some(timeout) = timeout {
            endpoint = endpoint.timeout(timeout).connect_timeout(timeout);
        }
        if url.starts_with("https://") {
            let mut tls = ClientTlsConfig::new().with_native_roots();
            if let Some(pem) = ca_pem {
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| endpoint_error(format!("TLS: {}", error_chain(&e))))?;
        }
        let mut metadata = MetadataMap::new();
        for (name, value) in headers {
            let header_error = |reason: &str| SinkError::Header {
                name: name.clone(),
                reason: reason.to_owned(),
            };
            if name.ends_with("-bin") {
                return Err(header_error("binary (-bin) gRPC metadata is not supported"));
            }
            let key = MetadataKey::from_bytes(name.as_bytes())
                .map_err(|_| header_error("not a valid gRPC metadata name"))?;
            let mut value = MetadataValue::try_from(value.as_str())
                .map_err(|_| header_error("the value is not valid gRPC metadata"))?;
            value.set_sensitive(true);
            metadata.insert(key, value);
        }
        Ok(GrpcExporter {
            endpoint,
            client: None,
            metadata,
            gzip,
        })
    }

    /// Sends one request of `len` spans.
    pub async fn export(
        &mut self,
        request: ExportTraceServiceRequest,
        len: usize,
    ) -> Result<Exported, ExportFailure> {
        let client = self.client.get_or_insert_with(|| {
            let client = TraceServiceClient::new(self.endpoint.connect_lazy())
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(MAX_RESPONSE_BYTES);
            if self.gzip {
                client.send_compressed(CompressionEncoding::Gzip)
            } else {
                client
            }
        });
        let mut request = tonic::Request::new(request);
        *request.metadata_mut() = self.metadata.clone();
        match client.export(request).await {
            Ok(response) => Ok(exported(response.into_inner())),
            Err(status) => Err(status_failure(&status, len)),
        }
    }
}

/// What a failed call means for its `len` spans (see the module doc).
pub fn status_failure(status: &Status, len: usize) -> ExportFailure {
    let retry_after = super::rpc::retry_delay(status.details());
    let mut message = format!("gRPC {:?}: {}", status.code(), status.message());
    let mut timeout = status.code() == Code::DeadlineExceeded;
    let mut connect = false;
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        timeout |= cause.is::<tonic::TimeoutExpired>();
        connect |= cause.is::<tonic::ConnectError>();
        // tonic repeats the same text at several levels of the chain.
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    match status.code() {
        Code::InvalidArgument => ExportFailure::batch_rejected(message),
        Code::ResourceExhausted if retry_after.is_none() && len > 1 => {
            ExportFailure::batch_rejected(
                message + " (no RetryInfo: the request is too large; splitting it)",
            )
        }
        _ => {
            let reason = if timeout {
                FailureReason::Timeout
            } else if connect {
                FailureReason::Connect
            } else {
                FailureReason::Retryable
            };
            ExportFailure::all(reason, message, len).with_retry_after(retry_after)
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::sink::otlp::rpc::RpcStatus;

    #[test]
    fn codes_map_to_retry_rejection_or_split() {
        let f = status_failure(&Status::invalid_argument("bad span"), 3);
        assert!(f.is_whole_batch_invalid());
        assert_eq!(f.reason, FailureReason::Rejected);

        let f = status_failure(&Status::resource_exhausted("too big"), 3);
        assert!(f.is_whole_batch_invalid(), "no RetryInfo: not retryable");

        let details =
            RpcStatus::with_retry_delay(8, "slow down", Duration::from_secs(2)).encode_to_vec();
        let throttled = Status::with_details(Code::ResourceExhausted, "slow down", details.into());
        let quota = Status::new(Code::ResourceExhausted, "quota");
        assert!(status_failure(&quota, 2).is_whole_batch_invalid());
        let alone = status_failure(&quota, 1);
        assert!(!alone.is_whole_batch_invalid());
        assert_eq!(alone.retry(), [0]);
        let f = status_failure(&throttled, 3);
        assert!(!f.is_whole_batch_invalid());
        assert_eq!(f.reason, FailureReason::Retryable);
        assert_eq!(f.retry(), [0, 1, 2]);
        assert_eq!(f.retry_after, Some(Duration::from_secs(2)));

        for code in [
            Code::Unavailable,
            Code::Cancelled,
            Code::Aborted,
            Code::OutOfRange,
            Code::DataLoss,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::NotFound,
            Code::Unimplemented,
            Code::Internal,
            Code::Unknown,
        ] {
            let f = status_failure(&Status::new(code, "x"), 2);
            assert_eq!(f.reason, FailureReason::Retryable, "{code:?}");
            assert_eq!(f.retry(), [0, 1], "{code:?}");
            assert_eq!(f.retry_after, None);
        }
        let f = status_failure(&Status::deadline_exceeded("late"), 1);
        assert_eq!(f.reason, FailureReason::Timeout);
        assert_eq!(f.message, "gRPC DeadlineExceeded: late");
    }

    #[test]
    fn transport_errors_are_connect_or_timeout() {
        let connect = Status::from_error(Box::new(tonic::ConnectError(
            "tcp connect error: Connection refused".into(),
        )));
        let f = status_failure(&connect, 1);
        assert_eq!(f.reason, FailureReason::Connect, "{}", f.message);
        assert!(f.message.contains("Connection refused"), "{}", f.message);
        let timeout = Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(status_failure(&timeout, 1).reason, FailureReason::Timeout);
    }

    #[test]
    fn bad_headers_are_named_without_their_value() {
        let err = GrpcExporter::new(
            "http://localhost:4317",
            &[("x-key".into(), "sec\nret".into())],
            false,
            None,
            None,
        )
        .err()
        .unwrap();
        assert!(matches!(err, SinkError::Header { .. }), "{err:?}");
        let err = err.to_string();
        assert!(err.contains("x-key") && !err.contains("sec"), "{err}");
        let err = GrpcExporter::new(
            "http://localhost:4317",
            &[("x-key-bin".into(), "v".into())],
            false,
            None,
            None,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("-bin"), "{err}");
    }
}

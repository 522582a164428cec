//! OTLP/HTTP with protobuf bodies: `POST` the encoded request to the traces URL with
//! `Content-Type: application/x-protobuf` (gzip when configured), through the HTTP client
//! every HTTP sink shares (`sink::http`).
//!
//! Answers (OTLP spec, `shared/specs/OTLP.md` §3):
//! - 2xx: delivered; the body is an `ExportTraceServiceResponse` whose
//!   `partial_success.rejected_spans` are counted as rejected (never retried). An empty or
//!   undecodable body is a plain success: the status says the spans were taken.
//! - 400: the request is bad → split until the bad span is alone, which is dead-lettered.
//! - 413 Content Too Large: split the same way (a single span still too large is
//!   dead-lettered).
//! - 429, 502, 503, 504: retried, honouring `Retry-After` (seconds or an HTTP date, up to
//!   an hour: [`crate::sink::http::retry_after`]).
//! - Other statuses: retried (see `sink::http::status_failure`: 401/403/404 are
//!   configuration errors, fixed by the operator, not by dropping spans).
//!
//! Error bodies are `google.rpc.Status` protobufs; their message is what the log quotes.

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use reqwest::{
    StatusCode,
    header::{CONTENT_ENCODING, CONTENT_TYPE},
};

use super::{MAX_RESPONSE_BYTES, exported, rpc::RpcStatus};
use crate::{
    config::Compression,
    sink::{ExportFailure, Exported, http as shared},
};

const PROTOBUF: &str = "application/x-protobuf";

/// An OTLP/HTTP client.
pub struct HttpExporter {
    client: reqwest::Client,
    url: String,
    compression: Compression,
}

impl HttpExporter {
    pub fn new(client: reqwest::Client, url: String, compression: Compression) -> HttpExporter {
        HttpExporter {
            client,
            url,
            compression,
        }
    }

    /// Sends one request of `len` spans.
    pub async fn export(
        &mut self,
        request: ExportTraceServiceRequest,
        len: usize,
    ) -> Result<Exported, ExportFailure> {
        let (body, encoding) = shared::compress(self.compression, request.encode_to_vec());
        let mut builder = self
            .client
            .post(&self.url)
            .header(CONTENT_TYPE, PROTOBUF)
            .body(body);
        if let Some(encoding) = encoding {
            builder = builder.header(CONTENT_ENCODING, encoding);
        }
        let mut response = builder
            .send()
            .await
            .map_err(|e| shared::transport_failure(&e, len))?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        let mut complete = true;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) if body.len() + chunk.len() <= MAX_RESPONSE_BYTES => {
                    body.extend_from_slice(&chunk);
                }
                // Too long, or cut off: what was read is enough for a log line, and a 2xx
                // has delivered the spans whatever its body says.
                Ok(Some(_)) | Err(_) => {
                    complete = false;
                    break;
                }
                Ok(None) => break,
            }
        }
        if status.is_success() {
            if !complete {
                return Ok(Exported::default());
            }
            // Some receivers answer 200 with no body, or one we cannot read: delivered.
            return Ok(ExportTraceServiceResponse::decode(body.as_slice())
                .map(exported)
                .unwrap_or_default());
        }
        let text = match RpcStatus::decode(body.as_slice()) {
            Ok(rpc) if !rpc.message.is_empty() => rpc.message.into_bytes(),
            _ => body,
        };
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return Err(ExportFailure::batch_rejected(format!(
                "HTTP {status}: {}",
                shared::quote_body(&text)
            )));
        }
        Err(shared::status_failure(status, &headers, &text, len))
    }
}

//! The Zipkin sink: Zipkin v2 JSON (`ListOfSpans`) POSTed to a Zipkin collector
//! (DESIGN "Per sink: Zipkin"; `shared/specs/ZIPKIN.md`; the body validates against
//! `shared/schemas/zipkin2-span.schema.json`).
//!
//! # Configuration and defaults
//! - `endpoint`: the full URL to POST to, default `http://localhost:9411/api/v2/spans`.
//! - `compression`: `none` by default (zipkin-server also takes `gzip`).
//! - `timeout`: 10 s per request; `headers` / `headers_env` and `ca_file` as for every
//!   HTTP sink ([`super::http`]); `batch_size` spans per request (one request per batch).
//!
//! # Mapping (OpenTelemetry's Zipkin exporter rules, ZIPKIN.md)
//! - `traceId` 32 hex, `id` 16 hex, `parentId` when the span joined a caller's trace,
//!   `kind` `SERVER`, `name`.
//! - `timestamp` = start and `duration` in whole microseconds (truncated), the duration at
//!   least 1 (Zipkin reads a missing or zero duration as an unfinished span).
//! - `localEndpoint.serviceName` = `service.name`, lower-cased as Zipkin stores it.
//!   `remoteEndpoint` = the Vault client (`request.remote_address` when it is an IP
//!   address, `request.remote_port` when it is a port).
//! - `tags`: every attribute, as strings (strings as they are, booleans `true`/`false`,
//!   numbers and arrays as their JSON text), then the other resource attributes
//!   (`service.instance.id`, `host.name`). On error spans only: `otel.status_code` =
//!   `ERROR` and `error` = the message. Zipkin reads any `error` tag as a failure, so an
//!   attribute of that name (Vault < 1.2 writes `"error": ""` on success) is never copied.
//!
//! # Answers
//! Any 2xx (zipkin-server answers 202) delivers the batch. 400 (zipkin-server cannot decode
//! the body) and 413 (too large) reject the batch, which the worker splits to find the
//! span at fault (a span too large on its own is dead-lettered); every
//! other answer and every connection failure is retried (429/502/503/504 honouring
//! `Retry-After`), see [`super::http::status_failure`].

use std::net::IpAddr;

use reqwest::{
    StatusCode,
    header::{CONTENT_ENCODING, CONTENT_TYPE},
};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

use super::json::{Hex, JsonText};
use super::{ExportFailure, Exported, Resource, Sink, SinkError, http};
use crate::{
    attr::{AttrRef, Attributes},
    config::{Compression, ZipkinConfig},
    span::{Span, Status},
};

/// Where spans go when the config names no endpoint.
pub const DEFAULT_ENDPOINT: &str = "http://localhost:9411/api/v2/spans";
/// Per request, when the config names no timeout.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Tags this sink writes itself; attributes of these names are left out.
const OWN_TAGS: [&str; 4] = [
    "error",
    "otel.status_code",
    "service.instance.id",
    "host.name",
];

/// Sends spans to a Zipkin collector.
pub struct ZipkinSink {
    name: String,
    endpoint: String,
    client: reqwest::Client,
    compression: Compression,
    /// `service.name`, lower-cased.
    service_name: String,
    instance_id: String,
    host_name: String,
    /// The size of the last body, to size the next one's buffer.
    last_body: usize,
}

impl ZipkinSink {
    /// The sink named `name`. Fails (naming the header, variable or file, never a value)
    /// when a header secret or the CA file cannot be read.
    pub fn new(
        name: String,
        config: &ZipkinConfig,
        resource: &Resource,
    ) -> Result<Self, SinkError> {
        let connection = &config.connection;
        Ok(ZipkinSink {
            name,
            endpoint: connection
                .endpoint
                .clone()
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned()),
            client: http::client(connection, DEFAULT_TIMEOUT, &[])?,
            compression: connection.compression.unwrap_or(Compression::None),
            service_name: resource.service_name.to_lowercase(),
            instance_id: resource.instance_id.clone(),
            host_name: resource.host_name.clone(),
            last_body: 0,
        })
    }

    /// The JSON body for `spans`.
    pub fn encode(&self, spans: &[Span]) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.last_body + self.last_body / 8);
        // Writing to a Vec cannot fail and every value here serializes.
        serde_json::to_writer(&mut body, &ListOfSpans { sink: self, spans }).ok();
        body
    }
}

impl Sink for ZipkinSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn export(&mut self, spans: &[Span]) -> Result<Exported, ExportFailure> {
        let body = self.encode(spans);
        self.last_body = body.len();
        let (body, encoding) = http::compress(self.compression, body);
        let mut request = self
            .client
            .post(&self.endpoint)
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(encoding) = encoding {
            request = request.header(CONTENT_ENCODING, encoding);
        }
        let response = request
            .send()
            .await
            .map_err(|err| http::transport_failure(&err, spans.len()))?;
        let status = response.status();
        let headers = response.headers().clone();
        // Read to the end so the connection can be reused; an error after a 2xx status
        // does not undo the delivery.
        let answer = response.bytes().await.unwrap_or_default();
        if status.is_success() {
            Ok(Exported::default())
        } else if status == StatusCode::PAYLOAD_TOO_LARGE {
            // Smaller requests will do; a span too large on its own is dead-lettered.
            Err(ExportFailure::batch_rejected(format!(
                "HTTP {status}: {}",
                http::quote_body(&answer)
            )))
        } else {
            Err(http::status_failure(status, &headers, &answer, spans.len()))
        }
    }
}

struct ListOfSpans<'a> {
    sink: &'a ZipkinSink,
    spans: &'a [Span],
}

impl Serialize for ListOfSpans<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.spans.len()))?;
        for span in self.spans {
            seq.serialize_element(&ZipkinSpan {
                sink: self.sink,
                span,
            })?;
        }
        seq.end()
    }
}

struct ZipkinSpan<'a> {
    sink: &'a ZipkinSink,
    span: &'a Span,
}

impl Serialize for ZipkinSpan<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let span = self.span;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("traceId", &Hex(&span.trace_id))?;
        map.serialize_entry("id", &Hex(&span.span_id))?;
        if let Some(parent) = &span.parent_span_id {
            map.serialize_entry("parentId", &Hex(parent))?;
        }
        map.serialize_entry("kind", "SERVER")?;
        map.serialize_entry("name", &span.name)?;
        // The schema wants a timestamp ≥ 1 µs when there is one.
        let start_micros = span.start_unix_nano / 1000;
        if start_micros >= 1 {
            map.serialize_entry("timestamp", &start_micros)?;
        }
        map.serialize_entry("duration", &(span.duration_nanos() / 1000).max(1))?;
        map.serialize_entry("localEndpoint", &ServiceEndpoint(&self.sink.service_name))?;
        if let Some(remote) = RemoteEndpoint::of(&span.attributes) {
            map.serialize_entry("remoteEndpoint", &remote)?;
        }
        map.serialize_entry(
            "tags",
            &Tags {
                sink: self.sink,
                span,
            },
        )?;
        map.end()
    }
}

struct ServiceEndpoint<'a>(&'a str);

impl Serialize for ServiceEndpoint<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry("serviceName", self.0)?;
        map.end()
    }
}

/// The Vault client as Zipkin's remote endpoint of a SERVER span.
struct RemoteEndpoint {
    ip: IpAddr,
    port: Option<u16>,
}

impl RemoteEndpoint {
    fn of(attributes: &Attributes) -> Option<RemoteEndpoint> {
        let Some(AttrRef::Str(address)) = attributes.get("request.remote_address") else {
            return None;
        };
        let ip = address.parse().ok()?;
        let port = match attributes.get("request.remote_port") {
            Some(AttrRef::Int(port)) => u16::try_from(port).ok().filter(|p| *p > 0),
            _ => None,
        };
        Some(RemoteEndpoint { ip, port })
    }
}

impl Serialize for RemoteEndpoint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        match self.ip {
            IpAddr::V4(ip) => map.serialize_entry("ipv4", &ip)?,
            IpAddr::V6(ip) => map.serialize_entry("ipv6", &ip)?,
        }
        if let Some(port) = self.port {
            map.serialize_entry("port", &port)?;
        }
        map.end()
    }
}

struct Tags<'a> {
    sink: &'a ZipkinSink,
    span: &'a Span,
}

impl Serialize for Tags<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (key, value) in self.span.attributes.iter() {
            if OWN_TAGS.contains(&key) {
                continue;
            }
            match value {
                AttrRef::Str(text) => map.serialize_entry(key, text)?,
                AttrRef::Bool(b) => map.serialize_entry(key, if b { "true" } else { "false" })?,
                other => map.serialize_entry(
                    key,
                    &JsonText {
                        value: other,
                        max: usize::MAX,
                    },
                )?,
            }
        }
        map.serialize_entry("service.instance.id", &self.sink.instance_id)?;
        map.serialize_entry("host.name", &self.sink.host_name)?;
        if let Status::Error(message) = &self.span.status {
            map.serialize_entry("otel.status_code", "ERROR")?;
            map.serialize_entry("error", message)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::{attr::AttrValue, config::Connection};

    fn sink() -> ZipkinSink {
        let resource = Resource {
            service_name: "Vault".into(),
            instance_id: "vault-0".into(),
            host_name: "host-a".into(),
        };
        ZipkinSink::new(
            "zipkin".into(),
            &ZipkinConfig {
                connection: Connection::default(),
            },
            &resource,
        )
        .unwrap()
    }

    fn encode(span: Span) -> Value {
        let body = sink().encode(&[span]);
        let mut list: Vec<Value> = serde_json::from_slice(&body).unwrap();
        assert_eq!(list.len(), 1);
        list.remove(0)
    }

    #[test]
    fn defaults() {
        let sink = sink();
        assert_eq!(sink.endpoint, "http://localhost:9411/api/v2/spans");
        assert_eq!(sink.compression, Compression::None);
        assert_eq!(sink.service_name, "vault");
    }

    /// Every field of a span with typed attributes and no error.
    #[test]
    fn span_fields_and_string_tags() {
        let value = encode(Span::sample(
            Status::Unset,
            vec![
                ("request.operation", AttrValue::Str("read".into())),
                ("auth.policy_results.allowed", AttrValue::Bool(true)),
                ("auth.token_ttl", AttrValue::Int(2_764_800)),
                ("response.data.ratio", AttrValue::Float(0.25)),
                (
                    "auth.policies",
                    AttrValue::StrArray(vec!["default".into(), "dev \"x\"".into()]),
                ),
                ("request.remote_address", AttrValue::Str("10.0.0.1".into())),
                ("request.remote_port", AttrValue::Int(51234)),
                ("error", AttrValue::Str(String::new())),
            ],
        ));
        assert_eq!(
            value,
            json!({
                "traceId": "11111111111111111111111111111111",
                "id": "2222222222222222",
                "kind": "SERVER",
                "name": "read kv/",
                "timestamp": 1_741_708_800_000_001_i64,
                "duration": 1500,
                "localEndpoint": {"serviceName": "vault"},
                "remoteEndpoint": {"ipv4": "10.0.0.1", "port": 51234},
                "tags": {
                    "request.operation": "read",
                    "auth.policy_results.allowed": "true",
                    "auth.token_ttl": "2764800",
                    "response.data.ratio": "0.25",
                    "auth.policies": "[\"default\",\"dev \\\"x\\\"\"]",
                    "request.remote_address": "10.0.0.1",
                    "request.remote_port": "51234",
                    "service.instance.id": "vault-0",
                    "host.name": "host-a",
                }
            })
        );
    }

    /// The error tag appears on error spans only, with the message; a parent id appears
    /// when there is one; a zero duration becomes 1 µs; an unparsable address gives no
    /// remote endpoint.
    #[test]
    fn error_parent_and_short_spans() {
        let mut s = Span::sample(
            Status::Error("permission denied".into()),
            vec![
                ("error", AttrValue::Str("permission denied".into())),
                ("request.remote_address", AttrValue::Str("not-an-ip".into())),
            ],
        );
        s.parent_span_id = Some([0x33; 8]);
        s.end_unix_nano = s.start_unix_nano;
        let value = encode(s);
        assert_eq!(value["parentId"], "3333333333333333");
        assert_eq!(value["duration"], 1);
        assert_eq!(value["tags"]["error"], "permission denied");
        assert_eq!(value["tags"]["otel.status_code"], "ERROR");
        assert!(value.get("remoteEndpoint").is_none());
        let tags = value["tags"].as_object().unwrap();
        assert_eq!(tags.keys().filter(|k| *k == "error").count(), 1);

        let ok = encode(Span::sample(Status::Unset, vec![]));
        assert!(ok["tags"].get("error").is_none());
        assert!(ok["tags"].get("otel.status_code").is_none());
        assert!(ok.get("parentId").is_none());
    }

    #[test]
    fn ipv6_client() {
        let value = encode(Span::sample(
            Status::Unset,
            vec![
                (
                    "request.remote_address",
                    AttrValue::Str("2001:db8::1".into()),
                ),
                ("request.remote_port", AttrValue::Int(0)),
            ],
        ));
        assert_eq!(value["remoteEndpoint"], json!({"ipv6": "2001:db8::1"}));
    }
}

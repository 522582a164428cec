//! Our [`Span`] → OTLP protobuf (`opentelemetry-proto`'s generated types), straight from
//! the span, without the SDK's `SpanData`.
//!
//! A batch becomes one `ExportTraceServiceRequest` with one `ResourceSpans` (this process's
//! resource) holding one `ScopeSpans` (scope `auditspan` with our version). Per span:
//! - ids as their bytes; `parent_span_id` empty for a root span;
//! - `kind` SERVER; start/end in Unix nanoseconds;
//! - `status` ERROR with the error as message, or no status (UNSET);
//! - `flags`: sampled (0x01: every span is recorded) and "parent remoteness known"
//!   (0x100), plus "parent is remote" (0x200) when the span joined a caller's trace through
//!   `traceparent` — the only way a span gets a parent;
//! - attributes in their order with their types: string, bool, int, double, and arrays of
//!   one of these as `ArrayValue`.

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value::Value},
    resource::v1::Resource,
    trace::v1::{
        ResourceSpans, ScopeSpans, SpanFlags, Status as ProtoStatus, span::SpanKind,
        status::StatusCode,
    },
};

use crate::{
    attr::AttrRef,
    span::{Span, Status},
};

/// The instrumentation scope's name.
pub const SCOPE_NAME: &str = "auditspan";

/// W3C trace flag "sampled".
const SAMPLED: u32 = 0x01;

/// Builds requests; holds what every request repeats.
#[derive(Debug, Clone)]
pub struct Encoder {
    resource: Resource,
    scope: InstrumentationScope,
}

impl Encoder {
    /// `resource`: the resource attributes, in order.
    pub fn new<'a>(resource: impl IntoIterator<Item = (&'a str, &'a str)>) -> Encoder {
        Encoder {
            resource: Resource {
                attributes: resource
                    .into_iter()
                    .map(|(k, v)| key_value(k.to_owned(), Value::StringValue(v.to_owned())))
                    .collect(),
                dropped_attributes_count: 0,
                entity_refs: Vec::new(),
            },
            scope: InstrumentationScope {
                name: SCOPE_NAME.to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                attributes: Vec::new(),
                dropped_attributes_count: 0,
            },
        }
    }

    /// One request carrying `spans`, in order.
    pub fn request(&self, spans: &[Span]) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(self.scope.clone()),
                    spans: spans.iter().map(span).collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }
}

/// One span.
pub fn span(span: &Span) -> opentelemetry_proto::tonic::trace::v1::Span {
    let remote = SpanFlags::ContextHasIsRemoteMask as u32
        | if span.parent_span_id.is_some() {
            SpanFlags::ContextIsRemoteMask as u32
        } else {
            0
        };
    let mut attributes = Vec::with_capacity(span.attributes.len());
    for (key, value) in span.attributes.iter() {
        attributes.push(key_value(key.to_owned(), any_value(value)));
    }
    opentelemetry_proto::tonic::trace::v1::Span {
        trace_id: span.trace_id.to_vec(),
        span_id: span.span_id.to_vec(),
        trace_state: String::new(),
        parent_span_id: span.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
        flags: SAMPLED | remote,
        name: span.name.clone(),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: nanos(span.start_unix_nano),
        end_time_unix_nano: nanos(span.end_unix_nano),
        attributes,
        dropped_attributes_count: 0,
        events: Vec::new(),
        dropped_events_count: 0,
        links: Vec::new(),
        dropped_links_count: 0,
        status: match &span.status {
            Status::Unset => None,
            Status::Error(message) => Some(ProtoStatus {
                message: message.clone(),
                code: StatusCode::Error as i32,
            }),
        },
    }
}

/// Vault's times are after 1970; a negative one (impossible from RFC 3339 audit times we
/// accept) would be 0 rather than wrap.
fn nanos(unix_nano: i64) -> u64 {
    u64::try_from(unix_nano).unwrap_or(0)
}

fn key_value(key: String, value: Value) -> KeyValue {
    KeyValue {
        key,
        value: Some(AnyValue { value: Some(value) }),
        key_strindex: 0,
    }
}

fn any_value(value: AttrRef<'_>) -> Value {
    let array = |values: Vec<AnyValue>| Value::ArrayValue(ArrayValue { values });
    let item = |v: Value| AnyValue { value: Some(v) };
    match value {
        AttrRef::Str(s) => Value::StringValue(s.to_owned()),
        AttrRef::Bool(b) => Value::BoolValue(b),
        AttrRef::Int(i) => Value::IntValue(i),
        AttrRef::Float(f) => Value::DoubleValue(f),
        AttrRef::StrArray(items) => array(
            items
                .iter()
                .map(|s| item(Value::StringValue(s.to_owned())))
                .collect(),
        ),
        AttrRef::BoolArray(items) => {
            array(items.iter().map(|&b| item(Value::BoolValue(b))).collect())
        }
        AttrRef::IntArray(items) => {
            array(items.iter().map(|&i| item(Value::IntValue(i))).collect())
        }
        AttrRef::FloatArray(items) => {
            array(items.iter().map(|&f| item(Value::DoubleValue(f))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::attr::AttrValue;

    fn sample(parent: Option<[u8; 8]>, status: Status) -> Span {
        Span {
            parent_span_id: parent,
            start_unix_nano: 1_741_708_800_000_000_000,
            end_unix_nano: 1_741_708_800_001_500_000,
            ..Span::sample(
                status,
                vec![
                    ("s", AttrValue::Str("x".into())),
                    ("b", AttrValue::Bool(true)),
                    ("i", AttrValue::Int(-7)),
                    ("f", AttrValue::Float(0.5)),
                    ("sa", AttrValue::StrArray(vec!["p".into(), "q".into()])),
                    ("ba", AttrValue::BoolArray(vec![false])),
                    ("ia", AttrValue::IntArray(vec![1, 2])),
                    ("fa", AttrValue::FloatArray(vec![1.5])),
                    ("empty", AttrValue::StrArray(vec![])),
                ],
            )
        }
    }

    /// Every field of the span contract, typed attributes included, and the envelope.
    #[test]
    fn span_fields_and_envelope() {
        let encoder = Encoder::new([("service.name", "vault"), ("service.instance.id", "i")]);
        let spans = [
            sample(None, Status::Unset),
            sample(Some([0x33; 8]), Status::Error("permission denied".into())),
        ];
        let request = encoder.request(&spans);
        // Through the wire format and back: what a receiver decodes.
        let request = ExportTraceServiceRequest::decode(&*request.encode_to_vec()).unwrap();
        assert_eq!(request.resource_spans.len(), 1);
        let rs = &request.resource_spans[0];
        let attrs = &rs.resource.as_ref().unwrap().attributes;
        assert_eq!(attrs.len(), 2);
        assert_eq!(attrs[0].key, "service.name");
        assert_eq!(
            attrs[0].value.as_ref().unwrap().value,
            Some(Value::StringValue("vault".into()))
        );
        assert_eq!(rs.scope_spans.len(), 1);
        let scope = rs.scope_spans[0].scope.as_ref().unwrap();
        assert_eq!(scope.name, "auditspan");
        assert_eq!(scope.version, env!("CARGO_PKG_VERSION"));

        let [root, child] = &rs.scope_spans[0].spans[..] else {
            panic!("two spans expected");
        };
        assert_eq!(root.trace_id, [0x11; 16]);
        assert_eq!(root.span_id, [0x22; 8]);
        assert!(root.parent_span_id.is_empty());
        assert_eq!(root.flags, 0x101);
        assert_eq!(root.name, "read kv/");
        assert_eq!(root.kind, 2);
        assert_eq!(root.start_time_unix_nano, 1_741_708_800_000_000_000);
        assert_eq!(root.end_time_unix_nano, 1_741_708_800_001_500_000);
        assert_eq!(root.status, None);
        assert_eq!(child.parent_span_id, [0x33; 8]);
        assert_eq!(child.flags, 0x301);
        assert_eq!(
            child.status,
            Some(ProtoStatus {
                message: "permission denied".into(),
                code: 2
            })
        );

        let value = |v: Value| Some(AnyValue { value: Some(v) });
        let array = |vs: Vec<Value>| {
            value(Value::ArrayValue(ArrayValue {
                values: vs
                    .into_iter()
                    .map(|v| AnyValue { value: Some(v) })
                    .collect(),
            }))
        };
        let got: Vec<(&str, Option<AnyValue>)> = root
            .attributes
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("s", value(Value::StringValue("x".into()))),
                ("b", value(Value::BoolValue(true))),
                ("i", value(Value::IntValue(-7))),
                ("f", value(Value::DoubleValue(0.5))),
                (
                    "sa",
                    array(vec![
                        Value::StringValue("p".into()),
                        Value::StringValue("q".into())
                    ])
                ),
                ("ba", array(vec![Value::BoolValue(false)])),
                ("ia", array(vec![Value::IntValue(1), Value::IntValue(2)])),
                ("fa", array(vec![Value::DoubleValue(1.5)])),
                ("empty", array(vec![])),
            ]
        );
    }
}

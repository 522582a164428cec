//! The stdout sink: one JSON object per span per line (DESIGN "Per sink: stdout").
//!
//! Keys in this order: `trace_id`, `span_id`, `parent_span_id`, `name`, `kind`,
//! `start_time_unix_nano`, `end_time_unix_nano` (decimal strings, as OTLP/JSON writes
//! them, so that no JSON tool rounds them), `duration_ms`, `status`, `attributes`,
//! `resource`. A batch is written with one `write_all` and flushed before the batch is
//! answered, so an answered batch is in the kernel's hands.

use std::io::Write;

use actix::prelude::*;
use serde::Serialize;
use serde::ser::SerializeMap;

use super::{Resource, SinkError};
use crate::{
    correlate::SpanBatch,
    span::{Span, Status},
};

/// Writes spans to the process's stdout (or any writer, for tests and benches).
pub struct StdoutSink {
    name: String,
    resource: Resource,
    out: Box<dyn Write + Send>,
    buf: Vec<u8>,
}

impl StdoutSink {
    pub fn new(name: String, resource: Resource) -> Self {
        Self::with_writer(name, resource, Box::new(std::io::stdout()))
    }

    pub fn with_writer(name: String, resource: Resource, out: Box<dyn Write + Send>) -> Self {
        StdoutSink {
            name,
            resource,
            out,
            buf: Vec::with_capacity(1 << 16),
        }
    }
}

impl Actor for StdoutSink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Room for every batch the correlator may have in flight.
        ctx.set_mailbox_capacity(crate::correlate::MAX_IN_FLIGHT * 2);
    }
}

impl Handler<SpanBatch> for StdoutSink {
    type Result = Result<(), SinkError>;

    fn handle(&mut self, msg: SpanBatch, _: &mut Self::Context) -> Self::Result {
        self.buf.clear();
        for span in &msg.0 {
            encode(span, &self.resource, &mut self.buf);
        }
        self.out
            .write_all(&self.buf)
            .and_then(|()| self.out.flush())
            .map_err(|source| SinkError::Write {
                sink: self.name.clone(),
                source,
            })
    }
}

/// Appends the span's JSON line, newline included, to `out`.
pub fn encode(span: &Span, resource: &Resource, out: &mut Vec<u8>) {
    let line = StdoutSpan { span, resource };
    // Serializing to a Vec cannot fail: every map key is a string, every float finite.
    if serde_json::to_writer(&mut *out, &line).is_ok() {
        out.push(b'\n');
    }
}

struct StdoutSpan<'a> {
    span: &'a Span,
    resource: &'a Resource,
}

impl Serialize for StdoutSpan<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let span = self.span;
        let mut map = s.serialize_map(Some(11))?;
        map.serialize_entry("trace_id", &Hex(&span.trace_id))?;
        map.serialize_entry("span_id", &Hex(&span.span_id))?;
        map.serialize_entry("parent_span_id", &span.parent_span_id.as_ref().map(Hex))?;
        map.serialize_entry("name", &span.name)?;
        map.serialize_entry("kind", "server")?;
        map.serialize_entry("start_time_unix_nano", &Decimal(span.start_unix_nano))?;
        map.serialize_entry("end_time_unix_nano", &Decimal(span.end_unix_nano))?;
        map.serialize_entry("duration_ms", &(span.duration_nanos() as f64 / 1e6))?;
        map.serialize_entry("status", &StatusJson(&span.status))?;
        map.serialize_entry("attributes", &span.attributes)?;
        map.serialize_entry("resource", &ResourceJson(self.resource))?;
        map.end()
    }
}

/// Lowercase hex of an id as a JSON string, formatted on the stack.
struct Hex<'a, const N: usize>(&'a [u8; N]);

impl<const N: usize> Serialize for Hex<'_, N> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        // Ids are 8 or 16 bytes.
        let mut buf = [0u8; 32];
        let digits = &mut buf[..(2 * N).min(32)];
        for (pair, b) in digits.chunks_exact_mut(2).zip(self.0) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 0xf)];
        }
        // Hex digits are ASCII, so this never takes the error branch.
        s.serialize_str(std::str::from_utf8(digits).unwrap_or_default())
    }
}

/// An integer as a JSON string of its decimal digits, without a temporary `String`.
struct Decimal(i64);

impl Serialize for Decimal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

struct StatusJson<'a>(&'a Status);

impl Serialize for StatusJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Status::Unset => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("code", "unset")?;
                map.end()
            }
            Status::Error(message) => {
                let mut map = s.serialize_map(Some(2))?;
                map.serialize_entry("code", "error")?;
                map.serialize_entry("message", message)?;
                map.end()
            }
        }
    }
}

struct ResourceJson<'a>(&'a Resource);

impl Serialize for ResourceJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let attributes = self.0.attributes();
        let mut map = s.serialize_map(Some(attributes.len()))?;
        for (k, v) in attributes {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::AttrValue;
    use crate::span::Outcome;

    /// The stack-formatted ids and times are the strings `span::hex` and `to_string` give.
    #[test]
    fn ids_and_times_match_their_string_forms() {
        let id16: [u8; 16] = core::array::from_fn(|i| (i * 37 + 5) as u8);
        let id8: [u8; 8] = [0, 0xff, 0x10, 0x0a, 0xa0, 1, 2, 3];
        let quoted = |s: String| format!("\"{s}\"");
        assert_eq!(
            serde_json::to_string(&Hex(&id16)).unwrap(),
            quoted(crate::span::hex(&id16))
        );
        assert_eq!(
            serde_json::to_string(&Hex(&id8)).unwrap(),
            quoted(crate::span::hex(&id8))
        );
        for n in [0, -1, 7, 1_741_708_800_001_500_000, i64::MIN, i64::MAX] {
            assert_eq!(
                serde_json::to_string(&Decimal(n)).unwrap(),
                quoted(n.to_string())
            );
        }
    }

    #[test]
    fn field_order_and_types() {
        let span = Span {
            trace_id: [0x11; 16],
            span_id: [0x22; 8],
            parent_span_id: None,
            name: "read kv/".into(),
            start_unix_nano: 1_741_708_800_000_000_000,
            end_unix_nano: 1_741_708_800_001_500_000,
            status: Status::Error("permission denied".into()),
            outcome: Outcome::Paired,
            attributes: [
                ("b", AttrValue::Bool(true)),
                ("a", AttrValue::IntArray(vec![1, 2])),
            ]
            .into_iter()
            .collect(),
        };
        let resource = Resource {
            service_name: "vault".into(),
            instance_id: "i".into(),
            host_name: "h".into(),
        };
        let mut out = Vec::new();
        encode(&span, &resource, &mut out);
        let line = String::from_utf8(out).unwrap();
        assert_eq!(
            line,
            concat!(
                r#"{"trace_id":"11111111111111111111111111111111","span_id":"2222222222222222","#,
                r#""parent_span_id":null,"name":"read kv/","kind":"server","#,
                r#""start_time_unix_nano":"1741708800000000000","end_time_unix_nano":"1741708800001500000","#,
                r#""duration_ms":1.5,"status":{"code":"error","message":"permission denied"},"#,
                r#""attributes":{"b":true,"a":[1,2]},"#,
                r#""resource":{"service.name":"vault","service.instance.id":"i","host.name":"h"}}"#,
                "\n"
            )
        );
    }
}

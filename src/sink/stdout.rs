//! The stdout sink: one JSON object per span per line (DESIGN "Per sink: stdout").
//!
//! Keys in this order: `trace_id`, `span_id`, `parent_span_id`, `name`, `kind`,
//! `start_time_unix_nano`, `end_time_unix_nano` (decimal strings, as OTLP/JSON writes
//! them, so that no JSON tool rounds them), `duration_ms`, `status`, `attributes`,
//! `resource`. A batch is written with one `write_all` and flushed before the batch is
//! answered, so an answered batch is in the kernel's hands.
//!
//! The worker hands the sink its spans as the queue stores them ([`Sink::export_stored`]),
//! and [`encode_stored`] writes each line straight from those bytes: decoding a span into
//! a [`Span`] only to write it out again cost the sink a third of its time. [`encode`]
//! writes the same line from a decoded span (the dead-letter file, a retried batch); the
//! two give the same bytes, which the tests check.

use std::io::Write;

use serde::Serialize;
use serde::ser::SerializeMap;

use tracing::error;

use super::{ExportFailure, Exported, FailureReason, Resource, Sink, StoredExport, json::Hex};
use crate::{
    attr::{AttrRef, Attributes},
    codec::{self, DecodeError, Text, ValueView},
    queue::ReadSpans,
    span::{Span, Status},
};

/// Writes spans to the process's stdout (or any writer, for tests and benches).
///
/// The write blocks while stdout is a full pipe; the sink runs on its own thread, so
/// only this sink waits, and the queue keeps the spans meanwhile.
pub struct StdoutSink {
    name: String,
    resource: Resource,
    /// `resource`'s JSON object, the same for every line.
    resource_json: Vec<u8>,
    out: Box<dyn Write + Send>,
    /// The batch's lines, reused from batch to batch.
    buf: Vec<u8>,
}

/// The line buffer is kept for the next batch unless a batch of large spans grew it past
/// this.
const KEEP_BUFFER: usize = 4 << 20;

impl StdoutSink {
    pub fn new(name: String, resource: Resource) -> Self {
        Self::with_writer(name, resource, Box::new(std::io::stdout()))
    }

    pub fn with_writer(name: String, resource: Resource, out: Box<dyn Write + Send>) -> Self {
        let mut resource_json = Vec::new();
        json(&mut resource_json, &ResourceJson(&resource));
        StdoutSink {
            name,
            resource,
            resource_json,
            out,
            buf: Vec::with_capacity(1 << 16),
        }
    }

    /// Writes `buf` and flushes; a failure means every span of the batch is to be sent
    /// again.
    fn write_out(&mut self, spans: usize) -> Result<Exported, ExportFailure> {
        // A failed write may have written part of the batch: all of it is retried, so a
        // reader can see a few lines twice (at-least-once).
        let written = self
            .out
            .write_all(&self.buf)
            .and_then(|()| self.out.flush())
            .map(|()| Exported::default())
            .map_err(|err| ExportFailure::all(FailureReason::Connect, err.to_string(), spans));
        if self.buf.capacity() > KEEP_BUFFER {
            self.buf = Vec::with_capacity(1 << 16);
        }
        written
    }
}

impl Sink for StdoutSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn export(&mut self, spans: &[Span]) -> Result<Exported, ExportFailure> {
        self.buf.clear();
        for span in spans {
            encode(span, &self.resource, &mut self.buf);
        }
        self.write_out(spans.len())
    }

    fn export_stored(&mut self, spans: &ReadSpans) -> Option<Result<StoredExport, ExportFailure>> {
        self.buf.clear();
        let mut undecodable = 0;
        for (seq, bytes) in spans.iter() {
            if let Err(err) = encode_stored(bytes, &self.resource_json, &mut self.buf) {
                // As the worker does for a span it cannot decode: logged and skipped, since
                // its bytes passed the queue's checksum (a bug or a format change, not
                // damage) and it must not block the sink forever.
                error!(sink = %self.name, seq, error = %err, "Skipping a span that does not decode.");
                undecodable += 1;
            }
        }
        Some(self.write_out(spans.len()).map(|exported| StoredExport {
            exported,
            undecodable,
        }))
    }
}

/// Appends the span's JSON line, newline included, to `out`.
///
/// The line is written piecewise rather than as one serde map: the attributes are most of
/// it, and their strings rarely need escaping, so [`write_str`] copies those whole instead
/// of going through serde_json's byte-by-byte escaper. Everything else, and every string
/// that does need escaping, is serde_json's own output, so the bytes are the same.
pub fn encode(span: &Span, resource: &Resource, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"trace_id\":");
    json(out, &Hex(&span.trace_id));
    out.extend_from_slice(b",\"span_id\":");
    json(out, &Hex(&span.span_id));
    out.extend_from_slice(b",\"parent_span_id\":");
    json(out, &span.parent_span_id.as_ref().map(Hex));
    out.extend_from_slice(b",\"name\":");
    write_str(out, &span.name);
    out.extend_from_slice(b",\"kind\":\"server\",\"start_time_unix_nano\":");
    json(out, &Decimal(span.start_unix_nano));
    out.extend_from_slice(b",\"end_time_unix_nano\":");
    json(out, &Decimal(span.end_unix_nano));
    out.extend_from_slice(b",\"duration_ms\":");
    json(out, &(span.duration_nanos() as f64 / 1e6));
    out.extend_from_slice(b",\"status\":");
    json(out, &StatusJson(&span.status));
    out.extend_from_slice(b",\"attributes\":");
    write_attributes(out, &span.attributes);
    out.extend_from_slice(b",\"resource\":");
    json(out, &ResourceJson(resource));
    out.extend_from_slice(b"}\n");
}

/// Appends the JSON line of the span whose encoded bytes ([`crate::codec`]) are `span`,
/// newline included, to `out`: the bytes [`encode`] writes for the decoded span, given
/// `resource_json`, the resource's JSON object. A span that does not decode appends
/// nothing and is the error.
pub fn encode_stored(
    span: &[u8],
    resource_json: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), DecodeError> {
    let start = out.len();
    let written = write_stored(span, resource_json, out);
    if written.is_err() {
        out.truncate(start);
    }
    written
}

fn write_stored(span: &[u8], resource_json: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let span = codec::view_span(span)?;
    out.extend_from_slice(b"{\"trace_id\":");
    write_hex(out, span.trace_id);
    out.extend_from_slice(b",\"span_id\":");
    write_hex(out, span.span_id);
    out.extend_from_slice(b",\"parent_span_id\":");
    match span.parent_span_id {
        Some(parent) => write_hex(out, parent),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"name\":");
    write_text(out, span.name)?;
    out.extend_from_slice(b",\"kind\":\"server\",\"start_time_unix_nano\":");
    json(out, &Decimal(span.start_unix_nano));
    out.extend_from_slice(b",\"end_time_unix_nano\":");
    json(out, &Decimal(span.end_unix_nano));
    out.extend_from_slice(b",\"duration_ms\":");
    let duration = crate::span::duration_nanos(span.start_unix_nano, span.end_unix_nano);
    json(out, &(duration as f64 / 1e6));
    out.extend_from_slice(b",\"status\":");
    match span.error {
        None => out.extend_from_slice(br#"{"code":"unset"}"#),
        Some(message) => {
            out.extend_from_slice(br#"{"code":"error","message":"#);
            write_text(out, message)?;
            out.push(b'}');
        }
    }
    out.extend_from_slice(b",\"attributes\":{");
    let mut first = true;
    span.attributes(|key, value| {
        if !first {
            out.push(b',');
        }
        first = false;
        write_text(out, key)?;
        out.push(b':');
        write_value(out, value)
    })?;
    out.extend_from_slice(b"},\"resource\":");
    out.extend_from_slice(resource_json);
    out.extend_from_slice(b"}\n");
    Ok(())
}

/// An id as a JSON string of lowercase hex: what [`Hex`] serializes.
fn write_hex<const N: usize>(out: &mut Vec<u8>, id: &[u8; N]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(2 * N + 2);
    out.push(b'"');
    for b in id {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0xf)]);
    }
    out.push(b'"');
}

/// A stored attribute value as [`write_attributes`] writes the decoded one.
fn write_value(out: &mut Vec<u8>, value: ValueView<'_>) -> Result<(), DecodeError> {
    fn seq<T>(
        out: &mut Vec<u8>,
        items: impl Iterator<Item = T>,
        mut item: impl FnMut(&mut Vec<u8>, T) -> Result<(), DecodeError>,
    ) -> Result<(), DecodeError> {
        out.push(b'[');
        for (j, value) in items.enumerate() {
            if j > 0 {
                out.push(b',');
            }
            item(out, value)?;
        }
        out.push(b']');
        Ok(())
    }
    match value {
        ValueView::Str(s) => write_text(out, s)?,
        ValueView::Bool(true) => out.extend_from_slice(b"true"),
        ValueView::Bool(false) => out.extend_from_slice(b"false"),
        ValueView::Int(i) => json(out, &i),
        ValueView::Float(f) => json(out, &f),
        ValueView::StrArray(items) => seq(out, items.strs(), write_text)?,
        ValueView::BoolArray(items) => seq(out, items.bools(), |out, b| {
            json(out, &b);
            Ok(())
        })?,
        ValueView::IntArray(items) => seq(out, items.ints(), |out, i| {
            json(out, &i);
            Ok(())
        })?,
        ValueView::FloatArray(items) => seq(out, items.floats(), |out, f| {
            json(out, &f);
            Ok(())
        })?,
    }
    Ok(())
}

/// Appends a stored string as a JSON string, checking its UTF-8 on the way: one scan of
/// the bytes finds both what needs escaping and whether any byte is not ASCII, and only a
/// string that needs escaping or holds non-ASCII bytes is checked with `from_utf8` (ASCII
/// is UTF-8). The bytes are [`write_str`]'s.
fn write_text(out: &mut Vec<u8>, text: Text<'_>) -> Result<(), DecodeError> {
    let bytes = text.bytes;
    // Bit 0: a byte serde_json escapes; bit 1: a byte that is not ASCII. Without an early
    // exit per byte the compiler vectorises the scan.
    let mut found = 0u8;
    for chunk in bytes.chunks(64) {
        found |= chunk.iter().fold(0u8, |acc, &b| {
            acc | u8::from((b < 0x20) | (b == b'"') | (b == b'\\')) | (u8::from(b >= 0x80) << 1)
        });
        if found & 1 != 0 {
            break;
        }
    }
    if found != 0 {
        let s = text.to_str()?;
        if found & 1 != 0 {
            json(out, s);
            return Ok(());
        }
    }
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    out.extend_from_slice(bytes);
    out.push(b'"');
    Ok(())
}

/// Appends serde_json's compact form of `value`.
fn json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Writing to a Vec cannot fail, and none of our values fails to serialize: map keys
    // are strings, and a non-finite float is written as `null`.
    serde_json::to_writer(&mut *out, value).ok();
}

/// Appends `s` as a JSON string, byte for byte what serde_json writes.
fn write_str(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes exactly `"`, `\\` and the control characters below 0x20. Without
    // an early exit per byte the compiler vectorises the scan.
    let needs_escape = s.as_bytes().chunks(64).any(|chunk| {
        chunk.iter().fold(false, |acc, &b| {
            acc | (b < 0x20) | (b == b'"') | (b == b'\\')
        })
    });
    if needs_escape {
        json(out, s);
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// Appends the attributes as a JSON object: the bytes serde_json writes for
/// [`Attributes`]'s `Serialize`.
fn write_attributes(out: &mut Vec<u8>, attributes: &Attributes) {
    out.push(b'{');
    for (i, (key, value)) in attributes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, key);
        out.push(b':');
        match value {
            AttrRef::Str(s) => write_str(out, s),
            AttrRef::StrArray(items) => {
                out.push(b'[');
                for (j, s) in items.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    write_str(out, s);
                }
                out.push(b']');
            }
            AttrRef::Bool(true) => out.extend_from_slice(b"true"),
            AttrRef::Bool(false) => out.extend_from_slice(b"false"),
            other => json(out, &other),
        }
    }
    out.push(b'}');
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
    use proptest::prelude::*;

    use super::*;
    use crate::attr::AttrValue;

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

    /// The direct writer gives serde_json's bytes for every value type and for strings
    /// that need escaping, or look as if they might.
    #[test]
    fn attributes_are_serde_jsons_bytes() {
        let tricky = [
            "",
            "plain",
            "quote \" inside",
            "back\\slash",
            "ctl \u{0} \u{1f} \n\r\t\u{8}\u{c}",
            "del \u{7f} é 😀 \u{2028} </script>",
            &"long-and-clean-".repeat(20),
            &format!("{}\"", "x".repeat(100)),
        ];
        let mut attrs: Attributes = tricky
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("k{i}{s}"), AttrValue::Str((*s).to_owned())))
            .collect();
        for (k, v) in [
            ("b", AttrValue::Bool(false)),
            ("i", AttrValue::Int(i64::MIN)),
            ("f", AttrValue::Float(-0.0)),
            ("f2", AttrValue::Float(1e20)),
            ("f3", AttrValue::Float(0.1 + 0.2)),
            (
                "sa",
                AttrValue::StrArray(tricky.iter().map(|s| (*s).to_owned()).collect()),
            ),
            ("ba", AttrValue::BoolArray(vec![true, false])),
            ("ia", AttrValue::IntArray(vec![-1, 0, i64::MAX])),
            ("fa", AttrValue::FloatArray(vec![1.5, 2.0, 1e-7])),
            ("empty", AttrValue::StrArray(vec![])),
        ] {
            attrs.push_value(k, &v).unwrap();
        }
        let mut direct = Vec::new();
        write_attributes(&mut direct, &attrs);
        assert_eq!(
            String::from_utf8(direct).unwrap(),
            serde_json::to_string(&attrs).unwrap()
        );
        let mut empty = Vec::new();
        write_attributes(&mut empty, &Attributes::new());
        assert_eq!(empty, b"{}");
    }

    #[test]
    fn field_order_and_types() {
        let span = Span {
            start_unix_nano: 1_741_708_800_000_000_000,
            end_unix_nano: 1_741_708_800_001_500_000,
            ..Span::sample(
                Status::Error("permission denied".into()),
                vec![
                    ("b", AttrValue::Bool(true)),
                    ("a", AttrValue::IntArray(vec![1, 2])),
                ],
            )
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

    fn tricky_string() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z./_-]{0,12}",
            "\\PC{0,8}",
            prop::collection::vec(prop::char::range('\u{0}', '\u{7f}'), 0..8)
                .prop_map(|chars| chars.into_iter().collect()),
            Just("quote \" back\\slash \u{2028} é 😀".to_owned()),
        ]
    }

    fn float() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(-0.0),
            Just(1e20),
            Just(0.1 + 0.2),
        ]
    }

    fn value() -> impl Strategy<Value = AttrValue> {
        prop_oneof![
            tricky_string().prop_map(AttrValue::Str),
            any::<bool>().prop_map(AttrValue::Bool),
            any::<i64>().prop_map(AttrValue::Int),
            float().prop_map(AttrValue::Float),
            prop::collection::vec(tricky_string(), 0..4).prop_map(AttrValue::StrArray),
            prop::collection::vec(any::<bool>(), 0..4).prop_map(AttrValue::BoolArray),
            prop::collection::vec(any::<i64>(), 0..4).prop_map(AttrValue::IntArray),
            prop::collection::vec(float(), 0..4).prop_map(AttrValue::FloatArray),
        ]
    }

    fn span() -> impl Strategy<Value = Span> {
        (
            any::<[u8; 16]>(),
            any::<[u8; 8]>(),
            any::<Option<[u8; 8]>>(),
            tricky_string(),
            any::<(i64, u32)>(),
            prop::option::of(tricky_string()),
            prop::collection::vec((tricky_string(), value()), 0..10),
        )
            .prop_map(
                |(trace_id, span_id, parent, name, (start, len), error, attrs)| {
                    let mut attributes = Attributes::new();
                    for (key, value) in &attrs {
                        attributes.push_value(key, value).unwrap();
                    }
                    Span {
                        trace_id,
                        span_id,
                        parent_span_id: parent,
                        name,
                        start_unix_nano: start / 2,
                        end_unix_nano: start / 2 + i64::from(len),
                        status: error.map_or(Status::Unset, Status::Error),
                        outcome: crate::span::Outcome::Paired,
                        attributes,
                    }
                },
            )
    }

    fn resource() -> Resource {
        Resource {
            service_name: "vault \"prod\"".into(),
            instance_id: "i-1".into(),
            host_name: "h".into(),
        }
    }

    fn resource_json() -> Vec<u8> {
        let mut out = Vec::new();
        json(&mut out, &ResourceJson(&resource()));
        out
    }

    proptest! {
        /// The line written from a stored span is byte for byte the line written from the
        /// decoded span, for every kind of value, escapes and non-finite floats included.
        #[test]
        fn stored_lines_are_the_decoded_lines(span in span()) {
            let mut bytes = Vec::new();
            crate::codec::encode_span(&span, &mut bytes);
            let mut decoded = Vec::new();
            encode(&span, &resource(), &mut decoded);
            let mut stored = b"before".to_vec();
            encode_stored(&bytes, &resource_json(), &mut stored).unwrap();
            prop_assert_eq!(&stored[6..], &decoded[..]);
        }
    }

    /// A damaged span (cut anywhere, any byte changed) is refused exactly when the decoder
    /// refuses it, and then nothing is written; when both take it, the lines agree.
    #[test]
    fn damaged_stored_spans_agree_with_the_decoder() {
        let span = Span {
            parent_span_id: Some([9; 8]),
            ..Span::sample(
                Status::Error("denied".into()),
                vec![
                    ("s", AttrValue::Str("x".into())),
                    ("sa", AttrValue::StrArray(vec!["a".into(), "bc".into()])),
                    ("ba", AttrValue::BoolArray(vec![true])),
                    ("ia", AttrValue::IntArray(vec![7])),
                    ("fa", AttrValue::FloatArray(vec![0.5])),
                    ("f", AttrValue::Float(2.5)),
                ],
            )
        };
        let mut bytes = Vec::new();
        crate::codec::encode_span(&span, &mut bytes);
        let check = |bytes: &[u8]| {
            let mut stored = b"prefix".to_vec();
            let result = encode_stored(bytes, &resource_json(), &mut stored);
            match crate::codec::decode_span(bytes) {
                Ok(decoded) => {
                    let mut line = b"prefix".to_vec();
                    encode(&decoded, &resource(), &mut line);
                    assert!(result.is_ok());
                    assert_eq!(stored, line);
                }
                Err(_) => {
                    assert!(result.is_err(), "{bytes:?}");
                    assert_eq!(stored, b"prefix", "nothing written");
                }
            }
        };
        for cut in 0..=bytes.len() {
            check(&bytes[..cut]);
        }
        for i in 0..bytes.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut damaged = bytes.clone();
                damaged[i] ^= flip;
                check(&damaged);
            }
        }
        let mut longer = bytes.clone();
        longer.push(0);
        check(&longer);
    }
}

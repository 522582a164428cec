//! The binary form of spans and of waiting events, as the queue stores them.
//!
//! # Warning
//! This is an on-disk format: spans and waiting events written by one version are read by
//! the next after an upgrade. Never change the meaning of a byte; add a new format byte
//! instead and keep decoding the old one. Changes are **Breaking** in the changelog.
//!
//! ```text
//! span:     u8 format (=1) · [16] trace id · [8] span id · u8 has parent · [8] parent?
//!           · str name · i64 start · i64 end · u8 status (0 unset, 1 error) · str message?
//!           · u8 outcome (0 paired, 1 response_missing, 2 request_missing) · attributes
//! waiting:  u8 format (=1) · str input · i64 arrived (wall clock, ns since epoch) · event
//! event:    u8 kind (0 request, 1 response) · str id · i64 time · 6 × opt str (error,
//!           operation, path, mount_point, namespace_path, traceparent) · 3 × u32
//!           truncations (depth, attributes, value_bytes) · attributes
//! attributes: u32 count · count × (str key · u8 tag · value)
//!           tag 0 str · 1 bool (u8) · 2 i64 · 3 f64 · 4 u32 n × str · 5 u32 n × u8
//!           · 6 u32 n × i64 · 7 u32 n × f64
//! str:      u32 length · UTF-8 bytes;  opt str: u8 present · str?
//! ```
//! Integers are little-endian. The queue wraps every value with its own version byte and
//! checksum, so damage is caught there; decoding still never panics on bad input.

use crate::{
    attr::{AttrRef, Attributes},
    event::{AuditEvent, EventKind, Truncations},
    span::{Outcome, Span, Status},
};

const FORMAT: u8 = 1;

/// Why bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes end before the value does.
    #[error("truncated at byte {0}")]
    Truncated(usize),
    /// A format byte from a newer auditspan, or damage.
    #[error("unsupported format {0}")]
    Format(u8),
    /// A tag or enum byte out of range.
    #[error("invalid tag {tag} at byte {at}")]
    Tag { tag: u8, at: usize },
    /// A string that is not UTF-8.
    #[error("invalid UTF-8 at byte {0}")]
    Utf8(usize),
    /// Bytes left over after the value.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// Attributes larger than one list can hold.
    #[error("attributes too large")]
    TooLarge,
}

/// Appends the encoded span to `out`.
pub fn encode_span(span: &Span, out: &mut Vec<u8>) {
    let mut w = Writer(out);
    w.u8(FORMAT);
    w.bytes(&span.trace_id);
    w.bytes(&span.span_id);
    match span.parent_span_id {
        Some(p) => {
            w.u8(1);
            w.bytes(&p);
        }
        None => w.u8(0),
    }
    w.str(&span.name);
    w.i64(span.start_unix_nano);
    w.i64(span.end_unix_nano);
    match &span.status {
        Status::Unset => w.u8(0),
        Status::Error(message) => {
            w.u8(1);
            w.str(message);
        }
    }
    w.u8(match span.outcome {
        Outcome::Paired => 0,
        Outcome::ResponseMissing => 1,
        Outcome::RequestMissing => 2,
    });
    w.attributes(&span.attributes);
}

pub fn decode_span(bytes: &[u8]) -> Result<Span, DecodeError> {
    let view = view_span(bytes)?;
    let name = view.name.to_str()?.to_owned();
    let status = match view.error {
        Some(message) => Status::Error(message.to_str()?.to_owned()),
        None => Status::Unset,
    };
    let mut r = view.rest;
    let attributes = r.attributes()?;
    r.end()?;
    Ok(Span {
        trace_id: *view.trace_id,
        span_id: *view.span_id,
        parent_span_id: view.parent_span_id.copied(),
        name,
        start_unix_nano: view.start_unix_nano,
        end_unix_nano: view.end_unix_nano,
        status,
        outcome: view.outcome,
        attributes,
    })
}

/// A span read in place from its encoded bytes, without allocating: the fixed fields
/// decoded, the attributes walked on demand ([`SpanView::attributes`]). For a sink that
/// writes the stored span in another form (the stdout sink's JSON) instead of decoding it
/// into a [`Span`] first. Strings come as [`Text`], their UTF-8 not yet checked, so that a
/// writer that scans them anyway checks it in the same pass: the view with every [`Text`]
/// checked accepts exactly the bytes [`decode_span`] accepts ([`decode_span`] is the view,
/// checked and copied).
#[derive(Debug, Clone, Copy)]
pub struct SpanView<'a> {
    pub trace_id: &'a [u8; 16],
    pub span_id: &'a [u8; 8],
    pub parent_span_id: Option<&'a [u8; 8]>,
    pub name: Text<'a>,
    pub start_unix_nano: i64,
    pub end_unix_nano: i64,
    /// The message of an error status; `None` for unset.
    pub error: Option<Text<'a>>,
    pub outcome: Outcome,
    /// The encoded attributes and whatever follows them.
    rest: Reader<'a>,
}

/// A string of an encoded span whose UTF-8 is not checked yet.
#[derive(Debug, Clone, Copy)]
pub struct Text<'a> {
    pub bytes: &'a [u8],
    /// Where it starts in the span, for the error.
    at: usize,
}

impl<'a> Text<'a> {
    /// The string, once its UTF-8 is checked (as [`decode_span`] checks it).
    pub fn to_str(&self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes).map_err(|_| DecodeError::Utf8(self.at))
    }
}

/// One attribute value of a [`SpanView`], borrowed from the encoded bytes. Arrays are
/// walked with [`Items`]; their lengths were checked when the value was read.
#[derive(Debug, Clone, Copy)]
pub enum ValueView<'a> {
    Str(Text<'a>),
    Bool(bool),
    Int(i64),
    Float(f64),
    StrArray(Items<'a>),
    BoolArray(Items<'a>),
    IntArray(Items<'a>),
    FloatArray(Items<'a>),
}

/// The elements of an array value: `count` encoded elements (strings length-prefixed,
/// bools one byte, numbers eight bytes little-endian), their lengths already checked.
#[derive(Debug, Clone, Copy)]
pub struct Items<'a> {
    bytes: &'a [u8],
    /// Where `bytes` starts in the span.
    at: usize,
    count: usize,
}

impl<'a> Items<'a> {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The elements of a string array.
    pub fn strs(&self) -> impl Iterator<Item = Text<'a>> + use<'a> {
        let mut r = Reader {
            buf: self.bytes,
            pos: 0,
        };
        let at = self.at;
        (0..self.count).map_while(move |_| {
            r.text().ok().map(|text| Text {
                at: at + text.at,
                ..text
            })
        })
    }

    /// The elements of a bool array.
    pub fn bools(&self) -> impl Iterator<Item = bool> + use<'a> {
        self.bytes.iter().map(|b| *b != 0)
    }

    /// The elements of an integer array.
    pub fn ints(&self) -> impl Iterator<Item = i64> + use<'a> {
        self.bytes
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
    }

    /// The elements of a float array.
    pub fn floats(&self) -> impl Iterator<Item = f64> + use<'a> {
        self.ints().map(|i| f64::from_bits(i as u64))
    }
}

/// Reads the fixed fields of an encoded span in place (see [`SpanView`]).
pub fn view_span(bytes: &[u8]) -> Result<SpanView<'_>, DecodeError> {
    let mut r = Reader { buf: bytes, pos: 0 };
    r.format()?;
    let trace_id = r.array_ref::<16>()?;
    let span_id = r.array_ref::<8>()?;
    let parent_span_id = match r.tag(1)? {
        1 => Some(r.array_ref::<8>()?),
        _ => None,
    };
    let name = r.text()?;
    let start_unix_nano = r.i64()?;
    let end_unix_nano = r.i64()?;
    let error = match r.tag(1)? {
        1 => Some(r.text()?),
        _ => None,
    };
    let outcome = match r.tag(2)? {
        0 => Outcome::Paired,
        1 => Outcome::ResponseMissing,
        _ => Outcome::RequestMissing,
    };
    Ok(SpanView {
        trace_id,
        span_id,
        parent_span_id,
        name,
        start_unix_nano,
        end_unix_nano,
        error,
        outcome,
        rest: r,
    })
}

impl<'a> SpanView<'a> {
    /// Calls `each(key, value)` for every attribute, in order, then checks that nothing
    /// follows them. It stops at the first malformed attribute, or the first error `each`
    /// returns (the attributes before it were already handed out).
    pub fn attributes(
        &self,
        mut each: impl FnMut(Text<'a>, ValueView<'a>) -> Result<(), DecodeError>,
    ) -> Result<(), DecodeError> {
        let mut r = self.rest;
        let count = r.len()?;
        for _ in 0..count {
            let key = r.text()?;
            let value = match r.tag(7)? {
                0 => ValueView::Str(r.text()?),
                1 => ValueView::Bool(r.u8()? != 0),
                2 => ValueView::Int(r.i64()?),
                3 => ValueView::Float(r.f64()?),
                4 => {
                    let n = r.len()?;
                    let start = r.pos;
                    for _ in 0..n {
                        r.text()?;
                    }
                    ValueView::StrArray(Items {
                        bytes: &r.buf[start..r.pos],
                        at: start,
                        count: n,
                    })
                }
                tag => {
                    let n = r.len()?;
                    let width = if tag == 5 { 1 } else { 8 };
                    let at = r.pos;
                    let bytes =
                        r.take(n.checked_mul(width).ok_or(DecodeError::Truncated(r.pos))?)?;
                    let items = Items {
                        bytes,
                        at,
                        count: n,
                    };
                    match tag {
                        5 => ValueView::BoolArray(items),
                        6 => ValueView::IntArray(items),
                        _ => ValueView::FloatArray(items),
                    }
                }
            };
            each(key, value)?;
        }
        r.end()
    }
}

/// A correlator entry waiting for its partner, as stored between runs.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitingEntry {
    pub input: String,
    /// When it arrived, wall clock, nanoseconds since the epoch: its wall-clock expiry
    /// continues across a restart.
    pub arrived_unix_nano: i64,
    pub event: AuditEvent,
}

pub fn encode_waiting(input: &str, arrived_unix_nano: i64, event: &AuditEvent, out: &mut Vec<u8>) {
    let mut w = Writer(out);
    w.u8(FORMAT);
    w.str(input);
    w.i64(arrived_unix_nano);
    w.u8(match event.kind {
        EventKind::Request => 0,
        EventKind::Response => 1,
    });
    w.str(&event.id);
    w.i64(event.time_unix_nano);
    for field in [
        &event.error,
        &event.operation,
        &event.path,
        &event.mount_point,
        &event.namespace_path,
        &event.traceparent,
    ] {
        w.opt_str(field.as_deref());
    }
    let t = event.truncations;
    for n in [t.depth, t.attributes, t.value_bytes] {
        w.u32(n);
    }
    w.attributes(&event.attributes);
}

pub fn decode_waiting(bytes: &[u8]) -> Result<WaitingEntry, DecodeError> {
    let mut r = Reader { buf: bytes, pos: 0 };
    r.format()?;
    let input = r.string()?;
    let arrived_unix_nano = r.i64()?;
    let kind = match r.tag(1)? {
        0 => EventKind::Request,
        _ => EventKind::Response,
    };
    let id = r.string()?;
    let time_unix_nano = r.i64()?;
    let mut fields: [Option<String>; 6] = Default::default();
    for field in &mut fields {
        *field = r.opt_string()?;
    }
    let [
        error,
        operation,
        path,
        mount_point,
        namespace_path,
        traceparent,
    ] = fields;
    let truncations = Truncations {
        depth: r.u32()?,
        attributes: r.u32()?,
        value_bytes: r.u32()?,
    };
    let attributes = r.attributes()?;
    r.end()?;
    Ok(WaitingEntry {
        input,
        arrived_unix_nano,
        event: AuditEvent {
            kind,
            id,
            time_unix_nano,
            error,
            operation,
            path,
            mount_point,
            namespace_path,
            traceparent,
            attributes,
            truncations,
        },
    })
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn len(&mut self, n: usize) {
        // Every length here is bounded by a span (≤ 1 MiB) or an event line (≤ max_line_bytes).
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }

    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn bytes(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }

    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
            None => self.u8(0),
        }
    }

    fn attributes(&mut self, attributes: &Attributes) {
        self.len(attributes.len());
        for (key, value) in attributes {
            self.str(key);
            match value {
                AttrRef::Str(s) => {
                    self.u8(0);
                    self.str(s);
                }
                AttrRef::Bool(b) => {
                    self.u8(1);
                    self.u8(u8::from(b));
                }
                AttrRef::Int(i) => {
                    self.u8(2);
                    self.i64(i);
                }
                AttrRef::Float(f) => {
                    self.u8(3);
                    self.0.extend_from_slice(&f.to_le_bytes());
                }
                AttrRef::StrArray(a) => {
                    self.u8(4);
                    self.len(a.len());
                    for s in a.iter() {
                        self.str(s);
                    }
                }
                AttrRef::BoolArray(a) => {
                    self.u8(5);
                    self.len(a.len());
                    a.iter().for_each(|b| self.u8(u8::from(*b)));
                }
                AttrRef::IntArray(a) => {
                    self.u8(6);
                    self.len(a.len());
                    a.iter().for_each(|i| self.i64(*i));
                }
                AttrRef::FloatArray(a) => {
                    self.u8(7);
                    self.len(a.len());
                    a.iter()
                        .for_each(|f| self.0.extend_from_slice(&f.to_le_bytes()));
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(DecodeError::Truncated(self.pos))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn array_ref<const N: usize>(&mut self) -> Result<&'a [u8; N], DecodeError> {
        self.take(N)?
            .try_into()
            .map_err(|_| DecodeError::Truncated(self.pos))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn tag(&mut self, max: u8) -> Result<u8, DecodeError> {
        let at = self.pos;
        let tag = self.u8()?;
        if tag > max {
            return Err(DecodeError::Tag { tag, at });
        }
        Ok(tag)
    }

    fn format(&mut self) -> Result<(), DecodeError> {
        match self.u8()? {
            FORMAT => Ok(()),
            other => Err(DecodeError::Format(other)),
        }
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array::<4>()?))
    }

    fn len(&mut self) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        // A count can never exceed the bytes left; checking here bounds every allocation.
        if n > self.buf.len() - self.pos {
            return Err(DecodeError::Truncated(self.pos));
        }
        Ok(n)
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array::<8>()?))
    }

    fn f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_le_bytes(self.array::<8>()?))
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let n = self.len()?;
        let at = self.pos;
        std::str::from_utf8(self.take(n)?).map_err(|_| DecodeError::Utf8(at))
    }

    /// A string whose UTF-8 is left to the caller ([`Text`]).
    fn text(&mut self) -> Result<Text<'a>, DecodeError> {
        let n = self.len()?;
        let at = self.pos;
        Ok(Text {
            bytes: self.take(n)?,
            at,
        })
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        self.str().map(str::to_owned)
    }

    fn opt_string(&mut self) -> Result<Option<String>, DecodeError> {
        match self.tag(1)? {
            1 => self.string().map(Some),
            _ => Ok(None),
        }
    }

    fn attributes(&mut self) -> Result<Attributes, DecodeError> {
        let count = self.len()?;
        let mut attributes = Attributes::with_capacity(count, self.buf.len() - self.pos);
        for _ in 0..count {
            let key = self.str()?;
            let full = |_| DecodeError::TooLarge;
            match self.tag(7)? {
                0 => attributes.push_str(key, self.str()?).map_err(full)?,
                1 => attributes.push_bool(key, self.u8()? != 0).map_err(full)?,
                2 => attributes.push_int(key, self.i64()?).map_err(full)?,
                3 => attributes.push_float(key, self.f64()?).map_err(full)?,
                4 => {
                    let n = self.len()?;
                    let items: Vec<&str> = (0..n).map(|_| self.str()).collect::<Result<_, _>>()?;
                    let mut writer = attributes.push_str_array(key).map_err(full)?;
                    for s in items {
                        writer.push(s).map_err(full)?;
                    }
                }
                5 => {
                    let n = self.len()?;
                    let items: Vec<bool> = (0..n)
                        .map(|_| self.u8().map(|b| b != 0))
                        .collect::<Result<_, _>>()?;
                    attributes.push_bool_array(key, items).map_err(full)?;
                }
                6 => {
                    let n = self.len()?;
                    let items: Vec<i64> = (0..n).map(|_| self.i64()).collect::<Result<_, _>>()?;
                    attributes.push_int_array(key, items).map_err(full)?;
                }
                _ => {
                    let n = self.len()?;
                    let items: Vec<f64> = (0..n).map(|_| self.f64()).collect::<Result<_, _>>()?;
                    attributes.push_float_array(key, items).map_err(full)?;
                }
            }
        }
        Ok(attributes)
    }

    fn end(&self) -> Result<(), DecodeError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::AttrValue;

    fn attributes() -> Attributes {
        [
            ("s", AttrValue::Str("é\n".into())),
            ("b", AttrValue::Bool(true)),
            ("i", AttrValue::Int(-7)),
            ("f", AttrValue::Float(-0.0)),
            ("sa", AttrValue::StrArray(vec!["a".into(), "".into()])),
            ("ba", AttrValue::BoolArray(vec![false, true])),
            ("ia", AttrValue::IntArray(vec![i64::MIN, i64::MAX])),
            ("fa", AttrValue::FloatArray(vec![1.5, 1e300])),
        ]
        .into_iter()
        .collect()
    }

    fn span() -> Span {
        Span {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: Some([3; 8]),
            name: "read kv/".into(),
            start_unix_nano: 1,
            end_unix_nano: 2,
            status: Status::Error("permission denied".into()),
            outcome: Outcome::RequestMissing,
            attributes: attributes(),
        }
    }

    #[test]
    fn spans_round_trip() {
        let mut out = Vec::new();
        encode_span(&span(), &mut out);
        assert_eq!(decode_span(&out).unwrap(), span());
        let plain = Span {
            parent_span_id: None,
            status: Status::Unset,
            outcome: Outcome::Paired,
            ..span()
        };
        out.clear();
        encode_span(&plain, &mut out);
        assert_eq!(decode_span(&out).unwrap(), plain);
    }

    #[test]
    fn waiting_entries_round_trip() {
        let event = AuditEvent {
            kind: EventKind::Response,
            id: "dev-gen-root".into(),
            time_unix_nano: -5,
            error: Some("x".into()),
            operation: Some("update".into()),
            path: None,
            mount_point: Some("kv/".into()),
            namespace_path: None,
            traceparent: Some("00-…".into()),
            attributes: attributes(),
            truncations: Truncations {
                depth: 1,
                attributes: 2,
                value_bytes: 3,
            },
        };
        let mut out = Vec::new();
        encode_waiting("unix", 42, &event, &mut out);
        let entry = decode_waiting(&out).unwrap();
        assert_eq!(
            entry,
            WaitingEntry {
                input: "unix".into(),
                arrived_unix_nano: 42,
                event
            }
        );
    }

    #[test]
    fn damage_is_an_error_never_a_panic() {
        let mut out = Vec::new();
        encode_span(&span(), &mut out);
        for cut in 0..out.len() {
            assert!(decode_span(&out[..cut]).is_err(), "cut at {cut}");
        }
        let mut newer = out.clone();
        newer[0] = 2;
        assert_eq!(decode_span(&newer), Err(DecodeError::Format(2)));
        let mut longer = out.clone();
        longer.push(0);
        assert_eq!(decode_span(&longer), Err(DecodeError::Trailing(1)));
        for i in 0..out.len() {
            let mut flipped = out.clone();
            flipped[i] ^= 0xff;
            decode_span(&flipped).ok();
        }
    }
}

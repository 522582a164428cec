//! The span: one Vault request/response pair, as every sink receives it.
//!
//! Identifiers are derived from the audit data only (DESIGN "Span contract"), so that a
//! replay after a crash produces the same span again and backends deduplicate it.

use sha2::{Digest, Sha256};

use crate::attr::Attributes;

/// How a span came to be; the `auditspan.outcome` attribute and the `outcome` label of
/// `spans_created_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Paired,
    ResponseMissing,
    RequestMissing,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [
        Outcome::Paired,
        Outcome::ResponseMissing,
        Outcome::RequestMissing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Paired => "paired",
            Outcome::ResponseMissing => "response_missing",
            Outcome::RequestMissing => "request_missing",
        }
    }
}

/// Span status: error when either event of the pair carried a non-empty `error`.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Unset,
    Error(String),
}

/// One finished span. The resource (service name, instance, host) is the same for every
/// span of a process and lives with the sinks, not here.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub name: String,
    /// Vault's `time` of the request event (of the response for `request_missing`).
    pub start_unix_nano: i64,
    /// Vault's `time` of the response event (the start for `response_missing`), never
    /// before the start.
    pub end_unix_nano: i64,
    pub status: Status,
    pub outcome: Outcome,
    pub attributes: Attributes,
}

/// A span for sink encoder tests: fixed ids, `read kv/`, paired, 1.501 ms long. Tests
/// override the fields they are about with struct update syntax.
#[cfg(test)]
impl Span {
    pub fn sample(status: Status, attributes: Vec<(&str, crate::attr::AttrValue)>) -> Span {
        Span {
            trace_id: [0x11; 16],
            span_id: [0x22; 8],
            parent_span_id: None,
            name: "read kv/".into(),
            start_unix_nano: 1_741_708_800_000_001_999,
            end_unix_nano: 1_741_708_800_001_502_998,
            status,
            outcome: Outcome::Paired,
            attributes: attributes.into_iter().collect(),
        }
    }
}

impl Span {
    /// `end − start`; saturating, so that a span decoded from damaged bytes cannot
    /// overflow (spans the correlator makes never end before they start).
    pub fn duration_nanos(&self) -> i64 {
        duration_nanos(self.start_unix_nano, self.end_unix_nano)
    }
}

/// [`Span::duration_nanos`] of a span from `start` to `end`.
pub fn duration_nanos(start: i64, end: i64) -> i64 {
    end.saturating_sub(start)
}

/// First 8 bytes of SHA-256("auditspan/" + id).
pub fn span_id_for(request_id: &str) -> [u8; 8] {
    let digest = Sha256::new()
        .chain_update(b"auditspan/")
        .chain_update(request_id)
        .finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    id
}

/// The request id's own 16 bytes when it is a UUID, else the first 16 bytes of its SHA-256.
pub fn trace_id_for(request_id: &str) -> [u8; 16] {
    if let Ok(uuid) = uuid::Uuid::try_parse(request_id) {
        return *uuid.as_bytes();
    }
    let digest = Sha256::digest(request_id.as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

/// Trace id and parent span id of a valid W3C `traceparent` header, version 00 or a
/// later version (whose extra fields are ignored, as the spec asks); `None` otherwise.
pub fn parse_traceparent(header: &str) -> Option<([u8; 16], [u8; 8])> {
    let header = header.trim();
    let mut parts = header.split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let parent = parts.next()?;
    let flags = parts.next()?;
    if version.len() != 2 || trace.len() != 32 || parent.len() != 16 || flags.len() != 2 {
        return None;
    }
    let version = u8::from_str_radix(version, 16)
        .ok()
        .filter(|v| *v != 0xff)?;
    if version == 0 && parts.next().is_some() {
        return None;
    }
    if !is_lower_hex(version_str(header)) || !is_lower_hex(trace) || !is_lower_hex(parent) {
        return None;
    }
    u8::from_str_radix(flags, 16).ok()?;
    let mut trace_id = [0u8; 16];
    let mut parent_id = [0u8; 8];
    hex_decode(trace, &mut trace_id)?;
    hex_decode(parent, &mut parent_id)?;
    if trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    Some((trace_id, parent_id))
}

fn version_str(header: &str) -> &str {
    header.get(..2).unwrap_or("")
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn hex_decode(s: &str, out: &mut [u8]) -> Option<()> {
    let bytes = s.as_bytes();
    if bytes.len() != out.len() * 2 {
        return None;
    }
    for (i, chunk) in bytes.chunks_exact(2).enumerate() {
        let hi = (chunk[0] as char).to_digit(16)?;
        let lo = (chunk[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(())
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// `"{operation} {mount_point}"`; without a mount point, the first path segment + `/`.
pub fn span_name(operation: Option<&str>, mount_point: Option<&str>, path: Option<&str>) -> String {
    let operation = operation.unwrap_or("unknown");
    let mount = match mount_point.filter(|m| !m.is_empty()) {
        Some(m) => m.to_owned(),
        None => match path.and_then(|p| p.split('/').find(|s| !s.is_empty())) {
            Some(first) => format!("{first}/"),
            None => return operation.to_owned(),
        },
    };
    format!("{operation} {mount}")
}

/// Cuts the largest values first until the attributes fit `max_bytes` (keys and values
/// counted by [`crate::attr::AttrRef::byte_len`]); returns how many values were cut.
pub fn fit_span_bytes(attributes: &mut Attributes, max_bytes: usize) -> u32 {
    let mut total: usize = attributes.iter().map(|(k, v)| k.len() + v.byte_len()).sum();
    let mut cut = 0;
    while total > max_bytes {
        // `max_by_key` keeps the last of equal maxima.
        let Some((index, before)) = attributes
            .iter()
            .map(|(_, v)| v.byte_len())
            .enumerate()
            .max_by_key(|&(_, len)| len)
        else {
            break;
        };
        let excess = total - max_bytes;
        // Cut at least half of the largest value so that many similar values converge fast.
        let keep = before.saturating_sub(excess.max(before / 2));
        attributes.truncate_value(index, keep);
        let after = attributes.value(index).byte_len();
        if after >= before {
            // Numbers and bools cannot shrink: drop the attribute instead.
            total -= attributes.key(index).len() + after;
            attributes.remove(index);
        } else {
            total -= before - after;
        }
        cut += 1;
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::AttrValue;

    #[test]
    fn uuid_request_id_is_the_trace_id() {
        let id = trace_id_for("64f1dc09-f1dc-9fa5-2382-aea81e551d88");
        assert_eq!(hex(&id), "64f1dc09f1dc9fa52382aea81e551d88");
    }

    #[test]
    fn non_uuid_request_id_hashes() {
        let id = trace_id_for("dev-gen-root");
        let digest = Sha256::digest(b"dev-gen-root");
        assert_eq!(&id[..], &digest[..16]);
    }

    #[test]
    fn span_id_is_deterministic_and_prefixed() {
        let digest = Sha256::digest(b"auditspan/abc");
        assert_eq!(&span_id_for("abc")[..], &digest[..8]);
        assert_ne!(span_id_for("abc"), span_id_for("abd"));
    }

    #[test]
    fn traceparent_valid_and_invalid() {
        let (t, p) =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(hex(&t), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&p), "00f067aa0ba902b7");
        for bad in [
            "",
            "hmac-sha256:abcdef",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
        assert!(
            parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future")
                .is_some()
        );
    }

    #[test]
    fn names() {
        assert_eq!(
            span_name(Some("read"), Some("kv/"), Some("kv/data/x")),
            "read kv/"
        );
        assert_eq!(
            span_name(Some("update"), None, Some("sys/audit/test")),
            "update sys/"
        );
        assert_eq!(
            span_name(Some("update"), Some(""), Some("/auth/x")),
            "update auth/"
        );
        assert_eq!(span_name(Some("help"), None, None), "help");
    }

    #[test]
    fn span_bytes_cut_largest_first() {
        let mut attrs: Attributes = [
            ("small", AttrValue::Str("x".repeat(10))),
            ("big", AttrValue::Str("y".repeat(1000))),
            ("n", AttrValue::Int(1)),
        ]
        .into_iter()
        .collect();
        let cut = fit_span_bytes(&mut attrs, 500);
        assert!(cut >= 1);
        let total: usize = attrs.iter().map(|(k, v)| k.len() + v.byte_len()).sum();
        assert!(total <= 500);
        assert_eq!(attrs.value(0), AttrValue::Str("x".repeat(10)));
    }

    /// The exact sequence of cuts: ties go to the last largest value, at least half of a
    /// value goes, and numbers that cannot shrink are dropped.
    #[test]
    fn span_bytes_cut_sequence() {
        let mut attrs: Attributes = [
            ("a", AttrValue::Str("a".repeat(40))),
            (
                "b",
                AttrValue::StrArray(vec!["b".repeat(20), "c".repeat(20)]),
            ),
            ("i", AttrValue::IntArray(vec![1, 2, 3, 4, 5])),
            ("n", AttrValue::Int(1)),
            ("f", AttrValue::Float(2.0)),
        ]
        .into_iter()
        .collect();
        // Keys 5 bytes, values 40 + 40 + 40 + 8 + 8 = 136: total 141. The int array (last
        // of the three largest) goes first, then the string array (its single too-long
        // first element cut to nothing), then half of the string.
        assert_eq!(fit_span_bytes(&mut attrs, 60), 3);
        assert_eq!(
            attrs.to_vec(),
            vec![
                ("a".to_owned(), AttrValue::Str("a".repeat(20))),
                ("b".to_owned(), AttrValue::StrArray(vec![String::new()])),
                ("i".to_owned(), AttrValue::IntArray(vec![])),
                ("n".to_owned(), AttrValue::Int(1)),
                ("f".to_owned(), AttrValue::Float(2.0)),
            ]
        );
        // Now the string goes whole, then the numbers, last first.
        assert_eq!(fit_span_bytes(&mut attrs, 10), 3);
        assert_eq!(
            attrs.to_vec(),
            vec![
                ("a".to_owned(), AttrValue::Str(String::new())),
                ("b".to_owned(), AttrValue::StrArray(vec![String::new()])),
                ("i".to_owned(), AttrValue::IntArray(vec![])),
            ]
        );
    }
}

//! One audit line → one [`AuditEvent`], or the reason it was rejected.
//!
//! Implements DESIGN "What happens to each line": the configured prefix is stripped when
//! present, the JSON is walked once (no `Value` tree) and flattened into attributes by
//! [`flatten`](mod@flatten), while [`pick`] takes out the fields the correlator needs on
//! the way, whatever the limits cut from the attributes. This module then checks those
//! fields and builds the [`AuditEvent`].
//!
//! # Decisions
//! - The prefix is stripped only when the line starts with it, byte for byte; otherwise the
//!   line is parsed as is (never "skip to the first `{`": prefixes may contain braces).
//! - One leading UTF-8 BOM (after the prefix) is ignored: Vault never writes one, and
//!   accepting it loses nothing.
//! - Duplicate member names: the FIRST member wins, for the picked fields and the
//!   attributes alike (`{"type":"request","type":"response"}` is a request), the same rule
//!   as flatten collisions. serde_json's `Value` would keep the last.
//! - An empty or whitespace-only line is `not_json`.
//! - Checks run in this order: `not_json`, `bad_type`, the audit-test message (dropped
//!   before the id check: it has an id, but is never answered), `no_request_id`, `bad_time`.
//! - `time` is strict RFC 3339: `YYYY-MM-DDTHH:MM:SS`, 0–9 fractional digits, `Z` or
//!   `±HH:MM` (`T`/`Z` in either case). A leap second `:60` is read as `:59`.
//! - [`ParseError::detail`] names the defect and position, never the line's content.

pub mod flatten;
pub mod pick;
#[cfg(test)]
mod tests;

use self::flatten::flatten;
use self::pick::Pick;
use crate::attr::Attributes;

/// Whether the event is the request or the response half of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Request,
    Response,
}

/// A valid audit event: the fields the correlator needs plus every attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub kind: EventKind,
    /// `request.id`, never empty.
    pub id: String,
    /// `time`, as nanoseconds since the Unix epoch.
    pub time_unix_nano: i64,
    /// Top-level `error`, only when it is a non-empty string.
    pub error: Option<String>,
    /// `request.operation`.
    pub operation: Option<String>,
    /// `request.path`.
    pub path: Option<String>,
    /// `request.mount_point`.
    pub mount_point: Option<String>,
    /// `request.namespace.path` (absent for the root namespace).
    pub namespace_path: Option<String>,
    /// First string of `request.headers.traceparent`, unvalidated.
    pub traceparent: Option<String>,
    /// The whole event flattened, in document order, keys unique, limits applied.
    pub attributes: Attributes,
    /// What the limits cut from `attributes`.
    pub truncations: Truncations,
}

/// How many attributes each limit truncated or dropped while flattening one event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Truncations {
    /// Subtrees below `max_depth` kept as one JSON-string attribute.
    pub depth: u32,
    /// Attributes dropped past `max_attributes`.
    pub attributes: u32,
    /// Values cut to `max_value_bytes`.
    pub value_bytes: u32,
}

/// The result of parsing one valid line.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Event(Box<AuditEvent>),
    /// The socket device's test message (`request.path` = `sys/audit/test`): dropped and
    /// counted as `events_ignored_total{reason="audit_test"}`.
    AuditTest,
}

/// Why a line was rejected; the `reason` label of `events_invalid_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvalidReason {
    NotJson,
    BadType,
    NoRequestId,
    BadTime,
    TooLong,
}

impl InvalidReason {
    pub const ALL: [InvalidReason; 5] = [
        InvalidReason::NotJson,
        InvalidReason::BadType,
        InvalidReason::NoRequestId,
        InvalidReason::BadTime,
        InvalidReason::TooLong,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InvalidReason::NotJson => "not_json",
            InvalidReason::BadType => "bad_type",
            InvalidReason::NoRequestId => "no_request_id",
            InvalidReason::BadTime => "bad_time",
            InvalidReason::TooLong => "too_long",
        }
    }
}

/// A rejected line. `detail` describes the defect (e.g. serde_json's message with the
/// column) and never quotes the line's content.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {detail}", reason.as_str())]
pub struct ParseError {
    pub reason: InvalidReason,
    pub detail: String,
}

/// The `[parse]` limits that apply per event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    pub max_depth: usize,
    pub max_attributes: usize,
    pub max_value_bytes: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_depth: 32,
            max_attributes: 256,
            max_value_bytes: 4096,
        }
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The path of the socket device's test request.
const AUDIT_TEST_PATH: &str = "sys/audit/test";

/// Parses one framed line (without its line terminator).
pub fn parse_line(line: &[u8], prefix: &str, limits: &ParseLimits) -> Result<Parsed, ParseError> {
    let line = if prefix.is_empty() {
        line
    } else {
        line.strip_prefix(prefix.as_bytes()).unwrap_or(line)
    };
    let line = line.strip_prefix(BOM).unwrap_or(line);
    let text = std::str::from_utf8(line).map_err(|e| {
        invalid(
            InvalidReason::NotJson,
            format!("not UTF-8 at byte {}", e.valid_up_to()),
        )
    })?;
    let flat = flatten(text, limits).map_err(|e| invalid(InvalidReason::NotJson, e.detail))?;
    let p = flat.picked;

    let kind = match p.event_type.as_str() {
        Some("request") => EventKind::Request,
        Some("response") => EventKind::Response,
        Some(_) => {
            return Err(invalid(
                InvalidReason::BadType,
                "type is neither request nor response",
            ));
        }
        None => {
            return Err(invalid(
                InvalidReason::BadType,
                describe_absent("type", &p.event_type),
            ));
        }
    };
    if kind == EventKind::Request && p.path.as_str() == Some(AUDIT_TEST_PATH) {
        return Ok(Parsed::AuditTest);
    }
    let id = match p.request_id {
        Pick::Str(id) if !id.is_empty() => id.into_owned(),
        Pick::Str(_) => return Err(invalid(InvalidReason::NoRequestId, "request.id is empty")),
        other => {
            return Err(invalid(
                InvalidReason::NoRequestId,
                describe_absent("request.id", &other),
            ));
        }
    };
    let time_unix_nano = match p.time.as_str() {
        Some(t) => parse_rfc3339(t)
            .ok_or_else(|| invalid(InvalidReason::BadTime, "time is not an RFC 3339 timestamp"))?,
        None => {
            return Err(invalid(
                InvalidReason::BadTime,
                describe_absent("time", &p.time),
            ));
        }
    };
    let error = p.error.into_string().filter(|e| !e.is_empty());

    Ok(Parsed::Event(Box::new(AuditEvent {
        kind,
        id,
        time_unix_nano,
        error,
        operation: p.operation.into_string(),
        path: p.path.into_string(),
        mount_point: p.mount_point.into_string(),
        namespace_path: p.namespace_path.into_string(),
        traceparent: p.traceparent.into_string(),
        attributes: flat.attributes,
        truncations: flat.truncations,
    })))
}

fn invalid(reason: InvalidReason, detail: impl Into<String>) -> ParseError {
    ParseError {
        reason,
        detail: detail.into(),
    }
}

fn describe_absent(field: &str, pick: &Pick<'_>) -> String {
    match pick {
        Pick::Other(type_name) => format!("{field} is {} {type_name}", article(type_name)),
        _ => format!("{field} is missing"),
    }
}

fn article(type_name: &str) -> &'static str {
    if type_name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// Nanoseconds since the Unix epoch of a strict RFC 3339 timestamp; `None` if malformed or
/// outside the `i64` nanosecond range (years 1677–2262).
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |from: usize, len: usize| -> Option<i32> {
        b.get(from..from + len)?.iter().try_fold(0i32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i32::from(c - b'0'))
        })
    };
    let sep_ok = b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't')
        && b[13] == b':'
        && b[16] == b':';
    if !sep_ok {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let mut i = 19;
    let mut nanos = 0i32;
    if b[i] == b'.' {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = num(i + 1, digits)? * 10i32.pow(9 - digits as u32);
        i += 1 + digits;
    }
    let offset_seconds = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let secs = h * 3600 + m * 60;
            if *sign == b'-' { -secs } else { secs }
        }
        _ => return None,
    };
    if second > 60 {
        return None;
    }
    let dt = jiff::civil::DateTime::new(
        i16::try_from(year).ok()?,
        i8::try_from(month).ok()?,
        i8::try_from(day).ok()?,
        i8::try_from(hour).ok()?,
        i8::try_from(minute).ok()?,
        i8::try_from(second.min(59)).ok()?,
        nanos,
    )
    .ok()?;
    let offset = jiff::tz::Offset::from_seconds(offset_seconds).ok()?;
    let ts = offset.to_timestamp(dt).ok()?;
    i64::try_from(ts.as_nanosecond()).ok()
}

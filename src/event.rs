//! One audit line → one [`AuditEvent`], or the reason it was rejected.
//!
//! Implements DESIGN "What happens to each line": the configured prefix is stripped when
//! present, the JSON is walked once (no `Value` tree) and flattened by [`crate::flatten`]
//! while the fields the correlator needs are picked out on the way, whatever the limits
//! cut from the attributes.

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

// TEMP stub until the parser lands.
pub fn parse_line(line: &[u8], prefix: &str, _limits: &ParseLimits) -> Result<Parsed, ParseError> {
    let err = |reason, detail: &str| ParseError {
        reason,
        detail: detail.to_owned(),
    };
    let line = line.strip_prefix(prefix.as_bytes()).unwrap_or(line);
    let v: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| err(InvalidReason::NotJson, &e.to_string()))?;
    let kind = match v.get("type").and_then(|t| t.as_str()) {
        Some("request") => EventKind::Request,
        Some("response") => EventKind::Response,
        _ => return Err(err(InvalidReason::BadType, "type")),
    };
    let s = |p: &str| v.pointer(p).and_then(|x| x.as_str()).map(str::to_owned);
    if s("/request/path").as_deref() == Some("sys/audit/test") {
        return Ok(Parsed::AuditTest);
    }
    let id = s("/request/id")
        .filter(|i| !i.is_empty())
        .ok_or(err(InvalidReason::NoRequestId, "id"))?;
    let time: jiff::Timestamp = s("/time")
        .and_then(|t| t.parse().ok())
        .ok_or(err(InvalidReason::BadTime, "time"))?;
    Ok(Parsed::Event(Box::new(AuditEvent {
        kind,
        id,
        time_unix_nano: time.as_nanosecond() as i64,
        error: s("/error").filter(|e| !e.is_empty()),
        operation: s("/request/operation"),
        path: s("/request/path"),
        mount_point: s("/request/mount_point"),
        namespace_path: s("/request/namespace/path"),
        traceparent: s("/request/headers/traceparent/0"),
        attributes: vec![(
            "request.path".into(),
            crate::attr::AttrValue::Str(s("/request/path").unwrap_or_default()),
        )],
        truncations: Truncations::default(),
    })))
}

//! The Honeycomb sink: the Events API batch endpoint, `POST {endpoint}/1/batch/{dataset}`
//! (DESIGN "Per sink: Honeycomb"; `shared/specs/HONEYCOMB.md`; the body validates against
//! `shared/schemas/honeycomb-batch.schema.json`). Not libhoney-rust: see DESIGN
//! "Dependencies".
//!
//! # Configuration and defaults
//! - `endpoint`: the API host, default `https://api.honeycomb.io` (EU:
//!   `https://api.eu1.honeycomb.io`); `/1/batch/{dataset}` is appended to its path, the
//!   dataset percent-encoded.
//! - `dataset` (required), `api_key` or `api_key_env` (required): the key travels in
//!   `X-Honeycomb-Team`, as a sensitive header; it is never logged or printed, and is
//!   replaced by `<redacted>` in any backend text that quotes it.
//! - `compression`: `gzip` by default; `timeout`: 10 s per request; `headers` /
//!   `headers_env`, `ca_file` as for every HTTP sink ([`super::http`]).
//!
//! # Events
//! One event per span: `time` = the span's start (RFC 3339, nanoseconds), `data` =
//! `trace.trace_id`, `trace.span_id`, `trace.parent_id` (only on spans that joined a
//! caller's trace), `name`, `service.name`, `service.instance.id`, `host.name`,
//! `span.kind` (`server`), `duration_ms` (float), `error` (the message, only on error
//! spans), then the attributes: strings, numbers and booleans as they are, arrays as their
//! JSON text. An attribute named like one of the fields above is left out (Vault < 1.2
//! writes `"error": ""` on success).
//!
//! # Limits (HONEYCOMB.md)
//! - At most 2,000 fields per event: attributes past that are left out.
//! - Strings are cut to 65,535 bytes (Honeycomb's 64 KB per string field).
//! - An event of 1,000,000 bytes of JSON or more is rejected before sending (Honeycomb takes
//!   events under 1 MB) and dead-lettered.
//! - A request carries at most 5,000,000 bytes of uncompressed JSON (libhoney's batch
//!   limit; Honeycomb documents none): a larger sink batch goes as several requests, one
//!   after the other; the first whole-request failure stops the rest, which are retried.
//!
//! # Answers
//! - 2xx with one status per event, in order: events answered 2xx are delivered; 429 and
//!   5xx are retried; other statuses (400 "too many columns"...) are permanent and the
//!   event is dead-lettered with Honeycomb's error text.
//! - 2xx whose body is not such a list (empty, not JSON, another shape, or a list of
//!   another length: a proxy, or an endpoint that is not Honeycomb's) is *unreadable*: it
//!   does not say whether the events were stored. It is counted in
//!   `auditspan_sink_unreadable_answers_total`, logged, and its events are sent again,
//!   each at most [`MAX_UNREADABLE_ANSWERS`] times in all: an event answered unreadably
//!   that often (about a minute of retries with the default backoff) is dead-lettered,
//!   saying it may or may not have been stored. Retrying it forever would stall the sink
//!   in silence behind a backend that will never say; dropping it, or calling it
//!   delivered, could lose it unseen. Requests after an unreadable one are still sent.
//! - 400 for the whole request: the batch is rejected and the worker splits it to find the
//!   event at fault (for a request after the first of a split batch: its events are
//!   retried on their own, where the same answer rejects them).
//! - 413 (too large) for the whole request: handled like 400.
//! - 401 and 403: the API key was refused (or Honeycomb throttles the team): retried,
//!   forever by default, so that fixing the key lets the spans through; the log says so.
//! - Anything else (429, 5xx, 404 dataset not found, no connection, timeout): retried,
//!   honouring `Retry-After` when Honeycomb sends one.

use reqwest::{
    StatusCode,
    header::{CONTENT_ENCODING, CONTENT_TYPE},
};
use std::collections::HashMap;

use metrics::Counter;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use tracing::warn;

use super::json::{Cut, Hex, JsonText, Rfc3339Nanos};
use super::{ExportFailure, Exported, FailedSpans, FailureReason, Resource, Sink, SinkError, http};
use crate::{
    attr::AttrRef,
    config::{Compression, HoneycombConfig},
    span::{Span, Status},
    telemetry::metrics as m,
};

/// The API host when the config names no endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://api.honeycomb.io";
/// Per request, when the config names no timeout.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The header carrying the API key.
pub const API_KEY_HEADER: &str = "x-honeycomb-team";

/// Most fields in one event's `data`.
pub const MAX_FIELDS: usize = 2000;
/// Longest string value, in bytes.
pub const MAX_STRING_BYTES: usize = 65_535;
/// An event's JSON must be shorter than this.
pub const MAX_EVENT_BYTES: usize = 1_000_000;
/// Most bytes of uncompressed JSON in one request.
pub const MAX_REQUEST_BYTES: usize = 5_000_000;

/// How many unreadable 2xx answers (see "Answers") an event gets before it is
/// dead-lettered: with the default backoff (100 ms doubling, capped at 30 s) the tenth
/// comes about a minute after the first.
pub const MAX_UNREADABLE_ANSWERS: u32 = 10;

/// Fields this sink writes itself; attributes of these names are left out.
const OWN_FIELDS: [&str; 10] = [
    "trace.trace_id",
    "trace.span_id",
    "trace.parent_id",
    "name",
    "service.name",
    "service.instance.id",
    "host.name",
    "span.kind",
    "duration_ms",
    "error",
];

/// Sends spans to Honeycomb as events.
pub struct HoneycombSink {
    name: String,
    url: String,
    client: reqwest::Client,
    compression: Compression,
    resource: Resource,
    /// Only to scrub it from backend texts before they reach a log or the dead-letter
    /// file (a proxy may echo request headers in an error body). Never empty.
    api_key: String,
    /// One event's JSON, reused.
    event: Vec<u8>,
    /// Unreadable answers each span's event got so far, by span id. Only spans of the batch
    /// being delivered are here: an entry goes when its span gets a readable answer or is
    /// dead-lettered.
    unreadable: HashMap<[u8; 8], u32>,
    /// `auditspan_sink_unreadable_answers_total{sink}`.
    unreadable_answers: Counter,
}

/// One element of Honeycomb's answer to a batch.
#[derive(Debug, Deserialize)]
struct EventStatus {
    status: u16,
    #[serde(default)]
    error: Option<String>,
}

/// What became of one request's events.
enum Outcome {
    /// Per-event statuses, one per event sent.
    PerEvent(Vec<EventStatus>),
    /// The request as a whole failed.
    Whole(ExportFailure),
    /// 2xx without one readable status per event: what became of them is unknown. The
    /// message says what came instead.
    Unreadable(String),
}

/// The export's answer, assembled over its requests.
#[derive(Default)]
struct Tally {
    failed: Vec<usize>,
    rejected: Vec<(usize, String)>,
    /// Reason, message and `Retry-After` of the first failure that asks for a retry.
    retry: Option<(FailureReason, String, Option<std::time::Duration>)>,
}

impl HoneycombSink {
    /// The sink named `name`. Fails (naming the variable, header or file, never a value)
    /// when the API key, a header secret or the CA file cannot be read.
    pub fn new(
        name: String,
        config: &HoneycombConfig,
        resource: &Resource,
    ) -> Result<Self, SinkError> {
        let connection = &config.connection;
        let key_error = |reason: String| SinkError::Secret {
            setting: "api_key".to_owned(),
            reason,
        };
        let api_key = config.api_key.resolve().map_err(key_error)?;
        if api_key.is_empty() {
            return Err(key_error("the API key is empty".to_owned()));
        }
        let endpoint = connection.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT);
        let unreadable_answers = m::sink_unreadable_answers(&name);
        // Registered at zero, so that rate() and alerts see it before the first one.
        unreadable_answers.increment(0);
        Ok(HoneycombSink {
            unreadable: HashMap::new(),
            unreadable_answers,
            name,
            url: batch_url(endpoint, &config.dataset)?,
            client: http::client(
                connection,
                DEFAULT_TIMEOUT,
                &[(API_KEY_HEADER, api_key.clone())],
            )?,
            api_key,
            compression: connection.compression.unwrap_or(Compression::Gzip),
            resource: resource.clone(),
            event: Vec::with_capacity(4096),
        })
    }

    /// Appends one event to `self.event` (cleared first).
    fn encode_event(&mut self, span: &Span) {
        self.event.clear();
        let event = Event {
            span,
            resource: &self.resource,
        };
        // Writing to a Vec cannot fail and every value here serializes.
        serde_json::to_writer(&mut self.event, &event).ok();
    }

    /// Sends one request of `events` events (`body` without its closing bracket).
    async fn send(&mut self, mut body: Vec<u8>, events: usize) -> Outcome {
        body.push(b']');
        let (body, encoding) = http::compress(self.compression, body);
        let mut request = self
            .client
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(encoding) = encoding {
            request = request.header(CONTENT_ENCODING, encoding);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => return self.whole(http::transport_failure(&err, events)),
        };
        let status = response.status();
        let headers = response.headers().clone();
        let answer = match response.bytes().await {
            Ok(answer) => answer,
            Err(err) => return self.whole(http::transport_failure(&err, events)),
        };
        if !status.is_success() {
            return self.whole(match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ExportFailure::all(
                    FailureReason::Retryable,
                    format!(
                        "HTTP {status}: API key rejected (check api_key / api_key_env), or the \
                         team is throttled: {}",
                        http::quote_body(&answer)
                    ),
                    events,
                )
                .with_retry_after(http::retry_after(&headers)),
                StatusCode::PAYLOAD_TOO_LARGE => ExportFailure::batch_rejected(format!(
                    "HTTP {status}: {}",
                    http::quote_body(&answer)
                )),
                _ => http::status_failure(status, &headers, &answer, events),
            });
        }
        match serde_json::from_slice::<Vec<EventStatus>>(&answer) {
            Ok(mut statuses) if statuses.len() == events => {
                for status in &mut statuses {
                    if let Some(error) = status.error.take() {
                        status.error = Some(self.scrub(error));
                    }
                }
                Outcome::PerEvent(statuses)
            }
            Ok(statuses) => Outcome::Unreadable(format!(
                "HTTP {status} with {} results for {events} events",
                statuses.len()
            )),
            Err(err) => Outcome::Unreadable(self.scrub(format!(
                "HTTP {status} without a list of event results ({err}): {}",
                http::quote_body(&answer)
            ))),
        }
    }

    /// A whole-request failure, its message scrubbed.
    fn whole(&self, mut failure: ExportFailure) -> Outcome {
        failure.message = self.scrub(failure.message);
        Outcome::Whole(failure)
    }

    /// `text` with the API key replaced by `<redacted>`.
    fn scrub(&self, text: String) -> String {
        if text.contains(&self.api_key) {
            text.replace(&self.api_key, crate::config::REDACTED)
        } else {
            text
        }
    }

    /// An unreadable answer to the request that carried `sent`: counted and logged; each
    /// event is retried, or dead-lettered once it has had [`MAX_UNREADABLE_ANSWERS`].
    fn unreadable(&mut self, spans: &[Span], sent: &[usize], message: String, tally: &mut Tally) {
        self.unreadable_answers.increment(1);
        warn!(
            sink = %self.name,
            events = sent.len(),
            error = %message,
            "Honeycomb's answer does not say what became of each event; they are sent again, at most {MAX_UNREADABLE_ANSWERS} times each."
        );
        let mut retried = 0;
        for &i in sent {
            let count = self.unreadable.entry(spans[i].span_id).or_default();
            *count += 1;
            if *count >= MAX_UNREADABLE_ANSWERS {
                self.unreadable.remove(&spans[i].span_id);
                tally.rejected.push((
                    i,
                    format!(
                        "{MAX_UNREADABLE_ANSWERS} answers without a status for this event (the last: {message}); it may or may not have been stored"
                    ),
                ));
            } else {
                tally.failed.push(i);
                retried += 1;
            }
        }
        if retried > 0 {
            tally.retry.get_or_insert((
                FailureReason::Retryable,
                format!("{message}; sending them again"),
                None,
            ));
        }
    }
}

impl Sink for HoneycombSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn export(&mut self, spans: &[Span]) -> Result<Exported, ExportFailure> {
        let mut tally = Tally::default();
        let mut body = Vec::new();
        // Indices of the spans in `body`, in order.
        let mut in_body: Vec<usize> = Vec::new();
        let mut first_request = true;
        let mut next = 0;
        loop {
            // Fill one request.
            while let Some(span) = spans.get(next) {
                self.encode_event(span);
                if self.event.len() >= MAX_EVENT_BYTES {
                    tally.rejected.push((
                        next,
                        format!(
                            "the event is {} bytes of JSON; Honeycomb takes events under {MAX_EVENT_BYTES}",
                            self.event.len()
                        ),
                    ));
                    next += 1;
                    continue;
                }
                // `[` or `,` before each event, `]` after the last.
                if !in_body.is_empty() && body.len() + self.event.len() + 2 > MAX_REQUEST_BYTES {
                    break;
                }
                body.push(if in_body.is_empty() { b'[' } else { b',' });
                body.extend_from_slice(&self.event);
                in_body.push(next);
                next += 1;
            }
            if in_body.is_empty() {
                break;
            }
            let sent = std::mem::take(&mut in_body);
            let request = std::mem::take(&mut body);
            match self.send(request, sent.len()).await {
                Outcome::PerEvent(statuses) => {
                    for &i in &sent {
                        self.unreadable.remove(&spans[i].span_id);
                    }
                    tally.per_event(&sent, statuses);
                }
                Outcome::Unreadable(message) => self.unreadable(spans, &sent, message, &mut tally),
                Outcome::Whole(failure) if failure.is_whole_batch_invalid() && first_request => {
                    // Nothing was delivered yet: the worker splits the whole batch.
                    return Err(failure);
                }
                Outcome::Whole(failure) => {
                    // Stop here: this request's spans and every one not yet sent are
                    // retried (on their own, where a 400 rejects them as a batch).
                    tally.failed.extend(sent);
                    tally.failed.extend(next..spans.len());
                    let reason = if failure.is_whole_batch_invalid() {
                        FailureReason::Retryable
                    } else {
                        failure.reason
                    };
                    tally
                        .retry
                        .get_or_insert((reason, failure.message, failure.retry_after));
                    break;
                }
            }
            first_request = false;
        }
        tally.finish()
    }
}

impl Tally {
    fn per_event(&mut self, sent: &[usize], statuses: Vec<EventStatus>) {
        let mut retried = 0;
        let mut first_retry = None;
        for (&index, EventStatus { status, error }) in sent.iter().zip(statuses) {
            let error = error.unwrap_or_default();
            match status {
                200..=299 => {}
                400..=499 if status != 429 => self
                    .rejected
                    .push((index, format!("Honeycomb event status {status}: {error}"))),
                _ => {
                    self.failed.push(index);
                    retried += 1;
                    first_retry.get_or_insert((status, error));
                }
            }
        }
        if let Some((status, error)) = first_retry {
            self.retry.get_or_insert((
                FailureReason::Retryable,
                format!(
                    "{retried} of {} events answered with a retryable status (first: {status} {error})",
                    sent.len()
                ),
                None,
            ));
        }
    }

    fn finish(mut self) -> Result<Exported, ExportFailure> {
        if self.failed.is_empty() && self.rejected.is_empty() {
            return Ok(Exported::default());
        }
        self.failed.sort_unstable();
        let (reason, message, retry_after) = match self.retry {
            Some(retry) => retry,
            None => (
                FailureReason::Rejected,
                self.rejected
                    .first()
                    .map(|(_, why)| why.clone())
                    .unwrap_or_default(),
                None,
            ),
        };
        Err(ExportFailure {
            reason,
            message,
            failed: FailedSpans::Named {
                retry: self.failed,
                rejected: self.rejected,
            },
            retry_after,
        })
    }
}

/// `{endpoint}/1/batch/{dataset}`, the dataset percent-encoded as one path segment.
pub fn batch_url(endpoint: &str, dataset: &str) -> Result<String, SinkError> {
    let endpoint_error = |reason: String| SinkError::Endpoint {
        url: endpoint.to_owned(),
        reason,
    };
    let mut url = url::Url::parse(endpoint).map_err(|e| endpoint_error(e.to_string()))?;
    url.path_segments_mut()
        .map_err(|()| endpoint_error("cannot take a path".to_owned()))?
        .pop_if_empty()
        .extend(["1", "batch", dataset]);
    Ok(url.into())
}

/// One event of the batch.
struct Event<'a> {
    span: &'a Span,
    resource: &'a Resource,
}

impl Serialize for Event<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("time", &Rfc3339Nanos(self.span.start_unix_nano))?;
        map.serialize_entry("data", &Data(self))?;
        map.end()
    }
}

struct Data<'a>(&'a Event<'a>);

impl Serialize for Data<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Event { span, resource } = self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("trace.trace_id", &Hex(&span.trace_id))?;
        map.serialize_entry("trace.span_id", &Hex(&span.span_id))?;
        if let Some(parent) = &span.parent_span_id {
            map.serialize_entry("trace.parent_id", &Hex(parent))?;
        }
        map.serialize_entry("name", &Cut(&span.name, MAX_STRING_BYTES))?;
        for (key, value) in resource.attributes() {
            map.serialize_entry(key, &Cut(value, MAX_STRING_BYTES))?;
        }
        map.serialize_entry("span.kind", "server")?;
        map.serialize_entry("duration_ms", &(span.duration_nanos() as f64 / 1e6))?;
        if let Status::Error(message) = &span.status {
            map.serialize_entry("error", &Cut(message, MAX_STRING_BYTES))?;
        }
        let own = 8
            + usize::from(span.parent_span_id.is_some())
            + usize::from(matches!(span.status, Status::Error(_)));
        let attributes = span
            .attributes
            .iter()
            .filter(|(key, _)| !OWN_FIELDS.contains(key))
            .take(MAX_FIELDS - own);
        for (key, value) in attributes {
            match value {
                AttrRef::Str(text) => map.serialize_entry(key, &Cut(text, MAX_STRING_BYTES))?,
                AttrRef::Bool(b) => map.serialize_entry(key, &b)?,
                AttrRef::Int(n) => map.serialize_entry(key, &n)?,
                AttrRef::Float(x) => map.serialize_entry(key, &x)?,
                array => map.serialize_entry(
                    key,
                    &JsonText {
                        value: array,
                        max: MAX_STRING_BYTES,
                    },
                )?,
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::{
        attr::AttrValue,
        config::{Connection, Secret},
    };

    fn resource() -> Resource {
        Resource {
            service_name: "vault".into(),
            instance_id: "vault-0".into(),
            host_name: "host-a".into(),
        }
    }

    fn sink() -> HoneycombSink {
        HoneycombSink::new(
            "honeycomb".into(),
            &HoneycombConfig {
                dataset: "vault audit".into(),
                api_key: Secret::Value("hc-key".into()),
                connection: Connection::default(),
            },
            &resource(),
        )
        .unwrap()
    }

    fn span(status: Status, attributes: Vec<(&str, AttrValue)>) -> Span {
        Span {
            end_unix_nano: 1_741_708_800_001_502_000,
            ..Span::sample(status, attributes)
        }
    }

    fn encode(span: &Span) -> Value {
        let mut sink = sink();
        sink.encode_event(span);
        serde_json::from_slice(&sink.event).unwrap()
    }

    #[test]
    fn defaults_and_url() {
        let sink = sink();
        assert_eq!(sink.url, "https://api.honeycomb.io/1/batch/vault%20audit");
        assert_eq!(sink.compression, Compression::Gzip);
        assert_eq!(
            batch_url("http://127.0.0.1:8080/proxy/", "d").unwrap(),
            "http://127.0.0.1:8080/proxy/1/batch/d"
        );
        assert_eq!(
            batch_url("http://h", "a/b?c#d%").unwrap(),
            "http://h/1/batch/a%2Fb%3Fc%23d%25"
        );
    }

    #[test]
    fn missing_api_key_variable_is_named() {
        let err = HoneycombSink::new(
            "hc".into(),
            &HoneycombConfig {
                dataset: "d".into(),
                api_key: Secret::Env("AUDITSPAN_TEST_SURELY_UNSET_KEY".into()),
                connection: Connection::default(),
            },
            &resource(),
        )
        .err()
        .unwrap();
        assert!(matches!(err, SinkError::Secret { .. }), "{err:?}");
        let err = err.to_string();
        assert!(err.contains("AUDITSPAN_TEST_SURELY_UNSET_KEY"), "{err}");
    }

    #[test]
    fn the_key_is_scrubbed_from_backend_texts() {
        let sink = sink();
        assert_eq!(
            sink.scrub("unknown API key hc-key!".into()),
            "unknown API key <redacted>!"
        );
        let empty = HoneycombSink::new(
            "hc".into(),
            &HoneycombConfig {
                dataset: "d".into(),
                api_key: Secret::Value(String::new()),
                connection: Connection::default(),
            },
            &resource(),
        );
        assert!(empty.is_err());
    }

    #[test]
    fn event_fields() {
        let value = encode(&span(
            Status::Unset,
            vec![
                ("request.operation", AttrValue::Str("read".into())),
                ("auth.policy_results.allowed", AttrValue::Bool(true)),
                ("auth.token_ttl", AttrValue::Int(2_764_800)),
                ("response.data.ratio", AttrValue::Float(0.25)),
                (
                    "auth.policies",
                    AttrValue::StrArray(vec!["default".into(), "dev".into()]),
                ),
                ("error", AttrValue::Str(String::new())),
                ("name", AttrValue::Str("shadowed".into())),
            ],
        ));
        assert_eq!(
            value,
            json!({
                "time": "2025-03-11T16:00:00.000001999Z",
                "data": {
                    "trace.trace_id": "11111111111111111111111111111111",
                    "trace.span_id": "2222222222222222",
                    "name": "read kv/",
                    "service.name": "vault",
                    "service.instance.id": "vault-0",
                    "host.name": "host-a",
                    "span.kind": "server",
                    "duration_ms": 1.500001,
                    "request.operation": "read",
                    "auth.policy_results.allowed": true,
                    "auth.token_ttl": 2_764_800,
                    "response.data.ratio": 0.25,
                    "auth.policies": "[\"default\",\"dev\"]",
                }
            })
        );
    }

    #[test]
    fn error_and_parent() {
        let mut s = span(Status::Error("permission denied".into()), vec![]);
        s.parent_span_id = Some([0x33; 8]);
        let value = encode(&s);
        assert_eq!(value["data"]["error"], "permission denied");
        assert_eq!(value["data"]["trace.parent_id"], "3333333333333333");
    }

    /// Past 2,000 fields attributes are left out; long strings are cut to 64 KB.
    #[test]
    fn limits() {
        let many: Vec<(String, AttrValue)> = (0..2100)
            .map(|i| (format!("a{i}"), AttrValue::Int(i)))
            .collect();
        let mut s = span(Status::Unset, vec![]);
        s.attributes = many.into_iter().collect();
        s.attributes
            .push_value("long", &AttrValue::Str("x".repeat(70_000)))
            .unwrap();
        let value = encode(&s);
        let data = value["data"].as_object().unwrap();
        assert_eq!(data.len(), MAX_FIELDS);
        assert!(data.get("a1991").is_some() && data.get("a1992").is_none());

        let mut s = span(Status::Error("e".repeat(70_000)), vec![]);
        s.attributes
            .push_value("long", &AttrValue::Str("é".repeat(40_000)))
            .unwrap();
        let value = encode(&s);
        assert_eq!(value["data"]["error"].as_str().unwrap().len(), 65_535);
        assert_eq!(value["data"]["long"].as_str().unwrap().len(), 65_534);
    }

    /// Per-event statuses: 2xx delivered, 429/5xx retried, other 4xx rejected with the text.
    #[test]
    fn per_event_statuses() {
        let statuses: Vec<EventStatus> = serde_json::from_str(
            r#"[{"status":202},{"status":400,"error":"too many columns"},{"status":429},
                {"status":500,"error":"oops"},{"status":200},{"status":413,"error":"big"}]"#,
        )
        .unwrap();
        let mut tally = Tally::default();
        tally.per_event(&[10, 11, 12, 13, 14, 15], statuses);
        let failure = tally.finish().unwrap_err();
        assert_eq!(
            failure.failed,
            FailedSpans::Named {
                retry: vec![12, 13],
                rejected: vec![
                    (
                        11,
                        "Honeycomb event status 400: too many columns".to_owned()
                    ),
                    (15, "Honeycomb event status 413: big".to_owned())
                ]
            }
        );
        assert_eq!(failure.reason, FailureReason::Retryable);

        let mut tally = Tally::default();
        tally.per_event(
            &[0],
            serde_json::from_str(r#"[{"status":400,"error":"x"}]"#).unwrap(),
        );
        let failure = tally.finish().unwrap_err();
        assert_eq!(failure.reason, FailureReason::Rejected);
        assert!(failure.retry().is_empty());

        let mut tally = Tally::default();
        tally.per_event(
            &[0, 1],
            serde_json::from_str(r#"[{"status":202},{"status":201}]"#).unwrap(),
        );
        assert!(tally.finish().is_ok());
    }
}

//! The pairing state machine: requests and responses in, spans out (DESIGN "Span
//! contract"). Time comes in as arguments, so tests and `import` are deterministic.
//!
//! Invariants:
//! - An id is waiting at most once: a second request (or response) for a waiting id is a
//!   duplicate and dropped, and so is any event for an id paired within `pair_timeout`
//!   (remembered in memory only: a repeat that straddles a restart is not recognised).
//! - A waiting entry expires when its input's newest event time passes the entry's time +
//!   `pair_timeout`, or, on a live input, when `pair_timeout` has passed on the wall clock
//!   since it arrived. The event clock is per stream (each connection, each imported
//!   input), finer than DESIGN's per input: a device with a skewed clock, an old file, or
//!   a connection that is read faster than another never expires another's entries.
//! - Persistence is incremental: [`Pairing::persist`] hands out the entries that arrived
//!   since its last call and are still waiting, and the persisted entries answered or
//!   expired since. A pair that completes between two calls never reaches the disk.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap, HashSet, VecDeque},
    time::{Duration, Instant},
};

use crate::{
    attr::Attributes,
    event::{AuditEvent, EventKind},
    span::{self, Outcome, Span, Status},
};

/// Index of an input in the order the correlator was told about them.
pub type InputId = usize;

/// One ordered stream of events with its own event clock: a connection, or a file.
pub type StreamId = u64;

/// The stream that restored entries of `input` belong to; its clock never advances, so
/// they expire on the wall clock (or at the end of an import).
fn restored_stream(input: InputId) -> StreamId {
    u64::MAX - input as u64
}

/// Where an event came from: its input (for names and metrics) and the stream whose event
/// clock expires its entry. Each connection is its own stream, so one audit device that
/// runs ahead in time (or a connection read faster than another) never expires the entries
/// of another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    pub input: InputId,
    pub stream: StreamId,
}

impl From<InputId> for Source {
    /// One stream per input (files, tests).
    fn from(input: InputId) -> Source {
        Source {
            input,
            stream: input as StreamId,
        }
    }
}

/// A stream's event clock and the event-time deadlines of its entries.
struct Stream {
    clock: i64,
    deadlines: BinaryHeap<Reverse<(i64, u64, IdKey)>>,
    /// Entries of this stream still waiting.
    entries: usize,
    /// The connection ended; the stream goes once its last entry does.
    closed: bool,
}

impl Stream {
    fn new() -> Stream {
        Stream {
            clock: i64::MIN,
            deadlines: BinaryHeap::new(),
            entries: 0,
            closed: false,
        }
    }
}

/// How events reach the correlator, which decides whether the wall clock expires entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// As Vault writes them (the daemon's inputs): an entry also expires once
    /// `pair_timeout` has passed on the wall clock since it arrived, so an idle stream
    /// still flushes.
    Live,
    /// Captured logs read as fast as possible (`import`): only event time counts, and what
    /// still waits at the end expires then.
    Replay,
}

/// Pairing settings, from `[correlate]` and `[parse]`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub pair_timeout: Duration,
    pub join_traceparent: bool,
    pub max_attributes: usize,
    pub max_span_bytes: usize,
}

/// The status message is Vault's `error` string, cut to this (the full text is also the
/// `error` attribute, under `parse.max_value_bytes`).
const MAX_STATUS_MESSAGE_BYTES: usize = 8 << 10;

/// Wall clock now, nanoseconds since the epoch.
fn now_unix_nano() -> i64 {
    i64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(i64::MAX)
}

/// The key of an id in the maps: the UUID's bytes, or 16 bytes of SHA-256 for other ids.
pub type IdKey = [u8; 16];

struct Waiting {
    event: AuditEvent,
    seq: u64,
    input: InputId,
    stream: StreamId,
    /// Wall clock at arrival, nanoseconds since the epoch (stored with the entry, so that
    /// its wall-clock expiry continues across a restart).
    arrived_unix_nano: i64,
    /// Whether a commit has stored it (its removal must then be committed too).
    persisted: bool,
}

/// What happened to one event.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Stored until its partner arrives or it expires.
    Waiting,
    /// Completed a pair.
    Span(Box<Span>),
    /// A repeat of an id waiting or paired within `pair_timeout`.
    Duplicate,
}

/// Attribute truncations made while assembling spans (per-event ones travel with events).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SpanTruncations {
    pub attributes: u64,
    pub span_bytes: u64,
}

/// The pairing state machine. Time comes in as arguments so that tests and `import` are
/// deterministic.
pub struct Pairing {
    settings: Settings,
    timeout_nanos: i64,
    waiting: HashMap<IdKey, Waiting>,
    /// Ids paired recently, with the input event time after which they are forgotten.
    paired: HashMap<IdKey, i64>,
    paired_order: VecDeque<(i64, StreamId, IdKey)>,
    streams: HashMap<StreamId, Stream>,
    /// Wall-clock deadlines in arrival order (live inputs only).
    arrivals: VecDeque<(Instant, u64, IdKey)>,
    next_seq: u64,
    truncations: SpanTruncations,
    /// Entries inserted since the last [`Pairing::persist`] (stale ones are skipped there).
    added: Vec<(IdKey, u64)>,
    /// Persisted entries answered or expired since the last [`Pairing::persist`].
    unpersisted: Vec<IdKey>,
}

impl Pairing {
    pub fn new(settings: Settings) -> Self {
        let timeout_nanos = i64::try_from(settings.pair_timeout.as_nanos()).unwrap_or(i64::MAX);
        Pairing {
            settings,
            timeout_nanos,
            waiting: HashMap::new(),
            paired: HashMap::new(),
            paired_order: VecDeque::new(),
            streams: HashMap::new(),
            arrivals: VecDeque::new(),
            next_seq: 0,
            truncations: SpanTruncations::default(),
            added: Vec::new(),
            unpersisted: Vec::new(),
        }
    }

    /// Entries waiting for their partner.
    pub fn pending(&self) -> usize {
        self.waiting.len()
    }

    /// Truncations made since the last call.
    pub fn take_truncations(&mut self) -> SpanTruncations {
        std::mem::take(&mut self.truncations)
    }

    /// The stream ended (its connection closed): it is forgotten once its entries are.
    pub fn close_stream(&mut self, stream: StreamId) {
        if let Some(s) = self.streams.get_mut(&stream) {
            s.closed = true;
            if s.entries == 0 {
                self.streams.remove(&stream);
            }
        }
    }

    /// Takes one event; `arrived` is `Some` for live inputs, whose entries also expire on
    /// the wall clock.
    pub fn ingest(
        &mut self,
        source: impl Into<Source>,
        event: AuditEvent,
        arrived: Option<Instant>,
    ) -> Step {
        let source = source.into();
        let key = span::trace_id_for(&event.id);
        let time = event.time_unix_nano;
        let stream = self
            .streams
            .entry(source.stream)
            .or_insert_with(Stream::new);
        if time > stream.clock {
            stream.clock = time;
        }
        if self.paired.contains_key(&key) {
            return Step::Duplicate;
        }
        match self.waiting.get(&key) {
            Some(w) if w.event.kind == event.kind => Step::Duplicate,
            Some(_) => {
                let partner = self.remove(&key).map(|w| w.event);
                let (request, response) = match (event.kind, partner) {
                    (EventKind::Request, Some(response)) => (event, response),
                    (EventKind::Response, Some(request)) => (request, event),
                    (_, None) => unreachable!("entry checked above"),
                };
                self.remember_paired(source.stream, key, time.max(request.time_unix_nano));
                Step::Span(Box::new(self.build(Some(request), Some(response))))
            }
            None => {
                self.insert(source, key, event, arrived, now_unix_nano(), false);
                Step::Waiting
            }
        }
    }

    fn insert(
        &mut self,
        source: Source,
        key: IdKey,
        event: AuditEvent,
        arrived: Option<Instant>,
        arrived_unix_nano: i64,
        persisted: bool,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let deadline = event.time_unix_nano.saturating_add(self.timeout_nanos);
        let stream = self
            .streams
            .entry(source.stream)
            .or_insert_with(Stream::new);
        stream.deadlines.push(Reverse((deadline, seq, key)));
        stream.entries += 1;
        if let Some(arrived) = arrived {
            let deadline = arrived + self.settings.pair_timeout;
            // Live arrivals come in order; restored ones may not, and must not hide behind a
            // later deadline (at the end when they are in order, so this stays cheap).
            let at = self.arrivals.partition_point(|(d, _, _)| *d <= deadline);
            self.arrivals.insert(at, (deadline, seq, key));
        }
        if !persisted {
            self.added.push((key, seq));
        }
        let waiting = Waiting {
            event,
            seq,
            input: source.input,
            stream: source.stream,
            arrived_unix_nano,
            persisted,
        };
        self.waiting.insert(key, waiting);
    }

    fn remove(&mut self, key: &IdKey) -> Option<Waiting> {
        let w = self.waiting.remove(key)?;
        if w.persisted {
            self.unpersisted.push(*key);
        }
        if let Some(stream) = self.streams.get_mut(&w.stream) {
            stream.entries -= 1;
            if stream.closed && stream.entries == 0 {
                self.streams.remove(&w.stream);
            }
        }
        Some(w)
    }

    /// Puts back an entry an earlier run persisted. A [`Feed::Live`] feed also expires it on the
    /// wall clock, counting from when it first arrived: one that is overdue expires at the
    /// next [`Pairing::expire`].
    pub fn restore(
        &mut self,
        input: InputId,
        event: AuditEvent,
        arrived_unix_nano: i64,
        feed: Feed,
    ) {
        let key = span::trace_id_for(&event.id);
        if self.waiting.contains_key(&key) {
            return;
        }
        let arrived = (feed == Feed::Live).then(|| {
            let age = u64::try_from(now_unix_nano().saturating_sub(arrived_unix_nano)).unwrap_or(0);
            let now = Instant::now();
            now.checked_sub(Duration::from_nanos(age)).unwrap_or(now)
        });
        let source = Source {
            input,
            stream: restored_stream(input),
        };
        self.insert(source, key, event, arrived, arrived_unix_nano, true);
    }

    /// Streams tracked (connections open, or closed with entries still waiting).
    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    /// Hands each entry inserted since the last call and still unpersisted to `put` (key,
    /// input, arrival, event) and marks it persisted; returns the keys of persisted entries
    /// that left since the last call. A commit stores both, atomically.
    pub fn persist(
        &mut self,
        mut put: impl FnMut(&IdKey, InputId, i64, &AuditEvent),
    ) -> Vec<IdKey> {
        for (key, seq) in std::mem::take(&mut self.added) {
            if let Some(w) = self.waiting.get_mut(&key)
                && w.seq == seq
                && !w.persisted
            {
                w.persisted = true;
                put(&key, w.input, w.arrived_unix_nano, &w.event);
            }
        }
        std::mem::take(&mut self.unpersisted)
    }

    fn remember_paired(&mut self, stream: StreamId, key: IdKey, time: i64) {
        let forget_after = time.saturating_add(self.timeout_nanos);
        self.paired.insert(key, forget_after);
        self.paired_order.push_back((forget_after, stream, key));
    }

    /// Expires what the event clocks (and, given `now`, the wall clock) say is overdue,
    /// appending the spans to `out` in expiry order.
    pub fn expire(&mut self, now: Option<Instant>, out: &mut Vec<Span>) {
        let mut overdue = Vec::new();
        for stream in self.streams.values_mut() {
            while let Some(&Reverse((deadline, seq, key))) = stream.deadlines.peek() {
                if deadline >= stream.clock {
                    break;
                }
                stream.deadlines.pop();
                overdue.push((deadline, seq, key));
            }
        }
        // Streams are visited in no particular order; expire oldest first.
        overdue.sort_unstable();
        for (_, seq, key) in overdue {
            self.expire_entry(seq, key, out);
        }
        if let Some(now) = now {
            while let Some(&(deadline, seq, key)) = self.arrivals.front() {
                if deadline > now {
                    break;
                }
                self.arrivals.pop_front();
                self.expire_entry(seq, key, out);
            }
        }
        while let Some(&(forget_after, stream, key)) = self.paired_order.front() {
            // A stream that is gone forgets its pairs: nothing can repeat on it any more.
            if self
                .streams
                .get(&stream)
                .is_some_and(|s| forget_after >= s.clock)
            {
                break;
            }
            self.paired_order.pop_front();
            if self.paired.get(&key) == Some(&forget_after) {
                self.paired.remove(&key);
            }
        }
    }

    /// Expires every waiting entry (end of an import), oldest first.
    pub fn expire_all(&mut self, out: &mut Vec<Span>) {
        let mut entries: Vec<(i64, u64, IdKey)> = self
            .waiting
            .iter()
            .map(|(k, w)| (w.event.time_unix_nano, w.seq, *k))
            .collect();
        entries.sort_unstable();
        for (_, seq, key) in entries {
            self.expire_entry(seq, key, out);
        }
        self.streams.values_mut().for_each(|s| s.deadlines.clear());
        self.arrivals.clear();
    }

    fn expire_entry(&mut self, seq: u64, key: IdKey, out: &mut Vec<Span>) {
        // Heaps and queues hold stale keys of entries paired since; the seq tells.
        if self.waiting.get(&key).is_none_or(|w| w.seq != seq) {
            return;
        }
        let Some(w) = self.remove(&key) else {
            return;
        };
        let span = match w.event.kind {
            EventKind::Request => self.build(Some(w.event), None),
            EventKind::Response => self.build(None, Some(w.event)),
        };
        out.push(span);
    }

    /// Assembles the span. It takes the response's attributes (the request's, for
    /// `response_missing`) as they are and copies in only the other event's missing ones.
    fn build(&mut self, mut request: Option<AuditEvent>, mut response: Option<AuditEvent>) -> Span {
        let outcome = match (&request, &response) {
            (Some(_), Some(_)) => Outcome::Paired,
            (Some(_), None) => Outcome::ResponseMissing,
            (None, Some(_)) => Outcome::RequestMissing,
            (None, None) => unreachable!("a span needs at least one event"),
        };
        let (first, second) = match (&mut response, &mut request) {
            (Some(r), q) => (r, q.as_mut()),
            (None, Some(q)) => (q, None),
            (None, None) => unreachable!("a span needs at least one event"),
        };
        let max_attributes = self.settings.max_attributes;
        let mut attributes = std::mem::take(&mut first.attributes);
        if let Some(second) = second {
            let left_out = merge_attributes(&mut attributes, &second.attributes, max_attributes);
            self.truncations.attributes += left_out as u64;
        }
        if attributes.len() > max_attributes {
            self.truncations.attributes += (attributes.len() - max_attributes) as u64;
            attributes.truncate(max_attributes);
        }
        let (request, response) = (request.as_ref(), response.as_ref());
        let first = response
            .or(request)
            .unwrap_or_else(|| unreachable!("checked above"));
        let id = first.id.as_str();
        let pick = |f: fn(&AuditEvent) -> Option<&str>| -> Option<&str> {
            response.and_then(f).or_else(|| request.and_then(f))
        };
        let operation = pick(|e| e.operation.as_deref());
        let mount_point = pick(|e| e.mount_point.as_deref());
        let path = pick(|e| e.path.as_deref());
        let error = pick(|e| e.error.as_deref());
        let traceparent = request
            .and_then(|e| e.traceparent.as_deref())
            .or_else(|| response.and_then(|e| e.traceparent.as_deref()));

        let mut trace_id = span::trace_id_for(id);
        let mut parent_span_id = None;
        if let Some((t, p)) = traceparent
            .filter(|_| self.settings.join_traceparent)
            .and_then(span::parse_traceparent)
        {
            trace_id = t;
            parent_span_id = Some(p);
        }

        let (start, mut end) = match (request, response) {
            (Some(q), Some(r)) => (q.time_unix_nano, r.time_unix_nano),
            _ => (first.time_unix_nano, first.time_unix_nano),
        };
        let clock_skew = end < start;
        if clock_skew {
            end = start;
        }

        self.truncations.span_bytes += u64::from(span::fit_span_bytes(
            &mut attributes,
            self.settings.max_span_bytes,
        ));
        let ours = [
            attributes.push_str("vault.request.id", id),
            attributes.push_str("auditspan.outcome", outcome.as_str()),
            if clock_skew {
                attributes.push_bool("auditspan.clock_skew", true)
            } else {
                Ok(())
            },
        ];
        // Only a list at the text cap refuses these (see `attr`); count them as dropped.
        self.truncations.attributes += ours.iter().filter(|r| r.is_err()).count() as u64;

        Span {
            trace_id,
            span_id: span::span_id_for(id),
            parent_span_id,
            name: span::span_name(operation, mount_point, path),
            start_unix_nano: start,
            end_unix_nano: end,
            status: error.map_or(Status::Unset, |e| {
                Status::Error(e[..e.floor_char_boundary(MAX_STATUS_MESSAGE_BYTES)].to_owned())
            }),
            outcome,
            attributes,
        }
    }
}

/// How far ahead of the last match [`merge_attributes`] looks for the next key before it
/// falls back to a hash set.
const MERGE_WINDOW: usize = 8;

/// Appends the attributes of `secondary` whose keys `attributes` lacks, in order, while
/// `attributes` holds fewer than `max`; returns how many it left out for that (or for the
/// text cap). Only what is appended is copied.
fn merge_attributes(attributes: &mut Attributes, secondary: &Attributes, max: usize) -> usize {
    let missing: Vec<usize> = {
        // Vault writes both events of a pair in the same key order, and the response holds
        // (nearly) every key of the request: walking `attributes` in step finds most keys
        // with one comparison. A key not found just ahead is looked up in a hash set of all
        // keys, built at most once, so the answer is exact whatever the order.
        let mut next = 0;
        let mut all: Option<HashSet<&str, foldhash::fast::RandomState>> = None;
        let mut missing = Vec::new();
        for (i, key) in secondary.keys().enumerate() {
            let ahead = next..attributes.len().min(next + MERGE_WINDOW);
            if let Some(at) = ahead.into_iter().find(|&j| attributes.key(j) == key) {
                next = at + 1;
            } else if !all
                .get_or_insert_with(|| attributes.keys().collect())
                .contains(key)
            {
                missing.push(i);
            }
        }
        missing
    };
    let room = max.saturating_sub(attributes.len()).min(missing.len());
    let (copy, beyond) = missing.split_at(room);
    let text: usize = copy
        .iter()
        .map(|&i| secondary.key(i).len() + secondary.value(i).byte_len())
        .sum();
    attributes.reserve(copy.len(), text);
    let refused = copy
        .iter()
        .filter(|&&i| {
            attributes
                .push(secondary.key(i), secondary.value(i))
                .is_err()
        })
        .count();
    beyond.len() + refused
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::AttrValue;
    use crate::event::Truncations;

    const MS: i64 = 1_000_000;

    fn settings() -> Settings {
        Settings {
            pair_timeout: Duration::from_secs(10),
            join_traceparent: true,
            max_attributes: 256,
            max_span_bytes: 256 * 1024,
        }
    }

    fn event(kind: EventKind, id: &str, time_ms: i64) -> AuditEvent {
        let side = if kind == EventKind::Request {
            "request"
        } else {
            "response"
        };
        AuditEvent {
            kind,
            id: id.to_owned(),
            time_unix_nano: time_ms * MS,
            error: None,
            operation: Some("read".into()),
            path: Some("kv/data/x".into()),
            mount_point: Some("kv/".into()),
            namespace_path: None,
            traceparent: None,
            attributes: [
                ("type".to_owned(), AttrValue::Str(side.into())),
                (format!("{side}.only"), AttrValue::Bool(true)),
            ]
            .into_iter()
            .collect(),
            truncations: Truncations::default(),
        }
    }

    fn req(id: &str, t: i64) -> AuditEvent {
        event(EventKind::Request, id, t)
    }

    fn resp(id: &str, t: i64) -> AuditEvent {
        event(EventKind::Response, id, t)
    }

    fn span(step: Step) -> Span {
        match step {
            Step::Span(span) => *span,
            other => panic!("expected a span, got {other:?}"),
        }
    }

    fn attr(span: &Span, key: &str) -> Option<AttrValue> {
        span.attributes.get(key).map(|v| v.to_value())
    }

    fn persisted(p: &mut Pairing) -> (Vec<String>, Vec<IdKey>) {
        let mut put = Vec::new();
        let removed = p.persist(|_, _, _, e| put.push(e.id.clone()));
        (put, removed)
    }

    #[test]
    fn persistence_is_incremental_and_pairs_within_a_window_never_persist() {
        let mut p = Pairing::new(settings());
        p.ingest(0, req("quick", 1_000), None);
        span(p.ingest(0, resp("quick", 1_001), None));
        p.ingest(0, req("slow", 1_000), None);
        assert_eq!(persisted(&mut p), (vec!["slow".to_owned()], vec![]));
        assert_eq!(persisted(&mut p), (vec![], vec![]), "nothing new");
        span(p.ingest(0, resp("slow", 1_500), None));
        assert_eq!(
            persisted(&mut p),
            (vec![], vec![span::trace_id_for("slow")])
        );
    }

    #[test]
    fn restored_entries_pair_and_expire() {
        let mut p = Pairing::new(settings());
        p.restore(0, req("before-restart", 1_000), now_unix_nano(), Feed::Live);
        assert_eq!(p.pending(), 1);
        let s = span(p.ingest(0, resp("before-restart", 1_020), None));
        assert_eq!(s.outcome, Outcome::Paired);
        assert_eq!(s.duration_nanos(), 20 * MS);
        assert_eq!(
            persisted(&mut p).1,
            vec![span::trace_id_for("before-restart")]
        );

        // Arrived long ago on the wall clock: overdue at once after the restart.
        let old = now_unix_nano() - 60_000 * MS;
        p.restore(0, req("expired-while-down", 1_000), old, Feed::Live);
        let mut out = Vec::new();
        p.expire(Some(Instant::now()), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].outcome, Outcome::ResponseMissing);
    }

    #[test]
    fn pairs_in_either_order() {
        let mut p = Pairing::new(settings());
        assert_eq!(p.ingest(0, req("a", 1000), None), Step::Waiting);
        let s = span(p.ingest(0, resp("a", 1012), None));
        assert_eq!(s.outcome, Outcome::Paired);
        assert_eq!(s.duration_nanos(), 12 * MS);
        assert_eq!(s.name, "read kv/");
        // Response attributes first, then what only the request has, then ours.
        let keys: Vec<&str> = s.attributes.keys().collect();
        assert_eq!(
            keys,
            [
                "type",
                "response.only",
                "request.only",
                "vault.request.id",
                "auditspan.outcome"
            ]
        );
        assert_eq!(attr(&s, "type"), Some(AttrValue::Str("response".into())));

        assert_eq!(p.ingest(0, resp("b", 2010), None), Step::Waiting);
        let s = span(p.ingest(0, req("b", 2000), None));
        assert_eq!((s.start_unix_nano, s.end_unix_nano), (2000 * MS, 2010 * MS));
        assert_eq!(p.pending(), 0);
    }

    #[test]
    fn repeats_are_duplicates_while_waiting_and_after_pairing() {
        let mut p = Pairing::new(settings());
        p.ingest(0, req("a", 1000), None);
        assert_eq!(p.ingest(0, req("a", 1001), None), Step::Duplicate);
        span(p.ingest(0, resp("a", 1002), None));
        assert_eq!(p.ingest(0, resp("a", 1003), None), Step::Duplicate);
        assert_eq!(p.ingest(0, req("a", 1004), None), Step::Duplicate);
        // Forgotten once the event clock passes the pair time + pair_timeout.
        p.ingest(0, req("later", 12_000), None);
        let mut out = Vec::new();
        p.expire(None, &mut out);
        assert_eq!(p.ingest(0, req("a", 12_001), None), Step::Waiting);
    }

    #[test]
    fn event_clock_expires_per_input() {
        let mut p = Pairing::new(settings());
        p.ingest(0, req("old", 1_000), None);
        p.ingest(1, resp("orphan", 1_000), None);
        let mut out = Vec::new();
        // Input 1 moves far ahead; input 0's entry must not expire because of it.
        p.ingest(1, req("x", 50_000), None);
        p.expire(None, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].outcome, Outcome::RequestMissing);
        assert_eq!(out[0].start_unix_nano, out[0].end_unix_nano);
        // Exactly at the deadline nothing expires; past it, it does.
        p.ingest(0, req("y", 11_000), None);
        p.expire(None, &mut out);
        assert_eq!(out.len(), 1);
        p.ingest(0, req("z", 11_001), None);
        p.expire(None, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].outcome, Outcome::ResponseMissing);
        assert_eq!(out[1].duration_nanos(), 0);
        assert_eq!(
            attr(&out[1], "auditspan.outcome"),
            Some(AttrValue::Str("response_missing".into()))
        );
    }

    #[test]
    fn a_stream_running_ahead_does_not_expire_another_streams_entries() {
        let mut p = Pairing::new(settings());
        let a = Source {
            input: 0,
            stream: 10,
        };
        let b = Source {
            input: 0,
            stream: 11,
        };
        p.ingest(a, req("slow-stream", 1_000), None);
        p.ingest(b, req("x", 50_000), None);
        let mut out = Vec::new();
        p.expire(None, &mut out);
        assert!(
            out.is_empty(),
            "stream b's clock does not expire stream a's entry"
        );
        // Its response on the fast stream still pairs.
        let s = span(p.ingest(b, resp("slow-stream", 1_005), None));
        assert_eq!(s.outcome, Outcome::Paired);
        // A closed stream is dropped once its entries are gone.
        p.close_stream(a.stream);
        assert_eq!(p.streams(), 1);
        p.ingest(a, req("late", 60_000), None);
        p.close_stream(a.stream);
        assert_eq!(p.streams(), 2, "kept while an entry waits");
        span(p.ingest(b, resp("late", 60_001), None));
        assert_eq!(p.streams(), 1);
    }

    #[test]
    fn wall_clock_expires_idle_live_entries() {
        let mut p = Pairing::new(settings());
        let t0 = Instant::now();
        p.ingest(0, req("idle", 1_000), Some(t0));
        let mut out = Vec::new();
        p.expire(Some(t0 + Duration::from_secs(9)), &mut out);
        assert!(out.is_empty());
        p.expire(Some(t0 + Duration::from_secs(10)), &mut out);
        assert_eq!(out.len(), 1);
        // A stale queue entry of a since-paired id does nothing.
        p.ingest(0, req("paired", 1_000), Some(t0));
        span(p.ingest(0, resp("paired", 1_001), Some(t0)));
        p.expire(Some(t0 + Duration::from_secs(60)), &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn expire_all_is_ordered_by_time() {
        let mut p = Pairing::new(settings());
        p.ingest(0, req("c", 3_000), None);
        p.ingest(0, req("a", 1_000), None);
        p.ingest(0, resp("b", 2_000), None);
        let mut out = Vec::new();
        p.expire_all(&mut out);
        let ids: Vec<_> = out.iter().map(|s| attr(s, "vault.request.id")).collect();
        assert_eq!(ids, ["a", "b", "c"].map(|i| Some(AttrValue::Str(i.into()))));
        assert_eq!(p.pending(), 0);
    }

    #[test]
    fn clock_skew_gives_zero_duration() {
        let mut p = Pairing::new(settings());
        p.ingest(0, req("a", 1_000), None);
        let s = span(p.ingest(0, resp("a", 990), None));
        assert_eq!(s.duration_nanos(), 0);
        assert_eq!(
            attr(&s, "auditspan.clock_skew"),
            Some(AttrValue::Bool(true))
        );
    }

    #[test]
    fn errors_and_traceparent() {
        let mut p = Pairing::new(settings());
        let mut q = req("5f9a2c3e-0000-0000-0000-000000000001", 1_000);
        q.error = Some("permission denied".into());
        q.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
        let mut r = resp("5f9a2c3e-0000-0000-0000-000000000001", 1_001);
        r.error = Some("1 error occurred:\n\t* permission denied\n\n".into());
        p.ingest(0, q, None);
        let s = span(p.ingest(0, r, None));
        assert_eq!(
            s.status,
            Status::Error("1 error occurred:\n\t* permission denied\n\n".into())
        );
        assert_eq!(span::hex(&s.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            s.parent_span_id.map(|p| span::hex(&p)).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert_eq!(
            s.span_id,
            span::span_id_for("5f9a2c3e-0000-0000-0000-000000000001")
        );

        let mut off = Pairing::new(Settings {
            join_traceparent: false,
            ..settings()
        });
        let mut q = req("5f9a2c3e-0000-0000-0000-000000000002", 1_000);
        q.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
        off.ingest(0, q, None);
        let s = span(off.ingest(0, resp("5f9a2c3e-0000-0000-0000-000000000002", 1_001), None));
        assert_eq!(span::hex(&s.trace_id), "5f9a2c3e000000000000000000000002");
        assert_eq!(s.parent_span_id, None);
    }

    /// The merge gives what "every key of the response, then each request key the
    /// response lacks, cut at the limit" gives, whatever the key orders.
    #[test]
    fn merge_matches_the_plain_rule() {
        fn list(keys: &[&str]) -> Attributes {
            keys.iter()
                .enumerate()
                .map(|(i, k)| (*k, AttrValue::Int(i as i64)))
                .collect()
        }
        fn plain(primary: &Attributes, secondary: &Attributes, max: usize) -> (Attributes, usize) {
            let mut all = primary.to_vec();
            for (k, v) in secondary {
                if !primary.contains_key(k) {
                    all.push((k.to_owned(), v.to_value()));
                }
            }
            // The primary's own excess is cut (and counted) by the caller.
            let keep = max.max(primary.len());
            let dropped = all.len().saturating_sub(keep);
            all.truncate(keep);
            (all.into_iter().collect(), dropped)
        }
        let abc: Vec<String> = (0..30).map(|i| format!("k{i}")).collect();
        let k: Vec<&str> = abc.iter().map(String::as_str).collect();
        let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
            (k[..20].to_vec(), k[..12].to_vec()),
            // Extra response keys between shared ones, beyond the look-ahead.
            (
                [&k[..3], &k[10..25], &k[3..6]].concat(),
                [&k[..6], &k[25..28]].concat(),
            ),
            // Reversed and interleaved request keys.
            (k[..10].to_vec(), k[5..15].iter().rev().copied().collect()),
            (vec![], k[..4].to_vec()),
            (k[..4].to_vec(), vec![]),
        ];
        for (primary, secondary) in cases {
            let (p, s) = (list(&primary), list(&secondary));
            for max in [0, 3, 12, 20, 100] {
                let mut merged = p.clone();
                let dropped = merge_attributes(&mut merged, &s, max);
                let (want, want_dropped) = plain(&p, &s, max);
                assert_eq!(merged, want, "{primary:?} {secondary:?} {max}");
                assert_eq!(dropped, want_dropped, "{primary:?} {secondary:?} {max}");
            }
        }
    }

    #[test]
    fn span_limits_hold() {
        let mut p = Pairing::new(Settings {
            max_attributes: 2,
            max_span_bytes: 64,
            ..settings()
        });
        let mut q = req("a", 1_000);
        q.attributes.push_str("big", &"x".repeat(1000)).unwrap();
        p.ingest(0, q, None);
        let mut r = resp("a", 1_001);
        r.attributes = std::iter::once(("huge".to_owned(), AttrValue::Str("y".repeat(1000))))
            .chain(r.attributes.to_vec())
            .collect();
        let s = span(p.ingest(0, r, None));
        let event_attrs: Vec<_> = s.attributes.iter().take(s.attributes.len() - 2).collect();
        assert_eq!(event_attrs.len(), 2);
        assert!(
            event_attrs
                .iter()
                .map(|(k, v)| k.len() + v.byte_len())
                .sum::<usize>()
                <= 64
        );
        let t = p.take_truncations();
        assert_eq!(t.attributes, 3, "5 merged attributes, 2 kept");
        assert!(t.span_bytes >= 1);
        assert_eq!(
            attr(&s, "auditspan.outcome"),
            Some(AttrValue::Str("paired".into()))
        );
    }
}

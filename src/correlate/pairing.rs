//! The pairing state machine: requests and responses in, spans out (DESIGN "Span
//! contract"). It never reads a clock: the wall clock comes in as an argument ([`Now`],
//! read by the caller) and event times come with the events, so tests and `import` are
//! deterministic.
//!
//! Invariants:
//! - An id is waiting at most once: a second request (or response) for a waiting id is a
//!   duplicate and dropped, and so is any event for an id paired within `pair_timeout`.
//!   On a live feed the ids paired are also handed out ([`Pairing::take_paired`]) to be
//!   committed with the spans they made, and put back at start
//!   ([`Pairing::restore_paired`]), so a repeat that straddles a restart is recognised too.
//! - A waiting half expires `pair_timeout` after it arrived, measured on its feed's clock
//!   (below); a paired id is forgotten `pair_timeout` after its pair completed, on the same
//!   clock.
//! - Persistence is incremental: [`Pairing::persist`] hands out the entries that arrived
//!   since its last call and are still waiting, and the persisted entries answered or
//!   expired since. A pair that completes between two calls never reaches the disk.
//!
//! # The clocks, and why
//!
//! What must hold (issue #14): one event dated ahead or behind, by any amount, changes the
//! fate of no other pair on its stream; a Vault clock stepped back by up to an hour, or
//! forward by any amount, splits no pair whose halves arrive within `pair_timeout` of each
//! other; live inputs are bounded by the wall clock; `import`, which has no wall clock,
//! has a rule of its own.
//!
//! **Live inputs ([`Feed::Live`]): the wall clock alone.** A half expires once more than
//! `pair_timeout` has passed on the wall clock since it arrived; event times play no part.
//! Earlier, a live entry also expired when its stream's newest event time passed the
//! entry's time + `pair_timeout`. On a live stream such an event clock can only ever expire
//! an entry *sooner* than the wall clock would, and sooner is what the requirements forbid:
//! after a Vault clock steps forward, the events that follow are dated after the step, and
//! any rule that believes them (at once, or once later events confirm it) expires the
//! requests waiting from before the step, while their responses, written a few
//! milliseconds later but dated after it, may still be on the way (a busy Vault writes
//! many events in between). An event clock that never expires sooner than the wall clock
//! decides nothing the wall clock does not, so there is none. What this gives:
//! - an event dated ahead or behind by any amount changes only its own span's times;
//! - a clock step of any size, back or forward, splits no pair whose halves arrive within
//!   `pair_timeout` of each other: the first half waits that long from its arrival
//!   whatever any time says;
//! - the only clock is the wall clock.
//!
//! The cost: nothing expires sooner than `pair_timeout` after it arrived, also when a
//! backlog is read fast, so memory holds what arrives in one `pair_timeout` (waiting halves,
//! and the ids paired, for duplicates). That is the bound a live stream at that rate has
//! anyway. In exchange a slow request read from a backlog (both halves arriving together)
//! still pairs.
//!
//! **Replay ([`Feed::Replay`], `import`): each stream's [`EventClock`].** A captured log has
//! only its events' times. The clock (`clock.rs`) keeps a reference `M`, the highest
//! median of the stream's last 9 event times, and a progress `E` that rises with `M` but
//! by at most `pair_timeout / 50` per rise. A half dated `t` starts waiting at
//! `E + max(0, t − M)` (its own time where it is ahead of the reference; "now" where it is
//! behind it, as after a step back) and expires once `E` passes that by more than
//! `pair_timeout`. Halves that arrive before the first median (9 events) start where their
//! time places them once it is known. Paired ids are forgotten `pair_timeout` of progress
//! after their pair completed. The argument, for a stream whose real events' times rise
//! with the moments they were written at (apart from clock steps, and the µs–ms by which
//! Vault's concurrent writes interleave), and in which fewer than 5 of any 9 consecutive
//! events are dated ahead of the real ones:
//! - `M` never exceeds the newest real time read so far: a median of 9 with at most 4
//!   values above every real one in the window is at most a real one. `E` rises by at most
//!   what `M` rises. So a half dated `t` (ahead of `M` on arrival; behind it, it waits from
//!   `M` instead, which is later) expires only once `M` has passed `t + pair_timeout`,
//!   that is only after a real event dated past `t + pair_timeout` was read.
//! - *One event dated ahead* is not real: it cannot lift `M` (nor can 4 in 9), so no other
//!   half expires because of it. *One dated behind* only lowers the median while it is in
//!   the window, which delays expiry; its own half waits from `E`. So every other pair
//!   whose halves are within `pair_timeout` of each other stays paired, as without it.
//! - *A step back* leaves `M` where it was (it never falls) until the times pass it again;
//!   meanwhile halves wait from `E`, which stands still: nothing waiting is split by it,
//!   whatever its size. The cost is memory: after a step back by an hour, `import` holds
//!   that hour's unanswered halves until the times catch up (or the import ends).
//! - *A step forward* is believed once 5 of 9 events confirm it (one event cannot make
//!   it), and `M`'s rise across it counts as at most `pair_timeout / 50`, or that once more
//!   for each event dated inside the step that the median stops on (at most 4). A pair
//!   straddling it is therefore split only if its halves are more than 98% of
//!   `pair_timeout` apart in real time (90% in that worst case); pairs on one side of it
//!   are as above. The same cap means an idle gap counts as `pair_timeout / 50`: a sparse
//!   log ages its halves more slowly than its times do (they wait longer; none is split
//!   for it), and a log read from a busy Vault (events ms apart) ages them as its times do.
//! - Compared with the old rule (the stream's clock = the largest time seen), a half can
//!   expire only later, never sooner: every pair the old rule kept is kept.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap, HashSet, VecDeque},
    time::{Duration, Instant},
};

use super::clock::EventClock;
use crate::{
    attr::Attributes,
    event::{AuditEvent, EventKind},
    span::{self, Outcome, Span, Status},
};

/// Index of an input in the order the correlator was told about them.
pub type InputId = usize;

/// One ordered stream of events: a connection, a file, or an imported input. Replayed
/// streams have their own event clock.
pub type StreamId = u64;

/// The stream that restored entries of `input` belong to. In a replay its clock never
/// reads a time, so they expire at the end of the import.
fn restored_stream(input: InputId) -> StreamId {
    u64::MAX - input as u64
}

/// Where an event came from: its input (for names and metrics) and its stream (whose
/// event clock ages its entry in a replay).
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

/// One rise of a replayed stream's reference counts as at most `pair_timeout` divided by
/// this (see the module doc: a step forward splits no pair within 90% of `pair_timeout`,
/// 98% unless events are dated inside the step).
const STEP_DIVISOR: i64 = 50;

/// A replayed stream: its event clock and the deadlines of its entries on the clock's
/// progress. (Live streams need no state: their entries wait on the wall clock.)
struct Stream {
    clock: EventClock,
    /// (deadline, seq, key): expired once the progress passes the deadline.
    deadlines: BinaryHeap<Reverse<(i64, u64, IdKey)>>,
    /// (time, seq, key) of entries that arrived before the clock's first reading; anchored
    /// when it comes (at most [`super::clock::WINDOW`] − 1 events arrive before it).
    unanchored: Vec<(i64, u64, IdKey)>,
    /// Entries of this stream still waiting.
    entries: usize,
    /// The stream ended; it goes once its last entry does.
    closed: bool,
}

impl Stream {
    fn new(timeout_nanos: i64) -> Stream {
        Stream {
            clock: EventClock::new(timeout_nanos / STEP_DIVISOR),
            deadlines: BinaryHeap::new(),
            unanchored: Vec::new(),
            entries: 0,
            closed: false,
        }
    }

    /// Reads one event's time; anchors the early entries once the clock has its first
    /// reading.
    fn observe(&mut self, time: i64, timeout_nanos: i64) {
        if self.clock.observe(time) {
            for (time, seq, key) in std::mem::take(&mut self.unanchored) {
                self.wait(time, seq, key, timeout_nanos);
            }
        }
    }

    /// Schedules the expiry of an entry dated `time` that arrives now.
    fn wait(&mut self, time: i64, seq: u64, key: IdKey, timeout_nanos: i64) {
        match self.clock.anchor(time) {
            Some(start) => {
                self.deadlines
                    .push(Reverse((start.saturating_add(timeout_nanos), seq, key)))
            }
            None => self.unanchored.push((time, seq, key)),
        }
    }
}

/// How events reach the correlator, which decides the clock their entries wait on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// As Vault writes them (the daemon's inputs): entries wait on the wall clock.
    Live,
    /// Captured logs read as fast as possible (`import`): entries wait on their stream's
    /// event clock, and what still waits at the end expires then.
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

/// The wall clock at one moment, as the caller read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// For deadlines (monotonic).
    pub instant: Instant,
    /// The same moment in nanoseconds since the Unix epoch: stored with waiting entries, so
    /// that their wait continues across a restart.
    pub unix_nano: i64,
}

impl Now {
    /// Reads the wall clock (the correlator does, once per batch and per tick).
    pub fn read() -> Now {
        Now {
            instant: Instant::now(),
            unix_nano: i64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(i64::MAX),
        }
    }
}

/// `instant + duration`, or as far as an `Instant` reaches (a `pair_timeout` of centuries
/// means "never").
fn later(instant: Instant, duration: Duration) -> Instant {
    instant
        .checked_add(duration)
        .or_else(|| instant.checked_add(Duration::from_secs(u64::from(u32::MAX))))
        .unwrap_or(instant)
}

/// The status message is Vault's `error` string, cut to this (the full text is also the
/// `error` attribute, under `parse.max_value_bytes`).
const MAX_STATUS_MESSAGE_BYTES: usize = 8 << 10;

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

/// Live: ids paired at one moment, forgotten together.
struct PairedGroup {
    forget: Instant,
    generation: u32,
    keys: Vec<IdKey>,
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

/// The pairing state machine (see the module doc for its clocks).
pub struct Pairing {
    settings: Settings,
    feed: Feed,
    timeout_nanos: i64,
    waiting: HashMap<IdKey, Waiting>,
    /// Ids paired recently, each with the generation of its pairing (so that a stale forget
    /// of an id paired again since does not forget the newer pairing). At saturation a live
    /// feed remembers every id of the last `pair_timeout` (700,000 at 70,000 pairs/s and
    /// 10 s), so an id costs about 40 bytes: 20 here, 16 in its group, the rest slack.
    paired: HashMap<IdKey, u32>,
    /// The generation of the last pairing (wraps; far more than one `pair_timeout` apart).
    paired_generation: u32,
    /// Live: the ids paired, grouped by the moment they are forgotten, in pairing order.
    paired_live: VecDeque<PairedGroup>,
    /// Replay: the progress of its stream past which each paired id is forgotten.
    paired_replay: VecDeque<(i64, StreamId, u32, IdKey)>,
    /// Live: ids paired since the last [`Pairing::take_paired`].
    paired_new: Vec<IdKey>,
    /// Replayed streams' clocks and deadlines.
    streams: HashMap<StreamId, Stream>,
    /// Live: wall-clock deadlines, in order.
    arrivals: VecDeque<(Instant, u64, IdKey)>,
    next_seq: u64,
    truncations: SpanTruncations,
    /// Entries inserted since the last [`Pairing::persist`] (stale ones are skipped there).
    added: Vec<(IdKey, u64)>,
    /// Persisted entries answered or expired since the last [`Pairing::persist`].
    unpersisted: Vec<IdKey>,
}

impl Pairing {
    pub fn new(settings: Settings, feed: Feed) -> Self {
        let timeout_nanos = i64::try_from(settings.pair_timeout.as_nanos()).unwrap_or(i64::MAX);
        Pairing {
            settings,
            feed,
            timeout_nanos,
            waiting: HashMap::new(),
            paired: HashMap::new(),
            paired_generation: 0,
            paired_live: VecDeque::new(),
            paired_replay: VecDeque::new(),
            paired_new: Vec::new(),
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

    /// The stream ended (its connection closed): its clock is forgotten once its entries
    /// are.
    pub fn close_stream(&mut self, stream: StreamId) {
        if let Some(s) = self.streams.get_mut(&stream) {
            s.closed = true;
            if s.entries == 0 {
                self.streams.remove(&stream);
            }
        }
    }

    fn stream(&mut self, stream: StreamId) -> &mut Stream {
        let timeout_nanos = self.timeout_nanos;
        self.streams
            .entry(stream)
            .or_insert_with(|| Stream::new(timeout_nanos))
    }

    /// Takes one event that arrived at `now`.
    pub fn ingest(&mut self, source: impl Into<Source>, event: AuditEvent, now: Now) -> Step {
        let source = source.into();
        let key = span::trace_id_for(&event.id);
        if self.feed == Feed::Replay {
            let timeout_nanos = self.timeout_nanos;
            self.stream(source.stream)
                .observe(event.time_unix_nano, timeout_nanos);
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
                self.remember_paired(source.stream, key, now);
                Step::Span(Box::new(self.build(Some(request), Some(response))))
            }
            None => {
                let deadline = later(now.instant, self.settings.pair_timeout);
                self.insert(source, key, event, deadline, now.unix_nano, false);
                Step::Waiting
            }
        }
    }

    /// Stores a waiting entry. `live_deadline` is when it expires on the wall clock (live
    /// feed only).
    fn insert(
        &mut self,
        source: Source,
        key: IdKey,
        event: AuditEvent,
        live_deadline: Instant,
        arrived_unix_nano: i64,
        persisted: bool,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        match self.feed {
            Feed::Live => {
                // Live arrivals come in order; restored ones may not, and must not hide
                // behind a later deadline (at the end when they are in order, so this stays
                // cheap).
                let at = self
                    .arrivals
                    .partition_point(|(d, _, _)| *d <= live_deadline);
                self.arrivals.insert(at, (live_deadline, seq, key));
            }
            Feed::Replay => {
                let timeout_nanos = self.timeout_nanos;
                let stream = self.stream(source.stream);
                stream.wait(event.time_unix_nano, seq, key, timeout_nanos);
                stream.entries += 1;
            }
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

    /// Puts back an entry an earlier run persisted, at `now`. A live feed expires it on the
    /// wall clock, counting from when it first arrived (`arrived_unix_nano`): one that is
    /// overdue expires at the next [`Pairing::expire`]. A replay keeps it until the end.
    pub fn restore(&mut self, input: InputId, event: AuditEvent, arrived_unix_nano: i64, now: Now) {
        let key = span::trace_id_for(&event.id);
        if self.waiting.contains_key(&key) {
            return;
        }
        let age = u64::try_from(now.unix_nano.saturating_sub(arrived_unix_nano)).unwrap_or(0);
        let left = self
            .settings
            .pair_timeout
            .saturating_sub(Duration::from_nanos(age));
        let source = Source {
            input,
            stream: restored_stream(input),
        };
        self.insert(
            source,
            key,
            event,
            later(now.instant, left),
            arrived_unix_nano,
            true,
        );
    }

    /// Live: the ids paired since the last call, each to be forgotten `pair_timeout` after
    /// now. Committed with the spans they made, they let a restart recognise repeats.
    pub fn take_paired(&mut self) -> Vec<IdKey> {
        std::mem::take(&mut self.paired_new)
    }

    /// Live: puts back ids an earlier run paired, to be forgotten at `forget_unix_nano` on
    /// the wall clock (nothing is done for a time already past). Call before any event
    /// arrives, oldest `forget_unix_nano` first, as the forget queue stays in order.
    pub fn restore_paired(&mut self, keys: &[IdKey], forget_unix_nano: i64, now: Now) {
        let Ok(left) = u64::try_from(forget_unix_nano.saturating_sub(now.unix_nano)) else {
            return;
        };
        if left == 0 || self.feed != Feed::Live {
            return;
        }
        let forget = later(now.instant, Duration::from_nanos(left));
        for &key in keys {
            self.remember_live(key, forget);
        }
    }

    /// Remembers a live pairing of `key` until `forget`, in the group of that moment.
    fn remember_live(&mut self, key: IdKey, forget: Instant) {
        let generation = match self.paired_live.back_mut() {
            Some(group) if group.forget == forget => {
                group.keys.push(key);
                group.generation
            }
            _ => {
                self.paired_generation = self.paired_generation.wrapping_add(1);
                self.paired_live.push_back(PairedGroup {
                    forget,
                    generation: self.paired_generation,
                    keys: vec![key],
                });
                self.paired_generation
            }
        };
        self.paired.insert(key, generation);
    }

    /// Streams with an event clock (replayed streams, open or with entries still waiting).
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

    fn remember_paired(&mut self, stream: StreamId, key: IdKey, now: Now) {
        match self.feed {
            Feed::Live => {
                self.remember_live(key, later(now.instant, self.settings.pair_timeout));
                self.paired_new.push(key);
            }
            Feed::Replay => {
                let progress = self.streams.get(&stream).map_or(0, |s| s.clock.progress());
                let forget = progress.saturating_add(self.timeout_nanos);
                self.paired_generation = self.paired_generation.wrapping_add(1);
                let generation = self.paired_generation;
                self.paired.insert(key, generation);
                self.paired_replay
                    .push_back((forget, stream, generation, key));
            }
        }
    }

    /// Expires what is overdue at `now` (live) or on the streams' event clocks (replay),
    /// appending the spans to `out` in expiry order, and forgets paired ids as old.
    pub fn expire(&mut self, now: Now, out: &mut Vec<Span>) {
        match self.feed {
            Feed::Live => {
                while let Some(&(deadline, seq, key)) = self.arrivals.front() {
                    if deadline >= now.instant {
                        break;
                    }
                    self.arrivals.pop_front();
                    self.expire_entry(seq, key, out);
                }
                while self
                    .paired_live
                    .front()
                    .is_some_and(|group| group.forget < now.instant)
                {
                    if let Some(group) = self.paired_live.pop_front() {
                        for key in group.keys {
                            self.forget_paired(key, group.generation);
                        }
                    }
                }
            }
            Feed::Replay => {
                let mut overdue = Vec::new();
                for stream in self.streams.values_mut() {
                    let progress = stream.clock.progress();
                    while let Some(&Reverse((deadline, seq, key))) = stream.deadlines.peek() {
                        if deadline >= progress {
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
                while let Some(&(forget, stream, seq, key)) = self.paired_replay.front() {
                    // A stream that is gone forgets its pairs: nothing can repeat on it
                    // any more.
                    if self
                        .streams
                        .get(&stream)
                        .is_some_and(|s| forget >= s.clock.progress())
                    {
                        break;
                    }
                    self.paired_replay.pop_front();
                    self.forget_paired(key, seq);
                }
            }
        }
    }

    fn forget_paired(&mut self, key: IdKey, generation: u32) {
        if self.paired.get(&key) == Some(&generation) {
            self.paired.remove(&key);
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
        for stream in self.streams.values_mut() {
            stream.deadlines.clear();
            stream.unanchored.clear();
        }
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

    /// The wall clock `ms` milliseconds after the test's start.
    fn at(ms: u64) -> Now {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let start = *START.get_or_init(Instant::now);
        Now {
            instant: start + Duration::from_millis(ms),
            unix_nano: 1_741_708_800_000_000_000 + ms as i64 * MS,
        }
    }

    /// Replay with entries at times 0, 1, 2, … ms on stream 0 until its clock has its first
    /// reading (the ids are `fill-N`, requests, never answered).
    fn replay_started() -> Pairing {
        let mut p = Pairing::new(settings(), Feed::Replay);
        for n in 0..super::super::clock::WINDOW as i64 {
            p.ingest(0, req(&format!("fill-{n}"), n), at(0));
        }
        p
    }

    fn expired(p: &mut Pairing, now: Now) -> Vec<String> {
        let mut out = Vec::new();
        p.expire(now, &mut out);
        out.iter()
            .map(|s| match attr(s, "vault.request.id") {
                Some(AttrValue::Str(id)) => id,
                other => panic!("no id: {other:?}"),
            })
            .collect()
    }

    fn persisted(p: &mut Pairing) -> (Vec<String>, Vec<IdKey>) {
        let mut put = Vec::new();
        let removed = p.persist(|_, _, _, e| put.push(e.id.clone()));
        (put, removed)
    }

    #[test]
    fn persistence_is_incremental_and_pairs_within_a_window_never_persist() {
        let mut p = Pairing::new(settings(), Feed::Live);
        p.ingest(0, req("quick", 1_000), at(0));
        span(p.ingest(0, resp("quick", 1_001), at(0)));
        p.ingest(0, req("slow", 1_000), at(0));
        assert_eq!(persisted(&mut p), (vec!["slow".to_owned()], vec![]));
        assert_eq!(persisted(&mut p), (vec![], vec![]), "nothing new");
        span(p.ingest(0, resp("slow", 1_500), at(0)));
        assert_eq!(
            persisted(&mut p),
            (vec![], vec![span::trace_id_for("slow")])
        );
    }

    #[test]
    fn restored_entries_pair_and_expire() {
        let mut p = Pairing::new(settings(), Feed::Live);
        let now = at(1_000);
        p.restore(0, req("before-restart", 1_000), now.unix_nano, now);
        assert_eq!(p.pending(), 1);
        let s = span(p.ingest(0, resp("before-restart", 1_020), now));
        assert_eq!(s.outcome, Outcome::Paired);
        assert_eq!(s.duration_nanos(), 20 * MS);
        assert_eq!(
            persisted(&mut p).1,
            vec![span::trace_id_for("before-restart")]
        );

        // Arrived long ago on the wall clock: overdue at once after the restart.
        let old = now.unix_nano - 60_000 * MS;
        p.restore(0, req("expired-while-down", 1_000), old, now);
        // Arrived 4 s before the restart: 6 s left.
        p.restore(0, req("recent", 1_000), now.unix_nano - 4_000 * MS, now);
        assert_eq!(expired(&mut p, at(1_001)), ["expired-while-down"]);
        assert!(expired(&mut p, at(7_000)).is_empty());
        assert_eq!(expired(&mut p, at(7_001)), ["recent"]);
    }

    #[test]
    fn pairs_in_either_order() {
        let mut p = Pairing::new(settings(), Feed::Live);
        assert_eq!(p.ingest(0, req("a", 1000), at(0)), Step::Waiting);
        let s = span(p.ingest(0, resp("a", 1012), at(0)));
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

        assert_eq!(p.ingest(0, resp("b", 2010), at(0)), Step::Waiting);
        let s = span(p.ingest(0, req("b", 2000), at(0)));
        assert_eq!((s.start_unix_nano, s.end_unix_nano), (2000 * MS, 2010 * MS));
        assert_eq!(p.pending(), 0);
    }

    /// Repeats of a waiting or recently paired id are duplicates; a paired id is forgotten
    /// `pair_timeout` after its pair, on the wall clock (live) or the event clock (replay).
    #[test]
    fn repeats_are_duplicates_while_waiting_and_after_pairing() {
        let mut p = Pairing::new(settings(), Feed::Live);
        p.ingest(0, req("a", 1000), at(0));
        assert_eq!(p.ingest(0, req("a", 1001), at(0)), Step::Duplicate);
        span(p.ingest(0, resp("a", 1002), at(100)));
        assert_eq!(p.ingest(0, resp("a", 1003), at(200)), Step::Duplicate);
        // Event times do not matter on a live feed.
        assert_eq!(p.ingest(0, req("a", 99_000), at(200)), Step::Duplicate);
        assert!(expired(&mut p, at(10_100)).is_empty());
        assert_eq!(p.ingest(0, req("a", 1004), at(10_100)), Step::Duplicate);
        expired(&mut p, at(10_101));
        assert_eq!(p.ingest(0, req("a", 1005), at(10_101)), Step::Waiting);

        let mut p = replay_started();
        p.ingest(0, req("a", 100), at(0));
        span(p.ingest(0, resp("a", 101), at(0)));
        // 0.1 s apart: the clock's progress follows the times (lagging 4 events).
        for n in 1..=50 {
            p.ingest(0, req(&format!("later-{n}"), 100 * n), at(0));
        }
        expired(&mut p, at(0));
        assert_eq!(p.ingest(0, req("a", 5_000), at(0)), Step::Duplicate);
        for n in 51..=120 {
            p.ingest(0, req(&format!("later-{n}"), 100 * n), at(0));
        }
        expired(&mut p, at(0));
        assert_eq!(p.ingest(0, req("a", 20_000), at(0)), Step::Waiting);
    }

    /// Live: the ids paired are handed out once; put back into a new pairing (a restart),
    /// a repeat is a duplicate until the forget time they were committed with, then not.
    #[test]
    fn paired_ids_survive_a_restart_until_forgotten() {
        let mut p = Pairing::new(settings(), Feed::Live);
        p.ingest(0, req("a", 1000), at(0));
        span(p.ingest(0, resp("a", 1001), at(0)));
        p.ingest(0, req("b", 1000), at(0));
        span(p.ingest(0, resp("b", 1001), at(0)));
        let paired = p.take_paired();
        assert_eq!(paired, [span::trace_id_for("a"), span::trace_id_for("b")]);
        assert!(p.take_paired().is_empty(), "handed out once");
        let forget = at(0).unix_nano + 10_000 * MS;

        // Restarted 4 s later: forgotten 6 s after that.
        let mut p = Pairing::new(settings(), Feed::Live);
        p.restore_paired(&paired, forget, at(4_000));
        assert_eq!(p.ingest(0, req("a", 1002), at(4_000)), Step::Duplicate);
        assert_eq!(p.ingest(0, resp("b", 1003), at(4_000)), Step::Duplicate);
        assert!(expired(&mut p, at(10_000)).is_empty());
        assert_eq!(p.ingest(0, req("b", 1004), at(10_000)), Step::Duplicate);
        expired(&mut p, at(10_001));
        assert_eq!(p.ingest(0, req("b", 1005), at(10_001)), Step::Waiting);
        assert!(
            p.take_paired().is_empty(),
            "restored ids are on disk already"
        );

        // Restarted after the forget time: nothing to restore.
        let mut p = Pairing::new(settings(), Feed::Live);
        p.restore_paired(&paired, forget, at(10_000));
        assert_eq!(p.ingest(0, req("a", 1006), at(10_000)), Step::Waiting);
    }

    /// In a replay a half expires once its stream's event clock has passed its time by more
    /// than `pair_timeout`; another stream's clock does not count.
    #[test]
    fn replay_expires_on_each_streams_event_clock() {
        let mut p = replay_started();
        p.ingest(0, req("old", 1_000), at(0));
        p.ingest(1, resp("orphan", 1_000), at(0));
        // Input 1 moves far ahead (0.2 s a step, so that each rise counts whole); input 0's
        // entries must not expire because of it.
        for n in 0..80 {
            p.ingest(1, req(&format!("x-{n}"), 200 * n), at(0));
        }
        let gone = expired(&mut p, at(0));
        assert!(gone.contains(&"orphan".to_owned()), "{gone:?}");
        assert!(!gone.contains(&"old".to_owned()), "{gone:?}");
        // Input 0's own clock moves past 11 s, 0.2 s at a time: "old" goes.
        for n in 10..70 {
            p.ingest(0, req(&format!("y-{n}"), 200 * n), at(0));
        }
        let gone = expired(&mut p, at(0));
        assert!(gone.contains(&"old".to_owned()), "{gone:?}");
        let mut out = Vec::new();
        p.expire_all(&mut out);
        assert_eq!(
            attr(&out[0], "auditspan.outcome"),
            Some(AttrValue::Str("response_missing".into()))
        );
        assert_eq!(out[0].duration_nanos(), 0);
    }

    #[test]
    fn a_stream_running_ahead_does_not_expire_another_streams_entries() {
        let mut p = replay_started();
        let a = Source {
            input: 0,
            stream: 10,
        };
        let b = Source {
            input: 0,
            stream: 11,
        };
        p.ingest(a, req("slow-stream", 1_000), at(0));
        for n in 0..80 {
            p.ingest(b, req(&format!("x-{n}"), 200 * n), at(0));
        }
        let gone = expired(&mut p, at(0));
        assert!(
            !gone.contains(&"slow-stream".to_owned()),
            "stream b's clock does not expire stream a's entry"
        );
        // Its response on the fast stream still pairs.
        let s = span(p.ingest(b, resp("slow-stream", 1_005), at(0)));
        assert_eq!(s.outcome, Outcome::Paired);
        // A closed stream is dropped once its entries are gone.
        let streams = p.streams();
        p.close_stream(a.stream);
        assert_eq!(p.streams(), streams - 1);
        p.ingest(a, req("late", 60_000), at(0));
        p.close_stream(a.stream);
        assert_eq!(p.streams(), streams, "kept while an entry waits");
        span(p.ingest(b, resp("late", 60_001), at(0)));
        assert_eq!(p.streams(), streams - 1);
    }

    #[test]
    fn wall_clock_expires_idle_live_entries() {
        let mut p = Pairing::new(settings(), Feed::Live);
        p.ingest(0, req("idle", 1_000), at(0));
        assert!(expired(&mut p, at(9_000)).is_empty());
        assert!(
            expired(&mut p, at(10_000)).is_empty(),
            "exactly pair_timeout: waits"
        );
        assert_eq!(expired(&mut p, at(10_001)), ["idle"]);
        // A stale queue entry of a since-paired id does nothing.
        p.ingest(0, req("paired", 1_000), at(0));
        span(p.ingest(0, resp("paired", 1_001), at(0)));
        assert!(expired(&mut p, at(60_000)).is_empty());
    }

    /// A live half waits `pair_timeout` of wall time whatever the times of the events
    /// around it say: one dated 2099, or a stream stepped back by an hour.
    #[test]
    fn live_expiry_ignores_event_times() {
        let mut p = Pairing::new(settings(), Feed::Live);
        let year_2099 = 4_102_444_800_000;
        p.ingest(0, req("before", 1_000_000), at(0));
        p.ingest(0, req("outlier", year_2099), at(1));
        p.ingest(0, req("stepped-back", 1_000_000 - 3_600_000), at(2));
        assert!(expired(&mut p, at(9_999)).is_empty());
        assert_eq!(
            span(p.ingest(0, resp("before", 1_000_005), at(9_999))).outcome,
            Outcome::Paired
        );
        assert_eq!(
            span(p.ingest(0, resp("stepped-back", 1_000_000 - 3_599_990), at(9_999))).outcome,
            Outcome::Paired
        );
        assert_eq!(expired(&mut p, at(10_002)), ["outlier"]);
    }

    /// In a replay, an event dated far ahead moves nothing, a step back expires nothing, and
    /// a pair across a step forward still pairs.
    #[test]
    fn replay_survives_an_outlier_and_steps() {
        let mut p = replay_started();
        let mut time = 100;
        let mut next = |step: i64| {
            time += step;
            time
        };
        p.ingest(0, req("across-outlier", next(1)), at(0));
        p.ingest(0, req("outlier", 4_102_444_800_000), at(0));
        p.ingest(0, req("before-back", next(1)), at(0));
        for n in 0..20 {
            p.ingest(0, req(&format!("a-{n}"), next(1)), at(0));
        }
        assert!(
            expired(&mut p, at(0))
                .iter()
                .all(|id| id.starts_with("fill-"))
        );
        // Back by an hour.
        let back = next(-3_600_000);
        p.ingest(0, req("after-back", back), at(0));
        for n in 0..20 {
            p.ingest(0, req(&format!("b-{n}"), next(1)), at(0));
        }
        assert!(expired(&mut p, at(0)).is_empty());
        // Forward by a day.
        p.ingest(0, req("across-forward", next(1)), at(0));
        next(86_400_000);
        for n in 0..20 {
            p.ingest(0, req(&format!("c-{n}"), next(1)), at(0));
        }
        assert!(expired(&mut p, at(0)).is_empty());
        for id in [
            "across-outlier",
            "before-back",
            "after-back",
            "across-forward",
        ] {
            let s = span(p.ingest(0, resp(id, next(1)), at(0)));
            assert_eq!(s.outcome, Outcome::Paired, "{id}");
        }
    }

    #[test]
    fn expire_all_is_ordered_by_time() {
        let mut p = Pairing::new(settings(), Feed::Live);
        p.ingest(0, req("c", 3_000), at(0));
        p.ingest(0, req("a", 1_000), at(0));
        p.ingest(0, resp("b", 2_000), at(0));
        let mut out = Vec::new();
        p.expire_all(&mut out);
        let ids: Vec<_> = out.iter().map(|s| attr(s, "vault.request.id")).collect();
        assert_eq!(ids, ["a", "b", "c"].map(|i| Some(AttrValue::Str(i.into()))));
        assert_eq!(p.pending(), 0);
    }

    #[test]
    fn clock_skew_gives_zero_duration() {
        let mut p = Pairing::new(settings(), Feed::Live);
        p.ingest(0, req("a", 1_000), at(0));
        let s = span(p.ingest(0, resp("a", 990), at(0)));
        assert_eq!(s.duration_nanos(), 0);
        assert_eq!(
            attr(&s, "auditspan.clock_skew"),
            Some(AttrValue::Bool(true))
        );
    }

    #[test]
    fn errors_and_traceparent() {
        let mut p = Pairing::new(settings(), Feed::Live);
        let mut q = req("5f9a2c3e-0000-0000-0000-000000000001", 1_000);
        q.error = Some("permission denied".into());
        q.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
        let mut r = resp("5f9a2c3e-0000-0000-0000-000000000001", 1_001);
        r.error = Some("1 error occurred:\n\t* permission denied\n\n".into());
        p.ingest(0, q, at(0));
        let s = span(p.ingest(0, r, at(0)));
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

        let mut off = Pairing::new(
            Settings {
                join_traceparent: false,
                ..settings()
            },
            Feed::Live,
        );
        let mut q = req("5f9a2c3e-0000-0000-0000-000000000002", 1_000);
        q.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
        off.ingest(0, q, at(0));
        let s = span(off.ingest(
            0,
            resp("5f9a2c3e-0000-0000-0000-000000000002", 1_001),
            at(0),
        ));
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
        let mut p = Pairing::new(
            Settings {
                max_attributes: 2,
                max_span_bytes: 64,
                ..settings()
            },
            Feed::Live,
        );
        let mut q = req("a", 1_000);
        q.attributes.push_str("big", &"x".repeat(1000)).unwrap();
        p.ingest(0, q, at(0));
        let mut r = resp("a", 1_001);
        r.attributes = std::iter::once(("huge".to_owned(), AttrValue::Str("y".repeat(1000))))
            .chain(r.attributes.to_vec())
            .collect();
        let s = span(p.ingest(0, r, at(0)));
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

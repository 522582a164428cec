//! Properties of the pairing clocks (issue #14; the rule is in `correlate/pairing.rs`'s
//! module doc): events dated far ahead or behind, and Vault clock steps, inserted into a
//! stream of clean request/response pairs leave every clean pair paired, on a live feed
//! and in a replay (`import`).
//!
//! A generated stream has a wall clock (when each event is written and read) and Vault's
//! clock (the `time` it carries): a clean event is dated its wall time plus the clock's
//! current offset, which each step changes (back by up to an hour, or forward by any
//! amount up to 50 years); an outlier is dated anything. The stream is fed in batches
//! of random size, and the pairing expires entries between batches as late as the next
//! arrival allows (live) or as its event clock says (replay).
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use auditspan::attr::Attributes;
use auditspan::correlate::{Feed, Now, Pairing, Settings, Step};
use auditspan::event::{AuditEvent, EventKind, Truncations};
use auditspan::span::{Outcome, Span};
use proptest::prelude::*;

const MS: i64 = 1_000_000;
const SECOND: i64 = 1_000 * MS;
const HOUR: i64 = 3_600 * SECOND;
const TIMEOUT: i64 = 10 * SECOND;
/// 2025-03-11T16:00:00Z: where the wall clock of every stream starts.
const BASE: i64 = 1_741_708_800 * SECOND;
/// A year.
const YEAR: i64 = 365 * 24 * HOUR;

fn settings() -> Settings {
    Settings {
        pair_timeout: Duration::from_nanos(TIMEOUT as u64),
        join_traceparent: true,
        max_attributes: 256,
        max_span_bytes: 256 << 10,
    }
}

/// One event of a generated stream.
#[derive(Debug, Clone)]
struct Event {
    id: String,
    kind: EventKind,
    /// When it is written and read, nanoseconds after the stream's start.
    wall: i64,
    /// Its `time`, nanoseconds since the epoch.
    time: i64,
}

/// A clean pair: its id, and whether the pairing must keep it (see each property).
#[derive(Debug, Clone)]
struct Clean {
    id: String,
    request_wall: i64,
    response_wall: i64,
}

#[derive(Debug, Clone)]
struct Stream {
    events: Vec<Event>,
    clean: Vec<Clean>,
    /// (wall time, change of Vault's offset) of each step, in order.
    steps: Vec<(i64, i64)>,
    /// Where the stream is cut into batches (event indices, increasing).
    cuts: Vec<usize>,
}

/// How an outlier is dated relative to the clean event it is inserted before.
#[derive(Debug, Clone, Copy)]
enum Dated {
    /// Within three `pair_timeout`s either way.
    Near(i64),
    /// Ahead by an hour to two centuries (past the year 2262 saturates, as `time` cannot).
    Ahead(i64),
    /// Behind by an hour to 50 years.
    Behind(i64),
}

fn dated() -> impl Strategy<Value = Dated> {
    prop_oneof![
        (-3 * TIMEOUT..3 * TIMEOUT).prop_map(Dated::Near),
        (HOUR..200 * YEAR).prop_map(Dated::Ahead),
        (HOUR..50 * YEAR).prop_map(Dated::Behind),
    ]
}

fn step() -> impl Strategy<Value = i64> {
    prop_oneof![(-HOUR..0), (1..2 * TIMEOUT), (2 * TIMEOUT..50 * YEAR),]
}

/// A stream of up to 120 clean pairs (requests 0–2 s apart, each answered within
/// `pair_timeout` on the wall clock), up to 3 steps more than `pair_timeout` apart, and
/// up to 40 outliers. With `sparse_outliers`, no two outliers are fewer than 3 events
/// apart (so at most 3 of any 9 consecutive events are outliers: the replay's assumption).
fn stream(sparse_outliers: bool) -> impl Strategy<Value = Stream> {
    (
        prop::collection::vec((0..2 * SECOND, 0..=TIMEOUT), 1..120),
        prop::collection::vec((any::<prop::sample::Index>(), step()), 0..4),
        prop::collection::vec(
            (any::<prop::sample::Index>(), dated(), any::<bool>()),
            0..40,
        ),
        prop::collection::vec(any::<prop::sample::Index>(), 0..30),
    )
        .prop_map(move |(pairs, steps, outliers, cuts)| {
            build(pairs, steps, outliers, cuts, sparse_outliers)
        })
}

fn build(
    pairs: Vec<(i64, i64)>,
    steps: Vec<(prop::sample::Index, i64)>,
    outliers: Vec<(prop::sample::Index, Dated, bool)>,
    cuts: Vec<prop::sample::Index>,
    sparse_outliers: bool,
) -> Stream {
    let mut clean = Vec::new();
    let mut wall = 0;
    for (n, (gap, answer)) in pairs.into_iter().enumerate() {
        wall += gap;
        clean.push(Clean {
            id: format!("clean-{n}"),
            request_wall: wall,
            response_wall: wall + answer,
        });
    }
    let end = clean.iter().map(|c| c.response_wall).max().unwrap_or(0) + 1;
    // Steps at wall times more than `pair_timeout` apart (a later one too close is left out).
    let mut at: Vec<(i64, i64)> = steps
        .into_iter()
        .map(|(i, delta)| (i.index(end as usize) as i64, delta))
        .collect();
    at.sort_unstable();
    let mut steps: Vec<(i64, i64)> = Vec::new();
    for (w, delta) in at {
        if steps.last().is_none_or(|(last, _)| w - last > TIMEOUT) {
            steps.push((w, delta));
        }
    }
    let offset = |wall: i64| -> i64 {
        steps
            .iter()
            .filter(|(w, _)| *w <= wall)
            .map(|(_, d)| d)
            .sum()
    };
    let mut events: Vec<Event> = Vec::new();
    for c in &clean {
        for (kind, wall) in [
            (EventKind::Request, c.request_wall),
            (EventKind::Response, c.response_wall),
        ] {
            events.push(Event {
                id: c.id.clone(),
                kind,
                wall,
                time: BASE + wall + offset(wall),
            });
        }
    }
    // In the order they are written: by wall time, a request before a response written at
    // the same moment (the sort is stable).
    events.sort_by_key(|e| e.wall);
    // Outliers go in before the event at their index (in decreasing index order, so that
    // earlier indices stay valid), dated against that event's time.
    let mut placed: Vec<(usize, Dated, bool)> = outliers
        .into_iter()
        .map(|(i, d, request)| (i.index(events.len()), d, request))
        .collect();
    placed.sort_by_key(|(i, _, _)| std::cmp::Reverse(*i));
    let mut last: Option<usize> = None;
    for (n, (i, dated, request)) in placed.into_iter().enumerate() {
        if sparse_outliers && last.is_some_and(|l| l - i < 3) {
            continue;
        }
        last = Some(i);
        let next = &events[i];
        let time = match dated {
            Dated::Near(d) => next.time.saturating_add(d),
            Dated::Ahead(d) => next.time.saturating_add(d),
            Dated::Behind(d) => next.time.saturating_sub(d),
        };
        let outlier = Event {
            id: format!("outlier-{n}"),
            kind: if request {
                EventKind::Request
            } else {
                EventKind::Response
            },
            wall: next.wall,
            time,
        };
        events.insert(i, outlier);
    }
    let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(events.len() + 1)).collect();
    cuts.push(events.len());
    cuts.sort_unstable();
    cuts.dedup();
    Stream {
        events,
        clean,
        steps,
        cuts,
    }
}

fn audit_event(e: &Event) -> AuditEvent {
    AuditEvent {
        kind: e.kind,
        id: e.id.clone(),
        time_unix_nano: e.time,
        error: None,
        operation: Some("read".into()),
        path: Some("kv/data/x".into()),
        mount_point: Some("kv/".into()),
        namespace_path: None,
        traceparent: None,
        attributes: Attributes::new(),
        truncations: Truncations::default(),
    }
}

/// Feeds `stream` to a pairing of `feed` in its batches and returns every span made
/// (the rest expired at the end, as `import` does), and how many events were duplicates.
fn run(stream: &Stream, feed: Feed) -> (Vec<Span>, usize) {
    let start = Instant::now();
    let now = |wall: i64| Now {
        instant: start + Duration::from_nanos(wall as u64),
        unix_nano: BASE + wall,
    };
    let mut pairing = Pairing::new(settings(), feed);
    let mut spans = Vec::new();
    let mut duplicates = 0;
    let mut from = 0;
    for &cut in &stream.cuts {
        for e in &stream.events[from..cut] {
            match pairing.ingest(0, audit_event(e), now(e.wall)) {
                Step::Waiting => {}
                Step::Span(span) => spans.push(*span),
                Step::Duplicate => duplicates += 1,
            }
        }
        from = cut;
        // As late as the next arrival allows: a timer tick just before it.
        let next = stream.events.get(cut).map_or(i64::MAX / 2, |e| e.wall);
        pairing.expire(now(next), &mut spans);
    }
    pairing.expire_all(&mut spans);
    (spans, duplicates)
}

/// Each span's `vault.request.id` with its outcome.
fn outcomes(spans: &[Span]) -> HashMap<String, Vec<Outcome>> {
    let mut by_id: HashMap<String, Vec<Outcome>> = HashMap::new();
    for span in spans {
        let id = match span
            .attributes
            .get("vault.request.id")
            .map(|v| v.to_value())
        {
            Some(auditspan::attr::AttrValue::Str(id)) => id,
            other => panic!("a span without its id: {other:?}"),
        };
        by_id.entry(id).or_default().push(span.outcome);
    }
    by_id
}

/// Every event is accounted for: two per paired span, one per other span or duplicate.
fn assert_accounted(stream: &Stream, spans: &[Span], duplicates: usize) {
    let events: usize = spans
        .iter()
        .map(|s| if s.outcome == Outcome::Paired { 2 } else { 1 })
        .sum::<usize>()
        + duplicates;
    assert_eq!(events, stream.events.len());
}

/// Whether a step forward falls between the clean pair's halves.
fn straddles_forward_step(stream: &Stream, c: &Clean) -> bool {
    stream
        .steps
        .iter()
        .any(|&(w, d)| d > 0 && c.request_wall < w && w <= c.response_wall)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Live: whatever the outliers (any number, anywhere) and the steps, every clean pair
    /// whose response arrives within `pair_timeout` of its request on the wall clock is
    /// paired.
    #[test]
    fn live_keeps_every_clean_pair(stream in stream(false)) {
        let (spans, duplicates) = run(&stream, Feed::Live);
        assert_accounted(&stream, &spans, duplicates);
        let by_id = outcomes(&spans);
        for c in &stream.clean {
            prop_assert_eq!(by_id.get(&c.id), Some(&vec![Outcome::Paired]), "{:?}", c);
        }
    }

    /// Replay: with at most 3 outliers in any 9 consecutive events, every clean pair whose
    /// halves are within `pair_timeout` of each other in real time is paired, and one that
    /// straddles a step forward is paired when they are within 90% of it.
    #[test]
    fn replay_keeps_every_clean_pair(stream in stream(true)) {
        let (spans, duplicates) = run(&stream, Feed::Replay);
        assert_accounted(&stream, &spans, duplicates);
        let by_id = outcomes(&spans);
        for c in &stream.clean {
            let apart = c.response_wall - c.request_wall;
            if straddles_forward_step(&stream, c) && apart > TIMEOUT / 10 * 9 {
                continue;
            }
            prop_assert_eq!(by_id.get(&c.id), Some(&vec![Outcome::Paired]), "{:?}", c);
        }
    }

    /// Replay still expires: with at most 3 outliers in any 9 events (dated anything), a
    /// lone request expires once the real events' times have passed it by more than
    /// `pair_timeout` (plus the clock's lag), long before the end: the event clock still
    /// bounds memory.
    #[test]
    fn replay_still_expires_lone_halves(
        gaps in prop::collection::vec(1..40 * MS, 600..1200),
        outliers in prop::collection::vec((any::<prop::sample::Index>(), dated(), any::<bool>()), 0..40),
    ) {
        let pairs: Vec<(i64, i64)> = gaps.iter().map(|&gap| (gap, 0)).collect();
        let mut stream = build(pairs, Vec::new(), outliers, Vec::new(), true);
        let lone = Event { id: "lone".into(), kind: EventKind::Request, wall: 0, time: BASE };
        stream.events.insert(0, lone);
        stream.cuts = (1..=stream.events.len()).collect();
        let wall = stream.events.last().unwrap().wall;
        let (spans, _) = run(&stream, Feed::Replay);
        let at = spans
            .iter()
            .position(|s| s.outcome == Outcome::ResponseMissing && s.start_unix_nano == BASE)
            .unwrap();
        let later = spans[at..].iter().filter(|s| s.outcome == Outcome::Paired).count();
        if wall > TIMEOUT + 2 * SECOND {
            prop_assert!(later > 0, "the lone request expired while pairs were still being made");
        }
    }
}

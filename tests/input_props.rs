//! Arbitrary input through the framer, the parser and the pairing core (issue #14 item 8):
//! whatever the bytes and however they are cut into reads, nothing panics and every line
//! is accounted for exactly once — framed once, counted once by its outcome (an event, a
//! rejection with its dead-letter record, or the audit-test message), and every event
//! once more by what pairing made of it (half of a paired span, a span on its own, or a
//! duplicate).
//!
//! Two generators: arbitrary bytes, and a hostile audit stream (valid events of a small
//! pool of ids, so that pairs, repeats and orphans happen, dated anywhere, mixed with
//! byte-flipped and cut copies, NULs, invalid UTF-8, deep nesting, huge numbers, odd ids
//! and times, over-long lines, CRLF, a prefix, and plain garbage).
//!
//! `AUDITSPAN_LONG_PROPTESTS=N` runs N cases of each (default 256) on inputs up to 64 times
//! larger: the longer variant (`docs/testing.md`).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use auditspan::correlate::{Feed, Now, Pairing, Settings, Step};
use auditspan::event::ParseLimits;
use auditspan::listener::{Framer, LineHandler};
use auditspan::span::Outcome;
use proptest::prelude::*;
use proptest::test_runner::Config;

/// `max_line_bytes` for these tests: small, so that over-long lines are common.
const MAX_LINE_BYTES: usize = 2048;
/// The prefix the input is configured with (present on some lines only).
const PREFIX: &str = "vault-prod ";

/// The longer variant's case count, when asked for.
fn long() -> Option<u32> {
    std::env::var("AUDITSPAN_LONG_PROPTESTS")
        .ok()
        .and_then(|v| v.parse().ok())
}

fn config() -> Config {
    Config::with_cases(long().unwrap_or(256))
}

/// How much larger inputs get in the longer variant.
fn scale() -> usize {
    if long().is_some() { 64 } else { 1 }
}

fn settings() -> Settings {
    Settings {
        pair_timeout: Duration::from_secs(10),
        join_traceparent: true,
        max_attributes: 64,
        max_span_bytes: 16 << 10,
    }
}

/// Lines in `bytes` by an independent count: one per `\n`, plus a last one without it.
fn lines_in(bytes: &[u8]) -> u64 {
    let newlines = bytes.iter().filter(|b| **b == b'\n').count() as u64;
    newlines + u64::from(bytes.last().is_some_and(|b| *b != b'\n'))
}

/// Feeds `bytes`, cut at `cuts`, through a framer and a line handler, and every event
/// through a pairing of `feed` (expiring after each read, and all at the end); checks that
/// every line and every event is accounted for exactly once.
fn check(bytes: &[u8], cuts: &[usize], feed: Feed) -> Result<(), TestCaseError> {
    let mut framer = Framer::new(MAX_LINE_BYTES);
    let mut lines = LineHandler::new("fuzz", PREFIX.to_owned(), ParseLimits::default());
    let mut pairing = Pairing::new(settings(), feed);
    let start = Instant::now();
    let mut spans = Vec::new();
    let (mut events, mut duplicates, mut dead_letters) = (0u64, 0u64, 0u64);
    let mut pair = |lines: &mut LineHandler, read: usize, spans: &mut Vec<_>| {
        let now = Now {
            instant: start + Duration::from_millis(read as u64 * 300),
            unix_nano: 1_741_708_800_000_000_000 + read as i64 * 300_000_000,
        };
        let (batch, rejected) = lines.take();
        dead_letters += rejected.len() as u64;
        for event in batch {
            events += 1;
            match pairing.ingest(0, event, now) {
                Step::Waiting => {}
                Step::Span(span) => spans.push(*span),
                Step::Duplicate => duplicates += 1,
            }
        }
        pairing.expire(now, spans);
    };
    let mut from = 0;
    for (read, &cut) in cuts.iter().chain([&bytes.len()]).enumerate() {
        let cut = cut.clamp(from, bytes.len());
        framer
            .buffer(cut - from)
            .extend_from_slice(&bytes[from..cut]);
        framer.drain(|f| lines.handle(f));
        pair(&mut lines, read, &mut spans);
        from = cut;
    }
    framer.finish(|f| lines.handle(f));
    pair(&mut lines, cuts.len() + 1, &mut spans);
    pairing.expire_all(&mut spans);

    let counts = lines.counts();
    let invalid: u64 = counts.invalid.iter().sum();
    prop_assert_eq!(counts.received, lines_in(bytes), "every line framed once");
    prop_assert_eq!(
        counts.received,
        counts.events + invalid + counts.audit_test,
        "every line counted once by outcome: {:?}",
        counts
    );
    prop_assert_eq!(dead_letters, invalid, "every rejected line dead-lettered");
    prop_assert_eq!(events, counts.events);
    let halves: u64 = spans
        .iter()
        .map(|s| if s.outcome == Outcome::Paired { 2 } else { 1 })
        .sum();
    prop_assert_eq!(
        events,
        halves + duplicates,
        "every event in one span or a duplicate"
    );
    prop_assert_eq!(pairing.pending(), 0);
    Ok(())
}

/// Read boundaries: up to 40 positions anywhere in an input of `len` bytes.
fn cuts(len: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..=len, 0..40).prop_map(|mut cuts| {
        cuts.sort_unstable();
        cuts
    })
}

/// Arbitrary bytes from a seed (fast at any length, where a value tree per byte is not),
/// with `\n`, `{` and `"` made common so that lines and JSON-looking starts happen.
fn arbitrary_bytes() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    (any::<u64>(), 0..4096 * scale())
        .prop_map(|(seed, len)| {
            let mut state = seed | 1;
            (0..len)
                .map(|_| {
                    // xorshift64
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    match state % 16 {
                        0 => b'\n',
                        1 => b'{',
                        2 => b'"',
                        _ => (state >> 24) as u8,
                    }
                })
                .collect::<Vec<u8>>()
        })
        .prop_flat_map(|bytes| {
            let len = bytes.len();
            (Just(bytes), cuts(len))
        })
}

/// A valid event of a pool of 12 ids, a request or a response, dated around 2025 or
/// anywhere.
fn valid_event() -> impl Strategy<Value = String> {
    (
        0u8..12,
        any::<bool>(),
        prop_oneof![
            8 => (0u64..600_000).prop_map(|ms| format!(
                "2025-03-11T14:{:02}:{:02}.{:03}Z",
                ms / 60_000 % 60,
                ms / 1000 % 60,
                ms % 1000
            )),
            1 => (1000u32..9999, 1u32..13, 1u32..29).prop_map(|(y, m, d)| format!(
                "{y:04}-{m:02}-{d:02}T00:00:00.123456789+05:30"
            )),
            1 => Just("2099-03-11T14:00:00Z".to_owned()),
        ],
        prop_oneof![
            Just(String::new()),
            Just(",\"error\":\"permission denied\"".to_owned()),
            Just(",\"request\":{\"path\":\"sys/audit/test\"}".to_owned()),
            Just(",\"auth\":{\"policies\":[\"default\",\"root\"],\"token_ttl\":123456789012345678901234567890}".to_owned()),
        ],
        any::<bool>(),
    )
        .prop_map(|(id, request, time, extra, prefixed)| {
            let kind = if request { "request" } else { "response" };
            let line = format!(
                r#"{{"type":"{kind}","time":"{time}","request":{{"id":"00000000-0000-4000-8000-{id:012x}","operation":"read","mount_point":"kv/","path":"kv/data/x"}}{extra}}}"#
            );
            if prefixed { format!("{PREFIX}{line}") } else { line }
        })
}

/// One line of a hostile stream (without its newline).
fn hostile_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => valid_event().prop_map(String::into_bytes),
        // A valid event with bytes flipped, cut short, or NULs and invalid UTF-8 in it.
        2 => (valid_event(), prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4))
            .prop_map(|(line, flips)| {
                let mut bytes = line.into_bytes();
                for (at, byte) in flips {
                    let i = at.index(bytes.len());
                    bytes[i] = if byte == b'\n' { 0 } else { byte };
                }
                bytes
            }),
        1 => (valid_event(), any::<prop::sample::Index>())
            .prop_map(|(line, at)| line.as_bytes()[..at.index(line.len())].to_vec()),
        // Deep nesting, odd ids and times, over-long lines, garbage.
        1 => (1usize..400).prop_map(|depth| {
            format!(
                r#"{{"type":"request","time":"2025-03-11T14:00:00Z","request":{{"id":"deep"}},"data":{}1{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            )
            .into_bytes()
        }),
        1 => prop_oneof![
            Just(r#"{"type":"request","time":"2025-03-11T14:00:00Z","request":{"id":""}}"#.to_owned()),
            Just(r#"{"type":"request","time":"2025-03-11T14:00:00Z","request":{"id":7}}"#.to_owned()),
            Just(r#"{"type":"request","time":"2025-13-11T14:00:00Z","request":{"id":"a"}}"#.to_owned()),
            Just(r#"{"type":"request","time":"11/03/2025","request":{"id":"a"}}"#.to_owned()),
            Just(r#"{"type":"reply","time":"2025-03-11T14:00:00Z","request":{"id":"a"}}"#.to_owned()),
            Just(r#"{"type":"response","time":"2025-03-11T14:00:00Z","request":{"id":"dev-gen-root"}} trailing"#.to_owned()),
            Just("[1,2,3]".to_owned()),
            Just(String::new()),
            Just("\r".to_owned()),
        ]
        .prop_map(String::into_bytes),
        1 => (MAX_LINE_BYTES - 2..MAX_LINE_BYTES * 3).prop_map(|len| vec![b'x'; len]),
        1 => prop::collection::vec(any::<u8>(), 0..64)
            .prop_map(|b| b.into_iter().map(|c| if c == b'\n' { b'?' } else { c }).collect()),
    ]
}

fn hostile_stream() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    (
        prop::collection::vec((hostile_line(), any::<bool>()), 0..60 * scale()),
        any::<bool>(),
    )
        .prop_map(|(lines, last_newline)| {
            let mut bytes = Vec::new();
            for (line, crlf) in &lines {
                bytes.extend_from_slice(line);
                bytes.extend_from_slice(if *crlf { b"\r\n" } else { b"\n" });
            }
            if !last_newline && !lines.is_empty() {
                // The writer went away in the middle of its last line.
                bytes.pop();
            }
            bytes
        })
        .prop_flat_map(|bytes| {
            let len = bytes.len();
            (Just(bytes), cuts(len))
        })
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes, cut anywhere into reads: no panic, every line accounted for once.
    #[test]
    fn arbitrary_bytes_are_accounted_for((bytes, cuts) in arbitrary_bytes(), replay in any::<bool>()) {
        check(&bytes, &cuts, if replay { Feed::Replay } else { Feed::Live })?;
    }

    /// A hostile audit stream (valid events, duplicates and orphans among broken copies
    /// and garbage), cut anywhere into reads: no panic, every line and event accounted
    /// for once.
    #[test]
    fn hostile_streams_are_accounted_for((bytes, cuts) in hostile_stream(), replay in any::<bool>()) {
        check(&bytes, &cuts, if replay { Feed::Replay } else { Feed::Live })?;
    }
}

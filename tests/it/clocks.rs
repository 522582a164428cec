//! Event clocks against bad times (issue #14, the rule in `correlate/pairing.rs`): an event
//! dated 2099 and a Vault clock stepped back by an hour in the middle of a stream split no
//! clean pair, over a real socket (the wall clock decides) and through `auditspan import`
//! (the stream's event clock decides).

use std::collections::HashMap;

use serde_json::Value;

use crate::support::{DEADLINE, Daemon, auditspan, connect, request_id, traffic::Event, write};

const MS: i64 = 1_000_000;
const HOUR: i64 = 3_600_000 * MS;
/// 2025-03-11T14:00:00Z.
const BASE: i64 = 1_741_701_600_000 * MS;
const OUTLIER_ID: &str = "20990000-0000-4000-8000-000000002099";

/// `unix_nano` as RFC 3339 with nanoseconds.
fn rfc3339(unix_nano: i64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(unix_nano))
        .unwrap()
        .to_string()
}

/// Each span's `vault.request.id` and outcome.
fn outcomes(spans: &[Value]) -> HashMap<String, String> {
    spans
        .iter()
        .map(|s| {
            (
                s["attributes"]["vault.request.id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                s["attributes"]["auditspan.outcome"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect()
}

/// On one connection: 100 requests, one request dated 2099, 100 requests dated an hour
/// earlier (Vault's clock stepped back), all waiting in the correlator at once, then
/// every response. Every clean pair comes out `paired`; the 2099 request expires alone,
/// `pair_timeout` later on the wall clock, as `response_missing`.
#[test]
fn an_event_from_2099_and_a_step_back_split_no_pair_on_a_live_socket() {
    const PAIRS: u64 = 200;
    let daemon = Daemon::start_default();
    let time_of = |n: u64| {
        let step = if n < PAIRS / 2 { 0 } else { -HOUR };
        BASE + step + i64::try_from(n).unwrap() * 2 * MS
    };
    let mut conn = connect(&daemon);
    let requests = |range: std::ops::Range<u64>| -> String {
        range
            .map(|n| {
                Event::request(&request_id(n), 0)
                    .dated(&rfc3339(time_of(n)))
                    .line()
            })
            .collect()
    };
    write(&daemon, &mut conn, requests(0..PAIRS / 2));
    write(
        &daemon,
        &mut conn,
        Event::request(OUTLIER_ID, 0)
            .dated("2099-03-11T14:00:00Z")
            .line(),
    );
    write(&daemon, &mut conn, requests(PAIRS / 2..PAIRS));

    // Every request waits, and the correlator has run its expiry after taking them (it
    // publishes the count after each pass); the old event clock would have expired them.
    daemon.wait_until(DEADLINE, "every request waiting", || {
        let m = daemon.metrics();
        m.get("auditspan_correlator_pending", &[]) == (PAIRS + 1) as f64
            || m.sum("auditspan_spans_created_total") > 0.0
    });
    assert_eq!(
        daemon.metrics().sum("auditspan_spans_created_total"),
        0.0,
        "nothing expired while the responses were on their way"
    );

    let responses: String = (0..PAIRS)
        .map(|n| {
            Event::response(&request_id(n), 0)
                .dated(&rfc3339(time_of(n) + MS))
                .line()
        })
        .collect();
    write(&daemon, &mut conn, responses);
    let spans = daemon.wait_for_spans(PAIRS as usize + 1);
    let outcomes = outcomes(&spans);
    for n in 0..PAIRS {
        assert_eq!(
            outcomes.get(&request_id(n)).map(String::as_str),
            Some("paired"),
            "pair {n}"
        );
    }
    assert_eq!(
        outcomes.get(OUTLIER_ID).map(String::as_str),
        Some("response_missing")
    );
    assert_eq!(spans.len(), PAIRS as usize + 1);
}

/// `auditspan import` of one log of 3,000 pairs, each answered 1,000 events (1 s) after
/// its request, through a Vault clock stepped forward by a day, an event dated 2099 and
/// then the clock stepped back by an hour: every pair comes out `paired` (those across the
/// step back with `auditspan.clock_skew`), and the 2099 request alone as
/// `response_missing`.
#[test]
fn an_import_through_an_outlier_and_clock_steps_pairs_every_clean_pair() {
    const PAIRS: usize = 3_000;
    const LAG: usize = 500;
    let total = 2 * PAIRS;
    let forward_at = total / 6;
    let outlier_at = total / 3;
    let back_at = total / 2;
    let offset = |i: usize| -> i64 {
        let mut offset = 0;
        if i >= forward_at {
            offset += 24 * HOUR;
        }
        if i >= back_at {
            offset -= HOUR;
        }
        offset
    };
    let mut log = String::new();
    let mut i = 0;
    for step in 0..PAIRS + LAG {
        let halves = [
            (step < PAIRS).then_some((step, true)),
            (step >= LAG).then(|| (step - LAG, false)),
        ];
        for (n, request) in halves.into_iter().flatten() {
            if i == outlier_at {
                log += &Event::request(OUTLIER_ID, 0)
                    .dated("2099-03-11T14:00:00Z")
                    .line();
            }
            let time = rfc3339(BASE + i64::try_from(i).unwrap() * MS + offset(i));
            let id = request_id(n as u64);
            let event = if request {
                Event::request(&id, 0)
            } else {
                Event::response(&id, 0)
            };
            log += &event.dated(&time).line();
            i += 1;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.log");
    std::fs::write(&file, log).unwrap();
    std::fs::write(dir.path().join("c.toml"), "").unwrap();
    let output = auditspan(dir.path())
        .args(["import", "--config", "c.toml"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "import failed:\n{stderr}");
    let spans: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let outcomes = outcomes(&spans);
    let paired = (0..PAIRS)
        .filter(|&n| outcomes.get(&request_id(n as u64)).map(String::as_str) == Some("paired"))
        .count();
    assert_eq!(paired, PAIRS, "{stderr}");
    assert_eq!(
        outcomes.get(OUTLIER_ID).map(String::as_str),
        Some("response_missing")
    );
    assert_eq!(spans.len(), PAIRS + 1);
    let skewed = spans
        .iter()
        .filter(|s| s["attributes"]["auditspan.clock_skew"] == Value::Bool(true))
        .count();
    assert!(
        skewed > 0,
        "the pairs across the step back end before they start"
    );
}

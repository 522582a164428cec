//! Durability with real processes (DESIGN invariants 1–3): SIGKILL in the middle of an
//! export, a stdout sink that cannot write for a while, and a graceful restart between a
//! request and its response.
//!
//! The events are compact (`support::traffic::Event`), each with its own `time` on one
//! event clock (one millisecond per event sent), so a pair's duration is known and nothing
//! expires on event time.

use std::{collections::HashMap, time::Instant};

use serde_json::Value;

use crate::support::{DEADLINE, Daemon, Event, connect, default_config, request_id, write};

const RECEIVED: &str = "auditspan_events_received_total";
const COMMITTED: &str = "auditspan_queue_committed_sequence";
const QUEUE_SPANS: &str = "auditspan_queue_spans";
const LAG: &str = "auditspan_sink_lag_spans";
const EXPORTED: &str = "auditspan_sink_exported_spans_total";
const PENDING: &str = "auditspan_correlator_pending";
const STDOUT: [(&str, &str); 1] = [("sink", "stdout")];

/// Kill/restart cycles of the crash test unless `AUDITSPAN_CRASH_CYCLES` says otherwise.
const DEFAULT_CRASH_CYCLES: u64 = 10;

/// Pairs sent per crash cycle (10 cycles: 10,000 pairs, 20,000 events).
const PAIRS_PER_CYCLE: u64 = 1_000;

/// Of those, pairs whose request goes before the kill and whose response after the restart.
const SLOW_PER_CYCLE: u64 = 50;

fn vault_request_id(span: &Value) -> &str {
    span["attributes"]["vault.request.id"]
        .as_str()
        .unwrap_or_else(|| panic!("a span without vault.request.id: {span}"))
}

/// Waits until the queue has committed `n` spans in all (the sequence survives restarts).
fn wait_committed(daemon: &Daemon, n: u64) {
    daemon.wait_until(DEADLINE, &format!("{n} spans committed"), || {
        daemon.metrics().get(COMMITTED, &[]) >= n as f64
    });
    assert_eq!(
        daemon.metrics().get(COMMITTED, &[]),
        n as f64,
        "nothing but the pairs sent is committed"
    );
}

fn crash_cycles() -> u64 {
    match std::env::var("AUDITSPAN_CRASH_CYCLES") {
        Ok(v) => v
            .parse::<u64>()
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| panic!("AUDITSPAN_CRASH_CYCLES={v:?} is not a positive number")),
        Err(_) => DEFAULT_CRASH_CYCLES,
    }
}

/// SIGKILL in the middle of exporting, over and over (`AUDITSPAN_CRASH_CYCLES`, default
/// 10 × 1,000 pairs): every span whose commit the queue reported before a kill reaches
/// stdout at least once across the runs, every copy of it identical (replays are
/// idempotent); and a pair whose request was committed before a kill and whose response
/// came after the restart is exactly one `paired` span with the right duration, never a
/// `response_missing` + `request_missing` pair. On half of the cycles stdout is not read,
/// so the sink is blocked in its write with most of the window unacknowledged at the kill.
/// The queue's segments are the smallest allowed (64 KiB), so every cycle closes and
/// opens segments (carrying the waiting requests into each), reads closed ones and
/// deletes passed ones, and kills land in the middle of all of that.
#[test]
fn sigkill_mid_export_loses_no_committed_span_and_keeps_waiting_requests() {
    let cycles = crash_cycles();
    let started = Instant::now();
    let mut daemon = Daemon::start_with(|dir| {
        default_config(dir).replace("pair_timeout = \"10s\"", "pair_timeout = \"60s\"")
            + "\n[queue]\nsegment_bytes = \"64KiB\"\n"
    });
    let mut clock = 0u64;
    let mut next_id = 0u64;
    let mut tick = || {
        clock += 1;
        clock
    };
    // Every pair sent, with its duration in ms; the slow pairs' requests not yet answered.
    let mut expected: HashMap<String, u64> = HashMap::new();
    let mut waiting: Vec<(String, u64)> = Vec::new();
    let mut committed = 0u64;
    let mut blocked_kills = 0;
    for cycle in 0..=cycles {
        let mut conn = connect(&daemon);
        if cycle > 0 {
            daemon.wait_until(DEADLINE, "the restored waiting requests", || {
                daemon.metrics().get_opt(PENDING, &[]) == Some(waiting.len() as f64)
            });
        }
        let blocked = cycle % 2 == 0 && cycle < cycles;
        if blocked {
            daemon.pause_stdout();
        }
        let mut batch = String::new();
        // The responses of the requests committed before the last kill.
        for (id, request_time) in waiting.drain(..) {
            let t = tick();
            batch.push_str(&Event::response(&id, t).line());
            expected.insert(id, t - request_time);
            committed += 1;
        }
        if cycle < cycles {
            // Requests answered only after the next kill, then pairs answered at once. The
            // correlator commits in arrival order, so once the queue has the pairs' spans it
            // has these requests too.
            for _ in 0..SLOW_PER_CYCLE {
                let id = request_id(next_id);
                next_id += 1;
                let t = tick();
                batch.push_str(&Event::request(&id, t).line());
                waiting.push((id, t));
            }
            for _ in SLOW_PER_CYCLE..PAIRS_PER_CYCLE {
                let id = request_id(next_id);
                next_id += 1;
                batch.push_str(&Event::request(&id, tick()).line());
                batch.push_str(&Event::response(&id, tick()).line());
                expected.insert(id, 1);
                committed += 1;
            }
        }
        write(&daemon, &mut conn, &batch);
        wait_committed(&daemon, committed);
        if cycle == cycles {
            break;
        }
        if blocked {
            // The sink is stuck writing into the full pipe: committed spans are not all
            // acknowledged, so the kill lands mid-export.
            daemon.wait_until(DEADLINE, "spans committed but not exported", || {
                daemon.metrics().get(LAG, &STDOUT) > 0.0
            });
            blocked_kills += 1;
        }
        drop(conn);
        daemon.sigkill();
        daemon.restart();
    }
    assert!(waiting.is_empty());

    // Let the last run deliver everything, then stop it so that stdout is read to its end.
    daemon.wait_until(DEADLINE, "the stdout sink to catch up", || {
        let m = daemon.metrics();
        m.get(LAG, &STDOUT) == 0.0 && m.get(COMMITTED, &[]) == committed as f64
    });
    daemon.sigterm();
    let status = daemon.wait_exit(DEADLINE);
    assert!(
        status.success(),
        "graceful stop after the last run: {status}"
    );

    // A kill during a write may cut the run's last line; that span is sent again whole.
    let lines = daemon.stdout_lines();
    let truncated = daemon.truncated_stdout();
    assert!(truncated.len() as u64 <= cycles);
    for cut in &truncated {
        assert!(
            lines.iter().any(|line| line.starts_with(cut.as_str())),
            "a line cut by a kill is printed whole later: {cut}"
        );
    }
    let spans = daemon.spans();
    let mut seen: HashMap<&str, &Value> = HashMap::new();
    for span in &spans {
        let id = vault_request_id(span);
        let Some(&duration_ms) = expected.get(id) else {
            daemon.fail(&format!("a span for an id never sent as a pair: {span}"));
        };
        assert_eq!(
            span["attributes"]["auditspan.outcome"], "paired",
            "every pair is one paired span, across kills too: {span}"
        );
        assert_eq!(span["duration_ms"], duration_ms as f64, "{span}");
        if let Some(first) = seen.insert(id, span) {
            assert_eq!(first, span, "a replayed span is the same span");
        }
    }
    let missing: Vec<_> = expected
        .keys()
        .filter(|id| !seen.contains_key(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} committed spans never reached stdout, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(seen.len() as u64, cycles * PAIRS_PER_CYCLE);
    assert!(blocked_kills > 0);
    eprintln!(
        "{cycles} kill/restart cycles ({blocked_kills} with the sink blocked): {} pairs, \
         {} spans on stdout ({} replayed, {} cut by a kill), {:.1?}",
        expected.len(),
        spans.len(),
        spans.len() - seen.len(),
        truncated.len(),
        started.elapsed()
    );
}

/// While nobody reads stdout (the sink's backend is down) the socket keeps accepting:
/// events are received and committed, and the queue and the sink's lag grow. Once stdout
/// is read again it drains completely: every span exactly once, in commit order (one
/// connection, every pair complete before the next begins, so commit order = send order),
/// and the lag and the queue return to 0.
#[test]
fn stdout_outage_queues_spans_and_drains_them_once_in_order() {
    const ROUNDS: u64 = 4;
    const PAIRS_PER_ROUND: u64 = 1_500;
    /// Spans that may still leave while stdout is not read: the pipe (64 KiB) and the
    /// harness's read buffer hold ~150 lines; one batch (512) is a generous bound.
    const SLACK: f64 = 512.0;
    let daemon = Daemon::start_default();
    daemon.pause_stdout();
    let mut conn = connect(&daemon);
    let mut order = Vec::new();
    let mut clock = 0;
    let mut lag_before = 0.0;
    for round in 1..=ROUNDS {
        let mut batch = String::new();
        for _ in 0..PAIRS_PER_ROUND {
            let id = request_id(order.len() as u64);
            batch.push_str(&Event::request(&id, clock).line());
            batch.push_str(&Event::response(&id, clock + 2).line());
            clock += 3;
            order.push(id);
        }
        write(&daemon, &mut conn, &batch);
        let sent = order.len() as f64;
        daemon.wait_until(DEADLINE, &format!("round {round} received"), || {
            daemon.metrics().get(RECEIVED, &[("input", "unix")]) == 2.0 * sent
        });
        wait_committed(&daemon, order.len() as u64);
        let m = daemon.metrics();
        let lag = m.get(LAG, &STDOUT);
        assert!(
            lag >= sent - SLACK && lag > lag_before,
            "round {round}: lag {lag} after {sent} spans (before: {lag_before})"
        );
        assert!(
            m.get(QUEUE_SPANS, &[]) >= lag,
            "the queue keeps what is not exported"
        );
        lag_before = lag;
    }
    assert_eq!(
        daemon.stdout_count(),
        0,
        "nothing was read during the outage"
    );

    daemon.resume_stdout();
    let total = order.len();
    daemon.wait_until(DEADLINE, "the queue to drain", || {
        let m = daemon.metrics();
        daemon.stdout_count() >= total
            && m.get(LAG, &STDOUT) == 0.0
            && m.get(QUEUE_SPANS, &[]) == 0.0
    });
    let spans = daemon.spans();
    let ids: Vec<&str> = spans.iter().map(vault_request_id).collect();
    assert_eq!(ids.len(), total, "every span exactly once");
    assert!(ids == order, "stdout is in commit order");
    assert!(
        spans
            .iter()
            .all(|s| s["attributes"]["auditspan.outcome"] == "paired")
    );
    assert_eq!(daemon.metrics().get(EXPORTED, &STDOUT), total as f64);
}

/// A request still waiting at a graceful stop (SIGTERM, exit 0) is stored and restored:
/// after the restart the correlator has exactly it pending, and its response then makes
/// exactly one `paired` span from the request's time to the response's.
#[test]
fn graceful_restart_keeps_waiting_requests() {
    let mut daemon = Daemon::start_default();
    let id = request_id(7);
    let mut conn = connect(&daemon);
    write(&daemon, &mut conn, Event::request(&id, 1_000).line());
    daemon.wait_until(DEADLINE, "the request to wait", || {
        daemon.metrics().get(PENDING, &[]) == 1.0
    });
    drop(conn);
    daemon.sigterm();
    let status = daemon.wait_exit(DEADLINE);
    assert!(status.success(), "SIGTERM exits 0: {status}");
    assert!(daemon.spans().is_empty(), "no span for a waiting request");

    daemon.restart();
    assert_eq!(
        daemon.metrics().get_opt(PENDING, &[]),
        Some(1.0),
        "the waiting request is restored"
    );
    let mut conn = connect(&daemon);
    write(&daemon, &mut conn, Event::response(&id, 3_234).line());
    let spans = daemon.wait_for_spans(1);
    daemon.wait_until(DEADLINE, "nothing left waiting", || {
        daemon.metrics().get(PENDING, &[]) == 0.0
    });
    let spans_after = daemon.spans();
    assert_eq!(spans_after.len(), 1, "exactly one span: {spans_after:?}");
    let span = &spans[0];
    assert_eq!(vault_request_id(span), id);
    assert_eq!(span["attributes"]["auditspan.outcome"], "paired");
    assert_eq!(span["duration_ms"], 2234.0);
    let nanos = |key: &str| span[key].as_str().unwrap().parse::<i64>().unwrap();
    assert_eq!(
        nanos("end_time_unix_nano") - nanos("start_time_unix_nano"),
        2_234_000_000
    );
    let m = daemon.metrics();
    assert_eq!(
        m.get(
            "auditspan_spans_created_total",
            &[("outcome", "response_missing")]
        ),
        0.0
    );
    assert_eq!(
        m.get(
            "auditspan_spans_created_total",
            &[("outcome", "request_missing")]
        ),
        0.0
    );
}

/// A request whose `pair_timeout` passed while auditspan was down becomes a
/// `response_missing` span as soon as it starts again: expiry survives restarts.
#[test]
fn request_that_expired_while_down_is_response_missing_on_start() {
    let mut daemon = Daemon::start_with(|dir| {
        default_config(dir).replace("pair_timeout = \"10s\"", "pair_timeout = \"4s\"")
    });
    let id = request_id(8);
    let sent = Instant::now();
    let mut conn = connect(&daemon);
    write(&daemon, &mut conn, Event::request(&id, 1_000).line());
    daemon.wait_until(DEADLINE, "the request to wait", || {
        daemon.metrics().get(PENDING, &[]) == 1.0
    });
    drop(conn);
    daemon.sigterm();
    assert!(daemon.wait_exit(DEADLINE).success());
    assert!(
        sent.elapsed() < std::time::Duration::from_secs(4),
        "the machine was too slow to stop within pair_timeout; the test proves nothing"
    );
    assert!(daemon.spans().is_empty(), "still waiting at the stop");
    // Down for longer than pair_timeout: this wait is the thing under test.
    crate::support::wait_until(DEADLINE, "pair_timeout to pass while down", || {
        sent.elapsed() > std::time::Duration::from_millis(4_500)
    });
    daemon.restart();
    let spans = daemon.wait_for_spans(1);
    assert_eq!(vault_request_id(&spans[0]), id);
    assert_eq!(
        spans[0]["attributes"]["auditspan.outcome"],
        "response_missing"
    );
    daemon.wait_until(DEADLINE, "nothing left waiting", || {
        daemon.metrics().get(PENDING, &[]) == 0.0
    });
}

/// An event repeated after a restart whose first copy came before it is a duplicate: the
/// ids a window paired are committed with the spans they made, so even a SIGKILL right
/// after the spans reached stdout keeps them, and the repeats make no second span. (The
/// stdout sink may print the first spans again after the kill: delivery is at least once.
/// Those are the same spans, byte for byte; the repeats are sent with other times, so a
/// span made from them would show.)
#[test]
fn repeats_after_a_kill_are_duplicates() {
    const DUPLICATES: [(&str, &str); 2] = [("input", "unix"), ("reason", "duplicate")];
    let mut daemon = Daemon::start_default();
    let pair = |n: u64, at: u64| {
        let id = request_id(n);
        Event::request(&id, at + n).line() + &Event::response(&id, at + 500 + n).line()
    };
    let mut conn = connect(&daemon);
    for n in 0..5 {
        write(&daemon, &mut conn, pair(n, 1_000));
    }
    let first: Vec<Value> = daemon.wait_for_spans(5);
    drop(conn);
    daemon.sigkill();
    daemon.restart();

    let mut conn = connect(&daemon);
    for n in 0..6 {
        write(&daemon, &mut conn, pair(n, 60_000));
    }
    daemon.wait_until(DEADLINE, "every line read and the new pair made", || {
        let m = daemon.metrics();
        m.get(RECEIVED, &[("input", "unix")]) == 12.0
            && m.get("auditspan_spans_created_total", &[("outcome", "paired")]) == 1.0
            && m.get(PENDING, &[]) == 0.0
    });
    let m = daemon.metrics();
    assert_eq!(
        m.get("auditspan_events_ignored_total", &DUPLICATES),
        10.0,
        "both halves of each of the 5 repeated pairs"
    );
    let spans = daemon.wait_for_spans(6);
    let new = request_id(5);
    for span in &spans {
        let id = vault_request_id(span);
        if id == new {
            continue;
        }
        assert!(first.contains(span), "a span made from a repeat: {span}");
    }
    assert_eq!(
        spans.iter().filter(|s| vault_request_id(s) == new).count(),
        1
    );
    assert!(
        daemon.stderr().contains("Restored the ids paired recently"),
        "{}",
        daemon.stderr_tail()
    );
}
